//! The SMTP connection driver: runs a [`Session`] over a socket, and does
//! what it asks — route recipients, check credentials, upgrade to TLS, and
//! deliver accepted mail durably before the 250 goes out.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::proto::{Action, AuthOutcome, Envelope, Reply, Session, SessionConfig};
use super::received::{delivery_headers, new_queue_id, protocol_name, Trace};
use super::router::{self, ClientTrust, Destination, RouteContext, RouteError};
use crate::auth::{Verdict, FAILURE_DELAY};
use crate::net::pending::refusal_line;
use crate::net::{BoxFuture, Conn, Handler, Refusal, Stream};
use crate::observe::metrics;
use crate::server::State;
use crate::store::deliver::{self, DeliverError, Message, Owner};
use crate::store::mbox;

/// Which SMTP listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// Port 25: STARTTLS offered, AUTH only after TLS (or from this host).
    Smtp,
    /// Port 587 (STARTTLS) and 465 (implicit TLS): TLS and AUTH required.
    Submission,
}

pub struct SmtpHandler {
    pub state: Arc<State>,
    pub listener: Listener,
}

/// Where every recipient of a transaction goes, as the router decided.
type Routes = Vec<Destination>;

impl Handler for SmtpHandler {
    fn handle(self: Arc<Self>, conn: Conn) -> BoxFuture {
        Box::pin(async move { self.run(conn).await })
    }

    fn refusal(&self, why: Refusal) -> Vec<u8> {
        refusal_line("421 4.7.0", why)
    }
}

/// How one read attempt ended.
enum ReadResult {
    Data(usize),
    Eof,
    Timeout,
    Shutdown,
}

impl SmtpHandler {
    fn session_config(&self, conn: &Conn) -> SessionConfig {
        let c = &self.state.config;
        SessionConfig {
            hostname: c.myhostname.clone(),
            max_message_size: c.message_size_limit,
            max_recipients: c.smtpd_recipient_limit,
            tls_available: self.state.tls_config.is_some(),
            tls_active: conn.stream.is_tls(),
            local_client: conn.peer.ip() == conn.local.ip(),
            mechanisms: c
                .auth_mechanisms
                .iter()
                .filter_map(|m| crate::auth::sasl::Mechanism::from_name(m))
                .collect(),
            submission: self.listener == Listener::Submission,
            disable_plaintext_auth: c.disable_plaintext_auth,
            max_errors: 20,
        }
    }

