//! The extended LIST command (RFC 5258 LIST-EXTENDED, RFC 6154 SPECIAL-USE,
//! RFC 5819 LIST-STATUS), which imap-codec 2.0.0-alpha.10 does not parse:
//!
//! ```text
//! LIST [SP "(" select-opts ")"] SP reference SP (pattern / "(" patterns ")")
//!      [SP "RETURN" SP "(" return-opts ")"]
//! ```
//!
//! Only lines that use one of the extensions are taken here; a plain
//! `LIST ref pattern` still goes through imap-codec.

use super::tokens::{tokenize, Kind, Token};

/// A parsed extended LIST.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListExtended {
    pub reference: String,
    pub patterns: Vec<String>,
    /// Selection option SUBSCRIBED.
    pub select_subscribed: bool,
    /// Selection option SPECIAL-USE (RFC 6154 §5.1).
    pub select_special_use: bool,
    /// Selection option RECURSIVEMATCH (accepted; CHILDINFO is given).
    pub recursive_match: bool,
    /// Return option SUBSCRIBED: add `\Subscribed`.
    pub return_subscribed: bool,
    /// Return option STATUS (RFC 5819): the STATUS items to send per mailbox.
    pub return_status: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Open,
    Close,
    /// Atom, quoted string or literal, as text.
    Str(String),
}

/// The command's tokens, with atoms, quoted strings and literals as text;
/// `None` when it is malformed.
fn tokens(line: &[u8]) -> Option<Vec<Tok>> {
    let toks = tokenize(line).ok()?;
    let tok = |t: &Token| match t.kind {
        Kind::Open => Tok::Open,
        Kind::Close => Tok::Close,
        Kind::Atom | Kind::Quoted | Kind::Literal | Kind::Literal8 => {
            Tok::Str(String::from_utf8_lossy(&t.value(line)).into_owned())
        }
    };
    Some(toks.iter().map(tok).collect())
}

/// A parenthesised list of words (no nesting except STATUS's list).
fn words(toks: &[Tok], pos: &mut usize) -> Result<Vec<String>, String> {
    if toks.get(*pos) != Some(&Tok::Open) {
        return Err("expected '('".into());
    }
    *pos += 1;
    let mut out = Vec::new();
    loop {
        match toks.get(*pos) {
            Some(Tok::Close) => {
                *pos += 1;
                return Ok(out);
            }
            Some(Tok::Str(s)) => {
                out.push(s.clone());
                *pos += 1;
            }
            Some(Tok::Open) => return Err("unexpected '('".into()),
            None => return Err("missing ')'".into()),
        }
    }
}

/// `Some` when `line` (a whole command) is an extended LIST: the tag and
/// the parsed command, or the reason it is malformed.
pub fn parse(line: &[u8]) -> Option<(String, Result<ListExtended, String>)> {
    let toks = tokens(line)?;
    let (Some(Tok::Str(tag)), Some(Tok::Str(cmd))) = (toks.first(), toks.get(1)) else {
        return None;
    };
    if !cmd.eq_ignore_ascii_case("LIST") {
        return None;
    }
    // `LIST (` selection options, `LIST ref (` a pattern list, or RETURN.
    let extended = toks.get(2) == Some(&Tok::Open)
        || toks.get(3) == Some(&Tok::Open)
        || toks
            .iter()
            .any(|t| matches!(t, Tok::Str(s) if s.eq_ignore_ascii_case("RETURN")));
    if !extended {
        return None;
    }
    Some((tag.clone(), parse_args(&toks[2..])))
}

