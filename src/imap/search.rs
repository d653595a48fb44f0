//! SEARCH: evaluating RFC 3501 §6.4.4 / RFC 9051 §6.4.4 search keys.
//!
//! Sans-IO and pure. The server compiles the parsed criteria once into a
//! [`Query`], asks [`Query::needs`] whether any message data beyond the
//! index (flags, size, dates) is needed, and then calls [`Query::matches`]
//! for every message, handing it a [`Candidate`].
//!
//! Semantics chosen here (Dovecot-like where the RFCs leave room):
//!
//! * String keys (BCC, BODY, CC, FROM, HEADER, SUBJECT, TEXT, TO) are
//!   case-insensitive substring matches (Unicode lowercase on both sides).
//!   Header values are unfolded and RFC 2047 encoded words decoded; address
//!   headers match their whole decoded value text (display names and
//!   addresses). Bodies are transfer-decoded (base64, QP) and
//!   charset-converted to UTF-8 by mail-parser; `text/*` parts are searched
//!   (HTML with its tags stripped), as are the headers and text of attached
//!   `message/rfc822` parts; other binary parts are not. BODY searches the
//!   body, TEXT the header section and the body.
//! * An empty string means "the field exists" for HEADER and for the
//!   SUBJECT/FROM/TO/CC/BCC shorthands (which are HEADER with a fixed field);
//!   BODY "" and TEXT "" match every message.
//! * BEFORE/ON/SINCE compare the date part of the internal date in the
//!   timezone `UTC + Context::utc_offset` (pass the server's local offset to
//!   behave like Dovecot; the default 0 is UTC).
//! * SENTBEFORE/SENTON/SENTSINCE compare the date part of the first `Date:`
//!   header as written (in the header's own timezone). A message with no or
//!   an unparsable `Date:` uses its internal date instead (like Dovecot and
//!   RFC 5256's sent date).
//! * `*` in a sequence set is the largest number in use
//!   ([`Context::max_seq`] / [`Context::max_uid`]); ranges are unordered
//!   (`5:2` = `2:5`, `5:*` with 3 messages = `3:5`).
//! * Keys from extensions not implemented here (WITHIN, CONDSTORE MODSEQ,
//!   present only if someone enables those imap-types features) match
//!   nothing.
//! * A message whose header/body the server could not supply (`None`)
//!   matches no string or SENT* key on that data (its NOT does).

use std::cell::OnceCell;

use imap_codec::imap_types::core::Charset;
use imap_codec::imap_types::datetime::NaiveDate;
use imap_codec::imap_types::search::SearchKey;
use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::decoders::html::html_to_text;
use mail_parser::parsers::MessageStream;
use mail_parser::{HeaderValue, MessageParser, PartType};

use crate::store::maildir::Flags;

/// Charsets to list in a `[BADCHARSET (...)]` response code. More are
/// accepted (anything mail-parser can decode), these are the ones worth
/// advertising.
pub const ADVERTISED_CHARSETS: &[&str] = &["UTF-8", "US-ASCII", "ISO-8859-1"];

/// One message as the evaluator sees it.
///
/// `header` and `message` are only called when [`Query::needs`] says so
/// (and only once per message and [`Query::matches`] call); an
/// implementation may load them lazily.
pub trait Candidate {
    /// Message sequence number (1-based).
    fn seq(&self) -> u32;
    fn uid(&self) -> u32;
    /// System flags (`\Seen \Answered \Flagged \Deleted \Draft`).
    fn flags(&self) -> Flags;
    /// Keywords set on the message (compared ASCII case-insensitively).
    fn keywords(&self) -> &[String];
    /// The `\Recent` flag.
    fn is_recent(&self) -> bool;
    /// RFC822.SIZE: size in octets with CRLF line endings.
    fn size(&self) -> u64;
    /// INTERNALDATE as Unix seconds.
    fn internal_date(&self) -> i64;
    /// The raw header section (may include the body; parsing stops at the
    /// first empty line). When `None`, [`Candidate::message`] is used.
    fn header(&self) -> Option<&[u8]> {
        None
    }
    /// The whole raw message; needed for BODY/TEXT.
    fn message(&self) -> Option<&[u8]>;
}

/// Mailbox-wide facts the evaluation depends on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Context {
    /// Largest message sequence number in use (the message count); `*`.
    pub max_seq: u32,
    /// Largest UID in use (not UIDNEXT-1 if the last messages were
    /// expunged); `*` in `UID` sets. 0 for an empty mailbox.
    pub max_uid: u32,
    /// Seconds east of UTC of the timezone BEFORE/ON/SINCE take the internal
    /// date's date part in.
    pub utc_offset: i32,
}

/// What message data a search reads besides the index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    /// The header section (`Candidate::header`, or `message` if that is
    /// `None`).
    pub header: bool,
    /// The whole message (`Candidate::message`).
    pub body: bool,
}

impl Needs {
    fn or(self, other: Needs) -> Needs {
        Needs {
            header: self.header || other.header,
            body: self.body || other.body,
        }
    }
}

/// `SEARCH CHARSET x` named a charset we cannot decode: answer
/// `NO [BADCHARSET (...)]` with [`ADVERTISED_CHARSETS`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported charset {0:?}")]
pub struct BadCharset(pub String);

/// What message data `key` reads; see [`Query::needs`].
pub fn needs(key: &SearchKey<'_>) -> Needs {
    Query::new(key).needs()
}

/// Whether the message `msg` matches `key` (strings taken as UTF-8).
/// Compiles `key` on every call: for a whole mailbox, build a [`Query`] once.
pub fn matches(key: &SearchKey<'_>, msg: &impl Candidate, ctx: &Context) -> bool {
    Query::new(key).matches(msg, ctx)
}

