//! `facekey identify`: who, among every enrolled user, is in front of the camera (root only). The enrolments
//! are read here; the frames are parsed in a confined child, as for `facekey test`.

use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use facekey_core::confine::{self, Confinement};
use facekey_core::decision::DEADLINE_GRACE;
use facekey_core::engine::Engine;
use facekey_core::identify::{self, Identification};
use facekey_core::models::{ActiveModels, ModelFiles};
use facekey_core::policy;
use facekey_core::source;
use facekey_core::store::{Enrolment, Store};

use crate::{load_config, CliResult, Failure};

#[derive(Args, Debug)]
pub(crate) struct IdentifyArgs {
    /// Read frames from this source instead of `[camera] source` (v4l2:DEVICE, file:PATH[,PATH...], dir:PATH).
    #[arg(long, value_name = "SPEC")]
    source: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn identify(
    config_path: Option<&std::path::Path>,
    args: &IdentifyArgs,
) -> CliResult<ExitCode> {
    if !nix::unistd::geteuid().is_root() {
        return Err(Failure::new(
            "facekey identify compares the camera's face with every user's enrolment: run it as root",
        ));
    }
    let mut config = load_config(config_path)?;
    if let Some(spec) = &args.source {
        config.camera.source = spec.clone();
    }
    // Every enrolment made by the configured embedder; the others cannot be compared and are named.
    let store = Store::new(&config.storage.faces_dir);
    let expected = ActiveModels::resolve(&config)
        .map_err(|e| Failure::from_error("models", &e))?
        .embedder
        .embedder_id();
    let mut names = Vec::new();
    let mut enrolments: Vec<Enrolment> = Vec::new();
    for user in store
        .list_users()
        .map_err(|e| Failure::from_error("enrolment store", &e))?
    {
        match store.load(&user) {
            Ok(Some(e)) if e.samples.is_empty() => {}
            Ok(Some(e)) if e.embedder != expected => {
                eprintln!("facekey: {user}: enrolled with another embedder, left out (re-enrol with `facekey add`)");
            }
            Ok(Some(e)) => {
                names.push(user.to_string());
                enrolments.push(e);
            }
            Ok(None) => {}
            Err(e) => eprintln!("facekey: {user}: left out: {e}"),
        }
    }
    if enrolments.is_empty() {
        return Err(Failure::new(
            "no user has an enrolment to compare with (facekey add)",
        ));
    }
    let started = Instant::now();
    let deadline = policy::deadline_after(started, config.auth.timeout);
    let ran = confine::run_confined(
        deadline + DEADLINE_GRACE,
        &Confinement::default(),
        || {
            (
                ModelFiles::read(&config),
                source::open_source_with(&config.camera.source, &config.camera),
            )
        },
        |(files, source)| -> Identification {
            let mut source = match source {
                Ok(s) => s,
                Err(e) => return Identification::Unavailable(format!("frame source: {e}")),
            };
            let hint = source.frame_size_hint();
            let engine = match files.and_then(|f| Engine::start_from(f, &config, move || hint)) {
                Ok(e) => e,
                Err(e) => return Identification::Unavailable(format!("models: {e}")),
            };
            identify::identify(
                &engine,
                &enrolments,
                &config,
                source.as_mut(),
                started,
                deadline,
            )
        },
    )
    .map_err(|e| Failure::from_error("confined frame reader", &e))?;
    let users = enrolments.len();
    let (code, text, json) = match ran.value {
        Identification::Identified {
            user,
            score,
            ahead_by,
            threshold,
            stats,
        } => (
            0,
            format!(
                "identified {}: score {score:.3} (threshold {threshold:.3} for {users} enrolled user(s)), \
                 {ahead_by:.3} ahead of the next user, after {} frame(s) in {} ms",
                names[user],
                stats.frames,
                stats.elapsed.as_millis()
            ),
            serde_json::json!({"identified": names[user], "score": score, "ahead_by": finite(ahead_by),
                "threshold": threshold, "users": users, "frames": stats.frames}),
        ),
        Identification::Nobody {
            closest,
            threshold,
            stats,
        } => (
            1,
            format!(
                "nobody identified among {users} enrolled user(s) (threshold {threshold:.3}, margin {:.2}): {}; {} frame(s), {} face(s) in {} ms",
                identify::MARGIN,
                match closest {
                    Some((u, s)) => format!("closest {} at {s:.3}", names[u]),
                    None => "no face counted".into(),
                },
                stats.frames,
                stats.faces,
                stats.elapsed.as_millis()
            ),
            serde_json::json!({"identified": null, "closest": closest.map(|(u, s)| serde_json::json!({"user": names[u], "score": s})),
                "threshold": threshold, "users": users, "frames": stats.frames}),
        ),
        Identification::Unavailable(reason) => (
            2,
            format!("unavailable: {reason}"),
            serde_json::json!({"identified": null, "unavailable": reason}),
        ),
    };
    if args.json {
        println!("{json}");
    } else {
        println!("{text}");
    }
    Ok(ExitCode::from(code))
}

/// JSON has no infinity: a lone enrolled user is "ahead" of nobody.
fn finite(x: f32) -> Option<f32> {
    x.is_finite().then_some(x)
}
