//! pyo3 bindings of `dataflow_core`: the `taskiq_dataflow._core` module.
//!
//! Thin by design: each method converts its arguments, makes one call into the core (with the
//! GIL released for whole-graph work) and converts the result. No graph logic lives here.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use dataflow_core::{
    Graph, GraphBuilder, GraphError, NodeId, NodeState, Problem, SchedError, Scheduler,
};
use pyo3::create_exception;
use pyo3::exceptions::{PyIndexError, PyKeyError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString, PyTuple};

create_exception!(
    _core,
    CycleError,
    PyValueError,
    "The graph has a cycle; args are (message, closed path of node ids)."
);
create_exception!(
    _core,
    SchedulerError,
    PyValueError,
    "A scheduler call that the node's state does not allow; args are (message, node id or None)."
);

fn cycle_err(path: &[NodeId]) -> PyErr {
    let text = path
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(" -> ");
    CycleError::new_err((format!("cycle: {text}"), path.to_vec()))
}

fn graph_err(err: GraphError) -> PyErr {
    match err {
        GraphError::Cycle(c) => cycle_err(&c.path),
        GraphError::NodeOutOfRange(n) => PyIndexError::new_err(format!("no node with id {n}")),
        other => PyValueError::new_err(other.to_string()),
    }
}

fn sched_err(err: SchedError) -> PyErr {
    let node = match &err {
        SchedError::OutOfRange(n) | SchedError::DuplicateInBatch(n) => Some(*n),
        SchedError::NotRunning { node, .. } => Some(*node),
        SchedError::Cycle(c) => return cycle_err(&c.path),
        _ => None,
    };
    SchedulerError::new_err((err.to_string(), node))
}

fn state_name(state: NodeState) -> &'static str {
    match state {
        NodeState::Pending => "pending",
        NodeState::Ready => "ready",
        NodeState::Running => "running",
        NodeState::Done => "done",
        NodeState::Failed => "failed",
        NodeState::Skipped => "skipped",
    }
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default()
}

/// Collects one node's keys (a tuple, list or other iterable of str) into `buf`.
fn keys_into<'py>(
    obj: &Bound<'py, PyAny>,
    node: usize,
    what: &str,
    buf: &mut Vec<Bound<'py, PyString>>,
) -> PyResult<()> {
    buf.clear();
    let bad = |item: &Bound<'py, PyAny>| {
        PyTypeError::new_err((
            format!(
                "node {node}: {what} keys must be strings, got {}",
                type_name(item)
            ),
            node,
        ))
    };
    if let Ok(tuple) = obj.cast::<PyTuple>() {
        for item in tuple.iter() {
            buf.push(
                item.cast_into::<PyString>()
                    .map_err(|e| bad(e.into_inner().as_any()))?,
            );
        }
    } else if obj.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err((
            format!("node {node}: {what} must be a sequence of keys, not a string"),
            node,
        )));
    } else {
        let items = obj.try_iter().map_err(|_| {
            PyTypeError::new_err((
                format!(
                    "node {node}: {what} must be a sequence of keys, got {}",
                    type_name(obj)
                ),
                node,
            ))
        })?;
        for item in items {
            let item = item?;
            buf.push(
                item.cast_into::<PyString>()
                    .map_err(|e| bad(e.into_inner().as_any()))?,
            );
        }
    }
    Ok(())
}

