//! `dovecot-uidlist`: the UID ↔ file mapping Dovecot keeps in every Maildir
//! folder (lib-storage/index/maildir/maildir-uidlist.c).
//!
//! Version 3 (Dovecot ≥ 1.1):
//!
//! ```text
//! 3 V<uidvalidity> N<nextuid> G<mailbox guid, 32 hex> [other header fields]
//! <uid> [<key><value> ...] :<base file name>
//! ```
//!
//! Record extension keys are `A`–`Z` (`G` message GUID, `W` virtual size,
//! `S` physical size, `P` POP3 UIDL, `O` POP3 order); unknown ones are kept
//! verbatim when we rewrite the file. Version 1 (`1 <uidvalidity> <nextuid>`,
//! `<uid> <filename>`) is read too and upgraded to version 3 on write.
//!
//! Dovecot appends records to the file in place (under the lock) and
//! rewrites it via rename; we always rewrite via rename. A trailing line
//! without `\n` is a record still being appended and is ignored.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::SystemTime;

use rand::RngCore;

/// One `<uid> [ext] :<basename>` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub uid: u32,
    /// Extension fields as written (`W1234`, `GABCDEF…`), in file order.
    pub ext: Vec<String>,
    /// File name up to (not including) the `:` info part.
    pub basename: String,
}

impl Record {
    /// Value of extension field `key`.
    pub fn ext(&self, key: char) -> Option<&str> {
        self.ext.iter().find_map(|e| e.strip_prefix(key))
    }

    /// Sets (or with `None` removes) extension field `key`.
    pub fn set_ext(&mut self, key: char, value: Option<&str>) {
        self.ext.retain(|e| !e.starts_with(key));
        if let Some(v) = value {
            self.ext.push(format!("{key}{v}"));
        }
    }
}

/// A parsed `dovecot-uidlist`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uidlist {
    pub version: u32,
    pub uidvalidity: u32,
    pub next_uid: u32,
    /// Mailbox GUID (32 lowercase hex digits); generated when missing.
    pub guid: String,
    /// Header fields other than V, N and G, kept verbatim.
    pub hdr_ext: Vec<String>,
    /// Sorted by UID.
    pub records: Vec<Record>,
}

/// Identity of the file we read, to notice changes cheaply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub ino: u64,
    pub size: u64,
    pub mtime: SystemTime,
}

impl Stamp {
    pub fn of(meta: &fs::Metadata) -> Stamp {
        Stamp {
            ino: meta.ino(),
            size: meta.len(),
            mtime: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        }
    }
}

