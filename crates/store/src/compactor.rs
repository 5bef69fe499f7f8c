//! The background compactor: follows every lane and applies its entries to the SQLite index in
//! batches, one transaction per batch that also stores each lane's applied position. Exactly one
//! process runs it at a time (`compactor.lock`); another takes over when that one exits or dies.
//! It also checks the index when it starts, and moves a damaged index to the quarantine and
//! rebuilds it from the journal.

use std::collections::BTreeMap;
use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tracing::{debug, error, info, warn};

use crate::entry;
use crate::entry::Entry;
use crate::error::{Error, Result};
use crate::index::{Index, IndexError, Undecodable};
use crate::layout::{
    INDEX_FILE, clear_rebuild_request, erase_markers, lane_dir, lane_names, lane_number, quarantine_index_files,
    rebuild_requested, try_lock_compactor,
};
use crate::options::Retention;
use crate::state::Inner;
use crate::status::IndexHealth;
use crate::supervise::{self, Role, sleep_unless_stopped};
use crate::time::now_ms;

/// Sleeps up to `d`, waking early when the store stops. Wakes on this process's appends too.
pub(crate) fn pause(inner: &Inner, d: Duration) {
    let wake_at = inner.lane.last_lsn() + 1;
    let deadline = Instant::now() + d;
    while !inner.stop.load(Ordering::SeqCst) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        if inner.lane.wait_for(wake_at, left.min(Duration::from_millis(50))) >= wake_at {
            return;
        }
    }
}

/// Journal entries read for one batch.
pub(crate) struct Batch {
    /// `(lane, lsn, entry)`, each lane's in LSN order.
    pub entries: Vec<(String, u64, Entry)>,
    /// Where each entry's record is: segment id and offset (see `Index::apply_batch_marked`).
    pub places: Vec<(u64, u64)>,
    /// Their payload bytes.
    pub bytes: usize,
    /// Per lane, the last record left out: it did not decode, or damage lost it (logged and in
    /// the status).
    pub skipped: BTreeMap<String, u64>,
    /// The records that did not decode: lane, LSN, why.
    pub undecodable: Vec<Undecodable>,
}

/// Reads the next batch above `positions`, lanes in turn from `first_lane` (so that one busy
/// lane cannot starve the others), leaving out the lanes in `exclude`. Stops at the batch
/// limits of the options. Shared by the compactor and the remote shipper.
pub(crate) fn read_batch(
    inner: &Inner,
    positions: &BTreeMap<String, u64>,
    first_lane: usize,
    exclude: &[String],
) -> Result<Batch> {
    let started = Instant::now();
    let o = &inner.opts;
    let names = lane_names(&inner.dir)?;
    let mut out =
        Batch { entries: Vec::new(), places: Vec::new(), bytes: 0, skipped: BTreeMap::new(), undecodable: Vec::new() };
    let n = names.len();
    'lanes: for k in 0..n {
        let Some(name) = names.get((first_lane + k) % n.max(1)) else { continue };
        if exclude.contains(name) {
            continue;
        }
        let Some(j) = inner.lane_journal(name) else { continue };
        let from = positions.get(name).copied().unwrap_or(0) + 1;
        for rec in j.iter_from(from) {
            match rec {
                Ok(r) => {
                    match entry::decode_record(lane_number(name).unwrap_or(0), r.lsn, &r.payload) {
                        Ok(e) => {
                            out.bytes += r.payload.len();
                            out.entries.push((name.clone(), r.lsn, e));
                            out.places.push((r.segment, r.offset));
                        }
                        Err(e) => {
                            inner.reads.lock().undecodable(name, r.lsn, format!("{e}; not indexed"));
                            out.skipped.insert(name.clone(), r.lsn);
                            out.undecodable.push((name.clone(), r.lsn, e.to_string()));
                        }
                    }
                    if out.entries.len() >= o.batch_max_entries
                        || out.bytes >= o.batch_max_bytes
                        || started.elapsed() >= o.batch_max_time
                    {
                        break 'lanes;
                    }
                }
                // Damage: reported; the records after it are applied (the lost ones may still
                // be in the index, which keeps them).
                Err(e) if e.is_corruption() => {
                    // The LSNs the reader skipped are gone from the journal: move past them
                    // (reported), as for an undecodable record.
                    if let tidelog_journal::Error::Corrupt { last_lost_lsn, .. } = &e
                        && *last_lost_lsn != u64::MAX
                    {
                        let p = out.skipped.entry(name.clone()).or_insert(0);
                        *p = (*p).max(*last_lost_lsn);
                    }
                    inner.reads.lock().damage(name, e.to_string());
                }
                Err(e) => {
                    error!(lane = %name, "lane cannot be read past LSN {}: {e}", from - 1);
                    inner.reads.lock().lane_errors.insert(name.clone(), e.to_string());
                    break;
                }
            }
        }
    }
    Ok(out)
}

