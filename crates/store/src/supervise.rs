//! Background threads that cannot die silently: the compactor and the shipper run under a
//! supervisor that catches a panic, reports it (status, log, a note in the store folder for other
//! processes) and restarts the thread after a back-off; and a failure that persists is reported
//! the same way, once.
//!
//! States of one thread, as `health.rs` keeps them:
//!
//! - **healthy**: no panic for `healthy_after` (60 s) and no failure lasting `persistent_after`
//!   (30 s);
//! - **degraded**: a panic less than `healthy_after` ago (or a restart still waiting), or every
//!   attempt failing for `persistent_after` or longer. `status().problems` has a line, the thread's
//!   [`crate::status::ThreadHealth::degraded`] says why, and the role holder writes `<role>.problem` in the store
//!   folder so that `tidelog status` in another process shows it too.
//!
//! A panic restarts the thread after 100 ms, doubling up to 30 s; a run that lasted
//! `healthy_after` before panicking starts the back-off again from 100 ms.

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use parking_lot::{MappedMutexGuard, MutexGuard};
use tracing::{error, info, warn};

use crate::health::Health;
pub(crate) use crate::layout::Role;
use crate::layout::{ThreadNote, clear_thread_note, read_thread_note, write_thread_note};
use crate::state::Inner;
use crate::time::now_ms;

/// A thread's supervision state in the shared state.
/// The thread's health, under the lock of the state that thread writes.
fn health(inner: &Inner, role: Role) -> MappedMutexGuard<'_, Health> {
    match role {
        Role::Compactor => MutexGuard::map(inner.compactor_state.lock(), |s| &mut s.compactor_health),
        Role::Shipper => MutexGuard::map(inner.shipper_state.lock(), |s| &mut s.shipper_health),
    }
}

/// Runs `body` (a thread's loop, which returns when the store stops), restarting it after a
/// panic with a back-off.
///
/// Why a restart after a panic is safe (`AssertUnwindSafe`): the body owns everything it built
/// (the compactor's SQLite connection, batch and positions; the shipper's connection and
/// positions; the role locks), and all of it is dropped while unwinding, before the restart:
/// - SQLite: a transaction open at the panic is rolled back (rusqlite's `Transaction` rolls back
///   when dropped, and SQLite rolls back what a closed connection did not commit). Rows and the
///   applied positions commit in one transaction, so the restarted compactor reads positions that
///   match the rows and replays the rest; replay is idempotent.
/// - The remote index: the shipper's transaction either committed or not; the restarted shipper
///   reads the remote positions again (as after a lost connection).
/// - The role locks (`compactor.lock`, `shipper.lock`) close with their files: another process
///   may take the role during the back-off.
///
/// What outlives the body is [`Inner`], shared with appenders and readers. Its mutexes are
/// `parking_lot`'s (no poisoning) and every critical section the threads run in it only sets
/// status fields and caches, so a panic leaves at worst a stale status field, which
/// [`panicked`] and the next run overwrite. The journal handles are read, except this process's
/// lane, which the compactor seals for an erase pass and trims with retention; the journal crate
/// has no panicking paths (no `unwrap`, no unchecked indexing), so a panic inside its rotation
/// would be a bug there that this supervision cannot make safe.
pub(crate) fn supervise(inner: Arc<Inner>, role: Role, body: impl Fn(&Arc<Inner>)) {
    let t = inner.opts.test_hooks.timings();
    let mut backoff = t.restart_min;
    while !inner.stop.load(Ordering::SeqCst) {
        let started = Instant::now();
        match panic::catch_unwind(AssertUnwindSafe(|| body(&inner))) {
            Ok(()) => return,
            Err(payload) => {
                if started.elapsed() >= t.healthy_after {
                    backoff = t.restart_min;
                }
                panicked(&inner, role, panic_message(payload.as_ref()), backoff);
                drop(payload);
                sleep_unless_stopped(&inner, backoff);
                backoff = (backoff * 2).min(t.restart_max);
            }
        }
    }
}

