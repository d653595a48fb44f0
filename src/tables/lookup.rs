//! Postfix's address lookup order for `virtual_alias_maps` and
//! `virtual_mailbox_maps`, address extensions (`recipient_delimiter`) and
//! `propagate_unmatched_extensions`.
//!
//! References:
//! - virtual(5) "TABLE SEARCH ORDER" and "ADDRESS EXTENSION": for
//!   `user+foo@domain` the order is `user+foo@domain`, `user@domain`,
//!   `user+foo`, `user`, `@domain`; the bare `user` forms are tried only
//!   when the domain is `$myorigin`, in `$mydestination`, or one of
//!   `$inet_interfaces`/`$proxy_interfaces` (Postfix's mail_addr_find(3),
//!   strategy "localpart_if_local"). The caller decides that and passes
//!   `domain_is_local`.
//! - virtual(8) "MAILBOX LOOKUP": `virtual_mailbox_maps` are searched for
//!   `user+foo@domain`, `user@domain`, then `@domain` (no bare user).
//! - postconf(5) `recipient_delimiter`: with several delimiter characters
//!   (Postfix 2.11+), the local part is split at the *first* character that
//!   is in the set. Postfix's split_addr(3) never splits `postmaster`,
//!   `mailer-daemon`, `double-bounce`, nor, when `-` is a delimiter,
//!   `owner-*` and `*-request`; it also never splits when the delimiter is
//!   the first character (the user would be empty). We do the same.
//! - postconf(5) `propagate_unmatched_extensions` (default `canonical,
//!   virtual`): when the match was on a key without the extension, the
//!   extension is added to each result address: `joe@example.com ->
//!   joe.user@example.net` turns `joe+foo@example.com` into
//!   `joe.user+foo@example.net`. A match on `@domain` propagates nothing
//!   (mail_addr_find(3) only reports the extension for the stripped keys).
//!
//! All keys are lower-cased (tables fold keys, see [`super::map`]); the
//! extension reported back keeps the case of the input address.
//! Simplification: keys are built from the address as given; Postfix also
//! tries the RFC 5322 quoted form of unusual local parts.

use super::map::{fold, is_space, Map};

/// An address split on its **last** `@`. Without `@`, `domain` is empty
/// and `local` is the whole input (a bare local part).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address<'a> {
    pub local: &'a str,
    pub domain: &'a str,
}

impl<'a> Address<'a> {
    pub fn parse(addr: &'a str) -> Address<'a> {
        let (local, domain) = split_address(addr);
        Address {
            local,
            domain: domain.unwrap_or(""),
        }
    }
}

/// Splits `local@domain` on the last `@`; `None` for a bare local part.
pub fn split_address(addr: &str) -> (&str, Option<&str>) {
    match addr.rsplit_once('@') {
        Some((local, domain)) => (local, Some(domain)),
        None => (addr, None),
    }
}

/// Splits an address extension off a local part:
/// `split_extension("user+foo", "+")` is `("user", Some("+foo"))`; the
/// extension keeps its delimiter. The split is at the first character that
/// is in `delimiters`, and only if the user part would not be empty. An
/// empty `delimiters` (Postfix's default `recipient_delimiter`) disables
/// extensions. See the module documentation for the local parts that are
/// never split (postmaster, mailer-daemon, double-bounce, owner-*,
/// *-request).
pub fn split_extension<'a>(local: &'a str, delimiters: &str) -> (&'a str, Option<&'a str>) {
    if delimiters.is_empty() || is_unsplittable(local, delimiters) {
        return (local, None);
    }
    match local.find(|c: char| delimiters.contains(c)) {
        Some(pos) if pos > 0 => (&local[..pos], Some(&local[pos..])),
        _ => (local, None),
    }
}

/// Postfix split_addr(3): local parts that are never split.
fn is_unsplittable(local: &str, delimiters: &str) -> bool {
    const NEVER: [&str; 3] = ["postmaster", "mailer-daemon", "double-bounce"];
    if NEVER.iter().any(|n| local.eq_ignore_ascii_case(n)) {
        return true;
    }
    if delimiters.contains('-') {
        let lower = local.to_ascii_lowercase();
        if lower.starts_with("owner-") || (lower.len() > 8 && lower.ends_with("-request")) {
            return true;
        }
    }
    false
}

/// Which of Postfix's lookup strategies applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `virtual_alias_maps`: `user@domain`, `user` (only if the domain is
    /// local), `@domain`.
    VirtualAlias,
    /// `virtual_mailbox_maps`: `user@domain`, `@domain`.
    VirtualMailbox,
}

