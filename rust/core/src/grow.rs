//! Nodes added to a running scheduler: their keys, their edges and the checks a batch
//! passes before any of it is applied.
//!
//! The `Graph` stays immutable (it is shared by every run of a DAG); what a run adds
//! lives here. Added nodes may read existing keys or keys of nodes added with them,
//! and may only produce new keys: at the time a batch is added no existing node
//! depends on it, so a cycle can only form inside the batch and a batch is checked
//! alone.
//!
//! `Scheduler::defer` breaks the stronger invariant "no existing node ever depends on
//! added nodes": it makes the waiting successors of a running node also wait for
//! another node (normally an added one), through an overflow edge like those of added
//! nodes. It checks for the cycle this could close itself, walking back from its target
//! over the predecessors kept here (`preds`, and `deferred` for the edges it added); a
//! later batch still cannot close a cycle, as nothing existing reads its new keys.

use std::fmt;

use rustc_hash::FxHashMap as HashMap;

use crate::csr::Csr;
use crate::graph::{Graph, NONE};
use crate::intern::{Interner, Probe};
use crate::NodeId;

/// Why a batch of added nodes was refused. Nodes of the batch are named by their index
/// in it; nothing of the batch was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrowError {
    /// `counts` do not add up to the names given.
    Counts { expected: usize, got: usize },
    /// Batch node `node` outputs `key`, which exists already: produced by `producer`,
    /// or (None) read by an existing node without a producer.
    OutputExists {
        node: usize,
        key: String,
        producer: Option<NodeId>,
    },
    /// Two nodes of the batch output `key`.
    DuplicateOutput {
        key: String,
        first: usize,
        second: usize,
    },
    /// Batch node `node` reads `key`, which no node produces.
    UnknownInput { node: usize, key: String },
    /// A closed path of batch nodes, `[a, b, a]`: each reads an output of the previous.
    Cycle { path: Vec<usize> },
    /// More than `u32::MAX - 1` nodes in all.
    TooMany,
    /// `priorities` does not have one entry per node of the batch.
    PrioritiesLength { expected: usize, got: usize },
    /// No group has this id (`Scheduler::new_group` makes them).
    UnknownGroup(u32),
}

impl fmt::Display for GrowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GrowError::Counts { expected, got } => write!(
                f,
                "key counts add up to {expected} names but {got} were given"
            ),
            GrowError::OutputExists {
                node,
                key,
                producer: Some(p),
            } => write!(
                f,
                "added node {node} outputs key '{key}', already produced by node {p}"
            ),
            GrowError::OutputExists { node, key, .. } => write!(
                f,
                "added node {node} outputs key '{key}', which existing nodes read as an input"
            ),
            GrowError::DuplicateOutput { key, first, second } => write!(
                f,
                "added nodes {first} and {second} both output key '{key}'"
            ),
            GrowError::UnknownInput { node, key } => {
                write!(
                    f,
                    "added node {node} reads key '{key}', which no node produces"
                )
            }
            GrowError::Cycle { path } => {
                f.write_str("added nodes form a cycle: ")?;
                for (i, node) in path.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" -> ")?;
                    }
                    write!(f, "{node}")?;
                }
                Ok(())
            }
            GrowError::TooMany => f.write_str("more than u32::MAX - 1 nodes"),
            GrowError::PrioritiesLength { expected, got } => write!(
                f,
                "priorities has {got} entries but the batch has {expected} nodes"
            ),
            GrowError::UnknownGroup(group) => write!(f, "there is no group {group}"),
        }
    }
}

impl std::error::Error for GrowError {}

/// What a batch added: ids `first..first + count`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Added {
    pub first: NodeId,
    /// Handed out now (Running), best first, like `complete` returns them.
    pub ready: Vec<NodeId>,
    /// Skipped at once: they read a key of a failed or skipped node. Ascending.
    pub skipped: Vec<NodeId>,
}

/// The keys and successor edges of added nodes.
///
/// Successor edges toward added nodes go into an overflow adjacency rather than the
/// graph's CSR: a singly linked list per source node (`head` per node, `next` and
/// `target` per edge), so an edge from any node costs O(1) to append and nothing is
/// rebuilt. Sources read their CSR row first, then this list.
#[derive(Debug, Clone, Default)]
pub(crate) struct Growth {
    /// Added output keys (an arena, no allocation per key) and the node producing each.
    keys: Interner,
    producer: Vec<NodeId>,
    head: Vec<u32>,
    next: Vec<u32>,
    target: Vec<NodeId>,
    /// Each added node's distinct predecessors, row `v - graph nodes` (`Checked.preds`).
    preds: Csr,
    /// Predecessors that `defer` gave added nodes, on top of `preds`.
    deferred: HashMap<NodeId, Vec<NodeId>>,
}

