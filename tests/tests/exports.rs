//! The module exports the six PAM service functions and nothing else: no Rust or C symbol that could clash with
//! the host process or another module loaded into it.

use std::process::Command;

use facekey_e2e::module;

#[test]
fn exported_symbols_are_only_the_pam_entry_points() {
    let so = module::path();
    let out = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(so)
        .output()
        .expect("run nm (binutils)");
    assert!(
        out.status.success(),
        "nm failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut exported: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().last().map(str::to_owned))
        .collect();
    exported.sort();
    assert_eq!(
        exported,
        [
            "pam_sm_acct_mgmt",
            "pam_sm_authenticate",
            "pam_sm_chauthtok",
            "pam_sm_close_session",
            "pam_sm_open_session",
            "pam_sm_setcred",
        ]
    );
}

#[test]
fn module_stays_loaded_after_pam_end() {
    // A decision past its deadline may still run on a worker thread when pam_end unloads the module, and the
    // models should survive one transaction: the library is marked NODELETE.
    let out = Command::new("readelf")
        .arg("-d")
        .arg(module::path())
        .output()
        .expect("run readelf (binutils)");
    let dynamic = String::from_utf8_lossy(&out.stdout);
    let flags = dynamic
        .lines()
        .find(|l| l.contains("FLAGS_1"))
        .unwrap_or_default();
    assert!(
        flags.contains("NODELETE"),
        "no NODELETE flag in:\n{dynamic}"
    );
}
