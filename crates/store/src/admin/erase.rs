//! `erase`: removes the content that deletions covered from every file of the store folder, so
//! that deleted means gone from the disk, not only from reads (docs/design.md "Deletion that
//! erases").
//!
//! A pass, with the compactor lock held (passes never overlap, and no `rebuild-index` runs):
//!
//! 1. lists the pending-erasure markers (`erase.pending-*`) it will clear if it completes;
//! 2. brings the index up to date when the caller is not the compactor (the index drops a
//!    deletion's rows, FTS5 secure-delete and SQLite `secure_delete`, when it applies it);
//! 3. reads every lane and decides which records hold content no read may return any more
//!    (messages a deletion covered, updates of them, patches and counters of a deleted session
//!    not recreated), and collects their texts;
//! 4. overwrites those records in place in every segment, sealed or not, whoever writes the lane
//!    (`tidelog_journal::overwrite_records`: same inode, crash-safe through a redo file, so no
//!    descriptor or map of another process keeps the old bytes); damaged ranges of salvaged
//!    segments lose the deleted texts they hold;
//! 5. cleans what other commands left: scratch folders of killed commands (their lock free), a
//!    killed `rebuild-index`'s file, copies a rewrite of an older version left; and scrubs the
//!    quarantines: a quarantined copy of journal bytes gets its erasable records erased in place
//!    and any deleted text left zeroed, a quarantined index copy has the deleted rows removed
//!    through SQLite (zeroed byte by byte if SQLite cannot open it). Nothing else in a quarantine
//!    is changed or removed (what it keeps may be the last copy of something);
//! 6. vacuums the index if it deleted rows since the last complete pass (moved cells leave old
//!    bytes that `secure_delete` does not reach), and checkpoints its WAL (`TRUNCATE`), so old
//!    page images leave `index.db-wal`;
//! 7. if nothing is left pending, clears the markers it listed and the index's pending time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use tidelog_journal::{Journal, RecoveryMode};
use tracing::{info, warn};

use super::deleted::{
    self, Needles, Plan, copy_salts, needle_ranges, note_source, scrub_file, scrub_index_copy, scrub_journal_copy,
};
use crate::entry::{self, Entry};
use crate::error::Result;
use crate::index::{Index, IndexOptions};
use crate::layout::{
    INDEX_FILE, REBUILDING_FILE, clean_stale_temp_dirs, erase_markers, lane_dir, lane_names, lane_number,
    remove_erase_markers, remove_rebuilding_files, temp_dirs_in_use, try_lock_compactor, wal_path,
};
use crate::model::RewriteMode;

/// How long the pass retries a checkpoint that readers keep busy.
const CHECKPOINT_TRIES: Duration = Duration::from_secs(3);

/// What an erase pass did and what is left.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EraseReport {
    /// Records that held erasable content before the pass.
    pub erasable_records: u64,
    /// Records overwritten in place by this pass.
    pub erased_records: u64,
    /// Segment files changed.
    pub segments_overwritten: Vec<PathBuf>,
    /// Bytes of segment files given back to the file system: the blocks of zeros erased records
    /// are padded with (punched out; the files read the same).
    pub reclaimed_bytes: u64,
    /// Other files whose deleted content was removed (quarantined copies).
    pub scrubbed: Vec<PathBuf>,
    /// Files and folders removed (leftovers of killed commands, copies of segments).
    pub removed: Vec<PathBuf>,
    /// What still holds erasable content, and why it could not be erased now.
    pub pending: Vec<String>,
    /// The texts of the deleted messages this pass saw (to search the folder for them after).
    #[serde(skip)]
    pub needles: Needles,
}

impl EraseReport {
    /// True when the pass left nothing pending: no file of the store holds content a deletion
    /// covered (except a scratch copy of a command running now, which is pending).
    pub fn is_complete(&self) -> bool {
        self.pending.is_empty()
    }
}

