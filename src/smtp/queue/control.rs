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

use super::pickup::Drop;
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

/// The largest first line (the envelope as JSON) on the submit socket.
const MAX_ENVELOPE_LINE: usize = 1 << 20;
/// How long a local client may take to hand over its message.
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(300);

/// Serves `public/submit` until `shutdown`: local submission for users who
/// cannot write to the maildrop (no setgid program needed). The client
/// sends one line, the envelope as JSON (`{"sender":…,"recipients":[…]}`),
/// then the message, and shuts down its side; the answer is `ok <id>` or
/// `error <text>`. Who submitted is the peer's uid from the kernel
/// (SO_PEERCRED), never what the client says. The socket is mode 0666 in
/// a 0755 directory, like Postfix's `public/pickup`.
pub async fn serve_submit(
    queue: Arc<Queue>,
    max_message_size: u64,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let path = queue.spool().submit_socket();
    let dir = path
        .parent()
        .expect("submit socket has a directory")
        .to_path_buf();
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
    {
        use std::os::unix::fs::MetadataExt;
        let root = queue.spool().root();
        if std::fs::metadata(root).is_ok_and(|m| m.mode() & 0o001 == 0) {
            tracing::warn!(
                queue_directory = %root.display(),
                "queue_directory is not searchable by other users (o+x): only root and the mail user can use sendmail"
            );
        }
    }
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
                let uid = stream.peer_cred().map(|c| c.uid()).ok();
                let (r, mut w) = stream.into_split();
                let work = submit_one(&q, r, uid, max_message_size);
                let answer = match tokio::time::timeout(SUBMIT_TIMEOUT, work).await {
                    Ok(Ok(id)) => format!("ok {id}"),
                    Ok(Err(e)) => {
                        tracing::warn!(uid, error = %e, "local submission refused");
                        format!("error {e}")
                    }
                    Err(_) => "error timed out".to_string(),
                };
                let _ = w.write_all(format!("{answer}\n").as_bytes()).await;
            });
        }
        let _ = std::fs::remove_file(queue.spool().submit_socket());
    });
    Ok(())
}

async fn submit_one(
    queue: &Arc<Queue>,
    r: tokio::net::unix::OwnedReadHalf,
    uid: Option<u32>,
    max_message_size: u64,
) -> Result<String, String> {
    use tokio::io::AsyncReadExt;
    let Some(uid) = uid else {
        return Err("cannot tell who is connected (no peer credentials)".into());
    };
    let mut r = tokio::io::BufReader::new(r);
    let mut line = Vec::new();
    (&mut r)
        .take(MAX_ENVELOPE_LINE as u64)
        .read_until(b'\n', &mut line)
        .await
        .map_err(|e| e.to_string())?;
    if !line.ends_with(b"\n") {
        return Err("the envelope line is missing or too long".into());
    }
    let mut drop: Drop = serde_json::from_slice(&line).map_err(|e| format!("bad envelope: {e}"))?;
    // Who and how is ours to say, not the client's.
    drop.user = super::cli::user_name(uid);
    drop.hold_reason = None;
    drop.arrival = None;
    drop.sign = true;
    if drop.recipients.is_empty() {
        return Err("no recipients".into());
    }
    let limit = if max_message_size == 0 {
        u64::MAX
    } else {
        max_message_size
    };
    let mut message = Vec::new();
    (&mut r)
        .take(limit.saturating_add(1))
        .read_to_end(&mut message)
        .await
        .map_err(|e| e.to_string())?;
    if message.len() as u64 > limit {
        return Err(format!(
            "message too big (message_size_limit is {max_message_size})"
        ));
    }
    let spool = queue.spool().clone();
    let id =
        tokio::task::spawn_blocking(move || super::pickup::drop_message(&spool, &drop, &message))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot queue the message: {e}"))?;
    tracing::info!(uid, id, "local submission");
    queue.poke();
    Ok(id)
}

/// Client side of the submit socket: Err when no server listens; Ok(Err)
/// when it refused the message.
pub fn submit(
    socket: &Path,
    drop: &Drop,
    message: &[u8],
) -> std::io::Result<Result<String, String>> {
    let mut s = StdUnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(300)))?;
    let mut head = serde_json::to_vec(drop).map_err(std::io::Error::other)?;
    head.push(b'\n');
    s.write_all(&head)?;
    s.write_all(message)?;
    s.shutdown(std::net::Shutdown::Write)?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    let line = line.trim_end();
    Ok(match line.strip_prefix("ok ") {
        Some(id) => Ok(id.to_string()),
        None => Err(line
            .strip_prefix("error ")
            .unwrap_or("the server closed the connection")
            .to_string()),
    })
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
