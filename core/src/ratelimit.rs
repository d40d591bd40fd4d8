//! The per-user rate limit: after `max_failures` failed face attempts within `window` seconds, or
//! `max_failures_per_day` within a day, further attempts are refused before the camera is opened, until the
//! oldest of those failures leaves its window.
//!
//! Time is read on CLOCK_BOOTTIME ([`Stamp`]): seconds since boot, suspend included. Setting the wall clock back
//! or forward neither unlocks the limit early nor locks a user out for good; the state is on tmpfs, which a
//! reboot clears along with that clock. A state file from another boot (a state directory kept on disk) has its
//! failures counted as fresh: at worst they refuse for one more window or day.
//!
//! State lives in `rate_limit.state_dir` (`/run/facekey`: tmpfs, so a reboot clears it): a directory owned by the
//! process's user (root in production) with no access for group or others, and one file per user holding one unix
//! timestamp (seconds) per counted attempt. Every read-modify-write of a user's file holds an exclusive `flock` on
//! it, so two concurrent attempts (two `sudo` in two terminals) never lose a count. The lock is taken without
//! blocking and retried only until the caller's deadline: another process holding it (a stopped `su`) makes the
//! attempt give up with [`RateLimitError::Busy`], never wait past its deadline.
//!
//! Attempts are charged when they start ([`RateLimiter::begin`]) and settled when they end ([`Ticket::settle`]):
//! a failure stays counted, a success clears the user's record, an attempt that never got to a frame (camera
//! missing or busy at open, broken model) is refunded (`policy::settlement` decides which). A process that dies mid-attempt leaves its attempt counted: the limit
//! errs on the side of refusing, and at most `max_failures` attempts can ever run in one window, concurrent or not.
//!
//! This module must never: wait for a lock past the deadline it was given, follow a symbolic link, use a directory or file that anyone but its owner can read or
//! write, or trust the file's content beyond parsing numbers (a malformed line is dropped).

