//! Recipient routing: decides, at `RCPT TO` time, where one envelope
//! recipient goes, the way Postfix's trivial-rewrite(8) + cleanup(8) +
//! local(8)/virtual(8) would (ARCHITECTURE.md, "the one-page map").
//!
//! Order of work for one recipient:
//! 1. Syntax (RFC 5321 §4.1.2): `local@domain`, the domain compared
//!    case-insensitively without a trailing dot; a bare `postmaster` is the
//!    local postmaster (RFC 5321 §4.5.1); any other bare local part gets
//!    `@$myorigin` (Postfix `append_at_myorigin`). A source route
//!    (`@a,@b:user@c`) is dropped, as RFC 5321 §3.6.1 and Postfix allow.
//! 2. Address tricks never relay (Postfix `allow_untrusted_routing = no`,
//!    ARCHITECTURE.md, "compatibility contract"): pigeonpost implements none of Postfix's routing
//!    rewrites (`allow_percent_hack`, `swap_bangpath`,
//!    `resolve_dequoted_address`), and refuses a local part containing `%`,
//!    `!` or `@` (quoted or not) outright, for every client: `554 5.7.1
//!    Relay access denied` for an untrusted client (Postfix's answer), and
//!    `501 5.1.3` for a trusted one (write the plain address instead). A
//!    source-routed recipient from an untrusted client is refused if it would
//!    produce any remote destination, even in `relay_domains`.
//! 3. The relay decision is taken on the recipient's own domain class
//!    (Postfix `reject_unauth_destination`, ADDRESS_CLASS_README): local,
//!    virtual alias, virtual mailbox and relay domains are accepted from
//!    anyone; any other domain only from a client in `mynetworks` or one that
//!    authenticated. Addresses produced by alias expansion are the
//!    administrator's choice and may go anywhere.
//! 4. `virtual_alias_maps` for every address (virtual(5), cleanup(8)),
//!    recursively, then the domain class of each result
//!    (ADDRESS_CLASS_README): local (`mydestination`: aliases(5), then the
//!    userdb, local(8)), virtual alias (unknown user), virtual mailbox
//!    (virtual(8)), relay or other (remote).
//!
//! Decisions where pigeonpost differs from Postfix because it decides
//! everything at RCPT time and has no bounce at that point:
//! - when an alias expands to several targets and some of them fail
//!   permanently (unknown user, `|command`, `/file`), those are logged with
//!   `tracing::warn!` and dropped, and the rest are delivered; only when no
//!   target is left is the recipient refused (with the first failure).
//!   Postfix would deliver the rest and bounce the failed ones.
//! - any temporary failure (unreadable userdb, missing uid) or expansion
//!   loop refuses the whole recipient (`451`/`554`), so nothing is lost.
//! - a virtual alias cycle (`a -> b -> a`) is a `554 5.4.6` loop at once
//!   (Postfix defers until its recursion limit); an address that maps to
//!   itself, directly or once it has, is delivered as is (cleanup(8)).
//! - an aliases(5) name reached again through its own expansion
//!   (`root: root, other` or `root: root@localhost`) is delivered to the
//!   user's mailbox, as local(8) does; a longer cycle (`a: b`, `b: a`) is a
//!   loop.

use std::borrow::Cow;
use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use crate::auth::UserInfo;
use crate::config::Config;
use crate::tables::aliases::AliasTarget;
use crate::tables::lookup::{lookup, split_extension, Style};
use crate::tables::map::fold;
use crate::tables::{IdSource, Tables};

/// Expansion depth limit (aliases and virtual aliases together).
pub const MAX_DEPTH: usize = 100;
/// Addresses visited for one recipient, like Postfix's
/// `virtual_alias_expansion_limit` (default 1000).
pub const MAX_ADDRESSES: usize = 1000;

/// A userdb lookup by local user name: the caller passes `&|n| auth.user(n)`
/// or `&crate::auth::system_user`. `Err` is a temporary failure.
pub type UserLookup<'a> = &'a (dyn Fn(&str) -> Result<Option<UserInfo>, String> + Sync);

