//! Durable Maildir delivery: the delivery side of the one Maildir writer
//! (`store::maildir::write`), with group commit.
//!
//! Follows the qmail maildir(5) protocol (<https://cr.yp.to/proto/maildir.html>):
//! write the message into `tmp/<unique>`, fsync it, move it into `new/`, and
//! only then report success. On top of that we fsync the `new/` directory so
//! the rename itself survives a crash (ARCHITECTURE.md: `250` only after the
//! message is durable).
//!
//! File names follow Dovecot's Maildir conventions
//! (<https://doc.dovecot.org/admin_manual/mailbox_formats/maildir/>):
//! `<secs>.M<usecs>P<pid>Q<n>.<host>,S=<size>,W=<vsize>`, where `S=` is the
//! size on disk (LF line endings, as Postfix virtual(8) and Dovecot write
//! them) and `W=` the RFC 822 size with CRLF line endings (what IMAP
//! `RFC822.SIZE` reports).
//!
//! Group commit: [`prepare`] does everything except the directory fsync and
//! [`commit`] waits for an fsync of each `new/` it renamed into, shared
//! with concurrent deliveries into the same Maildir.
//! [`deliver_maildir`] is `prepare` + `commit` for the simple case.

use std::fs::{DirBuilder, File};
use std::io::{self, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use super::maildir::{group_commit, write};

/// Bytes to store: `prefix` (e.g. Return-Path:/Received: lines the SMTP layer
/// built) followed by `body` (the message as received).
///
/// Both are treated as one byte stream: CRLF is converted to LF across the
/// boundary as well.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub prefix: &'a [u8],
    pub body: &'a [u8],
}

/// Owner given to files and directories we create (we run as root and
/// `chown` after creating).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// Why a local delivery failed. Temporary from the sender's point of view,
/// except a full mailbox: see [`DeliverError::smtp_reply`].
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    /// ENOSPC or EDQUOT: disk or quota full.
    #[error("no space left delivering to {}: {source}", path.display())]
    NoSpace {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The recipient's Maildir++ quota has no room for the message;
    /// `tempfail` is Dovecot's `quota_full_tempfail`.
    #[error("mailbox {} is over quota", path.display())]
    OverQuota { path: PathBuf, tempfail: bool },
    /// Any other I/O failure; `op` names the operation ("create", "write",
    /// "fsync", "rename", "fsync directory", "mkdir", "chown", ...).
    #[error("{op} {}: {source}", path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

impl DeliverError {
    /// Classifies an I/O error from operation `op` on `path`: ENOSPC and
    /// EDQUOT become [`DeliverError::NoSpace`], anything else
    /// [`DeliverError::Io`].
    pub fn from_io(op: &'static str, path: &Path, source: io::Error) -> Self {
        match source.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => DeliverError::NoSpace {
                path: path.to_path_buf(),
                source,
            },
            _ => DeliverError::Io {
                path: path.to_path_buf(),
                op,
                source,
            },
        }
    }

    /// SMTP reply for the transaction. Trouble is a 4xx: the sender must
    /// retry (ARCHITECTURE.md: temporary trouble is a 4xx, never a loss).
    /// A full mailbox is permanent unless `quota_full_tempfail` (Dovecot's
    /// LMTP answers, RFC 3463 X.2.2 "mailbox full").
    pub fn smtp_reply(&self) -> (u16, &'static str, &'static str) {
        match self {
            DeliverError::OverQuota {
                tempfail: false, ..
            } => (552, "5.2.2", "Mailbox full"),
            DeliverError::OverQuota { tempfail: true, .. } => (452, "4.2.2", "Mailbox full"),
            DeliverError::NoSpace { .. } => (452, "4.3.1", "Insufficient system storage"),
            DeliverError::Io { .. } => (451, "4.3.0", "Local delivery failed, try again later"),
        }
    }
}

fn err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> DeliverError + 'a {
    move |e| DeliverError::from_io(op, path, e)
}