fn parse_args(toks: &[Tok]) -> Result<ListExtended, String> {
    let mut l = ListExtended::default();
    let mut pos = 0;
    if toks.first() == Some(&Tok::Open) {
        for opt in words(toks, &mut pos)? {
            match opt.to_ascii_uppercase().as_str() {
                "SUBSCRIBED" => l.select_subscribed = true,
                "SPECIAL-USE" => l.select_special_use = true,
                "RECURSIVEMATCH" => l.recursive_match = true,
                "REMOTE" => {}
                other => return Err(format!("unknown LIST selection option {other}")),
            }
        }
        if l.recursive_match && !l.select_subscribed {
            return Err("RECURSIVEMATCH needs another selection option".into());
        }
    }
    match toks.get(pos) {
        Some(Tok::Str(r)) => l.reference = r.clone(),
        _ => return Err("missing reference".into()),
    }
    pos += 1;
    match toks.get(pos) {
        Some(Tok::Open) => l.patterns = words(toks, &mut pos)?,
        Some(Tok::Str(p)) => {
            l.patterns = vec![p.clone()];
            pos += 1;
        }
        _ => return Err("missing mailbox pattern".into()),
    }
    if let Some(Tok::Str(r)) = toks.get(pos) {
        if !r.eq_ignore_ascii_case("RETURN") {
            return Err(format!("unexpected {r}"));
        }
        pos += 1;
        if toks.get(pos) != Some(&Tok::Open) {
            return Err("expected '(' after RETURN".into());
        }
        pos += 1;
        loop {
            match toks.get(pos) {
                Some(Tok::Close) => {
                    pos += 1;
                    break;
                }
                Some(Tok::Str(o)) => {
                    pos += 1;
                    match o.to_ascii_uppercase().as_str() {
                        "SUBSCRIBED" => l.return_subscribed = true,
                        "CHILDREN" | "SPECIAL-USE" => {} // always returned
                        "STATUS" => l.return_status = Some(words(toks, &mut pos)?),
                        other => return Err(format!("unknown LIST return option {other}")),
                    }
                }
                _ => return Err("bad RETURN options".into()),
            }
        }
    }
    if pos != toks.len() {
        return Err("junk after LIST arguments".into());
    }
    if l.patterns.is_empty() {
        return Err("no mailbox patterns".into());
    }
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_list_is_left_to_imap_codec() {
        assert!(parse(b"a LIST \"\" *\r\n").is_none());
        assert!(parse(b"a LIST \"\" \"INBOX\"\r\n").is_none());
        assert!(parse(b"a SELECT (x)\r\n").is_none());
    }

    #[test]
    fn selection_and_return_options() {
        let (tag, l) = parse(b"t1 LIST (SUBSCRIBED) \"\" \"*\"\r\n").unwrap();
        assert_eq!(tag, "t1");
        let l = l.unwrap();
        assert!(l.select_subscribed);
        assert_eq!(l.patterns, vec!["*"]);

        let (_, l) = parse(b"t2 list (special-use) \"\" (\"*\" %)\r\n").unwrap();
        let l = l.unwrap();
        assert!(l.select_special_use);
        assert_eq!(l.patterns, vec!["*", "%"]);

        let (_, l) =
            parse(b"t3 LIST \"\" * RETURN (SUBSCRIBED CHILDREN STATUS (MESSAGES UNSEEN))\r\n")
                .unwrap();
        let l = l.unwrap();
        assert!(l.return_subscribed && !l.select_subscribed);
        assert_eq!(
            l.return_status,
            Some(vec!["MESSAGES".into(), "UNSEEN".into()])
        );

        let (_, l) = parse(b"t4 LIST \"\" {1}\r\n* RETURN (SPECIAL-USE)\r\n").unwrap();
        assert_eq!(l.unwrap().patterns, vec!["*"]);
    }

    #[test]
    fn malformed_extended_lists_are_errors() {
        for bad in [
            &b"a LIST (BOGUS) \"\" *\r\n"[..],
            b"a LIST (SUBSCRIBED \"\" *\r\n",
            b"a LIST () \"\"\r\n",
            b"a LIST \"\" * RETURN (X)\r\n",
            b"a LIST \"\" * RETURN SUBSCRIBED\r\n",
            b"a LIST (RECURSIVEMATCH) \"\" *\r\n",
            b"a LIST \"\" () \r\n",
        ] {
            let (_, r) = parse(bad).expect("extended form");
            assert!(r.is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
