//! The Maildir root: Maildir++ folders, `subscriptions` and
//! `dovecot-uidvalidity`.
//!
//! Folder names here are the raw on-disk form: modified UTF-7, `.` as the
//! hierarchy separator, without the leading dot (`Archive.2024` is the
//! directory `.Archive.2024`). INBOX is the root itself and never appears
//! in [`MaildirRoot::list_folders`]; RENAME INBOX semantics belong to the
//! IMAP layer.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const INBOX: &str = "INBOX";

use super::dotlock::DotLock;
use super::quota::Quota;
use super::uidlist::Uidlist;
use super::{
    io_err, is_not_found, mutf7_to_utf8, Error, Mailbox, Result, DEFAULT_LOCK_TIMEOUT,
    MAILDIRFOLDER_NAME, SUBSCRIPTIONS_NAME, UIDLIST_NAME,
};
use crate::store::notify::DirLog;

/// Dovecot's subscription lock goes stale after 30 s.
const SUBSCRIPTIONS_STALE: Duration = Duration::from_secs(30);
const V2_HEADER: &str = "V\t2\n\n";

/// A Maildir++ folder on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folder {
    /// Raw name (modified UTF-7, `.`-separated), e.g. `Entw&APw-rfe`.
    pub name: String,
    pub path: PathBuf,
}

/// A user's Maildir (the directory holding `cur new tmp` of INBOX).
#[derive(Debug, Clone)]
pub struct MaildirRoot {
    root: PathBuf,
    lock_timeout: Duration,
    /// The user's quota, given to every mailbox opened here.
    quota: Option<Arc<Quota>>,
}

fn mkdir(p: &Path) -> io::Result<()> {
    fs::DirBuilder::new().mode(0o700).create(p)
}

impl MaildirRoot {
    pub fn new(root: impl Into<PathBuf>) -> MaildirRoot {
        MaildirRoot {
            root: root.into(),
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            quota: None,
        }
    }

    /// Accounts every write under this root in `quota` (`maildirsize`).
    pub fn with_quota(mut self, quota: Option<Arc<Quota>>) -> MaildirRoot {
        self.quota = quota;
        self
    }

    pub fn set_quota(&mut self, quota: Option<Arc<Quota>>) {
        self.quota = quota;
    }

    pub fn quota(&self) -> Option<&Arc<Quota>> {
        self.quota.as_ref()
    }

    pub fn with_lock_timeout(mut self, timeout: Duration) -> MaildirRoot {
        self.lock_timeout = timeout;
        self
    }

    /// How long to wait for another writer's dot-lock.
    pub(super) fn lock_timeout(&self) -> Duration {
        self.lock_timeout
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Checks a raw folder name: non-empty `.`-separated parts, valid
    /// modified UTF-7, no `/`, control characters or `..`-tricks, not INBOX.
    pub fn validate_name(name: &str) -> Result<()> {
        let bad = |why| Err(Error::InvalidName(name.to_string(), why));
        if name.is_empty() {
            return bad("empty");
        }
        if name.eq_ignore_ascii_case("INBOX") {
            return bad("INBOX is the Maildir root");
        }
        if name.len() > 250 {
            return bad("too long");
        }
        if name.contains('/') {
            return bad("contains '/'");
        }
        if name.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return bad("contains control characters");
        }
        if name.split('.').any(str::is_empty) {
            return bad("empty hierarchy level");
        }
        if mutf7_to_utf8(name).is_err() {
            return bad("not valid modified UTF-7");
        }
        Ok(())
    }

    /// Directory of folder `name` (`<root>/.<name>`).
    pub fn folder_path(&self, name: &str) -> Result<PathBuf> {
        MaildirRoot::validate_name(name)?;
        Ok(self.root.join(format!(".{name}")))
    }

    /// Directory of mailbox `name`: the root for INBOX (any case), else
    /// [`MaildirRoot::folder_path`].
    pub fn mailbox_path(&self, name: &str) -> Result<PathBuf> {
        if name.eq_ignore_ascii_case(INBOX) {
            Ok(self.root.clone())
        } else {
            self.folder_path(name)
        }
    }

    /// INBOX, creating the Maildir if it doesn't exist yet.
    pub fn inbox(&self) -> Result<Mailbox> {
        self.open_following(INBOX, |_| None)
    }

    /// Opens INBOX (any case) or folder `name`.
    pub fn open(&self, name: &str) -> Result<Mailbox> {
        self.open_following(name, |_| None)
    }

