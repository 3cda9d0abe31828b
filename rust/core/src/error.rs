//! Errors of graph queries. Every message names nodes and keys by id: the bindings
//! know the task names and format their own messages from the fields.

use std::fmt;

use crate::NodeId;

/// A closed path of dependency edges: the first node is repeated at the end, e.g.
/// `[a, b, c, a]`, or `[a, a]` for a node that consumes its own output.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cycle {
    pub path: Vec<NodeId>,
}

impl fmt::Display for Cycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cycle: ")?;
        for (i, node) in self.path.iter().enumerate() {
            if i > 0 {
                f.write_str(" -> ")?;
            }
            write!(f, "{node}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Cycle {}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GraphError {
    Cycle(Cycle),
    WeightsLength { expected: usize, got: usize },
    NodeOutOfRange(NodeId),
}

impl fmt::Display for GraphError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GraphError::Cycle(c) => c.fmt(f),
            GraphError::WeightsLength { expected, got } => write!(
                f,
                "weights has {got} entries but the graph has {expected} nodes"
            ),
            GraphError::NodeOutOfRange(node) => write!(f, "node {node} does not exist"),
        }
    }
}

impl std::error::Error for GraphError {}

impl From<Cycle> for GraphError {
    fn from(c: Cycle) -> Self {
        GraphError::Cycle(c)
    }
}
