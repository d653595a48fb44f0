//! What the IMAP commands do to the mail store: one [`Backend`] per logged-in
//! session, owning the user's Maildir and the selected mailbox's view (the
//! sequence numbers the client knows). Blocking; the connection driver runs
//! it off the async threads. Every method returns the response bytes
//! (untagged data, then the tagged status).
//!
//! This file has the session's state, the dispatcher [`Backend::run`] and
//! the untagged updates every command ends with (RFC 3501 §5.2 and §7.4.1,
//! RFC 9051 §5.2 and §7.5.1). Each command family has its own file; the
//! mailboxes shared by all sessions of this process are in `registry`.

mod append;
mod catenate;
mod condstore;
mod context;
mod copy;
mod expunge;
mod fetch;
mod list;
mod mailbox;
mod metadata;
mod quota;
mod registry;
mod search;
mod select;
mod sequence;
mod sort;
mod status;
mod store;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::flag::Flag;
use imap_codec::imap_types::mailbox::Mailbox as MailboxName;

use super::proto::response::{flag_list, tagged};
use super::proto::{RunOptions, State};
use crate::store::maildir::utf7::{mutf7_to_utf8, utf8_to_mutf7};
use crate::store::maildir::{Error as StoreError, Flags, Mailbox, MaildirRoot};
pub use catenate::{parse_url as parse_catenate_url, url_resp_text, ImapUrl};
pub use registry::Mailboxes;
use registry::{lock, SharedRef};
use select::claim_recent;

/// The selected mailbox, as this session knows it.
struct Selected {
    /// Raw (modified UTF-7) name, `INBOX` for the root.
    name: String,
    shared: SharedRef,
    read_only: bool,
    /// UIDs in sequence-number order, as the client knows them: while
    /// that is the whole mailbox, the list shared by every such session
    /// (copied on write).
    view: Arc<Vec<u32>>,
    /// Expunged by someone else while we could not say so (during FETCH,
    /// STORE, SEARCH; RFC 3501 §7.4.1); reported at the next chance.
    pending_expunge: Vec<u32>,
    /// The UIDs that are `\Recent` for this session: the ranges it
    /// claimed (at SELECT, then as new mail arrived), no one else's.
    recent: Vec<std::ops::Range<u32>>,
    /// The shared modseq this session has reported flag changes up to.
    seen_modseq: u64,
    /// The shared expunge counter at our last look.
    seen_expunges: u64,
    /// Flag changes this session made (uid → their modseq), answered by its
    /// own STORE/FETCH: not reported back to it as news.
    own: HashMap<u32, u64>,
    /// The saved search result `$` (RFC 5182), as UIDs; empty until a
    /// SEARCH RETURN (SAVE). Expunged UIDs simply no longer resolve.
    saved: Vec<u32>,
    /// Bumped when the mailbox changes: what IDLE waits on.
    changes: tokio::sync::watch::Receiver<u64>,
    /// The keywords this session's last FLAGS response listed.
    announced: Vec<String>,
    /// Searches kept with `RETURN (UPDATE)` (RFC 5267 §4.3): they end
    /// with the selection.
    live: Vec<context::Live>,
    /// The mailbox state they were last brought up to date with.
    live_stamp: Option<(u64, u64, usize, u32)>,
}

/// The FLAGS and PERMANENTFLAGS responses for a mailbox with `keywords`.
fn flags_announcement(keywords: &[String]) -> String {
    let kw: String = keywords.iter().map(|k| format!(" {k}")).collect();
    format!(
        "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft{kw})\r\n\
         * OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft{kw} \\*)] Flags permitted.\r\n"
    )
}

impl Selected {
    /// RFC 3501 §7.2.6, RFC 9051 §7.3.5: a keyword reaches a client in
    /// FLAGS (and PERMANENTFLAGS) before any FETCH carries it. Called before
    /// every flag list a FETCH response holds; when `keywords` has one this
    /// session hasn't announced, sends the mailbox's whole keyword list again.
    fn announce_keywords(&mut self, keywords: &[String], mailbox: &Mailbox, out: &mut Vec<u8>) {
        let known = |all: &[String], k: &str| all.iter().any(|a| a.eq_ignore_ascii_case(k));
        if keywords.iter().all(|k| known(&self.announced, k)) {
            return;
        }
        let mut all = self.announced.clone();
        let used = mailbox.messages().iter().flat_map(|m| m.keywords().iter());
        for k in used.chain(keywords) {
            if !known(&all, k) {
                all.push(k.clone());
            }
        }
        out.extend_from_slice(flags_announcement(&all).as_bytes());
        self.announced = all;
    }

