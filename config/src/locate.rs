//! From a byte offset to something a person can act on: line, column, dotted key, wording.
//!
//! The toml crate reports a byte span and a serde message; the key it was working on is not
//! public. We recover the key by re-parsing the text into a spanned tree (`DeTable`, which
//! recovers past syntax errors) and finding the key or value under the span, falling back to
//! reading the line itself. Messages from serde are reworded into TOML terms when recognised
//! and kept verbatim otherwise, so an unfamiliar message is never lost.

use std::ops::Range;
use std::path::Path;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::validate::Violation;
use crate::ConfigError;

/// Turn a toml deserialisation error into a located [`ConfigError::Parse`].
pub(crate) fn parse_error(text: &str, origin: &Path, error: &toml::de::Error) -> ConfigError {
    // Without a span (not produced by toml 1.2 for this schema, but allowed by its API) the
    // best we can say is "somewhere in the file": point at its start.
    let span = error.span().unwrap_or(0..0);
    let (line, column) = line_column(text, span.start);
    let (key, found) = match key_at(text, span.start) {
        Some(at) => (Some(at.path), at.kind),
        None => (key_on_line(text, span.start), None),
    };
    let depth = key.as_deref().map_or(0, |k| k.split('.').count());
    let missing = text.get(span).is_some_and(|s| s.trim().is_empty());
    ConfigError::Parse {
        path: origin.to_owned(),
        line,
        column,
        message: reword(error.message(), depth, found, missing),
        key,
    }
}

