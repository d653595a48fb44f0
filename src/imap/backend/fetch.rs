//! FETCH and UID FETCH (RFC 3501 §6.4.5 and §7.4.2, RFC 9051 §6.4.5 and
//! §7.5.2, BINARY from RFC 3516): which data items each message needs, from
//! the structure cache or the message file, rendered by
//! [`crate::imap::message`]; setting `\Seen` for a non-PEEK body fetch. Long
//! answers go out as they grow ([`Backend::spill`]).

use std::borrow::Cow;
use std::cell::OnceCell;
use std::num::{NonZeroU32, NonZeroU64};
use std::time::{SystemTime, UNIX_EPOCH};

use imap_codec::encode::Encoder;
use imap_codec::imap_types::command::FetchModifier;
use imap_codec::imap_types::core::{IString, Literal, LiteralMode, NString, NString8, Vec1};
use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::extensions::binary::Literal8;
use imap_codec::imap_types::fetch::{
    MacroOrMessageDataItemNames, MessageDataItem, MessageDataItemName, Section,
};
use imap_codec::imap_types::flag::{Flag, FlagFetch};
use imap_codec::imap_types::response::{Data, Response};
use imap_codec::imap_types::sequence::SequenceSet;
use imap_codec::imap_types::IntoStatic;
use imap_codec::ResponseCodec;

use super::condstore::vanished_set;
use super::registry::lock;
use super::sequence::merged_intervals;
use super::{read_message_file, Backend};
use crate::imap::cache::Parts;
use crate::imap::message;
use crate::imap::message::to_crlf;
use crate::imap::proto::response::tagged;
use crate::store::maildir::{Flags, MessageInfo};

/// Output size at which a FETCH hands what it has to [`Backend::spill`].
pub(super) const SPILL_BYTES: usize = 64 * 1024;

fn imap_date(t: SystemTime) -> Option<DateTime> {
    let secs = t.duration_since(UNIX_EPOCH).ok()?.as_secs() as i64;
    let dt = chrono::DateTime::from_timestamp(secs, 0)?.fixed_offset();
    DateTime::try_from(dt).ok()
}

/// Writes `* seq FETCH (…` (all but the closing `)\r\n`, which goes after
/// a literal that may follow) for items that are only numbers and flags
/// (what a client's flag sync asks of every message, and the UID before
/// mbsync's BODY[]) straight into `out`, byte for byte as imap-codec
/// would; `false` (nothing written) for any other item, which then goes
/// through the encoder.
fn write_simple_open(seq: NonZeroU32, data: &[MessageDataItem], out: &mut Vec<u8>) -> bool {
    use std::io::Write;
    let simple = |i: &MessageDataItem| match i {
        MessageDataItem::Uid(_) | MessageDataItem::ModSeq(_) | MessageDataItem::Rfc822Size(_) => {
            true
        }
        MessageDataItem::Flags(f) => f.iter().all(|f| {
            matches!(
                f,
                FlagFetch::Recent
                    | FlagFetch::Flag(
                        Flag::Answered | Flag::Deleted | Flag::Draft | Flag::Flagged | Flag::Seen
                    )
            )
        }),
        _ => false,
    };
    if data.is_empty() || !data.iter().all(simple) {
        return false;
    }
    let _ = write!(out, "* {seq} FETCH (");
    for (n, item) in data.iter().enumerate() {
        if n > 0 {
            out.push(b' ');
        }
        let _ = match item {
            MessageDataItem::Uid(u) => write!(out, "UID {u}"),
            MessageDataItem::ModSeq(m) => write!(out, "MODSEQ ({m})"),
            MessageDataItem::Rfc822Size(s) => write!(out, "RFC822.SIZE {s}"),
            MessageDataItem::Flags(flags) => {
                out.extend_from_slice(b"FLAGS (");
                for (k, f) in flags.iter().enumerate() {
                    if k > 0 {
                        out.push(b' ');
                    }
                    out.extend_from_slice(match f {
                        FlagFetch::Recent => b"\\Recent",
                        FlagFetch::Flag(Flag::Answered) => b"\\Answered",
                        FlagFetch::Flag(Flag::Deleted) => b"\\Deleted",
                        FlagFetch::Flag(Flag::Draft) => b"\\Draft",
                        FlagFetch::Flag(Flag::Flagged) => b"\\Flagged",
                        _ => b"\\Seen",
                    });
                }
                out.push(b')');
                Ok(())
            }
            _ => Ok(()),
        };
    }
    true
}

