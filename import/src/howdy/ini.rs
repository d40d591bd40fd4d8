//! Howdy's `config.ini`, read as Python's configparser reads it: Howdy's own code (compare.py, the CLI) loads the
//! file with configparser's defaults, so a value here is the value Howdy used.
//!
//! Written here rather than with an INI crate: the one in wide use (rust-ini) interprets backslash escapes and
//! quotes by default, where configparser keeps both as written, and what Howdy 3 ships uses configparser's
//! indented continuation lines (`stamp_rules`). The rules followed, all of them configparser's defaults:
//! `[section]` headers (names case-sensitive, kept as written); `key = value` or `key: value`, split at the first
//! `=` or `:`, both sides trimmed, keys lowercased; lines whose first non-blank character is `#` or `;` are
//! comments (a `#` later in a line is part of the value); a more indented line continues the value above it;
//! a repeated section or key, a key before any section, and a line that is none of these are errors, as they are
//! for configparser (Howdy would stop on them).
//!
//! Must never: panic, or accept a line it cannot place (the error names the line).

use super::HowdyError;

/// One `key = value` with its line (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    pub line: usize,
}

/// One `[section]` and its entries, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub line: usize,
    pub entries: Vec<Entry>,
}

/// A parsed `config.ini`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ini {
    pub sections: Vec<Section>,
}

impl Ini {
    /// Parse `text`; `origin` (the file's path) names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Ini, HowdyError> {
        let error = |line: usize, reason: String| HowdyError::Syntax {
            origin: origin.to_owned(),
            line,
            reason,
        };
        let mut ini = Ini::default();
        // Indentation of the key line whose value a more indented line would continue.
        let mut open_value: Option<usize> = None;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
                continue;
            }
            let indent = raw.len() - raw.trim_start().len();
            if open_value.is_some_and(|key_indent| indent > key_indent) {
                // A value is open only after an entry was added to the last section.
                if let Some(entry) = ini.sections.last_mut().and_then(|s| s.entries.last_mut()) {
                    if !entry.value.is_empty() {
                        entry.value.push('\n');
                    }
                    entry.value.push_str(trimmed);
                }
                continue;
            }
            if let Some(rest) = trimmed.strip_prefix('[') {
                let Some(end) = rest.rfind(']') else {
                    return Err(error(
                        line,
                        format!("section header without ']': {trimmed:?}"),
                    ));
                };
                let name = &rest[..end];
                if name.is_empty() {
                    return Err(error(line, "empty section name".into()));
                }
                if let Some(first) = ini.sections.iter().find(|s| s.name == name) {
                    return Err(error(
                        line,
                        format!("section [{name}] again (first at line {})", first.line),
                    ));
                }
                ini.sections.push(Section {
                    name: name.to_owned(),
                    line,
                    entries: Vec::new(),
                });
                open_value = None;
                continue;
            }
            let Some(split) = trimmed.find(['=', ':']) else {
                return Err(error(
                    line,
                    format!("neither a section, a `key = value` nor a comment: {trimmed:?}"),
                ));
            };
            let key = trimmed[..split].trim().to_lowercase();
            let value = trimmed[split + 1..].trim().to_owned();
            if key.is_empty() {
                return Err(error(line, format!("a value without a key: {trimmed:?}")));
            }
            let Some(section) = ini.sections.last_mut() else {
                return Err(error(line, format!("key `{key}` before any [section]")));
            };
            if let Some(first) = section.entries.iter().find(|e| e.key == key) {
                return Err(error(
                    line,
                    format!(
                        "[{}] {key} again (first at line {})",
                        section.name, first.line
                    ),
                ));
            }
            section.entries.push(Entry { key, value, line });
            open_value = Some(indent);
        }
        Ok(ini)
    }

    /// The entry `[section] key` (key in lower case).
    pub fn get(&self, section: &str, key: &str) -> Option<&Entry> {
        self.sections
            .iter()
            .find(|s| s.name == section)?
            .entries
            .iter()
            .find(|e| e.key == key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_lines_join_the_value_above() {
        let ini = Ini::parse(
            "[rubberstamps]\nstamp_rules =\n\tnod\t\t5s\t\tfailsafe\n\tblink 3s faildeadly\nenabled = false\n",
            "x",
        )
        .unwrap();
        assert_eq!(
            ini.get("rubberstamps", "stamp_rules").unwrap().value,
            "nod\t\t5s\t\tfailsafe\nblink 3s faildeadly"
        );
        assert_eq!(ini.get("rubberstamps", "enabled").unwrap().value, "false");
    }
}
