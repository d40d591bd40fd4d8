#![forbid(unsafe_code)]
//! facekey configuration: the typed, validated form of `/etc/facekey/config.toml`.
//!
//! This crate only parses, validates and renders. It never opens cameras, models or face stores,
//! and never judges whether a file is trustworthy: the engine checks ownership and permissions
//! on the file it opened, then hands the text to [`Config::from_toml_str`]. Every error names
//! the file, the line and column, and the dotted key (`section.key`), in one line.
//!
//! The shipped default file is [`DEFAULT_CONFIG_TOML`]; a test keeps it equal to
//! [`Config::default`], so the documentation and the code cannot drift apart.

mod error;
mod locate;
mod validate;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use error::ConfigError;
pub use validate::is_model_name;

/// Where the PAM module and the CLI read the configuration from unless told otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/facekey/config.toml";

/// The shipped default configuration file, every key present and commented.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../config.toml");

/// The dark-frame threshold (percent) when neither `camera.dark_threshold` nor a threshold learnt for the camera
/// by `facekey ir discover` gives one.
pub const DEFAULT_DARK_THRESHOLD: f32 = 60.0;

/// Where `facekey ir` keeps the infrared emitter settings unless `camera.emitter_settings` says otherwise.
pub const DEFAULT_EMITTER_SETTINGS: &str = "/etc/facekey/ir.toml";

/// The shipped embedder's calibrated threshold: the largest embedding distance still accepted as the same face,
/// used when `matching.threshold` is not set.
///
/// The one place this number lives; the shipped file must say the same (a test checks).
pub const DEFAULT_THRESHOLD: f32 = 0.42;

/// Default `matching.required_matches`: how many frames the rule needs. Chosen with `threshold` and `rule` by
/// the criterion in docs/accuracy.md.
pub const DEFAULT_REQUIRED_MATCHES: u32 = 2;

/// PAM services facekey answers for by default: the password services that Debian's packages of login, sudo,
/// su (util-linux), polkit and the display managers and lock screens install under /etc/pam.d or
/// /usr/lib/pam.d (tests/data/pam.d holds those files; config/tests/pam_services.rs checks this list against them). Never `sshd`:
/// a face in front of the server's camera says nothing about who is typing on the remote end.
const DEFAULT_PAM_SERVICES: &[&str] = &[
    "login",
    "sudo",
    "sudo-i",
    "su",
    "su-l",
    "polkit-1",
    "gdm-password",
    "sddm",
    "lightdm",
    "xscreensaver",
    "kde",
    "i3lock",
    "swaylock",
    "gnome-screensaver",
    "cinnamon-screensaver",
    "mate-screensaver",
    "xfce4-screensaver",
    "hyprlock",
];

/// The whole configuration. Every section and key is optional in the file; missing ones take
/// the defaults below.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub general: General,
    pub camera: Camera,
    pub detection: Detection,
    pub models: Models,
    pub matching: Matching,
    pub auth: Auth,
    pub storage: Storage,
    pub pam: Pam,
    pub rate_limit: RateLimit,
}

/// `[general]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct General {
    /// When true, facekey answers "unavailable" for everyone and PAM falls through to the
    /// next method (usually the password).
    pub disabled: bool,
    /// The syslog socket the `facekey` command sends its audit records to (facility AUTHPRIV): who changed
    /// which user's enrolment, the models or the configuration. Absolute. The PAM module logs through the
    /// system's syslog(3) instead.
    pub audit_socket: PathBuf,
}

impl Default for General {
    fn default() -> Self {
        General {
            disabled: false,
            audit_socket: PathBuf::from(DEFAULT_AUDIT_SOCKET),
        }
    }
}

/// Where syslog listens on Linux.
pub const DEFAULT_AUDIT_SOCKET: &str = "/dev/log";

