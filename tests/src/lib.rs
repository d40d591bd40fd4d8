//! Helpers for facekey's end-to-end tests: the real `.so`, real libpam, real images, real files with real
//! permissions.
//!
//! - [`module`]: builds `pam_facekey` (release) once per process and gives the path of the built library.
//! - [`world`]: a temporary, trusted layout (configuration, enrolment store, rate-limit state, PAM service
//!   folder) and enrolment of the test faces.
//! - [`pam`]: libpam by hand (`pam_start_confdir`, `pam_authenticate`, `pam_set_item`), with a conversation
//!   that records what the module says.
//!
//! Nothing here needs root: the trust rules accept files owned by the user running the tests, and libpam reads
//! the service file from the temporary folder.

pub mod module;
pub mod pam;
pub mod world;
