//! Python bindings of the tidelog message store: the native module `tidelog._tidelog`.
//!
//! The Python package `tidelog` (in `python/tidelog`) re-exports these classes and adds the
//! exception hierarchy (`_errors.py`) and the asyncio wrapper (`aio.py`). Every call that waits on
//! the disk or SQLite releases the GIL. See `README.md`.
#![forbid(unsafe_code)]

mod bench;
mod cli;
mod errors;
mod store;
mod types;

use pyo3::prelude::*;

/// The native module `tidelog._tidelog`.
#[pymodule]
fn _tidelog(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<store::PyStore>()?;
    m.add_class::<store::PyExclusive>()?;
    m.add_class::<types::PyMessage>()?;
    m.add_class::<types::PySession>()?;
    m.add_class::<types::PySearchHit>()?;
    m.add_class::<types::PyAppended>()?;
    m.add_class::<types::PyStoreStatus>()?;
    m.add_class::<types::PyLaneStatus>()?;
    m.add_class::<types::PyIndexStatus>()?;
    m.add_class::<types::PyCompactorStatus>()?;
    m.add_class::<types::PyCounters>()?;
    m.add_class::<types::PyHistoryItem>()?;
    m.add_class::<types::PyImportReport>()?;
    m.add_function(wrap_pyfunction!(errors::_error_for_test, m)?)?;
    m.add_function(wrap_pyfunction!(bench::_bench_append, m)?)?;
    m.add_function(wrap_pyfunction!(cli::_cli_main, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
