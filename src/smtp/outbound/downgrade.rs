//! 8-bit to 7-bit conversion for peers without 8BITMIME (RFC 6152 §3):
//! every MIME leaf part whose body has 8-bit bytes and no transfer
//! encoding is re-encoded as quoted-printable (RFC 2045 §6.7) and gets a
//! `Content-Transfer-Encoding: quoted-printable` header, as Postfix does.
//! Headers are left alone (8-bit headers cannot be downgraded), and so are
//! `message/*` parts, which may not be encoded (RFC 2046 §5.2.1).

use mail_parser::{Encoding, MessageParser, PartType};

/// The converted message, or `None` when nothing needs converting.
pub fn to_7bit(message: &[u8]) -> Option<Vec<u8>> {
    let parsed = MessageParser::default().parse(message)?;
    let mut spans: Vec<(usize, usize, usize)> = Vec::new();
    for part in &parsed.parts {
        let leaf = matches!(
            part.body,
            PartType::Text(_) | PartType::Html(_) | PartType::Binary(_) | PartType::InlineBinary(_)
        );
        if !leaf || part.encoding != Encoding::None {
            continue;
        }
        let (h, b, e) = (
            part.offset_header as usize,
            part.offset_body as usize,
            (part.offset_end as usize).min(message.len()),
        );
        if h > b || b > e {
            continue;
        }
        if message[b..e].iter().any(|&c| c >= 0x80) {
            spans.push((h, b, e));
        }
    }
    if spans.is_empty() {
        return None;
    }
    spans.sort();
    let mut out = Vec::with_capacity(message.len() + message.len() / 4);
    let mut pos = 0;
    for (h, b, e) in spans {
        if h < pos {
            continue;
        }
        out.extend_from_slice(&message[pos..h]);
        rewrite_header(&message[h..b], &mut out);
        qp_encode(&message[b..e], &mut out);
        pos = e;
    }
    out.extend_from_slice(&message[pos..]);
    Some(out)
}

/// Copies a part's header block without its Content-Transfer-Encoding
/// field(s) and adds ours before the blank line that ends it.
fn rewrite_header(header: &[u8], out: &mut Vec<u8>) {
    let mut lines: Vec<&[u8]> = header.split_inclusive(|&c| c == b'\n').collect();
    // The trailing empty line (if any) ends the block.
    let blank = match lines.last() {
        Some(l) if *l == b"\r\n" || *l == b"\n" => lines.pop(),
        _ => None,
    };
    let mut skipping = false;
    for line in lines {
        let continuation = matches!(line.first(), Some(b' ') | Some(b'\t'));
        if !continuation {
            skipping =
                line.len() >= 26 && line[..26].eq_ignore_ascii_case(b"content-transfer-encoding:");
        }
        if !skipping {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(b"Content-Transfer-Encoding: quoted-printable\r\n");
    out.extend_from_slice(blank.unwrap_or(b"\r\n"));
}

/// RFC 2045 §6.7 quoted-printable, keeping the line structure (CRLF).
fn qp_encode(body: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for line in body.split_inclusive(|&c| c == b'\n') {
        let (text, eol) = match line.strip_suffix(b"\r\n") {
            Some(t) => (t, true),
            None => match line.strip_suffix(b"\n") {
                Some(t) => (t, true),
                None => (line, false),
            },
        };
        let mut col = 0;
        for (i, &c) in text.iter().enumerate() {
            let last = i + 1 == text.len();
            // Rule 3: whitespace at the end of a line is encoded.
            let literal =
                (c == b' ' || c == b'\t') && !last || (33..=126).contains(&c) && c != b'=';
            let width = if literal { 1 } else { 3 };
            if col + width > 75 {
                out.extend_from_slice(b"=\r\n");
                col = 0;
            }
            if literal {
                out.push(c);
            } else {
                out.extend_from_slice(&[b'=', HEX[(c >> 4) as usize], HEX[(c & 15) as usize]]);
            }
            col += width;
        }
        // A body without a final line break keeps none.
        if eol {
            out.extend_from_slice(b"\r\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_8bit_message_becomes_quoted_printable() {
        let msg = "From: a@example.com\r\nSubject: x\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße aus Köln = 100%\r\ntrailing space \r\n";
        let out = String::from_utf8(to_7bit(msg.as_bytes()).unwrap()).unwrap();
        assert!(out.is_ascii(), "{out}");
        assert!(out.contains("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nGr=C3=BC=C3=9Fe aus K=C3=B6ln =3D 100%\r\ntrailing space=20\r\n"), "{out}");
        assert_eq!(out.matches("Content-Transfer-Encoding").count(), 1);
        // Decodes back to the same text.
        let parsed = MessageParser::default().parse(out.as_bytes()).unwrap();
        assert_eq!(
            parsed.body_text(0).unwrap(),
            "Grüße aus Köln = 100%\r\ntrailing space \r\n"
        );
    }

    #[test]
    fn only_the_8bit_parts_of_a_multipart_change() {
        let msg = "From: a@example.com\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nplain ascii\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nnaïve\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--b--\r\n";
        let out = String::from_utf8(to_7bit(msg.as_bytes()).unwrap()).unwrap();
        assert!(out.is_ascii(), "{out}");
        assert!(
            out.contains("--b\r\nContent-Type: text/plain\r\n\r\nplain ascii\r\n--b\r\n"),
            "{out}"
        );
        assert!(out.contains("charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nna=C3=AFve\r\n--b\r\n"), "{out}");
        assert!(
            out.contains("Content-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--b--"),
            "{out}"
        );
        let parsed = MessageParser::default().parse(out.as_bytes()).unwrap();
        assert_eq!(parsed.body_text(1).unwrap().trim_end(), "naïve");
    }

    #[test]
    fn long_lines_get_soft_breaks_and_ascii_needs_nothing() {
        let line = "é".repeat(60);
        let msg = format!("Subject: x\r\n\r\n{line}\r\n");
        let out = String::from_utf8(to_7bit(msg.as_bytes()).unwrap()).unwrap();
        assert!(out.lines().all(|l| l.len() <= 76), "{out}");
        let parsed = MessageParser::default().parse(out.as_bytes()).unwrap();
        assert_eq!(parsed.body_text(0).unwrap().trim_end(), line);
        assert!(to_7bit(b"Subject: x\r\n\r\nascii only\r\n").is_none());
    }
}
