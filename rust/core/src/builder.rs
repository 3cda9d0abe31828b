//! `GraphBuilder`: collects nodes, keys and explicit edges, then builds the CSR `Graph`.

use std::sync::OnceLock;

use crate::csr::Csr;
use crate::graph::{Graph, NONE};
use crate::intern::{Interner, Probe};
use crate::{KeyId, NodeId};

/// Node keys wait in a buffer until this many have been given, then are interned together.
const FLUSH_KEYS: usize = 1024;

/// Node keys given to the builder but not yet interned, names copied back to back.
///
/// With large graphs every table lookup is a cache miss. Interning a thousand keys
/// in one go lets each lookup prefetch the table slots of the keys a little further
/// on, so that the processor waits for many misses at once instead of one after
/// another, and keeps `add_node` itself short.
#[derive(Debug, Clone, Default)]
struct PendingKeys {
    text: String,
    ends: Vec<usize>,
    /// Scratch space for the keys' probes during a flush.
    probes: Vec<Probe>,
}

/// Names taken from the caller's iterators before any is copied.
const GATHER: usize = 8;

/// A node's names, gathered a few at a time before their bytes are copied: the
/// caller's strings are usually cache misses, and gathering first puts the fetches
/// of all of a node's names (inputs and outputs alike) under way at once.
struct Gathered<'a> {
    names: [&'a str; GATHER],
    len: usize,
}

impl<'a> Gathered<'a> {
    fn new() -> Self {
        Gathered {
            names: [""; GATHER],
            len: 0,
        }
    }

    /// Takes every name; returns how many.
    #[inline]
    fn take(&mut self, names: impl IntoIterator<Item = &'a str>, pending: &mut PendingKeys) -> u32 {
        let mut count = 0u32;
        for name in names {
            if self.len == GATHER {
                self.copy_into(pending);
            }
            self.names[self.len] = name;
            self.len += 1;
            count += 1;
        }
        count
    }

    #[inline]
    fn copy_into(&mut self, pending: &mut PendingKeys) {
        for name in &self.names[..self.len] {
            pending.text.push_str(name);
            pending.ends.push(pending.text.len());
        }
        self.len = 0;
    }
}

/// Collects nodes, keys and explicit edges; `build` turns them into a `Graph`.
#[derive(Debug, Clone, Default)]
pub struct GraphBuilder {
    keys: Interner,
    producer: Vec<NodeId>,
    external: Vec<bool>,
    /// Row offsets run ahead of the values: the rows of nodes whose keys are still
    /// pending are counted but their key ids not yet pushed.
    inputs: Csr,
    outputs: Csr,
    explicit: Vec<(NodeId, NodeId)>,
    duplicate_outputs: Vec<(KeyId, NodeId, NodeId)>,
    pending: PendingKeys,
    /// Nodes whose keys are all interned.
    flushed_nodes: usize,
}

