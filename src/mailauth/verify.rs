//! Verifying mail from outside: SPF (RFC 7208) for MAIL FROM, or for HELO
//! when MAIL FROM is `<>`; DKIM (RFC 6376, RFC 8463 ed25519); ARC (RFC
//! 8617, recorded only); DMARC (RFC 7489) from those. mail-auth does the
//! protocol work; this file feeds it, bounds it (the first few signatures,
//! a time budget per message, a TTL cache of answers) and turns the outcome
//! into one `Authentication-Results` header (RFC 8601) and a [`Report`]
//! that `policy.rs` decides on.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use mail_auth::common::headers::HeaderWriter;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::dmarc::Policy;
use mail_auth::hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts,
};
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, AuthenticationResults, DkimResult, DmarcResult, MessageAuthenticator,
    Parameters, RecordSet, SpfResult, Txt, MX,
};

use super::cache::{Caches, TtlCache, VoidLookups};

pub use mail_auth::SpfOutput;

/// Signatures checked per message: enough for a sender's own plus a
/// mailing list's or an ESP's, not enough to make one message cost 50 key
/// lookups.
pub const MAX_SIGNATURES: usize = 5;

/// RFC 7208 §4.6.4's limit on void lookups in one SPF evaluation.
const MAX_VOID_LOOKUPS: u32 = 2;

/// A result as the Authentication-Results header names it (RFC 8601 §2.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Pass,
    Fail,
    SoftFail,
    Neutral,
    None,
    TempError,
    PermError,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::SoftFail => "softfail",
            Outcome::Neutral => "neutral",
            Outcome::None => "none",
            Outcome::TempError => "temperror",
            Outcome::PermError => "permerror",
        }
    }
}

impl From<SpfResult> for Outcome {
    fn from(r: SpfResult) -> Self {
        match r {
            SpfResult::Pass => Outcome::Pass,
            SpfResult::Fail => Outcome::Fail,
            SpfResult::SoftFail => Outcome::SoftFail,
            SpfResult::Neutral => Outcome::Neutral,
            SpfResult::TempError => Outcome::TempError,
            SpfResult::PermError => Outcome::PermError,
            SpfResult::None => Outcome::None,
        }
    }
}

fn dkim_outcome(r: &DkimResult) -> Outcome {
    match r {
        DkimResult::Pass => Outcome::Pass,
        // RFC 6376 §3.7: a body hash that doesn't match is PERMFAIL, which
        // RFC 8601 §2.7.1 reports as "fail"; mail-auth says neutral.
        DkimResult::Neutral(e) if is_body_hash_failure(e) => Outcome::Fail,
        DkimResult::Neutral(_) => Outcome::Neutral,
        DkimResult::Fail(_) => Outcome::Fail,
        DkimResult::PermError(_) => Outcome::PermError,
        DkimResult::TempError(_) => Outcome::TempError,
        DkimResult::None => Outcome::None,
    }
}

fn dmarc_outcome(r: &DmarcResult) -> Outcome {
    match r {
        DmarcResult::Pass => Outcome::Pass,
        DmarcResult::Fail(_) => Outcome::Fail,
        DmarcResult::TempError(_) => Outcome::TempError,
        DmarcResult::PermError(_) => Outcome::PermError,
        DmarcResult::None => Outcome::None,
    }
}

fn is_body_hash_failure(e: &mail_auth::Error) -> bool {
    matches!(
        e,
        mail_auth::Error::Dkim(mail_auth::dkim::DkimError::FailedBodyHashMatch)
            | mail_auth::Error::Arc(mail_auth::arc::ArcError::FailedBodyHashMatch)
    )
}

/// The best of several DKIM results: one passing signature is enough.
fn best(outcomes: impl Iterator<Item = Outcome>) -> Outcome {
    let rank = |o: &Outcome| match o {
        Outcome::Pass => 0,
        Outcome::TempError => 1,
        Outcome::Fail => 2,
        Outcome::PermError => 3,
        Outcome::Neutral | Outcome::SoftFail => 4,
        Outcome::None => 5,
    };
    outcomes.min_by_key(rank).unwrap_or(Outcome::None)
}

