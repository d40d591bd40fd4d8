//! Where an embedder's load goes, from the ONNX file and from tract's NNEF form of the decluttered graph
//! (a development measurement for `facekey model prepare`).
//!
//!     taskset -c 1 cargo run --release -p facekey-eval --example prepare_cost [RUNS]
use std::path::Path;
use std::time::Instant;

use facekey_core::models::{self, EMBEDDER_INT8};
use tract_onnx::prelude::*;
use tract_onnx::WithOnnx;

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let runs: usize = std::env::args().nth(1).map_or(9, |s| s.parse().unwrap());
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models")
        .join(EMBEDDER_INT8.file_name);
    let bytes = std::fs::read(&path).unwrap();
    let shape = [1usize, 3, 150, 150];
    // Build the prepared form once.
    let proto = models::parse_proto(&bytes, &path).unwrap();
    let typed = tract_onnx::onnx()
        .model_for_proto_model(&proto)
        .unwrap()
        .with_input_fact(0, f32::fact(shape).into())
        .unwrap()
        .into_typed()
        .unwrap();
    let mut decl = typed.clone();
    models::declutter().optimize(&mut decl).unwrap();
    let nnef = tract_nnef::nnef().with_onnx();
    let mut tar = Vec::new();
    nnef.write_to_tar(&decl, &mut tar).unwrap();
    eprintln!("nnef tar: {} bytes", tar.len());
    let (mut a_parse, mut a_plan, mut b_read, mut b_opt) = (vec![], vec![], vec![], vec![]);
    let input = Tensor::zero::<f32>(&shape).unwrap();
    let mut same = true;
    for _ in 0..runs {
        let t = Instant::now();
        let proto = models::parse_proto(&bytes, &path).unwrap();
        a_parse.push(ms(t));
        let t = Instant::now();
        let plan_a = models::plan_proto(&proto, &path, &shape).unwrap();
        a_plan.push(ms(t));
        let t = Instant::now();
        let model = nnef.model_for_read(&mut &tar[..]).unwrap();
        b_read.push(ms(t));
        let t = Instant::now();
        let plan_b = model.into_optimized().unwrap().into_runnable().unwrap();
        b_opt.push(ms(t));
        let oa = plan_a.run(tvec!(input.clone().into())).unwrap();
        let ob = plan_b.run(tvec!(input.clone().into())).unwrap();
        same &= oa[0].close_enough(&ob[0], false).is_ok();
    }
    let (mut c_decl, mut c_codegen, mut c_run, mut c_typed) = (vec![], vec![], vec![], vec![]);
    let inference = tract_onnx::onnx().model_for_proto_model(&proto).unwrap();
    for _ in 0..runs {
        let t = Instant::now();
        let typed = inference
            .clone()
            .with_input_fact(0, f32::fact(shape).into())
            .unwrap()
            .into_typed()
            .unwrap();
        c_typed.push(ms(t));
        let mut m = typed;
        let t = Instant::now();
        models::declutter().optimize(&mut m).unwrap();
        c_decl.push(ms(t));
        let t = Instant::now();
        m.optimize().unwrap();
        c_codegen.push(ms(t));
        let t = Instant::now();
        let _ = m.into_runnable().unwrap();
        c_run.push(ms(t));
    }
    println!(
        "plan split: typed {:.1} ms, declutter {:.1} ms, optimize {:.1} ms, runnable {:.1} ms",
        median(c_typed),
        median(c_decl),
        median(c_codegen),
        median(c_run)
    );
    println!(
        "onnx: parse+fold {:.1} ms, plan {:.1} ms; nnef: read {:.1} ms, optimise+runnable {:.1} ms; outputs agree: {same}",
        median(a_parse),
        median(a_plan),
        median(b_read),
        median(b_opt)
    );
}
