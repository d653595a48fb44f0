#![no_main]
//! APPEND with CATENATE (RFC 4469) and MULTIAPPEND as the session parses it
//! when imap-codec refuses it, and the IMAP URLs (RFC 5092) the backend
//! resolves: never a panic; a parsed CATENATE has parts, a parsed URL a
//! UID, and a BADURL response code's text never ends the code early.
use libfuzzer_sys::fuzz_target;
use pigeonpost::imap::backend::{parse_catenate_url, url_resp_text};
use pigeonpost::imap::proto::multiappend::{parse, AppendData, CatPart};

fn check_url(url: &str) {
    if let Ok(u) = parse_catenate_url(url, "john@example.com") {
        assert!(u.uid > 0);
        assert!(u.mailbox.as_ref().is_none_or(|m| !m.is_empty()));
    }
    let text = url_resp_text(url);
    assert!(!text.contains([']', '\r', '\n', '\0']), "{text:?}");
}

fuzz_target!(|data: &[u8]| {
    if let Some((_, Ok(m))) = parse(data) {
        assert!(!m.messages.is_empty());
        for msg in &m.messages {
            if let AppendData::Catenate(parts) = &msg.data {
                assert!(!parts.is_empty());
                for p in parts {
                    if let CatPart::Url(u) = p {
                        check_url(u);
                    }
                }
            }
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        check_url(s);
    }
});
