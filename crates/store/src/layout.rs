//! The store folder: the one module that knows its file names, its locks, the quarantine and
//! its notes, private (0700/0600) creation and folder syncs.
//!
//! ```text
//! <store>/
//!   lanes/lane-0001/       one journal per writing process (tidelog-journal owns its inside)
//!   index.db, -wal, -shm   the derived SQLite index
//!   compactor.lock         held (flock) by the process running the compactor
//!   index.rebuild          a request to rebuild the index, holding the reason
//!   quarantine/            damaged files moved aside, each with a `<name>.json` note
//!   index.rebuilding.db    a replacement index being built (`rebuild-index` of a healthy one)
//!   .logbook-tmp-*/        scratch space of a running verify (its index copy), locked by it;
//!                          one left by a killed process is removed by the next verify or backup
//!   backup.json            in a backup: written first with "complete": false, replaced with
//!                          "complete": true once every file is copied and synced
//!   store.id               this store's stable random id (a remote index keys its rows by it)
//!   shipper.lock           held (flock) by the process shipping batches to a remote index
//!   sequence               the store's shared order: a mapped counter (see `sequence.rs`),
//!                          share-locked by every process that has the store open
//!   write.lock             the store-wide lock of conditional writes (and of opening)
//!   compactor.problem      only while the compactor of the process holding the role is degraded
//!   shipper.problem        (a panic, or a failure lasting 30 s): JSON, for other processes' status
//!   erase.pending-*        one per deletion not erased from disk yet (written by the deleting
//!                          process; removed by the erase pass that erased it)
//! ```
//!
//! The quarantine keeps damaged files until a person removes them
//! ([`QuarantinedFile::remove`], `tidelog quarantine remove`); nothing removes them by itself.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::time::{format_iso8601, now_ms};

/// Folder of the lanes (one journal per writing process).
pub const LANES_DIR: &str = "lanes";
/// The SQLite index file.
pub const INDEX_FILE: &str = "index.db";
/// The lock held by the process running the compactor.
pub const COMPACTOR_LOCK: &str = "compactor.lock";
/// Where damaged files are moved.
pub const QUARANTINE_DIR: &str = "quarantine";
/// Marker asking the compactor to move the index to the quarantine and rebuild it; holds the
/// reason. Written by a process that finds the index ahead of the lane it just claimed.
pub const REBUILD_MARKER: &str = "index.rebuild";
/// Where `rebuild-index` builds the replacement of a healthy index before swapping it in.
pub(crate) const REBUILDING_FILE: &str = "index.rebuilding.db";
/// This store's stable id: a random UUID written once, when a writer first opens the folder.
/// A remote index (PostgreSQL) fed by many stores keys every row by it.
pub const STORE_ID_FILE: &str = "store.id";
/// The lock held by the process shipping batches to a remote index.
pub const SHIPPER_LOCK: &str = "shipper.lock";
/// The store's shared order (a memory-mapped counter; rebuilt from the lanes by the first
/// process to open the store).
pub const SEQUENCE_FILE: &str = "sequence";
/// The store-wide lock: held while a conditional write reads every lane, decides and appends,
/// and while a process opens the store.
pub const WRITE_LOCK: &str = "write.lock";
/// Written by the process running the compactor while that thread is degraded (it panicked
/// recently, or every attempt has failed for a while), removed once it is healthy: JSON
/// (`thread`, `pid`, `lane`, `what`, `time_unix_ms`) that other processes show in their status.
pub const COMPACTOR_PROBLEM: &str = "compactor.problem";
/// The same for the shipper to a remote index.
pub const SHIPPER_PROBLEM: &str = "shipper.problem";
/// Prefix of lane folder names.
const LANE_PREFIX: &str = "lane-";

/// The folder of lane `name`.
pub(crate) fn lane_dir(dir: &Path, name: &str) -> PathBuf {
    dir.join(LANES_DIR).join(name)
}