/// A panic's message (`panic!` with a literal or a formatted string).
fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Records a panic: status, one error line in the log, the note for other processes.
fn panicked(inner: &Inner, role: Role, msg: String, backoff: Duration) {
    let t = inner.opts.test_hooks.timings();
    // The body did not get to its own clean-up.
    let mut h = match role {
        Role::Compactor => {
            let mut sh = inner.compactor_state.lock();
            sh.compactor.running_here = false;
            MutexGuard::map(sh, |s| &mut s.compactor_health)
        }
        Role::Shipper => {
            let mut sh = inner.shipper_state.lock();
            sh.remote.shipping_here = false;
            sh.remote.connected = false;
            MutexGuard::map(sh, |s| &mut s.shipper_health)
        }
    };
    let now = Instant::now();
    h.panics += 1;
    h.last_panic = Some(msg.clone());
    h.last_panic_at = Some(now);
    h.restart_at = Some(now + backoff);
    let panics = h.panics;
    let what = h.degraded(&t).unwrap_or_else(|| format!("panicked: {msg}"));
    h.note_written = true;
    h.healthy_since = None;
    drop(h);
    error!(
        thread = role.name(),
        panics,
        restart_in_ms = backoff.as_millis() as u64,
        "the {} thread panicked: {msg}; restarting it after a back-off",
        role.name()
    );
    note(inner, role, what);
}

/// Records a failed attempt (already counted and logged by the thread); a failure lasting
/// `persistent_after` is logged once at error level and reported as degraded.
pub(crate) fn failed(inner: &Inner, role: Role, e: &str) {
    let t = inner.opts.test_hooks.timings();
    let mut h = health(inner, role);
    let now = Instant::now();
    let since = h.failing_since.get_or_insert((now, now_ms())).0;
    h.healthy_since = None;
    h.last_failure = Some(e.to_string());
    if h.persistent || now.duration_since(since) < t.persistent_after {
        return;
    }
    h.persistent = true;
    h.note_written = true;
    let what = h.degraded(&t).unwrap_or_else(|| e.to_string());
    drop(h);
    error!(
        thread = role.name(),
        failing_s = now.duration_since(since).as_secs(),
        "the {} thread has failed every attempt for {} s (still retrying): {e}",
        role.name(),
        now.duration_since(since).as_secs()
    );
    note(inner, role, what);
}

/// Records a successful attempt: ends a failure, and once the thread is healthy again removes
/// the note it (or an earlier holder of the role) left in the store folder.
pub(crate) fn succeeded(inner: &Inner, role: Role) {
    let t = inner.opts.test_hooks.timings();
    let mut h = health(inner, role);
    let now = Instant::now();
    h.restart_at = None;
    if let Some((since, _)) = h.failing_since.take() {
        if h.persistent {
            info!(
                thread = role.name(),
                "the {} thread works again after failing for {} s",
                role.name(),
                now.duration_since(since).as_secs()
            );
        }
        h.persistent = false;
        h.last_failure = None;
    }
    let healthy_since = *h.healthy_since.get_or_insert(now);
    if h.degraded(&t).is_some() {
        return;
    }
    // Its own note goes at once; one another holder of the role left (a process that died, or
    // that lost the role while panicking) once this thread has run healthy for the healthy
    // period, looked for once a second at most.
    let due = h.note_written
        || (now.duration_since(healthy_since) >= t.healthy_after
            && h.note_checked_at.is_none_or(|c| now.duration_since(c) >= Duration::from_secs(1)));
    if !due {
        return;
    }
    h.note_checked_at = Some(now);
    h.note_written = false;
    drop(h);
    match clear_thread_note(&inner.dir, role) {
        Ok(Some(old)) => info!(
            thread = role.name(),
            "the {} thread is healthy; removed the problem note ({})",
            role.name(),
            old.problem()
        ),
        Ok(None) => {}
        Err(e) => warn!("cannot remove the {} problem note: {e}", role.name()),
    }
}

/// Writes the thread's note for other processes (a failure to write it is logged: the status of
/// this process has the problem anyway).
fn note(inner: &Inner, role: Role, what: String) {
    if inner.opts.read_only {
        return;
    }
    let n = ThreadNote {
        thread: role.name().to_string(),
        pid: std::process::id(),
        lane: inner.lane_name.clone(),
        what,
        time_unix_ms: now_ms(),
    };
    if let Err(e) = write_thread_note(&inner.dir, role, &n) {
        warn!("cannot write the {} problem note: {e}", role.name());
    }
}

/// The notes other store handles left in the store folder (other processes, or another handle
/// in this one). `own_lane` is this handle's lane when it runs threads (not read-only): the notes
/// it wrote are in its status already.
pub(crate) fn notes_of_others(dir: &Path, own_lane: Option<&str>) -> Vec<ThreadNote> {
    [Role::Compactor, Role::Shipper]
        .into_iter()
        .filter_map(|r| read_thread_note(dir, r))
        .filter(|n| n.pid != std::process::id() || Some(n.lane.as_str()) != own_lane)
        .collect()
}

/// Sleeps up to `d`, waking early only when the store stops.
pub(crate) fn sleep_unless_stopped(inner: &Inner, d: Duration) {
    let deadline = Instant::now() + d;
    while !inner.stop.load(Ordering::SeqCst) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(20)));
    }
}
