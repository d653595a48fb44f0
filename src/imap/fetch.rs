//! FETCH data items (RFC 3501 §6.4.5 and §7.4.2, RFC 9051 §6.4.5 and
//! §7.5.2): ENVELOPE, BODY and BODYSTRUCTURE, `BODY[section]<partial>`, and
//! `BINARY[section]` (RFC 3516).
//!
//! Everything works on a CRLF copy of the message ([`to_crlf`]): IMAP sizes,
//! offsets and contents are those of the CRLF form (RFC 3501 §2.3.4 and
//! §6.4.5). The MIME tree is parsed here rather than with mail-parser,
//! because FETCH needs exact byte ranges and raw (undecoded) header values.
//! The parsing rules are Dovecot's (`message-parser`, `rfc822-parser`,
//! `message-address`) and so is the output (`imap-bodystructure`,
//! `imap-envelope`, `imap-quote`), so a client moving from Dovecot sees the
//! same structures, sizes and strings. One difference comes from imap-codec:
//! it always writes the types of text and message/rfc822 parts as `"TEXT"`
//! and `"MESSAGE" "RFC822"`, where Dovecot keeps the case of the message
//! (these strings are case-insensitive, RFC 3501 §4.3 and §7.4.2).
//!
//! Another difference, for unusable input: a message whose header section
//! holds no `name: value` field at all (plain text, garbage) is taken as
//! having no header, so all of it is the body (Dovecot would call it all
//! header).

use std::borrow::Cow;
use std::num::NonZeroU32;

use imap_codec::imap_types::body::{
    BasicFields, Body, BodyStructure, Disposition, Language, Location, MultiPartExtensionData,
    SinglePartExtensionData, SpecificFields,
};
use imap_codec::imap_types::core::{AString, IString, Literal, NString, Quoted, Vec1};
use imap_codec::imap_types::envelope::{Address, Envelope};
use imap_codec::imap_types::fetch::{Part, Section};

/// Deepest nesting of multipart and message/rfc822 parts that is parsed
/// (Dovecot's `max_nested_mime_parts`); deeper ones are left as leaves.
const MAX_DEPTH: usize = 100;
/// Most MIME parts parsed (Dovecot's `max_total_mime_parts`); after that,
/// multiparts take no more parts and the rest is their epilogue.
const MAX_PARTS: usize = 10_000;
/// Boundaries are cut to this length (Dovecot: RFC 2046's 70 plus slack).
const BOUNDARY_MAX: usize = 80;
/// How much of a last line without LF is compared with the boundaries.
const BOUNDARY_LINE_MAX: usize = BOUNDARY_MAX + 4;

/// Converts bare LF line endings to CRLF; CRLF (and lone CR) stay as they
/// are. Borrows when there is nothing to convert.
pub fn to_crlf(raw: &[u8]) -> Cow<'_, [u8]> {
    // memchr: this runs over every byte FETCH BODY[] sends.
    let bare = |i: usize| i == 0 || raw[i - 1] != b'\r';
    let Some(first) = memchr::memchr_iter(b'\n', raw).find(|&i| bare(i)) else {
        return Cow::Borrowed(raw);
    };
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 32 + 16);
    out.extend_from_slice(&raw[..first]);
    let mut start = first;
    for i in memchr::memchr_iter(b'\n', &raw[first..]).map(|i| i + first) {
        if bare(i) {
            out.extend_from_slice(&raw[start..i]);
            out.extend_from_slice(b"\r");
            start = i;
        }
    }
    out.extend_from_slice(&raw[start..]);
    Cow::Owned(out)
}

/// A message parsed for FETCH: the CRLF bytes and their MIME tree.
#[derive(Debug)]
pub struct Parsed<'a> {
    data: &'a [u8],
    root: Node,
}

impl<'a> Parsed<'a> {
    /// The whole CRLF message (`BODY[]`, `RFC822`); its length is RFC822.SIZE.
    pub fn raw(&self) -> &'a [u8] {
        self.data
    }
}

/// Parses a CRLF message (see [`to_crlf`]). Never fails: any byte string is
/// some message, at worst a header-less text/plain one.
pub fn parse(crlf: &[u8]) -> Parsed<'_> {
    let mut parser = Parser {
        data: crlf,
        bounds: Vec::new(),
        next_id: 0,
        parts: 0,
    };
    let (mut root, _) = parser.entity(0, Parent::Top, 0);
    if !root.fields.is_empty() && !root.fields.iter().any(|f| f.is_valid(crlf)) {
        root = Node::empty(0);
        root.end = crlf.len();
    }
    Parsed { data: crlf, root }
}

/// ENVELOPE (RFC 3501 §7.4.2): the raw header values, NIL for missing ones;
/// Sender and Reply-To default to From; groups as a start entry with a NIL
/// host and an all-NIL end entry. When a field is repeated the last one
/// counts (as in Dovecot).
pub fn envelope(parsed: &Parsed<'_>) -> Envelope<'static> {
    envelope_of(parsed.data, &parsed.root)
}

/// BODY (`extended == false`) or BODYSTRUCTURE (`true`, with the extension
/// data: MD5, disposition, language and location of single parts;
/// parameters, disposition, language and location of multiparts), RFC 3501
/// §7.4.2. Sizes are octets of the (CRLF) encoded body; text and
/// message/rfc822 parts have line counts.
pub fn body_structure(parsed: &Parsed<'_>, extended: bool) -> BodyStructure<'static> {
    structure(parsed.data, &parsed.root, extended)
}

/// The contents of `BODY[section]` (RFC 3501 §6.4.5): `None` for the whole
/// message; HEADER and HEADER.FIELDS[.NOT] include the blank line ending the
/// header when it has one; part numbers give a part's body (part 1 of a
/// non-multipart message is its body); MIME gives a part's own header;
/// HEADER/TEXT after a part number need a message/rfc822 part.
///
/// Returns `None` for a part that does not exist; send an empty string then
/// (as Dovecot does). The bytes are as stored: literals can't carry NUL
/// (RFC 3501 §4.3), so the sender has to map NULs (Dovecot: to 0x80).
pub fn section<'p>(parsed: &'p Parsed<'_>, section: Option<&Section<'_>>) -> Option<Cow<'p, [u8]>> {
    let data = parsed.data;
    let root = &parsed.root;
    let Some(section) = section else {
        return Some(Cow::Borrowed(data));
    };
    // HEADER, TEXT and HEADER.FIELDS are about the message, or about the
    // message inside a message/rfc822 part.
    let message = |part: &Option<Part>| match part {
        None => Some(root),
        Some(part) => find(root, part.0.as_ref())
            .filter(|n| n.ty == Ty::Rfc822)
            .and_then(|n| n.children.first()),
    };
    match section {
        Section::Part(part) => {
            find(root, part.0.as_ref()).map(|n| Cow::Borrowed(n.body_bytes(data)))
        }
        Section::Mime(part) => {
            find(root, part.0.as_ref()).map(|n| Cow::Borrowed(n.header_bytes(data)))
        }
        Section::Header(part) => message(part).map(|n| Cow::Borrowed(n.header_bytes(data))),
        Section::Text(part) => message(part).map(|n| Cow::Borrowed(n.body_bytes(data))),
        Section::HeaderFields(part, names) => {
            message(part).map(|n| Cow::Owned(header_subset(data, n, names.as_ref(), true)))
        }
        Section::HeaderFieldsNot(part, names) => {
            message(part).map(|n| Cow::Owned(header_subset(data, n, names.as_ref(), false)))
        }
    }
}

/// `<origin.length>` of a section (RFC 3501 §6.4.5): empty when `origin` is
/// past the end, cut short at the end.
pub fn partial(data: &[u8], origin: u32, length: u32) -> &[u8] {
    let start = usize::try_from(origin)
        .unwrap_or(usize::MAX)
        .min(data.len());
    let len = usize::try_from(length).unwrap_or(usize::MAX);
    let end = start.saturating_add(len).min(data.len());
    &data[start..end]
}

/// Why `BINARY[section]` can't be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryError {
    /// There is no such part (Dovecot sends an empty string).
    NoSuchPart,
    /// The part's Content-Transfer-Encoding is unknown: answer
    /// `NO [UNKNOWN-CTE]` (RFC 3516 §4.1, RFC 9051 §7.1).
    UnknownCte,
}

/// The contents of `BINARY[part]` (RFC 3516 §4.2, RFC 9051 §6.4.5): a leaf
/// part's body with its base64 or quoted-printable encoding undone. An empty
/// `part` (the whole message) and multipart or message/rfc822 parts are
/// returned as they are. BINARY.SIZE is the length of the result.
pub fn binary_section<'p>(
    parsed: &'p Parsed<'_>,
    part: &[NonZeroU32],
) -> Result<Cow<'p, [u8]>, BinaryError> {
    if part.is_empty() {
        return Ok(Cow::Borrowed(parsed.data));
    }
    let node = find(&parsed.root, part).ok_or(BinaryError::NoSuchPart)?;
    let body = node.body_bytes(parsed.data);
    if matches!(node.ty, Ty::Multipart | Ty::Rfc822) {
        return Ok(Cow::Borrowed(body));
    }
    let cte = node.mime.cte.as_deref().unwrap_or(b"7bit");
    if [&b"7bit"[..], b"8bit", b"binary"]
        .iter()
        .any(|e| cte.eq_ignore_ascii_case(e))
    {
        Ok(Cow::Borrowed(body))
    } else if cte.eq_ignore_ascii_case(b"base64") {
        Ok(Cow::Owned(decode_base64(body)))
    } else if cte.eq_ignore_ascii_case(b"quoted-printable") {
        Ok(Cow::Owned(decode_qp(body)))
    } else {
        Err(BinaryError::UnknownCte)
    }
}

// ---------------------------------------------------------------------------
// The MIME tree.

/// How a part is rendered in BODYSTRUCTURE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Text,
    Rfc822,
    Multipart,
    Other,
}

/// One MIME entity: `data[hdr..body]` is its header (with the blank line
/// when there is one), `data[body..end]` its body, without the CRLF that
/// precedes a following boundary line (RFC 2046 §5.1.1).
#[derive(Debug)]
struct Node {
    hdr: usize,
    body: usize,
    end: usize,
    /// The header ends with a blank line.
    blank: bool,
    fields: Vec<Field>,
    mime: Mime,
    ty: Ty,
    /// The parts of a multipart, or the message of a message/rfc822 part.
    children: Vec<Node>,
}

impl Node {
    /// A header-less, empty text/plain entity at `at`.
    fn empty(at: usize) -> Node {
        Node {
            hdr: at,
            body: at,
            end: at,
            blank: false,
            fields: Vec::new(),
            mime: Mime::default(),
            ty: Ty::Text,
            children: Vec::new(),
        }
    }

    fn header_bytes<'d>(&self, data: &'d [u8]) -> &'d [u8] {
        data.get(self.hdr..self.body).unwrap_or_default()
    }

    fn body_bytes<'d>(&self, data: &'d [u8]) -> &'d [u8] {
        data.get(self.body..self.end).unwrap_or_default()
    }

    /// The value of the last `name` field, as in [`Field::value`].
    fn last<'d>(&self, data: &'d [u8], name: &str) -> Option<&'d [u8]> {
        self.fields
            .iter()
            .rev()
            .filter(|f| f.name(data).eq_ignore_ascii_case(name.as_bytes()))
            .find_map(|f| f.value(data))
    }
}

/// One header field: `data[start..end]` with its continuation lines and
/// final CRLF; `colon` is where its first ':' is.
#[derive(Debug, Clone)]
struct Field {
    start: usize,
    colon: Option<usize>,
    end: usize,
}

