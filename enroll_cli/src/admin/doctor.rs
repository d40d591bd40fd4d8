//! `facekey doctor`: is face unlock set up to work here, and what to do about each thing that is not.
//!
//! Every check reads through the same functions the PAM module uses (the trust check, the model hash
//! check, the enrolment store, the camera listing, the format negotiation), so a check that passes here
//! means the module would accept the same thing. One [`Check`] per question, each with the fix when it
//! fails. The system locations (PAM files, module directories, device nodes) come from a [`System`],
//! so tests point them at a folder.
//!
//! Must never: change anything (it only reads), open a camera for streaming, or stop at the first
//! problem (the administrator wants the whole list).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use facekey_config::Config;
use facekey_core::camera::devices::{self, DeviceEntry};
use facekey_core::camera::negotiate::{self, NoChoice};
use facekey_core::camera::Settings;
use facekey_core::models::{self, ActiveModels, ModelEntry, ModelError, Origin};
use facekey_core::protocol;
use facekey_core::settings::{self, IfMissing, SettingsError};
use facekey_core::store::{EmbedderId, Store, StoreError, UserName};
use facekey_core::trust;

use super::pam_stack;

/// How a check came out. Only [`Status::Fail`] makes `facekey doctor` exit non-zero; a warning is
/// something that works but that the administrator should know (a colour camera, a replay source).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        }
    }
}

/// One answered question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub status: Status,
    /// Short name of what was checked (`config`, `embedder`, `camera`, ...).
    pub area: &'static str,
    pub message: String,
    /// What to do, when something should be done.
    pub fix: Option<String>,
}

impl Check {
    fn ok(area: &'static str, message: impl Into<String>) -> Check {
        Check {
            status: Status::Ok,
            area,
            message: message.into(),
            fix: None,
        }
    }

    fn warn(area: &'static str, message: impl Into<String>, fix: Option<String>) -> Check {
        Check {
            status: Status::Warn,
            area,
            message: message.into(),
            fix,
        }
    }

    fn fail(area: &'static str, message: impl Into<String>, fix: Option<String>) -> Check {
        Check {
            status: Status::Fail,
            area,
            message: message.into(),
            fix,
        }
    }

    /// `FAIL  embedder   /usr/share/...: ... Fix: ...` on one line.
    pub fn line(&self) -> String {
        let mut line = format!(
            "{:<5} {:<11} {}",
            self.status.label(),
            self.area,
            self.message
        );
        if let Some(fix) = &self.fix {
            if !line.ends_with('.') {
                line.push('.');
            }
            line.push_str(" Fix: ");
            line.push_str(fix);
        }
        line
    }
}

/// Where the cameras come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cameras {
    /// The running system's cameras, each opened to ask what it offers (`devices::list`).
    Probe,
    /// `videoN` nodes of a folder, listed but not opened (a system under another root, tests).
    Nodes(PathBuf),
}

/// The locations the doctor reads. [`System::real`] in production.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct System {
    /// `/`, or the folder a system to check is installed under; camera nodes named in the
    /// configuration are looked for under it.
    pub root: PathBuf,
    pub config: PathBuf,
    /// Whether a missing configuration means the built-in defaults (the default path) or an error.
    pub if_missing: IfMissing,
    /// `/etc/pam.d`.
    pub pam_dir: PathBuf,
    /// `/usr/share/pam-configs`: pam-auth-update's profiles.
    pub pam_configs: PathBuf,
    /// Where libpam looks for modules, most likely first.
    pub module_dirs: Vec<PathBuf>,
    /// `facekey-check`, the helper the module runs for hosts without privileges.
    pub helper: PathBuf,
    pub cameras: Cameras,
    /// Whether the check runs with root's view of the files (see [`run`]).
    pub as_root: bool,
}

impl System {
    /// The running system; `config` is `--config` when given.
    pub fn real(config: Option<&Path>) -> System {
        let mut system = System::under(Path::new("/"), config);
        system.cameras = Cameras::Probe;
        system
    }

    /// The same layout under another root. The configuration, when not given, is the one under the root;
    /// the paths written inside it are used as they are.
    pub fn under(root: &Path, config: Option<&Path>) -> System {
        let (config, if_missing) = match config {
            Some(c) => (c.to_owned(), IfMissing::Fail),
            None => (
                root.join(facekey_config::DEFAULT_CONFIG_PATH.trim_start_matches('/')),
                IfMissing::UseDefaults,
            ),
        };
        let mut module_dirs = Vec::new();
        if let Some(triple) = multiarch_triple() {
            module_dirs.push(root.join(format!("lib/{triple}/security")));
            module_dirs.push(root.join(format!("usr/lib/{triple}/security")));
        }
        for dir in [
            "lib/security",
            "lib64/security",
            "usr/lib/security",
            "usr/lib64/security",
        ] {
            module_dirs.push(root.join(dir));
        }
        System {
            root: root.to_owned(),
            config,
            if_missing,
            pam_dir: root.join("etc/pam.d"),
            pam_configs: root.join("usr/share/pam-configs"),
            module_dirs,
            helper: root.join(protocol::HELPER_PATH.trim_start_matches('/')),
            cameras: Cameras::Nodes(root.join("dev")),
            as_root: nix::unistd::geteuid().is_root(),
        }
    }
}

