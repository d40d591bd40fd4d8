//! `facekey`: enrol faces, run the authentication decision, and show it working on sample faces.
//!
//! A thin front end: every decision is `facekey_core::policy::attempt`, the entry point the PAM module
//! calls, with the same policy and rate limit; the frames are parsed in a confined child. This file only
//! parses arguments, resolves the user and prints. Errors are one line (more with `-v`), never a panic.
#![forbid(unsafe_code)]

// Every print in this crate goes through `output`, which never panics (see there). Defined before the modules so
// that they see these rather than std's.
macro_rules! println {
    () => { $crate::output::write($crate::output::Stream::Out, format_args!(""), true) };
    ($($arg:tt)*) => { $crate::output::write($crate::output::Stream::Out, format_args!($($arg)*), true) };
}
macro_rules! print {
    ($($arg:tt)*) => { $crate::output::write($crate::output::Stream::Out, format_args!($($arg)*), false) };
}
macro_rules! eprintln {
    () => { $crate::output::write($crate::output::Stream::Err, format_args!(""), true) };
    ($($arg:tt)*) => { $crate::output::write($crate::output::Stream::Err, format_args!($($arg)*), true) };
}
macro_rules! eprint {
    ($($arg:tt)*) => { $crate::output::write($crate::output::Stream::Err, format_args!($($arg)*), false) };
}

mod admin;
mod audit;
mod camera_cmds;
mod demo;
mod identify;
mod import_howdy;
mod ir;
mod model;
mod output;
mod users;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, CommandFactory, Parser, Subcommand};
use facekey_config::{Config, DEFAULT_CONFIG_PATH};
use facekey_core::camera::identity::CameraIdentity;
use facekey_core::confine::{self, Confinement};
use facekey_core::engine::Engine;
use facekey_core::frame::FrameSource;
use facekey_core::models::ModelFiles;
use facekey_core::policy::{self, Attempt, Isolation, Request, SourceChoice, System, Verdict};
use facekey_core::settings::{self, IfMissing};
use facekey_core::source;
use facekey_core::store::{EmbedderId, Enrolment, Store, UserName};
use facekey_core::{EngineCache, Outcome};

