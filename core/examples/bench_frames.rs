//! Per-frame time of the login path (detect + align + embed + compare), for scripts/bench-vs-dlib.
//!
//! Usage: cargo run --release -p facekey-core --example bench_frames -- EMBEDDER RUNS ENROL FRAME...
//!   EMBEDDER  int8 | fp32
//!   RUNS      timed runs per frame (after one untimed warm-up run of that frame)
//!   ENROL     comma-separated images whose faces are the user's enrolled samples (as `facekey add`)
//!
//! The settings are the shipped defaults (frames scaled to 320 rows for detection, score 0.9, faces
//! under 40 pixels ignored, threshold 0.5); the models are the repository's. Every frame is decoded
//! before timing starts, so the time is what a decoded camera frame costs, as on the dlib side. Each
//! frame gets its warm-up run and its timed runs back to back: the first frame of a new size plans
//! the detector for that size, which a camera pays once, not per frame.
//!
//! The loop body is `Engine::analyse` spelled out (detect, then align and embed each face) so that the
//! detection time can be reported on its own.
//!
//! Prints CSV on stdout: `embedder,frame,run,ms,cpu_ms,detect_ms,faces,best_distance` (`ms` the wall
//! time of the whole frame, `cpu_ms` the time this thread spent on a CPU meanwhile, which waiting for a
//! busy core does not count, `detect_ms` the wall time of detection; best distance to the enrolled
//! samples, empty when no face was found); the model load time goes to stderr.

use std::path::{Path, PathBuf};
use std::time::Instant;

use facekey_config::Config;
use facekey_core::align;
use facekey_core::engine::Engine;
use facekey_core::source::read_image;
use image::RgbImage;

fn rgb(path: &Path) -> RgbImage {
    read_image(path)
        .unwrap_or_else(|e| panic!("{e}"))
        .to_rgb()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `struct timespec` on 64-bit Linux.
#[repr(C)]
struct Timespec {
    tv_sec: i64,
    tv_nsec: i64,
}

extern "C" {
    /// POSIX `clock_gettime`, from the C library std already links.
    fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
}

/// Linux's `CLOCK_THREAD_CPUTIME_ID`.
const CLOCK_THREAD_CPUTIME_ID: i32 = 3;

/// Time this thread has spent on a CPU, in ns (exact: the kernel brings the running thread's count up
/// to date on each call). Inference runs on this thread alone once the models are loaded.
fn thread_cpu_ns() -> u64 {
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call, and the clock id is a
    // constant the kernel knows; the function writes nothing else.
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        eprintln!("usage: bench_frames int8|fp32 RUNS ENROL_IMAGES(comma-separated) FRAME...");
        std::process::exit(2);
    }
    let (name, kind) = match args[0].as_str() {
        "int8" => ("int8", "int8"),
        "fp32" => ("fp32", "fp32"),
        other => panic!("unknown embedder {other}"),
    };
    let runs: usize = args[1].parse().expect("RUNS must be a number");
    let enrol: Vec<PathBuf> = args[2].split(',').map(PathBuf::from).collect();
    let frames: Vec<PathBuf> = args[3..].iter().map(PathBuf::from).collect();

    let mut config = Config::default();
    config.models.dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../models").into();
    config.models.embedder = kind.to_owned();
    let t = Instant::now();
    let engine = Engine::load(&config).expect("models");
    eprintln!(
        "{name}: models loaded in {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );

    let mut samples: Vec<Vec<f32>> = Vec::new();
    for path in &enrol {
        let faces = engine.analyse(&rgb(path)).expect("analysis");
        let face = faces
            .first()
            .unwrap_or_else(|| panic!("{}: no face to enrol", path.display()));
        samples.push(face.embedding.0.clone());
    }

    let threshold =
        facekey_core::rule::threshold(&config.matching, facekey_config::DEFAULT_THRESHOLD);
    println!("embedder,frame,run,ms,cpu_ms,detect_ms,faces,best_distance");
    for path in &frames {
        let image = rgb(path);
        let label = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        for run in 0..=runs {
            let cpu = thread_cpu_ns();
            let t = Instant::now();
            let faces = engine.detector.detect(&image).expect("detection");
            let detect_ms = t.elapsed().as_secs_f64() * 1e3;
            let mut best = f32::INFINITY;
            for face in &faces {
                let Some(chip) = align::align(&image, face) else {
                    continue;
                };
                let embedding = engine
                    .embedder()
                    .expect("embedder")
                    .embed(&chip)
                    .expect("embedding");
                for sample in &samples {
                    best = best.min(embedding.distance(sample));
                }
            }
            let matched = best < threshold;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            let cpu_ms = thread_cpu_ns().saturating_sub(cpu) as f64 / 1e6;
            std::hint::black_box(matched);
            if run == 0 {
                continue; // warm-up
            }
            let best = if best.is_finite() {
                format!("{best:.4}")
            } else {
                String::new()
            };
            println!(
                "{name},{label},{run},{ms:.3},{cpu_ms:.3},{detect_ms:.3},{},{best}",
                faces.len()
            );
        }
    }
}
