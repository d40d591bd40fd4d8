//! Link flags for the PAM module.
//!
//! `-z nodelete`: `pam_end` unloads modules with `dlclose`, but a decision that outlived its deadline may still be
//! running on a worker thread inside this library (see `facekey_core::policy::attempt`, `Isolation::InProcess`), and the
//! loaded models should outlive one PAM transaction in a long-running screen locker. Marking the object
//! NODELETE keeps it mapped until the process exits.
//!
//! Exports need no version script: rustc already exports only the `#[no_mangle]` functions of a cdylib (the six
//! `pam_sm_*` from `pam_hooks!`). The `exported_symbols_are_only_the_pam_entry_points` test keeps it that way.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
}
