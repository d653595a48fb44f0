//! Postfix lookup tables in postmap(1) source format.
//!
//! pigeonpost never builds or reads the `.db`/`.lmdb` files that postmap(1)
//! produces: `hash:/etc/postfix/virtual` means "read the text file
//! `/etc/postfix/virtual`", exactly the file an administrator edits before
//! running `postmap`.
//!
//! Input format (postmap(1), "INPUT FILE FORMAT", and Postfix's readlline(3)):
//! - an entry is `key whitespace value`; surrounding whitespace is stripped;
//! - empty lines, whitespace-only lines and lines whose first non-whitespace
//!   character is `#` are ignored; a `#` anywhere else is data (Postfix has
//!   no trailing comments);
//! - a logical line starts with non-whitespace text, and a line that starts
//!   with whitespace continues it (comment and blank lines in between do not
//!   end it); the continuation text is appended as is, its leading
//!   whitespace acting as the separator;
//! - since Postfix 3.2 a key may contain whitespace inside double quotes,
//!   `\` escapes the next character; the key is kept in its quoted form;
//! - keys are folded to lower case (hash:, btree:, lmdb: … tables are
//!   case-insensitive), and so are lookups;
//! - postmap warns about duplicate keys and keeps the first value; so do we.
//!
//! Deviation: postmap only warns about (and skips) a key without a value;
//! pigeonpost refuses the whole file, so the last good table stays in force
//! and the administrator sees exactly which line is broken.

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A table file that cannot be used. `line` is 1-based; 0 means the whole
/// file (for example, it could not be read).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {reason}", path.display())]
pub struct ParseError {
    pub path: PathBuf,
    pub line: usize,
    pub reason: String,
}

impl ParseError {
    pub fn new(path: &Path, line: usize, reason: impl Into<String>) -> Self {
        ParseError {
            path: path.to_path_buf(),
            line,
            reason: reason.into(),
        }
    }
}

/// Formats a warning the way [`ParseError`] is displayed (`path:line: text`).
pub fn warning(path: &Path, line: usize, text: impl fmt::Display) -> String {
    format!("{}:{line}: {text}", path.display())
}

/// Reads a table file as text; invalid UTF-8 is replaced (lossy), so any
/// bytes reach the parser. Errors are reported with line 0.
pub fn read_text(path: &Path) -> Result<String, ParseError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }),
        Err(e) => Err(ParseError::new(path, 0, format!("cannot read file: {e}"))),
    }
}

/// Postfix's ISSPACE (C `isspace` in the C locale).
pub(crate) fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

/// Lower-cases a key or query the way tables are folded.
pub(crate) fn fold(s: &str) -> Cow<'_, str> {
    if s.is_ascii() {
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(s.to_ascii_lowercase())
        } else {
            Cow::Borrowed(s)
        }
    } else {
        // Title-case letters are not is_uppercase() but do change.
        let lower = s.to_lowercase();
        if lower == s {
            Cow::Borrowed(s)
        } else {
            Cow::Owned(lower)
        }
    }
}

/// Shortens text for error messages so a huge line cannot flood the log.
pub(crate) fn excerpt(s: &str) -> Cow<'_, str> {
    const MAX: usize = 60;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => Cow::Owned(format!("{}...", &s[..i])),
        None => Cow::Borrowed(s),
    }
}

/// One logical line: continuation lines joined, comments dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalLine {
    /// 1-based number of the physical line where the logical line starts.
    pub line: usize,
    pub text: String,
}

/// Splits file content into logical lines with Postfix readlline(3)
/// rules (shared by lookup tables and aliases(5)). A trailing `\r` on each
/// physical line is ignored. Text that starts with whitespace without a
/// preceding logical line is dropped with a warning, as Postfix does
/// ("logical line must not start with whitespace").
pub fn logical_lines(text: &str, path: &Path, warnings: &mut Vec<String>) -> Vec<LogicalLine> {
    let mut out = Vec::new();
    let mut current: Option<LogicalLine> = None;
    let mut orphan: Option<usize> = None; // first line of a continuation without a start

    let mut finish = |cur: &mut Option<LogicalLine>, orphan: &mut Option<usize>| {
        if let Some(l) = cur.take() {
            out.push(l);
        }
        if let Some(line) = orphan.take() {
            warnings.push(warning(
                path,
                line,
                "line starts with whitespace but does not continue an entry; ignored \
                 (an entry must start at the beginning of a line)",
            ));
        }
    };

    for (idx, raw) in text.split('\n').enumerate() {
        let line_no = idx + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let rest = line.trim_start_matches(is_space);
        if rest.is_empty() || rest.starts_with('#') {
            continue;
        }
        if line.starts_with(is_space) {
            match current.as_mut() {
                Some(cur) => cur.text.push_str(line),
                None => {
                    orphan.get_or_insert(line_no);
                }
            }
        } else {
            finish(&mut current, &mut orphan);
            current = Some(LogicalLine {
                line: line_no,
                text: line.to_string(),
            });
        }
    }
    finish(&mut current, &mut orphan);
    out
}

