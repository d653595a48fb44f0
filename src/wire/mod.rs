//! Byte-level helpers for the text protocols, shared by SMTP, POP3 and
//! IMAP: dot-stuffing with CRLF line endings (the DATA of the SMTP client,
//! POP3's RETR and TOP) and LF → CRLF conversion of stored messages. Pure
//! functions on bytes; no protocol state.

pub mod dotstuff;

use std::borrow::Cow;

pub use dotstuff::DotStuffer;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
