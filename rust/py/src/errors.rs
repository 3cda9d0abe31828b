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
    "A batch of added nodes was refused; args are (message, kind, batch indices, key or None, \
     existing producer id or None)."
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
