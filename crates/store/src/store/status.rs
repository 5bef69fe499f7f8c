//! The store's view of its own health.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Store;
use crate::layout::{REBUILD_MARKER, lane_names, quarantine_bytes};
use crate::status::{CompactorStatus, IndexHealth, LaneStatus, StoreStatus};
use crate::supervise::{Role, notes_of_others};

/// How many undecodable records the index lists by name in the status (the rest are counted).
const UNDECODABLE_SHOWN: usize = 16;

impl Store {
    /// A snapshot of the store's state; anything degraded is in `problems` (and was logged).
    pub fn status(&self) -> StoreStatus {
        let positions = self.inner.with_reader(|ix| ix.applied_positions());
        // Records left out for good because they do not decode, as the index keeps them.
        let (durable_undecodable, durable_total) =
            self.inner.with_reader(|ix| ix.undecodable_records(UNDECODABLE_SHOWN)).unwrap_or_default();
        let mut lanes = Vec::new();
        let mut unindexed = 0;
        let shared_errors = self.inner.reads.lock().lane_errors.clone();
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
        let timings = self.inner.opts.test_hooks.timings();
        // One lock at a time: what each thread wrote, copied out under its own lock.
        let (lane_damage, reads_undecodable, undecodable_more, read_problem) = {
            let rd = self.inner.reads.lock();
            (rd.lane_damage.clone(), rd.undecodable.clone(), rd.undecodable_more, rd.read_problem.clone())
        };
        let (index, compactor, erase_pending, compactor_health, compactor_persistent) = {
            let cs = self.inner.compactor_state.lock();
            (
                cs.index.clone(),
                cs.compactor.clone(),
                cs.erase_pending.clone(),
                cs.compactor_health.view(&timings),
                cs.compactor_health.persistent(),
            )
        };
        let (remote_status, shipper_health, shipper_persistent) = {
            let ss = self.inner.shipper_state.lock();
            (ss.remote.clone(), ss.shipper_health.view(&timings), ss.shipper_health.persistent())
        };
        let poisoned = self.inner.lane.status().poisoned;
        let mut problems = Vec::new();
        if let Some(p) = &poisoned {
            problems.push(format!("this process's lane refuses appends: {p}"));
        }
        for l in &lanes {
            if let Some(e) = &l.error {
                problems.push(format!("lane {} cannot be read: {e}", l.name));
            }
            let damaged = lane_damage.contains_key(&l.name);
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
        match &index {
            IndexHealth::Rebuilding { reason, done, total } => {
                problems.push(format!("index is being rebuilt ({done}/{total}): {reason}"))
            }
            IndexHealth::Failed { reason } => problems.push(format!("index unusable: {reason}")),
            _ => {}
        }
        for (lane, list) in &lane_damage {
            for d in list {
                problems.push(format!(
                    "lane {lane} has records that cannot be read (the history shown is incomplete; run `tidelog repair --salvage`): {d}"
                ));
            }
        }
        let mut undecodable = reads_undecodable;
        let from_index = durable_undecodable.len() as u64;
        for (lane, lsn, why) in durable_undecodable {
            undecodable.entry(format!("{lane}/{lsn}")).or_insert_with(|| format!("{why}; not indexed"));
        }
        for (at, why) in &undecodable {
            problems.push(format!("journal record {at} cannot be read (left out of every read): {why}"));
        }
        let more = undecodable_more.max(durable_total.saturating_sub(from_index));
        if more > 0 {
            problems.push(format!("{more} more journal records cannot be read"));
        }
        if let Some(p) = &erase_pending {
            problems.push(format!("deleted content not erased from disk yet: {p}"));
        }
        if let Some(p) = read_problem {
            problems.push(p);
        }
        if let Some(d) = &compactor_health.degraded {
            problems.push(format!("compactor thread degraded: {d}"));
        }
        if let Some(e) = compactor.last_error.as_ref().filter(|_| !compactor_persistent) {
            problems.push(format!("compactor: {e}"));
        }
        for (role, handle) in [(Role::Compactor, &self.compactor), (Role::Shipper, &self.shipper)] {
            if !self.inner.stop.load(Ordering::SeqCst) && handle.lock().as_ref().is_some_and(|h| h.is_finished()) {
                problems.push(format!(
                    "the {} thread is not running: a panic its supervisor could not catch ended it (see the log); \
                     reopen the store to start it again",
                    role.name()
                ));
            }
        }
        let own = (!self.inner.opts.read_only).then_some(self.inner.lane_name.as_str());
        for n in notes_of_others(&self.inner.dir, own) {
            problems.push(n.problem());
        }
        let remote = self.inner.opts.remote.as_ref().map(|t| {
            let mut r = remote_status;
            r.health = shipper_health;
            if r.target.is_empty() {
                r.target = t.describe();
            }
            r
        });
        if let Some(r) = &remote {
            if let Some(d) = &r.health.degraded {
                problems.push(format!("remote index {} shipper degraded: {d}", r.target));
            }
            if let Some(e) = r.last_error.as_ref().filter(|_| !shipper_persistent) {
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
            index,
            compactor: CompactorStatus { health: compactor_health, ..compactor },
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
            let damaged: Vec<String> = self.inner.reads.lock().lane_damage.keys().cloned().collect();
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