/// The compactor thread's body (run under `supervise`, which restarts it after a panic);
/// returns when the store stops.
pub(crate) fn run(inner: &Arc<Inner>) {
    let mut lock: Option<File> = None;
    let mut state: Option<Compactor> = None;
    let mut backoff = Duration::from_millis(20);
    let mut forced: Option<String> = None;
    while !inner.stop.load(Ordering::SeqCst) {
        if lock.is_none() {
            match try_lock_compactor(&inner.dir) {
                Ok(Some(f)) => {
                    info!(lane = %inner.lane_name, "this process took the compactor role");
                    inner.compactor_state.lock().compactor.running_here = true;
                    lock = Some(f);
                }
                Ok(None) => {
                    pause(inner, inner.opts.poll_interval);
                    continue;
                }
                Err(e) => {
                    error!("cannot take the compactor lock: {e}");
                    inner.compactor_state.lock().compactor.last_error = Some(format!("compactor lock: {e}"));
                    supervise::failed(inner, Role::Compactor, &format!("compactor lock: {e}"));
                    pause(inner, Duration::from_secs(1));
                    continue;
                }
            }
        }
        if let Some(reason) = rebuild_requested(&inner.dir) {
            // Another process found the index ahead of its lane: rebuild before anything else.
            state = None;
            match quarantine_index(inner, &reason) {
                Ok(()) => {
                    forced = Some(reason);
                    // Our own control file, not data: done with it once the index is aside.
                    if let Err(e) = clear_rebuild_request(&inner.dir) {
                        failed(inner, &e, &mut backoff);
                        continue;
                    }
                }
                Err(e) => {
                    failed(inner, &e, &mut backoff);
                    continue;
                }
            }
        }
        if state.is_none() {
            match Compactor::start(inner, forced.take()) {
                Ok(c) => state = Some(c),
                Err(e) => {
                    failed(inner, &e, &mut backoff);
                    continue;
                }
            }
        }
        let Some(c) = state.as_mut() else { continue };
        match c.step(inner) {
            Ok(0) => {
                backoff = Duration::from_millis(20);
                supervise::succeeded(inner, Role::Compactor);
                c.idle(inner);
                pause(inner, inner.opts.poll_interval);
            }
            Ok(_) => {
                backoff = Duration::from_millis(20);
                supervise::succeeded(inner, Role::Compactor);
                // A compactor that is never idle (appends without pause) still meets the erase
                // deadline.
                c.erase_if_due(inner);
            }
            Err(Error::Index(e)) if e.is_corruption() => {
                error!("index reported corruption while compacting: {e}");
                let reason = format!("SQLite reported corruption while compacting: {e}");
                state = None;
                if let Err(e) = quarantine_index(inner, &reason) {
                    failed(inner, &e, &mut backoff);
                } else {
                    inner.compactor_state.lock().compactor.index_quarantined += 1;
                }
            }
            Err(e) => failed(inner, &e, &mut backoff),
        }
    }
    if let Some(c) = state.as_mut() {
        // A deletion whose content is on disk is not left behind: erased now, before the lock
        // goes (`Store::close` waits for this up to `close_deadline`; a process that exits
        // before it ends leaves the markers, and the next compactor erases at once).
        if c.erase_pending_since(inner).is_some() {
            c.catch_up(inner);
            c.erase_now(inner);
        }
        c.checkpoint(inner);
    }
    inner.compactor_state.lock().compactor.running_here = false;
    drop(lock);
    debug!("compactor stopped");
}

