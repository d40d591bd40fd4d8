//! Confinement of the process that parses untrusted bytes (model files, camera frames).
//!
//! [`confine`] turns the calling process, once and for good, into one that runs as an unprivileged
//! account, cannot gain privileges, cannot open files (Landlock, and seccomp refusing `open`), cannot
//! connect or bind, cannot signal or reach other processes' abstract sockets, and can make only the
//! system calls an inference on already-open descriptors needs (seccomp allow-list on every thread).
//! [`run_confined`] is the shape callers use: fork, read what is needed while still privileged,
//! confine the child, run the work there, and hand its serialised result to the parent over a pipe.
//!
//! It must never: confine a process with more than one thread (Landlock and the raw set*id calls
//! bind only the calling thread; the others would stay free); report success for a step that did not
//! hold (ids are read back, `setuid(0)` must fail); or let the parent take anything from a child that
//! died, timed out, or wrote something other than one well-formed answer. The fork is the one
//! `unsafe` call here.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::time::Instant;

use landlock::{
    Access, AccessFs, AccessNet, LandlockStatus, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus, Scope, ABI,
};
use nix::libc;
use nix::unistd::{Gid, Uid};
use seccompiler::{
    SeccompAction, SeccompCmpArgLen as Len, SeccompCmpOp as Op, SeccompCondition as Cond,
    SeccompFilter, SeccompRule, TargetArch,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The system account the confined part runs as when it was started with privileges. The package
/// creates it; where it does not exist, `nobody` is used.
pub const ACCOUNT: &str = "facekey";

/// `nobody`'s uid and gid on Debian, the fallback account.
pub const NOBODY: u32 = 65534;

/// The largest answer a confined child may send (serialised JSON); more is treated as garbage.
pub const MAX_ANSWER_BYTES: usize = 64 << 20;

/// The newest Landlock ABI asked for: every right the running kernel knows is handled (best
/// effort), and the report says which ABI the kernel had.
const LANDLOCK_ABI: ABI = ABI::V10;

/// What to allow the confined part beyond computing on what it already holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confinement {
    /// Files or directories the confined part may still open, read-only (and beneath, for a
    /// directory). Empty by default: then `open` is refused outright by seccomp as well.
    pub read_only_paths: Vec<PathBuf>,
}

/// What [`confine`] applied, for logs and `facekey doctor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confined {
    /// The ids the process runs with now (real = effective = saved).
    pub uid: u32,
    pub gid: u32,
    /// The account switched to, when the process was privileged (`facekey` or `nobody`).
    pub account: Option<String>,
    pub no_new_privs: bool,
    pub landlock: LandlockReport,
    /// Rules in the seccomp allow-list (system calls, each with its argument conditions).
    pub seccomp_rules: usize,
}

/// What Landlock enforced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LandlockReport {
    /// The kernel's Landlock ABI (0: Landlock not available).
    pub abi: u32,
    /// "fully enforced", "partially enforced" (every right this kernel knows; newer ones it does
    /// not), or "not enforced".
    pub status: String,
    /// TCP bind and connect are refused (ABI 4 and later).
    pub tcp: bool,
    /// Abstract unix sockets and signals are scoped to the confined process (ABI 6 and later).
    pub ipc_scopes: bool,
}

impl fmt::Display for Confined {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let account = self.account.as_deref().unwrap_or("unchanged");
        write!(
            f,
            "uid {} gid {} ({account}), no_new_privs {}, Landlock ABI {} {}{}{}, seccomp {} rules",
            self.uid,
            self.gid,
            self.no_new_privs,
            self.landlock.abi,
            self.landlock.status,
            if self.landlock.tcp {
                ", TCP refused"
            } else {
                ""
            },
            if self.landlock.ipc_scopes {
                ", IPC scoped"
            } else {
                ""
            },
            self.seccomp_rules
        )
    }
}

