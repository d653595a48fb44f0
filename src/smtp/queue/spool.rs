//! The queue on disk, under `queue_directory`:
//!
//! ```text
//! q/<id>.msg       the message, CRLF line endings, as it goes on the wire (unstuffed)
//! q/<id>.env       its envelope (JSON, see [`Envelope`]): sender, per-recipient
//!                  state, DSN parameters, attempts, next try
//! q/*.tmp          being written; removed at start-up
//! q/<id>.staged    an envelope written but not yet committed (the local
//!                  copies are being stored); removed at start-up
//! maildrop/        messages from `pigeonpost sendmail`, waiting for pickup
//! control          the running server's control socket (flush, delete, pickup)
//! ```
//!
//! Writing a message: `<id>.msg.tmp` is written and fsynced and renamed to
//! `<id>.msg`, then the same for `<id>.env`, then `q/` is fsynced; only then
//! may the client get its 250. The `.env` file is the commit point: a
//! `.msg` without one is an interrupted write, removed at start-up. An
//! envelope is rewritten the same way (tmp, fsync, rename) after every
//! attempt; removal deletes the `.env` first.

use crate::store::maildir::group_commit::fsync_dir_shared;
use crate::store::maildir::write::fsync_dir;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Where a recipient stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RcptState {
    /// Still to be delivered (never tried, or deferred).
    Pending,
    /// Accepted by the next hop.
    Delivered,
    /// Refused permanently or expired; bounced (or not, for `<>`).
    Failed,
}

/// One envelope recipient of a queued message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedRcpt {
    pub address: String,
    /// RFC 3461 NOTIFY bits (smtp_proto::RCPT_NOTIFY_*), 0 when not given.
    #[serde(default)]
    pub notify: u64,
    /// RFC 3461 ORCPT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orcpt: Option<String>,
    pub state: RcptState,
    /// The last failure (`host x[ip] said: 451 ...`, `connect to ...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The server that answered the last attempt, for DSNs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_mta: Option<String>,
}

/// A queued message's envelope and delivery state (`q/<id>.env`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: String,
    /// Reverse-path; empty for the null sender.
    pub sender: String,
    /// Seconds since the epoch.
    pub arrival: u64,
    pub size: u64,
    #[serde(default)]
    pub eight_bit: bool,
    #[serde(default)]
    pub smtputf8: bool,
    /// RFC 3461 RET=FULL (true) / HDRS (false); `None` when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ret_full: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envid: Option<String>,
    pub recipients: Vec<QueuedRcpt>,
    #[serde(default)]
    pub attempts: u32,
    /// Seconds since the epoch; 0 = now.
    #[serde(default)]
    pub next_attempt: u64,
    /// A delay warning went out already.
    #[serde(default)]
    pub warned: bool,
}

