//! A light tokenizer for whole IMAP commands (RFC 3501 §4 and §9, RFC 9051
//! §4 and §9), shared by the two places that look at a command before
//! imap-codec does ([`super::rev2`] and [`super::list_ext`]): atoms, `(` and
//! `)`, quoted strings and literals, so that what a string or a literal
//! holds is never taken for syntax.
//!
//! Literals are `{n}` or `{n+}` (RFC 7888), then the line end and `n` bytes
//! of data, as the fragmentizer leaves them in the command. It is lenient
//! where only malformed commands differ, as both callers always were, and
//! leaves the verdict to imap-codec: an atom runs to the next space, line
//! end or parenthesis (a `"` inside it is kept), and a bare CR or LF, or
//! nothing, may follow `{n}`. A literal8 `~{n}` (RFC 3516 §4.4: APPEND and
//! its CATENATE TEXT parts, RFC 4469 §5) is a [`Kind::Literal8`]; a `~{`
//! that isn't one is atom text. There is no bracket handling: FETCH's
//! `BODY[HEADER.FIELDS (A B)]` splits into several tokens, which is fine for
//! what the callers look at.

use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Anything else, up to a space, line end or parenthesis.
    Atom,
    Quoted,
    Literal,
    /// `~{n}` (RFC 3516): like a literal, and it may hold NUL.
    Literal8,
    Open,
    Close,
}

/// One token: `line[start..end]`, as it was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
    /// Where a quoted string's contents or a literal's data start.
    data: usize,
}

impl Token {
    /// The token as it was sent (with quotes, with a literal's `{n}`).
    pub fn raw<'l>(&self, line: &'l [u8]) -> &'l [u8] {
        &line[self.start..self.end]
    }

    /// The string a token stands for: an atom as it is, a quoted string
    /// without its quotes and backslashes, a literal's data.
    pub fn value<'l>(&self, line: &'l [u8]) -> Cow<'l, [u8]> {
        match self.kind {
            Kind::Quoted => {
                let inner = &line[self.data..self.end - 1];
                if !inner.contains(&b'\\') {
                    return Cow::Borrowed(inner);
                }
                let mut s = Vec::with_capacity(inner.len());
                let mut i = 0;
                while i < inner.len() {
                    if inner[i] == b'\\' {
                        i += 1;
                    }
                    if let Some(c) = inner.get(i) {
                        s.push(*c);
                    }
                    i += 1;
                }
                Cow::Owned(s)
            }
            _ => Cow::Borrowed(&line[self.data..self.end]),
        }
    }
}

