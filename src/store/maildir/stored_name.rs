//! A message's file name, held in 24 bytes inside its record.
//!
//! Every open mailbox keeps a name per message. A Dovecot-style name
//! (`1767225600.M123456P4242Q7.mail.example.com,S=5120,W=5230:2,S`, about
//! 60 characters) in a heap block of its own cost 80 of the ~200 bytes per
//! message of a 100,000-message folder, and the blocks, allocated one by
//! one among the open's temporaries, left the heap fragmented. Such a name
//! is kept as its parts instead: the seconds as a number, the unique part
//! packed four bits a character, the host interned once per process, the
//! `,S=`/`,W=` sizes taken from the message's record (the caller passes
//! them), the `:2,` letters as bits. A name that doesn't come back byte for
//! byte from its parts (another program's naming, unknown flag letters,
//! sizes other than the record's) is kept whole.

use std::collections::HashMap;
use std::fmt::{self, Write};
use std::sync::{LazyLock, RwLock};

use super::Flags;

/// Characters of a packed unique part (`M<usecs>P<pid>Q<n>`, Courier's
/// `V<dev>I<ino>` in decimal); a nibble of 15 ends it.
const UNIQUE_SYMBOLS: &[u8; 15] = b"0123456789MPQVI";
const UNIQUE_END: u8 = 15;
/// The nibble of each byte of a packed unique part (`UNIQUE_END`: none).
const UNIQUE_NIBBLE: [u8; 256] = {
    let mut t = [UNIQUE_END; 256];
    let mut i = 0;
    while i < UNIQUE_SYMBOLS.len() {
        t[UNIQUE_SYMBOLS[i] as usize] = i as u8;
        i += 1;
    }
    t
};
/// Nibbles of a packed unique part.
const UNIQUE_MAX: usize = 22;

const HAS_S: u8 = 1;
const HAS_W: u8 = 2;
const HAS_INFO: u8 = 4;

#[derive(Clone, PartialEq, Eq)]
enum Head {
    /// `<secs>.<unique>`, the unique part as nibbles (indexes into
    /// [`UNIQUE_SYMBOLS`], two a byte, high first).
    Packed { secs: u32, unique: [u8; 11] },
    /// The whole file name, as found (boxed twice: one pointer, not two
    /// words, so the record stays small for the names that pack).
    #[allow(clippy::box_collection, clippy::redundant_allocation)]
    Whole(Box<Box<str>>),
}

/// A Maildir file name (see the module comment). Decoding needs the size
/// and virtual size of the message it names.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredName {
    head: Head,
    /// Index into the process's host table (packed names only).
    host: u16,
    /// `HAS_S`, `HAS_W`, `HAS_INFO`.
    shape: u8,
    /// System flags of the `:2,` part.
    flags: u8,
    /// Keyword letters `a`–`z` of the `:2,` part, bit 0 for `a`.
    keywords: u32,
}

const _: () = assert!(std::mem::size_of::<StoredName>() == 24);

impl StoredName {
    /// `name`, the file name of a message of `size` bytes (`vsize` with
    /// CRLF line ends).
    pub fn new(name: &str, size: u64, vsize: u64) -> StoredName {
        match packed(name, size, vsize) {
            Some(p) => {
                debug_assert!(p.equals(name, size, vsize), "{name} packed as {p:?}");
                p
            }
            None => StoredName {
                head: Head::Whole(Box::new(name.into())),
                host: 0,
                shape: 0,
                flags: 0,
                keywords: 0,
            },
        }
    }

    /// Writes the name (`size`, `vsize`: those given to [`new`](Self::new)).
    pub fn write(&self, size: u64, vsize: u64, out: &mut impl Write) -> fmt::Result {
        let (secs, unique) = match &self.head {
            Head::Whole(name) => return out.write_str(name),
            Head::Packed { secs, unique } => (secs, unique),
        };
        write!(out, "{secs}.")?;
        for i in 0..UNIQUE_MAX {
            let nibble = (unique[i / 2] >> if i % 2 == 0 { 4 } else { 0 }) & 0xf;
            if nibble == UNIQUE_END {
                break;
            }
            out.write_char(UNIQUE_SYMBOLS[nibble as usize] as char)?;
        }
        out.write_char('.')?;
        out.write_str(host_name(self.host))?;
        if self.shape & HAS_S != 0 {
            write!(out, ",S={size}")?;
        }
        if self.shape & HAS_W != 0 {
            write!(out, ",W={vsize}")?;
        }
        if self.shape & HAS_INFO != 0 {
            out.write_str(":2,")?;
            let flags = Flags(self.flags);
            for (f, c) in Flags::MAILDIR_ORDER {
                if flags.contains(f) {
                    out.write_char(c as char)?;
                }
            }
            for i in 0..26u8 {
                if self.keywords & (1 << i) != 0 {
                    out.write_char((b'a' + i) as char)?;
                }
            }
        }
        Ok(())
    }

