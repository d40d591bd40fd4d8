//! Whether face authentication may run for a request, and the one attempt around the decision.
//!
//! [`check`] answers before any camera, model or enrolment is touched: disabled in the configuration, a service
//! missing from `[pam] services`, a user other than the one asking ([`check_requester`]), a remote session
//! (PAM_RHOST, the logind session this process belongs to, or a process outside any local session while the
//! user has a remote one: [`outside_session_while_remote`]), a closed laptop lid in front of the camera.
//! [`attempt`] then strings together the enrolment check, the per-user rate limit ([`crate::ratelimit`]) and the
//! deadline-bounded decision, so that every front end (the PAM module, the CLI) applies the same rules in the
//! same order.
//!
//! This module must never let a face authenticate anyone but the user who asks (unless the administrator listed
//! the service in `[pam] other_user_services`), nor `root` unless `[pam] allow_root`. It must never consult
//! environment variables (`SSH_CONNECTION`, `SUDO_USER`, ...): whoever starts the
//! process chooses them, so they can neither turn a check off nor on. It reads PAM items the caller passes in and
//! kernel / logind state under fixed paths.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use facekey_config::Config;

use crate::decision::{self, FrameReport, Outcome};
use crate::engine::EngineCache;
use crate::frame::{FrameSource, SourceError};
use crate::isolated;
use crate::ratelimit::{Limited, RateLimitError, RateLimiter, Settlement, Stamp};

/// What the caller knows about the request: PAM items and the requesting process's real uid (never the
/// environment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// PAM_SERVICE: the PAM service name (`sudo`, `login`, ...).
    pub service: Option<String>,
    /// PAM_RHOST: the remote host, when the application says there is one.
    pub rhost: Option<String>,
    /// PAM_RUSER: the user the application says is asking (su and sudo set it to their caller).
    pub ruser: Option<String>,
    /// PAM_TTY: the terminal or X display, for the log.
    pub tty: Option<String>,
    /// The real uid of the process asking. The PAM module runs inside it: su, sudo and polkit-agent-helper-1 are
    /// setuid root, so their real uid is still their caller's; login and display managers run as root (0).
    pub real_uid: u32,
}

impl Request {
    /// A request from the process this code runs in (its real uid), with no PAM items yet.
    pub fn from_this_process() -> Request {
        Request {
            service: None,
            rhost: None,
            ruser: None,
            tty: None,
            real_uid: rustix::process::getuid().as_raw(),
        }
    }
}

/// Where the system state the policy reads lives. [`System::real`] in production; tests point it at a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct System {
    /// `/proc/self`: `cgroup` and `sessionid` name this process's logind session.
    pub proc_self: PathBuf,
    /// `/run/systemd/sessions`: logind's session files (`REMOTE=1` marks a remote session).
    pub sessions_dir: PathBuf,
    /// `/proc/acpi/button/lid`: one folder per lid with a `state` file.
    pub lid_dir: PathBuf,
}

impl System {
    /// The running system.
    pub fn real() -> System {
        System::under(Path::new("/"))
    }

    /// The same layout under another root (tests).
    pub fn under(root: &Path) -> System {
        System {
            proc_self: root.join("proc/self"),
            sessions_dir: root.join("run/systemd/sessions"),
            lid_dir: root.join("proc/acpi/button/lid"),
        }
    }
}

/// Why face authentication does not apply to a request.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    #[error("face authentication is disabled in the configuration")]
    Disabled,
    #[error("the request names no PAM service")]
    NoService,
    // The service, the remote host and the user come from the PAM caller: quoted and escaped ({:?}), so a
    // name holding a newline or quotes cannot forge a log line.
    #[error("service {0:?} is not in [pam] services")]
    ServiceNotAllowed(String),
    #[error(
        "remote host {0:?} (PAM_RHOST): a face at this camera says nothing about a remote user"
    )]
    RemoteHost(String),
    #[error(
        "logind session {0} is remote: a face at this camera says nothing about a remote user"
    )]
    RemoteSession(String),
    #[error(
        "the request comes from outside any local logind session (a systemd --user service, systemd-run, cron) \
         while uid {uid} has remote session {session}: it may have been started from there, and a face at this \
         camera says nothing about a remote user"
    )]
    OutsideSessionWhileRemote { uid: u32, session: String },
    #[error("the lid is closed ({}), so the built-in camera sees nothing", .0.display())]
    LidClosed(PathBuf),
    #[error("face authentication of root is off; set [pam] allow_root = true to allow it")]
    Root,
    #[error(
        "{asking} asks to authenticate as {user:?} on service {service:?}: a face only vouches for the user who \
         asks; list the service in [pam] other_user_services to allow it"
    )]
    OtherUser {
        asking: String,
        user: String,
        service: String,
    },
    #[error(
        "the requesting process's real uid {uid} has no user name ({reason}), so it cannot be told apart from \
         another user: add it to the user database"
    )]
    UnknownRequester { uid: u32, reason: String },
}

