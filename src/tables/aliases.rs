//! The local aliases database, `/etc/aliases` (aliases(5)), read as text
//! (no `newaliases`/`postalias` step).
//!
//! Format (aliases(5) "DESCRIPTION"):
//! - `name: value1, value2, ...`; lines are joined and comments skipped as
//!   in lookup tables (Postfix readlline(3), see [`super::map::logical_lines`]);
//! - the name is a local part (no domain), folded to lower case; it may be
//!   double-quoted when it contains whitespace, `#`, `:` or `@`;
//! - a value is an address, `/file/name`, `|command` (quote it when it
//!   contains commas or other special characters: `"|/usr/bin/procmail -a x"`),
//!   or `:include:/file/name` — which pigeonpost refuses;
//! - like postalias(1), duplicate names are warned about and the first wins.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::map::{excerpt, fold, is_space, logical_lines, read_text, warning, ParseError};

/// One delivery target of an alias.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AliasTarget {
    /// An email address or local name, as written (quoted local parts keep
    /// their quotes; `Name <addr>` is reduced to `addr`).
    Address(String),
    /// `|command`: the command line without the leading `|`, to be run by
    /// the shell with the message on standard input.
    Command(String),
    /// `/file/name`: append the message to this file (a trailing `/` means
    /// a Maildir, as in local(8)).
    File(PathBuf),
}

impl fmt::Display for AliasTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AliasTarget::Address(a) => f.write_str(a),
            AliasTarget::Command(c) => {
                write!(f, "\"|{}\"", c.replace('\\', "\\\\").replace('"', "\\\""))
            }
            AliasTarget::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A parsed aliases file: lower-cased name to targets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aliases {
    entries: HashMap<String, Vec<AliasTarget>>,
}

/// Returns the byte offset of the first `needle` outside double quotes
/// (backslash escapes honoured), or `Err(())` for an unbalanced quote.
fn find_unquoted(s: &str, needle: char) -> Result<Option<usize>, ()> {
    let mut in_quotes = false;
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '"' => in_quotes = !in_quotes,
            c if c == needle && !in_quotes => return Ok(Some(i)),
            _ => {}
        }
    }
    if in_quotes {
        Err(())
    } else {
        Ok(None)
    }
}

/// Splits on commas outside double quotes. `Err` on an unbalanced quote.
fn split_commas(s: &str) -> Result<Vec<&str>, ()> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = find_unquoted(rest, ',')? {
        out.push(&rest[..i]);
        rest = &rest[i + 1..];
    }
    out.push(rest);
    Ok(out)
}

/// If `s` is exactly one quoted string, returns its unescaped content.
fn unquote_whole(s: &str) -> Option<String> {
    let inner = s.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return chars.as_str().is_empty().then_some(out),
            c => out.push(c),
        }
    }
    None
}

fn has_unquoted_space(s: &str) -> bool {
    let mut in_quotes = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '"' => in_quotes = !in_quotes,
            c if is_space(c) && !in_quotes => return true,
            _ => {}
        }
    }
    false
}

fn starts_with_include(s: &str) -> bool {
    s.get(..9)
        .is_some_and(|p| p.eq_ignore_ascii_case(":include:"))
}

/// Classifies one comma-separated item (already trimmed, non-empty).
fn parse_target(item: &str) -> Result<AliasTarget, String> {
    let unquoted = unquote_whole(item);
    let s = unquoted.as_deref().unwrap_or(item);
    if let Some(cmd) = s.strip_prefix('|') {
        let cmd = cmd.trim_matches(is_space);
        if cmd.is_empty() {
            return Err("'|' without a command".into());
        }
        return Ok(AliasTarget::Command(cmd.to_string()));
    }
    if s.starts_with('/') {
        return Ok(AliasTarget::File(PathBuf::from(s)));
    }
    if starts_with_include(s) {
        return Err(format!(
            "':include:' is not supported: list the addresses directly instead of '{}'",
            excerpt(s)
        ));
    }
    // An address. Accept `Display Name <addr>` and `<addr>` as RFC 5322 does.
    let mut addr = item;
    if let (Some(open), true) = (item.rfind('<'), item.ends_with('>')) {
        addr = item[open + 1..item.len() - 1].trim_matches(is_space);
    }
    if addr.is_empty() {
        return Err(format!("empty address '{}'", excerpt(item)));
    }
    if has_unquoted_space(addr) {
        return Err(format!(
            "target '{}' contains whitespace: separate targets with commas, and quote \
             commands and file names (\"|/usr/bin/procmail -a x\")",
            excerpt(item)
        ));
    }
    Ok(AliasTarget::Address(addr.to_string()))
}

