//! Every way a file can be wrong gives one line naming the file, the line and the key.

use std::path::Path;

use facekey_config::{Config, ConfigError};

const ORIGIN: &str = "/test/facekey.toml";

/// Parse `text`, expect an error at `line` about `key`, whose message contains `says`.
fn assert_error(text: &str, line: usize, key: &str, says: &str) -> ConfigError {
    let error = Config::from_toml_str(text, Path::new(ORIGIN)).expect_err("the file is wrong");
    let message = error.to_string();
    assert!(
        message.starts_with(&format!("{ORIGIN}:{line}:")),
        "wrong file or line: {message}"
    );
    assert!(
        message.contains(&format!(": {key}: ")),
        "no key {key}: {message}"
    );
    assert!(message.contains(says), "no {says:?}: {message}");
    assert!(!message.contains('\n'), "not one line: {message}");
    match &error {
        ConfigError::Parse {
            key: k, line: l, ..
        } => {
            assert_eq!((k.as_deref(), *l), (Some(key), line), "{error:?}");
        }
        ConfigError::Invalid {
            key: k, line: l, ..
        } => {
            assert_eq!((k.as_str(), *l), (key, Some(line)), "{error:?}");
        }
        ConfigError::Io { .. } => panic!("unexpected {error:?}"),
    }
    error
}

macro_rules! rejects {
    ($($name:ident: $text:expr => line $line:expr, key $key:expr, says $says:expr;)*) => {
        $(
            #[test]
            fn $name() {
                assert_error($text, $line, $key, $says);
            }
        )*
    };
}

// Unknown keys, one per section, and unknown sections.
rejects! {
    unknown_key_in_general_is_rejected:
        "[general]\nenabled = true\n" => line 2, key "general.enabled", says "unknown key (expected one of disabled, audit_socket)";
    unknown_key_in_camera_is_rejected:
        "[camera]\nsource = \"v4l2:/dev/video2\"\nmax_hieght = 3\n"
        => line 3, key "camera.max_hieght", says "unknown key (expected one of source, frame_width, frame_height, fps, force_mjpeg, exposure, rotate, require_ir, allow_virtual, dark_threshold, min_face_change, emitter_settings)";
    unknown_key_in_detection_is_rejected:
        "[detection]\nmax_heigth = 3\n"
        => line 2, key "detection.max_heigth",
        says "unknown key (expected one of max_height, score_threshold, nms_iou, min_face_size, second_look)";
    unknown_key_in_models_is_rejected:
        "[models]\ndetector_path = \"/x.onnx\"\n" => line 2, key "models.detector_path", says "unknown key (expected one of dir, installed_dir, detector, embedder, detector_file,";
    unknown_key_in_matching_is_rejected:
        "[matching]\ntreshold = 0.4\n" => line 2, key "matching.treshold", says "unknown key (expected one of threshold, required_matches, rule)";
    unknown_key_in_auth_is_rejected:
        "[auth]\ntimout = 3\n" => line 2, key "auth.timout", says "unknown key (expected timeout)";
    unknown_key_in_storage_is_rejected:
        "[storage]\nface_dir = \"/x\"\n" => line 2, key "storage.face_dir", says "unknown key (expected faces_dir)";
    unknown_key_in_pam_is_rejected:
        "[pam]\nservice = [\"sudo\"]\n" => line 2, key "pam.service", says "unknown key (expected one of services, other_user_services, allow_root, detection_notice, confirmation)";
    unknown_key_in_rate_limit_is_rejected:
        "[rate_limit]\nmax_failure = 3\n" => line 2, key "rate_limit.max_failure", says "unknown key (expected one of max_failures, window, max_failures_per_day, state_dir)";
    unknown_key_reports_its_column:
        "[camera]\n  max_hieght = 3\n" => line 2, key "camera.max_hieght", says "/test/facekey.toml:2:3: ";
    unknown_dotted_key_is_rejected:
        "camera.device = \"x\"\n" => line 1, key "camera.device", says "unknown key";
    unknown_subtable_is_rejected:
        "[camera]\nsource = \"v4l2:/dev/video0\"\n[camera.extra]\na = 1\n" => line 3, key "camera.extra", says "unknown key";
    unknown_section_is_rejected:
        "[general]\ndisabled = false\n\n[cameras]\nsource = \"x\"\n"
        => line 4, key "cameras",
        says "unknown section (expected one of general, camera, detection, models, matching, auth, storage, pam, rate_limit)";
    key_outside_any_section_is_rejected:
        "disabled = true\n" => line 1, key "disabled", says "unknown section";
}