/// A DMARC policy (`p=`/`sp=` as it applies to this message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmarcPolicy {
    None,
    Quarantine,
    Reject,
    /// Not known: the checks ran out of time before the policy was found.
    Unknown,
}

/// What verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub spf: Outcome,
    pub dkim: Outcome,
    pub dmarc: Outcome,
    pub arc: Outcome,
    /// The author (From:) domain DMARC was evaluated for.
    pub dmarc_domain: String,
    pub dmarc_policy: DmarcPolicy,
    /// `pct=` of the policy record (RFC 7489 §6.3), 100 without one;
    /// `None` when the record could not be read again for it.
    pub dmarc_pct: Option<u8>,
    /// The message names no author, or authors in several domains: DMARC
    /// can't apply (RFC 7489 §6.6.1), and such mail is "typically rejected".
    pub author_unclear: bool,
    /// `Authentication-Results: …\r\n`.
    pub header: String,
}

impl Report {
    /// `spf=pass dkim=pass dmarc=pass`, for the delivery log line.
    pub fn log_fields(&self) -> String {
        format!(
            "spf={} dkim={} dmarc={} arc={}",
            self.spf.as_str(),
            self.dkim.as_str(),
            self.dmarc.as_str(),
            self.arc.as_str()
        )
    }

    /// Every method's outcome, for the metrics.
    pub fn outcomes(&self) -> [(&'static str, Outcome); 4] {
        [
            ("spf", self.spf),
            ("dkim", self.dkim),
            ("dmarc", self.dmarc),
            ("arc", self.arc),
        ]
    }
}

/// The SMTP facts verification works from.
#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    pub client_ip: IpAddr,
    pub helo: &'a str,
    /// The MAIL FROM address; empty for `<>`.
    pub mail_from: &'a str,
}

type CachedParameters<'x, P> = Parameters<
    'x,
    P,
    TtlCache<Box<str>, Txt>,
    TtlCache<Box<str>, RecordSet<MX>>,
    TtlCache<Box<str>, RecordSet<std::net::Ipv4Addr>>,
    TtlCache<Box<str>, RecordSet<std::net::Ipv6Addr>>,
    TtlCache<IpAddr, RecordSet<Box<str>>>,
>;

fn cached<P>(c: &Caches, params: P) -> CachedParameters<'_, P> {
    Parameters::new(params)
        .with_txt_cache(&c.txt)
        .with_mx_cache(&c.mx)
        .with_ipv4_cache(&c.ipv4)
        .with_ipv6_cache(&c.ipv6)
        .with_ptr_cache(&c.ptr)
}

/// mail-auth's resolver on `dns_servers` (ip:port), or on
/// /etc/resolv.conf's servers when there are none.
pub fn authenticator(dns_servers: &[SocketAddr]) -> Result<MessageAuthenticator, String> {
    let mut opts = ResolverOpts::default();
    opts.timeout = Duration::from_secs(5);
    opts.attempts = 2;
    // mail-auth's parsed answers are cached by TTL in our cache (cache.rs);
    // hickory's own TTL cache serves the raw lookups (spf_syntax, pct=).
    opts.cache_size = 1024;
    let authenticator = if dns_servers.is_empty() {
        let (config, _) = mail_auth::hickory_resolver::system_conf::read_system_conf()
            .map_err(|e| format!("DNS configuration: {e}"))?;
        MessageAuthenticator::new(config, opts)
    } else {
        let servers = dns_servers
            .iter()
            .map(|s| {
                let mut udp = ConnectionConfig::udp();
                udp.port = s.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = s.port();
                NameServerConfig::new(s.ip(), true, vec![udp, tcp])
            })
            .collect();
        MessageAuthenticator::new(ResolverConfig::from_name_servers(servers), opts)
    };
    authenticator.map_err(|e| format!("DNS resolver: {e}"))
}