/// Creates `dir` as a Maildir (`dir`, `dir/tmp`, `dir/new`, `dir/cur`, and
/// missing parents) with mode 0700, chowned to `owner` if given (parents we
/// create are chowned too; existing directories are left alone).
/// Idempotent. The parent directory of everything created is fsynced before
/// returning, so the new entries survive a crash.
pub fn ensure_maildir(dir: &Path, owner: Option<&Owner>) -> Result<(), DeliverError> {
    let mut created = Vec::new();
    // Missing ancestors, outermost first.
    let mut missing = Vec::new();
    let mut cur = Some(dir);
    while let Some(p) = cur {
        if p.as_os_str().is_empty() || p.is_dir() {
            break;
        }
        missing.push(p);
        cur = p.parent();
    }
    for p in missing.iter().rev() {
        mkdir_owned(p, owner, &mut created)?;
    }
    for sub in ["tmp", "new", "cur"] {
        let p = dir.join(sub);
        if !p.is_dir() {
            mkdir_owned(&p, owner, &mut created)?;
        }
    }
    // fsync each distinct parent of something we created (deepest last is
    // fine: all of them are synced before we return).
    let mut parents: Vec<&Path> = Vec::new();
    for p in &created {
        let parent = match p.parent() {
            Some(pp) if !pp.as_os_str().is_empty() => pp,
            _ => Path::new("."),
        };
        if !parents.contains(&parent) {
            parents.push(parent);
        }
    }
    for parent in parents {
        fsync_dir(parent)?;
    }
    Ok(())
}

/// mkdir 0700 + chown; EEXIST (a concurrent creator won) is fine if it is a
/// directory.
fn mkdir_owned(
    p: &Path,
    owner: Option<&Owner>,
    created: &mut Vec<PathBuf>,
) -> Result<(), DeliverError> {
    match DirBuilder::new().mode(0o700).create(p) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && p.is_dir() => return Ok(()),
        Err(e) => return Err(DeliverError::from_io("mkdir", p, e)),
    }
    // The umask can only remove bits; make the mode exact anyway.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700)).map_err(err("mkdir", p))?;
    if let Some(o) = owner {
        std::os::unix::fs::chown(p, Some(o.uid), Some(o.gid)).map_err(err("chown", p))?;
    }
    created.push(p.to_path_buf());
    Ok(())
}

/// fsync a directory so entries created/renamed in it are durable.
pub(super) fn fsync_dir(dir: &Path) -> Result<(), DeliverError> {
    write::fsync_dir(dir).map_err(err("fsync directory", dir))
}

/// A message that is in `new/` but whose directory entry is not yet durable.
///
/// **A message must not be acknowledged (SMTP `250`) before
/// [`commit`] returned `Ok`.** If the commit fails, call
/// [`Prepared::discard`] and answer with the error's
/// [`DeliverError::smtp_reply`]; the sender will retry.
#[derive(Debug)]
#[must_use = "a prepared delivery must be committed (commit) or discarded"]
pub struct Prepared {
    maildir: PathBuf,
    path: PathBuf,
    /// Its place in the group commit of `new/`'s fsync; taken by [`commit`].
    ticket: Option<group_commit::Ticket>,
}

impl Prepared {
    /// The Maildir this message went to.
    pub fn maildir(&self) -> &Path {
        &self.maildir
    }

    /// Final path of the message in `new/`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn into_path(self) -> PathBuf {
        self.path
    }

    /// Removes the message from `new/` after a failed commit, so nothing that
    /// was not acknowledged stays visible. Best effort.
    pub fn discard(self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "removing uncommitted message");
        }
    }
}

/// Durable Maildir delivery: [`prepare`] + [`commit`]. Returns the final
/// path in `dir/new/`. On error nothing is left in `tmp/` or `new/`.
pub fn deliver_maildir(
    dir: &Path,
    msg: &Message,
    owner: Option<&Owner>,
) -> Result<PathBuf, DeliverError> {
    let mut prepared = [prepare(dir, msg, owner)?];
    match commit(&mut prepared) {
        Ok(()) => Ok(prepared.into_iter().next().expect("one").into_path()),
        Err(e) => {
            prepared.into_iter().for_each(Prepared::discard);
            Err(e)
        }
    }
}

