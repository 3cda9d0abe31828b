//! pyo3 bindings of `dataflow_core`: the `taskiq_dataflow._core` module.
//!
//! Thin by design: each method converts its arguments, makes one call into the core (with the
//! GIL released for whole-graph work) and converts the result. Graph logic lives in the core
//! crate, where cargo tests check it; these modules only move values across the boundary:
//!
//! - `keys`: reading str keys out of Python sequences (the in-place fast path of the build);
//! - `builder`: the arguments of `Graph(...)` and `Graph.from_edges(...)` into a core graph;
//! - `graph`, `scheduler`: the two classes;
//! - `ids`: `NodeIds` and `Levels`, the sequences of node ids the graph's operations return;
//! - `errors`: the exception types and the mapping of core errors onto them.

mod builder;
mod errors;
mod graph;
mod ids;
mod keys;
mod scheduler;

use pyo3::prelude::*;
use pyo3::types::PySequence;

use crate::errors::{CycleError, GrowthError, SchedulerError};
use crate::graph::PyGraph;
use crate::ids::{NodeIds, PyLevels};
use crate::scheduler::{share_slots, PyScheduler};

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyGraph>()?;
    m.add_class::<PyScheduler>()?;
    m.add_class::<NodeIds>()?;
    m.add_class::<PyLevels>()?;
    m.add_function(wrap_pyfunction!(share_slots, m)?)?;
    // isinstance(x, Sequence) holds, and pyo3 reads them as Vec arguments (Scheduler.mark_done...)
    PySequence::register::<NodeIds>(m.py())?;
    PySequence::register::<PyLevels>(m.py())?;
    m.add("CycleError", m.py().get_type::<CycleError>())?;
    m.add("SchedulerError", m.py().get_type::<SchedulerError>())?;
    m.add("GrowthError", m.py().get_type::<GrowthError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
