//! A room's connections by id: a small vector while the room has few, a hash map once it has
//! many.
//!
//! Why: most rooms have one to three connections, and every loaded room has this map. A
//! `HashMap` carries its hasher's keys inline and allocates a table of at least four buckets
//! plus a group of control bytes for the first entry; a vector sized exactly to its entries
//! holds one connection in one slot. A linear scan of at most [`SMALL_MAX`] ids is as fast as
//! hashing. Large rooms (a hundred viewers) switch to the map, where lookups stay O(1), and
//! switch back once few are left, so a storm's table is not kept.

use std::collections::HashMap;

use crate::maps::shrink_if_sparse;

/// Connections kept in the vector; one more and the room switches to a map.
const SMALL_MAX: usize = 8;
/// A large room goes back to the vector once this few are left (below `SMALL_MAX`, so a room
/// that hovers around the threshold does not rebuild on every join and leave).
const BACK_TO_SMALL: usize = SMALL_MAX / 2;

/// Connection id → what the room keeps of it.
#[derive(Debug)]
pub(crate) enum ConnMap<V> {
    Small(Vec<(u64, V)>),
    /// Boxed: the map is the rare case, and unboxed it would make every room's map (inline in
    /// the room actor's future) 56 bytes instead of a vector's 24.
    #[allow(clippy::box_collection)]
    Large(Box<HashMap<u64, V>>),
}

// The vector's capacity niche holds the tag: no word for it.
const _: () = assert!(std::mem::size_of::<ConnMap<[u8; 64]>>() == 24);

impl<V> Default for ConnMap<V> {
    fn default() -> Self {
        ConnMap::Small(Vec::new())
    }
}

impl<V> ConnMap<V> {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            ConnMap::Small(v) => v.len(),
            ConnMap::Large(m) => m.len(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn contains_key(&self, id: &u64) -> bool {
        self.get(id).is_some()
    }

    pub(crate) fn get(&self, id: &u64) -> Option<&V> {
        match self {
            ConnMap::Small(v) => v.iter().find(|(k, _)| k == id).map(|(_, c)| c),
            ConnMap::Large(m) => m.get(id),
        }
    }

    pub(crate) fn get_mut(&mut self, id: &u64) -> Option<&mut V> {
        match self {
            ConnMap::Small(v) => v.iter_mut().find(|(k, _)| k == id).map(|(_, c)| c),
            ConnMap::Large(m) => m.get_mut(id),
        }
    }

    /// Inserts or replaces; returns the value replaced.
    pub(crate) fn insert(&mut self, id: u64, value: V) -> Option<V> {
        match self {
            ConnMap::Small(v) => {
                if let Some((_, old)) = v.iter_mut().find(|(k, _)| *k == id) {
                    return Some(std::mem::replace(old, value));
                }
                if v.len() < SMALL_MAX {
                    // Grown one slot at a time at first (then doubling): a room of one
                    // connection holds one slot, not the four a plain push would reserve.
                    if v.len() == v.capacity() {
                        v.reserve_exact(v.len().max(1));
                    }
                    v.push((id, value));
                    return None;
                }
                let mut m: Box<HashMap<u64, V>> = Box::new(v.drain(..).collect());
                m.insert(id, value);
                *self = ConnMap::Large(m);
                None
            }
            ConnMap::Large(m) => m.insert(id, value),
        }
    }

    pub(crate) fn remove(&mut self, id: &u64) -> Option<V> {
        match self {
            ConnMap::Small(v) => {
                let i = v.iter().position(|(k, _)| k == id)?;
                let (_, value) = v.swap_remove(i);
                // A room that shrank from eight to one keeps one slot, not eight.
                if v.capacity() > 2 * v.len().max(1) {
                    v.shrink_to(v.len());
                }
                Some(value)
            }
            ConnMap::Large(m) => {
                let value = m.remove(id)?;
                if m.len() <= BACK_TO_SMALL {
                    let mut v = Vec::with_capacity(m.len());
                    v.extend(m.drain());
                    *self = ConnMap::Small(v);
                } else {
                    shrink_if_sparse(m);
                }
                Some(value)
            }
        }
    }

    /// Every connection, in no particular order.
    pub(crate) fn iter(&self) -> Iter<'_, V> {
        match self {
            ConnMap::Small(v) => Iter::Small(v.iter()),
            ConnMap::Large(m) => Iter::Large(m.iter()),
        }
    }

    pub(crate) fn values_mut(&mut self) -> ValuesMut<'_, V> {
        match self {
            ConnMap::Small(v) => ValuesMut::Small(v.iter_mut()),
            ConnMap::Large(m) => ValuesMut::Large(m.values_mut()),
        }
    }

    /// Empties the map, giving back its memory, and returns what it held.
    pub(crate) fn take_all(&mut self) -> Vec<(u64, V)> {
        match std::mem::take(self) {
            ConnMap::Small(v) => v,
            ConnMap::Large(m) => (*m).into_iter().collect(),
        }
    }
}

