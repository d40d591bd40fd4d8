//! The `facekey` binary end to end: real images, a real store on disk, real exit codes.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use common::{chips, file_source, repo, stderr, stdout, Env};

fn data(rel: &str) -> PathBuf {
    repo("tests/data/faces").join(rel)
}

fn enrol(env: &Env, user: &str, person: &str) -> std::process::Output {
    env.enrol(user, person)
}

#[test]
fn demo_matches_the_same_person_and_rejects_another() {
    let out = Command::new(env!("CARGO_BIN_EXE_facekey"))
        .arg("demo")
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    let same = text.lines().find(|l| l.contains("(same person)")).unwrap();
    let other = text.lines().find(|l| l.contains("(someone else)")).unwrap();
    assert!(same.contains(": matched 'John Simm'"), "{same}");
    assert!(other.contains(": no match"), "{other}");
}

#[test]
fn add_list_auth_remove_clear_round_trip() {
    let env = Env::new("");
    let out = enrol(&env, "root", "John_Simm");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Added 3 sample(s) for root as 'John_Simm': id 1-3"),
        "{}",
        stdout(&out)
    );

    let mode = std::fs::metadata(env.store_file("root"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    let out = env.run(&["list", "--user", "root", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<u64> = doc["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [1, 2, 3]);
    assert_eq!(doc["samples"][0]["label"], "John_Simm");

    let genuine = file_source(&chips("John_Simm")[5..7]);
    let out = env.run(&["auth", "--user", "root", "--source", &genuine]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stdout(&out).starts_with("matched 'John_Simm'"),
        "{}",
        stdout(&out)
    );

    let impostor = file_source(&chips("John_Salley")[5..6]);
    let out = env.run(&["auth", "--user", "root", "--source", &impostor]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).starts_with("no match"), "{}", stdout(&out));

    let out = env.run(&["remove", "--user", "root", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env.run(&["list", "--user", "root"]);
    assert!(
        !stdout(&out)
            .lines()
            .any(|l| l.trim_start().starts_with("2 ")),
        "{}",
        stdout(&out)
    );
    let out = env.run(&["remove", "--user", "root", "42"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no sample with id 42"),
        "{}",
        stderr(&out)
    );

    let out = env.run(&["clear", "--user", "root", "--yes"]);
    assert!(out.status.success());
    assert!(!env.store_file("root").exists());
    let out = env.run(&["auth", "--user", "root", "--source", &genuine]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("has no enrolled face"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn add_refuses_frames_without_exactly_one_face_and_stores_nothing() {
    let env = Env::new("");
    let dogs = file_source(&[data("photos/dogs.jpg")]);
    let out = env.run(&["add", "--user", "root", "--source", &dogs, "--samples", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("1 frame(s) without a face"),
        "{}",
        stderr(&out)
    );
    let group = file_source(&[data("photos/2008_002506.jpg")]);
    let out = env.run(&[
        "add",
        "--user",
        "root",
        "--source",
        &group,
        "--samples",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("1 with several faces"),
        "{}",
        stderr(&out)
    );
    assert!(!env.store_file("root").exists());
}

#[test]
fn auth_with_no_face_in_view_exits_1() {
    let env = Env::new("");
    assert!(enrol(&env, "root", "John_Simm").status.success());
    let dogs = file_source(&[data("photos/dogs.jpg")]);
    let out = env.run(&["auth", "--user", "root", "--source", &dogs]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).starts_with("no face seen"), "{}", stdout(&out));
}

#[test]
fn any_enrolled_face_among_several_in_the_frame_counts() {
    // One frame decides here: the test is about which face in it counts.
    let env = Env::new("[matching]\nrequired_matches = 1\n");
    assert!(enrol(&env, "root", "John_Simm").status.success());
    // A frame with a stranger on the left and the enrolled person on the right.
    let mut canvas = image::RgbImage::from_pixel(400, 220, image::Rgb([90, 90, 90]));
    let stranger = image::open(&chips("John_Salley")[6]).unwrap().into_rgb8();
    let owner = image::open(&chips("John_Simm")[6]).unwrap().into_rgb8();
    image::imageops::overlay(&mut canvas, &stranger, 30, 35);
    image::imageops::overlay(&mut canvas, &owner, 220, 35);
    let frame = env.dir.path().join("two-faces.png");
    canvas.save(&frame).unwrap();
    let out = env.run(&["auth", "--user", "root", "--source", &file_source(&[frame])]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    // Strangers alone in a group photo do not match.
    let group = file_source(&[data("photos/2008_002506.jpg")]);
    let out = env.run(&["auth", "--user", "root", "--source", &group]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("3 face(s) seen"), "{}", stdout(&out));
}

#[test]
fn unknown_and_hostile_user_names_are_refused() {
    let env = Env::new("");
    for name in ["no_such_user_facekey", "../root", "a/b"] {
        let out = env.run(&["list", "--user", name]);
        assert_eq!(out.status.code(), Some(2), "{name}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.starts_with("facekey: "), "{err}");
    }
}

#[test]
fn malformed_config_is_refused_naming_file_line_and_key() {
    let env = Env::new("[detection]\nmax_hieght = 10\n");
    let out = env.run(&["auth", "--user", "root"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("config.toml:6:") && err.contains("detection.max_hieght"),
        "{err}"
    );
}

#[test]
fn world_writable_config_is_refused() {
    let env = Env::new("");
    std::fs::set_permissions(&env.config, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = env.run(&["auth", "--user", "root"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("config.toml"), "{}", stderr(&out));
}

#[test]
fn corrupt_enrolment_is_unavailable_and_left_untouched() {
    let env = Env::new("");
    assert!(enrol(&env, "root", "John_Simm").status.success());
    let path = env.store_file("root");
    std::fs::write(&path, "format = 1\nuser = \"root\"\n[embedder\n").unwrap();
    let before = std::fs::read(&path).unwrap();
    let genuine = file_source(&chips("John_Simm")[5..7]);
    let out = env.run(&["auth", "--user", "root", "--source", &genuine]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout(&out).contains("root.toml"), "{}", stdout(&out));
    // Adding to it is refused too, and the file is not rewritten.
    assert_eq!(enrol(&env, "root", "John_Simm").status.code(), Some(2));
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn clear_without_yes_on_a_pipe_refuses() {
    let env = Env::new("");
    assert!(enrol(&env, "root", "John_Simm").status.success());
    let out = env.run(&["clear", "--user", "root"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(env.store_file("root").exists());
}

#[test]
fn missing_source_is_unavailable() {
    let env = Env::new("");
    assert!(enrol(&env, "root", "John_Simm").status.success());
    let out = env.run(&[
        "auth",
        "--user",
        "root",
        "--source",
        "file:/nonexistent/face.jpg",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("/nonexistent/face.jpg"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn auth_applies_the_module_policy_and_rate_limit() {
    let env = Env::new("");
    // Two failures allowed in the window, as an administrator could set.
    let config = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        config.replace("[rate_limit]\n", "[rate_limit]\nmax_failures = 2\n"),
    )
    .unwrap();
    assert!(enrol(&env, "root", "John_Simm").status.success());
    let genuine = file_source(&chips("John_Simm")[5..7]);
    let impostor = file_source(&chips("John_Salley")[5..6]);

    // A service the configuration does not list: not applicable, whatever the face.
    let out = env.run(&[
        "auth",
        "--user",
        "root",
        "--service",
        "sshd",
        "--source",
        &genuine,
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stdout(&out).starts_with("not applicable: service \"sshd\""),
        "{}",
        stdout(&out)
    );

    // Two failures, then even the genuine face is refused without a decision.
    for _ in 0..2 {
        let out = env.run(&["auth", "--user", "root", "--source", &impostor]);
        assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    }
    let out = env.run(&["auth", "--user", "root", "--source", &genuine]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).starts_with("rate limited"), "{}", stdout(&out));
}

#[test]
fn identify_names_the_enrolled_person_in_view_and_nobody_for_a_stranger() {
    let env = Env::new("");
    for (user, person) in [
        ("root", "John_Simm"),
        ("daemon", "John_Salley"),
        ("bin", "John_Savage"),
    ] {
        let out = enrol(&env, user, person);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    // Three other photos of John Salley as the frames of one look at the camera.
    let salley = file_source(&chips("John_Salley")[5..8]);
    let out = env.run(&["identify", "--source", &salley, "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["identified"], "daemon", "{doc}");
    assert_eq!(doc["users"], 3);
    // The threshold tightens with three users: 0.42 - 0.066 log10(3).
    let t = doc["threshold"].as_f64().unwrap();
    assert!((t - 0.3885).abs() < 1e-3, "{t}");
    assert!(doc["score"].as_f64().unwrap() < t);
    assert!(doc["ahead_by"].as_f64().unwrap() >= 0.1, "{doc}");

    // Someone nobody enrolled: nobody, exit 1.
    let stranger = file_source(&chips("John_Shimkus")[5..8]);
    let out = env.run(&["identify", "--source", &stranger]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).starts_with("nobody identified among 3 enrolled user(s)"),
        "{}",
        stdout(&out)
    );
}

/// `facekey` with its standard output sent to `stdout` (the default config of `env`).
fn run_with_stdout(env: &Env, args: &[&str], out: std::process::Stdio) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_facekey"))
        .arg("--config")
        .arg(env.path("config.toml"))
        .args(args)
        .stdout(out)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_full_or_closed_standard_output_is_an_error_not_a_panic() {
    let env = Env::new("");
    enrol(&env, "root", "John_Simm");
    // A full device: the listing cannot be written; exit 2 with a reason, the enrolment untouched.
    let before = std::fs::read(env.store_file("root")).unwrap();
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = run_with_stdout(&env, &["list", "--user", "root"], full.into())
        .wait_with_output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("the output could not be written"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(std::fs::read(env.store_file("root")).unwrap(), before);
    // A reader that went away (`| head -0`): the command's own exit code, nothing on standard error.
    let mut child = run_with_stdout(&env, &["config", "show"], std::process::Stdio::piped());
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.is_empty(), "{err}");
}

/// The datagrams a syslog listener at `socket` has received so far.
fn received(socket: &std::os::unix::net::UnixDatagram) -> Vec<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = socket.recv(&mut buf) {
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    got
}

#[test]
fn every_change_to_who_can_get_in_is_audited_to_syslog_authpriv() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("log.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket.set_nonblocking(true).unwrap();
    let env = Env::new(&format!(
        "[general]\naudit_socket = \"{}\"\n",
        socket_path.display()
    ));
    let out = enrol(&env, "root", "John_Simm");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env.run(&["remove", "--user", "root", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env.run(&["clear", "--user", "root", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Reading changes nothing and is not audited.
    env.run(&["list", "--user", "root"]);
    let records = received(&socket);
    assert_eq!(records.len(), 3, "{records:#?}");
    for r in &records {
        // <85>: facility AUTHPRIV (10) * 8 + severity notice (5).
        assert!(r.starts_with("<85>"), "{r}");
        assert!(r.contains("facekey["), "{r}");
        assert!(r.contains(" by=uid 0 (root)"), "{r}");
    }
    assert!(
        records[0].contains("audit: add user=root by="),
        "{}",
        records[0]
    );
    assert!(records[0].contains("3 sample(s) labelled \"John_Simm\", id 1-3, embedder sha256 "));
    assert!(
        records[1].contains("audit: remove user=root by=") && records[1].ends_with(": sample 1")
    );
    assert!(
        records[2].contains("audit: clear user=root by="),
        "{}",
        records[2]
    );
    // No embedding in any record: no run of decimal numbers.
    assert!(records.iter().all(|r| !r.contains("0.0")), "{records:#?}");

    // With nobody listening, the change is made and the record is shown as a warning.
    drop(socket);
    std::fs::remove_file(&socket_path).unwrap();
    let out = enrol(&env, "root", "John_Simm");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("warning: the audit record was not sent")
            && stderr(&out).contains("audit: add user=root"),
        "{}",
        stderr(&out)
    );
    assert!(env.store_file("root").exists());
}

#[test]
fn a_sheet_of_faces_buys_no_more_than_three_comparisons_per_frame() {
    let env = Env::new("[matching]\nrequired_matches = 1\n");
    assert!(enrol(&env, "root", "John_Simm").status.success());
    // Four strangers at full size and the enrolled person smaller: only the three largest faces count.
    let strangers = [
        "John_Salley",
        "John_Shimkus",
        "John_Savage",
        "John_Schneider",
    ];
    let sheet = |owner_side: u32| {
        let mut canvas = image::RgbImage::from_pixel(900, 220, image::Rgb([90, 90, 90]));
        for (i, who) in strangers.iter().enumerate() {
            let face = image::open(&chips(who)[7 + i % 2]).unwrap().into_rgb8();
            image::imageops::overlay(&mut canvas, &face, 10 + 170 * i as i64, 35);
        }
        let owner = image::open(&chips("John_Simm")[6]).unwrap().into_rgb8();
        let owner = image::imageops::resize(
            &owner,
            owner_side,
            owner_side,
            image::imageops::FilterType::Triangle,
        );
        image::imageops::overlay(&mut canvas, &owner, 700, 35);
        canvas
    };
    let small = env.dir.path().join("sheet-small-owner.png");
    sheet(110).save(&small).unwrap();
    let out = env.run(&["auth", "--user", "root", "--source", &file_source(&[small])]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("3 face(s) seen"), "{}", stdout(&out));
    // The same sheet with the enrolled person the largest face: matched.
    let large = env.dir.path().join("sheet-large-owner.png");
    sheet(180).save(&large).unwrap();
    let out = env.run(&["auth", "--user", "root", "--source", &file_source(&[large])]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}
