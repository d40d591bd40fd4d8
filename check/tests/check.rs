//! facekey-check run directly, as anyone can: it speaks only its protocol, refuses requests of another
//! version or shape, and answers a caller that is not root only about that caller's own account.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};

use facekey_core::protocol::{self, Body, VerdictKind, PROTOCOL_VERSION};

fn run(args: &[&str], input: &[u8], as_nobody: bool) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_facekey-check"));
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if as_nobody {
        command.uid(65534).gid(65534);
    }
    let mut child = command.spawn().expect("start facekey-check");
    // The helper may have exited before reading (arguments refused): a broken pipe is its answer.
    let _ = child.stdin.take().expect("stdin").write_all(input);
    child.wait_with_output().expect("facekey-check output")
}

/// The one message on stdout.
fn answer(output: &Output) -> Body {
    let text = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got {text:?}");
    protocol::decode_message(lines[0].as_bytes())
        .unwrap_or_else(|e| panic!("{e}: {text:?}"))
        .body
}

fn request(user: &str, version: u32) -> Vec<u8> {
    format!(
        "{{\"protocol\":{version},\"user\":\"{user}\",\"service\":\"sudo\",\"rhost\":null,\"ruser\":null,\
         \"tty\":null,\"config\":null,\"timeout_ms\":1000}}\n"
    )
    .into_bytes()
}

#[test]
fn protocol_flag_names_the_version_and_other_arguments_are_refused() {
    let out = run(&["--protocol"], b"", false);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("facekey-check protocol {PROTOCOL_VERSION}")
    );
    for args in [&["--config", "/tmp/x.toml"][..], &["alice"][..]] {
        let out = run(args, &request("root", PROTOCOL_VERSION), false);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}: wrote to stdout");
    }
}

#[test]
fn requests_of_another_version_or_shape_are_refused() {
    let cases: [(&[u8], &str); 4] = [
        (&request("root", PROTOCOL_VERSION + 1), "protocol version"),
        (b"{\"protocol\":1,\"user\":\"root\"}\n", "malformed"),
        (b"matched\n", "malformed"),
        (b"", "no request"),
    ];
    for (input, why) in cases {
        match answer(&run(&[], input, false)) {
            Body::Refused(reason) => assert!(reason.contains(why), "{reason:?} lacks {why:?}"),
            other => panic!("{}: {other:?}", String::from_utf8_lossy(input)),
        }
    }
}

#[test]
fn a_caller_that_is_not_root_is_answered_only_about_itself() {
    // As root, the test runs the helper as nobody; as anyone else, as itself. Either way the caller is not
    // root, and asks about root.
    let as_nobody = nix::unistd::geteuid().is_root();
    match answer(&run(&[], &request("root", PROTOCOL_VERSION), as_nobody)) {
        Body::Verdict(verdict) => {
            assert_eq!(verdict.kind, VerdictKind::NotApplicable, "{verdict:?}");
            assert!(verdict.text.contains("authenticates only"), "{verdict:?}");
        }
        other => panic!("{other:?}"),
    }
}
