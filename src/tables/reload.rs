//! Hot reload: watch the *directories* holding our files (so a Kubernetes
//! ConfigMap/Secret `..data` symlink swap is seen, ARCHITECTURE.md, "compatibility contract"), and when a
//! file's identity or contents changed, re-parse it and swap it in. A file
//! that fails to parse is logged and the last good version stays in force.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use notify::RecursiveMode;
use notify_debouncer_full::new_debouncer;

/// Something read from files that can be re-read at run time.
pub trait Reloadable: Send + Sync {
    /// What to call it in logs, e.g. "virtual_alias_maps hash:/etc/postfix/virtual".
    fn describe(&self) -> String;
    /// The files it is read from.
    fn paths(&self) -> Vec<PathBuf>;
    /// Re-reads the files; on `Err` the previous version must stay in force.
    fn reload(&self) -> Result<(), String>;
}

/// What identifies a file's version: the target it resolves to (symlinks
/// followed) and its inode, size and times.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    target: Option<PathBuf>,
    ino: u64,
    len: u64,
    modified: Option<SystemTime>,
    ctime: i64,
}

fn fingerprint(path: &Path) -> Option<Fingerprint> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some(Fingerprint {
        target: std::fs::canonicalize(path).ok(),
        ino: meta.ino(),
        len: meta.len(),
        modified: meta.modified().ok(),
        ctime: meta.ctime_nsec() + meta.ctime() * 1_000_000_000,
    })
}

/// How often files are also checked without a notification, as a safety net
/// for filesystems where inotify misses changes (network and overlay mounts).
const POLL_INTERVAL: Duration = Duration::from_secs(1);
const DEBOUNCE: Duration = Duration::from_millis(150);

/// Keeps the watch running; dropping it stops the watcher thread.
pub struct ReloadHandle {
    stop: mpsc::Sender<()>,
}

impl Drop for ReloadHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(());
    }
}

/// Starts watching every file of `items`.
pub fn watch(items: Vec<Arc<dyn Reloadable>>) -> ReloadHandle {
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let (ev_tx, ev_rx) = mpsc::channel();
    let dirs: BTreeSet<PathBuf> = items
        .iter()
        .flat_map(|i| i.paths())
        .map(|p| {
            p.parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("."))
        })
        .collect();
    // Taken before returning, so a change right after start-up is not missed.
    let mut seen: HashMap<PathBuf, Option<Fingerprint>> = items
        .iter()
        .flat_map(|i| i.paths())
        .map(|p| (p.clone(), fingerprint(&p)))
        .collect();
    std::thread::Builder::new()
        .name("reload".into())
        .spawn(move || {
            let mut debouncer = match new_debouncer(DEBOUNCE, None, ev_tx) {
                Ok(d) => Some(d),
                Err(e) => {
                    tracing::warn!(error = %e, "file watching unavailable; polling for changes instead");
                    None
                }
            };
            if let Some(d) = debouncer.as_mut() {
                for dir in &dirs {
                    if let Err(e) = d.watch(dir, RecursiveMode::NonRecursive) {
                        tracing::warn!(dir = %dir.display(), error = %e, "cannot watch directory; polling it instead");
                    }
                }
            }
            loop {
                match stop_rx.try_recv() {
                    Ok(()) | Err(mpsc::TryRecvError::Disconnected) => return,
                    Err(mpsc::TryRecvError::Empty) => {}
                }
                // Either a notification or the poll interval: check fingerprints.
                let _ = ev_rx.recv_timeout(POLL_INTERVAL);
                while ev_rx.try_recv().is_ok() {}
                check(&items, &mut seen);
            }
        })
        .expect("spawning the reload thread");
    ReloadHandle { stop: stop_tx }
}

fn check(items: &[Arc<dyn Reloadable>], seen: &mut HashMap<PathBuf, Option<Fingerprint>>) {
    for item in items {
        let mut changed = false;
        for path in item.paths() {
            let now = fingerprint(&path);
            if seen.get(&path) != Some(&now) {
                seen.insert(path, now);
                changed = true;
            }
        }
        if changed {
            match item.reload() {
                Ok(()) => {
                    crate::observe::metrics::get().reloads.inc();
                    tracing::info!(what = %item.describe(), "reloaded");
                }
                Err(e) => {
                    crate::observe::metrics::get().reload_failures.inc();
                    tracing::error!(what = %item.describe(), error = %e, "reload failed; keeping the previous version");
                }
            }
        }
    }
}
