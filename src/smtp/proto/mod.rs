//! The SMTP server session, sans-IO (RFC 5321 with PIPELINING, SIZE,
//! 8BITMIME, ENHANCEDSTATUSCODES, STARTTLS, AUTH, SMTPUTF8, CHUNKING, DSN).
//!
//! Bytes go in with [`Session::feed`]; [`Session::next_action`] says what the
//! I/O layer must do next (read more, check a recipient, verify credentials,
//! deliver a message, start TLS, close). Replies accumulate in an output
//! buffer the I/O layer flushes before it blocks on reading, which is
//! exactly the batching RFC 2920 (PIPELINING) asks for. Requests are parsed
//! with the smtp-proto crate.

pub mod data;
pub mod reply;

use smtp_proto::{Error as ParseError, Request};

use self::data::{DataEnd, DataReader};
pub use self::reply::Reply;
pub use crate::auth::login::{AuthOutcome, LoginPolicy};
use crate::auth::sasl::{Credentials, Mechanism, SaslError, SaslExchange, SaslStep};

/// RFC 5321 §4.5.3.1.4 allows 512 octets for a command line; like Postfix
/// we are more lenient, up to 1000 (the text-line limit, §4.5.3.1.6).
pub const MAX_COMMAND_LINE: usize = 1000;
/// RFC 4954 §4: an AUTH command or SASL response line may be 12288 octets.
pub const MAX_AUTH_LINE: usize = 12288;

/// What the session needs to know about its listener and client.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub hostname: String,
    /// `message_size_limit`; 0 means no limit.
    pub max_message_size: u64,
    /// `smtpd_recipient_limit`.
    pub max_recipients: usize,
    /// TLS and AUTH: the login rules IMAP and POP3 share. Here
    /// `disable_plaintext_auth` withholds AUTH altogether without TLS
    /// (unless the client is local), and no mechanisms disables AUTH.
    pub login: LoginPolicy,
    /// Submission (587/465): TLS before AUTH, AUTH before MAIL.
    pub submission: bool,
    /// Nothing but EHLO/HELO, STARTTLS, NOOP, RSET and QUIT before TLS:
    /// submission, and Postfix `smtpd_tls_security_level = encrypt`.
    pub require_tls: bool,
    /// Ask the I/O layer about each sender ([`Action::CheckSender`]) before
    /// answering MAIL FROM: for the message rate limit, and SPF of
    /// unauthenticated clients.
    pub check_sender: bool,
    /// Ask the I/O layer about HELO/EHLO ([`Action::CheckHelo`]) before
    /// answering it: milters see it.
    pub check_helo: bool,
    /// Error replies allowed before the session is closed (Postfix smtpd_hard_error_limit).
    pub max_errors: usize,
    /// Ask the I/O layer before answering DATA ([`Action::CheckData`]):
    /// for `smtpd_data_restrictions`.
    pub check_data: bool,
}

/// RFC 1652 / RFC 3030 body type from MAIL FROM BODY=.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyType {
    SevenBit,
    EightBitMime,
    BinaryMime,
}

/// RFC 3461 DSN RET=.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DsnRet {
    Full,
    Headers,
}

/// A recipient accepted at RCPT time, with what the router decided (`R`).
#[derive(Debug, Clone)]
pub struct Recipient<R> {
    pub address: String,
    /// RFC 3461 NOTIFY flags (smtp_proto::RCPT_NOTIFY_*), kept for DSNs.
    pub notify: u64,
    /// RFC 3461 ORCPT, kept for DSNs.
    pub orcpt: Option<String>,
    pub route: R,
}

/// One mail transaction's envelope.
#[derive(Debug, Clone)]
pub struct Envelope<R> {
    /// Reverse-path; empty for the null sender `<>`.
    pub mail_from: String,
    pub body: BodyType,
    pub smtputf8: bool,
    pub ret: Option<DsnRet>,
    pub envid: Option<String>,
    pub recipients: Vec<Recipient<R>>,
}