impl Aliases {
    /// Parses aliases(5) text. `path` is only used in messages. Returns the
    /// aliases and warnings (duplicates, names that can never match).
    pub fn parse(text: &str, path: &Path) -> Result<(Aliases, Vec<String>), ParseError> {
        let mut warnings = Vec::new();
        let mut entries: HashMap<String, Vec<AliasTarget>> = HashMap::new();
        let mut first_seen: HashMap<String, usize> = HashMap::new();

        for ll in logical_lines(text, path, &mut warnings) {
            let err = |reason: String| ParseError::new(path, ll.line, reason);
            let colon = match find_unquoted(&ll.text, ':') {
                Ok(Some(i)) => i,
                Ok(None) => {
                    return Err(err(format!(
                        "missing ':' after the alias name in '{}' (expected 'name: target, target, ...')",
                        excerpt(&ll.text)
                    )))
                }
                Err(()) => {
                    return Err(err(format!(
                        "unbalanced '\"' in '{}' (expected 'name: target, target, ...')",
                        excerpt(&ll.text)
                    )))
                }
            };
            let raw_name = ll.text[..colon].trim_matches(is_space);
            let value = &ll.text[colon + 1..];
            if raw_name.is_empty() {
                return Err(err("missing alias name before ':'".into()));
            }
            let name = match unquote_whole(raw_name) {
                Some(n) => n,
                None if has_unquoted_space(raw_name) => {
                    return Err(err(format!(
                        "alias name '{}' contains whitespace; enclose it in double quotes",
                        excerpt(raw_name)
                    )))
                }
                None => raw_name.to_string(),
            };
            if name.is_empty() {
                return Err(err("empty alias name".into()));
            }
            let name = fold(&name).into_owned();

            let items = split_commas(value).map_err(|()| {
                err(format!(
                    "unbalanced '\"' in the targets of alias '{}'",
                    excerpt(&name)
                ))
            })?;
            let mut targets = Vec::new();
            for item in items {
                let item = item.trim_matches(is_space);
                if item.is_empty() {
                    continue;
                }
                let t = parse_target(item)
                    .map_err(|r| err(format!("alias '{}': {r}", excerpt(&name))))?;
                targets.push(t);
            }
            if targets.is_empty() {
                return Err(err(format!("alias '{}' has no targets", excerpt(&name))));
            }
            if name.contains('@') {
                warnings.push(warning(
                    path,
                    ll.line,
                    format!(
                        "alias name '{}' contains '@': aliases(5) names are local parts \
                         without a domain, so it never matches (use virtual_alias_maps \
                         for full addresses)",
                        excerpt(&name)
                    ),
                ));
            }
            match entries.entry(name) {
                Entry::Occupied(e) => {
                    let first = first_seen.get(e.key()).copied().unwrap_or(0);
                    warnings.push(warning(
                        path,
                        ll.line,
                        format!(
                            "duplicate alias '{}' ignored; the entry on line {first} is used",
                            excerpt(e.key())
                        ),
                    ));
                }
                Entry::Vacant(e) => {
                    first_seen.insert(e.key().clone(), ll.line);
                    e.insert(targets);
                }
            }
        }
        Ok((Aliases { entries }, warnings))
    }

    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<(Aliases, Vec<String>), ParseError> {
        Aliases::parse(&read_text(path)?, path)
    }

    /// Looks up a local name (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&[AliasTarget]> {
        self.entries.get(fold(name).as_ref()).map(Vec::as_slice)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// All aliases as (folded name, targets), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[AliasTarget])> + '_ {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AliasTarget::*;

