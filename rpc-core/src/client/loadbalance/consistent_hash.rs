//! Consistent hashing: calls with the same key go to the same provider, and a change of the
//! provider list moves only the keys of the providers that came or went.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::{Arc, RwLock};

use consistent_hash_ring::{Ring, RingBuilder};

use super::random::draw;
use super::{LoadBalance, Tried, same_addresses};
use crate::Request;
use crate::client::{Provider, Providers};

/// Dubbo's number of virtual nodes per provider.
pub const DEFAULT_VIRTUAL_NODES: usize = 160;

/// Sends calls with the same [`Request::hash_key`] (computed by the stub from the method's
/// `hash_arg`) to the same provider, on a hash ring of the provider addresses with
/// [`DEFAULT_VIRTUAL_NODES`] points each (Dubbo's `consistenthash`).
///
/// - When a provider goes, only its keys move (to the next providers on the ring); when one
///   comes, it takes about `1/n` of the keys. Weights are not used: a weight change would
///   otherwise move keys.
/// - A retry walks the ring on from the key's point to the next provider not yet tried, so
///   a key's fallback provider is consistent too.
/// - A call without a hash key (a method without `hash_arg` on an untyped client) falls back
///   to weighted random.
///
/// The ring is built by the `consistent_hash_ring` crate and kept with the list of
/// addresses it was built from; it is only updated (incrementally: gone addresses out, new
/// ones in) when the provider list changes.
#[derive(Debug)]
pub struct ConsistentHash {
    virtual_nodes: usize,
    placement: RwLock<Option<Arc<Placement>>>,
}

impl Default for ConsistentHash {
    fn default() -> ConsistentHash {
        ConsistentHash::with_virtual_nodes(DEFAULT_VIRTUAL_NODES)
    }
}

impl ConsistentHash {
    /// A ring with `virtual_nodes` points per provider (at least 1): more spread keys more
    /// evenly, at the cost of memory (about 60 bytes per point) and of rebuild time.
    pub fn with_virtual_nodes(virtual_nodes: usize) -> ConsistentHash {
        ConsistentHash {
            virtual_nodes: virtual_nodes.max(1),
            placement: RwLock::default(),
        }
    }

    /// Runs `f` on the placement of `providers`: the cached one when it was built from the
    /// same list (under the read lock: no reference count touched), a new one made from
    /// it otherwise.
    fn with_placement<R>(&self, providers: &[Provider], f: impl FnOnce(&Placement) -> R) -> R {
        let cached = {
            let guard = self
                .placement
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            match &*guard {
                Some(placement) if same_addresses(&placement.addresses, providers) => {
                    return f(placement);
                }
                cached => cached.clone(),
            }
        };
        // Built outside the lock, so calls on the current list are not held up; two calls
        // that race here build the same ring.
        let placement = Arc::new(Placement::new(
            cached.as_deref(),
            providers,
            self.virtual_nodes,
        ));
        *self
            .placement
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(placement.clone());
        f(&placement)
    }
}

impl LoadBalance for ConsistentHash {
    fn select(&self, providers: &Providers, request: &Request, tried: &Tried) -> Option<usize> {
        let Some(key) = request.hash_key else {
            return draw(providers, tried);
        };
        if providers.is_empty() {
            return None;
        }
        self.with_placement(providers, |placement| {
            placement.pick(key, providers.len(), tried)
        })
    }

    fn needs_hash_key(&self) -> bool {
        true
    }
}

/// One hash ring and where its points land in one provider list.
struct Placement {
    /// The provider list this placement indexes, in order.
    addresses: Vec<Arc<str>>,
    /// The crate's ring of those addresses, kept to make the next one from.
    ring: Ring<Arc<str>>,
    /// The ring flattened into segments: hashes from the previous end (exclusive) up to
    /// `ends[i]` belong to provider `owners[i]`; sorted, the last end is `u64::MAX`. The
    /// crate's ring answers "which node for this key" but not "and the next node after
    /// it", which a retry needs; these answer both, by a binary search over 8 bytes per
    /// segment (against 32 per ring point, with adjacent points of one node merged).
    ends: Vec<u64>,
    /// The provider index of each segment of `ends`.
    owners: Vec<usize>,
    /// A radix index into `ends`, so a lookup touches two or three cache lines instead of
    /// a dozen for a binary search over the whole ring: `starts[b]` is the first segment
    /// whose end reaches `b << shift`; the last entry is the last segment.
    starts: Vec<usize>,
    /// How far a point is shifted to find its bucket in `starts`.
    shift: u32,
    /// The ring's own hash of a key, so that a key lands where the crate would put it.
    position: fn(u64) -> u64,
}

impl std::fmt::Debug for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Placement")
            .field("providers", &self.addresses.len())
            .field("points", &self.ring.vnodes())
            .field("segments", &self.ends.len())
            .finish_non_exhaustive()
    }
}

