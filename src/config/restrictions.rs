//! Postfix SMTP access restrictions as configuration: the words of
//! `smtpd_client_restrictions` … `smtpd_end_of_data_restrictions` and of
//! `smtpd_restriction_classes` (postconf(5), SMTPD_ACCESS_README,
//! RESTRICTION_CLASS_README), checked when the configuration is loaded so a
//! typo is an error naming the key and the word, never a surprise at RCPT.
//! What each word *does* is `smtp/restrict`.

use std::collections::BTreeMap;
use std::time::Duration;

use super::parse::parse_time;

/// Which lookup key a `check_*_access` table is asked with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessOn {
    /// Client host name (and parents), then its address (and networks).
    Client,
    /// The unverified reverse (PTR) name, then the address.
    ReverseClientHostname,
    Helo,
    Sender,
    Recipient,
}

/// Which name a `reject_rhsbl_*` list is asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RhsblOn {
    Client,
    ReverseClient,
    Helo,
    Sender,
    Recipient,
}

/// A DNS list and which answers count: `zen.example` (any 127.x answer)
/// or `zen.example=127.0.0.[2..11;20]` (postconf(5) reject_rbl_client).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DnsList {
    pub domain: String,
    /// Per octet, the values accepted; `None` accepts any 127.0.0.0/8 answer.
    pub filter: Option<[Vec<(u8, u8)>; 4]>,
}

impl DnsList {
    pub fn parse(arg: &str) -> Result<DnsList, String> {
        let (domain, filter) = match arg.split_once('=') {
            Some((d, f)) => (d, Some(f)),
            None => (arg, None),
        };
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        if domain.is_empty() || !domain.contains('.') {
            return Err(format!("'{arg}' is not a DNS list domain"));
        }
        let filter = match filter {
            None => None,
            Some(f) => Some(parse_octet_filter(f).ok_or_else(|| {
                format!("'{f}' is not an address pattern (write e.g. 127.0.0.2 or 127.0.0.[2..11])")
            })?),
        };
        Ok(DnsList { domain, filter })
    }

    /// Does the answer `a` count as listed?
    pub fn accepts(&self, a: std::net::Ipv4Addr) -> bool {
        let o = a.octets();
        match &self.filter {
            // Only 127.0.0.0/8 answers are listings (RFC 5782 §2.3); other
            // answers are errors or resolver hijacking.
            None => o[0] == 127,
            Some(f) => (0..4).all(|i| f[i].iter().any(|(lo, hi)| (*lo..=*hi).contains(&o[i]))),
        }
    }
}

