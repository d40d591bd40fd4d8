//! What a valid file turns into.

use std::path::{Path, PathBuf};

use facekey_config::{
    Auth, Camera, Config, ConfigError, Detection, General, MatchRule, Matching, Models, Pam,
    RateLimit, Storage,
};

const ORIGIN: &str = "/test/facekey.toml";

fn parse(text: &str) -> Config {
    Config::from_toml_str(text, Path::new(ORIGIN)).unwrap_or_else(|e| panic!("{e}"))
}

const EVERY_KEY: &str = r#"
[general]
disabled = true
audit_socket = "/run/audit.sock"

[camera]
source = "file:/tmp/a.png,/tmp/b.png"
frame_width = 1280
frame_height = 720
fps = 15
force_mjpeg = true
exposure = 300
rotate = 270
require_ir = false
allow_virtual = true
dark_threshold = 45.5
min_face_change = 2.0
emitter_settings = "/opt/facekey/ir.toml"

[detection]
max_height = 480
score_threshold = 0.75
nms_iou = 0.45
min_face_size = 64
second_look = false

[models]
dir = "/opt/facekey/models"
installed_dir = "/opt/facekey/installed"
detector = "yunet-big"
embedder = "fp32"
detector_file = "/opt/facekey/detector.onnx"
detector_sha256 = "abababababababababababababababababababababababababababababababab"
embedder_file = "/opt/facekey/embedder.onnx"
embedder_sha256 = "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd"

[matching]
threshold = 0.38
required_matches = 3
rule = "same-sample"

[auth]
timeout = 7.5

[storage]
faces_dir = "/var/lib/facekey/faces"

[pam]
services = ["sudo", "swaylock", "su"]
other_user_services = ["su"]
allow_root = true
detection_notice = false
confirmation = false

[rate_limit]
max_failures = 3
window = 300
max_failures_per_day = 9
state_dir = "/run/facekey-test"
"#;

fn every_key_expected() -> Config {
    Config {
        general: General {
            disabled: true,
            audit_socket: "/run/audit.sock".into(),
        },
        camera: Camera {
            source: "file:/tmp/a.png,/tmp/b.png".to_owned(),
            frame_width: 1280,
            frame_height: 720,
            fps: 15,
            force_mjpeg: true,
            exposure: 300,
            rotate: 270,
            require_ir: false,
            allow_virtual: true,
            dark_threshold: Some(45.5),
            min_face_change: 2.0,
            emitter_settings: "/opt/facekey/ir.toml".into(),
        },
        detection: Detection {
            max_height: 480,
            score_threshold: 0.75,
            nms_iou: 0.45,
            min_face_size: 64,
            second_look: false,
        },
        models: Models {
            dir: PathBuf::from("/opt/facekey/models"),
            installed_dir: PathBuf::from("/opt/facekey/installed"),
            detector: "yunet-big".into(),
            embedder: "fp32".into(),
            detector_file: Some(PathBuf::from("/opt/facekey/detector.onnx")),
            detector_sha256: Some("ab".repeat(32)),
            embedder_file: Some(PathBuf::from("/opt/facekey/embedder.onnx")),
            embedder_sha256: Some("cd".repeat(32)),
        },
        matching: Matching {
            threshold: Some(0.38),
            required_matches: 3,
            rule: MatchRule::SameSample,
        },
        auth: Auth { timeout: 7.5 },
        storage: Storage {
            faces_dir: PathBuf::from("/var/lib/facekey/faces"),
        },
        pam: Pam {
            services: vec!["sudo".to_owned(), "swaylock".to_owned(), "su".to_owned()],
            other_user_services: vec!["su".to_owned()],
            allow_root: true,
            detection_notice: false,
            confirmation: false,
        },
        rate_limit: RateLimit {
            max_failures: 3,
            window: 300,
            max_failures_per_day: 9,
            state_dir: PathBuf::from("/run/facekey-test"),
        },
    }
}

#[test]
fn every_key_set_to_a_non_default_value_is_read() {
    assert_eq!(parse(EVERY_KEY), every_key_expected());
}

#[test]
fn every_key_test_really_changes_every_default() {
    // Guards the test above: no `key = value` line of its file equals the default's.
    let default = Config::default().to_toml_string();
    let default_lines: Vec<&str> = default.lines().filter(|l| l.contains(" = ")).collect();
    let parsed = parse(EVERY_KEY).to_toml_string();
    let assignments: Vec<&str> = parsed.lines().filter(|l| l.contains(" = ")).collect();
    // The four replacement files and hashes, the threshold and the dark threshold are not set by default.
    assert_eq!(assignments.len(), default_lines.len() + 6, "{parsed}");
    for line in assignments {
        assert!(!default_lines.contains(&line), "still the default: {line}");
    }
}

#[test]
fn empty_file_is_the_default() {
    assert_eq!(parse(""), Config::default());
}

#[test]
fn file_of_comments_and_empty_sections_is_the_default() {
    let text = "# nothing set\n[general]\n[camera]\n\n[rate_limit]\n# window = 1\n";
    assert_eq!(parse(text), Config::default());
}