impl Field {
    /// The field name: what precedes the colon, without trailing blanks (the
    /// whole line when there is no colon).
    fn name<'d>(&self, data: &'d [u8]) -> &'d [u8] {
        let stop = self.colon.unwrap_or(self.end);
        let name = strip_eol(data.get(self.start..stop).unwrap_or_default());
        let len = name.len()
            - name
                .iter()
                .rev()
                .take_while(|&&b| b == b' ' || b == b'\t')
                .count();
        &name[..len]
    }

    /// The raw value (Dovecot's `full_value`): after the colon, without the
    /// blanks that start it and without the final line end; folds stay in.
    fn value<'d>(&self, data: &'d [u8]) -> Option<&'d [u8]> {
        let colon = self.colon?;
        let value = strip_eol(data.get(colon + 1..self.end)?);
        let first_line = value
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .unwrap_or(value.len());
        let blanks = value[..first_line]
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
        // A first line of only blanks loses just one of them (Dovecot).
        let skip = if blanks == first_line && blanks > 0 {
            1
        } else {
            blanks
        };
        Some(&value[skip..])
    }

    /// A real `name:` field (RFC 5322 §3.6.8 ftext name).
    fn is_valid(&self, data: &[u8]) -> bool {
        let name = self.name(data);
        self.colon.is_some() && !name.is_empty() && name.iter().all(|&b| (33..=126).contains(&b))
    }
}

fn strip_eol(s: &[u8]) -> &[u8] {
    s.strip_suffix(b"\r\n")
        .or_else(|| s.strip_suffix(b"\n"))
        .unwrap_or(s)
}

/// Index just past the LF ending the line at `pos` (or the end of data).
fn line_end(data: &[u8], pos: usize) -> usize {
    match data
        .get(pos..)
        .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
    {
        Some(lf) => pos + lf + 1,
        None => data.len(),
    }
}

/// Where the line end just before `pos` starts (its CR, or its LF).
fn newline_start(data: &[u8], pos: usize) -> usize {
    if pos >= 2 && &data[pos - 2..pos] == b"\r\n" {
        pos - 2
    } else if pos >= 1 && data[pos - 1] == b'\n' {
        pos - 1
    } else {
        pos
    }
}

fn count_lf(s: &[u8]) -> u32 {
    u32_len(s.iter().filter(|&&b| b == b'\n').count())
}

fn u32_len(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// What the entity being parsed is inside of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Parent {
    Top,
    Multipart,
    /// multipart/digest: parts default to message/rfc822 (RFC 2046 §5.1.5).
    Digest,
    Message,
}

/// An active boundary and the multipart it belongs to.
struct Bound {
    text: Vec<u8>,
    owner: usize,
}

/// A boundary line at `line`; what precedes it ends at `end` (the CRLF
/// before the line belongs to the boundary, unless the line is the first
/// one looked at).
#[derive(Debug, Clone, Copy)]
struct Hit {
    line: usize,
    end: usize,
    index: usize,
    close: bool,
}

/// Dovecot's message parser on a whole buffer: every line start is checked
/// against all active boundaries (of all enclosing multiparts), and the
/// longest matching prefix wins (RFC 2046 §5.1.1 and §5.1.2).
struct Parser<'a> {
    data: &'a [u8],
    bounds: Vec<Bound>,
    next_id: usize,
    /// Entities parsed so far.
    parts: usize,
}

impl Parser<'_> {
    /// Parses the entity at `start`; returns it and the boundary line of an
    /// enclosing multipart that ended it (`None`: the data ended).
    fn entity(&mut self, start: usize, parent: Parent, depth: usize) -> (Node, Option<Hit>) {
        self.parts += 1;
        let (fields, hdr_end, blank, hit) = self.header(start);
        let data = self.data;
        // RFC 2045 §4: Content-* fields count in MIME entities only. Like
        // Dovecot, a Content-Type field makes an entity MIME by itself.
        let is_mime = matches!(parent, Parent::Multipart | Parent::Digest)
            || fields.iter().any(|f| {
                let name = f.name(data);
                name.eq_ignore_ascii_case(b"mime-version")
                    || name.eq_ignore_ascii_case(b"content-type")
            });
        let mime = if is_mime {
            Mime::parse(data, &fields)
        } else {
            Mime::default()
        };
        let ty = match &mime.ctype {
            Some((t, s))
                if t.eq_ignore_ascii_case(b"message") && s.eq_ignore_ascii_case(b"rfc822") =>
            {
                Ty::Rfc822
            }
            Some((t, _)) if t.eq_ignore_ascii_case(b"text") => Ty::Text,
            Some((t, _)) if t.eq_ignore_ascii_case(b"multipart") => Ty::Multipart,
            Some(_) => Ty::Other,
            // RFC 2045 §5.2: text/plain by default (message/rfc822 in a digest).
            None if parent == Parent::Digest => Ty::Rfc822,
            None => Ty::Text,
        };
        let mut node = Node {
            hdr: start,
            body: hdr_end,
            end: hdr_end,
            blank,
            fields,
            mime,
            ty,
            children: Vec::new(),
        };
        let deeper = depth < MAX_DEPTH;
        if let Some(hit) = hit {
            // The header ran into a boundary line: no body.
            if ty == Ty::Rfc822 && deeper {
                node.children.push(Node::empty(hdr_end));
            }
            return (node, Some(hit));
        }
        let boundary = match ty {
            Ty::Multipart if blank && deeper => node.mime.boundary(),
            _ => None,
        };
        let stop = if let Some(boundary) = boundary {
            let digest = node
                .mime
                .ctype
                .as_ref()
                .is_some_and(|(_, s)| s.eq_ignore_ascii_case(b"digest"));
            self.multipart(&mut node, boundary, digest, depth)
        } else if ty == Ty::Rfc822 && deeper {
            let (child, stop) = self.entity(hdr_end, Parent::Message, depth + 1);
            node.end = child.end;
            node.children.push(child);
            stop
        } else {
            let hit = self.find_boundary(hdr_end);
            node.end = hit.map_or(data.len(), |h| h.end);
            hit
        };
        (node, stop)
    }

    /// The header at `start`: its fields, where it ends, whether it ends with
    /// a blank line, and the boundary line that cut it short, if any.
    fn header(&self, start: usize) -> (Vec<Field>, usize, bool, Option<Hit>) {
        let data = self.data;
        let mut fields: Vec<Field> = Vec::new();
        let mut pos = start;
        loop {
            if pos >= data.len() {
                return (fields, data.len(), false, None);
            }
            if let Some((index, close)) = self.boundary_at(pos) {
                let end = if pos == start {
                    start
                } else {
                    newline_start(data, pos).max(start)
                };
                if let Some(last) = fields.last_mut() {
                    last.end = last.end.min(end);
                }
                let hit = Hit {
                    line: pos,
                    end,
                    index,
                    close,
                };
                return (fields, end, false, Some(hit));
            }
            let next = line_end(data, pos);
            let line = &data[pos..next];
            if line == b"\r\n" || line == b"\n" {
                return (fields, next, true, None);
            }
            match fields.last_mut() {
                // RFC 5322 §2.2.3: a line starting with WSP continues a field.
                Some(last) if line[0] == b' ' || line[0] == b'\t' => last.end = next,
                _ => fields.push(Field {
                    start: pos,
                    colon: line.iter().position(|&b| b == b':').map(|c| pos + c),
                    end: next,
                }),
            }
            pos = next;
        }
    }

    /// Parses a multipart body (RFC 2046 §5.1.1): preamble, parts, epilogue.
    fn multipart(
        &mut self,
        node: &mut Node,
        boundary: Vec<u8>,
        digest: bool,
        depth: usize,
    ) -> Option<Hit> {
        let id = self.next_id;
        self.next_id += 1;
        self.bounds.push(Bound {
            text: boundary,
            owner: id,
        });
        let child_parent = if digest {
            Parent::Digest
        } else {
            Parent::Multipart
        };
        let mut hit = self.find_boundary(node.body);
        loop {
            let Some(h) = hit else {
                node.end = self.data.len();
                return None;
            };
            if self.bounds.get(h.index).map(|b| b.owner) != Some(id) {
                // An enclosing multipart's boundary ends this one as well.
                node.end = h.end;
                return Some(h);
            }
            let after = line_end(self.data, h.line);
            if h.close || self.parts >= MAX_PARTS {
                // Close delimiter (or too many parts): forget this boundary;
                // the epilogue follows.
                self.bounds.truncate(h.index);
                hit = self.find_boundary(after);
                continue;
            }
            // Nested boundaries skipped over are no longer active.
            self.bounds.truncate(h.index + 1);
            if self.data[after - 1] != b'\n' {
                // A last boundary line without a line end starts no part.
                node.end = self.data.len();
                return None;
            }
            let (child, stop) = self.entity(after, child_parent, depth + 1);
            node.children.push(child);
            hit = stop;
        }
    }

    /// The first boundary line at or after the line start `from`.
    fn find_boundary(&self, from: usize) -> Option<Hit> {
        if self.bounds.is_empty() {
            return None;
        }
        let mut line = from;
        loop {
            if let Some((index, close)) = self.boundary_at(line) {
                let end = if line == from {
                    from
                } else {
                    newline_start(self.data, line).max(from)
                };
                return Some(Hit {
                    line,
                    end,
                    index,
                    close,
                });
            }
            let lf = self.data.get(line..)?.iter().position(|&b| b == b'\n')?;
            line += lf + 1;
        }
    }

    /// Whether the line at `pos` is `--boundary` of an active boundary:
    /// its index and whether it is a close delimiter (`--boundary--`).
    fn boundary_at(&self, pos: usize) -> Option<(usize, bool)> {
        if self.bounds.is_empty() {
            return None;
        }
        let rest = self.data.get(pos..)?.strip_prefix(b"--")?;
        let len = match rest.iter().position(|&b| b == b'\n') {
            Some(lf) => {
                let mut n = lf;
                if n > 0 && rest[n - 1] == b'\r' {
                    n -= 1;
                }
                if n > 2 && rest[n - 2..n] == *b"--" {
                    n -= 2;
                }
                n
            }
            None => rest.len().min(BOUNDARY_LINE_MAX),
        };
        let line = &rest[..len];
        let mut best: Option<usize> = None;
        // Innermost first; the full line wins over a shorter prefix.
        for (i, b) in self.bounds.iter().enumerate().rev() {
            let longer = best.is_none_or(|j| self.bounds[j].text.len() < b.text.len());
            if line.starts_with(&b.text) && longer {
                best = Some(i);
                if b.text.len() == line.len() {
                    break;
                }
            }
        }
        let index = best?;
        let blen = self.bounds[index].text.len();
        let close = rest.get(blen..blen + 2) == Some(&b"--"[..]);
        Some((index, close))
    }
}

/// Finds a part by number as Dovecot does (RFC 3501 §6.4.5): numbers index
/// a multipart's parts; a non-multipart has only part 1 (itself); a number
/// after a message/rfc822 part goes inside its message.
fn find<'n>(root: &'n Node, nums: &[NonZeroU32]) -> Option<&'n Node> {
    let mut node = root;
    for (i, num) in nums.iter().enumerate() {
        let more = i + 1 < nums.len();
        let num = usize::try_from(num.get()).ok()?;
        if node.ty == Ty::Multipart {
            node = node.children.get(num - 1)?;
        } else if num != 1 || (more && node.ty != Ty::Rfc822) {
            return None;
        }
        if more && node.ty == Ty::Rfc822 {
            node = node.children.first()?;
        }
    }
    Some(node)
}

