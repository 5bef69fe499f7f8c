//! The store: lanes, appends, reads that never miss history, status, close.

mod append;
mod history;
mod ids;
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
use crate::state::Inner;
pub use append::Appended;
pub use history::HistoryQuery;
pub(crate) use ids::IdClock;

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
    pub fn open(dir: impl AsRef<Path>, opts: StoreOptions) -> Result<Store> {
        let dir = dir.as_ref().to_path_buf();
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
        let last_id = if opts.read_only { 0 } else { last_id_of_lane(&dir, &lane_name, &lane, &opts)? };
        let inner = Arc::new(Inner::new(dir, opts, lane_name, lane, lane_errors, last_id));
        if inner.opts.read_only {
            let mut sh = inner.shared.lock();
            for p in &inner.lane.recovery_report().problems {
                sh.damage(&inner.lane_name, p.clone());
            }
        }
        let handle = if inner.opts.run_compactor && !inner.opts.read_only {
            let c = Arc::clone(&inner);
            Some(
                std::thread::Builder::new()
                    .name("tidelog-compactor".into())
                    .spawn(move || crate::compactor::run(c))
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
                        .spawn(move || crate::remote::run_shipper(c, target))
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
    pub fn close(self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&self) -> Result<()> {
        let started = Instant::now();
        self.inner.stop.store(true, Ordering::SeqCst);
        let res = self.inner.lane.close();
        let deadline = started + self.inner.opts.close_deadline;
        if let Some(h) = self.shipper.lock().take() {
            // Stops at a batch boundary; a batch in flight is committed or not, and either way
            // the next shipper's positions say which. Never waits past the deadline on a network.
            while !h.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            if h.is_finished() {
                let _ = h.join();
            } else {
                warn!("shipper did not reach a batch boundary before the close deadline; leaving it");
            }
        }
        if let Some(h) = self.compactor.lock().take() {
            while !h.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            if !h.is_finished() && crate::compactor::erasure_pending(&self.inner) {
                // Deleted content on disk: the compactor erases it before it lets go (after the
                // batch it is in). Closing waits for that, up to `erase_within`, rather than
                // leave it to the next process.
                let until = Instant::now() + self.inner.opts.erase_within.max(self.inner.opts.close_deadline);
                info!("an erasure is pending: close waits for the compactor to finish it");
                while !h.is_finished() && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            if h.is_finished() {
                let _ = h.join();
            } else {
                warn!(
                    deadline_ms = self.inner.opts.close_deadline.as_millis() as u64,
                    "compactor did not reach a batch boundary before the close deadline; leaving it (the journal holds everything)"
                );
            }
        }
        // Deleted content still on disk is erased before the process goes (or left to the live
        // process that holds the compactor lock): no pending erasure is left behind.
        crate::compactor::erase_before_exit(&self.inner);
        info!(lane = %self.inner.lane_name, elapsed_ms = started.elapsed().as_millis() as u64, "store closed");
        Ok(res?)
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
/// The largest integer id this lane has given: the index's, or any found in the lane's entries
/// the index does not have yet (all of them when there is no readable index).
fn last_id_of_lane(dir: &Path, lane_name: &str, lane: &Journal, opts: &StoreOptions) -> Result<i64> {
    let n = lane_number(lane_name).unwrap_or(0);
    if n > ids::MAX_LANE {
        return Err(Error::TooManyLanes { dir: dir.to_path_buf(), max: ids::MAX_LANE });
    }
    let path = dir.join(INDEX_FILE);
    let (mut last, applied) = match Index::open_read_only(&path, &opts.index)
        .and_then(|ix| Ok((ix.max_num_of_lane(lane_name)?, ix.applied_positions()?)))
    {
        Ok((max, positions)) => (max, positions.get(lane_name).copied().unwrap_or(0)),
        Err(_) => (0, 0),
    };
    for r in lane.iter_from(applied + 1).flatten() {
        match crate::entry::decode_record(n, r.lsn, &r.payload) {
            Ok(crate::entry::Entry::Message(m)) => last = last.max(m.num),
            Ok(crate::entry::Entry::Rewrite(rw)) => {
                last = rw.messages.iter().map(|m| m.num).fold(last.max(rw.op), i64::max);
            }
            Ok(crate::entry::Entry::Delete(d)) => last = last.max(d.op),
            _ => {}
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
