"""One cold authentication with the dlib pipeline: the Python side of the cold comparison.

    python dlib_auth.py MODE ENROLMENT.json FRAME

MODE
  fr     `import face_recognition` (which loads its models at import), then face_locations (HOG,
         upsample 1) + face_encodings + face_distance on the frame, threshold 0.6: the library's defaults.
  howdy  what Howdy's compare.py does, without OpenCV and the camera: load only the three dlib models
         Howdy loads (HOG detector, 5-point shape predictor, ResNet), scale the frame to 320 rows,
         detect on grey with upsample 1, encode, match when the distance is below 0.35 (certainty 3.5).

Starts, loads the models, reads the enrolment (a JSON list of 128-d encodings), decides on one frame,
prints the decision; exit 0 matched, 1 not matched. Development tool only (scripts/bench-vs-dlib).
"""
import json
import sys


def main():
    mode, enrolment, frame = sys.argv[1:4]
    with open(enrolment) as f:
        known = json.load(f)
    if mode == "fr":
        import face_recognition
        import numpy as np

        image = face_recognition.load_image_file(frame)
        locations = face_recognition.face_locations(image)
        encodings = face_recognition.face_encodings(image, locations)
        threshold = 0.6
        best = min((float(face_recognition.face_distance(np.array(known), e).min()) for e in encodings),
                   default=float("inf"))
    elif mode == "howdy":
        import dlib
        import face_recognition_models as m
        import numpy as np
        from PIL import Image

        detector = dlib.get_frontal_face_detector()
        predictor = dlib.shape_predictor(m.pose_predictor_five_point_model_location())
        encoder = dlib.face_recognition_model_v1(m.face_recognition_model_location())
        img = Image.open(frame).convert("RGB")
        if img.height > 320:
            img = img.resize((round(img.width * 320 / img.height), 320), Image.BOX)
        rgb = np.asarray(img)
        grey = np.asarray(img.convert("L"))
        known = np.array(known)
        best = float("inf")
        for rect in detector(grey, 1):
            shape = predictor(rgb, rect)
            encoding = np.array(encoder.compute_face_descriptor(rgb, shape, 1))
            best = min(best, float(np.linalg.norm(known - encoding, axis=1).min()))
        threshold = 0.35
    else:
        sys.exit(f"unknown mode {mode}")
    matched = best < threshold
    print(f"{'matched' if matched else 'no match'}: best distance {best:.3f} (threshold {threshold})")
    sys.exit(0 if matched else 1)


if __name__ == "__main__":
    main()
