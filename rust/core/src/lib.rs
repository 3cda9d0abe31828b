//! Pure-Rust core of taskiq-dataflow: the dependency graph built from task input and
//! output keys, its validation and orderings, the ready-set scheduler, and the sharing of an
//! engine's slots among its runs.
//!
//! Nodes and keys are dense `u32` ids and adjacency lives in CSR arrays, so graphs of
//! millions of nodes stay compact and every algorithm is iterative.

mod builder;
mod csr;
mod error;
mod graph;
mod grow;
mod intern;
mod mem;
mod order;
mod ready_queue;
mod scheduler;
mod slots;
mod validate;

pub type NodeId = u32;
pub type KeyId = u32;

pub use builder::GraphBuilder;
pub use error::{Cycle, GraphError};
pub use graph::Graph;
pub use grow::{Added, GrowError};
pub use order::Levels;
pub use scheduler::{AddOptions, Counts, GroupId, NodeState, SchedError, Scheduler};
pub use slots::share_fitting;
pub use validate::Problem;