/// Erases, from every file of the store in `dir`, the content deletions covered. `own` is this
/// process's lane when the caller is the compactor of a running store (which holds the compactor
/// lock and has applied everything to the index); any other caller takes the compactor lock for
/// the pass and gets [`Error::CompactorBusy`](crate::Error::CompactorBusy) if a running process
/// holds it (that process erases within its deadline).
pub fn erase_store(dir: &Path, own: Option<&Journal>) -> Result<EraseReport> {
    let _lock = match own {
        Some(_) => None,
        None => Some(
            try_lock_compactor(dir)?
                .ok_or_else(|| crate::Error::CompactorBusy { lock: dir.join(crate::layout::COMPACTOR_LOCK) })?,
        ),
    };
    let started = Instant::now();
    let mut rep = EraseReport::default();
    let markers: Vec<PathBuf> = erase_markers(dir).into_iter().map(|(p, _)| p).collect();
    let index_path = dir.join(INDEX_FILE);
    if own.is_none() && index_path.exists() {
        // The compactor's work, done here: the deletions must reach the index before the pass.
        if let Err(e) = super::rebuild_index_at(dir, &index_path, &mut |_, _, _| {}) {
            rep.pending.push(format!("{}: cannot apply the journal to it: {e}", index_path.display()));
        }
    }
    let (journals, unreadable) = open_lanes(dir)?;
    rep.pending.extend(unreadable);
    // Only what the index applied: a row leaves the full-text indexes with its text, read from
    // the journal when the text is kept only there, so the text must still be there then.
    let applied = if index_path.exists() {
        match Index::open_read_only(&index_path, &IndexOptions::default()).and_then(|ix| ix.applied_positions()) {
            Ok(a) => Some(a),
            Err(e) => {
                rep.pending.push(format!("{}: cannot read its applied positions: {e}", index_path.display()));
                None
            }
        }
    } else {
        None
    };
    if index_path.exists() && applied.is_none() {
        clean_leftovers(dir, &mut rep);
        return Ok(rep);
    }
    let plan = Plan::build_applied(&journals, applied.as_ref())?;
    for (lane, lsn) in &plan.deferred {
        rep.pending.push(format!(
            "{}: the deletion at LSN {lsn} of lane {lane} is not applied yet (erased by a later pass)",
            index_path.display()
        ));
    }
    if plan.any_deletion() {
        rep.erasable_records = collect_texts(&plan, &journals, &mut rep.needles)?;
        let ac = rep.needles.matcher().map(|(ac, _)| ac);
        erase_lanes(dir, &plan, ac.as_ref(), &mut rep);
        scrub_quarantines(dir, &plan, ac.as_ref(), &mut rep);
    }
    clean_leftovers(dir, &mut rep);
    // A deletion appended while the pass ran is for the next pass.
    for (name, j) in &journals {
        let from = plan.read_to.get(name).copied().unwrap_or(0) + 1;
        let lane = lane_number(name).unwrap_or(0);
        let _ = j.refresh();
        let late = j.iter_from(from).flatten().any(|r| match entry::decode_record(lane, r.lsn, &r.payload) {
            Ok(Entry::Delete(_)) => true,
            Ok(Entry::Rewrite(rw)) => rw.rewrite_mode() == RewriteMode::Delete,
            _ => false,
        });
        if late {
            rep.pending.push(format!("lane {name}: a deletion was made during the pass; the next pass erases it"));
        }
    }
    if index_path.exists()
        && let Err(e) = finish_index(&index_path, &mut rep)
    {
        rep.pending.push(format!("{}: {e}", index_path.display()));
    }
    if rep.is_complete() {
        remove_erase_markers(dir, &markers)?;
    }
    info!(
        erasable = rep.erasable_records,
        erased = rep.erased_records,
        segments = rep.segments_overwritten.len(),
        scrubbed = rep.scrubbed.len(),
        removed = rep.removed.len(),
        pending = rep.pending.len(),
        ms = started.elapsed().as_millis() as u64,
        "erase pass"
    );
    Ok(rep)
}

/// Counts the records holding erasable content and collects the texts of deleted messages (and
/// of live ones, which are never searched for).
fn collect_texts(plan: &Plan, journals: &BTreeMap<String, Journal>, needles: &mut Needles) -> Result<u64> {
    let mut n = 0;
    for (name, j) in journals {
        let lane = lane_number(name).unwrap_or(0);
        let to = plan.read_to.get(name).copied().unwrap_or(0);
        for r in j.iter_from(j.first_lsn()) {
            let r = r?;
            if r.lsn > to {
                break;
            }
            if let Ok(e) = entry::decode_record(lane, r.lsn, &r.payload) {
                plan.texts(&e, needles);
                n += u64::from(plan.replacement(&e).is_some());
            }
        }
    }
    Ok(n)
}

