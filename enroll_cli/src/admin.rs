//! The administrator's commands: `facekey doctor`, `facekey config show|check`, `facekey enable|disable`,
//! and the hidden `facekey generate` that writes the man pages and shell completions for the package.
//!
//! Like the rest of the CLI these only translate: the configuration, trust, model and store checks are
//! the core's, the same ones the PAM module runs. They must never edit a PAM file (pam-auth-update and
//! the administrator own those) or loosen a permission.

mod doctor;
mod pam_stack;
pub(crate) mod switch;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use clap_complete::Shell;
use facekey_config::{Config, DEFAULT_CONFIG_PATH};
use facekey_core::trust;
use toml_edit::DocumentMut;

use crate::{load_config, CliResult, Failure};
use doctor::Status;
use switch::Switched;

#[derive(Args, Debug)]
pub(crate) struct DoctorArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Check the PAM files, module and device nodes of a system installed under DIR (tests, chroots).
    #[arg(long, value_name = "DIR", hide = true)]
    root: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub(crate) enum ConfigCommand {
    /// Print the effective configuration: the file with the built-in default for every key it leaves out.
    Show,
    /// Check that the configuration would be accepted (exit 0 valid, 1 refused or invalid).
    Check,
}

#[derive(Args, Debug)]
pub(crate) struct GenerateArgs {
    /// Write facekey(1) and one page per subcommand (facekey-add(1), ...) into DIR.
    #[arg(long, value_name = "DIR")]
    man: Option<PathBuf>,
    /// Write the bash, zsh and fish completions into DIR.
    #[arg(long, value_name = "DIR")]
    completions: Option<PathBuf>,
}

/// Files facekey reads and writes: the FILES section of facekey(1) and the end of `facekey --help`.
const FILES: &[(&str, &str)] = &[
    (
        "/etc/facekey/config.toml",
        "The configuration (a dpkg conffile). Trusted only when it and every parent directory are \
         owned by root and not writable by group or others.",
    ),
    (
        "/etc/facekey/faces/USER.toml",
        "A user's enrolled face samples (128 numbers each, never images), mode 0600, in a directory \
         of mode 0700.",
    ),
    (
        "/usr/share/facekey/models/",
        "The detection and recognition models, checked against pinned SHA-256 hashes, with their \
         licences.",
    ),
    (
        "/usr/share/pam-configs/facekey",
        "The pam-auth-update profile; `pam-auth-update --enable facekey` adds the module to \
         /etc/pam.d/common-auth before the password.",
    ),
    ("/run/facekey/", "Per-user counters of failed attempts (the rate limit)."),
];

/// Exit statuses: the EXIT STATUS section of facekey(1) and the end of `facekey --help`.
const EXIT_STATUS: &[(&str, &str)] = &[
    (
        "0",
        "Success; for auth and test, a face matched; for doctor, no check failed.",
    ),
    (
        "1",
        "auth, test: faces were seen but none matched, or no face before the deadline; doctor: a \
         check failed; config check: the configuration is refused or invalid.",
    ),
    (
        "2",
        "auth, test: face authentication is unavailable; any command: an error (bad arguments, \
         configuration, store, model or camera).",
    ),
];

const SEE_ALSO: &str = "pam_facekey(8), pam-auth-update(8), pam.conf(5)";

/// The text after `facekey --help`: files, exit statuses, where to read more.
pub(crate) fn after_long_help() -> String {
    let mut text = String::from("Files:\n");
    for (path, what) in FILES {
        text.push_str(&format!("  {path}\n          {what}\n"));
    }
    text.push_str("\nExit status:\n");
    for (code, what) in EXIT_STATUS {
        text.push_str(&format!("  {code}  {what}\n"));
    }
    text.push_str(&format!("\nSee also: {SEE_ALSO}"));
    text
}

// --- doctor ---------------------------------------------------------------------------------------

