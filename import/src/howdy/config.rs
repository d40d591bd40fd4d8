//! Each key of Howdy's `config.ini` mapped to the facekey key that means the same thing, with the unit or
//! meaning changed where they differ, or said to have no equivalent and why.
//!
//! The mapping reads values the way Howdy does (configparser's `getboolean`, `getint`, `getfloat`) and writes
//! values facekey's configuration accepts. It must never make facekey looser than its own rule: Howdy's
//! certainty becomes a threshold no larger than the [`ThresholdLimit`] the caller gives (the active embedder's
//! calibrated one, less the agreement distance when Howdy's face models are imported), and keys whose Howdy
//! value would widen what facekey accepts (remote sessions, a closed lid) are not imported at all.

use std::fmt;

use super::ini::Ini;

/// A value for facekey's configuration.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) if x.fract() == 0.0 => write!(f, "{x:.1}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Str(s) => write!(f, "{s:?}"),
        }
    }
}

/// What became of one Howdy key.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// facekey's `[section] key` is set to `value`; `None` removes the key so that facekey's default applies.
    Set {
        section: &'static str,
        key: &'static str,
        value: Option<Value>,
        note: Option<String>,
    },
    /// facekey always behaves as this value asks; nothing to write.
    Always { note: String },
    /// Nothing in facekey means this, or the value asks for something facekey does not do.
    NoEquivalent { reason: String },
    /// Howdy itself would not accept the value.
    Invalid { reason: String },
    /// Not a key Howdy 2 or 3 reads.
    Unknown,
}

/// One key of the Howdy file and what it became.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub section: String,
    pub key: String,
    pub value: String,
    pub line: usize,
    pub outcome: Outcome,
}

/// The largest `[matching] threshold` the import may write, and why that one.
#[derive(Debug, Clone, PartialEq)]
pub struct ThresholdLimit {
    /// The active embedder's calibrated threshold (what applies when the key is not set).
    pub calibrated: f32,
    /// The largest value written: `calibrated`, or less (see [`super::agreement::threshold_limit`]).
    pub largest: f32,
    /// Why `largest` is below `calibrated`, when it is.
    pub why: Option<String>,
}

/// Map every key of `ini`, in file order.
pub fn map(ini: &Ini, limit: &ThresholdLimit) -> Vec<Item> {
    let mut items = Vec::new();
    for section in &ini.sections {
        for entry in &section.entries {
            let outcome = map_key(ini, &section.name, &entry.key, &entry.value, limit);
            items.push(Item {
                section: section.name.clone(),
                key: entry.key.clone(),
                value: entry.value.clone(),
                line: entry.line,
                outcome,
            });
        }
    }
    items
}

fn set(section: &'static str, key: &'static str, value: Value) -> Outcome {
    Outcome::Set {
        section,
        key,
        value: Some(value),
        note: None,
    }
}

fn set_noted(section: &'static str, key: &'static str, value: Value, note: String) -> Outcome {
    Outcome::Set {
        section,
        key,
        value: Some(value),
        note: Some(note),
    }
}

fn none(reason: &str) -> Outcome {
    Outcome::NoEquivalent {
        reason: reason.to_owned(),
    }
}

fn invalid(reason: String) -> Outcome {
    Outcome::Invalid { reason }
}

/// configparser's `getboolean`.
fn boolean(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Ok(true),
        "0" | "no" | "false" | "off" => Ok(false),
        _ => Err(format!(
            "{value:?} is not a boolean (true/false, yes/no, on/off, 1/0)"
        )),
    }
}

/// configparser's `getint` (Python's `int`), for the range Howdy's keys use.
fn integer(value: &str) -> Result<i64, String> {
    value
        .parse::<i64>()
        .map_err(|_| format!("{value:?} is not a whole number"))
}

/// configparser's `getfloat`, finite values only.
fn float(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(x) if x.is_finite() => Ok(x),
        _ => Err(format!("{value:?} is not a finite number")),
    }
}

/// Round to 4 decimals, down (a threshold rounded up could be looser than the limit it was held to). The limit is
/// an f32: 0.37 arrives as 0.36999999; the 1e-7 allowance keeps it 0.37, which reads back as the same f32.
fn round_down(x: f64) -> f64 {
    (x * 10_000.0 + 1e-3).floor() / 10_000.0
}