/// Whether `n` is in `set`, `*` standing for `max` (the largest number in
/// use; 0 for an empty mailbox). Ranges are unordered: `5:2` = `2:5`, and
/// `5:*` with `max` 3 is `3:5`.
pub fn sequence_contains(set: &SequenceSet, n: u32, max: u32) -> bool {
    set.0.as_ref().iter().any(|seq| match seq {
        Sequence::Single(v) => resolve(*v, max) == n,
        Sequence::Range(a, b) => {
            let (a, b) = (resolve(*a, max), resolve(*b, max));
            a.min(b) <= n && n <= a.max(b)
        }
    })
}

fn resolve(v: SeqOrUid, max: u32) -> u32 {
    match v {
        SeqOrUid::Value(v) => v.get(),
        SeqOrUid::Asterisk => max,
    }
}

/// Compiled search criteria.
#[derive(Debug, Clone)]
pub struct Query {
    root: Node,
    needs: Needs,
    parser: MessageParser,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DateCmp {
    Before,
    On,
    Since,
}

impl DateCmp {
    fn test(self, day: i64, key: i64) -> bool {
        match self {
            DateCmp::Before => day < key,
            DateCmp::On => day == key,
            DateCmp::Since => day >= key,
        }
    }
}

#[derive(Debug, Clone)]
enum Node {
    Const(bool),
    And(Vec<Node>),
    Or(Box<Node>, Box<Node>),
    Not(Box<Node>),
    Seq(SequenceSet),
    Uid(SequenceSet),
    /// Flag set (true) or not set (false).
    Flag(Flags, bool),
    Recent(bool),
    New,
    Keyword(String, bool),
    Larger(u64),
    Smaller(u64),
    Internal(DateCmp, i64),
    Sent(DateCmp, i64),
    /// Lowercase field name, lowercase needle ("" = field exists).
    Header(String, String),
    Body(String),
    Text(String),
}

impl Node {
    fn needs(&self) -> Needs {
        match self {
            Node::And(v) => v.iter().fold(Needs::default(), |n, k| n.or(k.needs())),
            Node::Or(a, b) => a.needs().or(b.needs()),
            Node::Not(a) => a.needs(),
            Node::Sent(..) | Node::Header(..) => Needs {
                header: true,
                body: false,
            },
            Node::Body(_) => Needs {
                header: false,
                body: true,
            },
            Node::Text(_) => Needs {
                header: true,
                body: true,
            },
            _ => Needs::default(),
        }
    }

