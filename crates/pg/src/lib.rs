//! PostgreSQL as a remote index that many tidelog stores feed: every gateway keeps its local
//! journal and SQLite index, and its shipper thread applies the same journal entries, in
//! batches, to one shared database, exactly once, keyed by the store's id. Search there sees
//! every store.
//!
//! ```no_run
//! use std::sync::Arc;
//! use tidelog::{SearchQuery, Store, StoreOptions};
//! use tidelog_pg::PgTarget;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pg = Arc::new(PgTarget::new("postgres://tidelog@db.internal/tidelog")?);
//! let store = Store::open("/var/lib/gateway/tidelog", StoreOptions { remote: Some(pg.clone()), ..StoreOptions::default() })?;
//! // ... appends ship in the background; search every store feeding the database:
//! for hit in pg.search(&SearchQuery::new("invoice"))? {
//!     println!("{} {}: {}", hit.store_id, hit.hit.message.session_id, hit.hit.snippet);
//! }
//! # store.close()?;
//! # Ok(())
//! # }
//! ```
//!
//! See `docs/scale-out.md` for the topology, the exactly-once argument and failure behaviour.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod apply;
mod error;
mod schema;
mod search;

use std::str::FromStr;
use std::time::Duration;

use postgres::config::Host;
use postgres::{Client, Config, NoTls};
use tidelog::{IndexOptions, IndexTarget, RemoteTarget, TargetError};

pub use apply::PgIndex;
pub use error::PgError;
pub use schema::PG_SCHEMA_VERSION;
pub use search::RemoteHit;

/// The environment variable the CLI reads the connection URL from (`--postgres`).
pub const POSTGRES_ENV: &str = "TIDELOG_POSTGRES";

/// A PostgreSQL database as a remote index: where to connect, and what is made searchable.
/// Cheap to share ([`Arc`](std::sync::Arc)); every [`connect`](RemoteTarget::connect) opens its
/// own connection.
#[derive(Debug, Clone)]
pub struct PgTarget {
    config: Config,
    describe: String,
    /// What search sees of a message (must match the stores' [`IndexOptions`] to search the
    /// same text as their SQLite index). Default: [`IndexOptions::default`].
    pub index: IndexOptions,
}

impl PgTarget {
    /// A target from a libpq-style URL or key-value string (`postgres://user:pw@host:port/db`,
    /// `host=... dbname=...`). Sets `connect_timeout` to 5 s and TCP keepalives unless given,
    /// so that a dead server is noticed within seconds. Connects only when asked.
    pub fn new(url: &str) -> Result<PgTarget, PgError> {
        let mut config = Config::from_str(url).map_err(|e| PgError::BadUrl { detail: e.to_string() })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        config.keepalives(true).keepalives_idle(Duration::from_secs(10));
        if config.get_application_name().is_none() {
            config.application_name("tidelog");
        }
        let describe = describe(&config);
        Ok(PgTarget { config, describe, index: IndexOptions::default() })
    }

    /// Opens a connection and creates the schema if it is missing (`pg_trgm` included: needs
    /// the `CREATE` privilege on the database; `pg_trgm` is a trusted extension).
    pub fn open(&self) -> Result<PgIndex, PgError> {
        let mut client =
            self.config.connect(NoTls).map_err(|e| PgError::Connect { target: self.describe.clone(), source: e })?;
        schema::ensure(&mut client, &self.describe)?;
        Ok(PgIndex::new(client, self.describe.clone(), self.index.clone()))
    }

    /// Where it is (`postgres://user@host:port/db`, no password).
    pub fn describe(&self) -> &str {
        &self.describe
    }
}

impl RemoteTarget for PgTarget {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn connect(&self) -> Result<Box<dyn IndexTarget>, TargetError> {
        Ok(Box::new(self.open()?))
    }
}

fn describe(c: &Config) -> String {
    let host = match c.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = c.get_ports().first().copied().unwrap_or(5432);
    let user = c.get_user().map(|u| format!("{u}@")).unwrap_or_default();
    let db = c.get_dbname().unwrap_or_default();
    format!("postgres://{user}{host}:{port}/{db}")
}

/// Connects with the target's settings (for search and tools).
pub(crate) fn connect(t: &PgTarget) -> Result<Client, PgError> {
    t.config.connect(NoTls).map_err(|e| PgError::Connect { target: t.describe.clone(), source: e })
}