/// Why the process could not be confined. After an error the process may be partly confined:
/// the caller must not go on to parse untrusted bytes, only report and exit.
#[derive(thiserror::Error, Debug)]
pub enum ConfineError {
    #[error("cannot ask to be killed with the parent process (PR_SET_PDEATHSIG): {0}")]
    ParentDeath(nix::Error),
    #[error(
        "the process has {0} threads: confinement binds only the calling thread, so it must run \
         before any thread starts (fork first, or confine earlier)"
    )]
    Threaded(usize),
    #[error("cannot count this process's threads (/proc/self/task): {0}; is /proc mounted?")]
    ThreadCount(std::io::Error),
    #[error("cannot look up the account `{account}` (/etc/passwd, NSS): {source}")]
    Account { account: String, source: nix::Error },
    #[error("the account `{0}` has uid or gid 0: give it an unprivileged uid and gid")]
    RootAccount(String),
    #[error("dropping privileges failed at {step}: {source}")]
    Drop {
        step: &'static str,
        source: nix::Error,
    },
    #[error("after dropping privileges the ids are {found}, expected {expected}")]
    IdsNotDropped { found: String, expected: String },
    #[error("setuid(0) succeeded after dropping privileges: the process could regain root")]
    RegainedRoot,
    #[error("PR_SET_NO_NEW_PRIVS failed: {0}")]
    NoNewPrivs(nix::Error),
    #[error("Landlock: {0}")]
    Landlock(#[from] landlock::RulesetError),
    #[error(
        "read-only paths were asked for but this kernel does not enforce Landlock: their \
         confinement cannot be kept, so nothing may be opened (give no read-only paths)"
    )]
    LandlockMissing,
    #[error("seccomp: {0}")]
    Seccomp(#[from] seccompiler::Error),
    #[error("seccomp filter: {0}")]
    SeccompFilter(#[from] seccompiler::BackendError),
    #[error("seccomp: this architecture ({0}) has no filter here")]
    Arch(&'static str),
}

/// Confine the calling process: drop to an unprivileged account if privileged, set no_new_privs,
/// restrict it with Landlock, then install the seccomp allow-list on every thread. Irreversible.
/// Refused when the process has more than one thread.
pub fn confine(confinement: &Confinement) -> Result<Confined, ConfineError> {
    confine_with(confinement, None)
}

/// [`confine`]; with `parent`, the process is also killed when `parent` ends (a confined child whose
/// parent was killed at its deadline must not go on holding the camera). The parent-death signal is set
/// after the ids change, which clears it.
fn confine_with(
    confinement: &Confinement,
    parent: Option<nix::unistd::Pid>,
) -> Result<Confined, ConfineError> {
    let threads = thread_count().map_err(ConfineError::ThreadCount)?;
    if threads != 1 {
        return Err(ConfineError::Threaded(threads));
    }
    prime_libraries();
    let account = drop_privileges()?;
    if let Some(parent) = parent {
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
            .map_err(ConfineError::ParentDeath)?;
        // The parent may have ended before the signal was asked for: then nothing would send it.
        if nix::unistd::getppid() != parent {
            std::process::exit(5);
        }
    }
    nix::sys::prctl::set_no_new_privs().map_err(ConfineError::NoNewPrivs)?;
    let no_new_privs = nix::sys::prctl::get_no_new_privs().map_err(ConfineError::NoNewPrivs)?;
    let landlock = restrict_filesystem(confinement)?;
    if !confinement.read_only_paths.is_empty() && landlock.abi == 0 {
        return Err(ConfineError::LandlockMissing);
    }
    let seccomp_rules = install_seccomp(confinement)?;
    Ok(Confined {
        uid: Uid::current().as_raw(),
        gid: Gid::current().as_raw(),
        account,
        no_new_privs,
        landlock,
        seccomp_rules,
    })
}

/// Make the libraries read, while they still can, what they read lazily from /sys and /proc on
/// first use: tract sizes its matrix-multiplication blocks from the CPU caches it finds there, and
/// confined it would find nothing and fall back to other block sizes (slower, and a different
/// summation order). Both results are kept for the life of the process, so the fork's child and the
/// confined work see the real machine.
///
/// rustix finds the vDSO's clock_gettime on its first clock read through the auxiliary vector, asked
/// with prctl(PR_GET_AUXV) (a prctl option outside the allow-list: the confined child was killed by
/// SIGSYS on its first frame timestamp, seen with uvcvideo in tests/vm/uvc-ir) or read from
/// /proc/self/auxv (refused once confined). One clock read here does it while it still can.
fn prime_libraries() {
    use tract_onnx::tract_core::tract_linalg::cache;
    let _ = cache::cache_info();
    let _ = cache::last_level_cache();
    let _ = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
}

/// Threads of this process, from /proc/self/task (one directory per thread).
pub fn thread_count() -> std::io::Result<usize> {
    let mut count = 0;
    for entry in std::fs::read_dir("/proc/self/task")? {
        entry?;
        count += 1;
    }
    Ok(count)
}

/// Step 1: when privileged (effective uid 0, or set-id: real and effective or saved differ), drop
/// supplementary groups and set every uid and gid to the target account, then check it held.
/// Returns the account switched to, or `None` for an unprivileged process (nothing to drop).
fn drop_privileges() -> Result<Option<String>, ConfineError> {
    use nix::unistd::{getresgid, getresuid, setgroups, setresgid, setresuid, setuid};
    let step = |step: &'static str| move |source| ConfineError::Drop { step, source };
    let uids = getresuid().map_err(step("getresuid"))?;
    let gids = getresgid().map_err(step("getresgid"))?;
    let root = uids.effective.is_root();
    let set_id = uids.real != uids.effective
        || uids.saved != uids.effective
        || gids.real != gids.effective
        || gids.saved != gids.effective;
    if !root && !set_id {
        return Ok(None);
    }
    let (name, uid, gid) = if root {
        target_account()?
    } else {
        // A set-id program that is not root can only go back to its caller's ids.
        ("caller".to_owned(), uids.real, gids.real)
    };
    if root {
        setgroups(&[]).map_err(step("setgroups"))?;
    }
    setresgid(gid, gid, gid).map_err(step("setresgid"))?;
    setresuid(uid, uid, uid).map_err(step("setresuid"))?;
    let (u, g) = (
        getresuid().map_err(step("getresuid"))?,
        getresgid().map_err(step("getresgid"))?,
    );
    let found = [u.real, u.effective, u.saved].map(Uid::as_raw);
    let found_g = [g.real, g.effective, g.saved].map(Gid::as_raw);
    if found != [uid.as_raw(); 3] || found_g != [gid.as_raw(); 3] {
        return Err(ConfineError::IdsNotDropped {
            found: format!("uid {found:?} gid {found_g:?}"),
            expected: format!("uid {uid} gid {gid}"),
        });
    }
    if root {
        let groups = nix::unistd::getgroups().map_err(step("getgroups"))?;
        if groups.iter().any(|g| *g != gid) {
            return Err(ConfineError::IdsNotDropped {
                found: format!("supplementary groups {groups:?}"),
                expected: "none".to_owned(),
            });
        }
    }
    if !uid.is_root() && setuid(Uid::from_raw(0)).is_ok() {
        return Err(ConfineError::RegainedRoot);
    }
    Ok(Some(name))
}

/// `facekey` when the account exists, else `nobody` (65534).
fn target_account() -> Result<(String, Uid, Gid), ConfineError> {
    let user = nix::unistd::User::from_name(ACCOUNT).map_err(|source| ConfineError::Account {
        account: ACCOUNT.to_owned(),
        source,
    })?;
    let (name, uid, gid) = match user {
        Some(u) => (ACCOUNT.to_owned(), u.uid, u.gid),
        None => (
            "nobody".to_owned(),
            Uid::from_raw(NOBODY),
            Gid::from_raw(NOBODY),
        ),
    };
    if uid.is_root() || gid.as_raw() == 0 {
        return Err(ConfineError::RootAccount(name));
    }
    Ok((name, uid, gid))
}

/// Step 3: a Landlock domain handling every filesystem right (and TCP, and the IPC scopes) the
/// kernel knows, allowing nothing but reading beneath `read_only_paths`.
fn restrict_filesystem(confinement: &Confinement) -> Result<LandlockReport, ConfineError> {
    let read = AccessFs::from_read(LANDLOCK_ABI) & !AccessFs::Execute;
    let ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(LANDLOCK_ABI))?
        .handle_access(AccessNet::from_all(LANDLOCK_ABI))?
        .scope(Scope::from_all(LANDLOCK_ABI))?
        .create()?
        .add_rules(landlock::path_beneath_rules(
            &confinement.read_only_paths,
            read,
        ))?;
    let status = ruleset.restrict_self()?;
    let abi = match status.landlock {
        LandlockStatus::Available {
            effective_abi,
            kernel_abi,
        } => kernel_abi.map_or(effective_abi as u32, |k| k.max(0) as u32),
        LandlockStatus::NotEnabled | LandlockStatus::NotImplemented => 0,
    };
    let enforced = status.ruleset != RulesetStatus::NotEnforced;
    Ok(LandlockReport {
        abi,
        status: match status.ruleset {
            RulesetStatus::FullyEnforced => "fully enforced",
            RulesetStatus::PartiallyEnforced => "partially enforced",
            RulesetStatus::NotEnforced => "not enforced",
        }
        .to_owned(),
        tcp: enforced && abi >= 4,
        ipc_scopes: enforced && abi >= 6,
    })
}

// V4L2 requests the camera makes on its open descriptor once confined (camera/stream.rs and
// camera/node.rs): queue, dequeue, buffer queries, stream on and off, freeing the buffers on drop;
// and the setup a camera that was busy at open repeats when it is retried (format, rate, exposure)
// and the exposure it puts back when dropped. VIDIOC_S_CTRL reaches only standard controls, each
// checked by the driver against its range; not UVCIOC_CTRL_QUERY, so the confined part cannot write
// an extension unit. (The casts matter where v4l types requests as int.)
#[allow(clippy::unnecessary_cast)]
const V4L2_CAPTURE: [u64; 11] = [
    v4l::v4l2::vidioc::VIDIOC_QBUF as u64,
    v4l::v4l2::vidioc::VIDIOC_DQBUF as u64,
    v4l::v4l2::vidioc::VIDIOC_QUERYBUF as u64,
    v4l::v4l2::vidioc::VIDIOC_STREAMON as u64,
    v4l::v4l2::vidioc::VIDIOC_STREAMOFF as u64,
    v4l::v4l2::vidioc::VIDIOC_REQBUFS as u64,
    v4l::v4l2::vidioc::VIDIOC_S_FMT as u64,
    v4l::v4l2::vidioc::VIDIOC_G_PARM as u64,
    v4l::v4l2::vidioc::VIDIOC_S_PARM as u64,
    v4l::v4l2::vidioc::VIDIOC_G_CTRL as u64,
    v4l::v4l2::vidioc::VIDIOC_S_CTRL as u64,
];

// UVCIOC_CTRL_QUERY (extension-unit controls, `camera::xu`) is deliberately absent: the stored
// infrared emitter setting is applied before confinement, and an arbitrary extension-unit write
// from the part that parses untrusted frames could damage the camera. core/tests/confine.rs checks
// that the query ends a confined process.

/// Terminal queries (is it a terminal, how wide): read-only, for the CLI's progress display.
#[allow(clippy::unnecessary_cast)]
const TERMINAL_QUERIES: [u64; 2] = [libc::TCGETS as u64, libc::TIOCGWINSZ as u64];

/// The flags glibc and musl pass to `clone` for a thread. A `clone` whose flags do not include all of
/// them, or include any of [`CLONE_FORBIDDEN`], is a new process, not a thread.
const CLONE_THREAD_FLAGS: u64 = (libc::CLONE_VM
    | libc::CLONE_FS
    | libc::CLONE_FILES
    | libc::CLONE_SIGHAND
    | libc::CLONE_THREAD) as u64;
const CLONE_FORBIDDEN: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_PTRACE
    | libc::CLONE_VFORK
    | libc::CLONE_PARENT
    | libc::CLONE_PIDFD
    | libc::CLONE_UNTRACED) as u64;