/// The name of the `n`th lane.
pub(crate) fn lane_name(n: u64) -> String {
    format!("{LANE_PREFIX}{n:04}")
}

/// The number in a lane name.
pub(crate) fn lane_number(name: &str) -> Option<u64> {
    name.strip_prefix(LANE_PREFIX)?.parse().ok()
}

/// Lane folder names under `dir/lanes`, sorted.
pub(crate) fn lane_names(dir: &Path) -> Result<Vec<String>> {
    let lanes = dir.join(LANES_DIR);
    if !lanes.exists() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for e in fs::read_dir(&lanes).map_err(|e| Error::io("list", &lanes, e))? {
        let e = e.map_err(|e| Error::io("list", &lanes, e))?;
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false)
            && let Ok(n) = e.file_name().into_string()
            && n.starts_with(LANE_PREFIX)
        {
            out.push(n);
        }
    }
    out.sort();
    Ok(out)
}

/// The `-wal` file beside a SQLite database.
pub(crate) fn wal_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push("-wal");
    PathBuf::from(s)
}

/// Size of a file, 0 when missing.
pub(crate) fn file_len(p: &Path) -> u64 {
    fs::metadata(p).map_or(0, |m| m.len())
}

/// Creates a folder (0700) and its parents, syncing the parent of each new one.
pub(crate) fn create_private_dir(path: &Path) -> Result<()> {
    use tidelog_journal::storage::{OsStorage, Storage};
    OsStorage.create_dir_all(path).map_err(|e| Error::io("create folder", path, e))
}

/// Syncs a folder (after a create, rename or delete in it).
pub(crate) fn sync_dir(p: &Path) -> Result<()> {
    File::open(p).and_then(|f| f.sync_all()).map_err(|e| Error::io("sync folder", p, e))
}

/// Writes a new file (mode 0600, must not exist) with `body` and syncs it. The caller syncs
/// the folder.
pub(crate) fn write_new_private_file(path: &Path, body: &[u8]) -> Result<()> {
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io("create", path, e))?;
    (&f).write_all(body).map_err(|e| Error::io("write", path, e))?;
    f.sync_all().map_err(|e| Error::io("sync", path, e))
}

/// Copies `src` to a new file `dest` (0600) and syncs it; returns the bytes copied.
pub(crate) fn copy_file_private(src: &Path, dest: &Path) -> Result<u64> {
    let mut from = File::open(src).map_err(|e| Error::io("open", src, e))?;
    let mut to = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dest)
        .map_err(|e| Error::io("create", dest, e))?;
    let n = io::copy(&mut from, &mut to).map_err(|e| Error::io("copy to", dest, e))?;
    to.sync_all().map_err(|e| Error::io("sync", dest, e))?;
    Ok(n)
}

/// Takes the store's compactor lock without waiting; `None` if another process (or another
/// handle in this one) holds it.
pub(crate) fn try_lock_compactor(dir: &Path) -> Result<Option<File>> {
    try_lock_file(&dir.join(COMPACTOR_LOCK))
}

/// Takes the store's shipper lock (one process ships to a remote index at a time) without
/// waiting; `None` if another process holds it.
pub(crate) fn try_lock_shipper(dir: &Path) -> Result<Option<File>> {
    try_lock_file(&dir.join(SHIPPER_LOCK))
}

/// An exclusive `flock` on `path` (created 0600 if missing) without waiting; `None` if held.
fn try_lock_file(path: &Path) -> Result<Option<File>> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io("open", path, e))?;
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(e)) => Err(Error::io("lock", path, e)),
    }
}

