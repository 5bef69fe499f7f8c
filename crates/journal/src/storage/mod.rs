//! The storage seam: every file operation of the journal goes through [`Storage`].
//!
//! Two implementations exist: [`OsStorage`], the real file system, and `SimStorage` (hidden from
//! the documentation: it is for the fault-injection suite and fuzzing), an in-memory
//! file system that keeps what was written apart from what was synced, so a test can cut the power
//! and inject I/O errors at any call.

use std::fmt::Debug;
use std::io;
use std::path::Path;
use std::sync::Arc;

mod os;
mod sim;

pub use os::OsStorage;
// The simulated disk is for the fault-injection suite and fuzzing, not for applications.
#[doc(hidden)]
pub use sim::{Damage, FaultKind, FaultOp, SimStorage};

/// How to open a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Read only; the file must exist.
    Read,
    /// Read and write; the file must exist.
    ReadWrite,
    /// Read and write; the file must not exist yet (created with mode 0600).
    CreateNew,
}

/// Bytes of a file that stay valid while held: a memory map on the real file system, a copy
/// in the simulation.
pub type FileBytes = Arc<dyn AsRef<[u8]> + Send + Sync>;

/// One open file.
#[allow(clippy::len_without_is_empty)]
pub trait StorageFile: Send + Sync + Debug {
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read (0 at end of file).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `offset` (a short write is an error).
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes the file's data (and the size needed to read it back) durable: `fdatasync` on Linux,
    /// `F_FULLFSYNC` on Apple platforms.
    fn sync_data(&self) -> io::Result<()>;
    /// The file's current length.
    fn len(&self) -> io::Result<u64>;
    /// Truncates or extends (with zeros) the file.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Reserves space up to `len` bytes so later writes below it do not fail for lack of space.
    /// Where the platform cannot, this may only extend the file, or do nothing.
    fn allocate(&self, len: u64) -> io::Result<()>;
    /// `len` bytes of the file from `offset` (fewer at the end of the file) as they are now.
    /// Readers map a window at a time, so a long scan does not keep a whole segment resident.
    ///
    /// # Safety
    ///
    /// The real implementation maps the file into memory, which is only sound while nobody
    /// truncates the mapped range. Call it only on sealed segments: the journal never truncates
    /// or recycles them (retention removes whole files, which leaves existing maps valid on
    /// Unix); an erase overwrites records of one in place with bytes of the same length, which a
    /// reader that copies the bytes out and checks them sees as old, new, or a mix that fails its
    /// checksum (see `mmap::map_sealed`).
    #[allow(unsafe_code)]
    unsafe fn map_range(&self, offset: u64, len: usize) -> io::Result<FileBytes>;
    /// Gives the blocks of `[offset, offset + len)` back to the file system while the file keeps
    /// its length: that range then reads as zeros. Only ever called on ranges that hold zeros
    /// already (so what the file says never changes, whatever happens meanwhile). Where the
    /// platform or file system cannot, this does nothing. Default: nothing.
    fn punch_hole(&self, offset: u64, len: u64) -> io::Result<()> {
        let _ = (offset, len);
        Ok(())
    }
    /// Whether the file no longer has a name (it was deleted, or replaced by a rename, while
    /// open): writes to it can never be read back by anyone who opens the folder. Default: no.
    fn is_unlinked(&self) -> io::Result<bool> {
        Ok(false)
    }
}

/// A held exclusive lock on a file; released on drop.
pub trait LockGuard: Send + Sync + Debug {}

/// The file system as the journal sees it.
pub trait Storage: Send + Sync + Debug {
    /// Creates a directory and its parents (mode 0700), durably: the parent of every folder it
    /// creates is synced.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// The names of the entries of a directory (files and folders), in no particular order.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Whether a file or folder exists.
    fn exists(&self, path: &Path) -> bool;
    /// Opens a file.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>>;
    /// Renames a file, replacing `to` if it exists. Not durable until the parent is synced.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file. Not durable until the parent is synced.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes the entries of a directory (creates, renames, removes) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes an exclusive lock on `path` (created if missing) without waiting; an error of kind
    /// [`io::ErrorKind::WouldBlock`] if another holder has it.
    fn try_lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>>;
    /// An identity of the folder at `path` that changes when it is deleted and created again
    /// (the inode on Unix); `None` where the backend has none, or the folder does not exist.
    fn dir_identity(&self, _path: &Path) -> Option<u64> {
        None
    }
}
