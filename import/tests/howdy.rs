//! Howdy's configuration and face models read and mapped: both versions' files, malformed and oversized input,
//! and the measured agreement between facekey's embedders and dlib's descriptors that decides imports.

use std::path::{Path, PathBuf};

use facekey_import::howdy::agreement::{
    self, Agreement, Refusal, AGREES_WITH_DLIB, NORM_RANGE, SAME_PERSON,
};
use facekey_import::howdy::config::{self, Outcome, ThresholdLimit, Value};
use facekey_import::howdy::ini::Ini;
use facekey_import::howdy::models::{self, Model, DIMENSION, MAX_ENCODINGS};
use facekey_import::howdy::{read_text, HowdyError, Layout, Version, MAX_CONFIG_BYTES};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn fixture(name: &str) -> Ini {
    let path = repo(&format!("tests/data/howdy/{name}"));
    Ini::parse(&std::fs::read_to_string(&path).unwrap(), name).unwrap()
}

const CALIBRATED: ThresholdLimit = ThresholdLimit {
    calibrated: 0.42,
    largest: 0.42,
    why: None,
};

fn outcome<'a>(items: &'a [config::Item], section: &str, key: &str) -> &'a Outcome {
    &items
        .iter()
        .find(|i| i.section == section && i.key == key)
        .unwrap_or_else(|| panic!("[{section}] {key} not mapped"))
        .outcome
}

fn set_to(o: &Outcome) -> (&'static str, &'static str, Option<Value>) {
    match o {
        Outcome::Set {
            section,
            key,
            value,
            ..
        } => (*section, *key, value.clone()),
        other => panic!("not set: {other:?}"),
    }
}

#[derive(serde::Deserialize)]
struct Reference {
    chips: Vec<Chip>,
}

#[derive(serde::Deserialize)]
struct Chip {
    path: String,
    embedding: Vec<f32>,
}

fn reference() -> Reference {
    serde_json::from_str(
        &std::fs::read_to_string(repo("tests/data/dlib/reference_embeddings.json")).unwrap(),
    )
    .unwrap()
}

/// dlib's descriptors of one john's chips, in file order.
fn descriptors(person: &str) -> Vec<Vec<f32>> {
    reference()
        .chips
        .into_iter()
        .filter(|c| c.path.starts_with(&format!("johns/{person}/")))
        .map(|c| c.embedding)
        .collect()
}

fn user_dat(encodings: &[Vec<f32>]) -> String {
    serde_json::json!([{"time": 1_700_000_000, "label": "Initial model", "id": 0, "data": encodings}])
        .to_string()
}

