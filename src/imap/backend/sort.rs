//! SORT, UID SORT (RFC 5256 §3, SORT=DISPLAY RFC 5957), their ESORT
//! form `SORT RETURN (…)` (RFC 5267 §3) and THREAD, UID THREAD (RFC 5256
//! §4, ORDEREDSUBJECT and REFERENCES): the search runs as for SEARCH, then
//! [`crate::imap::sort`] orders or threads the messages found.
//!
//! What they compare (subject, addresses, Date, Message-ID, In-Reply-To,
//! References) comes from the structure cache (`pigeonpost.index.cache`,
//! ENVELOPE plus References): once a message is in it, SORT and THREAD
//! open no message file for it. A message not yet cached is read and
//! parsed once, and cached for FETCH as well. SORT on DATE, ARRIVAL and
//! SIZE alone needs only the sent date: it takes it from the sent dates
//! file, made from the header keys header searches keep (each header read
//! once, nothing parsed beyond it).

use imap_codec::imap_types::core::Charset;
use imap_codec::imap_types::extensions::sort::{SortCriterion, SortKey};
use imap_codec::imap_types::extensions::thread::ThreadingAlgorithm;
use imap_codec::imap_types::search::SearchKey;

use super::condstore::uses_modseq;
use super::registry::{lock, Shared};
use super::search::{esearch, matching};
use super::{read_message, Backend};
use crate::imap::cache::Parts;
use crate::imap::message;
use crate::imap::proto::response::tagged;
use crate::imap::proto::rev2::SearchReturn;
use crate::imap::search::{self, Query};
use crate::imap::sort::{self, Msg};

/// `NO [BADCHARSET (…)]`.
fn bad_charset(tag: &str) -> String {
    let cs = search::ADVERTISED_CHARSETS.join(" ");
    tagged(tag, "NO", &format!("[BADCHARSET ({cs})] Unknown charset."))
}

/// The SORT/THREAD view of message `uid`, from the structure cache (read
/// and cached when missing); `None` if it is gone.
fn sort_msg(sh: &mut Shared, seq: u32, uid: u32, id: u32) -> Option<Msg> {
    sh.mailbox.get(uid)?;
    let parts = match sh.cache().get(uid) {
        Some(p) => p,
        None => {
            let raw = read_message(&sh.mailbox, uid)?;
            let parts = Parts::of(&message::parse(&raw));
            sh.cache().insert(uid, &parts);
            parts
        }
    };
    if sort::sent_date(parts.envelope.date.0.as_ref().map(|d| d.as_ref())).is_none() {
        // RFC 5256 §2.2: no usable Date:, the sent date is the arrival
        sh.mailbox.resolve_dates([uid]);
    }
    let info = sh.mailbox.get(uid)?;
    let (size, arrival) = (info.vsize(), info.internal_secs());
    let refs = parts.references.0.as_ref().map(|r| r.as_ref());
    Some(Msg::new(seq, id, size, arrival, &parts.envelope, refs))
}

/// The SORT/THREAD views of the messages `hits` ((sequence number, UID)
/// pairs) lists, `id` their UID or sequence number. A SORT on dates and
/// sizes alone takes the sent date from the mailbox's header keys, which
/// read only each header once; the rest from the structure cache.
pub(super) fn sort_msgs(
    sh: &mut Shared,
    hits: &[(u32, u32)],
    uid: bool,
    sort_by: Option<&[SortCriterion]>,
) -> Vec<Msg> {
    let id = |seq: u32, u: u32| if uid { u } else { seq };
    // INTERNALDATE is read for all only when ARRIVAL orders them; else
    // for the messages whose sent date falls back to it (below).
    if sort_by.is_some_and(|c| c.iter().any(|c| c.key == SortKey::Arrival)) {
        sh.mailbox.resolve_dates(hits.iter().map(|&(_, u)| u));
    }
    let dates_only = sort_by.is_some_and(|c| {
        c.iter()
            .all(|c| matches!(c.key, SortKey::Date | SortKey::Arrival | SortKey::Size))
    });
    if !dates_only {
        let msgs = hits
            .iter()
            .filter_map(|&(seq, u)| sort_msg(sh, seq, u, id(seq, u)))
            .collect();
        sh.flush_cache();
        return msgs;
    }
    let uids: Vec<u32> = hits.iter().map(|&(_, u)| u).collect();
    sh.sort_dates(&uids);
    // RFC 5256 §2.2: no usable Date:, the sent date is the arrival
    let undated: Vec<u32> = uids
        .iter()
        .copied()
        .filter(|&u| sh.known_date(u).is_some_and(|d| d.0.is_none()))
        .collect();
    sh.mailbox.resolve_dates(undated);
    let mut walk = super::UidWalk::new(&sh.mailbox);
    let mut msgs = Vec::with_capacity(hits.len());
    for &(seq, u) in hits {
        let Some(info) = walk.get(u) else {
            continue;
        };
        let arrival = info.internal_secs();
        let Some(sent) = sh.known_date(u) else {
            continue;
        };
        msgs.push(Msg {
            seq,
            id: id(seq, u),
            size: info.vsize(),
            arrival,
            sent: sent.0.unwrap_or(arrival),
            ..Msg::default()
        });
    }
    msgs
}

