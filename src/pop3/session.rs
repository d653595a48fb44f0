//! The POP3 connection driver: runs a [`Session`] over a socket and does
//! what it asks — check passwords, lock and list the maildrop, stream
//! messages, delete at QUIT.
//!
//! The maildrop lock is an exclusive `flock` on `pigeonpost-pop3.lock` in
//! the user's Maildir, held for the whole session: a second POP3 login, in
//! this process or another pigeonpost, gets `-ERR [IN-USE]`. IMAP sessions
//! and deliveries don't take it (as with Dovecot's `pop3_lock_session`).

use super::Ctx;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use tokio::io::AsyncWriteExt;

use super::proto::{Action, DotStuffer, MaildropError, MessageEntry, Session, SessionConfig};
use crate::auth::login::{self, LoginPolicy};
use crate::config::SslMode;
use crate::net::pending::refusal_line;
use crate::net::{BoxFuture, Conn, Handler, Input, Refusal, Stream};
use crate::observe::metrics;
use crate::store::deliver::Owner;
use crate::store::location::{as_user, open_user_maildir};
use crate::store::maildir::{pop3_uidl, Flags, Mailbox};
use crate::store::notify::Notifier;

/// RFC 1939 §3: the autologout timer is at least 10 minutes.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// The file whose `flock` is the maildrop lock.
pub const LOCK_NAME: &str = "pigeonpost-pop3.lock";

pub struct Pop3Handler {
    pub ctx: Arc<Ctx>,
}

impl Handler for Pop3Handler {
    fn handle(self: Arc<Self>, conn: Conn) -> BoxFuture {
        Box::pin(async move { run(self.ctx.clone(), conn).await })
    }

    fn refusal(&self, why: Refusal, client: std::net::IpAddr) -> Vec<u8> {
        refusal_line("-ERR [SYS/TEMP]", why, client)
    }
}

/// An open, locked maildrop. Dropping it releases the lock and deletes
/// nothing.
struct Maildrop {
    mailbox: Mailbox,
    uid: u32,
    gid: u32,
    _lock: File,
}

/// What one session did, for the logout log line (like Dovecot's
/// `top=… retr=… del=…`).
#[derive(Default)]
struct Tally {
    top: u32,
    retr: u32,
    retr_bytes: u64,
}

fn session_config(ctx: &Ctx, conn: &Conn) -> SessionConfig {
    let c = &ctx.config;
    SessionConfig {
        login: LoginPolicy::new(
            c,
            ctx.tls.is_some(),
            conn.stream.is_tls(),
            conn.is_local_client(),
        )
        .requiring_tls_for_auth(c.ssl == SslMode::Required),
        max_errors: 20,
    }
}

async fn flush(stream: &mut Stream, session: &mut Session) -> bool {
    if !session.has_output() {
        return true;
    }
    let sent = stream.send(session.output(), IDLE_TIMEOUT).await;
    session.clear_output();
    sent
}

