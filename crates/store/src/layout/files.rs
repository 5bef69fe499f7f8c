//! Private (0700/0600) creation of folders and files, copies, and folder syncs.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

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
