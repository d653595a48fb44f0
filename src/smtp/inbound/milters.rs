//! The SMTP driver's milter hooks (`smtpd_milters`): one call per SMTP
//! stage, kept apart from the driver so the stages read as one line each
//! there. What a milter decides becomes the command's reply, as in
//! Postfix's smtpd (smtpd.c `check_milter_reply`), logged the same way:
//! `milter-reject: RCPT from host[ip]: 550 5.7.1 ...; from=<...> to=<...>
//! proto=ESMTP helo=<...>`.

use std::sync::Arc;

use super::SmtpHandler;
use crate::net::Conn;
use crate::smtp::accept::{self, Origin, Routes, LOCAL_TRUST};
use crate::smtp::milter::{ConnectInfo, EnvelopeEdit, MilterSession, Verdict};
use crate::smtp::proto::{Envelope, Recipient, Reply, Session};
use crate::smtp::queue::{hold, pickup::Drop, spool};
use crate::smtp::received::{received_header, Trace};
use crate::smtp::router::Destination;

/// What becomes of a message after the milters.
pub(super) enum Fate {
    Deliver,
    /// SMFIR_DISCARD: 250, and dropped.
    Discard,
    /// SMFIR_QUARANTINE: kept in the hold queue.
    Hold(String),
}

/// `{tls_version}` and `{cipher}` in OpenSSL's spelling, as Postfix
/// sends them (`TLSv1.3`, `TLS_AES_256_GCM_SHA384`).
fn tls_macros(conn: &Conn) -> Option<(String, String)> {
    let d = conn.stream.tls_description()?;
    let (version, suite) = d.split_once(' ').unwrap_or((&d, ""));
    let suite = suite
        .strip_prefix("TLS13_")
        .map_or(suite.to_string(), |s| format!("TLS_{s}"));
    Some((version.replace('_', "."), suite))
}

/// `host[ip]` as Postfix logs a client.
fn client(conn: &Conn) -> String {
    format!("unknown[{}]", conn.peer.ip())
}

impl SmtpHandler {
    /// A session with every milter of `smtpd_milters`, told about the
    /// connection; a refusal answers every later command.
    pub(super) async fn milter_connect(
        &self,
        conn: &Conn,
        session: &mut Session<Routes>,
    ) -> Option<MilterSession> {
        let c = &self.ctx.config;
        let mut m = MilterSession::new(&c.smtpd_milters, &c.milter)?;
        let info = ConnectInfo {
            client: conn.peer,
            local: conn.local,
            myhostname: c.myhostname.clone(),
            tls: conn.stream.tls_description().map(|d| (d.clone(), d)),
        };
        if let Verdict::Refuse { reply, milter } = m.connect(&info).await {
            tracing::info!(milter = %milter, "NOQUEUE: milter-reject: CONNECT from {}: {reply}; proto=SMTP", client(conn));
            session.deny(reply);
        }
        Some(m)
    }

    pub(super) async fn milter_helo(
        &self,
        conn: &Conn,
        milters: &mut Option<MilterSession>,
        helo: &str,
    ) -> Result<(), Reply> {
        let Some(m) = milters else { return Ok(()) };
        // After STARTTLS the HELO macros have TLS values.
        m.set_tls(tls_macros(conn).as_ref());
        match m.helo(helo).await {
            Verdict::Continue => Ok(()),
            Verdict::Refuse { reply, milter } => {
                tracing::info!(milter = %milter, "NOQUEUE: milter-reject: HELO from {}: {reply}; proto=SMTP helo=<{helo}>", client(conn));
                Err(reply)
            }
        }
    }

    pub(super) async fn milter_mail(
        &self,
        conn: &Conn,
        session: &Session<Routes>,
        milters: &mut Option<MilterSession>,
        sender: &str,
    ) -> Result<(), Reply> {
        let Some(m) = milters else { return Ok(()) };
        if let Some(user) = session.user() {
            m.authenticated(user);
        }
        let queue_id = crate::smtp::received::new_queue_id();
        match m.mail(sender, &[], &queue_id).await {
            Verdict::Continue => Ok(()),
            Verdict::Refuse { reply, milter } => {
                tracing::info!(milter = %milter, "NOQUEUE: milter-reject: MAIL from {}: {reply}; from=<{sender}> proto=ESMTP helo=<{}>", client(conn), session.helo().unwrap_or(""));
                Err(reply)
            }
        }
    }

    pub(super) async fn milter_rcpt(
        &self,
        conn: &Conn,
        session: &Session<Routes>,
        milters: &mut Option<MilterSession>,
        rcpt: &str,
        routes: Routes,
    ) -> Result<Routes, Reply> {
        let Some(m) = milters else { return Ok(routes) };
        let mailer = if routes
            .iter()
            .all(|d| matches!(d, Destination::Remote { .. }))
        {
            "smtp"
        } else {
            "local"
        };
        match m.rcpt(rcpt, mailer).await {
            Verdict::Continue => Ok(routes),
            Verdict::Refuse { reply, milter } => {
                tracing::info!(milter = %milter, "NOQUEUE: milter-reject: RCPT from {}: {reply}; to=<{rcpt}> proto=ESMTP helo=<{}>", client(conn), session.helo().unwrap_or(""));
                Err(reply)
            }
        }
    }