/// Keys in lookup order, each with whether it is an extension-less key
/// derived by stripping an extension.
fn candidates<'a>(
    addr: &'a str,
    delimiters: &str,
    style: Style,
    domain_is_local: bool,
) -> (Vec<(String, bool)>, Option<&'a str>) {
    let (local, domain) = split_address(addr);
    let (user, ext) = split_extension(local, delimiters);
    let mut keys: Vec<(String, bool)> = Vec::with_capacity(5);
    let mut push = |key: String, stripped: bool| {
        let key = fold(&key).into_owned();
        if !key.is_empty() && !keys.iter().any(|(k, _)| *k == key) {
            keys.push((key, stripped));
        }
    };
    match domain {
        Some(domain) => {
            push(format!("{local}@{domain}"), false);
            if ext.is_some() {
                push(format!("{user}@{domain}"), true);
            }
            if style == Style::VirtualAlias && domain_is_local {
                push(local.to_string(), false);
                if ext.is_some() {
                    push(user.to_string(), true);
                }
            }
            push(format!("@{domain}"), false);
        }
        None => {
            // A bare local part: only the localpart forms exist.
            push(local.to_string(), false);
            if ext.is_some() {
                push(user.to_string(), true);
            }
        }
    }
    (keys, ext)
}

/// The keys to try, in Postfix's order, lower-cased: for
/// `user+foo@domain`: `user+foo@domain`, `user@domain`, then (only for
/// [`Style::VirtualAlias`] with `domain_is_local`) `user+foo`, `user`,
/// then `@domain`. Duplicates and empty keys are left out.
pub fn candidate_keys(
    addr: &str,
    delimiters: &str,
    style: Style,
    domain_is_local: bool,
) -> Vec<String> {
    candidates(addr, delimiters, style, domain_is_local)
        .0
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

/// A successful table lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupHit<'m> {
    /// The table value (for aliases possibly several addresses, see
    /// [`split_values`]).
    pub value: &'m str,
    /// The (lower-cased) key that matched.
    pub key: String,
    /// The extension, with its delimiter (`"+foo"`), when the match was on
    /// a key from which it had been stripped; the router re-appends it to
    /// the results when `propagate_unmatched_extensions` says so.
    pub unmatched_extension: Option<String>,
}

impl LookupHit<'_> {
    /// The result addresses ([`split_values`]); with `propagate`, the
    /// unmatched extension is added to each ([`propagate_extension`]).
    pub fn addresses(&self, propagate: bool) -> Vec<String> {
        let values = split_values(self.value);
        match (&self.unmatched_extension, propagate) {
            (Some(ext), true) => values.iter().map(|v| propagate_extension(v, ext)).collect(),
            _ => values,
        }
    }
}

/// Looks `addr` up in `map` with Postfix semantics: the first candidate
/// key (see [`candidate_keys`]) that is in the table wins.
pub fn lookup<'m>(
    map: &'m Map,
    addr: &str,
    delimiters: &str,
    style: Style,
    domain_is_local: bool,
) -> Option<LookupHit<'m>> {
    let (keys, ext) = candidates(addr, delimiters, style, domain_is_local);
    keys.into_iter().find_map(|(key, stripped)| {
        map.get(&key).map(|value| LookupHit {
            value,
            key,
            unmatched_extension: if stripped {
                ext.map(str::to_string)
            } else {
                None
            },
        })
    })
}

/// Adds an extension to a result address the way Postfix's
/// mail_addr_map(3) does: before the last `@`, or at the end of a bare
/// local part. `("joe.user@example.net", "+foo")` gives
/// `"joe.user+foo@example.net"`.
pub fn propagate_extension(addr: &str, ext: &str) -> String {
    match addr.rsplit_once('@') {
        Some((local, domain)) => format!("{local}{ext}@{domain}"),
        None => format!("{addr}{ext}"),
    }
}

