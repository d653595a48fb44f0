//! TLS handshakes in progress, bounded per client and overall: a client
//! that opens connections and never finishes (or never starts) its
//! handshake holds buffers and a slot for up to the handshake deadline.
//! The per-client bound keeps a few flooding addresses from filling the
//! global one, so real clients still get their handshakes through.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use super::clients::client_key;

/// Handshakes in progress at once, over all listeners.
pub const MAX_TOTAL: usize = 1024;
/// Handshakes in progress at once from one client (IPv6: its /64).
pub const MAX_PER_CLIENT: usize = 10;

#[derive(Debug)]
pub struct Handshakes {
    exempt: Vec<ipnet::IpNet>,
    state: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// A handshake's place; given back on drop.
#[derive(Debug)]
pub struct HandshakeSlot {
    limiter: Arc<Handshakes>,
    key: IpAddr,
}

impl Handshakes {
    /// `exempt`: clients only the total applies to
    /// (`smtpd_client_event_limit_exceptions`).
    pub fn new(exempt: Vec<ipnet::IpNet>) -> Arc<Self> {
        Arc::new(Handshakes {
            exempt,
            state: Mutex::default(),
        })
    }

    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<HandshakeSlot> {
        let key = client_key(ip);
        let exempt = self.exempt.iter().any(|n| n.contains(&ip));
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mine = st.1.get(&key).copied().unwrap_or(0);
        if st.0 >= MAX_TOTAL || (!exempt && mine >= MAX_PER_CLIENT) {
            return None;
        }
        st.0 += 1;
        st.1.insert(key, mine + 1);
        Some(HandshakeSlot {
            limiter: self.clone(),
            key,
        })
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        let mut st = self.limiter.state.lock().unwrap_or_else(|e| e.into_inner());
        st.0 -= 1;
        if let Some(n) = st.1.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                st.1.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_client_then_total() {
        let h = Handshakes::new(vec!["10.0.0.0/8".parse().unwrap()]);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let held: Vec<_> = (0..MAX_PER_CLIENT)
            .map(|_| h.try_acquire(a).unwrap())
            .collect();
        assert!(h.try_acquire(a).is_none(), "this client is at its bound");
        assert!(
            h.try_acquire("192.0.2.2".parse().unwrap()).is_some(),
            "others are not"
        );
        let exempt: IpAddr = "10.0.0.1".parse().unwrap();
        let many: Vec<_> = (0..MAX_PER_CLIENT * 3)
            .map(|_| h.try_acquire(exempt).unwrap())
            .collect();
        drop(held);
        assert!(h.try_acquire(a).is_some(), "places come back");
        drop(many);
    }
}
