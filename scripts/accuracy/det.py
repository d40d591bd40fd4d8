"""DET curves (false refusals against false accepts, log scales) from facekey-eval's curve CSVs.

    python det.py OUT.png TITLE LABEL=FILE.csv [LABEL=FILE.csv ...]

Each CSV holds threshold,far,frr rows (`facekey-eval report --curves DIR`). A marker shows where each curve
sits at the threshold given as LABEL@THRESHOLD=FILE.csv. Development tool only: nothing of it ships.
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    out, title, series = sys.argv[1], sys.argv[2], sys.argv[3:]
    fig, ax = plt.subplots(figsize=(7, 5.5), dpi=110)
    floor = 1e-5
    for spec in series:
        label, path = spec.split("=", 1)
        at = None
        if "@" in label:
            label, at = label.split("@", 1)
            at = float(at)
        rows = list(csv.DictReader(open(path)))
        far = [max(float(r["far"]), floor) for r in rows]
        frr = [max(float(r["frr"]), floor) for r in rows]
        (line,) = ax.plot(far, frr, label=label, linewidth=1.4)
        if at is not None:
            below = [r for r in rows if float(r["threshold"]) <= at]
            if below:
                r = below[-1]
                ax.plot(max(float(r["far"]), floor), max(float(r["frr"]), floor), "o", color=line.get_color())
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(floor, 1)
    ax.set_ylim(floor, 1)
    ax.set_xlabel("false accept rate (0 drawn at 1e-5)")
    ax.set_ylabel("false refusal rate (0 drawn at 1e-5)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(out)


if __name__ == "__main__":
    main()