fn failed(inner: &Inner, e: &Error, backoff: &mut Duration) {
    warn!(retry_in_ms = backoff.as_millis() as u64, "compactor attempt failed: {e}");
    {
        let mut sh = inner.compactor_state.lock();
        sh.compactor.retries += 1;
        sh.compactor.last_error = Some(e.to_string());
    }
    supervise::failed(inner, Role::Compactor, &e.to_string());
    // A back-off is not cut short by appends: a failing index (full disk, busy) would otherwise
    // be retried, and warned about, once per append.
    sleep_unless_stopped(inner, *backoff);
    *backoff = (*backoff * 2).min(Duration::from_secs(5));
}

/// Moves the index file (and its `-wal` and `-shm`) to the quarantine with a note.
pub(crate) fn quarantine_index(inner: &Inner, reason: &str) -> Result<()> {
    quarantine_index_files(&inner.dir, reason)?;
    let mut sh = inner.compactor_state.lock();
    sh.index = IndexHealth::Rebuilding { reason: reason.to_string(), done: 0, total: 0 };
    Ok(())
}

/// Checks an index file: opens, `quick_check`, FTS5 integrity-check, and applied positions not
/// ahead of the journal. Returns the problems found (empty if healthy).
pub(crate) fn check_index(index: &Index, last_lsn_of: &dyn Fn(&str) -> Option<u64>) -> Result<Vec<String>> {
    let mut problems = index.check()?;
    for (lane, pos) in index.applied_positions()? {
        match last_lsn_of(&lane) {
            Some(last) if pos > last => {
                problems.push(format!("applied position {pos} of {lane} is ahead of its journal (last LSN {last})"))
            }
            None => problems.push(format!("index refers to lane {lane}, which this store does not have")),
            _ => {}
        }
    }
    Ok(problems)
}

struct Compactor {
    index: Index,
    positions: BTreeMap<String, u64>,
    last_checkpoint: Instant,
    rebuilding: Option<String>,
    next_lane: usize,
    /// After an incomplete erase pass: not before this.
    erase_retry_at: Option<Instant>,
    /// The wait before the next retry of an incomplete pass (doubles).
    erase_backoff: Duration,
    /// When the pending erasure was last looked for.
    erase_checked: Option<Instant>,
    /// Whether the texts the index kept only in this lane's records were copied into it (with
    /// retention, once per compactor: new texts stay in the index then).
    texts_inlined: bool,
    /// Segments whose long records were compressed in place (lane, segment id), with their
    /// modification time then.
    squeezed: BTreeMap<(String, u64), std::time::SystemTime>,
    /// When that pass last ran.
    squeezed_at: Option<Instant>,
    /// A full merge of the full-text indexes in progress (one step per idle poll).
    full_merge: Option<crate::index::FullMerge>,
    /// When a full merge was last looked for.
    merge_checked: Option<Instant>,
}

impl Compactor {
    fn start(inner: &Inner, forced: Option<String>) -> Result<Compactor> {
        let path = inner.dir.join(INDEX_FILE);
        let existed = path.exists();
        let last_lsn_of = |lane: &str| -> Option<u64> {
            if !lane_dir(&inner.dir, lane).exists() {
                return None;
            }
            // A lane that cannot be read right now, or that lost records to damage, is not
            // evidence against the index: the index may hold the only copy of what it lost.
            Some(match inner.lane_journal(lane) {
                Some(j) if !crate::state::lane_has_damage(&j) => j.last_lsn(),
                _ => u64::MAX,
            })
        };
        let mut rebuilding = forced;
        let index = match Index::open(&path, &inner.opts.index) {
            Ok(ix) => match check_index(&ix, &last_lsn_of) {
                Ok(p) if p.is_empty() => ix,
                Ok(p) => {
                    drop(ix);
                    let reason = format!("index check failed: {}", p.join("; "));
                    quarantine_index(inner, &reason)?;
                    rebuilding = Some(reason);
                    Index::open(&path, &inner.opts.index)?
                }
                Err(Error::Index(e)) if e.is_corruption() => {
                    drop(ix);
                    let reason = format!("index check failed: {e}");
                    quarantine_index(inner, &reason)?;
                    rebuilding = Some(reason);
                    Index::open(&path, &inner.opts.index)?
                }
                Err(e) => return Err(e),
            },
            Err(e) if is_unusable(&e) && existed => {
                let reason = format!("index cannot be opened: {e}");
                quarantine_index(inner, &reason)?;
                rebuilding = Some(reason);
                Index::open(&path, &inner.opts.index)?
            }
            Err(e) => return Err(e.into()),
        };
        if rebuilding.is_some() {
            inner.compactor_state.lock().compactor.index_quarantined += 1;
        }
        let positions = index.applied_positions()?;
        {
            let mut sh = inner.compactor_state.lock();
            sh.index = match &rebuilding {
                Some(r) => IndexHealth::Rebuilding { reason: r.clone(), done: 0, total: 0 },
                None => IndexHealth::Healthy,
            };
            sh.compactor.last_error = None;
        }
        info!(positions = ?positions, rebuilding = rebuilding.is_some(), "compactor started");
        Ok(Compactor {
            index,
            positions,
            last_checkpoint: Instant::now(),
            rebuilding,
            next_lane: 0,
            erase_retry_at: None,
            erase_backoff: ERASE_RETRY_FIRST,
            erase_checked: None,
            texts_inlined: false,
            squeezed: BTreeMap::new(),
            squeezed_at: None,
            full_merge: None,
            merge_checked: None,
        })
    }

