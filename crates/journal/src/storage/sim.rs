//! [`SimStorage`]: an in-memory file system that keeps what was written apart from what was synced,
//! so a test can kill the process, cut the power and inject I/O errors at any call.
//!
//! Every file is an inode holding `data` (what the process sees: the page cache), `synced` (what
//! survives a power cut) and the writes and length changes made since its last `sync_data`. Names
//! live in two maps, the current one and the durable one; `sync_dir` copies a directory's current
//! entries into the durable map. A power cut keeps the durable names and each inode's synced
//! image, plus whatever of the unsynced changes [`Damage`] lets through.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{self, ErrorKind as Kind};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{FileBytes, LockGuard, OpenMode, Storage, StorageFile};

/// Largest simulated file: growing past it fails with `EFBIG`, so a wild offset cannot exhaust
/// memory.
const MAX_FILE_LEN: usize = 1 << 30;
const EIO: i32 = 5;
const EFBIG: i32 = 27;
const ENOSPC: i32 = 28;

/// What a power cut does to the writes, length changes and directory operations not yet synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Damage {
    /// Every unsynced write and length change is lost.
    Drop,
    /// Unsynced changes persist in order up to a random one; if that one is a write, it persists
    /// only up to a random 512-byte boundary (of the file offset); later ones are lost.
    Torn512,
    /// As [`Damage::Torn512`] with 4096-byte sectors.
    Torn4K,
    /// The ranges of unsynced writes keep their length but hold random bytes.
    Garbage,
    /// The ranges of unsynced writes keep their length but hold zeros.
    Zeros,
    /// Nothing is lost, names included: a control, like a process kill.
    KeepAll,
    /// File data as [`Damage::Drop`]; each unsynced create, rename and remove independently
    /// persists or not.
    ReorderDirs,
}

impl Damage {
    /// Every variant, for tests that loop over them.
    pub const ALL: [Damage; 7] = [
        Damage::Drop,
        Damage::Torn512,
        Damage::Torn4K,
        Damage::Garbage,
        Damage::Zeros,
        Damage::KeepAll,
        Damage::ReorderDirs,
    ];
}

/// The operation an injected fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultOp {
    /// `write_all_at`.
    Write,
    /// `sync_data`.
    Sync,
    /// `sync_dir`.
    SyncDir,
    /// `rename`.
    Rename,
    /// `remove_file`.
    Remove,
    /// `set_len`.
    SetLen,
    /// `allocate`.
    Allocate,
    /// `open` with [`OpenMode::CreateNew`].
    Create,
    /// Every one of the above.
    Any,
}

/// The error an injected fault returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// `EIO`.
    Eio,
    /// `ENOSPC`, of kind [`io::ErrorKind::StorageFull`].
    Enospc,
}

/// The simulated disk. Clones share one disk.
#[derive(Clone, Debug, Default)]
pub struct SimStorage {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    inodes: BTreeMap<u64, Inode>,
    next_ino: u64,
    names: BTreeMap<PathBuf, u64>,
    durable: BTreeMap<PathBuf, u64>,
    dirs: BTreeSet<PathBuf>,
    /// Creates, renames and removes not yet made durable by `sync_dir`, in order.
    dir_log: Vec<DirOp>,
    locks: BTreeSet<PathBuf>,
    generation: u64,
    ops: u64,
    countdown: Option<u64>,
    torn: bool,
    crashed: bool,
    faults: Vec<Fault>,
    capacity: Option<u64>,
    rng: Rng,
}

struct Inode {
    data: Vec<u8>,
    synced: Vec<u8>,
    pending: Vec<Pending>,
}

enum Pending {
    Write(usize, Vec<u8>),
    SetLen(usize),
}

/// A name change: a create has no `from`, a remove no `to`.
struct DirOp {
    from: Option<PathBuf>,
    to: Option<PathBuf>,
    ino: u64,
}

struct Fault {
    op: FaultOp,
    kind: FaultKind,
    nth: u64,
    permanent: bool,
    seen: u64,
}

/// SplitMix64: small and deterministic.
#[derive(Default)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 if `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn crashed() -> io::Error {
    io::Error::other("simulated crash")
}

fn stale() -> io::Error {
    io::Error::other("simulated crash: stale handle")
}

fn err(kind: Kind, path: &Path) -> io::Error {
    io::Error::new(kind, format!("{kind}: {}", path.display()))
}

fn parent(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new(""))
}

/// Every directory from `path` up, without the root.
fn dir_chain(path: &Path) -> Vec<PathBuf> {
    let dirs = path.ancestors().filter(|a| a.parent().is_some());
    dirs.map(Path::to_path_buf).collect()
}

/// Converts a length to `usize`, failing with `EFBIG` above [`MAX_FILE_LEN`].
fn file_len(len: u64) -> io::Result<usize> {
    match usize::try_from(len) {
        Ok(len) if len <= MAX_FILE_LEN => Ok(len),
        _ => Err(io::Error::from_raw_os_error(EFBIG)),
    }
}

