//! The store's one order: a counter shared by every process that writes to the store, kept in
//! a small memory-mapped file (`sequence`) beside the lanes, the way SQLite keeps its WAL index
//! in `-shm`. Every message id and every history operation's position is taken from it, so a
//! write that starts after another returned (in any process of the host) sorts after it.
//!
//! The file is a cache of what the lanes say, never the authority: the first process to open the
//! store (no other process has it open, shown by nobody holding a shared lock on the file) sets
//! the counter to the largest id any lane or the index holds, so a counter that a power cut
//! rolled back, or a file that was lost, can never hand out an id twice. While one process has
//! the store open the mapping lives in the page cache and every process sees each increment.
//!
//! Format (docs/format.md "Sequence file"): 64 bytes, `magic[8] = "TLSEQ\r\n\0"`,
//! `version: u32 LE = 1`, `reserved: u32`, `last: u64` (the last id given; native byte order,
//! which is little-endian on every platform this builds for), then zeros.
//!
//! Locks: `write.lock` (exclusive `flock`) is the store-wide lock of conditional writes and
//! also serializes opening; `sequence` carries a shared `flock` for as long as a process has
//! the store open (the kernel drops it when the process dies, whatever kills it).

#![allow(unsafe_code)]

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::layout::{SEQUENCE_FILE, WRITE_LOCK};

#[cfg(not(target_endian = "little"))]
compile_error!("the sequence file stores its counter in native byte order, assumed little-endian");

const MAGIC: [u8; 8] = *b"TLSEQ\r\n\0";
const VERSION: u32 = 1;
/// Offset of the counter (8-byte aligned in a page-aligned mapping).
const COUNTER_AT: usize = 16;
/// Size of the file.
pub(crate) const SEQUENCE_LEN: u64 = 64;
/// Ids stay below 2^53 (exact in a JavaScript number) in a store created with this order; a
/// store migrated from clock ids continues above its largest clock id.
const JS_SAFE: i64 = (1 << 53) - 1;

/// The shared counter of one store, mapped in this process.
#[derive(Debug)]
pub(crate) struct Sequence {
    /// Holds the shared lock that says "a process has this store open".
    _file: File,
    map: memmap2::MmapMut,
}

impl Sequence {
    /// Maps the store's counter, creating the file if needed. When no other process has the
    /// store open, the counter is first raised to `floor()` (the largest id the lanes and the
    /// index hold), under the store's write lock so no other process opens meanwhile.
    pub(crate) fn open(dir: &Path, floor: impl FnOnce() -> Result<i64>) -> Result<Sequence> {
        let write_lock = lock_exclusive(&dir.join(WRITE_LOCK))?;
        let path = dir.join(SEQUENCE_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io("open", &path, e))?;
        match file.try_lock() {
            Ok(()) => {
                // Nobody else has the store open: the file may be stale (power cut), torn
                // (killed while created) or missing. Rebuild it from the lanes.
                let from_file = read_counter(&file, &path)?;
                let floor = floor()?;
                let last = floor.max(from_file.unwrap_or(0)).max(0);
                let mut header = [0u8; SEQUENCE_LEN as usize];
                header[..8].copy_from_slice(&MAGIC);
                header[8..12].copy_from_slice(&VERSION.to_le_bytes());
                header[COUNTER_AT..COUNTER_AT + 8].copy_from_slice(&(last as u64).to_le_bytes());
                file.set_len(SEQUENCE_LEN).map_err(|e| Error::io("size", &path, e))?;
                file.write_all_at(&header, 0).map_err(|e| Error::io("write", &path, e))?;
                file.sync_all().map_err(|e| Error::io("sync", &path, e))?;
                info!(last, from_lanes = floor, from_file = ?from_file, "store sequence recovered");
                if last > JS_SAFE {
                    warn!(
                        last,
                        "this store holds clock ids from before the shared order: new ids continue above them \
                         and are not exact in a JavaScript number"
                    );
                }
                // Exclusive to shared: not atomic with flock, but every other opener waits on
                // the write lock we hold, so nobody can take it in between.
                file.unlock().map_err(|e| Error::io("unlock", &path, e))?;
                file.lock_shared().map_err(|e| Error::io("lock", &path, e))?;
            }
            Err(fs::TryLockError::WouldBlock) => {
                file.lock_shared().map_err(|e| Error::io("lock", &path, e))?;
                if read_counter(&file, &path)?.is_none() {
                    return Err(Error::Invalid(format!(
                        "{} is not a sequence file although another process has the store open",
                        path.display()
                    )));
                }
            }
            Err(fs::TryLockError::Error(e)) => return Err(Error::io("lock", &path, e)),
        }
        // SAFETY: the file is SEQUENCE_LEN bytes long and never truncated while mapped (only an
        // opener holding both locks resizes it, and only when no process has it mapped); the
        // counter is only ever accessed through atomic operations (see `counter`).
        let map = unsafe { memmap2::MmapOptions::new().len(SEQUENCE_LEN as usize).map_mut(&file) }
            .map_err(|e| Error::io("map", &path, e))?;
        drop(write_lock);
        Ok(Sequence { _file: file, map })
    }

