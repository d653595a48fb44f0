//! mbox delivery in the style of Postfix local(8) / virtual(8)
//! (<https://www.postfix.org/local.8.html>, `mailbox_delivery_lock = fcntl,
//! dotlock`).
//!
//! Each message is appended as
//!
//! ```text
//! From <envelope sender or MAILER-DAEMON> <asctime date, UTC>
//! <prefix + body, CRLF → LF, lines beginning "From " quoted as ">From ">
//! <newline if the message did not end with one>
//! <blank line>
//! ```
//!
//! Like Postfix (mail_copy(3) with MAIL_COPY_QUOTE | MAIL_COPY_BLANK) the
//! separating blank line is always added, so readers that strip exactly one
//! blank line before the next "From " get the message back unchanged.
//!
//! Locking: a dotlock `<path>.lock` (O_EXCL, stale after 5 minutes) plus an
//! fcntl write lock on the mailbox, both retried for up to ~10 s so a stuck
//! mail reader cannot hang the SMTP transaction (we answer 4xx instead). On
//! Linux the fcntl lock is an open-file-description lock (F_OFD_SETLK): it
//! conflicts with the classic POSIX locks other MUAs/MDAs take, and unlike
//! them it is not shared between threads of this process nor dropped when some
//! other descriptor of the file is closed. The message is fsynced before the
//! locks are released; on any failure the file is truncated back to its
//! original length so no partial message remains.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::deliver::{DeliverError, Message, Owner};

/// A dotlock older than this is considered left over by a crashed process.
const DOTLOCK_STALE: Duration = Duration::from_secs(5 * 60);
/// How long we wait for the dotlock and the fcntl lock together.
const LOCK_TIMEOUT: Duration = Duration::from_secs(10);
/// Sleep between lock attempts.
const LOCK_RETRY: Duration = Duration::from_millis(25);

/// Appends one message to the mbox file at `path` (created with mode 0600 and
/// chowned to `owner` if missing; parent directories are not created).
///
/// Returns only after the message has been fsynced; on error the mailbox is
/// left as it was and the error's [`DeliverError::smtp_reply`] is a 4xx.
pub fn deliver_mbox(
    path: &Path,
    msg: &Message,
    envelope_sender: &str,
    arrival: SystemTime,
    owner: Option<&Owner>,
) -> Result<(), DeliverError> {
    deliver_mbox_timeout(path, msg, envelope_sender, arrival, owner, LOCK_TIMEOUT)
}

fn deliver_mbox_timeout(
    path: &Path,
    msg: &Message,
    envelope_sender: &str,
    arrival: SystemTime,
    owner: Option<&Owner>,
    lock_timeout: Duration,
) -> Result<(), DeliverError> {
    // Build the whole entry before taking the locks: hold them briefly and
    // append with one write.
    let entry = mbox_entry(msg, envelope_sender, arrival);
    let deadline = Instant::now() + lock_timeout;

    let dotlock = DotLock::acquire(path, deadline)?;
    let (file, created) = open_mailbox(path, owner)?;
    fcntl_lock(&file, path, deadline)?;

    let orig_len = file.metadata().map_err(io_err("stat", path))?.len();
    let result = (&file)
        .write_all(&entry)
        .map_err(io_err("write", path))
        .and_then(|()| file.sync_all().map_err(io_err("fsync", path)))
        .and_then(|()| {
            if created {
                // Make the new directory entry durable too.
                super::deliver::fsync_dir(parent_dir(path))
            } else {
                Ok(())
            }
        });
    if let Err(e) = result {
        // No partial message may remain (Postfix local(8) truncates too).
        if let Err(te) = file.set_len(orig_len).and_then(|()| file.sync_all()) {
            tracing::error!(path = %path.display(), error = %te,
                "cannot truncate mailbox after failed delivery");
        }
        return Err(e);
    }
    // Release the fcntl lock (close) before removing the dotlock.
    drop(file);
    drop(dotlock);
    Ok(())
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> DeliverError + 'a {
    move |e| DeliverError::from_io(op, path, e)
}

/// `<path>.lock`, created with O_EXCL and removed on drop.
struct DotLock {
    path: PathBuf,
}

