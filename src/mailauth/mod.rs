//! Mail authentication: SPF (RFC 7208), DKIM (RFC 6376, RFC 8463), DMARC
//! (RFC 7489) and ARC (RFC 8617) on mail from outside, and DKIM signing of
//! mail we send. The protocols are mail-auth's; here are the glue, the
//! policy (`dmarc_policy`, `spf_policy`), the headers, OpenDKIM's key
//! tables, and the `dkim keygen` / `dns-records` helpers.
//!
//! - `verify.rs`: one message → a [`verify::Report`] and its
//!   `Authentication-Results` header.
//! - `policy.rs`: the report → deliver, quarantine (Junk) or refuse.
//! - `headers.rs`: removing forged `Authentication-Results`, finding From.
//! - `sign.rs`: KeyTable + SigningTable → `DKIM-Signature` headers.
//! - `cache.rs`: a TTL-respecting cache of DNS answers.
//! - `keygen.rs`: new keys and the DNS records a domain needs.

pub mod cache;
pub mod headers;
pub mod keygen;
pub mod policy;
pub mod sign;
pub mod spf_syntax;
pub mod verify;

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::tables::reload::Reloadable;

/// What the SMTP server uses of mail authentication.
pub struct MailAuth {
    /// `None` when both policies are `off`.
    pub verifier: Option<verify::Verifier>,
    /// `None` without `dkim_key_table` and `dkim_signing_table`.
    pub signer: Option<sign::Signer>,
    pub dmarc: policy::DmarcMode,
    pub spf: policy::SpfMode,
    /// Check mail from `mynetworks` too (`mail_auth_mynetworks`).
    pub check_mynetworks: bool,
}

/// How long one message's checks may take before what is missing counts
/// as a temporary error.
pub const TIME_BUDGET: Duration = Duration::from_secs(20);

impl MailAuth {
    pub fn open(config: &Config) -> Result<MailAuth, String> {
        let dmarc = policy::DmarcMode::parse(&config.dmarc_policy)?;
        let spf = policy::SpfMode::parse(&config.spf_policy)?;
        let verifier = if dmarc == policy::DmarcMode::Off && spf == policy::SpfMode::Off {
            None
        } else {
            Some(verify::Verifier::new(
                &config.dns_servers,
                &config.myhostname,
                TIME_BUDGET,
            )?)
        };
        let signer = match (&config.dkim_key_table, &config.dkim_signing_table) {
            (Some(k), Some(s)) => Some(sign::Signer::open(k, s)?),
            (None, None) => None,
            _ => {
                return Err(
                    "dkim_key_table and dkim_signing_table go together: set both or neither".into(),
                )
            }
        };
        Ok(MailAuth {
            verifier,
            signer,
            dmarc,
            spf,
            check_mynetworks: config.mail_auth_mynetworks,
        })
    }

    /// Mail authentication off: for tests and tools.
    pub fn off() -> MailAuth {
        MailAuth {
            verifier: None,
            signer: None,
            dmarc: policy::DmarcMode::Off,
            spf: policy::SpfMode::Off,
            check_mynetworks: false,
        }
    }

    pub fn reloadables(&self) -> Vec<Arc<dyn Reloadable>> {
        self.signer
            .as_ref()
            .map(|s| s.reloadables())
            .unwrap_or_default()
    }
}