/// Face unlock for Linux: enrol faces and test the decision the PAM module takes.
#[derive(Parser, Debug)]
#[command(name = "facekey", version, about, long_about = None, after_long_help = admin::after_long_help())]
struct Cli {
    /// Configuration file.
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Print the cause chain of errors and more detail.
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Capture face samples and enrol them for a user.
    Add(AddArgs),
    /// List a user's enrolled samples.
    List {
        #[command(flatten)]
        user: UserArg,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove one enrolled sample by id.
    Remove {
        #[command(flatten)]
        user: UserArg,
        /// The sample id (see `facekey list`).
        id: u32,
    },
    /// Remove every enrolled sample of a user.
    Clear {
        #[command(flatten)]
        user: UserArg,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Run the attempt the PAM module runs (policy, rate limit, decision) and print its verdict (exit 0 matched, 1
    /// not matched or rate limited, 2 unavailable or not applicable).
    ///
    /// The request is the one the service `--service` would make for this command's real uid, with no remote
    /// host: the rules of [pam] (services, allow_root, other_user_services) and the rate limit apply as for
    /// the module, and a failure counts. Frames are parsed in a confined child process.
    Auth {
        #[command(flatten)]
        user: UserArg,
        /// Frame source instead of the configured one (file:PATH[,PATH...], dir:PATH, v4l2:DEVICE).
        #[arg(long, value_name = "SRC")]
        source: Option<String>,
        /// The PAM service whose rules apply.
        #[arg(long, value_name = "NAME", default_value = "sudo")]
        service: String,
    },
    /// Enrol a sample person from built-in images and authenticate two others (no camera, no root).
    Demo,
    /// List the cameras: formats, sizes, which look infrared, which is configured.
    Devices {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run the decision on the camera, printing a line per frame (exit codes as for auth).
    Test(camera_cmds::TestArgs),
    /// Save one frame from the camera as a PNG.
    Snapshot(camera_cmds::SnapshotArgs),
    /// Name who, among every enrolled user, is in front of the camera, or nobody (root).
    Identify(identify::IdentifyArgs),
    /// Check camera, models, configuration, enrolments and PAM set-up; say how to fix each problem.
    Doctor(admin::DoctorArgs),
    /// Show the effective configuration, or check it.
    #[command(subcommand)]
    Config(admin::ConfigCommand),
    /// List, verify, install and switch the face models; import dlib's own network.
    #[command(subcommand)]
    Model(model::ModelCommand),
    /// Bring Howdy's configuration and face models over (exit 0 done, 1 some user's models refused, 2 error).
    ///
    /// Reads Howdy 3's /etc/howdy/config.ini or Howdy 2's /lib/security/howdy/config.ini under --root, maps
    /// every key with a facekey equivalent into the configuration (--config), and imports each user's
    /// models/USER.dat when the active embedder reproduces dlib's descriptors and they are one person's face.
    ImportHowdy(import_howdy::ImportHowdyArgs),
    /// Find, list, set and clear the setting that lights an infrared camera's emitter.
    #[command(subcommand)]
    Ir(ir::IrCommand),
    /// Turn face authentication on again ([general] disabled = false); PAM files are not touched.
    Enable,
    /// Turn face authentication off for everyone ([general] disabled = true); the password still works.
    Disable,
    /// Write the man pages and shell completions (for packaging).
    #[command(hide = true)]
    Generate(admin::GenerateArgs),
}

#[derive(Args, Debug)]
struct UserArg {
    /// The user (default: the invoking user; the sudo caller under sudo).
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
}

#[derive(Args, Debug)]
struct AddArgs {
    #[command(flatten)]
    user: UserArg,
    /// A label for the samples (shown on a match).
    #[arg(long, value_name = "TEXT")]
    label: Option<String>,
    /// Frame source instead of the configured one.
    #[arg(long, value_name = "SRC")]
    source: Option<String>,
    /// How many face samples to capture.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=50))]
    samples: u32,
}

/// A failure the CLI reports: one line, plus its causes with `-v`. It crosses the pipe from a confined child
/// (`camera_cmds`) as it is.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Failure {
    message: String,
    detail: Vec<String>,
}

impl Failure {
    fn new(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            detail: Vec::new(),
        }
    }

    fn from_error(context: &str, error: &dyn std::error::Error) -> Failure {
        let mut detail = Vec::new();
        let mut cause = error.source();
        while let Some(c) = cause {
            detail.push(c.to_string());
            cause = c.source();
        }
        Failure {
            message: format!("{context}: {error}"),
            detail,
        }
    }
}

type CliResult<T> = Result<T, Failure>;

/// Print `value` as pretty JSON on stdout.
fn print_json(value: &impl serde::Serialize) -> CliResult<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Failure::from_error("JSON", &e))?;
    println!("{text}");
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let verbose = cli.verbose;
    let code = match run(cli) {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("facekey: {}", failure.message);
            if verbose {
                for d in &failure.detail {
                    eprintln!("  caused by: {d}");
                }
            }
            ExitCode::from(2)
        }
    };
    output::finish(code)
}

fn run(cli: Cli) -> CliResult<ExitCode> {
    let config = || load_config(cli.config.as_deref());
    match &cli.command {
        Command::Add(args) => add(&config()?, args, cli.verbose).map(|_| ExitCode::SUCCESS),
        Command::List { user, json } => list(&config()?, user, *json).map(|_| ExitCode::SUCCESS),
        Command::Remove { user, id } => remove(&config()?, user, *id).map(|_| ExitCode::SUCCESS),
        Command::Clear { user, yes } => clear(&config()?, user, *yes).map(|_| ExitCode::SUCCESS),
        Command::Auth {
            user,
            source,
            service,
        } => auth(cli.config.as_deref(), user, source.as_deref(), service),
        Command::Demo => demo::run(cli.config.as_deref()).map(|_| ExitCode::SUCCESS),
        Command::Devices { json } => camera_cmds::devices(&config()?, *json),
        Command::Test(args) => camera_cmds::test(cli.config.as_deref(), args),
        Command::Snapshot(args) => camera_cmds::snapshot(cli.config.as_deref(), args),
        Command::Identify(args) => identify::identify(cli.config.as_deref(), args),
        Command::Doctor(args) => admin::doctor(cli.config.as_deref(), args),
        Command::Config(command) => admin::config(cli.config.as_deref(), command),
        Command::Model(command) => model::run(cli.config.as_deref(), command),
        Command::ImportHowdy(args) => import_howdy::run(cli.config.as_deref(), args),
        Command::Ir(command) => ir::run(cli.config.as_deref(), command),
        Command::Enable => admin::switch(cli.config.as_deref(), false),
        Command::Disable => admin::switch(cli.config.as_deref(), true),
        Command::Generate(args) => admin::generate(Cli::command(), args),
    }
}

