//! The journal: open (with recovery), group-committed appends, rotation, poisoning, retention.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};
use tracing::{debug, error, info};

use crate::error::{Error, Result};
use crate::files::{self, Hole, LOCK_FILE};
use crate::format::{
    Digest, FLAG_BATCH_CONTINUES, FOOTER_LEN, FORMAT_VERSION, Footer, MAX_RECORD_LIMIT, SEGMENT_HEADER_LEN,
    SegmentHeader, encode_record, frame_len, segment_file_name,
};
use crate::options::{Durability, Options};
use crate::reader::{Iter, SegView};
use crate::recovery::{self, RecoveryReport};
use crate::storage::{LockGuard, OpenMode, StorageFile};

/// A log sequence number: records are numbered 1, 2, 3... across the whole journal.
pub type Lsn = u64;

/// A snapshot of the journal's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalStatus {
    /// The journal folder.
    pub dir: PathBuf,
    /// Lowest LSN still present.
    pub first_lsn: Lsn,
    /// Highest LSN that is durable (synced). In `Buffered` mode this lags `written_lsn`.
    pub durable_lsn: Lsn,
    /// Highest LSN written and readable.
    pub written_lsn: Lsn,
    /// Number of segment files.
    pub segments: usize,
    /// Id of the active segment.
    pub active_segment: u64,
    /// Why the journal refuses appends, if it was poisoned.
    pub poisoned: Option<String>,
    /// Opened read-only.
    pub read_only: bool,
    /// Salvaged holes the readers skip.
    pub holes: usize,
}

#[derive(Debug)]
struct Pending {
    /// LSN of the batch's first record (its name in the queue).
    first: Lsn,
    /// Shared with the appending thread, which may read them to make shorter forms while the
    /// batch waits (`append_batch_improving`).
    payloads: Vec<Arc<Vec<u8>>>,
}

/// Maps a payload to a shorter one the caller reads as the same record (for the store: its
/// entry compressed), or `None` to keep it. See [`Journal::append_batch_improving`].
pub type Improve<'a> = &'a (dyn Fn(&[u8]) -> Option<Vec<u8>> + Sync);

/// Replaces each payload by its shorter form, where `f` gives one. A panic in `f` keeps the
/// payload as it is: a batch waiting in the queue must stay there with its owner waiting for
/// it (an owner unwinding would leave it queued, written or never led, its caller told it
/// failed).
fn improve_all(payloads: &mut [Arc<Vec<u8>>], f: Improve<'_>) {
    for p in payloads.iter_mut() {
        let better = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(p))).ok().flatten();
        if let Some(better) = better.filter(|b| b.len() <= p.len()) {
            *p = Arc::new(better);
        }
    }
}

/// A waiting append runs its `improve` only when fewer batches than this (half the cores, at
/// least one) are queued ahead of it. Beyond that the appending threads outnumber the cores,
/// the CPU is what limits the commit rate, and work done while waiting is taken from the
/// thread leading the next commit (measured, 64 writers of 2 KB on two cores: compressing every
/// waiting append cost 70 % of the appends a second; with up to two batches ahead 18 %; with
/// none ahead within the run-to-run noise).
fn improve_queue_max() -> usize {
    static MAX: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *MAX.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1)))
}

#[derive(Debug)]
struct CommitState {
    next_lsn: Lsn,
    queue: Vec<Pending>,
    leader: bool,
    written_lsn: Lsn,
    durable_lsn: Lsn,
    poisoned: Option<String>,
    closed: bool,
}

#[derive(Debug)]
struct Active {
    id: u64,
    path: PathBuf,
    file: Arc<dyn StorageFile>,
    salt: u32,
    first_lsn: Lsn,
    data_end: u64,
    allocated: u64,
    records: u64,
    last_lsn: Lsn,
    digest: Digest,
}

