//! The real file system.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

use super::{FileBytes, LockGuard, OpenMode, Storage, StorageFile};

/// The operating system's file system. Files are created 0600 and folders 0700.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsStorage;

#[derive(Debug)]
struct OsFile(File);

impl StorageFile for OsFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        loop {
            match self.0.read_at(buf, offset) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        // fdatasync on Linux; F_FULLFSYNC on Apple platforms (std does this).
        self.0.sync_data()
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn is_unlinked(&self) -> io::Result<bool> {
        Ok(self.0.metadata()?.nlink() == 0)
    }

    fn punch_hole(&self, offset: u64, len: u64) -> io::Result<()> {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            use rustix::fs::FallocateFlags;
            match rustix::fs::fallocate(&self.0, FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE, offset, len) {
                Ok(()) => Ok(()),
                // A file system that cannot: the zeros stay allocated.
                Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::NOSYS => Ok(()),
                Err(e) => Err(io::Error::from(e)),
            }
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        {
            let _ = (offset, len);
            Ok(())
        }
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            let cur = self.len()?;
            if len <= cur {
                return Ok(());
            }
            // Reserve real blocks so writes inside the segment cannot fail with ENOSPC later, and
            // so fdatasync after an append has no size change to persist.
            match rustix::fs::fallocate(&self.0, rustix::fs::FallocateFlags::empty(), 0, len) {
                Ok(()) => Ok(()),
                Err(e) if e == rustix::io::Errno::NOSPC => Err(io::Error::from(e)),
                // File systems without fallocate: a sparse extension still lets us reuse the
                // all-zero "unwritten" convention.
                Err(_) => self.0.set_len(len),
            }
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        {
            let _ = len;
            Ok(())
        }
    }

    #[allow(unsafe_code)]
    unsafe fn map_range(&self, offset: u64, len: usize) -> io::Result<FileBytes> {
        let file_len = self.len()?;
        let len = usize::try_from(file_len.saturating_sub(offset)).unwrap_or(usize::MAX).min(len);
        if len == 0 {
            return Ok(Arc::new(Vec::new()));
        }
        // SAFETY: our caller upholds `map_range`'s contract, which is `map_sealed`'s.
        let map = unsafe { crate::mmap::map_sealed(&self.0, offset, len)? };
        Ok(Arc::new(map))
    }
}

#[derive(Debug)]
struct OsLock(#[allow(dead_code)] File);

impl LockGuard for OsLock {}

impl Drop for OsLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

impl Storage for OsStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        // The folders that do not exist yet, outermost first.
        let mut missing: Vec<&Path> =
            path.ancestors().take_while(|p| !p.as_os_str().is_empty() && !p.exists()).collect();
        missing.reverse();
        fs::DirBuilder::new().recursive(true).mode(0o700).create(path)?;
        // A new folder's entry is durable only once its parent is synced: otherwise a power cut
        // could take away a folder whose files were synced (a new lane, a new quarantine).
        for dir in missing {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                File::open(parent)?.sync_all()?;
            }
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for e in fs::read_dir(dir)? {
            let e = e?;
            if let Ok(name) = e.file_name().into_string() {
                out.push(name);
            }
        }
        Ok(out)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        let mut o = OpenOptions::new();
        match mode {
            OpenMode::Read => o.read(true),
            OpenMode::ReadWrite => o.read(true).write(true),
            OpenMode::CreateNew => o.read(true).write(true).create_new(true).mode(0o600),
        };
        Ok(Arc::new(OsFile(o.open(path)?)))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn dir_identity(&self, path: &Path) -> Option<u64> {
        fs::metadata(path).ok().filter(|m| m.is_dir()).map(|m| m.ino() ^ m.dev().rotate_left(32))
    }

    fn try_lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        let f = OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(path)?;
        match f.try_lock() {
            Ok(()) => Ok(Box::new(OsLock(f))),
            Err(fs::TryLockError::WouldBlock) => Err(io::Error::from(io::ErrorKind::WouldBlock)),
            Err(fs::TryLockError::Error(e)) => Err(e),
        }
    }
}
