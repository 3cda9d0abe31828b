//! `NodeIds` and `Levels`: the node ids a graph operation returns, kept in Rust.
//!
//! A whole-graph answer (a topological order, the levels, the ancestors of a node...) is a
//! Rust vector moved into one Python object, with no Python int made until an item is read:
//! returning the order of a million nodes costs one allocation instead of a million ints and
//! a list. Both classes are immutable sequences registered as `collections.abc.Sequence`, and
//! they compare equal to the lists they replace (`NodeIds` to `list[int]`, `Levels` to
//! `list[list[int]]`), so code written against lists keeps working. Slices share the data.

use std::sync::Arc;

use dataflow_core::{Levels, NodeId};
use pyo3::basic::CompareOp;
use pyo3::exceptions::{PyIndexError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::slice::PySliceIndices;
use pyo3::types::{PyBool, PyInt, PyList, PySlice, PyTuple};

use crate::errors::type_name;

/// How many items a repr shows before it elides the rest.
const REPR_ITEMS: usize = 10;

/// An item index of a sequence of `len` items, negative from the end: IndexError if outside.
fn item_index(index: &Bound<'_, PyAny>, len: usize, what: &str) -> PyResult<usize> {
    let i: isize = index.extract().map_err(|_| {
        if index.is_instance_of::<PyInt>() {
            PyIndexError::new_err(format!("{what} index out of range"))
        } else {
            PyTypeError::new_err(format!(
                "{what} indices must be integers or slices, not {}",
                type_name(index)
            ))
        }
    })?;
    let i = if i < 0 { i + len as isize } else { i };
    if 0 <= i && (i as usize) < len {
        Ok(i as usize)
    } else {
        Err(PyIndexError::new_err(format!("{what} index out of range")))
    }
}

/// The positions a slice selects, in order.
fn positions(s: &PySliceIndices) -> impl Iterator<Item = usize> + '_ {
    (0..s.slicelength).map(move |k| (s.start + k as isize * s.step) as usize)
}

/// `list.index`'s bounds: negative from the end, clamped to the sequence.
fn bound(i: isize, len: usize) -> usize {
    let i = if i < 0 { i + len as isize } else { i };
    i.clamp(0, len as isize) as usize
}

/// Some(id) for a Python int that is a node id, Some(None) for another int, None otherwise.
fn as_id(value: &Bound<'_, PyAny>) -> Option<Option<NodeId>> {
    value
        .is_instance_of::<PyInt>()
        .then(|| value.extract::<NodeId>().ok())
}

/// The ids of a list whose items are all node ids (ints in range), else None.
fn list_ids(list: &Bound<'_, PyList>) -> Option<Vec<NodeId>> {
    list.iter().map(|item| as_id(&item).flatten()).collect()
}

/// Ids from any iterable of ints (NodeIds itself without a Python int per item).
fn ids_from(obj: &Bound<'_, PyAny>) -> PyResult<Vec<NodeId>> {
    if let Ok(ids) = obj.cast::<NodeIds>() {
        return Ok(ids.get().as_slice().to_vec());
    }
    obj.try_iter()?
        .map(|item| {
            let item = item?;
            item.extract::<NodeId>().map_err(|_| {
                PyTypeError::new_err(format!(
                    "node ids are ints from 0 to 2**32 - 1, got {} {}",
                    type_name(&item),
                    item.repr().map(|r| r.to_string()).unwrap_or_default()
                ))
            })
        })
        .collect()
}

fn py_bool(py: Python<'_>, value: bool) -> Py<PyAny> {
    PyBool::new(py, value).to_owned().into_any().unbind()
}

fn py_int(py: Python<'_>, id: NodeId) -> Bound<'_, PyInt> {
    match id.into_pyobject(py) {
        Ok(int) => int,
        Err(never) => match never {},
    }
}

fn ids_list<'py>(py: Python<'py>, ids: &[NodeId]) -> PyResult<Bound<'py, PyList>> {
    PyList::new(py, ids)
}

/// `ids == other` the way a list of these ints compares to `other`.
fn ids_equal(py: Python<'_>, ids: &[NodeId], other: &Bound<'_, PyAny>) -> PyResult<bool> {
    if let Ok(o) = other.cast::<NodeIds>() {
        return Ok(ids == o.get().as_slice());
    }
    if let Ok(list) = other.cast::<PyList>() {
        if list.len() != ids.len() {
            return Ok(false);
        }
        if let Some(o) = list_ids(list) {
            return Ok(ids == o.as_slice());
        }
    }
    ids_list(py, ids)?.eq(other)
}

