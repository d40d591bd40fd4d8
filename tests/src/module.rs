//! The built PAM module.
//!
//! `cargo test --workspace` does not produce the cdylib `libpam_facekey.so` by itself (it builds the crate's
//! unit-test harness), so the first test that needs it runs cargo again, with the profile the tests were built
//! with, into the same target folder (cargo's build lock is free while tests run).
//!
//! The command is `cargo build --workspace --lib --bins --tests`, not `cargo build -p pam_facekey`: cargo unifies the
//! features of shared dependencies over the packages and targets selected, and only the same selection as
//! `cargo test --workspace` (every member, dev-dependencies active) reuses its compiled dependencies. Built with
//! `-p pam_facekey` alone, tract would be compiled a second time on a clean machine. Right after
//! `cargo test --workspace` everything but the cdylib is fresh, so this only links the module.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root (this package lives in `<root>/tests`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// The folder holding this executable's profile outputs (`target/release`), found from the running executable:
/// `target/<profile>/deps/<test>` or `target/<profile>/<bin>`.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current executable path");
    let mut dir = exe.parent().expect("executable has a folder").to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    dir
}

/// Build the module once per process (a no-op when it is fresh) and return its path.
pub fn path() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(build)
}

fn build() -> PathBuf {
    let profile_dir = profile_dir();
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_owned(),
        Some(name) => name.to_owned(),
        None => "release".to_owned(),
    };
    let target_dir = profile_dir
        .parent()
        .expect("profile folder is inside the target folder");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let output = Command::new(cargo)
        .current_dir(workspace_root())
        .args([
            "build",
            "--quiet",
            "--workspace",
            "--lib",
            "--bins",
            "--tests",
            "--profile",
            &profile,
        ])
        .arg("--target-dir")
        .arg(target_dir)
        .output()
        .expect("run cargo build for pam_facekey");
    assert!(
        output.status.success(),
        "cargo build --workspace --lib --bins --tests (for libpam_facekey.so) failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let so = profile_dir.join("libpam_facekey.so");
    assert!(so.is_file(), "{} was not built", so.display());
    so
}
