//! Postfix's SMTP access policy: the `smtpd_*_restrictions` lists evaluated
//! the way smtpd_check.c does (SMTPD_ACCESS_README), with access tables
//! (`action`), DNS lists and host checks (`dns`) and policy services
//! (`policy`). The configuration syntax is `config::restrictions`.
//!
//! Semantics kept from Postfix:
//! - each list is evaluated in order; `permit` (or an `OK`) ends *that*
//!   list, a rejection ends the check; a list that runs out is "dunno";
//! - with `smtpd_delay_reject = yes` (the default) the client, HELO and
//!   sender lists run at each RCPT TO, before the relay and recipient lists
//!   (Postfix 3.6+ order); with `no` the first three run at MAIL FROM
//!   (Postfix runs them at connect and HELO; pigeonpost answers them at
//!   MAIL FROM, the first command a rejection can refuse);
//! - `warn_if_reject` logs `reject_warning` instead; `defer_if_permit`
//!   turns a later permit into 450, `defer_if_reject` a later 5xx;
//! - a DNS failure never rejects: it defers only what would be permitted;
//! - reply texts and codes are Postfix's, with the `*_reject_code` keys.

pub mod action;
pub mod dns;
pub mod policy;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;

use self::action::{Action, MapCodes};
use self::dns::{ClientNames, Found};
use super::proto::Reply;
use crate::config::restrictions::{
    self as rx, AccessOn, AccessPolicy, LoginMismatch, Restriction, RhsblOn,
};
use crate::config::Config;
use crate::tables::Tables;

/// Shared by every SMTP session: DNS and the policy-service connections.
pub struct Checker {
    pub dns: dns::Lookups,
    pub policy: policy::Clients,
    /// Clients that passed postscreen-lite's tests.
    pub screened: super::screen::Passed,
}

impl Checker {
    pub fn new(config: &Config) -> Result<Checker, String> {
        Ok(Checker {
            dns: dns::Lookups::new(&config.dns_servers)?,
            policy: policy::Clients::default(),
            screened: Default::default(),
        })
    }
}

/// Where in the session a check runs (the policy protocol's `protocol_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Mail,
    Rcpt,
    Data,
    EndOfData,
}

impl Stage {
    fn protocol_state(self) -> &'static str {
        match self {
            Stage::Mail => "MAIL",
            Stage::Rcpt => "RCPT",
            Stage::Data => "DATA",
            Stage::EndOfData => "END-OF-MESSAGE",
        }
    }
}

/// What restrictions asked for besides accepting or refusing, for the
/// transaction they ran in (access(5) "OTHER ACTIONS").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    /// `HOLD`: keep the message in the queue, undelivered, with this reason.
    pub hold: Option<String>,
    /// `DISCARD`: say 250, deliver nothing.
    pub discard: Option<String>,
    /// `PREPEND`: header lines added on top of the message.
    pub prepend: Vec<String>,
    /// `REDIRECT`: every recipient replaced by this address.
    pub redirect: Option<String>,
}

/// What is known about the session when a check runs.
pub struct Facts<'a> {
    pub stage: Stage,
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub names: &'a ClientNames,
    pub helo: Option<&'a str>,
    pub esmtp: bool,
    /// MAIL FROM (empty for `<>`); `None` before MAIL.
    pub sender: Option<&'a str>,
    pub recipient: Option<&'a str>,
    /// Recipients accepted so far in this transaction.
    pub recipient_count: usize,
    pub sasl_method: Option<&'a str>,
    pub sasl_user: Option<&'a str>,
    /// "TLSv1.3" and the cipher, when encrypted.
    pub tls: Option<(&'a str, &'a str)>,
    pub in_mynetworks: bool,
    pub improper_pipelining: bool,
    /// SIZE= at MAIL, the message size at end of data.
    pub size: Option<u64>,
    /// A name for this transaction, the same for all its requests
    /// (the policy protocol's `instance`).
    pub instance: &'a str,
}

/// Recipient or sender lookups the router answers: `Some(reply)` when the
/// address is in one of our domains but no user has it.
pub type Unlisted<'a> = &'a (dyn Fn(&str, bool) -> Option<Reply> + Sync);

/// What evaluation consults.
pub struct Env<'a> {
    pub config: &'a Config,
    pub tables: &'a Tables,
    pub checker: &'a Checker,
    pub unlisted: Unlisted<'a>,
}

