//! Mod-sequences (RFC 7162 CONDSTORE/QRESYNC) for a Maildir folder, kept in
//! our own disposable `pigeonpost.index.modseq` (never in Dovecot's
//! `dovecot.index*`).
//!
//! Every message has a MODSEQ, the mailbox a HIGHESTMODSEQ; each change a
//! [`super::Mailbox`] makes or sees (flags or keywords set by any session or
//! process, a message appearing, an expunge) takes a new, higher value
//! (RFC 7162 §3.1.1). Expunged UIDs are remembered with the modseq of their
//! expunge, up to [`VANISHED_MAX`] of them, for `VANISHED (EARLIER)`
//! (RFC 7162 §3.2.5, §3.2.6).
//!
//! **Never backwards, without an fsync per flag change.** A new modseq is
//! `max(HIGHESTMODSEQ + 1, microseconds since 1970)`. The clock is the
//! floor that survives anything: if the file is lost, damaged or behind
//! (a crash before the write-back reached the disk, another process's
//! lines lost in a compaction race, the file deleted by hand), the rebuild
//! compares the messages' flags with what the file says and gives every
//! message it can't vouch for a modseq from the clock *now*, which is above
//! any value handed out before (a mailbox can't change a million times a
//! second for long). So a flag rename and its modseq need not be fsynced
//! together: a change whose record didn't reach the disk is seen as a
//! change again and gets a newer modseq; HIGHESTMODSEQ never goes lower,
//! and a client's CHANGEDSINCE never misses a change. The one thing that
//! can defeat it is the system clock stepping back past the last modseq
//! *and* the file being lost at the same time.
//!
//! File format (text): a header `pigeonpost-modseq 1 <uidvalidity>
//! <highestmodseq> <vanished-floor> <boot>`, then lines appended as changes
//! happen (O_APPEND, one write per change; later lines win):
//! `m <uid> <modseq> <flags-signature>` for a message's state and
//! `x <uid> <modseq>` for an expunge. A torn or malformed line is skipped.
//! It is written anew (temporary file, rename) when it has grown to twice
//! what it describes; appends and rewrites happen under an `flock` of the
//! file, and a rewrite keeps what other writers (sessions of another
//! process, or a short-lived handle of this one) appended meanwhile. The
//! vanished floor is the modseq up to which the expunge list may be
//! incomplete (older expunges were forgotten, or happened before the file
//! was rebuilt); asked about expunges since an older modseq, the caller
//! falls back to "every UID that isn't there". `<boot>` is the system boot
//! the file was rewritten in: appends aren't fsynced, so a file from an
//! earlier boot (a power loss may have eaten its last lines) gets its
//! HIGHESTMODSEQ raised to the clock when it is read.

use std::collections::VecDeque;

use rustc_hash::FxHashMap as HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::MessageInfo;

pub const MODSEQ_FILE: &str = "pigeonpost.index.modseq";
const MAGIC: &str = "pigeonpost-modseq 1";
/// Expunged UIDs remembered for VANISHED (EARLIER); older ones raise the floor.
pub const VANISHED_MAX: usize = 50_000;
/// RFC 7162 §7 (`mod-sequence-value`): at most 2^63 - 1; a file naming
/// more is damaged.
const MODSEQ_MAX: u64 = (1 << 63) - 1;

/// Microseconds since 1970: the floor of every new modseq.
fn clock() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A stable hash of a message's flags and keywords (FNV-1a), so the file
/// can tell whether the message changed while nobody was looking.
pub(super) fn signature(m: &MessageInfo) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: u8| {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    };
    eat(m.flags.bits());
    for k in m.keywords() {
        eat(b' ');
        for b in k.bytes() {
            eat(b.to_ascii_lowercase());
        }
    }
    h
}

#[derive(Debug)]
pub(super) struct ModseqIndex {
    path: PathBuf,
    uidvalidity: u32,
    highest: u64,
    /// uid → (modseq, flags signature), as the file says, until the first
    /// [`reconcile`](Self::reconcile). After it the mailbox's own message
    /// list is the truth (every listed message with its modseq, the
    /// signature computed from its flags), so this is `None` and the
    /// callers pass the list: a map beside it would hold the same again
    /// (a third of the memory of a 100,000-message mailbox).
    known: Option<HashMap<u32, (u64, u64)>>,
    /// (uid, modseq of its expunge), modseq ascending.
    vanished: VecDeque<(u32, u64)>,
    vanished_floor: u64,
    /// Lines in the file; None when it has to be written anew.
    lines: Option<usize>,
    /// The boot the file was written in ([`boot_id`]).
    boot: u64,
    /// Lines of flag changes not appended yet: one write per command (see
    /// [`flush`](Self::flush)), not one per message.
    pending: String,
}

