//! The enrolment store: one TOML file per user (`<user>.toml`) in the faces directory.
//!
//! Every read goes through [`crate::trust`] (directory, ancestors and the opened file itself) and is validated before
//! anything else sees it; every write is atomic (temporary file, fsync, rename, fsync of the directory).
//!
//! This module must never: read an untrusted file, build a path from an unchecked user name, replace a file it could
//! not read and validate itself (untrusted, corrupt or made by another embedder: the caller decides, e.g. by
//! removing it), or leave a half-written file where a reader can see it.
//!
//! File format (version 1):
//!
//! ```toml
//! format = 1
//! user = "alice"
//!
//! [embedder]
//! sha256 = "<64 lowercase hex digits: the embedding model file>"
//! dimension = 128
//!
//! [[sample]]
//! id = 1
//! label = "glasses"
//! created = 1700000000          # unix seconds
//! embedding = [0.0123, ...]     # exactly `dimension` finite numbers
//! ```

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, DirBuilder, File, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize, Serializer};

use crate::frame::live::CameraIdentity;
use crate::trust::{TrustError, TrustedDir};

/// The file format this code reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Longest accepted user name, in bytes (as `useradd` on most distributions).
pub const MAX_USER_NAME_BYTES: usize = 32;
/// Longest accepted sample label, in characters.
pub const MAX_LABEL_CHARS: usize = 64;
/// Largest accepted embedding dimension: far above any face model, small enough to refuse nonsense early.
const MAX_DIMENSION: usize = 65_536;
/// Largest store file read. A real one is a few hundred KiB at most; a bigger one is refused rather than parsed.
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// The enrolment store: one TOML file per user in `dir`.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// A user name that is safe to use as a file name in the store.
///
/// Accepted: 1 to 32 bytes from the POSIX portable set `[A-Za-z0-9._-]`, plus `@` (as in `user@realm` from
/// SSSD/winbind) and a final `$` (Samba machine accounts such as `MACHINE$`); not starting with `-` (would read as
/// an option) or `.` (`.`/`..`, hidden files; the store's temporary files start with `.`). Everything else,
/// including `/`, NUL, control characters and whitespace, is refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserName(String);

/// Which embedding model made an enrolment: samples from another model are not comparable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedderId {
    /// SHA-256 of the model file, 64 lowercase hex digits.
    pub sha256: String,
    /// Length of every embedding.
    pub dimension: usize,
}

/// One user's enrolled face samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Enrolment {
    pub user: String,
    pub embedder: EmbedderId,
    pub samples: Vec<Sample>,
}

/// One enrolled face.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sample {
    /// Unique within the enrolment.
    pub id: u32,
    /// Up to 64 characters, no control characters.
    pub label: String,
    /// Unix seconds.
    pub created: u64,
    /// Written as the f64 equal to each f32, so that reading it back is exact (see `serialize_exact`).
    #[serde(serialize_with = "serialize_exact")]
    pub embedding: Vec<f32>,
    /// The camera the face was seen by (`crate::camera::identity`); none for a face from image files or one
    /// enrolled before facekey recorded cameras. Written after the embedding as its own table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera: Option<CameraIdentity>,
}

/// Why the store could not do what was asked. Each message names the file (or user) and the reason.
#[derive(thiserror::Error, Debug)]
pub enum StoreError {
    /// The user name is not safe as a store file name (see [`UserName`]).
    #[error("invalid user name {name:?}: {reason}")]
    BadUserName { name: String, reason: String },
    /// A store file or directory fails the trust rules; the message says which and how to fix it.
    #[error("untrusted enrolment store: {0}")]
    Untrusted(#[from] TrustError),
    /// Reading or writing failed.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    /// The file is not a valid enrolment; it is left alone.
    #[error("{} is not a valid enrolment file: {reason}; remove it and enrol again", path.display())]
    Corrupt { path: PathBuf, reason: String },
    /// The file was enrolled with another embedding model than the one in use.
    #[error(
        "{} was enrolled with another face model (sha256 {}, dimension {}) than the one in use \
         (sha256 {}, dimension {}); remove it and enrol again",
        path.display(),
        found.sha256,
        found.dimension,
        expected.sha256,
        expected.dimension
    )]
    ForeignEmbedder {
        path: PathBuf,
        found: EmbedderId,
        expected: EmbedderId,
    },
    /// The enrolment given to [`Store::save`] breaks the rules a stored file must follow; nothing was written.
    #[error("refusing to save the enrolment of {user:?}: {reason}")]
    Invalid { user: String, reason: String },
}

