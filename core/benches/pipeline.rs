//! Per-stage benchmarks of the face pipeline (issue 2, "Benchmarks"), on one thread.
//!
//! ```text
//! taskset -c 1 cargo bench -p facekey-core --bench pipeline            # wall time
//! FACEKEY_BENCH_CPU_TIME=1 taskset -c 1 cargo bench -p facekey-core --bench pipeline
//!                                                                      # process CPU time
//! core/benches/medians                                                 # the medians, as a table
//! ```
//!
//! tract runs on one thread; `taskset` also keeps `Engine::load`'s second loader thread on the same
//! core. The machine is shared, so besides wall time the bench can measure the CPU time of the whole
//! process (`CLOCK_PROCESS_CPUTIME_ID`, every thread included), which other work on the core does
//! not inflate; its results go to groups whose names end in ` (cpu)`. There are no timing assertions
//! anywhere: the only checks are that the fixture holds exactly one face and that the pipeline really
//! matches it, so the numbers measure the path a login takes.
//!
//! The frame: a 640x480 JPEG (quality 90) built in memory from `dogs.jpg` (textured, and known to hold
//! no human face) cropped to 640x480, with a johns chip scaled to 240x240 pasted in the middle: a face
//! about the size a laptop camera sees at arm's length. Five other chips of the same person are the
//! enrolled samples.
//!
//! `FACEKEY_BENCH_WRITE_FRAME=PATH cargo bench -p facekey-core --bench pipeline` writes that frame
//! to PATH and exits without benchmarking: scripts/bench-cold authenticates on the very same frame.

use std::hint::black_box;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::measurement::{Measurement, WallTime};
use criterion::{BatchSize, Criterion};
use facekey_config::Config;
use facekey_core::align;
use facekey_core::decision::{decide, Outcome};
use facekey_core::detect::{Detector, Face, Letterbox};
use facekey_core::embed::Embedder;
use facekey_core::engine::Engine;
use facekey_core::frame::{decode_image, Frame, FrameSource, SourceError};
use facekey_core::models;
use facekey_core::source::read_image;
use facekey_core::store::{Enrolment, UserName};
use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;
use image::RgbImage;
use tract_onnx::prelude::*;

const FRAME_W: u32 = 640;
const FRAME_H: u32 = 480;
/// Side of the face chip once pasted into the frame.
const FACE_SIDE: u32 = 240;
const JPEG_QUALITY: u8 = 90;
/// The person in the frame: the first `ENROLLED` chips are enrolled, chip `PROBE` is in the frame.
const PERSON: &str = "John_Salley";
const ENROLLED: usize = 5;
const PROBE: usize = 10;
/// The embedder's input shape.
const CHIP_SHAPE: [usize; 4] = [1, 3, 150, 150];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn config(kind: &str, max_height: u32) -> Config {
    let mut config = Config::default();
    config.models.dir = repo().join("models");
    config.models.embedder = kind.to_owned();
    config.detection.max_height = max_height;
    config
}

const KINDS: [(&str, &str); 2] = [("int8", "int8"), ("fp32", "fp32")];

fn chips() -> Vec<PathBuf> {
    let dir = repo().join("tests/data/faces/johns").join(PERSON);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("johns chips")
        .map(|e| e.expect("dir entry").path())
        .collect();
    files.sort();
    assert!(files.len() > PROBE, "{} holds too few chips", dir.display());
    files
}

fn rgb(path: &Path) -> RgbImage {
    read_image(path)
        .unwrap_or_else(|e| panic!("{e}"))
        .to_rgb()
        .expect("decoded image")
}

