//! The Debian package's sources agree with the code: the man pages and completions `facekey generate`
//! writes, the hand-written pam_facekey(8) against the module's argument parser and return codes, the
//! pam-auth-update profile, the maintainer scripts, the changelog version and every asset cargo-deb is
//! told to pack. (`packaging/test-install` then installs the package for real.)

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn read(rel: &str) -> String {
    fs::read_to_string(repo(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// `facekey generate` into a temporary folder.
fn generated() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_facekey"))
        .arg("generate")
        .arg("--man")
        .arg(dir.path().join("man"))
        .arg("--completions")
        .arg(dir.path().join("completions"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

/// The visible subcommands, as `facekey --help` lists them.
fn subcommands() -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_facekey"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    help.split("Commands:")
        .nth(1)
        .unwrap()
        .split("Options:")
        .next()
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| *w != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn generate_writes_a_page_for_every_visible_subcommand_and_no_hidden_one() {
    let dir = generated();
    let pages: BTreeSet<String> = fs::read_dir(dir.path().join("man"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let commands = subcommands();
    assert!(commands.contains(&"doctor".to_owned()), "{commands:?}");
    for command in &commands {
        assert!(
            pages.contains(&format!("facekey-{command}.1")),
            "{command}: {pages:?}"
        );
    }
    assert!(pages.contains("facekey.1"));
    assert!(pages.contains("facekey-config-show.1"));
    assert!(pages.contains("facekey-config-check.1"));
    assert!(
        !pages
            .iter()
            .any(|p| p.contains("generate") || p.contains("help")),
        "{pages:?}"
    );

    let main = fs::read_to_string(dir.path().join("man/facekey.1")).unwrap();
    for section in [
        ".SH SYNOPSIS",
        ".SH SUBCOMMANDS",
        ".SH FILES",
        ".SH \"EXIT STATUS\"",
        ".SH \"SEE ALSO\"",
    ] {
        assert!(main.contains(section), "{section} missing");
    }
    assert!(main.contains("/etc/facekey/config.toml"));
    assert!(main.contains(&format!("facekey {}", env!("CARGO_PKG_VERSION"))));
}

#[test]
fn completions_cover_every_subcommand_for_bash_zsh_and_fish() {
    let dir = generated();
    let completions = dir.path().join("completions");
    let bash = fs::read_to_string(completions.join("facekey.bash")).unwrap();
    let zsh = fs::read_to_string(completions.join("_facekey")).unwrap();
    let fish = fs::read_to_string(completions.join("facekey.fish")).unwrap();
    assert!(zsh.starts_with("#compdef facekey"), "{}", &zsh[..40]);
    assert!(fish.contains("complete -c facekey"));
    for command in subcommands() {
        assert!(bash.contains(&command), "bash: {command}");
        assert!(zsh.contains(&format!("'{command}:")), "zsh: {command}");
        assert!(
            fish.contains(&format!("-a \"{command}\"")),
            "fish: {command}"
        );
    }
    assert!(
        !bash.contains("generate"),
        "the hidden command is not completed"
    );
    // Completion scripts must at least parse in their shell.
    let status = Command::new("bash")
        .arg("-n")
        .arg(completions.join("facekey.bash"))
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn pam_facekey_page_names_every_module_argument_and_return_code() {
    let page = read("packaging/pam_facekey.8");
    // Every argument pam_module/src/args.rs accepts: `arg == "word"` and `strip_prefix("key=")`.
    let args = read("pam_module/src/args.rs");
    let parser = args.split("#[cfg(test)]").next().unwrap();
    let mut accepted = Vec::new();
    for piece in parser.split("arg == \"").skip(1) {
        accepted.push(piece.split('"').next().unwrap().to_owned());
    }
    for piece in parser.split("strip_prefix(\"").skip(1) {
        accepted.push(piece.split('"').next().unwrap().to_owned());
    }
    assert_eq!(
        accepted,
        ["debug", "use_helper", "helper=", "config=", "timeout="]
    );
    for arg in &accepted {
        let key = arg.trim_end_matches('=');
        assert!(
            page.contains(&format!(".B {arg}")) || page.contains(&format!(".BI {arg} ")),
            "{arg} is not described in pam_facekey.8"
        );
        assert!(
            page.lines().find(|l| l.starts_with(".RB [")).is_some()
                && page.contains(&format!("[ {key}")),
            "{arg} is not in the synopsis"
        );
    }
    // Every return code docs/pam.md's table gives.
    let doc = read("docs/pam.md");
    let codes: BTreeSet<&str> = doc
        .split(|c: char| !(c.is_ascii_uppercase() || c == '_'))
        .filter(|w| w.starts_with("PAM_") && w.len() > 4)
        .collect();
    for code in [
        "PAM_SUCCESS",
        "PAM_AUTH_ERR",
        "PAM_AUTHINFO_UNAVAIL",
        "PAM_IGNORE",
    ] {
        assert!(codes.contains(code), "{code} not in docs/pam.md: {codes:?}");
        assert!(page.contains(code), "{code} not in pam_facekey.8");
    }
    assert!(page.contains(&format!("\"facekey {}\"", env!("CARGO_PKG_VERSION"))));
}

#[test]
fn pam_auth_update_profile_is_off_by_default_and_comes_before_the_password() {
    let profile = read("packaging/pam-configs/facekey");
    let field = |name: &str| {
        profile
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .map(str::trim)
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    assert_eq!(field("Default"), "no");
    assert_eq!(field("Auth-Type"), "Primary");
    // pam_unix's profile has priority 256: a higher one is placed before it.
    assert!(field("Priority").parse::<u32>().unwrap() > 256);
    let auth: Vec<&str> = profile
        .split("Auth:\n")
        .nth(1)
        .unwrap()
        .lines()
        .take_while(|l| l.starts_with('\t') || l.starts_with(' '))
        .map(str::trim)
        .collect();
    let words: Vec<&str> = auth[0].split_whitespace().collect();
    assert_eq!(
        words,
        ["[success=end", "default=ignore]", "pam_facekey.so"],
        "a failed or unavailable face must be ignored, never fatal"
    );
}

#[test]
fn maintainer_scripts_parse_and_do_what_the_readme_promises() {
    for script in ["postinst", "prerm", "postrm"] {
        let path = repo(&format!("packaging/debian/{script}"));
        let status = Command::new("sh").arg("-n").arg(&path).status().unwrap();
        assert!(status.success(), "{script} does not parse");
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("#!/bin/sh\n"), "{script}");
        assert!(text.contains("\nset -e\n"), "{script}");
        assert!(
            !text.contains("#DEBHELPER#"),
            "{script}: nothing expands it"
        );
    }
    let postinst = read("packaging/debian/postinst");
    assert!(postinst.contains("mkdir -m 0700 /etc/facekey/faces"));
    assert!(
        !postinst
            .lines()
            .any(|l| !l.trim_start().starts_with('#') && l.contains("--enable")),
        "installing must not enable facekey"
    );
    let prerm = read("packaging/debian/prerm");
    assert!(prerm.contains("pam-auth-update --package --remove facekey"));
    let postrm = read("packaging/debian/postrm");
    let purge = postrm.split("purge)").nth(1).unwrap();
    assert!(purge.contains("rm -rf /etc/facekey"));
    let remove = postrm
        .split("remove)")
        .nth(1)
        .unwrap()
        .split(";;")
        .next()
        .unwrap();
    assert!(
        !remove
            .lines()
            .any(|l| !l.trim_start().starts_with('#') && l.contains("rm -")),
        "dpkg -r keeps the enrolments"
    );
}

#[test]
fn changelog_and_copyright_match_the_package() {
    let changelog = read("packaging/debian/changelog");
    assert!(
        changelog.starts_with(&format!("facekey ({}-1) ", env!("CARGO_PKG_VERSION"))),
        "{}",
        changelog.lines().next().unwrap()
    );
    let copyright = read("packaging/debian/copyright");
    for model in [
        "models/yunet_2023mar_fp32_dynamic.onnx",
        "models/dlib_resnet128_faceapi.onnx",
        "models/dlib_resnet_faceapi_static_qdq_s8.onnx",
    ] {
        assert!(copyright.contains(model), "{model} has no licence stanza");
        assert!(repo(model).is_file(), "{model}");
    }
    for licence in [
        "License: MIT\n",
        "License: Apache-2.0\n",
        "License: CC0-1.0\n",
    ] {
        assert!(copyright.contains(licence), "{licence:?} text missing");
    }
}

#[test]
fn every_asset_cargo_deb_packs_exists() {
    let manifest: toml_edit::DocumentMut = read("enroll_cli/Cargo.toml").parse().unwrap();
    let deb = &manifest["package"]["metadata"]["deb"];
    let assets = deb["assets"].as_array().unwrap();
    let dir = generated();
    let mut destinations = Vec::new();
    for asset in assets {
        let asset = asset.as_array().unwrap();
        let source = asset.get(0).unwrap().as_str().unwrap();
        let dest = asset.get(1).unwrap().as_str().unwrap();
        let mode = asset.get(2).unwrap().as_str().unwrap();
        destinations.push(dest.to_owned());
        if let Some(generated) = source.strip_prefix("target/release/generated/") {
            // Written by `facekey generate` (the man pages are gzipped by packaging/build-deb).
            let pattern = generated.trim_end_matches(".gz");
            let (folder, name) = pattern.rsplit_once('/').unwrap();
            let found = fs::read_dir(dir.path().join(folder))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .any(|f| name == "*.1" && f.ends_with(".1") || f == name);
            assert!(found, "{source} is not generated");
        } else if !source.starts_with("target/") {
            assert!(
                Path::new(env!("CARGO_MANIFEST_DIR")).join(source).is_file(),
                "{source} does not exist"
            );
        }
        let expected_mode = match dest {
            "usr/bin/" => "755",
            // The helper for lock screens that run PAM as the user (docs/security.md).
            "usr/libexec/facekey/facekey-check" => "4755",
            _ => "644",
        };
        assert_eq!(mode, expected_mode, "{source}");
    }
    for dest in [
        "usr/bin/",
        "lib/x86_64-linux-gnu/security/pam_facekey.so",
        "etc/facekey/config.toml",
        "usr/share/pam-configs/facekey",
        "usr/share/doc/facekey/copyright",
    ] {
        assert!(destinations.iter().any(|d| d == dest), "{dest} not packed");
    }
    // The conffile is the shipped configuration the config crate tests against its defaults.
    assert!(assets
        .iter()
        .any(|a| a.as_array().unwrap().get(0).unwrap().as_str() == Some("../config/config.toml")));
}
