//! COPY and MOVE, and their UID forms (RFC 3501 §6.4.7, RFC 9051 §6.4.7
//! and §6.4.8, RFC 6851), answering with COPYUID (RFC 4315 §3).

use imap_codec::imap_types::mailbox::Mailbox as MailboxName;
use imap_codec::imap_types::sequence::SequenceSet;

use super::registry::lock;
use super::{store_no, Backend};
use crate::imap::proto::response::tagged;
use crate::store::maildir::Error as StoreError;

impl Backend {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn copy(
        &mut self,
        tag: &str,
        set: &SequenceSet,
        mailbox: &MailboxName,
        uid: bool,
        moving: bool,
        utf8: bool,
        out: &mut Vec<u8>,
    ) -> String {
        if self.bad_sequence_set(set, uid) {
            let name = if moving { "MOVE" } else { "COPY" };
            return tagged(
                tag,
                "BAD",
                &format!("Error in IMAP command {name}: Invalid messageset."),
            );
        }
        let targets = self.resolve(set, uid);
        let name = self.name_of(mailbox, utf8);
        let verb = if moving { "Move" } else { "Copy" };
        let dest = match self.open(&name) {
            Ok(d) => d,
            Err(StoreError::NotFound(_)) => {
                return tagged(tag, "NO", "[TRYCREATE] Mailbox doesn't exist.")
            }
            Err(e) => return store_no(tag, &e),
        };
        let Some(sel) = &mut self.selected else {
            return tagged(tag, "BAD", "No mailbox selected.");
        };
        let shared = sel.shared.clone();
        let mut sh = lock(&shared);
        if moving && sel.read_only {
            return tagged(tag, "NO", "[READ-ONLY] Mailbox is read-only.");
        }
        let uids: Vec<u32> = targets.iter().map(|(_, u)| *u).collect();
        // Sequence numbers name messages the client was told about: if
        // another session expunged some, copy none and say so (RFC 2180
        // §4.4.1, RFC 5530; Dovecot's answer). UID sets may name UIDs that
        // don't exist, which are skipped.
        if !uid && uids.iter().any(|u| sh.mailbox.get(*u).is_none()) {
            return tagged(
                tag,
                "NO",
                "[EXPUNGEISSUED] Some of the requested messages no longer exist.",
            );
        }
        let copied = if moving {
            sh.mailbox.move_to(&uids, &dest)
        } else {
            sh.mailbox.copy_to(&uids, &dest)
        };
        let pairs = match copied {
            Ok(p) => p,
            Err(e) => return store_no(tag, &e),
        };
        if pairs.is_empty() {
            return tagged(tag, "OK", &format!("No messages found. {verb} completed."));
        }
        let src: Vec<String> = pairs.iter().map(|(s, _)| s.to_string()).collect();
        let dst: Vec<String> = pairs.iter().map(|(_, d)| d.to_string()).collect();
        let code = format!(
            "COPYUID {} {} {}",
            dest.uidvalidity(),
            src.join(","),
            dst.join(",")
        );
        if moving {
            // RFC 6851: the OK with COPYUID comes untagged, then EXPUNGEs.
            out.extend_from_slice(format!("* OK [{code}] Moved UIDs.\r\n").as_bytes());
            let moved: Vec<u32> = pairs.iter().map(|(s, _)| *s).collect();
            match sh.expunge(&moved) {
                Ok(g) => sel.pending_expunge.extend(g),
                Err(e) => return store_no(tag, &e),
            }
            drop(sh);
            self.touched(&name);
            self.updates(true, out);
            return tagged(tag, "OK", "Move completed.");
        }
        drop(sh);
        self.touched(&name);
        self.updates(uid, out);
        tagged(tag, "OK", &format!("[{code}] Copy completed."))
    }
}
