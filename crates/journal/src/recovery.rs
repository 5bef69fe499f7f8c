//! Recovery on open: check sealed segments through their footers and the chain, scan the active
//! segment, cut torn tails into the quarantine, and refuse (Strict) or salvage mid-log damage.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use crate::error::{Error, Result};
use crate::files::{self, Hole, Quarantine};
use crate::format::{
    FOOTER_LEN, Footer, SEGMENT_HEADER_LEN, SegmentHeader, parse_segment_file_name, segment_file_name,
};
use crate::options::{Options, RecoveryMode, SealedCheck};
use crate::scan::{Damage, ScanMode, scan_segment};
use crate::storage::StorageFile;

/// A torn tail that recovery cut off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The segment file.
    pub segment: PathBuf,
    /// Where the cut starts (the new end of the segment's records).
    pub offset: u64,
    /// Number of bytes cut (copied into the quarantine first).
    pub len: u64,
    /// What was found there.
    pub reason: String,
    /// The copy, relative to the journal folder.
    pub quarantine_file: String,
}

/// What recovery found and did when the journal was opened.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    /// Segments found.
    pub segments: usize,
    /// Sealed segments accepted through their footer without reading their records.
    pub sealed_checked_by_footer: usize,
    /// Segments scanned record by record.
    pub segments_scanned: usize,
    /// Records read while scanning.
    pub records_scanned: u64,
    /// Torn tails cut off (normally zero or one).
    pub torn_tails: Vec<TornTail>,
    /// Mid-log damage salvaged during this open (Salvage mode only), with the LSNs lost.
    pub salvaged: Vec<Hole>,
    /// Damage salvaged by an earlier open, skipped again.
    pub known_holes: usize,
    /// Files moved into the quarantine whole (leftover temporary files, unreadable segments).
    pub quarantined_files: Vec<String>,
    /// A new segment created by this open (first open, or after a sealed last segment).
    pub created_segment: Option<u64>,
    /// Lowest LSN present.
    pub first_lsn: u64,
    /// Highest LSN present (0 if the journal is empty).
    pub last_lsn: u64,
    /// Every anomaly found, in words (empty when the journal is clean).
    pub problems: Vec<String>,
    /// Time spent.
    pub elapsed: Duration,
}

impl RecoveryReport {
    /// True if recovery found nothing to repair.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// Every LSN range lost to salvage in this open, as `(first, last)` inclusive.
    pub fn lost_lsns(&self) -> Vec<(u64, u64)> {
        self.salvaged.iter().filter(|h| h.lost_count() > 0).map(|h| (h.first_lost_lsn, h.last_lost_lsn)).collect()
    }
}

/// One segment as recovery left it.
#[derive(Debug, Clone)]
pub(crate) struct SegmentMeta {
    pub id: u64,
    pub path: PathBuf,
    pub header: SegmentHeader,
    pub last_lsn: u64,
    pub records: u64,
    pub data_end: u64,
    pub digest: u32,
    pub footer: Option<Footer>,
    pub file: Arc<dyn StorageFile>,
}

impl SegmentMeta {
    /// The digest the next segment's `prev_digest` refers to: the digest the segment had when it
    /// was sealed, which a rewrite keeps in the header.
    pub(crate) fn chain_digest(&self) -> u32 {
        self.header.chain_digest.unwrap_or(self.digest)
    }
}

/// The state recovery hands to the journal.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub segments: Vec<SegmentMeta>,
    pub holes: Vec<Hole>,
    pub report: RecoveryReport,
    /// The last segment is sealed or there is none: a new active segment must be created.
    pub needs_new_segment: bool,
}

enum Action {
    Torn { seg: usize, damage: Damage },
    Salvage { hole: Hole, seg: Option<usize> },
    MoveFile { path: PathBuf, len: u64, reason: String },
}

fn corrupt(path: &Path, offset: u64, first: u64, last: u64, detail: impl Into<String>) -> Error {
    Error::Corrupt {
        path: path.to_path_buf(),
        offset,
        first_lost_lsn: first,
        last_lost_lsn: last,
        detail: detail.into(),
    }
}

