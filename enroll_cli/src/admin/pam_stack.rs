//! Reading the PAM configuration: which services run `pam_facekey.so` in their auth stack, and whether
//! its line is placed so that the password still decides when no face matches.
//!
//! Read only: PAM files belong to pam-auth-update and the administrator; facekey never writes them.
//! The parser follows Linux-PAM's syntax closely enough for that question: comments, backslash
//! continuations, `[value=action ...]` controls, `-type` lines, `@include FILE` and
//! `TYPE include|substack FILE`. Only `auth` lines matter here.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The module's file name, as a stack line names it (alone or as the end of an absolute path).
pub const MODULE_FILE: &str = "pam_facekey.so";

/// Deepest chain of includes followed (Linux-PAM stops at a similar depth).
const MAX_INCLUDE_DEPTH: usize = 16;

/// One `auth` line of a stack, after includes are expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The file the line is in, and its line number (1-based).
    pub file: PathBuf,
    pub line: usize,
    pub control: Control,
    /// The module as written: `pam_unix.so` or an absolute path.
    pub module: String,
    pub args: Vec<String>,
}

impl Rule {
    /// The module's file name (`pam_unix.so` for `/lib/.../pam_unix.so`).
    pub fn module_name(&self) -> &str {
        self.module.rsplit('/').next().unwrap_or(&self.module)
    }

    pub fn is_facekey(&self) -> bool {
        self.module_name() == MODULE_FILE
    }

    /// `common-auth:17`.
    pub fn location(&self) -> String {
        let name = self.file.file_name().unwrap_or(self.file.as_os_str());
        format!("{}:{}", name.to_string_lossy(), self.line)
    }
}

/// A control field: a keyword or a bracketed list of `value=action`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    Keyword(String),
    Actions(Vec<(String, String)>),
}

impl std::fmt::Display for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Control::Keyword(k) => f.write_str(k),
            Control::Actions(pairs) => {
                let inner: Vec<String> = pairs.iter().map(|(v, a)| format!("{v}={a}")).collect();
                write!(f, "[{}]", inner.join(" "))
            }
        }
    }
}

impl Control {
    /// What libpam does when the module returns `value` (`success`, `auth_err`, ...): `ok`, `done`,
    /// `bad`, `die`, `ignore`, `reset` or a jump count. Keywords expand as pam.conf(5) defines them; a
    /// bracketed list without the value and without `default` means `bad`.
    pub fn action_for(&self, value: &str) -> String {
        let expanded: Vec<(&str, &str)> = match self {
            Control::Keyword(k) => match k.as_str() {
                "required" => vec![
                    ("success", "ok"),
                    ("new_authtok_reqd", "ok"),
                    ("ignore", "ignore"),
                    ("default", "bad"),
                ],
                "requisite" => vec![
                    ("success", "ok"),
                    ("new_authtok_reqd", "ok"),
                    ("ignore", "ignore"),
                    ("default", "die"),
                ],
                "sufficient" => vec![
                    ("success", "done"),
                    ("new_authtok_reqd", "done"),
                    ("default", "ignore"),
                ],
                "optional" => vec![
                    ("success", "ok"),
                    ("new_authtok_reqd", "ok"),
                    ("default", "ignore"),
                ],
                _ => vec![("default", "bad")],
            },
            Control::Actions(pairs) => pairs
                .iter()
                .map(|(v, a)| (v.as_str(), a.as_str()))
                .collect(),
        };
        let find = |key: &str| {
            expanded
                .iter()
                .rev()
                .find(|(v, _)| *v == key)
                .map(|(_, a)| (*a).to_owned())
        };
        find(value)
            .or_else(|| find("default"))
            .unwrap_or_else(|| "bad".to_owned())
    }
}

/// A service's auth stack, includes expanded, with what could not be read.
#[derive(Debug, Clone, Default)]
pub struct Stack {
    pub rules: Vec<Rule>,
    /// Includes that could not be read, loops, malformed lines.
    pub problems: Vec<String>,
}

