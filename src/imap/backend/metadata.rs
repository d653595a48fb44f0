//! GETMETADATA and SETMETADATA (RFC 5464): server entries (mailbox `""`)
//! and mailbox entries of the logged-in user, kept by
//! [`crate::store::maildir::metadata`]. `/private` and `/shared` are both
//! the user's own: pigeonpost shares no mailboxes, so nobody else can see
//! either.

use imap_codec::imap_types::core::NString8;
use imap_codec::imap_types::extensions::metadata::{Depth, Entry, EntryValue, GetMetadataOption};
use imap_codec::imap_types::mailbox::Mailbox as MailboxName;

use super::{store_no, Backend};
use crate::imap::proto::response::{quote, tagged};
use crate::store::maildir::metadata::{self, SetError, MAX_ENTRIES, MAX_VALUE};

/// A value as RFC 5464 §5 `value`: quoted when it can be, a literal for
/// 8-bit or CR/LF, a literal8 (`~{n}`, RFC 3516) when it holds NUL.
fn value(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() + 8);
    if v.contains(&0) {
        out.extend_from_slice(format!("~{{{}}}\r\n", v.len()).as_bytes());
        out.extend_from_slice(v);
    } else if v.iter().any(|&b| b == b'\r' || b == b'\n' || b >= 0x80) || v.len() > 1024 {
        out.extend_from_slice(format!("{{{}}}\r\n", v.len()).as_bytes());
        out.extend_from_slice(v);
    } else {
        out.extend_from_slice(quote(&String::from_utf8_lossy(v)).as_bytes());
    }
    out
}

fn entry_name(e: &Entry) -> String {
    String::from_utf8_lossy(e.as_ref()).into_owned()
}

impl Backend {
    /// The stored name of a METADATA mailbox argument (`""` = the server),
    /// or the NO for a mailbox that does not exist.
    fn metadata_mailbox(
        &self,
        tag: &str,
        mailbox: &MailboxName,
        utf8: bool,
    ) -> Result<String, String> {
        let name = match mailbox {
            MailboxName::Other(o) if o.as_ref().is_empty() => return Ok(String::new()),
            m => self.name_of(m, utf8),
        };
        if name != "INBOX" {
            match self.root.folder_path(&name) {
                Ok(p) if p.is_dir() => {}
                Ok(_) => return Err(tagged(tag, "NO", "[NONEXISTENT] Mailbox doesn't exist.")),
                Err(e) => return Err(store_no(tag, &e)),
            }
        }
        Ok(name)
    }

    /// GETMETADATA (RFC 5464 §4.2): each named entry with its value (NIL
    /// when it does not exist and no DEPTH was asked for, as Dovecot
    /// answers), plus the entries below it down to DEPTH; values over MAXSIZE are left out and the largest
    /// left out is reported as `[METADATA LONGENTRIES n]`.
    pub(super) fn get_metadata(
        &self,
        tag: &str,
        options: &[GetMetadataOption],
        mailbox: &MailboxName,
        entries: &[Entry],
        utf8: bool,
        out: &mut Vec<u8>,
    ) -> String {
        let name = match self.metadata_mailbox(tag, mailbox, utf8) {
            Ok(n) => n,
            Err(no) => return no,
        };
        let (mut max_size, mut depth) = (None, Depth::Null);
        for o in options {
            match o {
                GetMetadataOption::MaxSize(n) => max_size = Some(*n as usize),
                GetMetadataOption::Depth(d) => depth = d.clone(),
            }
        }
        for e in entries {
            if !metadata::valid_entry(&entry_name(e)) {
                return tagged(tag, "BAD", "Invalid entry name.");
            }
        }
        let stored = match self.root.metadata() {
            Ok(s) => s,
            Err(e) => return store_no(tag, &e),
        };
        let mut items: Vec<(String, Option<&[u8]>)> = Vec::new();
        let mut longest = 0usize;
        for e in entries {
            let wanted = entry_name(e).to_ascii_lowercase();
            let prefix = format!("{wanted}/");
            let mut found_self = false;
            for ((m, entry), v) in &stored {
                if *m != name {
                    continue;
                }
                let below = entry.strip_prefix(&prefix);
                let take = *entry == wanted
                    || match depth {
                        Depth::Null => false,
                        Depth::One => below.is_some_and(|b| !b.contains('/')),
                        Depth::Infinity => below.is_some(),
                    };
                if !take {
                    continue;
                }
                found_self |= *entry == wanted;
                if max_size.is_some_and(|max| v.len() > max) {
                    longest = longest.max(v.len());
                    continue;
                }
                if !items.iter().any(|(n, _)| n == entry) {
                    items.push((entry.clone(), Some(v)));
                }
            }
            // NIL only for an entry asked for alone (DEPTH 0), as Dovecot.
            if !found_self && depth == Depth::Null && !items.iter().any(|(n, _)| *n == wanted) {
                items.push((wanted, None));
            }
        }
        if items.is_empty() {
            return tagged(tag, "OK", "Getmetadata completed.");
        }
        let mut line =
            format!("* METADATA {} (", quote(&Self::display_name(&name, utf8))).into_bytes();
        for (i, (entry, v)) in items.iter().enumerate() {
            if i > 0 {
                line.push(b' ');
            }
            line.extend_from_slice(entry.as_bytes());
            line.push(b' ');
            match v {
                Some(v) => line.extend_from_slice(&value(v)),
                None => line.extend_from_slice(b"NIL"),
            }
        }
        line.extend_from_slice(b")\r\n");
        out.extend_from_slice(&line);
        if longest > 0 {
            tagged(
                tag,
                "OK",
                &format!("[METADATA LONGENTRIES {longest}] Getmetadata completed."),
            )
        } else {
            tagged(tag, "OK", "Getmetadata completed.")
        }
    }

    /// SETMETADATA (RFC 5464 §4.3): all entries or none; NIL removes one.
    pub(super) fn set_metadata(
        &self,
        tag: &str,
        mailbox: &MailboxName,
        entry_values: &[EntryValue],
        utf8: bool,
    ) -> String {
        let name = match self.metadata_mailbox(tag, mailbox, utf8) {
            Ok(n) => n,
            Err(no) => return no,
        };
        let mut changes = Vec::with_capacity(entry_values.len());
        for ev in entry_values {
            let entry = entry_name(&ev.entry);
            if !metadata::valid_entry(&entry) {
                return tagged(tag, "BAD", "Invalid entry name.");
            }
            let value = match &ev.value {
                NString8::NString(n) => n.0.as_ref().map(|v| v.as_ref().to_vec()),
                NString8::Literal8(l) => Some(l.data.to_vec()),
            };
            changes.push((entry, value));
        }
        match self.root.set_metadata(&name, &changes) {
            Ok(()) => tagged(tag, "OK", "Setmetadata completed."),
            Err(SetError::TooLarge) => tagged(
                tag,
                "NO",
                &format!("[METADATA MAXSIZE {MAX_VALUE}] Metadata value too large."),
            ),
            Err(SetError::TooMany) => tagged(
                tag,
                "NO",
                &format!("[METADATA TOOMANY] More than {MAX_ENTRIES} metadata entries."),
            ),
            Err(SetError::Store(e)) => store_no(tag, &e),
        }
    }
}