    fn p() -> &'static Path {
        Path::new("/etc/aliases")
    }

    fn parse(text: &str) -> (Aliases, Vec<String>) {
        Aliases::parse(text, p()).unwrap()
    }

    fn err(text: &str) -> ParseError {
        Aliases::parse(text, p()).unwrap_err()
    }

    fn addr(s: &str) -> AliasTarget {
        Address(s.into())
    }

    #[test]
    fn typical_file() {
        let (a, w) = parse(
            "# Basic system aliases\n\
             mailer-daemon:\tpostmaster\n\
             postmaster: root\n\
             \n\
             Root: john, jane@example.com,\n\
             \t\"|/usr/bin/procmail -a foo\"\n\
             log: /var/log/mail.copy, \"/var/spool/with space\"\n\
             pipe: |/usr/local/bin/filter\n\
             box: /home/box/Maildir/\n",
        );
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(a.len(), 6);
        assert_eq!(a.get("MAILER-DAEMON"), Some(&[addr("postmaster")][..]));
        assert_eq!(
            a.get("root").unwrap(),
            &[
                addr("john"),
                addr("jane@example.com"),
                Command("/usr/bin/procmail -a foo".into())
            ]
        );
        assert_eq!(
            a.get("log").unwrap(),
            &[
                File("/var/log/mail.copy".into()),
                File("/var/spool/with space".into())
            ]
        );
        assert_eq!(
            a.get("pipe").unwrap(),
            &[Command("/usr/local/bin/filter".into())]
        );
        assert_eq!(a.get("box").unwrap(), &[File("/home/box/Maildir/".into())]);
        assert_eq!(a.get("nobody"), None);
    }

    #[test]
    fn quoted_names_and_addresses() {
        let (a, _) = parse(
            "\"john smith\": js\n\"a:b\": x\nq: \"john smith\"@example.com, John Doe <jd@example.com>, <x@y>\n",
        );
        assert_eq!(a.get("John Smith").unwrap(), &[addr("js")]);
        assert_eq!(a.get("a:b").unwrap(), &[addr("x")]);
        assert_eq!(
            a.get("q").unwrap(),
            &[
                addr("\"john smith\"@example.com"),
                addr("jd@example.com"),
                addr("x@y")
            ]
        );
    }

    #[test]
    fn comma_inside_quoted_command() {
        let (a, _) = parse("c: \"|/bin/cmd a,b\", d\n");
        assert_eq!(
            a.get("c").unwrap(),
            &[Command("/bin/cmd a,b".into()), addr("d")]
        );
    }

    #[test]
    fn empty_items_are_skipped() {
        let (a, _) = parse("x: a,, b,\n");
        assert_eq!(a.get("x").unwrap(), &[addr("a"), addr("b")]);
    }

    #[test]
    fn include_is_refused() {
        let e = err("ok: a\nstaff: :include:/etc/mail/staff\n");
        assert_eq!(e.line, 2);
        assert!(
            e.reason
                .contains("':include:' is not supported: list the addresses directly"),
            "{e}"
        );
        assert!(err("s: \":INCLUDE:/x\"\n").reason.contains(":include:"));
    }

    #[test]
    fn missing_colon_and_empty_targets() {
        let e = err("a: b\n\nroot john\n");
        assert_eq!(e.line, 3);
        assert!(e.reason.contains("missing ':'"), "{e}");
        let e = err("root:\n");
        assert_eq!(e.to_string(), "/etc/aliases:1: alias 'root' has no targets");
        let e = err("root: , ,\n");
        assert!(e.reason.contains("no targets"));
        assert!(err(": x\n").reason.contains("missing alias name"));
        assert!(err("\"\": x\n").reason.contains("empty alias name"));
    }

    #[test]
    fn bad_targets() {
        assert!(err("x: john mary\n").reason.contains("whitespace"));
        assert!(err("x: |\n").reason.contains("without a command"));
        assert!(err("x: \"a\n").reason.contains("unbalanced"));
        assert!(err("x: <>\n").reason.contains("empty address"));
        assert!(err("john smith: x\n").reason.contains("double quotes"));
    }

    #[test]
    fn duplicates_and_domain_names_warn() {
        let (a, w) = parse("root: a\nROOT: b\nuser@example.com: c\n");
        assert_eq!(a.get("root").unwrap(), &[addr("a")]);
        assert_eq!(w.len(), 2);
        assert!(w[0].starts_with("/etc/aliases:2: duplicate alias 'root'"));
        assert!(w[1].contains("contains '@'"));
    }

    #[test]
    fn hash_only_starts_comments_at_line_start() {
        let (a, _) = parse("x: a#b\n  # comment inside\n  , c\n");
        assert_eq!(a.get("x").unwrap(), &[addr("a#b"), addr("c")]);
    }

    #[test]
    fn multibyte_text_does_not_panic() {
        let (a, _) = parse("é: ü:include\n");
        assert_eq!(a.get("É").unwrap(), &[addr("ü:include")]);
        let _ = Aliases::parse("x: :inclüde:", p());
    }

    #[test]
    fn display_round_trips() {
        let (a, _) = parse("x: \"|/bin/echo \\\"hi\\\"\", /tmp/f, y@z\n");
        let text: Vec<String> = a.get("x").unwrap().iter().map(|t| t.to_string()).collect();
        let (b, _) = parse(&format!("x: {}\n", text.join(", ")));
        assert_eq!(a, b);
    }
}
