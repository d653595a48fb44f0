//! The pure parts of Postfix's access policy: what an access-table (or
//! policy-service) answer means (access(5) "ACCEPT ACTIONS", "REJECT
//! ACTIONS", "OTHER ACTIONS"), the keys a table is asked with, and the DNS
//! list reply template. No I/O; unit tested here.

use std::net::IpAddr;

/// One access(5) answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `OK`, `RELAY`, or an all-numeric value: permit.
    Ok,
    /// `DUNNO`: as if not found; the next restriction decides.
    Dunno,
    /// `REJECT [text]`, `DEFER [text]`, `4NN text`, `5NN text`: the code,
    /// the enhanced status code if the text starts with one, and the text.
    Refuse {
        code: u16,
        dsn: Option<String>,
        text: Option<String>,
    },
    DeferIfPermit(Option<String>),
    DeferIfReject(Option<String>),
    Hold(Option<String>),
    Discard(Option<String>),
    /// `PREPEND header: value`.
    Prepend(String),
    /// `REDIRECT user@domain`.
    Redirect(String),
    /// `WARN text` and `INFO text`: logged only.
    Log(String),
    /// Anything else: a list of restrictions (or class names) to evaluate.
    Restrictions(String),
}

/// `access_map_reject_code` and `access_map_defer_code`.
#[derive(Debug, Clone, Copy)]
pub struct MapCodes {
    pub reject: u16,
    pub defer: u16,
}

/// Splits an optional leading RFC 3463 code off `text` (Postfix
/// dsn_split): `"5.7.0 go away"` is `(Some("5.7.0"), "go away")`.
pub fn dsn_split(text: &str) -> (Option<&str>, &str) {
    let (first, rest) = match text.split_once(' ') {
        Some((f, r)) => (f, r.trim_start()),
        None => (text, ""),
    };
    let parts: Vec<&str> = first.split('.').collect();
    let valid = parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts[1..]
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.chars().all(|c| c.is_ascii_digit()));
    if valid {
        (Some(first), rest)
    } else {
        (None, text)
    }
}