impl GraphBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// `keys` is the expected number of distinct keys; inputs are guessed at three per node.
    pub fn with_capacity(nodes: usize, keys: usize) -> Self {
        let producer = Vec::with_capacity(keys);
        // Read at random, by key, for every input.
        crate::mem::huge_pages(&producer);
        GraphBuilder {
            keys: Interner::with_capacity(keys),
            producer,
            external: Vec::with_capacity(keys),
            inputs: Csr::with_capacity(nodes, nodes * 3),
            outputs: Csr::with_capacity(nodes, nodes),
            ..Self::default()
        }
    }

    pub fn node_count(&self) -> usize {
        self.inputs.rows()
    }

    fn next_id(&self) -> NodeId {
        match NodeId::try_from(self.inputs.rows()) {
            Ok(id) if id != NONE => id,
            _ => panic!("more than u32::MAX - 1 nodes"),
        }
    }

    /// Appends a node; its id is the number of nodes added before it.
    pub fn add_node<'a>(
        &mut self,
        inputs: impl IntoIterator<Item = &'a str>,
        outputs: impl IntoIterator<Item = &'a str>,
    ) -> NodeId {
        let id = self.next_id();
        let mut gathered = Gathered::new();
        let count = gathered.take(inputs, &mut self.pending);
        push_row(&mut self.inputs, count);
        let count = gathered.take(outputs, &mut self.pending);
        push_row(&mut self.outputs, count);
        gathered.copy_into(&mut self.pending);
        if self.pending.ends.len() >= FLUSH_KEYS {
            self.flush();
        }
        id
    }

    /// Adds `count` nodes with no keys (for graphs given as explicit edges only).
    pub fn add_nodes(&mut self, count: u32) {
        for _ in 0..count {
            self.next_id();
            push_row(&mut self.inputs, 0);
            push_row(&mut self.outputs, 0);
        }
    }

    /// Explicit dependency edge `from -> to`. Ids out of range are kept and reported
    /// by `validate` as `Problem::BadEdge`, so adding nodes later is fine.
    pub fn add_edge(&mut self, from: NodeId, to: NodeId) {
        self.explicit.push((from, to));
    }

    /// Declares a key as supplied from outside: an input that no node has to produce.
    pub fn declare_external(&mut self, key: &str) {
        // Pending node keys go first so that key ids stay in order of first mention.
        self.flush();
        let key = self.intern(key, Probe::new(key));
        self.external[key as usize] = true;
    }

    #[inline]
    fn intern(&mut self, name: &str, probe: Probe) -> KeyId {
        let (key, new) = self.keys.intern_probed(name, probe);
        if new {
            self.producer.push(NONE);
            self.external.push(false);
        }
        key
    }

    /// Appends one node per entry of `counts`: node `j` lists `counts[j].0` input keys
    /// then `counts[j].1` output keys, taken in turn from `names`. The same as calling
    /// `add_node` for each, minus copying the names: they are interned during the call.
    ///
    /// Panics if the counts do not add up to `names.len()`.
    pub fn add_keyed_nodes(&mut self, names: &[&str], counts: &[(u32, u32)]) {
        // Pending node keys go first so that key ids stay in order of first mention.
        self.flush();
        let mut total = 0usize;
        for &(inputs, outputs) in counts {
            self.next_id();
            push_row(&mut self.inputs, inputs);
            push_row(&mut self.outputs, outputs);
            total += inputs as usize + outputs as usize;
        }
        assert_eq!(
            total,
            names.len(),
            "key counts do not add up to the names given"
        );
        let mut probes = std::mem::take(&mut self.pending.probes);
        probes.clear();
        probes.extend(names.iter().map(|name| Probe::new(name)));
        self.intern_rows(names, &probes);
        self.pending.probes = probes;
    }

    /// Interns every pending key, in the order given, and fills in the node rows.
    fn flush(&mut self) {
        if self.pending.ends.is_empty() && self.flushed_nodes == self.inputs.rows() {
            return;
        }
        let mut pending = std::mem::take(&mut self.pending);
        let text = pending.text.as_str();
        let mut start = 0;
        let names: Vec<&str> = pending
            .ends
            .iter()
            .map(|&end| {
                let name = &text[start..end];
                start = end;
                name
            })
            .collect();
        let mut probes = std::mem::take(&mut pending.probes);
        probes.clear();
        probes.extend(names.iter().map(|name| Probe::new(name)));
        self.intern_rows(&names, &probes);
        drop(names);
        pending.text.clear();
        pending.ends.clear();
        pending.probes = probes;
        self.pending = pending;
    }

    /// Interns `names` (with their `probes`) as the keys of the nodes counted since the
    /// last flush, in order, and fills in those nodes' rows.
    fn intern_rows(&mut self, names: &[&str], probes: &[Probe]) {
        // Table slots are requested `AHEAD` keys before they are needed and a long key's
        // name half as far ahead (it needs the slot first): far enough for the loads to
        // arrive in time, near enough for the lines to be still cached when used.
        const AHEAD: usize = 16;
        for &probe in probes.iter().take(AHEAD) {
            self.keys.prefetch(probe);
        }
        let mut k = 0;
        let intern = |this: &mut Self, k: &mut usize| {
            if let Some(&probe) = probes.get(*k + AHEAD) {
                this.keys.prefetch(probe);
            }
            if let Some(&probe) = probes.get(*k + AHEAD / 2) {
                this.keys.prefetch_name(probe);
            }
            let key = this.intern(names[*k], probes[*k]);
            *k += 1;
            key
        };
        let first_output = self.outputs.targets.len();
        for v in self.flushed_nodes..self.inputs.rows() {
            let node = v as NodeId;
            for _ in 0..self.inputs.degree(node) {
                let key = intern(self, &mut k);
                self.inputs.targets.push(key);
            }
            for _ in 0..self.outputs.degree(node) {
                let key = intern(self, &mut k);
                self.outputs.targets.push(key);
            }
        }
        assert_eq!(k, names.len(), "a name per counted key");
        // Producers afterwards, in the same order: an output key seen before is a
        // lookup at random too, which can then be prefetched like the others.
        let mut j = first_output;
        for v in self.flushed_nodes..self.inputs.rows() {
            let node = v as NodeId;
            for _ in 0..self.outputs.degree(node) {
                if let Some(&ahead) = self.outputs.targets.get(j + AHEAD) {
                    crate::mem::prefetch(&self.producer[ahead as usize]);
                }
                self.record_output(self.outputs.targets[j], node);
                j += 1;
            }
        }
        self.flushed_nodes = self.inputs.rows();
    }

    /// The first node to output a key is its producer; later ones are duplicates.
    fn record_output(&mut self, key: KeyId, node: NodeId) {
        let first = self.producer[key as usize];
        if first == NONE {
            self.producer[key as usize] = node;
        } else if first != node
            && !self
                .duplicate_outputs
                .iter()
                .rev()
                .take_while(|d| d.2 == node)
                .any(|d| d.0 == key)
        {
            // One report per extra producer, even if it lists the key twice.
            self.duplicate_outputs.push((key, first, node));
        }
    }

    /// Never fails: problems are reported by `Graph::validate`.
    pub fn build(mut self) -> Graph {
        self.flush();
        let n = self.inputs.rows();
        let GraphBuilder {
            keys,
            producer,
            external,
            inputs,
            outputs,
            explicit,
            duplicate_outputs,
            ..
        } = self;

        let (mut valid, bad_edges): (Vec<_>, Vec<_>) = explicit
            .into_iter()
            .partition(|&(from, to)| (from as usize) < n && (to as usize) < n);
        // Grouped by target so each predecessor row can take its explicit edges in turn (the
        // rows are sorted afterwards, so grouping is enough: a counting pass, not a sort).
        if !valid.windows(2).all(|w| w[0].1 <= w[1].1) {
            valid = group_by_target(valid, n);
        }

        // Predecessor rows first: a node's row comes from its own inputs, so the rows
        // are written sequentially; the successors then need a single scatter pass.
        let mut predecessors = Csr::with_capacity(n, inputs.targets.len() + valid.len());
        let mut next_explicit = 0;
        let mut forward = true;
        // Producers are looked up at random: each is prefetched this many keys ahead.
        const AHEAD: usize = 16;
        let mut k = 0;
        for v in 0..n as NodeId {
            let start = predecessors.targets.len();
            for &key in inputs.row(v) {
                if let Some(&ahead) = inputs.targets.get(k + AHEAD) {
                    if let Some(p) = producer.get(ahead as usize) {
                        crate::mem::prefetch(p);
                    }
                }
                k += 1;
                let p = producer[key as usize];
                if p != NONE {
                    predecessors.targets.push(p);
                }
            }
            while next_explicit < valid.len() && valid[next_explicit].1 == v {
                predecessors.targets.push(valid[next_explicit].0);
                next_explicit += 1;
            }
            let row = &mut predecessors.targets[start..];
            let kept = sort_dedup(row);
            predecessors.targets.truncate(start + kept);
            if let Some(&last) = predecessors.targets[start..].last() {
                forward &= last < v;
            }
            predecessors.end_row();
        }
        let successors = predecessors.transpose(n);

        Graph {
            keys,
            producer,
            external,
            inputs,
            outputs,
            successors,
            predecessors,
            forward,
            consumers: OnceLock::new(),
            bad_edges,
            duplicate_outputs,
        }
    }
}