impl DotLock {
    fn acquire(mailbox: &Path, deadline: Instant) -> Result<DotLock, DeliverError> {
        let mut name = mailbox.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        loop {
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
                .open(&path)
            {
                Ok(_) => return Ok(DotLock { path }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(DeliverError::from_io("lock", &path, e)),
            }
            let stale = std::fs::symlink_metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|mtime| SystemTime::now().duration_since(mtime).ok())
                .is_some_and(|age| age > DOTLOCK_STALE);
            if stale {
                tracing::warn!(path = %path.display(), "removing stale mailbox dotlock");
                match std::fs::remove_file(&path) {
                    Ok(()) => continue,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(DeliverError::from_io("lock", &path, e)),
                }
            }
            if Instant::now() >= deadline {
                return Err(DeliverError::Io {
                    path,
                    op: "lock",
                    source: io::Error::new(io::ErrorKind::TimedOut, "mailbox dotlock is held"),
                });
            }
            std::thread::sleep(LOCK_RETRY);
        }
    }
}

impl Drop for DotLock {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "removing mailbox dotlock");
        }
    }
}

/// Opens (or creates, 0600 + chown) the mailbox for appending. Refuses
/// symlinks, non-regular files and files with several hard links, as
/// Postfix's safe_open does.
fn open_mailbox(path: &Path, owner: Option<&Owner>) -> Result<(File, bool), DeliverError> {
    let flags = libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK;
    let mut attempts = 0;
    loop {
        match OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(flags)
            .open(path)
        {
            Ok(f) => {
                if let Some(o) = owner {
                    std::os::unix::fs::fchown(&f, Some(o.uid), Some(o.gid))
                        .map_err(io_err("chown", path))?;
                }
                return Ok((f, true));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(DeliverError::from_io("create", path, e)),
        }
        match OpenOptions::new()
            .append(true)
            .custom_flags(flags)
            .open(path)
        {
            Ok(f) => {
                let m = f.metadata().map_err(io_err("stat", path))?;
                let bad = if !m.file_type().is_file() {
                    Some("mailbox is not a regular file".to_string())
                } else if m.nlink() != 1 {
                    Some(format!("mailbox has {} hard links", m.nlink()))
                } else {
                    None
                };
                return match bad {
                    None => Ok((f, false)),
                    Some(msg) => Err(DeliverError::Io {
                        path: path.to_path_buf(),
                        op: "open",
                        source: io::Error::other(msg),
                    }),
                };
            }
            // Removed between the two opens: try again once.
            Err(e) if e.kind() == io::ErrorKind::NotFound && attempts == 0 => attempts += 1,
            Err(e) => return Err(DeliverError::from_io("open", path, e)),
        }
    }
}

/// Whole-file fcntl write lock, retried until `deadline`.
fn fcntl_lock(file: &File, path: &Path, deadline: Instant) -> Result<(), DeliverError> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let mut cmd = libc::F_OFD_SETLK;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let mut cmd = libc::F_SETLK;
    loop {
        // SAFETY: flock is plain old data; all-zero is valid (and l_pid must
        // be 0 for OFD locks).
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = libc::F_WRLCK as _;
        fl.l_whence = libc::SEEK_SET as _;
        // l_start = 0, l_len = 0: the whole file.
        fl.l_start = 0;
        fl.l_len = 0;
        // SAFETY: valid fd and pointer to an initialised flock.
        let r = unsafe { libc::fcntl(file.as_raw_fd(), cmd, &fl) };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EACCES) | Some(libc::EAGAIN) => {
                if Instant::now() >= deadline {
                    return Err(DeliverError::Io {
                        path: path.to_path_buf(),
                        op: "lock",
                        source: io::Error::new(
                            io::ErrorKind::TimedOut,
                            "mailbox fcntl lock is held",
                        ),
                    });
                }
                std::thread::sleep(LOCK_RETRY);
            }
            // Kernel without OFD locks (< 3.15): classic POSIX lock. Still
            // safe within this process because the dotlock serialises us.
            Some(libc::EINVAL) if cmd != libc::F_SETLK => cmd = libc::F_SETLK,
            _ => return Err(DeliverError::from_io("lock", path, e)),
        }
    }
}