    /// Rough evaluation cost, for ordering AND operands cheapest first.
    fn cost(&self) -> u8 {
        let n = self.needs();
        if n.body {
            2
        } else if n.header {
            1
        } else {
            0
        }
    }
}

struct Compiler {
    decode: fn(&[u8]) -> String,
}

fn utf8_lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Compiler {
    fn needle(&self, s: &[u8]) -> String {
        (self.decode)(s).to_lowercase()
    }

    fn header(&self, name: &str, s: &[u8]) -> Node {
        Node::Header(name.to_owned(), self.needle(s))
    }

    fn date(d: &NaiveDate, cmp: DateCmp, internal: bool) -> Node {
        match imap_date_day(d) {
            Some(day) if internal => Node::Internal(cmp, day),
            Some(day) => Node::Sent(cmp, day),
            None => Node::Const(false),
        }
    }

    fn and(&self, keys: &[SearchKey<'_>]) -> Node {
        let mut v: Vec<Node> = keys.iter().map(|k| self.key(k)).collect();
        if v.len() == 1 {
            return v.pop().unwrap_or(Node::Const(true));
        }
        v.sort_by_key(Node::cost);
        Node::And(v)
    }

    fn key(&self, key: &SearchKey<'_>) -> Node {
        match key {
            SearchKey::And(keys) => self.and(keys.as_ref()),
            SearchKey::SequenceSet(s) => Node::Seq(s.clone()),
            SearchKey::All => Node::Const(true),
            SearchKey::Answered => Node::Flag(Flags::ANSWERED, true),
            SearchKey::Bcc(s) => self.header("bcc", s.as_ref()),
            SearchKey::Before(d) => Self::date(d, DateCmp::Before, true),
            SearchKey::Body(s) => Node::Body(self.needle(s.as_ref())),
            SearchKey::Cc(s) => self.header("cc", s.as_ref()),
            SearchKey::Deleted => Node::Flag(Flags::DELETED, true),
            SearchKey::Draft => Node::Flag(Flags::DRAFT, true),
            SearchKey::Flagged => Node::Flag(Flags::FLAGGED, true),
            SearchKey::From(s) => self.header("from", s.as_ref()),
            SearchKey::Header(name, s) => {
                let name = String::from_utf8_lossy(name.as_ref())
                    .trim()
                    .to_ascii_lowercase();
                Node::Header(name, self.needle(s.as_ref()))
            }
            SearchKey::Keyword(k) => Node::Keyword(k.as_ref().to_owned(), true),
            SearchKey::Larger(n) => Node::Larger(u64::from(*n)),
            SearchKey::New => Node::New,
            SearchKey::Not(k) => match self.key(k) {
                Node::Const(b) => Node::Const(!b),
                Node::Not(inner) => *inner,
                n => Node::Not(Box::new(n)),
            },
            SearchKey::Old => Node::Recent(false),
            SearchKey::On(d) => Self::date(d, DateCmp::On, true),
            SearchKey::Or(a, b) => {
                let (a, b) = (self.key(a), self.key(b));
                // Cheaper operand first.
                if b.cost() < a.cost() {
                    Node::Or(Box::new(b), Box::new(a))
                } else {
                    Node::Or(Box::new(a), Box::new(b))
                }
            }
            SearchKey::Recent => Node::Recent(true),
            SearchKey::Seen => Node::Flag(Flags::SEEN, true),
            SearchKey::SentBefore(d) => Self::date(d, DateCmp::Before, false),
            SearchKey::SentOn(d) => Self::date(d, DateCmp::On, false),
            SearchKey::SentSince(d) => Self::date(d, DateCmp::Since, false),
            SearchKey::Since(d) => Self::date(d, DateCmp::Since, true),
            SearchKey::Smaller(n) => Node::Smaller(u64::from(*n)),
            SearchKey::Subject(s) => self.header("subject", s.as_ref()),
            SearchKey::Text(s) => Node::Text(self.needle(s.as_ref())),
            SearchKey::To(s) => self.header("to", s.as_ref()),
            SearchKey::Uid(s) => Node::Uid(s.clone()),
            SearchKey::Unanswered => Node::Flag(Flags::ANSWERED, false),
            SearchKey::Undeleted => Node::Flag(Flags::DELETED, false),
            SearchKey::Undraft => Node::Flag(Flags::DRAFT, false),
            SearchKey::Unflagged => Node::Flag(Flags::FLAGGED, false),
            SearchKey::Unkeyword(k) => Node::Keyword(k.as_ref().to_owned(), false),
            SearchKey::Unseen => Node::Flag(Flags::SEEN, false),
            // Extension keys (WITHIN, MODSEQ) when their imap-types features
            // are enabled elsewhere in the build: not supported.
            #[allow(unreachable_patterns)]
            _ => Node::Const(false),
        }
    }
}

impl Query {
    /// Compiles one key, its strings taken as UTF-8.
    pub fn new(key: &SearchKey<'_>) -> Query {
        let c = Compiler { decode: utf8_lossy };
        Query::build(c.key(key))
    }

    /// Compiles a SEARCH command's criteria (ANDed) with its `CHARSET`
    /// (`None`, UTF-8 and US-ASCII take strings as UTF-8; other charsets are
    /// converted with mail-parser's decoders).
    pub fn from_criteria(
        criteria: &[SearchKey<'_>],
        charset: Option<&Charset<'_>>,
    ) -> Result<Query, BadCharset> {
        let decode = match charset {
            None => utf8_lossy,
            Some(cs) => {
                let name: &str = cs.as_ref();
                if ["utf-8", "utf8", "us-ascii", "ascii"]
                    .iter()
                    .any(|n| n.eq_ignore_ascii_case(name))
                {
                    utf8_lossy
                } else {
                    charset_decoder(name.as_bytes()).ok_or_else(|| BadCharset(name.to_owned()))?
                }
            }
        };
        let c = Compiler { decode };
        Ok(Query::build(c.and(criteria)))
    }

    fn build(root: Node) -> Query {
        Query {
            needs: root.needs(),
            root,
            parser: MessageParser::new().with_mime_headers(),
        }
    }

    /// What message data the search reads: when both are false, a search
    /// needs no message files at all.
    pub fn needs(&self) -> Needs {
        self.needs
    }

    /// Whether `msg` matches.
    pub fn matches<C: Candidate + ?Sized>(&self, msg: &C, ctx: &Context) -> bool {
        let eval = Eval {
            msg,
            ctx,
            parser: &self.parser,
            raw_header: OnceCell::new(),
            raw_message: OnceCell::new(),
            fields: OnceCell::new(),
            header_text: OnceCell::new(),
            body_text: OnceCell::new(),
            sent_day: OnceCell::new(),
        };
        eval.node(&self.root)
    }
}

/// One decoded header field.
struct Field {
    /// ASCII-lowercased name.
    name: String,
    /// Decoded value, Unicode-lowercased.
    value: String,
}

/// Per-message evaluation state: message data decoded at most once.
struct Eval<'a, C: Candidate + ?Sized> {
    msg: &'a C,
    ctx: &'a Context,
    parser: &'a MessageParser,
    raw_header: OnceCell<Option<&'a [u8]>>,
    raw_message: OnceCell<Option<&'a [u8]>>,
    fields: OnceCell<Option<Vec<Field>>>,
    header_text: OnceCell<Option<String>>,
    body_text: OnceCell<Option<String>>,
    sent_day: OnceCell<Option<i64>>,
}

impl<'a, C: Candidate + ?Sized> Eval<'a, C> {
    fn node(&self, node: &Node) -> bool {
        let m = self.msg;
        match node {
            Node::Const(b) => *b,
            Node::And(v) => v.iter().all(|n| self.node(n)),
            Node::Or(a, b) => self.node(a) || self.node(b),
            Node::Not(a) => !self.node(a),
            Node::Seq(s) => sequence_contains(s, m.seq(), self.ctx.max_seq),
            Node::Uid(s) => sequence_contains(s, m.uid(), self.ctx.max_uid),
            Node::Flag(f, set) => m.flags().contains(*f) == *set,
            Node::Recent(r) => m.is_recent() == *r,
            Node::New => m.is_recent() && !m.flags().contains(Flags::SEEN),
            Node::Keyword(k, set) => m.keywords().iter().any(|x| x.eq_ignore_ascii_case(k)) == *set,
            Node::Larger(n) => m.size() > *n,
            Node::Smaller(n) => m.size() < *n,
            Node::Internal(cmp, day) => cmp.test(self.internal_day(), *day),
            Node::Sent(cmp, day) => match self.sent_day() {
                Some(d) => cmp.test(d, *day),
                None => false,
            },
            Node::Header(name, needle) => self.fields().is_some_and(|fields| {
                fields
                    .iter()
                    .any(|f| f.name == *name && f.value.contains(needle.as_str()))
            }),
            Node::Body(needle) => self
                .body_text()
                .is_some_and(|b| b.contains(needle.as_str())),
            Node::Text(needle) => {
                needle.is_empty()
                    || self
                        .header_text()
                        .is_some_and(|h| h.contains(needle.as_str()))
                    || self
                        .body_text()
                        .is_some_and(|b| b.contains(needle.as_str()))
            }
        }
    }

    fn internal_day(&self) -> i64 {
        self.msg
            .internal_date()
            .saturating_add(i64::from(self.ctx.utc_offset))
            .div_euclid(86_400)
    }

    fn raw_message(&self) -> Option<&'a [u8]> {
        let msg: &'a C = self.msg;
        *self.raw_message.get_or_init(|| msg.message())
    }

    fn raw_header(&self) -> Option<&'a [u8]> {
        let msg: &'a C = self.msg;
        *self
            .raw_header
            .get_or_init(|| msg.header().or_else(|| self.raw_message()))
    }

