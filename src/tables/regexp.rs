//! Postfix `regexp:` and `pcre:` tables (regexp_table(5), pcre_table(5)):
//! patterns in file order, first match wins, the result may use the
//! pattern's groups (`$1`, `${1}`, `$(1)`; `$$` is a dollar).
//!
//! Syntax:
//! - `/pattern/flags result`; the delimiter is the first character (any
//!   non-alphanumeric one), `\` escapes it inside the pattern;
//! - `!/pattern/flags result` matches when the pattern does *not* (no `$n`);
//! - `if /pattern/flags` … `endif` guards the lines between them (nestable);
//! - flags: `i` toggles case-insensitive matching (on by default, so `i`
//!   makes a pattern case-sensitive), `m` multi-line, and for `pcre:` also
//!   `s` (dot matches newline), `x` (extended), `U` (ungreedy). `A` and `E`
//!   have no equivalent and are refused, as is POSIX `regexp:`'s `x` (basic
//!   regular expressions).
//!
//! Both are compiled with the `regex` crate, whose syntax covers POSIX
//! extended expressions and the PCRE features access tables use; a pattern
//! it cannot compile (look-around, back-references) refuses the file with
//! the crate's explanation, so the last good version stays in force.

use std::path::Path;

use regex::{Captures, Regex, RegexBuilder};

use super::map::{excerpt, is_space, logical_lines, read_text, ParseError};

/// Which dialect the file is written in (the table type's name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Regexp,
    Pcre,
}

#[derive(Debug, Clone)]
struct Pattern {
    re: Regex,
    negated: bool,
}

#[derive(Debug, Clone)]
enum Rule {
    Entry { pattern: Pattern, result: String },
    If { pattern: Pattern, end: usize },
}

/// A parsed `regexp:` or `pcre:` table.
#[derive(Debug, Clone, Default)]
pub struct RegexpTable {
    rules: Vec<Rule>,
}

/// Splits `/pattern/flags rest` into (pattern, negated, flags, rest).
fn split_pattern(text: &str) -> Result<(String, bool, &str, &str), String> {
    let (negated, text) = match text.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let mut chars = text.char_indices();
    let delim = match chars.next() {
        Some((_, c)) if !c.is_alphanumeric() && !is_space(c) && c != '\\' => c,
        _ => {
            return Err(format!(
                "'{}' does not start with a pattern such as /regex/",
                excerpt(text)
            ))
        }
    };
    let mut pattern = String::new();
    let mut end = None;
    while let Some((i, c)) = chars.next() {
        if c == '\\' {
            match chars.next() {
                // An escaped delimiter is the delimiter itself.
                Some((_, n)) if n == delim => pattern.push(n),
                Some((_, n)) => {
                    pattern.push('\\');
                    pattern.push(n);
                }
                None => pattern.push('\\'),
            }
        } else if c == delim {
            end = Some(i + c.len_utf8());
            break;
        } else {
            pattern.push(c);
        }
    }
    let end = end.ok_or_else(|| format!("pattern '{}' has no closing '{delim}'", excerpt(text)))?;
    let after = &text[end..];
    let flags_end = after.find(is_space).unwrap_or(after.len());
    let flags = &after[..flags_end];
    Ok((
        pattern,
        negated,
        flags,
        after[flags_end..].trim_matches(is_space),
    ))
}

fn compile(pattern: &str, flags: &str, dialect: Dialect) -> Result<Regex, String> {
    let mut b = RegexBuilder::new(pattern);
    let mut icase = true;
    for f in flags.chars() {
        match (f, dialect) {
            ('i', _) => icase = !icase,
            ('m', _) => {
                b.multi_line(true);
            }
            ('s', Dialect::Pcre) => {
                b.dot_matches_new_line(true);
            }
            ('x', Dialect::Pcre) => {
                b.ignore_whitespace(true);
            }
            ('U', Dialect::Pcre) => {
                b.swap_greed(true);
            }
            ('x', Dialect::Regexp) => {
                return Err(
                    "flag 'x' (POSIX basic regular expressions) is not supported; \
                     write the pattern as an extended expression"
                        .into(),
                )
            }
            (other, _) => return Err(format!("unsupported pattern flag '{other}'")),
        }
    }
    b.case_insensitive(icase)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| {
            // The crate's message spans lines; keep the first and last.
            let msg = e.to_string();
            let last = msg
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            format!(
                "pattern /{}/ cannot be compiled: {}",
                excerpt(pattern),
                last.trim()
            )
        })
}

