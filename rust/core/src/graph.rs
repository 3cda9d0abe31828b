//! The immutable dependency graph, its builder, and the simple queries on it.

use std::sync::OnceLock;

use crate::csr::{Csr, Scatter};
use crate::error::GraphError;
use crate::intern::Interner;
use crate::{KeyId, NodeId};

/// Marks "no node" in per-key tables (a key nobody produces).
pub(crate) const NONE: u32 = u32::MAX;

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
            explicit: Vec::new(),
            duplicate_outputs: Vec::new(),
        }
    }

    pub fn node_count(&self) -> usize {
        self.inputs.rows()
    }

    #[inline]
    fn intern(&mut self, name: &str) -> KeyId {
        let (id, new) = self.keys.intern(name);
        if new {
            self.producer.push(NONE);
            self.external.push(false);
        }
        id
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
            let key = self.intern(name);
            self.inputs.targets.push(key);
        }
        self.inputs.end_row();
        for name in outputs {
            let key = self.intern(name);
            let first = self.producer[key as usize];
            if first == NONE {
                self.producer[key as usize] = id;
            } else if first != id {
                self.duplicate_outputs.push((key, first, id));
            }
            self.outputs.targets.push(key);
        }
        self.outputs.end_row();
        id
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
        let key = self.intern(key);
        self.external[key as usize] = true;
    }

    /// Never fails: problems are reported by `Graph::validate`.
    pub fn build(self) -> Graph {
        let n = self.inputs.rows();
        let GraphBuilder {
            keys,
            producer,
            external,
            inputs,
            outputs,
            explicit,
            duplicate_outputs,
        } = self;

        let (mut valid, bad_edges): (Vec<_>, Vec<_>) = explicit
            .into_iter()
            .partition(|&(from, to)| (from as usize) < n && (to as usize) < n);
        // Grouped by target so they can be merged into the key-derived edges, which
        // are generated target by target.
        valid.sort_unstable_by_key(|&(from, to)| (to, from));

        let mut counts = vec![0usize; n + 1];
        for &key in &inputs.targets {
            let p = producer[key as usize];
            if p != NONE {
                counts[p as usize] += 1;
            }
        }
        for &(from, _) in &valid {
            counts[from as usize] += 1;
        }
        let mut scatter = Scatter::new(counts);
        let mut next_explicit = valid.len();
        for v in (0..n as u32).rev() {
            for &key in inputs.row(v) {
                let p = producer[key as usize];
                if p != NONE {
                    scatter.place(p, v);
                }
            }
            while next_explicit > 0 && valid[next_explicit - 1].1 == v {
                next_explicit -= 1;
                scatter.place(valid[next_explicit].0, v);
            }
        }
        let mut successors = scatter.finish();
        // Targets were placed in order, so a repeated edge is a run inside its row.
        successors.dedup_rows();
        let predecessors = successors.transpose(n);

        Graph {
            keys,
            producer,
            external,
            inputs,
            outputs,
            successors,
            predecessors,
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
                let mut counts = vec![0usize; self.keys.len() + 1];
                for &key in &self.inputs.targets {
                    counts[key as usize] += 1;
                }
                let mut scatter = Scatter::new(counts);
                for v in (0..self.node_count() as u32).rev() {
                    for &key in self.inputs.row(v) {
                        scatter.place(key, v);
                    }
                }
                let mut csr = scatter.finish();
                csr.dedup_rows();
                csr
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
                !done[v as usize]
                    && self
                        .predecessors
                        .row(v)
                        .iter()
                        .all(|&p| done[p as usize])
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