    fn fields(&self) -> Option<&[Field]> {
        self.fields
            .get_or_init(|| {
                let raw = self.raw_header()?;
                Some(
                    split_fields(raw)
                        .into_iter()
                        .map(|(name, value)| Field {
                            name: String::from_utf8_lossy(name).to_ascii_lowercase(),
                            value: decode_unstructured(value).to_lowercase(),
                        })
                        .collect(),
                )
            })
            .as_deref()
    }

    /// The header section as decoded, lowercased `name: value` lines.
    fn header_text(&self) -> Option<&str> {
        self.header_text
            .get_or_init(|| {
                let fields = self.fields()?;
                let mut s = String::new();
                for f in fields {
                    s.push_str(&f.name);
                    s.push_str(": ");
                    s.push_str(&f.value);
                    s.push('\n');
                }
                Some(s)
            })
            .as_deref()
    }

    fn body_text(&self) -> Option<&str> {
        self.body_text
            .get_or_init(|| {
                let raw = self.raw_message()?;
                let mut out = String::new();
                match self.parser.parse(raw) {
                    Some(parsed) => collect_text(&parsed, false, &mut out),
                    None => out.push_str(&String::from_utf8_lossy(body_of(raw))),
                }
                Some(out.to_lowercase())
            })
            .as_deref()
    }

    fn sent_day(&self) -> Option<i64> {
        *self.sent_day.get_or_init(|| {
            let raw = self.raw_header()?;
            let from_header = split_fields(raw)
                .into_iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(b"date"))
                .and_then(|(_, value)| {
                    let dt = mail_parser::DateTime::parse_rfc822(&String::from_utf8_lossy(value))?;
                    if !dt.is_valid() {
                        return None;
                    }
                    days_from_civil(i64::from(dt.year), u32::from(dt.month), u32::from(dt.day))
                });
            Some(from_header.unwrap_or_else(|| self.internal_day()))
        })
    }
}

/// Appends the searchable text of a parsed message: its text parts, and the
/// headers and text of attached messages. `with_header` adds the message's
/// own decoded header section first (for attached messages).
fn collect_text(msg: &mail_parser::Message<'_>, with_header: bool, out: &mut String) {
    if with_header {
        for (name, value) in split_fields(msg.raw_message()) {
            out.push_str(&String::from_utf8_lossy(name));
            out.push_str(": ");
            out.push_str(&decode_unstructured(value));
            out.push('\n');
        }
    }
    for part in &msg.parts {
        match &part.body {
            PartType::Text(t) => {
                out.push_str(t);
                out.push('\n');
            }
            PartType::Html(h) => {
                out.push_str(&html_to_text(h));
                out.push('\n');
            }
            PartType::Message(m) => collect_text(m, true, out),
            PartType::Binary(_) | PartType::InlineBinary(_) | PartType::Multipart(_) => {}
        }
    }
}

/// The bytes after the header section (everything if there's no blank line).
fn body_of(raw: &[u8]) -> &[u8] {
    let mut pos = 0;
    for line in raw.split_inclusive(|&b| b == b'\n') {
        pos += line.len();
        if line == b"\n" || line == b"\r\n" {
            return &raw[pos..];
        }
    }
    &[]
}

/// Splits a header section into `(name, raw value)` pairs, the value being
/// everything after the colon up to and including the line end of its last
/// (folded) line. Stops at the first empty line; lines without a colon (an
/// mbox `From ` line, garbage) are skipped, as are their continuations.
fn split_fields(raw: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut fields: Vec<(&[u8], &[u8])> = Vec::new();
    // The field being read: name, value start, value end so far.
    let mut current: Option<(&[u8], usize, usize)> = None;
    let mut pos = 0;
    for line in raw.split_inclusive(|&b| b == b'\n') {
        let start = pos;
        pos += line.len();
        if line == b"\n" || line == b"\r\n" {
            break;
        }
        if matches!(line.first(), Some(b' ' | b'\t')) {
            if let Some((_, _, end)) = current.as_mut() {
                *end = pos;
            }
            continue;
        }
        if let Some((name, vstart, vend)) = current.take() {
            fields.push((name, &raw[vstart..vend]));
        }
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            let name = trim_end(&line[..colon]);
            if !name.is_empty() && !name.iter().any(|b| b.is_ascii_whitespace()) {
                current = Some((name, start + colon + 1, pos));
            }
        }
    }
    if let Some((name, vstart, vend)) = current {
        fields.push((name, &raw[vstart..vend]));
    }
    fields
}

fn trim_end(b: &[u8]) -> &[u8] {
    let mut end = b.len();
    while end > 0 && matches!(b[end - 1], b' ' | b'\t') {
        end -= 1;
    }
    &b[..end]
}

