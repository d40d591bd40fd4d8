//! `facekey model`: list, verify, install and switch the models facekey runs, and import dlib's own
//! network.
//!
//! What a model is, where it lives and which one is active is `facekey_core::models::catalogue`'s rule; this
//! module only asks it, checks candidates by running them, and writes the manifest and the configuration.

pub(crate) mod install;
mod list;
mod select;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use facekey_core::models::Role;

use crate::{CliResult, Failure};

/// `facekey model ...`
#[derive(Subcommand, Debug)]
pub enum ModelCommand {
    /// Every model facekey can use: role, file, size, SHA-256, licence, source, which is active, and which
    /// embedder made each enrolment.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Hash every model file again; exit 0 only when every one matches.
    Verify {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check a model (hash, that it loads, that it fits its role, a self-test on built-in faces) and install it
    /// under the installed models' directory (root).
    Install(InstallArgs),
    /// Make a model the active detector or embedder (root); names the enrolments an embedder switch leaves
    /// behind.
    Use {
        /// The model's name (`facekey model list`).
        name: String,
    },
    /// Convert dlib's own `dlib_face_recognition_resnet_model_v1.dat` (Howdy and face_recognition_models ship
    /// it) into facekey's form and install it as the embedder "dlib", checked against dlib's embeddings and the
    /// shipped embedder on built-in faces (root).
    ImportDlib {
        /// The .dat file.
        file: PathBuf,
        /// Replace an installed "dlib" embedder.
        #[arg(long)]
        replace: bool,
    },
}

#[derive(Args, Debug)]
pub struct InstallArgs {
    /// The ONNX file.
    pub file: PathBuf,
    /// Its SHA-256, as published by its source (64 hexadecimal characters): a file with another hash is refused.
    #[arg(long, value_name = "HEX")]
    pub sha256: String,
    /// What the model does.
    #[arg(long, value_enum)]
    pub role: RoleArg,
    /// The name to install it under (default: from the file name).
    #[arg(long)]
    pub name: Option<String>,
    /// For an embedder: a TOML file saying how to use it (template, chip_size, order, mean, scale, metric,
    /// dimension, threshold, calibration; see /usr/share/doc/facekey/models.md). Required for an embedder.
    #[arg(long, value_name = "FILE")]
    pub metadata: Option<PathBuf>,
    /// The licence to record.
    #[arg(long, default_value = "unknown (not given at installation)")]
    pub licence: String,
    /// Where the file came from, to record.
    #[arg(long)]
    pub source: Option<String>,
    /// Replace an installed model of the same name.
    #[arg(long)]
    pub replace: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleArg {
    Detector,
    Embedder,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Detector => Role::Detector,
            RoleArg::Embedder => Role::Embedder,
        }
    }
}

pub fn run(config_path: Option<&Path>, command: &ModelCommand) -> CliResult<ExitCode> {
    let config = crate::load_config(config_path)?;
    match command {
        ModelCommand::List { json } => list::list(&config, *json),
        ModelCommand::Verify { json } => list::verify(&config, *json),
        ModelCommand::Install(args) => {
            require_root("install a model")?;
            install::install(&config, args).map(|_| ExitCode::SUCCESS)
        }
        ModelCommand::Use { name } => {
            require_root("switch models")?;
            select::use_model(config_path, &config, name).map(|_| ExitCode::SUCCESS)
        }
        ModelCommand::ImportDlib { file, replace } => {
            require_root("install a model")?;
            install::import_dlib(&config, file, *replace).map(|_| ExitCode::SUCCESS)
        }
    }
}

fn require_root(what: &str) -> CliResult<()> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(Failure::new(format!(
            "only root may {what}: models decide who gets in (sudo facekey model ...)"
        )))
    }
}
