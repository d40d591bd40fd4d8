//! facekey's engine: frames in, a decision out.
//!
//! A frame travels: [`source`] (a replay of trusted image files, or a [`camera`]) -> [`frame`]
//! (decode) -> [`detect`] (YuNet, boxes and five landmarks) -> [`align`]
//! (150x150 chip) -> [`embed`] (dlib ResNet, 128-d) -> [`decision`] (distance to the user's enrolled
//! samples in [`store`]). [`models`] reads the model files through [`trust`] and verifies their hashes.
//! Every front end (the PAM module, facekey-check, the `facekey` command, the tests) decides through one
//! entry point, [`policy::attempt`]: a [`policy::Attempt`] (who, asked by whom, which source, until when, in
//! process or in a confined child, an optional per-frame observer) in, a [`policy::Verdict`] out. Below it,
//! [`decision::decide`] decides on an engine already loaded and a source already open (benches, evaluation).
//!
//! Unsafe code is denied here except in `camera::node` (the V4L2 node's open and setup ioctls),
//! `camera::stream` (the buffer mappings), `camera::xu` (the UVC extension-unit query), and the one `fork`
//! in `confine::run_confined`.
#![deny(unsafe_code)]

pub mod align;
pub mod camera;
pub mod confine;
pub mod decision;
pub mod detect;
pub mod embed;
pub mod engine;
pub mod frame;
pub mod identify;
pub mod isolated;
pub mod liveness;
pub mod models;
pub mod policy;
pub mod protocol;
pub mod ratelimit;
pub mod rule;
pub mod settings;
pub mod source;
pub mod store;
pub mod tract_knobs;
pub mod trust;

pub use decision::{Outcome, Stats, Unavailable};
pub use engine::{Engine, EngineCache};
pub use policy::{attempt, Attempt, Verdict};