impl UserName {
    /// Check `s` against the rules documented on [`UserName`].
    pub fn new(s: &str) -> Result<UserName, StoreError> {
        match user_name_problem(s) {
            None => Ok(UserName(s.to_owned())),
            Some(reason) => Err(StoreError::BadUserName {
                // Hostile names can be long: keep the message readable.
                name: s.chars().take(2 * MAX_USER_NAME_BYTES).collect(),
                reason,
            }),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn user_name_problem(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("it is empty".into());
    }
    if s.len() > MAX_USER_NAME_BYTES {
        return Some(format!("it is longer than {MAX_USER_NAME_BYTES} bytes"));
    }
    if s == "." || s == ".." {
        return Some("it names a directory".into());
    }
    if s.starts_with('-') {
        return Some("it starts with '-'".into());
    }
    if s.starts_with('.') {
        return Some("it starts with '.'".into());
    }
    for (i, c) in s.char_indices() {
        let last = i + c.len_utf8() == s.len();
        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@') || (c == '$' && last) {
            continue;
        }
        return Some(match c {
            '/' => "it contains '/'".into(),
            '\0' => "it contains a NUL byte".into(),
            c if c.is_control() => "it contains a control character".into(),
            c if c.is_whitespace() => "it contains whitespace".into(),
            '$' => "'$' is allowed only as the last character".into(),
            c => format!("it contains {c:?}; allowed are A-Z a-z 0-9 . _ - @ and a final $"),
        });
    }
    None
}

impl Enrolment {
    /// An enrolment with no samples yet.
    pub fn new(user: &UserName, embedder: EmbedderId) -> Self {
        Enrolment {
            user: user.as_str().to_owned(),
            embedder,
            samples: Vec::new(),
        }
    }

    /// Add a sample created now; returns its id (the largest id so far plus one). Not validated here:
    /// [`Store::save`] refuses an enrolment with a bad label or embedding.
    pub fn add_sample(&mut self, label: &str, embedding: Vec<f32>) -> u32 {
        self.add_sample_from(label, embedding, None)
    }

    /// [`Enrolment::add_sample`] for a face seen by `camera` (none: from image files).
    pub fn add_sample_from(
        &mut self,
        label: &str,
        embedding: Vec<f32>,
        camera: Option<CameraIdentity>,
    ) -> u32 {
        let ids: HashSet<u32> = self.samples.iter().map(|s| s.id).collect();
        let id = match ids.iter().max() {
            None => 1,
            // At u32::MAX (only reachable with hand-picked ids) fall back to the smallest free id.
            Some(max) => max
                .checked_add(1)
                .unwrap_or_else(|| (1..=u32::MAX).find(|id| !ids.contains(id)).unwrap_or(0)),
        };
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.samples.push(Sample {
            id,
            label: label.to_owned(),
            created,
            embedding,
            camera,
        });
        id
    }

    /// Remove the sample with this id; false if there was none.
    pub fn remove_sample(&mut self, id: u32) -> bool {
        let before = self.samples.len();
        self.samples.retain(|s| s.id != id);
        self.samples.len() != before
    }
}

/// Points in [`Store::save_with`] where a test can inject a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// The temporary file is written and fsynced; the rename over the old file has not happened.
    TempWritten,
}

