//! APPEND (RFC 3501 §6.3.11, RFC 9051 §6.3.12), answering with APPENDUID
//! (RFC 4315 §3); the message may come as a literal8 (RFC 3516 §4.4).

use std::time::UNIX_EPOCH;

use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::extensions::binary::LiteralOrLiteral8;
use imap_codec::imap_types::flag::Flag;
use imap_codec::imap_types::mailbox::Mailbox as MailboxName;

use super::{split_flags, store_no, Backend};
use crate::imap::proto::multiappend::MultiAppend;
use crate::imap::proto::response::tagged;
use crate::store::maildir::{Error as StoreError, Flags};

impl Backend {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn append(
        &mut self,
        tag: &str,
        mailbox: &MailboxName,
        flags: &[Flag],
        date: Option<DateTime>,
        message: &LiteralOrLiteral8,
        utf8: bool,
        out: &mut Vec<u8>,
    ) -> String {
        let name = self.name_of(mailbox, utf8);
        let (sys, kw) = split_flags(flags);
        let kw: Vec<&str> = kw.iter().map(String::as_str).collect();
        let when = date.map(|d| {
            let ts = d.as_ref().timestamp().max(0) as u64;
            UNIX_EPOCH + std::time::Duration::from_secs(ts)
        });
        let data = message_bytes(message);
        match self.open(&name) {
            Ok(mb) => match mb.append(&data, sys, &kw, when) {
                Ok(uid) => {
                    self.touched(&name);
                    self.updates(true, out);
                    tagged(
                        tag,
                        "OK",
                        &format!("[APPENDUID {} {uid}] Append completed.", mb.uidvalidity()),
                    )
                }
                Err(e) => store_no(tag, &e),
            },
            Err(StoreError::NotFound(_)) => tagged(tag, "NO", "[TRYCREATE] Mailbox doesn't exist."),
            Err(e) => store_no(tag, &e),
        }
    }
}

impl Backend {
    /// MULTIAPPEND (RFC 3502): every message or none. All are written and
    /// fsynced first, then given UIDs under one uidlist lock.
    pub fn multi_append(&mut self, tag: &str, m: &MultiAppend, utf8: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let Ok(mailbox) = MailboxName::try_from(m.mailbox.clone()) else {
            out.extend_from_slice(tagged(tag, "BAD", "Invalid mailbox name.").as_bytes());
            return out;
        };
        let name = self.name_of(&mailbox, utf8);
        let mut parsed = Vec::with_capacity(m.messages.len());
        for msg in &m.messages {
            let mut sys = Flags::empty();
            let mut kw: Vec<&str> = Vec::new();
            for f in &msg.flags {
                match f.to_ascii_lowercase().as_str() {
                    "\\seen" => sys.insert(Flags::SEEN),
                    "\\answered" => sys.insert(Flags::ANSWERED),
                    "\\flagged" => sys.insert(Flags::FLAGGED),
                    "\\deleted" => sys.insert(Flags::DELETED),
                    "\\draft" => sys.insert(Flags::DRAFT),
                    _ if f.starts_with('\\') => {
                        out.extend_from_slice(
                            tagged(tag, "BAD", &format!("Invalid system flag {f}.")).as_bytes(),
                        );
                        return out;
                    }
                    _ => kw.push(f),
                }
            }
            let when = match &msg.date {
                None => None,
                Some(d) => match chrono::DateTime::parse_from_str(d.trim(), "%d-%b-%Y %H:%M:%S %z")
                {
                    Ok(t) => Some(
                        UNIX_EPOCH + std::time::Duration::from_secs(t.timestamp().max(0) as u64),
                    ),
                    Err(_) => {
                        out.extend_from_slice(tagged(tag, "BAD", "Invalid date-time.").as_bytes());
                        return out;
                    }
                },
            };
            parsed.push((msg.data.as_slice(), sys, kw, when));
        }
        let resp = match self.open(&name) {
            Ok(mb) => match mb.append_all(&parsed) {
                Ok(uids) => {
                    self.touched(&name);
                    self.updates(true, &mut out);
                    let set = uid_set(&uids);
                    tagged(
                        tag,
                        "OK",
                        &format!("[APPENDUID {} {set}] Append completed.", mb.uidvalidity()),
                    )
                }
                Err(e) => store_no(tag, &e),
            },
            Err(StoreError::NotFound(_)) => tagged(tag, "NO", "[TRYCREATE] Mailbox doesn't exist."),
            Err(e) => store_no(tag, &e),
        };
        out.extend_from_slice(resp.as_bytes());
        out
    }
}

/// `5:7,9` for UIDs 5, 6, 7, 9 (RFC 4315 uid-set).
fn uid_set(uids: &[u32]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end + 1 {
            i += 1;
            end = uids[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}:{end}")
        });
        i += 1;
    }
    parts.join(",")
}

/// The APPEND message bytes.
fn message_bytes(m: &LiteralOrLiteral8) -> Vec<u8> {
    use LiteralOrLiteral8 as L;
    match m {
        L::Literal(l) => l.as_ref().to_vec(),
        L::Literal8(l) => l.data.as_ref().to_vec(),
    }
}
