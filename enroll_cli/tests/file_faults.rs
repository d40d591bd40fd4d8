//! Every file that decides who gets in (the configuration, the enrolment, each model), broken every way
//! a disk, a mistake or a local user can break it: missing, empty, truncated, corrupt, a link, a FIFO, a folder,
//! writable by group or others, owned by another user, in a folder others can write, huge. For each, `facekey
//! auth` (the decision the PAM module runs) must refuse within its time, never match, say why naming the file,
//! and leave the enrolment as it was. The tests run as root, as CI does (files are given to another owner).

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{chips, file_source, repo, text};

/// The files of one private installation.
struct Install {
    dir: tempfile::TempDir,
}

impl Install {
    /// A configuration, a store with root enrolled from three chips of John Simm, and a private copy of the two
    /// shipped models.
    fn new() -> Install {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let models = dir.path().join("models");
        fs::create_dir(&models).unwrap();
        for name in [
            "yunet_2023mar_fp32_dynamic.onnx",
            "dlib_resnet_faceapi_static_qdq_s8.onnx",
        ] {
            fs::copy(repo("models").join(name), models.join(name)).unwrap();
        }
        let install = Install { dir };
        fs::write(
            install.config(),
            format!(
                "[storage]\nfaces_dir = \"{}\"\n[models]\ndir = \"{}\"\n\
                 [rate_limit]\nstate_dir = \"{}\"\n[pam]\nallow_root = true\n",
                install.path("faces").display(),
                models.display(),
                install.path("state").display()
            ),
        )
        .unwrap();
        let source = file_source(&chips("John_Simm")[..3]);
        let out = install.facekey(&[
            "add",
            "--user",
            "root",
            "--source",
            &source,
            "--samples",
            "3",
        ]);
        assert!(out.status.success(), "{}", text(&out));
        install
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn config(&self) -> PathBuf {
        self.path("config.toml")
    }

    fn enrolment(&self) -> PathBuf {
        self.path("faces/root.toml")
    }

    fn detector(&self) -> PathBuf {
        self.path("models/yunet_2023mar_fp32_dynamic.onnx")
    }

    fn embedder(&self) -> PathBuf {
        self.path("models/dlib_resnet_faceapi_static_qdq_s8.onnx")
    }

    /// `facekey --config CONFIG ARGS`, killed after 60 s (a FIFO that blocked would show as status 124).
    fn facekey(&self, args: &[&str]) -> Output {
        Command::new("timeout")
            .arg("60")
            .arg(env!("CARGO_BIN_EXE_facekey"))
            .arg("--config")
            .arg(self.config())
            .args(args)
            .output()
            .unwrap()
    }

    /// `facekey auth` for root on two other chips of the enrolled person: a match when nothing is broken.
    fn auth(&self) -> Output {
        let source = file_source(&chips("John_Simm")[5..7]);
        self.facekey(&["auth", "--user", "root", "--source", &source])
    }
}

/// Ways to break a file. Each is undone by [`restore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Missing,
    Empty,
    Truncated,
    Corrupt,
    Symlink,
    Fifo,
    Directory,
    WorldWritable,
    GroupWritable,
    OtherOwner,
    FolderWritableByOthers,
    Huge,
}

const FAULTS: [Fault; 12] = [
    Fault::Missing,
    Fault::Empty,
    Fault::Truncated,
    Fault::Corrupt,
    Fault::Symlink,
    Fault::Fifo,
    Fault::Directory,
    Fault::WorldWritable,
    Fault::GroupWritable,
    Fault::OtherOwner,
    Fault::FolderWritableByOthers,
    Fault::Huge,
];

/// Break `path` (whose good bytes are `good`) as `fault` says; `huge` is a size past the reader's limit.
fn apply(path: &Path, good: &[u8], fault: Fault, huge: u64) {
    let mode = |p: &Path, m: u32| fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
    match fault {
        Fault::Missing => fs::remove_file(path).unwrap(),
        Fault::Empty => fs::write(path, b"").unwrap(),
        Fault::Truncated => fs::write(path, &good[..good.len() / 2]).unwrap(),
        Fault::Corrupt => {
            let mut bad = good.to_vec();
            for b in bad.iter_mut().step_by(7) {
                *b ^= 0x5a;
            }
            fs::write(path, bad).unwrap();
        }
        Fault::Symlink => {
            let copy = path.with_extension("real");
            fs::write(&copy, good).unwrap();
            fs::remove_file(path).unwrap();
            std::os::unix::fs::symlink(&copy, path).unwrap();
        }
        Fault::Fifo => {
            fs::remove_file(path).unwrap();
            let status = Command::new("mkfifo").arg(path).status().unwrap();
            assert!(status.success());
        }
        Fault::Directory => {
            fs::remove_file(path).unwrap();
            fs::create_dir(path).unwrap();
        }
        Fault::WorldWritable => mode(path, 0o646),
        Fault::GroupWritable => mode(path, 0o664),
        Fault::OtherOwner => std::os::unix::fs::chown(path, Some(65534), Some(65534)).unwrap(),
        Fault::FolderWritableByOthers => mode(path.parent().unwrap(), 0o777),
        Fault::Huge => fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_len(huge)
            .unwrap(),
    }
}

