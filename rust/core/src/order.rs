//! Orderings of an acyclic graph: topological order, levels, critical path, bottom levels.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::error::{Cycle, GraphError};
use crate::graph::{Graph, NONE};
use crate::NodeId;

/// Nodes grouped by level: level 0 holds the roots, and a node's level is one more
/// than the highest level among its predecessors. Each level is ascending by id.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Levels {
    /// Level `i` is `nodes[offsets[i]..offsets[i + 1]]`.
    pub offsets: Vec<usize>,
    pub nodes: Vec<NodeId>,
}

impl Levels {
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Empty for a level out of range.
    pub fn get(&self, level: usize) -> &[NodeId] {
        if level < self.len() {
            &self.nodes[self.offsets[level]..self.offsets[level + 1]]
        } else {
            &[]
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &[NodeId]> + '_ {
        (0..self.len()).map(move |i| self.get(i))
    }
}

/// Kahn's algorithm with a plain FIFO queue (the order vector itself): the cheapest
/// way to get some topological order. Returns the order, shorter than the node count
/// on a cycle, and the leftover in-degrees, non-zero exactly on the unordered nodes.
pub(crate) fn kahn_fifo(graph: &Graph) -> (Vec<NodeId>, Vec<u32>) {
    let n = graph.node_count();
    let mut indegree = graph.predecessors.degrees();
    let mut order: Vec<NodeId> = Vec::with_capacity(n);
    order.extend((0..n as NodeId).filter(|&v| indegree[v as usize] == 0));
    let mut head = 0;
    while head < order.len() {
        let u = order[head];
        head += 1;
        for &w in graph.successors.row(u) {
            let d = &mut indegree[w as usize];
            *d -= 1;
            if *d == 0 {
                order.push(w);
            }
        }
    }
    (order, indegree)
}

/// Some topological order, or the graph's first cycle.
fn any_order(graph: &Graph) -> Result<Vec<NodeId>, Cycle> {
    if graph.forward {
        return Ok((0..graph.node_count() as NodeId).collect());
    }
    let (order, indegree) = kahn_fifo(graph);
    if order.len() == graph.node_count() {
        Ok(order)
    } else {
        Err(graph.first_cycle(&indegree))
    }
}

fn check_weights(graph: &Graph, weights: Option<&[f64]>) -> Result<(), GraphError> {
    match weights {
        Some(w) if w.len() != graph.node_count() => Err(GraphError::WeightsLength {
            expected: graph.node_count(),
            got: w.len(),
        }),
        _ => Ok(()),
    }
}

impl Graph {
    /// Kahn's algorithm taking the smallest ready id first: the lexicographically
    /// smallest topological order. On a cycle, the cycle through the smallest id of the
    /// first cyclic strongly connected component.
    pub fn topological_order(&self) -> Result<Vec<NodeId>, Cycle> {
        let n = self.node_count();
        if self.forward {
            return Ok((0..n as NodeId).collect());
        }
        let mut indegree = self.predecessors.degrees();
        let roots: Vec<Reverse<NodeId>> = (0..n as NodeId)
            .filter(|&v| indegree[v as usize] == 0)
            .map(Reverse)
            .collect();
        let mut ready = BinaryHeap::from(roots);
        let mut order: Vec<NodeId> = Vec::with_capacity(n);
        while let Some(Reverse(u)) = ready.pop() {
            order.push(u);
            for &w in self.successors.row(u) {
                let d = &mut indegree[w as usize];
                *d -= 1;
                if *d == 0 {
                    ready.push(Reverse(w));
                }
            }
        }
        if order.len() == n {
            Ok(order)
        } else {
            Err(self.first_cycle(&indegree))
        }
    }

