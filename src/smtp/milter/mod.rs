//! Milters (Sendmail's mail filter protocol, version 6, as Postfix speaks
//! it: MILTER_README, src/milter/milter8.c). `proto` is the sans-IO codec;
//! [`MilterSession`] is one SMTP connection's conversation with every
//! milter of `smtpd_milters`, in order; `edit` applies what a milter
//! changes in the message.
//!
//! Each SMTP stage is one event sent to each milter still interested: the
//! first one that rejects decides, and the SMTP command gets its reply.
//! At the end of DATA every milter in turn gets the message (headers,
//! body in chunks, end of message) and sees the changes the ones before it
//! made. A milter that cannot be reached, times out, or answers garbage
//! is treated by its default action (`milter_default_action`).

pub mod edit;
pub mod proto;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use self::edit::Editor;
use self::proto::{Command, DecodeError, Family, Negotiated, Response, Stage};
use super::proto::Reply;
use crate::config::{MilterDefault, MilterEndpoint, MilterSettings, MilterSpec};

/// Postfix's replies for a milter's plain reject and tempfail
/// (milter8.c: "550 5.7.1 Command rejected", "451 4.7.1 Service
/// unavailable - try again later").
pub fn reject_reply() -> Reply {
    Reply::new(550, "5.7.1", "Command rejected")
}

pub fn tempfail_reply() -> Reply {
    Reply::new(451, "4.7.1", "Service unavailable - try again later")
}

/// The most a milter may add to one message with its changes (headers,
/// a new body, recipients): far beyond any real filter's, and a bound on
/// what a broken one can make us hold in memory.
const MAX_EDITS: usize = 64 * 1024 * 1024;

/// What the milters made of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Go on (every milter continued or accepted).
    Continue,
    /// Refuse the command (or the message) with this reply; `milter`
    /// names the milter for the log.
    Refuse { reply: Reply, milter: String },
}

/// An envelope change a milter asked for at the end of the message; the
/// driver routes added recipients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvelopeEdit {
    ChangeFrom(String),
    AddRcpt(String),
    DelRcpt(String),
}

/// The outcome of the end-of-message stage.
#[derive(Debug)]
pub struct MessageOutcome {
    pub verdict: Verdict,
    /// The message as the milters left it; `None` when unchanged.
    pub message: Option<Vec<u8>>,
    pub envelope: Vec<EnvelopeEdit>,
}

/// What the driver tells the session at connect time.
#[derive(Debug, Clone)]
pub struct ConnectInfo {
    pub client: SocketAddr,
    pub local: SocketAddr,
    pub myhostname: String,
    /// `{tls_version}` and `{cipher}` when TLS is on.
    pub tls: Option<(String, String)>,
}

enum Sock {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Sock {
    async fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        match self {
            Sock::Tcp(s) => s.write_all(b).await,
            Sock::Unix(s) => s.write_all(b).await,
        }
    }
    async fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.read(b).await,
            Sock::Unix(s) => s.read(b).await,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Talking to it.
    Active,
    /// It accepted the connection (or its default action is accept after
    /// a failure): no more events.
    Done,
    /// It accepted the message: no more events until the next one.
    AcceptedMessage,
    /// It failed and its default action refuses everything.
    Failed,
}

/// Why talking to a milter failed.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("timeout")]
    Timeout,
    #[error("{0}")]
    Decode(#[from] DecodeError),
    #[error("connection closed")]
    Closed,
    #[error("unexpected reply {0:?}")]
    Unexpected(String),
}

struct Milter {
    spec: MilterSpec,
    default: MilterDefault,
    connect_timeout: Duration,
    command_timeout: Duration,
    content_timeout: Duration,
    sock: Option<Sock>,
    buf: Vec<u8>,
    neg: Negotiated,
    state: State,
    /// A MAIL event went out and no end of message or abort since.
    in_message: bool,
    /// The DATA event of the current message went out (at the DATA
    /// command; BDAT sends it with the message).
    data_sent: bool,
}

/// One SMTP connection's milters.
pub struct MilterSession {
    milters: Vec<Milter>,
    settings: MilterSettings,
    macros: HashMap<String, String>,
    /// The milters' verdict on the current message besides reject:
    /// DISCARD (drop it after 250) and QUARANTINE (hold it).
    discard: Option<String>,
    hold: Option<String>,
    /// A milter failed under `milter_default_action = quarantine`: every
    /// message of this connection is held, with this reason.
    hold_always: Option<String>,
}

