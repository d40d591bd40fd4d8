//! Model files: pinned hashes, tampering, explicit hashes, permissions, and the int8 fold.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use facekey_config::Config;
use facekey_core::embed::Embedder;
use facekey_core::engine::Engine;
use facekey_core::models::{self, ModelError, DETECTOR, EMBEDDER_FP32, EMBEDDER_INT8};
use facekey_core::source::read_image;

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// A private copy of the shipped models the test may alter.
fn copy_models() -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().unwrap();
    for m in [DETECTOR, EMBEDDER_FP32, EMBEDDER_INT8] {
        std::fs::copy(shipped().join(m.file_name), dir.path().join(m.file_name)).unwrap();
        std::fs::set_permissions(
            dir.path().join(m.file_name),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
    }
    let mut config = Config::default();
    config.models.dir = dir.path().to_path_buf();
    (dir, config)
}

#[test]
fn shipped_models_match_their_pinned_hashes() {
    let mut config = Config::default();
    config.models.dir = shipped();
    for kind in ["int8", "fp32"] {
        config.models.embedder = kind.to_owned();
        models::read_verified(
            &models::ActiveModels::resolve(&config)
                .unwrap()
                .embedder
                .location(),
        )
        .unwrap();
    }
    models::read_verified(
        &models::ActiveModels::resolve(&config)
            .unwrap()
            .detector
            .location(),
    )
    .unwrap();
}

#[test]
fn tampered_model_is_refused_naming_the_file() {
    let (dir, config) = copy_models();
    let path = dir.path().join(EMBEDDER_INT8.file_name);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    match Embedder::load(&config) {
        Err(ModelError::HashMismatch {
            path: p, expected, ..
        }) => {
            assert_eq!(p, path);
            assert_eq!(expected, EMBEDDER_INT8.sha256);
        }
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("a tampered model was loaded"),
    }
    let message = Engine::load(&config).err().unwrap().to_string();
    assert!(
        message.contains(EMBEDDER_INT8.file_name) && message.contains("SHA-256"),
        "{message}"
    );
}

#[test]
fn another_model_file_needs_its_hash_named_explicitly() {
    let (dir, mut config) = copy_models();
    // The fp32 file named as the int8 embedder: not the file whose hash is pinned for int8.
    config.models.embedder = "int8".into();
    config.models.embedder_file = Some(dir.path().join(EMBEDDER_FP32.file_name));
    assert!(matches!(
        Embedder::load(&config),
        Err(ModelError::HashMismatch { .. })
    ));
    // With its hash spelled out in the configuration it is accepted.
    config.models.embedder_sha256 = Some(EMBEDDER_FP32.sha256.to_string());
    let embedder = Embedder::load(&config).unwrap();
    assert_eq!(embedder.id().sha256, EMBEDDER_FP32.sha256);
}

#[test]
fn group_writable_model_is_refused() {
    let (dir, config) = copy_models();
    let path = dir.path().join(DETECTOR.file_name);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o664)).unwrap();
    let err = Engine::load(&config).err().unwrap();
    assert!(matches!(err, ModelError::Untrusted(_)), "{err}");
    assert!(err.to_string().contains(DETECTOR.file_name), "{err}");
}

#[test]
fn missing_model_is_an_error_naming_the_file() {
    let (dir, config) = copy_models();
    std::fs::remove_file(dir.path().join(DETECTOR.file_name)).unwrap();
    let err = Engine::load(&config).err().unwrap();
    assert!(err.to_string().contains(DETECTOR.file_name), "{err}");
}

#[test]
fn garbage_with_a_matching_explicit_hash_is_an_error_not_a_panic() {
    let (dir, mut config) = copy_models();
    let path = dir.path().join("garbage.onnx");
    std::fs::write(&path, b"this is not an onnx model").unwrap();
    config.models.embedder_file = Some(path.clone());
    config.models.embedder_sha256 = Some(models::sha256_hex(b"this is not an onnx model"));
    let err = Embedder::load(&config).err().unwrap();
    assert!(matches!(err, ModelError::Invalid { .. }), "{err}");
}