impl ModseqIndex {
    /// The index of the folder `dir` for `uidvalidity`; an empty one (to be
    /// rebuilt by the first [`reconcile`](Self::reconcile)) if the file is
    /// missing, damaged or of another UIDVALIDITY.
    pub(super) fn load(dir: &Path, uidvalidity: u32) -> ModseqIndex {
        let path = dir.join(MODSEQ_FILE);
        let mut ix = ModseqIndex {
            path,
            uidvalidity,
            highest: 0,
            known: Some(HashMap::default()),
            vanished: VecDeque::new(),
            vanished_floor: 0,
            lines: None,
            boot: 0,
            pending: String::new(),
        };
        let Ok(text) = std::fs::read_to_string(&ix.path) else {
            ix.boot = boot_id();
            return ix;
        };
        ix.parse(&text);
        ix.check_boot();
        ix
    }

    fn parse(&mut self, text: &str) {
        let mut lines = text.split_inclusive('\n');
        let Some(header) = lines.next() else { return };
        let Some(rest) = header.strip_prefix(MAGIC) else {
            return;
        };
        let h: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        let [validity, highest, floor, boot] = h[..] else {
            return;
        };
        if highest > MODSEQ_MAX || floor > MODSEQ_MAX {
            return;
        }
        // Whatever the file, its HIGHESTMODSEQ stays a floor.
        self.highest = highest;
        if validity != self.uidvalidity as u64 {
            return;
        }
        self.boot = boot;
        self.vanished_floor = floor;
        let mut count = 1;
        let mut vanished = Vec::new();
        let known = self.known.get_or_insert_with(HashMap::default);
        for line in lines {
            count += 1;
            // a torn last line (crash mid-append) is ignored
            let Some(line) = line.strip_suffix('\n') else {
                continue;
            };
            let mut w = line.split(' ');
            let kind = w.next();
            // (the numbers that parse; more than three fit no line kind)
            let mut buf = [0u64; 4];
            let mut n = 0;
            for v in w.filter_map(|x| x.parse().ok()) {
                if n == buf.len() {
                    break;
                }
                buf[n] = v;
                n += 1;
            }
            let nums = &buf[..n];
            let good = |uid: u64, modseq: u64| {
                uid > 0 && uid <= u32::MAX as u64 && modseq > 0 && modseq <= MODSEQ_MAX
            };
            match (kind, nums) {
                (Some("m"), &[uid, modseq, sig]) if good(uid, modseq) => {
                    known.insert(uid as u32, (modseq, sig));
                    self.highest = self.highest.max(modseq);
                }
                (Some("x"), &[uid, modseq]) if good(uid, modseq) => {
                    known.remove(&(uid as u32));
                    vanished.push((uid as u32, modseq));
                    self.highest = self.highest.max(modseq);
                }
                _ => {}
            }
        }
        vanished.sort_by_key(|&(u, m)| (m, u));
        self.vanished = vanished.into();
        self.trim_vanished();
        self.lines = Some(count);
    }

    /// Written since the last boot? Appends aren't fsynced, so after a
    /// reboot (a power loss) lines may be missing: HIGHESTMODSEQ is then
    /// raised to the clock, above anything the lost lines handed out, and
    /// the file is written anew with this boot's id.
    fn check_boot(&mut self) {
        let now = boot_id();
        if self.lines.is_some() && self.boot != now {
            self.boot = now;
            self.highest = self.highest.max(clock()).min(MODSEQ_MAX);
            self.compact(&[]);
        }
    }

    fn trim_vanished(&mut self) {
        while self.vanished.len() > VANISHED_MAX {
            if let Some((_, m)) = self.vanished.pop_front() {
                self.vanished_floor = self.vanished_floor.max(m);
            }
        }
    }

    pub(super) fn uidvalidity(&self) -> u32 {
        self.uidvalidity
    }

    /// Never below `floor` (what an earlier index of this folder handed out).
    pub(super) fn raise(&mut self, floor: u64) {
        self.highest = self.highest.max(floor);
    }

    pub(super) fn highest(&self) -> u64 {
        self.highest
    }

    /// A new modseq above every one before (RFC 7162 §3.1.1).
    fn alloc(&mut self) -> u64 {
        self.highest = (self.highest + 1).max(clock()).min(MODSEQ_MAX);
        self.highest
    }