impl<'a, V> IntoIterator for &'a ConnMap<V> {
    type Item = (&'a u64, &'a V);
    type IntoIter = Iter<'a, V>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// [`ConnMap::iter`]: an enum, not a boxed iterator, so a broadcast allocates nothing.
#[derive(Debug)]
pub(crate) enum Iter<'a, V> {
    Small(std::slice::Iter<'a, (u64, V)>),
    Large(std::collections::hash_map::Iter<'a, u64, V>),
}

impl<'a, V> Iterator for Iter<'a, V> {
    type Item = (&'a u64, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Small(it) => it.next().map(|(k, c)| (k, c)),
            Iter::Large(it) => it.next(),
        }
    }
}

/// [`ConnMap::values_mut`].
#[derive(Debug)]
pub(crate) enum ValuesMut<'a, V> {
    Small(std::slice::IterMut<'a, (u64, V)>),
    Large(std::collections::hash_map::ValuesMut<'a, u64, V>),
}

impl<'a, V> Iterator for ValuesMut<'a, V> {
    type Item = &'a mut V;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            ValuesMut::Small(it) => it.next().map(|(_, c)| c),
            ValuesMut::Large(it) => it.next(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::{BACK_TO_SMALL, ConnMap, SMALL_MAX};

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64, u32),
        Remove(u64),
        Get(u64),
        Bump(u64),
        TakeAll,
    }

    fn op() -> impl Strategy<Value = Op> {
        // Few distinct ids, so inserts replace and removes hit; enough to cross SMALL_MAX.
        let id = 0u64..24;
        prop_oneof![
            4 => (id.clone(), any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
            3 => id.clone().prop_map(Op::Remove),
            2 => id.clone().prop_map(Op::Get),
            1 => id.prop_map(Op::Bump),
            1 => Just(Op::TakeAll),
        ]
    }

    fn sorted<'a>(it: impl Iterator<Item = (&'a u64, &'a u32)>) -> Vec<(u64, u32)> {
        let mut v: Vec<_> = it.map(|(k, v)| (*k, *v)).collect();
        v.sort_unstable();
        v
    }

    proptest! {
        /// Any sequence of operations: the same answers and contents as a `HashMap`, and the
        /// representation follows the thresholds.
        #[test]
        fn behaves_like_a_hash_map(ops in proptest::collection::vec(op(), 0..200)) {
            let mut map = ConnMap::new();
            let mut model: HashMap<u64, u32> = HashMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => prop_assert_eq!(map.insert(k, v), model.insert(k, v)),
                    Op::Remove(k) => prop_assert_eq!(map.remove(&k), model.remove(&k)),
                    Op::Get(k) => {
                        prop_assert_eq!(map.get(&k), model.get(&k));
                        prop_assert_eq!(map.contains_key(&k), model.contains_key(&k));
                    }
                    Op::Bump(k) => {
                        for v in map.values_mut() {
                            *v = v.wrapping_add(1);
                        }
                        for v in model.values_mut() {
                            *v = v.wrapping_add(1);
                        }
                        if let (Some(a), Some(b)) = (map.get_mut(&k), model.get_mut(&k)) {
                            *a ^= 1;
                            *b ^= 1;
                        }
                    }
                    Op::TakeAll => {
                        let mut got = map.take_all();
                        got.sort_unstable();
                        let mut want: Vec<_> = model.drain().collect();
                        want.sort_unstable();
                        prop_assert_eq!(got, want);
                    }
                }
                prop_assert_eq!(map.len(), model.len());
                prop_assert_eq!(map.is_empty(), model.is_empty());
                prop_assert_eq!(sorted(map.iter()), sorted(model.iter()));
                match &map {
                    ConnMap::Small(v) => prop_assert!(v.len() <= SMALL_MAX),
                    ConnMap::Large(m) => prop_assert!(m.len() > BACK_TO_SMALL),
                }
            }
        }
    }

    #[test]
    fn one_connection_holds_one_slot_and_a_large_room_goes_back_to_small() {
        let mut map = ConnMap::new();
        map.insert(1, ());
        match &map {
            ConnMap::Small(v) => assert_eq!(v.capacity(), 1),
            ConnMap::Large(_) => panic!("one connection in a map"),
        }
        for id in 2..=100 {
            map.insert(id, ());
        }
        assert!(matches!(map, ConnMap::Large(_)));
        for id in 2..=100 {
            map.remove(&id);
        }
        match &map {
            ConnMap::Small(v) => {
                assert_eq!(v.len(), 1);
                assert!(v.capacity() <= 2, "capacity {}", v.capacity());
            }
            ConnMap::Large(_) => panic!("one connection left in a map"),
        }
        assert_eq!(map.take_all(), vec![(1, ())]);
        assert!(matches!(&map, ConnMap::Small(v) if v.capacity() == 0));
    }
}