impl Placement {
    /// The placement of `providers`, updating `previous`'s ring rather than building one
    /// from nothing: the crate inserts points one by one into a sorted vector, so a full
    /// build is quadratic in the number of points, while an update costs in proportion to
    /// what changed.
    fn new(previous: Option<&Placement>, providers: &[Provider], virtual_nodes: usize) -> Self {
        let mut ring = match previous {
            Some(previous) => previous.ring.clone(),
            None => RingBuilder::default().vnodes(virtual_nodes).build(),
        };
        let current: HashSet<&str> = providers.iter().map(|p| &*p.address).collect();
        if let Some(previous) = previous {
            let gone: HashSet<&str> = previous
                .addresses
                .iter()
                .map(|address| &**address)
                .filter(|address| !current.contains(address))
                .collect();
            for address in gone {
                ring.remove(address);
            }
        }
        for provider in providers {
            if ring.weight(&*provider.address).is_none() {
                ring.insert(provider.address.clone());
            }
        }
        // A duplicated address is one ring node; its last listing gets its keys.
        let index_of: HashMap<&str, usize> = providers
            .iter()
            .enumerate()
            .map(|(index, provider)| (&*provider.address, index))
            .collect();
        let (ends, owners): (Vec<u64>, Vec<usize>) = ring
            .resident_ranges()
            .filter_map(|range| Some((*range.keys().end(), *index_of.get(&**range.node())?)))
            .unzip();
        let (starts, shift) = radix_index(&ends);
        Placement {
            addresses: providers.iter().map(|p| p.address.clone()).collect(),
            position: position_of(&ring),
            ring,
            ends,
            owners,
            starts,
            shift,
        }
    }

    /// The provider for `key`: the owner of its point on the ring, or on a retry the next
    /// provider on from there that was not tried. `count` is the length of the list.
    fn pick(&self, key: u64, count: usize, tried: &Tried) -> Option<usize> {
        let point = (self.position)(key);
        let start = self.segment_of(point);
        // From the key's segment to the end of the ring, then around from its start.
        let (before, from) = self.owners.split_at(start.min(self.owners.len()));
        from.iter()
            .chain(before)
            .copied()
            .find(|index| *index < count && !tried.contains(*index))
    }
}

impl Placement {
    /// The index of the segment holding `point`: the first whose end reaches it.
    fn segment_of(&self, point: u64) -> usize {
        // `point >> 64` would overflow: a shift of 64 means one bucket.
        let bucket = point.checked_shr(self.shift).unwrap_or(0) as usize;
        match (self.starts.get(bucket), self.starts.get(bucket + 1)) {
            // The answer lies in starts[b]..=starts[b + 1]: the first end reaching
            // `(b + 1) << shift` reaches `point` too.
            (Some(&low), Some(&high)) if low <= high && high <= self.ends.len() => {
                low + self.ends[low..high].partition_point(|end| *end < point)
            }
            _ => self.ends.partition_point(|end| *end < point),
        }
    }
}

/// The radix index of sorted `ends` (see [`Placement::starts`]): about one bucket per
/// segment, as a power of two.
fn radix_index(ends: &[u64]) -> (Vec<usize>, u32) {
    let bits = ends.len().max(1).ilog2().min(20);
    let shift = 64 - bits;
    let mut starts: Vec<usize> = (0..1u64 << bits)
        .map(|bucket| {
            let first = bucket.checked_shl(shift).unwrap_or(0);
            ends.partition_point(|end| *end < first)
        })
        .collect();
    starts.push(ends.len().saturating_sub(1));
    (starts, shift)
}