impl MilterSession {
    /// A session for `specs` (nothing is connected yet); `None` when
    /// there are no milters.
    pub fn new(specs: &[MilterSpec], settings: &MilterSettings) -> Option<MilterSession> {
        if specs.is_empty() {
            return None;
        }
        let milters = specs
            .iter()
            .map(|spec| Milter {
                default: spec.default_action.unwrap_or(settings.default_action),
                connect_timeout: spec.connect_timeout.unwrap_or(settings.connect_timeout),
                command_timeout: spec.command_timeout.unwrap_or(settings.command_timeout),
                content_timeout: spec.content_timeout.unwrap_or(settings.content_timeout),
                spec: spec.clone(),
                sock: None,
                buf: Vec::new(),
                neg: Negotiated {
                    version: 0,
                    actions: 0,
                    protocol: 0,
                    symlists: Vec::new(),
                },
                state: State::Active,
                in_message: false,
                data_sent: false,
            })
            .collect();
        Some(MilterSession {
            milters,
            settings: settings.clone(),
            macros: HashMap::new(),
            discard: None,
            hold: None,
            hold_always: None,
        })
    }

    /// `{tls_version}` and `{cipher}` (at connect for implicit TLS, at
    /// HELO after STARTTLS).
    pub fn set_tls(&mut self, tls: Option<&(String, String)>) {
        if let Some((version, cipher)) = tls {
            self.set_macro("{tls_version}", version.as_str());
            self.set_macro("{cipher}", cipher.as_str());
        }
    }

    /// Sets a macro's value for the events that follow.
    pub fn set_macro(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        if value.is_empty() {
            self.macros.remove(name);
        } else {
            self.macros.insert(name.to_string(), value);
        }
    }

    /// The queue id given to the current transaction at MAIL FROM (the
    /// `i` macro), so the log lines and the stored message agree.
    pub fn queue_id(&self) -> Option<&str> {
        self.macros.get("i").map(String::as_str)
    }

    /// The milters asked to discard the current message (with the name of
    /// the one that did).
    pub fn discard(&self) -> Option<&str> {
        self.discard.as_deref()
    }

    /// The milters asked to hold the current message: the reason.
    pub fn hold(&self) -> Option<&str> {
        self.hold.as_deref()
    }

    /// The SMTP connection: connects to every milter, negotiates, and
    /// sends SMFIC_CONNECT. A refusal means every command but QUIT gets
    /// the reply.
    pub async fn connect(&mut self, info: &ConnectInfo) -> Verdict {
        let host = "unknown";
        self.set_macro("j", &info.myhostname);
        self.set_macro("{daemon_name}", &info.myhostname);
        self.set_macro("{daemon_addr}", info.local.ip().to_string());
        self.set_macro("{daemon_port}", info.local.port().to_string());
        self.set_macro("v", concat!("pigeonpost ", env!("CARGO_PKG_VERSION")));
        self.set_macro("_", format!("{host} [{}]", info.client.ip()));
        self.set_macro("{client_addr}", info.client.ip().to_string());
        self.set_macro("{client_port}", info.client.port().to_string());
        self.set_macro("{client_name}", host);
        self.set_macro("{client_ptr}", host);
        self.set_tls(info.tls.as_ref());
        for i in 0..self.milters.len() {
            let m = &mut self.milters[i];
            if let Err(e) = m.open(self.settings.protocol).await {
                tracing::warn!(milter = %m.spec.name, "milter {}: {e}", m.spec.name);
                // Its default action; a refusal comes with the connect event.
                let _ = self.failed(i);
            }
        }
        let ip = info.client.ip();
        let frame = Command::Connect {
            hostname: host,
            family: family(ip, info.client.port()),
        }
        .to_bytes();
        self.event(
            Stage::Connect,
            &frame,
            proto::SMFIP_NOCONNECT,
            proto::SMFIP_NR_CONN,
        )
        .await
    }

    /// HELO or EHLO.
    pub async fn helo(&mut self, name: &str) -> Verdict {
        let frame = Command::Helo(name).to_bytes();
        self.event(
            Stage::Helo,
            &frame,
            proto::SMFIP_NOHELO,
            proto::SMFIP_NR_HELO,
        )
        .await
    }

