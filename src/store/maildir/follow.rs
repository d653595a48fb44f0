//! Syncing from a [`DirLog`] instead of listing the directories: the
//! kernel tells which names appeared in or left `new/` and `cur/` since the
//! last sync, so a delivery into a 100,000-message folder costs a look at
//! one name, not a listing of `cur/` (and a flag change of our own costs
//! nothing at all, where the timestamp rule had to rescan until the
//! directory was 2 s old).
//!
//! Exact as long as the log was running before the last full look (the
//! first sync after open, or any later full one) and lost nothing: then a
//! name's last event says whether it exists now, and a name without an
//! event is where that look (or a later applied event) left it.

use std::path::Path;
use std::sync::Arc;

use super::uidlist::{Record, Uidlist};
use super::{filename, Changes, Error, Found, HashMap, HashSet, Mailbox, Result, ScanMap, Sub};
use crate::store::notify::{DirEvent, DirLog, Taken};

/// How much older than a look at the log that found nothing new the
/// timestamps must be for a list snapshot (the file systems we follow
/// stamp changes far finer than this).
pub(super) const LOG_SETTLE: std::time::Duration = std::time::Duration::from_millis(50);

/// How long a followed folder in use must have been quiet before its list
/// snapshot is written again.
const QUIET_BEFORE_LIST: std::time::Duration = std::time::Duration::from_secs(2);

/// A [`DirLog`] a mailbox follows, and the `new/` and `cur/` it watches.
pub(super) struct Following {
    log: Arc<DirLog>,
    dirs: Option<DirIds>,
    /// The list was made by a full look after the log began, and every
    /// event since has been applied or is still in the log.
    pub(super) based: bool,
}

impl std::fmt::Debug for Following {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Following")
            .field("based", &self.based)
            .finish()
    }
}

/// Device and inode of `new/` and `cur/`: a folder renamed away and
/// another made under its name must not be followed through the old one's
/// watches.
pub(super) type DirIds = [(u64, u64); 2];

fn dir_ids(dir: &Path) -> Option<DirIds> {
    use std::os::unix::fs::MetadataExt;
    let id = |sub: &str| {
        std::fs::metadata(dir.join(sub))
            .ok()
            .map(|m| (m.dev(), m.ino()))
    };
    Some([id("new")?, id("cur")?])
}

impl Following {
    pub(super) fn new(dir: &Path, log: Arc<DirLog>) -> Following {
        Following {
            log,
            dirs: dir_ids(dir),
            based: false,
        }
    }
}

/// What the log says a sync has to do.
pub(super) enum Logged {
    /// Nothing anyone needs to hear of changed.
    Unchanged,
    /// New mail only: numbered (appended to the uidlist) and added.
    Done(Changes),
    /// The directories as a full scan would have found them (new/ files
    /// already moved to cur/), made from our list and the events; and the
    /// base names the events say are gone (a file that came after the
    /// take is missing from the map, but not gone).
    Scan(ScanMap, HashSet<String>),
    /// The log can't tell: list the directories.
    Unknown,
}

/// Per base name, each of its names an event touched (sub-directory,
/// name, exists now), the latest event last.
type Touched = HashMap<String, Vec<(Sub, String, bool)>>;

fn touched(events: Vec<DirEvent>) -> Touched {
    let mut t = Touched::default();
    for e in events {
        if e.name.starts_with('.') || e.name.contains(['\n', '\r']) {
            continue; // not messages: listings skip them too
        }
        let sub = if e.in_cur { Sub::Cur } else { Sub::New };
        let names = t
            .entry(filename::basename(&e.name).to_string())
            .or_default();
        names.retain(|(s, n, _)| !(*s == sub && *n == e.name));
        names.push((sub, e.name, e.present));
    }
    t
}