/// Everything routing reads. Cheap to build per recipient.
pub struct RouteContext<'a> {
    pub config: &'a Config,
    pub tables: &'a Tables,
    /// Local (mydestination) users, looked up by lower-cased local part
    /// without extension.
    pub users: UserLookup<'a>,
    /// With `virtual_mailbox_passdb_users`: passdb logins (full addresses,
    /// lower-cased, without extension) and their userdb entries, for
    /// virtual mailbox addresses the maps do not list.
    pub mailbox_users: Option<UserLookup<'a>>,
}

/// What the SMTP session knows about the client when deciding relay.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientTrust {
    pub in_mynetworks: bool,
    pub authenticated: bool,
}

impl ClientTrust {
    fn trusted(self) -> bool {
        self.in_mynetworks || self.authenticated
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Final delivery into a Maildir directory (the dir holding tmp/new/cur).
    Maildir {
        user: String,
        dir: PathBuf,
        uid: Option<u32>,
        gid: Option<u32>,
    },
    /// Final delivery appended to an mbox file.
    Mbox {
        user: String,
        path: PathBuf,
        uid: Option<u32>,
        gid: Option<u32>,
    },
    /// To be queued for delivery elsewhere (relay_domains,
    /// mynetworks/authenticated clients, aliases pointing outside). The
    /// local part keeps its case; the domain is lower-cased.
    Remote { address: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Deduplicated, in expansion order, never empty.
    pub destinations: Vec<Destination>,
}

/// Which table did not know the user (the wording Postfix uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecipientTable {
    Local,
    VirtualAlias,
    VirtualMailbox,
}

impl RecipientTable {
    pub fn describe(self) -> &'static str {
        match self {
            RecipientTable::Local => "local recipient table",
            RecipientTable::VirtualAlias => "virtual alias table",
            RecipientTable::VirtualMailbox => "virtual mailbox table",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// 550 5.1.1 User unknown in {local recipient|virtual alias|virtual mailbox} table.
    #[error("user unknown in {}", .0.describe())]
    UserUnknown(RecipientTable),
    /// 554 5.7.1 Relay access denied.
    #[error("relay access denied")]
    RelayDenied,
    /// 501 5.1.3 Bad recipient address syntax.
    #[error("bad recipient address syntax: {0}")]
    BadAddress(String),
    /// 554 5.4.6 alias expansion loop or too deep.
    #[error("alias expansion loop or too deep")]
    Loop,
    /// 550 5.3.0 e.g. an alias to |command or /file (not supported).
    #[error("{0}")]
    Unsupported(String),
    /// 451 4.3.0 a table or the userdb could not be read, or a virtual
    /// mailbox is misconfigured (Postfix defers). The text is for the log;
    /// the client sees "Temporary lookup failure".
    #[error("temporary failure: {0}")]
    Temporary(String),
}

impl RouteError {
    /// SMTP reply (code, enhanced status, text) for this error; `rcpt` is
    /// the address as the client gave it (inside `<>`).
    pub fn reply(&self, rcpt: &str) -> (u16, &'static str, String) {
        let r = printable(rcpt);
        match self {
            RouteError::UserUnknown(t) => (
                550,
                "5.1.1",
                format!(
                    "<{r}>: Recipient address rejected: User unknown in {}",
                    t.describe()
                ),
            ),
            RouteError::RelayDenied => (554, "5.7.1", format!("<{r}>: Relay access denied")),
            RouteError::BadAddress(why) => (
                501,
                "5.1.3",
                format!("<{r}>: Bad recipient address syntax: {}", printable(why)),
            ),
            RouteError::Loop => (
                554,
                "5.4.6",
                format!("<{r}>: Recipient address rejected: alias expansion loop or too deep"),
            ),
            RouteError::Unsupported(why) => (
                550,
                "5.3.0",
                format!("<{r}>: Recipient address rejected: {}", printable(why)),
            ),
            RouteError::Temporary(_) => (451, "4.3.0", format!("<{r}>: Temporary lookup failure")),
        }
    }

