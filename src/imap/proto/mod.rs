//! The IMAP session as a sans-IO state machine (RFC 3501 §3, §6.1-6.2):
//! bytes in ([`Session::feed`]), responses out ([`Session::take_output`]),
//! [`Action`]s for the I/O layer. Framing (lines and literals, with
//! continuation requests for synchronizing literals) is imap-codec's
//! `Fragmentizer`, the grammar its `CommandCodec`. The session itself
//! answers what needs no mailbox: CAPABILITY, NOOP and LOGOUT before
//! login, STARTTLS, LOGIN and AUTHENTICATE (with the plaintext rules), ID,
//! ENABLE, NAMESPACE, IDLE's DONE; and it checks that every other command
//! is allowed in the current state before handing it over.

use base64::Engine;
use imap_codec::decode::Decoder;
use imap_codec::fragmentizer::{DecodeMessageError, FragmentInfo, Fragmentizer};
use imap_codec::imap_types::auth::AuthMechanism;
use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::core::LiteralMode;
use imap_codec::imap_types::IntoStatic;
use imap_codec::CommandCodec;

pub use crate::auth::login::{AuthOutcome, LoginPolicy};
use crate::auth::sasl::{Credentials, Mechanism, SaslError, SaslExchange, SaslStep};

pub mod cancelupdate;
pub mod list_ext;
pub mod multiappend;
pub mod response;
pub mod rev2;
#[cfg(test)]
mod tests;
mod tokens;

use response::quote;

/// Longest command line or message (APPEND literal) we buffer.
pub const DEFAULT_MAX_MESSAGE: u32 = 64 * 1024 * 1024;
/// Before login: the longest literal (RFC 7888 LITERAL- allows 4,096
/// bytes) and the longest command, literals included. LOGIN and
/// AUTHENTICATE need far less; a stranger gets no more memory than this.
pub const PRE_LOGIN_MAX_LITERAL: u32 = 4096;
pub const PRE_LOGIN_MAX_COMMAND: usize = 16 * 1024;
/// After login, commands other than APPEND: the longest literal (a
/// search string, a mailbox name) and the longest command. APPEND alone
/// may bring a message of `max_message` bytes.
pub const MAX_OTHER_LITERAL: u32 = 64 * 1024;
pub const MAX_OTHER_COMMAND: usize = 1024 * 1024;

#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub hostname: String,
    /// TLS and the plaintext-login rule, shared with SMTP and POP3.
    pub login: LoginPolicy,
    /// Bad commands before `* BYE`.
    pub max_errors: u32,
    /// Largest command including literals (APPEND: message_size_limit).
    pub max_message: u32,
    /// The `quota` setting is on: QUOTA (RFC 9208) is offered.
    pub quota: bool,
}

/// RFC 3501 §3 states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    NotAuthenticated,
    Authenticated,
    Selected { read_only: bool },
    Logout,
}

/// What the I/O layer must do next.
#[derive(Debug)]
pub enum Action {
    /// Write the output, read more input, [`Session::feed`] it.
    NeedInput,
    /// Write the output (ends with the OK to STARTTLS), do the TLS
    /// handshake, call [`Session::tls_started`].
    StartTls,
    /// Check these credentials (LOGIN or AUTHENTICATE), then
    /// [`Session::auth_done`].
    CheckAuth(Credentials),
    /// Run a command that needs the mail store, write its responses with
    /// [`Session::respond`] and finish with [`Session::command_done`].
    Run {
        tag: String,
        command: Box<CommandBody<'static>>,
        options: RunOptions,
    },
    /// An extended LIST (RFC 5258/6154/5819), which imap-codec doesn't
    /// parse: like [`Action::Run`].
    List {
        tag: String,
        list: list_ext::ListExtended,
    },
    /// IDLE is running (the continuation went out): report mailbox changes
    /// with [`Session::respond`] while waiting for input; DONE ends it.
    Idling,
    /// A MULTIAPPEND (RFC 3502) or CATENATE (RFC 4469) APPEND, which
    /// imap-codec doesn't parse: like [`Action::Run`].
    MultiAppend {
        tag: String,
        append: multiappend::MultiAppend,
    },
    /// CANCELUPDATE (RFC 5267 §4.3.5), which imap-codec doesn't parse: the
    /// I/O layer hands the tags to the backend, writes its answer and calls
    /// [`Session::command_done`].
    CancelUpdate { tag: String, tags: Vec<String> },
    /// Write the output (ends with the OK to COMPRESS), then compress the
    /// connection both ways (RFC 4978) and call [`Session::compress_started`].
    Compress,
    /// Write the output and close.
    Close,
}

