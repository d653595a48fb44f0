//! Dovecot-compatible dot-locks (`<file>.lock`, created with `O_EXCL`).
//!
//! Dovecot takes `dovecot-uidlist.lock` before assigning UIDs and
//! `dovecot-keywords.lock` / `subscriptions.lock` before rewriting those
//! files (lib/file-dotlock.c). We do the same, and use the lock file itself
//! as the replacement content: write it, fsync it and rename it over the
//! target, which atomically installs the new file and releases the lock.
//!
//! A lock is stale when its mtime is older than the stale timeout (Dovecot
//! uses 120 s for the uidlist and keywords), or when it holds `<pid>:<host>`
//! of a dead process on this host and is older than 2 s (Dovecot writes that
//! when it locks the uidlist).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use rand::Rng;

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
        loop {
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&lock_path)
            {
                Ok(file) => {
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
        file.write_all(content)
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
    if pid <= 0 || pid == std::process::id() as i32 {
        return false;
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