use std::fs::{DirBuilder, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use facekey_config::RateLimit;
use rustix::fs::{FileType, FlockOperation, Mode, OFlags, CWD};

use crate::store::UserName;
use crate::trust;

/// The longer window: failures are kept and counted against `max_failures_per_day` for this many seconds.
pub const DAY: u64 = 24 * 60 * 60;

/// A point in time for the rate limit: whole seconds on CLOCK_BOOTTIME (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp(pub u64);

impl Stamp {
    /// Now, on CLOCK_BOOTTIME.
    pub fn now() -> Stamp {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
        Stamp(u64::try_from(t.tv_sec).unwrap_or(0))
    }
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`), written in each state file so that stamps of another boot
/// are recognised; empty when the kernel does not say.
fn boot_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| {
                s.trim()
                    .chars()
                    .filter(|c| c.is_ascii_hexdigit() || *c == '-')
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// Largest state file read; a real one holds at most a few lines.
const MAX_STATE_BYTES: u64 = 64 * 1024;

/// Pause between two tries of a lock held by another process: short against a deadline of a few seconds, long
/// enough not to spin.
const LOCK_RETRY: Duration = Duration::from_millis(5);

/// Why the rate-limit state could not be used. Face authentication does not run without it.
#[derive(thiserror::Error, Debug)]
pub enum RateLimitError {
    /// The state directory or one of its parents fails the trust rules.
    #[error("rate-limit state directory refused: {0}")]
    UntrustedDir(#[from] trust::TrustError),
    /// A state directory or file others could read or write, or not owned by this process's user.
    #[error("{}: {reason}; fix: chown root:root and chmod go-rwx it, or remove it", path.display())]
    Exposed { path: PathBuf, reason: String },
    /// Creating, opening, locking, reading or writing failed.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    /// Another process held the file's lock until the attempt's deadline.
    #[error(
        "{}: locked by another process for {} ms, until this attempt's deadline; fix: find the holder in \
         /proc/locks (a stopped su or sudo?) and let it finish or end it",
        path.display(),
        waited.as_millis()
    )]
    Busy { path: PathBuf, waited: Duration },
}

/// Too many recent failures: the attempt is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    /// Failures counted in the window that refused (`max_failures`'s, or the day).
    pub failures: u32,
    /// The configured limit of that window.
    pub max_failures: u32,
    /// That window's length: `[rate_limit] window`, or [`DAY`].
    pub within: Duration,
    /// When the oldest counted failure leaves the window, so an attempt may run again.
    pub retry_after: Duration,
}

/// How an attempt ended, for [`Ticket::settle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// The face matched: the user's failures are forgotten.
    Success,
    /// No match, or no face: the attempt stays counted.
    Failure,
    /// Face authentication could not be attempted (no camera, broken model) and no frame was analysed: not a
    /// failure of the person in front of the camera, so the charge is refunded.
    NotCounted,
}

/// The rate limit of one configuration, its state directory opened and checked.
#[derive(Debug)]
pub struct RateLimiter {
    dir: OwnedFd,
    dir_path: PathBuf,
    max_failures: u32,
    window: u64,
    max_per_day: u32,
}

/// A charged attempt: settle it when the attempt ends. Dropped without settling, the attempt stays counted.
#[derive(Debug)]
#[must_use = "settle the ticket, or the attempt stays counted as a failure"]
pub struct Ticket {
    file: File,
    path: PathBuf,
    stamp: u64,
}

impl RateLimiter {
    /// Open the state directory, creating it (mode 0700) when it is missing. Its parents must pass the trust
    /// rules, and the directory itself must belong to this process's user with no access for group or others.
    pub fn open(settings: &RateLimit) -> Result<RateLimiter, RateLimitError> {
        let path = settings.state_dir.as_path();
        match DirBuilder::new().mode(0o700).create(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(RateLimitError::Io {
                    path: path.to_owned(),
                    source,
                })
            }
        }
        trust::check_trusted_dir(path)?;
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let dir = rustix::fs::openat(CWD, path, flags, Mode::empty()).map_err(io_error(path))?;
        check_private(&dir, path, FileType::Directory)?;
        Ok(RateLimiter {
            dir,
            dir_path: path.to_owned(),
            max_failures: settings.max_failures.max(1),
            window: settings.window.max(1),
            max_per_day: settings.max_failures_per_day.max(1),
        })
    }

    /// Charge an attempt for `user` at time `now`, or refuse it when `max_failures` are already counted in the
    /// window ending at `now`, or `max_failures_per_day` in the day ending at `now`. Waits for another process's
    /// lock on the user's file until `deadline` at most.
    pub fn begin(
        &self,
        user: &UserName,
        now: Stamp,
        deadline: Instant,
    ) -> Result<Result<Ticket, Limited>, RateLimitError> {
        let now = now.0;
        let (mut file, path) = self.open_user_file(user)?;
        let lock = Lock::exclusive(&file, &path, deadline)?;
        let mut stamps = self.kept(read_stamps(&mut file, &path, now)?, now);
        let in_window: Vec<u64> = self.in_window(&stamps, now).collect();
        let refusal = if in_window.len() as u32 >= self.max_failures {
            Some((in_window, self.max_failures, self.window))
        } else if stamps.len() as u32 >= self.max_per_day {
            Some((stamps.clone(), self.max_per_day, DAY.max(self.window)))
        } else {
            None
        };
        if let Some((counted, max_failures, within)) = refusal {
            let oldest = counted.iter().copied().min().unwrap_or(now);
            write_stamps(&mut file, &path, &stamps)?;
            return Ok(Err(Limited {
                failures: counted.len() as u32,
                max_failures,
                within: Duration::from_secs(within),
                retry_after: Duration::from_secs((oldest + within).saturating_sub(now)),
            }));
        }
        stamps.push(now);
        write_stamps(&mut file, &path, &stamps)?;
        drop(lock);
        Ok(Ok(Ticket {
            file,
            path,
            stamp: now,
        }))
    }

    /// Failures counted for `user` in the window ending at `now` (for messages and tests), waiting for another
    /// process's lock until `deadline` at most.
    pub fn failures(
        &self,
        user: &UserName,
        now: Stamp,
        deadline: Instant,
    ) -> Result<u32, RateLimitError> {
        let (mut file, path) = self.open_user_file(user)?;
        let _lock = Lock::exclusive(&file, &path, deadline)?;
        let stamps = self.kept(read_stamps(&mut file, &path, now.0)?, now.0);
        Ok(self.in_window(&stamps, now.0).count() as u32)
    }

    /// The directory holding the state files.
    pub fn dir(&self) -> &Path {
        &self.dir_path
    }

    /// Stamps kept: those of the longer of the window and the day ending at `now`.
    fn kept(&self, stamps: Vec<u64>, now: u64) -> Vec<u64> {
        let oldest = now.saturating_sub(DAY.max(self.window));
        stamps.into_iter().filter(|&t| t > oldest).collect()
    }

    /// Stamps inside the window ending at `now`.
    fn in_window<'s>(&self, stamps: &'s [u64], now: u64) -> impl Iterator<Item = u64> + 's {
        let oldest = now.saturating_sub(self.window);
        stamps.iter().copied().filter(move |&t| t > oldest)
    }

    fn open_user_file(&self, user: &UserName) -> Result<(File, PathBuf), RateLimitError> {
        let path = self.dir_path.join(user.as_str());
        let flags =
            OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY;
        let fd = rustix::fs::openat(&self.dir, user.as_str(), flags, Mode::from_raw_mode(0o600))
            .map_err(io_error(&path))?;
        check_private(&fd, &path, FileType::RegularFile)?;
        Ok((File::from(fd), path))
    }
}

