//! Pure encoding and decoding of the on-disk format. No I/O here; every decoder takes arbitrary
//! bytes and never panics. The byte-by-byte specification is `docs/format.md`.

/// Magic bytes at the start of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"LBJRNL\r\n";
/// Magic bytes at the start of a sealed segment's footer.
pub const FOOTER_MAGIC: [u8; 8] = *b"LBSEAL\r\n";
/// Format version of segments as written by appends.
pub const FORMAT_VERSION: u32 = 1;
/// Format version of a segment rewritten without some payloads (erasure): version 1 plus the
/// `REWRITTEN` header flag and the chain digest it keeps. Older readers refuse it by version.
pub const REWRITTEN_FORMAT_VERSION: u32 = 2;
/// Segment header flag: this segment was rewritten; `chain_digest` is what the next segment's
/// `prev_digest` refers to.
pub const HEADER_FLAG_REWRITTEN: u32 = 1;
/// Size of the segment header.
pub const SEGMENT_HEADER_LEN: usize = 64;
/// Size of a record header.
pub const RECORD_HEADER_LEN: usize = 20;
/// Size of the checksum that follows a record's payload.
pub const RECORD_TRAILER_LEN: usize = 4;
/// Size of a sealed segment's footer.
pub const FOOTER_LEN: usize = 48;
/// Largest LSN a record or segment may carry (2^63): far beyond any real journal, and leaves
/// room so that LSN arithmetic on decoded values can never overflow.
pub const MAX_LSN: u64 = 1 << 63;
/// Hard upper bound on the configurable maximum record size (1 GiB).
pub const MAX_RECORD_LIMIT: u32 = 1 << 30;

/// Record flag: more records of the same batch follow. A batch is only complete at a record
/// without this flag; recovery treats an incomplete batch at the tail as torn.
pub const FLAG_BATCH_CONTINUES: u32 = 1;
/// Flags this version understands; a record with any other bit set is invalid.
pub const KNOWN_FLAGS: u32 = FLAG_BATCH_CONTINUES;

/// Reads a little-endian u32 at `at`, or `None` if out of bounds.
pub fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(s.try_into().ok()?))
}

/// Reads a little-endian u64 at `at`, or `None` if out of bounds.
pub fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(s.try_into().ok()?))
}

fn crc_seeded(seed: u32, parts: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new_with_initial(seed);
    for p in parts {
        h.update(p);
    }
    h.finalize()
}

/// A segment file's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Format version the segment was written with.
    pub version: u32,
    /// Segment id (also in the file name).
    pub segment_id: u64,
    /// LSN of the first record this segment holds (or will hold).
    pub first_lsn: u64,
    /// Per-segment random salt, seeding every checksum in the segment.
    pub salt: u32,
    /// Digest of the previous segment (0 for the first segment ever written).
    pub prev_digest: u32,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
    /// For a rewritten segment (version 2): the digest the segment had when it was sealed,
    /// which the next segment's `prev_digest` carries. `None` for a segment never rewritten.
    pub chain_digest: Option<u32>,
}

