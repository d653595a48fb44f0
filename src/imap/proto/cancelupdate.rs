//! CANCELUPDATE (RFC 5267 §4.3.5), which imap-codec 2.0.0-alpha does not
//! parse: stops the ADDTO/REMOVEFROM updates of the searches named by
//! their tags. Only commands imap-codec refused come here.
//!
//! ```text
//! command-select =/ "CANCELUPDATE" 1*(SP quoted)
//! ```

use super::tokens::{tokenize, Kind};

/// `Some((tag, result))` for a CANCELUPDATE: the tags it names, or why it
/// is malformed; `None` if the line is not a CANCELUPDATE at all.
pub fn parse(line: &[u8]) -> Option<(String, Result<Vec<String>, String>)> {
    let (Ok(toks) | Err(toks)) = tokenize(line);
    let tag = toks.first().filter(|t| t.kind == Kind::Atom)?;
    let tag = String::from_utf8(tag.raw(line).to_vec()).ok()?;
    let name = toks.get(1).filter(|t| t.kind == Kind::Atom)?;
    if !name.raw(line).eq_ignore_ascii_case(b"CANCELUPDATE") {
        return None;
    }
    if tokenize(line).is_err() {
        return Some((tag, Err("malformed arguments".into())));
    }
    let args = &toks[2..];
    if args.is_empty() {
        return Some((tag, Err("missing tag".into())));
    }
    let mut tags = Vec::with_capacity(args.len());
    for t in args {
        if t.kind != Kind::Quoted {
            return Some((tag, Err("tags must be quoted strings".into())));
        }
        tags.push(String::from_utf8_lossy(&t.value(line)).into_owned());
    }
    Some((tag, Ok(tags)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancelupdate_takes_quoted_tags() {
        assert_eq!(
            parse(b"c1 CANCELUPDATE \"B01\"\r\n"),
            Some(("c1".into(), Ok(vec!["B01".into()])))
        );
        assert_eq!(
            parse(b"c2 cancelupdate \"a\" \"b\\\"c\"\r\n"),
            Some(("c2".into(), Ok(vec!["a".into(), "b\"c".into()])))
        );
        for bad in [
            "c3 CANCELUPDATE\r\n",
            "c3 CANCELUPDATE B01\r\n",
            "c3 CANCELUPDATE (\"B01\")\r\n",
            "c3 CANCELUPDATE {3}\r\nB01\r\n",
        ] {
            let (tag, r) = parse(bad.as_bytes()).unwrap();
            assert_eq!(tag, "c3");
            assert!(r.is_err(), "{bad:?}");
        }
        assert_eq!(parse(b"c4 NOOP\r\n"), None);
        assert_eq!(parse(b"c4 UID CANCELUPDATE \"x\"\r\n"), None);
    }
}