/// The 640x480 test frame, JPEG-encoded.
fn frame_jpeg() -> Vec<u8> {
    let background = rgb(&repo().join("tests/data/faces/photos/dogs.jpg"));
    let (bw, bh) = background.dimensions();
    let fill_h = (FRAME_W as u64 * bh as u64 / bw as u64) as u32;
    assert!(fill_h >= FRAME_H, "dogs.jpg is expected to be about square");
    let mut canvas = image::imageops::resize(&background, FRAME_W, fill_h, FilterType::Triangle);
    let mut canvas = image::imageops::crop(&mut canvas, 0, 0, FRAME_W, FRAME_H).to_image();
    let chip = rgb(&chips()[PROBE]);
    let face = image::imageops::resize(&chip, FACE_SIDE, FACE_SIDE, FilterType::Triangle);
    image::imageops::overlay(
        &mut canvas,
        &face,
        ((FRAME_W - FACE_SIDE) / 2) as i64,
        ((FRAME_H - FACE_SIDE) / 2) as i64,
    );
    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(Cursor::new(&mut jpeg), JPEG_QUALITY)
        .encode_image(&canvas)
        .expect("JPEG encoding");
    jpeg
}

/// JPEG to RGB, as a replay source and the decision loop do it.
fn decode_frame(jpeg: &[u8]) -> RgbImage {
    decode_image(jpeg, "bench frame")
        .expect("decode")
        .to_rgb()
        .expect("rgb")
}

/// The one face in the frame (checked: a bench of the wrong path would be worse than none).
fn the_face(detector: &Detector, image: &RgbImage) -> Face {
    let faces = detector.detect(image).expect("detection");
    assert_eq!(
        faces.len(),
        1,
        "the bench frame must hold exactly one face at max_height {}",
        detector.settings.max_height
    );
    faces.into_iter().next().expect("one face")
}

/// The user's enrolment: the first `ENROLLED` chips of the person, analysed as `facekey add` does.
fn enrolment(engine: &Engine) -> Enrolment {
    let user = UserName::new("bench").expect("user name");
    let mut enrolment = Enrolment::new(&user, engine.embedder_id().clone());
    for path in &chips()[..ENROLLED] {
        let faces = engine.analyse(&rgb(path)).expect("analyse");
        assert_eq!(faces.len(), 1, "{}: one face expected", path.display());
        enrolment.add_sample("bench", faces[0].embedding.0.clone());
    }
    enrolment
}

/// A camera stand-in: every call hands over the JPEG frame, decoded (so decoding is in the loop).
struct JpegSource<'a> {
    jpeg: &'a [u8],
}

impl FrameSource for JpegSource<'_> {
    fn next_frame(&mut self, _deadline: Instant) -> Result<Option<Frame>, SourceError> {
        decode_image(self.jpeg, "bench frame")
            .map(Some)
            .map_err(|reason| SourceError::BadImage {
                path: "bench frame".into(),
                reason,
            })
    }

    fn describe(&self) -> String {
        "in-memory JPEG".into()
    }
}

/// Benchmark group names: the CPU-time run keeps its results apart from the wall-time run's.
struct Names {
    suffix: &'static str,
}

impl Names {
    fn group(&self, name: &str) -> String {
        format!("{name}{}", self.suffix)
    }
}

fn decode_resize<M: Measurement>(c: &mut Criterion<M>, n: &Names) {
    let jpeg = frame_jpeg();
    let image = decode_frame(&jpeg);
    // The downscale the detector makes at max_height 320 (same filter as detect.rs).
    let lb = Letterbox::for_frame(FRAME_W, FRAME_H, 320);
    let mut g = c.benchmark_group(n.group("decode_resize"));
    g.bench_function("jpeg_decode_640x480", |b| {
        b.iter(|| decode_frame(black_box(&jpeg)))
    });
    g.bench_function("resize_640x480_to_427x320", |b| {
        b.iter(|| {
            facekey_core::detect::downscale(black_box(&image), lb.scaled_w, lb.scaled_h)
                .expect("downscale")
        })
    });
    g.bench_function("decode_and_resize", |b| {
        b.iter(|| {
            let image = decode_frame(black_box(&jpeg));
            facekey_core::detect::downscale(&image, lb.scaled_w, lb.scaled_h).expect("downscale")
        })
    });
    g.finish();
}

