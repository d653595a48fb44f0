//! The outbound queue: messages for remote recipients wait in the
//! [`spool`] until the scheduler has delivered, bounced or expired every
//! recipient. One attempt per message at a time; concurrency is limited
//! globally and per next hop (Postfix's default_destination_concurrency_limit).

pub mod cli;
pub mod control;
pub mod dsn;
pub mod hold;
pub mod pickup;
pub mod policy;
pub mod spool;

use crate::smtp::Ctx;
use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::observe::metrics;
use crate::smtp::outbound::client::{Rcpt, RcptStatus, Transaction};
use crate::smtp::outbound::nexthop::{self, NextHop, Route};
use crate::smtp::outbound::Outbound;
use policy::Timing;
use spool::{Envelope, RcptState, Spool};

/// Simultaneous outbound connections in all (Postfix: default_process_limit).
const GLOBAL_CONCURRENCY: usize = 100;
/// How often the maildrop is looked at even without a pickup request.
const PICKUP_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Sched {
    /// id -> next attempt (seconds since the epoch).
    due: HashMap<String, u64>,
    running: HashSet<String>,
}

pub struct Queue {
    spool: Spool,
    timing: Timing,
    wake: Notify,
    sched: Mutex<Sched>,
    global: Arc<Semaphore>,
    pickup_requested: std::sync::atomic::AtomicBool,
    destinations: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// default_destination_concurrency_limit.
    per_destination: usize,
}

fn now() -> u64 {
    spool::unix(SystemTime::now())
}

impl Queue {
    /// Opens the spool, cleans up interrupted writes and loads what is queued.
    pub fn open(config: &Config) -> io::Result<Queue> {
        let spool = Spool::open(&config.queue_directory)?;
        let removed = spool.recover()?;
        if removed > 0 {
            tracing::info!(
                removed,
                "queue: removed interrupted writes (never acknowledged)"
            );
        }
        let (envs, bad) = spool.scan()?;
        for (path, why) in bad {
            tracing::error!(file = %path.display(), error = %why, "queue: unreadable envelope left in place");
        }
        let mut sched = Sched::default();
        for e in &envs {
            sched.due.insert(e.id.clone(), e.next_attempt);
        }
        if !envs.is_empty() {
            tracing::info!(messages = envs.len(), "queue: loaded");
        }
        Ok(Queue {
            spool,
            timing: Timing {
                minimal_backoff: config.minimal_backoff_time,
                maximal_backoff: config.maximal_backoff_time,
                lifetime: config.maximal_queue_lifetime,
                delay_warning: config.delay_warning_time,
            },
            wake: Notify::new(),
            sched: Mutex::new(sched),
            global: Arc::new(Semaphore::new(GLOBAL_CONCURRENCY)),
            pickup_requested: Default::default(),
            destinations: Mutex::new(HashMap::new()),
            per_destination: config.default_destination_concurrency_limit.max(1),
        })
    }

    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    /// A newly committed message: try it now.
    pub fn schedule_now(&self, id: &str) {
        self.sched.lock().unwrap().due.insert(id.to_string(), 0);
        self.wake.notify_one();
    }

    /// `queue flush`: every deferred message is retried now.
    pub fn flush(&self) -> usize {
        let mut s = self.sched.lock().unwrap();
        for t in s.due.values_mut() {
            *t = 0;
        }
        let n = s.due.len();
        drop(s);
        self.wake.notify_one();
        n
    }