    fn counter(&self) -> &AtomicU64 {
        let p = self.map.as_ptr();
        // SAFETY: the mapping is page-aligned and at least COUNTER_AT + 8 bytes long, so the
        // pointer is in bounds and 8-byte aligned; it lives as long as `self`. Every process
        // touches these bytes only with atomic read-modify-write operations, and atomics on
        // shared memory are coherent between processes on the same host.
        unsafe { &*(p.add(COUNTER_AT) as *const AtomicU64) }
    }

    /// Takes `n` consecutive ids; returns the first. Every id taken later, by any process of
    /// the store, is larger.
    pub(crate) fn take(&self, n: u64) -> i64 {
        let prev = self.counter().fetch_add(n, Ordering::SeqCst);
        i64::try_from(prev.saturating_add(1)).unwrap_or(i64::MAX)
    }

    /// One id.
    pub(crate) fn next(&self) -> i64 {
        self.take(1)
    }

    /// The last id given (by any process).
    #[cfg(test)]
    pub(crate) fn last(&self) -> i64 {
        i64::try_from(self.counter().load(Ordering::SeqCst)).unwrap_or(i64::MAX)
    }
}

/// The counter the file holds, or `None` if it is not a valid sequence file.
fn read_counter(f: &File, path: &Path) -> Result<Option<i64>> {
    let mut b = [0u8; SEQUENCE_LEN as usize];
    let n = read_up_to(f, &mut b).map_err(|e| Error::io("read", path, e))?;
    if n < COUNTER_AT + 8 || b[..8] != MAGIC || b[8..12] != VERSION.to_le_bytes() {
        return Ok(None);
    }
    let mut c = [0u8; 8];
    c.copy_from_slice(&b[COUNTER_AT..COUNTER_AT + 8]);
    Ok(i64::try_from(u64::from_le_bytes(c)).ok())
}

fn read_up_to(f: &File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// The store-wide write lock (`write.lock`), held while the returned file is open.
pub(crate) fn lock_exclusive(path: &Path) -> Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io("open", path, e))?;
    f.lock().map_err(|e| Error::io("lock", path, e))?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_between_handles_and_recovered_from_the_floor() {
        let d = tempfile::tempdir().expect("tempdir");
        let a = Sequence::open(d.path(), || Ok(41)).expect("open");
        assert_eq!(a.next(), 42);
        // A second handle (as another process) does not recompute: it shares the counter.
        let b = Sequence::open(d.path(), || panic!("not the first opener")).expect("open");
        assert_eq!(b.next(), 43);
        assert_eq!(a.take(3), 44);
        assert_eq!(b.next(), 47);
        drop((a, b));
        // Alone again: the floor wins when it is above the file ...
        let c = Sequence::open(d.path(), || Ok(100)).expect("open");
        assert_eq!(c.next(), 101);
        drop(c);
        // ... and the file (ids given but never written) when the lanes are behind.
        let c = Sequence::open(d.path(), || Ok(5)).expect("open");
        assert_eq!(c.next(), 102);
        drop(c);
        // A torn or foreign file is rebuilt from the floor.
        fs::write(d.path().join(SEQUENCE_FILE), b"garbage").expect("write");
        let c = Sequence::open(d.path(), || Ok(7)).expect("open");
        assert_eq!(c.next(), 8);
        assert_eq!(c.last(), 8);
    }
}