/// A fresh 128-bit GUID in hex.
pub fn new_guid() -> String {
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Uidlist {
    /// An empty version-3 uidlist.
    pub fn new(uidvalidity: u32) -> Uidlist {
        Uidlist {
            version: 3,
            uidvalidity,
            next_uid: 1,
            guid: new_guid(),
            hdr_ext: Vec::new(),
            records: Vec::new(),
        }
    }

    /// Reads `path`. `Ok(None)` if it doesn't exist or is broken (Dovecot
    /// then deletes and recreates it, with a new UIDVALIDITY).
    /// The stamp is the file's as read (its size is the bytes read only
    /// if no append raced the read).
    pub fn read(path: &Path) -> io::Result<Option<(Uidlist, Stamp)>> {
        use std::io::Read;
        let mut data = Vec::new();
        let stamp = match fs::File::open(path).and_then(|mut f| {
            f.read_to_end(&mut data)?;
            f.metadata()
        }) {
            // the bytes read: a file that grew meanwhile won't match
            Ok(m) => Stamp {
                size: data.len() as u64,
                ..Stamp::of(&m)
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        match Uidlist::parse(&data) {
            Ok(u) => Ok(Some((u, stamp))),
            Err(why) => {
                tracing::error!(path = %path.display(), why, "broken dovecot-uidlist, ignoring it");
                Ok(None)
            }
        }
    }

    /// Parses the file content.
    pub fn parse(data: &[u8]) -> Result<Uidlist, &'static str> {
        // only complete lines: a writer may be appending the last one
        let end = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let text = std::str::from_utf8(&data[..end]).map_err(|_| "not UTF-8")?;
        let mut lines = text.split_terminator('\n');
        let header = lines.next().ok_or("empty")?;
        let (version, rest) = header.split_once(' ').ok_or("no version")?;
        let version: u32 = version.parse().map_err(|_| "bad version")?;
        let mut u = Uidlist {
            version,
            uidvalidity: 0,
            next_uid: 0,
            guid: String::new(),
            hdr_ext: Vec::new(),
            records: Vec::new(),
        };
        match version {
            1 | 2 => {
                let mut it = rest.split_ascii_whitespace();
                u.uidvalidity = it.next().and_then(|s| s.parse().ok()).ok_or("bad header")?;
                u.next_uid = it.next().and_then(|s| s.parse().ok()).ok_or("bad header")?;
            }
            3 => {
                for field in rest.split(' ').filter(|f| !f.is_empty()) {
                    let (k, v) = field.split_at(1);
                    match k {
                        "V" => u.uidvalidity = v.parse().map_err(|_| "bad V")?,
                        "N" => u.next_uid = v.parse().map_err(|_| "bad N")?,
                        "G" => u.guid = v.to_ascii_lowercase(),
                        _ => u.hdr_ext.push(field.to_string()),
                    }
                }
            }
            _ => return Err("unsupported version"),
        }
        if u.uidvalidity == 0 || u.next_uid == 0 {
            return Err("zero uidvalidity or next uid");
        }
        let mut prev = 0u32;
        for line in lines {
            let (uid, rest) = line.split_once(' ').ok_or("bad record")?;
            let uid: u32 = uid.parse().map_err(|_| "bad uid")?;
            if uid == 0 || uid == u32::MAX {
                return Err("bad uid");
            }
            if uid <= prev {
                return Err("UIDs not ordered");
            }
            prev = uid;
            let (ext, name) = match version {
                3 => {
                    let mut ext = Vec::new();
                    let mut rest = rest.trim_start_matches(' ');
                    loop {
                        if let Some(name) = rest.strip_prefix(':') {
                            break (ext, name);
                        }
                        let (field, tail) = rest.split_once(' ').ok_or("bad ext")?;
                        if field.starts_with(|c: char| c.is_ascii_uppercase()) {
                            ext.push(field.to_string());
                        } // else: invalid field, dropped like Dovecot does
                        rest = tail.trim_start_matches(' ');
                    }
                }
                2 => (Vec::new(), rest.split_once(' ').ok_or("bad record")?.1),
                _ => (Vec::new(), rest),
            };
            if name.is_empty() || name.contains('/') {
                return Err("bad file name");
            }
            u.records.push(Record {
                uid,
                ext,
                basename: super::filename::basename(name).to_string(),
            });
        }
        u.next_uid = u.next_uid.max(prev.saturating_add(1));
        if u.guid.len() != 32 || !u.guid.bytes().all(|b| b.is_ascii_hexdigit()) {
            u.guid = new_guid();
        }
        Ok(u)
    }

    /// Version-3 file content.
    pub fn serialize(&self) -> Vec<u8> {
        use std::fmt::Write;
        // (sized once: a first look numbers a whole folder in one go)
        let names: usize = self.records.iter().map(|r| r.basename.len() + 14).sum();
        let mut s = String::with_capacity(names + 64);
        let _ = write!(
            s,
            "3 V{} N{} G{}",
            self.uidvalidity, self.next_uid, self.guid
        );
        for h in &self.hdr_ext {
            s.push(' ');
            s.push_str(h);
        }
        s.push('\n');
        for r in &self.records {
            let _ = write!(s, "{}", r.uid);
            for e in &r.ext {
                s.push(' ');
                s.push_str(e);
            }
            s.push_str(" :");
            s.push_str(&r.basename);
            s.push('\n');
        }
        s.into_bytes()
    }

    /// Index of the record for `uid`.
    pub fn find_uid(&self, uid: u32) -> Option<usize> {
        self.records.binary_search_by_key(&uid, |r| r.uid).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_v3_with_unknown_fields() {
        let text = b"3 V1700000000 N5 G9e4693381b9b026b6b2f000083ecc375 Xfoo\n\
            1 :1.M1P1.host,S=10,W=12\n\
            3 G0123 W99 Zunknown :3.M1P1.host\n\
            6 :6.M1P1.host:2,S\n\
            7 :partial";
        let u = Uidlist::parse(text).unwrap();
        assert_eq!(u.uidvalidity, 1700000000);
        assert_eq!(u.next_uid, 7, "N5 is below the highest UID");
        assert_eq!(u.hdr_ext, ["Xfoo"]);
        assert_eq!(u.records.len(), 3);
        assert_eq!(u.records[1].ext('W'), Some("99"));
        assert_eq!(u.records[1].ext('Z'), Some("unknown"));
        assert_eq!(u.records[2].basename, "6.M1P1.host");
        let out = String::from_utf8(u.serialize()).unwrap();
        assert_eq!(
            out,
            "3 V1700000000 N7 G9e4693381b9b026b6b2f000083ecc375 Xfoo\n\
             1 :1.M1P1.host,S=10,W=12\n\
             3 G0123 W99 Zunknown :3.M1P1.host\n\
             6 :6.M1P1.host\n"
        );
        assert_eq!(Uidlist::parse(out.as_bytes()).unwrap().records, u.records);
    }

    #[test]
    fn parse_v1() {
        let u = Uidlist::parse(b"1 1100000000 4\n1 a.host:2,S\n3 b.host\n").unwrap();
        assert_eq!((u.version, u.uidvalidity, u.next_uid), (1, 1100000000, 4));
        assert_eq!(u.records[0].basename, "a.host");
        assert_eq!(u.records[1].uid, 3);
        assert_eq!(u.guid.len(), 32);
    }

    #[test]
    fn broken() {
        for bad in [
            &b""[..],
            b"3 N1\n",
            b"9 V1 N1\n",
            b"3 V1 N2 G00\n2 :a\n1 :b\n",
            b"3 V1 N2\nx :a\n",
            b"3 V1 N2\n1 :a/b\n",
        ] {
            assert!(
                Uidlist::parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