#[test]
fn howdy_2_config_maps_every_key() {
    let items = config::map(&fixture("config-2.ini"), &CALIBRATED);
    assert_eq!(items.len(), 21, "{items:#?}");
    assert!(
        !items
            .iter()
            .any(|i| matches!(i.outcome, Outcome::Unknown | Outcome::Invalid { .. })),
        "{items:#?}"
    );
    let expect = [
        (
            "core",
            "detection_notice",
            "pam",
            "detection_notice",
            Value::Bool(true),
        ),
        (
            "core",
            "no_confirmation",
            "pam",
            "confirmation",
            Value::Bool(true),
        ),
        (
            "core",
            "disabled",
            "general",
            "disabled",
            Value::Bool(false),
        ),
        (
            "video",
            "certainty",
            "matching",
            "threshold",
            Value::Float(0.35),
        ),
        ("video", "timeout", "auth", "timeout", Value::Float(5.0)),
        (
            "video",
            "device_path",
            "camera",
            "source",
            Value::Str("v4l2:/dev/v4l/by-path/pci-0000:00:14.0-usb-0:5:1.2-video-index0".into()),
        ),
        (
            "video",
            "max_height",
            "detection",
            "max_height",
            Value::Int(320),
        ),
        (
            "video",
            "frame_width",
            "camera",
            "frame_width",
            Value::Int(0),
        ),
        (
            "video",
            "frame_height",
            "camera",
            "frame_height",
            Value::Int(0),
        ),
        (
            "video",
            "dark_threshold",
            "camera",
            "dark_threshold",
            Value::Float(50.0),
        ),
        (
            "video",
            "force_mjpeg",
            "camera",
            "force_mjpeg",
            Value::Bool(false),
        ),
        ("video", "exposure", "camera", "exposure", Value::Int(0)),
    ];
    for (section, key, to_section, to_key, value) in expect {
        assert_eq!(
            set_to(outcome(&items, section, key)),
            (to_section, to_key, Some(value)),
            "[{section}] {key}"
        );
    }
    assert!(matches!(
        outcome(&items, "core", "ignore_ssh"),
        Outcome::Always { .. }
    ));
    // Howdy 2's "false" would let the camera work with the lid closed: facekey does not loosen that.
    assert!(matches!(
        outcome(&items, "core", "ignore_closed_lid"),
        Outcome::NoEquivalent { .. }
    ));
    for (section, key) in [
        ("core", "use_cnn"),
        ("core", "suppress_unknown"),
        ("video", "recording_plugin"),
        ("snapshots", "capture_failed"),
        ("debug", "end_report"),
    ] {
        assert!(
            matches!(outcome(&items, section, key), Outcome::NoEquivalent { .. }),
            "[{section}] {key}"
        );
    }
}