/// Step 4: the seccomp filters, on every thread (TSYNC).
///
/// The default action for a system call outside the allow-list is to kill the process: anything
/// else there is a bug or an exploit, a killed child is loud (the parent reports the signal), and it
/// can never hand back a result. A few calls that libraries make and survive failing get an error
/// instead (the "quiet" ones): opening files (std and tract probe /proc and /sys for CPU counts),
/// `socket` (a logger reconnecting), and `clone3`, answered ENOSYS so that glibc falls back to
/// `clone`, whose flags (unlike clone3's) the filter can read and restrict to threads.
///
/// Filters stack and the strictest answer wins, so the error filters are installed first (they
/// allow everything else, `seccomp` included) and the allow-list last (it allows no further filter).
fn install_seccomp(confinement: &Confinement) -> Result<usize, ConfineError> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => TargetArch::x86_64,
        "aarch64" => TargetArch::aarch64,
        "riscv64" => TargetArch::riscv64,
        other => return Err(ConfineError::Arch(other)),
    };
    let may_open = !confinement.read_only_paths.is_empty();
    let errors = [
        (libc::ENOSYS, vec![(libc::SYS_clone3, vec![])]),
        (libc::EPERM, quiet_refusals(may_open)?),
    ];
    for (errno, calls) in errors {
        let rules: BTreeMap<i64, Vec<SeccompRule>> = calls.into_iter().collect();
        let filter = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(errno as u32),
            arch,
        )?;
        let program: seccompiler::BpfProgram = filter.try_into()?;
        seccompiler::apply_filter_all_threads(&program)?;
    }
    let allowed = allow_list()?;
    let count = allowed.values().map(|r| r.len().max(1)).sum();
    let filter = SeccompFilter::new(
        allowed,
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        arch,
    )?;
    let program: seccompiler::BpfProgram = filter.try_into()?;
    seccompiler::apply_filter_all_threads(&program)?;
    Ok(count)
}