/// The store's id (`store.id`): read it, or with `create` write a new random one (durably; if
/// two processes race, the first file wins and both return its id). `None` when it is missing
/// and `create` is false (a read-only open of a store no writer has opened since ids exist).
pub(crate) fn store_id(dir: &Path, create: bool) -> Result<Option<String>> {
    let path = dir.join(STORE_ID_FILE);
    let read = |path: &Path| -> Result<Option<String>> {
        match fs::read_to_string(path) {
            Ok(s) if !s.trim().is_empty() => Ok(Some(s.trim().to_string())),
            // Empty: a crash between create and write; only a writer may replace it.
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("read", path, e)),
        }
    };
    if let Some(id) = read(&path)? {
        return Ok(Some(id));
    }
    if !create {
        return Ok(None);
    }
    let id = uuid::Uuid::now_v7().simple().to_string();
    // Written beside and renamed into place, so no reader ever sees a half-written id.
    let tmp = dir.join(format!("{STORE_ID_FILE}.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&tmp);
    write_new_private_file(&tmp, format!("{id}\n").as_bytes())?;
    // hard_link fails if another process put its id in place first: theirs wins.
    let linked = fs::hard_link(&tmp, &path);
    let _ = fs::remove_file(&tmp);
    sync_dir(dir)?;
    match linked {
        Ok(()) => {
            info!(store_id = %id, "store id created");
            Ok(Some(id))
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read(&path),
        Err(e) => Err(Error::io("create", &path, e)),
    }
}

/// Prefix of the markers of deletions whose content is not erased from disk yet.
pub const ERASE_MARKER_PREFIX: &str = "erase.pending-";

/// Records, durably, that a deletion was made whose content must leave the disk: a new file
/// `erase.pending-<unix ms>-<pid>-<n>` (its name carries the time the erase deadline runs
/// from), synced with its folder. One file per deletion, so that an erase pass removes exactly
/// the markers it saw before it read the lanes, and a deletion made during a pass keeps its own.
pub(crate) fn mark_erase_pending(dir: &Path) -> Result<PathBuf> {
    let path = dir.join(format!(
        "{ERASE_MARKER_PREFIX}{}-{}-{}",
        now_ms(),
        std::process::id(),
        crate::time::now_nanos() % 1_000_000_000
    ));
    write_new_private_file(&path, b"")?;
    sync_dir(dir)?;
    Ok(path)
}

/// The markers of pending erasures, with the time (unix ms) each deletion was made, oldest first.
pub(crate) fn erase_markers(dir: &Path) -> Vec<(PathBuf, u64)> {
    let Ok(rd) = fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<(PathBuf, u64)> = rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let ms = name.strip_prefix(ERASE_MARKER_PREFIX)?.split('-').next()?.parse().ok()?;
            Some((e.path(), ms))
        })
        .collect();
    out.sort_by_key(|(_, ms)| *ms);
    out
}

/// Removes erase markers once the pass that saw them erased everything (control files, not
/// data), and syncs the folder.
pub(crate) fn remove_erase_markers(dir: &Path, markers: &[PathBuf]) -> Result<()> {
    if markers.is_empty() {
        return Ok(());
    }
    for m in markers {
        match fs::remove_file(m) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", m, e)),
        }
    }
    sync_dir(dir)
}

/// The pending rebuild request's reason, if there is one.
pub(crate) fn rebuild_requested(dir: &Path) -> Option<String> {
    let marker = dir.join(REBUILD_MARKER);
    marker.exists().then(|| fs::read_to_string(&marker).unwrap_or_else(|_| "rebuild requested".into()))
}

/// Asks the compactor to rebuild the index (durably: the marker and its folder are synced).
pub(crate) fn request_rebuild(dir: &Path, reason: &str) -> Result<()> {
    let marker = dir.join(REBUILD_MARKER);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&marker)
        .map_err(|e| Error::io("create", &marker, e))?;
    f.write_all(reason.as_bytes()).map_err(|e| Error::io("write", &marker, e))?;
    f.sync_all().map_err(|e| Error::io("sync", &marker, e))?;
    sync_dir(dir)
}

/// Removes the rebuild request once the index is aside (a control file, not data).
pub(crate) fn clear_rebuild_request(dir: &Path) -> Result<()> {
    let marker = dir.join(REBUILD_MARKER);
    fs::remove_file(&marker).map_err(|e| Error::io("remove", &marker, e))?;
    sync_dir(dir)
}

