//! CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267 §4): a SEARCH or SORT with
//! `RETURN (UPDATE)` is kept, and whenever the selected mailbox changes
//! the session tells the client how its result changed, with `ESEARCH
//! (TAG …) ADDTO (…)` and `REMOVEFROM (…)` (§4.3.3, §4.3.4), until
//! CANCELUPDATE (§4.3.5) or the mailbox is left (the kept searches live
//! in [`Selected`], which goes with it).
//!
//! Each kept search holds its result as UIDs in the requested order; after
//! a change it is run again and the new result compared with the old one
//! (RFC 5267 Appendix B's simplest strategy). [`MAX_LIVE`] bounds the cost.

use std::collections::{HashMap, HashSet};

use imap_codec::imap_types::extensions::sort::SortCriterion;

use super::registry::Shared;
use super::search::matching;
use super::sequence::compact_set;
use super::sort::sort_msgs;
use super::{Backend, Selected};
use crate::imap::proto::response::{quote, tagged};
use crate::imap::proto::rev2::SearchReturn;
use crate::imap::search::Query;
use crate::imap::sort;

/// Kept searches per session: beyond this, `NO [NOUPDATE "tag"]`
/// (RFC 5267 §4.3.1; §6 on bounding what contexts cost).
pub const MAX_LIVE: usize = 16;

/// One `RETURN (UPDATE)` search.
pub(super) struct Live {
    /// The searching command's tag: the ESEARCH correlator.
    tag: String,
    /// UID SEARCH / UID SORT: updates carry UIDs, else sequence numbers
    /// (RFC 5267 §4.3.2).
    uid: bool,
    /// With message numbers pinned (RFC 5267 §4.3).
    query: Query,
    /// SORT's criteria; `None` for SEARCH (mailbox order).
    sort: Option<Vec<SortCriterion>>,
    /// The result the client has, as UIDs in the requested order.
    results: Vec<u32>,
}

/// A change to a result list: (context position, members), in the order
/// the client applies them.
pub(super) type Pairs = Vec<(u32, Vec<u32>)>;

/// The REMOVEFROM and ADDTO pairs that turn `old` into `new` (both in the
/// requested order; the REMOVEFROM pairs apply first).
///
/// SEARCH (`sorted` false): context position 0 and the members in mailbox
/// order, which RFC 5267 §4.3.3 and §4.3.4 allow for SEARCH and recommend
/// for the shortest sets. SORT: the members of each pair are consecutive in
/// the list, at positions counted in sort order as the client's list
/// stands when it applies that pair (§4.3.3: inserted so the first one
/// occupies the position; §4.3.4: removed starting at it).
pub(super) fn diff(old: &[u32], new: &[u32], sorted: bool) -> (Pairs, Pairs) {
    let new_set: HashSet<u32> = new.iter().copied().collect();
    let old_set: HashSet<u32> = old.iter().copied().collect();
    if !sorted {
        let gone: Vec<u32> = old
            .iter()
            .copied()
            .filter(|u| !new_set.contains(u))
            .collect();
        let came: Vec<u32> = new
            .iter()
            .copied()
            .filter(|u| !old_set.contains(u))
            .collect();
        let pair = |v: Vec<u32>| if v.is_empty() { vec![] } else { vec![(0, v)] };
        return (pair(gone), pair(came));
    }
    // What stays must keep its relative order; sort keys don't change, so
    // this always holds, but if it didn't the whole list is sent again.
    let kept: Vec<u32> = old
        .iter()
        .copied()
        .filter(|u| new_set.contains(u))
        .collect();
    let kept_in_new: Vec<u32> = new
        .iter()
        .copied()
        .filter(|u| old_set.contains(u))
        .collect();
    let reset = kept != kept_in_new;
    let stays = |u: &u32| !reset && new_set.contains(u);
    let mut removals: Pairs = Vec::new();
    let mut removed = 0u32;
    let mut run_at = None;
    for (i, u) in old.iter().enumerate() {
        if stays(u) {
            run_at = None;
            continue;
        }
        match (run_at, removals.last_mut()) {
            (Some(_), Some((_, run))) => run.push(*u),
            _ => {
                // Earlier runs are gone: this one starts `removed` higher.
                let pos = i as u32 - removed + 1;
                removals.push((pos, vec![*u]));
                run_at = Some(pos);
            }
        }
        removed += 1;
    }
    let base: HashSet<u32> = if reset {
        HashSet::new()
    } else {
        kept.into_iter().collect()
    };
    let mut additions: Pairs = Vec::new();
    let mut in_run = false;
    for (j, u) in new.iter().enumerate() {
        if base.contains(u) {
            in_run = false;
            continue;
        }
        // The list before position j+1 is new[..j] by now.
        match additions.last_mut() {
            Some((_, run)) if in_run => run.push(*u),
            _ => additions.push((j as u32 + 1, vec![*u])),
        }
        in_run = true;
    }
    (removals, additions)
}

