//! A small DNS answer cache for mail-auth's lookups: each answer is kept
//! until its TTL runs out (mail-auth gives the expiry), the whole cache is
//! bounded, and the oldest-expiring entries go first when it is full.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;
use std::time::Instant;

use mail_auth::{RecordSet, ResolverCache, Txt, MX};

/// Entries per record type.
const CAPACITY: usize = 4096;

pub struct TtlCache<K, V> {
    map: Mutex<HashMap<K, (V, Instant)>>,
}

impl<K: Hash + Eq, V: Clone> Default for TtlCache<K, V> {
    fn default() -> Self {
        TtlCache {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> ResolverCache<K, V> for TtlCache<K, V> {
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(name) {
            Some((v, until)) if *until > Instant::now() => Some(v.clone()),
            Some(_) => {
                map.remove(name);
                None
            }
            None => None,
        }
    }

    fn remove<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(name).map(|(v, _)| v)
    }

    fn insert(&self, key: K, value: V, valid_until: Instant) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= CAPACITY {
            let now = Instant::now();
            map.retain(|_, (_, until)| *until > now);
            if map.len() >= CAPACITY {
                // Still full of live answers: drop the half that expire first.
                let mut expiries: Vec<Instant> = map.values().map(|(_, u)| *u).collect();
                expiries.sort_unstable();
                let cut = expiries[expiries.len() / 2];
                map.retain(|_, (_, until)| *until > cut);
            }
        }
        map.insert(key, (value, valid_until));
    }
}

/// One cache per record type mail-auth looks up.
#[derive(Default)]
pub struct Caches {
    pub txt: TtlCache<Box<str>, Txt>,
    pub mx: TtlCache<Box<str>, RecordSet<MX>>,
    pub ipv4: TtlCache<Box<str>, RecordSet<Ipv4Addr>>,
    pub ipv6: TtlCache<Box<str>, RecordSet<Ipv6Addr>>,
    pub ptr: TtlCache<IpAddr, RecordSet<Box<str>>>,
}

/// Whether a cached answer is empty: a lookup that found nothing.
pub trait Answer {
    fn is_void(&self) -> bool;
}

impl<T> Answer for RecordSet<T> {
    fn is_void(&self) -> bool {
        self.rrset.is_empty()
    }
}

/// A per-evaluation view of a shared cache that counts void lookups
/// (RFC 7208 §4.6.4: a lookup that gets NXDOMAIN or no answer): an empty
/// answer, or a lookup that was never answered (mail-auth caches only
/// answers; NXDOMAIN comes back to it as an error). Every cache miss is
/// followed by a lookup, and every answered lookup by an insert.
pub struct VoidCounter<'c, K, V> {
    inner: &'c TtlCache<K, V>,
    /// (empty answers, misses, inserts)
    counts: Mutex<(u32, u32, u32)>,
}

impl<'c, K: Hash + Eq + Clone, V: Clone + Answer> VoidCounter<'c, K, V> {
    pub fn new(inner: &'c TtlCache<K, V>) -> Self {
        VoidCounter {
            inner,
            counts: Mutex::new((0, 0, 0)),
        }
    }

    /// Void lookups so far.
    pub fn voids(&self) -> u32 {
        let (empty, misses, inserts) = *self.counts.lock().unwrap_or_else(|e| e.into_inner());
        empty + misses.saturating_sub(inserts)
    }
}

impl<K: Hash + Eq + Clone, V: Clone + Answer> ResolverCache<K, V> for VoidCounter<'_, K, V> {
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let found = self.inner.get(name);
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        match &found {
            Some(v) if v.is_void() => c.0 += 1,
            Some(_) => {}
            None => c.1 += 1,
        }
        found
    }

    fn remove<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.inner.remove(name)
    }

    fn insert(&self, key: K, value: V, valid_until: Instant) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.2 += 1;
        if value.is_void() {
            c.0 += 1;
        }
        drop(c);
        self.inner.insert(key, value, valid_until);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn answers_live_until_their_ttl_and_the_cache_stays_bounded() {
        let c: TtlCache<Box<str>, u32> = TtlCache::default();
        let now = Instant::now();
        c.insert("a".into(), 1, now + Duration::from_secs(60));
        c.insert("old".into(), 2, now - Duration::from_secs(1));
        assert_eq!(c.get("a"), Some(1));
        assert_eq!(c.get("old"), None, "expired");
        for i in 0..(CAPACITY * 2) {
            c.insert(
                format!("k{i}").into(),
                0,
                now + Duration::from_secs(i as u64 + 1),
            );
        }
        assert!(c.map.lock().unwrap().len() <= CAPACITY);
        assert_eq!(c.remove("a"), None, "evicted as one of the first to expire");
    }

    #[test]
    fn void_lookups_are_misses_never_answered_and_empty_answers() {
        let shared: TtlCache<Box<str>, RecordSet<Ipv4Addr>> = TtlCache::default();
        let later = Instant::now() + Duration::from_secs(60);
        let set = |ips: &[Ipv4Addr]| RecordSet {
            rrset: ips.to_vec().into(),
            dnssec_status: Default::default(),
        };
        shared.insert("cached-empty.".into(), set(&[]), later);
        let v = VoidCounter::new(&shared);
        // Answered: a miss, then the answer is cached.
        assert!(v.get("a.").is_none());
        v.insert("a.".into(), set(&[Ipv4Addr::LOCALHOST]), later);
        assert_eq!(v.voids(), 0);
        // NXDOMAIN: a miss never answered.
        assert!(v.get("nx.").is_none());
        assert_eq!(v.voids(), 1);
        // NODATA, fresh or from the cache.
        assert!(v.get("empty.").is_none());
        v.insert("empty.".into(), set(&[]), later);
        assert!(v.get("cached-empty.").is_some());
        assert_eq!(v.voids(), 3);
        // The shared cache got the answers.
        assert!(shared.get("a.").is_some());
    }
}
