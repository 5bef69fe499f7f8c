//! `rebuild-index`: a new index from the journal alone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tidelog_journal::{Journal, RecoveryMode, SealedCheck};

use super::restore::{RestoreReport, restore_lost};
use super::{Progress, read_options};
use crate::entry;
use crate::entry::Entry;
use crate::error::{Error, Result};
use crate::index::{Index, IndexOptions, Undecodable};
use crate::layout::{
    COMPACTOR_LOCK, INDEX_FILE, REBUILDING_FILE, lane_dir, lane_names, lane_number, quarantine_index_files,
    remove_rebuilding_files, replace_index_files, try_lock_compactor,
};

/// Entries applied per SQLite transaction when rebuilding.
const REBUILD_BATCH: usize = 2_000;

/// What a rebuild applied.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RebuildReport {
    /// The index file written.
    pub path: PathBuf,
    /// Journal entries read.
    pub entries: u64,
    /// Messages indexed.
    pub messages: u64,
    /// Messages skipped as duplicates of an id already indexed.
    pub duplicate_messages: u64,
    /// Session changes applied.
    pub sessions: u64,
    /// Records that did not decode (skipped).
    pub undecodable: u64,
    /// Applied position per lane.
    pub applied: BTreeMap<String, u64>,
    /// Messages the old index held from records the journal lost, restored to a new lane
    /// before the old index was replaced.
    pub restored: RestoreReport,
}

/// Builds (or completes) the index at `dest` from every lane's journal, in batches. `dest` may
/// be the store's own `index.db` (after the old one was moved to the quarantine, with the compactor lock held)
/// or any other file. Lanes are read read-only; a lane with mid-log damage fails the rebuild
/// (run `tidelog repair --salvage` first).
pub fn rebuild_index_at(dir: &Path, dest: &Path, progress: Progress<'_>) -> Result<RebuildReport> {
    let mut rep = RebuildReport { path: dest.to_path_buf(), ..RebuildReport::default() };
    let mut journals = Vec::new();
    for name in lane_names(dir)? {
        let j = Journal::open_read_only(lane_dir(dir, &name), read_options(RecoveryMode::Strict))?;
        journals.push((name, j));
    }
    // Long texts stay only in the journal, read back from the store's lanes (`dest` may be a
    // scratch file elsewhere).
    let mut index = Index::open(dest, &IndexOptions { journal_text: Some(dir.to_owned()), ..IndexOptions::default() })?;
    let positions = index.applied_positions()?;
    let total: u64 =
        journals.iter().map(|(n, j)| j.last_lsn().saturating_sub(positions.get(n).copied().unwrap_or(0))).sum();
    let mut batch: Vec<(String, u64, Entry)> = Vec::with_capacity(REBUILD_BATCH);
    let mut places: Vec<(u64, u64)> = Vec::with_capacity(REBUILD_BATCH);
    // Records that do not decode: recorded in the index with the positions past them, as the
    // compactor does, so the rebuilt index still reports them.
    let mut undecodable: Vec<Undecodable> = Vec::new();
    let mut flush = |batch: &mut Vec<(String, u64, Entry)>,
                     places: &mut Vec<(u64, u64)>,
                     undecodable: &mut Vec<Undecodable>,
                     rep: &mut RebuildReport|
     -> Result<()> {
        if batch.is_empty() && undecodable.is_empty() {
            return Ok(());
        }
        let s = index.apply_batch_marked(batch, places, undecodable)?;
        places.clear();
        rep.messages += s.messages;
        rep.duplicate_messages += s.duplicate_messages;
        rep.sessions += s.sessions;
        batch.clear();
        undecodable.clear();
        Ok(())
    };
    progress("rebuilding the index", 0, total);
    for (name, j) in &journals {
        let from = positions.get(name).copied().unwrap_or(0) + 1;
        for r in j.iter_from(from.max(j.first_lsn())) {
            let rec = r?;
            rep.entries += 1;
            match entry::decode_record(lane_number(name).unwrap_or(0), rec.lsn, &rec.payload) {
                Ok(e) => {
                    batch.push((name.clone(), rec.lsn, e));
                    places.push((rec.segment, rec.offset));
                }
                Err(e) => {
                    tracing::error!(lane = %name, lsn = rec.lsn, "journal record does not decode; skipped: {e}");
                    rep.undecodable += 1;
                    undecodable.push((name.clone(), rec.lsn, e.to_string()));
                }
            }
            if batch.len() + undecodable.len() >= REBUILD_BATCH {
                flush(&mut batch, &mut places, &mut undecodable, &mut rep)?;
                progress("rebuilding the index", rep.entries, total);
            }
        }
        flush(&mut batch, &mut places, &mut undecodable, &mut rep)?;
        progress("rebuilding the index", rep.entries, total);
    }
    flush(&mut batch, &mut places, &mut undecodable, &mut rep)?;
    rep.applied = index.applied_positions()?;
    index.checkpoint_truncate()?;
    tracing::info!(path = %dest.display(), entries = rep.entries, messages = rep.messages, "index rebuilt from the journal");
    Ok(rep)
}

