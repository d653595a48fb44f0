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
//! The same watcher also keeps a [`DirLog`] for each mailbox a shared
//! copy follows: the names created in or removed from its `new/` and
//! `cur/`, in the kernel's order, so a sync can apply just those instead of
//! listing a 100,000-message `cur/` again for each delivery (a sync drains
//! the kernel's queue first, so nothing done before it is missing).
//!
//! One `Notifier` per server, owned by the protocol contexts: no
//! process-wide state, so two servers can run in one process.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
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
    watcher: OnceLock<Mutex<Option<DirWatcher>>>,
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
                // Someone may have subscribed again since it was dropped
                // above, or a shared copy follows its log.
                if lock(&self.channels).contains_key(p) || w.core.logged(p) {
                    continue;
                }
                w.unwatch(p);
            }
            w.watch(dir);
        }
        rx
    }

    /// A log of the changes to the mailbox at `dir` from now on, for a
    /// copy that applies them instead of listing the directories; `None`
    /// where inotify can't be trusted with that (no inotify, a network or
    /// FUSE file system, a directory that can't be watched).
    pub fn log(&self, dir: &Path) -> Option<Arc<DirLog>> {
        if !sees_every_change(dir) {
            return None;
        }
        let mut watcher = lock(self.watcher());
        let w = watcher.as_mut()?;
        for p in w.unlogged(&self.channels) {
            w.unwatch(&p);
        }
        let log = Arc::new(DirLog {
            state: Mutex::default(),
            core: Arc::downgrade(&w.core),
        });
        lock(&w.core.logs)
            .entry(dir.to_path_buf())
            .or_default()
            .push(Arc::downgrade(&log));
        // Watched only now, after the log is there: no event is missed.
        w.watch(dir).then_some(log)
    }

    /// The inotify watcher, made on first use.
    fn watcher(&self) -> &Mutex<Option<DirWatcher>> {
        self.watcher.get_or_init(|| {
            Mutex::new(match DirWatcher::start(self.channels.clone()) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!(error = %e, "no inotify: IDLE sees other processes' changes only every 30 s");
                    None
                }
            })
        })
    }
}

/// One change a [`DirLog`] keeps: `name` appeared in (`present`) or left
/// `cur/` (`in_cur`) or `new/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEvent {
    pub in_cur: bool,
    pub present: bool,
    pub name: String,
}

/// What [`DirLog::take`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken {
    /// Every change since the last take, oldest first.
    Events(Vec<DirEvent>),
    /// Some were lost (the kernel's queue overflowed, the log outgrew its
    /// bound, the watch or the watcher went away): only the directories
    /// themselves can tell now.
    Lost,
}

/// The changes to one mailbox's `new/` and `cur/` since the last
/// [`take`](DirLog::take), from [`Notifier::log`].
pub struct DirLog {
    state: Mutex<LogState>,
    core: Weak<Core>,
}

#[derive(Default)]
struct LogState {
    events: Vec<DirEvent>,
    lost: bool,
}

/// A log that grows past this many events is dropped as lost (its mailbox
/// then lists its directories once): syncs take it long before.
#[cfg(not(test))]
const MAX_LOGGED: usize = 20_000;
/// Small in tests, so a folder's first look overflows it.
#[cfg(test)]
const MAX_LOGGED: usize = 256;

impl DirLog {
    /// Every change made before this call and since the last one: the
    /// kernel's queue is read first, so none is still on its way.
    pub fn take(&self) -> Taken {
        match self.core.upgrade() {
            Some(core) => core.read_all(),
            None => return Taken::Lost,
        }
        let mut st = lock(&self.state);
        if std::mem::take(&mut st.lost) {
            st.events = Vec::new();
            return Taken::Lost;
        }
        Taken::Events(std::mem::take(&mut st.events))
    }

    /// Whether the watcher's thread has brought events (or a loss) that
    /// no take has collected yet; the kernel's queue is not read.
    pub fn pending(&self) -> bool {
        let st = lock(&self.state);
        st.lost || !st.events.is_empty()
    }

    fn push(&self, e: DirEvent) {
        let mut st = lock(&self.state);
        if st.lost {
            return;
        }
        if st.events.len() >= MAX_LOGGED {
            st.lost = true;
            st.events = Vec::new();
            return;
        }
        st.events.push(e);
    }

    fn lose(&self) {
        let mut st = lock(&self.state);
        st.lost = true;
        st.events = Vec::new();
    }
}

