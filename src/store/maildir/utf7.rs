//! Modified UTF-7 mailbox names (RFC 3501 §5.1.3).
//!
//! Dovecot stores Maildir++ folder names on disk in this form (`Entwürfe` is
//! the directory `.Entw&APw-rfe`), and IMAP4rev1 clients send it on the wire.
//! Printable US-ASCII other than `&` stands for itself, `&` is `&-`, and any
//! other run of characters is UTF-16BE in base64 (with `,` instead of `/`, no
//! padding) between `&` and `-`.

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/// Why a modified UTF-7 name can't be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid modified UTF-7 in {0:?}")]
pub struct Utf7Error(pub String);

fn is_direct(c: char) -> bool {
    ('\x20'..='\x7e').contains(&c) && c != '&'
}

/// Encodes a UTF-8 mailbox name as modified UTF-7.
pub fn utf8_to_mutf7(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if pending.is_empty() {
            return;
        }
        out.push('&');
        let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            let chars = chunk.len() + 1;
            for i in 0..chars {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out.push('-');
        pending.clear();
    };
    for c in name.chars() {
        if is_direct(c) {
            flush(&mut pending, &mut out);
            out.push(c);
        } else if c == '&' {
            flush(&mut pending, &mut out);
            out.push_str("&-");
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut pending, &mut out);
    out
}

/// Decodes a modified UTF-7 mailbox name to UTF-8.
///
/// Strict like Dovecot's `imap_utf7_to_utf8`: 8-bit or control characters,
/// an unterminated or empty shift sequence, non-zero padding bits, broken
/// surrogates and base64 encoding of characters that must be direct are all
/// errors.
pub fn mutf7_to_utf8(name: &str) -> Result<String, Utf7Error> {
    let err = || Utf7Error(name.to_string());
    let bytes = name.as_bytes();
    let mut out = String::with_capacity(name.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'&' {
            if !(0x20..=0x7e).contains(&b) {
                return Err(err());
            }
            out.push(b as char);
            i += 1;
            continue;
        }
        i += 1;
        let start = i;
        while i < bytes.len() && bytes[i] != b'-' {
            i += 1;
        }
        if i == bytes.len() {
            return Err(err());
        }
        let run = &bytes[start..i];
        i += 1; // '-'
        if run.is_empty() {
            out.push('&');
            continue;
        }
        // base64 → bytes
        let mut acc: u32 = 0;
        let mut nbits = 0;
        let mut raw = Vec::with_capacity(run.len() * 3 / 4);
        for &c in run {
            let v = B64.iter().position(|&x| x == c).ok_or_else(err)? as u32;
            acc = (acc << 6) | v;
            nbits += 6;
            if nbits >= 8 {
                nbits -= 8;
                raw.push((acc >> nbits) as u8);
                acc &= (1 << nbits) - 1;
            }
        }
        if acc != 0 || nbits >= 6 || raw.len() % 2 != 0 {
            return Err(err());
        }
        let units: Vec<u16> = raw
            .chunks(2)
            .map(|p| u16::from_be_bytes([p[0], p[1]]))
            .collect();
        for c in char::decode_utf16(units) {
            let c = c.map_err(|_| err())?;
            if is_direct(c) || c == '&' {
                // must have been written directly
                return Err(err());
            }
            out.push(c);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for (utf8, utf7) in [
            ("Entwürfe", "Entw&APw-rfe"),
            ("INBOX", "INBOX"),
            ("Tom & Jerry", "Tom &- Jerry"),
            ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
            ("Gelöschte Elemente", "Gel&APY-schte Elemente"),
            ("😀", "&2D3eAA-"),
            ("", ""),
        ] {
            assert_eq!(utf8_to_mutf7(utf8), utf7, "{utf8}");
            assert_eq!(mutf7_to_utf8(utf7).as_deref(), Ok(utf8), "{utf7}");
        }
    }

    #[test]
    fn rejects_invalid() {
        for bad in ["&", "&Jjo", "&Jjo!-", "Entwü", "&AGE-", "&2D3-"] {
            assert!(mutf7_to_utf8(bad).is_err(), "{bad}");
        }
    }
}
