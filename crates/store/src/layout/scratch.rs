//! Scratch folders of running tools, locked while their owner runs; a killed owner's are removed.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use tracing::{info, warn};

use super::create_private_dir;
use crate::error::{Error, Result};

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