/// Every reason in order for a request to authenticate `user` (PAM_USER): configuration, service, who asks,
/// remote host, remote session, lid.
pub fn check(
    config: &Config,
    user: &str,
    request: &Request,
    system: &System,
) -> Result<(), Refusal> {
    if config.general.disabled {
        return Err(Refusal::Disabled);
    }
    let service = request.service.as_deref().ok_or(Refusal::NoService)?;
    if !service_allowed(config, service) {
        return Err(Refusal::ServiceNotAllowed(service.to_owned()));
    }
    check_requester(config, user, service, request, &user_name)?;
    if let Some(rhost) = request.rhost.as_deref() {
        if !rhost_is_local(rhost) {
            return Err(Refusal::RemoteHost(rhost.to_owned()));
        }
    }
    if let Some(session) = remote_session(system) {
        return Err(Refusal::RemoteSession(session));
    }
    if let Some(refusal) = outside_session_while_remote(system, request.real_uid) {
        return Err(refusal);
    }
    // A lid covers the built-in camera, not a replayed file; there is no telling an external camera from a
    // built-in one here, so any camera source counts.
    if config.camera.source.starts_with("v4l2:") {
        if let Some(lid) = closed_lid(system) {
            return Err(Refusal::LidClosed(lid));
        }
    }
    Ok(())
}

/// The face authenticates only the user who asks. `root` is refused unless `[pam] allow_root`. Then, unless
/// `service` is in `[pam] other_user_services`: a requesting process whose real uid is not 0 must be `user`'s
/// (`name_of` maps the uid to its name), and PAM_RUSER, when the application sets it, must be `user` too (a
/// process running as root, such as login or a display manager, says who asks only that way; none set means
/// the person at the seat is logging in as themselves).
pub fn check_requester(
    config: &Config,
    user: &str,
    service: &str,
    request: &Request,
    name_of: &dyn Fn(u32) -> Result<String, String>,
) -> Result<(), Refusal> {
    if user == "root" && !config.pam.allow_root {
        return Err(Refusal::Root);
    }
    if config.pam.other_user_services.iter().any(|s| s == service) {
        return Ok(());
    }
    let other = |asking: &str| Refusal::OtherUser {
        asking: asking.to_owned(),
        user: user.to_owned(),
        service: service.to_owned(),
    };
    if request.real_uid != 0 {
        let asking = name_of(request.real_uid).map_err(|reason| Refusal::UnknownRequester {
            uid: request.real_uid,
            reason,
        })?;
        if asking != user {
            return Err(other(&format!("uid {} ({asking})", request.real_uid)));
        }
    }
    match request.ruser.as_deref() {
        Some(ruser) if !ruser.is_empty() && ruser != user => {
            Err(other(&format!("PAM_RUSER {ruser}")))
        }
        _ => Ok(()),
    }
}

/// The user database's name for `uid` (getpwuid_r, so NSS sources count as well as /etc/passwd).
pub fn user_name(uid: u32) -> Result<String, String> {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(user)) => Ok(user.name),
        Ok(None) => Err("no such user".to_owned()),
        Err(errno) => Err(errno.desc().to_owned()),
    }
}

/// The service is in `[pam] services`; `sshd` never is, whatever the list says.
pub fn service_allowed(config: &Config, service: &str) -> bool {
    service != "sshd" && config.pam.services.iter().any(|s| s == service)
}

/// PAM_RHOST values that still mean "this machine": empty, `localhost`, and loopback addresses. Host names are
/// not resolved (a reverse lookup is the remote side's to choose).
pub fn rhost_is_local(rhost: &str) -> bool {
    let host = rhost.trim();
    if host.is_empty() || host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    match bare.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => v4.is_loopback(),
        Ok(std::net::IpAddr::V6(v6)) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => false,
    }
}

/// The logind session of this process, when logind says it is remote (`REMOTE=1`).
///
/// The session is found as `sd_pid_get_session` finds it, from the `session-<id>.scope` unit in the process's
/// cgroup; the audit session id (`/proc/self/sessionid`, which logind uses as the session id when audit is on)
/// is tried too. No logind (containers, minimal systems): no session, not remote by this test; PAM_RHOST still
/// applies.
pub fn remote_session(system: &System) -> Option<String> {
    session_ids(system)
        .into_iter()
        .find(|id| session_is_remote(&system.sessions_dir, id))
}

fn session_ids(system: &System) -> Vec<String> {
    let mut ids = Vec::new();
    if let Ok(cgroup) = std::fs::read_to_string(system.proc_self.join("cgroup")) {
        for line in cgroup.lines() {
            // hierarchy-id:controllers:path
            let path = line.splitn(3, ':').nth(2).unwrap_or("");
            for unit in path.split('/') {
                if let Some(id) = unit
                    .strip_prefix("session-")
                    .and_then(|u| u.strip_suffix(".scope"))
                {
                    ids.push(id.to_owned());
                }
            }
        }
    }
    if let Ok(audit) = std::fs::read_to_string(system.proc_self.join("sessionid")) {
        let audit = audit.trim();
        // (u32)-1: no audit session.
        if !audit.is_empty() && audit != "4294967295" {
            ids.push(audit.to_owned());
        }
    }
    ids.retain(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()));
    ids.dedup();
    ids
}

