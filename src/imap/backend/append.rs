//! APPEND (RFC 3501 §6.3.11, RFC 9051 §6.3.12), answering with APPENDUID
//! (RFC 4315 §3); the message may come as a literal8 (RFC 3516 §4.4).

use std::time::UNIX_EPOCH;

use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::extensions::binary::LiteralOrLiteral8;
use imap_codec::imap_types::flag::Flag;
use imap_codec::imap_types::mailbox::Mailbox as MailboxName;

use super::{split_flags, store_no, Backend};
use crate::imap::proto::response::tagged;
use crate::store::maildir::Error as StoreError;

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

/// The APPEND message bytes.
fn message_bytes(m: &LiteralOrLiteral8) -> Vec<u8> {
    use LiteralOrLiteral8 as L;
    match m {
        L::Literal(l) => l.as_ref().to_vec(),
        L::Literal8(l) => l.data.as_ref().to_vec(),
    }
}