    /// `queue delete ID|ALL`: the number of messages removed.
    pub fn delete(&self, id: &str) -> io::Result<usize> {
        let ids: Vec<String> = if id == "ALL" {
            self.spool.scan()?.0.into_iter().map(|e| e.id).collect()
        } else if spool::valid_id(id) {
            vec![id.to_string()]
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("'{id}' is not a queue id"),
            ));
        };
        let mut n = 0;
        let held: Vec<String> = if id == "ALL" {
            hold::list(&self.spool)?
                .into_iter()
                .map(|(id, _, _)| id)
                .collect()
        } else {
            vec![id.to_string()]
        };
        for id in held {
            if hold::remove(&self.spool, &id)? {
                tracing::info!("{id}: removed from hold (queue delete)");
                n += 1;
            }
        }
        for id in ids {
            let existed = self.spool.read_envelope(&id).is_ok();
            self.spool.remove(&id)?;
            self.sched.lock().unwrap().due.remove(&id);
            if existed {
                tracing::info!("{id}: removed (queue delete)");
                n += 1;
            }
        }
        Ok(n)
    }

    /// Messages in the queue (for /metrics).
    pub fn len(&self) -> usize {
        let s = self.sched.lock().unwrap();
        s.due.len() + s.running.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The scheduler: runs until `shutdown`. Attempts in progress finish
    /// on their own (their results are written like any other).
    pub async fn run(
        self: Arc<Self>,
        ctx: Arc<Ctx>,
        outbound: Arc<Outbound>,
        shutdown: CancellationToken,
    ) {
        let mut next_pickup = tokio::time::Instant::now();
        loop {
            let requested = self
                .pickup_requested
                .swap(false, std::sync::atomic::Ordering::SeqCst);
            if requested || tokio::time::Instant::now() >= next_pickup {
                pickup::run(&ctx).await;
                next_pickup = tokio::time::Instant::now() + PICKUP_INTERVAL;
            }
            let (ready, next) = {
                let mut s = self.sched.lock().unwrap();
                let t = now();
                let mut ready: Vec<(u64, String)> = s
                    .due
                    .iter()
                    .filter(|(id, due)| **due <= t && !s.running.contains(*id))
                    .map(|(id, due)| (*due, id.clone()))
                    .collect();
                ready.sort();
                for (_, id) in &ready {
                    s.due.remove(id);
                    s.running.insert(id.clone());
                }
                let next = s.due.values().min().map(|d| d.saturating_sub(t));
                (ready, next)
            };
            for (_, id) in ready {
                let q = self.clone();
                let (st, ob) = (ctx.clone(), outbound.clone());
                tokio::spawn(async move {
                    q.attempt(&st, &ob, &id).await;
                    q.sched.lock().unwrap().running.remove(&id);
                });
            }
            let sleep = Duration::from_secs(next.unwrap_or(3600).max(1))
                .min(next_pickup.saturating_duration_since(tokio::time::Instant::now()));
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// A `pickup` request: look at the maildrop now.
    pub fn poke(&self) {
        self.pickup_requested
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.wake.notify_one();
    }

    fn destination(&self, hop: &NextHop) -> Arc<Semaphore> {
        self.destinations
            .lock()
            .unwrap()
            .entry(hop.label())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_destination)))
            .clone()
    }

    /// One delivery attempt of message `id` to all its pending recipients.
    async fn attempt(&self, ctx: &Arc<Ctx>, outbound: &Outbound, id: &str) {
        let _slot = self.global.clone().acquire_owned().await;
        let env = match self.spool.read_envelope(id) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) => {
                tracing::error!("{id}: cannot read queue file: {e}");
                self.sched
                    .lock()
                    .unwrap()
                    .due
                    .insert(id.to_string(), now() + 300);
                return;
            }
        };
        let config = &ctx.config;
        let mut results = Vec::new();
        let mut groups: Vec<(NextHop, Vec<usize>)> = Vec::new();
        for (i, r) in env.recipients.iter().enumerate() {
            if r.state != RcptState::Pending {
                continue;
            }
            match nexthop::route(&r.address, &config.relayhost, &ctx.tables.transport_maps) {
                Ok(Route::Hop(hop)) => match groups.iter_mut().find(|(h, _)| *h == hop) {
                    Some((_, v)) => v.push(i),
                    None => groups.push((hop, vec![i])),
                },
                Ok(Route::Refuse(text)) => results.push(policy::Result {
                    index: i,
                    status: RcptStatus::Failed(format!("550 5.1.0 {text}")),
                    remote: None,
                }),
                Err(text) => results.push(policy::Result {
                    index: i,
                    status: RcptStatus::Deferred(text),
                    remote: None,
                }),
            }
        }
        let message = self.spool.msg_path(id);
        let start = std::time::Instant::now();
        for (hop, idx) in groups {
            let sem = self.destination(&hop);
            let _permit = sem.acquire_owned().await;
            let txn = Transaction {
                sender: env.sender.clone(),
                rcpts: idx
                    .iter()
                    .map(|&i| Rcpt {
                        address: env.recipients[i].address.clone(),
                        notify: env.recipients[i].notify,
                        orcpt: env.recipients[i].orcpt.clone(),
                    })
                    .collect(),
                size: env.size,
                eight_bit: env.eight_bit,
                smtputf8: env.smtputf8,
                ret_full: env.ret_full,
                envid: env.envid.clone(),
            };
            let creds = credentials(ctx, &hop);
            let attempt = outbound.deliver(&hop, creds, &txn, &message).await;
            for (k, status) in attempt.statuses.into_iter().enumerate() {
                let i = idx[k];
                log_result(
                    id,
                    &env.recipients[i].address,
                    &hop,
                    &attempt.remote,
                    &status,
                    start.elapsed(),
                    env.arrival,
                );
                results.push(policy::Result {
                    index: i,
                    status,
                    remote: attempt.remote.clone(),
                });
            }
        }
        for r in &results {
            match &r.status {
                RcptStatus::Delivered(_) => {
                    metrics::delivered(metrics::REMOTE, 1, now().saturating_sub(env.arrival) as f64)
                }
                RcptStatus::Failed(_) => {
                    metrics::get().bounced.inc();
                }
                RcptStatus::Deferred(_) => {
                    metrics::get().outbound_deferred.inc();
                }
                RcptStatus::Unknown => {}
            }
        }
        let mut env2 = env.clone();
        let mut plan = policy::apply(&mut env2, results, now(), &self.timing);

        // Bounces (never for the null sender), then the warning.
        let bounce: Vec<usize> = plan
            .failed
            .iter()
            .copied()
            .filter(|&i| wants(env2.recipients[i].notify, smtp_proto::RCPT_NOTIFY_FAILURE))
            .collect();
        if !env.sender.is_empty() && !bounce.is_empty() {
            let message = self.spool.read_message(id).unwrap_or_default();
            if let Err(e) = send_dsn(ctx, &env2, dsn::Kind::Failure, &bounce, &message).await {
                // Keep them queued: the bounce is retried with them.
                tracing::error!(
                    "{id}: cannot queue the bounce to <{}>: {e}; retrying later",
                    env.sender
                );
                for &i in &plan.failed {
                    env2.recipients[i].state = RcptState::Pending;
                }
                env2.next_attempt = now() + self.timing.minimal_backoff.as_secs();
                plan.done = false;
            }
        }
        if plan.warn && !env.sender.is_empty() {
            let warn: Vec<usize> = plan
                .deferred
                .iter()
                .copied()
                .filter(|&i| wants(env2.recipients[i].notify, smtp_proto::RCPT_NOTIFY_DELAY))
                .collect();
            if !warn.is_empty() {
                let message = self.spool.read_message(id).unwrap_or_default();
                if let Err(e) = send_dsn(ctx, &env2, dsn::Kind::Delay, &warn, &message).await {
                    tracing::warn!("{id}: cannot queue the delay warning: {e}");
                }
            }
        }
        if plan.done {
            if let Err(e) = self.spool.retire(id) {
                tracing::error!("{id}: cannot remove from the queue: {e}");
            } else {
                tracing::info!("{id}: removed");
            }
            return;
        }
        match self.spool.update(&env2) {
            Ok(()) => {
                self.sched
                    .lock()
                    .unwrap()
                    .due
                    .insert(id.to_string(), env2.next_attempt);
                // The scheduler may be asleep until a later message is due.
                self.wake.notify_one();
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                tracing::info!("{id}: deleted while being delivered");
            }
            Err(e) => {
                tracing::error!("{id}: cannot update the queue file: {e}; retrying later");
                self.sched.lock().unwrap().due.insert(
                    id.to_string(),
                    now() + self.timing.minimal_backoff.as_secs(),
                );
            }
        }
    }
}

