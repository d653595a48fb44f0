//! ACME (RFC 8555) certificates, `acme_domains`: an account and one
//! certificate for all the names, kept in `acme_state_directory`, renewed
//! `acme_renew_before` its expiry (plus jitter) by a background task.
//!
//! The certificate and its key are written where `ssl_cert`/`ssl_key` point
//! (the config makes them point into the state directory), so the existing
//! certificate reload (`tables/reload.rs` watching [`crate::tls::CertStore`])
//! swaps it in for every TLS listener exactly like a file certbot replaced.
//! A failed order changes no file: the certificate in force stays.
//!
//! The policy (is a renewal due, how long to back off) is pure and unit
//! tested; the I/O is [`prepare`] (start-up), [`run`] (the task) and the
//! challenge answers in [`Challenges`] (http-01 on `listen.http`,
//! tls-alpn-01 through the certificate store).

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tokio_util::sync::CancellationToken;

use crate::config::{AcmeChallenge, AcmeSettings};
use crate::tls::CertStore;

/// The account's credentials (instant-acme's JSON, key included), mode 0600.
const ACCOUNT_FILE: &str = "account.json";
/// One order (new order, challenges, finalization, download) may take this long.
const ORDER_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest back-off after failures, and longest sleep between two checks.
const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);
/// The certificate file is re-read at least this often (it may have been
/// replaced by hand).
const RECHECK: Duration = Duration::from_secs(12 * 3600);

/// The challenge answers of the order in progress.
#[derive(Default)]
pub struct Challenges {
    /// http-01: token → key authorization (RFC 8555 §8.3).
    http: Mutex<HashMap<String, String>>,
}

impl Challenges {
    pub fn new() -> Arc<Challenges> {
        Arc::new(Challenges::default())
    }

    /// The body for `GET /.well-known/acme-challenge/<token>`, if that
    /// token belongs to the order in progress.
    pub fn http01(&self, token: &str) -> Option<String> {
        self.http.lock().unwrap().get(token).cloned()
    }
}

/// What the certificate file says, as far as renewal cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub not_after: SystemTime,
    /// The start-up placeholder (or any self-signed certificate).
    pub self_signed: bool,
    /// Its DNS subject alternative names, lower case.
    pub names: Vec<String>,
}

/// Reads the first certificate of a PEM chain.
pub fn cert_info(path: &Path) -> Result<CertInfo, String> {
    let der = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .next()
        .ok_or_else(|| format!("{}: no certificate", path.display()))?
        .map_err(|e| format!("{}: {e}", path.display()))?;
    der_info(&der).map_err(|e| format!("{}: {e}", path.display()))
}

/// Reads a DER certificate.
pub fn der_info(der: &[u8]) -> Result<CertInfo, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let secs = cert.validity().not_after.timestamp().max(0) as u64;
    let names = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(CertInfo {
        not_after: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
        self_signed: cert.subject() == cert.issuer(),
        names,
    })
}

/// Whether to order now, and if not, when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    Now(&'static str),
    At(SystemTime),
}

/// The renewal policy: order when there is no usable certificate, when it
/// is the self-signed placeholder, when it lacks one of `domains`, or from
/// `renew_before` (plus `jitter`) before it expires.
pub fn due(
    cert: Option<&CertInfo>,
    domains: &[String],
    renew_before: Duration,
    jitter: Duration,
) -> Due {
    let Some(c) = cert else {
        return Due::Now("no certificate yet");
    };
    if c.self_signed {
        return Due::Now("the certificate in use is the self-signed placeholder");
    }
    if domains.iter().any(|d| !c.names.contains(d)) {
        return Due::Now("acme_domains names a host the certificate does not cover");
    }
    let at = c
        .not_after
        .checked_sub(renew_before + jitter)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    if at <= SystemTime::now() {
        Due::Now("the certificate expires within acme_renew_before")
    } else {
        Due::At(at)
    }
}

