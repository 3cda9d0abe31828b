//! `Graph`: the core graph behind a Python class. Whole-graph work runs with the GIL released;
//! node ids come back as `NodeIds` / `Levels` (ids.rs), not as lists.

use std::sync::Arc;

use dataflow_core::{Graph, KeyId, NodeId, Problem};
use pyo3::exceptions::PyKeyError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::builder::{graph_from_edges, graph_from_keys};
use crate::errors::{cycle_err, graph_err};
use crate::ids::{NodeIds, PyLevels};

/// The task graph as integers: node ids are positions, data keys are interned strings.
#[pyclass(module = "taskiq_dataflow._core", name = "Graph", frozen)]
pub(crate) struct PyGraph {
    /// Shared with the schedulers made from this graph.
    pub(crate) inner: Arc<Graph>,
}

impl PyGraph {
    fn wrap(graph: Graph) -> Self {
        Self {
            inner: Arc::new(graph),
        }
    }

    /// `node`, or IndexError when the graph has no such node.
    fn node(&self, node: NodeId) -> PyResult<NodeId> {
        self.inner.check_node(node).map_err(graph_err)?;
        Ok(node)
    }

    fn key_names(&self, keys: &[KeyId]) -> Vec<String> {
        keys.iter()
            .map(|&k| self.inner.key_name(k).to_owned())
            .collect()
    }

    fn problem<'py>(&self, py: Python<'py>, problem: Problem) -> PyResult<Bound<'py, PyTuple>> {
        let name = |key| self.inner.key_name(key);
        match problem {
            Problem::MissingInput { node, key } => {
                ("missing_input", node, name(key)).into_pyobject(py)
            }
            Problem::DuplicateOutput { key, first, second } => {
                ("duplicate_output", name(key), first, second).into_pyobject(py)
            }
            Problem::Cycle(c) => ("cycle", c.path).into_pyobject(py),
            Problem::BadEdge { from, to } => ("bad_edge", from, to).into_pyobject(py),
        }
    }
}

#[pymethods]
impl PyGraph {
    /// Build from per-node input keys and output keys (one entry per node), optional explicit
    /// edges (from, to) and keys declared as supplied from outside.
    #[new]
    #[pyo3(signature = (inputs, outputs, edges = None, external = None))]
    fn new(
        py: Python<'_>,
        inputs: &Bound<'_, PyAny>,
        outputs: &Bound<'_, PyAny>,
        edges: Option<&Bound<'_, PyAny>>,
        external: Option<Vec<String>>,
    ) -> PyResult<Self> {
        graph_from_keys(py, inputs, outputs, edges, external).map(Self::wrap)
    }

    /// A graph of `node_count` keyless nodes and the given edges.
    #[staticmethod]
    fn from_edges(py: Python<'_>, node_count: u32, edges: &Bound<'_, PyAny>) -> PyResult<Self> {
        graph_from_edges(py, node_count, edges).map(Self::wrap)
    }

    #[getter]
    fn node_count(&self) -> usize {
        self.inner.node_count()
    }

    #[getter]
    fn edge_count(&self) -> usize {
        self.inner.edge_count()
    }

    #[getter]
    fn key_count(&self) -> usize {
        self.inner.key_count()
    }

    fn __len__(&self) -> usize {
        self.inner.node_count()
    }

