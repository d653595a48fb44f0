//! What the IMAP commands do to the mail store: one [`Backend`] per logged-in
//! session, owning the user's Maildir and the selected mailbox's view (the
//! sequence numbers the client knows). Blocking; the connection driver runs
//! it off the async threads. Every method returns the response bytes
//! (untagged data, then the tagged status).

use std::cell::OnceCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use imap_codec::encode::Encoder;
use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::core::{IString, Literal, LiteralMode, NString, NString8, Vec1};
use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::extensions::binary::Literal8;
use imap_codec::imap_types::fetch::{
    MacroOrMessageDataItemNames, MessageDataItem, MessageDataItemName, Section,
};
use imap_codec::imap_types::flag::{Flag, FlagFetch, StoreResponse, StoreType};
use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox as MailboxName};
use imap_codec::imap_types::response::{Data, Response};
use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use imap_codec::imap_types::status::StatusDataItemName;
use imap_codec::imap_types::IntoStatic;
use imap_codec::ResponseCodec;

use super::cache::{Parts, PartsCache};
use super::fetch;
use super::proto::list_ext::ListExtended;
use super::proto::response::{astring, flag_list, tagged};
use super::proto::rev2::{SearchReturn, SAVED_PLACEHOLDER};
use super::proto::{RunOptions, State};
use super::search::{self, Context as SearchContext, Query};
use crate::store::maildir::utf7::{mutf7_to_utf8, utf8_to_mutf7};
use crate::store::maildir::{Error as StoreError, Flags, Mailbox, MaildirRoot, MessageInfo};
use imap_codec::imap_types::core::Charset;
use imap_codec::imap_types::search::SearchKey;

/// One open mailbox, shared by every session of this process that has it
/// selected, so a 5,000-message INBOX is held once, not once per session.
/// Each change bumps `modseq` and stamps the message, so every session can
/// tell what changed since it last looked (sync's own change list is
/// consumed by whichever session syncs first).
pub struct Shared {
    mailbox: Mailbox,
    modseq: u64,
    /// uid → modseq of its last flag change or arrival.
    stamps: HashMap<u32, u64>,
    last_sync: Instant,
    /// Bumped whenever messages leave the list.
    expunges: u64,
    /// ENVELOPE/BODY/BODYSTRUCTURE per UID, loaded on first use.
    cache: Option<PartsCache>,
}

/// Sessions look at the directory at most this often: a look after a
/// change re-reads the whole directory, and our own changes are in the
/// list already.
const SYNC_INTERVAL: Duration = Duration::from_millis(250);

impl Shared {
    /// Picks up changes made by others (deliveries, other processes), at
    /// most every [`SYNC_INTERVAL`].
    fn sync(&mut self) -> Result<(), StoreError> {
        if self.last_sync.elapsed() < SYNC_INTERVAL && !take_dirty(self.mailbox.dir()) {
            return Ok(());
        }
        self.sync_now()
    }

    fn sync_now(&mut self) -> Result<(), StoreError> {
        self.last_sync = Instant::now();
        let c = self.mailbox.sync()?;
        if !c.new_uids.is_empty() || !c.flag_changes.is_empty() || !c.expunged_uids.is_empty() {
            super::watch::bump(self.mailbox.dir());
        }
        if !c.new_uids.is_empty() || !c.flag_changes.is_empty() {
            self.modseq += 1;
            for u in c.new_uids.iter().chain(&c.flag_changes) {
                self.stamps.insert(*u, self.modseq);
            }
        }
        for u in &c.expunged_uids {
            self.stamps.remove(u);
        }
        if let Some(cache) = &mut self.cache {
            let gone: HashSet<u32> = c.expunged_uids.iter().copied().collect();
            cache.retain(|u| !gone.contains(&u));
        }
        if !c.expunged_uids.is_empty() {
            self.expunges += 1;
        }
        Ok(())
    }

    /// The structure cache, loaded on first use, and anew if the mailbox
    /// was recreated under another UIDVALIDITY.
    fn cache(&mut self) -> &mut PartsCache {
        let v = self.mailbox.uidvalidity();
        if self.cache.as_ref().is_none_or(|c| c.uidvalidity() != v) {
            let live: HashSet<u32> = self.mailbox.messages().iter().map(|m| m.uid).collect();
            self.cache = Some(PartsCache::load(self.mailbox.dir(), v, &live));
        }
        self.cache.as_mut().expect("loaded above")
    }

    fn flush_cache(&mut self) {
        if let Some(c) = &mut self.cache {
            c.flush();
        }
    }

    fn set_flags(&mut self, uid: u32, flags: Flags, keywords: &[&str]) -> Result<bool, StoreError> {
        let changed = self.mailbox.set_flags(uid, flags, keywords)?;
        if changed {
            super::watch::bump(self.mailbox.dir());
            self.modseq += 1;
            self.stamps.insert(uid, self.modseq);
        }
        Ok(changed)
    }

    fn expunge(&mut self, uids: &[u32]) -> Result<Vec<u32>, StoreError> {
        let gone = self.mailbox.expunge(uids)?;
        for u in &gone {
            self.stamps.remove(u);
        }
        if let Some(cache) = &mut self.cache {
            let set: HashSet<u32> = gone.iter().copied().collect();
            cache.retain(|u| !set.contains(&u));
        }
        if !gone.is_empty() {
            super::watch::bump(self.mailbox.dir());
            self.expunges += 1;
        }
        Ok(gone)
    }
}

type SharedRef = Arc<Mutex<Shared>>;

/// Mailbox directories written to by someone in this process since the
/// shared copy last looked (see [`invalidate`]).
static DIRTY: LazyLock<Mutex<HashSet<PathBuf>>> = LazyLock::new(|| Mutex::new(HashSet::new()));

/// Tells open IMAP sessions that `dir` (a Maildir folder) changed: SMTP
/// delivery, POP3 and the like call this after writing, so a SELECT or
/// NOOP right after sees the change without waiting for the next interval.
pub fn invalidate(dir: &Path) {
    let mut d = DIRTY.lock().unwrap_or_else(|e| e.into_inner());
    // Bounded: only mailboxes someone has open matter.
    if d.len() > 10_000 {
        d.clear();
    }
    d.insert(dir.to_path_buf());
    drop(d);
    super::watch::bump(dir);
}

fn take_dirty(dir: &Path) -> bool {
    let mut d = DIRTY.lock().unwrap_or_else(|e| e.into_inner());
    !d.is_empty() && d.remove(dir)
}

