//! Reading the layers (config file, conf.d, environment) with figment and
//! flattening them into `key -> (raw text, source)`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

use super::keys;
use super::ConfigError;

pub const ENV_PREFIX: &str = "PIGEONPOST_";
pub const DEFAULT_CONFIG_PATH: &str = "/etc/pigeonpost/pigeonpost.toml";

/// One value as the user wrote it, before `$name` expansion.
#[derive(Debug, Clone)]
pub struct RawValue {
    pub text: String,
    pub source: String,
    /// False for a key no [`keys::KEYS`] entry names: a restriction class
    /// if `smtpd_restriction_classes` lists it, otherwise an error.
    pub known: bool,
}

/// The `PIGEONPOST_*` environment layer. Our own provider rather than
/// figment's `Env`, because `Env` guesses types ("[::1]/128" would be tried
/// as an array) and Postfix values are plain text.
struct EnvLayer {
    vars: Vec<(String, String)>,
}

/// Environment variables that share our prefix but are not settings:
/// `PIGEONPOST_CONFIG`, and the service links Kubernetes injects for a
/// Service named "pigeonpost" (`PIGEONPOST_SERVICE_HOST`, `PIGEONPOST_PORT_25_TCP`…).
fn is_reserved_env(rest: &str) -> bool {
    rest == "CONFIG" || rest == "PORT" || rest.starts_with("PORT_") || rest.starts_with("SERVICE_")
}

impl Provider for EnvLayer {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment").interpolater(|_: &Profile, keys: &[&str]| {
            format!(
                "environment variable {ENV_PREFIX}{}",
                keys.join("__").to_uppercase()
            )
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for (name, value) in &self.vars {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if rest.is_empty() || is_reserved_env(rest) {
                continue;
            }
            let path: Vec<String> = rest.split("__").map(|p| p.to_lowercase()).collect();
            insert_path(&mut dict, &path, Value::from(value.clone()));
        }
        Ok(Profile::Default.collect(dict))
    }
}

/// A `conf.d/*.cf` file: main.cf lines as Postfix writes them.
struct MainCf {
    path: PathBuf,
    entries: Vec<(String, String)>,
}

impl Provider for MainCf {
    fn metadata(&self) -> Metadata {
        Metadata::from("main.cf file", figment::Source::File(self.path.clone()))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for (k, v) in &self.entries {
            let path: Vec<String> = k.split('.').map(str::to_string).collect();
            insert_path(&mut dict, &path, Value::from(v.clone()));
        }
        Ok(Profile::Default.collect(dict))
    }
}

/// Postfix main.cf syntax (postconf(5) "SYNTAX"): `name = value`, no
/// quotes; a line that starts with whitespace continues the previous one;
/// lines whose first non-blank character is `#` and blank lines are
/// ignored. A later line for the same name wins, as in Postfix. Errors
/// carry the 1-based line number.
pub fn parse_main_cf(text: &str) -> Result<Vec<(String, String)>, (usize, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut current: Option<(usize, String)> = None;
    let finish = |cur: Option<(usize, String)>, out: &mut Vec<(String, String)>| {
        let Some((line, text)) = cur else {
            return Ok(());
        };
        let Some((name, value)) = text.split_once('=') else {
            return Err((
                line,
                format!("expected 'name = value', got '{}'", text.trim()),
            ));
        };
        let name = name.trim();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            return Err((line, format!("'{name}' is not a parameter name")));
        }
        out.retain(|(k, _)| k != name);
        out.push((name.to_string(), value.trim().to_string()));
        Ok(())
    };
    for (i, raw) in text.lines().enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let rest = line.trim_start();
        if rest.is_empty() || rest.starts_with('#') {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            match current.as_mut() {
                Some((_, t)) => {
                    t.push(' ');
                    t.push_str(rest);
                }
                None => return Err((
                    i + 1,
                    "a continuation line (starting with whitespace) without a parameter before it"
                        .into(),
                )),
            }
            continue;
        }
        finish(current.take(), &mut out)?;
        current = Some((i + 1, line.to_string()));
    }
    finish(current.take(), &mut out)?;
    Ok(out)
}