#[test]
fn int8_embeddings_stay_close_to_fp32() {
    // The int8 file is folded to fp32 weights at load: its embeddings must stay within a small
    // fraction of the matching threshold of the fp32 model's.
    let mut config = Config::default();
    config.models.dir = shipped();
    let int8 = Embedder::load(&config).unwrap();
    config.models.embedder = "fp32".into();
    let fp32 = Embedder::load(&config).unwrap();
    let johns = shipped().join("../tests/data/faces/johns");
    let mut worst = 0.0f32;
    for person in std::fs::read_dir(johns).unwrap() {
        for chip in std::fs::read_dir(person.unwrap().path()).unwrap().take(3) {
            let image = read_image(&chip.unwrap().path()).unwrap().to_rgb().unwrap();
            let a = int8.embed(&image).unwrap();
            let b = fp32.embed(&image).unwrap();
            worst = worst.max(a.distance(&b.0));
        }
    }
    println!("largest int8-fp32 embedding distance: {worst:.4}");
    assert!(worst < 0.05, "int8 and fp32 embeddings differ by {worst}");
}

#[test]
fn detector_is_planned_at_load_for_the_hinted_frame_size() {
    let mut config = Config::default();
    config.models.dir = shipped();
    let engine = Engine::load(&config).unwrap();
    assert!(engine.detector.planned_sizes().is_empty());
    // A 640x480 camera at max_height 320: 427x320, on a 448x320 canvas.
    let engine = Engine::start(&config, || Some((640, 480))).unwrap();
    assert_eq!(engine.detector.planned_sizes(), [(448, 320)]);
    engine.embedder().unwrap();
}

/// The embedder is built on its own thread after `Engine::start` returns. A file that fails its
/// checks stops the load before anything is parsed; a verified file that does not parse is still an
/// error wherever the embedder is first needed, and a cache does not keep such an engine.
#[test]
fn a_broken_embedder_is_reported_after_start_and_reloaded_once_fixed() {
    let (dir, mut config) = copy_models();
    let path = dir.path().join(EMBEDDER_INT8.file_name);
    let good = std::fs::read(&path).unwrap();
    let mut bad = good.clone();
    bad[100] ^= 0x01;
    std::fs::write(&path, &bad).unwrap();

    // Tampered: refused when the files are read, naming the file and the hash.
    let message = Engine::start(&config, || None).err().unwrap().to_string();
    assert!(
        message.contains(EMBEDDER_INT8.file_name) && message.contains("SHA-256"),
        "{message}"
    );
    let cache = facekey_core::engine::EngineCache::new();
    assert!(cache.get(&config).is_err());
    std::fs::write(&path, &good).unwrap();
    let fixed = cache.get(&config).unwrap();
    fixed.embedder().unwrap();
    // A working engine is kept.
    assert!(std::sync::Arc::ptr_eq(&fixed, &cache.get(&config).unwrap()));

    // Verified (its hash named explicitly) but not a model: the detector is usable while the
    // embedder is (or was) being built.
    let garbage = b"not an onnx model at all".repeat(10);
    std::fs::write(&path, &garbage).unwrap();
    config.models.embedder_sha256 = Some(models::sha256_hex(&garbage));
    let engine = Engine::start(&config, || None).unwrap();
    let chip = shipped().join("../tests/data/faces/johns/John_Salley/000179_02159509.jpg");
    let image = read_image(&chip).unwrap().to_rgb().unwrap();
    assert_eq!(engine.detector.detect(&image).unwrap().len(), 1);
    // Two callers asking at once both get the loading error, not a panic or a half result.
    let errors: Vec<String> = std::thread::scope(|s| {
        let a = s.spawn(|| engine.embedder().err().map(|e| e.to_string()));
        let b = s.spawn(|| engine.embedder().err().map(|e| e.to_string()));
        [a.join().unwrap(), b.join().unwrap()]
            .into_iter()
            .map(|e| e.expect("garbage loaded as an embedder"))
            .collect()
    });
    for e in &errors {
        assert!(e.contains(EMBEDDER_INT8.file_name), "{e}");
        assert!(e.contains("not a usable model"), "{e}");
    }
    // An engine whose embedder failed is not kept: the next attempt loads again.
    let first = cache.get(&config).unwrap();
    assert!(first.embedder().is_err());
    let second = cache.get(&config).unwrap();
    assert!(
        !std::sync::Arc::ptr_eq(&first, &second),
        "a failed engine stayed cached"
    );
}

