//! `pam-bench`: the PAM module's figures for docs/pam.md, measured on this machine.
//!
//! ```text
//! cargo run --release -p facekey-e2e --bin pam-bench [-- RUNS]
//! ```
//!
//! Enrols a test face in a temporary world, then reports:
//! - cold: `pam_authenticate` to its return for a matching replayed face, first call in a new process (a child
//!   process per run, so models load inside the call), median and range of RUNS runs;
//! - warm: the same call repeated in one process after the first, median and range of RUNS runs;
//! - model load alone (`Engine::load`, both models in parallel), median of RUNS;
//! - the size of the built module;
//! - peak RSS and wall time of a `pamtester` process authenticating through the module under pam_wrapper
//!   (`/usr/bin/time -v`), when pamtester, pam_wrapper and /usr/bin/time are installed.
//!
//! No figure is asserted anywhere; this only measures.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use facekey_e2e::module;
use facekey_e2e::pam::{code_name, Transaction, PAM_SUCCESS};
use facekey_e2e::world::{face, World, ENROLLED, PROBE_IMAGE};

const USER: &str = "bench-user";
const PAM_WRAPPER: &str = "/usr/lib/x86_64-linux-gnu/libpam_wrapper.so";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--one") {
        // Child: one cold call, print microseconds.
        let dir = PathBuf::from(&args[2]);
        let mut pam = Transaction::start(&dir, "sudo", USER).expect("pam_start_confdir");
        let t = pam.authenticate(0);
        assert_eq!(t.code, PAM_SUCCESS, "cold call: {}", code_name(t.code));
        println!("{}", t.elapsed.as_micros());
        return;
    }
    let runs: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(7).max(1);
    let so = module::path();
    let world = World::new();
    world.enrol_default(USER);
    let config = world.write_config("main", &World::source(&[face(ENROLLED, PROBE_IMAGE)]), "");
    world.write_module_service("sudo", &config, "");

    println!("module: {} ({:.1} MB)", so.display(), mb(file_size(so)));

    let exe = std::env::current_exe().expect("current executable");
    let cold: Vec<Duration> = (0..runs)
        .map(|_| {
            let out = Command::new(&exe)
                .arg("--one")
                .arg(world.pam_dir())
                .output()
                .expect("run the cold child");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let micros: u64 = String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .expect("microseconds");
            Duration::from_micros(micros)
        })
        .collect();
    println!(
        "cold pam_authenticate (new process, models loaded in the call), {runs} runs: {}",
        summary(&cold)
    );

    let mut pam = Transaction::start(&world.pam_dir(), "sudo", USER).expect("pam_start_confdir");
    let first = pam.authenticate(0);
    assert_eq!(first.code, PAM_SUCCESS);
    drop(pam);
    let warm: Vec<Duration> = (0..runs)
        .map(|_| {
            // A new transaction each time, as a screen locker does per unlock.
            let mut pam =
                Transaction::start(&world.pam_dir(), "sudo", USER).expect("pam_start_confdir");
            let t = pam.authenticate(0);
            assert_eq!(t.code, PAM_SUCCESS);
            t.elapsed
        })
        .collect();
    println!(
        "first call in this process: {} ms",
        first.elapsed.as_millis()
    );
    println!(
        "warm pam_authenticate (same process), {runs} runs: {}",
        summary(&warm)
    );

    let mut load_config = facekey_config::Config::default();
    load_config.models.dir = facekey_e2e::world::models_dir();
    let loads: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            let engine = facekey_core::engine::Engine::load(&load_config).expect("load the models");
            let elapsed = t.elapsed();
            drop(engine);
            elapsed
        })
        .collect();
    println!(
        "model load alone (Engine::load, {:?} embedder), {runs} runs: {}",
        load_config.models.embedder,
        summary(&loads)
    );

    pamtester_rss(&world);
}

/// Peak RSS of pamtester authenticating through the module, via /usr/bin/time -v.
fn pamtester_rss(world: &World) {
    let missing: Vec<&str> = ["/usr/bin/time", "/usr/bin/pamtester", PAM_WRAPPER]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if !missing.is_empty() {
        println!(
            "pamtester peak RSS: not measured ({} missing)",
            missing.join(", ")
        );
        return;
    }
    // pam_wrapper warns without an `other` service.
    std::fs::write(world.pam_dir().join("other"), "auth required pam_deny.so\n")
        .expect("write other");
    let mut command = Command::new("/usr/bin/time");
    command
        .arg("-v")
        .arg("pamtester")
        .args(["sudo", USER, "authenticate"])
        .env("LD_PRELOAD", PAM_WRAPPER)
        .env("PAM_WRAPPER", "1")
        .env("PAM_WRAPPER_SERVICE_DIR", world.pam_dir());
    println!(
        "command: LD_PRELOAD={PAM_WRAPPER} PAM_WRAPPER=1 PAM_WRAPPER_SERVICE_DIR={} /usr/bin/time -v pamtester sudo {USER} authenticate",
        world.pam_dir().display()
    );
    let out = command.output().expect("run /usr/bin/time pamtester");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let field = |name: &str| {
        stderr
            .lines()
            .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_owned()))
            .unwrap_or_else(|| "?".to_owned())
    };
    println!(
        "pamtester: exit {}, {}; peak RSS {} kB, wall {}",
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .replace('\n', " / "),
        field("Maximum resident set size (kbytes):"),
        field("Elapsed (wall clock) time (h:mm:ss or m:ss):")
    );
}

fn summary(samples: &[Duration]) -> String {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let median = if ms.len() % 2 == 1 {
        ms[ms.len() / 2]
    } else {
        (ms[ms.len() / 2 - 1] + ms[ms.len() / 2]) / 2.0
    };
    format!(
        "median {median:.1} ms (min {:.1}, max {:.1})",
        ms[0],
        ms[ms.len() - 1]
    )
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}
