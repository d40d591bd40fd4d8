"""Tables, CSV and plot for scripts/bench-vs-dlib (development tool only).

    python report_speed.py TMPDIR OUTDIR
    python report_speed.py --replot OUTDIR      (the plot again, from OUTDIR/vs-dlib-speed.csv)

Reads TMPDIR/perframe-PIPELINE-PASS.csv, TMPDIR/cold.csv (one core), TMPDIR/cold-all-cpus.csv (the
whole machine, when present) and TMPDIR/machine.txt; prints the tables
(Markdown) with the ratios facekey / dlib; writes OUTDIR/vs-dlib-speed.csv (summary),
OUTDIR/vs-dlib-frames.csv (per image and pipeline) and OUTDIR/plots/vs-dlib-speed.png.

Two clocks: wall time, and CPU time (per frame: the working thread's time on a CPU; cold: the
process's user + system time). On a machine shared with other work the wall time also counts the
time spent waiting for the core; the CPU time does not, and is what the wall time would be on a core
of one's own.
"""
import csv
import glob
import os
import re
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PIPELINES = ["facekey-int8", "facekey-fp32", "dlib-howdy", "dlib-fr"]
PEERS = ["dlib-howdy", "dlib-fr"]
LABELS = {
    "facekey-int8": "facekey int8 (default)",
    "facekey-fp32": "facekey fp32",
    "dlib-howdy": "dlib, Howdy's settings",
    "dlib-fr": "dlib, face_recognition defaults",
}
COLOURS = {"facekey-int8": "#1f77b4", "facekey-fp32": "#6baed6", "dlib-howdy": "#d62728", "dlib-fr": "#ff9896"}
SETS = {"frames": "55 frames 640x480 (johns chips)", "photos": "11 photos (tests/data/faces/photos)"}
THRESHOLD = {"facekey-int8": 0.5, "facekey-fp32": 0.5, "dlib-howdy": 0.35, "dlib-fr": 0.6}
COLD_SET = "1 frame (John_Salley__000200_02159354.jpg)"
COLD_ALL = "cold auth, all CPUs"


def pct(values, q):
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def ratio(r, peer, clock):
    v = r.get(f"{clock}_ratio_vs_{peer}")
    return f"{v:.2f} ({1 / v:.1f}x)" if r["pipeline"].startswith("facekey") and v else ""


