//! The outbound SMTP client as a sans-IO state machine: replies in
//! ([`Client::feed`]), commands out ([`Client::take_output`]), and
//! [`Step`]s telling the I/O layer when to read, upgrade to TLS, or stream
//! the message. Reply parsing is smtp-proto's (`ResponseReceiver`,
//! `EhloResponse`); what to send when is RFC 5321 §3-4, RFC 2920
//! (PIPELINING), RFC 3207 (STARTTLS), RFC 4954 (AUTH), RFC 1870 (SIZE),
//! RFC 6152 (8BITMIME), RFC 6531 (SMTPUTF8), RFC 3461 (DSN).

use std::collections::VecDeque;

use base64::Engine;
use smtp_proto::{
    EhloResponse, Response, AUTH_LOGIN, AUTH_PLAIN, EXT_8BIT_MIME, EXT_DSN, EXT_PIPELINING,
    EXT_SIZE, EXT_SMTP_UTF8, EXT_START_TLS, RCPT_NOTIFY_DELAY, RCPT_NOTIFY_FAILURE,
    RCPT_NOTIFY_NEVER, RCPT_NOTIFY_SUCCESS,
};

pub use crate::config::TlsLevel as TlsPolicy;

/// `encrypt` and `verify` refuse to send in plaintext.
fn tls_required(p: TlsPolicy) -> bool {
    matches!(p, TlsPolicy::Encrypt | TlsPolicy::Verify)
}

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// EHLO name (`myhostname`), also used for loop detection.
    pub helo: String,
    pub tls: TlsPolicy,
    /// False on the plaintext retry after a failed opportunistic handshake.
    pub try_tls: bool,
    /// `smtp_sasl_password_maps` credentials for this next hop.
    pub credentials: Option<(String, String)>,
}

/// One recipient of the transaction.
#[derive(Debug, Clone)]
pub struct Rcpt {
    pub address: String,
    pub notify: u64,
    pub orcpt: Option<String>,
}

/// What is being sent.
#[derive(Debug, Clone)]
pub struct Transaction {
    pub sender: String,
    pub rcpts: Vec<Rcpt>,
    pub size: u64,
    pub eight_bit: bool,
    pub smtputf8: bool,
    pub ret_full: Option<bool>,
    pub envid: Option<String>,
}

/// The outcome for one recipient of this attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptStatus {
    /// Not decided (the session ended early).
    Unknown,
    Delivered(String),
    Deferred(String),
    Failed(String),
}

/// A failure before any recipient was tried: the next MX host may do better
/// (unless `permanent`, e.g. a mail loop).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostError {
    pub text: String,
    pub permanent: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Write the pending output, then read and [`Client::feed`].
    NeedInput,
    /// Write the pending output (ending with STARTTLS), do the TLS handshake,
    /// then call [`Client::tls_started`] (or give up).
    StartTls,
    /// Write the pending output, then the message, dot-stuffed, and
    /// ".\r\n"; then read the reply.
    SendMessage,
    /// Write the pending output and close; see [`Client::outcome`].
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    AuthPlain,
    AuthLoginUser,
    AuthLoginPass,
    AuthLoginDone,
    Mail,
    Rcpt(usize),
    Data,
    /// The empty message sent when every RCPT failed after a pipelined DATA.
    EmptyDataEnd,
    DataEnd,
    Quit,
}

impl Expect {
    /// Postfix's "(in reply to ... command)" wording.
    fn context(self) -> &'static str {
        match self {
            Expect::Greeting => "initial server greeting",
            Expect::Ehlo => "EHLO command",
            Expect::Helo => "HELO command",
            Expect::StartTls => "STARTTLS command",
            Expect::AuthPlain | Expect::AuthLoginUser | Expect::AuthLoginPass => "AUTH command",
            Expect::AuthLoginDone => "AUTH command",
            Expect::Mail => "MAIL FROM command",
            Expect::Rcpt(_) => "RCPT TO command",
            Expect::Data => "DATA command",
            Expect::EmptyDataEnd | Expect::DataEnd => "end of DATA command",
            Expect::Quit => "QUIT command",
        }
    }
}

/// Largest reply we buffer (smtp-proto's own limit per reply is 4 KiB of text).
const MAX_REPLY: usize = 64 * 1024;

