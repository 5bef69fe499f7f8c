//! Errors of index targets (the remote index seam in `target`), here so that the store's
//! [`Error`](super::Error) can wrap them without depending on the shipper.

use super::IndexError;

/// Why a target failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// The target cannot be reached, or the connection broke: retried with back-off.
    #[error("cannot reach {target}: {source}")]
    Unreachable {
        /// Where (no password).
        target: String,
        /// The client's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The target refused a statement (schema, constraint, permission): retried with back-off,
    /// and reported until it succeeds.
    #[error("{target} refused a batch: {source}")]
    Refused {
        /// Where (no password).
        target: String,
        /// The client's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The target's data is not what this version expects (a newer schema, an entry it cannot
    /// hold).
    #[error("{target}: {detail}")]
    Incompatible {
        /// Where (no password).
        target: String,
        /// What was wrong.
        detail: String,
    },
    /// The local SQLite index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
}
