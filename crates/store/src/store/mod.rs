//! The store: lanes, appends, reads that never miss history, status, close.

mod append;
mod hermes;
mod history;
mod read;
mod remote;
mod search;
mod status;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tidelog_journal::{Journal, Lsn};
use tracing::{error, info, warn};

use crate::error::{Error, Result};
use crate::index::Index;
use crate::layout::{
    INDEX_FILE, LANES_DIR, create_private_dir, lane_dir, lane_name, lane_names, lane_number, request_rebuild, store_id,
};
use crate::options::StoreOptions;
use crate::sequence::Sequence;
use crate::state::Inner;
use crate::status::{CloseReport, ThreadReport};
use crate::supervise::{Role, supervise};

/// Lane numbers that fit a first-release id (`entry::legacy_num` keeps 10 bits of it).
const MAX_LANE: u64 = (1 << 10) - 1;
pub use append::Appended;
pub use history::HistoryQuery;
pub use read::HistoryItem;

/// The message store a gateway embeds. See the crate documentation for an example.
#[derive(Debug)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
    compactor: Mutex<Option<JoinHandle<()>>>,
    shipper: Mutex<Option<JoinHandle<()>>>,
}

impl Store {
    /// Opens (creating if needed) the store in `dir`: claims a lane (a journal of its own) for
    /// this process, running its recovery, and starts the background compactor.
    ///
    /// Several processes may open the same folder at once; each appends to its own lane and
    /// none waits for another's sync. Exactly one runs the compactor at a time.
    pub fn open(dir: impl AsRef<Path>, mut opts: StoreOptions) -> Result<Store> {
        let dir = dir.as_ref().to_path_buf();
        if opts.retention == crate::Retention::Off && opts.index.journal_text.is_none() {
            // Long texts are kept once, in the journal (docs/design.md "One copy of the text");
            // with retention, which removes segments, the index keeps every text.
            opts.index.journal_text = Some(dir.clone());
        }
        if opts.read_only {
            return Self::open_read_only(dir, opts);
        }
        create_private_dir(&dir)?;
        create_private_dir(&dir.join(LANES_DIR))?;
        let jopts = opts.journal_options();
        let mut lane_errors = BTreeMap::new();
        let mut claimed = None;
        let existing = lane_names(&dir)?;
        for name in &existing {
            match Journal::open(lane_dir(&dir, name), jopts.clone()) {
                Ok(j) => {
                    claimed = Some((name.clone(), j));
                    break;
                }
                // Held by its writer, or (for seconds) by an erase overwriting records in it.
                Err(tidelog_journal::Error::Locked { .. } | tidelog_journal::Error::EraseBusy { .. }) => continue,
                Err(e) if e.is_corruption() => {
                    error!(lane = %name, "lane cannot be opened and is left for `tidelog repair --salvage`; this process appends to a new lane: {e}");
                    lane_errors.insert(name.clone(), e.to_string());
                }
                Err(e) => return Err(e.into()),
            }
        }
        let (lane_name, lane) = match claimed {
            Some(c) => c,
            None => {
                let mut n = existing.iter().filter_map(|s| lane_number(s)).max().unwrap_or(0);
                loop {
                    n += 1;
                    let name = lane_name(n);
                    match Journal::open(lane_dir(&dir, &name), jopts.clone()) {
                        Ok(j) => break (name, j),
                        Err(tidelog_journal::Error::Locked { .. }) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        };
        Self::start(dir, opts, lane_name, lane, lane_errors)
    }

    /// Read-only open: a read-only handle on the first readable lane stands for "this process's
    /// lane" (nothing is appended through it); no compactor.
    fn open_read_only(dir: PathBuf, opts: StoreOptions) -> Result<Store> {
        let mut lane_errors = BTreeMap::new();
        let mut first = None;
        for name in lane_names(&dir)? {
            match Journal::open_read_only(lane_dir(&dir, &name), crate::state::read_lane_options(&opts)) {
                Ok(j) => {
                    first = Some((name, j));
                    break;
                }
                Err(e) => {
                    error!(lane = %name, "lane cannot be read: {e}");
                    lane_errors.insert(name, e.to_string());
                }
            }
        }
        let Some((lane_name, lane)) = first else { return Err(Error::NotAStore { path: dir }) };
        Self::start(dir, opts, lane_name, lane, lane_errors)
    }

    fn start(
        dir: PathBuf,
        opts: StoreOptions,
        lane_name: String,
        lane: Journal,
        lane_errors: BTreeMap<String, String>,
    ) -> Result<Store> {
        let rep = lane.recovery_report();
        if !rep.is_clean() {
            warn!(lane = %lane_name, problems = ?rep.problems, "lane recovered with repairs");
        }
        if !opts.read_only {
            if !rep.salvaged.is_empty() {
                restore_salvaged(&dir, &lane_name, &lane, &opts.index);
            }
            check_index_not_ahead(&dir, &lane_name, lane.last_lsn(), &opts.index)?;
            // Created once, by the first writer (remote indexes key this store's rows by it).
            store_id(&dir, true)?;
        }
        info!(dir = %dir.display(), lane = %lane_name, last_lsn = lane.last_lsn(), "store opened");
        let seq = if opts.read_only {
            None
        } else {
            if lane_number(&lane_name).is_some_and(|n| n > MAX_LANE) {
                return Err(Error::TooManyLanes { dir: dir.to_path_buf(), max: MAX_LANE });
            }
            Some(Sequence::open(&dir, || order_floor(&dir, &lane_name, &lane, &opts))?)
        };
        let inner = Arc::new(Inner::new(dir, opts, lane_name, lane, lane_errors, seq));
        if inner.opts.read_only {
            let mut sh = inner.reads.lock();
            for p in &inner.lane.recovery_report().problems {
                sh.damage(&inner.lane_name, p.clone());
            }
        }
        let handle = if inner.opts.run_compactor && !inner.opts.read_only {
            let c = Arc::clone(&inner);
            Some(
                std::thread::Builder::new()
                    .name("tidelog-compactor".into())
                    .spawn(move || supervise(c, Role::Compactor, crate::compactor::run))
                    .map_err(|e| Error::io("spawn compactor thread", PathBuf::new(), e))?,
            )
        } else {
            None
        };
        let shipper = match inner.opts.remote.clone() {
            Some(target) if !inner.opts.read_only => {
                let c = Arc::clone(&inner);
                Some(
                    std::thread::Builder::new()
                        .name("tidelog-shipper".into())
                        .spawn(move || supervise(c, Role::Shipper, |i| crate::remote::run_shipper(i, &target)))
                        .map_err(|e| Error::io("spawn shipper thread", PathBuf::new(), e))?,
                )
            }
            _ => None,
        };
        Ok(Store { inner, compactor: Mutex::new(handle), shipper: Mutex::new(shipper) })
    }

    fn writable(&self) -> Result<()> {
        if self.inner.opts.read_only {
            return Err(Error::ReadOnly { path: self.inner.dir.clone() });
        }
        Ok(())
    }

    /// The store folder.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// This process's lane name.
    pub fn lane(&self) -> &str {
        &self.inner.lane_name
    }

    /// The journal of this process's lane. Appending through it bypasses the store (tests only).
    #[doc(hidden)]
    pub fn journal(&self) -> &Journal {
        &self.inner.lane
    }

    /// What recovery found when this process's lane was opened.
    pub fn recovery_report(&self) -> &tidelog_journal::RecoveryReport {
        self.inner.lane.recovery_report()
    }

    /// Closes the store within the configured deadline: stops the compactor at a batch boundary
    /// (it does not wait for it to catch up: the journal already holds everything), runs a final
    /// checkpoint if the compactor stopped in time, and syncs the lane. Nothing acknowledged is
    /// lost whatever happens here.
    ///
    /// The [`CloseReport`] says whether a background thread panicked while the store was open
    /// (each panic was caught, logged and the thread restarted; a panic is a bug to report) and
    /// whether each thread stopped before the deadline; [`CloseReport::is_clean`] is false in
    /// either case, and the problems were logged at error level. An `Err` means the lane could
    /// not be synced or closed.
    pub fn close(self) -> Result<CloseReport> {
        self.shutdown()
    }

    fn shutdown(&self) -> Result<CloseReport> {
        let started = Instant::now();
        self.inner.stop.store(true, Ordering::SeqCst);
        let res = self.inner.lane.close();
        let deadline = started + self.inner.opts.close_deadline;
        // The shipper stops at a batch boundary; a batch in flight is committed or not, and either
        // way the next shipper's positions say which. Never waits past the deadline on a network.
        let shipper = self.shipper.lock().take().map(|h| self.stop_thread(h, Role::Shipper, deadline));
        let compactor = self.compactor.lock().take().map(|h| self.stop_thread(h, Role::Compactor, deadline));
        let report = CloseReport { compactor, shipper };
        for p in report.problems() {
            error!(lane = %self.inner.lane_name, "{p}");
        }
        // Deleted content still on disk is erased before the process goes (or left to the live
        // process that holds the compactor lock): no pending erasure is left behind.
        crate::compactor::erase_before_exit(&self.inner);
        info!(lane = %self.inner.lane_name, elapsed_ms = started.elapsed().as_millis() as u64, "store closed");
        res?;
        Ok(report)
    }

    /// Waits for a background thread until `deadline`, and reports it.
    fn stop_thread(&self, h: JoinHandle<()>, role: Role, deadline: Instant) -> ThreadReport {
        while !h.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        if !h.is_finished() && role == Role::Compactor && crate::compactor::erasure_pending(&self.inner) {
            // Deleted content on disk: the compactor erases it before it lets go (after the
            // batch it is in). Closing waits for that, up to `erase_within`, rather than leave
            // it to the next process.
            let until = Instant::now() + self.inner.opts.erase_within.max(self.inner.opts.close_deadline);
            info!("an erasure is pending: close waits for the compactor to finish it");
            while !h.is_finished() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        let stopped = h.is_finished();
        let escaped = stopped && h.join().is_err();
        if !stopped {
            warn!(
                deadline_ms = self.inner.opts.close_deadline.as_millis() as u64,
                "{} did not reach a batch boundary before the close deadline; leaving it (the journal holds everything)",
                role.name()
            );
        }
        let (mut panics, mut last_panic) = match role {
            Role::Compactor => self.inner.compactor_state.lock().compactor_health.panics(),
            Role::Shipper => self.inner.shipper_state.lock().shipper_health.panics(),
        };
        if escaped {
            panics += 1;
            last_panic = Some("the thread ended by a panic outside its supervisor".into());
        }
        ThreadReport { panics, last_panic, stopped }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if !self.inner.stop.load(Ordering::SeqCst) {
            let _ = self.shutdown();
        }
    }
}

/// Before this process appends anything to the lane it claimed: if the index says more of this
/// lane was applied than the lane holds (records lost to a power cut after another process's
/// compactor indexed them from the page cache), new appends would reuse those LSNs and the index
/// would skip them. Ask the compactor to rebuild the index first.
/// The largest position of the store's order anything holds: the index (message ids and ops),
/// and every entry of every lane the index does not hold yet (all of them when there is no
/// readable index). The floor of the shared sequence when no other process has the store open:
/// every acknowledged write is in a lane, so no id is ever given twice, whatever happened to the
/// sequence file.
fn order_floor(dir: &Path, own_name: &str, own: &Journal, opts: &StoreOptions) -> Result<i64> {
    let path = dir.join(INDEX_FILE);
    let (mut last, applied) = Index::open_read_only(&path, &opts.index)
        .and_then(|ix| Ok((ix.max_position()?, ix.applied_positions()?)))
        .unwrap_or_default();
    for name in lane_names(dir)? {
        let other;
        let j = if name == own_name {
            own
        } else {
            match Journal::open_read_only(lane_dir(dir, &name), crate::state::read_lane_options(opts)) {
                Ok(j) => {
                    other = j;
                    &other
                }
                Err(e) => {
                    // Its ids are also in the index (if it was ever applied); a lane no one can
                    // read is reported by reads and `verify`.
                    warn!(lane = %name, "lane cannot be read to recover the store's order: {e}");
                    continue;
                }
            }
        };
        let n = lane_number(&name).unwrap_or(0);
        let from = applied.get(&name).copied().unwrap_or(0) + 1;
        for r in j.iter_from(from).flatten() {
            match crate::entry::decode_record(n, r.lsn, &r.payload) {
                Ok(crate::entry::Entry::Message(m)) => last = last.max(m.num),
                Ok(crate::entry::Entry::Rewrite(rw)) => {
                    last = rw.messages.iter().map(|m| m.num).fold(last.max(rw.op), i64::max);
                }
                Ok(crate::entry::Entry::Delete(d)) => last = last.max(d.op),
                _ => {}
            }
        }
    }
    Ok(last)
}

/// A lane opened in `Salvage` mode lost records just now: before anything can replace the index,
/// append again (to a new lane, marked restored) the messages it still holds from those LSNs,
/// including any beyond the lane's new end. Failures are logged: the index itself is kept.
fn restore_salvaged(dir: &Path, lane_name: &str, lane: &Journal, opts: &crate::index::IndexOptions) {
    let mut lost: Vec<(String, u64, u64)> =
        lane.recovery_report().lost_lsns().into_iter().map(|(a, b)| (lane_name.to_string(), a, b)).collect();
    let path = dir.join(INDEX_FILE);
    if let Ok(applied) = Index::open_read_only(&path, opts).and_then(|ix| ix.applied_positions())
        && let Some(&pos) = applied.get(lane_name).filter(|&&p| p > lane.last_lsn())
    {
        lost.push((lane_name.to_string(), lane.last_lsn() + 1, pos));
    }
    match crate::admin::restore_lost(dir, &path, &lost, &|_| true) {
        Ok(r) if !r.restored.is_empty() => {
            warn!(lane = %lane_name, restored = r.restored.len(), to = ?r.lane, "restored from the index messages this lane lost to damage")
        }
        Ok(_) => {}
        Err(e) => error!(lane = %lane_name, "cannot restore from the index what this lane lost: {e}"),
    }
}

fn check_index_not_ahead(dir: &Path, lane: &str, last: Lsn, opts: &crate::index::IndexOptions) -> Result<()> {
    let path = dir.join(INDEX_FILE);
    if !path.exists() {
        return Ok(());
    }
    // An index that cannot be read here is the compactor's to check and repair.
    let Ok(applied) = Index::open_read_only(&path, opts).and_then(|ix| ix.applied_positions()) else {
        return Ok(());
    };
    let Some(&pos) = applied.get(lane).filter(|&&p| p > last) else { return Ok(()) };
    let reason = format!(
        "index has applied LSN {pos} of {lane}, but the lane ends at {last} (records lost after they were indexed)"
    );
    error!(lane = %lane, applied = pos, last, "index is ahead of the journal; asking the compactor to rebuild it");
    request_rebuild(dir, &reason)
}