fn cond(arg: u8, op: Op, value: u64) -> Result<Cond, seccompiler::Error> {
    Cond::new(arg, Len::Qword, op, value).map_err(seccompiler::Error::from)
}

fn cond32(arg: u8, op: Op, value: u64) -> Result<Cond, seccompiler::Error> {
    Cond::new(arg, Len::Dword, op, value).map_err(seccompiler::Error::from)
}

fn rule(conditions: Vec<Cond>) -> Result<SeccompRule, seccompiler::Error> {
    SeccompRule::new(conditions).map_err(seccompiler::Error::from)
}

type Calls = Vec<(i64, Vec<SeccompRule>)>;

/// The calls answered EPERM. With no read-only paths every open is; with some, opens that could
/// write or create are (Landlock then decides which files may be read).
fn quiet_refusals(may_open: bool) -> Result<Calls, seccompiler::Error> {
    let by_path = |flags_arg: u8| -> Result<Vec<SeccompRule>, seccompiler::Error> {
        Ok(vec![rule(vec![cond32(
            flags_arg,
            Op::MaskedEq(libc::AT_EMPTY_PATH as u64),
            0,
        )?])?])
    };
    let mut calls: Calls = vec![
        (libc::SYS_socket, vec![]),
        // Metadata by path (libraries probing /proc and /sys); on a descriptor it is allowed.
        (libc::SYS_statx, by_path(2)?),
        (libc::SYS_newfstatat, by_path(3)?),
        (libc::SYS_faccessat, vec![]),
        (libc::SYS_faccessat2, vec![]),
        (libc::SYS_readlinkat, vec![]),
    ];
    #[cfg(target_arch = "x86_64")]
    calls.extend([
        (libc::SYS_stat, vec![]),
        (libc::SYS_lstat, vec![]),
        (libc::SYS_access, vec![]),
        (libc::SYS_readlink, vec![]),
    ]);
    #[cfg(target_arch = "x86_64")]
    let opens = [libc::SYS_open, libc::SYS_openat, libc::SYS_openat2];
    #[cfg(not(target_arch = "x86_64"))]
    let opens = [libc::SYS_openat, libc::SYS_openat2];
    for call in opens {
        if !may_open || call == libc::SYS_openat2 {
            // openat2's flags are in a struct the filter cannot read.
            calls.push((call, vec![]));
            continue;
        }
        #[cfg(target_arch = "x86_64")]
        let flags_arg = if call == libc::SYS_open { 1 } else { 2 };
        #[cfg(not(target_arch = "x86_64"))]
        let flags_arg = 2;
        let mut rules = Vec::new();
        for bit in [libc::O_WRONLY, libc::O_RDWR, libc::O_CREAT, libc::O_TRUNC] {
            rules.push(rule(vec![cond32(
                flags_arg,
                Op::MaskedEq(bit as u64),
                bit as u64,
            )?])?);
        }
        calls.push((call, rules));
    }
    Ok(calls)
}

