//! Overwriting records in place: how erased content leaves the journal, in the very inode every
//! reader holds.
//!
//! Protocol (docs/design.md "Erasure in place, crash by crash"). Under the journal's erase lock
//! (`ERASE.LOCK`, an `flock` every overwrite and every writable open's recovery take), for one
//! segment:
//!
//! 1. a leftover redo file (`erase.redo`) of an overwrite that stopped is applied first;
//! 2. the segment is read and checked; each record the caller replaces gets a new frame of the
//!    same length (same LSN and flags, new payload, its checksum). Nothing else changes: a frame
//!    ends with the CRC of the rest of it, so the CRC of the whole segment (the footer digest,
//!    which the next segment's header names) is the same before and after, sealed or not, and the
//!    writer of an unsealed segment seals it later with a digest that is still right;
//! 3. an unsealed segment is synced (the records about to be overwritten are durable; a sealed
//!    one was synced when it was sealed), then every new range is written to `erase.redo` (with
//!    a checksum), which is synced with its folder;
//! 4. the ranges are written into the segment, which is synced;
//! 5. `erase.redo` is removed and the folder synced.
//!
//! A crash before step 3 completes leaves the segment untouched and at most a redo file that
//! fails its checksum (discarded); after it, the redo file holds every new byte, and applying it
//! again (recovery, or the next overwrite) completes the segment whatever subset of the writes
//! reached the disk. The file is never replaced, so the old bytes do not survive in an inode
//! another process still has open or mapped: every descriptor sees the new bytes.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::files::{self, read_holes};
use crate::format::{
    Digest, FOOTER_LEN, Footer, HeaderCheck, Redo, SEGMENT_HEADER_LEN, SegmentHeader, check_record_body,
    check_record_header, encode_record, parse_segment_file_name, segment_file_name,
};
use crate::journal::Lsn;
use crate::options::Options;
use crate::storage::{LockGuard, OpenMode, Storage};

/// The lock every overwrite and every writable open's recovery of a journal take (an `flock`).
pub const ERASE_LOCK_FILE: &str = "ERASE.LOCK";
/// The redo file of an overwrite in progress.
pub const REDO_FILE: &str = "erase.redo";

/// How long an overwrite or a writable open waits for the erase lock (an overwrite holds it for
/// a few syncs).
pub(crate) const ERASE_LOCK_WAIT: Duration = Duration::from_secs(10);

/// Decides a record's new payload: `Some` replaces it (with exactly as many bytes), `None`
/// keeps it.
pub type Replace<'a> = &'a mut dyn FnMut(Lsn, &[u8]) -> Option<Vec<u8>>;

/// Finds, in damaged bytes no record covers (a salvaged hole), the ranges to overwrite with
/// zeros.
pub type Scrub<'a> = &'a dyn Fn(&[u8]) -> Vec<Range<usize>>;

/// What [`overwrite_records`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OverwriteReport {
    /// The segment file.
    pub path: PathBuf,
    /// Whether the segment was sealed.
    pub sealed: bool,
    /// Records read.
    pub records: u64,
    /// Records whose payload was replaced.
    pub replaced: u64,
    /// Bytes of salvaged holes overwritten with zeros.
    pub scrubbed_bytes: u64,
    /// Bytes given back to the file system: whole blocks of zeros the new bytes left (the
    /// padding of erased records), punched out of the file (it reads the same).
    pub reclaimed_bytes: u64,
}

/// The block size holes are punched in.
const BLOCK: u64 = 4096;

/// The whole `BLOCK`-aligned blocks of `bytes` (which sit at `offset` in the file) that are all
/// zeros: (file offset, length) runs.
pub(crate) fn zero_blocks(bytes: &[u8], offset: u64) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    let end = offset + bytes.len() as u64;
    let mut at = offset.div_ceil(BLOCK) * BLOCK;
    while at + BLOCK <= end {
        let i = usize::try_from(at - offset).unwrap_or(usize::MAX);
        let zero = bytes.get(i..i + BLOCK as usize).is_some_and(|b| b.iter().all(|&x| x == 0));
        if zero {
            match out.last_mut() {
                Some((o, l)) if *o + *l == at => *l += BLOCK,
                _ => out.push((at, BLOCK)),
            }
        }
        at += BLOCK;
    }
    out
}

