//! `dovecot-keywords`: names of the keyword letters `a`–`z` used in file
//! names (lib-storage/index/maildir/maildir-keywords.c). One `<index> <name>`
//! line per keyword; names compare case-insensitively. New names are added
//! only while holding the uidlist lock, and the file is replaced through its
//! own dot-lock.

use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::dotlock::{DotLock, STALE_TIMEOUT};
use super::Result;

/// At most 26 keywords per Maildir folder (letters `a`–`z`).
pub const MAX_KEYWORDS: usize = 26;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keywords {
    names: Vec<Option<String>>,
    /// mtime of the file we read (None: no file)
    pub mtime: Option<SystemTime>,
}

impl Keywords {
    pub fn read(path: &Path) -> io::Result<Keywords> {
        let mtime = match fs::metadata(path) {
            Ok(m) => m.modified().ok(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Keywords::default()),
            Err(e) => return Err(e),
        };
        let text = match fs::read(path) {
            Ok(d) => String::from_utf8_lossy(&d).into_owned(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Keywords::default()),
            Err(e) => return Err(e),
        };
        let mut k = Keywords {
            names: Vec::new(),
            mtime,
        };
        for line in text.lines() {
            let Some((idx, name)) = line.split_once(' ') else {
                continue;
            };
            let Ok(idx) = idx.parse::<usize>() else {
                continue;
            };
            if idx >= MAX_KEYWORDS || name.is_empty() {
                continue;
            }
            if k.names.len() <= idx {
                k.names.resize(idx + 1, None);
            }
            k.names[idx] = Some(name.to_string());
        }
        Ok(k)
    }

    /// Name for letter index `idx` (Dovecot invents `unknown-<idx>` for a
    /// letter with no name; so do we, without writing it).
    pub fn name(&self, idx: usize) -> String {
        match self.names.get(idx) {
            Some(Some(n)) => n.clone(),
            _ => format!("unknown-{idx}"),
        }
    }

    /// Letter index of `name`, case-insensitively.
    pub fn lookup(&self, name: &str) -> Option<usize> {
        self.names
            .iter()
            .position(|n| n.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(name)))
    }

    /// Names of the bits set in `mask`.
    pub fn names_of(&self, mask: u32) -> Vec<String> {
        (0..MAX_KEYWORDS)
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| self.name(i))
            .collect()
    }

    /// Adds `name` in the first free slot; `None` when all 26 are taken.
    pub fn add(&mut self, name: &str) -> Option<usize> {
        let idx = match self.names.iter().position(Option::is_none) {
            Some(i) => i,
            None if self.names.len() < MAX_KEYWORDS => {
                self.names.push(None);
                self.names.len() - 1
            }
            None => return None,
        };
        self.names[idx] = Some(name.to_string());
        Some(idx)
    }

    /// Replaces the file (caller holds the uidlist lock).
    pub fn write(&self, path: &Path, lock_timeout: Duration) -> Result<()> {
        let mut text = String::new();
        for (i, n) in self.names.iter().enumerate() {
            if let Some(n) = n {
                text.push_str(&format!("{i} {n}\n"));
            }
        }
        let lock = DotLock::acquire(path, lock_timeout, STALE_TIMEOUT)?;
        // Dovecot notices changes by the mtime in whole seconds: it must grow
        // every time (maildir_keywords_write_fd).
        let now = SystemTime::now();
        let old = fs::metadata(path).and_then(|m| m.modified()).ok();
        let secs = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        };
        let mtime = match old {
            Some(old) if secs(old) >= secs(now) => {
                Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs(old) + 1))
            }
            _ => None,
        };
        lock.replace(text.as_bytes(), mtime)
    }
}

/// Whether `name` can be stored as a keyword (an IMAP atom without
/// wildcards or `]`, so it survives `dovecot-keywords` and the wire).
pub fn valid_keyword(name: &str) -> bool {
    // NIL is an atom, but in a flag list clients read it as nil (issue
    // seen in conformance suites): refused, as no flag can be spelled so.
    !name.is_empty()
        && !name.eq_ignore_ascii_case("NIL")
        && name.len() <= 255
        && !name.starts_with('\\')
        && name.bytes().all(|b| {
            b.is_ascii_graphic()
                && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_lookup_add() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("dovecot-keywords");
        fs::write(&p, "0 $Forwarded\n2 work\nbogus\n30 toolarge\n").unwrap();
        let mut k = Keywords::read(&p).unwrap();
        assert_eq!(k.lookup("$forwarded"), Some(0));
        assert_eq!(k.lookup("WORK"), Some(2));
        assert_eq!(k.name(1), "unknown-1");
        assert_eq!(k.names_of(0b101), ["$Forwarded", "work"]);
        assert_eq!(k.add("new"), Some(1));
        k.write(&p, Duration::from_secs(1)).unwrap();
        assert_eq!(
            fs::read_to_string(&p).unwrap(),
            "0 $Forwarded\n1 new\n2 work\n"
        );
        for i in 3..26 {
            assert_eq!(k.add(&format!("k{i}")), Some(i));
        }
        assert_eq!(k.add("full"), None);
        assert!(valid_keyword("$Junk") && !valid_keyword("a b") && !valid_keyword("\\Seen"));
    }
}
