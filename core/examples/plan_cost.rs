//! What planning a model costs facekey's way (`models::plan_proto`: tract's declutter less ChangeAxes,
//! then codegen) against tract's own `into_optimized`, and what each plan then costs per run.
//!
//! Usage: taskset -c 1 cargo run --release -p facekey-core --example plan_cost [-- REPS]
//!
//! For the detector (448x320 canvas, a 640x480 camera's) and the int8 embedder (150x150 chip): the
//! median wall time of REPS plannings each way (default 15, taking turns), then the median of 100 runs
//! of each plan on a real image (the two plans taking turns, so load from elsewhere falls on both
//! alike), and whether the outputs are bit-identical. Pin it to one core: planning is single-threaded,
//! and a second core would only add noise.

use std::path::{Path, PathBuf};
use std::time::Instant;

use facekey_config::Config;
use facekey_core::detect::Detector;
use facekey_core::models::{self, Plan, EMBEDDER_INT8};
use facekey_core::source::read_image;
use tract_onnx::pb::ModelProto;
use tract_onnx::prelude::*;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// tract's full optimisation, as `into_optimized` does it.
fn tracts_plan(proto: &ModelProto, shape: &[usize]) -> Plan {
    tract_onnx::onnx()
        .model_for_proto_model(proto)
        .and_then(|m| m.with_input_fact(0, f32::fact(shape).into()))
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .expect("tract plans the model")
}

/// An image as a 1x3xHxW tensor of 0-255 values, resized to `w` x `h`.
fn input(path: &Path, w: u32, h: u32) -> Tensor {
    let image = read_image(path).expect("image").to_rgb().expect("RGB");
    let image = image::imageops::resize(&image, w, h, image::imageops::FilterType::Triangle);
    tract_ndarray::Array4::from_shape_fn((1, 3, h as usize, w as usize), |(_, c, y, x)| {
        f32::from(image.get_pixel(x as u32, y as u32).0[c])
    })
    .into()
}

fn outputs(plan: &Plan, input: &Tensor) -> Vec<Vec<u32>> {
    plan.run(tvec!(input.clone().into()))
        .expect("the plan runs")
        .iter()
        .map(|o| {
            let view = o.to_plain_array_view::<f32>().expect("f32 output");
            view.iter().map(|v| v.to_bits()).collect()
        })
        .collect()
}

fn compare(name: &str, proto: &ModelProto, shape: &[usize], input: &Tensor, reps: usize) {
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let (mut our_plan, mut their_plan) = (None, None);
    for _ in 0..reps {
        let t = Instant::now();
        our_plan = Some(models::plan_proto(proto, Path::new(name), shape).expect("plans"));
        ours.push(ms(t));
        let t = Instant::now();
        their_plan = Some(tracts_plan(proto, shape));
        theirs.push(ms(t));
    }
    let (our_plan, their_plan) = (our_plan.unwrap(), their_plan.unwrap());
    let (mut our_runs, mut their_runs) = (Vec::new(), Vec::new());
    for _ in 0..100 {
        let t = Instant::now();
        our_plan
            .run(tvec!(input.clone().into()))
            .expect("the plan runs");
        our_runs.push(ms(t));
        let t = Instant::now();
        their_plan
            .run(tvec!(input.clone().into()))
            .expect("the plan runs");
        their_runs.push(ms(t));
    }
    let same = outputs(&our_plan, input) == outputs(&their_plan, input);
    println!(
        "{name:<22} plan {:6.1} ms (tract into_optimized {:6.1})   run {:6.2} ms (tract's plan {:6.2})   outputs {}",
        median(ours),
        median(theirs),
        median(our_runs),
        median(their_runs),
        if same { "bit-identical" } else { "DIFFER" }
    );
}

fn main() {
    let reps: usize = std::env::args()
        .nth(1)
        .map_or(15, |a| a.parse().expect("REPS is a number"));
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let mut config = Config::default();
    config.models.dir = root.join("models");

    let detector = Detector::load(&config).expect("detector");
    let photo = root.join("tests/data/faces/photos/2007_007763.jpg");
    compare(
        "detector 448x320",
        detector.graph(),
        &[1, 3, 320, 448],
        &input(&photo, 448, 320),
        reps,
    );

    let path = root.join("models").join(EMBEDDER_INT8.file_name);
    let proto =
        models::parse_proto(&std::fs::read(&path).expect("model file"), &path).expect("embedder");
    let chip = root.join("tests/data/faces/johns/John_Savage");
    let chip = std::fs::read_dir(chip)
        .expect("chips")
        .map(|e| e.expect("entry").path())
        .min()
        .expect("a chip");
    compare(
        "embedder int8 150x150",
        &proto,
        &[1, 3, 150, 150],
        &input(&chip, 150, 150),
        reps,
    );
}
