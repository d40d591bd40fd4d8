//! Rules a parsed configuration must satisfy beyond its types.
//!
//! Each rule names the key it is about; `locate` turns that into a line in the file. Rules only
//! look at values: nothing here touches the filesystem (whether a directory exists is the
//! engine's question, asked when it is used).

use std::path::Path;

use crate::{Camera, Config};

/// A broken rule: which key, which list element if the key is a list, and why.
#[derive(Debug)]
pub(crate) struct Violation {
    /// Dotted path, `section.key`.
    pub key: &'static str,
    /// Index into the list value, when one element is at fault.
    pub element: Option<usize>,
    pub message: String,
}

impl Violation {
    fn new(key: &'static str, message: impl Into<String>) -> Self {
        Violation {
            key,
            element: None,
            message: message.into(),
        }
    }
}

/// The first rule `config` breaks, in section order.
pub(crate) fn check(config: &Config) -> Result<(), Violation> {
    camera(&config.camera)?;

    let d = &config.detection;
    in_range_u32("detection.max_height", d.max_height, 64, 4096)?;
    open_unit("detection.score_threshold", d.score_threshold)?;
    open_unit("detection.nms_iou", d.nms_iou)?;

    let m = &config.models;
    absolute("models.dir", &m.dir)?;
    absolute("models.installed_dir", &m.installed_dir)?;
    model_name("models.detector", &m.detector)?;
    model_name("models.embedder", &m.embedder)?;
    if let Some(file) = &m.detector_file {
        absolute("models.detector_file", file)?;
    }
    if let Some(hash) = &m.detector_sha256 {
        sha256("models.detector_sha256", hash)?;
    }
    if let Some(file) = &m.embedder_file {
        absolute("models.embedder_file", file)?;
    }
    if let Some(hash) = &m.embedder_sha256 {
        sha256("models.embedder_sha256", hash)?;
    }

    if let Some(threshold) = config.matching.threshold {
        // Written as a positive test so NaN fails it.
        if !(threshold.is_finite() && threshold > 0.0 && threshold <= 2.0) {
            return Err(Violation::new(
                "matching.threshold",
                format!("must be greater than 0 and at most 2, found {threshold}"),
            ));
        }
    }
    at_least_one(
        "matching.required_matches",
        config.matching.required_matches.into(),
    )?;

    let timeout = config.auth.timeout;
    if !(timeout > 0.0 && timeout <= 60.0) {
        return Err(Violation::new(
            "auth.timeout",
            format!("must be greater than 0 and at most 60 seconds, found {timeout}"),
        ));
    }

    absolute("storage.faces_dir", &config.storage.faces_dir)?;
    absolute("camera.emitter_settings", &config.camera.emitter_settings)?;

    service_names("pam.services", &config.pam.services, |_| None)?;
    service_names(
        "pam.other_user_services",
        &config.pam.other_user_services,
        |service| {
            (!config.pam.services.iter().any(|s| s == service)).then(|| {
                format!(
                    "{service:?} is not in pam.services, so facekey never answers for it: add it there too, \
                     or remove it here"
                )
            })
        },
    )?;

    absolute("general.audit_socket", &config.general.audit_socket)?;
    let r = &config.rate_limit;
    at_least_one("rate_limit.max_failures", r.max_failures.into())?;
    at_least_one("rate_limit.window", r.window)?;
    at_least_one(
        "rate_limit.max_failures_per_day",
        r.max_failures_per_day.into(),
    )?;
    absolute("rate_limit.state_dir", &r.state_dir)?;
    Ok(())
}

/// A model name: 1 to 64 characters from `[a-z0-9._-]`, starting with a letter or digit (it names files and
/// manifest entries).
pub fn is_model_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (1..=64).contains(&bytes.len())
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-_".contains(b))
}

fn model_name(key: &'static str, name: &str) -> Result<(), Violation> {
    if is_model_name(name) {
        return Ok(());
    }
    Err(Violation::new(
        key,
        format!(
            "{name:?} is not a model name (1 to 64 of a-z, 0-9, '.', '-', '_'; `facekey model list` shows the models)"
        ),
    ))
}

