//! Rewriting a sealed segment with some payloads replaced: how erased content leaves the journal.
//!
//! Protocol (docs/design.md "Segment rewrite"): the new segment is written in full to
//! `<name>.rewrite.tmp` (same id, first LSN, salt, `prev_digest`, every record with its LSN and
//! batch flags; replaced payloads; a new footer), synced, then renamed over `<name>` and the
//! folder synced. A crash before the rename leaves the original in place and a `.tmp` file that
//! the next writable open removes (it is a copy; the original holds everything); a crash after
//! it leaves the rewritten segment. Either way the segment validates on its own (header,
//! record checksums, footer digest) and in the chain: its header keeps the digest the segment
//! had when sealed (`chain_digest`), which is what the next segment's `prev_digest` names.
//! Readers that had the old file open keep reading the old file (rename replaces the name, not
//! the bytes under an open handle or a map).

use std::path::{Path, PathBuf};

use tracing::info;

use crate::error::{Error, Result};
use crate::files::{self, read_holes};
use crate::format::{
    Digest, FOOTER_LEN, Footer, HeaderCheck, REWRITTEN_FORMAT_VERSION, SEGMENT_HEADER_LEN, SegmentHeader,
    check_record_body, check_record_header, encode_record, segment_file_name,
};
use crate::journal::Lsn;
use crate::options::Options;
use crate::storage::OpenMode;

/// Decides a record's new payload: `Some` replaces it, `None` keeps it.
pub type Replace<'a> = &'a mut dyn FnMut(Lsn, &[u8]) -> Option<Vec<u8>>;

/// What [`rewrite_segment`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RewriteReport {
    /// The segment file.
    pub path: PathBuf,
    /// Records in the segment.
    pub records: u64,
    /// Records whose payload was replaced.
    pub replaced: u64,
    /// Size before and after.
    pub bytes_before: u64,
    /// Size after (equal to before when nothing was replaced and nothing was written).
    pub bytes_after: u64,
}

