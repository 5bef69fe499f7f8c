//! Errors of the message store.

use std::path::PathBuf;

pub(crate) mod index;
mod target;

pub use index::IndexError;
pub use target::TargetError;

/// Result with the store's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The journal failed (I/O, corruption, poisoning, full disk...).
    #[error(transparent)]
    Journal(#[from] tidelog_journal::Error),
    /// The SQLite index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// A remote index (PostgreSQL) failed.
    #[error(transparent)]
    Remote(#[from] TargetError),
    /// A message or session was refused; nothing was written.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// A search query was empty or only whitespace.
    #[error("empty search query")]
    EmptyQuery,
    /// A search query is not valid FTS5 ([`QuerySyntax::Fts5`](crate::QuerySyntax::Fts5));
    /// the message is FTS5's own.
    #[error("invalid search query: {0}")]
    Query(#[from] crate::fts::FtsError),
    /// An operation that needs the compactor lock found it held by a running process.
    #[error("{} is held by a running process; stop the writers, then try again", lock.display())]
    CompactorBusy {
        /// The lock file.
        lock: PathBuf,
    },
    /// A destination folder (of a backup) already holds files.
    #[error("folder {} is not empty; choose a new folder", path.display())]
    DestinationNotEmpty {
        /// The folder.
        path: PathBuf,
    },
    /// A file operation outside the journal failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A journal record did not decode (written by a newer version, or a bug).
    #[error("record {lane}/{lsn} does not decode: {detail}")]
    Decode {
        /// The lane.
        lane: String,
        /// Its LSN.
        lsn: u64,
        /// What was wrong.
        detail: String,
    },
    /// The store was opened read-only.
    #[error("store {path} is open read-only")]
    ReadOnly {
        /// The store folder.
        path: PathBuf,
    },
    /// The folder holds no store.
    #[error("no store at {path} (no lanes folder with a readable lane); check the folder")]
    NotAStore {
        /// The folder.
        path: PathBuf,
    },
    /// Every lane number the integer ids can hold is in use.
    #[error("store {} has {max} lanes already, the most integer ids can tell apart; close idle writers", dir.display())]
    TooManyLanes {
        /// The store folder.
        dir: PathBuf,
        /// The most lanes.
        max: u64,
    },
    /// A session title is already used by another session.
    #[error("title {title:?} is already used by session {other}")]
    TitleTaken {
        /// The title.
        title: String,
        /// The session that has it.
        other: String,
    },
    /// The message or session an operation names does not exist.
    #[error("{what} {id} not found")]
    NotFound {
        /// `message` or `session`.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// The store has been closed.
    #[error("store is closed")]
    Closed,
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io { op, path: path.into(), source }
    }
}