/// HEADER.FIELDS (`wanted`) or HEADER.FIELDS.NOT: the (not) listed fields
/// with their continuation lines, then the blank line if the header has one
/// (RFC 3501 §6.4.5). Names match case-insensitively.
fn header_subset(data: &[u8], node: &Node, names: &[AString<'_>], wanted: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for field in &node.fields {
        let name = field.name(data);
        let listed = names.iter().any(|n| n.as_ref().eq_ignore_ascii_case(name));
        if listed == wanted {
            let raw = data.get(field.start..field.end).unwrap_or_default();
            out.extend_from_slice(raw);
            if !raw.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    if node.blank {
        out.extend_from_slice(b"\r\n");
    }
    out
}

// ---------------------------------------------------------------------------
// Content-* fields (RFC 2045, RFC 2183, RFC 2231, RFC 3282, RFC 2557).

/// A parameter: attribute and value.
type Param = (Vec<u8>, Vec<u8>);
type Params = Vec<Param>;

/// The Content-* fields of an entity; the first of each counts.
#[derive(Debug, Default)]
struct Mime {
    /// Type and subtype, when Content-Type is valid.
    ctype: Option<(Vec<u8>, Vec<u8>)>,
    params: Params,
    cte: Option<Vec<u8>>,
    id: Option<Vec<u8>>,
    description: Option<Vec<u8>>,
    md5: Option<Vec<u8>>,
    disposition: Option<(Vec<u8>, Params)>,
    language: Option<Vec<Vec<u8>>>,
    location: Option<Vec<u8>>,
}

impl Mime {
    fn parse(data: &[u8], fields: &[Field]) -> Mime {
        let mut m = Mime::default();
        let mut seen_type = false;
        let mut seen_disposition = false;
        for field in fields {
            let Some(value) = field.value(data) else {
                continue;
            };
            let name = field.name(data);
            let Some(suffix) = name
                .get(..8)
                .filter(|p| p.eq_ignore_ascii_case(b"content-"))
                .map(|_| &name[8..])
            else {
                continue;
            };
            let is = |s: &str| suffix.eq_ignore_ascii_case(s.as_bytes());
            if is("type") && !seen_type {
                seen_type = true;
                let mut tok = Tok::new(value, false);
                if let Some(ctype) = tok.content_type() {
                    m.ctype = Some(ctype);
                    m.params = tok.rfc2231_params();
                }
            } else if is("transfer-encoding") && m.cte.is_none() {
                let mut tok = Tok::new(value, false);
                let mut cte = Vec::new();
                if tok.skip_lwsp() > 0
                    && tok.mime_token(&mut cte) >= 0
                    && tok.skip_lwsp() == 0
                    && !cte.is_empty()
                {
                    m.cte = Some(cte);
                }
            } else if is("id") && m.id.is_none() {
                m.id = Some(value.to_vec());
            } else if is("description") && m.description.is_none() {
                m.description = Some(value.to_vec());
            } else if is("md5") && m.md5.is_none() {
                m.md5 = Some(value.to_vec());
            } else if is("location") && m.location.is_none() {
                m.location = Some(value.to_vec());
            } else if is("disposition") && !seen_disposition {
                seen_disposition = true;
                let mut tok = Tok::new(value, false);
                let mut kind = Vec::new();
                if tok.skip_lwsp() > 0 && tok.mime_token(&mut kind) >= 0 && !kind.is_empty() {
                    m.disposition = Some((kind, tok.rfc2231_params()));
                }
            } else if is("language") && m.language.is_none() {
                // RFC 3282: 1#Language-tag
                let mut tok = Tok::new(value, false);
                let mut langs = Vec::new();
                tok.skip_lwsp();
                loop {
                    let mut lang = Vec::new();
                    if tok.atom(&mut lang) < 0 {
                        break;
                    }
                    langs.push(lang);
                    if tok.cur() != b',' {
                        break;
                    }
                    tok.pos += 1;
                    tok.skip_lwsp();
                }
                if !langs.is_empty() {
                    m.language = Some(langs);
                }
            }
        }
        m
    }

    /// The multipart boundary parameter (RFC 2046 §5.1.1), when usable.
    fn boundary(&self) -> Option<Vec<u8>> {
        let (_, value) = self
            .params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(b"boundary"))?;
        let value = &value[..value.len().min(BOUNDARY_MAX)];
        (!value.is_empty()).then(|| value.to_vec())
    }
}

/// A cursor over a header value, with Dovecot's `rfc822-parser` functions.
/// They return -1 on a syntax error, 0 at the end of the data, 1 when more
/// data follows; whitespace and comments after a token are skipped.
struct Tok<'a> {
    data: &'a [u8],
    pos: usize,
    /// The text of the last comment skipped, when wanted.
    comment: Option<Vec<u8>>,
}

/// RFC 5322 atext (8-bit bytes included).
fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80 || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

/// RFC 2045 token characters: atext without the tspecials "/", "=", "?".
fn is_token(b: u8) -> bool {
    is_atext(b) && !b"/=?".contains(&b)
}

impl<'a> Tok<'a> {
    fn new(data: &'a [u8], comments: bool) -> Self {
        Tok {
            data,
            pos: 0,
            comment: comments.then(Vec::new),
        }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// The current byte; 0 at the end (like the C string terminator).
    fn cur(&self) -> u8 {
        self.data.get(self.pos).copied().unwrap_or(0)
    }

    fn more(&self) -> i32 {
        i32::from(!self.at_end())
    }

    fn take(&self, from: usize, to: usize, out: &mut Vec<u8>) {
        out.extend_from_slice(self.data.get(from..to).unwrap_or_default());
    }

    /// Skips a (nested) comment at '(' (RFC 5322 §3.2.2).
    fn skip_comment(&mut self) -> i32 {
        if let Some(comment) = &mut self.comment {
            comment.clear();
        }
        let mut text = Vec::new();
        self.pos += 1;
        let mut start = self.pos;
        let mut level = 1;
        while self.pos < self.data.len() {
            match self.data[self.pos] {
                b'(' => level += 1,
                b')' => {
                    level -= 1;
                    if level == 0 {
                        self.take(start, self.pos, &mut text);
                        if let Some(comment) = &mut self.comment {
                            *comment = text;
                        }
                        self.pos += 1;
                        return self.more();
                    }
                }
                b'\\' => {
                    self.take(start, self.pos, &mut text);
                    start = self.pos + 1;
                    self.pos += 1;
                    if self.at_end() {
                        return -1;
                    }
                }
                _ => {}
            }
            self.pos += 1;
        }
        -1
    }

    /// Skips whitespace (CR and LF included) and comments.
    fn skip_lwsp(&mut self) -> i32 {
        while !self.at_end() {
            match self.cur() {
                b' ' | b'\t' | b'\r' | b'\n' => self.pos += 1,
                b'(' => {
                    if self.skip_comment() < 0 {
                        return -1;
                    }
                }
                _ => break,
            }
        }
        self.more()
    }

    /// Consumes bytes while `keep`, appends them, then skips whitespace.
    fn run(&mut self, out: &mut Vec<u8>, keep: impl Fn(u8) -> bool) -> i32 {
        let start = self.pos;
        while !self.at_end() && keep(self.cur()) {
            self.pos += 1;
        }
        self.take(start, self.pos, out);
        if self.at_end() {
            0
        } else {
            self.skip_lwsp()
        }
    }

    fn atom(&mut self, out: &mut Vec<u8>) -> i32 {
        if !is_atext(self.cur()) {
            return -1;
        }
        self.run(out, is_atext)
    }

    fn mime_token(&mut self, out: &mut Vec<u8>) -> i32 {
        self.run(out, |b| is_token(b) || b == b'.')
    }

    fn atom_or_dot(&mut self, out: &mut Vec<u8>) -> i32 {
        self.run(out, |b| is_atext(b) || b == b'.')
    }

    /// dot-atom, allowing blanks around the dots (RFC 822).
    fn dot_atom(&mut self, out: &mut Vec<u8>) -> i32 {
        if !is_atext(self.cur()) {
            return -1;
        }
        let mut start = self.pos;
        self.pos += 1;
        loop {
            while !self.at_end() && is_atext(self.cur()) {
                self.pos += 1;
            }
            self.take(start, self.pos, out);
            if self.at_end() {
                return 0;
            }
            let ret = self.skip_lwsp();
            if ret <= 0 {
                return ret;
            }
            if self.cur() != b'.' {
                return 1;
            }
            self.pos += 1;
            out.push(b'.');
            let ret = self.skip_lwsp();
            if ret <= 0 {
                return ret;
            }
            start = self.pos;
        }
    }

    /// A quoted string at '"', unescaped, with folding line ends removed.
    fn quoted_string(&mut self, out: &mut Vec<u8>) -> i32 {
        self.pos += 1;
        let mut start = self.pos;
        while !self.at_end() {
            match self.cur() {
                b'"' => {
                    self.take(start, self.pos, out);
                    self.pos += 1;
                    return self.skip_lwsp();
                }
                b'\n' => {
                    let mut stop = self.pos;
                    if stop > start && self.data[stop - 1] == b'\r' {
                        stop -= 1;
                    }
                    self.take(start, stop, out);
                    start = self.pos + 1;
                }
                b'\\' => {
                    self.pos += 1;
                    if self.at_end() {
                        return -1;
                    }
                    self.take(start, self.pos - 1, out);
                    start = self.pos;
                }
                _ => {}
            }
            self.pos += 1;
        }
        -1
    }

    /// phrase (RFC 5322 §3.2.5, with obs-phrase): words joined by one space.
    fn phrase(&mut self, out: &mut Vec<u8>) -> i32 {
        if self.at_end() {
            return 0;
        }
        if self.cur() == b'.' {
            return -1;
        }
        loop {
            let ret = if self.cur() == b'"' {
                self.quoted_string(out)
            } else {
                self.atom_or_dot(out)
            };
            if ret <= 0 {
                return ret;
            }
            let c = self.cur();
            if !is_atext(c) && c != b'"' && c != b'.' {
                break;
            }
            out.push(b' ');
        }
        self.skip_lwsp()
    }

    /// domain at '@': dot-atom or domain-literal (RFC 5322 §3.4.1).
    fn domain(&mut self, out: &mut Vec<u8>) -> i32 {
        self.pos += 1;
        if self.skip_lwsp() <= 0 {
            return -1;
        }
        if self.cur() != b'[' {
            return self.dot_atom(out);
        }
        let start = self.pos;
        while !self.at_end() {
            match self.cur() {
                b'\\' => {
                    self.pos += 1;
                    if self.at_end() {
                        break;
                    }
                }
                b']' => {
                    self.pos += 1;
                    self.take(start, self.pos, out);
                    return self.skip_lwsp();
                }
                _ => {}
            }
            self.pos += 1;
        }
        -1
    }

    /// `type "/" subtype` of Content-Type (RFC 2045 §5.1), to be followed by
    /// parameters or the end.
    fn content_type(&mut self) -> Option<(Vec<u8>, Vec<u8>)> {
        if self.skip_lwsp() <= 0 {
            return None;
        }
        let mut ty = Vec::new();
        if self.mime_token(&mut ty) <= 0 || ty.is_empty() || self.cur() != b'/' {
            return None;
        }
        self.pos += 1;
        if self.skip_lwsp() <= 0 {
            return None;
        }
        let mut subtype = Vec::new();
        if self.mime_token(&mut subtype) < 0
            || subtype.is_empty()
            || (!self.at_end() && self.cur() != b';')
        {
            return None;
        }
        Some((ty, subtype))
    }

    /// One `; attribute=value` (RFC 2045 §5.1): `Err` on bad syntax,
    /// `Ok(None)` at the end.
    fn content_param(&mut self) -> Result<Option<Param>, ()> {
        if self.at_end() {
            return Ok(None);
        }
        if self.cur() != b';' {
            return Err(());
        }
        self.pos += 1;
        if self.skip_lwsp() <= 0 {
            return Err(());
        }
        let mut key = Vec::new();
        if self.mime_token(&mut key) <= 0 || self.cur() != b'=' {
            return Err(());
        }
        self.pos += 1;
        let mut value = Vec::new();
        let mut ret = self.skip_lwsp();
        if ret <= 0 {
            // no value
        } else if self.cur() == b'"' {
            ret = self.quoted_string(&mut value);
        } else if self.cur() == b'=' {
            // Broken but common: name==?utf-8?b?...?=
            while !self.at_end() && !b"; \t\r\n".contains(&self.cur()) {
                value.push(self.cur());
                self.pos += 1;
            }
        } else {
            ret = self.mime_token(&mut value);
        }
        if ret < 0 {
            Err(())
        } else {
            Ok(Some((key, value)))
        }
    }

    /// The parameters, skipping bad ones, with RFC 2231 continuations
    /// (`name*0`, `name*1*`, ...) joined into `name` or, when any piece is
    /// extended, `name*` (still encoded), as Dovecot's rfc2231-parser does.
    fn rfc2231_params(&mut self) -> Params {
        struct Piece {
            key: Vec<u8>,
            idx: u32,
            extended: bool,
            value: Vec<u8>,
        }
        let mut result = Params::new();
        let mut pieces: Vec<Piece> = Vec::new();
        loop {
            let (key, value) = match self.content_param() {
                Ok(Some(kv)) => kv,
                Ok(None) => break,
                Err(()) => {
                    if self.at_end() {
                        break;
                    }
                    self.pos += 1;
                    continue;
                }
            };
            if let Some(star) = key.iter().position(|&b| b == b'*') {
                let mut i = star + 1;
                let mut idx = 0u32;
                while i < key.len() && key[i].is_ascii_digit() {
                    idx = idx
                        .saturating_mul(10)
                        .saturating_add(u32::from(key[i] - b'0'));
                    i += 1;
                }
                let extended = key.get(i) == Some(&b'*');
                if extended {
                    i += 1;
                }
                if i == key.len() {
                    pieces.push(Piece {
                        key: key[..star].to_vec(),
                        idx,
                        extended,
                        value,
                    });
                    continue;
                }
            }
            result.push((key, value));
        }
        pieces.sort_by(|a, b| a.key.cmp(&b.key).then(a.idx.cmp(&b.idx)));
        let mut i = 0;
        while i < pieces.len() {
            let group_len = pieces[i..]
                .iter()
                .take_while(|p| p.key.eq_ignore_ascii_case(&pieces[i].key))
                .count();
            let group = &pieces[i..i + group_len];
            i += group_len;
            let in_order = group
                .iter()
                .enumerate()
                .all(|(n, p)| usize::try_from(p.idx).ok() == Some(n));
            let extended = group.iter().any(|p| p.extended);
            if !in_order {
                for p in group {
                    let mut key = p.key.clone();
                    key.extend_from_slice(
                        format!("*{}{}", p.idx, if p.extended { "*" } else { "" }).as_bytes(),
                    );
                    result.push((key, p.value.clone()));
                }
                continue;
            }
            let mut value = Vec::new();
            if extended && !group[0].extended {
                value.extend_from_slice(b"''");
            }
            for p in group {
                if extended && !p.extended {
                    for &b in &p.value {
                        if b == b'%' {
                            value.extend_from_slice(b"%25");
                        } else {
                            value.push(b);
                        }
                    }
                } else {
                    value.extend_from_slice(&p.value);
                }
            }
            let mut key = group[0].key.clone();
            if extended {
                key.push(b'*');
            }
            result.push((key, value));
        }
        result
    }
}

// ---------------------------------------------------------------------------
// Addresses (RFC 5322 §3.4 with the obsolete forms), as Dovecot's
// message-address parses them for ENVELOPE.

#[derive(Debug, Default, Clone)]
struct Addr {
    name: Option<Vec<u8>>,
    route: Option<Vec<u8>>,
    mailbox: Option<Vec<u8>>,
    domain: Option<Vec<u8>>,
}

struct AddrParser<'a> {
    tok: Tok<'a>,
    cur: Addr,
    out: Vec<Addr>,
}

