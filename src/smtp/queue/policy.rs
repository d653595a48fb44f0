//! What an attempt's results do to a queued message: recipient states,
//! the next retry (Postfix's backoff: the message's age, clamped to
//! `minimal_backoff_time`..`maximal_backoff_time`), expiry after
//! `maximal_queue_lifetime`, and when a delay warning is due. Pure: no
//! clock, no files.

use std::time::Duration;

use super::spool::{Envelope, RcptState};
use crate::smtp::outbound::client::RcptStatus;

#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub minimal_backoff: Duration,
    pub maximal_backoff: Duration,
    pub lifetime: Duration,
    /// Zero: no delay warnings.
    pub delay_warning: Duration,
}

/// One recipient's result in this attempt (index into `env.recipients`).
#[derive(Debug, Clone)]
pub struct Result {
    pub index: usize,
    pub status: RcptStatus,
    pub remote: Option<String>,
}

/// What to do after applying the results.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Recipients that failed now (bounce them, unless the sender is `<>`).
    pub failed: Vec<usize>,
    /// Recipients accepted now.
    pub delivered: Vec<usize>,
    /// Recipients still pending, deferred now.
    pub deferred: Vec<usize>,
    /// Send a delay warning for the deferred recipients.
    pub warn: bool,
    /// Nothing left to deliver: remove from the queue.
    pub done: bool,
}

/// The retry interval for a message of this age.
pub fn backoff(age: Duration, t: &Timing) -> Duration {
    age.clamp(t.minimal_backoff, t.maximal_backoff.max(t.minimal_backoff))
}