/// Writes `bytes` at `offset`, extending `image` with zeros as needed.
fn put(image: &mut Vec<u8>, offset: usize, bytes: &[u8]) {
    let end = offset.saturating_add(bytes.len());
    if !bytes.is_empty() && image.len() < end {
        image.resize(end, 0);
    }
    if let Some(dst) = image.get_mut(offset..end) {
        dst.copy_from_slice(bytes);
    }
}

impl State {
    /// Admits one mutating operation: refuses it if the machine is dead or the armed crash is
    /// due, else counts it and fires the injected faults that match.
    fn gate(&mut self, op: FaultOp) -> io::Result<()> {
        if self.crashed || self.countdown == Some(0) {
            self.crashed = true;
            return Err(crashed());
        }
        self.countdown = self.countdown.map(|n| n - 1);
        self.ops += 1;
        let mut hit = None;
        for f in self.faults.iter_mut().filter(|f| f.op == op || f.op == FaultOp::Any) {
            if f.seen == f.nth || (f.permanent && f.seen > f.nth) {
                hit = hit.or(Some(f.kind));
            }
            f.seen = f.seen.saturating_add(1);
        }
        match hit {
            None => Ok(()),
            Some(FaultKind::Eio) => Err(io::Error::from_raw_os_error(EIO)),
            Some(FaultKind::Enospc) => Err(io::Error::from_raw_os_error(ENOSPC)),
        }
    }

    fn dir_exists(&self, dir: &Path) -> bool {
        dir.parent().is_none() || self.dirs.contains(dir)
    }

    fn inode(&mut self, ino: u64) -> io::Result<&mut Inode> {
        self.inodes.get_mut(&ino).ok_or_else(stale)
    }

    /// A new inode holding `data` (as synced), named `path` in the current namespace.
    fn link(&mut self, path: &Path, data: Vec<u8>) -> u64 {
        let ino = self.next_ino;
        self.next_ino += 1;
        let synced = data.clone();
        let pending = Vec::new();
        self.inodes.insert(ino, Inode { data, synced, pending });
        self.names.insert(path.to_path_buf(), ino);
        ino
    }

    /// Checks a file may be created (or renamed) at `path`.
    fn check_new_name(&self, path: &Path) -> io::Result<()> {
        if self.dirs.contains(path) {
            return Err(err(Kind::IsADirectory, path));
        }
        if path.file_name().is_none() {
            return Err(err(Kind::InvalidInput, path));
        }
        if !self.dir_exists(parent(path)) {
            return Err(err(Kind::NotFound, parent(path)));
        }
        Ok(())
    }

    /// Checks a named file may grow to `len` bytes within the capacity.
    fn check_grow(&self, ino: u64, len: usize) -> io::Result<()> {
        let old = self.inodes.get(&ino).map_or(0, |i| i.data.len());
        let Some(cap) = self.capacity else {
            return Ok(());
        };
        if len <= old || !self.names.values().any(|&i| i == ino) {
            return Ok(());
        }
        let named = self.names.values().filter_map(|i| self.inodes.get(i));
        let used: u64 = named.map(|i| i.data.len() as u64).sum();
        if used.saturating_add((len - old) as u64) > cap {
            return Err(io::Error::from_raw_os_error(ENOSPC));
        }
        Ok(())
    }

    fn write(&mut self, ino: u64, offset: u64, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let end = offset.checked_add(bytes.len() as u64).ok_or(Kind::InvalidInput)?;
        let (offset, end) = (file_len(offset)?, file_len(end)?);
        self.check_grow(ino, end)?;
        let inode = self.inode(ino)?;
        put(&mut inode.data, offset, bytes);
        inode.pending.push(Pending::Write(offset, bytes.to_vec()));
        Ok(())
    }

    fn set_len(&mut self, ino: u64, len: usize) -> io::Result<()> {
        self.check_grow(ino, len)?;
        let inode = self.inode(ino)?;
        inode.data.resize(len, 0);
        inode.pending.push(Pending::SetLen(len));
        Ok(())
    }

    fn log(&mut self, from: Option<&Path>, to: Option<&Path>, ino: u64) {
        let (from, to) = (from.map(Path::to_path_buf), to.map(Path::to_path_buf));
        self.dir_log.push(DirOp { from, to, ino });
    }

    /// Records `path -> ino` as durable, dropping any other durable name of the inode.
    fn make_durable(&mut self, path: &Path, ino: u64) {
        self.durable.retain(|p, &mut i| i != ino || p == path);
        self.durable.insert(path.to_path_buf(), ino);
    }

    /// The process died: handles go stale (so inodes without a name can go), locks are
    /// released, the crash countdown and faults are disarmed.
    fn die(&mut self) {
        let live: BTreeSet<u64> = self.names.values().chain(self.durable.values()).copied().collect();
        self.inodes.retain(|ino, _| live.contains(ino));
        self.generation += 1;
        self.locks.clear();
        (self.countdown, self.torn, self.crashed) = (None, false, false);
        self.faults.clear();
    }
}