/// Parses an address list; empty when there is none. Groups become a start
/// entry (mailbox = group name, no domain) and an all-empty end entry
/// (RFC 3501 §7.4.2); a missing mailbox or domain is filled in as
/// `MISSING_MAILBOX` / `MISSING_DOMAIN`.
fn parse_addresses(value: &[u8]) -> Vec<Addr> {
    let mut p = AddrParser {
        tok: Tok::new(value, true),
        cur: Addr::default(),
        out: Vec::new(),
    };
    if p.tok.skip_lwsp() > 0 {
        p.address_list();
    }
    p.out
}

impl AddrParser<'_> {
    fn add(&mut self) {
        self.out.push(std::mem::take(&mut self.cur));
    }

    fn add_fixed(&mut self) {
        self.cur
            .mailbox
            .get_or_insert_with(|| b"MISSING_MAILBOX".to_vec());
        self.cur
            .domain
            .get_or_insert_with(|| b"MISSING_DOMAIN".to_vec());
        self.add();
    }

    fn local_part(&mut self) -> i32 {
        let mut s = Vec::new();
        let ret = if self.tok.cur() == b'"' {
            self.tok.quoted_string(&mut s)
        } else {
            self.tok.dot_atom(&mut s)
        };
        if ret < 0 {
            return -1;
        }
        self.cur.mailbox = Some(s);
        ret
    }

    fn domain(&mut self) -> i32 {
        let mut s = Vec::new();
        let ret = self.tok.domain(&mut s);
        if ret < 0 {
            return -1;
        }
        self.cur.domain = Some(s);
        ret
    }

    /// obs-domain-list: "@a,@b" before the ':' of a source route.
    fn domain_list(&mut self) -> i32 {
        let mut s = Vec::new();
        loop {
            if self.tok.at_end() {
                return 0;
            }
            if self.tok.cur() != b'@' {
                break;
            }
            if !s.is_empty() {
                s.push(b',');
            }
            s.push(b'@');
            let ret = self.tok.domain(&mut s);
            if ret <= 0 {
                return ret;
            }
            while self.tok.skip_lwsp() > 0 && self.tok.cur() == b',' {
                self.tok.pos += 1;
            }
        }
        self.cur.route = Some(s);
        1
    }

    /// `"<" [route ":"] local-part ["@" domain] ">"` at '<'.
    fn angle_addr(&mut self) -> i32 {
        self.tok.pos += 1;
        let ret = self.tok.skip_lwsp();
        if ret <= 0 {
            return ret;
        }
        if self.tok.cur() == b'@' {
            if self.domain_list() <= 0 || self.tok.cur() != b':' {
                self.cur.route = Some(b"INVALID_ROUTE".to_vec());
                return -1;
            }
            self.tok.pos += 1;
            let ret = self.tok.skip_lwsp();
            if ret <= 0 {
                return ret;
            }
        }
        let ret = self.local_part();
        if ret <= 0 {
            return ret;
        }
        if self.tok.cur() == b'@' {
            let ret = self.domain();
            if ret <= 0 {
                return ret;
            }
        }
        if self.tok.cur() != b'>' {
            return -1;
        }
        self.tok.pos += 1;
        self.tok.skip_lwsp()
    }

    fn name_addr(&mut self) -> i32 {
        let mut name = Vec::new();
        if self.tok.phrase(&mut name) <= 0 || self.tok.cur() != b'<' {
            return -1;
        }
        self.cur.name = (!name.is_empty()).then_some(name);
        if self.angle_addr() < 0 {
            self.cur.domain = Some(b"SYNTAX_ERROR".to_vec());
        }
        self.tok.more()
    }

    /// `local-part "@" domain`, with a trailing comment as the name.
    fn addr_spec(&mut self) -> i32 {
        self.tok.comment = Some(Vec::new());
        let mut ret = self.local_part();
        if ret != 0 && self.tok.cur() == b'@' {
            let ret2 = self.domain();
            if ret2 <= 0 {
                ret = ret2;
            }
        }
        if let Some(comment) = self.tok.comment.as_ref().filter(|c| !c.is_empty()) {
            self.cur.name = Some(comment.clone());
        }
        ret
    }

    fn mailbox(&mut self) -> i32 {
        let start = self.tok.pos;
        let mut ret = self.name_addr();
        if ret < 0 {
            self.tok.pos = start;
            ret = self.addr_spec();
        }
        self.add_fixed();
        ret
    }

    fn group(&mut self) -> i32 {
        let mut name = Vec::new();
        if self.tok.phrase(&mut name) <= 0 || self.tok.cur() != b':' {
            return -1;
        }
        self.tok.pos += 1;
        let mut ret = self.tok.skip_lwsp();
        self.cur.mailbox = Some(name);
        self.add();
        if ret > 0 && self.tok.cur() != b';' {
            loop {
                if self.mailbox() <= 0 {
                    ret = -1;
                    break;
                }
                if self.tok.cur() != b',' {
                    break;
                }
                self.tok.pos += 1;
                if self.tok.skip_lwsp() <= 0 {
                    ret = -1;
                    break;
                }
            }
        }
        if ret >= 0 {
            if self.tok.cur() != b';' {
                ret = -1;
            } else {
                self.tok.pos += 1;
                ret = self.tok.skip_lwsp();
            }
        }
        self.add();
        i32::from(ret != 0)
    }

    fn address(&mut self) -> i32 {
        let start = self.tok.pos;
        let ret = self.group();
        if ret >= 0 {
            return ret;
        }
        self.tok.pos = start;
        self.mailbox()
    }

    fn address_list(&mut self) {
        loop {
            if self.address() == 0 || self.tok.cur() != b',' {
                break;
            }
            self.tok.pos += 1;
            let ret = self.tok.skip_lwsp();
            if ret <= 0 {
                if ret < 0 {
                    self.add_fixed();
                }
                break;
            }
        }
    }
}

// ---------------------------------------------------------------------------
// IMAP strings, as Dovecot's imap-quote writes them (RFC 3501 §4.3).

/// A quoted string, or a literal when the value has CR, LF, 8-bit bytes or
/// more than four quoted-specials. NULs (allowed in neither) become 0x80.
fn istring(s: &[u8]) -> IString<'static> {
    let escapes = s.iter().filter(|&&b| b == b'"' || b == b'\\').count();
    let plain = escapes <= 4
        && s.iter()
            .all(|&b| b != 0 && b != b'\r' && b != b'\n' && b < 0x80);
    if plain {
        if let Ok(quoted) = Quoted::try_from(s.to_vec()) {
            return IString::Quoted(quoted);
        }
    }
    literal(s)
}

fn literal(s: &[u8]) -> IString<'static> {
    let bytes: Vec<u8> = s.iter().map(|&b| if b == 0 { 0x80 } else { b }).collect();
    match Literal::try_from(bytes) {
        Ok(lit) => IString::Literal(lit),
        Err(_) => IString::Quoted(Quoted::unvalidated("")),
    }
}

fn nstring(s: Option<&[u8]>) -> NString<'static> {
    NString(s.map(istring))
}

/// An nstring with CR and LF removed (unfolded).
fn nstring_nolf(s: Option<&[u8]>) -> NString<'static> {
    NString(s.map(|s| {
        let unfolded: Vec<u8> = s
            .iter()
            .copied()
            .filter(|&b| b != b'\r' && b != b'\n')
            .collect();
        istring(&unfolded)
    }))
}

/// Subjects and display names (Dovecot's `imap_append_string_for_humans`):
/// unfolded, runs of blanks as one space, trimmed. Changed or non-plain
/// values go as a literal.
fn for_humans(s: &[u8]) -> IString<'static> {
    let mut out = Vec::with_capacity(s.len());
    let mut last_blank = true;
    for &b in s {
        match b {
            b'\r' | b'\n' => {}
            b' ' | b'\t' => {
                if !last_blank {
                    out.push(b' ');
                }
                last_blank = true;
            }
            0 => {
                out.push(0x80);
                last_blank = false;
            }
            _ => {
                out.push(b);
                last_blank = false;
            }
        }
    }
    if last_blank && out.last() == Some(&b' ') {
        out.pop();
    }
    let special = s.iter().any(|&b| b == b'"' || b == b'\\' || b >= 0x80);
    if (out == s && !special) || out.is_empty() {
        if let Ok(quoted) = Quoted::try_from(out.clone()) {
            return IString::Quoted(quoted);
        }
    }
    literal(&out)
}

// ---------------------------------------------------------------------------
// ENVELOPE and BODYSTRUCTURE.

fn envelope_of(data: &[u8], node: &Node) -> Envelope<'static> {
    let addrs = |name: &str| {
        node.last(data, name)
            .map(parse_addresses)
            .unwrap_or_default()
    };
    let from = addrs("From");
    let or_from = |list: Vec<Addr>| if list.is_empty() { from.clone() } else { list };
    let sender = or_from(addrs("Sender"));
    let reply_to = or_from(addrs("Reply-To"));
    Envelope {
        date: nstring_nolf(node.last(data, "Date")),
        subject: NString(node.last(data, "Subject").map(for_humans)),
        from: address_list(&from),
        sender: address_list(&sender),
        reply_to: address_list(&reply_to),
        to: address_list(&addrs("To")),
        cc: address_list(&addrs("Cc")),
        bcc: address_list(&addrs("Bcc")),
        in_reply_to: nstring_nolf(node.last(data, "In-Reply-To")),
        message_id: nstring_nolf(node.last(data, "Message-ID")),
    }
}

fn address_list(addrs: &[Addr]) -> Vec<Address<'static>> {
    addrs
        .iter()
        .map(|a| Address {
            name: NString(a.name.as_deref().map(for_humans)),
            adl: nstring(a.route.as_deref()),
            mailbox: nstring(a.mailbox.as_deref()),
            host: nstring(a.domain.as_deref()),
        })
        .collect()
}

fn params(list: &Params) -> Vec<(IString<'static>, IString<'static>)> {
    list.iter().map(|(k, v)| (istring(k), istring(v))).collect()
}

