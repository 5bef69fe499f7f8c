//! Reading records back: segment views and the iterator.

use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::files::{self, Hole};
use crate::format::{
    FOOTER_LEN, Footer, HeaderCheck, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN, SegmentHeader, check_record_body,
    check_record_header, parse_segment_file_name, segment_file_name,
};
use crate::journal::{Inner, Lsn};
use crate::recovery::SegmentMeta;
use crate::storage::{FileBytes, StorageFile};

/// A mapped window of a sealed segment: (segment id, offset, bytes).
struct Window(u64, u64, FileBytes);

impl std::fmt::Debug for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Window(segment {}, offset {}, {} bytes)", self.0, self.1, (*self.2).as_ref().len())
    }
}

/// Bytes of a sealed segment mapped at a time while iterating.
const MAP_WINDOW: usize = 8 << 20;

/// One segment as readers see it.
pub(crate) struct SegView {
    pub id: u64,
    pub path: PathBuf,
    pub first_lsn: Lsn,
    /// For sealed segments: the last LSN.
    pub last_lsn: Lsn,
    /// For sealed segments: the end of the records.
    pub data_end: u64,
    pub salt: u32,
    pub sealed: bool,
    file: Arc<dyn StorageFile>,
}

impl std::fmt::Debug for SegView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegView")
            .field("id", &self.id)
            .field("first_lsn", &self.first_lsn)
            .field("last_lsn", &self.last_lsn)
            .field("sealed", &self.sealed)
            .finish_non_exhaustive()
    }
}

impl SegView {
    pub(crate) fn sealed(
        id: u64,
        path: PathBuf,
        first_lsn: Lsn,
        last_lsn: Lsn,
        data_end: u64,
        salt: u32,
        file: Arc<dyn StorageFile>,
    ) -> Self {
        SegView { id, path, first_lsn, last_lsn, data_end, salt, sealed: true, file }
    }

    pub(crate) fn sealed_from(s: &SegmentMeta) -> Self {
        SegView::sealed(
            s.id,
            s.path.clone(),
            s.header.first_lsn,
            s.last_lsn,
            s.data_end,
            s.header.salt,
            Arc::clone(&s.file),
        )
    }

    pub(crate) fn active(id: u64, path: PathBuf, first_lsn: Lsn, salt: u32, file: Arc<dyn StorageFile>) -> Self {
        SegView { id, path, first_lsn, last_lsn: u64::MAX, data_end: u64::MAX, salt, sealed: false, file }
    }
}

/// One record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its LSN.
    pub lsn: Lsn,
    /// Its payload.
    pub payload: Vec<u8>,
    /// The id of the segment that holds it.
    pub segment: u64,
    /// The byte offset of its frame in that segment (where [`RecordAt::read`](crate::RecordAt::read)
    /// finds it again: records never move).
    pub offset: u64,
}

/// Iterator over records; see [`Journal::iter_from`](crate::Journal::iter_from).
#[derive(Debug)]
pub struct Iter {
    inner: Arc<Inner>,
    segs: Vec<Arc<SegView>>,
    holes: Vec<Hole>,
    seg: usize,
    pos: u64,
    from: Lsn,
    end: Lsn,
    expected: Option<Lsn>,
    done: bool,
    buf: Vec<u8>,
    /// The mapped window of the current sealed segment: (segment id, offset, bytes).
    window: Option<Window>,
    /// Started at the seek hint and no record read yet: anything unexpected there means
    /// "start over from the segment's first record", not "end of the log".
    hinted: bool,
    /// Reads again of the record at `pos` after it looked damaged (see [`Iter::again`]).
    retries: u32,
    /// Whether an overwrite was in flight at the last of those reads.
    was_in_flight: bool,
}

/// How many times a record that looks damaged is read again while an overwrite is in flight.
const DAMAGE_REREADS: u32 = 1000;