// Values of the wrong type or out of the type's range.
rejects! {
    string_for_integer_is_rejected:
        "[detection]\nmax_height = \"320\"\n" => line 2, key "detection.max_height", says "expected an integer, found a string";
    float_for_integer_is_rejected:
        "[detection]\nmin_face_size = 40.5\n" => line 2, key "detection.min_face_size", says "expected an integer, found a float";
    negative_integer_is_rejected:
        "[rate_limit]\nwindow = -1\n" => line 2, key "rate_limit.window", says "-1 is out of range (expected an integer from 0 to 18446744073709551615)";
    too_large_integer_is_rejected:
        "[detection]\nmax_height = 5000000000\n" => line 2, key "detection.max_height", says "out of range (expected an integer from 0 to 4294967295)";
    string_for_boolean_is_rejected:
        "[general]\ndisabled = \"yes\"\n" => line 2, key "general.disabled", says "expected a boolean, found a string";
    string_for_number_is_rejected:
        "[matching]\nthreshold = \"0.5\"\n" => line 2, key "matching.threshold", says "expected a number, found a string";
    string_for_camera_integer_is_rejected:
        "[camera]\nframe_width = \"640\"\n" => line 2, key "camera.frame_width", says "expected an integer, found a string";
    negative_rotation_is_rejected:
        "[camera]\nrotate = -90\n" => line 2, key "camera.rotate", says "-90 is out of range (expected an integer from 0 to 4294967295)";
    string_for_require_ir_is_rejected:
        "[camera]\nrequire_ir = \"no\"\n" => line 2, key "camera.require_ir", says "expected a boolean, found a string";
    integer_for_force_mjpeg_is_rejected:
        "[camera]\nforce_mjpeg = 1\n" => line 2, key "camera.force_mjpeg", says "expected a boolean, found an integer";
    string_for_dark_threshold_is_rejected:
        "[camera]\ndark_threshold = \"60%\"\n" => line 2, key "camera.dark_threshold", says "expected a number, found a string";
    integer_for_string_is_rejected:
        "[camera]\nsource = 0\n" => line 2, key "camera.source", says "expected a string, found an integer";
    integer_for_path_is_rejected:
        "[storage]\nfaces_dir = 1\n" => line 2, key "storage.faces_dir", says "expected a path (string), found an integer";
    string_for_list_is_rejected:
        "[pam]\nservices = \"sudo\"\n" => line 2, key "pam.services", says "expected an array, found a string";
    non_string_in_list_is_rejected:
        "[pam]\nservices = [\n  \"sudo\",\n  3,\n]\n" => line 4, key "pam.services", says "expected a string, found an integer";
    unknown_embedder_is_rejected:
        "[models]\nembedder = \"Int 8\"\n" => line 2, key "models.embedder", says "\"Int 8\" is not a model name";
    integer_for_embedder_is_rejected:
        "[models]\nembedder = 8\n" => line 2, key "models.embedder", says "expected a string";
    value_for_section_is_rejected:
        "camera = \"v4l2:/dev/video0\"\n" => line 1, key "camera", says "expected a table, found a string";
    date_for_number_is_rejected:
        "[auth]\ntimeout = 1979-05-27\n" => line 2, key "auth.timeout", says "expected a number, found a date-time";
    wrong_type_in_inline_table_is_rejected:
        "auth = { timeout = \"4\" }\n" => line 1, key "auth.timeout", says "expected a number, found a string";
}

// TOML syntax errors.
rejects! {
    unquoted_garbage_value_is_rejected:
        "[detection]\nmax_height = 32 0\n" => line 2, key "detection.max_height", says "string values must be quoted";
    missing_value_is_rejected:
        "[auth]\ntimeout =\n" => line 2, key "auth.timeout", says "missing value";
    trailing_garbage_after_value_is_rejected:
        "[camera]\nsource = \"x\" junk\n" => line 2, key "camera.source", says "expected newline";
    unclosed_array_is_rejected:
        "[pam]\nservices = [\"sudo\"\n" => line 2, key "pam.services", says "unclosed array";
    unterminated_string_is_rejected:
        "[camera]\nsource = \"v4l2:/dev/video0\n[auth]\n" => line 2, key "camera.source", says "invalid basic string";
    unclosed_section_header_is_rejected:
        "[general]\ndisabled = true\n[camera\nsource = \"x\"\n" => line 3, key "camera", says "unclosed table";
    duplicate_key_is_rejected:
        "[camera]\nsource = \"a\"\nsource = \"b\"\n" => line 3, key "camera.source", says "duplicate key";
    duplicate_section_is_rejected:
        "[camera]\nsource = \"a\"\n\n[camera]\n" => line 4, key "camera", says "duplicate key";
}

