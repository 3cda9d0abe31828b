//! Key interning: each distinct key string gets a dense `KeyId`, in order of first use.
//!
//! A purpose-built open-addressing table rather than `FxHashMap<Box<str>, KeyId>`:
//! with a million keys every lookup is a cache miss, and a std map pays three
//! (control bytes, bucket, boxed string) plus an allocation per key. Here a slot
//! holds a short key whole, so it is confirmed by that one slot read, and a long
//! key's place in the name arena, so one more read confirms it. Callers that look
//! up many keys in a row prefetch the slots (`prefetch`, `prefetch_name`) a few
//! keys ahead, so that the misses overlap instead of following each other.

use std::hash::Hasher;

use rustc_hash::FxHasher;

use crate::mem::prefetch;
use crate::KeyId;

/// Keys up to this many bytes are stored whole inside their slot.
const INLINE: usize = 7;

/// `[meta, word]`. meta: high 32 bits of the hash with the lowest bit saying whether
/// the key is longer than `INLINE`, then the key id + 1 (0: a vacant slot, so that a
/// new table is zeroed memory, which costs no initialising pass).
/// word: a short key's bytes, zero padded, with the length in the top byte;
/// a long key's start in the arena, with its length in the high half.
type Slot = [u64; 2];

/// What a lookup needs of a key, worked out beforehand so that a batch of lookups can
/// compute every key's in one pass and then spend the lookups waiting only on the table.
#[derive(Debug, Clone, Copy, Default)]
pub struct Probe {
    /// The key's hash, whose bit 32 is replaced by whether the key is longer than `INLINE`
    /// (see `Slot`: the high half is compared with the slot's).
    hash: u64,
    /// The slot word of a short key (unused for a long one).
    word: u64,
}

impl Probe {
    #[inline]
    pub fn new(name: &str) -> Probe {
        let bytes = name.as_bytes();
        let (hash, word) = if bytes.len() > INLINE {
            let mut h = FxHasher::default();
            h.write(bytes);
            (h.finish() | 1 << 32, 0)
        } else {
            let word = short_word(bytes);
            (mix(word) & !(1 << 32), word)
        };
        Probe { hash, word }
    }

    #[inline]
    fn long(self) -> bool {
        self.hash & 1 << 32 != 0
    }

    #[inline]
    fn check(self) -> u64 {
        self.hash >> 32
    }
}

/// A 64-bit mix of a short key's word (one 128-bit multiply, folded).
#[inline]
fn mix(word: u64) -> u64 {
    let product = u128::from(word ^ 0x243F_6A88_85A3_08D3) * 0x9E37_79B9_7F4A_7C15;
    (product as u64) ^ (product >> 64) as u64
}

