//! `helper-bench`: cold `pam_authenticate` through the setuid helper `facekey-check` as an unprivileged user,
//! against the decision in-process as root, side by side in one run on the same frames; and the helper's peak
//! RSS (its parent and its confined child). The figures in docs/pam.md and docs/performance.md come from it.
//!
//! ```text
//! cargo build --release --workspace && sudo target/release/helper-bench [RUNS]   # RUNS defaults to 20
//! ```
//!
//! It must run as root, and changes nothing outside a private mount namespace and its temporary folders: it
//! re-runs itself under `unshare --mount --propagation private`, enrols the test face for `nobody` in a
//! temporary world, lays an overlay over /etc inside the namespace only (the helper run by a user reads
//! /etc/facekey/config.toml and nothing else), copies the built helper root-owned 4755 into a temporary folder
//! the module is told with `helper=`, and then times, taking turns in every round:
//! - `in-process`: root calls `pam_authenticate`, the module decides in its own process (as for sudo);
//! - `helper-user`: uid 65534 (`nobody`) calls it, the module runs the setuid helper (as for a lock screen);
//! - `helper-root`: root with the module argument `use_helper` (the same helper, without the setuid exec).
//!
//! Each call is cold: a new process per call (this program with `--one`), so the models load inside the call.
//! Times run from the `pam_authenticate` call to its return. No figure is asserted; this only measures.
//!
//! Peak RSS: separate runs of `helper-user`, while this process (root) reads `VmHWM` from /proc of the helper
//! and of its confined child every millisecond (the last value read before each exits), and the process that
//! called PAM reads `getrusage(RUSAGE_CHILDREN)` after the call (the exact peak of the larger of the two).

use std::ffi::{c_int, c_long};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use facekey_e2e::module;
use facekey_e2e::pam::{code_name, Transaction, PAM_SUCCESS};
use facekey_e2e::world::{face, set_mode, World, ENROLLED, PROBE_IMAGE};

/// The unprivileged account the user side runs as, and the user authenticated in every variant.
const USER: &str = "nobody";
const USER_UID: u32 = 65534;
const USER_GID: u32 = 65534;
/// A lock screen's service, in the default `[pam] services`.
const SERVICE: &str = "swaylock";
/// The timeout every variant gives the module (`timeout=`), so none of them reads a configuration for it.
const TIMEOUT: &str = "3";
/// Runs of the helper path whose memory is sampled.
const RSS_RUNS: usize = 5;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    InProcess,
    HelperUser,
    HelperRoot,
}

impl Variant {
    const ALL: [Variant; 3] = [Variant::InProcess, Variant::HelperUser, Variant::HelperRoot];

    fn name(self) -> &'static str {
        match self {
            Variant::InProcess => "in-process (root)",
            Variant::HelperUser => "helper (uid 65534, setuid exec)",
            Variant::HelperRoot => "helper (root, use_helper)",
        }
    }

    /// The folder holding this variant's service file.
    fn dir(self, public: &Path) -> PathBuf {
        public.join(match self {
            Variant::InProcess => "in-process",
            Variant::HelperUser => "helper-user",
            Variant::HelperRoot => "helper-root",
        })
    }
}

/// What one cold child reports.
struct Sample {
    elapsed: Duration,
    /// Peak RSS of the process that called PAM, kB.
    self_kb: u64,
    /// Peak RSS of the largest process it waited for (the helper or its confined child), kB.
    children_kb: u64,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--one") => one(Path::new(&args[2])),
        Some("--in-namespace") => bench(runs(args.get(2))),
        _ => {
            if !sys::is_root() {
                eprintln!(
                    "helper-bench must run as root (it makes a setuid copy of facekey-check)"
                );
                std::process::exit(2);
            }
            // The overlay over /etc exists only in this private mount namespace and ends with it.
            let exe = std::env::current_exe().expect("current executable");
            let status = Command::new("unshare")
                .args(["--mount", "--propagation", "private", "--"])
                .arg(&exe)
                .arg("--in-namespace")
                .arg(runs(args.get(1)).to_string())
                .status()
                .expect("run unshare (util-linux)");
            std::process::exit(status.code().unwrap_or(1));
        }
    }
}

fn runs(arg: Option<&String>) -> usize {
    arg.and_then(|a| a.parse().ok()).unwrap_or(20).max(1)
}

