//! Reading one record where an earlier scan found it: the segment id and the offset a
//! [`Record`](crate::Record) reports. For readers that keep a record's place (the store's index
//! keeps message text only in the journal) and need it back without a scan.
//!
//! Records never move: appends go to the end, an erase overwrites a record in place (same
//! offset, same length), and segments are never rewritten. So a place stays valid as long as
//! the segment exists; a read checks the header's LSN and both checksums, and fails loudly,
//! naming the file and offset, if anything differs.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::format::{
    HeaderCheck, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN, SegmentHeader, check_record_body, check_record_header,
    segment_file_name,
};
use crate::journal::Lsn;

/// How many open segments a [`RecordAt`] keeps.
const OPEN_SEGMENTS: usize = 64;

/// How many times a record that fails its checksum is read again: an erase may be overwriting
/// it in place at this moment (the overwrite of one record takes microseconds).
const REREADS: u32 = 50;

/// Reads records by place, keeping recently used segments open. Shareable between threads.
#[derive(Debug, Default)]
pub struct RecordAt {
    open: Mutex<HashMap<PathBuf, (std::sync::Arc<File>, u32)>>,
}

impl RecordAt {
    /// A reader with nothing open yet.
    pub fn new() -> RecordAt {
        RecordAt::default()
    }

    /// The payload of record `lsn`, at byte `offset` of segment `segment` of the journal in
    /// `dir`, no longer than `max_len` bytes.
    pub fn read(&self, dir: &Path, segment: u64, offset: u64, lsn: Lsn, max_len: u32) -> Result<Vec<u8>> {
        let path = dir.join(segment_file_name(segment));
        let (file, salt) = self.segment(&path)?;
        let corrupt = |detail: String| Error::Corrupt {
            path: path.clone(),
            offset,
            first_lost_lsn: lsn,
            last_lost_lsn: lsn,
            detail,
        };
        let mut attempt = 0;
        loop {
            let mut head = [0u8; RECORD_HEADER_LEN];
            read_at(&file, &path, &mut head, offset)?;
            let why = match check_record_header(&head, salt, max_len) {
                HeaderCheck::Valid(h) if h.lsn == lsn => {
                    let len = usize::try_from(h.frame_len()).map_err(|_| corrupt("record too large".into()))?;
                    let mut frame = vec![0u8; len];
                    read_at(&file, &path, &mut frame, offset)?;
                    match check_record_body(&frame, salt, &h) {
                        Some(range) => {
                            frame.truncate(range.end);
                            frame.drain(..range.start);
                            return Ok(frame);
                        }
                        None => format!("record LSN {lsn} fails its checksum"),
                    }
                }
                HeaderCheck::Valid(h) => format!("expected record LSN {lsn}, found LSN {}", h.lsn),
                HeaderCheck::Unwritten => format!("no record LSN {lsn} here (zeros)"),
                HeaderCheck::Short => format!("no record LSN {lsn} here (end of file)"),
                HeaderCheck::Invalid(why) => format!("record LSN {lsn}: {why}"),
            };
            attempt += 1;
            if attempt > REREADS {
                return Err(corrupt(why));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The open segment at `path` and its salt.
    fn segment(&self, path: &Path) -> Result<(std::sync::Arc<File>, u32)> {
        if let Some((f, salt)) = self.open.lock().get(path) {
            return Ok((f.clone(), *salt));
        }
        let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
        let mut head = [0u8; SEGMENT_HEADER_LEN];
        read_at(&file, path, &mut head, 0)?;
        let header = SegmentHeader::decode(&head).map_err(|why| Error::Corrupt {
            path: path.to_owned(),
            offset: 0,
            first_lost_lsn: 0,
            last_lost_lsn: u64::MAX,
            detail: why.into(),
        })?;
        let file = std::sync::Arc::new(file);
        let mut open = self.open.lock();
        if open.len() >= OPEN_SEGMENTS {
            open.clear();
        }
        open.insert(path.to_owned(), (file.clone(), header.salt));
        Ok((file, header.salt))
    }

    /// Closes every segment this reader keeps open (their files may be removed or replaced).
    pub fn forget(&self) {
        self.open.lock().clear();
    }
}

/// Reads exactly `buf.len()` bytes at `offset`; a file that ends first reads as zeros there
/// (the check that follows reports it as no record).
fn read_at(file: &File, path: &Path, buf: &mut [u8], offset: u64) -> Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let Some(rest) = buf.get_mut(done..) else { break };
        match file.read_at(rest, offset + done as u64) {
            Ok(0) => {
                rest.fill(0);
                break;
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("read", path, e)),
        }
    }
    Ok(())
}