    /// [`MaildirRoot::open`], syncing from the log `log` gives for the
    /// folder's directory (see [`Mailbox::open_following`]).
    pub fn open_following(
        &self,
        name: &str,
        log: impl FnOnce(&Path) -> Option<Arc<DirLog>>,
    ) -> Result<Mailbox> {
        let p = if name.eq_ignore_ascii_case(INBOX) {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.root)
                .map_err(|e| io_err("mkdir", &self.root, e))?;
            self.root.clone()
        } else {
            let p = self.folder_path(name)?;
            if !p.is_dir() {
                return Err(Error::NotFound(name.to_string()));
            }
            p
        };
        let mut mb = Mailbox::open_following(p, self.lock_timeout, log)?;
        mb.set_quota(self.quota.clone());
        Ok(mb)
    }

    /// All `.Name` directories under the root, sorted by name.
    pub fn list_folders(&self) -> Result<Vec<Folder>> {
        let rd = match fs::read_dir(&self.root) {
            Ok(rd) => rd,
            Err(e) if is_not_found(&e) => return Ok(Vec::new()),
            Err(e) => return Err(io_err("readdir", &self.root, e)),
        };
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| io_err("readdir", &self.root, e))?;
            let Ok(fname) = entry.file_name().into_string() else {
                continue;
            };
            let Some(name) = fname.strip_prefix('.') else {
                continue;
            };
            if name.is_empty() || name.starts_with('.') {
                continue; // ".", "..", Dovecot's "..DOVECOT-TRASH" style
            }
            let is_dir = match entry.file_type() {
                Ok(t) if t.is_symlink() => entry.path().is_dir(),
                Ok(t) => t.is_dir(),
                Err(_) => false,
            };
            if is_dir {
                out.push(Folder {
                    name: name.to_string(),
                    path: entry.path(),
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Creates folder `name` as a Maildir with `maildirfolder` and a fresh
    /// uidlist (new UIDVALIDITY), appearing atomically.
    pub fn create_folder(&self, name: &str) -> Result<()> {
        let dest = self.folder_path(name)?;
        if fs::symlink_metadata(&dest).is_ok() {
            return Err(Error::AlreadyExists(name.to_string()));
        }
        let staging_parent = self.root.join("tmp");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&staging_parent)
            .map_err(|e| io_err("mkdir", &staging_parent, e))?;
        let staging = staging_parent.join(format!(
            ".pigeonpost-create.{}",
            super::write::unique_name()
        ));
        let build = || -> io::Result<()> {
            mkdir(&staging)?;
            for sub in ["cur", "new", "tmp"] {
                mkdir(&staging.join(sub))?;
            }
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(staging.join(MAILDIRFOLDER_NAME))?;
            let ul = Uidlist::new(uidvalidity_next(&self.root));
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(staging.join(UIDLIST_NAME))?;
            f.write_all(&ul.serialize())?;
            f.sync_all()
        };
        if let Err(e) = build() {
            let _ = fs::remove_dir_all(&staging);
            return Err(io_err("create", &staging, e));
        }
        match super::write::rename_noreplace(&staging, &dest) {
            Ok(()) => {
                let _ = File::open(&self.root).and_then(|d| d.sync_all());
                Ok(())
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&staging);
                if e.kind() == io::ErrorKind::AlreadyExists
                    || e.raw_os_error() == Some(libc::ENOTEMPTY)
                {
                    Err(Error::AlreadyExists(name.to_string()))
                } else {
                    Err(io_err("rename", &dest, e))
                }
            }
        }
    }

    /// Deletes folder `name` and its messages (children `name.*` stay, as
    /// in Dovecot's Maildir++). The directory is first renamed away, so it
    /// disappears atomically.
    pub fn delete_folder(&self, name: &str) -> Result<()> {
        let p = self.folder_path(name)?;
        let trash = self.root.join("tmp").join(format!(
            ".pigeonpost-deleted.{}",
            super::write::unique_name()
        ));
        match fs::rename(&p, &trash) {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {
                if p.exists() || !self.root.join("tmp").is_dir() {
                    // our tmp/ is missing: delete in place
                    if !p.exists() {
                        return Err(Error::NotFound(name.to_string()));
                    }
                    return fs::remove_dir_all(&p).map_err(|e| io_err("delete", &p, e));
                }
                return Err(Error::NotFound(name.to_string()));
            }
            Err(e) => return Err(io_err("rename", &p, e)),
        }
        // Its messages leave the quota (Dovecot expunges them first).
        if let Some(q) = &self.quota {
            let (bytes, count) = super::quota::folder_usage(&trash);
            q.record(-(bytes as i64), -(count as i64));
        }
        fs::remove_dir_all(&trash).map_err(|e| io_err("delete", &trash, e))
    }

    /// Renames folder `old` to `new` together with its children
    /// (`old.x` → `new.x`). Fails if any destination exists.
    pub fn rename_folder(&self, old: &str, new: &str) -> Result<()> {
        MaildirRoot::validate_name(old)?;
        MaildirRoot::validate_name(new)?;
        if new == old || new.starts_with(&format!("{old}.")) {
            return Err(Error::InvalidName(
                new.to_string(),
                "can't rename a mailbox under itself",
            ));
        }
        let child_prefix = format!("{old}.");
        let mut moves: Vec<(String, String)> = Vec::new();
        for f in self.list_folders()? {
            if f.name == old {
                moves.push((f.name.clone(), new.to_string()));
            } else if let Some(rest) = f.name.strip_prefix(&child_prefix) {
                moves.push((f.name.clone(), format!("{new}.{rest}")));
            }
        }
        if moves.is_empty() {
            return Err(Error::NotFound(old.to_string()));
        }
        for (_, to) in &moves {
            if fs::symlink_metadata(self.folder_path(to)?).is_ok() {
                return Err(Error::AlreadyExists(to.to_string()));
            }
        }
        for (from, to) in &moves {
            let (fp, tp) = (self.folder_path(from)?, self.folder_path(to)?);
            super::write::rename_noreplace(&fp, &tp).map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    Error::AlreadyExists(to.to_string())
                } else {
                    io_err("rename", &fp, e)
                }
            })?;
        }
        let _ = File::open(&self.root).and_then(|d| d.sync_all());
        Ok(())
    }

    // ------------------------------------------------------ subscriptions

    fn subscriptions_path(&self) -> PathBuf {
        self.root.join(SUBSCRIPTIONS_NAME)
    }

    /// Subscribed names (raw form, `.`-separated), in file order.
    pub fn subscriptions(&self) -> Result<Vec<String>> {
        let p = self.subscriptions_path();
        match fs::read(&p) {
            Ok(d) => Ok(parse_subscriptions(&String::from_utf8_lossy(&d)).1),
            Err(e) if is_not_found(&e) => Ok(Vec::new()),
            Err(e) => Err(io_err("read", &p, e)),
        }
    }

    /// Subscribes or unsubscribes `name` (`INBOX` in any case is stored as
    /// `INBOX`). Returns whether the file changed. The file keeps its format
    /// version; a new file is written in version 2 like Dovecot 2.3 does.
    pub fn set_subscribed(&self, name: &str, subscribed: bool) -> Result<bool> {
        let name = if name.eq_ignore_ascii_case("INBOX") {
            "INBOX"
        } else {
            name
        };
        if name.is_empty() || name.contains(['\n', '\r']) {
            return Err(Error::InvalidName(
                name.to_string(),
                "bad subscription name",
            ));
        }
        let p = self.subscriptions_path();
        let lock = DotLock::acquire(&p, self.lock_timeout, SUBSCRIPTIONS_STALE)?;
        let (v2, mut names) = match fs::read(&p) {
            Ok(d) => parse_subscriptions(&String::from_utf8_lossy(&d)),
            Err(e) if is_not_found(&e) => (true, Vec::new()),
            Err(e) => return Err(io_err("read", &p, e)),
        };
        let present = names.iter().any(|n| n == name);
        if present == subscribed {
            return Ok(false); // lock dropped = removed
        }
        if subscribed {
            names.push(name.to_string());
        } else {
            names.retain(|n| n != name);
        }
        let mut out = String::new();
        if v2 {
            out.push_str(V2_HEADER);
        }
        for n in &names {
            if v2 {
                let parts: Vec<String> = n.split('.').map(tab_escape).collect();
                out.push_str(&parts.join("\t"));
            } else {
                out.push_str(n);
            }
            out.push('\n');
        }
        lock.replace(out.as_bytes(), None)?;
        Ok(true)
    }
}

