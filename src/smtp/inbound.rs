//! The SMTP connection driver: runs a [`Session`] over a socket, and does
//! what it asks — route recipients, check credentials, upgrade to TLS, and
//! deliver accepted mail durably before the 250 goes out.

use super::Ctx;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use super::accept::{self, Origin, Routes};
use super::proto::{Action, AuthOutcome, Envelope, Reply, Session, SessionConfig};
use super::received::{new_queue_id, protocol_name};
use super::restrict::dns::ClientNames;
use super::restrict::{self, Check, Effects, Env, Facts, Outcome, Stage};
use super::router::{ClientTrust, RouteError};
use super::screen;
use crate::auth::login::{self, LoginPolicy};
use crate::config::restrictions::ScreenAction;
use crate::config::{Listener, ServerTls};
use crate::mailauth::policy::{self, Decision, SpfMode};
use crate::mailauth::verify::{Envelope as VerifyEnvelope, SpfOutput};
use crate::net::anvil::Event;
use crate::net::pace::Pace;
use crate::net::{BoxFuture, Conn, Handler, Input, Refusal, Stream};
use crate::observe::metrics;

mod milters;
use self::milters::Fate;
use super::milter::MilterSession;

pub struct SmtpHandler {
    pub ctx: Arc<Ctx>,
    /// `smtp` (25): STARTTLS offered, AUTH only after TLS (or from this
    /// host); `submission` (587) and `submissions` (465): TLS and AUTH required.
    pub listener: Listener,
}

impl Handler for SmtpHandler {
    fn handle(self: Arc<Self>, conn: Conn) -> BoxFuture {
        Box::pin(async move { self.run(conn).await })
    }

    fn refusal(&self, why: Refusal, client: std::net::IpAddr) -> Vec<u8> {
        // Postfix: "421 4.7.0 mail.example.com Error: too many connections from 192.0.2.1".
        let host = &self.ctx.config.myhostname;
        format!("421 4.7.0 {host} Error: {}\r\n", why.text(client)).into_bytes()
    }
}

/// How one read attempt ended.
impl SmtpHandler {
    fn session_config(&self, conn: &Conn) -> SessionConfig {
        let c = &self.ctx.config;
        // smtpd_tls_security_level is the smtp listener's; submission
        // always requires TLS.
        let port25 = self.listener == Listener::Smtp;
        SessionConfig {
            hostname: c.myhostname.clone(),
            max_message_size: c.message_size_limit,
            max_recipients: c.smtpd_recipient_limit,
            login: LoginPolicy::new(
                c,
                self.ctx.tls.is_some()
                    && !(port25 && c.smtpd_tls_security_level == ServerTls::None),
                conn.stream.is_tls(),
                conn.is_local_client(),
            )
            .requiring_tls_for_auth(c.smtpd_tls_auth_only),
            submission: self.listener.is_submission(),
            require_tls: self.listener.is_submission()
                || (port25 && c.smtpd_tls_security_level == ServerTls::Encrypt),
            // spf_policy = reject_fail answers MAIL FROM after an SPF
            // check; smtpd_client_message_rate_limit counts MAIL FROM.
            check_sender: (self.verifies(conn.peer.ip())
                && self.ctx.mail_auth.spf == SpfMode::RejectFail)
                || c.smtpd_client_message_rate_limit > 0
                // Restrictions keep per-transaction state (HOLD, DISCARD…)
                // that starts fresh at each MAIL FROM.
                || !c.smtpd_access.is_default()
                || c.authenticated_senders_owned
                || !c.smtpd_milters.is_empty(),
            check_helo: !c.smtpd_milters.is_empty(),
            max_errors: 20,
            check_data: !c.smtpd_access.lists.data.is_empty() || !c.smtpd_milters.is_empty(),
        }
    }

    /// Is mail from this client checked (SPF, DKIM, DMARC)? Only on the
    /// `smtp` listener (mail from outside), not from `mynetworks` unless
    /// `mail_auth_mynetworks`, and never for authenticated clients (the
    /// session asks only about those).
    fn verifies(&self, ip: IpAddr) -> bool {
        let ma = &self.ctx.mail_auth;
        self.listener == Listener::Smtp
            && ma.verifier.is_some()
            && (ma.check_mynetworks || !self.in_mynetworks(ip))
    }

