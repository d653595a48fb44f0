//! The IMAP connection driver: runs a [`Session`] over a socket, checks
//! credentials, and runs mailbox commands on a [`Backend`] off the async
//! threads (as the mail user when we are root). IDLE waits for the
//! mailbox to change (`store::notify`), so mail delivered by SMTP shows up at
//! once and idle sessions cost nothing in between.

use super::Ctx;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use imap_codec::imap_types::command::CommandBody;

use super::backend::Backend;
use super::proto::{Action, AuthOutcome, Session, SessionConfig, State};
use crate::auth::login::{self, LoginPolicy};
use crate::config::SslMode;
use crate::net::pending::refusal_line;
use crate::net::{BoxFuture, Conn, Handler, Input, Refusal, Stream};
use crate::store::location::{as_user, open_user_maildir};
use crate::store::maildir::quota::Quota;

use crate::net::pace::Pace;
use crate::net::TLS_HANDSHAKE_TIMEOUT;
use crate::observe::metrics;
use std::time::Instant;
/// RFC 3501 §5.4: the autologout timer is at least 30 minutes.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// IDLE waits for a change of the mailbox (see `store::notify`), and looks
/// this often anyway, for changes inotify can't see (NFS): Dovecot's
/// default `mailbox_idle_check_interval`.
const IDLE_RECHECK: Duration = Duration::from_secs(30);
/// After a wake-up IDLE looks again this much later: the shared mailbox
/// copy rescans the directory at most every 250 ms unless told to.
const IDLE_FOLLOW_UP: Duration = Duration::from_millis(300);

/// Resolves when `changes` says the mailbox changed; never without one.
async fn changed(changes: &mut Option<tokio::sync::watch::Receiver<u64>>) {
    if let Some(rx) = changes {
        if rx.changed().await.is_ok() {
            return;
        }
    }
    std::future::pending::<()>().await
}

pub struct ImapHandler {
    pub ctx: Arc<Ctx>,
}

impl Handler for ImapHandler {
    fn handle(self: Arc<Self>, conn: Conn) -> BoxFuture {
        Box::pin(async move { run(self.ctx.clone(), conn).await })
    }

    fn refusal(&self, why: Refusal, client: std::net::IpAddr) -> Vec<u8> {
        refusal_line("* BYE [UNAVAILABLE]", why, client)
    }
}

fn session_config(ctx: &Ctx, conn: &Conn) -> SessionConfig {
    let c = &ctx.config;
    SessionConfig {
        hostname: c.myhostname.clone(),
        login: LoginPolicy::new(
            c,
            ctx.tls.is_some(),
            conn.stream.is_tls(),
            conn.is_local_client(),
        )
        .requiring_tls_for_auth(c.ssl == SslMode::Required),
        max_errors: 20,
        max_message: c.message_size_limit.min(u32::MAX as u64 - 1024) as u32 + 1024,
        quota: c.quota.is_some(),
    }
}

async fn flush(stream: &mut Stream, session: &mut Session) -> bool {
    if !session.has_output() {
        return true;
    }
    stream.send(&session.take_output(), IDLE_TIMEOUT).await
}

/// The logged-in user's store access.
struct Account {
    backend: Backend,
    uid: u32,
    gid: u32,
}

/// Runs `f` on the account off the async threads, as the mail user.
async fn with_account<T: Send + 'static>(
    account: &mut Option<Account>,
    f: impl FnOnce(&mut Backend) -> T + Send + 'static,
) -> Option<T> {
    let mut acc = account.take()?;
    let (acc, result) = tokio::task::spawn_blocking(move || {
        let (uid, gid) = (acc.uid, acc.gid);
        let r = as_user(uid, gid, || f(&mut acc.backend));
        (acc, r)
    })
    .await
    .ok()?;
    *account = Some(acc);
    Some(result)
}

/// Answers a command the account ran ([`with_account`]): its output, then
/// the state it leaves; `None` (the blocking task failed) ends the session
/// with `* BYE [SERVERBUG]`.
fn finish(session: &mut Session, out: Option<Vec<u8>>, st: State) {
    match out {
        Some(out) => {
            session.respond(&out);
            session.command_done(st);
        }
        None => {
            session.respond(b"* BYE [SERVERBUG] Internal error.\r\n");
            session.command_done(State::Logout);
        }
    }
}