/// One `* ESEARCH (TAG …) [UID] REMOVEFROM (…) ADDTO (…)` line, numbers as
/// the client knows them: UIDs, or sequence numbers in `view`. Empty when
/// there is nothing to say.
fn esearch_update(
    live: &Live,
    view: &[u32],
    removals: &[(u32, Vec<u32>)],
    additions: &[(u32, Vec<u32>)],
) -> String {
    if removals.is_empty() && additions.is_empty() {
        return String::new();
    }
    let seqs: HashMap<u32, u32> = if live.uid {
        HashMap::new()
    } else {
        view.iter()
            .enumerate()
            .map(|(i, &u)| (u, i as u32 + 1))
            .collect()
    };
    let numbers = |uids: &[u32]| -> Vec<u32> {
        if live.uid {
            uids.to_vec()
        } else {
            uids.iter().filter_map(|u| seqs.get(u).copied()).collect()
        }
    };
    let mut s = format!("* ESEARCH (TAG {})", quote(&live.tag));
    if live.uid {
        s.push_str(" UID");
    }
    for (name, pairs) in [("REMOVEFROM", removals), ("ADDTO", additions)] {
        if pairs.is_empty() {
            continue;
        }
        let items: Vec<String> = pairs
            .iter()
            .map(|(pos, uids)| format!("{pos} {}", compact_set(&numbers(uids))))
            .collect();
        s.push_str(&format!(" {name} ({})", items.join(" ")));
    }
    s.push_str("\r\n");
    s
}

/// The search's result now, as UIDs in the requested order.
fn evaluate(
    sel: &Selected,
    sh: &mut Shared,
    query: &Query,
    crit: Option<&[SortCriterion]>,
) -> Vec<u32> {
    let (hits, _) = matching(sel, sh, query);
    let Some(crit) = crit else {
        return hits.iter().map(|&(_, u)| u).collect();
    };
    let msgs = sort_msgs(sh, &hits, true, Some(crit));
    sort::sort(&msgs, crit).iter().map(|m| m.id).collect()
}

/// What says whether a kept search may have a new result: the mailbox's
/// modseq (flags), its expunges, and the client's view.
fn stamp(sel: &Selected, sh: &Shared) -> (u64, u64, usize, u32) {
    (
        sh.modseq(),
        sh.expunges,
        sel.view.len(),
        sel.view.last().copied().unwrap_or(0),
    )
}