/// `127.0.0.2` or `127.0.0.[2..11;20]` (Postfix 2.8 and later).
fn parse_octet_filter(f: &str) -> Option<[Vec<(u8, u8)>; 4]> {
    // Split on the dots outside brackets ("[2..11]" has its own).
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in f.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            '.' if depth == 0 => {
                parts.push(&f[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&f[start..]);
    if parts.len() != 4 {
        return None;
    }
    let mut out: [Vec<(u8, u8)>; 4] = Default::default();
    for (i, p) in parts.iter().enumerate() {
        if let Some(inner) = p.strip_prefix('[').and_then(|p| p.strip_suffix(']')) {
            for item in inner.split(';') {
                let (lo, hi) = match item.split_once("..") {
                    Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
                    None => {
                        let n = item.parse().ok()?;
                        (n, n)
                    }
                };
                if lo > hi {
                    return None;
                }
                out[i].push((lo, hi));
            }
        } else {
            let n = p.parse().ok()?;
            out[i].push((n, n));
        }
    }
    Some(out)
}

/// Where a policy server listens and how it is used
/// (`check_policy_service inet:127.0.0.1:10023` or the Postfix 3.0
/// `{ inet:…, timeout=10s, default_action=DUNNO }` form).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PolicyService {
    /// `inet:host:port` or `unix:/path` as written (a bare path is `unix:`).
    pub endpoint: String,
    pub timeout: Option<Duration>,
    pub default_action: Option<String>,
    pub max_idle: Option<Duration>,
    pub max_ttl: Option<Duration>,
    pub request_limit: Option<u32>,
    pub try_limit: Option<u32>,
    pub retry_delay: Option<Duration>,
    pub policy_context: Option<String>,
}

impl PolicyService {
    fn parse(arg: &str) -> Result<PolicyService, String> {
        let mut words = arg
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|w| !w.is_empty());
        let endpoint = words
            .next()
            .ok_or("check_policy_service needs inet:host:port or unix:/path")?;
        let endpoint = if endpoint.starts_with('/') {
            format!("unix:{endpoint}")
        } else {
            endpoint.to_string()
        };
        match endpoint.split_once(':') {
            Some(("inet", rest))
                if rest.rsplit_once(':').is_some_and(|(h, p)| {
                    !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0)
                }) => {}
            Some(("unix", p)) if p.starts_with('/') => {}
            _ => {
                return Err(format!(
                    "'{endpoint}' is not a policy service (write inet:127.0.0.1:10023 or \
                     unix:/var/spool/postfix/private/policy; private/NAME is not used \
                     without Postfix's master)"
                ))
            }
        }
        let mut s = PolicyService {
            endpoint,
            timeout: None,
            default_action: None,
            max_idle: None,
            max_ttl: None,
            request_limit: None,
            try_limit: None,
            retry_delay: None,
            policy_context: None,
        };
        // default_action's value may contain spaces: the braces keep it
        // together, so take everything after "default_action=" up to the
        // next option.
        let rest: Vec<&str> = words.collect();
        let mut i = 0;
        while i < rest.len() {
            let (name, value) = rest[i]
                .split_once('=')
                .ok_or_else(|| format!("'{}' is not name=value", rest[i]))?;
            let time = |v: &str| parse_time(v, 's');
            let count = |v: &str| {
                v.parse::<u32>()
                    .map_err(|_| format!("'{v}' is not a count"))
            };
            match name {
                "timeout" => s.timeout = Some(time(value)?),
                "max_idle" => s.max_idle = Some(time(value)?),
                "max_ttl" => s.max_ttl = Some(time(value)?),
                "retry_delay" => s.retry_delay = Some(time(value)?),
                "request_limit" => s.request_limit = Some(count(value)?),
                "try_limit" => s.try_limit = Some(count(value)?),
                "policy_context" => s.policy_context = Some(value.to_string()),
                "default_action" => {
                    let mut text = value.to_string();
                    while i + 1 < rest.len() && !rest[i + 1].contains('=') {
                        i += 1;
                        text.push(' ');
                        text.push_str(rest[i]);
                    }
                    s.default_action = Some(text);
                }
                other => {
                    return Err(format!(
                        "unknown policy service option '{other}' (known: timeout, \
                         default_action, max_idle, max_ttl, request_limit, try_limit, \
                         retry_delay, policy_context)"
                    ))
                }
            }
            i += 1;
        }
        Ok(s)
    }
}

/// One restriction word (with its argument).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Restriction {
    Permit,
    Reject,
    Defer,
    DeferIfPermit,
    DeferIfReject,
    /// `warn_if_reject X`: log X's rejection instead of rejecting.
    WarnIfReject(Box<Restriction>),
    Sleep(Duration),
    PermitMynetworks,
    PermitSaslAuthenticated,
    RejectPlaintextSession,
    RejectUnauthPipelining,
    RejectUnknownClientHostname,
    RejectUnknownReverseClientHostname,
    RejectInvalidHeloHostname,
    RejectNonFqdnHeloHostname,
    RejectUnknownHeloHostname,
    RejectNonFqdnSender,
    RejectUnknownSenderDomain,
    RejectUnlistedSender,
    /// `reject_sender_login_mismatch` and its narrower forms.
    SenderLoginMismatch(LoginMismatch),
    RejectNonFqdnRecipient,
    RejectUnknownRecipientDomain,
    RejectUnlistedRecipient,
    RejectMultiRecipientBounce,
    PermitAuthDestination,
    RejectUnauthDestination,
    DeferUnauthDestination,
    CheckAccess(AccessOn, String),
    RejectRblClient(DnsList),
    PermitDnswlClient(DnsList),
    RejectRhsbl(RhsblOn, DnsList),
    PermitRhswlClient(DnsList),
    CheckPolicyService(PolicyService),
    /// A name from `smtpd_restriction_classes`.
    Class(String),
}

