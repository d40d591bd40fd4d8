//! `pam_facekey.so`: face authentication as a PAM module.
//!
//! A thin shell around `facekey_core::policy::attempt`, the same rules and decision the CLI uses. What this file
//! adds is PAM discipline: the user comes from `pam_get_user` only, the configuration from a trusted file, the
//! remote host from PAM_RHOST; the user hears from it through the PAM conversation (PAM_TEXT_INFO), the
//! administrator through syslog (facility AUTHPRIV, via `pam_syslog`); and every result maps to a PAM code in one
//! exhaustive `match` ([`pam_code`]).
//!
//! This module must never: return PAM_SUCCESS for anything but a face matched to an enrolled sample of that very
//! user; write to stdout or stderr (it would break greeters and screen lockers); read environment variables;
//! panic (a panic anyway is caught, kept off stderr, logged, and answered PAM_AUTHINFO_UNAVAIL); log embeddings;
//! take longer than the timeout plus 250 ms, whatever the camera does.
//!
//! Models are loaded into a static cache on the first decision of the process and reused by every later one
//! (a screen locker loads them once); the library is linked `-z nodelete` so that `pam_end` does not unmap them
//! (see build.rs).

mod args;
mod ffi;
mod helper;

use std::ffi::CStr;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex, Once};
use std::time::{Duration, Instant};

use facekey_config::{Config, DEFAULT_CONFIG_PATH};
use facekey_core::decision::Outcome;
use facekey_core::policy::{self, Attempt, Request, System, Verdict};
use facekey_core::protocol::{
    CheckRequest, VerdictKind, VerdictSummary, HELPER_PATH, PROTOCOL_VERSION,
};
use facekey_core::settings::{self, IfMissing, SettingsError};
use facekey_core::EngineCache;
use pam::constants::{PamFlag, PamResultCode, PAM_SILENT, PAM_TEXT_INFO};
use pam::conv::Conv;
use pam::items::{RHost, RUser, Service, Tty};
use pam::module::{PamHandle, PamHooks};
use pam::pam_hooks;

use args::{ArgError, ModuleArgs};
use ffi::Priority;
use helper::HelperError;

/// The loaded models, kept for the life of the process.
static ENGINES: LazyLock<EngineCache> = LazyLock::new(EngineCache::new);

/// Set once a decision has run with loaded models: later decisions in this process start warm.
static MODELS_LOADED: AtomicBool = AtomicBool::new(false);

/// The message of the last panic in this library, captured instead of printed (see [`quiet_panics`]).
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

/// The PAM entry points.
struct FaceKey;

pam_hooks!(FaceKey);

impl PamHooks for FaceKey {
    fn sm_authenticate(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        let started = Instant::now();
        let mut report = Report::default();
        let answer = catching_panics(|| authenticate(pamh, &args, flags, started, &mut report));
        let code = pam_code(&answer);
        let line = format!(
            "user={} service={}{}: {code:?}: {answer} ({} ms in the module)",
            report.user.as_deref().map_or("?".into(), loggable),
            report.service.as_deref().map_or("?".into(), loggable),
            report.asking,
            started.elapsed().as_millis()
        );
        ffi::syslog(pamh, priority(&answer), &line);
        code
    }

    /// Face authentication sets no credentials; succeeding here keeps stacks with `pam_setcred` happy.
    fn sm_setcred(_pamh: &mut PamHandle, _args: Vec<&CStr>, _flags: PamFlag) -> PamResultCode {
        PamResultCode::PAM_SUCCESS
    }
}

/// Everything that can come out of one `pam_sm_authenticate`.
#[derive(Debug)]
enum Answer {
    /// The module arguments cannot be honoured.
    BadArguments(ArgError),
    /// The configuration file was refused (untrusted) or is broken.
    Config(SettingsError),
    /// `pam_get_user` failed.
    NoUser(PamResultCode),
    /// The attempt ran: policy, rate limit, decision.
    Attempt(Verdict),
    /// The attempt ran in the helper: its verdict, or why there was none.
    Helper(Result<VerdictSummary, HelperError>),
    /// A panic was caught (a bug); its message.
    Panicked(String),
}