    /// MAIL FROM (a new transaction: a milter still in the last one gets
    /// SMFIC_ABORT first). `args` are the ESMTP parameters.
    pub async fn mail(&mut self, sender: &str, args: &[String], queue_id: &str) -> Verdict {
        self.discard = None;
        self.hold = self.hold_always.clone();
        for m in &mut self.milters {
            if m.state == State::AcceptedMessage {
                m.state = State::Active;
            }
            if m.in_message && m.state == State::Active {
                let _ = m.send(&Command::Abort.to_bytes()).await;
            }
            m.in_message = false;
            m.data_sent = false;
        }
        self.set_macro("i", queue_id);
        self.set_macro("{mail_addr}", sender);
        self.set_macro(
            "{mail_host}",
            sender.rsplit_once('@').map_or("", |(_, d)| d),
        );
        self.set_macro("{mail_mailer}", if sender.is_empty() { "" } else { "smtp" });
        let mut words = vec![format!("<{sender}>")];
        words.extend(args.iter().cloned());
        let frame = Command::Mail(&words).to_bytes();
        for m in &mut self.milters {
            m.in_message = m.state == State::Active;
        }
        self.event(
            Stage::Mail,
            &frame,
            proto::SMFIP_NOMAIL,
            proto::SMFIP_NR_MAIL,
        )
        .await
    }

    /// The SASL login name, `{auth_authen}`.
    pub fn authenticated(&mut self, user: &str) {
        self.set_macro("{auth_authen}", user);
    }

    /// RCPT TO; `mailer` is where it goes (`local`, `virtual`, `smtp`).
    pub async fn rcpt(&mut self, rcpt: &str, mailer: &str) -> Verdict {
        self.set_macro("{rcpt_addr}", rcpt);
        self.set_macro("{rcpt_host}", rcpt.rsplit_once('@').map_or("", |(_, d)| d));
        self.set_macro("{rcpt_mailer}", mailer);
        let words = vec![format!("<{rcpt}>")];
        let frame = Command::Rcpt(&words).to_bytes();
        self.event(
            Stage::Rcpt,
            &frame,
            proto::SMFIP_NORCPT,
            proto::SMFIP_NR_RCPT,
        )
        .await
    }

    /// The DATA command (Postfix sends SMFIC_DATA before its 354).
    pub async fn data(&mut self) -> Verdict {
        let frame = Command::Data.to_bytes();
        let verdict = self
            .event(
                Stage::Data,
                &frame,
                proto::SMFIP_NODATA,
                proto::SMFIP_NR_DATA,
            )
            .await;
        for m in &mut self.milters {
            m.data_sent = true;
        }
        verdict
    }