/// Debian's multiarch directory name for this build's architecture.
fn multiarch_triple() -> Option<&'static str> {
    match std::env::consts::ARCH {
        "x86_64" => Some("x86_64-linux-gnu"),
        "aarch64" => Some("aarch64-linux-gnu"),
        "x86" => Some("i386-linux-gnu"),
        "arm" => Some("arm-linux-gnueabihf"),
        "riscv64" => Some("riscv64-linux-gnu"),
        "powerpc64" => Some("powerpc64le-linux-gnu"),
        "s390x" => Some("s390x-linux-gnu"),
        _ => None,
    }
}

/// Run every check, in the order an administrator would fix things.
pub fn run(system: &System) -> Vec<Check> {
    let mut checks = Vec::new();
    if !system.as_root {
        checks.push(Check::warn(
            "privileges",
            "not running as root: the enrolments cannot be read, and files owned by you are \
             trusted here although the PAM module (running as root) refuses them",
            Some("sudo facekey doctor".into()),
        ));
    }
    let config = check_config(system, &mut checks);
    checks.push(check_switch(&config));
    match ActiveModels::resolve(&config) {
        Ok(active) => {
            checks.push(check_matching(&config, &active));
            checks.push(check_model(
                "detector",
                &active.detector,
                config.models.detector_sha256.is_some(),
            ));
            checks.push(check_model(
                "embedder",
                &active.embedder,
                config.models.embedder_sha256.is_some(),
            ));
            check_store(&config, &active.embedder.embedder_id(), &mut checks);
        }
        Err(e) => checks.push(Check::fail(
            "models",
            e.to_string(),
            Some("facekey model list; facekey model use NAME".into()),
        )),
    }
    let entries = match &system.cameras {
        Cameras::Probe => devices::list(),
        Cameras::Nodes(dev) => listed_nodes(dev),
    };
    checks.extend(check_cameras(&config.camera, &entries, &system.root));
    checks.push(check_emitter(&config.camera));
    check_pam(system, &config, &mut checks);
    checks.push(check_state_dir(&config));
    checks
}

/// Exit status: 0 when nothing failed.
pub fn all_passed(checks: &[Check]) -> bool {
    checks.iter().all(|c| c.status != Status::Fail)
}

fn listed_nodes(dev: &Path) -> Vec<DeviceEntry> {
    let links = devices::stable_links(&dev.join("v4l"));
    devices::video_nodes(dev)
        .into_iter()
        .map(|node| DeviceEntry {
            links: devices::links_to(&links, &node),
            usb: None,
            details: Err("not opened (a system under another root is being checked)".into()),
            node,
        })
        .collect()
}

// --- configuration --------------------------------------------------------------------------------

fn check_config(system: &System, checks: &mut Vec<Check>) -> Config {
    let path = &system.config;
    let missing =
        matches!(fs::symlink_metadata(path), Err(e) if e.kind() == std::io::ErrorKind::NotFound);
    if missing && system.if_missing == IfMissing::UseDefaults {
        checks.push(Check::ok(
            "config",
            format!(
                "{} does not exist: the built-in defaults apply (`facekey config show` prints \
                 them)",
                path.display()
            ),
        ));
        return Config::default();
    }
    match settings::load_config(path, system.if_missing) {
        Ok(config) => {
            checks.push(Check::ok(
                "config",
                format!("{}: valid, {}", path.display(), owner_and_mode(path)),
            ));
            config
        }
        Err(SettingsError::Untrusted(e)) => {
            checks.push(Check::fail(
                "config",
                format!(
                    "{e}; the PAM module refuses it and answers \"unavailable\" (the checks below \
                     use the built-in defaults)"
                ),
                None,
            ));
            Config::default()
        }
        Err(e) => {
            checks.push(Check::fail(
                "config",
                format!("{e} (the checks below use the built-in defaults)"),
                Some(format!(
                    "correct the file; `facekey --config {} config check` shows each error",
                    path.display()
                )),
            ));
            Config::default()
        }
    }
}

fn check_switch(config: &Config) -> Check {
    if config.general.disabled {
        Check::fail(
            "enabled",
            "face authentication is disabled ([general] disabled = true): every attempt answers \
             \"unavailable\" and PAM asks for the password",
            Some("facekey enable".into()),
        )
    } else {
        Check::ok(
            "enabled",
            "face authentication is enabled ([general] disabled = false)",
        )
    }
}

/// The matching rule: a threshold looser than the measured default is a warning (an upgraded configuration keeps
/// the values it was edited with, facekey 0.1 and 0.2's `threshold = 0.5` among them).
fn check_matching(config: &Config, active: &ActiveModels) -> Check {
    let m = &config.matching;
    let calibrated = active.embedder.meta().threshold;
    let threshold = facekey_core::rule::threshold(m, calibrated);
    let rule = format!(
        "\"{}\" over {} frame(s), threshold {threshold}{}",
        m.rule.name(),
        m.required_matches,
        if m.threshold.is_some() {
            ""
        } else {
            " (the embedder's calibrated one)"
        }
    );
    if threshold > calibrated {
        Check::warn(
            "matching",
            format!(
                "[matching] threshold {threshold} is looser than embedder {:?}'s calibrated {calibrated}: on the \
                 ORL faces, any frame under 0.5 (facekey 0.1 and 0.2) accepted 83 of 15,600 impostor attempts, \
                 the default rule none (/usr/share/doc/facekey/accuracy.md); rule: {rule}",
                active.embedder.name,
            ),
            Some(format!(
                "in the configuration: remove [matching] threshold (the embedder's {calibrated} applies), \
                 required_matches = {}, rule = \"mean-of-best\"",
                facekey_config::DEFAULT_REQUIRED_MATCHES
            )),
        )
    } else {
        Check::ok("matching", format!("rule: {rule}"))
    }
}

