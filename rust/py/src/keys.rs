//! Reading keys (str objects) out of Python sequences for the graph builder.
//!
//! The fast path borrows the UTF-8 text of exact lists and tuples of str in place, with no
//! copies and no reference counting, because every key of a build passes through it (4M keys
//! for a million nodes; see BENCHMARKS.md "Graph operations"). Anything else takes the
//! general path, which accepts any iterable of str and reports what it cannot read.

use std::cell::RefCell;

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple};

use crate::errors::type_name;

/// An exact list or tuple, read by index: no iterator objects, no reference counting.
/// Subclasses are left to the general path, as they may change how they iterate.
#[derive(Clone, Copy)]
pub(crate) struct Seq {
    ptr: *mut ffi::PyObject,
    list: bool,
}

impl Seq {
    pub(crate) fn exact(obj: &Bound<'_, PyAny>) -> Option<Seq> {
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
    #[cfg(not(Py_LIMITED_API))]
    pub(crate) fn len(self) -> usize {
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

    /// The stable ABI (abi3 wheels) has no size macros: the same read through a call.
    #[cfg(Py_LIMITED_API)]
    pub(crate) fn len(self) -> usize {
        // SAFETY: as above; on a list / tuple these calls cannot fail.
        let len = unsafe {
            if self.list {
                ffi::PyList_Size(self.ptr)
            } else {
                ffi::PyTuple_Size(self.ptr)
            }
        };
        len as usize
    }

    /// Item `i`, borrowed: valid until Python code runs (which could remove it).
    ///
    /// # Safety
    /// `i < self.len()`, and the object is alive.
    #[cfg(not(Py_LIMITED_API))]
    pub(crate) unsafe fn get(self, i: usize) -> *mut ffi::PyObject {
        // SAFETY: forwarded to the caller: `i` is in range of a live list / tuple.
        unsafe {
            if self.list {
                ffi::PyList_GET_ITEM(self.ptr, i as ffi::Py_ssize_t)
            } else {
                ffi::PyTuple_GET_ITEM(self.ptr, i as ffi::Py_ssize_t)
            }
        }
    }

    /// The stable ABI's item read is a call (borrowed, like the macros; it cannot fail for
    /// an index in range).
    ///
    /// # Safety
    /// `i < self.len()`, and the object is alive.
    #[cfg(Py_LIMITED_API)]
    pub(crate) unsafe fn get(self, i: usize) -> *mut ffi::PyObject {
        // SAFETY: forwarded to the caller: `i` is in range of a live list / tuple.
        unsafe {
            if self.list {
                ffi::PyList_GetItem(self.ptr, i as ffi::Py_ssize_t)
            } else {
                ffi::PyTuple_GetItem(self.ptr, i as ffi::Py_ssize_t)
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
pub(crate) unsafe fn push_keys(entry: *mut ffi::PyObject, names: &mut Vec<&str>) -> Option<u32> {
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

/// Collects one node's keys (a tuple, list or other iterable of str) into `buf`.
pub(crate) fn keys_into<'py>(
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

/// Feeds `buf`'s strings to the core as &str; a string that is not valid UTF-8 is reported after.
pub(crate) fn strs<'a>(
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