/// (from, to) pairs from a sequence of 2-tuples or 2-lists; tuples in a list take a fast path
/// (this conversion is a third of building a graph from 3,000,000 edges).
fn edge_pairs(obj: &Bound<'_, PyAny>) -> PyResult<Vec<(NodeId, NodeId)>> {
    let pair = |i: usize, item: &Bound<'_, PyAny>| -> PyResult<(NodeId, NodeId)> {
        if let Ok(t) = item.cast::<PyTuple>() {
            if t.len() == 2 {
                return Ok((
                    t.get_borrowed_item(0)?.extract()?,
                    t.get_borrowed_item(1)?.extract()?,
                ));
            }
        }
        let values: Vec<NodeId> = item.extract().map_err(|_| {
            PyTypeError::new_err(format!(
                "edge {i}: expected a (from, to) pair of node ids, got {}",
                type_name(item)
            ))
        })?;
        match values[..] {
            [a, b] => Ok((a, b)),
            _ => Err(PyValueError::new_err(format!(
                "edge {i}: expected a (from, to) pair of length 2, got length {}",
                values.len()
            ))),
        }
    };
    if let Ok(list) = obj.cast::<PyList>() {
        let mut edges = Vec::with_capacity(list.len());
        for (i, item) in list.iter().enumerate() {
            edges.push(pair(i, &item)?);
        }
        return Ok(edges);
    }
    obj.try_iter()?
        .enumerate()
        .map(|(i, item)| pair(i, &item?))
        .collect()
}

/// Feeds `buf`'s strings to the core as &str; a string that is not valid UTF-8 is reported after.
fn strs<'a>(
    buf: &'a [Bound<'_, PyString>],
    err: &'a RefCell<Option<PyErr>>,
) -> impl Iterator<Item = &'a str> + 'a {
    buf.iter().map(move |s| {
        s.to_str().unwrap_or_else(|e| {
            err.borrow_mut().get_or_insert(e);
            ""
        })
    })
}

/// Adds nodes one by one from any iterables of keys, reporting bad ones.
#[derive(Default)]
struct NodeReader<'py> {
    node: usize,
    ins: Vec<Bound<'py, PyString>>,
    outs: Vec<Bound<'py, PyString>>,
}

