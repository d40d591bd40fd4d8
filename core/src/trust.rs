//! Trust checks for the files that decide who gets in (enrolments, configuration).
//!
//! A file is trusted only when it is owned by a trusted owner (see [`trusted_owners`]) and is not writable by group
//! or others, and every directory above it passes the same test. Checks are made on opened file descriptors
//! (`openat` + `fstat`), walking down from `/` one component at a time, so what is checked is what is read.
//!
//! This module must never: check a path and then open it again by name (TOCTOU), follow a symbolic link at the final
//! component of a file, or accept a file or directory that someone other than a trusted owner could change.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, Stat, CWD};

/// Who may own trusted files and directories.
///
/// Root always. When the process is not root, also the process's effective uid, so an unprivileged user can run the
/// demo with a store of their own. A root process trusts root only: a file owned by an ordinary user must never
/// decide who logs in as someone else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owners {
    /// A non-root uid trusted besides root.
    also: Option<u32>,
}

impl Owners {
    /// The owners trusted by a process whose effective uid is `euid`.
    fn for_euid(euid: u32) -> Owners {
        Owners {
            also: (euid != 0).then_some(euid),
        }
    }

    /// Whether a file owned by `uid` may be trusted.
    pub fn contains(&self, uid: u32) -> bool {
        uid == 0 || self.also == Some(uid)
    }
}

impl fmt::Display for Owners {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.also {
            None => f.write_str("root"),
            Some(uid) => write!(f, "root or uid {uid}"),
        }
    }
}

/// Who may own trusted files: root always; when the process is not root, also the process's effective uid
/// (so an unprivileged user can run the demo with their own store). When running as root: root only.
pub fn trusted_owners() -> Owners {
    Owners::for_euid(rustix::process::geteuid().as_raw())
}

/// Why a file or directory is not trusted. Each message names the path and says how to fix it.
#[derive(thiserror::Error, Debug)]
pub enum TrustError {
    /// The path could not be resolved, opened or examined (including: it does not exist).
    #[error("cannot check {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    /// Owned by someone who is not a trusted owner, who could therefore change it.
    #[error(
        "{} is owned by uid {uid}, but only {owners} may own it; fix: chown root:root {}",
        path.display(),
        path.display()
    )]
    NotOwned {
        path: PathBuf,
        uid: u32,
        owners: Owners,
    },
    /// Writable by group or others (for an ancestor directory: without the sticky bit).
    #[error(
        "{} is writable by group or others (mode {mode:04o}); fix: chmod go-w {}",
        path.display(),
        path.display()
    )]
    Writable { path: PathBuf, mode: u32 },
    /// A file was expected but this is a directory, device, FIFO or socket.
    #[error("{} is not a regular file; only regular files are read here", path.display())]
    NotRegular { path: PathBuf },
    /// A directory was expected.
    #[error("{} is not a directory", path.display())]
    NotDirectory { path: PathBuf },
    /// A symbolic link where links are not followed (the final component of a file).
    #[error(
        "{} is a symbolic link, which is not followed here; replace it with the file it points to",
        path.display()
    )]
    Symlink { path: PathBuf },
    /// A name that must be a single path component is not (empty, `.`, `..` or contains `/`).
    #[error("{name:?} is not a plain file name inside {}", dir.display())]
    BadName { dir: PathBuf, name: String },
}

