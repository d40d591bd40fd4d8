"""Deterministic 640x480 test frames: each johns chip pasted into a textured background.

    python frames.py JOHNS_DIR OUT_DIR

One frame per chip, named PERSON__CHIP.jpg (JPEG quality 90), plus OUT_DIR/frames.csv saying where the
face went. The background is smooth random texture (no face, animal or human, for either detector to
find); the chip is scaled to a side of 180-280 pixels (a face about the size a laptop camera sees at
arm's length) and placed at a random position. The random generator is seeded, so the frames are the
same on every run with the same numpy and Pillow versions (the script records a hash of each frame).
Development tool only: part of scripts/bench-vs-dlib and scripts/eval, nothing of it ships.
"""
import csv
import hashlib
import os
import sys

import numpy as np
from PIL import Image

W, H = 640, 480
SEED = 20240606


def background(rng):
    # Low-frequency colour blobs plus fine grain: something like a wall and a shelf out of focus.
    coarse = rng.integers(40, 215, size=(6, 8, 3), dtype=np.uint8)
    img = Image.fromarray(coarse, "RGB").resize((W, H), Image.BICUBIC)
    a = np.asarray(img).astype(np.int16)
    a = (a + a.mean(axis=2, keepdims=True)) // 2  # half-desaturated: muted colours
    a += rng.integers(-12, 13, size=a.shape, dtype=np.int16)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")


def main():
    johns, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(SEED)
    rows = []
    for person in sorted(os.listdir(johns)):
        pdir = os.path.join(johns, person)
        for chip in sorted(os.listdir(pdir)):
            frame = background(rng)
            side = int(rng.integers(180, 281))
            x = int(rng.integers(0, W - side + 1))
            y = int(rng.integers(0, H - side + 1))
            face = Image.open(os.path.join(pdir, chip)).convert("RGB").resize((side, side), Image.BILINEAR)
            frame.paste(face, (x, y))
            name = f"{person}__{os.path.splitext(chip)[0]}.jpg"
            path = os.path.join(out, name)
            frame.save(path, quality=90)
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()[:16]
            rows.append([name, person, chip, x, y, side, digest])
    with open(os.path.join(out, "frames.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["frame", "person", "chip", "x", "y", "side", "sha256_16"])
        w.writerows(rows)
    print(f"wrote {len(rows)} frames to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
