//! From Rust errors to the Python exception hierarchy.
//!
//! The exception classes are defined in Python (`tidelog/_errors.py`): `InvalidInputError` has
//! two bases (`TidelogError` and `ValueError`) and `StorageError` is an `OSError`, which
//! `create_exception!` cannot express. This module imports them once and maps every Rust error
//! variant to one of them with a `match`, setting the details (`path`, `offset`, `lsn`, ...) as
//! attributes.

use std::path::Path;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyString, PyType};
use tidelog::{Error, ImportError};
use tidelog_journal::Error as JournalError;

/// The Python module that defines the exception classes.
const ERRORS_MODULE: &str = "tidelog._errors";

/// One of the exception classes of `tidelog._errors`, imported once per class.
fn class<'py>(py: Python<'py>, name: &'static str) -> PyResult<&'py Bound<'py, PyType>> {
    macro_rules! cached {
        ($($n:literal),* $(,)?) => {
            match name {
                $($n => {
                    static CELL: PyOnceLock<Py<PyType>> = PyOnceLock::new();
                    CELL.import(py, ERRORS_MODULE, $n)
                })*
                _ => Err(pyo3::exceptions::PySystemError::new_err(format!("unknown tidelog exception {name}"))),
            }
        };
    }
    cached!(
        "TidelogError",
        "InvalidInputError",
        "ClosedError",
        "ReadOnlyError",
        "NotAStoreError",
        "LockedError",
        "PoisonedError",
        "CorruptError",
        "StorageError",
        "DiskFullError",
        "IndexFailure",
        "TitleTakenError",
        "NotFoundError",
        "TooManyLanesError",
        "EmptyQueryError",
        "CompactorBusyError",
        "DestinationNotEmptyError",
        "HermesImportError",
    )
}

/// Attributes set on a new exception.
type Attrs<'py> = Vec<(&'static str, Bound<'py, PyAny>)>;

fn path_attr<'py>(py: Python<'py>, p: &Path) -> PyResult<Bound<'py, PyAny>> {
    Ok(p.to_string_lossy().into_owned().into_pyobject(py)?.into_any())
}

/// Builds `cls(*args)` with attributes; any failure while doing so becomes the raised error.
fn build<'py>(py: Python<'py>, cls: &'static str, args: impl pyo3::call::PyCallArgs<'py>, attrs: Attrs<'py>) -> PyErr {
    let made = class(py, cls).and_then(|c| {
        let exc = c.call1(args)?;
        for (k, v) in attrs {
            exc.setattr(k, v)?;
        }
        Ok(exc)
    });
    match made {
        Ok(exc) => PyErr::from_value(exc),
        Err(e) => e,
    }
}

/// An exception of class `cls` with `message` and attributes.
fn simple<'py>(py: Python<'py>, cls: &'static str, message: String, attrs: Attrs<'py>) -> PyErr {
    build(py, cls, (message,), attrs)
}

/// A `StorageError` / `DiskFullError` (both `OSError`s): `errno`, `strerror` (our message) and
/// `filename` as `OSError` sets them, plus `op`.
fn os_error(
    py: Python<'_>,
    cls: &'static str,
    message: String,
    op: &str,
    path: &Path,
    source: &std::io::Error,
) -> PyErr {
    let filename = path.to_string_lossy().into_owned();
    let op = PyString::new(py, op).into_any();
    match source.raw_os_error() {
        Some(errno) => build(py, cls, (errno, message, filename), vec![("op", op)]),
        None => build(py, cls, (message,), vec![("op", op), ("filename", PyString::new(py, &filename).into_any())]),
    }
}