impl Env<'_> {
    fn policy(&self) -> &AccessPolicy {
        &self.config.smtpd_access
    }
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub result: Result<(), Reply>,
    /// The relay or recipient list ended in an explicit permit (so the
    /// router may relay, as Postfix's trivial-rewrite would).
    pub relay_permitted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Permit,
    Dunno,
    Reject(Reply),
}

/// Which list (or restriction) a reply speaks for: Postfix's reply_class
/// and reply_name.
#[derive(Clone, Copy)]
enum Subject {
    Client,
    Helo,
    Sender,
    Recipient,
    Data,
    EndOfData,
}

impl Subject {
    fn class(self) -> &'static str {
        match self {
            Subject::Client => "Client host",
            Subject::Helo => "Helo command",
            Subject::Sender => "Sender address",
            Subject::Recipient => "Recipient address",
            Subject::Data => "Data command",
            Subject::EndOfData => "End-of-data",
        }
    }
}

/// Classes and table values that name restrictions may nest this deep
/// (Postfix allows 100; real configurations use two or three levels, and
/// each level is a boxed future on the session's stack).
const MAX_NESTING: u32 = 16;

type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

struct Run<'e, 'f> {
    env: &'e Env<'e>,
    facts: &'f Facts<'f>,
    fx: &'f mut Effects,
    defer_if_permit: Option<Reply>,
    defer_if_reject: Option<Reply>,
    warn: bool,
    depth: u32,
}

/// Postfix truncates replies to 510 bytes and replaces unprintable text.
fn reply(code: u16, dsn: &str, text: &str) -> Reply {
    // The DSN class follows the reply code (smtpd_check_reject).
    let class = (b'0' + (code / 100) as u8) as char;
    let dsn = format!("{class}{}", dsn.get(1..).unwrap_or(".7.1"));
    let mut line: String = format!("{dsn} {text}")
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if line.len() > 506 {
        let mut end = 506;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
    }
    Reply::new(code, "", line)
}

fn is_valid_hostname(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 255
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        // All-numeric names are addresses, not host names.
        && !name.split('.').all(|l| l.chars().all(|c| c.is_ascii_digit()))
}

fn is_address_literal(name: &str) -> bool {
    name.strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .is_some_and(|n| {
            n.parse::<IpAddr>().is_ok()
                || n.strip_prefix("IPv6:")
                    .or_else(|| n.strip_prefix("ipv6:"))
                    .is_some_and(|v6| v6.parse::<std::net::Ipv6Addr>().is_ok())
        })
}

fn domain_of(address: &str) -> Option<&str> {
    address
        .rsplit_once('@')
        .map(|(_, d)| d)
        .filter(|d| !d.is_empty())
}

impl<'e, 'f> Run<'e, 'f> {
    fn name_of(&self, s: Subject) -> String {
        let f = self.facts;
        match s {
            Subject::Client => format!("{}[{}]", f.names.name, f.client.ip()),
            Subject::Helo => f.helo.unwrap_or("").to_string(),
            Subject::Sender => f.sender.unwrap_or("").to_string(),
            Subject::Recipient => f.recipient.unwrap_or("").to_string(),
            Subject::Data => "DATA".into(),
            Subject::EndOfData => "END-OF-MESSAGE".into(),
        }
    }

    /// A rejection, unless `warn_if_reject` is in force (then logged), or a
    /// `defer_if_reject` turns a 5xx into its deferral.
    fn refuse(&mut self, code: u16, dsn: &str, text: String) -> Verdict {
        let r = reply(code, dsn, &text);
        if self.warn {
            tracing::info!(client = %self.facts.client, "reject_warning: {}: {r}", self.facts.stage.protocol_state());
            return Verdict::Dunno;
        }
        if code >= 500 {
            if let Some(d) = self.defer_if_reject.take() {
                return Verdict::Reject(d);
            }
        }
        Verdict::Reject(r)
    }

    /// `<name>: Class rejected: text`.
    fn refuse_as(&mut self, s: Subject, code: u16, dsn: &str, why: &str) -> Verdict {
        let text = format!("<{}>: {} rejected: {why}", self.name_of(s), s.class());
        self.refuse(code, dsn, text)
    }

    fn defer_if_permit(&mut self, r: Reply) {
        if self.defer_if_permit.is_none() {
            self.defer_if_permit = Some(r);
        }
    }

    fn server_error(&mut self, why: &str) -> Verdict {
        tracing::warn!("restriction configuration problem: {why}");
        Verdict::Reject(reply(451, "4.3.5", "Server configuration error"))
    }