/// Replays unsynced name changes over the durable names, each kept on a coin flip; a change
/// whose source is gone is dropped, so an inode never has two names.
fn reorder(st: &State, rng: &mut Rng) -> BTreeMap<PathBuf, u64> {
    let mut names = st.durable.clone();
    for op in st.dir_log.iter().filter(|_| rng.next() & 1 == 1) {
        let valid = match &op.from {
            Some(from) => names.get(from) == Some(&op.ino),
            None => !names.values().any(|&i| i == op.ino),
        };
        if valid {
            if let Some(from) = &op.from {
                names.remove(from);
            }
            if let Some(to) = &op.to {
                names.insert(to.clone(), op.ino);
            }
        }
    }
    names
}

/// What survives of one inode after a power cut.
fn damaged(inode: &Inode, damage: Damage, rng: &mut Rng) -> Vec<u8> {
    let sector = match damage {
        Damage::Drop | Damage::ReorderDirs => return inode.synced.clone(),
        Damage::KeepAll => return inode.data.clone(),
        Damage::Torn512 => 512,
        Damage::Torn4K => 4096,
        Damage::Zeros | Damage::Garbage => {
            let mut image = inode.data.clone();
            for change in &inode.pending {
                if let Pending::Write(offset, bytes) = change {
                    let end = offset.saturating_add(bytes.len()).min(image.len());
                    for byte in image.get_mut(*offset..end).unwrap_or_default() {
                        *byte = if damage == Damage::Zeros { 0 } else { rng.next() as u8 };
                    }
                }
            }
            return image;
        }
    };
    let mut image = inode.synced.clone();
    let stop = rng.below(inode.pending.len() + 1);
    for (i, change) in inode.pending.iter().enumerate().take(stop + 1) {
        match change {
            Pending::Write(offset, bytes) if i == stop => {
                // Cut at the write's start or at a sector boundary strictly inside it.
                let first = (offset / sector + 1) * sector;
                let end = offset + bytes.len();
                let inside = if first < end { (end - 1 - first) / sector + 1 } else { 0 };
                let cut = match rng.below(inside + 1) {
                    0 => 0,
                    pick => first + (pick - 1) * sector - offset,
                };
                put(&mut image, *offset, bytes.get(..cut).unwrap_or_default());
            }
            Pending::Write(offset, bytes) => put(&mut image, *offset, bytes),
            Pending::SetLen(_) if i == stop && rng.next() & 1 == 0 => {}
            Pending::SetLen(len) => image.resize(*len, 0),
        }
    }
    image
}

impl SimStorage {
    /// An empty disk; torn crash writes use seed 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty disk whose torn crash writes ([`SimStorage::crash_after_torn`]) use `seed`.
    pub fn with_seed(seed: u64) -> Self {
        let sim = Self::default();
        sim.state.lock().rng = Rng(seed);
        sim
    }

    /// How many mutating operations were admitted: `write_all_at`, `sync_data`, `sync_dir`,
    /// `rename`, `remove_file`, `set_len`, `allocate` and `open(CreateNew)`, counting those that
    /// then failed (injected fault, bad argument) but not those refused by a crash or a stale
    /// handle.
    pub fn op_count(&self) -> u64 {
        self.state.lock().ops
    }

    /// After `n` more mutating operations, the next one and every later one fail with "simulated
    /// crash" and have no effect, until [`SimStorage::power_cut`] or [`SimStorage::kill`]. Reads
    /// keep working.
    pub fn crash_after(&self, n: u64) {
        let mut st = self.state.lock();
        (st.countdown, st.torn) = (Some(n), false);
    }

    /// As [`SimStorage::crash_after`], but if the failing operation is a write, a seeded strict
    /// prefix of its bytes reaches the page cache first.
    pub fn crash_after_torn(&self, n: u64) {
        let mut st = self.state.lock();
        (st.countdown, st.torn) = (Some(n), true);
    }

    /// Makes the `nth` (0-based, from now) operation of kind `op` fail with `kind` and no effect;
    /// if `permanent`, every later one too.
    pub fn inject(&self, op: FaultOp, kind: FaultKind, nth: u64, permanent: bool) {
        let fault = Fault { op, kind, nth, permanent, seen: 0 };
        self.state.lock().faults.push(fault);
    }

    /// Removes every injected fault (not the crash countdown).
    pub fn clear_faults(&self) {
        self.state.lock().faults.clear();
    }

    /// Limits the sum of the lengths of the named files; growing past it fails with `ENOSPC`.
    pub fn set_capacity(&self, bytes: Option<u64>) {
        self.state.lock().capacity = bytes;
    }

    /// Whether the armed crash has fired (and no `power_cut` or `kill` ran since).
    pub fn is_crashed(&self) -> bool {
        self.state.lock().crashed
    }

    /// Cuts the power: names revert to the durable ones and files to their synced images, plus
    /// what `damage` lets through of the rest, deterministically in `seed`. Handles go stale,
    /// locks are released, and faults, the crash countdown and the capacity are cleared.
    pub fn power_cut(&self, damage: Damage, seed: u64) {
        let mut st = self.state.lock();
        let mut rng = Rng(seed);
        let names = match damage {
            Damage::KeepAll => st.names.clone(),
            Damage::ReorderDirs => reorder(&st, &mut rng),
            _ => st.durable.clone(),
        };
        (st.durable, st.names) = (names.clone(), names);
        st.dir_log.clear();
        st.die();
        st.capacity = None;
        for inode in st.inodes.values_mut() {
            let image = damaged(inode, damage, &mut rng);
            inode.synced = image.clone();
            inode.data = image;
            inode.pending.clear();
        }
    }