/// Splits a logical line into key and value at the first whitespace that
/// is not inside double quotes (postmap(1), Postfix 3.2 and later). The
/// value is trimmed. Returns `None` for an unbalanced quote.
fn split_key_value(text: &str) -> Option<(&str, &str)> {
    let mut in_quotes = false;
    let mut chars = text.char_indices();
    let mut end = text.len();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '"' => in_quotes = !in_quotes,
            c if is_space(c) && !in_quotes => {
                end = i;
                break;
            }
            _ => {}
        }
    }
    if in_quotes {
        return None;
    }
    Some((&text[..end], text[end..].trim_matches(is_space)))
}

/// The table types pigeonpost accepts. All of them name a postmap(1)
/// source text file that is read directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TableKind {
    Hash,
    Btree,
    Lmdb,
    Cdb,
    Dbm,
    Sdbm,
    Texthash,
    /// A bare absolute path.
    Text,
    /// cidr_table(5): network blocks, only in access restrictions.
    Cidr,
    /// regexp_table(5): POSIX-style patterns, only in access restrictions.
    Regexp,
    /// pcre_table(5): Perl-style patterns, only in access restrictions.
    Pcre,
}

impl TableKind {
    const PREFIXED: [(&'static str, TableKind); 10] = [
        ("hash", TableKind::Hash),
        ("btree", TableKind::Btree),
        ("lmdb", TableKind::Lmdb),
        ("cdb", TableKind::Cdb),
        ("dbm", TableKind::Dbm),
        ("sdbm", TableKind::Sdbm),
        ("texthash", TableKind::Texthash),
        ("cidr", TableKind::Cidr),
        ("regexp", TableKind::Regexp),
        ("pcre", TableKind::Pcre),
    ];

    /// Pattern tables match in file order rather than by key; Postfix uses
    /// them where a lookup has one natural key (access restrictions).
    pub fn is_pattern(self) -> bool {
        matches!(self, TableKind::Cidr | TableKind::Regexp | TableKind::Pcre)
    }

    /// The Postfix type name (`hash`, …); empty for [`TableKind::Text`].
    pub fn name(self) -> &'static str {
        Self::PREFIXED
            .iter()
            .find(|(_, k)| *k == self)
            .map(|(n, _)| *n)
            .unwrap_or("")
    }
}

/// Why a table reference such as `mysql:/etc/postfix/x.cf` is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("table '{spec}': {reason}")]
pub struct TableRefError {
    pub spec: String,
    pub reason: String,
}

/// A table as written in main.cf, e.g. `hash:/etc/postfix/virtual`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableRef {
    pub kind: TableKind,
    /// The text file that is read (postmap's input file).
    pub path: PathBuf,
}