    /// SPF at MAIL FROM for this client (`spf_policy = reject_fail`).
    fn checks_spf(&self, conn: &Conn) -> bool {
        self.verifies(conn.peer.ip()) && self.ctx.mail_auth.spf == SpfMode::RejectFail
    }

    /// Counts one anvil `event` from the client; over the limit, Postfix's
    /// reply for it.
    fn rate(&self, conn: &Conn, event: Event) -> Result<(), Reply> {
        let ip = conn.peer.ip();
        if self.ctx.anvil.allow(event, conn.listener, ip) {
            return Ok(());
        }
        let (code, enhanced, text, label) = match event {
            Event::Message => (
                450,
                "4.7.1",
                format!("Error: too much mail from {ip}"),
                "message_rate",
            ),
            Event::Recipient => (
                450,
                "4.7.1",
                format!("Error: too many recipients from {ip}"),
                "recipient_rate",
            ),
            Event::Auth => (
                450,
                "4.7.1",
                format!("Error: too many AUTH commands from {ip}"),
                "auth_rate",
            ),
            Event::NewTlsSession | Event::Connection => (
                421,
                "4.7.0",
                format!(
                    "{} Error: too many new TLS sessions from {ip}",
                    self.ctx.config.myhostname
                ),
                "new_tls_session_rate",
            ),
        };
        metrics::limited(label);
        Err(Reply::new(code, enhanced, text))
    }

    fn in_mynetworks(&self, ip: IpAddr) -> bool {
        self.ctx.config.mynetworks.iter().any(|n| n.contains(&ip))
    }

