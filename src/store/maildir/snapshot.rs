//! The message list of a Maildir folder as of its last settled sync, kept
//! in our own disposable `pigeonpost.index.list`, so that opening a large
//! mailbox after a restart reads one file instead of listing `cur/` and
//! stat-ing every message (Dovecot keeps the like in `dovecot.index`).
//!
//! It is trusted only under the rule a held list is: the directories, the
//! uidlist and the keywords file must still look exactly as they did
//! (mtimes, the uidlist's inode, size and mtime: the [`Fingerprint`]), and
//! those timestamps must be older than the time the list was known to be
//! exact by the list's settle time, so no change made in the same clock
//! tick can hide behind them: two seconds after a scan (timestamps as
//! coarse as a second), 50 ms for a list kept exact by the kernel's log
//! (`follow.rs`: only local file systems, whose timestamps are finer than
//! that). Anything else, or a missing, foreign or damaged file, means a
//! full scan (which writes a new one once things are settled).
//!
//! Format (text): `pigeonpost-list 2 <uidvalidity> <next uid> <guid>
//! <exact at> <settle ms>`, the fingerprint line `fp <cur> <new> <uidlist ino size
//! mtime> <keywords>`, one line per message `<uid> <c|n> <size> <vsize>
//! <internal date> <extras> <file name>` (times as `secs.nanos` or `-`,
//! which for a message's date means not read yet; extras the uidlist's `G`/`P`/`O` fields joined by tabs, or `-`; the name
//! is the rest of the line), then `end <count>`. Written to a temporary
//! file and renamed, never fsynced: a torn file fails the count.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::{Extras, Fingerprint, MessageInfo, Stamp, UNKNOWN_DATE};

pub const LIST_FILE: &str = "pigeonpost.index.list";
/// Smaller folders get no list: scanning them costs about what writing
/// and reading it would.
pub const MIN_MESSAGES: usize = 256;
const MAGIC: &str = "pigeonpost-list 2";

/// What a snapshot holds besides the messages.
pub(super) struct Header {
    pub uidvalidity: u32,
    pub next_uid: u32,
    pub guid: String,
    pub fingerprint: Fingerprint,
    /// When the list was known to be exact (the start of its scan, or a
    /// look at the log that found nothing new).
    pub scanned_at: SystemTime,
    /// How much older than `scanned_at` the fingerprint's timestamps must
    /// be for the list to be trusted.
    pub settle: Duration,
}

pub(super) struct Snapshot {
    pub header: Header,
    /// Keywords are left empty: the caller derives them from the names.
    pub messages: Vec<MessageInfo>,
}

fn time(out: &mut String, t: Option<SystemTime>) {
    match t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()) {
        Some(d) => {
            let _ = write!(out, "{}.{}", d.as_secs(), d.subsec_nanos());
        }
        None => out.push('-'),
    }
}

fn parse_time(s: &str) -> Option<Option<SystemTime>> {
    if s == "-" {
        return Some(None);
    }
    let (secs, nanos) = s.split_once('.')?;
    let nanos: u32 = nanos.parse().ok()?;
    if nanos >= 1_000_000_000 {
        // (Duration::new would carry it into the seconds, and panic if
        // they overflow)
        return None;
    }
    let d = Duration::new(secs.parse().ok()?, nanos);
    Some(Some(SystemTime::UNIX_EPOCH.checked_add(d)?))
}

/// Writes `dir`'s snapshot (temporary file, rename). Best effort: a
/// failure only costs the next open a full scan.
pub(super) fn write(dir: &Path, snap: &Header, messages: &[MessageInfo]) {
    let s = render(snap, messages);
    crate::store::index_file::replace(&dir.join(LIST_FILE), s.as_bytes(), "mailbox list snapshot");
}

/// The file's text.
fn render(snap: &Header, messages: &[MessageInfo]) -> String {
    let mut s = String::with_capacity(64 + messages.len() * 96);
    let _ = write!(
        s,
        "{MAGIC} {} {} {} ",
        snap.uidvalidity, snap.next_uid, snap.guid
    );
    time(&mut s, Some(snap.scanned_at));
    let _ = write!(s, " {}", snap.settle.as_millis());
    s.push_str("\nfp ");
    let fp = &snap.fingerprint;
    time(&mut s, fp.cur);
    s.push(' ');
    time(&mut s, fp.new);
    match &fp.uidlist {
        Some(st) => {
            let _ = write!(s, " {} {} ", st.ino, st.size);
            time(&mut s, Some(st.mtime));
        }
        None => s.push_str(" - - -"),
    }
    s.push(' ');
    time(&mut s, fp.keywords);
    s.push('\n');
    for m in messages {
        let where_ = if m.in_new { 'n' } else { 'c' };
        let _ = write!(s, "{} {where_} {} {} ", m.uid, m.size, m.vsize);
        time(&mut s, m.internal_date());
        s.push(' ');
        match m.extras() {
            None => s.push('-'),
            Some(e) => {
                let mut fields = Vec::new();
                if let Some(g) = &e.guid {
                    fields.push(format!("G{g}"));
                }
                if let Some(p) = &e.pop3_uidl {
                    fields.push(format!("P{p}"));
                }
                if let Some(o) = e.pop3_order {
                    fields.push(format!("O{o}"));
                }
                s.push_str(&fields.join("\t"));
            }
        }
        s.push(' ');
        let _ = m.name.write(m.size, m.vsize, &mut s);
        s.push('\n');
    }
    let _ = writeln!(s, "end {}", messages.len());
    s
}