fn insert_path(dict: &mut Dict, path: &[String], value: Value) {
    match path {
        [] => {}
        [last] => {
            dict.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = dict
                .entry(first.clone())
                .or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, inner) = entry {
                insert_path(inner, rest, value);
            }
        }
    }
}

/// Where the configuration file is and whether the user named it explicitly.
pub fn config_path(explicit: Option<&Path>, env: &[(String, String)]) -> (PathBuf, bool) {
    if let Some(p) = explicit {
        return (p.to_path_buf(), true);
    }
    if let Some((_, v)) = env.iter().find(|(k, _)| k == "PIGEONPOST_CONFIG") {
        if !v.is_empty() {
            return (PathBuf::from(v), true);
        }
    }
    (PathBuf::from(DEFAULT_CONFIG_PATH), false)
}

/// The files that make up layer 2: the main file, then `conf.d/*.toml` and
/// `conf.d/*.cf` (Postfix main.cf syntax) beside it, in name order.
pub fn config_files(main: &Path, explicit: bool) -> Result<Vec<PathBuf>, ConfigError> {
    let mut files = Vec::new();
    match std::fs::metadata(main) {
        Ok(m) if m.is_file() => files.push(main.to_path_buf()),
        Ok(_) => return Err(ConfigError::file(main, "is not a regular file")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {}
        Err(e) => return Err(ConfigError::file(main, &format!("cannot read: {e}"))),
    }
    let confd = main.parent().unwrap_or(Path::new(".")).join("conf.d");
    if let Ok(entries) = std::fs::read_dir(&confd) {
        let mut extra: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml" || e == "cf") && p.is_file())
            .collect();
        extra.sort();
        files.extend(extra);
    }
    Ok(files)
}

/// Reads every layer and returns each key's last value and where it came
/// from; keys pigeonpost does not know are returned with `known: false`
/// (see [`unknown_key`]).
pub fn read_layers(
    files: &[PathBuf],
    env: &[(String, String)],
) -> Result<BTreeMap<String, RawValue>, ConfigError> {
    let mut figment = Figment::new();
    for f in files {
        // Parse each file on its own first so a syntax error names its file.
        let text = std::fs::read_to_string(f)
            .map_err(|e| ConfigError::file(f, &format!("cannot read: {e}")))?;
        if f.extension().is_some_and(|e| e == "cf") {
            let entries = parse_main_cf(&text)
                .map_err(|(line, why)| ConfigError::file(f, &format!("line {line}: {why}")))?;
            figment = figment.merge(MainCf {
                path: f.clone(),
                entries,
            });
            continue;
        }
        if let Err(e) = text.parse::<toml::Table>() {
            let msg = e.to_string();
            let first = msg.lines().next().unwrap_or("").trim().to_string();
            let detail = msg.lines().last().unwrap_or("").trim().to_string();
            return Err(ConfigError::file(
                f,
                &format!("invalid TOML: {first} {detail}"),
            ));
        }
        figment = figment.merge(Toml::file_exact(f));
    }
    figment = figment.merge(EnvLayer { vars: env.to_vec() });
    let data = figment.data().map_err(|e| ConfigError {
        key: None,
        source: "configuration".into(),
        reason: e.to_string(),
    })?;
    let mut out = BTreeMap::new();
    let Some(dict) = data.get(&Profile::Default) else {
        return Ok(out);
    };
    flatten(&figment, dict, "", &mut out)?;
    Ok(out)
}

fn source_of(figment: &Figment, key: &str) -> String {
    let Some(meta) = figment.find_metadata(key) else {
        return "unknown".into();
    };
    match &meta.source {
        // figment's Display shortens paths relative to the working
        // directory; administrators grep logs for the path they wrote.
        Some(figment::Source::File(path)) => return path.display().to_string(),
        Some(src) => return src.to_string(),
        None => {}
    }
    let parts: Vec<&str> = key.split('.').collect();
    meta.interpolate(&Profile::Default, &parts)
}

fn flatten(
    figment: &Figment,
    dict: &Dict,
    prefix: &str,
    out: &mut BTreeMap<String, RawValue>,
) -> Result<(), ConfigError> {
    for (name, value) in dict {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        let source = source_of(figment, &key);
        if let Value::Dict(_, inner) = value {
            if keys::KEYS
                .iter()
                .any(|k| k.name.starts_with(&format!("{key}.")))
            {
                flatten(figment, inner, &key, out)?;
                continue;
            }
        }
        let Some(def) = keys::find(&key) else {
            let text = scalar_text(value, keys::Kind::List).map_err(|reason| ConfigError {
                key: Some(key.clone()),
                source: source.clone(),
                reason,
            })?;
            out.insert(
                key,
                RawValue {
                    text,
                    source,
                    known: false,
                },
            );
            continue;
        };
        let text = scalar_text(value, def.kind).map_err(|reason| ConfigError {
            key: Some(key.clone()),
            source: source.clone(),
            reason,
        })?;
        out.insert(
            key,
            RawValue {
                text,
                source,
                known: true,
            },
        );
    }
    Ok(())
}

/// Turns a TOML/env value into the text Postfix would have in main.cf.
fn scalar_text(value: &Value, kind: keys::Kind) -> Result<String, String> {
    use keys::Kind;
    Ok(match value {
        Value::String(_, s) => s.clone(),
        Value::Char(_, c) => c.to_string(),
        Value::Bool(_, b) => if *b { "yes" } else { "no" }.to_string(),
        Value::Num(_, n) => {
            if let Some(i) = (*n).to_u128() {
                i.to_string()
            } else if let Some(i) = (*n).to_i128() {
                i.to_string()
            } else {
                n.to_f64().map(|f| f.to_string()).unwrap_or_default()
            }
        }
        Value::Empty(..) => String::new(),
        Value::Array(_, items) if matches!(kind, Kind::List | Kind::Listen) => {
            let mut parts = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::Array(..) | Value::Dict(..) => {
                        return Err("expected a list of words, found a nested list or table".into())
                    }
                    other => parts.push(scalar_text(other, Kind::Text)?),
                }
            }
            parts.join(", ")
        }
        Value::Array(..) => return Err(format!("expected {}, found a list", kind_name(kind))),
        Value::Dict(..) => return Err(format!("expected {}, found a table", kind_name(kind))),
    })
}