/// Open mailboxes by directory; entries die with their last session.
static OPEN: LazyLock<Mutex<HashMap<PathBuf, Weak<Mutex<Shared>>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Recently used mailboxes stay open for a while after their last session
/// ends, so the next session (a client that logs in for every check) doesn't
/// read the whole directory again.
static KEEP: LazyLock<Mutex<VecDeque<(Instant, SharedRef)>>> =
    LazyLock::new(|| Mutex::new(VecDeque::new()));
const KEEP_MAX: usize = 16;
const KEEP_FOR: Duration = Duration::from_secs(30);

fn keep(s: &SharedRef) {
    let mut k = KEEP.lock().unwrap_or_else(|e| e.into_inner());
    k.retain(|(t, x)| t.elapsed() < KEEP_FOR && !Arc::ptr_eq(x, s));
    k.push_back((Instant::now(), s.clone()));
    while k.len() > KEEP_MAX {
        k.pop_front();
    }
}

/// A mailbox was deleted or renamed: drop what we hold of it.
fn forget(root: &MaildirRoot, name: &str) {
    let Ok(path) = root.folder_path(name) else {
        return;
    };
    OPEN.lock().unwrap_or_else(|e| e.into_inner()).remove(&path);
    KEEP.lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|(_, x)| lock(x).mailbox.dir() != path);
}

fn lock(s: &SharedRef) -> MutexGuard<'_, Shared> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// The shared state of mailbox `name`, opening it if no session has.
fn open_shared(root: &MaildirRoot, name: &str) -> Result<SharedRef, StoreError> {
    let path = if name.eq_ignore_ascii_case("INBOX") {
        root.path().to_path_buf()
    } else {
        root.folder_path(name)?
    };
    let existing = OPEN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&path)
        .and_then(Weak::upgrade);
    if let Some(s) = existing {
        // In-process writers (SMTP delivery, POP3, APPEND) mark the mailbox
        // dirty, so this sees them at once; other processes' changes show
        // within SYNC_INTERVAL.
        lock(&s).sync()?;
        keep(&s);
        return Ok(s);
    }
    let mailbox = root.open(name)?;
    let s = Arc::new(Mutex::new(Shared {
        mailbox,
        modseq: 1,
        stamps: HashMap::new(),
        last_sync: Instant::now(),
        expunges: 0,
        cache: None,
    }));
    let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
    open.retain(|_, w| w.strong_count() > 0);
    // Another session may have opened it meanwhile: use theirs.
    if let Some(other) = open.get(&path).and_then(Weak::upgrade) {
        return Ok(other);
    }
    open.insert(path, Arc::downgrade(&s));
    drop(open);
    keep(&s);
    Ok(s)
}

/// The selected mailbox, as this session knows it.
struct Selected {
    /// Raw (modified UTF-7) name, `INBOX` for the root.
    name: String,
    shared: SharedRef,
    read_only: bool,
    /// UIDs in sequence-number order, as the client knows them.
    view: Vec<u32>,
    /// Expunged by someone else while we could not say so (during FETCH,
    /// STORE, SEARCH; RFC 3501 §7.4.1); reported at the next chance.
    pending_expunge: Vec<u32>,
    /// UIDs from here on are `\Recent` for this session.
    recent_from: u32,
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
}

impl Selected {
    fn is_recent(&self, uid: u32) -> bool {
        uid >= self.recent_from
    }
    fn recent_count(&self) -> usize {
        self.view.iter().filter(|u| **u >= self.recent_from).count()
    }
}

pub struct Backend {
    root: MaildirRoot,
    selected: Option<Selected>,
    /// Where a long FETCH sends its output as it goes (the connection's
    /// writer), so a `FETCH 1:* BODY[]` is neither held whole in memory nor
    /// delayed until the last message is read.
    pub spill: Option<tokio::sync::mpsc::Sender<Vec<u8>>>,
    /// IMAP4rev2 is enabled: no RECENT responses or \\Recent flags (RFC 9051).
    rev2: bool,
}

/// Output size at which a FETCH hands what it has to [`Backend::spill`].
const SPILL_BYTES: usize = 64 * 1024;

/// RFC 6154 special-use attributes from the folder's (English) name, as
/// Dovecot's default config assigns them.
fn special_use(name: &str) -> Option<&'static str> {
    match name {
        "Sent" | "Sent Messages" | "Sent Items" => Some("\\Sent"),
        "Drafts" => Some("\\Drafts"),
        "Junk" | "Spam" => Some("\\Junk"),
        "Trash" | "Deleted Messages" => Some("\\Trash"),
        "Archive" => Some("\\Archive"),
        _ => None,
    }
}

/// IMAP LIST wildcard match (RFC 3501 §6.3.8): `*` matches anything, `%`
/// anything but the hierarchy delimiter.
fn wildcard(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.first() {
        None => name.is_empty(),
        Some(b'*') => (0..=name.len()).any(|i| wildcard(&pattern[1..], &name[i..])),
        Some(b'%') => (0..=name.len())
            .take_while(|&i| i == 0 || name[i - 1] != b'.')
            .any(|i| wildcard(&pattern[1..], &name[i..])),
        Some(c) => name.first().is_some_and(|n| n == c) && wildcard(&pattern[1..], &name[1..]),
    }
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

/// `MESSAGES 3 UNSEEN 1 ...` for the STATUS items named (unknown ones are
/// skipped).
fn status_items<'a>(mb: &Mailbox, items: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut parts = Vec::new();
    for i in items {
        let item = i.to_ascii_uppercase();
        let v = match item.as_str() {
            "MESSAGES" => mb.messages().len() as u64,
            "RECENT" => {
                let first = first_recent_uid(mb);
                mb.messages().iter().filter(|m| m.uid >= first).count() as u64
            }
            "UIDNEXT" => mb.next_uid() as u64,
            "UIDVALIDITY" => mb.uidvalidity() as u64,
            "UNSEEN" => mb
                .messages()
                .iter()
                .filter(|m| !m.flags.contains(Flags::SEEN))
                .count() as u64,
            "DELETED" => mb
                .messages()
                .iter()
                .filter(|m| m.flags.contains(Flags::DELETED))
                .count() as u64,
            "SIZE" => mb.messages().iter().map(|m| m.vsize).sum(),
            _ => continue,
        };
        parts.push(format!("{item} {v}"));
    }
    parts
}

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

fn imap_date(t: SystemTime) -> Option<DateTime> {
    let secs = t.duration_since(UNIX_EPOCH).ok()?.as_secs() as i64;
    let dt = chrono::DateTime::from_timestamp(secs, 0)?.fixed_offset();
    DateTime::try_from(dt).ok()
}

