//! The APPEND forms imap-codec 2.0.0-alpha does not parse: MULTIAPPEND
//! (RFC 3502), `APPEND mailbox` followed by more than one message, each with
//! optional flags and date; and CATENATE (RFC 4469), a message built from
//! TEXT literals and URLs of messages (or their parts) already stored, alone
//! or as any of the messages of a MULTIAPPEND. Only commands imap-codec
//! refused come here.
//!
//! ```text
//! append = "APPEND" SP mailbox 1*append-message
//! append-message = append-opts SP append-data
//! append-opts = [SP flag-list] [SP date-time]
//! append-data = literal / literal8 / "CATENATE" SP "(" cat-part *(SP cat-part) ")"
//! cat-part = "TEXT" SP literal / "URL" SP astring      ; RFC 4469 §5
//! ```
//!
//! A `~{n}` literal8 (RFC 3516 §4.4) is taken for a message or a TEXT part,
//! as BINARY is offered; a plain literal holding NUL is a syntax error (RFC
//! 3501 §4.3: CHAR8 excludes NUL).

use super::tokens::{tokenize, Kind, Token};

/// One message of a MULTIAPPEND.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendMessage {
    /// Flag names as sent (`\Seen`, `$Label1`).
    pub flags: Vec<String>,
    /// The date-time string, without quotes.
    pub date: Option<String>,
    pub data: AppendData,
}

/// What a message is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendData {
    /// The message itself, from a literal or literal8.
    Literal(Vec<u8>),
    /// CATENATE (RFC 4469 §3): the parts, in order; never empty.
    Catenate(Vec<CatPart>),
}

/// One part of a CATENATE list (RFC 4469 §5 `cat-part`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatPart {
    /// `TEXT literal`: these bytes.
    Text(Vec<u8>),
    /// `URL astring`: an IMAP URL (RFC 5092), as sent, for the backend to
    /// resolve.
    Url(String),
}

/// A parsed MULTIAPPEND: the tag, the mailbox name as sent, the messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiAppend {
    pub mailbox: String,
    pub messages: Vec<AppendMessage>,
}

/// `Some((tag, result))` for an APPEND with more than one message or with
/// CATENATE; `None` if the line is not an APPEND at all.
pub fn parse(line: &[u8]) -> Option<(String, Result<MultiAppend, String>)> {
    let toks = tokenize(line).ok()?;
    let word = |i: usize| toks.get(i).map(|t| t.value(line).into_owned());
    let tag = String::from_utf8(word(0)?).ok()?;
    if !word(1)?.eq_ignore_ascii_case(b"APPEND") {
        return None;
    }
    let parsed = (|| {
        let mailbox = toks.get(2).ok_or("missing mailbox")?;
        if mailbox.kind == Kind::Open || mailbox.kind == Kind::Close {
            return Err("bad mailbox name".to_string());
        }
        let mailbox = String::from_utf8_lossy(&mailbox.value(line)).into_owned();
        let mut messages = Vec::new();
        let mut i = 3;
        while i < toks.len() {
            let mut flags = Vec::new();
            if toks[i].kind == Kind::Open {
                i += 1;
                while toks.get(i).ok_or("missing ')'")?.kind != Kind::Close {
                    if toks[i].kind != Kind::Atom {
                        return Err("bad flag".into());
                    }
                    flags.push(String::from_utf8_lossy(&toks[i].value(line)).into_owned());
                    i += 1;
                }
                i += 1;
            }
            let mut date = None;
            if toks.get(i).is_some_and(|t| t.kind == Kind::Quoted) {
                date = Some(String::from_utf8_lossy(&toks[i].value(line)).into_owned());
                i += 1;
            }
            let data = match toks.get(i) {
                Some(t) if matches!(t.kind, Kind::Literal | Kind::Literal8) => {
                    i += 1;
                    AppendData::Literal(literal(t, line)?)
                }
                Some(t)
                    if t.kind == Kind::Atom && t.value(line).eq_ignore_ascii_case(b"CATENATE") =>
                {
                    i += 1;
                    let (parts, next) = catenate(&toks, i, line)?;
                    i = next;
                    AppendData::Catenate(parts)
                }
                _ => return Err("expected a message literal".into()),
            };
            messages.push(AppendMessage { flags, date, data });
        }
        if messages.is_empty() {
            return Err("no message".into());
        }
        Ok(MultiAppend { mailbox, messages })
    })();
    Some((tag, parsed))
}

