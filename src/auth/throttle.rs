//! Slowing and stopping password guessing, for SMTP AUTH, IMAP and POP3
//! alike (one throttle per server, shared by every listener and kept
//! across reloads).
//!
//! - Every failed login is answered after `auth_failure_delay` (Dovecot).
//! - Failures raise a penalty, per client (IPv6: its /64) and per user
//!   name, that the next attempt waits before its password is even checked:
//!   the delay, doubled per further failure, at most 15 s (Dovecot's
//!   auth_penalty). A success clears both. The per-user part only slows:
//!   someone guessing at a user name can delay that user's logins, never
//!   lock them out.
//! - `auth_failure_ban_threshold` failures from one client within
//!   `auth_failure_ban_window` ban it for `auth_failure_ban_time`: its
//!   connections are refused at connect and any login it still attempts
//!   fails unchecked. Attempts being checked count towards the threshold,
//!   so parallel guessers cannot overshoot it.
//! - Clients in `auth_failure_ban_exceptions` are never penalised or banned.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::net::clients::{client_key, Bounded};

/// Dovecot's cap on the auth penalty (AUTH_PENALTY_MAX_SECS).
pub const MAX_PENALTY: Duration = Duration::from_secs(15);

/// Clients and user names remembered; a flood of distinct ones evicts the
/// least recently seen, so memory stays bounded (about 100 bytes each).
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Clone)]
pub struct ThrottleConfig {
    pub failure_delay: Duration,
    /// 0: never ban.
    pub ban_threshold: u32,
    pub ban_window: Duration,
    pub ban_time: Duration,
    pub exceptions: Vec<ipnet::IpNet>,
}

impl ThrottleConfig {
    pub fn from_config(config: &Config) -> Self {
        ThrottleConfig {
            failure_delay: config.auth_failure_delay,
            ban_threshold: config.auth_failure_ban_threshold,
            ban_window: config.auth_failure_ban_window,
            ban_time: config.auth_failure_ban_time,
            exceptions: config.auth_failure_ban_exceptions.clone(),
        }
    }
}

#[derive(Debug, Default)]
struct ClientRecord {
    /// Failures within the ban window, oldest first (at most the threshold).
    failures: VecDeque<Instant>,
    /// Failures since the last success: the penalty's exponent.
    penalty: u32,
    /// Attempts admitted and not yet finished.
    in_flight: u32,
    banned_until: Option<Instant>,
}

#[derive(Debug)]
struct Tables {
    clients: Bounded<IpAddr, ClientRecord>,
    users: Bounded<String, u32>,
}

#[derive(Debug)]
pub struct Throttle {
    cfg: ThrottleConfig,
    tables: Mutex<Tables>,
}

/// A login attempt may go ahead after `wait`; finish it with
/// [`Ticket::finish`]. Dropped unfinished (the client went away), it still
/// gives back its place.
#[derive(Debug)]
pub struct Ticket {
    throttle: Arc<Throttle>,
    client: Option<IpAddr>,
    pub wait: Duration,
}

/// The client is banned: the attempt fails unchecked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Banned;

/// What a finished attempt did to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    Ok,
    Failed,
    /// This failure reached the threshold: the client is now banned.
    FailedAndBanned {
        failures: u32,
    },
}

impl Throttle {
    pub fn new(cfg: ThrottleConfig) -> Arc<Self> {
        Arc::new(Throttle {
            cfg,
            tables: Mutex::new(Tables {
                clients: Bounded::new(MAX_ENTRIES),
                users: Bounded::new(MAX_ENTRIES),
            }),
        })
    }

    pub fn failure_delay(&self) -> Duration {
        self.cfg.failure_delay
    }

    pub fn ban_time(&self) -> Duration {
        self.cfg.ban_time
    }

    fn exempt(&self, ip: IpAddr) -> bool {
        self.cfg.exceptions.iter().any(|n| n.contains(&ip))
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Is this client banned now (checked at connect)?
    pub fn is_banned(&self, ip: IpAddr) -> bool {
        self.is_banned_at(ip, Instant::now())
    }

    fn is_banned_at(&self, ip: IpAddr, now: Instant) -> bool {
        let t = self.tables();
        t.clients
            .get(&client_key(ip))
            .and_then(|c| c.banned_until)
            .is_some_and(|until| until > now)
    }

    /// Before a password is checked: how long to wait first, or refused.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, user: &str) -> Result<Ticket, Banned> {
        self.admit_at(ip, user, Instant::now())
    }