    /// The DATA command, before its 354.
    pub(super) async fn milter_data(
        &self,
        conn: &Conn,
        session: &Session<Routes>,
        milters: &mut Option<MilterSession>,
    ) -> Result<(), Reply> {
        let Some(m) = milters else { return Ok(()) };
        match m.data().await {
            Verdict::Continue => Ok(()),
            Verdict::Refuse { reply, milter } => {
                tracing::info!(milter = %milter, "NOQUEUE: milter-reject: DATA from {}: {reply}; proto=ESMTP helo=<{}>", client(conn), session.helo().unwrap_or(""));
                Err(reply)
            }
        }
    }

    /// The end of DATA: the milters see the message and may change it,
    /// its envelope, or its fate. Added recipients are routed like a
    /// RCPT from this host (a milter is trusted like mynetworks).
    pub(super) async fn milter_message(
        &self,
        conn: &Conn,
        session: &Session<Routes>,
        m: &mut MilterSession,
        env: &mut Envelope<Routes>,
        message: Vec<u8>,
        queue_id: &str,
    ) -> Result<(Vec<u8>, Fate), Reply> {
        let outcome = m.message(&message).await;
        let log_tail = |env: &Envelope<Routes>| {
            let to: Vec<&str> = env.recipients.iter().map(|r| r.address.as_str()).collect();
            format!(
                "from=<{}> to=<{}> proto=ESMTP helo=<{}>",
                env.mail_from,
                to.join(">,<"),
                session.helo().unwrap_or("")
            )
        };
        if let Verdict::Refuse { reply, milter } = outcome.verdict {
            tracing::info!(milter = %milter, "{queue_id}: milter-reject: END-OF-MESSAGE from {}: {reply}; {}", client(conn), log_tail(env));
            return Err(reply);
        }
        for edit in outcome.envelope {
            match edit {
                EnvelopeEdit::ChangeFrom(from) => {
                    tracing::info!(
                        "{queue_id}: milter-change-from: <{}> -> <{from}>",
                        env.mail_from
                    );
                    env.mail_from = from;
                }
                EnvelopeEdit::DelRcpt(rcpt) => {
                    tracing::info!("{queue_id}: milter-delete-rcpt: <{rcpt}>");
                    env.recipients
                        .retain(|r| !r.address.eq_ignore_ascii_case(&rcpt));
                }
                EnvelopeEdit::AddRcpt(rcpt) => {
                    if env
                        .recipients
                        .iter()
                        .any(|r| r.address.eq_ignore_ascii_case(&rcpt))
                    {
                        continue;
                    }
                    match accept::route(&self.ctx, &rcpt, LOCAL_TRUST) {
                        Ok(route) => {
                            tracing::info!("{queue_id}: milter-add-rcpt: <{rcpt}>");
                            env.recipients.push(Recipient {
                                address: rcpt,
                                notify: 0,
                                orcpt: None,
                                route,
                            });
                        }
                        Err(e) => {
                            let (code, enhanced, text) = e.reply(&rcpt);
                            tracing::warn!("{queue_id}: milter-add-rcpt: <{rcpt}> refused: {code} {enhanced} {text}");
                            if code < 500 {
                                return Err(Reply::new(
                                    451,
                                    "4.3.0",
                                    "Error: queue file write error",
                                ));
                            }
                        }
                    }
                }
            }
        }
        let message = outcome.message.unwrap_or(message);
        if let Some(milter) = m.discard() {
            let milter = milter.to_string();
            tracing::info!(milter = %milter, "{queue_id}: milter-discard: END-OF-MESSAGE from {}: milter triggers DISCARD action; {}", client(conn), log_tail(env));
            return Ok((message, Fate::Discard));
        }
        if env.recipients.is_empty() {
            tracing::info!("{queue_id}: milter-discard: END-OF-MESSAGE from {}: milters deleted every recipient; {}", client(conn), log_tail(env));
            return Ok((message, Fate::Discard));
        }
        if let Some(reason) = m.hold() {
            let reason = reason.to_string();
            tracing::info!("{queue_id}: milter-hold: END-OF-MESSAGE from {}: milter triggers HOLD action ({reason}); {}", client(conn), log_tail(env));
            return Ok((message, Fate::Hold(reason)));
        }
        Ok((message, Fate::Deliver))
    }

    /// Keeps a quarantined message in the hold queue, durably, with the
    /// Received line (and Authentication-Results) it would have had.
    pub(super) async fn milter_hold(
        &self,
        queue_id: &str,
        origin: &Origin,
        env: &Envelope<Routes>,
        message: Vec<u8>,
        reason: String,
    ) -> Result<(), String> {
        let arrival = std::time::SystemTime::now();
        let trace = Trace {
            helo: &origin.helo,
            client_ip: origin.client_ip,
            hostname: &self.ctx.config.myhostname,
            protocol: origin.protocol,
            queue_id,
            tls: origin.tls.as_deref(),
            arrival,
        };
        let one = (env.recipients.len() == 1).then(|| env.recipients[0].address.as_str());
        let mut head = received_header(&trace, one);
        if let Some(ar) = &origin.auth_results {
            head.push_str(ar);
        }
        let mut full = Vec::with_capacity(head.len() + message.len());
        full.extend_from_slice(head.as_bytes());
        full.extend_from_slice(&message);
        drop(message);
        let drop = Drop {
            sender: env.mail_from.clone(),
            recipients: env.recipients.iter().map(|r| r.address.clone()).collect(),
            user: String::new(),
            hold_reason: Some(reason),
            arrival: Some(spool::unix(arrival)),
            sign: origin.sign,
        };
        let ctx = Arc::clone(&self.ctx);
        let id = queue_id.to_string();
        tokio::task::spawn_blocking(move || hold::store(ctx.queue.spool(), &id, &drop, &full))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }
}
