//! CATENATE (RFC 4469): the message an APPEND builds from TEXT parts and
//! IMAP URLs (RFC 5092) of messages, or parts of them, the user already
//! has. A URL's bytes are exactly what `FETCH BODY[section]<partial>` gives
//! (the same [`message::section`] and [`message::partial`]).
//!
//! URL forms taken (RFC 5092 §6, §7): `imap://user@host/…` naming the
//! logged-in user, the absolute path `/mailbox[;UIDVALIDITY=n]/;UID=n`, and,
//! with a mailbox selected, `;UID=n` relative to it (the selected mailbox
//! is the base URL, as in Dovecot); each with an optional `/;SECTION=x` and
//! `/;PARTIAL=o[.l]` (RFC 5092 §6, RFC 5550 §5 URL-PARTIAL). URLAUTH URLs
//! are refused: it is not offered (RFC 4469 §3 leaves their use to servers
//! that do).

use imap_codec::decode::Decoder;
use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::fetch::{MacroOrMessageDataItemNames, MessageDataItemName, Section};
use imap_codec::imap_types::mailbox::Mailbox as MailboxName;
use imap_codec::imap_types::IntoStatic;
use imap_codec::CommandCodec;

use super::{read_message, Backend};
use crate::imap::message;
use crate::imap::proto::multiappend::CatPart;
use crate::store::maildir::Error as StoreError;

/// A message-part URL (RFC 5092 `imessagepart`), decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImapUrl {
    /// The mailbox name (UTF-8); `None`: the selected mailbox.
    pub mailbox: Option<String>,
    pub uidvalidity: Option<u32>,
    pub uid: u32,
    /// The section (`1.MIME`, `HEADER`), percent-decoded and parsed as
    /// FETCH parses `BODY[section]`.
    pub section: Option<Section<'static>>,
    /// `;PARTIAL=origin[.length]`.
    pub partial: Option<(u32, Option<u32>)>,
}

/// Why a CATENATE gave no message (RFC 4469 §5 response codes).
#[derive(Debug)]
pub(super) enum CatError {
    /// `NO [BADURL url]`: the URL as sent, and why.
    BadUrl(String, &'static str),
    /// `NO [TOOBIG]`: the result outgrows the message size limit.
    TooBig,
    /// The mail store failed.
    Store(StoreError),
}

/// `%xx` escapes undone (RFC 3986 §2.1); the result must be UTF-8 (RFC
/// 5092 §3: mailbox names and the rest are UTF-8, percent-encoded).
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Strips a case-insensitive `prefix`.
fn strip_prefix_ci<'s>(s: &'s str, prefix: &str) -> Option<&'s str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// Where a case-insensitive `needle` starts in `s`.
fn find_ci(s: &str, needle: &str) -> Option<usize> {
    s.to_ascii_uppercase().find(&needle.to_ascii_uppercase())
}

