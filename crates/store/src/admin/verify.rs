//! `verify`: checks a whole store without changing it, safe while writers run.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use logbook_journal::{Journal, RecoveryMode};
use serde::Serialize;

use super::{Progress, read_options};
use crate::entry;
use crate::error::Result;
use crate::index::{Index, IndexError, IndexOptions};
use crate::layout::{INDEX_FILE, LANES_DIR, file_len, lane_dir, lane_names, lane_number, unique_temp_dir, wal_path};
use crate::read::LiveSet;

/// What `verify` found in one lane.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LaneVerify {
    /// Lane name.
    pub name: String,
    /// Segment files.
    pub segments: usize,
    /// Records read and checked.
    pub records: u64,
    /// Lowest LSN present.
    pub first_lsn: u64,
    /// Highest valid LSN.
    pub last_lsn: u64,
    /// Damage salvaged earlier and skipped (listed in the lane's `holes.json`).
    pub known_holes: usize,
    /// What is wrong (empty when the lane is sound).
    pub problems: Vec<String>,
}

/// What `verify` found in the index.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IndexVerify {
    /// The index file.
    pub path: PathBuf,
    /// Whether it exists.
    pub present: bool,
    /// Size of the database file.
    pub db_bytes: u64,
    /// Size of its WAL.
    pub wal_bytes: u64,
    /// Indexed messages.
    pub messages: Option<u64>,
    /// Distinct message ids in the journal up to the applied positions.
    pub journal_messages: Option<u64>,
    /// Applied position per lane.
    pub applied: BTreeMap<String, u64>,
    /// Journal entries not yet applied.
    pub unindexed: u64,
    /// What is wrong (empty when healthy).
    pub problems: Vec<String>,
}

/// The result of [`verify_store`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    /// The store folder.
    pub dir: PathBuf,
    /// Every lane.
    pub lanes: Vec<LaneVerify>,
    /// The index.
    pub index: IndexVerify,
    /// Records per lane still holding content a deletion covered, not erased from the journal
    /// files yet (the compactor erases it within `erase_within`; `logbook erase` does it now).
    pub erasable_records: BTreeMap<String, u64>,
    /// Every problem, in words (empty when the store verifies).
    pub problems: Vec<String>,
}