    fn admit_at(self: &Arc<Self>, ip: IpAddr, user: &str, now: Instant) -> Result<Ticket, Banned> {
        if self.exempt(ip) {
            return Ok(Ticket {
                throttle: self.clone(),
                client: None,
                wait: Duration::ZERO,
            });
        }
        let key = client_key(ip);
        let mut t = self.tables();
        let user_penalty = t.users.get(&user_key(user)).copied().unwrap_or(0);
        let threshold = self.cfg.ban_threshold;
        let window = self.cfg.ban_window;
        let c = t.clients.entry(key, now, ClientRecord::default);
        if c.banned_until.is_some_and(|until| until > now) {
            return Err(Banned);
        }
        c.banned_until = None;
        expire(&mut c.failures, now, window);
        // Attempts being checked count toward the threshold once the client
        // has failed at all, so parallel guessers can't overshoot it; a
        // client without failures (a webmail opening 50 sessions at once)
        // is never refused for its concurrency.
        let failures = c.failures.len() as u32;
        if threshold > 0 && failures > 0 && failures + c.in_flight >= threshold {
            return Err(Banned);
        }
        c.in_flight += 1;
        let wait = penalty(self.cfg.failure_delay, c.penalty.max(user_penalty));
        Ok(Ticket {
            throttle: self.clone(),
            client: Some(key),
            wait,
        })
    }

    fn finish_at(&self, client: IpAddr, user: &str, ok: bool, now: Instant) -> Finished {
        let mut t = self.tables();
        let threshold = self.cfg.ban_threshold;
        let window = self.cfg.ban_window;
        let ban_time = self.cfg.ban_time;
        let c = t.clients.entry(client, now, ClientRecord::default);
        c.in_flight = c.in_flight.saturating_sub(1);
        if ok {
            c.penalty = 0;
            t.users.remove(&user_key(user));
            return Finished::Ok;
        }
        c.penalty = c.penalty.saturating_add(1);
        expire(&mut c.failures, now, window);
        c.failures.push_back(now);
        let mut outcome = Finished::Failed;
        if threshold > 0 && c.failures.len() as u32 >= threshold && c.banned_until.is_none() {
            c.banned_until = Some(now + ban_time);
            outcome = Finished::FailedAndBanned {
                failures: c.failures.len() as u32,
            };
            // The ban is what counts now; start afresh when it ends.
            c.failures.clear();
        }
        while threshold > 0 && c.failures.len() as u32 > threshold {
            c.failures.pop_front();
        }
        if !user.is_empty() {
            let u = t.users.entry(user_key(user), now, || 0);
            *u = u.saturating_add(1);
        }
        outcome
    }

    /// Clients tracked now (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.tables().clients.len()
    }
}

impl Ticket {
    /// Records the attempt's result.
    pub fn finish(mut self, user: &str, ok: bool) -> Finished {
        match self.client.take() {
            Some(client) => self.throttle.finish_at(client, user, ok, Instant::now()),
            None if ok => Finished::Ok,
            None => Finished::Failed,
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let mut t = self.throttle.tables();
            if let Some(c) = t.clients.get_mut(&client) {
                c.in_flight = c.in_flight.saturating_sub(1);
            }
        }
    }
}

/// User names are compared without case (Dovecot lowercases by default
/// with `auth_username_format = %Lu`, and guessers vary the case).
fn user_key(user: &str) -> String {
    user.to_lowercase()
}

fn expire(failures: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while failures
        .front()
        .is_some_and(|&t| now.duration_since(t) >= window)
    {
        failures.pop_front();
    }
}