/// Converts a store error to its Python exception.
pub(crate) fn to_py(py: Python<'_>, err: Error) -> PyErr {
    let message = err.to_string();
    let res: PyResult<PyErr> = (|| {
        Ok(match &err {
            Error::Journal(j) => return Ok(journal_to_py(py, j, message)),
            Error::Index(ix) => simple(
                py,
                "IndexFailure",
                message,
                vec![("corrupt", ix.is_corruption().into_pyobject(py)?.to_owned().into_any())],
            ),
            Error::Invalid(_) => simple(py, "InvalidInputError", message, vec![]),
            Error::Io { op, path, source } => os_error(py, "StorageError", message, op, path, source),
            Error::Decode { lane, lsn, detail } => simple(
                py,
                "CorruptError",
                message,
                vec![
                    ("lane", lane.into_pyobject(py)?.into_any()),
                    ("lsn", lsn.into_pyobject(py)?.into_any()),
                    ("detail", detail.into_pyobject(py)?.into_any()),
                ],
            ),
            Error::ReadOnly { path } => simple(py, "ReadOnlyError", message, vec![("path", path_attr(py, path)?)]),
            Error::NotAStore { path } => simple(py, "NotAStoreError", message, vec![("path", path_attr(py, path)?)]),
            Error::Closed => simple(py, "ClosedError", message, vec![]),
            Error::TitleTaken { title, other } => simple(
                py,
                "TitleTakenError",
                message,
                vec![("title", title.into_pyobject(py)?.into_any()), ("other", other.into_pyobject(py)?.into_any())],
            ),
            Error::NotFound { what, id } => simple(
                py,
                "NotFoundError",
                message,
                vec![("what", what.into_pyobject(py)?.into_any()), ("id", id.into_pyobject(py)?.into_any())],
            ),
            Error::TooManyLanes { dir, max } => simple(
                py,
                "TooManyLanesError",
                message,
                vec![("path", path_attr(py, dir)?), ("max", max.into_pyobject(py)?.into_any())],
            ),
            Error::EmptyQuery => simple(py, "EmptyQueryError", message, vec![]),
            Error::Query(_) => simple(py, "InvalidInputError", message, vec![]),
            Error::CompactorBusy { lock } => {
                simple(py, "CompactorBusyError", message, vec![("path", path_attr(py, lock)?)])
            }
            Error::DestinationNotEmpty { path } => {
                simple(py, "DestinationNotEmptyError", message, vec![("path", path_attr(py, path)?)])
            }
            // `Error` is non-exhaustive: a variant added later is still a TidelogError.
            _ => simple(py, "TidelogError", message, vec![]),
        })
    })();
    res.unwrap_or_else(|e| e)
}

fn journal_to_py(py: Python<'_>, err: &JournalError, message: String) -> PyErr {
    let res: PyResult<PyErr> = (|| {
        Ok(match err {
            JournalError::Io { op, path, source } => os_error(py, "StorageError", message, op, path, source),
            JournalError::DiskFull { op, path, source } => os_error(py, "DiskFullError", message, op, path, source),
            JournalError::Poisoned { cause } => {
                simple(py, "PoisonedError", message, vec![("cause", cause.into_pyobject(py)?.into_any())])
            }
            JournalError::Corrupt { path, offset, first_lost_lsn, last_lost_lsn, detail } => simple(
                py,
                "CorruptError",
                message,
                vec![
                    ("path", path_attr(py, path)?),
                    ("offset", offset.into_pyobject(py)?.into_any()),
                    ("lsn", first_lost_lsn.into_pyobject(py)?.into_any()),
                    ("last_lsn", last_lost_lsn.into_pyobject(py)?.into_any()),
                    ("detail", detail.into_pyobject(py)?.into_any()),
                ],
            ),
            JournalError::BrokenChain { path, detail } => simple(
                py,
                "CorruptError",
                message,
                vec![("path", path_attr(py, path)?), ("detail", detail.into_pyobject(py)?.into_any())],
            ),
            // Nothing was written: the caller's input is at fault.
            JournalError::RecordTooLarge { .. } | JournalError::InvalidOption(_) => {
                simple(py, "InvalidInputError", message, vec![])
            }
            JournalError::Locked { path } => simple(py, "LockedError", message, vec![("path", path_attr(py, path)?)]),
            JournalError::ReadOnly { path } => {
                simple(py, "ReadOnlyError", message, vec![("path", path_attr(py, path)?)])
            }
            JournalError::Closed => simple(py, "ClosedError", message, vec![]),
            _ => simple(py, "TidelogError", message, vec![]),
        })
    })();
    res.unwrap_or_else(|e| e)
}