    async fn run(&self, mut conn: Conn) {
        let timeout = self.ctx.config.smtpd_timeout;
        let client = conn.peer;
        let (screened, early) = match self.screen(&mut conn).await {
            Screened::Pass(early) => (None, early),
            Screened::Enforce(reply, early) => (Some(reply), early),
            Screened::Drop(reply) => {
                if let Some(reply) = reply {
                    let _ = conn.stream.send(&reply.to_bytes(), timeout).await;
                }
                let _ = conn.stream.shutdown().await;
                tracing::info!(client = %client, "disconnect");
                return;
            }
        };
        let mut session: Session<Routes> = Session::with_banner(
            self.session_config(&conn),
            self.ctx.config.smtpd_banner.clone(),
        );
        session.feed(&early);
        // The SPF result of MAIL FROM, reused at the end of DATA.
        let mut sender_spf: Option<(String, SpfOutput)> = None;
        let mut buf = vec![0u8; 64 * 1024];
        let mut pace = Pace::new(self.ctx.config.smtpd_min_data_rate);
        // Restrictions: the client's names (looked up once, if a
        // restriction needs them) and what the transaction's checks asked.
        let mut names: Option<ClientNames> = None;
        let mut fx = Effects::default();
        let mut instance = String::new();
        tracing::info!(listener = conn.listener, client = %client, tls = conn.stream.is_tls(), "connect");
        // smtpd_milters: connected now, told about each stage below.
        let mut milters = self.milter_connect(&conn, &mut session).await;
        loop {
            match session.next_action() {
                Action::NeedInput => {
                    if !flush(&mut conn.stream, &mut session, timeout).await {
                        break;
                    }
                    let wait = pace.read_timeout(session.receiving_data(), timeout);
                    match conn.read_input(&mut buf, wait).await {
                        Input::Data(n) => {
                            pace.received(n);
                            session.feed(&buf[..n]);
                        }
                        Input::Eof => {
                            tracing::info!(client = %client, "lost connection");
                            break;
                        }
                        Input::Timeout if pace.uploading() && wait < timeout => {
                            metrics::limited("slow_client");
                            tracing::info!(client = %client, min_rate = self.ctx.config.smtpd_min_data_rate, "message data too slow (smtpd_min_data_rate)");
                            session.shutdown(Reply::new(
                                421,
                                "4.4.2",
                                format!("{} Error: timeout exceeded", self.ctx.config.myhostname),
                            ));
                        }
                        Input::Timeout => {
                            tracing::info!(client = %client, "timeout");
                            session.shutdown(Reply::new(
                                421,
                                "4.4.2",
                                format!("{} Error: timeout exceeded", self.ctx.config.myhostname),
                            ));
                        }
                        Input::Shutdown => {
                            session.shutdown(Reply::new(
                                421,
                                "4.3.2",
                                format!(
                                    "{} Service shutting down, try again later",
                                    self.ctx.config.myhostname
                                ),
                            ));
                        }
                    }
                }
                Action::StartTls => {
                    if let Err(reply) = self.rate(&conn, Event::NewTlsSession) {
                        // Postfix answers 421 to STARTTLS and hangs up.
                        tracing::warn!(client = %client, "STARTTLS refused: {reply}");
                        session.start_tls_refused(reply);
                        continue;
                    }
                    if !flush(&mut conn.stream, &mut session, timeout).await {
                        break;
                    }
                    if !conn
                        .start_tls(self.ctx.tls.clone(), timeout, "STARTTLS")
                        .await
                    {
                        break;
                    }
                    session.tls_started();
                }
                Action::CheckAuth(creds) => {
                    if let Err(reply) = self.rate(&conn, Event::Auth) {
                        tracing::warn!(client = %client, "AUTH refused: {reply}");
                        session.auth_refused(reply);
                        continue;
                    }
                    let user = creds.username().to_string();
                    let auth = &self.ctx.auth;
                    let outcome = login::attempt(
                        &auth.throttle,
                        "smtp",
                        client,
                        &user,
                        auth.check_sasl(creds),
                    )
                    .await;
                    if let AuthOutcome::Ok(u) = &outcome {
                        tracing::info!(client = %client, user = %u, "authenticated");
                    }
                    session.auth_done(outcome);
                }
                Action::CheckHelo(helo) => {
                    let result = self.milter_helo(&conn, &mut milters, &helo).await;
                    session.helo_done(result);
                }
                Action::CheckSender(sender) => {
                    fx = Effects::default();
                    instance = new_queue_id();
                    let early = if let Some(refusal) = self.sender_not_owned(&session, &sender) {
                        Err(refusal)
                    } else if self.ctx.config.smtpd_access.delay_reject {
                        Ok(())
                    } else {
                        let names = self.client_names(&conn, &mut names).await;
                        let facts = self.facts(
                            &conn,
                            &session,
                            names,
                            Stage::Mail,
                            Some(&sender),
                            None,
                            &instance,
                        );
                        self.restrictions(&facts, &mut fx, Check::Mail).await.result
                    };
                    let (result, spf) = match early.and_then(|()| self.rate(&conn, Event::Message))
                    {
                        Err(reply) => (Err(reply), None),
                        Ok(()) if session.user().is_none() && self.checks_spf(&conn) => {
                            let (result, spf) = self.check_sender(&conn, &session, &sender).await;
                            (result, Some(spf))
                        }
                        Ok(()) => (Ok(()), None),
                    };
                    if let Err(reply) = &result {
                        tracing::info!(client = %client, helo = session.helo().unwrap_or(""), "NOQUEUE: reject: MAIL from=<{sender}>: {reply}");
                    }
                    let result = match result {
                        Ok(()) => {
                            self.milter_mail(&conn, &session, &mut milters, &sender)
                                .await
                        }
                        e => e,
                    };
                    sender_spf = spf.map(|spf| (sender, spf));
                    session.sender_done(result);
                }
                Action::CheckRecipient(rcpt) => {
                    let result = match self.rate(&conn, Event::Recipient) {
                        Err(reply) => Err(reply),
                        // postscreen-lite's enforce: no recipient is accepted.
                        Ok(()) if screened.is_some() => Err(screened.clone().expect("checked")),
                        Ok(()) => {
                            let names = self.client_names(&conn, &mut names).await;
                            let sender = session.sender().map(str::to_string);
                            let facts = self.facts(
                                &conn,
                                &session,
                                names,
                                Stage::Rcpt,
                                sender.as_deref(),
                                Some(&rcpt),
                                &instance,
                            );
                            let outcome = self.restrictions(&facts, &mut fx, Check::Rcpt).await;
                            // An explicit permit in the relay or recipient
                            // list lets the router relay, as in Postfix.
                            outcome.result.and_then(|()| {
                                self.route(
                                    &rcpt,
                                    client.ip(),
                                    session.user().is_some() || outcome.relay_permitted,
                                )
                            })
                        }
                    };
                    if let Err(reply) = &result {
                        metrics::get().rcpt_rejected.inc();
                        tracing::info!(client = %client, helo = session.helo().unwrap_or(""), "NOQUEUE: reject: RCPT: {reply}");
                    }
                    let result = match result {
                        Ok(routes) => self.rcpt_quota(&rcpt, routes).await,
                        e => e,
                    };
                    let result = match result {
                        Ok(routes) => {
                            self.milter_rcpt(&conn, &session, &mut milters, &rcpt, routes)
                                .await
                        }
                        e => e,
                    };
                    session.rcpt_done(result);
                }
                Action::CheckData => {
                    let names = self.client_names(&conn, &mut names).await;
                    let sender = session.sender().map(str::to_string);
                    let facts = self.facts(
                        &conn,
                        &session,
                        names,
                        Stage::Data,
                        sender.as_deref(),
                        None,
                        &instance,
                    );
                    let result = self.restrictions(&facts, &mut fx, Check::Data).await.result;
                    if let Err(reply) = &result {
                        tracing::info!(client = %client, helo = session.helo().unwrap_or(""), "NOQUEUE: reject: DATA: {reply}");
                    }
                    let result = match result {
                        Ok(()) => self.milter_data(&conn, &session, &mut milters).await,
                        e => e,
                    };
                    session.data_checked(result);
                }
                Action::Deliver(envelope, message) => {
                    let spf = sender_spf
                        .take()
                        .filter(|(s, _)| *s == envelope.mail_from)
                        .map(|(_, spf)| spf);
                    let names = self.client_names(&conn, &mut names).await;
                    let mut facts = self.facts(
                        &conn,
                        &session,
                        names,
                        Stage::EndOfData,
                        Some(&envelope.mail_from),
                        None,
                        &instance,
                    );
                    facts.recipient_count = envelope.recipients.len();
                    facts.size = Some(message.len() as u64);
                    let eod = self
                        .restrictions(&facts, &mut fx, Check::EndOfData)
                        .await
                        .result;
                    let effects = std::mem::take(&mut fx);
                    let reply = match eod {
                        Err(reply) => {
                            tracing::info!(client = %client, "NOQUEUE: reject: END-OF-MESSAGE from=<{}>: {reply}", envelope.mail_from);
                            reply
                        }
                        Ok(()) => {
                            self.deliver(
                                &conn,
                                &session,
                                envelope,
                                message,
                                spf,
                                effects,
                                milters.as_mut(),
                            )
                            .await
                        }
                    };
                    session.data_done(reply);
                }
                Action::Close => {
                    let _ = flush(&mut conn.stream, &mut session, timeout).await;
                    let _ = conn.stream.shutdown().await;
                    break;
                }
            }
        }
        if let Some(m) = &mut milters {
            m.quit().await;
        }
        tracing::info!(client = %client, "disconnect");
    }