/// A sequence of node ids: what the graph's operations return (see the module doc).
#[pyclass(module = "taskiq_dataflow._core", name = "NodeIds", frozen, sequence)]
pub(crate) struct NodeIds {
    data: Arc<Vec<NodeId>>,
    start: usize,
    end: usize,
}

impl NodeIds {
    pub(crate) fn new(ids: Vec<NodeId>) -> Self {
        let end = ids.len();
        Self::view(Arc::new(ids), 0, end)
    }

    fn view(data: Arc<Vec<NodeId>>, start: usize, end: usize) -> Self {
        Self { data, start, end }
    }

    pub(crate) fn as_slice(&self) -> &[NodeId] {
        &self.data[self.start..self.end]
    }

    fn sliced(&self, s: &PySliceIndices) -> Self {
        if s.step == 1 || s.slicelength == 0 {
            let start = self.start
                + if s.slicelength == 0 {
                    0
                } else {
                    s.start as usize
                };
            return Self::view(self.data.clone(), start, start + s.slicelength);
        }
        let ids = self.as_slice();
        Self::new(positions(s).map(|i| ids[i]).collect())
    }

    /// Positions in [start, stop) holding an item equal to `value`, first to last.
    fn find<'a>(
        &'a self,
        py: Python<'a>,
        value: &'a Bound<'_, PyAny>,
        start: usize,
        stop: usize,
    ) -> impl Iterator<Item = PyResult<usize>> + 'a {
        let ids = &self.as_slice()[start..stop.max(start)];
        let id = as_id(value);
        ids.iter().enumerate().filter_map(move |(i, &item)| {
            let found = match id {
                Some(id) => Ok(id == Some(item)),
                // not an int: compare the way a list does (an int equal to 2.0 is found)
                None => PyAnyMethods::eq(py_int(py, item).as_any(), value),
            };
            match found {
                Ok(true) => Some(Ok(start + i)),
                Ok(false) => None,
                Err(e) => Some(Err(e)),
            }
        })
    }
}

#[pymethods]
impl NodeIds {
    /// NodeIds from any iterable of node ids (ints from 0 to 2**32 - 1).
    #[new]
    #[pyo3(signature = (ids = None))]
    fn py_new(ids: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        Ok(Self::new(match ids {
            Some(ids) => ids_from(ids)?,
            None => Vec::new(),
        }))
    }

    fn __len__(&self) -> usize {
        self.end - self.start
    }