/// Everything the confined work may call. An empty rule list allows the call with any arguments.
fn allow_list() -> Result<BTreeMap<i64, Vec<SeccompRule>>, seccompiler::Error> {
    let any = |call: i64| (call, Vec::new());
    let pid = std::process::id() as u64;
    let mut calls: Calls = vec![
        // Memory. No executable mappings: nothing confined loads code.
        (
            libc::SYS_mmap,
            vec![rule(vec![cond(
                2,
                Op::MaskedEq(libc::PROT_EXEC as u64),
                0,
            )?])?],
        ),
        (
            libc::SYS_mprotect,
            vec![rule(vec![cond(
                2,
                Op::MaskedEq(libc::PROT_EXEC as u64),
                0,
            )?])?],
        ),
        any(libc::SYS_munmap),
        any(libc::SYS_madvise),
        any(libc::SYS_brk),
        any(libc::SYS_mremap),
        // Threads: clone only with a thread's flags; clone3 is answered ENOSYS by the first filter.
        (
            libc::SYS_clone,
            vec![rule(vec![
                cond(0, Op::MaskedEq(CLONE_THREAD_FLAGS), CLONE_THREAD_FLAGS)?,
                cond(0, Op::MaskedEq(CLONE_FORBIDDEN), 0)?,
            ])?],
        ),
        any(libc::SYS_clone3),
        any(libc::SYS_futex),
        any(libc::SYS_set_robust_list),
        any(libc::SYS_rseq),
        any(libc::SYS_sched_yield),
        any(libc::SYS_sched_getaffinity),
        any(libc::SYS_exit),
        any(libc::SYS_exit_group),
        any(libc::SYS_rt_sigprocmask),
        any(libc::SYS_rt_sigaction),
        any(libc::SYS_sigaltstack),
        any(libc::SYS_rt_sigreturn),
        any(libc::SYS_restart_syscall),
        any(libc::SYS_gettid),
        any(libc::SYS_getpid),
        // A thread names itself (std's thread builder); reading no_new_privs back.
        (
            libc::SYS_prctl,
            [
                libc::PR_SET_NAME,
                libc::PR_GET_NAME,
                libc::PR_GET_NO_NEW_PRIVS,
            ]
            .into_iter()
            .map(|option| rule(vec![cond(0, Op::Eq, option as u64)?]))
            .collect::<Result<_, _>>()?,
        ),
        // Signals to this process only (abort() raises SIGABRT on itself).
        (libc::SYS_tgkill, vec![rule(vec![cond(0, Op::Eq, pid)?])?]),
        (libc::SYS_kill, vec![rule(vec![cond(0, Op::Eq, pid)?])?]),
        // Time.
        any(libc::SYS_clock_gettime),
        any(libc::SYS_clock_getres),
        any(libc::SYS_clock_nanosleep),
        any(libc::SYS_nanosleep),
        any(libc::SYS_getrandom),
        // Who am I (trust checks compare owners with the effective uid).
        any(libc::SYS_getuid),
        any(libc::SYS_geteuid),
        any(libc::SYS_getgid),
        any(libc::SYS_getegid),
        any(libc::SYS_getresuid),
        any(libc::SYS_getresgid),
        // I/O on descriptors already open.
        any(libc::SYS_read),
        any(libc::SYS_write),
        any(libc::SYS_readv),
        any(libc::SYS_writev),
        any(libc::SYS_pread64),
        any(libc::SYS_close),
        any(libc::SYS_ppoll),
        any(libc::SYS_lseek),
        any(libc::SYS_fstat),
        // Sending on an already connected socket only (no address: it cannot reach anything new).
        (libc::SYS_sendto, vec![rule(vec![cond(4, Op::Eq, 0)?])?]),
        // fstat and File::metadata on a descriptor (AT_EMPTY_PATH); by path they are answered
        // EPERM by the error filter. A path given together with AT_EMPTY_PATH still reaches its
        // metadata (never its contents): Landlock does not govern metadata.
        any(libc::SYS_newfstatat),
        any(libc::SYS_statx),
        any(libc::SYS_faccessat),
        any(libc::SYS_faccessat2),
        any(libc::SYS_readlinkat),
        // Harmless facts: the supplementary groups (none), the working directory's name (the
        // panic message prints paths relative to it).
        any(libc::SYS_getgroups),
        any(libc::SYS_getcwd),
        (
            libc::SYS_fcntl,
            [libc::F_GETFD, libc::F_SETFD, libc::F_GETFL]
                .into_iter()
                .map(|cmd| rule(vec![cond32(1, Op::Eq, cmd as u64)?]))
                .collect::<Result<_, _>>()?,
        ),
        (
            libc::SYS_ioctl,
            V4L2_CAPTURE
                .into_iter()
                .chain(TERMINAL_QUERIES)
                .map(|request| rule(vec![cond32(1, Op::Eq, request & 0xffff_ffff)?]))
                .collect::<Result<_, _>>()?,
        ),
        // Answered by the error filter (EPERM), or, with read-only paths, limited by Landlock.
        any(libc::SYS_openat),
        any(libc::SYS_openat2),
        any(libc::SYS_socket),
    ];
    #[cfg(target_arch = "x86_64")]
    calls.extend([
        any(libc::SYS_poll),
        any(libc::SYS_open),
        any(libc::SYS_stat),
        any(libc::SYS_lstat),
        any(libc::SYS_access),
        any(libc::SYS_readlink),
        any(libc::SYS_arch_prctl),
    ]);
    Ok(calls.into_iter().collect())
}