    /// Applies one batch; returns the number of entries applied (0 when caught up).
    fn step(&mut self, inner: &Inner) -> Result<usize> {
        let started = Instant::now();
        let o = &inner.opts;
        if o.test_hooks.compactor_failure_due() {
            let e = std::io::Error::other("injected failure (test hook)");
            return Err(Error::io("apply a batch", inner.dir.join(INDEX_FILE), e));
        }
        let Batch { entries: batch, places, bytes, skipped, undecodable } =
            read_batch(inner, &self.positions, self.next_lane, &[])?;
        self.next_lane = self.next_lane.wrapping_add(1);
        if !batch.is_empty() {
            o.test_hooks.compactor_panic_point();
        }
        if !batch.is_empty() || !undecodable.is_empty() {
            // Records that do not decode are skipped for good, and recorded in the transaction
            // that stores the positions past them, so that every later open still reports them.
            self.index.apply_batch_marked(&batch, &places, &undecodable)?;
            inner.compactor_state.lock().compactor.undecodable += undecodable.len() as u64;
        }
        for (lane, lsn) in skipped {
            let p = self.positions.entry(lane).or_insert(0);
            *p = (*p).max(lsn);
        }
        if batch.is_empty() {
            self.finish_rebuild(inner);
            return Ok(0);
        }
        let applied = batch.len();
        for (lane, lsn, _) in &batch {
            let p = self.positions.entry(lane.clone()).or_insert(0);
            *p = (*p).max(*lsn);
        }
        debug!(entries = applied, bytes, ms = started.elapsed().as_millis() as u64, "batch applied");
        let mut sh = inner.compactor_state.lock();
        sh.compactor.batches += 1;
        sh.compactor.entries_applied += applied as u64;
        sh.compactor.last_error = None;
        if let IndexHealth::Rebuilding { done, total, .. } = &mut sh.index {
            *done = self.positions.values().sum();
            *total = (*total).max(*done);
        }
        drop(sh);
        if o.retention == Retention::AfterIndexed {
            let mut own = self.positions.get(&inner.lane_name).copied().unwrap_or(0);
            if o.remote.is_some() {
                // The remote index needs these records too: keep them until it has them.
                own = own.min(inner.shipper_state.lock().remote.applied_lsn(&inner.lane_name).unwrap_or(0));
            }
            // Texts the index keeps only in these records (written before retention was turned
            // on, or by a rebuild) are copied into the index first: it keeps the only copy.
            if !self.texts_inlined {
                let lane = lane_number(&inner.lane_name).unwrap_or(0);
                let n = self.index.inline_texts(lane)?;
                if n > 0 {
                    info!(texts = n, "retention: texts kept in the journal copied into the index first");
                }
                self.texts_inlined = true;
            }
            // synchronous=FULL: the commit above is durable, so these records have a copy.
            match inner.lane.remove_segments_below(own + 1) {
                Ok(v) if !v.is_empty() => info!(segments = ?v, "retention removed indexed segments"),
                Ok(_) => {}
                Err(e) => warn!("retention failed: {e}"),
            }
        }
        Ok(applied)
    }

