//! `facekey devices`, `facekey test` and `facekey snapshot` end to end: the real binary, real
//! faces replayed from files (these machines have no camera), real PNGs on disk.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use common::{chips, text, Env};

/// These tests are about what `facekey test` and `add` show and where they parse frames, one frame deciding; the
/// shipped rule (two frames) has its own tests in facekey_core::rule, cli.rs and eval/tests/accuracy.rs.
const ONE_FRAME: &str = "[matching]\nrequired_matches = 1\n";

fn file_source(paths: &[&Path]) -> String {
    common::file_source(paths)
}

fn enrol_simm(env: &Env) {
    let out = env.enrol("root", "John_Simm");
    assert!(out.status.success(), "{}", text(&out));
}

fn frame_lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.starts_with("frame "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn devices_lists_what_there_is_and_names_the_configured_source() {
    let env = Env::new("[camera]\nsource = \"v4l2:/dev/video7\"\n");
    let out = env.run(&["devices"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Configured source: v4l2:/dev/video7"),
        "{stdout}"
    );
    let json = env.run(&["devices", "--json"]);
    assert!(json.status.success(), "{}", text(&json));
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(doc["configured_source"], "v4l2:/dev/video7");
    assert!(doc["devices"].is_array());
}

#[test]
fn test_prints_a_line_per_frame_and_the_decision_then_writes_an_annotated_png() {
    let env = Env::new(ONE_FRAME);
    enrol_simm(&env);
    let other = chips("John_Salley");
    let simm = chips("John_Simm");
    let source = file_source(&[&other[0], &simm[10]]);
    let png = env.path("test.png");
    let out = env.run(&[
        "test",
        "--user",
        "root",
        "--source",
        &source,
        "--snapshot",
        png.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let lines = frame_lines(&out);
    assert_eq!(lines.len(), 2, "{}", text(&out));
    assert!(
        lines[0].contains("faces 1") && lines[0].ends_with("no match"),
        "{}",
        lines[0]
    );
    assert!(lines[1].ends_with("match 1/1"), "{}", lines[1]);
    for line in &lines {
        assert!(
            line.contains("brightness") && line.contains("dark"),
            "{line}"
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Decision: matched 'John_Simm'"), "{stdout}");
    assert!(stdout.contains("Source: replay of 2 images"), "{stdout}");
    // The picture: the chip's size, private, with the green box of the match drawn on it.
    let mode = std::fs::metadata(&png).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let image = image::open(&png).unwrap().into_rgb8();
    let original = image::open(&simm[10]).unwrap().into_rgb8();
    assert_eq!(image.dimensions(), original.dimensions());
    let green = image.pixels().filter(|p| p.0 == [40, 220, 60]).count();
    assert!(green > 100, "{green} green pixels");
}

#[test]
fn test_shows_an_unchanging_face_refused() {
    let env = Env::new("[matching]\nrequired_matches = 2\n");
    enrol_simm(&env);
    let simm = chips("John_Simm");
    let source = file_source(&[&simm[10], &simm[10], &simm[10]]);
    let out = env.run(&["test", "--user", "root", "--source", &source]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let lines = frame_lines(&out);
    assert!(lines[0].ends_with("match 1/2"), "{}", lines[0]);
    assert!(lines[1].contains("change  0.00"), "{}", lines[1]);
    assert!(
        lines[1].ends_with("match refused: face unchanged"),
        "{}",
        lines[1]
    );
    assert!(
        text(&out).contains("2 matching face(s) refused as unchanged"),
        "{}",
        text(&out)
    );
}

#[test]
fn test_counts_dark_frames() {
    let env = Env::new(ONE_FRAME);
    enrol_simm(&env);
    let dark = env.path("dark.png");
    image::RgbImage::from_pixel(150, 150, image::Rgb([8, 8, 8]))
        .save(&dark)
        .unwrap();
    let simm = chips("John_Simm");
    let source = file_source(&[&dark, &simm[10]]);
    let out = env.run(&["test", "--user", "root", "--source", &source]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let lines = frame_lines(&out);
    assert!(lines[0].ends_with("dark, skipped"), "{}", lines[0]);
    assert!(lines[0].contains("dark 100%"), "{}", lines[0]);
    assert!(
        text(&out).contains("Frames: 2 read, 1 dark"),
        "{}",
        text(&out)
    );
}

#[test]
fn test_without_an_enrolment_shows_the_frames_and_exits_2() {
    let env = Env::new(ONE_FRAME);
    let simm = chips("John_Simm");
    let source = file_source(&[&simm[10]]);
    let out = env.run(&["test", "--user", "root", "--source", &source]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("has no enrolled face"),
        "{}",
        text(&out)
    );
    let lines = frame_lines(&out);
    assert_eq!(lines.len(), 1);
    assert!(lines[0].contains("faces 1"), "{}", lines[0]);
}

#[test]
fn test_on_a_missing_camera_is_unavailable_with_the_reason() {
    let env = Env::new(ONE_FRAME);
    enrol_simm(&env);
    let out = env.run(&["test", "--user", "root", "--source", "v4l2:/dev/video-none"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("/dev/video-none: no such device"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_file_that_is_not_a_camera_is_refused_by_name() {
    let env = Env::new(ONE_FRAME);
    enrol_simm(&env);
    let out = env.run(&["test", "--user", "root", "--source", "v4l2:/dev/null"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("/dev/null: not a V4L2 device"),
        "{}",
        text(&out)
    );
}

#[test]
fn snapshot_skips_dark_frames_and_writes_a_private_png() {
    let env = Env::new(ONE_FRAME);
    let dark = env.path("dark.png");
    image::RgbImage::from_pixel(150, 150, image::Rgb([3, 3, 3]))
        .save(&dark)
        .unwrap();
    let simm = chips("John_Simm");
    let source = file_source(&[&dark, &simm[10]]);
    let png = env.path("snap.png");
    let out = env.run(&["snapshot", "--source", &source, "-o", png.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("Skipped 1 dark frame(s) first"),
        "{}",
        text(&out)
    );
    let mode = std::fs::metadata(&png).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let saved = image::open(&png).unwrap().into_rgb8();
    let original = image::open(&simm[10]).unwrap().into_rgb8();
    assert_eq!(saved, original);
}

#[test]
fn snapshot_replaces_a_planted_symlink_instead_of_writing_through_it() {
    let env = Env::new(ONE_FRAME);
    let victim = env.path("victim");
    std::fs::write(&victim, b"root:secret\n").unwrap();
    let png = env.path("snap.png");
    std::os::unix::fs::symlink(&victim, &png).unwrap();
    let simm = chips("John_Simm");
    let source = file_source(&[&simm[10]]);
    let out = env.run(&["snapshot", "--source", &source, "-o", png.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read(&victim).unwrap(), b"root:secret\n");
    let meta = std::fs::symlink_metadata(&png).unwrap();
    assert!(meta.file_type().is_file(), "the link itself is replaced");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(
        image::open(&png).unwrap().into_rgb8(),
        image::open(&simm[10]).unwrap().into_rgb8()
    );
    // Into a folder that does not exist: a clear error, nothing left behind.
    let missing = env.path("no/such/dir/x.png");
    let out = env.run(&[
        "snapshot",
        "--source",
        &source,
        "-o",
        missing.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("no/such/dir/x.png"), "{}", text(&out));
    let leftovers: Vec<_> = std::fs::read_dir(env.path(""))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".facekey-snapshot-")
        })
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn snapshot_of_only_dark_frames_saves_one_and_warns_about_the_emitter() {
    let env = Env::new(ONE_FRAME);
    let dark = env.path("dark.png");
    image::RgbImage::from_pixel(64, 48, image::Rgb([2, 2, 2]))
        .save(&dark)
        .unwrap();
    let png = env.path("snap.png");
    let source = file_source(&[&dark, &dark]);
    let out = env.run(&["snapshot", "--source", &source, "-o", png.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("emitter may be off"), "{}", text(&out));
    assert!(png.exists());
}

/// The uid a "confined: uid N ..." report names (the account the frames were parsed as).
fn confined_uid(text: &str, marker: &str) -> u32 {
    let rest = &text[text
        .find(marker)
        .unwrap_or_else(|| panic!("no '{marker}' in: {text}"))
        + marker.len()..];
    rest.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no uid after '{marker}' in: {text}"))
}

#[test]
fn test_parses_the_frames_in_a_confined_unprivileged_process() {
    let env = Env::new(ONE_FRAME);
    enrol_simm(&env);
    let simm = chips("John_Simm");
    let source = file_source(&[&simm[10]]);
    let out = env.run(&["test", "--user", "root", "--source", &source]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The frame line was printed by the confined child; the decision says how it was confined.
    assert_eq!(frame_lines(&out).len(), 1, "{stdout}");
    let decision = stdout
        .lines()
        .find(|l| l.starts_with("Decision: matched"))
        .unwrap_or_else(|| panic!("{stdout}"));
    // These tests run as root: the child dropped to an unprivileged account before parsing.
    assert_ne!(
        confined_uid(decision, "decided confined: uid "),
        0,
        "{decision}"
    );
    assert!(decision.contains("no_new_privs true"), "{decision}");
    assert!(decision.contains("seccomp"), "{decision}");
}

#[test]
fn add_parses_the_frames_confined_and_writes_a_root_owned_private_enrolment() {
    use std::os::unix::fs::MetadataExt;
    let env = Env::new(ONE_FRAME);
    let source = file_source(&[&chips("John_Simm")[0], &chips("John_Simm")[1]]);
    let out = env.run(&[
        "-v",
        "add",
        "--user",
        "root",
        "--source",
        &source,
        "--samples",
        "2",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Added 2 sample(s) for root as 'root': id 1-2"),
        "{stdout}"
    );
    assert_ne!(
        confined_uid(&stdout, "Frames parsed confined: uid "),
        0,
        "{stdout}"
    );
    // The enrolment is written by the privileged parent, not the child.
    let meta = std::fs::metadata(env.store_file("root")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (0, 0));
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    // And the decision finds it.
    let probe = file_source(&[&chips("John_Simm")[10]]);
    let out = env.run(&["auth", "--user", "root", "--source", &probe]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}