    /// `levels[0]` = roots; level(v) = 1 + max(level(predecessor)); each level ascending.
    pub fn levels(&self) -> Result<Levels, Cycle> {
        let n = self.node_count();
        let level = if self.forward {
            // Ids are a topological order: pull from predecessors, each row read once, in order.
            let mut level = vec![0u32; n];
            for v in 0..n as NodeId {
                level[v as usize] = self
                    .predecessors(v)
                    .iter()
                    .map(|&p| level[p as usize] + 1)
                    .max()
                    .unwrap_or(0);
            }
            level
        } else {
            self.kahn_levels()?
        };
        let depth = level.iter().map(|&l| l + 1).max().unwrap_or(0);
        // Counting sort by level; scanning ids in order keeps each level ascending.
        let mut offsets = vec![0usize; depth as usize + 1];
        for &l in &level {
            offsets[l as usize + 1] += 1;
        }
        for i in 0..depth as usize {
            offsets[i + 1] += offsets[i];
        }
        let mut cursor = offsets.clone();
        let mut nodes = vec![0 as NodeId; n];
        for (v, &l) in level.iter().enumerate() {
            let c = &mut cursor[l as usize];
            nodes[*c] = v as NodeId;
            *c += 1;
        }
        Ok(Levels { offsets, nodes })
    }

    /// Levels computed during Kahn's algorithm itself, pushed along each edge as it is
    /// removed: one pass over the graph instead of an ordering pass plus a levels pass.
    /// In-degree and level of a node sit side by side, fetched by the same cache miss.
    fn kahn_levels(&self) -> Result<Vec<u32>, Cycle> {
        let n = self.node_count();
        let mut node: Vec<(u32, u32)> = (0..n as NodeId)
            .map(|v| (self.predecessors.degree(v), 0))
            .collect();
        let mut queue: Vec<NodeId> = Vec::with_capacity(n);
        queue.extend((0..n as NodeId).filter(|&v| node[v as usize].0 == 0));
        let mut head = 0;
        while head < queue.len() {
            let u = queue[head];
            head += 1;
            let next = node[u as usize].1 + 1;
            for &w in self.successors(u) {
                let (indegree, level) = &mut node[w as usize];
                *level = (*level).max(next);
                *indegree -= 1;
                if *indegree == 0 {
                    queue.push(w);
                }
            }
        }
        if queue.len() < n {
            let leftover: Vec<u32> = node.iter().map(|&(d, _)| d).collect();
            return Err(self.first_cycle(&leftover));
        }
        Ok(node.into_iter().map(|(_, l)| l).collect())
    }

    /// The heaviest path by node weight (1.0 each when `weights` is None): its total
    /// weight and its nodes from a root to a leaf. Ties go to the smallest ids.
    /// An empty graph gives `(0.0, [])`.
    pub fn critical_path(&self, weights: Option<&[f64]>) -> Result<(f64, Vec<NodeId>), GraphError> {
        check_weights(self, weights)?;
        let n = self.node_count();
        let order = any_order(self)?;
        let weight = |v: usize| weights.map_or(1.0, |w| w[v]);
        let mut best = vec![0f64; n];
        let mut via = vec![NONE; n];
        for &v in &order {
            let mut from = NONE;
            let mut heaviest = 0f64;
            // Predecessors are ascending, so the strict `>` keeps the smallest id on ties.
            for &p in self.predecessors(v) {
                if from == NONE || best[p as usize] > heaviest {
                    from = p;
                    heaviest = best[p as usize];
                }
            }
            best[v as usize] = weight(v as usize) + heaviest;
            via[v as usize] = from;
        }
        let mut end = NONE;
        for v in 0..n as NodeId {
            if self.successors.degree(v) == 0
                && (end == NONE || best[v as usize] > best[end as usize])
            {
                end = v;
            }
        }
        if end == NONE {
            return Ok((0.0, Vec::new()));
        }
        let mut path = vec![end];
        let mut at = end;
        while via[at as usize] != NONE {
            at = via[at as usize];
            path.push(at);
        }
        path.reverse();
        Ok((best[end as usize], path))
    }

    /// For each node, the heaviest path weight from it to any leaf, itself included
    /// (its "bottom level"): critical-path-first scheduling priorities.
    pub fn bottom_levels(&self, weights: Option<&[f64]>) -> Result<Vec<f64>, GraphError> {
        check_weights(self, weights)?;
        let order = any_order(self)?;
        let mut bottom = vec![0f64; self.node_count()];
        for &v in order.iter().rev() {
            let below = self
                .successors(v)
                .iter()
                .map(|&s| bottom[s as usize])
                .fold(None, |acc: Option<f64>, b| {
                    Some(acc.map_or(b, |a| a.max(b)))
                });
            bottom[v as usize] = weights.map_or(1.0, |w| w[v as usize]) + below.unwrap_or(0.0);
        }
        Ok(bottom)
    }
}
