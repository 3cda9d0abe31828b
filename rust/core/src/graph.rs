//! The immutable dependency graph, its builder, and the simple queries on it.

use std::sync::OnceLock;

use crate::csr::Csr;
use crate::error::GraphError;
use crate::intern::{hash, Interner};
use crate::{KeyId, NodeId};

/// Marks "no node" in per-key tables (a key nobody produces).
pub(crate) const NONE: u32 = u32::MAX;

/// Keys wait in a buffer until this many have been given, then are interned together.
const FLUSH_KEYS: usize = 4096;

/// What a key waiting to be interned was given for.
#[derive(Debug, Clone, Copy)]
enum KeyUse {
    Input,
    Output(NodeId),
    External,
}

/// Keys given to the builder but not yet interned, with their names copied back to
/// back. With large graphs every table lookup is a cache miss; interning thousands of
/// keys in one go lets the processor wait for all their misses at once (first every
/// key's hash, then every first probe, then the lookups proper) instead of in turn.
#[derive(Debug, Clone, Default)]
struct PendingKeys {
    text: String,
    ends: Vec<usize>,
    uses: Vec<KeyUse>,
    /// Scratch space for the hashes during a flush.
    hashes: Vec<u64>,
}

impl PendingKeys {
    #[inline]
    fn push(&mut self, name: &str, key_use: KeyUse) {
        self.text.push_str(name);
        self.ends.push(self.text.len());
        self.uses.push(key_use);
    }
}

/// Collects nodes, keys and explicit edges; `build` turns them into a `Graph`.
#[derive(Debug, Clone, Default)]
pub struct GraphBuilder {
    keys: Interner,
    producer: Vec<NodeId>,
    external: Vec<bool>,
    inputs: Csr,
    outputs: Csr,
    explicit: Vec<(NodeId, NodeId)>,
    duplicate_outputs: Vec<(KeyId, NodeId, NodeId)>,
    pending: PendingKeys,
    /// How many entries of `inputs.targets` / `outputs.targets` hold real key ids;
    /// the rest are placeholders for pending keys, filled in order by `flush`.
    inputs_done: usize,
    outputs_done: usize,
}