/// `\Recent` as Dovecot keeps it: the first UID no read-write session has
/// been told about yet, per mailbox, in our own disposable
/// `pigeonpost.index.recent` (`<uidvalidity> <first recent uid>`). A session
/// that selects the mailbox read-write claims everything from there on.
const RECENT_FILE: &str = "pigeonpost.index.recent";

fn first_recent_uid(mb: &Mailbox) -> u32 {
    std::fs::read_to_string(mb.dir().join(RECENT_FILE))
        .ok()
        .and_then(|t| {
            let mut w = t.split_whitespace();
            let validity: u32 = w.next()?.parse().ok()?;
            let first: u32 = w.next()?.parse().ok()?;
            (validity == mb.uidvalidity()).then_some(first)
        })
        .unwrap_or(1)
}

fn claim_recent(mb: &Mailbox, next: u32) {
    let path = mb.dir().join(RECENT_FILE);
    let tmp = mb
        .dir()
        .join(format!("{RECENT_FILE}.{}.tmp", std::process::id()));
    // Disposable: losing it only shows \Recent once more.
    if std::fs::write(&tmp, format!("{} {next}\n", mb.uidvalidity())).is_ok() {
        let _ = std::fs::rename(&tmp, &path);
    }
}

fn encode(resp: &Response) -> Vec<u8> {
    ResponseCodec::default().encode(resp).dump()
}

/// BODY[section] data; a part that doesn't exist is the empty string, as
/// Dovecot sends it.
fn section_bytes(p: &fetch::Parsed, section: Option<&Section>) -> Vec<u8> {
    fetch::section(p, section)
        .map(|c| c.into_owned())
        .unwrap_or_default()
}

/// An NString holding `data` (a literal; quoted data can't hold CR/LF).
/// BINARY data: a literal8 (`~{n}`) only when it holds NUL bytes (RFC 3516 §4.2).
fn nstring8(data: Vec<u8>) -> NString8<'static> {
    if memchr::memchr(0, &data).is_some() {
        NString8::Literal8(Literal8 {
            data: data.into(),
            mode: LiteralMode::Sync,
        })
    } else {
        NString8::NString(nstring(data))
    }
}

fn nstring(mut data: Vec<u8>) -> NString<'static> {
    // NUL bytes are the only thing a literal can't hold (RFC 3501 §4.3):
    // drop them rather than fail. One memchr instead of a validating copy.
    if memchr::memchr(0, &data).is_some() {
        data.retain(|b| *b != 0);
    }
    NString(Some(IString::Literal(Literal::unvalidated(data))))
}

