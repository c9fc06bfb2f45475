//! A map of bounded size shared by the runtime's threads: sharded (a lookup locks one
//! sixteenth of it), and when a shard is full, one entry of it makes room for the new one.
//! Which one is up to the map's random hasher, so a client cannot pick what is evicted.
//! For caches only: whatever is evicted must be cheap to find again.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::{Mutex, MutexGuard};

const SHARDS: usize = 16;

pub struct BoundedMap<K, V> {
    hasher: RandomState,
    max_per_shard: usize,
    shards: Box<[Mutex<HashMap<K, V, RandomState>>]>,
}

impl<K: Hash + Eq + Clone, V> BoundedMap<K, V> {
    /// A map of at most `max` entries (rounded up to a multiple of the shard count).
    pub fn new(max: usize) -> BoundedMap<K, V> {
        let hasher = RandomState::new();
        BoundedMap {
            max_per_shard: max.div_ceil(SHARDS).max(1),
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::with_hasher(hasher.clone())))
                .collect(),
            hasher,
        }
    }

    fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> MutexGuard<'_, HashMap<K, V, RandomState>> {
        let i = (self.hasher.hash_one(key) as usize) % SHARDS;
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `f` of the entry for `key` (None if absent), under its shard's lock.
    pub fn with<Q, R>(&self, key: &Q, f: impl FnOnce(Option<&V>) -> R) -> R
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        f(self.shard(key).get(key))
    }

    pub fn contains<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.with(key, |v| v.is_some())
    }

    /// Inserts or replaces; a full shard first drops one of its entries.
    pub fn insert(&self, key: K, value: V) {
        let mut shard = self.shard(&key);
        if shard.len() >= self.max_per_shard && !shard.contains_key(&key) {
            // The first in the table's order: where the random hasher put it.
            if let Some(victim) = shard.keys().next().cloned() {
                shard.remove(&victim);
            }
        }
        shard.insert(key, value);
    }

    pub fn remove<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shard(key).remove(key);
    }

    /// Entries now (`timd_state_entries`).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most entries it holds.
    pub fn capacity(&self) -> usize {
        self.max_per_shard * SHARDS
    }
}
