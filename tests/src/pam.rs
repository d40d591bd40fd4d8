//! libpam, declared by hand: one PAM transaction against a service folder of our choosing.
//!
//! `pam_start_confdir` (Linux-PAM >= 1.4) reads the service file from a given folder instead of /etc/pam.d, so
//! the tests need neither root nor a change to the system. The conversation records every message the module
//! sends and answers prompts with nothing.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const PAM_SUCCESS: c_int = 0;
pub const PAM_AUTH_ERR: c_int = 7;
pub const PAM_AUTHINFO_UNAVAIL: c_int = 9;
pub const PAM_CONV_ERR: c_int = 19;
pub const PAM_IGNORE: c_int = 25;
pub const PAM_RHOST: c_int = 4;
pub const PAM_RUSER: c_int = 8;
pub const PAM_TEXT_INFO: c_int = 4;
pub const PAM_ERROR_MSG: c_int = 3;

/// The name of a PAM return code, for assertion messages.
pub fn code_name(code: c_int) -> String {
    match code {
        PAM_SUCCESS => "PAM_SUCCESS".into(),
        PAM_AUTH_ERR => "PAM_AUTH_ERR".into(),
        PAM_AUTHINFO_UNAVAIL => "PAM_AUTHINFO_UNAVAIL".into(),
        PAM_IGNORE => "PAM_IGNORE".into(),
        other => format!("PAM code {other}"),
    }
}

#[repr(C)]
struct PamMessage {
    msg_style: c_int,
    msg: *const c_char,
}

#[repr(C)]
struct PamResponse {
    resp: *mut c_char,
    resp_retcode: c_int,
}

type ConvFn =
    extern "C" fn(c_int, *mut *const PamMessage, *mut *mut PamResponse, *mut c_void) -> c_int;

#[repr(C)]
struct PamConv {
    conv: ConvFn,
    appdata_ptr: *mut c_void,
}

#[link(name = "pam")]
unsafe extern "C" {
    fn pam_start_confdir(
        service: *const c_char,
        user: *const c_char,
        conv: *const PamConv,
        confdir: *const c_char,
        pamh: *mut *mut c_void,
    ) -> c_int;
    fn pam_authenticate(pamh: *mut c_void, flags: c_int) -> c_int;
    fn pam_setcred(pamh: *mut c_void, flags: c_int) -> c_int;
    fn pam_acct_mgmt(pamh: *mut c_void, flags: c_int) -> c_int;
    fn pam_set_item(pamh: *mut c_void, item_type: c_int, item: *const c_void) -> c_int;
    fn pam_end(pamh: *mut c_void, status: c_int) -> c_int;
}

unsafe extern "C" {
    fn calloc(count: usize, size: usize) -> *mut c_void;
}

/// A message the module sent through the conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub style: c_int,
    pub text: String,
}

/// One PAM transaction (`pam_start_confdir` .. `pam_end`). Not shared between threads: each thread starts its own,
/// as libpam requires.
pub struct Transaction {
    handle: *mut c_void,
    // Boxed so their addresses, handed to libpam, stay put for the life of the handle.
    _conv: Box<PamConv>,
    messages: Box<Mutex<Vec<Message>>>,
    last: c_int,
}

/// What one `pam_authenticate` returned and how long it took.
#[derive(Debug, Clone, Copy)]
pub struct Timed {
    pub code: c_int,
    pub elapsed: Duration,
}

impl Transaction {
    /// `pam_start_confdir(service, user, conv, confdir)`.
    pub fn start(confdir: &Path, service: &str, user: &str) -> Result<Transaction, c_int> {
        let service = CString::new(service).expect("service without NUL");
        let user = CString::new(user).expect("user without NUL");
        let confdir =
            CString::new(confdir.as_os_str().as_encoded_bytes()).expect("confdir without NUL");
        let messages: Box<Mutex<Vec<Message>>> = Box::default();
        let conv = Box::new(PamConv {
            conv: converse,
            appdata_ptr: std::ptr::from_ref(&*messages).cast_mut().cast(),
        });
        let mut handle = std::ptr::null_mut();
        // SAFETY: all strings are NUL-terminated and live through the call (libpam copies them); `conv` points to
        // a PamConv whose appdata is the boxed message list, both kept alive in the Transaction until pam_end;
        // `handle` is a valid out-pointer.
        let rc = unsafe {
            pam_start_confdir(
                service.as_ptr(),
                user.as_ptr(),
                &*conv,
                confdir.as_ptr(),
                &mut handle,
            )
        };
        if rc != PAM_SUCCESS {
            return Err(rc);
        }
        Ok(Transaction {
            handle,
            _conv: conv,
            messages,
            last: PAM_SUCCESS,
        })
    }

