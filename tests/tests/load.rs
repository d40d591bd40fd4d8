//! 16 authentications at once through the real module and libpam: as 16 threads of one process and as 16
//! processes, each in process and through the helper. Eight ask for eight enrolled users with their face in view (each must
//! be PAM_SUCCESS); eight ask for one user with another face in view, so the rate limit (5 failures a minute) must
//! let exactly five decide and refuse three, and count exactly five. Every call must answer within its timeout
//! plus 250 ms; afterwards the process has no more threads, descriptors or children than before.
//!
//! It prints median and worst latency and peak memory of the calling process (the helper's own is measured by
//! `helper-bench`): `cargo test --release -p facekey-e2e --test load -- --nocapture`. Those figures are measured,
//! not asserted.

use std::ffi::c_int;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use facekey_config::RateLimit;
use facekey_core::ratelimit::RateLimiter;
use facekey_core::store::UserName;
use facekey_e2e::module;
use facekey_e2e::pam::{code_name, face_decision, Transaction, PAM_AUTH_ERR, PAM_SUCCESS};
use facekey_e2e::world::{face, probe_images, World, OTHER};

const CALLS: usize = 16;
/// Generous: 16 decisions share two cores on CI. The bound checked is this plus 250 ms.
const TIMEOUT_SECS: u64 = 20;
const TARGET: &str = "target-user";
/// Set in the children of the 16-process run: "PAM_DIR SERVICE USER".
const CHILD: &str = "FACEKEY_LOAD_CHILD";

/// One call's answer.
#[derive(Debug, Clone)]
struct Call {
    service: String,
    code: c_int,
    elapsed: Duration,
    /// The module said "Looking for face..." (it got past the rate limit).
    looked: bool,
}

/// The world: `m0`..`m7` enrolled and service `sudo` showing their face; `target-user` enrolled and service
/// `login` showing another face; both through the helper when `helper` is set.
fn world(helper: Option<&Path>) -> World {
    let world = World::new();
    for i in 0..CALLS / 2 {
        world.enrol_default(&format!("m{i}"));
    }
    world.enrol_default(TARGET);
    let extra = format!("[auth]\ntimeout = {TIMEOUT_SECS}.0\n");
    let matching = world.write_config("matching", &World::source(&probe_images()), &extra);
    let other = world.write_config("other", &World::source(&[face(OTHER, 0)]), &extra);
    let args = match helper {
        Some(h) => format!("use_helper helper={}", h.display()),
        None => String::new(),
    };
    world.write_module_service("sudo", &matching, &args);
    world.write_module_service("login", &other, &args);
    world
}

/// Who each call is: (service, user).
fn plan() -> Vec<(String, String)> {
    (0..CALLS)
        .map(|i| {
            if i < CALLS / 2 {
                ("sudo".to_owned(), format!("m{i}"))
            } else {
                ("login".to_owned(), TARGET.to_owned())
            }
        })
        .collect()
}

fn one_call(pam_dir: &Path, service: &str, user: &str, start: impl FnOnce()) -> Call {
    let mut pam = Transaction::start(pam_dir, service, user).expect("pam_start_confdir");
    start();
    let timed = pam.authenticate(0);
    Call {
        service: service.to_owned(),
        code: timed.code,
        elapsed: timed.elapsed,
        looked: pam.infos().iter().any(|m| m == "Looking for face..."),
    }
}

fn counted(world: &World, user: &str) -> u32 {
    RateLimiter::open(&RateLimit {
        state_dir: world.state_dir(),
        ..RateLimit::default()
    })
    .expect("open the rate-limit state")
    .failures(
        &UserName::new(user).unwrap(),
        facekey_core::ratelimit::Stamp::now(),
        Instant::now() + Duration::from_secs(1),
    )
    .expect("read the rate-limit state")
}

/// Every answer right, in time, and the rate limit exact; prints the figures.
fn check(what: &str, world: &World, calls: &[Call], peak_kib: u64) {
    let limit = Duration::from_secs(TIMEOUT_SECS) + Duration::from_millis(250);
    for call in calls {
        assert!(
            call.elapsed <= limit,
            "{what}: {call:?} answered after {limit:?}"
        );
    }
    let matching: Vec<&Call> = calls.iter().filter(|c| c.service == "sudo").collect();
    for call in &matching {
        assert_eq!(
            call.code,
            face_decision(PAM_SUCCESS),
            "{what}: an enrolled face got {}",
            code_name(call.code)
        );
    }
    let other: Vec<&Call> = calls.iter().filter(|c| c.service == "login").collect();
    for call in &other {
        assert_eq!(
            call.code,
            face_decision(PAM_AUTH_ERR),
            "{what}: another face got {}",
            code_name(call.code)
        );
    }
    if face_decision(PAM_SUCCESS) == PAM_SUCCESS {
        let decided = other.iter().filter(|c| c.looked).count();
        assert_eq!(
            decided, 5,
            "{what}: {decided} of 8 attempts for one user got past the limit of 5"
        );
        assert_eq!(
            counted(world, TARGET),
            5,
            "{what}: the rate limit counted wrong"
        );
    }
    let mut times: Vec<Duration> = calls.iter().map(|c| c.elapsed).collect();
    times.sort();
    eprintln!(
        "LOAD {what}: {CALLS} calls, median {} ms, worst {} ms, peak memory (VmHWM) {} MiB",
        times[CALLS / 2].as_millis(),
        times[CALLS - 1].as_millis(),
        peak_kib / 1024
    );
}