impl Backend {
    pub fn new(root: PathBuf) -> Backend {
        Backend {
            root: MaildirRoot::new(root),
            selected: None,
            spill: None,
            rev2: false,
        }
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
            B::Select { mailbox, .. } => {
                self.select(tag, &mailbox, false, utf8, &mut out, &mut state)
            }
            B::Examine { mailbox, .. } => {
                self.select(tag, &mailbox, true, utf8, &mut out, &mut state)
            }
            B::Create { mailbox } => {
                let name = self.name_of(&mailbox, utf8);
                if name == "INBOX" {
                    tagged(tag, "NO", "[ALREADYEXISTS] Mailbox already exists.")
                } else {
                    match self.root.create_folder(&name) {
                        Ok(()) => tagged(tag, "OK", "Create completed."),
                        Err(e) => store_no(tag, &e),
                    }
                }
            }
            B::Delete { mailbox } => {
                let name = self.name_of(&mailbox, utf8);
                if name == "INBOX" {
                    tagged(tag, "NO", "INBOX can't be deleted.")
                } else if self.selected.as_ref().is_some_and(|s| s.name == name) {
                    tagged(tag, "NO", "Can't delete the selected mailbox.")
                } else {
                    match self.root.delete_folder(&name) {
                        Ok(()) => {
                            forget(&self.root, &name);
                            tagged(tag, "OK", "Delete completed.")
                        }
                        Err(e) => store_no(tag, &e),
                    }
                }
            }
            B::Rename { from, to } => self.rename(tag, &from, &to, utf8),
            B::Subscribe { mailbox } => {
                let name = self.name_of(&mailbox, utf8);
                match self.root.set_subscribed(&name, true) {
                    Ok(_) => tagged(tag, "OK", "Subscribe completed."),
                    Err(e) => store_no(tag, &e),
                }
            }
            B::Unsubscribe { mailbox } => {
                let name = self.name_of(&mailbox, utf8);
                match self.root.set_subscribed(&name, false) {
                    Ok(_) => tagged(tag, "OK", "Unsubscribe completed."),
                    Err(e) => store_no(tag, &e),
                }
            }
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
            } => {
                let name = self.name_of(&mailbox, utf8);
                let (sys, kw) = split_flags(&flags);
                let kw: Vec<&str> = kw.iter().map(String::as_str).collect();
                let when = date.map(|d| {
                    let ts = d.as_ref().timestamp().max(0) as u64;
                    UNIX_EPOCH + std::time::Duration::from_secs(ts)
                });
                let data = message_bytes(&message);
                match self.open(&name) {
                    Ok(mb) => match mb.append(&data, sys, &kw, when) {
                        Ok(uid) => {
                            self.touched(&name);
                            self.updates(true, &mut out);
                            tagged(
                                tag,
                                "OK",
                                &format!(
                                    "[APPENDUID {} {uid}] Append completed.",
                                    mb.uidvalidity()
                                ),
                            )
                        }
                        Err(e) => store_no(tag, &e),
                    },
                    Err(StoreError::NotFound(_)) => {
                        tagged(tag, "NO", "[TRYCREATE] Mailbox doesn't exist.")
                    }
                    Err(e) => store_no(tag, &e),
                }
            }
            B::Noop => {
                self.updates(true, &mut out);
                tagged(tag, "OK", "NOOP completed.")
            }
            B::Check => {
                self.updates(true, &mut out);
                tagged(tag, "OK", "Check completed.")
            }
            B::Close => {
                if let Some(sel) = &mut self.selected {
                    if !sel.read_only {
                        let mut sh = lock(&sel.shared);
                        let deleted: Vec<u32> = sh
                            .mailbox
                            .messages()
                            .iter()
                            .filter(|m| m.flags.contains(Flags::DELETED))
                            .map(|m| m.uid)
                            .collect();
                        if let Err(e) = sh.expunge(&deleted) {
                            tracing::warn!(error = %e, "CLOSE: expunge failed");
                        }
                    }
                }
                self.selected = None;
                state = State::Authenticated;
                tagged(tag, "OK", "Close completed.")
            }
            B::Unselect => {
                self.selected = None;
                state = State::Authenticated;
                tagged(tag, "OK", "Unselect completed.")
            }
            B::Expunge => self.expunge(tag, None, &mut out),
            B::ExpungeUid { sequence_set } => self.expunge(tag, Some(&sequence_set), &mut out),
            B::Fetch {
                sequence_set,
                macro_or_item_names,
                uid,
                ..
            } => self.fetch(tag, &sequence_set, &macro_or_item_names, uid, &mut out),
            B::Store {
                sequence_set,
                kind,
                response,
                flags,
                uid,
                ..
            } => self.store(tag, &sequence_set, &kind, &response, &flags, uid, &mut out),
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
            B::Idle => {
                self.updates(true, &mut out);
                String::new()
            }
            other => tagged(
                tag,
                "BAD",
                &format!("Error in IMAP command {}: Not supported.", other.name()),
            ),
        };
        out.extend_from_slice(resp.as_bytes());
        (out, state)
    }

    /// We wrote into mailbox `name` through another handle: if some session
    /// has it open, look now rather than at the next interval.
    fn touched(&mut self, name: &str) {
        let path = if name.eq_ignore_ascii_case("INBOX") {
            self.root.path().to_path_buf()
        } else {
            match self.root.folder_path(name) {
                Ok(p) => p,
                Err(_) => return,
            }
        };
        let open = OPEN
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&path)
            .and_then(Weak::upgrade);
        if let Some(s) = open {
            if let Err(e) = lock(&s).sync_now() {
                tracing::warn!(error = %e, "sync failed");
            }
        }
    }

    /// What an IDLE on the selected mailbox waits on: it changes whenever
    /// the mailbox may have (see [`super::watch`]).
    pub fn idle_changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.selected.as_ref().map(|s| s.changes.clone())
    }

    /// `cmd` with every sequence set that is `$` (see [`SAVED_PLACEHOLDER`])
    /// replaced by the saved search result: UIDs in UID commands and UID
    /// search keys, sequence numbers elsewhere (RFC 5182 §2.1). `None` when
    /// the command would act on no messages.
    fn with_saved_result(&self, mut cmd: CommandBody<'static>) -> Option<CommandBody<'static>> {
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
            B::Search { criteria, .. } => {
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

    /// Untagged updates since the last look: EXPUNGE (if allowed), EXISTS,
    /// RECENT, FETCH FLAGS.
    pub fn updates(&mut self, allow_expunge: bool, out: &mut Vec<u8>) {
        let Some(sel) = &mut self.selected else {
            return;
        };
        let mut sh = lock(&sel.shared);
        if let Err(e) = sh.sync() {
            tracing::warn!(error = %e, "sync failed");
            return;
        }
        // Gone from the mailbox but still in our view: someone expunged it.
        // (Only looked for when something was expunged since our last look:
        // this runs after every command.)
        if sh.expunges != sel.seen_expunges {
            sel.seen_expunges = sh.expunges;
            for &u in &sel.view {
                if sh.mailbox.get(u).is_none() && !sel.pending_expunge.contains(&u) {
                    sel.pending_expunge.push(u);
                }
            }
        }
        if allow_expunge && !sel.pending_expunge.is_empty() {
            let gone: HashSet<u32> = sel.pending_expunge.drain(..).collect();
            let mut i = sel.view.len();
            while i > 0 {
                i -= 1;
                if gone.contains(&sel.view[i]) {
                    out.extend_from_slice(format!("* {} EXPUNGE\r\n", i + 1).as_bytes());
                    sel.view.remove(i);
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
            let first = first_recent_uid(&sh.mailbox);
            if first <= *new.last().unwrap_or(&0) && !sel.read_only {
                sel.recent_from = sel.recent_from.min(first.max(new[0]));
                claim_recent(&sh.mailbox, sh.mailbox.next_uid());
            }
            sel.view.extend(&new);
            out.extend_from_slice(format!("* {} EXISTS\r\n", sel.view.len()).as_bytes());
            if !self.rev2 {
                out.extend_from_slice(format!("* {} RECENT\r\n", sel.recent_count()).as_bytes());
            }
        }
        if sh.modseq > sel.seen_modseq {
            for (i, &u) in sel.view.iter().enumerate() {
                let stamp = sh.stamps.get(&u).copied();
                let changed = stamp.is_some_and(|m| m > sel.seen_modseq);
                if !changed || new.contains(&u) || sel.own.get(&u).copied() == stamp {
                    continue;
                }
                if let Some(m) = sh.mailbox.get(u) {
                    let flags = flag_list(m.flags, &m.keywords, sel.is_recent(u) && !self.rev2);
                    out.extend_from_slice(
                        format!("* {} FETCH (UID {u} FLAGS {flags})\r\n", i + 1).as_bytes(),
                    );
                }
            }
            sel.seen_modseq = sh.modseq;
        }
        sel.own.clear();
    }

    #[allow(clippy::too_many_arguments)]
    fn select(
        &mut self,
        tag: &str,
        mailbox: &MailboxName,
        read_only: bool,
        utf8: bool,
        out: &mut Vec<u8>,
        state: &mut State,
    ) -> String {
        // A failed SELECT leaves no mailbox selected (RFC 3501 §6.3.1).
        self.selected = None;
        *state = State::Authenticated;
        let name = self.name_of(mailbox, utf8);
        let shared = match open_shared(&self.root, &name) {
            Ok(m) => m,
            Err(e) => return store_no(tag, &e),
        };
        let sh = lock(&shared);
        let mb = &sh.mailbox;
        let view: Vec<u32> = mb.messages().iter().map(|m| m.uid).collect();
        let changes = super::watch::subscribe(mb.dir());
        let first = first_recent_uid(mb);
        let recent_count = view.iter().filter(|u| **u >= first).count();
        if !read_only && recent_count > 0 {
            claim_recent(mb, mb.next_uid());
        }
        let unseen = mb
            .messages()
            .iter()
            .position(|m| !m.flags.contains(Flags::SEEN))
            .map(|i| i + 1);
        let keywords: Vec<String> = {
            let mut k: Vec<String> = mb
                .messages()
                .iter()
                .flat_map(|m| m.keywords.iter().cloned())
                .collect();
            k.sort();
            k.dedup();
            k
        };
        let kw = if keywords.is_empty() {
            String::new()
        } else {
            format!(" {}", keywords.join(" "))
        };
        let s = format!(
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft{kw})\r\n\
             * OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft{kw} \\*)] Flags permitted.\r\n\
             * {} EXISTS\r\n",
            view.len(),
        );
        out.extend_from_slice(s.as_bytes());
        if self.rev2 {
            // RFC 9051 §6.3.2: the mailbox's LIST response instead of RECENT.
            let shown = Self::display_name(&name, true);
            out.extend_from_slice(format!("* LIST () \".\" {}\r\n", astring(&shown)).as_bytes());
        } else {
            out.extend_from_slice(format!("* {recent_count} RECENT\r\n").as_bytes());
        }
        if let Some(u) = unseen {
            out.extend_from_slice(format!("* OK [UNSEEN {u}] First unseen.\r\n").as_bytes());
        }
        out.extend_from_slice(
            format!(
                "* OK [UIDVALIDITY {}] UIDs valid\r\n* OK [UIDNEXT {}] Predicted next UID\r\n",
                mb.uidvalidity(),
                mb.next_uid()
            )
            .as_bytes(),
        );
        let seen_modseq = sh.modseq;
        let seen_expunges = sh.expunges;
        drop(sh);
        self.selected = Some(Selected {
            name,
            shared,
            read_only,
            view,
            pending_expunge: Vec::new(),
            recent_from: first,
            seen_modseq,
            seen_expunges,
            own: HashMap::new(),
            saved: Vec::new(),
            changes,
        });
        *state = State::Selected { read_only };
        if read_only {
            tagged(tag, "OK", "[READ-ONLY] Examine completed.")
        } else {
            tagged(tag, "OK", "[READ-WRITE] Select completed.")
        }
    }

    fn rename(&mut self, tag: &str, from: &MailboxName, to: &MailboxName, utf8: bool) -> String {
        let (old, new) = (self.name_of(from, utf8), self.name_of(to, utf8));
        if new == "INBOX" {
            return tagged(tag, "NO", "[ALREADYEXISTS] Mailbox already exists.");
        }
        if old == "INBOX" {
            // RFC 3501 §6.3.5: move INBOX's messages to the new name, INBOX stays.
            let result = (|| {
                self.root.create_folder(&new)?;
                let inbox = self.root.inbox()?;
                let dest = self.root.open(&new)?;
                let uids: Vec<u32> = inbox.messages().iter().map(|m| m.uid).collect();
                inbox.copy_to(&uids, &dest)?;
                let mut inbox = inbox;
                inbox.expunge(&uids)?;
                Ok::<(), StoreError>(())
            })();
            return match result {
                Ok(()) => tagged(tag, "OK", "Rename completed."),
                Err(e) => store_no(tag, &e),
            };
        }
        match self.root.rename_folder(&old, &new) {
            Ok(()) => {
                forget(&self.root, &old);
                tagged(tag, "OK", "Rename completed.")
            }
            Err(e) => store_no(tag, &e),
        }
    }

    fn list(
        &mut self,
        tag: &str,
        reference: &MailboxName,
        pattern: &ListMailbox,
        lsub: bool,
        utf8: bool,
        out: &mut Vec<u8>,
    ) -> String {
        let cmd = if lsub { "LSUB" } else { "LIST" };
        let reference = match reference {
            MailboxName::Inbox => "INBOX".to_string(),
            MailboxName::Other(o) => String::from_utf8_lossy(o.as_ref()).into_owned(),
        };
        let pattern = match pattern {
            ListMailbox::Token(t) => String::from_utf8_lossy(t.as_ref()).into_owned(),
            ListMailbox::String(s) => String::from_utf8_lossy(s.as_ref()).into_owned(),
        };
        if pattern.is_empty() && !lsub {
            // The hierarchy delimiter and root (RFC 3501 §6.3.8).
            out.extend_from_slice(b"* LIST (\\Noselect) \".\" \"\"\r\n");
            return tagged(tag, "OK", "List completed.");
        }
        let pattern = format!("{reference}{pattern}");
        let pattern = if utf8 {
            utf8_to_mutf7(&pattern)
        } else {
            pattern
        };
        let folders = match self.root.list_folders() {
            Ok(f) => f,
            Err(e) => return store_no(tag, &e),
        };
        let subscribed: HashSet<String> = if lsub {
            self.root
                .subscriptions()
                .unwrap_or_default()
                .into_iter()
                .collect()
        } else {
            HashSet::new()
        };
        let mut names: Vec<String> = vec!["INBOX".into()];
        names.extend(folders.iter().map(|f| f.name.clone()));
        let has_children = |n: &str| {
            names
                .iter()
                .any(|o| o.len() > n.len() && o.starts_with(n) && o.as_bytes()[n.len()] == b'.')
        };
        for n in &names {
            let matched = if n == "INBOX" {
                wildcard(pattern.to_ascii_uppercase().as_bytes(), b"INBOX")
            } else {
                wildcard(pattern.as_bytes(), n.as_bytes())
            };
            if !matched || (lsub && !subscribed.contains(n)) {
                continue;
            }
            let mut attrs: Vec<&str> = Vec::new();
            attrs.push(if has_children(n) {
                "\\HasChildren"
            } else {
                "\\HasNoChildren"
            });
            if let Some(su) = special_use(n) {
                attrs.push(su);
            }
            let shown = Self::display_name(n, utf8);
            out.extend_from_slice(
                format!(
                    "* {cmd} ({}) \".\" {}\r\n",
                    attrs.join(" "),
                    astring(&shown)
                )
                .as_bytes(),
            );
        }
        tagged(
            tag,
            "OK",
            &format!("{} completed.", if lsub { "Lsub" } else { "List" }),
        )
    }

    /// LIST with RFC 5258 selection/return options, RFC 6154 SPECIAL-USE
    /// selection and RFC 5819 STATUS return.
    pub fn list_extended(&mut self, tag: &str, l: &ListExtended, utf8: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let folders = match self.root.list_folders() {
            Ok(f) => f,
            Err(e) => {
                out.extend_from_slice(store_no(tag, &e).as_bytes());
                return out;
            }
        };
        let mut names: Vec<String> = vec!["INBOX".into()];
        names.extend(folders.iter().map(|f| f.name.clone()));
        let subscribed: Vec<String> = if l.select_subscribed || l.return_subscribed {
            self.root.subscriptions().unwrap_or_default()
        } else {
            Vec::new()
        };
        let is_subscribed = |n: &str| {
            subscribed
                .iter()
                .any(|s| s == n || (n == "INBOX" && s.eq_ignore_ascii_case("INBOX")))
        };
        // SUBSCRIBED lists subscribed names even when they no longer exist.
        let mut candidates = names.clone();
        if l.select_subscribed {
            for s in &subscribed {
                if !candidates.iter().any(|n| n == s) && !s.eq_ignore_ascii_case("INBOX") {
                    candidates.push(s.clone());
                }
            }
        }
        let patterns: Vec<String> = l
            .patterns
            .iter()
            .map(|p| {
                let full = format!("{}{p}", l.reference);
                if utf8 {
                    utf8_to_mutf7(&full)
                } else {
                    full
                }
            })
            .collect();
        let has_children = |n: &str| {
            names
                .iter()
                .any(|o| o.len() > n.len() && o.starts_with(n) && o.as_bytes()[n.len()] == b'.')
        };
        for n in &candidates {
            let matched = patterns.iter().any(|p| {
                if n == "INBOX" {
                    wildcard(p.to_ascii_uppercase().as_bytes(), b"INBOX")
                } else {
                    wildcard(p.as_bytes(), n.as_bytes())
                }
            });
            if !matched {
                continue;
            }
            let exists = names.contains(n);
            let use_attr = special_use(n);
            if l.select_subscribed && !is_subscribed(n) {
                continue;
            }
            if l.select_special_use && use_attr.is_none() {
                continue;
            }
            let mut attrs: Vec<&str> = Vec::new();
            if !exists {
                attrs.push("\\NonExistent");
            } else {
                attrs.push(if has_children(n) {
                    "\\HasChildren"
                } else {
                    "\\HasNoChildren"
                });
            }
            if let Some(su) = use_attr {
                attrs.push(su);
            }
            if (l.select_subscribed || l.return_subscribed) && is_subscribed(n) {
                attrs.push("\\Subscribed");
            }
            let shown = astring(&Self::display_name(n, utf8));
            out.extend_from_slice(
                format!("* LIST ({}) \".\" {shown}\r\n", attrs.join(" ")).as_bytes(),
            );
            if let (Some(items), true) = (&l.return_status, exists) {
                if let Ok(mb) = self.open(n) {
                    let parts = status_items(&mb, items.iter().map(String::as_str));
                    out.extend_from_slice(
                        format!("* STATUS {shown} ({})\r\n", parts.join(" ")).as_bytes(),
                    );
                }
            }
        }
        out.extend_from_slice(tagged(tag, "OK", "List completed.").as_bytes());
        out
    }

    fn status(
        &mut self,
        tag: &str,
        mailbox: &MailboxName,
        items: &[StatusDataItemName],
        utf8: bool,
        out: &mut Vec<u8>,
    ) -> String {
        let name = self.name_of(mailbox, utf8);
        let mb = match self.open(&name) {
            Ok(m) => m,
            Err(e) => return store_no(tag, &e),
        };
        let names = items.iter().filter_map(|i| match i {
            StatusDataItemName::Messages => Some("MESSAGES"),
            StatusDataItemName::Recent => Some("RECENT"),
            StatusDataItemName::UidNext => Some("UIDNEXT"),
            StatusDataItemName::UidValidity => Some("UIDVALIDITY"),
            StatusDataItemName::Unseen => Some("UNSEEN"),
            StatusDataItemName::Deleted => Some("DELETED"),
            StatusDataItemName::Size => Some("SIZE"),
            _ => None,
        });
        let parts = status_items(&mb, names);
        out.extend_from_slice(
            format!(
                "* STATUS {} ({})\r\n",
                astring(&Self::display_name(&name, utf8)),
                parts.join(" ")
            )
            .as_bytes(),
        );
        tagged(tag, "OK", "Status completed.")
    }

    /// `(seq, uid)` of the messages a set names.
    /// A sequence number past the last message: RFC 9051 §6.4 (and
    /// Dovecot) answer BAD. `*` is always fine; UIDs never are out of range.
    fn bad_sequence_set(&self, set: &SequenceSet, uid: bool) -> bool {
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

    fn resolve(&self, set: &SequenceSet, uid: bool) -> Vec<(u32, u32)> {
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
        let mut ranges = intervals(set, largest);
        ranges.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
        for (lo, hi) in ranges {
            match merged.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
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

    fn expunge(&mut self, tag: &str, only: Option<&SequenceSet>, out: &mut Vec<u8>) -> String {
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
        drop(sh);
        self.updates(true, out);
        tagged(tag, "OK", "Expunge completed.")
    }

    fn fetch(
        &mut self,
        tag: &str,
        set: &SequenceSet,
        what: &MacroOrMessageDataItemNames<'static>,
        uid: bool,
        out: &mut Vec<u8>,
    ) -> String {
        let mut items: Vec<MessageDataItemName<'static>> = match what {
            MacroOrMessageDataItemNames::Macro(m) => {
                m.expand().into_iter().map(|i| i.into_static()).collect()
            }
            MacroOrMessageDataItemNames::MessageDataItemNames(v) => v.clone(),
        };
        if uid && !items.iter().any(|i| matches!(i, MessageDataItemName::Uid)) {
            items.insert(0, MessageDataItemName::Uid);
        }
        if self.bad_sequence_set(set, uid) {
            return tagged(
                tag,
                "BAD",
                "Error in IMAP command FETCH: Invalid messageset.",
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
        let mut was_current = sh.modseq == sel.seen_modseq;
        // RFC 3516 §4.1: a part in an encoding we can't undo fails the FETCH.
        let mut unknown_cte = false;
        // ENVELOPE, BODY and BODYSTRUCTURE come from the structure cache;
        // only a miss, or an item with message bytes, reads the file.
        let wants_structure = items.iter().any(|i| {
            matches!(
                i,
                MessageDataItemName::Envelope
                    | MessageDataItemName::Body
                    | MessageDataItemName::BodyStructure
            )
        });
        let needs_body = items.iter().any(|i| {
            !matches!(
                i,
                MessageDataItemName::Uid
                    | MessageDataItemName::Flags
                    | MessageDataItemName::InternalDate
                    | MessageDataItemName::Rfc822Size
                    | MessageDataItemName::Envelope
                    | MessageDataItemName::Body
                    | MessageDataItemName::BodyStructure
            )
        });
        let sets_seen = !sel.read_only
            && items.iter().any(|i| match i {
                MessageDataItemName::BodyExt { peek, .. } => !peek,
                MessageDataItemName::Rfc822 | MessageDataItemName::Rfc822Text => true,
                MessageDataItemName::Binary { peek, .. } => !peek,
                _ => false,
            });
        for (seq, u) in targets {
            let Some(info) = sh.mailbox.get(u).cloned() else {
                continue;
            };
            let mut flags = info.flags;
            let mut seen_now = false;
            if sets_seen && !flags.contains(Flags::SEEN) {
                flags.insert(Flags::SEEN);
                let kw: Vec<&str> = info.keywords.iter().map(String::as_str).collect();
                if sh.set_flags(u, flags, &kw).unwrap_or(false) {
                    seen_now = true;
                    sel.own.insert(u, sh.modseq);
                }
            }
            let cached = if wants_structure {
                sh.cache().get(u)
            } else {
                None
            };
            let raw = if needs_body || (wants_structure && cached.is_none()) {
                match read_message(&sh.mailbox, u) {
                    Some(r) => Some(r),
                    None => continue,
                }
            } else {
                None
            };
            // Parsed only when an item needs the MIME structure: a whole
            // BODY[] (what mbsync fetches) is sent as it is.
            let raw_ref = raw.as_deref();
            let cell: OnceCell<fetch::Parsed> = OnceCell::new();
            let parsed = || raw_ref.map(|r| cell.get_or_init(|| fetch::parse(r)));
            let parts = match cached {
                Some(p) => Some(p),
                None if wants_structure => parsed().map(|p| {
                    let parts = Parts::of(p);
                    sh.cache().insert(u, &parts);
                    parts
                }),
                None => None,
            };
            let mut data: Vec<MessageDataItem<'static>> = Vec::new();
            let mut flags_at: Option<usize> = None;
            for item in &items {
                match item {
                    MessageDataItemName::Uid => {
                        if let Some(n) = NonZeroU32::new(u) {
                            data.push(MessageDataItem::Uid(n));
                        }
                    }
                    MessageDataItemName::Flags => flags_at = Some(data.len()),
                    MessageDataItemName::InternalDate => {
                        if let Some(d) = imap_date(info.internal_date) {
                            data.push(MessageDataItem::InternalDate(d));
                        }
                    }
                    MessageDataItemName::Rfc822Size => {
                        data.push(MessageDataItem::Rfc822Size(info.vsize as u32))
                    }
                    MessageDataItemName::Envelope => {
                        if let Some(p) = &parts {
                            data.push(MessageDataItem::Envelope(p.envelope.clone()));
                        }
                    }
                    MessageDataItemName::Body => {
                        if let Some(p) = &parts {
                            data.push(MessageDataItem::Body(p.body.clone()));
                        }
                    }
                    MessageDataItemName::BodyStructure => {
                        if let Some(p) = &parts {
                            data.push(MessageDataItem::BodyStructure(p.bodystructure.clone()));
                        }
                    }
                    MessageDataItemName::BodyExt {
                        section, partial, ..
                    } => {
                        if let Some(r) = raw_ref {
                            let bytes = match section {
                                None => r.to_vec(),
                                Some(_) => parsed()
                                    .map(|p| section_bytes(p, section.as_ref()))
                                    .unwrap_or_default(),
                            };
                            let (origin, bytes) = match partial {
                                Some((o, l)) => {
                                    (Some(*o), fetch::partial(&bytes, *o, l.get()).to_vec())
                                }
                                None => (None, bytes),
                            };
                            data.push(MessageDataItem::BodyExt {
                                section: section.clone(),
                                origin,
                                data: nstring(bytes),
                            });
                        }
                    }
                    MessageDataItemName::Binary {
                        section, partial, ..
                    } => match parsed().map(|p| fetch::binary_section(p, section)) {
                        Some(Ok(bytes)) => {
                            let bytes = match partial {
                                Some((o, l)) => fetch::partial(&bytes, *o, l.get()).to_vec(),
                                None => bytes.into_owned(),
                            };
                            data.push(MessageDataItem::Binary {
                                section: section.clone(),
                                value: nstring8(bytes),
                            });
                        }
                        Some(Err(fetch::BinaryError::NoSuchPart)) => {
                            data.push(MessageDataItem::Binary {
                                section: section.clone(),
                                value: NString8::NString(NString(None)),
                            });
                        }
                        Some(Err(fetch::BinaryError::UnknownCte)) => unknown_cte = true,
                        None => {}
                    },
                    MessageDataItemName::BinarySize { section } => {
                        match parsed().map(|p| fetch::binary_section(p, section)) {
                            Some(Ok(bytes)) => data.push(MessageDataItem::BinarySize {
                                section: section.clone(),
                                size: bytes.len() as u32,
                            }),
                            Some(Err(fetch::BinaryError::UnknownCte)) => unknown_cte = true,
                            _ => {}
                        }
                    }
                    MessageDataItemName::Rfc822 => {
                        if let Some(r) = raw_ref {
                            data.push(MessageDataItem::Rfc822(nstring(r.to_vec())));
                        }
                    }
                    MessageDataItemName::Rfc822Header => {
                        if let Some(p) = parsed() {
                            let s = Section::Header(None);
                            data.push(MessageDataItem::Rfc822Header(nstring(section_bytes(
                                p,
                                Some(&s),
                            ))));
                        }
                    }
                    MessageDataItemName::Rfc822Text => {
                        if let Some(p) = parsed() {
                            let s = Section::Text(None);
                            data.push(MessageDataItem::Rfc822Text(nstring(section_bytes(
                                p,
                                Some(&s),
                            ))));
                        }
                    }
                }
            }
            // FETCH FLAGS goes where it was asked for; a \Seen set by this
            // FETCH is reported even when FLAGS wasn't (RFC 3501 §6.4.5).
            let flag_item = {
                let mut f: Vec<FlagFetch<'static>> = flags
                    .imap_names()
                    .filter_map(|n| {
                        Flag::try_from(n)
                            .ok()
                            .map(|f| FlagFetch::Flag(f.into_static()))
                    })
                    .collect();
                if sel.is_recent(u) && !self.rev2 {
                    f.push(FlagFetch::Recent);
                }
                for k in &info.keywords {
                    if let Ok(fl) = Flag::try_from(k.as_str()) {
                        f.push(FlagFetch::Flag(fl.into_static()));
                    }
                }
                MessageDataItem::Flags(f)
            };
            match flags_at {
                Some(i) => data.insert(i.min(data.len()), flag_item),
                None if seen_now => data.push(flag_item),
                None => {}
            }
            let Ok(items) = Vec1::try_from(data) else {
                continue;
            };
            let Some(seq) = NonZeroU32::new(seq) else {
                continue;
            };
            out.extend_from_slice(&encode(&Response::Data(Data::Fetch { seq, items })));
            if out.len() >= SPILL_BYTES {
                if let Some(spill) = &self.spill {
                    // Not holding the mailbox while the client reads.
                    sh.flush_cache();
                    let modseq = sh.modseq;
                    drop(sh);
                    let _ = spill.blocking_send(std::mem::take(out));
                    sh = lock(&shared);
                    // Others' changes meanwhile are still news to report.
                    was_current &= sh.modseq == modseq;
                }
            }
        }
        sh.flush_cache();
        // No EXPUNGE during FETCH (RFC 3501 §7.4.1), but UID FETCH may.
        if was_current {
            sel.seen_modseq = sh.modseq;
        }
        drop(sh);
        self.updates(uid, out);
        if unknown_cte {
            return tagged(
                tag,
                "NO",
                "[UNKNOWN-CTE] Unknown Content-Transfer-Encoding.",
            );
        }
        tagged(tag, "OK", "Fetch completed.")
    }

    #[allow(clippy::too_many_arguments)]
    fn store(
        &mut self,
        tag: &str,
        set: &SequenceSet,
        kind: &StoreType,
        response: &StoreResponse,
        flags: &[Flag],
        uid: bool,
        out: &mut Vec<u8>,
    ) -> String {
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
        let was_current = sh.modseq == sel.seen_modseq;
        if sel.read_only {
            return tagged(tag, "NO", "[READ-ONLY] Mailbox is read-only.");
        }
        let (sys, kws) = split_flags(flags);
        for (seq, u) in targets {
            let Some(info) = sh.mailbox.get(u).cloned() else {
                continue;
            };
            let (new_flags, new_kw): (Flags, Vec<String>) = match kind {
                StoreType::Replace => (sys, kws.clone()),
                StoreType::Add => {
                    let mut k = info.keywords.clone();
                    for x in &kws {
                        if !k.iter().any(|y| y.eq_ignore_ascii_case(x)) {
                            k.push(x.clone());
                        }
                    }
                    (info.flags | sys, k)
                }
                StoreType::Remove => (
                    info.flags.difference(sys),
                    info.keywords
                        .iter()
                        .filter(|k| !kws.iter().any(|x| x.eq_ignore_ascii_case(k)))
                        .cloned()
                        .collect(),
                ),
            };
            let kw: Vec<&str> = new_kw.iter().map(String::as_str).collect();
            match sh.set_flags(u, new_flags, &kw) {
                Ok(true) => {
                    sel.own.insert(u, sh.modseq);
                }
                Ok(false) => {}
                Err(e) => return store_no(tag, &e),
            }
            if *response == StoreResponse::Answer {
                let m = sh.mailbox.get(u);
                let (f, k) = m
                    .map(|m| (m.flags, m.keywords.clone()))
                    .unwrap_or((new_flags, new_kw));
                let fl = flag_list(f, &k, sel.is_recent(u) && !self.rev2);
                let uid_part = if uid {
                    format!("UID {u} ")
                } else {
                    String::new()
                };
                out.extend_from_slice(
                    format!("* {seq} FETCH ({uid_part}FLAGS {fl})\r\n").as_bytes(),
                );
            }
        }
        if was_current {
            sel.seen_modseq = sh.modseq;
        }
        drop(sh);
        self.updates(uid, out);
        tagged(tag, "OK", "Store completed.")
    }

    #[allow(clippy::too_many_arguments)]
    fn copy(
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
        let pairs = match sh.mailbox.copy_to(&uids, &dest) {
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

    fn search(
        &mut self,
        tag: &str,
        criteria: &[SearchKey<'static>],
        charset: Option<&Charset<'static>>,
        uid: bool,
        ret: Option<SearchReturn>,
        out: &mut Vec<u8>,
    ) -> String {
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
        let sh = lock(&shared);
        let needs = query.needs();
        let ctx = SearchContext {
            max_seq: sel.view.len() as u32,
            max_uid: sel.view.last().copied().unwrap_or(0),
            utc_offset: 0,
        };
        let mut found = Vec::new();
        for (i, &u) in sel.view.iter().enumerate() {
            let Some(info) = sh.mailbox.get(u) else {
                continue;
            };
            let data = if needs.header || needs.body {
                read_message(&sh.mailbox, u)
            } else {
                None
            };
            let c = Candidate {
                seq: i as u32 + 1,
                info,
                recent: sel.is_recent(u),
                data,
            };
            if query.matches(&c, &ctx) {
                found.push(if uid { u } else { i as u32 + 1 });
            }
        }
        match ret {
            None => {
                let list: Vec<String> = found.iter().map(|n| n.to_string()).collect();
                let sep = if list.is_empty() { "" } else { " " };
                out.extend_from_slice(format!("* SEARCH{sep}{}\r\n", list.join(" ")).as_bytes());
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
                // SAVE alone answers nothing (RFC 5182 §2.4).
                if ret.min || ret.max || ret.all || ret.count {
                    out.extend_from_slice(esearch(tag, uid, &found, ret).as_bytes());
                }
            }
        }
        drop(sh);
        self.updates(uid, out);
        tagged(tag, "OK", "Search completed.")
    }
}

/// The ESEARCH response (RFC 4731 §3.1, RFC 9051 §7.3.4); `found` ascending.
fn esearch(tag: &str, uid: bool, found: &[u32], ret: SearchReturn) -> String {
    let mut s = format!("* ESEARCH (TAG {})", super::proto::response::quote(tag));
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
    if ret.count {
        s.push_str(&format!(" COUNT {}", found.len()));
    }
    s.push_str("\r\n");
    s
}

/// Ascending numbers as runs of consecutive ones: `(first, last)`.
fn runs(numbers: &[u32]) -> Vec<(u32, u32)> {
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
fn compact_set(numbers: &[u32]) -> String {
    let parts: Vec<String> = runs(numbers)
        .into_iter()
        .map(|(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}:{b}")
            }
        })
        .collect();
    parts.join(",")
}

/// The whole message file, with CRLF line endings.
fn read_message(mailbox: &Mailbox, uid: u32) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut f = mailbox.open_message(uid).ok()??;
    let mut v = Vec::new();
    f.read_to_end(&mut v).ok()?;
    Some(fetch::to_crlf(&v).into_owned())
}

/// One message for the search evaluator.
struct Candidate<'a> {
    seq: u32,
    info: &'a MessageInfo,
    recent: bool,
    data: Option<Vec<u8>>,
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
        &self.info.keywords
    }
    fn is_recent(&self) -> bool {
        self.recent
    }
    /// RFC822.SIZE counts CRLF line endings: the vsize, not the file size.
    #[allow(clippy::misnamed_getters)]
    fn size(&self) -> u64 {
        self.info.vsize
    }
    fn internal_date(&self) -> i64 {
        self.info
            .internal_date
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }
    fn message(&self) -> Option<&[u8]> {
        self.data.as_deref()
    }
}

/// The APPEND message bytes.
fn message_bytes(m: &imap_codec::imap_types::extensions::binary::LiteralOrLiteral8) -> Vec<u8> {
    use imap_codec::imap_types::extensions::binary::LiteralOrLiteral8 as L;
    match m {
        L::Literal(l) => l.as_ref().to_vec(),
        L::Literal8(l) => l.data.as_ref().to_vec(),
    }
}