    /// Errors that refuse the whole recipient even when they come from one
    /// target of a larger expansion.
    fn is_fatal(&self) -> bool {
        matches!(self, RouteError::Temporary(_) | RouteError::Loop)
    }
}

/// Control characters would break the reply line.
fn printable(s: &str) -> Cow<'_, str> {
    if s.chars().any(char::is_control) {
        Cow::Owned(
            s.chars()
                .map(|c| if c.is_control() { '?' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(s)
    }
}

/// Resolves one `RCPT TO` address (the text inside `<>`).
pub fn resolve(ctx: &RouteContext, rcpt: &str, trust: ClientTrust) -> Result<Resolved, RouteError> {
    let result = resolve_inner(ctx, rcpt, trust);
    match &result {
        Err(RouteError::Temporary(why)) => {
            tracing::warn!(rcpt = %printable(rcpt), "recipient deferred: {why}")
        }
        Err(RouteError::Loop) => {
            tracing::warn!(rcpt = %printable(rcpt), "recipient refused: alias expansion loop or too deep")
        }
        _ => {}
    }
    result
}

/// Postfix `permit_auth_destination` (smtpd_check.c): is `rcpt` for a
/// domain this server takes mail for (local, virtual or relay_domains),
/// without sender-specified routing? Bad syntax is not authorized.
pub fn auth_destination(config: &Config, tables: &Tables, rcpt: &str) -> bool {
    let users = |_: &str| Ok(None);
    let ctx = RouteContext {
        config,
        tables,
        users: &users,
        mailbox_users: None,
    };
    match parse_rcpt(rcpt, &myorigin(config)) {
        Ok(Rcpt::Postmaster) => true,
        Ok(Rcpt::Address {
            addr,
            local_trick,
            source_routed,
        }) => {
            let walk = Walk {
                ctx: &ctx,
                out: Vec::new(),
                dropped: Vec::new(),
                visits: 0,
                self_final: HashSet::new(),
            };
            !local_trick && !source_routed && walk.class(&addr.domain) != Class::Other
        }
        Err(_) => false,
    }
}

fn resolve_inner(
    ctx: &RouteContext,
    rcpt: &str,
    trust: ClientTrust,
) -> Result<Resolved, RouteError> {
    let parsed = parse_rcpt(rcpt, &myorigin(ctx.config)).map_err(RouteError::BadAddress)?;
    let mut walk = Walk {
        ctx,
        out: Vec::new(),
        dropped: Vec::new(),
        visits: 0,
        self_final: HashSet::new(),
    };
    let chain = Chain::default();
    let mut source_routed = false;
    match parsed {
        Rcpt::Postmaster => {
            // RFC 5321 §4.5.1: "postmaster" without a domain is this
            // server's postmaster, never relayed.
            let host = normalize_domain(&ctx.config.myhostname);
            if ctx.tables.mydestination.contains(&host) {
                let addr = Addr {
                    local: "postmaster".into(),
                    domain: host,
                };
                walk.address(&addr, &chain)?;
            } else {
                walk.local("postmaster", &chain)?;
            }
        }
        Rcpt::Address {
            addr,
            local_trick,
            source_routed: routed,
        } => {
            if local_trick {
                // Postfix allow_percent_hack / swap_bangpath /
                // resolve_dequoted_address: none implemented; refused.
                return Err(if trust.trusted() {
                    RouteError::BadAddress(
                        "'%', '!' and '@' routing in the local part is not supported".into(),
                    )
                } else {
                    RouteError::RelayDenied
                });
            }
            source_routed = routed;
            // Postfix reject_unauth_destination / permit_mynetworks /
            // permit_sasl_authenticated.
            if walk.class(&addr.domain) == Class::Other && !trust.trusted() {
                return Err(RouteError::RelayDenied);
            }
            walk.address(&addr, &chain)?;
        }
    }
    if walk.out.is_empty() {
        return Err(walk
            .dropped
            .into_iter()
            .next()
            .unwrap_or(RouteError::UserUnknown(RecipientTable::Local)));
    }
    if source_routed
        && !trust.trusted()
        && walk
            .out
            .iter()
            .any(|d| matches!(d, Destination::Remote { .. }))
    {
        // allow_untrusted_routing = no: sender-specified routing from an
        // untrusted client never leaves this server.
        return Err(RouteError::RelayDenied);
    }
    Ok(Resolved {
        destinations: walk.out,
    })
}

// ---------------------------------------------------------------------------
// Syntax

/// An address with its domain folded and without a trailing dot; the local
/// part is kept as written (quotes included when needed).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Addr {
    local: String,
    domain: String,
}

impl Addr {
    fn full(&self) -> String {
        format!("{}@{}", self.local, self.domain)
    }

    /// An address from a table or alias value (the administrator's text):
    /// no syntax policing beyond non-empty parts; a bare local part gets
    /// `@$myorigin` (Postfix mail_addr_map(3) qualifies unqualified results).
    fn from_table(value: &str, myorigin: &str) -> Result<Addr, RouteError> {
        let bad = || RouteError::BadAddress(format!("bad address '{value}' in a table"));
        let (local, domain) = match split_last_at(value).map_err(|_| bad())? {
            Some((l, d)) => (l, normalize_domain(d)),
            None => (value, myorigin.to_string()),
        };
        if local.is_empty() || domain.is_empty() {
            return Err(bad());
        }
        Ok(Addr {
            local: local.to_string(),
            domain,
        })
    }
}

#[derive(Debug)]
enum Rcpt {
    Postmaster,
    Address {
        addr: Addr,
        /// `%`, `!` or `@` in the local part.
        local_trick: bool,
        source_routed: bool,
    },
}

fn normalize_domain(d: &str) -> String {
    fold(d.strip_suffix('.').unwrap_or(d)).into_owned()
}

fn myorigin(config: &Config) -> String {
    normalize_domain(&config.myorigin)
}

/// Splits on the last `@` outside double quotes. `Err` on an unbalanced
/// quote.
fn split_last_at(s: &str) -> Result<Option<(&str, &str)>, ()> {
    let mut in_quotes = false;
    let mut last = None;
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' if in_quotes => {
                chars.next();
            }
            '"' => in_quotes = !in_quotes,
            '@' if !in_quotes => last = Some(i),
            _ => {}
        }
    }
    if in_quotes {
        return Err(());
    }
    Ok(last.map(|i| (&s[..i], &s[i + 1..])))
}