fn map_key(ini: &Ini, section: &str, key: &str, value: &str, limit: &ThresholdLimit) -> Outcome {
    let parsed = match (section, key) {
        ("core", "detection_notice") => {
            boolean(value).map(|b| set("pam", "detection_notice", Value::Bool(b)))
        }
        ("core", "no_confirmation") => boolean(value).map(|b| set("pam", "confirmation", Value::Bool(!b))),
        ("core", "disabled") => boolean(value).map(|b| set("general", "disabled", Value::Bool(b))),
        // Howdy 2 says ignore_ssh, Howdy 3 abort_if_ssh.
        ("core", "ignore_ssh" | "abort_if_ssh") => boolean(value).map(|b| {
            if b {
                Outcome::Always {
                    note: "facekey never answers for a remote session (PAM_RHOST, a remote logind session) nor \
                           for the sshd service"
                        .into(),
                }
            } else {
                none("facekey never lets a face at this camera authenticate a remote session; not loosened")
            }
        }),
        ("core", "ignore_closed_lid" | "abort_if_lid_closed") => boolean(value).map(|b| {
            if b {
                Outcome::Always {
                    note: "facekey answers \"unavailable\" while a laptop lid is closed".into(),
                }
            } else {
                none("facekey always skips the camera while a laptop lid is closed; not changed")
            }
        }),
        ("core", "timeout_notice") => Ok(none(
            "facekey's PAM module says nothing on a timeout; PAM moves on to the password",
        )),
        ("core", "suppress_unknown") => Ok(none(
            "a user without an enrolment gets \"unavailable\" and PAM moves on without a message",
        )),
        ("core", "use_cnn") => Ok(none("facekey always detects with YuNet (no HOG/CNN choice)")),
        ("core", "workaround") => Ok(none(
            "facekey runs before the password prompt and never sends keystrokes",
        )),
        ("video", "certainty") => float(value).map(|c| certainty(c, limit)),
        ("video", "timeout") => integer(value).map(|t| match t {
            ..=0 => invalid(format!("timeout {t}: must be at least 1 second")),
            1..=60 => set("auth", "timeout", Value::Float(t as f64)),
            _ => set_noted(
                "auth",
                "timeout",
                Value::Float(60.0),
                format!("{t} s is longer than facekey allows: 60 s"),
            ),
        }),
        ("video", "device_path") => Ok(device_path(value)),
        ("video", "max_height") => float(value).map(|h| {
            let rounded = h.round().clamp(64.0, 4096.0);
            if (rounded - h).abs() > 0.5 {
                set_noted(
                    "detection",
                    "max_height",
                    Value::Int(rounded as i64),
                    format!("facekey takes 64 to 4096 rows: {rounded}"),
                )
            } else {
                set("detection", "max_height", Value::Int(rounded as i64))
            }
        }),
        ("video", "frame_width") => frame_size(ini, "frame_width", "frame_height", value),
        ("video", "frame_height") => frame_size(ini, "frame_height", "frame_width", value),
        ("video", "dark_threshold") => float(value).map(|d| match d {
            d if d <= 0.0 => none(
                "0 or less skips every frame with a single dark pixel; facekey needs more than 0: kept as it is",
            ),
            d if d > 100.0 => set_noted(
                "camera",
                "dark_threshold",
                Value::Float(100.0),
                "above 100 never skips a frame, as 100 does".into(),
            ),
            d => set("camera", "dark_threshold", Value::Float(d)),
        }),
        ("video", "force_mjpeg") => boolean(value).map(|b| set("camera", "force_mjpeg", Value::Bool(b))),
        ("video", "exposure") => integer(value).map(|e| match e {
            ..=0 => set_noted(
                "camera",
                "exposure",
                Value::Int(0),
                "automatic exposure".into(),
            ),
            1..=100_000 => set_noted(
                "camera",
                "exposure",
                Value::Int(e),
                "both in 100 µs units (V4L2 exposure time, absolute)".into(),
            ),
            _ => invalid(format!("exposure {e} is over 10 s (100000 x 100 µs)")),
        }),
        ("video", "device_fps") => integer(value).map(|r| match r {
            ..=0 => set_noted(
                "camera",
                "fps",
                Value::Int(0),
                "automatic: facekey takes the fastest rate offered, up to 30".into(),
            ),
            1..=240 => set("camera", "fps", Value::Int(r)),
            _ => invalid(format!("device_fps {r}: facekey takes at most 240")),
        }),
        ("video", "rotate") => integer(value).map(|r| match r {
            0 => set_noted(
                "camera",
                "rotate",
                Value::Int(0),
                "Howdy's 0 is landscape only: no rotation".into(),
            ),
            1 => none(
                "Howdy's 1 tries landscape and both portrait turns frame after frame; facekey turns every frame \
                 by one fixed angle: set [camera] rotate (0, 90, 180, 270) by hand after `facekey snapshot`",
            ),
            2 => none(
                "Howdy's 2 tries both portrait turns frame after frame; facekey turns every frame by one fixed \
                 angle: set [camera] rotate = 90 or 270 by hand after `facekey snapshot`",
            ),
            _ => invalid(format!("rotate {r}: Howdy knows 0 (landscape), 1 (both), 2 (portrait)")),
        }),
        ("video", "warn_no_device") => Ok(none("`facekey doctor` reports a missing camera")),
        ("video", "recording_plugin" | "device_format") => Ok(none(
            "facekey reads the camera through V4L2 itself (no OpenCV, ffmpeg or pyv4l2)",
        )),
        ("snapshots", _) => Ok(none(
            "facekey keeps no pictures of attempts (`facekey snapshot` takes one on demand)",
        )),
        ("rubberstamps", _) => Ok(none(
            "facekey has no gesture checks after recognition; its liveness check is [camera] min_face_change",
        )),
        ("debug", _) => Ok(none(
            "`facekey test` shows the decision frame by frame; `facekey auth -v` the detail",
        )),
        _ => Ok(Outcome::Unknown),
    };
    parsed.unwrap_or_else(invalid)
}