/// Which clients `*_sender_login_mismatch` checks (postconf(5)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoginMismatch {
    /// Authenticated: the login must own the sender; unauthenticated: the
    /// sender must not be owned by anyone.
    Both,
    Authenticated,
    Unauthenticated,
    /// Only senders that are owned, by someone else than the login.
    Known,
}

/// Words that take one argument, and what they become.
fn with_argument(word: &str, arg: &str) -> Option<Result<Restriction, String>> {
    use Restriction as R;
    let table = |on: AccessOn| Ok(R::CheckAccess(on, arg.to_string()));
    let list = DnsList::parse;
    Some(match word {
        "check_client_access" => table(AccessOn::Client),
        "check_reverse_client_hostname_access" => table(AccessOn::ReverseClientHostname),
        "check_helo_access" => table(AccessOn::Helo),
        "check_sender_access" => table(AccessOn::Sender),
        "check_recipient_access" => table(AccessOn::Recipient),
        "reject_rbl_client" | "reject_rbl" => list(arg).map(R::RejectRblClient),
        "permit_dnswl_client" => list(arg).map(R::PermitDnswlClient),
        "permit_rhswl_client" => list(arg).map(R::PermitRhswlClient),
        "reject_rhsbl_client" => list(arg).map(|l| R::RejectRhsbl(RhsblOn::Client, l)),
        "reject_rhsbl_reverse_client" => {
            list(arg).map(|l| R::RejectRhsbl(RhsblOn::ReverseClient, l))
        }
        "reject_rhsbl_helo" => list(arg).map(|l| R::RejectRhsbl(RhsblOn::Helo, l)),
        "reject_rhsbl_sender" => list(arg).map(|l| R::RejectRhsbl(RhsblOn::Sender, l)),
        "reject_rhsbl_recipient" => list(arg).map(|l| R::RejectRhsbl(RhsblOn::Recipient, l)),
        "check_policy_service" => PolicyService::parse(arg).map(R::CheckPolicyService),
        "sleep" => parse_time(arg, 's').map(R::Sleep),
        _ => return None,
    })
}

fn without_argument(word: &str) -> Option<Restriction> {
    use Restriction as R;
    Some(match word {
        "permit" => R::Permit,
        "reject" => R::Reject,
        "defer" => R::Defer,
        "defer_if_permit" => R::DeferIfPermit,
        "defer_if_reject" => R::DeferIfReject,
        "permit_mynetworks" => R::PermitMynetworks,
        "permit_sasl_authenticated" => R::PermitSaslAuthenticated,
        "reject_plaintext_session" => R::RejectPlaintextSession,
        "reject_unauth_pipelining" => R::RejectUnauthPipelining,
        "reject_unknown_client_hostname" | "reject_unknown_client" => {
            R::RejectUnknownClientHostname
        }
        "reject_unknown_reverse_client_hostname" => R::RejectUnknownReverseClientHostname,
        "reject_invalid_helo_hostname" | "reject_invalid_hostname" => R::RejectInvalidHeloHostname,
        "reject_non_fqdn_helo_hostname" | "reject_non_fqdn_hostname" => {
            R::RejectNonFqdnHeloHostname
        }
        "reject_unknown_helo_hostname" | "reject_unknown_hostname" => R::RejectUnknownHeloHostname,
        "reject_non_fqdn_sender" => R::RejectNonFqdnSender,
        "reject_unknown_sender_domain" => R::RejectUnknownSenderDomain,
        "reject_unlisted_sender" => R::RejectUnlistedSender,
        "reject_sender_login_mismatch" => R::SenderLoginMismatch(LoginMismatch::Both),
        "reject_authenticated_sender_login_mismatch" => {
            R::SenderLoginMismatch(LoginMismatch::Authenticated)
        }
        "reject_unauthenticated_sender_login_mismatch" => {
            R::SenderLoginMismatch(LoginMismatch::Unauthenticated)
        }
        "reject_known_sender_login_mismatch" => R::SenderLoginMismatch(LoginMismatch::Known),
        "reject_non_fqdn_recipient" => R::RejectNonFqdnRecipient,
        "reject_unknown_recipient_domain" => R::RejectUnknownRecipientDomain,
        "reject_unlisted_recipient" | "check_recipient_maps" => R::RejectUnlistedRecipient,
        "reject_multi_recipient_bounce" => R::RejectMultiRecipientBounce,
        "permit_auth_destination" => R::PermitAuthDestination,
        "reject_unauth_destination" => R::RejectUnauthDestination,
        "defer_unauth_destination" => R::DeferUnauthDestination,
        _ => return None,
    })
}