impl TableRef {
    /// Accepts `hash:`, `btree:`, `lmdb:`, `cdb:`, `dbm:`, `sdbm:`,
    /// `texthash:` followed by an absolute path, or a bare absolute path.
    pub fn parse(spec: &str) -> Result<TableRef, TableRefError> {
        let spec = spec.trim();
        let err = |reason: String| TableRefError {
            spec: spec.to_string(),
            reason,
        };
        if spec.is_empty() {
            return Err(err("empty table name".into()));
        }
        if spec.starts_with('/') {
            return Ok(TableRef {
                kind: TableKind::Text,
                path: PathBuf::from(spec),
            });
        }
        let Some((ty, rest)) = spec.split_once(':') else {
            return Err(err(format!(
                "'{spec}' is not an absolute path; write e.g. hash:/etc/postfix/{spec} \
                 or /etc/postfix/{spec}"
            )));
        };
        let ty_lower = ty.to_ascii_lowercase();
        let Some(kind) = TableKind::PREFIXED
            .iter()
            .find(|(n, _)| *n == ty_lower)
            .map(|(_, k)| *k)
        else {
            let hint = match ty_lower.as_str() {
                "proxy" => "proxy: is not needed, tables are read in-process; ",
                _ => "",
            };
            return Err(err(format!(
                "unsupported table type '{ty}:' ({hint}pigeonpost reads hash:, btree:, \
                 lmdb:, cdb:, dbm:, sdbm: and texthash: tables as plain text files, \
                 without postmap, and cidr:, regexp: and pcre: tables in access restrictions)"
            )));
        };
        if !rest.starts_with('/') {
            return Err(err(format!(
                "the file name after '{ty}:' must be an absolute path, e.g. {ty}:/etc/postfix/virtual"
            )));
        }
        Ok(TableRef {
            kind,
            path: PathBuf::from(rest),
        })
    }
}

impl FromStr for TableRef {
    type Err = TableRefError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TableRef::parse(s)
    }
}

impl fmt::Display for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            TableKind::Text => write!(f, "{}", self.path.display()),
            k => write!(f, "{}:{}", k.name(), self.path.display()),
        }
    }
}

/// A lookup table: lower-cased keys to values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Map {
    entries: HashMap<String, String>,
}

impl Map {
    /// Parses postmap(1) source text. `path` is only used in messages.
    /// Returns the table and warnings (duplicate keys, suspicious lines)
    /// for the caller to log.
    pub fn parse(text: &str, path: &Path) -> Result<(Map, Vec<String>), ParseError> {
        let mut warnings = Vec::new();
        let mut entries: HashMap<String, String> = HashMap::new();
        let mut first_seen: HashMap<String, usize> = HashMap::new();

        for ll in logical_lines(text, path, &mut warnings) {
            let Some((key, value)) = split_key_value(&ll.text) else {
                return Err(ParseError::new(
                    path,
                    ll.line,
                    format!(
                        "unbalanced '\"' in key of '{}' (quote the whole key, e.g. \
                         \"john smith\"@example.com value)",
                        excerpt(&ll.text)
                    ),
                ));
            };
            if value.is_empty() {
                return Err(ParseError::new(
                    path,
                    ll.line,
                    format!(
                        "key '{}' has no value (expected: key, whitespace, value)",
                        excerpt(key)
                    ),
                ));
            }
            if key.ends_with(':') {
                warnings.push(warning(
                    path,
                    ll.line,
                    format!(
                        "key '{}' ends with ':'; is this an aliases(5) file? \
                         (lookup tables use 'key value' without a colon)",
                        excerpt(key)
                    ),
                ));
            }
            let key = fold(key).into_owned();
            match entries.entry(key) {
                Entry::Occupied(e) => {
                    let first = first_seen.get(e.key()).copied().unwrap_or(0);
                    warnings.push(warning(
                        path,
                        ll.line,
                        format!(
                            "duplicate key '{}' ignored; the entry on line {first} is used",
                            excerpt(e.key())
                        ),
                    ));
                }
                Entry::Vacant(e) => {
                    first_seen.insert(e.key().clone(), ll.line);
                    e.insert(value.to_string());
                }
            }
        }
        Ok((Map { entries }, warnings))
    }

    /// Reads and parses the text file at `path`.
    pub fn load(path: &Path) -> Result<(Map, Vec<String>), ParseError> {
        Map::parse(&read_text(path)?, path)
    }

    /// Builds a table from pairs (keys are folded; the first of duplicate
    /// keys wins, as in [`Map::parse`]). Handy for tests and built-ins.
    pub fn from_entries<I, K, V>(pairs: I) -> Map
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: Into<String>,
    {
        let mut entries = HashMap::new();
        for (k, v) in pairs {
            entries
                .entry(fold(k.as_ref()).into_owned())
                .or_insert_with(|| v.into());
        }
        Map { entries }
    }