    fn is_recent(&self, uid: u32) -> bool {
        self.recent.iter().any(|r| r.contains(&uid))
    }
    fn recent_count(&self) -> usize {
        self.view.iter().filter(|u| self.is_recent(**u)).count()
    }
}

pub struct Backend {
    root: MaildirRoot,
    /// The server's open mailboxes, shared with every other session.
    mailboxes: Arc<Mailboxes>,
    selected: Option<Selected>,
    /// Where a long FETCH sends its output as it goes (the connection's
    /// writer), so a `FETCH 1:* BODY[]` is neither held whole in memory nor
    /// delayed until the last message is read.
    pub spill: Option<tokio::sync::mpsc::Sender<Vec<u8>>>,
    /// IMAP4rev2 is enabled: no RECENT responses or \\Recent flags (RFC 9051).
    rev2: bool,
    /// CONDSTORE is enabled (RFC 7162 §3.1): by ENABLE or by the first
    /// command that uses it; untagged FETCHes then carry MODSEQ.
    condstore: bool,
    /// QRESYNC is enabled (RFC 7162 §3.2.3): expunges are reported as
    /// VANISHED.
    qresync: bool,
    /// The logged-in user: the only one whose `imap://` URLs CATENATE takes.
    user: String,
    /// message_size_limit (0: none): a CATENATE result may not outgrow it.
    max_message: u64,
}

fn store_no(tag: &str, e: &StoreError) -> String {
    match e {
        StoreError::NotFound(_) => tagged(tag, "NO", "[NONEXISTENT] Mailbox doesn't exist."),
        StoreError::AlreadyExists(_) => {
            tagged(tag, "NO", "[ALREADYEXISTS] Mailbox already exists.")
        }
        StoreError::InvalidName(_, why) => {
            tagged(tag, "NO", &format!("Invalid mailbox name: {why}."))
        }
        // RFC 9208 §4.3: Dovecot's text.
        StoreError::OverQuota => tagged(
            tag,
            "NO",
            "[OVERQUOTA] Quota exceeded (mailbox for user is full)",
        ),
        StoreError::TooManyKeywords(_) | StoreError::InvalidKeyword(_) => {
            tagged(tag, "NO", &format!("{e}."))
        }
        e if e.is_temporary() => {
            tracing::warn!(error = %e, "mail store busy");
            tagged(tag, "NO", "[INUSE] Mailbox is busy, try again later.")
        }
        e => {
            tracing::error!(error = %e, "mail store error");
            tagged(
                tag,
                "NO",
                "[SERVERBUG] Internal error occurred. Refer to server log for more information.",
            )
        }
    }
}

fn system_flag(f: &Flag) -> Option<Flags> {
    Some(match f {
        Flag::Seen => Flags::SEEN,
        Flag::Answered => Flags::ANSWERED,
        Flag::Flagged => Flags::FLAGGED,
        Flag::Deleted => Flags::DELETED,
        Flag::Draft => Flags::DRAFT,
        _ => return None,
    })
}

/// Splits IMAP flags into system flags and keyword names.
fn split_flags(flags: &[Flag]) -> (Flags, Vec<String>) {
    let mut sys = Flags::empty();
    let mut kw = Vec::new();
    for f in flags {
        match system_flag(f) {
            Some(s) => sys.insert(s),
            None => {
                if let Flag::Keyword(k) = f {
                    kw.push(k.inner().to_string());
                }
            }
        }
    }
    (sys, kw)
}

impl Backend {
    pub fn new(root: PathBuf, mailboxes: Arc<Mailboxes>) -> Backend {
        Backend {
            root: MaildirRoot::new(root),
            mailboxes,
            selected: None,
            spill: None,
            rev2: false,
            condstore: false,
            qresync: false,
            user: String::new(),
            max_message: 0,
        }
    }

    /// Whose store this is and the message size limit (0: none), for
    /// CATENATE (RFC 4469).
    pub fn with_user(mut self, user: &str, max_message: u64) -> Backend {
        self.user = user.to_string();
        self.max_message = max_message;
        self
    }

