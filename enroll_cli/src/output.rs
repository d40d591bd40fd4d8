//! Standard output and standard error that never panic.
//!
//! `std`'s `println!` panics (exit 101) when standard output is a closed pipe or a full device
//! (`facekey list | head -0`, `facekey doctor > /dev/full`). The crate root shadows `println!`, `print!`,
//! `eprintln!` and `eprint!` with macros that come here: a failed write is remembered, later writes to that
//! stream are skipped, and the command runs to its end (a half-done change to the enrolments is worse than a
//! lost message). `main` then asks [`finish`] for the exit code: a reader that went away (broken pipe) leaves the
//! command's own code, any other failure to write its output is reported on standard error and exits 2.
use std::fmt;
use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::Mutex;

/// The first error writing standard output, if any.
static STDOUT_ERROR: Mutex<Option<io::ErrorKind>> = Mutex::new(None);
/// Whether writing standard error has failed (then nothing more is tried there).
static STDERR_FAILED: Mutex<bool> = Mutex::new(false);

/// Standard output or standard error.
#[derive(Clone, Copy)]
pub enum Stream {
    Out,
    Err,
}

/// Write `args` (and a newline when `newline`) to `stream`, never panicking.
pub fn write(stream: Stream, args: fmt::Arguments<'_>, newline: bool) {
    let result = match stream {
        Stream::Out => {
            let mut failed = STDOUT_ERROR.lock().unwrap_or_else(|e| e.into_inner());
            if failed.is_some() {
                return;
            }
            let result = emit(&mut io::stdout().lock(), args, newline);
            if let Err(e) = &result {
                *failed = Some(e.kind());
            }
            result
        }
        Stream::Err => {
            let mut failed = STDERR_FAILED.lock().unwrap_or_else(|e| e.into_inner());
            if *failed {
                return;
            }
            let result = emit(&mut io::stderr().lock(), args, newline);
            *failed = result.is_err();
            result
        }
    };
    drop(result);
}

fn emit(w: &mut impl Write, args: fmt::Arguments<'_>, newline: bool) -> io::Result<()> {
    w.write_fmt(args)?;
    if newline {
        w.write_all(b"\n")?;
    }
    // Standard output is line-buffered: text without a newline (a prompt) is pushed out now, so an error shows
    // here and not at exit, where it would be lost.
    w.flush()
}

/// The exit code once the command has run: its own, unless its output could not be written.
pub fn finish(code: ExitCode) -> ExitCode {
    let flushed = io::stdout().lock().flush();
    let mut failed = STDOUT_ERROR.lock().unwrap_or_else(|e| e.into_inner());
    if failed.is_none() {
        if let Err(e) = flushed {
            *failed = Some(e.kind());
        }
    }
    match *failed {
        None | Some(io::ErrorKind::BrokenPipe) => code,
        Some(kind) => {
            write(
                Stream::Err,
                format_args!(
                    "facekey: the output could not be written: {}",
                    io::Error::from(kind)
                ),
                true,
            );
            ExitCode::from(2)
        }
    }
}
