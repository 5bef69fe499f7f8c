//! The store folder: the one module that knows its file names, its locks, the quarantine and
//! its notes, private (0700/0600) creation and folder syncs.
//!
//! ```text
//! <store>/
//!   lanes/lane-0001/       one journal per writing process (tidelog-journal owns its inside)
//!   index.db, -wal, -shm   the derived SQLite index
//!   compactor.lock         held (flock) by the process running the compactor
//!   index.rebuild          a request to rebuild the index, holding the reason
//!   quarantine/            damaged files moved aside, each with a `<name>.json` note
//!   index.rebuilding.db    a replacement index being built (`rebuild-index` of a healthy one)
//!   .logbook-tmp-*/        scratch space of a running verify (its index copy), locked by it;
//!                          one left by a killed process is removed by the next verify or backup
//!   backup.json            in a backup: written first with "complete": false, replaced with
//!                          "complete": true once every file is copied and synced
//!   store.id               this store's stable random id (a remote index keys its rows by it)
//!   shipper.lock           held (flock) by the process shipping batches to a remote index
//!   sequence               the store's shared order: a mapped counter (see `sequence.rs`),
//!                          share-locked by every process that has the store open
//!   write.lock             the store-wide lock of conditional writes (and of opening)
//!   compactor.problem      only while the compactor of the process holding the role is degraded
//!   shipper.problem        (a panic, or a failure lasting 30 s): JSON, for other processes' status
//!   erase.pending-*        one per deletion not erased from disk yet (written by the deleting
//!                          process; removed by the erase pass that erased it)
//! ```
//!
//! The quarantine keeps damaged files until a person removes them
//! ([`QuarantinedFile::remove`], `tidelog quarantine remove`); nothing removes them by itself.
//!
//! Here: the names and the lanes. By concern: `files.rs` (private creation, copies, folder syncs),
//! `locks.rs` (the role locks), `markers.rs` (the store id, erase and rebuild markers, thread
//! problem notes), `quarantine.rs` (the index's files moved aside or replaced; listing and removing
//! on request), `scratch.rs` (scratch folders of running tools).

mod files;
mod locks;
mod markers;
mod quarantine;
mod scratch;

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub(crate) use files::{copy_file_private, create_private_dir, file_len, sync_dir, wal_path, write_new_private_file};
pub(crate) use locks::{try_lock_compactor, try_lock_shipper};
pub(crate) use markers::{
    Role, ThreadNote, clear_rebuild_request, clear_thread_note, erase_markers, mark_erase_pending, read_thread_note,
    rebuild_requested, remove_erase_markers, request_rebuild, store_id, write_thread_note,
};
pub use quarantine::{QuarantinedFile, list_quarantine};
pub(crate) use quarantine::{quarantine_bytes, quarantine_index_files, remove_rebuilding_files, replace_index_files};
pub(crate) use scratch::{TempDir, clean_stale_temp_dirs, store_temp_dir, temp_dirs_in_use};

/// Folder of the lanes (one journal per writing process).
pub const LANES_DIR: &str = "lanes";
/// The SQLite index file.
pub const INDEX_FILE: &str = "index.db";
/// The lock held by the process running the compactor.
pub const COMPACTOR_LOCK: &str = "compactor.lock";
/// Where damaged files are moved.
pub const QUARANTINE_DIR: &str = "quarantine";
/// Marker asking the compactor to move the index to the quarantine and rebuild it; holds the
/// reason. Written by a process that finds the index ahead of the lane it just claimed.
pub const REBUILD_MARKER: &str = "index.rebuild";
/// Where `rebuild-index` builds the replacement of a healthy index before swapping it in.
pub(crate) const REBUILDING_FILE: &str = "index.rebuilding.db";
/// This store's stable id: a random UUID written once, when a writer first opens the folder.
/// A remote index (PostgreSQL) fed by many stores keys every row by it.
pub const STORE_ID_FILE: &str = "store.id";
/// The lock held by the process shipping batches to a remote index.
pub const SHIPPER_LOCK: &str = "shipper.lock";
/// The store's shared order (a memory-mapped counter; rebuilt from the lanes by the first
/// process to open the store).
pub const SEQUENCE_FILE: &str = "sequence";
/// The store-wide lock: held while a conditional write reads every lane, decides and appends,
/// and while a process opens the store.
pub const WRITE_LOCK: &str = "write.lock";
/// Written by the process running the compactor while that thread is degraded (it panicked
/// recently, or every attempt has failed for a while), removed once it is healthy: JSON
/// (`thread`, `pid`, `lane`, `what`, `time_unix_ms`) that other processes show in their status.
pub const COMPACTOR_PROBLEM: &str = "compactor.problem";
/// The same for the shipper to a remote index.
pub const SHIPPER_PROBLEM: &str = "shipper.problem";
/// In a backup folder: the completion marker (see `admin/backup.rs`).
pub(crate) const BACKUP_MARKER: &str = "backup.json";
/// Prefix of lane folder names.
const LANE_PREFIX: &str = "lane-";

/// The folder of lane `name`.
pub(crate) fn lane_dir(dir: &Path, name: &str) -> PathBuf {
    dir.join(LANES_DIR).join(name)
}

/// The name of the `n`th lane.
pub(crate) fn lane_name(n: u64) -> String {
    format!("{LANE_PREFIX}{n:04}")
}

/// The number in a lane name.
pub(crate) fn lane_number(name: &str) -> Option<u64> {
    name.strip_prefix(LANE_PREFIX)?.parse().ok()
}

/// Lane folder names under `dir/lanes`, sorted.
pub(crate) fn lane_names(dir: &Path) -> Result<Vec<String>> {
    let lanes = dir.join(LANES_DIR);
    if !lanes.exists() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for e in fs::read_dir(&lanes).map_err(|e| Error::io("list", &lanes, e))? {
        let e = e.map_err(|e| Error::io("list", &lanes, e))?;
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false)
            && let Ok(n) = e.file_name().into_string()
            && n.starts_with(LANE_PREFIX)
        {
            out.push(n);
        }
    }
    out.sort();
    Ok(out)
}
