//! Confinement, tested on the real thing: each test forks, and the child confines itself for good
//! (the test process itself stays free). What a confined child may still do is checked by trying:
//! files, sockets, exec, root; and the real work (the shipped models on real faces) still runs.
//! `run_confined` is tested with real children that answer, die, hang, panic or send garbage.
//!
//! Run as root (CI does) the tests also check the drop to the unprivileged account.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use facekey_config::Config;
use facekey_core::confine::{
    confine, run_confined, ConfineError, ConfinedRunError, Confinement, NOBODY,
};
use facekey_core::frame::decode_image;
use facekey_core::models;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{ForkResult, Uid};
use serde::{Deserialize, Serialize};
use tract_onnx::prelude::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn config() -> Config {
    let mut config = Config::default();
    config.models.dir = repo().join("models");
    config
}

/// How a forked test child ended, and what it wrote (its failure message, or notes).
struct ChildEnd {
    status: WaitStatus,
    message: String,
}

/// Run `f` in a forked child with one thread (fork copies only the calling thread). The child
/// writes `f`'s message (or its panic) to a pipe and exits 0 for `Ok`, 1 for `Err`.
fn in_child(f: impl FnOnce() -> Result<String, String>) -> ChildEnd {
    let (reader, writer) = nix::unistd::pipe().expect("pipe");
    // SAFETY: the child only runs `f`, writes to the pipe and exits; it never returns into the
    // test harness. The harness's other threads hold no lock the child needs (glibc's allocator
    // is reset across fork).
    match unsafe { nix::unistd::fork() }.expect("fork") {
        ForkResult::Child => {
            drop(reader);
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
                    Err(p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "panic".to_owned()))
                });
            let (code, text) = match result {
                Ok(t) => (0, t),
                Err(t) => (1, t),
            };
            let _ = std::fs::File::from(writer).write_all(text.as_bytes());
            std::process::exit(code)
        }
        ForkResult::Parent { child } => {
            drop(writer);
            let mut message = String::new();
            let _ = std::fs::File::from(reader).read_to_string(&mut message);
            let status = waitpid(child, None).expect("waitpid");
            ChildEnd { status, message }
        }
    }
}

fn assert_passed(end: ChildEnd) -> String {
    assert!(
        matches!(end.status, WaitStatus::Exited(_, 0)),
        "child ended {:?}: {}",
        end.status,
        end.message
    );
    end.message
}

macro_rules! check {
    ($cond:expr, $($msg:tt)+) => {
        let holds: bool = $cond;
        if !holds {
            return Err(format!($($msg)+));
        }
    };
}

fn no_children_left() -> Result<(), String> {
    match waitpid(None, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
        Err(nix::errno::Errno::ECHILD) => Ok(()),
        other => Err(format!("a child is left behind: {other:?}")),
    }
}

#[test]
fn confined_process_cannot_open_files_connect_or_regain_root() {
    let was_root = Uid::effective().is_root();
    let notes = assert_passed(in_child(move || {
        let report = confine(&Confinement::default()).map_err(|e| e.to_string())?;
        check!(
            std::fs::File::open("/etc/hostname").is_err(),
            "/etc/hostname opened"
        );
        check!(
            std::fs::File::create("/tmp/facekey-confined-test").is_err(),
            "a file was created in /tmp"
        );
        check!(std::fs::read_dir("/tmp").is_err(), "/tmp could be listed");
        check!(
            std::net::TcpStream::connect_timeout(
                &"127.0.0.1:22".parse().unwrap(),
                Duration::from_millis(100)
            )
            .is_err(),
            "a TCP socket connected"
        );
        check!(
            std::os::unix::net::UnixDatagram::unbound().is_err(),
            "a unix socket was made"
        );
        let uids = nix::unistd::getresuid().map_err(|e| e.to_string())?;
        let gids = nix::unistd::getresgid().map_err(|e| e.to_string())?;
        if was_root {
            let expected = report.uid;
            check!(expected != 0, "still uid 0: {report}");
            check!(
                [uids.real, uids.effective, uids.saved] == [Uid::from_raw(expected); 3],
                "uids {uids:?}, report {report}"
            );
            check!(
                gids.real.as_raw() == report.gid && gids.saved.as_raw() == report.gid,
                "gids {gids:?}"
            );
            check!(
                nix::unistd::getgroups()
                    .map_err(|e| e.to_string())?
                    .is_empty(),
                "supplementary groups kept"
            );
            let account = report.account.clone().unwrap_or_default();
            check!(
                (account == "nobody" && expected == NOBODY) || account == "facekey",
                "dropped to {account} ({expected})"
            );
        }
        check!(
            nix::sys::prctl::get_no_new_privs() == Ok(true),
            "no_new_privs not set"
        );
        check!(report.seccomp_rules > 40, "seccomp: {report}");
        Ok(report.to_string())
    }));
    eprintln!("confined: {notes}");
}

