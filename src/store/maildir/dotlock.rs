//! Dovecot-compatible dot-locks (`<file>.lock`, created with `O_EXCL`).
//!
//! Dovecot takes `dovecot-uidlist.lock` before assigning UIDs and
//! `dovecot-keywords.lock` / `subscriptions.lock` before rewriting those
//! files (lib/file-dotlock.c). We do the same, and use the lock file itself
//! as the replacement content: write it, fsync it and rename it over the
//! target, which atomically installs the new file and releases the lock.
//!
//! The lock file holds `<pid>:<host>` of its holder from the moment it is
//! taken (Dovecot's file_dotlock_create writes the same). The uidlist is
//! installed through `dovecot-uidlist.tmp` ([`DotLock::replace_via_tmp`],
//! as Dovecot's maildir_uidlist_recreate does), so its lock names its
//! holder until it is removed: a process killed while holding it (kill -9,
//! OOM) leaves a lock the next one sees is stale after 2 s, instead of
//! blocking new mail for the 120 s stale timeout.
//!
//! A lock is stale when its mtime is older than the stale timeout (Dovecot
//! uses 120 s for the uidlist and keywords), or when it holds `<pid>:<host>`
//! of a dead process on this host and is older than 2 s.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use rand::Rng;

use super::write::rename_noreplace;
use super::{filename, io_err, Error, Result};

/// How long a lock may sit unchanged before we override it (Dovecot's
/// `MAILDIR_UIDLIST_LOCK_STALE_TIMEOUT`).
pub const STALE_TIMEOUT: Duration = Duration::from_secs(120);

/// A held dot-lock. Dropping it without [`DotLock::replace`] removes it.
#[derive(Debug)]
pub struct DotLock {
    target: PathBuf,
    lock_path: PathBuf,
    file: Option<File>,
    ino: u64,
}