/// `[camera]`: the device, how to drive it, and what a frame from it must look like.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Camera {
    /// Where frames come from: `v4l2:/dev/videoN` (or `v4l2:/dev/v4l/by-id/...`),
    /// `file:PATH[,PATH...]` or `dir:PATH`. The engine parses the form; this crate keeps the text.
    pub source: String,
    /// Capture width in pixels; 0 (with `frame_height` 0) lets facekey pick the size closest to
    /// 640x480. Otherwise 16..=8192, and `frame_height` must be set too.
    pub frame_width: u32,
    /// Capture height in pixels; 0 together with `frame_width` 0 means automatic.
    pub frame_height: u32,
    /// Frames per second asked of the camera; 0 takes the fastest rate it offers up to 30.
    /// At most 240.
    pub fps: u32,
    /// Capture MJPG even when an uncompressed format is offered; a camera without MJPG is then
    /// refused.
    pub force_mjpeg: bool,
    /// Manual exposure time in units of 100 microseconds (V4L2 "exposure time, absolute");
    /// 0 leaves the camera's automatic exposure alone. At most 100000 (10 seconds).
    pub exposure: u32,
    /// Clockwise rotation applied to every frame: 0, 90, 180 or 270 degrees.
    pub rotate: u32,
    /// Refuse a camera that is not infrared (one offering anything but grey formats).
    pub require_ir: bool,
    /// Accept a virtual capture device (vivid, v4l2loopback, akvcam, ...: whatever program feeds it chooses
    /// the frames). Off by default; for tests with the kernel's vivid driver only.
    pub allow_virtual: bool,
    /// A frame whose darkest eighth of the brightness range holds more than this percentage of
    /// the pixels is skipped as dark (an IR emitter between flashes). Greater than 0, at most 100;
    /// 100 never skips. Unset: the threshold `facekey ir discover` learnt for the camera, else
    /// [`DEFAULT_DARK_THRESHOLD`] (the engine's `camera::emitter::dark_threshold` chooses).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dark_threshold: Option<f32>,
    /// On a camera, a frame only counts as a match when the face in it differs from the face in
    /// the previous frame by at least this much (mean absolute difference in grey levels of the
    /// two face crops): a frozen or injected picture never changes. 0 turns the check off.
    /// At least 0, at most 255.
    pub min_face_change: f32,
    /// The infrared emitter settings `facekey ir` keeps (the extension-unit control that lights a
    /// camera's emitter, per camera), applied each time the camera is opened. Absolute; trusted
    /// only when root-owned and not writable by group or others.
    pub emitter_settings: PathBuf,
}

impl Default for Camera {
    fn default() -> Self {
        Camera {
            source: "v4l2:/dev/video0".to_owned(),
            frame_width: 0,
            frame_height: 0,
            fps: 0,
            force_mjpeg: false,
            exposure: 0,
            rotate: 0,
            require_ir: true,
            allow_virtual: false,
            dark_threshold: None,
            emitter_settings: PathBuf::from(DEFAULT_EMITTER_SETTINGS),
            min_face_change: 0.25,
        }
    }
}

/// `[detection]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Detection {
    /// Frames taller than this (pixels) are downscaled before detection. 64..=4096.
    pub max_height: u32,
    /// Minimum detector confidence for a face, in (0, 1).
    pub score_threshold: f32,
    /// Overlap (intersection over union) above which two detections are the same face, in (0, 1).
    pub nms_iou: f32,
    /// Detections smaller than this (pixels, in the original frame) are ignored.
    pub min_face_size: u32,
    /// Look again, at a larger scale and then with contrast stretched, when the first look finds only a
    /// candidate under `score_threshold`.
    pub second_look: bool,
}

impl Default for Detection {
    fn default() -> Self {
        Detection {
            max_height: 320,
            score_threshold: 0.9,
            second_look: true,
            nms_iou: 0.3,
            min_face_size: 40,
        }
    }
}

/// `[models]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Models {
    /// Directory holding the model files the package ships. Absolute.
    pub dir: PathBuf,
    /// Directory of models installed with `facekey model install` or `import-dlib`, with their manifest. Absolute.
    pub installed_dir: PathBuf,
    /// Which detector to run, by name (`facekey model list`).
    pub detector: String,
    /// Which embedder to run, by name (`facekey model list`): "int8" is the shipped one.
    pub embedder: String,
    /// Replacement detector model. Absent: the named model's own file. Absolute when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detector_file: Option<PathBuf>,
    /// SHA-256 of the detector file (64 hex characters, lowercase after loading). Absent: the
    /// named model's hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detector_sha256: Option<String>,
    /// Replacement embedder model. Absent: the named model's own file. Absolute when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedder_file: Option<PathBuf>,
    /// SHA-256 of the embedder file (64 hex characters, lowercase after loading). Absent: the
    /// named model's hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedder_sha256: Option<String>,
}

/// The shipped detector's name.
pub const DEFAULT_DETECTOR: &str = "yunet";
/// The shipped embedder's name.
pub const DEFAULT_EMBEDDER: &str = "int8";

impl Default for Models {
    fn default() -> Self {
        Models {
            dir: PathBuf::from("/usr/share/facekey/models"),
            installed_dir: PathBuf::from("/var/lib/facekey/models"),
            detector: DEFAULT_DETECTOR.to_owned(),
            embedder: DEFAULT_EMBEDDER.to_owned(),
            detector_file: None,
            detector_sha256: None,
            embedder_file: None,
            embedder_sha256: None,
        }
    }
}

/// `[matching]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Matching {
    /// Largest embedding distance accepted as the enrolled face, in (0, 2]. Absent: the active embedder's
    /// calibrated threshold ([`DEFAULT_THRESHOLD`] for the shipped one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f32>,
    /// How many frames must match before the user is accepted. At least 1.
    pub required_matches: u32,
    /// How the frames of one attempt combine into a decision.
    pub rule: MatchRule,
}

