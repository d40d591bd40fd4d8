"""Accuracy of facekey and of the dlib pipeline on the labelled faces we have (scripts/eval).

    python eval.py EMBEDDINGS_DIR OUTDIR

Reads the JSON lines written by core/examples/embed_chips.rs and dlib_peer.py embed:
  chip-facekey-int8, chip-facekey-fp32, chip-dlib, chip-dlib-frchip   the 55 johns chips (network alone)
  e2e-facekey-int8, e2e-facekey-fp32, e2e-dlib                        the 55 johns frames and the extra
                                                                      photos, through each whole pipeline
Prints the tables; writes OUTDIR/vs-dlib-accuracy.csv, OUTDIR/vs-dlib-agreement.csv and the plots
OUTDIR/plots/vs-dlib-scores.png, vs-dlib-roc.png, vs-dlib-agreement.png. Development tool only.

Verification protocol: every pair of images of the set, once. Genuine: same identity; impostor: not.
An image in which a pipeline found no face is a failure to acquire: it is counted and left out of
that pipeline's pairs. When a pipeline finds several faces the largest is the subject's.
"""
import csv
import itertools
import json
import os
import sys

import numpy as np
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

THRESHOLDS = {"facekey": [0.5], "dlib": [0.6, 0.35]}
NAMES = {"facekey-int8": "facekey int8", "facekey-fp32": "facekey fp32", "dlib": "dlib (face_recognition)"}
COLOURS = {"facekey-int8": "#1f77b4", "facekey-fp32": "#6baed6", "dlib": "#d62728"}
EXTRA_IDS = {"obama": "Barack_Obama", "biden": "Joe_Biden"}


def identity(path):
    base = os.path.basename(path)
    if "__" in base:  # a johns frame: PERSON__CHIP.jpg
        return base.split("__")[0]
    for key, name in EXTRA_IDS.items():
        if base.startswith(key):
            return name
    return os.path.basename(os.path.dirname(path))  # a johns chip: johns/PERSON/CHIP.jpg


def load(path):
    """{file: embedding of the largest face, or None}"""
    out = {}
    with open(path) as f:
        for line in f:
            rec = json.loads(line)
            faces = rec["faces"]
            if faces:
                face = max(faces, key=lambda x: x["bbox"][2] * x["bbox"][3])
                out[rec["file"]] = np.array(face["embedding"], dtype=np.float64)
            else:
                out[rec["file"]] = None
    return out


def pairs(embs, files):
    """Genuine and impostor distances over every pair of files both with a face."""
    gen, imp = [], []
    for a, b in itertools.combinations(files, 2):
        if embs[a] is None or embs[b] is None:
            continue
        d = float(np.linalg.norm(embs[a] - embs[b]))
        (gen if identity(a) == identity(b) else imp).append(d)
    return np.array(gen), np.array(imp)


def eer(gen, imp):
    """Equal error rate and the threshold where it occurs (a match is distance < threshold)."""
    ts = np.unique(np.concatenate([gen, imp, [0.0, 10.0]]))
    best = None
    for t in ts:
        frr = float(np.mean(gen >= t))
        far = float(np.mean(imp < t))
        gap = abs(frr - far)
        if best is None or gap < best[0] - 1e-12:
            best = (gap, (frr + far) / 2, t)
    return best[1], best[2]


def roc(gen, imp):
    ts = np.unique(np.concatenate([gen, imp]))
    ts = np.concatenate([ts, [ts[-1] + 1e-6]])
    far = np.array([np.mean(imp < t) for t in ts])
    tar = np.array([np.mean(gen < t) for t in ts])
    return far, tar


