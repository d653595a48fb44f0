//! What a STATUS answer of a folder depends on, cheap to check again: the
//! identity and modification times of `new/` and `cur/` and the uidlist's
//! stamp. A client that polls STATUS of every folder (Thunderbird does, every
//! few minutes) can then be answered with three stats per unchanged folder
//! instead of an open of each (uidlist, listings, modseq index).
//!
//! Every change a STATUS item can see renames, adds or removes a file in
//! `new/` or `cur/` (counts, flags, sizes, modseqs) or appends to or
//! replaces the uidlist (UIDNEXT, UIDVALIDITY). Directory times move in
//! coarse ticks, so a stamp is only made from a sync whose `new/` and `cur/`
//! times were already [`SCAN_SETTLE`] old when it began: a later change then
//! always moves them. The uidlist needs no such wait: it only ever grows
//! (append) or is replaced by a rename (a new inode), and its stamp has both.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::SystemTime;

use super::uidlist::Stamp;
use super::{follow::DirIds, Mailbox, Sub, SCAN_SETTLE, UIDLIST_NAME};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusStamp {
    /// Device and inode of `new/` and `cur/`: a folder replaced under its
    /// name is another folder, whatever its times.
    dirs: DirIds,
    new: SystemTime,
    cur: SystemTime,
    uidlist: Option<Stamp>,
}

impl StatusStamp {
    /// The folder at `dir` as it is now; `None` if it can't be looked at.
    pub fn current(dir: &Path) -> Option<StatusStamp> {
        let mut p = dir.join(Sub::New.name());
        let new = fs::metadata(&p).ok()?;
        p.set_file_name(Sub::Cur.name());
        let cur = fs::metadata(&p).ok()?;
        p.set_file_name(UIDLIST_NAME);
        let uidlist = match fs::metadata(&p) {
            Ok(m) => Some(Stamp::of(&m)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(_) => return None,
        };
        Some(StatusStamp {
            dirs: [(new.dev(), new.ino()), (cur.dev(), cur.ino())],
            new: new.modified().ok()?,
            cur: cur.modified().ok()?,
            uidlist,
        })
    }
}

impl Mailbox {
    /// The stamp this mailbox's last sync answers for, if a later change is
    /// sure to alter it (see the module comment): the directory times were
    /// settled when the sync began, and nothing changed since.
    pub fn status_stamp(&self) -> Option<StatusStamp> {
        let (fp, scanned) = self.fingerprint.as_ref()?;
        let settled = |t: Option<SystemTime>| t.is_some_and(|t| t + SCAN_SETTLE < *scanned);
        if !(settled(fp.new) && settled(fp.cur)) {
            return None;
        }
        let now = StatusStamp::current(&self.dir)?;
        (Some(now.new) == fp.new && Some(now.cur) == fp.cur && now.uidlist == fp.uidlist)
            .then_some(now)
    }
}