/// Random jitter for one renewal: up to a tenth of `renew_before`, at most
/// a day, so many servers do not all renew in the same second.
pub fn jitter(renew_before: Duration) -> Duration {
    use rand::Rng;
    let max = (renew_before / 10).min(Duration::from_secs(24 * 3600));
    Duration::from_secs(rand::thread_rng().gen_range(0..=max.as_secs()))
}

/// The pause after `failures` failed attempts in a row: `retry` doubling,
/// at most a day.
pub fn backoff(retry: Duration, failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    retry.saturating_mul(factor).min(MAX_WAIT)
}

/// Start-up: the state directory (0700) and, when no certificate was issued
/// yet, a self-signed placeholder for the domains so the TLS listeners can
/// start (and tls-alpn-01 be answered) before the first order completes.
pub fn prepare(s: &AcmeSettings, cert: &Path, key: &Path) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = &s.state_directory;
    let err = |e: std::io::Error| format!("acme_state_directory {}: {e}", dir.display());
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(err)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    if cert.exists() && key.exists() {
        return Ok(());
    }
    let names: Vec<&str> = s.domains.iter().map(String::as_str).collect();
    let (cert_pem, key_pem) = crate::tls::self_signed(&names);
    install(cert, &cert_pem, key, &key_pem).map_err(err)?;
    tracing::info!(
        domains = %s.domains.join(" "),
        "ACME: no certificate issued yet; a self-signed one is served until the first order completes"
    );
    Ok(())
}

