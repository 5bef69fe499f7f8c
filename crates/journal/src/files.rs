//! File names, the quarantine folder and the holes manifest: the one module that decides where
//! things go and syncs directories after creating, renaming and removing files.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::storage::{OpenMode, Storage, StorageFile};

/// Name of the writer lock file.
pub const LOCK_FILE: &str = "LOCK";
/// Name of the quarantine folder.
pub const QUARANTINE_DIR: &str = "quarantine";
/// Name of the salvage manifest.
pub const HOLES_FILE: &str = "holes.json";

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)).unwrap_or(0)
}

/// A damaged range that salvage recovery accepted: readers skip it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hole {
    /// Segment id.
    pub segment_id: u64,
    /// Offset of the damage in the segment (0 with `len` 0 for a break in the chain before the
    /// segment).
    pub offset: u64,
    /// Length of the damaged range.
    pub len: u64,
    /// First LSN lost (if `last_lost_lsn >= first_lost_lsn`).
    pub first_lost_lsn: u64,
    /// Last LSN lost; below `first_lost_lsn` when no record was lost.
    pub last_lost_lsn: u64,
    /// Why.
    pub reason: String,
    /// Where the damaged bytes were copied, relative to the journal folder.
    pub quarantine_file: Option<String>,
    /// When it was salvaged, ms since the Unix epoch.
    pub time_unix_ms: u64,
}

impl Hole {
    /// Number of LSNs lost.
    pub fn lost_count(&self) -> u64 {
        (self.last_lost_lsn + 1).saturating_sub(self.first_lost_lsn)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct HolesFile {
    version: u32,
    holes: Vec<Hole>,
}

/// Reads `holes.json` (empty if absent).
pub fn read_holes(storage: &dyn Storage, dir: &Path) -> Result<Vec<Hole>> {
    let path = dir.join(HOLES_FILE);
    if !storage.exists(&path) {
        return Ok(Vec::new());
    }
    let bytes = read_all(storage, &path)?;
    let parsed: HolesFile = serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
        path: path.clone(),
        offset: e.column() as u64,
        first_lost_lsn: 0,
        last_lost_lsn: 0,
        detail: format!("salvage manifest is not valid JSON ({e}); restore it from a backup"),
    })?;
    Ok(parsed.holes)
}

/// Writes `holes.json` atomically (temporary file, sync, rename, sync the folder).
pub fn write_holes(storage: &dyn Storage, dir: &Path, holes: &[Hole]) -> Result<()> {
    let body = serde_json::to_vec_pretty(&HolesFile { version: 1, holes: holes.to_vec() })
        .map_err(|e| Error::InvalidOption(e.to_string()))?;
    write_file_atomic(storage, dir, HOLES_FILE, &body)
}

/// Writes a small file atomically.
pub fn write_file_atomic(storage: &dyn Storage, dir: &Path, name: &str, body: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp-{}", now_ms()));
    let path = dir.join(name);
    let f = storage.open(&tmp, OpenMode::CreateNew).map_err(|e| Error::io("create", &tmp, e))?;
    f.write_all_at(body, 0).map_err(|e| Error::io("write", &tmp, e))?;
    f.sync_data().map_err(|e| Error::io("sync", &tmp, e))?;
    drop(f);
    storage.rename(&tmp, &path).map_err(|e| Error::io("rename", &tmp, e))?;
    storage.sync_dir(dir).map_err(|e| Error::io("sync folder", dir, e))?;
    Ok(())
}

/// Reads a whole (small) file.
pub fn read_all(storage: &dyn Storage, path: &Path) -> Result<Vec<u8>> {
    let f = storage.open(path, OpenMode::Read).map_err(|e| Error::io("open", path, e))?;
    let len = f.len().map_err(|e| Error::io("stat", path, e))?;
    let mut buf = vec![0u8; usize::try_from(len).unwrap_or(0)];
    read_full_at(&*f, &mut buf, 0).map_err(|e| Error::io("read", path, e))?;
    Ok(buf)
}

/// Reads until `buf` is full or end of file; returns the bytes read.
pub fn read_full_at(f: &dyn StorageFile, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let Some(rest) = buf.get_mut(done..) else { break };
        let n = f.read_at(rest, offset + done as u64)?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(done)
}

/// The quarantine folder of a journal, created on first use.
#[derive(Debug)]
pub struct Quarantine<'a> {
    storage: &'a dyn Storage,
    dir: PathBuf,
}

/// What the quarantine manifest says about one item.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuarantineNote {
    /// The file the bytes came from.
    pub source: String,
    /// Offset in that file.
    pub offset: u64,
    /// Number of bytes.
    pub len: u64,
    /// Why they were put aside.
    pub reason: String,
    /// LSNs concerned, if known (`[first, last]`).
    pub lsn_range: Option<(u64, u64)>,
    /// When, ms since the Unix epoch.
    pub time_unix_ms: u64,
}

