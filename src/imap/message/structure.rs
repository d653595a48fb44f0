//! BODY and BODYSTRUCTURE (RFC 3501 §7.4.2, RFC 9051 §7.5.2) of a MIME
//! tree, as Dovecot's `imap-bodystructure` writes them.

use imap_codec::imap_types::body::{
    BasicFields, Body, BodyStructure, Disposition, Language, Location, MultiPartExtensionData,
    SinglePartExtensionData, SpecificFields,
};
use imap_codec::imap_types::core::{IString, Vec1};

use super::address::envelope_of;
use super::mime::{count_lf, u32_len, Mime, Node, Params, Ty};
use super::quote::{istring, nstring_nolf};

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

pub(super) fn structure(data: &[u8], node: &Node, extended: bool) -> BodyStructure<'static> {
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
