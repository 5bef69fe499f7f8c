//! Walking a segment's records: the shared core of recovery, verification and reading.

use std::io;

use crate::files::Hole;
use crate::format::{
    FLAG_BATCH_CONTINUES, FOOTER_LEN, FOOTER_MAGIC, Footer, HeaderCheck, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
    SegmentHeader, check_record_body, check_record_header, le_u64,
};
use crate::storage::StorageFile;

const CHUNK: usize = 1 << 20;

/// A reader that serves byte ranges of a file from a 1 MiB window.
#[derive(Debug)]
pub(crate) struct ChunkReader<'a> {
    file: &'a dyn StorageFile,
    len: u64,
    buf: Vec<u8>,
    start: u64,
}

impl<'a> ChunkReader<'a> {
    pub(crate) fn new(file: &'a dyn StorageFile, len: u64) -> Self {
        ChunkReader { file, len, buf: Vec::new(), start: 0 }
    }

    /// Up to `n` bytes at `off`; fewer at the end of the file.
    pub(crate) fn get(&mut self, off: u64, n: usize) -> io::Result<&[u8]> {
        let end = off.saturating_add(n as u64).min(self.len);
        if off >= end {
            return Ok(&[]);
        }
        let have_end = self.start + self.buf.len() as u64;
        if off < self.start || end > have_end {
            let want = (end - off).max(CHUNK as u64).min(self.len - off);
            let want = usize::try_from(want).map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
            self.buf.clear();
            self.buf.resize(want, 0);
            let got = crate::files::read_full_at(self.file, &mut self.buf, off)?;
            self.buf.truncate(got);
            self.start = off;
        }
        let a = usize::try_from(off - self.start).unwrap_or(usize::MAX);
        let b = usize::try_from(end - self.start).unwrap_or(usize::MAX).min(self.buf.len());
        Ok(self.buf.get(a..b).unwrap_or(&[]))
    }
}

/// Something valid found after damage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    /// A valid record with this LSN.
    Record(u64),
    /// A valid footer, with the last LSN it records.
    Footer(u64),
}

/// Looks for the first valid record (LSN at least `min_lsn`) or footer at or after `from`.
pub(crate) fn find_next_valid(
    r: &mut ChunkReader<'_>,
    from: u64,
    salt: u32,
    min_lsn: u64,
    max_len: u32,
) -> io::Result<Option<(u64, Found)>> {
    let mut p = from;
    while p + (RECORD_HEADER_LEN as u64) <= r.len {
        // Find a candidate in the current window with cheap checks first.
        let window = r.get(p, CHUNK)?;
        if window.len() < RECORD_HEADER_LEN {
            break;
        }
        let last = window.len() - RECORD_HEADER_LEN;
        let mut cand = None;
        let mut i = 0;
        while i <= last {
            let Some(w) = window.get(i..) else { break };
            let lsn = le_u64(w, 0).unwrap_or(0);
            if lsn == 0 {
                // Eight zero bytes: no record (LSN >= 1) and no footer starts here. Jump to where
                // the next non-zero byte could be the last byte of an LSN.
                match w.iter().position(|&b| b != 0) {
                    Some(k) => i += k.saturating_sub(7).max(1),
                    None => i = last + 1,
                }
                continue;
            }
            if lsn >= min_lsn
                && lsn - min_lsn < (1 << 40)
                && let HeaderCheck::Valid(_) = check_record_header(w, salt, max_len)
            {
                cand = Some(i);
                break;
            }
            if w.first() == Some(&FOOTER_MAGIC[0]) && w.get(..8) == Some(&FOOTER_MAGIC[..]) {
                cand = Some(i);
                break;
            }
            i += 1;
        }
        let Some(i) = cand else {
            p += (last + 1) as u64;
            continue;
        };
        let at = p + i as u64;
        let head = r.get(at, RECORD_HEADER_LEN.max(FOOTER_LEN))?;
        if let Some(f) = Footer::decode(head, salt)
            && f.data_end == at
        {
            return Ok(Some((at, Found::Footer(f.last_lsn))));
        }
        if let HeaderCheck::Valid(h) = check_record_header(head, salt, max_len) {
            let flen = usize::try_from(h.frame_len()).unwrap_or(usize::MAX);
            let frame = r.get(at, flen)?;
            if check_record_body(frame, salt, &h).is_some() {
                return Ok(Some((at, Found::Record(h.lsn))));
            }
        }
        p = at + 1;
    }
    Ok(None)
}

