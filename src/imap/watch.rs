//! Wake-ups for IDLE. Each mailbox directory an IMAP session has selected
//! gets a `tokio::sync::watch` channel that is bumped when the mailbox
//! changes: by this process (SMTP delivery, POP3, another IMAP session; see
//! [`bump`]) or, through one inotify watcher for the whole process, by
//! anyone else writing to its `new/` or `cur/` (another pigeonpost, a
//! Dovecot LDA, Postfix's virtual(8)). IDLE sessions wait on it instead of
//! polling, so 10,000 idle clients cost no CPU until mail arrives. Where
//! inotify can't see changes (NFS) or isn't available, IDLE still looks
//! every 30 s, as Dovecot does.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use notify::event::{EventKind, ModifyKind};
use notify::{RecursiveMode, Watcher};
use tokio::sync::watch;

/// Per mailbox directory: the channel, and when it was last subscribed to.
type Channels = HashMap<PathBuf, (watch::Sender<u64>, Instant)>;
static CHANNELS: LazyLock<Mutex<Channels>> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// A mailbox nobody has selected for this long stops being watched. Not at
/// once: a client that logs in for every check would otherwise cost an
/// inotify add and remove per session.
const UNWATCH_AFTER: Duration = Duration::from_secs(60);

/// The process's one inotify watcher; `None` if it can't be had.
static WATCHER: LazyLock<Mutex<Option<notify::RecommendedWatcher>>> = LazyLock::new(|| {
    let w = notify::recommended_watcher(|res: notify::Result<notify::Event>| {
        let Ok(event) = res else {
            return;
        };
        if !matches!(
            event.kind,
            EventKind::Create(_) | EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))
        ) {
            return;
        }
        // <mailbox>/new/<file> or <mailbox>/cur/<file>: the mailbox. Only a
        // wake-up, not a forced rescan: our own renames (STORE) come back
        // here too, and the shared copy has them already.
        for path in &event.paths {
            if let Some(dir) = path.parent().and_then(Path::parent) {
                bump(dir);
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
});

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A receiver that sees every later change of the mailbox at `dir`.
pub fn subscribe(dir: &Path) -> watch::Receiver<u64> {
    let mut channels = lock(&CHANNELS);
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
    // Not under CHANNELS: the watcher's thread takes it to deliver events,
    // and (un)watch waits for that thread.
    drop(channels);
    if let Some(w) = lock(&WATCHER).as_mut() {
        for p in &unused {
            // Someone may have subscribed again since it was dropped above.
            if lock(&CHANNELS).contains_key(p) {
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

/// The mailbox at `dir` changed: wake its IDLE sessions.
pub fn bump(dir: &Path) {
    if let Some((tx, _)) = lock(&CHANNELS).get(dir) {
        tx.send_modify(|g| *g = g.wrapping_add(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_file_another_process_drops_into_new_wakes_the_subscriber() {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let mut rx = subscribe(dir.path());
        std::fs::write(dir.path().join("new/1.M1P1.host"), "x").unwrap();
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .expect("woken within 5 s")
            .unwrap();
        // And by a change made in this process.
        bump(dir.path());
        tokio::time::timeout(Duration::from_secs(1), rx.changed())
            .await
            .expect("woken by bump")
            .unwrap();
    }
}
