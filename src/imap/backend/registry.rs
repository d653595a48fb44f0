//! The shared-mailbox registry: one [`Shared`] per open mailbox in this
//! process, found by directory, so every session that has a mailbox selected
//! sees the same list, flag stamps and structure cache. Each change is
//! stamped with a modseq, which is what the untagged EXISTS/EXPUNGE/FETCH
//! updates of every session are computed from (RFC 3501 §5.2 and §7.4.1,
//! RFC 9051 §5.2 and §7.5.1). In-process writers (SMTP delivery, POP3)
//! tell the server's [`Notifier`], which the shared copies ask before
//! trusting what they hold.
//!
//! One [`Mailboxes`] per server, in `imap::Ctx`; [`Backend::touched`] is
//! here as the only other user of its insides.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use super::status::Counts;
use super::Backend;
use crate::imap::cache::PartsCache;
use crate::imap::keys::{DatesFile, KeysFile, Payload, RecordFile, SentDate};
use crate::imap::search::HeaderKeys;
use crate::store::maildir::{Error as StoreError, Flags, Mailbox, MaildirRoot, StatusStamp};
use crate::store::notify::Notifier;

/// One open mailbox, shared by every session of this process that has it
/// selected, so a 5,000-message INBOX is held once, not once per session.
/// Each change takes a new RFC 7162 mod-sequence (the mailbox's, kept in
/// `pigeonpost.index.modseq`), so every session can tell what changed since
/// it last looked (sync's own change list is consumed by whichever session
/// syncs first).
pub struct Shared {
    pub(super) mailbox: Mailbox,
    last_sync: Instant,
    /// Bumped whenever messages leave the list.
    pub(super) expunges: u64,
    /// ENVELOPE/BODY/BODYSTRUCTURE per UID, loaded on first use.
    cache: Option<PartsCache>,
    /// What header searches and SORT (DATE) compare, per UID: loaded from
    /// `pigeonpost.index.keys` by the first search that needs them, made
    /// (and appended there) for messages it lacks; under `keys_validity`.
    keys: FxHashMap<u32, HeaderKeys>,
    keys_validity: u32,
    /// SORT (DATE)'s sent dates per UID, from `pigeonpost.index.dates`
    /// (the keys would do, but are ~8× the bytes to read on a cold
    /// mailbox); under `dates_validity`.
    dates: FxHashMap<u32, SentDate>,
    dates_validity: u32,
    notify: Arc<Notifier>,
    /// The mailbox's UIDs as one shared list: every session whose view is
    /// the whole current mailbox holds this same copy (200 idle sessions
    /// on a 5,000-message INBOX would otherwise keep 200 × 20 KB).
    uids: Arc<Vec<u32>>,
}

/// The mailbox's `T` file; `records` loaded from it first if they were
/// of another UIDVALIDITY (`validity`), or not loaded yet.
fn load_current<T: Payload>(
    mailbox: &Mailbox,
    records: &mut FxHashMap<u32, T>,
    validity: &mut u32,
) -> RecordFile<T> {
    let v = mailbox.uidvalidity();
    let file = RecordFile::new(mailbox.dir(), v);
    if *validity != v {
        *records = file.load(mailbox.messages().len(), |u| mailbox.get(u).is_some());
        *validity = v;
    }
    file
}

/// Sessions look at the directory at most this often (unless the
/// kernel's log already has news for it): a look after a change may list
/// the whole directory, and our own changes are in the list already.
const SYNC_INTERVAL: Duration = Duration::from_millis(250);

impl Shared {
    /// Picks up changes made by others (deliveries, other processes), at
    /// most every [`SYNC_INTERVAL`].
    pub(super) fn sync(&mut self) -> Result<(), StoreError> {
        // Every command ends here: its flag changes' modseqs go to disk.
        self.mailbox.flush_modseqs();
        // A followed mailbox with news looks at once: that costs only the
        // news (IDLE's wake-up comes with them).
        if self.last_sync.elapsed() < SYNC_INTERVAL
            && !self.mailbox.log_pending()
            && !self.notify.take_dirty(self.mailbox.dir())
        {
            return Ok(());
        }
        self.sync_now()
    }