    /// Set PAM_RHOST, as sshd or a remote login would.
    pub fn set_rhost(&mut self, host: &str) {
        self.set_text_item(PAM_RHOST, "PAM_RHOST", host);
    }

    /// Set PAM_RUSER, the user asking, as su and sudo do (to their caller's name).
    pub fn set_ruser(&mut self, user: &str) {
        self.set_text_item(PAM_RUSER, "PAM_RUSER", user);
    }

    fn set_text_item(&mut self, item: c_int, name: &str, value: &str) {
        let value = CString::new(value).expect("item without NUL");
        // SAFETY: the handle is live (pam_end only runs on drop); `value` is NUL-terminated and libpam copies
        // string items.
        let rc = unsafe { pam_set_item(self.handle, item, value.as_ptr().cast()) };
        assert_eq!(rc, PAM_SUCCESS, "pam_set_item({name})");
    }

    /// `pam_authenticate(flags)`, timed.
    pub fn authenticate(&mut self, flags: c_int) -> Timed {
        let start = Instant::now();
        // SAFETY: the handle is live; the module may call back into `converse` during the call.
        let code = unsafe { pam_authenticate(self.handle, flags) };
        self.last = code;
        Timed {
            code,
            elapsed: start.elapsed(),
        }
    }

    /// `pam_setcred(PAM_ESTABLISH_CRED)`.
    pub fn setcred(&mut self) -> c_int {
        // SAFETY: the handle is live. 0x0002 = PAM_ESTABLISH_CRED.
        unsafe { pam_setcred(self.handle, 0x0002) }
    }

    /// `pam_acct_mgmt(0)`.
    pub fn acct_mgmt(&mut self) -> c_int {
        // SAFETY: the handle is live.
        unsafe { pam_acct_mgmt(self.handle, 0) }
    }

    /// The messages the module sent so far.
    pub fn messages(&self) -> Vec<Message> {
        self.messages.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// The texts of the PAM_TEXT_INFO messages.
    pub fn infos(&self) -> Vec<String> {
        self.messages()
            .into_iter()
            .filter(|m| m.style == PAM_TEXT_INFO)
            .map(|m| m.text)
            .collect()
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        // SAFETY: the handle came from pam_start_confdir and is ended exactly once, here.
        unsafe {
            pam_end(self.handle, self.last);
        }
    }
}

/// The conversation: record each message; answer each with an empty response (the module only informs).
extern "C" fn converse(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata: *mut c_void,
) -> c_int {
    let result = std::panic::catch_unwind(|| {
        if num_msg <= 0 || msg.is_null() || resp.is_null() || appdata.is_null() {
            return PAM_CONV_ERR;
        }
        let n = num_msg as usize;
        // SAFETY: appdata is the boxed Mutex<Vec<Message>> of the Transaction that started this handle, alive
        // until pam_end.
        let messages = unsafe { &*appdata.cast::<Mutex<Vec<Message>>>() };
        for i in 0..n {
            // SAFETY: Linux-PAM passes `msg` as an array of `num_msg` pointers to valid messages whose `msg` is a
            // NUL-terminated string (or null).
            let (style, text) = unsafe {
                let m = &**msg.add(i);
                let text = if m.msg.is_null() {
                    String::new()
                } else {
                    CStr::from_ptr(m.msg).to_string_lossy().into_owned()
                };
                (m.msg_style, text)
            };
            if let Ok(mut list) = messages.lock() {
                list.push(Message { style, text });
            }
        }
        // SAFETY: calloc returns zeroed memory for `n` responses (null `resp` strings) or null; the caller frees
        // it with free(), as the PAM conversation contract says.
        let answers =
            unsafe { calloc(n, std::mem::size_of::<PamResponse>()) }.cast::<PamResponse>();
        if answers.is_null() {
            return PAM_CONV_ERR;
        }
        // SAFETY: `resp` is a valid out-pointer from libpam.
        unsafe { *resp = answers };
        PAM_SUCCESS
    });
    result.unwrap_or(PAM_CONV_ERR)
}

/// The code a face decision gives here: `code`, unless this process is in a remote logind session, where the
/// module rightly refuses every face decision with PAM_AUTHINFO_UNAVAIL (a developer's machine over ssh).
pub fn face_decision(code: c_int) -> c_int {
    use facekey_core::policy::{remote_session, System};
    match remote_session(&System::real()) {
        Some(session) => {
            eprintln!("running in remote logind session {session}: face decisions are refused");
            PAM_AUTHINFO_UNAVAIL
        }
        None => code,
    }
}

/// `actual` is `expected`, by name in the message.
pub fn assert_code(actual: c_int, expected: c_int, what: &str) {
    assert_eq!(
        actual,
        expected,
        "{what}: got {}, expected {}",
        code_name(actual),
        code_name(expected)
    );
}