async fn run(ctx: Arc<Ctx>, mut conn: Conn) {
    let client = conn.peer;
    let mut session = Session::new(session_config(&ctx, &conn));
    let mut maildrop: Option<Maildrop> = None;
    // The logged-in session's place in mail_max_userip_connections.
    let mut userip_slot = None;
    let login_deadline = Instant::now() + ctx.config.login_timeout;
    let mut tally = Tally::default();
    let mut buf = vec![0u8; 16 * 1024];
    tracing::info!(listener = conn.listener, client = %client, tls = conn.stream.is_tls(), "connect");
    loop {
        match session.next_action() {
            Action::NeedInput => {
                if !flush(&mut conn.stream, &mut session).await {
                    break;
                }
                let wait = if maildrop.is_none() {
                    login_deadline.saturating_duration_since(Instant::now())
                } else {
                    IDLE_TIMEOUT
                };
                match conn.read_input(&mut buf, wait).await {
                    Input::Shutdown => {
                        session.shutdown("[SYS/TEMP] Server shutting down, try again later.")
                    }
                    Input::Timeout if maildrop.is_none() => {
                        metrics::limited("slow_client");
                        tracing::info!(client = %client, "no login within login_timeout; closing");
                        session.shutdown("Disconnected: no login in time.");
                    }
                    Input::Timeout => {
                        tracing::info!(client = %client, user = session.user().unwrap_or(""), "timeout");
                        session.shutdown("Disconnected for inactivity.");
                    }
                    Input::Eof => {
                        // Unlock before saying so: a client reconnecting at once finds it free.
                        drop(maildrop.take());
                        tracing::info!(client = %client, user = session.user().unwrap_or(""), "lost connection, nothing deleted");
                        break;
                    }
                    Input::Data(n) => session.feed(&buf[..n]),
                }
            }
            Action::StartTls => {
                if !flush(&mut conn.stream, &mut session).await {
                    break;
                }
                if !conn
                    .start_tls(ctx.tls.clone(), crate::net::TLS_HANDSHAKE_TIMEOUT, "STLS")
                    .await
                {
                    break;
                }
                session.tls_started();
            }
            Action::CheckPassword { user, password } => {
                let auth = &ctx.auth;
                let check = auth.check_password(&user, &password);
                let outcome = login::attempt(&auth.throttle, "pop3", client, &user, check).await;
                let outcome =
                    login::hold_session(&auth.sessions, "pop3", outcome, client, &mut userip_slot);
                session.auth_done(outcome);
            }
            Action::CheckSasl(creds) => {
                let user = creds.username().to_string();
                let auth = &ctx.auth;
                let check = auth.check_sasl(creds);
                let outcome = login::attempt(&auth.throttle, "pop3", client, &user, check).await;
                let outcome =
                    login::hold_session(&auth.sessions, "pop3", outcome, client, &mut userip_slot);
                session.auth_done(outcome);
            }
            Action::OpenMaildrop(user) => {
                let st = ctx.clone();
                let u = user.clone();
                let opened = tokio::task::spawn_blocking(move || open_maildrop(&st, &u))
                    .await
                    .unwrap_or_else(|e| Err(Opening::Temp(format!("task failed: {e}"))));
                let result = match opened {
                    Ok((md, entries)) => {
                        tracing::info!(client = %client, user = %user, messages = entries.len(), tls = conn.stream.is_tls(), "login");
                        maildrop = Some(md);
                        Ok(entries)
                    }
                    Err(Opening::InUse) => {
                        tracing::warn!(client = %client, user = %user, "maildrop in use by another POP3 session");
                        Err(MaildropError::InUse)
                    }
                    Err(Opening::Temp(e)) => {
                        tracing::error!(client = %client, user = %user, error = %e, "can't open maildrop");
                        Err(MaildropError::Temporary)
                    }
                };
                session.maildrop_opened(&user, result);
            }
            Action::Send {
                number,
                uid,
                encoder,
            } => {
                let Some(md) = &maildrop else {
                    session.send_failed(true);
                    continue;
                };
                let whole = encoder.is_whole();
                match open_message(md, uid) {
                    Ok(Some((file, len))) => {
                        session.send_begin();
                        // The +OK line leaves in the same write as the start
                        // of the message: one TCP segment, not two, for the
                        // typical message (fetchmail waits for each).
                        let sent =
                            stream_message(&mut conn.stream, session.output(), file, len, encoder)
                                .await;
                        session.clear_output();
                        match sent {
                            Ok(bytes) => {
                                if whole {
                                    tally.retr += 1;
                                    tally.retr_bytes += bytes;
                                } else {
                                    tally.top += 1;
                                }
                            }
                            Err(e) => {
                                // Half a message went out: the only safe end is to close.
                                tracing::warn!(client = %client, number, uid, error = %e, "sending message failed");
                                break;
                            }
                        }
                    }
                    Ok(None) => session.send_failed(false),
                    Err(e) => {
                        tracing::error!(client = %client, uid, error = %e, "can't read message");
                        session.send_failed(true);
                    }
                }
            }
            Action::Update { delete, seen } => {
                let Some(md) = maildrop.take() else {
                    session.update_done(true);
                    continue;
                };
                let user = session.user().unwrap_or("").to_string();
                let (n_del, n_seen) = (delete.len(), seen.len());
                let notify = ctx.notify.clone();
                let result =
                    tokio::task::spawn_blocking(move || update(md, &delete, &seen, &notify))
                        .await
                        .unwrap_or_else(|e| Err(format!("task failed: {e}")));
                match &result {
                    Ok(()) => {
                        tracing::info!(client = %client, user = %user, top = tally.top, retr = tally.retr, retr_bytes = tally.retr_bytes, deleted = n_del, seen = n_seen, "logged out")
                    }
                    Err(e) => {
                        tracing::error!(client = %client, user = %user, error = %e, "deleting messages at QUIT failed")
                    }
                }
                session.update_done(result.is_ok());
            }
            Action::Close => {
                let _ = flush(&mut conn.stream, &mut session).await;
                let _ = conn.stream.shutdown().await;
                break;
            }
        }
    }
    tracing::info!(client = %client, "disconnect");
}