def main():
    src, out = sys.argv[1], sys.argv[2]
    os.makedirs(os.path.join(out, "plots"), exist_ok=True)
    E = {name[:-6]: load(os.path.join(src, name)) for name in sorted(os.listdir(src)) if name.endswith(".jsonl")}

    chips = sorted(E["chip-dlib"])
    e2e = sorted(E["e2e-dlib"])
    frames = [f for f in e2e if "__" in f]
    sets = {
        "johns chips, network alone (55 dlib-aligned chips, 5 people)": ("chip", chips),
        "johns frames, whole pipeline (55 frames 640x480, 5 people)": ("e2e", frames),
        "johns frames + face_recognition test photos, whole pipeline (59 images, 7 people)": ("e2e", e2e),
    }
    rows, dists = [], {}
    print("Verification: every pair of images once; a match is distance < threshold\n")
    print("| set | pipeline | images (no face) | genuine pairs | impostor pairs | worst genuine | closest impostor "
          "| EER | threshold | genuine accepted | impostors accepted |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for set_name, (kind, files) in sets.items():
        for pipe in ("facekey-int8", "facekey-fp32", "dlib"):
            embs = E[f"{kind}-{pipe}"]
            missing = [f for f in files if embs.get(f) is None]
            gen, imp = pairs(embs, files)
            dists[(set_name, pipe)] = (gen, imp)
            e, et = eer(gen, imp)
            for t in THRESHOLDS[pipe.split("-")[0]]:
                tar = int(np.sum(gen < t))
                fa = int(np.sum(imp < t))
                rows.append({
                    "set": set_name, "pipeline": pipe, "images": len(files), "no_face": len(missing),
                    "genuine_pairs": len(gen), "impostor_pairs": len(imp),
                    "genuine_max": round(float(gen.max()), 4), "genuine_median": round(float(np.median(gen)), 4),
                    "impostor_min": round(float(imp.min()), 4), "impostor_median": round(float(np.median(imp)), 4),
                    "eer": round(e, 4), "eer_threshold": round(float(et), 4), "threshold": t,
                    "genuine_accepted": tar, "tar": round(tar / len(gen), 4),
                    "impostors_accepted": fa, "far": round(fa / len(imp), 6),
                })
                print(f"| {set_name.split(',')[0]} | {NAMES[pipe]} | {len(files)} ({len(missing)}) | {len(gen)} | "
                      f"{len(imp)} | {gen.max():.3f} | {imp.min():.3f} | {100 * e:.2f}% | {t} | "
                      f"{tar} ({100 * tar / len(gen):.1f}%) | {fa} ({100 * fa / len(imp):.2f}%) |")
            if missing:
                print(f"  ({NAMES[pipe]} found no face in: {', '.join(os.path.basename(m) for m in missing)})")

    # The decision as facekey (and Howdy) make it: 3 enrolled images per person, every other image of
    # the set tried against every person's enrolment, match when the closest enrolled sample is nearer
    # than the threshold (the protocol of the README's calibration table).
    print("\nAs a login decides: 3 images of each person enrolled, each of the other 8 tried against every "
          "person's enrolment (closest sample)\n")
    print("| set | pipeline | threshold | genuine attempts accepted | impostor attempts accepted "
          "| worst genuine | closest impostor |")
    print("|---|---|---|---|---|---|---|")
    for set_name, (kind, files) in list(sets.items())[:2]:
        for pipe in ("facekey-int8", "facekey-fp32", "dlib"):
            embs = E[f"{kind}-{pipe}"]
            people = sorted({identity(f) for f in files})
            by = {p: [f for f in files if identity(f) == p] for p in people}
            enrolled = {p: [embs[f] for f in by[p][:3] if embs[f] is not None] for p in people}
            gen, imp = [], []
            for p in people:
                for f in by[p][3:]:
                    if embs[f] is None:
                        continue
                    for q in people:
                        d_min = min(float(np.linalg.norm(embs[f] - e)) for e in enrolled[q])
                        (gen if p == q else imp).append(d_min)
            gen, imp = np.array(gen), np.array(imp)
            for t in THRESHOLDS[pipe.split("-")[0]]:
                row = {"set": set_name + "; enrol 3, probe 8", "pipeline": pipe, "images": len(files),
                       "no_face": sum(1 for f in files if embs.get(f) is None), "genuine_pairs": len(gen),
                       "impostor_pairs": len(imp), "genuine_max": round(float(gen.max()), 4),
                       "genuine_median": round(float(np.median(gen)), 4), "impostor_min": round(float(imp.min()), 4),
                       "impostor_median": round(float(np.median(imp)), 4), "eer": round(eer(gen, imp)[0], 4),
                       "eer_threshold": round(float(eer(gen, imp)[1]), 4), "threshold": t,
                       "genuine_accepted": int(np.sum(gen < t)), "tar": round(float(np.mean(gen < t)), 4),
                       "impostors_accepted": int(np.sum(imp < t)), "far": round(float(np.mean(imp < t)), 6)}
                rows.append(row)
                print(f"| {set_name.split(',')[0]} | {NAMES[pipe]} | {t} | {row['genuine_accepted']} / {len(gen)} | "
                      f"{row['impostors_accepted']} / {len(imp)} | {gen.max():.3f} | {imp.min():.3f} |")
    with open(os.path.join(out, "vs-dlib-accuracy.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)

    # Numeric agreement on the same chips.
    d = lambda a, b, f: float(np.linalg.norm(E[a][f] - E[b][f]))  # noqa: E731
    agree = []
    for f in chips:
        agree.append({
            "chip": os.path.relpath(f, os.path.dirname(os.path.dirname(os.path.dirname(f)))),
            "int8_vs_dlib": round(d("chip-facekey-int8", "chip-dlib", f), 5),
            "fp32_vs_dlib": round(d("chip-facekey-fp32", "chip-dlib", f), 5),
            "int8_vs_fp32": round(d("chip-facekey-int8", "chip-facekey-fp32", f), 5),
            "dlib_chip_vs_dlib_face_encodings": round(d("chip-dlib", "chip-dlib-frchip", f), 5),
            "dlib_norm": round(float(np.linalg.norm(E["chip-dlib"][f])), 4),
        })
    frame_agree = [float(np.linalg.norm(E["e2e-facekey-int8"][f] - E["e2e-dlib"][f])) for f in frames
                   if E["e2e-facekey-int8"].get(f) is not None and E["e2e-dlib"].get(f) is not None]
    with open(os.path.join(out, "vs-dlib-agreement.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(agree[0].keys()))
        w.writeheader()
        w.writerows(agree)
    print("\nNumeric agreement on the same 55 chips: Euclidean distance between the two embeddings of each chip\n")
    print("| embeddings compared | median | largest | largest, as a share of the 0.6 threshold |")
    print("|---|---|---|---|")
    for key, label in [("int8_vs_dlib", "facekey int8 vs dlib compute_face_descriptor (chip as it is)"),
                       ("fp32_vs_dlib", "facekey fp32 vs dlib compute_face_descriptor (chip as it is)"),
                       ("int8_vs_fp32", "facekey int8 vs facekey fp32"),
                       ("dlib_chip_vs_dlib_face_encodings",
                        "dlib on the chip vs face_recognition.face_encodings on the same chip (re-aligned)")]:
        v = np.array([a[key] for a in agree])
        print(f"| {label} | {np.median(v):.4f} | {v.max():.4f} | {100 * v.max() / 0.6:.1f}% |")
    fa = np.array(frame_agree)
    print(f"| whole pipelines on the 55 frames: facekey int8 (YuNet + own alignment) vs dlib (HOG + 5 landmarks) "
          f"| {np.median(fa):.4f} | {fa.max():.4f} | {100 * fa.max() / 0.6:.1f}% |")

    # Decisions on every pair of chips.
    pair_d = {}
    for pipe in ("facekey-int8", "facekey-fp32", "dlib"):
        emb = E[f"chip-{pipe}"]
        pair_d[pipe] = np.array([float(np.linalg.norm(emb[a] - emb[b])) for a, b in itertools.combinations(chips, 2)])
    same = np.array([identity(a) == identity(b) for a, b in itertools.combinations(chips, 2)])
    print(f"\nDecisions on all {len(same)} pairs of chips ({same.sum()} genuine, {(~same).sum()} impostor)\n")
    print("| facekey embeddings at | dlib at | pairs decided differently | largest pair-distance difference |")
    print("|---|---|---|---|")
    for pipe in ("facekey-int8", "facekey-fp32"):
        diff = np.abs(pair_d[pipe] - pair_d["dlib"]).max()
        for tf, td in [(0.5, 0.6), (0.5, 0.35), (0.6, 0.6), (0.35, 0.35)]:
            n = int(np.sum((pair_d[pipe] < tf) != (pair_d["dlib"] < td)))
            print(f"| {NAMES[pipe]} {tf} | {td} | {n} | {diff:.4f} |")

    plot_scores(dists, list(sets)[:2], out)
    plot_roc(dists, list(sets), out)
    plot_agreement(pair_d, same, out)


def plot_scores(dists, set_names, out):
    fig, axes = plt.subplots(len(set_names), 3, figsize=(13, 7), sharex=True)
    bins = np.linspace(0, 1.3, 53)
    for r, set_name in enumerate(set_names):
        for c, pipe in enumerate(("facekey-int8", "facekey-fp32", "dlib")):
            ax = axes[r][c]
            gen, imp = dists[(set_name, pipe)]
            ax.hist(gen, bins=bins, color="#2ca02c", alpha=0.7, label=f"genuine ({len(gen)} pairs)")
            ax.hist(imp, bins=bins, color="#7f7f7f", alpha=0.7, label=f"impostor ({len(imp)} pairs)")
            for t in THRESHOLDS[pipe.split("-")[0]]:
                ax.axvline(t, color="black", ls="--" if t != 0.35 else ":", lw=1)
                ax.text(t, ax.get_ylim()[1] * 0.92, f" {t}", fontsize=8)
            ax.set_title(f"{NAMES[pipe]}: {set_name.split(' (')[0]}", fontsize=9)
            ax.legend(fontsize=7, loc="upper right")
            if r == len(set_names) - 1:
                ax.set_xlabel("Euclidean distance between the two embeddings")
    fig.suptitle("Distance distributions, genuine vs impostor pairs (dashed: default threshold; dotted: Howdy's 0.35)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "plots", "vs-dlib-scores.png"), dpi=100)


def plot_roc(dists, set_names, out):
    fig, axes = plt.subplots(2, len(set_names), figsize=(14, 8))
    for col, set_name in enumerate(set_names):
        ax, ax2 = axes[0][col], axes[1][col]
        n_imp = None
        for pipe in ("facekey-int8", "facekey-fp32", "dlib"):
            gen, imp = dists[(set_name, pipe)]
            far, tar = roc(gen, imp)
            n_imp = len(imp)
            floor = 0.5 / len(imp)  # a FAR of 0 drawn half a step below the smallest measurable rate
            style = dict(color=COLOURS[pipe], lw=2 if pipe == "dlib" else 1.5,
                         ls="-" if pipe != "facekey-fp32" else "--")
            ax.step(np.maximum(far, floor), tar, where="post", label=NAMES[pipe], **style)
            for t in THRESHOLDS[pipe.split("-")[0]]:
                ax.plot(max(np.mean(imp < t), floor), np.mean(gen < t), "o", color=COLOURS[pipe], ms=5)
            ts = np.linspace(0, 1.3, 521)
            ax2.plot(ts, [np.mean(gen >= t) for t in ts], label=f"{NAMES[pipe]}: genuine refused", **style)
            ax2.plot(ts, [np.mean(imp < t) for t in ts], label=f"{NAMES[pipe]}: impostors accepted", alpha=0.6,
                     **{**style, "ls": ":"})
        ax.axvline(1 / n_imp, color="grey", lw=0.8, ls=":")
        ax.text(1 / n_imp, 0.02, " 1 impostor pair", fontsize=7, color="grey")
        ax.set_xscale("log")
        ax.set_xlim(0.3 / n_imp, 1.05)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("false accept rate (share of impostor pairs accepted)")
        ax.set_title(set_name.split(" (")[0] + f"\n({n_imp} impostor pairs)", fontsize=9)
        ax.grid(alpha=0.3)
        for t, c in ((0.35, "#d62728"), (0.5, "#1f77b4"), (0.6, "#d62728")):
            ax2.axvline(t, color=c, lw=0.8, ls="--")
        ax2.set_xlabel("threshold (match when distance < threshold)")
        ax2.set_ylim(-0.02, 1.02)
        ax2.grid(alpha=0.3)
    axes[0][0].set_ylabel("true accept rate")
    axes[0][0].legend(fontsize=8, loc="lower right")
    axes[1][0].set_ylabel("error rate")
    axes[1][0].legend(fontsize=7, loc="center right")
    fig.suptitle("Top: ROC (dots: facekey at 0.5; dlib at 0.6 and Howdy's 0.35; a rate of 0 is drawn left of the "
                 "dotted line, below which this few pairs measure nothing).\nBottom: error rates against the "
                 "threshold; the gap between a solid and a dotted curve of one colour is the margin.", fontsize=9)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "plots", "vs-dlib-roc.png"), dpi=100)


def plot_agreement(pair_d, same, out):
    fig, ax = plt.subplots(figsize=(5.5, 5.2))
    for pipe, marker in (("facekey-int8", "o"), ("facekey-fp32", "x")):
        ax.scatter(pair_d["dlib"][same], pair_d[pipe][same], s=8, marker=marker, color="#2ca02c", alpha=0.6,
                   label=f"{NAMES[pipe]}, genuine pairs")
        ax.scatter(pair_d["dlib"][~same], pair_d[pipe][~same], s=8, marker=marker, color="#7f7f7f", alpha=0.4,
                   label=f"{NAMES[pipe]}, impostor pairs")
    ax.plot([0, 1.3], [0, 1.3], color="black", lw=0.8)
    ax.axvline(0.6, color="#d62728", ls="--", lw=0.8)
    ax.axhline(0.5, color="#1f77b4", ls="--", lw=0.8)
    ax.set_xlabel("dlib distance (compute_face_descriptor on the chip)")
    ax.set_ylabel("facekey distance (same chips)")
    ax.set_title("Same pairs of chips, facekey vs dlib\n(dashed: thresholds dlib 0.6, facekey 0.5)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "plots", "vs-dlib-agreement.png"), dpi=100)


if __name__ == "__main__":
    main()
