//! The module's side of `facekey-check` through real libpam: the real helper decides as the module would
//! (match, another face, notices relayed unless PAM_SILENT), and a helper that hangs, crashes, exits early,
//! prints garbage or speaks another protocol version is answered PAM_AUTHINFO_UNAVAIL within the deadline plus
//! 250 ms, and leaves no child process behind. The module goes through the helper here because of its
//! `use_helper` argument; an unprivileged host takes the same path by itself (packaging/test-install shows it as
//! a real user with the installed package).

use std::ffi::c_int;
use std::path::{Path, PathBuf};
use std::time::Duration;

use facekey_e2e::module;
use facekey_e2e::pam::{
    assert_code, face_decision, Transaction, PAM_AUTHINFO_UNAVAIL, PAM_AUTH_ERR, PAM_SUCCESS,
};
use facekey_e2e::world::{face, probe_images, set_mode, World, ENROLLED, OTHER, PROBE_IMAGE, USER};

/// PAM_SILENT.
const SILENT: c_int = 0x8000;

/// The timeout the services here give the module (`timeout=`), and the most it may take beyond it.
const TIMEOUT: Duration = Duration::from_secs(1);
const SLACK: Duration = Duration::from_millis(250);

/// The helper built beside the module.
fn real_helper() -> PathBuf {
    let path = module::path()
        .parent()
        .expect("the module has a folder")
        .join("facekey-check");
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// A world whose service `sudo` runs the module through the helper at `helper`, the usual person enrolled.
fn world_with_helper(images: &[PathBuf], helper: &Path) -> World {
    let world = World::new();
    world.enrol_default(USER);
    let config = world.write_config("main", &World::source(images), "");
    world.write_module_service(
        "sudo",
        &config,
        &format!(
            "timeout={} use_helper helper={}",
            TIMEOUT.as_secs_f64(),
            helper.display()
        ),
    );
    world
}

/// A stand-in helper: a shell script that first writes its pid beside itself, then runs `body`.
fn fake_helper(world: &World, name: &str, body: &str) -> PathBuf {
    let path = world.path().join(name);
    std::fs::write(&path, format!("#!/bin/sh\necho $$ > \"$0.pid\"\n{body}\n"))
        .expect("write the fake helper");
    set_mode(&path, 0o755);
    path
}

/// The fake helper's process has been reaped: no process, no zombie.
fn assert_reaped(helper: &Path) {
    let pid_file = PathBuf::from(format!("{}.pid", helper.display()));
    let Ok(pid) = std::fs::read_to_string(&pid_file) else {
        // It never ran far enough to write it (killed at once): nothing of it can be left either, since the
        // module waits for every child it starts; but say so, so the test cannot pass vacuously unnoticed.
        panic!("{} did not run", helper.display());
    };
    let proc_dir = PathBuf::from(format!("/proc/{}", pid.trim()));
    assert!(
        !proc_dir.exists(),
        "helper process {} is still there ({})",
        pid.trim(),
        std::fs::read_to_string(proc_dir.join("stat")).unwrap_or_default()
    );
}

fn authenticate(world: &World, flags: c_int) -> (c_int, Duration, Vec<String>) {
    let mut pam = Transaction::start(&world.pam_dir(), "sudo", USER).expect("pam_start_confdir");
    let result = pam.authenticate(flags);
    (result.code, result.elapsed, pam.infos())
}

#[test]
fn the_real_helper_matches_the_enrolled_face_and_relays_its_notices() {
    let world = world_with_helper(&probe_images(), &real_helper());
    let (code, elapsed, infos) = authenticate(&world, 0);
    assert_code(
        code,
        face_decision(PAM_SUCCESS),
        "enrolled face through the helper",
    );
    assert!(elapsed <= TIMEOUT + SLACK, "took {elapsed:?}");
    if code == PAM_SUCCESS {
        assert_eq!(
            infos,
            ["Looking for face...", "Recognised as John Simm"],
            "notices relayed from the helper"
        );
    }
}

#[test]
fn the_real_helper_refuses_another_face_and_keeps_quiet_when_silent() {
    let world = world_with_helper(&[face(OTHER, PROBE_IMAGE)], &real_helper());
    let (code, _, infos) = authenticate(&world, SILENT);
    assert_code(
        code,
        face_decision(PAM_AUTH_ERR),
        "another face through the helper",
    );
    assert!(infos.is_empty(), "PAM_SILENT, yet told: {infos:?}");
}

/// Each broken helper: its script body and what it stands for.
const BROKEN: &[(&str, &str)] = &[
    ("hangs", "exec sleep 30"),
    ("stops_itself", "kill -STOP $$"),
    ("crashes", "kill -SEGV $$"),
    ("exits_early", "exit 0"),
    ("exits_with_an_error", "exit 3"),
    ("prints_garbage", "head -c 100 /dev/urandom; exit 0"),
    (
        "prints_a_long_line",
        "head -c 100000 /dev/zero | tr '\\0' x; exec sleep 30",
    ),
    (
        "speaks_another_protocol",
        r#"echo '{"protocol":999,"body":{"verdict":{"kind":"matched","label":"x","text":"x"}}}'"#,
    ),
    (
        "says_success_in_other_words",
        r#"echo '{"protocol":1,"body":{"verdict":{"kind":"success","label":null,"text":"x"}}}'"#,
    ),
    (
        "refuses",
        r#"echo '{"protocol":1,"body":{"refused":"busy"}}'"#,
    ),
    (
        "notices_then_hangs",
        r#"echo '{"protocol":1,"body":{"notice":"Looking for face..."}}'; exec sleep 30"#,
    ),
];

#[test]
fn a_broken_helper_is_authinfo_unavail_by_the_deadline_and_leaves_no_child() {
    let world = World::new();
    world.enrol_default(USER);
    let config = world.write_config("main", &World::source(&probe_images()), "");
    for (name, body) in BROKEN {
        let helper = fake_helper(&world, name, body);
        world.write_module_service(
            "sudo",
            &config,
            &format!(
                "timeout={} use_helper helper={}",
                TIMEOUT.as_secs_f64(),
                helper.display()
            ),
        );
        let (code, elapsed, _) = authenticate(&world, 0);
        assert_code(code, PAM_AUTHINFO_UNAVAIL, name);
        assert!(
            elapsed <= TIMEOUT + SLACK,
            "{name}: pam_authenticate took {elapsed:?}, more than the timeout + 250 ms"
        );
        assert_reaped(&helper);
    }
}

#[test]
fn a_well_formed_verdict_from_a_helper_maps_to_its_code() {
    let world = World::new();
    world.enrol_default(USER);
    let config = world.write_config("main", &World::source(&probe_images()), "");
    let cases = [
        ("matched", PAM_SUCCESS),
        ("no_match", PAM_AUTH_ERR),
        ("no_face", PAM_AUTH_ERR),
        ("rate_limited", PAM_AUTH_ERR),
        ("not_applicable", PAM_AUTHINFO_UNAVAIL),
        ("unavailable", PAM_AUTHINFO_UNAVAIL),
        ("rate_limit_broken", PAM_AUTHINFO_UNAVAIL),
    ];
    for (kind, expected) in cases {
        let helper = fake_helper(
            &world,
            kind,
            &format!(
                r#"read request; echo '{{"protocol":1,"body":{{"verdict":{{"kind":"{kind}","label":null,"text":"t"}}}}}}'"#
            ),
        );
        world.write_module_service(
            "sudo",
            &config,
            &format!("timeout=1 use_helper helper={}", helper.display()),
        );
        let (code, _, _) = authenticate(&world, 0);
        assert_code(code, expected, kind);
        assert_reaped(&helper);
    }
}

#[test]
fn a_helper_others_can_write_is_not_run() {
    let world = World::new();
    world.enrol_default(USER);
    let config = world.write_config("main", &World::source(&probe_images()), "");
    let helper = fake_helper(
        &world,
        "writable",
        r#"echo '{"protocol":1,"body":{"verdict":{"kind":"matched","label":null,"text":"t"}}}'"#,
    );
    set_mode(&helper, 0o757);
    world.write_module_service(
        "sudo",
        &config,
        &format!("timeout=1 use_helper helper={}", helper.display()),
    );
    let (code, _, _) = authenticate(&world, 0);
    assert_code(code, PAM_AUTHINFO_UNAVAIL, "world-writable helper");
    assert!(
        !PathBuf::from(format!("{}.pid", helper.display())).exists(),
        "the untrusted helper ran"
    );
}

/// facekey-check run by root directly, on the test's configuration (honoured from a caller whose real uid is 0):
/// it decides, and says it decided in a confined process that had given up root.
#[test]
fn the_real_helper_decides_in_a_confined_unprivileged_process() {
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;
    let root = std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false);
    if !root {
        eprintln!("not root: facekey-check ignores a configuration path from this caller; checked in packaging/test-install");
        return;
    }
    for (person, kind) in [(ENROLLED, "matched"), (OTHER, "no_match")] {
        let world = World::new();
        world.enrol_default(USER);
        let config = world.write_config(
            "main",
            &World::source(&[face(person, PROBE_IMAGE), face(person, PROBE_IMAGE + 1)]),
            "",
        );
        let request = format!(
            "{{\"protocol\":1,\"user\":\"{USER}\",\"service\":\"sudo\",\"rhost\":null,\"ruser\":null,\"tty\":null,\
             \"config\":\"{}\",\"timeout_ms\":3000}}\n",
            config.display()
        );
        let mut child = std::process::Command::new(real_helper())
            .env_clear()
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start facekey-check");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(request.as_bytes())
            .expect("write the request");
        let out = child.wait_with_output().expect("facekey-check's answer");
        let text = String::from_utf8_lossy(&out.stdout);
        let verdict = text.lines().last().unwrap_or("");
        assert!(
            verdict.contains(&format!("\"kind\":\"{kind}\"")),
            "{person}: {text}"
        );
        assert!(
            verdict.contains("decided confined: uid ")
                && !verdict.contains("decided confined: uid 0 "),
            "{person}: not decided in a confined, unprivileged process: {verdict}"
        );
        assert!(verdict.contains("no_new_privs true"), "{verdict}");
    }
}