// Validation rules.
rejects! {
    frame_width_without_height_is_rejected:
        "[camera]\nframe_width = 640\n" => line 2, key "camera.frame_width", says "is set but frame_height is not";
    frame_height_without_width_is_rejected:
        "[camera]\nframe_height = 480\n" => line 2, key "camera.frame_height", says "is set but frame_width is not";
    frame_width_below_16_is_rejected:
        "[camera]\nframe_width = 8\nframe_height = 480\n" => line 2, key "camera.frame_width", says "must be between 16 and 8192, found 8";
    frame_height_above_8192_is_rejected:
        "[camera]\nframe_width = 640\nframe_height = 9000\n" => line 3, key "camera.frame_height", says "must be between 16 and 8192, found 9000";
    fps_above_240_is_rejected:
        "[camera]\nfps = 241\n" => line 2, key "camera.fps", says "must be between 0 and 240, found 241";
    exposure_above_ten_seconds_is_rejected:
        "[camera]\nexposure = 100001\n" => line 2, key "camera.exposure", says "must be between 0 and 100000";
    rotation_of_45_is_rejected:
        "[camera]\nrotate = 45\n" => line 2, key "camera.rotate", says "must be 0, 90, 180 or 270, found 45";
    dark_threshold_of_zero_is_rejected:
        "[camera]\ndark_threshold = 0\n" => line 2, key "camera.dark_threshold", says "greater than 0 and at most 100 (percent), found 0";
    dark_threshold_above_100_is_rejected:
        "[camera]\ndark_threshold = 100.5\n" => line 2, key "camera.dark_threshold", says "at most 100";
    nan_dark_threshold_is_rejected:
        "[camera]\ndark_threshold = nan\n" => line 2, key "camera.dark_threshold", says "found NaN";
    negative_min_face_change_is_rejected:
        "[camera]\nmin_face_change = -1\n" => line 2, key "camera.min_face_change", says "must be between 0 and 255 (grey levels), found -1";
    nan_min_face_change_is_rejected:
        "[camera]\nmin_face_change = nan\n" => line 2, key "camera.min_face_change", says "found NaN";
    max_height_below_64_is_rejected:
        "[detection]\nmax_height = 63\n" => line 2, key "detection.max_height", says "must be between 64 and 4096, found 63";
    max_height_above_4096_is_rejected:
        "[detection]\nmax_height = 4097\n" => line 2, key "detection.max_height", says "must be between 64 and 4096";
    score_threshold_of_zero_is_rejected:
        "[detection]\nscore_threshold = 0.0\n" => line 2, key "detection.score_threshold", says "greater than 0 and less than 1";
    score_threshold_of_one_is_rejected:
        "[detection]\nscore_threshold = 1.0\n" => line 2, key "detection.score_threshold", says "greater than 0 and less than 1";
    nms_iou_of_zero_is_rejected:
        "[detection]\nnms_iou = 0\n" => line 2, key "detection.nms_iou", says "greater than 0 and less than 1";
    nms_iou_of_one_is_rejected:
        "[detection]\nnms_iou = 1\n" => line 2, key "detection.nms_iou", says "greater than 0 and less than 1";
    nms_iou_nan_is_rejected:
        "[detection]\nnms_iou = nan\n" => line 2, key "detection.nms_iou", says "found NaN";
    relative_models_dir_is_rejected:
        "[models]\ndir = \"models\"\n" => line 2, key "models.dir", says "must be an absolute path, found \"models\"";
    relative_emitter_settings_is_rejected:
        "[camera]\nemitter_settings = \"ir.toml\"\n" => line 2, key "camera.emitter_settings", says "absolute path";
    relative_detector_file_is_rejected:
        "[models]\ndetector_file = \"det.onnx\"\n" => line 2, key "models.detector_file", says "absolute path";
    relative_embedder_file_is_rejected:
        "[models]\nembedder_file = \"emb.onnx\"\n" => line 2, key "models.embedder_file", says "absolute path";
    short_detector_sha256_is_rejected:
        "[models]\ndetector_sha256 = \"abc123\"\n" => line 2, key "models.detector_sha256", says "64 hexadecimal characters";
    non_hex_embedder_sha256_is_rejected:
        "[models]\nembedder_sha256 = \"zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz\"\n"
        => line 2, key "models.embedder_sha256", says "64 hexadecimal characters";
    threshold_of_zero_is_rejected:
        "[matching]\nthreshold = 0.0\n" => line 2, key "matching.threshold", says "greater than 0 and at most 2, found 0";
    threshold_above_two_is_rejected:
        "[matching]\nthreshold = 2.5\n" => line 2, key "matching.threshold", says "at most 2";
    negative_threshold_is_rejected:
        "[matching]\nthreshold = -0.5\n" => line 2, key "matching.threshold", says "greater than 0";
    infinite_threshold_is_rejected:
        "[matching]\nthreshold = inf\n" => line 2, key "matching.threshold", says "found inf";
    nan_threshold_is_rejected:
        "[matching]\nthreshold = nan\n" => line 2, key "matching.threshold", says "found NaN";
    zero_required_matches_is_rejected:
        "[matching]\nrequired_matches = 0\n" => line 2, key "matching.required_matches", says "must be at least 1";
    zero_timeout_is_rejected:
        "[auth]\ntimeout = 0\n" => line 2, key "auth.timeout", says "greater than 0 and at most 60 seconds";
    timeout_above_sixty_is_rejected:
        "[auth]\ntimeout = 60.5\n" => line 2, key "auth.timeout", says "at most 60 seconds, found 60.5";
    nan_timeout_is_rejected:
        "[auth]\ntimeout = nan\n" => line 2, key "auth.timeout", says "found NaN";
    relative_faces_dir_is_rejected:
        "[storage]\nfaces_dir = \"faces\"\n" => line 2, key "storage.faces_dir", says "absolute path";
    sshd_service_is_rejected:
        "[pam]\nservices = [\n  \"sudo\",\n  \"sshd\",\n]\n" => line 4, key "pam.services", says "\"sshd\" is refused";
    empty_service_name_is_rejected:
        "[pam]\nservices = [\"sudo\", \"\"]\n" => line 2, key "pam.services", says "must not be empty";
    other_user_service_not_in_services_is_rejected:
        "[pam]\nservices = [\"sudo\"]\nother_user_services = [\"sudo\", \"su\"]\n" => line 3, key "pam.other_user_services", says "\"su\" is not in pam.services";
    sshd_other_user_service_is_rejected:
        "[pam]\nother_user_services = [\"sshd\"]\n" => line 2, key "pam.other_user_services", says "\"sshd\" is refused";
    service_name_with_space_is_rejected:
        "[pam]\nservices = [\"gdm password\"]\n" => line 2, key "pam.services", says "contains whitespace";
    zero_max_failures_is_rejected:
        "[rate_limit]\nmax_failures = 0\n" => line 2, key "rate_limit.max_failures", says "must be at least 1";
    zero_window_is_rejected:
        "[rate_limit]\nwindow = 0\n" => line 2, key "rate_limit.window", says "must be at least 1";
    zero_daily_failures_is_rejected:
        "[rate_limit]\nmax_failures_per_day = 0\n" => line 2, key "rate_limit.max_failures_per_day", says "must be at least 1";
    relative_state_dir_is_rejected:
        "[rate_limit]\nstate_dir = \"run\"\n" => line 2, key "rate_limit.state_dir", says "absolute path";
}

