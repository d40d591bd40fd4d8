//! The administrator's commands end to end: `facekey doctor` against a made-up system (PAM files, module,
//! device folder) with a real configuration, real models and a real enrolment; `facekey config show|check`;
//! `facekey enable|disable` on real files, with their effect seen through `facekey auth`, the decision the
//! PAM module runs.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use facekey_config::Config;

mod common;
use common::{chip, repo};

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// The common-auth pam-auth-update writes with the facekey profile enabled.
const COMMON_AUTH: &str = "\
# here are the per-package modules (the \"Primary\" block)
auth\t[success=2 default=ignore]\tpam_facekey.so
auth\t[success=1 default=ignore]\tpam_unix.so nullok try_first_pass
# here's the fallback if no module succeeds
auth\trequisite\t\t\tpam_deny.so
auth\trequired\t\t\tpam_permit.so
";

/// A system under a temporary root: /etc/pam.d with sudo and sshd including common-auth, the module
/// and the pam-auth-update profile in place, an empty /dev; a configuration of its own whose store is
/// inside the root, whose models are the repository's and whose source replays a face of `root`.
struct System {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl System {
    fn new() -> System {
        System::with_config("")
    }

    fn with_config(extra: &str) -> System {
        let dir = tempfile::tempdir().unwrap();
        chmod(dir.path(), 0o755);
        let root = dir.path();
        for d in [
            "etc/pam.d",
            "usr/share/pam-configs",
            "lib/x86_64-linux-gnu/security",
            "usr/libexec/facekey",
            "dev",
        ] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::write(root.join("etc/pam.d/common-auth"), COMMON_AUTH).unwrap();
        for service in ["sudo", "sshd"] {
            fs::write(
                root.join("etc/pam.d").join(service),
                "#%PAM-1.0\n@include common-auth\n@include common-account\n",
            )
            .unwrap();
        }
        fs::copy(
            repo("packaging/pam-configs/facekey"),
            root.join("usr/share/pam-configs/facekey"),
        )
        .unwrap();
        let module = root.join("lib/x86_64-linux-gnu/security/pam_facekey.so");
        fs::write(&module, b"\x7fELF").unwrap();
        chmod(&module, 0o644);
        // The real helper, built beside this facekey, installed as the package does.
        let helper = root.join("usr/libexec/facekey/facekey-check");
        let built = Path::new(env!("CARGO_BIN_EXE_facekey")).with_file_name("facekey-check");
        fs::copy(&built, &helper)
            .unwrap_or_else(|e| panic!("{} (built with the workspace): {e}", built.display()));
        chmod(&helper, 0o4755);
        let config = root.join("config.toml");
        let system = System { config, dir };
        // Two frames of one look: the shipped rule needs two.
        let source = format!(
            "file:{},{}",
            chip("John_Simm", 5).display(),
            chip("John_Simm", 6).display()
        );
        system.write_config(&source, &repo("models"), extra);
        system
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn faces(&self) -> PathBuf {
        self.root().join("faces")
    }

    /// The configuration: `source`, the models in `models`, the store and the rate-limit state under the
    /// root, then `extra` (sections not named here), and faces of root allowed (`facekey auth` applies the
    /// module's policy, and these tests enrol root).
    fn write_config(&self, source: &str, models: &Path, extra: &str) {
        let extra = if extra.contains("[pam]\n") {
            extra.replacen("[pam]\n", "[pam]\nallow_root = true\n", 1)
        } else {
            format!("{extra}[pam]\nallow_root = true\n")
        };
        fs::write(
            &self.config,
            format!(
                "[camera]\nsource = \"{source}\"\n[storage]\nfaces_dir = \"{}\"\n[models]\ndir = \"{}\"\n\
                 [rate_limit]\nstate_dir = \"{}\"\n{extra}",
                self.faces().display(),
                models.canonicalize().unwrap().display(),
                self.root().join("run").display(),
            ),
        )
        .unwrap();
        chmod(&self.config, 0o644);
    }

    fn facekey(&self, args: &[&str]) -> Output {
        common::facekey(&self.config, args)
    }

    fn doctor(&self) -> Output {
        let root = self.root().display().to_string();
        self.facekey(&["doctor", "--root", &root])
    }

    /// Enrol `root` (an account every system has) with three chips of John Simm.
    fn enrol(&self) {
        let source = format!(
            "file:{},{},{}",
            chip("John_Simm", 0).display(),
            chip("John_Simm", 1).display(),
            chip("John_Simm", 2).display()
        );
        let out = self.facekey(&[
            "add",
            "--user",
            "root",
            "--source",
            &source,
            "--samples",
            "3",
        ]);
        assert!(out.status.success(), "{}", text(&out));
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The doctor's line for `area` whose message contains `needle`.
fn line<'a>(report: &'a str, status: &str, area: &str, needle: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.starts_with(&format!("{status:<5} {area:<11} ")) && l.contains(needle))
        .unwrap_or_else(|| panic!("no `{status} {area}` line with {needle:?} in:\n{report}"))
}

// --- doctor -----------------------------------------------------------------------------------------

#[test]
fn doctor_warns_of_a_threshold_looser_than_the_measured_default() {
    // facekey 0.1 and 0.2 shipped threshold = 0.5 with one frame; an edited configuration keeps it on upgrade.
    let old = System::with_config(
        "[matching]\nthreshold = 0.5\nrequired_matches = 1\nrule = \"frames\"\n",
    );
    let report = text(&old.doctor());
    let warned = line(
        &report,
        "warn",
        "matching",
        "threshold 0.5 is looser than embedder \"int8\"'s calibrated 0.42",
    );
    assert!(
        warned.contains("83 of 15,600 impostor attempts"),
        "{warned}"
    );
    assert!(warned.contains("rule = \"mean-of-best\""), "{warned}");
    let shipped = System::new();
    let report = text(&shipped.doctor());
    line(
        &report,
        "ok",
        "matching",
        "rule: \"mean-of-best\" over 2 frame(s), threshold 0.42 (the embedder's calibrated one)",
    );
}

#[test]
fn doctor_fails_a_helper_of_another_release_and_warns_when_it_is_not_setuid() {
    let system = System::new();
    system.enrol();
    let helper = system.root().join("usr/libexec/facekey/facekey-check");
    chmod(&helper, 0o755);
    let report = text(&system.doctor());
    line(&report, "warn", "helper", "is not setuid");
    fs::remove_file(&helper).unwrap();
    fs::write(&helper, "#!/bin/sh\necho facekey-check protocol 0\n").unwrap();
    chmod(&helper, 0o4755);
    let out = system.doctor();
    let report = text(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    line(&report, "FAIL", "helper", "different releases");
    chmod(&helper, 0o4757);
    line(&text(&system.doctor()), "FAIL", "helper", "writable");
}

#[test]
fn doctor_passes_a_complete_set_up_and_names_the_services() {
    let system = System::new();
    system.enrol();
    let out = system.doctor();
    let report = text(&out);
    assert_eq!(out.status.code(), Some(0), "{report}");
    line(&report, "ok", "config", "valid");
    line(&report, "ok", "detector", "matches the pinned hash");
    line(&report, "ok", "embedder", "matches the pinned hash");
    line(&report, "ok", "enrolment", "root: 3 sample(s)");
    line(&report, "ok", "module", "pam_facekey.so");
    line(
        &report,
        "ok",
        "pam",
        "enabled in common-auth (common-auth:2",
    );
    line(&report, "ok", "stack", "the password module decides");
    // sshd runs the module through common-auth but is never in [pam] services.
    let services = line(&report, "ok", "services", "a face is accepted by: sudo");
    assert!(services.contains("\"unavailable\" to sshd"), "{services}");
    line(&report, "warn", "source", "replays image files");
    assert!(!report.contains("FAIL"), "{report}");
}

#[test]
fn doctor_without_facekey_in_pam_fails_and_says_how_to_enable_it() {
    let system = System::new();
    system.enrol();
    fs::write(
        system.root().join("etc/pam.d/common-auth"),
        "auth [success=1 default=ignore] pam_unix.so nullok\nauth requisite pam_deny.so\nauth required pam_permit.so\n",
    )
    .unwrap();
    let out = system.doctor();
    let report = text(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    let pam = line(&report, "FAIL", "pam", "in no PAM stack");
    assert!(
        pam.ends_with("Fix: pam-auth-update --enable facekey"),
        "{pam}"
    );
}

#[test]
fn doctor_flags_a_required_facekey_line_as_a_lockout() {
    let system = System::new();
    system.enrol();
    fs::write(
        system.root().join("etc/pam.d/sudo"),
        "auth required pam_facekey.so\n@include common-auth\n",
    )
    .unwrap();
    let out = system.doctor();
    let report = text(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    let stack = line(&report, "FAIL", "stack", "sudo:1: required pam_facekey.so");
    assert!(stack.contains("refuse the login"), "{stack}");
    // The pam-auth-update line in common-auth is still judged on its own, and is fine.
    line(&report, "ok", "stack", "common-auth:2");
}

#[test]
fn doctor_fails_when_no_listed_service_runs_the_module() {
    let system = System::with_config("[pam]\nservices = [\"login\"]\n");
    system.enrol();
    let report = text(&system.doctor());
    let services = line(&report, "FAIL", "services", "no service both runs");
    assert!(services.contains("sshd, sudo"), "{services}");
}

#[test]
fn doctor_reports_disabled_with_the_command_that_enables() {
    let system = System::with_config("[general]\ndisabled = true\n");
    system.enrol();
    let out = system.doctor();
    let report = text(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    let enabled = line(&report, "FAIL", "enabled", "disabled = true");
    assert!(enabled.ends_with("Fix: facekey enable"), "{enabled}");
}

#[test]
fn doctor_refuses_a_writable_configuration_and_keeps_checking_with_defaults() {
    let system = System::new();
    chmod(&system.config, 0o666);
    let out = system.doctor();
    let report = text(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    let config = line(&report, "FAIL", "config", "writable by group or others");
    assert!(config.contains("chmod go-w"), "{config}");
    // The rest still ran (with the built-in defaults: the shipped model folder, /etc/facekey/faces).
    line(&report, "ok", "module", "pam_facekey.so");
}

#[test]
fn doctor_finds_a_tampered_model() {
    let models = tempfile::tempdir().unwrap();
    chmod(models.path(), 0o755);
    for name in [
        "yunet_2023mar_fp32_dynamic.onnx",
        "dlib_resnet_faceapi_static_qdq_s8.onnx",
    ] {
        fs::copy(repo("models").join(name), models.path().join(name)).unwrap();
        chmod(&models.path().join(name), 0o644);
    }
    let detector = models.path().join("yunet_2023mar_fp32_dynamic.onnx");
    let mut bytes = fs::read(&detector).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&detector, bytes).unwrap();
    let system = System::new();
    let source = format!("file:{}", chip("John_Simm", 5).display());
    system.write_config(&source, models.path(), "");
    let report = text(&system.doctor());
    let detector_line = line(&report, "FAIL", "detector", "SHA-256 is");
    assert!(
        detector_line.contains("apt-get install --reinstall facekey"),
        "{detector_line}"
    );
    line(&report, "ok", "embedder", "matches the pinned hash");
}

#[test]
fn doctor_wants_enrolments_private() {
    let system = System::new();
    system.enrol();
    let file = system.faces().join("root.toml");
    chmod(&file, 0o644);
    let report = text(&system.doctor());
    let enrolment = line(&report, "FAIL", "enrolment", "readable by others");
    assert!(enrolment.contains("chmod 600"), "{enrolment}");

    chmod(&file, 0o600);
    chmod(&system.faces(), 0o755);
    let report = text(&system.doctor());
    let store = line(&report, "FAIL", "store", "can be listed or read by others");
    assert!(store.contains("chmod 700"), "{store}");
}

#[test]
fn doctor_without_enrolments_or_module_says_what_to_do() {
    let system = System::new();
    fs::remove_file(
        system
            .root()
            .join("lib/x86_64-linux-gnu/security/pam_facekey.so"),
    )
    .unwrap();
    let out = system.doctor();
    let report = text(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    let store = line(&report, "FAIL", "store", "nobody is enrolled");
    assert!(store.contains("facekey add --user NAME"), "{store}");
    let module = line(&report, "FAIL", "module", "pam_facekey.so is in none of");
    assert!(module.contains("--reinstall facekey"), "{module}");
}

#[test]
fn doctor_with_a_camera_source_and_no_camera_fails() {
    let system = System::new();
    system.enrol();
    system.write_config("v4l2:/dev/video0", &repo("models"), "");
    let out = system.doctor();
    let report = text(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    line(&report, "FAIL", "cameras", "no /dev/video* node");
    line(
        &report,
        "FAIL",
        "source",
        "/dev/video0 (camera.source) does not exist",
    );
    // A node under the root is found for the configured /dev/video0, listed but not opened (it is not
    // this machine's camera), so it cannot be used.
    fs::write(system.root().join("dev/video0"), "").unwrap();
    let report = text(&system.doctor());
    line(&report, "FAIL", "cameras", "1 node(s), 0 usable");
    line(&report, "FAIL", "source", "/dev/video0: not opened");
}

#[test]
fn doctor_json_has_every_check() {
    let system = System::new();
    system.enrol();
    let root = system.root().display().to_string();
    let out = system.facekey(&["doctor", "--json", "--root", &root]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["passed"], true);
    let checks = doc["checks"].as_array().unwrap();
    let areas: Vec<&str> = checks.iter().map(|c| c["area"].as_str().unwrap()).collect();
    for area in [
        "config",
        "enabled",
        "detector",
        "embedder",
        "store",
        "enrolment",
        "cameras",
        "source",
        "infrared",
        "module",
        "helper",
        "pam",
        "stack",
        "services",
        "state",
    ] {
        assert!(areas.contains(&area), "{area} missing from {areas:?}");
    }
    assert!(checks
        .iter()
        .all(|c| ["ok", "warn"].contains(&c["status"].as_str().unwrap())));
}

// --- config show / check -------------------------------------------------------------------------

#[test]
fn config_show_prints_the_effective_configuration_and_marks_what_differs() {
    let system = System::with_config("[matching]\nthreshold = 0.45\n");
    let out = system.facekey(&["config", "show"]);
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        shown.contains("threshold = 0.45  # default: not set"),
        "{shown}"
    );
    assert!(
        shown.contains("timeout = 4.0\n"),
        "defaults are filled in: {shown}"
    );
    // What it prints is itself a configuration equal to the effective one.
    let reparsed = Config::from_toml_str(&shown, Path::new("shown")).unwrap();
    assert_eq!(reparsed, Config::load(&system.config).unwrap());
}

#[test]
fn config_check_accepts_a_valid_file() {
    let system = System::new();
    let out = system.facekey(&["config", "check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains(": valid"), "{}", text(&out));
}

#[test]
fn config_check_reports_the_line_of_an_error_and_a_refusal_together() {
    let system = System::with_config("[matching]\nthreshhold = 0.4\n");
    chmod(&system.config, 0o664);
    let out = system.facekey(&["config", "check"]);
    let report = text(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(report.contains("writable by group or others"), "{report}");
    assert!(report.contains("threshhold"), "{report}");
    assert!(
        report.contains(":10:"),
        "line number of the bad key: {report}"
    );
}

#[test]
fn config_check_of_a_named_missing_file_fails() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_facekey"))
        .arg("--config")
        .arg(dir.path().join("absent.toml"))
        .args(["config", "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

// --- enable / disable ------------------------------------------------------------------------------

#[test]
fn disable_keeps_comments_and_mode_and_the_decision_becomes_unavailable() {
    let system = System::new();
    system.enrol();
    let original = format!(
        "# Site policy: ask Alice before changing.\n[general]\n# flipped by facekey\ndisabled = false # keep\n\n{}",
        fs::read_to_string(&system.config).unwrap()
    );
    fs::write(&system.config, &original).unwrap();
    chmod(&system.config, 0o640);

    let matched = system.facekey(&["auth", "--user", "root"]);
    assert_eq!(matched.status.code(), Some(0), "{}", text(&matched));

    let out = system.facekey(&["disable"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("Face authentication is off"),
        "{}",
        text(&out)
    );
    let now = fs::read_to_string(&system.config).unwrap();
    assert_eq!(
        now,
        original.replace("disabled = false # keep", "disabled = true # keep")
    );
    assert_eq!(fs::metadata(&system.config).unwrap().mode() & 0o7777, 0o640);
    // No temporary file left next to it.
    let names: Vec<String> = fs::read_dir(system.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("config.toml"))
        .collect();
    assert_eq!(names, ["config.toml"]);

    let refused = system.facekey(&["auth", "--user", "root"]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(text(&refused).contains("disabled"), "{}", text(&refused));

    let out = system.facekey(&["enable"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(fs::read_to_string(&system.config).unwrap(), original);
    let matched = system.facekey(&["auth", "--user", "root"]);
    assert_eq!(matched.status.code(), Some(0), "{}", text(&matched));
}

#[test]
fn switching_to_the_current_state_does_not_rewrite_the_file() {
    let system = System::new();
    let before = fs::metadata(&system.config).unwrap();
    let out = system.facekey(&["enable"]);
    assert!(text(&out).contains("already on"), "{}", text(&out));
    let after = fs::metadata(&system.config).unwrap();
    assert_eq!(before.ino(), after.ino());
    assert_eq!(before.mtime_nsec(), after.mtime_nsec());
}

#[test]
fn disable_without_a_file_writes_the_shipped_configuration_disabled() {
    let dir = tempfile::tempdir().unwrap();
    chmod(dir.path(), 0o755);
    let path = dir.path().join("config.toml");
    let run = |cmd: &str| {
        Command::new(env!("CARGO_BIN_EXE_facekey"))
            .arg("--config")
            .arg(&path)
            .arg(cmd)
            .output()
            .unwrap()
    };
    let out = run("enable");
    assert!(out.status.success(), "{}", text(&out));
    assert!(!path.exists(), "enabling needs no file");

    let out = run("disable");
    assert!(out.status.success(), "{}", text(&out));
    let written = fs::read_to_string(&path).unwrap();
    assert_eq!(
        written,
        facekey_config::DEFAULT_CONFIG_TOML.replacen("disabled = false", "disabled = true", 1)
    );
    assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o644);
    assert!(Config::load(&path).unwrap().general.disabled);
}

#[test]
fn a_file_facekey_would_not_trust_is_not_edited() {
    let system = System::new();
    chmod(&system.config, 0o666);
    let before = fs::read_to_string(&system.config).unwrap();
    let out = system.facekey(&["disable"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("chmod go-w"), "{}", text(&out));
    assert_eq!(fs::read_to_string(&system.config).unwrap(), before);
}

#[test]
fn enable_refuses_an_invalid_file_but_disable_still_writes_it() {
    let system = System::with_config("[general]\ndisabled = true\n[matching]\nthreshold = 7\n");
    let before = fs::read_to_string(&system.config).unwrap();
    // Enabling would enable nothing: the module refuses an invalid file.
    let out = system.facekey(&["enable"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("fix it first"), "{}", text(&out));
    assert_eq!(fs::read_to_string(&system.config).unwrap(), before);
    fs::write(
        &system.config,
        before.replace("disabled = true", "disabled = false"),
    )
    .unwrap();

    let out = system.facekey(&["disable"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("not valid"), "{}", text(&out));
    let now = fs::read_to_string(&system.config).unwrap();
    assert!(now.contains("disabled = true"), "{now}");

    let out = system.facekey(&["enable"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("fix it first"), "{}", text(&out));
    assert_eq!(fs::read_to_string(&system.config).unwrap(), now);
}

#[test]
fn a_file_that_is_not_toml_is_left_alone() {
    let system = System::new();
    fs::write(&system.config, "[general\ndisabled = false\n").unwrap();
    let out = system.facekey(&["disable"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("not valid TOML"), "{}", text(&out));
    assert_eq!(
        fs::read_to_string(&system.config).unwrap(),
        "[general\ndisabled = false\n"
    );
}