fn load_config(path: Option<&Path>) -> CliResult<Config> {
    let (path, if_missing) = match path {
        Some(p) => (p, IfMissing::Fail),
        None => (Path::new(DEFAULT_CONFIG_PATH), IfMissing::UseDefaults),
    };
    settings::load_config(path, if_missing).map_err(|e| Failure::from_error("configuration", &e))
}

fn resolve_user(arg: &UserArg) -> CliResult<UserName> {
    let name = users::resolve(arg.user.as_deref()).map_err(Failure::new)?;
    UserName::new(&name).map_err(|e| Failure::from_error("user", &e))
}

/// The source to enrol from, with the `[camera]` settings; a camera `require_ir` refuses is refused
/// here too, rather than enrolling faces the decision will never use.
fn open_source(config: &Config, spec: Option<&str>) -> CliResult<Box<dyn FrameSource>> {
    let spec = spec.unwrap_or(&config.camera.source);
    let source = source::open_source_with(spec, &config.camera)
        .map_err(|e| Failure::from_error("frame source", &e))?;
    facekey_core::liveness::check_infrared(&config.camera, source.as_ref())
        .map_err(|e| Failure::from_error("frame source", &e))?;
    Ok(source)
}

/// What the confined child of `facekey add` hands back: the embedder that made the samples, the samples, and
/// the camera they came from (none for image files).
type Captured = (EmbedderId, Vec<Vec<f32>>, Option<CameraIdentity>);

/// `facekey add`: the frames are parsed and embedded in a confined child (the model files read and the source
/// opened before it confines itself); this process reads and writes the enrolment.
fn add(config: &Config, args: &AddArgs, verbose: bool) -> CliResult<()> {
    let user = resolve_user(&args.user)?;
    let store = Store::new(&config.storage.faces_dir);
    // Read the existing enrolment first: a refused or foreign file stops here, before any capture.
    let existing = store
        .load(&user)
        .map_err(|e| Failure::from_error("enrolment store", &e))?;
    let enrolled_with = existing.as_ref().map(|e| e.embedder.clone());
    let store_path = store.path_for(&user);
    // The child's own capture deadline starts once its models are loaded; this bounds the whole child.
    let limit = Instant::now()
        + capture_time(config, args.samples)
        + Duration::from_secs(CHILD_STARTUP_SECS);
    let ran = confine::run_confined(
        limit,
        &Confinement::default(),
        || {
            (
                ModelFiles::read(config),
                open_source(config, args.source.as_deref()),
            )
        },
        |(files, source)| -> Result<Captured, Failure> {
            let mut source = source?;
            let hint = source.frame_size_hint();
            let engine = files
                .and_then(|files| Engine::start_from(files, config, move || hint))
                .map_err(|e| Failure::from_error("models", &e))?;
            let embedder = engine
                .embedder_id()
                .clone();
            if let Some(found) = enrolled_with.filter(|found| *found != embedder) {
                return Err(Failure::new(format!(
                    "{}: enrolled with another model (sha256 {}); run `facekey clear --user {user}` first",
                    store_path.display(),
                    found.sha256
                )));
            }
            let embeddings = capture_samples(config, &engine, source.as_mut(), args.samples)?;
            // Authentication compares these faces only with frames from the same camera.
            let camera = source.camera().map(|c| c.identity.clone());
            Ok((embedder, embeddings, camera))
        },
    )
    .map_err(|e| Failure::from_error("confined capture", &e))?;
    let (embedder, embeddings, camera) = ran.value?;
    let mut enrolment = existing.unwrap_or_else(|| Enrolment::new(&user, embedder));
    let label = args.label.clone().unwrap_or_else(|| format!("{user}"));
    let ids: Vec<u32> = embeddings
        .into_iter()
        .map(|e| enrolment.add_sample_from(&label, e, camera.clone()))
        .collect();
    store
        .save(&enrolment)
        .map_err(|e| Failure::from_error("enrolment store", &e))?;
    let (first, last) = (ids[0], ids[ids.len() - 1]);
    let range = if first == last {
        format!("{first}")
    } else {
        format!("{first}-{last}")
    };
    audit::record(
        config,
        &audit::Change {
            action: "add",
            user: Some(user.as_str()),
            detail: format!(
                "{} sample(s) labelled {label:?}, id {range}, embedder sha256 {}, camera {}",
                ids.len(),
                enrolment.embedder.sha256,
                camera
                    .as_ref()
                    .map_or("none (image files)".to_owned(), |c| c.describe())
            ),
        },
    );
    println!(
        "Added {} sample(s) for {user} as '{label}': id {range} ({})",
        ids.len(),
        store.path_for(&user).display()
    );
    if verbose {
        println!("Frames parsed confined: {}", ran.confined);
    }
    Ok(())
}

