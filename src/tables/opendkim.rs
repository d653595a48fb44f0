//! OpenDKIM's KeyTable and SigningTable, read as OpenDKIM reads them, so an
//! OpenDKIM setup copies across unchanged (opendkim.conf(5), "KeyTable" and
//! "SigningTable"; opendkim-genkey(8)).
//!
//! Both are text data sets: one entry per line, `key whitespace value`,
//! `#` starts a comment, blank lines are ignored.
//!
//! - KeyTable: `keyname  domain:selector:/path/to/private.key`. The key
//!   file is what opendkim-genkey writes (`selector.private`, PEM).
//! - SigningTable: `pattern  keyname`. As a `refile:` data set (the usual
//!   way, and what `*@example.com` needs) each pattern is a glob where `*`
//!   matches any run of characters, tried in file order against the
//!   sender's address. As a plain file the address is looked up whole,
//!   then its domain. Patterns are case-insensitive.
//!
//! Deviation: OpenDKIM signs with the first match unless
//! `MultipleSignatures` is set; pigeonpost signs with every matching line
//! (one key each), so dual rsa + ed25519 signing is two lines.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::map::{read_text, warning, ParseError};

/// One KeyTable entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEntry {
    pub domain: String,
    pub selector: String,
    pub key_path: PathBuf,
}

/// A KeyTable: key name → signing domain, selector and key file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyTable {
    /// In file order, for `dns-records`.
    pub entries: Vec<(String, KeyEntry)>,
}

/// `type:path` as opendkim.conf writes data sets (`file:`, `refile:`, or a
/// bare path, which is `file:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataSet {
    pub regex: bool,
    pub path: PathBuf,
}

impl DataSet {
    pub fn parse(spec: &str) -> Result<DataSet, String> {
        let spec = spec.trim();
        let (regex, path) = if let Some(p) = spec.strip_prefix("refile:") {
            (true, p)
        } else if let Some(p) = spec.strip_prefix("file:") {
            (false, p)
        } else if spec.starts_with('/') {
            (false, spec)
        } else {
            return Err(format!(
                "'{spec}': use file:/path, refile:/path or an absolute path (OpenDKIM data sets)"
            ));
        };
        if !path.starts_with('/') {
            return Err(format!("'{spec}': the path must be absolute"));
        }
        Ok(DataSet {
            regex,
            path: PathBuf::from(path),
        })
    }
}

/// Entries of an OpenDKIM data set file: (line number, key, value).
fn entries(text: &str) -> impl Iterator<Item = (usize, &str, &str)> {
    text.lines().enumerate().filter_map(|(i, line)| {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            return None;
        }
        let (k, v) = line
            .split_once(|c: char| c.is_ascii_whitespace())
            .unwrap_or((line, ""));
        Some((i + 1, k, v.trim()))
    })
}

impl KeyTable {
    pub fn parse(path: &Path, text: &str) -> Result<(KeyTable, Vec<String>), ParseError> {
        let mut table = KeyTable::default();
        let mut warnings = Vec::new();
        let base = path.parent().unwrap_or(Path::new("/"));
        for (line, name, value) in entries(text) {
            let mut parts = value.splitn(3, ':');
            let (Some(domain), Some(selector), Some(key)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(ParseError::new(
                    path,
                    line,
                    format!("'{name}': expected domain:selector:/path/to/key"),
                ));
            };
            let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
            let selector = selector.trim().to_ascii_lowercase();
            if domain.is_empty() || selector.is_empty() || key.trim().is_empty() {
                return Err(ParseError::new(
                    path,
                    line,
                    format!("'{name}': empty domain, selector or key path"),
                ));
            }
            if !valid_label_text(&domain) || !valid_label_text(&selector) {
                return Err(ParseError::new(
                    path,
                    line,
                    format!("'{name}': '{domain}' or '{selector}' is not a DNS name"),
                ));
            }
            if table.entries.iter().any(|(n, _)| n == name) {
                warnings.push(warning(
                    path,
                    line,
                    format!("duplicate key name '{name}' ignored"),
                ));
                continue;
            }
            let key_path = PathBuf::from(key.trim());
            // A relative key path is relative to the table, not to our cwd.
            let key_path = if key_path.is_absolute() {
                key_path
            } else {
                base.join(key_path)
            };
            table.entries.push((
                name.to_string(),
                KeyEntry {
                    domain,
                    selector,
                    key_path,
                },
            ));
        }
        Ok((table, warnings))
    }

    pub fn load(path: &Path) -> Result<(KeyTable, Vec<String>), ParseError> {
        KeyTable::parse(path, &read_text(path)?)
    }

    pub fn get(&self, name: &str) -> Option<&KeyEntry> {
        self.entries.iter().find(|(n, _)| n == name).map(|(_, e)| e)
    }
}

fn valid_label_text(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// A SigningTable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SigningTable {
    /// `refile:`: patterns in file order. Otherwise exact keys.
    regex: bool,
    entries: Vec<(String, String)>,
    exact: HashMap<String, Vec<String>>,
}

