//! Group commit of directory fsyncs: writers that renamed a file into the
//! same directory share one `fsync(dir)` instead of one each.
//!
//! A writer [`announce`]s itself before it writes its file (it will rename
//! into `dir` soon), turns the announcement into a [`Ticket`] right after
//! its rename, and waits with [`Ticket::wait_durable`]. If no fsync of the
//! directory is running, the waiter leads one, covering every ticket
//! handed out so far. Before it starts, it waits (at most [`GATHER`]) for
//! writers that announced themselves and have not renamed yet, so that one
//! fsync covers them too; with no such writer it starts at once, so a lone
//! writer waits for exactly its own fsync, as before. If an fsync is
//! running, it may have started before this writer's rename, so it cannot
//! count: the writer waits for it to end, and then the first of the
//! waiters leads the next one. Under load one fsync per directory is in
//! flight and the next covers everyone who arrived meanwhile.
//! [`fsync_dir_shared`] is the three steps at once, for writers that
//! don't announce themselves.
//!
//! What a writer may rely on when it gets `Ok`: an fsync of `dir` that
//! *started after its rename* has completed. If that fsync failed, every
//! writer it covered gets the error (none of them may acknowledge).

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a leader waits for announced writers to rename before it
/// fsyncs the directory: about what one file's fsync takes here under
/// load, so a batch's leader waits for the writers already fsyncing.
pub const GATHER: Duration = Duration::from_millis(1);

#[derive(Default)]
struct State {
    /// Tickets handed out (renames announced).
    issued: u64,
    /// Every ticket up to this one is covered by a completed fsync.
    synced: u64,
    /// An fsync is running (or its leader is gathering).
    running: bool,
    /// Writers announced that have not renamed yet.
    pending: u64,
    /// The latest failed fsync: the tickets it covered (up to the first
    /// number) get its error.
    failed: Option<(u64, io::ErrorKind, String)>,
}

#[derive(Default)]
struct Dir {
    state: Mutex<State>,
    /// Signalled when an fsync ends.
    done: Condvar,
    /// Signalled when the last announced writer renamed (or gave up).
    gathered: Condvar,
}

/// Directories with a writer in flight. An entry is dropped when its last
/// writer leaves; a writer that raced with the removal makes a new entry,
/// which costs sharing, never correctness (each entry's rule holds alone).
fn registry() -> &'static Mutex<HashMap<PathBuf, Arc<Dir>>> {
    static DIRS: OnceLock<Mutex<HashMap<PathBuf, Arc<Dir>>>> = OnceLock::new();
    DIRS.get_or_init(Default::default)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere leaves the counters consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Drops `dir`'s entry if `entry` (held by the caller) is the last user.
fn leave(dir: &Path, entry: &Arc<Dir>) {
    let mut dirs = lock(registry());
    // Two references left: the map's and ours, so nobody else is in flight.
    if Arc::strong_count(entry) == 2 && dirs.get(dir).is_some_and(|e| Arc::ptr_eq(e, entry)) {
        dirs.remove(dir);
    }
}

/// A writer that will rename a file into a directory soon.
pub struct Intent {
    dir: PathBuf,
    entry: Arc<Dir>,
    live: bool,
}

/// A rename into a directory, waiting to be made durable.
pub struct Ticket {
    dir: PathBuf,
    entry: Arc<Dir>,
    number: u64,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ticket({} #{})", self.dir.display(), self.number)
    }
}

/// Says that this thread will rename a file into `dir` soon: a leader of
/// `dir`'s next fsync waits for it a little (see [`GATHER`]).
pub fn announce(dir: &Path) -> Intent {
    let entry = lock(registry())
        .entry(dir.to_path_buf())
        .or_default()
        .clone();
    lock(&entry.state).pending += 1;
    Intent {
        dir: dir.to_path_buf(),
        entry,
        live: true,
    }
}

impl Intent {
    /// The rename is done: its ticket.
    pub fn renamed(mut self) -> Ticket {
        let number = {
            let mut st = lock(&self.entry.state);
            st.issued += 1;
            self.arrived(&mut st);
            st.issued
        };
        self.live = false;
        Ticket {
            dir: std::mem::take(&mut self.dir),
            entry: self.entry.clone(),
            number,
        }
    }