    /// SPF at MAIL FROM (`spf_policy = reject_fail`).
    async fn check_sender(
        &self,
        conn: &Conn,
        session: &Session<Routes>,
        sender: &str,
    ) -> (Result<(), Reply>, SpfOutput) {
        let verifier = self
            .ctx
            .mail_auth
            .verifier
            .as_ref()
            .expect("check_sender needs a verifier");
        let env = VerifyEnvelope {
            client_ip: conn.peer.ip(),
            helo: session.helo().unwrap_or(""),
            mail_from: sender,
        };
        let spf = verifier.spf(&env).await;
        let domain = spf.domain().to_string();
        let refusal = policy::decide_spf(
            self.ctx.mail_auth.spf,
            spf.result().into(),
            conn.peer.ip(),
            &domain,
        );
        let result = match refusal {
            Some((code, enhanced, text)) => Err(Reply::new(code, enhanced, text)),
            None => Ok(()),
        };
        (result, spf)
    }

    /// Mail authentication of a message from outside: the header to add,
    /// the log fields, and what to do. `Err` is the final reply.
    async fn authenticate(
        &self,
        conn: &Conn,
        session: &Session<Routes>,
        env: &Envelope<Routes>,
        message: &[u8],
        spf: Option<SpfOutput>,
    ) -> Result<(Option<String>, String, bool), Reply> {
        if session.user().is_some() || !self.verifies(conn.peer.ip()) {
            return Ok((None, String::new(), false));
        }
        let verifier = self
            .ctx
            .mail_auth
            .verifier
            .as_ref()
            .expect("verifies() checked it");
        let venv = VerifyEnvelope {
            client_ip: conn.peer.ip(),
            helo: session.helo().unwrap_or(""),
            mail_from: &env.mail_from,
        };
        let report = verifier.verify(message, &venv, spf).await;
        let m = metrics::get();
        for (method, outcome) in report.outcomes() {
            m.auth_results
                .get_or_create(&metrics::AuthResultLabel {
                    method,
                    result: outcome.as_str(),
                })
                .inc();
        }
        let fields = report.log_fields();
        let sample = rand::Rng::gen_range(&mut rand::thread_rng(), 0..100u8);
        match policy::decide(self.ctx.mail_auth.dmarc, &report, sample) {
            Decision::Deliver => Ok((Some(report.header), fields, false)),
            Decision::Quarantine => {
                tracing::info!(client = %conn.peer, "DMARC quarantine for {}: {fields}", report.dmarc_domain);
                Ok((Some(report.header), fields, true))
            }
            Decision::Refuse((code, enhanced, text)) => {
                tracing::info!(client = %conn.peer, "NOQUEUE: reject: END-OF-MESSAGE from=<{}>: {code} {enhanced} {text}; {fields}", env.mail_from);
                Err(Reply::new(code, enhanced, text))
            }
        }
    }

