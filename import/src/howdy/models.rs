//! A user's Howdy face models: `models/USER.dat`, the JSON list Howdy's `howdy add` appends to, one entry per
//! model: `{"time": unix seconds, "label": text, "id": number, "data": [[128 numbers], ...]}`, each inner list one
//! dlib face descriptor (Howdy 2 and 3 write the same shape).
//!
//! Must never: panic, accept an encoding that is not exactly [`DIMENSION`] finite numbers, or read more than
//! [`super::MAX_MODELS_BYTES`] (the caller reads the file with that cap; [`MAX_ENCODINGS`] bounds what the
//! parsed list may hold).

use serde::Deserialize;

use super::HowdyError;

/// The length of a dlib face descriptor.
pub const DIMENSION: usize = 128;
/// The most encodings read from one user's file (Howdy warns from the fourth model on).
pub const MAX_ENCODINGS: usize = 1024;

/// One Howdy model: what one `howdy add` stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub id: i64,
    pub label: String,
    pub time: i64,
    /// dlib descriptors, each [`DIMENSION`] long.
    pub encodings: Vec<Vec<f32>>,
}

/// Fields Howdy does not write are ignored; the four it writes must be there.
#[derive(Deserialize)]
struct RawModel {
    time: serde_json::Number,
    label: String,
    id: serde_json::Number,
    data: Vec<Vec<serde_json::Number>>,
}

/// Parse the text of a `USER.dat`; `origin` (its path) names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<Vec<Model>, HowdyError> {
    let error = |reason: String| HowdyError::Models {
        origin: origin.to_owned(),
        reason,
    };
    let raw: Vec<RawModel> = serde_json::from_str(text).map_err(|e| {
        error(format!(
            "not Howdy's model list (a JSON list of {{time, label, id, data}}): {e}"
        ))
    })?;
    if raw.is_empty() {
        return Err(error("no model in the file".into()));
    }
    let total: usize = raw.iter().map(|m| m.data.len()).sum();
    if total > MAX_ENCODINGS {
        return Err(error(format!(
            "{total} encodings: more than the {MAX_ENCODINGS} a Howdy user could have added"
        )));
    }
    raw.into_iter()
        .enumerate()
        .map(|(index, m)| {
            let id = m.id.as_i64().ok_or_else(|| {
                error(format!("model {index}: id {} is not a whole number", m.id))
            })?;
            // Howdy writes int(time.time()); a float from another writer is taken to the second.
            let time = m
                .time
                .as_i64()
                .or_else(|| m.time.as_f64().map(|t| t as i64))
                .unwrap_or(0);
            if m.data.is_empty() {
                return Err(error(format!("model id {id}: no encoding")));
            }
            let encodings = m
                .data
                .iter()
                .enumerate()
                .map(|(n, numbers)| {
                    encoding(numbers)
                        .map_err(|why| error(format!("model id {id}, encoding {n}: {why}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Model {
                id,
                label: m.label,
                time,
                encodings,
            })
        })
        .collect()
}

fn encoding(numbers: &[serde_json::Number]) -> Result<Vec<f32>, String> {
    if numbers.len() != DIMENSION {
        return Err(format!(
            "{} numbers, a dlib descriptor has {DIMENSION}",
            numbers.len()
        ));
    }
    numbers
        .iter()
        .enumerate()
        .map(|(i, n)| match n.as_f64().map(|x| x as f32) {
            Some(x) if x.is_finite() => Ok(x),
            _ => Err(format!("number {i} ({n}) is out of range")),
        })
        .collect()
}