/// Moves `index.db`, `index.db-wal` and `index.db-shm` of a store folder into its quarantine
/// folder with a note of why. Never deletes anything.
pub(crate) fn quarantine_index_files(dir: &Path, reason: &str) -> Result<Vec<PathBuf>> {
    let q = dir.join(QUARANTINE_DIR);
    create_private_dir(&q)?;
    // A name no earlier quarantine used (two in the same millisecond must not collide: a rename
    // onto an existing file would replace it).
    let mut stamp = now_ms().to_string();
    let mut n = 0;
    while ["", "-wal", "-shm", ".json"].iter().any(|s| q.join(format!("{stamp}-{INDEX_FILE}{s}")).exists()) {
        n += 1;
        stamp = format!("{}-{n}", now_ms());
    }
    let mut moved = Vec::new();
    // The WAL first: if the move stops half-way, the main file left behind is still a
    // consistent (older) database, never a main file missing the WAL it depends on elsewhere.
    for suffix in ["-wal", "-shm", ""] {
        let src = dir.join(format!("{INDEX_FILE}{suffix}"));
        if !src.exists() {
            continue;
        }
        let dest = q.join(format!("{stamp}-{INDEX_FILE}{suffix}"));
        fs::rename(&src, &dest).map_err(|e| Error::io("move to quarantine", &src, e))?;
        moved.push(dest);
    }
    let note = serde_json::json!({
        "what": "SQLite index moved aside; it is rebuilt from the journal",
        "reason": reason,
        "files": moved.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "time_unix_ms": stamp,
    });
    let body = serde_json::to_vec_pretty(&note).unwrap_or_default();
    write_new_private_file(&q.join(format!("{stamp}-{INDEX_FILE}.json")), &body)?;
    sync_dir(&q)?;
    sync_dir(dir)?;
    warn!(dir = %dir.display(), files = ?moved, "index moved to the quarantine: {reason}");
    Ok(moved)
}

/// Replaces the store's index by `new_db` (a closed, checkpointed SQLite file in the store
/// folder): the old `-wal` and `-shm` are removed, then `new_db` is renamed over `index.db` and
/// the folder synced. For a healthy index replaced on request: nothing is kept. A crash in
/// between leaves the old main file without its WAL (a consistent, older index the compactor
/// completes from the journal) or the new index.
pub(crate) fn replace_index_files(dir: &Path, new_db: &Path) -> Result<()> {
    for suffix in ["-wal", "-shm"] {
        let mut s = new_db.as_os_str().to_owned();
        s.push(suffix);
        let leftover = PathBuf::from(s);
        if leftover.exists() {
            return Err(Error::io(
                "replace the index with",
                new_db,
                io::Error::other(format!("{} is still there (the new index is not closed)", leftover.display())),
            ));
        }
    }
    for suffix in ["-wal", "-shm"] {
        let old = dir.join(format!("{INDEX_FILE}{suffix}"));
        match fs::remove_file(&old) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", &old, e)),
        }
    }
    let dest = dir.join(INDEX_FILE);
    fs::rename(new_db, &dest).map_err(|e| Error::io("rename", new_db, e))?;
    sync_dir(dir)?;
    info!(dir = %dir.display(), "index replaced by one rebuilt from the journal; the old one was healthy and is not kept");
    Ok(())
}

/// Removes a leftover of an interrupted [`REBUILDING_FILE`] build (scratch, never data).
pub(crate) fn remove_rebuilding_files(dir: &Path) -> Result<()> {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let p = dir.join(format!("{REBUILDING_FILE}{suffix}"));
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", &p, e)),
        }
    }
    Ok(())
}