impl SegmentHeader {
    // Format: docs/format.md "Segment header".
    /// Encodes the header, with its checksum.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        let (version, flags) = match self.chain_digest {
            Some(_) => (REWRITTEN_FORMAT_VERSION, HEADER_FLAG_REWRITTEN),
            None => (self.version, 0),
        };
        b[8..12].copy_from_slice(&version.to_le_bytes());
        b[12..16].copy_from_slice(&flags.to_le_bytes());
        b[16..24].copy_from_slice(&self.segment_id.to_le_bytes());
        b[24..32].copy_from_slice(&self.first_lsn.to_le_bytes());
        b[32..36].copy_from_slice(&self.salt.to_le_bytes());
        b[36..40].copy_from_slice(&self.prev_digest.to_le_bytes());
        b[40..48].copy_from_slice(&self.created_unix_ms.to_le_bytes());
        if let Some(d) = self.chain_digest {
            b[48..52].copy_from_slice(&d.to_le_bytes());
        }
        // 52..60 (48..60 when not rewritten) reserved, zero.
        let crc = crc_seeded(0, &[&b[0..60]]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes a header; `Err` says what is wrong.
    pub fn decode(b: &[u8]) -> Result<SegmentHeader, &'static str> {
        let b = b.get(..SEGMENT_HEADER_LEN).ok_or("file shorter than a segment header")?;
        if b.iter().all(|&x| x == 0) {
            return Err("segment header is all zeros (never written)");
        }
        if b.get(0..8) != Some(&SEGMENT_MAGIC[..]) {
            return Err("bad magic: not a tidelog journal segment");
        }
        let stored = le_u32(b, 60).ok_or("short header")?;
        let data = b.get(0..60).ok_or("short header")?;
        if crc_seeded(0, &[data]) != stored {
            return Err("segment header checksum mismatch");
        }
        let version = le_u32(b, 8).ok_or("short header")?;
        let flags = le_u32(b, 12).ok_or("short header")?;
        let chain_digest = match (version, flags) {
            (FORMAT_VERSION, 0) => None,
            (FORMAT_VERSION, _) => return Err("unknown segment header flags"),
            (REWRITTEN_FORMAT_VERSION, HEADER_FLAG_REWRITTEN) => Some(le_u32(b, 48).ok_or("short header")?),
            (REWRITTEN_FORMAT_VERSION, _) => return Err("unknown segment header flags"),
            _ => return Err("unsupported format version"),
        };
        let first_lsn = le_u64(b, 24).ok_or("short header")?;
        if first_lsn == 0 || first_lsn > MAX_LSN {
            return Err("first LSN out of range");
        }
        Ok(SegmentHeader {
            version,
            segment_id: le_u64(b, 16).ok_or("short header")?,
            first_lsn,
            salt: le_u32(b, 32).ok_or("short header")?,
            prev_digest: le_u32(b, 36).ok_or("short header")?,
            created_unix_ms: le_u64(b, 40).ok_or("short header")?,
            chain_digest,
        })
    }
}

/// A decoded record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Log sequence number.
    pub lsn: u64,
    /// Payload length in bytes.
    pub len: u32,
    /// Flags (`FLAG_*`).
    pub flags: u32,
}

impl RecordHeader {
    /// Total size of the framed record (header, payload, trailer).
    pub fn frame_len(&self) -> u64 {
        RECORD_HEADER_LEN as u64 + u64::from(self.len) + RECORD_TRAILER_LEN as u64
    }
}

/// Encoded size of a record with a payload of `len` bytes.
pub fn frame_len(len: usize) -> usize {
    RECORD_HEADER_LEN + len + RECORD_TRAILER_LEN
}

// Format: docs/format.md "Record".
/// Appends one framed record to `out`.
pub fn encode_record(out: &mut Vec<u8>, salt: u32, lsn: u64, flags: u32, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut h = [0u8; RECORD_HEADER_LEN];
    h[0..8].copy_from_slice(&lsn.to_le_bytes());
    h[8..12].copy_from_slice(&len.to_le_bytes());
    h[12..16].copy_from_slice(&flags.to_le_bytes());
    let hcrc = crc_seeded(salt, &[&h[0..16]]);
    h[16..20].copy_from_slice(&hcrc.to_le_bytes());
    let crc = crc_seeded(salt, &[&h, payload]);
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// What is at a position where a record header is expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderCheck {
    /// A header whose own checksum holds and whose length is within bounds.
    Valid(RecordHeader),
    /// All zeros: nothing was written here.
    Unwritten,
    /// Fewer than a header's bytes remain.
    Short,
    /// Something else: damaged or stale bytes.
    Invalid(&'static str),
}

/// Checks the record header at the start of `b`.
pub fn check_record_header(b: &[u8], salt: u32, max_len: u32) -> HeaderCheck {
    let Some(h) = b.get(..RECORD_HEADER_LEN) else {
        return if b.iter().all(|&x| x == 0) { HeaderCheck::Unwritten } else { HeaderCheck::Short };
    };
    if h.iter().all(|&x| x == 0) {
        return HeaderCheck::Unwritten;
    }
    let (Some(lsn), Some(len), Some(flags), Some(stored)) = (le_u64(h, 0), le_u32(h, 8), le_u32(h, 12), le_u32(h, 16))
    else {
        return HeaderCheck::Short;
    };
    let Some(data) = h.get(0..16) else { return HeaderCheck::Short };
    if crc_seeded(salt, &[data]) != stored {
        return HeaderCheck::Invalid("record header checksum mismatch");
    }
    if flags & !KNOWN_FLAGS != 0 {
        return HeaderCheck::Invalid("unknown record flags");
    }
    if len > max_len {
        return HeaderCheck::Invalid("record length above the maximum record size");
    }
    if lsn == 0 || lsn > MAX_LSN {
        return HeaderCheck::Invalid("record LSN out of range");
    }
    HeaderCheck::Valid(RecordHeader { lsn, len, flags })
}

/// Checks a whole framed record at the start of `b` whose header already validated. Returns the
/// payload range within `b` if the record's checksum holds.
pub fn check_record_body(b: &[u8], salt: u32, h: &RecordHeader) -> Option<std::ops::Range<usize>> {
    let plen = usize::try_from(h.len).ok()?;
    let end = RECORD_HEADER_LEN.checked_add(plen)?;
    let header = b.get(..RECORD_HEADER_LEN)?;
    let payload = b.get(RECORD_HEADER_LEN..end)?;
    let stored = le_u32(b, end)?;
    if crc_seeded(salt, &[header, payload]) == stored { Some(RECORD_HEADER_LEN..end) } else { None }
}

/// A sealed segment's footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer {
    /// LSN of the last record (first_lsn - 1 if the segment holds none).
    pub last_lsn: u64,
    /// Number of records.
    pub record_count: u64,
    /// Offset at which the footer starts (the end of the records).
    pub data_end: u64,
    /// Digest of the segment: CRC-32 of the header and every record byte, in order.
    pub digest: u32,
}