/// RFC 5322 atext, plus `.`; non-ASCII for SMTPUTF8 (RFC 6531 §3.3).
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

fn has_trick(s: &str) -> bool {
    s.contains(['%', '!', '@'])
}

/// Validates a local part. Returns the normalized form (a quoted string
/// whose content is a plain dot-atom loses its quotes, RFC 5321 §4.1.2)
/// and whether it contains routing characters.
fn check_local(local: &str) -> Result<(String, bool), String> {
    if local.is_empty() {
        return Err("empty local part".into());
    }
    if let Some(rest) = local.strip_prefix('"') {
        let mut inner = String::new();
        let mut chars = rest.chars();
        let mut closed = false;
        while let Some(c) = chars.next() {
            match c {
                '\\' => inner.push(chars.next().ok_or("unbalanced quote")?),
                '"' => {
                    closed = true;
                    break;
                }
                c => inner.push(c),
            }
        }
        if !closed {
            return Err("unbalanced quote in the local part".into());
        }
        if !chars.as_str().is_empty() {
            return Err("text after the quoted local part".into());
        }
        if inner.is_empty() {
            return Err("empty local part".into());
        }
        let trick = has_trick(&inner);
        if !trick && inner.chars().all(|c| c == '.' || is_atext(c)) {
            return Ok((inner, false));
        }
        return Ok((local.to_string(), trick));
    }
    // Dots are not policed (`a..b` exists in the wild and Postfix takes it).
    if let Some(c) = local
        .chars()
        .find(|&c| !(c == '.' || c == '@' || is_atext(c)))
    {
        return Err(format!("invalid character '{c}' in the local part"));
    }
    Ok((local.to_string(), has_trick(local)))
}

/// Validates and normalizes a domain (RFC 5321 §4.1.2 Domain /
/// address-literal), dropping one trailing dot.
fn check_domain(domain: &str) -> Result<String, String> {
    let d = domain.strip_suffix('.').unwrap_or(domain);
    if d.is_empty() {
        return Err("empty domain".into());
    }
    if let Some(lit) = d.strip_prefix('[') {
        let inner = lit
            .strip_suffix(']')
            .ok_or("unterminated address literal")?;
        if let Ok(ip) = inner.parse::<Ipv4Addr>() {
            return Ok(format!("[{ip}]"));
        }
        if let Some(v6) = inner
            .get(..5)
            .filter(|p| p.eq_ignore_ascii_case("ipv6:"))
            .and_then(|_| inner[5..].parse::<Ipv6Addr>().ok())
        {
            return Ok(format!("[ipv6:{v6}]"));
        }
        return Err(format!("bad address literal '[{inner}]'"));
    }
    for label in d.split('.') {
        if label.is_empty() {
            return Err("empty label in the domain".into());
        }
        if let Some(c) = label
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || !c.is_ascii()))
        {
            return Err(format!("invalid character '{c}' in the domain"));
        }
    }
    Ok(fold(d).into_owned())
}

