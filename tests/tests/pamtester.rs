//! The module in a real PAM stack, run by pamtester under pam_wrapper: `tests/pamtester/run.sh` (see there for
//! the cases). This test prepares the world (enrolment, configurations), runs the script and shows its transcript.

use std::process::Command;

use facekey_e2e::module;
use facekey_e2e::world::{face, probe_images, World, OTHER};

/// The services run.sh defines, allowed in both configurations.
const SERVICES: &str = r#"["face-deny", "face-deny-other", "face-matrix", "face-matrix-match", "face-unix", "face-permit"]"#;

/// The user running the tests: pam_unix and pam_matrix look the name up.
fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("run id -un");
    assert!(out.status.success(), "id -un failed");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn password_fallback_in_a_pam_auth_update_stack() {
    let user = current_user();
    let world = World::new();
    world.enrol_default(&user);
    // Run as root (CI), pamtester authenticates root, which a face may do only with allow_root.
    let allow_root = user == "root";
    let extra = format!(
        "[pam]\nservices = {SERVICES}\nallow_root = {allow_root}\n\n[rate_limit]\nmax_failures = 100\n"
    );
    let matching = world.write_config("match", &World::source(&probe_images()), &extra);
    let other = world.write_config("other", &World::source(&[face(OTHER, 0)]), &extra);
    let script = module::workspace_root().join("tests/pamtester/run.sh");
    let out = Command::new("sh")
        .arg(&script)
        .arg(module::path())
        .arg(&matching)
        .arg(&other)
        .arg(&user)
        // The forged CPU vendor run.sh sets among tract's variables: the one this CPU is not.
        .env(
            "HOSTILE_X86_KIND",
            match facekey_core::tract_knobs::cpu_vendor() {
                "amd" => "intel",
                _ => "amd",
            },
        )
        .output()
        .expect("run tests/pamtester/run.sh");
    let transcript = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{transcript}");
    if facekey_core::policy::remote_session(&facekey_core::policy::System::real()).is_some() {
        // Face decisions are refused in a remote session, so the script's face cases cannot pass here.
        eprintln!("remote logind session: face cases of run.sh not checked");
        return;
    }
    assert!(out.status.success(), "run.sh failed:\n{transcript}");
    assert!(transcript.contains("all pamtester checks passed"));
}
