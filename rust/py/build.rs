//! Sets pyo3's `Py_3_*` / `PyPy` cfgs for this crate, so that code reading CPython's string
//! layout directly can be limited to the versions whose layout it knows.
fn main() {
    pyo3_build_config::use_pyo3_cfgs();
}