/// A list of PAM service names: each non-empty, without whitespace, never `sshd`, and passing `more`.
fn service_names(
    key: &'static str,
    services: &[String],
    more: impl Fn(&str) -> Option<String>,
) -> Result<(), Violation> {
    for (i, service) in services.iter().enumerate() {
        let message = if service.is_empty() {
            Some("service names must not be empty".to_owned())
        } else if service.chars().any(char::is_whitespace) {
            Some(format!("service name {service:?} contains whitespace"))
        } else if service == "sshd" {
            // The camera is on the server, the person is on the other end of the connection.
            Some("\"sshd\" is refused: a face at this machine's camera does not identify a remote user".to_owned())
        } else {
            more(service)
        };
        if let Some(message) = message {
            return Err(Violation {
                key,
                element: Some(i),
                message,
            });
        }
    }
    Ok(())
}

fn camera(c: &Camera) -> Result<(), Violation> {
    match (c.frame_width, c.frame_height) {
        (0, 0) => {}
        // Point at the key the file does set: the missing one has no line to show.
        (0, _) => {
            return Err(Violation::new(
                "camera.frame_height",
                "is set but frame_width is not: set both, or leave both at 0 for automatic",
            ))
        }
        (_, 0) => {
            return Err(Violation::new(
                "camera.frame_width",
                "is set but frame_height is not: set both, or leave both at 0 for automatic",
            ))
        }
        (w, h) => {
            in_range_u32("camera.frame_width", w, 16, 8192)?;
            in_range_u32("camera.frame_height", h, 16, 8192)?;
        }
    }
    in_range_u32("camera.fps", c.fps, 0, 240)?;
    in_range_u32("camera.exposure", c.exposure, 0, 100_000)?;
    if ![0, 90, 180, 270].contains(&c.rotate) {
        return Err(Violation::new(
            "camera.rotate",
            format!("must be 0, 90, 180 or 270, found {}", c.rotate),
        ));
    }
    // Positive tests, so NaN fails them.
    if let Some(dark) = c.dark_threshold {
        if !(dark > 0.0 && dark <= 100.0) {
            return Err(Violation::new(
                "camera.dark_threshold",
                format!("must be greater than 0 and at most 100 (percent), found {dark}"),
            ));
        }
    }
    let change = c.min_face_change;
    if !((0.0..=255.0).contains(&change)) {
        return Err(Violation::new(
            "camera.min_face_change",
            format!("must be between 0 and 255 (grey levels), found {change}"),
        ));
    }
    Ok(())
}

fn in_range_u32(key: &'static str, value: u32, min: u32, max: u32) -> Result<(), Violation> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(Violation::new(
            key,
            format!("must be between {min} and {max}, found {value}"),
        ))
    }
}

fn open_unit(key: &'static str, value: f32) -> Result<(), Violation> {
    if value > 0.0 && value < 1.0 {
        Ok(())
    } else {
        Err(Violation::new(
            key,
            format!("must be greater than 0 and less than 1, found {value}"),
        ))
    }
}

fn at_least_one(key: &'static str, value: u64) -> Result<(), Violation> {
    if value >= 1 {
        Ok(())
    } else {
        Err(Violation::new(key, "must be at least 1, found 0"))
    }
}

/// PAM modules run with whatever working directory the calling program had: a relative path
/// would point somewhere different for `sudo` and for the login screen.
fn absolute(key: &'static str, path: &Path) -> Result<(), Violation> {
    if path.is_absolute() {
        Ok(())
    } else {
        Err(Violation::new(
            key,
            format!(
                "must be an absolute path, found {:?}",
                path.display().to_string()
            ),
        ))
    }
}

fn sha256(key: &'static str, hash: &str) -> Result<(), Violation> {
    if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(Violation::new(
            key,
            format!(
                "must be 64 hexadecimal characters (as printed by sha256sum), found {hash:?} ({} characters)",
                hash.chars().count()
            ),
        ))
    }
}