    fn list<'x>(&'x mut self, list: &'x [Restriction], s: Subject) -> Boxed<'x, Verdict>
    where
        'e: 'x,
        'f: 'x,
    {
        Box::pin(async move {
            for r in list {
                match self.one(r, s).await {
                    Verdict::Dunno => continue,
                    v => return v,
                }
            }
            Verdict::Dunno
        })
    }

    async fn one(&mut self, r: &Restriction, s: Subject) -> Verdict {
        use Restriction as R;
        let p = self.env.policy();
        let codes = &p.codes;
        let f = self.facts;
        match r {
            R::Permit => Verdict::Permit,
            R::Reject => self.refuse_as(s, codes.reject, "5.7.1", "Access denied"),
            R::Defer => self.refuse_as(s, codes.defer, "4.7.1", "Access denied"),
            R::DeferIfPermit => {
                let why = format!(
                    "<{}>: {} rejected: defer_if_permit requested",
                    self.name_of(s),
                    s.class()
                );
                // Postfix uses 4.7.0 for the bare restriction words.
                self.defer_if_permit(reply(codes.defer, "4.7.0", &why));
                Verdict::Dunno
            }
            R::DeferIfReject => {
                let why = format!(
                    "<{}>: {} rejected: defer_if_reject requested",
                    self.name_of(s),
                    s.class()
                );
                if self.defer_if_reject.is_none() {
                    self.defer_if_reject = Some(reply(codes.defer, "4.7.0", &why));
                }
                Verdict::Dunno
            }
            R::WarnIfReject(inner) => {
                let was = std::mem::replace(&mut self.warn, true);
                let v = Box::pin(self.one(inner, s)).await;
                self.warn = was;
                v
            }
            R::Sleep(d) => {
                tokio::time::sleep(*d).await;
                Verdict::Dunno
            }
            R::PermitMynetworks if f.in_mynetworks => Verdict::Permit,
            R::PermitSaslAuthenticated if f.sasl_user.is_some() => Verdict::Permit,
            R::PermitMynetworks | R::PermitSaslAuthenticated => Verdict::Dunno,
            R::RejectPlaintextSession if f.tls.is_none() => self.refuse(
                codes.plaintext_reject,
                "4.7.1",
                "Session encryption is required".into(),
            ),
            R::RejectPlaintextSession => Verdict::Dunno,
            R::RejectUnauthPipelining if f.improper_pipelining => {
                self.refuse_as(s, 503, "5.5.0", "Improper use of SMTP command pipelining")
            }
            R::RejectUnauthPipelining => Verdict::Dunno,
            R::RejectUnknownClientHostname => {
                self.unknown_client(f.names.name_status, "hostname", "4.7.25")
            }
            R::RejectUnknownReverseClientHostname => {
                self.unknown_client(f.names.reverse_status, "reverse hostname", "4.7.1")
            }
            R::RejectInvalidHeloHostname => match f.helo {
                Some(h) if !is_valid_hostname(h) && !is_address_literal(h) => self.refuse_as(
                    Subject::Helo,
                    codes.invalid_hostname_reject,
                    "5.5.2",
                    "Invalid name",
                ),
                _ => Verdict::Dunno,
            },
            R::RejectNonFqdnHeloHostname => match f.helo {
                Some(h)
                    if !is_address_literal(h)
                        && (!is_valid_hostname(h) || !h.trim_end_matches('.').contains('.')) =>
                {
                    self.refuse_as(
                        Subject::Helo,
                        codes.non_fqdn_reject,
                        "5.5.2",
                        "need fully-qualified hostname",
                    )
                }
                _ => Verdict::Dunno,
            },
            R::RejectUnknownHeloHostname => {
                let Some(h) = f.helo.filter(|h| !is_address_literal(h)) else {
                    return Verdict::Dunno;
                };
                match self.env.checker.dns.host(h).await {
                    Found::Yes | Found::NullMx => Verdict::Dunno,
                    Found::No => self.refuse_as(
                        Subject::Helo,
                        codes.unknown_hostname_reject,
                        "4.7.1",
                        "Host not found",
                    ),
                    Found::TempFail => {
                        let why = format!("<{h}>: Helo command rejected: Host not found");
                        self.defer_if_permit(reply(450, "4.7.1", &why));
                        Verdict::Dunno
                    }
                }
            }
            R::RejectNonFqdnSender => self.non_fqdn(Subject::Sender, f.sender),
            R::RejectNonFqdnRecipient => self.non_fqdn(Subject::Recipient, f.recipient),
            R::RejectUnknownSenderDomain => self.unknown_domain(Subject::Sender, f.sender).await,
            R::RejectUnknownRecipientDomain => {
                self.unknown_domain(Subject::Recipient, f.recipient).await
            }
            R::RejectUnlistedSender => match f.sender.filter(|s| !s.is_empty()) {
                Some(a) => match (self.env.unlisted)(a, true) {
                    Some(r) => {
                        let code = r.code;
                        let text = r.lines.join(" ");
                        let (dsn, text) = action::dsn_split(&text);
                        let dsn = dsn.unwrap_or("5.1.0").to_string();
                        let text = text.to_string();
                        self.refuse(code, &dsn, text)
                    }
                    None => Verdict::Dunno,
                },
                None => Verdict::Dunno,
            },
            R::RejectUnlistedRecipient => match f.recipient {
                Some(a) => match (self.env.unlisted)(a, false) {
                    Some(r) if self.warn => {
                        tracing::info!("reject_warning: {r}");
                        Verdict::Dunno
                    }
                    Some(r) => Verdict::Reject(r),
                    None => Verdict::Dunno,
                },
                None => Verdict::Dunno,
            },
            R::SenderLoginMismatch(kind) => self.login_mismatch(*kind),
            R::RejectMultiRecipientBounce => {
                let many = match f.stage {
                    Stage::Rcpt => f.recipient_count >= 1,
                    _ => f.recipient_count > 1,
                };
                if f.sender == Some("") && many {
                    self.refuse(
                        550,
                        "5.5.3",
                        "<>: Sender address rejected: Multi-recipient bounce".into(),
                    )
                } else {
                    Verdict::Dunno
                }
            }
            R::PermitAuthDestination => match f.recipient {
                Some(rcpt)
                    if super::router::auth_destination(self.env.config, self.env.tables, rcpt) =>
                {
                    Verdict::Permit
                }
                _ => Verdict::Dunno,
            },
            R::RejectUnauthDestination | R::DeferUnauthDestination => match f.recipient {
                Some(rcpt)
                    if !super::router::auth_destination(self.env.config, self.env.tables, rcpt) =>
                {
                    let (code, dsn) = if matches!(r, R::RejectUnauthDestination) {
                        (codes.relay_domains_reject, "5.7.1")
                    } else {
                        // Postfix 3.7 answers defer_unauth_destination with 454.
                        (454, "4.7.1")
                    };
                    self.refuse(code, dsn, format!("<{rcpt}>: Relay access denied"))
                }
                _ => Verdict::Dunno,
            },
            R::CheckAccess(on, spec) => self.check_access(*on, spec).await,
            R::RejectRblClient(list) => {
                let query = format!("{}.{}", dns::reversed(f.client.ip()), list.domain);
                match self.listed(&query, list).await {
                    Some(reason) => {
                        let what = f.client.ip().to_string();
                        self.rbl_reject("Client host", &what, &list.domain, &reason)
                    }
                    None => Verdict::Dunno,
                }
            }
            R::PermitDnswlClient(list) => {
                let query = format!("{}.{}", dns::reversed(f.client.ip()), list.domain);
                match self.listed(&query, list).await {
                    Some(_) => Verdict::Permit,
                    None => Verdict::Dunno,
                }
            }
            R::PermitRhswlClient(list) => {
                if f.names.name == "unknown" {
                    return Verdict::Dunno;
                }
                let query = format!("{}.{}", f.names.name, list.domain);
                match self.listed(&query, list).await {
                    Some(_) => Verdict::Permit,
                    None => Verdict::Dunno,
                }
            }
            R::RejectRhsbl(on, list) => {
                let (class, name) = match on {
                    RhsblOn::Client => ("Client host", Some(f.names.name.as_str())),
                    RhsblOn::ReverseClient => ("Client host", Some(f.names.reverse.as_str())),
                    RhsblOn::Helo => ("Helo command", f.helo),
                    RhsblOn::Sender => ("Sender address", f.sender.and_then(domain_of)),
                    RhsblOn::Recipient => ("Recipient address", f.recipient.and_then(domain_of)),
                };
                let Some(name) =
                    name.filter(|n| *n != "unknown" && !n.is_empty() && !n.starts_with('['))
                else {
                    return Verdict::Dunno;
                };
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                let query = format!("{name}.{}", list.domain);
                match self.listed(&query, list).await {
                    Some(reason) => self.rbl_reject(class, &name, &list.domain, &reason),
                    None => Verdict::Dunno,
                }
            }
            R::CheckPolicyService(svc) => self.policy_service(svc, s).await,
            R::Class(name) => {
                let Some(list) = p.lists.classes.get(name) else {
                    return self.server_error(&format!("undefined restriction class {name}"));
                };
                if self.depth > MAX_NESTING {
                    return self.server_error(&format!(
                        "restriction class {name} causes unreasonable recursion"
                    ));
                }
                self.depth += 1;
                let v = self.list(list, s).await;
                self.depth -= 1;
                v
            }
        }
    }