/// How to run an [`Action::Run`] command: what the session ENABLEd and the
/// IMAP4rev2 syntax imap-codec doesn't parse (see [`rev2`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// UTF8=ACCEPT (or IMAP4rev2) is enabled: mailbox names are UTF-8.
    pub utf8: bool,
    /// IMAP4rev2 is enabled (RFC 9051): SEARCH answers ESEARCH, no \Recent.
    pub rev2: bool,
    /// SEARCH RETURN (…) options (RFC 4731); a plain SEARCH under IMAP4rev2
    /// gets [`rev2::SearchReturn::ALL`].
    pub search_return: Option<rev2::SearchReturn>,
    /// The command's sequence set was `$`, the saved result (RFC 5182).
    pub saved: bool,
    /// ENABLE CONDSTORE (or QRESYNC) was given (RFC 7162 §3.1, §3.2.3).
    pub condstore: bool,
    /// ENABLE QRESYNC was given (RFC 7162 §3.2.3).
    pub qresync: bool,
}

enum Mode {
    Commands,
    Sasl { tag: String, exchange: SaslExchange },
    Idle { tag: String },
    Waiting,
    Closed,
}

pub struct Session {
    cfg: SessionConfig,
    frag: Fragmentizer,
    state: State,
    mode: Mode,
    out: Vec<u8>,
    errors: u32,
    pending: Option<Action>,
    user: Option<String>,
    /// Tag of the LOGIN/AUTHENTICATE being checked.
    auth_tag: Option<String>,
    /// ENABLEd extensions (UTF8=ACCEPT, IMAP4rev2).
    utf8: bool,
    rev2: bool,
    /// ENABLEd CONDSTORE / QRESYNC (RFC 7162 §3.2.3: QRESYNC implies
    /// CONDSTORE). Commands that enable CONDSTORE implicitly (§3.1) are
    /// the backend's business.
    condstore: bool,
    qresync: bool,
    /// What [`rev2::rewrite`] found in the command being dispatched.
    rewrite: Option<(Option<rev2::SearchReturn>, bool)>,
    /// A literal was announced and its bytes are still coming (the driver
    /// holds the client to a minimum data rate meanwhile).
    in_literal: bool,
    /// COMPRESS=DEFLATE is active.
    compressed: bool,
}