    /// The name as a string.
    pub fn to_string(&self, size: u64, vsize: u64) -> String {
        let mut s = String::with_capacity(64);
        let _ = self.write(size, vsize, &mut s);
        s
    }

    /// Whether this is `name` (no allocation).
    pub fn equals(&self, name: &str, size: u64, vsize: u64) -> bool {
        if let Head::Whole(n) = &self.head {
            return ***n == *name;
        }
        let mut rest = Rest(name.as_bytes());
        self.write(size, vsize, &mut rest).is_ok() && rest.0.is_empty()
    }

    /// The name, if it is kept whole.
    pub fn whole(&self) -> Option<&str> {
        match &self.head {
            Head::Whole(n) => Some(n),
            Head::Packed { .. } => None,
        }
    }

    /// Whether the name may begin with the seconds `secs` (a packed name
    /// that doesn't, doesn't): a cheap first test before a comparison.
    pub fn may_start_with(&self, secs: Option<u32>) -> bool {
        match (&self.head, secs) {
            (Head::Packed { secs: s, .. }, Some(secs)) => *s == secs,
            (Head::Packed { .. }, None) => false,
            (Head::Whole(_), _) => true,
        }
    }

    /// Keyword letters of the `:2,` part (bit 0 for `a`).
    pub fn keyword_letters(&self) -> u32 {
        match &self.head {
            Head::Whole(n) => super::filename::parse_flags(n).1,
            Head::Packed { .. } => self.keywords,
        }
    }
}

/// The leading seconds of a file name, as a packed name holds them.
pub fn leading_secs(name: &str) -> Option<u32> {
    name.split_once('.')?.0.parse().ok()
}

/// A [`Write`] that checks what is written against a string's start,
/// consuming it.
struct Rest<'a>(&'a [u8]);

impl Write for Rest<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        match self.0.strip_prefix(s.as_bytes()) {
            Some(r) => {
                self.0 = r;
                Ok(())
            }
            None => Err(fmt::Error),
        }
    }
}

/// `name` in parts, if it has exactly the shape [`StoredName::write`]
/// gives back: canonical numbers (no leading zeros, the sizes the
/// record's), known flag letters in ASCII order without repeats. One pass
/// over the bytes: every open of a big folder packs every name.
fn packed(name: &str, size: u64, vsize: u64) -> Option<StoredName> {
    let b = name.as_bytes();
    let (secs, mut i) = number(b, 0)?;
    let secs = u32::try_from(secs).ok()?;
    if b.get(i) != Some(&b'.') {
        return None;
    }
    i += 1;
    let mut unique = [0xffu8; 11];
    let start = i;
    while b.get(i).is_some_and(|&c| c != b'.') {
        let k = i - start;
        if k >= UNIQUE_MAX {
            return None;
        }
        let v = UNIQUE_NIBBLE[b[i] as usize];
        if v == UNIQUE_END {
            return None;
        }
        let byte = &mut unique[k / 2];
        *byte = if k % 2 == 0 {
            (v << 4) | UNIQUE_END
        } else {
            (*byte & 0xf0) | v
        };
        i += 1;
    }
    i += 1; // the '.' before the host (or past the end: no host)
    let host_start = i;
    while b.get(i).is_some_and(|&c| c != b',' && c != b':') {
        i += 1;
    }
    if i <= host_start {
        return None;
    }
    // (ASCII bytes on both sides: char boundaries)
    let host = intern_host(&name[host_start..i])?;
    let mut shape = 0;
    if has_at(b, i, b",S=") {
        i = number_is(b, i + 3, size)?;
        shape |= HAS_S;
        if has_at(b, i, b",W=") {
            i = number_is(b, i + 3, vsize)?;
            shape |= HAS_W;
        }
    }
    let (mut flags, mut keywords) = (0u8, 0u32);
    if i < b.len() {
        if !has_at(b, i, b":2,") {
            return None;
        }
        shape |= HAS_INFO;
        let mut last = 0u8;
        for &c in &b[i + 3..] {
            if c <= last {
                return None;
            }
            last = c;
            match c {
                b'a'..=b'z' => keywords |= 1 << (c - b'a'),
                _ => flags |= Flags::from_maildir_char(c)?.bits(),
            }
        }
    }
    Some(StoredName {
        head: Head::Packed { secs, unique },
        host,
        shape,
        flags,
        keywords,
    })
}