enum Opening {
    InUse,
    Temp(String),
}

/// Finds, locks, syncs and lists the user's INBOX (blocking).
fn open_maildrop(ctx: &Ctx, user: &str) -> Result<(Maildrop, Vec<MessageEntry>), Opening> {
    let info = ctx
        .auth
        .mail_user(user)
        .map_err(Opening::Temp)?
        .ok_or_else(|| Opening::Temp(format!("user {user} authenticated but not in the userdb")))?;
    // Dovecot creates a missing INBOX at the first login.
    let dir = open_user_maildir(&ctx.config.mail_location, user, &info).map_err(Opening::Temp)?;
    let format = ctx.config.pop3_uidl_format.clone();
    as_user(info.uid, info.gid, || {
        let lock = lock_maildrop(&dir)?;
        let mut mailbox = Mailbox::open(&dir).map_err(|e| Opening::Temp(e.to_string()))?;
        // DELE's expunges at QUIT leave the quota.
        let quota = crate::store::maildir::quota::Quota::for_user(
            ctx.config.quota.as_ref(),
            &dir,
            info.quota_rule.as_deref(),
        );
        mailbox.set_quota(quota.map(std::sync::Arc::new));
        let entries = list(&mailbox, &format);
        Ok((
            Maildrop {
                mailbox,
                uid: info.uid,
                gid: info.gid,
                _lock: lock,
            },
            entries,
        ))
    })
}

fn lock_maildrop(dir: &Path) -> Result<File, Opening> {
    let path = dir.join(LOCK_NAME);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| Opening::Temp(format!("open {}: {e}", path.display())))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            Opening::InUse
        } else {
            Opening::Temp(format!("flock {}: {e}", path.display()))
        });
    }
    Ok(file)
}

/// The maildrop listing: UID order, or the POP3 order a migration left in
/// the uidlist (`O` field), sizes with CRLF line ends, UIDLs per
/// `pop3_uidl_format`.
fn list(mailbox: &Mailbox, format: &str) -> Vec<MessageEntry> {
    let mut msgs: Vec<_> = mailbox.messages().iter().collect();
    msgs.sort_by_key(|m| (m.pop3_order().unwrap_or(u32::MAX), m.uid));
    msgs.into_iter()
        .map(|m| MessageEntry {
            uid: m.uid,
            size: m.vsize(),
            uidl: pop3_uidl(format, m, mailbox.uidvalidity(), || {
                header_md5(&mailbox.message_path(m))
            }),
        })
        .collect()
}

/// MD5 of the message header (through the blank line), for `%m`.
fn header_md5(path: &Path) -> [u8; 16] {
    let mut data = Vec::new();
    if let Ok(f) = crate::store::maildir::open_no_atime(path) {
        let _ = f.take(1 << 20).read_to_end(&mut data);
    }
    let end = data
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| i + 2)
        .or_else(|| {
            data.windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|i| i + 4)
        })
        .unwrap_or(data.len());
    Md5::digest(&data[..end]).into()
}

