//! `Scheduler`: the core ready-set scheduler behind a Python class.

use std::collections::HashMap;

use dataflow_core::{share_fitting, AddOptions, GroupId, NodeId, Scheduler};
use pyo3::prelude::*;

use crate::errors::{defer_err, grow_err, sched_err};
use crate::graph::PyGraph;
use crate::keys::push_keys;

/// The ready-set scheduler: hands out nodes whose inputs are all available.
#[pyclass(module = "taskiq_dataflow._core", name = "Scheduler")]
pub(crate) struct PyScheduler {
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

    /// Add a batch of nodes while the run goes on: node j lists counts[j][0] input keys
    /// then counts[j][1] output keys, in turn from `names`. `priorities`: one per node
    /// (default 0; a scheduler made without priorities then uses them, the others at 0);
    /// `group`: from new_group(), for every node of the batch. Returns (first new id,
    /// nodes that can run now, nodes skipped because they read a failed node's key).
    #[pyo3(signature = (names, counts, *, priorities = None, group = None))]
    fn add_nodes(
        &mut self,
        names: &Bound<'_, PyAny>,
        counts: Vec<(u32, u32)>,
        priorities: Option<Vec<f64>>,
        group: Option<GroupId>,
    ) -> PyResult<(NodeId, Vec<NodeId>, Vec<NodeId>)> {
        let options = AddOptions {
            priorities: priorities.as_deref(),
            group,
        };
        let mut borrowed: Vec<&str> = Vec::new();
        // SAFETY: `names` is alive for the call and no Python code runs while `borrowed`
        // is used (the GIL stays held: the batch is checked and applied in one go).
        let added = if unsafe { push_keys(names.as_ptr(), &mut borrowed) }.is_some() {
            self.inner.add_nodes_with(&borrowed, &counts, options)
        } else {
            let owned: Vec<String> = names.extract()?;
            let names: Vec<&str> = owned.iter().map(String::as_str).collect();
            self.inner.add_nodes_with(&names, &counts, options)
        }
        .map_err(grow_err)?;
        Ok((added.first, added.ready, added.skipped))
    }

    /// A group of added nodes with at most `capacity` running at once (within the
    /// scheduler's capacity); pass its id to add_nodes(group=).
    fn new_group(&mut self, capacity: usize) -> PyResult<GroupId> {
        self.inner.new_group(capacity).map_err(sched_err)
    }

    /// The waiting successors of the running `node` also wait for `to` (pending, ready
    /// or running): when `node` completes they run once `to` is done, and are skipped if
    /// it fails. A cycle raises GrowthError (kind "cycle", the path of node ids).
    fn defer(&mut self, node: NodeId, to: NodeId) -> PyResult<()> {
        self.inner.defer(node, to).map_err(defer_err)
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
        self.inner
            .state(node)
            .map(|state| state.as_str())
            .map_err(sched_err)
    }

    /// {"pending", "ready", "running", "done", "failed", "skipped"} -> count.
    fn counts(&self) -> HashMap<&'static str, usize> {
        self.inner
            .counts()
            .by_state()
            .into_iter()
            .map(|(state, count)| (state.as_str(), count))
            .collect()
    }

    /// Label nodes first.. (e.g. by task name) for counts_by_label(); no gap allowed.
    fn set_labels(&mut self, first: NodeId, labels: Vec<u32>) -> PyResult<()> {
        self.inner.set_labels(first, &labels).map_err(sched_err)
    }

    /// How many nodes are labelled so far.
    #[getter]
    fn labelled(&self) -> usize {
        self.inner.labelled()
    }

    /// Per label: (pending, ready, running, done, failed, skipped) of its nodes.
    fn counts_by_label(&self, py: Python<'_>) -> Vec<(usize, usize, usize, usize, usize, usize)> {
        let inner = &self.inner;
        py.detach(|| inner.counts_by_label())
            .into_iter()
            .map(|[a, b, c, d, e, f]| (a, b, c, d, e, f))
            .collect()
    }

    /// [(source label, target label, node-level edges)] between labelled nodes, sorted.
    fn edge_counts_by_label(&self, py: Python<'_>) -> Vec<(u32, u32, usize)> {
        let inner = &self.inner;
        py.detach(|| inner.edge_counts_by_label())
    }

    #[getter]
    fn running(&self) -> usize {
        self.inner.counts().running
    }

    /// Ready nodes not handed out (kept back by the capacity): `counts()["ready"]` without
    /// the dict.
    #[getter]
    fn ready(&self) -> usize {
        self.inner.counts().ready
    }

    #[getter]
    fn finished(&self) -> bool {
        self.inner.is_finished()
    }

    /// Most nodes running at once (None: no bound), as `set_capacity` left it.
    #[getter]
    fn capacity(&self) -> Option<usize> {
        self.inner.capacity()
    }
}

/// The shared slots' common case in one call (slots.py): when the runs' demand fits in
/// `total`, each scheduler gets its capacity from `share_fitting` and the indices of the runs
/// that now have room for ready nodes come back; None, and nothing set, when it does not fit.
#[pyfunction]
pub(crate) fn share_slots(
    mut schedulers: Vec<PyRefMut<'_, PyScheduler>>,
    total: usize,
    away: Vec<usize>,
) -> PyResult<Option<Vec<usize>>> {
    if away.len() != schedulers.len() {
        return Err(pyo3::exceptions::PyValueError::new_err(
            "share_slots: one seceded count per scheduler",
        ));
    }
    let counts: Vec<_> = schedulers.iter().map(|s| s.inner.counts()).collect();
    let running: Vec<usize> = counts.iter().map(|c| c.running).collect();
    let ready: Vec<usize> = counts.iter().map(|c| c.ready).collect();
    let Some(capacities) = share_fitting(&running, &away, &ready, total) else {
        return Ok(None);
    };
    let mut granted = Vec::new();
    for (i, (scheduler, capacity)) in schedulers.iter_mut().zip(capacities).enumerate() {
        scheduler.inner.set_capacity(Some(capacity));
        if capacity > running[i] && ready[i] > 0 {
            granted.push(i);
        }
    }
    Ok(Some(granted))
}
