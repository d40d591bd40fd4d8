//! Print the genuine and impostor distance statistics of the johns set (used to calibrate the threshold).
//! Usage: cargo run --release -p facekey-core --example distances -- [int8|fp32] [DATA_DIR]
use facekey_config::Config;
use facekey_core::engine::Engine;
use facekey_core::source::read_image;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut config = Config::default();
    config.models.dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../models").into();
    if args.get(1).map(String::as_str) == Some("fp32") {
        config.models.embedder = "fp32".into();
    }
    let data = args.get(2).cloned().unwrap_or_else(|| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/faces/johns").into()
    });
    let engine = Engine::load(&config).expect("models");
    let mut people: Vec<(String, Vec<Vec<f32>>)> = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(&data)
        .expect("data")
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    for dir in dirs {
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        let mut embs = Vec::new();
        for f in files {
            let img = read_image(&f).unwrap().to_rgb().unwrap();
            let faces = engine.analyse(&img).unwrap();
            if faces.len() != 1 {
                println!("{}: {} faces", f.display(), faces.len());
            }
            if let Some(face) = faces.first() {
                embs.push(face.embedding.0.clone());
            }
        }
        people.push((dir.file_name().unwrap().to_string_lossy().into(), embs));
    }
    let d = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y) * (x - y))
            .sum::<f32>()
            .sqrt()
    };
    let (mut gen, mut imp) = (Vec::new(), Vec::new());
    for (i, (_, a)) in people.iter().enumerate() {
        for (j, (_, b)) in people.iter().enumerate() {
            for (x, ea) in a.iter().enumerate() {
                for (y, eb) in b.iter().enumerate() {
                    if i == j && x < y {
                        gen.push(d(ea, eb));
                    }
                    if i < j {
                        imp.push(d(ea, eb));
                    }
                }
            }
        }
    }
    gen.sort_by(f32::total_cmp);
    imp.sort_by(f32::total_cmp);
    println!(
        "genuine pairs {} max {:.3} median {:.3}; impostor pairs {} min {:.3} median {:.3}",
        gen.len(),
        gen[gen.len() - 1],
        gen[gen.len() / 2],
        imp.len(),
        imp[0],
        imp[imp.len() / 2]
    );
}
