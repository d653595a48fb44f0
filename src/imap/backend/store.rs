//! STORE and UID STORE (RFC 3501 §6.4.6 and §6.4.8, RFC 9051 §6.4.6 and
//! §6.4.9): set, add or remove flags and keywords, answering with FETCH
//! FLAGS unless `.SILENT` (RFC 3501 §7.4.2); with CONDSTORE, the
//! `UNCHANGEDSINCE` modifier and `[MODIFIED]` (RFC 7162 §3.1.3).

use imap_codec::imap_types::command::StoreModifier;
use imap_codec::imap_types::flag::{Flag, StoreResponse, StoreType};
use imap_codec::imap_types::sequence::SequenceSet;

use super::registry::lock;
use super::sequence::compact_set;
use super::{split_flags, store_no, Backend};
use crate::imap::proto::response::{flag_list, tagged};
use crate::store::maildir::Flags;

impl Backend {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn store(
        &mut self,
        tag: &str,
        set: &SequenceSet,
        kind: &StoreType,
        response: &StoreResponse,
        flags: &[Flag],
        uid: bool,
        modifiers: &[StoreModifier],
        out: &mut Vec<u8>,
    ) -> String {
        let unchanged_since = modifiers
            .iter()
            .map(|StoreModifier::UnchangedSince(n)| *n)
            .min();
        let condstore = self.condstore;
        if self.bad_sequence_set(set, uid) {
            return tagged(
                tag,
                "BAD",
                "Error in IMAP command STORE: Invalid messageset.",
            );
        }
        let targets = self.resolve(set, uid);
        let Some(sel) = &mut self.selected else {
            return tagged(tag, "BAD", "No mailbox selected.");
        };
        let shared = sel.shared.clone();
        let mut sh = lock(&shared);
        // Our own flag changes are answered by this command: don't report
        // them again as news, unless others' changes are pending too.
        let was_current = sh.modseq() == sel.seen_modseq;
        if sel.read_only {
            return tagged(tag, "NO", "[READ-ONLY] Mailbox is read-only.");
        }
        let (sys, kws) = split_flags(flags);
        // RFC 7162 §3.1.3: messages changed since UNCHANGEDSINCE are left
        // alone and named in [MODIFIED] (sequence numbers, or UIDs for UID
        // STORE).
        let mut modified: Vec<u32> = Vec::new();
        for (seq, u) in targets {
            let Some(info) = sh.mailbox.get(u).cloned() else {
                continue;
            };
            if unchanged_since.is_some_and(|n| info.modseq > n) {
                modified.push(if uid { u } else { seq });
                continue;
            }
            let (new_flags, new_kw): (Flags, Vec<String>) = match kind {
                StoreType::Replace => (sys, kws.clone()),
                StoreType::Add => {
                    let mut k = info.keywords().to_vec();
                    for x in &kws {
                        if !k.iter().any(|y| y.eq_ignore_ascii_case(x)) {
                            k.push(x.clone());
                        }
                    }
                    (info.flags | sys, k)
                }
                StoreType::Remove => (
                    info.flags.difference(sys),
                    info.keywords()
                        .iter()
                        .filter(|k| !kws.iter().any(|x| x.eq_ignore_ascii_case(k)))
                        .cloned()
                        .collect(),
                ),
            };
            let kw: Vec<&str> = new_kw.iter().map(String::as_str).collect();
            match sh.set_flags(u, new_flags, &kw) {
                Ok(true) => {
                    sel.own.insert(u, sh.modseq_of(u));
                }
                Ok(false) => {}
                Err(e) => return store_no(tag, &e),
            }
            let modseq = sh.modseq_of(u);
            let uid_part = if uid {
                format!("UID {u} ")
            } else {
                String::new()
            };
            if *response != StoreResponse::Answer
                && unchanged_since.is_some()
                && modseq != info.modseq
            {
                // RFC 7162 §3.1.3: even .SILENT reports the new MODSEQ of
                // each message a conditional STORE changed.
                out.extend_from_slice(
                    format!("* {seq} FETCH ({uid_part}MODSEQ ({modseq}))\r\n").as_bytes(),
                );
            }
            if *response == StoreResponse::Answer {
                let m = sh.mailbox.get(u);
                let (f, k) = m
                    .map(|m| (m.flags, m.keywords().to_vec()))
                    .unwrap_or((new_flags, new_kw));
                sel.announce_keywords(&k, &sh.mailbox, out);
                let fl = flag_list(f, &k, sel.is_recent(u) && !self.rev2);
                // RFC 7162 §3.1.4: with CONDSTORE, the FETCH carries MODSEQ.
                let ms = if condstore {
                    format!(" MODSEQ ({modseq})")
                } else {
                    String::new()
                };
                out.extend_from_slice(
                    format!("* {seq} FETCH ({uid_part}FLAGS {fl}{ms})\r\n").as_bytes(),
                );
            }
        }
        if was_current {
            sel.seen_modseq = sh.modseq();
        }
        drop(sh);
        self.updates(uid, out);
        if !modified.is_empty() {
            modified.sort_unstable();
            let set = compact_set(&modified);
            return tagged(
                tag,
                "OK",
                &format!("[MODIFIED {set}] Conditional STORE failed."),
            );
        }
        tagged(tag, "OK", "Store completed.")
    }
}
