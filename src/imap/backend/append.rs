//! APPEND (RFC 3501 §6.3.11, RFC 9051 §6.3.12), answering with APPENDUID
//! (RFC 4315 §3); the message may come as a literal8 (RFC 3516 §4.4), and
//! with MULTIAPPEND (RFC 3502) several may, each of them built by CATENATE
//! (RFC 4469, see [`super::catenate`]).

use std::time::{SystemTime, UNIX_EPOCH};

use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::extensions::binary::LiteralOrLiteral8;
use imap_codec::imap_types::flag::Flag;
use imap_codec::imap_types::mailbox::Mailbox as MailboxName;

use super::catenate::{url_resp_text, CatError};
use super::{split_flags, store_no, Backend};
use crate::imap::proto::multiappend::{AppendData, MultiAppend};
use crate::imap::proto::response::tagged;
use crate::store::maildir::{Error as StoreError, Flags, Mailbox};

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
    /// MULTIAPPEND (RFC 3502) and CATENATE (RFC 4469): every message or
    /// none. The catenated messages are built first (any bad URL fails the
    /// whole command, RFC 4469 §3), then all are written and fsynced, then
    /// given UIDs under one uidlist lock.
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
            parsed.push((sys, kw, when));
        }
        let resp = match self.open(&name) {
            Ok(mb) => match self.build(tag, m) {
                Err(no) => no,
                Ok(built) => {
                    let all: Vec<_> = built
                        .iter()
                        .zip(parsed)
                        .map(|(data, (sys, kw, when))| (data.as_slice(), sys, kw, when))
                        .collect();
                    self.append_built(tag, &name, &mb, &all, &mut out)
                }
            },
            Err(StoreError::NotFound(_)) => tagged(tag, "NO", "[TRYCREATE] Mailbox doesn't exist."),
            Err(e) => store_no(tag, &e),
        };
        out.extend_from_slice(resp.as_bytes());
        out
    }

    /// Each message's bytes, CATENATE lists resolved; or the NO line.
    fn build(&self, tag: &str, m: &MultiAppend) -> Result<Vec<Vec<u8>>, String> {
        let mut built = Vec::with_capacity(m.messages.len());
        for msg in &m.messages {
            built.push(match &msg.data {
                AppendData::Literal(d) => d.clone(),
                AppendData::Catenate(parts) => match self.catenated(parts) {
                    Ok(d) => d,
                    // RFC 4469 §5: the URL as sent (erratum 4046: bare).
                    Err(CatError::BadUrl(url, why)) => {
                        let url = url_resp_text(&url);
                        return Err(tagged(tag, "NO", &format!("[BADURL {url}] {why}.")));
                    }
                    Err(CatError::TooBig) => {
                        return Err(tagged(
                            tag,
                            "NO",
                            "[TOOBIG] Composed message grows too big.",
                        ))
                    }
                    Err(CatError::Store(e)) => return Err(store_no(tag, &e)),
                },
            });
        }
        Ok(built)
    }

    /// Stores the built messages, all or none: the tagged line.
    #[allow(clippy::type_complexity)]
    fn append_built(
        &mut self,
        tag: &str,
        name: &str,
        mb: &Mailbox,
        messages: &[(&[u8], Flags, Vec<&str>, Option<SystemTime>)],
        out: &mut Vec<u8>,
    ) -> String {
        match mb.append_all(messages) {
            Ok(uids) => {
                self.touched(name);
                self.updates(true, out);
                let set = uid_set(&uids);
                tagged(
                    tag,
                    "OK",
                    &format!("[APPENDUID {} {set}] Append completed.", mb.uidvalidity()),
                )
            }
            Err(e) => store_no(tag, &e),
        }
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