    /// After a sync: gives each message of the new list `messages` its
    /// modseq, a new one to those whose flags the index doesn't know (new,
    /// changed by someone else, or everything after a rebuild), and records
    /// the UIDs that left as expunged. `old` is the list the index
    /// describes (the one the last reconcile returned, kept up to date by
    /// [`arrived`](Self::arrived), [`changed`](Self::changed) and
    /// [`expunged`](Self::expunged)); both sorted by UID. From here on
    /// `messages` is the truth: the caller [`flush`](Self::flush)es with it.
    pub(super) fn reconcile(&mut self, old: &[MessageInfo], messages: &mut [MessageInfo]) {
        let mut changed = Vec::new();
        let known = self.known.take();
        // Both lists ascend by UID: the old one is walked along the new.
        let mut at = 0;
        let mut before = |uid: u32| -> Option<(u64, u64)> {
            match &known {
                Some(k) => k.get(&uid).copied(),
                None => {
                    while old.get(at).is_some_and(|o| o.uid < uid) {
                        at += 1;
                    }
                    let o = old.get(at).filter(|o| o.uid == uid)?;
                    Some((o.modseq, signature(o)))
                }
            }
        };
        let mut matched = 0;
        for (i, m) in messages.iter_mut().enumerate() {
            let sig = signature(m);
            match before(m.uid) {
                Some((ms, s)) if s == sig => {
                    m.modseq = ms;
                    matched += 1;
                }
                Some(_) => {
                    matched += 1;
                    changed.push((i, sig));
                }
                None => changed.push((i, sig)),
            }
        }
        let had = known.as_ref().map_or(old.len(), |k| k.len());
        let gone: Vec<u32> = if matched < had {
            let mut g: Vec<u32> = match &known {
                Some(k) => k
                    .keys()
                    .copied()
                    .filter(|u| messages.binary_search_by_key(u, |m| m.uid).is_err())
                    .collect(),
                None => {
                    let mut at = 0;
                    old.iter()
                        .map(|o| o.uid)
                        .filter(|&u| {
                            while messages.get(at).is_some_and(|m| m.uid < u) {
                                at += 1;
                            }
                            messages.get(at).is_none_or(|m| m.uid != u)
                        })
                        .collect()
                }
            };
            g.sort_unstable();
            g
        } else {
            Vec::new()
        };
        drop(known);
        if changed.is_empty() && gone.is_empty() && self.lines.is_some() {
            return;
        }
        let rebuild = self.lines.is_none();
        let modseq = self.alloc();
        if rebuild {
            // Nothing is known about expunges before now (RFC 7162 §5.1
            // lets the caller answer with every missing UID instead).
            self.vanished_floor = self.vanished_floor.max(modseq);
        }
        for (i, sig) in changed {
            let m = &mut messages[i];
            m.modseq = modseq;
            self.pending
                .push_str(&format!("m {} {modseq} {sig}\n", m.uid));
        }
        self.record_gone(&gone, modseq);
    }

    /// `messages` just arrived (new UIDs, above every one known; the
    /// caller adds them to its list, then flushes): one new modseq for all
    /// of them, as [`reconcile`](ModseqIndex::reconcile) would give,
    /// without looking at the rest of the mailbox.
    pub(super) fn arrived(&mut self, messages: &mut [MessageInfo]) {
        if messages.is_empty() {
            return;
        }
        let modseq = self.alloc();
        for m in messages {
            let sig = signature(m);
            m.modseq = modseq;
            self.pending
                .push_str(&format!("m {} {modseq} {sig}\n", m.uid));
        }
    }

    fn record_gone(&mut self, gone: &[u32], modseq: u64) {
        for &u in gone {
            self.vanished.push_back((u, modseq));
            self.pending.push_str(&format!("x {u} {modseq}\n"));
        }
        self.trim_vanished();
    }

    /// `m`'s flags were just changed by us: its new modseq.
    pub(super) fn changed(&mut self, m: &mut MessageInfo) {
        let modseq = self.alloc();
        let sig = signature(m);
        m.modseq = modseq;
        // Written at the next flush (the end of the command, the next
        // sync, or when the handle closes). Lost in a crash, the change is
        // seen again at the next open (the flags differ from the file's)
        // and gets a newer modseq: never an older one.
        self.pending
            .push_str(&format!("m {} {modseq} {sig}\n", m.uid));
    }