#[test]
fn howdy_3_config_maps_every_key_and_caps_a_loose_certainty() {
    let ini = fixture("config-3.ini");
    assert_eq!(
        ini.get("rubberstamps", "stamp_rules").unwrap().value,
        "nod\t\t5s\t\tfailsafe     min_distance=12"
    );
    let items = config::map(&ini, &CALIBRATED);
    assert_eq!(items.len(), 30, "{items:#?}");
    assert!(
        !items
            .iter()
            .any(|i| matches!(i.outcome, Outcome::Unknown | Outcome::Invalid { .. })),
        "{items:#?}"
    );
    let expect = [
        (
            "core",
            "no_confirmation",
            "pam",
            "confirmation",
            Value::Bool(false),
        ),
        (
            "video",
            "device_path",
            "camera",
            "source",
            Value::Str("v4l2:/dev/video2".into()),
        ),
        (
            "video",
            "frame_width",
            "camera",
            "frame_width",
            Value::Int(640),
        ),
        (
            "video",
            "frame_height",
            "camera",
            "frame_height",
            Value::Int(480),
        ),
        (
            "video",
            "force_mjpeg",
            "camera",
            "force_mjpeg",
            Value::Bool(true),
        ),
        ("video", "exposure", "camera", "exposure", Value::Int(300)),
        ("video", "device_fps", "camera", "fps", Value::Int(15)),
        (
            "video",
            "dark_threshold",
            "camera",
            "dark_threshold",
            Value::Float(60.0),
        ),
    ];
    for (section, key, to_section, to_key, value) in expect {
        assert_eq!(
            set_to(outcome(&items, section, key)),
            (to_section, to_key, Some(value)),
            "[{section}] {key}"
        );
    }
    assert!(matches!(
        outcome(&items, "core", "abort_if_ssh"),
        Outcome::Always { .. }
    ));
    assert!(matches!(
        outcome(&items, "core", "abort_if_lid_closed"),
        Outcome::Always { .. }
    ));
    // rotate = 2 is Howdy's "portrait, both ways", not 2 degrees or 180.
    match outcome(&items, "video", "rotate") {
        Outcome::NoEquivalent { reason } => assert!(reason.contains("90 or 270"), "{reason}"),
        other => panic!("{other:?}"),
    }
    for key in ["enabled", "stamp_rules"] {
        assert!(matches!(
            outcome(&items, "rubberstamps", key),
            Outcome::NoEquivalent { .. }
        ));
    }

    // certainty 4.8 is distance 0.48, looser than the calibrated 0.42: the key is removed, the calibrated applies.
    match outcome(&items, "video", "certainty") {
        Outcome::Set {
            section: "matching",
            key: "threshold",
            value: None,
            note: Some(note),
        } => assert!(note.contains("capped") && note.contains("0.42"), "{note}"),
        other => panic!("{other:?}"),
    }
    // With descriptors imported the limit is lower, and written.
    let limit = agreement::threshold_limit(
        0.42,
        Some(&Agreement {
            largest: 0.05,
            chips: 7,
        }),
    );
    let items = config::map(&ini, &limit);
    match outcome(&items, "video", "certainty") {
        Outcome::Set {
            value: Some(Value::Float(t)),
            note: Some(note),
            ..
        } => {
            assert_eq!(*t, 0.37);
            assert!(note.contains("capped"), "{note}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn rotate_keeps_howdys_meaning() {
    let map = |value: &str| {
        let ini = Ini::parse(&format!("[video]\nrotate = {value}\n"), "t").unwrap();
        config::map(&ini, &CALIBRATED).remove(0).outcome
    };
    assert_eq!(set_to(&map("0")), ("camera", "rotate", Some(Value::Int(0))));
    assert!(matches!(map("1"), Outcome::NoEquivalent { .. }));
    assert!(matches!(map("2"), Outcome::NoEquivalent { .. }));
    assert!(matches!(map("90"), Outcome::Invalid { .. }));
}

#[test]
fn values_howdy_would_refuse_are_invalid_and_unknown_keys_are_named() {
    let ini = Ini::parse(
        "[video]\ncertainty = three\ntimeout = 4.5\nframe_width = 3\nexposure = 999999999\n\
         certainty_2 = 1\n[core]\ndisabled = maybe\n[extra]\nx = 1\n",
        "t",
    )
    .unwrap();
    let items = config::map(&ini, &CALIBRATED);
    let kinds: Vec<(&str, bool, bool)> = items
        .iter()
        .map(|i| {
            (
                i.key.as_str(),
                matches!(i.outcome, Outcome::Invalid { .. }),
                matches!(i.outcome, Outcome::Unknown),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("certainty", true, false),
            ("timeout", true, false),
            ("frame_width", true, false),
            ("exposure", true, false),
            ("certainty_2", false, true),
            ("disabled", true, false),
            ("x", false, true),
        ]
    );
    // A timeout over facekey's 60 s is held to it, and says so.
    let ini = Ini::parse("[video]\ntimeout = 600\n", "t").unwrap();
    match &config::map(&ini, &CALIBRATED)[0].outcome {
        Outcome::Set {
            value: Some(Value::Float(t)),
            note: Some(_),
            ..
        } => assert_eq!(*t, 60.0),
        other => panic!("{other:?}"),
    }
}

#[test]
fn malformed_lines_are_refused_with_their_line() {
    let cases = [
        ("certainty = 3\n", 1, "before any [section]"),
        ("[video]\ncertainty 3\n", 2, "neither a section"),
        (
            "[video]\ncertainty = 3\n\nCertainty = 4\n",
            4,
            "again (first at line 2)",
        ),
        ("[video]\n[core]\n[video]\n", 3, "section [video] again"),
        ("# c\n[video\n", 2, "without ']'"),
        ("[video]\n = 3\n", 2, "without a key"),
        ("[]\n", 1, "empty section"),
    ];
    for (text, line, says) in cases {
        match Ini::parse(text, "/etc/howdy/config.ini") {
            Err(HowdyError::Syntax {
                line: l, reason, ..
            }) => {
                assert_eq!(l, line, "{text:?}: {reason}");
                assert!(reason.contains(says), "{text:?}: {reason}");
            }
            other => panic!("{text:?}: {other:?}"),
        }
    }
    let e = Ini::parse("[video]\nx\n", "/etc/howdy/config.ini").unwrap_err();
    assert!(
        e.to_string().starts_with("/etc/howdy/config.ini, line 2: "),
        "{e}"
    );
    // Comments only at the start of a line, as configparser: a later '#' is part of the value (and Howdy's
    // getfloat would fail on it).
    let ini = Ini::parse("[video]\n  ; c\ncertainty = 3.5 # strict\n", "t").unwrap();
    assert_eq!(ini.get("video", "certainty").unwrap().value, "3.5 # strict");
    assert!(matches!(
        config::map(&ini, &CALIBRATED)[0].outcome,
        Outcome::Invalid { .. }
    ));
}

#[test]
fn oversized_and_binary_files_are_refused_before_parsing() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("config.ini");
    let line = "# padding padding padding padding padding padding padding padding\n";
    std::fs::write(
        &big,
        line.repeat(MAX_CONFIG_BYTES as usize / line.len() + 2),
    )
    .unwrap();
    assert!(matches!(
        read_text(&big, MAX_CONFIG_BYTES),
        Err(HowdyError::TooLarge { .. })
    ));
    let binary = dir.path().join("bin.ini");
    std::fs::write(&binary, [0x5b, 0xff, 0xfe, 0x5d]).unwrap();
    assert!(matches!(
        read_text(&binary, MAX_CONFIG_BYTES),
        Err(HowdyError::NotText { .. })
    ));
    let exact = dir.path().join("exact.ini");
    std::fs::write(&exact, "x".repeat(16)).unwrap();
    assert_eq!(read_text(&exact, 16).unwrap().len(), 16);
}

#[test]
fn files_others_could_write_or_links_are_refused_by_the_trust_rules() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.ini");
    std::fs::write(&config, "[core]\ndisabled = false\n").unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(read_text(&config, MAX_CONFIG_BYTES).is_ok());
    // Group-writable: whoever is in the group could choose what is imported.
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o664)).unwrap();
    let refused = read_text(&config, MAX_CONFIG_BYTES).unwrap_err();
    assert!(
        matches!(refused, HowdyError::Untrusted { .. }),
        "{refused:?}"
    );
    assert!(refused.to_string().contains("config.ini"), "{refused}");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    // A folder above it writable by others (without the sticky bit).
    let open_dir = dir.path().join("open");
    std::fs::create_dir(&open_dir).unwrap();
    std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let inside = open_dir.join("config.ini");
    std::fs::write(&inside, "[core]\n").unwrap();
    std::fs::set_permissions(&inside, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(
        read_text(&inside, MAX_CONFIG_BYTES),
        Err(HowdyError::Untrusted { .. })
    ));
    // A link as the file itself, and a FIFO (which must not block the read).
    let link = dir.path().join("link.ini");
    std::os::unix::fs::symlink(&config, &link).unwrap();
    assert!(matches!(
        read_text(&link, MAX_CONFIG_BYTES),
        Err(HowdyError::Untrusted { .. })
    ));
    let fifo = dir.path().join("fifo.ini");
    nix::unistd::mkfifo(
        &fifo,
        nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
    )
    .unwrap();
    assert!(matches!(
        read_text(&fifo, MAX_CONFIG_BYTES),
        Err(HowdyError::Untrusted { .. })
    ));
    // Missing stays "not found".
    assert!(matches!(
        read_text(&dir.path().join("missing.ini"), MAX_CONFIG_BYTES),
        Err(HowdyError::Io { .. })
    ));
}