fn status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

fn descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn children() -> String {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .map(|t| std::fs::read_to_string(t.unwrap().path().join("children")).unwrap_or_default())
        .collect::<String>()
        .trim()
        .to_owned()
}

/// The 16 calls as threads of this process, started together; then nothing of them may be left.
fn as_threads(what: &str, helper: Option<&Path>) {
    let world = Arc::new(world(helper));
    // One call first, so what the module keeps for the life of the process (the models) is in the baseline.
    let warm = one_call(&world.pam_dir(), "sudo", "m0", || {});
    assert_eq!(
        warm.code,
        face_decision(PAM_SUCCESS),
        "{what}: warm-up call"
    );
    let (before_threads, before_fds) = (threads(), descriptors());
    let barrier = Arc::new(Barrier::new(CALLS));
    let handles: Vec<_> = plan()
        .into_iter()
        .map(|(service, user)| {
            let (world, barrier) = (world.clone(), barrier.clone());
            std::thread::spawn(move || {
                one_call(&world.pam_dir(), &service, &user, || {
                    barrier.wait();
                })
            })
        })
        .collect();
    let calls: Vec<Call> = handles
        .into_iter()
        .map(|h| h.join().expect("a call thread"))
        .collect();
    check(what, &world, &calls, status_kib("VmHWM:"));
    // Threads end on their own once their call has returned: poll briefly.
    let until = Instant::now() + Duration::from_secs(5);
    while threads() > before_threads && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        threads() <= before_threads,
        "{what}: {} threads left, {before_threads} before",
        threads()
    );
    assert!(
        descriptors() <= before_fds,
        "{what}: {} descriptors open, {before_fds} before",
        descriptors()
    );
    assert_eq!(children(), "", "{what}: child processes left");
}

/// One test, so that the three runs are alone in this process: its threads, descriptors and children are theirs.
#[test]
fn sixteen_at_once_as_threads_and_as_processes_in_process_and_through_the_helper() {
    if std::env::var_os(CHILD).is_some() {
        return child();
    }
    as_threads("16 threads, in process", None);
    let helper = module::path().parent().unwrap().join("facekey-check");
    assert!(helper.is_file(), "{} was not built", helper.display());
    as_threads("16 threads, through the helper", Some(&helper));
    as_processes("16 processes, in process", None);
    as_processes("16 processes, through the helper", Some(&helper));
}

/// A child of [`as_processes`]: wait for the parent's go (its stdin closing), one call, one line of figures.
fn child() {
    if let Ok(args) = std::env::var(CHILD) {
        let mut parts = args.splitn(3, ' ');
        let (dir, service, user) = (
            PathBuf::from(parts.next().unwrap()),
            parts.next().unwrap().to_owned(),
            parts.next().unwrap().to_owned(),
        );
        let call = one_call(&dir, &service, &user, || {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
        });
        println!(
            "CALL {} {} {} {} {}",
            call.service,
            call.code,
            call.elapsed.as_micros(),
            call.looked,
            status_kib("VmHWM:")
        );
    }
}

/// The 16 calls as 16 processes (this test binary again), started together.
fn as_processes(what: &str, helper: Option<&Path>) {
    let world = world(helper);
    let mut children: Vec<_> = plan()
        .into_iter()
        .map(|(service, user)| {
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "sixteen_at_once_as_threads_and_as_processes_in_process_and_through_the_helper",
                    "--nocapture",
                ])
                .env(
                    CHILD,
                    format!("{} {service} {user}", world.pam_dir().display()),
                )
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Let the children start their PAM transactions, then all go at once.
    std::thread::sleep(Duration::from_millis(500));
    for child in &mut children {
        drop(child.stdin.take());
    }
    let mut calls = Vec::new();
    let mut peak = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "a child failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("CALL "))
            .expect("a CALL line");
        let f: Vec<&str> = line.split(' ').collect();
        calls.push(Call {
            service: f[0].to_owned(),
            code: f[1].parse().unwrap(),
            elapsed: Duration::from_micros(f[2].parse().unwrap()),
            looked: f[3] == "true",
        });
        peak = peak.max(f[4].parse::<u64>().unwrap());
    }
    check(
        &format!("{what} (memory: the largest one)"),
        &world,
        &calls,
        peak,
    );
}