    fn sync_now(&mut self) -> Result<(), StoreError> {
        self.last_sync = Instant::now();
        let c = self.mailbox.sync()?;
        if !c.new_uids.is_empty() || !c.flag_changes.is_empty() || !c.expunged_uids.is_empty() {
            self.notify.bump(self.mailbox.dir());
        }
        self.forget_expunged(&c.expunged_uids);
        if !c.expunged_uids.is_empty() {
            self.expunges += 1;
        }
        Ok(())
    }

    /// Drops what the caches hold of messages that are gone.
    fn forget_expunged(&mut self, gone: &[u32]) {
        if gone.is_empty() {
            return;
        }
        let set: HashSet<u32> = gone.iter().copied().collect();
        if let Some(cache) = &mut self.cache {
            cache.retain(|u| !set.contains(&u));
        }
        self.keys.retain(|u, _| !set.contains(u));
        self.dates.retain(|u, _| !set.contains(u));
    }

    /// Makes sure the [`HeaderKeys`] of every message of `uids` still here
    /// are known: from the keys file on first use, else from the header of
    /// each (a message never changes, so once is enough while the
    /// UIDVALIDITY holds); new ones are appended to the file.
    pub(super) fn header_keys(&mut self, uids: &[u32]) {
        let file: KeysFile = load_current(&self.mailbox, &mut self.keys, &mut self.keys_validity);
        let mut made = Vec::new();
        for &u in uids {
            if !self.keys.contains_key(&u) {
                if let Some(header) = super::read_header(&self.mailbox, u) {
                    self.keys.insert(u, HeaderKeys::of(&header));
                    made.push(u);
                }
            }
        }
        let new: Vec<(u32, &HeaderKeys)> = made.iter().map(|u| (*u, &self.keys[u])).collect();
        file.append(&new);
    }

    /// Makes sure the sent date of every message of `uids` still here is
    /// known: from the dates file on first use, else from the header keys
    /// (made as [`Shared::header_keys`] does) or, for a few, their headers;
    /// new ones are appended to the dates file.
    pub(super) fn sort_dates(&mut self, uids: &[u32]) {
        let v = self.mailbox.uidvalidity();
        let file: DatesFile =
            load_current(&self.mailbox, &mut self.dates, &mut self.dates_validity);
        let missing: Vec<u32> = uids
            .iter()
            .copied()
            .filter(|u| !self.dates.contains_key(u))
            .collect();
        if missing.is_empty() {
            return;
        }
        // Many missing: the keys file probably has them (one read of it
        // beats a header read per message). A few (mail that came since):
        // their headers, not the whole keys file.
        let few = missing.len() <= 256.max(uids.len() / 16);
        if !few || self.keys_validity == v {
            self.header_keys(&missing);
        }
        let mut made = Vec::new();
        for u in missing {
            let date = match self.keys.get(&u) {
                Some(k) => k.sort_date(),
                None => match super::read_header(&self.mailbox, u) {
                    Some(header) => HeaderKeys::of(&header).sort_date(),
                    None => continue,
                },
            };
            self.dates.insert(u, SentDate(date));
            made.push(u);
        }
        let new: Vec<(u32, &SentDate)> = made.iter().map(|u| (*u, &self.dates[u])).collect();
        file.append(&new);
    }

    /// The sent date of `uid` if [`Shared::sort_dates`] knows it.
    pub(super) fn known_date(&self, uid: u32) -> Option<SentDate> {
        self.dates.get(&uid).copied()
    }

    /// The [`HeaderKeys`] of `uid` if [`Shared::header_keys`] made them.
    pub(super) fn known_keys(&self, uid: u32) -> Option<&HeaderKeys> {
        self.keys.get(&uid)
    }