/// The one mapping from a result to a PAM code. Exhaustive on purpose: a new outcome does not compile until it
/// is given its code here.
fn pam_code(answer: &Answer) -> PamResultCode {
    use PamResultCode::{PAM_AUTHINFO_UNAVAIL, PAM_AUTH_ERR, PAM_SUCCESS};
    match answer {
        Answer::Attempt(Verdict::Decided {
            outcome: Outcome::Matched { .. },
            ..
        }) => PAM_SUCCESS,
        Answer::Attempt(Verdict::Decided {
            outcome: Outcome::NoMatch { .. } | Outcome::NoFace { .. },
            ..
        }) => PAM_AUTH_ERR,
        Answer::Attempt(Verdict::RateLimited(_)) => PAM_AUTH_ERR,
        Answer::Attempt(Verdict::Decided {
            outcome: Outcome::Unavailable(_),
            ..
        }) => PAM_AUTHINFO_UNAVAIL,
        Answer::Attempt(Verdict::NotApplicable(_)) => PAM_AUTHINFO_UNAVAIL,
        Answer::Attempt(Verdict::RateLimitBroken(_)) => PAM_AUTHINFO_UNAVAIL,
        Answer::Helper(Ok(VerdictSummary { kind, .. })) => match kind {
            VerdictKind::Matched => PAM_SUCCESS,
            VerdictKind::NoMatch | VerdictKind::NoFace | VerdictKind::RateLimited => PAM_AUTH_ERR,
            VerdictKind::NotApplicable
            | VerdictKind::Unavailable
            | VerdictKind::RateLimitBroken => PAM_AUTHINFO_UNAVAIL,
        },
        Answer::Helper(Err(_)) => PAM_AUTHINFO_UNAVAIL,
        Answer::BadArguments(_) | Answer::Config(_) | Answer::NoUser(_) | Answer::Panicked(_) => {
            PAM_AUTHINFO_UNAVAIL
        }
    }
}

/// How loudly to log a result: broken setups are errors, decisions are notices, "does not apply" is info.
fn priority(answer: &Answer) -> Priority {
    match answer {
        Answer::BadArguments(_)
        | Answer::Config(_)
        | Answer::Panicked(_)
        | Answer::Attempt(Verdict::RateLimitBroken(_)) => Priority::Err,
        Answer::NoUser(_) | Answer::Attempt(Verdict::NotApplicable(_)) => Priority::Info,
        Answer::Attempt(Verdict::RateLimited(_) | Verdict::Decided { .. }) => Priority::Notice,
        Answer::Helper(Err(_)) => Priority::Err,
        Answer::Helper(Ok(VerdictSummary { kind, .. })) => match kind {
            VerdictKind::RateLimitBroken => Priority::Err,
            VerdictKind::NotApplicable => Priority::Info,
            VerdictKind::Matched
            | VerdictKind::NoMatch
            | VerdictKind::NoFace
            | VerdictKind::RateLimited
            | VerdictKind::Unavailable => Priority::Notice,
        },
    }
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Answer::BadArguments(e) => write!(f, "{e}"),
            Answer::Config(e) => write!(f, "configuration: {e}"),
            Answer::NoUser(code) => write!(f, "pam_get_user failed: {code:?}"),
            Answer::Panicked(message) => write!(f, "internal error (panic): {message}"),
            Answer::Helper(Ok(verdict)) => write!(f, "{} (through the helper)", verdict.text),
            Answer::Helper(Err(e)) => write!(f, "{e}"),
            Answer::Attempt(verdict) => write!(f, "{verdict}"),
        }
    }
}

/// A PAM item as the log line shows it. PAM_USER, PAM_RUSER and PAM_TTY come from whoever calls the stack (a
/// user at a login prompt types the name): a valid user name is shown as it is, anything else quoted with its
/// control characters escaped and cut to 64 characters, so it can neither forge a second log line nor pose as
/// another field (`alice user=root`).
fn loggable(item: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "._-/:@".contains(c);
    if !item.is_empty() && item.len() <= 64 && item.chars().all(plain) {
        item.to_owned()
    } else {
        let cut: String = item.chars().take(64).collect();
        format!("{cut:?}")
    }
}

/// What the log line names besides the result.
#[derive(Default)]
struct Report {
    user: Option<String>,
    service: Option<String>,
    /// Who asks: ` ruid=... ruser=... tty=...` (empty before the request is known).
    asking: String,
}