/// Restores (to a new lane) the messages `old` holds from records its lanes lost that `new`
/// lacks; `None` if there were none.
fn rescue_from_old_index(dir: &Path, old: &Path, new: &Path) -> Result<Option<RestoreReport>> {
    let Ok(old_ix) = Index::open_read_only(old, &IndexOptions::default()) else { return Ok(None) };
    let applied = old_ix.applied_positions()?;
    drop(old_ix);
    let mut lost = Vec::new();
    for name in lane_names(dir)? {
        let j = Journal::open_read_only(lane_dir(dir, &name), read_options(RecoveryMode::Strict))?;
        for h in j.holes() {
            if h.lost_count() > 0 {
                lost.push((name.clone(), h.first_lost_lsn, h.last_lost_lsn));
            }
        }
        if let Some(&pos) = applied.get(&name).filter(|&&p| p > j.last_lsn()) {
            lost.push((name.clone(), j.last_lsn() + 1, pos));
        }
    }
    if lost.is_empty() {
        return Ok(None);
    }
    // Read-write, so that closing it leaves no `-wal` beside the new index.
    let new_ix = Index::open(new, &IndexOptions::default())?;
    let keep = |m: &crate::model::Message| !new_ix.contains_message(&m.id).unwrap_or(true);
    let rep = restore_lost(dir, old, &lost, &keep)?;
    Ok((!rep.restored.is_empty()).then_some(rep))
}

/// Rebuilds the store's index in place from the journal. A healthy index (it opens and passes
/// [`Index::check`]) is replaced and not kept: the new one is built beside it and renamed over
/// it, so readers see the old index until the new one is complete. A damaged or unreadable one is
/// moved to the quarantine first (kept until `tidelog quarantine remove`). Returns the files
/// moved to the quarantine (empty when the old index was healthy). Fails if a running process
/// holds the compactor role (stop the writers first; their compactor would rebuild a damaged
/// index by itself anyway).
pub fn rebuild_index_in_place(
    dir: &Path,
    reason: &str,
    progress: Progress<'_>,
) -> Result<(Vec<PathBuf>, RebuildReport)> {
    let Some(_lock) = try_lock_compactor(dir)? else {
        return Err(Error::CompactorBusy { lock: dir.join(COMPACTOR_LOCK) });
    };
    // Every lane must be readable in full before the old index is touched: a rebuild from a
    // damaged lane would hold fewer messages than the index it replaces (the index may hold the
    // last copy of what the lane lost). `tidelog repair --salvage` isolates the damage and
    // restores those messages from the index first.
    progress("checking the journal", 0, 0);
    for name in lane_names(dir)? {
        let opts = tidelog_journal::Options { sealed_check: SealedCheck::Full, ..read_options(RecoveryMode::Strict) };
        let j = Journal::open_read_only(lane_dir(dir, &name), opts)?;
        if let Some(p) = j.recovery_report().problems.first() {
            return Err(Error::Journal(tidelog_journal::Error::Corrupt {
                path: lane_dir(dir, &name),
                offset: 0,
                first_lost_lsn: 0,
                last_lost_lsn: 0,
                detail: format!("{p}; run `tidelog repair --salvage` first (it keeps what the index holds)"),
            }));
        }
    }
    let index_path = dir.join(INDEX_FILE);
    let damage = if index_path.exists() {
        progress("checking the old index", 0, 0);
        match Index::open_read_only(&index_path, &IndexOptions::default()).and_then(|ix| ix.check()) {
            Ok(problems) => super::summarize_check(problems).first().map(|p| format!("{reason}: {p}")),
            Err(e) => Some(format!("{reason}: {e}")),
        }
    } else {
        None
    };
    if let Some(why) = damage {
        let moved = quarantine_index_files(dir, &why)?;
        let rep = rebuild_index_at(dir, &index_path, progress)?;
        return Ok((moved, rep));
    }
    remove_rebuilding_files(dir)?;
    let tmp = dir.join(REBUILDING_FILE);
    let mut rep = match rebuild_index_at(dir, &tmp, progress) {
        Ok(r) => r,
        Err(e) => {
            let _ = remove_rebuilding_files(dir);
            return Err(e);
        }
    };
    // Messages the old index holds from records the journal lost (salvaged holes, or beyond a
    // lane's end) that the new index lacks: the old index is their last copy. Restore them to a
    // new lane and apply it, so the rebuild never shrinks the history.
    match rescue_from_old_index(dir, &index_path, &tmp) {
        Ok(Some(restored)) => {
            let more = rebuild_index_at(dir, &tmp, progress)?;
            rep.messages += more.messages;
            rep.entries += more.entries;
            rep.applied = more.applied;
            rep.restored = restored;
        }
        Ok(None) => {}
        Err(e) => {
            let _ = remove_rebuilding_files(dir);
            return Err(e);
        }
    }
    replace_index_files(dir, &tmp)?;
    rep.path = index_path;
    Ok((Vec::new(), rep))
}