#[test]
fn layouts_of_both_versions_are_found() {
    let root = tempfile::tempdir().unwrap();
    assert!(matches!(
        Layout::find(root.path()),
        Err(HowdyError::NotFound { .. })
    ));
    let two = root.path().join("lib/security/howdy");
    std::fs::create_dir_all(two.join("models")).unwrap();
    std::fs::write(two.join("config.ini"), "[core]\n").unwrap();
    std::fs::write(two.join("models/alice.dat"), "[]").unwrap();
    std::fs::write(two.join("models/notes.txt"), "").unwrap();
    let layout = Layout::find(root.path()).unwrap();
    assert_eq!(layout.version, Version::Two);
    let users: Vec<String> = layout.users().unwrap().into_iter().map(|u| u.0).collect();
    assert_eq!(users, ["alice"]);
    let three = root.path().join("etc/howdy");
    std::fs::create_dir_all(&three).unwrap();
    std::fs::write(three.join("config.ini"), "[core]\n").unwrap();
    let layout = Layout::find(root.path()).unwrap();
    assert_eq!(layout.version, Version::Three);
    assert_eq!(layout.models_dir, three.join("models"));
    assert!(
        layout.users().unwrap().is_empty(),
        "no models folder: no user"
    );
}

#[test]
fn user_dat_is_read_and_wrong_json_is_refused() {
    let simm = descriptors("John_Simm");
    let text = user_dat(&simm[..3]);
    let read = models::parse(&text, "alice.dat").unwrap();
    assert_eq!(
        read,
        [Model {
            id: 0,
            label: "Initial model".into(),
            time: 1_700_000_000,
            encodings: simm[..3].to_vec(),
        }]
    );

    let short: Vec<f32> = simm[0][..DIMENSION - 1].to_vec();
    let huge = format!(
        "[{{\"time\":0,\"label\":\"x\",\"id\":1,\"data\":[[1e39{}]]}}]",
        ",0".repeat(127)
    );
    let cases = [
        ("{\"time\": 0}".to_owned(), "not Howdy's model list"),
        ("[]".to_owned(), "no model"),
        (
            "[{\"time\":0,\"label\":\"x\",\"id\":1}]".to_owned(),
            "missing field `data`",
        ),
        (
            "[{\"time\":0,\"label\":\"x\",\"id\":1,\"data\":[]}]".to_owned(),
            "no encoding",
        ),
        (
            "[{\"time\":0,\"label\":\"x\",\"id\":1,\"data\":[[\"0.1\"]]}]".to_owned(),
            "line 1",
        ),
        (user_dat(&[short]), "127 numbers"),
        (huge, "out of range"),
        (
            "[{\"time\":0,\"label\":\"x\",\"id\":1.5,\"data\":[[0]]}]".to_owned(),
            "not a whole number",
        ),
        (
            "[{\"time\":0,\"label\":\"x\",\"id\":1,\"data\":[[0]]}".to_owned(),
            "EOF",
        ),
        (
            user_dat(&vec![simm[0].clone(); MAX_ENCODINGS + 1]),
            "more than",
        ),
    ];
    for (text, says) in cases {
        let e = models::parse(&text, "/etc/howdy/models/alice.dat").unwrap_err();
        let message = e.to_string();
        assert!(
            message.starts_with("/etc/howdy/models/alice.dat: "),
            "{message}"
        );
        assert!(message.contains(says), "{says}: {message}");
    }
}