    /// Damage at rest: XORs the byte at `offset` of the file at `path` with `xor`, in what the
    /// process sees and in what survives a power cut alike (bit rot, a stray write), whether the
    /// byte was synced or not. Sealed segments are damaged this way as easily as the active one.
    pub fn flip_byte(&self, path: &Path, offset: u64, xor: u8) -> io::Result<()> {
        let mut st = self.state.lock();
        let ino = *st.names.get(path).ok_or_else(|| io::Error::from(Kind::NotFound))?;
        let inode = st.inode(ino)?;
        let at = usize::try_from(offset).map_err(|_| io::Error::from(Kind::InvalidInput))?;
        for image in [&mut inode.data, &mut inode.synced] {
            if let Some(b) = image.get_mut(at) {
                *b ^= xor;
            }
        }
        for change in &mut inode.pending {
            if let Pending::Write(o, bytes) = change
                && let Some(b) = at.checked_sub(*o).and_then(|i| bytes.get_mut(i))
            {
                *b ^= xor;
            }
        }
        Ok(())
    }

    /// Damage at rest: cuts the file at `path` to `len` bytes, durably (what a lost extent or an
    /// operator's mistake does), without going through a handle.
    pub fn truncate_at_rest(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut st = self.state.lock();
        let ino = *st.names.get(path).ok_or_else(|| io::Error::from(Kind::NotFound))?;
        let inode = st.inode(ino)?;
        let len = usize::try_from(len).map_err(|_| io::Error::from(Kind::InvalidInput))?;
        inode.data.truncate(len);
        inode.synced.truncate(len);
        inode.pending.clear();
        Ok(())
    }

    /// Kills the process: data and names stay as they are (the page cache survives), handles go
    /// stale, locks are released, and faults and the crash countdown are cleared.
    pub fn kill(&self) {
        self.state.lock().die();
    }

    /// The current bytes of a file.
    pub fn read_file(&self, path: &Path) -> Option<Vec<u8>> {
        let st = self.state.lock();
        st.names.get(path).and_then(|i| st.inodes.get(i)).map(|i| i.data.clone())
    }

    /// Creates or replaces a file and its parent directories, durably at once; ignores faults,
    /// crashes and the capacity. Does nothing if `path` is a directory.
    pub fn write_file(&self, path: &Path, bytes: &[u8]) {
        let mut st = self.state.lock();
        if st.dirs.contains(path) || path.file_name().is_none() {
            return;
        }
        st.dirs.extend(dir_chain(parent(path)));
        st.dir_log.retain(|op| op.from.as_deref() != Some(path) && op.to.as_deref() != Some(path));
        let ino = st.link(path, bytes.to_vec());
        st.make_durable(path, ino);
    }

    /// Every current file path, sorted.
    pub fn file_names(&self) -> Vec<PathBuf> {
        self.state.lock().names.keys().cloned().collect()
    }
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State")
            .field("files", &self.names.len())
            .field("ops", &self.ops)
            .field("generation", &self.generation)
            .field("crashed", &self.crashed)
            .finish_non_exhaustive()
    }
}

