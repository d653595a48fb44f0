//! Maildir file names as Dovecot reads and writes them
//! (<https://doc.dovecot.org/admin_manual/mailbox_formats/maildir/>).
//!
//! `<base>[:2,<flags>]` where `<base>` is `<secs>.<unique>.<host>[,S=<size>][,W=<vsize>]`
//! and `<flags>` are the letters `D F R S T` (sorted by ASCII) followed by
//! keyword letters `a`–`z` (indexes into `dovecot-keywords`).

use std::cmp::Ordering;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use super::Flags;

/// The part of a file name that identifies a message: everything before the
/// first `:` (the uidlist key).
pub fn basename(filename: &str) -> &str {
    match filename.find(':') {
        Some(i) => &filename[..i],
        None => filename,
    }
}

/// System flags and keyword letters from the `:2,` info part (Dovecot's
/// `maildir_filename_get_flags`). Unknown characters are ignored.
pub fn parse_flags(filename: &str) -> (Flags, u32) {
    let mut flags = Flags::empty();
    let mut kw = 0u32;
    let Some(pos) = filename.rfind(':') else {
        return (flags, kw);
    };
    let info = &filename.as_bytes()[pos + 1..];
    if info.len() < 2 || info[0] != b'2' || info[1] != b',' {
        return (flags, kw);
    }
    for &c in &info[2..] {
        match c {
            b',' => break,
            b'a'..=b'z' => kw |= 1 << (c - b'a'),
            _ => {
                if let Some(f) = Flags::from_maildir_char(c) {
                    flags |= f;
                }
            }
        }
    }
    (flags, kw)
}

/// The file name with its flags replaced, following Dovecot's
/// `maildir_filename_set_flags`: the letters stay sorted by ASCII code,
/// unknown flag characters and any further `,`-separated info are kept.
pub fn set_flags(filename: &str, flags: Flags, keywords: u32) -> String {
    let (base, oldflags) = match filename.rfind(':') {
        Some(i) => {
            let info = &filename[i + 1..];
            (
                &filename[..i],
                info.strip_prefix("2,").map(str::as_bytes).unwrap_or(b""),
            )
        }
        None => (filename, &b""[..]),
    };
    let mut out = String::with_capacity(base.len() + 12);
    out.push_str(base);
    out.push_str(":2,");
    let mut left = flags;
    let mut kw_pending = true;
    let mut i = 0;
    loop {
        while i < oldflags.len()
            && (matches!(oldflags[i], b'D' | b'F' | b'R' | b'S' | b'T')
                || oldflags[i].is_ascii_lowercase())
        {
            i += 1;
        }
        let next: u16 = if i >= oldflags.len() || oldflags[i] == b',' {
            256
        } else {
            u16::from(oldflags[i])
        };
        for (flag, ch) in Flags::MAILDIR_ORDER {
            if left.contains(flag) && next > u16::from(ch) {
                out.push(ch as char);
                left.remove(flag);
            }
        }
        if kw_pending && next > u16::from(b'a') {
            for k in 0..26u8 {
                if keywords & (1 << k) != 0 {
                    out.push((b'a' + k) as char);
                }
            }
            kw_pending = false;
        }
        if i >= oldflags.len() || oldflags[i] == b',' {
            break;
        }
        out.push(oldflags[i] as char);
        i += 1;
    }
    if i < oldflags.len() {
        // another flag set we don't know about: keep it
        out.push_str(std::str::from_utf8(&oldflags[i..]).unwrap_or(""));
    }
    out
}

/// `,<key>=<n>` from the base name (`S` physical size, `W` virtual size),
/// like Dovecot's `maildir_filename_get_size`.
pub fn get_size(filename: &str, key: u8) -> Option<u64> {
    let b = basename(filename).as_bytes();
    let mut i = 0;
    while i + 2 < b.len() {
        if b[i] == b',' && b[i + 1] == key && b[i + 2] == b'=' {
            let digits = &b[i + 3..];
            let end = digits
                .iter()
                .position(|c| !c.is_ascii_digit())
                .unwrap_or(digits.len());
            if end < digits.len() && digits[end] != b',' {
                return None;
            }
            return std::str::from_utf8(&digits[..end]).ok()?.parse().ok();
        }
        i += 1;
    }
    None
}