impl TrustError {
    /// True when the error only says that the path (or one of its directories) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, TrustError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// Open a file for reading and check the OPENED file (fstat on the fd, not the path: no TOCTOU), then every ancestor
/// directory.
///
/// Ancestors are those of the canonicalised parent, so symbolic links in directory components are resolved and
/// their targets checked; a symbolic link as the final component is refused. A world-writable ancestor is accepted
/// only with the sticky bit (like `/tmp`): there, others cannot rename or delete entries they do not own, so the
/// trusted entry below it cannot be swapped.
pub fn open_trusted_file(path: &Path) -> Result<File, TrustError> {
    open_trusted_file_with(path, trusted_owners())
}

/// Check a directory and its ancestors. The directory itself must not be writable by group or others even with
/// the sticky bit; its ancestors follow the rules of [`open_trusted_file`].
pub fn check_trusted_dir(path: &Path) -> Result<(), TrustError> {
    TrustedDir::open(path).map(|_| ())
}

fn open_trusted_file_with(path: &Path, owners: Owners) -> Result<File, TrustError> {
    let name = path.file_name().ok_or_else(|| TrustError::NotRegular {
        path: path.to_owned(),
    })?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let parent = canonical(parent)?;
    let dir_fd = walk(&parent, owners, Strictness::Ancestor)?;
    open_leaf(dir_fd.as_fd(), &parent, name, owners)
}

/// A directory that passed [`check_trusted_dir`], held open so that files opened through it are found in the very
/// directory that was checked, not in whatever the path names later.
#[derive(Debug)]
pub struct TrustedDir {
    /// An `O_PATH` descriptor: usable for `*at` calls and `fstat`, not for reading.
    fd: OwnedFd,
    /// The canonical path, for messages.
    path: PathBuf,
    owners: Owners,
}

impl TrustedDir {
    /// Open and check a directory and its ancestors (see [`check_trusted_dir`]).
    pub fn open(path: &Path) -> Result<TrustedDir, TrustError> {
        Self::open_with(path, trusted_owners())
    }

    fn open_with(path: &Path, owners: Owners) -> Result<TrustedDir, TrustError> {
        let path = canonical(path)?;
        let fd = walk(&path, owners, Strictness::Leaf)?;
        Ok(TrustedDir { fd, path, owners })
    }

    /// The canonical path of the directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Open the file `name` (a single component) in this directory for reading and check the opened file.
    pub fn open_file(&self, name: &OsStr) -> Result<File, TrustError> {
        check_plain_name(&self.path, name)?;
        open_leaf(self.fd.as_fd(), &self.path, name, self.owners)
    }

    /// The names of the entries in this directory (without `.` and `..`), in no particular order. Read through
    /// the checked descriptor: they are the entries of the directory that was checked, not of whatever its path
    /// names by now. Nothing about the entries themselves is checked: open them with [`TrustedDir::open_file`].
    pub fn names(&self) -> Result<Vec<OsString>, TrustError> {
        use std::os::unix::ffi::OsStrExt;
        // The held descriptor is O_PATH, which cannot list: open the same directory again through it.
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&self.fd, ".", flags, Mode::empty())
            .map_err(io_error(&self.path))?;
        let dir = rustix::fs::Dir::new(fd).map_err(io_error(&self.path))?;
        let mut names = Vec::new();
        for entry in dir {
            let entry = entry.map_err(io_error(&self.path))?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(OsStr::from_bytes(name).to_owned());
            }
        }
        Ok(names)
    }
}

impl AsFd for TrustedDir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// How strictly a directory in the walk is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strictness {
    /// Every directory in the path is an ancestor of something else: group/world-writable is accepted with the
    /// sticky bit.
    Ancestor,
    /// The last directory is the one asked about: never group/world-writable, sticky or not.
    Leaf,
}

fn canonical(path: &Path) -> Result<PathBuf, TrustError> {
    std::fs::canonicalize(path).map_err(|source| TrustError::Io {
        path: path.to_owned(),
        source,
    })
}

fn io_error(path: &Path) -> impl FnOnce(rustix::io::Errno) -> TrustError + '_ {
    move |errno| TrustError::Io {
        path: path.to_owned(),
        source: errno.into(),
    }
}

