//! Per-client state, keyed the way abuse is counted and bounded in size:
//! the login throttle, the ban list and the anvil rate counters all keep
//! one small record per client, and a flood of distinct addresses must not
//! grow them without limit.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::time::Instant;

/// The address a client's events are counted under: an IPv4 address, or the
/// /64 an IPv6 address is in (one subscriber's allocation, so a guesser
/// cannot step around a ban by changing the low bits). IPv4-mapped IPv6
/// addresses count as the IPv4 address.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// A map that holds at most `cap` entries: when full, the least recently
/// touched half is dropped (amortised O(1) per insert).
#[derive(Debug)]
pub struct Bounded<K, V> {
    map: HashMap<K, (V, Instant)>,
    cap: usize,
}

impl<K: Hash + Eq + Clone, V> Bounded<K, V> {
    pub fn new(cap: usize) -> Self {
        Bounded {
            map: HashMap::new(),
            cap: cap.max(2),
        }
    }

    /// The entry for `key`, created with `make` if absent; marks it used at `now`.
    pub fn entry(&mut self, key: K, now: Instant, make: impl FnOnce() -> V) -> &mut V {
        if !self.map.contains_key(&key) && self.map.len() >= self.cap {
            self.evict_oldest_half();
        }
        let slot = self.map.entry(key).or_insert_with(|| (make(), now));
        slot.1 = now;
        &mut slot.0
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key).map(|(v, _)| v)
    }

    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.map.get_mut(key).map(|(v, _)| v)
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        self.map.remove(key).map(|(v, _)| v)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn evict_oldest_half(&mut self) {
        let mut times: Vec<Instant> = self.map.values().map(|(_, t)| *t).collect();
        let mid = times.len() / 2;
        let (_, median, _) = times.select_nth_unstable(mid);
        let median = *median;
        self.map.retain(|_, (_, t)| *t > median);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ipv6_counts_by_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(client_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_full_map_drops_the_least_recently_used_half() {
        let mut m = Bounded::new(4);
        let t0 = Instant::now();
        for i in 0..4u32 {
            *m.entry(i, t0 + Duration::from_secs(i as u64), || 0) += 1;
        }
        // Touch 0 again: it is now the newest.
        m.entry(0, t0 + Duration::from_secs(10), || 0);
        m.entry(99, t0 + Duration::from_secs(11), || 0);
        assert!(m.len() <= 4);
        assert!(m.get(&0).is_some(), "recently used entries stay");
        assert!(m.get(&99).is_some());
        assert!(m.get(&1).is_none(), "the oldest went");
    }
}