/// One file in a quarantine folder.
#[derive(Debug, Clone, Default, Serialize)]
pub struct QuarantinedFile {
    /// The file.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// The reason given in its note, if there is one.
    pub reason: Option<String>,
    /// The name of the item it belongs to, as `tidelog quarantine remove` takes it: the note's
    /// name without `.json` (the file's own name when it has no note), prefixed by `lane-NNNN/`
    /// for a lane's quarantine. An item's files (an index with its WAL, a cut tail) share it.
    pub item: String,
    /// The item's note (`<item>.json`), if there is one; it is removed with the item.
    pub note: Option<PathBuf>,
}

/// Lists the files of a quarantine folder with the reason from their note (`<base>.json`).
pub fn list_quarantine(qdir: &Path) -> Vec<QuarantinedFile> {
    list_quarantine_as(qdir, "")
}

fn list_quarantine_as(qdir: &Path, prefix: &str) -> Vec<QuarantinedFile> {
    let Ok(rd) = fs::read_dir(qdir) else { return Vec::new() };
    let mut names: Vec<String> = rd.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
    names.sort();
    let notes: Vec<(String, Option<String>)> = names
        .iter()
        .filter_map(|n| n.strip_suffix(".json").map(|stem| (n, stem)))
        .map(|(n, stem)| {
            let reason = fs::read(qdir.join(n))
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v.get("reason").and_then(|r| r.as_str()).map(str::to_string));
            (stem.to_string(), reason)
        })
        .collect();
    names
        .iter()
        .filter(|n| !n.ends_with(".json"))
        .map(|n| {
            let base = n.strip_suffix(".bin").unwrap_or(n);
            let note =
                notes.iter().filter(|(stem, _)| base.starts_with(stem.as_str())).max_by_key(|(stem, _)| stem.len());
            let path = qdir.join(n);
            QuarantinedFile {
                bytes: file_len(&path),
                path,
                reason: note.and_then(|(_, r)| r.clone()),
                item: format!("{prefix}{}", note.map_or(n.as_str(), |(stem, _)| stem.as_str())),
                note: note.map(|(stem, _)| qdir.join(format!("{stem}.json"))),
            }
        })
        .collect()
}

/// The store's quarantine folders: its own, then each lane's (with the lane as item prefix).
fn quarantine_dirs(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = vec![(dir.join(QUARANTINE_DIR), String::new())];
    for name in lane_names(dir).unwrap_or_default() {
        out.push((lane_dir(dir, &name).join(tidelog_journal::QUARANTINE_DIR), format!("{name}/")));
    }
    out
}

/// Total bytes under the store's quarantine folders (its own and every lane's): a few folder
/// listings and `stat`s, cheap enough for every `status()`.
pub(crate) fn quarantine_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for (q, _) in quarantine_dirs(dir) {
        let Ok(rd) = fs::read_dir(&q) else { continue };
        total += rd.filter_map(|e| e.ok()?.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum::<u64>();
    }
    total
}

impl QuarantinedFile {
    /// Every file in every quarantine folder of the store in `dir` (its own and each lane's),
    /// with its note's reason and its item name.
    pub fn list_store(dir: &Path) -> Vec<QuarantinedFile> {
        quarantine_dirs(dir).into_iter().flat_map(|(q, prefix)| list_quarantine_as(&q, &prefix)).collect()
    }

