//! `facekey add` when the enrolment store's file system is full or read-only: the previous enrolment is kept byte
//! for byte, nothing half-written is left, and the error says why. The store is a real tmpfs of 64 KiB mounted
//! for the test (the tests run as root, as CI does).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{chips, file_source, stderr, text, Env};

/// A tmpfs mounted at a folder, unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, size: &str) -> Mount {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root (these tests run as root): {}",
            text(&out)
        );
        Mount(at.to_owned())
    }

    fn read_only(&self) {
        let out = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.0)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// `facekey add` again fails for `reason`, and the enrolment is still `before`.
fn add_is_refused_keeping(env: &Env, before: &[u8], reason: &str) {
    let out = env.enrol("root", "John_Simm");
    assert!(!out.status.success(), "add succeeded: {}", text(&out));
    assert!(
        stderr(&out).contains(reason),
        "the reason {reason:?} is not given: {}",
        text(&out)
    );
    assert_eq!(
        std::fs::read(env.store_file("root")).unwrap(),
        before,
        "the previous enrolment changed"
    );
}

/// The names in the store folder (a temporary file left behind would show here).
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn add_on_a_full_or_read_only_store_keeps_the_previous_enrolment_and_says_why() {
    let env = Env::new("");
    let faces = env.path("faces");
    let mount = Mount::tmpfs(&faces, "64k");
    let out = env.enrol("root", "John_Simm");
    assert!(out.status.success(), "{}", text(&out));
    let file = env.store_file("root");
    let before = std::fs::read(&file).unwrap();

    // Fill the file system: whatever is left goes to a filler file.
    let filler = faces.join(".filler");
    let status = Command::new("dd")
        .args(["if=/dev/zero", "bs=4096"])
        .arg(format!("of={}", filler.display()))
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "dd should stop at a full file system");
    add_is_refused_keeping(&env, &before, "No space left on device");
    assert_eq!(
        names(&faces),
        [".filler", "root.toml"],
        "something was left behind"
    );
    // Authentication still works from the kept enrolment once there is room again.
    std::fs::remove_file(&filler).unwrap();
    let source = file_source(&chips("John_Simm")[5..7]);
    let out = env.run(&["auth", "--user", "root", "--source", &source]);
    assert!(out.status.success(), "{}", text(&out));

    // Read-only: refused with the reason, the enrolment untouched.
    mount.read_only();
    add_is_refused_keeping(&env, &before, "Read-only file system");
    assert_eq!(names(&faces), ["root.toml"]);
}
