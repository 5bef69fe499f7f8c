//! `backup`: a consistent copy of a store while writers append.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use tidelog_journal::{Journal, RecoveryMode};

use super::{Progress, read_options};
use crate::error::{Error, Result};
use crate::index::{Index, IndexOptions};
use crate::layout::{
    BACKUP_MARKER, INDEX_FILE, LANES_DIR, copy_file_private, create_private_dir, lane_dir, lane_names, sync_dir,
};

/// One lane of a backup.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LaneBackup {
    /// Lane name.
    pub name: String,
    /// Segment files copied.
    pub segments: usize,
    /// Bytes copied.
    pub bytes: u64,
    /// Highest LSN in the copy.
    pub last_lsn: u64,
    /// Bytes of an in-flight tail cut from the copy (into the copy's quarantine).
    pub cut_bytes: u64,
}

/// The result of [`backup_store`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct BackupReport {
    /// The backup folder.
    pub dest: PathBuf,
    /// Every lane.
    pub lanes: Vec<LaneBackup>,
    /// Whether the index was copied.
    pub index_copied: bool,
    /// Why it was not, if it was not.
    pub index_problem: Option<String>,
}

/// The completion marker of a backup (`backup.json`): written first with `complete: false`,
/// replaced once every file is copied and synced. `verify` of a backup requires `complete`.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
struct BackupMarker {
    complete: bool,
    source: PathBuf,
    started_unix_ms: u64,
    #[serde(default)]
    finished_unix_ms: Option<u64>,
    /// Highest LSN copied per lane.
    #[serde(default)]
    lanes: std::collections::BTreeMap<String, u64>,
}

fn write_marker(dest: &Path, m: &BackupMarker) -> Result<()> {
    let body =
        serde_json::to_vec_pretty(m).map_err(|e| Error::Invalid(format!("cannot encode {BACKUP_MARKER}: {e}")))?;
    let tmp = dest.join(format!("{BACKUP_MARKER}.tmp"));
    let _ = fs::remove_file(&tmp);
    crate::layout::write_new_private_file(&tmp, &body)?;
    let path = dest.join(BACKUP_MARKER);
    fs::rename(&tmp, &path).map_err(|e| Error::io("rename", &tmp, e))?;
    sync_dir(dest)
}

/// In a backup folder: a problem if the backup did not complete (killed or failed part-way),
/// `None` if it completed or `dir` is not a backup.
pub(crate) fn backup_problem(dir: &Path) -> Option<String> {
    let path = dir.join(BACKUP_MARKER);
    let body = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => return Some(format!("{} cannot be read ({e}): this backup may be incomplete", path.display())),
    };
    match serde_json::from_slice::<BackupMarker>(&body) {
        Ok(m) if m.complete => None,
        Ok(_) => Some(format!(
            "{} says this backup did not complete (the backup was stopped part-way); take the backup again",
            path.display()
        )),
        Err(e) => Some(format!("{} is not a valid backup marker ({e}): this backup may be incomplete", path.display())),
    }
}

/// Refuses a destination inside the store folder (the backup would copy itself, and a restore
/// would bring the store back inside itself).
fn check_outside(dir: &Path, dest: &Path) -> Result<()> {
    let Ok(store) = fs::canonicalize(dir) else { return Ok(()) };
    // The destination may not exist yet: resolve its nearest existing ancestor.
    let mut probe = if dest.is_absolute() {
        dest.to_path_buf()
    } else {
        std::env::current_dir().map_err(|e| Error::io("read the current folder", dest, e))?.join(dest)
    };
    let mut rest = Vec::new();
    let resolved = loop {
        match fs::canonicalize(&probe) {
            Ok(p) => break p,
            Err(_) => match (probe.file_name().map(|n| n.to_os_string()), probe.parent().map(Path::to_path_buf)) {
                (Some(n), Some(parent)) => {
                    rest.push(n);
                    probe = parent;
                }
                _ => return Ok(()),
            },
        }
    };
    let full = rest.iter().rev().fold(resolved, |p, n| p.join(n));
    if full.starts_with(&store) {
        return Err(Error::Invalid(format!(
            "backup folder {} is inside the store {}; choose a folder outside it",
            dest.display(),
            dir.display()
        )));
    }
    Ok(())
}