pub struct Verifier {
    authenticator: MessageAuthenticator,
    caches: Caches,
    /// Our authserv-id: `myhostname`.
    hostname: String,
    /// The most one message's checks may take; past it, what is missing is
    /// a temporary error.
    budget: Duration,
}

impl Verifier {
    /// Lookups go to `dns_servers`, or to /etc/resolv.conf's when empty.
    pub fn new(
        dns_servers: &[SocketAddr],
        hostname: &str,
        budget: Duration,
    ) -> Result<Self, String> {
        Ok(Verifier {
            authenticator: authenticator(dns_servers)?,
            caches: Caches::default(),
            hostname: hostname.to_string(),
            budget,
        })
    }

    /// SPF for the envelope: MAIL FROM, or HELO for `<>` (RFC 7208 §2.3,
    /// §2.4). Within the time budget, else `temperror`.
    pub async fn spf(&self, env: &Envelope<'_>) -> SpfOutput {
        let params = if env.mail_from.is_empty() {
            SpfParameters::verify_ehlo(env.client_ip, env.helo, &self.hostname)
        } else {
            SpfParameters::verify_mail_from(env.client_ip, env.helo, &self.hostname, env.mail_from)
        };
        let domain = env.spf_domain().to_string();
        let check = async {
            let voids = VoidLookups::default();
            let (a, aaaa, mx, ptr) = (
                voids.view(&self.caches.ipv4),
                voids.view(&self.caches.ipv6),
                voids.view(&self.caches.mx),
                voids.view(&self.caches.ptr),
            );
            let p = Parameters::new(params)
                .with_txt_cache(&self.caches.txt)
                .with_mx_cache(&mx)
                .with_ipv4_cache(&a)
                .with_ipv6_cache(&aaaa)
                .with_ptr_cache(&ptr);
            let out = self.authenticator.verify_spf(p).await;
            if matches!(out.result(), SpfResult::None | SpfResult::TempError) {
                return out;
            }
            // RFC 7208 §4.6.4: more than two lookups that find nothing is a
            // permerror; mail-auth doesn't count them. Not applied to a
            // pass: an `exists:` that matched looks like a void lookup from
            // the caches (mail-auth caches no answer for it), so a pass keeps
            // its result; it differs from RFC 7208 only when three void
            // lookups come before a term that passes.
            if out.result() != SpfResult::Pass && voids.count() > MAX_VOID_LOOKUPS {
                return SpfOutput::new(domain.clone()).with_result(SpfResult::PermError);
            }
            // RFC 7208 §4.6: a record with a syntax error is a permerror;
            // mail-auth evaluates what it can of it.
            match self.spf_record(&domain).await {
                Some(record) if super::spf_syntax::check(&record).is_err() => {
                    SpfOutput::new(domain.clone()).with_result(SpfResult::PermError)
                }
                _ => out,
            }
        };
        match tokio::time::timeout(self.budget, check).await {
            Ok(out) => out,
            Err(_) => SpfOutput::new(domain).with_result(SpfResult::TempError),
        }
    }

    /// The domain's one `v=spf1` TXT record, if it has exactly one.
    async fn spf_record(&self, domain: &str) -> Option<String> {
        let records: Vec<String> = self
            .txt_records(&format!("{}.", domain.trim_end_matches('.')))
            .await
            .ok()?
            .into_iter()
            .filter(|t| {
                let t = t.to_ascii_lowercase();
                t == "v=spf1" || t.starts_with("v=spf1 ")
            })
            .collect();
        (records.len() == 1)
            .then(|| records.into_iter().next())
            .flatten()
    }

