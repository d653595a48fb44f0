//! The POP3 server session, sans-IO: RFC 1939 (USER PASS STAT LIST RETR
//! DELE NOOP RSET QUIT TOP UIDL), RFC 2449 (CAPA, response codes), RFC 2595
//! (STLS), RFC 5034 (AUTH with initial response) and RFC 3206 (`[AUTH]`,
//! `[SYS/TEMP]`, `[IN-USE]`).
//!
//! Bytes go in with [`Session::feed`]; [`Session::next_action`] says what
//! the I/O layer must do next. Answers collect in an output buffer the I/O
//! layer flushes before it blocks on reading, which is all RFC 2449
//! PIPELINING asks. Message bodies are not copied through here: for RETR
//! and TOP the session asks the I/O layer to stream the file through a
//! [`DotStuffer`].
//!
//! The maildrop is a snapshot taken at login: mail arriving later is not
//! shown until the next session, DELE only marks, and the deletions happen
//! in the UPDATE state at QUIT (§6) — a dropped connection deletes nothing.

#[cfg(test)]
mod tests;

pub use crate::auth::login::{AuthOutcome, LoginPolicy};
use crate::auth::sasl::{Credentials, Mechanism, SaslError, SaslExchange, SaslStep};
use std::borrow::Cow;

pub use crate::wire::DotStuffer;

/// RFC 2449 §4 limits a command line to 255 octets; SASL responses
/// (RFC 5034 §4) may be longer. Lines beyond this are refused whole.
pub const MAX_LINE: usize = 8192;

/// What the session needs to know about its listener and client.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// TLS and the plaintext-login rule, shared with SMTP and IMAP.
    pub login: LoginPolicy,
    /// Errors tolerated before the connection is closed.
    pub max_errors: u32,
}

/// One message of the maildrop as listed at login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageEntry {
    /// The store's id for the message (the IMAP UID).
    pub uid: u32,
    /// Size as sent: CRLF line endings, before dot-stuffing (RFC 1939 §11).
    pub size: u64,
    pub uidl: String,
}

/// Why the maildrop could not be opened after a successful login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaildropError {
    /// Another POP3 session holds it (RFC 2449 `[IN-USE]`).
    InUse,
    /// A store or userdb failure (RFC 3206 `[SYS/TEMP]`); logged, not shown.
    Temporary,
}

/// What the I/O layer must do next.
#[derive(Debug)]
pub enum Action {
    /// Flush the output, then read more input and [`feed`](Session::feed) it.
    NeedInput,
    /// Flush the output, do the TLS handshake, then call
    /// [`tls_started`](Session::tls_started).
    StartTls,
    /// USER/PASS: check the password, then [`auth_done`](Session::auth_done).
    CheckPassword { user: String, password: Vec<u8> },
    /// AUTH: check the credentials, then [`auth_done`](Session::auth_done).
    CheckSasl(Credentials),
    /// Lock and list the user's maildrop, then
    /// [`maildrop_opened`](Session::maildrop_opened).
    OpenMaildrop(String),
    /// RETR/TOP: open message `uid`; if it is there call
    /// [`send_begin`](Session::send_begin), flush the output, stream the
    /// file through `encoder` (ending with [`DotStuffer::finish`]); else
    /// call [`send_failed`](Session::send_failed).
    Send {
        number: usize,
        uid: u32,
        encoder: DotStuffer,
    },
    /// QUIT in the TRANSACTION state (RFC 1939 §6): delete `delete`, mark
    /// `seen` (retrieved and kept) as read, release the maildrop, then
    /// [`update_done`](Session::update_done).
    Update { delete: Vec<u32>, seen: Vec<u32> },
    /// Flush the output and close the connection. Without a preceding
    /// [`Action::Update`] nothing is deleted.
    Close,
}

#[derive(Debug)]
struct Message {
    entry: MessageEntry,
    deleted: bool,
    retrieved: bool,
}