/// Whether inotify sees every change of `dir`: on a local file system,
/// yes; on NFS, CIFS or FUSE another machine's (or daemon's) changes
/// raise no event, so those mailboxes keep listing their directories.
fn sees_every_change(dir: &Path) -> bool {
    const LOCAL: &[i64] = &[
        0xEF53,      // ext2/3/4
        0x5846_5342, // xfs
        0x9123_683E, // btrfs
        0x0102_1994, // tmpfs
        0x2FC1_2FC1, // zfs
        0xF2F5_2010, // f2fs
        0x794C_7630, // overlayfs
    ];
    match rustix::fs::statfs(dir) {
        Ok(st) => LOCAL.contains(&{ st.f_type }),
        Err(_) => false,
    }
}

/// What the inotify instance's reader shares with everyone: the instance
/// itself (read under its lock, by the watcher's thread or by a sync
/// draining the queue, so events reach the logs in the kernel's order),
/// which watch is which directory, the logs, the wake-up channels.
struct Core {
    inotify: Mutex<Inotify>,
    /// Watch → the mailbox directory it belongs to, and whether it is its
    /// `cur/` (else `new/`).
    dirs: Mutex<HashMap<WatchDescriptor, (PathBuf, bool)>>,
    logs: Mutex<HashMap<PathBuf, Vec<Weak<DirLog>>>>,
    channels: Arc<Mutex<Channels>>,
}

impl Core {
    /// Reads every event queued so far: subscribers of the mailboxes they
    /// concern are woken, their logs told.
    fn read_all(&self) {
        let mut woken: HashSet<PathBuf> = HashSet::new();
        {
            let mut inotify = lock(&self.inotify);
            let mut buf = [0u8; 8192];
            loop {
                let events = match inotify.read_events(&mut buf) {
                    Ok(events) => events,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "reading inotify events failed");
                        self.lose_all(&mut woken);
                        break;
                    }
                };
                let dirs = lock(&self.dirs);
                let logs = lock(&self.logs);
                for e in events {
                    if e.mask.contains(EventMask::Q_OVERFLOW) {
                        // Events were lost: every mailbox looks again.
                        woken.extend(dirs.values().map(|(d, _)| d.clone()));
                        logs.values()
                            .flatten()
                            .filter_map(Weak::upgrade)
                            .for_each(|l| l.lose());
                        continue;
                    }
                    let Some((dir, in_cur)) = dirs.get(&e.wd) else {
                        continue;
                    };
                    woken.insert(dir.clone());
                    let Some(logs) = logs.get(dir) else {
                        continue;
                    };
                    let present = e.mask.intersects(EventMask::CREATE | EventMask::MOVED_TO);
                    let gone = e.mask.intersects(EventMask::DELETE | EventMask::MOVED_FROM);
                    let name = e.name.and_then(|n| n.to_str());
                    match name {
                        // the watch ended (directory deleted, or unwatched)
                        _ if e.mask.contains(EventMask::IGNORED) => {
                            logs.iter().filter_map(Weak::upgrade).for_each(|l| l.lose())
                        }
                        Some(name) if present || gone => {
                            for l in logs.iter().filter_map(Weak::upgrade) {
                                l.push(DirEvent {
                                    in_cur: *in_cur,
                                    present,
                                    name: name.to_string(),
                                });
                            }
                        }
                        // non-UTF-8 names are skipped by directory listings too
                        _ => {}
                    }
                }
            }
        }
        // Only a wake-up, not a forced rescan: our own renames (STORE)
        // come back here too, and the shared copy has them.
        for d in woken {
            bump(&self.channels, &d);
        }
    }

    fn lose_all(&self, woken: &mut HashSet<PathBuf>) {
        woken.extend(lock(&self.dirs).values().map(|(d, _)| d.clone()));
        let logs = lock(&self.logs);
        logs.values()
            .flatten()
            .filter_map(Weak::upgrade)
            .for_each(|l| l.lose());
    }

    /// Whether some live log follows `dir` (dead ones are dropped).
    fn logged(&self, dir: &Path) -> bool {
        let mut logs = lock(&self.logs);
        let Some(v) = logs.get_mut(dir) else {
            return false;
        };
        v.retain(|l| l.strong_count() > 0);
        if v.is_empty() {
            logs.remove(dir);
            return false;
        }
        true
    }
}

