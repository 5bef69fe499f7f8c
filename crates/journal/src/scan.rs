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

/// The CRC-32 (IEEE, reflected) table, for the single-byte error search below.
const CRC_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut k = 0;
    while k < 256 {
        let mut c = k as u32;
        let mut b = 0;
        while b < 8 {
            c = if c & 1 == 1 { (c >> 1) ^ 0xEDB8_8320 } else { c >> 1 };
            b += 1;
        }
        t[k] = c;
        k += 1;
    }
    t
};

/// `CRC_TABLE` indexed by the top byte of its entries (which are all different).
const CRC_BY_TOP: [u8; 256] = {
    let mut inv = [0u8; 256];
    let mut k = 0;
    while k < 256 {
        inv[(CRC_TABLE[k] >> 24) as usize] = k as u8;
        k += 1;
    }
    inv
};

/// Whether changing exactly one byte of a message of `msg_len` bytes, among its last
/// `candidates`, turns its CRC into the stored one, given `syndrome` = computed CRC ^ stored CRC.
/// CRC is linear: the syndrome of a one-byte error `d` at distance `m` from the end is the table
/// entry of `d` advanced over `m` zero bytes, so walking the syndrome back one byte at a time
/// finds it in `candidates` steps. Also true when the stored CRC itself has one damaged byte.
fn one_byte_error(syndrome: u32, candidates: usize) -> bool {
    if syndrome == 0 {
        return false;
    }
    if syndrome.to_le_bytes().iter().filter(|&&b| b != 0).count() == 1 {
        return true;
    }
    let mut t = syndrome;
    for _ in 0..candidates {
        let k = CRC_BY_TOP[(t >> 24) as usize];
        let entry = CRC_TABLE[usize::from(k)];
        if k != 0 && entry == t {
            return true;
        }
        // Undo one zero byte: t = (c >> 8) ^ TABLE[c & 0xff], and the top byte names the entry.
        t = ((t ^ entry) << 8) | u32::from(k);
    }
    false
}