/// First half of a delivery: writes `dir/tmp/<unique>` (O_EXCL, mode 0600,
/// chowned to `owner`), fsyncs it, and renames it to
/// `dir/new/<unique>,S=<size>,W=<vsize>`. Creates the Maildir if missing.
///
/// The result is visible to readers but **not durable** until
/// [`commit`] returns `Ok`; do not acknowledge before that.
/// On error the tmp file is removed and nothing is visible in `new/`.
pub fn prepare(dir: &Path, msg: &Message, owner: Option<&Owner>) -> Result<Prepared, DeliverError> {
    // From here until our rename, a concurrent delivery about to fsync
    // `new/` waits a moment for us (group commit).
    let intent = group_commit::announce(&dir.join("new"));
    let data = write::to_lf(msg.prefix, msg.body);
    let size = data.len() as u64;
    let vsize = write::vsize_of(&data);

    let tmp_dir = dir.join("tmp");
    let (tmp_path, mut file) = create_tmp(dir, &tmp_dir, owner)?;
    let result = (|| {
        file.write_all(&data).map_err(err("write", &tmp_path))?;
        if let Some(o) = owner {
            std::os::unix::fs::fchown(&file, Some(o.uid), Some(o.gid))
                .map_err(err("chown", &tmp_path))?;
        }
        file.sync_all().map_err(err("fsync", &tmp_path))?;
        drop(file);
        move_to_new(dir, &tmp_path, size, vsize, owner)
    })();
    match result {
        Ok(path) => Ok(Prepared {
            maildir: dir.to_path_buf(),
            path,
            ticket: Some(intent.renamed()),
        }),
        Err(e) => {
            if let Err(re) = std::fs::remove_file(&tmp_path) {
                if re.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %tmp_path.display(), error = %re, "removing tmp file");
                }
            }
            Err(e)
        }
    }
}

/// Second half of a delivery: makes the `new/` entries of `prepared`
/// durable (fsyncs of each Maildir's `new/`). Only after this returns `Ok`
/// may they be acknowledged. On error, none of the batch may be
/// acknowledged.
///
/// Concurrent deliveries into one Maildir share the fsync (group commit,
/// [`group_commit`]): each still returns only after an fsync of `new/`
/// that started after its own rename has completed.
pub fn commit(prepared: &mut [Prepared]) -> Result<(), DeliverError> {
    for p in prepared {
        if let Some(t) = p.ticket.take() {
            let new = p.maildir.join("new");
            t.wait_durable().map_err(err("fsync directory", &new))?;
        }
    }
    Ok(())
}