/// Open `dir` (absolute, canonical) one component at a time from `/` with `O_NOFOLLOW`, checking each opened
/// directory. Returns the descriptor of `dir` itself.
fn walk(dir: &Path, owners: Owners, strictness: Strictness) -> Result<OwnedFd, TrustError> {
    let not_canonical = || TrustError::Io {
        path: dir.to_owned(),
        source: io::Error::new(
            io::ErrorKind::InvalidInput,
            "not an absolute canonical path",
        ),
    };
    if !dir.has_root() {
        return Err(not_canonical());
    }
    let names: Vec<&OsStr> = dir
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(Ok(name)),
            Component::RootDir => None,
            _ => Some(Err(())),
        })
        .collect::<Result<_, ()>>()
        .map_err(|()| not_canonical())?;

    // O_PATH: directories only need to be searchable, not readable, to be walked and fstat'ed.
    let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut current = PathBuf::from("/");
    let mut fd = rustix::fs::openat(CWD, "/", flags | OFlags::DIRECTORY, Mode::empty())
        .map_err(io_error(&current))?;
    check_dir(
        &fd,
        &current,
        owners,
        strictness == Strictness::Leaf && names.is_empty(),
    )?;
    for (i, name) in names.iter().enumerate() {
        current.push(name);
        fd = rustix::fs::openat(&fd, *name, flags, Mode::empty()).map_err(io_error(&current))?;
        let is_last = i + 1 == names.len();
        check_dir(
            &fd,
            &current,
            owners,
            strictness == Strictness::Leaf && is_last,
        )?;
    }
    Ok(fd)
}

fn check_dir(fd: &OwnedFd, path: &Path, owners: Owners, strict: bool) -> Result<(), TrustError> {
    let stat = rustix::fs::fstat(fd).map_err(io_error(path))?;
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::Directory => {}
        // The path was canonical when resolved: a link here means it changed under us.
        FileType::Symlink => {
            return Err(TrustError::Symlink {
                path: path.to_owned(),
            })
        }
        _ => {
            return Err(TrustError::NotDirectory {
                path: path.to_owned(),
            })
        }
    }
    check_owner(&stat, path, owners)?;
    let mode = Mode::from_raw_mode(stat.st_mode);
    let writable = mode.intersects(Mode::WGRP | Mode::WOTH);
    // Sticky: others may add entries but not rename or delete those they do not own, and the next component
    // down is itself checked to be owned by a trusted owner, so it cannot be swapped.
    let sticky_ok = !strict && mode.contains(Mode::SVTX);
    if writable && !sticky_ok {
        return Err(TrustError::Writable {
            path: path.to_owned(),
            mode: permission_bits(&stat),
        });
    }
    Ok(())
}

fn check_owner(stat: &Stat, path: &Path, owners: Owners) -> Result<(), TrustError> {
    if owners.contains(stat.st_uid) {
        Ok(())
    } else {
        Err(TrustError::NotOwned {
            path: path.to_owned(),
            uid: stat.st_uid,
            owners,
        })
    }
}

fn permission_bits(stat: &Stat) -> u32 {
    Mode::from_raw_mode(stat.st_mode).bits() & 0o7777
}

fn check_plain_name(dir: &Path, name: &OsStr) -> Result<(), TrustError> {
    let mut components = Path::new(name).components();
    match (components.next(), components.next()) {
        (Some(Component::Normal(n)), None) if n == name => Ok(()),
        _ => Err(TrustError::BadName {
            dir: dir.to_owned(),
            name: name.to_string_lossy().into_owned(),
        }),
    }
}

