//! The request/answer protocol between the PAM module and the privileged helper `facekey-check`.
//!
//! A lock screen that calls PAM as the logged-in user cannot read the enrolments, the rate-limit state or
//! (always) the camera; the module then starts the helper (setuid root, see docs/security.md) with a pipe pair,
//! writes one [`CheckRequest`] line on its stdin and reads [`HelperMessage`] lines from its stdout: notices to
//! relay to the user, then exactly one verdict. Each message is one line of JSON, at most [`MAX_LINE`] bytes.
//!
//! Every message carries [`PROTOCOL_VERSION`]. A module and a helper of different releases refuse each other:
//! the helper answers a request of another version with [`Body::Refused`], and the module treats any message of
//! another version as "unavailable", never as an answer.
//!
//! This module must never: accept unknown fields, a line longer than [`MAX_LINE`], or a message of another
//! version; nor map anything but [`VerdictKind::Matched`] to a match.

use serde::{Deserialize, Serialize};

use crate::decision::Outcome;
use crate::policy::Verdict;

/// The version of this protocol. Raise it whenever a message changes shape or meaning.
pub const PROTOCOL_VERSION: u32 = 1;

/// The longest line either side writes or reads, newline included.
pub const MAX_LINE: usize = 4096;

/// Where the package installs the helper; the module starts it by this absolute path.
pub const HELPER_PATH: &str = "/usr/libexec/facekey/facekey-check";

/// What the module asks. Everything here may only narrow what the helper does: the helper reads its own
/// configuration, and when its real uid is not 0 it authenticates only the user of that uid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    pub protocol: u32,
    /// PAM_USER: whom to authenticate.
    pub user: String,
    /// PAM_SERVICE.
    pub service: Option<String>,
    /// PAM_RHOST.
    pub rhost: Option<String>,
    /// PAM_RUSER.
    pub ruser: Option<String>,
    /// PAM_TTY.
    pub tty: Option<String>,
    /// The module's `config=` argument. Honoured only when the helper's real uid is 0 (a root caller could
    /// run anything anyway); from anyone else it has no effect.
    pub config: Option<String>,
    /// Time left for the attempt, in milliseconds; the helper uses the smaller of this and its configuration's
    /// `[auth] timeout`.
    pub timeout_ms: u64,
}

/// One line from the helper.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HelperMessage {
    pub protocol: u32,
    pub body: Body,
}

/// What a helper line says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Body {
    /// Text for the user (PAM_TEXT_INFO), such as "Looking for face...". Unless PAM_SILENT.
    Notice(String),
    /// The answer; the last line.
    Verdict(VerdictSummary),
    /// The request could not be taken (another protocol version, a malformed line); the reason.
    Refused(String),
}

/// A [`Verdict`] as it crosses the pipe: its kind (which alone decides the PAM code), the matched sample's
/// label for the confirmation message, and the line the module logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerdictSummary {
    pub kind: VerdictKind,
    /// The enrolled sample's label, for a match.
    pub label: Option<String>,
    /// The whole verdict as text, for the log.
    pub text: String,
}

/// The kinds of [`Verdict`] and [`Outcome`], one to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictKind {
    /// A face matched an enrolled sample of the user.
    Matched,
    /// Faces were seen, none matched.
    NoMatch,
    /// No face was seen.
    NoFace,
    /// Too many recent failures.
    RateLimited,
    /// Face authentication does not apply to this request.
    NotApplicable,
    /// The decision could not be made.
    Unavailable,
    /// The rate-limit state could not be used.
    RateLimitBroken,
}

impl VerdictSummary {
    /// The summary of a verdict, with `text` for the log.
    pub fn of(verdict: &Verdict, text: String) -> VerdictSummary {
        let (kind, label) = match verdict {
            Verdict::NotApplicable(_) => (VerdictKind::NotApplicable, None),
            Verdict::RateLimited(_) => (VerdictKind::RateLimited, None),
            Verdict::RateLimitBroken(_) => (VerdictKind::RateLimitBroken, None),
            Verdict::Decided { outcome, .. } => match outcome {
                Outcome::Matched { label, .. } => (VerdictKind::Matched, Some(label.clone())),
                Outcome::NoMatch { .. } => (VerdictKind::NoMatch, None),
                Outcome::NoFace { .. } => (VerdictKind::NoFace, None),
                Outcome::Unavailable(_) => (VerdictKind::Unavailable, None),
            },
        };
        VerdictSummary {
            kind,
            label: label.map(|l| short(&l)),
            text: short(&text),
        }
    }