impl Iter {
    pub(crate) fn new(inner: Arc<Inner>, from: Lsn, end: Lsn) -> Iter {
        let segs = inner.segs.read().clone();
        let holes = inner.holes.read().clone();
        // The last segment whose first LSN is at or below `from`.
        let seg = segs.iter().rposition(|s| s.first_lsn <= from).unwrap_or(0);
        // Start at the end of the last record an iterator returned, if that is in this segment
        // and not past `from`: records there are immutable, so it is a record boundary.
        let (pos, expected) = match (*inner.seek_hint.lock(), segs.get(seg)) {
            (Some((id, offset, lsn)), Some(s)) if s.id == id && lsn <= from && lsn > s.first_lsn => (offset, Some(lsn)),
            _ => (0, None),
        };
        let hinted = pos != 0;
        // Nothing to read (the common case of a reader that is caught up): no segment is touched.
        let done = from > end;
        Iter {
            inner,
            segs,
            holes,
            seg,
            pos,
            from,
            end,
            expected,
            done,
            buf: Vec::new(),
            window: None,
            hinted,
            retries: 0,
            was_in_flight: false,
        }
    }

    /// Whether to read the record at `pos` again before calling it damaged. An erase overwrites
    /// records in place (same length, new checksum), and a read that overlaps the write sees
    /// part of each, which fails the checksum. So: once more at once (an overwrite that ended
    /// meanwhile), and again every 2 ms while an overwrite is in flight (its redo file exists:
    /// it is written before the segment is touched and removed after), up to ~2 s. Damage that
    /// no erase explains costs one extra read.
    fn again(&mut self) -> bool {
        let in_flight = self.inner.opts.storage.exists(&self.inner.dir.join(crate::overwrite::REDO_FILE));
        let retry = match (self.retries, in_flight, self.was_in_flight) {
            (0, _, _) => true,
            (n, true, _) => n < DAMAGE_REREADS,
            // It ended since the last read: one more read sees its result.
            (_, false, true) => true,
            _ => false,
        };
        self.was_in_flight = in_flight;
        if !retry {
            self.retries = 0;
            self.was_in_flight = false;
            return false;
        }
        self.retries += 1;
        self.window = None;
        if in_flight {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        true
    }

    /// Gives up the seek hint: reads the segment from its first record.
    fn restart(&mut self) {
        self.hinted = false;
        self.pos = 0;
        self.expected = None;
    }

    /// Reports damage at `offset` of `s` and moves past it: to the next valid record of the
    /// segment, else to the next segment (sealed), else to the end (active). The error names the
    /// LSNs skipped; the iterator then goes on with every valid record after the damage.
    fn fail(&mut self, s: &SegView, offset: u64, detail: String) -> Option<Result<Record>> {
        let first = self.expected.unwrap_or(s.first_lsn);
        let resume = s.file.len().and_then(|len| {
            let mut r = crate::scan::ChunkReader::new(&*s.file, if s.sealed { s.data_end.min(len) } else { len });
            crate::scan::find_next_valid(&mut r, offset + 1, s.salt, first, self.inner.opts.max_record_size)
        });
        let last_lost = match resume {
            Ok(Some((off, crate::scan::Found::Record(lsn)))) if lsn <= self.end || s.sealed => {
                self.pos = off;
                self.expected = Some(lsn);
                lsn.saturating_sub(1)
            }
            _ if s.sealed => {
                self.seg += 1;
                self.pos = 0;
                self.expected = Some(s.last_lsn.saturating_add(1));
                s.last_lsn
            }
            _ => {
                self.done = true;
                self.end.max(first)
            }
        };
        Some(Err(Error::Corrupt {
            path: s.path.clone(),
            offset,
            first_lost_lsn: first,
            last_lost_lsn: last_lost,
            detail,
        }))
    }

    /// Reads `n` bytes at `off` of segment `s` into `self.buf` (active) or returns a slice of the
    /// map (sealed).
    fn read(&mut self, s: &SegView, off: u64, n: usize) -> Result<Vec<u8>> {
        if s.sealed {
            let covered = |w: &Window| {
                let have = (*w.2).as_ref().len() as u64;
                w.0 == s.id && off >= w.1 && off.saturating_add(n as u64) <= w.1 + have
            };
            if !self.window.as_ref().is_some_and(covered) {
                // Drop the old window first: a long scan keeps one window resident, not the
                // whole segment.
                self.window = None;
                let len = n.max(MAP_WINDOW);
                // SAFETY: `s` is sealed: never truncated; only overwritten in place by an erase,
                // record by record, and the bytes are copied out of the map and checked.
                #[allow(unsafe_code)]
                let m = unsafe { s.file.map_range(off, len) }.map_err(|e| Error::io("map", &s.path, e))?;
                self.window = Some(Window(s.id, off, m));
            }
            let Some(Window(_, start, m)) = &self.window else { return Ok(Vec::new()) };
            let b: &[u8] = (**m).as_ref();
            let a = usize::try_from(off - start).unwrap_or(usize::MAX);
            let e = a.saturating_add(n).min(b.len());
            return Ok(b.get(a..e).unwrap_or(&[]).to_vec());
        }
        self.buf.resize(n, 0);
        let got = files::read_full_at(&*s.file, &mut self.buf, off).map_err(|e| Error::io("read", &s.path, e))?;
        Ok(self.buf.get(..got).unwrap_or(&[]).to_vec())
    }
}

impl Iterator for Iter {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(e) = self.expected
                && e > self.end
            {
                self.done = true;
                return None;
            }
            let s = Arc::clone(self.segs.get(self.seg)?);
            if self.pos == 0 {
                self.pos = SEGMENT_HEADER_LEN as u64;
                self.expected = Some(self.expected.map_or(s.first_lsn, |e| e.max(s.first_lsn)));
                continue;
            }
            if let Some(h) = self.holes.iter().find(|h| h.segment_id == s.id && h.offset == self.pos && h.len > 0) {
                self.pos += h.len;
                let next = h.last_lost_lsn.saturating_add(1);
                self.expected = Some(self.expected.map_or(next, |e| e.max(next)));
                continue;
            }
            if s.sealed && self.pos >= s.data_end {
                self.seg += 1;
                self.pos = 0;
                continue;
            }
            let head = match self.read(&s, self.pos, RECORD_HEADER_LEN.max(FOOTER_LEN)) {
                Ok(h) => h,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            if !s.sealed
                && let Some(f) = Footer::decode(&head, s.salt)
                && f.data_end == self.pos
            {
                // Sealed since we looked: go on with the next segment.
                self.seg += 1;
                self.pos = 0;
                continue;
            }
            let expected = self.expected.unwrap_or(s.first_lsn);
            match check_record_header(&head, s.salt, self.inner.opts.max_record_size) {
                HeaderCheck::Valid(h) if h.lsn == expected || (self.expected.is_none() && h.lsn >= s.first_lsn) => {
                    let flen = usize::try_from(h.frame_len()).unwrap_or(usize::MAX);
                    let frame = match self.read(&s, self.pos, flen) {
                        Ok(f) => f,
                        Err(e) => {
                            self.done = true;
                            return Some(Err(e));
                        }
                    };
                    let Some(range) = check_record_body(&frame, s.salt, &h) else {
                        if self.hinted {
                            self.restart();
                            continue;
                        }
                        // In the active segment this is the end of what was written, unless the
                        // record is one that was already written and published: then it is damage.
                        if s.sealed || expected <= self.end {
                            if self.again() {
                                continue;
                            }
                            let at = self.pos;
                            return self.fail(&s, at, format!("record LSN {} fails its checksum", h.lsn));
                        }
                        self.done = true;
                        return None;
                    };
                    self.hinted = false;
                    (self.retries, self.was_in_flight) = (0, false);
                    let at = self.pos;
                    self.pos += h.frame_len();
                    self.expected = Some(h.lsn + 1);
                    if h.lsn > self.end {
                        self.done = true;
                        return None;
                    }
                    if h.lsn >= self.from {
                        *self.inner.seek_hint.lock() = Some((s.id, self.pos, h.lsn + 1));
                        let payload = frame.get(range).unwrap_or(&[]).to_vec();
                        return Some(Ok(Record { lsn: h.lsn, payload, segment: s.id, offset: at }));
                    }
                }
                other => {
                    // Unwritten or short at the hint is the end of the log, as anywhere else.
                    if self.hinted && matches!(other, HeaderCheck::Valid(_) | HeaderCheck::Invalid(_)) {
                        self.restart();
                        continue;
                    }
                    if !s.sealed && expected > self.end {
                        // End of what has been written in the active segment.
                        self.done = true;
                        return None;
                    }
                    // A sealed segment, or a record of the active segment that was already written
                    // and published (LSN at most `end`): damage, never a silent end.
                    if self.again() {
                        continue;
                    }
                    let at = self.pos;
                    let why = match other {
                        HeaderCheck::Valid(h) => format!("record has LSN {} where {} was expected", h.lsn, expected),
                        HeaderCheck::Unwritten => "zero bytes where a written record should be".into(),
                        HeaderCheck::Short => "segment ends inside a record header".into(),
                        HeaderCheck::Invalid(w) => w.into(),
                    };
                    return self.fail(&s, at, why);
                }
            }
        }
    }
}

