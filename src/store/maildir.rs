//! Maildir mailboxes, on disk exactly as Dovecot 2.3 keeps them, so that a
//! Maildir written by Dovecot is served with the same UIDVALIDITY, UIDs,
//! flags, keywords, folders, subscriptions and POP3 UIDLs, and Dovecot reads
//! what we write (ARCHITECTURE.md, "Maildir on disk").
//!
//! * [`MaildirRoot`]: a user's Maildir. The root itself (`cur new tmp`) is
//!   INBOX; Maildir++ folders are `.Name` directories (`.Sent`,
//!   `.Archive.2024`, `.` is the hierarchy separator) holding a
//!   `maildirfolder` file; names on disk are modified UTF-7 ([`utf8_to_mutf7`],
//!   [`mutf7_to_utf8`]); `subscriptions` lists the subscribed names.
//! * [`Mailbox`]: one folder. [`Mailbox::sync`] scans `new/` and `cur/`,
//!   moves `new/` files to `cur/` (appending `:2,`), numbers files the
//!   `dovecot-uidlist` doesn't know yet and reports what changed since the
//!   previous sync. Flags live in the file name (`:2,DFRST` plus keyword
//!   letters `a`–`z` named in `dovecot-keywords`).
//! * [`pop3_uidl`]: Dovecot's `pop3_uidl_format` expansion.
//!
//! Concurrency: any number of our sessions, other pigeonpost processes and
//! Dovecot may work on the same directory. Deliveries are lock-free (tmp/ →
//! new/); UIDs are only ever assigned while holding `dovecot-uidlist.lock`,
//! after re-reading the uidlist under it. A file that disappears under us
//! (expunged or renamed by someone else) is looked up again by its base name
//! and, if really gone, treated as expunged — never an error.
//!
//! Everything here is blocking std I/O: call it from blocking threads.

mod dotlock;
mod filename;
mod folders;
mod follow;
pub mod group_commit;
mod keywords;
pub mod metadata;
mod modseq;
pub mod quota;
mod snapshot;
mod status_stamp;
mod stored_name;
mod uidl;
mod uidlist;
pub mod utf7;
pub mod write;

#[cfg(test)]
mod tests;

// Fx hashing: a sync of a 100,000-message mailbox hashes every file name
// a few times, and these maps hold our own names, not an attacker's keys.
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::borrow::Cow;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::ops::{BitOr, BitOrAssign};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::deliver::Owner;
use super::location::{as_user, root_may_open_for};
use dotlock::{DotLock, STALE_TIMEOUT};
use keywords::Keywords;
use modseq::ModseqIndex;
use stored_name::StoredName;
use uidlist::{Record, Stamp, Uidlist};
use write::{crlf_to_lf, fsync_dir, link_or_copy, rename_noreplace, vsize_of};

pub use folders::{Folder, MaildirRoot};
pub use keywords::{valid_keyword, MAX_KEYWORDS};
#[doc(hidden)]
pub use metadata::fuzz_check as fuzz_metadata_file;
pub use modseq::fuzz_check as fuzz_modseq_file;
pub use modseq::{MODSEQ_FILE, VANISHED_MAX};
pub use snapshot::fuzz_check as fuzz_list_file;
pub use status_stamp::StatusStamp;
pub use stored_name::fuzz_check as fuzz_file_name;
pub use uidl::pop3_uidl;
pub use utf7::{mutf7_to_utf8, utf8_to_mutf7, Utf7Error};

/// File names Dovecot (and we) keep in a Maildir folder.
pub const UIDLIST_NAME: &str = "dovecot-uidlist";
pub const KEYWORDS_NAME: &str = "dovecot-keywords";
pub const SUBSCRIPTIONS_NAME: &str = "subscriptions";
pub const MAILDIRFOLDER_NAME: &str = "maildirfolder";

/// How long we wait for another process's `dovecot-uidlist.lock` by default.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(10);

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Mail store errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O failure; `op` names the operation.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Another process held the dot-lock for longer than our timeout
    /// (temporary: retry later).
    #[error("timed out waiting for {}", .0.display())]
    LockTimeout(PathBuf),
    /// Our dot-lock was overridden as stale while we held it.
    #[error("dot-lock {} was overridden by another process", .0.display())]
    LockLost(PathBuf),
    /// A folder name we can't use.
    #[error("invalid mailbox name {0:?}: {1}")]
    InvalidName(String, &'static str),
    #[error("mailbox {0:?} already exists")]
    AlreadyExists(String),
    #[error("mailbox {0:?} does not exist")]
    NotFound(String),
    /// Maildir has 26 keyword letters per folder.
    #[error("no free keyword slot for {0:?} (Maildir allows {MAX_KEYWORDS} per folder)")]
    TooManyKeywords(String),
    #[error("invalid keyword {0:?}")]
    InvalidKeyword(String),
    #[error("no UIDs left in {}", .0.display())]
    UidsExhausted(PathBuf),
    /// The user's quota (`maildirsize`) has no room for it.
    #[error("quota exceeded")]
    OverQuota,
}

impl Error {
    /// ENOSPC / EDQUOT: disk or quota full.
    pub fn is_no_space(&self) -> bool {
        matches!(self, Error::Io { source, .. }
            if matches!(source.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)))
    }

    /// Worth retrying later (lock contention, disk full).
    pub fn is_temporary(&self) -> bool {
        matches!(self, Error::LockTimeout(_) | Error::LockLost(_)) || self.is_no_space()
    }
}

pub(crate) fn io_err(op: &'static str, path: &Path, source: io::Error) -> Error {
    Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn is_not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

/// IMAP system flags (`\Recent` is [`MessageInfo::recent`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(u8);

impl Flags {
    pub const SEEN: Flags = Flags(1);
    pub const ANSWERED: Flags = Flags(2);
    pub const FLAGGED: Flags = Flags(4);
    pub const DELETED: Flags = Flags(8);
    pub const DRAFT: Flags = Flags(16);

    /// Maildir letters in the order they appear in a file name.
    pub(crate) const MAILDIR_ORDER: [(Flags, u8); 5] = [
        (Flags::DRAFT, b'D'),
        (Flags::FLAGGED, b'F'),
        (Flags::ANSWERED, b'R'),
        (Flags::SEEN, b'S'),
        (Flags::DELETED, b'T'),
    ];
    const IMAP_NAMES: [(Flags, &'static str); 5] = [
        (Flags::ANSWERED, "\\Answered"),
        (Flags::FLAGGED, "\\Flagged"),
        (Flags::DELETED, "\\Deleted"),
        (Flags::SEEN, "\\Seen"),
        (Flags::DRAFT, "\\Draft"),
    ];

    pub const fn empty() -> Flags {
        Flags(0)
    }
    pub const fn bits(self) -> u8 {
        self.0
    }
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn insert(&mut self, other: Flags) {
        self.0 |= other.0;
    }
    pub fn remove(&mut self, other: Flags) {
        self.0 &= !other.0;
    }
    pub const fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }
    pub const fn difference(self, other: Flags) -> Flags {
        Flags(self.0 & !other.0)
    }

    /// The flag for a Maildir info letter (`D F R S T`).
    pub fn from_maildir_char(c: u8) -> Option<Flags> {
        Flags::MAILDIR_ORDER
            .iter()
            .find(|(_, ch)| *ch == c)
            .map(|(f, _)| *f)
    }

    /// The flag for an IMAP system flag name (`\Seen`, case-insensitive).
    pub fn from_imap(name: &str) -> Option<Flags> {
        Flags::IMAP_NAMES
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(name))
            .map(|(f, _)| *f)
    }

    /// IMAP names of the flags set, in a stable order.
    pub fn imap_names(self) -> impl Iterator<Item = &'static str> {
        Flags::IMAP_NAMES
            .into_iter()
            .filter(move |(f, _)| self.contains(*f))
            .map(|(_, n)| n)
    }
}

impl BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        self.union(rhs)
    }
}

impl BitOrAssign for Flags {
    fn bitor_assign(&mut self, rhs: Flags) {
        self.insert(rhs);
    }
}

impl std::fmt::Debug for Flags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.imap_names()).finish()
    }
}

/// One message as of the last sync. Kept for every message of every open
/// mailbox, so it holds nothing twice and little: the file name packed
/// into the record (see `stored_name.rs`), what few messages have
/// (keywords, the uidlist's extra fields) boxed apart, the internal date
/// in whole seconds once it has been read (72 bytes, no heap block for
/// most messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageInfo {
    pub uid: u32,
    /// Still in `new/` (it couldn't be moved to `cur/`); see
    /// [`Mailbox::message_path`]. A flag, not the path: with thousands of
    /// messages per open mailbox, the full path was a third of the memory.
    pub in_new: bool,
    pub flags: Flags,
    /// First seen by this [`Mailbox`]: moved out of `new/` or numbered by us.
    pub recent: bool,
    /// The current file name, with the `:2,<flags>` part; its `,S=`/`,W=`
    /// are rebuilt from `size` and `vsize`, so those never change.
    name: StoredName,
    /// Size on disk (`,S=` in the name, `S` in the uidlist, or stat).
    size: u64,
    /// Size with CRLF line endings, IMAP's RFC822.SIZE (`,W=` in the name,
    /// `W` in the uidlist, or computed from the file).
    vsize: u64,
    /// IMAP INTERNALDATE, Unix seconds: the file's mtime, like Dovecot;
    /// [`UNKNOWN_DATE`] until [`Mailbox::resolve_dates`] reads it (a first
    /// look names sizes from the file names and stats no file).
    date: i64,
    /// RFC 7162 MODSEQ: the mod-sequence of the message's last change
    /// (arrival or flags), from `pigeonpost.index.modseq` (see `modseq.rs`).
    pub modseq: u64,
    /// Keywords and uidlist extras, `None` for the many messages with
    /// neither.
    rare: Option<Box<Rare>>,
}

