//! A temporary, trusted world for one test: configuration, enrolment store, rate-limit state and a PAM service
//! folder naming the built module by absolute path.
//!
//! The folder is created by `tempfile` (mode 0700, owned by the user running the tests) under /tmp (sticky), so
//! the trust rules accept it; files are written 0644 / 0600 explicitly, whatever the umask.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use facekey_core::engine::Engine;
use facekey_core::source;
use facekey_core::store::{Enrolment, Store, UserName};

use crate::module;

/// The face chips under tests/data (see its README).
pub fn faces_dir() -> PathBuf {
    module::workspace_root().join("tests/data/faces/johns")
}

/// The `index`-th image (by name) of `person` (a folder under tests/data/faces/johns).
pub fn face(person: &str, index: usize) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(faces_dir().join(person))
        .unwrap_or_else(|e| panic!("{person}: {e}"))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "jpg"))
        .collect();
    files.sort();
    files
        .get(index)
        .cloned()
        .unwrap_or_else(|| panic!("{person} has no image {index}"))
}

/// The person enrolled in most tests, the images enrolled, and one not enrolled (the probe).
pub const ENROLLED: &str = "John_Simm";
pub const ENROLLED_IMAGES: [usize; 3] = [0, 1, 2];
pub const PROBE_IMAGE: usize = 4;
/// The probe and the next image of the enrolled person: the frames of one look at the camera (the shipped rule,
/// mean of the 2 best frames, needs two).
pub const PROBE_IMAGES: [usize; 2] = [PROBE_IMAGE, PROBE_IMAGE + 1];
pub const OTHER: &str = "John_Salley";

/// The enrolled person's probe images ([`PROBE_IMAGES`]).
pub fn probe_images() -> Vec<PathBuf> {
    PROBE_IMAGES.iter().map(|&i| face(ENROLLED, i)).collect()
}

/// The shipped models in the source tree.
pub fn models_dir() -> PathBuf {
    module::workspace_root().join("models")
}

/// The models, loaded once per test process for enrolling.
fn engine() -> Arc<Engine> {
    static ENGINE: OnceLock<Arc<Engine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let config = World::base_config_for_models();
            Arc::new(Engine::load(&config).expect("load the models"))
        })
        .clone()
}

/// One test's world.
pub struct World {
    dir: tempfile::TempDir,
}

impl Default for World {
    fn default() -> Self {
        World::new()
    }
}

