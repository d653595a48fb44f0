//! Mail made on this host: `pigeonpost sendmail` drops messages into
//! `maildrop/` (like Postfix's postdrop), and the running server picks them
//! up, routes them as if they came from `mynetworks`, and stores them. DSNs
//! take the same path without the maildrop.

use crate::smtp::Ctx;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::spool::{self, Envelope, QueuedRcpt, RcptState, Spool};
use crate::smtp::accept::{self, Origin, LOCAL_TRUST};
use crate::smtp::proto::{self, BodyType, Recipient};
use crate::smtp::received::new_queue_id;

/// `maildrop/<id>.json`: written after `<id>.msg`, so its presence means
/// the message is complete.
#[derive(Debug, Serialize, Deserialize)]
pub struct Drop {
    pub sender: String,
    pub recipients: Vec<String>,
    /// The local user who ran sendmail, for the log.
    #[serde(default)]
    pub user: String,
    /// Held by a milter (`hold/`): why. Absent in the maildrop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_reason: Option<String>,
    /// Seconds since the epoch the message arrived (held messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arrival: Option<u64>,
    /// DKIM-sign it as our own mail: yes for sendmail (the default), no
    /// for a held message that came from outside.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub sign: bool,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

pub(super) fn write_synced(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}

/// `pigeonpost sendmail`: puts a message in the maildrop, durably.
pub fn drop_message(spool: &Spool, drop: &Drop, message: &[u8]) -> io::Result<String> {
    let dir = spool.maildrop();
    fs::create_dir_all(&dir)?;
    let id = new_queue_id();
    write_synced(&dir.join(format!("{id}.msg")), message)?;
    let json = serde_json::to_vec(drop).map_err(io::Error::other)?;
    if let Err(e) = write_synced(&dir.join(format!("{id}.json")), &json) {
        let _ = fs::remove_file(dir.join(format!("{id}.msg")));
        return Err(e);
    }
    fs::File::open(&dir)?.sync_all()?;
    Ok(id)
}

/// Routes and stores a message made here (from `sender`, `""` for DSNs).
/// Recipients the router refuses permanently are returned with the reason;
/// a temporary refusal fails the whole submission.
pub(super) async fn submit_some(
    ctx: &Arc<Ctx>,
    sender: &str,
    recipients: &[String],
    message: Vec<u8>,
    sign: bool,
) -> Result<(String, Vec<(String, String)>), String> {
    let mut rcpts = Vec::new();
    let mut refused = Vec::new();
    for r in recipients {
        match accept::route(ctx, r, LOCAL_TRUST) {
            Ok(route) => rcpts.push(Recipient {
                address: r.clone(),
                notify: 0,
                orcpt: None,
                route,
            }),
            Err(e) => {
                let (code, enhanced, text) = e.reply(r);
                if code < 500 {
                    return Err(format!("{code} {enhanced} {text}"));
                }
                refused.push((r.clone(), format!("{code} {enhanced} {text}")));
            }
        }
    }
    let id = new_queue_id();
    if rcpts.is_empty() {
        return Ok((id, refused));
    }
    let eight_bit = message.iter().any(|b| *b >= 0x80);
    let env = proto::Envelope {
        mail_from: sender.to_string(),
        body: if eight_bit {
            BodyType::EightBitMime
        } else {
            BodyType::SevenBit
        },
        smtputf8: false,
        ret: None,
        envid: None,
        recipients: rcpts,
    };
    let mut origin = Origin::local("local");
    // The Received: line has always said "from unknown" for local mail.
    origin.helo = String::new();
    origin.sign = sign;
    let start = std::time::Instant::now();
    let stored = accept::store(ctx, &id, &origin, &env, message)
        .await
        .map_err(|e| e.to_string())?;
    let m = crate::observe::metrics::get();
    m.received.inc();
    crate::observe::metrics::delivered(
        crate::observe::metrics::LOCAL,
        stored.local_copies.len(),
        start.elapsed().as_secs_f64(),
    );
    Ok((id, refused))
}

/// Picks up everything in the maildrop.
pub async fn run(ctx: &Arc<Ctx>) {
    let spool = ctx.queue.spool().clone();
    let dir = spool.maildrop();
    let Ok(rd) = fs::read_dir(&dir) else {
        return;
    };
    let mut ids: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .map(str::to_string)
        })
        .filter(|id| spool::valid_id(id))
        .collect();
    ids.sort();
    for id in ids {
        let (json, msg) = (
            dir.join(format!("{id}.json")),
            dir.join(format!("{id}.msg")),
        );
        let drop: Drop = match fs::read(&json)
            .map_err(|e| e.to_string())
            .and_then(|d| serde_json::from_slice(&d).map_err(|e| e.to_string()))
        {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(file = %json.display(), error = %e, "pickup: unreadable maildrop file left in place");
                continue;
            }
        };
        let message = match fs::read(&msg) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(file = %msg.display(), error = %e, "pickup: message file unreadable");
                continue;
            }
        };
        // non_smtpd_milters; not again for a message released from hold.
        let (drop, message) = if drop.hold_reason.is_none() {
            match filter(ctx, &id, drop, message).await {
                Filtered::Deliver(drop, message) => (drop, message),
                Filtered::Done => {
                    let _ = fs::remove_file(&json);
                    let _ = fs::remove_file(&msg);
                    continue;
                }
                Filtered::Defer => continue,
            }
        } else {
            (drop, message)
        };
        let original = message.clone();
        match submit_some(ctx, &drop.sender, &drop.recipients, message, drop.sign).await {
            Ok((qid, refused)) => {
                tracing::info!(
                    "{qid}: uid={} from=<{}>, to=<{}>, proto=local, status=picked up",
                    drop.user,
                    drop.sender,
                    drop.recipients.join(">,<")
                );
                if !refused.is_empty() && !drop.sender.is_empty() {
                    bounce_refused(ctx, &qid, &drop.sender, &refused, &original).await;
                }
                let _ = fs::remove_file(&json);
                let _ = fs::remove_file(&msg);
            }
            Err(e) => {
                tracing::warn!("pickup of {id} deferred: {e}");
            }
        }
    }
}