impl Stack {
    /// Indexes of the `pam_facekey.so` lines.
    pub fn facekey_rules(&self) -> Vec<usize> {
        (0..self.rules.len())
            .filter(|&i| self.rules[i].is_facekey())
            .collect()
    }
}

/// The auth stack of `service` (a file name in `pam_dir`).
pub fn auth_stack(pam_dir: &Path, service: &str) -> Stack {
    let mut stack = Stack::default();
    let mut chain = HashSet::new();
    expand(pam_dir, service, &mut chain, 0, &mut stack);
    stack
}

fn expand(
    pam_dir: &Path,
    name: &str,
    chain: &mut HashSet<String>,
    depth: usize,
    stack: &mut Stack,
) {
    let path = if name.starts_with('/') {
        PathBuf::from(name)
    } else {
        pam_dir.join(name)
    };
    if depth > MAX_INCLUDE_DEPTH || !chain.insert(name.to_owned()) {
        stack
            .problems
            .push(format!("{}: include loop or too deep", path.display()));
        return;
    }
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            stack.problems.push(format!("{}: {e}", path.display()));
            chain.remove(name);
            return;
        }
    };
    for (line_no, fields) in logical_lines(&text) {
        let mut words = fields.iter().map(String::as_str);
        let Some(first) = words.next() else { continue };
        if first == "@include" {
            match words.next() {
                Some(included) => expand(pam_dir, included, chain, depth + 1, stack),
                None => stack.problems.push(format!(
                    "{}:{line_no}: @include without a file",
                    path.display()
                )),
            }
            continue;
        }
        if !first.trim_start_matches('-').eq_ignore_ascii_case("auth") {
            continue;
        }
        let (Some(control), Some(module)) = (words.next(), words.next()) else {
            stack.problems.push(format!(
                "{}:{line_no}: incomplete auth line",
                path.display()
            ));
            continue;
        };
        let args: Vec<String> = words.map(str::to_owned).collect();
        if control == "include" || control == "substack" {
            expand(pam_dir, module, chain, depth + 1, stack);
            continue;
        }
        stack.rules.push(Rule {
            file: path.clone(),
            line: line_no,
            control: parse_control(control),
            module: module.to_owned(),
            args,
        });
    }
    chain.remove(name);
}

fn parse_control(text: &str) -> Control {
    match text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        Some(inner) => Control::Actions(
            inner
                .split_whitespace()
                .map(|pair| match pair.split_once('=') {
                    Some((v, a)) => (v.to_ascii_lowercase(), a.to_ascii_lowercase()),
                    None => (pair.to_ascii_lowercase(), String::new()),
                })
                .collect(),
        ),
        None => Control::Keyword(text.to_ascii_lowercase()),
    }
}

/// Lines without comments, continuations joined, split into fields; a `[...]` field may hold spaces.
/// Each comes with the number of the line it starts on.
fn logical_lines(text: &str) -> Vec<(usize, Vec<String>)> {
    let mut out = Vec::new();
    let mut pending = String::new();
    let mut start = 0;
    for (i, raw) in text.lines().enumerate() {
        if pending.is_empty() {
            start = i + 1;
        }
        let line = raw.split('#').next().unwrap_or("");
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        let fields = split_fields(&pending);
        if !fields.is_empty() {
            out.push((start, fields));
        }
        pending.clear();
    }
    out
}

