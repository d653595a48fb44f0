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
    /// The message's MODSEQ (RFC 7162); 0 where none is kept.
    fn modseq(&self) -> u64 {
        0
    }
    /// The raw header section (may include the body; parsing stops at the
    /// first empty line). When `None`, [`Candidate::message`] is used.
    fn header(&self) -> Option<&[u8]> {
        None
    }
    /// The whole raw message; needed for BODY/TEXT.
    fn message(&self) -> Option<&[u8]>;
    /// The message's [`HeaderKeys`], when the server keeps them: header
    /// keys on [`KEYED_FIELDS`] and SENT* then read no message data.
    fn keys(&self) -> Option<&HeaderKeys> {
        None
    }
}

/// The header fields whose search values [`HeaderKeys`] holds: the
/// envelope fields RFC 3501 §6.4.4 names search keys for.
pub const KEYED_FIELDS: [&str; 5] = ["subject", "from", "to", "cc", "bcc"];

/// What a header search (SUBJECT, FROM, TO, CC, BCC, SENT*) and SORT
/// (DATE) compare of one message, computed from its header section by the
/// same code [`Query::matches`] uses on the raw header, so that a server can
/// keep them per message (a message never changes) and answer repeated
/// searches of a large mailbox without reading its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderKeys {
    /// Each keyed field's occurrences in [`KEYED_FIELDS`] order, decoded
    /// and lowercased as [`Node::Header`] compares them, each followed by
    /// a NUL (so a field is present when its range isn't empty).
    text: Box<str>,
    /// Where each field's range in `text` ends.
    ends: [u32; KEYED_FIELDS.len()],
    /// SENT*'s day: the first `Date:` field's date as written.
    sent_day: Option<i64>,
    /// SORT (DATE)'s sent date (RFC 5256 §2.2): the envelope's (last)
    /// `Date:` in UTC, Unix seconds.
    sort_date: Option<i64>,
}

impl HeaderKeys {
    /// The keys of a message whose header section (CRLF or LF, the body may
    /// follow) is `raw`.
    pub fn of(raw: &[u8]) -> HeaderKeys {
        let fields = split_fields(raw);
        let mut text = String::new();
        let mut ends = [0u32; KEYED_FIELDS.len()];
        for (i, want) in KEYED_FIELDS.iter().enumerate() {
            for (name, value) in &fields {
                if name.eq_ignore_ascii_case(want.as_bytes()) {
                    text.push_str(&field_text(want, value));
                    text.push('\0');
                }
            }
            ends[i] = text.len() as u32;
        }
        // SORT's date is the envelope's (the last Date:, unfolded), as the
        // structure cache has it.
        let crlf = crate::imap::message::to_crlf(raw);
        let date =
            crate::imap::message::header_nstring(&crate::imap::message::parse(&crlf), "Date");
        HeaderKeys {
            text: text.into_boxed_str(),
            ends,
            sent_day: first_date_day(&fields),
            sort_date: crate::imap::sort::sent_date(date.0.as_ref().map(|d| d.as_ref())),
        }
    }

    /// The values of keyed field `name` (lowercase), NUL-terminated;
    /// `None` if `name` isn't keyed.
    fn field(&self, name: &str) -> Option<&str> {
        let i = KEYED_FIELDS.iter().position(|f| *f == name)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        self.text.get(start..self.ends[i] as usize)
    }

    /// SORT (DATE)'s sent date, `None` when the header has no valid one
    /// (RFC 5256 §2.2: the caller uses INTERNALDATE).
    pub fn sort_date(&self) -> Option<i64> {
        self.sort_date
    }

    /// The keys as one record for a file: a line `<sent day> <sort date>
    /// <ends…> <text length>` (`-` for a missing date), then the text.
    pub fn encode(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        let opt = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
        let _ = write!(out, "{} {}", opt(self.sent_day), opt(self.sort_date));
        for e in self.ends {
            let _ = write!(out, " {e}");
        }
        let _ = writeln!(out, " {}", self.text.len());
        out.extend_from_slice(self.text.as_bytes());
    }

    /// Reads one record [`HeaderKeys::encode`] wrote at the start of
    /// `data`: the keys and the bytes used, `None` if it is damaged.
    pub fn decode(data: &[u8]) -> Option<(HeaderKeys, usize)> {
        let nl = memchr::memchr(b'\n', data)?;
        let head = std::str::from_utf8(&data[..nl]).ok()?;
        let mut words = head.split(' ');
        let mut opt = || -> Option<Option<i64>> {
            match words.next()? {
                "-" => Some(None),
                w => w.parse().ok().map(Some),
            }
        };
        let (sent_day, sort_date) = (opt()?, opt()?);
        let mut ends = [0u32; KEYED_FIELDS.len()];
        for e in &mut ends {
            *e = words.next()?.parse().ok()?;
        }
        let len: usize = words.next()?.parse().ok()?;
        if words.next().is_some() {
            return None;
        }
        let end = (nl + 1).checked_add(len)?;
        let text = std::str::from_utf8(data.get(nl + 1..end)?).ok()?;
        // The ranges must lie in the text, in order, on char boundaries.
        let mut at = 0;
        for &e in &ends {
            if (e as usize) < at || !text.is_char_boundary(e as usize) {
                return None;
            }
            at = e as usize;
        }
        if at != text.len() {
            return None;
        }
        let keys = HeaderKeys {
            text: text.into(),
            ends,
            sent_day,
            sort_date,
        };
        Some((keys, end))
    }
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
    /// The internal date of every candidate (`Candidate::internal_date`),
    /// which the store reads from the files only when asked.
    pub arrival: bool,
}