    /// Accounts this user's writes in their Maildir++ quota.
    pub fn with_quota(
        mut self,
        quota: Option<Arc<crate::store::maildir::quota::Quota>>,
    ) -> Backend {
        self.root.set_quota(quota);
        self
    }

    /// The raw name of a mailbox argument, or a BAD/NO line.
    fn name_of(&self, m: &MailboxName, utf8: bool) -> String {
        match m {
            MailboxName::Inbox => "INBOX".into(),
            MailboxName::Other(o) => {
                let s = String::from_utf8_lossy(o.as_ref()).into_owned();
                let s = s.trim_end_matches('.').to_string();
                if utf8 {
                    utf8_to_mutf7(&s)
                } else {
                    s
                }
            }
        }
    }

    /// A raw name as the client sees it.
    fn display_name(raw: &str, utf8: bool) -> String {
        if utf8 {
            mutf7_to_utf8(raw).unwrap_or_else(|_| raw.to_string())
        } else {
            raw.to_string()
        }
    }

    fn open(&self, name: &str) -> Result<Mailbox, StoreError> {
        self.root.open(name)
    }
    /// Runs one command. Returns the responses and the new state.
    pub fn run(
        &mut self,
        tag: &str,
        cmd: CommandBody<'static>,
        state: State,
        opts: &RunOptions,
    ) -> (Vec<u8>, State) {
        use CommandBody as B;
        let mut out = Vec::new();
        let mut state = state;
        let utf8 = opts.utf8;
        self.rev2 = opts.rev2;
        self.qresync |= opts.qresync;
        self.condstore |= opts.condstore || opts.qresync || condstore::enables_condstore(&cmd);
        let cmd = if opts.saved {
            // No EXPUNGE responses during a non-UID FETCH/STORE/COPY/MOVE.
            let uid_command = matches!(
                cmd,
                B::Fetch { uid: true, .. }
                    | B::Store { uid: true, .. }
                    | B::Copy { uid: true, .. }
                    | B::Move { uid: true, .. }
                    | B::ExpungeUid { .. }
                    | B::Search { uid: true, .. }
                    | B::Sort { uid: true, .. }
                    | B::Thread { uid: true, .. }
            );
            match self.with_saved_result(cmd) {
                Some(c) => c,
                None => {
                    // RFC 5182 §2.1: an empty `$` makes the command a no-op.
                    self.updates(uid_command, &mut out);
                    let text = tagged(tag, "OK", "Completed (no messages).");
                    out.extend_from_slice(text.as_bytes());
                    return (out, state);
                }
            }
        } else {
            cmd
        };
        let resp: String = match cmd {
            B::Select {
                mailbox,
                parameters,
            } => self.select(
                tag,
                &mailbox,
                &parameters,
                false,
                utf8,
                &mut out,
                &mut state,
            ),
            B::Examine {
                mailbox,
                parameters,
            } => self.select(tag, &mailbox, &parameters, true, utf8, &mut out, &mut state),
            B::Create { mailbox } => self.create(tag, &mailbox, utf8),
            B::Delete { mailbox } => self.delete(tag, &mailbox, utf8),
            B::Rename { from, to } => self.rename(tag, &from, &to, utf8),
            B::Subscribe { mailbox } => self.subscribe(tag, &mailbox, true, utf8),
            B::Unsubscribe { mailbox } => self.subscribe(tag, &mailbox, false, utf8),
            B::List {
                reference,
                mailbox_wildcard,
            } => self.list(tag, &reference, &mailbox_wildcard, false, utf8, &mut out),
            B::Lsub {
                reference,
                mailbox_wildcard,
            } => self.list(tag, &reference, &mailbox_wildcard, true, utf8, &mut out),
            B::Status {
                mailbox,
                item_names,
            } => self.status(tag, &mailbox, &item_names, utf8, &mut out),
            B::Append {
                mailbox,
                flags,
                date,
                message,
            } => self.append(tag, &mailbox, &flags, date, &message, utf8, &mut out),
            B::Noop => self.poll(tag, "NOOP completed.", &mut out),
            B::Check => self.poll(tag, "Check completed.", &mut out),
            B::Close => self.close(tag, &mut state),
            B::Unselect => self.unselect(tag, &mut state),
            B::Expunge => self.expunge(tag, None, &mut out),
            B::ExpungeUid { sequence_set } => self.expunge(tag, Some(&sequence_set), &mut out),
            B::Fetch {
                sequence_set,
                macro_or_item_names,
                uid,
                modifiers,
            } => self.fetch(
                tag,
                &sequence_set,
                &macro_or_item_names,
                uid,
                &modifiers,
                &mut out,
            ),
            B::Store {
                sequence_set,
                kind,
                response,
                flags,
                uid,
                modifiers,
            } => self.store(
                tag,
                &sequence_set,
                &kind,
                &response,
                &flags,
                uid,
                &modifiers,
                &mut out,
            ),
            B::Copy {
                sequence_set,
                mailbox,
                uid,
            } => self.copy(tag, &sequence_set, &mailbox, uid, false, utf8, &mut out),
            B::Move {
                sequence_set,
                mailbox,
                uid,
            } => self.copy(tag, &sequence_set, &mailbox, uid, true, utf8, &mut out),
            B::Search {
                charset,
                criteria,
                uid,
            } => self.search(
                tag,
                criteria.as_ref(),
                charset.as_ref(),
                uid,
                opts.search_return,
                &mut out,
            ),
            B::Sort {
                sort_criteria,
                charset,
                search_criteria,
                uid,
            } => self.sort(
                tag,
                sort_criteria.as_ref(),
                &charset,
                search_criteria.as_ref(),
                uid,
                opts.search_return,
                &mut out,
            ),
            B::Thread {
                algorithm,
                charset,
                search_criteria,
                uid,
            } => self.thread(
                tag,
                &algorithm,
                &charset,
                search_criteria.as_ref(),
                uid,
                &mut out,
            ),
            B::GetQuotaRoot { mailbox } => self.get_quota_root(tag, &mailbox, utf8, &mut out),
            B::GetQuota { root } => self.get_quota(tag, &root, &mut out),
            B::SetQuota { .. } => self.set_quota(tag),
            // IDLE (RFC 2177): the updates so far; the tagged OK comes at DONE.
            B::Idle => {
                self.updates(true, &mut out);
                String::new()
            }
            B::GetMetadata {
                options,
                mailbox,
                entries,
            } => self.get_metadata(tag, &options, &mailbox, entries.as_ref(), utf8, &mut out),
            B::SetMetadata {
                mailbox,
                entry_values,
            } => self.set_metadata(tag, &mailbox, entry_values.as_ref(), utf8),
            other => tagged(
                tag,
                "BAD",
                &format!("Error in IMAP command {}: Not supported.", other.name()),
            ),
        };
        out.extend_from_slice(resp.as_bytes());
        (out, state)
    }