#[derive(Debug)]
enum State {
    Authorization {
        user: Option<String>,
    },
    Sasl(SaslExchange),
    /// Waiting for auth_done.
    Authenticating,
    /// Waiting for maildrop_opened.
    Opening,
    Transaction,
    /// Waiting for send_begin/send_failed (RETR when `whole`, else TOP).
    Sending {
        number: usize,
        whole: bool,
    },
    /// Waiting for update_done.
    Updating,
    /// Waiting for tls_started.
    StartingTls,
    Closing,
}

/// One POP3 connection.
#[derive(Debug)]
pub struct Session {
    cfg: SessionConfig,
    input: Vec<u8>,
    /// Skipping the rest of an over-long line.
    discarding: bool,
    output: Vec<u8>,
    state: State,
    pending: Option<Action>,
    user: Option<String>,
    messages: Vec<Message>,
    errors: u32,
}

fn sasl_error_text(e: &SaslError) -> String {
    match e {
        SaslError::Cancelled => "Authentication aborted by client.".to_string(),
        other => format!("Invalid authentication data: {other}."),
    }
}

/// `+OK` and `text` as a reply line in `out`, formatted in place.
fn ok_line(out: &mut Vec<u8>, text: std::fmt::Arguments) {
    use std::io::Write;
    out.extend_from_slice(b"+OK ");
    // (writing to a Vec can't fail)
    let _ = out.write_fmt(text);
    out.extend_from_slice(b"\r\n");
}

impl Session {
    /// A new session; the greeting is already in the output.
    pub fn new(cfg: SessionConfig) -> Self {
        let mut s = Session {
            cfg,
            input: Vec::new(),
            discarding: false,
            output: Vec::new(),
            state: State::Authorization { user: None },
            pending: None,
            user: None,
            messages: Vec::new(),
            errors: 0,
        };
        s.ok("pigeonpost ready.");
        s
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
    }

    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// The replies waiting to be sent; [`Session::clear_output`] once they
    /// are (the buffer is kept for the next ones).
    pub fn output(&self) -> &[u8] {
        &self.output
    }

    pub fn clear_output(&mut self) {
        self.output.clear();
    }

    pub fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// The logged-in user, once authenticated.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The maildrop as listed at login (deleted ones included).
    pub fn messages(&self) -> impl Iterator<Item = (&MessageEntry, bool)> {
        self.messages.iter().map(|m| (&m.entry, m.deleted))
    }

    /// Bytes received and not yet processed.
    pub fn buffered(&self) -> usize {
        self.input.len()
    }

    /// `+OK text`, or a bare `+OK` for empty text.
    fn ok(&mut self, text: &str) {
        self.output.extend_from_slice(b"+OK");
        if !text.is_empty() {
            self.output.push(b' ');
            self.output.extend_from_slice(text.as_bytes());
        }
        self.output.extend_from_slice(b"\r\n");
    }

    fn err(&mut self, text: &str) {
        self.output.extend_from_slice(b"-ERR ");
        self.output.extend_from_slice(text.as_bytes());
        self.output.extend_from_slice(b"\r\n");
    }

    /// An error caused by the client; too many of them end the session.
    fn bad(&mut self, text: &str) {
        self.err(text);
        self.errors += 1;
        if self.errors >= self.cfg.max_errors {
            self.err("Too many bad commands.");
            self.state = State::Closing;
        }
    }

    /// Ends the session with a last `-ERR` line (idle timeout, server
    /// shutdown). Nothing is deleted.
    pub fn shutdown(&mut self, text: &str) {
        self.err(text);
        self.state = State::Closing;
        self.pending = None;
    }

    fn plaintext_allowed(&self) -> bool {
        self.cfg.login.plaintext_allowed()
    }

    fn offered_mechanisms(&self) -> Vec<Mechanism> {
        self.cfg.login.offered_mechanisms().collect()
    }