    fn arrived(&self, st: &mut State) {
        st.pending -= 1;
        if st.pending == 0 {
            self.entry.gathered.notify_all();
        }
    }
}

impl Drop for Intent {
    fn drop(&mut self) {
        if self.live {
            // The writer failed before its rename: nobody waits for it.
            self.arrived(&mut lock(&self.entry.state));
            leave(&self.dir, &self.entry);
        }
    }
}

impl Ticket {
    /// Returns once an fsync of the directory that started after this
    /// ticket's rename has completed (leading one if none is running).
    pub fn wait_durable(self) -> io::Result<()> {
        self.wait_with(GATHER, super::write::fsync_dir)
    }

    fn wait_with(
        self,
        gather: Duration,
        fsync: impl Fn(&Path) -> io::Result<()>,
    ) -> io::Result<()> {
        let result = wait_or_lead(&self.entry, self.number, gather, || fsync(&self.dir));
        leave(&self.dir, &self.entry);
        result
    }
}

/// Makes every entry this thread created, renamed or removed in `dir`
/// before the call durable, sharing the fsync with concurrent callers.
pub fn fsync_dir_shared(dir: &Path) -> io::Result<()> {
    fsync_dir_shared_with(dir, super::write::fsync_dir)
}

fn fsync_dir_shared_with(dir: &Path, fsync: impl Fn(&Path) -> io::Result<()>) -> io::Result<()> {
    announce(dir).renamed().wait_with(GATHER, fsync)
}

fn wait_or_lead(
    d: &Dir,
    mine: u64,
    gather: Duration,
    fsync: impl Fn() -> io::Result<()>,
) -> io::Result<()> {
    let mut st = lock(&d.state);
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
            // Writers about to rename into the directory: one fsync for
            // them too, if they come soon.
            let until = Instant::now() + gather;
            while st.pending > 0 {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                st = d
                    .gathered
                    .wait_timeout(st, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
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

    fn ticket(dir: &Path) -> Ticket {
        announce(dir).renamed()
    }

    /// A writer that announced itself and renames a little later is
    /// covered by the fsync a leader was about to start: one fsync for two.
    #[test]
    fn a_leader_waits_for_an_announced_writer() {
        let dir = Path::new("/nonexistent/gather");
        let fsyncs = AtomicUsize::new(0);
        let count = |_: &Path| {
            fsyncs.fetch_add(1, Ordering::SeqCst);
            Ok(())
        };
        let late = announce(dir);
        std::thread::scope(|s| {
            let leader = s.spawn(|| ticket(dir).wait_with(Duration::from_secs(5), count));
            std::thread::sleep(Duration::from_millis(50));
            late.renamed()
                .wait_with(Duration::from_secs(5), count)
                .unwrap();
            leader.join().unwrap().unwrap();
        });
        assert_eq!(fsyncs.load(Ordering::SeqCst), 1);
        assert!(!lock(registry()).contains_key(dir), "entry left behind");
    }

    /// Nobody announced: the leader doesn't wait. A writer that gives up
    /// before its rename releases the leader at once, and one that never
    /// comes holds it no longer than the gathering window.
    #[test]
    fn gathering_never_waits_for_nothing_and_is_bounded() {
        let dir = Path::new("/nonexistent/bounded");
        let ok = |_: &Path| Ok(());
        let t = Instant::now();
        ticket(dir).wait_with(Duration::from_secs(5), ok).unwrap();
        assert!(t.elapsed() < Duration::from_secs(2), "a lone writer waited");

        let quitter = announce(dir);
        let t = Instant::now();
        std::thread::scope(|s| {
            let leader = s.spawn(|| ticket(dir).wait_with(Duration::from_secs(5), ok));
            std::thread::sleep(Duration::from_millis(50));
            drop(quitter);
            leader.join().unwrap().unwrap();
        });
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "waited for a writer that gave up"
        );

        let _never = announce(dir);
        let t = Instant::now();
        ticket(dir)
            .wait_with(Duration::from_millis(100), ok)
            .unwrap();
        let waited = t.elapsed();
        assert!(
            waited >= Duration::from_millis(100) && waited < Duration::from_secs(2),
            "{waited:?}"
        );
    }
}
