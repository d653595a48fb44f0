//! SEARCH and UID SEARCH (RFC 3501 §6.4.4, RFC 9051 §6.4.4): runs the
//! evaluator in [`crate::imap::search`] over the selected mailbox, and
//! answers SEARCH, or ESEARCH for `RETURN (...)` and under IMAP4rev2
//! (RFC 4731, RFC 9051 §7.3.4), saving the result for `$` (RFC 5182).
//!
//! Searches on SUBJECT/FROM/TO/CC/BCC and SENT* use the mailbox's header
//! keys ([`HeaderKeys`], kept in memory by the shared mailbox): the first
//! such search reads each message's header once, later ones no file.

use imap_codec::imap_types::core::Charset;
use imap_codec::imap_types::search::SearchKey;

use super::condstore::uses_modseq;
use super::registry::lock;
use super::registry::Shared;
use super::sequence::compact_set;
use super::{read_message, Backend, Selected};
use crate::imap::proto::response::tagged;
use crate::imap::proto::rev2::SearchReturn;
use crate::imap::search::{self, Context as SearchContext, HeaderKeys, Query};
use crate::store::maildir::{Flags, Mailbox, MessageInfo};

impl Backend {
    pub(super) fn search(
        &mut self,
        tag: &str,
        criteria: &[SearchKey<'static>],
        charset: Option<&Charset<'static>>,
        uid: bool,
        ret: Option<SearchReturn>,
        out: &mut Vec<u8>,
    ) -> String {
        let update = ret.is_some_and(|r| r.update);
        if let Some(refused) = self.refuse_reused_tag(tag, ret) {
            return refused;
        }
        let query = match Query::from_criteria(criteria, charset) {
            Ok(q) => q,
            Err(_) => {
                // RFC 5182 §2.1: a failed SEARCH ... SAVE empties `$`.
                if let (Some(sel), Some(SearchReturn { save: true, .. })) =
                    (&mut self.selected, ret)
                {
                    sel.saved.clear();
                }
                let cs = search::ADVERTISED_CHARSETS.join(" ");
                return tagged(tag, "NO", &format!("[BADCHARSET ({cs})] Unknown charset."));
            }
        };
        let Some(sel) = &mut self.selected else {
            return tagged(tag, "BAD", "No mailbox selected.");
        };
        let shared = sel.shared.clone();
        let mut sh = lock(&shared);
        // RFC 7162 §3.1.6: with the MODSEQ criterion the answer carries the
        // highest modseq of the messages found.
        let with_modseq = uses_modseq(criteria);
        let (hits, top_modseq) = matching(sel, &mut sh, &query);
        let found: Vec<u32> = hits
            .iter()
            .map(|&(seq, u)| if uid { u } else { seq })
            .collect();
        match ret {
            None => {
                use std::io::Write;
                out.extend_from_slice(b"* SEARCH");
                for n in &found {
                    let _ = write!(out, " {n}");
                }
                if with_modseq && !found.is_empty() {
                    let _ = write!(out, " (MODSEQ {top_modseq})");
                }
                out.extend_from_slice(b"\r\n");
            }
            Some(ret) => {
                if ret.save {
                    // RFC 5182 §2.4: with only MIN and/or MAX, only those are kept.
                    let uids: Vec<u32> = found
                        .iter()
                        .map(|&n| if uid { n } else { sel.view[n as usize - 1] })
                        .collect();
                    sel.saved = if (ret.min || ret.max) && !(ret.all || ret.count) {
                        let mut v: Vec<u32> = [
                            ret.min.then(|| uids.first().copied()).flatten(),
                            ret.max.then(|| uids.last().copied()).flatten(),
                        ]
                        .into_iter()
                        .flatten()
                        .collect();
                        v.dedup();
                        v
                    } else {
                        uids
                    };
                }
                // SAVE alone answers nothing (RFC 5182 §2.4); UPDATE alone
                // the bare ESEARCH (TAG …) its updates will carry.
                if ret.min || ret.max || ret.all || ret.count || ret.partial.is_some() || ret.update
                {
                    let ms = (with_modseq && !found.is_empty()).then_some(top_modseq);
                    out.extend_from_slice(esearch(tag, uid, &found, ret, ms).as_bytes());
                }
            }
        }
        drop(sh);
        if update {
            let uids = hits.iter().map(|&(_, u)| u).collect();
            self.keep_live(tag, uid, query, None, uids, out);
        }
        self.updates(uid, out);
        tagged(tag, "OK", "Search completed.")
    }
}

/// The messages of the selected mailbox that match `query`, as (sequence
/// number, UID) in mailbox order, and the highest modseq among them. Reads
/// message files only when the query needs headers or bodies.
/// A search on the envelope's header fields and sent date uses the
/// mailbox's [`HeaderKeys`] (made once per message), not the files.
pub(super) fn matching(sel: &Selected, sh: &mut Shared, query: &Query) -> (Vec<(u32, u32)>, u64) {
    let needs = query.needs();
    let keyed = needs.header && query.keyed();
    if keyed {
        sh.header_keys(&sel.view);
    }
    if needs.arrival {
        sh.mailbox.resolve_dates(sel.view.iter().copied());
    }
    let sh = &*sh;
    let ctx = SearchContext {
        max_seq: sel.view.len() as u32,
        max_uid: sel.view.last().copied().unwrap_or(0),
        utc_offset: 0,
    };
    let mut found = Vec::new();
    let mut top_modseq = 0u64;
    let mut walk = super::UidWalk::new(&sh.mailbox);
    for (i, &u) in sel.view.iter().enumerate() {
        let Some(info) = walk.get(u) else {
            continue;
        };
        let keys = if keyed { sh.known_keys(u) } else { None };
        let data = if (needs.header || needs.body) && keys.is_none() {
            read_message(&sh.mailbox, u)
        } else {
            None
        };
        let c = Candidate {
            seq: i as u32 + 1,
            info,
            mailbox: &sh.mailbox,
            recent: sel.is_recent(u),
            data,
            keys,
        };
        if query.matches(&c, &ctx) {
            found.push((i as u32 + 1, u));
            top_modseq = top_modseq.max(info.modseq);
        }
    }
    (found, top_modseq)
}

/// The ESEARCH response (RFC 4731 §3.1, RFC 9051 §7.3.4) to SEARCH, and
/// to SORT (ESORT, RFC 5267 §3.2): `found` in the answer's order
/// (ascending for SEARCH, the sort order for SORT), so MIN and MAX are its
/// first and last and ALL lists it in that order (runs of consecutive
/// ascending numbers as `a:b`). With the MODSEQ criterion, `modseq` is the
/// highest of the messages found (RFC 7162 §3.1.10: `MODSEQ n`).
pub(super) fn esearch(
    tag: &str,
    uid: bool,
    found: &[u32],
    ret: SearchReturn,
    modseq: Option<u64>,
) -> String {
    let mut s = format!(
        "* ESEARCH (TAG {})",
        crate::imap::proto::response::quote(tag)
    );
    if uid {
        s.push_str(" UID");
    }
    if let (Some(first), Some(last)) = (found.first(), found.last()) {
        if ret.min {
            s.push_str(&format!(" MIN {first}"));
        }
        if ret.max {
            s.push_str(&format!(" MAX {last}"));
        }
        if ret.all {
            s.push_str(" ALL ");
            s.push_str(&compact_set(found));
        }
    }
    if let Some((a, b)) = ret.partial {
        // RFC 5267 §4.4, RFC 9394 §3.1: the results at positions a to b
        // (1 is the first; -1 the last), `NIL` when there are none.
        let len = found.len() as i64;
        let (lo, hi) = (a.abs().min(b.abs()), a.abs().max(b.abs()));
        let (from, to) = if a > 0 {
            (lo - 1, hi.min(len))
        } else {
            ((len - hi).max(0), len - lo + 1)
        };
        let part = if from < to {
            compact_set(&found[from as usize..to as usize])
        } else {
            "NIL".into()
        };
        s.push_str(&format!(" PARTIAL ({a}:{b} {part})"));
    }
    if ret.count {
        s.push_str(&format!(" COUNT {}", found.len()));
    }
    if let Some(m) = modseq {
        s.push_str(&format!(" MODSEQ {m}"));
    }
    s.push_str("\r\n");
    s
}

/// One message for the search evaluator.
struct Candidate<'a> {
    seq: u32,
    info: &'a MessageInfo,
    /// For a date not read yet (see `internal_date`).
    mailbox: &'a Mailbox,
    recent: bool,
    data: Option<Vec<u8>>,
    keys: Option<&'a HeaderKeys>,
}

impl search::Candidate for Candidate<'_> {
    fn seq(&self) -> u32 {
        self.seq
    }
    fn uid(&self) -> u32 {
        self.info.uid
    }
    fn flags(&self) -> Flags {
        self.info.flags
    }
    fn keywords(&self) -> &[String] {
        self.info.keywords()
    }
    fn is_recent(&self) -> bool {
        self.recent
    }
    /// RFC822.SIZE counts CRLF line endings: the vsize, not the file size.
    #[allow(clippy::misnamed_getters)]
    fn size(&self) -> u64 {
        self.info.vsize()
    }
    /// Read for all first when the query compares it (`Needs::arrival`);
    /// else only a sent date falling back to it asks, message by message.
    fn internal_date(&self) -> i64 {
        self.mailbox.internal_secs_of(self.info)
    }
    fn message(&self) -> Option<&[u8]> {
        self.data.as_deref()
    }
    fn modseq(&self) -> u64 {
        self.info.modseq
    }
    fn keys(&self) -> Option<&HeaderKeys> {
        self.keys
    }
}