const _: () = assert!(std::mem::size_of::<MessageInfo>() <= 72);

/// What few messages have.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Rare {
    /// Keyword names, in letter order.
    keywords: Vec<String>,
    extras: Extras,
}

/// Opens message file `name` in the directory `dir` (a path relative to
/// it, or absolute) for reading, with the open flags `extra` besides,
/// without updating its access time (`O_NOATIME`, as a spool mounted
/// `noatime`: a first sync of a migrated mailbox would otherwise write
/// every message's inode back). The kernel allows that only to the file's
/// owner (or a process that may act for any owner, which root without
/// CAP_FOWNER may not); for anyone else the open is retried plainly.
fn open_no_atime_at<P: rustix::path::Arg + Copy>(
    dir: rustix::fd::BorrowedFd<'_>,
    name: P,
    extra: rustix::fs::OFlags,
) -> io::Result<File> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | extra;
    match rustix::fs::openat(dir, name, flags | OFlags::NOATIME, Mode::empty()) {
        Err(rustix::io::Errno::PERM) => rustix::fs::openat(dir, name, flags, Mode::empty()),
        opened => opened,
    }
    .map(File::from)
    .map_err(io::Error::from)
}

/// Opens the message file at `path` for reading, without updating its
/// access time where the kernel allows (see `open_no_atime_at`).
pub fn open_no_atime(path: &Path) -> io::Result<File> {
    open_no_atime_at(rustix::fs::CWD, path, rustix::fs::OFlags::empty())
}

/// [`MessageInfo::date`] not read yet.
const UNKNOWN_DATE: i64 = i64::MIN;

/// Whole seconds since 1970 (negative before).
fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs_f64().ceil() as i64),
    }
}

/// Uidlist fields that only some messages have (migrated or copied ones).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extras {
    /// `G`: the message GUID.
    pub guid: Option<String>,
    /// `P`: a POP3 UIDL kept from a migration.
    pub pop3_uidl: Option<String>,
    /// `O`: the POP3 listing order.
    pub pop3_order: Option<u32>,
}

impl Extras {
    /// The record's fields.
    fn of(rec: &Record) -> Extras {
        Extras {
            guid: rec.ext('G').filter(|g| !g.is_empty()).map(str::to_string),
            pop3_uidl: rec.ext('P').map(str::to_string),
            pop3_order: rec.ext('O').and_then(|v| v.parse().ok()),
        }
    }
}

impl MessageInfo {
    /// A message named `file_name` (system flags from its `:2,` part), of
    /// `size` bytes, `vsize` with CRLF line ends, and INTERNALDATE `date`
    /// (Unix seconds); not in `new/`, not recent, no keywords or extras.
    fn new(uid: u32, file_name: &str, size: u64, vsize: u64, date: i64) -> MessageInfo {
        MessageInfo {
            uid,
            in_new: false,
            flags: filename::parse_flags(file_name).0,
            recent: false,
            name: StoredName::new(file_name, size, vsize),
            size,
            vsize,
            date,
            modseq: 0,
            rare: None,
        }
    }
    /// Size on disk.
    pub fn size(&self) -> u64 {
        self.size
    }
    /// Size with CRLF line endings (RFC822.SIZE).
    pub fn vsize(&self) -> u64 {
        self.vsize
    }
    /// The current file name.
    pub fn file_name(&self) -> String {
        self.name.to_string(self.size, self.vsize)
    }
    /// Whether the file is named `name` now.
    fn is_named(&self, name: &str) -> bool {
        self.name.equals(name, self.size, self.vsize)
    }
    /// Renamed (a flag change): same base name, sizes and date.
    fn rename(&mut self, file_name: &str) {
        self.name = StoredName::new(file_name, self.size, self.vsize);
    }
    /// Whether the file name may start with the seconds `secs` (a cheap
    /// test before [`basename`](Self::basename)).
    fn name_may_start_with(&self, secs: Option<u32>) -> bool {
        self.name.may_start_with(secs)
    }
    /// Keyword letters of the file name's `:2,` part.
    fn keyword_letters(&self) -> u32 {
        self.name.keyword_letters()
    }
    /// Keyword names, in letter order.
    pub fn keywords(&self) -> &[String] {
        self.rare.as_deref().map_or(&[], |r| r.keywords.as_slice())
    }
    fn set_keywords(&mut self, names: Vec<String>) {
        self.set_rare(|r| r.keywords = names);
    }
    /// The uidlist record's `G`, `P` and `O` fields, if it has any.
    fn extras(&self) -> Option<&Extras> {
        self.rare
            .as_deref()
            .map(|r| &r.extras)
            .filter(|e| **e != Extras::default())
    }
    fn set_extras(&mut self, extras: Extras) {
        self.set_rare(|r| r.extras = extras);
    }
    /// Changes the boxed part (boxed only if anything is left in it: no
    /// box made and dropped for the many messages without).
    fn set_rare(&mut self, change: impl FnOnce(&mut Rare)) {
        let mut rare = self.rare.take().map_or_else(Rare::default, |b| *b);
        change(&mut rare);
        self.rare = (rare != Rare::default()).then(|| Box::new(rare));
    }
    /// IMAP INTERNALDATE: the file's mtime, like Dovecot (whole seconds);
    /// `None` until [`Mailbox::resolve_dates`] has read it.
    pub fn internal_date(&self) -> Option<SystemTime> {
        if self.date == UNKNOWN_DATE {
            return None;
        }
        let secs = std::time::Duration::from_secs(self.date.unsigned_abs());
        Some(if self.date >= 0 {
            std::time::UNIX_EPOCH + secs
        } else {
            std::time::UNIX_EPOCH - secs
        })
    }
    /// INTERNALDATE as SEARCH and SORT compare it: Unix seconds, 0 before
    /// 1970 (and if it could not be read: the file is gone).
    pub fn internal_secs(&self) -> i64 {
        self.date.max(0)
    }
    /// The file name up to the `:` (stable across flag changes; the
    /// uidlist key).
    pub fn basename(&self) -> Cow<'_, str> {
        match self.name.whole() {
            Some(name) => filename::basename(name).into(),
            None => {
                let mut name = self.file_name();
                name.truncate(filename::basename(&name).len());
                name.into()
            }
        }
    }
    /// Dovecot's message GUID: the uidlist `G` field, else the base name.
    pub fn guid(&self) -> Cow<'_, str> {
        match self.extras().and_then(|e| e.guid.as_deref()) {
            Some(g) => g.into(),
            None => self.basename(),
        }
    }
    /// The uidlist `P` field (a POP3 UIDL kept from a migration).
    pub fn pop3_uidl(&self) -> Option<&str> {
        self.extras().and_then(|e| e.pop3_uidl.as_deref())
    }
    /// The uidlist `O` field (POP3 listing order).
    pub fn pop3_order(&self) -> Option<u32> {
        self.extras().and_then(|e| e.pop3_order)
    }
}

/// What changed between two syncs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// UIDs that appeared, ascending.
    pub new_uids: Vec<u32>,
    /// UIDs that disappeared (expunged by someone else), ascending.
    pub expunged_uids: Vec<u32>,
    /// UIDs whose flags or keywords changed, ascending.
    pub flag_changes: Vec<u32>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.new_uids.is_empty() && self.expunged_uids.is_empty() && self.flag_changes.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sub {
    Cur,
    New,
}

impl Sub {
    fn name(self) -> &'static str {
        match self {
            Sub::Cur => "cur",
            Sub::New => "new",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Found {
    filename: String,
    sub: Sub,
}

impl Found {
    /// Where `m` was at the last look.
    fn of(m: &MessageInfo) -> Found {
        Found {
            filename: m.file_name(),
            sub: if m.in_new { Sub::New } else { Sub::Cur },
        }
    }
}

/// A directory opened once, so the stat of each of its files doesn't walk
/// the whole path again (`None` if it can't be opened: full paths then).
#[derive(Debug)]
struct DirHandle(Option<HeldDir>);

#[derive(Debug)]
struct HeldDir {
    fd: rustix::fd::OwnedFd,
    /// The directory's owner when it was opened, if the owner may search it
    /// (mode `u+x`): whom root may open its files for (see
    /// [`Mailbox::open_message_for`]).
    searchable_by: Option<u32>,
}

impl DirHandle {
    fn open(path: &Path) -> DirHandle {
        use rustix::fs::{Mode, OFlags};
        let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC;
        DirHandle(rustix::fs::open(path, flags, Mode::empty()).ok().map(|fd| {
            let searchable_by = rustix::fs::fstat(&fd)
                .ok()
                .filter(|st| st.st_mode & 0o100 != 0)
                .map(|st| st.st_uid);
            HeldDir { fd, searchable_by }
        }))
    }

    fn fd(&self) -> Option<&rustix::fd::OwnedFd> {
        self.0.as_ref().map(|held| &held.fd)
    }

    /// Whether this is still the directory at `path` (not one renamed away
    /// and replaced by another of the same name).
    fn is_at(&self, path: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        let Some(fd) = self.fd() else {
            return false;
        };
        match (rustix::fs::fstat(fd), fs::metadata(path)) {
            (Ok(held), Ok(now)) => held.st_ino == now.ino() && held.st_dev == now.dev(),
            _ => false,
        }
    }
}

/// What a sync reads of a message file's metadata.
struct Meta {
    len: u64,
    /// INTERNALDATE.
    mtime: SystemTime,
}

impl From<rustix::fs::Stat> for Meta {
    fn from(st: rustix::fs::Stat) -> Meta {
        let since = Duration::new(st.st_mtime.max(0) as u64, st.st_mtime_nsec as u32);
        Meta {
            len: st.st_size.max(0) as u64,
            mtime: SystemTime::UNIX_EPOCH + since,
        }
    }
}

impl From<&fs::Metadata> for Meta {
    fn from(m: &fs::Metadata) -> Meta {
        Meta {
            len: m.len(),
            mtime: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        }
    }
}

/// The modification times of `new/` and `cur/`.
type DirMtimes = (Option<SystemTime>, Option<SystemTime>);

/// base name → where the file is now
type ScanMap = HashMap<String, Found>;

/// How much older than a scan every timestamp it saw must be before the
/// scan can be trusted to have missed nothing (timestamps as coarse as a
/// second exist).
const SCAN_SETTLE: Duration = Duration::from_secs(2);

/// What we looked at during the last full sync; if none of it changed (and
/// it was old enough not to hide a same-tick change) the next sync is free.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    cur: Option<SystemTime>,
    new: Option<SystemTime>,
    uidlist: Option<Stamp>,
    keywords: Option<SystemTime>,
}

impl Fingerprint {
    /// Whether every timestamp is at least 2 s older than `at`, the start
    /// of a scan: then no change made in the same clock tick as what the
    /// scan saw can hide behind an unchanged timestamp.
    fn settled_before(&self, at: SystemTime) -> bool {
        self.settled_by(at, SCAN_SETTLE)
    }

