//! The shipper: a thread, separate from the compactor, that feeds a remote index from its own
//! positions (read from the remote index, never from SQLite), one batch per transaction.
//!
//! One process per store ships at a time (`shipper.lock`). Every failure drops the connection
//! and retries after a back-off (100 ms doubling to 5 s) that appends do not cut short; appends
//! and the local index never wait for it. A lane whose remote position is ahead of the journal
//! is reported and left alone (never re-applied in silence).

use std::collections::BTreeMap;
use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tidelog_journal::Lsn;
use tracing::{debug, error, info, warn};

use crate::compactor::{Batch, pause, read_batch};
use crate::error::Result;
use crate::layout::{lane_names, store_id, try_lock_shipper};
use crate::state::Inner;
use crate::status::RemoteLane;
use crate::supervise::{self, Role, sleep_unless_stopped};
use crate::target::{IndexTarget, RemoteTarget};
use crate::time::now_ms;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Every lane here against the remote positions, and the remote lanes missing here.
pub(crate) fn lanes_view(inner: &Inner, positions: &BTreeMap<String, Lsn>) -> Result<(Vec<RemoteLane>, Vec<String>)> {
    let names = lane_names(&inner.dir)?;
    let mut lanes = Vec::with_capacity(names.len());
    for name in &names {
        // A lane that cannot be read is reported by the status; it is not shipped meanwhile.
        let Some(j) = inner.lane_journal(name) else { continue };
        let last = j.last_lsn();
        let applied = positions.get(name).copied().unwrap_or(0);
        lanes.push(RemoteLane {
            name: name.clone(),
            last_lsn: last,
            applied_lsn: applied,
            lag: last.saturating_sub(applied),
            ahead: applied > last,
        });
    }
    let missing = positions.keys().filter(|l| !names.contains(l)).cloned().collect();
    Ok((lanes, missing))
}

pub(crate) fn ahead_lanes(lanes: &[RemoteLane]) -> Vec<String> {
    lanes.iter().filter(|l| l.ahead).map(|l| l.name.clone()).collect()
}

/// Reads the next batch for the remote index and moves `positions` past undecodable records.
pub(crate) fn next_batch(
    inner: &Inner,
    positions: &mut BTreeMap<String, Lsn>,
    next_lane: &mut usize,
    exclude: &[String],
) -> Result<Batch> {
    let batch = read_batch(inner, positions, *next_lane, exclude)?;
    *next_lane = next_lane.wrapping_add(1);
    for (lane, lsn) in &batch.skipped {
        let p = positions.entry(lane.clone()).or_insert(0);
        *p = (*p).max(*lsn);
    }
    Ok(batch)
}

pub(crate) fn advance(positions: &mut BTreeMap<String, Lsn>, batch: &Batch) {
    for (lane, lsn, _) in &batch.entries {
        let p = positions.entry(lane.clone()).or_insert(0);
        *p = (*p).max(*lsn);
    }
}