/// The hash `ring` applies to a key, as a plain function: the crate does not name its
/// hasher, but its type is the ring's second parameter, and hashing with a fresh one is
/// what `Ring::try_get` does.
fn position_of<T, S: BuildHasher + Default>(_ring: &Ring<T, S>) -> fn(u64) -> u64 {
    |key| S::default().hash_one(key)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{providers, request};
    use super::*;

    fn keyed(key: u64) -> Request {
        let mut request = request();
        request.hash_key = Some(key);
        request
    }

    fn owners(balancer: &ConsistentHash, providers: &Providers, keys: u64) -> Vec<Arc<str>> {
        (0..keys)
            .map(|key| {
                let index = balancer.select(providers, &keyed(key), &Tried::default());
                index.map_or_else(|| "".into(), |index| providers[index].address.clone())
            })
            .collect()
    }

    #[test]
    fn needs_the_hash_key() {
        assert!(ConsistentHash::default().needs_hash_key());
    }

    #[test]
    fn the_same_key_goes_to_the_same_provider_every_time() {
        let providers = providers(5);
        let balancer = ConsistentHash::default();
        let first = owners(&balancer, &providers, 1_000);
        for _ in 0..3 {
            assert_eq!(owners(&balancer, &providers, 1_000), first);
        }
        // Another consumer, with the list in another order, agrees.
        let mut reversed = providers.to_vec();
        reversed.reverse();
        let reversed = Providers::from(reversed);
        assert_eq!(owners(&ConsistentHash::default(), &reversed, 1_000), first);
        let used: HashSet<_> = first.iter().collect();
        assert_eq!(used.len(), 5, "keys spread over every provider");
    }

    #[test]
    fn removing_one_of_five_providers_moves_only_its_keys() {
        let all = providers(5);
        let balancer = ConsistentHash::default();
        let before = owners(&balancer, &all, 10_000);
        let fewer: Vec<_> = all
            .iter()
            .filter(|p| !p.address.starts_with("10.0.0.3:"))
            .cloned()
            .collect();
        let after = owners(&balancer, &fewer.into(), 10_000);
        let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
        assert!(
            (1_000..3_000).contains(&moved),
            "{moved} of 10000 keys moved"
        );
        for (b, a) in before.iter().zip(&after) {
            assert!(
                b == a || b.starts_with("10.0.0.3:"),
                "{b} lost a key to {a}"
            );
        }
        // And back: the incremental update gives the ring a fresh build gives.
        assert_eq!(owners(&balancer, &all, 10_000), before);
    }

    #[test]
    fn the_radix_index_finds_the_segment_a_binary_search_finds() {
        for count in [1, 2, 3, 7, 64, 1000] {
            let mut rng = fastrand::Rng::with_seed(count);
            let mut ends: Vec<u64> = (1..count).map(|_| rng.u64(..)).collect();
            ends.sort_unstable();
            ends.push(u64::MAX);
            let (starts, shift) = radix_index(&ends);
            let placement = Placement {
                addresses: Vec::new(),
                ring: Ring::default(),
                owners: vec![0; ends.len()],
                ends,
                starts,
                shift,
                position: |key| key,
            };
            let points = (0..2_000).map(|_| rng.u64(..));
            let edges = placement
                .ends
                .clone()
                .into_iter()
                .flat_map(|e| [e, e.wrapping_add(1)]);
            for point in points.chain(edges).chain([0, u64::MAX]) {
                let expected = placement.ends.partition_point(|end| *end < point);
                assert_eq!(placement.segment_of(point), expected, "{count}: {point}");
            }
        }
    }

    #[test]
    fn picks_where_the_crate_puts_the_key() {
        let providers = providers(7);
        let placement = Placement::new(None, &providers, 40);
        for key in (0..5_000u64).map(|k| k.wrapping_mul(0x9e37_79b9_7f4a_7c15)) {
            let ours = placement.pick(key, providers.len(), &Tried::default());
            let theirs = placement.ring.try_get(key);
            assert_eq!(
                ours.map(|index| &providers[index].address),
                theirs,
                "key {key}"
            );
        }
    }

    #[test]
    fn a_retry_walks_on_to_the_next_untried_provider() {
        let providers = providers(5);
        let balancer = ConsistentHash::default();
        let request = keyed(42);
        let mut tried = Tried::default();
        let mut order = Vec::new();
        while let Some(index) = balancer.select(&providers, &request, &tried) {
            assert!(!tried.contains(index));
            tried.indices.push(index);
            order.push(index);
        }
        assert_eq!(order.len(), 5, "every provider once: {order:?}");
        // The same key retries in the same order.
        let again: Vec<_> = (0..5)
            .map(|n| {
                let tried = Tried {
                    indices: order[..n].to_vec(),
                };
                balancer.select(&providers, &request, &tried)
            })
            .collect();
        assert_eq!(again, order.iter().copied().map(Some).collect::<Vec<_>>());
    }

    #[test]
    fn no_key_is_weighted_random_and_no_provider_is_none() {
        fastrand::seed(13);
        let providers: Providers = providers(2)
            .to_vec()
            .into_iter()
            .zip([0, 100])
            .map(|(p, w)| p.with_weight(w))
            .collect::<Vec<_>>()
            .into();
        let balancer = ConsistentHash::default();
        for _ in 0..100 {
            assert_eq!(
                balancer.select(&providers, &request(), &Tried::default()),
                Some(1)
            );
        }
        let none = Providers::default();
        assert_eq!(balancer.select(&none, &keyed(1), &Tried::default()), None);
        assert_eq!(balancer.select(&none, &request(), &Tried::default()), None);
    }

    #[test]
    fn the_ring_is_rebuilt_only_when_the_list_changes() {
        let providers = providers(3);
        let balancer = ConsistentHash::with_virtual_nodes(8);
        let address = |placement: &Placement| placement as *const Placement;
        let first = balancer.with_placement(&providers, address);
        let again = balancer.with_placement(&providers.clone(), address);
        assert_eq!(first, again, "same list, same ring");
        let (points, nodes) = balancer.with_placement(&providers[..2], |placement| {
            (placement.ring.vnodes(), placement.ring.len())
        });
        assert_eq!((points, nodes), (16, 2), "another list, another ring");
    }
}