#[derive(Debug)]
struct Writer {
    active: Active,
    buf: Vec<u8>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) dir: PathBuf,
    pub(crate) opts: Options,
    pub(crate) read_only: bool,
    state: Mutex<CommitState>,
    cond: Condvar,
    writer: Mutex<Option<Writer>>,
    pub(crate) segs: RwLock<Vec<Arc<SegView>>>,
    pub(crate) holes: RwLock<Vec<Hole>>,
    report: RecoveryReport,
    syncs: AtomicU64,
    /// For read-only handles: where the last refresh stopped walking the active segment
    /// (segment id, offset, last LSN), so a refresh reads only what is new.
    pub(crate) ro_tail: Mutex<Option<(u64, u64, Lsn)>>,
    /// Where the last record an iterator returned ends: (segment id, offset, LSN of the record
    /// starting there). `iter_from` starts there instead of at the segment's first record
    /// when it can, so reading the newest records does not rescan the whole segment.
    pub(crate) seek_hint: Mutex<Option<(u64, u64, Lsn)>>,
    lock: Mutex<Option<Box<dyn LockGuard>>>,
    /// The folder's identity when a writer opened it (see [`crate::storage::Storage::dir_identity`]).
    dir_identity: Option<u64>,
}

/// A segmented, checksummed, group-committed write-ahead log.
///
/// Open it with [`Journal::open`] (which runs recovery), append with [`Journal::append`] or
/// [`Journal::append_batch`], read with [`Journal::iter_from`].
#[derive(Debug, Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

fn random_salt() -> u32 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    h.write_u32(std::process::id());
    let v = h.finish();
    (v ^ (v >> 32)) as u32
}

impl Journal {
    /// Opens (creating if needed) the journal in `dir` for writing, running recovery.
    ///
    /// Takes the folder's writer lock: a second writer gets [`Error::Locked`]. A torn tail is cut
    /// off into `quarantine/`; damage in the middle fails with [`Error::Corrupt`] unless
    /// `opts.recovery` is `Salvage`. See [`Journal::recovery_report`].
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<Journal> {
        let dir = dir.as_ref().to_path_buf();
        check_options(&opts)?;
        let storage = Arc::clone(&opts.storage);
        storage.create_dir_all(&dir).map_err(|e| Error::io("create folder", &dir, e))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = match storage.try_lock(&lock_path) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Err(Error::Locked { path: dir }),
            Err(e) => return Err(Error::io("lock", lock_path, e)),
        };
        let rec = recovery::recover(&dir, &opts, false, true)?;
        let mut report = rec.report;
        let holes = rec.holes;
        let mut segments = rec.segments;