/// Whether `b[i..]` starts with `three` (compared inline: a `memcmp`
/// call per part was a tenth of a big folder's open).
fn has_at(b: &[u8], i: usize, three: &[u8; 3]) -> bool {
    i + 3 <= b.len() && b[i] == three[0] && b[i + 1] == three[1] && b[i + 2] == three[2]
}

/// The decimal number at `b[i..]` as [`write!`] writes it (no sign, no
/// leading zero), and where it ends.
fn number(b: &[u8], i: usize) -> Option<(u64, usize)> {
    let digits = b[i.min(b.len())..]
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .count();
    if digits == 0 || digits > 19 || (digits > 1 && b[i] == b'0') {
        return None;
    }
    let n = b[i..i + digits]
        .iter()
        .fold(0u64, |n, &c| n * 10 + u64::from(c - b'0'));
    Some((n, i + digits))
}

/// Where the number `want` written at `b[i..]` ends, if it is there.
fn number_is(b: &[u8], i: usize, want: u64) -> Option<usize> {
    number(b, i).filter(|&(n, _)| n == want).map(|(_, end)| end)
}

/// Host names seen in packed file names, for the life of the process (a
/// mailbox has one or a few; at most `u16::MAX`, then names stay whole).
struct Hosts {
    names: Vec<&'static str>,
    ids: HashMap<&'static str, u16>,
}

static HOSTS: LazyLock<RwLock<Hosts>> = LazyLock::new(|| {
    RwLock::new(Hosts {
        names: Vec::new(),
        ids: HashMap::new(),
    })
});

thread_local! {
    /// The last host looked up on this thread: a mailbox's names mostly
    /// share one.
    static LAST_HOST: std::cell::Cell<Option<(&'static str, u16)>> =
        const { std::cell::Cell::new(None) };
}

fn intern_host(host: &str) -> Option<u16> {
    if let Some((h, id)) = LAST_HOST.get() {
        if h == host {
            return Some(id);
        }
    }
    let found = HOSTS.read().ok()?.ids.get(host).copied();
    let id = match found {
        Some(id) => id,
        None => {
            // (looked up again: another thread may have added it between
            // the two locks)
            let mut hosts = HOSTS.write().ok()?;
            match hosts.ids.get(host) {
                Some(&id) => id,
                None => {
                    let id = u16::try_from(hosts.names.len()).ok()?;
                    let name: &'static str = Box::leak(host.into());
                    hosts.names.push(name);
                    hosts.ids.insert(name, id);
                    id
                }
            }
        }
    };
    let name = host_name(id);
    LAST_HOST.set(Some((name, id)));
    Some(id)
}

fn host_name(id: u16) -> &'static str {
    HOSTS
        .read()
        .map(|h| h.names.get(id as usize).copied().unwrap_or(""))
        .unwrap_or("")
}

/// For the `maildir_name` fuzz target: any name, with sizes from `data`'s
/// first bytes, comes back byte for byte, and only equals itself.
#[doc(hidden)]
pub fn fuzz_check(data: &[u8]) {
    let (size, vsize) = match data {
        [a, b, ..] => (u64::from(*a) * 1000, u64::from(*b) * 1000),
        _ => (0, 0),
    };
    let name = String::from_utf8_lossy(data.get(2..).unwrap_or_default());
    let n = StoredName::new(&name, size, vsize);
    assert_eq!(n.to_string(size, vsize), name);
    assert!(n.equals(&name, size, vsize));
    assert!(!n.equals(&format!("{name}x"), size, vsize));
    if let Some((last, _)) = name.char_indices().last() {
        assert!(!n.equals(&name[..last], size, vsize));
    }
}