    /// An id (negative indices count from the end) or, for a slice, NodeIds sharing the data.
    fn __getitem__<'py>(
        &self,
        py: Python<'py>,
        index: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if let Ok(s) = index.cast::<PySlice>() {
            let s = s.indices(self.__len__() as isize)?;
            return Ok(Bound::new(py, self.sliced(&s))?.into_any());
        }
        let i = item_index(index, self.__len__(), "NodeIds")?;
        Ok(self.as_slice()[i].into_pyobject(py)?.into_any())
    }

    fn __iter__(&self) -> NodeIdsIter {
        NodeIdsIter {
            data: self.data.clone(),
            front: self.start,
            back: self.end,
            reverse: false,
        }
    }

    fn __reversed__(&self) -> NodeIdsIter {
        NodeIdsIter {
            reverse: true,
            ..self.__iter__()
        }
    }

    /// A scan in Rust for an int; anything else is compared as a list would.
    fn __contains__(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<bool> {
        match as_id(value) {
            Some(id) => Ok(id.is_some_and(|id| self.as_slice().contains(&id))),
            None => self
                .find(py, value, 0, self.__len__())
                .next()
                .transpose()
                .map(|f| f.is_some()),
        }
    }

    /// The first position of `value` in [start, stop), as `list.index`; ValueError if none.
    #[pyo3(signature = (value, start = 0, stop = isize::MAX))]
    fn index(
        &self,
        py: Python<'_>,
        value: &Bound<'_, PyAny>,
        start: isize,
        stop: isize,
    ) -> PyResult<usize> {
        let len = self.__len__();
        match self
            .find(py, value, bound(start, len), bound(stop, len))
            .next()
        {
            Some(found) => found,
            None => Err(PyValueError::new_err(format!(
                "{} is not in NodeIds",
                value.repr()?
            ))),
        }
    }

    fn count(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<usize> {
        let mut n = 0;
        for found in self.find(py, value, 0, self.__len__()) {
            found?;
            n += 1;
        }
        Ok(n)
    }

    /// The ids as a list of ints.
    fn tolist<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        ids_list(py, self.as_slice())
    }

    /// Compares with NodeIds and lists as a list of these ints would; unhashable, like a list.
    fn __richcmp__<'py>(
        &self,
        py: Python<'py>,
        other: &Bound<'py, PyAny>,
        op: CompareOp,
    ) -> PyResult<Py<PyAny>> {
        let mine = self.as_slice();
        let ordering = |theirs: &[NodeId]| -> PyResult<Py<PyAny>> {
            Ok(py_bool(py, op.matches(mine.cmp(theirs))))
        };
        if let Ok(o) = other.cast::<NodeIds>() {
            return ordering(o.get().as_slice());
        }
        let Ok(list) = other.cast::<PyList>() else {
            return Ok(py.NotImplemented());
        };
        if matches!(op, CompareOp::Eq | CompareOp::Ne) && list.len() != mine.len() {
            return Ok(py_bool(py, matches!(op, CompareOp::Ne)));
        }
        match list_ids(list) {
            Some(theirs) => ordering(&theirs),
            None => Ok(self.tolist(py)?.rich_compare(other, op)?.unbind()),
        }
    }

    #[classattr]
    const __hash__: Option<Py<PyAny>> = None;

    /// NodeIds followed by `other` (NodeIds or a list / tuple of ids): NodeIds.
    fn __add__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let Some(theirs) = addend(other) else {
            return Ok(py.NotImplemented());
        };
        let mut ids = self.as_slice().to_vec();
        ids.extend_from_slice(&theirs?);
        Ok(Bound::new(py, Self::new(ids))?.into_any().unbind())
    }

    /// `other` (a list / tuple of ids) followed by NodeIds: NodeIds.
    fn __radd__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let Some(theirs) = addend(other) else {
            return Ok(py.NotImplemented());
        };
        let mut ids = theirs?;
        ids.extend_from_slice(self.as_slice());
        Ok(Bound::new(py, Self::new(ids))?.into_any().unbind())
    }

    fn __repr__(&self) -> String {
        let ids = self.as_slice();
        let shown: Vec<String> = ids.iter().take(REPR_ITEMS).map(u32::to_string).collect();
        if ids.len() <= REPR_ITEMS {
            format!("NodeIds([{}])", shown.join(", "))
        } else {
            format!("NodeIds([{}, ...], len={})", shown.join(", "), ids.len())
        }
    }

    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
        py: Python<'py>,
    ) -> PyResult<(Bound<'py, PyAny>, (Bound<'py, PyList>,))> {
        Ok((slf.get_type().into_any(), (slf.get().tolist(py)?,)))
    }
}

/// The ids of an operand of `+`: None (NotImplemented) unless NodeIds, a list or a tuple.
fn addend(other: &Bound<'_, PyAny>) -> Option<PyResult<Vec<NodeId>>> {
    let kind = other.cast::<NodeIds>().is_ok()
        || other.is_instance_of::<PyList>()
        || other.is_instance_of::<PyTuple>();
    kind.then(|| ids_from(other))
}

/// The iterator of NodeIds (and of its reverse).
#[pyclass(module = "taskiq_dataflow._core", name = "NodeIdsIterator")]
pub(crate) struct NodeIdsIter {
    data: Arc<Vec<NodeId>>,
    front: usize,
    back: usize,
    reverse: bool,
}

#[pymethods]
impl NodeIdsIter {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self) -> Option<NodeId> {
        if self.front == self.back {
            return None;
        }
        if self.reverse {
            self.back -= 1;
            Some(self.data[self.back])
        } else {
            self.front += 1;
            Some(self.data[self.front - 1])
        }
    }

    fn __length_hint__(&self) -> usize {
        self.back - self.front
    }
}

