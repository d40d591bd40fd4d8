//! `facekey demo`: the whole job on built-in sample faces, with no camera and no root.
//!
//! Enrols one person from three built-in images into a throw-away store, then authenticates two other
//! images of the same person and two of someone else (the frames of one look each) through the entry point the PAM module uses
//! (`policy::attempt`, in process, reusing the models loaded for the enrolment), and prints both
//! verdicts with their distances and timings. The throw-away configuration names its own service,
//! `facekey-demo`, as one where a face may authenticate another user (the demo's `demo`), and keeps its
//! rate-limit state beside the store.

use std::path::{Path, PathBuf};
use std::time::Instant;

use facekey_config::Config;
use facekey_core::engine::Analyser;
use facekey_core::policy::{self, Attempt, Request, SourceChoice, System};
use facekey_core::store::{Enrolment, Store, UserName};
use facekey_core::EngineCache;
use facekey_core::{frame, source};

use crate::{load_config, CliResult, Failure};

/// Public-domain face chips from the repository's test data (dlib's `examples/johns`, from LFW).
pub(crate) const ENROL: [(&str, &[u8]); 3] = [
    (
        "John_Simm/000288_00470387.jpg",
        include_bytes!("../../tests/data/faces/johns/John_Simm/000288_00470387.jpg"),
    ),
    (
        "John_Simm/000297_00470170.jpg",
        include_bytes!("../../tests/data/faces/johns/John_Simm/000297_00470170.jpg"),
    ),
    (
        "John_Simm/000300_00470148.jpg",
        include_bytes!("../../tests/data/faces/johns/John_Simm/000300_00470148.jpg"),
    ),
];
/// Two other photos of the enrolled person: the frames of one look at the camera (the shipped rule needs two).
pub(crate) const SAME_PERSON: [(&str, &[u8]); 2] = [
    (
        "John_Simm/000310_00470511.jpg",
        include_bytes!("../../tests/data/faces/johns/John_Simm/000310_00470511.jpg"),
    ),
    (
        "John_Simm/000306_00470222.jpg",
        include_bytes!("../../tests/data/faces/johns/John_Simm/000306_00470222.jpg"),
    ),
];
pub(crate) const OTHER_PERSON: [(&str, &[u8]); 2] = [
    (
        "John_Salley/000179_02159509.jpg",
        include_bytes!("../../tests/data/faces/johns/John_Salley/000179_02159509.jpg"),
    ),
    (
        "John_Salley/000183_02159543.jpg",
        include_bytes!("../../tests/data/faces/johns/John_Salley/000183_02159543.jpg"),
    ),
];

/// The PAM service the demo's attempts name; only its throw-away configuration lists it.
const DEMO_SERVICE: &str = "facekey-demo";

/// The model folder of a source checkout, for running the demo before the package is installed.
const CHECKOUT_MODELS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../models");

pub fn run(config_path: Option<&Path>) -> CliResult<()> {
    let mut config: Config = load_config(config_path)?;
    if !config.models.dir.exists() {
        let checkout = PathBuf::from(CHECKOUT_MODELS);
        config.models.dir = checkout.canonicalize().unwrap_or(checkout);
    }
    let work = tempfile::Builder::new()
        .prefix("facekey-demo-")
        .tempdir()
        .map_err(|e| Failure::from_error("temporary folder", &e))?;
    config.storage.faces_dir = work.path().join("faces");
    config.rate_limit.state_dir = work.path().join("state");
    config.pam.services = vec![DEMO_SERVICE.to_owned()];
    config.pam.other_user_services = vec![DEMO_SERVICE.to_owned()];
    // Frames are read under the trust rules (not writable by group or others, whatever the umask):
    // created 0600 in the 0700 folder tempfile made.
    let write = |(name, bytes): (&str, &[u8])| -> CliResult<PathBuf> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = work.path().join(name.replace('/', "_"));
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| f.write_all(bytes))
            .map_err(|e| Failure::from_error(&path.display().to_string(), &e))?;
        Ok(path)
    };

    // One cache for the whole demo: the models load once, for enrolment and both decisions.
    let engines: &'static EngineCache = Box::leak(Box::new(EngineCache::new()));
    let t = Instant::now();
    let engine = engines
        .get(&config)
        .map_err(|e| Failure::from_error("models", &e))?;
    // `get` returns once the detector is ready; the time printed is that of both models.
    engine
        .embedder()
        .map_err(|e| Failure::from_error("models", &e))?;
    println!(
        "Loaded models from {} in {} ms",
        config.models.dir.display(),
        t.elapsed().as_millis()
    );

    // Enrol: one sample per image.
    let user = UserName::new("demo").map_err(|e| Failure::from_error("user", &e))?;
    let mut enrolment = Enrolment::new(&user, engine.embedder_id().clone());
    for item in ENROL {
        let path = write(item)?;
        let image = source::read_image(&path)
            .and_then(|f| {
                f.to_rgb().map_err(|e| frame::SourceError::BadImage {
                    path: path.clone(),
                    reason: e.to_string(),
                })
            })
            .map_err(|e| Failure::from_error("sample image", &e))?;
        let faces = engine
            .analyse(&image)
            .map_err(|e| Failure::from_error("analysis", &e))?;
        let [face] = faces.as_slice() else {
            return Err(Failure::new(format!(
                "{}: expected one face, found {}",
                item.0,
                faces.len()
            )));
        };
        let id = enrolment.add_sample("John Simm", face.embedding.0.clone());
        println!("Enrolled {} as sample {id}", item.0);
    }
    let store = Store::new(&config.storage.faces_dir);
    store
        .save(&enrolment)
        .map_err(|e| Failure::from_error("enrolment store", &e))?;

    // Authenticate through the entry point the PAM module uses, the loaded models reused.
    let request = Request {
        service: Some(DEMO_SERVICE.to_owned()),
        ..Request::from_this_process()
    };
    // The demo replays built-in images: no lid or logind session of this machine says anything about them.
    let system = System::under(&work.path().join("no-system"));
    for (what, items) in [("same person", SAME_PERSON), ("someone else", OTHER_PERSON)] {
        let mut paths = Vec::new();
        for item in items {
            paths.push(write(item)?.display().to_string());
        }
        let attempt = Attempt {
            source: SourceChoice::Spec(format!("file:{}", paths.join(","))),
            ..Attempt::new(
                user.as_str(),
                &request,
                &system,
                policy::deadline_after(Instant::now(), config.auth.timeout),
            )
        };
        let verdict = policy::attempt(&config, attempt, engines, &mut || {});
        let names: Vec<&str> = items.iter().map(|i| i.0).collect();
        println!("Authenticate {} ({what}): {verdict}", names.join(" + "));
    }
    println!(
        "Rule: the mean distance of the {} best frames below {:.2} is a match",
        config.matching.required_matches,
        facekey_core::rule::threshold(&config.matching, engine.calibrated_threshold())
    );
    Ok(())
}
