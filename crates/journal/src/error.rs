//! Errors of the journal.

use std::io;
use std::path::PathBuf;

/// Result with the journal's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the journal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("write", "sync", "open", ...).
        op: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The disk is full. Nothing was acknowledged; free space and reopen the journal.
    #[error("disk full while {op} {path}: free space, then reopen the journal")]
    DiskFull {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A previous write or sync failed; the journal refuses appends until it is reopened (which
    /// runs recovery). The sync is never retried: after a failed fsync the page cache may no
    /// longer hold the data.
    #[error("journal poisoned by an earlier failure ({cause}): reopen it to recover")]
    Poisoned {
        /// The first failure.
        cause: String,
    },
    /// The journal's files were deleted or replaced while it was open for writing: what it writes
    /// can never be read back by anyone opening the folder, so it acknowledges nothing more (the
    /// journal is poisoned).
    #[error(
        "journal files were deleted or replaced under the writer ({detail}): {path}; nothing more is acknowledged: stop this writer and check the folder"
    )]
    Unlinked {
        /// The file or folder that is gone.
        path: PathBuf,
        /// What was found.
        detail: String,
    },
    /// Damage in the middle of the log (valid records follow it). Strict recovery refuses to open.
    #[error(
        "corruption in {path} at offset {offset}: {detail}; LSNs {first_lost_lsn}..={last_lost_lsn} affected \
         (a salvage recovery keeps every valid record and quarantines the damage)"
    )]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Byte offset of the damage.
        offset: u64,
        /// Lowest LSN affected.
        first_lost_lsn: u64,
        /// Highest LSN affected.
        last_lost_lsn: u64,
        /// What was wrong.
        detail: String,
    },
    /// The segment chain is broken: a segment is missing, substituted or out of order.
    #[error("broken segment chain at {path}: {detail}")]
    BrokenChain {
        /// The segment file where the chain breaks.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// A record larger than the configured maximum; nothing was written.
    #[error("record of {len} bytes exceeds the maximum record size of {max} bytes; nothing was written")]
    RecordTooLarge {
        /// The record's size.
        len: usize,
        /// The configured maximum.
        max: u32,
    },
    /// Another process holds the journal's writer lock.
    #[error("journal {path} is locked by another writer (only one writer per journal folder)")]
    Locked {
        /// The journal folder.
        path: PathBuf,
    },
    /// An erase (an in-place overwrite of records) holds the journal's erase lock and did not
    /// let go of it in time.
    #[error("{path} is held by an erase in progress; try again")]
    EraseBusy {
        /// The lock file.
        path: PathBuf,
    },
    /// Appending through a read-only handle.
    #[error("journal {path} is open read-only")]
    ReadOnly {
        /// The journal folder.
        path: PathBuf,
    },
    /// The journal has been closed.
    #[error("journal is closed")]
    Closed,
    /// Invalid options.
    #[error("invalid option: {0}")]
    InvalidOption(String),
}

impl Error {
    /// Wraps an I/O error, recognising a full disk.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        let path = path.into();
        if source.kind() == io::ErrorKind::StorageFull || source.raw_os_error() == Some(28) {
            Error::DiskFull { op, path, source }
        } else {
            Error::Io { op, path, source }
        }
    }

    /// Whether this error means the data on disk is damaged (as opposed to an I/O failure).
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corrupt { .. } | Error::BrokenChain { .. })
    }
}
