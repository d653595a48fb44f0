//! The header keys of a mailbox on disk, `pigeonpost.index.keys` beside
//! `dovecot-uidlist`: what header searches (SUBJECT, FROM, TO, CC, BCC,
//! SENT*) and SORT (DATE) compare, per UID ([`HeaderKeys`]), so that after
//! a restart they read no message files either (Dovecot keeps the like in
//! `dovecot.index.cache`). Beside it `pigeonpost.index.dates` holds only
//! each message's sent date ([`SentDate`]): a SORT (DATE) on a mailbox
//! just opened reads 20 bytes per message, not the ~170 of its keys.
//!
//! Rebuildable, never the source of truth: a message never changes, so a
//! record is good while its UIDVALIDITY holds. A missing, foreign or
//! damaged file is ignored and written anew.
//!
//! Format: a line `pigeonpost-keys 1 <uidvalidity>` (`pigeonpost-dates 1
//! <uidvalidity>`), then records `<uidvalidity> <uid> <payload>\n`,
//! appended (O_APPEND, one write per batch; a record of another
//! UIDVALIDITY, appended by a process that hadn't seen the mailbox
//! recreated, is skipped); the payload is [`HeaderKeys::encode`], or the
//! sent date in Unix seconds (`-` for none).

use std::io::Write;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use rustc_hash::FxHashMap;

use super::search::HeaderKeys;
use crate::store::index_file;

pub const KEYS_FILE: &str = "pigeonpost.index.keys";
pub const DATES_FILE: &str = "pigeonpost.index.dates";

/// What one kind of index file holds per message.
pub trait Payload: Sized {
    const FILE: &'static str;
    const MAGIC: &'static str;
    /// For logs: what the file is.
    const WHAT: &'static str;
    /// Writes the payload; it must end in a way [`Payload::decode`] finds
    /// (the record's newline follows).
    fn encode(&self, out: &mut Vec<u8>);
    /// The payload at the start of `data` and how many bytes it took.
    fn decode(data: &[u8]) -> Option<(Self, usize)>;
}

impl Payload for HeaderKeys {
    const FILE: &'static str = KEYS_FILE;
    const MAGIC: &'static str = "pigeonpost-keys 1";
    const WHAT: &'static str = "IMAP header keys";
    fn encode(&self, out: &mut Vec<u8>) {
        HeaderKeys::encode(self, out)
    }
    fn decode(data: &[u8]) -> Option<(Self, usize)> {
        HeaderKeys::decode(data)
    }
}

/// SORT (DATE)'s sent date of a message (RFC 5256 §2.2), Unix seconds;
/// `None` when it has no usable `Date:` (the internal date stands in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentDate(pub Option<i64>);

impl Payload for SentDate {
    const FILE: &'static str = DATES_FILE;
    const MAGIC: &'static str = "pigeonpost-dates 1";
    const WHAT: &'static str = "IMAP sent dates";
    fn encode(&self, out: &mut Vec<u8>) {
        match self.0 {
            Some(d) => {
                let _ = write!(out, "{d}");
            }
            None => out.push(b'-'),
        }
    }
    fn decode(data: &[u8]) -> Option<(Self, usize)> {
        let len = memchr::memchr(b'\n', data)?;
        let date = match &data[..len] {
            b"-" => None,
            [b'-', d @ ..] => Some(-i64::try_from(decimal(d)?).ok()?),
            d => Some(i64::try_from(decimal(d)?).ok()?),
        };
        Some((SentDate(date), len))
    }
}

/// The unsigned decimal number `d` is, if it is one (1–19 digits): read
/// without a UTF-8 check and `str::parse` per field, as a file of 100,000
/// records is read at a cold SORT.
fn decimal(d: &[u8]) -> Option<u64> {
    if d.is_empty() || d.len() > 19 || !d.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(d.iter().fold(0, |n, &c| n * 10 + u64::from(c - b'0')))
}

/// One mailbox's file of `T` records.
pub struct RecordFile<T> {
    path: PathBuf,
    uidvalidity: u32,
    payload: PhantomData<T>,
}

/// One mailbox's header keys file.
pub type KeysFile = RecordFile<HeaderKeys>;
/// One mailbox's sent dates file.
pub type DatesFile = RecordFile<SentDate>;

impl<T: Payload> RecordFile<T> {
    pub fn new(dir: &Path, uidvalidity: u32) -> RecordFile<T> {
        RecordFile {
            path: dir.join(T::FILE),
            uidvalidity,
            payload: PhantomData,
        }
    }

