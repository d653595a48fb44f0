//! Sequence sets (RFC 3501 §6.4.8 and §9 `sequence-set`, RFC 9051 §6.4):
//! resolving a set to the messages it names, and the saved search result
//! `$` (RFC 5182 §2.1) put in place of a set.

use std::num::NonZeroU32;

use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::core::Vec1;
use imap_codec::imap_types::search::SearchKey;
use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};

use super::Backend;
use crate::imap::proto::rev2::SAVED_PLACEHOLDER;

/// The set as `(low, high)` intervals, `*` standing for `largest`.
fn intervals(set: &SequenceSet, largest: u32) -> Vec<(u32, u32)> {
    let expand = |v: &SeqOrUid| match v {
        SeqOrUid::Value(x) => x.get(),
        SeqOrUid::Asterisk => largest,
    };
    set.0
        .as_ref()
        .iter()
        .map(|s| match s {
            Sequence::Single(v) => (expand(v), expand(v)),
            Sequence::Range(a, b) => {
                let (a, b) = (expand(a), expand(b));
                (a.min(b), a.max(b))
            }
        })
        .collect()
}

impl Backend {
    /// `cmd` with every sequence set that is `$` (see [`SAVED_PLACEHOLDER`])
    /// replaced by the saved search result: UIDs in UID commands and UID
    /// search keys, sequence numbers elsewhere (RFC 5182 §2.1). `None` when
    /// the command would act on no messages.
    pub(super) fn with_saved_result(
        &self,
        mut cmd: CommandBody<'static>,
    ) -> Option<CommandBody<'static>> {
        let sel = self.selected.as_ref()?;
        let mut uids = Vec::new();
        let mut seqs = Vec::new();
        for &u in &sel.saved {
            if let Ok(i) = sel.view.binary_search(&u) {
                uids.push(u);
                seqs.push(i as u32 + 1);
            }
        }
        let as_set = |numbers: &[u32]| -> Option<SequenceSet> {
            let mut set = Vec::new();
            for (a, b) in runs(numbers) {
                let (a, b) = (NonZeroU32::new(a)?, NonZeroU32::new(b)?);
                set.push(if a == b {
                    Sequence::Single(SeqOrUid::Value(a))
                } else {
                    Sequence::Range(SeqOrUid::Value(a), SeqOrUid::Value(b))
                });
            }
            Vec1::try_from(set).ok().map(SequenceSet)
        };
        // Puts the saved result in place of a `$` set; false if it's empty.
        let replace = |set: &mut SequenceSet, uid: bool| -> bool {
            let saved = matches!(
                set.0.as_ref(),
                [Sequence::Single(SeqOrUid::Value(v))] if v.get() == SAVED_PLACEHOLDER
            );
            if !saved {
                return true;
            }
            match as_set(if uid { &uids } else { &seqs }) {
                Some(s) => {
                    *set = s;
                    true
                }
                None => false,
            }
        };
        use CommandBody as B;
        let target = match &mut cmd {
            B::Fetch {
                sequence_set, uid, ..
            }
            | B::Store {
                sequence_set, uid, ..
            }
            | B::Copy {
                sequence_set, uid, ..
            }
            | B::Move {
                sequence_set, uid, ..
            } => Some((sequence_set, *uid)),
            B::ExpungeUid { sequence_set } => Some((sequence_set, true)),
            B::Search { criteria, .. }
            | B::Sort {
                search_criteria: criteria,
                ..
            }
            | B::Thread {
                search_criteria: criteria,
                ..
            } => {
                // In a search an empty `$` matches nothing: the placeholder
                // left in place is no message's UID or sequence number.
                fn walk(k: &mut SearchKey<'static>, f: &dyn Fn(&mut SequenceSet, bool)) {
                    match k {
                        SearchKey::SequenceSet(s) => f(s, false),
                        SearchKey::Uid(s) => f(s, true),
                        SearchKey::Not(k) => walk(k, f),
                        SearchKey::Or(a, b) => {
                            walk(a, f);
                            walk(b, f);
                        }
                        SearchKey::And(ks) => walk_all(ks, f),
                        _ => {}
                    }
                }
                fn walk_all(ks: &mut Vec1<SearchKey<'static>>, f: &dyn Fn(&mut SequenceSet, bool)) {
                    let mut v = std::mem::replace(ks, Vec1::from(SearchKey::All)).into_inner();
                    v.iter_mut().for_each(|k| walk(k, f));
                    *ks = Vec1::try_from(v).expect("as many keys as before");
                }
                walk_all(criteria, &|s, uid| {
                    replace(s, uid);
                });
                None
            }
            _ => None,
        };
        if let Some((set, uid)) = target {
            if !replace(set, uid) {
                return None;
            }
        }
        Some(cmd)
    }
    /// A sequence number past the last message: RFC 9051 §6.4 (and
    /// Dovecot) answer BAD. `*` is always fine; UIDs never are out of range.
    pub(super) fn bad_sequence_set(&self, set: &SequenceSet, uid: bool) -> bool {
        let Some(sel) = &self.selected else {
            return false;
        };
        let count = sel.view.len() as u32;
        !uid && set.0.as_ref().iter().any(|s| match s {
            Sequence::Single(SeqOrUid::Value(v)) => v.get() > count,
            Sequence::Range(a, b) => [a, b]
                .iter()
                .any(|x| matches!(x, SeqOrUid::Value(v) if v.get() > count)),
            Sequence::Single(SeqOrUid::Asterisk) => false,
        })
    }
    /// `(seq, uid)` of the messages a set names.
    pub(super) fn resolve(&self, set: &SequenceSet, uid: bool) -> Vec<(u32, u32)> {
        let Some(sel) = &self.selected else {
            return Vec::new();
        };
        let largest = if uid {
            sel.view.last().copied().unwrap_or(0)
        } else {
            sel.view.len() as u32
        };
        // Merged, sorted intervals, then a binary search per interval in the
        // (ascending) view: mbsync sends sets of thousands of single UIDs,
        // and checking every message against every set member is quadratic.
        let merged = merged_intervals(set, largest);
        let mut out = Vec::new();
        for (lo, hi) in merged {
            let (start, end) = if uid {
                (
                    sel.view.partition_point(|u| *u < lo),
                    sel.view.partition_point(|u| *u <= hi),
                )
            } else {
                ((lo.max(1) - 1) as usize, (hi as usize).min(sel.view.len()))
            };
            for i in start..end.max(start) {
                out.push((i as u32 + 1, sel.view[i]));
            }
        }
        out
    }
}