    /// RFC 2449 §5; the same list in both states, as §5 asks, except that
    /// STLS is only shown where it can be used.
    fn capa(&mut self) {
        let mut lines = vec![
            "CAPA".to_string(),
            "TOP".into(),
            "UIDL".into(),
            "RESP-CODES".into(),
            "PIPELINING".into(),
            "AUTH-RESP-CODE".into(),
        ];
        if self.plaintext_allowed() {
            lines.push("USER".into());
        }
        let mechs = self.offered_mechanisms();
        if !mechs.is_empty() {
            let names: Vec<&str> = mechs.iter().map(|m| m.name()).collect();
            lines.push(format!("SASL {}", names.join(" ")));
        }
        if self.cfg.login.can_start_tls() && matches!(self.state, State::Authorization { .. }) {
            lines.push("STLS".into());
        }
        self.ok("Capability list follows");
        for l in lines {
            self.output.extend_from_slice(l.as_bytes());
            self.output.extend_from_slice(b"\r\n");
        }
        self.output.extend_from_slice(b".\r\n");
    }

    // ------------------------------------------------------------ results

    pub fn tls_started(&mut self) {
        debug_assert!(matches!(self.state, State::StartingTls));
        self.cfg.login.tls_started();
        // RFC 2595 §4: forget everything the client sent before the handshake.
        self.input.clear();
        self.state = State::Authorization { user: None };
    }

    pub fn auth_done(&mut self, outcome: AuthOutcome) {
        match outcome {
            AuthOutcome::Ok(user) => {
                self.state = State::Opening;
                self.pending = Some(Action::OpenMaildrop(user));
            }
            AuthOutcome::Fail => {
                self.state = State::Authorization { user: None };
                self.bad("[AUTH] Authentication failed.");
            }
            AuthOutcome::TempFail => {
                self.state = State::Authorization { user: None };
                self.err("[SYS/TEMP] Temporary authentication failure, try again later.");
            }
            AuthOutcome::Banned => {
                self.state = State::Authorization { user: None };
                self.bad(&format!("[SYS/TEMP] {}.", crate::auth::login::BANNED_TEXT));
            }
            AuthOutcome::TooManySessions(limit) => {
                self.state = State::Authorization { user: None };
                self.err(&format!(
                    "[IN-USE] {}",
                    crate::auth::sessions::limit_text(limit)
                ));
            }
        }
    }

    pub fn maildrop_opened(
        &mut self,
        user: &str,
        result: Result<Vec<MessageEntry>, MaildropError>,
    ) {
        match result {
            Ok(entries) => {
                self.messages = entries
                    .into_iter()
                    .map(|entry| Message {
                        entry,
                        deleted: false,
                        retrieved: false,
                    })
                    .collect();
                self.user = Some(user.to_string());
                self.state = State::Transaction;
                self.ok("Logged in.");
            }
            Err(MaildropError::InUse) => {
                self.state = State::Authorization { user: None };
                self.err("[IN-USE] Mailbox is locked by another POP3 session.");
            }
            Err(MaildropError::Temporary) => {
                self.state = State::Authorization { user: None };
                self.err("[SYS/TEMP] Couldn't open the mailbox, try again later.");
            }
        }
    }

    /// The message of the last [`Action::Send`] is there: the `+OK` line
    /// goes into the output, to be flushed before the body.
    pub fn send_begin(&mut self) {
        let State::Sending { number, whole } = self.state else {
            debug_assert!(false, "send_begin without Action::Send");
            return;
        };
        if whole {
            let size = self.messages[number - 1].entry.size;
            self.messages[number - 1].retrieved = true;
            ok_line(&mut self.output, format_args!("{size} octets"));
        } else {
            self.ok("");
        }
        self.state = State::Transaction;
    }

    /// The message of the last [`Action::Send`] vanished (expunged by
    /// another client since login).
    pub fn send_failed(&mut self, temporary: bool) {
        self.state = State::Transaction;
        if temporary {
            self.err("[SYS/TEMP] Couldn't read the message, try again later.");
        } else {
            self.err("Message no longer exists (deleted by another session).");
        }
    }