    /// Whether every timestamp is more than `settle` older than `at`.
    fn settled_by(&self, at: SystemTime, settle: Duration) -> bool {
        let settled = |t: Option<SystemTime>| t.is_none_or(|t| t + settle < at);
        settled(self.cur)
            && settled(self.new)
            && settled(self.uidlist.map(|s| s.mtime))
            && settled(self.keywords)
    }
}

/// A Maildir folder (INBOX or a Maildir++ `.Name` directory).
#[derive(Debug)]
pub struct Mailbox {
    dir: PathBuf,
    uidvalidity: u32,
    next_uid: u32,
    guid: String,
    messages: Vec<MessageInfo>,
    keywords: Keywords,
    lock_timeout: Duration,
    fingerprint: Option<(Fingerprint, SystemTime)>,
    /// The fingerprint our `pigeonpost.index.list` was last written (or
    /// read) under.
    snapshot_of: Option<Fingerprint>,
    /// Dates read since that list was written (see `resolve_dates`).
    unlisted_dates: usize,
    /// Mod-sequences (RFC 7162), loaded at the first sync.
    modseqs: Option<ModseqIndex>,
    /// `cur/`, held open for stat-ing and reading its messages.
    cur_dir: DirHandle,
    /// The user's Maildir++ quota: checked before storing, told of every
    /// message stored or expunged.
    quota: Option<Arc<quota::Quota>>,
    /// The kernel's log of changes to `new/` and `cur/`, if we follow one
    /// (see `follow.rs`).
    following: Option<follow::Following>,
    /// Base names the uidlist numbers whose files the last full sync did
    /// not see (`None`: not known): when they show up they are not new.
    unplaced: Option<HashSet<String>>,
    /// In [`Drop`]: the last sync may leave a list after a short quiet.
    closing: bool,
    /// Directory listings made, for tests that show a sync made none.
    #[cfg(test)]
    listings: std::sync::atomic::AtomicUsize,
}

impl Mailbox {
    /// Opens the Maildir folder `dir` (which must exist; missing
    /// `cur new tmp` are created) and does the first sync.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Mailbox> {
        Mailbox::open_with_timeout(dir, DEFAULT_LOCK_TIMEOUT)
    }

    /// [`Mailbox::open`] with a different dot-lock wait.
    pub fn open_with_timeout(dir: impl Into<PathBuf>, lock_timeout: Duration) -> Result<Mailbox> {
        Mailbox::open_following(dir, lock_timeout, |_| None)
    }

