//! IMAP strings, as Dovecot's `imap-quote` writes them (RFC 3501 §4.3,
//! RFC 9051 §4.3): quoted when plain, a literal otherwise.

use imap_codec::imap_types::core::{IString, Literal, NString, Quoted};

/// A quoted string, or a literal when the value has CR, LF, 8-bit bytes or
/// more than four quoted-specials. NULs (allowed in neither) become 0x80.
pub(super) fn istring(s: &[u8]) -> IString<'static> {
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

pub(super) fn nstring(s: Option<&[u8]>) -> NString<'static> {
    NString(s.map(istring))
}

/// An nstring with CR and LF removed (unfolded).
pub(super) fn nstring_nolf(s: Option<&[u8]>) -> NString<'static> {
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
pub(super) fn for_humans(s: &[u8]) -> IString<'static> {
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