    /// Everything, for one message; `spf` if MAIL FROM already had it.
    pub async fn verify(
        &self,
        message: &[u8],
        env: &Envelope<'_>,
        spf: Option<SpfOutput>,
    ) -> Report {
        match tokio::time::timeout(self.budget, self.verify_inner(message, env, spf)).await {
            Ok(report) => report,
            Err(_) => self.timed_out(env),
        }
    }

    async fn verify_inner(
        &self,
        message: &[u8],
        env: &Envelope<'_>,
        spf: Option<SpfOutput>,
    ) -> Report {
        let spf = match spf {
            Some(s) => s,
            None => self.spf(env).await,
        };
        // Not strict: a signature with l= is verified over the length it
        // names (RFC 6376 §3.5) rather than set aside, unless the message
        // carries so many signatures that one body hash per l= value would
        // cost more than the message is worth (mail-auth hashes at parse).
        let strict =
            super::headers::count_fields(message, &["dkim-signature", "arc-message-signature"])
                > 2 * MAX_SIGNATURES;
        let Some(mut msg) = AuthenticatedMessage::parse_with_opts(message, None, strict) else {
            // Not a message mail-auth can read (no header section): only SPF.
            return self.report_without_message(env, &spf);
        };
        msg.dkim_headers.truncate(MAX_SIGNATURES);
        msg.ams_headers.truncate(MAX_SIGNATURES * 2);
        msg.as_headers.truncate(MAX_SIGNATURES * 2);
        msg.aar_headers.truncate(MAX_SIGNATURES * 2);
        let mut dkim = self
            .authenticator
            .verify_dkim(cached(&self.caches, &msg))
            .await;
        // RFC 6376 §8.2: with l=, text appended after signing still
        // "passes". Only a signature whose l= covers the whole body passes.
        let body = &message[super::headers::header_end(message)..];
        for out in dkim.iter_mut() {
            if let (DkimResult::Pass, Some(sig)) = (out.result(), out.signature()) {
                if sig.l > 0 && sig.l < canonical_len(sig.cb, body) {
                    let sig = msg
                        .dkim_headers
                        .iter()
                        .map(|h| &h.header)
                        .find(|h| h.b == sig.b)
                        .expect("the signature came from this message");
                    *out = mail_auth::DkimOutput::neutral(mail_auth::Error::Dkim(
                        mail_auth::dkim::DkimError::SignatureLength,
                    ))
                    .with_signature(sig);
                }
            }
        }
        let arc = self
            .authenticator
            .verify_arc(cached(&self.caches, &msg))
            .await;
        let arc_outcome = dkim_outcome(arc.result());
        let mail_from_domain = env.spf_domain();
        let dmarc = self
            .authenticator
            .verify_dmarc(cached(
                &self.caches,
                DmarcParameters::new(&msg, &dkim, mail_from_domain, &spf),
            ))
            .await;
        let from = msg.from.first().map(String::as_str).unwrap_or("");
        let mut ar = AuthenticationResults::new(&self.hostname).with_dkim_results(&dkim, from);
        ar = if env.mail_from.is_empty() {
            ar.with_spf_ehlo_result(&spf, env.client_ip, env.helo)
        } else {
            ar.with_spf_mailfrom_result(&spf, env.client_ip, env.mail_from, env.helo)
        };
        ar = ar
            .with_arc_result(&arc, env.client_ip)
            .with_dmarc_result(&dmarc);
        let dmarc_outcome = dmarc_outcome(&dmarc.result());
        let dmarc_policy = match dmarc.policy() {
            Policy::Reject => DmarcPolicy::Reject,
            Policy::Quarantine => DmarcPolicy::Quarantine,
            Policy::None | Policy::Unspecified => DmarcPolicy::None,
        };
        let dmarc_pct = if dmarc_outcome == Outcome::Fail && dmarc_policy != DmarcPolicy::None {
            self.dmarc_pct(dmarc.domain()).await
        } else {
            Some(100)
        };
        let author_domains: std::collections::HashSet<String> = msg
            .from
            .iter()
            .map(|a| {
                a.rsplit_once('@')
                    .map_or("", |(_, d)| d)
                    .to_ascii_lowercase()
            })
            .collect();
        let author_unclear = author_domains.len() != 1;
        // See dkim_outcome: a changed body is a failure, not "neutral".
        let mut header = ar
            .to_header()
            .replace(
                "dkim=neutral (body hash did not verify)",
                "dkim=fail (body hash did not verify)",
            )
            .replace(
                "arc=neutral (body hash did not verify)",
                "arc=fail (body hash did not verify)",
            );
        let dkim_outcome = if dkim.is_empty() && msg.has_dkim_errors {
            // A DKIM-Signature too broken to parse (RFC 8601 §2.7.1).
            header.insert_str(
                header.len() - 2,
                ";\r\n\tdkim=permerror (malformed DKIM-Signature)",
            );
            Outcome::PermError
        } else if dkim.is_empty() {
            // RFC 8601 §2.7.1: say "none" rather than leave the method out.
            header.insert_str(header.len() - 2, ";\r\n\tdkim=none (no signatures)");
            Outcome::None
        } else {
            best(dkim.iter().map(|d| dkim_outcome(d.result())))
        };
        Report {
            spf: spf.result().into(),
            dkim: dkim_outcome,
            dmarc: dmarc_outcome,
            arc: arc_outcome,
            dmarc_domain: dmarc.domain().to_string(),
            dmarc_policy,
            dmarc_pct,
            author_unclear,
            header,
        }
    }