/// A literal's bytes: NUL only in a literal8 (RFC 3501 §4.3, RFC 3516 §4.4).
fn literal(t: &Token, line: &[u8]) -> Result<Vec<u8>, String> {
    let data = t.value(line).into_owned();
    if t.kind == Kind::Literal && data.contains(&0) {
        return Err("NUL in a literal (use a literal8)".into());
    }
    Ok(data)
}

/// The `( cat-part *(SP cat-part) )` list starting at `toks[i]` (RFC 4469
/// §5), and the index after its `)`.
fn catenate(toks: &[Token], mut i: usize, line: &[u8]) -> Result<(Vec<CatPart>, usize), String> {
    if toks.get(i).map(|t| t.kind) != Some(Kind::Open) {
        return Err("expected '(' after CATENATE".into());
    }
    i += 1;
    let mut parts = Vec::new();
    loop {
        let t = toks.get(i).ok_or("missing ')' after the CATENATE parts")?;
        if t.kind == Kind::Close {
            i += 1;
            break;
        }
        let word = t.value(line);
        let arg = toks.get(i + 1);
        if t.kind == Kind::Atom && word.eq_ignore_ascii_case(b"TEXT") {
            match arg {
                Some(a) if matches!(a.kind, Kind::Literal | Kind::Literal8) => {
                    parts.push(CatPart::Text(literal(a, line)?))
                }
                _ => return Err("TEXT needs a literal".into()),
            }
        } else if t.kind == Kind::Atom && word.eq_ignore_ascii_case(b"URL") {
            match arg {
                // astring (RFC 3501 §9): atom, quoted string or literal.
                Some(a) if matches!(a.kind, Kind::Atom | Kind::Quoted | Kind::Literal) => {
                    let url = String::from_utf8(a.value(line).into_owned())
                        .map_err(|_| "URL is not UTF-8".to_string())?;
                    if url.is_empty() {
                        return Err("empty URL".into());
                    }
                    parts.push(CatPart::Url(url));
                }
                _ => return Err("URL needs a string".into()),
            }
        } else {
            return Err("unknown CATENATE part (TEXT or URL expected)".into());
        }
        i += 2;
    }
    // RFC 4469 §5: cat-part *(SP cat-part), at least one.
    if parts.is_empty() {
        return Err("Empty CATENATE list".into());
    }
    Ok((parts, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_messages_with_and_without_options() {
        let line = b"A003 APPEND saved-messages (\\Seen) {5}\r\nhello \"07-Feb-1994 22:43:04 -0800\" {3}\r\nabc ($Label1 \\Flagged) {2}\r\nhi\r\n";
        let (tag, m) = parse(line).unwrap();
        assert_eq!(tag, "A003");
        let m = m.unwrap();
        assert_eq!(m.mailbox, "saved-messages");
        assert_eq!(m.messages.len(), 3);
        assert_eq!(m.messages[0].flags, ["\\Seen"]);
        assert_eq!(m.messages[0].data, AppendData::Literal(b"hello".to_vec()));
        assert_eq!(
            m.messages[1].date.as_deref(),
            Some("07-Feb-1994 22:43:04 -0800")
        );
        assert_eq!(m.messages[2].flags, ["$Label1", "\\Flagged"]);
        assert_eq!(m.messages[2].data, AppendData::Literal(b"hi".to_vec()));
    }

    #[test]
    fn malformed_ones_are_errors_and_other_commands_are_not_ours() {
        assert!(parse(b"a SELECT INBOX\r\n").is_none());
        assert!(parse(b"a APPEND INBOX (\\Seen {3}\r\nabc\r\n")
            .unwrap()
            .1
            .is_err());
        assert!(parse(b"a APPEND INBOX {3}\r\nabc junk\r\n")
            .unwrap()
            .1
            .is_err());
        assert!(parse(b"a APPEND INBOX\r\n").unwrap().1.is_err());
    }
}
