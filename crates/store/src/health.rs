//! The health of the background threads (the compactor and the shipper): what the supervisor
//! (`supervise.rs`) records about panics and failures, when a thread counts as degraded, the
//! timings, and the test hooks that inject faults. Below `state` and `options`, which hold it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::status::ThreadHealth;

/// How fast a panicked thread is restarted and when a thread counts as healthy again or as
/// failing persistently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timings {
    /// First restart delay after a panic.
    pub restart_min: Duration,
    /// Longest restart delay (the delay doubles at each panic).
    pub restart_max: Duration,
    /// A thread that ran this long without a panic is healthy again (its back-off restarts
    /// from `restart_min`, its status line goes).
    pub healthy_after: Duration,
    /// Every attempt failing for this long is a persistent failure (logged once at error level,
    /// reported as degraded).
    pub persistent_after: Duration,
}

const DEFAULT_TIMINGS: Timings = Timings {
    restart_min: Duration::from_millis(100),
    restart_max: Duration::from_secs(30),
    healthy_after: Duration::from_secs(60),
    persistent_after: Duration::from_secs(30),
};

/// Fault points and shorter timings for tests of the supervision. Not part of the API: the
/// default injects nothing and keeps the documented timings.
#[doc(hidden)]
#[derive(Clone, Default)]
pub struct TestHooks(Arc<Hooks>);

#[derive(Default)]
struct Hooks {
    compactor_panics: AtomicU32,
    compactor_failures: AtomicU32,
    shipper_panics: AtomicU32,
    timings: Mutex<Option<Timings>>,
}

impl std::fmt::Debug for TestHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestHooks")
    }
}

impl TestHooks {
    /// The next `n` batches the compactor has read panic before they are applied.
    pub fn panic_compactor(&self, n: u32) {
        self.0.compactor_panics.store(n, Ordering::SeqCst);
    }

    /// The next `n` compactor attempts fail with an I/O error.
    pub fn fail_compactor(&self, n: u32) {
        self.0.compactor_failures.store(n, Ordering::SeqCst);
    }

    /// The next `n` batches the shipper has read panic before they are shipped.
    pub fn panic_shipper(&self, n: u32) {
        self.0.shipper_panics.store(n, Ordering::SeqCst);
    }

    /// Replaces the supervision timings (restart back-off, healthy period, persistence).
    pub fn set_timings(
        &self,
        restart_min: Duration,
        restart_max: Duration,
        healthy_after: Duration,
        persistent_after: Duration,
    ) {
        *self.0.timings.lock() = Some(Timings { restart_min, restart_max, healthy_after, persistent_after });
    }

    pub(crate) fn timings(&self) -> Timings {
        self.0.timings.lock().unwrap_or(DEFAULT_TIMINGS)
    }

    /// Panics if a compactor panic is due (a test asked for one).
    pub(crate) fn compactor_panic_point(&self) {
        if take(&self.0.compactor_panics) {
            panic!("injected compactor panic (test hook)");
        }
    }

    /// Whether a compactor failure is due (a test asked for one).
    pub(crate) fn compactor_failure_due(&self) -> bool {
        take(&self.0.compactor_failures)
    }

    /// Panics if a shipper panic is due (a test asked for one).
    pub(crate) fn shipper_panic_point(&self) {
        if take(&self.0.shipper_panics) {
            panic!("injected shipper panic (test hook)");
        }
    }
}

/// Takes one from a positive counter.
fn take(n: &AtomicU32) -> bool {
    n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1)).is_ok()
}

/// One thread's supervision state (in the store's shared state; `supervise.rs` updates it).
#[derive(Debug, Default)]
pub(crate) struct Health {
    pub(crate) panics: u64,
    pub(crate) last_panic: Option<String>,
    pub(crate) last_panic_at: Option<Instant>,
    /// While a panicked thread waits to be restarted.
    pub(crate) restart_at: Option<Instant>,
    /// Since when every attempt has failed (monotonic, and ms since the epoch).
    pub(crate) failing_since: Option<(Instant, u64)>,
    pub(crate) last_failure: Option<String>,
    /// The current failure was found persistent (and logged).
    pub(crate) persistent: bool,
    /// This process wrote the thread's note in the store folder and has not removed it.
    pub(crate) note_written: bool,
    /// When the role holder last looked for a note to remove.
    pub(crate) note_checked_at: Option<Instant>,
    /// Since when every attempt has succeeded (no panic or failure since).
    pub(crate) healthy_since: Option<Instant>,
}

impl Health {
    /// Why the thread is degraded right now; `None` when healthy.
    /// (A failure counts once [`failed`] found it persistent, so that the status and the log
    /// agree.)
    pub(crate) fn degraded(&self, t: &Timings) -> Option<String> {
        let now = Instant::now();
        let mut why = Vec::new();
        if let Some(at) = self.last_panic_at.filter(|at| now.duration_since(*at) < t.healthy_after) {
            let state = match self.restart_at.filter(|r| *r > now) {
                Some(r) => format!("restarting in {} ms", r.duration_since(now).as_millis()),
                None => "restarted".to_string(),
            };
            why.push(format!(
                "panicked ({} time(s) since the store was opened, the last {} s ago: {}); {state}",
                self.panics,
                now.duration_since(at).as_secs(),
                self.last_panic.as_deref().unwrap_or("?")
            ));
        }
        if let Some((since, _)) = self.failing_since.filter(|_| self.persistent) {
            why.push(format!(
                "every attempt has failed for {} s: {}",
                now.duration_since(since).as_secs(),
                self.last_failure.as_deref().unwrap_or("?")
            ));
        }
        (!why.is_empty()).then(|| why.join("; "))
    }

    /// The public view.
    pub(crate) fn view(&self, t: &Timings) -> ThreadHealth {
        ThreadHealth {
            panics: self.panics,
            last_panic: self.last_panic.clone(),
            failing_since_unix_ms: self.failing_since.map(|(_, ms)| ms),
            degraded: self.degraded(t),
        }
    }

    /// Every attempt has failed for `persistent_after` or longer.
    pub(crate) fn persistent(&self) -> bool {
        self.persistent
    }

    /// Panics so far and the last one's message.
    pub(crate) fn panics(&self) -> (u64, Option<String>) {
        (self.panics, self.last_panic.clone())
    }
}