/// Takes the journal's erase lock, waiting up to `wait`; `None` if it stayed busy.
pub(crate) fn lock_erase(storage: &dyn Storage, dir: &Path, wait: Duration) -> Result<Option<Box<dyn LockGuard>>> {
    let path = dir.join(ERASE_LOCK_FILE);
    let deadline = Instant::now() + wait;
    let mut pause = Duration::from_millis(1);
    loop {
        match storage.try_lock(&path) {
            Ok(g) => return Ok(Some(g)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Ok(None);
                }
                std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Err(e) => return Err(Error::io("lock", &path, e)),
        }
    }
}

/// Takes the erase lock of the journal in `dir` (waiting up to `wait`) so that no overwrite runs
/// while it is held: for tools that copy segment files (a backup). `Ok(None)` if it stayed busy.
pub fn erase_lock(dir: &Path, opts: &Options, wait: Duration) -> Result<Option<Box<dyn LockGuard>>> {
    lock_erase(&*opts.storage, dir, wait)
}

/// Applies the redo file an interrupted overwrite left, if any, and removes it. The caller holds
/// the erase lock. Returns what was done, in words.
pub(crate) fn apply_leftover_redo(storage: &dyn Storage, dir: &Path) -> Result<Option<String>> {
    let path = dir.join(REDO_FILE);
    if !storage.exists(&path) {
        return Ok(None);
    }
    let bytes = files::read_all(storage, &path)?;
    let done = match Redo::decode(&bytes) {
        Ok(redo) => {
            let seg = dir.join(segment_file_name(redo.segment_id));
            let mut written = 0;
            if storage.exists(&seg) {
                let f = storage.open(&seg, OpenMode::ReadWrite).map_err(|e| Error::io("open", &seg, e))?;
                let len = f.len().map_err(|e| Error::io("stat", &seg, e))?;
                for (offset, b) in &redo.ranges {
                    // Never extend a file: a range past its end belongs to bytes that are gone.
                    if offset.saturating_add(b.len() as u64) > len {
                        warn!(segment = %seg.display(), offset, len = b.len(), "redo range beyond the end of the segment; skipped");
                        continue;
                    }
                    f.write_all_at(b, *offset).map_err(|e| Error::io("write", &seg, e))?;
                    written += 1;
                }
                f.sync_data().map_err(|e| Error::io("sync", &seg, e))?;
            }
            format!(
                "completed an interrupted erase of segment {} ({written} of {} range(s) written again from {REDO_FILE})",
                redo.segment_id,
                redo.ranges.len()
            )
        }
        // The checksum is checked before the version: a file that fails anything but the version
        // check was written only in part.
        Err(why) if why != crate::format::REDO_NEWER => {
            // Written only in part: the segment was not touched yet (it is written only after
            // this file was synced whole).
            format!("discarded an erase redo file written only in part ({why}); its segment was not touched")
        }
        Err(why) => {
            return Err(Error::Corrupt {
                path,
                offset: 0,
                first_lost_lsn: 0,
                last_lost_lsn: 0,
                detail: format!("erase redo file not understood ({why}); written by a newer version?"),
            });
        }
    };
    storage.remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
    storage.sync_dir(dir).map_err(|e| Error::io("sync folder", dir, e))?;
    info!(dir = %dir.display(), "{done}");
    Ok(Some(done))
}

