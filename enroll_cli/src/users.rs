//! Which user a command is about: `--user NAME` (an account that exists), or the invoking user
//! (the sudo caller when the command runs under sudo as root).

use std::time::{Duration, UNIX_EPOCH};

use nix::unistd::{getuid, Uid, User};

/// The account name the command acts on.
pub fn resolve(explicit: Option<&str>) -> Result<String, String> {
    if let Some(name) = explicit {
        return match User::from_name(name) {
            Ok(Some(u)) => Ok(u.name),
            Ok(None) => Err(format!("no user account named '{name}' on this system")),
            Err(e) => Err(format!("looking up user '{name}': {e}")),
        };
    }
    // Under sudo the real uid is root; SUDO_USER names the caller. It only chooses whose faces the
    // administrator is managing: the PAM module never reads it.
    if getuid().is_root() {
        if let Ok(caller) = std::env::var("SUDO_USER") {
            if let Ok(Some(u)) = User::from_name(&caller) {
                return Ok(u.name);
            }
        }
    }
    current(getuid())
}

fn current(uid: Uid) -> Result<String, String> {
    match User::from_uid(uid) {
        Ok(Some(u)) => Ok(u.name),
        Ok(None) => Err(format!("the invoking uid {uid} has no user account")),
        Err(e) => Err(format!("looking up uid {uid}: {e}")),
    }
}

/// The account name of `uid`, when it has one.
pub fn name_of_uid(uid: u32) -> Option<String> {
    User::from_uid(Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
}

/// The last second humantime can show (9999-12-31 23:59:59 UTC); it panics after it.
const LAST_SHOWN_SECOND: u64 = 253_402_300_799;

/// `created` timestamps as `2026-11-29 20:19:02`. An enrolment file is input: a time past the year 9999 is shown
/// as a number of seconds rather than panicking.
pub fn format_utc(unix_seconds: u64) -> String {
    let t = match UNIX_EPOCH.checked_add(Duration::from_secs(unix_seconds)) {
        Some(t) if unix_seconds <= LAST_SHOWN_SECOND => t,
        _ => return format!("{unix_seconds} s after 1970 (past the year 9999)"),
    };
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_stored_time_is_shown_without_panicking() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00");
        assert_eq!(format_utc(LAST_SHOWN_SECOND), "9999-12-31 23:59:59");
        assert_eq!(
            format_utc(LAST_SHOWN_SECOND + 1),
            "253402300800 s after 1970 (past the year 9999)"
        );
        assert!(format_utc(u64::MAX).contains("past the year 9999"));
    }
}
