//! Verification on the johns set through the real decision path: enrol 3 chips per person, then present each
//! person's 8 other chips as the frames of one attempt (a `file:` replay of all 8) against every enrolled person,
//! through the entry point the PAM module uses (`policy::attempt` for `sudo`, in process), under the shipped rule.
//! Every genuine attempt must match; no attempt may match another person. (Per-attempt rates over larger sets,
//! with their confidence intervals: eval/tests/accuracy.rs and docs/accuracy.md.)

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use facekey_config::Config;
use facekey_core::engine::Engine;
use facekey_core::policy::{self, Attempt, Request, SourceChoice, System, Verdict};
use facekey_core::source::read_image;
use facekey_core::store::{Enrolment, Store, UserName};
use facekey_core::{EngineCache, Outcome};

const ENROLLED_PER_PERSON: usize = 3;

fn johns() -> Vec<(String, Vec<PathBuf>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/faces/johns");
    let mut people: Vec<(String, Vec<PathBuf>)> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| {
            let dir = e.unwrap().path();
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|f| f.unwrap().path())
                .collect();
            files.sort();
            (
                dir.file_name().unwrap().to_string_lossy().into_owned(),
                files,
            )
        })
        .collect();
    people.sort();
    assert_eq!(people.len(), 5);
    people
}

fn config(kind: &str, faces_dir: &Path) -> Config {
    let mut config = Config::default();
    config.models.dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    config.models.embedder = kind.to_owned();
    config.storage.faces_dir = faces_dir.to_path_buf();
    config
}

/// User names for the identities ("john_salley", ...).
fn user_for(person: &str) -> UserName {
    UserName::new(&person.to_ascii_lowercase()).unwrap()
}

struct Summary {
    genuine: usize,
    genuine_matched: usize,
    impostor: usize,
    impostor_matched: usize,
    worst_genuine: f32,
    best_impostor: f32,
}

fn run(kind: &str) -> Summary {
    let dir = tempfile::tempdir().unwrap();
    let faces_dir = dir.path().join("faces");
    let mut config = config(kind, &faces_dir);
    // Every impostor probe is a failure of the claimed user: this run counts, it does not lock out.
    config.rate_limit.state_dir = dir.path().join("state");
    config.rate_limit.max_failures = u32::MAX;
    let engine = Engine::load(&config).unwrap();
    let store = Store::new(&faces_dir);
    let people = johns();
    for (person, files) in &people {
        let user = user_for(person);
        let mut enrolment = Enrolment::new(&user, engine.embedder_id().clone());
        for file in &files[..ENROLLED_PER_PERSON] {
            let image = read_image(file).unwrap().to_rgb().unwrap();
            let faces = engine.analyse(&image).unwrap();
            assert_eq!(
                faces.len(),
                1,
                "{}: enrolment chip must hold one face",
                file.display()
            );
            enrolment.add_sample(person, faces[0].embedding.0.clone());
        }
        store.save(&enrolment).unwrap();
    }
    let engines: &'static EngineCache = Box::leak(Box::new(EngineCache::new()));
    let request = Request {
        service: Some("sudo".into()),
        real_uid: 0,
        ..Request::from_this_process()
    };
    let system = System::under(&dir.path().join("no-system"));
    let mut s = Summary {
        genuine: 0,
        genuine_matched: 0,
        impostor: 0,
        impostor_matched: 0,
        worst_genuine: 0.0,
        best_impostor: f32::INFINITY,
    };
    for (probe_person, files) in &people {
        {
            let probe = &files[ENROLLED_PER_PERSON..]
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(",");
            for (claimed, _) in &people {
                let spec = format!("file:{probe}");
                let claimed_user = user_for(claimed);
                let attempt = Attempt {
                    source: SourceChoice::Spec(spec),
                    ..Attempt::new(
                        claimed_user.as_str(),
                        &request,
                        &system,
                        Instant::now() + Duration::from_secs(30),
                    )
                };
                let outcome = match policy::attempt(&config, attempt, engines, &mut || {}) {
                    Verdict::Decided { outcome, .. } => outcome,
                    other => panic!("{probe}: claimed {claimed}: {other}"),
                };
                let distance = match &outcome {
                    Outcome::Matched {
                        distance, label, ..
                    } => {
                        assert_eq!(
                            label, claimed,
                            "a match must carry the claimed user's label"
                        );
                        *distance
                    }
                    Outcome::NoMatch { best_distance, .. } => *best_distance,
                    other => panic!("{probe}: claimed {claimed}: {other}"),
                };
                if claimed == probe_person {
                    s.genuine += 1;
                    s.genuine_matched += outcome.is_match() as usize;
                    s.worst_genuine = s.worst_genuine.max(distance);
                } else {
                    s.impostor += 1;
                    s.impostor_matched += outcome.is_match() as usize;
                    s.best_impostor = s.best_impostor.min(distance);
                }
            }
        }
    }
    println!(
        "{kind:?}: genuine {}/{} matched (worst best-distance {:.3}); impostor {}/{} matched \
         (closest {:.3}); threshold {:.2}",
        s.genuine_matched,
        s.genuine,
        s.worst_genuine,
        s.impostor_matched,
        s.impostor,
        s.best_impostor,
        facekey_core::rule::threshold(&config.matching, facekey_config::DEFAULT_THRESHOLD)
    );
    s
}

fn check(s: Summary) {
    assert_eq!(s.genuine, 5);
    assert_eq!(s.impostor, 20);
    assert_eq!(
        s.genuine_matched, s.genuine,
        "every genuine attempt must match"
    );
    assert_eq!(s.impostor_matched, 0, "no attempt may match another person");
}

#[test]
fn johns_verification_int8_accepts_every_genuine_and_no_impostor() {
    check(run("int8"));
}

#[test]
fn johns_verification_fp32_accepts_every_genuine_and_no_impostor() {
    check(run("fp32"));
}