        let active = if rec.needs_new_segment {
            let (id, first, prev) = match segments.last() {
                Some(s) => (s.id + 1, s.last_lsn + 1, s.chain_digest()),
                None => (1, report.last_lsn.max(report.first_lsn.saturating_sub(1)) + 1, 0),
            };
            let a = create_segment(&dir, &opts, id, first, prev)?;
            report.created_segment = Some(id);
            info!(segment = id, first_lsn = first, "created active segment");
            a
        } else {
            let Some(last) = segments.pop() else {
                return Err(Error::InvalidOption("recovery returned no active segment".into()));
            };
            let file = storage.open(&last.path, OpenMode::ReadWrite).map_err(|e| Error::io("open", &last.path, e))?;
            let len = file.len().map_err(|e| Error::io("stat", &last.path, e))?;
            // Recovery's scan computed the digest of [0, data_end); a CRC resumes from its value.
            let digest = Digest::resume(last.digest);
            let mut a = Active {
                id: last.id,
                path: last.path,
                file,
                salt: last.header.salt,
                first_lsn: last.header.first_lsn,
                data_end: last.data_end,
                allocated: len,
                records: last.records,
                last_lsn: last.last_lsn,
                digest,
            };
            // Room for the next appends (a segment written by an older version may already hold
            // a whole segment's worth; it is never shrunk).
            if opts.preallocate {
                let target = allocation_target(a.allocated, a.data_end + 1, opts.segment_size);
                if target > a.allocated {
                    a.file.allocate(target).map_err(|e| Error::io("preallocate", &a.path, e))?;
                    a.allocated = target;
                }
            }
            // Records recovered from the page cache (after a process kill, or an append whose
            // sync failed) may not be durable: sync before exposing them, or a power cut could
            // take back records readers saw and the next appends would reuse their LSNs.
            a.file.sync_data().map_err(|e| Error::io("sync", &a.path, e))?;
            a
        };
        let mut views: Vec<Arc<SegView>> = segments.iter().map(|s| Arc::new(SegView::sealed_from(s))).collect();
        views.push(Arc::new(SegView::active(
            active.id,
            active.path.clone(),
            active.first_lsn,
            active.salt,
            Arc::clone(&active.file),
        )));
        let last = active.last_lsn;
        report.last_lsn = last;
        report.first_lsn = views.first().map(|v| v.first_lsn).unwrap_or(1);
        let dir_identity = storage.dir_identity(&dir);
        let inner = Inner {
            dir,
            opts,
            read_only: false,
            state: Mutex::new(CommitState {
                next_lsn: last + 1,
                queue: Vec::new(),
                leader: false,
                written_lsn: last,
                durable_lsn: last,
                poisoned: None,
                closed: false,
            }),
            cond: Condvar::new(),
            writer: Mutex::new(Some(Writer { active, buf: Vec::new() })),
            segs: RwLock::new(views),
            holes: RwLock::new(holes),
            report,
            syncs: AtomicU64::new(0),
            ro_tail: Mutex::new(None),
            seek_hint: Mutex::new(None),
            lock: Mutex::new(Some(lock)),
            dir_identity,
        };
        Ok(Journal { inner: Arc::new(inner) })
    }

    /// Opens a journal for reading only, beside a writer that may be running in another
    /// process. Nothing is modified: a torn or in-flight tail is simply where reading stops.
    /// Mid-log damage fails as in [`Journal::open`] (Strict) or is skipped in memory (Salvage).
    pub fn open_read_only(dir: impl AsRef<Path>, opts: Options) -> Result<Journal> {
        let dir = dir.as_ref().to_path_buf();
        check_options(&opts)?;
        if !opts.storage.exists(&dir) {
            return Err(Error::io("open", &dir, std::io::Error::from(std::io::ErrorKind::NotFound)));
        }
        let rec = recovery::recover(&dir, &opts, true, false)?;
        let views: Vec<Arc<SegView>> = rec
            .segments
            .iter()
            .map(|s| {
                Arc::new(if s.footer.is_some() {
                    SegView::sealed_from(s)
                } else {
                    SegView::active(s.id, s.path.clone(), s.header.first_lsn, s.header.salt, Arc::clone(&s.file))
                })
            })
            .collect();
        let last = rec.report.last_lsn;
        let inner = Inner {
            dir,
            opts,
            read_only: true,
            state: Mutex::new(CommitState {
                next_lsn: last + 1,
                queue: Vec::new(),
                leader: false,
                written_lsn: last,
                durable_lsn: last,
                poisoned: None,
                closed: false,
            }),
            cond: Condvar::new(),
            writer: Mutex::new(None),
            segs: RwLock::new(views),
            holes: RwLock::new(rec.holes),
            report: rec.report,
            syncs: AtomicU64::new(0),
            ro_tail: Mutex::new(None),
            seek_hint: Mutex::new(None),
            lock: Mutex::new(None),
            dir_identity: None,
        };
        Ok(Journal { inner: Arc::new(inner) })
    }

    /// What recovery found and did when this journal was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.inner.report
    }

    /// The journal folder.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Appends one record; returns its LSN once it is durable (per the durability policy).
    pub fn append(&self, payload: &[u8]) -> Result<Lsn> {
        self.append_batch(&[payload])
    }

    /// Appends several records as one batch with one sync; returns the LSN of the first (the
    /// others follow consecutively). The batch is atomic across crashes: recovery keeps all of
    /// it or none. If any payload is too large, nothing is written.
    pub fn append_batch(&self, payloads: &[&[u8]]) -> Result<Lsn> {
        self.append_owned(payloads.iter().map(|p| p.to_vec()).collect(), None)
    }

    /// [`append_batch`](Self::append_batch), where each payload may be written in a shorter
    /// form `improve` gives (the caller must read either form as the same record). The work of
    /// `improve` is kept off the group commit's path: when no commit is in progress it runs
    /// before the batch is queued (this append will lead, and its sync dominates); otherwise
    /// the batch is queued as given and `improve` runs while it waits for the commit in
    /// progress, its results swapped in only if the batch has not been taken for writing yet;
    /// when half as many batches as there are cores are queued ahead, it does not run at all. So a
    /// leader never waits for `improve` (the next commit can start one `improve` late, when
    /// every waiting thread is running one), and under load some payloads are written as given.
    /// A replacement longer than its payload is ignored, and so is a panic in `improve`.
    pub fn append_batch_improving(&self, payloads: Vec<Vec<u8>>, improve: Improve<'_>) -> Result<Lsn> {
        self.append_owned(payloads, Some(improve))
    }

    fn append_owned(&self, owned: Vec<Vec<u8>>, mut improve: Option<Improve<'_>>) -> Result<Lsn> {
        let inner = &*self.inner;
        if inner.read_only {
            return Err(Error::ReadOnly { path: inner.dir.clone() });
        }
        let max = inner.opts.max_record_size;
        for p in &owned {
            if p.len() > max as usize {
                return Err(Error::RecordTooLarge { len: p.len(), max });
            }
        }
        let mut owned: Vec<Arc<Vec<u8>>> = owned.into_iter().map(Arc::new).collect();
        let n = owned.len() as u64;
        let mut st = inner.state.lock();
        if let Some(f) = improve.filter(|_| !st.leader && st.queue.is_empty()) {
            // No commit in progress: this append will most likely lead the next, whose sync
            // dominates.
            parking_lot::MutexGuard::unlocked(&mut st, || improve_all(&mut owned, f));
            improve = None;
        }
        if let Some(cause) = &st.poisoned {
            return Err(Error::Poisoned { cause: cause.clone() });
        }
        if st.closed {
            return Err(Error::Closed);
        }
        let first = st.next_lsn;
        if n == 0 {
            return Ok(first);
        }
        st.next_lsn += n;
        let my_last = first + n - 1;
        // What `improve` reads while the batch waits (the queued batch may be taken by the
        // leader at any moment; the payloads are shared, not copied).
        let mut originals = improve.filter(|_| st.queue.len() < improve_queue_max()).map(|_| owned.clone());
        st.queue.push(Pending { first, payloads: owned });
        let mut my_error: Option<Error> = None;
        loop {
            if st.written_lsn >= my_last {
                return Ok(first);
            }
            if let Some(cause) = &st.poisoned {
                return Err(my_error.unwrap_or_else(|| Error::Poisoned { cause: cause.clone() }));
            }
            if !st.leader {
                st.leader = true;
                let group = std::mem::take(&mut st.queue);
                let res = parking_lot::MutexGuard::unlocked(&mut st, || self.write_group(group));
                st.leader = false;
                match res {
                    Ok(last) => {
                        st.written_lsn = last;
                        if inner.opts.durability == Durability::Sync {
                            st.durable_lsn = last;
                        }
                    }
                    Err(e) => {
                        error!(dir = %inner.dir.display(), "journal poisoned: {e}");
                        st.poisoned = Some(e.to_string());
                        my_error = Some(e);
                    }
                }
                inner.cond.notify_all();
                continue;
            }
            if let (Some(f), Some(mut mine)) = (improve, originals.take()) {
                parking_lot::MutexGuard::unlocked(&mut st, || improve_all(&mut mine, f));
                if let Some(queued) = st.queue.iter_mut().find(|p| p.first == first) {
                    queued.payloads = mine;
                }
                // The lock was let go: look at the state again before waiting.
                continue;
            }
            inner.cond.wait(&mut st);
        }
    }

    /// Writes a group of batches and syncs once. Called by the leader only.
    fn write_group(&self, group: Vec<Pending>) -> Result<Lsn> {
        let inner = &*self.inner;
        let mut guard = inner.writer.lock();
        let Some(w) = guard.as_mut() else { return Err(Error::Closed) };
        w.buf.clear();
        let mut lsn = w.active.last_lsn;
        for batch in group {
            let size: u64 = batch.payloads.iter().map(|p| frame_len(p.len()) as u64).sum();
            let projected = w.active.data_end + w.buf.len() as u64 + size + FOOTER_LEN as u64;
            let has_records = w.active.records > 0 || !w.buf.is_empty();
            if has_records && projected > inner.opts.segment_size {
                self.flush_buf(w)?;
                self.rotate(w)?;
            }
            let count = batch.payloads.len();
            for (i, p) in batch.payloads.iter().enumerate() {
                lsn += 1;
                let flags = if i + 1 < count { FLAG_BATCH_CONTINUES } else { 0 };
                encode_record(&mut w.buf, w.active.salt, lsn, flags, p.as_slice());
            }
            w.active.records += count as u64;
        }
        self.flush_buf(w)?;
        w.active.last_lsn = lsn;
        if inner.opts.durability == Durability::Sync {
            w.active.file.sync_data().map_err(|e| Error::io("sync", &w.active.path, e))?;
            inner.syncs.fetch_add(1, Ordering::Relaxed);
        }
        // An ack for bytes in a deleted file would be a lie: check that the segment still has a
        // name and the folder is the one we opened (an fstat and a stat per group commit).
        self.check_still_linked(&w.active)?;
        // Shrink a buffer grown by a huge record.
        if w.buf.capacity() > 8 << 20 {
            w.buf = Vec::new();
        }
        Ok(lsn)
    }

    fn check_still_linked(&self, a: &Active) -> Result<()> {
        let inner = &*self.inner;
        if a.file.is_unlinked().map_err(|e| Error::io("stat", &a.path, e))? {
            return Err(Error::Unlinked {
                path: a.path.clone(),
                detail: "the active segment has no name any more".into(),
            });
        }
        if let Some(id) = inner.dir_identity
            && inner.opts.storage.dir_identity(&inner.dir) != Some(id)
        {
            return Err(Error::Unlinked {
                path: inner.dir.clone(),
                detail: "the journal folder was removed or replaced".into(),
            });
        }
        Ok(())
    }

    fn flush_buf(&self, w: &mut Writer) -> Result<()> {
        if w.buf.is_empty() {
            return Ok(());
        }
        let a = &mut w.active;
        let end = a.data_end + w.buf.len() as u64;
        if self.inner.opts.preallocate && end > a.allocated {
            // The size change is persisted by the sync that follows this write (fdatasync
            // persists the size needed to read the data back).
            let target = allocation_target(a.allocated, end, self.inner.opts.segment_size);
            a.file.allocate(target).map_err(|e| Error::io("preallocate", &a.path, e))?;
            a.allocated = target;
        }
        a.file.write_all_at(&w.buf, a.data_end).map_err(|e| Error::io("write", &a.path, e))?;
        a.digest.update(&w.buf);
        a.data_end = end;
        // LSN bookkeeping: the records in buf end at the LSN the caller tracks.
        a.last_lsn = a.first_lsn.saturating_sub(1) + a.records;
        w.buf.clear();
        Ok(())
    }

    /// Seals the active segment (footer, trim, sync) and starts the next one.
    fn rotate(&self, w: &mut Writer) -> Result<()> {
        let inner = &*self.inner;
        let a = &mut w.active;
        let footer =
            Footer { last_lsn: a.last_lsn, record_count: a.records, data_end: a.data_end, digest: a.digest.value() };
        a.file.write_all_at(&footer.encode(a.salt), a.data_end).map_err(|e| Error::io("write footer", &a.path, e))?;
        a.file.set_len(a.data_end + FOOTER_LEN as u64).map_err(|e| Error::io("truncate", &a.path, e))?;
        a.file.sync_data().map_err(|e| Error::io("sync", &a.path, e))?;
        inner.syncs.fetch_add(1, Ordering::Relaxed);
        let next = create_segment(&inner.dir, &inner.opts, a.id + 1, a.last_lsn + 1, footer.digest)?;
        debug!(sealed = a.id, last_lsn = a.last_lsn, records = a.records, next = next.id, "segment rotated");
        let sealed =
            SegView::sealed(a.id, a.path.clone(), a.first_lsn, a.last_lsn, a.data_end, a.salt, Arc::clone(&a.file));
        let new_view = SegView::active(next.id, next.path.clone(), next.first_lsn, next.salt, Arc::clone(&next.file));
        {
            let mut segs = inner.segs.write();
            if let Some(last) = segs.last_mut() {
                *last = Arc::new(sealed);
            }
            segs.push(Arc::new(new_view));
        }
        w.active = next;
        Ok(())
    }

    /// Seals the active segment now (footer, trim, sync) and starts the next one; `false` if it
    /// holds no record. A failure poisons the journal, as a failed append does.
    pub fn seal_active(&self) -> Result<bool> {
        let inner = &*self.inner;
        if inner.read_only {
            return Err(Error::ReadOnly { path: inner.dir.clone() });
        }
        {
            let st = inner.state.lock();
            if let Some(cause) = &st.poisoned {
                return Err(Error::Poisoned { cause: cause.clone() });
            }
            if st.closed {
                return Err(Error::Closed);
            }
        }
        let mut guard = inner.writer.lock();
        let Some(w) = guard.as_mut() else { return Err(Error::Closed) };
        if w.active.records == 0 {
            return Ok(false);
        }
        if let Err(e) = self.rotate(w) {
            error!(dir = %inner.dir.display(), "journal poisoned: {e}");
            inner.state.lock().poisoned = Some(e.to_string());
            inner.cond.notify_all();
            return Err(e);
        }
        Ok(true)
    }

    /// Syncs everything written (useful with [`Durability::Buffered`]; a no-op cost otherwise).
    pub fn sync(&self) -> Result<()> {
        let inner = &*self.inner;
        let written = {
            let st = inner.state.lock();
            if let Some(cause) = &st.poisoned {
                return Err(Error::Poisoned { cause: cause.clone() });
            }
            if st.closed && inner.lock.lock().is_none() {
                return Err(Error::Closed);
            }
            st.written_lsn
        };
        let res = {
            let guard = inner.writer.lock();
            match guard.as_ref() {
                Some(w) => w.active.file.sync_data().map_err(|e| Error::io("sync", &w.active.path, e)),
                None => return Ok(()),
            }
        };
        let mut st = inner.state.lock();
        match res {
            Ok(()) => {
                st.durable_lsn = st.durable_lsn.max(written);
                Ok(())
            }
            Err(e) => {
                st.poisoned = Some(e.to_string());
                inner.cond.notify_all();
                Err(e)
            }
        }
    }

    /// Waits until some record with an LSN at least `lsn` is readable, or `timeout` passes.
    /// Returns the highest readable LSN. Wakes on every commit of this process; it does not see
    /// commits made by other processes (poll [`Journal::refresh`] for those).
    pub fn wait_for(&self, lsn: Lsn, timeout: Duration) -> Lsn {
        let deadline = Instant::now() + timeout;
        let mut st = self.inner.state.lock();
        while st.written_lsn < lsn && st.poisoned.is_none() && !st.closed {
            if self.inner.cond.wait_until(&mut st, deadline).timed_out() {
                break;
            }
        }
        st.written_lsn
    }

    /// Highest LSN readable through [`Journal::iter_from`] (for a read-only handle, as of the
    /// last open or [`Journal::refresh`]).
    pub fn last_lsn(&self) -> Lsn {
        self.inner.state.lock().written_lsn
    }

    /// Highest durable LSN.
    pub fn durable_lsn(&self) -> Lsn {
        self.inner.state.lock().durable_lsn
    }

    /// The largest payload an append accepts ([`Options::max_record_size`](crate::Options)).
    pub fn max_record_size(&self) -> u32 {
        self.inner.opts.max_record_size
    }

    /// Lowest LSN still present.
    pub fn first_lsn(&self) -> Lsn {
        self.inner.segs.read().first().map(|s| s.first_lsn).unwrap_or(1)
    }

    /// For a read-only handle: looks again at the files to see what the writer appended since.
    /// Returns the highest readable LSN.
    pub fn refresh(&self) -> Result<Lsn> {
        if !self.inner.read_only {
            return Ok(self.last_lsn());
        }
        let (views, last) = crate::reader::refresh_views(&self.inner)?;
        *self.inner.segs.write() = views;
        let mut st = self.inner.state.lock();
        st.written_lsn = st.written_lsn.max(last);
        st.durable_lsn = st.written_lsn;
        Ok(st.written_lsn)
    }

    /// Iterates over records from `lsn` (inclusive) to the last readable one. Records are
    /// checked against their checksums as they are read; damage yields an [`Error::Corrupt`]
    /// naming the segment, the offset and the LSNs skipped, then the iterator goes on with the
    /// next valid record (a caller that stops at the first error reads a prefix).
    pub fn iter_from(&self, lsn: Lsn) -> Iter {
        let end = self.last_lsn();
        Iter::new(Arc::clone(&self.inner), lsn, end)
    }

    /// Removes whole sealed segments whose records all have LSNs below `lsn`. The active segment
    /// is never removed. Returns the ids removed. Nothing is removed unless this is called.
    pub fn remove_segments_below(&self, lsn: Lsn) -> Result<Vec<u64>> {
        let inner = &*self.inner;
        if inner.read_only {
            return Err(Error::ReadOnly { path: inner.dir.clone() });
        }
        let _w = inner.writer.lock();
        if inner.state.lock().closed {
            return Err(Error::Closed);
        }
        let mut removed = Vec::new();
        let candidates: Vec<Arc<SegView>> = {
            let segs = inner.segs.read();
            let n = segs.len();
            segs.iter().take(n.saturating_sub(1)).take_while(|s| s.sealed && s.last_lsn < lsn).cloned().collect()
        };
        // Oldest first, each removal made durable before the next: removals left unsynced by a
        // crash may persist in any order, and an older segment surviving a newer one's removal
        // is a gap in the chain that Strict recovery refuses.
        let mut result = Ok(());
        for s in &candidates {
            if let Err(e) = inner.opts.storage.remove_file(&s.path) {
                result = Err(Error::io("remove", &s.path, e));
                break;
            }
            removed.push(s.id);
            if let Err(e) = inner.opts.storage.sync_dir(&inner.dir) {
                result = Err(Error::io("sync folder", &inner.dir, e));
                break;
            }
        }
        if !removed.is_empty() {
            inner.segs.write().retain(|s| !removed.contains(&s.id));
            info!(dir = %inner.dir.display(), below = lsn, segments = ?removed, "retention removed sealed segments");
        }
        result.map(|()| removed)
    }

    /// A snapshot of the journal's state.
    pub fn status(&self) -> JournalStatus {
        let inner = &*self.inner;
        let st = inner.state.lock();
        let segs = inner.segs.read();
        JournalStatus {
            dir: inner.dir.clone(),
            first_lsn: segs.first().map(|s| s.first_lsn).unwrap_or(1),
            durable_lsn: st.durable_lsn,
            written_lsn: st.written_lsn,
            segments: segs.len(),
            active_segment: segs.last().map(|s| s.id).unwrap_or(0),
            poisoned: st.poisoned.clone(),
            read_only: inner.read_only,
            holes: inner.holes.read().len(),
        }
    }

    /// The damaged ranges salvage accepted (`holes.json`), which readers skip, with the LSNs each
    /// lost.
    pub fn holes(&self) -> Vec<Hole> {
        self.inner.holes.read().clone()
    }

    /// Number of data syncs issued so far (for tests and benchmarks).
    pub fn sync_count(&self) -> u64 {
        self.inner.syncs.load(Ordering::Relaxed)
    }

    /// Closes the journal: waits for an in-flight commit, syncs (for `Buffered`) and releases the
    /// writer lock. Later appends fail with [`Error::Closed`]; reads keep working.
    pub fn close(&self) -> Result<()> {
        {
            let mut st = self.inner.state.lock();
            st.closed = true;
            // Batches queued before the close were accepted: let their waiters commit them (one of
            // them becomes leader), and only then give up the lock.
            while st.leader || (!st.queue.is_empty() && st.poisoned.is_none()) {
                self.inner.cond.wait(&mut st);
            }
            self.inner.cond.notify_all();
            if st.poisoned.is_some() {
                drop(st);
                *self.inner.lock.lock() = None;
                return Ok(());
            }
        }
        if !self.inner.read_only && self.inner.opts.durability == Durability::Buffered {
            self.sync()?;
        }
        // Nothing is written after this point (appends fail with `Closed`): another writer may
        // take the folder. Reads through this handle keep working.
        *self.inner.lock.lock() = None;
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.read_only || self.opts.durability != Durability::Buffered {
            return;
        }
        // After a failed write or sync the page cache may no longer hold the data: a retried
        // sync could report success for data that is gone. Never retry it.
        if self.state.get_mut().poisoned.is_some() {
            return;
        }
        if let Some(w) = self.writer.get_mut()
            && let Err(e) = w.active.file.sync_data()
        {
            error!(dir = %self.dir.display(), "final sync on drop failed: {e}");
        }
    }
}

