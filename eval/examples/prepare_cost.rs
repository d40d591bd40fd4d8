//! Where an embedder's load goes, from the ONNX file and from tract's NNEF form of the decluttered graph (the
//! form a `facekey model prepare` cache could hold), measured side by side in one run, each step's median.
//!
//! The NNEF form is read from memory (no disk), so its figures are a lower bound for a cache file; it is
//! optimised with `optimize()` only (its graph is already decluttered: `into_optimized` would declutter it
//! again, ChangeAxes included), which is the least any cache needs. The SHA-256 of each form is what a loader
//! that notices an edited file pays on top. Both plans' outputs are compared on a zero input.
//!
//!     taskset -c 1 cargo run --release -p facekey-eval --example prepare_cost [RUNS]
use std::path::Path;
use std::time::Instant;

use facekey_core::models::{self, sha256_hex, EMBEDDER_INT8};
use tract_onnx::prelude::*;
use tract_onnx::WithOnnx;

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[derive(Default)]
struct Steps {
    hash: Vec<f64>,
    parse: Vec<f64>,
    graph: Vec<f64>,
    typed: Vec<f64>,
    declutter: Vec<f64>,
    optimise: Vec<f64>,
    runnable: Vec<f64>,
}

impl Steps {
    fn total(&self, i: usize) -> f64 {
        self.hash[i]
            + self.parse[i]
            + self.graph[i]
            + self.typed.get(i).copied().unwrap_or(0.0)
            + self.declutter.get(i).copied().unwrap_or(0.0)
            + self.optimise[i]
            + self.runnable[i]
    }

    fn print(&self, name: &str) {
        let m = |v: &Vec<f64>| {
            if v.is_empty() {
                "-".to_owned()
            } else {
                format!("{:.1}", median(v.clone()))
            }
        };
        let totals: Vec<f64> = (0..self.hash.len()).map(|i| self.total(i)).collect();
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {:.1} |",
            m(&self.hash),
            m(&self.parse),
            m(&self.graph),
            m(&self.typed),
            m(&self.declutter),
            m(&self.optimise),
            m(&self.runnable),
            median(totals)
        );
    }
}

fn main() {
    let runs: usize = std::env::args().nth(1).map_or(9, |s| s.parse().unwrap());
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models")
        .join(EMBEDDER_INT8.file_name);
    let bytes = std::fs::read(&path).unwrap();
    let shape = [1usize, 3, 150, 150];
    // Build the prepared form once: the graph after folding and decluttering, as NNEF.
    let proto = models::parse_proto(&bytes, &path).unwrap();
    let mut decluttered = tract_onnx::onnx()
        .model_for_proto_model(&proto)
        .unwrap()
        .with_input_fact(0, f32::fact(shape).into())
        .unwrap()
        .into_typed()
        .unwrap();
    models::declutter().optimize(&mut decluttered).unwrap();
    let nnef = tract_nnef::nnef().with_onnx();
    let mut tar = Vec::new();
    nnef.write_to_tar(&decluttered, &mut tar).unwrap();
    println!(
        "int8 ONNX file {} bytes; NNEF tar of the decluttered graph {} bytes",
        bytes.len(),
        tar.len()
    );
    let input = Tensor::zero::<f32>(&shape).unwrap();
    let (mut onnx, mut cache) = (Steps::default(), Steps::default());
    let mut same = true;
    for _ in 0..runs {
        // The ONNX file, as the loader reads it today (models::build_plan, step by step).
        let t = Instant::now();
        let _ = sha256_hex(&bytes);
        onnx.hash.push(ms(t));
        let t = Instant::now();
        let proto = models::parse_proto(&bytes, &path).unwrap();
        onnx.parse.push(ms(t));
        let t = Instant::now();
        let inference = tract_onnx::onnx().model_for_proto_model(&proto).unwrap();
        onnx.graph.push(ms(t));
        drop(proto);
        let t = Instant::now();
        let mut typed = inference
            .with_input_fact(0, f32::fact(shape).into())
            .unwrap()
            .into_typed()
            .unwrap();
        onnx.typed.push(ms(t));
        let t = Instant::now();
        models::declutter().optimize(&mut typed).unwrap();
        onnx.declutter.push(ms(t));
        let t = Instant::now();
        typed.optimize().unwrap();
        onnx.optimise.push(ms(t));
        let t = Instant::now();
        let plan_a = typed.into_runnable().unwrap();
        onnx.runnable.push(ms(t));

        // The NNEF form: read (tar and tensors), translate to tract's graph, optimise, runnable.
        let t = Instant::now();
        let _ = sha256_hex(&tar);
        cache.hash.push(ms(t));
        let t = Instant::now();
        let proto = nnef.proto_model_for_read(&mut &tar[..]).unwrap();
        cache.parse.push(ms(t));
        let t = Instant::now();
        let mut model = nnef.model_for_proto_model(&proto).unwrap();
        cache.graph.push(ms(t));
        drop(proto);
        let t = Instant::now();
        model.optimize().unwrap();
        cache.optimise.push(ms(t));
        let t = Instant::now();
        let plan_b = model.into_runnable().unwrap();
        cache.runnable.push(ms(t));

        let oa = plan_a.run(tvec!(input.clone().into())).unwrap();
        let ob = plan_b.run(tvec!(input.clone().into())).unwrap();
        same &= oa[0].close_enough(&ob[0], false).is_ok();
    }
    println!("medians of {runs} runs, ms; total = the median of each run's sum");
    println!("| form | SHA-256 | read/parse (+ fold) | to tract graph | typed | declutter | optimise | runnable | total |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    onnx.print("int8 ONNX (today)");
    cache.print("NNEF of the decluttered graph");
    println!("outputs agree: {same}");
}