    fn non_fqdn(&mut self, s: Subject, addr: Option<&str>) -> Verdict {
        let Some(addr) = addr.filter(|a| !a.is_empty()) else {
            return Verdict::Dunno;
        };
        let domain = domain_of(addr).unwrap_or("");
        if domain.starts_with('[') {
            return Verdict::Dunno;
        }
        let d = domain.trim_end_matches('.');
        if d.is_empty() || !d.contains('.') || !is_valid_hostname(d) {
            let code = self.env.policy().codes.non_fqdn_reject;
            return self.refuse_as(s, code, "4.5.2", "need fully-qualified address");
        }
        Verdict::Dunno
    }

    async fn unknown_domain(&mut self, s: Subject, addr: Option<&str>) -> Verdict {
        let Some(addr) = addr.filter(|a| !a.is_empty()) else {
            return Verdict::Dunno;
        };
        let Some(domain) = domain_of(addr).filter(|d| !d.starts_with('[')) else {
            return Verdict::Dunno;
        };
        // Our own domains need no DNS (Postfix skips RESOLVE_CLASS_FINAL).
        if super::router::auth_destination(self.env.config, self.env.tables, addr) {
            return Verdict::Dunno;
        }
        let sender = matches!(s, Subject::Sender);
        let dsn = if sender { "4.1.8" } else { "4.1.2" };
        match self.env.checker.dns.mail_domain(domain).await {
            Found::Yes => Verdict::Dunno,
            Found::NullMx => {
                let (code, dsn) = if sender {
                    (550, "4.7.27")
                } else {
                    (556, "4.1.10")
                };
                let why = format!("Domain {domain} does not accept mail (nullMX)");
                self.refuse_as(s, code, dsn, &why)
            }
            Found::No => {
                let code = self.env.policy().codes.unknown_address_reject;
                self.refuse_as(s, code, dsn, "Domain not found")
            }
            Found::TempFail => {
                let why = format!(
                    "<{}>: {} rejected: Domain not found",
                    self.name_of(s),
                    s.class()
                );
                self.defer_if_permit(reply(450, dsn, &why));
                Verdict::Dunno
            }
        }
    }