/// Sorts `row` and moves its distinct values to the front; returns how many.
#[inline]
fn sort_dedup(row: &mut [NodeId]) -> usize {
    // Most rows have at most three values (in random order): those take a sorting network
    // without branches, which the processor cannot mispredict.
    if let [a, b, c] = *row {
        let (lo, hi) = (a.min(b), a.max(b));
        let (mid, top) = (hi.min(c), hi.max(c));
        let (bottom, mid) = (lo.min(mid), lo.max(mid));
        row[0] = bottom;
        let mut kept = 1;
        row[kept] = mid;
        kept += (mid != bottom) as usize;
        row[kept] = top;
        kept += (top != mid) as usize;
        return kept;
    }
    if row.len() <= 1 {
        return row.len();
    }
    row.sort_unstable();
    let mut kept = 1;
    for i in 1..row.len() {
        if row[i] != row[kept - 1] {
            row[kept] = row[i];
            kept += 1;
        }
    }
    kept
}

/// Appends a row of `count` values whose ids `flush` will push later.
#[inline]
fn push_row(csr: &mut Csr, count: u32) {
    let end = csr.offsets[csr.offsets.len() - 1]
        .checked_add(count)
        .expect("more than u32::MAX keys listed in total");
    csr.offsets.push(end);
}

/// Edges stably grouped by target in O(n + edges).
fn group_by_target(edges: Vec<(NodeId, NodeId)>, n: usize) -> Vec<(NodeId, NodeId)> {
    let mut start = vec![0usize; n + 1];
    for &(_, to) in &edges {
        start[to as usize + 1] += 1;
    }
    for i in 0..n {
        start[i + 1] += start[i];
    }
    let mut grouped = vec![(0, 0); edges.len()];
    for edge in edges {
        let slot = &mut start[edge.1 as usize];
        grouped[*slot] = edge;
        *slot += 1;
    }
    grouped
}