/// A short key's word: its bytes, zero padded, with the length in the top byte. Reads the
/// bytes as at most two overlapping loads rather than a variable-length copy.
#[inline]
fn short_word(bytes: &[u8]) -> u64 {
    let len = bytes.len();
    debug_assert!(len <= INLINE);
    let word = if len >= 4 {
        let lo = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"));
        let hi = u32::from_le_bytes(bytes[len - 4..].try_into().expect("4 bytes"));
        u64::from(lo) | u64::from(hi) << ((len - 4) * 8)
    } else if len > 0 {
        u64::from(bytes[0])
            | u64::from(bytes[len / 2]) << (len / 2 * 8)
            | u64::from(bytes[len - 1]) << ((len - 1) * 8)
    } else {
        0
    };
    word | (len as u64) << 56
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
        // ~8 bytes a name avoids most regrowth for typical keys.
        let arena = Vec::with_capacity(keys * 8);
        crate::mem::huge_pages(&starts);
        crate::mem::huge_pages(&arena);
        starts.push(0);
        Interner {
            slots: zeroed_table(table_size(keys)),
            arena: String::from_utf8(arena).expect("empty"),
            starts,
        }
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.starts.len() - 1
    }

    #[inline]
    fn home(&self, hash: u64) -> usize {
        hash as usize & (self.slots.len() - 1)
    }

    /// Linear probing from the hash: the slot holding `name`, or the vacant slot that ends its run.
    #[inline]
    fn find(&self, name: &str, probe: Probe) -> usize {
        let check = probe.check();
        let mask = self.slots.len() - 1;
        let mut i = probe.hash as usize & mask;
        if probe.long() {
            let bytes = name.as_bytes();
            loop {
                let [meta, word] = self.slots[i];
                if meta == 0
                    || (meta >> 32 == check
                        && (word >> 32) as usize == bytes.len()
                        && self.arena_bytes(word as u32 as usize, bytes.len()) == bytes)
                {
                    return i;
                }
                i = (i + 1) & mask;
            }
        }
        loop {
            let [meta, word] = self.slots[i];
            if meta == 0 || (meta >> 32 == check && word == probe.word) {
                return i;
            }
            i = (i + 1) & mask;
        }
    }

    #[inline]
    fn arena_bytes(&self, start: usize, len: usize) -> &[u8] {
        &self.arena.as_bytes()[start..start + len]
    }

    /// Starts loading the first slot a lookup of this key reads.
    #[inline]
    pub fn prefetch(&self, probe: Probe) {
        prefetch(&self.slots[self.home(probe.hash)]);
    }

    /// For a long key whose first slot holds a key with the same hash bits, starts
    /// loading that key's name, which confirming a match reads. Best called some keys
    /// after `prefetch(probe)`, once the slot has arrived; does nothing for a short key.
    #[inline]
    pub fn prefetch_name(&self, probe: Probe) {
        if !probe.long() {
            return;
        }
        let [meta, word] = self.slots[self.home(probe.hash)];
        if meta >> 32 == probe.check() {
            if let Some(byte) = self.arena.as_bytes().get(word as u32 as usize) {
                prefetch(byte);
            }
        }
    }

    /// Returns the id of `name`, and whether it was new; `probe` is `Probe::new(name)`.
    #[inline]
    pub fn intern_probed(&mut self, name: &str, probe: Probe) -> (KeyId, bool) {
        let i = self.find(name, probe);
        let meta = self.slots[i][0];
        if meta != 0 {
            return ((meta as u32).wrapping_sub(1), false);
        }
        let id = KeyId::try_from(self.len())
            .ok()
            .filter(|&id| id != u32::MAX)
            .expect("more than u32::MAX - 1 distinct keys");
        let start = self.arena.len();
        let word = if probe.long() {
            self.arena.push_str(name);
            start as u64 | (name.len() as u64) << 32
        } else {
            self.arena.push_str(name);
            probe.word
        };
        let end = u32::try_from(self.arena.len()).expect("key names total more than 4 GiB");
        self.starts.push(end);
        self.slots[i] = [probe.check() << 32 | (id as u64 + 1), word];
        if self.len() * 2 > self.slots.len() {
            self.grow();
        }
        (id, true)
    }

    /// Doubles the table, re-placing every key (hashes are recomputed from the names).
    fn grow(&mut self) {
        let size = self.slots.len() * 2;
        let old = std::mem::replace(&mut self.slots, zeroed_table(size));
        let mask = size - 1;
        for slot in old.into_iter().filter(|s| s[0] != 0) {
            let id = (slot[0] as u32).wrapping_sub(1);
            let mut i = Probe::new(self.name(id)).hash as usize & mask;
            while self.slots[i][0] != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = slot;
        }
    }

    pub fn get(&self, name: &str) -> Option<KeyId> {
        let meta = self.slots[self.find(name, Probe::new(name))][0];
        (meta != 0).then(|| (meta as u32).wrapping_sub(1))
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

/// `size` vacant slots.
fn zeroed_table(size: usize) -> Vec<Slot> {
    // Zeroed allocation: fresh pages from the OS, not written until used.
    let table = vec![[0u64; 2]; size];
    crate::mem::huge_pages(&table);
    table
}

/// A power of two at least twice `keys`, so the table stays at most half full.
fn table_size(keys: usize) -> usize {
    (keys.max(8) * 2).next_power_of_two()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_every_length_stay_apart() {
        // Lengths around the inline limit, zero bytes (a short key's padding), multi-byte text.
        let mut names = vec![String::new(), "\0".into(), "a\0".into(), "\0a".into()];
        for len in 1..=20 {
            names.push("x".repeat(len));
            names.push(format!("{}y", "x".repeat(len - 1)));
            names.push(format!("y{}", "x".repeat(len - 1)));
            names.push(format!("{}\0", "x".repeat(len - 1)));
        }
        names.extend(["é", "éé", "日本", "日本語", "ключ-ключ"].map(String::from));
        names.sort();
        names.dedup();
        let mut interner = Interner::with_capacity(4);
        for (i, name) in names.iter().enumerate() {
            assert_eq!(
                interner.intern_probed(name, Probe::new(name)),
                (i as KeyId, true)
            );
        }
        for (i, name) in names.iter().enumerate() {
            assert_eq!(
                interner.intern_probed(name, Probe::new(name)),
                (i as KeyId, false)
            );
            assert_eq!(interner.get(name), Some(i as KeyId));
            assert_eq!(interner.name(i as KeyId), name);
        }
        assert_eq!(interner.get("xxxxxxxxxxxxxxxxxxxxxxx"), None);
        assert_eq!(interner.get("z"), None);
        assert_eq!(interner.name(names.len() as KeyId), "");
    }
}