/// A checked batch: for each node its distinct predecessors (ids as they will be), and
/// the batch in an order where every node follows the batch nodes it reads from.
pub(crate) struct Checked {
    pub(crate) preds: Vec<NodeId>,
    pub(crate) pred_ends: Vec<usize>,
    pub(crate) order: Vec<usize>,
}

impl Growth {
    fn producer_of(&self, key: &str) -> Option<NodeId> {
        if self.producer.is_empty() {
            return None;
        }
        self.keys.get(key).map(|k| self.producer[k as usize])
    }

    /// Successors of `node` among added nodes, newest edge first.
    #[inline]
    pub(crate) fn successors(&self, node: NodeId) -> Successors<'_> {
        Successors {
            growth: self,
            edge: self.head.get(node as usize).copied().unwrap_or(NONE),
        }
    }

    pub(crate) fn add_edge(&mut self, from: NodeId, to: NodeId) {
        let edge = u32::try_from(self.target.len()).expect("more than u32::MAX added edges");
        self.target.push(to);
        self.next.push(self.head[from as usize]);
        self.head[from as usize] = edge;
    }

    /// Keeps a batch's predecessor rows (the batch's ids follow the previous batch's).
    pub(crate) fn record_preds(&mut self, checked: &Checked) {
        let mut start = 0;
        for &end in &checked.pred_ends {
            self.preds
                .targets
                .extend_from_slice(&checked.preds[start..end]);
            self.preds.end_row();
            start = end;
        }
    }

    /// Predecessors of the added node `added` (its id less the graph's node count):
    /// those of its keys, then those `defer` gave it.
    pub(crate) fn predecessors(
        &self,
        node: NodeId,
        added: u32,
    ) -> impl Iterator<Item = NodeId> + '_ {
        let extra = self.deferred.get(&node).map_or(&[][..], Vec::as_slice);
        self.preds.row(added).iter().chain(extra).copied()
    }

    /// `to` -> `node`, an edge `defer` adds; `node_added` tells whether `node` is an
    /// added node (whose predecessors are kept).
    pub(crate) fn add_deferred_edge(&mut self, to: NodeId, node: NodeId, node_added: bool) {
        self.add_edge(to, node);
        if node_added {
            self.deferred.entry(node).or_default().push(to);
        }
    }

    /// Makes room for edges leaving any of the first `nodes` nodes.
    pub(crate) fn reserve_nodes(&mut self, nodes: usize) {
        self.head.resize(nodes, NONE);
    }

    /// Checks a batch whose first node will get id `base`. Nothing changes.
    pub(crate) fn check(
        &self,
        graph: &Graph,
        base: usize,
        names: &[&str],
        counts: &[(u32, u32)],
    ) -> Result<Checked, GrowError> {
        let expected: usize = counts.iter().map(|&(i, o)| i as usize + o as usize).sum();
        if expected != names.len() {
            return Err(GrowError::Counts {
                expected,
                got: names.len(),
            });
        }
        if base + counts.len() >= NONE as usize {
            return Err(GrowError::TooMany);
        }
        let batch_outputs = self.check_outputs(graph, names, counts)?;
        let (preds, pred_ends) = self.resolve_inputs(graph, base, names, counts, &batch_outputs)?;
        let order = batch_order(base, counts.len(), &preds, &pred_ends)?;
        Ok(Checked {
            preds,
            pred_ends,
            order,
        })
    }

    /// Every output key of the batch, new, mapped to its node.
    fn check_outputs<'a>(
        &self,
        graph: &Graph,
        names: &[&'a str],
        counts: &[(u32, u32)],
    ) -> Result<HashMap<&'a str, usize>, GrowError> {
        let mut outputs: HashMap<&str, usize> = HashMap::default();
        outputs.reserve(counts.len());
        let mut at = 0usize;
        for (node, &(ins, outs)) in counts.iter().enumerate() {
            at += ins as usize;
            for &key in &names[at..at + outs as usize] {
                if let Some(k) = graph.key_id(key) {
                    return Err(GrowError::OutputExists {
                        node,
                        key: key.to_string(),
                        producer: graph.producer(k),
                    });
                }
                if let Some(p) = self.producer_of(key) {
                    return Err(GrowError::OutputExists {
                        node,
                        key: key.to_string(),
                        producer: Some(p),
                    });
                }
                match outputs.insert(key, node) {
                    Some(first) if first != node => {
                        return Err(GrowError::DuplicateOutput {
                            key: key.to_string(),
                            first,
                            second: node,
                        })
                    }
                    _ => {}
                }
            }
            at += outs as usize;
        }
        Ok(outputs)
    }

    /// Each node's distinct predecessors, flat with row ends. A declared external key
    /// of the graph needs no producer.
    fn resolve_inputs(
        &self,
        graph: &Graph,
        base: usize,
        names: &[&str],
        counts: &[(u32, u32)],
        batch_outputs: &HashMap<&str, usize>,
    ) -> Result<(Vec<NodeId>, Vec<usize>), GrowError> {
        let mut preds = Vec::with_capacity(names.len());
        let mut ends = Vec::with_capacity(counts.len());
        let mut at = 0usize;
        for (node, &(ins, outs)) in counts.iter().enumerate() {
            let start = preds.len();
            for &key in &names[at..at + ins as usize] {
                if let Some(&j) = batch_outputs.get(key) {
                    preds.push((base + j) as NodeId);
                } else if let Some(p) = self.producer_of(key) {
                    preds.push(p);
                } else {
                    match graph.key_id(key) {
                        Some(k) if graph.producer(k).is_some() => {
                            preds.push(graph.producer[k as usize])
                        }
                        Some(k) if graph.is_external(k) => {}
                        _ => {
                            return Err(GrowError::UnknownInput {
                                node,
                                key: key.to_string(),
                            })
                        }
                    }
                }
            }
            let row = &mut preds[start..];
            row.sort_unstable();
            let mut kept = 0;
            for i in 0..row.len() {
                if kept == 0 || row[i] != row[kept - 1] {
                    row[kept] = row[i];
                    kept += 1;
                }
            }
            preds.truncate(start + kept);
            ends.push(preds.len());
            at += (ins + outs) as usize;
        }
        Ok((preds, ends))
    }

    /// Records the batch's output keys as produced by their new ids.
    pub(crate) fn record_outputs(&mut self, base: usize, names: &[&str], counts: &[(u32, u32)]) {
        self.producer.reserve(counts.len());
        let mut at = 0usize;
        for (node, &(ins, outs)) in counts.iter().enumerate() {
            at += ins as usize;
            for &key in &names[at..at + outs as usize] {
                // New by the checks, unless the node lists it twice: ids then stay in step.
                if self.keys.intern_probed(key, Probe::new(key)).1 {
                    self.producer.push((base + node) as NodeId);
                }
            }
            at += outs as usize;
        }
    }
}

