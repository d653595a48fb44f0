//! The header work that is ours rather than mail-auth's: finding the
//! header section, and removing `Authentication-Results` fields that claim
//! our authserv-id. RFC 8601 §5: a border MTA must delete (or rename)
//! results that say they are from it before adding its own, or anyone could
//! send mail already "verified" by us.

use std::borrow::Cow;

/// The end of the header section: the index just past the empty line (or
/// the whole message if there is none). LF or CRLF line ends.
pub fn header_end(message: &[u8]) -> usize {
    let mut pos = 0;
    while pos < message.len() {
        let end = memchr::memchr(b'\n', &message[pos..]).map_or(message.len(), |i| pos + i + 1);
        let line = &message[pos..end];
        if line == b"\n" || line == b"\r\n" {
            return end;
        }
        pos = end;
    }
    message.len()
}

/// One header field: where it is (`end` is past its last line, folded
/// continuation lines included), its name, and where its value starts
/// (just past the colon).
struct Field<'m> {
    start: usize,
    value: usize,
    end: usize,
    name: &'m [u8],
}

fn fields(head: &[u8]) -> Vec<Field<'_>> {
    let mut out: Vec<Field> = Vec::new();
    let mut pos = 0;
    while pos < head.len() {
        let end = memchr::memchr(b'\n', &head[pos..]).map_or(head.len(), |i| pos + i + 1);
        let line = &head[pos..end];
        if matches!(line.first(), Some(b' ' | b'\t')) {
            // RFC 5322 §2.2.3: a continuation of the field above.
            if let Some(last) = out.last_mut() {
                last.end = end;
            }
        } else if line != b"\n" && line != b"\r\n" {
            // The colon may follow spaces after the name.
            let (name, value) = match memchr::memchr(b':', line) {
                Some(i) => (trim(&line[..i]), pos + i + 1),
                None => (&line[..0], end),
            };
            out.push(Field {
                start: pos,
                value,
                end,
                name,
            });
        }
        pos = end;
    }
    out
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &s[start..end]
}

/// The authserv-id of an `Authentication-Results` value (RFC 8601 §2.2:
/// `[CFWS] authserv-id [CFWS authres-version] ";" …`), comments skipped,
/// lower-cased; `None` if there is none.
pub fn authserv_id(value: &[u8]) -> Option<String> {
    let mut out = Vec::new();
    let mut depth = 0u32;
    let mut quoted = false;
    let mut i = 0;
    while i < value.len() {
        let c = value[i];
        match c {
            b'\\' if depth > 0 || quoted => i += 1,
            b'(' if !quoted => depth += 1,
            b')' if !quoted && depth > 0 => depth -= 1,
            _ if depth > 0 => {}
            b'"' => quoted = !quoted,
            b';' if !quoted => break,
            c if c.is_ascii_whitespace() && !quoted => {
                if !out.is_empty() {
                    break;
                }
            }
            c => out.push(c.to_ascii_lowercase()),
        }
        i += 1;
    }
    let id = String::from_utf8_lossy(&out).trim().to_string();
    (!id.is_empty()).then_some(id)
}

/// `message` without the `Authentication-Results` fields whose
/// authserv-id is `ours` (case-insensitive; a trailing dot ignored).
/// Borrowed when there is nothing to remove. The body is never touched.
pub fn strip_forged_results<'m>(message: &'m [u8], ours: &str) -> Cow<'m, [u8]> {
    let ours = ours.trim_end_matches('.').to_ascii_lowercase();
    let end = header_end(message);
    let forged: Vec<(usize, usize)> = fields(&message[..end])
        .into_iter()
        .filter(|f| f.name.eq_ignore_ascii_case(b"Authentication-Results"))
        .filter(|f| {
            authserv_id(&message[f.value..f.end]).is_some_and(|id| id.trim_end_matches('.') == ours)
        })
        .map(|f| (f.start, f.end))
        .collect();
    if forged.is_empty() {
        return Cow::Borrowed(message);
    }
    let mut out = Vec::with_capacity(message.len());
    let mut pos = 0;
    for (s, e) in forged {
        out.extend_from_slice(&message[pos..s]);
        pos = e;
    }
    out.extend_from_slice(&message[pos..]);
    Cow::Owned(out)
}

