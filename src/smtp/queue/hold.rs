//! The hold queue (Postfix's `hold/`, where a milter's QUARANTINE or
//! `milter_default_action = quarantine` puts a message): `hold/<id>.msg`
//! and `hold/<id>.json` under `queue_directory`, in the maildrop's format
//! ([`Drop`]) with the hold reason. Nothing is delivered from here.
//! `queue release ID` moves both files into `maildrop/` (the `.json`
//! last, it is the commit point there too), and pickup delivers the
//! message as it would have been: routed, stored, queued for remote
//! recipients. `queue delete ID` removes it.

use std::fs;
use std::io;
use std::path::PathBuf;

use super::pickup::{write_synced, Drop};
use super::spool::{self, Spool};

pub fn dir(spool: &Spool) -> PathBuf {
    spool.root().join("hold")
}

/// Holds a message, durably (both files and the directory fsynced).
pub fn store(spool: &Spool, id: &str, drop: &Drop, message: &[u8]) -> io::Result<()> {
    let dir = dir(spool);
    fs::create_dir_all(&dir)?;
    let msg = dir.join(format!("{id}.msg"));
    write_synced(&msg, message)?;
    let json = serde_json::to_vec(drop).map_err(io::Error::other)?;
    if let Err(e) = write_synced(&dir.join(format!("{id}.json")), &json) {
        let _ = fs::remove_file(&msg);
        return Err(e);
    }
    fs::File::open(&dir)?.sync_all()
}

/// Every held message: id, its envelope, the message size.
pub fn list(spool: &Spool) -> io::Result<Vec<(String, Drop, u64)>> {
    let dir = dir(spool);
    let rd = match fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in rd.filter_map(Result::ok) {
        let name = entry.file_name();
        let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
            continue;
        };
        if !spool::valid_id(id) {
            continue;
        }
        let Ok(drop) = fs::read(entry.path())
            .map_err(|e| e.to_string())
            .and_then(|d| serde_json::from_slice::<Drop>(&d).map_err(|e| e.to_string()))
        else {
            continue;
        };
        let size = fs::metadata(dir.join(format!("{id}.msg"))).map_or(0, |m| m.len());
        out.push((id.to_string(), drop, size));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// `queue release ID|ALL`: into the maildrop for pickup. The number released.
pub fn release(spool: &Spool, id: &str) -> io::Result<usize> {
    let ids: Vec<String> = if id == "ALL" {
        list(spool)?.into_iter().map(|(id, _, _)| id).collect()
    } else if spool::valid_id(id) {
        vec![id.to_string()]
    } else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("'{id}' is not a queue id"),
        ));
    };
    let (from, to) = (dir(spool), spool.maildrop());
    fs::create_dir_all(&to)?;
    let mut n = 0;
    for id in ids {
        let json = from.join(format!("{id}.json"));
        if !json.exists() {
            continue;
        }
        fs::rename(from.join(format!("{id}.msg")), to.join(format!("{id}.msg")))?;
        fs::File::open(&to)?.sync_all()?;
        fs::rename(&json, to.join(format!("{id}.json")))?;
        fs::File::open(&to)?.sync_all()?;
        fs::File::open(&from)?.sync_all()?;
        tracing::info!("{id}: released from hold");
        n += 1;
    }
    Ok(n)
}

/// `queue delete` of a held message: true when it was there.
pub fn remove(spool: &Spool, id: &str) -> io::Result<bool> {
    let dir = dir(spool);
    let json = dir.join(format!("{id}.json"));
    let existed = json.exists();
    match fs::remove_file(&json) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let _ = fs::remove_file(dir.join(format!("{id}.msg")));
    Ok(existed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_list_release() {
        let tmp = tempfile::tempdir().unwrap();
        let spool = Spool::open(tmp.path()).unwrap();
        let drop = Drop {
            sender: "a@b".into(),
            recipients: vec!["c@d".into()],
            user: String::new(),
            hold_reason: Some("spam".into()),
            arrival: Some(1),
            sign: false,
        };
        store(&spool, "4ABCDEF0123", &drop, b"Subject: x\r\n\r\nhi\r\n").unwrap();
        let l = list(&spool).unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].1.hold_reason.as_deref(), Some("spam"));
        assert!(!l[0].1.sign);
        assert_eq!(release(&spool, "4ABCDEF0123").unwrap(), 1);
        assert!(list(&spool).unwrap().is_empty());
        assert!(spool.maildrop().join("4ABCDEF0123.json").exists());
        assert!(spool.maildrop().join("4ABCDEF0123.msg").exists());
        assert_eq!(release(&spool, "4ABCDEF0123").unwrap(), 0);
    }
}