// --- models ---------------------------------------------------------------------------------------

fn check_model(area: &'static str, entry: &ModelEntry, explicit_hash: bool) -> Check {
    let location = entry.location();
    let reinstall = || {
        Some(match entry.origin {
            Origin::Shipped => {
                "reinstall the package: apt-get install --reinstall facekey".to_owned()
            }
            Origin::Legacy => format!(
                "{:?} is no longer shipped: facekey model use int8, then enrol again (facekey add)",
                entry.name
            ),
            Origin::Installed => {
                format!("install {:?} again: facekey model install ...", entry.name)
            }
        })
    };
    match models::read_verified(&location) {
        Ok(_) => Check::ok(
            area,
            format!(
                "{} {:?}: {}: SHA-256 {}… matches the {} hash",
                entry.role.name(),
                entry.name,
                location.path.display(),
                &location.sha256[..12],
                if explicit_hash {
                    "configured"
                } else {
                    "pinned"
                }
            ),
        ),
        Err(e @ ModelError::HashMismatch { .. }) => Check::fail(
            area,
            e.to_string(),
            (!explicit_hash).then(reinstall).flatten(),
        ),
        Err(ModelError::Untrusted(e)) if e.is_not_found() => Check::fail(
            area,
            format!("{} is missing", location.path.display()),
            reinstall(),
        ),
        Err(e) => Check::fail(area, e.to_string(), None),
    }
}

// --- enrolments -----------------------------------------------------------------------------------

fn check_store(config: &Config, expected: &EmbedderId, checks: &mut Vec<Check>) {
    let dir = &config.storage.faces_dir;
    match trust::check_trusted_dir(dir) {
        Ok(()) => {
            let mode = fs::metadata(dir).map(|m| m.mode() & 0o7777).unwrap_or(0);
            if mode & 0o077 != 0 {
                checks.push(Check::fail(
                    "store",
                    format!(
                        "{} (mode {mode:04o}) can be listed or read by others: enrolments are \
                         biometric data",
                        dir.display()
                    ),
                    Some(format!("chmod 700 {}", dir.display())),
                ));
            } else {
                checks.push(Check::ok(
                    "store",
                    format!("{}: {}", dir.display(), owner_and_mode(dir)),
                ));
            }
        }
        Err(e) if e.is_not_found() => {
            checks.push(Check::fail(
                "store",
                format!("{} does not exist: nobody is enrolled", dir.display()),
                Some("facekey add --user NAME (creates it, mode 0700)".into()),
            ));
            return;
        }
        Err(e) => {
            checks.push(Check::fail("store", e.to_string(), None));
            return;
        }
    }
    let store = Store::new(dir);
    let users = match store.list_users() {
        Ok(users) => users,
        Err(e) => {
            checks.push(Check::fail("enrolment", e.to_string(), None));
            return;
        }
    };
    if users.is_empty() {
        checks.push(Check::fail(
            "enrolment",
            format!("nobody is enrolled in {}", dir.display()),
            Some("facekey add --user NAME".into()),
        ));
        return;
    }
    let camera = config.camera.source.starts_with("v4l2:");
    for user in users {
        checks.push(check_enrolment(&store, &user, expected, camera));
    }
}

/// One user's enrolment: readable by root only, for an existing account, and (when the source is a camera) every
/// sample tied to the camera it was seen by (`facekey_core::camera::identity`).
fn check_enrolment(
    store: &Store,
    user: &UserName,
    expected: &EmbedderId,
    camera_source: bool,
) -> Check {
    let path = store.path_for(user);
    match store.load_for(user, expected) {
        Ok(Some(enrolment)) => {
            let mode = fs::metadata(&path).map(|m| m.mode() & 0o7777).unwrap_or(0);
            if mode & 0o077 != 0 {
                return Check::fail(
                    "enrolment",
                    format!("{} (mode {mode:04o}) is readable by others", path.display()),
                    Some(format!("chmod 600 {}", path.display())),
                );
            }
            if !matches!(nix::unistd::User::from_name(user.as_str()), Ok(Some(_))) {
                return Check::warn(
                    "enrolment",
                    format!("{}: no user account named {user}", path.display()),
                    Some(format!(
                        "rm {} if the account is gone for good",
                        path.display()
                    )),
                );
            }
            let unrecorded = enrolment
                .samples
                .iter()
                .filter(|s| s.camera.is_none())
                .count();
            if camera_source && unrecorded > 0 {
                return Check::warn(
                    "enrolment",
                    format!(
                        "{user}: {unrecorded} of {} sample(s) in {} have no recorded camera (from image files, \
                         or enrolled by an older facekey), so they are compared with frames from any camera, a \
                         look-alike device included",
                        enrolment.samples.len(),
                        path.display()
                    ),
                    Some(format!(
                        "facekey clear --user {user} --yes && facekey add --user {user} (with the camera)"
                    )),
                );
            }
            Check::ok(
                "enrolment",
                format!(
                    "{user}: {} sample(s) in {}, {}",
                    enrolment.samples.len(),
                    path.display(),
                    owner_and_mode(&path)
                ),
            )
        }
        Ok(None) => Check::fail(
            "enrolment",
            format!("{} vanished while it was being checked", path.display()),
            None,
        ),
        Err(e @ StoreError::ForeignEmbedder { .. }) => Check::fail(
            "enrolment",
            e.to_string(),
            Some(format!(
                "facekey clear --user {user} --yes && facekey add --user {user}"
            )),
        ),
        Err(e) => Check::fail("enrolment", e.to_string(), None),
    }
}