/// Splits a whole command (literal data included) into tokens. Malformed
/// input (an unterminated quoted string, a bad or short literal) ends the
/// list: `Err` then holds the tokens before it, for a caller that makes do
/// with them (imap-codec reports the error).
pub fn tokenize(line: &[u8]) -> Result<Vec<Token>, Vec<Token>> {
    let mut out = Vec::new();
    let mut i = 0;
    let n = line.len();
    while i < n {
        let start = i;
        let simple = |kind, end| Token {
            kind,
            start,
            end,
            data: start,
        };
        match line[i] {
            b' ' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'(' => {
                i += 1;
                out.push(simple(Kind::Open, i));
                continue;
            }
            b')' => {
                i += 1;
                out.push(simple(Kind::Close, i));
                continue;
            }
            b'"' => {
                i += 1;
                while i < n && line[i] != b'"' {
                    i += if line[i] == b'\\' { 2 } else { 1 };
                }
                if i >= n {
                    return Err(out);
                }
                i += 1;
                out.push(Token {
                    kind: Kind::Quoted,
                    start,
                    end: i,
                    data: start + 1,
                });
                continue;
            }
            _ => {}
        }
        let literal8 = line[i] == b'~' && line.get(i + 1) == Some(&b'{');
        if line[i] == b'{' || literal8 {
            let b = if literal8 { i + 1 } else { i };
            let close = line[b..].iter().position(|&c| c == b'}').map(|p| b + p);
            let len = close.and_then(|close| {
                std::str::from_utf8(&line[b + 1..close])
                    .ok()
                    .map(|s| s.trim_end_matches('+'))
                    .and_then(|s| s.parse::<usize>().ok())
                    .map(|len| (close, len))
            });
            let Some((close, len)) = len else {
                if literal8 {
                    // Not a literal8 after all: atom text, as before.
                    while i < n && !matches!(line[i], b' ' | b'\r' | b'\n' | b'(' | b')') {
                        i += 1;
                    }
                    out.push(simple(Kind::Atom, i));
                    continue;
                }
                return Err(out);
            };
            let mut data = close + 1;
            if line.get(data) == Some(&b'\r') {
                data += 1;
            }
            if line.get(data) == Some(&b'\n') {
                data += 1;
            }
            let Some(end) = data.checked_add(len).filter(|e| *e <= n) else {
                return Err(out);
            };
            i = end;
            out.push(Token {
                kind: if literal8 {
                    Kind::Literal8
                } else {
                    Kind::Literal
                },
                start,
                end,
                data,
            });
            continue;
        }
        while i < n && !matches!(line[i], b' ' | b'\r' | b'\n' | b'(' | b')') {
            i += 1;
        }
        out.push(simple(Kind::Atom, i));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (kind, raw text, value) of each token.
    fn toks(line: &str) -> Result<Vec<(Kind, String, String)>, usize> {
        let line = line.as_bytes();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let show = |t: &Token| (t.kind, text(t.raw(line)), text(&t.value(line)));
        match tokenize(line) {
            Ok(v) => Ok(v.iter().map(show).collect()),
            Err(v) => Err(v.len()),
        }
    }

    fn kinds(line: &str) -> Vec<Kind> {
        toks(line).unwrap().into_iter().map(|t| t.0).collect()
    }

    #[test]
    fn atoms_lists_and_quoted_strings() {
        use Kind::*;
        assert_eq!(
            toks("a LIST (SUBSCRIBED) \"\" \"a \\\"b\\\\\"\r\n").unwrap(),
            vec![
                (Atom, "a".into(), "a".into()),
                (Atom, "LIST".into(), "LIST".into()),
                (Open, "(".into(), "(".into()),
                (Atom, "SUBSCRIBED".into(), "SUBSCRIBED".into()),
                (Close, ")".into(), ")".into()),
                (Quoted, "\"\"".into(), "".into()),
                (Quoted, "\"a \\\"b\\\\\"".into(), "a \"b\\".into()),
            ]
        );
        // Quotes and brackets inside an atom are atom characters.
        assert_eq!(kinds("x\"y\" \"z\""), vec![Atom, Quoted]);
        let fetch = "a FETCH 1 BODY[HEADER.FIELDS (A B)]";
        assert_eq!(
            kinds(fetch),
            vec![Atom, Atom, Atom, Atom, Open, Atom, Atom, Close, Atom]
        );
        assert_eq!(toks(fetch).unwrap()[3].1, "BODY[HEADER.FIELDS");
        assert_eq!(toks(" \r\n").unwrap(), vec![]);
    }

    #[test]
    fn literals_hold_anything() {
        use Kind::*;
        assert_eq!(
            toks("a SEARCH TEXT {4}\r\n(\"$) ALL\r\n").unwrap()[3..],
            [
                (Literal, "{4}\r\n(\"$)".into(), "(\"$)".into()),
                (Atom, "ALL".into(), "ALL".into()),
            ]
        );
        // LITERAL+, and a bare LF (or nothing) after the count.
        assert_eq!(toks("{2+}\r\nab").unwrap()[0].2, "ab");
        assert_eq!(toks("{1}\nx y").unwrap()[0].2, "x");
        assert_eq!(
            toks("{1}xy").unwrap()[0],
            (Literal, "{1}x".into(), "x".into())
        );
        assert_eq!(toks("{0}\r\n").unwrap()[0].2, "");
        // A literal8 (APPEND only) may hold anything; `{` inside an atom
        // and a `~{` that is no literal8 are atom text.
        assert_eq!(
            toks("~{2}\r\n\0) a{1} ~{x}").unwrap(),
            vec![
                (Literal8, "~{2}\r\n\0)".into(), "\0)".into()),
                (Atom, "a{1}".into(), "a{1}".into()),
                (Atom, "~{x}".into(), "~{x}".into()),
            ]
        );
    }

    #[test]
    fn malformed_input_ends_the_list() {
        // The tokens before the malformed one are kept.
        assert_eq!(toks("a SEARCH \"open"), Err(2));
        assert_eq!(toks("a \"\\"), Err(1));
        assert_eq!(toks("a {x}\r\nab"), Err(1));
        assert_eq!(toks("a {2"), Err(1));
        assert_eq!(toks("a b {9}\r\nshort"), Err(2));
        assert_eq!(toks("{99999999999999999999999}\r\n"), Err(0));
    }
}
