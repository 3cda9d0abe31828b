//! Compressed sparse rows: one flat `targets` array plus `offsets`, so a graph of
//! millions of nodes costs two allocations instead of one `Vec` per node.
//!
//! Offsets are `u32` (at most 4,294,967,295 values): half the memory of `usize`, and
//! the arrays that graph walks read at random then stay in cache twice as long.

/// Rows of `u32` values. Row `i` is `targets[offsets[i]..offsets[i + 1]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Csr {
    pub offsets: Vec<u32>,
    pub targets: Vec<u32>,
}

impl Default for Csr {
    fn default() -> Self {
        Self::with_capacity(0, 0)
    }
}

impl Csr {
    /// An empty CSR to grow row by row with `targets.push` + `end_row`.
    pub fn with_capacity(rows: usize, values: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        let targets = Vec::with_capacity(values);
        // Fewer page faults while they fill (a graph's arrays take up to tens of MiB).
        crate::mem::huge_pages(&offsets);
        crate::mem::huge_pages(&targets);
        offsets.push(0);
        Csr { offsets, targets }
    }

    /// Closes the row made of everything pushed to `targets` since the previous row.
    #[inline]
    pub fn end_row(&mut self) {
        let end = u32::try_from(self.targets.len()).expect("more than u32::MAX values in a CSR");
        self.offsets.push(end);
    }

    #[inline]
    pub fn rows(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Out-of-range rows read as empty so that ids coming from Python cannot panic.
    #[inline]
    pub fn row(&self, i: u32) -> &[u32] {
        let i = i as usize;
        if i + 1 < self.offsets.len() {
            &self.targets[self.offsets[i] as usize..self.offsets[i + 1] as usize]
        } else {
            &[]
        }
    }

    #[inline]
    pub fn degree(&self, i: u32) -> u32 {
        let i = i as usize;
        self.offsets[i + 1] - self.offsets[i]
    }

    /// Number of values per row.
    pub fn degrees(&self) -> Vec<u32> {
        self.offsets.windows(2).map(|w| w[1] - w[0]).collect()
    }

    /// Drops adjacent repeats inside each row (in ascending rows, repeats are side by
    /// side). Works in place.
    pub fn dedup_rows(&mut self) {
        let mut write = 0usize;
        let mut start = self.offsets[0] as usize;
        for r in 0..self.rows() {
            let end = self.offsets[r + 1] as usize;
            let row_start = write;
            for i in start..end {
                let v = self.targets[i];
                if write == row_start || self.targets[write - 1] != v {
                    self.targets[write] = v;
                    write += 1;
                }
            }
            start = end;
            self.offsets[r + 1] = write as u32;
        }
        self.targets.truncate(write);
    }

    /// The transpose (row `v` lists every row containing `v`), each row ascending.
    pub fn transpose(&self, cols: usize) -> Csr {
        let mut offsets = vec![0u32; cols + 1];
        let mut targets = vec![0u32; self.targets.len()];
        crate::mem::huge_pages(&offsets);
        crate::mem::huge_pages(&targets);
        for &v in &self.targets {
            offsets[v as usize] += 1;
        }
        // Running sums turn each count into the row's end; every placement below
        // decrements it, leaving the row's start. Placing sources in descending order
        // therefore leaves every row ascending, with no separate cursor array.
        let mut sum = 0u32;
        for o in offsets[..cols].iter_mut() {
            sum += *o;
            *o = sum;
        }
        offsets[cols] = sum;
        // Both the counters and the placements land at random: the counter of the value
        // `AHEAD` steps on is prefetched, and half as far on, the place it points to.
        const AHEAD: usize = 16;
        let values = &self.targets;
        let mut r = self.rows();
        for j in (0..values.len()).rev() {
            while self.offsets[r] as usize > j {
                r -= 1;
            }
            if let Some(&v) = j.checked_sub(AHEAD).map(|i| &values[i]) {
                crate::mem::prefetch(&offsets[v as usize]);
            }
            if let Some(&v) = j.checked_sub(AHEAD / 2).map(|i| &values[i]) {
                if let Some(place) = targets.get((offsets[v as usize] as usize).wrapping_sub(1)) {
                    crate::mem::prefetch(place);
                }
            }
            let o = &mut offsets[values[j] as usize];
            *o -= 1;
            targets[*o as usize] = r as u32;
        }
        Csr { offsets, targets }
    }
}