    pub fn update_done(&mut self, ok: bool) {
        if ok {
            self.ok("Logging out.");
        } else {
            // RFC 1939 §6: "-ERR some deleted messages not removed"
            self.err("[SYS/TEMP] Some deleted messages were not removed.");
        }
        self.state = State::Closing;
    }

    // ------------------------------------------------------------ input

    /// The next complete line without its CRLF, or `None`.
    fn next_line(&mut self) -> Option<Result<Vec<u8>, ()>> {
        let Some(pos) = self.input.iter().position(|&b| b == b'\n') else {
            // + 1: a line of MAX_LINE may have its CR here, its LF still
            // to come.
            if self.input.len() > MAX_LINE + 1 {
                self.input.clear();
                self.discarding = true;
            }
            return None;
        };
        let mut line: Vec<u8> = self.input.drain(..=pos).collect();
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if std::mem::take(&mut self.discarding) || line.len() > MAX_LINE {
            return Some(Err(()));
        }
        Some(Ok(line))
    }

    pub fn next_action(&mut self) -> Action {
        loop {
            if let Some(a) = self.pending.take() {
                return a;
            }
            match self.state {
                State::Closing => return Action::Close,
                State::Authenticating
                | State::Opening
                | State::Sending { .. }
                | State::Updating
                | State::StartingTls => {
                    // waiting for a result the I/O layer owes us
                    return Action::NeedInput;
                }
                _ => {}
            }
            let line = match self.next_line() {
                None => return Action::NeedInput,
                Some(Err(())) => {
                    if matches!(self.state, State::Sasl(_)) {
                        self.state = State::Authorization { user: None };
                    }
                    self.bad("Line too long.");
                    continue;
                }
                Some(Ok(l)) => l,
            };
            if let State::Sasl(ex) = &mut self.state {
                let step = ex.step(&String::from_utf8_lossy(&line));
                self.sasl_step(step);
                continue;
            }
            self.command(&line);
        }
    }

    fn sasl_step(&mut self, step: SaslStep) {
        match step {
            SaslStep::Challenge(c) => {
                self.output.extend_from_slice(b"+ ");
                self.output.extend_from_slice(c.as_bytes());
                self.output.extend_from_slice(b"\r\n");
            }
            SaslStep::Done(creds) => {
                self.state = State::Authenticating;
                self.pending = Some(Action::CheckSasl(creds));
            }
            SaslStep::Failed(e) => {
                self.state = State::Authorization { user: None };
                self.bad(&sasl_error_text(&e));
            }
        }
    }