/// The batch in dependency order (Kahn's algorithm over the edges inside it), or the
/// cycle that leaves some of it unordered.
fn batch_order(
    base: usize,
    m: usize,
    preds: &[NodeId],
    ends: &[usize],
) -> Result<Vec<usize>, GrowError> {
    let row = |j: usize| &preds[if j == 0 { 0 } else { ends[j - 1] }..ends[j]];
    let inside = |p: NodeId| (p as usize).checked_sub(base).filter(|&i| i < m);
    // The batch's own edges turned around (successors), in CSR form by counting.
    let mut waiting = vec![0u32; m];
    let mut offsets = vec![0usize; m + 1];
    for (j, w) in waiting.iter_mut().enumerate() {
        for &p in row(j) {
            if let Some(i) = inside(p) {
                *w += 1;
                offsets[i + 1] += 1;
            }
        }
    }
    for i in 0..m {
        offsets[i + 1] += offsets[i];
    }
    let mut fill = offsets.clone();
    let mut succ = vec![0usize; offsets[m]];
    for j in 0..m {
        for &p in row(j) {
            if let Some(i) = inside(p) {
                succ[fill[i]] = j;
                fill[i] += 1;
            }
        }
    }
    let mut order: Vec<usize> = (0..m).filter(|&j| waiting[j] == 0).collect();
    let mut head = 0;
    while head < order.len() {
        let i = order[head];
        head += 1;
        for &j in &succ[offsets[i]..offsets[i + 1]] {
            waiting[j] -= 1;
            if waiting[j] == 0 {
                order.push(j);
            }
        }
    }
    if order.len() == m {
        return Ok(order);
    }
    // Every node left has a predecessor left: walking predecessors must come back.
    let mut at = (0..m).find(|&j| waiting[j] > 0).expect("a node left");
    let mut seen = vec![usize::MAX; m];
    let mut walk = Vec::new();
    while seen[at] == usize::MAX {
        seen[at] = walk.len();
        walk.push(at);
        at = row(at)
            .iter()
            .filter_map(|&p| inside(p))
            .find(|&i| waiting[i] > 0)
            .expect("a predecessor left");
    }
    let mut path: Vec<usize> = walk[seen[at]..].to_vec();
    path.reverse(); // walked against the edges
    path.push(path[0]);
    Err(GrowError::Cycle { path })
}

pub(crate) struct Successors<'a> {
    growth: &'a Growth,
    edge: u32,
}

impl Iterator for Successors<'_> {
    type Item = NodeId;

    #[inline]
    fn next(&mut self) -> Option<NodeId> {
        if self.edge == NONE {
            return None;
        }
        let e = self.edge as usize;
        self.edge = self.growth.next[e];
        Some(self.growth.target[e])
    }
}
