"""The dlib side of scripts/bench-vs-dlib and scripts/eval (development tool only; nothing ships).

    python dlib_peer.py frames PIPELINE RUNS ENROL_IMAGES(comma-separated) FRAME...
        per-frame time, CSV on stdout: pipeline,frame,run,ms,cpu_ms,detect_ms,faces,best_distance
    python dlib_peer.py enrol MODE OUT.json IMAGE...
        the encodings dlib_auth.py MODE compares with (one per image)
    python dlib_peer.py embed MODE FILE...
        JSON lines {"file":..., "faces":[{"bbox":[l,t,w,h],"embedding":[...]}]} like core/examples/embed_chips

PIPELINE / MODE
  fr      face_recognition defaults: face_locations (HOG, upsample 1, full frame) + face_encodings
          (5-point landmarks, 1 jitter) + face_distance
  howdy   Howdy's settings with dlib directly: frame scaled to 320 rows, HOG on grey with upsample 1,
          5-point landmarks, compute_face_descriptor with 1 jitter, numpy norm
  chip    (embed only) the file is an aligned 150x150 chip: dlib's compute_face_descriptor on the chip
          itself, no detection or landmarks: the network alone
  frchip  (embed, enrol) face_recognition.face_encodings with the whole image as the known face location:
          for chips, which the HOG detector does not find when the face fills the picture

Frames are decoded before timing (as on the facekey side); each frame gets one untimed warm-up run and
RUNS timed runs back to back. Run it with one thread (OMP_NUM_THREADS=1) under taskset.
"""
import json
import os
import sys
import time

import dlib
import face_recognition
import face_recognition_models as frm
import numpy as np
from PIL import Image

_detector = dlib.get_frontal_face_detector()
_predictor5 = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
_encoder = dlib.face_recognition_model_v1(frm.face_recognition_model_location())


def load_rgb(path):
    return np.asarray(Image.open(path).convert("RGB"))


# Time at which the detection part of the last call ended (for the per-stage split).
_detected_at = [0.0]


def faces_fr(rgb):
    """face_recognition defaults. Returns [(bbox, encoding)]."""
    locations = face_recognition.face_locations(rgb)
    _detected_at[0] = time.perf_counter()
    encodings = face_recognition.face_encodings(rgb, locations)
    return [((l, t, r - l, b - t), e) for (t, r, b, l), e in zip(locations, encodings)]


def faces_howdy(rgb, max_height=320):
    """Howdy's compare.py loop body. Boxes in the coordinates of the given frame."""
    img = Image.fromarray(rgb)
    scale = 1.0
    if img.height > max_height:
        scale = max_height / img.height
        img = img.resize((round(img.width * scale), max_height), Image.BOX)
    small = np.asarray(img)
    grey = np.asarray(img.convert("L"))
    out = []
    rects = _detector(grey, 1)
    _detected_at[0] = time.perf_counter()
    for rect in rects:
        shape = _predictor5(small, rect)
        encoding = np.array(_encoder.compute_face_descriptor(small, shape, 1))
        box = (rect.left() / scale, rect.top() / scale, rect.width() / scale, rect.height() / scale)
        out.append((box, encoding))
    return out


def faces_frchip(rgb):
    h, w = rgb.shape[:2]
    encodings = face_recognition.face_encodings(rgb, [(0, w, h, 0)])
    return [((0, 0, w, h), e) for e in encodings]


def faces_chip(rgb):
    if rgb.shape[:2] != (150, 150):
        raise SystemExit("chip mode needs 150x150 chips")
    return [((0, 0, 150, 150), np.array(_encoder.compute_face_descriptor(rgb)))]


PIPELINES = {"fr": faces_fr, "howdy": faces_howdy, "frchip": faces_frchip, "chip": faces_chip}


def cmd_frames(pipeline, runs, enrol, frames):
    analyse = PIPELINES[pipeline]
    known = np.array([analyse_first(analyse, p, enrol_fallback=True) for p in enrol.split(",")])
    print("pipeline,frame,run,ms,cpu_ms,detect_ms,faces,best_distance")
    for path in frames:
        rgb = load_rgb(path)
        name = os.path.basename(path)
        for run in range(int(runs) + 1):
            cpu = time.process_time()  # all threads (dlib runs on one here)
            t = time.perf_counter()
            faces = analyse(rgb)
            best = min((float(np.linalg.norm(known - e, axis=1).min()) for _, e in faces), default=None)
            ms = (time.perf_counter() - t) * 1e3
            cpu_ms = (time.process_time() - cpu) * 1e3
            detect_ms = (_detected_at[0] - t) * 1e3
            if run == 0:
                continue
            print(f"{pipeline},{name},{run},{ms:.3f},{cpu_ms:.3f},{detect_ms:.3f},{len(faces)},"
                  f"{'' if best is None else f'{best:.4f}'}")
        sys.stdout.flush()


def analyse_first(analyse, path, enrol_fallback=False):
    rgb = load_rgb(path)
    faces = analyse(rgb)
    if not faces and enrol_fallback:
        faces = faces_frchip(rgb)  # a chip the detector cannot find: the whole image is the face
    if not faces:
        raise SystemExit(f"{path}: no face to enrol")
    return faces[0][1]


def cmd_enrol(mode, out, images):
    analyse = PIPELINES[mode]
    encodings = [analyse_first(analyse, p, enrol_fallback=True).tolist() for p in images]
    with open(out, "w") as f:
        json.dump(encodings, f)


def cmd_embed(mode, files):
    analyse = PIPELINES[mode]
    for path in files:
        faces = [{"bbox": [float(v) for v in box], "embedding": [float(v) for v in e]}
                 for box, e in analyse(load_rgb(path))]
        print(json.dumps({"file": path, "faces": faces}))


def main():
    cmd = sys.argv[1]
    if cmd == "frames":
        cmd_frames(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:])
    elif cmd == "enrol":
        cmd_enrol(sys.argv[2], sys.argv[3], sys.argv[4:])
    elif cmd == "embed":
        cmd_embed(sys.argv[2], sys.argv[3:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