/// The folded int8 weights go into tract's graph directly; the same weights written into the
/// protobuf (the ordinary ONNX route) must give bit-identical embeddings.
#[test]
fn folded_weights_in_the_graph_equal_the_same_weights_in_the_file() {
    use tract_onnx::prelude::*;
    let path = shipped().join(EMBEDDER_INT8.file_name);
    let bytes = std::fs::read(&path).unwrap();
    let shape = [1, 3, 150, 150];
    let direct = models::build_plan(bytes.clone(), &path, &shape).unwrap();
    let via_file =
        models::plan_proto(&models::parse_proto(&bytes, &path).unwrap(), &path, &shape).unwrap();
    let chip = shipped().join("../tests/data/faces/johns/John_Savage");
    let mut compared = 0;
    for entry in std::fs::read_dir(chip).unwrap().take(3) {
        let image = read_image(&entry.unwrap().path())
            .unwrap()
            .to_rgb()
            .unwrap();
        let input: Tensor =
            tract_ndarray::Array4::from_shape_fn((1, 3, 150, 150), |(_, c, y, x)| {
                image.get_pixel(x as u32, y as u32).0[c] as f32
            })
            .into();
        let run = |plan: &models::Plan| -> Vec<u32> {
            let out = plan.run(tvec!(input.clone().into())).unwrap();
            let view = out[0].to_plain_array_view::<f32>().unwrap();
            view.iter().map(|v| v.to_bits()).collect()
        };
        let (a, b) = (run(&direct), run(&via_file));
        assert_eq!(a.len(), 128);
        assert_eq!(a, b, "embeddings differ");
        compared += 1;
    }
    assert_eq!(compared, 3);
}

/// A decision that saw no face still reports a broken embedder as unavailable, and one that saw a
/// face reports it too: never "no face" or "no match" with a model that could not load.
#[test]
fn a_decision_reports_a_broken_embedder_with_or_without_a_face() {
    use facekey_core::decision::{decide, Outcome, Unavailable};
    use facekey_core::store::{Enrolment, UserName};
    use std::time::{Duration, Instant};

    let (dir, mut config) = copy_models();
    let path = dir.path().join(EMBEDDER_INT8.file_name);
    // Verified (its hash named explicitly) but not a model: it fails while being built.
    let garbage = b"not an onnx model at all".repeat(10);
    std::fs::write(&path, &garbage).unwrap();
    config.models.embedder_sha256 = Some(models::sha256_hex(&garbage));

    let faces = shipped().join("../tests/data/faces");
    for (image, what) in [
        (faces.join("photos/dogs.jpg"), "no face"),
        (
            faces.join("johns/John_Salley/000179_02159509.jpg"),
            "a face",
        ),
    ] {
        let engine = Engine::start(&config, || None).unwrap();
        let user = UserName::new("simm").unwrap();
        let enrolment = Enrolment::new(&user, engine.embedder_id().clone());
        let mut source =
            facekey_core::source::open_source(&format!("file:{}", image.display())).unwrap();
        let started = Instant::now();
        let outcome = decide(
            &engine,
            &enrolment,
            &config,
            source.as_mut(),
            started,
            started + Duration::from_secs(10),
            &mut |_| {},
        );
        match outcome {
            Outcome::Unavailable(Unavailable::Model(e)) => {
                assert!(e.to_string().contains("not a usable model"), "{what}: {e}")
            }
            other => panic!("{what}: {other}"),
        }
    }
}

/// facekey plans models with tract's declutter passes less ChangeAxes: exactly that one pass is
/// left out (a tract release that renamed it would leave it in, and fail here).
#[test]
fn declutter_leaves_out_only_change_axes() {
    use tract_onnx::tract_core::optim::Optimizer;
    let names =
        |o: &Optimizer| -> Vec<String> { o.passes.iter().map(|p| format!("{p:?}")).collect() };
    let tract = names(&Optimizer::declutter());
    let ours = names(&models::declutter());
    assert_eq!(tract.len(), ours.len() + 1, "{tract:?} / {ours:?}");
    let removed: Vec<&String> = tract.iter().filter(|n| !ours.contains(n)).collect();
    assert_eq!(removed, [models::CHANGE_AXES_PASS]);
}