fn number(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn nz_number(s: &str) -> Option<u32> {
    number(s).filter(|n| *n > 0)
}

/// Parses a CATENATE URL of `user`'s. The error is the BADURL text.
pub fn parse_url(url: &str, user: &str) -> Result<ImapUrl, &'static str> {
    // RFC 4469 §3: without URLAUTH on offer, such URLs are not ours to use.
    if find_ci(url, ";URLAUTH=").is_some() {
        return Err("URLAUTH is not supported");
    }
    if url.contains(['?', '#']) {
        return Err("Not a message part URL");
    }
    let path = if let Some(rest) = strip_prefix_ci(url, "imap://") {
        // RFC 5092 §3.2: iserver = [iuserinfo "@"] host [":" port]; the
        // user must be the logged-in one (no other user's mail, no
        // anonymous access).
        let (server, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let Some((userinfo, _host)) = server.rsplit_once('@') else {
            return Err("URL of another user");
        };
        let enc_user = match find_ci(userinfo, ";AUTH=") {
            Some(p) => &userinfo[..p],
            None => userinfo,
        };
        if percent_decode(enc_user).as_deref() != Some(user) || user.is_empty() {
            return Err("URL of another user");
        }
        if path.is_empty() {
            return Err("Not a message part URL");
        }
        path
    } else {
        url
    };
    let (mailbox, rest) = if path.starts_with('/') {
        // "/" enc-mailbox [uidvalidity] iuid: the name may hold "/".
        let Some(at) = find_ci(path, "/;UID=") else {
            return Err("Not a message part URL (no UID)");
        };
        (Some(path.get(1..at).unwrap_or("")), &path[at + 1..])
    } else if strip_prefix_ci(path, ";UID=").is_some() {
        // A relative URL (RFC 5092 §7): its base is the selected mailbox
        // (with its UIDVALIDITY), as Dovecot resolves it.
        (None, path)
    } else {
        return Err("Invalid IMAP URL");
    };
    let (mailbox, uidvalidity) = match mailbox {
        None => (None, None),
        Some(m) => {
            let (name, validity) = match find_ci(m, ";UIDVALIDITY=") {
                Some(p) => {
                    let v =
                        nz_number(&m[p + ";UIDVALIDITY=".len()..]).ok_or("Invalid UIDVALIDITY")?;
                    (&m[..p], Some(v))
                }
                None => (m, None),
            };
            let name = percent_decode(name).ok_or("Invalid mailbox name")?;
            if name.is_empty() {
                return Err("Invalid mailbox name");
            }
            (Some(name), validity)
        }
    };
    // iuid-only ["/" isection-only] ["/" ipartial-only], in this order.
    let rest = strip_prefix_ci(rest, ";UID=").ok_or("Invalid IMAP URL")?;
    let (uid, mut rest) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let uid = nz_number(uid).ok_or("Invalid UID")?;
    let mut partial = None;
    if let Some(p) = find_ci(rest, "/;PARTIAL=") {
        let range = &rest[p + "/;PARTIAL=".len()..];
        let (origin, length) = match range.split_once('.') {
            Some((o, l)) => (o, Some(nz_number(l).ok_or("Invalid PARTIAL")?)),
            None => (range, None),
        };
        partial = Some((number(origin).ok_or("Invalid PARTIAL")?, length));
        rest = &rest[..p];
    }
    let mut section = None;
    if !rest.is_empty() {
        let s = strip_prefix_ci(rest, "/;SECTION=").ok_or("Invalid IMAP URL")?;
        let s = percent_decode(s).ok_or("Invalid SECTION")?;
        section = Some(parse_section(&s).ok_or("Invalid SECTION")?);
    }
    Ok(ImapUrl {
        mailbox,
        uidvalidity,
        uid,
        section,
        partial,
    })
}

/// The section text as FETCH's grammar has it (RFC 3501 §9 `section-spec`),
/// parsed by imap-codec so that every form FETCH takes is taken here.
fn parse_section(text: &str) -> Option<Section<'static>> {
    if text.contains(['\r', '\n', '[', ']']) {
        return None;
    }
    let line = format!("x FETCH 1 BODY.PEEK[{text}]\r\n");
    let (rest, cmd) = CommandCodec::default().decode(line.as_bytes()).ok()?;
    if !rest.is_empty() {
        return None;
    }
    let CommandBody::Fetch {
        macro_or_item_names: MacroOrMessageDataItemNames::MessageDataItemNames(items),
        ..
    } = cmd.body
    else {
        return None;
    };
    match items.as_slice() {
        [MessageDataItemName::BodyExt {
            section: Some(s), ..
        }] => Some(s.clone().into_static()),
        _ => None,
    }
}

