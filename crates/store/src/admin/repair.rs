//! `repair`: recovery of every lane in a chosen mode, then the index checked and rebuilt if needed.

use std::path::{Path, PathBuf};

use serde::Serialize;
use tidelog_journal::{Journal, RecoveryMode, SealedCheck};

use super::rebuild::{RebuildReport, rebuild_index_at};
use super::restore::{RestoreReport, restore_lost};
use super::verify::{VerifyReport, verify_store};
use super::{Progress, read_options};
use crate::error::Result;
use crate::index::{Index, IndexError, IndexOptions};
use crate::layout::{INDEX_FILE, lane_dir, lane_names, quarantine_index_files, try_lock_compactor};

/// What `repair` did with one lane.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LaneOutcome {
    /// Nothing to repair.
    #[default]
    Clean,
    /// Recovery cut a torn tail or salvaged damage (see the lane's report).
    Repaired,
    /// A live writer holds the lane; its own recovery ran when it opened it.
    Skipped,
    /// The lane cannot be opened in the chosen mode.
    Failed,
}

/// What `repair` did with the index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IndexOutcome {
    /// It passed its checks and was kept.
    #[default]
    Healthy,
    /// It was moved to the quarantine and rebuilt from the journal.
    Rebuilt,
    /// Not checked: a running process holds the compactor role (and checks it itself), or a
    /// lane cannot be opened.
    Skipped,
}

impl std::fmt::Display for LaneOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LaneOutcome::Clean => "clean",
            LaneOutcome::Repaired => "repaired",
            LaneOutcome::Skipped => "skipped",
            LaneOutcome::Failed => "failed",
        })
    }
}

impl std::fmt::Display for IndexOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IndexOutcome::Healthy => "healthy",
            IndexOutcome::Rebuilt => "rebuilt",
            IndexOutcome::Skipped => "skipped",
        })
    }
}

/// What `repair` did to one lane.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LaneRepair {
    /// Lane name.
    pub name: String,
    /// What was done.
    pub outcome: LaneOutcome,
    /// Torn tails cut into the quarantine, as `segment @ offset (+len): reason`.
    pub torn_tails: Vec<String>,
    /// LSN ranges lost to salvage (inclusive).
    pub lost_lsns: Vec<(u64, u64)>,
    /// Files moved into the quarantine.
    pub quarantined_files: Vec<String>,
    /// What recovery reported, or why it failed.
    pub problems: Vec<String>,
    /// Highest LSN after repair.
    pub last_lsn: u64,
}

/// What `repair` did to the index.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IndexRepair {
    /// What was done.
    pub outcome: IndexOutcome,
    /// Why it was rebuilt or skipped.
    pub reason: Option<String>,
    /// Index files moved to the quarantine.
    pub quarantined: Vec<PathBuf>,
    /// The rebuild, if one ran.
    pub rebuild: Option<RebuildReport>,
}

/// The result of [`repair_store`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct RepairReport {
    /// Every lane.
    pub lanes: Vec<LaneRepair>,
    /// The index.
    pub index: IndexRepair,
    /// Messages the journal lost to damage that the index still held, appended again to a new
    /// lane (salvage only).
    pub restored: RestoreReport,
    /// `verify` of the result.
    pub verify: VerifyReport,
}

