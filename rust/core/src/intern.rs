//! Key interning: each distinct key string gets a dense `KeyId`, in order of first use.
//!
//! A purpose-built open-addressing table rather than `FxHashMap<Box<str>, KeyId>`:
//! with a million keys every lookup is a cache miss, and a std map pays three
//! (control bytes, bucket, boxed string) plus an allocation per key. Here a slot
//! holds the first bytes of its key, so a short key is confirmed by one slot read
//! and a long one by one more read of the name arena. On the 1M-node benchmark
//! (examples/scale.rs) interning took about 1.6 times less time than with the std map.

use std::hash::Hasher;

use rustc_hash::FxHasher;

use crate::KeyId;

const EMPTY: u32 = u32::MAX;
/// Keys up to this many bytes are stored whole inside their slot.
const INLINE: usize = 7;

#[derive(Debug, Clone, Copy)]
struct Slot {
    /// High bits of the hash; the lowest bit says whether the key is longer than `INLINE`.
    check: u32,
    id: KeyId,
    /// Short key: its bytes, zero padded, with the length in the top byte.
    /// Long key: its first 8 bytes, a cheap filter before comparing whole names.
    word: u64,
}

const VACANT: Slot = Slot {
    check: 0,
    id: EMPTY,
    word: 0,
};

#[inline]
pub fn hash(bytes: &[u8]) -> u64 {
    let mut h = FxHasher::default();
    h.write(bytes);
    h.finish()
}

/// The slot fields `(check, word)` that `name` must match.
#[inline]
fn fingerprint(name: &[u8], hash: u64) -> (u32, u64) {
    let mut word = [0u8; 8];
    let long = name.len() > INLINE;
    if long {
        word.copy_from_slice(&name[..8]);
    } else {
        word[..name.len()].copy_from_slice(name);
        word[7] = name.len() as u8;
    }
    (
        ((hash >> 32) as u32 & !1) | long as u32,
        u64::from_le_bytes(word),
    )
}

#[derive(Debug, Clone)]
pub struct Interner {
    slots: Vec<Slot>,
    /// Every name back to back; key `k` is `arena[starts[k]..starts[k + 1]]`.
    arena: String,
    /// `u32` halves this table: names may total at most 4 GiB.
    starts: Vec<u32>,
}

impl Default for Interner {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl Interner {
    pub fn with_capacity(keys: usize) -> Self {
        let mut starts = Vec::with_capacity(keys + 1);
        starts.push(0);
        Interner {
            slots: vec![VACANT; table_size(keys)],
            // ~8 bytes a name avoids most regrowth for typical keys.
            arena: String::with_capacity(keys * 8),
            starts,
        }
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.starts.len() - 1
    }

    /// Linear probing from the hash: the slot holding `name`, or the vacant slot that ends its run.
    #[inline]
    fn find(&self, name: &str, hash: u64) -> usize {
        let (check, word) = fingerprint(name.as_bytes(), hash);
        let mask = self.slots.len() - 1;
        let mut i = hash as usize & mask;
        loop {
            let slot = self.slots[i];
            if slot.id == EMPTY
                || (slot.check == check
                    && slot.word == word
                    && (check & 1 == 0 || self.name(slot.id) == name))
            {
                return i;
            }
            i = (i + 1) & mask;
        }
    }

    /// Reads the first slot `hash` probes and returns something derived from it.
    /// Issuing these reads for many keys before resolving any of them lets the
    /// processor wait for their cache misses at the same time instead of in turn.
    #[inline]
    pub fn touch(&self, hash: u64) -> u32 {
        self.slots[hash as usize & (self.slots.len() - 1)].id
    }

    /// Like `touch`, one step further: when the first probed slot holds a long key
    /// with the same hash bits, reads the start of its name in the arena, which
    /// confirming a match will need.
    #[inline]
    pub fn touch_name(&self, hash: u64) -> u8 {
        let slot = self.slots[hash as usize & (self.slots.len() - 1)];
        if slot.id != EMPTY && slot.check & 1 == 1 && slot.check >> 1 == (hash >> 33) as u32 {
            let start = self.starts[slot.id as usize] as usize;
            self.arena.as_bytes().get(start).copied().unwrap_or(0)
        } else {
            0
        }
    }

    /// Returns the id of `name`, and whether it was new; `h` is `hash(name)`.
    #[inline]
    pub fn intern_hashed(&mut self, name: &str, h: u64) -> (KeyId, bool) {
        let i = self.find(name, h);
        if self.slots[i].id != EMPTY {
            return (self.slots[i].id, false);
        }
        let id = KeyId::try_from(self.len())
            .ok()
            .filter(|&id| id != EMPTY)
            .expect("more than u32::MAX - 1 distinct keys");
        self.arena.push_str(name);
        let end = u32::try_from(self.arena.len()).expect("key names total more than 4 GiB");
        self.starts.push(end);
        let (check, word) = fingerprint(name.as_bytes(), h);
        self.slots[i] = Slot { check, id, word };
        if self.len() * 2 > self.slots.len() {
            self.grow();
        }
        (id, true)
    }

    /// Doubles the table, re-placing every key (hashes are recomputed from the names).
    fn grow(&mut self) {
        let size = self.slots.len() * 2;
        let old = std::mem::replace(&mut self.slots, vec![VACANT; size]);
        let mask = size - 1;
        for slot in old.into_iter().filter(|s| s.id != EMPTY) {
            let mut i = hash(self.name(slot.id).as_bytes()) as usize & mask;
            while self.slots[i].id != EMPTY {
                i = (i + 1) & mask;
            }
            self.slots[i] = slot;
        }
    }

    pub fn get(&self, name: &str) -> Option<KeyId> {
        let slot = self.slots[self.find(name, hash(name.as_bytes()))];
        (slot.id != EMPTY).then_some(slot.id)
    }

    /// The empty string for an unknown id, so that a bad id from Python cannot panic.
    #[inline]
    pub fn name(&self, id: KeyId) -> &str {
        let i = id as usize;
        if i + 1 < self.starts.len() {
            &self.arena[self.starts[i] as usize..self.starts[i + 1] as usize]
        } else {
            ""
        }
    }
}

/// A power of two at least twice `keys`, so the table stays at most half full.
fn table_size(keys: usize) -> usize {
    (keys.max(8) * 2).next_power_of_two()
}