/// `dir`'s snapshot, `None` if there is none or it is damaged.
pub(super) fn read(dir: &Path) -> Option<Snapshot> {
    let data = std::fs::read(dir.join(LIST_FILE)).ok()?;
    parse(std::str::from_utf8(&data).ok()?)
}

fn parse(data: &str) -> Option<Snapshot> {
    let mut lines = data.split_terminator('\n');
    let head = lines.next()?.strip_prefix(MAGIC)?.strip_prefix(' ')?;
    let mut w = head.split(' ');
    let uidvalidity = w.next()?.parse().ok()?;
    let next_uid = w.next()?.parse().ok()?;
    let guid = w.next()?.to_string();
    let scanned_at = parse_time(w.next()?)??;
    let settle = Duration::from_millis(w.next()?.parse().ok()?);
    if w.next().is_some() {
        return None;
    }
    let fpl: Vec<&str> = lines.next()?.strip_prefix("fp ")?.split(' ').collect();
    let [cur, new, ino, size, mtime, keywords] = fpl[..] else {
        return None;
    };
    let uidlist = match (ino, size, mtime) {
        ("-", "-", "-") => None,
        _ => Some(Stamp {
            ino: ino.parse().ok()?,
            size: size.parse().ok()?,
            mtime: parse_time(mtime)??,
        }),
    };
    let fingerprint = Fingerprint {
        cur: parse_time(cur)?,
        new: parse_time(new)?,
        uidlist,
        keywords: parse_time(keywords)?,
    };
    // sized once (a doubling Vec would hold up to twice the list)
    let mut messages: Vec<MessageInfo> =
        Vec::with_capacity(memchr::memchr_iter(b'\n', data.as_bytes()).count());
    for line in lines {
        if let Some(n) = line.strip_prefix("end ") {
            let whole = n.parse::<usize>().ok()? == messages.len();
            let ascending = messages.windows(2).all(|p| p[0].uid < p[1].uid);
            let header = Header {
                uidvalidity,
                next_uid,
                guid,
                fingerprint,
                scanned_at,
                settle,
            };
            return (whole && ascending).then_some(Snapshot { header, messages });
        }
        let mut w = line.splitn(7, ' ');
        let uid = w.next()?.parse().ok()?;
        let in_new = match w.next()? {
            "n" => true,
            "c" => false,
            _ => return None,
        };
        let size = w.next()?.parse().ok()?;
        let vsize = w.next()?.parse().ok()?;
        let date = parse_time(w.next()?)?.map_or(UNKNOWN_DATE, super::unix_secs);
        let extras = match w.next()? {
            "-" => None,
            fields => {
                let mut e = Extras::default();
                for f in fields.split('\t') {
                    match f.split_at_checked(1)? {
                        ("G", g) => e.guid = Some(g.to_string()),
                        ("P", p) => e.pop3_uidl = Some(p.to_string()),
                        ("O", o) => e.pop3_order = Some(o.parse().ok()?),
                        _ => return None,
                    }
                }
                Some(e)
            }
        };
        let filename = w.next().filter(|f| !f.is_empty())?;
        let mut m = MessageInfo::new(uid, filename, size, vsize, date);
        m.in_new = in_new;
        if let Some(e) = extras {
            m.set_extras(e);
        }
        messages.push(m);
    }
    None
}

/// For the fuzzer (`fuzz/fuzz_targets/maildir_list.rs`): any text read as
/// a list file never panics, and a list that is accepted reads back the
/// same once written again.
pub fn fuzz_check(text: &str) {
    let Some(snap) = parse(text) else {
        return;
    };
    let again = parse(&render(&snap.header, &snap.messages)).expect("a written list reads back");
    let (a, b) = (&snap.header, &again.header);
    assert_eq!(
        (
            a.uidvalidity,
            a.next_uid,
            &a.guid,
            &a.fingerprint,
            a.scanned_at,
            a.settle
        ),
        (
            b.uidvalidity,
            b.next_uid,
            &b.guid,
            &b.fingerprint,
            b.scanned_at,
            b.settle
        )
    );
    assert_eq!(snap.messages, again.messages);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_with_nanoseconds_out_of_range_are_refused() {
        assert_eq!(parse_time("-"), Some(None));
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 5);
        assert_eq!(parse_time("1700000000.5"), Some(Some(t)));
        assert_eq!(parse_time("1.1000000000"), None);
        assert_eq!(parse_time("18446744073709551615.1000000000"), None);
        assert_eq!(parse_time("18446744073709551615.0"), None);
    }
}
