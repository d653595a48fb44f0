//! Writing into a Maildir, done one way for every writer: delivery
//! (`store::deliver`: SMTP, the queue, bounces) and IMAP APPEND, COPY and
//! MOVE (`Mailbox::append`, `Mailbox::copy_to`).
//!
//! maildir(5): write the message under a unique name in `tmp/` (O_EXCL,
//! mode 0600), fsync it, rename it into `new/` or `cur/` without ever
//! replacing a file there, then fsync that directory so the rename itself
//! survives a crash. Files hold LF line endings, as Postfix's virtual(8)
//! and Dovecot write them; `W=` in the name is the size with CRLF endings
//! (what IMAP's RFC822.SIZE reports).

use std::borrow::Cow;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

pub use super::filename::{generate_base as unique_name, hostname};

/// Creates `path` for writing: O_CREAT|O_EXCL, mode 0600, close-on-exec.
pub fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

/// fsync a directory so entries created, renamed or removed in it are durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)?
        .sync_all()
}

fn is_not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

/// `rename` that fails with `AlreadyExists` instead of replacing `to`:
/// renameat2(RENAME_NOREPLACE), or link + unlink on file systems without it
/// (which never replaces either), or, where links aren't possible either,
/// a plain rename after checking `to` is free.
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    rename_noreplace_at(rustix::fs::CWD, from, rustix::fs::CWD, to)
}

/// [`rename_noreplace`] of `from` relative to the directory `from_dir` to
/// `to` relative to `to_dir`: a short name under a held directory is not
/// walked from the root for every file.
pub fn rename_noreplace_at<P: rustix::path::Arg + Copy, Q: rustix::path::Arg + Copy>(
    from_dir: rustix::fd::BorrowedFd<'_>,
    from: P,
    to_dir: rustix::fd::BorrowedFd<'_>,
    to: Q,
) -> io::Result<()> {
    use rustix::fs::{AtFlags, RenameFlags};
    use rustix::io::Errno;
    match rustix::fs::renameat_with(from_dir, from, to_dir, to, RenameFlags::NOREPLACE) {
        Ok(()) => return Ok(()),
        // File system without RENAME_NOREPLACE: fall through.
        Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {}
        Err(e) => return Err(e.into()),
    }
    match rustix::fs::linkat(from_dir, from, to_dir, to, AtFlags::empty()) {
        Ok(()) => Ok(rustix::fs::unlinkat(from_dir, from, AtFlags::empty())?),
        Err(e @ (Errno::EXIST | Errno::NOENT)) => Err(e.into()),
        Err(_) => {
            if rustix::fs::statat(to_dir, to, AtFlags::SYMLINK_NOFOLLOW).is_ok() {
                return Err(io::Error::from(io::ErrorKind::AlreadyExists));
            }
            Ok(rustix::fs::renameat(from_dir, from, to_dir, to)?)
        }
    }
}

/// Hard-links `src` to `dst`, or copies it (keeping the mtime, fsynced)
/// when links aren't possible (other file system, not permitted, too many
/// links).
pub fn link_or_copy(src: &Path, dst: &Path) -> io::Result<()> {
    match fs::hard_link(src, dst) {
        Ok(()) => return Ok(()),
        Err(e) if is_not_found(&e) || e.kind() == io::ErrorKind::AlreadyExists => return Err(e),
        Err(_) => {}
    }
    let mut input = File::open(src)?;
    let mtime = input.metadata()?.modified()?;
    let mut out = create_new(dst)?;
    let res = io::copy(&mut input, &mut out)
        .and_then(|_| out.set_modified(mtime))
        .and_then(|()| out.sync_all());
    if res.is_err() {
        let _ = fs::remove_file(dst);
    }
    res
}

/// `prefix` + `body` as one stream with CRLF → LF (a CRLF split across the
/// two counts too); a CR not followed by LF stays.
pub fn to_lf(prefix: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + body.len());
    push_lf(&mut out, prefix);
    if out.last() == Some(&b'\r') && body.first() == Some(&b'\n') {
        out.pop();
    }
    push_lf(&mut out, body);
    out
}

/// [`to_lf`] of one buffer, borrowed when there is no CRLF in it.
pub fn crlf_to_lf(data: &[u8]) -> Cow<'_, [u8]> {
    if memchr::memmem::find(data, b"\r\n").is_none() {
        return Cow::Borrowed(data);
    }
    let mut out = Vec::with_capacity(data.len());
    push_lf(&mut out, data);
    Cow::Owned(out)
}

fn push_lf(out: &mut Vec<u8>, mut src: &[u8]) {
    while let Some(i) = memchr::memchr(b'\r', src) {
        if src.get(i + 1) == Some(&b'\n') {
            out.extend_from_slice(&src[..i]);
        } else {
            out.extend_from_slice(&src[..=i]);
        }
        src = &src[i + 1..];
    }
    out.extend_from_slice(src);
}

/// The size with every bare LF counted as CRLF: Dovecot's `W=` (virtual
/// size), what RFC822.SIZE reports.
pub fn vsize_of(data: &[u8]) -> u64 {
    let mut v = data.len() as u64;
    let mut prev = 0u8;
    for &b in data {
        if b == b'\n' && prev != b'\r' {
            v += 1;
        }
        prev = b;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_becomes_lf_and_lone_crs_stay() {
        assert_eq!(to_lf(b"A: b\r\n", b"x\r\ny\rz\n\r\n"), b"A: b\nx\ny\rz\n\n");
        // CRLF split across prefix and body.
        assert_eq!(to_lf(b"A: b\r", b"\nx"), b"A: b\nx");
        assert_eq!(to_lf(b"", b"\r"), b"\r");
        assert_eq!(to_lf(b"\r\r\n", b""), b"\r\n");
        assert_eq!(&*crlf_to_lf(b"a\r\nb\rc\n"), b"a\nb\rc\n");
        assert!(matches!(crlf_to_lf(b"a\nb\r"), Cow::Borrowed(_)));
    }

    #[test]
    fn vsize_counts_bare_lf_as_two() {
        assert_eq!(vsize_of(b"a\nb\n"), 6);
        assert_eq!(vsize_of(b"a\r\nb\n"), 6);
        assert_eq!(vsize_of(b""), 0);
    }

    #[test]
    fn rename_never_replaces() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        fs::write(&a, "new").unwrap();
        fs::write(&b, "old").unwrap();
        let e = rename_noreplace(&a, &b).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&b).unwrap(), b"old");
        fs::remove_file(&b).unwrap();
        rename_noreplace(&a, &b).unwrap();
        assert_eq!(fs::read(&b).unwrap(), b"new");
        assert!(!a.exists());
    }

    #[test]
    fn unique_names_carry_pid_and_an_escaped_host() {
        let n = unique_name();
        let (secs, rest) = n.split_once(".M").unwrap();
        assert!(secs.parse::<u64>().is_ok());
        let (usecs, rest) = rest.split_once('P').unwrap();
        assert!(usecs.parse::<u32>().unwrap() < 1_000_000);
        let (pid, rest) = rest.split_once('Q').unwrap();
        assert_eq!(pid.parse::<u32>().unwrap(), std::process::id());
        let (q, host) = rest.split_once('.').unwrap();
        assert!(q.parse::<u64>().is_ok());
        assert!(!host.is_empty() && !host.contains(['/', ':', ',']));
        assert_ne!(unique_name(), unique_name());
    }
}
