//! Helpers shared by the integration tests.
#![allow(dead_code)]

use dataflow_core::{Graph, GraphBuilder, NodeId};

/// splitmix64: deterministic randomness without a dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// A graph given as explicit edges only.
pub fn from_edges(nodes: u32, edges: &[(NodeId, NodeId)]) -> Graph {
    let mut b = GraphBuilder::new();
    b.add_nodes(nodes);
    for &(from, to) in edges {
        b.add_edge(from, to);
    }
    b.build()
}

/// A graph given as `(inputs, outputs)` key lists per node.
pub fn from_keys(nodes: &[(&[&str], &[&str])]) -> Graph {
    let mut b = GraphBuilder::new();
    for &(inputs, outputs) in nodes {
        b.add_node(inputs.iter().copied(), outputs.iter().copied());
    }
    b.build()
}
