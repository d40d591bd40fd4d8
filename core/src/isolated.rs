//! The decision in a confined child process: what `policy::attempt` runs for `Isolation::Confined` (facekey-check,
//! the PAM module with `use_helper`, the `facekey` command).
//!
//! The process forks ([`confine::run_confined`]); the child reads the model files and opens the frame source
//! while it still has its privileges (replay files are opened and checked here and only read later, through
//! their descriptors; a camera starts streaming), then confines itself (an unprivileged account, no new
//! privileges, no file system, a seccomp allow-list) and only then parses the models and the frames: every
//! parser of bytes an attacker can shape runs without privileges. Its outcome comes back over a pipe.
//!
//! This must never: let the child open a file or the camera after it is confined, report a match the child
//! did not send, or wait past the deadline plus [`DEADLINE_GRACE`] (the child is killed and reaped then).

use std::sync::Arc;
use std::time::Instant;

use facekey_config::Config;
use serde::{Deserialize, Serialize};

use crate::confine::{self, Confinement};
use crate::decision::{self, Enrolled, FrameReport, Outcome, Stats, Unavailable, DEADLINE_GRACE};
use crate::engine::Engine;
use crate::frame::{FrameSource, SourceError};
use crate::models::ModelFiles;

/// An [`Outcome`] as it crosses the pipe from the confined child.
#[derive(Debug, Serialize, Deserialize)]
enum Decided {
    Matched {
        label: String,
        sample_id: u32,
        distance: f32,
        stats: Stats,
    },
    NoMatch {
        best_distance: f32,
        stats: Stats,
    },
    NoFace {
        stats: Stats,
    },
    Unavailable(String),
}

impl From<Outcome> for Decided {
    fn from(outcome: Outcome) -> Decided {
        match outcome {
            Outcome::Matched {
                label,
                sample_id,
                distance,
                stats,
            } => Decided::Matched {
                label,
                sample_id,
                distance,
                stats,
            },
            Outcome::NoMatch {
                best_distance,
                stats,
            } => Decided::NoMatch {
                best_distance,
                stats,
            },
            Outcome::NoFace { stats } => Decided::NoFace { stats },
            Outcome::Unavailable(reason) => Decided::Unavailable(reason.to_string()),
        }
    }
}

impl From<Decided> for Outcome {
    fn from(decided: Decided) -> Outcome {
        match decided {
            Decided::Matched {
                label,
                sample_id,
                distance,
                stats,
            } => Outcome::Matched {
                label,
                sample_id,
                distance,
                stats,
            },
            Decided::NoMatch {
                best_distance,
                stats,
            } => Outcome::NoMatch {
                best_distance,
                stats,
            },
            Decided::NoFace { stats } => Outcome::NoFace { stats },
            Decided::Unavailable(reason) => Outcome::Unavailable(Unavailable::Confined(reason)),
        }
    }
}

/// The decision for an enrolment already read, in a confined child; the process must have one thread (the
/// caller has started none: facekey-check's main, the CLI before it loads anything). `open_source` runs in the
/// child before it is confined; `observer` runs in the child, confined (see `policy::Attempt::observer`). With
/// the outcome, whether a frame reached the decision (for the rate limit's refunds); a child that did not
/// answer counts as having analysed frames, since no one can say it did not.
pub(crate) fn authenticate_enrolled(
    enrolled: Enrolled,
    config: &Config,
    open_source: &mut dyn FnMut() -> Result<Box<dyn FrameSource>, SourceError>,
    observer: &mut dyn FnMut(&FrameReport<'_>),
    started: Instant,
    deadline: Instant,
) -> (Outcome, bool) {
    let Enrolled {
        path, enrolment, ..
    } = enrolled;
    let ran = confine::run_confined(
        deadline + DEADLINE_GRACE,
        &Confinement::default(),
        // Privileged: every file and the camera are opened here.
        || (ModelFiles::read(config), open_source()),
        // Confined: only bytes already read and descriptors already open from here on.
        move |(files, source)| -> (Decided, bool) {
            let hint = source.as_ref().ok().and_then(|s| s.frame_size_hint());
            let engine = files
                .and_then(|files| Engine::start_from(files, config, move || hint))
                .map(Arc::new);
            let mut analysed = false;
            let outcome = decision::decide_opened(
                engine,
                source,
                (path, enrolment),
                config,
                started,
                deadline,
                &mut |report| {
                    analysed = true;
                    observer(report)
                },
            );
            (outcome.into(), analysed)
        },
    );
    match ran {
        Ok(ran) => {
            let (decided, analysed) = ran.value;
            let mut outcome: Outcome = decided.into();
            if let Some(stats) = outcome.stats_mut() {
                stats.confined = Some(ran.confined.to_string());
            }
            (outcome, analysed)
        }
        Err(e) => (
            Outcome::Unavailable(Unavailable::Confined(e.to_string())),
            true,
        ),
    }
}