impl Storage for SimStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        if st.crashed {
            return Err(crashed());
        }
        let dirs = dir_chain(path);
        if let Some(file) = dirs.iter().find(|d| st.names.contains_key(*d)) {
            return Err(err(Kind::AlreadyExists, file));
        }
        st.dirs.extend(dirs);
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let st = self.state.lock();
        if st.names.contains_key(dir) {
            return Err(err(Kind::NotADirectory, dir));
        }
        if !st.dir_exists(dir) {
            return Err(err(Kind::NotFound, dir));
        }
        let entries = st.names.keys().chain(&st.dirs).filter(|p| parent(p) == dir);
        let names = entries.filter_map(|p| p.file_name());
        Ok(names.map(|n| n.to_string_lossy().into_owned()).collect())
    }

    fn exists(&self, path: &Path) -> bool {
        let st = self.state.lock();
        st.names.contains_key(path) || (!path.as_os_str().is_empty() && st.dir_exists(path))
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        let mut st = self.state.lock();
        let ino = match (mode, st.names.get(path)) {
            (OpenMode::CreateNew, _) => {
                st.gate(FaultOp::Create)?;
                if st.names.contains_key(path) {
                    return Err(err(Kind::AlreadyExists, path));
                }
                st.check_new_name(path)?;
                let ino = st.link(path, Vec::new());
                st.log(None, Some(path), ino);
                ino
            }
            (_, Some(&ino)) => ino,
            (_, None) if st.dirs.contains(path) => return Err(err(Kind::IsADirectory, path)),
            (_, None) => return Err(err(Kind::NotFound, path)),
        };
        let (state, generation) = (Arc::clone(&self.state), st.generation);
        let writable = mode != OpenMode::Read;
        Ok(Arc::new(SimFile { state, ino, generation, writable, path: path.to_path_buf() }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        st.gate(FaultOp::Rename)?;
        let Some(&ino) = st.names.get(from) else {
            return Err(err(Kind::NotFound, from));
        };
        st.check_new_name(to)?;
        if from != to {
            st.names.remove(from);
            st.names.insert(to.to_path_buf(), ino);
            st.log(Some(from), Some(to), ino);
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        st.gate(FaultOp::Remove)?;
        let ino = st.names.remove(path).ok_or_else(|| err(Kind::NotFound, path))?;
        st.log(Some(path), None, ino);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        st.gate(FaultOp::SyncDir)?;
        if !st.dir_exists(dir) {
            return Err(err(Kind::NotFound, dir));
        }
        st.durable.retain(|p, _| parent(p) != dir);
        let inside = st.names.iter().filter(|(p, _)| parent(p) == dir);
        let entries: Vec<(PathBuf, u64)> = inside.map(|(p, &i)| (p.clone(), i)).collect();
        for (path, ino) in entries {
            st.make_durable(&path, ino);
        }
        let touches = |p: &Option<PathBuf>| p.as_deref().is_some_and(|p| parent(p) == dir);
        st.dir_log.retain(|op| !touches(&op.from) && !touches(&op.to));
        Ok(())
    }

    fn try_lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        let mut st = self.state.lock();
        if st.crashed {
            return Err(crashed());
        }
        if st.locks.contains(path) {
            return Err(err(Kind::WouldBlock, path));
        }
        if !st.names.contains_key(path) {
            st.check_new_name(path)?;
            let ino = st.link(path, Vec::new());
            st.make_durable(path, ino);
        }
        st.locks.insert(path.to_path_buf());
        let (state, generation) = (Arc::clone(&self.state), st.generation);
        Ok(Box::new(SimLock { state, path: path.to_path_buf(), generation }))
    }
}

/// An open simulated file: an inode of one generation of the process.
#[derive(Debug)]
struct SimFile {
    state: Arc<Mutex<State>>,
    ino: u64,
    generation: u64,
    writable: bool,
    path: PathBuf,
}

impl SimFile {
    /// Runs `f` on the live state, or fails if the handle outlived a kill or power cut.
    fn with<T>(&self, write: bool, f: impl FnOnce(&mut State, u64) -> io::Result<T>) -> io::Result<T> {
        let mut st = self.state.lock();
        if st.generation != self.generation || !st.inodes.contains_key(&self.ino) {
            return Err(stale());
        }
        if write && !self.writable {
            return Err(err(Kind::PermissionDenied, &self.path));
        }
        f(&mut st, self.ino)
    }
}

impl StorageFile for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.with(false, |st, ino| {
            let data = &st.inode(ino)?.data;
            let src = usize::try_from(offset).ok().and_then(|o| data.get(o..)).unwrap_or(&[]);
            let n = buf.len().min(src.len());
            buf.iter_mut().zip(src).for_each(|(d, s)| *d = *s);
            Ok(n)
        })
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.with(true, |st, ino| {
            if st.torn && !st.crashed && st.countdown == Some(0) {
                // The machine dies mid-write: a prefix reaches the page cache.
                let cut = st.rng.below(buf.len());
                let _ = st.write(ino, offset, buf.get(..cut).unwrap_or_default());
            }
            st.gate(FaultOp::Write)?;
            st.write(ino, offset, buf)
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        self.with(true, |st, ino| {
            st.gate(FaultOp::Sync)?;
            let inode = st.inode(ino)?;
            inode.synced = inode.data.clone();
            inode.pending.clear();
            Ok(())
        })
    }

    fn len(&self) -> io::Result<u64> {
        self.with(false, |st, ino| Ok(st.inode(ino)?.data.len() as u64))
    }

    fn is_unlinked(&self) -> io::Result<bool> {
        self.with(false, |st, ino| Ok(!st.names.values().any(|&i| i == ino)))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.with(true, |st, ino| {
            st.gate(FaultOp::SetLen)?;
            let len = file_len(len)?;
            st.set_len(ino, len)
        })
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        self.with(true, |st, ino| {
            st.gate(FaultOp::Allocate)?;
            let len = file_len(len)?;
            if len <= st.inode(ino)?.data.len() {
                return Ok(());
            }
            st.set_len(ino, len)
        })
    }

    #[allow(unsafe_code)]
    unsafe fn map_range(&self, offset: u64, len: usize) -> io::Result<FileBytes> {
        self.with(false, |st, ino| {
            let data = &st.inode(ino)?.data;
            let a = usize::try_from(offset).unwrap_or(usize::MAX).min(data.len());
            let b = a.saturating_add(len).min(data.len());
            Ok(Arc::new(data.get(a..b).unwrap_or_default().to_vec()) as FileBytes)
        })
    }
}

/// A held simulated lock; a guard from before a kill or power cut releases nothing.
#[derive(Debug)]
struct SimLock {
    state: Arc<Mutex<State>>,
    path: PathBuf,
    generation: u64,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut st = self.state.lock();
        if st.generation == self.generation {
            st.locks.remove(&self.path);
        }
    }
}

impl LockGuard for SimLock {}

#[cfg(test)]
mod tests {
    use super::*;

    const DIR: &str = "/db/wal";

    fn p(name: &str) -> PathBuf {
        Path::new(DIR).join(name)
    }

