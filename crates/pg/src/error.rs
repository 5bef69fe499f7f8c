//! Errors of the PostgreSQL target.

use tidelog::TargetError;

/// What can go wrong with PostgreSQL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgError {
    /// The connection string does not parse.
    #[error("bad PostgreSQL URL: {detail}")]
    BadUrl {
        /// What was wrong.
        detail: String,
    },
    /// Connecting failed.
    #[error("cannot connect to {target}: {source}")]
    Connect {
        /// Where (no password).
        target: String,
        /// The client's error.
        #[source]
        source: postgres::Error,
    },
    /// A statement failed (or the connection broke during it).
    #[error("{target}: {what}: {source}")]
    Query {
        /// Where (no password).
        target: String,
        /// What was being done.
        what: &'static str,
        /// The client's error.
        #[source]
        source: postgres::Error,
    },
    /// The database holds a newer tidelog schema than this version knows.
    #[error("{target} holds tidelog schema version {found}; this version knows up to {known}: upgrade tidelog")]
    NewerSchema {
        /// Where (no password).
        target: String,
        /// The version found.
        found: i64,
        /// The newest this code knows.
        known: i64,
    },
    /// A search query was empty.
    #[error("empty search query")]
    EmptyQuery,
}

impl PgError {
    /// True if the error is about the connection (retry later) rather than a refusal.
    pub fn is_connection(&self) -> bool {
        match self {
            PgError::Connect { .. } => true,
            PgError::Query { source, .. } => source.is_closed() || source.as_db_error().is_none(),
            _ => false,
        }
    }
}

impl From<PgError> for TargetError {
    fn from(e: PgError) -> TargetError {
        let target = match &e {
            PgError::Connect { target, .. } | PgError::Query { target, .. } | PgError::NewerSchema { target, .. } => {
                target.clone()
            }
            _ => "PostgreSQL".into(),
        };
        match e {
            PgError::NewerSchema { .. } | PgError::BadUrl { .. } | PgError::EmptyQuery => {
                TargetError::Incompatible { target, detail: e.to_string() }
            }
            e if e.is_connection() => TargetError::Unreachable { target, source: Box::new(e) },
            e => TargetError::Refused { target, source: Box::new(e) },
        }
    }
}

/// Adds what was being done to a client error.
pub(crate) trait Ctx<T> {
    fn ctx(self, target: &str, what: &'static str) -> Result<T, PgError>;
}

impl<T> Ctx<T> for Result<T, postgres::Error> {
    fn ctx(self, target: &str, what: &'static str) -> Result<T, PgError> {
        self.map_err(|source| PgError::Query { target: target.to_string(), what, source })
    }
}