/// Child: one cold `pam_authenticate` with the service file in `dir`; prints microseconds and the peak RSS of
/// this process and of its largest waited-for descendant.
fn one(dir: &Path) {
    let mut pam = Transaction::start(dir, SERVICE, USER).expect("pam_start_confdir");
    let t = pam.authenticate(0);
    assert_eq!(
        t.code,
        PAM_SUCCESS,
        "cold call with {}: {} (notices: {:?})",
        dir.display(),
        code_name(t.code),
        pam.infos()
    );
    drop(pam);
    println!(
        "{} {} {}",
        t.elapsed.as_micros(),
        sys::max_rss_kb(sys::RUSAGE_SELF),
        sys::max_rss_kb(sys::RUSAGE_CHILDREN)
    );
}

fn bench(runs: usize) {
    let so = module::path();
    let world = World::new();
    world.enrol_default(USER);
    let config = world.write_config("main", &World::source(&[face(ENROLLED, PROBE_IMAGE)]), "");

    // What the unprivileged side must reach: the service files and the setuid helper, in folders it may read
    // and root alone may change.
    let public = tempfile::Builder::new()
        .prefix("facekey-helper-bench-")
        .tempdir()
        .expect("create a temporary folder");
    set_mode(public.path(), 0o755);
    let helper = public.path().join("facekey-check");
    std::fs::copy(so.with_file_name("facekey-check"), &helper).expect("copy facekey-check");
    std::os::unix::fs::chown(&helper, Some(0), Some(0)).expect("chown root facekey-check");
    set_mode(&helper, 0o4755);
    for variant in Variant::ALL {
        let args = match variant {
            Variant::InProcess => String::new(),
            Variant::HelperUser => format!(" helper={}", helper.display()),
            Variant::HelperRoot => format!(" use_helper helper={}", helper.display()),
        };
        let dir = variant.dir(public.path());
        std::fs::create_dir(&dir).expect("create a service folder");
        set_mode(&dir, 0o755);
        let service = dir.join(SERVICE);
        std::fs::write(
            &service,
            format!(
                "auth required {} config={} timeout={TIMEOUT}{args}\n",
                so.display(),
                config.display()
            ),
        )
        .expect("write a service file");
        set_mode(&service, 0o644);
    }

    // The helper run by a user reads /etc/facekey/config.toml: here, the bench's configuration.
    let overlay = EtcOverlay::mount(&std::fs::read_to_string(&config).expect("read the config"));

    println!("module: {}", so.display());
    println!("helper: {} (root, 4755)", helper.display());
    println!(
        "user {USER} (uid {USER_UID}), service {SERVICE}, frame {}, timeout {TIMEOUT} s",
        face(ENROLLED, PROBE_IMAGE).display()
    );
    println!("load average before: {}", load_average());

    // One call of each first: the model files and the binaries in the page cache, as after any earlier login;
    // and each variant checked to succeed before anything is timed.
    for variant in Variant::ALL {
        run(variant, public.path());
    }
    let mut samples: Vec<Vec<Sample>> = Variant::ALL.iter().map(|_| Vec::new()).collect();
    for _ in 0..runs {
        for (i, variant) in Variant::ALL.into_iter().enumerate() {
            samples[i].push(run(variant, public.path()));
        }
    }
    println!("load average after: {}", load_average());
    println!();
    println!(
        "cold pam_authenticate, {runs} rounds, variants taking turns (ms): median / p90 / min"
    );
    let medians: Vec<f64> = samples
        .iter()
        .zip(Variant::ALL)
        .map(|(s, variant)| {
            let ms = millis(s);
            let st = Stats::of(&ms);
            println!(
                "  {:34} {:7.1} / {:7.1} / {:7.1}",
                variant.name(),
                st.median,
                st.p90,
                st.min
            );
            st.median
        })
        .collect();
    for (i, variant) in Variant::ALL.into_iter().enumerate().skip(1) {
        // Per round, the difference against the in-process call of the same round.
        let diffs: Vec<f64> = samples[i]
            .iter()
            .zip(&samples[0])
            .map(|(b, a)| (b.elapsed.as_secs_f64() - a.elapsed.as_secs_f64()) * 1000.0)
            .collect();
        println!(
            "  {} - in-process: medians {:+.1} ms; per round median {:+.1} ms (min {:+.1}, max {:+.1})",
            variant.name(),
            medians[i] - medians[0],
            Stats::of(&diffs).median,
            diffs.iter().copied().fold(f64::INFINITY, f64::min),
            diffs.iter().copied().fold(f64::NEG_INFINITY, f64::max)
        );
    }
    let self_kb: Vec<f64> = samples[0].iter().map(|s| s.self_kb as f64).collect();
    println!(
        "  peak RSS of the in-process caller (getrusage RUSAGE_SELF): median {:.1} MB",
        Stats::of(&self_kb).median / 1000.0
    );

    println!();
    println!("helper peak RSS, {RSS_RUNS} runs of the helper as uid {USER_UID} (MB):");
    let mut parent = Vec::new();
    let mut confined = Vec::new();
    let mut tree = Vec::new();
    let mut caller = Vec::new();
    for i in 0..RSS_RUNS {
        let (sample, peaks) = run_sampled(public.path());
        println!(
            "  run {}: parent {:.1}, confined child {:.1}, largest of the two {:.1}, caller {:.1}",
            i + 1,
            peaks.parent_kb as f64 / 1000.0,
            peaks.confined_kb as f64 / 1000.0,
            sample.children_kb as f64 / 1000.0,
            sample.self_kb as f64 / 1000.0
        );
        parent.push(peaks.parent_kb as f64 / 1000.0);
        confined.push(peaks.confined_kb as f64 / 1000.0);
        tree.push(sample.children_kb as f64 / 1000.0);
        caller.push(sample.self_kb as f64 / 1000.0);
    }
    let line = |what: &str, v: &[f64]| {
        let st = Stats::of(v);
        let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        println!(
            "  {what:62} median {:5.1}, min {:5.1}, max {:5.1}",
            st.median, st.min, max
        );
    };
    line("helper parent (VmHWM sampled every 1 ms)", &parent);
    line(
        "confined child (VmHWM sampled every 1 ms; a fork of the parent)",
        &confined,
    );
    line(
        "largest of the two (getrusage RUSAGE_CHILDREN, exact)",
        &tree,
    );
    line(
        "the process that called PAM (getrusage RUSAGE_SELF)",
        &caller,
    );

    overlay.unmount();
}