/// The shipper thread's body (run under `supervise`, which restarts it after a panic); returns
/// when the store stops.
pub(crate) fn run(inner: &Arc<Inner>, target: &Arc<dyn RemoteTarget>) {
    let describe = target.describe();
    inner.shipper_state.lock().remote.target = describe.clone();
    let mut lock: Option<File> = None;
    let mut conn: Option<Box<dyn IndexTarget>> = None;
    let mut id: Option<String> = None;
    let mut positions: BTreeMap<String, Lsn> = BTreeMap::new();
    let mut backoff = BACKOFF_MIN;
    let mut next_lane = 0usize;
    let mut reported_ahead: Vec<String> = Vec::new();
    let fail = |e: &dyn std::fmt::Display, backoff: &mut Duration| {
        warn!(target = %describe, retry_in_ms = backoff.as_millis() as u64, "remote index: {e}");
        {
            let mut sh = inner.shipper_state.lock();
            sh.remote.connected = false;
            sh.remote.retries += 1;
            sh.remote.last_error = Some(e.to_string());
            sh.remote.retry_at_unix_ms = Some(now_ms() + backoff.as_millis() as u64);
        }
        supervise::failed(inner, Role::Shipper, &e.to_string());
        sleep_unless_stopped(inner, *backoff);
        *backoff = (*backoff * 2).min(BACKOFF_MAX);
    };
    while !inner.stop.load(Ordering::SeqCst) {
        let Some(store) = id.clone() else {
            match store_id(&inner.dir, true) {
                Ok(Some(s)) => {
                    inner.shipper_state.lock().remote.store_id = Some(s.clone());
                    id = Some(s);
                }
                Ok(None) => fail(&"the store has no id", &mut backoff),
                Err(e) => fail(&e, &mut backoff),
            }
            continue;
        };
        if lock.is_none() {
            match try_lock_shipper(&inner.dir) {
                Ok(Some(f)) => {
                    info!(lane = %inner.lane_name, target = %describe, "this process took the shipper role");
                    inner.shipper_state.lock().remote.shipping_here = true;
                    lock = Some(f);
                }
                Ok(None) => {
                    pause(inner, inner.opts.poll_interval.max(Duration::from_millis(500)));
                    continue;
                }
                Err(e) => {
                    fail(&e, &mut backoff);
                    continue;
                }
            }
        }
        let c = match conn.as_mut() {
            Some(c) => c,
            None => {
                let opened = target.connect().and_then(|mut c| {
                    let p = c.applied_positions(&store)?;
                    Ok((c, p))
                });
                match opened {
                    Ok((c, p)) => {
                        info!(target = %describe, store_id = %store, positions = ?p, "connected to the remote index");
                        positions = p;
                        let mut sh = inner.shipper_state.lock();
                        sh.remote.connected = true;
                        sh.remote.last_error = None;
                        sh.remote.retry_at_unix_ms = None;
                        drop(sh);
                        conn.insert(c)
                    }
                    Err(e) => {
                        fail(&e, &mut backoff);
                        continue;
                    }
                }
            }
        };
        let lanes = match lanes_view(inner, &positions) {
            Ok((lanes, _missing)) => lanes,
            Err(e) => {
                fail(&e, &mut backoff);
                continue;
            }
        };
        let ahead = ahead_lanes(&lanes);
        for l in lanes.iter().filter(|l| l.ahead) {
            if reported_ahead.contains(&l.name) {
                continue;
            }
            error!(
                lane = %l.name, applied = l.applied_lsn, last = l.last_lsn, target = %describe,
                "remote index is ahead of the journal (the journal was lost or replaced); not shipping this lane"
            );
            reported_ahead.push(l.name.clone());
        }
        {
            let mut sh = inner.shipper_state.lock();
            sh.remote.lag = Some(lanes.iter().map(|l| l.lag).sum());
            sh.remote.lanes = lanes;
        }
        let batch = match next_batch(inner, &mut positions, &mut next_lane, &ahead) {
            Ok(b) => b,
            Err(e) => {
                fail(&e, &mut backoff);
                continue;
            }
        };
        if batch.entries.is_empty() {
            backoff = BACKOFF_MIN;
            supervise::succeeded(inner, Role::Shipper);
            pause(inner, inner.opts.poll_interval);
            continue;
        }
        inner.opts.test_hooks.shipper_panic_point();
        let started = Instant::now();
        match c.apply_batch(&store, &batch.entries) {
            Ok(stats) => {
                advance(&mut positions, &batch);
                backoff = BACKOFF_MIN;
                supervise::succeeded(inner, Role::Shipper);
                debug!(
                    entries = batch.entries.len(),
                    skipped = stats.skipped,
                    ms = started.elapsed().as_millis() as u64,
                    "batch shipped to the remote index"
                );
                let mut sh = inner.shipper_state.lock();
                sh.remote.batches += 1;
                sh.remote.entries_applied += batch.entries.len() as u64 - stats.skipped;
                sh.remote.last_error = None;
                for l in sh.remote.lanes.iter_mut() {
                    l.applied_lsn = positions.get(&l.name).copied().unwrap_or(0).max(l.applied_lsn);
                    l.lag = l.last_lsn.saturating_sub(l.applied_lsn);
                }
            }
            Err(e) => {
                // The transaction either committed or not; the positions read on reconnecting say which.
                conn = None;
                fail(&e, &mut backoff);
            }
        }
    }
    let mut sh = inner.shipper_state.lock();
    sh.remote.shipping_here = false;
    sh.remote.connected = false;
    drop(sh);
    drop(lock);
    debug!("shipper stopped");
}