/// A process outside every local logind session scope (user@.service and what it starts, `systemd-run --user`,
/// cron) cannot be told from one started over ssh by where it runs: a local GNOME or KDE terminal runs under
/// user@.service too. So while the requesting user (real uid `uid`, not root) has a remote logind session, such
/// a request is refused. A process inside a local session is judged by its session alone ([`remote_session`]);
/// root (login, display managers, before their session exists) is not judged by this rule. No logind: no
/// sessions, no refusal.
pub fn outside_session_while_remote(system: &System, uid: u32) -> Option<Refusal> {
    if uid == 0 || in_local_session(system) {
        return None;
    }
    remote_session_of(system, uid)
        .map(|session| Refusal::OutsideSessionWhileRemote { uid, session })
}

/// This process belongs to a logind session that logind knows (its file exists) and that is not remote.
fn in_local_session(system: &System) -> bool {
    session_ids(system).iter().any(|id| {
        std::fs::read_to_string(system.sessions_dir.join(id))
            .is_ok_and(|text| !text.lines().any(|l| l.trim() == "REMOTE=1"))
    })
}

/// The most session files looked at (a machine has a handful; this only bounds a hostile directory).
const MAX_SESSIONS: usize = 4096;

/// The first (by name) remote logind session of `uid`, whatever its state (a closing session's processes may
/// still run).
fn remote_session_of(system: &System, uid: u32) -> Option<String> {
    let entries = std::fs::read_dir(&system.sessions_dir).ok()?;
    let mut ids: Vec<String> = entries
        .filter_map(|e| e.ok())
        .take(MAX_SESSIONS)
        .filter_map(|e| e.file_name().into_string().ok())
        // Session ids are alphanumeric; `<id>.ref` are logind's FIFOs and must not be opened.
        .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()))
        .collect();
    ids.sort();
    let owner = format!("UID={uid}");
    ids.into_iter().find(|id| {
        let path = system.sessions_dir.join(id);
        // Regular files only, read with a cap: the directory is root's, but never block or read without end.
        std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file() && m.len() <= 64 * 1024)
            && std::fs::read_to_string(&path).is_ok_and(|text| {
                let has = |wanted: &str| text.lines().any(|l| l.trim() == wanted);
                has(&owner) && has("REMOTE=1")
            })
    })
}

fn session_is_remote(sessions_dir: &Path, id: &str) -> bool {
    std::fs::read_to_string(sessions_dir.join(id))
        .map(|text| text.lines().any(|l| l.trim() == "REMOTE=1"))
        .unwrap_or(false)
}

/// The first lid whose ACPI state says `closed`.
pub fn closed_lid(system: &System) -> Option<PathBuf> {
    let entries = std::fs::read_dir(&system.lid_dir).ok()?;
    let mut lids: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("state"))
        .collect();
    lids.sort();
    lids.into_iter().find(|state| {
        std::fs::read_to_string(state)
            .map(|text| text.split_whitespace().any(|w| w == "closed"))
            .unwrap_or(false)
    })
}

/// The result of one [`attempt`].
#[derive(Debug)]
pub enum Verdict {
    /// Face authentication does not apply here; nothing was opened.
    NotApplicable(Refusal),
    /// Too many recent failures for this user; the camera was not opened.
    RateLimited(Limited),
    /// The rate-limit state could not be read or written, so no attempt runs.
    RateLimitBroken(RateLimitError),
    /// The decision ran (or found the user has no enrolment). `bookkeeping` is an error recording the result in
    /// the rate-limit state after the decision; the outcome stands.
    Decided {
        outcome: Outcome,
        bookkeeping: Option<RateLimitError>,
    },
}

impl std::fmt::Display for Verdict {
    /// The verdict as the log line states it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::NotApplicable(refusal) => write!(f, "not applicable: {refusal}"),
            Verdict::RateLimited(l) => write!(
                f,
                "rate limited: {} failures of {} allowed within {} s, next attempt in {} s; camera not opened",
                l.failures,
                l.max_failures,
                l.within.as_secs(),
                l.retry_after.as_secs()
            ),
            Verdict::RateLimitBroken(e) => write!(f, "rate limit: {e}"),
            Verdict::Decided {
                outcome,
                bookkeeping,
            } => {
                write!(f, "{outcome}")?;
                if let Some(e) = bookkeeping {
                    write!(f, " (recording it for the rate limit failed: {e})")?;
                }
                Ok(())
            }
        }
    }
}

/// One authentication request: who, asked by whom, on which source, until when, and where the decision runs.
/// Everything a front end (the PAM module, facekey-check, `facekey auth` and `test`, the tests) sends to
/// [`attempt`]. Build it with [`Attempt::new`] and change the fields that differ.
pub struct Attempt<'a> {
    /// PAM_USER: the user to authenticate.
    pub user: &'a str,
    /// Who asks, and the PAM items ([`check`]).
    pub request: &'a Request,
    pub system: &'a System,
    /// When the decision must be over; the in-process decision answers by this plus
    /// [`decision::DEADLINE_GRACE`] whatever the source does.
    pub deadline: Instant,
    /// The rate limit's clock (CLOCK_BOOTTIME: [`crate::ratelimit::Stamp`]).
    pub now: Stamp,
    /// Where the decision runs.
    pub isolation: Isolation,
    /// Which frames the decision reads.
    pub source: SourceChoice,
    /// Told about every frame the decision reads (`facekey test` prints a line each). In process it runs on the
    /// decision's worker thread; [`Isolation::Confined`], in the confined child: what it writes to an inherited
    /// descriptor (stdout) arrives, what it stores in memory stays in the child.
    pub observer: Option<Observer>,
}

