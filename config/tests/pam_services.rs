//! The default `[pam] services` against the PAM service files Debian's packages really install
//! (tests/data/pam.d, fetched by scripts/fetch-pam-fixtures; see its README).
//!
//! A service "asks for the password" when its auth stack reaches `common-auth` (where pam-auth-update stacks
//! pam_unix and facekey) or pam_unix, directly or through `include` / `substack` of another service file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use facekey_config::Config;

/// Display managers and lock screens, by package, with the service their password prompt uses.
const PROMPTS: &[(&str, &str)] = &[
    ("gdm3", "gdm-password"),
    ("sddm", "sddm"),
    ("lightdm", "lightdm"),
    ("xscreensaver", "xscreensaver"),
    ("i3lock", "i3lock"),
    ("swaylock", "swaylock"),
    ("gnome-screensaver", "gnome-screensaver"),
    ("cinnamon-screensaver", "cinnamon-screensaver"),
    ("mate-screensaver", "mate-screensaver"),
    ("xfce4-screensaver", "xfce4-screensaver"),
    ("libkscreenlocker6", "kde"),
    ("hyprlock", "hyprlock"),
];

/// Services that ask for the password but are left out of the default list on purpose.
const LEFT_OUT: &[(&str, &str)] = &[(
    "gdm-smartcard-sssd-or-password",
    "GDM's smartcard login (a certificate through sssd first); facekey stays out of smartcard set-ups",
)];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/pam.d")
}

/// Every service file of every package: service name -> (package, text).
fn service_files() -> BTreeMap<String, (String, String)> {
    let mut files = BTreeMap::new();
    let packages = std::fs::read_dir(fixtures()).expect("tests/data/pam.d exists");
    for package in packages {
        let package = package.expect("directory entry").path();
        if !package.is_dir() {
            continue;
        }
        let name = package.file_name().unwrap().to_string_lossy().into_owned();
        for file in std::fs::read_dir(&package).expect("package folder") {
            let file = file.expect("directory entry").path();
            let service = file.file_name().unwrap().to_string_lossy().into_owned();
            if service.starts_with('.') {
                continue;
            }
            let text = std::fs::read_to_string(&file).expect("readable service file");
            let clash = files.insert(service.clone(), (name.clone(), text));
            assert!(clash.is_none(), "{service} is installed by two packages");
        }
    }
    assert!(files.len() > 20, "only {} service files found", files.len());
    files
}

/// Whether `service`'s auth stack asks for the password (see the module comment).
fn asks_for_password(
    files: &BTreeMap<String, (String, String)>,
    service: &str,
    depth: u32,
) -> bool {
    if service == "common-auth" {
        return true;
    }
    let Some((_, text)) = files.get(service) else {
        return false;
    };
    assert!(depth < 8, "include loop through {service}");
    text.lines().any(|line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["@include", other, ..] => asks_for_password(files, other, depth + 1),
            [kind, control, module, ..] if kind.trim_start_matches('-') == "auth" => {
                if matches!(*control, "include" | "substack") {
                    asks_for_password(files, module, depth + 1)
                } else {
                    module.ends_with("pam_unix.so")
                }
            }
            _ => false,
        }
    })
}

fn default_services() -> BTreeSet<String> {
    Config::default().pam.services.into_iter().collect()
}

#[test]
fn every_display_manager_and_lock_screen_password_service_is_listed() {
    let files = service_files();
    let listed = default_services();
    for (package, service) in PROMPTS {
        let (owner, _) = files
            .get(*service)
            .unwrap_or_else(|| panic!("{package} installs no service file {service}"));
        assert_eq!(owner, package, "{service}");
        assert!(
            asks_for_password(&files, service, 0),
            "{package}'s {service} does not reach the password"
        );
        assert!(
            listed.contains(*service),
            "{package}'s password service {service} is missing from the default [pam] services"
        );
    }
}

#[test]
fn sshd_is_never_listed() {
    assert!(!default_services().contains("sshd"));
}

#[test]
fn every_listed_service_is_a_password_service_a_package_installs() {
    let files = service_files();
    for service in default_services() {
        assert!(
            files.contains_key(&service),
            "{service} is in the default [pam] services but no package in tests/data/pam.d installs it"
        );
        assert!(
            asks_for_password(&files, &service, 0),
            "{service} is in the default [pam] services but does not ask for the password"
        );
    }
}

#[test]
fn every_password_service_the_packages_install_is_listed_or_left_out_for_a_reason() {
    let files = service_files();
    let listed = default_services();
    let left_out: BTreeSet<&str> = LEFT_OUT.iter().map(|(service, _)| *service).collect();
    for service in files.keys() {
        if asks_for_password(&files, service, 0) {
            assert!(
                listed.contains(service) || left_out.contains(service.as_str()),
                "{service} ({}) asks for the password but is neither listed nor left out with a reason",
                files[service].0
            );
        }
    }
    for (service, _) in LEFT_OUT {
        assert!(files.contains_key(*service), "{service} is not installed");
        assert!(!listed.contains(*service), "{service} is listed after all");
    }
}

#[test]
fn autologin_fingerprint_smartcard_and_greeter_services_are_not_listed() {
    let files = service_files();
    let listed = default_services();
    for service in files.keys() {
        let special = [
            "autologin",
            "fingerprint",
            "smartcard",
            "greeter",
            "launch-environment",
        ]
        .iter()
        .any(|word| service.contains(word));
        if special {
            assert!(!listed.contains(service), "{service} is listed");
        }
    }
    // Some of them exist, so the loop above checked something.
    assert!(files.contains_key("gdm-fingerprint") && files.contains_key("sddm-autologin"));
    assert!(!asks_for_password(&files, "lightdm-greeter", 0));
}
