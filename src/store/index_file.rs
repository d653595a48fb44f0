//! Writing our disposable `pigeonpost.index.*` files: appends, and whole
//! replacements through a temporary file renamed over the old one. Neither
//! is fsynced (each file is rebuilt when missing or damaged), and a failure
//! is only logged at debug level: a read-only Maildir simply has none.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Appends `data` to the file at `path` (created if missing) in one write.
pub fn append(path: &Path, data: &[u8], what: &str) {
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(data));
    if let Err(e) = written {
        tracing::debug!(path = %path.display(), error = %e, "can't append to the {what}");
    }
}

/// Replaces the file at `path` with `data`: written to a temporary file
/// of its own (two handles of one process may write at once) and renamed.
pub fn replace(path: &Path, data: &[u8], what: &str) {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let n = WRITES.fetch_add(1, Ordering::Relaxed);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!("{name}.{}.{n}.tmp", std::process::id()));
    let done = std::fs::write(&tmp, data).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = done {
        let _ = std::fs::remove_file(&tmp);
        tracing::debug!(path = %path.display(), error = %e, "can't write the {what}");
    }
}