/// Whether the record at `at` (with LSN `expected`, failing its checks, nothing valid after it)
/// was written in full, so that its failure is damage to written bytes rather than a write cut
/// short. Returns the end of its frame and what is wrong with it.
///
/// A write cut short leaves the rest of the record as the file held it before (zeros, the end of
/// the file) or garbage; so the record counts as written in full only if it is whole but for one
/// damaged byte: changing one byte (of the header, the payload or the checksum) makes it valid,
/// its last byte is not zero (a write cut short leaves a zero suffix, which for a missing last
/// byte is a one-byte difference too), and nothing but zeros (never-written space) follows it. Bytes of a lost write pass that test
/// only by a 32-bit checksum collision; garbage that runs past the record's end is a torn write. Damage to more than
/// one byte of the very last record cannot be told from a torn write and is cut as a tail.
pub(crate) fn fully_written(
    r: &mut ChunkReader<'_>,
    at: u64,
    salt: u32,
    expected: u64,
    max_len: u32,
) -> io::Result<Option<(u64, String)>> {
    let head = r.get(at, RECORD_HEADER_LEN)?.to_vec();
    match check_record_header(&head, salt, max_len) {
        HeaderCheck::Valid(h) if h.lsn == expected => {
            let flen = usize::try_from(h.frame_len()).unwrap_or(usize::MAX);
            let frame = r.get(at, flen)?;
            let body_end = flen.saturating_sub(4);
            let (Some(msg), Some(stored)) = (frame.get(..body_end), frame.get(body_end..flen)) else {
                return Ok(None);
            };
            // A write cut short leaves a zero suffix, so its last byte is zero: a record that
            // lacks only its last byte(s) differs from a valid one in one byte too. Never call
            // that damage.
            if frame.last().is_none_or(|&b| b == 0) {
                return Ok(None);
            }
            let mut hasher = crc32fast::Hasher::new_with_initial(salt);
            hasher.update(msg);
            let computed = hasher.finalize();
            let stored = u32::from_le_bytes(stored.try_into().unwrap_or([0; 4]));
            if !one_byte_error(computed ^ stored, usize::try_from(h.len).unwrap_or(0))
                || end_of_nonzero(r, at + h.frame_len())? > at + h.frame_len()
            {
                return Ok(None);
            }
            Ok(Some((
                at + h.frame_len(),
                format!("record LSN {expected} fails its checksum (one damaged byte in a record written in full)"),
            )))
        }
        HeaderCheck::Valid(_) | HeaderCheck::Invalid(_) => {
            // One damaged byte in the header? Try every value at every position.
            for i in 0..RECORD_HEADER_LEN {
                let Some(&orig) = head.get(i) else { break };
                for v in 0..=255u8 {
                    if v == orig {
                        continue;
                    }
                    let mut fixed = head.clone();
                    if let Some(b) = fixed.get_mut(i) {
                        *b = v;
                    }
                    let HeaderCheck::Valid(h) = check_record_header(&fixed, salt, max_len) else { continue };
                    if h.lsn != expected {
                        continue;
                    }
                    let flen = usize::try_from(h.frame_len()).unwrap_or(usize::MAX);
                    let mut frame = r.get(at, flen)?.to_vec();
                    if frame.len() < flen {
                        continue;
                    }
                    if let Some(dst) = frame.get_mut(..RECORD_HEADER_LEN) {
                        dst.copy_from_slice(&fixed);
                    }
                    if frame.last().is_none_or(|&b| b == 0) {
                        continue;
                    }
                    if check_record_body(&frame, salt, &h).is_some()
                        && end_of_nonzero(r, at + h.frame_len())? == at + h.frame_len()
                    {
                        return Ok(Some((
                            at + h.frame_len(),
                            format!(
                                "record LSN {expected} has a damaged header byte at offset {} (a record written in full)",
                                at + i as u64
                            ),
                        )));
                    }
                }
            }
            Ok(None)
        }
        HeaderCheck::Unwritten | HeaderCheck::Short => Ok(None),
    }
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
            // LSNs lost in a hole were used: the segment's last LSN is at least the hole's last.
            if h.lost_count() > 0 {
                scan.last_lsn = scan.last_lsn.max(h.last_lost_lsn);
            }
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
        let mut resume =
            if mode.classify { find_next_valid(&mut r, bad_at + 1, salt, expected, mode.max_len)? } else { None };
        // Nothing valid follows, but the failing record was written in full (one damaged byte
        // in an otherwise complete record): damage to an acknowledged record, not a torn tail.
        let mut reason = reason;
        if resume.is_none()
            && mode.classify
            && let Some((end, why)) = fully_written(&mut r, bad_at, salt, expected, mode.max_len)?
        {
            resume = Some((end, Found::Record(expected + 1)));
            reason = Some(why);
        }
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
                    // The damaged records' LSNs were used (acknowledged, maybe indexed): never
                    // handed out again, even when no record follows the damage.
                    scan.last_lsn = scan.last_lsn.max(lsn.saturating_sub(1));
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

#[cfg(test)]
mod tests {
    use super::one_byte_error;

    fn crc(salt: u32, b: &[u8]) -> u32 {
        let mut h = crc32fast::Hasher::new_with_initial(salt);
        h.update(b);
        h.finalize()
    }

    #[test]
    fn one_damaged_byte_is_found_anywhere_and_garbage_is_not() {
        let msg: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        let good = crc(0x1234_5678, &msg);
        for i in 0..msg.len() {
            for d in [1u8, 0x80, 0xFF, 0x5A] {
                let mut bad = msg.clone();
                bad[i] ^= d;
                let s = crc(0x1234_5678, &bad) ^ good;
                // Every position of the last 280 bytes is a candidate.
                assert_eq!(one_byte_error(s, 280), i >= 20, "byte {i} ^ {d:#x}");
            }
        }
        // The stored checksum itself damaged.
        assert!(one_byte_error(0x0000_FF00, 10));
        // Several bytes of garbage.
        let mut bad = msg.clone();
        for b in &mut bad[200..213] {
            *b = 0xA5;
        }
        assert!(!one_byte_error(crc(0x1234_5678, &bad) ^ good, 280));
    }
}