fn copy_lane(src: &Path, dest: &Path) -> Result<(usize, u64)> {
    if dest.exists() {
        // Our own partial copy from a failed attempt: start over.
        fs::remove_dir_all(dest).map_err(|e| Error::io("remove", dest, e))?;
    }
    create_private_dir(dest)?;
    // No erase overwrites records of this lane while its files are copied (the copy would catch
    // a record half-overwritten). The redo file an interrupted erase left is copied too: opening
    // the copy completes it there. Without the lock (it stayed busy, or the folder is not ours
    // to write), a copy that does not open is taken again.
    let _no_erase =
        tidelog_journal::erase_lock(src, &read_options(RecoveryMode::Strict), Duration::from_secs(10)).ok().flatten();
    let mut names: Vec<String> = fs::read_dir(src)
        .map_err(|e| Error::io("list", src, e))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| {
            tidelog_journal::decode::parse_segment_file_name(n).is_some()
                || n == tidelog_journal::HOLES_FILE
                || n == tidelog_journal::REDO_FILE
        })
        .collect();
    names.sort();
    let (mut segs, mut bytes) = (0, 0);
    for n in names {
        bytes += copy_file_private(&src.join(&n), &dest.join(&n))?;
        if tidelog_journal::decode::parse_segment_file_name(&n).is_some() {
            segs += 1;
        }
    }
    sync_dir(dest)?;
    Ok((segs, bytes))
}

/// Takes a consistent copy of a store into `dest` (which must not exist, or be an empty folder)
/// while writers append: first the index (SQLite online backup), then each lane's segment files;
/// each copied lane is then opened with [`Journal::open`], which cuts a tail still being written
/// into the copy's quarantine, so the copy holds every record durable when it was taken and the
/// index copy is never ahead of it. Folders are created 0700, files 0600.
///
/// The index is copied in one step (a commit of the compactor meanwhile does not restart it).
/// `backup.json` is written first saying the backup is not complete, and replaced once every
/// file is copied and synced: a backup stopped part-way fails [`verify_store`](super::verify_store).
/// A destination inside the store folder is refused.
pub fn backup_store(dir: &Path, dest: &Path, progress: Progress<'_>) -> Result<BackupReport> {
    if !dir.join(LANES_DIR).is_dir() {
        return Err(Error::NotAStore { path: dir.to_path_buf() });
    }
    check_outside(dir, dest)?;
    match fs::read_dir(dest) {
        Ok(mut it) => {
            if it.next().is_some() {
                return Err(Error::DestinationNotEmpty { path: dest.to_path_buf() });
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("open backup folder", dest, e)),
    }
    create_private_dir(dest)?;
    let mut marker = BackupMarker {
        complete: false,
        source: fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf()),
        started_unix_ms: crate::time::now_ms(),
        ..BackupMarker::default()
    };
    write_marker(dest, &marker)?;
    let mut rep = BackupReport { dest: dest.to_path_buf(), ..BackupReport::default() };
    let src_index = dir.join(INDEX_FILE);
    if src_index.exists() {
        progress("copying the index", 0, 0);
        match Index::open_read_only(&src_index, &IndexOptions::default())
            .and_then(|ix| ix.backup_to(&dest.join(INDEX_FILE)))
        {
            Ok(()) => rep.index_copied = true,
            Err(e) => {
                let _ = fs::remove_file(dest.join(INDEX_FILE));
                rep.index_problem = Some(format!("{e}; run `tidelog rebuild-index --dir {}`", dest.display()));
            }
        }
    }
    let lanes = lane_names(dir)?;
    create_private_dir(&dest.join(LANES_DIR))?;
    let total = lanes.len() as u64;
    for (i, name) in lanes.iter().enumerate() {
        progress("copying lanes", i as u64, total);
        let (src, dst) = (lane_dir(dir, name), lane_dir(dest, name));
        let mut attempt = 0;
        let lb = loop {
            attempt += 1;
            let copied = copy_lane(&src, &dst).and_then(|(segs, bytes)| {
                let j = Journal::open(&dst, read_options(RecoveryMode::Strict))?;
                let r = j.recovery_report();
                let lb = LaneBackup {
                    name: name.clone(),
                    segments: segs,
                    bytes,
                    last_lsn: j.last_lsn(),
                    cut_bytes: r.torn_tails.iter().map(|t| t.len).sum(),
                };
                j.close()?;
                Ok(lb)
            });
            match copied {
                Ok(lb) => break lb,
                // A segment sealed or removed during the copy, or a write caught half-way in the
                // middle: copy the lane again.
                Err(e) if attempt < 4 => {
                    tracing::warn!(lane = %name, attempt, "lane copy not consistent, copying again: {e}");
                }
                Err(e) => return Err(e),
            }
        };
        rep.lanes.push(lb);
    }
    progress("copying lanes", total, total);
    sync_dir(&dest.join(LANES_DIR))?;
    sync_dir(dest)?;
    marker.complete = true;
    marker.finished_unix_ms = Some(crate::time::now_ms());
    marker.lanes = rep.lanes.iter().map(|l| (l.name.clone(), l.last_lsn)).collect();
    write_marker(dest, &marker)?;
    Ok(rep)
}