    /// postscreen-lite on port 25 (`postscreen = yes`, smtp/screen.rs): the
    /// DNS list score and the pregreet test, before the greeting ends.
    async fn screen(&self, conn: &mut Conn) -> Screened {
        let s = &self.ctx.config.smtpd_access.screen;
        let ip = conn.peer.ip();
        if !s.enabled || self.listener != Listener::Smtp || self.in_mynetworks(ip) {
            return Screened::Pass(Vec::new());
        }
        let passed = &self.ctx.restrict.screened;
        let test_greet = !passed.greet_ok(ip);
        let test_dnsbl = !s.sites.is_empty() && !passed.dnsbl_ok(ip);
        if !test_greet && !test_dnsbl {
            tracing::info!(client = %conn.peer, "PASS OLD [{ip}]:{}", conn.peer.port());
            return Screened::Pass(Vec::new());
        }
        let host = &self.ctx.config.myhostname;
        let timeout = self.ctx.config.smtpd_timeout;
        // The first line of a multi-line greeting: a well-behaved client
        // waits for the last one (RFC 5321 §4.3.1, §4.2.1).
        if test_greet
            && !conn
                .stream
                .send(format!("220-{host} ESMTP\r\n").as_bytes(), timeout)
                .await
        {
            return Screened::Drop(None);
        }
        let started = Instant::now();
        let dns = &self.ctx.restrict.dns;
        let rank = async {
            if test_dnsbl {
                screen::rank(dns, &s.sites, ip).await
            } else {
                (0, Vec::new())
            }
        };
        let mut buf = vec![0u8; 4096];
        let greet = async {
            if !test_greet {
                return Ok(0);
            }
            match conn.read_input(&mut buf, s.greet_wait).await {
                Input::Timeout => Ok(0),
                Input::Data(n) => Ok(n),
                Input::Eof | Input::Shutdown => Err(()),
            }
        };
        let ((score, by), greeted) = tokio::join!(rank, greet);
        let Ok(early) = greeted else {
            return Screened::Drop(None);
        };
        let early = buf[..early].to_vec();
        let mut verdict = Screened::Pass(early.clone());
        if !early.is_empty() {
            let first = String::from_utf8_lossy(&early);
            let first = first
                .lines()
                .next()
                .unwrap_or("")
                .escape_debug()
                .to_string();
            tracing::info!(client = %conn.peer, "PREGREET {} after {:.2} from [{ip}]:{}: {first}", early.len(), started.elapsed().as_secs_f64(), conn.peer.port());
            metrics::limited("postscreen_pregreet");
            verdict = match s.greet_action {
                ScreenAction::Ignore => verdict,
                ScreenAction::Enforce => {
                    Screened::Enforce(screen::protocol_error(550), early.clone())
                }
                ScreenAction::Drop => return Screened::Drop(Some(screen::protocol_error(521))),
            };
        }
        if test_dnsbl && score >= s.threshold {
            tracing::info!(client = %conn.peer, "DNSBL rank {score} for [{ip}]:{} ({})", conn.peer.port(), by.join(", "));
            metrics::limited("postscreen_dnsbl");
            match s.dnsbl_action {
                ScreenAction::Ignore => {}
                ScreenAction::Enforce => {
                    verdict = Screened::Enforce(screen::dnsbl_reply(ip, &by, 550), early.clone())
                }
                ScreenAction::Drop => {
                    return Screened::Drop(Some(screen::dnsbl_reply(ip, &by, 521)))
                }
            }
        }
        if let Screened::Pass(_) = verdict {
            let greet_ok = test_greet && early.is_empty();
            let dnsbl_ok = test_dnsbl && score < s.threshold;
            if greet_ok {
                passed.pass_greet(ip, s.greet_ttl);
            }
            if dnsbl_ok {
                passed.pass_dnsbl(ip, s.dnsbl_ttl);
            }
            if (greet_ok || !test_greet) && (dnsbl_ok || !test_dnsbl) {
                tracing::info!(client = %conn.peer, "PASS NEW [{ip}]:{}", conn.peer.port());
            }
        }
        verdict
    }

