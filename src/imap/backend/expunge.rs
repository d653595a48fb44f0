//! EXPUNGE (RFC 3501 §6.4.3, RFC 9051 §6.4.3) and UID EXPUNGE
//! (RFC 4315 §2.1, RFC 9051 §6.4.9): remove the `\Deleted` messages, all
//! or those of a UID set, answering with EXPUNGE responses (RFC 3501
//! §7.4.1).

use std::collections::HashSet;

use imap_codec::imap_types::sequence::SequenceSet;

use super::registry::lock;
use super::{store_no, Backend};
use crate::imap::proto::response::tagged;
use crate::store::maildir::Flags;

impl Backend {
    pub(super) fn expunge(
        &mut self,
        tag: &str,
        only: Option<&SequenceSet>,
        out: &mut Vec<u8>,
    ) -> String {
        let targets: Option<HashSet<u32>> = only.map(|set| {
            self.resolve(set, true)
                .into_iter()
                .map(|(_, u)| u)
                .collect()
        });
        let Some(sel) = &mut self.selected else {
            return tagged(tag, "BAD", "No mailbox selected.");
        };
        let shared = sel.shared.clone();
        let mut sh = lock(&shared);
        if sel.read_only {
            return tagged(tag, "NO", "[READ-ONLY] Mailbox is read-only.");
        }
        let deleted: Vec<u32> = sh
            .mailbox
            .messages()
            .iter()
            .filter(|m| m.flags.contains(Flags::DELETED))
            .filter(|m| targets.as_ref().is_none_or(|t| t.contains(&m.uid)))
            .map(|m| m.uid)
            .collect();
        let gone = match sh.expunge(&deleted) {
            Ok(g) => g,
            Err(e) => return store_no(tag, &e),
        };
        sel.pending_expunge.extend(gone);
        let highest = sh.modseq();
        drop(sh);
        self.updates(true, out);
        if self.qresync {
            // RFC 7162 §3.2.7 and §3.2.9: with QRESYNC the tagged OK carries
            // the HIGHESTMODSEQ after the expunge.
            return tagged(
                tag,
                "OK",
                &format!("[HIGHESTMODSEQ {highest}] Expunge completed."),
            );
        }
        tagged(tag, "OK", "Expunge completed.")
    }
}