    fn command(&mut self, line: &[u8]) {
        let (keyword, raw_args) = match line.iter().position(|&b| b == b' ') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (line, &b""[..]),
        };
        // Keywords are short ASCII: uppercased on the stack.
        let mut upper = [0u8; 8];
        let keyword: Cow<str> = match upper.get_mut(..keyword.len()) {
            Some(up) if keyword.is_ascii() => {
                up.copy_from_slice(keyword);
                up.make_ascii_uppercase();
                Cow::Borrowed(std::str::from_utf8(up).unwrap_or_default())
            }
            _ => Cow::Owned(String::from_utf8_lossy(keyword).to_ascii_uppercase()),
        };
        let args = String::from_utf8_lossy(raw_args);
        if keyword.is_empty() {
            self.bad("Empty command.");
            return;
        }
        // Commands valid in every state.
        match &*keyword {
            "CAPA" => return self.capa(),
            "QUIT" => return self.quit(),
            _ => {}
        }
        if matches!(self.state, State::Transaction) {
            self.transaction(&keyword, &args);
        } else {
            self.authorization(&keyword, &args, raw_args);
        }
    }

    fn quit(&mut self) {
        if matches!(self.state, State::Transaction) {
            let delete = self
                .messages
                .iter()
                .filter(|m| m.deleted)
                .map(|m| m.entry.uid)
                .collect();
            let seen = self
                .messages
                .iter()
                .filter(|m| m.retrieved && !m.deleted)
                .map(|m| m.entry.uid)
                .collect();
            self.state = State::Updating;
            self.pending = Some(Action::Update { delete, seen });
        } else {
            self.ok("Logging out.");
            self.state = State::Closing;
        }
    }

    // ------------------------------------------------------ AUTHORIZATION

    /// `raw_args` keeps a password's bytes exactly as sent.
    fn authorization(&mut self, keyword: &str, args: &str, raw_args: &[u8]) {
        match keyword {
            "USER" => {
                if !self.plaintext_allowed() {
                    return self.bad("[AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.");
                }
                let name = args.trim();
                if name.is_empty() {
                    return self.bad("No username given.");
                }
                self.state = State::Authorization {
                    user: Some(name.to_string()),
                };
                self.ok("");
            }
            "PASS" => {
                let State::Authorization { user } = &mut self.state else {
                    return;
                };
                let Some(user) = user.take() else {
                    return self.bad("No username given.");
                };
                if !self.plaintext_allowed() {
                    return self.bad("[AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.");
                }
                self.state = State::Authenticating;
                self.pending = Some(Action::CheckPassword {
                    user,
                    password: raw_args.to_vec(),
                });
            }
            "AUTH" => self.auth(args),
            "STLS" => {
                if self.cfg.login.tls_active {
                    self.bad("TLS is already active.");
                } else if !self.cfg.login.tls_available {
                    self.bad("TLS support isn't enabled.");
                } else {
                    self.ok("Begin TLS negotiation now.");
                    self.state = State::StartingTls;
                    self.pending = Some(Action::StartTls);
                }
            }
            "APOP" => self.bad("APOP is not supported; use USER/PASS or AUTH."),
            "STAT" | "LIST" | "RETR" | "DELE" | "NOOP" | "RSET" | "TOP" | "UIDL" => {
                self.bad("Not logged in.")
            }
            _ => self.bad(&format!("Unknown command: {}", printable(keyword))),
        }
    }

    fn auth(&mut self, args: &str) {
        let mut parts = args.split_whitespace();
        let Some(mech_name) = parts.next() else {
            // Common extension (Dovecot, Outlook): list the mechanisms.
            let mechs = self.offered_mechanisms();
            self.ok("");
            for m in mechs {
                self.output.extend_from_slice(m.name().as_bytes());
                self.output.extend_from_slice(b"\r\n");
            }
            self.output.extend_from_slice(b".\r\n");
            return;
        };
        let initial = parts.next();
        if parts.next().is_some() {
            return self.bad("Too many arguments to AUTH.");
        }
        let Some(mech) =
            Mechanism::from_name(mech_name).filter(|m| self.cfg.login.mechanisms.contains(m))
        else {
            return self.bad("Unsupported authentication mechanism.");
        };
        if !self.cfg.login.may_use(mech) {
            return self.bad(
                "[AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.",
            );
        }
        let (ex, step) = SaslExchange::start(mech, initial, "pigeonpost");
        self.state = State::Sasl(ex);
        self.sasl_step(step);
    }

    // ------------------------------------------------------- TRANSACTION

    /// A message number argument: it must name a listed, undeleted message.
    fn message_number(&mut self, arg: Option<&str>) -> Option<usize> {
        let Some(arg) = arg else {
            self.bad("Message number required.");
            return None;
        };
        let n = match arg.parse::<usize>() {
            Ok(n) if arg.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => {
                self.bad(&format!("Invalid message number: {}", printable(arg)));
                return None;
            }
        };
        match self.messages.get(n.wrapping_sub(1)) {
            None => {
                self.bad(&format!("There's no message {n}."));
                None
            }
            Some(m) if m.deleted => {
                self.bad("Message is deleted.");
                None
            }
            Some(_) => Some(n),
        }
    }

    fn transaction(&mut self, keyword: &str, args: &str) {
        let mut argv = args.split(' ').filter(|a| !a.is_empty());
        let a1 = argv.next();
        let a2 = argv.next();
        if argv.next().is_some() {
            return self.bad("Too many arguments.");
        }
        match keyword {
            "STAT" => {
                let (count, size) = self
                    .messages
                    .iter()
                    .filter(|m| !m.deleted)
                    .fold((0, 0), |(c, s), m| (c + 1, s + m.entry.size));
                self.ok(&format!("{count} {size}"));
            }
            "LIST" | "UIDL" => {
                let uidl = keyword == "UIDL";
                let show = |m: &Message| {
                    if uidl {
                        m.entry.uidl.clone()
                    } else {
                        m.entry.size.to_string()
                    }
                };
                if a2.is_some() {
                    return self.bad("Too many arguments.");
                }
                if a1.is_some() {
                    if let Some(n) = self.message_number(a1) {
                        let entry = &self.messages[n - 1].entry;
                        if uidl {
                            ok_line(&mut self.output, format_args!("{n} {}", entry.uidl));
                        } else {
                            ok_line(&mut self.output, format_args!("{n} {}", entry.size));
                        }
                    }
                    return;
                }
                let mut body = Vec::new();
                let mut count = 0;
                let mut size = 0;
                for (i, m) in self.messages.iter().enumerate() {
                    if m.deleted {
                        continue;
                    }
                    count += 1;
                    size += m.entry.size;
                    body.extend_from_slice(format!("{} {}\r\n", i + 1, show(m)).as_bytes());
                }
                if uidl {
                    self.ok("");
                } else {
                    self.ok(&format!("{count} messages ({size} octets):"));
                }
                self.output.extend_from_slice(&body);
                self.output.extend_from_slice(b".\r\n");
            }
            "RETR" => {
                if a2.is_some() {
                    return self.bad("Too many arguments.");
                }
                if let Some(n) = self.message_number(a1) {
                    self.start_send(n, true, DotStuffer::full());
                }
            }
            "TOP" => {
                let Some(n) = self.message_number(a1) else {
                    return;
                };
                let lines = match a2.map(|a| (a, a.parse::<u64>())) {
                    Some((a, Ok(l))) if a.bytes().all(|b| b.is_ascii_digit()) => l,
                    Some((a, _)) => {
                        return self.bad(&format!("Invalid number of lines: {}", printable(a)))
                    }
                    None => return self.bad("Number of lines required."),
                };
                self.start_send(n, false, DotStuffer::top(lines));
            }
            "DELE" => {
                if a2.is_some() {
                    return self.bad("Too many arguments.");
                }
                if let Some(n) = self.message_number(a1) {
                    self.messages[n - 1].deleted = true;
                    self.ok("Marked to be deleted.");
                }
            }
            "RSET" => {
                for m in &mut self.messages {
                    m.deleted = false;
                }
                let count = self.messages.len();
                let size: u64 = self.messages.iter().map(|m| m.entry.size).sum();
                self.ok(&format!("{count} messages ({size} octets)."));
            }
            "NOOP" => self.ok(""),
            "USER" | "PASS" | "AUTH" | "APOP" => self.bad("Already logged in."),
            "STLS" => self.bad("STLS is only allowed before logging in."),
            _ => self.bad(&format!("Unknown command: {}", printable(keyword))),
        }
    }

    fn start_send(&mut self, number: usize, whole: bool, encoder: DotStuffer) {
        let uid = self.messages[number - 1].entry.uid;
        self.state = State::Sending { number, whole };
        self.pending = Some(Action::Send {
            number,
            uid,
            encoder,
        });
    }
}

/// A client-supplied word, shortened and without control characters, fit
/// for echoing in an answer.
fn printable(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(40)
        .collect::<String>()
}