/// Splits a one-to-many table value such as `a@x, b@y c@z` into addresses:
/// separated by commas and/or whitespace, except inside double quotes
/// (`"john smith"@example.com` stays one address); `<addr>` is reduced to
/// `addr`; empty items are dropped.
pub fn split_values(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    let mut chars = value.chars();
    let mut flush = |cur: &mut String| {
        let item = std::mem::take(cur);
        let item = item
            .strip_prefix('<')
            .and_then(|s| s.strip_suffix('>'))
            .unwrap_or(&item);
        if !item.is_empty() {
            out.push(item.to_string());
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cur.push(c);
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '"' => {
                in_quotes = !in_quotes;
                cur.push(c);
            }
            c if !in_quotes && (c == ',' || is_space(c)) => flush(&mut cur),
            c => cur.push(c),
        }
    }
    flush(&mut cur);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_splitting() {
        assert_eq!(split_address("a@b@c.example"), ("a@b", Some("c.example")));
        assert_eq!(split_address("user"), ("user", None));
        assert_eq!(split_address("@example.com"), ("", Some("example.com")));
        assert_eq!(
            Address::parse("\"a@b\"@x"),
            Address {
                local: "\"a@b\"",
                domain: "x"
            }
        );
        assert_eq!(Address::parse("root").domain, "");
    }

    #[test]
    fn extensions() {
        assert_eq!(split_extension("user+foo", "+"), ("user", Some("+foo")));
        assert_eq!(
            split_extension("user+foo+bar", "+"),
            ("user", Some("+foo+bar"))
        );
        assert_eq!(
            split_extension("user-foo+bar", "+-"),
            ("user", Some("-foo+bar"))
        );
        assert_eq!(split_extension("user+", "+"), ("user", Some("+")));
        assert_eq!(split_extension("+foo", "+"), ("+foo", None));
        assert_eq!(split_extension("user", "+"), ("user", None));
        assert_eq!(split_extension("user+foo", ""), ("user+foo", None));
        assert_eq!(split_extension("üser+föo", "+"), ("üser", Some("+föo")));
        // Postfix split_addr(3) exceptions.
        assert_eq!(split_extension("owner-list", "-"), ("owner-list", None));
        assert_eq!(
            split_extension("list-request", "+-"),
            ("list-request", None)
        );
        // Without '-' in the set, owner-* splits normally.
        assert_eq!(
            split_extension("owner-list+x", "+"),
            ("owner-list", Some("+x"))
        );
        assert_eq!(split_extension("Postmaster", "+"), ("Postmaster", None));
        assert_eq!(
            split_extension("MAILER-DAEMON", "-"),
            ("MAILER-DAEMON", None)
        );
        assert_eq!(split_extension("-request", "-"), ("-request", None));
    }

    #[test]
    fn alias_order_with_extension_and_local_domain() {
        assert_eq!(
            candidate_keys("User+Foo@Example.COM", "+", Style::VirtualAlias, true),
            [
                "user+foo@example.com",
                "user@example.com",
                "user+foo",
                "user",
                "@example.com"
            ]
        );
    }

    #[test]
    fn alias_order_non_local_domain() {
        assert_eq!(
            candidate_keys("user+foo@example.com", "+", Style::VirtualAlias, false),
            ["user+foo@example.com", "user@example.com", "@example.com"]
        );
        assert_eq!(
            candidate_keys("user@example.com", "+", Style::VirtualAlias, false),
            ["user@example.com", "@example.com"]
        );
    }

    #[test]
    fn mailbox_order_ignores_local() {
        assert_eq!(
            candidate_keys("user+foo@example.com", "+", Style::VirtualMailbox, true),
            ["user+foo@example.com", "user@example.com", "@example.com"]
        );
    }

    #[test]
    fn no_delimiter_or_bare_local_part() {
        assert_eq!(
            candidate_keys("user+foo@example.com", "", Style::VirtualAlias, true),
            ["user+foo@example.com", "user+foo", "@example.com"]
        );
        assert_eq!(
            candidate_keys("User+foo", "+", Style::VirtualMailbox, false),
            ["user+foo", "user"]
        );
        assert_eq!(
            candidate_keys("@example.com", "+", Style::VirtualAlias, true),
            ["@example.com"]
        );
    }

    fn table() -> Map {
        Map::from_entries([
            ("joe@example.com", "joe.user@example.net"),
            ("joe+special@example.com", "special@example.net"),
            ("root", "admin@example.net, ops@example.net"),
            ("@example.com", "catchall@example.net"),
        ])
    }

    #[test]
    fn lookup_first_match_wins_and_reports_unmatched_extension() {
        let m = table();
        let hit = lookup(&m, "Joe+Foo@Example.com", "+", Style::VirtualAlias, false).unwrap();
        assert_eq!(hit.value, "joe.user@example.net");
        assert_eq!(hit.key, "joe@example.com");
        assert_eq!(hit.unmatched_extension.as_deref(), Some("+Foo"));
        assert_eq!(hit.addresses(true), ["joe.user+Foo@example.net"]);
        assert_eq!(hit.addresses(false), ["joe.user@example.net"]);

        let hit = lookup(
            &m,
            "joe+special@example.com",
            "+",
            Style::VirtualAlias,
            false,
        )
        .unwrap();
        assert_eq!(hit.value, "special@example.net");
        assert_eq!(hit.unmatched_extension, None);

        let hit = lookup(&m, "root+x@example.com", "+", Style::VirtualAlias, true).unwrap();
        assert_eq!(hit.key, "root");
        assert_eq!(
            hit.addresses(true),
            ["admin+x@example.net", "ops+x@example.net"]
        );

        // Not local: the bare "root" key is not consulted, @domain matches,
        // and a catch-all match propagates nothing.
        let hit = lookup(&m, "root+x@example.com", "+", Style::VirtualAlias, false).unwrap();
        assert_eq!(hit.key, "@example.com");
        assert_eq!(hit.unmatched_extension, None);

        assert!(lookup(&m, "joe@example.org", "+", Style::VirtualAlias, true).is_none());
    }

    #[test]
    fn propagate() {
        assert_eq!(
            propagate_extension("joe.user@example.net", "+foo"),
            "joe.user+foo@example.net"
        );
        assert_eq!(propagate_extension("joe", "+foo"), "joe+foo");
    }

    #[test]
    fn values() {
        assert_eq!(
            split_values(" a@x, b@y\tc@z,,<d@w> \"john smith\"@x , \"a,b\"@y "),
            ["a@x", "b@y", "c@z", "d@w", "\"john smith\"@x", "\"a,b\"@y"]
        );
        assert!(split_values(" , ").is_empty());
        assert_eq!(split_values("a\\"), ["a\\"]);
        assert_eq!(split_values("<>"), Vec::<String>::new());
    }
}