fn authenticate(
    pamh: &mut PamHandle,
    args: &[&CStr],
    flags: PamFlag,
    started: Instant,
    report: &mut Report,
) -> Answer {
    let args: ModuleArgs = match args::parse(args) {
        Ok(args) => args,
        Err(e) => return Answer::BadArguments(e),
    };
    let debug = |pamh: &PamHandle, message: &str| {
        if args.debug {
            ffi::syslog(pamh, Priority::Debug, message);
        }
    };
    if !args.unknown.is_empty() {
        let unknown = args.unknown.join(" ");
        ffi::syslog(
            pamh,
            Priority::Warning,
            &format!("ignoring unknown module arguments: {unknown}"),
        );
    }
    if args.use_helper || !rustix::process::geteuid().is_root() {
        return through_helper(pamh, &args, flags, started, report);
    }
    let config = match load_config(&args) {
        Ok(config) => config,
        Err(e) => return Answer::Config(e),
    };
    let timeout = match args.timeout {
        Some(t) => t,
        None => config.auth.timeout,
    };
    debug(
        pamh,
        &format!(
            "configuration {} read, timeout {timeout} s, source {}",
            args.config
                .as_deref()
                .map_or(Path::new(DEFAULT_CONFIG_PATH), |p| p)
                .display(),
            config.camera.source
        ),
    );
    let user = match pamh.get_user(None) {
        Ok(user) => user,
        Err(code) => return Answer::NoUser(code),
    };
    report.user = Some(user.clone());
    // Who asks comes from this process's real uid and the application's PAM items, never the environment.
    let request = Request {
        service: item_text(pamh.get_item::<Service>().ok().flatten().map(|s| s.0)),
        rhost: item_text(pamh.get_item::<RHost>().ok().flatten().map(|h| h.0)),
        ruser: item_text(pamh.get_item::<RUser>().ok().flatten().map(|u| u.0)),
        tty: item_text(pamh.get_item::<Tty>().ok().flatten().map(|t| t.0)),
        ..Request::from_this_process()
    };
    report.service = request.service.clone();
    report.asking = format!(
        " ruid={} ruser={} tty={}",
        request.real_uid,
        request.ruser.as_deref().map_or("-".into(), loggable),
        request.tty.as_deref().map_or("-".into(), loggable)
    );
    let silent = flags & PAM_SILENT != 0;
    let system = System::real();
    // In process, on the configured source, no observer: what the module runs.
    let attempt = Attempt::new(
        &user,
        &request,
        &system,
        policy::deadline_after(started, timeout),
    );
    let warm = MODELS_LOADED.load(Ordering::Relaxed);
    let decision_started = Instant::now();
    let verdict = policy::attempt(&config, attempt, &ENGINES, &mut || {
        if config.pam.detection_notice && !silent {
            inform(pamh, "Looking for face...");
        }
    });
    if let Verdict::Decided { outcome, .. } = &verdict {
        if outcome.stats().is_some() {
            MODELS_LOADED.store(true, Ordering::Relaxed);
            debug(
                pamh,
                &format!(
                    "decision in {} ms, models {}",
                    decision_started.elapsed().as_millis(),
                    if warm {
                        "already loaded"
                    } else {
                        "loaded during this call"
                    }
                ),
            );
        }
        if let Outcome::Matched { label, .. } = outcome {
            if config.pam.confirmation && !silent {
                inform(pamh, &format!("Recognised as {label}"));
            }
        }
    }
    Answer::Attempt(verdict)
}

/// How long past the deadline the module waits for the helper's verdict before killing it: the helper's own
/// decision gives up at the deadline plus `decision::DEADLINE_GRACE` (150 ms) and then settles the rate limit. Within
/// the module's promise of the timeout plus 250 ms, with 50 ms left for killing and reaping a helper that did not
/// answer and for returning (a loaded machine took 37 ms of the 30 that 220 ms left).
const HELPER_GRACE: Duration = Duration::from_millis(200);