    /// An answer of kind `kind` with no label.
    pub fn plain(kind: VerdictKind, text: impl Into<String>) -> VerdictSummary {
        VerdictSummary {
            kind,
            label: None,
            text: short(&text.into()),
        }
    }
}

impl HelperMessage {
    /// A message of this protocol version.
    pub fn new(body: Body) -> HelperMessage {
        HelperMessage {
            protocol: PROTOCOL_VERSION,
            body,
        }
    }
}

/// Why a line could not be read as a message.
#[derive(thiserror::Error, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("line longer than {MAX_LINE} bytes")]
    TooLong,
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("protocol version {found}, expected {PROTOCOL_VERSION}: the module and facekey-check come from different releases; reinstall facekey")]
    Version { found: u32 },
}

/// The longest text a message carries; longer texts are cut (at a character boundary) so that a message always
/// fits in [`MAX_LINE`], whatever paths an error message names.
pub const MAX_TEXT: usize = 1024;

/// `text` cut to at most [`MAX_TEXT`] bytes.
pub fn short(text: &str) -> String {
    if text.len() <= MAX_TEXT {
        return text.to_owned();
    }
    let mut end = MAX_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// One message as a line (JSON, then a newline).
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    let mut line = serde_json::to_vec(message).unwrap_or_default();
    line.push(b'\n');
    line
}

/// Parse a request line (without its newline).
pub fn decode_request(line: &[u8]) -> Result<CheckRequest, ProtocolError> {
    check_length(line)?;
    // The version is read first, so a request of another release is named as such, not as malformed.
    check_version(line)?;
    serde_json::from_slice(line).map_err(|e| ProtocolError::Malformed(e.to_string()))
}

/// Parse a helper line (without its newline).
pub fn decode_message(line: &[u8]) -> Result<HelperMessage, ProtocolError> {
    check_length(line)?;
    check_version(line)?;
    serde_json::from_slice(line).map_err(|e| ProtocolError::Malformed(e.to_string()))
}

fn check_length(line: &[u8]) -> Result<(), ProtocolError> {
    if line.len() >= MAX_LINE {
        return Err(ProtocolError::TooLong);
    }
    Ok(())
}

fn check_version(line: &[u8]) -> Result<(), ProtocolError> {
    #[derive(Deserialize)]
    struct Versioned {
        protocol: u32,
    }
    let versioned: Versioned =
        serde_json::from_slice(line).map_err(|e| ProtocolError::Malformed(e.to_string()))?;
    if versioned.protocol != PROTOCOL_VERSION {
        return Err(ProtocolError::Version {
            found: versioned.protocol,
        });
    }
    Ok(())
}