    fn sim() -> SimStorage {
        let sim = SimStorage::new();
        sim.create_dir_all(Path::new(DIR)).unwrap();
        sim
    }

    fn open(sim: &SimStorage, name: &str, mode: OpenMode) -> Arc<dyn StorageFile> {
        sim.open(&p(name), mode).unwrap()
    }

    fn kind<T>(r: io::Result<T>) -> Kind {
        r.err().unwrap().kind()
    }

    fn contents(sim: &SimStorage, name: &str) -> Vec<u8> {
        sim.read_file(&p(name)).unwrap()
    }

    /// File "f" holding `synced` durably, then `unsynced` written at `at` without a sync.
    fn scenario(synced: &[u8], unsynced: &[u8], at: u64) -> SimStorage {
        let sim = sim();
        let f = open(&sim, "f", OpenMode::CreateNew);
        f.write_all_at(synced, 0).unwrap();
        f.sync_data().unwrap();
        sim.sync_dir(Path::new(DIR)).unwrap();
        f.write_all_at(unsynced, at).unwrap();
        sim
    }

    fn cut(sim: SimStorage, damage: Damage, seed: u64) -> Vec<u8> {
        sim.power_cut(damage, seed);
        contents(&sim, "f")
    }

    #[test]
    fn synced_data_survives_and_unsynced_is_dropped() {
        let sim = scenario(b"hello", b" world", 5);
        assert_eq!(contents(&sim, "f"), b"hello world");
        assert_eq!(cut(sim, Damage::Drop, 1), b"hello");
        assert_eq!(cut(scenario(b"hello", b" world", 5), Damage::KeepAll, 1), b"hello world");
        let sim = scenario(b"abcdef", b"", 0);
        let f = open(&sim, "f", OpenMode::ReadWrite);
        f.set_len(2).unwrap();
        f.allocate(10).unwrap();
        f.allocate(4).unwrap();
        assert_eq!(f.len().unwrap(), 10);
        assert_eq!(cut(sim, Damage::Drop, 0), b"abcdef", "length changes are unsynced");
    }

    #[test]
    fn synced_state_survives_every_damage() {
        for damage in Damage::ALL {
            for seed in 0..8 {
                let got = cut(scenario(b"durable", b"more", 7), damage, seed);
                assert_eq!(&got[..7], b"durable", "{damage:?} {seed}");
            }
        }
    }

    #[test]
    fn torn_writes_keep_a_sector_aligned_prefix() {
        for (damage, sector) in [(Damage::Torn512, 512), (Damage::Torn4K, 4096)] {
            let (old, new) = (vec![1u8; 100], vec![2u8; 3 * sector]);
            let mut lens = BTreeSet::new();
            for seed in 0..64 {
                let got = cut(scenario(&old, &new, 100), damage, seed);
                let whole = [100, 100 + new.len()].contains(&got.len());
                assert!(whole || got.len().is_multiple_of(sector), "{damage:?} {}", got.len());
                assert!(got[..100] == old[..] && got[100..].iter().all(|&b| b == 2));
                assert_eq!(cut(scenario(&old, &new, 100), damage, seed), got, "seeded");
                lens.insert(got.len());
            }
            assert!(lens.len() >= 4, "{damage:?} outcomes {lens:?}");
        }
    }

    #[test]
    fn garbage_and_zeros_keep_the_length() {
        let got = cut(scenario(b"keep", &[7; 64], 4), Damage::Zeros, 3);
        assert!(got[..4] == *b"keep" && got[4..] == [0; 64]);
        let got = cut(scenario(b"keep", &[7; 64], 4), Damage::Garbage, 3);
        assert!(got.len() == 68 && got[..4] == *b"keep");
        assert!(got[4..] != [7; 64] && got[4..] != [0; 64]);
        assert_eq!(cut(scenario(b"keep", &[7; 64], 4), Damage::Garbage, 3), got);
    }

    #[test]
    fn names_need_sync_dir() {
        let sim = sim();
        let f = open(&sim, "a", OpenMode::CreateNew);
        f.write_all_at(b"x", 0).unwrap();
        f.sync_data().unwrap();
        sim.power_cut(Damage::Drop, 0);
        assert!(!sim.exists(&p("a")) && sim.exists(Path::new("/db")));
        open(&sim, "a", OpenMode::CreateNew).write_all_at(b"x", 0).unwrap();
        sim.sync_dir(Path::new(DIR)).unwrap();
        sim.power_cut(Damage::Drop, 0);
        assert_eq!(contents(&sim, "a"), b"", "name durable, data not");
    }

    #[test]
    fn rename_and_remove_need_sync_dir() {
        let sim = sim();
        sim.write_file(&p("a"), b"A");
        sim.write_file(&p("b"), b"B");
        sim.rename(&p("a"), &p("b")).unwrap();
        assert_eq!((sim.file_names(), contents(&sim, "b")), (vec![p("b")], b"A".to_vec()));
        sim.power_cut(Damage::Drop, 0);
        assert_eq!((sim.file_names(), contents(&sim, "b")), (vec![p("a"), p("b")], b"B".to_vec()));
        sim.rename(&p("a"), &p("c")).unwrap();
        sim.remove_file(&p("b")).unwrap();
        sim.sync_dir(Path::new(DIR)).unwrap();
        sim.power_cut(Damage::Drop, 0);
        assert_eq!(sim.file_names(), vec![p("c")]);
        sim.remove_file(&p("c")).unwrap();
        sim.power_cut(Damage::Drop, 0);
        assert_eq!(sim.file_names(), vec![p("c")], "unsynced remove undone");
        assert_eq!(kind(sim.rename(&p("zz"), &p("y"))), Kind::NotFound);
        assert_eq!(kind(sim.remove_file(&p("zz"))), Kind::NotFound);
    }