/// Dovecot's `maildir_filename_sort_cmp`: by the leading timestamp, then the
/// `M<usecs>` part of the unique string, then the base name. UIDs are given
/// to new files in this order. (Dovecot compares the usecs only when both
/// names have them, which orders nothing for names with and without in one
/// second: a before b before c before a. Here a name without sorts before
/// those with in its second: a total order, Dovecot's wherever its is one.)
#[cfg(test)]
fn sort_cmp(a: &str, b: &str) -> Ordering {
    SortKey::of(a).order(&SortKey::of(b))
}

/// Sorts `v` in Dovecot's order (`maildir_filename_sort_cmp`) of the
/// names `name` gives: by the leading timestamp, then the `M<usecs>` part
/// of the unique string, then the base name; UIDs are given to new files
/// in this order. Each name is taken apart once (a sort of 100,000 names
/// compares each some 17 times).
pub fn sort_by_name<T>(v: &mut Vec<T>, name: impl Fn(&T) -> &str) {
    let order: Vec<usize> = {
        let mut keyed: Vec<(SortKey, usize)> = v
            .iter()
            .enumerate()
            .map(|(i, t)| (SortKey::of(name(t)), i))
            .collect();
        keyed.sort_by(|a, b| a.0.order(&b.0));
        keyed.into_iter().map(|(_, i)| i).collect()
    };
    let mut taken: Vec<Option<T>> = v.drain(..).map(Some).collect();
    v.extend(order.into_iter().filter_map(|i| taken[i].take()));
}

/// What the order compares of a name.
struct SortKey<'a> {
    secs: u64,
    usecs: Option<u64>,
    base: &'a str,
}

impl<'a> SortKey<'a> {
    fn of(name: &'a str) -> SortKey<'a> {
        let end = name
            .bytes()
            .position(|c| !c.is_ascii_digit())
            .unwrap_or(name.len());
        let rest = &name[end..];
        SortKey {
            secs: name[..end].parse().unwrap_or(0),
            usecs: usecs(rest),
            base: basename(rest),
        }
    }

    fn order(&self, other: &SortKey) -> Ordering {
        // (a sort may panic on a comparator that is no total order)
        self.secs
            .cmp(&other.secs)
            .then_with(|| self.usecs.cmp(&other.usecs))
            .then_with(|| self.base.cmp(other.base))
    }
}

/// The `M<usecs>` of the unique part after the leading timestamp.
fn usecs(rest: &str) -> Option<u64> {
    let rest = rest.strip_prefix('.')?;
    let uniq = rest.split(['.', ':']).next()?;
    let m = uniq.find('M')?;
    let d = &uniq[m + 1..];
    let end = d
        .bytes()
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(d.len());
    Some(d[..end].parse().unwrap_or(0))
}

/// This host's name as it goes into file names: maildir(5) escapes `/` and
/// `:` as `\057` and `\072`, as Dovecot does; we also escape `,` as `\054`
/// so the `,S=`/`,W=` fields after it parse unambiguously.
pub fn hostname() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        let mut buf = [0u8; 256];
        // SAFETY: buf is valid for buf.len() bytes; gethostname NUL-terminates
        // on success (or truncates, which we tolerate).
        let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        let name = if rc == 0 {
            let end = buf.iter().position(|&c| c == 0).unwrap_or(buf.len());
            String::from_utf8_lossy(&buf[..end]).into_owned()
        } else {
            "localhost".to_string()
        };
        escape_host(&name)
    })
}

fn escape_host(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '/' => out.push_str("\\057"),
            ':' => out.push_str("\\072"),
            ',' => out.push_str("\\054"),
            c => out.push(c),
        }
    }
    out
}