/// Creates the tmp file with O_CREAT|O_EXCL. If `tmp/` is missing, creates
/// the Maildir and retries; on a (theoretical) name collision, picks a new
/// name.
fn create_tmp(
    dir: &Path,
    tmp_dir: &Path,
    owner: Option<&Owner>,
) -> Result<(PathBuf, File), DeliverError> {
    let mut ensured = false;
    let mut attempts = 0;
    loop {
        let path = tmp_dir.join(write::unique_name());
        match write::create_new(&path) {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound && !ensured => {
                ensure_maildir(dir, owner)?;
                ensured = true;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 5 => {
                attempts += 1;
            }
            Err(e) => return Err(DeliverError::from_io("create", &path, e)),
        }
    }
}

/// Renames tmp → new without ever replacing an existing message: the
/// final name is `<unique>,S=..,W=..` with a fresh unique part if it
/// collides (RENAME_NOREPLACE; plain rename(2) where unsupported).
fn move_to_new(
    dir: &Path,
    tmp_path: &Path,
    size: u64,
    vsize: u64,
    owner: Option<&Owner>,
) -> Result<PathBuf, DeliverError> {
    let new_dir = dir.join("new");
    let base = tmp_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(write::unique_name);
    let mut name = base;
    let mut ensured = false;
    let mut attempts = 0;
    loop {
        let final_path = new_dir.join(format!("{name},S={size},W={vsize}"));
        match write::rename_noreplace(tmp_path, &final_path) {
            Ok(()) => return Ok(final_path),
            Err(e) if e.kind() == io::ErrorKind::NotFound && !ensured && !new_dir.is_dir() => {
                ensure_maildir(dir, owner)?;
                ensured = true;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 5 => {
                attempts += 1;
                name = write::unique_name();
            }
            Err(e) => return Err(DeliverError::from_io("rename", &final_path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn list(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    }

    use crate::store::test_support::Tmpfs;

    #[test]
    fn delivers_one_file_with_sizes() {
        let td = tempfile::tempdir().unwrap();
        let md = td.path().join("a/b/Maildir");
        let msg = Message {
            prefix: b"Return-Path: <a@b>\r\n",
            body: b"Subject: hi\r\n\r\nline1\r\nline2\r\n",
        };
        let path = deliver_maildir(&md, &msg, None).unwrap();
        assert_eq!(list(&md.join("new")), vec![path.clone()]);
        assert!(list(&md.join("tmp")).is_empty());
        assert!(list(&md.join("cur")).is_empty());

        let content = std::fs::read(&path).unwrap();
        let expected = b"Return-Path: <a@b>\nSubject: hi\n\nline1\nline2\n";
        assert_eq!(content, expected);
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(!name.contains(":2,"));
        let wire = msg.prefix.len() + msg.body.len();
        assert!(
            name.ends_with(&format!(",S={},W={}", expected.len(), wire)),
            "{name}"
        );
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), expected.len() as u64);
    }

    #[test]
    fn concurrent_deliveries_distinct() {
        let td = tempfile::tempdir().unwrap();
        let md = td.path().join("Maildir");
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let md = md.clone();
                std::thread::spawn(move || {
                    (0..25)
                        .map(|i| {
                            let body = format!("Subject: {t}-{i}\r\n\r\nbody\r\n");
                            let msg = Message {
                                prefix: b"",
                                body: body.as_bytes(),
                            };
                            deliver_maildir(&md, &msg, None).unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<PathBuf> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 200);
        assert_eq!(list(&md.join("new")).len(), 200);
        assert!(list(&md.join("tmp")).is_empty());
    }

    #[test]
    fn group_commit() {
        let td = tempfile::tempdir().unwrap();
        let a = td.path().join("a");
        let b = td.path().join("b");
        let msg = Message {
            prefix: b"",
            body: b"x\r\n",
        };
        let p1 = prepare(&a, &msg, None).unwrap();
        let p2 = prepare(&a, &msg, None).unwrap();
        let p3 = prepare(&b, &msg, None).unwrap();
        let mut batch = [p1, p2, p3];
        commit(&mut batch).unwrap();
        let [p1, p2, p3] = batch;
        assert!(p1.path().exists() && p2.path().exists() && p3.path().exists());
        assert_ne!(p1.path(), p2.path());
        // Commit failure path (new/'s fsync fails: the Maildir went away
        // meanwhile): discard removes the message.
        let mut p4 = [prepare(&b, &msg, None).unwrap()];
        let p4_path = p4[0].path().to_path_buf();
        let moved = b.with_extension("moved");
        std::fs::rename(&b, &moved).unwrap();
        assert!(commit(&mut p4).is_err());
        std::fs::rename(&moved, &b).unwrap();
        let [p4] = p4;
        p4.discard();
        assert!(!p4_path.exists());
    }

    #[test]
    fn disk_full_is_nospace_and_leaves_nothing() {
        let Some(fs) = Tmpfs::mount("64k") else {
            return;
        };
        let md = fs.path().join("Maildir");
        ensure_maildir(&md, None).unwrap();
        let body = vec![b'x'; 100 * 1024];
        let msg = Message {
            prefix: b"Return-Path: <>\r\n",
            body: &body,
        };
        let e = deliver_maildir(&md, &msg, None).unwrap_err();
        assert!(matches!(e, DeliverError::NoSpace { .. }), "{e:?}");
        assert_eq!(
            e.smtp_reply(),
            (452, "4.3.1", "Insufficient system storage")
        );
        assert!(list(&md.join("new")).is_empty());
        assert!(list(&md.join("tmp")).is_empty());
        // Space is back: a small message goes through.
        let small = Message {
            prefix: b"",
            body: b"ok\r\n",
        };
        deliver_maildir(&md, &small, None).unwrap();
        assert_eq!(list(&md.join("new")).len(), 1);
    }

    #[test]
    fn a_full_mailbox_is_permanent_unless_quota_full_tempfail() {
        let full = |tempfail| DeliverError::OverQuota {
            path: PathBuf::from("/m/maildirsize"),
            tempfail,
        };
        // Dovecot's LMTP answers (quota_full_tempfail = no by default).
        assert_eq!(full(false).smtp_reply(), (552, "5.2.2", "Mailbox full"));
        assert_eq!(full(true).smtp_reply(), (452, "4.2.2", "Mailbox full"));
    }

    #[test]
    fn new_not_a_directory_is_io_error() {
        let td = tempfile::tempdir().unwrap();
        let md = td.path().join("Maildir");
        std::fs::create_dir_all(md.join("tmp")).unwrap();
        std::fs::create_dir_all(md.join("cur")).unwrap();
        std::fs::write(md.join("new"), b"not a dir").unwrap();
        let msg = Message {
            prefix: b"",
            body: b"x\r\n",
        };
        let e = deliver_maildir(&md, &msg, None).unwrap_err();
        match &e {
            DeliverError::Io { op, .. } => assert_eq!(*op, "rename"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            e.smtp_reply(),
            (451, "4.3.0", "Local delivery failed, try again later")
        );
        assert!(list(&md.join("tmp")).is_empty());
        assert_eq!(std::fs::read(md.join("new")).unwrap(), b"not a dir");
    }

    #[test]
    fn parent_is_a_file_is_io_error() {
        let td = tempfile::tempdir().unwrap();
        let file = td.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let msg = Message {
            prefix: b"",
            body: b"x\r\n",
        };
        // The tmp file open fails with ENOTDIR ("create").
        let e = deliver_maildir(&file.join("Maildir"), &msg, None).unwrap_err();
        assert!(matches!(e, DeliverError::Io { op: "create", .. }), "{e:?}");
        // ensure_maildir itself reports the mkdir.
        let e = ensure_maildir(&file.join("Maildir"), None).unwrap_err();
        assert!(matches!(e, DeliverError::Io { op: "mkdir", .. }), "{e:?}");
        assert_eq!(std::fs::read(&file).unwrap(), b"");
    }

    #[test]
    fn ensure_maildir_modes_and_owner() {
        let td = tempfile::tempdir().unwrap();
        let md = td.path().join("p1/p2/Maildir");
        let owner = Owner {
            uid: 12345,
            gid: 12345,
        };
        let is_root = unsafe { libc::geteuid() } == 0;
        if !is_root {
            eprintln!("not root: checking modes only");
        }
        let own = is_root.then_some(&owner);
        ensure_maildir(&md, own).unwrap();
        ensure_maildir(&md, own).unwrap(); // idempotent
        for p in ["p1", "p1/p2", "p1/p2/Maildir"]
            .iter()
            .map(|p| td.path().join(p))
            .chain(["tmp", "new", "cur"].iter().map(|s| md.join(s)))
        {
            let m = std::fs::metadata(&p).unwrap();
            assert!(m.is_dir());
            assert_eq!(m.permissions().mode() & 0o7777, 0o700, "{}", p.display());
            if is_root {
                assert_eq!((m.uid(), m.gid()), (12345, 12345), "{}", p.display());
            }
        }
        // The pre-existing temp dir is not touched.
        if is_root {
            assert_eq!(std::fs::metadata(td.path()).unwrap().uid(), 0);
            let msg = Message {
                prefix: b"",
                body: b"x\r\n",
            };
            let p = deliver_maildir(&md, &msg, Some(&owner)).unwrap();
            let m = std::fs::metadata(p).unwrap();
            assert_eq!((m.uid(), m.gid()), (12345, 12345));
        }
    }
}
