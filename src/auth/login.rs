//! The login rules SMTP AUTH, IMAP LOGIN/AUTHENTICATE and POP3 USER/PASS/AUTH
//! share: when a password may cross the wire ([`LoginPolicy`]), and what a
//! checked password becomes for the protocol ([`AuthOutcome`], with the
//! failure counted, logged and delayed in one place). Pure data and one
//! async function: the sans-IO protocol cores keep a `LoginPolicy` in their
//! session config; the connection drivers call [`outcome`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use super::sasl::Mechanism;
use super::sessions::{SessionSlot, UserIpSessions};
use super::throttle::{Banned, Finished, Throttle};
use super::Verdict;
use crate::config::Config;
use crate::observe::metrics;

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
    /// No login of any kind before TLS, not even from this host: Postfix
    /// `smtpd_tls_auth_only = yes`, Dovecot `ssl = required`.
    pub auth_requires_tls: bool,
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
            auth_requires_tls: false,
        }
    }

    /// With `yes`, no login at all before TLS ([`LoginPolicy::auth_requires_tls`]).
    pub fn requiring_tls_for_auth(mut self, yes: bool) -> Self {
        self.auth_requires_tls = yes;
        self
    }

    /// May a password be sent in the clear (LOGIN, USER/PASS, AUTH PLAIN)?
    /// Dovecot's rule: yes over TLS, from this host, or when
    /// `disable_plaintext_auth = no`.
    pub fn plaintext_allowed(&self) -> bool {
        if self.auth_requires_tls {
            return self.tls_active;
        }
        !self.disable_plaintext_auth || self.tls_active || self.local_client
    }

    /// May `mech` be used on this connection now?
    pub fn may_use(&self, mech: Mechanism) -> bool {
        (!self.auth_requires_tls || self.tls_active)
            && (!mech.is_plaintext() || self.plaintext_allowed())
    }

    /// The configured mechanisms this connection may use now: plaintext
    /// ones only where [`plaintext_allowed`](Self::plaintext_allowed).
    pub fn offered_mechanisms(&self) -> impl Iterator<Item = Mechanism> + '_ {
        self.mechanisms
            .iter()
            .copied()
            .filter(move |m| self.may_use(*m))
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
    /// The client is banned for failed logins; the password was not checked.
    Banned,
    /// Right password, but the user already has this many sessions from
    /// this address (`mail_max_userip_connections`).
    TooManySessions(usize),
}

/// What a banned client is told.
pub const BANNED_TEXT: &str = "Too many failed logins from your address; try again later";

/// One login attempt, start to finish: the throttle admits it (or the
/// client is banned), the attempt waits out any penalty, `check` runs, and
/// the result is recorded. A failure is counted, logged with the client and
/// user (`authentication failed client=… user=… protocol=imap`) and
/// answered only after `auth_failure_delay`; a ban is logged once, when it
/// starts (`client banned`). A passdb failure is logged as an error. A
/// success is left for the caller to log (its line says what the login
/// opened).
pub async fn attempt(
    throttle: &Arc<Throttle>,
    protocol: &'static str,
    client: SocketAddr,
    user: &str,
    check: impl Future<Output = Verdict>,
) -> AuthOutcome {
    let ticket = match throttle.admit(client.ip(), user) {
        Ok(t) => t,
        Err(Banned) => {
            metrics::auth_failure(protocol);
            tracing::info!(client = %client, user = %user, protocol, "login refused: client banned");
            tokio::time::sleep(throttle.failure_delay()).await;
            return AuthOutcome::Banned;
        }
    };
    if !ticket.wait.is_zero() {
        tracing::debug!(client = %client, user = %user, protocol, wait = ?ticket.wait, "login penalty");
        tokio::time::sleep(ticket.wait).await;
    }
    match check.await {
        Verdict::Ok(u) => {
            ticket.finish(user, true);
            AuthOutcome::Ok(u)
        }
        Verdict::Fail => {
            metrics::auth_failure(protocol);
            tracing::warn!(client = %client, user = %user, protocol, "authentication failed");
            if let Finished::FailedAndBanned { failures } = ticket.finish(user, false) {
                metrics::auth_ban();
                tracing::warn!(
                    client = %client,
                    failures,
                    ban_time = ?throttle.ban_time(),
                    "client banned after too many failed logins"
                );
            }
            tokio::time::sleep(throttle.failure_delay()).await;
            AuthOutcome::Fail
        }
        Verdict::TempFail(e) => {
            drop(ticket);
            tracing::error!(client = %client, user = %user, protocol, error = %e, "passdb unavailable");
            AuthOutcome::TempFail
        }
    }
}

