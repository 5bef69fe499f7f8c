//! The state an open store shares between the caller's threads and its background threads
//! (compactor, shipper): options, this process's lane, handles on the other lanes, the read
//! connection, and the degraded states seen so far, split by writer so that each thread owns
//! what it writes: [`CompactorShared`] (index health, compactor status, erase pass, compactor
//! health), [`ShipperShared`] (remote status, shipper health) and [`ReadShared`] (read problems,
//! lane errors and damage, undecodable records), each behind its own mutex, never two held at
//! once. Also the two read primitives every read path uses: a read
//! connection on the index, and a walk over what the index does not hold yet.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use parking_lot::Mutex;
use tidelog_journal::{Journal, Lsn};
use tracing::error;

use crate::entry;
use crate::entry::Entry;
use crate::error::Result;
use crate::health::Health;
use crate::index::{Index, IndexError};
use crate::layout::{INDEX_FILE, lane_dir, lane_names, lane_number};
use crate::options::StoreOptions;
use crate::sequence::Sequence;
use crate::status::{CompactorStatus, IndexHealth, RemoteStatus};

/// What the compactor thread writes (readers of the status only read it).
#[derive(Debug)]
pub(crate) struct CompactorShared {
    pub index: IndexHealth,
    pub compactor: CompactorStatus,
    /// Deleted content an erase pass could not remove yet, and why.
    pub erase_pending: Option<String>,
    /// Panics and persistent failures of the compactor thread (`supervise.rs`).
    pub compactor_health: Health,
}

/// What the remote shipper thread writes.
#[derive(Debug)]
pub(crate) struct ShipperShared {
    /// The remote shipper's view (default when no remote index is configured).
    pub remote: RemoteStatus,
    /// Panics and persistent failures of the shipper thread (`supervise.rs`).
    pub shipper_health: Health,
}

/// What reads (the caller's threads) and the compactor find while reading the index and the
/// lanes.
#[derive(Debug)]
pub(crate) struct ReadShared {
    pub read_problem: Option<String>,
    pub lane_errors: BTreeMap<String, String>,
    /// Damage met in each lane (records that cannot be read, with the file, the offset and the
    /// LSNs), as found by opening or reading it. Sticky for the life of the store handle: the
    /// history it shows is incomplete until `tidelog repair --salvage`.
    pub lane_damage: BTreeMap<String, Vec<String>>,
    /// Records that did not decode, as `lane/lsn` -> why (written by a newer version, or
    /// damaged). Every read reports them; bounded (the count goes on in `undecodable_more`).
    pub undecodable: BTreeMap<String, String>,
    pub undecodable_more: u64,
}

/// How many undecodable records are kept by name.
const UNDECODABLE_KEPT: usize = 16;

impl ReadShared {
    /// Records a record that did not decode (logged once).
    /// Records damage met in a lane (logged once per distinct message).
    pub(crate) fn damage(&mut self, lane: &str, what: String) {
        let list = self.lane_damage.entry(lane.to_string()).or_default();
        if list.contains(&what) {
            return;
        }
        error!(lane = %lane, "lane has unreadable records: {what}");
        if list.len() < UNDECODABLE_KEPT {
            list.push(what);
        }
    }

    pub(crate) fn undecodable(&mut self, lane: &str, lsn: Lsn, why: String) {
        let key = format!("{lane}/{lsn}");
        if self.undecodable.contains_key(&key) {
            return;
        }
        error!(lane = %lane, lsn, "journal record does not decode: {why}");
        if self.undecodable.len() < UNDECODABLE_KEPT {
            self.undecodable.insert(key, why);
        } else {
            self.undecodable_more += 1;
        }
    }
}

#[derive(Debug)]
pub(crate) struct ReadConn {
    pub index: Index,
    pub ino: u64,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub dir: PathBuf,
    pub opts: StoreOptions,
    pub lane_name: String,
    pub lane: Journal,
    pub stop: AtomicBool,
    /// Written by the compactor thread.
    pub compactor_state: Mutex<CompactorShared>,
    /// Written by the shipper thread.
    pub shipper_state: Mutex<ShipperShared>,
    /// Written by reads and the compactor. One of these three mutexes is held at a time, never
    /// two.
    pub reads: Mutex<ReadShared>,
    /// Reads texts the index keeps only in the journal, for [`Store::text_at`](crate::Store::text_at).
    pub text_reader: tidelog_journal::RecordAt,
    pub reader: Mutex<Option<ReadConn>>,
    pub others: Mutex<BTreeMap<String, Journal>>,
    pub pending: Mutex<PendingIds>,
    /// The store's shared order (message ids and op positions); `None` in a read-only open.
    pub seq: Option<Sequence>,
    /// The store-wide write lock while this process holds it (see [`Inner::exclusive`]).
    pub write_lock: Mutex<WriteLock>,
    pub write_freed: parking_lot::Condvar,
    /// Compressions running in this store's appends (`entry::shorter_payload`).
    pub compressing: crate::entry::Slots,
}