impl Footer {
    // Format: docs/format.md "Footer".
    /// Encodes the footer, with its checksum (seeded with the segment salt).
    pub fn encode(&self, salt: u32) -> [u8; FOOTER_LEN] {
        let mut b = [0u8; FOOTER_LEN];
        b[0..8].copy_from_slice(&FOOTER_MAGIC);
        b[8..16].copy_from_slice(&self.last_lsn.to_le_bytes());
        b[16..24].copy_from_slice(&self.record_count.to_le_bytes());
        b[24..32].copy_from_slice(&self.data_end.to_le_bytes());
        b[32..36].copy_from_slice(&self.digest.to_le_bytes());
        // 36..44 reserved.
        let crc = crc_seeded(salt, &[&b[0..44]]);
        b[44..48].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes a footer at the start of `b`; `None` if it is not a valid footer for this salt.
    pub fn decode(b: &[u8], salt: u32) -> Option<Footer> {
        let b = b.get(..FOOTER_LEN)?;
        if b.get(0..8)? != FOOTER_MAGIC {
            return None;
        }
        if crc_seeded(salt, &[b.get(0..44)?]) != le_u32(b, 44)? {
            return None;
        }
        Some(Footer {
            last_lsn: le_u64(b, 8)?,
            record_count: le_u64(b, 16)?,
            data_end: le_u64(b, 24)?,
            digest: le_u32(b, 32)?,
        })
    }
}

/// Running digest of a segment's bytes (header and records), CRC-32 seeded with the salt.
#[derive(Debug, Clone)]
pub struct Digest(crc32fast::Hasher);

impl Digest {
    /// A new digest for a segment with this salt.
    pub fn new(salt: u32) -> Self {
        Digest(crc32fast::Hasher::new_with_initial(salt))
    }
    /// Continues a digest whose value so far is `value` (a CRC-32 resumes from its value).
    pub fn resume(value: u32) -> Self {
        Digest(crc32fast::Hasher::new_with_initial(value))
    }
    /// Adds bytes.
    pub fn update(&mut self, b: &[u8]) {
        self.0.update(b);
    }
    /// The digest so far.
    pub fn value(&self) -> u32 {
        self.0.clone().finalize()
    }
}

/// Magic bytes at the start of an erase redo file.
pub const REDO_MAGIC: [u8; 8] = *b"LBREDO\r\n";
/// Version of the erase redo file.
pub const REDO_VERSION: u32 = 1;
/// What [`Redo::decode`] says of a whole redo file of another version.
pub const REDO_NEWER: &str = "unsupported redo file version";
/// Size of the redo file's header (magic, version, range count, segment id).
const REDO_HEADER_LEN: usize = 24;

/// The new bytes an in-place overwrite of one segment writes, kept in the journal's redo file
/// until every one of them is in the segment and synced (docs/format.md "Erase redo file").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redo {
    /// The segment the ranges belong to.
    pub segment_id: u64,
    /// `(offset, new bytes)`, in the order they are written.
    pub ranges: Vec<(u64, Vec<u8>)>,
}

