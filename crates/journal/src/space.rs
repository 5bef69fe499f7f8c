//! Disk space of segments: what a segment takes, and giving back the blocks of zeros erased
//! records leave (docs/format.md "Erasure in place": an erased record keeps its length, padded
//! with zeros). A punched hole reads as zeros, so punching changes nothing any reader sees, and
//! record offsets never move (the store's index keeps them).

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::error::{Error, Result};
use crate::format::{FOOTER_LEN, Footer, HeaderCheck, SEGMENT_HEADER_LEN, SegmentHeader, check_record_header};
use crate::options::Options;
use crate::overwrite::{ERASE_LOCK_WAIT, lock_erase, zero_blocks};
use crate::storage::OpenMode;

/// What one segment takes on disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SegmentSpace {
    /// The file's length.
    pub len: u64,
    /// Bytes the file system keeps for it (preallocated space of an active segment included).
    pub allocated: u64,
    /// Bytes of records (headers, payloads and checksums).
    pub records: u64,
    /// Bytes of whole blocks of zeros inside the records (erased records' padding) still
    /// allocated: what [`reclaim_segment`] would give back.
    pub reclaimable: u64,
}

/// The space segment `segment_id` of the journal in `dir` takes. Reads the whole segment.
pub fn segment_space(dir: &Path, opts: &Options, segment_id: u64) -> Result<SegmentSpace> {
    let path = dir.join(crate::format::segment_file_name(segment_id));
    let bytes = std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
    let meta = std::fs::metadata(&path).map_err(|e| Error::io("stat", &path, e))?;
    let end = records_end(&bytes, opts);
    let file = File::open(&path).map_err(|e| Error::io("open", &path, e))?;
    let mut reclaimable = 0;
    let data = bytes.get(SEGMENT_HEADER_LEN..end).unwrap_or_default();
    for (at, len) in zero_blocks(data, SEGMENT_HEADER_LEN as u64) {
        reclaimable += allocated_in(&file, at, len);
    }
    Ok(SegmentSpace {
        len: bytes.len() as u64,
        allocated: meta.blocks() * 512,
        records: end.saturating_sub(SEGMENT_HEADER_LEN) as u64,
        reclaimable,
    })
}

/// Gives back to the file system the blocks of zeros inside the records of sealed segment
/// `segment_id` (under the erase lock, as overwrites). Returns the bytes given back. An unsealed
/// segment is left alone: its writer may be writing a record whose later pages still read as
/// zeros, and punching there after the write would destroy it (overwrites punch only the bytes
/// they wrote themselves).
pub fn reclaim_segment(dir: &Path, opts: &Options, segment_id: u64) -> Result<u64> {
    let storage = &*opts.storage;
    let Some(_lock) = lock_erase(storage, dir, ERASE_LOCK_WAIT)? else {
        return Err(Error::EraseBusy { path: dir.join(crate::overwrite::ERASE_LOCK_FILE) });
    };
    let path = dir.join(crate::format::segment_file_name(segment_id));
    let bytes = std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
    let Some(end) = sealed_end(&bytes) else { return Ok(0) };
    let probe = File::open(&path).map_err(|e| Error::io("open", &path, e))?;
    let file = storage.open(&path, OpenMode::ReadWrite).map_err(|e| Error::io("open", &path, e))?;
    let mut given = 0;
    let data = bytes.get(SEGMENT_HEADER_LEN..end).unwrap_or_default();
    for (at, len) in zero_blocks(data, SEGMENT_HEADER_LEN as u64) {
        let allocated = allocated_in(&probe, at, len);
        if allocated > 0 {
            file.punch_hole(at, len).map_err(|e| Error::io("punch a hole in", &path, e))?;
            given += allocated;
        }
    }
    Ok(given)
}

/// The end of the records of a segment's bytes: its footer's `data_end` when sealed, else the
/// end of the last record whose header holds (the rest is preallocated space, never punched).
fn records_end(bytes: &[u8], opts: &Options) -> usize {
    let Ok(header) = SegmentHeader::decode(bytes) else { return SEGMENT_HEADER_LEN };
    if let Some(end) = sealed_end(bytes) {
        return end;
    }
    let mut pos = SEGMENT_HEADER_LEN;
    while let Some(rest) = bytes.get(pos..) {
        let HeaderCheck::Valid(h) = check_record_header(rest, header.salt, opts.max_record_size) else { break };
        let next = pos.saturating_add(usize::try_from(h.frame_len()).unwrap_or(usize::MAX));
        if next > bytes.len() {
            break;
        }
        pos = next;
    }
    pos
}

/// The end of the records of a sealed segment's bytes (its footer's `data_end`); `None` for a
/// segment that is not sealed.
fn sealed_end(bytes: &[u8]) -> Option<usize> {
    let header = SegmentHeader::decode(bytes).ok()?;
    let at = usize::try_from((bytes.len() as u64).checked_sub(FOOTER_LEN as u64)?).ok()?;
    let f = Footer::decode(bytes.get(at..)?, header.salt)?;
    (f.data_end + FOOTER_LEN as u64 == bytes.len() as u64).then(|| usize::try_from(f.data_end).ok()).flatten()
}

/// Bytes of `[at, at + len)` the file system keeps blocks for (`SEEK_DATA` / `SEEK_HOLE`);
/// all of it where the platform cannot say.
fn allocated_in(file: &File, at: u64, len: u64) -> u64 {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::fs::{SeekFrom, seek};
        let end = at + len;
        let mut pos = at;
        let mut total = 0;
        while pos < end {
            let Ok(data) = seek(file, SeekFrom::Data(pos)) else { break };
            if data >= end {
                break;
            }
            let hole = seek(file, SeekFrom::Hole(data)).unwrap_or(end).min(end);
            total += hole - data;
            pos = hole;
        }
        total
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = (file, at);
        len
    }
}