impl VerifyReport {
    /// True when nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks a whole store without changing it (safe while writers run): every lane's segments
/// record by record ([`logbook_journal::verify`]); the index's `quick_check` and FTS5
/// integrity-check (on a private copy, since the check is a write statement); that its applied
/// positions are not ahead of the journal; and that the message ids in the journal up to those
/// positions are exactly the indexed ones (so, once caught up, the counts are equal).
pub fn verify_store(dir: &Path, progress: Progress<'_>) -> Result<VerifyReport> {
    let mut rep = VerifyReport { dir: dir.to_path_buf(), ..VerifyReport::default() };
    let names = lane_names(dir)?;
    let total = names.len() as u64;
    let mut journals: BTreeMap<String, Journal> = BTreeMap::new();
    for (i, name) in names.iter().enumerate() {
        progress("checking lanes", i as u64, total);
        let ldir = lane_dir(dir, name);
        let mut lv = LaneVerify { name: name.clone(), ..LaneVerify::default() };
        match logbook_journal::verify(&ldir, &read_options(RecoveryMode::Strict)) {
            Ok(r) => {
                lv.segments = r.segments;
                lv.records = r.records_scanned;
                lv.first_lsn = r.first_lsn;
                lv.last_lsn = r.last_lsn;
                lv.known_holes = r.known_holes;
                lv.problems = r.problems;
            }
            Err(e) => lv.problems.push(e.to_string()),
        }
        match Journal::open_read_only(&ldir, read_options(RecoveryMode::Strict)) {
            Ok(j) => {
                journals.insert(name.clone(), j);
            }
            Err(e) if lv.problems.is_empty() => lv.problems.push(format!("cannot be read: {e}")),
            Err(_) => {}
        }
        rep.problems.extend(lv.problems.iter().map(|p| format!("lane {name}: {p}")));
        rep.lanes.push(lv);
    }
    progress("checking lanes", total, total);
    rep.index = verify_index(dir, &journals, progress);
    rep.problems.extend(rep.index.problems.iter().map(|p| format!("index: {p}")));
    // Deleted content still in journal files is reported (not a problem: the compactor erases
    // it within its deadline).
    match super::erasable_records(dir) {
        Ok(c) => rep.erasable_records = c,
        Err(e) => rep.problems.push(format!("cannot check for deleted content left in the journal: {e}")),
    }
    Ok(rep)
}

fn verify_index(dir: &Path, journals: &BTreeMap<String, Journal>, progress: Progress<'_>) -> IndexVerify {
    let path = dir.join(INDEX_FILE);
    let mut iv = IndexVerify { path: path.clone(), present: path.exists(), ..IndexVerify::default() };
    iv.db_bytes = file_len(&path);
    iv.wal_bytes = file_len(&wal_path(&path));
    if !iv.present {
        let records: u64 = journals.values().map(|j| j.last_lsn()).sum();
        if records > 0 {
            iv.problems.push(format!("{} is missing; run `logbook rebuild-index`", path.display()));
        }
        return iv;
    }
    let opts = IndexOptions::default();
    let ix = match Index::open_read_only(&path, &opts) {
        Ok(ix) => ix,
        Err(e) => {
            iv.problems.push(format!("cannot be opened: {e}; run `logbook repair`"));
            return iv;
        }
    };
    // Integrity: on a private copy, where the FTS5 integrity-check (a write statement) may run.
    progress("checking the index", 0, 0);
    match unique_temp_dir("verify") {
        Ok(tmp) => {
            let copy = tmp.join(INDEX_FILE);
            match ix.backup_to(&copy).and_then(|()| Index::open(&copy, &opts)).and_then(|c| c.check()) {
                Ok(p) => iv.problems.extend(super::summarize_check(p)),
                Err(e) if e.is_corruption() => iv.problems.push(format!("{e}; run `logbook repair`")),
                Err(e) => iv.problems.push(format!("could not be checked: {e}")),
            }
            let _ = fs::remove_dir_all(&tmp);
        }
        Err(e) => iv.problems.push(format!("could not be checked (no temporary folder): {e}")),
    }
    // A consistent view: positions, ids, positions again.
    let mut view = None;
    for _ in 0..5 {
        let read = || -> std::result::Result<_, IndexError> {
            let before = ix.applied_positions()?;
            let ids = ix.message_ids()?;
            let count = ix.message_count()?;
            let after = ix.applied_positions()?;
            Ok((before, ids, count, after))
        };
        match read() {
            Ok((before, ids, count, after)) if before == after => {
                view = Some((before, ids, count));
                break;
            }
            Ok(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
            Err(e) => {
                iv.problems.push(format!("cannot be read: {e}"));
                return iv;
            }
        }
    }
    let Some((positions, ids, count)) = view else {
        iv.problems.push("kept changing while being read; run verify again".into());
        return iv;
    };
    iv.messages = Some(count);
    iv.applied = positions.clone();
    let mut complete_history = true;
    for (lane, pos) in &positions {
        match journals.get(lane) {
            Some(j) => {
                let last = j.last_lsn();
                if *pos > last {
                    iv.problems.push(format!("applied position {pos} of lane {lane} is ahead of its journal (last LSN {last}); run `logbook repair`"));
                }
            }
            None if dir.join(LANES_DIR).join(lane).exists() => complete_history = false,
            None => iv.problems.push(format!("refers to lane {lane}, which this store does not have")),
        }
    }
    for (name, j) in journals {
        let pos = positions.get(name).copied().unwrap_or(0);
        iv.unindexed += j.last_lsn().saturating_sub(pos);
    }
    // Journal ids up to the applied positions.
    let mut history = LiveSet::default();
    let total: u64 = positions.values().sum();
    let mut done = 0u64;
    for (name, j) in journals {
        let pos = positions.get(name).copied().unwrap_or(0);
        if j.status().holes > 0 {
            complete_history = false; // salvaged damage: the index may hold the only copy
        }
        if j.first_lsn() > 1 {
            complete_history = false; // retention removed segments: the index holds the only copy
        }
        for r in j.iter_from(j.first_lsn()) {
            match r {
                Ok(rec) if rec.lsn > pos => break,
                Ok(rec) => {
                    done += 1;
                    if done.is_multiple_of(10_000) {
                        progress("comparing journal and index", done, total);
                    }
                    match entry::decode_record(lane_number(name).unwrap_or(0), rec.lsn, &rec.payload) {
                        Ok(e) => history.add(e),
                        Err(e) => iv.problems.push(format!("lane {name} record {} does not decode: {e}", rec.lsn)),
                    }
                }
                Err(e) => {
                    complete_history = false;
                    iv.problems.push(format!("lane {name} cannot be read to compare with the index: {e}"));
                    break;
                }
            }
        }
    }
    progress("comparing journal and index", total, total);
    // What the index must hold: the journal's messages less those its history operations removed.
    let journal_ids = history.live_ids();
    iv.journal_messages = Some(journal_ids.len() as u64);
    let index_ids: BTreeSet<String> = ids.into_iter().collect();
    let missing: Vec<&String> = journal_ids.difference(&index_ids).collect();
    if !missing.is_empty() {
        iv.problems.push(format!(
            "{} message(s) applied from the journal are missing from the index (first: {}); run `logbook repair`",
            missing.len(),
            missing.first().map(|s| s.as_str()).unwrap_or("")
        ));
    }
    if complete_history {
        let extra: Vec<&String> = index_ids.difference(&journal_ids).collect();
        if !extra.is_empty() {
            iv.problems.push(format!(
                "{} indexed message(s) are not in the journal (first: {}); run `logbook repair`",
                extra.len(),
                extra.first().map(|s| s.as_str()).unwrap_or("")
            ));
        }
        if iv.unindexed == 0 && journal_ids.len() as u64 != count {
            iv.problems.push(format!(
                "index holds {count} messages but the journal has {} distinct message ids",
                journal_ids.len()
            ));
        }
    }
    iv
}