/// `$n`, `${n}`, `$(n)` in `result` are group `n` of the match (empty when
/// the group did not take part); `$$` is `$`. Other `$` text is kept.
fn substitute(result: &str, caps: &Captures) -> String {
    let mut out = String::with_capacity(result.len());
    let mut rest = result;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
            continue;
        }
        let (digits, consumed) = match after.chars().next() {
            Some(open @ ('{' | '(')) => {
                let close = if open == '{' { '}' } else { ')' };
                match after[1..].find(close) {
                    Some(e) if after[1..1 + e].chars().all(|c| c.is_ascii_digit()) && e > 0 => {
                        (&after[1..1 + e], e + 2)
                    }
                    _ => ("", 0),
                }
            }
            Some(c) if c.is_ascii_digit() => {
                let n = after
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(after.len());
                (&after[..n], n)
            }
            _ => ("", 0),
        };
        if consumed == 0 {
            out.push('$');
            rest = after;
            continue;
        }
        if let Some(m) = digits.parse::<usize>().ok().and_then(|n| caps.get(n)) {
            out.push_str(m.as_str());
        }
        rest = &after[consumed..];
    }
    out.push_str(rest);
    out
}

impl RegexpTable {
    pub fn parse(
        text: &str,
        path: &Path,
        dialect: Dialect,
    ) -> Result<(RegexpTable, Vec<String>), ParseError> {
        let mut warnings = Vec::new();
        let mut rules = Vec::new();
        let mut open: Vec<(usize, usize)> = Vec::new();
        for ll in logical_lines(text, path, &mut warnings) {
            let t = ll.text.trim_matches(is_space);
            let err = |reason: String| ParseError::new(path, ll.line, reason);
            let word_end = t.find(is_space).unwrap_or(t.len());
            let (word, after_word) = (&t[..word_end], t[word_end..].trim_matches(is_space));
            if word.eq_ignore_ascii_case("endif") {
                let Some((at, _)) = open.pop() else {
                    return Err(err("'endif' without a matching 'if'".into()));
                };
                let end = rules.len();
                if let Rule::If { end: e, .. } = &mut rules[at] {
                    *e = end;
                }
                continue;
            }
            let is_if = word.eq_ignore_ascii_case("if");
            let spec = if is_if { after_word } else { t };
            let (pattern, negated, flags, rest) = split_pattern(spec).map_err(err)?;
            let re = compile(&pattern, flags, dialect).map_err(err)?;
            let pattern = Pattern { re, negated };
            if is_if {
                if !rest.is_empty() {
                    return Err(err(format!(
                        "text after the 'if' pattern: '{}'",
                        excerpt(rest)
                    )));
                }
                open.push((rules.len(), ll.line));
                rules.push(Rule::If { pattern, end: 0 });
                continue;
            }
            if rest.is_empty() {
                return Err(err(format!(
                    "pattern /{}/ has no result (expected: /pattern/ whitespace result)",
                    excerpt(pattern.re.as_str())
                )));
            }
            rules.push(Rule::Entry {
                pattern,
                result: rest.to_string(),
            });
        }
        if let Some((_, line)) = open.pop() {
            return Err(ParseError::new(
                path,
                line,
                "'if' without a matching 'endif'",
            ));
        }
        Ok((RegexpTable { rules }, warnings))
    }