impl Needs {
    fn or(self, other: Needs) -> Needs {
        Needs {
            header: self.header || other.header,
            body: self.body || other.body,
            arrival: self.arrival || other.arrival,
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
    /// These UIDs (ascending): a [`Node::Seq`] pinned by
    /// [`Query::pin_sequence_numbers`].
    UidIn(Vec<u32>),
    /// Flag set (true) or not set (false).
    Flag(Flags, bool),
    Recent(bool),
    New,
    Keyword(String, bool),
    Larger(u64),
    Smaller(u64),
    /// RFC 7162 §3.1.5: MODSEQ at least this.
    ModSeq(u64),
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
            // (a message without a Date: header is dated by its arrival:
            // asked of the few that lack one, not read for all first)
            Node::Sent(..) | Node::Header(..) => Needs {
                header: true,
                ..Needs::default()
            },
            Node::Internal(..) => Needs {
                arrival: true,
                ..Needs::default()
            },
            Node::Body(_) => Needs {
                body: true,
                ..Needs::default()
            },
            Node::Text(_) => Needs {
                header: true,
                body: true,
                ..Needs::default()
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
            // RFC 7162 §3.1.5: the message's modseq at least n. Per-flag
            // modseqs aren't kept, so the entry-name form (`MODSEQ
            // "/flags/\\seen" all n`) compares the message's modseq, which
            // is never lower than that of any of its flags (§3.1.5 allows it).
            SearchKey::ModSequence { modseq, .. } => Node::ModSeq(*modseq),
            // Extension keys (WITHIN) when their imap-types features are
            // enabled elsewhere in the build: not supported.
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

    /// RFC 5267 §4.3: message sequence numbers in a search program are
    /// evaluated when the command is received, so a search kept for
    /// UPDATE holds the messages they named then (`view`: the UIDs in
    /// sequence-number order) by UID; later renumbering changes nothing.
    pub fn pin_sequence_numbers(&mut self, view: &[u32]) {
        fn pin(n: &mut Node, view: &[u32]) {
            match n {
                Node::And(v) => v.iter_mut().for_each(|c| pin(c, view)),
                Node::Or(a, b) => {
                    pin(a, view);
                    pin(b, view);
                }
                Node::Not(a) => pin(a, view),
                Node::Seq(s) => {
                    let max = view.len() as u32;
                    let mut uids: Vec<u32> = (1..=max)
                        .filter(|&i| sequence_contains(s, i, max))
                        .map(|i| view[i as usize - 1])
                        .collect();
                    uids.sort_unstable();
                    *n = Node::UidIn(uids);
                }
                _ => {}
            }
        }
        pin(&mut self.root, view);
    }

    /// What message data the search reads: when both are false, a search
    /// needs no message files at all.
    pub fn needs(&self) -> Needs {
        self.needs
    }

    /// Whether [`HeaderKeys`] hold all the message data this search reads
    /// (its header keys are all on [`KEYED_FIELDS`], it reads no body).
    pub fn keyed(&self) -> bool {
        fn keyed(n: &Node) -> bool {
            match n {
                Node::And(v) => v.iter().all(keyed),
                Node::Or(a, b) => keyed(a) && keyed(b),
                Node::Not(a) => keyed(a),
                Node::Header(name, _) => KEYED_FIELDS.contains(&name.as_str()),
                Node::Body(_) | Node::Text(_) => false,
                _ => true,
            }
        }
        keyed(&self.root)
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
            Node::UidIn(v) => v.binary_search(&m.uid()).is_ok(),
            Node::Flag(f, set) => m.flags().contains(*f) == *set,
            Node::Recent(r) => m.is_recent() == *r,
            Node::New => m.is_recent() && !m.flags().contains(Flags::SEEN),
            Node::Keyword(k, set) => m.keywords().iter().any(|x| x.eq_ignore_ascii_case(k)) == *set,
            Node::Larger(n) => m.size() > *n,
            Node::ModSeq(n) => m.modseq() >= *n,
            Node::Smaller(n) => m.size() < *n,
            Node::Internal(cmp, day) => cmp.test(self.internal_day(), *day),
            Node::Sent(cmp, day) => match self.sent_day() {
                Some(d) => cmp.test(d, *day),
                None => false,
            },
            Node::Header(name, needle) => match m.keys().and_then(|k| k.field(name)) {
                Some(values) => values
                    .split_terminator('\0')
                    .any(|v| v.contains(needle.as_str())),
                None => self.fields().is_some_and(|fields| {
                    fields
                        .iter()
                        .any(|f| f.name == *name && f.value.contains(needle.as_str()))
                }),
            },
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
                        .map(|(name, value)| {
                            let name = String::from_utf8_lossy(name).to_ascii_lowercase();
                            let value = field_text(&name, value);
                            Field { name, value }
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
            let from_header = match self.msg.keys() {
                Some(k) => k.sent_day,
                None => first_date_day(&split_fields(self.raw_header()?)),
            };
            Some(from_header.unwrap_or_else(|| self.internal_day()))
        })
    }
}

/// A header field's value as header keys compare it: unfolded, RFC 2047
/// words decoded, address fields also as a client shows their addresses;
/// lowercased. `name` is lowercase.
fn field_text(name: &str, value: &[u8]) -> String {
    let mut text = decode_unstructured(value);
    if ADDRESS_FIELDS.contains(&name) {
        // (only when it says something else: `Name <a@b>` written plainly
        // reads the same both ways)
        let shown = address_text(value);
        if shown != text.trim() {
            text.push('\n');
            text.push_str(&shown);
        }
    }
    text.to_lowercase()
}

/// The date part, as written, of the first `Date:` field (SENT*), `None`
/// when there is none or it doesn't parse.
fn first_date_day(fields: &[(&[u8], &[u8])]) -> Option<i64> {
    let (_, value) = fields
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(b"date"))?;
    let dt = mail_parser::DateTime::parse_rfc822(&String::from_utf8_lossy(value))?;
    if !dt.is_valid() {
        return None;
    }
    days_from_civil(i64::from(dt.year), u32::from(dt.month), u32::from(dt.day))
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
/// Headers holding addresses: SEARCH FROM/TO/CC/BCC (and HEADER on these)
/// also match the addresses as a client shows them.
const ADDRESS_FIELDS: [&str; 6] = ["from", "to", "cc", "bcc", "sender", "reply-to"];

/// The addresses of an address header as a client displays them,
/// `Name <local@domain>, …` (group members included): comments, folding and
/// quoting gone, encoded words decoded, as Dovecot matches them. So
/// `From: user-from@(comment)domain.org` or an address folded across lines
/// is found by `SEARCH FROM user-from@domain.org`.
fn address_text(value: &[u8]) -> String {
    let (mut cleaned, comments) = strip_cfws(&String::from_utf8_lossy(value));
    cleaned.push('\n');
    let shown = |a: &mail_parser::Addr<'_>, comment: Option<&String>| {
        // Dovecot's rule: with no display name, a comment serves as one.
        let name = a
            .name
            .as_deref()
            .or(comment.map(String::as_str))
            .unwrap_or("");
        let addr = a.address.as_deref().unwrap_or("");
        match (name.is_empty(), addr.is_empty()) {
            (true, _) => addr.to_string(),
            (false, true) => name.to_string(),
            (false, false) => format!("{name} <{addr}>"),
        }
    };
    let mut out = Vec::new();
    match MessageStream::new(cleaned.as_bytes()).parse_address() {
        HeaderValue::Address(mail_parser::Address::List(list)) => {
            let comment = comments.last().filter(|_| list.len() == 1);
            out.extend(list.iter().map(|a| shown(a, comment)));
        }
        HeaderValue::Address(mail_parser::Address::Group(groups)) => {
            for g in &groups {
                if let Some(n) = &g.name {
                    out.push(format!("{n}:"));
                }
                out.extend(g.addresses.iter().map(|a| shown(a, None)));
            }
        }
        _ => {}
    }
    out.join(", ")
}

/// Removes comments (returned apart) and the blanks around `@` and `.`
/// outside quoted strings: RFC 5322 §3.2.2 allows CFWS between the tokens
/// of an address (`user @ (note) example.org`), which no client shows.
fn strip_cfws(value: &str) -> (String, Vec<String>) {
    let mut out = String::with_capacity(value.len());
    let mut comments = Vec::new();
    let (mut depth, mut quoted, mut escaped, mut glue) = (0usize, false, false, false);
    let mut comment = String::new();
    for c in value.chars() {
        if escaped {
            escaped = false;
            if depth > 0 {
                comment.push(c);
            } else {
                out.push(c);
            }
            continue;
        }
        match c {
            '\\' if quoted || depth > 0 => {
                escaped = true;
                if quoted {
                    out.push(c);
                }
            }
            '"' if depth == 0 => {
                quoted = !quoted;
                out.push(c);
            }
            '(' if !quoted => {
                if depth > 0 {
                    comment.push(c);
                }
                depth += 1;
            }
            ')' if !quoted && depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    let text = comment.trim().to_string();
                    if !text.is_empty() {
                        comments.push(text);
                    }
                    comment.clear();
                } else {
                    comment.push(c);
                }
            }
            _ if depth > 0 => comment.push(c),
            '@' | '.' if !quoted => {
                let kept = out.trim_end().len();
                out.truncate(kept);
                out.push(c);
                glue = true;
            }
            c if c.is_whitespace() && !quoted && glue => {}
            c => {
                glue = false;
                out.push(c);
            }
        }
    }
    (out, comments)
}

pub(crate) fn decode_unstructured(value: &[u8]) -> String {
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
mod tests;