/// One inotify instance for all watched mailboxes, read by one thread.
/// Only the events that change a mailbox's list or flags are asked for:
/// a file created in, moved into or out of, or deleted from `new/` or
/// `cur/`. (A general-purpose watcher also asks for every open, modify and
/// close: each FETCH of a message body then woke this thread, a quarter of
/// an mbsync pull's server CPU.)
struct DirWatcher {
    watches: Watches,
    core: Arc<Core>,
    /// The reading thread stops when this is written to (on drop); shared
    /// with it, so the descriptor stays open until it has stopped.
    stop: Arc<std::os::fd::OwnedFd>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The inotify descriptor (owned by the thread), for `/proc` checks.
    #[cfg(test)]
    fd: std::os::fd::RawFd,
}

/// How long the watcher's thread lets events gather after reading some.
const GATHER: Duration = Duration::from_millis(20);

const MAILBOX_EVENTS: WatchMask = WatchMask::CREATE
    .union(WatchMask::DELETE)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::ONLYDIR);

impl DirWatcher {
    fn start(channels: Arc<Mutex<Channels>>) -> std::io::Result<DirWatcher> {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        let inotify = Inotify::init()?;
        // SAFETY: eventfd returns a new descriptor we then own (or -1).
        let stop = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if stop < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `stop` is a valid descriptor nobody else owns.
        let stop = Arc::new(unsafe { OwnedFd::from_raw_fd(stop) });
        let thread_stop = stop.clone();
        let watches = inotify.watches();
        let fd = inotify.as_raw_fd();
        let core = Arc::new(Core {
            inotify: Mutex::new(inotify),
            dirs: Mutex::default(),
            logs: Mutex::default(),
            channels,
        });
        let thread_core = core.clone();
        let thread = std::thread::Builder::new()
            .name("mailbox-watch".into())
            .spawn(move || loop {
                let mut fds = [
                    libc::pollfd {
                        fd,
                        events: libc::POLLIN,
                        revents: 0,
                    },
                    libc::pollfd {
                        fd: thread_stop.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    },
                ];
                // SAFETY: poll on two descriptors kept open while this
                // thread runs (the inotify one by `thread_core`).
                let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
                if n < 0
                    && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted
                {
                    return;
                }
                if fds[1].revents != 0 {
                    return;
                }
                if fds[0].revents != 0 {
                    thread_core.read_all();
                    // Let events gather: a folder's first look renames
                    // every new/ file, and a poll woken per rename was half
                    // that look's CPU. Syncs read the queue themselves, so
                    // only IDLE's wake-up waits, by this much at most.
                    std::thread::sleep(GATHER);
                }
            })?;
        Ok(DirWatcher {
            watches,
            core,
            stop,
            thread: Some(thread),
            #[cfg(test)]
            fd,
        })
    }

    /// Watches `dir/new` and `dir/cur`; whether both could be.
    fn watch(&mut self, dir: &Path) -> bool {
        let mut both = true;
        for (sub, in_cur) in [("new", false), ("cur", true)] {
            match self.watches.add(dir.join(sub), MAILBOX_EVENTS) {
                Ok(wd) => {
                    lock(&self.core.dirs).insert(wd, (dir.to_path_buf(), in_cur));
                }
                Err(e) => {
                    both = false;
                    tracing::debug!(dir = %dir.display(), error = %e, "can't watch mailbox");
                }
            }
        }
        both
    }

    /// Stops watching `dir`.
    fn unwatch(&mut self, dir: &Path) {
        let gone: Vec<WatchDescriptor> = {
            let mut dirs = lock(&self.core.dirs);
            let wds: Vec<WatchDescriptor> = dirs
                .iter()
                .filter(|(_, (d, _))| d.as_path() == dir)
                .map(|(wd, _)| wd.clone())
                .collect();
            for wd in &wds {
                dirs.remove(wd);
            }
            wds
        };
        for wd in gone {
            // Already gone if the directory was deleted.
            let _ = self.watches.remove(wd);
        }
    }

    /// The directories watched for logs that are all gone now.
    fn unlogged(&self, channels: &Mutex<Channels>) -> Vec<PathBuf> {
        let watched: HashSet<PathBuf> = lock(&self.core.dirs)
            .values()
            .map(|(d, _)| d.clone())
            .collect();
        let channels = lock(channels);
        watched
            .into_iter()
            .filter(|d| !channels.contains_key(d) && !self.core.logged(d))
            .collect()
    }
}

impl Drop for DirWatcher {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        let one: u64 = 1;
        // SAFETY: an 8-byte write to our own eventfd.
        unsafe {
            libc::write(
                self.stop.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            );
        }
        // It ends at once (it holds none of our locks while it polls), and
        // its inotify instance with it (once the logs' sync calls are
        // done): instances are few (128 per user).
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
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