    /// Enough flag changes pending that the caller should flush now.
    pub(super) fn wants_flush(&self) -> bool {
        self.pending.len() > 64 * 1024
    }

    /// We expunged `uids` (and took them out of the list).
    pub(super) fn expunged(&mut self, uids: &[u32]) {
        if uids.is_empty() {
            return;
        }
        let modseq = self.alloc();
        self.record_gone(uids, modseq);
    }

    /// The modseq of `uid`'s expunge, if it is remembered.
    pub(super) fn expunged_at(&self, uid: u32) -> Option<u64> {
        self.vanished
            .iter()
            .rev()
            .find(|&&(u, _)| u == uid)
            .map(|&(_, m)| m)
    }

    /// UIDs expunged with a modseq above `since`, ascending; `None` when
    /// the list may be incomplete that far back.
    pub(super) fn vanished_since(&self, since: u64) -> Option<Vec<u32>> {
        if since < self.vanished_floor {
            return None;
        }
        let from = self.vanished.partition_point(|&(_, m)| m <= since);
        let mut v: Vec<u32> = self.vanished.range(from..).map(|&(u, _)| u).collect();
        v.sort_unstable();
        v.dedup();
        Some(v)
    }

    /// Appends what is pending, or writes the whole file anew when it is
    /// missing, damaged or has grown to twice what it describes. `messages`
    /// is the mailbox's list (the truth since the first reconcile). Best
    /// effort: a failed write only means the next rebuild hands out newer
    /// modseqs.
    pub(super) fn flush(&mut self, messages: &[MessageInfo]) {
        if self.pending.is_empty() {
            return;
        }
        let text = std::mem::take(&mut self.pending);
        let text = text.as_str();
        let listed = self.known.as_ref().map_or(messages.len(), |k| k.len());
        let describes = listed + self.vanished.len() + 1;
        let appended = match self.lines {
            Some(n) if n <= 2 * describes + 1024 => {
                let res = self
                    .open_locked(false)
                    .and_then(|(mut f, _)| f.write_all(text.as_bytes()));
                match res {
                    Ok(()) => {
                        self.lines = Some(n + text.matches('\n').count());
                        true
                    }
                    Err(_) => false,
                }
            }
            _ => false,
        };
        if !appended {
            self.compact(messages);
        }
    }

    /// The file as it is now at its path, under an exclusive `flock` (held
    /// until the handle closes), with its text if `read`. Every writer, in this
    /// process or another, appends or rewrites only under it, and a writer
    /// that locked a file just replaced by a rewrite opens the new one, so
    /// no appended line is lost to a rewrite.
    fn open_locked(&self, read: bool) -> std::io::Result<(std::fs::File, Option<String>)> {
        use std::io::Read;
        use std::os::unix::fs::MetadataExt;
        use std::os::unix::io::AsRawFd;
        for _ in 0..8 {
            let mut f = std::fs::OpenOptions::new()
                .read(true)
                .append(true)
                .open(&self.path)?;
            // SAFETY: flock on a descriptor we own; released when `f` closes.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if f.metadata()?.ino() == std::fs::metadata(&self.path)?.ino() {
                if !read {
                    return Ok((f, None));
                }
                let mut text = String::new();
                let text = f.read_to_string(&mut text).ok().map(|_| text);
                return Ok((f, text));
            }
        }
        Err(std::io::Error::other("replaced too often"))
    }

    /// Writes the file anew (temporary file, rename) under the old one's
    /// lock, keeping what others appended since we read it: per UID the
    /// entry with the higher modseq (modseqs only grow), and every expunge.
    fn compact(&mut self, messages: &[MessageInfo]) {
        let locked = self.open_locked(true).ok();
        let mut known: HashMap<u32, (u64, u64)> = match &self.known {
            Some(k) => k.clone(),
            None => messages
                .iter()
                .map(|m| (m.uid, (m.modseq, signature(m))))
                .collect(),
        };
        let mut vanished: Vec<(u32, u64)> = self.vanished.iter().copied().collect();
        let mut highest = self.highest;
        if let Some((_, Some(text))) = &locked {
            let mut theirs = ModseqIndex {
                path: self.path.clone(),
                uidvalidity: self.uidvalidity,
                highest: 0,
                known: None,
                vanished: VecDeque::new(),
                vanished_floor: 0,
                lines: None,
                boot: 0,
                pending: String::new(),
            };
            theirs.parse(text);
            if theirs.lines.is_some() {
                highest = highest.max(theirs.highest);
                let gone: std::collections::HashSet<u32> =
                    vanished.iter().map(|&(u, _)| u).collect();
                for (uid, (ms, sig)) in theirs.known.unwrap_or_default() {
                    if gone.contains(&uid) {
                        continue;
                    }
                    let e = known.entry(uid).or_insert((ms, sig));
                    if e.0 < ms {
                        *e = (ms, sig);
                    }
                }
                for (uid, ms) in theirs.vanished {
                    if !gone.contains(&uid) {
                        known.remove(&uid);
                        vanished.push((uid, ms));
                    }
                }
                vanished.sort_by_key(|&(u, m)| (m, u));
            }
        }
        let skip = vanished.len().saturating_sub(VANISHED_MAX);
        let mut buf = format!(
            "{MAGIC} {} {highest} {} {}\n",
            self.uidvalidity, self.vanished_floor, self.boot
        );
        let mut known: Vec<_> = known.into_iter().collect();
        known.sort_unstable();
        for (uid, (modseq, sig)) in &known {
            buf.push_str(&format!("m {uid} {modseq} {sig}\n"));
        }
        for (uid, modseq) in &vanished[skip..] {
            buf.push_str(&format!("x {uid} {modseq}\n"));
        }
        let tmp = self
            .path
            .with_file_name(format!("{MODSEQ_FILE}.{}.tmp", super::write::unique_name()));
        let done = std::fs::write(&tmp, &buf).and_then(|()| std::fs::rename(&tmp, &self.path));
        drop(locked);
        match done {
            Ok(()) => self.lines = Some(1 + known.len() + vanished.len() - skip),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                tracing::debug!(file = %self.path.display(), "not writing modseqs: {e}");
                self.lines = None;
            }
        }
    }
}