fn check_options(opts: &Options) -> Result<()> {
    if opts.max_record_size == 0 || opts.max_record_size > MAX_RECORD_LIMIT {
        return Err(Error::InvalidOption(format!("max_record_size must be between 1 and {MAX_RECORD_LIMIT}")));
    }
    if opts.segment_size < (SEGMENT_HEADER_LEN + FOOTER_LEN) as u64 * 4 {
        return Err(Error::InvalidOption("segment_size is too small".into()));
    }
    Ok(())
}

/// First preallocation of a segment: a short session costs kilobytes, not a whole segment.
pub(crate) const FIRST_ALLOCATION: u64 = 64 << 10;

/// How far to preallocate a segment that holds `allocated` bytes when `needed` bytes must fit:
/// double the allocation (at least [`FIRST_ALLOCATION`], at most `segment_size`, always enough
/// for `needed`), rounded up to 4 KiB. A segment that fills reaches `segment_size` in about ten
/// steps, so ten appends per segment carry a size change in their sync; a short one stays small.
pub(crate) fn allocation_target(allocated: u64, needed: u64, segment_size: u64) -> u64 {
    if needed <= allocated {
        return allocated;
    }
    let doubled = allocated.saturating_mul(2).max(FIRST_ALLOCATION).min(segment_size);
    doubled.max(needed).saturating_add(4095) & !4095
}