impl Store {
    pub fn new(dir: impl Into<PathBuf>) -> Store {
        Store { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<dir>/<user>.toml`.
    pub fn path_for(&self, user: &UserName) -> PathBuf {
        self.dir.join(file_name(user))
    }

    /// The user's enrolment; `Ok(None)` when the user (or the whole store) has no file. The directory, its
    /// ancestors and the opened file must pass the trust rules; the content must be a valid enrolment for `user`.
    pub fn load(&self, user: &UserName) -> Result<Option<Enrolment>, StoreError> {
        let path = self.path_for(user);
        let dir = match TrustedDir::open(&self.dir) {
            Ok(dir) => dir,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        // Through the checked directory's descriptor: the file is read from the directory that was checked.
        let mut file = match dir.open_file(file_name(user).as_ref()) {
            Ok(file) => file,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let text = read_limited(&mut file, &path)?;
        parse(&path, &text, user).map(Some)
    }

    /// Like [`Store::load`], and also refuses an enrolment made by a different embedder than `expected` (hash and
    /// dimension).
    pub fn load_for(
        &self,
        user: &UserName,
        expected: &EmbedderId,
    ) -> Result<Option<Enrolment>, StoreError> {
        match self.load(user)? {
            Some(e) if e.embedder != *expected => Err(StoreError::ForeignEmbedder {
                path: self.path_for(user),
                found: e.embedder,
                expected: expected.clone(),
            }),
            other => Ok(other),
        }
    }

    /// Write the enrolment atomically: creates the directory (0700) if missing, writes a temporary file in the same
    /// directory (created 0600 with `O_EXCL`), fsyncs it, renames it over `<user>.toml`, fsyncs the directory.
    ///
    /// An existing file is first loaded through the same checks as [`Store::load_for`]; if it is untrusted,
    /// corrupt or from another embedder, nothing is written and that error is returned.
    pub fn save(&self, enrolment: &Enrolment) -> Result<(), StoreError> {
        self.save_with(enrolment, &mut |_| Ok(()))
    }

    /// [`Store::save`] with a hook called at each [`Stage`], so tests can fail the write at a chosen point.
    fn save_with(
        &self,
        enrolment: &Enrolment,
        hook: &mut dyn FnMut(Stage) -> io::Result<()>,
    ) -> Result<(), StoreError> {
        let user = UserName::new(&enrolment.user)?;
        let invalid = |reason: String| StoreError::Invalid {
            user: user.to_string(),
            reason,
        };
        let text = render(enrolment).map_err(invalid)?;

        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(io_error(&self.dir))?;
        // Never rewrite blindly; this also checks the directory and its ancestors.
        self.load_for(&user, &enrolment.embedder)?;

        let path = self.path_for(&user);
        // tempfile rather than a hand-rolled open: it creates the file with O_CREAT|O_EXCL|O_CLOEXEC under a random
        // name (retrying on collision) with the mode given at creation, so it is never briefly wider than 0600,
        // and it deletes the file when dropped, so every early return below cleans up.
        let mut temp = tempfile::Builder::new()
            .prefix(&format!(".{user}."))
            .suffix(".tmp")
            .permissions(Permissions::from_mode(0o600))
            .tempfile_in(&self.dir)
            .map_err(io_error(&self.dir))?;
        temp.write_all(text.as_bytes())
            .and_then(|()| temp.as_file().sync_all())
            .map_err(io_error(temp.path()))?;
        hook(Stage::TempWritten).map_err(io_error(&path))?;
        // On failure the PersistError still owns the temporary file and deletes it when dropped.
        temp.persist(&path).map_err(|e| io_error(&path)(e.error))?;
        sync_dir(&self.dir)
    }

    /// Delete the user's file; true if it existed. The directory must be trusted; the file itself need not be
    /// (removing an untrusted or corrupt file is how it gets fixed).
    pub fn remove_user(&self, user: &UserName) -> Result<bool, StoreError> {
        let path = self.path_for(user);
        let dir = match TrustedDir::open(&self.dir) {
            Ok(dir) => dir,
            Err(e) if e.is_not_found() => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        // unlinkat on the checked directory's descriptor, not the path: no TOCTOU.
        match rustix::fs::unlinkat(&dir, file_name(user), rustix::fs::AtFlags::empty()) {
            Ok(()) => {}
            Err(rustix::io::Errno::NOENT) => return Ok(false),
            Err(errno) => return Err(io_error(&path)(errno.into())),
        }
        sync_dir(&self.dir)?;
        Ok(true)
    }

    /// Users with a file in the store, sorted. Names that are not `<valid user name>.toml` (temporary files,
    /// notes) are skipped. An absent store has no users.
    pub fn list_users(&self) -> Result<Vec<UserName>, StoreError> {
        let dir = match TrustedDir::open(&self.dir) {
            Ok(dir) => dir,
            Err(e) if e.is_not_found() => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut users = Vec::new();
        for entry in fs::read_dir(dir.path()).map_err(io_error(dir.path()))? {
            let entry = entry.map_err(io_error(dir.path()))?;
            let name = entry.file_name();
            match name
                .to_str()
                .and_then(|n| n.strip_suffix(".toml"))
                .and_then(|n| UserName::new(n).ok())
            {
                Some(user) => users.push(user),
                None => log::debug!("store: ignoring {}", dir.path().join(&name).display()),
            }
        }
        users.sort();
        Ok(users)
    }
}

fn file_name(user: &UserName) -> String {
    format!("{user}.toml")
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    // The rename or unlink is durable only once the directory itself is on disk.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))
}

fn read_limited(file: &mut File, path: &Path) -> Result<String, StoreError> {
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error(path))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(StoreError::Corrupt {
            path: path.to_owned(),
            reason: format!("it is larger than {} MiB", MAX_FILE_BYTES / (1024 * 1024)),
        });
    }
    String::from_utf8(bytes).map_err(|e| StoreError::Corrupt {
        path: path.to_owned(),
        reason: format!("it is not UTF-8 (byte {})", e.utf8_error().valid_up_to()),
    })
}

/// Each f32 is written as the f64 of equal value: that f64 is printed in its shortest round-tripping form and read
/// back exactly, and converting it to f32 is then exact too. Printing the f32's own shortest form would be read as
/// an f64 first and rounded twice.
fn serialize_exact<S: Serializer>(values: &[f32], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(values.iter().map(|&v| f64::from(v)))
}

#[derive(Serialize)]
struct FileOut<'a> {
    format: u32,
    user: &'a str,
    embedder: &'a EmbedderId,
    #[serde(rename = "sample", skip_serializing_if = "<[Sample]>::is_empty")]
    samples: &'a [Sample],
}

/// Only the version, read first, so that a newer file is reported as such rather than as unknown fields.
#[derive(Deserialize)]
struct FormatProbe {
    format: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileIn {
    #[allow(dead_code)] // checked through FormatProbe
    format: i64,
    user: String,
    embedder: EmbedderId,
    #[serde(rename = "sample", default)]
    samples: Vec<Sample>,
}

/// An enrolment as the text of its file, after the checks every saved enrolment meets.
pub fn render(enrolment: &Enrolment) -> Result<String, String> {
    validate(enrolment)?;
    toml::to_string(&FileOut {
        format: FORMAT_VERSION,
        user: &enrolment.user,
        embedder: &enrolment.embedder,
        samples: &enrolment.samples,
    })
    .map_err(|e| e.to_string())
}

/// The enrolment that the text of `user`'s file (read from `path`, named in errors) holds: the format
/// version first, then every field, then the checks [`render`] makes. Public for the fuzz target.
pub fn parse(path: &Path, text: &str, user: &UserName) -> Result<Enrolment, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let probe: FormatProbe = toml::from_str(text).map_err(|e| corrupt(describe(text, &e)))?;
    match probe.format {
        Some(v) if v == i64::from(FORMAT_VERSION) => {}
        Some(v) => {
            return Err(corrupt(format!(
                "unknown format version {v} (this facekey reads version {FORMAT_VERSION}; \
                 was it written by a newer one?)"
            )))
        }
        None => return Err(corrupt("it has no `format` field".into())),
    }
    let file: FileIn = toml::from_str(text).map_err(|e| corrupt(describe(text, &e)))?;
    if file.user != user.as_str() {
        return Err(corrupt(format!(
            "its `user` field is {:?}, but the file is for {:?}",
            file.user,
            user.as_str()
        )));
    }
    let enrolment = Enrolment {
        user: file.user,
        embedder: file.embedder,
        samples: file.samples,
    };
    validate(&enrolment).map_err(corrupt)?;
    Ok(enrolment)
}

/// A TOML error as "line N: message", without the source excerpt (a line of 512 numbers helps nobody).
fn describe(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim();
    match error.span() {
        Some(span) => {
            let start = span.start.min(text.len());
            let line = 1 + text.as_bytes()[..start]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            format!("line {line}: {message}")
        }
        None => message.to_owned(),
    }
}

/// The rules every stored enrolment follows, on load and before save.
fn validate(e: &Enrolment) -> Result<(), String> {
    let sha = &e.embedder.sha256;
    if sha.len() != 64
        || !sha
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(format!(
            "embedder.sha256 {sha:?} is not 64 lowercase hex digits"
        ));
    }
    let dimension = e.embedder.dimension;
    if dimension == 0 || dimension > MAX_DIMENSION {
        return Err(format!(
            "embedder.dimension {dimension} is outside 1..={MAX_DIMENSION}"
        ));
    }
    let mut ids = HashSet::new();
    for s in &e.samples {
        let id = s.id;
        if !ids.insert(id) {
            return Err(format!("sample id {id} appears more than once"));
        }
        if s.label.chars().count() > MAX_LABEL_CHARS {
            return Err(format!(
                "sample {id}: label is longer than {MAX_LABEL_CHARS} characters"
            ));
        }
        if s.label.chars().any(char::is_control) {
            return Err(format!("sample {id}: label contains a control character"));
        }
        // TOML integers are i64.
        if i64::try_from(s.created).is_err() {
            return Err(format!(
                "sample {id}: created time {} is out of range",
                s.created
            ));
        }
        if s.embedding.len() != dimension {
            return Err(format!(
                "sample {id}: embedding has {} values, but embedder.dimension is {dimension}",
                s.embedding.len()
            ));
        }
        if let Some(i) = s.embedding.iter().position(|v| !v.is_finite()) {
            return Err(format!(
                "sample {id}: embedding value {i} is {} (must be finite)",
                s.embedding[i]
            ));
        }
        if let Some(problem) = s.camera.as_ref().and_then(|c| c.problem()) {
            return Err(format!("sample {id}: {problem}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::tests::{chmod, is_root, trusted_tempdir, STRANGER};
    use std::os::unix::fs::{chown, symlink};

    fn embedder(dimension: usize) -> EmbedderId {
        EmbedderId {
            sha256: "ab".repeat(32),
            dimension,
        }
    }

    fn user(name: &str) -> UserName {
        UserName::new(name).expect("valid user name")
    }

    fn enrolment(name: &str, dimension: usize) -> Enrolment {
        let mut e = Enrolment::new(&user(name), embedder(dimension));
        e.add_sample("front", (0..dimension).map(|i| i as f32 / 7.0).collect());
        e
    }

    /// A store at `<trusted tempdir>/faces` (not yet created).
    fn store() -> (tempfile::TempDir, Store) {
        let dir = trusted_tempdir();
        let store = Store::new(dir.path().join("faces"));
        (dir, store)
    }

    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::MetadataExt;
        fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    fn dir_entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// A valid file's text for alice with dimension 2, with `sample` spliced in.
    fn file_text(format: &str, user: &str, dimension: usize, sample: &str) -> String {
        format!(
            "format = {format}\nuser = \"{user}\"\n\n[embedder]\nsha256 = \"{}\"\ndimension = {dimension}\n\n{sample}",
            "ab".repeat(32)
        )
    }

    const GOOD_SAMPLE: &str =
        "[[sample]]\nid = 1\nlabel = \"x\"\ncreated = 5\nembedding = [0.5, -0.25]\n";

    fn expect_corrupt(store: &Store, name: &str, text: &str, reason_part: &str) {
        let path = store.path_for(&user(name));
        fs::write(&path, text).unwrap();
        chmod(&path, 0o600);
        match store.load(&user(name)) {
            Err(StoreError::Corrupt { path: p, reason }) => {
                assert_eq!(p, path);
                assert!(
                    reason.contains(reason_part),
                    "reason {reason:?} lacks {reason_part:?}"
                );
            }
            other => panic!("expected Corrupt for {text:?}, got {other:?}"),
        }
        let message = store.load(&user(name)).unwrap_err().to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
    }

    #[test]
    fn round_trip_is_bit_exact() {
        let (_dir, store) = store();
        let awkward = [
            0.1f32,
            1.0 / 3.0,
            -0.0,
            0.0,
            f32::MIN_POSITIVE,
            f32::from_bits(1), // smallest subnormal
            f32::MAX,
            f32::MIN,
            16_777_217.0,
            -1.5e-38,
            f32::EPSILON,
        ];
        // Plus a spread of bit patterns from a fixed LCG, keeping the finite ones.
        let mut state = 0x2545_f491_u32;
        let mut values: Vec<f32> = awkward.to_vec();
        while values.len() < 512 {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let v = f32::from_bits(state);
            if v.is_finite() {
                values.push(v);
            }
        }
        let mut e = Enrolment::new(&user("alice"), embedder(values.len()));
        e.add_sample("awkward floats", values.clone());
        e.add_sample("Küche, évening", values.iter().rev().copied().collect());
        store.save(&e).unwrap();

        let loaded = store.load(&user("alice")).unwrap().expect("saved");
        assert_eq!(loaded.user, e.user);
        assert_eq!(loaded.embedder, e.embedder);
        assert_eq!(loaded.samples.len(), 2);
        for (a, b) in loaded.samples.iter().zip(&e.samples) {
            assert_eq!((a.id, &a.label, a.created), (b.id, &b.label, b.created));
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&a.embedding), bits(&b.embedding));
        }
    }

    #[test]
    fn saved_file_has_the_documented_format() {
        let (_dir, store) = store();
        let mut e = Enrolment::new(&user("alice"), embedder(2));
        e.add_sample("x", vec![0.5, -0.25]);
        store.save(&e).unwrap();
        let text = fs::read_to_string(store.path_for(&user("alice"))).unwrap();
        let value: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(value["format"].as_integer(), Some(1));
        assert_eq!(value["user"].as_str(), Some("alice"));
        assert_eq!(value["embedder"]["dimension"].as_integer(), Some(2));
        let samples = value["sample"].as_array().unwrap();
        assert_eq!(samples[0]["id"].as_integer(), Some(1));
        assert_eq!(samples[0]["embedding"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn enrolment_without_samples_round_trips() {
        let (_dir, store) = store();
        let e = Enrolment::new(&user("alice"), embedder(4));
        store.save(&e).unwrap();
        assert_eq!(store.load(&user("alice")).unwrap(), Some(e));
    }

    #[test]
    fn save_creates_dir_0700_and_file_0600() {
        let (_dir, store) = store();
        assert!(!store.dir().exists());
        store.save(&enrolment("alice", 4)).unwrap();
        assert_eq!(mode(store.dir()), 0o700);
        assert_eq!(mode(&store.path_for(&user("alice"))), 0o600);
        assert_eq!(dir_entries(store.dir()), ["alice.toml"]);
    }

    #[test]
    fn atomic_replacement_survives_injected_failure() {
        let (_dir, store) = store();
        let path = store.path_for(&user("alice"));
        let first = enrolment("alice", 4);
        store.save(&first).unwrap();
        let before = fs::read(&path).unwrap();

        let mut second = first.clone();
        second.add_sample("second", vec![1.0; 4]);
        let mut stages = Vec::new();
        let result = store.save_with(&second, &mut |stage| {
            stages.push(stage);
            // The temporary file is complete at this point: prove it, then fail.
            let temps: Vec<String> = dir_entries(store.dir())
                .into_iter()
                .filter(|n| n.ends_with(".tmp"))
                .collect();
            assert_eq!(temps.len(), 1, "one temporary file before the rename");
            assert!(temps[0].starts_with(".alice."), "{temps:?}");
            assert_eq!(mode(&store.dir().join(&temps[0])), 0o600);
            Err(io::Error::other("injected failure before rename"))
        });
        assert_eq!(stages, [Stage::TempWritten]);
        match result {
            Err(StoreError::Io { path: p, source }) => {
                assert_eq!(p, path);
                assert_eq!(source.to_string(), "injected failure before rename");
            }
            other => panic!("expected the injected Io error, got {other:?}"),
        }
        assert_eq!(
            fs::read(&path).unwrap(),
            before,
            "old file intact byte for byte"
        );
        assert_eq!(
            dir_entries(store.dir()),
            ["alice.toml"],
            "no temporary file left"
        );
        assert_eq!(store.load(&user("alice")).unwrap(), Some(first));

        store.save(&second).unwrap();
        assert_eq!(store.load(&user("alice")).unwrap(), Some(second));
    }

    #[test]
    fn load_of_a_user_without_file_is_none() {
        let (_dir, store) = store();
        assert_eq!(
            store.load(&user("alice")).unwrap(),
            None,
            "no store directory yet"
        );
        store.save(&enrolment("bob", 4)).unwrap();
        assert_eq!(
            store.load(&user("alice")).unwrap(),
            None,
            "store without alice"
        );
    }

    #[test]
    fn corrupt_files_are_refused_naming_the_file() {
        let (_dir, store) = store();
        fs::create_dir(store.dir()).unwrap();
        chmod(store.dir(), 0o700);
        let good = file_text("1", "alice", 2, GOOD_SAMPLE);
        // The fixture itself is valid.
        fs::write(store.path_for(&user("alice")), &good).unwrap();
        chmod(&store.path_for(&user("alice")), 0o600);
        assert!(store.load(&user("alice")).unwrap().is_some());

        expect_corrupt(&store, "alice", "\u{1}garbage = = [", "line 1");
        expect_corrupt(
            &store,
            "alice",
            &good[..good.len() - 12],
            "line 12: unclosed array",
        );
        expect_corrupt(
            &store,
            "alice",
            &file_text("1", "alice", 3, GOOD_SAMPLE),
            "embedding has 2 values",
        );
        expect_corrupt(
            &store,
            "alice",
            &file_text("1", "alice", 2, &GOOD_SAMPLE.replace("0.5", "nan")),
            "must be finite",
        );
        expect_corrupt(
            &store,
            "alice",
            &file_text("1", "alice", 2, &GOOD_SAMPLE.replace("0.5", "1e300")),
            "must be finite",
        );
        expect_corrupt(
            &store,
            "alice",
            &file_text("1", "bob", 2, GOOD_SAMPLE),
            "`user` field is \"bob\"",
        );
        expect_corrupt(
            &store,
            "alice",
            &file_text("2", "alice", 2, GOOD_SAMPLE),
            "unknown format version 2",
        );
        expect_corrupt(
            &store,
            "alice",
            &good.replace("format = 1\n", ""),
            "no `format` field",
        );
        expect_corrupt(
            &store,
            "alice",
            &file_text("1", "alice", 2, &format!("{GOOD_SAMPLE}{GOOD_SAMPLE}")),
            "sample id 1 appears more than once",
        );
        expect_corrupt(
            &store,
            "alice",
            &file_text(
                "1",
                "alice",
                2,
                &GOOD_SAMPLE.replace("\"x\"", &format!("\"{}\"", "y".repeat(65))),
            ),
            "longer than 64",
        );
        expect_corrupt(
            &store,
            "alice",
            &file_text(
                "1",
                "alice",
                2,
                &GOOD_SAMPLE.replace("\"x\"", "\"a\\u001bb\""),
            ),
            "control character",
        );
        expect_corrupt(
            &store,
            "alice",
            &file_text(
                "1",
                "alice",
                2,
                &GOOD_SAMPLE.replace("id = 1", "id = 1\nextra = true"),
            ),
            "unknown field",
        );
        expect_corrupt(
            &store,
            "alice",
            &good.replace(&"ab".repeat(32), "AB"),
            "64 lowercase hex",
        );
        expect_corrupt(
            &store,
            "alice",
            "format = 1\nuser = \"alice\"\n\u{0}",
            "line 3",
        );
    }

    #[test]
    fn non_utf8_file_is_corrupt() {
        let (_dir, store) = store();
        store.save(&enrolment("alice", 2)).unwrap();
        let path = store.path_for(&user("alice"));
        fs::write(&path, b"format = 1\n\xff\xfe").unwrap();
        assert!(matches!(
            store.load(&user("alice")),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn foreign_embedder_is_refused() {
        let (_dir, store) = store();
        let e = enrolment("alice", 4);
        store.save(&e).unwrap();
        let path = store.path_for(&user("alice"));
        assert_eq!(
            store.load_for(&user("alice"), &embedder(4)).unwrap(),
            Some(e)
        );

        let other_model = EmbedderId {
            sha256: "cd".repeat(32),
            dimension: 4,
        };
        let other_dimension = embedder(8);
        for expected in [other_model, other_dimension] {
            match store.load_for(&user("alice"), &expected) {
                Err(StoreError::ForeignEmbedder {
                    path: p,
                    found,
                    expected: x,
                }) => {
                    assert_eq!(p, path);
                    assert_eq!(found, embedder(4));
                    assert_eq!(x, expected);
                }
                other => panic!("expected ForeignEmbedder, got {other:?}"),
            }
        }
        assert_eq!(store.load_for(&user("nobody"), &embedder(8)).unwrap(), None);
    }

    #[test]
    fn save_refuses_to_overwrite_a_foreign_enrolment() {
        let (_dir, store) = store();
        store.save(&enrolment("alice", 4)).unwrap();
        let before = fs::read(store.path_for(&user("alice"))).unwrap();
        let result = store.save(&enrolment("alice", 8));
        assert!(
            matches!(result, Err(StoreError::ForeignEmbedder { .. })),
            "{result:?}"
        );
        assert_eq!(fs::read(store.path_for(&user("alice"))).unwrap(), before);
    }

    #[test]
    fn group_writable_store_file_is_refused() {
        let (_dir, store) = store();
        store.save(&enrolment("alice", 4)).unwrap();
        let path = store.path_for(&user("alice"));
        chmod(&path, 0o660);
        match store.load(&user("alice")) {
            Err(StoreError::Untrusted(TrustError::Writable { path: p, mode })) => {
                assert_eq!(p, fs::canonicalize(&path).unwrap());
                assert_eq!(mode, 0o660);
            }
            other => panic!("expected Untrusted(Writable), got {other:?}"),
        }
        let message = store.load(&user("alice")).unwrap_err().to_string();
        assert!(
            message.contains("alice.toml") && message.contains("chmod go-w"),
            "{message}"
        );
    }

    #[test]
    fn world_writable_store_dir_is_refused() {
        let (_dir, store) = store();
        store.save(&enrolment("alice", 4)).unwrap();
        chmod(store.dir(), 0o777);
        let canonical = fs::canonicalize(store.dir()).unwrap();
        for result in [
            store.load(&user("alice")).map(|_| ()),
            store.save(&enrolment("alice", 4)),
            store.list_users().map(|_| ()),
            store.remove_user(&user("alice")).map(|_| ()),
        ] {
            match result {
                Err(StoreError::Untrusted(TrustError::Writable { path, .. })) => {
                    assert_eq!(path, canonical)
                }
                other => panic!("expected Untrusted(Writable) for the directory, got {other:?}"),
            }
        }
        // Sticky does not make the store directory itself acceptable.
        chmod(store.dir(), 0o1777);
        assert!(matches!(
            store.load(&user("alice")),
            Err(StoreError::Untrusted(_))
        ));
    }

    #[test]
    fn store_file_owned_by_another_uid_is_refused() {
        let (_dir, store) = store();
        store.save(&enrolment("alice", 4)).unwrap();
        let path = store.path_for(&user("alice"));
        if !is_root() {
            eprintln!("skipped the ownership assertion: chown to another uid needs root");
            return;
        }
        chown(&path, Some(STRANGER), Some(STRANGER)).unwrap();
        match store.load(&user("alice")) {
            Err(StoreError::Untrusted(TrustError::NotOwned { path: p, uid, .. })) => {
                assert_eq!(p, fs::canonicalize(&path).unwrap());
                assert_eq!(uid, STRANGER);
            }
            other => panic!("expected Untrusted(NotOwned), got {other:?}"),
        }
        assert!(matches!(
            store.save(&enrolment("alice", 4)),
            Err(StoreError::Untrusted(_))
        ));
    }

    #[test]
    fn symlinked_store_file_is_refused() {
        let (dir, store) = store();
        let real = enrolment("alice", 4);
        store.save(&real).unwrap();
        let elsewhere = dir.path().join("alice-real.toml");
        fs::rename(store.path_for(&user("alice")), &elsewhere).unwrap();
        symlink(&elsewhere, store.path_for(&user("alice"))).unwrap();
        match store.load(&user("alice")) {
            Err(StoreError::Untrusted(TrustError::Symlink { path })) => {
                assert_eq!(path.file_name().unwrap(), "alice.toml")
            }
            other => panic!("expected Untrusted(Symlink), got {other:?}"),
        }
        // And save does not write through (or replace) the link.
        let before = fs::read(&elsewhere).unwrap();
        assert!(store.save(&real).is_err());
        assert_eq!(fs::read(&elsewhere).unwrap(), before);
        assert!(fs::symlink_metadata(store.path_for(&user("alice")))
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn save_refuses_to_overwrite_a_corrupt_file() {
        let (_dir, store) = store();
        store.save(&enrolment("alice", 4)).unwrap();
        let path = store.path_for(&user("alice"));
        fs::write(&path, "not an enrolment").unwrap();
        let result = store.save(&enrolment("alice", 4));
        match result {
            Err(StoreError::Corrupt { path: p, .. }) => assert_eq!(p, path),
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert_eq!(fs::read_to_string(&path).unwrap(), "not an enrolment");
        assert_eq!(dir_entries(store.dir()), ["alice.toml"]);
    }

    #[test]
    fn save_refuses_an_invalid_enrolment_and_writes_nothing() {
        let (_dir, store) = store();
        let mut nan = Enrolment::new(&user("alice"), embedder(2));
        nan.add_sample("x", vec![f32::NAN, 0.0]);
        let mut short = Enrolment::new(&user("alice"), embedder(2));
        short.add_sample("x", vec![0.0]);
        let mut bad_label = Enrolment::new(&user("alice"), embedder(2));
        bad_label.add_sample("tab\there", vec![0.0, 0.0]);
        for e in [nan, short, bad_label] {
            assert!(
                matches!(store.save(&e), Err(StoreError::Invalid { .. })),
                "{e:?}"
            );
        }
        let mut bad_user = enrolment("alice", 2);
        bad_user.user = "../root".into();
        assert!(matches!(
            store.save(&bad_user),
            Err(StoreError::BadUserName { .. })
        ));
        assert!(!store.dir().exists(), "nothing created");
    }

    #[test]
    fn hostile_user_names_are_rejected() {
        let long = "a".repeat(33);
        for name in [
            "",
            ".",
            "..",
            "../root",
            "a/b",
            "/etc/passwd",
            "a\0b",
            "-rf",
            ".hidden",
            "x y",
            "tab\t",
            "new\nline",
            "bell\u{7}",
            "dollar$inside",
            "$$",
            "ünï",
            "a:b",
            "a*",
            &long,
        ] {
            match UserName::new(name) {
                Err(StoreError::BadUserName { reason, .. }) => assert!(!reason.is_empty()),
                other => panic!("{name:?} must be rejected, got {other:?}"),
            }
        }
        assert_eq!(UserName::new(&"a".repeat(32)).unwrap().as_str().len(), 32);
    }

    #[test]
    fn ordinary_user_names_are_accepted() {
        for name in [
            "alice",
            "bob.smith",
            "user_1",
            "MACHINE$",
            "jdoe@example.org",
            "a-b",
            "_sys",
            "0",
        ] {
            let u = UserName::new(name).unwrap_or_else(|e| panic!("{name:?}: {e}"));
            assert_eq!(u.as_str(), name);
            assert_eq!(u.to_string(), name);
        }
    }

    #[test]
    fn bad_user_name_message_escapes_and_shortens_the_name() {
        let hostile = format!("x\n{}", "y".repeat(1000));
        let message = UserName::new(&hostile).unwrap_err().to_string();
        assert!(!message.contains('\n'), "{message}");
        assert!(message.len() < 200, "{message}");
    }

    #[test]
    fn list_users_and_remove_user() {
        let (_dir, store) = store();
        assert!(
            store.list_users().unwrap().is_empty(),
            "absent store has no users"
        );
        assert!(!store.remove_user(&user("alice")).unwrap());
        store.save(&enrolment("bob", 4)).unwrap();
        store.save(&enrolment("alice", 4)).unwrap();
        store.save(&enrolment("MACHINE$", 4)).unwrap();
        fs::write(store.dir().join("README"), "notes").unwrap();
        fs::write(store.dir().join(".alice.abc123.tmp"), "leftover").unwrap();
        fs::write(store.dir().join("-rf.toml"), "hostile").unwrap();
        let names = |store: &Store| -> Vec<String> {
            store
                .list_users()
                .unwrap()
                .iter()
                .map(|u| u.to_string())
                .collect()
        };
        assert_eq!(names(&store), ["MACHINE$", "alice", "bob"]);

        assert!(store.remove_user(&user("alice")).unwrap());
        assert!(!store.remove_user(&user("alice")).unwrap());
        assert_eq!(store.load(&user("alice")).unwrap(), None);
        assert_eq!(names(&store), ["MACHINE$", "bob"]);
    }

    #[test]
    fn remove_user_clears_a_corrupt_or_untrusted_file() {
        let (_dir, store) = store();
        store.save(&enrolment("alice", 4)).unwrap();
        let path = store.path_for(&user("alice"));
        fs::write(&path, "garbage").unwrap();
        chmod(&path, 0o666);
        assert!(store.load(&user("alice")).is_err());
        assert!(store.remove_user(&user("alice")).unwrap());
        store.save(&enrolment("alice", 4)).unwrap();
        assert!(store.load(&user("alice")).unwrap().is_some());
    }

    #[test]
    fn sample_ids_are_max_plus_one_and_removal_reports_presence() {
        let mut e = Enrolment::new(&user("alice"), embedder(1));
        assert_eq!(e.add_sample("a", vec![0.0]), 1);
        assert_eq!(e.add_sample("b", vec![0.0]), 2);
        assert_eq!(e.add_sample("c", vec![0.0]), 3);
        assert!(e.remove_sample(2));
        assert!(!e.remove_sample(2));
        assert_eq!(
            e.add_sample("d", vec![0.0]),
            4,
            "ids are not reused while larger ones exist"
        );
        assert!(e.remove_sample(4));
        assert!(e.remove_sample(3));
        assert_eq!(e.add_sample("e", vec![0.0]), 2);
        let ids: Vec<u32> = e.samples.iter().map(|s| s.id).collect();
        assert_eq!(ids, [1, 2]);
        assert!(e.samples.iter().all(|s| s.created > 1_600_000_000));
    }
}
