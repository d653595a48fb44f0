//! Editing the files the server reads (passwd-file, lookup tables) from the
//! command line, safely while it runs: every change is made under a lock
//! (`<file>.lock`, flock(2), so two `pigeonpost user …` runs cannot lose
//! an edit), written to a temporary file beside the original, fsynced,
//! renamed over it and the directory fsynced. The running server sees the
//! rename through its usual reload (tables/reload.rs) and never reads a
//! half-written file. Lines we do not change are kept byte for byte.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// An exclusive lock on `<file>.lock`, released when dropped.
#[derive(Debug)]
pub struct Lock {
    _file: File,
    pub path: PathBuf,
}

/// Takes the edit lock of `file`, waiting for another editor to finish.
pub fn lock(file: &Path) -> io::Result<Lock> {
    let mut name = file.as_os_str().to_owned();
    name.push(".lock");
    let path = PathBuf::from(name);
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)?;
    // SAFETY: flock on a descriptor we own; it is released when `f` closes.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Lock { _file: f, path })
}

/// Locks several files in one fixed order (sorted, duplicates once), so
/// two editors taking overlapping sets cannot deadlock.
pub fn lock_all(files: &[&Path]) -> io::Result<Vec<Lock>> {
    let mut sorted: Vec<&Path> = files.to_vec();
    sorted.sort();
    sorted.dedup();
    sorted.into_iter().map(lock).collect()
}

/// Replaces `path` with `data` atomically and durably: a temporary file in
/// the same directory (with the original's mode and owner), fsync, rename,
/// fsync of the directory.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".pigeonpost-{}.tmp", std::process::id()));
    let tmp = dir.join(tmp_name);
    let old = fs::metadata(path).ok();
    let mode = old.as_ref().map(|m| m.permissions().mode() & 0o7777);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode.unwrap_or(0o644))
            .open(&tmp)?;
        if let Some(m) = &old {
            f.set_permissions(fs::Permissions::from_mode(m.permissions().mode() & 0o7777))?;
            // Keep the owner (e.g. root:dovecot 0640); only root may change it.
            let _ = std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid()));
        }
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Splits text into physical lines, each with its line ending.
pub fn lines(text: &str) -> Vec<&str> {
    text.split_inclusive('\n').collect()
}

/// Appends `line` (without newline) to `text`, adding a newline first when
/// the file does not end with one.
pub fn append_line(text: &mut String, line: &str) {
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(line);
    text.push('\n');
}

/// A postmap(1) source file as logical entries: the line range each key
/// covers (its first line plus any continuation lines starting with
/// whitespace). Comments and blank lines belong to no entry.
pub fn table_entries(text: &str) -> Vec<(String, std::ops::Range<usize>)> {
    let ls = lines(text);
    let mut out: Vec<(String, std::ops::Range<usize>)> = Vec::new();
    for (i, l) in ls.iter().enumerate() {
        let body = l.trim_end_matches(['\n', '\r']);
        let trimmed = body.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if body.starts_with([' ', '\t']) {
            // A continuation line: part of the entry above, if any.
            if let Some((_, r)) = out.last_mut() {
                if r.end == i {
                    r.end = i + 1;
                }
            }
            continue;
        }
        let key = trimmed
            .split(|c: char| c.is_whitespace())
            .next()
            .unwrap_or("")
            .trim_end_matches(':')
            .to_string();
        out.push((key, i..i + 1));
    }
    out
}

/// The value of a table entry (everything after the key, continuation
/// lines joined with a space).
pub fn entry_value(text: &str, range: &std::ops::Range<usize>) -> String {
    let ls = lines(text);
    let joined: Vec<&str> = ls[range.clone()]
        .iter()
        .map(|l| l.trim_end_matches(['\n', '\r']).trim())
        .collect();
    let all = joined.join(" ");
    let all = all.trim_start();
    match all.find(char::is_whitespace) {
        Some(i) => all[i..].trim().to_string(),
        None => String::new(),
    }
}

/// `text` without the lines in `range`.
pub fn remove_lines(text: &str, range: &std::ops::Range<usize>) -> String {
    lines(text)
        .iter()
        .enumerate()
        .filter(|(i, _)| !range.contains(i))
        .map(|(_, l)| *l)
        .collect()
}

/// `text` with the lines in `range` replaced by `line` (plus a newline).
pub fn replace_lines(text: &str, range: &std::ops::Range<usize>, line: &str) -> String {
    let mut out = String::with_capacity(text.len() + line.len());
    for (i, l) in lines(text).iter().enumerate() {
        if i == range.start {
            out.push_str(line);
            out.push('\n');
        }
        if !range.contains(&i) {
            out.push_str(l);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_with_continuations_and_comments() {
        let text = "# comment\na@x.example  one,\n   two\n\nB@x.example three\nno-newline four";
        let e = table_entries(text);
        assert_eq!(e.len(), 3);
        assert_eq!(e[0], ("a@x.example".to_string(), 1..3));
        assert_eq!(entry_value(text, &e[0].1), "one, two");
        assert_eq!(e[1].0, "B@x.example");
        assert_eq!(entry_value(text, &e[2].1), "four");
        assert_eq!(
            remove_lines(text, &e[0].1),
            "# comment\n\nB@x.example three\nno-newline four"
        );
        assert_eq!(
            replace_lines(text, &e[1].1, "b@x.example five"),
            "# comment\na@x.example  one,\n   two\n\nb@x.example five\nno-newline four"
        );
        let mut t = text.to_string();
        append_line(&mut t, "c@x.example six");
        assert!(t.ends_with("four\nc@x.example six\n"));
    }

    #[test]
    fn atomic_write_keeps_mode_and_lock_excludes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("users");
        fs::write(&p, "old\n").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        let _l = lock(&p).unwrap();
        write_atomic(&p, b"new\n").unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "new\n");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        // A second lock on the same file would wait: try without blocking.
        let f = File::open(dir.path().join("users.lock")).unwrap();
        // SAFETY: flock on our own descriptor.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        assert_ne!(rc, 0);
    }
}