pub fn kind_name(kind: keys::Kind) -> &'static str {
    use keys::Kind;
    match kind {
        Kind::Text => "a string",
        Kind::List => "a list",
        Kind::Bool => "yes or no",
        Kind::Count => "a whole number",
        Kind::Time(_) => "a time such as 300s or 5d",
        Kind::Listen => "an address such as 0.0.0.0:25",
        Kind::Template => "a reply template",
    }
}

/// The error for a key no table entry names (and no restriction class).
pub fn unknown_key(key: &str, value: &RawValue) -> ConfigError {
    let hint = keys::suggest(key)
        .map(|s| format!(" (did you mean '{s}'?)"))
        .unwrap_or_default();
    ConfigError {
        key: Some(key.to_string()),
        source: value.source.clone(),
        reason: format!("unknown key{hint}"),
    }
}

#[cfg(test)]
mod main_cf_tests {
    use super::parse_main_cf;

    #[test]
    fn main_cf_lines_as_postfix_reads_them() {
        let text = "# Debian's main.cf\nmyhostname = mail.example.com\nsmtpd_recipient_restrictions =\n    permit_mynetworks,\n    reject_unauth_destination\n\n  # indented comment\nmydestination = $myhostname, localhost\nmyhostname=other.example.com\n";
        let e = parse_main_cf(text).unwrap();
        assert_eq!(
            e,
            vec![
                (
                    "smtpd_recipient_restrictions".to_string(),
                    "permit_mynetworks, reject_unauth_destination".to_string()
                ),
                (
                    "mydestination".to_string(),
                    "$myhostname, localhost".to_string()
                ),
                ("myhostname".to_string(), "other.example.com".to_string()),
            ]
        );
        assert_eq!(parse_main_cf("a = 1\nnot a setting\n").unwrap_err().0, 2);
        assert_eq!(parse_main_cf("  x = 1\n").unwrap_err().0, 1);
        assert!(parse_main_cf("bad name = 1\n")
            .unwrap_err()
            .1
            .contains("not a parameter name"));
    }
}