    /// Postfix reject_unknown_client / reject_unknown_reverse_name: a
    /// temporary DNS failure is always 450, a name not found the code key's.
    fn unknown_client(&mut self, status: Found, what: &str, dsn: &str) -> Verdict {
        if status == Found::Yes {
            return Verdict::Dunno;
        }
        let code = if status == Found::TempFail {
            450
        } else {
            self.env.policy().codes.unknown_client_reject
        };
        let ip = self.facts.client.ip();
        self.refuse(
            code,
            dsn,
            format!("Client host rejected: cannot find your {what}, [{ip}]"),
        )
    }

    fn login_mismatch(&mut self, kind: LoginMismatch) -> Verdict {
        let f = self.facts;
        let Some(sender) = f.sender.filter(|s| !s.is_empty()) else {
            return Verdict::Dunno;
        };
        let owners = login_owners(self.env.tables, sender);
        match f.sasl_user {
            Some(user) if kind != LoginMismatch::Unauthenticated => {
                let owned = owners
                    .as_ref()
                    .is_some_and(|o| o.iter().any(|u| u.eq_ignore_ascii_case(user)));
                let check = owners.is_some() || kind != LoginMismatch::Known;
                if check && !owned {
                    let why = format!("not owned by user {user}");
                    return self.refuse_as(Subject::Sender, 553, "5.7.1", &why);
                }
                Verdict::Dunno
            }
            None if matches!(kind, LoginMismatch::Both | LoginMismatch::Unauthenticated)
                && owners.is_some() =>
            {
                self.refuse_as(Subject::Sender, 553, "5.7.1", "not logged in")
            }
            _ => Verdict::Dunno,
        }
    }

    /// `Some(reason)` when the DNS list lists `query`; failures never list.
    async fn listed(&self, query: &str, list: &rx::DnsList) -> Option<String> {
        let answers = self.env.checker.dns.list_answers(query).await.ok()?;
        if !answers.iter().any(|a| list.accepts(*a)) {
            return None;
        }
        Some(self.env.checker.dns.list_reason(query).await)
    }