    /// [`Mailbox::open_with_timeout`], then syncs by applying the log `log`
    /// makes for the folder's directory (if any) instead of listing the
    /// directories.
    pub fn open_following(
        dir: impl Into<PathBuf>,
        lock_timeout: Duration,
        log: impl FnOnce(&Path) -> Option<Arc<crate::store::notify::DirLog>>,
    ) -> Result<Mailbox> {
        let dir = dir.into();
        match fs::metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(Error::NotFound(dir.display().to_string())),
            Err(e) if is_not_found(&e) => return Err(Error::NotFound(dir.display().to_string())),
            Err(e) => return Err(io_err("stat", &dir, e)),
        }
        for sub in ["cur", "new", "tmp"] {
            let p = dir.join(sub);
            match fs::create_dir(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err("mkdir", &p, e)),
            }
        }
        let mut mb = Mailbox {
            dir,
            uidvalidity: 0,
            next_uid: 1,
            guid: String::new(),
            messages: Vec::new(),
            keywords: Keywords::default(),
            lock_timeout,
            fingerprint: None,
            snapshot_of: None,
            unlisted_dates: 0,
            modseqs: None,
            cur_dir: DirHandle(None),
            quota: None,
            following: None,
            unplaced: None,
            closing: false,
            #[cfg(test)]
            listings: Default::default(),
        };
        mb.cur_dir = DirHandle::open(&mb.dir.join(Sub::Cur.name()));
        // Without a list to open from, the first look moves new/ to cur/
        // before the kernel's log of changes starts: the log would carry
        // two events per message moved, all dropped unread (the listing
        // after the moves sees what they did). With a list, the log has to
        // start before the look at the timestamps that list depends on.
        let mut recent = HashSet::default();
        let premoved = !mb.dir.join(snapshot::LIST_FILE).exists();
        if premoved {
            mb.move_new_to_cur(&mut ScanMap::default(), &mut recent)?;
        }
        if let Some(log) = log(&mb.dir) {
            mb.follow(log);
        }
        mb.sync_after(recent, premoved)?;
        if mb.messages.len() >= BIG_MAILBOX {
            release_freed_memory();
        }
        Ok(mb)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn uidvalidity(&self) -> u32 {
        self.uidvalidity
    }
    /// UIDNEXT: the UID the next new message will get (at least).
    pub fn next_uid(&self) -> u32 {
        self.next_uid
    }
    /// The mailbox GUID from the uidlist header (32 hex digits).
    pub fn guid(&self) -> &str {
        &self.guid
    }
    /// Messages as of the last sync, by ascending UID.
    pub fn messages(&self) -> &[MessageInfo] {
        &self.messages
    }
    /// The message with `uid`, as of the last sync.
    pub fn get(&self, uid: u32) -> Option<&MessageInfo> {
        self.index_of(uid).map(|i| &self.messages[i])
    }
    /// RFC 7162 HIGHESTMODSEQ: the highest mod-sequence of any change
    /// (flags, arrival, expunge) this mailbox has seen.
    pub fn highest_modseq(&self) -> u64 {
        self.modseqs.as_ref().map_or(1, |m| m.highest().max(1))
    }
    /// UIDs expunged since mod-sequence `since`, ascending (RFC 7162 §3.2.5,
    /// §3.2.6 VANISHED (EARLIER)); `None` when they aren't all remembered
    /// that far back (the caller then reports every UID that isn't there).
    pub fn vanished_since(&self, since: u64) -> Option<Vec<u32>> {
        self.modseqs.as_ref().and_then(|m| m.vanished_since(since))
    }
    /// Writes the mod-sequences of flag changes made since the last call
    /// (one append per command rather than per message; also done at every
    /// sync and when the mailbox is dropped).
    pub fn flush_modseqs(&mut self) {
        if let Some(ix) = &mut self.modseqs {
            ix.flush(&self.messages);
        }
    }

    /// The mod-sequence of `uid`'s expunge, if it is remembered.
    pub fn expunged_at(&self, uid: u32) -> Option<u64> {
        self.modseqs.as_ref().and_then(|m| m.expunged_at(uid))
    }
    /// Accounts this mailbox's writes in `quota` (Maildir++ `maildirsize`).
    pub fn set_quota(&mut self, quota: Option<Arc<quota::Quota>>) {
        self.quota = quota;
    }
    pub fn quota(&self) -> Option<&Arc<quota::Quota>> {
        self.quota.as_ref()
    }

    /// Is there room for `bytes` in `count` more messages? (IMAP stores
    /// get no grace: Dovecot gives it to deliveries only.)
    fn check_quota(&self, bytes: u64, count: u64) -> Result<()> {
        let Some(q) = &self.quota else { return Ok(()) };
        match q.check(bytes, count, None) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(quota::OverQuota)) => Err(Error::OverQuota),
            Err(e) => Err(io_err("quota", &q.path(), e)),
        }
    }

    fn record_quota(&self, bytes: i64, count: i64) {
        if let Some(q) = &self.quota {
            q.record(bytes, count);
        }
    }

    pub fn set_lock_timeout(&mut self, timeout: Duration) {
        self.lock_timeout = timeout;
    }

    fn index_of(&self, uid: u32) -> Option<usize> {
        self.messages.binary_search_by_key(&uid, |m| m.uid).ok()
    }
    fn uidlist_path(&self) -> PathBuf {
        self.dir.join(UIDLIST_NAME)
    }
    fn keywords_path(&self) -> PathBuf {
        self.dir.join(KEYWORDS_NAME)
    }

    /// The Maildir root holding `dovecot-uidvalidity`: a Maildir++ folder
    /// (marked by `maildirfolder`, or a `.Name` directory beside INBOX's
    /// `cur/`) lives directly under it.
    fn root(&self) -> PathBuf {
        if let Some(parent) = self.dir.parent() {
            let dotted = self
                .dir
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if self.dir.join(MAILDIRFOLDER_NAME).exists() || (dotted && parent.join("cur").is_dir())
            {
                return parent.to_path_buf();
            }
        }
        self.dir.clone()
    }

    // ---------------------------------------------------------------- scan

    fn dir_mtime(&self, sub: &str) -> Result<Option<SystemTime>> {
        let p = self.dir.join(sub);
        match fs::metadata(&p) {
            Ok(m) => Ok(m.modified().ok()),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(io_err("stat", &p, e)),
        }
    }

    fn dir_mtimes(&self) -> Result<DirMtimes> {
        Ok((self.dir_mtime("new")?, self.dir_mtime("cur")?))
    }

    fn fingerprint(&self) -> Result<Fingerprint> {
        Ok(self.fingerprint_and_ids()?.0)
    }

    /// The fingerprint, and the device and inode of `new/` and `cur/` (a
    /// followed folder replaced under its name): one stat of each.
    fn fingerprint_and_ids(&self) -> Result<(Fingerprint, Option<follow::DirIds>)> {
        use std::os::unix::fs::MetadataExt;
        let dir = |sub: &str| {
            let p = self.dir.join(sub);
            match fs::metadata(&p) {
                Ok(m) => Ok(Some(m)),
                Err(e) if is_not_found(&e) => Ok(None),
                Err(e) => Err(io_err("stat", &p, e)),
            }
        };
        let (cur, new) = (dir("cur")?, dir("new")?);
        let ids = match (&new, &cur) {
            (Some(n), Some(c)) => Some([(n.dev(), n.ino()), (c.dev(), c.ino())]),
            _ => None,
        };
        let mtime = |m: &Option<fs::Metadata>| m.as_ref().and_then(|m| m.modified().ok());
        let ul = self.uidlist_path();
        let kw = self.keywords_path();
        let fp = Fingerprint {
            cur: mtime(&cur),
            new: mtime(&new),
            uidlist: match fs::metadata(&ul) {
                Ok(m) => Some(Stamp::of(&m)),
                Err(e) if is_not_found(&e) => None,
                Err(e) => return Err(io_err("stat", &ul, e)),
            },
            keywords: match fs::metadata(&kw) {
                Ok(m) => m.modified().ok(),
                Err(e) if is_not_found(&e) => None,
                Err(e) => return Err(io_err("stat", &kw, e)),
            },
        };
        Ok((fp, ids))
    }

    /// File names in `sub/` (dot files and names with CR/LF skipped, like
    /// Dovecot).
    fn read_names(&self, sub: Sub) -> Result<Vec<String>> {
        #[cfg(test)]
        self.listings
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = self.dir.join(sub.name());
        let rd = match fs::read_dir(&p) {
            Ok(rd) => rd,
            Err(e) if is_not_found(&e) => {
                return Err(Error::NotFound(self.dir.display().to_string()))
            }
            Err(e) => return Err(io_err("readdir", &p, e)),
        };
        let mut names = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| io_err("readdir", &p, e))?;
            let Ok(name) = entry.file_name().into_string() else {
                tracing::warn!(dir = %p.display(), "ignoring a non-UTF-8 file name");
                continue;
            };
            if name.starts_with('.') || name.contains(['\n', '\r']) {
                continue;
            }
            names.push(name);
        }
        Ok(names)
    }

    /// One pass over `new/` (moving files to `cur/`) and `cur/`. Returns
    /// whether the directories stayed unchanged during the pass.
    fn scan_once(&self, map: &mut ScanMap, recent: &mut HashSet<String>) -> Result<bool> {
        let before = self.dir_mtimes()?;
        // Our own moves change both directories: when there were any, what
        // is compared starts after them, or every first look of a full
        // new/ would read cur/ twice. A file delivered while new/ was
        // listed is in the second listing (normally empty), which starts
        // after that reference.
        let before = if self.move_new_to_cur(map, recent)? {
            let after_ours = self.dir_mtimes()?;
            self.move_new_to_cur(map, recent)?;
            after_ours
        } else {
            before
        };
        let names = self.read_names(Sub::Cur)?;
        // (what was just moved is listed again: no room twice for it)
        map.reserve(names.len().saturating_sub(map.len()));
        for name in names {
            map.insert(
                filename::basename(&name).to_string(),
                Found {
                    filename: name,
                    sub: Sub::Cur,
                },
            );
        }
        Ok(before == self.dir_mtimes()?)
    }

    /// Moves every file in `new/` to `cur/` (into `map`); whether there
    /// was any.
    fn move_new_to_cur(&self, map: &mut ScanMap, recent: &mut HashSet<String>) -> Result<bool> {
        let names = self.read_names(Sub::New)?;
        let folder = self.folder_fd();
        // (sized once, not doubled a dozen times through a full new/)
        map.reserve(names.len());
        recent.reserve(names.len());
        for name in &names {
            // moved or expunged by someone else meanwhile: the cur/ listing
            // (which starts later) sees it if it still exists
            if let Some(f) = self.move_to_cur(folder.as_ref(), name, recent) {
                map.insert(filename::basename(name).to_string(), f);
            }
        }
        Ok(!names.is_empty())
    }

    /// The folder's directory, for moves of many files within it (`None`
    /// if it can't be opened: they then go by full paths).
    fn folder_fd(&self) -> Option<rustix::fd::OwnedFd> {
        use rustix::fs::{Mode, OFlags};
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        rustix::fs::open(&self.dir, flags, Mode::empty()).ok()
    }

    /// Moves `new/<name>` to `cur/` (with `:2,` added if it has no info
    /// part; its base name into `recent`): where it is now, or `None` if
    /// someone else moved or removed it meanwhile. Both names are taken
    /// relative to `folder` if given (one open folder: a move never
    /// crosses into another folder put in this one's place meanwhile).
    fn move_to_cur(
        &self,
        folder: Option<&rustix::fd::OwnedFd>,
        name: &str,
        recent: &mut HashSet<String>,
    ) -> Option<Found> {
        use rustix::fd::AsFd;
        // (put together by hand: format! costs more than the copies)
        let mut to = String::with_capacity(name.len() + 7);
        to.push_str("cur/");
        to.push_str(name);
        if !name.contains(':') {
            to.push_str(":2,");
        }
        let moved = match folder {
            Some(fd) => {
                let mut from = String::with_capacity(name.len() + 4);
                from.push_str("new/");
                from.push_str(name);
                write::rename_noreplace_at(fd.as_fd(), from.as_str(), fd.as_fd(), to.as_str())
            }
            None => rename_noreplace(
                &self.dir.join(Sub::New.name()).join(name),
                &self.dir.join(&to),
            ),
        };
        to.drain(..4);
        let target = to;
        match moved {
            Ok(()) => {
                recent.insert(filename::basename(name).to_string());
                Some(Found {
                    filename: target,
                    sub: Sub::Cur,
                })
            }
            Err(e) if is_not_found(&e) => None,
            Err(e) => {
                if e.kind() != io::ErrorKind::AlreadyExists {
                    tracing::warn!(file = %name, dir = %self.dir.display(), "can't move new/ file to cur/: {e}");
                }
                Some(Found {
                    filename: name.to_string(),
                    sub: Sub::New,
                })
            }
        }
    }

    /// Scans until the directories hold still (a concurrent rename can hide
    /// a file from one readdir pass), merging passes; `known` base names
    /// missing after the first pass get a second look.
    fn scan(&self, known: &HashSet<Cow<str>>, recent: &mut HashSet<String>) -> Result<ScanMap> {
        let mut map = ScanMap::default();
        for pass in 0..4 {
            let stable = self.scan_once(&mut map, recent)?;
            let missing = known.iter().any(|b| !map.contains_key(b.as_ref()));
            if stable && (!missing || pass >= 1) {
                break;
            }
        }
        Ok(map)
    }

    /// Where the file with base name `base` is now, by reading the
    /// directories (it may have been renamed by a flag change elsewhere).
    fn find_by_basename(&self, base: &str) -> Result<Option<Found>> {
        for sub in [Sub::Cur, Sub::New] {
            for name in self.read_names(sub)? {
                if filename::basename(&name) == base {
                    return Ok(Some(Found {
                        filename: name,
                        sub,
                    }));
                }
            }
        }
        Ok(None)
    }

    // ---------------------------------------------------------------- sync

    /// Brings the view up to date with the directory: new files numbered,
    /// vanished ones dropped, flag changes picked up. Returns what changed
    /// since the previous sync (own [`set_flags`](Mailbox::set_flags) and
    /// [`expunge`](Mailbox::expunge) calls are not reported again; own
    /// appends and copies into this mailbox are reported as new).
    pub fn sync(&mut self) -> Result<Changes> {
        self.sync_after(HashSet::default(), false)
    }

    /// [`Mailbox::sync`] right after this mailbox moved new/ to cur/
    /// itself (`new_moved`; `recent`: the base names it moved).
    fn sync_after(&mut self, mut recent: HashSet<String>, new_moved: bool) -> Result<Changes> {
        self.flush_modseqs();
        let started = SystemTime::now();
        let logged = match self.sync_from_log(&mut recent)? {
            follow::Logged::Unchanged => return Ok(Changes::default()),
            follow::Logged::Done(c) => return Ok(c),
            follow::Logged::Scan(scan, gone) => Some((scan, gone)),
            follow::Logged::Unknown => None,
        };
        if logged.is_none() {
            let fp = self.fingerprint()?;
            if let Some((old, at)) = &self.fingerprint {
                if *old == fp && fp.settled_before(*at) {
                    if self.snapshot_of.as_ref() != Some(&fp)
                        && self.messages.len() >= snapshot::MIN_MESSAGES
                    {
                        self.write_snapshot(fp, *at, SCAN_SETTLE);
                    }
                    return Ok(Changes::default());
                }
            } else if let Some(snap) = snapshot::read(&self.dir) {
                // A first look: the list of the last settled sync, if
                // nothing changed since.
                let h = &snap.header;
                if h.fingerprint == fp && fp.settled_by(h.scanned_at, h.settle) {
                    return self.adopt(snap);
                }
            }
        }
        // The log's list is exact: nothing it lacks needs another look.
        let exact = logged.is_some();
        let cur = self.dir.join(Sub::Cur.name());
        if !exact && !self.cur_dir.is_at(&cur) {
            self.cur_dir = DirHandle::open(&cur);
        }

        let uidlist_path = self.uidlist_path();
        let existing =
            Uidlist::read(&uidlist_path).map_err(|e| io_err("read", &uidlist_path, e))?;
        // What should be there: the uidlist's names (our list comes from
        // it, so a message of ours it lacks would go anyway).
        let (mut scan, needs_uids, gone) = {
            let known: HashSet<Cow<str>> = match &existing {
                Some((ul, _)) => ul
                    .records
                    .iter()
                    .map(|r| r.basename.as_str().into())
                    .collect(),
                None => self.messages.iter().map(|m| m.basename()).collect(),
            };
            let (scan, gone) = match logged {
                Some((scan, gone)) => (scan, Some(gone)),
                None => {
                    if self.following.is_some() {
                        // New mail to cur/ first: the log we follow then
                        // forgets those renames (and all before them): the
                        // listings that follow see what they did.
                        if !new_moved {
                            self.move_new_to_cur(&mut ScanMap::default(), &mut recent)?;
                        }
                        self.restart_log();
                    }
                    (self.scan(&known, &mut recent)?, None)
                }
            };
            let needs_uids = existing.is_none() || scan.keys().any(|b| !known.contains(b.as_str()));
            (scan, needs_uids, gone)
        };
        // Files left without a UID (the uidlist was locked) are in no list
        // a log could be applied to.
        let mut complete = true;
        let ul = if needs_uids {
            let scanned = self.dir_mtimes()?;
            match self.assign_uids(&mut scan, scanned, gone.as_ref(), &mut recent) {
                Ok(ul) => ul,
                Err(Error::LockTimeout(p)) => match existing {
                    // numbering has to wait; show what already has UIDs
                    Some((ul, _)) => {
                        tracing::warn!(lock = %p.display(), "uidlist locked, new mail shows up at the next sync");
                        complete = false;
                        ul
                    }
                    None => return Err(Error::LockTimeout(p)),
                },
                Err(e) => return Err(e),
            }
        } else {
            existing.expect("checked").0
        };

        self.keywords = Keywords::read(&self.keywords_path())
            .map_err(|e| io_err("read", &self.keywords_path(), e))?;
        self.uidvalidity = ul.uidvalidity;
        self.next_uid = ul.next_uid;
        self.guid = ul.guid.clone();

        let mut messages = Vec::with_capacity(ul.records.len());
        let mut computed_vsizes = Vec::new();
        // Records of messages we had that the scan missed: they may only
        // have been renamed while the directory was read (readdir need not
        // return a file renamed meanwhile), so they get one more look at
        // the directories before they are called expunged.
        let mut missed = Vec::new();
        let mut unplaced = HashSet::default();
        for rec in &ul.records {
            let Some(found) = scan.get(&rec.basename) else {
                if self.index_of(rec.uid).is_some() {
                    missed.push(rec);
                } else {
                    unplaced.insert(rec.basename.clone());
                }
                continue;
            };
            if let Some(info) = self.info_for(rec, found, &recent, &mut computed_vsizes)? {
                messages.push(info);
            }
        }
        if !missed.is_empty() && !exact {
            let mut rescue = ScanMap::default();
            self.scan_once(&mut rescue, &mut HashSet::default())?;
            for rec in missed {
                if let Some(found) = rescue.get(&rec.basename) {
                    if let Some(info) = self.info_for(rec, found, &recent, &mut computed_vsizes)? {
                        messages.push(info);
                    }
                }
            }
            messages.sort_unstable_by_key(|m| m.uid);
        }
        if !computed_vsizes.is_empty() {
            self.persist_vsizes(&computed_vsizes);
        }

        self.attach_modseqs(&mut messages);
        let changes = diff(&self.messages, &messages);
        self.messages = messages;
        self.unplaced = Some(unplaced);
        let fp = self.fingerprint()?;
        if exact {
            // exact as of its take (after `started`)
            self.keep_snapshot(&fp, started);
        } else if fp.settled_before(started) && self.messages.len() >= snapshot::MIN_MESSAGES {
            self.write_snapshot(fp.clone(), started, SCAN_SETTLE);
        }
        self.fingerprint = Some((fp, started));
        if let Some(f) = &mut self.following {
            f.based = complete;
        }
        Ok(changes)
    }

    /// Gives `messages` their modseqs (RFC 7162), loading the index first
    /// if it isn't yet, or was of another UIDVALIDITY.
    fn attach_modseqs(&mut self, messages: &mut [MessageInfo]) {
        if self
            .modseqs
            .as_ref()
            .is_none_or(|m| m.uidvalidity() != self.uidvalidity)
        {
            let old = self.modseqs.take().map_or(0, |m| m.highest());
            let mut ix = ModseqIndex::load(&self.dir, self.uidvalidity);
            ix.raise(old);
            self.modseqs = Some(ix);
        }
        if let Some(ix) = &mut self.modseqs {
            ix.reconcile(&self.messages, messages);
            ix.flush(messages);
        }
    }

    /// Takes the list from `pigeonpost.index.list` (see `snapshot.rs`)
    /// instead of scanning.
    fn adopt(&mut self, snap: snapshot::Snapshot) -> Result<Changes> {
        self.keywords = Keywords::read(&self.keywords_path())
            .map_err(|e| io_err("read", &self.keywords_path(), e))?;
        let h = snap.header;
        self.uidvalidity = h.uidvalidity;
        self.next_uid = h.next_uid;
        self.guid = h.guid;
        let mut messages = snap.messages;
        for m in &mut messages {
            let kw = m.keyword_letters();
            if kw != 0 {
                m.set_keywords(self.keywords.names_of(kw));
            }
        }
        self.attach_modseqs(&mut messages);
        let changes = diff(&self.messages, &messages);
        self.messages = messages;
        self.snapshot_of = Some(h.fingerprint.clone());
        self.fingerprint = Some((h.fingerprint, h.scanned_at));
        self.unplaced = None;
        if let Some(f) = &mut self.following {
            f.based = true;
        }
        Ok(changes)
    }

    /// Writes `pigeonpost.index.list`: our list, as of a sync that started
    /// at `at` and found the folder as `fp` says.
    fn write_snapshot(&mut self, fp: Fingerprint, at: SystemTime, settle: Duration) {
        let header = snapshot::Header {
            uidvalidity: self.uidvalidity,
            next_uid: self.next_uid,
            guid: self.guid.clone(),
            fingerprint: fp.clone(),
            scanned_at: at,
            settle,
        };
        snapshot::write(&self.dir, &header, &self.messages);
        self.snapshot_of = Some(fp);
        self.unlisted_dates = 0;
    }

    fn path_of(&self, f: &Found) -> PathBuf {
        self.dir.join(f.sub.name()).join(&f.filename)
    }

    /// Where message `m` was at the last look (in `cur/`, or `new/` if it
    /// couldn't be moved there).
    pub fn message_path(&self, m: &MessageInfo) -> PathBuf {
        self.path_of(&Found::of(m))
    }

    /// The [`MessageInfo`] of `rec`, found at `found`: the one we hold if
    /// the file is where it was (its keywords looked up again), else built
    /// anew; `None` if it's gone.
    fn info_for(
        &self,
        rec: &Record,
        found: &Found,
        recent: &HashSet<String>,
        computed_vsizes: &mut Vec<(u32, String, u64)>,
    ) -> Result<Option<MessageInfo>> {
        let held = self.index_of(rec.uid).map(|i| &self.messages[i]);
        match held {
            Some(p) if p.is_named(&found.filename) && (found.sub == Sub::New) == p.in_new => {
                let mut m = p.clone();
                m.set_keywords(self.keywords.names_of(m.keyword_letters()));
                Ok(Some(m))
            }
            _ => {
                let mut m = self.build_info(rec, found.clone(), recent, computed_vsizes)?;
                // Renamed or moved (a flag change elsewhere): the same
                // file, so the date read before still holds. (The same
                // UID with another base name is another message: a
                // uidlist made anew numbers from 1 again.)
                if let (Some(m), Some(p)) = (&mut m, held) {
                    if m.date == UNKNOWN_DATE && p.basename() == rec.basename {
                        m.date = p.date;
                    }
                }
                Ok(m)
            }
        }
    }

    /// `m`'s INTERNALDATE in Unix seconds as [`MessageInfo::internal_secs`]
    /// gives it, read from the file now (and not kept) if it is not known:
    /// for the odd message a search needs it of (a sent date falling back
    /// to it), where [`resolve_dates`](Self::resolve_dates) would read all.
    pub fn internal_secs_of(&self, m: &MessageInfo) -> i64 {
        if m.date != UNKNOWN_DATE {
            return m.internal_secs();
        }
        self.date_from_file(m, &mut None).unwrap_or(0).max(0)
    }

    /// Reads the INTERNALDATE (the file's mtime) of those of `uids` whose
    /// date is not known yet, and keeps it. A first look takes sizes from
    /// the file names and stats no file, so FETCH INTERNALDATE, SEARCH and
    /// SORT by arrival call this first for the messages they use. A file
    /// gone keeps no date ([`MessageInfo::internal_date`] stays `None`):
    /// it is expunged at the next sync. Once dates of an eighth of the
    /// folder have been read, the next settled sync writes the list
    /// snapshot again (and a close always does), so that a restart does
    /// not read them again; not after every command that reads a few.
    pub fn resolve_dates(&mut self, uids: impl IntoIterator<Item = u32>) {
        let mut relisted: Option<ScanMap> = None;
        for uid in uids {
            let Some(i) = self.index_of(uid) else {
                continue;
            };
            let m = &self.messages[i];
            if m.date != UNKNOWN_DATE {
                continue;
            }
            if let Some(date) = self.date_from_file(m, &mut relisted) {
                self.messages[i].date = date;
                self.unlisted_dates += 1;
            }
        }
        if self.unlisted_dates > 0 && self.unlisted_dates >= self.messages.len() / 8 {
            self.snapshot_of = None;
        }
    }

    /// `m`'s file's mtime in Unix seconds, `None` if the file is gone. A
    /// file renamed since the last sync (flags changed elsewhere) is
    /// looked up in `relisted`, one new listing of the folder made at the
    /// first such file, however many follow.
    fn date_from_file(&self, m: &MessageInfo, relisted: &mut Option<ScanMap>) -> Option<i64> {
        let meta = match self.stat_at(&Found::of(m)) {
            Ok(meta) => meta,
            Err(_) => {
                let listing = relisted.get_or_insert_with(|| self.listing());
                self.stat_at(listing.get(&*m.basename())?).ok()?
            }
        };
        Some(unix_secs(meta.mtime))
    }

    /// Every file of `cur/` and `new/` by base name (a name in both: the
    /// one in `cur/`), as far as they can be read.
    fn listing(&self) -> ScanMap {
        let mut map = ScanMap::default();
        for sub in [Sub::New, Sub::Cur] {
            for filename in self.read_names(sub).unwrap_or_default() {
                let base = filename::basename(&filename).to_string();
                map.insert(base, Found { filename, sub });
            }
        }
        map
    }

    /// A [`MessageInfo`] for `rec`, following the file if it was renamed;
    /// `None` if it's gone.
    fn build_info(
        &self,
        rec: &Record,
        mut found: Found,
        recent: &HashSet<String>,
        computed_vsizes: &mut Vec<(u32, String, u64)>,
    ) -> Result<Option<MessageInfo>> {
        let named = |found: &Found, key: u8| {
            filename::get_size(&found.filename, key)
                .or_else(|| rec.ext(key as char).and_then(|v| v.parse().ok()))
        };
        // With both sizes in the name (or the uidlist) the listing is all a
        // first look needs: like Dovecot, no file is stat-ed; the date is
        // read when asked for (`resolve_dates`).
        let (size, vsize, date) = match (named(&found, b'S'), named(&found, b'W')) {
            (Some(size), Some(vsize)) => (size, Some(vsize), UNKNOWN_DATE),
            _ => match self.stat_following(&rec.basename, &mut found)? {
                Some(meta) => (
                    named(&found, b'S').unwrap_or(meta.len),
                    named(&found, b'W'),
                    unix_secs(meta.mtime),
                ),
                None => return Ok(None),
            },
        };
        let path = self.path_of(&found);
        let in_new = found.sub == Sub::New;
        let vsize = match vsize {
            Some(v) => v,
            None => match compute_vsize(&path) {
                Ok(v) => {
                    computed_vsizes.push((rec.uid, rec.basename.clone(), v));
                    v
                }
                Err(e) if is_not_found(&e) => return Ok(None),
                Err(e) => return Err(io_err("read", &path, e)),
            },
        };
        let mut m = MessageInfo::new(rec.uid, &found.filename, size, vsize, date);
        m.in_new = in_new;
        m.recent = recent.contains(&rec.basename);
        m.set_keywords(self.keywords.names_of(m.keyword_letters()));
        m.set_extras(Extras::of(rec));
        Ok(Some(m))
    }

    /// The file at `found`, stat-ed: `found` follows it (by `basename`)
    /// if it was renamed; `None` if it's gone.
    fn stat_following(&self, basename: &str, found: &mut Found) -> Result<Option<Meta>> {
        // Another session may be renaming the file (flag changes) while we
        // look: follow it as long as it still exists under some name. Only
        // when no name is left has it been expunged.
        let mut tries = 0;
        loop {
            match self.stat_at(found) {
                Ok(m) => return Ok(Some(m)),
                Err(e) if is_not_found(&e) && tries < 20 => {
                    tries += 1;
                    match self.find_by_basename(basename)? {
                        Some(f) => *found = f,
                        None => return Ok(None),
                    }
                }
                Err(e) if is_not_found(&e) => return Ok(None),
                Err(e) => return Err(io_err("stat", &self.path_of(found), e)),
            }
        }
    }

    /// The file at `found`, stat-ed (through the held `cur/` if it is there).
    fn stat_at(&self, found: &Found) -> io::Result<Meta> {
        match (found.sub, self.cur_dir.fd()) {
            (Sub::Cur, Some(fd)) => {
                rustix::fs::statat(fd, found.filename.as_str(), rustix::fs::AtFlags::empty())
                    .map(Meta::from)
                    .map_err(io::Error::from)
            }
            _ => fs::metadata(self.path_of(found)).map(|m| Meta::from(&m)),
        }
    }

    fn lock_uidlist(&self) -> Result<DotLock> {
        DotLock::acquire(&self.uidlist_path(), self.lock_timeout, STALE_TIMEOUT)
    }

    /// The uidlist as it is now (caller holds the lock), or a new one.
    fn read_locked_uidlist(&self) -> Result<(Uidlist, bool)> {
        let p = self.uidlist_path();
        match Uidlist::read(&p).map_err(|e| io_err("read", &p, e))? {
            Some((u, _)) => Ok((u, false)),
            None => Ok((Uidlist::new(folders::uidvalidity_next(&self.root())), true)),
        }
    }

    /// Under the uidlist lock: re-read the uidlist, rescan, drop records of
    /// vanished files, number new files in Dovecot's order, write it back.
    /// `scanned`: the `new/` and `cur/` mtimes when `scan` was made; if they
    /// are still the same once the lock is ours, `scan` is used as it is
    /// (a 100,000-message folder is not listed twice for one new message;
    /// a file that arrived in the same clock tick is numbered at the next
    /// sync, whose settledness check rescans).
    /// `gone`: `scan` came from the kernel's log, which may not have told
    /// of files that came since: only these base names are known to be
    /// gone (other records it lacks stay), unless a listing is made here.
    fn assign_uids(
        &self,
        scan: &mut ScanMap,
        scanned: DirMtimes,
        mut gone: Option<&HashSet<String>>,
        recent: &mut HashSet<String>,
    ) -> Result<Uidlist> {
        let lock = self.lock_uidlist()?;
        let (mut ul, created) = self.read_locked_uidlist()?;
        // A record the listing lacks may be a file another writer renamed
        // in and numbered after our listing read the directory, in the same
        // clock tick (directory mtimes move in coarse ticks): only a
        // listing under the lock may call it gone.
        let lacks_a_record =
            || gone.is_none() && ul.records.iter().any(|r| !scan.contains_key(&r.basename));
        if self.dir_mtimes()? != scanned || lacks_a_record() {
            gone = None;
            let known: HashSet<Cow<str>> = ul
                .records
                .iter()
                .map(|r| r.basename.as_str().into())
                .collect();
            let mut fresh = self.scan(&known, recent)?;
            // keep what the first scan saw too: a file can hide from one pass
            for (b, f) in scan.drain() {
                fresh.entry(b).or_insert(f);
            }
            *scan = fresh;
        }
        let before = ul.records.len();
        ul.records.retain(|r| match gone {
            Some(gone) => !gone.contains(&r.basename),
            None => scan.contains_key(&r.basename),
        });
        let mut changed = created || ul.records.len() != before || ul.version != 3;
        let known: HashSet<&str> = ul.records.iter().map(|r| r.basename.as_str()).collect();
        let mut new: Vec<String> = scan
            .keys()
            .filter(|b| !known.contains(b.as_str()))
            .cloned()
            .collect();
        filename::sort_by_name(&mut new, |n| n.as_str());
        for base in new {
            if ul.next_uid >= u32::MAX - 1 {
                return Err(Error::UidsExhausted(self.dir.clone()));
            }
            ul.records.push(Record {
                uid: ul.next_uid,
                ext: Vec::new(),
                basename: base.clone(),
            });
            ul.next_uid += 1;
            recent.insert(base);
            changed = true;
        }
        if changed {
            ul.version = 3;
            lock.replace_via_tmp(&ul.serialize())?;
        }
        Ok(ul)
    }

    /// Records computed virtual sizes as `W` fields (as Dovecot does), so
    /// nobody has to read those files again. Best effort.
    fn persist_vsizes(&self, vsizes: &[(u32, String, u64)]) {
        let res = (|| -> Result<()> {
            let lock = self.lock_uidlist()?;
            let (mut ul, created) = self.read_locked_uidlist()?;
            if created {
                return Ok(());
            }
            let mut changed = false;
            for (uid, base, v) in vsizes {
                if let Some(i) = ul.find_uid(*uid) {
                    let r = &mut ul.records[i];
                    if r.basename == *base && r.ext('W').is_none() {
                        r.set_ext('W', Some(&v.to_string()));
                        changed = true;
                    }
                }
            }
            if changed {
                lock.replace_via_tmp(&ul.serialize())?;
            }
            Ok(())
        })();
        if let Err(e) = res {
            tracing::debug!(dir = %self.dir.display(), "not recording virtual sizes: {e}");
        }
    }

    // ------------------------------------------------------------ keywords

    /// Letter mask for keyword names, creating missing ones in
    /// `dovecot-keywords`. The caller holds the uidlist lock (Dovecot adds
    /// keywords only under it).
    fn keyword_mask_locked(&self, names: &[&str]) -> Result<(u32, Keywords)> {
        let p = self.keywords_path();
        let mut kw = Keywords::read(&p).map_err(|e| io_err("read", &p, e))?;
        let mut mask = 0;
        let mut changed = false;
        for n in names {
            let i = match kw.lookup(n) {
                Some(i) => i,
                None => {
                    changed = true;
                    kw.add(n)
                        .ok_or_else(|| Error::TooManyKeywords(n.to_string()))?
                }
            };
            mask |= 1 << i;
        }
        if changed {
            kw.write(&p, self.lock_timeout)?;
            kw = Keywords::read(&p).map_err(|e| io_err("read", &p, e))?;
        }
        Ok((mask, kw))
    }

    /// Letter mask for keyword names, taking the uidlist lock only if a name
    /// has to be added.
    fn keyword_mask(&mut self, names: &[&str]) -> Result<u32> {
        for n in names {
            if !valid_keyword(n) {
                return Err(Error::InvalidKeyword(n.to_string()));
            }
        }
        let lookup = |kw: &Keywords| -> Option<u32> {
            names
                .iter()
                .map(|n| kw.lookup(n).map(|i| 1u32 << i))
                .try_fold(0, |acc, b| b.map(|b| acc | b))
        };
        if let Some(mask) = lookup(&self.keywords) {
            return Ok(mask);
        }
        let p = self.keywords_path();
        self.keywords = Keywords::read(&p).map_err(|e| io_err("read", &p, e))?;
        if let Some(mask) = lookup(&self.keywords) {
            return Ok(mask);
        }
        let _lock = self.lock_uidlist()?;
        let (mask, kw) = self.keyword_mask_locked(names)?;
        self.keywords = kw;
        Ok(mask)
    }

    // ---------------------------------------------------------- operations

    /// Sets the flags and keywords of `uid` to exactly `flags`/`keywords`
    /// (renaming the file; `,S=`/`,W=` and unknown flag letters are kept).
    /// `Ok(false)` if the message is gone (expunged elsewhere; the next
    /// sync reports it).
    pub fn set_flags(&mut self, uid: u32, flags: Flags, keywords: &[&str]) -> Result<bool> {
        let Some(idx) = self.index_of(uid) else {
            return Ok(false);
        };
        let mask = self.keyword_mask(keywords)?;
        let m = &self.messages[idx];
        let mut found = Found::of(m);
        let base = filename::basename(&found.filename).to_string();
        for attempt in 0..2 {
            let new_name = filename::set_flags(&found.filename, flags, mask);
            let from = self.path_of(&found);
            let to = self.dir.join("cur").join(&new_name);
            let res = if from == to {
                Ok(())
            } else {
                fs::rename(&from, &to)
            };
            match res {
                Ok(()) => {
                    let kw = self.keywords.names_of(mask);
                    let m = &mut self.messages[idx];
                    let before = modseq::signature(m);
                    m.rename(&new_name);
                    m.in_new = false;
                    m.flags = flags;
                    m.set_keywords(kw);
                    // RFC 7162 §3.1: a change takes a new modseq; a STORE
                    // that changes nothing keeps the old one.
                    if modseq::signature(m) != before {
                        if let Some(ix) = &mut self.modseqs {
                            ix.changed(m);
                            if ix.wants_flush() {
                                ix.flush(&self.messages);
                            }
                        }
                    }
                    return Ok(true);
                }
                Err(e) if is_not_found(&e) && attempt == 0 => match self.find_by_basename(&base)? {
                    Some(f) => found = f,
                    None => return Ok(false),
                },
                Err(e) if is_not_found(&e) => return Ok(false),
                Err(e) => return Err(io_err("rename", &from, e)),
            }
        }
        Ok(false)
    }

    /// Deletes the files of `uids`. Returns the UIDs that are now gone
    /// (including ones someone else expunged first); they're not reported
    /// by the next sync.
    pub fn expunge(&mut self, uids: &[u32]) -> Result<Vec<u32>> {
        let mut gone = Vec::new();
        // What we removed ourselves (not someone else first): the quota delta.
        let (mut freed, mut removed) = (0u64, 0i64);
        let res = (|| -> Result<()> {
            for &uid in uids {
                let Some(idx) = self.index_of(uid) else {
                    continue;
                };
                let m = &self.messages[idx];
                let path = self.message_path(m);
                match fs::remove_file(&path) {
                    Ok(()) => {
                        freed += m.size;
                        removed += 1;
                    }
                    Err(e) if is_not_found(&e) => {
                        if let Some(f) = self.find_by_basename(&m.basename())? {
                            let p = self.path_of(&f);
                            match fs::remove_file(&p) {
                                Ok(()) => {
                                    freed += m.size;
                                    removed += 1;
                                }
                                Err(e) if is_not_found(&e) => {}
                                Err(e) => return Err(io_err("unlink", &p, e)),
                            }
                        }
                    }
                    Err(e) => return Err(io_err("unlink", &path, e)),
                }
                gone.push(uid);
            }
            Ok(())
        })();
        // Dovecot's expunge delta: `-bytes -count`.
        self.record_quota(-(freed as i64), -removed);
        res?;
        if !gone.is_empty() {
            let set: HashSet<u32> = gone.iter().copied().collect();
            self.messages.retain(|m| !set.contains(&m.uid));
            gone.sort_unstable();
            gone.dedup();
            if let Some(ix) = &mut self.modseqs {
                ix.expunged(&gone);
                ix.flush(&self.messages);
            }
            let _ = fsync_dir(&self.dir.join("cur"));
        }
        Ok(gone)
    }

    /// Stores a message (IMAP APPEND): written to `tmp/` with LF line
    /// endings, fsynced, given `internal_date` as mtime, renamed into `cur/`
    /// with its flags and numbered under the uidlist lock. Returns its UID;
    /// the next [`sync`](Mailbox::sync) reports it as new.
    pub fn append(
        &self,
        data: &[u8],
        flags: Flags,
        keywords: &[&str],
        internal_date: Option<SystemTime>,
    ) -> Result<u32> {
        let uids = self.append_all(&[(data, flags, keywords.to_vec(), internal_date)])?;
        Ok(uids[0])
    }

    /// Appends messages all or none (RFC 3502 MULTIAPPEND): each is written
    /// and fsynced to `tmp/` first; then all get UIDs and move to `cur/`
    /// under one uidlist lock. On any failure nothing is left behind.
    #[allow(clippy::type_complexity)]
    pub fn append_all(
        &self,
        messages: &[(&[u8], Flags, Vec<&str>, Option<SystemTime>)],
    ) -> Result<Vec<u32>> {
        for (_, _, keywords, _) in messages {
            for n in keywords {
                if !valid_keyword(n) {
                    return Err(Error::InvalidKeyword(n.to_string()));
                }
            }
        }
        let total: u64 = messages
            .iter()
            .map(|(d, ..)| (d.len() - memchr::memchr_iter(b'\r', d).count()) as u64)
            .sum();
        self.check_quota(total, messages.len() as u64)?;
        let mut written: Vec<(PathBuf, String, Flags, Vec<&str>)> =
            Vec::with_capacity(messages.len());
        let mut stored = 0u64;
        let cleanup = |written: &[(PathBuf, String, Flags, Vec<&str>)]| {
            for (tmp, ..) in written {
                let _ = fs::remove_file(tmp);
            }
        };
        for (data, flags, keywords, internal_date) in messages {
            let body = crlf_to_lf(data);
            let size = body.len() as u64;
            stored += size;
            let vsize = vsize_of(&body);
            let base = format!("{},S={size},W={vsize}", write::unique_name());
            let tmp = self.dir.join("tmp").join(&base);
            let write = || -> io::Result<()> {
                let mut f = write::create_new(&tmp)?;
                f.write_all(&body)?;
                if let Some(t) = internal_date {
                    f.set_modified(*t)?;
                }
                f.sync_all()
            };
            if let Err(e) = write() {
                let _ = fs::remove_file(&tmp);
                cleanup(&written);
                return Err(io_err("write", &tmp, e));
            }
            written.push((tmp, base, *flags, keywords.clone()));
        }
        let res = self.commit_new(&written);
        match &res {
            Ok(uids) => self.record_quota(stored as i64, uids.len() as i64),
            Err(_) => cleanup(&written),
        }
        res
    }

    /// Under the uidlist lock: move each `tmp/` file into `cur/` with its
    /// flags and give it the next UID, in order.
    #[allow(clippy::type_complexity)]
    fn commit_new(&self, files: &[(PathBuf, String, Flags, Vec<&str>)]) -> Result<Vec<u32>> {
        let lock = self.lock_uidlist()?;
        let (mut ul, _) = self.read_locked_uidlist()?;
        let cur = self.dir.join("cur");
        let mut uids = Vec::with_capacity(files.len());
        let mut moved = Vec::new();
        let res = (|| -> Result<()> {
            for (tmp, base, flags, kws) in files {
                let (mask, _) = self.keyword_mask_locked(kws)?;
                let name = filename::set_flags(base, *flags, mask);
                if ul.next_uid >= u32::MAX - 1 {
                    return Err(Error::UidsExhausted(self.dir.clone()));
                }
                let dest = cur.join(&name);
                fs::rename(tmp, &dest).map_err(|e| io_err("rename", tmp, e))?;
                moved.push(dest);
                ul.records.push(Record {
                    uid: ul.next_uid,
                    ext: Vec::new(),
                    basename: base.clone(),
                });
                uids.push(ul.next_uid);
                ul.next_uid += 1;
            }
            fsync_dir(&cur).map_err(|e| io_err("fsync", &cur, e))?;
            ul.version = 3;
            lock.replace_via_tmp(&ul.serialize())
        })();
        if let Err(e) = res {
            // not numbered: don't leave half-committed files behind
            for p in moved {
                let _ = fs::remove_file(p);
            }
            return Err(e);
        }
        Ok(uids)
    }

    /// Copies messages into `dest` (which may be this mailbox) keeping
    /// flags, keywords and internal date: hard links when possible, else a
    /// copy. Returns `(source uid, new uid)` pairs in order (for COPYUID);
    /// messages expunged meanwhile are left out.
    pub fn copy_to(&self, uids: &[u32], dest: &Mailbox) -> Result<Vec<(u32, u32)>> {
        self.copy_into(uids, dest, true)
    }

    /// [`copy_to`](Mailbox::copy_to) for a MOVE: the quota is not checked
    /// (the messages leave this mailbox of the same Maildir; Dovecot lets a
    /// user over quota move to Trash), though the copy is still counted and
    /// the expunge that follows uncounts the originals.
    pub fn move_to(&self, uids: &[u32], dest: &Mailbox) -> Result<Vec<(u32, u32)>> {
        let same_root = self.root() == dest.root();
        self.copy_into(uids, dest, !same_root)
    }

    fn copy_into(&self, uids: &[u32], dest: &Mailbox, check: bool) -> Result<Vec<(u32, u32)>> {
        if check && dest.quota.is_some() {
            let wanted: Vec<&MessageInfo> = uids.iter().filter_map(|u| self.get(*u)).collect();
            let bytes = wanted.iter().map(|m| m.size).sum();
            dest.check_quota(bytes, wanted.len() as u64)?;
        }
        let mut staged: Vec<(u32, PathBuf, String, Flags, Vec<String>)> = Vec::new();
        let cleanup = |staged: &[(u32, PathBuf, String, Flags, Vec<String>)]| {
            for s in staged {
                let _ = fs::remove_file(&s.1);
            }
        };
        for &uid in uids {
            let Some(m) = self.get(uid) else { continue };
            let size = m.size;
            let base = format!("{},S={size},W={}", write::unique_name(), m.vsize);
            let tmp = dest.dir.join("tmp").join(&base);
            let mut src = self.message_path(m);
            let mut ok = false;
            for attempt in 0..2 {
                match link_or_copy(&src, &tmp) {
                    Ok(()) => {
                        ok = true;
                        break;
                    }
                    Err(e) if is_not_found(&e) && attempt == 0 && src.exists() => {
                        // tmp/ missing in dest?
                        cleanup(&staged);
                        return Err(io_err("link", &tmp, e));
                    }
                    Err(e) if is_not_found(&e) && attempt == 0 => {
                        match self.find_by_basename(&m.basename()) {
                            Ok(Some(f)) => src = self.path_of(&f),
                            Ok(None) => break,
                            Err(e) => {
                                cleanup(&staged);
                                return Err(e);
                            }
                        }
                    }
                    Err(e) if is_not_found(&e) => break,
                    Err(e) => {
                        cleanup(&staged);
                        return Err(io_err("copy", &src, e));
                    }
                }
            }
            if ok {
                staged.push((uid, tmp, base, m.flags, m.keywords().to_vec()));
            }
        }
        if staged.is_empty() {
            return Ok(Vec::new());
        }
        let files: Vec<(PathBuf, String, Flags, Vec<&str>)> = staged
            .iter()
            .map(|(_, tmp, base, flags, kws)| {
                (
                    tmp.clone(),
                    base.clone(),
                    *flags,
                    kws.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        match dest.commit_new(&files) {
            Ok(new) => {
                let bytes: u64 = staged
                    .iter()
                    .filter_map(|s| self.get(s.0))
                    .map(|m| m.size)
                    .sum();
                dest.record_quota(bytes as i64, new.len() as i64);
                Ok(staged.iter().map(|s| s.0).zip(new).collect())
            }
            Err(e) => {
                cleanup(&staged);
                Err(e)
            }
        }
    }

    /// Opens the message file for reading, following a rename by another
    /// process. `Ok(None)` if it has been expunged.
    pub fn open_message(&self, uid: u32) -> Result<Option<File>> {
        let Some(m) = self.get(uid) else {
            return Ok(None);
        };
        // (the name rebuilt once; the path only if it is needed)
        let at = Found::of(m);
        // Through the held cur/ descriptor: no walk of the whole path for
        // every message a client fetches.
        let opened = match (self.cur_dir.fd(), at.sub) {
            (Some(fd), Sub::Cur) => {
                use rustix::fd::AsFd;
                open_no_atime_at(
                    fd.as_fd(),
                    at.filename.as_str(),
                    rustix::fs::OFlags::empty(),
                )
            }
            _ => open_no_atime(&self.path_of(&at)),
        };
        match opened {
            Ok(f) => return Ok(Some(f)),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(io_err("open", &self.path_of(&at), e)),
        }
        let Some(f) = self.find_by_basename(filename::basename(&at.filename))? else {
            return Ok(None);
        };
        let p = self.path_of(&f);
        match open_no_atime(&p) {
            Ok(f) => Ok(Some(f)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(io_err("open", &p, e)),
        }
    }

    /// Opens message `uid` for reading on behalf of `owner`, the mail user
    /// whose mailbox this is, with the file's length then. Running as root,
    /// the general way is [`as_user`]: four credential switches around the
    /// open, a tenth of a POP3 pull's server CPU when it is done per RETR.
    /// This opens the file as root instead where that gives exactly what
    /// the owner's own open would: the cur/ directory was opened as and is
    /// owned by them (and searchable by its owner), the name is not a
    /// symlink (`O_NOFOLLOW`), and the file is a regular file they own with
    /// the owner's read bit (the kernel's whole check for an owner; they
    /// could chmod it anyway). A hard link to someone else's file fails the
    /// owner check; one to a device or FIFO is opened without blocking and
    /// fails the type check, and the kernel's `fs.protected_hardlinks`
    /// (required, see [`root_may_open_for`]) keeps a user from linking files
    /// they could not read and write themselves. Anything else (another
    /// owner, new/, a name that moved, a server not running as root) goes
    /// the general way.
    pub fn open_message_for(&self, uid: u32, owner: Owner) -> Result<Option<(File, u64)>> {
        if root_may_open_for(owner.uid) {
            if let Some(opened) = self.open_owned_by(uid, owner.uid) {
                return Ok(Some(opened));
            }
        }
        as_user(owner.uid, owner.gid, || {
            let Some(f) = self.open_message(uid)? else {
                return Ok(None);
            };
            let len = f
                .metadata()
                .map_err(|e| io_err("stat", &self.dir, e))?
                .len();
            Ok(Some((f, len)))
        })
    }

    /// The root side of [`Mailbox::open_message_for`]: `None` whenever the
    /// general way must decide.
    fn open_owned_by(&self, uid: u32, owner: u32) -> Option<(File, u64)> {
        use rustix::fd::AsFd;
        use rustix::fs::{FileType, OFlags};
        let held = self.cur_dir.0.as_ref()?;
        let m = self.get(uid)?;
        if held.searchable_by != Some(owner) {
            return None;
        }
        let at = Found::of(m);
        if at.sub != Sub::Cur {
            return None;
        }
        let extra = OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY;
        let file = open_no_atime_at(held.fd.as_fd(), at.filename.as_str(), extra).ok()?;
        let st = rustix::fs::fstat(&file).ok()?;
        let owners_own = FileType::from_raw_mode(st.st_mode) == FileType::RegularFile
            && st.st_uid == owner
            && st.st_mode & 0o400 != 0;
        owners_own.then_some((file, st.st_size as u64))
    }
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        // A folder put in place of ours meanwhile (a restore from a
        // backup) gets nothing of ours written into it.
        if self.cur_dir.fd().is_some() && !self.cur_dir.is_at(&self.dir.join(Sub::Cur.name())) {
            return;
        }
        // What the close writes (a last sync's uidlist, the list, modseqs)
        // is the folder owner's, as a session's writes are: a shutdown
        // drops mailboxes as the server, and a uidlist root wrote (mode
        // 0600) would keep the user's next session out of the folder. The
        // owner of the cur/ we hold, not of whatever the path names now.
        let owner = match self.cur_dir.fd() {
            Some(fd) => rustix::fs::fstat(fd).ok().map(|st| (st.st_uid, st.st_gid)),
            None => {
                use std::os::unix::fs::MetadataExt;
                fs::metadata(&self.dir).ok().map(|m| (m.uid(), m.gid()))
            }
        };
        let close = |mb: &mut Mailbox| {
            mb.close_log();
            mb.flush_modseqs();
        };
        match owner {
            Some((uid, gid)) => as_user(uid, gid, || close(self)),
            None => close(self),
        }
    }
}

/// Messages from which an open's passing allocations (files read whole,
/// the listing's names) are worth handing back to the system.
const BIG_MAILBOX: usize = 10_000;

/// Hands freed heap memory back to the system. glibc keeps what a big
/// open freed (its mmap threshold rises after a large free), ~70 bytes per
/// message of a 100,000-message folder that would stay resident.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas under their locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// UIDs new, gone and with changed flags between two message lists (both
/// sorted by UID).
fn diff(old: &[MessageInfo], new: &[MessageInfo]) -> Changes {
    let mut c = Changes::default();
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        match (old.get(i), new.get(j)) {
            (Some(a), Some(b)) if a.uid == b.uid => {
                if a.flags != b.flags || a.keywords() != b.keywords() {
                    c.flag_changes.push(a.uid);
                }
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a.uid < b.uid => {
                c.expunged_uids.push(a.uid);
                i += 1;
            }
            (Some(a), None) => {
                c.expunged_uids.push(a.uid);
                i += 1;
            }
            (_, Some(b)) => {
                c.new_uids.push(b.uid);
                j += 1;
            }
            (None, None) => break,
        }
    }
    c
}

fn compute_vsize(path: &Path) -> io::Result<u64> {
    let mut f = open_no_atime(path)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut v = 0u64;
    let mut prev = 0u8;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(v);
        }
        for &b in &buf[..n] {
            if b == b'\n' && prev != b'\r' {
                v += 1;
            }
            prev = b;
        }
        v += n as u64;
    }
}