/// Leaving ChangeAxes out changes no result: the detector (on three photos) and both embedders (on
/// three chips) give bit-identical outputs planned facekey's way and by tract's `into_optimized`.
#[test]
fn plans_give_the_outputs_of_tracts_full_optimisation() {
    use tract_onnx::prelude::*;
    let tensor = |path: PathBuf, w: u32, h: u32| -> Tensor {
        let image = read_image(&path).unwrap().to_rgb().unwrap();
        let image = image::imageops::resize(&image, w, h, image::imageops::FilterType::Triangle);
        tract_ndarray::Array4::from_shape_fn((1, 3, h as usize, w as usize), |(_, c, y, x)| {
            image.get_pixel(x as u32, y as u32).0[c] as f32
        })
        .into()
    };
    let bits = |plan: &models::Plan, input: &Tensor| -> Vec<Vec<u32>> {
        let out = plan.run(tvec!(input.clone().into())).unwrap();
        out.iter()
            .map(|o| {
                let view = o.to_plain_array_view::<f32>().unwrap();
                view.iter().map(|v| v.to_bits()).collect()
            })
            .collect()
    };
    let tracts = |proto: &tract_onnx::pb::ModelProto, shape: &[usize]| -> models::Plan {
        tract_onnx::onnx()
            .model_for_proto_model(proto)
            .unwrap()
            .with_input_fact(0, f32::fact(shape).into())
            .unwrap()
            .into_optimized()
            .unwrap()
            .into_runnable()
            .unwrap()
    };

    let mut config = Config::default();
    config.models.dir = shipped();
    let detector = facekey_core::detect::Detector::load(&config).unwrap();
    let shape = [1, 3, 320, 448];
    let ours = models::plan_proto(detector.graph(), Path::new("detector"), &shape).unwrap();
    let theirs = tracts(detector.graph(), &shape);
    let photos = shipped().join("../tests/data/faces/photos");
    let mut photos: Vec<PathBuf> = std::fs::read_dir(photos)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    photos.sort();
    for photo in photos.into_iter().take(3) {
        let input = tensor(photo.clone(), 448, 320);
        let (a, b) = (bits(&ours, &input), bits(&theirs, &input));
        assert_eq!(a.len(), 12, "detector heads");
        assert!(a == b, "{}: detector outputs differ", photo.display());
    }

    let chips = shipped().join("../tests/data/faces/johns/John_Savage");
    for model in [EMBEDDER_INT8, EMBEDDER_FP32] {
        let path = shipped().join(model.file_name);
        let proto = models::parse_proto(&std::fs::read(&path).unwrap(), &path).unwrap();
        let shape = [1, 3, 150, 150];
        let ours = models::plan_proto(&proto, &path, &shape).unwrap();
        let theirs = tracts(&proto, &shape);
        for chip in std::fs::read_dir(&chips).unwrap().take(3) {
            let input = tensor(chip.unwrap().path(), 150, 150);
            let (a, b) = (bits(&ours, &input), bits(&theirs, &input));
            assert_eq!(a[0].len(), 128);
            assert!(a == b, "{}: embeddings differ", model.file_name);
        }
    }
}

/// Set in the child process of the knob test: it prints what it computed instead of comparing.
const KNOB_CHILD: &str = "FACEKEY_TEST_KNOB_CHILD";

/// A value for each of tract's knobs that differs from facekey's pin (or from tract's default),
/// plus the variables tract reads outside its knob registry.
fn hostile_tract_environment() -> Vec<(String, String)> {
    use tract_onnx::tract_core::knobs;
    let mut env = Vec::new();
    for knob in knobs::all() {
        let value = match knob.name {
            // A feature of another architecture: tract asserts (panics) on it; AMX bf16 where the
            // CPU may lack it.
            "TRACT_CPU_ISA" => "+amx-bf16,+sve2,-avx512f".to_string(),
            "TRACT_AVX512_FMA_UNITS" => "2".to_string(),
            "TRACT_LLC_BYTES" => "1K".to_string(),
            "TRACT_CPU_AARCH64_KIND" => "a53".to_string(),
            "TRACT_CPU_AARCH64_OVERRIDE_CPU_PART" => "0xd03".to_string(),
            _ => match (knob.default)().as_str() {
                "false" => "true".to_string(),
                "true" => "false".to_string(),
                "0" => "100000".to_string(),
                _ => "1".to_string(),
            },
        };
        assert!(
            (knob.parses)(&value) || knob.type_name == "string",
            "{} = {value}",
            knob.name
        );
        env.push((knob.name.to_string(), value));
    }
    let other_vendor = match facekey_core::tract_knobs::cpu_vendor() {
        "amd" => "intel",
        _ => "amd",
    };
    env.push(("TRACT_X86_KIND".into(), other_vendor.into()));
    env.push(("TRACT_CONFIG".into(), "/nonexistent/tract.toml".into()));
    env.push(("TRACT_FACEKEY__RUNTIME".into(), "cuda".into()));
    env
}