/// Items a flag sync asks of every message, which [`write_flag_sync`]
/// writes from the message's record alone.
fn is_flag_sync(items: &[MessageDataItemName]) -> bool {
    items.iter().all(|i| {
        matches!(
            i,
            MessageDataItemName::Uid
                | MessageDataItemName::Flags
                | MessageDataItemName::ModSeq
                | MessageDataItemName::Rfc822Size
        )
    })
}

#[cfg(test)]
thread_local! {
    /// Tests turn [`write_flag_sync`] off to compare with the item path.
    pub(super) static FLAG_SYNC_PATH: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
    /// Messages [`write_flag_sync`] answered, for tests that show it did.
    pub(super) static FLAG_SYNC_WRITES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn flag_sync_path() -> bool {
    #[cfg(test)]
    return FLAG_SYNC_PATH.with(|c| c.get());
    #[cfg(not(test))]
    true
}

/// `* seq FETCH (…)` for [`is_flag_sync`] items of a message without
/// keywords, written from its record: the bytes the item path makes (one
/// FLAGS where it was last asked for, MODSEQ last when nonzero), without
/// building items per message (a big mailbox's sync asks 100,000 times).
fn write_flag_sync(
    out: &mut Vec<u8>,
    seq: NonZeroU32,
    items: &[MessageDataItemName],
    m: &MessageInfo,
    recent: bool,
) {
    #[cfg(test)]
    FLAG_SYNC_WRITES.with(|n| n.set(n.get() + 1));
    let mut num = itoa::Buffer::new();
    out.extend_from_slice(b"* ");
    out.extend_from_slice(num.format(seq.get()).as_bytes());
    out.extend_from_slice(b" FETCH (");
    let last_flags = items
        .iter()
        .rposition(|i| matches!(i, MessageDataItemName::Flags));
    let mut first = true;
    let mut sep = |out: &mut Vec<u8>| {
        if !std::mem::take(&mut first) {
            out.push(b' ');
        }
    };
    for (n, item) in items.iter().enumerate() {
        match item {
            MessageDataItemName::Uid if m.uid > 0 => {
                sep(out);
                out.extend_from_slice(b"UID ");
                out.extend_from_slice(num.format(m.uid).as_bytes());
            }
            MessageDataItemName::Rfc822Size => {
                sep(out);
                out.extend_from_slice(b"RFC822.SIZE ");
                out.extend_from_slice(num.format(m.vsize() as u32).as_bytes());
            }
            MessageDataItemName::Flags if Some(n) == last_flags => {
                sep(out);
                out.extend_from_slice(b"FLAGS (");
                let mut names = m.flags.imap_names().chain(recent.then_some("\\Recent"));
                if let Some(f) = names.next() {
                    out.extend_from_slice(f.as_bytes());
                }
                for f in names {
                    out.push(b' ');
                    out.extend_from_slice(f.as_bytes());
                }
                out.push(b')');
            }
            _ => {}
        }
    }
    if m.modseq > 0 && items.contains(&MessageDataItemName::ModSeq) {
        sep(out);
        out.extend_from_slice(b"MODSEQ (");
        out.extend_from_slice(num.format(m.modseq).as_bytes());
        out.push(b')');
    }
    out.extend_from_slice(b")\r\n");
}

fn encode(resp: &Response) -> Vec<u8> {
    ResponseCodec::default().encode(resp).dump()
}

/// BODY[section] data; a part that doesn't exist is the empty string, as
/// Dovecot sends it.
fn section_bytes(p: &message::Parsed, section: Option<&Section>) -> Vec<u8> {
    message::section(p, section)
        .map(|c| c.into_owned())
        .unwrap_or_default()
}

/// BINARY data: a literal8 (`~{n}`) only when it holds NUL bytes (RFC 3516 §4.2).
fn nstring8(data: Vec<u8>) -> NString8<'static> {
    if memchr::memchr(0, &data).is_some() {
        NString8::Literal8(Literal8 {
            data: data.into(),
            mode: LiteralMode::Sync,
        })
    } else {
        NString8::NString(nstring(data))
    }
}