    /// The current UIDs, shared: the list handed out last time if the
    /// mailbox still holds exactly those messages, else a new one.
    pub(super) fn uid_list(&mut self) -> Arc<Vec<u32>> {
        let msgs = self.mailbox.messages();
        let same =
            self.uids.len() == msgs.len() && self.uids.iter().zip(msgs).all(|(u, m)| *u == m.uid);
        if !same {
            self.uids = Arc::new(msgs.iter().map(|m| m.uid).collect());
        }
        self.uids.clone()
    }

    /// HIGHESTMODSEQ (RFC 7162): every change takes a new one.
    pub(super) fn modseq(&self) -> u64 {
        self.mailbox.highest_modseq()
    }

    /// The MODSEQ of message `uid` (0 if it's gone).
    pub(super) fn modseq_of(&self, uid: u32) -> u64 {
        self.mailbox.get(uid).map_or(0, |m| m.modseq)
    }

    /// The structure cache, loaded on first use, and anew if the mailbox
    /// was recreated under another UIDVALIDITY.
    pub(super) fn cache(&mut self) -> &mut PartsCache {
        let v = self.mailbox.uidvalidity();
        if self.cache.as_ref().is_none_or(|c| c.uidvalidity() != v) {
            let live: HashSet<u32> = self.mailbox.messages().iter().map(|m| m.uid).collect();
            self.cache = Some(PartsCache::load(self.mailbox.dir(), v, &live));
        }
        self.cache.as_mut().expect("loaded above")
    }

    pub(super) fn flush_cache(&mut self) {
        if let Some(c) = &mut self.cache {
            c.flush();
        }
    }

    pub(super) fn set_flags(
        &mut self,
        uid: u32,
        flags: Flags,
        keywords: &[&str],
    ) -> Result<bool, StoreError> {
        let before = self.mailbox.get(uid).map(|m| m.modseq);
        let changed = self.mailbox.set_flags(uid, flags, keywords)?;
        if changed && self.mailbox.get(uid).map(|m| m.modseq) != before {
            self.notify.bump(self.mailbox.dir());
        }
        Ok(changed)
    }

    pub(super) fn expunge(&mut self, uids: &[u32]) -> Result<Vec<u32>, StoreError> {
        let gone = self.mailbox.expunge(uids)?;
        self.forget_expunged(&gone);
        if !gone.is_empty() {
            self.notify.bump(self.mailbox.dir());
            self.expunges += 1;
        }
        Ok(gone)
    }
}

pub(super) type SharedRef = Arc<Mutex<Shared>>;

/// The open mailboxes of one server, by directory.
pub struct Mailboxes {
    notify: Arc<Notifier>,
    /// Entries die with their last session.
    open: Mutex<HashMap<PathBuf, Weak<Mutex<Shared>>>>,
    /// Recently used mailboxes stay open for a while after their last
    /// session ends, so the next session (a client that logs in for every
    /// check) doesn't read the whole directory again.
    keep: Mutex<VecDeque<(Instant, SharedRef)>>,
    /// STATUS counts of folders no session holds, with the stamp they are
    /// good for (see `status.rs`).
    statuses: Mutex<HashMap<PathBuf, (StatusStamp, Counts)>>,
}

/// Folders whose STATUS counts are kept, over all users: ~150 bytes each.
/// When full the lot is dropped (the next poll of each refills it).
const STATUSES_MAX: usize = 50_000;

const KEEP_MAX: usize = 16;
const KEEP_FOR: Duration = Duration::from_secs(30);

fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(super) fn lock(s: &SharedRef) -> MutexGuard<'_, Shared> {
    guard(s)
}

impl Mailboxes {
    pub fn new(notify: Arc<Notifier>) -> Arc<Mailboxes> {
        Arc::new(Mailboxes {
            notify,
            open: Mutex::new(HashMap::new()),
            keep: Mutex::new(VecDeque::new()),
            statuses: Mutex::new(HashMap::new()),
        })
    }

    /// Where this server's mailbox changes are announced (IDLE waits here).
    pub fn notifier(&self) -> &Arc<Notifier> {
        &self.notify
    }