/// What the child computes: every face the detector finds in a photo and a chip, its box, score and
/// embedding, as the bits of each float.
fn knob_child_output() -> String {
    let mut config = Config::default();
    config.models.dir = shipped();
    let engine = Engine::load(&config).unwrap();
    let mut out = String::new();
    for file in [
        "../tests/data/faces/photos/2007_007763.jpg",
        "../tests/data/faces/johns/John_Simm/000288_00470387.jpg",
    ] {
        let image = read_image(&Path::new(env!("CARGO_MANIFEST_DIR")).join(file))
            .unwrap()
            .to_rgb()
            .unwrap();
        let faces = engine.analyse(&image).unwrap();
        assert!(!faces.is_empty(), "{file}: no face");
        for face in faces {
            let bits = face
                .face
                .bbox
                .iter()
                .chain(std::iter::once(&face.face.score))
                .chain(face.embedding.0.iter())
                .map(|v| format!("{:08x}", v.to_bits()))
                .collect::<Vec<_>>()
                .join("");
            out.push_str(&format!("FACE {file} {bits}\n"));
        }
    }
    out
}

/// The caller's environment reaches tract in the PAM module. With every tract knob and variable set
/// to a hostile value, a fresh process computes the same faces and embeddings, bit for bit, as one
/// with none of them, and does not crash (an instruction set of another architecture panics tract
/// when it is not pinned).
#[test]
fn embeddings_are_bit_identical_whatever_tract_variables_the_environment_holds() {
    if std::env::var_os(KNOB_CHILD).is_some() {
        print!("{}", knob_child_output());
        return;
    }
    let run = |env: &[(String, String)]| {
        let mut command = std::process::Command::new(std::env::current_exe().unwrap());
        command
            .args([
                "--exact",
                "embeddings_are_bit_identical_whatever_tract_variables_the_environment_holds",
                "--nocapture",
                "--test-threads=1",
            ])
            .env_clear()
            .env(KNOB_CHILD, "1")
            .envs(env.iter().map(|(k, v)| (k, v)));
        let out = command.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "child failed ({:?}):\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
            .lines()
            // libtest prints the test's name on the line the first face starts.
            .filter_map(|l| l.find("FACE ").map(|i| l[i..].to_owned()))
            .collect::<Vec<_>>()
    };
    let hostile = hostile_tract_environment();
    // Every knob of this tract is in the hostile set (a new knob joins it by itself).
    assert!(hostile.len() > 20, "{hostile:?}");
    let clean = run(&[]);
    assert!(clean.len() >= 2, "{clean:?}");
    let attacked = run(&hostile);
    assert_eq!(clean, attacked, "tract variables changed the computation");
}

/// A process can read and verify the model files, then build the engine from memory: with the
/// files gone from disk, `Engine::start_from` and `EngineCache::get_from` still give the same
/// embeddings as an ordinary load.
#[test]
fn models_read_first_are_built_without_opening_files() {
    let (dir, config) = copy_models();
    let files = models::ModelFiles::read(&config).unwrap();
    let cached = models::ModelFiles::read(&config).unwrap();
    assert_eq!(
        files.embedder.location,
        models::ActiveModels::resolve(&config)
            .unwrap()
            .embedder
            .location()
    );
    std::fs::remove_dir_all(dir.path()).unwrap();
    // Nothing is left to open: an ordinary load fails.
    assert!(Engine::load(&config).is_err());

    let engine = Engine::start_from(files, &config, || Some((640, 480))).unwrap();
    assert_eq!(engine.detector.planned_sizes(), [(448, 320)]);
    let cache = facekey_core::engine::EngineCache::new();
    let from_cache = cache.get_from(cached, &config, || None).unwrap();
    let chip = shipped().join("../tests/data/faces/johns/John_Salley/000179_02159509.jpg");
    let image = read_image(&chip).unwrap().to_rgb().unwrap();
    let a = engine.analyse(&image).unwrap();
    let b = from_cache.analyse(&image).unwrap();

    let mut shipped_config = Config::default();
    shipped_config.models.dir = shipped();
    let reference = Engine::load(&shipped_config)
        .unwrap()
        .analyse(&image)
        .unwrap();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].embedding, reference[0].embedding);
    assert_eq!(b[0].embedding, reference[0].embedding);
}
