//! MULTIAPPEND (RFC 3502): `APPEND mailbox` followed by more than one
//! message, each with optional flags and date, which imap-codec 2.0.0-alpha
//! does not parse. Only commands imap-codec refused come here.
//!
//! ```text
//! append = "APPEND" SP mailbox 1*append-message
//! append-message = append-opts SP append-data
//! append-opts = [SP flag-list] [SP date-time]
//! ```

use super::tokens::{tokenize, Kind};

/// One message of a MULTIAPPEND.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendMessage {
    /// Flag names as sent (`\Seen`, `$Label1`).
    pub flags: Vec<String>,
    /// The date-time string, without quotes.
    pub date: Option<String>,
    pub data: Vec<u8>,
}

/// A parsed MULTIAPPEND: the tag, the mailbox name as sent, the messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiAppend {
    pub mailbox: String,
    pub messages: Vec<AppendMessage>,
}

/// `Some((tag, result))` for an APPEND with more than one message; `None`
/// if the line is not an APPEND at all.
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
            match toks.get(i) {
                Some(t) if t.kind == Kind::Literal => {
                    messages.push(AppendMessage {
                        flags,
                        date,
                        data: t.value(line).into_owned(),
                    });
                    i += 1;
                }
                _ => return Err("expected a message literal".into()),
            }
        }
        if messages.is_empty() {
            return Err("no message".into());
        }
        Ok(MultiAppend { mailbox, messages })
    })();
    Some((tag, parsed))
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
        assert_eq!(m.messages[0].data, b"hello");
        assert_eq!(
            m.messages[1].date.as_deref(),
            Some("07-Feb-1994 22:43:04 -0800")
        );
        assert_eq!(m.messages[2].flags, ["$Label1", "\\Flagged"]);
        assert_eq!(m.messages[2].data, b"hi");
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