    /// `pct=` from the author domain's DMARC record, or its parent's (the
    /// organizational domain's) when it has none. mail-auth follows
    /// DMARCbis, which dropped `pct=`; RFC 7489 §6.6.4 still applies it.
    /// `None` when a lookup failed: the caller must not guess.
    async fn dmarc_pct(&self, domain: &str) -> Option<u8> {
        let mut d = domain.trim_end_matches('.');
        loop {
            match self.txt_records(&format!("_dmarc.{d}.")).await {
                Ok(records) => {
                    if let Some(r) = records
                        .iter()
                        .find(|r| r.trim_start().starts_with("v=DMARC1"))
                    {
                        return Some(pct_tag(r.as_bytes()).unwrap_or(100));
                    }
                }
                Err(()) => return None,
            }
            match d.split_once('.') {
                Some((_, parent)) if parent.contains('.') => d = parent,
                _ => return Some(100),
            }
        }
    }

    /// The TXT records at `name`, each one's strings joined; empty when
    /// there are none; `Err` on a DNS failure.
    async fn txt_records(&self, name: &str) -> Result<Vec<String>, ()> {
        match self.authenticator.resolver().txt_lookup(name).await {
            Ok(lookup) => Ok(txt_values(lookup.answers())),
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => Ok(Vec::new()),
            Err(_) => Err(()),
        }
    }

    fn report_without_message(&self, env: &Envelope<'_>, spf: &SpfOutput) -> Report {
        let mut ar = AuthenticationResults::new(&self.hostname);
        ar = if env.mail_from.is_empty() {
            ar.with_spf_ehlo_result(spf, env.client_ip, env.helo)
        } else {
            ar.with_spf_mailfrom_result(spf, env.client_ip, env.mail_from, env.helo)
        };
        Report {
            spf: spf.result().into(),
            dkim: Outcome::None,
            dmarc: Outcome::None,
            arc: Outcome::None,
            dmarc_domain: String::new(),
            dmarc_policy: DmarcPolicy::None,
            dmarc_pct: Some(100),
            // No header section at all: nothing DMARC could align with.
            author_unclear: true,
            header: ar.to_header(),
        }
    }

