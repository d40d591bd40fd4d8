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

/// `created` timestamps as `2026-11-29 20:19:02`.
pub fn format_utc(unix_seconds: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(unix_seconds);
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_string()
}