#[test]
fn message_matches_the_documented_format() {
    let text = "[general]\ndisabled = false\n\n[camera]\nsource = \"v4l2:/dev/video0\"\n\nmax_hieght = 480\n";
    let error = assert_error(text, 7, "camera.max_hieght", "unknown key");
    assert_eq!(
        error.to_string(),
        "/test/facekey.toml:7:1: camera.max_hieght: unknown key (expected one of source, frame_width, frame_height, fps, force_mjpeg, exposure, rotate, require_ir, allow_virtual, dark_threshold, min_face_change, emitter_settings)"
    );
}

#[test]
fn validation_error_points_at_the_value() {
    let error = assert_error("[auth]\ntimeout   = 99\n", 2, "auth.timeout", "at most 60");
    assert_eq!(
        error.to_string(),
        "/test/facekey.toml:2:13: auth.timeout: must be greater than 0 and at most 60 seconds, found 99"
    );
}

#[test]
fn error_in_a_list_element_points_at_the_element() {
    let error = assert_error(
        "[pam]\nservices = [\"sudo\", \"sshd\"]\n",
        2,
        "pam.services",
        "sshd",
    );
    assert!(
        error.to_string().starts_with("/test/facekey.toml:2:21: "),
        "{error}"
    );
}

#[test]
fn camera_rules_come_before_detection_rules() {
    let text = "[detection]\nmax_height = 1\n[camera]\nrotate = 1\n";
    assert_error(text, 4, "camera.rotate", "must be 0, 90, 180 or 270");
}

#[test]
fn first_broken_rule_in_file_section_order_is_reported() {
    let text = "[rate_limit]\nwindow = 0\n[detection]\nmax_height = 1\n";
    assert_error(text, 4, "detection.max_height", "between 64 and 4096");
}