    /// The budget ran out: nothing is known for sure, so nothing is final.
    fn timed_out(&self, env: &Envelope<'_>) -> Report {
        let header = format!(
            "Authentication-Results: {};\r\n\tspf=temperror smtp.mailfrom={};\r\n\tdkim=temperror;\r\n\tdmarc=temperror (verification took too long)\r\n",
            self.hostname,
            if env.mail_from.is_empty() {
                "<>".to_string()
            } else {
                pvalue(env.mail_from)
            }
        );
        Report {
            spf: Outcome::TempError,
            dkim: Outcome::TempError,
            dmarc: Outcome::TempError,
            arc: Outcome::None,
            dmarc_domain: String::new(),
            // The policy was never found: enforce must not deliver on a guess.
            dmarc_policy: DmarcPolicy::Unknown,
            dmarc_pct: None,
            author_unclear: false,
            header,
        }
    }
}

/// An RFC 8601 pvalue: as it is when it is plain text (RFC 2045 token
/// characters plus `@`), else a quoted-string with `"` and `\` escaped and
/// control characters dropped, so a sender address can't add results.
pub fn pvalue(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`{|}~@".contains(&b));
    if plain {
        return s.to_string();
    }
    let mut out = String::from("\"");
    for c in s.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

impl Envelope<'_> {
    /// The domain SPF checks (RFC 7208 §2.3, §2.4) and DMARC aligns
    /// against: the MAIL FROM domain, or the HELO name for `<>`.
    fn spf_domain(&self) -> &str {
        if self.mail_from.is_empty() {
            self.helo
        } else {
            self.mail_from
                .rsplit_once('@')
                .map_or(self.helo, |(_, d)| d)
        }
    }
}

/// The strings of each TXT record among `answers`, joined into one value
/// per record (RFC 7208 §3.3, RFC 6376 §3.6.2.2).
pub(super) fn txt_values(
    answers: &[mail_auth::hickory_resolver::proto::rr::Record],
) -> Vec<String> {
    answers
        .iter()
        .filter_map(|r| match &r.data {
            mail_auth::hickory_resolver::proto::rr::RData::TXT(t) => Some(
                t.txt_data
                    .iter()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .collect::<String>(),
            ),
            _ => None,
        })
        .collect()
}

/// The length of `body` canonicalized as `c` (RFC 6376 §3.4.3, §3.4.4).
fn canonical_len(c: mail_auth::dkim::Canonicalization, body: &[u8]) -> u64 {
    use mail_auth::common::headers::{Writable, Writer};
    struct Count(u64);
    impl Writer for Count {
        fn write(&mut self, data: &[u8]) {
            self.0 += data.len() as u64;
        }
    }
    let mut n = Count(0);
    c.canonical_body(body, u64::MAX).write(&mut n);
    n.0
}

/// The `pct=` tag of a DMARC record, if it is one and has a valid tag.
pub fn pct_tag(record: &[u8]) -> Option<u8> {
    let text = String::from_utf8_lossy(record);
    if !text.trim_start().starts_with("v=DMARC1") {
        return None;
    }
    text.split(';').find_map(|tag| {
        let (k, v) = tag.split_once('=')?;
        (k.trim().eq_ignore_ascii_case("pct"))
            .then(|| v.trim().parse::<u8>().ok())
            .flatten()
            .filter(|p| *p <= 100)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_passing_signature_is_enough() {
        use Outcome::*;
        assert_eq!(best([Fail, Pass, TempError].into_iter()), Pass);
        assert_eq!(best([Fail, TempError].into_iter()), TempError);
        assert_eq!(best([PermError, Fail].into_iter()), Fail);
        assert_eq!(best(std::iter::empty()), None);
    }

    #[test]
    fn pct_is_read_from_dmarc_records_only() {
        assert_eq!(pct_tag(b"v=DMARC1; p=reject; pct=20"), Some(20));
        assert_eq!(pct_tag(b"v=DMARC1; p=reject"), None);
        assert_eq!(pct_tag(b"v=DMARC1; pct=200"), None);
        assert_eq!(pct_tag(b"v=spf1 pct=20"), None);
    }
}