impl Redo {
    // Format: docs/format.md "Erase redo file".
    /// Encodes the redo file, ending with its checksum.
    pub fn encode(&self) -> Vec<u8> {
        let body: usize = self.ranges.iter().map(|(_, b)| 12 + b.len()).sum();
        let mut out = Vec::with_capacity(REDO_HEADER_LEN + body + 4);
        out.extend_from_slice(&REDO_MAGIC);
        out.extend_from_slice(&REDO_VERSION.to_le_bytes());
        out.extend_from_slice(&u32::try_from(self.ranges.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(&self.segment_id.to_le_bytes());
        for (offset, bytes) in &self.ranges {
            out.extend_from_slice(&offset.to_le_bytes());
            out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes());
            out.extend_from_slice(bytes);
        }
        let crc = crc_seeded(0, &[&out]);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes a redo file; `Err` says what is wrong (a file cut short by a crash while it was
    /// written fails its checksum).
    pub fn decode(b: &[u8]) -> Result<Redo, &'static str> {
        if b.len() < REDO_HEADER_LEN + 4 {
            return Err("redo file shorter than its header");
        }
        if b.get(0..8) != Some(&REDO_MAGIC[..]) {
            return Err("bad magic: not an erase redo file");
        }
        let body_end = b.len() - 4;
        let stored = le_u32(b, body_end).ok_or("short redo file")?;
        if crc_seeded(0, &[b.get(..body_end).ok_or("short redo file")?]) != stored {
            return Err("redo file checksum mismatch (written only in part)");
        }
        if le_u32(b, 8) != Some(REDO_VERSION) {
            return Err(REDO_NEWER);
        }
        let count = le_u32(b, 12).ok_or("short redo file")?;
        let segment_id = le_u64(b, 16).ok_or("short redo file")?;
        let mut ranges = Vec::new();
        let mut at = REDO_HEADER_LEN;
        for _ in 0..count {
            let offset = le_u64(b, at).ok_or("redo range beyond the file")?;
            let len = usize::try_from(le_u32(b, at + 8).ok_or("redo range beyond the file")?)
                .map_err(|_| "redo range too large")?;
            let start = at + 12;
            let end = start.checked_add(len).ok_or("redo range too large")?;
            if end > body_end {
                return Err("redo range beyond the file");
            }
            ranges.push((offset, b.get(start..end).ok_or("redo range beyond the file")?.to_vec()));
            at = end;
        }
        if at != body_end {
            return Err("redo file has trailing bytes");
        }
        Ok(Redo { segment_id, ranges })
    }
}

/// The file name of segment `id`.
pub fn segment_file_name(id: u64) -> String {
    format!("{id:020}.seg")
}

/// Parses a segment file name.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewritten_header_keeps_its_chain_digest() {
        let h = SegmentHeader {
            version: REWRITTEN_FORMAT_VERSION,
            segment_id: 7,
            first_lsn: 1234,
            salt: 5,
            prev_digest: 99,
            created_unix_ms: 1,
            chain_digest: Some(0xabcd),
        };
        let b = h.encode();
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
        // A version-1 header with the flag, or a version-2 header without it, is refused.
        let mut bad = b;
        bad[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        let crc = crc_seeded(0, &[&bad[0..60]]);
        bad[60..64].copy_from_slice(&crc.to_le_bytes());
        assert!(SegmentHeader::decode(&bad).is_err());
        let mut bad = b;
        bad[12..16].copy_from_slice(&0u32.to_le_bytes());
        let crc = crc_seeded(0, &[&bad[0..60]]);
        bad[60..64].copy_from_slice(&crc.to_le_bytes());
        assert!(SegmentHeader::decode(&bad).is_err());
    }

    #[test]
    fn header_round_trip_and_damage() {
        let h = SegmentHeader {
            version: FORMAT_VERSION,
            segment_id: 7,
            first_lsn: 1234,
            salt: 0xdead_beef,
            prev_digest: 99,
            created_unix_ms: 1,
            chain_digest: None,
        };
        let b = h.encode();
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
        for i in 0..SEGMENT_HEADER_LEN {
            let mut d = b;
            d[i] ^= 0x40;
            assert!(SegmentHeader::decode(&d).is_err(), "flip at {i} accepted");
        }
        assert!(SegmentHeader::decode(&[0u8; 64]).is_err());
        assert!(SegmentHeader::decode(&b[..10]).is_err());
    }

    #[test]
    fn record_round_trip() {
        let mut out = Vec::new();
        encode_record(&mut out, 5, 42, 0, b"hello");
        assert_eq!(out.len(), frame_len(5));
        let HeaderCheck::Valid(h) = check_record_header(&out, 5, 1024) else { panic!() };
        assert_eq!(h, RecordHeader { lsn: 42, len: 5, flags: 0 });
        let r = check_record_body(&out, 5, &h).unwrap();
        assert_eq!(&out[r], b"hello");
        // Another salt never validates.
        assert!(matches!(check_record_header(&out, 6, 1024), HeaderCheck::Invalid(_)));
        // Too long for the configured maximum.
        assert!(matches!(check_record_header(&out, 5, 4), HeaderCheck::Invalid(_)));
        // Every flipped byte is caught by one of the two checks.
        for i in 0..out.len() {
            let mut d = out.clone();
            d[i] ^= 1;
            let ok = match check_record_header(&d, 5, 1024) {
                HeaderCheck::Valid(h) => check_record_body(&d, 5, &h).is_some(),
                _ => false,
            };
            assert!(!ok, "flip at {i} accepted");
        }
        assert_eq!(check_record_header(&[0u8; 20], 5, 10), HeaderCheck::Unwritten);
        assert_eq!(check_record_header(&[1u8; 3], 5, 10), HeaderCheck::Short);
    }

    #[test]
    fn footer_round_trip() {
        let f = Footer { last_lsn: 9, record_count: 3, data_end: 400, digest: 77 };
        let b = f.encode(3);
        assert_eq!(Footer::decode(&b, 3), Some(f));
        assert_eq!(Footer::decode(&b, 4), None);
        let mut d = b;
        d[20] ^= 1;
        assert_eq!(Footer::decode(&d, 3), None);
    }

    #[test]
    fn digest_resumes_from_its_value() {
        let mut whole = Digest::new(9);
        whole.update(b"header and records");
        let mut first = Digest::new(9);
        first.update(b"header and ");
        let mut resumed = Digest::resume(first.value());
        resumed.update(b"records");
        assert_eq!(resumed.value(), whole.value());
    }

    #[test]
    fn a_record_overwritten_with_a_valid_frame_of_its_length_keeps_the_segment_digest() {
        // A frame ends with the CRC of what precedes it in the frame, so its contribution to a
        // CRC over the whole segment does not depend on the payload: the footer digest and the
        // chain survive an in-place overwrite (docs/design.md, erasure).
        let salt = 0x5eed_1234;
        let mut seg = SegmentHeader {
            version: FORMAT_VERSION,
            segment_id: 3,
            first_lsn: 10,
            salt,
            prev_digest: 7,
            created_unix_ms: 1,
            chain_digest: None,
        }
        .encode()
        .to_vec();
        let payloads: Vec<Vec<u8>> =
            (0..5).map(|i| format!("payload {i} {}", "z".repeat(i * 13)).into_bytes()).collect();
        let mut offsets = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            offsets.push(seg.len());
            encode_record(&mut seg, salt, 10 + i as u64, u32::from(i == 1), p);
        }
        let digest = |b: &[u8]| {
            let mut d = Digest::new(salt);
            d.update(b);
            d.value()
        };
        let before = digest(&seg);
        for (i, p) in payloads.iter().enumerate() {
            let mut frame = Vec::new();
            encode_record(&mut frame, salt, 10 + i as u64, u32::from(i == 1), &vec![0xA5 ^ i as u8; p.len()]);
            seg[offsets[i]..offsets[i] + frame.len()].copy_from_slice(&frame);
            assert_eq!(digest(&seg), before, "record {i}");
        }
        // A change that is not a valid frame changes it.
        seg[offsets[2] + 25] ^= 1;
        assert_ne!(digest(&seg), before);
    }

    #[test]
    fn redo_round_trip_and_damage() {
        let r = Redo { segment_id: 9, ranges: vec![(0, vec![1; 64]), (4096, b"erased".to_vec()), (10, Vec::new())] };
        let b = r.encode();
        assert_eq!(Redo::decode(&b), Ok(r));
        for cut in 0..b.len() {
            assert!(Redo::decode(&b[..cut]).is_err(), "cut at {cut} accepted");
        }
        for i in 0..b.len() {
            let mut d = b.clone();
            d[i] ^= 0x10;
            assert!(Redo::decode(&d).is_err(), "flip at {i} accepted");
        }
    }

    #[test]
    fn names() {
        assert_eq!(parse_segment_file_name(&segment_file_name(12)), Some(12));
        assert_eq!(parse_segment_file_name("12.seg"), None);
        assert_eq!(parse_segment_file_name("00000000000000000012.tmp"), None);
    }
}
