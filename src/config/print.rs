//! `pigeonpost config`: the effective configuration as valid TOML, with the
//! source of every value in a trailing comment.

use super::{ConfigError, Entry};

fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn line(e: &Entry, name: &str) -> String {
    let mut out = format!("{name} = {}  # {}", quote(&e.value), e.source);
    if e.raw != e.value && !e.raw.is_empty() {
        out.push_str(&format!(", written as {}", quote(&e.raw)));
    }
    out
}

/// Renders `entries`; with `only` non-empty, just those keys (unknown ones are an error).
pub fn render(entries: &[Entry], only: &[String]) -> Result<String, ConfigError> {
    for key in only {
        if !entries.iter().any(|e| e.key == key) {
            let hint = super::keys::suggest(key)
                .map(|s| format!(" (did you mean '{s}'?)"))
                .unwrap_or_default();
            return Err(ConfigError {
                key: Some(key.clone()),
                source: "command line".into(),
                reason: format!("unknown key{hint}"),
            });
        }
    }
    let wanted = |e: &&Entry| only.is_empty() || only.iter().any(|k| k == e.key);
    let mut out = String::new();
    if only.is_empty() {
        out.push_str("# pigeonpost effective configuration: value  # source[, written as]\n");
    }
    for e in entries
        .iter()
        .filter(wanted)
        .filter(|e| !e.key.contains('.'))
    {
        out.push_str(&line(e, e.key));
        out.push('\n');
    }
    let mut section = None;
    for e in entries
        .iter()
        .filter(wanted)
        .filter(|e| e.key.contains('.'))
    {
        let (table, name) = e.key.split_once('.').unwrap_or(("", e.key));
        if section != Some(table) {
            out.push_str(&format!("\n[{table}]\n"));
            section = Some(table);
        }
        out.push_str(&line(e, name));
        out.push('\n');
    }
    Ok(out)
}