// --- cameras --------------------------------------------------------------------------------------

/// The camera checks: what nodes there are, whether the configured source works with the configured
/// settings, and whether it is infrared. Pure over the listing, so tests hand it made-up cameras. The
/// configured node is looked for under `root` (`/` on the running system).
pub fn check_cameras(
    camera: &facekey_config::Camera,
    entries: &[DeviceEntry],
    root: &Path,
) -> Vec<Check> {
    let source = camera.source.as_str();
    let device = source.strip_prefix("v4l2:").map(PathBuf::from);
    let mut checks = vec![cameras_line(entries, device.is_some())];
    let Some(device) = device else {
        checks.push(replay_line(source));
        checks.push(Check::ok(
            "infrared",
            "not applicable: the source replays image files",
        ));
        return checks;
    };
    let node = root.join(device.strip_prefix("/").unwrap_or(&device));
    let entry = entries.iter().find(|e| devices::same_node(&node, &e.node));
    let listed =
        || "`facekey devices` lists the cameras; set camera.source in the configuration".to_owned();
    let details = match entry {
        _ if fs::symlink_metadata(&node).is_err() => {
            checks.push(Check::fail(
                "source",
                format!("{} (camera.source) does not exist", device.display()),
                Some(listed()),
            ));
            None
        }
        None => {
            checks.push(Check::fail(
                "source",
                format!(
                    "{} (camera.source) is not a /dev/videoN camera node",
                    device.display()
                ),
                Some(listed()),
            ));
            None
        }
        Some(DeviceEntry {
            details: Err(reason),
            ..
        }) => {
            checks.push(Check::fail(
                "source",
                format!("{}: {reason}", device.display()),
                Some(format!(
                    "{}; a camera often has a second node for metadata, which cannot capture",
                    listed()
                )),
            ));
            None
        }
        Some(DeviceEntry { details: Ok(d), .. }) => {
            let settings = Settings::from_config(camera);
            match negotiate::choose(&d.offers, &settings) {
                Ok(choice) => checks.push(Check::ok(
                    "source",
                    format!(
                        "{}: {} ({}); facekey would capture {} {}x{}{}",
                        device.display(),
                        d.card,
                        d.driver,
                        choice.format,
                        choice.width,
                        choice.height,
                        choice
                            .fps
                            .map(|f| format!(" at {f} fps"))
                            .unwrap_or_default()
                    ),
                )),
                Err(NoChoice::NotOffered { wanted, offered }) => checks.push(Check::fail(
                    "source",
                    format!(
                        "{}: {wanted} is not offered (it offers {offered})",
                        device.display()
                    ),
                    Some("set camera.force_mjpeg = false, or choose another camera".into()),
                )),
                Err(NoChoice::NothingDecodable { offered }) => checks.push(Check::fail(
                    "source",
                    format!(
                        "{}: facekey can decode none of its formats ({offered})",
                        device.display()
                    ),
                    Some(listed()),
                )),
            }
            Some(d)
        }
    };
    checks.push(match details {
        None => Check::warn(
            "infrared",
            "not checked: the configured camera could not be examined (see source)",
            None,
        ),
        Some(d) if d.infrared => Check::ok(
            "infrared",
            format!(
                "{} is infrared (it offers only grey formats)",
                device.display()
            ),
        ),
        Some(_) => colour_camera(camera, &device, entries),
    });
    checks
}

/// The infrared emitter setting stored for the configured camera (`facekey ir`), and whether the
/// settings file can be trusted: an untrusted one is ignored at every authentication.
fn check_emitter(camera: &facekey_config::Camera) -> Check {
    use facekey_core::camera::emitter::store::Settings as EmitterSettings;
    let file = &camera.emitter_settings;
    let stored = match EmitterSettings::load(file) {
        Ok(stored) => stored,
        Err(e) => {
            return Check::fail(
                "emitter",
                format!("{e}; no emitter setting is applied"),
                Some(format!(
                    "make {} root-owned and not writable by group or others, or remove it and run                      `sudo facekey ir discover`",
                    file.display()
                )),
            )
        }
    };
    let Some(device) = camera.source.strip_prefix("v4l2:") else {
        return Check::ok("emitter", "not applicable: the source replays image files");
    };
    match stored.find(Path::new(device)) {
        Some(entry) => Check::ok(
            "emitter",
            format!(
                "{device}: unit {} selector {} = {} ({}{}), set each time the camera opens ({})",
                entry.unit,
                entry.selector,
                entry.value,
                entry.origin,
                entry
                    .dark_threshold
                    .map(|t| format!(", dark threshold {t:.0}% learnt"))
                    .unwrap_or_default(),
                file.display()
            ),
        ),
        None => Check::ok(
            "emitter",
            format!(
                "no infrared emitter setting stored for {device}; if its frames are dark                  (`facekey test` counts dark frames), run `sudo facekey ir discover`"
            ),
        ),
    }
}