/// This boot of the system (Linux's `boot_id`), hashed; 0 if unknown.
fn boot_id() -> u64 {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.trim().bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    if id.trim().is_empty() {
        0
    } else {
        h.max(1)
    }
}

/// For the `maildir_modseq` fuzz target: reads `text` as an index file,
/// reconciles it with a few messages and checks the invariants (modseqs
/// positive, within RFC 7162's range, HIGHESTMODSEQ never lower, the expunge
/// list ordered and bounded). Writes go to a directory that doesn't exist.
#[doc(hidden)]
pub fn fuzz_check(text: &str) {
    let mut ix = ModseqIndex {
        path: PathBuf::from("/nonexistent/pigeonpost-fuzz").join(MODSEQ_FILE),
        uidvalidity: 7,
        highest: 0,
        known: Some(HashMap::default()),
        vanished: VecDeque::new(),
        vanished_floor: 0,
        lines: None,
        boot: 0,
        pending: String::new(),
    };
    ix.parse(text);
    let before = ix.highest;
    assert!(before <= MODSEQ_MAX);
    assert!(ix.vanished.len() <= VANISHED_MAX);
    assert!(ix
        .vanished
        .iter()
        .zip(ix.vanished.iter().skip(1))
        .all(|(a, b)| a.1 <= b.1));
    let mut uids: Vec<u32> = ix
        .known
        .iter()
        .flat_map(|k| k.keys().copied().take(3))
        .collect();
    uids.push(u32::MAX);
    uids.sort_unstable();
    uids.dedup();
    let mut messages: Vec<MessageInfo> = uids
        .into_iter()
        .map(|uid| {
            let mut m = MessageInfo::new(uid, &format!("{uid}:2,S"), 1, 1, 0);
            m.set_keywords(vec!["$Fuzz".into()]);
            m
        })
        .collect();
    ix.reconcile(&[], &mut messages);
    assert!(ix.highest >= before && ix.highest <= MODSEQ_MAX);
    for m in &messages {
        assert!(m.modseq > 0 && m.modseq <= ix.highest);
    }
    if let Some(m) = messages.first_mut() {
        m.flags = super::Flags::empty();
        let h = ix.highest;
        ix.changed(m);
        assert!(ix.highest >= h && m.modseq == ix.highest);
    }
    // A later sync, the list now the truth: the first message gone, the
    // others unchanged and keeping their modseqs.
    let old = messages.clone();
    let mut later = old[1..].to_vec();
    ix.reconcile(&old, &mut later);
    assert!(later
        .iter()
        .zip(&old[1..])
        .all(|(a, b)| a.modseq == b.modseq));
    assert_eq!(ix.expunged_at(old[0].uid), Some(ix.highest));
    if let Some(v) = ix.vanished_since(before) {
        assert!(v.windows(2).all(|w| w[0] < w[1]));
    }
}