/// What the I/O layer must do next.
#[derive(Debug)]
pub enum Action<R> {
    /// Flush the output, then read more input and [`Session::feed`] it.
    NeedInput,
    /// Flush the output (it ends with "220 Ready to start TLS"), perform the
    /// TLS handshake, then call [`Session::tls_started`].
    StartTls,
    /// Verify these credentials, then call [`Session::auth_done`].
    CheckAuth(Credentials),
    /// Check this sender (MAIL FROM; empty for `<>`), then call
    /// [`Session::sender_done`]. Only with `check_sender`.
    CheckSender(String),
    /// Check this HELO/EHLO name, then call [`Session::helo_done`]. Only
    /// with `check_helo`.
    CheckHelo(String),
    /// Route this recipient, then call [`Session::rcpt_done`].
    CheckRecipient(String),
    /// The client sent DATA: check it, then call [`Session::data_checked`].
    /// Only with `check_data`.
    CheckData,
    /// Deliver durably, then call [`Session::data_done`] with the final reply.
    Deliver(Envelope<R>, Vec<u8>),
    /// Flush the output and close the connection.
    Close,
}

enum Mode {
    Command,
    Data(DataReader),
    Bdat {
        remaining: usize,
        last: bool,
    },
    Sasl(Box<SaslExchange>),
    /// Waiting for the I/O layer to answer an action.
    Waiting,
    Closed,
}

pub struct Session<R> {
    cfg: SessionConfig,
    mode: Mode,
    input: Vec<u8>,
    output: Vec<u8>,
    /// Discarding an over-long line until its LF.
    skipping_line: bool,
    helo: Option<String>,
    esmtp: bool,
    user: Option<String>,
    txn: Option<Envelope<R>>,
    /// BDAT chunks collected so far (RFC 3030).
    chunks: Vec<u8>,
    /// The message outgrew message_size_limit; keep reading, then reject.
    too_big: bool,
    /// A BDAT sequence failed; later chunks are read and discarded until LAST.
    bdat_failed: Option<Reply>,
    errors: usize,
    /// NOTIFY and ORCPT of the RCPT being checked, with its address.
    pending_rcpt: Option<(String, u64, Option<String>)>,
    /// The client sent a command before the previous reply without having
    /// been offered PIPELINING (Postfix reject_unauth_pipelining).
    ill_pipelining: bool,
    /// The HELO/EHLO reply waiting for [`Session::helo_done`].
    pending_helo: Option<Reply>,
    /// Every command but QUIT, NOOP and RSET gets this reply (a milter
    /// refused the connection).
    denied: Option<Reply>,
}

fn r(code: u16, enhanced: &'static str, text: impl Into<String>) -> Reply {
    Reply::new(code, enhanced, text)
}

impl<R> Session<R> {
    /// A new session; the greeting is already in the output buffer.
    pub fn new(cfg: SessionConfig) -> Self {
        let banner = format!("{} ESMTP pigeonpost", cfg.hostname);
        Self::with_banner(cfg, banner)
    }

    /// A new session greeting with `banner` (Postfix `smtpd_banner`; RFC
    /// 5321 §4.3.1 wants it to start with the host name).
    pub fn with_banner(cfg: SessionConfig, banner: String) -> Self {
        let mut s = Session {
            mode: Mode::Command,
            input: Vec::new(),
            output: Vec::new(),
            skipping_line: false,
            helo: None,
            esmtp: false,
            user: None,
            txn: None,
            chunks: Vec::new(),
            too_big: false,
            bdat_failed: None,
            errors: 0,
            pending_rcpt: None,
            ill_pipelining: false,
            pending_helo: None,
            denied: None,
            cfg,
        };
        // RFC 5321 §4.2: the greeting has no enhanced code (RFC 2034 §3).
        s.push(Reply::new(220, "", banner));
        s
    }

