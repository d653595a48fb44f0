//! FETCH data items: ENVELOPE, BODYSTRUCTURE, BODY[section]<partial>.
//! (Temporary minimal version; replaced by the full renderer.)

use std::borrow::Cow;

use imap_codec::imap_types::body::BodyStructure;
use imap_codec::imap_types::envelope::Envelope;
use imap_codec::imap_types::fetch::Section;

pub struct Parsed<'a> {
    pub raw: &'a [u8],
}

pub fn to_crlf(raw: &[u8]) -> Cow<'_, [u8]> {
    if !raw.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r') && raw.first() != Some(&b'\n') {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 30);
    let mut prev = 0u8;
    for &b in raw {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    Cow::Owned(out)
}

pub fn parse(crlf: &[u8]) -> Parsed<'_> {
    Parsed { raw: crlf }
}

pub fn envelope(_p: &Parsed) -> Option<Envelope<'static>> {
    None
}

pub fn body_structure(_p: &Parsed, _extended: bool) -> Option<BodyStructure<'static>> {
    None
}

pub fn section(p: &Parsed, section: Option<&Section>) -> Option<Vec<u8>> {
    let end = p
        .raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .unwrap_or(p.raw.len());
    match section {
        None => Some(p.raw.to_vec()),
        Some(Section::Header(None)) => Some(p.raw[..end].to_vec()),
        Some(Section::Text(None)) => Some(p.raw[end..].to_vec()),
        _ => None,
    }
}

pub fn partial(data: &[u8], origin: u32, length: u32) -> &[u8] {
    let start = (origin as usize).min(data.len());
    let end = start.saturating_add(length as usize).min(data.len());
    &data[start..end]
}
