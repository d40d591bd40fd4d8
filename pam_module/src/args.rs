//! The module arguments from the PAM stack line: `config=PATH`, `timeout=SECONDS`, `debug`, `helper=PATH`,
//! `use_helper`.
//!
//! They come from a root-owned file under /etc/pam.d, but are still checked: a relative configuration path or a
//! timeout outside (0, 60] is an error (the module then answers "unavailable"), an unknown word is reported and
//! ignored, as pam_unix does.

use std::ffi::CStr;
use std::path::PathBuf;

/// The parsed arguments.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModuleArgs {
    /// `config=PATH`: the configuration file instead of /etc/facekey/config.toml. Absolute.
    pub config: Option<PathBuf>,
    /// `timeout=SECONDS`: overrides `[auth] timeout`.
    pub timeout: Option<f64>,
    /// `debug`: log each step, not only the decision.
    pub debug: bool,
    /// `helper=PATH`: the helper to run instead of `/usr/libexec/facekey/facekey-check`. Absolute.
    pub helper: Option<PathBuf>,
    /// `use_helper`: decide through the helper (confined) even when the host process is root.
    pub use_helper: bool,
    /// Words not understood, for a warning.
    pub unknown: Vec<String>,
}

/// An argument that cannot be honoured.
#[derive(thiserror::Error, Debug, Clone, PartialEq)]
pub enum ArgError {
    #[error("module argument {0:?} is not valid UTF-8")]
    NotUtf8(String),
    #[error("module argument config={0:?}: the path must be absolute")]
    RelativeConfig(String),
    #[error("module argument helper={0:?}: the path must be absolute")]
    RelativeHelper(String),
    #[error("module argument timeout={0:?}: expected seconds, greater than 0 and at most 60")]
    BadTimeout(String),
}

/// Parse the arguments PAM passes to the hook.
pub fn parse(args: &[&CStr]) -> Result<ModuleArgs, ArgError> {
    let mut out = ModuleArgs::default();
    for arg in args {
        let arg = arg
            .to_str()
            .map_err(|_| ArgError::NotUtf8(arg.to_string_lossy().into_owned()))?;
        if arg == "debug" {
            out.debug = true;
        } else if arg == "use_helper" {
            out.use_helper = true;
        } else if let Some(path) = arg.strip_prefix("helper=") {
            if !path.starts_with('/') {
                return Err(ArgError::RelativeHelper(path.to_owned()));
            }
            out.helper = Some(PathBuf::from(path));
        } else if let Some(path) = arg.strip_prefix("config=") {
            if !path.starts_with('/') {
                return Err(ArgError::RelativeConfig(path.to_owned()));
            }
            out.config = Some(PathBuf::from(path));
        } else if let Some(secs) = arg.strip_prefix("timeout=") {
            match secs.parse::<f64>() {
                Ok(t) if t > 0.0 && t <= 60.0 => out.timeout = Some(t),
                _ => return Err(ArgError::BadTimeout(secs.to_owned())),
            }
        } else {
            out.unknown.push(arg.to_owned());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&CStr]) -> Result<ModuleArgs, ArgError> {
        parse(args)
    }

    #[test]
    fn no_arguments_mean_defaults() {
        assert_eq!(parse_strs(&[]), Ok(ModuleArgs::default()));
    }

    #[test]
    fn every_known_argument_is_read() {
        let parsed = parse_strs(&[
            c"debug",
            c"config=/etc/facekey/other.toml",
            c"timeout=2.5",
            c"helper=/opt/facekey-check",
            c"use_helper",
            c"frobnicate",
        ]);
        assert_eq!(
            parsed,
            Ok(ModuleArgs {
                config: Some(PathBuf::from("/etc/facekey/other.toml")),
                timeout: Some(2.5),
                debug: true,
                helper: Some(PathBuf::from("/opt/facekey-check")),
                use_helper: true,
                unknown: vec!["frobnicate".to_owned()],
            })
        );
    }

    #[test]
    fn relative_config_path_is_an_error() {
        assert_eq!(
            parse_strs(&[c"config=facekey.toml"]),
            Err(ArgError::RelativeConfig("facekey.toml".into()))
        );
        assert_eq!(
            parse_strs(&[c"helper=facekey-check"]),
            Err(ArgError::RelativeHelper("facekey-check".into()))
        );
    }

    #[test]
    fn timeout_outside_the_range_is_an_error() {
        for bad in [
            c"timeout=0",
            c"timeout=-1",
            c"timeout=61",
            c"timeout=NaN",
            c"timeout=soon",
            c"timeout=",
        ] {
            assert!(
                matches!(parse_strs(&[bad]), Err(ArgError::BadTimeout(_))),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse_strs(&[c"timeout=60"]).map(|a| a.timeout),
            Ok(Some(60.0))
        );
    }

    #[test]
    fn non_utf8_argument_is_an_error() {
        let raw: &[u8] = b"config=/\xff\0";
        let arg = CStr::from_bytes_with_nul(raw);
        assert!(arg.is_ok());
        if let Ok(arg) = arg {
            assert!(matches!(parse_strs(&[arg]), Err(ArgError::NotUtf8(_))));
        }
    }
}