fn detect<M: Measurement>(c: &mut Criterion<M>, n: &Names) {
    let image = decode_frame(&frame_jpeg());
    let mut g = c.benchmark_group(n.group("detect"));
    for max_height in [320u32, 480] {
        let config = config("int8", max_height);
        let detector = Detector::load(&config).expect("detector");
        // The first call plans for the canvas size; this also checks the fixture.
        the_face(&detector, &image);
        g.bench_function(format!("max_height_{max_height}"), |b| {
            b.iter(|| detector.detect(black_box(&image)).expect("detection"))
        });
    }
    g.finish();

    // What the first frame of a new size pays on top: planning the detector for that canvas.
    let mut g = c.benchmark_group(n.group("detect_first_frame_plan"));
    g.sample_size(10);
    for max_height in [320u32, 480] {
        let config = config("int8", max_height);
        let lb = Letterbox::for_frame(FRAME_W, FRAME_H, max_height);
        g.bench_function(
            format!(
                "max_height_{max_height}_canvas_{}x{}",
                lb.canvas_w, lb.canvas_h
            ),
            |b| {
                b.iter_batched(
                    || Detector::load(&config).expect("detector"),
                    |detector| {
                        detector.prepare(lb.canvas_w, lb.canvas_h).expect("plan");
                        detector
                    },
                    BatchSize::PerIteration,
                )
            },
        );
    }
    g.finish();
}

/// What the second look costs a frame that earns it: the bench frame with the score threshold raised to 0.99,
/// so its face (0.92-0.95) is only a candidate and every look runs (twice the rows, then the contrast-stretched
/// frame when its range is under 200 levels), against the first look alone on the same frame.
fn detect_second_look<M: Measurement>(c: &mut Criterion<M>, n: &Names) {
    let image = decode_frame(&frame_jpeg());
    let mut g = c.benchmark_group(n.group("detect_second_look"));
    for second_look in [false, true] {
        let mut config = config("int8", 320);
        config.detection.score_threshold = 0.99;
        config.detection.second_look = second_look;
        let detector = Detector::load(&config).expect("detector");
        // Plans every canvas the looks use, and checks that no face passes 0.99 (else the bench measures nothing).
        assert!(detector.detect(&image).expect("detection").is_empty());
        let name = if second_look {
            "every_look"
        } else {
            "first_look_only"
        };
        g.bench_function(name, |b| {
            b.iter(|| detector.detect(black_box(&image)).expect("detection"))
        });
    }
    g.finish();
}

fn align_bench<M: Measurement>(c: &mut Criterion<M>, n: &Names) {
    let image = decode_frame(&frame_jpeg());
    let detector = Detector::load(&config("int8", 320)).expect("detector");
    let face = the_face(&detector, &image);
    let mut g = c.benchmark_group(n.group("align"));
    g.bench_function("chip_150x150", |b| {
        b.iter(|| align::align(black_box(&image), black_box(&face)).expect("chip"))
    });
    g.finish();
}

fn embed<M: Measurement>(c: &mut Criterion<M>, n: &Names) {
    let image = decode_frame(&frame_jpeg());
    let detector = Detector::load(&config("int8", 320)).expect("detector");
    let chip = align::align(&image, &the_face(&detector, &image)).expect("chip");
    let mut g = c.benchmark_group(n.group("embed"));
    for (name, kind) in KINDS {
        let embedder = Embedder::load(&config(kind, 320)).expect("embedder");
        embedder.embed(&chip).expect("embedding");
        g.bench_function(name, |b| {
            b.iter(|| embedder.embed(black_box(&chip)).expect("embedding"))
        });
    }
    g.finish();
}

fn pipeline<M: Measurement>(c: &mut Criterion<M>, n: &Names) {
    let jpeg = frame_jpeg();
    let mut g = c.benchmark_group(n.group("pipeline_per_frame"));
    for (name, kind) in KINDS {
        let config = config(kind, 320);
        let engine = Engine::load(&config).expect("engine");
        let enrolment = enrolment(&engine);
        let far = || Instant::now() + Duration::from_secs(60);
        // Plans the detector for this frame size, and checks the frame matches the enrolment.
        let mut source = JpegSource { jpeg: &jpeg };
        let outcome = decide(
            &engine,
            &enrolment,
            &config,
            &mut source,
            Instant::now(),
            far(),
            &mut |_| {},
        );
        assert!(
            matches!(outcome, Outcome::Matched { .. }),
            "the bench frame must match its enrolment: {outcome}"
        );
        // JPEG decode + RGB + detect + align + embed + distance to the 5 enrolled samples.
        g.bench_function(format!("decode_detect_align_embed_compare_{name}"), |b| {
            b.iter(|| {
                let mut source = JpegSource {
                    jpeg: black_box(&jpeg),
                };
                decide(
                    &engine,
                    &enrolment,
                    &config,
                    &mut source,
                    Instant::now(),
                    far(),
                    &mut |_| {},
                )
            })
        });
    }
    g.finish();
}