/// Seconds a confined child may take, before its own capture deadline starts, to parse the models.
const CHILD_STARTUP_SECS: u64 = 10;

/// Enrolment is interactive: each sample gets the authentication timeout, plus a little to settle.
fn capture_time(config: &Config, wanted: u32) -> Duration {
    Duration::from_secs_f64(config.auth.timeout * wanted as f64 + 2.0)
}

/// Read frames until `wanted` frames each held exactly one face; frames with none or several are skipped.
fn capture_samples(
    config: &Config,
    engine: &Engine,
    source: &mut dyn FrameSource,
    wanted: u32,
) -> CliResult<Vec<Vec<f32>>> {
    let deadline = Instant::now() + capture_time(config, wanted);
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(wanted as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{msg:30} [{bar:30}] {pos}/{len}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message("Look at the camera");
        bar
    });
    let (mut samples, mut no_face, mut several) = (Vec::new(), 0u32, 0u32);
    while (samples.len() as u32) < wanted {
        let frame = match source.next_frame(deadline) {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(Failure::from_error("frame source", &e)),
        };
        let Ok(image) = frame.to_rgb() else { continue };
        let faces = engine
            .analyse(&image)
            .map_err(|e| Failure::from_error("analysis", &e))?;
        match faces.as_slice() {
            [one] => {
                samples.push(one.embedding.0.clone());
                if let Some(bar) = &bar {
                    bar.inc(1);
                }
            }
            [] => {
                no_face += 1;
                if let Some(bar) = &bar {
                    bar.set_message("No face in view");
                }
            }
            _ => {
                several += 1;
                if let Some(bar) = &bar {
                    bar.set_message("Several faces: one person only");
                }
            }
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if (samples.len() as u32) < wanted {
        return Err(Failure::new(format!(
            "captured {} of {wanted} samples before the source ended or the deadline passed \
             ({no_face} frame(s) without a face, {several} with several faces); nothing was stored",
            samples.len()
        )));
    }
    Ok(samples)
}

fn list(config: &Config, user: &UserArg, json: bool) -> CliResult<()> {
    let user = resolve_user(user)?;
    let store = Store::new(&config.storage.faces_dir);
    let enrolment = store
        .load(&user)
        .map_err(|e| Failure::from_error("enrolment store", &e))?;
    let samples = enrolment
        .as_ref()
        .map(|e| e.samples.as_slice())
        .unwrap_or_default();
    if json {
        let items: Vec<serde_json::Value> = samples
            .iter()
            .map(|s| {
                serde_json::json!({"id": s.id, "label": s.label, "created": s.created, "camera": s.camera})
            })
            .collect();
        let doc = serde_json::json!({"user": user.as_str(), "samples": items});
        println!("{doc}");
        return Ok(());
    }
    if samples.is_empty() {
        println!("{user} has no enrolled face");
        return Ok(());
    }
    println!(
        "{:>4}  {:<20}  {:<24}  camera",
        "id", "created (UTC)", "label"
    );
    for s in samples {
        // A sample with no recorded camera (from image files, or enrolled before facekey recorded cameras) is
        // compared with frames from any camera: re-enrolling ties it to one.
        let camera = s
            .camera
            .as_ref()
            .map_or("any (not recorded)".to_owned(), |c| c.describe());
        println!(
            "{:>4}  {:<20}  {:<24}  {camera}",
            s.id,
            users::format_utc(s.created),
            s.label
        );
    }
    Ok(())
}

fn remove(config: &Config, user: &UserArg, id: u32) -> CliResult<()> {
    let user = resolve_user(user)?;
    let store = Store::new(&config.storage.faces_dir);
    let mut enrolment = store
        .load(&user)
        .map_err(|e| Failure::from_error("enrolment store", &e))?
        .ok_or_else(|| Failure::new(format!("{user} has no enrolled face")))?;
    if !enrolment.remove_sample(id) {
        return Err(Failure::new(format!("{user} has no sample with id {id}")));
    }
    if enrolment.samples.is_empty() {
        store
            .remove_user(&user)
            .map_err(|e| Failure::from_error("enrolment store", &e))?;
    } else {
        store
            .save(&enrolment)
            .map_err(|e| Failure::from_error("enrolment store", &e))?;
    }
    audit::record(
        config,
        &audit::Change {
            action: "remove",
            user: Some(user.as_str()),
            detail: format!("sample {id}"),
        },
    );
    println!("Removed sample {id} of {user}");
    Ok(())
}

fn clear(config: &Config, user: &UserArg, yes: bool) -> CliResult<()> {
    let user = resolve_user(user)?;
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(Failure::new(
                "refusing to clear without confirmation: pass --yes",
            ));
        }
        eprint!("Remove every enrolled face of {user}? [y/N] ");
        let mut answer = String::new();
        std::io::stdin()
            .read_line(&mut answer)
            .map_err(|e| Failure::from_error("stdin", &e))?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            println!("Nothing removed");
            return Ok(());
        }
    }
    let store = Store::new(&config.storage.faces_dir);
    let removed = store
        .remove_user(&user)
        .map_err(|e| Failure::from_error("enrolment store", &e))?;
    if removed {
        audit::record(
            config,
            &audit::Change {
                action: "clear",
                user: Some(user.as_str()),
                detail: "every sample".into(),
            },
        );
        println!("Removed every enrolled face of {user}");
    } else {
        println!("{user} had no enrolled face");
    }
    Ok(())
}