const WITH_ARGUMENT: &[&str] = &[
    "check_client_access",
    "check_reverse_client_hostname_access",
    "check_helo_access",
    "check_sender_access",
    "check_recipient_access",
    "reject_rbl_client",
    "permit_dnswl_client",
    "permit_rhswl_client",
    "reject_rhsbl_client",
    "reject_rhsbl_reverse_client",
    "reject_rhsbl_helo",
    "reject_rhsbl_sender",
    "reject_rhsbl_recipient",
    "check_policy_service",
    "sleep",
];

const WITHOUT_ARGUMENT: &[&str] = &[
    "permit",
    "reject",
    "defer",
    "defer_if_permit",
    "defer_if_reject",
    "warn_if_reject",
    "permit_mynetworks",
    "permit_sasl_authenticated",
    "reject_plaintext_session",
    "reject_unauth_pipelining",
    "reject_unknown_client_hostname",
    "reject_unknown_reverse_client_hostname",
    "reject_invalid_helo_hostname",
    "reject_non_fqdn_helo_hostname",
    "reject_unknown_helo_hostname",
    "reject_non_fqdn_sender",
    "reject_unknown_sender_domain",
    "reject_unlisted_sender",
    "reject_sender_login_mismatch",
    "reject_authenticated_sender_login_mismatch",
    "reject_unauthenticated_sender_login_mismatch",
    "reject_known_sender_login_mismatch",
    "reject_non_fqdn_recipient",
    "reject_unknown_recipient_domain",
    "reject_unlisted_recipient",
    "reject_multi_recipient_bounce",
    "permit_auth_destination",
    "reject_unauth_destination",
    "defer_unauth_destination",
];

/// Postfix words pigeonpost knows but does not implement: a clear
/// "not supported" rather than "unknown".
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "reject_unverified_sender",
        "address verification (verify(8)) is not implemented",
    ),
    (
        "reject_unverified_recipient",
        "address verification (verify(8)) is not implemented",
    ),
    (
        "check_ccert_access",
        "TLS client certificates are not requested",
    ),
    (
        "permit_tls_clientcerts",
        "TLS client certificates are not requested",
    ),
    (
        "permit_tls_all_clientcerts",
        "TLS client certificates are not requested",
    ),
    ("check_sasl_access", "not implemented"),
    (
        "permit_mx_backup",
        "MX backup relaying is not implemented; list the domains in relay_domains",
    ),
    (
        "check_relay_domains",
        "removed from Postfix; use reject_unauth_destination",
    ),
    (
        "permit_naked_ip_address",
        "removed from Postfix; use permit_mynetworks",
    ),
    (
        "permit_inet_interfaces",
        "not implemented; use permit_mynetworks",
    ),
    (
        "reject_unknown_forward_client_hostname",
        "not implemented; use reject_unknown_client_hostname",
    ),
    (
        "check_client_mx_access",
        "MX/NS/A access lookups are not implemented",
    ),
    (
        "check_client_ns_access",
        "MX/NS/A access lookups are not implemented",
    ),
    (
        "check_client_a_access",
        "MX/NS/A access lookups are not implemented",
    ),
    (
        "check_helo_mx_access",
        "MX/NS/A access lookups are not implemented",
    ),
    (
        "check_helo_ns_access",
        "MX/NS/A access lookups are not implemented",
    ),
    (
        "check_helo_a_access",
        "MX/NS/A access lookups are not implemented",
    ),
    (
        "check_sender_mx_access",
        "MX/NS/A access lookups are not implemented",
    ),
    (
        "check_sender_ns_access",
        "MX/NS/A access lookups are not implemented",
    ),
    (
        "check_sender_a_access",
        "MX/NS/A access lookups are not implemented",
    ),
    (
        "check_recipient_mx_access",
        "MX/NS/A access lookups are not implemented",
    ),
    (
        "check_recipient_ns_access",
        "MX/NS/A access lookups are not implemented",
    ),
    (
        "check_recipient_a_access",
        "MX/NS/A access lookups are not implemented",
    ),
    ("check_etrn_access", "ETRN is not implemented"),
];