/// Node ids grouped by level: one flat id array and the offsets of the levels in it.
#[pyclass(module = "taskiq_dataflow._core", name = "Levels", frozen, sequence)]
pub(crate) struct PyLevels {
    nodes: Arc<Vec<NodeId>>,
    /// Level `i` is `nodes[offsets[i]..offsets[i + 1]]`; never empty (one more than levels).
    offsets: Vec<usize>,
}

impl PyLevels {
    pub(crate) fn new(levels: Levels) -> Self {
        let mut offsets = levels.offsets;
        if offsets.is_empty() {
            offsets.push(0);
        }
        Self {
            nodes: Arc::new(levels.nodes),
            offsets,
        }
    }

    fn from_lists(lists: impl IntoIterator<Item = Vec<NodeId>>) -> Self {
        let (mut nodes, mut offsets) = (Vec::new(), vec![0]);
        for level in lists {
            nodes.extend(level);
            offsets.push(nodes.len());
        }
        Self {
            nodes: Arc::new(nodes),
            offsets,
        }
    }

    fn level_slice(&self, i: usize) -> &[NodeId] {
        &self.nodes[self.offsets[i]..self.offsets[i + 1]]
    }

    fn level(&self, i: usize) -> NodeIds {
        NodeIds::view(self.nodes.clone(), self.offsets[i], self.offsets[i + 1])
    }

    fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    fn all(&self) -> &[NodeId] {
        &self.nodes[self.offsets[0]..self.offsets[self.len()]]
    }

    /// Positions of the levels equal to `value` (compared as a list of lists would).
    fn find(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<Vec<usize>> {
        let mut found = Vec::new();
        for i in 0..self.len() {
            if ids_equal(py, self.level_slice(i), value)? {
                found.push(i);
            }
        }
        Ok(found)
    }
}

#[pymethods]
impl PyLevels {
    /// Levels from an iterable of iterables of node ids.
    #[new]
    #[pyo3(signature = (levels = None))]
    fn py_new(levels: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let mut lists = Vec::new();
        if let Some(levels) = levels {
            for level in levels.try_iter()? {
                lists.push(ids_from(&level?)?);
            }
        }
        Ok(Self::from_lists(lists))
    }

    fn __len__(&self) -> usize {
        self.len()
    }

    /// A level as NodeIds (sharing the data) or, for a slice, Levels.
    fn __getitem__<'py>(
        &self,
        py: Python<'py>,
        index: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if let Ok(s) = index.cast::<PySlice>() {
            let s = s.indices(self.len() as isize)?;
            let sliced = if s.step == 1 && s.slicelength > 0 {
                let first = s.start as usize;
                Self {
                    nodes: self.nodes.clone(),
                    offsets: self.offsets[first..=first + s.slicelength].to_vec(),
                }
            } else {
                Self::from_lists(positions(&s).map(|i| self.level_slice(i).to_vec()))
            };
            return Ok(Bound::new(py, sliced)?.into_any());
        }
        let i = item_index(index, self.len(), "Levels")?;
        Ok(Bound::new(py, self.level(i))?.into_any())
    }

    fn __iter__(&self) -> LevelsIter {
        LevelsIter {
            nodes: self.nodes.clone(),
            offsets: self.offsets.clone(),
            front: 0,
            back: self.len(),
            reverse: false,
        }
    }

    fn __reversed__(&self) -> LevelsIter {
        LevelsIter {
            reverse: true,
            ..self.__iter__()
        }
    }