    /// Removes quarantined items of the store in `dir`, with their notes: the item named `item`
    /// (as [`QuarantinedFile::item`]), or every item when `item` is `None`. This is the only
    /// place anything is deleted from a quarantine, and only on a person's request. Returns the
    /// files removed (notes included) and their total size; an unknown item name is an
    /// [`Error::Invalid`].
    pub fn remove(dir: &Path, item: Option<&str>) -> Result<(Vec<PathBuf>, u64)> {
        let files: Vec<QuarantinedFile> =
            Self::list_store(dir).into_iter().filter(|f| item.is_none_or(|i| f.item == i)).collect();
        if let Some(i) = item
            && files.is_empty()
        {
            return Err(Error::Invalid(format!("no quarantined item named {i}")));
        }
        let mut removed = Vec::new();
        let mut bytes = 0;
        let mut notes: Vec<PathBuf> = files.iter().filter_map(|f| f.note.clone()).collect();
        notes.sort();
        notes.dedup();
        for f in &files {
            fs::remove_file(&f.path).map_err(|e| Error::io("remove", &f.path, e))?;
            bytes += f.bytes;
            removed.push(f.path.clone());
        }
        // Notes last: a note without its files still says what was there.
        for n in notes {
            bytes += file_len(&n);
            match fs::remove_file(&n) {
                Ok(()) => removed.push(n),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove", &n, e)),
            }
        }
        if item.is_none() {
            // Notes whose files are gone already.
            for (q, _) in quarantine_dirs(dir) {
                let Ok(rd) = fs::read_dir(&q) else { continue };
                for e in rd.flatten() {
                    let p = e.path();
                    if p.extension().is_some_and(|x| x == "json") {
                        bytes += file_len(&p);
                        fs::remove_file(&p).map_err(|e| Error::io("remove", &p, e))?;
                        removed.push(p);
                    }
                }
            }
        }
        for (q, _) in quarantine_dirs(dir) {
            if q.is_dir() {
                sync_dir(&q)?;
            }
        }
        info!(dir = %dir.display(), files = removed.len(), bytes, "removed from the quarantine on request");
        Ok((removed, bytes))
    }
}

/// In a backup folder: the completion marker (see `admin/backup.rs`).
pub(crate) const BACKUP_MARKER: &str = "backup.json";

/// Prefix of the scratch folders a running tool keeps in the store folder. An on-disk name: it
/// keeps the project's first name so that scratch folders of older versions are still found.
pub(crate) const TEMP_PREFIX: &str = ".logbook-tmp-";
const TEMP_LOCK: &str = "lock";

/// A scratch folder, locked while its owner runs and removed when it is dropped. One left by a
/// killed process (its lock free) is removed by [`clean_stale_temp_dirs`].
#[derive(Debug)]
pub(crate) struct TempDir {
    path: PathBuf,
    _lock: File,
}

impl TempDir {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.path) {
            warn!(path = %self.path.display(), "cannot remove a scratch folder: {e}");
        }
    }
}

/// A scratch folder in the store folder (the same file system, found again and removed after a
/// kill), or in the system's temporary folder when the store folder cannot be written.
pub(crate) fn store_temp_dir(dir: &Path, tag: &str) -> Result<TempDir> {
    clean_stale_temp_dirs(dir);
    let name = format!("{TEMP_PREFIX}{tag}-{}-{}", std::process::id(), crate::time::now_nanos());
    let path = match std::os::unix::fs::DirBuilderExt::mode(&mut fs::DirBuilder::new(), 0o700).create(dir.join(&name)) {
        Ok(()) => dir.join(&name),
        Err(_) => {
            let p = std::env::temp_dir().join(name);
            create_private_dir(&p)?;
            p
        }
    };
    let lock_path = path.join(TEMP_LOCK);
    let locked =
        OpenOptions::new().write(true).create_new(true).mode(0o600).open(&lock_path).and_then(|f| match f.try_lock() {
            Ok(()) => Ok(f),
            Err(fs::TryLockError::WouldBlock) => Err(io::Error::from(io::ErrorKind::WouldBlock)),
            Err(fs::TryLockError::Error(e)) => Err(e),
        });
    match locked {
        Ok(f) => Ok(TempDir { path, _lock: f }),
        Err(e) => {
            let _ = fs::remove_dir_all(&path);
            Err(Error::io("lock", &lock_path, e))
        }
    }
}

/// Scratch folders of tools running now (their lock is held).
pub(crate) fn temp_dirs_in_use(dir: &Path) -> Vec<PathBuf> {
    let Ok(it) = fs::read_dir(dir) else { return Vec::new() };
    it.flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(TEMP_PREFIX)))
        .map(|e| e.path())
        .filter(|p| File::open(p.join(TEMP_LOCK)).is_ok_and(|f| f.try_lock().is_err()))
        .collect()
}