/// The configured camera is a colour one: refused with `require_ir`, otherwise a warning; either way
/// name an infrared node when there is one.
fn colour_camera(camera: &facekey_config::Camera, device: &Path, entries: &[DeviceEntry]) -> Check {
    let better = entries
        .iter()
        .find(|e| e.details.as_ref().is_ok_and(|d| d.infrared))
        .map(|e| {
            let by_id = e
                .links
                .iter()
                .find(|l| l.to_string_lossy().contains("by-id"));
            let name = by_id.unwrap_or(&e.node);
            format!("set camera.source = \"v4l2:{}\" (infrared)", name.display())
        });
    let fooled = "a photo of an enrolled user can fool it";
    if camera.require_ir {
        Check::fail(
            "infrared",
            format!(
                "{} is a colour camera and camera.require_ir = true refuses it",
                device.display()
            ),
            Some(better.unwrap_or_else(|| {
                format!(
                    "this machine shows no infrared camera; set camera.require_ir = false to use \
                     the colour camera, knowing that {fooled}"
                )
            })),
        )
    } else {
        Check::warn(
            "infrared",
            format!(
                "{} is a colour camera, accepted because camera.require_ir = false: {fooled}",
                device.display()
            ),
            better,
        )
    }
}

fn cameras_line(entries: &[DeviceEntry], needed: bool) -> Check {
    if entries.is_empty() {
        let message = "no camera: this machine has no /dev/video* node";
        return if needed {
            Check::fail(
                "cameras",
                message,
                Some("plug in the camera, or load its driver (uvcvideo for USB cameras)".into()),
            )
        } else {
            Check::warn("cameras", message, None)
        };
    }
    let described: Vec<String> = entries
        .iter()
        .map(|e| match &e.details {
            Ok(d) => format!(
                "{} {} ({}: {})",
                e.node.display(),
                d.card,
                if d.infrared { "infrared" } else { "colour" },
                negotiate::offered_text(&d.offers)
            ),
            Err(reason) => format!("{} ({reason})", e.node.display()),
        })
        .collect();
    let capture = entries.iter().filter(|e| e.details.is_ok()).count();
    let infrared = entries
        .iter()
        .filter(|e| e.details.as_ref().is_ok_and(|d| d.infrared))
        .count();
    let message = format!(
        "{} node(s), {capture} usable, {infrared} infrared: {}",
        entries.len(),
        described.join("; ")
    );
    if capture == 0 && needed {
        Check::fail(
            "cameras",
            message,
            Some("run as root, or check that the camera's driver is loaded".into()),
        )
    } else {
        Check::ok("cameras", message)
    }
}

fn replay_line(source: &str) -> Check {
    if !source.starts_with("file:") && !source.starts_with("dir:") {
        return Check::fail(
            "source",
            format!("camera.source = {source:?} is not file:, dir: or v4l2:"),
            Some(
                "set camera.source = \"v4l2:/dev/video0\" (or the node `facekey devices` shows)"
                    .into(),
            ),
        );
    }
    // Opened as the decision opens it: every file and folder through the trust rules.
    if let Err(e) = facekey_core::source::open_source(source) {
        return Check::fail("source", format!("camera.source {source:?}: {e}"), None);
    }
    Check::warn(
        "source",
        format!("camera.source {source:?} replays image files: for testing only, not a camera"),
        Some("for real logins set camera.source = \"v4l2:/dev/videoN\" (`facekey devices`)".into()),
    )
}

// --- PAM ------------------------------------------------------------------------------------------

