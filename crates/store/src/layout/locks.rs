//! The role locks (`compactor.lock`, `shipper.lock`): `flock`s taken without waiting.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::{COMPACTOR_LOCK, SHIPPER_LOCK};
use crate::error::{Error, Result};

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
