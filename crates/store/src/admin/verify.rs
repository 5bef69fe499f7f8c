//! `verify`: checks a whole store without changing it, safe while writers run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use tidelog_journal::{Journal, RecoveryMode};

use super::deleted::DeletedContentFound;
use super::{Progress, read_options};
use crate::entry;
use crate::error::Result;
use crate::index::{Index, IndexError, IndexOptions};
use crate::layout::{INDEX_FILE, LANES_DIR, file_len, lane_dir, lane_names, lane_number, store_temp_dir, wal_path};
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
    /// files yet (the compactor erases it within `erase_within`; `tidelog erase` does it now).
    pub erasable_records: BTreeMap<String, u64>,
    /// Every file of the store folder that holds the text of a deleted message (each is a
    /// problem).
    pub deleted_content: Vec<DeletedContentFound>,
    /// Every problem, in words (empty when the store verifies).
    pub problems: Vec<String>,
}

impl VerifyReport {
    /// True when nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// How many times a lane is scanned again when a scan finds a problem: only a problem every scan
/// finds at the same place is reported (a commit in flight is gone by the next scan).
const CONFIRMING_SCANS: u32 = 3;

/// Checks a whole store without changing it (safe while writers run): every lane's segments
/// record by record ([`tidelog_journal::verify`]); the index's `quick_check` and FTS5
/// integrity-check (on a private copy, since the check is a write statement); that its applied
/// positions are not ahead of the journal; and that the message ids in the journal up to those
/// positions are exactly the indexed ones (so, once caught up, the counts are equal). In a
/// backup, that the backup completed.
///
/// Beside live writers: a writer's commit in flight (a batch half-written, preallocated zeros
/// not yet overwritten) looks like a torn tail or zeros in the middle to a scan that reads it at
/// that moment. A lane with a problem is therefore scanned again (`CONFIRMING_SCANS` times, a
/// little later each time) and only what every scan finds at the same place is reported. The
/// index is compared with the journal at one point: its positions and ids are read in one read
/// transaction, and the journals are opened after it, so they hold at least what it applied.
pub fn verify_store(dir: &Path, progress: Progress<'_>) -> Result<VerifyReport> {
    let mut rep = VerifyReport { dir: dir.to_path_buf(), ..VerifyReport::default() };
    if let Some(p) = super::backup::backup_problem(dir) {
        rep.problems.push(p);
    }
    // A folder every user may write to lets any of them replace or remove the history.
    if let Ok(m) = std::fs::metadata(dir) {
        use std::os::unix::fs::PermissionsExt;
        let mode = m.permissions().mode() & 0o7777;
        if mode & 0o002 != 0 {
            rep.problems.push(format!(
                "{} is writable by every user (mode {mode:o}); run `chmod 700 {}`",
                dir.display(),
                dir.display()
            ));
        }
    }
    let names = lane_names(dir)?;
    let total = names.len() as u64;
    let mut damaged = BTreeSet::new();
    for (i, name) in names.iter().enumerate() {
        progress("checking lanes", i as u64, total);
        let lv = verify_lane(dir, name);
        if !lv.problems.is_empty() {
            damaged.insert(name.clone());
        }
        rep.problems.extend(lv.problems.iter().map(|p| format!("lane {name}: {p}")));
        rep.lanes.push(lv);
    }
    progress("checking lanes", total, total);
    rep.index = verify_index(dir, &names, &damaged, progress);
    rep.problems.extend(rep.index.problems.iter().map(|p| format!("index: {p}")));
    // Deleted content anywhere in the folder: every file is searched for the texts of deleted
    // messages that any source still names (lanes, index and its copies, quarantined journal
    // bytes). Each file found is a problem: `tidelog erase` removes it (the compactor does
    // within its deadline).
    progress("searching for deleted content", 0, 0);
    match super::erasable_records(dir) {
        Ok(c) => rep.erasable_records = c,
        Err(e) => rep.problems.push(format!("cannot check for deleted content left in the journal: {e}")),
    }
    // The search opens and closes every file, the index's included: no SQLite connection of
    // this process may be open meanwhile (closing any descriptor of a file drops the process's
    // POSIX locks on it, and another process's SQLite would then take the index as unused and
    // reset its `-shm`). The live index is asked only after, about texts found.
    let journals: BTreeMap<String, Journal> =
        names.iter().filter_map(|n| open_lane(dir, n).ok().map(|j| (n.clone(), j))).collect();
    let found = super::deleted::find_deleted_content(dir, &journals)
        .map(|(hits, plan)| super::deleted::drop_kept(hits, &plan, &dir.join(INDEX_FILE)));
    match found {
        Ok(found) => {
            for f in &found {
                rep.problems.push(format!(
                    "{}: holds the text of deleted message {} ({} occurrence(s), the first at offset {}); run `tidelog erase`",
                    f.path.display(),
                    f.message_id,
                    f.occurrences,
                    f.offset
                ));
            }
            rep.deleted_content = found;
        }
        Err(e) => rep.problems.push(format!("cannot search the store for deleted content: {e}")),
    }
    Ok(rep)
}

/// One scan of a lane: the report (if the lane could be read) and its problems, each naming the
/// segment file.
fn scan_lane(ldir: &Path) -> (Option<tidelog_journal::RecoveryReport>, Vec<String>) {
    match tidelog_journal::verify(ldir, &read_options(RecoveryMode::Strict)) {
        Ok(r) => {
            let problems = r.problems.iter().map(|p| name_segment_file(ldir, p)).collect();
            (Some(r), problems)
        }
        Err(e) => (None, vec![e.to_string()]),
    }
}

/// The journal names damage in the middle of a segment by the segment's number ("segment 3
/// offset 4096: ..."): name its file instead, as every other problem does.
fn name_segment_file(ldir: &Path, problem: &str) -> String {
    let Some(rest) = problem.strip_prefix("segment ") else { return problem.to_string() };
    let Some((id, tail)) = rest.split_once(' ') else { return problem.to_string() };
    match id.parse::<u64>() {
        Ok(id) if tail.starts_with("offset ") => {
            let file = ldir.join(tidelog_journal::decode::segment_file_name(id));
            format!("{} {tail}", file.display())
        }
        _ => problem.to_string(),
    }
}

/// What identifies a problem across scans: its text without the LSN range it affects (which
/// grows while a writer appends behind damage).
fn problem_key(p: &str) -> &str {
    p.split(" (LSNs ").next().unwrap_or(p)
}

fn verify_lane(dir: &Path, name: &str) -> LaneVerify {
    let ldir = lane_dir(dir, name);
    let (mut report, mut problems) = scan_lane(&ldir);
    let mut scans = 0;
    while !problems.is_empty() && scans < CONFIRMING_SCANS {
        scans += 1;
        std::thread::sleep(Duration::from_millis(40 * u64::from(scans)));
        let (r, again) = scan_lane(&ldir);
        let seen: BTreeSet<&str> = problems.iter().map(|p| problem_key(p)).collect();
        let confirmed: Vec<String> = again.iter().filter(|p| seen.contains(problem_key(p))).cloned().collect();
        if confirmed.len() < problems.len() {
            tracing::debug!(
                lane = name,
                was = problems.len(),
                now = confirmed.len(),
                "a scan did not find again what an earlier one found (a commit in flight)"
            );
        }
        problems = confirmed;
        if r.is_some() {
            report = r;
        }
    }
    let mut lv = LaneVerify { name: name.to_string(), problems, ..LaneVerify::default() };
    if let Some(r) = report {
        lv.segments = r.segments;
        lv.records = r.records_scanned;
        lv.first_lsn = r.first_lsn;
        lv.last_lsn = r.last_lsn;
        lv.known_holes = r.known_holes;
    }
    lv
}

/// A read-only handle on a lane, read past damage the lane check already reported (Salvage, in
/// memory). Opening may meet a commit in flight: it is tried again.
fn open_lane(dir: &Path, name: &str) -> std::result::Result<Journal, tidelog_journal::Error> {
    let ldir = lane_dir(dir, name);
    let mut tries = 0;
    loop {
        match Journal::open_read_only(&ldir, read_options(RecoveryMode::Salvage)) {
            Ok(j) => return Ok(j),
            Err(_) if tries < CONFIRMING_SCANS => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(40 * u64::from(tries)));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The index's state at one point: applied positions, message ids, message count.
type IndexView = (BTreeMap<String, u64>, Vec<String>, u64);

fn verify_index(dir: &Path, names: &[String], damaged: &BTreeSet<String>, progress: Progress<'_>) -> IndexVerify {
    let path = dir.join(INDEX_FILE);
    let mut iv = IndexVerify { path: path.clone(), present: path.exists(), ..IndexVerify::default() };
    iv.db_bytes = file_len(&path);
    iv.wal_bytes = file_len(&wal_path(&path));
    if !iv.present {
        let records: u64 = names.iter().filter_map(|n| open_lane(dir, n).ok()).map(|j| j.last_lsn()).sum();
        if records > 0 {
            iv.problems.push(format!("{} is missing; run `tidelog rebuild-index`", path.display()));
        }
        return iv;
    }
    // The copy below is checked in a scratch folder: its texts kept in the journal are the store's.
    let opts = IndexOptions { journal_text: Some(dir.to_owned()), ..IndexOptions::default() };
    let ix = match Index::open_read_only(&path, &opts) {
        Ok(ix) => ix,
        Err(e) => {
            iv.problems.push(format!("{} cannot be opened: {e}; run `tidelog repair`", path.display()));
            return iv;
        }
    };
    // Integrity: on a private copy, where the FTS5 integrity-check (a write statement) may run.
    // The copy is taken in one step (a commit of the compactor does not restart it) into a
    // scratch folder that is removed when done, and by the next run if this one is killed.
    progress("checking the index", 0, 0);
    match store_temp_dir(dir, "verify") {
        Ok(tmp) => {
            let copy = tmp.path().join(INDEX_FILE);
            match ix.backup_to(&copy).and_then(|()| Index::open(&copy, &opts)).and_then(|c| c.check_content()) {
                Ok(p) => iv
                    .problems
                    .extend(super::summarize_check(p).into_iter().map(|p| format!("{}: {p}", path.display()))),
                Err(e) if e.is_corruption() => {
                    iv.problems.push(format!("{}: {e}; run `tidelog repair`", path.display()))
                }
                Err(e) => iv.problems.push(format!("{} could not be checked: {e}", path.display())),
            }
        }
        Err(e) => iv.problems.push(format!("{} could not be checked (no scratch folder): {e}", path.display())),
    }
    // One consistent point: positions, ids and count in one read transaction ...
    let view = ix.read_snapshot(|ix| -> std::result::Result<IndexView, IndexError> {
        Ok((ix.applied_positions()?, ix.message_ids()?, ix.message_count()?))
    });
    let (positions, ids, count) = match view {
        Ok(v) => v,
        Err(e) => {
            iv.problems.push(format!("{} cannot be read: {e}", path.display()));
            return iv;
        }
    };
    // ... then the journals, opened after it: they hold at least every entry it applied.
    let mut journals: BTreeMap<String, Journal> = BTreeMap::new();
    let mut complete_history = damaged.is_empty();
    for name in names {
        match open_lane(dir, name) {
            Ok(j) => {
                journals.insert(name.clone(), j);
            }
            Err(e) => {
                complete_history = false;
                if !damaged.contains(name) {
                    iv.problems.push(format!("lane {name} cannot be read to compare with the index: {e}"));
                }
            }
        }
    }
    iv.messages = Some(count);
    iv.applied = positions.clone();
    for (lane, pos) in &positions {
        match journals.get(lane) {
            // A damaged lane was reported above; what the index says of it follows from that.
            _ if damaged.contains(lane) => {}
            Some(j) => {
                let last = j.last_lsn();
                if *pos > last {
                    iv.problems.push(format!("{}: applied position {pos} of lane {lane} is ahead of its journal (last LSN {last}); run `tidelog repair`", path.display()));
                }
            }
            None if dir.join(LANES_DIR).join(lane).exists() => complete_history = false,
            None => {
                iv.problems.push(format!("{}: refers to lane {lane}, which this store does not have", path.display()))
            }
        }
    }
    for (name, j) in &journals {
        let pos = positions.get(name).copied().unwrap_or(0);
        iv.unindexed += j.last_lsn().saturating_sub(pos);
    }
    // Journal ids up to the applied positions.
    let mut history = LiveSet::default();
    let total: u64 = positions.values().sum();
    let mut done = 0u64;
    for (name, j) in &journals {
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
                    if !damaged.contains(name) {
                        iv.problems.push(format!("lane {name} cannot be read to compare with the index: {e}"));
                    }
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
            "{}: {} message(s) applied from the journal are missing from the index (first: {}); run `tidelog repair`",
            path.display(),
            missing.len(),
            missing.first().map(|s| s.as_str()).unwrap_or("")
        ));
    }
    if complete_history {
        let extra: Vec<&String> = index_ids.difference(&journal_ids).collect();
        if !extra.is_empty() {
            iv.problems.push(format!(
                "{}: {} indexed message(s) are not in the journal (first: {}); run `tidelog repair`",
                path.display(),
                extra.len(),
                extra.first().map(|s| s.as_str()).unwrap_or("")
            ));
        }
        if iv.unindexed == 0 && journal_ids.len() as u64 != count {
            iv.problems.push(format!(
                "{}: holds {count} messages but the journal has {} distinct message ids",
                path.display(),
                journal_ids.len()
            ));
        }
    }
    iv
}
