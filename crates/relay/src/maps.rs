//! Maps that give their memory back: the relay's registries (rooms, connections per room) grow
//! with a storm and must not keep the peak's table while idle.

use std::collections::HashMap;

/// Gives back a map's memory once it is mostly empty: a `HashMap` keeps the capacity of its
/// largest size forever, so after a storm of rooms or connections the registry would hold the
/// peak's table while idle. Shrinking to twice the length keeps it amortised O(1) per removal.
pub(crate) fn shrink_if_sparse<K: Eq + std::hash::Hash, V>(map: &mut HashMap<K, V>) {
    if map.capacity() > 64 && map.len() < map.capacity() / 4 {
        map.shrink_to(map.len() * 2);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::shrink_if_sparse;

    #[test]
    fn a_map_emptied_after_a_storm_gives_its_table_back() {
        let mut m: HashMap<u32, [u8; 64]> = HashMap::new();
        for i in 0..10_000 {
            m.insert(i, [0; 64]);
        }
        let peak = m.capacity();
        for i in 0..10_000 {
            m.remove(&i);
            shrink_if_sparse(&mut m);
        }
        assert!(
            m.capacity() <= 64,
            "capacity {} left of {peak}",
            m.capacity()
        );
        // Small maps are left alone (no churn for a handful of rooms).
        let mut small: HashMap<u32, u32> = (0..20).map(|i| (i, i)).collect();
        let cap = small.capacity();
        small.clear();
        shrink_if_sparse(&mut small);
        assert_eq!(small.capacity(), cap);
    }
}
