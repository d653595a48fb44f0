//! Postfix policy delegation (SMTPD_POLICY_README): `name=value` lines and
//! an empty line to the policy server, `action=…` and an empty line back.
//! Connections are kept per endpoint and reused (`max_idle`, `max_ttl`,
//! `request_limit`); a failed request is retried `try_limit` times, then
//! the caller applies `default_action`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

use crate::config::restrictions::{PolicyDefaults, PolicyService};

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Conn {
    io: BufReader<Box<dyn Io>>,
    opened: Instant,
    last_used: Instant,
    requests: u32,
}

/// The effective settings of one service: its own `{ … }` options over
/// the `smtpd_policy_service_*` defaults.
pub struct Settings<'a> {
    pub timeout: Duration,
    pub max_idle: Duration,
    pub max_ttl: Duration,
    pub request_limit: u32,
    pub try_limit: u32,
    pub retry_delay: Duration,
    pub default_action: &'a str,
    pub policy_context: &'a str,
}

impl<'a> Settings<'a> {
    pub fn of(s: &'a PolicyService, d: &'a PolicyDefaults) -> Settings<'a> {
        Settings {
            timeout: s.timeout.unwrap_or(d.timeout),
            max_idle: s.max_idle.unwrap_or(d.max_idle),
            max_ttl: s.max_ttl.unwrap_or(d.max_ttl),
            request_limit: s.request_limit.unwrap_or(d.request_limit),
            try_limit: s.try_limit.unwrap_or(d.try_limit).max(1),
            retry_delay: s.retry_delay.unwrap_or(d.retry_delay),
            default_action: s.default_action.as_deref().unwrap_or(&d.default_action),
            policy_context: s.policy_context.as_deref().unwrap_or(&d.policy_context),
        }
    }
}

/// Idle connections to every policy server, shared by all SMTP sessions.
#[derive(Default)]
pub struct Clients {
    idle: Mutex<HashMap<String, Vec<Conn>>>,
}

/// The longest answer line and the most lines accepted from a server.
const MAX_LINE: usize = 4096;
const MAX_LINES: usize = 100;

async fn connect(endpoint: &str) -> std::io::Result<Box<dyn Io>> {
    match endpoint.split_once(':') {
        Some(("inet", addr)) => {
            let s = tokio::net::TcpStream::connect(addr.trim_matches(['[', ']'])).await;
            let s = match s {
                Ok(s) => s,
                // "inet:[::1]:10023"
                Err(_) if addr.starts_with('[') => {
                    let (host, port) = addr.rsplit_once(':').unwrap_or((addr, ""));
                    tokio::net::TcpStream::connect(format!("{host}:{port}")).await?
                }
                Err(e) => return Err(e),
            };
            let _ = s.set_nodelay(true);
            Ok(Box::new(s))
        }
        Some(("unix", path)) => Ok(Box::new(tokio::net::UnixStream::connect(path).await?)),
        _ => Err(std::io::Error::other(format!(
            "bad policy endpoint {endpoint}"
        ))),
    }
}

/// Reads the answer: lines up to an empty one; returns the `action`.
async fn read_answer(io: &mut BufReader<Box<dyn Io>>) -> Result<String, String> {
    let mut action = None;
    for _ in 0..MAX_LINES {
        let mut line = Vec::new();
        let n = (&mut *io)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed before the end of the answer".into());
        }
        if line.last() != Some(&b'\n') {
            return Err("answer line too long".into());
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        if text.is_empty() {
            return action.ok_or_else(|| "answer without action=".to_string());
        }
        match text.split_once('=') {
            Some(("action", v)) => action = Some(v.trim().to_string()),
            Some(_) => {}
            None => return Err(format!("malformed answer line '{}'", text.escape_debug())),
        }
    }
    Err("answer too long".into())
}

use tokio::io::AsyncReadExt;

impl Clients {
    fn take(&self, endpoint: &str, s: &Settings<'_>) -> Option<Conn> {
        let mut idle = self.idle.lock().ok()?;
        let list = idle.get_mut(endpoint)?;
        while let Some(c) = list.pop() {
            if c.last_used.elapsed() < s.max_idle && c.opened.elapsed() < s.max_ttl {
                return Some(c);
            }
        }
        None
    }

    fn put(&self, endpoint: &str, c: Conn, s: &Settings<'_>) {
        if s.request_limit > 0 && c.requests >= s.request_limit {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            let list = idle.entry(endpoint.to_string()).or_default();
            // Enough for the sessions of one server; more would only idle.
            if list.len() < 64 {
                list.push(c);
            }
        }
    }

    async fn once(
        &self,
        endpoint: &str,
        request: &[u8],
        s: &Settings<'_>,
    ) -> Result<String, String> {
        let conn = match self.take(endpoint, s) {
            Some(c) => c,
            None => {
                let io = tokio::time::timeout(s.timeout, connect(endpoint))
                    .await
                    .map_err(|_| "connect timed out".to_string())?
                    .map_err(|e| format!("connect: {e}"))?;
                Conn {
                    io: BufReader::new(io),
                    opened: Instant::now(),
                    last_used: Instant::now(),
                    requests: 0,
                }
            }
        };
        let mut conn = conn;
        let exchange = async {
            conn.io
                .get_mut()
                .write_all(request)
                .await
                .map_err(|e| format!("write: {e}"))?;
            read_answer(&mut conn.io).await
        };
        let action = tokio::time::timeout(s.timeout, exchange)
            .await
            .map_err(|_| format!("no answer within {}s", s.timeout.as_secs()))??;
        conn.requests += 1;
        conn.last_used = Instant::now();
        self.put(endpoint, conn, s);
        Ok(action)
    }

    /// Asks the server at `endpoint`; `Err` after `try_limit` failures.
    pub async fn ask(
        &self,
        endpoint: &str,
        attrs: &[(&str, String)],
        s: &Settings<'_>,
    ) -> Result<String, String> {
        let mut request = Vec::with_capacity(512);
        for (name, value) in attrs {
            // A newline in a value would end the attribute early.
            let value: String = value.chars().filter(|c| *c != '\n' && *c != '\r').collect();
            request.extend_from_slice(format!("{name}={value}\n").as_bytes());
        }
        request.push(b'\n');
        let mut last = String::new();
        for attempt in 0..s.try_limit {
            if attempt > 0 {
                tokio::time::sleep(s.retry_delay).await;
            }
            match self.once(endpoint, &request, s).await {
                Ok(action) => return Ok(action),
                Err(e) => {
                    tracing::warn!(
                        endpoint,
                        attempt = attempt + 1,
                        "policy service problem: {e}"
                    );
                    last = e;
                }
            }
        }
        Err(last)
    }
}