/// The attempt in `facekey-check`, for a host without the privileges to read the enrolments (a lock screen
/// running as the user), or everywhere with `use_helper`. The helper reads its own configuration and applies
/// every rule itself; the module only relays. Its configuration is read here (when it can be) only for the
/// timeout the module enforces.
fn through_helper(
    pamh: &mut PamHandle,
    args: &ModuleArgs,
    flags: PamFlag,
    started: Instant,
    report: &mut Report,
) -> Answer {
    let timeout = args.timeout.unwrap_or_else(|| {
        load_config(args)
            .map(|config| config.auth.timeout)
            .unwrap_or_else(|_| Config::default().auth.timeout)
    });
    let user = match pamh.get_user(None) {
        Ok(user) => user,
        Err(code) => return Answer::NoUser(code),
    };
    report.user = Some(user.clone());
    let service = item_text(pamh.get_item::<Service>().ok().flatten().map(|s| s.0));
    report.service = service.clone();
    let deadline = policy::deadline_after(started, timeout);
    let request = CheckRequest {
        protocol: PROTOCOL_VERSION,
        user,
        service,
        rhost: item_text(pamh.get_item::<RHost>().ok().flatten().map(|h| h.0)),
        ruser: item_text(pamh.get_item::<RUser>().ok().flatten().map(|u| u.0)),
        tty: item_text(pamh.get_item::<Tty>().ok().flatten().map(|t| t.0)),
        config: args.config.as_ref().map(|p| p.display().to_string()),
        timeout_ms: deadline
            .saturating_duration_since(Instant::now())
            .as_millis()
            .try_into()
            .unwrap_or(u64::MAX),
    };
    let path = args.helper.as_deref().unwrap_or(Path::new(HELPER_PATH));
    let silent = flags & PAM_SILENT != 0;
    let answer = helper::check(path, &request, deadline + HELPER_GRACE, &mut |notice| {
        if !silent {
            inform(pamh, notice);
        }
    });
    Answer::Helper(answer)
}

/// The configuration named by `config=`, or the default file (built-in defaults when that one does not exist).
/// Either way it is read only when it and its parents pass the trust rules.
fn load_config(args: &ModuleArgs) -> Result<Config, SettingsError> {
    match &args.config {
        Some(path) => settings::load_config(path, IfMissing::Fail),
        None => settings::load_config(Path::new(DEFAULT_CONFIG_PATH), IfMissing::UseDefaults),
    }
}

/// A PAM string item as text (lossy: these are names for policy and logs, never paths).
fn item_text(item: Option<&CStr>) -> Option<String> {
    item.map(|s| s.to_string_lossy().into_owned())
}

/// Tell the user something through the application's conversation. A missing or failing conversation is not
/// an error: the message is a courtesy.
fn inform(pamh: &PamHandle, text: &str) {
    if let Ok(Some(conv)) = pamh.get_item::<Conv>() {
        let _ = conv.send(PAM_TEXT_INFO, text);
    }
}

/// Route panics in this library to [`LAST_PANIC`] instead of stderr. The hook belongs to this library's own copy
/// of the Rust runtime (a cdylib links its own `std`), so the host process's behaviour is unchanged.
fn quiet_panics() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            if let Ok(mut last) = LAST_PANIC.lock() {
                *last = Some(info.to_string());
            }
        }));
    });
}

/// Run `attempt` with panics caught: a panic becomes [`Answer::Panicked`] with its message, which goes
/// into the answer (and so the log line), never to stderr.
fn catching_panics(attempt: impl FnOnce() -> Answer) -> Answer {
    quiet_panics();
    match std::panic::catch_unwind(AssertUnwindSafe(attempt)) {
        Ok(answer) => answer,
        Err(_) => Answer::Panicked(take_panic_message()),
    }
}

