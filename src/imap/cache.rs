//! The per-mailbox cache of parsed message structure: ENVELOPE, BODY and
//! BODYSTRUCTURE per UID, held by the shared mailbox and kept on disk in
//! `pigeonpost.index.cache` beside `dovecot-uidlist` (Dovecot keeps the
//! like in `dovecot.index.cache`), so a client's header sync reads and
//! parses each message once, not on every FETCH.
//!
//! It is rebuildable and never the source of truth: a Maildir message never
//! changes once written (flags live in the file name), so an entry is good
//! for as long as the UIDVALIDITY it was made under. A missing, foreign or
//! damaged file is ignored and written anew; losing it costs one re-parse.
//!
//! File format: a header line `pigeonpost-cache 3 <uidvalidity>` (3 added
//! References; a version-2 file is dropped and rebuilt), then records
//! `<uidvalidity> <uid> <length>\n<length bytes>\n`, appended (O_APPEND,
//! one write per batch; each record names its UIDVALIDITY, so one appended
//! by a process that hadn't seen the mailbox recreated is skipped), where
//! the bytes are the items in IMAP's own wire form, a `* 1 FETCH (ENVELOPE
//! … BODY … BODYSTRUCTURE … BODY[HEADER.FIELDS (REFERENCES)] …)` response
//! line that imap-codec reads back. The last item holds the unfolded
//! References value, which THREAD=REFERENCES needs and ENVELOPE hasn't;
//! SORT and THREAD take everything else from the ENVELOPE, so they read no
//! message files.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use imap_codec::decode::Decoder;
use imap_codec::encode::Encoder;
use imap_codec::imap_types::body::BodyStructure;
use imap_codec::imap_types::core::{AString, NString, Vec1};
use imap_codec::imap_types::envelope::Envelope;
use imap_codec::imap_types::fetch::{MessageDataItem, Section};
use imap_codec::imap_types::response::{Data, Response};
use imap_codec::imap_types::IntoStatic;
use imap_codec::ResponseCodec;

use super::message;
use crate::store::index_file;

pub const CACHE_FILE: &str = "pigeonpost.index.cache";
const MAGIC: &str = "pigeonpost-cache 3";

/// The cached structure of one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Parts {
    pub envelope: Envelope<'static>,
    pub body: BodyStructure<'static>,
    pub bodystructure: BodyStructure<'static>,
    /// The last `References:` value, unfolded (RFC 5256 §4).
    pub references: NString<'static>,
}

/// The item the References value is kept in.
fn references_section() -> Section<'static> {
    Section::HeaderFields(
        None,
        Vec1::from(AString::try_from("REFERENCES").expect("an atom")),
    )
}

impl Parts {
    pub fn of(parsed: &message::Parsed<'_>) -> Parts {
        Parts {
            envelope: message::envelope(parsed),
            body: message::body_structure(parsed, false),
            bodystructure: message::body_structure(parsed, true),
            references: message::header_nstring(parsed, "References"),
        }
    }

    fn encode(&self) -> Vec<u8> {
        let items = Vec1::try_from(vec![
            MessageDataItem::Envelope(self.envelope.clone()),
            MessageDataItem::Body(self.body.clone()),
            MessageDataItem::BodyStructure(self.bodystructure.clone()),
            MessageDataItem::BodyExt {
                section: Some(references_section()),
                origin: None,
                data: self.references.clone(),
            },
        ])
        .expect("four items");
        let r = Response::Data(Data::Fetch {
            seq: NonZeroU32::MIN,
            items,
        });
        ResponseCodec::default().encode(&r).dump()
    }

    fn decode(bytes: &[u8]) -> Option<Parts> {
        let (rest, r) = ResponseCodec::default().decode(bytes).ok()?;
        if !rest.is_empty() {
            return None;
        }
        let Response::Data(Data::Fetch { items, .. }) = r else {
            return None;
        };
        let (mut envelope, mut body, mut bodystructure, mut references) = (None, None, None, None);
        for item in items.into_iter() {
            match item {
                MessageDataItem::Envelope(e) => envelope = Some(e.into_static()),
                MessageDataItem::Body(b) => body = Some(b.into_static()),
                MessageDataItem::BodyStructure(b) => bodystructure = Some(b.into_static()),
                MessageDataItem::BodyExt { section, data, .. }
                    if section == Some(references_section()) =>
                {
                    references = Some(data.into_static())
                }
                _ => {}
            }
        }
        Some(Parts {
            envelope: envelope?,
            body: body?,
            bodystructure: bodystructure?,
            references: references?,
        })
    }
}