/// After a successful IMAP or POP3 login: takes the session's place among
/// the user's sessions from this address (`mail_max_userip_connections`),
/// kept in `slot` for the session's life, or turns the login into
/// [`AuthOutcome::TooManySessions`].
pub fn hold_session(
    sessions: &Arc<UserIpSessions>,
    protocol: &'static str,
    outcome: AuthOutcome,
    client: SocketAddr,
    slot: &mut Option<SessionSlot>,
) -> AuthOutcome {
    let AuthOutcome::Ok(user) = &outcome else {
        return outcome;
    };
    match sessions.acquire(protocol, user, client.ip()) {
        Some(s) => {
            *slot = Some(s);
            outcome
        }
        None => {
            metrics::limited("userip_sessions");
            let limit = sessions.limit();
            tracing::warn!(client = %client, user = %user, protocol, "{}", super::sessions::limit_text(limit));
            AuthOutcome::TooManySessions(limit)
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
            auth_requires_tls: false,
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

    #[test]
    fn auth_requires_tls_refuses_every_mechanism_before_tls_even_locally() {
        // smtpd_tls_auth_only = yes, ssl = required.
        let mut p = policy(false, true, false).requiring_tls_for_auth(true);
        assert!(!p.plaintext_allowed());
        assert_eq!(p.offered_mechanisms().count(), 0);
        p.tls_started();
        assert!(p.plaintext_allowed());
        assert_eq!(p.offered_mechanisms().count(), 3);
    }

    fn throttle(threshold: u32) -> Arc<Throttle> {
        Throttle::new(super::super::throttle::ThrottleConfig {
            failure_delay: std::time::Duration::from_secs(2),
            ban_threshold: threshold,
            ban_window: std::time::Duration::from_secs(600),
            ban_time: std::time::Duration::from_secs(1800),
            exceptions: vec![],
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_is_delayed_and_a_passdb_error_is_temporary() {
        let t = throttle(20);
        let client: SocketAddr = "192.0.2.1:1000".parse().unwrap();
        let start = tokio::time::Instant::now();
        let fail = async { Verdict::Fail };
        assert_eq!(
            attempt(&t, "imap", client, "u", fail).await,
            AuthOutcome::Fail
        );
        assert!(start.elapsed() >= std::time::Duration::from_secs(2));
        let down = async { Verdict::TempFail("down".into()) };
        assert_eq!(
            attempt(&t, "imap", client, "u", down).await,
            AuthOutcome::TempFail
        );
        // The next attempt waits the penalty of one failure (2 s) before the check.
        let start = tokio::time::Instant::now();
        let ok = async { Verdict::Ok("u".into()) };
        assert_eq!(
            attempt(&t, "imap", client, "u", ok).await,
            AuthOutcome::Ok("u".into())
        );
        assert!(start.elapsed() >= std::time::Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_banned_client_is_refused_without_a_check() {
        let t = throttle(2);
        let client: SocketAddr = "192.0.2.1:1000".parse().unwrap();
        for _ in 0..2 {
            attempt(&t, "pop3", client, "u", async { Verdict::Fail }).await;
        }
        let checked = std::sync::atomic::AtomicBool::new(false);
        let check = async {
            checked.store(true, std::sync::atomic::Ordering::SeqCst);
            Verdict::Ok("u".into())
        };
        assert_eq!(
            attempt(&t, "pop3", client, "u", check).await,
            AuthOutcome::Banned
        );
        assert!(!checked.load(std::sync::atomic::Ordering::SeqCst));
    }
}
