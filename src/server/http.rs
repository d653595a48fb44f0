//! The `listen.http` endpoint of the server itself: `/healthz` (alive), `/readyz` (every listener
//! bound, queue and mail store writable), `/metrics` (OpenMetrics text). A
//! deliberately tiny HTTP/1.1 responder: one request per connection, GET only.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::State;
use crate::net::pending::refusal_line;
use crate::net::{BoxFuture, Conn, Handler, Refusal};

const ACME_CHALLENGE_PATH: &str = "/.well-known/acme-challenge/";

pub struct HttpHandler {
    pub state: Arc<State>,
}

/// Reads the request head (up to 8 KiB) and returns the request line.
async fn read_request_line(conn: &mut Conn) -> Option<String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && !buf.windows(2).any(|w| w == b"\n\n") {
        let n = conn.stream.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > 8192 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf);
    text.lines().next().map(str::to_string)
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
            let Ok(Some(line)) =
                tokio::time::timeout(Duration::from_secs(10), read_request_line(&mut conn)).await
            else {
                return;
            };
            let mut parts = line.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let reply = match (method, path) {
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
                ("GET", _) => response("404 Not Found", "text/plain", "not found\n"),
                _ => response("405 Method Not Allowed", "text/plain", "GET only\n"),
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