fn opt(text: &str) -> Option<String> {
    let t = text.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// What an access-table value (or a policy service's `action=`) says.
pub fn parse(value: &str, codes: MapCodes) -> Action {
    let value = value.trim();
    let (word, text) = match value.find([' ', '\t']) {
        Some(i) => (&value[..i], value[i..].trim()),
        None => (value, ""),
    };
    let refuse = |code: u16| {
        let (dsn, text) = dsn_split(text);
        Action::Refuse {
            code,
            dsn: dsn.map(str::to_string),
            text: opt(text),
        }
    };
    match word.to_ascii_uppercase().as_str() {
        "OK" | "RELAY" => Action::Ok,
        "DUNNO" => Action::Dunno,
        "REJECT" => refuse(codes.reject),
        "DEFER" => refuse(codes.defer),
        "DEFER_IF_PERMIT" => Action::DeferIfPermit(opt(text)),
        "DEFER_IF_REJECT" => Action::DeferIfReject(opt(text)),
        "HOLD" => Action::Hold(opt(text)),
        "DISCARD" => Action::Discard(opt(text)),
        "PREPEND" => Action::Prepend(text.to_string()),
        "REDIRECT" => Action::Redirect(text.to_string()),
        "WARN" | "INFO" => Action::Log(text.to_string()),
        _ if !word.is_empty() && word.chars().all(|c| c.is_ascii_digit()) => {
            let n: u16 = word.parse().unwrap_or(0);
            if word.len() == 3 && (400..600).contains(&n) && !text.is_empty() {
                refuse(n)
            } else {
                // All-numeric: "OK" (some POP-before-SMTP tools store a time).
                Action::Ok
            }
        }
        _ => Action::Restrictions(value.to_string()),
    }
}

/// Is `text` a header line `Name: value` (for PREPEND)?
pub fn is_header(text: &str) -> bool {
    match text.split_once(':') {
        Some((name, _)) => {
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
        }
        None => false,
    }
}

/// The domain and its parents, most specific first (`a.b.c`, `b.c`, `c`),
/// as check_domain_access tries them (parent_domain_matches_subdomains
/// includes smtpd_access_maps). Numeric host names get no parents.
pub fn domain_keys(domain: &str) -> Vec<String> {
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    if d.is_empty() {
        return Vec::new();
    }
    if d.parse::<IpAddr>().is_ok() {
        return vec![d];
    }
    let mut out = vec![d.clone()];
    let mut rest = d.as_str();
    while let Some(i) = rest.find('.') {
        rest = &rest[i + 1..];
        if rest.is_empty() {
            break;
        }
        out.push(rest.to_string());
    }
    out
}

/// The address and its shorter network prefixes (check_addr_access):
/// `192.0.2.1`, `192.0.2`, `192.0`, `192`; IPv6 `2001:db8::1` by its
/// colon-separated groups as Postfix prints them.
pub fn address_keys(ip: IpAddr) -> Vec<String> {
    let text = ip.to_string();
    let delim = if ip.is_ipv4() { '.' } else { ':' };
    let mut out = vec![text.clone()];
    let mut cur = text.as_str();
    while let Some(i) = cur.rfind(delim) {
        cur = &cur[..i];
        // "2001:db8:" from "2001:db8::1": skip empty groups.
        let trimmed = cur.trim_end_matches(delim);
        if trimmed.is_empty() {
            break;
        }
        if out.last().map(String::as_str) != Some(trimmed) {
            out.push(trimmed.to_string());
        }
        cur = trimmed;
    }
    out
}

/// The keys an envelope address is looked up with (access(5) "EMAIL
/// ADDRESS PATTERNS"): `user@domain`, then the domain and its parents,
/// then `user@`; `<>` is the null sender (smtpd_null_access_lookup_key).
/// With a `recipient_delimiter`, `user+ext@domain` is tried before
/// `user@domain`. Each key says whether it is the full key.
pub fn mail_keys(address: &str, delimiters: &str) -> Vec<(String, bool)> {
    if address.is_empty() {
        return vec![("<>".to_string(), true)];
    }
    let lower = address.to_ascii_lowercase();
    let (local, domain) = match lower.rsplit_once('@') {
        Some((l, d)) => (l.to_string(), Some(d.to_string())),
        None => (lower.clone(), None),
    };
    let mut out = vec![(lower.clone(), true)];
    let base_local = match local.find(|c| delimiters.contains(c)) {
        Some(i) if !delimiters.is_empty() && i > 0 => Some(local[..i].to_string()),
        _ => None,
    };
    if let (Some(base), Some(d)) = (&base_local, &domain) {
        out.push((format!("{base}@{d}"), false));
    }
    if let Some(d) = &domain {
        out.extend(domain_keys(d).into_iter().map(|k| (k, false)));
    }
    out.push((format!("{local}@"), false));
    if let Some(base) = base_local {
        out.push((format!("{base}@"), false));
    }
    out
}

/// Fills in a `default_rbl_reply` / `rbl_reply_maps` template: `$name`,
/// `${name}`, `${name?text}` (text when the value is not empty) and
/// `${name:text}` (text when it is), one level deep, `$$` a dollar.
pub fn expand_template(template: &str, var: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        rest = &rest[pos + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
            continue;
        }
        let (name, cond, after) = if let Some(inner) = rest.strip_prefix('{') {
            let Some(end) = inner.find('}') else {
                out.push('$');
                continue;
            };
            let body = &inner[..end];
            let split = body.find(['?', ':']);
            let (name, cond) = match split {
                Some(i) => (&body[..i], Some((body.as_bytes()[i], &body[i + 1..]))),
                None => (body, None),
            };
            (name, cond, &inner[end + 1..])
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            (&rest[..end], None, &rest[end..])
        };
        let value = var(name).unwrap_or_default();
        match cond {
            None => out.push_str(&value),
            Some((b'?', text)) if !value.is_empty() => out.push_str(&expand_template(text, var)),
            Some((b':', text)) if value.is_empty() => out.push_str(&expand_template(text, var)),
            Some(_) => {}
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: MapCodes = MapCodes {
        reject: 554,
        defer: 450,
    };

    #[test]
    fn every_action_word() {
        assert_eq!(parse("OK", C), Action::Ok);
        assert_eq!(parse("relay", C), Action::Ok);
        assert_eq!(parse("1700000000", C), Action::Ok);
        assert_eq!(parse("DUNNO whatever", C), Action::Dunno);
        assert_eq!(
            parse("REJECT", C),
            Action::Refuse {
                code: 554,
                dsn: None,
                text: None
            }
        );
        assert_eq!(
            parse("REJECT 5.7.0 go away", C),
            Action::Refuse {
                code: 554,
                dsn: Some("5.7.0".into()),
                text: Some("go away".into())
            }
        );
        assert_eq!(
            parse("defer try later", C),
            Action::Refuse {
                code: 450,
                dsn: None,
                text: Some("try later".into())
            }
        );
        assert_eq!(
            parse("550 5.1.1 no such user here", C),
            Action::Refuse {
                code: 550,
                dsn: Some("5.1.1".into()),
                text: Some("no such user here".into())
            }
        );
        assert_eq!(
            parse("421 closing", C),
            Action::Refuse {
                code: 421,
                dsn: None,
                text: Some("closing".into())
            }
        );
        assert_eq!(
            parse("HOLD look at it", C),
            Action::Hold(Some("look at it".into()))
        );
        assert_eq!(parse("DISCARD", C), Action::Discard(None));
        assert_eq!(
            parse("PREPEND X-Checked: yes", C),
            Action::Prepend("X-Checked: yes".into())
        );
        assert_eq!(
            parse("REDIRECT abuse@example.com", C),
            Action::Redirect("abuse@example.com".into())
        );
        assert_eq!(parse("DEFER_IF_PERMIT", C), Action::DeferIfPermit(None));
        assert_eq!(
            parse("DEFER_IF_REJECT x", C),
            Action::DeferIfReject(Some("x".into()))
        );
        assert_eq!(parse("WARN look", C), Action::Log("look".into()));
        assert_eq!(
            parse("permit_mynetworks, reject", C),
            Action::Restrictions("permit_mynetworks, reject".into())
        );
    }

    #[test]
    fn lookup_keys_in_postfix_order() {
        assert_eq!(
            domain_keys("Mail.Example.COM."),
            ["mail.example.com", "example.com", "com"]
        );
        assert_eq!(domain_keys("192.0.2.1"), ["192.0.2.1"]);
        assert_eq!(
            address_keys("192.0.2.1".parse().unwrap()),
            ["192.0.2.1", "192.0.2", "192.0", "192"]
        );
        assert_eq!(
            address_keys("2001:db8::1".parse().unwrap()),
            ["2001:db8::1", "2001:db8", "2001"]
        );
        assert_eq!(
            mail_keys("Joe+News@Sub.Example.com", "+"),
            [
                ("joe+news@sub.example.com".to_string(), true),
                ("joe@sub.example.com".to_string(), false),
                ("sub.example.com".to_string(), false),
                ("example.com".to_string(), false),
                ("com".to_string(), false),
                ("joe+news@".to_string(), false),
                ("joe@".to_string(), false),
            ]
        );
        assert_eq!(mail_keys("", ""), [("<>".to_string(), true)]);
    }

    #[test]
    fn rbl_template() {
        let vars = |n: &str| match n {
            "rbl_code" => Some("554".into()),
            "rbl_class" => Some("Client host".into()),
            "rbl_what" => Some("127.0.0.2".into()),
            "rbl_domain" => Some("zen.example".into()),
            "rbl_reason" => Some(String::new()),
            _ => None,
        };
        let t = "$rbl_code Service unavailable; $rbl_class [$rbl_what] blocked using \
                 $rbl_domain${rbl_reason?; $rbl_reason}";
        assert_eq!(
            expand_template(t, &vars),
            "554 Service unavailable; Client host [127.0.0.2] blocked using zen.example"
        );
        let with_reason = |n: &str| match n {
            "rbl_reason" => Some("see https://zen.example/q?127.0.0.2".into()),
            n => vars(n),
        };
        assert!(expand_template(t, &with_reason)
            .ends_with("zen.example; see https://zen.example/q?127.0.0.2"));
        assert_eq!(expand_template("${x:none}$$", &vars), "none$");
    }

    #[test]
    fn headers_for_prepend() {
        assert!(is_header("X-Spam: yes"));
        assert!(!is_header("no colon"));
        assert!(!is_header("bad name: x"));
        assert!(!is_header(": x"));
    }
}
