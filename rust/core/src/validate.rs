//! Graph problems: bad explicit edges, duplicate producers, missing inputs, and cycles
//! (strongly connected components by an iterative Tarjan, then one closed path each).

use std::fmt;

use crate::error::Cycle;
use crate::graph::{Graph, NONE};
use crate::order::kahn_fifo;
use crate::{KeyId, NodeId};

/// One thing wrong with a graph, as reported by `Graph::validate`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Problem {
    /// An explicit edge names a node id that was never added.
    BadEdge {
        from: NodeId,
        to: NodeId,
    },
    /// `second` also outputs `key`, already produced by `first` (which stays its producer).
    DuplicateOutput {
        key: KeyId,
        first: NodeId,
        second: NodeId,
    },
    /// `node` needs `key`, which no node produces and which was not declared external.
    MissingInput {
        node: NodeId,
        key: KeyId,
    },
    Cycle(Cycle),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::BadEdge { from, to } => {
                write!(
                    f,
                    "edge {from} -> {to} refers to a node that does not exist"
                )
            }
            Problem::DuplicateOutput { key, first, second } => write!(
                f,
                "key {key} is produced by node {first} and again by node {second}"
            ),
            Problem::MissingInput { node, key } => write!(
                f,
                "node {node} needs key {key}, which no node produces and is not declared external"
            ),
            Problem::Cycle(c) => c.fmt(f),
        }
    }
}

impl Graph {
    /// Every problem at once, in this order: `BadEdge`, `DuplicateOutput`,
    /// `MissingInput` (only when `strict_inputs`), `Cycle` (one per strongly connected
    /// component containing a cycle, ordered by the component's smallest id; each path
    /// is a shortest cycle through that id, closed: `[a, b, c, a]`, or `[a, a]`).
    /// Iterative throughout, so million-node chains are fine.
    pub fn validate(&self, strict_inputs: bool) -> Vec<Problem> {
        let mut problems: Vec<Problem> = self
            .bad_edges
            .iter()
            .map(|&(from, to)| Problem::BadEdge { from, to })
            .collect();
        problems.extend(
            self.duplicate_outputs
                .iter()
                .map(|&(key, first, second)| Problem::DuplicateOutput { key, first, second }),
        );
        if strict_inputs {
            self.missing_inputs(&mut problems);
        }
        problems.extend(self.cycles().into_iter().map(Problem::Cycle));
        problems
    }

    fn missing_inputs(&self, problems: &mut Vec<Problem>) {
        // Last node each key was reported for: a node listing a key twice gets one report.
        let mut reported_for = vec![NONE; self.key_count()];
        for node in 0..self.node_count() as NodeId {
            for &key in self.node_inputs(node) {
                let k = key as usize;
                if self.producer[k] == NONE && !self.external[k] && reported_for[k] != node {
                    reported_for[k] = node;
                    problems.push(Problem::MissingInput { node, key });
                }
            }
        }
    }

    /// One cycle per cyclic strongly connected component, ordered by smallest id.
    pub(crate) fn cycles(&self) -> Vec<Cycle> {
        if self.forward {
            return Vec::new();
        }
        let (order, indegree) = kahn_fifo(self);
        if order.len() == self.node_count() {
            return Vec::new();
        }
        // Kahn's leftovers hold every cycle; nodes it emptied cannot be on one.
        let components = Components::find(self, &indegree);
        let mut parent = vec![NONE; self.node_count()];
        components
            .cyclic
            .iter()
            .map(|&(start, c)| components.shortest_cycle(self, start, c, &mut parent))
            .collect()
    }

    /// Some cycle (the one `topological_order` would report), or None when acyclic.
    pub fn find_cycle(&self) -> Option<Cycle> {
        if self.forward {
            return None;
        }
        let (order, indegree) = kahn_fifo(self);
        (order.len() != self.node_count()).then(|| self.first_cycle(&indegree))
    }