/// The certainty Howdy uses when its file has none (compare.py's fallback).
pub const HOWDY_DEFAULT_CERTAINTY: f64 = 3.5;

/// Howdy accepts a frame when dlib's distance x 10 is under `certainty`; facekey when the distance is under
/// `threshold`: the same network's Euclidean distance, so threshold = certainty / 10, held to the limit.
pub fn certainty(c: f64, limit: &ThresholdLimit) -> Outcome {
    if c <= 0.0 {
        return invalid(format!("certainty {c}: Howdy would accept no face at all"));
    }
    let threshold = c / 10.0;
    let largest = f64::from(limit.largest);
    let calibrated = f64::from(limit.calibrated);
    if threshold <= largest {
        let written = round_down(threshold);
        return set_noted(
            "matching",
            "threshold",
            Value::Float(written),
            "certainty / 10 (Howdy's scale is dlib's distance x 10)".into(),
        );
    }
    if largest >= calibrated {
        return Outcome::Set {
            section: "matching",
            key: "threshold",
            value: None,
            note: Some(format!(
                "capped: {threshold} is looser than the embedder's calibrated {}; the calibrated threshold applies",
                limit.calibrated
            )),
        };
    }
    set_noted(
        "matching",
        "threshold",
        Value::Float(round_down(largest)),
        format!(
            "capped: {threshold} is looser than {}{}",
            round_down(largest),
            limit
                .why
                .as_deref()
                .map(|w| format!(" ({w})"))
                .unwrap_or_default()
        ),
    )
}

fn device_path(value: &str) -> Outcome {
    if value.eq_ignore_ascii_case("none") || value.is_empty() {
        return none("Howdy's placeholder for \"no camera chosen\": [camera] source left as it is");
    }
    if !value.starts_with('/') || value.contains(',') || value.chars().any(char::is_control) {
        return invalid(format!("{value:?} is not an absolute device path"));
    }
    set("camera", "source", Value::Str(format!("v4l2:{value}")))
}

/// `frame_width` and `frame_height`: Howdy sets each on its own and -1 asks for the largest size; facekey takes
/// both or neither (0 and 0: the size closest to 640x480).
fn frame_size(ini: &Ini, key: &str, other: &str, value: &str) -> Result<Outcome, String> {
    let target: &'static str = if key == "frame_width" {
        "frame_width"
    } else {
        "frame_height"
    };
    let size = integer(value)?;
    let other_size = ini
        .get("video", other)
        .map(|e| integer(&e.value))
        .transpose()
        .ok()
        .flatten()
        .unwrap_or(-1);
    Ok(match (size, other_size) {
        (s, _) if s <= 0 => set_noted(
            "camera",
            target,
            Value::Int(0),
            "Howdy's -1 takes the largest size; facekey has no such choice: 0, the size closest to 640x480 \
             (faces are detected at [detection] max_height rows anyway)"
                .into(),
        ),
        (s, _) if !(16..=8192).contains(&s) => invalid(format!("{key} {s}: facekey takes 16 to 8192")),
        (_, o) if !(16..=8192).contains(&o) => none(&format!(
            "facekey needs frame_width and frame_height together, and {other} is not a size: left automatic"
        )),
        (s, _) => set("camera", target, Value::Int(s)),
    })
}
