//! The module's exception types and the mapping of core errors onto Python ones.

use dataflow_core::{Cycle, GraphError, GrowError, SchedError};
use pyo3::create_exception;
use pyo3::exceptions::{PyIndexError, PyValueError};
use pyo3::prelude::*;

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

create_exception!(
    _core,
    GrowthError,
    PyValueError,
    "A batch of added nodes, or a defer, was refused; args are (message, kind, batch indices \
     (node ids for a defer's cycle), key or None, existing producer id or None)."
);

/// Batch indices and keys travel as arguments so that callers can name the tasks.
pub(crate) fn grow_err(err: GrowError) -> PyErr {
    let message = err.to_string();
    let (kind, nodes, key, producer) = match err {
        GrowError::Counts { .. } => ("counts", vec![], None, None),
        GrowError::OutputExists {
            node,
            key,
            producer,
        } => ("output_exists", vec![node], Some(key), producer),
        GrowError::DuplicateOutput { key, first, second } => {
            ("duplicate_output", vec![first, second], Some(key), None)
        }
        GrowError::UnknownInput { node, key } => ("unknown_input", vec![node], Some(key), None),
        GrowError::Cycle { path } => ("cycle", path, None, None),
        GrowError::TooMany => ("too_many", vec![], None, None),
        GrowError::PrioritiesLength { .. } => ("priorities", vec![], None, None),
        GrowError::UnknownGroup(_) => ("unknown_group", vec![], None, None),
    };
    GrowthError::new_err((message, kind, nodes, key, producer))
}

/// The path travels as an argument so that callers can name the tasks on it.
pub(crate) fn cycle_err(cycle: &Cycle) -> PyErr {
    CycleError::new_err((cycle.to_string(), cycle.path.clone()))
}

pub(crate) fn graph_err(err: GraphError) -> PyErr {
    match err {
        GraphError::Cycle(c) => cycle_err(&c),
        GraphError::NodeOutOfRange(n) => PyIndexError::new_err(format!("no node with id {n}")),
        other => PyValueError::new_err(other.to_string()),
    }
}

/// A defer's cycle is a refused growth, like a cycle among added nodes; its path holds
/// node ids.
pub(crate) fn defer_err(err: SchedError) -> PyErr {
    match err {
        SchedError::Cycle(c) => {
            let message = format!("defer would close a {c}");
            let path: Vec<usize> = c.path.iter().map(|&v| v as usize).collect();
            GrowthError::new_err((message, "cycle", path, None::<String>, None::<u32>))
        }
        other => sched_err(other),
    }
}

pub(crate) fn sched_err(err: SchedError) -> PyErr {
    match &err {
        SchedError::Cycle(c) => cycle_err(c),
        _ => SchedulerError::new_err((err.to_string(), err.node())),
    }
}

/// The name of `obj`'s type, for messages about a value of the wrong type.
pub(crate) fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default()
}