fn lock_path_of(target: &Path) -> PathBuf {
    let mut s = target.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

impl DotLock {
    /// Takes the lock for `target`, waiting up to `timeout`.
    pub fn acquire(target: &Path, timeout: Duration, stale: Duration) -> Result<DotLock> {
        let lock_path = lock_path_of(target);
        let mode = fs::metadata(target)
            .map(|m| m.permissions().mode() & 0o666)
            .unwrap_or(0o600);
        let deadline = Instant::now() + timeout;
        let mut wait = Duration::from_millis(2);
        // The lock appears with its content (Dovecot's file_dotlock_create
        // links a written temporary file the same way), so a holder killed
        // at any point never leaves an empty lock nobody can attribute.
        loop {
            let mut tmp = lock_path.as_os_str().to_owned();
            tmp.push(format!(
                ".{}.{}.{:08x}.tmp",
                filename::hostname(),
                std::process::id(),
                rand::thread_rng().gen::<u32>()
            ));
            let tmp = PathBuf::from(tmp);
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&tmp)
                .map_err(|e| io_err("create lock", &tmp, e))?;
            // Who holds it, for whoever finds it after we died; and an
            // flock, so that a process with the same pid (a restarted
            // container's pid 1) can tell the lock is not its own.
            // SAFETY: flock on a descriptor we own.
            unsafe {
                libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB);
            }
            file.write_all(format!("{}:{}", std::process::id(), filename::hostname()).as_bytes())
                .map_err(|e| io_err("write", &tmp, e))?;
            let taken = rename_noreplace(&tmp, &lock_path);
            if taken.is_err() {
                let _ = fs::remove_file(&tmp);
            }
            match taken {
                Ok(()) => {
                    let ino = file.metadata().map(|m| m.ino()).unwrap_or(0);
                    return Ok(DotLock {
                        target: target.to_path_buf(),
                        lock_path,
                        file: Some(file),
                        ino,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if is_stale(&lock_path, stale) {
                        tracing::warn!(lock = %lock_path.display(), "overriding stale dot-lock");
                        let _ = fs::remove_file(&lock_path);
                        // let a competing overrider finish before we race it
                        std::thread::sleep(Duration::from_millis(
                            rand::thread_rng().gen_range(1..20),
                        ));
                        continue;
                    }
                }
                Err(e) => return Err(io_err("create lock", &lock_path, e)),
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::LockTimeout(lock_path));
            }
            let jitter = rand::thread_rng().gen_range(0..=wait.as_micros() as u64 / 2);
            let sleep = (wait + Duration::from_micros(jitter)).min(deadline - now);
            std::thread::sleep(sleep);
            wait = (wait * 2).min(Duration::from_millis(100));
        }
    }

    /// Installs `content` as the new target file (write, fsync, rename over
    /// the target), releasing the lock. `mtime`, if given, is set on the new
    /// file first.
    pub fn replace(mut self, content: &[u8], mtime: Option<SystemTime>) -> Result<()> {
        let mut file = self.file.take().expect("lock file open");
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(content))
            .and_then(|()| match mtime {
                Some(t) => file.set_modified(t),
                None => Ok(()),
            })
            .and_then(|()| file.sync_data())
            .map_err(|e| io_err("write", &self.lock_path, e))?;
        if !self.still_ours() {
            return Err(Error::LockLost(self.lock_path.clone()));
        }
        fs::rename(&self.lock_path, &self.target)
            .map_err(|e| io_err("rename", &self.lock_path, e))?;
        self.ino = 0; // nothing left to clean up
        if let Some(dir) = self.target.parent() {
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(())
    }

    /// Installs `content` as the new target through `<target>.tmp` (write,
    /// fsync, rename over the target; Dovecot's maildir_uidlist_recreate
    /// does the same with `dovecot-uidlist.tmp`), then releases the lock.
    /// Unlike [`replace`](DotLock::replace), the lock keeps naming its
    /// holder to the end, so a holder killed at any point leaves a lock the
    /// next one can tell is stale.
    pub fn replace_via_tmp(self, content: &[u8]) -> Result<()> {
        let mut tmp = self.target.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mode = fs::metadata(&self.target)
            .map(|m| m.permissions().mode() & 0o666)
            .unwrap_or(0o600);
        let write = || -> io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(mode)
                .open(&tmp)?;
            f.write_all(content)?;
            f.sync_data()
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(io_err("write", &tmp, e));
        }
        if !self.still_ours() {
            let _ = fs::remove_file(&tmp);
            return Err(Error::LockLost(self.lock_path.clone()));
        }
        fs::rename(&tmp, &self.target).map_err(|e| io_err("rename", &tmp, e))?;
        if let Some(dir) = self.target.parent() {
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(()) // dropping self removes the lock
    }

    /// Appends `content` to the target (write, fsync), then releases the
    /// lock: how Dovecot adds uidlist records for new mail without
    /// rewriting the file (readers take only complete lines, and the next
    /// UID from the last record when the header's is behind).
    pub fn append(self, content: &[u8]) -> Result<()> {
        if !self.still_ours() {
            return Err(Error::LockLost(self.lock_path.clone()));
        }
        OpenOptions::new()
            .append(true)
            .open(&self.target)
            .and_then(|mut f| {
                f.write_all(content)?;
                f.sync_data()
            })
            .map_err(|e| io_err("append", &self.target, e))
    }

    fn still_ours(&self) -> bool {
        fs::symlink_metadata(&self.lock_path)
            .map(|m| m.ino() == self.ino)
            .unwrap_or(false)
    }
}

impl Drop for DotLock {
    fn drop(&mut self) {
        if self.ino != 0 && self.still_ours() {
            let _ = fs::remove_file(&self.lock_path);
        }
    }
}