/// Removes the scratch folders of tools that were killed (their lock is free). Returns how many.
pub(crate) fn clean_stale_temp_dirs(dir: &Path) -> usize {
    let Ok(it) = fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for e in it.flatten() {
        let name = e.file_name();
        if !name.to_str().is_some_and(|n| n.starts_with(TEMP_PREFIX)) {
            continue;
        }
        let path = e.path();
        let free = match File::open(path.join(TEMP_LOCK)) {
            Ok(f) => f.try_lock().is_ok(),
            // No lock file: killed between creating the folder and its lock, or being created
            // right now; only an old one is stale.
            Err(err) => {
                err.kind() == io::ErrorKind::NotFound
                    && e.metadata().ok().and_then(|m| m.modified().ok()).and_then(|t| t.elapsed().ok())
                        > Some(std::time::Duration::from_secs(60))
            }
        };
        if free && fs::remove_dir_all(&path).is_ok() {
            info!(path = %path.display(), "removed the scratch folder of a tool that did not finish");
            removed += 1;
        }
    }
    removed
}

/// The background threads whose role one process holds at a time (a lock file each) and that
/// leave a problem note while degraded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Applies the lanes to the SQLite index.
    Compactor,
    /// Feeds a remote index.
    Shipper,
}

impl Role {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Role::Compactor => "compactor",
            Role::Shipper => "shipper",
        }
    }
}

/// What a thread leaves in the store folder while it is degraded, for other processes
/// (`compactor.problem`, `shipper.problem`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct ThreadNote {
    /// `compactor` or `shipper`.
    pub thread: String,
    /// The process that wrote it.
    pub pid: u32,
    /// Its lane.
    pub lane: String,
    /// Why the thread is degraded.
    pub what: String,
    /// When it was written, ms since the Unix epoch.
    pub time_unix_ms: u64,
}

impl ThreadNote {
    /// The status line another process shows for it.
    pub(crate) fn problem(&self) -> String {
        format!(
            "{} of process {} (lane {}) reported at {}: {}",
            self.thread,
            self.pid,
            self.lane,
            format_iso8601(self.time_unix_ms as f64 / 1000.0),
            self.what
        )
    }
}

fn thread_note_path(dir: &Path, role: Role) -> PathBuf {
    dir.join(match role {
        Role::Compactor => COMPACTOR_PROBLEM,
        Role::Shipper => SHIPPER_PROBLEM,
    })
}

/// Replaces a thread's problem note (written beside and renamed into place, so a reader sees the
/// old note or the new one).
pub(crate) fn write_thread_note(dir: &Path, role: Role, note: &ThreadNote) -> Result<()> {
    let path = thread_note_path(dir, role);
    let body = serde_json::to_vec_pretty(note).map_err(|e| Error::io("encode", &path, io::Error::other(e)))?;
    let mut tmp = path.clone().into_os_string();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let _ = fs::remove_file(&tmp);
    write_new_private_file(&tmp, &body)?;
    fs::rename(&tmp, &path).map_err(|e| Error::io("rename", &path, e))?;
    sync_dir(dir)
}

/// A thread's problem note, if there is a readable one.
pub(crate) fn read_thread_note(dir: &Path, role: Role) -> Option<ThreadNote> {
    let path = thread_note_path(dir, role);
    let text = fs::read(&path).ok()?;
    match serde_json::from_slice(&text) {
        Ok(n) => Some(n),
        Err(e) => {
            warn!(path = %path.display(), "problem note cannot be read: {e}");
            None
        }
    }
}

/// Removes a thread's problem note; returns it if there was one.
pub(crate) fn clear_thread_note(dir: &Path, role: Role) -> Result<Option<ThreadNote>> {
    let path = thread_note_path(dir, role);
    if !path.exists() {
        return Ok(None);
    }
    let old = read_thread_note(dir, role);
    match fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("remove", &path, e)),
    }
    sync_dir(dir)?;
    Ok(old)
}