    fn finish_rebuild(&mut self, inner: &Inner) {
        if let Some(reason) = self.rebuilding.take() {
            info!(entries = self.positions.values().sum::<u64>(), "index rebuilt from the journal ({reason})");
            inner.compactor_state.lock().index = IndexHealth::Healthy;
        }
    }

    /// Idle-time work: periodic checkpoint and a small FTS merge step; long records compressed
    /// in place (at most every 50 polls).
    fn idle(&mut self, inner: &Inner) {
        self.erase_if_due(inner);
        if inner.opts.compression && self.squeezed_at.is_none_or(|t| t.elapsed() >= inner.opts.poll_interval * 50) {
            self.squeezed_at = Some(Instant::now());
            crate::admin::compress_sealed(&inner.dir, &mut self.squeezed);
        }
        if self.last_checkpoint.elapsed() >= inner.opts.checkpoint_interval {
            self.checkpoint(inner);
            if let Err(e) = self.index.optimize_step() {
                warn!("FTS merge step failed: {e}");
            }
        }
        self.merge_step(inner);
    }

    /// Keeps the full-text indexes merged (docs/design.md "Keeping the full-text indexes
    /// merged"): looks at most every 50 polls whether a full merge is due, then does one
    /// bounded step of it per idle poll (a step is a transaction of its own; appends go on, and
    /// the compactor applies them between steps).
    fn merge_step(&mut self, inner: &Inner) {
        if self.full_merge.is_none() {
            if self.merge_checked.is_some_and(|t| t.elapsed() < inner.opts.poll_interval * 50) {
                return;
            }
            self.merge_checked = Some(Instant::now());
            match self.index.full_merge_due() {
                Ok(Some(m)) => {
                    info!("merging the full-text indexes fully (they grew since they last were)");
                    self.full_merge = Some(m);
                }
                Ok(None) => return,
                Err(e) => {
                    warn!("cannot tell whether the full-text indexes need merging: {e}");
                    return;
                }
            }
        }
        let Some(m) = self.full_merge.as_mut() else { return };
        match self.index.full_merge_step(m) {
            Ok(false) => {}
            Ok(true) => {
                info!("full-text indexes merged");
                self.full_merge = None;
            }
            Err(e) => {
                warn!("FTS full merge step failed (tried again later): {e}");
                self.full_merge = None;
            }
        }
    }

    /// Runs an erase pass once the oldest pending deletion (an `erase.pending-*` marker, or the
    /// time the index recorded when it applied one) has waited half of `erase_within`: the
    /// other half is the room for the pass itself and a retry. An incomplete pass is retried
    /// after 250 ms, doubling up to a quarter of `erase_within`. Looks at most every
    /// `poll_interval`.
    fn erase_if_due(&mut self, inner: &Inner) {
        if self.erase_checked.is_some_and(|t| t.elapsed() < inner.opts.poll_interval) {
            return;
        }
        self.erase_checked = Some(Instant::now());
        let Some(since) = self.erase_pending_since(inner) else { return };
        let half = u64::try_from(inner.opts.erase_within.as_millis() / 2).unwrap_or(u64::MAX);
        if now_ms() < since.saturating_add(half) || self.erase_retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        self.erase_now(inner);
    }