    async fn run(&self, mut conn: Conn) {
        let timeout = self.state.config.smtpd_timeout;
        let client = conn.peer;
        let mut session: Session<Routes> = Session::new(self.session_config(&conn));
        let mut buf = vec![0u8; 64 * 1024];
        tracing::info!(listener = conn.listener, client = %client, tls = conn.stream.is_tls(), "connect");
        loop {
            match session.next_action() {
                Action::NeedInput => {
                    if !flush(&mut conn.stream, &mut session, timeout).await {
                        break;
                    }
                    let read = tokio::select! {
                        _ = conn.shutdown.cancelled() => ReadResult::Shutdown,
                        r = tokio::time::timeout(timeout, conn.stream.read(&mut buf)) => match r {
                            Err(_) => ReadResult::Timeout,
                            Ok(Ok(0)) | Ok(Err(_)) => ReadResult::Eof,
                            Ok(Ok(n)) => ReadResult::Data(n),
                        },
                    };
                    match read {
                        ReadResult::Data(n) => session.feed(&buf[..n]),
                        ReadResult::Eof => {
                            tracing::info!(client = %client, "lost connection");
                            break;
                        }
                        ReadResult::Timeout => {
                            tracing::info!(client = %client, "timeout");
                            session.shutdown(Reply::new(
                                421,
                                "4.4.2",
                                format!("{} Error: timeout exceeded", self.state.config.myhostname),
                            ));
                        }
                        ReadResult::Shutdown => {
                            session.shutdown(Reply::new(
                                421,
                                "4.3.2",
                                format!(
                                    "{} Service shutting down, try again later",
                                    self.state.config.myhostname
                                ),
                            ));
                        }
                    }
                }
                Action::StartTls => {
                    if !flush(&mut conn.stream, &mut session, timeout).await {
                        break;
                    }
                    let Some(cfg) = self.state.tls_config.clone() else {
                        break;
                    };
                    let plain = std::mem::replace(&mut conn.stream, Stream::Closed);
                    match tokio::time::timeout(timeout, plain.upgrade(cfg)).await {
                        Ok(Ok(tls)) => {
                            conn.stream = tls;
                            session.tls_started();
                        }
                        Ok(Err(e)) => {
                            tracing::info!(client = %client, error = %e, "STARTTLS handshake failed");
                            break;
                        }
                        Err(_) => {
                            tracing::info!(client = %client, "STARTTLS handshake timed out");
                            break;
                        }
                    }
                }
                Action::CheckAuth(creds) => {
                    let user = creds.username().to_string();
                    let outcome = match self.state.auth.check_sasl(creds).await {
                        Verdict::Ok(u) => {
                            tracing::info!(client = %client, user = %u, "authenticated");
                            AuthOutcome::Ok(u)
                        }
                        Verdict::Fail => {
                            metrics::inc(&metrics::AUTH_FAILURES);
                            tracing::warn!(client = %client, user = %user, "authentication failed");
                            // Slow down guessing (Dovecot's auth_failure_delay).
                            tokio::time::sleep(FAILURE_DELAY).await;
                            AuthOutcome::Fail
                        }
                        Verdict::TempFail(e) => {
                            tracing::error!(client = %client, user = %user, error = %e, "passdb unavailable");
                            AuthOutcome::TempFail
                        }
                    };
                    session.auth_done(outcome);
                }
                Action::CheckRecipient(rcpt) => {
                    let result = self.route(&rcpt, client.ip(), session.user().is_some());
                    if let Err(reply) = &result {
                        metrics::inc(&metrics::RCPT_REJECTED);
                        tracing::info!(client = %client, helo = session.helo().unwrap_or(""), "NOQUEUE: reject: RCPT: {reply}");
                    }
                    session.rcpt_done(result);
                }
                Action::Deliver(envelope, message) => {
                    let reply = self.deliver(&conn, &session, envelope, message).await;
                    session.data_done(reply);
                }
                Action::Close => {
                    let _ = flush(&mut conn.stream, &mut session, timeout).await;
                    let _ = conn.stream.shutdown().await;
                    break;
                }
            }
        }
        tracing::info!(client = %client, "disconnect");
    }

    fn route(&self, rcpt: &str, ip: IpAddr, authenticated: bool) -> Result<Routes, Reply> {
        let st = &self.state;
        let trust = ClientTrust {
            in_mynetworks: st.config.mynetworks.iter().any(|n| n.contains(&ip)),
            authenticated,
        };
        // Local recipients (mydestination) are system users, like Postfix's
        // local_recipient_maps; a static userdb would accept any name.
        let users = |name: &str| match st.config.userdb {
            crate::config::UserdbSpec::Static { .. } => crate::auth::system_user(name),
            _ => st.auth.user(name),
        };
        let ctx = RouteContext {
            config: &st.config,
            tables: &st.tables,
            users: &users,
        };
        match router::resolve(&ctx, rcpt, trust) {
            Ok(resolved) => {
                // The outbound queue is not built yet: refuse relaying with a
                // temporary error (the sender retries), never accept and drop.
                if resolved
                    .destinations
                    .iter()
                    .any(|d| matches!(d, Destination::Remote { .. }))
                {
                    return Err(Reply::new(451, "4.3.0", format!("<{rcpt}>: Temporary lookup failure: remote delivery queue not available, try again later")));
                }
                Ok(resolved.destinations)
            }
            Err(e) => {
                let (code, enhanced, text) = e.reply(rcpt);
                if matches!(e, RouteError::Temporary(_)) {
                    tracing::error!(rcpt, error = ?e, "routing failed temporarily");
                }
                Err(Reply::new(code, enhanced, text))
            }
        }
    }

