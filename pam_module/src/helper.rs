//! The decision through `facekey-check`, for hosts that call PAM without privileges (most lock screens).
//!
//! The module starts the helper by absolute path with an empty environment, `/` as its directory, no
//! descriptors but a request pipe (its stdin) and an answer pipe (its stdout), writes one request line and reads
//! answer lines until the verdict (see `facekey_core::protocol`). Notices are handed to the caller to relay.
//! Past the deadline plus grace the helper is killed through a pidfd and reaped.
//!
//! This must never: wait past the deadline plus grace, leave a child process behind (running or a zombie), pass
//! the host's environment or descriptors to the helper, or report a match for anything but a verdict line of
//! kind `matched` in this protocol version. Dies, hangs, garbage or silence are errors.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use facekey_core::protocol::{self, Body, CheckRequest, LineBuffer, ProtocolError, VerdictSummary};
use facekey_core::trust::{self, TrustError};
use rustix::process::{pidfd_open, pidfd_send_signal, Pid, PidfdFlags, Signal};

use crate::ffi;

/// Why the helper gave no verdict. Each is answered PAM_AUTHINFO_UNAVAIL.
#[derive(thiserror::Error, Debug)]
pub enum HelperError {
    #[error("helper {}: {error}", path.display())]
    Untrusted { error: TrustError, path: PathBuf },
    #[error("cannot start the helper {}: {source}", path.display())]
    Spawn { path: PathBuf, source: io::Error },
    #[error("talking to the helper: {0}")]
    Io(#[from] io::Error),
    #[error("the helper's answer: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("the helper refused the request: {0}")]
    Refused(String),
    #[error("no answer from the helper within {} ms: it was killed", .0.as_millis())]
    Late(Duration),
    #[error("the helper ended without an answer ({0})")]
    Ended(String),
}

/// Run the helper at `path` for `request`; relay notices to `on_notice`; give up at `give_up`.
pub fn check(
    path: &Path,
    request: &CheckRequest,
    give_up: Instant,
    on_notice: &mut dyn FnMut(&str),
) -> Result<VerdictSummary, HelperError> {
    // Only a helper that root controls is run: it decides who gets in. The file is then run by name, which is
    // safe because no one but root can change a directory on its path.
    drop(
        trust::open_trusted_file(path).map_err(|error| HelperError::Untrusted {
            error,
            path: path.to_owned(),
        })?,
    );
    let started = Instant::now();
    let mut command = Command::new(path);
    command
        .env_clear()
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    ffi::close_inherited_descriptors(&mut command);
    let mut child = command.spawn().map_err(|source| HelperError::Spawn {
        path: path.to_owned(),
        source,
    })?;
    let result = converse(&mut child, request, give_up, on_notice);
    let status = finish(&mut child, give_up);
    match (result, status) {
        (Ok(Some(verdict)), _) => Ok(verdict),
        (Ok(None), Ok(Some(status))) => Err(HelperError::Ended(describe(status))),
        (Ok(None), Ok(None)) => Err(HelperError::Late(started.elapsed())),
        (Ok(None), Err(e)) => Err(HelperError::Io(e)),
        (Err(HelperError::Late(_)), _) => Err(HelperError::Late(started.elapsed())),
        (Err(e), _) => Err(e),
    }
}

/// Write the request, then read lines until the verdict. `Ok(None)`: the helper closed its end without one.
fn converse(
    child: &mut Child,
    request: &CheckRequest,
    give_up: Instant,
    on_notice: &mut dyn FnMut(&str),
) -> Result<Option<VerdictSummary>, HelperError> {
    {
        // A request is far smaller than a pipe's buffer: this write does not wait for the helper. Closing the
        // pipe afterwards tells the helper the request is complete.
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| io::Error::other("no request pipe"))?;
        match stdin.write_all(&protocol::encode(request)) {
            Ok(()) => {}
            // The helper is gone already; its exit status says more than EPIPE.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("no answer pipe"))?;
    let mut lines = LineBuffer::new();
    let mut chunk = [0u8; 1024];
    loop {
        while let Some(line) = lines.next_line()? {
            match protocol::decode_message(&line)?.body {
                Body::Notice(text) => on_notice(&text),
                Body::Verdict(verdict) => return Ok(Some(verdict)),
                Body::Refused(reason) => return Err(HelperError::Refused(reason)),
            }
        }
        if !protocol::wait_readable(&stdout, give_up)? {
            return Err(HelperError::Late(Duration::ZERO));
        }
        match stdout.read(&mut chunk) {
            Ok(0) => return Ok(None),
            Ok(n) => lines.push(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// The helper's exit status once it has ended: waited for until `give_up`, then killed through its pidfd and
/// reaped. `Ok(None)`: it had to be killed (a verdict it already wrote still stands).
fn finish(child: &mut Child, give_up: Instant) -> io::Result<Option<ExitStatus>> {
    if let Some(status) = child.try_wait()? {
        return Ok(Some(status));
    }
    // The child is not reaped yet, so its pid cannot have been reused: the pidfd names this very process.
    let pid = Pid::from_raw(child.id() as i32).ok_or_else(|| io::Error::other("pid 0"))?;
    let pidfd = pidfd_open(pid, PidfdFlags::empty())?;
    if protocol::wait_readable(&pidfd, give_up)? {
        return child.wait().map(Some);
    }
    match pidfd_send_signal(&pidfd, Signal::KILL) {
        // ESRCH: it ended on its own in the meantime.
        Ok(()) | Err(rustix::io::Errno::SRCH) => {}
        Err(e) => return Err(e.into()),
    }
    child.wait()?;
    Ok(None)
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => status.to_string(),
    }
}
