//! Postfix's anvil(8) rate limits: how many connections, messages,
//! recipients, new TLS sessions and AUTH commands one client may start per
//! `anvil_rate_time_unit`, counted per SMTP service (listener) as Postfix
//! counts per master.cf service. Clients in
//! `smtpd_client_event_limit_exceptions` are not limited.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::clients::{client_key, Bounded};

/// The events anvil counts (postconf(5) `smtpd_client_*_rate_limit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    Connection,
    Message,
    Recipient,
    NewTlsSession,
    Auth,
}

/// The limits, 0 meaning "no limit" as in Postfix.
#[derive(Debug, Clone, Default)]
pub struct RateLimits {
    pub unit: Duration,
    pub connection: u32,
    pub message: u32,
    pub recipient: u32,
    pub new_tls_session: u32,
    pub auth: u32,
    pub exceptions: Vec<ipnet::IpNet>,
}

impl RateLimits {
    fn limit(&self, event: Event) -> u32 {
        match event {
            Event::Connection => self.connection,
            Event::Message => self.message,
            Event::Recipient => self.recipient,
            Event::NewTlsSession => self.new_tls_session,
            Event::Auth => self.auth,
        }
    }
}

/// One client's count in the current time unit.
#[derive(Debug)]
struct Window {
    start: Instant,
    count: u32,
}

/// Enough for every client of a busy server; a flood of distinct addresses
/// evicts the least recently seen.
const MAX_CLIENTS: usize = 100_000;

#[derive(Debug)]
pub struct Anvil {
    limits: RateLimits,
    counts: Mutex<Bounded<(Event, &'static str, IpAddr), Window>>,
}

impl Anvil {
    pub fn new(limits: RateLimits) -> Self {
        Anvil {
            limits,
            counts: Mutex::new(Bounded::new(MAX_CLIENTS)),
        }
    }

    /// Counts one `event` from `ip` on `service`: true if it is within the
    /// limit, false if the client is over it for the rest of the time unit.
    pub fn allow(&self, event: Event, service: &'static str, ip: IpAddr) -> bool {
        self.allow_at(event, service, ip, Instant::now())
    }

    fn allow_at(&self, event: Event, service: &'static str, ip: IpAddr, now: Instant) -> bool {
        let limit = self.limits.limit(event);
        if limit == 0 || self.limits.exceptions.iter().any(|n| n.contains(&ip)) {
            return true;
        }
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let w = counts.entry((event, service, client_key(ip)), now, || Window {
            start: now,
            count: 0,
        });
        if now.duration_since(w.start) >= self.limits.unit {
            *w = Window {
                start: now,
                count: 0,
            };
        }
        w.count = w.count.saturating_add(1);
        w.count <= limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anvil(message: u32) -> Anvil {
        Anvil::new(RateLimits {
            unit: Duration::from_secs(60),
            message,
            exceptions: vec!["10.0.0.0/8".parse().unwrap()],
            ..RateLimits::default()
        })
    }

    #[test]
    fn over_the_limit_until_the_time_unit_ends() {
        let a = anvil(3);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t = Instant::now();
        for _ in 0..3 {
            assert!(a.allow_at(Event::Message, "smtp", ip, t));
        }
        assert!(!a.allow_at(Event::Message, "smtp", ip, t + Duration::from_secs(30)));
        // Another client, another service and another event are counted apart.
        assert!(a.allow_at(Event::Message, "smtp", "192.0.2.2".parse().unwrap(), t));
        assert!(a.allow_at(Event::Message, "submission", ip, t));
        assert!(
            a.allow_at(Event::Recipient, "smtp", ip, t),
            "no recipient limit"
        );
        assert!(a.allow_at(Event::Message, "smtp", ip, t + Duration::from_secs(61)));
    }

    #[test]
    fn exceptions_and_zero_are_unlimited() {
        let a = anvil(1);
        let inside: IpAddr = "10.1.2.3".parse().unwrap();
        let t = Instant::now();
        for _ in 0..10 {
            assert!(a.allow_at(Event::Message, "smtp", inside, t));
        }
        let b = anvil(0);
        for _ in 0..10 {
            assert!(b.allow_at(Event::Message, "smtp", "192.0.2.1".parse().unwrap(), t));
        }
    }
}