    /// Applies every entry the index lacks (for a pass at exit).
    fn catch_up(&mut self, inner: &Inner) {
        loop {
            match self.step(inner) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) => {
                    warn!("cannot bring the index up to date before erasing: {e}");
                    return;
                }
            }
        }
    }

    /// Runs an erase pass; returns whether it completed.
    fn erase_now(&mut self, inner: &Inner) -> bool {
        match crate::admin::erase_store(&inner.dir, Some(&inner.lane)) {
            Ok(rep) if rep.is_complete() => {
                self.checkpoint(inner);
                inner.compactor_state.lock().erase_pending = None;
                self.erase_retry_at = None;
                self.erase_backoff = ERASE_RETRY_FIRST;
                true
            }
            Ok(rep) => {
                warn!(pending = ?rep.pending, retry_ms = self.erase_backoff.as_millis() as u64, "erasure incomplete; retrying");
                inner.compactor_state.lock().erase_pending = Some(rep.pending.join("; "));
                self.erase_retry_later(inner);
                false
            }
            Err(e) => {
                warn!(retry_ms = self.erase_backoff.as_millis() as u64, "erase pass failed: {e}");
                inner.compactor_state.lock().erase_pending = Some(format!("erase pass failed: {e}"));
                self.erase_retry_later(inner);
                false
            }
        }
    }

    fn erase_retry_later(&mut self, inner: &Inner) {
        self.erase_retry_at = Some(Instant::now() + self.erase_backoff);
        let cap = (inner.opts.erase_within / 4).max(ERASE_RETRY_FIRST);
        self.erase_backoff = (self.erase_backoff * 2).min(cap);
    }

    /// Since when (unix ms) a deletion waits to be erased, if one does.
    fn erase_pending_since(&self, inner: &Inner) -> Option<u64> {
        let marker = erase_markers(&inner.dir).first().map(|(_, ms)| *ms);
        let index = match self.index.erase_pending_since_ms() {
            Ok(s) => s,
            Err(e) => {
                warn!("cannot read the pending erasure: {e}");
                None
            }
        };
        marker.into_iter().chain(index).min()
    }

    fn checkpoint(&mut self, inner: &Inner) {
        match self.index.checkpoint_truncate() {
            Ok(s) => {
                debug!(busy = s.busy, log = s.log_pages, done = s.checkpointed_pages, "wal_checkpoint(TRUNCATE)");
                inner.compactor_state.lock().compactor.last_checkpoint_unix_ms = Some(now_ms());
            }
            Err(e) => warn!("checkpoint failed: {e}"),
        }
        self.last_checkpoint = Instant::now();
    }
}

/// The first retry of an incomplete erase pass.
const ERASE_RETRY_FIRST: Duration = Duration::from_millis(250);

/// Whether a deletion waits to be erased from disk: a marker of one, or the index's record of
/// one it applied.
pub(crate) fn erasure_pending(inner: &Inner) -> bool {
    if !erase_markers(&inner.dir).is_empty() {
        return true;
    }
    let path = inner.dir.join(INDEX_FILE);
    path.exists()
        && Index::open_read_only(&path, &inner.opts.index)
            .and_then(|ix| ix.erase_pending_since_ms())
            .is_ok_and(|s| s.is_some())
}

/// Called when a store closes (its compactor thread stopped): a deletion whose content is still
/// on disk is not left behind. If this process can take the compactor lock, it applies what the
/// index lacks and runs the erase pass now, then looks again (a process that could not take the
/// lock while this one held it left its marker for it); if another process holds the lock, that
/// process is alive and erases within its deadline (and does the same when it exits). What a
/// pass cannot finish keeps its marker, and the next process that takes the compactor role runs
/// it at once (its deadline has passed).
pub(crate) fn erase_before_exit(inner: &Inner) {
    if inner.opts.read_only {
        return;
    }
    for _ in 0..4 {
        if !erasure_pending(inner) {
            return;
        }
        let lock = match try_lock_compactor(&inner.dir) {
            Ok(Some(l)) => l,
            Ok(None) => {
                debug!("an erasure is pending; the process holding the compactor lock erases it");
                return;
            }
            Err(e) => {
                warn!("an erasure is pending but the compactor lock cannot be taken: {e}");
                return;
            }
        };
        let started = Instant::now();
        let complete = match Compactor::start(inner, None) {
            Ok(mut c) => {
                c.catch_up(inner);
                c.erase_now(inner)
            }
            Err(e) => {
                warn!("cannot open the index to bring it up to date before erasing ({e}); erasing the files anyway");
                matches!(crate::admin::erase_store(&inner.dir, Some(&inner.lane)), Ok(r) if r.is_complete())
            }
        };
        if complete {
            info!(ms = started.elapsed().as_millis() as u64, "erased deleted content before exiting");
        } else {
            warn!("erasure incomplete at exit; the next process to take the compactor role finishes it at once");
        }
        drop(lock);
        if !complete {
            return;
        }
    }
}

fn is_unusable(e: &IndexError) -> bool {
    e.is_corruption() || matches!(e, IndexError::NewerSchema { .. } | IndexError::OlderSchema { .. })
}
