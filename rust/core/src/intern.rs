//! Key interning: each distinct key string gets a dense `KeyId`.

use rustc_hash::FxHashMap;

use crate::KeyId;

/// Names live once in a single arena string (read by `name`), plus once as the map's
/// boxed key (needed to look a name up): one small allocation per key, not two.
#[derive(Debug, Clone)]
pub struct Interner {
    map: FxHashMap<Box<str>, KeyId>,
    arena: String,
    ends: Vec<usize>,
}

impl Default for Interner {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl Interner {
    pub fn with_capacity(keys: usize) -> Self {
        let mut ends = Vec::with_capacity(keys + 1);
        ends.push(0);
        Interner {
            map: FxHashMap::with_capacity_and_hasher(keys, Default::default()),
            // A guess of ~8 bytes a name avoids most regrowth for typical keys.
            arena: String::with_capacity(keys * 8),
            ends,
        }
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.ends.len() - 1
    }

    /// Returns the id of `name`, and whether it was new.
    #[inline]
    pub fn intern(&mut self, name: &str) -> (KeyId, bool) {
        if let Some(&id) = self.map.get(name) {
            return (id, false);
        }
        let id = KeyId::try_from(self.len()).expect("more than u32::MAX distinct keys");
        self.arena.push_str(name);
        self.ends.push(self.arena.len());
        self.map.insert(name.into(), id);
        (id, true)
    }

    #[inline]
    pub fn get(&self, name: &str) -> Option<KeyId> {
        self.map.get(name).copied()
    }

    /// The empty string for an unknown id, so that a bad id from Python cannot panic.
    #[inline]
    pub fn name(&self, id: KeyId) -> &str {
        let i = id as usize;
        if i + 1 < self.ends.len() {
            &self.arena[self.ends[i]..self.ends[i + 1]]
        } else {
            ""
        }
    }
}
