//! The audit trail: every change the `facekey` command makes to who can get in (enrolments added, removed or
//! cleared; face unlock switched on or off; a model installed or made active; an import) is sent to syslog,
//! facility AUTHPRIV, with who made it, for which user and what changed, so an administrator can answer "who
//! enrolled this face, and when". Never an embedding or an image.
//!
//! Who made it: the real uid of this process and, when the kernel has one, its audit login uid
//! (`/proc/self/loginuid`, set at login and kept across sudo and su), by number and name. `SUDO_USER` is not
//! used: anyone can set it.
//!
//! A record that cannot be sent (no syslog listening) is a warning on standard error: the change has been
//! made by then, and refusing to change enrolments while syslog is down would lock an administrator out of
//! the fix.
use std::fmt::Write as _;

use facekey_config::Config;
use syslog::{Facility, Formatter3164};

/// One change, as the record names it.
pub struct Change<'a> {
    /// What was done: `add`, `remove`, `clear`, `enable`, `disable`, `model-install`, `model-use`, ...
    pub action: &'a str,
    /// The user whose enrolment changed, when the change is about one user.
    pub user: Option<&'a str>,
    /// What changed, in a few words (a sample count, a model name and hash).
    pub detail: String,
}

/// Send the record of `change` to the configured syslog socket, or warn that it could not be sent.
pub fn record(config: &Config, change: &Change<'_>) {
    let line = format_record(change, &actor());
    let socket = &config.general.audit_socket;
    let formatter = Formatter3164 {
        facility: Facility::LOG_AUTHPRIV,
        hostname: None,
        process: "facekey".into(),
        pid: std::process::id(),
    };
    let sent = syslog::unix_custom(formatter, socket)
        .map_err(|e| e.to_string())
        .and_then(|mut logger| logger.notice(&line).map_err(|e| e.to_string()));
    if let Err(e) = sent {
        eprintln!(
            "facekey: warning: the audit record was not sent to {} ({e}): {line}",
            socket.display()
        );
    }
}

/// The record's text: `audit: ACTION user=NAME by=uid N (NAME) login uid N (NAME): DETAIL`.
fn format_record(change: &Change<'_>, actor: &str) -> String {
    let mut line = format!("audit: {}", change.action);
    if let Some(user) = change.user {
        let _ = write!(line, " user={}", quoted(user));
    }
    let _ = write!(line, " by={actor}");
    if !change.detail.is_empty() {
        let _ = write!(line, ": {}", change.detail);
    }
    line
}

/// A name as the record shows it: plain names as they are, anything else quoted and escaped, so a value cannot
/// forge a field or a line.
fn quoted(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
    {
        s.to_owned()
    } else {
        format!("{s:?}")
    }
}

/// Who runs this command: the real uid and the audit login uid, each with its name.
fn actor() -> String {
    let uid = nix::unistd::getuid().as_raw();
    let mut who = format!("uid {uid}{}", name_of(uid));
    // The kernel's "unset" login uid is u32::MAX (a process not started from a login, such as a service).
    if let Some(login) = std::fs::read_to_string("/proc/self/loginuid")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .filter(|&l| l != u32::MAX)
    {
        let _ = write!(who, " login uid {login}{}", name_of(login));
    }
    who
}

fn name_of(uid: u32) -> String {
    crate::users::name_of_uid(uid).map_or_else(String::new, |n| format!(" ({})", quoted(&n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_names_the_action_the_user_and_who_with_hostile_values_escaped() {
        let change = Change {
            action: "add",
            user: Some("alice"),
            detail: "3 samples".into(),
        };
        assert_eq!(
            format_record(&change, "uid 0 (root) login uid 1000 (bob)"),
            "audit: add user=alice by=uid 0 (root) login uid 1000 (bob): 3 samples"
        );
        let change = Change {
            action: "remove",
            user: Some("x by=root\nforged"),
            detail: String::new(),
        };
        assert_eq!(
            format_record(&change, "uid 0"),
            "audit: remove user=\"x by=root\\nforged\" by=uid 0"
        );
    }
}
