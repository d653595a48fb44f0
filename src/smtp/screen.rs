//! postscreen-lite (Postfix POSTSCREEN_README, its "before the 220" tests):
//! on port 25, before a session costs anything, a new client is scored on
//! DNS lists (`postscreen_dnsbl_sites` with weights, against
//! `postscreen_dnsbl_threshold`) while the greeting is held back: we send
//! the first line of a multi-line 220 and wait `postscreen_greet_wait`; a
//! client that talks before the last line is a bot (RFC 5321 §4.3.1 says
//! wait for the greeting). Clients that pass are remembered
//! (`postscreen_dnsbl_ttl`, `postscreen_greet_ttl`) and later skip both
//! tests. Off unless `postscreen = yes`; the actions default to `ignore`
//! (log only), as in Postfix.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::proto::Reply;
use crate::config::restrictions::Site;

/// Clients that passed, until when (per test).
#[derive(Default)]
pub struct Passed {
    greet: Mutex<HashMap<IpAddr, Instant>>,
    dnsbl: Mutex<HashMap<IpAddr, Instant>>,
}

/// At most this many remembered clients per test; the oldest half goes.
const MAX_REMEMBERED: usize = 100_000;

fn remember(map: &Mutex<HashMap<IpAddr, Instant>>, ip: IpAddr, ttl: Duration) {
    if let Ok(mut m) = map.lock() {
        if m.len() >= MAX_REMEMBERED {
            let now = Instant::now();
            m.retain(|_, until| *until > now);
            if m.len() >= MAX_REMEMBERED {
                let mut v: Vec<(IpAddr, Instant)> = m.iter().map(|(k, v)| (*k, *v)).collect();
                v.sort_by_key(|(_, until)| *until);
                for (k, _) in v.iter().take(v.len() / 2) {
                    m.remove(k);
                }
            }
        }
        m.insert(ip, Instant::now() + ttl);
    }
}

fn fresh(map: &Mutex<HashMap<IpAddr, Instant>>, ip: IpAddr) -> bool {
    map.lock()
        .ok()
        .and_then(|m| m.get(&ip).copied())
        .is_some_and(|until| until > Instant::now())
}

impl Passed {
    pub fn greet_ok(&self, ip: IpAddr) -> bool {
        fresh(&self.greet, ip)
    }
    pub fn dnsbl_ok(&self, ip: IpAddr) -> bool {
        fresh(&self.dnsbl, ip)
    }
    pub fn pass_greet(&self, ip: IpAddr, ttl: Duration) {
        remember(&self.greet, ip, ttl);
    }
    pub fn pass_dnsbl(&self, ip: IpAddr, ttl: Duration) {
        remember(&self.dnsbl, ip, ttl);
    }
}

/// The sum of the weights of the sites listing `ip` (Postfix's DNSBL rank).
pub async fn rank(
    dns: &super::restrict::dns::Lookups,
    sites: &[Site],
    ip: IpAddr,
) -> (i32, Vec<String>) {
    let reversed = super::restrict::dns::reversed(ip);
    let lookups = sites.iter().map(|s| {
        let query = format!("{reversed}.{}", s.list.domain);
        async move {
            let listed = dns
                .list_answers(&query)
                .await
                .map(|answers| answers.iter().any(|a| s.list.accepts(*a)))
                .unwrap_or(false);
            (s, listed)
        }
    });
    let mut score = 0;
    let mut by = Vec::new();
    // Concurrently: the answers arrive while we wait for a pregreet anyway.
    for (site, listed) in futures_util::future::join_all(lookups).await {
        if listed {
            score += site.weight;
            by.push(site.list.domain.clone());
        }
    }
    (score, by)
}

/// Postfix's replies.
pub fn dnsbl_reply(ip: IpAddr, by: &[String], code: u16) -> Reply {
    Reply::new(
        code,
        "5.7.1",
        format!(
            "Service unavailable; client [{ip}] blocked using {}",
            by.first().map(String::as_str).unwrap_or("a DNS list")
        ),
    )
}

pub fn protocol_error(code: u16) -> Reply {
    Reply::new(code, "5.5.1", "Protocol error")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passed_clients_are_remembered_until_their_ttl() {
        let p = Passed::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(!p.greet_ok(ip));
        p.pass_greet(ip, Duration::from_secs(60));
        assert!(p.greet_ok(ip));
        assert!(!p.dnsbl_ok(ip));
        p.pass_dnsbl(ip, Duration::ZERO);
        assert!(!p.dnsbl_ok(ip));
    }
}