fn model_load<M: Measurement>(c: &mut Criterion<M>, n: &Names) {
    let mut g = c.benchmark_group(n.group("model_load"));
    g.sample_size(10);
    for (name, kind) in KINDS {
        let config = config(kind, 320);
        // What a cold `facekey auth` pays before its first frame (the first detector plan comes on top).
        g.bench_function(format!("engine_{name}"), |b| {
            b.iter_with_large_drop(|| Engine::load(black_box(&config)).expect("engine"))
        });
        g.bench_function(format!("embedder_{name}"), |b| {
            b.iter_with_large_drop(|| Embedder::load(black_box(&config)).expect("embedder"))
        });
        // The embedder, split: read + trust check + SHA-256; protobuf parse (+ int8 fold); then
        // tract's analysis, typing and optimisation for the 150x150 input.
        let location = models::ActiveModels::resolve(&config)
            .expect("models")
            .embedder
            .location();
        g.bench_function(format!("embedder_{name}_1_read_verify"), |b| {
            b.iter_with_large_drop(|| models::read_verified(black_box(&location)).expect("read"))
        });
        let bytes = models::read_verified(&location).expect("read");
        g.bench_function(format!("embedder_{name}_2_parse_proto"), |b| {
            b.iter_with_large_drop(|| {
                models::parse_proto(black_box(&bytes), &location.path).expect("proto")
            })
        });
        let proto = models::parse_proto(&bytes, &location.path).expect("proto");
        g.bench_function(format!("embedder_{name}_3_plan"), |b| {
            b.iter_with_large_drop(|| {
                models::plan_proto(black_box(&proto), &location.path, &CHIP_SHAPE).expect("plan")
            })
        });
    }
    let config = config("int8", 320);
    g.bench_function("detector", |b| {
        b.iter_with_large_drop(|| Detector::load(black_box(&config)).expect("detector"))
    });
    g.finish();

    // The detector's per-size plan (`Detector::prepare` -> `models::plan_proto`), split into tract's
    // steps, for the 448x320 canvas of a 640x480 frame at max_height 320.
    let detector = Detector::load(&config).expect("detector");
    let proto = detector.graph().clone();
    let shape = [1usize, 3, 320, 448];
    let onnx = tract_onnx::onnx();
    let inference = onnx.model_for_proto_model(&proto).expect("model");
    let typed = inference
        .clone()
        .with_input_fact(0, f32::fact(shape).into())
        .and_then(|m| m.into_typed())
        .expect("typed");
    let mut decluttered = typed.clone();
    models::declutter()
        .optimize(&mut decluttered)
        .expect("decluttered");
    let mut g = c.benchmark_group(n.group("detector_plan_split"));
    g.sample_size(10);
    g.bench_function("1_onnx_to_inference_model", |b| {
        b.iter_with_large_drop(|| {
            onnx.model_for_proto_model(black_box(&proto))
                .expect("model")
        })
    });
    g.bench_function("2_input_fact_into_typed", |b| {
        b.iter_batched(
            || inference.clone(),
            |m| {
                m.with_input_fact(0, f32::fact(shape).into())
                    .and_then(|m| m.into_typed())
                    .expect("typed")
            },
            BatchSize::PerIteration,
        )
    });
    // facekey's declutter (tract's passes less ChangeAxes), and tract's whole declutter beside it.
    g.bench_function("3_declutter", |b| {
        b.iter_batched(
            || typed.clone(),
            |mut m| {
                models::declutter().optimize(&mut m).expect("decluttered");
                m
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("3_declutter_all_tract_passes", |b| {
        b.iter_batched(
            || typed.clone(),
            |m| m.into_decluttered().expect("decluttered"),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("4_codegen_and_runnable", |b| {
        b.iter_batched(
            || decluttered.clone(),
            |mut m| {
                m.optimize().expect("codegen");
                m.into_runnable().expect("plan")
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn all<M: Measurement>(c: &mut Criterion<M>, n: &Names) {
    decode_resize(c, n);
    detect(c, n);
    detect_second_look(c, n);
    align_bench(c, n);
    embed(c, n);
    pipeline(c, n);
    model_load(c, n);
}

/// Few samples, short windows: the whole run stays within a few minutes on a shared machine.
fn criterion<M: Measurement>(c: Criterion<M>) -> Criterion<M> {
    c.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args()
}

fn main() {
    if let Some(path) = std::env::var_os("FACEKEY_BENCH_WRITE_FRAME") {
        std::fs::write(&path, frame_jpeg()).expect("write the bench frame");
        eprintln!(
            "wrote the 640x480 bench frame to {}",
            Path::new(&path).display()
        );
        return;
    }
    if std::env::var_os("FACEKEY_BENCH_CPU_TIME").is_some() {
        let mut c = criterion(Criterion::default().with_measurement(cpu_time::ProcessCpuTime));
        all(&mut c, &Names { suffix: " (cpu)" });
        c.final_summary();
    } else {
        let mut c = criterion(Criterion::<WallTime>::default());
        all(&mut c, &Names { suffix: "" });
        c.final_summary();
    }
}

/// CPU time of the whole process (every thread, including finished ones), as a criterion measurement.
mod cpu_time {
    use std::time::Duration;

    use criterion::measurement::{Measurement, ValueFormatter};
    use criterion::Throughput;

    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }

    const CLOCK_PROCESS_CPUTIME_ID: i32 = 2;

    unsafe extern "C" {
        fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
    }

    fn now() -> Duration {
        let mut ts = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec (two 64-bit fields on the 64-bit Linux targets
        // facekey builds for) that lives across the call; clock_gettime only writes it.
        let rc = unsafe { clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
        assert_eq!(rc, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID) failed");
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }

    pub struct ProcessCpuTime;

    impl Measurement for ProcessCpuTime {
        type Intermediate = Duration;
        type Value = Duration;

        fn start(&self) -> Duration {
            now()
        }
        fn end(&self, start: Duration) -> Duration {
            now().saturating_sub(start)
        }
        fn add(&self, a: &Duration, b: &Duration) -> Duration {
            *a + *b
        }
        fn zero(&self) -> Duration {
            Duration::ZERO
        }
        fn to_f64(&self, value: &Duration) -> f64 {
            value.as_nanos() as f64
        }
        fn formatter(&self) -> &dyn ValueFormatter {
            &CpuFormatter
        }
    }

    /// Nanoseconds, shown in the largest unit that keeps the value above one (as for wall time).
    struct CpuFormatter;

    impl CpuFormatter {
        fn unit(typical_ns: f64) -> (f64, &'static str) {
            if typical_ns < 1e3 {
                (1.0, "ns")
            } else if typical_ns < 1e6 {
                (1e-3, "µs")
            } else if typical_ns < 1e9 {
                (1e-6, "ms")
            } else {
                (1e-9, "s")
            }
        }
    }

    impl ValueFormatter for CpuFormatter {
        fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
            let (factor, unit) = Self::unit(typical);
            values.iter_mut().for_each(|v| *v *= factor);
            unit
        }
        fn scale_throughputs(
            &self,
            _typical: f64,
            throughput: &Throughput,
            values: &mut [f64],
        ) -> &'static str {
            // Per-second rates of CPU time; the benches here declare no throughput.
            let per = match throughput {
                Throughput::Bytes(n)
                | Throughput::BytesDecimal(n)
                | Throughput::Elements(n)
                | Throughput::Bits(n) => *n as f64,
            };
            values.iter_mut().for_each(|v| *v = per * 1e9 / *v);
            "/s"
        }
        fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
            "ns"
        }
    }
}