/// Runs recovery. A read-only recovery changes nothing: it neither cuts tails nor writes the
/// quarantine, and treats the end of the last segment as the end of the log.
pub(crate) fn recover(dir: &Path, opts: &Options, read_only: bool, classify_last: bool) -> Result<Recovered> {
    let started = Instant::now();
    let storage = &*opts.storage;
    let salvage = opts.recovery == RecoveryMode::Salvage;
    let mut report = RecoveryReport::default();
    let mut actions: Vec<Action> = Vec::new();

    // An overwrite of records in place (erasure) must not run while the files are checked and
    // repaired; one that stopped half-way is completed from its redo file before anything is
    // read. A read-only look cannot take part: it waits a moment for one in flight.
    let _erase_lock = if read_only {
        wait_for_overwrite(storage, dir);
        None
    } else {
        let lock = crate::overwrite::lock_erase(storage, dir, crate::overwrite::ERASE_LOCK_WAIT)?;
        if lock.is_none() {
            return Err(Error::EraseBusy { path: dir.join(crate::overwrite::ERASE_LOCK_FILE) });
        }
        if let Some(done) = crate::overwrite::apply_leftover_redo(storage, dir)? {
            report.problems.push(format!("{}: {done}", dir.display()));
        }
        lock
    };
    let names = storage.list(dir).map_err(|e| Error::io("list", dir, e))?;
    let mut ids: Vec<u64> = names.iter().filter_map(|n| parse_segment_file_name(n)).collect();
    ids.sort_unstable();
    if read_only && names.iter().any(|n| n == crate::overwrite::REDO_FILE) {
        report.problems.push(format!(
            "{}: an erase stopped half-way ({} is left); the next writable open or erase pass completes it",
            dir.display(),
            crate::overwrite::REDO_FILE
        ));
    }
    for n in &names {
        if !read_only
            && let Some(original) = n.strip_suffix(".rewrite.tmp")
            && ids.iter().any(|&id| segment_file_name(id) == original)
        {
            // A rewritten copy of a segment that is still there (erasure of an older version,
            // stopped before its rename): the segment holds every record; the copy is not data
            // and may hold content erased since. Removed, not quarantined.
            let path = dir.join(n);
            storage.remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
            storage.sync_dir(dir).map_err(|e| Error::io("sync folder", dir, e))?;
            info!(file = %path.display(), "removed the copy an interrupted segment rewrite left");
            continue;
        }
        if !read_only && (n.ends_with(".tmp") || n.contains(".tmp-")) {
            let path = dir.join(n);
            let len = storage.open(&path, crate::storage::OpenMode::Read).and_then(|f| f.len()).unwrap_or(0);
            actions.push(Action::MoveFile { path, len, reason: "temporary file left by an interrupted write".into() });
        }
    }
    let mut holes = files::read_holes(storage, dir)?;
    let known = |holes: &[Hole], seg: u64, off: u64| holes.iter().any(|h| h.segment_id == seg && h.offset == off);
    report.known_holes = holes.len();
    report.segments = ids.len();

    let mut segments: Vec<SegmentMeta> = Vec::new();
    let n = ids.len();
    for (i, &id) in ids.iter().enumerate() {
        let is_last = i + 1 == n;
        let path = dir.join(segment_file_name(id));
        let file = files::open_read(storage, &path)?;
        let len = file.len().map_err(|e| Error::io("stat", &path, e))?;
        let seg_holes: Vec<&Hole> = holes.iter().filter(|h| h.segment_id == id).collect();

        // Fast path: header + footer. A salvage that may change files reads every record: damage
        // inside a sealed record is invisible to the footer check, and salvage is where it must
        // be found and isolated.
        let full = opts.sealed_check == SealedCheck::Full || (salvage && !read_only);
        if !is_last && !full && seg_holes.is_empty() {
            if let Some(meta) = check_by_footer(&file, &path, id, len)? {
                report.sealed_checked_by_footer += 1;
                segments.push(meta);
                continue;
            }
            warn!(segment = %path.display(), "sealed segment has no valid footer; scanning it record by record");
        }

        report.segments_scanned += 1;
        // The last segment is classified even by a read-only look: damage to a record written in
        // full is reported; what looks like a write in flight is where reading stops.
        let mode = ScanMode { salvage, classify: true, max_len: opts.max_record_size };
        let mut scan = scan_segment(&*file, len, &seg_holes, mode).map_err(|e| Error::io("read", &path, e))?;
        if read_only && is_last && matches!(&scan, Ok(s) if !s.middle.is_empty()) {
            // A live writer may have completed a record between two reads of the scan: look again
            // and believe damage only if it is still there.
            let len2 = file.len().map_err(|e| Error::io("stat", &path, e))?;
            let again = scan_segment(&*file, len2, &seg_holes, mode).map_err(|e| Error::io("read", &path, e))?;
            if matches!(&again, Ok(s) if s.middle.is_empty()) {
                scan = again;
            }
        }
        let scan = match scan {
            Ok(s) => s,
            Err(why) => {
                // The header itself is unreadable: we do not know the salt, so nothing in the file
                // can be validated.
                let prev_last = segments.last().map(|s| s.last_lsn).unwrap_or(0);
                // A segment gets its final name only after its header was synced (see
                // `create_segment`), so an empty or zeroed one lost its bytes after it was
                // created: what it held, from the previous segment's end on, is gone, and how
                // much is unknown when it was the last segment. That is damage, never a torn
                // tail.
                if known(&holes, id, 0) {
                    continue;
                }
                if !salvage {
                    error!(segment = %path.display(), "segment header unreadable: {why}");
                    return Err(corrupt(
                        &path,
                        0,
                        prev_last + 1,
                        u64::MAX,
                        format!("segment header unreadable: {why}"),
                    ));
                }
                let hole = Hole {
                    segment_id: id,
                    offset: 0,
                    len,
                    first_lost_lsn: prev_last + 1,
                    // Every LSN up to the next segment's first is lost with this file; unknown
                    // (none reported) if no later segment says where it starts.
                    last_lost_lsn: next_first_lsn(storage, dir, ids.get(i + 1).copied())
                        .map_or(prev_last, |f| f.saturating_sub(1).max(prev_last)),
                    reason: if is_last {
                        format!(
                            "segment header unreadable ({len} bytes): {why}; whole file quarantined; the LSNs it held from {} on are lost (how many is unknown: it was the last segment)",
                            prev_last + 1
                        )
                    } else {
                        format!("segment header unreadable: {why}; whole file quarantined")
                    },
                    quarantine_file: None,
                    time_unix_ms: files::now_ms(),
                };
                actions.push(Action::MoveFile { path: path.clone(), len, reason: hole.reason.clone() });
                actions.push(Action::Salvage { hole, seg: None });
                continue;
            }
        };
        report.records_scanned += scan.records;
        if scan.header.segment_id != id {
            return Err(Error::BrokenChain {
                path,
                detail: format!("file name says segment {id} but its header says {}", scan.header.segment_id),
            });
        }
        let seg_index = segments.len();
        for d in &scan.middle {
            if known(&holes, id, d.offset) {
                continue;
            }
            if !salvage {
                error!(segment = %path.display(), offset = d.offset, first_lost = d.first_lost_lsn, last_lost = d.last_lost_lsn, "mid-log corruption: {}", d.reason);
                return Err(corrupt(&path, d.offset, d.first_lost_lsn, d.last_lost_lsn, d.reason.clone()));
            }
            let hole = Hole {
                segment_id: id,
                offset: d.offset,
                len: d.end - d.offset,
                first_lost_lsn: d.first_lost_lsn,
                last_lost_lsn: d.last_lost_lsn,
                reason: d.reason.clone(),
                quarantine_file: None,
                time_unix_ms: files::now_ms(),
            };
            actions.push(Action::Salvage { hole, seg: Some(seg_index) });
        }
        if let Some(d) = &scan.tail {
            if is_last {
                if classify_last {
                    actions.push(Action::Torn { seg: seg_index, damage: d.clone() });
                }
            } else if !known(&holes, id, d.offset) {
                let next_first = next_first_lsn(storage, dir, ids.get(i + 1).copied());
                let last_lost = next_first.map(|f| f.saturating_sub(1)).unwrap_or(u64::MAX);
                if !salvage {
                    error!(segment = %path.display(), offset = d.offset, "damage at the end of a sealed segment: {}", d.reason);
                    return Err(corrupt(
                        &path,
                        d.offset,
                        d.first_lost_lsn,
                        last_lost,
                        format!("{} (in a sealed segment, followed by later segments)", d.reason),
                    ));
                }
                let hole = Hole {
                    segment_id: id,
                    offset: d.offset,
                    len: len.saturating_sub(d.offset),
                    first_lost_lsn: d.first_lost_lsn,
                    last_lost_lsn: last_lost.min(d.first_lost_lsn.saturating_add(1 << 40)),
                    reason: d.reason.clone(),
                    quarantine_file: None,
                    time_unix_ms: files::now_ms(),
                };
                actions.push(Action::Salvage { hole, seg: Some(seg_index) });
            }
        } else if !is_last
            && scan.footer.is_none()
            && !known(&holes, id, scan.data_end)
            // An earlier salvage already skipped the segment's end.
            && !seg_holes.iter().any(|h| h.offset.saturating_add(h.len) >= len)
        {
            let detail = "segment is not sealed but later segments exist (its footer is missing)";
            if !salvage {
                error!(segment = %path.display(), offset = scan.data_end, "{detail}");
                return Err(Error::BrokenChain { path, detail: detail.into() });
            }
            let hole = Hole {
                segment_id: id,
                offset: scan.data_end,
                len: len.saturating_sub(scan.data_end),
                first_lost_lsn: scan.last_lsn + 1,
                // The records between this segment's end and the next segment's start are lost.
                last_lost_lsn: next_first_lsn(storage, dir, ids.get(i + 1).copied())
                    .map_or(scan.last_lsn, |f| f.saturating_sub(1).max(scan.last_lsn)),
                reason: detail.into(),
                quarantine_file: None,
                time_unix_ms: files::now_ms(),
            };
            actions.push(Action::Salvage { hole, seg: Some(seg_index) });
        }
        if let Some(f) = &scan.footer
            && (f.last_lsn != scan.last_lsn || f.record_count != scan.records || f.digest != scan.digest)
        {
            let detail = format!(
                "footer says last LSN {}, {} records, digest {:08x}; the records say {}, {}, {:08x}",
                f.last_lsn, f.record_count, f.digest, scan.last_lsn, scan.records, scan.digest
            );
            if scan.middle.is_empty() && seg_holes.is_empty() {
                error!(segment = %path.display(), "{detail}");
                report.problems.push(format!("{}: {detail}", path.display()));
                if !salvage {
                    return Err(corrupt(&path, scan.data_end, scan.last_lsn + 1, f.last_lsn, detail));
                }
            }
        }
        segments.push(SegmentMeta {
            id,
            path,
            header: scan.header,
            last_lsn: scan.footer.map(|f| f.last_lsn.max(scan.last_lsn)).unwrap_or(scan.last_lsn),
            records: scan.records,
            data_end: scan.data_end,
            digest: scan.footer.map(|f| f.digest).unwrap_or(scan.digest),
            footer: scan.footer,
            file,
        });
    }

    // The chain between consecutive segments.
    for w in segments.windows(2) {
        let (Some(a), Some(b)) = (w.first(), w.get(1)) else { continue };
        let mut problems = Vec::new();
        if b.id != a.id + 1 {
            problems.push(format!("segments {}..={} are missing", a.id + 1, b.id - 1));
        }
        if b.header.first_lsn != a.last_lsn + 1 {
            problems.push(format!(
                "segment starts at LSN {} but the previous one ends at {}",
                b.header.first_lsn, a.last_lsn
            ));
        }
        if a.footer.is_some() && b.header.prev_digest != a.chain_digest() {
            problems.push(format!(
                "segment's chain digest {:08x} does not match the previous segment's digest {:08x} (a segment was substituted)",
                b.header.prev_digest,
                a.chain_digest()
            ));
        }
        if problems.is_empty()
            || known(&holes, b.id, 0)
            || actions.iter().any(|x| matches!(x, Action::Salvage { hole, .. } if hole.segment_id == a.id))
            // An earlier salvage of the end of `a` accounts for the LSNs up to `b`.
            || holes.iter().any(|h| h.segment_id == a.id && h.last_lost_lsn.saturating_add(1) == b.header.first_lsn)
        {
            continue;
        }
        let detail = problems.join("; ");
        if !salvage {
            error!(segment = %b.path.display(), "broken chain: {detail}");
            return Err(Error::BrokenChain { path: b.path.clone(), detail });
        }
        let hole = Hole {
            segment_id: b.id,
            offset: 0,
            len: 0,
            first_lost_lsn: a.last_lsn + 1,
            last_lost_lsn: b.header.first_lsn.saturating_sub(1),
            reason: format!("broken chain: {detail}"),
            quarantine_file: None,
            time_unix_ms: files::now_ms(),
        };
        actions.push(Action::Salvage { hole, seg: None });
    }

    // Carry out the decisions.
    let quarantine = Quarantine::new(storage, dir);
    let mut holes_changed = false;
    for action in actions {
        match action {
            Action::MoveFile { path, len, reason } => {
                report.problems.push(format!("{}: {reason}", path.display()));
                if read_only {
                    continue;
                }
                let q = quarantine.move_file(&path, len, &reason)?;
                warn!(file = %path.display(), len, to = %q, "moved to quarantine: {reason}");
                report.quarantined_files.push(q);
            }
            Action::Torn { seg, damage } => {
                let Some(meta) = segments.get_mut(seg) else { continue };
                let cut = damage.end.saturating_sub(damage.offset);
                report.problems.push(format!(
                    "{}: torn tail of {cut} bytes at offset {} ({})",
                    meta.path.display(),
                    damage.offset,
                    damage.reason
                ));
                if read_only {
                    if classify_last {
                        report.torn_tails.push(TornTail {
                            segment: meta.path.clone(),
                            offset: damage.offset,
                            len: cut,
                            reason: damage.reason,
                            quarantine_file: String::new(),
                        });
                    }
                    continue;
                }
                let q = quarantine.copy_range(
                    &*meta.file,
                    &meta.path,
                    damage.offset,
                    cut,
                    &format!("torn tail: {}", damage.reason),
                    None,
                )?;
                let w = storage
                    .open(&meta.path, crate::storage::OpenMode::ReadWrite)
                    .map_err(|e| Error::io("open", &meta.path, e))?;
                w.set_len(damage.offset).map_err(|e| Error::io("truncate", &meta.path, e))?;
                w.sync_data().map_err(|e| Error::io("sync", &meta.path, e))?;
                warn!(
                    segment = %meta.path.display(),
                    offset = damage.offset,
                    bytes = cut,
                    quarantine = %q,
                    "torn tail cut off: {}", damage.reason
                );
                meta.data_end = damage.offset;
                meta.file = w;
                report.torn_tails.push(TornTail {
                    segment: meta.path.clone(),
                    offset: damage.offset,
                    len: cut,
                    reason: damage.reason,
                    quarantine_file: q,
                });
            }
            Action::Salvage { mut hole, seg } => {
                report.problems.push(format!(
                    "segment {} offset {}: {} (LSNs {}..={} affected)",
                    hole.segment_id, hole.offset, hole.reason, hole.first_lost_lsn, hole.last_lost_lsn
                ));
                if !read_only {
                    if let Some(meta) = seg.and_then(|i| segments.get(i))
                        && hole.len > 0
                    {
                        hole.quarantine_file = Some(quarantine.copy_range(
                            &*meta.file,
                            &meta.path,
                            hole.offset,
                            hole.len,
                            &format!("salvaged mid-log damage: {}", hole.reason),
                            (hole.lost_count() > 0).then_some((hole.first_lost_lsn, hole.last_lost_lsn)),
                        )?);
                    }
                    holes.push(hole.clone());
                    holes_changed = true;
                }
                error!(
                    segment = hole.segment_id,
                    offset = hole.offset,
                    len = hole.len,
                    first_lost = hole.first_lost_lsn,
                    last_lost = hole.last_lost_lsn,
                    lost = hole.lost_count(),
                    "salvaged mid-log damage: {}",
                    hole.reason
                );
                report.salvaged.push(hole);
            }
        }
    }
    if holes_changed {
        files::write_holes(storage, dir, &holes)?;
    }

    let needs_new_segment = segments.last().map(|s| s.footer.is_some()).unwrap_or(true);
    report.first_lsn = segments.first().map(|s| s.header.first_lsn).unwrap_or(1);
    report.last_lsn = segments.last().map(|s| s.last_lsn).unwrap_or(0);
    report.elapsed = started.elapsed();
    info!(
        dir = %dir.display(),
        segments = report.segments,
        by_footer = report.sealed_checked_by_footer,
        scanned = report.segments_scanned,
        records = report.records_scanned,
        torn = report.torn_tails.len(),
        salvaged = report.salvaged.len(),
        last_lsn = report.last_lsn,
        elapsed_ms = report.elapsed.as_millis() as u64,
        "journal recovery finished"
    );
    Ok(Recovered { segments, holes, report, needs_new_segment })
}

