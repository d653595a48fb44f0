//! The message library behind FETCH (RFC 3501 §6.4.5 and §7.4.2, RFC 9051
//! §6.4.5 and §7.5.2): ENVELOPE, BODY and BODYSTRUCTURE,
//! `BODY[section]<partial>`, and `BINARY[section]` (RFC 3516).
//!
//! Why this is our own code rather than mail-parser (which SEARCH uses):
//! FETCH answers byte for byte as Dovecot does, so a client moving from
//! Dovecot sees the same ENVELOPE, BODYSTRUCTURE and section contents, and
//! the same sizes. That needs the exact byte ranges of headers, bodies and
//! parts and the raw (undecoded) header values, found by Dovecot's rules;
//! mail-parser decodes values, and draws part boundaries, malformed headers
//! and address lists its own way. So the parsing rules here are Dovecot's
//! (`message-parser`, `rfc822-parser`, `message-address`) and so is the
//! output (`imap-bodystructure`, `imap-envelope`, `imap-quote`).
//!
//! Everything works on a CRLF copy of the message ([`to_crlf`]): IMAP sizes,
//! offsets and contents are those of the CRLF form (RFC 3501 §2.3.4 and
//! §6.4.5). One difference comes from imap-codec:
//! it always writes the types of text and message/rfc822 parts as `"TEXT"`
//! and `"MESSAGE" "RFC822"`, where Dovecot keeps the case of the message
//! (these strings are case-insensitive, RFC 3501 §4.3 and §7.4.2).
//!
//! Another difference, for unusable input: a message whose header section
//! holds no `name: value` field at all (plain text, garbage) is taken as
//! having no header, so all of it is the body (Dovecot would call it all
//! header).
//!
//! This file is the API and the section addressing; the MIME tree is in
//! `mime`, the header-value tokenizer in `rfc822`, addresses and ENVELOPE
//! in `address`, BODYSTRUCTURE in `structure`, IMAP strings in `quote` and
//! the BINARY decoders in `decode`.

mod address;
mod decode;
mod mime;
mod quote;
mod rfc822;
mod structure;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::num::NonZeroU32;

use imap_codec::imap_types::body::BodyStructure;
use imap_codec::imap_types::core::{AString, NString};
use imap_codec::imap_types::envelope::Envelope;
use imap_codec::imap_types::fetch::{Part, Section};

use address::envelope_of;
use decode::{decode_base64, decode_qp};
use mime::{Node, Parent, Parser, Ty};
use structure::structure;

/// Stored messages have LF line endings; IMAP sends CRLF.
pub use crate::wire::to_crlf;

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
    let (mut root, _) = Parser::new(crlf).entity(0, Parent::Top, 0);
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

/// The last `name` field's value, unfolded, NIL when there is none (for
/// the structure cache: THREAD=REFERENCES reads `References`).
pub fn header_nstring(parsed: &Parsed<'_>, name: &str) -> NString<'static> {
    quote::nstring_nolf(parsed.root.last(parsed.data, name))
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