impl<'a> Quarantine<'a> {
    /// The quarantine folder under `journal_dir`.
    pub fn new(storage: &'a dyn Storage, journal_dir: &Path) -> Self {
        Quarantine { storage, dir: journal_dir.join(QUARANTINE_DIR) }
    }

    fn ensure(&self) -> Result<()> {
        if !self.storage.exists(&self.dir) {
            self.storage.create_dir_all(&self.dir).map_err(|e| Error::io("create folder", &self.dir, e))?;
        }
        Ok(())
    }

    fn unique_base(&self, stem: &str) -> String {
        let t = now_ms();
        let mut n = 0u32;
        loop {
            let base = format!("{t}-{stem}-{n}");
            if !self.storage.exists(&self.dir.join(format!("{base}.json"))) {
                return base;
            }
            n += 1;
        }
    }

    /// Copies `len` bytes of `src` at `offset` into the quarantine with a manifest, and syncs
    /// both. Returns the name of the copy, relative to the journal folder.
    pub fn copy_range(
        &self,
        src: &dyn StorageFile,
        src_path: &Path,
        offset: u64,
        len: u64,
        reason: &str,
        lsn_range: Option<(u64, u64)>,
    ) -> Result<String> {
        self.ensure()?;
        let stem = src_path.file_name().and_then(|s| s.to_str()).unwrap_or("file").to_string();
        let base = self.unique_base(&format!("{stem}-at-{offset}"));
        let bin = self.dir.join(format!("{base}.bin"));
        let out = self.storage.open(&bin, OpenMode::CreateNew).map_err(|e| Error::io("create", &bin, e))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut done = 0u64;
        while done < len {
            let want = usize::try_from((len - done).min(buf.len() as u64)).unwrap_or(buf.len());
            let Some(chunk) = buf.get_mut(..want) else { break };
            let n = read_full_at(src, chunk, offset + done).map_err(|e| Error::io("read", src_path, e))?;
            if n == 0 {
                break;
            }
            let Some(got) = chunk.get(..n) else { break };
            out.write_all_at(got, done).map_err(|e| Error::io("write", &bin, e))?;
            done += n as u64;
        }
        out.sync_data().map_err(|e| Error::io("sync", &bin, e))?;
        self.note(&base, src_path, offset, done, reason, lsn_range)?;
        Ok(format!("{QUARANTINE_DIR}/{base}.bin"))
    }

    /// Moves a whole file into the quarantine with a manifest. Returns its new name, relative to
    /// the journal folder.
    pub fn move_file(&self, src_path: &Path, len: u64, reason: &str) -> Result<String> {
        self.ensure()?;
        let stem = src_path.file_name().and_then(|s| s.to_str()).unwrap_or("file").to_string();
        let base = self.unique_base(&stem);
        let dest = self.dir.join(format!("{base}.bin"));
        self.storage.rename(src_path, &dest).map_err(|e| Error::io("rename", src_path, e))?;
        self.note(&base, src_path, 0, len, reason, None)?;
        if let Some(parent) = src_path.parent() {
            self.storage.sync_dir(parent).map_err(|e| Error::io("sync folder", parent, e))?;
        }
        Ok(format!("{QUARANTINE_DIR}/{base}.bin"))
    }

    fn note(
        &self,
        base: &str,
        src_path: &Path,
        offset: u64,
        len: u64,
        reason: &str,
        lsn_range: Option<(u64, u64)>,
    ) -> Result<()> {
        let note = QuarantineNote {
            source: src_path.display().to_string(),
            offset,
            len,
            reason: reason.to_string(),
            lsn_range,
            time_unix_ms: now_ms(),
        };
        let body = serde_json::to_vec_pretty(&note).map_err(|e| Error::InvalidOption(e.to_string()))?;
        let path = self.dir.join(format!("{base}.json"));
        let f = self.storage.open(&path, OpenMode::CreateNew).map_err(|e| Error::io("create", &path, e))?;
        f.write_all_at(&body, 0).map_err(|e| Error::io("write", &path, e))?;
        f.sync_data().map_err(|e| Error::io("sync", &path, e))?;
        self.storage.sync_dir(&self.dir).map_err(|e| Error::io("sync folder", &self.dir, e))?;
        Ok(())
    }
}

/// Opens a file for reading as a shared handle.
pub fn open_read(storage: &dyn Storage, path: &Path) -> Result<Arc<dyn StorageFile>> {
    storage.open(path, OpenMode::Read).map_err(|e| Error::io("open", path, e))
}
