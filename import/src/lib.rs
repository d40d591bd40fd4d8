#![forbid(unsafe_code)]
//! Readers of other tools' files, for migrating to facekey: dlib's own serialised face recognition network
//! ([`dlib`]) and Howdy's configuration and per-user face models ([`howdy`]). Everything read here is untrusted
//! input: every reader returns an error naming what is wrong, never panics, and bounds what it allocates.

pub mod dlib;
pub mod howdy;