    pub fn load(path: &Path, dialect: Dialect) -> Result<(RegexpTable, Vec<String>), ParseError> {
        RegexpTable::parse(&read_text(path)?, path, dialect)
    }

    /// The (substituted) result of the first rule matching `key`.
    pub fn find(&self, key: &str) -> Option<String> {
        let mut i = 0;
        while i < self.rules.len() {
            match &self.rules[i] {
                Rule::Entry { pattern, result } => {
                    if pattern.negated {
                        if !pattern.re.is_match(key) {
                            return Some(result.clone());
                        }
                    } else if let Some(caps) = pattern.re.captures(key) {
                        return Some(substitute(result, &caps));
                    }
                    i += 1;
                }
                Rule::If { pattern, end } => {
                    let hit = pattern.re.is_match(key) != pattern.negated;
                    i = if hit { i + 1 } else { *end };
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str, d: Dialect) -> RegexpTable {
        RegexpTable::parse(text, Path::new("/t.re"), d).unwrap().0
    }

    #[test]
    fn first_match_substitution_and_case() {
        let t = table(
            "/^(.*)@spam\\.example$/ REJECT no mail from $1 ($$5)\n\
             /^Boss@/i DISCARD case-sensitive\n\
             /@(.+)\\.invalid$/ 550 bad domain ${1}.invalid\n\
             !/@/ REJECT need a domain\n",
            Dialect::Regexp,
        );
        assert_eq!(
            t.find("Joe@SPAM.example").as_deref(),
            Some("REJECT no mail from Joe ($5)")
        );
        assert_eq!(
            t.find("Boss@x.org").as_deref(),
            Some("DISCARD case-sensitive")
        );
        assert_eq!(t.find("boss@x.org"), None);
        assert_eq!(
            t.find("a@b.invalid").as_deref(),
            Some("550 bad domain b.invalid")
        );
        assert_eq!(
            t.find("postmaster").as_deref(),
            Some("REJECT need a domain")
        );
    }

    #[test]
    fn if_blocks_other_delimiters_and_pcre_flags() {
        let t = table(
            "if /\\.example$/\n/^mx[0-9]+\\./ OK\n#/x/ ignored comment\nendif\n\
             |^a/b|  REJECT slash in pattern\n\
             /^a.b$/s OK dotall\n\
             /^ x y $/x OK extended\n",
            Dialect::Pcre,
        );
        assert_eq!(t.find("mx12.example").as_deref(), Some("OK"));
        assert_eq!(t.find("mx12.other"), None);
        assert_eq!(t.find("a/b").as_deref(), Some("REJECT slash in pattern"));
        assert_eq!(t.find("a\nb").as_deref(), Some("OK dotall"));
        assert_eq!(t.find("xy").as_deref(), Some("OK extended"));
    }

    #[test]
    fn broken_lines_are_refused_with_their_line() {
        for (text, d, line, why) in [
            ("/abc REJECT\n", Dialect::Regexp, 1, "no closing"),
            ("\n/(a/ OK\n", Dialect::Regexp, 2, "cannot be compiled"),
            ("/(?=a)b/ OK\n", Dialect::Pcre, 1, "cannot be compiled"),
            ("/a/ \n", Dialect::Regexp, 1, "no result"),
            (
                "/a/q OK\n",
                Dialect::Pcre,
                1,
                "unsupported pattern flag 'q'",
            ),
            ("/a/x OK\n", Dialect::Regexp, 1, "basic regular"),
            (
                "if /a/\n/b/ OK\n",
                Dialect::Regexp,
                1,
                "without a matching 'endif'",
            ),
            (
                "abc OK\n",
                Dialect::Regexp,
                1,
                "does not start with a pattern",
            ),
        ] {
            let e = RegexpTable::parse(text, Path::new("/t.re"), d).unwrap_err();
            assert_eq!(e.line, line, "{text}");
            assert!(e.reason.contains(why), "{text}: {}", e.reason);
        }
    }
}