/// Where base name's file is now: among the names events left present
/// and the one we hold (if no event touched it), one in `cur/` before one
/// in `new/`, the latest event's before older ones.
fn resolve(names: &[(Sub, String, bool)], held: Option<Found>) -> Option<Found> {
    let mut cands: Vec<Found> = Vec::new();
    if let Some(h) = held {
        if !names
            .iter()
            .any(|(s, n, _)| *s == h.sub && *n == h.filename)
        {
            cands.push(h);
        }
    }
    cands.extend(
        names
            .iter()
            .filter(|(_, _, present)| *present)
            .map(|(sub, name, _)| Found {
                filename: name.clone(),
                sub: *sub,
            }),
    );
    let best = cands
        .iter()
        .rposition(|f| f.sub == Sub::Cur)
        .or(cands.len().checked_sub(1))?;
    Some(cands.swap_remove(best))
}

impl Mailbox {
    /// From now on, syncs apply `log` instead of listing the directories
    /// (after one more full look, which [`Mailbox::open_following`] makes
    /// at once).
    pub(super) fn follow(&mut self, log: Arc<DirLog>) {
        self.following = Some(Following::new(&self.dir, log));
    }

    /// Whether the log we follow holds changes a sync would collect
    /// (cheap: a sync can then be had at once rather than after an
    /// interval).
    pub fn log_pending(&self) -> bool {
        self.following
            .as_ref()
            .is_some_and(|f| f.based && f.log.pending())
    }

    /// Writes the list snapshot if the list, exact as of `taken` (a take
    /// that found nothing new), is what `fp` (stat-ed after it) describes:
    /// no timestamp may be within [`LOG_SETTLE`] of `taken`, for a change
    /// after `taken` would have moved one past that.
    ///
    /// While the mailbox is in use only a folder quiet for
    /// [`QUIET_BEFORE_LIST`] gets its list written (a 100,000-message
    /// list is 10 MB: not after every delivery); at close, any.
    pub(super) fn keep_snapshot(&mut self, fp: &super::Fingerprint, taken: std::time::SystemTime) {
        let quiet = if self.closing {
            LOG_SETTLE
        } else {
            QUIET_BEFORE_LIST
        };
        if fp.settled_by(taken, quiet)
            && self.snapshot_of.as_ref() != Some(fp)
            && self.messages.len() >= super::snapshot::MIN_MESSAGES
        {
            self.write_snapshot(fp.clone(), taken, LOG_SETTLE);
        }
    }

    /// On the way out: leaves the list snapshot for the next open (after a
    /// restart), if the log says the list is exact. (A folder put in place
    /// of ours never gets here: see `Drop for Mailbox`.)
    pub(super) fn close_log(&mut self) {
        let based = self.following.as_ref().is_some_and(|f| f.based);
        if !based || self.messages.len() < super::snapshot::MIN_MESSAGES {
            return;
        }
        if self.unlisted_dates > 0 {
            // dates read since the list was written: write it again
            self.snapshot_of = None;
        }
        let before = self.snapshot_of.clone();
        // A last sync: with nothing new it writes the list (see
        // `keep_snapshot`); our own changes' events come to nothing.
        self.closing = true;
        let _ = self.sync();
        // Changed in the last moment (a shutdown right after a delivery):
        // wait out the settling time once, rather than leave no list.
        if self.snapshot_of == before && self.fingerprint().ok() != self.snapshot_of {
            std::thread::sleep(LOG_SETTLE + std::time::Duration::from_millis(10));
            let _ = self.sync();
        }
    }

    /// Drops what the log holds: the listing about to start sees it all.
    pub(super) fn restart_log(&self) {
        if let Some(f) = &self.following {
            let _ = f.log.take();
        }
    }

