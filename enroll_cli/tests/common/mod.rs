//! What the CLI's end-to-end tests share: the repository's test faces, `file:` sources, and a private
//! configuration + store to run the real `facekey` binary against.
#![allow(dead_code)] // each test file uses its own part of this

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A path inside the repository.
pub fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// The `index`-th chip (in name order) of one johns identity.
pub fn chip(person: &str, index: usize) -> PathBuf {
    chips(person)[index].clone()
}

/// The chips of one johns identity, sorted by name.
pub fn chips(person: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(repo(&format!("tests/data/faces/johns/{person}")))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// A `file:` replay source of these images.
pub fn file_source<P: AsRef<Path>>(paths: &[P]) -> String {
    let list: Vec<String> = paths
        .iter()
        .map(|p| p.as_ref().display().to_string())
        .collect();
    format!("file:{}", list.join(","))
}

/// Run `facekey --config CONFIG ARGS`; it must never panic (no panic message, no backtrace hint).
pub fn facekey(config: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_facekey"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "{stderr}"
    );
    out
}

/// A private configuration (store and rate-limit state inside a temp dir, the repository's models, faces of
/// root allowed since the tests run as root and enrol it, plus `extra` TOML).
pub struct Env {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Env {
    pub fn new(extra: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[storage]\nfaces_dir = \"{}\"\n[models]\ndir = \"{}\"\n{extra}\n\
                 [rate_limit]\nstate_dir = \"{}\"\n[pam]\nallow_root = true\n",
                dir.path().join("faces").display(),
                repo("models").canonicalize().unwrap().display(),
                dir.path().join("state").display()
            ),
        )
        .unwrap();
        Env { dir, config }
    }

    /// Run `facekey --config CONFIG ARGS`; it must never panic.
    pub fn run(&self, args: &[&str]) -> Output {
        facekey(&self.config, args)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn store_file(&self, user: &str) -> PathBuf {
        self.path("faces").join(format!("{user}.toml"))
    }

    /// Enrol three chips of `person` for `user`, labelled with the person's name.
    pub fn enrol(&self, user: &str, person: &str) -> Output {
        let source = file_source(&chips(person)[..3]);
        self.run(&[
            "add",
            "--user",
            user,
            "--label",
            person,
            "--source",
            &source,
            "--samples",
            "3",
        ])
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Both streams, for assertion messages.
pub fn text(o: &Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}