/// Overwrites, in place, the payload of every record of segment `segment_id` of the journal in
/// `dir` for which `replace(lsn, payload)` returns `Some` (a payload of the same length: the
/// record keeps its place, its LSN and its batch flags, and gets a valid checksum). `scrub`
/// picks ranges of salvaged holes to overwrite with zeros. Works on sealed segments and on the
/// unsealed last segment, also while its writer appends in another process: only whole records
/// already in the file are touched, and the segment's digest (its footer, the chain) does not
/// change.
///
/// Crash-safe through a redo file (module documentation); two overwrites never run at once (the
/// erase lock). A sealed segment must validate whole (header, records, footer digest) unless it
/// has salvaged holes, whose records outside the holes are overwritten.
pub fn overwrite_records(
    dir: &Path,
    opts: &Options,
    segment_id: u64,
    replace: Replace<'_>,
    scrub: Option<Scrub<'_>>,
) -> Result<OverwriteReport> {
    let storage = &*opts.storage;
    let lock_path = dir.join(ERASE_LOCK_FILE);
    let Some(_lock) = lock_erase(storage, dir, ERASE_LOCK_WAIT)? else {
        return Err(Error::EraseBusy { path: lock_path });
    };
    apply_leftover_redo(storage, dir)?;
    let name = segment_file_name(segment_id);
    let path = dir.join(&name);
    let file = storage.open(&path, OpenMode::ReadWrite).map_err(|e| Error::io("open", &path, e))?;
    let len = file.len().map_err(|e| Error::io("stat", &path, e))?;
    let mut bytes = vec![0u8; usize::try_from(len).map_err(|_| Error::InvalidOption("segment too large".into()))?];
    let got = files::read_full_at(&*file, &mut bytes, 0).map_err(|e| Error::io("read", &path, e))?;
    bytes.truncate(got);
    let corrupt = |offset: u64, detail: String| Error::Corrupt {
        path: path.clone(),
        offset,
        first_lost_lsn: 0,
        last_lost_lsn: 0,
        detail: format!("cannot overwrite in place: {detail}"),
    };
    let header = SegmentHeader::decode(&bytes).map_err(|e| corrupt(0, e.to_string()))?;
    if header.segment_id != segment_id {
        return Err(corrupt(16, format!("header says segment {}", header.segment_id)));
    }
    let footer = (bytes.len() as u64)
        .checked_sub(FOOTER_LEN as u64)
        .and_then(|at| bytes.get(usize::try_from(at).ok()?..))
        .and_then(|b| Footer::decode(b, header.salt))
        .filter(|f| f.data_end + FOOTER_LEN as u64 == bytes.len() as u64);
    let holes: Vec<_> = read_holes(storage, dir)?.into_iter().filter(|h| h.segment_id == segment_id).collect();
    let sealed = footer.is_some();
    let data_end = match footer {
        Some(f) => usize::try_from(f.data_end).map_err(|_| corrupt(len, "too large".into()))?,
        None => bytes.len(),
    };
    let data = bytes.get(..data_end).ok_or_else(|| corrupt(len, "footer beyond the file".into()))?;
    if let Some(f) = footer
        && holes.is_empty()
    {
        let mut check = Digest::new(header.salt);
        check.update(data);
        if check.value() != f.digest {
            return Err(corrupt(0, "footer digest does not match the segment".into()));
        }
    }

    // Every record: its new frame if it is replaced.
    let mut ranges: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut report = OverwriteReport { path: path.clone(), sealed, ..OverwriteReport::default() };
    let mut pos = SEGMENT_HEADER_LEN;
    let mut expect = header.first_lsn;
    while pos < data_end {
        if let Some(h) = holes.iter().find(|h| h.offset == pos as u64 && h.len > 0) {
            let end = usize::try_from(h.offset.saturating_add(h.len)).unwrap_or(usize::MAX).min(data_end);
            if let (Some(scrub), Some(damaged)) = (scrub, data.get(pos..end)) {
                for r in scrub(damaged) {
                    if r.start < r.end && r.end <= damaged.len() {
                        report.scrubbed_bytes += (r.end - r.start) as u64;
                        ranges.push(((pos + r.start) as u64, vec![0u8; r.end - r.start]));
                    }
                }
            }
            pos = end;
            expect = expect.max(h.last_lost_lsn.saturating_add(1));
            continue;
        }
        let rest = data.get(pos..).unwrap_or_default();
        let h = match check_record_header(rest, header.salt, opts.max_record_size) {
            HeaderCheck::Valid(h) if h.lsn == expect || (!holes.is_empty() && h.lsn > expect) => h,
            // The end of what is written in an unsealed segment.
            _ if !sealed => break,
            other => return Err(corrupt(pos as u64, format!("record header: {other:?}"))),
        };
        let Some(body) = check_record_body(rest, header.salt, &h) else {
            if !sealed {
                break;
            }
            return Err(corrupt(pos as u64, "record checksum mismatch".into()));
        };
        let payload = rest.get(body).unwrap_or_default();
        if let Some(new) = replace(h.lsn, payload)
            && new != payload
        {
            if new.len() != payload.len() {
                return Err(Error::InvalidOption(format!(
                    "a replacement must keep the payload's length: LSN {} has {} bytes, the replacement {}",
                    h.lsn,
                    payload.len(),
                    new.len()
                )));
            }
            let mut frame = Vec::with_capacity(usize::try_from(h.frame_len()).unwrap_or(0));
            encode_record(&mut frame, header.salt, h.lsn, h.flags, &new);
            ranges.push((pos as u64, frame));
            report.replaced += 1;
        }
        report.records += 1;
        expect = h.lsn + 1;
        pos += usize::try_from(h.frame_len()).unwrap_or(usize::MAX);
    }
    if let Some(f) = footer
        && holes.is_empty()
        && (report.records != f.record_count || expect.saturating_sub(1) != f.last_lsn.max(header.first_lsn - 1))
    {
        return Err(corrupt(f.data_end, "records do not match the footer".into()));
    }
    if ranges.is_empty() {
        return Ok(report);
    }
    if let Some(f) = footer
        && holes.is_empty()
    {
        // A valid frame of the same length leaves the segment's digest as it was (each frame
        // ends with the CRC of the rest of it): the footer and the chain stay valid without
        // being touched. Checked before anything is written.
        let mut image = data.to_vec();
        for (offset, b) in &ranges {
            let at = usize::try_from(*offset).unwrap_or(usize::MAX);
            if let Some(dst) = image.get_mut(at..at.saturating_add(b.len())) {
                dst.copy_from_slice(b);
            }
        }
        let mut digest = Digest::new(header.salt);
        digest.update(&image);
        if digest.value() != f.digest {
            return Err(corrupt(f.data_end, "the overwrite would change the segment's digest".into()));
        }
    }
    // The records about to be overwritten are durable first: a redo file is only ever applied
    // over records that survive a power cut. (A sealed segment was synced when it was sealed.)
    if !sealed {
        file.sync_data().map_err(|e| Error::io("sync", &path, e))?;
    }
    let redo_path = dir.join(REDO_FILE);
    let redo = Redo { segment_id, ranges };
    let r = storage.open(&redo_path, OpenMode::CreateNew).map_err(|e| Error::io("create", &redo_path, e))?;
    r.write_all_at(&redo.encode(), 0).map_err(|e| Error::io("write", &redo_path, e))?;
    r.sync_data().map_err(|e| Error::io("sync", &redo_path, e))?;
    drop(r);
    storage.sync_dir(dir).map_err(|e| Error::io("sync folder", dir, e))?;
    for (offset, b) in &redo.ranges {
        file.write_all_at(b, *offset).map_err(|e| Error::io("write", &path, e))?;
    }
    file.sync_data().map_err(|e| Error::io("sync", &path, e))?;
    storage.remove_file(&redo_path).map_err(|e| Error::io("remove", &redo_path, e))?;
    storage.sync_dir(dir).map_err(|e| Error::io("sync folder", dir, e))?;
    // Space: whole blocks of zeros the new bytes left go back to the file system. The bytes are
    // durable zeros already, so a crash before, during or after changes nothing a reader sees.
    for (offset, b) in &redo.ranges {
        for (at, len) in zero_blocks(b, *offset) {
            match file.punch_hole(at, len) {
                Ok(()) => report.reclaimed_bytes += len,
                Err(e) => warn!(segment = %path.display(), "space of erased records not given back: {e}"),
            }
        }
    }
    info!(segment = %path.display(), sealed, records = report.records, replaced = report.replaced, scrubbed = report.scrubbed_bytes, reclaimed = report.reclaimed_bytes, "records overwritten in place");
    Ok(report)
}

/// The ids of every segment of the journal in `dir` (sealed ones and the last), in order.
pub fn segment_ids(dir: &Path, opts: &Options) -> Result<Vec<u64>> {
    let mut ids: Vec<u64> = opts
        .storage
        .list(dir)
        .map_err(|e| Error::io("list", dir, e))?
        .iter()
        .filter_map(|n| parse_segment_file_name(n))
        .collect();
    ids.sort_unstable();
    Ok(ids)
}

/// The ids of the sealed segments of the journal in `dir` (every segment but the last), in order.
pub fn sealed_segment_ids(dir: &Path, opts: &Options) -> Result<Vec<u64>> {
    let mut ids = segment_ids(dir, opts)?;
    ids.pop();
    Ok(ids)
}