    /// The records the file holds. Those of expunged messages are harmless
    /// (a UID is never used twice under one UIDVALIDITY): they are only
    /// dropped, keeping what `live` accepts, when they are most of a file
    /// of the mailbox's `count` messages, or when it is damaged or
    /// foreign.
    pub fn load(&self, count: usize, live: impl Fn(u32) -> bool) -> FxHashMap<u32, T> {
        let mut records = FxHashMap::default();
        let Ok(data) = std::fs::read(&self.path) else {
            return records;
        };
        records.reserve(count);
        let (total, ok) = self.parse(&data, |uid, k| {
            records.insert(uid, k);
        });
        let stale = total.saturating_sub(count);
        if !ok || stale > 256 && stale > count {
            records.retain(|u, _| live(*u));
            let mut all: Vec<(u32, &T)> = records.iter().map(|(u, k)| (*u, k)).collect();
            all.sort_unstable_by_key(|(u, _)| *u);
            self.rewrite(&all);
        }
        records
    }

    fn header(&self) -> String {
        format!("{} {}\n", T::MAGIC, self.uidvalidity)
    }

    /// Calls `each` for every record made under our UIDVALIDITY; returns
    /// how many there were and whether the whole file was well formed.
    fn parse(&self, data: &[u8], mut each: impl FnMut(u32, T)) -> (usize, bool) {
        let Some(mut rest) = data.strip_prefix(self.header().as_bytes()) else {
            return (0, false);
        };
        let mut n = 0;
        while !rest.is_empty() {
            let record = (|| {
                let sp1 = memchr::memchr(b' ', rest)?;
                let sp2 = sp1 + 1 + memchr::memchr(b' ', &rest[sp1 + 1..])?;
                let validity = u32::try_from(decimal(&rest[..sp1])?).ok()?;
                let uid = u32::try_from(decimal(&rest[sp1 + 1..sp2])?).ok()?;
                let (payload, used) = T::decode(&rest[sp2 + 1..])?;
                let end = sp2 + 1 + used;
                (rest.get(end) == Some(&b'\n')).then_some((validity, uid, payload, end + 1))
            })();
            let Some((validity, uid, payload, used)) = record else {
                return (n, false);
            };
            if validity == self.uidvalidity {
                each(uid, payload);
                n += 1;
            }
            rest = &rest[used..];
        }
        (n, true)
    }

    fn record(&self, buf: &mut Vec<u8>, uid: u32, payload: &T) {
        let _ = write!(buf, "{} {uid} ", self.uidvalidity);
        payload.encode(buf);
        buf.push(b'\n');
    }

    /// Appends new records. Failures are only logged: the file is an
    /// optimisation (a read-only Maildir has none).
    pub fn append(&self, new: &[(u32, &T)]) {
        if new.is_empty() {
            return;
        }
        let mut buf = Vec::new();
        if !self.path.exists() {
            buf.extend_from_slice(self.header().as_bytes());
        }
        for (uid, payload) in new {
            self.record(&mut buf, *uid, payload);
        }
        index_file::append(&self.path, &buf, T::WHAT);
    }

    /// Writes the file anew (temp file, rename).
    fn rewrite(&self, all: &[(u32, &T)]) {
        let mut buf = self.header().into_bytes();
        for (uid, payload) in all {
            self.record(&mut buf, *uid, payload);
        }
        index_file::replace(&self.path, &buf, T::WHAT);
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
    let dir = PathBuf::from("/nonexistent/pigeonpost-fuzz");
    KeysFile::new(&dir, 7).parse(data, |_, k| roundtrip(&k));
    DatesFile::new(&dir, 7).parse(data, |_, d| {
        let mut buf = Vec::new();
        d.encode(&mut buf);
        buf.push(b'\n');
        assert_eq!(SentDate::decode(&buf), Some((d, buf.len() - 1)));
    });
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

    #[test]
    fn sent_dates_survive_their_file_and_damage_costs_only_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let f = DatesFile::new(dir.path(), 7);
        let (a, b, c) = (
            SentDate(Some(1_700_000_000)),
            SentDate(None),
            SentDate(Some(-5)),
        );
        f.append(&[(1, &a), (2, &b)]);
        f.append(&[(3, &c)]);
        let path = dir.path().join(DATES_FILE);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "pigeonpost-dates 1 7\n7 1 1700000000\n7 2 -\n7 3 -5\n"
        );
        let got = f.load(3, |_| true);
        assert_eq!((got[&1], got[&2], got[&3], got.len()), (a, b, c, 3));
        // A torn append: the records before it stay, the file is rewritten.
        std::fs::write(&path, "pigeonpost-dates 1 7\n7 1 1700000000\n7 2 17").unwrap();
        assert_eq!(f.load(3, |_| true).len(), 1);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "pigeonpost-dates 1 7\n7 1 1700000000\n"
        );
        // Another UIDVALIDITY's file: nothing of it.
        assert!(DatesFile::new(dir.path(), 8).load(1, |_| true).is_empty());
    }
}
