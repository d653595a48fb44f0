//! The header keys of a mailbox on disk, `pigeonpost.index.keys` beside
//! `dovecot-uidlist`: what header searches (SUBJECT, FROM, TO, CC, BCC,
//! SENT*) and SORT (DATE) compare, per UID ([`HeaderKeys`]), so that after
//! a restart they read no message files either (Dovecot keeps the like in
//! `dovecot.index.cache`).
//!
//! Rebuildable, never the source of truth: a message never changes, so a
//! record is good while its UIDVALIDITY holds. A missing, foreign or
//! damaged file is ignored and written anew.
//!
//! Format: a line `pigeonpost-keys 1 <uidvalidity>`, then records
//! `<uidvalidity> <uid> <HeaderKeys::encode>\n`, appended (O_APPEND, one
//! write per batch; a record of another UIDVALIDITY, appended by a process
//! that hadn't seen the mailbox recreated, is skipped).

use std::io::Write;
use std::path::{Path, PathBuf};

use rustc_hash::FxHashMap;

use super::search::HeaderKeys;
use crate::store::index_file;

pub const KEYS_FILE: &str = "pigeonpost.index.keys";
const MAGIC: &str = "pigeonpost-keys 1";

/// One mailbox's keys file.
pub struct KeysFile {
    path: PathBuf,
    uidvalidity: u32,
}

impl KeysFile {
    pub fn new(dir: &Path, uidvalidity: u32) -> KeysFile {
        KeysFile {
            path: dir.join(KEYS_FILE),
            uidvalidity,
        }
    }

    /// The keys the file holds. Those of expunged messages are harmless
    /// (a UID is never used twice under one UIDVALIDITY): they are only
    /// dropped, keeping what `live` accepts, when they are most of a file
    /// of the mailbox's `count` messages, or when it is damaged or
    /// foreign.
    pub fn load(&self, count: usize, live: impl Fn(u32) -> bool) -> FxHashMap<u32, HeaderKeys> {
        let mut keys = FxHashMap::default();
        let Ok(data) = std::fs::read(&self.path) else {
            return keys;
        };
        let (total, ok) = self.parse(&data, |uid, k| {
            keys.insert(uid, k);
        });
        let stale = total.saturating_sub(count);
        if !ok || stale > 256 && stale > count {
            keys.retain(|u, _| live(*u));
            let mut all: Vec<(u32, &HeaderKeys)> = keys.iter().map(|(u, k)| (*u, k)).collect();
            all.sort_unstable_by_key(|(u, _)| *u);
            self.rewrite(&all);
        }
        keys
    }

    /// Calls `each` for every record made under our UIDVALIDITY; returns
    /// how many there were and whether the whole file was well formed.
    fn parse(&self, data: &[u8], mut each: impl FnMut(u32, HeaderKeys)) -> (usize, bool) {
        let header = format!("{MAGIC} {}\n", self.uidvalidity);
        let Some(mut rest) = data.strip_prefix(header.as_bytes()) else {
            return (0, false);
        };
        let mut n = 0;
        while !rest.is_empty() {
            let record = (|| {
                let sp1 = memchr::memchr(b' ', rest)?;
                let sp2 = sp1 + 1 + memchr::memchr(b' ', &rest[sp1 + 1..])?;
                let validity: u32 = std::str::from_utf8(&rest[..sp1]).ok()?.parse().ok()?;
                let uid: u32 = std::str::from_utf8(&rest[sp1 + 1..sp2])
                    .ok()?
                    .parse()
                    .ok()?;
                let (keys, used) = HeaderKeys::decode(&rest[sp2 + 1..])?;
                let end = sp2 + 1 + used;
                (rest.get(end) == Some(&b'\n')).then_some((validity, uid, keys, end + 1))
            })();
            let Some((validity, uid, keys, used)) = record else {
                return (n, false);
            };
            if validity == self.uidvalidity {
                each(uid, keys);
                n += 1;
            }
            rest = &rest[used..];
        }
        (n, true)
    }

    fn record(&self, buf: &mut Vec<u8>, uid: u32, keys: &HeaderKeys) {
        let _ = write!(buf, "{} {uid} ", self.uidvalidity);
        keys.encode(buf);
        buf.push(b'\n');
    }