impl Backend {
    /// The messages matching `criteria`, as [`Msg`]s, and the highest
    /// modseq among them; `Err` with the tagged answer.
    fn sort_candidates(
        &mut self,
        tag: &str,
        criteria: &[SearchKey<'static>],
        charset: &Charset<'static>,
        uid: bool,
        sort_by: Option<&[SortCriterion]>,
    ) -> Result<(Vec<Msg>, u64), String> {
        let query = Query::from_criteria(criteria, Some(charset)).map_err(|_| bad_charset(tag))?;
        let Some(sel) = &self.selected else {
            return Err(tagged(tag, "BAD", "No mailbox selected."));
        };
        let shared = sel.shared.clone();
        let mut sh = lock(&shared);
        let (hits, top_modseq) = matching(sel, &mut sh, &query);
        Ok((sort_msgs(&mut sh, &hits, uid, sort_by), top_modseq))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn sort(
        &mut self,
        tag: &str,
        sort_criteria: &[SortCriterion],
        charset: &Charset<'static>,
        criteria: &[SearchKey<'static>],
        uid: bool,
        ret: Option<SearchReturn>,
        out: &mut Vec<u8>,
    ) -> String {
        let update = ret.is_some_and(|r| r.update);
        if let Some(refused) = self.refuse_reused_tag(tag, ret) {
            return refused;
        }
        let (msgs, top_modseq) =
            match self.sort_candidates(tag, criteria, charset, uid, Some(sort_criteria)) {
                Ok(m) => m,
                Err(resp) => {
                    // RFC 5182 §2.1: a failed SEARCH (or SORT) ... SAVE empties `$`.
                    if let (Some(sel), Some(SearchReturn { save: true, .. })) =
                        (&mut self.selected, ret)
                    {
                        sel.saved.clear();
                    }
                    return resp;
                }
            };
        let sorted: Vec<u32> = sort::sort(&msgs, sort_criteria)
            .iter()
            .map(|m| m.id)
            .collect();
        // RFC 7162 §3.1.5 (and §3.1.10 for ESORT): with the MODSEQ
        // criterion, the highest modseq of the messages found.
        let modseq = (uses_modseq(criteria) && !sorted.is_empty()).then_some(top_modseq);
        match ret {
            None => {
                let mut line = String::with_capacity(8 + sorted.len() * 7);
                line.push_str("* SORT");
                let mut num = itoa::Buffer::new();
                for n in &sorted {
                    line.push(' ');
                    line.push_str(num.format(*n));
                }
                if let Some(m) = modseq {
                    line.push_str(&format!(" (MODSEQ {m})"));
                }
                line.push_str("\r\n");
                out.extend_from_slice(line.as_bytes());
            }
            Some(ret) => {
                if ret.save {
                    if let Some(sel) = &mut self.selected {
                        let mut uids: Vec<u32> = msgs
                            .iter()
                            .map(|m| {
                                if uid {
                                    m.id
                                } else {
                                    sel.view[m.seq as usize - 1]
                                }
                            })
                            .collect();
                        uids.sort_unstable();
                        sel.saved = uids;
                    }
                }
                if ret.min || ret.max || ret.all || ret.count || ret.partial.is_some() || ret.update
                {
                    out.extend_from_slice(esearch(tag, uid, &sorted, ret, modseq).as_bytes());
                }
            }
        }
        if update {
            let view = self.selected.as_ref().map_or(&[][..], |s| &s.view[..]);
            let uids: Vec<u32> = sorted
                .iter()
                .filter_map(|&n| {
                    if uid {
                        Some(n)
                    } else {
                        view.get(n as usize - 1).copied()
                    }
                })
                .collect();
            if let Ok(query) = Query::from_criteria(criteria, Some(charset)) {
                self.keep_live(tag, uid, query, Some(sort_criteria), uids, out);
            }
        }
        self.updates(uid, out);
        tagged(tag, "OK", "Sort completed.")
    }

    pub(super) fn thread(
        &mut self,
        tag: &str,
        algorithm: &ThreadingAlgorithm<'static>,
        charset: &Charset<'static>,
        criteria: &[SearchKey<'static>],
        uid: bool,
        out: &mut Vec<u8>,
    ) -> String {
        if matches!(algorithm, ThreadingAlgorithm::Other(_)) {
            return tagged(
                tag,
                "BAD",
                "Error in IMAP command THREAD: Unknown thread algorithm.",
            );
        }
        let msgs = match self.sort_candidates(tag, criteria, charset, uid, None) {
            Ok((m, _)) => m,
            Err(resp) => return resp,
        };
        let threads = match algorithm {
            ThreadingAlgorithm::OrderedSubject => sort::ordered_subject(&msgs),
            _ => sort::references(&msgs),
        };
        out.extend_from_slice(sort::thread_response(&threads, &msgs).as_bytes());
        self.updates(uid, out);
        tagged(tag, "OK", "Thread completed.")
    }
}