/// What became of a confined child.
#[derive(thiserror::Error, Debug)]
pub enum ConfinedRunError {
    #[error(
        "the process has {0} threads: it must fork before any thread starts (the child would \
         inherit locks held by the others)"
    )]
    Threaded(usize),
    #[error("cannot count this process's threads (/proc/self/task): {0}; is /proc mounted?")]
    ThreadCount(std::io::Error),
    #[error("cannot start the confined child ({step}): {source}")]
    Start {
        step: &'static str,
        source: std::io::Error,
    },
    #[error("the child could not confine itself, so it did no work: {0}")]
    NotConfined(String),
    #[error("the confined child panicked: {0}")]
    Panicked(String),
    #[error("the confined child {0} without giving an answer")]
    Died(String),
    #[error("the confined child gave no answer within its deadline and was killed")]
    TimedOut,
    #[error("the confined child's answer is not well-formed: {0}")]
    Garbage(String),
    #[error("waiting for the confined child failed: {0}")]
    Wait(std::io::Error),
}

/// A confined child's work and what confined it.
#[derive(Debug)]
pub struct Ran<T> {
    pub value: T,
    pub confined: Confined,
}

/// What the child writes to its parent, once.
#[derive(Serialize, Deserialize)]
enum Answer<T> {
    Done { confined: Confined, value: T },
    NotConfined(String),
    Panicked(String),
}