    fn rbl_reject(&mut self, class: &str, what: &str, domain: &str, reason: &str) -> Verdict {
        let p = self.env.policy();
        let f = self.facts;
        let template = self
            .env
            .tables
            .rbl_reply_maps
            .iter()
            .find_map(|t| t.get().get(domain).map(str::to_string))
            .unwrap_or_else(|| p.default_rbl_reply.clone());
        let code = p.codes.maps_rbl_reject.to_string();
        let client = format!("{}[{}]", f.names.name, f.client.ip());
        let var = |n: &str| -> Option<String> {
            Some(match n {
                "rbl_code" => code.clone(),
                "rbl_class" => class.to_string(),
                "rbl_what" => what.to_string(),
                "rbl_domain" => domain.to_string(),
                "rbl_reason" | "rbl_txt" => reason.to_string(),
                "client" => client.clone(),
                "client_address" => f.client.ip().to_string(),
                "client_name" => f.names.name.clone(),
                "helo_name" => f.helo.unwrap_or("").to_string(),
                "sender" => f.sender.unwrap_or("").to_string(),
                "sender_domain" => f.sender.and_then(domain_of).unwrap_or("").to_string(),
                "recipient" => f.recipient.unwrap_or("").to_string(),
                "recipient_domain" => f.recipient.and_then(domain_of).unwrap_or("").to_string(),
                _ => return None,
            })
        };
        let text = action::expand_template(&template, &var);
        let (code, rest) = match text.split_once(' ') {
            Some((c, rest)) => (
                c.parse::<u16>().ok().filter(|c| (400..600).contains(c)),
                rest,
            ),
            None => (None, text.as_str()),
        };
        let Some(code) = code else {
            return self.server_error(&format!(
                "DNS list reply template does not start with a code: {text}"
            ));
        };
        let (dsn, rest) = action::dsn_split(rest);
        let dsn = dsn.unwrap_or("5.7.1").to_string();
        let rest = rest.to_string();
        self.refuse(code, &dsn, rest)
    }

    async fn check_access(&mut self, on: AccessOn, spec: &str) -> Verdict {
        let Some(table) = self.env.tables.access.get(spec).cloned() else {
            return self.server_error(&format!("access table {spec} is not open"));
        };
        let f = self.facts;
        let delims = &self.env.config.recipient_delimiter;
        // (subject, keys with "is it the full key")
        let (subject, keys): (Subject, Vec<(String, bool)>) = match on {
            AccessOn::Client | AccessOn::ReverseClientHostname => {
                let name = if on == AccessOn::Client {
                    &f.names.name
                } else {
                    &f.names.reverse
                };
                let mut keys: Vec<(String, bool)> = action::domain_keys(name)
                    .into_iter()
                    .enumerate()
                    .map(|(i, k)| (k, i == 0))
                    .collect();
                keys.extend(
                    action::address_keys(f.client.ip())
                        .into_iter()
                        .enumerate()
                        .map(|(i, k)| (k, i == 0)),
                );
                (Subject::Client, keys)
            }
            AccessOn::Helo => match f.helo {
                Some(h) => (
                    Subject::Helo,
                    action::domain_keys(h)
                        .into_iter()
                        .enumerate()
                        .map(|(i, k)| (k, i == 0))
                        .collect(),
                ),
                None => return Verdict::Dunno,
            },
            AccessOn::Sender => match f.sender {
                Some(a) => (Subject::Sender, action::mail_keys(a, delims)),
                None => return Verdict::Dunno,
            },
            AccessOn::Recipient => match f.recipient {
                Some(a) => (Subject::Recipient, action::mail_keys(a, delims)),
                None => return Verdict::Dunno,
            },
        };
        for (key, full) in keys {
            if let Some(value) = table.find(&key, !full) {
                tracing::debug!(table = spec, key, value, "access table match");
                return self.table_result(&value, subject, spec).await;
            }
        }
        Verdict::Dunno
    }

