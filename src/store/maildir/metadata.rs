//! IMAP METADATA (RFC 5464) entries of one user: server entries (mailbox
//! `""`) and per-mailbox entries, in `pigeonpost-metadata` at the Maildir
//! root. Dovecot keeps its own in a dict pigeonpost does not write, so the
//! file is ours alone. Written like the subscriptions file: under a
//! dot-lock, to a new file, fsynced, renamed over the old one.
//!
//! Format: one entry per line, `mailbox TAB entry TAB base64(value)`, the
//! mailbox name as stored on disk (modified UTF-7, `.`-separated), the
//! entry name lower-cased (entry names are case-insensitive, RFC 5464
//! §3.2). Lines that do not parse are skipped with a warning, never lost
//! silently into a rewrite: a rewrite keeps them as they were.

use std::collections::BTreeMap;
use std::fs;
use std::time::Duration;

use base64::Engine;

use super::dotlock::DotLock;
use super::folders::MaildirRoot;
use super::{io_err, is_not_found, Result};

const FILE: &str = "pigeonpost-metadata";
const STALE: Duration = Duration::from_secs(120);
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Largest value accepted (RFC 5464 §4.3: `[METADATA MAXSIZE n]`).
pub const MAX_VALUE: usize = 64 * 1024;
/// Most entries one user may have (`[METADATA TOOMANY]`).
pub const MAX_ENTRIES: usize = 1000;

/// (mailbox, entry) → value.
pub type Entries = BTreeMap<(String, String), Vec<u8>>;

/// Why a SETMETADATA was refused.
#[derive(Debug)]
pub enum SetError {
    /// A value longer than [`MAX_VALUE`].
    TooLarge,
    /// More than [`MAX_ENTRIES`] entries would exist.
    TooMany,
    Store(super::Error),
}

impl From<super::Error> for SetError {
    fn from(e: super::Error) -> SetError {
        SetError::Store(e)
    }
}

/// Is `entry` a valid entry name (RFC 5464 §3.2 and the `entry` ABNF of
/// §5): `/private/…` or `/shared/…`, no empty component, no trailing
/// slash, no wildcards, only printable ASCII?
pub fn valid_entry(entry: &str) -> bool {
    let lower = entry.to_ascii_lowercase();
    let rest = match (
        lower.strip_prefix("/private"),
        lower.strip_prefix("/shared"),
    ) {
        (Some(r), _) | (_, Some(r)) => r,
        _ => return false,
    };
    (rest.is_empty() || (rest.starts_with('/') && !rest.ends_with('/') && !rest.contains("//")))
        && entry
            .bytes()
            .all(|b| (0x21..0x7f).contains(&b) && b != b'*' && b != b'%')
}

fn parse(text: &str) -> (Entries, Vec<String>) {
    let mut entries = Entries::new();
    let mut broken = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let mut f = line.split('\t');
        match (f.next(), f.next(), f.next(), f.next()) {
            (Some(mailbox), Some(entry), Some(value), None) if valid_entry(entry) => {
                match B64.decode(value) {
                    Ok(v) => {
                        entries.insert((mailbox.to_string(), entry.to_ascii_lowercase()), v);
                    }
                    Err(_) => broken.push(line.to_string()),
                }
            }
            _ => broken.push(line.to_string()),
        }
    }
    (entries, broken)
}

/// For the fuzzer: any text as `pigeonpost-metadata` parses without
/// panicking, every entry it keeps is valid, and writing what was read
/// back and reading it again gives the same entries.
pub fn fuzz_check(text: &str) {
    let (entries, broken) = parse(text);
    assert!(entries.keys().all(|(_, e)| valid_entry(e)));
    let mut out = String::new();
    for ((mailbox, entry), value) in &entries {
        out.push_str(&format!("{mailbox}\t{entry}\t{}\n", B64.encode(value)));
    }
    let (again, _) = parse(&out);
    assert_eq!(again, entries, "broken lines: {broken:?}");
}

impl MaildirRoot {
    fn metadata_path(&self) -> std::path::PathBuf {
        self.path().join(FILE)
    }

    /// Every entry of this user.
    pub fn metadata(&self) -> Result<Entries> {
        let p = self.metadata_path();
        match fs::read(&p) {
            Ok(d) => {
                let (entries, broken) = parse(&String::from_utf8_lossy(&d));
                if !broken.is_empty() {
                    tracing::warn!(file = %p.display(), lines = broken.len(), "METADATA lines that do not parse are ignored");
                }
                Ok(entries)
            }
            Err(e) if is_not_found(&e) => Ok(Entries::new()),
            Err(e) => Err(io_err("read", &p, e)),
        }
    }