/// Writes a file atomically: a temporary file beside it (`mode`), fsync,
/// rename, fsync of the directory.
fn write_atomic(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Puts a certificate and its key in place: the key first (0600), then
/// the chain, each atomically.
fn install(cert: &Path, cert_pem: &str, key: &Path, key_pem: &str) -> std::io::Result<()> {
    write_atomic(key, key_pem.as_bytes(), 0o600)?;
    write_atomic(cert, cert_pem.as_bytes(), 0o644)
}

/// The renewal task: checks the certificate, orders when [`due`] says so,
/// backs off after failures; returns when `stop` is cancelled.
pub async fn run(
    s: AcmeSettings,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    challenges: Arc<Challenges>,
    certs: Arc<CertStore>,
    stop: CancellationToken,
) {
    let domains = s.domains.join(" ");
    let mut failures = 0u32;
    let mut last_order: Option<Instant> = None;
    loop {
        let info = match cert_info(&cert) {
            Ok(i) => Some(i),
            Err(e) => {
                tracing::warn!(domains = %domains, error = %e, "ACME: cannot read the certificate; ordering a new one");
                None
            }
        };
        let metrics = crate::observe::metrics::get();
        if let Some(i) = info.as_ref().filter(|i| !i.self_signed) {
            let secs = i
                .not_after
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            metrics.acme_not_after.set(secs as i64);
        }
        let wait = match due(
            info.as_ref(),
            &s.domains,
            s.renew_before,
            jitter(s.renew_before),
        ) {
            Due::At(at) => at
                .duration_since(SystemTime::now())
                .unwrap_or_default()
                .min(RECHECK),
            Due::Now(reason) => {
                let gap = last_order
                    .map(|t| (t + s.retry_time).saturating_duration_since(Instant::now()))
                    .unwrap_or_default();
                if !gap.is_zero() {
                    gap
                } else {
                    tracing::info!(domains = %domains, reason, directory = %s.directory, "ACME: ordering a certificate");
                    last_order = Some(Instant::now());
                    let result =
                        tokio::time::timeout(ORDER_TIMEOUT, order(&s, &challenges, &certs))
                            .await
                            .unwrap_or_else(|_| {
                                Err(format!("no certificate after {ORDER_TIMEOUT:?}"))
                            });
                    challenges.http.lock().unwrap().clear();
                    certs.clear_alpn_challenges();
                    match result.and_then(|(chain, key_pem)| {
                        install(&cert, &chain, &key, &key_pem)
                            .map_err(|e| format!("writing {}: {e}", cert.display()))
                    }) {
                        Ok(()) => {
                            failures = 0;
                            metrics.acme_issued.inc();
                            let issued = cert_info(&cert).ok();
                            let not_after = issued
                                .as_ref()
                                .map(|i| {
                                    chrono::DateTime::<chrono::Utc>::from(i.not_after).to_rfc3339()
                                })
                                .unwrap_or_default();
                            tracing::info!(domains = %domains, cert = %cert.display(), %not_after, "ACME: certificate issued and installed");
                            if let Due::Now(_) =
                                due(issued.as_ref(), &s.domains, s.renew_before, Duration::ZERO)
                            {
                                tracing::warn!(domains = %domains, renew_before = ?s.renew_before, %not_after, "ACME: acme_renew_before is longer than the new certificate's life: it will be ordered again every acme_retry_time");
                            }
                            continue;
                        }
                        Err(e) => {
                            failures += 1;
                            metrics.acme_failures.inc();
                            let wait = backoff(s.retry_time, failures);
                            tracing::error!(domains = %domains, error = %e, retry_in = ?wait, "ACME: getting a certificate failed; the certificate in use stays");
                            wait
                        }
                    }
                }
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// RFC 8555 §6.7: the server does not know the account (a test server
/// restarted, an account deactivated elsewhere).
const ACCOUNT_UNKNOWN: &str = "urn:ietf:params:acme:error:accountDoesNotExist";

/// The account: read from the state directory, or created (and saved).
/// `fresh` ignores the saved one.
async fn account(s: &AcmeSettings, fresh: bool) -> Result<Account, String> {
    let builder = || {
        match &s.ca_file {
            Some(ca) => Account::builder_with_root(ca),
            None => Account::builder(),
        }
        .map_err(|e| format!("HTTP client: {e}"))
    };
    let path = s.state_directory.join(ACCOUNT_FILE);
    if let Some(text) = (!fresh)
        .then(|| std::fs::read_to_string(&path).ok())
        .flatten()
    {
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if value["directory"].as_str() == Some(s.directory.as_str()) {
            let creds: AccountCredentials =
                serde_json::from_value(value).map_err(|e| format!("{}: {e}", path.display()))?;
            return builder()?
                .from_credentials(creds)
                .await
                .map_err(|e| format!("account from {}: {e}", path.display()));
        }
        tracing::info!(directory = %s.directory, "ACME: the saved account is another directory's; creating one");
    }
    let contact: Vec<String> = s.email.iter().map(|e| format!("mailto:{e}")).collect();
    let contact: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, creds) = builder()?
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            s.directory.clone(),
            None,
        )
        .await
        .map_err(|e| format!("creating an account at {}: {e}", s.directory))?;
    let json = serde_json::to_vec(&creds).map_err(|e| e.to_string())?;
    write_atomic(&path, &json, 0o600).map_err(|e| format!("{}: {e}", path.display()))?;
    tracing::info!(directory = %s.directory, id = %account.id(), "ACME: account created");
    Ok(account)
}

/// One order for all the domains: answers the challenges, finalizes with a
/// fresh key, downloads the chain. Returns (chain PEM, key PEM).
async fn order(
    s: &AcmeSettings,
    challenges: &Challenges,
    certs: &CertStore,
) -> Result<(String, String), String> {
    let ids: Vec<Identifier> = s
        .domains
        .iter()
        .map(|d| Identifier::Dns(d.clone()))
        .collect();
    let mut order = match account(s, false).await?.new_order(&NewOrder::new(&ids)).await {
        Err(instant_acme::Error::Api(p)) if p.r#type.as_deref() == Some(ACCOUNT_UNKNOWN) => {
            tracing::warn!(directory = %s.directory, "ACME: the server does not know the saved account; creating a new one");
            account(s, true).await?.new_order(&NewOrder::new(&ids)).await
        }
        other => other,
    }
    .map_err(|e| format!("new order: {e}"))?;
    let kind = match s.challenge {
        AcmeChallenge::Http01 => ChallengeType::Http01,
        AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
    };
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz.map_err(|e| format!("authorization: {e}"))?;
        let name = authz.identifier().to_string();
        match authz.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => return Err(format!("authorization for {name} is {other:?}")),
        }
        let mut challenge = authz
            .challenge(kind.clone())
            .ok_or_else(|| format!("the ACME server offers no {kind:?} challenge for {name}"))?;
        let key_auth = challenge.key_authorization();
        match s.challenge {
            AcmeChallenge::Http01 => {
                challenges
                    .http
                    .lock()
                    .unwrap()
                    .insert(challenge.token.clone(), key_auth.as_str().to_string());
            }
            AcmeChallenge::TlsAlpn01 => {
                certs
                    .set_alpn_challenge(&name, key_auth.digest().as_ref())
                    .map_err(|e| format!("tls-alpn-01 certificate for {name}: {e}"))?;
            }
        }
        challenge
            .set_ready()
            .await
            .map_err(|e| format!("challenge for {name}: {e}"))?;
    }
    let retry = RetryPolicy::new().timeout(Duration::from_secs(120));
    let status = order
        .poll_ready(&retry)
        .await
        .map_err(|e| format!("the ACME server did not validate the order: {e}"))?;
    if status != OrderStatus::Ready {
        let problem = order
            .state()
            .error
            .as_ref()
            .map(|p| format!(": {p}"))
            .unwrap_or_default();
        return Err(format!(
            "the ACME server did not validate the order (it is {status:?}){problem}"
        ));
    }
    let key_pem = order
        .finalize()
        .await
        .map_err(|e| format!("finalizing the order: {e}"))?;
    let chain = order
        .poll_certificate(&retry)
        .await
        .map_err(|e| format!("downloading the certificate: {e}"))?;
    Ok((chain, key_pem))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(days_left: u64, self_signed: bool, names: &[&str]) -> CertInfo {
        CertInfo {
            not_after: SystemTime::now() + Duration::from_secs(days_left * 86400),
            self_signed,
            names: names.iter().map(|n| n.to_string()).collect(),
        }
    }

    #[test]
    fn renewal_policy() {
        let d = vec!["mail.example.com".to_string()];
        let month = Duration::from_secs(30 * 86400);
        assert!(matches!(due(None, &d, month, Duration::ZERO), Due::Now(_)));
        let placeholder = info(3650, true, &["mail.example.com"]);
        assert!(matches!(
            due(Some(&placeholder), &d, month, Duration::ZERO),
            Due::Now(_)
        ));
        let fresh = info(90, false, &["mail.example.com"]);
        match due(Some(&fresh), &d, month, Duration::ZERO) {
            Due::At(at) => {
                let left = at.duration_since(SystemTime::now()).unwrap();
                assert!(
                    left > Duration::from_secs(59 * 86400)
                        && left <= Duration::from_secs(60 * 86400)
                );
            }
            other => panic!("{other:?}"),
        }
        // The jitter only brings the renewal forward.
        let Due::At(with_jitter) = due(Some(&fresh), &d, month, Duration::from_secs(86400)) else {
            panic!()
        };
        let Due::At(without) = due(Some(&fresh), &d, month, Duration::ZERO) else {
            panic!()
        };
        assert_eq!(
            without.duration_since(with_jitter).unwrap(),
            Duration::from_secs(86400)
        );
        assert!(matches!(
            due(
                Some(&info(29, false, &["mail.example.com"])),
                &d,
                month,
                Duration::ZERO
            ),
            Due::Now(_)
        ));
        let two = vec![
            "mail.example.com".to_string(),
            "imap.example.com".to_string(),
        ];
        assert!(matches!(
            due(Some(&fresh), &two, month, Duration::ZERO),
            Due::Now(_)
        ));
    }

    #[test]
    fn jitter_and_backoff_bounds() {
        let month = Duration::from_secs(30 * 86400);
        for _ in 0..100 {
            assert!(jitter(month) <= Duration::from_secs(86400));
            assert!(jitter(Duration::from_secs(100)) <= Duration::from_secs(10));
        }
        let ten = Duration::from_secs(600);
        assert_eq!(backoff(ten, 1), ten);
        assert_eq!(backoff(ten, 2), ten * 2);
        assert_eq!(backoff(ten, 3), ten * 4);
        assert_eq!(backoff(ten, 40), MAX_WAIT);
    }
}
