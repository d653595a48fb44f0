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

use super::{filename, Found, HashMap, HashSet, Mailbox, Result, ScanMap, Sub};
use crate::store::notify::{DirEvent, DirLog, Taken};

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
type DirIds = [(u64, u64); 2];

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
    /// The directories as a full scan would have found them (new/ files
    /// already moved to cur/), made from our list and the events.
    Scan(ScanMap),
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
        if f.dirs.is_none() || dir_ids(&self.dir) != f.dirs {
            tracing::info!(dir = %self.dir.display(), "folder replaced: listing it from now on");
            self.following = None;
            return Ok(Logged::Unknown);
        }
        let fp = self.fingerprint()?;
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
            for m in &self.messages {
                if let Some((b, _)) = touched.get_key_value(m.basename()) {
                    let sub = if m.in_new { Sub::New } else { Sub::Cur };
                    held.insert(
                        b.as_str(),
                        Found {
                            filename: m.filename.clone(),
                            sub,
                        },
                    );
                }
            }
        }
        let mut moved: Vec<(&str, Option<Found>)> = Vec::new();
        for (base, names) in &touched {
            let before = held.get(base.as_str()).cloned();
            let now = resolve(names, before.clone());
            let same = match (&before, &now) {
                (Some(a), Some(b)) => a.filename == b.filename && a.sub == b.sub,
                (None, None) => true,
                _ => false,
            };
            if !same {
                moved.push((base.as_str(), now));
            }
        }
        if moved.is_empty() && files_same {
            // The list is exact as of `taken`; once nothing has changed for
            // a while it is also what a later open may adopt (see `sync`).
            if fp.settled_before(taken)
                && self.snapshot_of.as_ref() != Some(&fp)
                && self.messages.len() >= super::snapshot::MIN_MESSAGES
            {
                self.write_snapshot(fp.clone(), taken);
            }
            self.fingerprint = Some((fp, taken));
            if let Some(f) = &mut self.following {
                f.based = true;
            }
            return Ok(Logged::Unchanged);
        }

        // Our list with the moves applied; new arrivals go to cur/.
        let mut scan = ScanMap::default();
        scan.reserve(self.messages.len() + moved.len());
        for m in &self.messages {
            let sub = if m.in_new { Sub::New } else { Sub::Cur };
            scan.insert(
                m.basename().to_string(),
                Found {
                    filename: m.filename.clone(),
                    sub,
                },
            );
        }
        for (base, now) in moved {
            match now {
                Some(f) if f.sub == Sub::New => {
                    if let Some(f) = self.move_to_cur(&f.filename, recent) {
                        scan.insert(base.to_string(), f);
                    }
                }
                Some(f) => {
                    scan.insert(base.to_string(), f);
                }
                None => {
                    scan.remove(base);
                }
            }
        }
        Ok(Logged::Scan(scan))
    }
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