    /// Sends what `out` holds on to the client once it has grown past
    /// [`fetch::SPILL_BYTES`] (long FETCH and LIST answers), so an answer's
    /// size never decides the session's memory. No-op when not streaming.
    fn spill(&self, out: &mut Vec<u8>) {
        if out.len() >= fetch::SPILL_BYTES {
            if let Some(spill) = &self.spill {
                let _ = spill.blocking_send(std::mem::take(out));
            }
        }
    }

    /// NOOP and CHECK (RFC 3501 §6.1.2 and §6.4.1; RFC 9051 §6.1.2): only
    /// the untagged updates.
    fn poll(&mut self, tag: &str, done: &str, out: &mut Vec<u8>) -> String {
        self.updates(true, out);
        tagged(tag, "OK", done)
    }

    /// What an IDLE on the selected mailbox waits on: it changes whenever
    /// the mailbox may have (see [`crate::store::notify`]).
    pub fn idle_changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.selected.as_ref().map(|s| s.changes.clone())
    }
    /// Untagged updates since the last look: EXPUNGE (if allowed), EXISTS,
    /// RECENT, FETCH FLAGS.
    pub fn updates(&mut self, allow_expunge: bool, out: &mut Vec<u8>) {
        let Some(sel) = &mut self.selected else {
            return;
        };
        let shared = sel.shared.clone();
        let mut sh = lock(&shared);
        if let Err(e) = sh.sync() {
            tracing::warn!(error = %e, "sync failed");
            return;
        }
        // Gone from the mailbox but still in our view: someone expunged it.
        // (Only looked for when something was expunged since our last look:
        // this runs after every command.)
        if sh.expunges != sel.seen_expunges {
            sel.seen_expunges = sh.expunges;
            for &u in sel.view.iter() {
                if sh.mailbox.get(u).is_none() && !sel.pending_expunge.contains(&u) {
                    sel.pending_expunge.push(u);
                }
            }
        }
        if allow_expunge && !sel.pending_expunge.is_empty() {
            // RFC 5267 §4.3.4: REMOVEFROM before the EXPUNGE.
            context::remove_expunged(sel, &sh, out);
            let gone: HashSet<u32> = sel.pending_expunge.drain(..).collect();
            if self.qresync {
                // RFC 7162 §3.2.10: once QRESYNC is enabled, expunges are
                // reported as VANISHED (UIDs), never as EXPUNGE.
                let mut uids: Vec<u32> = sel
                    .view
                    .iter()
                    .copied()
                    .filter(|u| gone.contains(u))
                    .collect();
                if !uids.is_empty() {
                    Arc::make_mut(&mut sel.view).retain(|u| !gone.contains(u));
                    uids.sort_unstable();
                    let set = sequence::compact_set(&uids);
                    out.extend_from_slice(format!("* VANISHED {set}\r\n").as_bytes());
                }
            } else {
                let view = Arc::make_mut(&mut sel.view);
                let mut i = view.len();
                while i > 0 {
                    i -= 1;
                    if gone.contains(&view[i]) {
                        out.extend_from_slice(format!("* {} EXPUNGE\r\n", i + 1).as_bytes());
                        view.remove(i);
                    }
                }
            }
        }
        // UIDs only grow: anything above our last one is new.
        let last = sel.view.last().copied().unwrap_or(0);
        let all = sh.mailbox.messages();
        let new: Vec<u32> = if all.last().is_some_and(|m| m.uid > last) {
            let from = all.partition_point(|m| m.uid <= last);
            all[from..].iter().map(|m| m.uid).collect()
        } else {
            Vec::new()
        };
        if !new.is_empty() {
            if !sel.read_only {
                let claimed = claim_recent(&sh.mailbox);
                match sel.recent.last_mut() {
                    _ if claimed.is_empty() => {}
                    Some(last) if last.end == claimed.start => last.end = claimed.end,
                    _ => sel.recent.push(claimed),
                }
            }
            Arc::make_mut(&mut sel.view).extend(&new);
            out.extend_from_slice(format!("* {} EXISTS\r\n", sel.view.len()).as_bytes());
            if !self.rev2 {
                out.extend_from_slice(format!("* {} RECENT\r\n", sel.recent_count()).as_bytes());
            }
        }
        if sh.modseq() > sel.seen_modseq {
            // One pass over the mailbox for what changed since our last
            // look (this runs after every command, and any session's STORE
            // moves the modseq): the view is in UID order, so a changed
            // message's sequence number is a binary search away.
            let seen = sel.seen_modseq;
            let changed: Vec<(u32, u64)> = all
                .iter()
                .filter(|m| m.modseq > seen)
                .map(|m| (m.uid, m.modseq))
                .collect();
            for (u, stamp) in changed {
                if new.contains(&u) || sel.own.get(&u).copied() == Some(stamp) {
                    continue;
                }
                let Ok(i) = sel.view.binary_search(&u) else {
                    continue;
                };
                if let Some(m) = sh.mailbox.get(u) {
                    sel.announce_keywords(m.keywords(), &sh.mailbox, out);
                    let flags = flag_list(m.flags, m.keywords(), sel.is_recent(u) && !self.rev2);
                    // RFC 7162 §3.1.4: once CONDSTORE is enabled, every
                    // untagged FETCH with flags carries the MODSEQ.
                    let modseq = if self.condstore {
                        format!(" MODSEQ ({})", m.modseq)
                    } else {
                        String::new()
                    };
                    out.extend_from_slice(
                        format!("* {} FETCH (UID {u} FLAGS {flags}{modseq})\r\n", i + 1).as_bytes(),
                    );
                }
            }
            sel.seen_modseq = sh.modseq();
        }
        // RFC 5267 §4.3.2: with the FETCH and EXISTS responses that carry
        // the changes (ADDTO after EXISTS, §4.3.3).
        context::refresh(sel, &mut sh, out);
        // RFC 7162 §3.2 (RFC 5162 erratum 1810): while expunges wait to
        // be reported (during FETCH, STORE, SEARCH), a client that saved
        // the MODSEQs it was sent as its high-water mark would skip them
        // at its next resync; a HIGHESTMODSEQ just below the first of
        // them tells it where to resume.
        if self.condstore && !sel.pending_expunge.is_empty() {
            let first = sel
                .pending_expunge
                .iter()
                .filter_map(|u| sh.mailbox.expunged_at(*u))
                .min();
            if let Some(m) = first {
                out.extend_from_slice(
                    format!("* OK [HIGHESTMODSEQ {}] Highest\r\n", m - 1).as_bytes(),
                );
            }
        }
        sel.own.clear();
        // A view brought up to the whole mailbox goes back to the shared
        // list (its own copy was made only to apply the changes).
        if sel.pending_expunge.is_empty() && Arc::strong_count(&sel.view) == 1 {
            let shared_uids = sh.uid_list();
            if shared_uids == sel.view {
                sel.view = shared_uids;
            }
        }
    }
}