    fn __contains__(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<bool> {
        Ok(!self.find(py, value)?.is_empty())
    }

    /// The first position of `value` in [start, stop), as `list.index`; ValueError if none.
    #[pyo3(signature = (value, start = 0, stop = isize::MAX))]
    fn index(
        &self,
        py: Python<'_>,
        value: &Bound<'_, PyAny>,
        start: isize,
        stop: isize,
    ) -> PyResult<usize> {
        let (start, stop) = (bound(start, self.len()), bound(stop, self.len()));
        self.find(py, value)?
            .into_iter()
            .find(|&i| start <= i && i < stop)
            .ok_or_else(|| match value.repr() {
                Ok(r) => PyValueError::new_err(format!("{r} is not in Levels")),
                Err(e) => e,
            })
    }

    fn count(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<usize> {
        Ok(self.find(py, value)?.len())
    }

    /// Every node of every level, level by level (one NodeIds, no copy).
    #[getter]
    fn ids(&self) -> NodeIds {
        NodeIds::view(
            self.nodes.clone(),
            self.offsets[0],
            self.offsets[self.len()],
        )
    }

    /// Where each level starts in `ids`, and its end: len(levels) + 1 positions from 0.
    #[getter]
    fn offsets(&self) -> Vec<usize> {
        let first = self.offsets[0];
        self.offsets.iter().map(|&o| o - first).collect()
    }

    /// Per node id below `node_count`, the position of its level (-1 for a node in none).
    fn level_by_node(&self, node_count: usize) -> PyResult<Vec<i64>> {
        let mut by_node = vec![-1i64; node_count];
        for i in 0..self.len() {
            for &node in self.level_slice(i) {
                let slot = by_node.get_mut(node as usize).ok_or_else(|| {
                    PyValueError::new_err(format!(
                        "node {node} is out of range for node_count {node_count}"
                    ))
                })?;
                *slot = i as i64;
            }
        }
        Ok(by_node)
    }

    /// The levels as a list of lists of ints.
    fn tolist<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let levels = (0..self.len())
            .map(|i| ids_list(py, self.level_slice(i)))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, levels)
    }

    /// Equal to Levels with the same levels, and to a list of lists (or NodeIds) as a list of
    /// lists of these ints would be; unhashable, like a list.
    fn __richcmp__<'py>(
        &self,
        py: Python<'py>,
        other: &Bound<'py, PyAny>,
        op: CompareOp,
    ) -> PyResult<Py<PyAny>> {
        let equal = match op {
            CompareOp::Eq | CompareOp::Ne => self.equals(py, other)?,
            _ => None,
        };
        Ok(match equal {
            Some(equal) => py_bool(py, equal == matches!(op, CompareOp::Eq)),
            None => py.NotImplemented(),
        })
    }

    #[classattr]
    const __hash__: Option<Py<PyAny>> = None;

    fn __repr__(&self) -> String {
        let shown: Vec<String> = (0..self.len().min(REPR_ITEMS))
            .map(|i| NodeIds::view(self.nodes.clone(), self.offsets[i], self.offsets[i + 1]))
            .map(|level| {
                level.__repr__()["NodeIds(".len()..]
                    .trim_end_matches(')')
                    .to_owned()
            })
            .collect();
        let more = if self.len() > REPR_ITEMS { ", ..." } else { "" };
        format!(
            "Levels([{}{more}], levels={}, nodes={})",
            shown.join(", "),
            self.len(),
            self.all().len()
        )
    }

    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
        py: Python<'py>,
    ) -> PyResult<(Bound<'py, PyAny>, (Bound<'py, PyList>,))> {
        Ok((slf.get_type().into_any(), (slf.get().tolist(py)?,)))
    }
}

impl PyLevels {
    /// Some(equal) against Levels or a list; None (NotImplemented) against anything else.
    fn equals(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<Option<bool>> {
        if let Ok(o) = other.cast::<PyLevels>() {
            let o = o.get();
            let same = self.len() == o.len()
                && (0..self.len()).all(|i| self.level_slice(i) == o.level_slice(i));
            return Ok(Some(same));
        }
        let Ok(list) = other.cast::<PyList>() else {
            return Ok(None);
        };
        if list.len() != self.len() {
            return Ok(Some(false));
        }
        for (i, item) in list.iter().enumerate() {
            if !ids_equal(py, self.level_slice(i), &item)? {
                return Ok(Some(false));
            }
        }
        Ok(Some(true))
    }
}

/// The iterator of Levels (and of its reverse): each level as NodeIds.
#[pyclass(module = "taskiq_dataflow._core", name = "LevelsIterator")]
pub(crate) struct LevelsIter {
    nodes: Arc<Vec<NodeId>>,
    offsets: Vec<usize>,
    front: usize,
    back: usize,
    reverse: bool,
}

#[pymethods]
impl LevelsIter {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self) -> Option<NodeIds> {
        if self.front == self.back {
            return None;
        }
        let i = if self.reverse {
            self.back -= 1;
            self.back
        } else {
            self.front += 1;
            self.front - 1
        };
        Some(NodeIds::view(
            self.nodes.clone(),
            self.offsets[i],
            self.offsets[i + 1],
        ))
    }

    fn __length_hint__(&self) -> usize {
        self.back - self.front
    }
}