/// Journal options for a read-only look at a lane: salvage in memory (a read-only open changes
/// nothing), so that reads show every valid record on both sides of damage and report the damage
/// instead of stopping at it or refusing the lane.
pub(crate) fn read_lane_options(opts: &StoreOptions) -> tidelog_journal::Options {
    tidelog_journal::Options { recovery: tidelog_journal::RecoveryMode::Salvage, ..opts.journal_options() }
}

/// Whether what a lane's journal found when it was opened explains records missing from it
/// (damage rather than a clean end), so that an index holding more of it is not evidence of
/// anything wrong with the index.
pub(crate) fn lane_has_damage(j: &Journal) -> bool {
    let r = j.recovery_report();
    !r.salvaged.is_empty() || r.known_holes > 0 || !r.quarantined_files.is_empty()
}

/// Ids of messages in the lanes that the index may not have yet (for idempotent appends), filled
/// incrementally from every lane: the last LSN scanned per lane, and id -> (lane, LSN, session).
#[derive(Debug, Default)]
pub(crate) struct PendingIds {
    pub scanned: BTreeMap<String, Lsn>,
    pub ids: HashMap<String, (String, Lsn, String)>,
}

/// This process's hold on the store-wide write lock: the thread that holds it, how many nested
/// holds it has, and the locked file while it does.
#[derive(Debug, Default)]
pub(crate) struct WriteLock {
    owner: Option<std::thread::ThreadId>,
    depth: u32,
    file: Option<fs::File>,
}

/// Leaves one level of [`Inner::exclusive`], even when `f` panicked.
struct Release<'a>(&'a Inner);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.0.release_write();
    }
}

impl Inner {
    /// The store's sequence; an error in a read-only open.
    pub(crate) fn seq(&self) -> Result<&Sequence> {
        self.seq.as_ref().ok_or_else(|| crate::error::Error::ReadOnly { path: self.dir.clone() })
    }

