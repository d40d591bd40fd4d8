//! The one place this module touches raw pointers: `pam_syslog`, which pam-bindings does not wrap, and the
//! descriptor clean-up between fork and exec when the helper is started.
//!
//! `pam_syslog` logs with facility AUTHPRIV (it ORs `LOG_AUTHPRIV` into the priority) and prefixes the module and
//! service name; it does not call `openlog`, so the host application's syslog identity is left alone. Everything
//! else PAM-related goes through pam-bindings' safe wrappers (items, `pam_get_user`, the conversation).

use std::ffi::{c_char, c_int, c_uint, c_void, CString};
use std::os::unix::process::CommandExt;
use std::process::Command;

use pam::module::PamHandle;

#[link(name = "pam")]
unsafe extern "C" {
    /// `void pam_syslog(const pam_handle_t *pamh, int priority, const char *fmt, ...)` (Linux-PAM >= 0.99.10).
    fn pam_syslog(pamh: *const c_void, priority: c_int, fmt: *const c_char, ...);
}

/// syslog priorities (`<syslog.h>`; the values are fixed by RFC 5424).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    Err = 3,
    Warning = 4,
    Notice = 5,
    Info = 6,
    Debug = 7,
}

/// Log one line through `pam_syslog`. NUL bytes (which C strings cannot hold) are shown as `\0`.
pub fn syslog(pamh: &PamHandle, priority: Priority, message: &str) {
    let Ok(text) = CString::new(message.replace('\0', "\\0")) else {
        return;
    };
    // SAFETY: `pamh` is a reference to the handle libpam passed to the running hook, so it is non-null and valid
    // for this call; pam_syslog only reads it. The format is a static NUL-terminated "%s" and the single variadic
    // argument is a NUL-terminated `char *`, exactly what "%s" consumes; both outlive the call and pam_syslog
    // keeps neither pointer. User-controlled text is never used as the format.
    unsafe {
        pam_syslog(
            std::ptr::from_ref(pamh).cast::<c_void>(),
            priority as c_int,
            c"%s".as_ptr(),
            text.as_ptr(),
        );
    }
}

/// Make `command`'s child close every descriptor above stderr when it executes: the host process (sudo, a lock
/// screen) may hold descriptors without close-on-exec, and none of them is the helper's business. Its stdin,
/// stdout and stderr are the pipes and /dev/null the command sets up.
pub fn close_inherited_descriptors(command: &mut Command) {
    // SAFETY: the closure runs in the child between fork and exec, where only async-signal-safe calls are
    // allowed: it makes the close_range(2) system call (or, on kernels without CLOSE_RANGE_CLOEXEC, fcntl(2)
    // calls on a fixed range), allocates nothing, takes no lock and touches no memory of the parent. Marking
    // descriptors close-on-exec instead of closing them keeps the pipe std uses to report a failed exec
    // working until the exec itself.
    unsafe {
        command.pre_exec(|| {
            if libc::close_range(3, c_uint::MAX, libc::CLOSE_RANGE_CLOEXEC as c_int) != 0 {
                for fd in 3..FALLBACK_DESCRIPTORS {
                    libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                }
            }
            Ok(())
        });
    }
}

/// How many descriptors the fallback marks when close_range(2) is missing (Linux before 5.11).
const FALLBACK_DESCRIPTORS: c_int = 65_536;
