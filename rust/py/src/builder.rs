//! Building a core `GraphBuilder` from the Python arguments of `Graph(...)` and
//! `Graph.from_edges(...)`: key lists per node, edge pairs and external keys.

use std::cell::RefCell;

use dataflow_core::{Graph, GraphBuilder, NodeId};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString, PyTuple};

use crate::errors::type_name;
use crate::keys::{keys_into, push_keys, strs, Seq};

/// The graph of `Graph(inputs, outputs, edges, external)`: one node per entry of `inputs` and
/// `outputs`; built (the whole-graph part) with the GIL released.
pub(crate) fn graph_from_keys(
    py: Python<'_>,
    inputs: &Bound<'_, PyAny>,
    outputs: &Bound<'_, PyAny>,
    edges: Option<&Bound<'_, PyAny>>,
    external: Option<Vec<String>>,
) -> PyResult<Graph> {
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
    Ok(py.detach(|| builder.build()))
}

/// The graph of `Graph.from_edges(node_count, edges)`.
pub(crate) fn graph_from_edges(
    py: Python<'_>,
    node_count: u32,
    edges: &Bound<'_, PyAny>,
) -> PyResult<Graph> {
    let edges = edge_pairs(edges)?;
    Ok(py.detach(|| Graph::from_edges(node_count, &edges)))
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