    /// Appends new records. Failures are only logged: the file is an
    /// optimisation (a read-only Maildir has none).
    pub fn append(&self, new: &[(u32, &HeaderKeys)]) {
        if new.is_empty() {
            return;
        }
        let mut buf = Vec::new();
        let fresh = !self.path.exists();
        if fresh {
            buf.extend_from_slice(format!("{MAGIC} {}\n", self.uidvalidity).as_bytes());
        }
        for (uid, keys) in new {
            self.record(&mut buf, *uid, keys);
        }
        index_file::append(&self.path, &buf, "IMAP header keys");
    }

    /// Writes the file anew (temp file, rename).
    fn rewrite(&self, all: &[(u32, &HeaderKeys)]) {
        let mut buf = format!("{MAGIC} {}\n", self.uidvalidity).into_bytes();
        for (uid, keys) in all {
            self.record(&mut buf, *uid, keys);
        }
        index_file::replace(&self.path, &buf, "IMAP header keys");
    }
}

/// For the fuzzer (`fuzz/fuzz_targets/imap_keys.rs`): any bytes read as a
/// keys file, or taken as a message header, never panic; keys read back
/// as they were written.
pub fn fuzz_check(data: &[u8]) {
    let roundtrip = |k: &HeaderKeys| {
        let mut buf = Vec::new();
        k.encode(&mut buf);
        let (back, used) = HeaderKeys::decode(&buf).expect("written keys read back");
        assert_eq!((&back, used), (k, buf.len()));
    };
    let file = KeysFile {
        path: PathBuf::from("/nonexistent/pigeonpost-fuzz").join(KEYS_FILE),
        uidvalidity: 7,
    };
    file.parse(data, |_, k| roundtrip(&k));
    roundtrip(&HeaderKeys::of(data));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(header: &str) -> HeaderKeys {
        HeaderKeys::of(header.as_bytes())
    }

    #[test]
    fn keys_survive_the_file_and_damage_costs_only_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let a = keys("Subject: caf\u{e9}\r\nFrom: A <a@x>\r\nDate: 1 Jan 2024 10:00 +0100\r\n\r\n");
        let b = keys("To: b@y\r\nTo: c@z\r\n\r\nbody");
        let f = KeysFile::new(dir.path(), 7);
        f.append(&[(1, &a), (2, &b)]);
        let got = f.load(2, |_| true);
        assert_eq!(
            (got.get(&1), got.get(&2), got.len()),
            (Some(&a), Some(&b), 2)
        );
        // Expunged ones are left out.
        assert_eq!(f.load(1, |u| u == 2).len(), 2, "kept: few are stale");
        assert_eq!(f.load(0, |u| u == 2).len(), 2);
        // A torn append: what came before is kept, the file rewritten.
        let path = dir.path().join(KEYS_FILE);
        let mut data = std::fs::read(&path).unwrap();
        let good = data.len();
        f.append(&[(3, &a)]);
        data = std::fs::read(&path).unwrap();
        std::fs::write(&path, &data[..good + 10]).unwrap();
        let got = f.load(2, |_| true);
        assert_eq!(got.len(), 2);
        assert_eq!(std::fs::read(&path).unwrap().len(), good);
        // A record that doesn't end where its length says: nothing from
        // there on.
        let mut bad = std::fs::read(&path).unwrap();
        let at = bad.len() - 1;
        bad[at] = b'x';
        std::fs::write(&path, &bad).unwrap();
        assert_eq!(f.load(2, |_| true).len(), 1);
        // Mostly expunged messages: the file is written anew without them.
        let many: Vec<(u32, &HeaderKeys)> = (10..400).map(|u| (u, &a)).collect();
        f.append(&many);
        assert_eq!(f.load(1, |u| u == 10).len(), 1);
        assert_eq!(f.load(1, |_| true).len(), 1);
        // The mailbox made anew (another UIDVALIDITY): nothing of it.
        assert!(KeysFile::new(dir.path(), 8).load(2, |_| true).is_empty());
        assert!(f.load(2, |_| true).is_empty());
    }
}
