//! What a store reports about itself: the types of [`Store::status`](crate::Store::status).

use std::path::PathBuf;

use logbook_journal::Lsn;

/// Health of the SQLite index as this process sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum IndexHealth {
    /// Not checked yet (the compactor checks it when it starts).
    Unchecked,
    /// Checked and in use.
    Healthy,
    /// The index was damaged, moved to the quarantine, and is being rebuilt from the journal.
    /// Reads stay complete meanwhile (they read the journal for what is not indexed yet).
    Rebuilding {
        /// Why it was rebuilt.
        reason: String,
        /// Entries applied so far.
        done: u64,
        /// Entries to apply.
        total: u64,
    },
    /// The index cannot be used; reads are served from the journal alone.
    Failed {
        /// Why.
        reason: String,
    },
}

/// One lane as [`Store::status`](crate::Store::status) sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneStatus {
    /// Lane name (folder under `lanes/`).
    pub name: String,
    /// This process's lane.
    pub own: bool,
    /// Highest readable LSN.
    pub last_lsn: Lsn,
    /// Highest LSN applied to the index (0 if none, `None` if the index could not be read).
    pub applied_lsn: Option<Lsn>,
    /// Why the lane cannot be read, if it cannot.
    pub error: Option<String>,
}

/// The compactor as this process sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactorStatus {
    /// This process holds the compactor role.
    pub running_here: bool,
    /// Batches committed by this process.
    pub batches: u64,
    /// Entries applied by this process.
    pub entries_applied: u64,
    /// Failed batch attempts (retried with back-off).
    pub retries: u64,
    /// The last error, if the last attempt failed.
    pub last_error: Option<String>,
    /// Journal records that did not decode and were skipped (each logged at error level).
    pub undecodable: u64,
    /// When the last `wal_checkpoint(TRUNCATE)` ran, ms since the Unix epoch.
    pub last_checkpoint_unix_ms: Option<u64>,
    /// Index files moved to the quarantine by this process.
    pub index_quarantined: u64,
}

/// A snapshot of the store's state. Anything degraded is listed in `problems`.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreStatus {
    /// The store folder.
    pub dir: PathBuf,
    /// This process's lane.
    pub lane: String,
    /// Every lane.
    pub lanes: Vec<LaneStatus>,
    /// The index.
    pub index: IndexHealth,
    /// The compactor.
    pub compactor: CompactorStatus,
    /// Journal entries not yet applied to the index (the compactor's lag).
    pub unindexed: u64,
    /// Bytes kept in the quarantine folders (the store's and every lane's): damaged files moved
    /// aside, kept until `logbook quarantine remove`. Not a problem in itself.
    pub quarantine_bytes: u64,
    /// Why this process's lane refuses appends, if it does.
    pub journal_poisoned: Option<String>,
    /// Everything that is not as it should be, in words. Empty when healthy.
    pub problems: Vec<String>,
}

impl StoreStatus {
    /// True if anything is degraded.
    pub fn is_degraded(&self) -> bool {
        !self.problems.is_empty()
    }
}