#[test]
fn partial_file_gets_defaults_for_every_key_it_does_not_set() {
    let text = "[detection]\nmax_height = 640\n\n[pam]\nconfirmation = false\n";
    let mut expected = Config::default();
    expected.detection.max_height = 640;
    expected.pam.confirmation = false;
    assert_eq!(parse(text), expected);
}

#[test]
fn dotted_keys_and_inline_tables_are_read_like_sections() {
    let text = "camera.source = \"dir:/faces\"\nauth = { timeout = 2.0 }\n";
    let mut expected = Config::default();
    expected.camera.source = "dir:/faces".to_owned();
    expected.auth.timeout = 2.0;
    assert_eq!(parse(text), expected);
}

#[test]
fn integer_is_accepted_where_a_number_is_expected() {
    let config = parse("[auth]\ntimeout = 5\n[matching]\nthreshold = 1\n");
    assert_eq!(config.auth.timeout, 5.0);
    assert_eq!(config.matching.threshold, Some(1.0));
}

#[test]
fn uppercase_sha256_is_accepted_and_lowercased() {
    let text = format!("[models]\ndetector_sha256 = \"{}\"\n", "AB".repeat(32));
    let config = parse(&text);
    assert_eq!(config.models.detector_sha256, Some("ab".repeat(32)));
}

#[test]
fn camera_size_fps_exposure_and_rotation_take_their_boundary_values() {
    let config = parse(
        "[camera]\nframe_width = 16\nframe_height = 8192\nfps = 240\nexposure = 100000\nrotate = 90\n",
    );
    assert_eq!(
        (config.camera.frame_width, config.camera.frame_height),
        (16, 8192)
    );
    assert_eq!((config.camera.fps, config.camera.exposure), (240, 100_000));
    assert_eq!(config.camera.rotate, 90);
    assert_eq!(parse("[camera]\nrotate = 180\n").camera.rotate, 180);
}

#[test]
fn dark_threshold_of_100_and_min_face_change_of_0_turn_the_checks_off() {
    let config = parse("[camera]\ndark_threshold = 100\nmin_face_change = 0\n");
    assert_eq!(config.camera.dark_threshold, Some(100.0));
    assert_eq!(config.camera.min_face_change, 0.0);
}

#[test]
fn camera_defaults_require_infrared_and_pick_the_size_automatically() {
    let camera = Config::default().camera;
    assert!(camera.require_ir);
    assert_eq!(
        (camera.frame_width, camera.frame_height, camera.fps),
        (0, 0, 0)
    );
    assert_eq!((camera.exposure, camera.rotate), (0, 0));
    assert!(!camera.force_mjpeg);
    // Unset: the engine takes a threshold learnt for the camera, else 60.
    assert_eq!(camera.dark_threshold, None);
    assert_eq!(facekey_config::DEFAULT_DARK_THRESHOLD, 60.0);
    assert_eq!(
        camera.emitter_settings,
        std::path::Path::new("/etc/facekey/ir.toml")
    );
    assert!(camera.min_face_change > 0.0);
}

#[test]
fn empty_service_list_is_allowed() {
    assert!(parse("[pam]\nservices = []\n").pam.services.is_empty());
}

#[test]
fn rendered_toml_parses_back_to_the_same_config() {
    for config in [Config::default(), every_key_expected()] {
        assert_eq!(parse(&config.to_toml_string()), config);
    }
}

#[test]
fn rendered_default_omits_unset_optional_keys() {
    let rendered = Config::default().to_toml_string();
    assert!(!rendered.contains("detector_file"), "{rendered}");
    assert!(rendered.contains("[rate_limit]"), "{rendered}");
}

#[test]
fn load_reads_and_parses_a_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, "[general]\ndisabled = true\n").expect("write");
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(config.general.disabled);
}

#[test]
fn load_errors_name_the_file_they_came_from() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, "[general]\ndisabled = 1\n").expect("write");
    let message = Config::load(&path).expect_err("wrong type").to_string();
    assert!(
        message.starts_with(&format!("{}:2:12: general.disabled: ", path.display())),
        "{message}"
    );
}

#[test]
fn missing_file_is_an_io_error_naming_the_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("absent.toml");
    let error = Config::load(&path).expect_err("missing file");
    assert!(
        matches!(&error, ConfigError::Io { path: p, source } if *p == path && source.kind() == std::io::ErrorKind::NotFound),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .starts_with(&format!("{}: ", path.display())),
        "{error}"
    );
}

#[test]
fn non_utf8_file_is_an_io_error_naming_the_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("latin1.toml");
    std::fs::write(&path, b"[camera]\nsource = \"caf\xe9\"\n").expect("write");
    let error = Config::load(&path).expect_err("not UTF-8");
    assert!(matches!(error, ConfigError::Io { .. }), "{error:?}");
    assert!(
        error.to_string().contains(&path.display().to_string()),
        "{error}"
    );
}