    #[test]
    fn reorder_dirs_is_consistent_and_varied() {
        let mut outcomes = BTreeSet::new();
        for seed in 0..64 {
            let sim = sim();
            sim.write_file(&p("old"), b"O");
            open(&sim, "a", OpenMode::CreateNew);
            sim.rename(&p("a"), &p("b")).unwrap();
            sim.remove_file(&p("old")).unwrap();
            open(&sim, "c", OpenMode::CreateNew);
            sim.power_cut(Damage::ReorderDirs, seed);
            let names = sim.file_names();
            assert!(!(names.contains(&p("a")) && names.contains(&p("b"))), "{names:?}");
            outcomes.insert(names);
        }
        assert!(outcomes.len() >= 6, "{outcomes:?}");
    }

    #[test]
    fn each_fault_fires_once_with_no_effect() {
        use FaultOp::*;
        for op in [Write, Sync, SyncDir, Rename, Remove, SetLen, Allocate, Create] {
            for (target, fault) in [(op, FaultKind::Eio), (Any, FaultKind::Enospc)] {
                let sim = scenario(b"abc", b"", 0);
                let f = open(&sim, "f", OpenMode::ReadWrite);
                sim.inject(target, fault, 0, false);
                let run = || match op {
                    Write => f.write_all_at(b"Z", 0),
                    Sync => f.sync_data(),
                    SyncDir => sim.sync_dir(Path::new(DIR)),
                    Rename => sim.rename(&p("f"), &p("g")),
                    Remove => sim.remove_file(&p("f")),
                    SetLen => f.set_len(1),
                    Allocate => f.allocate(9),
                    _ => sim.open(&p("n"), OpenMode::CreateNew).map(drop),
                };
                let e = run().unwrap_err();
                let want = if fault == FaultKind::Eio { EIO } else { ENOSPC };
                assert_eq!(e.raw_os_error(), Some(want), "{op:?}");
                assert_eq!((sim.file_names(), contents(&sim, "f")), (vec![p("f")], b"abc".to_vec()));
                run().unwrap();
            }
        }
        let e = io::Error::from_raw_os_error(ENOSPC);
        assert_eq!(e.kind(), Kind::StorageFull);
    }

    #[test]
    fn permanent_faults_and_failed_sync() {
        let sim = scenario(b"abc", b"def", 3);
        let f = open(&sim, "f", OpenMode::ReadWrite);
        sim.inject(FaultOp::Sync, FaultKind::Eio, 1, true);
        sim.inject(FaultOp::Write, FaultKind::Eio, 5, false);
        f.sync_data().unwrap();
        f.write_all_at(b"ghi", 6).unwrap();
        for _ in 0..3 {
            assert_eq!(f.sync_data().unwrap_err().raw_os_error(), Some(EIO));
        }
        assert_eq!(cut(sim.clone(), Damage::Drop, 0), b"abcdef", "failed sync marked nothing");
        let f = open(&sim, "f", OpenMode::ReadWrite);
        f.sync_data().unwrap();
        sim.inject(FaultOp::Write, FaultKind::Eio, 0, true);
        sim.clear_faults();
        f.write_all_at(b"x", 0).unwrap();
    }

    #[test]
    fn crash_after_counts_mutations_only() {
        let sim = sim();
        let f = open(&sim, "f", OpenMode::CreateNew);
        sim.crash_after(2);
        f.write_all_at(b"ab", 0).unwrap();
        let mut buf = [0u8; 4];
        assert_eq!((f.read_at(&mut buf, 0).unwrap(), f.len().unwrap()), (2, 2));
        f.sync_data().unwrap();
        assert_eq!((sim.op_count(), sim.is_crashed()), (3, false));
        assert_eq!(f.write_all_at(b"cd", 2).unwrap_err().to_string(), "simulated crash");
        assert!(sim.is_crashed() && sim.sync_dir(Path::new(DIR)).is_err());
        assert!(sim.open(&p("g"), OpenMode::CreateNew).is_err());
        assert_eq!(f.read_at(&mut buf, 0).unwrap(), 2, "reads keep working");
        assert_eq!(sim.op_count(), 3);
        sim.power_cut(Damage::KeepAll, 0);
        assert!(!sim.is_crashed());
        assert_eq!(contents(&sim, "f"), b"ab");
    }