fn is_stale(lock_path: &Path, stale: Duration) -> bool {
    let Ok(meta) = fs::symlink_metadata(lock_path) else {
        return false; // gone: just retry
    };
    let age = meta
        .modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .unwrap_or_default();
    if age > stale {
        return true;
    }
    if age < Duration::from_secs(2) {
        return false;
    }
    // "<pid>:<host>" of a dead local process?
    let mut buf = [0u8; 512];
    let n = File::open(lock_path)
        .and_then(|mut f| f.read(&mut buf))
        .unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]);
    let text = text.trim_end_matches('\n');
    let Some((pid, host)) = text.split_once(':') else {
        return false;
    };
    if host != filename::hostname() {
        return false;
    }
    let Ok(pid) = pid.parse::<i32>() else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    if pid == std::process::id() as i32 {
        // Our pid: held by one of our threads (which keeps it flocked), or
        // left by an earlier process that had the same pid.
        let Ok(f) = File::open(lock_path) else {
            return false;
        };
        // SAFETY: flock on a descriptor we own; closing it releases it.
        return unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    }
    // SAFETY: kill with signal 0 only checks for existence.
    let rc = unsafe { libc::kill(pid, 0) };
    rc != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_and_replace() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("file");
        let lock = DotLock::acquire(&target, Duration::from_secs(1), STALE_TIMEOUT).unwrap();
        let t0 = Instant::now();
        let err = DotLock::acquire(&target, Duration::from_millis(150), STALE_TIMEOUT).unwrap_err();
        assert!(matches!(err, Error::LockTimeout(_)), "{err}");
        assert!(t0.elapsed() >= Duration::from_millis(150));
        lock.replace(b"hello\n", None).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"hello\n");
        assert!(!dir.path().join("file.lock").exists());
        // dropped without replace: removed, target untouched
        drop(DotLock::acquire(&target, Duration::from_secs(1), STALE_TIMEOUT).unwrap());
        assert!(!dir.path().join("file.lock").exists());
        assert_eq!(fs::read(&target).unwrap(), b"hello\n");
    }

    /// A holder killed while holding the lock (nothing dropped) leaves a
    /// lock that says who it was; once that process is gone the lock is
    /// overridden in about 2 s, not the 120 s stale timeout.
    #[test]
    fn a_lock_left_by_a_killed_holder_names_it_and_is_overridden() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("dovecot-uidlist");
        let lock_path = dir.path().join("dovecot-uidlist.lock");
        std::mem::forget(DotLock::acquire(&target, Duration::from_secs(1), STALE_TIMEOUT).unwrap());
        let held = fs::read_to_string(&lock_path).unwrap();
        assert_eq!(
            held,
            format!("{}:{}", std::process::id(), filename::hostname())
        );
        // The same, left by a process that has died (a child we reaped).
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        fs::write(&lock_path, format!("{dead}:{}", filename::hostname())).unwrap();
        // (and one our own pid left, held by nobody: overridden too)
        let t0 = Instant::now();
        let l = DotLock::acquire(&target, Duration::from_secs(10), STALE_TIMEOUT).unwrap();
        assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
        l.replace_via_tmp(b"3 V1 N1\n").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"3 V1 N1\n");
        assert!(!lock_path.exists());
        assert!(!dir.path().join("dovecot-uidlist.tmp").exists());

        // Our own pid, but not held by us (an earlier process with the same
        // pid, as a container's pid 1 after a restart): overridden; while
        // we do hold it: not.
        let held = DotLock::acquire(&target, Duration::from_secs(1), STALE_TIMEOUT).unwrap();
        let old = SystemTime::now() - Duration::from_secs(3);
        File::options()
            .write(true)
            .open(&lock_path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let err = DotLock::acquire(&target, Duration::from_millis(300), STALE_TIMEOUT).unwrap_err();
        assert!(matches!(err, Error::LockTimeout(_)), "{err}");
        drop(held);
        fs::write(
            &lock_path,
            format!("{}:{}", std::process::id(), filename::hostname()),
        )
        .unwrap();
        File::options()
            .write(true)
            .open(&lock_path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let t0 = Instant::now();
        drop(DotLock::acquire(&target, Duration::from_secs(5), STALE_TIMEOUT).unwrap());
        assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    }

    #[test]
    fn stale_lock_is_overridden() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("file");
        let lock = dir.path().join("file.lock");
        fs::write(&lock, b"garbage").unwrap();
        let old = SystemTime::now() - Duration::from_secs(200);
        File::options()
            .write(true)
            .open(&lock)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let l = DotLock::acquire(&target, Duration::from_secs(2), STALE_TIMEOUT).unwrap();
        l.replace(b"x", None).unwrap();
        // a dead pid on this host, 3 s old
        fs::write(&lock, format!("999999999:{}", filename::hostname())).unwrap();
        File::options()
            .write(true)
            .open(&lock)
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(3))
            .unwrap();
        let t0 = Instant::now();
        drop(DotLock::acquire(&target, Duration::from_secs(5), STALE_TIMEOUT).unwrap());
        assert!(t0.elapsed() < Duration::from_secs(1));
    }
}
