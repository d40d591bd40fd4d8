"""Tables, CSV and plot for scripts/bench-vs-dlib (development tool only).

    python report_speed.py TMPDIR OUTDIR

Reads TMPDIR/perframe-PIPELINE-PASS.csv, TMPDIR/cold.csv and TMPDIR/machine.txt; prints the tables
(Markdown) with the ratios facekey / dlib; writes OUTDIR/vs-dlib-speed.csv (summary),
OUTDIR/vs-dlib-frames.csv (per image and pipeline) and OUTDIR/plots/vs-dlib-speed.png.
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
LABELS = {
    "facekey-int8": "facekey int8 (default)",
    "facekey-fp32": "facekey fp32",
    "dlib-howdy": "dlib, Howdy's settings",
    "dlib-fr": "dlib, face_recognition defaults",
}
COLOURS = {"facekey-int8": "#1f77b4", "facekey-fp32": "#6baed6", "dlib-howdy": "#d62728", "dlib-fr": "#ff9896"}
SETS = {"frames": "55 frames 640x480 (johns chips)", "photos": "11 photos (tests/data/faces/photos)"}


def pct(values, q):
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def main():
    tmp, out = sys.argv[1], sys.argv[2]
    # per image and pipeline: times over passes, faces found, best distance
    runs = {}
    for path in glob.glob(os.path.join(tmp, "perframe-*.csv")):
        m = re.match(r"perframe-(facekey|dlib)-(\w+)-(\d+)\.csv", os.path.basename(path))
        pipeline = f"{m.group(1)}-{m.group(2)}"
        with open(path) as f:
            for row in csv.DictReader(f):
                key = (pipeline, row["frame"])
                r = runs.setdefault(key, {"ms": [], "detect_ms": [], "faces": row["faces"],
                                          "best": row["best_distance"]})
                r["ms"].append(float(row["ms"]))
                r["detect_ms"].append(float(row["detect_ms"]))
    per_image = []
    for (pipeline, image), r in sorted(runs.items()):
        s = "frames" if "__" in image else "photos"
        per_image.append({
            "image": image, "set": s, "pipeline": pipeline, "passes": len(r["ms"]),
            "median_ms": round(statistics.median(r["ms"]), 2), "min_ms": round(min(r["ms"]), 2),
            "detect_median_ms": round(statistics.median(r["detect_ms"]), 2),
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
            if not rows:
                continue
            med = [r["median_ms"] for r in rows]
            summary.append({
                "measure": "per-frame", "set": s, "pipeline": p, "n": len(rows),
                "passes": min(r["passes"] for r in rows),
                "median_ms": round(statistics.median(med), 2), "mean_ms": round(statistics.mean(med), 2),
                "p90_ms": round(pct(med, 0.9), 2), "min_ms": round(min(r["min_ms"] for r in rows), 2),
                "detect_median_ms": round(statistics.median(r["detect_median_ms"] for r in rows), 2),
                "faces_found": sum(int(r["faces"]) for r in rows),
                "matched": sum(1 for r in rows if r["best_distance"] != ""
                               and float(r["best_distance"]) < (0.5 if p.startswith("facekey")
                                                                else 0.35 if p == "dlib-howdy" else 0.6)),
                "peak_rss_mb": "",
            })
    cold = {}
    with open(os.path.join(tmp, "cold.csv")) as f:
        for row in csv.DictReader(f):
            c = cold.setdefault(row["pipeline"], {"ms": [], "rss": [], "out": row["output"]})
            c["ms"].append(int(row["wall_us"]) / 1000)
            c["rss"].append(int(row["peak_rss_kb"]) / 1024)
    for p in PIPELINES:
        c = cold[p]
        summary.append({
            "measure": "cold auth", "set": "1 frame (John_Salley__000200_02159354.jpg)", "pipeline": p,
            "n": 1, "passes": len(c["ms"]), "median_ms": round(statistics.median(c["ms"]), 1),
            "mean_ms": round(statistics.mean(c["ms"]), 1), "p90_ms": round(pct(c["ms"], 0.9), 1),
            "min_ms": round(min(c["ms"]), 1), "detect_median_ms": "", "faces_found": "", "matched": "",
            "peak_rss_mb": round(statistics.median(c["rss"]), 1),
        })
    ref = {(r["measure"], r["set"], r["pipeline"]): r for r in summary}
    for r in summary:
        for peer in ("dlib-howdy", "dlib-fr"):
            d = ref[(r["measure"], r["set"], peer)]
            r[f"time_ratio_vs_{peer}"] = round(r["median_ms"] / d["median_ms"], 3)
            if r["measure"] == "cold auth":
                r[f"rss_ratio_vs_{peer}"] = round(r["peak_rss_mb"] / d["peak_rss_mb"], 3)
            else:
                r[f"rss_ratio_vs_{peer}"] = ""
    with open(os.path.join(out, "vs-dlib-speed.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(summary[0].keys()))
        w.writeheader()
        w.writerows(summary)

    with open(os.path.join(tmp, "machine.txt")) as f:
        print(f.read().strip())
    print()
    for s, title in SETS.items():
        print(f"Per-frame time, {title}: detect + align + embed + compare; median over images of each image's "
              f"median of {summary[0]['passes']} passes (ms)\n")
        print("| pipeline | median | mean | p90 | faces found | matched | facekey / dlib-howdy | facekey / dlib-fr |")
        print("|---|---|---|---|---|---|---|---|")
        for r in summary:
            if r["measure"] == "per-frame" and r["set"] == s:
                ratio = lambda peer: (f"{r[f'time_ratio_vs_{peer}']:.2f} ({1 / r[f'time_ratio_vs_{peer}']:.1f}x faster)"
                                      if r["pipeline"].startswith("facekey") else "")
                print(f"| {LABELS[r['pipeline']]} | {r['median_ms']:.1f} | {r['mean_ms']:.1f} | {r['p90_ms']:.1f} | "
                      f"{r['faces_found']} | {r['matched']} | {ratio('dlib-howdy')} | {ratio('dlib-fr')} |")
        print()
    print("Where the time goes on the 640x480 frames (ms, median over frames): detection, then the rest "
          "(landmarks or alignment, embedding, comparison)\n")
    print("| pipeline | detection | the rest | whole frame |")
    print("|---|---|---|---|")
    for r in summary:
        if r["measure"] == "per-frame" and r["set"] == "frames":
            rest = statistics.median(x["median_ms"] - x["detect_median_ms"] for x in per_image
                                     if x["set"] == "frames" and x["pipeline"] == r["pipeline"])
            print(f"| {LABELS[r['pipeline']]} | {r['detect_median_ms']:.1f} | {rest:.1f} | {r['median_ms']:.1f} |")
    print()
    print(f"Cold authentication, one whole process deciding on one frame, {cold['facekey-int8']['ms'].__len__()} runs "
          "(ms, MB)\n")
    print("| pipeline | wall median | wall min | peak RSS median | time facekey / dlib-howdy | time facekey / dlib-fr "
          "| RSS facekey / dlib-howdy | RSS facekey / dlib-fr |")
    print("|---|---|---|---|---|---|---|---|")
    for r in summary:
        if r["measure"] == "cold auth":
            fk = r["pipeline"].startswith("facekey")
            t = lambda peer: (f"{r[f'time_ratio_vs_{peer}']:.2f} ({1 / r[f'time_ratio_vs_{peer}']:.1f}x faster)"
                              if fk else "")
            m = lambda peer: f"{r[f'rss_ratio_vs_{peer}']:.2f}" if fk else ""
            print(f"| {LABELS[r['pipeline']]} | {r['median_ms']:.0f} | {r['min_ms']:.0f} | {r['peak_rss_mb']:.0f} | "
                  f"{t('dlib-howdy')} | {t('dlib-fr')} | {m('dlib-howdy')} | {m('dlib-fr')} |")
    print()
    for p in PIPELINES:
        print(f"  {p}: {cold[p]['out']}")

    # The plot: per-frame time (frames), cold time, peak RSS.
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    panels = [
        ("per-frame time, 640x480 frames (ms)", [ref[("per-frame", "frames", p)]["median_ms"] for p in PIPELINES]),
        ("cold authentication, whole process (ms)", [ref[("cold auth", summary[-1]["set"], p)]["median_ms"]
                                                     for p in PIPELINES]),
        ("cold authentication, peak RSS (MB)", [ref[("cold auth", summary[-1]["set"], p)]["peak_rss_mb"]
                                                for p in PIPELINES]),
    ]
    for ax, (title, values) in zip(axes, panels):
        bars = ax.barh(range(len(PIPELINES)), values, color=[COLOURS[p] for p in PIPELINES])
        ax.set_yticks(range(len(PIPELINES)))
        ax.set_yticklabels([LABELS[p] for p in PIPELINES] if ax is axes[0] else [""] * len(PIPELINES))
        ax.invert_yaxis()
        ax.set_title(title, fontsize=10)
        for b, v in zip(bars, values):
            ax.text(b.get_width(), b.get_y() + b.get_height() / 2, f" {v:.0f}", va="center", fontsize=9)
        ax.set_xlim(0, max(values) * 1.18)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("facekey vs the dlib pipeline, one core, medians (shorter is better)", fontsize=11)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "plots", "vs-dlib-speed.png"), dpi=110)


if __name__ == "__main__":
    main()