/// Overwrites the erasable records of every segment of every lane in place.
fn erase_lanes(dir: &Path, plan: &Plan, ac: Option<&aho_corasick::AhoCorasick>, rep: &mut EraseReport) {
    let opts = super::read_options(RecoveryMode::Strict);
    let scrub = |bytes: &[u8]| ac.map(|ac| needle_ranges(ac, bytes)).unwrap_or_default();
    for name in lane_names(dir).unwrap_or_default() {
        let ldir = lane_dir(dir, &name);
        let lane = lane_number(&name).unwrap_or(0);
        let ids = match tidelog_journal::segment_ids(&ldir, &opts) {
            Ok(ids) => ids,
            Err(e) => {
                rep.pending.push(format!("lane {name}: cannot list its segments: {e}"));
                continue;
            }
        };
        for id in ids {
            // Records erased before space was given back (or by an interrupted pass): their zeros too.
            match tidelog_journal::reclaim_segment(&ldir, &opts, id) {
                Ok(n) => rep.reclaimed_bytes += n,
                Err(e) => warn!(lane = %name, segment = id, "space of erased records not given back: {e}"),
            }
            let r = tidelog_journal::overwrite_records(
                &ldir,
                &opts,
                id,
                &mut |lsn, payload| plan.replace_payload(lane, lsn, payload),
                Some(&scrub),
            );
            match r {
                Ok(r) if r.replaced > 0 || r.scrubbed_bytes > 0 => {
                    rep.erased_records += r.replaced;
                    rep.reclaimed_bytes += r.reclaimed_bytes;
                    rep.segments_overwritten.push(r.path);
                }
                Ok(_) => {}
                // Removed by retention since it was listed.
                Err(tidelog_journal::Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    warn!(lane = %name, segment = id, "segment not erased: {e}");
                    rep.pending.push(format!("lane {name} segment {id}: cannot be erased in place: {e}"));
                }
            }
        }
        // Copies of segments an interrupted rewrite of an older version left: the segment holds
        // every record (removed; the next writable open would remove them too).
        for e in std::fs::read_dir(&ldir).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if let Some(orig) = n.strip_suffix(".rewrite.tmp")
                && ldir.join(orig).exists()
                && std::fs::remove_file(e.path()).is_ok()
            {
                rep.removed.push(e.path());
            }
        }
    }
}

/// Scrubs deleted content from the quarantined copies of every lane and of the index.
fn scrub_quarantines(dir: &Path, plan: &Plan, ac: Option<&aho_corasick::AhoCorasick>, rep: &mut EraseReport) {
    for f in crate::layout::QuarantinedFile::list_store(dir) {
        let name = f.path.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
        let in_lane = f.item.split_once('/').map(|(lane, _)| lane.to_string());
        let result = match &in_lane {
            Some(lane) => {
                let source = note_source(f.note.as_deref());
                let salts = copy_salts(&f.path, source.as_deref());
                scrub_journal_copy(&f.path, &salts, lane_number(lane).unwrap_or(0), plan, ac)
            }
            None if name.ends_with(INDEX_FILE) => match scrub_index_copy(&f.path, dir, plan) {
                Ok(n) => {
                    // Byte by byte too: what SQLite left in free space or its WAL is zeroed.
                    let z = ac.map(|ac| scrub_file(&f.path, ac)).transpose().map(|z| z.unwrap_or(0));
                    z.map(|z| n + z)
                }
                Err(e) => {
                    warn!(file = %f.path.display(), "quarantined index copy cannot be opened to erase rows ({e}); deleted texts in it are zeroed byte by byte");
                    ac.map(|ac| scrub_file(&f.path, ac)).transpose().map(|z| z.unwrap_or(0))
                }
            },
            // `-wal` and `-shm` of an index copy (merged into it when SQLite opened it, when it
            // could) and anything else: byte by byte.
            None => ac.map(|ac| scrub_file(&f.path, ac)).transpose().map(|z| z.unwrap_or(0)),
        };
        match result {
            Ok(0) => {}
            Ok(_) => rep.scrubbed.push(f.path.clone()),
            Err(e) if !f.path.exists() => {
                // A `-wal` merged and removed when its database was opened.
                let _ = e;
            }
            Err(e) => rep.pending.push(format!("{}: deleted content cannot be removed from it: {e}", f.path.display())),
        }
    }
}