/// A per-frame observer of [`Attempt::observer`].
pub type Observer = Box<dyn FnMut(&FrameReport<'_>) + Send>;

/// A source opener of [`SourceChoice::Custom`].
pub type OpenSource = Box<dyn FnMut() -> Result<Box<dyn FrameSource>, SourceError> + Send>;

impl<'a> Attempt<'a> {
    /// An attempt for `user` as `request` asks, on the configured source, in process, with no observer; the rate
    /// limit's clock is now.
    pub fn new(
        user: &'a str,
        request: &'a Request,
        system: &'a System,
        deadline: Instant,
    ) -> Attempt<'a> {
        Attempt {
            user,
            request,
            system,
            deadline,
            now: Stamp::now(),
            isolation: Isolation::InProcess,
            source: SourceChoice::Configured,
            observer: None,
        }
    }
}

/// Where the decision (the models, the frames) runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// On a worker thread of this process (the PAM module inside sudo, login, a display manager).
    InProcess,
    /// In a confined child process ([`crate::isolated`]); this process must have one thread.
    /// facekey-check, the module with `use_helper`, and the `facekey` command.
    Confined,
}

/// Which frames an attempt reads.
pub enum SourceChoice {
    /// `[camera] source` of the configuration (the PAM module, facekey-check).
    Configured,
    /// Another source specification (`v4l2:DEVICE`, `file:PATH`, `dir:PATH`), opened with the `[camera]`
    /// settings under the same trust rules; it takes the place of `[camera] source` for the whole attempt (the
    /// lid check included). The CLI's `--source`: a front end must not take it from someone it does not trust
    /// more than the configuration's author.
    Spec(String),
    /// A source the caller builds (tests standing in for a camera). Called once, where the decision runs (in a
    /// confined child, before it is confined).
    Custom(OpenSource),
}

/// How long settling the rate limit may wait for another process's lock once the decision is over: the decision
/// ends by the deadline plus [`decision::DEADLINE_GRACE`], and the PAM module promises an answer within the
/// deadline plus 250 ms.
pub const SETTLE_GRACE: Duration = Duration::from_millis(50);

/// One authentication attempt, the one entry point of every front end, in this order: policy ([`check`]); the
/// user's enrolment (none: unavailable, and nothing else happens); the rate limit (over it: refused without
/// opening the camera); `on_start` (the front end tells the user it is looking); the decision on the chosen
/// source, where `attempt.isolation` says, bounded by the deadline; the rate-limit settlement ([`settlement`]).
///
/// Every step counts against `attempt.deadline`: waiting for the rate-limit lock ends there (then
/// [`Verdict::RateLimitBroken`]), the decision gets what is left, and settling may wait [`SETTLE_GRACE`] more.
pub fn attempt(
    config: &Config,
    attempt: Attempt<'_>,
    engines: &'static EngineCache,
    on_start: &mut dyn FnMut(),
) -> Verdict {
    let Attempt {
        user,
        request,
        system,
        deadline,
        now,
        isolation,
        source,
        observer,
    } = attempt;
    // A source named by the request stands for the configured one everywhere (lid check, messages).
    let respecified;
    let (config, source) = match source {
        SourceChoice::Spec(spec) => {
            let mut changed = config.clone();
            changed.camera.source = spec;
            respecified = changed;
            (&respecified, None)
        }
        SourceChoice::Configured => (config, None),
        SourceChoice::Custom(open) => (config, Some(open)),
    };
    let mut open_source: OpenSource = match source {
        Some(open) => open,
        None => {
            let camera = config.camera.clone();
            Box::new(move || crate::source::open_source_with(&camera.source, &camera))
        }
    };
    if let Err(refusal) = check(config, user, request, system) {
        return Verdict::NotApplicable(refusal);
    }
    let decided = |outcome| Verdict::Decided {
        outcome,
        bookkeeping: None,
    };
    // Cheap before anything else: a user with no enrolment costs one file lookup.
    let enrolled = match decision::load_enrolled(user, config) {
        Ok(enrolled) => enrolled,
        Err(unavailable) => return decided(Outcome::Unavailable(unavailable)),
    };
    let name = enrolled.user.clone();
    let limiter = match RateLimiter::open(&config.rate_limit) {
        Ok(limiter) => limiter,
        Err(e) => return Verdict::RateLimitBroken(e),
    };
    let ticket = match limiter.begin(&name, now, deadline) {
        Ok(Ok(ticket)) => ticket,
        Ok(Err(limited)) => return Verdict::RateLimited(limited),
        Err(e) => return Verdict::RateLimitBroken(e),
    };
    on_start();
    let mut observer = observer.unwrap_or_else(|| Box::new(|_| {}));
    let (outcome, analysed) = match isolation {
        Isolation::InProcess => {
            let analysed = Arc::new(AtomicBool::new(false));
            let seen = Arc::clone(&analysed);
            let outcome = decision::authenticate_enrolled_before(
                enrolled,
                config,
                engines,
                open_source,
                deadline,
                decision::DEADLINE_GRACE,
                Box::new(move |report| {
                    seen.store(true, Ordering::Relaxed);
                    observer(report)
                }),
            );
            (outcome, analysed.load(Ordering::Relaxed))
        }
        Isolation::Confined => isolated::authenticate_enrolled(
            enrolled,
            config,
            &mut *open_source,
            &mut *observer,
            Instant::now(),
            deadline,
        ),
    };
    let ended = Instant::now();
    let how = settlement(&outcome, analysed, ended < deadline);
    Verdict::Decided {
        outcome,
        bookkeeping: ticket.settle(how, deadline.max(ended) + SETTLE_GRACE).err(),
    }
}