/// Like [`with_account`], for commands whose output can be long (FETCH):
/// the session's pending output goes out first, then whatever the backend
/// spills while it runs, as it runs. The rest comes back with the result.
async fn with_account_streaming<T: Send + 'static>(
    account: &mut Option<Account>,
    stream: &mut Stream,
    session: &mut Session,
    f: impl FnOnce(&mut Backend) -> T + Send + 'static,
) -> Option<T> {
    let mut acc = account.take()?;
    let mut writing = flush(stream, session).await;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(2);
    let task = tokio::task::spawn_blocking(move || {
        let (uid, gid) = (acc.uid, acc.gid);
        acc.backend.spill = Some(tx);
        let r = as_user(uid, gid, || f(&mut acc.backend));
        // Dropping the sender ends the loop below.
        acc.backend.spill = None;
        (acc, r)
    });
    // Drained to the end even when the client has gone, so the task never
    // waits on a full channel.
    while let Some(chunk) = rx.recv().await {
        if writing {
            writing = matches!(
                tokio::time::timeout(IDLE_TIMEOUT, stream.write_all(&chunk)).await,
                Ok(Ok(()))
            );
        }
    }
    let (acc, result) = task.await.ok()?;
    *account = Some(acc);
    Some(result)
}

fn open_account(ctx: &Ctx, user: &str) -> Result<Account, String> {
    let info = ctx
        .auth
        .mail_user(user)?
        .ok_or_else(|| format!("user {user} authenticated but not in the userdb"))?;
    let dir = open_user_maildir(&ctx.config.mail_location, user, &info)?;
    let quota = Quota::for_user(ctx.config.quota.as_ref(), &dir, info.quota_rule.as_deref());
    Ok(Account {
        backend: Backend::new(dir, ctx.mailboxes.clone())
            .with_quota(quota.map(Arc::new))
            .with_user(user, ctx.config.message_size_limit),
        uid: info.uid,
        gid: info.gid,
    })
}

/// Commands on at most [`LIGHT_MESSAGES`] messages of the selected mailbox
/// (and NOOP): run on the connection's own thread.
const LIGHT_MESSAGES: u64 = 16;

fn is_light(cmd: &CommandBody, options: &super::proto::RunOptions) -> bool {
    // `$` stands for the saved result, which may be every message.
    if options.saved {
        return false;
    }
    use imap_codec::imap_types::sequence::{SeqOrUid, Sequence};
    let small = |set: &imap_codec::imap_types::sequence::SequenceSet| {
        let mut n: u64 = 0;
        for s in set.0.as_ref() {
            n += match s {
                Sequence::Single(SeqOrUid::Value(_)) => 1,
                Sequence::Range(SeqOrUid::Value(a), SeqOrUid::Value(b)) => {
                    u64::from(a.get().abs_diff(b.get())) + 1
                }
                _ => return false,
            };
        }
        n <= LIGHT_MESSAGES
    };
    match cmd {
        CommandBody::Noop | CommandBody::Check => true,
        CommandBody::Fetch { sequence_set, .. } | CommandBody::Store { sequence_set, .. } => {
            small(sequence_set)
        }
        _ => false,
    }
}

/// The read buffer for commands and literals.
const READ_BUF: usize = 8 * 1024;

