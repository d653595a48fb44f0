//! Group commit of directory fsyncs: writers that renamed a file into the
//! same directory share one `fsync(dir)` instead of one each.
//!
//! A writer calls [`fsync_dir_shared`] after its rename. It takes a ticket
//! (a count of renames announced for that directory). If no fsync of the
//! directory is running, it runs one at once, covering every ticket handed
//! out so far: a lone writer waits for exactly its own fsync, as before.
//! If one is running, that fsync may have started before this writer's
//! rename, so it cannot count; the writer waits for it to end, and then
//! the first of the waiters runs one more fsync covering all of them.
//! Under load, one fsync per directory is in flight and the next covers
//! everyone who arrived meanwhile.
//!
//! What a writer may rely on when it gets `Ok`: an fsync of `dir` that
//! *started after its rename* has completed. If that fsync failed, every
//! writer it covered gets the error (none of them may acknowledge).

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

#[derive(Default)]
struct State {
    /// Tickets handed out (renames announced).
    issued: u64,
    /// Every ticket up to this one is covered by a completed fsync.
    synced: u64,
    /// An fsync is running.
    running: bool,
    /// The latest failed fsync: the tickets it covered (up to the first
    /// number) get its error.
    failed: Option<(u64, io::ErrorKind, String)>,
}

#[derive(Default)]
struct Dir {
    state: Mutex<State>,
    done: Condvar,
}

/// Directories with a writer in flight. An entry is dropped when its last
/// writer leaves; a writer that raced with the removal makes a new entry,
/// which costs sharing, never correctness (each entry's rule holds alone).
fn registry() -> &'static Mutex<HashMap<PathBuf, Arc<Dir>>> {
    static DIRS: OnceLock<Mutex<HashMap<PathBuf, Arc<Dir>>>> = OnceLock::new();
    DIRS.get_or_init(Default::default)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere leaves the counters consistent (they only grow).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Makes every entry this thread created, renamed or removed in `dir`
/// before the call durable, sharing the fsync with concurrent callers.
pub fn fsync_dir_shared(dir: &Path) -> io::Result<()> {
    fsync_dir_shared_with(dir, super::write::fsync_dir)
}

fn fsync_dir_shared_with(dir: &Path, fsync: impl Fn(&Path) -> io::Result<()>) -> io::Result<()> {
    let entry = lock(registry())
        .entry(dir.to_path_buf())
        .or_default()
        .clone();
    let result = wait_or_lead(&entry, || fsync(dir));
    let mut dirs = lock(registry());
    // Two references left: the map's and ours, so nobody else is in flight.
    if Arc::strong_count(&entry) == 2 {
        dirs.remove(dir);
    }
    result
}

fn wait_or_lead(d: &Dir, fsync: impl Fn() -> io::Result<()>) -> io::Result<()> {
    let mut st = lock(&d.state);
    st.issued += 1;
    let mine = st.issued;
    loop {
        if st.synced >= mine {
            return Ok(());
        }
        if let Some((upto, kind, msg)) = &st.failed {
            if *upto >= mine {
                return Err(io::Error::new(*kind, msg.clone()));
            }
        }
        if !st.running {
            st.running = true;
            let covers = st.issued;
            drop(st);
            let result = fsync();
            st = lock(&d.state);
            st.running = false;
            match &result {
                Ok(()) => st.synced = st.synced.max(covers),
                Err(e) => st.failed = Some((covers, e.kind(), e.to_string())),
            }
            d.done.notify_all();
            return result;
        }
        st = d.done.wait(st).unwrap_or_else(|p| p.into_inner());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Barrier;
    use std::time::Duration;

    #[test]
    fn a_lone_writer_runs_its_own_fsync() {
        let n = AtomicUsize::new(0);
        let dir = Path::new("/nonexistent/lone");
        for _ in 0..3 {
            fsync_dir_shared_with(dir, |_| {
                n.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
            .unwrap();
        }
        assert_eq!(n.load(Ordering::SeqCst), 3);
        assert!(!lock(registry()).contains_key(dir), "entry left behind");
    }

    /// 16 writers arriving while one slow fsync runs share a second one;
    /// each writer's ticket is covered by an fsync that started after it
    /// arrived.
    #[test]
    fn writers_arriving_during_an_fsync_share_the_next_one() {
        let dir = Path::new("/nonexistent/shared");
        let fsyncs = AtomicUsize::new(0);
        let started = Barrier::new(2);
        let slow = |_: &Path| {
            if fsyncs.fetch_add(1, Ordering::SeqCst) == 0 {
                started.wait();
                std::thread::sleep(Duration::from_millis(200));
            }
            Ok(())
        };
        std::thread::scope(|s| {
            s.spawn(|| fsync_dir_shared_with(dir, slow).unwrap());
            started.wait();
            let writers: Vec<_> = (0..16)
                .map(|_| s.spawn(|| fsync_dir_shared_with(dir, slow)))
                .collect();
            for w in writers {
                w.join().unwrap().unwrap();
            }
        });
        assert_eq!(
            fsyncs.load(Ordering::SeqCst),
            2,
            "one fsync for the 16 latecomers"
        );
    }

    /// An fsync that started before a writer's rename does not count for it,
    /// even if it ends after.
    #[test]
    fn an_fsync_already_running_does_not_cover_a_later_rename() {
        let dir = Path::new("/nonexistent/order");
        let fsyncs = AtomicUsize::new(0);
        let started = Barrier::new(2);
        let slow = |_: &Path| {
            if fsyncs.fetch_add(1, Ordering::SeqCst) == 0 {
                started.wait();
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(())
        };
        std::thread::scope(|s| {
            s.spawn(|| fsync_dir_shared_with(dir, slow).unwrap());
            started.wait();
            fsync_dir_shared_with(dir, slow).unwrap();
        });
        assert_eq!(fsyncs.load(Ordering::SeqCst), 2);
    }

    /// A failed fsync fails every writer it covered; the next writer tries
    /// again.
    #[test]
    fn a_failed_fsync_fails_everyone_it_covered() {
        let dir = Path::new("/nonexistent/fail");
        let fsyncs = AtomicUsize::new(0);
        let started = Barrier::new(2);
        let failing = |_: &Path| match fsyncs.fetch_add(1, Ordering::SeqCst) {
            0 => {
                started.wait();
                std::thread::sleep(Duration::from_millis(200));
                Ok(())
            }
            1 => Err(io::Error::other("disk on fire")),
            _ => Ok(()),
        };
        let failed = std::thread::scope(|s| {
            s.spawn(|| fsync_dir_shared_with(dir, failing).unwrap());
            started.wait();
            let writers: Vec<_> = (0..8)
                .map(|_| s.spawn(|| fsync_dir_shared_with(dir, failing)))
                .collect();
            writers
                .into_iter()
                .map(|w| w.join().unwrap())
                .filter(|r| r.as_ref().is_err_and(|e| e.to_string() == "disk on fire"))
                .count()
        });
        assert_eq!(failed, 8, "all eight latecomers shared the failed fsync");
        fsync_dir_shared_with(dir, failing).unwrap();
        assert_eq!(fsyncs.load(Ordering::SeqCst), 3);
    }
}
