//! `facekey ir`: find, keep and manage the extension-unit setting that lights an infrared camera's
//! emitter.
//!
//! The search, the store and the rule that applies a setting each time the camera opens are all
//! in `facekey_core::camera::emitter`; this module parses arguments, shows progress and prints.
//! Every command that writes (`discover`, `set`, `clear`) is for root: the settings file decides
//! what is written to the camera at every authentication.

mod discover;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use facekey_config::Config;
use facekey_core::camera::descriptors::parse_hex;
use facekey_core::camera::devices;
use facekey_core::camera::emitter::store::{self, Entry, Settings};
use facekey_core::camera::emitter::{self, EmitterSetting};
use facekey_core::camera::xu::ControlId;

use crate::{CliResult, Failure};

/// `facekey ir ...`
#[derive(Subcommand, Debug)]
pub enum IrCommand {
    /// Find the control that lights the camera's IR emitter by watching the frames, and keep it (root).
    ///
    /// Tries the writable extension-unit controls the camera declares, a few values each, judging a burst
    /// of frames after each; stops at the first that gives lit frames, puts every other control back.
    /// Exit 0 when a setting was found and stored (or with --dry-run), 1 when none was, 2 on an error.
    Discover(DiscoverArgs),
    /// The stored settings, one per camera.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Store a setting found elsewhere, after checking it against the camera, and set it now (root).
    Set(SetArgs),
    /// Remove the stored setting of a camera, or of every camera (root).
    Clear {
        /// The camera (/dev/videoN or a /dev/v4l/by-id name).
        #[arg(long, value_name = "DEV", required_unless_present = "all")]
        device: Option<PathBuf>,
        /// Every camera.
        #[arg(long, conflicts_with = "device")]
        all: bool,
    },
}

#[derive(Args, Debug)]
pub struct DiscoverArgs {
    /// The camera (default: the configured `[camera] source`).
    #[arg(long, value_name = "DEV")]
    pub device: Option<PathBuf>,
    /// Read every control and list the values that would be tried; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print everything seen (descriptors, every control's values, every try): the text to send back when
    /// discovery fails.
    #[arg(long)]
    pub report: bool,
    /// Give up after this many seconds (each try takes about a second).
    #[arg(long, value_name = "SECONDS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(5..=1800))]
    pub max_seconds: u64,
}

#[derive(Args, Debug)]
pub struct SetArgs {
    /// The camera (/dev/videoN or a /dev/v4l/by-id name).
    #[arg(long, value_name = "DEV")]
    pub device: PathBuf,
    /// The extension unit id (bUnitID).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..))]
    pub unit: u8,
    /// The control selector.
    #[arg(long)]
    pub selector: u8,
    /// The value, hex bytes (`010303000000000000`, `01 03 03 ...`).
    #[arg(long, value_name = "HEX")]
    pub value: String,
}

pub fn run(config_path: Option<&Path>, command: &IrCommand) -> CliResult<ExitCode> {
    let config = crate::load_config(config_path)?;
    match command {
        IrCommand::Discover(args) => {
            if !args.dry_run {
                require_root("search for the emitter control (it writes camera controls)")?;
            }
            discover::discover(&config, args)
        }
        IrCommand::List { json } => list(&config, *json),
        IrCommand::Set(args) => {
            require_root("store an emitter setting")?;
            set(&config, args)
        }
        IrCommand::Clear { device, all } => {
            require_root("remove an emitter setting")?;
            clear(&config, device.as_deref(), *all)
        }
    }
}

fn require_root(what: &str) -> CliResult<()> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(Failure::new(format!(
            "only root may {what}: the settings are applied at every authentication (sudo facekey ir ...)"
        )))
    }
}

fn load(config: &Config) -> CliResult<Settings> {
    Settings::load(&config.camera.emitter_settings)
        .map_err(|e| Failure::from_error("infrared emitter settings", &e))
}

/// Write the settings and send the audit record of the change (`action`, what changed).
fn save(config: &Config, settings: &Settings, action: &str, detail: String) -> CliResult<()> {
    settings
        .save(&config.camera.emitter_settings)
        .map_err(|e| Failure::from_error("infrared emitter settings", &e))?;
    crate::audit::record(
        config,
        &crate::audit::Change {
            action,
            user: None,
            detail: format!("{detail} ({})", config.camera.emitter_settings.display()),
        },
    );
    Ok(())
}