/// Turn a rule violation into [`ConfigError::Invalid`], pointing at the value in the file.
pub(crate) fn invalid_error(text: &str, origin: &Path, violation: Violation) -> ConfigError {
    let span = value_span(text, violation.key, violation.element);
    let (line, column) = match span {
        Some(span) => {
            let (line, column) = line_column(text, span.start);
            (Some(line), Some(column))
        }
        None => (None, None),
    };
    ConfigError::Invalid {
        path: origin.to_owned(),
        line,
        column,
        key: violation.key.to_owned(),
        message: violation.message,
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Span of the value of dotted `key` (or of one element of it) in a text that parses.
fn value_span(text: &str, key: &str, element: Option<usize>) -> Option<Range<usize>> {
    let root = DeTable::parse(text).ok()?;
    let mut table = root.get_ref();
    let mut parts = key.split('.').peekable();
    while let Some(part) = parts.next() {
        let value = table.get(part)?;
        if parts.peek().is_none() {
            return match (value.get_ref(), element) {
                (DeValue::Array(items), Some(i)) => items.get(i).map(Spanned::span),
                _ => Some(value.span()),
            };
        }
        match value.get_ref() {
            DeValue::Table(inner) => table = inner,
            _ => return None,
        }
    }
    None
}

/// The key or value at byte `pos`: the key itself, or the key whose value covers `pos`.
fn key_at(text: &str, pos: usize) -> Option<Candidate> {
    let (root, _errors) = DeTable::parse_recoverable(text);
    let mut best = None;
    search(root.get_ref(), &mut Vec::new(), pos, &mut best);
    best
}

struct Candidate {
    /// Dotted key.
    path: String,
    /// TOML type of the value under `pos` ("a string"), `None` when `pos` is on a key.
    kind: Option<&'static str>,
    /// `pos` lies inside the span rather than just at its end.
    inside: bool,
    len: usize,
}

/// Visit every key and value; keep the tightest span that covers `pos`. A span that merely
/// ends at `pos` counts, but loses to one that contains it: syntax errors are often reported
/// just past the value they are about (an unterminated string, a missing value).
fn search(table: &DeTable<'_>, prefix: &mut Vec<String>, pos: usize, best: &mut Option<Candidate>) {
    for (key, value) in table.iter() {
        prefix.push(key.get_ref().to_string());
        consider(key.span(), None, prefix, pos, best);
        consider(value.span(), Some(kind(value.get_ref())), prefix, pos, best);
        match value.get_ref() {
            DeValue::Table(inner) => search(inner, prefix, pos, best),
            DeValue::Array(items) => {
                for item in items.iter() {
                    match item.get_ref() {
                        DeValue::Table(inner) => search(inner, prefix, pos, best),
                        other => consider(item.span(), Some(kind(other)), prefix, pos, best),
                    }
                }
            }
            _ => {}
        }
        prefix.pop();
    }
}

fn consider(
    span: Range<usize>,
    kind: Option<&'static str>,
    path: &[String],
    pos: usize,
    best: &mut Option<Candidate>,
) {
    let inside = span.contains(&pos);
    if !inside && span.end != pos {
        return;
    }
    let len = span.len();
    let better = match best {
        None => true,
        Some(b) => (inside && !b.inside) || (inside == b.inside && len < b.len),
    };
    if better {
        *best = Some(Candidate {
            path: path.join("."),
            kind,
            inside,
            len,
        });
    }
}

fn kind(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// Fallback when the spanned tree has nothing at `pos` (a malformed header, a duplicate key):
/// read the line, `[header]` or `key = ...`, under the last header above it.
fn key_on_line(text: &str, pos: usize) -> Option<String> {
    let pos = pos.min(text.len());
    let line_start = text.as_bytes()[..pos]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    let section = text[..line_start]
        .lines()
        .filter_map(|l| header_name(l.trim()))
        .next_back();
    let line = text[line_start..].lines().next().unwrap_or("").trim();
    if let Some(header) = header_name(line) {
        return Some(header);
    }
    let (lhs, _) = line.split_once('=')?;
    let key = lhs.trim();
    if key.is_empty() || key.starts_with('#') {
        return None;
    }
    Some(match section {
        Some(section) => format!("{section}.{key}"),
        None => key.to_owned(),
    })
}

/// `camera` from `[camera]`, `[camera` or `[[camera]] # note`.
fn header_name(line: &str) -> Option<String> {
    let rest = line.strip_prefix('[')?.trim_start_matches('[');
    let end = rest.find([']', '#']).unwrap_or(rest.len());
    let name = rest[..end].trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// Serde's wording in TOML terms. `depth` is the number of parts of the key the error is
/// about: 1 means a top-level name, which in our schema is a section. `found` is the TOML type
/// of the value at the error, when known: serde cannot tell a date-time from a table.
/// `missing` says the error span holds no text.
fn reword(message: &str, depth: usize, found: Option<&str>, missing: bool) -> String {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        // "unknown field `x`, expected one of `a`, `b`" / "expected `a`" / "there are no fields"
        let what = if depth == 1 { "section" } else { "key" };
        return match rest.split_once("`, ") {
            Some((_, expected)) => format!("unknown {what} ({})", expected_names(expected)),
            None => format!("unknown {what}"),
        };
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        if let Some((value, expected)) = rest.split_once("`, expected ") {
            return format!(
                "unknown value \"{value}\" (expected {})",
                expected.replace('`', "\"")
            );
        }
    }
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        if let Some((what, expected)) = rest.split_once(", expected ") {
            let found = found.map_or_else(|| found_kind(what), str::to_owned);
            return format!("expected {}, found {found}", expected_kind(expected));
        }
    }
    if let Some(rest) = message.strip_prefix("invalid value: integer `") {
        if let Some((value, expected)) = rest.split_once("`, expected ") {
            if let Some(range) = integer_range(expected) {
                return format!("{value} is out of range (expected an integer from {range})");
            }
        }
    }
    if missing && message.starts_with("string values must be quoted") {
        // toml reads a bare word as an unquoted string; nothing at all is a missing value.
        return "missing value after `=`".to_owned();
    }
    if message == "wanted string or table" {
        // toml's wording for a non-string where an enum value belongs.
        return "expected a string".to_owned();
    }
    message.to_owned()
}

/// Serde lists the valid names as "expected `a`", "expected `a` or `b`" or
/// "expected one of `a`, `b`, `c`": make that one form, without the backticks.
fn expected_names(expected: &str) -> String {
    let Some(list) = expected.strip_prefix("expected ") else {
        return expected.to_owned();
    };
    let list = list.strip_prefix("one of ").unwrap_or(list);
    let names: Vec<&str> = list
        .split(", ")
        .flat_map(|part| part.split(" or "))
        .map(|name| name.trim_matches('`'))
        .collect();
    match names.as_slice() {
        [one] => format!("expected {one}"),
        _ => format!("expected one of {}", names.join(", ")),
    }
}

/// Serde's description of the Rust type wanted, as a TOML type.
fn expected_kind(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "i8" | "i16" | "i32" | "i64" => "an integer".to_owned(),
        "f32" | "f64" => "a number".to_owned(),
        "a boolean" | "a string" => expected.to_owned(),
        "path string" => "a path (string)".to_owned(),
        "a sequence" => "an array".to_owned(),
        _ if expected.starts_with("struct ") => "a table".to_owned(),
        _ => expected.to_owned(),
    }
}

/// Serde's description of the value found (`string "abc"`, `integer `3``), as a TOML type.
fn found_kind(found: &str) -> String {
    let kind = found.split_once(' ').map_or(found, |(k, _)| k);
    match kind {
        "string" => "a string",
        "integer" => "an integer",
        "floating" => "a float",
        "boolean" => "a boolean",
        "sequence" => "an array",
        "map" => "a table",
        _ => return found.to_owned(),
    }
    .to_owned()
}

fn integer_range(expected: &str) -> Option<String> {
    let (min, max): (i128, i128) = match expected {
        "u8" => (0, u8::MAX.into()),
        "u16" => (0, u16::MAX.into()),
        "u32" => (0, u32::MAX.into()),
        "u64" => (0, u64::MAX.into()),
        _ => return None,
    };
    Some(format!("{min} to {max}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based_and_count_characters() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        // 'é' is two bytes but one column.
        assert_eq!(line_column(text, 10), (2, 4));
        assert_eq!(line_column(text, text.len()), (3, 1));
    }

    #[test]
    fn key_on_line_uses_the_last_header_above() {
        let text = "[camera]\nsource = 'a'\nsource = 'b'\n";
        let pos = text.rfind("source").unwrap_or(0);
        assert_eq!(key_on_line(text, pos).as_deref(), Some("camera.source"));
        assert_eq!(key_on_line("[camera\n", 7).as_deref(), Some("camera"));
    }
}