#[test]
fn one_persons_descriptors_pass_and_others_are_refused() {
    let model = |id: i64, encodings: Vec<Vec<f32>>| Model {
        id,
        label: format!("m{id}"),
        time: 0,
        encodings,
    };
    let simm = descriptors("John_Simm");
    let salley = descriptors("John_Salley");
    assert_eq!(simm.len(), 11);
    assert_eq!(agreement::check_user(&[model(0, simm.clone())]), Ok(()));
    // Two models, one of each person.
    match agreement::check_user(&[model(0, simm[..2].to_vec()), model(1, salley[..1].to_vec())]) {
        Err(Refusal::NotOnePerson {
            second, distance, ..
        }) => {
            assert_eq!(second, (1, 0));
            assert!(distance > SAME_PERSON);
        }
        other => panic!("{other:?}"),
    }
    // Zeros, numbers of the wrong size, random numbers of a descriptor's length but not of one face.
    let zeros = vec![0.0; DIMENSION];
    let large: Vec<f32> = (0..DIMENSION).map(|i| (i % 7) as f32 * 0.3).collect();
    for garbage in [zeros, large] {
        assert!(matches!(
            agreement::check_user(&[model(0, vec![simm[0].clone()]), model(3, vec![garbage])]),
            Err(Refusal::NotADescriptor { model: 3, .. })
        ));
    }
    let mut seed = 7u32;
    let mut noise = || {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
    };
    let random: Vec<Vec<f32>> = (0..2)
        .map(|_| {
            let v: Vec<f32> = (0..DIMENSION).map(|_| noise()).collect();
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter().map(|x| x * 1.4 / n).collect()
        })
        .collect();
    assert!(matches!(
        agreement::check_user(&[model(0, random)]),
        Err(Refusal::NotOnePerson { .. })
    ));
    // The rule's figures hold on dlib's own descriptors.
    for c in reference().chips {
        let n = c.embedding.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!(
            (NORM_RANGE.0..=NORM_RANGE.1).contains(&n),
            "{}: {n}",
            c.path
        );
    }
}