/// Disposition, language and location: the extension data common to
/// single parts and multiparts (RFC 3501 §7.4.2).
fn common_extension(m: &Mime) -> Disposition<'static> {
    Disposition {
        disposition: m
            .disposition
            .as_ref()
            .map(|(kind, list)| (istring(kind), params(list))),
        tail: Some(Language {
            language: m.language.iter().flatten().map(|l| istring(l)).collect(),
            tail: Some(Location {
                location: nstring_nolf(m.location.as_deref()),
                extensions: Vec::new(),
            }),
        }),
    }
}

/// Dovecot's stand-in for a multipart without parts: an empty text/plain.
fn empty_text(extended: bool) -> BodyStructure<'static> {
    structure(b"", &Node::empty(0), extended)
}

fn structure(data: &[u8], node: &Node, extended: bool) -> BodyStructure<'static> {
    let m = &node.mime;
    let (ty, subtype): (&[u8], &[u8]) = match &m.ctype {
        Some((t, s)) => (t, s),
        None => (b"text", b"plain"),
    };
    if node.ty == Ty::Multipart {
        let bodies: Vec<_> = node
            .children
            .iter()
            .map(|c| structure(data, c, extended))
            .collect();
        return BodyStructure::Multi {
            bodies: Vec1::try_from(bodies).unwrap_or_else(|_| Vec1::from(empty_text(extended))),
            subtype: istring(subtype),
            extension_data: extended.then(|| MultiPartExtensionData {
                parameter_list: params(&m.params),
                tail: Some(common_extension(m)),
            }),
        };
    }
    let body = node.body_bytes(data);
    let lines = count_lf(body);
    let mut parameter_list = params(&m.params);
    if node.ty == Ty::Text
        && !m
            .params
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(b"charset"))
    {
        // RFC 2045 §5.2: us-ascii by default.
        parameter_list.push((istring(b"charset"), istring(b"us-ascii")));
    }
    let specific = match node.ty {
        Ty::Rfc822 => {
            let (envelope, inner) = match node.children.first() {
                Some(child) => (envelope_of(data, child), structure(data, child, extended)),
                None => (envelope_of(b"", &Node::empty(0)), empty_text(extended)),
            };
            SpecificFields::Message {
                envelope: Box::new(envelope),
                body_structure: Box::new(inner),
                number_of_lines: lines,
            }
        }
        Ty::Text => SpecificFields::Text {
            subtype: istring(subtype),
            number_of_lines: lines,
        },
        Ty::Multipart | Ty::Other => SpecificFields::Basic {
            r#type: istring(ty),
            subtype: istring(subtype),
        },
    };
    BodyStructure::Single {
        body: Body {
            basic: BasicFields {
                parameter_list,
                id: nstring_nolf(m.id.as_deref()),
                description: nstring_nolf(m.description.as_deref()),
                content_transfer_encoding: istring(m.cte.as_deref().unwrap_or(b"7bit")),
                size: u32_len(body.len()),
            },
            specific,
        },
        extension_data: extended.then(|| SinglePartExtensionData {
            md5: nstring_nolf(m.md5.as_deref()),
            tail: Some(common_extension(m)),
        }),
    }
}

// ---------------------------------------------------------------------------
// Content-Transfer-Encoding decoding for BINARY (RFC 2045 §6.7, §6.8),
// lenient like mail readers: bad characters are skipped, bad escapes kept.

fn decode_base64(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() / 4 * 3);
    let (mut acc, mut n) = (0u32, 0);
    for &b in input {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        n += 1;
        if n == 4 {
            out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
            acc = 0;
            n = 0;
        }
    }
    match n {
        2 => out.push((acc >> 4) as u8),
        3 => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
        _ => {}
    }
    out
}