/// Offset just past the last non-zero byte at or after `from` (or `from` if all zeros).
pub(crate) fn end_of_nonzero(r: &mut ChunkReader<'_>, from: u64) -> io::Result<u64> {
    let mut end = from;
    let mut p = from;
    while p < r.len {
        let w = r.get(p, CHUNK)?;
        if w.is_empty() {
            break;
        }
        if let Some(i) = w.iter().rposition(|&b| b != 0) {
            end = p + i as u64 + 1;
        }
        p += w.len() as u64;
    }
    Ok(end)
}

/// Damage found inside a segment.
#[derive(Debug, Clone)]
pub(crate) struct Damage {
    /// Where the damage starts.
    pub offset: u64,
    #[allow(dead_code)]
    /// Where valid data resumes (a record or the footer); `None` if nothing valid follows in
    /// this segment.
    pub resume: Option<(u64, Found)>,
    /// End of non-zero bytes from `offset` (for a tail).
    pub end: u64,
    /// First LSN missing.
    pub first_lost_lsn: u64,
    /// Last LSN missing (below first when none, or unknown for a tail).
    pub last_lost_lsn: u64,
    /// What was wrong.
    pub reason: String,
}

/// The result of scanning one segment.
#[derive(Debug, Clone)]
pub(crate) struct Scan {
    pub header: SegmentHeader,
    pub records: u64,
    /// LSN of the last valid record (`first_lsn - 1` if none).
    pub last_lsn: u64,
    /// End of the last valid record (or of a skipped hole).
    pub data_end: u64,
    /// CRC digest of bytes `[0, data_end)`.
    pub digest: u32,
    /// The footer, if the segment is sealed.
    pub footer: Option<Footer>,
    /// Mid-segment damage followed by valid data (only collected in salvage mode; in strict mode
    /// the first one stops the scan and is returned here alone).
    pub middle: Vec<Damage>,
    /// Damage with nothing valid after it in this segment.
    pub tail: Option<Damage>,
    /// Bytes of a trailing incomplete batch that were rolled back, if any.
    pub incomplete_batch: Option<(u64, u64)>,
}

/// How to scan.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScanMode {
    /// Keep going after mid-segment damage.
    pub salvage: bool,
    /// Look past the first invalid record for valid ones (false for a read-only look at a live
    /// writer's active segment, where an incomplete write is normal).
    pub classify: bool,
    pub max_len: u32,
}

