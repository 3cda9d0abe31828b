//! The immutable dependency graph and the simple queries on it.

use std::sync::OnceLock;

use crate::builder::GraphBuilder;
use crate::csr::Csr;
use crate::error::GraphError;
use crate::intern::Interner;
use crate::{KeyId, NodeId};

/// Marks "no node" in per-key tables (a key nobody produces).
pub(crate) const NONE: u32 = u32::MAX;

/// An immutable dependency graph over dense `u32` node ids, stored as CSR arrays.
///
/// Methods taking ids never panic on an id out of range: slices read as empty and
/// lookups as `None`. Call `check_node` first where an error is wanted instead.
#[derive(Debug, Clone)]
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
    pub(crate) consumers: OnceLock<Csr>,
    pub(crate) bad_edges: Vec<(NodeId, NodeId)>,
    pub(crate) duplicate_outputs: Vec<(KeyId, NodeId, NodeId)>,
}

impl Graph {
    /// `node_count` keyless nodes and the given edges; ids out of range are kept for
    /// `validate` to report as `Problem::BadEdge`, as `GraphBuilder::add_edge` does.
    pub fn from_edges(node_count: u32, edges: &[(NodeId, NodeId)]) -> Graph {
        let mut builder = GraphBuilder::with_capacity(node_count as usize, 0);
        builder.add_nodes(node_count);
        for &(from, to) in edges {
            builder.add_edge(from, to);
        }
        builder.build()
    }

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

    /// Whether the edge `from -> to` exists; false when either id is out of range.
    pub fn has_edge(&self, from: NodeId, to: NodeId) -> bool {
        self.successors(from).binary_search(&to).is_ok()
    }

    /// The producer of the key named `name`: None when no node lists it as an output.
    pub fn producer_of(&self, name: &str) -> Option<NodeId> {
        self.key_id(name).and_then(|k| self.producer(k))
    }

    /// The consumers of the key named `name`, ascending: empty for a key no node lists.
    pub fn consumers_of(&self, name: &str) -> &[NodeId] {
        self.key_id(name).map_or(&[], |k| self.consumers(k))
    }

    /// Keys some node consumes and none produces (declared external ones included), in
    /// order of first appearance, which is ascending key id.
    pub fn unproduced_inputs(&self) -> Vec<KeyId> {
        // One pass over the inputs rather than `consumers`, which would build (and keep)
        // the whole key -> consumers table for a yes/no answer per key.
        let mut consumed = vec![false; self.key_count()];
        for &k in &self.inputs.targets {
            consumed[k as usize] = true;
        }
        (0..self.key_count() as KeyId)
            .filter(|&k| consumed[k as usize] && self.producer(k).is_none())
            .collect()
    }

    /// Every key some node produces, once, ordered by producer and then by its place in
    /// that producer's outputs. A node listing an output twice names it once here.
    pub fn output_keys(&self) -> Vec<KeyId> {
        let mut seen = vec![false; self.key_count()];
        let mut keys = Vec::with_capacity(self.key_count());
        for node in 0..self.node_count() as NodeId {
            for &k in self.node_outputs(node) {
                if self.producer(k) == Some(node) && !std::mem::replace(&mut seen[k as usize], true)
                {
                    keys.push(k);
                }
            }
        }
        keys
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
