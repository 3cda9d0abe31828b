//! Compressed sparse rows: one flat `targets` array plus `offsets`, so a graph of
//! millions of nodes costs two allocations instead of one `Vec` per node.

/// Rows of `u32` values. Row `i` is `targets[offsets[i]..offsets[i + 1]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Csr {
    pub offsets: Vec<usize>,
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
        offsets.push(0);
        Csr {
            offsets,
            targets: Vec::with_capacity(values),
        }
    }

    /// Closes the row made of everything pushed to `targets` since the previous row.
    #[inline]
    pub fn end_row(&mut self) {
        self.offsets.push(self.targets.len());
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
            &self.targets[self.offsets[i]..self.offsets[i + 1]]
        } else {
            &[]
        }
    }

    #[inline]
    pub fn degree(&self, i: u32) -> usize {
        let i = i as usize;
        self.offsets[i + 1] - self.offsets[i]
    }

    /// Drops adjacent repeats inside each row (rows filled in ascending order have
    /// their duplicates next to each other). Works in place.
    pub fn dedup_rows(&mut self) {
        let mut write = 0usize;
        let mut start = self.offsets[0];
        for r in 0..self.rows() {
            let end = self.offsets[r + 1];
            let row_start = write;
            for i in start..end {
                let v = self.targets[i];
                if write == row_start || self.targets[write - 1] != v {
                    self.targets[write] = v;
                    write += 1;
                }
            }
            start = end;
            self.offsets[r + 1] = write;
        }
        self.targets.truncate(write);
    }

    /// The transpose (row `v` lists every row containing `v`), each row ascending.
    pub fn transpose(&self, cols: usize) -> Csr {
        let mut counts = vec![0usize; cols + 1];
        for &v in &self.targets {
            counts[v as usize] += 1;
        }
        let mut scatter = Scatter::new(counts);
        for r in (0..self.rows()).rev() {
            for &v in self.row(r as u32) {
                scatter.place(v, r as u32);
            }
        }
        scatter.finish()
    }
}

/// Counting-sort construction of a CSR without a separate cursor array: each row's
/// offset starts at the row's end and is decremented by every placement, so it ends
/// at the row's start. Values must therefore be placed in descending order for each
/// row to come out ascending.
pub struct Scatter {
    offsets: Vec<usize>,
    targets: Vec<u32>,
}

impl Scatter {
    /// `counts[row]` is the number of values row `row` will get; `counts.len()` is rows + 1.
    pub fn new(mut counts: Vec<usize>) -> Self {
        let rows = counts.len() - 1;
        let mut sum = 0usize;
        for c in counts[..rows].iter_mut() {
            sum += *c;
            *c = sum;
        }
        counts[rows] = sum;
        Scatter {
            offsets: counts,
            targets: vec![0u32; sum],
        }
    }

    #[inline]
    pub fn place(&mut self, row: u32, value: u32) {
        let o = &mut self.offsets[row as usize];
        *o -= 1;
        self.targets[*o] = value;
    }

    pub fn finish(self) -> Csr {
        debug_assert!(self.offsets.is_empty() || self.offsets[0] == 0);
        Csr {
            offsets: self.offsets,
            targets: self.targets,
        }
    }
}