/// The camera named on the command line, else the configured one.
pub(crate) fn device_or_configured(config: &Config, device: Option<&Path>) -> CliResult<PathBuf> {
    if let Some(device) = device {
        return Ok(device.to_path_buf());
    }
    config
        .camera
        .source
        .strip_prefix("v4l2:")
        .map(PathBuf::from)
        .ok_or_else(|| {
            Failure::new(format!(
                "the configured source {:?} is not a camera; name one with --device /dev/videoN",
                config.camera.source
            ))
        })
}

/// "vvvv:pppp" of a camera, when it is a USB one.
pub(crate) fn usb_id(node: &Path) -> Option<String> {
    devices::usb_identity(node).map(|u| format!("{}:{}", u.vendor, u.product))
}

fn list(config: &Config, json: bool) -> CliResult<ExitCode> {
    let settings = load(config)?;
    if json {
        let items: Vec<serde_json::Value> = settings
            .entries
            .iter()
            .map(|e| {
                serde_json::json!({
                    "device": e.device,
                    "usb": e.usb,
                    "unit": e.unit,
                    "selector": e.selector,
                    "value": e.value,
                    "origin": e.origin,
                    "dark_threshold": e.dark_threshold,
                    "present": Path::new(&e.device).exists(),
                })
            })
            .collect();
        crate::print_json(&serde_json::json!({
            "file": config.camera.emitter_settings,
            "cameras": items,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    if settings.entries.is_empty() {
        println!(
            "No infrared emitter setting stored ({}); `sudo facekey ir discover` finds one.",
            config.camera.emitter_settings.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}:", config.camera.emitter_settings.display());
    for e in &settings.entries {
        let present = if Path::new(&e.device).exists() {
            ""
        } else {
            " (not plugged in)"
        };
        let usb = e
            .usb
            .as_deref()
            .map(|u| format!(" [{u}]"))
            .unwrap_or_default();
        let dark = e
            .dark_threshold
            .map(|t| format!(", dark threshold {t:.0}%"))
            .unwrap_or_default();
        println!(
            "  {}{usb}{present}: unit {} selector {} = {} ({}{dark})",
            e.device, e.unit, e.selector, e.value, e.origin
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn set(config: &Config, args: &SetArgs) -> CliResult<ExitCode> {
    let value = parse_hex(&args.value).ok_or_else(|| {
        Failure::new(format!(
            "--value {:?}: expected hex bytes, two digits each (such as 010303000000000000)",
            args.value
        ))
    })?;
    let setting = EmitterSetting {
        control: ControlId {
            unit: args.unit,
            selector: args.selector,
        },
        value,
        dark_threshold: None,
    };
    // Read the stored settings first: an untrusted file stops here, before the camera is touched.
    let mut settings = load(config)?;
    emitter::check_and_apply(&args.device, &setting).map_err(Failure::new)?;
    let key = store::device_key(&args.device);
    settings.put(Entry::new(
        key.clone(),
        usb_id(&args.device),
        &setting,
        "set",
    ));
    save(config, &settings, "ir-set", format!("{key}: {setting}"))?;
    println!("Stored for {key}: {setting} (set now, and each time facekey opens the camera).");
    Ok(ExitCode::SUCCESS)
}

fn clear(config: &Config, device: Option<&Path>, all: bool) -> CliResult<ExitCode> {
    let mut settings = load(config)?;
    if all {
        let n = settings.entries.len();
        settings.entries.clear();
        save(config, &settings, "ir-clear", format!("all {n} setting(s)"))?;
        println!("Removed {n} stored setting(s).");
        return Ok(ExitCode::SUCCESS);
    }
    let Some(device) = device else {
        return Err(Failure::new("name a camera with --device, or use --all"));
    };
    if !settings.remove(device) {
        return Err(Failure::new(format!(
            "no setting is stored for {} (`facekey ir list` shows them)",
            device.display()
        )));
    }
    save(
        config,
        &settings,
        "ir-clear",
        format!("the setting of {}", device.display()),
    )?;
    println!(
        "Removed the setting of {}; the camera keeps its current value until it is power-cycled.",
        device.display()
    );
    Ok(ExitCode::SUCCESS)
}