/// Leftovers of killed commands: stale scratch folders, a killed `rebuild-index`'s file. (The
/// compactor lock is held: no rebuild runs now.)
fn clean_leftovers(dir: &Path, rep: &mut EraseReport) {
    let stale: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(".logbook-tmp-")))
        .collect();
    clean_stale_temp_dirs(dir);
    rep.removed.extend(stale.into_iter().filter(|p| !p.exists()));
    for p in temp_dirs_in_use(dir) {
        rep.pending.push(format!(
            "{}: scratch folder of a command running now (it may hold a copy of the index from before the deletion; removed when the command ends)",
            p.display()
        ));
    }
    let rebuilding = dir.join(REBUILDING_FILE);
    let wal = wal_path(&rebuilding);
    let had = [rebuilding.exists(), wal.exists()];
    match remove_rebuilding_files(dir) {
        Ok(()) => {
            rep.removed.extend([rebuilding, wal].into_iter().zip(had).filter(|(_, h)| *h).map(|(p, _)| p));
        }
        Err(e) => rep.pending.push(format!("{}: {e}", dir.join(REBUILDING_FILE).display())),
    }
}

/// The index's part: if it deleted rows since the last complete pass (it records when it applies
/// a deletion), `VACUUM` (see [`Index::vacuum`]: only rewriting every page clears the old bytes
/// of moved cells); then `wal_checkpoint(TRUNCATE)`, retried while readers keep it busy, so old
/// page images leave `-wal`; then, if the pass is complete, the record is cleared.
fn finish_index(path: &Path, rep: &mut EraseReport) -> Result<()> {
    let ix = Index::open(path, &IndexOptions::default())?;
    let since = ix.erase_pending_since_ms()?;
    if since.is_some() {
        let t = Instant::now();
        ix.vacuum()?;
        info!(ms = t.elapsed().as_millis() as u64, "index vacuumed after deletions");
    }
    let deadline = Instant::now() + CHECKPOINT_TRIES;
    loop {
        let s = ix.checkpoint_truncate()?;
        if !s.busy {
            break;
        }
        if Instant::now() >= deadline {
            rep.pending.push(format!(
                "{}: readers kept the WAL busy ({} page(s)); its old pages are checkpointed away by the next pass",
                wal_path(path).display(),
                s.log_pages
            ));
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if let Some(since) = since
        && rep.is_complete()
    {
        ix.clear_erase_pending(since)?;
        // The cleared record is the only page in the WAL now; no content.
        let _ = ix.checkpoint_truncate();
    }
    Ok(())
}

/// How many records of each lane still hold content a deletion covered (read-only; for
/// `verify`). Empty when there was never a deletion.
pub fn erasable_records(dir: &Path) -> Result<BTreeMap<String, u64>> {
    let (journals, _) = open_lanes(dir)?;
    let plan = Plan::build(&journals)?;
    if !plan.any_deletion() {
        return Ok(BTreeMap::new());
    }
    let mut counts = BTreeMap::new();
    for (name, j) in &journals {
        let lane = lane_number(name).unwrap_or(0);
        let mut n = 0;
        for r in j.iter_from(j.first_lsn()) {
            let r = r?;
            if let Ok(e) = entry::decode_record(lane, r.lsn, &r.payload)
                && plan.replacement(&e).is_some()
            {
                n += 1;
            }
        }
        if n > 0 {
            counts.insert(name.clone(), n);
        }
    }
    Ok(counts)
}

/// Read-only handles on every lane, and a line for each lane that cannot be read.
pub(crate) fn open_lanes(dir: &Path) -> Result<(BTreeMap<String, Journal>, Vec<String>)> {
    let ropts = super::read_options(RecoveryMode::Strict);
    let mut journals = BTreeMap::new();
    let mut unreadable = Vec::new();
    for name in lane_names(dir)? {
        match Journal::open_read_only(lane_dir(dir, &name), ropts.clone()) {
            Ok(j) => {
                journals.insert(name, j);
            }
            Err(e) => unreadable.push(format!("lane {name} cannot be read ({e}); it may hold erasable content")),
        }
    }
    Ok((journals, unreadable))
}

/// Every file under `dir` holding the text of a deleted message the pass saw (`rep.needles`):
/// the check after a pass, which reads every file.
pub fn find_erased_content(dir: &Path, rep: &EraseReport) -> Vec<deleted::DeletedContentFound> {
    deleted::find_in_files(dir, &rep.needles)
}
