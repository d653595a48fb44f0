//! Postfix `cidr:` tables (cidr_table(5)): network blocks in file order,
//! first match wins, looked up with a client IP address.
//!
//! Syntax, as Postfix 3.x reads it:
//! - `pattern result`, where pattern is an address (`192.0.2.1`,
//!   `2001:db8::1`, IPv6 optionally in `[]`) or a block `192.0.2.0/24`;
//! - `!pattern result` matches addresses *outside* the block (Postfix 3.2);
//! - `if pattern` … `endif` (nestable; `if !pattern` too) guards the lines
//!   between them;
//! - comments, blank lines and continuation lines as in every table
//!   (`map::logical_lines`).
//!
//! Deviation: Postfix skips a pattern with host bits set (`192.0.2.1/24`)
//! with a warning; pigeonpost refuses the file, so the last good version
//! stays in force and the line is named.

use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;

use super::map::{excerpt, is_space, logical_lines, read_text, ParseError};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    net: IpNet,
    negated: bool,
}

impl Pattern {
    fn matches(&self, ip: IpAddr) -> bool {
        // An IPv4 block never matches an IPv6 address and vice versa,
        // negated or not (cidr_table(5): "address family" rule).
        let same_family = self.net.addr().is_ipv4() == ip.is_ipv4();
        same_family && (self.net.contains(&ip) != self.negated)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Rule {
    Entry {
        pattern: Pattern,
        result: String,
    },
    /// `if pattern`: the rules up to the matching `endif` apply only when it
    /// matches; `end` is the index just past that `endif`.
    If {
        pattern: Pattern,
        end: usize,
    },
}

/// A parsed `cidr:` table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CidrTable {
    rules: Vec<Rule>,
}

fn parse_pattern(text: &str) -> Result<Pattern, String> {
    let (negated, text) = match text.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let addr = addr
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(addr);
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| format!("'{}' is not an IP address or network", excerpt(text)))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len: u8 = match prefix {
        None => max,
        Some(p) => p
            .parse()
            .ok()
            .filter(|n| *n <= max)
            .ok_or_else(|| format!("'{}': bad prefix length '/{p}'", excerpt(text)))?,
    };
    let net = IpNet::new(ip, len).map_err(|e| e.to_string())?;
    if net.network() != ip {
        return Err(format!(
            "'{}' has host bits set (did you mean {}?)",
            excerpt(text),
            net.trunc()
        ));
    }
    Ok(Pattern { net, negated })
}

impl CidrTable {
    pub fn parse(text: &str, path: &Path) -> Result<(CidrTable, Vec<String>), ParseError> {
        let mut warnings = Vec::new();
        let mut rules = Vec::new();
        let mut open: Vec<(usize, usize)> = Vec::new(); // (rule index, line)
        for ll in logical_lines(text, path, &mut warnings) {
            let t = ll.text.trim_matches(is_space);
            let (first, rest) = match t.find(is_space) {
                Some(i) => (&t[..i], t[i..].trim_matches(is_space)),
                None => (t, ""),
            };
            let err = |reason: String| ParseError::new(path, ll.line, reason);
            if first.eq_ignore_ascii_case("endif") {
                let Some((at, _)) = open.pop() else {
                    return Err(err("'endif' without a matching 'if'".into()));
                };
                let end = rules.len();
                if let Rule::If { end: e, .. } = &mut rules[at] {
                    *e = end;
                }
                continue;
            }
            if first.eq_ignore_ascii_case("if") {
                if rest.is_empty() {
                    return Err(err("'if' needs a network pattern".into()));
                }
                let pattern = parse_pattern(rest).map_err(err)?;
                open.push((rules.len(), ll.line));
                rules.push(Rule::If { pattern, end: 0 });
                continue;
            }
            let pattern = parse_pattern(first).map_err(err)?;
            if rest.is_empty() {
                return Err(err(format!(
                    "'{}' has no result (expected: network, whitespace, result)",
                    excerpt(first)
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
        Ok((CidrTable { rules }, warnings))
    }

    pub fn load(path: &Path) -> Result<(CidrTable, Vec<String>), ParseError> {
        CidrTable::parse(&read_text(path)?, path)
    }

    /// The result of the first rule matching `key`; keys that are not IP
    /// addresses (host names, mail addresses) never match.
    pub fn find(&self, key: &str) -> Option<&str> {
        let key = key
            .strip_prefix('[')
            .and_then(|k| k.strip_suffix(']'))
            .unwrap_or(key);
        let ip: IpAddr = key.parse().ok()?;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        let mut i = 0;
        while i < self.rules.len() {
            match &self.rules[i] {
                Rule::Entry { pattern, result } => {
                    if pattern.matches(ip) {
                        return Some(result);
                    }
                    i += 1;
                }
                Rule::If { pattern, end } => {
                    i = if pattern.matches(ip) { i + 1 } else { *end };
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> CidrTable {
        CidrTable::parse(text, Path::new("/t.cidr")).unwrap().0
    }

    #[test]
    fn first_match_wins_in_file_order() {
        let t = table(
            "# partners\n192.0.2.5 REJECT one host\n192.0.2.0/24 OK\n\
             2001:db8::/32 DUNNO\n[2001:db9::1] REJECT v6 host\n0.0.0.0/0 DEFER\n",
        );
        assert_eq!(t.find("192.0.2.5"), Some("REJECT one host"));
        assert_eq!(t.find("192.0.2.9"), Some("OK"));
        assert_eq!(t.find("198.51.100.1"), Some("DEFER"));
        assert_eq!(t.find("2001:db8::7"), Some("DUNNO"));
        assert_eq!(t.find("2001:db9::1"), Some("REJECT v6 host"));
        // An IPv4 block never matches IPv6, even 0.0.0.0/0.
        assert_eq!(t.find("2001:dba::1"), None);
        // v4-mapped IPv6 is the IPv4 address.
        assert_eq!(t.find("::ffff:192.0.2.9"), Some("OK"));
        assert_eq!(t.find("mail.example.com"), None);
    }

    #[test]
    fn negation_and_if_blocks() {
        let t = table(
            "if 10.0.0.0/8\n!10.1.0.0/16 REJECT outside 10.1\n10.1.2.3 OK\nendif\n\
             if !192.0.2.0/24\n0.0.0.0/0 DEFER not ours\nendif\n",
        );
        assert_eq!(t.find("10.2.0.1"), Some("REJECT outside 10.1"));
        assert_eq!(t.find("10.1.2.3"), Some("OK"));
        // Outside the 10.1 rules, but the second block matches it.
        assert_eq!(t.find("10.1.9.9"), Some("DEFER not ours"));
        assert_eq!(t.find("8.8.8.8"), Some("DEFER not ours"));
        assert_eq!(t.find("192.0.2.1"), None);
    }

    #[test]
    fn broken_lines_are_refused_with_their_line() {
        for (text, line, why) in [
            ("192.0.2.1/24 OK\n", 1, "host bits"),
            ("\n192.0.2.0/33 OK\n", 2, "prefix"),
            ("example.com OK\n", 1, "not an IP"),
            ("192.0.2.0/24\n", 1, "no result"),
            (
                "if 10.0.0.0/8\n10.0.0.1 OK\n",
                1,
                "without a matching 'endif'",
            ),
            ("endif\n", 1, "without a matching 'if'"),
        ] {
            let e = CidrTable::parse(text, Path::new("/t.cidr")).unwrap_err();
            assert_eq!(e.line, line, "{text}");
            assert!(e.reason.contains(why), "{text}: {}", e.reason);
        }
    }
}