fn check_pam(system: &System, config: &Config, checks: &mut Vec<Check>) {
    checks.push(check_module(system));
    checks.push(check_helper(&system.helper));

    let profile = system.pam_configs.join("facekey");
    if !profile.is_file() {
        checks.push(Check::warn(
            "profile",
            format!(
                "{} is missing: pam-auth-update cannot enable facekey",
                profile.display()
            ),
            Some("apt-get install --reinstall facekey".into()),
        ));
    }

    // Every service whose auth stack reaches pam_facekey.so, with the line that does.
    let mut using: Vec<(String, pam_stack::Stack)> = Vec::new();
    for service in pam_stack::services(&system.pam_dir) {
        let stack = pam_stack::auth_stack(&system.pam_dir, &service);
        if !stack.facekey_rules().is_empty() {
            using.push((service, stack));
        }
    }
    let common = pam_stack::auth_stack(&system.pam_dir, "common-auth");
    let in_common = common.facekey_rules();
    let enable = "pam-auth-update --enable facekey".to_owned();
    match in_common.first() {
        Some(&i) => checks.push(Check::ok(
            "pam",
            format!(
                "enabled in common-auth ({}: {} {})",
                common.rules[i].location(),
                common.rules[i].control,
                common.rules[i].module
            ),
        )),
        None if using.is_empty() => checks.push(Check::fail(
            "pam",
            format!(
                "pam_facekey.so is in no PAM stack under {}: nothing asks for a face",
                system.pam_dir.display()
            ),
            Some(enable.clone()),
        )),
        None => checks.push(Check::ok(
            "pam",
            format!(
                "not in common-auth; named directly by: {}",
                using
                    .iter()
                    .map(|(s, _)| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }

    // Each distinct facekey line: does the password still decide when no face matches?
    let mut seen = Vec::new();
    for (_, stack) in &using {
        for i in stack.facekey_rules() {
            let placement = pam_stack::placement(stack, i);
            if seen.contains(&placement.location) {
                continue;
            }
            seen.push(placement.location.clone());
            checks.push(check_placement(
                &placement,
                &stack.rules[i],
                system,
                &enable,
            ));
        }
    }

    if !using.is_empty() {
        let (offered, other): (Vec<&str>, Vec<&str>) = using
            .iter()
            .map(|(s, _)| s.as_str())
            .partition(|s| config.pam.services.iter().any(|allowed| allowed == s));
        let others = if other.is_empty() {
            String::new()
        } else {
            format!(
                "; the module answers \"unavailable\" to {} (not in [pam] services)",
                other.join(", ")
            )
        };
        if offered.is_empty() {
            checks.push(Check::fail(
                "services",
                format!(
                    "no service both runs pam_facekey.so and is listed in [pam] services{others}"
                ),
                Some(
                    "add the services that should accept a face (sudo, login, your screen \
                     locker) to [pam] services"
                        .into(),
                ),
            ));
        } else {
            checks.push(Check::ok(
                "services",
                format!("a face is accepted by: {}{others}", offered.join(", ")),
            ));
        }
    }
}

fn check_placement(
    placement: &pam_stack::Placement,
    rule: &pam_stack::Rule,
    system: &System,
    enable: &str,
) -> Check {
    let what = format!(
        "{}: {} pam_facekey.so",
        placement.location, placement.control
    );
    let managed =
        format!("remove the hand-written line and let pam-auth-update write it: {enable}");
    if let Some(risk) = &placement.failure_risk {
        return Check::fail("stack", format!("{what}: {risk}"), Some(managed));
    }
    if let Some(problem) = &placement.success_problem {
        return Check::fail("stack", format!("{what}: {problem}"), Some(managed));
    }
    let other_config = rule
        .args
        .iter()
        .filter_map(|a| a.strip_prefix("config="))
        .find(|c| Path::new(c) != system.config);
    if let Some(other) = other_config {
        return Check::warn(
            "stack",
            format!(
                "{what}: this line reads config={other}, but this check read {}",
                system.config.display()
            ),
            Some(format!("facekey --config {other} doctor")),
        );
    }
    if !placement.password_follows {
        return Check::warn(
            "stack",
            format!("{what}: no password module follows it in this stack"),
            Some("make sure another way in stays after it (pam_unix.so)".into()),
        );
    }
    Check::ok(
        "stack",
        format!(
            "{what}: a match skips the password; no match, or facekey unavailable, is ignored \
             and the password module decides"
        ),
    )
}

fn check_module(system: &System) -> Check {
    let found = system
        .module_dirs
        .iter()
        .map(|d| d.join(pam_stack::MODULE_FILE))
        .find(|p| fs::symlink_metadata(p).is_ok());
    let Some(path) = found else {
        return Check::fail(
            "module",
            format!(
                "{} is in none of {}",
                pam_stack::MODULE_FILE,
                system
                    .module_dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Some("apt-get install --reinstall facekey".into()),
        );
    };
    // The module is code run inside every login: it must be as protected as the configuration.
    match trust::open_trusted_file(&path) {
        Ok(_) => Check::ok(
            "module",
            format!("{}: {}", path.display(), owner_and_mode(&path)),
        ),
        Err(e) => Check::fail("module", e.to_string(), None),
    }
}

/// The helper: present, root's and closed to others like the module, setuid root (or lock screens that run as
/// the user cannot use faces), and speaking the module's protocol version (a half-upgraded system does not).
fn check_helper(path: &Path) -> Check {
    let reinstall = Some("apt-get install --reinstall facekey".to_owned());
    if let Err(e) = trust::open_trusted_file(path) {
        return Check::fail("helper", e.to_string(), reinstall);
    }
    let mode = fs::metadata(path).map(|m| m.mode()).unwrap_or(0);
    let speaks = helper_protocol(path);
    let expected = format!("facekey-check protocol {}", protocol::PROTOCOL_VERSION);
    match speaks {
        Ok(line) if line != expected => {
            return Check::fail(
                "helper",
                format!(
                    "{} answers \"{line}\", this facekey speaks \"{expected}\": the two come from \
                     different releases, and the module will refuse the helper",
                    path.display()
                ),
                reinstall,
            )
        }
        Ok(_) => {}
        Err(reason) => {
            return Check::fail("helper", format!("{}: {reason}", path.display()), reinstall)
        }
    }
    if mode & 0o4000 == 0 {
        return Check::warn(
            "helper",
            format!(
                "{} ({}) is not setuid: lock screens that run PAM as the user cannot read the \
                 enrolments, so face unlock works only where PAM runs as root (sudo, login, the display manager)",
                path.display(),
                owner_and_mode(path)
            ),
            Some(format!("chmod 4755 {}", path.display())),
        );
    }
    Check::ok(
        "helper",
        format!("{}: {}, {expected}", path.display(), owner_and_mode(path)),
    )
}

/// What `facekey-check --protocol` prints, within two seconds.
fn helper_protocol(path: &Path) -> Result<String, String> {
    let mut child = std::process::Command::new(path)
        .arg("--protocol")
        .env_clear()
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run it: {e}"))?;
    let until = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if std::time::Instant::now() < until => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("no answer to --protocol within 2 s".into());
            }
        }
    }
    let mut out = String::new();
    use std::io::Read;
    if let Some(mut stdout) = child.stdout.take() {
        let _ = stdout.read_to_string(&mut out);
    }
    Ok(out.trim().to_owned())
}

fn check_state_dir(config: &Config) -> Check {
    let dir = &config.rate_limit.state_dir;
    match trust::check_trusted_dir(dir) {
        Ok(()) => Check::ok(
            "state",
            format!("{} (rate limit): {}", dir.display(), owner_and_mode(dir)),
        ),
        Err(e) if e.is_not_found() => Check::ok(
            "state",
            format!(
                "{} (rate limit) is created, mode 0700, at the first attempt",
                dir.display()
            ),
        ),
        Err(e) => Check::fail("state", format!("rate limit state: {e}"), None),
    }
}

/// `owner root, mode 0644`.
fn owner_and_mode(path: &Path) -> String {
    match fs::metadata(path) {
        Ok(meta) => {
            let owner = nix::unistd::User::from_uid(meta.uid().into())
                .ok()
                .flatten()
                .map(|u| u.name)
                .unwrap_or_else(|| format!("uid {}", meta.uid()));
            format!(
                "owner {owner}, mode {:04o}",
                meta.permissions().mode() & 0o7777
            )
        }
        Err(e) => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use facekey_core::camera::devices::NodeDetails;
    use facekey_core::camera::negotiate::{FormatOffer, SizeOffer};

    fn offer(fourcc: &[u8; 4]) -> FormatOffer {
        FormatOffer {
            fourcc: *fourcc,
            description: String::from_utf8_lossy(fourcc).into_owned(),
            sizes: vec![SizeOffer {
                width: 640,
                height: 480,
                max_fps: Some(30.0),
            }],
        }
    }

    /// A made-up camera at a real path (the checks resolve the configured node), offering `formats`.
    fn camera(node: &Path, card: &str, formats: &[&[u8; 4]]) -> DeviceEntry {
        fs::write(node, "").unwrap();
        let offers: Vec<FormatOffer> = formats.iter().map(|f| offer(f)).collect();
        DeviceEntry {
            node: node.to_owned(),
            links: Vec::new(),
            usb: None,
            details: Ok(NodeDetails {
                driver: "uvcvideo".into(),
                card: card.into(),
                bus: "usb-0000:00:14.0-5".into(),
                infrared: negotiate::looks_infrared(&offers),
                offers,
            }),
        }
    }

    fn config_for(node: &Path, require_ir: bool) -> facekey_config::Camera {
        facekey_config::Camera {
            source: format!("v4l2:{}", node.display()),
            require_ir,
            ..Default::default()
        }
    }

    #[test]
    fn the_stored_emitter_setting_is_reported_and_an_untrusted_file_fails() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let file = dir.path().join("ir.toml");
        let camera = facekey_config::Camera {
            source: "v4l2:/dev/video7".into(),
            emitter_settings: file.clone(),
            ..facekey_config::Camera::default()
        };
        let none = check_emitter(&camera);
        assert_eq!(none.status, Status::Ok);
        assert!(
            none.message.contains("facekey ir discover"),
            "{}",
            none.message
        );
        fs::write(
            &file,
            "[[camera]]\ndevice = \"/dev/video7\"\nunit = 4\nselector = 6\nvalue = \"010303000000000000\"\norigin = \"discovered\"\n",
        )
        .unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        let stored = check_emitter(&camera);
        assert_eq!(stored.status, Status::Ok);
        assert!(
            stored
                .message
                .contains("unit 4 selector 6 = 010303000000000000"),
            "{}",
            stored.message
        );
        fs::set_permissions(&file, fs::Permissions::from_mode(0o666)).unwrap();
        let refused = check_emitter(&camera);
        assert_eq!(refused.status, Status::Fail);
        assert!(
            refused.message.contains("chmod go-w"),
            "{}",
            refused.message
        );
    }

    fn find<'a>(checks: &'a [Check], area: &str) -> &'a Check {
        checks.iter().find(|c| c.area == area).unwrap()
    }

    #[test]
    fn an_infrared_camera_passes_and_says_what_it_would_capture() {
        let dir = tempfile::tempdir().unwrap();
        let ir = camera(
            &dir.path().join("video2"),
            "Integrated IR Camera",
            &[b"GREY"],
        );
        let checks = check_cameras(
            &config_for(&ir.node, true),
            std::slice::from_ref(&ir),
            Path::new("/"),
        );
        assert!(all_passed(&checks), "{checks:#?}");
        assert!(
            find(&checks, "source").message.contains("GREY 640x480"),
            "{checks:#?}"
        );
        assert_eq!(find(&checks, "infrared").status, Status::Ok);
    }

    #[test]
    fn a_colour_camera_with_require_ir_fails_and_names_the_infrared_node() {
        let dir = tempfile::tempdir().unwrap();
        let colour = camera(
            &dir.path().join("video0"),
            "Integrated Camera",
            &[b"YUYV", b"MJPG"],
        );
        let ir = camera(
            &dir.path().join("video2"),
            "Integrated IR Camera",
            &[b"GREY"],
        );
        let checks = check_cameras(
            &config_for(&colour.node, true),
            &[colour.clone(), ir.clone()],
            Path::new("/"),
        );
        let infrared = find(&checks, "infrared");
        assert_eq!(infrared.status, Status::Fail);
        let fix = infrared.fix.as_deref().unwrap();
        assert!(fix.contains(&ir.node.display().to_string()), "{fix}");
        assert!(find(&checks, "cameras")
            .message
            .contains("2 usable, 1 infrared"));

        let lenient = check_cameras(&config_for(&colour.node, false), &[colour], Path::new("/"));
        assert!(all_passed(&lenient), "{lenient:#?}");
        assert_eq!(find(&lenient, "infrared").status, Status::Warn);
    }

    #[test]
    fn force_mjpeg_on_a_camera_without_mjpeg_fails() {
        let dir = tempfile::tempdir().unwrap();
        let colour = camera(&dir.path().join("video0"), "Webcam", &[b"YUYV"]);
        let mut config = config_for(&colour.node, false);
        config.force_mjpeg = true;
        let checks = check_cameras(&config, &[colour], Path::new("/"));
        let source = find(&checks, "source");
        assert_eq!(source.status, Status::Fail);
        assert!(source.message.contains("MJPG"), "{}", source.message);
    }

    #[test]
    fn a_missing_or_unreadable_configured_node_fails() {
        let dir = tempfile::tempdir().unwrap();
        let checks = check_cameras(
            &config_for(&dir.path().join("video0"), true),
            &[],
            Path::new("/"),
        );
        assert_eq!(find(&checks, "cameras").status, Status::Fail);
        assert!(find(&checks, "source").message.contains("does not exist"));

        let node = dir.path().join("video1");
        fs::write(&node, "").unwrap();
        let metadata = DeviceEntry {
            node: node.clone(),
            links: Vec::new(),
            usb: None,
            details: Err("not a video capture node".into()),
        };
        let checks = check_cameras(&config_for(&node, true), &[metadata], Path::new("/"));
        let source = find(&checks, "source");
        assert_eq!(source.status, Status::Fail);
        assert!(source.message.contains("not a video capture node"));
        assert_eq!(find(&checks, "infrared").status, Status::Warn);
    }

    #[test]
    fn a_replay_source_warns_and_a_missing_file_fails() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("face.jpg");
        fs::write(&image, "").unwrap();
        fs::set_permissions(&image, fs::Permissions::from_mode(0o644)).unwrap();
        let camera = |source: String| facekey_config::Camera {
            source,
            ..Default::default()
        };
        let checks = check_cameras(
            &camera(format!("file:{}", image.display())),
            &[],
            Path::new("/"),
        );
        assert!(all_passed(&checks), "{checks:#?}");
        assert_eq!(find(&checks, "source").status, Status::Warn);

        // A replay file others could replace is what the decision refuses: so does the doctor.
        fs::set_permissions(&image, fs::Permissions::from_mode(0o666)).unwrap();
        let checks = check_cameras(
            &camera(format!("file:{}", image.display())),
            &[],
            Path::new("/"),
        );
        let line = find(&checks, "source");
        assert_eq!(line.status, Status::Fail);
        assert!(line.message.contains("chmod go-w"), "{line:?}");
        fs::set_permissions(&image, fs::Permissions::from_mode(0o644)).unwrap();

        let missing = dir.path().join("gone.jpg");
        let checks = check_cameras(
            &camera(format!("file:{}", missing.display())),
            &[],
            Path::new("/"),
        );
        assert_eq!(find(&checks, "source").status, Status::Fail);
    }

    #[test]
    fn samples_without_a_recorded_camera_are_a_warning_for_a_camera_source_only() {
        use facekey_core::camera::identity::CameraIdentity;
        use facekey_core::store::Enrolment;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("faces"));
        let user = UserName::new("root").unwrap();
        let embedder = EmbedderId {
            sha256: "a".repeat(64),
            dimension: 2,
        };
        let mut enrolment = Enrolment::new(&user, embedder.clone());
        let camera = CameraIdentity {
            driver: "uvcvideo".into(),
            card: "Integrated IR Camera".into(),
            bus: "usb-0000:00:14.0-5".into(),
            usb: Some("04f2:b6d9".into()),
        };
        enrolment.add_sample_from("at the camera", vec![1.0, 0.0], Some(camera));
        store.save(&enrolment).unwrap();
        assert_eq!(
            check_enrolment(&store, &user, &embedder, true).status,
            Status::Ok
        );
        enrolment.add_sample("from a photo", vec![0.0, 1.0]);
        store.save(&enrolment).unwrap();
        let check = check_enrolment(&store, &user, &embedder, true);
        assert_eq!(check.status, Status::Warn, "{}", check.message);
        assert!(
            check.message.contains("1 of 2 sample(s)"),
            "{}",
            check.message
        );
        assert!(check.fix.unwrap().contains("facekey add --user root"));
        // A replay source compares files anyway: nothing to warn about.
        assert_eq!(
            check_enrolment(&store, &user, &embedder, false).status,
            Status::Ok
        );
    }
}