/// The set as sorted, merged `(low, high)` intervals, `*` standing for
/// `largest`.
pub(super) fn merged_intervals(set: &SequenceSet, largest: u32) -> Vec<(u32, u32)> {
    let mut ranges = intervals(set, largest);
    ranges.sort_unstable();
    let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match merged.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    merged
}

/// Whether `n` is in the sorted, merged `intervals`.
pub(super) fn in_intervals(intervals: &[(u32, u32)], n: u32) -> bool {
    let i = intervals.partition_point(|&(_, hi)| hi < n);
    intervals.get(i).is_some_and(|&(lo, _)| lo <= n)
}

/// Runs of the numbers in sorted, merged `intervals` that are not in the
/// ascending `present`, without listing them one by one.
pub(super) fn missing_runs(intervals: &[(u32, u32)], present: &[u32]) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    for &(lo, hi) in intervals {
        let mut next = u64::from(lo);
        let from = present.partition_point(|&u| u < lo);
        for &u in present[from..].iter().take_while(|&&u| u <= hi) {
            if u64::from(u) > next {
                out.push((next as u32, u - 1));
            }
            next = u64::from(u) + 1;
        }
        if next <= u64::from(hi) {
            out.push((next as u32, hi));
        }
    }
    out
}

/// Runs as a sequence set: `1:3,7,9:10`.
pub(super) fn runs_set(runs: &[(u32, u32)]) -> String {
    let parts: Vec<String> = runs
        .iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}:{b}")
            }
        })
        .collect();
    parts.join(",")
}

/// Ascending numbers as runs of consecutive ones: `(first, last)`.
pub(super) fn runs(numbers: &[u32]) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for &n in numbers {
        match out.last_mut() {
            Some(last) if last.1.checked_add(1) == Some(n) => last.1 = n,
            _ => out.push((n, n)),
        }
    }
    out
}

/// Ascending numbers as a sequence set: `1:3,7,9:10`.
pub(super) fn compact_set(numbers: &[u32]) -> String {
    runs_set(&runs(numbers))
}
