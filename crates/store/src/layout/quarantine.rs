//! The index's files moved aside (the quarantine and its notes) or replaced, and listing and
//! removing (on request only) what a quarantine holds.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tracing::{info, warn};

use super::{
    INDEX_FILE, QUARANTINE_DIR, REBUILDING_FILE, create_private_dir, file_len, lane_dir, lane_names, sync_dir,
    write_new_private_file,
};
use crate::error::{Error, Result};
use crate::time::now_ms;

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