/// Run `work` in a confined child process: fork (only from a single-threaded process), run
/// `prepare` in the child while still privileged (read files, open the camera), [`confine`] the
/// child, run `work` on what `prepare` returned, and send its value back serialised.
///
/// The parent waits until `deadline` at most, then kills the child; the child is always reaped.
/// Only a child that exited normally after writing one well-formed answer gives a value: one that
/// dies, hangs, writes garbage or nothing at all gives an error, never a made-up value.
pub fn run_confined<P, T>(
    deadline: Instant,
    confinement: &Confinement,
    prepare: impl FnOnce() -> P,
    work: impl FnOnce(P) -> T,
) -> Result<Ran<T>, ConfinedRunError>
where
    T: Serialize + DeserializeOwned,
{
    let threads = thread_count().map_err(ConfinedRunError::ThreadCount)?;
    if threads != 1 {
        return Err(ConfinedRunError::Threaded(threads));
    }
    let start = |step| {
        move |e: nix::Error| ConfinedRunError::Start {
            step,
            source: e.into(),
        }
    };
    let (reader, writer) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(start("pipe"))?;
    // Whatever the parent still buffers would be written twice, once by each process.
    let _ = std::io::stdout().flush();
    let parent_pid = nix::unistd::getpid();
    // SAFETY: the process has one thread (checked above; only this thread could have started
    // another since), so no lock, allocator state or other thread's data is left half-changed in
    // the child. The child runs only this function's code and leaves through `process::exit`
    // without returning into the caller.
    #[allow(unsafe_code)]
    let forked = unsafe { nix::unistd::fork() }.map_err(start("fork"))?;
    match forked {
        nix::unistd::ForkResult::Child => {
            drop(reader);
            child(writer, parent_pid, confinement, prepare, work)
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(writer);
            parent(child, reader, deadline)
        }
    }
}

/// The child's side: never returns.
fn child<P, T: Serialize>(
    writer: OwnedFd,
    parent: nix::unistd::Pid,
    confinement: &Confinement,
    prepare: impl FnOnce() -> P,
    work: impl FnOnce(P) -> T,
) -> ! {
    // Killed with the parent from the start: a parent killed at its deadline (the PAM module kills
    // facekey-check so) must not leave this process opening the camera or deciding on its own.
    if nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).is_err()
        || nix::unistd::getppid() != parent
    {
        std::process::exit(5);
    }
    let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let prepared = prepare();
        match confine_with(confinement, Some(parent)) {
            Ok(confined) => Answer::Done {
                value: work(prepared),
                confined,
            },
            Err(e) => Answer::NotConfined(e.to_string()),
        }
    }))
    .unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_owned());
        Answer::Panicked(message)
    });
    let code = match serde_json::to_vec(&answer) {
        Ok(bytes) => match std::fs::File::from(writer).write_all(&bytes) {
            Ok(()) => 0,
            Err(_) => 3,
        },
        Err(_) => 4,
    };
    // process::exit, not a return: the child must never run its caller's code. It runs no Rust
    // destructors; its exit path makes only calls the allow-list has (write, munmap, exit_group).
    std::process::exit(code)
}