/// The wait after `n` failures: none, then the base doubled per further
/// failure, capped at [`MAX_PENALTY`].
pub fn penalty(base: Duration, n: u32) -> Duration {
    if n == 0 || base.is_zero() {
        return Duration::ZERO;
    }
    let factor = 1u32 << (n - 1).min(16);
    base.saturating_mul(factor).min(MAX_PENALTY)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(threshold: u32) -> Arc<Throttle> {
        Throttle::new(ThrottleConfig {
            failure_delay: Duration::from_secs(2),
            ban_threshold: threshold,
            ban_window: Duration::from_secs(600),
            ban_time: Duration::from_secs(1800),
            exceptions: vec!["10.0.0.0/8".parse().unwrap()],
        })
    }

    fn fail(t: &Arc<Throttle>, ip: IpAddr, user: &str, now: Instant) -> Finished {
        let ticket = t.admit_at(ip, user, now).expect("admitted");
        let client = ticket.client.unwrap();
        let out = t.finish_at(client, user, false, now);
        std::mem::forget(ticket);
        out
    }

    #[test]
    fn the_penalty_doubles_up_to_fifteen_seconds() {
        let base = Duration::from_secs(2);
        let waits: Vec<u64> = (0..6).map(|n| penalty(base, n).as_secs()).collect();
        assert_eq!(waits, vec![0, 2, 4, 8, 15, 15]);
        assert_eq!(penalty(Duration::ZERO, 5), Duration::ZERO);
    }

    #[test]
    fn failures_slow_the_client_and_the_user_and_a_success_clears_both() {
        let t = throttle(20);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let now = Instant::now();
        assert_eq!(t.admit_at(ip, "john", now).unwrap().wait, Duration::ZERO);
        fail(&t, ip, "john", now);
        fail(&t, ip, "john", now);
        assert_eq!(
            t.admit_at(ip, "bob", now).unwrap().wait,
            Duration::from_secs(4)
        );
        // Another address guessing at john is slowed by john's penalty, not banned.
        let other: IpAddr = "198.51.100.9".parse().unwrap();
        assert_eq!(
            t.admit_at(other, "JOHN", now).unwrap().wait,
            Duration::from_secs(4)
        );
        assert_eq!(t.admit_at(other, "bob", now).unwrap().wait, Duration::ZERO);
        // The real john logs in from his own address: both penalties go.
        let ticket = t.admit_at(other, "john", now).unwrap();
        assert_eq!(
            t.finish_at(ticket.client.unwrap(), "john", true, now),
            Finished::Ok
        );
        std::mem::forget(ticket);
        assert_eq!(
            t.admit_at(ip, "john", now).unwrap().wait,
            Duration::from_secs(4),
            "the guesser's own penalty stays"
        );
        assert_eq!(t.admit_at(other, "john", now).unwrap().wait, Duration::ZERO);
    }

    #[test]
    fn the_threshold_bans_then_the_ban_expires() {
        let t = throttle(3);
        let ip: IpAddr = "2001:db8:5::1".parse().unwrap();
        let now = Instant::now();
        assert_eq!(fail(&t, ip, "a", now), Finished::Failed);
        assert_eq!(fail(&t, ip, "b", now), Finished::Failed);
        assert_eq!(
            fail(&t, ip, "c", now),
            Finished::FailedAndBanned { failures: 3 }
        );
        // Same /64, another address: banned too.
        let neighbour: IpAddr = "2001:db8:5::77".parse().unwrap();
        assert!(t.is_banned_at(neighbour, now + Duration::from_secs(60)));
        assert_eq!(t.admit_at(neighbour, "d", now).unwrap_err(), Banned);
        let later = now + Duration::from_secs(1801);
        assert!(!t.is_banned_at(ip, later));
        assert!(t.admit_at(ip, "d", later).is_ok(), "the ban is over");
    }

    #[test]
    fn failures_outside_the_window_do_not_count() {
        let t = throttle(3);
        let ip: IpAddr = "192.0.2.5".parse().unwrap();
        let now = Instant::now();
        fail(&t, ip, "a", now);
        fail(&t, ip, "a", now);
        assert_eq!(
            fail(&t, ip, "a", now + Duration::from_secs(601)),
            Finished::Failed
        );
    }

    #[test]
    fn parallel_attempts_count_towards_the_threshold_once_there_are_failures() {
        let t = throttle(3);
        let ip: IpAddr = "192.0.2.6".parse().unwrap();
        let now = Instant::now();
        // No failures yet: any number at once (a webmail's sessions).
        let many: Vec<Ticket> = (0..10).map(|_| t.admit_at(ip, "x", now).unwrap()).collect();
        drop(many);
        fail(&t, ip, "x", now);
        let tickets: Vec<Ticket> = (0..2).map(|_| t.admit_at(ip, "x", now).unwrap()).collect();
        assert_eq!(
            t.admit_at(ip, "x", now).unwrap_err(),
            Banned,
            "one failure and two being checked"
        );
        drop(tickets);
        assert!(
            t.admit_at(ip, "x", now).is_ok(),
            "abandoned attempts give their place back"
        );
    }

    #[test]
    fn exceptions_are_never_penalised_or_banned() {
        let t = throttle(2);
        let ip: IpAddr = "10.9.9.9".parse().unwrap();
        let now = Instant::now();
        for _ in 0..5 {
            let ticket = t.admit_at(ip, "x", now).unwrap();
            assert_eq!(ticket.wait, Duration::ZERO);
            assert_eq!(ticket.finish("x", false), Finished::Failed);
        }
        assert!(!t.is_banned_at(ip, now));
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_addresses() {
        let t = throttle(20);
        let now = Instant::now();
        for i in 0..(MAX_ENTRIES as u32 + 5000) {
            let ip = IpAddr::from(i.to_be_bytes());
            fail(&t, ip, "u", now + Duration::from_micros(i as u64));
        }
        assert!(t.tracked() <= MAX_ENTRIES);
    }
}