impl<'py> NodeReader<'py> {
    fn add(
        &mut self,
        builder: &mut GraphBuilder,
        inputs: &Bound<'py, PyAny>,
        outputs: &Bound<'py, PyAny>,
    ) -> PyResult<()> {
        keys_into(inputs, self.node, "input", &mut self.ins)?;
        keys_into(outputs, self.node, "output", &mut self.outs)?;
        let err = RefCell::new(None);
        builder.add_node(strs(&self.ins, &err), strs(&self.outs, &err));
        self.node += 1;
        match err.into_inner() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// An exact list or tuple, read by index: no iterator objects, no reference counting.
/// Subclasses are left to the general path, as they may change how they iterate.
#[derive(Clone, Copy)]
struct Seq {
    ptr: *mut ffi::PyObject,
    list: bool,
}

impl Seq {
    fn exact(obj: &Bound<'_, PyAny>) -> Option<Seq> {
        // SAFETY: a `Bound` is a live object.
        unsafe { Seq::exact_ptr(obj.as_ptr()) }
    }

    /// # Safety
    /// `ptr` is a live object.
    unsafe fn exact_ptr(ptr: *mut ffi::PyObject) -> Option<Seq> {
        // SAFETY: type checks only read the live object's type (caller).
        let (list, tuple) = unsafe { (ffi::PyList_CheckExact(ptr), ffi::PyTuple_CheckExact(ptr)) };
        (list != 0 || tuple != 0).then_some(Seq {
            ptr,
            list: list != 0,
        })
    }

    /// The current length: a list may change size whenever Python code runs.
    fn len(self) -> usize {
        // SAFETY: `ptr` is a live object of the type `list` says (checked in `exact`; the
        // caller keeps it alive), and these macros only read its size field.
        let len = unsafe {
            if self.list {
                ffi::PyList_GET_SIZE(self.ptr)
            } else {
                ffi::PyTuple_GET_SIZE(self.ptr)
            }
        };
        len as usize
    }

    /// Item `i`, borrowed: valid until Python code runs (which could remove it).
    ///
    /// # Safety
    /// `i < self.len()`, and the object is alive.
    unsafe fn get(self, i: usize) -> *mut ffi::PyObject {
        // SAFETY: forwarded to the caller: `i` is in range of a live list / tuple.
        unsafe {
            if self.list {
                ffi::PyList_GET_ITEM(self.ptr, i as ffi::Py_ssize_t)
            } else {
                ffi::PyTuple_GET_ITEM(self.ptr, i as ffi::Py_ssize_t)
            }
        }
    }
}

/// Appends the UTF-8 text of every key in `entry` (an exact list or tuple of str) to
/// `names` and returns how many; `None` (with `names` unchanged) for anything else,
/// left for the general path to take or report.
///
/// # Safety
/// `entry` is a live object, and the returned strings are used only until Python code
/// next runs (which could free them).
unsafe fn push_keys(entry: *mut ffi::PyObject, names: &mut Vec<&str>) -> Option<u32> {
    // SAFETY: `entry` is live (caller).
    let seq = unsafe { Seq::exact_ptr(entry) }?;
    let start = names.len();
    let len = seq.len();
    for i in 0..len {
        // SAFETY: `i < len`, and no Python code runs in this loop to shrink the sequence.
        let item = unsafe { seq.get(i) };
        // SAFETY: a live object (an item of a live sequence); type checked before use.
        let text = unsafe {
            if ffi::PyUnicode_Check(item) == 0 {
                None
            } else if let Some(text) = compact_ascii(item) {
                Some(text)
            } else {
                let mut size: ffi::Py_ssize_t = 0;
                let data = ffi::PyUnicode_AsUTF8AndSize(item, &mut size);
                if data.is_null() {
                    // Not encodable (lone surrogates): the general path raises this again.
                    ffi::PyErr_Clear();
                    None
                } else {
                    // The str keeps its UTF-8 form (valid by construction) as long as it
                    // lives, which the caller guarantees for as long as `names` is used.
                    Some(std::str::from_utf8_unchecked(std::slice::from_raw_parts(
                        data.cast::<u8>(),
                        size as usize,
                    )))
                }
            }
        };
        match text {
            Some(text) => names.push(text),
            None => {
                names.truncate(start);
                return None;
            }
        }
    }
    u32::try_from(len).ok()
}

/// The text of a compact ASCII str (nearly every key), read in place rather than through a
/// call of `PyUnicode_AsUTF8AndSize`: 5-7 ms less on the 1M-node build (4M keys, ~150 ms).
///
/// # Safety
/// `s` is a live str; the text is used only while it lives.
#[cfg(not(any(Py_LIMITED_API, PyPy, GraalPy, Py_3_14)))]
#[inline]
unsafe fn compact_ascii<'a>(s: *mut ffi::PyObject) -> Option<&'a str> {
    // SAFETY: `s` is a live str (caller), whose layout these pyo3-ffi helpers follow for the
    // Python version built against. A compact ASCII str holds its `len` bytes, which are
    // ASCII and so UTF-8, right after its header.
    unsafe {
        (ffi::PyUnicode_IS_COMPACT_ASCII(s) != 0).then(|| {
            let len = ffi::PyUnicode_GET_LENGTH(s) as usize;
            let data = ffi::PyUnicode_DATA(s).cast::<u8>();
            std::str::from_utf8_unchecked(std::slice::from_raw_parts(data, len))
        })
    }
}

/// Other Pythons: always through `PyUnicode_AsUTF8AndSize`.
#[cfg(any(Py_LIMITED_API, PyPy, GraalPy, Py_3_14))]
#[inline]
unsafe fn compact_ascii<'a>(_: *mut ffi::PyObject) -> Option<&'a str> {
    None
}

/// Nodes read from Python between two calls into the builder.
const CHUNK: usize = 2048;

/// `add_node` for each entry of two exact lists / tuples: the keys of up to `CHUNK` nodes are
/// borrowed straight from the str objects and handed over in one call, without copying them or
/// touching reference counts. A node of any other shape goes through `NodeReader`.
fn add_nodes_fast(py: Python<'_>, builder: &mut GraphBuilder, ins: Seq, outs: Seq) -> PyResult<()> {
    let mut names: Vec<&str> = Vec::new();
    let mut counts: Vec<(u32, u32)> = Vec::with_capacity(CHUNK);
    let mut general = NodeReader::default();
    let mut node = 0;
    loop {
        // No Python code runs from here to `add_keyed_nodes`, so the borrowed names stay valid.
        let end = ins.len().min(outs.len());
        let mut odd = false;
        while node < end && counts.len() < CHUNK {
            let start = names.len();
            // SAFETY: `node < end` is in range of both live sequences; `names` is cleared
            // below, before any Python code runs.
            let row = unsafe {
                push_keys(ins.get(node), &mut names)
                    .and_then(|a| push_keys(outs.get(node), &mut names).map(|b| (a, b)))
            };
            match row {
                Some(row) => counts.push(row),
                None => {
                    names.truncate(start);
                    odd = true;
                    break;
                }
            }
            node += 1;
        }
        builder.add_keyed_nodes(&names, &counts);
        names.clear();
        counts.clear();
        if !odd {
            if node >= end {
                return Ok(());
            }
            continue;
        }
        general.node = node;
        // SAFETY: `node < end`, checked by the loop above, and nothing ran since.
        let (i, o) = unsafe {
            (
                Bound::from_borrowed_ptr(py, ins.get(node)),
                Bound::from_borrowed_ptr(py, outs.get(node)),
            )
        };
        general.add(builder, &i, &o)?;
        node += 1;
    }
}

/// The task graph as integers: node ids are positions, data keys are interned strings.
#[pyclass(module = "taskiq_dataflow._core", name = "Graph", frozen)]
struct PyGraph {
    inner: Arc<Graph>,
}

impl PyGraph {
    fn key(&self, key: &str) -> Option<u32> {
        self.inner.key_id(key)
    }

    fn node(&self, node: NodeId) -> PyResult<NodeId> {
        self.inner.check_node(node).map_err(graph_err)?;
        Ok(node)
    }

    fn nodes(&self, nodes: Vec<NodeId>) -> PyResult<Vec<NodeId>> {
        for &n in &nodes {
            self.node(n)?;
        }
        Ok(nodes)
    }

    fn key_names(&self, keys: &[u32]) -> Vec<String> {
        keys.iter()
            .map(|&k| self.inner.key_name(k).to_owned())
            .collect()
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
        let n = inputs.len()?;
        if outputs.len()? != n {
            return Err(PyValueError::new_err(format!(
                "inputs has {n} entries but outputs has {}: one entry per node in each",
                outputs.len()?
            )));
        }
        let mut builder = GraphBuilder::with_capacity(n, n);
        match (Seq::exact(inputs), Seq::exact(outputs)) {
            (Some(ins), Some(outs)) => add_nodes_fast(py, &mut builder, ins, outs)?,
            _ => {
                let mut node = NodeReader::default();
                for (i, o) in inputs.try_iter()?.zip(outputs.try_iter()?) {
                    node.add(&mut builder, &i?, &o?)?;
                }
            }
        }
        if let Some(edges) = edges {
            for (a, b) in edge_pairs(edges)? {
                builder.add_edge(a, b);
            }
        }
        for key in external.unwrap_or_default() {
            builder.declare_external(&key);
        }
        let graph = py.detach(|| builder.build());
        Ok(Self {
            inner: Arc::new(graph),
        })
    }

    /// A graph of `node_count` keyless nodes and the given edges.
    #[staticmethod]
    fn from_edges(py: Python<'_>, node_count: u32, edges: &Bound<'_, PyAny>) -> PyResult<Self> {
        let edges = edge_pairs(edges)?;
        let graph = py.detach(|| {
            let mut builder = GraphBuilder::with_capacity(node_count as usize, 0);
            builder.add_nodes(node_count);
            for (a, b) in edges {
                builder.add_edge(a, b);
            }
            builder.build()
        });
        Ok(Self {
            inner: Arc::new(graph),
        })
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
        problems
            .into_iter()
            .map(|p| match p {
                Problem::MissingInput { node, key } => {
                    ("missing_input", node, self.inner.key_name(key)).into_pyobject(py)
                }
                Problem::DuplicateOutput { key, first, second } => {
                    ("duplicate_output", self.inner.key_name(key), first, second).into_pyobject(py)
                }
                Problem::Cycle(c) => ("cycle", c.path).into_pyobject(py),
                Problem::BadEdge { from, to } => ("bad_edge", from, to).into_pyobject(py),
            })
            .collect()
    }

    /// Node ids in dependency order; among independent nodes the smaller id comes first.
    fn topological_order(&self, py: Python<'_>) -> PyResult<Vec<NodeId>> {
        let graph = self.inner.clone();
        py.detach(|| graph.topological_order())
            .map_err(|c| cycle_err(&c.path))
    }

    /// Node ids grouped by parallel level.
    fn levels<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let graph = self.inner.clone();
        let levels = py
            .detach(|| graph.levels())
            .map_err(|c| cycle_err(&c.path))?;
        PyList::new(py, levels.iter())
    }

    fn roots(&self) -> Vec<NodeId> {
        self.inner.roots()
    }

    fn leaves(&self) -> Vec<NodeId> {
        self.inner.leaves()
    }

    fn predecessors(&self, node: NodeId) -> PyResult<Vec<NodeId>> {
        Ok(self.inner.predecessors(self.node(node)?).to_vec())
    }

    fn successors(&self, node: NodeId) -> PyResult<Vec<NodeId>> {
        Ok(self.inner.successors(self.node(node)?).to_vec())
    }

    fn has_edge(&self, source: NodeId, target: NodeId) -> PyResult<bool> {
        Ok(self
            .inner
            .successors(self.node(source)?)
            .binary_search(&self.node(target)?)
            .is_ok())
    }

    /// Every edge as (from, to), by source then target.
    fn edges(&self) -> Vec<(NodeId, NodeId)> {
        self.inner.edges().collect()
    }

    /// Nodes with a path to any of `nodes`.
    fn ancestors(&self, py: Python<'_>, nodes: Vec<NodeId>) -> PyResult<Vec<NodeId>> {
        let nodes = self.nodes(nodes)?;
        Ok(py.detach(|| self.inner.ancestors(&nodes)))
    }

    /// Nodes reachable from any of `nodes`.
    fn descendants(&self, py: Python<'_>, nodes: Vec<NodeId>) -> PyResult<Vec<NodeId>> {
        let nodes = self.nodes(nodes)?;
        Ok(py.detach(|| self.inner.descendants(&nodes)))
    }

    /// The producers of `keys` and everything upstream of them. KeyError names an unknown key.
    fn required_for(&self, keys: Vec<String>) -> PyResult<Vec<NodeId>> {
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        self.inner.required_for(&keys).map_err(PyKeyError::new_err)
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
    fn ready_given(&self, completed: Vec<NodeId>) -> Vec<NodeId> {
        self.inner.ready_given(&completed)
    }

    /// The node producing `key`, or None.
    fn producer(&self, key: &str) -> Option<NodeId> {
        self.key(key).and_then(|k| self.inner.producer(k))
    }

    /// The nodes consuming `key`.
    fn consumers(&self, key: &str) -> Vec<NodeId> {
        self.key(key)
            .map(|k| self.inner.consumers(k).to_vec())
            .unwrap_or_default()
    }

    fn node_inputs(&self, node: NodeId) -> PyResult<Vec<String>> {
        Ok(self.key_names(self.inner.node_inputs(self.node(node)?)))
    }

    fn node_outputs(&self, node: NodeId) -> PyResult<Vec<String>> {
        Ok(self.key_names(self.inner.node_outputs(self.node(node)?)))
    }

    /// Consumed keys that no node produces, in order of first appearance.
    fn unproduced_inputs(&self) -> Vec<String> {
        let g = &self.inner;
        let keys: Vec<u32> = (0..g.key_count() as u32)
            .filter(|&k| g.producer(k).is_none() && !g.consumers(k).is_empty())
            .collect();
        self.key_names(&keys)
    }

    /// Keys some node produces, in the order of their producers.
    fn output_keys(&self) -> Vec<String> {
        let g = &self.inner;
        let keys: Vec<u32> = (0..g.node_count() as u32)
            .flat_map(|n| g.node_outputs(n).iter().map(move |&k| (n, k)))
            .filter(|&(n, k)| g.producer(k) == Some(n))
            .map(|(_, k)| k)
            .collect();
        self.key_names(&keys)
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

/// The ready-set scheduler: hands out nodes whose inputs are all available.
#[pyclass(module = "taskiq_dataflow._core", name = "Scheduler")]
struct PyScheduler {
    inner: Scheduler,
}

#[pymethods]
impl PyScheduler {
    /// `priorities`: higher first among ready nodes; `capacity`: most nodes running at once.
    #[new]
    #[pyo3(signature = (graph, priorities = None, capacity = None))]
    fn new(
        graph: &Bound<'_, PyGraph>,
        priorities: Option<Vec<f64>>,
        capacity: Option<usize>,
    ) -> PyResult<Self> {
        let inner =
            Scheduler::new(graph.get().inner.clone(), priorities, capacity).map_err(sched_err)?;
        Ok(Self { inner })
    }

    /// Before start(): nodes already done (restored from a store).
    fn mark_done(&mut self, nodes: Vec<NodeId>) -> PyResult<()> {
        self.inner.mark_done(&nodes).map_err(sched_err)
    }

    /// The nodes that can run now (they are counted as running).
    fn start(&mut self) -> PyResult<Vec<NodeId>> {
        self.inner.start().map_err(sched_err)
    }

    /// Mark a running node done; returns the nodes that can run now.
    fn complete(&mut self, node: NodeId) -> PyResult<Vec<NodeId>> {
        self.inner.complete(node).map_err(sched_err)
    }

    /// complete() for a batch; nothing changes if any node in it is not running.
    fn complete_many(&mut self, py: Python<'_>, nodes: Vec<NodeId>) -> PyResult<Vec<NodeId>> {
        let inner = &mut self.inner;
        py.detach(|| inner.complete_many(&nodes)).map_err(sched_err)
    }

    /// Mark a running node failed; returns the nodes skipped because they depend on it.
    fn fail(&mut self, node: NodeId) -> PyResult<Vec<NodeId>> {
        self.inner.fail(node).map_err(sched_err)
    }

    /// Queued ready nodes that fit in the capacity now.
    fn take_ready(&mut self) -> Vec<NodeId> {
        self.inner.take_ready()
    }

    #[pyo3(signature = (capacity = None))]
    fn set_capacity(&mut self, capacity: Option<usize>) {
        self.inner.set_capacity(capacity)
    }

    /// Put a running node back in the ready queue (its worker died before finishing it).
    fn requeue(&mut self, node: NodeId) -> PyResult<()> {
        self.inner.requeue(node).map_err(sched_err)
    }

    /// Skip everything not yet running; returns the skipped nodes.
    fn cancel(&mut self) -> Vec<NodeId> {
        self.inner.cancel()
    }

    fn state(&self, node: NodeId) -> PyResult<&'static str> {
        self.inner.state(node).map(state_name).map_err(sched_err)
    }

    /// {"pending", "ready", "running", "done", "failed", "skipped"} -> count.
    fn counts(&self) -> HashMap<&'static str, usize> {
        let c = self.inner.counts();
        HashMap::from([
            ("pending", c.pending),
            ("ready", c.ready),
            ("running", c.running),
            ("done", c.done),
            ("failed", c.failed),
            ("skipped", c.skipped),
        ])
    }

    #[getter]
    fn running(&self) -> usize {
        self.inner.counts().running
    }

    #[getter]
    fn finished(&self) -> bool {
        self.inner.is_finished()
    }
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyGraph>()?;
    m.add_class::<PyScheduler>()?;
    m.add("CycleError", m.py().get_type::<CycleError>())?;
    m.add("SchedulerError", m.py().get_type::<SchedulerError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