/// The measurement behind [`AGREES_WITH_DLIB`]: each embedder facekey knows, on the 55 johns chips, against dlib's
/// own descriptors of the same chips. Prints the figures (`--nocapture`).
#[test]
fn agreement_of_facekeys_embedders_with_dlib_is_measured_within_the_bound() {
    use facekey_core::embed::Embedder;
    use facekey_core::models::{Catalogue, Role, VerifiedModel};

    let mut config = facekey_config::Config::default();
    config.models.dir = repo("models").canonicalize().unwrap();
    let installed = tempfile::tempdir().unwrap();
    config.models.installed_dir = installed.path().to_owned();
    let catalogue = Catalogue::load(&config);
    let reference = reference();
    let chips: Vec<_> = reference
        .chips
        .iter()
        .map(|c| {
            let bytes = std::fs::read(repo("tests/data/faces").join(&c.path)).unwrap();
            facekey_core::frame::decode_image(&bytes, &c.path)
                .unwrap()
                .to_rgb()
                .unwrap()
        })
        .collect();
    assert_eq!(chips.len(), 55);
    for (name, low, high) in [
        ("int8", 0.03, AGREES_WITH_DLIB),
        ("fp32", 0.03, AGREES_WITH_DLIB),
    ] {
        let entry = catalogue.find(name, Role::Embedder).unwrap();
        let embedder = Embedder::from_file(
            VerifiedModel::read(entry.location()).unwrap(),
            entry.embedder_id(),
            entry.meta(),
        )
        .unwrap();
        let ours: Vec<Vec<f32>> = chips
            .iter()
            .map(|chip| embedder.embed(chip).unwrap().0)
            .collect();
        let measured = Agreement::measure(
            ours.iter()
                .zip(&reference.chips)
                .map(|(o, c)| (o.as_slice(), c.embedding.as_slice())),
        )
        .unwrap();
        println!(
            "agreement {name}: largest distance to dlib's descriptors {:.4} over {} chips (bound {AGREES_WITH_DLIB})",
            measured.largest, measured.chips
        );
        assert_eq!(measured.chips, 55);
        assert!(
            (low..=high).contains(&measured.largest),
            "{name}: {}",
            measured.largest
        );
        assert!(measured.reproduces_dlib());
    }
    // An embedder that does not reproduce dlib: the same chips against another person's descriptors.
    let shifted = Agreement::measure(
        reference
            .chips
            .iter()
            .zip(reference.chips.iter().skip(11))
            .map(|(a, b)| (a.embedding.as_slice(), b.embedding.as_slice())),
    )
    .unwrap();
    assert!(!shifted.reproduces_dlib(), "{shifted:?}");
    assert_eq!(Agreement::measure(std::iter::empty()), None);
}