    /// Stores the message in every destination; 250 only when all are durable.
    async fn deliver(
        &self,
        conn: &Conn,
        session: &Session<Routes>,
        env: Envelope<Routes>,
        message: Vec<u8>,
    ) -> Reply {
        let start = Instant::now();
        let queue_id = new_queue_id();
        let protocol = protocol_name(
            session.is_esmtp(),
            session.is_tls(),
            session.user().is_some(),
        );
        let tls = conn.stream.tls_description();
        let trace = Trace {
            helo: session.helo().unwrap_or(""),
            client_ip: conn.peer.ip(),
            hostname: &self.state.config.myhostname,
            protocol,
            queue_id: &queue_id,
            tls: tls.as_deref(),
            arrival: SystemTime::now(),
        };
        // One copy per distinct destination, with the first recipient that led there.
        let mut jobs: Vec<(Destination, Vec<u8>)> = Vec::new();
        for rcpt in &env.recipients {
            for dest in &rcpt.route {
                if !jobs.iter().any(|(d, _)| d == dest) {
                    jobs.push((
                        dest.clone(),
                        delivery_headers(&trace, &env.mail_from, &rcpt.address),
                    ));
                }
            }
        }
        let size = message.len();
        let sender = env.mail_from.clone();
        let arrival = trace.arrival;
        let result =
            tokio::task::spawn_blocking(move || store_all(&jobs, &message, &sender, arrival)).await;
        let delay = start.elapsed().as_secs_f64();
        let to: Vec<&str> = env.recipients.iter().map(|r| r.address.as_str()).collect();
        match result {
            Ok(Ok(paths)) => {
                tracing::info!(
                    "{queue_id}: from=<{}>, to=<{}>, client={}, proto={protocol}, size={size}, delay={delay:.3}, copies={}, status=sent (delivered)",
                    env.mail_from,
                    to.join(">,<"),
                    conn.peer.ip(),
                    paths.len(),
                );
                metrics::inc(&metrics::MESSAGES_DELIVERED);
                Reply::new(250, "2.0.0", format!("Ok: queued as {queue_id}"))
            }
            Ok(Err(e)) => {
                metrics::inc(&metrics::MESSAGES_DEFERRED);
                let (code, enhanced, text) = e.smtp_reply();
                tracing::error!(
                    "{queue_id}: from=<{}>, to=<{}>, size={size}, status=deferred ({e})",
                    env.mail_from,
                    to.join(">,<")
                );
                Reply::new(code, enhanced, text)
            }
            Err(e) => {
                tracing::error!("{queue_id}: delivery task failed: {e}");
                Reply::new(451, "4.3.0", "Local delivery failed, try again later")
            }
        }
    }
}

/// The owner a destination's files get, when the router set both ids.
fn owner(uid: Option<u32>, gid: Option<u32>) -> Option<Owner> {
    uid.zip(gid).map(|(uid, gid)| Owner { uid, gid })
}

/// Writes every copy; on any failure removes the copies already made, so
/// the 4xx the client gets never leaves a partial delivery behind.
fn store_all(
    jobs: &[(Destination, Vec<u8>)],
    message: &[u8],
    sender: &str,
    arrival: SystemTime,
) -> Result<Vec<PathBuf>, DeliverError> {
    let mut prepared = Vec::new();
    let mut done = Vec::new();
    let fail = |prepared: Vec<deliver::Prepared>, e: DeliverError| {
        for p in prepared {
            p.discard();
        }
        Err(e)
    };
    for (dest, prefix) in jobs {
        let msg = Message {
            prefix,
            body: message,
        };
        match dest {
            Destination::Maildir { dir, uid, gid, .. } => {
                match deliver::prepare(dir, &msg, owner(*uid, *gid).as_ref()) {
                    Ok(p) => prepared.push(p),
                    Err(e) => return fail(prepared, e),
                }
            }
            Destination::Mbox { path, uid, gid, .. } => {
                if let Err(e) =
                    mbox::deliver_mbox(path, &msg, sender, arrival, owner(*uid, *gid).as_ref())
                {
                    return fail(prepared, e);
                }
                done.push(path.clone());
            }
            Destination::Remote { .. } => {}
        }
    }
    let dirs: Vec<&std::path::Path> = prepared.iter().map(|p| p.maildir()).collect();
    if let Err(e) = deliver::commit_dirs(&dirs) {
        return fail(prepared, e);
    }
    done.extend(prepared.into_iter().map(|p| p.into_path()));
    Ok(done)
}

/// Sends buffered replies; false when the client is gone.
async fn flush(stream: &mut Stream, session: &mut Session<Routes>, timeout: Duration) -> bool {
    if !session.has_output() {
        return true;
    }
    let out = session.take_output();
    matches!(
        tokio::time::timeout(timeout, async {
            stream.write_all(&out).await?;
            stream.flush().await
        })
        .await,
        Ok(Ok(()))
    )
}