/// Opens a message file, with its length. A single open (a directory scan
/// only if another client renamed it), cheap enough to do in place.
fn open_message(md: &Maildrop, uid: u32) -> Result<Option<(File, u64)>, String> {
    let owner = Owner {
        uid: md.uid,
        gid: md.gid,
    };
    md.mailbox
        .open_message_for(uid, owner)
        .map_err(|e| e.to_string())
}

/// What a RETR reads and sends at a time.
const PIECE: usize = 64 * 1024;

/// Streams `file` (`len` bytes when opened) through the dot-stuffer after
/// `head` (the status line); returns the message bytes sent.
async fn stream_message(
    stream: &mut Stream,
    head: &[u8],
    file: File,
    len: u64,
    mut encoder: DotStuffer,
) -> std::io::Result<u64> {
    // Plain blocking reads: a message file is local and mostly in the page
    // cache, and handing each 64 KiB read to tokio's blocking pool cost more
    // (thread hand-offs per read) than the read itself.
    // Buffers the message's size, not 64 KiB each: glibc hands a freed
    // 134 KiB at an arena's top back to the system (madvise), and the next
    // RETR faulted it in again: a third of a fetchmail pull's server CPU.
    let mut file = file;
    let piece = usize::try_from(len).unwrap_or(PIECE).clamp(1, PIECE);
    let mut chunk = vec![0u8; piece];
    // LF becomes CRLF: room for a line every 8 bytes before growing
    let mut out = Vec::with_capacity(head.len() + piece + piece / 8 + 8);
    out.extend_from_slice(head);
    let mut sent = 0u64;
    // Maildir files never change: reading stops at the length they had
    // when opened, without a last read to see the end.
    let mut left = len;
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(piece).min(piece);
        let n = Read::read(&mut file, &mut chunk[..want])?;
        if n == 0 {
            break;
        }
        left -= n as u64;
        encoder.encode(&chunk[..n], &mut out);
        if encoder.is_done() {
            break;
        }
        if out.len() >= PIECE {
            write(stream, &out).await?;
            sent += out.len() as u64;
            out.clear();
        }
    }
    encoder.finish(&mut out);
    write(stream, &out).await?;
    Ok((sent + out.len() as u64).saturating_sub(head.len() as u64))
}

/// Writes and flushes: over TLS, rustls may hold the last records of a
/// message until flushed, and the client would wait for them forever.
async fn write(stream: &mut Stream, data: &[u8]) -> std::io::Result<()> {
    if stream.send(data, IDLE_TIMEOUT).await {
        Ok(())
    } else {
        Err(std::io::ErrorKind::TimedOut.into())
    }
}

/// RFC 1939 §6 UPDATE: delete the DELE'd messages, mark the retrieved ones
/// `\Seen` (as Dovecot does unless `pop3_no_flag_updates`), release the lock.
fn update(mut md: Maildrop, delete: &[u32], seen: &[u32], notify: &Notifier) -> Result<(), String> {
    let (uid, gid) = (md.uid, md.gid);
    let result = as_user(uid, gid, || {
        md.mailbox.expunge(delete).map_err(|e| e.to_string())?;
        for &u in seen {
            let Some(m) = md.mailbox.get(u) else { continue };
            if m.flags.contains(Flags::SEEN) {
                continue;
            }
            let keywords: Vec<String> = m.keywords().to_vec();
            let kw: Vec<&str> = keywords.iter().map(String::as_str).collect();
            let flags = m.flags | Flags::SEEN;
            // Best effort: a flag that can't be set loses no mail.
            if let Err(e) = md.mailbox.set_flags(u, flags, &kw) {
                tracing::warn!(uid = u, error = %e, "can't mark message seen");
            }
        }
        Ok(())
    });
    // Open IMAP sessions on this mailbox look at once.
    notify.invalidate(md.mailbox.dir());
    result
}