/// Creates a segment: header into a temporary file, preallocate, sync, rename, sync the folder.
fn create_segment(dir: &Path, opts: &Options, id: u64, first_lsn: Lsn, prev_digest: u32) -> Result<Active> {
    let storage = &*opts.storage;
    let name = segment_file_name(id);
    let path = dir.join(&name);
    let tmp = dir.join(format!("{name}.tmp"));
    let salt = random_salt();
    let header = SegmentHeader {
        version: FORMAT_VERSION,
        segment_id: id,
        first_lsn,
        salt,
        prev_digest,
        created_unix_ms: files::now_ms(),
        chain_digest: None,
    };
    let hb = header.encode();
    let file = storage.open(&tmp, OpenMode::CreateNew).map_err(|e| Error::io("create", &tmp, e))?;
    let result = (|| {
        file.write_all_at(&hb, 0).map_err(|e| Error::io("write", &tmp, e))?;
        let mut allocated = SEGMENT_HEADER_LEN as u64;
        if opts.preallocate {
            let target = allocation_target(allocated, allocated + 1, opts.segment_size);
            file.allocate(target).map_err(|e| Error::io("preallocate", &tmp, e))?;
            allocated = target;
        }
        file.sync_data().map_err(|e| Error::io("sync", &tmp, e))?;
        storage.rename(&tmp, &path).map_err(|e| Error::io("rename", &tmp, e))?;
        storage.sync_dir(dir).map_err(|e| Error::io("sync folder", dir, e))?;
        Ok(allocated)
    })();
    let allocated = match result {
        Ok(a) => a,
        Err(e) => {
            // Our own temporary file holds no record; removing it loses nothing. If that fails
            // too, the next open moves it to the quarantine.
            let _ = storage.remove_file(&tmp);
            return Err(e);
        }
    };
    let mut digest = Digest::new(salt);
    digest.update(&hb);
    Ok(Active {
        id,
        path,
        file,
        salt,
        first_lsn,
        data_end: SEGMENT_HEADER_LEN as u64,
        allocated,
        records: 0,
        last_lsn: first_lsn - 1,
        digest,
    })
}