pub(crate) fn doctor(config: Option<&Path>, args: &DoctorArgs) -> CliResult<ExitCode> {
    let system = match &args.root {
        Some(root) => doctor::System::under(root, config),
        None => doctor::System::real(config),
    };
    let checks = doctor::run(&system);
    let passed = doctor::all_passed(&checks);
    if args.json {
        let items: Vec<serde_json::Value> = checks
            .iter()
            .map(|c| {
                serde_json::json!({
                    "status": c.status.label().to_ascii_lowercase(),
                    "area": c.area,
                    "message": c.message,
                    "fix": c.fix,
                })
            })
            .collect();
        println!("{}", serde_json::json!({"passed": passed, "checks": items}));
    } else {
        for check in &checks {
            println!("{}", check.line());
        }
        let count = |s: Status| checks.iter().filter(|c| c.status == s).count();
        println!(
            "{} checks: {} ok, {} warning(s), {} failed",
            checks.len(),
            count(Status::Ok),
            count(Status::Warn),
            count(Status::Fail)
        );
    }
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

// --- config show / check --------------------------------------------------------------------------

pub(crate) fn config(path: Option<&Path>, command: &ConfigCommand) -> CliResult<ExitCode> {
    match command {
        ConfigCommand::Show => config_show(path),
        ConfigCommand::Check => Ok(config_check(path)),
    }
}

fn config_show(path: Option<&Path>) -> CliResult<ExitCode> {
    let config = load_config(path)?;
    let shown = path.unwrap_or(Path::new(DEFAULT_CONFIG_PATH));
    let origin = if path.is_none() && std::fs::symlink_metadata(shown).is_err() {
        format!(
            "{} does not exist: these are the built-in defaults",
            shown.display()
        )
    } else {
        format!(
            "{} with the built-in default for every key it leaves out",
            shown.display()
        )
    };
    println!("# Effective configuration: {origin}.");
    println!("# A value that differs from the default says so.");
    print!("{}", annotate_differences(&config));
    Ok(ExitCode::SUCCESS)
}

/// The configuration as TOML, each value that differs from the default followed by `# default: ...`.
fn annotate_differences(config: &Config) -> String {
    let text = config.to_toml_string();
    let (Ok(mut doc), Ok(defaults)) = (
        text.parse::<DocumentMut>(),
        Config::default().to_toml_string().parse::<DocumentMut>(),
    ) else {
        return text;
    };
    let bare = |v: &toml_edit::Value| {
        let mut v = v.clone();
        v.decor_mut().clear();
        v.to_string()
    };
    for (section, item) in doc.iter_mut() {
        let Some(table) = item.as_table_mut() else {
            continue;
        };
        for (key, item) in table.iter_mut() {
            let Some(value) = item.as_value_mut() else {
                continue;
            };
            let default = defaults
                .get(section.get())
                .and_then(|t| t.get(key.get()))
                .and_then(|i| i.as_value())
                .map(bare);
            if default.as_deref() != Some(bare(value).as_str()) {
                let note = default.unwrap_or_else(|| "not set".into());
                value.decor_mut().set_suffix(format!("  # default: {note}"));
            }
        }
    }
    doc.to_string()
}

/// Exit 0 when the configuration would be accepted, 1 otherwise; every problem found is printed.
fn config_check(path: Option<&Path>) -> ExitCode {
    let explicit = path.is_some();
    let path = path.unwrap_or(Path::new(DEFAULT_CONFIG_PATH));
    let mut problems = Vec::new();
    let text = match trust::open_trusted_file(path) {
        Ok(mut file) => {
            let mut text = String::new();
            match std::io::Read::read_to_string(&mut file, &mut text) {
                Ok(_) => Some(text),
                Err(e) => {
                    problems.push(format!("{}: {e}", path.display()));
                    None
                }
            }
        }
        Err(e) if e.is_not_found() && !explicit => {
            println!(
                "{} does not exist: the built-in defaults apply (valid)",
                path.display()
            );
            return ExitCode::SUCCESS;
        }
        Err(e) if e.is_not_found() => {
            println!("{}: does not exist", path.display());
            return ExitCode::from(1);
        }
        Err(e) => {
            problems.push(format!("refused: {e}"));
            // Still say whether the content is right, so one run shows everything to fix.
            std::fs::read_to_string(path).ok()
        }
    };
    if let Some(text) = text {
        if let Err(e) = Config::from_toml_str(&text, path) {
            problems.push(e.to_string());
        }
    }
    if problems.is_empty() {
        println!("{}: valid", path.display());
        ExitCode::SUCCESS
    } else {
        for p in &problems {
            println!("{p}");
        }
        println!(
            "{}: not accepted; the PAM module answers \"unavailable\" until this is fixed, and PAM \
             asks for the password",
            path.display()
        );
        ExitCode::from(1)
    }
}

// --- enable / disable -----------------------------------------------------------------------------

pub(crate) fn switch(path: Option<&Path>, disabled: bool) -> CliResult<ExitCode> {
    let path = path.unwrap_or(Path::new(DEFAULT_CONFIG_PATH));
    let (switched, invalid) = switch::set_disabled(path, disabled)
        .map_err(|e| Failure::from_error(if disabled { "disable" } else { "enable" }, &e))?;
    let file = path.display();
    if !matches!(switched, Switched::Unchanged | Switched::DefaultsApply) {
        // The audit socket of the file just written, or the default one when it does not load.
        let config = crate::load_config(Some(path)).unwrap_or_default();
        crate::audit::record(
            &config,
            &crate::audit::Change {
                action: if disabled { "disable" } else { "enable" },
                user: None,
                detail: format!("[general] disabled = {disabled} in {file}"),
            },
        );
    }
    match (disabled, switched) {
        (true, Switched::Unchanged) => {
            println!("Face authentication was already off ([general] disabled = true in {file}).")
        }
        (true, _) => println!(
            "Face authentication is off: {file} now says [general] disabled = true. Every PAM request \
             gets \"unavailable\" and the password decides; no PAM file was changed. \
             `facekey enable` turns it back on."
        ),
        (false, Switched::Unchanged) => {
            println!("Face authentication was already on ([general] disabled = false in {file}).")
        }
        (false, Switched::DefaultsApply) => println!(
            "Face authentication is on: {file} does not exist and the built-in defaults enable it."
        ),
        (false, _) => {
            println!("Face authentication is on: {file} now says [general] disabled = false.")
        }
    }
    if let Some(reason) = invalid {
        println!(
            "Note: the configuration is not valid, so the PAM module refuses it anyway: {reason}"
        );
    }
    if !disabled {
        let system = doctor::System::real(Some(path));
        let stack = pam_stack::auth_stack(&system.pam_dir, "common-auth");
        let anywhere = !stack.facekey_rules().is_empty()
            || pam_stack::services(&system.pam_dir).iter().any(|s| {
                !pam_stack::auth_stack(&system.pam_dir, s)
                    .facekey_rules()
                    .is_empty()
            });
        if !anywhere {
            println!(
                "Note: no PAM stack runs pam_facekey.so yet; `pam-auth-update --enable facekey` adds \
                 it before the password. `facekey doctor` checks the whole set-up."
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

// --- generate -------------------------------------------------------------------------------------

/// Write the man pages and completions from `command`, the very definition `--help` prints.
pub(crate) fn generate(command: clap::Command, args: &GenerateArgs) -> CliResult<ExitCode> {
    if args.man.is_none() && args.completions.is_none() {
        return Err(Failure::new(
            "nothing to do: give --man DIR and/or --completions DIR",
        ));
    }
    let io = |path: &Path| {
        let path = path.to_owned();
        move |e: std::io::Error| Failure::from_error(&path.display().to_string(), &e)
    };
    if let Some(dir) = &args.man {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        for path in write_man_pages(command.clone(), dir).map_err(io(dir))? {
            println!("{}", path.display());
        }
    }
    if let Some(dir) = &args.completions {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut command = without_hidden_subcommands(command);
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let path =
                clap_complete::generate_to(shell, &mut command, "facekey", dir).map_err(io(dir))?;
            println!("{}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The same command without its hidden subcommands, which clap_complete would otherwise offer
/// (it filters hidden arguments, not hidden subcommands).
fn without_hidden_subcommands(command: clap::Command) -> clap::Command {
    let visible: Vec<clap::Command> = command
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .collect();
    let about = command.get_about().cloned().unwrap_or_default();
    clap::Command::new("facekey")
        .version(env!("CARGO_PKG_VERSION"))
        .about(about)
        .args(command.get_arguments().cloned())
        .subcommands(visible)
}

/// facekey.1 with FILES, EXIT STATUS and SEE ALSO, and a page per visible subcommand.
fn write_man_pages(command: clap::Command, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    use clap_mangen::roff::{bold, roman, Roff};

    let mut command = command.disable_help_subcommand(true);
    command.build();
    let version = command.get_version().unwrap_or_default().to_owned();
    let source = format!("facekey {version}");
    let mut written = Vec::new();

    let man = clap_mangen::Man::new(command.clone())
        .source(source.clone())
        .manual("facekey manual");
    let path = dir.join(man.get_filename());
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    man.render_subcommands_section(&mut page)?;
    let mut roff = Roff::default();
    roff.control("SH", ["FILES"]);
    for (path, what) in FILES {
        roff.control("TP", [])
            .text([bold(*path)])
            .text([roman(*what)]);
    }
    roff.control("SH", ["EXIT STATUS"]);
    for (code, what) in EXIT_STATUS {
        roff.control("TP", [])
            .text([bold(*code)])
            .text([roman(*what)]);
    }
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman(SEE_ALSO)]);
    roff.to_writer(&mut page)?;
    man.render_version_section(&mut page)?;
    std::fs::File::create(&path)?.write_all(&page)?;
    written.push(path);

    fn subpages(
        command: &clap::Command,
        source: &str,
        dir: &Path,
        written: &mut Vec<PathBuf>,
    ) -> std::io::Result<()> {
        for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
            let man = clap_mangen::Man::new(sub.clone())
                .source(source.to_owned())
                .manual("facekey manual");
            written.push(man.generate_to(dir)?);
            subpages(sub, source, dir, written)?;
        }
        Ok(())
    }
    subpages(&command, &source, dir, &mut written)?;
    Ok(written)
}