/// (is version 2, names joined with `.`)
fn parse_subscriptions(text: &str) -> (bool, Vec<String>) {
    let (v2, body) = match text.strip_prefix(V2_HEADER) {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let names = body
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            if v2 {
                l.split('\t')
                    .map(tab_unescape)
                    .collect::<Vec<_>>()
                    .join(".")
            } else {
                l.to_string()
            }
        })
        .collect();
    (v2, names)
}

/// Dovecot's `str_append_tabescaped`.
fn tab_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\x01' => out.push_str("\x011"),
            '\t' => out.push_str("\x01t"),
            '\r' => out.push_str("\x01r"),
            '\n' => out.push_str("\x01n"),
            c => out.push(c),
        }
    }
    out
}

fn tab_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\x01' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('1') => out.push('\x01'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// The next UIDVALIDITY for a new mailbox under `root`, Dovecot's way
/// (lib-storage/mailbox-uidvalidity.c): `dovecot-uidvalidity` holds the last
/// value in hex and an empty `dovecot-uidvalidity.<hex>` file is renamed to
/// the next value, which makes concurrent creators get distinct values. The
/// first value is the current time. Never fails: falls back to the time.
pub(crate) fn uidvalidity_next(root: &Path) -> u32 {
    let path = root.join("dovecot-uidvalidity");
    let now = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(1)
            .max(1)
    };
    let marker = |v: u32| root.join(format!("dovecot-uidvalidity.{v:08x}"));
    let write_main = |v: u32| {
        let _ = fs::write(&path, format!("{v:08x}"));
    };
    let bump = |mut cur: u32| -> Option<u32> {
        for _ in 0..10 {
            let next = cur.wrapping_add(1).max(1);
            match fs::rename(marker(cur), marker(next)) {
                Ok(()) => return Some(next),
                Err(e) if is_not_found(&e) => cur = next,
                Err(_) => return None,
            }
        }
        None
    };
    // fast path: the main file names the current marker
    if let Some(cur) = fs::read_to_string(&path)
        .ok()
        .and_then(|s| u32::from_str_radix(s.trim(), 16).ok())
    {
        if let Some(v) = bump(cur) {
            write_main(v);
            return v;
        }
    }
    // rescan for markers
    let mut max = 0u32;
    let mut min = u32::MAX;
    if let Ok(rd) = fs::read_dir(root) {
        for e in rd.flatten() {
            let n = e.file_name();
            let Some(hex) = n
                .to_str()
                .and_then(|n| n.strip_prefix("dovecot-uidvalidity."))
            else {
                continue;
            };
            if let Ok(v) = u32::from_str_radix(hex, 16) {
                max = max.max(v);
                min = min.min(v);
            }
        }
    }
    if max == 0 {
        let v = now();
        let _ = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(marker(v));
        write_main(v);
        return v;
    }
    if min != max {
        let _ = fs::remove_file(marker(min));
    }
    match bump(max) {
        Some(v) => {
            write_main(v);
            v
        }
        None => now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_formats() {
        let (v2, names) =
            parse_subscriptions("V\t2\n\nINBOX\nSent\nArchive\t2024\nEntw&APw-rfe\na\x01tb\n");
        assert!(v2);
        assert_eq!(
            names,
            ["INBOX", "Sent", "Archive.2024", "Entw&APw-rfe", "a\tb"]
        );
        let (v2, names) = parse_subscriptions("INBOX\nArchive.2024\n");
        assert!(!v2);
        assert_eq!(names, ["INBOX", "Archive.2024"]);
        assert_eq!(tab_unescape(&tab_escape("a\tb\x01c\nd")), "a\tb\x01c\nd");
    }

    #[test]
    fn uidvalidity_is_unique_and_increasing() {
        let dir = tempfile::tempdir().unwrap();
        let a = uidvalidity_next(dir.path());
        let b = uidvalidity_next(dir.path());
        let c = uidvalidity_next(dir.path());
        assert!(a > 0 && b == a + 1 && c == b + 1);
        assert_eq!(
            fs::read_to_string(dir.path().join("dovecot-uidvalidity")).unwrap(),
            format!("{c:08x}")
        );
        assert!(dir
            .path()
            .join(format!("dovecot-uidvalidity.{c:08x}"))
            .exists());
        // lost main file: found again by scanning the markers
        fs::remove_file(dir.path().join("dovecot-uidvalidity")).unwrap();
        assert_eq!(uidvalidity_next(dir.path()), c + 1);
    }
}
