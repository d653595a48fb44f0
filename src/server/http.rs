//! The `listen.http` endpoint of the server itself: `/healthz` (alive), `/readyz` (every listener
//! bound, queue and mail store writable), `/metrics` (OpenMetrics text),
//! mail client autoconfiguration (server/autoconfig.rs) and ACME http-01
//! challenges (`/.well-known/acme-challenge/`). A deliberately tiny
//! HTTP/1.1 responder: one request per connection, GET (and POST for
//! Outlook's Autodiscover).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::autoconfig;
use super::State;
use crate::net::pending::refusal_line;
use crate::net::{BoxFuture, Conn, Handler, Refusal};

const ACME_CHALLENGE_PATH: &str = "/.well-known/acme-challenge/";

pub struct HttpHandler {
    pub state: Arc<State>,
}

/// The parts of a request the endpoints use.
struct Request {
    method: String,
    /// The path without the query string.
    path: String,
    query: String,
    body: String,
}

/// Largest request head, and largest body (an Autodiscover POST is ~400 bytes).
const MAX_HEAD: usize = 8192;
const MAX_BODY: usize = 16384;

/// Reads one request: the head (up to 8 KiB) and a `Content-Length` body
/// (up to 16 KiB). `None` for anything else.
async fn read_request(conn: &mut Conn) -> Option<Request> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if let Some(i) = buf.windows(2).position(|w| w == b"\n\n") {
            break i + 2;
        }
        let n = conn.stream.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > MAX_HEAD {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.lines();
    let mut parts = lines.next()?.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let (path, query) = (path.to_string(), query.to_string());
    let length = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    if length > MAX_BODY {
        return None;
    }
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = conn.stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Some(Request {
        method,
        path,
        query,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// The checks behind `/readyz`: every listener bound, and the queue and the
/// mail store writable. Tables, users and certificates need no check here:
/// `serve` does not start without them, and a broken reload keeps the old
/// version. Returns whether all passed and one line per check.
fn readiness(state: &State) -> (bool, String) {
    let mut ok = state.ready.load(Ordering::SeqCst);
    let mut report = format!(
        "listeners: {}\n",
        if ok { "bound" } else { "not yet bound" }
    );
    let mut dirs = vec![("queue_directory", state.config.queue_directory.as_path())];
    if let Some(base) = &state.config.virtual_mailbox_base {
        dirs.push(("virtual_mailbox_base", base.as_path()));
    }
    for (key, dir) in dirs {
        match probe_writable(dir) {
            Ok(()) => report += &format!("{key} {}: writable\n", dir.display()),
            Err(e) => {
                ok = false;
                report += &format!("{key} {}: not writable: {e}\n", dir.display());
            }
        }
    }
    (ok, report)
}

/// Creates and removes an empty file in `dir`.
fn probe_writable(dir: &std::path::Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".readyz.{}", std::process::id()));
    let result = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&probe)
        .map(drop);
    let _ = std::fs::remove_file(&probe);
    result
}

/// The autoconfiguration endpoints (server/autoconfig.rs): `None` when the
/// request is not one of them. An address of a domain this server does not
/// receive mail for gets 404.
fn client_config(state: &State, method: &str, path: &str, request: &Request) -> Option<Vec<u8>> {
    let hosted = |domain: &str| {
        let t = &state.tables;
        t.mydestination.contains(domain)
            || t.virtual_mailbox_domains.contains(domain)
            || t.virtual_alias_domains.contains(domain)
    };
    let offer = || {
        autoconfig::Offer::from_config(
            &state.config,
            state.smtp_tls.is_some(),
            state.mail_tls.is_some(),
        )
    };
    let unknown = || response("404 Not Found", "text/plain", "no such mail domain here\n");
    let xml = "application/xml; charset=utf-8";
    match (method, path.to_ascii_lowercase().as_str()) {
        ("GET", "/.well-known/autoconfig/mail/config-v1.1.xml" | "/mail/config-v1.1.xml") => {
            // Without an address, the server's own domain.
            let domain = match autoconfig::query_address(&request.query) {
                Some(raw) => match autoconfig::checked_address(&raw, hosted) {
                    Some(address) => address.rsplit_once('@').map(|(_, d)| d.to_string())?,
                    None => return Some(unknown()),
                },
                None => state.config.mydomain.clone(),
            };
            Some(response(
                "200 OK",
                xml,
                &autoconfig::thunderbird(&offer(), &domain),
            ))
        }
        ("POST" | "GET", "/autodiscover/autodiscover.xml") => {
            let raw = autoconfig::autodiscover_request_address(&request.body)
                .or_else(|| autoconfig::query_address(&request.query))
                .unwrap_or_default();
            Some(match autoconfig::checked_address(&raw, hosted) {
                Some(address) => {
                    response("200 OK", xml, &autoconfig::autodiscover(&offer(), &address))
                }
                None => unknown(),
            })
        }
        ("GET", "/apple.mobileconfig") => {
            let raw = autoconfig::query_address(&request.query).unwrap_or_default();
            let Some(address) = autoconfig::checked_address(&raw, hosted) else {
                return Some(unknown());
            };
            Some(match autoconfig::mobileconfig(&offer(), &address) {
                Some(profile) => response("200 OK", "application/x-apple-aspen-config", &profile),
                None => response(
                    "404 Not Found",
                    "text/plain",
                    "Apple Mail needs an IMAP or POP3 listener and a submission listener\n",
                ),
            })
        }
        _ => None,
    }
}

fn response(status: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

impl Handler for HttpHandler {
    fn handle(self: Arc<Self>, mut conn: Conn) -> BoxFuture {
        Box::pin(async move {
            let Ok(Some(request)) =
                tokio::time::timeout(Duration::from_secs(10), read_request(&mut conn)).await
            else {
                return;
            };
            let reply = match (request.method.as_str(), request.path.as_str()) {
                ("GET", "/healthz") => response("200 OK", "text/plain", "ok\n"),
                ("GET", "/readyz") => {
                    let state = self.state.clone();
                    let (ready, report) = tokio::task::spawn_blocking(move || readiness(&state))
                        .await
                        .unwrap_or_else(|e| (false, format!("readiness check failed: {e}\n")));
                    let status = if ready {
                        "200 OK"
                    } else {
                        "503 Service Unavailable"
                    };
                    response(status, "text/plain", &report)
                }
                ("GET", "/metrics") => response(
                    "200 OK",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    &crate::observe::metrics::render(self.state.queue.len()),
                ),
                // RFC 8555 §8.3: the ACME server fetches the key authorization.
                ("GET", p) if p.starts_with(ACME_CHALLENGE_PATH) => {
                    let token = &p[ACME_CHALLENGE_PATH.len()..];
                    match self.state.acme.as_ref().and_then(|c| c.http01(token)) {
                        Some(answer) => response("200 OK", "application/octet-stream", &answer),
                        None => response("404 Not Found", "text/plain", "not found\n"),
                    }
                }
                (method, path) => match client_config(&self.state, method, path, &request) {
                    Some(reply) => reply,
                    None if method == "GET" => {
                        response("404 Not Found", "text/plain", "not found\n")
                    }
                    None => response("405 Method Not Allowed", "text/plain", "GET only\n"),
                },
            };
            let _ = conn.stream.write_all(&reply).await;
            let _ = conn.stream.shutdown().await;
        })
    }

    fn refusal(&self, why: Refusal, client: std::net::IpAddr) -> Vec<u8> {
        let line = refusal_line("", why, client);
        response(
            "503 Service Unavailable",
            "text/plain",
            String::from_utf8_lossy(&line).trim(),
        )
    }
}