/// Splits a list on commas and whitespace, keeping `{ … }` groups whole
/// (postconf(5): "Specify … {name=value, …}" since Postfix 3.0).
pub fn split_words(value: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0usize;
    for c in value.chars() {
        match c {
            '{' => {
                if depth == 0 && !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                if depth > 0 {
                    cur.push(c);
                }
                depth += 1;
            }
            '}' => {
                depth = depth.checked_sub(1).ok_or("'}' without '{'")?;
                if depth == 0 {
                    out.push(std::mem::take(&mut cur).trim().to_string());
                } else {
                    cur.push(c);
                }
            }
            c if depth == 0 && (c == ',' || c.is_whitespace()) => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if depth > 0 {
        return Err("'{' without '}'".into());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

/// Parses one list. `classes` are the names allowed as class references.
pub fn parse_list(value: &str, classes: &[String]) -> Result<Vec<Restriction>, String> {
    let words = split_words(value)?;
    let mut out = Vec::new();
    let mut it = words.into_iter();
    let mut warn_next = false;
    while let Some(word) = it.next() {
        let lower = word.to_ascii_lowercase();
        let r = if lower == "warn_if_reject" {
            if warn_next {
                return Err("'warn_if_reject warn_if_reject'".into());
            }
            warn_next = true;
            continue;
        } else if let Some(r) = without_argument(&lower) {
            r
        } else if WITH_ARGUMENT.contains(&lower.as_str()) {
            let arg = it
                .next()
                .ok_or_else(|| format!("'{word}' needs an argument"))?;
            with_argument(&lower, &arg)
                .expect("listed in WITH_ARGUMENT")
                .map_err(|e| format!("{word} {arg}: {e}"))?
        } else if classes.contains(&word) {
            Restriction::Class(word)
        } else if let Some((_, why)) = UNSUPPORTED.iter().find(|(w, _)| *w == lower) {
            return Err(format!("'{word}' is not supported by pigeonpost: {why}"));
        } else {
            let hint = suggest(&lower, classes)
                .map(|s| format!(" (did you mean '{s}'?)"))
                .unwrap_or_default();
            return Err(format!("unknown restriction '{word}'{hint}"));
        };
        out.push(if std::mem::take(&mut warn_next) {
            Restriction::WarnIfReject(Box::new(r))
        } else {
            r
        });
    }
    if warn_next {
        return Err("'warn_if_reject' must be followed by a restriction".into());
    }
    Ok(out)
}

fn suggest(word: &str, classes: &[String]) -> Option<String> {
    WITH_ARGUMENT
        .iter()
        .chain(WITHOUT_ARGUMENT)
        .map(|w| w.to_string())
        .chain(classes.iter().cloned())
        .map(|w| (super::keys::levenshtein(word, &w), w))
        .filter(|(d, w)| *d <= 3.max(w.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, w)| w)
}

/// The lists in evaluation order, with their keys.
pub const LIST_KEYS: [&str; 7] = [
    "smtpd_client_restrictions",
    "smtpd_helo_restrictions",
    "smtpd_sender_restrictions",
    "smtpd_relay_restrictions",
    "smtpd_recipient_restrictions",
    "smtpd_data_restrictions",
    "smtpd_end_of_data_restrictions",
];

/// Every restriction list and class, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restrictions {
    pub client: Vec<Restriction>,
    pub helo: Vec<Restriction>,
    pub sender: Vec<Restriction>,
    pub relay: Vec<Restriction>,
    pub recipient: Vec<Restriction>,
    pub data: Vec<Restriction>,
    pub end_of_data: Vec<Restriction>,
    pub classes: BTreeMap<String, Vec<Restriction>>,
}

impl Restrictions {
    /// The seven lists, in the order of [`LIST_KEYS`].
    fn lists(&self) -> [&Vec<Restriction>; 7] {
        [
            &self.client,
            &self.helo,
            &self.sender,
            &self.relay,
            &self.recipient,
            &self.data,
            &self.end_of_data,
        ]
    }

    /// Every table named by a `check_*_access` anywhere, once each.
    pub fn access_tables(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        let lists = self.lists();
        for r in lists.into_iter().chain(self.classes.values()).flatten() {
            let r = match r {
                Restriction::WarnIfReject(inner) => inner,
                r => r,
            };
            if let Restriction::CheckAccess(_, t) = r {
                if !out.contains(&t.as_str()) {
                    out.push(t);
                }
            }
        }
        out
    }

    /// Does any restriction need the client's host names (a reverse DNS
    /// lookup per connection)?
    pub fn needs_client_names(&self) -> bool {
        fn needs(r: &Restriction) -> bool {
            match r {
                Restriction::WarnIfReject(inner) => needs(inner),
                Restriction::CheckAccess(on, _) => {
                    matches!(on, AccessOn::Client | AccessOn::ReverseClientHostname)
                }
                Restriction::RejectRhsbl(on, _) => {
                    matches!(on, RhsblOn::Client | RhsblOn::ReverseClient)
                }
                Restriction::RejectUnknownClientHostname
                | Restriction::RejectUnknownReverseClientHostname
                | Restriction::PermitRhswlClient(_)
                | Restriction::CheckPolicyService(_) => true,
                _ => false,
            }
        }
        self.lists()
            .into_iter()
            .chain(self.classes.values())
            .flatten()
            .any(needs)
    }

    /// The key of the first list naming the access table `spec` (for
    /// error messages); a class's table is reported under the class list.
    pub fn key_naming(&self, spec: &str) -> &'static str {
        let lists = self.lists();
        let names = |r: &Restriction| match r {
            Restriction::WarnIfReject(inner) => {
                matches!(&**inner, Restriction::CheckAccess(_, t) if t == spec)
            }
            Restriction::CheckAccess(_, t) => t == spec,
            _ => false,
        };
        lists
            .iter()
            .zip(LIST_KEYS)
            .find(|(l, _)| l.iter().any(names))
            .map(|(_, k)| k)
            .unwrap_or("smtpd_restriction_classes")
    }
}

/// Postfix's open-relay guard (smtpd_check.c): without one of these at the
/// top of the relay (or, when that is empty, the recipient) list, any
/// client could relay.
pub fn check_relay_guard(r: &Restrictions) -> Result<(), (&'static str, String)> {
    let guards = |l: &[Restriction]| {
        l.iter().any(|r| {
            matches!(
                r,
                Restriction::Reject
                    | Restriction::Defer
                    | Restriction::DeferIfPermit
                    | Restriction::RejectUnauthDestination
                    | Restriction::DeferUnauthDestination
            )
        })
    };
    let (key, list) = if r.relay.is_empty() {
        ("smtpd_recipient_restrictions", &r.recipient)
    } else {
        ("smtpd_relay_restrictions", &r.relay)
    };
    if guards(list) {
        return Ok(());
    }
    Err((
        key,
        "specify at least one working instance of: reject_unauth_destination, \
         defer_unauth_destination, reject, defer or defer_if_permit (without one, \
         anyone could relay mail through this server)"
            .into(),
    ))
}

/// Reply codes of the restrictions (postconf(5) `*_reject_code`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codes {
    pub maps_rbl_reject: u16,
    pub access_map_reject: u16,
    pub access_map_defer: u16,
    pub reject: u16,
    pub defer: u16,
    pub relay_domains_reject: u16,
    pub unknown_address_reject: u16,
    pub unknown_client_reject: u16,
    pub unknown_hostname_reject: u16,
    pub invalid_hostname_reject: u16,
    pub non_fqdn_reject: u16,
    pub plaintext_reject: u16,
}

/// The `smtpd_policy_service_*` defaults each service starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDefaults {
    pub timeout: Duration,
    pub default_action: String,
    pub max_idle: Duration,
    pub max_ttl: Duration,
    pub request_limit: u32,
    pub try_limit: u32,
    pub retry_delay: Duration,
    pub policy_context: String,
}

