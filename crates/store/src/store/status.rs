//! The store's view of its own health.

use std::time::{Duration, Instant};

use super::Store;
use crate::layout::{REBUILD_MARKER, lane_names, quarantine_bytes};
use crate::status::{IndexHealth, LaneStatus, StoreStatus};

impl Store {
    /// A snapshot of the store's state; anything degraded is in `problems` (and was logged).
    pub fn status(&self) -> StoreStatus {
        let positions = self.inner.with_reader(|ix| ix.applied_positions());
        let mut lanes = Vec::new();
        let mut unindexed = 0;
        let shared_errors = self.inner.shared.lock().lane_errors.clone();
        for name in lane_names(&self.inner.dir).unwrap_or_default() {
            let own = name == self.inner.lane_name && !self.inner.opts.read_only;
            let (last, err) = match self.inner.lane_journal(&name) {
                Some(j) => (j.last_lsn(), shared_errors.get(&name).cloned()),
                None => (0, Some(shared_errors.get(&name).cloned().unwrap_or_else(|| "cannot be opened".into()))),
            };
            let applied = positions.as_ref().map(|p| p.get(&name).copied().unwrap_or(0));
            unindexed += last.saturating_sub(applied.unwrap_or(0));
            lanes.push(LaneStatus { name, own, last_lsn: last, applied_lsn: applied, error: err });
        }
        let sh = self.inner.shared.lock();
        let poisoned = self.inner.lane.status().poisoned;
        let mut problems = Vec::new();
        if let Some(p) = &poisoned {
            problems.push(format!("this process's lane refuses appends: {p}"));
        }
        for l in &lanes {
            if let Some(e) = &l.error {
                problems.push(format!("lane {} cannot be read: {e}", l.name));
            }
            let damaged = sh.lane_damage.contains_key(&l.name);
            if let Some(a) = l.applied_lsn.filter(|&a| a > l.last_lsn && l.error.is_none() && !damaged) {
                problems.push(format!(
                    "index is ahead of lane {} (applied {a}, lane ends at {}): it is rebuilt by the compactor",
                    l.name, l.last_lsn
                ));
            }
        }
        if self.inner.dir.join(REBUILD_MARKER).exists() {
            problems.push("an index rebuild was requested and is pending".into());
        }
        match &sh.index {
            IndexHealth::Rebuilding { reason, done, total } => {
                problems.push(format!("index is being rebuilt ({done}/{total}): {reason}"))
            }
            IndexHealth::Failed { reason } => problems.push(format!("index unusable: {reason}")),
            _ => {}
        }
        for (lane, list) in &sh.lane_damage {
            for d in list {
                problems.push(format!(
                    "lane {lane} has records that cannot be read (the history shown is incomplete; run `tidelog repair --salvage`): {d}"
                ));
            }
        }
        for (at, why) in &sh.undecodable {
            problems.push(format!("journal record {at} cannot be read (left out of every read): {why}"));
        }
        if sh.undecodable_more > 0 {
            problems.push(format!("{} more journal records cannot be read", sh.undecodable_more));
        }
        if let Some(p) = &sh.erase_pending {
            problems.push(format!("deleted content not erased from disk yet: {p}"));
        }
        if let Some(p) = &sh.read_problem {
            problems.push(p.clone());
        }
        if let Some(e) = &sh.compactor.last_error {
            problems.push(format!("compactor: {e}"));
        }
        let remote = self.inner.opts.remote.as_ref().map(|t| {
            let mut r = sh.remote.clone();
            if r.target.is_empty() {
                r.target = t.describe();
            }
            r
        });
        if let Some(r) = &remote {
            if let Some(e) = &r.last_error {
                problems.push(format!(
                    "remote index {} not reachable or refusing batches (retrying with back-off; appends and the \
                     local index are unaffected): {e}",
                    r.target
                ));
            }
            for l in r.lanes.iter().filter(|l| l.ahead) {
                problems.push(format!(
                    "remote index {} has applied LSN {} of lane {}, but the lane ends at {}: the journal was lost or \
                     replaced; the lane is not shipped (see docs/scale-out.md)",
                    r.target, l.applied_lsn, l.name, l.last_lsn
                ));
            }
        }
        StoreStatus {
            dir: self.inner.dir.clone(),
            lane: self.inner.lane_name.clone(),
            lanes,
            index: sh.index.clone(),
            compactor: sh.compactor.clone(),
            unindexed,
            quarantine_bytes: quarantine_bytes(&self.inner.dir),
            journal_poisoned: poisoned,
            remote,
            problems,
        }
    }

    /// Waits until every entry appended so far (in every lane) is indexed, or `timeout` passes.
    /// Returns whether it caught up. Only useful where some process runs the compactor.
    pub fn wait_indexed(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.status();
            // A lane that lost records to damage may end below what the index applied (the index
            // keeps its copy); nothing more will come of waiting for it.
            let damaged: Vec<String> = self.inner.shared.lock().lane_damage.keys().cloned().collect();
            let caught_up = s.unindexed == 0
                && s.lanes.iter().all(|l| l.applied_lsn.is_some_and(|a| a <= l.last_lsn || damaged.contains(&l.name)))
                && !self.inner.dir.join(REBUILD_MARKER).exists();
            if caught_up {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