/// How an attempt that got past the rate limit is settled. A match clears the user's failures; no match and no
/// face stay counted. An unavailable decision is refunded only when it never got to a frame (camera missing or
/// busy at open, broken model, colour camera refused...) and ended before the deadline: once a frame reached the
/// decision, or the deadline passed (a camera that hangs or stalls, which the person in front of it may cause),
/// the attempt stays counted, so nobody gets unlimited tries by making the decision break half-way.
pub fn settlement(
    outcome: &Outcome,
    frames_analysed: bool,
    ended_before_deadline: bool,
) -> Settlement {
    match outcome {
        Outcome::Matched { .. } => Settlement::Success,
        Outcome::NoMatch { .. } | Outcome::NoFace { .. } => Settlement::Failure,
        Outcome::Unavailable(_) if !frames_analysed && ended_before_deadline => {
            Settlement::NotCounted
        }
        Outcome::Unavailable(_) => Settlement::Failure,
    }
}

/// The deadline for a timeout in seconds from `start` (the timeout is validated to (0, 60] by the configuration).
pub fn deadline_after(start: Instant, timeout_secs: f64) -> Instant {
    start + Duration::from_secs_f64(timeout_secs.clamp(0.0, 60.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The user most tests authenticate.
    const USER: &str = "alice";

    /// A request as login or a display manager makes it: real uid 0, no PAM_RUSER.
    fn request(service: &str, rhost: Option<&str>) -> Request {
        Request {
            service: Some(service.into()),
            rhost: rhost.map(Into::into),
            ruser: None,
            tty: None,
            real_uid: 0,
        }
    }

    /// A fake root with no logind and no lid.
    fn empty_system() -> (tempfile::TempDir, System) {
        let root = tempfile::tempdir().unwrap();
        let system = System::under(root.path());
        (root, system)
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn default_services_allow_sudo_and_refuse_sshd_and_unknown() {
        let config = Config::default();
        let (_root, system) = empty_system();
        assert_eq!(
            check(&config, USER, &request("sudo", None), &system),
            Ok(())
        );
        assert_eq!(
            check(&config, USER, &request("sshd", None), &system),
            Err(Refusal::ServiceNotAllowed("sshd".into()))
        );
        assert_eq!(
            check(&config, USER, &request("vsftpd", None), &system),
            Err(Refusal::ServiceNotAllowed("vsftpd".into()))
        );
        let no_service = Request {
            service: None,
            ..request("sudo", None)
        };
        assert_eq!(
            check(&config, USER, &no_service, &system),
            Err(Refusal::NoService)
        );
    }

    #[test]
    fn sshd_is_refused_even_when_listed() {
        let mut config = Config::default();
        config.pam.services.push("sshd".into());
        assert!(!service_allowed(&config, "sshd"));
    }

    #[test]
    fn disabled_wins_over_everything() {
        let mut config = Config::default();
        config.general.disabled = true;
        let (_root, system) = empty_system();
        assert_eq!(
            check(&config, USER, &request("sudo", None), &system),
            Err(Refusal::Disabled)
        );
    }

    #[test]
    fn only_loopback_rhost_counts_as_local() {
        for local in [
            "",
            "localhost",
            "LOCALHOST",
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "[::1]",
            "::ffff:127.0.0.1",
        ] {
            assert!(rhost_is_local(local), "{local}");
        }
        for remote in [
            "192.0.2.7",
            "10.0.0.1",
            "2001:db8::1",
            "example.org",
            "localhost.example.org",
            "::",
        ] {
            assert!(!rhost_is_local(remote), "{remote}");
        }
        let (_root, system) = empty_system();
        assert_eq!(
            check(
                &Config::default(),
                USER,
                &request("sudo", Some("192.0.2.7")),
                &system
            ),
            Err(Refusal::RemoteHost("192.0.2.7".into()))
        );
    }

    #[test]
    fn remote_logind_session_found_through_the_cgroup_is_refused() {
        let (root, system) = empty_system();
        write(
            &root.path().join("proc/self/cgroup"),
            "0::/user.slice/user-1000.slice/session-7.scope\n",
        );
        write(
            &root.path().join("run/systemd/sessions/7"),
            "UID=1000\nUSER=alice\nREMOTE=1\nSERVICE=sshd\n",
        );
        assert_eq!(
            check(&Config::default(), USER, &request("sudo", None), &system),
            Err(Refusal::RemoteSession("7".into()))
        );
    }

    #[test]
    fn remote_logind_session_found_through_the_audit_id_is_refused() {
        let (root, system) = empty_system();
        write(&root.path().join("proc/self/cgroup"), "0::/init.scope\n");
        write(&root.path().join("proc/self/sessionid"), "12");
        write(&root.path().join("run/systemd/sessions/12"), "REMOTE=1\n");
        assert_eq!(remote_session(&system), Some("12".into()));
    }

    #[test]
    fn local_session_and_no_logind_are_not_remote() {
        let (root, system) = empty_system();
        assert_eq!(remote_session(&system), None);
        write(
            &root.path().join("proc/self/cgroup"),
            "0::/user.slice/user-1000.slice/session-3.scope\n",
        );
        write(&root.path().join("proc/self/sessionid"), "4294967295");
        write(
            &root.path().join("run/systemd/sessions/3"),
            "REMOTE=0\nSEAT=seat0\n",
        );
        assert_eq!(remote_session(&system), None);
    }

    /// systemd-run --user, a systemd --user service, or a terminal of a local desktop started by user@.service.
    const USER_MANAGER: &str =
        "0::/user.slice/user-1000.slice/user@1000.service/app.slice/run-u12.service\n";

    #[test]
    fn outside_any_session_is_refused_while_the_user_has_a_remote_session() {
        let (root, system) = empty_system();
        write(&root.path().join("proc/self/cgroup"), USER_MANAGER);
        write(&root.path().join("proc/self/sessionid"), "4294967295");
        let sessions = root.path().join("run/systemd/sessions");
        write(
            &sessions.join("2"),
            "UID=1000\nUSER=alice\nREMOTE=0\nSEAT=seat0\n",
        );
        // No remote session of uid 1000: nothing to refuse.
        assert_eq!(outside_session_while_remote(&system, 1000), None);
        // Another user's ssh session is not this user's.
        write(
            &sessions.join("8"),
            "UID=1001\nUSER=bob\nREMOTE=1\nSERVICE=sshd\n",
        );
        assert_eq!(outside_session_while_remote(&system, 1000), None);
        // The user's own ssh login, even one that is closing, refuses `systemd-run --user --pty sudo -i`.
        write(
            &sessions.join("9"),
            "UID=1000\nUSER=alice\nREMOTE=1\nSERVICE=sshd\nSTATE=closing\n",
        );
        assert_eq!(
            outside_session_while_remote(&system, 1000),
            Some(Refusal::OutsideSessionWhileRemote {
                uid: 1000,
                session: "9".into()
            })
        );
        // Root (login on a console, a display manager before its session) is not judged by this rule.
        assert_eq!(outside_session_while_remote(&system, 0), None);
        // Through check(): nobody's (uid 65534) request from outside a session while nobody is logged in remotely.
        write(&sessions.join("10"), "UID=65534\nREMOTE=1\n");
        let config = Config::default();
        assert!(matches!(
            check(&config, "nobody", &asked_by("sudo", 65534, None), &system),
            Err(Refusal::OutsideSessionWhileRemote { uid: 65534, session }) if session == "10"
        ));
        // logind's FIFOs beside the session files are never opened (a read would block).
        nix::unistd::mkfifo(&sessions.join("11.ref"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert_eq!(remote_session_of(&system, 1001), Some("8".into()));
    }

    #[test]
    fn a_local_session_is_judged_by_itself_while_the_user_has_a_remote_one() {
        let (root, system) = empty_system();
        // A terminal inside the seat's session (or a tmux server started there and attached over ssh, which
        // this cannot tell apart: docs/security.md).
        write(
            &root.path().join("proc/self/cgroup"),
            "0::/user.slice/user-1000.slice/session-2.scope\n",
        );
        let sessions = root.path().join("run/systemd/sessions");
        write(&sessions.join("2"), "UID=1000\nREMOTE=0\nSEAT=seat0\n");
        write(&sessions.join("9"), "UID=1000\nREMOTE=1\nSERVICE=sshd\n");
        assert_eq!(outside_session_while_remote(&system, 1000), None);
        // A session scope logind has no file for is not a local session.
        write(
            &root.path().join("proc/self/cgroup"),
            "0::/user.slice/user-1000.slice/session-77.scope\n",
        );
        assert!(outside_session_while_remote(&system, 1000).is_some());
        // No logind at all: nothing to judge.
        let (_empty, none) = empty_system();
        assert_eq!(outside_session_while_remote(&none, 1000), None);
    }

    #[test]
    fn session_ids_with_path_characters_are_ignored() {
        let (root, system) = empty_system();
        write(&root.path().join("proc/self/sessionid"), "../../etc");
        assert!(session_ids(&system).is_empty());
    }

    #[test]
    fn closed_lid_refuses_a_camera_source_but_not_a_replay() {
        let (root, system) = empty_system();
        write(
            &root.path().join("proc/acpi/button/lid/LID0/state"),
            "state:      closed\n",
        );
        let mut config = Config::default();
        assert!(matches!(
            check(&config, USER, &request("sudo", None), &system),
            Err(Refusal::LidClosed(_))
        ));
        config.camera.source = "file:/x.jpg".into();
        assert_eq!(
            check(&config, USER, &request("sudo", None), &system),
            Ok(())
        );
        write(
            &root.path().join("proc/acpi/button/lid/LID0/state"),
            "state:      open\n",
        );
        config.camera.source = "v4l2:/dev/video0".into();
        assert_eq!(
            check(&config, USER, &request("sudo", None), &system),
            Ok(())
        );
    }

    #[test]
    fn only_an_unavailable_decision_before_any_frame_and_the_deadline_is_refunded() {
        use crate::decision::{Stats, Unavailable};
        let unavailable = || {
            Outcome::Unavailable(Unavailable::NoEnrolment {
                user: "alice".into(),
            })
        };
        assert_eq!(
            settlement(&unavailable(), false, true),
            Settlement::NotCounted
        );
        // Frames were analysed, then the source or a model failed.
        assert_eq!(settlement(&unavailable(), true, true), Settlement::Failure);
        // The decision ran into the deadline (a source that hangs at open or stalls).
        assert_eq!(
            settlement(&unavailable(), false, false),
            Settlement::Failure
        );
        let no_face = Outcome::NoFace {
            stats: Stats::default(),
        };
        assert_eq!(settlement(&no_face, true, true), Settlement::Failure);
        let matched = Outcome::Matched {
            label: "me".into(),
            sample_id: 1,
            distance: 0.1,
            stats: Stats::default(),
        };
        assert_eq!(settlement(&matched, true, true), Settlement::Success);
    }

    /// uid 1000 is alice, 1001 bob; any other uid has no name.
    fn names(uid: u32) -> Result<String, String> {
        match uid {
            1000 => Ok("alice".into()),
            1001 => Ok("bob".into()),
            _ => Err("no such user".into()),
        }
    }

    fn asked_by(service: &str, real_uid: u32, ruser: Option<&str>) -> Request {
        Request {
            real_uid,
            ruser: ruser.map(Into::into),
            ..request(service, None)
        }
    }

    fn requester(config: &Config, user: &str, request: &Request) -> Result<(), Refusal> {
        let service = request.service.as_deref().unwrap_or("");
        check_requester(config, user, service, request, &names)
    }

    #[test]
    fn a_user_may_authenticate_only_themselves() {
        let config = Config::default();
        // alice's own sudo, su, polkit prompt or lock screen: real uid alice's.
        for ruser in [None, Some("alice"), Some("")] {
            assert_eq!(
                requester(&config, "alice", &asked_by("sudo", 1000, ruser)),
                Ok(())
            );
        }
        // bob runs `su alice` while alice sits at the camera.
        let refused = requester(&config, "alice", &asked_by("su", 1001, Some("bob")));
        assert_eq!(
            refused,
            Err(Refusal::OtherUser {
                asking: "uid 1001 (bob)".into(),
                user: "alice".into(),
                service: "su".into(),
            })
        );
        let message = refused.unwrap_err().to_string();
        assert!(
            message.contains("bob")
                && message.contains("alice")
                && message.contains("other_user_services"),
            "{message}"
        );
        // The real uid decides even when PAM_RUSER claims otherwise.
        assert!(requester(&config, "alice", &asked_by("su", 1001, Some("alice"))).is_err());
        // And PAM_RUSER narrows: alice's process naming bob as the asker is refused too.
        assert!(requester(&config, "alice", &asked_by("sudo", 1000, Some("bob"))).is_err());
    }

    #[test]
    fn a_root_process_is_trusted_to_name_the_asker_in_pam_ruser() {
        let config = Config::default();
        // login and display managers: real uid 0, no PAM_RUSER.
        assert_eq!(
            requester(&config, "alice", &asked_by("login", 0, None)),
            Ok(())
        );
        assert_eq!(
            requester(
                &config,
                "alice",
                &asked_by("gdm-password", 0, Some("alice"))
            ),
            Ok(())
        );
        assert_eq!(
            requester(&config, "alice", &asked_by("su", 0, Some("bob"))),
            Err(Refusal::OtherUser {
                asking: "PAM_RUSER bob".into(),
                user: "alice".into(),
                service: "su".into(),
            })
        );
    }

    #[test]
    fn a_service_in_other_user_services_may_authenticate_another_user() {
        let mut config = Config::default();
        config.pam.other_user_services = vec!["su".into()];
        assert_eq!(
            requester(&config, "alice", &asked_by("su", 1001, Some("bob"))),
            Ok(())
        );
        assert_eq!(
            requester(&config, "alice", &asked_by("su", 0, Some("bob"))),
            Ok(())
        );
        // Other services keep the rule.
        assert!(requester(&config, "alice", &asked_by("su-l", 1001, Some("bob"))).is_err());
    }

    #[test]
    fn root_is_refused_unless_allowed() {
        let mut config = Config::default();
        config.pam.other_user_services = vec!["su".into()];
        assert_eq!(
            requester(&config, "root", &asked_by("login", 0, None)),
            Err(Refusal::Root)
        );
        assert_eq!(
            requester(&config, "root", &asked_by("su", 1000, None)),
            Err(Refusal::Root)
        );
        config.pam.allow_root = true;
        assert_eq!(
            requester(&config, "root", &asked_by("login", 0, None)),
            Ok(())
        );
        // Still only the user who asks, unless the service is listed.
        assert!(requester(&config, "root", &asked_by("sudo", 1000, None)).is_err());
        assert_eq!(
            requester(&config, "root", &asked_by("su", 1000, None)),
            Ok(())
        );
    }

    #[test]
    fn a_real_uid_without_a_name_is_refused() {
        let refused = requester(&Config::default(), "alice", &asked_by("sudo", 4242, None));
        assert_eq!(
            refused,
            Err(Refusal::UnknownRequester {
                uid: 4242,
                reason: "no such user".into()
            })
        );
    }

    #[test]
    fn check_looks_the_real_uid_up_in_the_user_database() {
        assert_eq!(user_name(0), Ok("root".to_owned()));
        let (_root, system) = empty_system();
        let config = Config::default();
        // Debian's base-passwd gives uid 65534 to nobody.
        let nobody = asked_by("sudo", 65534, None);
        assert_eq!(check(&config, "nobody", &nobody, &system), Ok(()));
        assert!(matches!(
            check(&config, "alice", &nobody, &system),
            Err(Refusal::OtherUser { asking, .. }) if asking == "uid 65534 (nobody)"
        ));
    }

    /// A configuration whose enrolment store holds an enrolment for `alice` and whose rate-limit state is under
    /// `dir`; the models are never reached by these tests.
    fn enrolled_config(dir: &Path) -> Config {
        use crate::store::{EmbedderId, Enrolment, Store, UserName};
        let mut config = Config::default();
        config.storage.faces_dir = dir.join("faces");
        config.rate_limit.state_dir = dir.join("state");
        std::fs::create_dir(&config.storage.faces_dir).unwrap();
        let user = UserName::new(USER).unwrap();
        let mut enrolment = Enrolment::new(
            &user,
            EmbedderId {
                sha256: "0".repeat(64),
                dimension: 4,
            },
        );
        enrolment.add_sample("alice", vec![0.5; 4]);
        Store::new(&config.storage.faces_dir)
            .save(&enrolment)
            .unwrap();
        config
    }

    fn counted(config: &Config) -> u32 {
        let user = crate::store::UserName::new(USER).unwrap();
        RateLimiter::open(&config.rate_limit)
            .unwrap()
            .failures(&user, Stamp::now(), Instant::now() + Duration::from_secs(1))
            .unwrap()
    }

    #[test]
    fn a_request_from_another_user_never_touches_the_rate_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let config = enrolled_config(tmp.path());
        let (_root, system) = empty_system();
        let engines: &'static EngineCache = Box::leak(Box::new(EngineCache::new()));
        // nobody (uid 65534) runs `su alice` again and again: refused by the policy, alice's count untouched.
        let request = asked_by("su", 65534, None);
        for _ in 0..10 {
            let verdict = attempt(
                &config,
                Attempt {
                    source: SourceChoice::Custom(Box::new(|| {
                        panic!("the camera must not be opened for another user's request")
                    })),
                    ..Attempt::new(
                        USER,
                        &request,
                        &system,
                        Instant::now() + Duration::from_secs(5),
                    )
                },
                engines,
                &mut || {},
            );
            assert!(
                matches!(&verdict, Verdict::NotApplicable(Refusal::OtherUser { .. })),
                "{verdict:?}"
            );
        }
        // No state file was even created for alice (counting it would create one).
        assert!(!config.rate_limit.state_dir.join(USER).exists());
        assert_eq!(counted(&config), 0);
    }

    #[test]
    fn a_source_that_stalls_past_the_deadline_stays_counted_and_one_that_fails_at_open_is_refunded()
    {
        let tmp = tempfile::tempdir().unwrap();
        let config = enrolled_config(tmp.path());
        let (_root, system) = empty_system();
        let engines: &'static EngineCache = Box::leak(Box::new(EngineCache::new()));
        let request = request("sudo", None);
        let attempt_until = |deadline, open: OpenSource| Attempt {
            source: SourceChoice::Custom(open),
            ..Attempt::new(USER, &request, &system, deadline)
        };

        // Fails when opened, before any frame: refunded.
        let verdict = attempt(
            &config,
            attempt_until(
                Instant::now() + Duration::from_secs(10),
                Box::new(|| Err(SourceError::Unsupported("camera busy".into()))),
            ),
            engines,
            &mut || {},
        );
        assert!(
            matches!(
                &verdict,
                Verdict::Decided {
                    outcome: Outcome::Unavailable(_),
                    bookkeeping: None
                }
            ),
            "{verdict:?}"
        );
        assert_eq!(counted(&config), 0);

        // Blocks in open until the test releases it, long after the deadline: counted.
        let (release, stalled) = std::sync::mpsc::channel::<()>();
        let stalled = std::sync::Mutex::new(stalled);
        let started = Instant::now();
        let verdict = attempt(
            &config,
            attempt_until(
                started + Duration::from_millis(300),
                Box::new(move || {
                    let _ = stalled.lock().map(|rx| rx.recv());
                    Err(SourceError::Unsupported("released by the test".into()))
                }),
            ),
            engines,
            &mut || {},
        );
        let answered = started.elapsed();
        release.send(()).unwrap();
        assert!(
            matches!(
                &verdict,
                Verdict::Decided {
                    outcome: Outcome::Unavailable(_),
                    bookkeeping: None
                }
            ),
            "{verdict:?}"
        );
        assert!(
            answered
                < Duration::from_millis(300)
                    + decision::DEADLINE_GRACE
                    + SETTLE_GRACE
                    + Duration::from_millis(100),
            "answered after {answered:?}"
        );
        assert_eq!(counted(&config), 1);
    }
}