    /// Every problem, as tuples: ("missing_input", node, key), ("duplicate_output", key, first,
    /// second), ("cycle", [a, b, ..., a]), ("bad_edge", from, to).
    #[pyo3(signature = (strict_inputs = false))]
    fn validate<'py>(
        &self,
        py: Python<'py>,
        strict_inputs: bool,
    ) -> PyResult<Vec<Bound<'py, PyTuple>>> {
        let graph = self.inner.clone();
        let problems = py.detach(|| graph.validate(strict_inputs));
        problems.into_iter().map(|p| self.problem(py, p)).collect()
    }

    /// Node ids in dependency order; among independent nodes the smaller id comes first.
    fn topological_order(&self, py: Python<'_>) -> PyResult<NodeIds> {
        let graph = self.inner.clone();
        py.detach(|| graph.topological_order())
            .map(NodeIds::new)
            .map_err(|c| cycle_err(&c))
    }

    /// Node ids grouped by parallel level.
    fn levels(&self, py: Python<'_>) -> PyResult<PyLevels> {
        let graph = self.inner.clone();
        py.detach(|| graph.levels())
            .map(PyLevels::new)
            .map_err(|c| cycle_err(&c))
    }

    fn roots(&self) -> NodeIds {
        NodeIds::new(self.inner.roots())
    }

    fn leaves(&self) -> NodeIds {
        NodeIds::new(self.inner.leaves())
    }

    fn predecessors(&self, node: NodeId) -> PyResult<NodeIds> {
        Ok(NodeIds::new(
            self.inner.predecessors(self.node(node)?).to_vec(),
        ))
    }

    fn successors(&self, node: NodeId) -> PyResult<NodeIds> {
        Ok(NodeIds::new(
            self.inner.successors(self.node(node)?).to_vec(),
        ))
    }

    fn has_edge(&self, source: NodeId, target: NodeId) -> PyResult<bool> {
        Ok(self.inner.has_edge(self.node(source)?, self.node(target)?))
    }

    /// Every edge as (from, to), by source then target.
    fn edges(&self) -> Vec<(NodeId, NodeId)> {
        self.inner.edges().collect()
    }

    /// Nodes with a path to any of `nodes`.
    fn ancestors(&self, py: Python<'_>, nodes: Vec<NodeId>) -> PyResult<NodeIds> {
        self.inner.check_nodes(&nodes).map_err(graph_err)?;
        Ok(NodeIds::new(py.detach(|| self.inner.ancestors(&nodes))))
    }

    /// Nodes reachable from any of `nodes`.
    fn descendants(&self, py: Python<'_>, nodes: Vec<NodeId>) -> PyResult<NodeIds> {
        self.inner.check_nodes(&nodes).map_err(graph_err)?;
        Ok(NodeIds::new(py.detach(|| self.inner.descendants(&nodes))))
    }

    /// The producers of `keys` and everything upstream of them. KeyError names an unknown key.
    fn required_for(&self, keys: Vec<String>) -> PyResult<NodeIds> {
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        self.inner
            .required_for(&keys)
            .map(NodeIds::new)
            .map_err(PyKeyError::new_err)
    }

    /// (total weight, node ids) of the heaviest path; weight 1 per node unless given.
    #[pyo3(signature = (weights = None))]
    fn critical_path(&self, weights: Option<Vec<f64>>) -> PyResult<(f64, Vec<NodeId>)> {
        self.inner
            .critical_path(weights.as_deref())
            .map_err(graph_err)
    }

    /// Per node, the heaviest path from it to a leaf (itself included).
    #[pyo3(signature = (weights = None))]
    fn bottom_levels(&self, weights: Option<Vec<f64>>) -> PyResult<Vec<f64>> {
        self.inner
            .bottom_levels(weights.as_deref())
            .map_err(graph_err)
    }

    /// Nodes not in `completed` whose predecessors are all in it.
    fn ready_given(&self, completed: Vec<NodeId>) -> NodeIds {
        NodeIds::new(self.inner.ready_given(&completed))
    }

    /// The node producing `key`, or None.
    fn producer(&self, key: &str) -> Option<NodeId> {
        self.inner.producer_of(key)
    }

    /// The nodes consuming `key`.
    fn consumers(&self, key: &str) -> Vec<NodeId> {
        self.inner.consumers_of(key).to_vec()
    }

    fn node_inputs(&self, node: NodeId) -> PyResult<Vec<String>> {
        Ok(self.key_names(self.inner.node_inputs(self.node(node)?)))
    }

    fn node_outputs(&self, node: NodeId) -> PyResult<Vec<String>> {
        Ok(self.key_names(self.inner.node_outputs(self.node(node)?)))
    }

    /// Consumed keys that no node produces, in order of first appearance.
    fn unproduced_inputs(&self) -> Vec<String> {
        self.key_names(&self.inner.unproduced_inputs())
    }

    /// Keys some node produces, each once, in the order of their producers.
    fn output_keys(&self) -> Vec<String> {
        self.key_names(&self.inner.output_keys())
    }

    fn __repr__(&self) -> String {
        format!(
            "<Graph {} nodes, {} edges, {} keys>",
            self.inner.node_count(),
            self.inner.edge_count(),
            self.inner.key_count()
        )
    }
}