/// One cold call of `variant` in a new process.
fn run(variant: Variant, public: &Path) -> Sample {
    let child = spawn(variant, public);
    finish(child, variant)
}

fn spawn(variant: Variant, public: &Path) -> Child {
    let exe = std::env::current_exe().expect("current executable");
    let mut command = Command::new(exe);
    command
        .arg("--one")
        .arg(variant.dir(public))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if variant == Variant::HelperUser {
        // std drops the supplementary groups (setgroups(0)) before setgid and setuid.
        command.uid(USER_UID).gid(USER_GID).current_dir("/");
    }
    command.spawn().expect("run the cold child")
}

fn finish(child: Child, variant: Variant) -> Sample {
    let out = child.wait_with_output().expect("wait for the cold child");
    assert!(
        out.status.success(),
        "{}: {}",
        variant.name(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<u64> = text
        .split_whitespace()
        .map(|f| f.parse().expect("a number from the cold child"))
        .collect();
    assert_eq!(fields.len(), 3, "cold child printed {text:?}");
    Sample {
        elapsed: Duration::from_micros(fields[0]),
        self_kb: fields[1],
        children_kb: fields[2],
    }
}

/// The largest `VmHWM` read of the helper and of its confined child.
#[derive(Default)]
struct Peaks {
    parent_kb: u64,
    confined_kb: u64,
}

/// One cold call of the helper as the user, reading the helper's and its child's `VmHWM` until the caller ends.
/// The helper is setuid root: only root can read its /proc status, hence the sampling from here.
fn run_sampled(public: &Path) -> (Sample, Peaks) {
    let mut child = spawn(Variant::HelperUser, public);
    let caller = child.id();
    let mut peaks = Peaks::default();
    while child.try_wait().expect("poll the cold child").is_none() {
        // Between fork and exec the helper's process still shares the caller's memory: only a process that
        // runs the helper's image counts.
        for helper in children(caller).into_iter().filter(|&p| is_helper(p)) {
            peaks.parent_kb = peaks.parent_kb.max(vm_hwm_kb(helper));
            for confined in children(helper).into_iter().filter(|&p| is_helper(p)) {
                peaks.confined_kb = peaks.confined_kb.max(vm_hwm_kb(confined));
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    // Reaped already: wait_with_output only collects the output.
    let sample = finish(child, Variant::HelperUser);
    (sample, peaks)
}

/// The children of every thread of `pid` (none once it is gone).
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Whether `pid` runs facekey-check's image (its name; the confined child, a fork, keeps it).
fn is_helper(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "facekey-check")
}

/// `VmHWM` of `pid` in kB, 0 when it is gone or has no memory any more (a zombie).
fn vm_hwm_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmHWM:")
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

/// An overlay over /etc in this (private) mount namespace, holding /etc/facekey/config.toml.
struct EtcOverlay {
    dir: tempfile::TempDir,
}

impl EtcOverlay {
    fn mount(config: &str) -> EtcOverlay {
        let dir = tempfile::Builder::new()
            .prefix("facekey-helper-bench-etc-")
            .tempdir()
            .expect("create a temporary folder");
        let upper = dir.path().join("upper");
        let work = dir.path().join("work");
        for d in [&upper, &work] {
            std::fs::create_dir(d).expect("create an overlay folder");
        }
        // The overlay's root takes the upper folder's mode: /etc's own.
        set_mode(&upper, 0o755);
        let status = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o"])
            .arg(format!(
                "lowerdir=/etc,upperdir={},workdir={}",
                upper.display(),
                work.display()
            ))
            .arg("/etc")
            .status()
            .expect("run mount");
        assert!(status.success(), "mount an overlay over /etc");
        std::fs::create_dir("/etc/facekey").expect("create /etc/facekey in the overlay");
        set_mode(Path::new("/etc/facekey"), 0o755);
        let path = Path::new("/etc/facekey/config.toml");
        std::fs::write(path, config).expect("write /etc/facekey/config.toml in the overlay");
        set_mode(path, 0o644);
        EtcOverlay { dir }
    }

    fn unmount(self) {
        let status = Command::new("umount")
            .arg("/etc")
            .status()
            .expect("run umount");
        assert!(status.success(), "umount /etc (overlay)");
        drop(self.dir);
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn millis(samples: &[Sample]) -> Vec<f64> {
    samples
        .iter()
        .map(|s| s.elapsed.as_secs_f64() * 1000.0)
        .collect()
}

struct Stats {
    median: f64,
    p90: f64,
    min: f64,
}

impl Stats {
    /// Median (mean of the middle two for an even count), p90 by nearest rank, minimum.
    fn of(values: &[f64]) -> Stats {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        let rank = (n * 9).div_ceil(10).max(1);
        Stats {
            median,
            p90: v[rank - 1],
            min: v[0],
        }
    }
}

/// getrusage and geteuid, declared by hand (this crate has no libc binding).
mod sys {
    use super::{c_int, c_long};

    pub const RUSAGE_SELF: c_int = 0;
    pub const RUSAGE_CHILDREN: c_int = -1;

    /// `struct rusage` on Linux: two `struct timeval`, then fourteen longs, `ru_maxrss` (kB) first.
    #[repr(C)]
    struct Rusage {
        _utime: [c_long; 2],
        _stime: [c_long; 2],
        maxrss: c_long,
        _rest: [c_long; 13],
    }

    unsafe extern "C" {
        fn getrusage(who: c_int, usage: *mut Rusage) -> c_int;
        fn geteuid() -> u32;
    }

    /// `ru_maxrss` of `who`, in kB (0 if the call fails).
    pub fn max_rss_kb(who: c_int) -> u64 {
        let mut usage = Rusage {
            _utime: [0; 2],
            _stime: [0; 2],
            maxrss: 0,
            _rest: [0; 13],
        };
        // SAFETY: `usage` is a live, writable struct with the layout of Linux's `struct rusage`, and `who` is
        // RUSAGE_SELF or RUSAGE_CHILDREN.
        let rc = unsafe { getrusage(who, &mut usage) };
        if rc == 0 {
            u64::try_from(usage.maxrss).unwrap_or(0)
        } else {
            0
        }
    }

    pub fn is_root() -> bool {
        // SAFETY: geteuid takes nothing and cannot fail.
        unsafe { geteuid() == 0 }
    }
}