pub struct Client {
    cfg: ClientConfig,
    txn: Transaction,
    input: Vec<u8>,
    output: Vec<u8>,
    expect: VecDeque<Expect>,
    ehlo: Option<EhloResponse<String>>,
    tls_active: bool,
    /// Greeting or EHLO host name of the peer.
    peer_name: String,
    statuses: Vec<RcptStatus>,
    mail_failed: Option<(bool, String)>,
    accepted: usize,
    host_error: Option<HostError>,
    step: Step,
    /// Commands not yet sent when the peer does not pipeline.
    queued: VecDeque<(Expect, Vec<u8>)>,
}

fn reply_text(r: &Response<String>) -> String {
    let msg = r
        .message
        .trim()
        .replace("\r\n", " ")
        .replace(['\n', '\r'], " ");
    if r.esc[0] != 0 {
        format!("{} {}.{}.{} {}", r.code, r.esc[0], r.esc[1], r.esc[2], msg)
    } else {
        format!("{} {}", r.code, msg)
    }
}

/// RFC 3461 §4: xtext for ENVID and ORCPT.
fn xtext(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// Splits one complete reply (all its lines) off the front of `buf`.
fn take_reply(buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut start = 0;
    while let Some(nl) = buf[start..].iter().position(|&b| b == b'\n') {
        let line = &buf[start..start + nl + 1];
        let last = line.len() < 4 || line[3] != b'-';
        start += nl + 1;
        if last {
            return Some(buf.drain(..start).collect());
        }
    }
    None
}

impl Client {
    pub fn new(cfg: ClientConfig, txn: Transaction) -> Client {
        let n = txn.rcpts.len();
        Client {
            cfg,
            txn,
            input: Vec::new(),
            output: Vec::new(),
            expect: VecDeque::from([Expect::Greeting]),
            ehlo: None,
            tls_active: false,
            peer_name: String::new(),
            statuses: vec![RcptStatus::Unknown; n],
            mail_failed: None,
            accepted: 0,
            host_error: None,
            step: Step::NeedInput,
            queued: VecDeque::new(),
        }
    }

    pub fn next_step(&self) -> Step {
        self.step.clone()
    }

    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    pub fn tls_active(&self) -> bool {
        self.tls_active
    }

    /// An 8-bit message for a peer without 8BITMIME: convert it to 7 bit
    /// (RFC 6152 §3) before sending.
    pub fn downgrade_needed(&self) -> bool {
        self.txn.eight_bit && !self.has(EXT_8BIT_MIME)
    }

    /// The name the peer gave in its greeting or EHLO reply.
    pub fn peer_name(&self) -> &str {
        &self.peer_name
    }

    /// Where the session stands, for "lost connection ... while ..." errors.
    pub fn context(&self) -> &'static str {
        match self.expect.front() {
            Some(Expect::Greeting) => "receiving the initial server greeting",
            Some(Expect::DataEnd) | None if self.step == Step::SendMessage => {
                "sending message body"
            }
            Some(Expect::DataEnd) => "sending end of data -- message may be sent more than once",
            Some(Expect::Quit) | None => "sending QUIT",
            Some(_) => "performing the SMTP transaction",
        }
    }

    /// The peer's bytes; replies are handled as they complete.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.step == Step::Done {
            return;
        }
        self.input.extend_from_slice(bytes);
        while self.step == Step::NeedInput {
            let Some(raw) = take_reply(&mut self.input) else {
                if self.input.len() > MAX_REPLY {
                    self.host_fail("reply too long".into(), false);
                }
                return;
            };
            let Some(expect) = self.expect.pop_front() else {
                // Unsolicited bytes (e.g. after QUIT): ignore.
                continue;
            };
            self.handle(expect, &raw);
        }
    }

    /// The TLS handshake succeeded: start over with EHLO (RFC 3207 §4.2).
    pub fn tls_started(&mut self) {
        self.tls_active = true;
        self.ehlo = None;
        self.send(Expect::Ehlo, format!("EHLO {}\r\n", self.cfg.helo));
        self.step = Step::NeedInput;
    }

    /// The message and its ".\r\n" are written: wait for the final reply.
    pub fn message_sent(&mut self) {
        self.step = Step::NeedInput;
    }

    /// The connection broke (or timed out): every recipient not yet
    /// decided is deferred with `why`.
    pub fn abort(&mut self, why: &str) {
        if self.accepted == 0 && self.mail_failed.is_none() && self.host_error.is_none() {
            let started = self.statuses.iter().any(|s| *s != RcptStatus::Unknown);
            if !started {
                self.host_error = Some(HostError {
                    text: why.to_string(),
                    permanent: false,
                });
            }
        }
        for s in &mut self.statuses {
            if matches!(s, RcptStatus::Unknown) {
                *s = RcptStatus::Deferred(why.to_string());
            }
        }
        self.step = Step::Done;
    }

    /// Per-recipient results, or the host-level failure when the session
    /// never reached the recipients.
    pub fn outcome(&self) -> Result<Vec<RcptStatus>, HostError> {
        if let Some(e) = &self.host_error {
            return Err(e.clone());
        }
        Ok(self.statuses.clone())
    }

    fn send(&mut self, expect: Expect, line: String) {
        self.output.extend_from_slice(line.as_bytes());
        self.expect.push_back(expect);
    }

    fn quit(&mut self) {
        self.queued.clear();
        self.send(Expect::Quit, "QUIT\r\n".into());
    }

    fn host_fail(&mut self, text: String, permanent: bool) {
        self.host_error = Some(HostError { text, permanent });
        self.expect.clear();
        self.quit();
    }

    fn has(&self, ext: u32) -> bool {
        self.ehlo
            .as_ref()
            .is_some_and(|e| e.capabilities & ext != 0)
    }

    fn is_loop(&self, name: &str) -> bool {
        name.eq_ignore_ascii_case(&self.cfg.helo)
    }

    fn handle(&mut self, expect: Expect, raw: &[u8]) {
        let reply = match smtp_proto::response::parser::ResponseReceiver::default()
            .parse(&mut raw.iter())
        {
            Ok(r) => r,
            Err(_) => {
                let shown = String::from_utf8_lossy(raw).trim().to_string();
                if expect == Expect::Quit {
                    self.step = Step::Done;
                    return;
                }
                return self.host_or_all(format!("malformed reply: {shown:.200}"), false, expect);
            }
        };
        let text = format!("{} (in reply to {})", reply_text(&reply), expect.context());
        let (ok, temp) = (
            (200..400).contains(&reply.code),
            (400..500).contains(&reply.code),
        );
        match expect {
            Expect::Greeting => {
                if reply.code != 220 {
                    return self.host_fail(text, false);
                }
                self.peer_name = reply
                    .message
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_string();
                if self.is_loop(&self.peer_name.clone()) {
                    return self.loops();
                }
                self.send(Expect::Ehlo, format!("EHLO {}\r\n", self.cfg.helo));
            }
            Expect::Ehlo => {
                if reply.code == 250 {
                    match EhloResponse::parse(&mut raw.iter()) {
                        Ok(e) => {
                            if !e.hostname.is_empty() {
                                self.peer_name = e.hostname.clone();
                            }
                            self.ehlo = Some(e);
                        }
                        Err(_) => self.ehlo = Some(EhloResponse::default()),
                    }
                    if self.is_loop(&self.peer_name.clone()) {
                        return self.loops();
                    }
                    self.after_hello();
                } else if reply.code >= 500 && !self.tls_active {
                    // An old server: fall back to HELO (RFC 5321 §4.1.1.1).
                    self.send(Expect::Helo, format!("HELO {}\r\n", self.cfg.helo));
                } else {
                    self.host_fail(text, false);
                }
            }
            Expect::Helo => {
                if reply.code != 250 {
                    return self.host_fail(text, false);
                }
                self.ehlo = Some(EhloResponse::default());
                self.after_hello();
            }
            Expect::StartTls => {
                if reply.code == 220 {
                    self.step = Step::StartTls;
                } else if tls_required(self.cfg.tls) {
                    self.host_fail(text, false);
                } else {
                    self.after_tls();
                }
            }
            Expect::AuthPlain | Expect::AuthLoginDone => {
                if reply.code == 235 {
                    self.start_transaction();
                } else {
                    self.host_fail(format!("SASL authentication failed; {text}"), false);
                }
            }
            Expect::AuthLoginUser | Expect::AuthLoginPass => {
                if reply.code != 334 {
                    return self.host_fail(format!("SASL authentication failed; {text}"), false);
                }
                let (user, pass) = self.cfg.credentials.clone().unwrap_or_default();
                let (value, next) = if expect == Expect::AuthLoginUser {
                    (user, Expect::AuthLoginPass)
                } else {
                    (pass, Expect::AuthLoginDone)
                };
                let b64 = base64::engine::general_purpose::STANDARD.encode(value);
                self.send(next, format!("{b64}\r\n"));
            }
            Expect::Mail => {
                if !ok {
                    self.mail_failed = Some((temp, text.clone()));
                    let st = if temp {
                        RcptStatus::Deferred(text)
                    } else {
                        RcptStatus::Failed(text)
                    };
                    self.statuses.iter_mut().for_each(|s| *s = st.clone());
                    if !self.has(EXT_PIPELINING) {
                        self.quit();
                    }
                }
                self.send_queued();
            }
            Expect::Rcpt(i) => {
                if self.mail_failed.is_none() {
                    let status = if ok {
                        self.accepted += 1;
                        RcptStatus::Unknown
                    } else if temp {
                        RcptStatus::Deferred(text)
                    } else {
                        RcptStatus::Failed(text)
                    };
                    self.statuses[i] = status;
                }
                if !self.has(EXT_PIPELINING)
                    && self.queued.front().is_some_and(|(e, _)| *e == Expect::Data)
                    && self.accepted == 0
                {
                    // Nothing accepted: no DATA (RFC 5321 §3.3).
                    self.quit();
                }
                self.send_queued();
            }
            Expect::Data => {
                if reply.code == 354 {
                    if self.accepted > 0 && self.mail_failed.is_none() {
                        self.expect.push_front(Expect::DataEnd);
                        self.step = Step::SendMessage;
                        return;
                    }
                    // RFC 2920 §3.1: DATA accepted though no RCPT was: send
                    // an empty message, then give up on this transaction.
                    self.output.extend_from_slice(b".\r\n");
                    self.expect.push_front(Expect::EmptyDataEnd);
                    return;
                }
                self.decide_accepted(temp, text);
                self.quit();
            }
            Expect::EmptyDataEnd => self.quit(),
            Expect::DataEnd => {
                if ok {
                    for s in &mut self.statuses {
                        if *s == RcptStatus::Unknown {
                            *s = RcptStatus::Delivered(text.clone());
                        }
                    }
                } else {
                    self.decide_accepted(temp, text);
                }
                self.quit();
            }
            Expect::Quit => {
                self.step = Step::Done;
            }
        }
    }

    /// A malformed reply: before the transaction it's the host's fault;
    /// during it, every undecided recipient is deferred.
    fn host_or_all(&mut self, text: String, permanent: bool, expect: Expect) {
        match expect {
            Expect::Greeting
            | Expect::Ehlo
            | Expect::Helo
            | Expect::StartTls
            | Expect::AuthPlain
            | Expect::AuthLoginUser
            | Expect::AuthLoginPass
            | Expect::AuthLoginDone => self.host_fail(text, permanent),
            _ => {
                self.abort(&text);
            }
        }
    }

    fn decide_accepted(&mut self, temp: bool, text: String) {
        for s in &mut self.statuses {
            if *s == RcptStatus::Unknown {
                *s = if temp {
                    RcptStatus::Deferred(text.clone())
                } else {
                    RcptStatus::Failed(text.clone())
                };
            }
        }
    }

    fn loops(&mut self) {
        let name = self.cfg.helo.clone();
        self.host_fail(format!("mail for {name} loops back to myself"), true);
    }

    fn after_hello(&mut self) {
        if self.tls_active || self.cfg.tls == TlsPolicy::None {
            return self.after_tls();
        }
        if self.has(EXT_START_TLS) && self.cfg.try_tls {
            self.send(Expect::StartTls, "STARTTLS\r\n".into());
        } else if tls_required(self.cfg.tls) {
            self.host_fail(
                if self.has(EXT_START_TLS) {
                    "TLS is required, but the TLS handshake failed".into()
                } else {
                    "TLS is required, but was not offered by host".into()
                },
                false,
            );
        } else {
            self.after_tls();
        }
    }

    fn after_tls(&mut self) {
        let auth = self.ehlo.as_ref().map(|e| e.auth_mechanisms).unwrap_or(0);
        match &self.cfg.credentials {
            Some((user, pass)) if auth & AUTH_PLAIN != 0 => {
                let blob = format!("\0{user}\0{pass}");
                let b64 = base64::engine::general_purpose::STANDARD.encode(blob);
                self.send(Expect::AuthPlain, format!("AUTH PLAIN {b64}\r\n"));
            }
            Some(_) if auth & AUTH_LOGIN != 0 => {
                self.send(Expect::AuthLoginUser, "AUTH LOGIN\r\n".into());
            }
            _ => self.start_transaction(),
        }
    }

    fn start_transaction(&mut self) {
        let txn = &self.txn;
        let peer_size = self.ehlo.as_ref().map(|e| e.size).unwrap_or(0) as u64;
        if self.has(EXT_SIZE) && peer_size > 0 && txn.size > peer_size {
            let text = format!(
                "message size {} exceeds size limit {peer_size} of server {}",
                txn.size, self.peer_name
            );
            self.statuses
                .iter_mut()
                .for_each(|s| *s = RcptStatus::Failed(format!("552 5.3.4 {text}")));
            return self.quit();
        }
        if txn.smtputf8 && !self.has(EXT_SMTP_UTF8) {
            let text = "555 5.6.7 SMTPUTF8 is required, but was not offered by host".to_string();
            self.statuses
                .iter_mut()
                .for_each(|s| *s = RcptStatus::Failed(text.clone()));
            return self.quit();
        }
        let mut mail = format!("MAIL FROM:<{}>", txn.sender);
        if self.has(EXT_SIZE) {
            mail.push_str(&format!(" SIZE={}", txn.size));
        }
        if txn.eight_bit && self.has(EXT_8BIT_MIME) {
            mail.push_str(" BODY=8BITMIME");
        }
        if txn.smtputf8 {
            mail.push_str(" SMTPUTF8");
        }
        let dsn = self.has(EXT_DSN);
        if dsn {
            match txn.ret_full {
                Some(true) => mail.push_str(" RET=FULL"),
                Some(false) => mail.push_str(" RET=HDRS"),
                None => {}
            }
            if let Some(id) = &txn.envid {
                mail.push_str(&format!(" ENVID={}", xtext(id)));
            }
        }
        mail.push_str("\r\n");
        let mut cmds = vec![(Expect::Mail, mail)];
        for (i, r) in txn.rcpts.iter().enumerate() {
            let mut line = format!("RCPT TO:<{}>", r.address);
            if dsn {
                if r.notify != 0 {
                    line.push_str(&format!(" NOTIFY={}", notify_words(r.notify)));
                }
                if let Some(o) = &r.orcpt {
                    let o = o.strip_prefix("rfc822;").unwrap_or(o);
                    line.push_str(&format!(" ORCPT=rfc822;{}", xtext(o)));
                }
            }
            line.push_str("\r\n");
            cmds.push((Expect::Rcpt(i), line));
        }
        cmds.push((Expect::Data, "DATA\r\n".into()));
        if self.has(EXT_PIPELINING) {
            // RFC 2920: the whole envelope in one write.
            for (e, line) in cmds {
                self.send(e, line);
            }
        } else {
            self.queued = cmds.into_iter().map(|(e, l)| (e, l.into_bytes())).collect();
            self.send_queued();
        }
    }

    /// Without PIPELINING: the next command once the previous is answered.
    fn send_queued(&mut self) {
        if !self.expect.is_empty() {
            return;
        }
        if let Some((e, line)) = self.queued.pop_front() {
            self.output.extend_from_slice(&line);
            self.expect.push_back(e);
        }
    }
}

fn notify_words(n: u64) -> String {
    if n & RCPT_NOTIFY_NEVER != 0 {
        return "NEVER".into();
    }
    let mut w = Vec::new();
    if n & RCPT_NOTIFY_SUCCESS != 0 {
        w.push("SUCCESS");
    }
    if n & RCPT_NOTIFY_FAILURE != 0 {
        w.push("FAILURE");
    }
    if n & RCPT_NOTIFY_DELAY != 0 {
        w.push("DELAY");
    }
    w.join(",")
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
