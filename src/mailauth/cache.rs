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

/// Void lookups of one SPF evaluation (RFC 7208 §4.6.4: a lookup that
/// gets NXDOMAIN or no answer), counted through the caches mail-auth uses:
/// an empty answer, or a name that was looked up and never answered
/// (mail-auth caches only answers; NXDOMAIN comes back to it as an error).
/// Names are kept as hashes and shared by the A, AAAA, MX and PTR views,
/// so a name tried as A and then AAAA is one lookup, not two.
#[derive(Default)]
pub struct VoidLookups {
    empty: Mutex<u32>,
    /// Hashes of names missed in a cache and not answered since.
    unanswered: Mutex<std::collections::HashSet<u64>>,
}

fn name_hash<Q: Hash + ?Sized>(name: &Q) -> u64 {
    use std::hash::Hasher;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    h.finish()
}

impl VoidLookups {
    pub fn count(&self) -> u32 {
        *self.empty.lock().unwrap_or_else(|e| e.into_inner())
            + self
                .unanswered
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .len() as u32
    }

    /// A view of `inner` that counts into this tally.
    pub fn view<'c, K, V>(&'c self, inner: &'c TtlCache<K, V>) -> VoidCounter<'c, K, V> {
        VoidCounter { inner, tally: self }
    }
}

pub struct VoidCounter<'c, K, V> {
    inner: &'c TtlCache<K, V>,
    tally: &'c VoidLookups,
}

impl<K: Hash + Eq + Clone, V: Clone + Answer> ResolverCache<K, V> for VoidCounter<'_, K, V> {
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let found = self.inner.get(name);
        match &found {
            Some(v) if v.is_void() => {
                *self.tally.empty.lock().unwrap_or_else(|e| e.into_inner()) += 1;
            }
            Some(_) => {}
            None => {
                self.tally
                    .unanswered
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(name_hash(name));
            }
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
        // K: Borrow<Q> hashes like Q (Borrow's contract), so this is the
        // same hash the miss recorded.
        self.tally
            .unanswered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&name_hash(&key));
        if value.is_void() {
            *self.tally.empty.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        }
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
        let shared6: TtlCache<Box<str>, RecordSet<std::net::Ipv6Addr>> = TtlCache::default();
        let later = Instant::now() + Duration::from_secs(60);
        let set = |ips: &[Ipv4Addr]| RecordSet {
            rrset: ips.to_vec().into(),
            dnssec_status: Default::default(),
        };
        shared.insert("cached-empty.".into(), set(&[]), later);
        let tally = VoidLookups::default();
        let (v, v6) = (tally.view(&shared), tally.view(&shared6));
        // Answered: a miss, then the answer is cached.
        assert!(v.get("a.").is_none());
        v.insert("a.".into(), set(&[Ipv4Addr::LOCALHOST]), later);
        assert_eq!(tally.count(), 0);
        // NXDOMAIN: a miss never answered, tried as A and as AAAA: one.
        assert!(v.get("nx.").is_none());
        assert!(v6.get("nx.").is_none());
        assert_eq!(tally.count(), 1);
        // NODATA, fresh or from the cache.
        assert!(v.get("empty.").is_none());
        v.insert("empty.".into(), set(&[]), later);
        assert!(v.get("cached-empty.").is_some());
        assert_eq!(tally.count(), 3);
        assert!(
            shared.get("a.").is_some(),
            "the shared cache got the answers"
        );
    }
}