/// One mailbox's cache: entries as their wire bytes (decoded on use, so
/// a 5,000-message cache costs a few MB, not tens), plus those not yet
/// written out.
pub struct PartsCache {
    path: PathBuf,
    uidvalidity: u32,
    entries: HashMap<u32, Box<[u8]>>,
    pending: Vec<u32>,
}

impl PartsCache {
    /// Reads `dir`'s cache file if it was made under `uidvalidity`; keeps
    /// only the entries `live` accepts. A file mostly of expunged messages
    /// is rewritten without them.
    pub fn load(dir: &Path, uidvalidity: u32, live: &HashSet<u32>) -> PartsCache {
        let path = dir.join(CACHE_FILE);
        let mut cache = PartsCache {
            path,
            uidvalidity,
            entries: HashMap::new(),
            pending: Vec::new(),
        };
        let Ok(data) = std::fs::read(&cache.path) else {
            return cache;
        };
        let (records, ok) = parse_file(&data, uidvalidity);
        let total = records.len();
        for (uid, bytes) in records {
            if live.contains(&uid) {
                cache.entries.insert(uid, bytes.into());
            }
        }
        let stale = total - cache.entries.len();
        if !ok || stale > 256 && stale > cache.entries.len() {
            cache.rewrite();
        }
        cache
    }

    pub fn uidvalidity(&self) -> u32 {
        self.uidvalidity
    }

    pub fn get(&self, uid: u32) -> Option<Parts> {
        Parts::decode(self.entries.get(&uid)?)
    }

    pub fn insert(&mut self, uid: u32, parts: &Parts) {
        self.entries.insert(uid, parts.encode().into());
        self.pending.push(uid);
    }

    /// Forgets expunged messages (their records go at the next rewrite).
    pub fn retain(&mut self, live: impl Fn(u32) -> bool) {
        self.entries.retain(|u, _| live(*u));
    }

    /// Appends what was added since the last flush. Failures are only
    /// logged: the cache is an optimisation (a read-only Maildir has none).
    pub fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mut buf = Vec::new();
        let fresh = !self.path.exists();
        if fresh {
            buf.extend_from_slice(format!("{MAGIC} {}\n", self.uidvalidity).as_bytes());
        }
        for uid in std::mem::take(&mut self.pending) {
            if let Some(bytes) = self.entries.get(&uid) {
                record(&mut buf, self.uidvalidity, uid, bytes);
            }
        }
        index_file::append(&self.path, &buf, "IMAP cache");
    }

    /// Writes the file anew from the live entries (temp file, rename).
    fn rewrite(&mut self) {
        let mut buf = format!("{MAGIC} {}\n", self.uidvalidity).into_bytes();
        let mut uids: Vec<&u32> = self.entries.keys().collect();
        uids.sort_unstable();
        for uid in uids {
            record(&mut buf, self.uidvalidity, *uid, &self.entries[uid]);
        }
        index_file::replace(&self.path, &buf, "IMAP cache");
        self.pending.clear();
    }
}

fn record(buf: &mut Vec<u8>, uidvalidity: u32, uid: u32, bytes: &[u8]) {
    buf.extend_from_slice(format!("{uidvalidity} {uid} {}\n", bytes.len()).as_bytes());
    buf.extend_from_slice(bytes);
    buf.push(b'\n');
}