/// Scans a segment from its header.
pub(crate) fn scan_segment(
    file: &dyn StorageFile,
    len: u64,
    holes: &[&Hole],
    mode: ScanMode,
) -> io::Result<Result<Scan, &'static str>> {
    let mut r = ChunkReader::new(file, len);
    let hb = r.get(0, SEGMENT_HEADER_LEN)?.to_vec();
    let header = match SegmentHeader::decode(&hb) {
        Ok(h) => h,
        Err(e) => return Ok(Err(e)),
    };
    let salt = header.salt;
    let mut digest = crc32fast::Hasher::new_with_initial(salt);
    digest.update(&hb);
    let mut scan = Scan {
        header,
        records: 0,
        last_lsn: header.first_lsn.saturating_sub(1),
        data_end: SEGMENT_HEADER_LEN as u64,
        digest: 0,
        footer: None,
        middle: Vec::new(),
        tail: None,
        incomplete_batch: None,
    };
    let mut pos = SEGMENT_HEADER_LEN as u64;
    let mut expected = header.first_lsn;
    // State at the end of the last complete batch.
    let mut batch_mark = (pos, digest.clone(), scan.records, scan.last_lsn);
    let mut stopped_on_damage = false;
    loop {
        if let Some(h) = holes.iter().find(|h| h.offset == pos && h.len > 0) {
            let mut left = h.len;
            let mut at = pos;
            while left > 0 {
                let w = r.get(at, usize::try_from(left.min(CHUNK as u64)).unwrap_or(CHUNK))?;
                if w.is_empty() {
                    break;
                }
                digest.update(w);
                at += w.len() as u64;
                left -= w.len() as u64;
            }
            pos = at;
            expected = expected.max(h.last_lost_lsn.saturating_add(1));
            batch_mark = (pos, digest.clone(), scan.records, scan.last_lsn);
            continue;
        }
        if pos >= len {
            break;
        }
        let head = r.get(pos, RECORD_HEADER_LEN.max(FOOTER_LEN))?;
        if let Some(f) = Footer::decode(head, salt)
            && f.data_end == pos
        {
            scan.footer = Some(f);
            break;
        }
        let reason: Option<String> = match check_record_header(head, salt, mode.max_len) {
            HeaderCheck::Valid(h) if h.lsn == expected => {
                let flen = usize::try_from(h.frame_len()).unwrap_or(usize::MAX);
                let frame = r.get(pos, flen)?;
                if check_record_body(frame, salt, &h).is_some() {
                    digest.update(frame);
                    scan.records += 1;
                    scan.last_lsn = h.lsn;
                    expected += 1;
                    pos += h.frame_len();
                    if h.flags & FLAG_BATCH_CONTINUES == 0 {
                        batch_mark = (pos, digest.clone(), scan.records, scan.last_lsn);
                    }
                    continue;
                }
                Some(if frame.len() < flen {
                    "record cut short by the end of the file".into()
                } else {
                    "record checksum mismatch".into()
                })
            }
            HeaderCheck::Valid(h) => Some(format!("record has LSN {} where {} was expected", h.lsn, expected)),
            HeaderCheck::Unwritten => None,
            HeaderCheck::Short => Some("partial record header at the end of the file".into()),
            HeaderCheck::Invalid(why) => Some(why.into()),
        };
        // Roll back an incomplete batch: its records were never acknowledged.
        if batch_mark.0 < pos {
            scan.incomplete_batch = Some((batch_mark.0, pos));
        }
        let bad_at = pos;
        let resume =
            if mode.classify { find_next_valid(&mut r, bad_at + 1, salt, expected, mode.max_len)? } else { None };
        match resume {
            Some((off, found)) => {
                let last_lost = match found {
                    Found::Record(lsn) => lsn.saturating_sub(1),
                    Found::Footer(last) => last,
                };
                let d = Damage {
                    offset: bad_at,
                    resume: Some((off, found)),
                    end: off,
                    first_lost_lsn: expected,
                    last_lost_lsn: last_lost,
                    reason: reason.unwrap_or_else(|| "unwritten (zero) bytes in the middle of the segment".into()),
                };
                scan.incomplete_batch = None;
                scan.middle.push(d);
                if !mode.salvage {
                    stopped_on_damage = true;
                    break;
                }
                // Skip the damage and go on.
                let mut at = bad_at;
                while at < off {
                    let w = r.get(at, usize::try_from((off - at).min(CHUNK as u64)).unwrap_or(CHUNK))?;
                    if w.is_empty() {
                        break;
                    }
                    digest.update(w);
                    at += w.len() as u64;
                }
                pos = off;
                if let Found::Record(lsn) = found {
                    expected = lsn;
                }
                batch_mark = (pos, digest.clone(), scan.records, scan.last_lsn);
            }
            None => {
                let (mark_pos, mark_digest, mark_records, mark_last) = batch_mark.clone();
                // Without classification (a read-only look at a live writer's active segment),
                // what follows the last whole batch is simply where reading stops: an in-flight
                // write or preallocated zeros, not something to report.
                let end = if mode.classify { end_of_nonzero(&mut r, mark_pos)? } else { mark_pos };
                if mode.classify && (reason.is_some() || end > mark_pos) {
                    scan.tail = Some(Damage {
                        offset: mark_pos,
                        resume: None,
                        end: end.max(mark_pos),
                        first_lost_lsn: mark_last + 1,
                        last_lost_lsn: mark_last,
                        reason: reason.unwrap_or_else(|| "incomplete batch at the end of the segment".into()),
                    });
                }
                pos = mark_pos;
                digest = mark_digest;
                scan.records = mark_records;
                scan.last_lsn = mark_last;
                break;
            }
        }
    }
    // A batch still open at the end of the segment was never acknowledged (a batch never spans
    // segments). This holds whether or not damage was salvaged earlier in the segment, so that a
    // reopen (when this segment may have become the last one) decides the same way.
    if scan.footer.is_none() && scan.tail.is_none() && !stopped_on_damage && batch_mark.0 < pos {
        // Ended at end of file inside a batch.
        let (mark_pos, mark_digest, mark_records, mark_last) = batch_mark;
        scan.incomplete_batch = Some((mark_pos, pos));
        if mode.classify {
            scan.tail = Some(Damage {
                offset: mark_pos,
                resume: None,
                end: pos,
                first_lost_lsn: mark_last + 1,
                last_lost_lsn: mark_last,
                reason: "incomplete batch at the end of the segment".into(),
            });
        }
        pos = mark_pos;
        digest = mark_digest;
        scan.records = mark_records;
        scan.last_lsn = mark_last;
    }
    scan.data_end = pos;
    scan.digest = digest.finalize();
    Ok(Ok(scan))
}