/// How long a read-only open waits for an overwrite in flight to finish.
const READ_ONLY_OVERWRITE_WAIT: Duration = Duration::from_secs(2);

/// Waits (a little) while an overwrite in place is in flight in `dir`, so a read-only look does
/// not read records half-overwritten.
fn wait_for_overwrite(storage: &dyn crate::storage::Storage, dir: &Path) {
    let redo = dir.join(crate::overwrite::REDO_FILE);
    let deadline = Instant::now() + READ_ONLY_OVERWRITE_WAIT;
    while storage.exists(&redo) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn next_first_lsn(storage: &dyn crate::storage::Storage, dir: &Path, id: Option<u64>) -> Option<u64> {
    let path = dir.join(segment_file_name(id?));
    let f = files::open_read(storage, &path).ok()?;
    let mut b = [0u8; SEGMENT_HEADER_LEN];
    files::read_full_at(&*f, &mut b, 0).ok()?;
    SegmentHeader::decode(&b).ok().map(|h| h.first_lsn)
}

/// Header and footer check of a sealed segment; `None` if the footer is not valid.
pub(crate) fn check_by_footer(
    file: &Arc<dyn StorageFile>,
    path: &Path,
    id: u64,
    len: u64,
) -> Result<Option<SegmentMeta>> {
    if len < (SEGMENT_HEADER_LEN + FOOTER_LEN) as u64 {
        return Ok(None);
    }
    let mut hb = [0u8; SEGMENT_HEADER_LEN];
    files::read_full_at(&**file, &mut hb, 0).map_err(|e| Error::io("read", path, e))?;
    let Ok(header) = SegmentHeader::decode(&hb) else { return Ok(None) };
    if header.segment_id != id {
        return Ok(None);
    }
    let mut fb = [0u8; FOOTER_LEN];
    let at = len - FOOTER_LEN as u64;
    files::read_full_at(&**file, &mut fb, at).map_err(|e| Error::io("read", path, e))?;
    let Some(footer) = Footer::decode(&fb, header.salt) else { return Ok(None) };
    if footer.data_end != at || footer.last_lsn.saturating_add(1) < header.first_lsn {
        return Ok(None);
    }
    Ok(Some(SegmentMeta {
        id,
        path: path.to_path_buf(),
        header,
        last_lsn: footer.last_lsn,
        records: footer.record_count,
        data_end: footer.data_end,
        digest: footer.digest,
        footer: Some(footer),
        file: Arc::clone(file),
    }))
}