    /// What an access-table or policy answer does (smtpd_check.c
    /// check_table_result).
    fn table_result<'x>(
        &'x mut self,
        value: &'x str,
        s: Subject,
        source: &'x str,
    ) -> Boxed<'x, Verdict>
    where
        'e: 'x,
        'f: 'x,
    {
        Box::pin(async move {
            let p = self.env.policy();
            let codes = MapCodes {
                reject: p.codes.access_map_reject,
                defer: p.codes.access_map_defer,
            };
            let name = self.name_of(s);
            let class = s.class();
            match action::parse(value, codes) {
                Action::Ok => Verdict::Permit,
                Action::Dunno => Verdict::Dunno,
                Action::Refuse { code, dsn, text } => {
                    let default = if code >= 500 { "5.7.1" } else { "4.7.1" };
                    let why = text.unwrap_or_else(|| "Access denied".into());
                    self.refuse_as(s, code, dsn.as_deref().unwrap_or(default), &why)
                }
                Action::DeferIfPermit(t) | Action::DeferIfReject(t) => {
                    let if_permit = matches!(action::parse(value, codes), Action::DeferIfPermit(_));
                    let t = t.unwrap_or_default();
                    let (dsn, text) = action::dsn_split(&t);
                    let text = if text.is_empty() {
                        "Service unavailable"
                    } else {
                        text
                    };
                    let why = format!("<{name}>: {class} rejected: {text}");
                    let r = reply(codes.defer, dsn.unwrap_or("4.7.1"), &why);
                    if if_permit {
                        self.defer_if_permit(r);
                    } else if self.defer_if_reject.is_none() {
                        self.defer_if_reject = Some(r);
                    }
                    Verdict::Dunno
                }
                Action::Hold(t) => {
                    let why = format!(
                        "<{name}>: {class} {}",
                        t.as_deref().unwrap_or("triggers HOLD action")
                    );
                    tracing::info!(client = %self.facts.client, "hold: {}: {why}; from {source}", self.facts.stage.protocol_state());
                    self.fx.hold.get_or_insert(why);
                    Verdict::Dunno
                }
                Action::Discard(t) => {
                    let why = format!(
                        "<{name}>: {class} {}",
                        t.as_deref().unwrap_or("triggers DISCARD action")
                    );
                    tracing::info!(client = %self.facts.client, "discard: {}: {why}; from {source}", self.facts.stage.protocol_state());
                    self.fx.discard.get_or_insert(why);
                    Verdict::Permit
                }
                Action::Prepend(h) => {
                    if self.facts.stage == Stage::EndOfData {
                        tracing::warn!(
                            table = source,
                            "PREPEND must be used before smtpd_end_of_data_restrictions"
                        );
                    } else if action::is_header(&h) {
                        self.fx.prepend.push(h);
                    } else {
                        tracing::warn!(table = source, "PREPEND needs 'Header: text', got '{h}'");
                    }
                    Verdict::Dunno
                }
                Action::Redirect(a) => {
                    if a.contains('@') {
                        tracing::info!(client = %self.facts.client, "redirect: <{name}>: {class} triggers REDIRECT {a}; from {source}");
                        self.fx.redirect = Some(a);
                    } else {
                        tracing::warn!(table = source, "REDIRECT needs user@domain, got '{a}'");
                    }
                    Verdict::Dunno
                }
                Action::Log(t) => {
                    tracing::info!(client = %self.facts.client, "warn: {}: <{name}>: {t}; from {source}", self.facts.stage.protocol_state());
                    Verdict::Dunno
                }
                Action::Restrictions(text) => {
                    if self.depth > MAX_NESTING {
                        return self.server_error(&format!(
                            "{source}: '{text}' causes unreasonable recursion"
                        ));
                    }
                    if text.contains(':') {
                        return self.server_error(&format!(
                            "{source}: entry '{text}' names a lookup table; define a restriction class and name it instead"
                        ));
                    }
                    let classes: Vec<String> = p.lists.classes.keys().cloned().collect();
                    match rx::parse_list(&text, &classes) {
                        Ok(list) => {
                            self.depth += 1;
                            let v = self.list(&list, s).await;
                            self.depth -= 1;
                            v
                        }
                        Err(e) => self.server_error(&format!("{source}: {e}")),
                    }
                }
            }
        })
    }

    async fn policy_service(&mut self, svc: &rx::PolicyService, s: Subject) -> Verdict {
        let p = self.env.policy();
        let settings = policy::Settings::of(svc, &p.policy);
        let f = self.facts;
        let (tls_proto, tls_cipher) = f.tls.unwrap_or(("", ""));
        let attrs: Vec<(&str, String)> = vec![
            ("request", "smtpd_access_policy".into()),
            ("protocol_state", f.stage.protocol_state().into()),
            (
                "protocol_name",
                if f.esmtp { "ESMTP" } else { "SMTP" }.into(),
            ),
            ("client_address", f.client.ip().to_string()),
            ("client_name", f.names.name.clone()),
            ("client_port", f.client.port().to_string()),
            ("reverse_client_name", f.names.reverse.clone()),
            ("server_address", f.server.ip().to_string()),
            ("server_port", f.server.port().to_string()),
            ("helo_name", f.helo.unwrap_or("").into()),
            ("sender", f.sender.unwrap_or("").into()),
            ("recipient", f.recipient.unwrap_or("").into()),
            ("recipient_count", f.recipient_count.to_string()),
            ("queue_id", String::new()),
            ("instance", f.instance.into()),
            ("size", f.size.unwrap_or(0).to_string()),
            ("etrn_domain", String::new()),
            ("stress", String::new()),
            ("sasl_method", f.sasl_method.unwrap_or("").into()),
            ("sasl_username", f.sasl_user.unwrap_or("").into()),
            ("sasl_sender", String::new()),
            ("ccert_subject", String::new()),
            ("ccert_issuer", String::new()),
            ("ccert_fingerprint", String::new()),
            ("ccert_pubkey_fingerprint", String::new()),
            ("encryption_protocol", tls_proto.into()),
            ("encryption_cipher", tls_cipher.into()),
            (
                "encryption_keysize",
                if f.tls.is_some() { "256" } else { "0" }.into(),
            ),
            ("policy_context", settings.policy_context.into()),
            ("compatibility_level", "3.6".into()),
            ("mail_version", "3.7.0".into()),
        ];
        let answer = match self
            .env
            .checker
            .policy
            .ask(&svc.endpoint, &attrs, &settings)
            .await
        {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(endpoint = %svc.endpoint, "policy service failed ({e}); using default_action {}", settings.default_action);
                settings.default_action.to_string()
            }
        };
        let source = format!("policy service {}", svc.endpoint);
        self.table_result(&answer, s, &source).await
    }
}