async fn run(ctx: Arc<Ctx>, mut conn: Conn) {
    let client = conn.peer;
    let mut session = Session::new(session_config(&ctx, &conn));
    let mut account: Option<Account> = None;
    // The logged-in session's place in mail_max_userip_connections.
    let mut userip_slot = None;
    let login_deadline = Instant::now() + ctx.config.login_timeout;
    let mut pace = Pace::new(ctx.config.smtpd_min_data_rate);
    // Small: most IMAP traffic from clients is short commands. Freed while
    // the client IDLEs (all it can send then is DONE, read into a few bytes
    // on the stack): 10,000 idle clients would otherwise hold 80 MB of it.
    let mut buf = vec![0u8; READ_BUF];
    // What a running IDLE waits on (taken when it starts), and when it
    // looks again after a wake-up.
    let mut idle_changes: Option<tokio::sync::watch::Receiver<u64>> = None;
    let mut follow_up: Option<tokio::time::Instant> = None;
    // What a run of light commands stopped at (see below), next.
    let mut next: Option<Action> = None;
    tracing::info!(listener = conn.listener, client = %client, tls = conn.stream.is_tls(), "connect");
    loop {
        match next.take().unwrap_or_else(|| session.next_action()) {
            Action::NeedInput => {
                if !flush(&mut conn.stream, &mut session).await {
                    break;
                }
                let idle = if account.is_none() {
                    login_deadline.saturating_duration_since(Instant::now())
                } else {
                    IDLE_TIMEOUT
                };
                let wait = pace.read_timeout(session.receiving_literal(), idle);
                if buf.is_empty() {
                    buf = vec![0u8; READ_BUF];
                }
                match conn.read_input(&mut buf, wait).await {
                    Input::Shutdown => session.shutdown("[UNAVAILABLE] Server shutting down."),
                    Input::Timeout if account.is_none() => {
                        metrics::limited("slow_client");
                        tracing::info!(client = %client, "no login within login_timeout; closing");
                        session.shutdown("Disconnected: no login in time.");
                    }
                    Input::Timeout if pace.uploading() && wait < IDLE_TIMEOUT => {
                        metrics::limited("slow_client");
                        tracing::info!(client = %client, user = session.user().unwrap_or(""), "literal data too slow (smtpd_min_data_rate)");
                        session.shutdown("Disconnected: data too slow.");
                    }
                    Input::Timeout => {
                        tracing::info!(client = %client, user = session.user().unwrap_or(""), "timeout");
                        session.shutdown("Disconnected for inactivity.");
                    }
                    Input::Eof => {
                        tracing::info!(client = %client, user = session.user().unwrap_or(""), "lost connection");
                        break;
                    }
                    Input::Data(n) => {
                        pace.received(n);
                        session.feed(&buf[..n]);
                    }
                }
            }
            Action::Idling => {
                if !flush(&mut conn.stream, &mut session).await {
                    break;
                }
                if idle_changes.is_none() {
                    idle_changes = account.as_ref().and_then(|a| a.backend.idle_changes());
                }
                buf = Vec::new();
                let mut done = [0u8; 64];
                // A look right after a wake-up may fall inside the shared
                // copy's rescan interval (250 ms): look once more after it.
                let again = follow_up.unwrap_or_else(tokio::time::Instant::now);
                let read = tokio::select! {
                    _ = conn.shutdown.cancelled() => None,
                    _ = changed(&mut idle_changes) => {
                        follow_up = Some(tokio::time::Instant::now() + IDLE_FOLLOW_UP);
                        Some(Err(()))
                    }
                    _ = tokio::time::sleep_until(again), if follow_up.is_some() => {
                        follow_up = None;
                        Some(Err(()))
                    }
                    _ = tokio::time::sleep(IDLE_RECHECK) => Some(Err(())),
                    r = conn.stream.read(&mut done) => Some(Ok(r)),
                };
                match read {
                    None => session.shutdown("[UNAVAILABLE] Server shutting down."),
                    Some(Err(())) => {
                        let out = with_account(&mut account, |b| {
                            let mut out = Vec::new();
                            b.updates(true, &mut out);
                            out
                        })
                        .await
                        .unwrap_or_default();
                        session.respond(&out);
                    }
                    Some(Ok(Ok(0))) | Some(Ok(Err(_))) => break,
                    Some(Ok(Ok(n))) => {
                        idle_changes = None;
                        session.feed(&done[..n]);
                    }
                }
            }
            Action::StartTls => {
                if !flush(&mut conn.stream, &mut session).await {
                    break;
                }
                if !conn
                    .start_tls(ctx.tls.clone(), TLS_HANDSHAKE_TIMEOUT, "STARTTLS")
                    .await
                {
                    break;
                }
                session.tls_started();
            }
            Action::Compress => {
                if !flush(&mut conn.stream, &mut session).await {
                    break;
                }
                conn.stream.start_deflate();
                session.compress_started();
            }
            Action::CheckAuth(creds) => {
                let user = creds.username().to_string();
                let auth = &ctx.auth;
                let check = auth.check_sasl(creds);
                let outcome = login::attempt(&auth.throttle, "imap", client, &user, check).await;
                let mut outcome =
                    login::hold_session(&auth.sessions, "imap", outcome, client, &mut userip_slot);
                if let AuthOutcome::Ok(u) = &outcome {
                    let st = ctx.clone();
                    let name = u.clone();
                    match tokio::task::spawn_blocking(move || open_account(&st, &name)).await {
                        Ok(Ok(acc)) => {
                            tracing::info!(client = %client, user = %u, tls = conn.stream.is_tls(), "login");
                            account = Some(acc);
                        }
                        Ok(Err(e)) => {
                            tracing::error!(client = %client, user = %u, error = %e, "can't open the mail store");
                            outcome = AuthOutcome::TempFail;
                        }
                        Err(e) => {
                            tracing::error!(client = %client, user = %u, error = %e, "login task failed");
                            outcome = AuthOutcome::TempFail;
                        }
                    }
                }
                session.auth_done(outcome);
            }
            Action::Run {
                tag,
                command,
                options,
            } => {
                let idle = matches!(*command, CommandBody::Idle);
                let st = session.state();
                let t = tag.clone();
                // STATUS of an unchanged folder: three stats, here. Not
                // as the mail user (the switch there and back cost as much
                // as the rest of the answer): stats read no mail, and only
                // tell whether the folder is still the one the user's own
                // open saw (see `StatusStamp`); anything else goes below.
                let kept_status = match (&*command, account.as_mut()) {
                    (CommandBody::Status { .. }, Some(acc)) => {
                        acc.backend.status_from_cache(&t, &command, &options)
                    }
                    _ => None,
                };
                let result = if let Some(out) = kept_status {
                    Some((out, st))
                } else if let Some(acc) = account.as_mut().filter(|_| is_light(&command, &options))
                {
                    // A few messages of the selected mailbox: cheaper here
                    // than a hand-off to the blocking pool (mbsync sends one
                    // UID FETCH per message), and so are the light commands
                    // already read after it, under the same switch to the
                    // mail user (a switch there and back costs as much as a
                    // small FETCH).
                    let (uid, gid) = (acc.uid, acc.gid);
                    next = Some(as_user(uid, gid, || {
                        let (mut tag, mut command, mut options) = (t, command, options);
                        loop {
                            let st = session.state();
                            let (out, st) = acc.backend.run(&tag, *command, st, &options);
                            session.respond(&out);
                            session.command_done(st);
                            match session.next_action() {
                                Action::Run {
                                    tag: t,
                                    command: c,
                                    options: o,
                                } if is_light(&c, &o) => (tag, command, options) = (t, c, o),
                                other => break other,
                            }
                        }
                    }));
                    continue;
                } else {
                    with_account_streaming(&mut account, &mut conn.stream, &mut session, move |b| {
                        b.run(&t, *command, st, &options)
                    })
                    .await
                };
                match result {
                    Some((out, new_state)) => {
                        session.respond(&out);
                        session.command_done(new_state);
                        if idle {
                            session.idle_started(tag);
                        }
                    }
                    None => {
                        tracing::error!(client = %client, "mailbox task failed");
                        session.respond(
                            format!("{tag} NO [SERVERBUG] Internal error.\r\n").as_bytes(),
                        );
                        session.command_done(State::Logout);
                    }
                }
            }
            Action::List { tag, list } => {
                let utf8 = session.utf8_enabled();
                let st = session.state();
                let out = with_account_streaming(
                    &mut account,
                    &mut conn.stream,
                    &mut session,
                    move |b| b.list_extended(&tag, &list, utf8),
                )
                .await;
                finish(&mut session, out, st);
            }
            Action::MultiAppend { tag, append } => {
                let utf8 = session.utf8_enabled();
                let st = session.state();
                let out = with_account(&mut account, move |b| b.multi_append(&tag, &append, utf8));
                finish(&mut session, out.await, st);
            }
            Action::CancelUpdate { tag, tags } => {
                let st = session.state();
                let out = with_account(&mut account, move |b| b.cancel_update(&tag, &tags));
                finish(&mut session, out.await, st);
            }
            Action::Close => {
                let _ = flush(&mut conn.stream, &mut session).await;
                let _ = conn.stream.shutdown().await;
                break;
            }
        }
    }
    tracing::info!(client = %client, user = session.user().unwrap_or(""), "disconnect");
}
