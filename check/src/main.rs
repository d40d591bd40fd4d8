//! `facekey-check`: face authentication for PAM hosts that run as the user, as pam_unix has unix_chkpwd.
//!
//! Many lock screens call PAM as the logged-in user, who can read neither the enrolments (root-only) nor the
//! rate-limit state. The PAM module then starts this program (installed setuid root, see docs/security.md) with
//! a pipe pair: one request line in on stdin, notices and one verdict out on stdout (`facekey_core::protocol`).
//! It runs the same attempt, through the same core entry point, as the module does in a privileged host.
//!
//! Anyone can run it directly, with any environment, arguments and input. So it must never: keep an environment
//! variable; read a configuration other than /etc/facekey/config.toml unless its real uid is 0; authenticate, when its real uid is not 0,
//! anyone but the user of that uid; let anything in the request widen what it does (the request's service,
//! remote host and timeout can only narrow it); answer a request of another protocol version; write anything
//! but protocol lines to stdout. Its exit code says nothing: only the verdict line counts.

use std::io::{self, Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use facekey_config::{Config, DEFAULT_CONFIG_PATH};
use facekey_core::decision::Outcome;
use facekey_core::policy::{self, Attempt, Isolation, Request, System, Verdict};
use facekey_core::protocol::{
    self, Body, CheckRequest, HelperMessage, LineBuffer, VerdictKind, VerdictSummary,
    PROTOCOL_VERSION,
};
use facekey_core::settings::{self, IfMissing, SettingsError};
use facekey_core::EngineCache;

/// The models, for this one attempt.
static ENGINES: LazyLock<EngineCache> = LazyLock::new(EngineCache::new);

/// How long the request may take to arrive: the module writes it at once.
const REQUEST_WAIT: Duration = Duration::from_secs(2);

fn main() -> ExitCode {
    let started = Instant::now();
    clear_environment();
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    if args.len() == 1 && args[0] == "--protocol" {
        // For `facekey doctor`: the protocol this helper speaks.
        println!("facekey-check protocol {PROTOCOL_VERSION}");
        return ExitCode::SUCCESS;
    }
    if !args.is_empty() {
        eprintln!(
            "facekey-check is started by pam_facekey.so; it takes no arguments but --protocol"
        );
        return ExitCode::from(2);
    }
    let body = match read_request(started + REQUEST_WAIT) {
        Ok(request) => Body::Verdict(attempt(&request, started)),
        Err(reason) => Body::Refused(protocol::short(&reason)),
    };
    match send(&HelperMessage::new(body)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

/// Drop every environment variable: whoever runs this chooses them, and none may change a decision (tract
/// reads some; locale and timezone variables change what libraries do). The process has one thread here.
fn clear_environment() {
    for (name, _) in std::env::vars_os() {
        std::env::remove_var(name);
    }
}

/// One request line from stdin, read within `until`.
fn read_request(until: Instant) -> Result<CheckRequest, String> {
    let mut stdin = io::stdin().lock();
    let mut lines = LineBuffer::new();
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(line) = lines.next_line().map_err(|e| e.to_string())? {
            return protocol::decode_request(&line).map_err(|e| e.to_string());
        }
        if !protocol::wait_readable(&io::stdin(), until).unwrap_or(false) {
            return Err("no request line in time".into());
        }
        match stdin.read(&mut chunk) {
            Ok(0) if lines.has_partial() => lines.push(b"\n"),
            Ok(0) => return Err("no request".into()),
            Ok(n) => lines.push(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading the request: {e}")),
        }
    }
}

fn send(message: &HelperMessage) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout.write_all(&protocol::encode(message))?;
    stdout.flush()
}

/// A notice for the user; a module that has gone away is not this attempt's problem.
fn notice(text: &str) {
    let _ = send(&HelperMessage::new(Body::Notice(protocol::short(text))));
}

/// The attempt the request asks for, within what this caller may ask.
fn attempt(request: &CheckRequest, started: Instant) -> VerdictSummary {
    if let Err(refusal) = caller_may_ask_for(&request.user) {
        return VerdictSummary::plain(VerdictKind::NotApplicable, refusal);
    }
    let config = match load_config(request) {
        Ok(config) => config,
        Err(e) => {
            return VerdictSummary::plain(VerdictKind::Unavailable, format!("configuration: {e}"))
        }
    };
    // The request can shorten the attempt, never lengthen it past the configuration's timeout.
    let requested = Duration::from_millis(request.timeout_ms).as_secs_f64();
    let deadline = policy::deadline_after(started, config.auth.timeout.min(requested));
    // The real uid is this process's own (the caller's: setuid keeps it); PAM_RUSER from the request can only
    // narrow who may be authenticated.
    let policy_request = Request {
        service: request.service.clone(),
        rhost: request.rhost.clone(),
        ruser: request.ruser.clone(),
        tty: request.tty.clone(),
        ..Request::from_this_process()
    };
    let system = System::real();
    let attempt = Attempt {
        isolation: Isolation::Confined,
        ..Attempt::new(&request.user, &policy_request, &system, deadline)
    };
    let verdict = policy::attempt(&config, attempt, &ENGINES, &mut || {
        if config.pam.detection_notice {
            notice("Looking for face...");
        }
    });
    if let Verdict::Decided {
        outcome: Outcome::Matched { label, .. },
        ..
    } = &verdict
    {
        if config.pam.confirmation {
            notice(&format!("Recognised as {label}"));
        }
    }
    VerdictSummary::of(&verdict, verdict.to_string())
}

/// /etc/facekey/config.toml; the file the request names only for a caller whose real uid is 0.
fn load_config(request: &CheckRequest) -> Result<Config, SettingsError> {
    match &request.config {
        Some(path) if nix::unistd::getuid().is_root() => {
            settings::load_config(Path::new(path), IfMissing::Fail)
        }
        _ => settings::load_config(Path::new(DEFAULT_CONFIG_PATH), IfMissing::UseDefaults),
    }
}

/// A caller whose real uid is not 0 may only ask about its own account.
fn caller_may_ask_for(user: &str) -> Result<(), String> {
    let uid = nix::unistd::getuid();
    if uid.is_root() {
        return Ok(());
    }
    match policy::user_name(uid.as_raw()) {
        Ok(name) if name == user => Ok(()),
        Ok(name) => Err(format!(
            "facekey-check run by {name} (uid {uid}) authenticates only {name}, not {user}"
        )),
        Err(reason) => Err(format!("uid {uid} has no user name: {reason}")),
    }
}
