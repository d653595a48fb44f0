//! "This mailbox changed": how every writer tells every reader. SMTP
//! delivery, POP3's QUIT, and IMAP sessions call [`Notifier::invalidate`]
//! after writing a mailbox; IMAP's shared mailbox copies ask
//! [`Notifier::take_dirty`] before trusting what they hold, and IDLE
//! sessions wait on [`Notifier::subscribe`] instead of polling.
//!
//! Changes made by other processes (another pigeonpost, a Dovecot LDA,
//! Postfix's virtual(8)) arrive through one inotify watcher on the `new/`
//! and `cur/` of each subscribed mailbox. Where inotify can't see changes
//! (NFS) or isn't available, IDLE still looks every 30 s, as Dovecot does.
//!
//! One `Notifier` per server, owned by the protocol contexts: no
//! process-wide state, so two servers can run in one process.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use notify::event::{EventKind, ModifyKind};
use notify::{RecursiveMode, Watcher};
use tokio::sync::watch;

/// Per mailbox directory: the channel, and when it was last subscribed to.
type Channels = HashMap<PathBuf, (watch::Sender<u64>, Instant)>;

/// A mailbox nobody has subscribed to for this long stops being watched.
/// Not at once: a client that logs in for every check would otherwise cost
/// an inotify add and remove per session.
const UNWATCH_AFTER: Duration = Duration::from_secs(60);

/// Dirty marks kept at most; only mailboxes someone has open matter.
const MAX_DIRTY: usize = 10_000;

#[derive(Default)]
pub struct Notifier {
    /// Shared with the inotify watcher's callback.
    channels: Arc<Mutex<Channels>>,
    /// Mailbox directories written to in this process since their shared
    /// copy last looked.
    dirty: Mutex<HashSet<PathBuf>>,
    /// Made at the first subscription; `None` inside if inotify can't be had.
    watcher: OnceLock<Mutex<Option<notify::RecommendedWatcher>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Notifier {
    pub fn new() -> Arc<Notifier> {
        Arc::new(Notifier::default())
    }

    /// The mailbox at `dir` (a Maildir folder) was written to here: its
    /// shared IMAP copy looks again at once, and IDLE sessions wake up.
    pub fn invalidate(&self, dir: &Path) {
        let mut d = lock(&self.dirty);
        if d.len() > MAX_DIRTY {
            d.clear();
        }
        d.insert(dir.to_path_buf());
        drop(d);
        self.bump(dir);
    }

    /// Was `dir` invalidated since the last call? Clears the mark.
    pub fn take_dirty(&self, dir: &Path) -> bool {
        let mut d = lock(&self.dirty);
        !d.is_empty() && d.remove(dir)
    }

    /// Wakes the subscribers of `dir` without marking it dirty (the caller
    /// holds the changed copy already).
    pub fn bump(&self, dir: &Path) {
        bump(&self.channels, dir);
    }

    /// A receiver that sees every later change of the mailbox at `dir`.
    pub fn subscribe(&self, dir: &Path) -> watch::Receiver<u64> {
        let mut channels = lock(&self.channels);
        let unused: Vec<PathBuf> = channels
            .iter()
            .filter(|(_, (tx, at))| tx.receiver_count() == 0 && at.elapsed() > UNWATCH_AFTER)
            .map(|(p, _)| p.clone())
            .collect();
        for p in &unused {
            channels.remove(p);
        }
        if let Some((tx, at)) = channels.get_mut(dir) {
            *at = Instant::now();
            return tx.subscribe();
        }
        let (tx, rx) = watch::channel(0);
        channels.insert(dir.to_path_buf(), (tx, Instant::now()));
        // Not under `channels`: the watcher's thread takes it to deliver
        // events, and (un)watch waits for that thread.
        drop(channels);
        if let Some(w) = lock(self.watcher()).as_mut() {
            for p in &unused {
                // Someone may have subscribed again since it was dropped above.
                if lock(&self.channels).contains_key(p) {
                    continue;
                }
                let _ = w.unwatch(&p.join("new"));
                let _ = w.unwatch(&p.join("cur"));
            }
            for sub in ["new", "cur"] {
                if let Err(e) = w.watch(&dir.join(sub), RecursiveMode::NonRecursive) {
                    tracing::debug!(dir = %dir.display(), error = %e, "can't watch mailbox");
                }
            }
        }
        rx
    }

    /// The inotify watcher, made on first use.
    fn watcher(&self) -> &Mutex<Option<notify::RecommendedWatcher>> {
        self.watcher.get_or_init(|| {
            let channels = self.channels.clone();
            let w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                let Ok(event) = res else {
                    return;
                };
                if !matches!(
                    event.kind,
                    EventKind::Create(_)
                        | EventKind::Remove(_)
                        | EventKind::Modify(ModifyKind::Name(_))
                ) {
                    return;
                }
                // <mailbox>/new/<file> or <mailbox>/cur/<file>: the mailbox.
                // Only a wake-up, not a forced rescan: our own renames
                // (STORE) come back here too, and the shared copy has them.
                for path in &event.paths {
                    if let Some(dir) = path.parent().and_then(Path::parent) {
                        bump(&channels, dir);
                    }
                }
            });
            Mutex::new(match w {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!(error = %e, "no inotify: IDLE sees other processes' changes only every 30 s");
                    None
                }
            })
        })
    }
}

fn bump(channels: &Mutex<Channels>, dir: &Path) {
    if let Some((tx, _)) = lock(channels).get(dir) {
        tx.send_modify(|g| *g = g.wrapping_add(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn maildir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        dir
    }

    #[tokio::test]
    async fn a_file_another_process_drops_into_new_wakes_the_subscriber() {
        let dir = maildir();
        let n = Notifier::new();
        let mut rx = n.subscribe(dir.path());
        std::fs::write(dir.path().join("new/1.M1P1.host"), "x").unwrap();
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .expect("woken within 5 s")
            .unwrap();
        // And by a change made in this process.
        n.invalidate(dir.path());
        tokio::time::timeout(Duration::from_secs(1), rx.changed())
            .await
            .expect("woken by invalidate")
            .unwrap();
    }

    #[test]
    fn dirty_marks_are_taken_once_and_belong_to_one_notifier() {
        let dir = maildir();
        let (a, b) = (Notifier::new(), Notifier::new());
        a.invalidate(dir.path());
        assert!(!b.take_dirty(dir.path()), "another server's notifier");
        assert!(a.take_dirty(dir.path()));
        assert!(!a.take_dirty(dir.path()));
    }
}