/// RFC 4469 §5 `url-resp-text` (with erratum 2002): TEXT-CHARs but `]`,
/// the URL otherwise as sent (as Dovecot echoes it); anything else
/// percent-encoded.
pub fn url_resp_text(url: &str) -> String {
    let mut s = String::with_capacity(url.len());
    for b in url.bytes() {
        if (0x20..0x7f).contains(&b) && b != b']' {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

impl Backend {
    /// The bytes one URL stands for.
    fn url_bytes(&self, url: &str) -> Result<Vec<u8>, CatError> {
        let bad = |why| CatError::BadUrl(url.to_string(), why);
        let u = parse_url(url, &self.user).map_err(bad)?;
        let name = match &u.mailbox {
            Some(m) => {
                let m =
                    MailboxName::try_from(m.clone()).map_err(|_| bad("Invalid mailbox name"))?;
                // RFC 5092 §3: names in URLs are UTF-8, whatever was ENABLEd.
                self.name_of(&m, true)
            }
            None => match &self.selected {
                Some(sel) => sel.name.clone(),
                None => return Err(bad("Mailbox-relative IMAP URL, but no mailbox selected")),
            },
        };
        let mb = match self.open(&name) {
            Ok(mb) => mb,
            Err(StoreError::NotFound(_)) | Err(StoreError::InvalidName(..)) => {
                return Err(bad("Mailbox doesn't exist"))
            }
            Err(e) => return Err(CatError::Store(e)),
        };
        if u.uidvalidity.is_some_and(|v| v != mb.uidvalidity()) {
            return Err(bad("Invalid UIDVALIDITY"));
        }
        let raw = read_message(&mb, u.uid).ok_or_else(|| bad("Message not found"))?;
        let bytes = match &u.section {
            None => raw,
            Some(section) => {
                let parsed = message::parse(&raw);
                // Unlike FETCH (an empty string), a part that isn't there
                // can't be catenated: RFC 4469 §3 wants BADURL.
                message::section(&parsed, Some(section))
                    .ok_or_else(|| bad("Section not found"))?
                    .into_owned()
            }
        };
        Ok(match u.partial {
            None => bytes,
            Some((origin, length)) => {
                message::partial(&bytes, origin, length.unwrap_or(u32::MAX)).to_vec()
            }
        })
    }

    /// The message a CATENATE list builds (RFC 4469 §3), checked against the
    /// message size limit as it grows.
    pub(super) fn catenated(&self, parts: &[CatPart]) -> Result<Vec<u8>, CatError> {
        let mut msg = Vec::new();
        for part in parts {
            match part {
                CatPart::Text(t) => msg.extend_from_slice(t),
                CatPart::Url(url) => msg.extend_from_slice(&self.url_bytes(url)?),
            }
            if self.max_message > 0 && msg.len() as u64 > self.max_message {
                return Err(CatError::TooBig);
            }
        }
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Result<ImapUrl, &'static str> {
        parse_url(s, "john@example.com")
    }

    #[test]
    fn url_forms() {
        let u = url("/INBOX;UIDVALIDITY=785799047/;UID=113330/;SECTION=1.5.9").unwrap();
        assert_eq!(u.mailbox.as_deref(), Some("INBOX"));
        assert_eq!(u.uidvalidity, Some(785799047));
        assert_eq!(u.uid, 113330);
        assert_eq!(u.section, parse_section("1.5.9"));
        assert!(matches!(u.section, Some(Section::Part(_))));
        assert_eq!(u.partial, None);
        let u = url("imap://john%40example.com;AUTH=*@mail.example.com:143/a%2Fb%20c/;uid=5/;section=HEADER.FIELDS%20(SUBJECT)/;partial=2.10").unwrap();
        assert_eq!(u.mailbox.as_deref(), Some("a/b c"));
        assert_eq!(u.uidvalidity, None);
        assert!(matches!(u.section, Some(Section::HeaderFields(None, _))));
        assert_eq!(u.partial, Some((2, Some(10))));
        let u = url(";UID=20/;PARTIAL=0").unwrap();
        assert_eq!((u.mailbox, u.uid, u.partial), (None, 20, Some((0, None))));
    }

    #[test]
    fn urls_that_are_refused() {
        for (u, why) in [
            ("imap://jane@example.com/INBOX/;UID=1", "another user"),
            ("imap://mail.example.com/INBOX/;UID=1", "another user"),
            ("/INBOX/;UID=1;URLAUTH=anonymous", "URLAUTH"),
            ("/INBOX;UIDVALIDITY=0/;UID=1", "UIDVALIDITY"),
            ("/INBOX/;UID=0", "UID"),
            ("/INBOX/;UID=x", "UID"),
            ("/INBOX", "no UID"),
            ("/INBOX?SUBJECT%20x", "message part"),
            ("/;UID=1", "mailbox name"),
            ("INBOX/;UID=1", "Invalid IMAP URL"),
            ("/INBOX/;UID=1/;SECTION=", "SECTION"),
            ("/INBOX/;UID=1/;SECTION=1.FOO", "SECTION"),
            ("/INBOX/;UID=1/;PARTIAL=1.0", "PARTIAL"),
            ("/INBOX/;UID=1/;PARTIAL=", "PARTIAL"),
            ("/INBOX/;UID=1/junk", "Invalid IMAP URL"),
            ("/IN%ZZ/;UID=1", "mailbox name"),
        ] {
            let e = url(u).unwrap_err();
            assert!(e.contains(why), "{u}: {e}");
        }
        assert!(parse_url("imap://@h/INBOX/;UID=1", "").is_err());
    }

    #[test]
    fn sections_parse_as_fetch_parses_them() {
        assert!(matches!(parse_section("1.MIME"), Some(Section::Mime(_))));
        assert!(matches!(
            parse_section("HEADER"),
            Some(Section::Header(None))
        ));
        assert!(matches!(
            parse_section("2.TEXT"),
            Some(Section::Text(Some(_)))
        ));
        assert!(matches!(
            parse_section("HEADER.FIELDS (SUBJECT FROM)"),
            Some(Section::HeaderFields(None, _))
        ));
        for bad in ["MIME", "0", "1.", "x", "1] BODY[2", "HEADER.FIELDS ()"] {
            assert!(parse_section(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn bad_url_text_stays_inside_the_response_code() {
        assert_eq!(url_resp_text("/a]b\r\n%20"), "/a%5Db%0D%0A%20");
        assert_eq!(url_resp_text("/INBOX/;UID=1"), "/INBOX/;UID=1");
    }
}