    /// What the log says changed since the last sync; `recent` gets the
    /// base names moved out of `new/`. Leaves the log unbased: the sync
    /// bases it again once it has succeeded.
    pub(super) fn sync_from_log(&mut self, recent: &mut HashSet<String>) -> Result<Logged> {
        let Some(f) = &mut self.following else {
            return Ok(Logged::Unknown);
        };
        if !std::mem::take(&mut f.based) {
            return Ok(Logged::Unknown);
        }
        let taken = std::time::SystemTime::now();
        let events = match f.log.take() {
            Taken::Events(e) => e,
            Taken::Lost => return Ok(Logged::Unknown),
        };
        let followed = f.dirs;
        let (fp, ids) = self.fingerprint_and_ids()?;
        if followed.is_none() || ids != followed {
            tracing::info!(dir = %self.dir.display(), "folder replaced: listing it from now on");
            self.following = None;
            return Ok(Logged::Unknown);
        }
        let Some((old, _)) = &self.fingerprint else {
            return Ok(Logged::Unknown);
        };
        if events.is_empty() && (fp.cur != old.cur || fp.new != old.new) {
            // changed without an event (a file system inotify misses)
            return Ok(Logged::Unknown);
        }
        let files_same = fp.uidlist == old.uidlist && fp.keywords == old.keywords;
        let touched = touched(events);

        // The messages whose names were touched, and whether any is now
        // elsewhere (or gone), or a new one came.
        let mut held: HashMap<&str, Found> = HashMap::default();
        if !touched.is_empty() {
            // (names are rebuilt from their parts: only those whose
            // leading seconds match a touched one's)
            let secs: Vec<Option<u32>> = touched
                .keys()
                .map(|b| super::stored_name::leading_secs(b))
                .collect();
            for m in &self.messages {
                if !secs.iter().any(|&s| m.name_may_start_with(s)) {
                    continue;
                }
                if let Some((b, _)) = touched.get_key_value(&*m.basename()) {
                    held.insert(b.as_str(), Found::of(m));
                }
            }
        }
        let mut moved: Vec<(&str, Option<Found>)> = Vec::new();
        for (base, names) in &touched {
            let before = held.get(base.as_str()).cloned();
            let now = resolve(names, before.clone());
            if now != before {
                moved.push((base.as_str(), now));
            }
        }
        if moved.is_empty() && files_same {
            // The list is exact as of `taken`; once nothing has changed for
            // a while it is also what a later open may adopt (see `sync`).
            self.keep_snapshot(&fp, taken);
            self.fingerprint = Some((fp, taken));
            if let Some(f) = &mut self.following {
                f.based = true;
            }
            return Ok(Logged::Unchanged);
        }

        // New mail to cur/, as a listing would move it.
        for (_, now) in &mut moved {
            if let Some(f) = now.as_ref().filter(|f| f.sub == Sub::New) {
                *now = self.move_to_cur(None, &f.filename.clone(), recent);
            }
        }
        tracing::debug!(
            dir = %self.dir.display(),
            events = touched.len(),
            moved = moved.len(),
            files_same,
            "applying the log"
        );
        // New mail and nothing else (the common case): number just it.
        if files_same
            && moved
                .iter()
                .all(|(b, now)| now.is_some() && !held.contains_key(b))
        {
            let arrivals: Vec<(String, Found)> = moved
                .iter()
                .filter_map(|(b, now)| Some((b.to_string(), now.clone()?)))
                .collect();
            if let Some(c) = self.number_arrivals(arrivals, recent)? {
                return Ok(Logged::Done(c));
            }
        }

        // Our list with the moves applied.
        let mut scan = ScanMap::default();
        scan.reserve(self.messages.len() + moved.len());
        for m in &self.messages {
            scan.insert(m.basename().into_owned(), Found::of(m));
        }
        let mut gone = HashSet::default();
        for (base, now) in moved {
            match now {
                Some(f) => {
                    scan.insert(base.to_string(), f);
                }
                None => {
                    scan.remove(base);
                    gone.insert(base.to_string());
                }
            }
        }
        Ok(Logged::Scan(scan, gone))
    }
}