#[test]
fn landlock_limits_reads_to_the_paths_given() {
    let allowed = repo().join("tests/data/faces/johns");
    let notes = assert_passed(in_child(move || {
        let confinement = Confinement {
            read_only_paths: vec![allowed.clone()],
        };
        let report = confine(&confinement).map_err(|e| e.to_string())?;
        if report.landlock.abi == 0 {
            return Ok(format!("Landlock is not available here: {report}"));
        }
        check!(
            report.landlock.status != "not enforced",
            "Landlock: {report}"
        );
        let inside = allowed.join("John_Salley/000179_02159509.jpg");
        let bytes = std::fs::read(&inside).map_err(|e| format!("{}: {e}", inside.display()))?;
        check!(bytes.len() > 1000, "short read");
        let refused = std::fs::File::open("/etc/hostname")
            .err()
            .and_then(|e| e.raw_os_error());
        check!(
            refused == Some(nix::libc::EACCES),
            "/etc/hostname: {refused:?} (Landlock answers EACCES)"
        );
        check!(
            std::fs::OpenOptions::new()
                .append(true)
                .open(&inside)
                .is_err(),
            "an allowed file was opened for writing"
        );
        check!(
            std::fs::File::create(allowed.join("new")).is_err(),
            "a file was created beneath an allowed path"
        );
        Ok(report.to_string())
    }));
    eprintln!("{notes}");
}

#[test]
fn regaining_root_after_confinement_kills_the_process() {
    // confine() itself checks that setuid(0) fails once the ids are dropped; after the seccomp
    // filter the very attempt ends the process.
    let end = in_child(|| {
        confine(&Confinement::default()).map_err(|e| e.to_string())?;
        let back = nix::unistd::setuid(Uid::from_raw(0));
        Err(format!(
            "setuid(0) returned {back:?}, uid {}",
            Uid::effective()
        ))
    });
    assert!(
        matches!(end.status, WaitStatus::Signaled(_, Signal::SIGSYS, _)),
        "{:?}: {}",
        end.status,
        end.message
    );
}

#[test]
fn execve_after_confinement_kills_the_process() {
    let end = in_child(|| {
        confine(&Confinement::default()).map_err(|e| e.to_string())?;
        let _ = nix::unistd::execv(c"/bin/true", &[c"/bin/true"]);
        Err("execve returned".to_owned())
    });
    assert!(
        matches!(end.status, WaitStatus::Signaled(_, Signal::SIGSYS, _)),
        "{:?}: {}",
        end.status,
        end.message
    );
}

