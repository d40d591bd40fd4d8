//! facekey's accuracy evaluation (development tool; nothing here ships): synthesised frames from labelled face
//! sets, what facekey's engine finds in them, and the error rates that follow, per image pair and per attempt,
//! each with its 95% confidence interval. `facekey-eval --help` and docs/accuracy.md say how to run it.

pub mod analyse;
pub mod negatives;
pub mod paste;
pub mod protocol;
pub mod records;
pub mod report;
pub mod set;
pub mod stats;