/// Converts an import error: the store's own error when the store refused an entry, else a
/// `HermesImportError` with the database `path`.
pub(crate) fn import_to_py(py: Python<'_>, err: ImportError) -> PyErr {
    let message = err.to_string();
    let path = match err {
        ImportError::Sink { source, .. } => {
            return match source.downcast::<Error>() {
                Ok(e) => to_py(py, *e),
                Err(other) => simple(py, "TidelogError", other.to_string(), vec![]),
            };
        }
        ImportError::Open { path, .. }
        | ImportError::NotHermes { path, .. }
        | ImportError::Io { path, .. }
        | ImportError::Unreadable { path, .. } => Some(path),
        _ => None,
    };
    let attrs = match path.as_deref().map(|p| path_attr(py, p)).transpose() {
        Ok(Some(p)) => vec![("path", p)],
        Ok(None) => vec![],
        Err(e) => return e,
    };
    simple(py, "HermesImportError", message, attrs)
}

/// `InvalidInputError(message)`, for arguments refused before reaching the store.
pub(crate) fn invalid(py: Python<'_>, message: impl Into<String>) -> PyErr {
    simple(py, "InvalidInputError", message.into(), vec![])
}

/// `ClosedError`, for calls on a closed `Store`.
pub(crate) fn closed(py: Python<'_>) -> PyErr {
    to_py(py, Error::Closed)
}

/// Raises the exception a representative Rust error of `kind` maps to: lets the Python tests
/// check the mapping (classes, attributes) for errors a test cannot provoke, such as a full disk.
#[pyfunction]
pub(crate) fn _error_for_test(py: Python<'_>, kind: &str) -> PyErr {
    let io = |code: i32| std::io::Error::from_raw_os_error(code);
    let err: Error = match kind {
        "corrupt" => JournalError::Corrupt {
            path: "/s/lanes/lane-0001/00000001.seg".into(),
            offset: 4096,
            first_lost_lsn: 7,
            last_lost_lsn: 9,
            detail: "checksum mismatch".into(),
        }
        .into(),
        "broken_chain" => JournalError::BrokenChain { path: "/s/x.seg".into(), detail: "missing".into() }.into(),
        "disk_full" => JournalError::DiskFull { op: "write", path: "/s/x.seg".into(), source: io(28) }.into(),
        "io" => JournalError::Io { op: "sync", path: "/s/x.seg".into(), source: io(5) }.into(),
        "store_io" => Error::Io { op: "create folder", path: "/s".into(), source: io(13) },
        "poisoned" => JournalError::Poisoned { cause: "sync failed".into() }.into(),
        "locked" => JournalError::Locked { path: "/s/lanes/lane-0001".into() }.into(),
        "record_too_large" => JournalError::RecordTooLarge { len: 10, max: 5 }.into(),
        "journal_read_only" => JournalError::ReadOnly { path: "/s".into() }.into(),
        "journal_closed" => JournalError::Closed.into(),
        "decode" => Error::Decode { lane: "lane-0001".into(), lsn: 3, detail: "bad".into() },
        "not_a_store" => Error::NotAStore { path: "/s".into() },
        "read_only" => Error::ReadOnly { path: "/s".into() },
        "invalid" => Error::Invalid("role is empty".into()),
        "closed" => Error::Closed,
        "title_taken" => Error::TitleTaken { title: "Boat".into(), other: "s2".into() },
        "not_found" => Error::NotFound { what: "message", id: "42".into() },
        "too_many_lanes" => Error::TooManyLanes { dir: "/s".into(), max: 4096 },
        "empty_query" => Error::EmptyQuery,
        "compactor_busy" => Error::CompactorBusy { lock: "/s/compactor.lock".into() },
        "destination_not_empty" => Error::DestinationNotEmpty { path: "/b".into() },
        other => return invalid(py, format!("unknown error kind {other:?}")),
    };
    to_py(py, err)
}