#[test]
fn extension_unit_queries_after_confinement_kill_the_process() {
    use facekey_core::camera::xu::{self, ControlId};
    use std::os::fd::AsFd;
    let emitter = ControlId {
        unit: 4,
        selector: 6,
    };
    let end = in_child(|| {
        // Before: the query reaches the kernel, which answers ENOTTY for a regular file.
        let file = tempfile::tempfile().map_err(|e| e.to_string())?;
        let before = xu::set(file.as_fd(), emitter, &[1, 3, 3, 0, 0, 0, 0, 0, 0]);
        check!(
            before
                .as_ref()
                .is_err_and(|e| e.source.raw_os_error() == Some(nix::libc::ENOTTY)),
            "before confinement: {before:?}"
        );
        confine(&Confinement::default()).map_err(|e| e.to_string())?;
        // After: UVCIOC_CTRL_QUERY is not in the filter's ioctl list, so the call ends the process.
        let after = xu::set(file.as_fd(), emitter, &[1, 3, 3, 0, 0, 0, 0, 0, 0]);
        Err(format!(
            "UVCIOC_CTRL_QUERY returned after confinement: {after:?}"
        ))
    });
    assert!(
        matches!(end.status, WaitStatus::Signaled(_, Signal::SIGSYS, _)),
        "{:?}: {}",
        end.status,
        end.message
    );
}

#[test]
fn starting_a_program_after_confinement_kills_the_process() {
    let end = in_child(|| {
        confine(&Confinement::default()).map_err(|e| e.to_string())?;
        let spawned = std::process::Command::new("/bin/true").spawn();
        Err(format!("spawn returned: {spawned:?}"))
    });
    assert!(
        matches!(end.status, WaitStatus::Signaled(_, Signal::SIGSYS, _)),
        "{:?}: {}",
        end.status,
        end.message
    );
}

#[test]
fn confine_refuses_a_process_with_several_threads() {
    assert_passed(in_child(|| {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || rx.recv());
        let refused = confine(&Confinement::default());
        check!(
            matches!(refused, Err(ConfineError::Threaded(2))),
            "{refused:?}"
        );
        let run = run_confined(
            Instant::now() + Duration::from_secs(5),
            &Confinement::default(),
            || (),
            |()| 1u8,
        );
        check!(matches!(run, Err(ConfinedRunError::Threaded(2))), "{run:?}");
        // Still free: nothing was applied.
        check!(
            std::fs::File::open("/etc/hostname").is_ok(),
            "confined after a refusal"
        );
        drop(tx);
        let _ = other.join();
        Ok(String::new())
    }));
}

#[derive(Serialize, Deserialize, Debug)]
struct Findings {
    face_score: f32,
    dog_score: f32,
    same_person: f32,
    other_person: f32,
}