/// Put `path` back: `good` bytes, `file_mode`, root's, its folder at `dir_mode`.
fn restore(path: &Path, good: &[u8], file_mode: u32, dir_mode: u32) {
    let parent = path.parent().unwrap();
    fs::set_permissions(parent, fs::Permissions::from_mode(dir_mode)).unwrap();
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir(path).unwrap(),
        Ok(_) => fs::remove_file(path).unwrap(),
        Err(_) => {}
    }
    let _ = fs::remove_file(path.with_extension("real"));
    fs::write(path, good).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(file_mode)).unwrap();
    std::os::unix::fs::chown(path, Some(0), Some(0)).unwrap();
}

/// Break `path` every way in turn: auth never matches, ends by itself, and says why (naming `names`, a part of the
/// path, or the folder others can write, except where the file being absent or empty is a state facekey accepts and something else refuses);
/// after each, with the file put back, the enrolment is what it was and auth matches again.
fn every_fault(install: &Install, path: &Path, names: &str, huge: u64) {
    let good = fs::read(path).unwrap();
    let file_mode = fs::metadata(path).unwrap().permissions().mode() & 0o7777;
    let dir_mode = fs::metadata(path.parent().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o7777;
    let enrolled = fs::read(install.enrolment()).unwrap();
    for fault in FAULTS {
        apply(path, &good, fault, huge);
        let out = install.auth();
        restore(path, &good, file_mode, dir_mode);
        let said = text(&out);
        let code = out.status.code();
        assert_ne!(
            code,
            Some(124),
            "{fault:?} of {names}: auth hung until killed: {said}"
        );
        assert_ne!(
            code,
            Some(0),
            "{fault:?} of {names}: auth succeeded: {said}"
        );
        assert!(
            !said.contains("matched '"),
            "{fault:?} of {names}: a match: {said}"
        );
        assert!(
            !said.contains("panicked") && !said.contains("RUST_BACKTRACE"),
            "{fault:?} of {names}: {said}"
        );
        // An empty configuration is a valid one (every default: the store is then /etc/facekey/faces); an absent
        // enrolment is a user with no face. Both are refused for what they lead to, not for the file.
        let silent_ok = matches!(
            (names, fault),
            ("config.toml", Fault::Empty) | ("root.toml", Fault::Missing)
        );
        // A folder others can write is named itself, with the fix.
        let named = match fault {
            Fault::FolderWritableByOthers => format!(
                "{} is writable by group or others",
                path.parent().unwrap().display()
            ),
            _ => names.to_owned(),
        };
        if !silent_ok {
            assert!(
                said.contains(&named),
                "{fault:?} of {names}: the reason does not name {named:?}: {said}"
            );
        }
        assert_eq!(
            fs::read(install.enrolment()).unwrap(),
            enrolled,
            "{fault:?} of {names}: the enrolment changed"
        );
        let again = install.auth();
        assert!(
            again.status.success(),
            "{fault:?} of {names}: no match once the file is back: {}",
            text(&again)
        );
    }
}

#[test]
fn a_broken_configuration_is_refused_with_its_name_and_never_matches() {
    let install = Install::new();
    let config = install.config();
    every_fault(&install, &config, "config.toml", 64 * 1024 * 1024);
}

#[test]
fn a_broken_enrolment_is_refused_with_its_name_and_never_matches() {
    let install = Install::new();
    let enrolment = install.enrolment();
    every_fault(&install, &enrolment, "root.toml", 64 * 1024 * 1024);
}

#[test]
fn a_broken_embedder_model_is_refused_with_its_name_and_never_matches() {
    let install = Install::new();
    let embedder = install.embedder();
    every_fault(
        &install,
        &embedder,
        "dlib_resnet_faceapi_static_qdq_s8.onnx",
        facekey_core::models::MAX_MODEL_BYTES + 1,
    );
}

#[test]
fn a_broken_detector_model_is_refused_with_its_name_and_never_matches() {
    let install = Install::new();
    let detector = install.detector();
    every_fault(
        &install,
        &detector,
        "yunet_2023mar_fp32_dynamic.onnx",
        facekey_core::models::MAX_MODEL_BYTES + 1,
    );
}