/// Rebuilds the segment views of a read-only journal from the files (new segments, newly sealed
/// ones). Returns the views and the last LSN readable.
pub(crate) fn refresh_views(inner: &Inner) -> Result<(Vec<Arc<SegView>>, Lsn)> {
    let storage = &*inner.opts.storage;
    let dir = &inner.dir;
    let old = inner.segs.read().clone();
    let names = storage.list(dir).map_err(|e| Error::io("list", dir, e))?;
    let mut ids: Vec<u64> = names.iter().filter_map(|n| parse_segment_file_name(n)).collect();
    ids.sort_unstable();
    let mut views = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(v) = old.iter().find(|v| v.id == id && v.sealed) {
            views.push(Arc::clone(v));
            continue;
        }
        let path = dir.join(segment_file_name(id));
        let Ok(file) = files::open_read(storage, &path) else { continue };
        let len = file.len().map_err(|e| Error::io("stat", &path, e))?;
        // Sealed now? The same header + footer check recovery uses.
        if let Some(meta) = crate::recovery::check_by_footer(&file, &path, id, len)? {
            views.push(Arc::new(SegView::sealed_from(&meta)));
            continue;
        }
        let mut hb = [0u8; SEGMENT_HEADER_LEN];
        files::read_full_at(&*file, &mut hb, 0).map_err(|e| Error::io("read", &path, e))?;
        let Ok(header) = SegmentHeader::decode(&hb) else { continue };
        views.push(Arc::new(SegView::active(id, path, header.first_lsn, header.salt, file)));
    }
    // The last readable LSN: sealed segments say it; the active one is walked from where the
    // previous refresh stopped.
    let mut last = 0;
    if let Some(v) = views.last() {
        if v.sealed {
            last = v.last_lsn;
        } else {
            let mut tail = inner.ro_tail.lock();
            let (mut pos, start_last) = match *tail {
                Some((id, pos, l)) if id == v.id => (pos, l),
                _ => (SEGMENT_HEADER_LEN as u64, v.first_lsn.saturating_sub(1)),
            };
            last = start_last;
            // Only whole batches are visible: a batch is all or nothing after a crash.
            let (mut walk_pos, mut walk_last) = (pos, last);
            let mut r =
                crate::scan::ChunkReader::new(&*v.file, v.file.len().map_err(|e| Error::io("stat", &v.path, e))?);
            let holes = inner.holes.read().clone();
            loop {
                if let Some(h) = holes.iter().find(|h| h.segment_id == v.id && h.offset == walk_pos && h.len > 0) {
                    walk_pos += h.len;
                    walk_last = walk_last.max(h.last_lost_lsn);
                    (pos, last) = (walk_pos, walk_last);
                    continue;
                }
                let head = r.get(walk_pos, RECORD_HEADER_LEN).map_err(|e| Error::io("read", &v.path, e))?.to_vec();
                let HeaderCheck::Valid(h) = check_record_header(&head, v.salt, inner.opts.max_record_size) else {
                    break;
                };
                if h.lsn != walk_last + 1 {
                    break;
                }
                let flen = usize::try_from(h.frame_len()).unwrap_or(usize::MAX);
                let frame = r.get(walk_pos, flen).map_err(|e| Error::io("read", &v.path, e))?;
                if check_record_body(frame, v.salt, &h).is_none() {
                    break;
                }
                walk_last = h.lsn;
                walk_pos += h.frame_len();
                if h.flags & crate::format::FLAG_BATCH_CONTINUES == 0 {
                    (pos, last) = (walk_pos, walk_last);
                }
            }
            *tail = Some((v.id, pos, last));
        }
    }
    Ok((views, last))
}