/// What `non_smtpd_milters` made of a message from the maildrop.
enum Filtered {
    /// Deliver this (changed or not).
    Deliver(Drop, Vec<u8>),
    /// Held, discarded or bounced: the maildrop files can go.
    Done,
    /// A milter said tempfail (or failed under it): try again later.
    Defer,
}

/// `non_smtpd_milters` (Postfix MILTER_README "Non-SMTP mail"): the
/// milters see a connection from localhost, `HELO localhost`, the envelope
/// and the message, and may change, hold, discard or refuse it; a refused
/// message is bounced to its sender.
async fn filter(ctx: &Arc<Ctx>, id: &str, mut drop: Drop, message: Vec<u8>) -> Filtered {
    use crate::smtp::milter::{ConnectInfo, EnvelopeEdit, MilterSession, Verdict};
    let c = &ctx.config;
    let Some(mut m) = MilterSession::new(&c.non_smtpd_milters, &c.milter) else {
        return Filtered::Deliver(drop, message);
    };
    let localhost: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    let info = ConnectInfo {
        client: localhost,
        local: localhost,
        myhostname: c.myhostname.clone(),
        tls: None,
    };
    let mut verdict = m.connect(&info).await;
    if verdict == Verdict::Continue {
        verdict = m.helo("localhost").await;
    }
    if verdict == Verdict::Continue {
        verdict = m.mail(&drop.sender, &[], id).await;
    }
    for r in &drop.recipients {
        if verdict == Verdict::Continue {
            verdict = m.rcpt(r, "local").await;
        }
    }
    if verdict == Verdict::Continue {
        verdict = m.data().await;
    }
    let mut message = message;
    if verdict == Verdict::Continue {
        let out = m.message(&message).await;
        verdict = out.verdict;
        if let Some(changed) = out.message {
            message = changed;
        }
        for edit in out.envelope {
            match edit {
                EnvelopeEdit::ChangeFrom(f) => drop.sender = f,
                EnvelopeEdit::AddRcpt(r) => {
                    if !drop.recipients.iter().any(|x| x.eq_ignore_ascii_case(&r)) {
                        drop.recipients.push(r)
                    }
                }
                EnvelopeEdit::DelRcpt(r) => drop.recipients.retain(|x| !x.eq_ignore_ascii_case(&r)),
            }
        }
    }
    m.quit().await;
    match verdict {
        Verdict::Refuse { reply, milter } if reply.code >= 500 => {
            tracing::info!(milter = %milter, "{id}: milter-reject: END-OF-MESSAGE from localhost[127.0.0.1]: {reply}; from=<{}> proto=local", drop.sender);
            if !drop.sender.is_empty() {
                let refused: Vec<(String, String)> = drop
                    .recipients
                    .iter()
                    .map(|r| (r.clone(), reply.to_string()))
                    .collect();
                bounce_refused(ctx, id, &drop.sender, &refused, &message).await;
            }
            Filtered::Done
        }
        Verdict::Refuse { reply, milter } => {
            tracing::warn!(milter = %milter, "pickup of {id} deferred: milter: {reply}");
            Filtered::Defer
        }
        Verdict::Continue if m.discard().is_some() || drop.recipients.is_empty() => {
            tracing::info!("{id}: milter-discard: END-OF-MESSAGE from localhost[127.0.0.1]: milter triggers DISCARD action; from=<{}> proto=local", drop.sender);
            Filtered::Done
        }
        Verdict::Continue => match m.hold() {
            Some(reason) => {
                let log = format!("{id}: milter-hold: END-OF-MESSAGE from localhost[127.0.0.1]: milter triggers HOLD action ({reason}); from=<{}> proto=local", drop.sender);
                drop.hold_reason = Some(reason.to_string());
                drop.arrival = Some(spool::unix(std::time::SystemTime::now()));
                let spool = ctx.queue.spool().clone();
                let hold_id = id.to_string();
                let held = tokio::task::spawn_blocking(move || {
                    super::hold::store(&spool, &hold_id, &drop, &message)
                })
                .await;
                match held {
                    Ok(Ok(())) => {
                        tracing::info!("{log}");
                        Filtered::Done
                    }
                    Ok(Err(e)) => {
                        tracing::error!("pickup of {id} deferred: cannot hold it: {e}");
                        Filtered::Defer
                    }
                    Err(e) => {
                        tracing::error!("pickup of {id} deferred: cannot hold it: {e}");
                        Filtered::Defer
                    }
                }
            }
            None => Filtered::Deliver(drop, message),
        },
    }
}

/// Recipients `sendmail` named that cannot exist: tell the sender.
async fn bounce_refused(
    ctx: &Arc<Ctx>,
    id: &str,
    sender: &str,
    refused: &[(String, String)],
    original: &[u8],
) {
    let env = Envelope {
        id: id.to_string(),
        sender: sender.to_string(),
        arrival: spool::unix(std::time::SystemTime::now()),
        size: original.len() as u64,
        eight_bit: false,
        smtputf8: false,
        ret_full: None,
        envid: None,
        recipients: refused
            .iter()
            .map(|(a, why)| QueuedRcpt {
                address: a.clone(),
                notify: 0,
                orcpt: None,
                state: RcptState::Failed,
                last_error: Some(why.clone()),
                remote_mta: None,
            })
            .collect(),
        attempts: 0,
        next_attempt: 0,
        warned: false,
    };
    let all: Vec<usize> = (0..env.recipients.len()).collect();
    if let Err(e) = super::send_dsn(ctx, &env, super::dsn::Kind::Failure, &all, original).await {
        tracing::error!("{id}: cannot send the bounce to <{sender}>: {e}");
    }
}