impl Ticket {
    /// Record how the attempt ended (see [`Settlement`]), waiting for another process's lock until `deadline` at
    /// most. Past it the attempt stays counted, as charged by [`RateLimiter::begin`].
    pub fn settle(mut self, how: Settlement, deadline: Instant) -> Result<(), RateLimitError> {
        let _lock = Lock::exclusive(&self.file, &self.path, deadline)?;
        match how {
            Settlement::Failure => Ok(()),
            Settlement::Success => write_stamps(&mut self.file, &self.path, &[]),
            Settlement::NotCounted => {
                let mut stamps = read_stamps(&mut self.file, &self.path, self.stamp)?;
                if let Some(i) = stamps.iter().position(|&t| t == self.stamp) {
                    stamps.remove(i);
                }
                write_stamps(&mut self.file, &self.path, &stamps)
            }
        }
    }
}

/// An exclusive `flock` on the file's open file description, released on drop (and by the kernel when the last
/// descriptor closes). It holds a duplicate descriptor, so the file itself stays free to read and write.
struct Lock(File);

impl Lock {
    /// Take the lock without blocking, retrying every [`LOCK_RETRY`] while another open file description holds
    /// it, until `deadline`; then [`RateLimitError::Busy`]. A free lock is taken at once, even past the deadline.
    fn exclusive(file: &File, path: &Path, deadline: Instant) -> Result<Lock, RateLimitError> {
        let dup = file.try_clone().map_err(|source| RateLimitError::Io {
            path: path.to_owned(),
            source,
        })?;
        let started = Instant::now();
        loop {
            match rustix::fs::flock(&dup, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(Lock(dup)),
                Err(rustix::io::Errno::WOULDBLOCK | rustix::io::Errno::INTR) => {}
                Err(errno) => return Err(io_error(path)(errno)),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(RateLimitError::Busy {
                    path: path.to_owned(),
                    waited: started.elapsed(),
                });
            }
            std::thread::sleep(left.min(LOCK_RETRY));
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Closing the last descriptor releases the lock anyway; an error here changes nothing.
        let _ = rustix::fs::flock(&self.0, FlockOperation::Unlock);
    }
}

/// The opened directory or file must be of `kind`, owned by this process's user, and closed to group and others.
fn check_private(fd: &impl AsFd, path: &Path, kind: FileType) -> Result<(), RateLimitError> {
    let stat = rustix::fs::fstat(fd).map_err(io_error(path))?;
    let exposed = |reason: String| RateLimitError::Exposed {
        path: path.to_owned(),
        reason,
    };
    if FileType::from_raw_mode(stat.st_mode) != kind {
        return Err(exposed(format!(
            "not a {}",
            if kind == FileType::Directory {
                "directory"
            } else {
                "regular file"
            }
        )));
    }
    let euid = rustix::process::geteuid().as_raw();
    if stat.st_uid != euid {
        return Err(exposed(format!(
            "owned by uid {}, expected uid {euid}",
            stat.st_uid
        )));
    }
    let mode = stat.st_mode & 0o7777;
    if mode & 0o077 != 0 {
        return Err(exposed(format!(
            "mode {mode:04o} gives group or others access"
        )));
    }
    Ok(())
}

/// The stamps in a state file: a `boot <id>` line, then one number per line. Stamps written in another boot (or
/// with no boot line), or later than `now` (which CLOCK_BOOTTIME cannot give), count as made at `now`: never
/// fewer failures than were recorded, and never refused for longer than one window or day from now.
fn read_stamps(file: &mut File, path: &Path, now: u64) -> Result<Vec<u64>, RateLimitError> {
    let io = |source| RateLimitError::Io {
        path: path.to_owned(),
        source,
    };
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut text = String::new();
    file.take(MAX_STATE_BYTES)
        .read_to_string(&mut text)
        .map_err(io)?;
    // Once rewritten by this boot the file says so, so another boot's stamps are moved to "now" only once.
    let this_boot = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("boot"))
        .is_some_and(|id| id.trim() == boot_id());
    Ok(text
        .lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .map(|t| if this_boot { t.min(now) } else { now })
        .collect())
}