fn take_panic_message() -> String {
    match LAST_PANIC.lock().ok().and_then(|mut last| last.take()) {
        Some(message) => message,
        None => "no message".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use facekey_core::decision::{Stats, Unavailable};
    use facekey_core::policy::Refusal;
    use facekey_core::ratelimit::Limited;
    use std::time::Duration;

    fn decided(outcome: Outcome) -> Answer {
        Answer::Attempt(Verdict::Decided {
            outcome,
            bookkeeping: None,
        })
    }

    #[test]
    fn items_from_the_caller_cannot_forge_log_fields_or_lines() {
        assert_eq!(loggable("alice"), "alice");
        assert_eq!(loggable("/dev/pts/3"), "/dev/pts/3");
        assert_eq!(loggable("alice user=root"), "\"alice user=root\"");
        assert_eq!(
            loggable("x\nJan 1 host sudo: root : COMMAND=/bin/sh"),
            "\"x\\nJan 1 host sudo: root : COMMAND=/bin/sh\""
        );
        assert_eq!(loggable(""), "\"\"");
        let long = "a".repeat(300);
        assert_eq!(loggable(&long), format!("{:?}", "a".repeat(64)));
        assert!(!loggable("\u{1b}[2J").contains('\u{1b}'));
    }

    #[test]
    fn only_a_match_is_success() {
        let matched = decided(Outcome::Matched {
            label: "me".into(),
            sample_id: 1,
            distance: 0.2,
            stats: Stats::default(),
        });
        assert_eq!(pam_code(&matched), PamResultCode::PAM_SUCCESS);
    }

    #[test]
    fn face_failures_and_the_rate_limit_are_auth_errors() {
        let cases = [
            decided(Outcome::NoMatch {
                best_distance: 0.9,
                stats: Stats::default(),
            }),
            decided(Outcome::NoFace {
                stats: Stats::default(),
            }),
            Answer::Attempt(Verdict::RateLimited(Limited {
                failures: 5,
                max_failures: 5,
                within: Duration::from_secs(60),
                retry_after: Duration::from_secs(30),
            })),
        ];
        for answer in cases {
            assert_eq!(pam_code(&answer), PamResultCode::PAM_AUTH_ERR, "{answer}");
        }
    }

    #[test]
    fn everything_else_is_authinfo_unavail() {
        let cases = [
            decided(Outcome::Unavailable(Unavailable::NoEnrolment {
                user: "u".into(),
            })),
            decided(Outcome::Unavailable(Unavailable::Disabled)),
            Answer::Attempt(Verdict::NotApplicable(Refusal::RemoteHost(
                "192.0.2.1".into(),
            ))),
            Answer::BadArguments(ArgError::BadTimeout("0".into())),
            Answer::NoUser(PamResultCode::PAM_CONV_ERR),
            Answer::Panicked("bug".into()),
        ];
        for answer in cases {
            assert_eq!(
                pam_code(&answer),
                PamResultCode::PAM_AUTHINFO_UNAVAIL,
                "{answer}"
            );
        }
    }

    /// The body of [`a_panic_is_answered_authinfo_unavail_and_kept_off_stderr`]'s child process.
    #[test]
    #[ignore = "run by a_panic_is_answered_authinfo_unavail_and_kept_off_stderr in a process of its own"]
    fn panicking_attempt() {
        let answer = catching_panics(|| {
            let empty: Vec<u8> = Vec::new();
            let index = empty.len() + 3;
            Answer::Panicked(format!("unreachable: {}", empty[index]))
        });
        let Answer::Panicked(message) = &answer else {
            panic!("not caught as a panic: {answer}");
        };
        assert!(message.contains("index out of bounds"), "{message}");
        assert_eq!(pam_code(&answer), PamResultCode::PAM_AUTHINFO_UNAVAIL);
        assert_eq!(priority(&answer), Priority::Err);
        assert!(answer.to_string().starts_with("internal error (panic): "));
        // The hook stays in place: a second panic is caught the same way, and an attempt that does not
        // panic passes through untouched.
        let again = catching_panics(|| panic!("second"));
        assert!(
            matches!(&again, Answer::Panicked(m) if m.contains("second")),
            "{again}"
        );
        let normal = catching_panics(|| Answer::NoUser(PamResultCode::PAM_CONV_ERR));
        assert!(matches!(
            normal,
            Answer::NoUser(PamResultCode::PAM_CONV_ERR)
        ));
    }

    /// A panic inside the module is answered PAM_AUTHINFO_UNAVAIL with its message for the log, and
    /// prints nothing: run in a child test process with output not captured, whose stderr must stay empty.
    #[test]
    fn a_panic_is_answered_authinfo_unavail_and_kept_off_stderr() -> std::io::Result<()> {
        let out = std::process::Command::new(std::env::current_exe()?)
            .args([
                "--exact",
                "tests::panicking_attempt",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .output()?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "child failed: {stdout}");
        assert!(
            stdout.contains("1 passed"),
            "the child ran no test: {stdout}"
        );
        assert!(
            out.stderr.is_empty(),
            "written to stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }
}