def main():
    tmp, out = sys.argv[1], sys.argv[2]
    runs = {}
    for path in glob.glob(os.path.join(tmp, "perframe-*.csv")):
        m = re.match(r"perframe-(facekey|dlib)-(\w+)-(\d+)\.csv", os.path.basename(path))
        pipeline = f"{m.group(1)}-{m.group(2)}"
        with open(path) as f:
            for row in csv.DictReader(f):
                r = runs.setdefault((pipeline, row["frame"]), {"ms": [], "cpu": [], "detect": [],
                                                              "faces": row["faces"], "best": row["best_distance"]})
                r["ms"].append(float(row["ms"]))
                r["cpu"].append(float(row["cpu_ms"]))
                r["detect"].append(float(row["detect_ms"]))
    per_image = []
    for (pipeline, image), r in sorted(runs.items()):
        per_image.append({
            "image": image, "set": "frames" if "__" in image else "photos", "pipeline": pipeline,
            "passes": len(r["ms"]), "wall_median_ms": round(statistics.median(r["ms"]), 2),
            "wall_min_ms": round(min(r["ms"]), 2), "cpu_median_ms": round(statistics.median(r["cpu"]), 2),
            "detect_wall_median_ms": round(statistics.median(r["detect"]), 2),
            "faces": r["faces"], "best_distance": r["best"],
        })
    with open(os.path.join(out, "vs-dlib-frames.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(per_image[0].keys()))
        w.writeheader()
        w.writerows(per_image)

    summary = []
    for s in SETS:
        for p in PIPELINES:
            rows = [r for r in per_image if r["set"] == s and r["pipeline"] == p]
            wall = [r["wall_median_ms"] for r in rows]
            cpu = [r["cpu_median_ms"] for r in rows]
            summary.append({
                "measure": "per-frame", "set": s, "pipeline": p, "images": len(rows),
                "runs": min(r["passes"] for r in rows),
                "wall_median_ms": round(statistics.median(wall), 2), "wall_mean_ms": round(statistics.mean(wall), 2),
                "wall_p90_ms": round(pct(wall, 0.9), 2),
                "cpu_median_ms": round(statistics.median(cpu), 2), "cpu_mean_ms": round(statistics.mean(cpu), 2),
                "detect_wall_median_ms": round(statistics.median(r["detect_wall_median_ms"] for r in rows), 2),
                "faces_found": sum(int(r["faces"]) for r in rows),
                "matched": sum(1 for r in rows if r["best_distance"] and float(r["best_distance"]) < THRESHOLD[p]),
                "peak_rss_mb": "",
            })
    colds = {}
    for measure, name in [("cold auth", "cold.csv"), (COLD_ALL, "cold-all-cpus.csv")]:
        path = os.path.join(tmp, name)
        if not os.path.exists(path):
            continue
        cold = colds[measure] = {}
        with open(path) as f:
            for row in csv.DictReader(f):
                c = cold.setdefault(row["pipeline"], {"ms": [], "cpu": [], "rss": [], "out": row["output"]})
                c["ms"].append(int(row["wall_us"]) / 1000)
                c["cpu"].append(float(row["cpu_ms"]))
                c["rss"].append(int(row["peak_rss_kb"]) / 1024)
    cold = colds["cold auth"]
    for measure, p in [(m, p) for m in colds for p in PIPELINES]:
        c = colds[measure][p]
        summary.append({
            "measure": measure, "set": COLD_SET, "pipeline": p, "images": 1, "runs": len(c["ms"]),
            "wall_median_ms": round(statistics.median(c["ms"]), 1), "wall_mean_ms": round(statistics.mean(c["ms"]), 1),
            "wall_p90_ms": round(pct(c["ms"], 0.9), 1),
            "cpu_median_ms": round(statistics.median(c["cpu"]), 1), "cpu_mean_ms": round(statistics.mean(c["cpu"]), 1),
            "detect_wall_median_ms": "", "faces_found": "", "matched": "",
            "peak_rss_mb": round(statistics.median(c["rss"]), 1),
        })
    ref = {(r["measure"], r["set"], r["pipeline"]): r for r in summary}
    for r in summary:
        for peer in PEERS:
            d = ref[(r["measure"], r["set"], peer)]
            r[f"wall_ratio_vs_{peer}"] = round(r["wall_median_ms"] / d["wall_median_ms"], 3)
            r[f"cpu_ratio_vs_{peer}"] = round(r["cpu_median_ms"] / d["cpu_median_ms"], 3)
            r[f"rss_ratio_vs_{peer}"] = (round(r["peak_rss_mb"] / d["peak_rss_mb"], 3)
                                         if r["measure"] in colds else "")
    with open(os.path.join(out, "vs-dlib-speed.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(summary[0].keys()))
        w.writeheader()
        w.writerows(summary)

    with open(os.path.join(tmp, "machine.txt")) as f:
        print(f.read().strip())
    print()
    for s, title in SETS.items():
        print(f"Per-frame time, {title}: detect + align + embed + compare, in ms: per image the median of "
              f"{summary[0]['runs']} runs, then the median over images. Ratios facekey / dlib (and how many times "
              "faster).\n")
        print("| pipeline | CPU | wall | wall p90 | faces found | matched | CPU / dlib-howdy | CPU / dlib-fr "
              "| wall / dlib-howdy | wall / dlib-fr |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in summary:
            if r["measure"] == "per-frame" and r["set"] == s:
                print(f"| {LABELS[r['pipeline']]} | {r['cpu_median_ms']:.1f} | {r['wall_median_ms']:.1f} | "
                      f"{r['wall_p90_ms']:.1f} | {r['faces_found']} | {r['matched']} | "
                      f"{ratio(r, 'dlib-howdy', 'cpu')} | {ratio(r, 'dlib-fr', 'cpu')} | "
                      f"{ratio(r, 'dlib-howdy', 'wall')} | {ratio(r, 'dlib-fr', 'wall')} |")
        print()
    print("Where the time goes on the 640x480 frames (wall ms, median over frames): detection, then the rest "
          "(landmarks or alignment, embedding, comparison)\n")
    print("| pipeline | detection | the rest | whole frame |")
    print("|---|---|---|---|")
    for p in PIPELINES:
        rows = [x for x in per_image if x["set"] == "frames" and x["pipeline"] == p]
        det = statistics.median(x["detect_wall_median_ms"] for x in rows)
        rest = statistics.median(x["wall_median_ms"] - x["detect_wall_median_ms"] for x in rows)
        print(f"| {LABELS[p]} | {det:.1f} | {rest:.1f} | {ref[('per-frame', 'frames', p)]['wall_median_ms']:.1f} |")
    print()
    for measure, where in [("cold auth", "pinned to one core"), (COLD_ALL, "on the whole machine, no pinning")]:
        if measure not in colds:
            continue
        print(f"Cold authentication, {where}: one whole process deciding on one frame, "
              f"{len(colds[measure]['facekey-int8']['ms'])} runs, medians (ms, MB; CPU time in 10 ms steps)\n")
        print("| pipeline | CPU | wall | wall min | peak RSS | CPU / dlib-howdy | CPU / dlib-fr | wall / dlib-howdy "
              "| wall / dlib-fr | RSS / dlib-howdy | RSS / dlib-fr |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in summary:
            if r["measure"] == measure:
                fk = r["pipeline"].startswith("facekey")
                rss = lambda peer: f"{r[f'rss_ratio_vs_{peer}']:.2f}" if fk else ""  # noqa: E731
                print(f"| {LABELS[r['pipeline']]} | {r['cpu_median_ms']:.0f} | {r['wall_median_ms']:.0f} | "
                      f"{min(colds[measure][r['pipeline']]['ms']):.0f} | {r['peak_rss_mb']:.0f} | "
                      f"{ratio(r, 'dlib-howdy', 'cpu')} | {ratio(r, 'dlib-fr', 'cpu')} | "
                      f"{ratio(r, 'dlib-howdy', 'wall')} | {ratio(r, 'dlib-fr', 'wall')} | {rss('dlib-howdy')} | "
                      f"{rss('dlib-fr')} |")
        print()
    for p in PIPELINES:
        print(f"  {p}: {cold[p]['out']}")

    plot(ref, out)


def plot(ref, out):
    """OUTDIR/plots/vs-dlib-speed.png from the summary rows, by (measure, set, pipeline): per-frame
    time (frames), cold time (CPU solid, wall hatched; wall on the whole machine dotted when measured),
    peak RSS."""
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 4.6))
    panels = [
        ("per frame, 640x480 frames (ms)", "per-frame", "frames"),
        ("cold authentication, whole process (ms)", "cold auth", COLD_SET),
    ]
    ys = range(len(PIPELINES))
    for ax, (title, measure, s) in zip(axes, panels):
        bars = [("CPU time, one core", "cpu_median_ms", measure, {}),
                ("wall time, one core", "wall_median_ms", measure, {"alpha": 0.45, "hatch": "//"})]
        if measure == "cold auth" and (COLD_ALL, s, PIPELINES[0]) in ref:
            bars.append(("wall time, both cores", "wall_median_ms", COLD_ALL,
                         {"alpha": 0.25, "hatch": "..", "edgecolor": "#555555"}))
        height = 0.8 / len(bars)
        top = 0.0
        for i, (label, key, m, style) in enumerate(bars):
            values = [float(ref[(m, s, p)][key]) for p in PIPELINES]
            offset = (i - (len(bars) - 1) / 2) * height
            ax.barh([y + offset for y in ys], values, height=height, color=[COLOURS[p] for p in PIPELINES],
                    label=label, **style)
            for y, v in zip(ys, values):
                ax.text(v, y + offset, f" {v:.0f}", va="center", fontsize=7 if len(bars) > 2 else 8,
                        color="black" if i == 0 else "#555555")
            top = max(top, max(values))
        ax.set_xlim(0, top * 1.2)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7, loc="upper right")  # facekey's short bars leave that corner free
    rss = [float(ref[("cold auth", COLD_SET, p)]["peak_rss_mb"]) for p in PIPELINES]
    axes[2].barh(list(ys), rss, height=0.6, color=[COLOURS[p] for p in PIPELINES])
    for y, v in zip(ys, rss):
        axes[2].text(v, y, f" {v:.0f}", va="center", fontsize=8)
    axes[2].set_xlim(0, max(rss) * 1.2)
    axes[2].set_title("cold authentication, peak RSS (MB)", fontsize=10)
    for ax in axes:
        ax.set_yticks(list(ys))
        ax.set_yticklabels([LABELS[p] for p in PIPELINES] if ax is axes[0] else [""] * len(PIPELINES))
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("facekey vs the dlib pipeline: medians, shorter is better (per frame and CPU time: one "
                 "core each; wall time on a shared machine)", fontsize=10)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "plots", "vs-dlib-speed.png"), dpi=110)


def replot(out):
    """Redraw the plot from OUTDIR/vs-dlib-speed.csv, without running anything."""
    with open(os.path.join(out, "vs-dlib-speed.csv")) as f:
        ref = {(r["measure"], r["set"], r["pipeline"]): r for r in csv.DictReader(f)}
    plot(ref, out)


if __name__ == "__main__":
    if sys.argv[1] == "--replot":
        replot(sys.argv[2])
    else:
        main()