fn write_stamps(file: &mut File, path: &Path, stamps: &[u64]) -> Result<(), RateLimitError> {
    let io = |source| RateLimitError::Io {
        path: path.to_owned(),
        source,
    };
    let mut text = format!("boot {}\n", boot_id());
    text.extend(stamps.iter().map(|t| format!("{t}\n")));
    file.set_len(0).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)
}

fn io_error(path: &Path) -> impl FnOnce(rustix::io::Errno) -> RateLimitError + '_ {
    move |errno| RateLimitError::Io {
        path: path.to_owned(),
        source: errno.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::{Arc, Barrier};

    fn settings(dir: &Path) -> RateLimit {
        RateLimit {
            max_failures: 5,
            window: 60,
            max_failures_per_day: 20,
            state_dir: dir.join("state"),
        }
    }

    fn user(name: &str) -> UserName {
        UserName::new(name).unwrap()
    }

    fn at(secs: u64) -> Stamp {
        Stamp(secs)
    }

    /// A deadline no test reaches when the lock is free.
    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    /// Take `user`'s lock on an open file description of its own, as another process would.
    fn hold_lock(limiter: &RateLimiter, user: &str) -> File {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(limiter.dir().join(user))
            .unwrap();
        rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive).unwrap();
        file
    }

    fn fail(limiter: &RateLimiter, who: &UserName, secs: u64) {
        let ticket = limiter.begin(who, at(secs), soon()).unwrap().unwrap();
        ticket.settle(Settlement::Failure, soon()).unwrap();
    }

    #[test]
    fn sixth_attempt_in_the_window_is_refused_until_the_oldest_failure_expires() {
        let tmp = tempfile::tempdir().unwrap();
        let limiter = RateLimiter::open(&settings(tmp.path())).unwrap();
        let alice = user("alice");
        for i in 0..5 {
            fail(&limiter, &alice, 1000 + i);
        }
        let limited = limiter
            .begin(&alice, at(1010), soon())
            .unwrap()
            .unwrap_err();
        assert_eq!(limited.failures, 5);
        assert_eq!(limited.retry_after, Duration::from_secs(50));
        // 1000 + 60: the first failure has left the window.
        assert!(limiter.begin(&alice, at(1060), soon()).unwrap().is_ok());
        // Another user is not affected.
        assert!(limiter
            .begin(&user("bob"), at(1010), soon())
            .unwrap()
            .is_ok());
    }

    #[test]
    fn success_clears_the_failures_and_unavailable_is_refunded() {
        let tmp = tempfile::tempdir().unwrap();
        let limiter = RateLimiter::open(&settings(tmp.path())).unwrap();
        let alice = user("alice");
        for i in 0..4 {
            fail(&limiter, &alice, 1000 + i);
        }
        let ticket = limiter.begin(&alice, at(1005), soon()).unwrap().unwrap();
        assert_eq!(limiter.failures(&alice, at(1005), soon()).unwrap(), 5);
        ticket.settle(Settlement::NotCounted, soon()).unwrap();
        assert_eq!(limiter.failures(&alice, at(1005), soon()).unwrap(), 4);
        let ticket = limiter.begin(&alice, at(1006), soon()).unwrap().unwrap();
        ticket.settle(Settlement::Success, soon()).unwrap();
        assert_eq!(limiter.failures(&alice, at(1006), soon()).unwrap(), 0);
    }

    #[test]
    fn concurrent_attempts_never_exceed_the_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let limiter = Arc::new(RateLimiter::open(&settings(tmp.path())).unwrap());
        let barrier = Arc::new(Barrier::new(16));
        let handles: Vec<_> = (0..16)
            .map(|_| {
                let (limiter, barrier) = (limiter.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    // Each thread opens the file itself: separate open file descriptions, as in two processes.
                    match limiter.begin(&user("alice"), at(2000), soon()).unwrap() {
                        Ok(ticket) => {
                            ticket.settle(Settlement::Failure, soon()).unwrap();
                            true
                        }
                        Err(_) => false,
                    }
                })
            })
            .collect();
        let admitted = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|&a| a)
            .count();
        assert_eq!(admitted, 5);
        assert_eq!(
            limiter.failures(&user("alice"), at(2000), soon()).unwrap(),
            5
        );
    }

    #[test]
    fn an_attempt_dropped_without_settling_stays_counted() {
        let tmp = tempfile::tempdir().unwrap();
        let limiter = RateLimiter::open(&settings(tmp.path())).unwrap();
        let alice = user("alice");
        drop(limiter.begin(&alice, at(3000), soon()).unwrap().unwrap());
        assert_eq!(limiter.failures(&alice, at(3001), soon()).unwrap(), 1);
    }

    #[test]
    fn state_dir_is_created_private() {
        let tmp = tempfile::tempdir().unwrap();
        let limiter = RateLimiter::open(&settings(tmp.path())).unwrap();
        let mode = std::fs::metadata(limiter.dir())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        drop(
            limiter
                .begin(&user("alice"), at(1), soon())
                .unwrap()
                .unwrap(),
        );
        let file = std::fs::metadata(limiter.dir().join("alice")).unwrap();
        assert_eq!(file.permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn state_dir_readable_by_others_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let s = settings(tmp.path());
        std::fs::create_dir(&s.state_dir).unwrap();
        std::fs::set_permissions(&s.state_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = RateLimiter::open(&s).unwrap_err();
        assert!(matches!(err, RateLimitError::Exposed { .. }), "{err}");
    }

    #[test]
    fn state_file_writable_by_others_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let limiter = RateLimiter::open(&settings(tmp.path())).unwrap();
        let path = limiter.dir().join("alice");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let err = limiter.begin(&user("alice"), at(1), soon()).unwrap_err();
        assert!(matches!(err, RateLimitError::Exposed { .. }), "{err}");
    }

    #[test]
    fn symlinked_state_file_is_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let limiter = RateLimiter::open(&settings(tmp.path())).unwrap();
        let target = tmp.path().join("elsewhere");
        std::fs::write(&target, "").unwrap();
        std::os::unix::fs::symlink(&target, limiter.dir().join("alice")).unwrap();
        assert!(limiter.begin(&user("alice"), at(1), soon()).is_err());
    }

    #[test]
    fn the_daily_cap_refuses_failures_in_a_row_until_the_oldest_is_a_day_old() {
        let tmp = tempfile::tempdir().unwrap();
        let limiter = RateLimiter::open(&settings(tmp.path())).unwrap();
        let alice = user("alice");
        // One failure every 61 s: the 60 s window never holds more than one, the day holds them all.
        let times: Vec<u64> = (0..20).map(|i| 1000 + 61 * i).collect();
        for &t in &times {
            fail(&limiter, &alice, t);
        }
        let now = times[19] + 61;
        let limited = limiter.begin(&alice, at(now), soon()).unwrap().unwrap_err();
        assert_eq!(
            (limited.failures, limited.max_failures, limited.within),
            (20, 20, Duration::from_secs(DAY))
        );
        assert_eq!(limited.retry_after, Duration::from_secs(1000 + DAY - now));
        // Still refused a second before the first failure is a day old, allowed once it is.
        assert!(limiter
            .begin(&alice, at(1000 + DAY - 1), soon())
            .unwrap()
            .is_err());
        let ticket = limiter
            .begin(&alice, at(1000 + DAY), soon())
            .unwrap()
            .unwrap();
        // The user's own match clears the day's count too.
        ticket.settle(Settlement::Success, soon()).unwrap();
        for i in 0..19 {
            fail(&limiter, &alice, 1000 + DAY + 61 * (i + 1));
        }
        assert!(limiter
            .begin(&alice, at(1000 + DAY + 61 * 20), soon())
            .unwrap()
            .is_ok());
    }

    #[test]
    fn the_clock_is_the_boot_clock_and_another_boots_failures_count_as_fresh() {
        // CLOCK_BOOTTIME is /proc/uptime's clock: the wall clock, which root or NTP can set back or forward,
        // is not read at all.
        let uptime: f64 = std::fs::read_to_string("/proc/uptime")
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let now = Stamp::now().0;
        assert!(
            (now as f64 - uptime).abs() <= 2.0,
            "boot clock {now} s, uptime {uptime} s"
        );

        let tmp = tempfile::tempdir().unwrap();
        let limiter = RateLimiter::open(&settings(tmp.path())).unwrap();
        let alice = user("alice");
        drop(limiter.begin(&alice, at(100), soon()).unwrap().unwrap());
        let path = limiter.dir().join("alice");
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .starts_with(&format!("boot {}\n", boot_id())));
        // Five failures from another boot (or an old file with no boot line), at times this boot has not reached
        // or long past: each counts as made now, so the limit holds for one window from now and no longer.
        for header in ["boot 00000000-0000-0000-0000-000000000000\n", ""] {
            std::fs::write(&path, format!("{header}5\n999999\n7\n8\n9\n")).unwrap();
            let limited = limiter
                .begin(&alice, at(50_000), soon())
                .unwrap()
                .unwrap_err();
            assert_eq!(
                (limited.failures, limited.retry_after),
                (5, Duration::from_secs(60)),
                "{header:?}"
            );
            assert!(
                limiter.begin(&alice, at(50_060), soon()).unwrap().is_ok(),
                "{header:?}"
            );
        }
        // This boot's stamps later than now (not possible on this clock) count as now, not as gone.
        std::fs::write(
            &path,
            format!("boot {}\n900\n901\n902\n903\n904\n", boot_id()),
        )
        .unwrap();
        assert!(limiter.begin(&alice, at(200), soon()).unwrap().is_err());
    }

    #[test]
    fn malformed_lines_are_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let limiter = RateLimiter::open(&settings(tmp.path())).unwrap();
        drop(
            limiter
                .begin(&user("alice"), at(100), soon())
                .unwrap()
                .unwrap(),
        );
        let path = limiter.dir().join("alice");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("garbage\n-5\n101\n");
        std::fs::write(&path, text).unwrap();
        assert_eq!(
            limiter.failures(&user("alice"), at(110), soon()).unwrap(),
            2
        );
    }

    #[test]
    fn a_lock_held_elsewhere_fails_at_the_deadline_and_not_before() {
        let tmp = tempfile::tempdir().unwrap();
        let limiter = RateLimiter::open(&settings(tmp.path())).unwrap();
        let alice = user("alice");
        fail(&limiter, &alice, 100);
        let holder = hold_lock(&limiter, "alice");
        let wait = Duration::from_millis(300);
        for attempt in ["begin", "failures"] {
            let started = Instant::now();
            let err = match attempt {
                "begin" => limiter
                    .begin(&alice, at(101), started + wait)
                    .map(|_| ())
                    .unwrap_err(),
                _ => limiter
                    .failures(&alice, at(101), started + wait)
                    .map(|_| ())
                    .unwrap_err(),
            };
            let elapsed = started.elapsed();
            assert!(
                matches!(err, RateLimitError::Busy { .. }),
                "{attempt}: {err}"
            );
            assert!(
                elapsed >= wait,
                "{attempt}: gave up after {elapsed:?}, before the deadline"
            );
            assert!(
                elapsed < wait + Duration::from_secs(1),
                "{attempt}: took {elapsed:?}"
            );
            assert!(err.to_string().contains("/proc/locks"), "{err}");
        }
        // A ticket whose settlement meets the held lock gives up too, and the attempt stays counted.
        drop(holder);
        let ticket = limiter.begin(&alice, at(102), soon()).unwrap().unwrap();
        let holder = hold_lock(&limiter, "alice");
        let started = Instant::now();
        let err = ticket
            .settle(Settlement::NotCounted, started + wait)
            .unwrap_err();
        assert!(matches!(err, RateLimitError::Busy { .. }), "{err}");
        assert!(started.elapsed() >= wait);
        drop(holder);
        assert_eq!(limiter.failures(&alice, at(103), soon()).unwrap(), 2);
    }

    #[test]
    fn a_free_lock_is_taken_at_once_even_past_the_deadline() {
        let tmp = tempfile::tempdir().unwrap();
        let limiter = RateLimiter::open(&settings(tmp.path())).unwrap();
        let alice = user("alice");
        fail(&limiter, &alice, 100);
        // The other description's lock is gone once it is closed.
        drop(hold_lock(&limiter, "alice"));
        let passed = Instant::now();
        let ticket = limiter.begin(&alice, at(101), passed).unwrap().unwrap();
        ticket.settle(Settlement::Failure, passed).unwrap();
        assert_eq!(limiter.failures(&alice, at(102), passed).unwrap(), 2);
        assert!(
            passed.elapsed() < Duration::from_millis(100),
            "{:?}",
            passed.elapsed()
        );
    }
}