/// Everything the SMTP server's access policy is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessPolicy {
    pub lists: Restrictions,
    pub codes: Codes,
    /// `smtpd_delay_reject`: client, HELO and sender lists run at RCPT.
    pub delay_reject: bool,
    pub helo_required: bool,
    pub sender_login_maps: Vec<String>,
    pub reject_unlisted_sender: bool,
    pub rbl_reply_maps: Vec<String>,
    pub default_rbl_reply: String,
    pub policy: PolicyDefaults,
    pub screen: Screen,
}

impl AccessPolicy {
    /// Are the lists exactly pigeonpost's defaults (nothing to evaluate
    /// beyond the relay rule the router already applies)?
    pub fn is_default(&self) -> bool {
        let l = &self.lists;
        l.client.is_empty()
            && l.helo.is_empty()
            && l.sender.is_empty()
            && l.recipient.is_empty()
            && l.data.is_empty()
            && l.end_of_data.is_empty()
            && l.relay
                == [
                    Restriction::PermitMynetworks,
                    Restriction::PermitSaslAuthenticated,
                    Restriction::RejectUnauthDestination,
                ]
    }
}

/// What to do with a client that failed a test (Postfix's
/// `postscreen_*_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScreenAction {
    /// Log, then let the client talk to the real server.
    Ignore,
    /// Let the session run but refuse every recipient (the client's
    /// commands are logged, which helps an administrator).
    Enforce,
    /// Say 521 and hang up.
    Drop,
}