/// RFC 3461 §4.1: no NOTIFY means failures (and, by our choice, delays)
/// are reported; NOTIFY=NEVER means nothing is.
fn wants(notify: u64, what: u64) -> bool {
    notify == 0 || notify & what != 0
}

/// smtp_sasl_password_maps: looked up by `[host]:port`, `[host]`, `host`.
fn credentials(ctx: &Ctx, hop: &NextHop) -> Option<(String, String)> {
    let keys = [hop.label(), format!("[{}]", hop.host), hop.host.clone()];
    for key in &keys {
        for m in &ctx.tables.smtp_sasl_password_maps {
            if let Some(v) = m.get().get(key) {
                let (user, pass) = v.split_once(':').unwrap_or((v, ""));
                return Some((user.to_string(), pass.to_string()));
            }
        }
    }
    None
}

/// Postfix-style delivery log line, e.g.
/// `ID: to=<a@b>, relay=mx[1.2.3.4], delay=0.31, status=sent (...)`.
fn log_result(
    id: &str,
    rcpt: &str,
    hop: &NextHop,
    remote: &Option<String>,
    status: &RcptStatus,
    took: Duration,
    arrival: u64,
) {
    let relay = remote
        .clone()
        .unwrap_or_else(|| format!("{}[none]", hop.label()));
    let delay = now().saturating_sub(arrival).max(took.as_secs());
    let (word, text) = match status {
        RcptStatus::Delivered(t) => ("sent", t),
        RcptStatus::Deferred(t) => ("deferred", t),
        RcptStatus::Failed(t) => ("bounced", t),
        RcptStatus::Unknown => return,
    };
    let line = format!("{id}: to=<{rcpt}>, relay={relay}, delay={delay}, status={word} ({text})");
    match status {
        RcptStatus::Delivered(_) => tracing::info!("{line}"),
        _ => tracing::warn!("{line}"),
    }
}

