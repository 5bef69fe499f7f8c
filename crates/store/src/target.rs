//! The index target seam: where the compactor's batches go.
//!
//! A batch is a run of journal entries `(lane, lsn, entry)` read from the lanes above a
//! target's applied positions. A target applies a batch in one transaction that also stores
//! the new applied position of every lane it touched, and skips an entry at or below its lane's
//! position, so replaying a batch (after a crash, a lost connection, or a lost commit reply)
//! never duplicates and never leaves a gap. Two targets exist:
//!
//! - the local SQLite [`Index`] (the default, always there; its compactor thread runs in
//!   `compactor.rs`), and
//! - a remote target ([`RemoteTarget`]), such as PostgreSQL in the `tidelog-pg` crate, shared
//!   by many stores: its rows and positions are keyed by the store's id as well. A shipper
//!   thread (`remote/shipper.rs`), separate from the compactor, feeds it from its own positions, with
//!   back-off, so an outage never blocks appends or the local index.

use std::collections::BTreeMap;
use std::fmt;

use tidelog_journal::Lsn;

use crate::entry::Entry;
pub use crate::error::TargetError;
use crate::index::{ApplyStats, Index};

/// Where batches of journal entries are applied.
pub trait IndexTarget: Send {
    /// The last applied position of every lane of store `store_id`.
    fn applied_positions(&mut self, store_id: &str) -> Result<BTreeMap<String, Lsn>, TargetError>;

    /// Applies `entries` of store `store_id` in one transaction that also stores each lane's
    /// new position; an entry at or below its lane's stored position is skipped (counted in
    /// [`ApplyStats::skipped`]). Entries of one lane come in LSN order.
    fn apply_batch(&mut self, store_id: &str, entries: &[(String, Lsn, Entry)]) -> Result<ApplyStats, TargetError>;
}

/// A remote index that many stores feed (PostgreSQL: `tidelog-pg`). Set it in
/// [`StoreOptions::remote`](crate::StoreOptions::remote).
pub trait RemoteTarget: Send + Sync + fmt::Debug {
    /// Where it is, for messages (no password).
    fn describe(&self) -> String;

    /// Opens a connection. The shipper drops it after any error and connects again later.
    fn connect(&self) -> Result<Box<dyn IndexTarget>, TargetError>;
}

/// The local index as a target: one store per file, so the store id is not used.
impl IndexTarget for Index {
    fn applied_positions(&mut self, _store_id: &str) -> Result<BTreeMap<String, Lsn>, TargetError> {
        Ok(Index::applied_positions(self)?)
    }

    fn apply_batch(&mut self, _store_id: &str, entries: &[(String, Lsn, Entry)]) -> Result<ApplyStats, TargetError> {
        Ok(Index::apply_batch(self, entries)?)
    }
}