/// How many header fields have one of `names` (lower-case).
pub fn count_fields(message: &[u8], names: &[&str]) -> usize {
    fields(&message[..header_end(message)])
        .iter()
        .filter(|f| {
            names
                .iter()
                .any(|w| f.name.eq_ignore_ascii_case(w.as_bytes()))
        })
        .count()
}

/// Names of the header fields present, lower-cased, each once, in order.
pub fn field_names(message: &[u8]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for f in fields(&message[..header_end(message)]) {
        let n = String::from_utf8_lossy(f.name).to_ascii_lowercase();
        if !n.is_empty() && !names.contains(&n) {
            names.push(n);
        }
    }
    names
}

/// The first `From:` address's domain (for choosing a signing key).
pub fn from_address(message: &[u8]) -> Option<String> {
    let end = header_end(message);
    let from = fields(&message[..end])
        .into_iter()
        .find(|f| f.name.eq_ignore_ascii_case(b"From"))?;
    let value = &message[from.value..from.end];
    let text = String::from_utf8_lossy(value);
    let addr = match (text.rfind('<'), text.rfind('>')) {
        (Some(a), Some(b)) if a < b => text[a + 1..b].trim().to_string(),
        _ => text
            .split_whitespace()
            .find(|w| w.contains('@'))?
            .to_string(),
    };
    addr.contains('@').then(|| {
        addr.trim_matches(|c| c == '<' || c == '>')
            .to_ascii_lowercase()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &str = "Received: from a\r\nAuthentication-Results: mx.example.com;\r\n\tdkim=pass header.d=example.com\r\nAuthentication-Results: other.example.net; spf=fail\r\nauthentication-results : (comment) MX.Example.COM. ; dmarc=pass\r\nFrom: Boss <ceo@example.com>\r\nSubject: x\r\n\r\nAuthentication-Results: mx.example.com; body text stays\r\n";

    #[test]
    fn forged_results_for_our_id_go_and_others_stay() {
        let out = strip_forged_results(MSG.as_bytes(), "mx.example.com");
        let out = String::from_utf8(out.into_owned()).unwrap();
        assert_eq!(
            out,
            "Received: from a\r\nAuthentication-Results: other.example.net; spf=fail\r\nFrom: Boss <ceo@example.com>\r\nSubject: x\r\n\r\nAuthentication-Results: mx.example.com; body text stays\r\n"
        );
        assert!(matches!(
            strip_forged_results(MSG.as_bytes(), "elsewhere.example"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn authserv_ids_skip_comments_and_versions() {
        assert_eq!(
            authserv_id(b" mx.example.com 1; spf=pass").as_deref(),
            Some("mx.example.com")
        );
        assert_eq!(
            authserv_id(b"(c (nested)) MX.example.com;").as_deref(),
            Some("mx.example.com")
        );
        assert_eq!(authserv_id(b" ; spf=pass"), None);
        assert_eq!(authserv_id(b"").as_deref(), None);
        assert_eq!(
            authserv_id(b"\"quoted id\"; x").as_deref(),
            Some("quoted id")
        );
    }

    #[test]
    fn lf_messages_and_headers_without_a_body() {
        let m = b"Authentication-Results: mx; a=b\nFrom: x@y.example\n";
        assert_eq!(&*strip_forged_results(m, "MX"), b"From: x@y.example\n");
        assert_eq!(header_end(b"A: b\n\nbody"), 6);
        assert_eq!(from_address(m).as_deref(), Some("x@y.example"));
        assert_eq!(
            from_address(MSG.as_bytes()).as_deref(),
            Some("ceo@example.com")
        );
        assert_eq!(
            field_names(MSG.as_bytes()),
            vec!["received", "authentication-results", "from", "subject"]
        );
    }
}