    /// Reading a message (every FETCH of a body opens its file) wakes
    /// nobody; a flag change by rename and an expunge by deletion do.
    #[tokio::test]
    async fn reads_wake_nobody_renames_and_deletions_do() {
        let dir = maildir();
        let msg = dir.path().join("cur/1.M1P1.host:2,");
        std::fs::write(&msg, "x").unwrap();
        let n = Notifier::new();
        let mut rx = n.subscribe(dir.path());
        for _ in 0..20 {
            std::fs::read(&msg).unwrap();
        }
        assert!(
            tokio::time::timeout(Duration::from_millis(300), rx.changed())
                .await
                .is_err(),
            "reading a message woke the subscriber"
        );
        let flagged = dir.path().join("cur/1.M1P1.host:2,S");
        std::fs::rename(&msg, &flagged).unwrap();
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .expect("a rename in cur/ wakes")
            .unwrap();
        std::fs::remove_file(&flagged).unwrap();
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .expect("a deletion wakes")
            .unwrap();
    }

    /// The kernel is asked only for the events that change a mailbox: no
    /// event (and no wake-up of the watcher's thread) per message opened.
    #[test]
    fn the_kernel_reports_list_changes_only() {
        let dir = maildir();
        let n = Notifier::new();
        let _rx = n.subscribe(dir.path());
        let fd = lock(n.watcher()).as_ref().expect("inotify").fd;
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap();
        let masks: Vec<u32> = info
            .lines()
            .filter(|l| l.starts_with("inotify wd:"))
            .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("mask:")))
            .map(|m| u32::from_str_radix(m, 16).unwrap())
            .collect();
        assert_eq!(masks.len(), 2, "new/ and cur/: {info}");
        for m in masks {
            assert_eq!(
                m & (libc::IN_OPEN | libc::IN_ACCESS | libc::IN_MODIFY | libc::IN_CLOSE),
                0,
                "{m:#x}"
            );
            let wanted =
                libc::IN_CREATE | libc::IN_DELETE | libc::IN_MOVED_FROM | libc::IN_MOVED_TO;
            assert_eq!(m & wanted, wanted, "{m:#x}");
        }
    }

    /// A notifier takes its inotify instance (128 per user by default)
    /// with it: servers made and dropped one after another (tests, a
    /// process running two) never run out.
    #[tokio::test]
    async fn dropped_notifiers_give_their_inotify_instance_back() {
        let dir = maildir();
        for _ in 0..200 {
            let n = Notifier::new();
            let _rx = n.subscribe(dir.path());
        }
        let n = Notifier::new();
        let mut rx = n.subscribe(dir.path());
        std::fs::write(dir.path().join("new/2.M2P2.host"), "y").unwrap();
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .expect("the 201st notifier still watches")
            .unwrap();
    }

    /// Whatever was done before `take` is in it, in order, with no wait
    /// for the watcher's thread: a sync can trust it at once.
    #[test]
    fn a_log_holds_every_change_made_before_it_is_taken_in_order() {
        let dir = maildir();
        let n = Notifier::new();
        let log = n.log(dir.path()).expect("inotify on a local file system");
        let p = |s: &str| dir.path().join(s);
        std::fs::write(p("new/1.M1P1.h"), "x").unwrap();
        std::fs::rename(p("new/1.M1P1.h"), p("cur/1.M1P1.h:2,")).unwrap();
        std::fs::write(p("tmp/2.M2P2.h"), "y").unwrap(); // tmp/ is nobody's business
        std::fs::rename(p("tmp/2.M2P2.h"), p("new/2.M2P2.h")).unwrap();
        std::fs::remove_file(p("cur/1.M1P1.h:2,")).unwrap();
        let e = |in_cur, present, name: &str| DirEvent {
            in_cur,
            present,
            name: name.into(),
        };
        assert_eq!(
            log.take(),
            Taken::Events(vec![
                e(false, true, "1.M1P1.h"),
                e(false, false, "1.M1P1.h"),
                e(true, true, "1.M1P1.h:2,"),
                e(false, true, "2.M2P2.h"),
                e(true, false, "1.M1P1.h:2,"),
            ])
        );
        assert_eq!(log.take(), Taken::Events(vec![]));
        // The watcher went away: nothing it says can be trusted any more.
        drop(n);
        std::fs::write(p("new/3.M3P3.h"), "z").unwrap();
        assert_eq!(log.take(), Taken::Lost);
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