/// Open `name` in the checked directory `dir_fd` and check the opened file.
fn open_leaf(
    dir_fd: BorrowedFd<'_>,
    dir: &Path,
    name: &OsStr,
    owners: Owners,
) -> Result<File, TrustError> {
    let path = dir.join(name);
    // NOFOLLOW: a link at the leaf is refused (ELOOP). NONBLOCK: a FIFO left here must not hang a login; it is then
    // refused as not regular. For a regular file NONBLOCK changes nothing.
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
    let fd = rustix::fs::openat(dir_fd, name, flags, Mode::empty()).map_err(|errno| {
        if errno == rustix::io::Errno::LOOP {
            TrustError::Symlink { path: path.clone() }
        } else {
            io_error(&path)(errno)
        }
    })?;
    let stat = rustix::fs::fstat(&fd).map_err(io_error(&path))?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Err(TrustError::NotRegular { path });
    }
    check_owner(&stat, &path, owners)?;
    if Mode::from_raw_mode(stat.st_mode).intersects(Mode::WGRP | Mode::WOTH) {
        return Err(TrustError::Writable {
            mode: permission_bits(&stat),
            path,
        });
    }
    Ok(File::from(fd))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{chown, symlink, PermissionsExt};

    /// A uid that owns nothing on a test machine.
    pub(crate) const STRANGER: u32 = 54_321;

    /// A fresh directory that passes the trust rules: under the system temporary directory (`/tmp`, sticky), mode
    /// 0700, owned by the test process.
    pub(crate) fn trusted_tempdir() -> tempfile::TempDir {
        let dir = tempfile::Builder::new()
            .prefix("facekey-test-")
            .tempdir()
            .expect("create a temporary directory");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).expect("chmod 0700");
        if let Err(e) = check_trusted_dir(dir.path()) {
            panic!(
                "the test directory itself must be trusted for these tests to mean anything: {e}"
            );
        }
        dir
    }

    pub(crate) fn is_root() -> bool {
        rustix::process::geteuid().is_root()
    }

    pub(crate) fn chmod(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
    }

    fn write_file(path: &Path, mode: u32) {
        fs::write(path, b"x").expect("write");
        chmod(path, mode);
    }

    #[test]
    fn root_trusts_only_root_and_a_user_also_trusts_itself() {
        assert_eq!(Owners::for_euid(0), Owners { also: None });
        assert!(Owners::for_euid(0).contains(0));
        assert!(!Owners::for_euid(0).contains(1000));
        assert!(Owners::for_euid(1000).contains(0));
        assert!(Owners::for_euid(1000).contains(1000));
        assert!(!Owners::for_euid(1000).contains(1001));
        let euid = rustix::process::geteuid().as_raw();
        assert_eq!(trusted_owners(), Owners::for_euid(euid));
    }

    #[test]
    fn private_regular_file_in_trusted_dir_is_opened() {
        let dir = trusted_tempdir();
        let path = dir.path().join("f");
        fs::write(&path, b"content").unwrap();
        chmod(&path, 0o644);
        let mut file = open_trusted_file(&path).expect("trusted");
        let mut text = String::new();
        std::io::Read::read_to_string(&mut file, &mut text).unwrap();
        assert_eq!(text, "content");
    }

    #[test]
    fn group_or_world_writable_file_is_refused() {
        let dir = trusted_tempdir();
        for mode in [0o620, 0o602, 0o666] {
            let path = dir.path().join(format!("f{mode:o}"));
            write_file(&path, mode);
            match open_trusted_file(&path) {
                Err(TrustError::Writable { path: p, mode: m }) => {
                    assert_eq!(p, fs::canonicalize(&path).unwrap());
                    assert_eq!(m, mode);
                }
                other => panic!("mode {mode:o}: expected Writable, got {other:?}"),
            }
        }
    }

    #[test]
    fn writable_error_names_the_file_and_the_fix() {
        let dir = trusted_tempdir();
        let path = dir.path().join("f");
        write_file(&path, 0o666);
        let message = open_trusted_file(&path).unwrap_err().to_string();
        let canonical = fs::canonicalize(&path).unwrap();
        assert!(
            message.contains(&canonical.display().to_string()),
            "{message}"
        );
        assert!(message.contains("chmod go-w"), "{message}");
    }

    #[test]
    fn symlink_at_the_leaf_is_refused() {
        let dir = trusted_tempdir();
        let target = dir.path().join("target");
        write_file(&target, 0o600);
        let link = dir.path().join("link");
        symlink(&target, &link).unwrap();
        match open_trusted_file(&link) {
            Err(TrustError::Symlink { path }) => assert_eq!(path.file_name().unwrap(), "link"),
            other => panic!("expected Symlink, got {other:?}"),
        }
    }

    #[test]
    fn symlinked_directory_is_resolved_and_its_target_checked() {
        let dir = trusted_tempdir();
        let real = dir.path().join("real");
        fs::create_dir(&real).unwrap();
        chmod(&real, 0o755);
        write_file(&real.join("f"), 0o600);
        symlink(&real, dir.path().join("link")).unwrap();
        open_trusted_file(&dir.path().join("link/f")).expect("target chain is trusted");

        chmod(&real, 0o777);
        match open_trusted_file(&dir.path().join("link/f")) {
            Err(TrustError::Writable { path, .. }) => {
                assert_eq!(path, fs::canonicalize(&real).unwrap())
            }
            other => panic!("expected Writable for the link target, got {other:?}"),
        }
    }

    #[test]
    fn directory_or_fifo_is_not_a_regular_file() {
        let dir = trusted_tempdir();
        let sub = dir.path().join("sub");
        fs::create_dir(&sub).unwrap();
        assert!(matches!(
            open_trusted_file(&sub),
            Err(TrustError::NotRegular { .. })
        ));

        // Must return at once (O_NONBLOCK), not wait for a writer.
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(CWD, &fifo, FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
        assert!(matches!(
            open_trusted_file(&fifo),
            Err(TrustError::NotRegular { .. })
        ));
    }

    #[test]
    fn missing_file_is_reported_as_not_found() {
        let dir = trusted_tempdir();
        let err = open_trusted_file(&dir.path().join("absent")).unwrap_err();
        assert!(err.is_not_found(), "{err:?}");
        let err = open_trusted_file(&dir.path().join("absent-dir/f")).unwrap_err();
        assert!(err.is_not_found(), "{err:?}");
        let err = check_trusted_dir(&dir.path().join("absent-dir")).unwrap_err();
        assert!(err.is_not_found(), "{err:?}");
    }

    #[test]
    fn world_writable_ancestor_without_sticky_bit_is_refused() {
        let dir = trusted_tempdir();
        let open = dir.path().join("open");
        let inner = open.join("inner");
        fs::create_dir_all(&inner).unwrap();
        chmod(&open, 0o777);
        chmod(&inner, 0o700);
        write_file(&inner.join("f"), 0o600);
        match open_trusted_file(&inner.join("f")) {
            Err(TrustError::Writable { path, mode }) => {
                assert_eq!(path, fs::canonicalize(&open).unwrap());
                assert_eq!(mode, 0o777);
            }
            other => panic!("expected Writable for the ancestor, got {other:?}"),
        }
        assert!(matches!(
            check_trusted_dir(&inner),
            Err(TrustError::Writable { .. })
        ));
    }

    #[test]
    fn group_writable_ancestor_is_refused() {
        let dir = trusted_tempdir();
        let shared = dir.path().join("shared");
        fs::create_dir(&shared).unwrap();
        chmod(&shared, 0o770);
        write_file(&shared.join("f"), 0o600);
        assert!(matches!(
            open_trusted_file(&shared.join("f")),
            Err(TrustError::Writable { .. })
        ));
    }

    #[test]
    fn sticky_world_writable_ancestor_is_accepted() {
        let dir = trusted_tempdir();
        let sticky = dir.path().join("sticky");
        let inner = sticky.join("inner");
        fs::create_dir_all(&inner).unwrap();
        chmod(&sticky, 0o1777);
        chmod(&inner, 0o700);
        write_file(&inner.join("f"), 0o600);
        open_trusted_file(&inner.join("f")).expect("sticky ancestor is fine");
        check_trusted_dir(&inner).expect("sticky ancestor is fine");
        // A file directly in a sticky world-writable directory: its owner is still checked.
        write_file(&sticky.join("f"), 0o600);
        open_trusted_file(&sticky.join("f")).expect("trusted owner in sticky dir");
    }

    #[test]
    fn sticky_world_writable_directory_itself_is_refused() {
        let dir = trusted_tempdir();
        let sticky = dir.path().join("sticky");
        fs::create_dir(&sticky).unwrap();
        chmod(&sticky, 0o1777);
        match check_trusted_dir(&sticky) {
            Err(TrustError::Writable { path, mode }) => {
                assert_eq!(path, fs::canonicalize(&sticky).unwrap());
                assert_eq!(mode, 0o1777);
            }
            other => panic!("expected Writable, got {other:?}"),
        }
    }

    #[test]
    fn a_file_is_not_a_directory() {
        let dir = trusted_tempdir();
        let path = dir.path().join("f");
        write_file(&path, 0o600);
        assert!(matches!(
            check_trusted_dir(&path),
            Err(TrustError::NotDirectory { .. })
        ));
    }

    #[test]
    fn file_owned_by_another_uid_is_refused_when_root() {
        if !is_root() {
            eprintln!("skipped: chown to another uid needs root");
            return;
        }
        let dir = trusted_tempdir();
        let path = dir.path().join("f");
        write_file(&path, 0o600);
        chown(&path, Some(STRANGER), Some(STRANGER)).unwrap();
        match open_trusted_file(&path) {
            Err(TrustError::NotOwned { uid, owners, .. }) => {
                assert_eq!(uid, STRANGER);
                assert_eq!(owners, Owners::for_euid(0));
            }
            other => panic!("expected NotOwned, got {other:?}"),
        }
        let message = open_trusted_file(&path).unwrap_err().to_string();
        assert!(message.contains("chown root:root"), "{message}");
        // What an unprivileged process running as that uid would accept.
        open_trusted_file_with(&path, Owners::for_euid(STRANGER)).expect("own file when not root");
    }

    #[test]
    fn directory_owned_by_another_uid_is_refused_when_root() {
        if !is_root() {
            eprintln!("skipped: chown to another uid needs root");
            return;
        }
        let dir = trusted_tempdir();
        let theirs = dir.path().join("theirs");
        fs::create_dir(&theirs).unwrap();
        write_file(&theirs.join("f"), 0o600);
        chown(&theirs, Some(STRANGER), None).unwrap();
        match open_trusted_file(&theirs.join("f")) {
            Err(TrustError::NotOwned { path, uid, .. }) => {
                assert_eq!(path, fs::canonicalize(&theirs).unwrap());
                assert_eq!(uid, STRANGER);
            }
            other => panic!("expected NotOwned for the ancestor, got {other:?}"),
        }
        assert!(matches!(
            check_trusted_dir(&theirs),
            Err(TrustError::NotOwned { .. })
        ));
    }

    #[test]
    fn trusted_dir_lists_the_names_of_the_checked_directory() {
        let dir = trusted_tempdir();
        write_file(&dir.path().join("a"), 0o600);
        fs::create_dir(dir.path().join("sub")).unwrap();
        let trusted = TrustedDir::open(dir.path()).unwrap();
        // Replace the directory under its name: the listing still reads the one that was checked.
        let moved = dir.path().with_extension("moved");
        fs::rename(dir.path(), &moved).unwrap();
        fs::create_dir(dir.path()).unwrap();
        write_file(&dir.path().join("planted"), 0o600);
        let mut names = trusted.names().unwrap();
        names.sort();
        fs::remove_dir_all(&moved).unwrap();
        assert_eq!(names, [OsString::from("a"), OsString::from("sub")]);
    }

    #[test]
    fn trusted_dir_opens_only_plain_names() {
        let dir = trusted_tempdir();
        write_file(&dir.path().join("f"), 0o600);
        let trusted = TrustedDir::open(dir.path()).unwrap();
        trusted.open_file(OsStr::new("f")).expect("plain name");
        for name in ["", ".", "..", "../f", "a/f", "/etc/passwd"] {
            assert!(
                matches!(
                    trusted.open_file(OsStr::new(name)),
                    Err(TrustError::BadName { .. })
                ),
                "{name:?} must be refused"
            );
        }
    }
}