/// Rewrites sealed segment `segment_id` of the journal in `dir`, replacing the payload of every
/// record for which `replace(lsn, payload)` returns `Some`. Writes nothing when no record is
/// replaced. Only a sealed segment that validates whole (header, every record, footer digest)
/// and has no salvaged hole is rewritten; otherwise [`Error::Corrupt`] names what is wrong.
///
/// The journal's writer may be running (sealed segments are never written again by it); two
/// rewrites of the same segment must not run at once (the caller serializes them).
pub fn rewrite_segment(dir: &Path, opts: &Options, segment_id: u64, replace: Replace<'_>) -> Result<RewriteReport> {
    let storage = &*opts.storage;
    let name = segment_file_name(segment_id);
    let path = dir.join(&name);
    let bytes = files::read_all(storage, &path)?;
    let corrupt = |offset: u64, detail: String| Error::Corrupt {
        path: path.clone(),
        offset,
        first_lost_lsn: 0,
        last_lost_lsn: 0,
        detail: format!("cannot rewrite: {detail}"),
    };
    let header = SegmentHeader::decode(&bytes).map_err(|e| corrupt(0, e.to_string()))?;
    if header.segment_id != segment_id {
        return Err(corrupt(16, format!("header says segment {}", header.segment_id)));
    }
    let len = bytes.len() as u64;
    let footer = len
        .checked_sub(FOOTER_LEN as u64)
        .and_then(|at| bytes.get(usize::try_from(at).ok()?..))
        .and_then(|b| Footer::decode(b, header.salt))
        .filter(|f| f.data_end + FOOTER_LEN as u64 == len)
        .ok_or_else(|| corrupt(len, "not sealed (no valid footer)".into()))?;
    if read_holes(storage, dir)?.iter().any(|h| h.segment_id == segment_id) {
        return Err(corrupt(0, "the segment has salvaged holes".into()));
    }
    let data_end = usize::try_from(footer.data_end).map_err(|_| corrupt(len, "too large".into()))?;
    let data = bytes.get(..data_end).ok_or_else(|| corrupt(len, "footer beyond the file".into()))?;
    let mut check = Digest::new(header.salt);
    check.update(data);
    if check.value() != footer.digest {
        return Err(corrupt(0, "footer digest does not match the segment".into()));
    }

    // Every record, replaced or copied.
    let new_header = SegmentHeader {
        version: REWRITTEN_FORMAT_VERSION,
        chain_digest: Some(header.chain_digest.unwrap_or(footer.digest)),
        ..header
    };
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&new_header.encode());
    let mut pos = SEGMENT_HEADER_LEN;
    let (mut records, mut replaced) = (0u64, 0u64);
    let mut expect = header.first_lsn;
    while pos < data_end {
        let rest = data.get(pos..).unwrap_or_default();
        let h = match check_record_header(rest, header.salt, opts.max_record_size) {
            HeaderCheck::Valid(h) => h,
            other => return Err(corrupt(pos as u64, format!("record header: {other:?}"))),
        };
        let body = check_record_body(rest, header.salt, &h)
            .ok_or_else(|| corrupt(pos as u64, "record checksum mismatch".into()))?;
        if h.lsn != expect {
            return Err(corrupt(pos as u64, format!("LSN {} where {expect} was expected", h.lsn)));
        }
        let payload = rest.get(body).unwrap_or_default();
        match replace(h.lsn, payload) {
            Some(new) => {
                if new.len() > opts.max_record_size as usize {
                    return Err(Error::RecordTooLarge { len: new.len(), max: opts.max_record_size });
                }
                encode_record(&mut out, header.salt, h.lsn, h.flags, &new);
                replaced += 1;
            }
            None => encode_record(&mut out, header.salt, h.lsn, h.flags, payload),
        }
        records += 1;
        expect += 1;
        pos += usize::try_from(h.frame_len()).unwrap_or(usize::MAX);
    }
    if records != footer.record_count || expect.saturating_sub(1) != footer.last_lsn.max(header.first_lsn - 1) {
        return Err(corrupt(footer.data_end, "records do not match the footer".into()));
    }
    let mut report = RewriteReport { path: path.clone(), records, replaced, bytes_before: len, bytes_after: len };
    if replaced == 0 {
        return Ok(report);
    }
    let mut digest = Digest::new(header.salt);
    digest.update(&out);
    let new_footer =
        Footer { last_lsn: footer.last_lsn, record_count: records, data_end: out.len() as u64, digest: digest.value() };
    out.extend_from_slice(&new_footer.encode(header.salt));

    // Write aside, sync, swap, sync the folder.
    let tmp = dir.join(format!("{name}.rewrite.tmp"));
    if storage.exists(&tmp) {
        // Our own copy from an attempt that stopped; the original is intact.
        storage.remove_file(&tmp).map_err(|e| Error::io("remove", &tmp, e))?;
    }
    let f = storage.open(&tmp, OpenMode::CreateNew).map_err(|e| Error::io("create", &tmp, e))?;
    f.write_all_at(&out, 0).map_err(|e| Error::io("write", &tmp, e))?;
    f.sync_data().map_err(|e| Error::io("sync", &tmp, e))?;
    drop(f);
    storage.rename(&tmp, &path).map_err(|e| Error::io("rename", &tmp, e))?;
    storage.sync_dir(dir).map_err(|e| Error::io("sync folder", dir, e))?;
    report.bytes_after = out.len() as u64;
    info!(segment = %path.display(), records, replaced, before = len, after = report.bytes_after, "segment rewritten");
    Ok(report)
}

/// The ids of the sealed segments of the journal in `dir` (every segment but the last), in order.
pub fn sealed_segment_ids(dir: &Path, opts: &Options) -> Result<Vec<u64>> {
    let mut ids: Vec<u64> = opts
        .storage
        .list(dir)
        .map_err(|e| Error::io("list", dir, e))?
        .iter()
        .filter_map(|n| crate::format::parse_segment_file_name(n))
        .collect();
    ids.sort_unstable();
    ids.pop();
    Ok(ids)
}