impl Session {
    pub fn new(cfg: SessionConfig) -> Session {
        let mut s = Session {
            frag: Fragmentizer::new(cfg.max_message),
            cfg,
            state: State::NotAuthenticated,
            mode: Mode::Commands,
            out: Vec::new(),
            errors: 0,
            pending: None,
            user: None,
            auth_tag: None,
            utf8: false,
            rev2: false,
            condstore: false,
            qresync: false,
            in_literal: false,
            compressed: false,
            rewrite: None,
        };
        let caps = s.capabilities();
        s.push(&format!("* OK [CAPABILITY {caps}] pigeonpost ready.\r\n"));
        s
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    pub fn utf8_enabled(&self) -> bool {
        self.utf8
    }

    pub fn is_tls(&self) -> bool {
        self.cfg.login.tls_active
    }

    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    fn push(&mut self, s: &str) {
        self.out.extend_from_slice(s.as_bytes());
    }

    /// Untagged responses (or any bytes) from the I/O layer.
    pub fn respond(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// The CAPABILITY list for the current state.
    pub fn capabilities(&self) -> String {
        let mut c = vec![
            "IMAP4rev1",
            "IMAP4rev2",
            "SASL-IR",
            "LITERAL+",
            "ID",
            "ENABLE",
            "IDLE",
        ];
        if self.state == State::NotAuthenticated {
            if self.cfg.login.can_start_tls() {
                c.push("STARTTLS");
            }
            if !self.cfg.login.plaintext_allowed() {
                c.push("LOGINDISABLED");
            }
            let mut s = c.join(" ");
            for m in self.cfg.login.offered_mechanisms() {
                s.push_str(" AUTH=");
                s.push_str(m.name());
            }
            return s;
        }
        c.extend([
            "NAMESPACE",
            "UNSELECT",
            "UIDPLUS",
            "MOVE",
            "CHILDREN",
            "SPECIAL-USE",
            "LIST-EXTENDED",
            "LIST-STATUS",
            "UTF8=ACCEPT",
            "ESEARCH",
            "SEARCHRES",
            "SORT",
            "SORT=DISPLAY",
            "ESORT",
            "CONTEXT=SEARCH",
            "CONTEXT=SORT",
            "THREAD=ORDEREDSUBJECT",
            "THREAD=REFERENCES",
            "METADATA",
            "BINARY",
            "STATUS=SIZE",
            "MULTIAPPEND",
            // RFC 4469; RFC 5550 §5: ;PARTIAL= in CATENATE's URLs.
            "CATENATE",
            "URL-PARTIAL",
            "CONDSTORE",
            "QRESYNC",
        ]);
        if self.cfg.quota {
            // RFC 9208 §3.1: the resources maildirsize counts.
            c.extend(["QUOTA", "QUOTA=RES-STORAGE", "QUOTA=RES-MESSAGE"]);
        }
        if !self.compressed {
            c.push("COMPRESS=DEFLATE");
        }
        c.join(" ")
    }

    /// Ends the session with `* BYE` (shutdown, idle timeout).
    pub fn shutdown(&mut self, text: &str) {
        self.push(&format!("* BYE {text}\r\n"));
        self.mode = Mode::Closed;
        self.state = State::Logout;
    }

    pub fn tls_started(&mut self) {
        self.cfg.login.tls_started();
        // CVE-2011-0411, as SMTP and POP3 do: nothing pipelined after
        // STARTTLS in plaintext may be carried into the TLS session.
        self.frag = Fragmentizer::new(self.cfg.max_message);
        self.mode = Mode::Commands;
    }

    pub fn compress_started(&mut self) {
        self.mode = Mode::Commands;
    }

    /// RFC 4978 COMPRESS, which imap-codec doesn't parse: `tag COMPRESS alg`.
    fn compress(&mut self, raw: &[u8]) -> Option<Option<Action>> {
        let line = std::str::from_utf8(raw).ok()?.trim_end();
        let mut words = line.split(' ');
        let tag = words.next()?;
        if !words.next()?.eq_ignore_ascii_case("COMPRESS") {
            return None;
        }
        let algorithm = words.next().unwrap_or("");
        if self.state == State::NotAuthenticated {
            self.bad(tag, "COMPRESS needs a login first.");
        } else if self.compressed {
            self.push(&format!(
                "{tag} NO [COMPRESSIONACTIVE] DEFLATE active via COMPRESS.\r\n"
            ));
        } else if !algorithm.eq_ignore_ascii_case("DEFLATE") || words.next().is_some() {
            self.bad(tag, "Unknown compression algorithm.");
        } else {
            self.push(&format!("{tag} OK DEFLATE active.\r\n"));
            self.compressed = true;
            self.mode = Mode::Waiting;
            return Some(Some(Action::Compress));
        }
        Some(None)
    }

    /// The credential check is done.
    pub fn auth_done(&mut self, outcome: AuthOutcome) {
        let tag = self.auth_tag.take().unwrap_or_else(|| "*".into());
        self.mode = Mode::Commands;
        match outcome {
            AuthOutcome::Ok(user) => {
                self.user = Some(user);
                self.state = State::Authenticated;
                let caps = self.capabilities();
                self.push(&format!("{tag} OK [CAPABILITY {caps}] Logged in\r\n"));
            }
            AuthOutcome::Fail => {
                self.push(&format!(
                    "{tag} NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
                ));
                self.error();
            }
            AuthOutcome::TempFail => {
                self.push(&format!(
                    "{tag} NO [UNAVAILABLE] Temporary authentication failure.\r\n"
                ));
            }
            AuthOutcome::Banned => {
                let text = crate::auth::login::BANNED_TEXT;
                self.push(&format!("{tag} NO [UNAVAILABLE] {text}.\r\n"));
                self.error();
            }
            AuthOutcome::TooManySessions(limit) => {
                let text = crate::auth::sessions::limit_text(limit);
                self.push(&format!("{tag} NO [UNAVAILABLE] {text}\r\n"));
            }
        }
    }

    /// A [`Action::Run`] command finished; `state` is the new state (SELECT
    /// / CLOSE / LOGOUT change it). The tagged response was written with
    /// [`Session::respond`].
    pub fn command_done(&mut self, state: State) {
        self.state = state;
        self.mode = if state == State::Logout {
            Mode::Closed
        } else {
            Mode::Commands
        };
    }

    /// A [`Action::Run`] IDLE was accepted by the I/O layer: the
    /// continuation goes out and the session waits for DONE.
    pub fn idle_started(&mut self, tag: String) {
        self.push("+ idling\r\n");
        self.mode = Mode::Idle { tag };
    }

    pub fn is_idling(&self) -> bool {
        matches!(self.mode, Mode::Idle { .. })
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        if !matches!(self.mode, Mode::Closed) {
            self.frag.enqueue_bytes(bytes);
        }
    }

    fn error(&mut self) {
        self.errors += 1;
        if self.errors >= self.cfg.max_errors {
            self.push("* BYE Too many invalid IMAP commands.\r\n");
            self.mode = Mode::Closed;
            self.state = State::Logout;
        }
    }

    fn bad(&mut self, tag: &str, text: &str) {
        self.push(&format!("{tag} BAD {text}\r\n"));
        self.error();
    }

    pub fn next_action(&mut self) -> Action {
        if let Some(a) = self.pending.take() {
            return a;
        }
        loop {
            match &self.mode {
                Mode::Closed => return Action::Close,
                Mode::Waiting => return Action::NeedInput,
                Mode::Idle { .. } => {
                    if let Some(line) = self.next_line() {
                        let tag = match std::mem::replace(&mut self.mode, Mode::Commands) {
                            Mode::Idle { tag } => tag,
                            _ => unreachable!("checked above"),
                        };
                        if line.trim().eq_ignore_ascii_case("DONE") {
                            self.push(&format!("{tag} OK Idle completed.\r\n"));
                        } else {
                            self.bad(&tag, "Expected DONE.");
                        }
                        continue;
                    }
                    return Action::Idling;
                }
                Mode::Sasl { .. } => {
                    let Some(line) = self.next_line() else {
                        return Action::NeedInput;
                    };
                    let (tag, mut ex) = match std::mem::replace(&mut self.mode, Mode::Waiting) {
                        Mode::Sasl { tag, exchange } => (tag, exchange),
                        _ => unreachable!("checked above"),
                    };
                    let step = ex.step(line.trim_end_matches(['\r', '\n']));
                    self.sasl_step(tag, ex, step);
                    if let Some(a) = self.pending.take() {
                        return a;
                    }
                    continue;
                }
                Mode::Commands => {}
            }
            match self.next_command() {
                Some(a) => return a,
                None => {
                    if matches!(self.mode, Mode::Commands) {
                        return Action::NeedInput;
                    }
                }
            }
        }
    }

    /// A whole line (no literals) for SASL responses and IDLE's DONE.
    fn next_line(&mut self) -> Option<String> {
        loop {
            let Some(info) = self.frag.progress() else {
                // A SASL response or DONE is short; a "literal" in one is
                // not a reason to buffer megabytes.
                if self.frag.message_bytes().len() > PRE_LOGIN_MAX_COMMAND {
                    self.too_long();
                }
                return None;
            };
            // Also once complete: the limit must not depend on whether the
            // line came in one read or several.
            if self.frag.message_bytes().len() > PRE_LOGIN_MAX_COMMAND {
                self.too_long();
                return None;
            }
            if let FragmentInfo::Line { .. } = info {
                if self.frag.is_message_complete() {
                    let line = String::from_utf8_lossy(self.frag.message_bytes()).into_owned();
                    return Some(line);
                }
            } else if self.frag.is_message_complete() {
                return Some(String::new());
            }
        }
    }

    /// A literal's bytes are still coming.
    pub fn receiving_literal(&self) -> bool {
        self.in_literal
    }

    /// Is the command being read an APPEND (the one command whose literal
    /// may be a whole message)?
    fn reading_append(&self) -> bool {
        let raw = self.frag.message_bytes();
        let mut words = raw.split(|&b| b == b' ').skip(1);
        let cmd = words.next().unwrap_or_default();
        let cmd = if cmd.eq_ignore_ascii_case(b"UID") {
            words.next().unwrap_or_default()
        } else {
            cmd
        };
        self.state != State::NotAuthenticated && cmd.eq_ignore_ascii_case(b"APPEND")
    }

    /// The limits on the command being read: its longest literal, and its
    /// longest total (`None`: the fragmentizer's own, `max_message`).
    fn command_limits(&self) -> (u32, Option<usize>) {
        if self.state == State::NotAuthenticated {
            (PRE_LOGIN_MAX_LITERAL, Some(PRE_LOGIN_MAX_COMMAND))
        } else if self.reading_append() {
            (self.cfg.max_message, None)
        } else {
            (MAX_OTHER_LITERAL, Some(MAX_OTHER_COMMAND))
        }
    }

    /// The command being read outgrew its limit: the connection ends (what
    /// follows can't be told apart from literal bytes any more).
    fn too_long(&mut self) {
        self.push("* BYE [TOOBIG] Command too long.\r\n");
        self.mode = Mode::Closed;
        self.state = State::Logout;
        self.frag.skip_message();
        self.in_literal = false;
    }

    /// Nothing complete yet: checks the partial command against its limit.
    fn need_more(&mut self) -> Option<Action> {
        if let (_, Some(max)) = self.command_limits() {
            if self.frag.message_bytes().len() > max {
                self.too_long();
            }
        }
        None
    }

    /// Parses the next complete command, if any, and acts on it. Returns
    /// an action for the I/O layer, or None when more input is needed or
    /// the command was answered here.
    fn next_command(&mut self) -> Option<Action> {
        loop {
            let Some(info) = self.frag.progress() else {
                return self.need_more();
            };
            // The same check on every fragment, so that a command over its
            // limit is refused whether it came in one read or several.
            self.need_more();
            if matches!(self.mode, Mode::Closed) {
                return None;
            }
            if let FragmentInfo::Literal { .. } = info {
                self.in_literal = false;
            }
            if let FragmentInfo::Line {
                announcement: Some(lit),
                ..
            } = info
            {
                if !self.frag.is_message_complete() {
                    let tag = self
                        .frag
                        .decode_tag()
                        .map(|t| t.as_ref().to_string())
                        .unwrap_or_else(|| "*".into());
                    let (max_literal, _) = self.command_limits();
                    if lit.length > max_literal && max_literal < self.cfg.max_message {
                        if lit.mode == LiteralMode::Sync {
                            self.frag.skip_message();
                            self.push(&format!("{tag} NO [TOOBIG] Literal too large.\r\n"));
                            self.error();
                            // Go on with whatever the client pipelined after it.
                            if matches!(self.mode, Mode::Commands) {
                                continue;
                            }
                            return None;
                        }
                        // RFC 7888 §5 (LITERAL-): a non-synchronizing
                        // literal over the limit is refused and, as its
                        // bytes are on the way, the connection closed.
                        self.push(&format!("{tag} BAD [TOOBIG] Literal too large.\r\n"));
                        self.too_long();
                        return None;
                    }
                    self.in_literal = lit.length > 0;
                    if lit.length > self.cfg.max_message {
                        if lit.mode == LiteralMode::Sync {
                            // Refused: the client won't send it (RFC 7888 §4).
                            self.frag.skip_message();
                            self.push(&format!("{tag} NO [TOOBIG] Literal too large.\r\n"));
                            self.error();
                            if matches!(self.mode, Mode::Commands) {
                                continue;
                            }
                            return None;
                        }
                        // LITERAL+: it comes anyway; the fragmentizer drops it.
                        continue;
                    }
                    if lit.mode == LiteralMode::Sync {
                        self.push("+ OK\r\n");
                    }
                    continue;
                }
            }
            if !self.frag.is_message_complete() {
                continue;
            }
            if let Some(action) = self.dispatch() {
                return Some(action);
            }
            // Answered here: go on with the next pipelined command, unless
            // the mode changed (SASL exchange, BYE).
            if !matches!(self.mode, Mode::Commands) {
                return None;
            }
        }
    }

    fn dispatch(&mut self) -> Option<Action> {
        let raw = self.frag.message_bytes();
        if raw.iter().all(|b| b.is_ascii_whitespace()) {
            return None;
        }
        let tag = self
            .frag
            .decode_tag()
            .map(|t| t.as_ref().to_string())
            .unwrap_or_else(|| "*".into());
        if raw.len() < 64 && memchr::memmem::find(&raw.to_ascii_uppercase(), b" COMPRESS").is_some()
        {
            let raw = raw.to_vec();
            if let Some(action) = self.compress(&raw) {
                return action;
            }
        }
        let raw = self.frag.message_bytes();
        if let Some((tag, parsed)) = list_ext::parse(raw) {
            return match parsed {
                Err(why) => {
                    self.bad(&tag, &format!("Error in IMAP command LIST: {why}."));
                    None
                }
                Ok(_) if matches!(self.state, State::NotAuthenticated | State::Logout) => {
                    self.bad(&tag, "Error in IMAP command LIST: Not logged in.");
                    None
                }
                Ok(list) => {
                    self.mode = Mode::Waiting;
                    Some(Action::List { tag, list })
                }
            };
        }
        // What imap-codec parses goes as it is (`SEARCH SUBJECT $` is a
        // search for "$"); only what it refuses is tried as IMAP4rev2 syntax.
        let mut rewritten = None;
        let decoded = match self.frag.decode_message(&CommandCodec::default()) {
            Ok(c) => Ok(c.into_static()),
            Err(DecodeMessageError::MessageTooLong { .. }) => Err(true),
            Err(_) if self.reading_append() => {
                match multiappend::parse(self.frag.message_bytes()) {
                    Some((tag, Ok(append))) if self.state != State::Logout => {
                        self.mode = Mode::Waiting;
                        return Some(Action::MultiAppend { tag, append });
                    }
                    Some((tag, Err(why))) => {
                        self.bad(&tag, &format!("Error in IMAP command APPEND: {why}."));
                        self.error();
                        return None;
                    }
                    _ => Err(false),
                }
            }
            Err(_) if cancelupdate::parse(self.frag.message_bytes()).is_some() => {
                return self.cancel_update();
            }
            Err(_) => match rev2::rewrite(self.frag.message_bytes()) {
                Err(why) => {
                    let raw = String::from_utf8_lossy(self.frag.message_bytes());
                    let mut words = raw.split_whitespace().skip(1);
                    let mut name = words.next().unwrap_or("").to_ascii_uppercase();
                    if name == "UID" {
                        name = words.next().unwrap_or("").to_ascii_uppercase();
                    }
                    self.bad(&tag, &format!("Error in IMAP command {name}: {why}."));
                    return None;
                }
                Ok(None) => Err(false),
                Ok(Some(r)) => {
                    let c = match CommandCodec::default().decode(&r.bytes) {
                        Ok((b"", c)) => Ok(c.into_static()),
                        _ => Err(false),
                    };
                    rewritten = Some(r);
                    c
                }
            },
        };
        let raw = self.frag.message_bytes();
        let command = match decoded {
            Ok(c) => c,
            Err(true) => {
                self.push(&format!("{tag} BAD [TOOBIG] Command too long.\r\n"));
                self.error();
                return None;
            }
            Err(false) => {
                let word = String::from_utf8_lossy(raw)
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("")
                    .to_ascii_uppercase();
                let text = if KNOWN.contains(&word.as_str()) {
                    format!("Error in IMAP command {word}: Invalid arguments.")
                } else if word.is_empty() {
                    "Error in IMAP command: Missing command name.".into()
                } else {
                    "Error in IMAP command received by server.".into()
                };
                self.bad(&tag, &text);
                return None;
            }
        };
        self.rewrite = rewritten.map(|r| (r.search_return, r.saved));
        self.handle(command)
    }

    /// CANCELUPDATE (RFC 5267 §4.3.5: a command of the selected state).
    fn cancel_update(&mut self) -> Option<Action> {
        let (tag, parsed) = cancelupdate::parse(self.frag.message_bytes())?;
        match parsed {
            Err(why) => {
                self.bad(&tag, &format!("Error in IMAP command CANCELUPDATE: {why}."));
                None
            }
            Ok(_) if self.state == State::NotAuthenticated => {
                self.bad(&tag, "Error in IMAP command CANCELUPDATE: Not logged in.");
                None
            }
            Ok(_) if !matches!(self.state, State::Selected { .. }) => {
                self.bad(
                    &tag,
                    "Error in IMAP command CANCELUPDATE: No mailbox selected.",
                );
                None
            }
            Ok(tags) => {
                self.mode = Mode::Waiting;
                Some(Action::CancelUpdate { tag, tags })
            }
        }
    }

    fn handle(&mut self, cmd: Command<'static>) -> Option<Action> {
        let rewrite = self.rewrite.take();
        let tag = cmd.tag.as_ref().to_string();
        let name = cmd.body.name();
        use CommandBody as B;
        match cmd.body {
            B::Capability => {
                let caps = self.capabilities();
                self.push(&format!(
                    "* CAPABILITY {caps}\r\n{tag} OK Capability completed.\r\n"
                ));
                None
            }
            B::Logout => {
                self.push(&format!(
                    "* BYE Logging out\r\n{tag} OK Logout completed.\r\n"
                ));
                self.state = State::Logout;
                self.mode = Mode::Closed;
                Some(Action::Close)
            }
            B::Noop if !matches!(self.state, State::Selected { .. }) => {
                self.push(&format!("{tag} OK NOOP completed.\r\n"));
                None
            }
            B::StartTLS => {
                if self.state != State::NotAuthenticated {
                    self.bad(&tag, "STARTTLS only before login.");
                    None
                } else if self.cfg.login.tls_active {
                    self.bad(&tag, "TLS is already active.");
                    None
                } else if !self.cfg.login.tls_available {
                    self.bad(&tag, "TLS support isn't enabled.");
                    None
                } else {
                    self.push(&format!("{tag} OK Begin TLS negotiation now.\r\n"));
                    self.mode = Mode::Waiting;
                    Some(Action::StartTls)
                }
            }
            B::Login { username, password } => {
                if self.state != State::NotAuthenticated {
                    self.bad(&tag, "Already logged in.");
                    return None;
                }
                if !self.cfg.login.plaintext_allowed() {
                    self.push(&format!("{tag} NO [PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.\r\n"));
                    self.error();
                    return None;
                }
                let user = String::from_utf8_lossy(username.as_ref()).into_owned();
                let password = password.declassify().as_ref().to_vec();
                self.auth_tag = Some(tag);
                self.mode = Mode::Waiting;
                Some(Action::CheckAuth(Credentials::Plain {
                    authzid: None,
                    authcid: user,
                    password,
                }))
            }
            B::Authenticate {
                mechanism,
                initial_response,
            } => {
                if self.state != State::NotAuthenticated {
                    self.bad(&tag, "Already logged in.");
                    return None;
                }
                let mech = match &mechanism {
                    AuthMechanism::Plain => Some(Mechanism::Plain),
                    AuthMechanism::Login => Some(Mechanism::Login),
                    other => Mechanism::from_name(other.as_ref()),
                }
                .filter(|m| self.cfg.login.mechanisms.contains(m));
                let Some(mech) = mech else {
                    self.push(&format!(
                        "{tag} NO Unsupported authentication mechanism.\r\n"
                    ));
                    self.error();
                    return None;
                };
                if !self.cfg.login.may_use(mech) {
                    self.push(&format!("{tag} NO [PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.\r\n"));
                    self.error();
                    return None;
                }
                // SaslExchange speaks base64 lines: "=" is an empty initial
                // response (RFC 4959 §3).
                let ir = initial_response.map(|r| {
                    let raw = r.declassify();
                    if raw.is_empty() {
                        "=".to_string()
                    } else {
                        base64::engine::general_purpose::STANDARD.encode(raw.as_ref())
                    }
                });
                let (ex, step) = SaslExchange::start(mech, ir.as_deref(), &self.cfg.hostname);
                self.sasl_step(tag, ex, step);
                self.pending.take()
            }
            B::Id { .. } => {
                self.push(&format!(
                    "* ID (\"name\" \"pigeonpost\")\r\n{tag} OK ID completed.\r\n"
                ));
                None
            }
            B::Enable { capabilities } => {
                // RFC 5161 §3.1: only in the authenticated state, before
                // any mailbox is selected.
                if self.state == State::NotAuthenticated {
                    self.bad(&tag, "ENABLE needs a login first.");
                    return None;
                }
                if self.state != State::Authenticated {
                    self.bad(&tag, "ENABLE is only valid before a mailbox is selected.");
                    return None;
                }
                let mut enabled = Vec::new();
                for c in capabilities.as_ref() {
                    let name = format!("{c}");
                    if name.eq_ignore_ascii_case("UTF8=ACCEPT") && !self.utf8 {
                        self.utf8 = true;
                        enabled.push(name);
                    } else if name.eq_ignore_ascii_case("CONDSTORE") && !self.condstore {
                        // RFC 7162 §3.1
                        self.condstore = true;
                        enabled.push(name);
                    } else if name.eq_ignore_ascii_case("QRESYNC") && !self.qresync {
                        // RFC 7162 §3.2.3: QRESYNC implies CONDSTORE.
                        self.qresync = true;
                        self.condstore = true;
                        enabled.push(name);
                    } else if name.eq_ignore_ascii_case("IMAP4rev2") && !self.rev2 {
                        // RFC 9051 mailbox names are UTF-8, not modified UTF-7.
                        self.rev2 = true;
                        self.utf8 = true;
                        enabled.push(name);
                    }
                }
                let list = if enabled.is_empty() {
                    String::new()
                } else {
                    format!(" {}", enabled.join(" "))
                };
                self.push(&format!("* ENABLED{list}\r\n{tag} OK Enabled.\r\n"));
                None
            }
            B::Namespace => {
                if self.state == State::NotAuthenticated {
                    self.bad(&tag, "NAMESPACE needs a login first.");
                    return None;
                }
                self.push(&format!(
                    "* NAMESPACE ((\"\" {})) NIL NIL\r\n{tag} OK Namespace completed.\r\n",
                    quote(".")
                ));
                None
            }
            body => {
                let allowed = match self.state {
                    State::NotAuthenticated | State::Logout => false,
                    State::Authenticated => !selected_only(&body),
                    State::Selected { .. } => true,
                };
                if !allowed {
                    let text = if self.state == State::NotAuthenticated {
                        format!("Error in IMAP command {name}: Not logged in.")
                    } else {
                        format!("Error in IMAP command {name}: No mailbox selected.")
                    };
                    self.bad(&tag, &text);
                    return None;
                }
                let (search_return, saved) = rewrite.unwrap_or_default();
                let search_return = match (&body, search_return) {
                    (CommandBody::Search { .. }, None) if self.rev2 => {
                        Some(rev2::SearchReturn::ALL)
                    }
                    (_, r) => r,
                };
                self.mode = Mode::Waiting;
                Some(Action::Run {
                    tag,
                    command: Box::new(body),
                    options: RunOptions {
                        utf8: self.utf8,
                        rev2: self.rev2,
                        search_return,
                        saved,
                        condstore: self.condstore,
                        qresync: self.qresync,
                    },
                })
            }
        }
    }

    fn sasl_step(&mut self, tag: String, ex: SaslExchange, step: SaslStep) {
        match step {
            SaslStep::Challenge(c) => {
                self.push(&format!("+ {c}\r\n"));
                self.mode = Mode::Sasl { tag, exchange: ex };
            }
            SaslStep::Done(creds) => {
                self.auth_tag = Some(tag);
                self.mode = Mode::Waiting;
                self.pending = Some(Action::CheckAuth(creds));
            }
            SaslStep::Failed(e) => {
                self.mode = Mode::Commands;
                match e {
                    SaslError::Cancelled => {
                        self.push(&format!("{tag} BAD Authentication aborted by client.\r\n"))
                    }
                    other => self.push(&format!("{tag} BAD {other}.\r\n")),
                }
                self.error();
            }
        }
    }
}

/// Commands only valid with a mailbox selected (RFC 3501 §6.4).
fn selected_only(body: &CommandBody) -> bool {
    matches!(
        body,
        CommandBody::Check
            | CommandBody::Close
            | CommandBody::Unselect
            | CommandBody::Expunge
            | CommandBody::ExpungeUid { .. }
            | CommandBody::Search { .. }
            | CommandBody::Sort { .. }
            | CommandBody::Thread { .. }
            | CommandBody::Fetch { .. }
            | CommandBody::Store { .. }
            | CommandBody::Copy { .. }
            | CommandBody::Move { .. }
    )
}

/// Command names, for "Invalid arguments" versus "unknown command".
const KNOWN: &[&str] = &[
    "CAPABILITY",
    "NOOP",
    "LOGOUT",
    "STARTTLS",
    "AUTHENTICATE",
    "LOGIN",
    "SELECT",
    "EXAMINE",
    "CREATE",
    "DELETE",
    "RENAME",
    "SUBSCRIBE",
    "UNSUBSCRIBE",
    "LIST",
    "LSUB",
    "STATUS",
    "APPEND",
    "CHECK",
    "CLOSE",
    "UNSELECT",
    "EXPUNGE",
    "SEARCH",
    "SORT",
    "THREAD",
    "FETCH",
    "STORE",
    "COPY",
    "MOVE",
    "UID",
    "IDLE",
    "NAMESPACE",
    "ID",
    "ENABLE",
    "GETQUOTA",
    "GETQUOTAROOT",
    "SETQUOTA",
    "CANCELUPDATE",
];