/// Applies `results` to `env` at time `now` (seconds since the epoch).
pub fn apply(env: &mut Envelope, results: Vec<Result>, now: u64, t: &Timing) -> Plan {
    let mut plan = Plan::default();
    for r in results {
        let Some(rcpt) = env.recipients.get_mut(r.index) else {
            continue;
        };
        if rcpt.state != RcptState::Pending {
            continue;
        }
        if r.remote.is_some() {
            rcpt.remote_mta = r.remote;
        }
        match r.status {
            RcptStatus::Delivered(text) => {
                rcpt.state = RcptState::Delivered;
                rcpt.last_error = Some(text);
                plan.delivered.push(r.index);
            }
            RcptStatus::Failed(text) => {
                rcpt.state = RcptState::Failed;
                rcpt.last_error = Some(text);
                plan.failed.push(r.index);
            }
            RcptStatus::Deferred(text) => {
                rcpt.last_error = Some(text);
            }
            RcptStatus::Unknown => {}
        }
    }
    env.attempts += 1;
    let age = Duration::from_secs(now.saturating_sub(env.arrival));
    let pending: Vec<usize> = env
        .recipients
        .iter()
        .enumerate()
        .filter(|(_, r)| r.state == RcptState::Pending)
        .map(|(i, _)| i)
        .collect();
    if pending.is_empty() {
        plan.done = true;
        return plan;
    }
    if age >= t.lifetime {
        // Expired: what was temporary is now final (Postfix: "message
        // expired" after maximal_queue_lifetime).
        for i in pending {
            let r = &mut env.recipients[i];
            r.state = RcptState::Failed;
            let last = r.last_error.take().unwrap_or_else(|| "no attempt".into());
            r.last_error = Some(format!(
                "message expired after {} days in the queue; last error: {last}",
                age.as_secs() / 86_400
            ));
            plan.failed.push(i);
        }
        plan.done = true;
        return plan;
    }
    plan.deferred = pending;
    env.next_attempt = now + backoff(age, t).as_secs();
    if !t.delay_warning.is_zero() && !env.warned && age >= t.delay_warning {
        env.warned = true;
        plan.warn = true;
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::queue::spool::QueuedRcpt;

    const T: Timing = Timing {
        minimal_backoff: Duration::from_secs(300),
        maximal_backoff: Duration::from_secs(4000),
        lifetime: Duration::from_secs(5 * 86_400),
        delay_warning: Duration::from_secs(4 * 3600),
    };

    fn env(n: usize) -> Envelope {
        Envelope {
            id: "X".into(),
            sender: "a@example.com".into(),
            arrival: 1_000_000,
            size: 1,
            eight_bit: false,
            smtputf8: false,
            ret_full: None,
            envid: None,
            recipients: (0..n)
                .map(|i| QueuedRcpt {
                    address: format!("r{i}@remote.example"),
                    notify: 0,
                    orcpt: None,
                    state: RcptState::Pending,
                    last_error: None,
                    remote_mta: None,
                })
                .collect(),
            attempts: 0,
            next_attempt: 0,
            warned: false,
        }
    }

    fn res(index: usize, status: RcptStatus) -> Result {
        Result {
            index,
            status,
            remote: Some("mx[192.0.2.1]".into()),
        }
    }

    #[test]
    fn backoff_is_the_age_clamped() {
        assert_eq!(backoff(Duration::from_secs(10), &T).as_secs(), 300);
        assert_eq!(backoff(Duration::from_secs(1000), &T).as_secs(), 1000);
        assert_eq!(backoff(Duration::from_secs(100_000), &T).as_secs(), 4000);
    }

    #[test]
    fn mixed_results() {
        let mut e = env(3);
        let plan = apply(
            &mut e,
            vec![
                res(0, RcptStatus::Delivered("250 ok".into())),
                res(1, RcptStatus::Failed("550 no".into())),
                res(2, RcptStatus::Deferred("451 later".into())),
            ],
            1_000_060,
            &T,
        );
        assert_eq!(plan.delivered, vec![0]);
        assert_eq!(plan.failed, vec![1]);
        assert_eq!(plan.deferred, vec![2]);
        assert!(!plan.done && !plan.warn);
        assert_eq!(e.attempts, 1);
        assert_eq!(e.next_attempt, 1_000_060 + 300);
        assert_eq!(e.recipients[2].last_error.as_deref(), Some("451 later"));
        assert_eq!(e.recipients[1].state, RcptState::Failed);

        // The retry delivers the last one: done.
        let plan = apply(
            &mut e,
            vec![res(2, RcptStatus::Delivered("250 ok".into()))],
            1_000_400,
            &T,
        );
        assert!(plan.done);
        assert_eq!(plan.delivered, vec![2]);
    }

    #[test]
    fn expiry_turns_deferrals_into_failures() {
        let mut e = env(1);
        let now = 1_000_000 + 5 * 86_400;
        let plan = apply(
            &mut e,
            vec![res(0, RcptStatus::Deferred("connect to x: refused".into()))],
            now,
            &T,
        );
        assert!(plan.done);
        assert_eq!(plan.failed, vec![0]);
        let err = e.recipients[0].last_error.as_deref().unwrap();
        assert!(err.starts_with("message expired after 5 days"), "{err}");
        assert!(err.ends_with("connect to x: refused"));
    }

    #[test]
    fn one_delay_warning() {
        let mut e = env(1);
        let d = || vec![res(0, RcptStatus::Deferred("451".into()))];
        assert!(!apply(&mut e, d(), 1_000_000 + 3600, &T).warn);
        assert!(apply(&mut e, d(), 1_000_000 + 4 * 3600, &T).warn);
        assert!(!apply(&mut e, d(), 1_000_000 + 5 * 3600, &T).warn);
        let mut e = env(1);
        let no_warn = Timing {
            delay_warning: Duration::ZERO,
            ..T
        };
        assert!(!apply(&mut e, d(), 1_000_000 + 86_400, &no_warn).warn);
    }

    #[test]
    fn decided_recipients_are_not_changed_again() {
        let mut e = env(1);
        e.recipients[0].state = RcptState::Delivered;
        let plan = apply(
            &mut e,
            vec![res(0, RcptStatus::Failed("550".into()))],
            1_000_001,
            &T,
        );
        assert!(plan.failed.is_empty());
        assert!(plan.done);
    }
}