fn decode_qp(input: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(input.len());
    let mut pos = 0;
    while pos < input.len() {
        let next = line_end(input, pos);
        let raw = &input[pos..next];
        let content = strip_eol(raw);
        let has_eol = content.len() < raw.len();
        // Rule 3: trailing blanks are transport padding.
        let content = &content[..content.len()
            - content
                .iter()
                .rev()
                .take_while(|&&b| b == b' ' || b == b'\t')
                .count()];
        let mut soft = false;
        let mut i = 0;
        while i < content.len() {
            if content[i] == b'=' {
                if i + 1 == content.len() {
                    soft = true;
                    break;
                }
                if let (Some(h), Some(l)) = (
                    content.get(i + 1).and_then(|&b| hex(b)),
                    content.get(i + 2).and_then(|&b| hex(b)),
                ) {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
            }
            out.push(content[i]);
            i += 1;
        }
        if has_eol && !soft {
            out.extend_from_slice(b"\r\n");
        }
        pos = next;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use imap_codec::encode::Encoder;
    use imap_codec::imap_types::fetch::MessageDataItem;
    use imap_codec::imap_types::response::{Data, Response};
    use imap_codec::ResponseCodec;

    /// The untagged FETCH response imap-codec encodes for one item.
    fn fetch_bytes(item: MessageDataItem<'static>) -> Vec<u8> {
        let response = Response::Data(Data::Fetch {
            seq: NonZeroU32::new(1).unwrap(),
            items: Vec1::from(item),
        });
        ResponseCodec::default().encode(&response).dump()
    }

    #[test]
    fn to_crlf_adds_cr_only_before_bare_lf() {
        let naive = |raw: &[u8]| {
            let mut out = Vec::new();
            for (i, &b) in raw.iter().enumerate() {
                if b == b'\n' && (i == 0 || raw[i - 1] != b'\r') {
                    out.push(b'\r');
                }
                out.push(b);
            }
            out
        };
        for raw in [
            &b""[..],
            b"\n",
            b"\n\n",
            b"a\nb",
            b"a\r\nb\n",
            b"\r\n\r\n",
            b"x\r",
            b"\r\r\n\n\ra\n",
            b"no newline at all",
        ] {
            assert_eq!(to_crlf(raw).as_ref(), naive(raw).as_slice(), "{raw:?}");
        }
        assert!(matches!(to_crlf(b"a\r\nb\r\n"), Cow::Borrowed(_)));
    }

    fn fetch(item: MessageDataItem<'static>) -> String {
        String::from_utf8_lossy(&fetch_bytes(item)).into_owned()
    }

    fn bodystructure(msg: &str) -> String {
        let crlf = to_crlf(msg.as_bytes());
        fetch(MessageDataItem::BodyStructure(body_structure(
            &parse(&crlf),
            true,
        )))
    }

    fn body(msg: &str) -> String {
        let crlf = to_crlf(msg.as_bytes());
        fetch(MessageDataItem::Body(body_structure(&parse(&crlf), false)))
    }

    fn env(msg: &str) -> String {
        let crlf = to_crlf(msg.as_bytes());
        fetch(MessageDataItem::Envelope(envelope(&parse(&crlf))))
    }

    fn line(item: &str, value: &str) -> String {
        format!("* 1 FETCH ({item} {value})\r\n")
    }

    fn nums(n: &[u32]) -> Vec<NonZeroU32> {
        n.iter().map(|&n| NonZeroU32::new(n).unwrap()).collect()
    }

    fn part(n: &[u32]) -> Part {
        Part(Vec1::try_from(nums(n)).unwrap())
    }

    fn names(list: &[&'static str]) -> Vec1<AString<'static>> {
        Vec1::try_from(
            list.iter()
                .map(|&n| AString::try_from(n).unwrap())
                .collect::<Vec<_>>(),
        )
        .unwrap()
    }

    /// BODY[section] as a string; `None` for a missing part.
    fn sec(msg: &str, section: Option<Section<'static>>) -> Option<String> {
        let crlf = to_crlf(msg.as_bytes());
        let parsed = parse(&crlf);
        self::section(&parsed, section.as_ref()).map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    fn crlf(s: &str) -> String {
        String::from_utf8(to_crlf(s.as_bytes()).into_owned()).unwrap()
    }

    // Dovecot's test-imap-bodystructure.c vectors (the messages use LF; the
    // sizes are of the CRLF form). imap-codec writes "TEXT" and
    // "MESSAGE" "RFC822" where Dovecot keeps "text" / "message" "rfc822".
    const DOVECOT_SIMPLE: &str = "From: user@domain.org\n\
        Date: Sat, 24 Mar 2017 23:00:00 +0200\n\
        Mime-Version: 1.0\n\
        Content-Type: text/plain; charset=us-ascii\n\
        \n\
        body\n";

    const DOVECOT_RFC822: &str = "From: user@domain.org\n\
        Date: Sat, 24 Mar 2017 23:00:00 +0200\n\
        Mime-Version: 1.0\n\
        Content-Type: multipart/mixed; boundary=\"foo bar\"\n\
        \n\
        --foo bar\n\
        Content-Type: text/plain; charset=us-ascii\n\
        \n\
        See attached...\n\
        \n\
        --foo bar\n\
        Content-Type: message/rfc822\n\
        \n\
        From: user@domain.org\n\
        Date: Sat, 24 Mar 2017 23:00:00 +0200\n\
        Mime-Version: 1.0\n\
        Content-Type: text/plain; charset=us-ascii\n\
        \n\
        body\n\
        \n\
        --foo bar--\n\
        \n";

    const INNER_ENVELOPE: &str = "(\"Sat, 24 Mar 2017 23:00:00 +0200\" NIL \
        ((NIL NIL \"user\" \"domain.org\")) ((NIL NIL \"user\" \"domain.org\")) \
        ((NIL NIL \"user\" \"domain.org\")) NIL NIL NIL NIL NIL)";

    #[test]
    fn dovecot_simple_text() {
        assert_eq!(
            bodystructure(DOVECOT_SIMPLE),
            line("BODYSTRUCTURE", "(\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 6 1 NIL NIL NIL NIL)")
        );
        assert_eq!(
            body(DOVECOT_SIMPLE),
            line(
                "BODY",
                "(\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 6 1)"
            )
        );
        assert_eq!(env(DOVECOT_SIMPLE), line("ENVELOPE", INNER_ENVELOPE));

        let msg = "From: user@domain.org\n\
            Date: Sat, 24 Mar 2017 23:00:00 +0200\n\
            Mime-Version: 1.0\n\
            Content-Type: text/plain; charset=utf-8\n\
            Content-Transfer-Encoding: 8bit\n\
            \n\
            body\n\
            \n";
        assert_eq!(
            bodystructure(msg),
            line(
                "BODYSTRUCTURE",
                "(\"TEXT\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"8bit\" 8 2 NIL NIL NIL NIL)"
            )
        );
    }

    #[test]
    fn dovecot_simple_text_sections() {
        let m = DOVECOT_SIMPLE;
        let header = "From: user@domain.org\r\nDate: Sat, 24 Mar 2017 23:00:00 +0200\r\n\
            Mime-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n";
        assert_eq!(sec(m, None).unwrap(), crlf(m));
        assert_eq!(sec(m, Some(Section::Header(None))).unwrap(), header);
        assert_eq!(sec(m, Some(Section::Text(None))).unwrap(), "body\r\n");
        // A non-multipart message has one part: its body.
        assert_eq!(sec(m, Some(Section::Part(part(&[1])))).unwrap(), "body\r\n");
        assert_eq!(sec(m, Some(Section::Mime(part(&[1])))).unwrap(), header);
        assert_eq!(sec(m, Some(Section::Part(part(&[2])))), None);
        assert_eq!(sec(m, Some(Section::Part(part(&[1, 1])))), None);
        assert_eq!(sec(m, Some(Section::Header(Some(part(&[1]))))), None);
        assert_eq!(
            sec(
                m,
                Some(Section::HeaderFields(
                    None,
                    names(&["DATE", "from", "X-None"])
                ))
            )
            .unwrap(),
            "From: user@domain.org\r\nDate: Sat, 24 Mar 2017 23:00:00 +0200\r\n\r\n"
        );
        assert_eq!(
            sec(
                m,
                Some(Section::HeaderFieldsNot(
                    None,
                    names(&["mime-version", "Content-Type"])
                ))
            )
            .unwrap(),
            "From: user@domain.org\r\nDate: Sat, 24 Mar 2017 23:00:00 +0200\r\n\r\n"
        );
        assert_eq!(
            sec(m, Some(Section::HeaderFields(None, names(&["x-none"])))).unwrap(),
            "\r\n"
        );
    }

    #[test]
    fn dovecot_folded_boundary_and_empty_multipart() {
        let msg = "From: user@domain.org\n\
            Date: Sat, 24 Mar 2007 23:00:00 +0200\n\
            Mime-Version: 1.0\n\
            Content-Type: multipart/mixed; boundary=\"foo\n bar\"\n\
            \n\
            --foo bar\n\
            Content-Type: text/x-myown; charset=us-ascii\n\
            \n\
            hello\n\
            \n\
            --foo bar--\n\
            \n";
        assert_eq!(
            bodystructure(msg),
            line(
                "BODYSTRUCTURE",
                "((\"TEXT\" \"x-myown\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 7 1 NIL NIL NIL NIL) \
                 \"mixed\" (\"boundary\" \"foo bar\") NIL NIL NIL)"
            )
        );
        assert_eq!(
            body(msg),
            line("BODY", "((\"TEXT\" \"x-myown\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 7 1) \"mixed\")")
        );

        // A multipart without parts is written with one empty text/plain.
        let msg = "Content-Type: multipart/mixed; boundary=\"foo\"\n\n";
        assert_eq!(
            bodystructure(msg),
            line(
                "BODYSTRUCTURE",
                "((\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL) \
                 \"mixed\" (\"boundary\" \"foo\") NIL NIL NIL)"
            )
        );
        assert_eq!(
            body(msg),
            line(
                "BODY",
                "((\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0) \"mixed\")"
            )
        );
    }

    #[test]
    fn dovecot_message_rfc822() {
        assert_eq!(
            bodystructure(DOVECOT_RFC822),
            line(
                "BODYSTRUCTURE",
                &format!(
                    "((\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 17 1 NIL NIL NIL NIL)\
                     (\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7bit\" 133 {INNER_ENVELOPE} \
                     (\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 6 1 NIL NIL NIL NIL) 6 \
                     NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"foo bar\") NIL NIL NIL)"
                )
            )
        );
        assert_eq!(
            body(DOVECOT_RFC822),
            line(
                "BODY",
                &format!(
                    "((\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 17 1)\
                     (\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7bit\" 133 {INNER_ENVELOPE} \
                     (\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 6 1) 6) \"mixed\")"
                )
            )
        );

        let msg = "From: user@domain.org\n\
            Date: Sat, 24 Mar 2017 23:00:00 +0200\n\
            Mime-Version: 1.0\n\
            Content-Type: multipart/mixed; boundary=\"foo bar\"\n\
            \n\
            --foo bar\n\
            Content-Type: text/plain; charset=us-ascii\n\
            Content-ID: <A.frop.example.com>\n\
            Content-Description: Container message\n\
            \n\
            See attached...\n\
            \n\
            --foo bar\n\
            Content-Type: message/rfc822\n\
            Content-ID: <B.frop.example.com>\n\
            Content-Description: Forwarded\n\
            \n\
            From: user@domain.org\n\
            Date: Sat, 24 Mar 2017 23:00:00 +0200\n\
            Mime-Version: 1.0\n\
            Content-Type: text/plain; charset=us-ascii\n\
            \n\
            body\n\
            \n\
            --foo bar--\n";
        assert_eq!(
            bodystructure(msg),
            line(
                "BODYSTRUCTURE",
                &format!(
                    "((\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") \"<A.frop.example.com>\" \"Container message\" \
                     \"7bit\" 17 1 NIL NIL NIL NIL)\
                     (\"MESSAGE\" \"RFC822\" NIL \"<B.frop.example.com>\" \"Forwarded\" \"7bit\" 133 {INNER_ENVELOPE} \
                     (\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 6 1 NIL NIL NIL NIL) 6 \
                     NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"foo bar\") NIL NIL NIL)"
                )
            )
        );
    }

    #[test]
    fn message_rfc822_sections() {
        let m = DOVECOT_RFC822;
        let inner_header = "From: user@domain.org\r\nDate: Sat, 24 Mar 2017 23:00:00 +0200\r\n\
            Mime-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n";
        assert_eq!(
            sec(m, Some(Section::Part(part(&[1])))).unwrap(),
            "See attached...\r\n"
        );
        assert_eq!(
            sec(m, Some(Section::Part(part(&[2])))).unwrap(),
            format!("{inner_header}body\r\n")
        );
        assert_eq!(sec(m, Some(Section::Part(part(&[2])))).unwrap().len(), 133);
        assert_eq!(
            sec(m, Some(Section::Mime(part(&[2])))).unwrap(),
            "Content-Type: message/rfc822\r\n\r\n"
        );
        assert_eq!(
            sec(m, Some(Section::Header(Some(part(&[2]))))).unwrap(),
            inner_header
        );
        assert_eq!(
            sec(m, Some(Section::Text(Some(part(&[2]))))).unwrap(),
            "body\r\n"
        );
        assert_eq!(
            sec(m, Some(Section::Part(part(&[2, 1])))).unwrap(),
            "body\r\n"
        );
        assert_eq!(sec(m, Some(Section::Part(part(&[2, 2])))), None);
        assert_eq!(
            sec(
                m,
                Some(Section::HeaderFields(Some(part(&[2])), names(&["date"])))
            )
            .unwrap(),
            "Date: Sat, 24 Mar 2017 23:00:00 +0200\r\n\r\n"
        );
        assert_eq!(sec(m, Some(Section::Header(Some(part(&[1]))))), None);
        assert_eq!(sec(m, Some(Section::Text(Some(part(&[3]))))), None);
    }

    #[test]
    fn dovecot_everything() {
        let msg = "From: user@domain.org\n\
            Date: Sat, 24 Mar 2007 23:00:00 +0200\n\
            Mime-Version: 1.0\n\
            Content-Type: multipart/mixed; boundary=\"foo\n bar\"\n\
            \n\
            Root MIME prologue\n\
            \n\
            --foo bar\n\
            Content-Type: text/x-myown; charset=us-ascii; foo=\"quoted\\\"string\"\n\
            Content-ID: <foo@example.com>\n\
            Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\n\
            Content-Disposition: inline; foo=bar\n\
            Content-Description: hellodescription\n\
            Content-Language: en, fi, se\n\
            Content-Location: http://example.com/test.txt\n\
            \n\
            hello\n\
            \n\
            --foo bar\n\
            Content-Type: message/rfc822\n\
            \n\
            From: sub@domain.org\n\
            To: sub-to1@domain.org, sub-to2@domain.org\n\
            Date: Sun, 12 Aug 2012 12:34:56 +0300\n\
            Subject: submsg\n\
            Content-Type: multipart/alternative; boundary=\"sub1\"\n\
            \n\
            Sub MIME prologue\n\
            --sub1\n\
            Content-Type: text/html\n\
            Content-Transfer-Encoding: 8bit\n\
            \n\
            <p>Hello world</p>\n\
            \n\
            --sub1\n\
            Content-Type: text/plain\n\
            Content-Transfer-Encoding: ?invalid\n\
            \n\
            Hello another world\n\
            \n\
            --sub1--\n\
            Sub MIME epilogue\n\
            \n\
            --foo bar--\n\
            Root MIME epilogue\n";
        let inner_env = "(\"Sun, 12 Aug 2012 12:34:56 +0300\" \"submsg\" ((NIL NIL \"sub\" \"domain.org\")) \
            ((NIL NIL \"sub\" \"domain.org\")) ((NIL NIL \"sub\" \"domain.org\")) \
            ((NIL NIL \"sub-to1\" \"domain.org\")(NIL NIL \"sub-to2\" \"domain.org\")) NIL NIL NIL NIL)";
        assert_eq!(
            bodystructure(msg),
            line(
                "BODYSTRUCTURE",
                &format!(
                    "((\"TEXT\" \"x-myown\" (\"charset\" \"us-ascii\" \"foo\" \"quoted\\\"string\") \
                     \"<foo@example.com>\" \"hellodescription\" \"7bit\" 7 1 \"Q2hlY2sgSW50ZWdyaXR5IQ==\" \
                     (\"inline\" (\"foo\" \"bar\")) (\"en\" \"fi\" \"se\") \"http://example.com/test.txt\")\
                     (\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7bit\" 412 {inner_env} \
                     ((\"TEXT\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"8bit\" 20 1 NIL NIL NIL NIL)\
                     (\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 21 1 NIL NIL NIL NIL) \
                     \"alternative\" (\"boundary\" \"sub1\") NIL NIL NIL) 21 NIL NIL NIL NIL) \
                     \"mixed\" (\"boundary\" \"foo bar\") NIL NIL NIL)"
                )
            )
        );
        assert_eq!(
            body(msg),
            line(
                "BODY",
                &format!(
                    "((\"TEXT\" \"x-myown\" (\"charset\" \"us-ascii\" \"foo\" \"quoted\\\"string\") \
                     \"<foo@example.com>\" \"hellodescription\" \"7bit\" 7 1)\
                     (\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7bit\" 412 {inner_env} \
                     ((\"TEXT\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"8bit\" 20 1)\
                     (\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 21 1) \"alternative\") 21) \
                     \"mixed\")"
                )
            )
        );
        assert_eq!(
            sec(msg, Some(Section::Part(part(&[2, 1])))).unwrap(),
            "<p>Hello world</p>\r\n"
        );
        assert_eq!(
            sec(msg, Some(Section::Part(part(&[2, 2])))).unwrap(),
            "Hello another world\r\n"
        );
        assert_eq!(
            sec(msg, Some(Section::Mime(part(&[2, 2])))).unwrap(),
            "Content-Type: text/plain\r\nContent-Transfer-Encoding: ?invalid\r\n\r\n"
        );
    }

    const MIXED: &str = "From: Alice <alice@example.org>\n\
        To: Bob <bob@example.com>\n\
        Subject: Report\n\
        Date: Mon, 1 Jan 2024 10:00:00 +0000\n\
        Message-ID: <m1@example.org>\n\
        MIME-Version: 1.0\n\
        Content-Type: multipart/mixed; boundary=\"XYZ\"\n\
        \n\
        This is a multi-part message.\n\
        --XYZ\n\
        Content-Type: text/plain; charset=utf-8\n\
        \n\
        Hello Bob.\n\
        --XYZ\n\
        Content-Type: text/html; charset=utf-8\n\
        Content-Transfer-Encoding: quoted-printable\n\
        \n\
        <p>Hello =3D Bob.</p>\n\
        --XYZ\n\
        Content-Type: application/pdf; name=\"r.pdf\"\n\
        Content-Transfer-Encoding: base64\n\
        Content-Disposition: attachment; filename=\"r.pdf\"\n\
        \n\
        JVBERi0xLjQK\n\
        JSVFT0YK\n\
        --XYZ--\n";

    #[test]
    fn mixed_text_html_attachment() {
        // The line end before a boundary line belongs to the boundary
        // (RFC 2046 §5.1.1), so "Hello Bob." has no line end and 0 lines.
        assert_eq!(
            bodystructure(MIXED),
            line(
                "BODYSTRUCTURE",
                "((\"TEXT\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 10 0 NIL NIL NIL NIL)\
                 (\"TEXT\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 21 0 NIL NIL NIL NIL)\
                 (\"application\" \"pdf\" (\"name\" \"r.pdf\") NIL NIL \"base64\" 22 NIL \
                 (\"attachment\" (\"filename\" \"r.pdf\")) NIL NIL) \
                 \"mixed\" (\"boundary\" \"XYZ\") NIL NIL NIL)"
            )
        );
        assert_eq!(
            body(MIXED),
            line(
                "BODY",
                "((\"TEXT\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 10 0)\
                 (\"TEXT\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 21 0)\
                 (\"application\" \"pdf\" (\"name\" \"r.pdf\") NIL NIL \"base64\" 22) \"mixed\")"
            )
        );
        assert_eq!(
            env(MIXED),
            line(
                "ENVELOPE",
                "(\"Mon, 1 Jan 2024 10:00:00 +0000\" \"Report\" ((\"Alice\" NIL \"alice\" \"example.org\")) \
                 ((\"Alice\" NIL \"alice\" \"example.org\")) ((\"Alice\" NIL \"alice\" \"example.org\")) \
                 ((\"Bob\" NIL \"bob\" \"example.com\")) NIL NIL NIL \"<m1@example.org>\")"
            )
        );
    }

    #[test]
    fn mixed_sections() {
        let m = MIXED;
        assert_eq!(
            sec(m, Some(Section::Part(part(&[1])))).unwrap(),
            "Hello Bob."
        );
        assert_eq!(
            sec(m, Some(Section::Part(part(&[2])))).unwrap(),
            "<p>Hello =3D Bob.</p>"
        );
        assert_eq!(
            sec(m, Some(Section::Part(part(&[3])))).unwrap(),
            "JVBERi0xLjQK\r\nJSVFT0YK"
        );
        assert_eq!(sec(m, Some(Section::Part(part(&[4])))), None);
        // Dovecot: a leaf is its own part 1.
        assert_eq!(
            sec(m, Some(Section::Part(part(&[1, 1])))).unwrap(),
            "Hello Bob."
        );
        assert_eq!(sec(m, Some(Section::Part(part(&[1, 2])))), None);
        assert_eq!(
            sec(m, Some(Section::Mime(part(&[1])))).unwrap(),
            "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        );
        assert_eq!(sec(m, Some(Section::Header(Some(part(&[2]))))), None);
        let text = sec(m, Some(Section::Text(None))).unwrap();
        assert!(
            text.starts_with("This is a multi-part message.\r\n--XYZ\r\nContent-Type: text/plain")
        );
        assert!(text.ends_with("JSVFT0YK\r\n--XYZ--\r\n"));
        let header = sec(m, Some(Section::Header(None))).unwrap();
        assert_eq!(format!("{header}{text}"), crlf(m));
        assert_eq!(
            sec(
                m,
                Some(Section::HeaderFields(None, names(&["SUBJECT", "to"])))
            )
            .unwrap(),
            "To: Bob <bob@example.com>\r\nSubject: Report\r\n\r\n"
        );
        assert_eq!(
            sec(
                m,
                Some(Section::HeaderFieldsNot(
                    None,
                    names(&["from", "to", "subject", "date", "message-id"])
                ))
            )
            .unwrap(),
            "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XYZ\"\r\n\r\n"
        );
    }

    #[test]
    fn binary_decodes_leaf_parts() {
        let crlf = to_crlf(MIXED.as_bytes());
        let p = parse(&crlf);
        let bin = |n: &[u32]| binary_section(&p, &nums(n)).map(|b| b.into_owned());
        assert_eq!(bin(&[1]).unwrap(), b"Hello Bob.");
        assert_eq!(bin(&[2]).unwrap(), b"<p>Hello = Bob.</p>");
        assert_eq!(bin(&[3]).unwrap(), b"%PDF-1.4\n%%EOF\n");
        assert_eq!(bin(&[]).unwrap(), crlf.as_ref());
        assert_eq!(bin(&[4]), Err(BinaryError::NoSuchPart));

        let msg =
            to_crlf(b"Content-Type: text/plain\nContent-Transfer-Encoding: x-uuencode\n\nbegin\n");
        assert_eq!(
            binary_section(&parse(&msg), &nums(&[1])),
            Err(BinaryError::UnknownCte)
        );
        // Without MIME-Version or Content-Type, Content-* fields don't count.
        let msg = to_crlf(b"Content-Transfer-Encoding: base64\n\naGVsbG8=\n");
        assert_eq!(
            binary_section(&parse(&msg), &nums(&[1])).unwrap().as_ref(),
            b"aGVsbG8=\r\n"
        );
    }

    #[test]
    fn cte_decoders() {
        assert_eq!(decode_base64(b"aGVs\r\nbG8=\r\n"), b"hello");
        assert_eq!(decode_base64(b"aGVsbA"), b"hell");
        assert_eq!(decode_base64(b"a*G!V\x00sbG8"), b"hello");
        assert_eq!(decode_qp(b"a=3Db =\r\nc  \r\nd=zz=4"), b"a=b c\r\nd=zz=4");
        assert_eq!(decode_qp(b"caf=C3=a9\r\n"), "café\r\n".as_bytes());
    }

    const NESTED: &str = "From: a@b.c\n\
        Content-Type: multipart/mixed; boundary=outer\n\
        \n\
        --outer\n\
        Content-Type: multipart/alternative; boundary=inner\n\
        \n\
        --inner\n\
        Content-Type: text/plain\n\
        \n\
        plain\n\
        --inner\n\
        Content-Type: text/html\n\
        \n\
        <b>html</b>\n\
        --inner--\n\
        --outer\n\
        Content-Type: image/png\n\
        Content-Transfer-Encoding: base64\n\
        \n\
        iVBORw0KGgo=\n\
        --outer--\n";

    #[test]
    fn alternative_inside_mixed() {
        assert_eq!(
            bodystructure(NESTED),
            line(
                "BODYSTRUCTURE",
                "(((\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 5 0 NIL NIL NIL NIL)\
                 (\"TEXT\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 11 0 NIL NIL NIL NIL) \
                 \"alternative\" (\"boundary\" \"inner\") NIL NIL NIL)\
                 (\"image\" \"png\" NIL NIL NIL \"base64\" 12 NIL NIL NIL NIL) \
                 \"mixed\" (\"boundary\" \"outer\") NIL NIL NIL)"
            )
        );
        assert_eq!(
            body(NESTED),
            line(
                "BODY",
                "(((\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 5 0)\
                 (\"TEXT\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 11 0) \"alternative\")\
                 (\"image\" \"png\" NIL NIL NIL \"base64\" 12) \"mixed\")"
            )
        );
        let m = NESTED;
        assert_eq!(sec(m, Some(Section::Part(part(&[1, 1])))).unwrap(), "plain");
        assert_eq!(
            sec(m, Some(Section::Part(part(&[1, 2])))).unwrap(),
            "<b>html</b>"
        );
        assert_eq!(
            sec(m, Some(Section::Mime(part(&[1, 2])))).unwrap(),
            "Content-Type: text/html\r\n\r\n"
        );
        assert_eq!(sec(m, Some(Section::Part(part(&[1, 3])))), None);
        assert_eq!(
            sec(m, Some(Section::Part(part(&[2])))).unwrap(),
            "iVBORw0KGgo="
        );
        // As in Dovecot, the line end after the inner close delimiter stays
        // in the inner multipart.
        assert_eq!(
            sec(m, Some(Section::Part(part(&[1])))).unwrap(),
            "--inner\r\nContent-Type: text/plain\r\n\r\nplain\r\n--inner\r\nContent-Type: text/html\r\n\r\n\
             <b>html</b>\r\n--inner--\r\n"
        );
    }

    // Dovecot's test-imap-envelope.c vectors (from imaptest).
    #[test]
    fn dovecot_envelopes() {
        let msg = "Message-ID: <msg@id>\n\
            In-Reply-To: <reply@to.id>\n\
            Date: Thu, 15 Feb 2007 01:02:03 +0200\n\
            Subject: subject header\n\
            From: From Real <fromuser@fromdomain.org>\n\
            To: To Real <touser@todomain.org>\n\
            Cc: Cc Real <ccuser@ccdomain.org>\n\
            Bcc: Bcc Real <bccuser@bccdomain.org>\n\
            Sender: Sender Real <senderuser@senderdomain.org>\n\
            Reply-To: ReplyTo Real <replytouser@replytodomain.org>\n\
            \n\
            body\n";
        assert_eq!(
            env(msg),
            line(
                "ENVELOPE",
                "(\"Thu, 15 Feb 2007 01:02:03 +0200\" \"subject header\" \
                 ((\"From Real\" NIL \"fromuser\" \"fromdomain.org\")) \
                 ((\"Sender Real\" NIL \"senderuser\" \"senderdomain.org\")) \
                 ((\"ReplyTo Real\" NIL \"replytouser\" \"replytodomain.org\")) \
                 ((\"To Real\" NIL \"touser\" \"todomain.org\")) \
                 ((\"Cc Real\" NIL \"ccuser\" \"ccdomain.org\")) \
                 ((\"Bcc Real\" NIL \"bccuser\" \"bccdomain.org\")) \
                 \"<reply@to.id>\" \"<msg@id>\")"
            )
        );

        let msg = "Date: Thu, 15 Feb 2007 01:02:03 +0200\nFrom: user@domain\n\nbody\n";
        assert_eq!(
            env(msg),
            line(
                "ENVELOPE",
                "(\"Thu, 15 Feb 2007 01:02:03 +0200\" NIL ((NIL NIL \"user\" \"domain\")) \
                 ((NIL NIL \"user\" \"domain\")) ((NIL NIL \"user\" \"domain\")) NIL NIL NIL NIL NIL)"
            )
        );

        let msg = "Date: Thu, 15 Feb 2007 01:02:03 +0200\n\
            From: user@domain (Real Name)\n\
            To: group: g1@d1.org, g2@d2.org;, group2: g3@d3.org;\n\
            Cc: group:;, group2: (foo) ;\n\
            \n\
            body\n";
        assert_eq!(
            env(msg),
            line(
                "ENVELOPE",
                "(\"Thu, 15 Feb 2007 01:02:03 +0200\" NIL ((\"Real Name\" NIL \"user\" \"domain\")) \
                 ((\"Real Name\" NIL \"user\" \"domain\")) ((\"Real Name\" NIL \"user\" \"domain\")) \
                 ((NIL NIL \"group\" NIL)(NIL NIL \"g1\" \"d1.org\")(NIL NIL \"g2\" \"d2.org\")(NIL NIL NIL NIL)\
                 (NIL NIL \"group2\" NIL)(NIL NIL \"g3\" \"d3.org\")(NIL NIL NIL NIL)) \
                 ((NIL NIL \"group\" NIL)(NIL NIL NIL NIL)(NIL NIL \"group2\" NIL)(NIL NIL NIL NIL)) \
                 NIL NIL NIL)"
            )
        );

        // Empty Sender and Reply-To default to From.
        let msg = "Date: Thu, 15 Feb 2007 01:02:03 +0200\n\
            From: user@domain (Real Name)\n\
            Sender: \n\
            Reply-To: \n\
            \n\
            body\n";
        assert_eq!(
            env(msg),
            line(
                "ENVELOPE",
                "(\"Thu, 15 Feb 2007 01:02:03 +0200\" NIL ((\"Real Name\" NIL \"user\" \"domain\")) \
                 ((\"Real Name\" NIL \"user\" \"domain\")) ((\"Real Name\" NIL \"user\" \"domain\")) \
                 NIL NIL NIL NIL NIL)"
            )
        );

        let msg = "Date: Thu, 15 Feb 2007 01:02:03 +0200\nFrom: <@route:user@domain>\n\nbody\n";
        assert_eq!(
            env(msg),
            line(
                "ENVELOPE",
                "(\"Thu, 15 Feb 2007 01:02:03 +0200\" NIL ((NIL \"@route\" \"user\" \"domain\")) \
                 ((NIL \"@route\" \"user\" \"domain\")) ((NIL \"@route\" \"user\" \"domain\")) \
                 NIL NIL NIL NIL NIL)"
            )
        );
    }

    #[test]
    fn envelope_raw_values() {
        // Encoded words stay raw; folded values are unfolded; a subject or
        // name that had to change (or has quotes, 8-bit) is a literal.
        let msg = "Date: Mon, 1 Jan 2024\n 10:00:00 +0000\n\
            Subject: =?utf-8?q?caf=C3=A9?=\n and more\n\
            From: =?utf-8?q?J=C3=B6rg?= <jorg@example.de>\n\
            To: \"Doe, John\" <jd@example.org>, undisclosed\n\
            Cc: \"Q \\\"the\\\" man\" <q@example.org>\n\
            Message-ID:\n <folded@example.org>\n\
            \n\
            body\n";
        let jorg = "((\"=?utf-8?q?J=C3=B6rg?=\" NIL \"jorg\" \"example.de\"))";
        assert_eq!(
            env(msg),
            line(
                "ENVELOPE",
                &format!(
                    "(\"Mon, 1 Jan 2024 10:00:00 +0000\" {{30}}\r\n=?utf-8?q?caf=C3=A9?= and more \
                     {jorg} {jorg} {jorg} \
                     ((\"Doe, John\" NIL \"jd\" \"example.org\")(NIL NIL \"undisclosed\" \"MISSING_DOMAIN\")) \
                     (({{11}}\r\nQ \"the\" man NIL \"q\" \"example.org\")) NIL NIL \" <folded@example.org>\")"
                )
            )
        );

        assert_eq!(
            env("Subject: caf\u{e9}\n\n"),
            line(
                "ENVELOPE",
                "(NIL {5}\r\ncaf\u{e9} NIL NIL NIL NIL NIL NIL NIL NIL)"
            )
        );
        assert_eq!(
            env("Subject: \t two  spaces \n\n"),
            line(
                "ENVELOPE",
                "(NIL {10}\r\ntwo spaces NIL NIL NIL NIL NIL NIL NIL NIL)"
            )
        );
        // The last of repeated fields counts (as in Dovecot).
        assert_eq!(
            env("Subject: one\nSubject: two\n\n"),
            line("ENVELOPE", "(NIL \"two\" NIL NIL NIL NIL NIL NIL NIL NIL)")
        );
    }

    #[test]
    fn missing_headers() {
        assert_eq!(
            env("Subject: hi\n\nbody\n"),
            line("ENVELOPE", "(NIL \"hi\" NIL NIL NIL NIL NIL NIL NIL NIL)")
        );
        assert_eq!(
            env("Subject:\n\n"),
            line("ENVELOPE", "(NIL \"\" NIL NIL NIL NIL NIL NIL NIL NIL)")
        );
        assert_eq!(
            env(""),
            line("ENVELOPE", "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)")
        );
        assert_eq!(
            bodystructure(""),
            line("BODYSTRUCTURE", "(\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)")
        );
        assert_eq!(sec("", None).unwrap(), "");
        assert_eq!(sec("", Some(Section::Header(None))).unwrap(), "");
        assert_eq!(sec("", Some(Section::Text(None))).unwrap(), "");
        // A header without a body or blank line.
        assert_eq!(
            sec("Subject: x\n", Some(Section::Header(None))).unwrap(),
            "Subject: x\r\n"
        );
        assert_eq!(sec("Subject: x\n", Some(Section::Text(None))).unwrap(), "");
        assert_eq!(
            sec(
                "Subject: x\n",
                Some(Section::HeaderFields(None, names(&["subject"])))
            )
            .unwrap(),
            "Subject: x\r\n"
        );
    }

    #[test]
    fn content_type_details() {
        // No MIME-Version and no Content-Type: Content-* fields don't count.
        assert_eq!(
            body("Content-Transfer-Encoding: 8bit\n\nx\n"),
            line(
                "BODY",
                "(\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 1)"
            )
        );
        // An invalid Content-Type is text/plain (RFC 2045 §5.2).
        assert_eq!(
            body("MIME-Version: 1.0\nContent-Type: garbage\n\nx"),
            line(
                "BODY",
                "(\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 1 0)"
            )
        );
        // Case is kept; RFC 2231 continuations are joined, still encoded.
        assert_eq!(
            body(
                "MIME-Version: 1.0\nContent-Type: Application/X-Thing; NAME*0=\"a b\"; NAME*1=c; \
                 title*0*=us-ascii'en'x%20y; title*1=\"%z\"\n\nxx\n"
            ),
            line(
                "BODY",
                "(\"Application\" \"X-Thing\" (\"NAME\" \"a bc\" \"title*\" \"us-ascii'en'x%20y%25z\") \
                 NIL NIL \"7bit\" 4)"
            )
        );
        // multipart/digest parts default to message/rfc822.
        let digest =
            "Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: in\n\nhi\n--d--\n";
        assert_eq!(
            body(digest),
            line(
                "BODY",
                "((\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7bit\" 17 (NIL \"in\" NIL NIL NIL NIL NIL NIL NIL NIL) \
                 (\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 2 0) 2) \"digest\")"
            )
        );
    }

    #[test]
    fn boundary_edge_cases() {
        // A part whose header runs into the next boundary: no body, and the
        // line end before the boundary isn't part of the header.
        let msg = "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n--b\n\nx\n--b--\n";
        assert_eq!(
            body(msg),
            line(
                "BODY",
                "((\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0)\
                 (\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 1 0) \"mixed\")"
            )
        );
        assert_eq!(
            sec(msg, Some(Section::Mime(part(&[1])))).unwrap(),
            "Content-Type: text/plain"
        );
        assert_eq!(sec(msg, Some(Section::Mime(part(&[2])))).unwrap(), "\r\n");
        // Missing close delimiter: the last part runs to the end.
        let msg = "Content-Type: multipart/mixed; boundary=b\n\n--b\n\nabc\n";
        assert_eq!(
            sec(msg, Some(Section::Part(part(&[1])))).unwrap(),
            "abc\r\n"
        );
        // The longest matching boundary wins; trailing blanks after a
        // boundary are allowed.
        let msg = "Content-Type: multipart/mixed; boundary=a\n\n--a\n\
            Content-Type: multipart/mixed; boundary=ab\n\n--ab  \n\nin\n--ab--\n--a--\n";
        assert_eq!(sec(msg, Some(Section::Part(part(&[1, 1])))).unwrap(), "in");
        // An outer boundary ends an inner multipart that wasn't closed.
        let msg = "Content-Type: multipart/mixed; boundary=a\n\n--a\n\
            Content-Type: multipart/mixed; boundary=b\n\n--b\n\ninner\n--a\n\nsecond\n--a--\n";
        assert_eq!(
            sec(msg, Some(Section::Part(part(&[1, 1])))).unwrap(),
            "inner"
        );
        assert_eq!(sec(msg, Some(Section::Part(part(&[2])))).unwrap(), "second");
    }

    #[test]
    fn lf_and_crlf_input_agree() {
        assert_eq!(to_crlf(b"a\nb\r\nc\n").as_ref(), b"a\r\nb\r\nc\r\n");
        assert_eq!(to_crlf(b"\n\n").as_ref(), b"\r\n\r\n");
        assert!(matches!(to_crlf(b"a\r\nb\r\n"), Cow::Borrowed(_)));
        assert!(matches!(to_crlf(b"no line end"), Cow::Borrowed(_)));
        for msg in [DOVECOT_SIMPLE, DOVECOT_RFC822, MIXED, NESTED] {
            let lf = to_crlf(msg.as_bytes());
            let crlf_text = msg.replace('\n', "\r\n");
            let native = to_crlf(crlf_text.as_bytes());
            assert!(matches!(native, Cow::Borrowed(_)));
            assert_eq!(lf, native);
            let (a, b) = (parse(&lf), parse(&native));
            assert_eq!(envelope(&a), envelope(&b));
            assert_eq!(body_structure(&a, true), body_structure(&b, true));
        }
    }

    #[test]
    fn garbage_is_headerless_text() {
        let msg = "just some text\nno headers here\n\nmore\n";
        assert_eq!(sec(msg, Some(Section::Header(None))).unwrap(), "");
        assert_eq!(sec(msg, Some(Section::Text(None))).unwrap(), crlf(msg));
        assert_eq!(
            body(msg),
            line(
                "BODY",
                "(\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 41 4)"
            )
        );
        assert_eq!(
            env(msg),
            line("ENVELOPE", "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)")
        );
        // An mbox "From " line before real fields doesn't make it header-less.
        let msg = "From someone Mon Jan  1 00:00:00 2024\nSubject: s\n\nb\n";
        assert_eq!(sec(msg, Some(Section::Text(None))).unwrap(), "b\r\n");
        // NULs and 8-bit garbage still give valid IMAP strings.
        let crlf = to_crlf(b"Subject: a\0b\xff\n\n");
        assert_eq!(
            fetch_bytes(MessageDataItem::Envelope(envelope(&parse(&crlf)))),
            b"* 1 FETCH (ENVELOPE (NIL {4}\r\na\x80b\xff NIL NIL NIL NIL NIL NIL NIL NIL))\r\n"
        );
    }

    #[test]
    fn partial_ranges() {
        assert_eq!(partial(b"hello", 0, 5), b"hello");
        assert_eq!(partial(b"hello", 1, 3), b"ell");
        assert_eq!(partial(b"hello", 3, 100), b"lo");
        assert_eq!(partial(b"hello", 5, 1), b"");
        assert_eq!(partial(b"hello", 9, 1), b"");
        assert_eq!(partial(b"hello", u32::MAX, u32::MAX), b"");
        assert_eq!(partial(b"hello", 2, u32::MAX), b"llo");
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let deep = "Content-Type: message/rfc822\n\n".repeat(5000);
        let p = parse(deep.as_bytes());
        let _ = body_structure(&p, true);
        let _ = envelope(&p);
        let mut multi = String::new();
        for i in 0..3000 {
            multi.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=b{i}\n\n--b{i}\n"
            ));
        }
        let p = parse(multi.as_bytes());
        let _ = body_structure(&p, false);
        let deep_part: Vec<u32> = vec![1; 300];
        let _ = section(&p, Some(&Section::Part(part(&deep_part))));
        // Too many parts: the first 10000 or so are parts, the rest is text.
        let many = format!(
            "Content-Type: multipart/mixed; boundary=b\n\n{}",
            "--b\n".repeat(50_000)
        );
        let p = parse(many.as_bytes());
        assert!(section(&p, Some(&Section::Part(part(&[9_000])))).is_some());
        assert!(section(&p, Some(&Section::Part(part(&[10_001])))).is_none());
        assert_eq!(
            section(&p, Some(&Section::Text(None))).unwrap().len(),
            4 * 50_000
        );
    }

    /// Random messages built from MIME-ish pieces and random bytes: nothing
    /// panics, and HEADER + TEXT is always the whole message.
    #[test]
    fn fuzz_never_panics() {
        const PIECES: &[&[u8]] = &[
            b"From: a@b\n",
            b"Subject: x\n",
            b"To: g: a@b, <@r,@s:x@y>;, \"q\\\" \" <z@[1.2.3.4]> (c\\) (d)\n",
            b"Content-Type: multipart/mixed; boundary=b\n",
            b"Content-Type: multipart/digest; boundary=\"c\"\n",
            b"Content-Type: message/rfc822\n",
            b"Content-Type: text/plain; charset*0*=x'y'%; charset*2=z; q=\"\n",
            b"Content-Transfer-Encoding: base64\n",
            b"Content-Transfer-Encoding: quoted-printable\n",
            b"Content-Disposition: attachment; filename==?x?q?a?=\n",
            b"Content-Language: en, (x) fi,\n",
            b"MIME-Version: 1.0\n",
            b"\n",
            b"\r\n",
            b"\r",
            b"--b\n",
            b"--b--\n",
            b"--c\n",
            b"--c--",
            b" folded (\n",
            b"text =3D=\n",
            b"\"",
            b"(",
            b")",
            b"<",
            b">",
            b"@",
            b",",
            b";",
            b":",
            b"\\",
            b"\0",
            b"\xff\xfe",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let sections = [
            None,
            Some(Section::Header(None)),
            Some(Section::Text(None)),
            Some(Section::Part(part(&[1]))),
            Some(Section::Part(part(&[2, 1]))),
            Some(Section::Part(part(&[1, 1, 1]))),
            Some(Section::Mime(part(&[1]))),
            Some(Section::Header(Some(part(&[1])))),
            Some(Section::Text(Some(part(&[2])))),
            Some(Section::HeaderFields(None, names(&["subject", "from"]))),
            Some(Section::HeaderFieldsNot(Some(part(&[1])), names(&["to"]))),
        ];
        for _ in 0..600 {
            let mut raw = Vec::new();
            for _ in 0..next() % 40 {
                if next() % 4 == 0 {
                    raw.extend((0..next() % 8).map(|_| next() as u8));
                } else {
                    raw.extend_from_slice(PIECES[(next() % PIECES.len() as u64) as usize]);
                }
            }
            let crlf = to_crlf(&raw);
            let p = parse(&crlf);
            let _ = fetch(MessageDataItem::Envelope(envelope(&p)));
            let _ = fetch(MessageDataItem::BodyStructure(body_structure(&p, true)));
            let _ = fetch(MessageDataItem::Body(body_structure(&p, false)));
            for s in &sections {
                let _ = section(&p, s.as_ref());
            }
            for n in [&[][..], &[1], &[1, 1], &[2], &[2, 1]] {
                let _ = binary_section(&p, &nums(n));
            }
            let header = section(&p, Some(&Section::Header(None))).unwrap();
            let text = section(&p, Some(&Section::Text(None))).unwrap();
            assert_eq!([header.as_ref(), text.as_ref()].concat(), crlf.as_ref());
        }
    }
}
