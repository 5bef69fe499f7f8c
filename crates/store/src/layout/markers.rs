//! The store's small control files: its id, the markers of pending erasures, the rebuild
//! request, and the problem notes a degraded background thread leaves for other processes.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::{COMPACTOR_PROBLEM, REBUILD_MARKER, SHIPPER_PROBLEM, STORE_ID_FILE, sync_dir, write_new_private_file};
use crate::error::{Error, Result};
use crate::time::{format_iso8601, now_ms};

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
