//! CONDSTORE and QRESYNC (RFC 7162) pieces shared by the commands: which
//! commands enable CONDSTORE implicitly (§3.1), and the UID sets of
//! `VANISHED (EARLIER)` (§3.2.5, §3.2.6). The mod-sequences themselves are
//! kept by the store (`store/maildir/modseq.rs`); SELECT, FETCH, STORE,
//! SEARCH, STATUS and the untagged updates use them in their own files.

use imap_codec::imap_types::command::{CommandBody, FetchModifier};
use imap_codec::imap_types::fetch::{MacroOrMessageDataItemNames, MessageDataItemName};
use imap_codec::imap_types::search::SearchKey;
use imap_codec::imap_types::status::StatusDataItemName;

use super::sequence::{compact_set, in_intervals, missing_runs, runs_set};
use crate::store::maildir::Mailbox;

/// RFC 7162 §3.1: the CONDSTORE-enabling commands, besides ENABLE:
/// SELECT/EXAMINE with CONDSTORE (or QRESYNC), STATUS HIGHESTMODSEQ, FETCH
/// MODSEQ or CHANGEDSINCE, SEARCH MODSEQ, STORE UNCHANGEDSINCE.
pub(super) fn enables_condstore(cmd: &CommandBody<'_>) -> bool {
    match cmd {
        CommandBody::Select { parameters, .. } | CommandBody::Examine { parameters, .. } => {
            !parameters.is_empty()
        }
        CommandBody::Status { item_names, .. } => item_names
            .iter()
            .any(|i| matches!(i, StatusDataItemName::HighestModSeq)),
        CommandBody::Fetch {
            macro_or_item_names,
            modifiers,
            ..
        } => {
            modifiers
                .iter()
                .any(|m| matches!(m, FetchModifier::ChangedSince(_)))
                || matches!(macro_or_item_names, MacroOrMessageDataItemNames::MessageDataItemNames(v)
                    if v.iter().any(|i| matches!(i, MessageDataItemName::ModSeq)))
        }
        CommandBody::Store { modifiers, .. } => !modifiers.is_empty(),
        CommandBody::Search { criteria, .. } => uses_modseq(criteria.as_ref()),
        // RFC 7162 §3.1: SORT and THREAD take search criteria too.
        CommandBody::Sort {
            search_criteria, ..
        }
        | CommandBody::Thread {
            search_criteria, ..
        } => uses_modseq(search_criteria.as_ref()),
        _ => false,
    }
}

/// Whether a search uses the MODSEQ criterion (RFC 7162 §3.1.5), which
/// makes the answer carry `(MODSEQ n)` (§3.1.6).
pub(super) fn uses_modseq(keys: &[SearchKey<'_>]) -> bool {
    keys.iter().any(|k| match k {
        SearchKey::ModSequence { .. } => true,
        SearchKey::And(v) => uses_modseq(v.as_ref()),
        SearchKey::Not(k) => uses_modseq(std::slice::from_ref(k.as_ref())),
        SearchKey::Or(a, b) => uses_modseq(&[(**a).clone(), (**b).clone()]),
        _ => false,
    })
}

/// The UIDs within `within` (sorted, merged UID intervals) expunged since
/// mod-sequence `since`, as a sequence set ("" for none): for
/// `VANISHED (EARLIER)` after `SELECT … (QRESYNC …)` (RFC 7162 §3.2.5.1) and
/// `UID FETCH … (CHANGEDSINCE n VANISHED)` (§3.2.6). When the expunges
/// aren't remembered that far back (the index was rebuilt, or more than
/// `VANISHED_MAX` expunges since), every UID in `within` below UIDNEXT that
/// isn't in the mailbox is reported instead, as RFC 7162 §5.1 allows for
/// servers that keep no expunge modseqs (a client ignores UIDs it doesn't
/// have).
pub(super) fn vanished_set(mb: &Mailbox, since: u64, within: &[(u32, u32)]) -> String {
    match mb.vanished_since(since) {
        Some(uids) => {
            let v: Vec<u32> = uids
                .into_iter()
                .filter(|u| in_intervals(within, *u))
                .collect();
            compact_set(&v)
        }
        None => {
            let top = mb.next_uid().saturating_sub(1);
            let clipped: Vec<(u32, u32)> = within
                .iter()
                .filter(|&&(lo, _)| lo <= top)
                .map(|&(lo, hi)| (lo.max(1), hi.min(top)))
                .collect();
            let present: Vec<u32> = mb.messages().iter().map(|m| m.uid).collect();
            runs_set(&missing_runs(&clipped, &present))
        }
    }
}