impl fmt::Debug for StoredName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.head {
            Head::Whole(n) => write!(f, "{n:?}"),
            Head::Packed { secs, .. } => write!(
                f,
                "StoredName({secs}.…, host {}, shape {}, flags {}, keywords {:#x})",
                self.host, self.shape, self.flags, self.keywords
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(name: &str, size: u64, vsize: u64) -> StoredName {
        let n = StoredName::new(name, size, vsize);
        assert_eq!(n.to_string(size, vsize), name, "{n:?}");
        assert!(n.equals(name, size, vsize));
        n
    }

    #[test]
    fn common_names_pack_and_come_back_byte_for_byte() {
        for name in [
            "1767225600.M123456P4242Q100000.mail.example.com,S=5120,W=5230:2,S",
            "1767225600.M123456P4242.mail.example.com,S=5120,W=5230:2,",
            "1767225600.M123456P4242.host,S=5120:2,DFRSTaz",
            "1767225600.M123456P4242.host,S=5120,W=5230",
            "1767225600.M1P1.host:2,Sbc",
            "1035478339.V803I14M499745.host.example",
            "0.M0P0.h",
        ] {
            let n = round_trip(name, 5120, 5230);
            assert!(matches!(n.head, Head::Packed { .. }), "{name}: {n:?}");
        }
    }

    #[test]
    fn other_names_are_kept_whole_and_still_come_back() {
        for name in [
            // Courier's hexadecimal device and inode
            "1035478339.V803I14a4c5M499745.host",
            // sizes other than the record's, leading zeros, unknown letters,
            // another info version, no host, an empty host, odd order
            "1767225600.M1P1.host,S=99,W=5230:2,S",
            "01767225600.M1P1.host:2,S",
            "1767225600.M1P1.host:2,SX",
            "1767225600.M1P1.host:2,SD",
            "1767225600.M1P1.host:1,S",
            "1767225600.M1P1",
            "1767225600.M1P1.",
            "1767225600.M1P1.host,W=5230,S=5120",
            "1767225600.M1P1.host,S=5120,W=5230,X=1",
            "17672256000000.M1P1.host",
            "1767225600.M12345678901234567890123P1.host",
            "",
            "plain",
            "ünïcode.M1P1.höst:2,S",
        ] {
            let n = round_trip(name, 5120, 5230);
            assert!(matches!(n.head, Head::Whole(_)), "{name}: {n:?}");
        }
    }

    #[test]
    fn equals_tells_names_apart() {
        let n = StoredName::new("1767225600.M1P1.host,S=5,W=6:2,S", 5, 6);
        assert!(n.equals("1767225600.M1P1.host,S=5,W=6:2,S", 5, 6));
        for other in [
            "1767225600.M1P1.host,S=5,W=6:2,",
            "1767225600.M1P1.host,S=5,W=6:2,ST",
            "1767225600.M1P1.hos,S=5,W=6:2,S",
            "1767225600.M1P1.host,S=5,W=6:2,Sa",
            "1767225600.M1P2.host,S=5,W=6:2,S",
            "1767225601.M1P1.host,S=5,W=6:2,S",
        ] {
            assert!(!n.equals(other, 5, 6), "{other}");
        }
        assert_eq!(n.keyword_letters(), 0);
        let k = StoredName::new("1767225600.M1P1.host:2,Sac", 1, 1);
        assert_eq!(k.keyword_letters(), 0b101);
        let w = StoredName::new("x:2,Sac", 1, 1);
        assert_eq!(w.keyword_letters(), 0b101);
    }

    #[test]
    fn any_name_comes_back() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        // random strings over the characters that matter to the packing
        let alphabet: Vec<char> = "0123456789.,:=SWMPQVIadxz2F".chars().collect();
        for _ in 0..20_000 {
            let name: String = (0..next(40))
                .map(|_| alphabet[next(alphabet.len() as u64) as usize])
                .collect();
            round_trip(&name, next(3), next(3));
        }
        // names of the usual shape, each part sometimes a little off
        let mut packed = 0;
        for _ in 0..20_000 {
            let (size, vsize) = (next(100_000), next(100_000));
            let pick = |n: &mut dyn FnMut(u64) -> u64, options: &[&str]| {
                options[n(options.len() as u64) as usize].to_string()
            };
            let mut name = pick(&mut next, &["1767225600", "0", "01", "4294967296", "x"]);
            name += &pick(&mut next, &[".", "", ".."]);
            for _ in 0..next(26) {
                name.push(b"0123456789MPQVIa"[next(16) as usize] as char);
            }
            name += &pick(&mut next, &[".mail.example.com", ".h", ".", "", ".h:x"]);
            let s_part = pick(&mut next, &[&format!(",S={size}"), ",S=1", ",S=01", ""]);
            let w_part = pick(&mut next, &[&format!(",W={vsize}"), ",W=2", ""]);
            name += &s_part;
            name += &w_part;
            if next(4) > 0 {
                name += ":2,";
                for _ in 0..next(5) {
                    name.push(b"DFRSTPabz"[next(9) as usize] as char);
                }
            }
            let n = round_trip(&name, size, vsize);
            packed += usize::from(n.whole().is_none());
        }
        assert!(packed > 200, "only {packed} of the usual shape packed");
    }
}
