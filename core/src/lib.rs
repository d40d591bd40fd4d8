//! facekey's engine: frames in, a decision out.
//!
//! A frame travels: [`source`] (a replay of trusted image files, or a [`camera`]) -> [`frame`]
//! (decode) -> [`detect`] (YuNet, boxes and five landmarks) -> [`align`]
//! (150x150 chip) -> [`embed`] (dlib ResNet, 128-d) -> [`decision`] (distance to the user's enrolled
//! samples in [`store`]). [`models`] reads the model files through [`trust`] and verifies their hashes.
//! The PAM module and the CLI both decide through [`decision::authenticate`].
//!
//! Unsafe code is denied here except in `camera::stream`, the one place that maps V4L2 buffers, and
//! the one `fork` in `confine::run_confined`.
#![deny(unsafe_code)]

pub mod align;
pub mod camera;
pub mod confine;
pub mod decision;
pub mod detect;
pub mod embed;
pub mod engine;
pub mod frame;
pub mod isolated;
pub mod liveness;
pub mod models;
pub mod policy;
pub mod protocol;
pub mod ratelimit;
pub mod settings;
pub mod source;
pub mod store;
pub mod tract_knobs;
pub mod trust;

pub use decision::{authenticate, Outcome, Stats, Unavailable};
pub use engine::{Engine, EngineCache};