/// A new unique base name `<secs>.M<usecs>P<pid>Q<n>.<host>`: unique within
/// this process by the counter, across processes by the pid, across hosts by
/// the host name (the qmail/Dovecot convention).
pub fn generate_base() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static LAST: Mutex<(u64, u32)> = Mutex::new((0, 0));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    // keep (secs, usecs) strictly increasing within the process so that the
    // sort order of generated names follows creation order
    let (secs, usecs) = {
        let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
        let mut t = (now.as_secs(), now.subsec_micros());
        if t <= *last {
            t = *last;
            t.1 += 1;
            if t.1 == 1_000_000 {
                t = (t.0 + 1, 0);
            }
        }
        *last = t;
        t
    };
    let q = COUNTER.fetch_add(1, AtomicOrdering::Relaxed);
    format!("{secs}.M{usecs}P{}Q{q}.{}", std::process::id(), hostname())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_escaping() {
        assert_eq!(escape_host("a/b:c,d.e"), "a\\057b\\072c\\054d.e");
    }

    #[test]
    fn flags_parse_and_set() {
        let (f, k) = parse_flags("1.M2P3.host,S=10,W=12:2,RSab");
        assert_eq!(f, Flags::ANSWERED | Flags::SEEN);
        assert_eq!(k, 0b11);
        assert_eq!(parse_flags("1.M2P3.host").0, Flags::empty());
        assert_eq!(
            set_flags("1.host,S=5", Flags::SEEN | Flags::DRAFT, 0b101),
            "1.host,S=5:2,DSac"
        );
        assert_eq!(set_flags("1.host:2,S", Flags::empty(), 0), "1.host:2,");
        // unknown flags are kept in place, order stays ASCII
        assert_eq!(
            set_flags("1.host:2,PS", Flags::FLAGGED | Flags::SEEN, 0),
            "1.host:2,FPS"
        );
        assert_eq!(
            set_flags("1.host:2,S,xyz", Flags::DELETED, 0),
            "1.host:2,T,xyz"
        );
        assert_eq!(set_flags("1.host:1,foo", Flags::SEEN, 0), "1.host:2,S");
    }

    #[test]
    fn sizes() {
        assert_eq!(get_size("1.M1P1.h,S=214,W=223:2,S", b'S'), Some(214));
        assert_eq!(get_size("1.M1P1.h,S=214,W=223:2,S", b'W'), Some(223));
        assert_eq!(get_size("1.M1P1.h:2,S", b'S'), None);
        assert_eq!(get_size("1.M1P1.h,S=12x", b'S'), None);
    }

    #[test]
    fn sort_order() {
        let mut v = vec![
            "1700000001.M5P1.h",
            "1700000000.M20P1.h",
            "1700000000.M3P1.h",
            "999.x",
            "1700000000.M3P0.h",
        ];
        v.sort_by(|a, b| sort_cmp(a, b));
        assert_eq!(
            v,
            [
                "999.x",
                "1700000000.M3P0.h",
                "1700000000.M3P1.h",
                "1700000000.M20P1.h",
                "1700000001.M5P1.h"
            ]
        );
        let a = generate_base();
        let b = generate_base();
        assert_eq!(sort_cmp(&a, &b), Ordering::Less);
        // taken apart once, in the same order (ties and names without
        // M<usecs> included: the sort is stable either way)
        let mut names: Vec<String> = (0..300u64)
            .map(|i| match i % 4 {
                0 => format!("{}.M{}P{i}.h", 1_700_000_000 + i % 7, (i * 7919) % 13),
                1 => format!("{}.x{i}", 1_700_000_000 + i % 5),
                2 => format!("{}.M{}P1.h", 1_700_000_000 + i % 7, i % 3),
                _ => format!("{}.M5P1.h", 1_700_000_000 + i % 3),
            })
            .collect();
        names.reverse();
        let mut by_cmp = names.clone();
        by_cmp.sort_by(|a, b| sort_cmp(a, b));
        sort_by_name(&mut names, |n| n.as_str());
        assert_eq!(names, by_cmp);
    }

    /// Names with and without `M<usecs>` in one second are still a total
    /// order (Dovecot's rule made "5.xM1.h" < "5.aM9.h" < "5.m" <
    /// "5.xM1.h"), so sorting them never meets a contradiction.
    #[test]
    fn mixed_names_in_one_second_are_a_total_order() {
        let names = [
            "5.xM1.h", "5.aM9.h", "5.m", "5.N", "5.M3P1.h", "5.b", "5.zM0.h", "6.a", "4.zM9.h",
        ];
        for a in names {
            assert_eq!(sort_cmp(a, a), Ordering::Equal);
            for b in names {
                assert_eq!(sort_cmp(a, b), sort_cmp(b, a).reverse(), "{a} {b}");
                for c in names {
                    if sort_cmp(a, b).is_lt() && sort_cmp(b, c).is_lt() {
                        assert!(sort_cmp(a, c).is_lt(), "{a} < {b} < {c}");
                    }
                }
            }
        }
        // well-formed names keep Dovecot's order; a name without usecs
        // goes first in its second
        let mut v: Vec<&str> = vec!["5.aM9.h", "5.m", "5.xM1.h", "4.zM9.h", "6.a"];
        sort_by_name(&mut v, |n| n);
        assert_eq!(v, ["4.zM9.h", "5.m", "5.xM1.h", "5.aM9.h", "6.a"]);
    }
}