impl ScreenAction {
    pub fn parse(text: &str) -> Result<ScreenAction, String> {
        match text {
            "ignore" => Ok(ScreenAction::Ignore),
            "enforce" => Ok(ScreenAction::Enforce),
            "drop" => Ok(ScreenAction::Drop),
            other => Err(format!("'{other}': use ignore, enforce or drop")),
        }
    }
}

/// One `postscreen_dnsbl_sites` entry: `zone[=filter][*weight]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    pub list: DnsList,
    pub weight: i32,
}

impl Site {
    pub fn parse(text: &str) -> Result<Site, String> {
        let (list, weight) = match text.rsplit_once('*') {
            Some((l, w)) => (
                l,
                w.parse::<i32>()
                    .map_err(|_| format!("'{text}': the weight after '*' must be a number"))?,
            ),
            None => (text, 1),
        };
        Ok(Site {
            list: DnsList::parse(list)?,
            weight,
        })
    }
}

/// postscreen-lite's settings (`postscreen = yes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Screen {
    pub enabled: bool,
    pub sites: Vec<Site>,
    pub threshold: i32,
    pub dnsbl_action: ScreenAction,
    pub greet_action: ScreenAction,
    pub greet_wait: Duration,
    pub dnsbl_ttl: Duration,
    pub greet_ttl: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_typical_main_cf_block() {
        let classes = vec!["from_freemail".to_string()];
        let l = parse_list(
            "permit_mynetworks,\n  permit_sasl_authenticated,\n  reject_unauth_destination, \
             check_client_access cidr:/etc/postfix/access.cidr, \
             reject_rbl_client zen.spamhaus.org=127.0.0.[2..11], \
             warn_if_reject reject_unknown_helo_hostname, \
             check_policy_service { inet:127.0.0.1:10023, timeout=10s, default_action=DUNNO }, \
             check_policy_service unix:/run/policyd-spf.sock, from_freemail, sleep 1",
            &classes,
        )
        .unwrap();
        assert_eq!(l.len(), 10);
        assert_eq!(l[0], Restriction::PermitMynetworks);
        assert_eq!(
            l[3],
            Restriction::CheckAccess(AccessOn::Client, "cidr:/etc/postfix/access.cidr".into())
        );
        let Restriction::RejectRblClient(d) = &l[4] else {
            panic!("{:?}", l[4])
        };
        assert_eq!(d.domain, "zen.spamhaus.org");
        assert!(d.accepts("127.0.0.2".parse().unwrap()));
        assert!(d.accepts("127.0.0.11".parse().unwrap()));
        assert!(!d.accepts("127.0.0.12".parse().unwrap()));
        assert_eq!(
            l[5],
            Restriction::WarnIfReject(Box::new(Restriction::RejectUnknownHeloHostname))
        );
        let Restriction::CheckPolicyService(p) = &l[6] else {
            panic!()
        };
        assert_eq!(p.endpoint, "inet:127.0.0.1:10023");
        assert_eq!(p.timeout, Some(Duration::from_secs(10)));
        assert_eq!(p.default_action.as_deref(), Some("DUNNO"));
        assert_eq!(l[8], Restriction::Class("from_freemail".into()));
        assert_eq!(l[9], Restriction::Sleep(Duration::from_secs(1)));
    }

    #[test]
    fn policy_default_action_keeps_its_spaces() {
        let l = parse_list(
            "check_policy_service { unix:/run/p, default_action=451 4.3.5 try later, timeout=5 }",
            &[],
        )
        .unwrap();
        let Restriction::CheckPolicyService(p) = &l[0] else {
            panic!()
        };
        assert_eq!(p.default_action.as_deref(), Some("451 4.3.5 try later"));
        assert_eq!(p.timeout, Some(Duration::from_secs(5)));
    }

    #[test]
    fn mistakes_name_the_word() {
        for (text, want) in [
            (
                "permit_mynetwork",
                "unknown restriction 'permit_mynetwork' (did you mean 'permit_mynetworks'?)",
            ),
            ("reject_unverified_sender", "not supported by pigeonpost"),
            (
                "check_client_access",
                "'check_client_access' needs an argument",
            ),
            ("reject_rbl_client localhost", "is not a DNS list domain"),
            (
                "reject_rbl_client zen.example=127.0.0",
                "is not an address pattern",
            ),
            (
                "check_policy_service 127.0.0.1:10023",
                "is not a policy service",
            ),
            (
                "check_policy_service { inet:127.0.0.1:1, color=red }",
                "unknown policy service option 'color'",
            ),
            ("warn_if_reject", "must be followed"),
            ("permit {", "'{' without '}'"),
        ] {
            let e = parse_list(text, &[]).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn sites_with_weights_and_filters() {
        let s = Site::parse("zen.spamhaus.org*3").unwrap();
        assert_eq!((s.list.domain.as_str(), s.weight), ("zen.spamhaus.org", 3));
        let s = Site::parse("list.dnswl.org=127.0.[0..255].[1..3]*-2").unwrap();
        assert_eq!(s.weight, -2);
        assert!(s.list.accepts("127.0.10.2".parse().unwrap()));
        assert!(!s.list.accepts("127.0.10.0".parse().unwrap()));
        assert_eq!(Site::parse("b.example").unwrap().weight, 1);
        assert!(Site::parse("b.example*x").is_err());
    }

    #[test]
    fn relay_guard_is_required() {
        let mut r = Restrictions {
            relay: parse_list("permit_mynetworks, permit_sasl_authenticated", &[]).unwrap(),
            ..Default::default()
        };
        assert_eq!(
            check_relay_guard(&r).unwrap_err().0,
            "smtpd_relay_restrictions"
        );
        r.relay.push(Restriction::RejectUnauthDestination);
        assert!(check_relay_guard(&r).is_ok());
        // An empty relay list moves the duty to the recipient list.
        r.relay.clear();
        assert_eq!(
            check_relay_guard(&r).unwrap_err().0,
            "smtpd_recipient_restrictions"
        );
        r.recipient =
            parse_list("permit_sasl_authenticated defer_unauth_destination", &[]).unwrap();
        assert!(check_relay_guard(&r).is_ok());
    }

    #[test]
    fn every_listed_word_parses() {
        for w in WITHOUT_ARGUMENT.iter().filter(|w| **w != "warn_if_reject") {
            assert!(parse_list(w, &[]).is_ok(), "{w}");
        }
        for w in WITH_ARGUMENT {
            let arg = match *w {
                "check_policy_service" => "inet:127.0.0.1:9",
                "sleep" => "1",
                w if w.contains("access") => "hash:/etc/postfix/access",
                _ => "list.example",
            };
            assert!(parse_list(&format!("{w} {arg}"), &[]).is_ok(), "{w}");
        }
    }
}