    /// Applies `changes` to one mailbox's entries (`""` = server entries)
    /// all or nothing: a value sets the entry, `None` removes it (RFC 5464
    /// §4.3, NIL). `edit` may also rename or drop whole mailboxes (see
    /// [`MaildirRoot::metadata_mailbox_gone`]).
    pub fn set_metadata(
        &self,
        mailbox: &str,
        changes: &[(String, Option<Vec<u8>>)],
    ) -> std::result::Result<(), SetError> {
        if changes
            .iter()
            .any(|(_, v)| v.as_ref().is_some_and(|v| v.len() > MAX_VALUE))
        {
            return Err(SetError::TooLarge);
        }
        self.edit_metadata(|entries| {
            for (entry, value) in changes {
                let key = (mailbox.to_string(), entry.to_ascii_lowercase());
                match value {
                    Some(v) => {
                        entries.insert(key, v.clone());
                    }
                    None => {
                        entries.remove(&key);
                    }
                }
            }
            if entries.len() > MAX_ENTRIES {
                return Err(SetError::TooMany);
            }
            Ok(())
        })
    }

    /// A mailbox was deleted (`to = None`) or renamed: its entries (and
    /// those of its children, `name.…`) go with it.
    pub fn metadata_mailbox_gone(&self, name: &str, to: Option<&str>) -> Result<()> {
        if !self.metadata_path().exists() {
            return Ok(());
        }
        let prefix = format!("{name}.");
        let r = self.edit_metadata(|entries| {
            let moved: Vec<_> = entries
                .keys()
                .filter(|(m, _)| m == name || m.starts_with(&prefix))
                .cloned()
                .collect();
            for key in moved {
                let value = entries.remove(&key).expect("listed");
                if let Some(to) = to {
                    let renamed = format!("{to}{}", &key.0[name.len()..]);
                    entries.insert((renamed, key.1), value);
                }
            }
            Ok(())
        });
        match r {
            Ok(()) => Ok(()),
            Err(SetError::Store(e)) => Err(e),
            Err(_) => Ok(()),
        }
    }

    fn edit_metadata(
        &self,
        edit: impl FnOnce(&mut Entries) -> std::result::Result<(), SetError>,
    ) -> std::result::Result<(), SetError> {
        let p = self.metadata_path();
        let lock = DotLock::acquire(&p, self.lock_timeout(), STALE)?;
        let (mut entries, broken) = match fs::read(&p) {
            Ok(d) => parse(&String::from_utf8_lossy(&d)),
            Err(e) if is_not_found(&e) => (Entries::new(), Vec::new()),
            Err(e) => return Err(io_err("read", &p, e).into()),
        };
        edit(&mut entries)?;
        let mut out = String::new();
        for ((mailbox, entry), value) in &entries {
            out.push_str(&format!("{mailbox}\t{entry}\t{}\n", B64.encode(value)));
        }
        for line in broken {
            out.push_str(&line);
            out.push('\n');
        }
        lock.replace(out.as_bytes(), None)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_follow_rfc_5464() {
        for ok in [
            "/private/comment",
            "/shared",
            "/Shared/Vendor/x-y",
            "/private",
        ] {
            assert!(valid_entry(ok), "{ok}");
        }
        for bad in [
            "",
            "/",
            "private/x",
            "/other/x",
            "/private/",
            "/private//x",
            "/private/a*",
            "/private/a%",
            "/private/a b",
            "/privatex",
        ] {
            assert!(!valid_entry(bad), "{bad}");
        }
    }

    #[test]
    fn set_get_remove_rename_and_limits() {
        let dir = tempfile::tempdir().unwrap();
        let root = MaildirRoot::new(dir.path());
        let v = |s: &str| Some(s.as_bytes().to_vec());
        root.set_metadata("", &[("/private/Vendor/x".into(), v("a\tb\r\n\0"))])
            .unwrap();
        root.set_metadata("Work", &[("/shared/comment".into(), v("w"))])
            .unwrap();
        root.set_metadata("Work.Sub", &[("/shared/comment".into(), v("s"))])
            .unwrap();
        let all = root.metadata().unwrap();
        assert_eq!(
            all.get(&("".into(), "/private/vendor/x".into()))
                .map(Vec::as_slice),
            Some(&b"a\tb\r\n\0"[..])
        );
        root.metadata_mailbox_gone("Work", Some("Old")).unwrap();
        let all = root.metadata().unwrap();
        let names: Vec<_> = all.keys().map(|(m, _)| m.as_str()).collect();
        assert_eq!(names, ["", "Old", "Old.Sub"]);
        root.metadata_mailbox_gone("Old", None).unwrap();
        root.set_metadata("", &[("/private/vendor/x".into(), None)])
            .unwrap();
        assert!(root.metadata().unwrap().is_empty());
        let big = vec![b'x'; MAX_VALUE + 1];
        assert!(matches!(
            root.set_metadata("", &[("/private/big".into(), Some(big))]),
            Err(SetError::TooLarge)
        ));
        let many: Vec<_> = (0..=MAX_ENTRIES)
            .map(|i| (format!("/private/n{i}"), v("1")))
            .collect();
        assert!(matches!(
            root.set_metadata("", &many),
            Err(SetError::TooMany)
        ));
        // All or nothing: nothing of the refused command was kept.
        assert!(root.metadata().unwrap().is_empty());
    }
}