/// The real work, confined: model bytes and JPEG bytes are read before confinement; after it the
/// models are parsed and planned, the JPEGs decoded, a face found, and embeddings compared, with
/// threads started after confinement.
#[test]
fn the_real_work_runs_confined_on_bytes_read_before() {
    let config = config();
    let johns = repo().join("tests/data/faces/johns");
    let images = [
        johns.join("John_Salley/000179_02159509.jpg"),
        johns.join("John_Salley/000183_02159543.jpg"),
        johns
            .join("John_Savage")
            .join(first_file(&johns.join("John_Savage"))),
        repo().join("tests/data/faces/photos/dogs.jpg"),
    ];
    let notes = assert_passed(in_child(move || {
        let started = Instant::now();
        let ran = run_confined(
            Instant::now() + Duration::from_secs(60),
            &Confinement::default(),
            || -> Result<_, String> {
                let active = models::ActiveModels::resolve(&config).map_err(|e| e.to_string())?;
                let (detector, embedder) = (active.detector.location(), active.embedder.location());
                let d = models::read_verified(&detector).map_err(|e| e.to_string())?;
                let e = models::read_verified(&embedder).map_err(|e| e.to_string())?;
                let jpegs = images
                    .iter()
                    .map(std::fs::read)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| e.to_string())?;
                Ok((detector.path, d, embedder.path, e, jpegs))
            },
            |prepared| -> Result<Findings, String> {
                let (dpath, dbytes, epath, ebytes, jpegs) = prepared?;
                let decoded = jpegs
                    .iter()
                    .map(|b| decode_image(b, "test")?.to_rgb().map_err(|e| e.to_string()))
                    .collect::<Result<Vec<_>, _>>()?;
                // The embedder is planned on a thread started after confinement.
                let embedder = std::thread::spawn(move || {
                    models::build_plan(ebytes, &epath, &[1, 3, 150, 150]).map_err(|e| e.to_string())
                });
                let face = &decoded[0];
                let plan = models::build_plan(dbytes.clone(), &dpath, &canvas(face))
                    .map_err(|e| e.to_string())?;
                let face_score = yunet_score(&plan, face)?;
                let dog = &decoded[3];
                let plan =
                    models::build_plan(dbytes, &dpath, &canvas(dog)).map_err(|e| e.to_string())?;
                let dog_score = yunet_score(&plan, dog)?;
                let embedder = embedder.join().map_err(|_| "embedder thread panicked")??;
                let embed = |i: usize| embedding(&embedder, &decoded[i]);
                let (a, b, c) = (embed(0)?, embed(1)?, embed(2)?);
                Ok(Findings {
                    face_score,
                    dog_score,
                    same_person: distance(&a, &b),
                    other_person: distance(&a, &c),
                })
            },
        )
        .map_err(|e| e.to_string())?;
        no_children_left()?;
        let findings = ran.value?;
        check!(findings.face_score > 0.9, "{findings:?}");
        // The detector's default threshold (detect.score_threshold) is 0.9.
        check!(findings.dog_score < 0.9, "{findings:?}");
        check!(findings.same_person < 0.5, "{findings:?}");
        check!(findings.other_person > 0.6, "{findings:?}");
        Ok(format!(
            "{findings:?} in {} ms, confined as {}",
            started.elapsed().as_millis(),
            ran.confined
        ))
    }));
    eprintln!("{notes}");
}

fn first_file(dir: &Path) -> PathBuf {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    PathBuf::from(&names[0])
}

fn canvas(image: &image::RgbImage) -> [usize; 4] {
    let side = |s: u32| (s.max(224).div_ceil(32) * 32) as usize;
    [1, 3, side(image.height()), side(image.width())]
}

/// The highest YuNet face score, sqrt(cls x obj) over every anchor of its three strides, with
/// the image in the middle of a canvas of sides rounded up to 32 (at least 224), as the detector
/// lays it out (BGR planes, 0-255).
fn yunet_score(plan: &models::Plan, image: &image::RgbImage) -> Result<f32, String> {
    let [_, _, ch, cw] = canvas(image);
    let (w, h) = (image.width() as usize, image.height() as usize);
    let (ox, oy) = ((cw - w) / 2, (ch - h) / 2);
    let plane = cw * ch;
    let mut data = vec![0f32; 3 * plane];
    for (x, y, p) in image.enumerate_pixels() {
        let i = (y as usize + oy) * cw + x as usize + ox;
        data[i] = p.0[2] as f32;
        data[plane + i] = p.0[1] as f32;
        data[2 * plane + i] = p.0[0] as f32;
    }
    let input = Tensor::from_shape(&[1, 3, ch, cw], &data).map_err(|e| e.to_string())?;
    let outputs = plan
        .run(tvec!(input.into()))
        .map_err(|e| format!("{e:#}"))?;
    // YuNet's outputs: cls_8, cls_16, cls_32, obj_8, obj_16, obj_32, then boxes and landmarks.
    let mut best = 0f32;
    for stride in 0..3 {
        let cls = outputs[stride]
            .to_plain_array_view::<f32>()
            .map_err(|e| e.to_string())?;
        let obj = outputs[stride + 3]
            .to_plain_array_view::<f32>()
            .map_err(|e| e.to_string())?;
        for (c, o) in cls.iter().zip(obj.iter()) {
            best = best.max((c.clamp(0.0, 1.0) * o.clamp(0.0, 1.0)).sqrt());
        }
    }
    Ok(best)
}