impl World {
    pub fn new() -> World {
        let dir = tempfile::Builder::new()
            .prefix("facekey-e2e-")
            .tempdir()
            .expect("create a temporary folder");
        let world = World { dir };
        for sub in ["pam.d", "faces"] {
            std::fs::create_dir(world.path().join(sub)).expect("create a sub-folder");
            set_mode(&world.path().join(sub), 0o700);
        }
        world
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The PAM service folder for `pam_start_confdir` / pam_wrapper.
    pub fn pam_dir(&self) -> PathBuf {
        self.path().join("pam.d")
    }

    pub fn faces_dir(&self) -> PathBuf {
        self.path().join("faces")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.path().join("state")
    }

    /// The path of configuration file `name` in this world.
    pub fn config_path(&self, name: &str) -> PathBuf {
        self.path().join(format!("{name}.toml"))
    }

    /// Write configuration `name` reading frames from `source`, with `extra` TOML appended (whole sections; a
    /// `[rate_limit]` section in it gets the world's state folder). Timeout 3 s unless `extra` has its own `[auth]`.
    pub fn write_config(&self, name: &str, source: &str, extra: &str) -> PathBuf {
        let auth = if extra.contains("[auth]") {
            ""
        } else {
            "[auth]\ntimeout = 3.0\n"
        };
        // The state folder goes into `extra`'s own [rate_limit] section when it has one (TOML refuses two).
        let state = format!(
            "[rate_limit]\nstate_dir = {:?}\n",
            self.state_dir().display().to_string()
        );
        let (rate_limit, extra) = if extra.contains("[rate_limit]\n") {
            (String::new(), extra.replace("[rate_limit]\n", &state))
        } else {
            (state, extra.to_owned())
        };
        let text = format!(
            "[camera]\nsource = {source:?}\n\n[models]\ndir = {models:?}\n\n[storage]\nfaces_dir = {faces:?}\n\n\
             {rate_limit}\n{auth}\n{extra}\n",
            models = models_dir().display().to_string(),
            faces = self.faces_dir().display().to_string(),
        );
        let path = self.config_path(name);
        std::fs::write(&path, text).expect("write the configuration");
        set_mode(&path, 0o644);
        path
    }

    /// `file:` source spec for images.
    pub fn source(images: &[PathBuf]) -> String {
        let list: Vec<String> = images.iter().map(|p| p.display().to_string()).collect();
        format!("file:{}", list.join(","))
    }

    /// Copy image `from` into this world as `name` (under folder `sub`, created 0700 when missing), mode 0644:
    /// a replay frame the trust rules accept until a test changes its owner or mode.
    pub fn copy_image(&self, from: &Path, sub: &str, name: &str) -> PathBuf {
        let dir = self.path().join(sub);
        if !dir.exists() {
            std::fs::create_dir(&dir).expect("create an image folder");
            set_mode(&dir, 0o700);
        }
        let path = dir.join(name);
        std::fs::copy(from, &path).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
        set_mode(&path, 0o644);
        path
    }

    /// Write service file `service` with the given stack lines; `{module}` in them becomes the module's path.
    pub fn write_service(&self, service: &str, lines: &[String]) {
        let module = module::path().display().to_string();
        let text: String = lines
            .iter()
            .map(|l| format!("{}\n", l.replace("{module}", &module)))
            .collect();
        let path = self.pam_dir().join(service);
        std::fs::write(&path, text).expect("write the service file");
        set_mode(&path, 0o644);
    }

    /// The usual test service: only the module, `required`, reading configuration `config` with `args`.
    pub fn write_module_service(&self, service: &str, config: &Path, args: &str) {
        self.write_service(
            service,
            &[format!(
                "auth required {{module}} config={} {args}",
                config.display()
            )],
        );
    }

    /// Enrol `images` of `person` for `user` (one sample each), as `facekey add` does.
    pub fn enrol(&self, user: &str, person: &str, images: &[usize]) {
        let engine = engine();
        let user = UserName::new(user).expect("valid user name");
        let mut enrolment = Enrolment::new(&user, engine.embedder_id().clone());
        for &i in images {
            let path = face(person, i);
            let image = source::read_image(&path)
                .expect("read a test image")
                .to_rgb()
                .expect("decodable test image");
            let faces = engine.analyse(&image).expect("analyse a test image");
            assert_eq!(faces.len(), 1, "{}: expected one face", path.display());
            enrolment.add_sample(&person.replace('_', " "), faces[0].embedding.0.clone());
        }
        Store::new(self.faces_dir())
            .save(&enrolment)
            .expect("save the enrolment");
    }

    /// Enrol the usual person for `user`.
    pub fn enrol_default(&self, user: &str) {
        self.enrol(user, ENROLLED, &ENROLLED_IMAGES);
    }

    /// A configuration only good for loading the models (used to enrol).
    fn base_config_for_models() -> facekey_config::Config {
        let mut config = facekey_config::Config::default();
        config.models.dir = models_dir();
        config
    }
}

/// Set a file's mode exactly (the umask does not apply to chmod).
pub fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// A FIFO nobody writes to, named like an image: opening it for reading would block forever. Replay sources
/// refuse it at once (files are opened non-blocking and must be regular).
pub fn hanging_fifo(dir: &Path) -> PathBuf {
    let path = dir.join("camera.jpg");
    let status = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
    path
}

/// The user name the tests authenticate (any valid name: the module does not look the user up).
pub const USER: &str = "e2e-user";
