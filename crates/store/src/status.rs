//! What a store reports about itself: the types of [`Store::status`](crate::Store::status).

use std::path::PathBuf;

use tidelog_journal::Lsn;

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
    /// Panics, persistent failures, and whether the thread is degraded because of them.
    pub health: ThreadHealth,
}

/// A background thread of this process (the compactor or the shipper): its panics and
/// persistent failures. A panic restarts the thread after a back-off (100 ms doubling to 30 s).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreadHealth {
    /// Panics caught since the store was opened; each one restarted the thread.
    pub panics: u64,
    /// The last panic's message.
    pub last_panic: Option<String>,
    /// Since when every attempt has failed, ms since the Unix epoch (`None` when the last attempt
    /// succeeded).
    pub failing_since_unix_ms: Option<u64>,
    /// Why the thread is degraded right now, also a line of [`StoreStatus::problems`]: it
    /// panicked less than a minute ago (or waits to restart), or every attempt has failed for 30 s
    /// or more. `None` when healthy.
    pub degraded: Option<String>,
}

/// What [`Store::close`](crate::Store::close) found about the store's background threads. The
/// journal is synced whatever it says: nothing acknowledged is lost by a thread that died or was
/// left running.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CloseReport {
    /// The compactor, if this store ran one (not read-only, `run_compactor` set).
    pub compactor: Option<ThreadReport>,
    /// The shipper, if a remote index was configured.
    pub shipper: Option<ThreadReport>,
}

impl CloseReport {
    /// True if no thread panicked and every thread stopped before the deadline.
    pub fn is_clean(&self) -> bool {
        self.problems().is_empty()
    }

    /// What went wrong, in words: panics during the store's life, threads left running.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (name, t) in [("compactor", &self.compactor), ("shipper", &self.shipper)] {
            let Some(t) = t else { continue };
            if t.panics > 0 {
                out.push(format!(
                    "the {name} thread panicked {} time(s) while the store was open (each time restarted): {}",
                    t.panics,
                    t.last_panic.as_deref().unwrap_or("?")
                ));
            }
            if !t.stopped {
                out.push(format!("the {name} thread did not stop before the close deadline and was left running"));
            }
        }
        out
    }
}

/// One background thread at [`Store::close`](crate::Store::close).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreadReport {
    /// Panics during the store's life (each restarted the thread; a thread ended by a panic its
    /// supervisor could not catch counts too).
    pub panics: u64,
    /// The last panic's message.
    pub last_panic: Option<String>,
    /// It stopped before the close deadline (`false`: it was busy and left running; it stops at
    /// its next batch boundary, or with the process).
    pub stopped: bool,
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
    /// aside, kept until `tidelog quarantine remove`. Not a problem in itself.
    pub quarantine_bytes: u64,
    /// Why this process's lane refuses appends, if it does.
    pub journal_poisoned: Option<String>,
    /// The shipper to a remote index, when one is configured.
    pub remote: Option<RemoteStatus>,
    /// Everything that is not as it should be, in words. Empty when healthy.
    pub problems: Vec<String>,
}

impl StoreStatus {
    /// True if anything is degraded.
    pub fn is_degraded(&self) -> bool {
        !self.problems.is_empty()
    }
}

/// One lane as a remote index has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteLane {
    /// Lane name.
    pub name: String,
    /// Highest readable LSN of the lane here.
    pub last_lsn: Lsn,
    /// Highest LSN the remote index applied (0 if none).
    pub applied_lsn: Lsn,
    /// Entries not shipped yet (`last_lsn - applied_lsn`, 0 when ahead).
    pub lag: u64,
    /// The remote index has applied more of this lane than the lane holds (the journal was
    /// lost or replaced): the lane is not shipped until someone decides (see docs/scale-out.md).
    pub ahead: bool,
}

/// A store's position in a remote index: what [`Store::remote_lag`](crate::Store::remote_lag)
/// and [`Store::sync_remote`](crate::Store::sync_remote) return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteLag {
    /// The remote index (no password).
    pub target: String,
    /// This store's id in it.
    pub store_id: String,
    /// Every lane of the store, and every lane the remote index knows of this store.
    pub lanes: Vec<RemoteLane>,
    /// Lanes the remote index has positions of that this store does not have (lost folders).
    pub missing_lanes: Vec<String>,
    /// Entries shipped by this call (0 for `remote_lag`).
    pub shipped: u64,
}

impl RemoteLag {
    /// Entries not shipped yet, over every lane.
    pub fn lag(&self) -> u64 {
        self.lanes.iter().map(|l| l.lag).sum()
    }

    /// What is wrong, in words: lanes whose remote position is ahead, lanes missing here.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for l in self.lanes.iter().filter(|l| l.ahead) {
            out.push(format!(
                "remote index {} has applied LSN {} of {} {}, but the lane ends at {}: the journal was lost or \
                 replaced; the lane is not shipped (see docs/scale-out.md)",
                self.target, l.applied_lsn, self.store_id, l.name, l.last_lsn
            ));
        }
        for l in &self.missing_lanes {
            out.push(format!(
                "remote index {} has positions of lane {l} of store {}, which this folder does not have",
                self.target, self.store_id
            ));
        }
        out
    }
}

impl RemoteStatus {
    /// The remote index's position of `lane`, if known.
    pub fn applied_lsn(&self, lane: &str) -> Option<Lsn> {
        self.lanes.iter().find(|l| l.name == lane).map(|l| l.applied_lsn)
    }
}

/// The shipper to a remote index as this process sees it (present when
/// [`StoreOptions::remote`](crate::StoreOptions::remote) is set).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteStatus {
    /// The remote index (no password).
    pub target: String,
    /// This store's id.
    pub store_id: Option<String>,
    /// This process holds the shipper role (`shipper.lock`); only it knows the positions.
    pub shipping_here: bool,
    /// Connected right now.
    pub connected: bool,
    /// Per lane, as of the last batch or connection (empty until connected).
    pub lanes: Vec<RemoteLane>,
    /// Entries not shipped yet (`None` until the positions were read).
    pub lag: Option<u64>,
    /// Batches committed by this process.
    pub batches: u64,
    /// Entries applied by this process.
    pub entries_applied: u64,
    /// Failed attempts (connections and batches), retried with back-off.
    pub retries: u64,
    /// The last error, while it lasts.
    pub last_error: Option<String>,
    /// When the next attempt is due, ms since the Unix epoch (while failing).
    pub retry_at_unix_ms: Option<u64>,
    /// Panics, persistent failures, and whether the shipper is degraded because of them.
    pub health: ThreadHealth,
}