    /// Appends received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
    }

    /// Takes the replies to send.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    pub fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// The authenticated user, if any.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    pub fn helo(&self) -> Option<&str> {
        self.helo.as_deref()
    }

    pub fn is_esmtp(&self) -> bool {
        self.esmtp
    }

    pub fn is_tls(&self) -> bool {
        self.cfg.login.tls_active
    }

    /// MAIL FROM of the open transaction (empty for `<>`).
    pub fn sender(&self) -> Option<&str> {
        self.txn.as_ref().map(|t| t.mail_from.as_str())
    }

    /// Recipients accepted so far in the open transaction.
    pub fn recipient_count(&self) -> usize {
        self.txn.as_ref().map_or(0, |t| t.recipients.len())
    }

    /// Has the client sent commands ahead of our replies without EHLO's
    /// PIPELINING (RFC 2920 §3.1)? Spam software often does.
    pub fn improper_pipelining(&self) -> bool {
        self.ill_pipelining
    }

    /// Bytes buffered but not yet processed (bounded by the line limits).
    pub fn buffered(&self) -> usize {
        self.input.len()
    }

    /// The server is closing (shutdown or timeout): say so.
    /// Message data (DATA or a BDAT chunk) is being read: the driver holds
    /// the client to `smtpd_min_data_rate`.
    pub fn receiving_data(&self) -> bool {
        matches!(self.mode, Mode::Data(_) | Mode::Bdat { .. })
    }

    /// STARTTLS refused after all (a rate limit): `reply` replaces the
    /// "220 Ready to start TLS" not yet sent, and the session ends.
    pub fn start_tls_refused(&mut self, reply: Reply) {
        let ready = r(220, "2.0.0", "Ready to start TLS").to_bytes();
        if self.output.ends_with(&ready) {
            self.output.truncate(self.output.len() - ready.len());
        }
        self.shutdown(reply);
    }

    pub fn shutdown(&mut self, reply: Reply) {
        self.push(reply);
        self.mode = Mode::Closed;
    }

    fn push(&mut self, reply: Reply) {
        self.output.extend_from_slice(&reply.to_bytes());
    }

    /// Sends an error reply and counts it; too many closes the session.
    fn error(&mut self, reply: Reply) {
        self.push(reply);
        self.errors += 1;
        if self.errors >= self.cfg.max_errors {
            self.push(r(
                421,
                "4.7.0",
                format!("{} Error: too many errors", self.cfg.hostname),
            ));
            self.mode = Mode::Closed;
        }
    }

    fn reset_transaction(&mut self) {
        self.txn = None;
        self.chunks.clear();
        self.too_big = false;
        self.bdat_failed = None;
    }

    fn auth_allowed(&self) -> bool {
        if self.cfg.login.mechanisms.is_empty() {
            return false;
        }
        if self.cfg.submission {
            // Submission: TLS first, always, even from this host.
            return self.cfg.login.tls_active;
        }
        self.cfg.login.plaintext_allowed()
    }

    fn size_limit_exceeded(&self, size: u64) -> bool {
        self.cfg.max_message_size > 0 && size > self.cfg.max_message_size
    }

    /// The answer to a [`Action::CheckSender`]: the transaction starts, or
    /// the sender is refused and there is none.
    pub fn sender_done(&mut self, result: Result<(), Reply>) {
        self.mode = Mode::Command;
        match result {
            Ok(()) => self.push(r(250, "2.1.0", "Ok")),
            Err(reply) => {
                self.txn = None;
                self.error(reply);
            }
        }
    }

    /// The answer to a [`Action::CheckData`]: 354 and the message, or the
    /// refusal (the transaction stays, as after any failed DATA).
    pub fn data_checked(&mut self, result: Result<(), Reply>) {
        match result {
            Ok(()) => {
                self.push(r(354, "", "End data with <CR><LF>.<CR><LF>"));
                self.mode = Mode::Data(DataReader::new());
            }
            Err(reply) => {
                self.mode = Mode::Command;
                self.error(reply);
            }
        }
    }

    /// The answer to a [`Action::CheckHelo`].
    pub fn helo_done(&mut self, result: Result<(), Reply>) {
        self.mode = Mode::Command;
        let pending = self.pending_helo.take();
        match result {
            Ok(()) => {
                if let Some(reply) = pending {
                    self.push(reply);
                }
            }
            Err(reply) => {
                self.helo = None;
                self.esmtp = false;
                self.error(reply);
            }
        }
    }

    /// Refuse every later command but QUIT, NOOP and RSET with `reply`
    /// (Postfix, when a milter rejects the connection).
    pub fn deny(&mut self, reply: Reply) {
        self.denied = Some(reply);
    }

    /// The answer to a [`Action::CheckRecipient`].
    pub fn rcpt_done(&mut self, result: Result<R, Reply>) {
        self.mode = Mode::Command;
        let pending = self.pending_rcpt.take();
        match result {
            Ok(route) => {
                if let (Some(txn), Some((address, notify, orcpt))) = (self.txn.as_mut(), pending) {
                    txn.recipients.push(Recipient {
                        address,
                        notify,
                        orcpt,
                        route,
                    });
                }
                self.push(r(250, "2.1.5", "Ok"));
            }
            Err(reply) => self.error(reply),
        }
    }

    /// AUTH refused before any credential check (a rate limit): `reply`
    /// answers it.
    pub fn auth_refused(&mut self, reply: Reply) {
        self.mode = Mode::Command;
        self.error(reply);
    }

    /// The answer to a [`Action::CheckAuth`].
    pub fn auth_done(&mut self, outcome: AuthOutcome) {
        self.mode = Mode::Command;
        match outcome {
            AuthOutcome::Ok(user) => {
                self.user = Some(user);
                self.push(r(235, "2.7.0", "Authentication successful"));
            }
            AuthOutcome::Fail => self.error(r(535, "5.7.8", "Error: authentication failed")),
            AuthOutcome::TempFail => {
                self.error(r(454, "4.7.0", "Temporary authentication failure"))
            }
            AuthOutcome::Banned => self.error(r(454, "4.7.0", crate::auth::login::BANNED_TEXT)),
            AuthOutcome::TooManySessions(limit) => {
                self.error(r(454, "4.7.0", crate::auth::sessions::limit_text(limit)))
            }
        }
    }

    /// The answer to a [`Action::Deliver`]: the reply to DATA or BDAT LAST.
    pub fn data_done(&mut self, reply: Reply) {
        self.mode = Mode::Command;
        self.reset_transaction();
        if reply.is_error() {
            self.error(reply);
        } else {
            self.push(reply);
        }
    }

    /// The TLS handshake after STARTTLS succeeded: RFC 3207 §4.2, forget
    /// everything learned before it.
    pub fn tls_started(&mut self) {
        self.cfg.login.tls_started();
        self.helo = None;
        self.esmtp = false;
        self.user = None;
        self.reset_transaction();
        self.input.clear();
        self.mode = Mode::Command;
    }

    /// Takes one complete line (with its LF) from the input, enforcing `limit`.
    fn take_line(&mut self, limit: usize) -> Option<Result<Vec<u8>, Reply>> {
        loop {
            let lf = self.input.iter().position(|&b| b == b'\n');
            if self.skipping_line {
                match lf {
                    Some(i) => {
                        self.input.drain(..=i);
                        self.skipping_line = false;
                        return Some(Err(r(500, "5.5.2", "Error: line too long")));
                    }
                    None => {
                        self.input.clear();
                        return None;
                    }
                }
            }
            match lf {
                Some(i) if i < limit => return Some(Ok(self.input.drain(..=i).collect())),
                Some(_) => {
                    self.skipping_line = true;
                    continue;
                }
                None if self.input.len() >= limit => {
                    self.skipping_line = true;
                    continue;
                }
                None => return None,
            }
        }
    }

    /// Processes buffered input until the I/O layer has something to do.
    pub fn next_action(&mut self) -> Action<R> {
        loop {
            match &mut self.mode {
                Mode::Closed => return Action::Close,
                Mode::Waiting => return Action::NeedInput,
                Mode::Data(reader) => {
                    let limit = self.cfg.max_message_size;
                    let (consumed, end) = reader.read(&self.input, limit);
                    self.input.drain(..consumed);
                    match end {
                        DataEnd::More => return Action::NeedInput,
                        DataEnd::Done => {
                            let Mode::Data(reader) =
                                std::mem::replace(&mut self.mode, Mode::Command)
                            else {
                                unreachable!()
                            };
                            let too_big = reader.too_big();
                            let message = reader.into_message();
                            if too_big {
                                self.reset_transaction();
                                self.error(r(552, "5.3.4", "Error: message file too big"));
                                continue;
                            }
                            if let Some(txn) = self.txn.take() {
                                self.mode = Mode::Waiting;
                                return Action::Deliver(txn, message);
                            }
                        }
                    }
                }
                Mode::Bdat { remaining, last } => {
                    let take = (*remaining).min(self.input.len());
                    let last = *last;
                    *remaining -= take;
                    let remaining = *remaining;
                    if !self.too_big && self.bdat_failed.is_none() {
                        let new_len = self.chunks.len() as u64 + take as u64;
                        if self.size_limit_exceeded(new_len) {
                            self.too_big = true;
                            self.chunks.clear();
                        } else {
                            self.chunks.extend_from_slice(&self.input[..take]);
                        }
                    }
                    self.input.drain(..take);
                    if remaining > 0 {
                        return Action::NeedInput;
                    }
                    self.mode = Mode::Command;
                    if let Some(reply) = self.bdat_failed.take() {
                        // The whole BDAT sequence fails; RFC 3030 §3: reset at LAST.
                        if last {
                            self.reset_transaction();
                        } else {
                            self.bdat_failed = Some(reply.clone());
                        }
                        self.error(reply);
                        continue;
                    }
                    if self.too_big {
                        let reply = r(552, "5.3.4", "Error: message file too big");
                        if last {
                            self.reset_transaction();
                        } else {
                            self.bdat_failed = Some(reply.clone());
                        }
                        self.error(reply);
                        continue;
                    }
                    if !last {
                        let n = self.chunks.len();
                        self.push(r(250, "2.0.0", format!("{n} octets received")));
                        continue;
                    }
                    if let Some(txn) = self.txn.take() {
                        let message = std::mem::take(&mut self.chunks);
                        self.mode = Mode::Waiting;
                        return Action::Deliver(txn, message);
                    }
                }
                Mode::Sasl(_) => {
                    let line = match self.take_line(MAX_AUTH_LINE) {
                        None => return Action::NeedInput,
                        Some(Err(reply)) => {
                            self.mode = Mode::Command;
                            self.error(reply);
                            continue;
                        }
                        Some(Ok(line)) => line,
                    };
                    let text = String::from_utf8_lossy(&line)
                        .trim_end_matches(['\r', '\n'])
                        .to_string();
                    let Mode::Sasl(ex) = &mut self.mode else {
                        unreachable!()
                    };
                    let step = ex.step(&text);
                    if let Some(action) = self.sasl_step(step) {
                        return action;
                    }
                }
                Mode::Command => {
                    let line = match self.take_line(MAX_AUTH_LINE) {
                        None => return Action::NeedInput,
                        Some(Err(reply)) => {
                            self.error(reply);
                            continue;
                        }
                        Some(Ok(line)) => line,
                    };
                    if line.len() > MAX_COMMAND_LINE
                        && !line[..5.min(line.len())].eq_ignore_ascii_case(b"AUTH ")
                    {
                        self.error(r(500, "5.5.2", "Error: line too long"));
                        continue;
                    }
                    // More input behind this command before we answered
                    // it: only allowed once EHLO offered PIPELINING.
                    if !self.esmtp && !self.input.is_empty() {
                        self.ill_pipelining = true;
                    }
                    if let Some(action) = self.command(&line) {
                        return action;
                    }
                }
            }
        }
    }

    fn sasl_step(&mut self, step: SaslStep) -> Option<Action<R>> {
        match step {
            SaslStep::Challenge(text) => {
                // The exchange stays in Mode::Sasl for the client's answer.
                self.push(Reply::new(334, "", text));
                None
            }
            SaslStep::Done(creds) => {
                self.mode = Mode::Waiting;
                Some(Action::CheckAuth(creds))
            }
            SaslStep::Failed(e) => {
                self.mode = Mode::Command;
                let reply = match e {
                    SaslError::Cancelled => r(501, "5.7.0", "Authentication cancelled"),
                    SaslError::BadBase64 => r(501, "5.5.2", "Error: invalid base64 data"),
                    _ => r(535, "5.7.8", "Error: authentication failed"),
                };
                self.error(reply);
                None
            }
        }
    }

    fn ehlo_reply(&self) -> Reply {
        let mut lines = vec![self.cfg.hostname.clone(), "PIPELINING".to_string()];
        lines.push(if self.cfg.max_message_size > 0 {
            format!("SIZE {}", self.cfg.max_message_size)
        } else {
            "SIZE".to_string()
        });
        if self.cfg.login.tls_available && !self.cfg.login.tls_active {
            lines.push("STARTTLS".into());
        }
        if self.auth_allowed() {
            let names: Vec<&str> = self.cfg.login.mechanisms.iter().map(|m| m.name()).collect();
            lines.push(format!("AUTH {}", names.join(" ")));
        }
        lines.extend(
            [
                "ENHANCEDSTATUSCODES",
                "8BITMIME",
                "DSN",
                "SMTPUTF8",
                "CHUNKING",
            ]
            .map(String::from),
        );
        Reply::multi(250, lines)
    }

    /// Handles one command line; returns an action when the I/O layer must act.
    fn command(&mut self, line: &[u8]) -> Option<Action<R>> {
        let parsed = Request::parse(&mut line.iter()).map(Request::into_owned);
        let request = match parsed {
            Ok(req) => req,
            Err(e) => {
                let reply = match e {
                    ParseError::UnknownCommand | ParseError::NeedsMoreData { .. } => {
                        r(502, "5.5.2", "Error: command not recognized")
                    }
                    ParseError::InvalidSenderAddress => {
                        r(501, "5.1.7", "Bad sender address syntax")
                    }
                    ParseError::InvalidRecipientAddress => {
                        r(501, "5.1.3", "Bad recipient address syntax")
                    }
                    ParseError::SyntaxError { syntax } => {
                        r(501, "5.5.4", format!("Syntax: {syntax}"))
                    }
                    ParseError::InvalidParameter { param } => {
                        r(501, "5.5.4", format!("Invalid parameter {param}"))
                    }
                    ParseError::UnsupportedParameter { param } => {
                        r(555, "5.5.4", format!("Unsupported option: {param}"))
                    }
                    _ => r(500, "5.5.2", "Error: bad syntax"),
                };
                self.error(reply);
                return None;
            }
        };
        // Submission without TLS: only the commands that lead to TLS (Postfix
        // smtpd_tls_security_level = encrypt).
        if self.cfg.require_tls
            && !self.cfg.login.tls_active
            && !matches!(
                request,
                Request::Ehlo { .. }
                    | Request::Helo { .. }
                    | Request::StartTls
                    | Request::Noop { .. }
                    | Request::Rset
                    | Request::Quit
            )
        {
            self.error(r(530, "5.7.0", "Must issue a STARTTLS command first"));
            return None;
        }
        let esmtp = matches!(request, Request::Ehlo { .. });
        if let Some(reply) = &self.denied {
            if !matches!(
                request,
                Request::Quit | Request::Noop { .. } | Request::Rset
            ) {
                let reply = reply.clone();
                self.error(reply);
                return None;
            }
        }
        match request {
            Request::Ehlo { host } | Request::Helo { host } => {
                self.reset_transaction();
                self.helo = Some(host.clone());
                self.esmtp = esmtp;
                let reply = if esmtp {
                    self.ehlo_reply()
                } else {
                    Reply::new(250, "", self.cfg.hostname.clone())
                };
                if self.cfg.check_helo {
                    self.pending_helo = Some(reply);
                    self.mode = Mode::Waiting;
                    return Some(Action::CheckHelo(host));
                }
                self.push(reply);
            }
            Request::Lhlo { .. } => self.error(r(502, "5.5.1", "Error: command not recognized")),
            Request::StartTls => {
                if self.cfg.login.tls_active {
                    self.error(r(554, "5.5.1", "Error: TLS already active"));
                } else if !self.cfg.login.tls_available {
                    self.error(r(454, "4.7.0", "TLS not available"));
                } else {
                    self.push(r(220, "2.0.0", "Ready to start TLS"));
                    // RFC 3207 §4.2 / CVE-2011-0411: nothing pipelined after
                    // STARTTLS may be carried into the TLS session.
                    self.input.clear();
                    self.mode = Mode::Waiting;
                    return Some(Action::StartTls);
                }
            }
            Request::Auth {
                mechanism,
                initial_response,
            } => return self.auth(mechanism, initial_response),
            Request::Mail { from } => return self.mail(from),
            Request::Rcpt { to } => return self.rcpt(to),
            Request::Data => {
                if let Some(reply) = self.data_precheck() {
                    self.error(reply);
                } else if self.cfg.check_data {
                    self.mode = Mode::Waiting;
                    return Some(Action::CheckData);
                } else {
                    self.push(r(354, "", "End data with <CR><LF>.<CR><LF>"));
                    self.mode = Mode::Data(DataReader::new());
                }
            }
            Request::Bdat {
                chunk_size,
                is_last,
            } => {
                if let Some(reply) = self.data_precheck() {
                    // Still consume the chunk so the stream stays in sync.
                    self.bdat_failed = Some(reply);
                }
                self.mode = Mode::Bdat {
                    remaining: chunk_size,
                    last: is_last,
                };
            }
            Request::Rset => {
                self.reset_transaction();
                self.push(r(250, "2.0.0", "Ok"));
            }
            Request::Noop { .. } => self.push(r(250, "2.0.0", "Ok")),
            // RFC 5321 §3.5.3: 252 when VRFY is disabled, as Postfix's disable_vrfy_command.
            Request::Vrfy { .. } => self.push(r(252, "2.0.0", "Send some mail, I'll try my best")),
            Request::Expn { .. } => self.error(r(502, "5.5.1", "Error: EXPN is disabled")),
            Request::Help { .. } => self.push(r(
                214,
                "2.0.0",
                "See RFC 5321: https://www.rfc-editor.org/rfc/rfc5321",
            )),
            Request::Etrn { .. } | Request::Atrn { .. } | Request::Burl { .. } => {
                self.error(r(502, "5.5.1", "Error: command not implemented"))
            }
            Request::Quit => {
                self.push(r(221, "2.0.0", "Bye"));
                self.mode = Mode::Closed;
            }
        }
        None
    }

    fn data_precheck(&self) -> Option<Reply> {
        match &self.txn {
            None => Some(r(503, "5.5.1", "Error: need MAIL command")),
            Some(t) if t.recipients.is_empty() => {
                Some(r(554, "5.5.1", "Error: no valid recipients"))
            }
            Some(_) => None,
        }
    }

    fn auth(&mut self, mechanism: u64, initial: String) -> Option<Action<R>> {
        if self.user.is_some() {
            self.error(r(503, "5.5.1", "Error: already authenticated"));
            return None;
        }
        if self.txn.is_some() {
            self.error(r(503, "5.5.1", "Error: MAIL transaction in progress"));
            return None;
        }
        if !self.auth_allowed() {
            let reply = if self.cfg.login.mechanisms.is_empty() {
                r(503, "5.5.1", "Error: authentication not enabled")
            } else {
                r(
                    538,
                    "5.7.11",
                    "Encryption required for requested authentication mechanism",
                )
            };
            self.error(reply);
            return None;
        }
        let mech = match mechanism {
            smtp_proto::AUTH_PLAIN => Mechanism::Plain,
            smtp_proto::AUTH_LOGIN => Mechanism::Login,
            smtp_proto::AUTH_CRAM_MD5 => Mechanism::CramMd5,
            _ => {
                self.error(r(504, "5.5.4", "Unrecognized authentication type"));
                return None;
            }
        };
        if !self.cfg.login.mechanisms.contains(&mech) {
            self.error(r(504, "5.5.4", "Unrecognized authentication type"));
            return None;
        }
        let initial = (!initial.is_empty()).then_some(initial.as_str());
        let (ex, step) = SaslExchange::start(mech, initial, &self.cfg.hostname);
        self.mode = Mode::Sasl(Box::new(ex));
        self.sasl_step(step)
    }

    fn mail(&mut self, from: smtp_proto::MailFrom<String>) -> Option<Action<R>> {
        let refuse = |s: &mut Self, reply| {
            s.error(reply);
            None
        };
        if self.helo.is_none() {
            return refuse(self, r(503, "5.5.1", "Error: send HELO/EHLO first"));
        }
        if self.txn.is_some() {
            return refuse(self, r(503, "5.5.1", "Error: nested MAIL command"));
        }
        if self.cfg.submission && self.user.is_none() {
            return refuse(self, r(530, "5.7.0", "Authentication required"));
        }
        if self.size_limit_exceeded(from.size as u64) {
            return refuse(self, r(552, "5.3.4", "Message size exceeds fixed limit"));
        }
        let smtputf8 = from.flags & smtp_proto::MAIL_SMTPUTF8 != 0;
        // RFC 6531 §3.4: internationalized addresses need SMTPUTF8.
        if !smtputf8 && !from.address.is_ascii() {
            return refuse(
                self,
                r(
                    553,
                    "5.6.7",
                    "Must declare SMTPUTF8 to send unicode address",
                ),
            );
        }
        let body = if from.flags & smtp_proto::MAIL_BODY_BINARYMIME != 0 {
            BodyType::BinaryMime
        } else if from.flags & smtp_proto::MAIL_BODY_8BITMIME != 0 {
            BodyType::EightBitMime
        } else {
            BodyType::SevenBit
        };
        let ret = if from.flags & smtp_proto::MAIL_RET_FULL != 0 {
            Some(DsnRet::Full)
        } else if from.flags & smtp_proto::MAIL_RET_HDRS != 0 {
            Some(DsnRet::Headers)
        } else {
            None
        };
        let sender = from.address.clone();
        self.txn = Some(Envelope {
            mail_from: from.address,
            body,
            smtputf8,
            ret,
            envid: from.env_id,
            recipients: Vec::new(),
        });
        if self.cfg.check_sender {
            self.mode = Mode::Waiting;
            return Some(Action::CheckSender(sender));
        }
        self.push(r(250, "2.1.0", "Ok"));
        None
    }

    fn rcpt(&mut self, to: smtp_proto::RcptTo<String>) -> Option<Action<R>> {
        let Some(txn) = &self.txn else {
            self.error(r(503, "5.5.1", "Error: need MAIL command"));
            return None;
        };
        if txn.recipients.len() >= self.cfg.max_recipients {
            // RFC 5321 §4.5.3.1.8: 452 so the client sends the rest later.
            self.push(r(452, "4.5.3", "Error: too many recipients"));
            return None;
        }
        if !txn.smtputf8 && !to.address.is_ascii() {
            self.error(r(
                553,
                "5.6.7",
                "Must declare SMTPUTF8 to send unicode address",
            ));
            return None;
        }
        if to.address.is_empty() {
            self.error(r(501, "5.1.3", "Bad recipient address syntax"));
            return None;
        }
        self.pending_rcpt = Some((to.address.clone(), to.flags, to.orcpt));
        self.mode = Mode::Waiting;
        Some(Action::CheckRecipient(to.address))
    }
}

#[cfg(test)]
mod tests;