/// Repairs a store: opens every lane not held by a live writer with [`Journal::open`] in the
/// given mode (which cuts torn tails into the quarantine and, with `Salvage`, quarantines
/// mid-log damage), then checks the index and, if it fails, moves it to the quarantine and
/// rebuilds it from the journal; finally verifies the result. Never deletes anything.
pub fn repair_store(dir: &Path, mode: RecoveryMode, progress: Progress<'_>) -> Result<RepairReport> {
    let mut rep = RepairReport::default();
    let mut lane_failed = false;
    let index_path = dir.join(INDEX_FILE);
    // What the index applied of each lane before anything changes: a lane that now ends below it
    // lost records the index may still hold.
    let applied = Index::open_read_only(&index_path, &IndexOptions::default())
        .and_then(|ix| ix.applied_positions())
        .unwrap_or_default();
    let mut lost: Vec<(String, u64, u64)> = Vec::new();
    for name in lane_names(dir)? {
        progress("repairing lanes", 0, 0);
        let mut lr = LaneRepair { name: name.clone(), ..LaneRepair::default() };
        // Every record of every segment is read: damage inside a sealed record is invisible to
        // the footer check.
        let opts = tidelog_journal::Options { sealed_check: SealedCheck::Full, ..read_options(mode) };
        match Journal::open(lane_dir(dir, &name), opts) {
            Ok(j) => {
                let r = j.recovery_report();
                lr.outcome = if r.is_clean() { LaneOutcome::Clean } else { LaneOutcome::Repaired };
                lr.torn_tails = r
                    .torn_tails
                    .iter()
                    .map(|t| {
                        format!(
                            "{} @ {} (+{} bytes): {} -> {}",
                            t.segment.display(),
                            t.offset,
                            t.len,
                            t.reason,
                            t.quarantine_file
                        )
                    })
                    .collect();
                lr.lost_lsns = r.lost_lsns();
                lr.quarantined_files = r.quarantined_files.clone();
                lr.problems = r.problems.clone();
                lr.last_lsn = j.last_lsn();
                if mode == RecoveryMode::Salvage {
                    for &(a, b) in &lr.lost_lsns {
                        lost.push((name.clone(), a, b));
                    }
                    // Records lost at the end of the lane (an emptied last segment: how many is
                    // unknown to the journal) that the index had applied.
                    if let Some(&pos) = applied.get(&name).filter(|&&p| p > lr.last_lsn) {
                        lost.push((name.clone(), lr.last_lsn + 1, pos));
                    }
                }
                j.close()?;
            }
            Err(tidelog_journal::Error::Locked { .. }) => {
                lr.outcome = LaneOutcome::Skipped;
                lr.problems.push("a live writer holds this lane; it ran recovery when it opened it".into());
            }
            Err(e) => {
                lane_failed = true;
                lr.outcome = LaneOutcome::Failed;
                lr.problems.push(e.to_string());
                if e.is_corruption() {
                    lr.problems.push(
                        "run `tidelog repair --salvage`: it keeps every valid record and restores from the index what it holds of the damaged ones"
                            .into(),
                    );
                }
            }
        }
        rep.lanes.push(lr);
    }
    if !lost.is_empty() && index_path.exists() {
        progress("restoring lost messages from the index", 0, 0);
        rep.restored = restore_lost(dir, &index_path, &lost, &|_| true)?;
    }
    rep.index = repair_index(dir, lane_failed, progress)?;
    rep.verify = verify_store(dir, progress)?;
    Ok(rep)
}

fn repair_index(dir: &Path, lane_failed: bool, progress: Progress<'_>) -> Result<IndexRepair> {
    let mut ir = IndexRepair::default();
    let Some(_lock) = try_lock_compactor(dir)? else {
        ir.outcome = IndexOutcome::Skipped;
        ir.reason = Some("a running process holds the compactor role; it checks and rebuilds the index itself".into());
        return Ok(ir);
    };
    let path = dir.join(INDEX_FILE);
    let reason = if !path.exists() {
        Some("index missing".to_string())
    } else {
        match Index::open(&path, &IndexOptions::default()) {
            Ok(ix) => {
                let mut problems = match ix.check() {
                    Ok(p) => super::summarize_check(p),
                    Err(e) if e.is_corruption() => vec![e.to_string()],
                    Err(e) => return Err(e.into()),
                };
                match ix.applied_positions() {
                    Ok(positions) => {
                        for (lane, pos) in positions {
                            let ldir = lane_dir(dir, &lane);
                            if !ldir.exists() {
                                problems.push(format!("refers to lane {lane}, which this store does not have"));
                                continue;
                            }
                            // (After a salvage, what the index held of the lost records was
                            // restored above: a rebuild loses nothing of it.)
                            if let Ok(j) = Journal::open_read_only(&ldir, read_options(RecoveryMode::Strict))
                                && pos > j.last_lsn()
                            {
                                problems.push(format!(
                                    "applied position {pos} of lane {lane} is ahead of its journal (last LSN {})",
                                    j.last_lsn()
                                ));
                            }
                        }
                    }
                    Err(e) => problems.push(e.to_string()),
                }
                (!problems.is_empty()).then(|| format!("index check failed: {}", problems.join("; ")))
            }
            Err(e)
                if e.is_corruption()
                    || matches!(
                        e,
                        IndexError::NewerSchema { .. }
                            | IndexError::OlderSchema { .. }
                            | IndexError::NotInitialized { .. }
                    ) =>
            {
                Some(format!("index cannot be opened: {e}"))
            }
            Err(e) => return Err(e.into()),
        }
    };
    let Some(reason) = reason else {
        ir.outcome = IndexOutcome::Healthy;
        return Ok(ir);
    };
    if lane_failed {
        ir.outcome = IndexOutcome::Skipped;
        ir.reason =
            Some(format!("{reason}; not rebuilt while a lane cannot be opened (run `tidelog repair --salvage`)"));
        return Ok(ir);
    }
    if path.exists() {
        ir.quarantined = quarantine_index_files(dir, &reason)?;
    }
    ir.rebuild = Some(rebuild_index_at(dir, &path, progress)?);
    ir.outcome = IndexOutcome::Rebuilt;
    ir.reason = Some(reason);
    Ok(ir)
}