/// Builds a DSN about `which` recipients and hands it to local delivery or
/// the queue, from `<>`.
pub(super) async fn send_dsn(
    ctx: &Arc<Ctx>,
    env: &Envelope,
    kind: dsn::Kind,
    which: &[usize],
    original: &[u8],
) -> Result<(), String> {
    let entries: Vec<dsn::Entry> = which
        .iter()
        .map(|&i| {
            let r = &env.recipients[i];
            dsn::Entry {
                address: r.address.clone(),
                orcpt: r.orcpt.clone(),
                text: r.last_error.clone().unwrap_or_default(),
                remote_mta: r.remote_mta.clone(),
            }
        })
        .collect();
    let message = dsn::build(
        env,
        kind,
        &entries,
        &ctx.config.myhostname,
        original,
        SystemTime::now(),
    );
    let (id, refused) =
        pickup::submit_some(ctx, "", std::slice::from_ref(&env.sender), message, true).await?;
    if let Some((rcpt, why)) = refused.first() {
        // A double bounce: nobody to tell. Postfix would mail the postmaster.
        tracing::warn!("{}: notification to <{rcpt}> discarded: {why}", env.id);
        return Ok(());
    }
    tracing::info!(
        "{}: sender {} notification: {id}",
        env.id,
        match kind {
            dsn::Kind::Failure => "non-delivery",
            dsn::Kind::Delay => "delay",
        }
    );
    Ok(())
}