/// The records of a cache file made under `uidvalidity`, and whether the
/// whole file was well formed (a damaged tail is dropped; a foreign or
/// outdated header drops everything).
fn parse_file(data: &[u8], uidvalidity: u32) -> (Vec<(u32, Vec<u8>)>, bool) {
    let mut out = Vec::new();
    let Some(nl) = memchr::memchr(b'\n', data) else {
        return (out, false);
    };
    if data[..nl] != *format!("{MAGIC} {uidvalidity}").as_bytes() {
        return (out, false);
    }
    let mut at = nl + 1;
    while at < data.len() {
        let Some(nl) = memchr::memchr(b'\n', &data[at..]).map(|n| at + n) else {
            return (out, false);
        };
        let head = std::str::from_utf8(&data[at..nl]).unwrap_or("");
        let mut words = head.split(' ');
        let (Some(validity), Some(uid), Some(len), None) = (
            words.next().and_then(|w| w.parse::<u32>().ok()),
            words.next().and_then(|w| w.parse::<u32>().ok()),
            words.next().and_then(|w| w.parse::<usize>().ok()),
            words.next(),
        ) else {
            return (out, false);
        };
        let (start, end) = (nl + 1, (nl + 1).saturating_add(len));
        if end >= data.len() || data[end] != b'\n' {
            return (out, false);
        }
        if validity == uidvalidity {
            out.push((uid, data[start..end].to_vec()));
        }
        at = end + 1;
    }
    (out, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(subject: &str) -> Parts {
        let msg = format!(
            "From: Ann <ann@example.org>\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhi\r\n--b\r\nContent-Type: application/pdf; name=\"x.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n--b--\r\n"
        );
        Parts::of(&message::parse(msg.as_bytes()))
    }

    #[test]
    fn entries_survive_a_reload_and_match_a_fresh_parse() {
        let dir = tempfile::tempdir().unwrap();
        let live: HashSet<u32> = [1, 2].into();
        let mut c = PartsCache::load(dir.path(), 7, &live);
        // 8-bit and quoted-special subjects go out as literals/escapes.
        c.insert(1, &parts("plain"));
        c.insert(2, &parts("Gr\u{fc}\u{df}e \"quoted\" \\ {3}"));
        c.flush();
        let c = PartsCache::load(dir.path(), 7, &live);
        assert_eq!(c.get(1), Some(parts("plain")));
        assert_eq!(c.get(2), Some(parts("Gr\u{fc}\u{df}e \"quoted\" \\ {3}")));
        assert_eq!(c.get(3), None);
    }

    #[test]
    fn another_uidvalidity_or_a_damaged_file_is_ignored_and_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let live: HashSet<u32> = [1, 2].into();
        let mut c = PartsCache::load(dir.path(), 7, &live);
        c.insert(1, &parts("one"));
        c.insert(2, &parts("two"));
        c.flush();
        assert_eq!(PartsCache::load(dir.path(), 8, &live).get(1), None);
        // The UIDVALIDITY 8 load rewrote the file for 8: nothing of 7 is left.
        assert_eq!(PartsCache::load(dir.path(), 7, &live).get(1), None);

        let mut c = PartsCache::load(dir.path(), 7, &live);
        c.insert(1, &parts("one"));
        c.insert(2, &parts("two"));
        c.flush();
        let path = dir.path().join(CACHE_FILE);
        let mut data = std::fs::read(&path).unwrap();
        let len = data.len();
        data.truncate(len - 10);
        data.extend_from_slice(b"garbage");
        std::fs::write(&path, &data).unwrap();
        let c = PartsCache::load(dir.path(), 7, &live);
        assert_eq!(
            c.get(1),
            Some(parts("one")),
            "records before the damage stay"
        );
        assert_eq!(c.get(2), None);
        let (_, ok) = parse_file(&std::fs::read(&path).unwrap(), 7);
        assert!(ok, "the damaged file was rewritten");
        // A record whose bytes don't decode is a miss, not an error.
        std::fs::write(&path, format!("{MAGIC} 7\n7 1 5\nxxxxx\n")).unwrap();
        assert_eq!(PartsCache::load(dir.path(), 7, &live).get(1), None);
    }

    #[test]
    fn a_record_of_another_uidvalidity_is_skipped() {
        // Appended by a process that hadn't seen the mailbox recreated.
        let dir = tempfile::tempdir().unwrap();
        let live: HashSet<u32> = [1, 2].into();
        let mut c = PartsCache::load(dir.path(), 8, &live);
        c.insert(1, &parts("new one"));
        c.flush();
        let mut old = Vec::new();
        record(&mut old, 7, 2, &parts("old two").encode());
        let path = dir.path().join(CACHE_FILE);
        let mut data = std::fs::read(&path).unwrap();
        data.extend_from_slice(&old);
        std::fs::write(&path, data).unwrap();
        let c = PartsCache::load(dir.path(), 8, &live);
        assert_eq!(c.get(1), Some(parts("new one")));
        assert_eq!(c.get(2), None);
    }

    #[test]
    fn expunged_entries_are_dropped_and_the_file_compacted() {
        let dir = tempfile::tempdir().unwrap();
        let all: HashSet<u32> = (1..=600).collect();
        let mut c = PartsCache::load(dir.path(), 1, &all);
        let p = parts("x");
        for u in 1..=600 {
            c.insert(u, &p);
        }
        c.flush();
        let before = std::fs::metadata(dir.path().join(CACHE_FILE))
            .unwrap()
            .len();
        let live: HashSet<u32> = (1..=10).collect();
        let c = PartsCache::load(dir.path(), 1, &live);
        assert_eq!(c.get(10), Some(p.clone()));
        assert_eq!(c.get(11), None);
        let after = std::fs::metadata(dir.path().join(CACHE_FILE))
            .unwrap()
            .len();
        assert!(after * 20 < before, "{after} vs {before}");
    }
}