/// Before EXPUNGE (or VANISHED) responses: the REMOVEFROM for the messages
/// they will report (RFC 5267 §4.3.4: sent first, so sequence numbers are
/// still valid), i.e. every kept result member no longer in the mailbox.
pub(super) fn remove_expunged(sel: &mut Selected, sh: &Shared, out: &mut Vec<u8>) {
    let mut live = std::mem::take(&mut sel.live);
    for l in &mut live {
        if l.results.iter().all(|u| sh.mailbox.get(*u).is_some()) {
            continue;
        }
        let new: Vec<u32> = l
            .results
            .iter()
            .copied()
            .filter(|u| sh.mailbox.get(*u).is_some())
            .collect();
        let (removals, _) = diff(&l.results, &new, l.sort.is_some());
        out.extend_from_slice(esearch_update(l, &sel.view, &removals, &[]).as_bytes());
        l.results = new;
    }
    sel.live = live;
}

/// After the EXISTS and FETCH responses: each kept search run again and
/// its changes reported (RFC 5267 §4.3.3: an ADDTO of new messages comes
/// after their EXISTS). Nothing runs when nothing changed.
pub(super) fn refresh(sel: &mut Selected, sh: &mut Shared, out: &mut Vec<u8>) {
    if sel.live.is_empty() {
        return;
    }
    let now = stamp(sel, sh);
    if sel.live_stamp == Some(now) {
        return;
    }
    let mut live = std::mem::take(&mut sel.live);
    for l in &mut live {
        let new = evaluate(sel, sh, &l.query, l.sort.as_deref());
        let (removals, additions) = diff(&l.results, &new, l.sort.is_some());
        out.extend_from_slice(esearch_update(l, &sel.view, &removals, &additions).as_bytes());
        l.results = new;
    }
    sel.live = live;
    sel.live_stamp = Some(now);
}

impl Backend {
    /// RFC 5267 §4.3: UPDATE with the tag of a search still updating is
    /// refused with BAD; the tagged refusal, if it is one.
    pub(super) fn refuse_reused_tag(&self, tag: &str, ret: Option<SearchReturn>) -> Option<String> {
        let in_use = self
            .selected
            .as_ref()
            .is_some_and(|s| s.live.iter().any(|l| l.tag == tag));
        (ret.is_some_and(|r| r.update) && in_use).then(|| {
            tagged(
                tag,
                "BAD",
                "Tag reuse: that tag's search is still updating.",
            )
        })
    }

    /// Keeps a search that was answered with `results` (UIDs in the
    /// requested order), or says `* NO [NOUPDATE "tag"]` past
    /// [`MAX_LIVE`] (RFC 5267 §4.3.1: the other return options are still
    /// honoured, the command still succeeds).
    pub(super) fn keep_live(
        &mut self,
        tag: &str,
        uid: bool,
        mut query: Query,
        sort: Option<&[SortCriterion]>,
        results: Vec<u32>,
        out: &mut Vec<u8>,
    ) {
        let Some(sel) = &mut self.selected else {
            return;
        };
        if sel.live.len() >= MAX_LIVE {
            out.extend_from_slice(
                format!(
                    "* NO [NOUPDATE {}] Too many contexts (at most {MAX_LIVE}).\r\n",
                    quote(tag)
                )
                .as_bytes(),
            );
            return;
        }
        query.pin_sequence_numbers(&sel.view);
        sel.live.push(Live {
            tag: tag.to_string(),
            uid,
            query,
            sort: sort.map(<[_]>::to_vec),
            results,
        });
    }

    /// CANCELUPDATE (RFC 5267 §4.3.5): no more updates for these tags. A
    /// tag with no updating search is `NO`, as Dovecot answers (the RFC
    /// names no response); those before it are cancelled.
    pub fn cancel_update(&mut self, tag: &str, tags: &[String]) -> Vec<u8> {
        let Some(sel) = &mut self.selected else {
            return tagged(tag, "BAD", "No mailbox selected.").into_bytes();
        };
        for t in tags {
            let Some(i) = sel.live.iter().position(|l| &l.tag == t) else {
                return tagged(tag, "NO", "Unknown tag.").into_bytes();
            };
            sel.live.remove(i);
        }
        tagged(tag, "OK", "Updates cancelled.").into_bytes()
    }
}
