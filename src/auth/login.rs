//! The login rules SMTP AUTH, IMAP LOGIN/AUTHENTICATE and POP3 USER/PASS/AUTH
//! share: when a password may cross the wire ([`LoginPolicy`]), and what a
//! checked password becomes for the protocol ([`AuthOutcome`], with the
//! failure counted, logged and delayed in one place). Pure data and one
//! async function: the sans-IO protocol cores keep a `LoginPolicy` in their
//! session config; the connection drivers call [`outcome`].

use std::net::SocketAddr;

use super::sasl::Mechanism;
use super::Verdict;
use crate::config::Config;

/// How a connection may log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginPolicy {
    /// A certificate is configured, so STARTTLS/STLS can be offered.
    pub tls_available: bool,
    /// The connection is TLS now: implicit TLS (465, 993, 995), or after
    /// STARTTLS (see [`LoginPolicy::tls_started`]).
    pub tls_active: bool,
    /// The client connected from the server's own address: Dovecot's rule
    /// for "secured" without TLS (127.0.0.2 talking to 127.0.0.1 is not).
    pub local_client: bool,
    /// `disable_plaintext_auth`: no password in the clear.
    pub disable_plaintext_auth: bool,
    /// `auth_mechanisms`; empty disables SASL.
    pub mechanisms: Vec<Mechanism>,
}

impl LoginPolicy {
    /// The policy for a connection, from the configuration.
    pub fn new(config: &Config, tls_available: bool, tls_active: bool, local_client: bool) -> Self {
        LoginPolicy {
            tls_available,
            tls_active,
            local_client,
            disable_plaintext_auth: config.disable_plaintext_auth,
            mechanisms: config
                .auth_mechanisms
                .iter()
                .filter_map(|m| Mechanism::from_name(m))
                .collect(),
        }
    }

    /// May a password be sent in the clear (LOGIN, USER/PASS, AUTH PLAIN)?
    /// Dovecot's rule: yes over TLS, from this host, or when
    /// `disable_plaintext_auth = no`.
    pub fn plaintext_allowed(&self) -> bool {
        !self.disable_plaintext_auth || self.tls_active || self.local_client
    }

    /// The configured mechanisms this connection may use now: plaintext
    /// ones only where [`plaintext_allowed`](Self::plaintext_allowed).
    pub fn offered_mechanisms(&self) -> impl Iterator<Item = Mechanism> + '_ {
        let plain_ok = self.plaintext_allowed();
        self.mechanisms
            .iter()
            .copied()
            .filter(move |m| plain_ok || !m.is_plaintext())
    }

    /// STARTTLS/STLS can be offered: a certificate, and not TLS yet.
    pub fn can_start_tls(&self) -> bool {
        self.tls_available && !self.tls_active
    }

    /// The connection switched to TLS.
    pub fn tls_started(&mut self) {
        self.tls_active = true;
    }
}

/// The outcome of a credential check, as the protocol cores see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Logged in as this (canonical) user name.
    Ok(String),
    /// Wrong user or password.
    Fail,
    /// The password database could not be read: try again later.
    TempFail,
}

/// Turns a password check into the protocol's outcome: a failure is
/// counted, logged with the client and user (`authentication failed
/// client=… user=… protocol=imap`) and answered only after the failure
/// delay; a passdb failure is logged as an error. A success is left for
/// the caller to log (its line says what the login opened).
pub async fn outcome(
    verdict: Verdict,
    protocol: &'static str,
    client: SocketAddr,
    user: &str,
) -> AuthOutcome {
    match verdict {
        Verdict::Ok(u) => AuthOutcome::Ok(u),
        Verdict::Fail => {
            super::login_failed(protocol, client, user).await;
            AuthOutcome::Fail
        }
        Verdict::TempFail(e) => {
            tracing::error!(client = %client, user = %user, protocol, error = %e, "passdb unavailable");
            AuthOutcome::TempFail
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(tls_active: bool, local_client: bool, disable: bool) -> LoginPolicy {
        LoginPolicy {
            tls_available: true,
            tls_active,
            local_client,
            disable_plaintext_auth: disable,
            mechanisms: vec![Mechanism::Plain, Mechanism::Login, Mechanism::CramMd5],
        }
    }

    #[test]
    fn plaintext_only_over_tls_from_this_host_or_when_allowed() {
        assert!(!policy(false, false, true).plaintext_allowed());
        assert!(policy(true, false, true).plaintext_allowed());
        assert!(policy(false, true, true).plaintext_allowed());
        assert!(policy(false, false, false).plaintext_allowed());
    }

    #[test]
    fn without_tls_only_challenge_response_mechanisms_are_offered() {
        let p = policy(false, false, true);
        assert_eq!(
            p.offered_mechanisms().collect::<Vec<_>>(),
            vec![Mechanism::CramMd5]
        );
        assert!(p.can_start_tls());
        let mut p = p;
        p.tls_started();
        assert!(!p.can_start_tls());
        assert_eq!(p.offered_mechanisms().count(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_is_delayed_and_a_passdb_error_is_temporary() {
        let client: SocketAddr = "192.0.2.1:1000".parse().unwrap();
        let start = tokio::time::Instant::now();
        assert_eq!(
            outcome(Verdict::Fail, "imap", client, "u").await,
            AuthOutcome::Fail
        );
        assert!(start.elapsed() >= super::super::FAILURE_DELAY);
        assert_eq!(
            outcome(Verdict::TempFail("down".into()), "imap", client, "u").await,
            AuthOutcome::TempFail
        );
        assert_eq!(
            outcome(Verdict::Ok("u".into()), "imap", client, "u").await,
            AuthOutcome::Ok("u".into())
        );
    }
}
