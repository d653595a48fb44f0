//! The running server's control socket, `<queue_directory>/control`: one
//! request line, one answer line. `flush`, `delete ID|ALL`, `release ID|ALL`, `pickup`.
//! Answers are `ok <text>` or `error <text>`. The socket is mode 0600:
//! only the server's own user (or root) may talk to it.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;

use super::Queue;

/// Answers one request.
fn answer(queue: &Queue, line: &str) -> String {
    let mut words = line.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("flush"), None, _) => format!("ok {} messages scheduled", queue.flush()),
        (Some("pickup"), None, _) => {
            queue.poke();
            "ok pickup requested".into()
        }
        (Some("release"), Some(id), None) => match super::hold::release(queue.spool(), id) {
            Ok(n) => {
                queue.poke();
                format!("ok {n} messages released")
            }
            Err(e) => format!("error {e}"),
        },
        (Some("delete"), Some(id), None) => match queue.delete(id) {
            Ok(n) => format!("ok {n} messages deleted"),
            Err(e) => format!("error {e}"),
        },
        _ => format!("error unknown request '{}'", line.trim()),
    }
}

/// Serves the control socket until `shutdown`.
pub async fn serve(queue: Arc<Queue>, shutdown: CancellationToken) -> std::io::Result<()> {
    let path = queue.spool().control_socket();
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = listener.accept() => match r {
                    Ok((s, _)) => s,
                    Err(_) => continue,
                },
            };
            let q = queue.clone();
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut line = String::new();
                let mut r = tokio::io::BufReader::new(r);
                let read = tokio::time::timeout(Duration::from_secs(10), r.read_line(&mut line));
                if let Ok(Ok(n)) = read.await {
                    if n > 0 && line.len() < 512 {
                        tracing::info!(request = line.trim(), "control request");
                        let out = answer(&q, &line);
                        let _ = w.write_all(format!("{out}\n").as_bytes()).await;
                    }
                }
            });
        }
        let _ = std::fs::remove_file(queue.spool().control_socket());
    });
    Ok(())
}

/// Client side, for the CLI: sends `request`, returns the answer line.
/// Err when no server is listening.
pub fn request(socket: &Path, request: &str) -> std::io::Result<String> {
    let mut s = StdUnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(format!("{request}\n").as_bytes())?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    Ok(line.trim_end().to_string())
}