/// How the frames of one attempt combine into a decision (`[matching] rule`). Every rule counts only
/// frames that pass the liveness checks. Written in kebab-case in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum MatchRule {
    /// `required_matches` frames closer than the threshold, anywhere in the attempt.
    Frames,
    /// `required_matches` frames in a row closer than the threshold (a frame with a face that does not
    /// match starts the count again).
    Consecutive,
    /// `required_matches` frames closer than the threshold to the same enrolled sample.
    SameSample,
    /// The mean of the attempt's `required_matches` best frames closer than the threshold.
    #[default]
    MeanOfBest,
}

impl MatchRule {
    /// The rule as the configuration file writes it.
    pub fn name(self) -> &'static str {
        match self {
            MatchRule::Frames => "frames",
            MatchRule::Consecutive => "consecutive",
            MatchRule::SameSample => "same-sample",
            MatchRule::MeanOfBest => "mean-of-best",
        }
    }
}

impl Default for Matching {
    fn default() -> Self {
        Matching {
            threshold: None,
            required_matches: DEFAULT_REQUIRED_MATCHES,
            rule: MatchRule::default(),
        }
    }
}

/// `[auth]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    /// Seconds facekey may look for a matching face before giving up, in (0, 60].
    pub timeout: f64,
}

impl Default for Auth {
    fn default() -> Self {
        Auth { timeout: 4.0 }
    }
}

/// `[storage]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    /// Directory of enrolled faces, one file per user. Absolute.
    pub faces_dir: PathBuf,
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            faces_dir: PathBuf::from("/etc/facekey/faces"),
        }
    }
}

/// `[pam]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pam {
    /// PAM service names facekey answers for; any other service gets "unavailable".
    /// `sshd` is refused. An empty list means no service.
    pub services: Vec<String>,
    /// Services (each also in `services`) where a face may authenticate a user other than the one asking:
    /// `su bob` run by alice with bob's face in view. Empty by default: the face authenticates only the user who
    /// asks (the requesting process's real user, or PAM_RUSER when the process runs as root).
    pub other_user_services: Vec<String>,
    /// Let a face authenticate `root`. Off by default: root's password stays the only way in as root.
    pub allow_root: bool,
    /// Tell the user a face is being looked for.
    pub detection_notice: bool,
    /// Tell the user whose face was recognised.
    pub confirmation: bool,
}

impl Default for Pam {
    fn default() -> Self {
        Pam {
            services: DEFAULT_PAM_SERVICES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            other_user_services: Vec::new(),
            allow_root: false,
            detection_notice: true,
            confirmation: true,
        }
    }
}

/// `[rate_limit]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimit {
    /// Failed attempts per user allowed within `window` before facekey stops trying. At least 1.
    pub max_failures: u32,
    /// Length of the window, in seconds. At least 1.
    pub window: u64,
    /// Failed attempts per user allowed within a day (24 hours since boot) whatever the window: bounds what a
    /// patient impostor gets between two of the user's own unlocks (a match clears the count). At least 1.
    pub max_failures_per_day: u32,
    /// Where the failure counters live (tmpfs, so a reboot clears them). Absolute.
    pub state_dir: PathBuf,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            max_failures: 5,
            window: 60,
            max_failures_per_day: 20,
            state_dir: PathBuf::from("/run/facekey"),
        }
    }
}

impl Config {
    /// Parse TOML text; `origin` is the file path used in error messages.
    ///
    /// Unknown sections and keys are errors, not warnings: a misspelt key silently taking its
    /// default is how a security setting gets lost. The result is validated; hashes are
    /// lowercased.
    pub fn from_toml_str(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let mut config: Config =
            toml::from_str(text).map_err(|e| locate::parse_error(text, origin, &e))?;
        config.normalise();
        validate::check(&config).map_err(|v| locate::invalid_error(text, origin, v))?;
        Ok(config)
    }

    /// Read and parse a file (no permission checks here: the engine checks trust on the opened
    /// file and calls [`Config::from_toml_str`]).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml_str(&text, path)
    }

    /// The effective configuration rendered back as TOML (for `facekey config show`).
    /// Keys left unset (`None`) are omitted, since TOML has no null.
    pub fn to_toml_string(&self) -> String {
        // Every field is a bool, number, string, path, list of strings or a table of those, all
        // of which TOML can represent, and tables come after plain values; serialisation
        // cannot fail.
        toml::to_string(self).expect("Config always serialises to TOML")
    }

    /// Canonical forms the engine can compare without caring how the user typed them.
    fn normalise(&mut self) {
        for hash in [
            &mut self.models.detector_sha256,
            &mut self.models.embedder_sha256,
        ]
        .into_iter()
        .flatten()
        {
            hash.make_ascii_lowercase();
        }
    }
}