impl SigningTable {
    pub fn parse(
        path: &Path,
        text: &str,
        regex: bool,
    ) -> Result<(SigningTable, Vec<String>), ParseError> {
        let mut table = SigningTable {
            regex,
            ..SigningTable::default()
        };
        let mut warnings = Vec::new();
        for (line, pattern, key) in entries(text) {
            if key.is_empty() || key.contains(char::is_whitespace) {
                return Err(ParseError::new(
                    path,
                    line,
                    format!("'{pattern}': expected one key name from the KeyTable"),
                ));
            }
            let pattern = pattern.to_ascii_lowercase();
            if !regex && pattern.contains('*') {
                warnings.push(warning(
                    path,
                    line,
                    format!("'{pattern}' is a pattern, but patterns need refile: (as in OpenDKIM); it only matches literally"),
                ));
            }
            table.entries.push((pattern.clone(), key.to_string()));
            table
                .exact
                .entry(pattern)
                .or_default()
                .push(key.to_string());
        }
        Ok((table, warnings))
    }

    /// Key names to sign mail from `address` with, in table order.
    pub fn lookup(&self, address: &str) -> Vec<&str> {
        let address = address.to_ascii_lowercase();
        if self.regex {
            return self
                .entries
                .iter()
                .filter(|(p, _)| glob(p.as_bytes(), address.as_bytes()))
                .map(|(_, k)| k.as_str())
                .collect();
        }
        let domain = address.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
        for key in [address.as_str(), domain] {
            if let Some(names) = self.exact.get(key) {
                return names.iter().map(String::as_str).collect();
            }
        }
        Vec::new()
    }

    /// Every key name the table refers to.
    pub fn key_names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(_, k)| k.as_str())
    }
}

/// `*` matches any run of bytes (OpenDKIM turns its refile patterns into
/// regular expressions the same way: `*` is the only metacharacter).
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative with one backtrack point: linear enough for table sizes,
    // never exponential.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &str = "\
# made by hand, as in the OpenDKIM README
mail._domainkey.example.com  example.com:mail:/etc/opendkim/keys/example.com/mail.private
ed._domainkey.example.com    example.com:ed:/etc/opendkim/keys/example.com/ed.private
other                        Other.Example:S1:keys/other.private
";

    #[test]
    fn key_table_reads_opendkim_lines() {
        let (t, w) = KeyTable::parse(Path::new("/etc/opendkim/KeyTable"), KEYS).unwrap();
        assert!(w.is_empty());
        assert_eq!(t.entries.len(), 3);
        let e = t.get("mail._domainkey.example.com").unwrap();
        assert_eq!(e.domain, "example.com");
        assert_eq!(e.selector, "mail");
        assert_eq!(
            e.key_path,
            Path::new("/etc/opendkim/keys/example.com/mail.private")
        );
        let o = t.get("other").unwrap();
        assert_eq!(
            (o.domain.as_str(), o.selector.as_str()),
            ("other.example", "s1")
        );
        assert_eq!(o.key_path, Path::new("/etc/opendkim/keys/other.private"));
    }

    #[test]
    fn key_table_errors_name_the_line() {
        let e = KeyTable::parse(Path::new("/k"), "a example.com:sel\n").unwrap_err();
        assert_eq!(e.line, 1);
        let e = KeyTable::parse(Path::new("/k"), "\n\na ex ample.com:s:/k\n").unwrap_err();
        assert_eq!(e.line, 3);
        let (_, w) = KeyTable::parse(Path::new("/k"), "a d.com:s:/k\na d.com:t:/k\n").unwrap();
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn refile_patterns_match_in_file_order() {
        let text =
            "*@example.com mail._domainkey.example.com\n*@example.com ed\n*@*.example.org sub\n";
        let (t, _) = SigningTable::parse(Path::new("/s"), text, true).unwrap();
        assert_eq!(
            t.lookup("John@Example.COM"),
            vec!["mail._domainkey.example.com", "ed"]
        );
        assert_eq!(t.lookup("a@lists.example.org"), vec!["sub"]);
        assert!(t.lookup("a@example.org").is_empty());
        assert!(t.lookup("a@example.com.evil").is_empty());
    }

    #[test]
    fn plain_tables_look_up_the_address_then_the_domain() {
        let text = "boss@example.com bosskey\nexample.com mail\n";
        let (t, _) = SigningTable::parse(Path::new("/s"), text, false).unwrap();
        assert_eq!(t.lookup("boss@example.com"), vec!["bosskey"]);
        assert_eq!(t.lookup("john@example.com"), vec!["mail"]);
        assert!(t.lookup("john@sub.example.com").is_empty());
        let (_, w) = SigningTable::parse(Path::new("/s"), "*@example.com k\n", false).unwrap();
        assert_eq!(w.len(), 1, "patterns without refile: are warned about");
    }

    #[test]
    fn glob_is_linear_and_exact() {
        assert!(glob(b"*", b""));
        assert!(glob(b"a*b*c", b"aXXbYYc"));
        assert!(!glob(b"a*b*c", b"aXXbYY"));
        assert!(glob(b"*@example.com", b"x@example.com"));
        let long = vec![b'a'; 5000];
        assert!(!glob(b"*a*a*a*a*a*b", &long));
    }

    #[test]
    fn data_set_specs() {
        assert!(
            DataSet::parse("refile:/etc/opendkim/SigningTable")
                .unwrap()
                .regex
        );
        assert!(!DataSet::parse("/etc/opendkim/KeyTable").unwrap().regex);
        assert!(!DataSet::parse("file:/etc/opendkim/KeyTable").unwrap().regex);
        assert!(DataSet::parse("csl:a,b").is_err());
        assert!(DataSet::parse("file:relative").is_err());
    }
}