/// The bytes appended for one message (see the module docs).
fn mbox_entry(msg: &Message, envelope_sender: &str, arrival: SystemTime) -> Vec<u8> {
    let text = super::maildir::write::to_lf(msg.prefix, msg.body);
    let mut out = Vec::with_capacity(text.len() + 128);
    out.extend_from_slice(b"From ");
    if envelope_sender.is_empty() {
        out.extend_from_slice(b"MAILER-DAEMON");
    } else {
        // The From_ line is one line of space-separated fields.
        out.extend(envelope_sender.bytes().map(|b| {
            if b.is_ascii_whitespace() || b.is_ascii_control() {
                b'_'
            } else {
                b
            }
        }));
    }
    out.push(b' ');
    out.extend_from_slice(asctime_utc(arrival).as_bytes());
    out.push(b'\n');
    for line in text.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b"From ") {
            out.push(b'>');
        }
        out.extend_from_slice(line);
    }
    if !text.is_empty() && !text.ends_with(b"\n") {
        out.push(b'\n');
    }
    out.push(b'\n');
    out
}

/// asctime(3) format in UTC, e.g. "Sun Nov 22 06:30:00 2026" (day of month
/// space-padded: "Thu Jan  1 00:00:00 1970").
fn asctime_utc(t: SystemTime) -> String {
    let secs: i64 = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => {
            let d = e.duration();
            -(d.as_secs() as i64) - i64::from(d.subsec_nanos() > 0)
        }
    };
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    const WDAY: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    // 1970-01-01 was a Thursday.
    let wday = WDAY[(days + 4).rem_euclid(7) as usize];
    format!(
        "{wday} {} {d:>2} {:02}:{:02}:{:02} {y}",
        MON[(m - 1) as usize],
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

/// Days since 1970-01-01 → (year, month 1..=12, day 1..=31), proleptic
/// Gregorian (Howard Hinnant's civil_from_days).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn msg<'a>(prefix: &'a [u8], body: &'a [u8]) -> Message<'a> {
        Message { prefix, body }
    }

    fn lock_path(p: &Path) -> PathBuf {
        PathBuf::from(format!("{}.lock", p.display()))
    }

    use crate::store::test_support::Tmpfs;

    #[test]
    fn asctime_known_values() {
        let cases: [(i64, &str); 7] = [
            (0, "Thu Jan  1 00:00:00 1970"),
            (951_782_400, "Tue Feb 29 00:00:00 2000"),
            (1_795_329_000, "Sun Nov 22 06:30:00 2026"),
            (1_772_366_400, "Sun Mar  1 12:00:00 2026"),
            (2_147_483_648, "Tue Jan 19 03:14:08 2038"),
            (4_107_542_400, "Mon Mar  1 00:00:00 2100"),
            (-1, "Wed Dec 31 23:59:59 1969"),
        ];
        for (secs, want) in cases {
            let t = if secs >= 0 {
                at(secs as u64)
            } else {
                UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
            };
            assert_eq!(asctime_utc(t), want, "{secs}");
        }
        assert_eq!(
            asctime_utc(UNIX_EPOCH - Duration::from_millis(1)),
            "Wed Dec 31 23:59:59 1969"
        );
    }

    #[test]
    fn two_deliveries_append() {
        let td = tempfile::tempdir().unwrap();
        let mb = td.path().join("user");
        deliver_mbox(
            &mb,
            &msg(
                b"Return-Path: <a@b.example>\r\n",
                b"Subject: one\r\n\r\nhello\r\n",
            ),
            "a@b.example",
            at(0),
            None,
        )
        .unwrap();
        deliver_mbox(
            &mb,
            &msg(b"", b"Subject: two\r\n\r\nbye\r\n"),
            "",
            at(951_782_400),
            None,
        )
        .unwrap();
        let got = std::fs::read_to_string(&mb).unwrap();
        assert_eq!(
            got,
            "From a@b.example Thu Jan  1 00:00:00 1970\n\
             Return-Path: <a@b.example>\nSubject: one\n\nhello\n\n\
             From MAILER-DAEMON Tue Feb 29 00:00:00 2000\n\
             Subject: two\n\nbye\n\n"
        );
        let meta = std::fs::metadata(&mb).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert!(!lock_path(&mb).exists());
    }

    #[test]
    fn from_quoting_and_newlines() {
        let body = b"Subject: q\r\n\r\nFrom me to you\r\n>From already\r\nFrom\r\n From x\r\nFromage\r\nFrom y";
        let e = mbox_entry(&msg(b"", body), "s@x", at(0));
        assert_eq!(
            String::from_utf8(e).unwrap(),
            "From s@x Thu Jan  1 00:00:00 1970\n\
             Subject: q\n\n>From me to you\n>From already\nFrom\n From x\nFromage\n>From y\n\n"
        );
        // Prefix lines count as line starts too; sender whitespace sanitised.
        let e = mbox_entry(&msg(b"From x\r\n", b"b"), "a b\r\n@x", at(0));
        assert_eq!(
            String::from_utf8(e).unwrap(),
            "From a_b__@x Thu Jan  1 00:00:00 1970\n>From x\nb\n\n"
        );
        // Always one separating blank line, even after a trailing blank line.
        let e = mbox_entry(&msg(b"", b"a\r\n\r\n"), "s", at(0));
        assert!(e.ends_with(b"\na\n\n\n"));
        // Lone CR kept.
        let e = mbox_entry(&msg(b"", b"a\rb\r\n"), "s", at(0));
        assert!(e.ends_with(b"\na\rb\n\n"));
    }

    #[test]
    fn no_trailing_newline() {
        let td = tempfile::tempdir().unwrap();
        let mb = td.path().join("user");
        deliver_mbox(
            &mb,
            &msg(b"", b"Subject: x\r\n\r\nno newline"),
            "s@x",
            at(0),
            None,
        )
        .unwrap();
        deliver_mbox(
            &mb,
            &msg(b"", b"Subject: y\r\n\r\nsecond"),
            "s@x",
            at(0),
            None,
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(&mb).unwrap(),
            "From s@x Thu Jan  1 00:00:00 1970\nSubject: x\n\nno newline\n\n\
             From s@x Thu Jan  1 00:00:00 1970\nSubject: y\n\nsecond\n\n"
        );
    }

    #[test]
    fn disk_full_truncates_back() {
        let Some(fs) = Tmpfs::mount("64k") else {
            return;
        };
        let mb = fs.dir.path().join("user");
        deliver_mbox(
            &mb,
            &msg(b"", b"Subject: small\r\n\r\nok\r\n"),
            "s@x",
            at(0),
            None,
        )
        .unwrap();
        let before = std::fs::read(&mb).unwrap();
        let big = vec![b'x'; 100 * 1024];
        let e =
            deliver_mbox(&mb, &msg(b"Subject: big\r\n\r\n", &big), "s@x", at(0), None).unwrap_err();
        assert!(matches!(e, DeliverError::NoSpace { .. }), "{e:?}");
        assert_eq!(e.smtp_reply().0, 452);
        assert_eq!(std::fs::read(&mb).unwrap(), before);
        assert!(!lock_path(&mb).exists());
        // And the mailbox still works.
        deliver_mbox(&mb, &msg(b"", b"again\r\n"), "s@x", at(0), None).unwrap();
        assert!(std::fs::read_to_string(&mb)
            .unwrap()
            .ends_with("\nagain\n\n"));
    }

    #[test]
    fn concurrent_deliveries_intact() {
        let td = tempfile::tempdir().unwrap();
        let mb = td.path().join("user");
        let filler: String = (0..40).map(|i| format!("filler line {i}\r\n")).collect();
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let mb = mb.clone();
                let filler = filler.clone();
                std::thread::spawn(move || {
                    for i in 0..25 {
                        let body = format!("Subject: {t}-{i}\r\n\r\n{filler}From {t}-{i}\r\n");
                        deliver_mbox(&mb, &msg(b"", body.as_bytes()), "s@x", at(0), None).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let text = std::fs::read_to_string(&mb).unwrap();
        let expected_body: String = filler.replace("\r\n", "\n");
        let mut seen = Vec::new();
        for entry in text.strip_prefix("From ").unwrap().split("\n\nFrom ") {
            let entry = entry.strip_suffix("\n\n").unwrap_or(entry);
            let (from_line, rest) = entry.split_once('\n').unwrap();
            assert_eq!(from_line, "s@x Thu Jan  1 00:00:00 1970");
            let (subject, rest) = rest.split_once("\n\n").unwrap();
            let id = subject.strip_prefix("Subject: ").unwrap();
            assert_eq!(
                rest,
                format!("{expected_body}>From {id}\n").trim_end_matches('\n')
            );
            seen.push(id.to_string());
        }
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 100);
        assert!(!lock_path(&mb).exists());
    }

    #[test]
    fn stale_dotlock_is_broken() {
        let td = tempfile::tempdir().unwrap();
        let mb = td.path().join("user");
        let lock = lock_path(&mb);
        let f = File::create(&lock).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(600))
            .unwrap();
        drop(f);
        deliver_mbox(&mb, &msg(b"", b"x\r\n"), "s@x", at(0), None).unwrap();
        assert!(!lock.exists());
        assert!(std::fs::read_to_string(&mb).unwrap().ends_with("\nx\n\n"));
    }

    #[test]
    fn held_dotlock_times_out_then_succeeds_when_released() {
        let td = tempfile::tempdir().unwrap();
        let mb = td.path().join("user");
        let lock = lock_path(&mb);
        std::fs::write(&lock, b"").unwrap();
        let e = deliver_mbox_timeout(
            &mb,
            &msg(b"", b"x\r\n"),
            "s@x",
            at(0),
            None,
            Duration::from_millis(100),
        )
        .unwrap_err();
        assert!(matches!(e, DeliverError::Io { op: "lock", .. }), "{e:?}");
        assert_eq!(e.smtp_reply().0, 451);
        assert!(lock.exists(), "someone else's lock must not be removed");
        assert!(!mb.exists());

        let lock2 = lock.clone();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            std::fs::remove_file(lock2).unwrap();
        });
        deliver_mbox(&mb, &msg(b"", b"x\r\n"), "s@x", at(0), None).unwrap();
        releaser.join().unwrap();
        assert!(!lock.exists());
    }

    #[test]
    fn held_fcntl_lock_blocks_delivery() {
        let td = tempfile::tempdir().unwrap();
        let mb = td.path().join("user");
        deliver_mbox(&mb, &msg(b"", b"first\r\n"), "s@x", at(0), None).unwrap();
        let before = std::fs::read(&mb).unwrap();
        // Another open file description holding the lock (as a MUA would).
        let holder = OpenOptions::new().append(true).open(&mb).unwrap();
        fcntl_lock(&holder, &mb, Instant::now()).unwrap();
        let e = deliver_mbox_timeout(
            &mb,
            &msg(b"", b"second\r\n"),
            "s@x",
            at(0),
            None,
            Duration::from_millis(100),
        )
        .unwrap_err();
        assert!(matches!(e, DeliverError::Io { op: "lock", .. }), "{e:?}");
        assert_eq!(std::fs::read(&mb).unwrap(), before);
        assert!(!lock_path(&mb).exists());
        drop(holder);
        deliver_mbox(&mb, &msg(b"", b"second\r\n"), "s@x", at(0), None).unwrap();
    }

    #[test]
    fn refuses_symlink_and_missing_parent() {
        let td = tempfile::tempdir().unwrap();
        let target = td.path().join("target");
        std::fs::write(&target, b"").unwrap();
        let mb = td.path().join("user");
        std::os::unix::fs::symlink(&target, &mb).unwrap();
        let e = deliver_mbox(&mb, &msg(b"", b"x\r\n"), "s@x", at(0), None).unwrap_err();
        assert!(matches!(e, DeliverError::Io { .. }), "{e:?}");
        assert_eq!(std::fs::read(&target).unwrap(), b"");
        assert!(!lock_path(&mb).exists());

        let e = deliver_mbox(
            &td.path().join("nodir/user"),
            &msg(b"", b"x\r\n"),
            "s@x",
            at(0),
            None,
        )
        .unwrap_err();
        assert!(matches!(e, DeliverError::Io { op: "lock", .. }), "{e:?}");
    }

    #[test]
    fn new_mailbox_owner() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipping chown test: not root");
            return;
        }
        let td = tempfile::tempdir().unwrap();
        let mb = td.path().join("user");
        let owner = Owner {
            uid: 12345,
            gid: 12345,
        };
        deliver_mbox(&mb, &msg(b"", b"x\r\n"), "s@x", at(0), Some(&owner)).unwrap();
        let m = std::fs::metadata(&mb).unwrap();
        assert_eq!((m.uid(), m.gid()), (12345, 12345));
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
    }
}