/// The dlib embedding of an aligned 150x150 chip (RGB planes, 0-255), as the embedder feeds it.
fn embedding(plan: &models::Plan, chip: &image::RgbImage) -> Result<Vec<f32>, String> {
    let plane = 150 * 150;
    let mut data = vec![0f32; 3 * plane];
    for (i, p) in chip.pixels().enumerate() {
        data[i] = p.0[0] as f32;
        data[plane + i] = p.0[1] as f32;
        data[2 * plane + i] = p.0[2] as f32;
    }
    let input = Tensor::from_shape(&[1, 3, 150, 150], &data).map_err(|e| e.to_string())?;
    let out = plan
        .run(tvec!(input.into()))
        .map_err(|e| format!("{e:#}"))?;
    let view = out[0]
        .to_plain_array_view::<f32>()
        .map_err(|e| e.to_string())?;
    Ok(view.iter().copied().collect())
}

fn distance(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt()
}

/// A `run_confined` call inside a forked child (the harness has several threads; the child has
/// one), with its outcome and how long it took, and a check that no child was left behind.
fn run_in_child<T>(
    deadline_in: Duration,
    work: impl FnOnce(()) -> T + 'static,
    judge: impl FnOnce(Result<T, ConfinedRunError>, Duration) -> Result<String, String>,
) -> String
where
    T: Serialize + serde::de::DeserializeOwned,
{
    assert_passed(in_child(move || {
        let started = Instant::now();
        let result = run_confined(started + deadline_in, &Confinement::default(), || (), work)
            .map(|ran| ran.value);
        let took = started.elapsed();
        no_children_left()?;
        judge(result, took)
    }))
}

#[test]
fn a_confined_answer_reaches_the_parent() {
    run_in_child(
        Duration::from_secs(10),
        |()| {
            // Confined: the work sees its own confinement.
            let opened = std::fs::File::open("/etc/hostname").is_ok();
            (opened, "answer".to_owned())
        },
        |result, _| match result {
            Ok((false, text)) if text == "answer" => Ok(String::new()),
            other => Err(format!("{other:?}")),
        },
    );
}

#[test]
fn a_child_that_hangs_is_killed_at_the_deadline() {
    run_in_child(
        Duration::from_millis(300),
        |()| loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
        |result: Result<(), _>, took| {
            check!(
                matches!(result, Err(ConfinedRunError::TimedOut)),
                "{result:?}"
            );
            check!(
                took >= Duration::from_millis(300) && took < Duration::from_millis(550),
                "answered after {took:?}"
            );
            Ok(String::new())
        },
    );
}

#[test]
fn a_child_that_dies_gives_an_error() {
    run_in_child(
        Duration::from_secs(10),
        |()| -> u32 { std::process::abort() },
        |result, _| match result {
            Err(ConfinedRunError::Died(how)) if how.contains("SIGABRT") => Ok(String::new()),
            other => Err(format!("{other:?}")),
        },
    );
    run_in_child(
        Duration::from_secs(10),
        |()| -> u32 { std::process::exit(7) },
        |result, _| match result {
            Err(ConfinedRunError::Died(how)) if how.contains("status 7") => Ok(String::new()),
            other => Err(format!("{other:?}")),
        },
    );
}

#[test]
fn a_child_that_never_answers_gives_an_error() {
    run_in_child(
        Duration::from_secs(10),
        |()| -> u32 { std::process::exit(0) },
        |result, _| match result {
            Err(ConfinedRunError::Died(how)) if how.contains("wrote nothing") => Ok(String::new()),
            other => Err(format!("{other:?}")),
        },
    );
}