/// The logins `smtpd_sender_login_maps` gives a sender address: its full
/// address, then `@domain` (lower-cased).
pub fn login_owners(tables: &Tables, sender: &str) -> Option<Vec<String>> {
    let lower = sender.to_ascii_lowercase();
    let mut keys = vec![lower.clone()];
    if let Some(d) = domain_of(&lower) {
        keys.push(format!("@{d}"));
    }
    for key in keys {
        for t in &tables.smtpd_sender_login_maps {
            if let Some(v) = t.get().get(&key) {
                return Some(
                    v.split(|c: char| c == ',' || c.is_whitespace())
                        .filter(|w| !w.is_empty())
                        .map(str::to_ascii_lowercase)
                        .collect(),
                );
            }
        }
    }
    None
}

/// Which lists a check runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// MAIL FROM with `smtpd_delay_reject = no`: client, HELO, sender.
    Mail,
    /// RCPT TO: (client, HELO, sender when delayed,) relay, recipient.
    Rcpt,
    Data,
    EndOfData,
}

/// Runs the lists of `check`, Postfix style; `fx` collects HOLD, DISCARD,
/// PREPEND and REDIRECT for the transaction.
pub async fn check(env: &Env<'_>, facts: &Facts<'_>, fx: &mut Effects, which: Check) -> Outcome {
    let l = &env.policy().lists;
    let early = [
        (&l.client[..], Subject::Client),
        (&l.helo[..], Subject::Helo),
        (&l.sender[..], Subject::Sender),
    ];
    let mut lists: Vec<(&[Restriction], Subject, bool)> = Vec::new();
    match which {
        Check::Mail => lists.extend(early.iter().map(|(l, s)| (*l, *s, false))),
        Check::Rcpt => {
            if env.policy().delay_reject {
                lists.extend(early.iter().map(|(l, s)| (*l, *s, false)));
            }
            lists.push((&l.relay, Subject::Recipient, true));
            lists.push((&l.recipient, Subject::Recipient, true));
        }
        Check::Data => lists.push((&l.data, Subject::Data, false)),
        Check::EndOfData => lists.push((&l.end_of_data, Subject::EndOfData, false)),
    }
    let mut run = Run {
        env,
        facts,
        fx,
        defer_if_permit: None,
        defer_if_reject: None,
        warn: false,
        depth: 0,
    };
    let mut relay_permitted = false;
    for (list, subject, relay) in lists {
        match run.list(list, subject).await {
            Verdict::Reject(r) => {
                return Outcome {
                    result: Err(r),
                    relay_permitted: false,
                }
            }
            Verdict::Permit if relay => relay_permitted = true,
            _ => {}
        }
    }
    Outcome {
        result: match run.defer_if_permit.take() {
            Some(r) => Err(r),
            None => Ok(()),
        },
        relay_permitted,
    }
}

#[cfg(test)]
mod tests;
