//! Connection limits: a total per listener and a count per client IP
//! (Postfix's smtpd_client_connection_count_limit).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

#[derive(Debug)]
pub struct ConnLimiter {
    max_total: usize,
    max_per_ip: usize,
    /// Clients the per-IP limit does not apply to (Postfix's
    /// smtpd_client_event_limit_exceptions, default $mynetworks).
    exempt: Vec<ipnet::IpNet>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_connections` on this listener.
    TooManyConnections,
    /// `smtpd_client_connection_count_limit`.
    TooManyFromIp,
    /// Banned for failed logins (`auth_failure_ban_threshold`).
    Banned,
    /// `smtpd_client_connection_rate_limit`.
    ConnectionRate,
    /// `smtpd_client_new_tls_session_rate_limit` (port 465).
    NewTlsSessionRate,
}

impl Refusal {
    /// The `limit` label of the `pigeonpost_limited_total` metric.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::TooManyConnections => "connections",
            Refusal::TooManyFromIp => "client_connections",
            Refusal::Banned => "banned",
            Refusal::ConnectionRate => "connection_rate",
            Refusal::NewTlsSessionRate => "new_tls_session_rate",
        }
    }

    /// What the client is told (Postfix's wording where Postfix has one).
    pub fn text(self, client: std::net::IpAddr) -> String {
        match self {
            Refusal::TooManyConnections => "too many connections, try again later".into(),
            Refusal::TooManyFromIp | Refusal::ConnectionRate => {
                format!("too many connections from {client}")
            }
            Refusal::NewTlsSessionRate => format!("too many new TLS sessions from {client}"),
            Refusal::Banned => {
                format!("too many failed logins from {client}; try again later")
            }
        }
    }
}

/// Held for the life of a connection; releases its slot on drop.
#[derive(Debug)]
pub struct Slot {
    limiter: Arc<ConnLimiter>,
    ip: IpAddr,
}

impl ConnLimiter {
    /// `max_per_ip == 0` means no per-IP limit (as in Postfix).
    pub fn new(max_total: usize, max_per_ip: usize, exempt: Vec<ipnet::IpNet>) -> Arc<Self> {
        Arc::new(ConnLimiter {
            max_total,
            max_per_ip,
            exempt,
            state: Mutex::default(),
        })
    }

    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.total >= self.max_total {
            return Err(Refusal::TooManyConnections);
        }
        let n = st.per_ip.get(&ip).copied().unwrap_or(0);
        if self.max_per_ip > 0
            && n >= self.max_per_ip
            && !self.exempt.iter().any(|net| net.contains(&ip))
        {
            return Err(Refusal::TooManyFromIp);
        }
        st.total += 1;
        st.per_ip.insert(ip, n + 1);
        Ok(Slot {
            limiter: self.clone(),
            ip,
        })
    }

    pub fn active(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut st = self.limiter.state.lock().unwrap_or_else(|e| e.into_inner());
        st.total -= 1;
        if let Some(n) = st.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                st.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_and_total() {
        let l = ConnLimiter::new(6, 2, vec!["10.0.0.0/8".parse().unwrap()]);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let s1 = l.acquire(a).unwrap();
        let _s2 = l.acquire(a).unwrap();
        assert_eq!(l.acquire(a).unwrap_err(), Refusal::TooManyFromIp);
        let _s3 = l.acquire(b).unwrap();
        let exempt: IpAddr = "10.1.2.3".parse().unwrap();
        // Exempt from the per-IP limit of 2 (smtpd_client_event_limit_exceptions).
        let _exempt: Vec<Slot> = (0..3).map(|_| l.acquire(exempt).unwrap()).collect();
        assert_eq!(
            l.acquire(exempt).unwrap_err(),
            Refusal::TooManyConnections,
            "the total still applies"
        );
        drop(s1);
        assert_eq!(l.active(), 5);
        assert!(l.acquire(a).is_ok());
    }
}
