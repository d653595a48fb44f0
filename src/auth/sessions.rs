//! Dovecot's `mail_max_userip_connections`: how many logged-in sessions one
//! user may have from one client address, per protocol (IMAP and POP3 are
//! counted apart, as Dovecot counts per service). A mail client opens a few
//! connections; hundreds from one address are a runaway client or a stolen
//! password, and each holds an open mailbox.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

type Key = (&'static str, String, IpAddr);

#[derive(Debug)]
pub struct UserIpSessions {
    /// 0: no limit.
    limit: usize,
    open: Mutex<HashMap<Key, usize>>,
}

/// A logged-in session's place; given back on drop.
#[derive(Debug)]
pub struct SessionSlot {
    registry: Arc<UserIpSessions>,
    key: Key,
}

impl UserIpSessions {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(UserIpSessions {
            limit,
            open: Mutex::default(),
        })
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// A place for one more `protocol` session of `user` from `ip`, or
    /// `None` when the limit is reached.
    pub fn acquire(
        self: &Arc<Self>,
        protocol: &'static str,
        user: &str,
        ip: IpAddr,
    ) -> Option<SessionSlot> {
        let key = (protocol, user.to_string(), ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(key.clone()).or_insert(0);
        if self.limit > 0 && *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(SessionSlot {
            registry: self.clone(),
            key,
        })
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut open = self.registry.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// Dovecot's text for a refused login, so clients and log watchers that
/// know it recognise it.
pub fn limit_text(limit: usize) -> String {
    format!(
        "Maximum number of connections from user+IP exceeded (mail_max_userip_connections={limit})"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_per_protocol_user_and_address() {
        let r = UserIpSessions::new(2);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let a = r.acquire("imap", "john", ip).unwrap();
        let _b = r.acquire("imap", "john", ip).unwrap();
        assert!(r.acquire("imap", "john", ip).is_none());
        assert!(r.acquire("pop3", "john", ip).is_some());
        assert!(r.acquire("imap", "bob", ip).is_some());
        assert!(r
            .acquire("imap", "john", "192.0.2.2".parse().unwrap())
            .is_some());
        drop(a);
        assert!(r.acquire("imap", "john", ip).is_some());
        assert!(UserIpSessions::new(0).acquire("imap", "x", ip).is_some());
    }
}