/// The whole message file, with CRLF line endings.
/// The header section of message `uid` (up to and with the blank line
/// that ends it; the whole file if it has none), read in small pieces so
/// a large message's body stays on disk.
/// Messages looked up by UID along a mailbox's list (sorted by UID), for
/// UIDs asked in ascending order: one walk, not a binary search each
/// (100,000 in a big mailbox's SEARCH or SORT). Out of order still works.
struct UidWalk<'a> {
    messages: &'a [crate::store::maildir::MessageInfo],
    at: usize,
}

impl<'a> UidWalk<'a> {
    fn new(mailbox: &'a Mailbox) -> UidWalk<'a> {
        UidWalk {
            messages: mailbox.messages(),
            at: 0,
        }
    }

    fn get(&mut self, uid: u32) -> Option<&'a crate::store::maildir::MessageInfo> {
        let m = self.messages;
        if m.get(self.at).is_some_and(|x| x.uid > uid) {
            self.at = m.partition_point(|x| x.uid < uid);
        }
        while m.get(self.at).is_some_and(|x| x.uid < uid) {
            self.at += 1;
        }
        m.get(self.at).filter(|x| x.uid == uid)
    }
}

fn read_header(mailbox: &Mailbox, uid: u32) -> Option<Vec<u8>> {
    use std::io::Read;
    const PIECE: usize = 8192;
    let mut f = mailbox.open_message(uid).ok()??;
    let mut v = Vec::with_capacity(PIECE);
    loop {
        let searched = v.len().saturating_sub(2);
        let n = (&mut f).take(PIECE as u64).read_to_end(&mut v).ok()?;
        let lf = memchr::memmem::find(&v[searched..], b"\n\n").map(|i| searched + i + 2);
        let crlf = memchr::memmem::find(&v[searched..], b"\n\r\n").map(|i| searched + i + 3);
        if let Some(at) = lf.into_iter().chain(crlf).min() {
            v.truncate(at);
            return Some(v);
        }
        if n < PIECE {
            return Some(v);
        }
    }
}

/// Message `uid` whole, as its file holds it (line endings as stored).
fn read_message_file(mailbox: &Mailbox, uid: u32) -> Option<Vec<u8>> {
    use std::io::Read;
    let f = mailbox.open_message(uid).ok()??;
    // Read to the length the open file has (one fstat): a delivered
    // Maildir file never changes, so no seek to size the buffer and no
    // read to find the end (two of six calls per message).
    let len = f.metadata().ok()?.len();
    let mut v = Vec::new();
    // (a failed allocation for a huge file is this message's error, not
    // the end of the process)
    v.try_reserve_exact(usize::try_from(len).ok()?).ok()?;
    f.take(len).read_to_end(&mut v).ok()?;
    Some(v)
}

/// Message `uid` whole, with CRLF line endings.
fn read_message(mailbox: &Mailbox, uid: u32) -> Option<Vec<u8>> {
    use std::borrow::Cow;
    let v = read_message_file(mailbox, uid)?;
    let converted = match crate::imap::message::to_crlf(&v) {
        Cow::Owned(crlf) => Some(crlf),
        Cow::Borrowed(_) => None,
    };
    Some(converted.unwrap_or(v))
}