    #[test]
    fn torn_crash_applies_a_strict_prefix() {
        let mut lens = BTreeSet::new();
        for seed in 0..16 {
            let sim = SimStorage::with_seed(seed);
            sim.create_dir_all(Path::new(DIR)).unwrap();
            let f = open(&sim, "f", OpenMode::CreateNew);
            sim.crash_after_torn(0);
            assert!(f.write_all_at(&[9; 100], 0).is_err());
            let got = contents(&sim, "f");
            assert!(got.len() < 100 && got.iter().all(|&b| b == 9));
            lens.insert(got.len());
        }
        assert!(lens.len() > 1);
    }

    #[test]
    fn capacity_then_recovery_after_freeing() {
        let sim = sim();
        sim.set_capacity(Some(100));
        let a = open(&sim, "a", OpenMode::CreateNew);
        a.write_all_at(&[1; 80], 0).unwrap();
        let b = open(&sim, "b", OpenMode::CreateNew);
        assert_eq!(kind(b.write_all_at(&[2; 30], 0)), Kind::StorageFull);
        assert_eq!(kind(b.allocate(21)), Kind::StorageFull);
        assert_eq!(kind(b.set_len(21)), Kind::StorageFull);
        assert_eq!(b.len().unwrap(), 0);
        a.write_all_at(&[3; 80], 0).unwrap();
        b.write_all_at(&[2; 20], 0).unwrap();
        sim.remove_file(&p("a")).unwrap();
        b.write_all_at(&[2; 30], 20).unwrap();
        sim.set_capacity(None);
        b.allocate(1000).unwrap();
    }

    #[test]
    // SAFETY (of the unsafe blocks): the simulated disk copies bytes, it maps nothing.
    #[allow(unsafe_code)]
    fn handles_go_stale_and_kill_keeps_the_page_cache() {
        let sim = sim();
        let f = open(&sim, "f", OpenMode::CreateNew);
        f.write_all_at(b"unsynced", 0).unwrap();
        sim.inject(FaultOp::Any, FaultKind::Eio, 0, true);
        sim.kill();
        let e = f.write_all_at(b"x", 0).unwrap_err();
        assert_eq!(e.to_string(), "simulated crash: stale handle");
        assert!(f.read_at(&mut [0; 1], 0).is_err() && f.len().is_err() && unsafe { f.map_range(0, 8) }.is_err());
        assert_eq!(contents(&sim, "f"), b"unsynced");
        let f = open(&sim, "f", OpenMode::ReadWrite);
        f.write_all_at(b"U", 0).unwrap();
        assert_eq!((*unsafe { f.map_range(0, 64) }.unwrap()).as_ref(), b"Unsynced");
        sim.power_cut(Damage::Drop, 0);
        assert!(f.sync_data().is_err() && sim.file_names().is_empty());
    }

    #[test]
    fn locks_are_exclusive_and_released() {
        let (sim, lock) = (sim(), p("LOCK"));
        let g = sim.try_lock(&lock).unwrap();
        assert_eq!(kind(sim.try_lock(&lock)), Kind::WouldBlock);
        drop(g);
        let g = sim.clone().try_lock(&lock).unwrap();
        sim.power_cut(Damage::Drop, 0);
        assert!(sim.exists(&lock), "lock file is durable");
        let g2 = sim.try_lock(&lock).unwrap();
        drop(g);
        assert_eq!(kind(sim.try_lock(&lock)), Kind::WouldBlock, "stale guard released nothing");
        sim.kill();
        sim.try_lock(&lock).unwrap();
        drop(g2);
    }

    #[test]
    fn bad_arguments_are_errors_not_panics() {
        let sim = scenario(b"abc", b"", 0);
        assert_eq!(kind(sim.open(&p("nope"), OpenMode::Read)), Kind::NotFound);
        assert_eq!(kind(sim.open(&p("f"), OpenMode::CreateNew)), Kind::AlreadyExists);
        assert_eq!(kind(sim.open(Path::new("/x/y"), OpenMode::CreateNew)), Kind::NotFound);
        let f = open(&sim, "f", OpenMode::ReadWrite);
        assert_eq!(kind(f.write_all_at(b"x", u64::MAX)), Kind::InvalidInput);
        assert_eq!(kind(f.write_all_at(b"x", 1 << 40)), Kind::FileTooLarge);
        assert_eq!(kind(f.set_len(u64::MAX)), Kind::FileTooLarge);
        assert_eq!(kind(f.allocate(u64::MAX)), Kind::FileTooLarge);
        assert_eq!(f.read_at(&mut [0; 4], u64::MAX).unwrap(), 0);
        f.write_all_at(b"z", 5).unwrap();
        assert_eq!(contents(&sim, "f"), b"abc\0\0z");
        let r = open(&sim, "f", OpenMode::Read);
        assert_eq!(kind(r.write_all_at(b"x", 0)), Kind::PermissionDenied);
        sim.create_dir_all(&p("sub")).unwrap();
        let mut names = sim.list(Path::new(DIR)).unwrap();
        names.sort();
        assert_eq!(names, ["f", "sub"]);
        assert_eq!(kind(sim.list(&p("f"))), Kind::NotADirectory);
        assert_eq!(kind(sim.list(&p("none"))), Kind::NotFound);
        assert_eq!(kind(sim.create_dir_all(&p("f").join("x"))), Kind::AlreadyExists);
        assert!(format!("{sim:?} {f:?}").contains("SimStorage"));
    }
}