fn parse_rcpt(rcpt: &str, myorigin: &str) -> Result<Rcpt, String> {
    if rcpt.is_empty() {
        return Err("empty address".into());
    }
    if rcpt.chars().any(char::is_control) {
        return Err("control character in the address".into());
    }
    let mut s = rcpt;
    let mut source_routed = false;
    // RFC 5321 §4.1.2 A-d-l, "@a,@b:user@c"; §3.6.1 lets us ignore it.
    if s.starts_with('@') {
        let (route, rest) = s.split_once(':').ok_or("missing local part")?;
        for hop in route.split(',') {
            let d = hop.strip_prefix('@').ok_or("bad source route")?;
            check_domain(d).map_err(|e| format!("bad source route: {e}"))?;
        }
        s = rest;
        source_routed = true;
    }
    let (local, domain) = match split_last_at(s).map_err(|_| "unbalanced quote")? {
        Some((l, d)) => (l, Some(d)),
        None => (s, None),
    };
    let (local, local_trick) = check_local(local)?;
    let domain = match domain {
        Some(d) => check_domain(d)?,
        None if !source_routed && local.eq_ignore_ascii_case("postmaster") => {
            return Ok(Rcpt::Postmaster)
        }
        // Postfix append_at_myorigin.
        None if !myorigin.is_empty() => myorigin.to_string(),
        None => return Err("missing domain".into()),
    };
    Ok(Rcpt::Address {
        addr: Addr { local, domain },
        local_trick,
        source_routed,
    })
}

/// Removes RFC 5321 quoting from a local part (`"john smith"` → `john
/// smith`), the internal form local(8) and aliases(5) use.
fn unquote_local(local: &str) -> Cow<'_, str> {
    let Some(inner) = local.strip_prefix('"').and_then(|s| s.strip_suffix('"')) else {
        return Cow::Borrowed(local);
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

// ---------------------------------------------------------------------------
// Expansion

/// Address classes, ADDRESS_CLASS_README, in Postfix's order of precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Local,
    VirtualAlias,
    VirtualMailbox,
    Relay,
    Other,
}

/// The expansion path of one branch.
#[derive(Debug, Clone, Default)]
struct Chain {
    depth: usize,
    /// Virtual alias keys (folded addresses) expanded on this branch.
    virtual_path: Vec<String>,
    /// aliases(5) names expanded on this branch.
    alias_path: Vec<String>,
}

impl Chain {
    fn deeper(&self) -> Chain {
        Chain {
            depth: self.depth + 1,
            ..self.clone()
        }
    }
}

struct Walk<'c, 'a> {
    ctx: &'c RouteContext<'a>,
    out: Vec<Destination>,
    /// Permanent failures of expanded targets (logged, dropped).
    dropped: Vec<RouteError>,
    visits: usize,
    /// Folded addresses that mapped to themselves: delivered as is.
    self_final: HashSet<String>,
}

fn warn_once(domain: &str, other: &str) {
    static WARNED: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let set = WARNED.get_or_init(Default::default);
    let first = set
        .lock()
        .map(|mut s| s.insert(format!("{other} {domain}")))
        .unwrap_or(false);
    if first {
        tracing::warn!(
            domain,
            "do not list a domain in both mydestination and {other}; \
             it is treated as a mydestination (local) domain"
        );
    }
}

impl Walk<'_, '_> {
    fn config(&self) -> &Config {
        self.ctx.config
    }

    fn tables(&self) -> &Tables {
        self.ctx.tables
    }

    fn class(&self, domain: &str) -> Class {
        let t = self.tables();
        if t.mydestination.contains(domain) {
            if t.virtual_mailbox_domains.contains(domain) {
                warn_once(domain, "virtual_mailbox_domains");
            }
            if t.virtual_alias_domains.contains(domain) {
                warn_once(domain, "virtual_alias_domains");
            }
            Class::Local
        } else if t.virtual_alias_domains.contains(domain) {
            Class::VirtualAlias
        } else if t.virtual_mailbox_domains.contains(domain) {
            Class::VirtualMailbox
        } else if t.relay_domains.contains(domain) {
            Class::Relay
        } else {
            Class::Other
        }
    }

