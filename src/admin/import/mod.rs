//! `pigeonpost import`: reads a Postfix main.cf/master.cf and a Dovecot
//! dovecot.conf (with its includes) and writes a pigeonpost.toml, with a
//! report of one line per setting: mapped (to which key), not needed (why)
//! or unsupported (what to do). Every key written is one pigeonpost
//! accepts: the result is loaded with the real configuration loader, and a
//! setting it refuses is moved to "unsupported" with the loader's reason.

pub mod dovecot_conf;
mod map;
pub mod master_cf;

use std::path::Path;

use super::AdminError;
use crate::config;

/// What became of one setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Mapped(String),
    NotNeeded(String),
    Unsupported(String),
}

/// One report line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// `main.cf:12`, `master.cf:17`, `/etc/dovecot/conf.d/10-auth.conf:5`.
    pub origin: String,
    /// The setting as the source names it (`submission -o smtpd_sasl_auth_enable`,
    /// `passdb driver`).
    pub setting: String,
    pub verdict: Verdict,
}

impl std::fmt::Display for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (word, text) = match &self.verdict {
            Verdict::Mapped(k) => ("mapped", format!("to {k}")),
            Verdict::NotNeeded(why) => ("not needed", why.clone()),
            Verdict::Unsupported(what) => ("unsupported", what.clone()),
        };
        write!(f, "{}: {}: {word}: {text}", self.origin, self.setting)
    }
}

/// The result: TOML text and the report.
pub struct Imported {
    pub toml: String,
    pub report: Vec<Line>,
}

/// Reads `postfix_dir/main.cf`, `postfix_dir/master.cf` and
/// `dovecot_dir/dovecot.conf`; a missing file is reported, not fatal,
/// unless both programs' files are missing.
pub fn import(postfix_dir: &Path, dovecot_dir: &Path) -> Result<Imported, AdminError> {
    let mut m = map::Mapper::default();
    let main_cf = postfix_dir.join("main.cf");
    let mut found = false;
    match std::fs::read_to_string(&main_cf) {
        Ok(text) => {
            found = true;
            let entries = config::layers::parse_main_cf(&text).map_err(|(line, why)| {
                AdminError::usage(format!("{}:{line}: {why}", main_cf.display()))
            })?;
            m.main_cf(&text, &entries);
        }
        Err(e) => m.missing(&main_cf, &e),
    }
    let master = postfix_dir.join("master.cf");
    match std::fs::read_to_string(&master) {
        Ok(text) => {
            let services = master_cf::parse(&text).map_err(|(line, why)| {
                AdminError::usage(format!("{}:{line}: {why}", master.display()))
            })?;
            m.master_cf(&services);
        }
        Err(e) => m.missing(&master, &e),
    }
    let dovecot = dovecot_dir.join("dovecot.conf");
    if dovecot.exists() {
        found = true;
        let settings = dovecot_conf::read(&dovecot).map_err(AdminError::usage)?;
        m.dovecot(&settings);
    } else {
        m.missing(
            &dovecot,
            &std::io::Error::from(std::io::ErrorKind::NotFound),
        );
    }
    if !found {
        return Err(AdminError::usage(format!(
            "neither {} nor {} exists: nothing to import (see --postfix-dir, --dovecot-dir)",
            main_cf.display(),
            dovecot.display()
        )));
    }
    m.finish()
}