#[test]
fn a_child_that_panics_gives_an_error() {
    run_in_child(
        Duration::from_secs(10),
        |()| -> u32 { panic!("decoder exploded") },
        |result, _| match result {
            Err(ConfinedRunError::Panicked(m)) if m.contains("decoder exploded") => {
                Ok(String::new())
            }
            other => Err(format!("{other:?}")),
        },
    );
}

/// Serialises as a string, reads back only from a number: the parent cannot understand it.
struct Unreadable;

impl Serialize for Unreadable {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("not what the parent expects")
    }
}

impl<'de> Deserialize<'de> for Unreadable {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u64::deserialize(d).map(|_| Unreadable)
    }
}

#[test]
fn a_child_that_answers_garbage_gives_an_error() {
    run_in_child(
        Duration::from_secs(10),
        |()| Unreadable,
        |result, _| match result {
            Err(ConfinedRunError::Garbage(_)) => Ok(String::new()),
            Ok(_) => Err("garbage taken as an answer".to_owned()),
            Err(other) => Err(format!("{other:?}")),
        },
    );
    // An answer past the size bound is garbage too, and the child is killed and reaped.
    run_in_child(
        Duration::from_secs(20),
        |()| "x".repeat(facekey_core::confine::MAX_ANSWER_BYTES + 1),
        |result, _| match result {
            Err(ConfinedRunError::Garbage(m)) if m.contains("more than") => Ok(String::new()),
            other => Err(format!("{:?}", other.map(|s| s.len()))),
        },
    );
}

#[test]
fn a_child_that_cannot_confine_itself_does_no_work() {
    // prepare starts a thread: confinement is refused in the child, and the work never runs.
    assert_passed(in_child(|| {
        let result = run_confined(
            Instant::now() + Duration::from_secs(10),
            &Confinement::default(),
            || {
                let (tx, rx) = std::sync::mpsc::channel::<()>();
                std::thread::spawn(move || rx.recv());
                tx
            },
            |_tx| -> u32 { 1 },
        );
        no_children_left()?;
        match result {
            Err(ConfinedRunError::NotConfined(m)) if m.contains("threads") => Ok(String::new()),
            other => Err(format!("{other:?}")),
        }
    }));
}

/// A process that is running a confined child is killed (as the PAM module kills facekey-check at its
/// deadline): the confined child goes with it at once instead of deciding, or holding the camera, on its own.
#[test]
fn a_confined_child_dies_with_its_parent() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let pid_file = dir.path().join("child.pid");
    let written = pid_file.clone();
    // SAFETY: the forked process only runs run_confined (which forks again) and exits; it never returns
    // into the test harness.
    let parent = match unsafe { nix::unistd::fork() }.expect("fork") {
        ForkResult::Child => {
            let _ = run_confined::<_, u32>(
                Instant::now() + Duration::from_secs(30),
                &Confinement::default(),
                move || {
                    // Still privileged here: say who this is.
                    let _ = std::fs::write(&written, nix::unistd::getpid().to_string());
                },
                |()| -> u32 {
                    loop {
                        std::thread::sleep(Duration::from_secs(3600));
                    }
                },
            );
            std::process::exit(0)
        }
        ForkResult::Parent { child } => child,
    };
    let until = Instant::now() + Duration::from_secs(10);
    let child = loop {
        if let Ok(text) = std::fs::read_to_string(&pid_file) {
            if let Ok(pid) = text.trim().parse::<i32>() {
                break pid;
            }
        }
        assert!(Instant::now() < until, "the confined child never started");
        std::thread::sleep(Duration::from_millis(5));
    };
    // Let it get past confinement into its work.
    std::thread::sleep(Duration::from_millis(200));
    nix::sys::signal::kill(parent, Signal::SIGKILL).expect("kill the parent");
    waitpid(parent, None).expect("reap the parent");
    let alive = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| {
                !stat
                    .rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(false)
    };
    let until = Instant::now() + Duration::from_secs(1);
    while alive(child) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        !alive(child),
        "confined child {child} outlived its killed parent"
    );
}