    fn visit(&mut self, chain: &Chain) -> Result<(), RouteError> {
        self.visits += 1;
        if chain.depth > MAX_DEPTH || self.visits > MAX_ADDRESSES {
            return Err(RouteError::Loop);
        }
        Ok(())
    }

    fn push(&mut self, d: Destination) {
        if !self.out.contains(&d) {
            self.out.push(d);
        }
    }

    /// Handles the outcome of one expanded target: fatal errors stop
    /// everything, others are logged and dropped (module documentation).
    fn absorb(&mut self, target: &str, result: Result<(), RouteError>) -> Result<(), RouteError> {
        match result {
            Err(e) if e.is_fatal() => Err(e),
            Err(e) => {
                tracing::warn!(target, "alias target dropped: {e}");
                self.dropped.push(e);
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }

    /// Step 3: `virtual_alias_maps` (virtual(5) TABLE SEARCH ORDER,
    /// cleanup(8)), recursively; then [`Self::final_class`].
    fn address(&mut self, addr: &Addr, chain: &Chain) -> Result<(), RouteError> {
        self.visit(chain)?;
        let full = addr.full();
        let key = fold(&full).into_owned();
        if self.self_final.contains(&key) {
            return self.final_class(addr, chain);
        }
        let config = self.config();
        // virtual(5): the bare `user` keys only when the domain is
        // $myorigin or in $mydestination.
        let domain_is_local =
            self.tables().mydestination.contains(&addr.domain) || addr.domain == myorigin(config);
        let mut results = None;
        for map in &self.tables().virtual_alias_maps {
            let m = map.get();
            if let Some(hit) = lookup(
                &m,
                &full,
                &config.recipient_delimiter,
                Style::VirtualAlias,
                domain_is_local,
            ) {
                // propagate_unmatched_extensions default: canonical, virtual.
                results = Some(hit.addresses(true));
                break;
            }
        }
        let Some(results) = results else {
            return self.final_class(addr, chain);
        };
        let origin = myorigin(config);
        let results: Vec<(String, Result<Addr, RouteError>)> = results
            .into_iter()
            .map(|r| {
                let a = Addr::from_table(&r, &origin);
                (r, a)
            })
            .collect();
        // cleanup_map1n: an address may expand into itself once; it is
        // then delivered as is and never expanded again.
        if results
            .iter()
            .any(|(_, a)| a.as_ref().is_ok_and(|a| fold(&a.full()) == key))
        {
            self.self_final.insert(key.clone());
        }
        let mut sub = chain.deeper();
        sub.virtual_path.push(key.clone());
        for (text, r) in results {
            let res = r.and_then(|r| {
                let rk = fold(&r.full()).into_owned();
                if rk == key {
                    self.final_class(&r, chain)
                } else if sub.virtual_path.contains(&rk) && !self.self_final.contains(&rk) {
                    Err(RouteError::Loop)
                } else {
                    self.address(&r, &sub)
                }
            });
            self.absorb(&text, res)?;
        }
        Ok(())
    }

    /// Step 4: delivery by the address class.
    fn final_class(&mut self, addr: &Addr, chain: &Chain) -> Result<(), RouteError> {
        match self.class(&addr.domain) {
            Class::Local => {
                let name = fold(&unquote_local(&addr.local)).into_owned();
                self.local(&name, chain)
            }
            // ADDRESS_CLASS_README: every address in a virtual alias domain
            // must be aliased.
            Class::VirtualAlias => Err(RouteError::UserUnknown(RecipientTable::VirtualAlias)),
            Class::VirtualMailbox => self.virtual_mailbox(addr),
            Class::Relay | Class::Other => {
                self.push(Destination::Remote {
                    address: addr.full(),
                });
                Ok(())
            }
        }
    }

    /// local(8): aliases(5) for `user+ext` then `user` (extensions are not
    /// propagated: `propagate_unmatched_extensions` lacks `alias` by
    /// default), then the userdb for `user`. `name` is folded and unquoted.
    fn local(&mut self, name: &str, chain: &Chain) -> Result<(), RouteError> {
        self.visit(chain)?;
        let (user, ext) = split_extension(name, &self.config().recipient_delimiter);
        let keys: &[&str] = if ext.is_some() {
            &[name, user]
        } else {
            &[name]
        };
        for &key in keys {
            if chain.alias_path.last().map(String::as_str) == Some(key) {
                // An alias that names itself: deliver to the mailbox.
                continue;
            }
            if chain.alias_path.iter().any(|k| k == key) {
                return Err(RouteError::Loop);
            }
            let found = self
                .tables()
                .alias_maps
                .iter()
                .find_map(|t| t.get().get(key).map(<[AliasTarget]>::to_vec));
            if let Some(targets) = found {
                return self.expand_alias(key, &targets, chain);
            }
        }
        self.mailbox(user)
    }

    /// aliases(5) targets: addresses with a domain re-enter routing at
    /// step 3 (local(8) resubmits them through cleanup(8)); bare names are
    /// local names (aliases, then the userdb).
    fn expand_alias(
        &mut self,
        name: &str,
        targets: &[AliasTarget],
        chain: &Chain,
    ) -> Result<(), RouteError> {
        let mut sub = chain.deeper();
        sub.alias_path.push(name.to_string());
        let origin = myorigin(self.config());
        for t in targets {
            let res = match t {
                AliasTarget::Command(_) => Err(RouteError::Unsupported(
                    "delivery to a command is not supported".into(),
                )),
                AliasTarget::File(_) => Err(RouteError::Unsupported(
                    "delivery to a file is not supported".into(),
                )),
                AliasTarget::Address(a) => match split_last_at(a) {
                    Ok(Some(_)) => {
                        Addr::from_table(a, &origin).and_then(|r| self.address(&r, &sub))
                    }
                    Ok(None) => {
                        let local = fold(&unquote_local(a)).into_owned();
                        self.local(&local, &sub)
                    }
                    Err(()) => Err(RouteError::BadAddress(format!(
                        "bad address '{a}' in alias '{name}'"
                    ))),
                },
            };
            self.absorb(&t.to_string(), res)?;
        }
        Ok(())
    }

    /// A local user's mailbox (local(8) MAILBOX DELIVERY): `home_mailbox`
    /// under the home (trailing `/` = Maildir), else the mbox spool
    /// `$mail_spool_directory/user`.
    fn mailbox(&mut self, user: &str) -> Result<(), RouteError> {
        let info = (self.ctx.users)(user)
            .map_err(|e| RouteError::Temporary(format!("userdb lookup of '{user}': {e}")))?
            .ok_or(RouteError::UserUnknown(RecipientTable::Local))?;
        let config = self.config();
        let (uid, gid) = (Some(info.uid), Some(info.gid));
        let hm = config.home_mailbox.as_str();
        let dest = if hm.is_empty() {
            Destination::Mbox {
                path: config.mail_spool_directory.join(&info.name),
                user: info.name,
                uid,
                gid,
            }
        } else {
            let home = info
                .home
                .clone()
                .filter(|h| !h.as_os_str().is_empty())
                .ok_or_else(|| {
                    RouteError::Temporary(format!(
                        "user '{}' has no home directory, which home_mailbox needs",
                        info.name
                    ))
                })?;
            let rel = hm.trim_start_matches('/');
            if let Some(dir) = rel.strip_suffix('/') {
                Destination::Maildir {
                    dir: home.join(dir.trim_end_matches('/')),
                    user: info.name,
                    uid,
                    gid,
                }
            } else {
                Destination::Mbox {
                    path: home.join(rel),
                    user: info.name,
                    uid,
                    gid,
                }
            }
        };
        self.push(dest);
        Ok(())
    }

    /// virtual(8) MAILBOX LOOKUP and MAILBOX LOCATION: the value is
    /// appended to `virtual_mailbox_base`; a trailing `/` means Maildir.
    /// uid/gid from `virtual_uid_maps`/`virtual_gid_maps` (same search);
    /// a uid below `virtual_minimum_uid` defers (virtual(8)).
    fn virtual_mailbox(&mut self, addr: &Addr) -> Result<(), RouteError> {
        let config = self.config();
        let delim = config.recipient_delimiter.as_str();
        let full = addr.full();
        let value = self.tables().virtual_mailbox_maps.iter().find_map(|t| {
            lookup(&t.get(), &full, delim, Style::VirtualMailbox, false)
                .map(|h| h.value.trim().to_string())
        });
        let Some(value) = value else {
            return self.passdb_mailbox(addr);
        };
        if value.is_empty() || value == "/" {
            return Err(RouteError::Temporary(format!(
                "virtual_mailbox_maps: empty mailbox path for {full}"
            )));
        }
        let path = match &config.virtual_mailbox_base {
            Some(base) => base.join(value.trim_start_matches('/')),
            None if value.starts_with('/') => PathBuf::from(&value),
            None => {
                return Err(RouteError::Temporary(format!(
                    "virtual_mailbox_base is empty and the mailbox path '{value}' for {full} is relative"
                )))
            }
        };
        let uid = self.virtual_id(&self.tables().virtual_uid_maps, "virtual_uid_maps", &full)?;
        if uid < config.virtual_minimum_uid {
            return Err(RouteError::Temporary(format!(
                "virtual_uid_maps: uid {uid} for {full} is below virtual_minimum_uid ({})",
                config.virtual_minimum_uid
            )));
        }
        let gid = self.virtual_id(&self.tables().virtual_gid_maps, "virtual_gid_maps", &full)?;
        let user = {
            let local = fold(&addr.local);
            let (u, _) = split_extension(&local, delim);
            format!("{u}@{}", addr.domain)
        };
        let (uid, gid) = (Some(uid), Some(gid));
        let dest = if value.ends_with('/') {
            let s = path.to_string_lossy();
            let dir = PathBuf::from(s.trim_end_matches('/'));
            Destination::Maildir {
                user,
                dir,
                uid,
                gid,
            }
        } else {
            Destination::Mbox {
                user,
                path,
                uid,
                gid,
            }
        };
        self.push(dest);
        Ok(())
    }

    /// `virtual_mailbox_passdb_users = yes`, as Dovecot's LDA/LMTP decides:
    /// an address the passdb knows is a mailbox, in the Maildir
    /// `mail_location` (or the userdb's `mail`) gives that login, owned by
    /// the userdb's uid/gid. Otherwise the address is unknown, as without
    /// the key.
    fn passdb_mailbox(&mut self, addr: &Addr) -> Result<(), RouteError> {
        let unknown = RouteError::UserUnknown(RecipientTable::VirtualMailbox);
        let Some(lookup) = self.ctx.mailbox_users else {
            return Err(unknown);
        };
        let config = self.config();
        let local = fold(&addr.local);
        let (base, _) = split_extension(&local, &config.recipient_delimiter);
        let user = format!("{base}@{}", addr.domain);
        let info = lookup(&user)
            .map_err(|e| RouteError::Temporary(format!("passdb/userdb lookup of {user}: {e}")))?
            .ok_or(unknown)?;
        if info.uid < config.virtual_minimum_uid {
            return Err(RouteError::Temporary(format!(
                "userdb: uid {} for {user} is below virtual_minimum_uid ({})",
                info.uid, config.virtual_minimum_uid
            )));
        }
        let dir = crate::store::location::user_maildir(&config.mail_location, &user, &info)
            .map_err(RouteError::Temporary)?;
        self.push(Destination::Maildir {
            user,
            dir,
            uid: Some(info.uid),
            gid: Some(info.gid),
        });
        Ok(())
    }

    fn virtual_id(&self, sources: &[IdSource], key: &str, full: &str) -> Result<u32, RouteError> {
        let delim = self.config().recipient_delimiter.as_str();
        for s in sources {
            match s {
                IdSource::Static(n) => return Ok(*n),
                IdSource::Table(t) => {
                    let m = t.get();
                    if let Some(hit) = lookup(&m, full, delim, Style::VirtualMailbox, false) {
                        return hit.value.trim().parse().map_err(|_| {
                            RouteError::Temporary(format!(
                                "{key}: '{}' for {full} is not a number",
                                hit.value
                            ))
                        });
                    }
                }
            }
        }
        Err(RouteError::Temporary(format!("{key}: no entry for {full}")))
    }
}

#[cfg(test)]
mod tests;