impl Mailbox {
    /// Gives `arrivals` (files no UID of ours names, moved to cur/ if
    /// they could be) the next UIDs by appending to the uidlist (with
    /// their `W` sizes), and adds them to our list: a delivery costs what
    /// it adds, not a pass over the mailbox. `None` (nothing done) if the
    /// uidlist's next UID is not ours (someone else numbered mail, or it
    /// was remade), or it is locked, or its last line is torn: the full
    /// way then.
    fn number_arrivals(
        &mut self,
        mut files: Vec<(String, Found)>,
        recent: &mut HashSet<String>,
    ) -> Result<Option<Changes>> {
        // A file the uidlist numbers already (we read its record before
        // the file showed up) is not new: the full way places it. (After
        // an open from the list snapshot, once: which those are.)
        if self.unplaced.is_none() {
            self.unplaced = self.find_unplaced();
        }
        let numbered = |b: &String| self.unplaced.as_ref().is_none_or(|u| u.contains(b));
        if files.iter().any(|(b, _)| numbered(b)) {
            tracing::debug!(dir = %self.dir.display(), "new mail the uidlist may number already: full sync");
            return Ok(None);
        }
        for (base, _) in &files {
            recent.insert(base.clone());
        }
        // Dovecot's order, as a full numbering gives
        filename::sort_by_name(&mut files, |f| f.0.as_str());
        if files.len() as u64 + u64::from(self.next_uid) >= u64::from(u32::MAX - 1) {
            return Ok(None);
        }
        // Sizes first (a file without `W=` is read), outside the lock.
        let mut infos = Vec::with_capacity(files.len());
        let mut computed = Vec::new();
        let mut uid = self.next_uid;
        for (base, f) in files {
            let rec = Record {
                uid,
                ext: Vec::new(),
                basename: base,
            };
            if let Some(info) = self.build_info(&rec, f, recent, &mut computed)? {
                infos.push((rec.basename, info));
                uid += 1;
            }
        }
        let lock = match self.lock_uidlist() {
            Ok(l) => l,
            Err(Error::LockTimeout(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        if !continues_at(&self.uidlist_path(), self.uidvalidity, self.next_uid) {
            tracing::debug!(dir = %self.dir.display(), next_uid = self.next_uid, "the uidlist moved on: full sync");
            return Ok(None);
        }
        let mut text = String::new();
        for (base, info) in &infos {
            match computed.iter().find(|(u, _, _)| *u == info.uid) {
                Some((_, _, v)) => text.push_str(&format!("{} W{v} :{base}\n", info.uid)),
                None => text.push_str(&format!("{} :{base}\n", info.uid)),
            }
        }
        lock.append(text.as_bytes())?;
        self.next_uid = uid;
        let mut new: Vec<_> = infos.into_iter().map(|(_, i)| i).collect();
        if let Some(ix) = &mut self.modseqs {
            ix.arrived(&mut new);
        }
        let changes = Changes {
            new_uids: new.iter().map(|m| m.uid).collect(),
            ..Changes::default()
        };
        // an eighth more room, not twice the list (100,000 messages)
        let room = self.messages.capacity() - self.messages.len();
        if room < new.len() {
            self.messages
                .reserve_exact(new.len().max(self.messages.len() / 8));
        }
        self.messages.extend(new);
        if let Some(ix) = &mut self.modseqs {
            ix.flush(&self.messages);
        }
        self.fingerprint = Some((self.fingerprint()?, std::time::SystemTime::now()));
        if let Some(f) = &mut self.following {
            f.based = true;
        }
        Ok(Some(changes))
    }
}

impl Mailbox {
    /// The base names the uidlist numbers that are not in our list.
    fn find_unplaced(&self) -> Option<HashSet<String>> {
        let (ul, _) = Uidlist::read(&self.uidlist_path()).ok()??;
        let held: HashSet<std::borrow::Cow<str>> =
            self.messages.iter().map(|m| m.basename()).collect();
        Some(
            ul.records
                .into_iter()
                .filter(|r| !held.contains(r.basename.as_str()))
                .map(|r| r.basename)
                .collect(),
        )
    }
}

/// Whether the uidlist at `path` goes on at UID `next_uid` of
/// `uidvalidity` (its header's next UID, or its last record's + 1 if that
/// is higher, as readers take it) and ends with a whole line (an append
/// after a torn one would join it). Reads its first and last lines only.
fn continues_at(path: &Path, uidvalidity: u32, next_uid: u32) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    const PIECE: u64 = 4096;
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let mut head = Vec::new();
    if (&mut f).take(PIECE).read_to_end(&mut head).is_err() {
        return false;
    }
    let Some(eol) = head.iter().position(|&b| b == b'\n') else {
        return false;
    };
    let Ok(header) = Uidlist::parse(&head[..=eol]) else {
        return false;
    };
    let Ok(len) = f.seek(SeekFrom::End(0)) else {
        return false;
    };
    let mut tail = Vec::new();
    if f.seek(SeekFrom::Start(len.saturating_sub(PIECE))).is_err()
        || f.read_to_end(&mut tail).is_err()
        || tail.last() != Some(&b'\n')
    {
        return false;
    }
    let last_line = tail[..tail.len() - 1]
        .rsplit(|&b| b == b'\n')
        .next()
        .unwrap_or_default();
    let after_last = if len as usize == eol + 1 {
        0 // the header alone
    } else {
        let uid = last_line.split(|&b| b == b' ').next().unwrap_or_default();
        match std::str::from_utf8(uid)
            .ok()
            .and_then(|u| u.parse::<u32>().ok())
        {
            Some(u) => u.saturating_add(1),
            None => return false,
        }
    };
    header.uidvalidity == uidvalidity && header.next_uid.max(after_last) == next_uid
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(in_cur: bool, present: bool, name: &str) -> DirEvent {
        DirEvent {
            in_cur,
            present,
            name: name.into(),
        }
    }

    fn found(sub: Sub, name: &str) -> Found {
        Found {
            filename: name.into(),
            sub,
        }
    }

    fn resolved(events: Vec<DirEvent>, held: Option<Found>) -> Option<(Sub, String)> {
        let t = touched(events);
        let names = t.get("1.M1P1.h").expect("touched");
        resolve(names, held).map(|f| (f.sub, f.filename))
    }

    #[test]
    fn a_names_last_event_says_where_the_message_is() {
        // delivered, then moved to cur/ by a reader
        let r = resolved(
            vec![
                ev(false, true, "1.M1P1.h"),
                ev(false, false, "1.M1P1.h"),
                ev(true, true, "1.M1P1.h:2,"),
            ],
            None,
        );
        assert_eq!(r, Some((Sub::Cur, "1.M1P1.h:2,".into())));
        // a flag change of a held message
        let r = resolved(
            vec![
                ev(true, false, "1.M1P1.h:2,"),
                ev(true, true, "1.M1P1.h:2,S"),
            ],
            Some(found(Sub::Cur, "1.M1P1.h:2,")),
        );
        assert_eq!(r, Some((Sub::Cur, "1.M1P1.h:2,S".into())));
        // expunged
        let r = resolved(
            vec![ev(true, false, "1.M1P1.h:2,S")],
            Some(found(Sub::Cur, "1.M1P1.h:2,S")),
        );
        assert_eq!(r, None);
        // an event about another name of it leaves the held one standing
        let r = resolved(
            vec![ev(false, true, "1.M1P1.h"), ev(false, false, "1.M1P1.h")],
            Some(found(Sub::Cur, "1.M1P1.h:2,")),
        );
        assert_eq!(r, Some((Sub::Cur, "1.M1P1.h:2,".into())));
        // deleted and made again: there
        let r = resolved(
            vec![
                ev(true, false, "1.M1P1.h:2,"),
                ev(true, true, "1.M1P1.h:2,"),
            ],
            Some(found(Sub::Cur, "1.M1P1.h:2,")),
        );
        assert_eq!(r, Some((Sub::Cur, "1.M1P1.h:2,".into())));
        // in both new/ and cur/: cur/ wins, as in a listing
        let r = resolved(
            vec![ev(true, true, "1.M1P1.h:2,"), ev(false, true, "1.M1P1.h")],
            None,
        );
        assert_eq!(r, Some((Sub::Cur, "1.M1P1.h:2,".into())));
    }

    #[test]
    fn dot_files_and_names_with_line_ends_are_not_messages() {
        let t = touched(vec![
            ev(false, true, ".hidden"),
            ev(false, true, "1.M1P1.h\nx"),
            ev(false, true, "2.M2P2.h"),
        ]);
        assert_eq!(t.keys().collect::<Vec<_>>(), vec!["2.M2P2.h"]);
    }
}