    /// `authenticated_sender_policy = owned`: the refusal when the logged-in
    /// user does not own `sender`.
    fn sender_not_owned(&self, session: &Session<Routes>, sender: &str) -> Option<Reply> {
        let user = session.user()?;
        if !self.ctx.config.authenticated_senders_owned
            || accept::sender_owned(&self.ctx, user, sender)
        {
            return None;
        }
        let shown: String = sender
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        Some(Reply::new(
            553,
            "5.7.1",
            format!("<{shown}>: Sender address rejected: not owned by user {user}"),
        ))
    }

    /// The client's names, looked up once per connection and only when a
    /// restriction uses them.
    async fn client_names<'n>(
        &self,
        conn: &Conn,
        names: &'n mut Option<ClientNames>,
    ) -> &'n ClientNames {
        if names.is_none() {
            let found = if self.ctx.config.smtpd_access.lists.needs_client_names() {
                self.ctx.restrict.dns.client_names(conn.peer.ip()).await
            } else {
                ClientNames::unknown()
            };
            *names = Some(found);
        }
        names.get_or_insert_with(ClientNames::unknown)
    }

    #[allow(clippy::too_many_arguments)]
    fn facts<'a>(
        &self,
        conn: &'a Conn,
        session: &'a Session<Routes>,
        names: &'a ClientNames,
        stage: Stage,
        sender: Option<&'a str>,
        recipient: Option<&'a str>,
        instance: &'a str,
    ) -> Facts<'a> {
        Facts {
            stage,
            client: conn.peer,
            server: conn.local,
            names,
            helo: session.helo(),
            esmtp: session.is_esmtp(),
            sender,
            recipient,
            recipient_count: session.recipient_count(),
            sasl_method: session.user().map(|_| "PLAIN"),
            sasl_user: session.user(),
            tls: session.is_tls().then_some(("TLSv1.3", "")),
            in_mynetworks: self.in_mynetworks(conn.peer.ip()),
            improper_pipelining: session.improper_pipelining(),
            size: None,
            instance,
        }
    }

    /// Runs the `smtpd_*_restrictions` of one stage.
    async fn restrictions(&self, facts: &Facts<'_>, fx: &mut Effects, which: Check) -> Outcome {
        let ctx = &self.ctx;
        let unlisted = |address: &str, sender: bool| -> Option<Reply> {
            let untrusted = ClientTrust {
                in_mynetworks: false,
                authenticated: false,
            };
            match accept::route(ctx, address, untrusted) {
                Err(e @ RouteError::UserUnknown(_)) => {
                    let (code, enhanced, text) = e.reply(address);
                    Some(if sender {
                        let text = text.replace("Recipient address", "Sender address");
                        Reply::new(code, "5.1.0", text)
                    } else {
                        Reply::new(code, enhanced, text)
                    })
                }
                _ => None,
            }
        };
        let env = Env {
            config: &ctx.config,
            tables: &ctx.tables,
            checker: &ctx.restrict,
            unlisted: &unlisted,
        };
        restrict::check(&env, facts, fx, which).await
    }

    fn route(&self, rcpt: &str, ip: IpAddr, authenticated: bool) -> Result<Routes, Reply> {
        let st = &self.ctx;
        let trust = ClientTrust {
            in_mynetworks: st.config.mynetworks.iter().any(|n| n.contains(&ip)),
            authenticated,
        };
        accept::route(st, rcpt, trust).map_err(|e| {
            let (code, enhanced, text) = e.reply(rcpt);
            if matches!(e, RouteError::Temporary(_)) {
                tracing::error!(rcpt, error = ?e, "routing failed temporarily");
            }
            Reply::new(code, enhanced, text)
        })
    }

    /// A recipient whose mailbox is already full is refused at RCPT
    /// (`552 5.2.2 Mailbox full`, or 452 4.2.2 with quota_full_tempfail).
    async fn rcpt_quota(&self, rcpt: &str, routes: Routes) -> Result<Routes, Reply> {
        if self.ctx.config.quota.is_none() {
            return Ok(routes);
        }
        let ctx = self.ctx.clone();
        let (full, routes) =
            tokio::task::spawn_blocking(move || (accept::full_mailbox(&ctx, &routes), routes))
                .await
                .map_err(|_| Reply::new(451, "4.3.0", "Local delivery failed, try again later"))?;
        match full {
            None => Ok(routes),
            Some(e) => {
                tracing::info!("NOQUEUE: reject: RCPT: <{rcpt}>: {e}");
                let (code, enhanced, text) = e.smtp_reply();
                Err(Reply::new(code, enhanced, text))
            }
        }
    }

    /// Stores the message in every destination and queues it for remote
    /// ones; 250 only when all are durable.
    // The message, its envelope, and what each stage before it decided
    // (SPF at MAIL, restrictions, milters): one argument each.
    #[allow(clippy::too_many_arguments)]
    async fn deliver(
        &self,
        conn: &Conn,
        session: &Session<Routes>,
        mut env: Envelope<Routes>,
        mut message: Vec<u8>,
        spf: Option<SpfOutput>,
        effects: Effects,
        milters: Option<&mut MilterSession>,
    ) -> Reply {
        let start = Instant::now();
        // access(5) DISCARD: claim delivery, keep nothing.
        if let Some(why) = &effects.discard {
            let queue_id = new_queue_id();
            tracing::info!(
                "{queue_id}: discard: {why}; from=<{}>, client={}",
                env.mail_from,
                conn.peer.ip()
            );
            return Reply::new(250, "2.0.0", format!("Ok: queued as {queue_id}"));
        }
        // access(5) REDIRECT: one recipient instead of all.
        if let Some(to) = &effects.redirect {
            let trusted = ClientTrust {
                in_mynetworks: true,
                authenticated: true,
            };
            match accept::route(&self.ctx, to, trusted) {
                Ok(routes) => {
                    let mut first = env.recipients.swap_remove(0);
                    first.address = to.clone();
                    first.route = routes;
                    env.recipients = vec![first];
                }
                Err(e) => {
                    tracing::error!("REDIRECT to {to} cannot be routed: {e}");
                    return Reply::new(451, "4.3.0", "Error: queue file write error");
                }
            }
        }
        // access(5) PREPEND: header lines on top.
        if !effects.prepend.is_empty() {
            let mut head = String::new();
            for h in &effects.prepend {
                head.push_str(h);
                head.push_str("\r\n");
            }
            message.splice(0..0, head.into_bytes());
        }
        let (auth_results, auth_fields, quarantine) =
            match self.authenticate(conn, session, &env, &message, spf).await {
                Ok(a) => a,
                Err(reply) => return reply,
            };
        let in_mynetworks = self.in_mynetworks(conn.peer.ip());
        let queue_id = milters
            .as_ref()
            .and_then(|m| m.queue_id().map(String::from))
            .unwrap_or_else(new_queue_id);
        // access(5) HOLD or a milter's QUARANTINE: into the hold queue.
        let mut held = effects.hold.clone();
        if let Some(m) = milters {
            match self
                .milter_message(conn, session, m, &mut env, message, &queue_id)
                .await
            {
                Err(reply) => return reply,
                Ok((_, Fate::Discard)) => {
                    return Reply::new(250, "2.0.0", format!("Ok: queued as {queue_id}"))
                }
                Ok((m, Fate::Hold(reason))) => (message, held) = (m, Some(reason)),
                Ok((m, Fate::Deliver)) => message = m,
            }
        }
        let protocol = protocol_name(
            session.is_esmtp(),
            session.is_tls(),
            session.user().is_some(),
        );
        let origin = Origin {
            helo: session.helo().unwrap_or("").to_string(),
            client_ip: conn.peer.ip(),
            protocol,
            tls: conn.stream.tls_description(),
            auth_results,
            quarantine,
            sign: session.user().is_some() || in_mynetworks,
        };
        let size = message.len();
        if let Some(reason) = held {
            return match self
                .milter_hold(&queue_id, &origin, &env, message, reason)
                .await
            {
                Ok(()) => Reply::new(250, "2.0.0", format!("Ok: queued as {queue_id}")),
                Err(e) => {
                    tracing::error!("{queue_id}: cannot write to the hold queue: {e}");
                    Reply::new(451, "4.3.0", "Error: queue file write error")
                }
            };
        }
        let result = accept::store(&self.ctx, &queue_id, &origin, &env, message).await;
        let delay = start.elapsed().as_secs_f64();
        let to: Vec<&str> = env.recipients.iter().map(|r| r.address.as_str()).collect();
        match result {
            Ok(stored) => {
                let status = match (stored.local_copies.len(), stored.queued) {
                    (_, 0) => "sent (delivered)",
                    (0, _) => "queued",
                    _ => "sent (delivered) and queued",
                };
                let auth = if auth_fields.is_empty() {
                    String::new()
                } else {
                    format!(", {auth_fields}")
                };
                tracing::info!(
                    "{queue_id}: from=<{}>, to=<{}>, client={}, proto={protocol}, size={size}, delay={delay:.3}, copies={}, queued={}{auth}, status={status}",
                    env.mail_from,
                    to.join(">,<"),
                    conn.peer.ip(),
                    stored.local_copies.len(),
                    stored.queued,
                );
                metrics::get().received.inc();
                metrics::delivered(metrics::LOCAL, stored.local_copies.len(), delay);
                Reply::new(250, "2.0.0", format!("Ok: queued as {queue_id}"))
            }
            Err(e) => {
                metrics::get().deferred.inc();
                let (code, enhanced, text) = e.smtp_reply();
                tracing::error!(
                    "{queue_id}: from=<{}>, to=<{}>, size={size}, status=deferred ({e})",
                    env.mail_from,
                    to.join(">,<")
                );
                Reply::new(code, enhanced, text)
            }
        }
    }
}

/// What postscreen-lite decided about a new connection; the bytes a
/// client sent too early are kept for the session.
enum Screened {
    Pass(Vec<u8>),
    /// Let it talk, refuse every recipient with this reply.
    Enforce(Reply, Vec<u8>),
    /// Say this (if anything) and hang up.
    Drop(Option<Reply>),
}

/// Sends buffered replies; false when the client is gone.
async fn flush(stream: &mut Stream, session: &mut Session<Routes>, timeout: Duration) -> bool {
    if !session.has_output() {
        return true;
    }
    stream.send(&session.take_output(), timeout).await
}
