//! The MIME tree (RFC 2045, RFC 2046 §5.1 multiparts, RFC 2046 §5.2.1
//! message/rfc822) as Dovecot's `message-parser` finds it: each entity's
//! header fields and the byte ranges of its header and body, and the
//! Content-* fields (RFC 2045, RFC 2183, RFC 2231, RFC 3282, RFC 2557) that
//! BODYSTRUCTURE reports.

use super::rfc822::Tok;

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
/// How a part is rendered in BODYSTRUCTURE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ty {
    Text,
    Rfc822,
    Multipart,
    Other,
}

/// One MIME entity: `data[hdr..body]` is its header (with the blank line
/// when there is one), `data[body..end]` its body, without the CRLF that
/// precedes a following boundary line (RFC 2046 §5.1.1).
#[derive(Debug)]
pub(super) struct Node {
    hdr: usize,
    body: usize,
    pub(super) end: usize,
    /// The header ends with a blank line.
    pub(super) blank: bool,
    pub(super) fields: Vec<Field>,
    pub(super) mime: Mime,
    pub(super) ty: Ty,
    /// The parts of a multipart, or the message of a message/rfc822 part.
    pub(super) children: Vec<Node>,
}

impl Node {
    /// A header-less, empty text/plain entity at `at`.
    pub(super) fn empty(at: usize) -> Node {
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

    pub(super) fn header_bytes<'d>(&self, data: &'d [u8]) -> &'d [u8] {
        data.get(self.hdr..self.body).unwrap_or_default()
    }

    pub(super) fn body_bytes<'d>(&self, data: &'d [u8]) -> &'d [u8] {
        data.get(self.body..self.end).unwrap_or_default()
    }

    /// The value of the last `name` field, as in [`Field::value`].
    pub(super) fn last<'d>(&self, data: &'d [u8], name: &str) -> Option<&'d [u8]> {
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
pub(super) struct Field {
    pub(super) start: usize,
    colon: Option<usize>,
    pub(super) end: usize,
}

impl Field {
    /// The field name: what precedes the colon, without trailing blanks (the
    /// whole line when there is no colon).
    pub(super) fn name<'d>(&self, data: &'d [u8]) -> &'d [u8] {
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
    pub(super) fn is_valid(&self, data: &[u8]) -> bool {
        let name = self.name(data);
        self.colon.is_some() && !name.is_empty() && name.iter().all(|&b| (33..=126).contains(&b))
    }
}

pub(super) fn strip_eol(s: &[u8]) -> &[u8] {
    s.strip_suffix(b"\r\n")
        .or_else(|| s.strip_suffix(b"\n"))
        .unwrap_or(s)
}

/// Index just past the LF ending the line at `pos` (or the end of data).
pub(super) fn line_end(data: &[u8], pos: usize) -> usize {
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

pub(super) fn count_lf(s: &[u8]) -> u32 {
    u32_len(s.iter().filter(|&&b| b == b'\n').count())
}

pub(super) fn u32_len(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// What the entity being parsed is inside of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Parent {
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
pub(super) struct Hit {
    line: usize,
    end: usize,
    index: usize,
    close: bool,
}

/// Dovecot's message parser on a whole buffer: every line start is checked
/// against all active boundaries (of all enclosing multiparts), and the
/// longest matching prefix wins (RFC 2046 §5.1.1 and §5.1.2).
pub(super) struct Parser<'a> {
    data: &'a [u8],
    bounds: Vec<Bound>,
    next_id: usize,
    /// Entities parsed so far.
    parts: usize,
}

impl<'a> Parser<'a> {
    pub(super) fn new(data: &'a [u8]) -> Self {
        Parser {
            data,
            bounds: Vec::new(),
            next_id: 0,
            parts: 0,
        }
    }

    /// Parses the entity at `start`; returns it and the boundary line of an
    /// enclosing multipart that ended it (`None`: the data ended).
    pub(super) fn entity(
        &mut self,
        start: usize,
        parent: Parent,
        depth: usize,
    ) -> (Node, Option<Hit>) {
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
// ---------------------------------------------------------------------------
// Content-* fields (RFC 2045, RFC 2183, RFC 2231, RFC 3282, RFC 2557).

/// A parameter: attribute and value.
pub(super) type Param = (Vec<u8>, Vec<u8>);
pub(super) type Params = Vec<Param>;

/// The Content-* fields of an entity; the first of each counts.
#[derive(Debug, Default)]
pub(super) struct Mime {
    /// Type and subtype, when Content-Type is valid.
    pub(super) ctype: Option<(Vec<u8>, Vec<u8>)>,
    pub(super) params: Params,
    pub(super) cte: Option<Vec<u8>>,
    pub(super) id: Option<Vec<u8>>,
    pub(super) description: Option<Vec<u8>>,
    pub(super) md5: Option<Vec<u8>>,
    pub(super) disposition: Option<(Vec<u8>, Params)>,
    pub(super) language: Option<Vec<Vec<u8>>>,
    pub(super) location: Option<Vec<u8>>,
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
