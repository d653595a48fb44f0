//! Content-Transfer-Encoding decoding for BINARY (RFC 3516 §4.2; RFC 2045
//! §6.7 quoted-printable, §6.8 base64), lenient like mail readers: bad
//! characters are skipped, bad escapes kept.

use super::mime::{line_end, strip_eol};

pub(super) fn decode_base64(input: &[u8]) -> Vec<u8> {
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

pub(super) fn decode_qp(input: &[u8]) -> Vec<u8> {
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