/// A partial BINARY item as RFC 3516 §4.2 writes it: the section, the
/// origin, then the data (a literal8 if it holds NUL).
fn binary_partial(written: &mut Vec<u8>, section: &[NonZeroU32], origin: u32, data: &[u8]) {
    let section: Vec<String> = section.iter().map(|n| n.to_string()).collect();
    let tilde = if memchr::memchr(0, data).is_some() {
        "~"
    } else {
        ""
    };
    written.extend_from_slice(
        format!(
            " BINARY[{}]<{origin}> {tilde}{{{}}}\r\n",
            section.join("."),
            data.len()
        )
        .as_bytes(),
    );
    written.extend_from_slice(data);
}

/// An NString holding `data` (a literal; quoted data can't hold CR/LF).
/// `name` and `data` as a literal (`{n}` CRLF data), as [`nstring`] would
/// encode it: NUL bytes dropped.
fn write_literal(out: &mut Vec<u8>, name: &[u8], data: &[u8]) {
    let nuls = memchr::memchr_iter(0, data).count();
    out.extend_from_slice(name);
    out.extend_from_slice(format!("{{{}}}\r\n", data.len() - nuls).as_bytes());
    if nuls == 0 {
        out.extend_from_slice(data);
    } else {
        out.extend(data.iter().filter(|b| **b != 0));
    }
}

/// `name` and the message `file` as a literal with CRLF line endings
/// (bare LFs, as Maildir stores them, get a CR), converted as it is
/// written: no copy of the message in between. `size`: the CRLF size the
/// record gives (`W=`), checked against what was written.
fn write_literal_crlf(out: &mut Vec<u8>, name: &[u8], file: &[u8], size: u64) {
    use std::io::Write;
    if memchr::memchr(0, file).is_some() {
        // (NULs dropped the general way, rare)
        return write_literal(out, name, &to_crlf(file));
    }
    out.extend_from_slice(name);
    let head = out.len();
    let _ = write!(out, "{{{size}}}\r\n");
    let body = out.len();
    out.reserve(file.len() + file.len() / 32 + 16);
    let mut start = 0;
    for i in memchr::memchr_iter(b'\n', file) {
        if i == 0 || file[i - 1] != b'\r' {
            out.extend_from_slice(&file[start..i]);
            out.push(b'\r');
            start = i;
        }
    }
    out.extend_from_slice(&file[start..]);
    let written = out.len() - body;
    if written as u64 != size {
        // The record's size is not the file's: the length it really has.
        let converted = out.split_off(body);
        out.truncate(head);
        let _ = write!(out, "{{{written}}}\r\n");
        out.extend_from_slice(&converted);
    }
}

fn nstring(mut data: Vec<u8>) -> NString<'static> {
    // NUL bytes are the only thing a literal can't hold (RFC 3501 §4.3):
    // drop them rather than fail. One memchr instead of a validating copy.
    if memchr::memchr(0, &data).is_some() {
        data.retain(|b| *b != 0);
    }
    NString(Some(IString::Literal(Literal::unvalidated(data))))
}

/// The parts of a message's record a FETCH answers from.
struct Fetched {
    flags: Flags,
    keywords: Vec<String>,
    /// Read only when INTERNALDATE is asked for (`Mailbox::resolve_dates`).
    internal_date: Option<SystemTime>,
    vsize: u64,
}