/// Wait until `fd` is readable (or closed), `Ok(false)` once `until` passes first: how both ends wait for the
/// other's next line without ever waiting past their deadline.
pub fn wait_readable(
    fd: &impl std::os::fd::AsFd,
    until: std::time::Instant,
) -> std::io::Result<bool> {
    use rustix::event::{poll, PollFd, PollFlags};
    loop {
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        // Whole milliseconds, rounded up, so a wait never ends before `until`.
        let ms = left.as_micros().div_ceil(1000).min(60_000) as i64;
        let timeout = rustix::time::Timespec {
            tv_sec: ms / 1000,
            tv_nsec: (ms % 1000) * 1_000_000,
        };
        let mut fds = [PollFd::new(fd, PollFlags::IN)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) | Err(rustix::io::Errno::INTR) => continue,
            Ok(_) => return Ok(true),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Collects bytes into lines of at most [`MAX_LINE`] bytes: the reading side of both ends.
#[derive(Debug, Default)]
pub struct LineBuffer {
    pending: Vec<u8>,
}

impl LineBuffer {
    pub fn new() -> LineBuffer {
        LineBuffer::default()
    }

    /// Add bytes just read.
    pub fn push(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    /// The next complete line (without its newline), `Ok(None)` when none is complete yet, or
    /// [`ProtocolError::TooLong`] once more than [`MAX_LINE`] bytes arrived without a newline.
    pub fn next_line(&mut self) -> Result<Option<Vec<u8>>, ProtocolError> {
        match self.pending.iter().position(|&b| b == b'\n') {
            Some(end) if end < MAX_LINE => {
                let mut line: Vec<u8> = self.pending.drain(..=end).collect();
                line.pop();
                Ok(Some(line))
            }
            Some(_) => Err(ProtocolError::TooLong),
            None if self.pending.len() >= MAX_LINE => Err(ProtocolError::TooLong),
            None => Ok(None),
        }
    }

    /// Bytes received after the last complete line.
    pub fn has_partial(&self) -> bool {
        !self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> CheckRequest {
        CheckRequest {
            protocol: PROTOCOL_VERSION,
            user: "alice".into(),
            service: Some("kde".into()),
            rhost: None,
            ruser: None,
            tty: Some(":0".into()),
            config: None,
            timeout_ms: 4000,
        }
    }

    fn without_newline(mut line: Vec<u8>) -> Vec<u8> {
        assert_eq!(line.pop(), Some(b'\n'));
        line
    }

    #[test]
    fn a_request_survives_the_round_trip() {
        let line = without_newline(encode(&request()));
        assert_eq!(decode_request(&line), Ok(request()));
    }

    #[test]
    fn every_message_kind_survives_the_round_trip() {
        let messages = [
            HelperMessage::new(Body::Notice("Looking for face...".into())),
            HelperMessage::new(Body::Refused("no".into())),
            HelperMessage::new(Body::Verdict(VerdictSummary {
                kind: VerdictKind::Matched,
                label: Some("desk".into()),
                text: "matched".into(),
            })),
            HelperMessage::new(Body::Verdict(VerdictSummary::plain(
                VerdictKind::RateLimitBroken,
                "rate limit: busy",
            ))),
        ];
        for message in messages {
            let line = without_newline(encode(&message));
            assert_eq!(decode_message(&line), Ok(message));
        }
    }

    #[test]
    fn another_version_is_refused_by_name() {
        let mut old = request();
        old.protocol = PROTOCOL_VERSION + 1;
        let line = without_newline(encode(&old));
        assert_eq!(
            decode_request(&line),
            Err(ProtocolError::Version {
                found: PROTOCOL_VERSION + 1
            })
        );
        let message =
            br#"{"protocol":0,"body":{"verdict":{"kind":"matched","label":null,"text":""}}}"#;
        assert_eq!(
            decode_message(message),
            Err(ProtocolError::Version { found: 0 })
        );
    }

    #[test]
    fn unknown_fields_unknown_kinds_and_garbage_are_malformed() {
        let cases: [&[u8]; 5] = [
            br#"{"protocol":1,"body":{"verdict":{"kind":"matched","label":null,"text":"","extra":1}}}"#,
            br#"{"protocol":1,"body":{"verdict":{"kind":"success","label":null,"text":""}}}"#,
            br#"{"protocol":1,"body":{"verdict":{"kind":"matched","label":null,"text":""}},"more":true}"#,
            b"matched",
            b"",
        ];
        for line in cases {
            assert!(
                matches!(decode_message(line), Err(ProtocolError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn lines_are_split_and_bounded() {
        let mut buffer = LineBuffer::new();
        buffer.push(b"one\ntw");
        assert_eq!(buffer.next_line(), Ok(Some(b"one".to_vec())));
        assert_eq!(buffer.next_line(), Ok(None));
        assert!(buffer.has_partial());
        buffer.push(b"o\n");
        assert_eq!(buffer.next_line(), Ok(Some(b"two".to_vec())));
        assert!(!buffer.has_partial());
        buffer.push(&vec![b'x'; MAX_LINE]);
        assert_eq!(buffer.next_line(), Err(ProtocolError::TooLong));
        let mut long_line = vec![b'y'; MAX_LINE + 1];
        long_line.push(b'\n');
        let mut buffer = LineBuffer::new();
        buffer.push(&long_line);
        assert_eq!(buffer.next_line(), Err(ProtocolError::TooLong));
        let line = vec![b'z'; MAX_LINE + 10];
        assert_eq!(decode_message(&line), Err(ProtocolError::TooLong));
    }
}