    /// The cycle of the cyclic component with the smallest id, given Kahn's leftover
    /// in-degrees (non-zero exactly on the nodes it could not order).
    pub(crate) fn first_cycle(&self, indegree: &[u32]) -> Cycle {
        let components = Components::find(self, indegree);
        let &(start, c) = components
            .cyclic
            .first()
            .expect("Kahn's algorithm left nodes, so there is a cycle");
        let mut parent = vec![NONE; self.node_count()];
        components.shortest_cycle(self, start, c, &mut parent)
    }
}

/// Strongly connected components of the nodes Kahn's algorithm could not order.
struct Components {
    /// Component number of each node (`NONE` for nodes outside the search).
    membership: Vec<u32>,
    /// `(smallest id, component number)` of each component holding a cycle, ascending.
    cyclic: Vec<(NodeId, u32)>,
}

impl Components {
    /// Tarjan's algorithm over the nodes with `leftover[v] != 0`, with an explicit call
    /// stack so that a million-node chain cannot overflow the thread's stack.
    fn find(graph: &Graph, leftover: &[u32]) -> Components {
        let n = graph.node_count();
        let succ = &graph.successors;
        let mut index = vec![NONE; n];
        let mut low = vec![0u32; n];
        let mut membership = vec![NONE; n];
        let mut stack: Vec<NodeId> = Vec::new();
        let mut calls: Vec<(NodeId, u32)> = Vec::new();
        let mut next_index = 0u32;
        let mut next_component = 0u32;
        let mut cyclic: Vec<(NodeId, u32)> = Vec::new();

        for root in 0..n {
            if leftover[root] == 0 || index[root] != NONE {
                continue;
            }
            index[root] = next_index;
            low[root] = next_index;
            next_index += 1;
            stack.push(root as NodeId);
            calls.push((root as NodeId, succ.offsets[root]));
            while let Some(&mut (v, ref mut pos)) = calls.last_mut() {
                let vi = v as usize;
                if *pos < succ.offsets[vi + 1] {
                    // Successors of a leftover node are leftovers too: no scope check.
                    let w = succ.targets[*pos as usize] as usize;
                    *pos += 1;
                    if index[w] == NONE {
                        index[w] = next_index;
                        low[w] = next_index;
                        next_index += 1;
                        stack.push(w as NodeId);
                        calls.push((w as NodeId, succ.offsets[w]));
                    } else if membership[w] == NONE {
                        // Visited but without a component yet: it is on the stack.
                        low[vi] = low[vi].min(index[w]);
                    }
                    continue;
                }
                calls.pop();
                if let Some(&(parent, _)) = calls.last() {
                    let p = parent as usize;
                    low[p] = low[p].min(low[vi]);
                }
                if low[vi] == index[vi] {
                    let c = next_component;
                    next_component += 1;
                    let mut smallest = v;
                    let mut size = 0usize;
                    loop {
                        let w = stack.pop().expect("v is on the stack");
                        membership[w as usize] = c;
                        smallest = smallest.min(w);
                        size += 1;
                        if w == v {
                            break;
                        }
                    }
                    if size > 1 || graph.successors(v).binary_search(&v).is_ok() {
                        cyclic.push((smallest, c));
                    }
                }
            }
        }
        cyclic.sort_unstable();
        Components { membership, cyclic }
    }

    /// Breadth-first search inside component `c` from `start` back to itself, so the
    /// path is a shortest cycle through the component's smallest id. `parent` must be
    /// `NONE` on the component's nodes; components are disjoint, so one table serves all.
    fn shortest_cycle(&self, graph: &Graph, start: NodeId, c: u32, parent: &mut [u32]) -> Cycle {
        let mut queue = vec![start];
        parent[start as usize] = start;
        let mut head = 0;
        while head < queue.len() {
            let u = queue[head];
            head += 1;
            for &w in graph.successors(u) {
                if w == start {
                    let mut path = vec![u];
                    let mut at = u;
                    while at != start {
                        at = parent[at as usize];
                        path.push(at);
                    }
                    path.reverse();
                    path.push(start);
                    return Cycle { path };
                }
                if self.membership[w as usize] == c && parent[w as usize] == NONE {
                    parent[w as usize] = u;
                    queue.push(w);
                }
            }
        }
        unreachable!("a cyclic component has a cycle through each of its nodes")
    }
}