fn split_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut current = String::new();
    let mut in_brackets = false;
    for c in line.chars() {
        match c {
            '[' if current.is_empty() => {
                in_brackets = true;
                current.push(c);
            }
            ']' if in_brackets => {
                in_brackets = false;
                current.push(c);
            }
            c if c.is_whitespace() && !in_brackets => {
                if !current.is_empty() {
                    fields.push(std::mem::take(&mut current));
                }
            }
            c if c.is_whitespace() => {
                if !current.ends_with(' ') && !current.ends_with('[') {
                    current.push(' ');
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        fields.push(current);
    }
    fields
}

/// What a facekey line does to the rest of the stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The line, for messages (`common-auth:17`).
    pub location: String,
    pub control: String,
    /// Why a failed or unavailable face attempt could stop the password from deciding, if it can.
    pub failure_risk: Option<String>,
    /// Why a matching face would not log the user in, if it would not.
    pub success_problem: Option<String>,
    /// A password module (pam_unix, pam_sss, ...) comes after the facekey line.
    pub password_follows: bool,
}

/// Modules that ask for a password (or another secret) and so keep a way in when the face fails.
const PASSWORD_MODULES: &[&str] = &[
    "pam_unix.so",
    "pam_sss.so",
    "pam_ldap.so",
    "pam_krb5.so",
    "pam_winbind.so",
    "pam_systemd_home.so",
    "pam_matrix.so",
];

/// Judge the facekey line at `index`: PAM_AUTH_ERR and PAM_AUTHINFO_UNAVAIL (what the module returns
/// when it does not match) must be ignored so the next module decides; PAM_SUCCESS must end the stack
/// or jump past the password without landing on pam_deny.
pub fn placement(stack: &Stack, index: usize) -> Placement {
    let rule = &stack.rules[index];
    let mut failure_risk = None;
    for value in ["auth_err", "authinfo_unavail"] {
        let action = rule.control.action_for(value);
        if action != "ignore" && failure_risk.is_none() {
            failure_risk = Some(format!(
                "when the module returns {value} the stack does '{action}', not 'ignore': a face \
                 that does not match could refuse the login before the password is asked"
            ));
        }
    }
    let success = rule.control.action_for("success");
    let success_problem = match success.as_str() {
        "done" => None,
        "ok" | "ignore" => Some(format!(
            "a match does '{success}', so the stack goes on and still asks for the password"
        )),
        "bad" | "die" | "reset" => Some(format!("a match does '{success}'")),
        jump => match jump.parse::<usize>() {
            Ok(n) => match stack.rules.get(index + n + 1) {
                Some(target) if target.module_name() == "pam_deny.so" => Some(format!(
                    "a match jumps {n} line(s) onto pam_deny.so at {}",
                    target.location()
                )),
                Some(target)
                    if stack.rules[index + 1..index + 1 + n]
                        .iter()
                        .any(|r| r.module_name() == "pam_permit.so") =>
                {
                    Some(format!(
                        "a match jumps {n} line(s), past pam_permit.so, to {}",
                        target.location()
                    ))
                }
                None if index + n + 1 > stack.rules.len() => Some(format!(
                    "a match jumps {n} line(s), past the end of the stack"
                )),
                _ => None,
            },
            Err(_) => Some(format!("a match does '{success}'")),
        },
    };
    Placement {
        location: rule.location(),
        control: rule.control.to_string(),
        failure_risk,
        success_problem,
        password_follows: stack.rules[index + 1..]
            .iter()
            .any(|r| PASSWORD_MODULES.contains(&r.module_name())),
    }
}

/// Service files in `pam_dir` (not the `common-*` building blocks), sorted.
pub fn services(pam_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(pam_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with("common-") && !n.starts_with('.') && !n.ends_with('~'))
        .filter(|n| !n.ends_with(".dpkg-old") && !n.ends_with(".dpkg-dist"))
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    /// What pam-auth-update writes on Debian with facekey enabled.
    const COMMON_AUTH: &str = "\
# here are the per-package modules (the \"Primary\" block)
auth\t[success=2 default=ignore]\tpam_facekey.so
auth\t[success=1 default=ignore]\tpam_unix.so nullok try_first_pass
# here's the fallback if no module succeeds
auth\trequisite\t\t\tpam_deny.so
auth\trequired\t\t\tpam_permit.so
";

    #[test]
    fn includes_are_expanded_and_only_auth_lines_kept() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "common-auth", COMMON_AUTH);
        write(
            dir.path(),
            "sudo",
            "#%PAM-1.0\nsession required pam_limits.so\n@include common-auth\n@include common-account\n",
        );
        let stack = auth_stack(dir.path(), "sudo");
        let modules: Vec<&str> = stack.rules.iter().map(Rule::module_name).collect();
        assert_eq!(
            modules,
            [
                "pam_facekey.so",
                "pam_unix.so",
                "pam_deny.so",
                "pam_permit.so"
            ]
        );
        assert_eq!(stack.rules[0].location(), "common-auth:2");
        assert_eq!(stack.facekey_rules(), [0]);
        // common-account does not exist: reported, not fatal.
        assert_eq!(stack.problems.len(), 1, "{:?}", stack.problems);
    }

    #[test]
    fn pam_auth_update_placement_is_safe() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "common-auth", COMMON_AUTH);
        let stack = auth_stack(dir.path(), "common-auth");
        let p = placement(&stack, 0);
        assert_eq!(p.control, "[success=2 default=ignore]");
        assert_eq!(p.failure_risk, None);
        assert_eq!(p.success_problem, None);
        assert!(p.password_follows);
    }

    #[test]
    fn required_or_requisite_facekey_is_a_lockout_risk() {
        for control in [
            "required",
            "requisite",
            "[success=done default=bad]",
            "[success=done]",
        ] {
            let dir = tempfile::tempdir().unwrap();
            write(
                dir.path(),
                "svc",
                &format!("auth {control} pam_facekey.so\nauth required pam_unix.so\n"),
            );
            let p = placement(&auth_stack(dir.path(), "svc"), 0);
            assert!(p.failure_risk.is_some(), "{control}: {p:?}");
        }
    }

    #[test]
    fn sufficient_is_safe_and_optional_is_pointless() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "svc",
            "auth sufficient /lib/x86_64-linux-gnu/security/pam_facekey.so debug\nauth optional pam_facekey.so\nauth required pam_unix.so\n",
        );
        let stack = auth_stack(dir.path(), "svc");
        let sufficient = placement(&stack, 0);
        assert_eq!(sufficient.failure_risk, None);
        assert_eq!(sufficient.success_problem, None);
        let optional = placement(&stack, 1);
        assert_eq!(optional.failure_risk, None);
        assert!(optional.success_problem.is_some());
    }

    #[test]
    fn a_jump_onto_pam_deny_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "svc",
            "auth [success=1 default=ignore] pam_facekey.so\nauth [success=1 default=ignore] pam_unix.so\nauth requisite pam_deny.so\nauth required pam_permit.so\n",
        );
        let p = placement(&auth_stack(dir.path(), "svc"), 0);
        assert!(
            p.success_problem
                .as_deref()
                .unwrap()
                .contains("pam_deny.so"),
            "{p:?}"
        );
    }

    #[test]
    fn brackets_comments_continuations_and_dash_lines_parse() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "svc",
            "-auth [ success=2  default=ignore ] pam_facekey.so # note\n\
             auth \\\n  sufficient pam_permit.so\n\
             auth substack inner\n",
        );
        write(dir.path(), "inner", "auth required pam_unix.so\n");
        let stack = auth_stack(dir.path(), "svc");
        assert_eq!(stack.rules.len(), 3, "{stack:?}");
        assert_eq!(
            stack.rules[0].control,
            Control::Actions(vec![
                ("success".into(), "2".into()),
                ("default".into(), "ignore".into())
            ])
        );
        assert_eq!(stack.rules[1].line, 2);
        assert_eq!(
            stack.rules[1].control,
            Control::Keyword("sufficient".into())
        );
        assert_eq!(stack.rules[2].module_name(), "pam_unix.so");
    }

    #[test]
    fn include_loops_stop() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a", "@include b\nauth required pam_unix.so\n");
        write(dir.path(), "b", "@include a\n");
        let stack = auth_stack(dir.path(), "a");
        assert_eq!(stack.rules.len(), 1);
        assert!(stack.problems[0].contains("loop"), "{:?}", stack.problems);
    }

    #[test]
    fn services_skip_common_files_and_backups() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["sudo", "login", "common-auth", "sudo.dpkg-old", "login~"] {
            write(dir.path(), name, "");
        }
        assert_eq!(services(dir.path()), ["login", "sudo"]);
    }
}
