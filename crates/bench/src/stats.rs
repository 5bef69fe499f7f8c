//! Timed writer runs and latency percentiles.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use serde::Serialize;

/// The outcome of one configuration: how many durable messages in how long, and their commit
/// latencies.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// What ran: "raw write+fdatasync", "tidelog journal", "sqlite FULL+FTS", ...
    pub system: String,
    /// Writer threads (or processes).
    pub writers: usize,
    /// Payload (message content) bytes.
    pub payload: usize,
    pub messages: u64,
    pub seconds: f64,
    pub msgs_per_sec: f64,
    /// Payload megabytes (10^6) per second.
    pub mb_per_sec: f64,
    pub p50_us: u32,
    pub p99_us: u32,
    pub p999_us: u32,
    pub max_us: u32,
    /// Data syncs issued (where known), per message.
    pub syncs_per_msg: Option<f64>,
    /// Free-form remark (e.g. busy retries).
    pub note: Option<String>,
    /// Rounds this configuration ran in (interleaved with the other configurations).
    pub rounds: usize,
    /// Every commit latency, sorted (kept for merging rounds; not serialized).
    #[serde(skip)]
    pub latencies: Vec<u32>,
    /// Data syncs issued (where known).
    #[serde(skip)]
    pub syncs: Option<u64>,
}

impl Run {
    pub fn new(system: &str, writers: usize, payload: usize, mut lat: Vec<u32>, elapsed: Duration) -> Run {
        lat.sort_unstable();
        let n = lat.len() as u64;
        let secs = elapsed.as_secs_f64().max(1e-9);
        Run {
            system: system.to_string(),
            writers,
            payload,
            messages: n,
            seconds: secs,
            msgs_per_sec: n as f64 / secs,
            mb_per_sec: (n as f64 * payload as f64) / secs / 1e6,
            p50_us: percentile(&lat, 0.50),
            p99_us: percentile(&lat, 0.99),
            p999_us: percentile(&lat, 0.999),
            max_us: lat.last().copied().unwrap_or(0),
            syncs_per_msg: None,
            note: None,
            rounds: 1,
            latencies: lat,
            syncs: None,
        }
    }

    /// Records the syncs issued during the run.
    pub fn with_syncs(mut self, syncs: u64) -> Run {
        self.syncs = Some(syncs);
        self.syncs_per_msg = Some(syncs as f64 / self.messages.max(1) as f64);
        self
    }

    /// Adds another round of the same configuration: latencies merged, times summed.
    pub fn merge(self, other: Run) -> Run {
        let mut lat = self.latencies;
        lat.extend(other.latencies);
        let el = Duration::from_secs_f64(self.seconds + other.seconds);
        let mut r = Run::new(&self.system, self.writers, self.payload, lat, el);
        r.rounds = self.rounds + other.rounds;
        r.note = other.note.or(self.note);
        if let (Some(a), Some(b)) = (self.syncs, other.syncs) {
            r = r.with_syncs(a + b);
        }
        r
    }
}

/// The `q` quantile of sorted values (nearest rank); 0 when empty.
pub fn percentile<T: Copy + Default>(sorted: &[T], q: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted.get(rank - 1).copied().unwrap_or_default()
}

pub fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// Runs `writers` threads for `duration` (after all are ready). Each thread gets its index and
/// builds its operation with `setup` (opening its own connection, say) before the clock starts;
/// the operation is then called with a running counter until time is up. Returns every commit
/// latency (micros) and the wall time from start to the last thread's end.
pub fn run_threads<S, F>(writers: usize, duration: Duration, setup: S) -> Result<(Vec<u32>, Duration)>
where
    S: Fn(usize) -> Result<F> + Sync,
    F: FnMut(u64) -> Result<()>,
{
    let barrier = Arc::new(Barrier::new(writers + 1));
    let stop = Arc::new(AtomicBool::new(false));
    let setup = &setup;
    std::thread::scope(|scope| -> Result<(Vec<u32>, Duration)> {
        let mut handles = Vec::new();
        for t in 0..writers {
            let barrier = Arc::clone(&barrier);
            let stop = Arc::clone(&stop);
            handles.push(scope.spawn(move || -> Result<Vec<u32>> {
                let op = setup(t);
                barrier.wait();
                let mut op = op?;
                let mut lat = Vec::with_capacity(1 << 14);
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let t0 = Instant::now();
                    op(i)?;
                    lat.push(micros(t0.elapsed()));
                    i += 1;
                }
                Ok(lat)
            }));
        }
        barrier.wait();
        let start = Instant::now();
        std::thread::sleep(duration);
        stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        let mut first_err = None;
        for h in handles {
            match h.join() {
                Ok(Ok(l)) => all.extend(l),
                Ok(Err(e)) => first_err = first_err.or(Some(e)),
                Err(_) => first_err = first_err.or(Some(anyhow!("a writer thread panicked"))),
            }
        }
        let elapsed = start.elapsed();
        match first_err {
            Some(e) => Err(e).context("writer failed"),
            None => Ok((all, elapsed)),
        }
    })
}