    /// Case-insensitive exact lookup.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(fold(key).as_ref()).map(String::as_str)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// All entries as (folded key, value), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("/etc/postfix/virtual")
    }

    fn parse(text: &str) -> (Map, Vec<String>) {
        Map::parse(text, p()).unwrap()
    }

    #[test]
    fn basic_entries_comments_and_blank_lines() {
        let (m, w) = parse(
            "# virtual aliases\n\
             \n\
             postmaster@example.com   admin@example.org\n\
             \t   \n\
             @example.net\tcatchall@example.org\n  # indented comment\n",
        );
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(m.len(), 2);
        assert_eq!(m.get("postmaster@example.com"), Some("admin@example.org"));
        assert_eq!(m.get("@example.net"), Some("catchall@example.org"));
        assert_eq!(m.get("nobody@example.com"), None);
    }

    #[test]
    fn folding_is_unicode_aware_and_stable() {
        assert_eq!(fold("abc"), "abc");
        assert_eq!(fold("ABC@Ex"), "abc@ex");
        assert_eq!(fold("\u{1c5}x"), "\u{1c6}x"); // title-case Dž
        assert_eq!(fold("ÜBER"), "über");
        let (m, _) = parse("Ǆ@X.Example v\n");
        assert_eq!(m.iter().next().unwrap().0, "ǆ@x.example");
        assert_eq!(m.get("ǅ@x.example"), Some("v"));
    }

    #[test]
    fn hash_inside_value_is_data() {
        let (m, _) = parse("a@x b@y # not a comment\n");
        assert_eq!(m.get("a@x"), Some("b@y # not a comment"));
    }

    #[test]
    fn keys_fold_but_values_keep_case() {
        let (m, _) = parse("John.Doe@Example.COM John@Elsewhere.ORG\n");
        assert_eq!(m.get("john.doe@example.com"), Some("John@Elsewhere.ORG"));
        assert_eq!(m.get("JOHN.DOE@EXAMPLE.COM"), Some("John@Elsewhere.ORG"));
        assert_eq!(
            m.iter().next(),
            Some(("john.doe@example.com", "John@Elsewhere.ORG"))
        );
    }

    #[test]
    fn continuation_lines_and_comments_inside() {
        let (m, w) = parse(
            "list@example.com a@example.com,\n  b@example.com,\n# comment\n\n\tc@example.com\nnext@x y\n",
        );
        assert!(w.is_empty());
        assert_eq!(
            m.get("list@example.com"),
            Some("a@example.com,  b@example.com,\tc@example.com")
        );
        assert_eq!(m.get("next@x"), Some("y"));
    }

    #[test]
    fn value_on_continuation_line() {
        let (m, _) = parse("key\n   value\n");
        assert_eq!(m.get("key"), Some("value"));
    }

    #[test]
    fn crlf_is_accepted() {
        let (m, _) = parse("a@x b@y\r\nc@x  d@y  \r\n");
        assert_eq!(m.get("a@x"), Some("b@y"));
        assert_eq!(m.get("c@x"), Some("d@y"));
    }

    #[test]
    fn key_without_value_is_an_error_with_line_number() {
        let err = Map::parse("a@x b@y\n\n\njohn@example.com\n", p()).unwrap_err();
        assert_eq!(err.line, 4);
        assert_eq!(
            err.to_string(),
            "/etc/postfix/virtual:4: key 'john@example.com' has no value (expected: key, whitespace, value)"
        );
        let err = Map::parse("john@example.com   \t\r\n", p()).unwrap_err();
        assert_eq!(err.line, 1);
    }

    #[test]
    fn duplicate_keys_warn_and_keep_first() {
        let (m, w) = parse("a@x first\nA@X second\n");
        assert_eq!(m.get("a@x"), Some("first"));
        assert_eq!(w.len(), 1);
        assert!(
            w[0].starts_with("/etc/postfix/virtual:2: duplicate key 'a@x'"),
            "{}",
            w[0]
        );
        assert!(w[0].contains("line 1"));
    }

    #[test]
    fn leading_whitespace_without_entry_is_warned_and_ignored() {
        let (m, w) = parse("  orphan value\n more\nkey value\n");
        assert_eq!(m.len(), 1);
        assert_eq!(m.get("key"), Some("value"));
        assert_eq!(w.len(), 1);
        assert!(w[0].contains(":1:"), "{}", w[0]);
    }

    #[test]
    fn alias_style_key_warns() {
        let (m, w) = parse("root: admin\n");
        assert_eq!(m.get("root:"), Some("admin"));
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("aliases(5)"));
    }

    #[test]
    fn quoted_keys_may_contain_whitespace() {
        let (m, _) = parse("\"john smith\"@example.com js@example.org\n");
        assert_eq!(m.get("\"John Smith\"@example.com"), Some("js@example.org"));
        let err = Map::parse("\"john smith@example.com js\n", p()).unwrap_err();
        assert!(err.reason.contains("unbalanced"), "{err}");
        let (m, _) = parse("a\\ b c\n");
        assert_eq!(m.get("a\\ b"), Some("c"));
        // A trailing backslash must not panic.
        let (m, _) = parse("k v\\\n");
        assert_eq!(m.get("k"), Some("v\\"));
        assert!(Map::parse("x\\", p()).is_err());
    }

    #[test]
    fn empty_and_comment_only_files() {
        assert!(parse("").0.is_empty());
        assert!(parse("\n\n# only comments\n   # x\n").0.is_empty());
    }

    #[test]
    fn load_reads_file_and_reports_missing() {
        let dir = std::env::temp_dir().join(format!("pp-map-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("virtual");
        std::fs::write(&f, b"a@x b@y\n\xffbad@x c\n").unwrap();
        let (m, _) = Map::load(&f).unwrap();
        assert_eq!(m.get("a@x"), Some("b@y"));
        assert_eq!(m.get("\u{fffd}bad@x"), Some("c"));
        let err = Map::load(&dir.join("missing")).unwrap_err();
        assert_eq!(err.line, 0);
        assert!(err.reason.starts_with("cannot read file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn from_entries_folds_and_keeps_first() {
        let m = Map::from_entries([("A@X", "1"), ("a@x", "2")]);
        assert_eq!(m.get("a@x"), Some("1"));
        assert!(m.contains_key("A@x"));
    }

    #[test]
    fn table_refs() {
        let t = TableRef::parse("hash:/etc/postfix/virtual").unwrap();
        assert_eq!(t.kind, TableKind::Hash);
        assert_eq!(t.path, Path::new("/etc/postfix/virtual"));
        assert_eq!(t.to_string(), "hash:/etc/postfix/virtual");
        for (spec, kind) in [
            ("texthash:/a", TableKind::Texthash),
            ("lmdb:/a", TableKind::Lmdb),
            ("btree:/a", TableKind::Btree),
            ("cdb:/a", TableKind::Cdb),
            ("HASH:/a", TableKind::Hash),
            ("  /etc/aliases ", TableKind::Text),
        ] {
            assert_eq!(TableRef::parse(spec).unwrap().kind, kind, "{spec}");
        }
        assert_eq!(
            "/etc/aliases".parse::<TableRef>().unwrap().to_string(),
            "/etc/aliases"
        );
        let e = TableRef::parse("mysql:/etc/postfix/mysql-virtual.cf").unwrap_err();
        assert_eq!(
            e.to_string(),
            "table 'mysql:/etc/postfix/mysql-virtual.cf': unsupported table type 'mysql:' \
             (pigeonpost reads hash:, btree:, lmdb:, cdb:, dbm:, sdbm: and texthash: tables \
             as plain text files, without postmap, and cidr:, regexp: and pcre: tables in \
             access restrictions)"
        );
        for bad in [
            "ldap:/etc/postfix/ldap.cf",
            "proxy:hash:/etc/postfix/virtual",
            "regexp:etc/postfix/re",
            "virtual",
            "hash:virtual",
            "hash:",
            "",
            ":",
        ] {
            assert!(TableRef::parse(bad).is_err(), "{bad}");
        }
        for (spec, kind) in [
            ("cidr:/etc/postfix/a.cidr", TableKind::Cidr),
            ("regexp:/etc/postfix/re", TableKind::Regexp),
            ("PCRE:/etc/postfix/re", TableKind::Pcre),
        ] {
            let r = TableRef::parse(spec).unwrap();
            assert_eq!(r.kind, kind);
            assert!(r.kind.is_pattern());
        }
        assert!(TableRef::parse("virtual")
            .unwrap_err()
            .reason
            .contains("not an absolute path"));
    }

    #[test]
    fn logical_lines_numbers() {
        let mut w = Vec::new();
        let ll = logical_lines("\n# c\na b\n c\n\nd e", p(), &mut w);
        assert_eq!(
            ll,
            vec![
                LogicalLine {
                    line: 3,
                    text: "a b c".into()
                },
                LogicalLine {
                    line: 6,
                    text: "d e".into()
                }
            ]
        );
    }
}
