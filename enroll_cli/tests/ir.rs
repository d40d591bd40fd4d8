//! `facekey ir list|set|clear|discover` through the real binary, with the settings file in a private
//! configuration. There is no camera here: what needs one is checked to fail cleanly, naming the device.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use common::{stderr, stdout, text, Env};

/// An environment whose emitter settings live in its own directory.
fn env() -> (Env, PathBuf) {
    let env = Env::new("");
    let file = env.path("ir.toml");
    let mut config = std::fs::read_to_string(&env.config).unwrap();
    config.push_str(&format!(
        "[camera]\nemitter_settings = \"{}\"\n",
        file.display()
    ));
    std::fs::write(&env.config, config).unwrap();
    (env, file)
}

fn store_entry(file: &PathBuf, device: &str) {
    std::fs::write(
        file,
        format!(
            "[[camera]]\ndevice = \"{device}\"\nusb = \"1d6b:0102\"\nunit = 4\nselector = 6\n\
             value = \"010303000000000000\"\norigin = \"discovered\"\ndark_threshold = 45.0\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).unwrap();
}

/// `facekey ir set` of unit 4, selector 6 (the emitter control of the known camera) on `device`.
fn ir_set(env: &Env, device: &str, value: &str) -> std::process::Output {
    env.run(&[
        "ir",
        "set",
        "--device",
        device,
        "--unit",
        "4",
        "--selector",
        "6",
        "--value",
        value,
    ])
}

fn as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[test]
fn list_with_nothing_stored_says_how_to_find_a_setting() {
    let (env, _) = env();
    let out = env.run(&["ir", "list"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains("sudo facekey ir discover"),
        "{}",
        text(&out)
    );
    let out = env.run(&["ir", "list", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["cameras"].as_array().unwrap().len(), 0);
}

#[test]
fn list_json_shows_the_stored_setting() {
    let (env, file) = env();
    store_entry(&file, "/dev/v4l/by-id/usb-Gadget_IR-video-index0");
    let out = env.run(&["ir", "list", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let camera = &json["cameras"][0];
    assert_eq!(
        camera["device"],
        "/dev/v4l/by-id/usb-Gadget_IR-video-index0"
    );
    assert_eq!(camera["usb"], "1d6b:0102");
    assert_eq!(
        (camera["unit"].as_u64(), camera["selector"].as_u64()),
        (Some(4), Some(6))
    );
    assert_eq!(camera["value"], "010303000000000000");
    assert_eq!(camera["dark_threshold"].as_f64(), Some(45.0));
    assert_eq!(camera["present"], false);
    let out = env.run(&["ir", "list"]);
    assert!(
        stdout(&out).contains("unit 4 selector 6 = 010303000000000000"),
        "{}",
        text(&out)
    );
    assert!(stdout(&out).contains("not plugged in"), "{}", text(&out));
}

#[test]
fn a_group_writable_settings_file_is_refused_with_the_fix() {
    let (env, file) = env();
    store_entry(&file, "/dev/video7");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o664)).unwrap();
    let out = env.run(&["ir", "list"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(stderr(&out).contains("chmod go-w"), "{}", text(&out));
}

#[test]
fn clear_removes_one_camera_and_complains_about_an_unknown_one() {
    if !as_root() {
        eprintln!("skipped: `facekey ir clear` is for root");
        return;
    }
    let (env, file) = env();
    store_entry(&file, "/dev/video7");
    let out = env.run(&["ir", "clear", "--device", "/dev/video8"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr(&out).contains("no setting is stored for /dev/video8"),
        "{}",
        text(&out)
    );
    let out = env.run(&["ir", "clear", "--device", "/dev/video7"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = env.run(&["ir", "list", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["cameras"].as_array().unwrap().len(), 0);
    // Still a trusted file, rewritten in place.
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
}

#[test]
fn set_on_a_missing_device_fails_naming_it_and_stores_nothing() {
    if !as_root() {
        eprintln!("skipped: `facekey ir set` is for root");
        return;
    }
    let (env, file) = env();
    let out = ir_set(&env, "/dev/video99", "010303000000000000");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains("/dev/video99") && err.contains("no such device"),
        "{err}"
    );
    assert!(!file.exists());
}

#[test]
fn set_on_something_that_is_not_a_camera_is_refused() {
    if !as_root() {
        eprintln!("skipped: `facekey ir set` is for root");
        return;
    }
    let (env, file) = env();
    let fake = env.path("video0");
    std::fs::write(&fake, "").unwrap();
    let out = ir_set(&env, fake.to_str().unwrap(), "01");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(stderr(&out).contains("not a V4L2 device"), "{}", text(&out));
    assert!(!file.exists());
    // A value that is not hex is refused before the device is touched.
    let out = ir_set(&env, "/dev/video99", "0x1g");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr(&out).contains("expected hex bytes"),
        "{}",
        text(&out)
    );
}

#[test]
fn discover_on_a_device_without_usb_descriptors_fails_cleanly() {
    let (env, file) = env();
    let out = env.run(&["ir", "discover", "--device", "/dev/null", "--dry-run"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr(&out).contains("/dev/null: not a USB camera"),
        "{}",
        text(&out)
    );
    assert!(!file.exists());
}