/// The parent's side: read the answer until the deadline, reap the child, judge the answer.
fn parent<T: DeserializeOwned>(
    pid: nix::unistd::Pid,
    reader: OwnedFd,
    deadline: Instant,
) -> Result<Ran<T>, ConfinedRunError> {
    use rustix::event::{poll, PollFd, PollFlags};
    let pidfd = match rustix::process::Pid::from_raw(pid.as_raw())
        .ok_or(rustix::io::Errno::SRCH)
        .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()))
    {
        Ok(fd) => fd,
        Err(e) => {
            // No pidfd (a kernel before 5.3): kill and reap by pid, and report.
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
            return Err(ConfinedRunError::Start {
                step: "pidfd_open",
                source: e.into(),
            });
        }
    };
    let mut reader = std::fs::File::from(reader);
    let mut bytes = Vec::new();
    let mut eof = false;
    let mut exited = false;
    let mut buf = vec![0u8; 64 * 1024];
    let outcome: Result<(), ConfinedRunError> = loop {
        if eof && exited {
            break Ok(());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break Err(ConfinedRunError::TimedOut);
        }
        let timeout = rustix::time::Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        let mut fds = vec![PollFd::new(&pidfd, PollFlags::IN)];
        if !eof {
            fds.push(PollFd::new(&reader, PollFlags::IN));
        }
        match poll(&mut fds, Some(&timeout)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => break Err(ConfinedRunError::Wait(e.into())),
        }
        exited |= !fds[0].revents().is_empty();
        let readable = fds.get(1).is_some_and(|f| !f.revents().is_empty());
        if readable {
            match reader.read(&mut buf) {
                Ok(0) => eof = true,
                Ok(n) if bytes.len() + n > MAX_ANSWER_BYTES => {
                    break Err(ConfinedRunError::Garbage(format!(
                        "more than {MAX_ANSWER_BYTES} bytes"
                    )))
                }
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => break Err(ConfinedRunError::Wait(e)),
            }
        }
    };
    if outcome.is_err() {
        let _ = rustix::process::pidfd_send_signal(&pidfd, rustix::process::Signal::KILL);
    }
    let ending = reap(&pidfd);
    outcome?;
    match ending? {
        Ending::Exited(0) => {}
        other => return Err(ConfinedRunError::Died(other.to_string())),
    }
    match serde_json::from_slice::<Answer<T>>(&bytes) {
        Ok(Answer::Done { confined, value }) => Ok(Ran { value, confined }),
        Ok(Answer::NotConfined(reason)) => Err(ConfinedRunError::NotConfined(reason)),
        Ok(Answer::Panicked(message)) => Err(ConfinedRunError::Panicked(message)),
        Err(_) if bytes.is_empty() => Err(ConfinedRunError::Died(
            "exited with status 0 but wrote nothing".to_owned(),
        )),
        Err(e) => Err(ConfinedRunError::Garbage(format!(
            "{e} ({} bytes)",
            bytes.len()
        ))),
    }
}

/// How a child process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ending {
    Exited(i32),
    Killed(i32),
    /// SIGCHLD is ignored by this process: the kernel reaped the child and its status is lost.
    Lost,
}

impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ending::Exited(code) => write!(f, "exited with status {code}"),
            Ending::Killed(signal) => match nix::sys::signal::Signal::try_from(*signal) {
                Ok(s) => write!(f, "was killed by {}", s.as_str()),
                Err(_) => write!(f, "was killed by signal {signal}"),
            },
            Ending::Lost => write!(f, "ended (its status is lost: SIGCHLD is ignored)"),
        }
    }
}

/// Wait for the child to end (it has exited or was sent SIGKILL): it is reaped, never left a zombie.
fn reap(pidfd: &OwnedFd) -> Result<Ending, ConfinedRunError> {
    use rustix::process::{waitid, WaitId, WaitIdOptions};
    loop {
        match waitid(WaitId::PidFd(pidfd.as_fd()), WaitIdOptions::EXITED) {
            Ok(Some(status)) => {
                if let Some(code) = status.exit_status() {
                    return Ok(Ending::Exited(code));
                }
                if let Some(signal) = status.terminating_signal() {
                    return Ok(Ending::Killed(signal));
                }
            }
            Ok(None) | Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::CHILD) => return Ok(Ending::Lost),
            Err(e) => return Err(ConfinedRunError::Wait(e.into())),
        }
    }
}