impl Backend {
    pub(super) fn fetch(
        &mut self,
        tag: &str,
        set: &SequenceSet,
        what: &MacroOrMessageDataItemNames<'static>,
        uid: bool,
        modifiers: &[FetchModifier],
        out: &mut Vec<u8>,
    ) -> String {
        // RFC 7162 §3.1.4.1 CHANGEDSINCE, §3.2.6 VANISHED: only with UID
        // FETCH, QRESYNC enabled and CHANGEDSINCE.
        let changed_since = modifiers.iter().find_map(|m| match m {
            FetchModifier::ChangedSince(n) => Some(n.get()),
            FetchModifier::Vanished => None,
        });
        let vanished = modifiers.contains(&FetchModifier::Vanished);
        if vanished && !(uid && self.qresync && changed_since.is_some()) {
            return tagged(
                tag,
                "BAD",
                "Error in IMAP command FETCH: VANISHED needs UID FETCH, QRESYNC and CHANGEDSINCE.",
            );
        }
        let mut items: Vec<MessageDataItemName<'static>> = match what {
            MacroOrMessageDataItemNames::Macro(m) => {
                m.expand().into_iter().map(|i| i.into_static()).collect()
            }
            MacroOrMessageDataItemNames::MessageDataItemNames(v) => v.clone(),
        };
        if uid && !items.iter().any(|i| matches!(i, MessageDataItemName::Uid)) {
            items.insert(0, MessageDataItemName::Uid);
        }
        // RFC 7162 §3.1.4.1: CHANGEDSINCE implies MODSEQ; once CONDSTORE is
        // enabled, a FETCH of FLAGS answers the MODSEQ too (§3.1.4).
        let has = |items: &[MessageDataItemName], x: &MessageDataItemName| items.contains(x);
        if !has(&items, &MessageDataItemName::ModSeq)
            && (changed_since.is_some()
                || (self.condstore && has(&items, &MessageDataItemName::Flags)))
        {
            items.push(MessageDataItemName::ModSeq);
        }
        if self.bad_sequence_set(set, uid) {
            return tagged(
                tag,
                "BAD",
                "Error in IMAP command FETCH: Invalid messageset.",
            );
        }
        let mut targets = self.resolve(set, uid);
        let condstore = self.condstore;
        let Some(sel) = &mut self.selected else {
            return tagged(tag, "BAD", "No mailbox selected.");
        };
        let shared = sel.shared.clone();
        let mut sh = lock(&shared);
        if let Some(since) = changed_since {
            if vanished {
                // RFC 7162 §3.2.6: the UIDs of the set expunged since, first.
                let top = sh.mailbox.next_uid().saturating_sub(1);
                let within = merged_intervals(set, top);
                let gone = vanished_set(&sh.mailbox, since, &within);
                if !gone.is_empty() {
                    out.extend_from_slice(format!("* VANISHED (EARLIER) {gone}\r\n").as_bytes());
                }
            }
            // RFC 7162 §3.1.4.1: only messages whose modseq is above.
            targets.retain(|&(_, u)| sh.modseq_of(u) > since);
        }
        // Our own flag changes are answered by this command: don't report
        // them again as news, unless others' changes are pending too.
        let mut was_current = sh.modseq() == sel.seen_modseq;
        // RFC 3516 §4.1: a part in an encoding we can't undo fails the FETCH.
        let mut unknown_cte = false;
        // A message of the view another session expunged has nothing left
        // to send; the tagged reply says so (RFC 5530 EXPUNGEISSUED, as
        // Dovecot's "Some messages were already expunged").
        let mut skipped_expunged = false;
        // ENVELOPE, BODY and BODYSTRUCTURE come from the structure cache;
        // only a miss, or an item with message bytes, reads the file.
        let wants_structure = items.iter().any(|i| {
            matches!(
                i,
                MessageDataItemName::Envelope
                    | MessageDataItemName::Body
                    | MessageDataItemName::BodyStructure
            )
        });
        let needs_body = items.iter().any(|i| {
            !matches!(
                i,
                MessageDataItemName::Uid
                    | MessageDataItemName::Flags
                    | MessageDataItemName::ModSeq
                    | MessageDataItemName::InternalDate
                    | MessageDataItemName::Rfc822Size
                    | MessageDataItemName::Envelope
                    | MessageDataItemName::Body
                    | MessageDataItemName::BodyStructure
            )
        });
        let sets_seen = !sel.read_only
            && items.iter().any(|i| match i {
                MessageDataItemName::BodyExt { peek, .. } => !peek,
                MessageDataItemName::Rfc822 | MessageDataItemName::Rfc822Text => true,
                MessageDataItemName::Binary { peek, .. } => !peek,
                _ => false,
            });
        // `written` goes after the items imap-types encodes: only with no
        // BINARY item (which uses it too) does a last BODY[] stay last.
        let whole_body_last = !items.iter().any(|i| {
            matches!(
                i,
                MessageDataItemName::Binary { .. } | MessageDataItemName::BinarySize { .. }
            )
        });
        let flag_sync = !sets_seen && is_flag_sync(&items) && flag_sync_path();
        let wants_date = items.contains(&MessageDataItemName::InternalDate);
        for (seq, u) in targets {
            if out.len() >= SPILL_BYTES {
                if let Some(spill) = &self.spill {
                    // Not holding the mailbox while the client reads.
                    sh.flush_cache();
                    let modseq = sh.modseq();
                    drop(sh);
                    let _ = spill.blocking_send(std::mem::take(out));
                    sh = lock(&shared);
                    // Others' changes meanwhile are still news to report.
                    was_current &= sh.modseq() == modseq;
                }
            }
            if flag_sync {
                let recent = sel.is_recent(u) && !self.rev2;
                let m = sh.mailbox.get(u);
                if let (Some(m), Some(seq)) = (m, NonZeroU32::new(seq)) {
                    if m.keywords().is_empty() {
                        write_flag_sync(out, seq, &items, m, recent);
                        continue;
                    }
                }
            }
            if wants_date {
                sh.mailbox.resolve_dates([u]);
            }
            // What the items need, not the whole record (its file name and
            // ids are heap strings: a copy per message fetched). A date that
            // can't be read is a file gone, like a body that can't be.
            let fetched = sh.mailbox.get(u).map(|m| Fetched {
                flags: m.flags,
                keywords: m.keywords().to_vec(),
                internal_date: m.internal_date(),
                vsize: m.vsize(),
            });
            let Some(info) = fetched.filter(|f| !wants_date || f.internal_date.is_some()) else {
                skipped_expunged = true;
                continue;
            };
            let mut flags = info.flags;
            let mut seen_now = false;
            if sets_seen && !flags.contains(Flags::SEEN) {
                flags.insert(Flags::SEEN);
                let kw: Vec<&str> = info.keywords.iter().map(String::as_str).collect();
                if sh.set_flags(u, flags, &kw).unwrap_or(false) {
                    seen_now = true;
                    sel.own.insert(u, sh.modseq_of(u));
                }
            }
            let cached = if wants_structure {
                sh.cache().get(u)
            } else {
                None
            };
            let file = if needs_body || (wants_structure && cached.is_none()) {
                match read_message_file(&sh.mailbox, u) {
                    Some(r) => Some(r),
                    None => {
                        skipped_expunged = true;
                        continue;
                    }
                }
            } else {
                None
            };
            // With CRLF line endings only when an item needs it so: a whole
            // BODY[] last (what mbsync fetches) is converted as it is
            // written out, and parsed only when an item needs the MIME
            // structure.
            let crlf_cell: OnceCell<Cow<[u8]>> = OnceCell::new();
            let crlf = || {
                file.as_deref()
                    .map(|f| &**crlf_cell.get_or_init(|| to_crlf(f)))
            };
            let cell: OnceCell<message::Parsed> = OnceCell::new();
            let parsed = || crlf().map(|r| cell.get_or_init(|| message::parse(r)));
            let mut body_last: Option<&[u8]> = None;
            let parts = match cached {
                Some(p) => Some(p),
                None if wants_structure => parsed().map(|p| {
                    let parts = Parts::of(p);
                    sh.cache().insert(u, &parts);
                    parts
                }),
                None => None,
            };
            let mut data: Vec<MessageDataItem<'static>> = Vec::new();
            // Items imap-types can't express, already encoded (" BINARY[1]<0> {3}…").
            let mut written: Vec<u8> = Vec::new();
            let mut flags_at: Option<usize> = None;
            let mut modseq_wanted = false;
            for item in &items {
                match item {
                    MessageDataItemName::Uid => {
                        if let Some(n) = NonZeroU32::new(u) {
                            data.push(MessageDataItem::Uid(n));
                        }
                    }
                    MessageDataItemName::Flags => flags_at = Some(data.len()),
                    MessageDataItemName::ModSeq => modseq_wanted = true,
                    MessageDataItemName::InternalDate => {
                        if let Some(d) = info.internal_date.and_then(imap_date) {
                            data.push(MessageDataItem::InternalDate(d));
                        }
                    }
                    MessageDataItemName::Rfc822Size => {
                        data.push(MessageDataItem::Rfc822Size(info.vsize as u32))
                    }
                    MessageDataItemName::Envelope => {
                        if let Some(p) = &parts {
                            data.push(MessageDataItem::Envelope(p.envelope.clone()));
                        }
                    }
                    MessageDataItemName::Body => {
                        if let Some(p) = &parts {
                            data.push(MessageDataItem::Body(p.body.clone()));
                        }
                    }
                    MessageDataItemName::BodyStructure => {
                        if let Some(p) = &parts {
                            data.push(MessageDataItem::BodyStructure(p.bodystructure.clone()));
                        }
                    }
                    // The whole message, asked for last (as mbsync and
                    // most clients do): written straight after the other
                    // items, not copied through imap-types' encoder.
                    MessageDataItemName::BodyExt {
                        section: None,
                        partial: None,
                        ..
                    } if whole_body_last
                        && std::ptr::eq(item, items.last().expect("non-empty")) =>
                    {
                        body_last = file.as_deref();
                    }
                    MessageDataItemName::BodyExt {
                        section, partial, ..
                    } => {
                        if let Some(r) = crlf() {
                            let bytes = match section {
                                None => r.to_vec(),
                                Some(_) => parsed()
                                    .map(|p| section_bytes(p, section.as_ref()))
                                    .unwrap_or_default(),
                            };
                            let (origin, bytes) = match partial {
                                Some((o, l)) => {
                                    (Some(*o), message::partial(&bytes, *o, l.get()).to_vec())
                                }
                                None => (None, bytes),
                            };
                            data.push(MessageDataItem::BodyExt {
                                section: section.clone(),
                                origin,
                                data: nstring(bytes),
                            });
                        }
                    }
                    MessageDataItemName::Binary {
                        section, partial, ..
                    } => match parsed().map(|p| message::binary_section(p, section)) {
                        Some(Ok(bytes)) => match partial {
                            // imap-types has no origin for BINARY: written here.
                            Some((o, l)) => binary_partial(
                                &mut written,
                                section,
                                *o,
                                message::partial(&bytes, *o, l.get()),
                            ),
                            None => data.push(MessageDataItem::Binary {
                                section: section.clone(),
                                value: nstring8(bytes.into_owned()),
                            }),
                        },
                        Some(Err(message::BinaryError::NoSuchPart)) => {
                            data.push(MessageDataItem::Binary {
                                section: section.clone(),
                                value: NString8::NString(NString(None)),
                            });
                        }
                        Some(Err(message::BinaryError::UnknownCte)) => unknown_cte = true,
                        None => {}
                    },
                    MessageDataItemName::BinarySize { section } => {
                        match parsed().map(|p| message::binary_section(p, section)) {
                            Some(Ok(bytes)) => data.push(MessageDataItem::BinarySize {
                                section: section.clone(),
                                size: bytes.len() as u32,
                            }),
                            Some(Err(message::BinaryError::UnknownCte)) => unknown_cte = true,
                            _ => {}
                        }
                    }
                    MessageDataItemName::Rfc822 => {
                        if let Some(r) = crlf() {
                            data.push(MessageDataItem::Rfc822(nstring(r.to_vec())));
                        }
                    }
                    MessageDataItemName::Rfc822Header => {
                        if let Some(p) = parsed() {
                            let s = Section::Header(None);
                            data.push(MessageDataItem::Rfc822Header(nstring(section_bytes(
                                p,
                                Some(&s),
                            ))));
                        }
                    }
                    MessageDataItemName::Rfc822Text => {
                        if let Some(p) = parsed() {
                            let s = Section::Text(None);
                            data.push(MessageDataItem::Rfc822Text(nstring(section_bytes(
                                p,
                                Some(&s),
                            ))));
                        }
                    }
                }
            }
            // FETCH FLAGS goes where it was asked for; a \Seen set by this
            // FETCH is reported even when FLAGS wasn't (RFC 3501 §6.4.5).
            if flags_at.is_some() || seen_now {
                sel.announce_keywords(&info.keywords, &sh.mailbox, out);
            }
            let flag_item = {
                let mut f: Vec<FlagFetch<'static>> = flags
                    .imap_names()
                    .filter_map(|n| {
                        Flag::try_from(n)
                            .ok()
                            .map(|f| FlagFetch::Flag(f.into_static()))
                    })
                    .collect();
                if sel.is_recent(u) && !self.rev2 {
                    f.push(FlagFetch::Recent);
                }
                for k in &info.keywords {
                    if let Ok(fl) = Flag::try_from(k.as_str()) {
                        f.push(FlagFetch::Flag(fl.into_static()));
                    }
                }
                MessageDataItem::Flags(f)
            };
            match flags_at {
                Some(i) => data.insert(i.min(data.len()), flag_item),
                None if seen_now => data.push(flag_item),
                None => {}
            }
            // RFC 7162 §3.1.4: MODSEQ asked for, or flags changed (\Seen
            // set) under CONDSTORE.
            if modseq_wanted || (condstore && seen_now) {
                if let Some(n) = NonZeroU64::new(sh.modseq_of(u)) {
                    data.push(MessageDataItem::ModSeq(n));
                }
            }
            let Some(seq) = NonZeroU32::new(seq) else {
                continue;
            };
            let tail = !written.is_empty() || body_last.is_some();
            // Nothing between "(" and the body: no space before it.
            let body_first = data.is_empty() && written.is_empty();
            // (the common sync FETCH: UID, FLAGS, MODSEQ, RFC822.SIZE, and
            // mbsync's UID + BODY[]: no encoder)
            if write_simple_open(seq, &data, out) {
                out.extend_from_slice(&written);
            } else {
                match Vec1::try_from(data) {
                    Ok(items) => {
                        let line = encode(&Response::Data(Data::Fetch { seq, items }));
                        match line.strip_suffix(b")\r\n") {
                            Some(open) if tail => {
                                out.extend_from_slice(open);
                                out.extend_from_slice(&written);
                            }
                            _ => {
                                out.extend_from_slice(&line);
                                continue;
                            }
                        }
                    }
                    Err(_) if tail => {
                        out.extend_from_slice(format!("* {seq} FETCH (").as_bytes());
                        out.extend_from_slice(written.get(1..).unwrap_or_default());
                    }
                    Err(_) => continue,
                }
            }
            if let Some(body) = body_last {
                let name = if body_first {
                    &b"BODY[] "[..]
                } else {
                    b" BODY[] "
                };
                write_literal_crlf(out, name, body, info.vsize);
            }
            out.extend_from_slice(b")\r\n");
        }
        sh.flush_cache();
        // No EXPUNGE during FETCH (RFC 3501 §7.4.1), but UID FETCH may.
        if was_current {
            sel.seen_modseq = sh.modseq();
        }
        drop(sh);
        self.updates(uid, out);
        if unknown_cte {
            return tagged(
                tag,
                "NO",
                "[UNKNOWN-CTE] Unknown Content-Transfer-Encoding.",
            );
        }
        if skipped_expunged {
            return tagged(
                tag,
                "OK",
                "[EXPUNGEISSUED] Some messages were already expunged.",
            );
        }
        tagged(tag, "OK", "Fetch completed.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A whole BODY[] converted as it is written is what converting it
    /// first gives (CRLF line endings, NULs dropped), with the length it
    /// really has also where the record's size (`W=`) is wrong.
    #[test]
    fn a_body_converted_as_written_is_the_converted_body_with_its_real_length() {
        let files: [&[u8]; 9] = [
            b"",
            b"a",
            b"a\n",
            b"\n\n",
            b"a\r\nb\nc",
            b"x\r\n\r\n",
            b"nul\0inside\n",
            b"\r\n\n\r",
            b"Subject: s\n\nline one\nline two\n",
        ];
        for file in files {
            let mut want = b"* 1 FETCH (UID 1".to_vec();
            write_literal(&mut want, b" BODY[] ", &to_crlf(file));
            let real = to_crlf(file).iter().filter(|b| **b != 0).count() as u64;
            for size in [real, real + 3, 0] {
                let mut got = b"* 1 FETCH (UID 1".to_vec();
                write_literal_crlf(&mut got, b" BODY[] ", file, size);
                assert_eq!(
                    String::from_utf8_lossy(&got),
                    String::from_utf8_lossy(&want),
                    "{file:?} with size {size}"
                );
            }
        }
    }

    fn write_simple(seq: NonZeroU32, data: &[MessageDataItem], out: &mut Vec<u8>) -> bool {
        let written = write_simple_open(seq, data, out);
        if written {
            out.extend_from_slice(b")\r\n");
        }
        written
    }

    /// The direct writer answers byte for byte what imap-codec encodes, for
    /// every mix of its items, and leaves everything else to the encoder.
    #[test]
    fn simple_items_are_written_as_the_encoder_writes_them() {
        let flags = [
            FlagFetch::Flag(Flag::Seen),
            FlagFetch::Flag(Flag::Answered),
            FlagFetch::Recent,
            FlagFetch::Flag(Flag::Flagged),
            FlagFetch::Flag(Flag::Deleted),
            FlagFetch::Flag(Flag::Draft),
        ];
        let item = |k: usize, n: u32| match k {
            0 => MessageDataItem::Uid(NonZeroU32::new(n).unwrap()),
            1 => MessageDataItem::ModSeq(NonZeroU64::new(u64::from(n) << 20).unwrap()),
            2 => MessageDataItem::Rfc822Size(n * 7),
            _ => MessageDataItem::Flags(flags[..(n as usize % (flags.len() + 1))].to_vec()),
        };
        let seq = NonZeroU32::new(4_000_000_000).unwrap();
        let mut checked = 0;
        for mask in 1u32..16 {
            for n in [1u32, 5, 6, 99_999] {
                let data: Vec<MessageDataItem> = (0..4)
                    .filter(|k| mask & (1 << k) != 0)
                    .map(|k| item(k, n))
                    .collect();
                let mut out = b"before".to_vec();
                assert!(write_simple(seq, &data, &mut out));
                let want = encode(&Response::Data(Data::Fetch {
                    seq,
                    items: Vec1::try_from(data).unwrap(),
                }));
                assert_eq!(
                    String::from_utf8_lossy(&out[6..]),
                    String::from_utf8_lossy(&want)
                );
                checked += 1;
            }
        }
        assert_eq!(checked, 60);
        // Keywords and every other item go through the encoder.
        let keyword = Flag::try_from("$Forwarded").unwrap();
        for other in [
            MessageDataItem::Flags(vec![FlagFetch::Flag(keyword)]),
            MessageDataItem::InternalDate(imap_date(UNIX_EPOCH).unwrap()),
        ] {
            let mut out = Vec::new();
            let data = vec![MessageDataItem::Uid(NonZeroU32::MIN), other];
            assert!(!write_simple(seq, &data, &mut out));
            assert!(out.is_empty());
        }
    }
}