/// Checks a journal folder completely without changing it: every record of every segment, every
/// footer digest and the chain. The report's `problems` lists what is wrong (empty if nothing).
pub fn verify(dir: impl AsRef<Path>, opts: &Options) -> Result<RecoveryReport> {
    let mut o = opts.clone();
    o.sealed_check = crate::options::SealedCheck::Full;
    o.recovery = crate::options::RecoveryMode::Salvage;
    let rec = recovery::recover(dir.as_ref(), &o, true, true)?;
    Ok(rec.report)
}

#[cfg(test)]
mod tests {
    use super::{FIRST_ALLOCATION, allocation_target};

    #[test]
    fn preallocation_starts_small_and_doubles_up_to_the_segment_size() {
        let seg = 64 << 20;
        assert_eq!(allocation_target(0, 1, seg), FIRST_ALLOCATION);
        assert_eq!(allocation_target(FIRST_ALLOCATION, FIRST_ALLOCATION, seg), FIRST_ALLOCATION, "it fits");
        assert_eq!(allocation_target(FIRST_ALLOCATION, FIRST_ALLOCATION + 1, seg), 2 * FIRST_ALLOCATION);
        assert_eq!(allocation_target(48 << 20, (48 << 20) + 1, seg), seg, "never past the segment size");
        assert_eq!(allocation_target(4096, 10 << 20, seg), 10 << 20, "a large batch gets what it needs");
        assert_eq!(allocation_target(seg, seg + 10, seg), seg + 4096, "a batch larger than a segment");
        let mut a = 0;
        let mut steps = 0;
        while a < seg {
            a = allocation_target(a, a + 1, seg);
            steps += 1;
        }
        assert!(steps <= 11, "{steps} growth steps per segment");
    }
}
