//! The scheduler's queue of Ready nodes: highest priority first, then smallest id.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::NodeId;

/// Maps an `f64` to a `u64` with the same order, so the heap compares integers.
/// NaN counts as the lowest priority; -0.0 equals 0.0.
pub(crate) fn priority_key(p: f64) -> u64 {
    if p.is_nan() {
        return 0;
    }
    let bits = (p + 0.0).to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

/// Without priorities the heap holds bare ids: 4-byte entries sift faster than 16.
#[derive(Debug, Clone)]
pub enum ReadyQueue {
    ById(BinaryHeap<Reverse<NodeId>>),
    ByPriority {
        keys: Vec<u64>,
        heap: BinaryHeap<(u64, Reverse<NodeId>)>,
    },
}

impl ReadyQueue {
    pub fn new(priorities: Option<Vec<f64>>) -> Self {
        match priorities {
            None => ReadyQueue::ById(BinaryHeap::new()),
            Some(p) => ReadyQueue::ByPriority {
                keys: p.into_iter().map(priority_key).collect(),
                heap: BinaryHeap::new(),
            },
        }
    }

    #[inline]
    pub fn push(&mut self, node: NodeId) {
        match self {
            ReadyQueue::ById(heap) => heap.push(Reverse(node)),
            ReadyQueue::ByPriority { keys, heap } => {
                heap.push((keys[node as usize], Reverse(node)))
            }
        }
    }

    #[inline]
    pub fn pop(&mut self) -> Option<NodeId> {
        match self {
            ReadyQueue::ById(heap) => heap.pop().map(|Reverse(v)| v),
            ReadyQueue::ByPriority { heap, .. } => heap.pop().map(|(_, Reverse(v))| v),
        }
    }

    /// Queues many nodes at once; heapifying a large batch is linear.
    pub fn extend(&mut self, nodes: impl Iterator<Item = NodeId>) {
        match self {
            ReadyQueue::ById(heap) => heap.extend(nodes.map(Reverse)),
            ReadyQueue::ByPriority { keys, heap } => {
                heap.extend(nodes.map(|v| (keys[v as usize], Reverse(v))))
            }
        }
    }

    /// Room for `count` added nodes; with priorities they have priority 0.
    pub fn grow(&mut self, count: usize) {
        if let ReadyQueue::ByPriority { keys, .. } = self {
            keys.resize(keys.len() + count, priority_key(0.0));
        }
    }

    /// Gives the `nodes` existing nodes priorities, all 0 (which hands them out in the
    /// same order as by id), so that some can be given others. Queued nodes stay queued.
    pub fn use_priorities(&mut self, nodes: usize) {
        if let ReadyQueue::ById(heap) = self {
            let zero = priority_key(0.0);
            let heap = std::mem::take(heap)
                .into_iter()
                .map(|Reverse(v)| (zero, Reverse(v)))
                .collect();
            *self = ReadyQueue::ByPriority {
                keys: vec![zero; nodes],
                heap,
            };
        }
    }

    /// Sets the priority of a node not queued now. Needs `use_priorities` first.
    pub fn set_priority(&mut self, node: NodeId, priority: f64) {
        match self {
            ReadyQueue::ById(_) => unreachable!("set_priority without priorities"),
            ReadyQueue::ByPriority { keys, .. } => keys[node as usize] = priority_key(priority),
        }
    }

    /// The node's place in the order: higher first (ties by smaller id). Without
    /// priorities every node has priority 0's key, which `use_priorities` keeps.
    #[inline]
    pub fn key(&self, node: NodeId) -> u64 {
        match self {
            ReadyQueue::ById(_) => priority_key(0.0),
            ReadyQueue::ByPriority { keys, .. } => keys[node as usize],
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            ReadyQueue::ById(heap) => heap.is_empty(),
            ReadyQueue::ByPriority { heap, .. } => heap.is_empty(),
        }
    }

    pub fn clear(&mut self) {
        match self {
            ReadyQueue::ById(heap) => heap.clear(),
            ReadyQueue::ByPriority { heap, .. } => heap.clear(),
        }
    }

    /// Sorts `nodes` into the order the queue would hand them out.
    pub fn sort(&self, nodes: &mut [NodeId]) {
        match self {
            ReadyQueue::ById(_) => nodes.sort_unstable(),
            ReadyQueue::ByPriority { keys, .. } => {
                nodes.sort_unstable_by_key(|&v| (Reverse(keys[v as usize]), v))
            }
        }
    }
}