/// Unfolds a raw header value and decodes RFC 2047 encoded words.
fn decode_unstructured(value: &[u8]) -> String {
    let text = |v: HeaderValue<'_>| match v {
        HeaderValue::Text(t) => t.into_owned(),
        _ => String::new(),
    };
    // mail-parser's parser wants the value's terminating line end.
    if value.last() == Some(&b'\n') {
        text(MessageStream::new(value).parse_unstructured())
    } else {
        let mut owned = Vec::with_capacity(value.len() + 1);
        owned.extend_from_slice(value);
        owned.push(b'\n');
        text(MessageStream::new(&owned).parse_unstructured())
    }
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian), or `None`
/// for an impossible month/day.
fn days_from_civil(y: i64, m: u32, d: u32) -> Option<i64> {
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let (m, d) = (i64::from(m), i64::from(d));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// Days since 1970-01-01 of an IMAP search date. imap-types wraps a
/// `chrono::NaiveDate`, whose `Display` is `YYYY-MM-DD`; going through it
/// keeps chrono out of our direct dependencies.
fn imap_date_day(d: &NaiveDate) -> Option<i64> {
    let s = d.as_ref().to_string();
    let mut it = s.rsplitn(3, '-');
    let day = it.next()?.parse().ok()?;
    let month = it.next()?.parse().ok()?;
    let year = it.next()?.parse().ok()?;
    days_from_civil(year, month, day)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::num::NonZeroU32;

    use imap_codec::decode::Decoder;
    use imap_codec::imap_types::command::CommandBody;
    use imap_codec::CommandCodec;

    use super::*;

    struct Msg {
        seq: u32,
        uid: u32,
        flags: Flags,
        keywords: Vec<String>,
        recent: bool,
        size: u64,
        date: i64,
        raw: Vec<u8>,
        /// Serve `header()` separately (else only `message()`).
        split_header: bool,
        header_calls: Cell<u32>,
        message_calls: Cell<u32>,
    }

    impl Candidate for Msg {
        fn seq(&self) -> u32 {
            self.seq
        }
        fn uid(&self) -> u32 {
            self.uid
        }
        fn flags(&self) -> Flags {
            self.flags
        }
        fn keywords(&self) -> &[String] {
            &self.keywords
        }
        fn is_recent(&self) -> bool {
            self.recent
        }
        fn size(&self) -> u64 {
            self.size
        }
        fn internal_date(&self) -> i64 {
            self.date
        }
        fn header(&self) -> Option<&[u8]> {
            self.header_calls.set(self.header_calls.get() + 1);
            if self.split_header {
                let n = self.raw.len() - body_of(&self.raw).len();
                Some(&self.raw[..n])
            } else {
                None
            }
        }
        fn message(&self) -> Option<&[u8]> {
            self.message_calls.set(self.message_calls.get() + 1);
            Some(&self.raw)
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn msg(
        seq: u32,
        uid: u32,
        flags: Flags,
        keywords: &[&str],
        recent: bool,
        size: u64,
        date: i64,
        raw: &str,
    ) -> Msg {
        Msg {
            seq,
            uid,
            flags,
            keywords: keywords.iter().map(|k| k.to_string()).collect(),
            recent,
            size,
            date,
            raw: raw.replace('\n', "\r\n").into_bytes(),
            split_header: false,
            header_calls: Cell::new(0),
            message_calls: Cell::new(0),
        }
    }

    fn fixtures() -> Vec<Msg> {
        vec![
            msg(
                1,
                10,
                Flags::SEEN,
                &[],
                false,
                1000,
                1_706_788_800, // 2024-02-01 12:00 UTC
                "From: Alice <alice@example.com>\n\
                 To: bob@example.org\n\
                 Subject: hello world\n\
                 Date: Thu, 1 Feb 2024 10:00:00 +0000\n\
                 \n\
                 Plain body text about Rust.\n",
            ),
            msg(
                2,
                11,
                Flags::empty(),
                &[],
                true,
                2000,
                1_706_743_800, // 2024-01-31 23:30 UTC
                "From: =?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <jm@example.de>\n\
                 To: bob@example.org\n\
                 Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?=\n\
                 Date: Sat, 3 Feb 2024 23:30:00 -0800\n\
                 MIME-Version: 1.0\n\
                 Content-Type: text/plain; charset=utf-8\n\
                 Content-Transfer-Encoding: base64\n\
                 \n\
                 RGFzIGlzdCBlaW4gR2VoZWltbmlzIGF1cyBkZXIgSGF1cHRzdHJhw59lLg0K\n",
            ),
            msg(
                3,
                15,
                Flags::FLAGGED | Flags::DELETED,
                &["$Important"],
                true,
                3000,
                1_707_552_000, // 2024-02-10 08:00 UTC
                "From: carol@example.net\n\
                 Cc: Alice <alice@example.com>\n\
                 X-Flag:\n\
                 Subject: Re: hello\n \
                 world\n\
                 MIME-Version: 1.0\n\
                 Content-Type: multipart/alternative; boundary=\"b1\"\n\
                 \n\
                 --b1\n\
                 Content-Type: text/plain; charset=utf-8\n\
                 Content-Transfer-Encoding: quoted-printable\n\
                 \n\
                 Meet at the caf=C3=A9 at noon.\n\
                 --b1\n\
                 Content-Type: text/html; charset=utf-8\n\
                 \n\
                 <html><body><p>Only in <b>HTML</b> version</p></body></html>\n\
                 --b1--\n",
            ),
            msg(
                4,
                20,
                Flags::ANSWERED | Flags::DRAFT | Flags::SEEN,
                &["work"],
                false,
                50_000,
                1_707_957_000, // 2024-02-15 00:30 UTC
                "From: dave@example.com\n\
                 To: team@example.com\n\
                 Bcc: secret@example.com\n\
                 Subject: Weekly report\n\
                 Date: Wed, 14 Feb 2024 16:00:00 -0900\n\
                 MIME-Version: 1.0\n\
                 Content-Type: multipart/mixed; boundary=\"outer\"\n\
                 \n\
                 --outer\n\
                 Content-Type: text/plain\n\
                 \n\
                 See attached.\n\
                 --outer\n\
                 Content-Type: message/rfc822\n\
                 \n\
                 From: eve@example.com\n\
                 Subject: Inner subject\n\
                 \n\
                 nested needle here\n\
                 --outer--\n",
            ),
        ]
    }

    fn ctx() -> Context {
        Context {
            max_seq: 4,
            max_uid: 20,
            utc_offset: 0,
        }
    }

    /// Parses `T <cmd>` with imap-codec and compiles its criteria.
    fn parse(cmd: &[u8]) -> (Query, bool) {
        let mut line = b"T ".to_vec();
        line.extend_from_slice(cmd);
        line.extend_from_slice(b"\r\n");
        let (rest, command) = CommandCodec::default()
            .decode(&line)
            .unwrap_or_else(|e| panic!("parse {:?}: {e:?}", String::from_utf8_lossy(cmd)));
        assert!(rest.is_empty());
        match command.body {
            CommandBody::Search {
                charset,
                criteria,
                uid,
            } => (
                Query::from_criteria(criteria.as_ref(), charset.as_ref()).expect("charset"),
                uid,
            ),
            other => panic!("not a SEARCH: {other:?}"),
        }
    }

    fn hits_ctx(criteria: &str, ctx: &Context) -> Vec<u32> {
        let (q, _) = parse(format!("SEARCH {criteria}").as_bytes());
        fixtures()
            .iter()
            .filter(|m| q.matches(*m, ctx))
            .map(|m| m.seq)
            .collect()
    }

    fn hits(criteria: &str) -> Vec<u32> {
        hits_ctx(criteria, &ctx())
    }

    fn set(s: &str) -> SequenceSet {
        s.parse().expect("sequence set")
    }

    #[test]
    fn sequence_sets() {
        let s = set("1,3:5,9");
        let inside: Vec<u32> = (1..=10).filter(|n| sequence_contains(&s, *n, 10)).collect();
        assert_eq!(inside, [1, 3, 4, 5, 9]);
        // Reversed range.
        let s = set("5:2");
        assert!((2..=5).all(|n| sequence_contains(&s, n, 10)));
        assert!(!sequence_contains(&s, 1, 10) && !sequence_contains(&s, 6, 10));
        // `*` is the largest number in use.
        let s = set("*");
        assert!(sequence_contains(&s, 7, 7));
        assert!(!sequence_contains(&s, 6, 7));
        let s = set("3:*");
        assert!(sequence_contains(&s, 3, 7) && sequence_contains(&s, 7, 7));
        assert!(!sequence_contains(&s, 2, 7) && !sequence_contains(&s, 8, 7));
        // `5:*` with max 3 is `3:5`.
        let s = set("5:*");
        assert!(sequence_contains(&s, 3, 3));
        assert!(!sequence_contains(&s, 2, 3));
        let s = set("*:5");
        assert!(sequence_contains(&s, 3, 3) && !sequence_contains(&s, 2, 3));
        // Empty mailbox: `*` is 0 and matches nothing that exists.
        assert!(!sequence_contains(&set("*"), 1, 0));
        // u32::MAX as a number.
        let s = SequenceSet::from(Sequence::Single(SeqOrUid::Value(
            NonZeroU32::new(u32::MAX).expect("nonzero"),
        )));
        assert!(sequence_contains(&s, u32::MAX, 3));
    }

    #[test]
    fn sequence_keys() {
        assert_eq!(hits("ALL"), [1, 2, 3, 4]);
        assert_eq!(hits("2:3"), [2, 3]);
        assert_eq!(hits("*"), [4]);
        assert_eq!(hits("3:*"), [3, 4]);
        assert_eq!(hits("4:1"), [1, 2, 3, 4]);
        assert_eq!(hits("UID 11,20"), [2, 4]);
        assert_eq!(hits("UID *"), [4]);
        assert_eq!(hits("UID 12:16"), [3]);
        // UID 30:* with max UID 20 is 20:30.
        assert_eq!(hits("UID 30:*"), [4]);
        assert_eq!(hits("1 UID 15"), Vec::<u32>::new());
        assert_eq!(hits("1:3 UID 15"), [3]);
    }

    #[test]
    fn flag_keys() {
        assert_eq!(hits("ANSWERED"), [4]);
        assert_eq!(hits("UNANSWERED"), [1, 2, 3]);
        assert_eq!(hits("DELETED"), [3]);
        assert_eq!(hits("UNDELETED"), [1, 2, 4]);
        assert_eq!(hits("DRAFT"), [4]);
        assert_eq!(hits("UNDRAFT"), [1, 2, 3]);
        assert_eq!(hits("FLAGGED"), [3]);
        assert_eq!(hits("UNFLAGGED"), [1, 2, 4]);
        assert_eq!(hits("SEEN"), [1, 4]);
        assert_eq!(hits("UNSEEN"), [2, 3]);
        assert_eq!(hits("RECENT"), [2, 3]);
        assert_eq!(hits("OLD"), [1, 4]);
        assert_eq!(hits("NEW"), [2, 3]);
        assert_eq!(hits("KEYWORD $Important"), [3]);
        assert_eq!(hits("KEYWORD $important"), [3]);
        assert_eq!(hits("KEYWORD Work"), [4]);
        assert_eq!(hits("UNKEYWORD work"), [1, 2, 3]);
        assert_eq!(hits("KEYWORD nope"), Vec::<u32>::new());
    }

    #[test]
    fn size_keys() {
        assert_eq!(hits("LARGER 2000"), [3, 4]);
        assert_eq!(hits("SMALLER 2000"), [1]);
        assert_eq!(hits("LARGER 0"), [1, 2, 3, 4]);
        assert_eq!(hits("SMALLER 0"), Vec::<u32>::new());
    }

    #[test]
    fn internal_date_keys() {
        assert_eq!(hits("BEFORE 1-Feb-2024"), [2]);
        assert_eq!(hits("ON 1-Feb-2024"), [1]);
        assert_eq!(hits("ON 31-Jan-2024"), [2]);
        assert_eq!(hits("SINCE 1-Feb-2024"), [1, 3, 4]);
        assert_eq!(hits("SINCE 15-Feb-2024"), [4]);
        assert_eq!(hits("BEFORE 1-Jan-2000"), Vec::<u32>::new());
        // In UTC+1, message 2 (2024-01-31 23:30 UTC) is on 1 Feb.
        let cet = Context {
            utc_offset: 3600,
            ..ctx()
        };
        assert_eq!(hits_ctx("ON 1-Feb-2024", &cet), [1, 2]);
        assert_eq!(hits_ctx("BEFORE 1-Feb-2024", &cet), Vec::<u32>::new());
        // In UTC-1, message 4 (2024-02-15 00:30 UTC) is on 14 Feb.
        let west = Context {
            utc_offset: -3600,
            ..ctx()
        };
        assert_eq!(hits_ctx("ON 14-Feb-2024", &west), [4]);
    }

    #[test]
    fn sent_date_keys_use_the_header_timezone() {
        // Message 2: "Sat, 3 Feb 2024 23:30:00 -0800" is 4 Feb in UTC but
        // 3 Feb as written. Message 4: "14 Feb 16:00 -0900" (15 Feb UTC).
        assert_eq!(hits("SENTON 3-Feb-2024"), [2]);
        assert_eq!(hits("SENTON 4-Feb-2024"), Vec::<u32>::new());
        assert_eq!(hits("SENTBEFORE 4-Feb-2024"), [1, 2]);
        assert_eq!(hits("SENTBEFORE 3-Feb-2024"), [1]);
        assert_eq!(hits("SENTON 14-Feb-2024"), [4]);
        // Message 3 has no Date: its internal date (10 Feb) stands in.
        assert_eq!(hits("SENTON 10-Feb-2024"), [3]);
        assert_eq!(hits("SENTSINCE 10-Feb-2024"), [3, 4]);
        assert_eq!(hits("SENTSINCE 1-Feb-2024"), [1, 2, 3, 4]);
    }

    #[test]
    fn header_string_keys() {
        assert_eq!(hits("FROM alice"), [1]);
        assert_eq!(hits("FROM ALICE@EXAMPLE.COM"), [1]);
        assert_eq!(hits("FROM example.com"), [1, 4]);
        // Encoded-word display name.
        assert_eq!(hits("FROM \"m\u{fc}ller\""), [2]);
        assert_eq!(hits("FROM \"J\u{dc}RGEN M\u{dc}LLER\""), [2]);
        assert_eq!(hits("TO bob"), [1, 2]);
        assert_eq!(hits("CC alice"), [3]);
        assert_eq!(hits("BCC secret"), [4]);
        assert_eq!(hits("SUBJECT hello"), [1, 3]);
        // Folded subject unfolds to "Re: hello world".
        assert_eq!(hits("SUBJECT \"hello world\""), [1, 3]);
        assert_eq!(hits("SUBJECT \"HELLO WORLD\""), [1, 3]);
        // Encoded-word subject (base64 UTF-8), case-insensitively.
        assert_eq!(hits("SUBJECT \"K\u{d6}LN\""), [2]);
        assert_eq!(hits("SUBJECT \"gr\u{fc}\u{df}e\""), [2]);
        // The raw encoded form is not what's searched.
        assert_eq!(hits("SUBJECT R3LDvMOfZSBh"), Vec::<u32>::new());
        assert_eq!(hits("HEADER Date 2024"), [1, 2, 4]);
        assert_eq!(hits("HEADER content-type alternative"), [3]);
        // Only the top-level header counts.
        assert_eq!(hits("SUBJECT inner"), Vec::<u32>::new());
    }

    #[test]
    fn header_empty_string_means_field_exists() {
        assert_eq!(hits("HEADER X-Flag \"\""), [3]);
        assert_eq!(hits("HEADER x-flag \"\""), [3]);
        assert_eq!(hits("HEADER Cc \"\""), [3]);
        assert_eq!(hits("HEADER Date \"\""), [1, 2, 4]);
        assert_eq!(hits("NOT HEADER Date \"\""), [3]);
        assert_eq!(hits("HEADER X-Missing \"\""), Vec::<u32>::new());
        assert_eq!(hits("BCC \"\""), [4]);
    }

    #[test]
    fn body_and_text_keys() {
        // Base64 body, charset decoded.
        assert_eq!(hits("BODY geheimnis"), [2]);
        assert_eq!(hits("BODY \"HAUPTSTRA\u{df}E\""), [2]);
        assert_eq!(hits("BODY RGFzIGlzdCBl"), Vec::<u32>::new());
        // Quoted-printable body.
        assert_eq!(hits("BODY \"caf\u{e9} at noon\""), [3]);
        // HTML part, text only.
        assert_eq!(hits("BODY \"html version\""), [3]);
        // Plain body; case-insensitive.
        assert_eq!(hits("BODY \"about RUST\""), [1]);
        // BODY does not search the header; TEXT does.
        assert_eq!(hits("BODY hello"), Vec::<u32>::new());
        assert_eq!(hits("TEXT hello"), [1, 3]);
        assert_eq!(hits("TEXT rust"), [1]);
        assert_eq!(hits("TEXT \"subject: weekly\""), [4]);
        // An attached message's header and body are part of the body.
        assert_eq!(hits("BODY \"nested needle\""), [4]);
        assert_eq!(hits("BODY \"inner subject\""), [4]);
        assert_eq!(hits("BODY \"\""), [1, 2, 3, 4]);
        assert_eq!(hits("TEXT \"\""), [1, 2, 3, 4]);
    }

    #[test]
    fn boolean_structure() {
        assert_eq!(hits("NOT SEEN"), [2, 3]);
        assert_eq!(hits("NOT NOT SEEN"), [1, 4]);
        assert_eq!(hits("OR SEEN FLAGGED"), [1, 3, 4]);
        assert_eq!(hits("OR DRAFT OR DELETED ANSWERED"), [3, 4]);
        assert_eq!(hits("SEEN LARGER 1000"), [4]);
        assert_eq!(hits("(SEEN LARGER 1000)"), [4]);
        assert_eq!(hits("NOT (SEEN LARGER 1000)"), [1, 2, 3]);
        assert_eq!(
            hits("OR (SEEN FROM alice) (UNSEEN BODY \"caf\u{e9}\")"),
            [1, 3]
        );
        assert_eq!(hits("NOT OR SUBJECT hello BODY geheimnis"), [4]);
        assert_eq!(
            hits("(OR NOT (RECENT) (NOT FROM example.com)) NOT UID 10"),
            [2, 3, 4]
        );
        assert_eq!(hits("ALL NOT ALL"), Vec::<u32>::new());
    }

    #[test]
    fn client_commands_round_trip() {
        let (q, uid) =
            parse(b"SEARCH CHARSET UTF-8 OR FROM alice SUBJECT \"hello world\" NOT SEEN 1:*");
        assert!(!uid);
        let got: Vec<u32> = fixtures()
            .iter()
            .filter(|m| q.matches(*m, &ctx()))
            .map(|m| m.seq)
            .collect();
        assert_eq!(got, [3]);

        let (q, uid) = parse(b"UID SEARCH UNDELETED SINCE 1-Feb-2024");
        assert!(uid);
        let got: Vec<u32> = fixtures()
            .iter()
            .filter(|m| q.matches(*m, &ctx()))
            .map(|m| m.uid)
            .collect();
        assert_eq!(got, [10, 20]);

        // A literal in another charset.
        let (q, _) = parse(b"SEARCH CHARSET ISO-8859-1 SUBJECT {4}\r\nK\xf6ln");
        let got: Vec<u32> = fixtures()
            .iter()
            .filter(|m| q.matches(*m, &ctx()))
            .map(|m| m.seq)
            .collect();
        assert_eq!(got, [2]);
    }

    #[test]
    fn unknown_charset_is_rejected() {
        let line = b"T SEARCH CHARSET X-NOPE SUBJECT x\r\n";
        let (_, command) = CommandCodec::default().decode(line).expect("parses");
        let CommandBody::Search {
            charset, criteria, ..
        } = command.body
        else {
            panic!("not a SEARCH")
        };
        let err = Query::from_criteria(criteria.as_ref(), charset.as_ref()).unwrap_err();
        assert_eq!(err, BadCharset("X-NOPE".into()));
    }

    #[test]
    fn single_key_api() {
        let (q, _) = parse(b"SEARCH SUBJECT hello");
        assert_eq!(
            q.needs(),
            Needs {
                header: true,
                body: false
            }
        );
        let line = b"T SEARCH OR SEEN BODY x\r\n";
        let (_, command) = CommandCodec::default().decode(line).expect("parses");
        let CommandBody::Search { criteria, .. } = command.body else {
            panic!("not a SEARCH")
        };
        let key = &criteria.as_ref()[0];
        assert_eq!(
            needs(key),
            Needs {
                header: false,
                body: true
            }
        );
        let f = fixtures();
        assert!(matches(key, &f[0], &ctx()));
        assert!(!matches(key, &f[1], &ctx()));
    }

    #[test]
    fn needs_and_lazy_loading() {
        let (q, _) = parse(b"SEARCH UNSEEN LARGER 10 UID 1:* OR NEW DRAFT");
        assert_eq!(q.needs(), Needs::default());
        let (q, _) = parse(b"SEARCH SENTON 1-Feb-2024");
        assert_eq!(
            q.needs(),
            Needs {
                header: true,
                body: false
            }
        );
        let (q, _) = parse(b"SEARCH NOT TEXT x");
        assert_eq!(
            q.needs(),
            Needs {
                header: true,
                body: true
            }
        );

        // Flag-only: no message data read.
        let f = fixtures();
        let (q, _) = parse(b"SEARCH SEEN NOT DELETED");
        for m in &f {
            q.matches(m, &ctx());
            assert_eq!((m.header_calls.get(), m.message_calls.get()), (0, 0));
        }
        // A header key with `header()` available doesn't load the message;
        // several header keys load it once.
        let mut m = fixtures().remove(0);
        m.split_header = true;
        let (q, _) = parse(b"SEARCH FROM alice SUBJECT hello TO bob SENTON 1-Feb-2024");
        assert!(q.matches(&m, &ctx()));
        assert_eq!(m.message_calls.get(), 0);
        assert_eq!(m.header_calls.get(), 1);
        // Without `header()`, header and body keys share one `message()`.
        let m = fixtures().remove(0);
        let (q, _) = parse(b"SEARCH TEXT rust SUBJECT hello SENTON 1-Feb-2024");
        assert!(q.matches(&m, &ctx()));
        assert_eq!((m.header_calls.get(), m.message_calls.get()), (1, 1));
        // Cheap keys first: a failing flag key short-circuits the body.
        let m = fixtures().remove(1);
        let (q, _) = parse(b"SEARCH BODY geheimnis SEEN");
        assert!(!q.matches(&m, &ctx()));
        assert_eq!(m.message_calls.get(), 0);
    }

    #[test]
    fn split_fields_handles_odd_input() {
        let raw = b"From alice Mon Jan 1 12:00:00 2024\nSubject : hi\r\n there\nX-A: 1\nbad line\n\tcont\nX-B: 2";
        let f: Vec<(String, String)> = split_fields(raw)
            .into_iter()
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into_owned(),
                    decode_unstructured(v),
                )
            })
            .collect();
        assert_eq!(
            f,
            [
                ("Subject".into(), "hi there".into()),
                ("X-A".into(), "1".into()),
                ("X-B".into(), "2".into()),
            ]
        );
        assert!(split_fields(b"").is_empty());
        assert!(split_fields(b"\r\nSubject: x\r\n").is_empty());
    }

    #[test]
    fn days() {
        assert_eq!(days_from_civil(1970, 1, 1), Some(0));
        assert_eq!(days_from_civil(2024, 2, 29), Some(19_782));
        assert_eq!(days_from_civil(1969, 12, 31), Some(-1));
        assert_eq!(days_from_civil(2024, 13, 1), None);
    }

    #[test]
    fn no_panics_on_garbage() {
        let keys = "OR OR BODY a TEXT \"\u{e9}\" SUBJECT b OR HEADER x \"\" SENTON 1-Jan-2024 \
                    SENTBEFORE 1-Jan-2000";
        let (q, _) = parse(format!("SEARCH {keys}").as_bytes());
        let (nq, _) = parse(format!("SEARCH NOT ({keys})").as_bytes());
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let alphabet: &[u8] = b"\r\n\t :;=?_\"<>@-BQbq=3DContent-Type: multipart/mixed; boundary=x\n--x\nbase64\xff\xc3\x28Date";
        for len in 0..300 {
            let raw: Vec<u8> = (0..len)
                .map(|_| {
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    alphabet[(state >> 33) as usize % alphabet.len()]
                })
                .collect();
            let mut m = msg(1, 1, Flags::empty(), &[], false, 0, i64::MIN / 2, "");
            m.raw = raw;
            // Exactly one of a query and its negation matches.
            assert_ne!(q.matches(&m, &ctx()), nq.matches(&m, &ctx()));
        }
    }
}