    /// The end of DATA: each milter in turn gets DATA, the headers, the
    /// body in chunks of at most 64 KiB and the end of message, and
    /// answers with its changes and its verdict.
    pub async fn message(&mut self, original: &[u8]) -> MessageOutcome {
        let mut current: Option<Vec<u8>> = None;
        let mut envelope = Vec::new();
        for i in 0..self.milters.len() {
            if self.milters[i].state != State::Active || self.discard.is_some() {
                continue;
            }
            let msg = current.as_deref().unwrap_or(original);
            let result = {
                let macros = &self.macros;
                let settings = &self.settings;
                self.milters[i].content(msg, macros, settings).await
            };
            let m = &mut self.milters[i];
            m.in_message = false;
            m.data_sent = false;
            match result {
                Ok(Content {
                    end,
                    editor,
                    envelope: env,
                    quarantine,
                }) => {
                    if editor.changed {
                        current = Some(editor.finish(msg));
                    }
                    envelope.extend(env);
                    if let Some(reason) = quarantine {
                        tracing::info!(milter = %m.spec.name, "milter {} quarantined the message: {reason}", m.spec.name);
                        self.hold = Some(reason);
                    }
                    match end {
                        End::Continue => {}
                        End::Discard => self.discard = Some(m.spec.name.clone()),
                        End::Refuse(reply) => {
                            return MessageOutcome {
                                verdict: Verdict::Refuse {
                                    reply,
                                    milter: m.spec.name.clone(),
                                },
                                message: current,
                                envelope,
                            };
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(milter = %m.spec.name, "milter {}: end of message: {e}", m.spec.name);
                    if let Some(reply) = self.failed(i) {
                        return MessageOutcome {
                            verdict: Verdict::Refuse {
                                reply,
                                milter: self.milters[i].spec.name.clone(),
                            },
                            message: current,
                            envelope,
                        };
                    }
                }
            }
        }
        MessageOutcome {
            verdict: Verdict::Continue,
            message: current,
            envelope,
        }
    }

    /// The SMTP session ends: SMFIC_QUIT to every milter still connected.
    pub async fn quit(&mut self) {
        for m in &mut self.milters {
            if m.sock.is_some() {
                let _ = tokio::time::timeout(m.command_timeout, m.send(&Command::Quit.to_bytes()))
                    .await;
                m.sock = None;
            }
        }
    }

    /// Milter `i` failed: its default action. `Some` is the reply that
    /// refuses the command.
    fn failed(&mut self, i: usize) -> Option<Reply> {
        let m = &mut self.milters[i];
        m.fail();
        match m.default {
            MilterDefault::Accept => None,
            MilterDefault::Quarantine => {
                let reason = format!("milter {} failed", m.spec.name);
                self.hold = Some(reason.clone());
                self.hold_always = Some(reason);
                None
            }
            MilterDefault::Tempfail => Some(tempfail_reply()),
            MilterDefault::Reject => Some(reject_reply()),
        }
    }

    /// Sends one envelope event to every milter that wants it.
    async fn event(&mut self, stage: Stage, frame: &[u8], skip: u32, no_reply: u32) -> Verdict {
        for i in 0..self.milters.len() {
            let m = &mut self.milters[i];
            match m.state {
                State::Done | State::AcceptedMessage => continue,
                State::Failed => {
                    // Postfix: a failed milter answers every later event
                    // with its default action's reply.
                    if let Some(reply) = self.failed(i) {
                        return Verdict::Refuse {
                            reply,
                            milter: self.milters[i].spec.name.clone(),
                        };
                    }
                    continue;
                }
                State::Active => {}
            }
            if self.discard.is_some() {
                break;
            }
            if m.neg.protocol & skip != 0 {
                continue;
            }
            let macros = m.macro_frame(stage, &self.macros, &self.settings);
            let timeout = m.command_timeout;
            let wait = m.neg.protocol & no_reply == 0;
            let result = m.exchange(&macros, frame, wait, timeout).await;
            let name = m.spec.name.clone();
            match result {
                Ok(None) | Ok(Some(Response::Continue)) => {}
                Ok(Some(Response::Accept)) => {
                    m.state = match stage {
                        Stage::Connect | Stage::Helo => State::Done,
                        _ => State::AcceptedMessage,
                    };
                }
                Ok(Some(Response::Discard)) if matches!(stage, Stage::Mail | Stage::Rcpt) => {
                    m.state = State::AcceptedMessage;
                    self.discard = Some(name);
                }
                Ok(Some(r)) => match refusal(&r) {
                    Some(reply) => {
                        if matches!(r, Response::ConnFail | Response::Shutdown) {
                            m.fail();
                        }
                        return Verdict::Refuse {
                            reply,
                            milter: name,
                        };
                    }
                    None => {
                        tracing::warn!(milter = %name, "milter {name}: unexpected reply {r:?} to {stage:?}");
                        if let Some(reply) = self.failed(i) {
                            return Verdict::Refuse {
                                reply,
                                milter: name,
                            };
                        }
                    }
                },
                Err(e) => {
                    tracing::warn!(milter = %name, "milter {name}: {stage:?} event: {e}");
                    if let Some(reply) = self.failed(i) {
                        return Verdict::Refuse {
                            reply,
                            milter: name,
                        };
                    }
                }
            }
        }
        Verdict::Continue
    }
}

/// The SMTP reply for a refusing response, `None` if it is not one.
fn refusal(r: &Response) -> Option<Reply> {
    match r {
        Response::Reject => Some(reject_reply()),
        Response::Tempfail | Response::ConnFail | Response::Shutdown => Some(tempfail_reply()),
        Response::ReplyCode(text) => {
            let (code, lines) = proto::split_reply_code(text);
            Some(Reply::multi(code, lines))
        }
        _ => None,
    }
}

fn family(ip: IpAddr, port: u16) -> Family {
    Family::Inet(ip, port)
}

enum End {
    Continue,
    Discard,
    Refuse(Reply),
}

struct Content {
    end: End,
    editor: Editor,
    envelope: Vec<EnvelopeEdit>,
    quarantine: Option<String>,
}

/// `<addr>` → `addr`.
fn unbracket(s: &str) -> String {
    let s = s.trim();
    s.strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(s)
        .to_string()
}

impl Milter {
    fn fail(&mut self) {
        self.sock = None;
        self.buf.clear();
        self.in_message = false;
        self.data_sent = false;
        self.state = match self.default {
            MilterDefault::Accept | MilterDefault::Quarantine => State::Done,
            MilterDefault::Tempfail | MilterDefault::Reject => State::Failed,
        };
    }

    /// Connects and negotiates (SMFIC_OPTNEG), within connect_timeout.
    async fn open(&mut self, version: u32) -> Result<(), Failure> {
        let limit = self.connect_timeout;
        let endpoint = self.spec.endpoint.clone();
        let connect = async {
            Ok::<_, std::io::Error>(match &endpoint {
                MilterEndpoint::Inet(host, port) => {
                    let tcp = TcpStream::connect((host.as_str(), *port)).await?;
                    // Frames the milter does not answer (SMFIP_NR_*, the
                    // headers, the body chunks) go out back to back: without
                    // this, Nagle holds the end-of-message frame until the
                    // milter's delayed ACK (40 ms on Linux) for every message.
                    let _ = tcp.set_nodelay(true);
                    Sock::Tcp(tcp)
                }
                MilterEndpoint::Unix(path) => Sock::Unix(UnixStream::connect(path).await?),
            })
        };
        let sock = tokio::time::timeout(limit, connect)
            .await
            .map_err(|_| Failure::Timeout)??;
        self.sock = Some(sock);
        let optneg = Command::OptNeg {
            version,
            actions: proto::ACTIONS,
            protocol: proto::PROTOCOL_OFFER,
        }
        .to_bytes();
        match self.exchange(&[], &optneg, true, limit).await? {
            Some(Response::OptNeg(n)) => {
                // The milter may only ask for what we offered (milter8.c).
                if n.version < 2 || n.version > version {
                    return Err(Failure::Unexpected(format!(
                        "protocol version {}",
                        n.version
                    )));
                }
                self.neg = Negotiated {
                    actions: n.actions & proto::ACTIONS,
                    protocol: n.protocol & proto::PROTOCOL_OFFER,
                    ..n
                };
                Ok(())
            }
            other => Err(Failure::Unexpected(format!("{other:?}"))),
        }
    }

    async fn send(&mut self, frame: &[u8]) -> Result<(), Failure> {
        let sock = self.sock.as_mut().ok_or(Failure::Closed)?;
        sock.write_all(frame).await?;
        Ok(())
    }

    /// Reads one response; SMFIR_PROGRESS restarts the timer.
    async fn read(&mut self, timeout: Duration) -> Result<Response, Failure> {
        loop {
            if let Some((n, r)) = proto::decode(&self.buf)? {
                self.buf.drain(..n);
                if r == Response::Progress {
                    continue;
                }
                return Ok(r);
            }
            let sock = self.sock.as_mut().ok_or(Failure::Closed)?;
            let mut chunk = [0u8; 8192];
            let n = tokio::time::timeout(timeout, sock.read(&mut chunk))
                .await
                .map_err(|_| Failure::Timeout)??;
            if n == 0 {
                return Err(Failure::Closed);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends the macros and the command; the reply when one is expected.
    async fn exchange(
        &mut self,
        macros: &[u8],
        frame: &[u8],
        wait: bool,
        timeout: Duration,
    ) -> Result<Option<Response>, Failure> {
        let mut out = Vec::with_capacity(macros.len() + frame.len());
        out.extend_from_slice(macros);
        out.extend_from_slice(frame);
        tokio::time::timeout(timeout, self.send(&out))
            .await
            .map_err(|_| Failure::Timeout)??;
        if !wait {
            return Ok(None);
        }
        self.read(timeout).await.map(Some)
    }

    /// The SMFIC_MACRO frame for `stage`: the milter's own list if it set
    /// one (SMFIR_SETSYMLIST), else ours; only macros with a value.
    fn macro_frame(
        &self,
        stage: Stage,
        values: &HashMap<String, String>,
        settings: &MilterSettings,
    ) -> Vec<u8> {
        let ours = match stage {
            Stage::Connect => &settings.connect_macros,
            Stage::Helo => &settings.helo_macros,
            Stage::Mail => &settings.mail_macros,
            Stage::Rcpt => &settings.rcpt_macros,
            Stage::Data => &settings.data_macros,
            Stage::EndOfHeaders => &settings.eoh_macros,
            Stage::EndOfMessage => &settings.eod_macros,
        };
        let names = self
            .neg
            .symlists
            .iter()
            .find(|(s, _)| *s == stage)
            .map_or(ours, |(_, l)| l);
        let pairs: Vec<(String, String)> = names
            .iter()
            .filter_map(|n| {
                // `{i}` and `i` are the same macro.
                let bare = n.trim_start_matches('{').trim_end_matches('}');
                let v = values
                    .get(n.as_str())
                    .or_else(|| values.get(bare))
                    .or_else(|| values.get(&format!("{{{bare}}}")))?;
                Some((n.clone(), v.clone()))
            })
            .collect();
        if pairs.is_empty() {
            return Vec::new();
        }
        Command::Macro {
            stage: stage.command(),
            pairs: &pairs,
        }
        .to_bytes()
    }

    /// The message stage for this milter.
    async fn content(
        &mut self,
        msg: &[u8],
        values: &HashMap<String, String>,
        settings: &MilterSettings,
    ) -> Result<Content, Failure> {
        let p = self.neg.protocol;
        let command = self.command_timeout;
        let timeout = self.content_timeout;
        let leading = p & proto::SMFIP_HDR_LEADSPC != 0;
        let mut editor = Editor::new(msg);
        let refused = |r: Response| -> Result<Content, Failure> {
            match r {
                Response::Accept | Response::Continue => unreachable!(),
                Response::Discard => Ok(Content {
                    end: End::Discard,
                    editor: Editor::new(b""),
                    envelope: Vec::new(),
                    quarantine: None,
                }),
                r => match refusal(&r) {
                    Some(reply) => Ok(Content {
                        end: End::Refuse(reply),
                        editor: Editor::new(b""),
                        envelope: Vec::new(),
                        quarantine: None,
                    }),
                    None => Err(Failure::Unexpected(format!("{r:?}"))),
                },
            }
        };
        let accepted = || Content {
            end: End::Continue,
            editor: Editor::new(b""),
            envelope: Vec::new(),
            quarantine: None,
        };
        // DATA, unless it went out with the DATA command.
        if p & proto::SMFIP_NODATA == 0 && !self.data_sent {
            let macros = self.macro_frame(Stage::Data, values, settings);
            let wait = p & proto::SMFIP_NR_DATA == 0;
            match self
                .exchange(&macros, &Command::Data.to_bytes(), wait, command)
                .await?
            {
                None | Some(Response::Continue) => {}
                Some(Response::Accept) => return Ok(accepted()),
                Some(r) => return refused(r),
            }
        }
        // Headers, one event each.
        if p & proto::SMFIP_NOHDRS == 0 {
            let wait = p & proto::SMFIP_NR_HDR == 0;
            for f in &editor.fields {
                let name = f.name();
                let value = f.value(leading);
                let frame = Command::Header {
                    name: &name,
                    value: &value,
                }
                .to_bytes();
                match self.exchange(&[], &frame, wait, timeout).await? {
                    None | Some(Response::Continue) => {}
                    Some(Response::Accept) => return Ok(accepted()),
                    Some(r) => return refused(r),
                }
            }
        }
        if p & proto::SMFIP_NOEOH == 0 {
            let macros = self.macro_frame(Stage::EndOfHeaders, values, settings);
            let wait = p & proto::SMFIP_NR_EOH == 0;
            match self
                .exchange(&macros, &Command::Eoh.to_bytes(), wait, timeout)
                .await?
            {
                None | Some(Response::Continue) => {}
                Some(Response::Accept) => return Ok(accepted()),
                Some(r) => return refused(r),
            }
        }
        // The body, straight from the buffer, in chunks.
        if p & proto::SMFIP_NOBODY == 0 {
            let wait = p & proto::SMFIP_NR_BODY == 0;
            for chunk in msg[editor.body_start()..].chunks(proto::BODY_CHUNK) {
                let frame = Command::Body(chunk).to_bytes();
                match self.exchange(&[], &frame, wait, timeout).await? {
                    None | Some(Response::Continue) => {}
                    Some(Response::Skip) if p & proto::SMFIP_SKIP != 0 => break,
                    Some(Response::Accept) => return Ok(accepted()),
                    Some(r) => return refused(r),
                }
            }
        }
        // End of message: modifications, then the verdict.
        let macros = self.macro_frame(Stage::EndOfMessage, values, settings);
        self.exchange(&macros, &Command::BodyEob.to_bytes(), false, timeout)
            .await?;
        let mut envelope = Vec::new();
        let mut quarantine = None;
        let a = self.neg.actions;
        // What a milter may add in all: a runaway one is a broken one.
        let mut budget = MAX_EDITS;
        let mut spend = |n: usize| -> Result<(), Failure> {
            budget = budget
                .checked_sub(n + 64)
                .ok_or_else(|| Failure::Unexpected("too many changes".into()))?;
            Ok(())
        };
        let allowed = |flag: u32, what: &str| -> Result<(), Failure> {
            if a & flag == 0 {
                Err(Failure::Unexpected(format!("{what} not negotiated")))
            } else {
                Ok(())
            }
        };
        loop {
            let r = self.read(timeout).await?;
            match r {
                Response::Continue | Response::Accept => break,
                Response::AddHeader { name, value } => {
                    allowed(proto::SMFIF_ADDHDRS, "ADDHEADER")?;
                    spend(name.len() + value.len())?;
                    editor.add(&name, &value, leading);
                }
                Response::InsHeader { index, name, value } => {
                    allowed(proto::SMFIF_ADDHDRS, "INSHEADER")?;
                    spend(name.len() + value.len())?;
                    editor.insert(index, &name, &value, leading);
                }
                Response::ChgHeader { index, name, value } => {
                    allowed(proto::SMFIF_CHGHDRS, "CHGHEADER")?;
                    spend(name.len() + value.len())?;
                    editor.change(index, &name, &value, leading);
                }
                Response::ReplBody(chunk) => {
                    allowed(proto::SMFIF_CHGBODY, "REPLBODY")?;
                    spend(chunk.len())?;
                    editor.body_chunk(&chunk);
                }
                Response::AddRcpt(r) => {
                    allowed(proto::SMFIF_ADDRCPT, "ADDRCPT")?;
                    spend(r.len())?;
                    envelope.push(EnvelopeEdit::AddRcpt(unbracket(&r)));
                }
                Response::AddRcptPar(r, _) => {
                    allowed(proto::SMFIF_ADDRCPT_PAR, "ADDRCPT_PAR")?;
                    spend(r.len())?;
                    envelope.push(EnvelopeEdit::AddRcpt(unbracket(&r)));
                }
                Response::DelRcpt(r) => {
                    allowed(proto::SMFIF_DELRCPT, "DELRCPT")?;
                    envelope.push(EnvelopeEdit::DelRcpt(unbracket(&r)));
                }
                Response::ChgFrom(f, _) => {
                    allowed(proto::SMFIF_CHGFROM, "CHGFROM")?;
                    envelope.push(EnvelopeEdit::ChangeFrom(unbracket(&f)));
                }
                Response::Quarantine(reason) => {
                    allowed(proto::SMFIF_QUARANTINE, "QUARANTINE")?;
                    quarantine = Some(reason);
                }
                r => return refused(r),
            }
        }
        Ok(Content {
            end: End::Continue,
            editor,
            envelope,
            quarantine,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_milters;
    use tokio::net::TcpListener;

    fn settings() -> MilterSettings {
        let words = |s: &str| s.split_whitespace().map(String::from).collect();
        MilterSettings {
            protocol: 6,
            default_action: MilterDefault::Tempfail,
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(5),
            content_timeout: Duration::from_secs(5),
            connect_macros: words("j {daemon_name} {daemon_addr} v _"),
            helo_macros: words("{tls_version} {cipher}"),
            mail_macros: words("i {auth_authen} {mail_addr}"),
            rcpt_macros: words("i {rcpt_addr}"),
            data_macros: words("i"),
            eoh_macros: words("i"),
            eod_macros: words("i"),
        }
    }

    fn info() -> ConnectInfo {
        ConnectInfo {
            client: "192.0.2.7:40000".parse().unwrap(),
            local: "127.0.0.1:25".parse().unwrap(),
            myhostname: "mx.example".into(),
            tls: None,
        }
    }

    fn frame(cmd: u8, data: &[u8]) -> Vec<u8> {
        let mut v = ((data.len() + 1) as u32).to_be_bytes().to_vec();
        v.push(cmd);
        v.extend_from_slice(data);
        v
    }

    /// A scripted milter: negotiates `protocol` and a SETSYMLIST for MAIL,
    /// answers CONTINUE to what needs an answer, adds a header at the end
    /// of the message, and records every frame it got.
    async fn scripted(protocol: u32) -> (u16, tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            loop {
                let mut len = [0u8; 4];
                if s.read_exact(&mut len).await.is_err() {
                    return;
                }
                let mut data = vec![0u8; u32::from_be_bytes(len) as usize];
                s.read_exact(&mut data).await.unwrap();
                let cmd = data[0];
                let _ = tx.send(data);
                let reply = match cmd {
                    b'O' => {
                        let mut d = Vec::new();
                        for n in [6u32, proto::ACTIONS, protocol, 2] {
                            d.extend_from_slice(&n.to_be_bytes());
                        }
                        d.extend_from_slice(b"{mail_addr}\0");
                        frame(b'O', &d)
                    }
                    b'D' | b'A' => continue,
                    b'H' if protocol & proto::SMFIP_NR_HELO != 0 => continue,
                    b'E' => {
                        let mut r = frame(b'h', b"X-Scripted\0yes\0");
                        r.extend(frame(b'c', b""));
                        r
                    }
                    _ => frame(b'c', b""),
                };
                s.write_all(&reply).await.unwrap();
            }
        });
        (port, rx)
    }

    #[tokio::test]
    async fn a_whole_conversation() {
        let (port, mut rx) = scripted(proto::SMFIP_NR_HELO | proto::SMFIP_NORCPT).await;
        let specs = parse_milters(&format!("inet:127.0.0.1:{port}")).unwrap();
        let mut m = MilterSession::new(&specs, &settings()).unwrap();
        assert_eq!(m.connect(&info()).await, Verdict::Continue);
        assert_eq!(m.helo("client.example").await, Verdict::Continue);
        assert_eq!(m.mail("a@b.example", &[], "QID1").await, Verdict::Continue);
        assert_eq!(m.rcpt("c@d.example", "local").await, Verdict::Continue);
        // A second transaction: the first is aborted.
        assert_eq!(m.mail("e@f.example", &[], "QID2").await, Verdict::Continue);
        // DATA at the DATA command; not again with the message.
        assert_eq!(m.data().await, Verdict::Continue);
        let out = m.message(b"Subject: hi\r\n\r\nbody\r\n").await;
        assert_eq!(out.verdict, Verdict::Continue);
        assert_eq!(
            out.message.unwrap(),
            b"Subject: hi\r\nX-Scripted: yes\r\n\r\nbody\r\n"
        );
        m.quit().await;
        let mut got = Vec::new();
        while let Some(f) = rx.recv().await {
            got.push(f);
        }
        let want: Vec<Vec<u8>> = vec![
            b"O\0\0\0\x06\0\0\x01\xff\0\x1f\xff\xff".to_vec(),
            [
                &b"DCj\0mx.example\0{daemon_name}\0mx.example\0{daemon_addr}\x00127.0.0.1\0v\0"[..],
                concat!("pigeonpost ", env!("CARGO_PKG_VERSION")).as_bytes(),
                b"\0_\0unknown [192.0.2.7]\0",
            ]
            .concat(),
            b"Cunknown\x004\x9c\x40192.0.2.7\0".to_vec(),
            // HELO: no macros with a value, no reply expected.
            b"Hclient.example\0".to_vec(),
            // The milter's own list for MAIL: only {mail_addr}.
            b"DM{mail_addr}\0a@b.example\0".to_vec(),
            b"M<a@b.example>\0".to_vec(),
            // No RCPT (SMFIP_NORCPT); ABORT before the next MAIL.
            b"A".to_vec(),
            b"DM{mail_addr}\0e@f.example\0".to_vec(),
            b"M<e@f.example>\0".to_vec(),
            b"DTi\0QID2\0".to_vec(),
            b"T".to_vec(),
            b"LSubject\0hi\0".to_vec(),
            b"DNi\0QID2\0".to_vec(),
            b"N".to_vec(),
            b"Bbody\r\n".to_vec(),
            b"DEi\0QID2\0".to_vec(),
            b"E".to_vec(),
            b"Q".to_vec(),
        ];
        assert_eq!(
            got.iter()
                .map(|f| String::from_utf8_lossy(f).into_owned())
                .collect::<Vec<_>>(),
            want.iter()
                .map(|f| String::from_utf8_lossy(f).into_owned())
                .collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn default_actions_when_the_milter_is_down() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let spec = |action: &str| {
            parse_milters(&format!(
                "{{ inet:127.0.0.1:{port}, default_action = {action} }}"
            ))
            .unwrap()
        };
        let mut m = MilterSession::new(&spec("tempfail"), &settings()).unwrap();
        let refused = Verdict::Refuse {
            reply: tempfail_reply(),
            milter: format!("inet:127.0.0.1:{port}"),
        };
        assert_eq!(m.connect(&info()).await, refused);
        assert_eq!(m.mail("a@b", &[], "Q").await, refused);

        let mut m = MilterSession::new(&spec("accept"), &settings()).unwrap();
        assert_eq!(m.connect(&info()).await, Verdict::Continue);
        assert_eq!(m.mail("a@b", &[], "Q").await, Verdict::Continue);
        assert_eq!(m.hold(), None);

        // Quarantine: every message of the connection is held.
        let mut m = MilterSession::new(&spec("quarantine"), &settings()).unwrap();
        assert_eq!(m.connect(&info()).await, Verdict::Continue);
        for q in ["Q1", "Q2"] {
            assert_eq!(m.mail("a@b", &[], q).await, Verdict::Continue);
            let out = m.message(b"\r\nbody\r\n").await;
            assert_eq!(out.verdict, Verdict::Continue);
            assert!(m.hold().unwrap().contains("failed"));
        }
    }
}