    fn keep(&self, s: &SharedRef) {
        let mut k = guard(&self.keep);
        k.retain(|(t, x)| t.elapsed() < KEEP_FOR && !Arc::ptr_eq(x, s));
        k.push_back((Instant::now(), s.clone()));
        while k.len() > KEEP_MAX {
            k.pop_front();
        }
    }

    /// The shared state of the mailbox at `path`, if a session holds it.
    pub(super) fn get(&self, path: &Path) -> Option<SharedRef> {
        guard(&self.open).get(path).and_then(Weak::upgrade)
    }

    /// At shutdown: lets go of every mailbox kept open (each leaves its
    /// list for the next start, see `Mailbox`'s drop).
    pub fn close_all(&self) {
        let kept: Vec<(Instant, SharedRef)> = guard(&self.keep).drain(..).collect();
        guard(&self.open).clear();
        drop(kept);
    }

    /// A mailbox was deleted or renamed: drop what we hold of it.
    pub(super) fn forget(&self, root: &MaildirRoot, name: &str) {
        let Ok(path) = root.folder_path(name) else {
            return;
        };
        guard(&self.open).remove(&path);
        guard(&self.keep).retain(|(_, x)| lock(x).mailbox.dir() != path);
        guard(&self.statuses).remove(&path);
    }

    /// Keeps the STATUS counts of the folder at `dir`, good while its stamp
    /// is `stamp`.
    pub(super) fn keep_status(&self, dir: &Path, stamp: StatusStamp, counts: Counts) {
        let mut kept = guard(&self.statuses);
        if kept.len() >= STATUSES_MAX && !kept.contains_key(dir) {
            kept.clear();
        }
        kept.insert(dir.to_path_buf(), (stamp, counts));
    }

    /// The STATUS counts kept for the folder at `dir`, and their stamp.
    pub(super) fn kept_status(&self, dir: &Path) -> Option<(StatusStamp, Counts)> {
        guard(&self.statuses).get(dir).cloned()
    }

    /// The shared state of mailbox `name` if a session of this process has
    /// it open (or had, recently).
    pub(super) fn open_already(&self, root: &MaildirRoot, name: &str) -> Option<SharedRef> {
        self.get(&root.mailbox_path(name).ok()?)
    }

    /// The shared state of mailbox `name`, opening it if no session has.
    pub(super) fn open_shared(
        &self,
        root: &MaildirRoot,
        name: &str,
    ) -> Result<SharedRef, StoreError> {
        let path = root.mailbox_path(name)?;
        if let Some(s) = self.get(&path) {
            // In-process writers (SMTP delivery, POP3, APPEND) mark the
            // mailbox dirty, so this sees them at once; other processes'
            // changes show within SYNC_INTERVAL.
            lock(&s).sync()?;
            self.keep(&s);
            return Ok(s);
        }
        // Synced from the kernel's log of its changes, not by listing it.
        let mailbox = root.open_following(name, |dir| self.notify.log(dir))?;
        let s = Arc::new(Mutex::new(Shared {
            mailbox,
            last_sync: Instant::now(),
            expunges: 0,
            cache: None,
            keys: FxHashMap::default(),
            keys_validity: 0,
            dates: FxHashMap::default(),
            dates_validity: 0,
            notify: self.notify.clone(),
            uids: Arc::default(),
        }));
        let mut open = guard(&self.open);
        open.retain(|_, w| w.strong_count() > 0);
        // Another session may have opened it meanwhile: use theirs.
        if let Some(other) = open.get(&path).and_then(Weak::upgrade) {
            return Ok(other);
        }
        open.insert(path, Arc::downgrade(&s));
        drop(open);
        self.keep(&s);
        Ok(s)
    }
}

impl Backend {
    /// We wrote into mailbox `name` through another handle: if some session
    /// has it open, look now rather than at the next interval.
    pub(super) fn touched(&mut self, name: &str) {
        let Ok(path) = self.root.mailbox_path(name) else {
            return;
        };
        if let Some(s) = self.mailboxes.get(&path) {
            if let Err(e) = lock(&s).sync_now() {
                tracing::warn!(error = %e, "sync failed");
            }
        }
    }
}