    /// Runs `f` holding the store-wide write lock (`write.lock`): no other process's conditional
    /// write runs meanwhile, so `f` can read the state of every lane, decide and append
    /// atomically. Reentrant within a thread.
    pub(crate) fn exclusive<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        self.acquire_write()?;
        let _release = Release(self);
        f()
    }

    /// Takes the store-wide write lock for the calling thread (once more if it holds it
    /// already), waiting for other threads of this process and for other processes.
    pub(crate) fn acquire_write(&self) -> Result<()> {
        let me = std::thread::current().id();
        let mut st = self.write_lock.lock();
        loop {
            match st.owner {
                None => break,
                Some(o) if o == me => {
                    st.depth += 1;
                    return Ok(());
                }
                Some(_) => self.write_freed.wait(&mut st),
            }
        }
        st.owner = Some(me);
        st.depth = 1;
        drop(st);
        // Other processes: waited for without holding the in-process mutex.
        match crate::sequence::lock_exclusive(&self.dir.join(crate::layout::WRITE_LOCK)) {
            Ok(f) => {
                self.write_lock.lock().file = Some(f);
                Ok(())
            }
            Err(e) => {
                let mut st = self.write_lock.lock();
                st.owner = None;
                st.depth = 0;
                self.write_freed.notify_one();
                Err(e)
            }
        }
    }

    /// Leaves one hold of the write lock taken by this thread; the last one releases it. A
    /// thread that does not hold it changes nothing (returns false).
    pub(crate) fn release_write(&self) -> bool {
        let mut st = self.write_lock.lock();
        if st.owner != Some(std::thread::current().id()) {
            return false;
        }
        st.depth = st.depth.saturating_sub(1);
        if st.depth == 0 {
            // Closing the file releases the flock.
            st.file = None;
            st.owner = None;
            self.write_freed.notify_one();
        }
        true
    }

    /// A fresh state for a store just opened.
    pub(crate) fn new(
        dir: PathBuf,
        opts: StoreOptions,
        lane_name: String,
        lane: Journal,
        lane_errors: BTreeMap<String, String>,
        seq: Option<Sequence>,
    ) -> Inner {
        Inner {
            dir,
            opts,
            lane_name,
            lane,
            stop: AtomicBool::new(false),
            compactor_state: Mutex::new(CompactorShared {
                index: IndexHealth::Unchecked,
                compactor: CompactorStatus::default(),
                erase_pending: None,
                compactor_health: Health::default(),
            }),
            shipper_state: Mutex::new(ShipperShared {
                remote: RemoteStatus::default(),
                shipper_health: Health::default(),
            }),
            text_reader: tidelog_journal::RecordAt::new(),
            reads: Mutex::new(ReadShared {
                read_problem: None,
                lane_damage: lane_errors
                    .iter()
                    .map(|(k, v)| (k.clone(), vec![format!("cannot be opened as it is: {v}")]))
                    .collect(),
                lane_errors,
                undecodable: BTreeMap::new(),
                undecodable_more: 0,
            }),
            reader: Mutex::new(None),
            others: Mutex::new(BTreeMap::new()),
            pending: Mutex::new(PendingIds::default()),
            seq,
            write_lock: Mutex::new(WriteLock::default()),
            write_freed: parking_lot::Condvar::new(),
            compressing: crate::entry::Slots::default(),
        }
    }

    /// Runs `f` on a read connection to the index; `None` (and a problem in the status, logged
    /// at error level) if the index cannot be used. Reopens the connection if the index file
    /// was replaced (rebuilt).
    pub(crate) fn with_reader<T>(&self, f: impl FnOnce(&Index) -> Result<T, IndexError>) -> Option<T> {
        let path = self.dir.join(INDEX_FILE);
        let ino = fs::metadata(&path).ok().map(|m| m.ino())?;
        let mut guard = self.reader.lock();
        if guard.as_ref().map(|r| r.ino) != Some(ino) || guard.as_ref().is_some_and(|r| r.index.stale_view()) {
            *guard = None;
            match Index::open_read_only(&path, &self.opts.index) {
                Ok(index) => *guard = Some(ReadConn { index, ino }),
                // Being created by the compactor this very moment: the journal answers alone.
                Err(IndexError::NotInitialized { .. }) => return None,
                Err(e) => {
                    self.read_problem(format!("index {} cannot be opened for reading: {e}", path.display()));
                    return None;
                }
            }
        }
        let conn = guard.as_ref()?;
        match conn.index.snapshot(f) {
            Ok(v) => {
                self.reads.lock().read_problem = None;
                Some(v)
            }
            Err(e) => {
                if e.is_corruption() {
                    *guard = None;
                }
                self.read_problem(format!("index read failed, answering from the journal alone: {e}"));
                None
            }
        }
    }

    pub(crate) fn read_problem(&self, p: String) {
        let mut sh = self.reads.lock();
        if sh.read_problem.as_deref() != Some(p.as_str()) {
            error!("{p}");
        }
        sh.read_problem = Some(p);
    }

    /// Calls `f` with every journal entry not yet applied to the index (above `positions`),
    /// lane by lane.
    pub(crate) fn for_each_unindexed(
        &self,
        positions: &BTreeMap<String, u64>,
        mut f: impl FnMut(&str, Lsn, Entry),
    ) -> Result<()> {
        let names = lane_names(&self.dir)?;
        for name in names {
            let from = positions.get(&name).copied().unwrap_or(0) + 1;
            let Some(j) = self.lane_journal(&name) else { continue };
            let lane_no = lane_number(&name).unwrap_or(0);
            for r in j.iter_from(from) {
                match r {
                    Ok(rec) => match entry::decode_record(lane_no, rec.lsn, &rec.payload) {
                        Ok(e) => f(&name, rec.lsn, e),
                        Err(e) => self.reads.lock().undecodable(&name, rec.lsn, e.to_string()),
                    },
                    // Damage: reported, and reading goes on with the next valid record.
                    Err(e) if e.is_corruption() => self.reads.lock().damage(&name, e.to_string()),
                    Err(e) => {
                        error!(lane = %name, "reading lane failed: {e}");
                        self.reads.lock().lane_errors.insert(name.clone(), e.to_string());
                        break;
                    }
                }
            }
        }
        Ok(())
    }
    /// A handle on a lane: this process's own journal, or a cached read-only one (refreshed).
    pub(crate) fn lane_journal(&self, name: &str) -> Option<Journal> {
        if name == self.lane_name {
            if self.opts.read_only
                && let Err(e) = self.lane.refresh()
            {
                self.reads.lock().lane_errors.insert(name.to_string(), e.to_string());
                return None;
            }
            return Some(self.lane.clone());
        }
        let mut others = self.others.lock();
        if let Some(j) = others.get(name) {
            match j.refresh() {
                Ok(_) => return Some(j.clone()),
                Err(e) => {
                    self.reads.lock().lane_errors.insert(name.to_string(), e.to_string());
                    others.remove(name);
                    return None;
                }
            }
        }
        match Journal::open_read_only(lane_dir(&self.dir, name), read_lane_options(&self.opts)) {
            Ok(j) => {
                let mut sh = self.reads.lock();
                sh.lane_errors.remove(name);
                for p in &j.recovery_report().problems {
                    sh.damage(name, p.clone());
                }
                drop(sh);
                others.insert(name.to_string(), j.clone());
                Some(j)
            }
            Err(e) => {
                let mut sh = self.reads.lock();
                if !sh.lane_errors.contains_key(name) {
                    error!(lane = %name, "lane cannot be read: {e}");
                }
                sh.lane_errors.insert(name.to_string(), e.to_string());
                None
            }
        }
    }
}
