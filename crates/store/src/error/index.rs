//! Errors of the SQLite index (here, below `index`, so that the store's [`Error`](super::Error)
//! can wrap them without depending on the index).

use std::io;
use std::path::PathBuf;

use rusqlite::ErrorCode;

/// Result with an [`IndexError`].
type Result<T, E = IndexError> = std::result::Result<T, E>;

/// An error from the index.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// SQLite reported an error.
    #[error("sqlite error while trying to {context}: {source}")]
    Sqlite {
        /// What we were doing.
        context: &'static str,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// A file operation failed.
    #[error("cannot {context} {}: {source}", path.display())]
    Io {
        /// What we were doing.
        context: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The file is not a usable index; delete it and rebuild from the journal.
    #[error("index {} is corrupt: {detail}; delete it to rebuild it from the journal", path.display())]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// The file was written by a newer version of this program.
    #[error(
        "index {} has schema version {found}, newer than the supported {supported}; upgrade, or delete it to rebuild from the journal",
        path.display()
    )]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// The version in the file.
        found: i64,
        /// The newest version this code knows.
        supported: i64,
    },
    /// The file was written by an older version: it is rebuilt from the journal.
    #[error("index {} has schema version {found}, older than {supported}: it is rebuilt from the journal", path.display())]
    OlderSchema {
        /// The database file.
        path: PathBuf,
        /// The version in the file.
        found: i64,
        /// The version this code writes.
        supported: i64,
    },
    /// SQLite refused to switch the database to WAL mode.
    #[error("index {} could not be put in WAL mode (journal_mode is {mode:?})", path.display())]
    NotWal {
        /// The database file.
        path: PathBuf,
        /// The journal mode SQLite reported.
        mode: String,
    },
    /// A journal position does not fit SQLite's signed 64-bit integers.
    #[error("lane {lane:?} position {lsn} is out of range")]
    PositionOutOfRange {
        /// The lane.
        lane: String,
        /// The position.
        lsn: u64,
    },
    /// The file has no index schema yet: it is being created by the compactor right now (or is
    /// an empty file). The compactor checks and repairs the file; readers read the journal.
    #[error("index {} has no schema yet (being created)", path.display())]
    NotInitialized {
        /// The database file.
        path: PathBuf,
    },
    /// [`Index::search`](crate::Index::search) was called with a query that is empty or only whitespace.
    #[error("empty search query")]
    EmptyQuery,
    /// [`Index::search`](crate::Index::search) was called with a query that is not valid FTS5
    /// ([`QuerySyntax::Fts5`](crate::QuerySyntax::Fts5)); the message is FTS5's own.
    #[error("invalid search query: {0}")]
    Query(#[from] crate::fts::FtsError),
}

impl IndexError {
    /// True when the error says the database file is damaged (`SQLITE_CORRUPT` including
    /// `SQLITE_CORRUPT_VTAB`, `SQLITE_NOTADB`, or [`IndexError::Corrupt`]): the cure is to delete
    /// the index and rebuild it from the journal.
    /// Whether this says a text the index keeps only in the journal could not be read.
    pub fn is_unreadable_text(&self) -> bool {
        matches!(self, IndexError::Sqlite { source, .. } if is_unreadable_text(source))
    }

    /// Whether this error means the index is damaged (or cannot be kept up to date: a text it
    /// keeps only in the journal cannot be read), so that it is rebuilt.
    pub fn is_corruption(&self) -> bool {
        match self {
            IndexError::Sqlite { source, .. } => is_corrupt_sqlite(source),
            IndexError::Corrupt { .. } => true,
            _ => false,
        }
    }
}

/// How every error of the index's SQL function `tidelog_body` starts: an index operation that
/// fails with it could not read a text kept in the journal (`is_corruption` treats it as
/// damage: the index is rebuilt from what the journal holds).
pub(crate) const UNREADABLE_TEXT: &str = "tidelog_body: ";

pub(crate) fn is_corrupt_sqlite(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)) || is_unreadable_text(e)
}

/// Whether `e` says a text the index keeps only in the journal could not be read (its record is
/// damaged, erased or gone): the index cannot remove or change that row in its full-text
/// indexes, which need the text; it is rebuilt from what the journal holds.
pub(crate) fn is_unreadable_text(e: &rusqlite::Error) -> bool {
    let unreadable = |m: &str| m.contains(UNREADABLE_TEXT);
    match e {
        rusqlite::Error::SqliteFailure(_, Some(m)) => unreadable(m),
        rusqlite::Error::UserFunctionError(b) => unreadable(&b.to_string()),
        _ => false,
    }
}

/// Attaches a context to a rusqlite result.
pub(crate) trait Ctx<T> {
    fn ctx(self, context: &'static str) -> Result<T>;
}

impl<T> Ctx<T> for rusqlite::Result<T> {
    fn ctx(self, context: &'static str) -> Result<T> {
        self.map_err(|source| IndexError::Sqlite { context, source })
    }
}