pub fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn from_unix(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

impl Envelope {
    pub fn pending(&self) -> impl Iterator<Item = &QueuedRcpt> {
        self.recipients
            .iter()
            .filter(|r| r.state == RcptState::Pending)
    }

    pub fn is_done(&self) -> bool {
        self.pending().next().is_none()
    }
}

/// A queue file that could not be read, and why.
pub type Unreadable = (PathBuf, String);

/// The spool directory.
#[derive(Debug, Clone)]
pub struct Spool {
    root: PathBuf,
}

/// Queue ids are ours ([0-9A-F]); anything else is not a queue file (and
/// never a path trick from `queue delete`).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Writes `data` to `path` atomically and durably except for the final
/// directory fsync (the caller batches it).
fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

impl Spool {
    /// Opens (creating if needed) the spool at `queue_directory`.
    pub fn open(root: &Path) -> io::Result<Spool> {
        for sub in ["q", "maildrop"] {
            fs::create_dir_all(root.join(sub))?;
        }
        Ok(Spool {
            root: root.to_path_buf(),
        })
    }

    /// The spool at `root` without creating anything (CLI reads).
    pub fn at(root: &Path) -> Spool {
        Spool {
            root: root.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn q(&self) -> PathBuf {
        self.root.join("q")
    }

    pub fn maildrop(&self) -> PathBuf {
        self.root.join("maildrop")
    }

    pub fn control_socket(&self) -> PathBuf {
        self.root.join("control")
    }

    /// Local submission for every user (`sendmail` without privileges):
    /// `public/submit`, like Postfix's world-reachable `public/` directory.
    pub fn submit_socket(&self) -> PathBuf {
        self.root.join("public").join("submit")
    }

    pub fn msg_path(&self, id: &str) -> PathBuf {
        self.q().join(format!("{id}.msg"))
    }

    fn env_path(&self, id: &str) -> PathBuf {
        self.q().join(format!("{id}.env"))
    }

    fn staged_path(&self, id: &str) -> PathBuf {
        self.q().join(format!("{id}.staged"))
    }

    /// Writes a new message and its envelope durably, but not yet active:
    /// until [`Spool::commit`] a crash or [`Spool::discard`] leaves no
    /// trace. Lets the SMTP server store local copies in between, so a
    /// failure there never leaves a queued copy the client did not get a
    /// 250 for.
    pub fn stage(&self, env: &Envelope, parts: &[&[u8]]) -> io::Result<()> {
        let msg = self.msg_path(&env.id);
        write_atomic(&msg, &parts.concat())?;
        let json = serde_json::to_vec_pretty(env).map_err(io::Error::other)?;
        let staged = self.staged_path(&env.id);
        let written = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&staged)?;
            f.write_all(&json)?;
            f.sync_all()
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&staged);
            let _ = fs::remove_file(&msg);
            return Err(e);
        }
        Ok(())
    }

    /// Activates a staged message: from here on it is in the queue and
    /// survives a crash.
    /// Concurrent commits share the directory fsync (group commit).
    pub fn commit(&self, id: &str) -> io::Result<()> {
        fs::rename(self.staged_path(id), self.env_path(id))?;
        fsync_dir_shared(&self.q())
    }

    /// Drops a staged message.
    pub fn discard(&self, id: &str) {
        let _ = fs::remove_file(self.staged_path(id));
        let _ = fs::remove_file(self.msg_path(id));
    }

    /// Stores a new message durably: when this returns Ok, a crash loses
    /// nothing.
    pub fn insert(&self, env: &Envelope, message: &[u8]) -> io::Result<()> {
        self.stage(env, &[message])?;
        if let Err(e) = self.commit(&env.id) {
            self.discard(&env.id);
            return Err(e);
        }
        Ok(())
    }

    /// Rewrites an envelope after an attempt. Fails with NotFound if the
    /// message was deleted meanwhile (`queue delete`): it stays deleted.
    pub fn update(&self, env: &Envelope) -> io::Result<()> {
        let path = self.env_path(&env.id);
        if !path.exists() {
            return Err(io::ErrorKind::NotFound.into());
        }
        let json = serde_json::to_vec_pretty(env).map_err(io::Error::other)?;
        write_atomic(&path, &json)?;
        fsync_dir(&self.q())
    }

    /// Removes a message durably (`queue delete`). Ok if already gone.
    pub fn remove(&self, id: &str) -> io::Result<()> {
        self.unlink(id)?;
        fsync_dir(&self.q())
    }

    /// Removes a message that is done (delivered or bounced) without a
    /// directory fsync: if a crash undoes the unlink, the message is sent
    /// again, which at-least-once delivery allows; it saves an fsync per
    /// message.
    pub fn retire(&self, id: &str) -> io::Result<()> {
        self.unlink(id)
    }

    fn unlink(&self, id: &str) -> io::Result<()> {
        for p in [self.env_path(id), self.msg_path(id)] {
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    pub fn read_envelope(&self, id: &str) -> io::Result<Envelope> {
        let data = fs::read(self.env_path(id))?;
        serde_json::from_slice(&data).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    pub fn read_message(&self, id: &str) -> io::Result<Vec<u8>> {
        fs::read(self.msg_path(id))
    }

    /// Every queued envelope, oldest first. Unreadable envelopes are
    /// reported, not dropped: their files stay for the administrator.
    pub fn scan(&self) -> io::Result<(Vec<Envelope>, Vec<Unreadable>)> {
        let mut envs = Vec::new();
        let mut bad = Vec::new();
        let rd = match fs::read_dir(self.q()) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((envs, bad)),
            Err(e) => return Err(e),
        };
        for entry in rd {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".env") else {
                continue;
            };
            match self.read_envelope(id) {
                Ok(env) if env.id == id && self.msg_path(id).exists() => envs.push(env),
                Ok(_) => bad.push((entry.path(), "message file missing or id mismatch".into())),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => bad.push((entry.path(), e.to_string())),
            }
        }
        envs.sort_by(|a, b| (a.arrival, &a.id).cmp(&(b.arrival, &b.id)));
        Ok((envs, bad))
    }

    /// Start-up cleanup: interrupted writes (`*.tmp`, `.msg` without `.env`).
    pub fn recover(&self) -> io::Result<usize> {
        let mut removed = 0;
        for entry in fs::read_dir(self.q())? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let orphan = match name.strip_suffix(".msg") {
                Some(id) => !self.env_path(id).exists(),
                None => name.ends_with(".tmp") || name.ends_with(".staged"),
            };
            if orphan {
                fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
        if removed > 0 {
            fsync_dir(&self.q())?;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(id: &str) -> Envelope {
        Envelope {
            id: id.into(),
            sender: "a@example.com".into(),
            arrival: 1_700_000_000,
            size: 5,
            eight_bit: false,
            smtputf8: false,
            ret_full: None,
            envid: None,
            recipients: vec![QueuedRcpt {
                address: "b@remote.example".into(),
                notify: 0,
                orcpt: None,
                state: RcptState::Pending,
                last_error: None,
                remote_mta: None,
            }],
            attempts: 0,
            next_attempt: 0,
            warned: false,
        }
    }

    #[test]
    fn insert_scan_update_remove() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        spool.insert(&env("AB12"), b"hello\r\n").unwrap();
        let (envs, bad) = spool.scan().unwrap();
        assert_eq!(envs, vec![env("AB12")]);
        assert!(bad.is_empty());
        assert_eq!(spool.read_message("AB12").unwrap(), b"hello\r\n");

        let mut e = env("AB12");
        e.attempts = 1;
        e.recipients[0].last_error = Some("451 try later".into());
        spool.update(&e).unwrap();
        assert_eq!(spool.read_envelope("AB12").unwrap(), e);

        spool.remove("AB12").unwrap();
        assert!(spool.scan().unwrap().0.is_empty());
        // An update after a delete does not resurrect it.
        assert_eq!(
            spool.update(&e).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        spool.remove("AB12").unwrap();
    }

    #[test]
    fn recover_removes_interrupted_writes_only() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        spool.insert(&env("KEEP"), b"x").unwrap();
        fs::write(dir.path().join("q/HALF.msg"), b"no envelope").unwrap();
        fs::write(dir.path().join("q/TMP1.env.tmp"), b"{").unwrap();
        // Staged but never committed (the SMTP client got no 250).
        spool.stage(&env("STAGED"), &[b"x"]).unwrap();
        assert_eq!(spool.recover().unwrap(), 4);
        let names: Vec<String> = fs::read_dir(dir.path().join("q"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let mut names = names;
        names.sort();
        assert_eq!(names, vec!["KEEP.env", "KEEP.msg"]);
    }

    #[test]
    fn a_broken_envelope_is_reported_not_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        spool.insert(&env("GOOD"), b"x").unwrap();
        fs::write(dir.path().join("q/BAD.msg"), b"x").unwrap();
        fs::write(dir.path().join("q/BAD.env"), b"{not json").unwrap();
        let (envs, bad) = spool.scan().unwrap();
        assert_eq!(envs.len(), 1);
        assert_eq!(bad.len(), 1);
        assert!(dir.path().join("q/BAD.env").exists());
    }

    #[test]
    fn ids_are_checked() {
        assert!(valid_id("19A2B3C4D5E6F7"));
        assert!(!valid_id("../etc/passwd"));
        assert!(!valid_id(""));
        assert!(!valid_id("a.b"));
    }
}