impl GraphBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// `keys` is the expected number of distinct keys; inputs are guessed at three per node.
    pub fn with_capacity(nodes: usize, keys: usize) -> Self {
        GraphBuilder {
            keys: Interner::with_capacity(keys),
            producer: Vec::with_capacity(keys),
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
        for name in inputs {
            self.pending.push(name, KeyUse::Input);
            self.inputs.targets.push(NONE);
        }
        for name in outputs {
            self.pending.push(name, KeyUse::Output(id));
            self.outputs.targets.push(NONE);
        }
        self.inputs.end_row();
        self.outputs.end_row();
        if self.pending.ends.len() >= FLUSH_KEYS {
            self.flush();
        }
        id
    }

    /// Interns every pending key, in the order given.
    fn flush(&mut self) {
        let mut pending = std::mem::take(&mut self.pending);
        let names = || {
            let text = pending.text.as_str();
            let mut start = 0;
            pending.ends.iter().map(move |&end| {
                let name = &text[start..end];
                start = end;
                name
            })
        };
        let mut hashes = std::mem::take(&mut pending.hashes);
        hashes.clear();
        hashes.extend(names().map(|name| hash(name.as_bytes())));
        let mut warm = 0u32;
        for &h in &hashes {
            warm ^= self.keys.touch(h);
        }
        std::hint::black_box(warm);
        for ((name, &h), &key_use) in names().zip(&hashes).zip(&pending.uses) {
            let (key, new) = self.keys.intern_hashed(name, h);
            if new {
                self.producer.push(NONE);
                self.external.push(false);
            }
            match key_use {
                KeyUse::Input => {
                    self.inputs.targets[self.inputs_done] = key;
                    self.inputs_done += 1;
                }
                KeyUse::Output(node) => {
                    self.record_output(key, node);
                    self.outputs.targets[self.outputs_done] = key;
                    self.outputs_done += 1;
                }
                KeyUse::External => self.external[key as usize] = true,
            }
        }
        pending.text.clear();
        pending.ends.clear();
        pending.uses.clear();
        pending.hashes = hashes;
        self.pending = pending;
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

    /// Adds `count` nodes with no keys (for graphs given as explicit edges only).
    pub fn add_nodes(&mut self, count: u32) {
        for _ in 0..count {
            self.next_id();
            self.inputs.end_row();
            self.outputs.end_row();
        }
    }

    /// Explicit dependency edge `from -> to`. Ids out of range are kept and reported
    /// by `validate` as `Problem::BadEdge`, so adding nodes later is fine.
    pub fn add_edge(&mut self, from: NodeId, to: NodeId) {
        self.explicit.push((from, to));
    }

    /// Declares a key as supplied from outside: an input that no node has to produce.
    pub fn declare_external(&mut self, key: &str) {
        self.pending.push(key, KeyUse::External);
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
        // Grouped by target so each predecessor row can take its explicit edges in turn.
        valid.sort_unstable_by_key(|&(from, to)| (to, from));

        // Predecessor rows first: a node's row comes from its own inputs, so the rows
        // are written sequentially; the successors then need a single scatter pass.
        let mut predecessors = Csr::with_capacity(n, inputs.targets.len() + valid.len());
        let mut next_explicit = 0;
        let mut forward = true;
        for v in 0..n as NodeId {
            let start = predecessors.targets.len();
            for &key in inputs.row(v) {
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
            if row.len() > 1 {
                row.sort_unstable();
                let mut kept = 1;
                for i in 1..row.len() {
                    if row[i] != row[kept - 1] {
                        row[kept] = row[i];
                        kept += 1;
                    }
                }
                predecessors.targets.truncate(start + kept);
            }
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

/// An immutable dependency graph over dense `u32` node ids, stored as CSR arrays.
///
/// Methods taking ids never panic on an id out of range: slices read as empty and
/// lookups as `None`. Call `check_node` first where an error is wanted instead.
#[derive(Debug)]
pub struct Graph {
    pub(crate) keys: Interner,
    pub(crate) producer: Vec<NodeId>,
    pub(crate) external: Vec<bool>,
    pub(crate) inputs: Csr,
    pub(crate) outputs: Csr,
    pub(crate) successors: Csr,
    pub(crate) predecessors: Csr,
    /// Every edge goes from a smaller id to a larger one (nodes were added in
    /// dependency order, the common case): then the ids themselves are the
    /// lexicographically smallest topological order and there is no cycle to look for.
    pub(crate) forward: bool,
    /// Built on first use: many callers never ask, and it costs a pass over all inputs.
    consumers: OnceLock<Csr>,
    pub(crate) bad_edges: Vec<(NodeId, NodeId)>,
    pub(crate) duplicate_outputs: Vec<(KeyId, NodeId, NodeId)>,
}

impl Graph {
    pub fn node_count(&self) -> usize {
        self.successors.rows()
    }

    /// Distinct edges, self edges included.
    pub fn edge_count(&self) -> usize {
        self.successors.targets.len()
    }

    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// The empty string for an unknown key id.
    pub fn key_name(&self, key: KeyId) -> &str {
        self.keys.name(key)
    }

    pub fn key_id(&self, name: &str) -> Option<KeyId> {
        self.keys.get(name)
    }

    /// The first node that listed `key` as an output.
    pub fn producer(&self, key: KeyId) -> Option<NodeId> {
        match self.producer.get(key as usize) {
            Some(&p) if p != NONE => Some(p),
            _ => None,
        }
    }

    /// Nodes listing `key` as an input, ascending, each once.
    pub fn consumers(&self, key: KeyId) -> &[NodeId] {
        self.consumers
            .get_or_init(|| {
                let mut consumers = self.inputs.transpose(self.keys.len());
                // A node listing a key twice appears twice in a row, side by side.
                consumers.dedup_rows();
                consumers
            })
            .row(key)
    }

    /// Input keys in the order given to `add_node`.
    pub fn node_inputs(&self, node: NodeId) -> &[KeyId] {
        self.inputs.row(node)
    }

    /// Output keys in the order given to `add_node`.
    pub fn node_outputs(&self, node: NodeId) -> &[KeyId] {
        self.outputs.row(node)
    }

    pub fn is_external(&self, key: KeyId) -> bool {
        self.external.get(key as usize).copied().unwrap_or(false)
    }

    /// Ascending ids.
    pub fn successors(&self, node: NodeId) -> &[NodeId] {
        self.successors.row(node)
    }

    /// Ascending ids.
    pub fn predecessors(&self, node: NodeId) -> &[NodeId] {
        self.predecessors.row(node)
    }

    /// Every edge, ordered by source then target.
    pub fn edges(&self) -> impl Iterator<Item = (NodeId, NodeId)> + '_ {
        (0..self.node_count() as NodeId)
            .flat_map(move |u| self.successors.row(u).iter().map(move |&v| (u, v)))
    }

    /// Nodes without predecessors, ascending.
    pub fn roots(&self) -> Vec<NodeId> {
        (0..self.node_count() as NodeId)
            .filter(|&v| self.predecessors.degree(v) == 0)
            .collect()
    }

    /// Nodes without successors, ascending.
    pub fn leaves(&self) -> Vec<NodeId> {
        (0..self.node_count() as NodeId)
            .filter(|&v| self.successors.degree(v) == 0)
            .collect()
    }

    pub fn check_node(&self, node: NodeId) -> Result<(), GraphError> {
        if (node as usize) < self.node_count() {
            Ok(())
        } else {
            Err(GraphError::NodeOutOfRange(node))
        }
    }

    /// The first id out of range, if any.
    pub fn check_nodes(&self, nodes: &[NodeId]) -> Result<(), GraphError> {
        nodes.iter().try_for_each(|&v| self.check_node(v))
    }

    /// Nodes with a non-empty path to some seed (a seed is included only if it is an
    /// ancestor of a seed, itself included through a cycle). Ascending; seeds out of
    /// range are ignored.
    pub fn ancestors(&self, seeds: &[NodeId]) -> Vec<NodeId> {
        reach(&self.predecessors, seeds, false)
    }

    /// Nodes with a non-empty path from some seed. Ascending; seeds out of range are ignored.
    pub fn descendants(&self, seeds: &[NodeId]) -> Vec<NodeId> {
        reach(&self.successors, seeds, false)
    }

    /// The producers of `keys` plus all their ancestors, ascending. An unknown key, or
    /// one nobody produces, is returned as `Err(name)`.
    pub fn required_for(&self, keys: &[&str]) -> Result<Vec<NodeId>, String> {
        let producers = keys
            .iter()
            .map(|&name| {
                self.key_id(name)
                    .and_then(|k| self.producer(k))
                    .ok_or_else(|| name.to_string())
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(reach(&self.predecessors, &producers, true))
    }

    /// Nodes not in `completed` whose predecessors are all in `completed`, ascending.
    /// Ids out of range are ignored.
    pub fn ready_given(&self, completed: &[NodeId]) -> Vec<NodeId> {
        let n = self.node_count();
        let mut done = vec![false; n];
        for &v in completed {
            if let Some(d) = done.get_mut(v as usize) {
                *d = true;
            }
        }
        (0..n as NodeId)
            .filter(|&v| {
                !done[v as usize] && self.predecessors.row(v).iter().all(|&p| done[p as usize])
            })
            .collect()
    }
}

/// Breadth-first closure over `edges` from `seeds`, returned ascending.
fn reach(edges: &Csr, seeds: &[NodeId], include_seeds: bool) -> Vec<NodeId> {
    let n = edges.rows();
    let mut seen = vec![false; n];
    let mut found: Vec<NodeId> = Vec::new();
    let mut visit = |v: NodeId, found: &mut Vec<NodeId>| {
        if !seen[v as usize] {
            seen[v as usize] = true;
            found.push(v);
        }
    };
    for &s in seeds.iter().filter(|&&s| (s as usize) < n) {
        if include_seeds {
            visit(s, &mut found);
        } else {
            for &p in edges.row(s) {
                visit(p, &mut found);
            }
        }
    }
    let mut i = 0;
    while i < found.len() {
        let u = found[i];
        i += 1;
        for &p in edges.row(u) {
            visit(p, &mut found);
        }
    }
    // Sorting a large result costs more than one sequential sweep of the flags.
    if found.len() > n / 16 {
        found.clear();
        found.extend((0..n as NodeId).filter(|&v| seen[v as usize]));
    } else {
        found.sort_unstable();
    }
    found
}
