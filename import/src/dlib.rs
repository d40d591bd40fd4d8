//! dlib serialised network reader (in progress).
