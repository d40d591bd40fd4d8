//! Embeddings as JSON lines, for scripts/eval (accuracy and numeric agreement with dlib).
//!
//! Usage: cargo run --release -p facekey-core --example embed_chips -- EMBEDDER MODE FILE...
//!   EMBEDDER  int8 | fp32
//!   MODE      chip:   each file is an aligned 150x150 chip (the johns chips are dlib's own), embedded
//!                     as it is: no detection, no alignment; compares the networks alone
//!             detect: each file is an image; every face the detector finds (shipped defaults) is
//!                     aligned and embedded: the login path
//!             detect-full: the same, scaling only images over 4096 rows (not to 320 rows): for large
//!                     photos whose faces would fall under the 40-pixel minimum once scaled
//!
//! One line per file: `{"file":"...","faces":[{"bbox":[l,t,w,h],"score":s,"embedding":[128 numbers]}]}`
//! (chip mode: one face whose box is the whole chip and whose score is 1).

use std::fmt::Write as _;
use std::path::Path;

use facekey_config::Config;
use facekey_core::engine::Engine;
use facekey_core::source::read_image;

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn face_json(bbox: [f32; 4], score: f32, embedding: &[f32]) -> String {
    let nums = |v: &[f32]| {
        v.iter()
            .map(|x| format!("{x}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    format!(
        "{{\"bbox\":[{}],\"score\":{score},\"embedding\":[{}]}}",
        nums(&bbox),
        nums(embedding)
    )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 || !matches!(args[1].as_str(), "chip" | "detect" | "detect-full") {
        eprintln!("usage: embed_chips int8|fp32 chip|detect|detect-full FILE...");
        std::process::exit(2);
    }
    let mut config = Config::default();
    config.models.dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../models").into();
    config.models.embedder = match args[0].as_str() {
        "int8" => "int8".into(),
        "fp32" => "fp32".into(),
        other => panic!("unknown embedder {other}"),
    };
    if args[1] == "detect-full" {
        config.detection.max_height = 4096; // the largest the configuration accepts
    }
    let engine = Engine::load(&config).expect("models");
    for file in &args[2..] {
        let image = read_image(Path::new(file))
            .unwrap_or_else(|e| panic!("{e}"))
            .to_rgb()
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let faces: Vec<String> = if args[1] == "chip" {
            let embedding = engine
                .embedder()
                .expect("embedder")
                .embed(&image)
                .expect("embedding");
            let (w, h) = image.dimensions();
            vec![face_json([0.0, 0.0, w as f32, h as f32], 1.0, &embedding.0)]
        } else {
            engine
                .analyse(&image)
                .expect("analysis")
                .iter()
                .map(|f| face_json(f.face.bbox, f.face.score, &f.embedding.0))
                .collect()
        };
        println!(
            "{{\"file\":{},\"faces\":[{}]}}",
            json_string(file),
            faces.join(",")
        );
    }
}