fn auth(
    config_path: Option<&Path>,
    user: &UserArg,
    source: Option<&str>,
    service: &str,
) -> CliResult<ExitCode> {
    // Configuration and user problems are "unavailable" (exit 2), as they are for the PAM module.
    let config = load_config(config_path)?;
    let user = resolve_user(user)?;
    let source = source.map_or(SourceChoice::Configured, |s| {
        SourceChoice::Spec(s.to_owned())
    });
    let verdict = attempt(&config, &user, service, source, None);
    println!("{verdict}");
    Ok(exit_code(&verdict))
}

/// The attempt `facekey auth` and `facekey test` make, through the entry point the PAM module uses: the
/// request `service` would make for this command's real uid (no PAM_RUSER, no remote host), on `source`,
/// decided in a confined child (nothing in this process has started a thread yet).
fn attempt(
    config: &Config,
    user: &UserName,
    service: &str,
    source: SourceChoice,
    observer: Option<policy::Observer>,
) -> Verdict {
    // Unused by a confined attempt (the child loads the models), but the entry point takes one.
    static ENGINES: std::sync::LazyLock<EngineCache> = std::sync::LazyLock::new(EngineCache::new);
    let request = Request {
        service: Some(service.to_owned()),
        ..Request::from_this_process()
    };
    let system = System::real();
    let attempt = Attempt {
        isolation: Isolation::Confined,
        source,
        observer,
        ..Attempt::new(
            user.as_str(),
            &request,
            &system,
            policy::deadline_after(Instant::now(), config.auth.timeout),
        )
    };
    policy::attempt(config, attempt, &ENGINES, &mut || {})
}

/// 0 matched; 1 a face not matched, none seen, or rate limited (the module's PAM_AUTH_ERR); 2 unavailable or not
/// applicable (PAM_AUTHINFO_UNAVAIL).
fn exit_code(verdict: &Verdict) -> ExitCode {
    match verdict {
        Verdict::Decided { outcome, .. } => match outcome {
            Outcome::Matched { .. } => ExitCode::SUCCESS,
            Outcome::NoMatch { .. } | Outcome::NoFace { .. } => ExitCode::from(1),
            Outcome::Unavailable(_) => ExitCode::from(2),
        },
        Verdict::RateLimited(_) => ExitCode::from(1),
        Verdict::NotApplicable(_) | Verdict::RateLimitBroken(_) => ExitCode::from(2),
    }
}
