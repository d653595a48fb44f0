//! A strict check of an SPF record's syntax (RFC 7208 §12), for the
//! record of the domain being checked. mail-auth is lenient here: it
//! evaluates records with an unknown mechanism or a malformed address
//! instead of returning `permerror` as RFC 7208 §4.6 requires, which is
//! what other verifiers (pyspf, libspf2) answer.

use std::net::{Ipv4Addr, Ipv6Addr};

/// `Err(why)` when `record` (a `v=spf1` TXT record) is not valid SPF.
pub fn check(record: &str) -> Result<(), String> {
    let mut terms = record.split(' ').filter(|t| !t.is_empty());
    match terms.next() {
        Some(v) if v.eq_ignore_ascii_case("v=spf1") => {}
        _ => return Err("not a v=spf1 record".into()),
    }
    let (mut redirects, mut exps) = (0, 0);
    for term in terms {
        if let Some((name, value)) = modifier(term) {
            match name.to_ascii_lowercase().as_str() {
                "redirect" => redirects += 1,
                "exp" => exps += 1,
                _ => {}
            }
            // redirect= and exp= name a domain; unknown modifiers are
            // ignored (RFC 7208 §6).
            let names_domain =
                name.eq_ignore_ascii_case("redirect") || name.eq_ignore_ascii_case("exp");
            if names_domain && !domain_spec(value) {
                return Err(format!("'{term}': bad domain"));
            }
            continue;
        }
        mechanism(term.trim_start_matches(['+', '-', '~', '?']))
            .map_err(|e| format!("'{term}': {e}"))?;
    }
    // RFC 7208 §6: each modifier at most once.
    if redirects > 1 || exps > 1 {
        return Err("redirect= or exp= more than once".into());
    }
    Ok(())
}

/// `name=value` with an RFC 7208 name (ALPHA *( ALPHA / DIGIT / "-" / "_" / "." )).
fn modifier(term: &str) -> Option<(&str, &str)> {
    let (name, value) = term.split_once('=')?;
    let mut chars = name.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    .then_some((name, value))
}

fn mechanism(m: &str) -> Result<(), String> {
    let (name, arg) = match m.find([':', '/']) {
        Some(i) => (&m[..i], Some(&m[i..])),
        None => (m, None),
    };
    match name.to_ascii_lowercase().as_str() {
        "all" if arg.is_none() => Ok(()),
        "include" | "exists" => match arg.and_then(|a| a.strip_prefix(':')) {
            Some(d) if domain_spec(d) => Ok(()),
            _ => Err("needs :domain".into()),
        },
        "a" | "mx" => {
            let arg = arg.unwrap_or("");
            let (domain, cidr) = match arg.find('/') {
                Some(i) => (&arg[..i], Some(&arg[i..])),
                None => (arg, None),
            };
            if let Some(d) = domain.strip_prefix(':') {
                if !domain_spec(d) {
                    return Err("bad domain".into());
                }
            } else if !domain.is_empty() {
                return Err("junk after the mechanism".into());
            }
            dual_cidr(cidr.unwrap_or(""))
        }
        "ptr" => match arg {
            None => Ok(()),
            Some(a) => match a.strip_prefix(':') {
                Some(d) if domain_spec(d) => Ok(()),
                _ => Err("bad domain".into()),
            },
        },
        "ip4" => {
            let a = arg
                .and_then(|a| a.strip_prefix(':'))
                .ok_or("needs :address")?;
            let (ip, cidr) = a.split_once('/').map_or((a, None), |(i, c)| (i, Some(c)));
            ip.parse::<Ipv4Addr>()
                .map_err(|_| format!("'{ip}' is not an IPv4 address"))?;
            cidr_len(cidr, 32)
        }
        "ip6" => {
            let a = arg
                .and_then(|a| a.strip_prefix(':'))
                .ok_or("needs :address")?;
            let (ip, cidr) = a.split_once('/').map_or((a, None), |(i, c)| (i, Some(c)));
            ip.parse::<Ipv6Addr>()
                .map_err(|_| format!("'{ip}' is not an IPv6 address"))?;
            cidr_len(cidr, 128)
        }
        _ => Err("unknown mechanism".into()),
    }
}

fn cidr_len(cidr: Option<&str>, max: u8) -> Result<(), String> {
    match cidr {
        None => Ok(()),
        Some(c) => match c.parse::<u8>() {
            Ok(n) if n <= max && !c.starts_with('0') || c == "0" => Ok(()),
            _ => Err(format!("bad prefix length /{c}")),
        },
    }
}

/// `/n`, `//n` or `/n//m` after a or mx.
fn dual_cidr(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Ok(());
    }
    let rest = s.strip_prefix('/').ok_or("bad prefix length")?;
    let (v4, v6) = match rest.split_once("//") {
        Some((a, b)) => (Some(a), Some(b)),
        None => match rest.strip_prefix('/') {
            Some(b) => (None, Some(b)),
            None => (Some(rest), None),
        },
    };
    if let Some(v4) = v4.filter(|v| !v.is_empty()) {
        cidr_len(Some(v4), 32)?;
    }
    if let Some(v6) = v6 {
        cidr_len(Some(v6), 128)?;
    }
    Ok(())
}

/// A domain-spec: macros allowed; not empty, no spaces.
fn domain_spec(d: &str) -> bool {
    !d.is_empty() && !d.contains(char::is_whitespace) && !d.starts_with('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_records() {
        for r in [
            "v=spf1 -all",
            "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 a mx:example.com/24//64 ~all",
            "v=spf1 include:_spf.example.com exists:%{i}.x.example.com ?all",
            "v=spf1 redirect=example.com",
            "v=spf1 ptr ptr:example.com -all exp=explain.%{d}",
            "v=spf1 a/24 mx//64 -all unknown-mod=x",
            "V=SPF1 +ALL",
        ] {
            assert!(check(r).is_ok(), "{r}: {:?}", check(r));
        }
    }

    #[test]
    fn errors_are_permerrors() {
        for r in [
            "v=spf1 ip4:127.0.0.300 -all",
            "v=spf1 frobnicate -all",
            "v=spf1 ip4:192.0.2.0/33",
            "v=spf1 include -all",
            "v=spf1 redirect=a.example redirect=b.example",
            "v=spf1 a:example.com/40",
            "v=spf1 all:x",
            "v=spf2 -all",
        ] {
            assert!(check(r).is_err(), "{r}");
        }
    }
}
