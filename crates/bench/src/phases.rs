//! The measured phases. Each works in a fresh folder under the run's work folder and removes it
//! afterwards, so the disk holds one phase's files at a time.

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use tidelog::{Entry, Index, IndexOptions, Message, Store, StoreOptions};
use tidelog_journal::{Durability, Journal, Options};

use crate::sqlite;
use crate::stats::{Run, micros, percentile, run_threads};
use crate::workload;

/// Messages each writer cycles through (distinct contents, so FTS does real work).
const POOL: usize = 256;

/// A fresh, empty folder for one phase.
pub fn fresh(root: &Path, name: &str) -> Result<PathBuf> {
    let p = root.join(name);
    if p.exists() {
        fs::remove_dir_all(&p).with_context(|| format!("remove {}", p.display()))?;
    }
    fs::create_dir_all(&p).with_context(|| format!("create {}", p.display()))?;
    Ok(p)
}

fn cleanup(p: &Path) {
    let _ = fs::remove_dir_all(p);
}

/// The raw loop: one writer, one file, `write` + `fdatasync` per payload (the journal's
/// encoded messages).
pub fn raw_loop(root: &Path, payload: usize, dur: Duration) -> Result<Run> {
    let dir = fresh(root, "raw")?;
    let payloads = workload::encoded(1, &workload::messages(1, POOL, payload));
    let path = dir.join("raw.log");
    let (lat, el) = run_threads(1, dur, |_| {
        let mut f = OpenOptions::new().create(true).append(true).open(&path)?;
        let payloads = &payloads;
        Ok(move |i: u64| -> Result<()> {
            let p = &payloads[i as usize % payloads.len()];
            f.write_all(p)?;
            f.sync_data()?;
            Ok(())
        })
    })?;
    cleanup(&dir);
    let n = lat.len() as u64;
    Ok(Run::new("raw write+fdatasync", 1, payload, lat, el).with_syncs(n))
}

/// `writers` threads calling `Journal::append` with encoded messages.
pub fn journal_writers(root: &Path, writers: usize, payload: usize, dur: Duration) -> Result<Run> {
    let dir = fresh(root, "journal")?;
    let journal = Journal::open(&dir, Options::default())?;
    let pools: Vec<Vec<Vec<u8>>> =
        (0..writers).map(|t| workload::encoded(t as u64, &workload::messages(t as u64, POOL, payload))).collect();
    let (lat, el) = run_threads(writers, dur, |t| {
        let j = journal.clone();
        let pool = &pools[t];
        Ok(move |i: u64| -> Result<()> {
            j.append(&pool[i as usize % pool.len()])?;
            Ok(())
        })
    })?;
    let syncs = journal.sync_count();
    journal.close()?;
    drop(journal);
    cleanup(&dir);
    Ok(Run::new("tidelog journal", writers, payload, lat, el).with_syncs(syncs))
}

/// `writers` threads calling `Store::append` (one message each time).
pub fn store_writers(root: &Path, writers: usize, payload: usize, dur: Duration, compactor: bool) -> Result<Run> {
    store_writers_with(
        root,
        writers,
        payload,
        dur,
        StoreOptions { run_compactor: compactor, ..StoreOptions::default() },
    )
}

/// [`store_writers`] with the store opened with `opts`.
pub fn store_writers_with(
    root: &Path,
    writers: usize,
    payload: usize,
    dur: Duration,
    opts: StoreOptions,
) -> Result<Run> {
    let compactor = opts.run_compactor;
    let dir = fresh(root, "store")?;
    let store = Store::open(&dir, opts)?;
    let pools: Vec<Vec<Message>> = (0..writers).map(|t| workload::messages(t as u64, POOL, payload)).collect();
    let (lat, el) = run_threads(writers, dur, |t| {
        let store = &store;
        let pool = &pools[t];
        Ok(move |i: u64| -> Result<()> {
            store.append(pool[i as usize % pool.len()].clone())?;
            Ok(())
        })
    })?;
    let syncs = store.journal().sync_count();
    let st = store.status();
    store.close()?;
    cleanup(&dir);
    let name = if compactor { "tidelog store + compactor" } else { "tidelog store" };
    let mut r = Run::new(name, writers, payload, lat, el).with_syncs(syncs);
    if compactor {
        r.note = Some(format!(
            "{} of {} indexed by the end of the run",
            st.compactor.entries_applied,
            st.compactor.entries_applied + st.unindexed
        ));
    }
    Ok(r)
}

/// What a writer process reports to its parent.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChildReport {
    pub messages: u64,
    pub seconds: f64,
    pub syncs: u64,
}

/// Child side of [`store_processes`]: opens the store, waits for the common start, appends for
/// `seconds`, writes latencies (u32 LE micros) to `out` and the report to stdout.
pub fn child_store_writer(dir: &Path, payload: usize, seconds: f64, start_at_ms: u64, out: &Path) -> Result<()> {
    let store = Store::open(dir, StoreOptions { run_compactor: false, ..StoreOptions::default() })?;
    let pool = workload::messages(u64::from(std::process::id()), POOL, payload);
    let now = unix_ms();
    if start_at_ms > now {
        std::thread::sleep(Duration::from_millis(start_at_ms - now));
    }
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let mut lat: Vec<u32> = Vec::with_capacity(1 << 16);
    let mut i = 0;
    while Instant::now() < end {
        let t0 = Instant::now();
        store.append(pool[i % pool.len()].clone())?;
        lat.push(micros(t0.elapsed()));
        i += 1;
    }
    let seconds = start.elapsed().as_secs_f64();
    let syncs = store.journal().sync_count();
    store.close()?;
    let bytes: Vec<u8> = lat.iter().flat_map(|v| v.to_le_bytes()).collect();
    fs::write(out, bytes).with_context(|| format!("write {}", out.display()))?;
    let rep = ChildReport { messages: lat.len() as u64, seconds, syncs };
    println!("{}", serde_json::to_string(&rep)?);
    Ok(())
}

pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// `procs` processes (this binary, re-executed) each appending to the same store folder.
pub fn store_processes(root: &Path, procs: usize, payload: usize, dur: Duration) -> Result<Run> {
    let dir = fresh(root, "procs")?;
    let exe = std::env::current_exe()?;
    let start_at = unix_ms() + 1500;
    let mut children = Vec::new();
    for p in 0..procs {
        let out = dir.join(format!("lat-{p}.bin"));
        let child = Command::new(&exe)
            .arg("child-store-writer")
            .arg("--dir")
            .arg(dir.join("store"))
            .arg("--payload")
            .arg(payload.to_string())
            .arg("--seconds")
            .arg(dur.as_secs_f64().to_string())
            .arg("--start-at-ms")
            .arg(start_at.to_string())
            .arg("--out")
            .arg(&out)
            .stdout(Stdio::piped())
            .spawn()
            .context("start a writer process")?;
        children.push((child, out));
    }
    let mut lat = Vec::new();
    let mut secs: f64 = 0.0;
    let mut syncs = 0;
    for (child, out) in children {
        let o = child.wait_with_output()?;
        if !o.status.success() {
            bail!("writer process failed: {}", o.status);
        }
        let rep: ChildReport = serde_json::from_slice(&o.stdout).context("read a writer process's report")?;
        secs = secs.max(rep.seconds);
        syncs += rep.syncs;
        let bytes = fs::read(&out)?;
        lat.extend(bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])));
    }
    cleanup(&dir);
    Ok(Run::new("tidelog store, processes", procs, payload, lat, Duration::from_secs_f64(secs)).with_syncs(syncs))
}

/// `writers` SQLite connections (threads), each a Hermes-style writer.
pub fn sqlite_writers(root: &Path, mode: sqlite::Mode, writers: usize, payload: usize, dur: Duration) -> Result<Run> {
    let dir = fresh(root, "sqlite")?;
    let path = dir.join("state.db");
    let pools: Vec<Vec<Message>> = (0..writers).map(|t| workload::messages(t as u64, POOL, payload)).collect();
    let mut sessions: Vec<String> = pools.iter().flatten().map(|m| m.session_id.clone()).collect();
    sessions.sort();
    sessions.dedup();
    sqlite::create(&path, mode, &sessions)?;
    let (lat, el) = run_threads(writers, dur, |t| {
        let mut w = sqlite::Writer::new(&path, mode)?;
        let pool = &pools[t];
        Ok(move |i: u64| -> Result<()> { w.append(&pool[i as usize % pool.len()]) })
    })?;
    cleanup(&dir);
    Ok(Run::new(mode.name(), writers, payload, lat, el))
}

/// Compaction into the FTS index against SQLite's trigger-per-row path, on the same messages.
#[derive(Debug, Clone, Serialize)]
pub struct Compaction {
    pub payload: usize,
    pub messages: usize,
    /// `Index::apply_batch`, batches of 1000.
    pub tidelog_msgs_per_sec: f64,
    /// v11 triggers, all rows in one transaction.
    pub sqlite_one_tx_msgs_per_sec: f64,
    /// v11 triggers, one transaction (and sync) per row; time-bounded.
    pub sqlite_per_tx_msgs_per_sec: f64,
    pub sqlite_per_tx_messages: usize,
    /// Database sizes after loading (main file + WAL), bytes.
    pub tidelog_index_bytes: u64,
    pub sqlite_bytes: u64,
}

fn db_bytes(path: &Path) -> u64 {
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    [path.to_path_buf(), wal].iter().filter_map(|p| fs::metadata(p).ok()).map(|m| m.len()).sum()
}

pub fn compaction(root: &Path, payload: usize, count: usize, per_tx_budget: Duration) -> Result<Compaction> {
    let dir = fresh(root, "compaction")?;
    let mut msgs = workload::messages(7, count, payload);
    for (i, m) in msgs.iter_mut().enumerate() {
        m.id = format!("bench-{i:08}");
    }
    // Tidelog: the compactor's own write path, in batches of 1000.
    let ipath = dir.join("index.db");
    let mut index = Index::open(&ipath, &IndexOptions::default())?;
    let entries: Vec<(String, u64, Entry)> = msgs
        .iter()
        .enumerate()
        .map(|(i, m)| ("lane-0001".to_string(), i as u64 + 1, Entry::Message(m.clone())))
        .collect();
    let t0 = Instant::now();
    for chunk in entries.chunks(1000) {
        index.apply_batch(chunk)?;
    }
    let lb = t0.elapsed();
    drop(index);
    let tidelog_index_bytes = db_bytes(&ipath);

    let mut sessions: Vec<String> = msgs.iter().map(|m| m.session_id.clone()).collect();
    sessions.sort();
    sessions.dedup();
    let one = dir.join("one-tx.db");
    sqlite::create(&one, sqlite::Mode::Full, &sessions)?;
    let one_el = sqlite::insert_one_transaction(&one, &msgs)?;
    let sqlite_bytes = db_bytes(&one);
    let per = dir.join("per-tx.db");
    sqlite::create(&per, sqlite::Mode::Full, &sessions)?;
    let (per_n, per_el) = sqlite::insert_per_transaction(&per, &msgs, per_tx_budget)?;
    cleanup(&dir);
    Ok(Compaction {
        payload,
        messages: count,
        tidelog_msgs_per_sec: count as f64 / lb.as_secs_f64(),
        sqlite_one_tx_msgs_per_sec: count as f64 / one_el.as_secs_f64(),
        sqlite_per_tx_msgs_per_sec: per_n as f64 / per_el.as_secs_f64(),
        sqlite_per_tx_messages: per_n,
        tidelog_index_bytes,
        sqlite_bytes,
    })
}

/// Compactor lag under a steady load.
#[derive(Debug, Clone, Serialize)]
pub struct Lag {
    pub target_rate: f64,
    pub achieved_rate: f64,
    pub seconds: f64,
    pub payload: usize,
    pub samples: usize,
    pub max_unindexed: u64,
    pub p99_unindexed: u64,
    pub p50_unindexed: u64,
    /// Unindexed messages expressed in time at the achieved rate.
    pub max_lag_ms: f64,
    pub p99_lag_ms: f64,
    /// After the writer stopped, until the index held everything.
    pub drain_ms: f64,
    pub batches: u64,
}

pub fn compactor_lag(root: &Path, rate: f64, seconds: f64, payload: usize) -> Result<Lag> {
    let dir = fresh(root, "lag")?;
    let store = Store::open(&dir, StoreOptions::default())?;
    let pool = workload::messages(3, 1024, payload);
    let stop = AtomicBool::new(false);
    let samples = Mutex::new(Vec::new());
    let (sent, el) = std::thread::scope(|s| -> Result<(usize, Duration)> {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let u = store.status().unindexed;
                if let Ok(mut v) = samples.lock() {
                    v.push(u);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let start = Instant::now();
        let total = (rate * seconds) as usize;
        let mut i = 0;
        let res = (|| -> Result<()> {
            // Whatever is due is appended at once (one durable commit), so the offered rate
            // holds even when a commit takes longer than the interval between messages.
            while i < total {
                let due = ((start.elapsed().as_secs_f64() * rate) as usize + 1).min(total);
                if due <= i {
                    let next = start + Duration::from_secs_f64(i as f64 / rate);
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                    continue;
                }
                let batch: Vec<Message> = (i..due).map(|k| pool[k % pool.len()].clone()).collect();
                store.append_batch(batch)?;
                i = due;
            }
            Ok(())
        })();
        let el = start.elapsed();
        stop.store(true, Ordering::Relaxed);
        res?;
        Ok((i, el))
    })?;
    let t0 = Instant::now();
    let caught_up = store.wait_indexed(Duration::from_secs(120));
    let drain = t0.elapsed();
    let batches = store.status().compactor.batches;
    store.close()?;
    cleanup(&dir);
    if !caught_up {
        return Err(anyhow!("the compactor did not catch up within 120 s"));
    }
    let mut v = samples.into_inner().map_err(|_| anyhow!("sampler poisoned"))?;
    v.sort_unstable();
    let achieved = sent as f64 / el.as_secs_f64();
    let max = v.last().copied().unwrap_or(0);
    let p99 = percentile(&v, 0.99);
    Ok(Lag {
        target_rate: rate,
        achieved_rate: achieved,
        seconds: el.as_secs_f64(),
        payload,
        samples: v.len(),
        max_unindexed: max,
        p99_unindexed: p99,
        p50_unindexed: percentile(&v, 0.5),
        max_lag_ms: max as f64 / achieved * 1000.0,
        p99_lag_ms: p99 as f64 / achieved * 1000.0,
        drain_ms: drain.as_secs_f64() * 1000.0,
        batches,
    })
}

/// Reopen and verify of one journal size.
#[derive(Debug, Clone, Serialize)]
pub struct Reopen {
    pub label: String,
    /// Bytes of segment files.
    pub journal_bytes: u64,
    pub segments: usize,
    /// Data in the active (unsealed) segment, bytes (approximate).
    pub active_bytes: u64,
    pub clean_ms: f64,
    pub clean_cold_ms: Option<f64>,
    pub kill_ms: f64,
    pub kill_cold_ms: Option<f64>,
    /// What recovery found after the kill.
    pub kill_records_scanned: u64,
    pub kill_torn_tails: usize,
    pub verify_mb_per_sec: Option<f64>,
    pub verify_cold_mb_per_sec: Option<f64>,
}

const RECORD: usize = 4000;

fn segment_files(dir: &Path) -> Result<Vec<(PathBuf, u64)>> {
    let mut v = Vec::new();
    for e in fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().to_string();
        if tidelog_journal::decode::parse_segment_file_name(&name).is_some() {
            v.push((e.path(), e.metadata()?.len()));
        }
    }
    v.sort();
    Ok(v)
}

/// Asks the kernel to drop clean page cache (root only); false if it cannot.
pub fn drop_caches() -> bool {
    let _ = Command::new("sync").status();
    fs::write("/proc/sys/vm/drop_caches", "1").is_ok()
}

fn time_open(dir: &Path) -> Result<(f64, Journal)> {
    let t0 = Instant::now();
    let j = Journal::open(dir, Options::default())?;
    Ok((t0.elapsed().as_secs_f64() * 1000.0, j))
}

/// Child side of the kill: opens the journal, appends durably, says "ready", keeps appending
/// until killed.
pub fn child_kill_writer(dir: &Path) -> Result<()> {
    let j = Journal::open(dir, Options::default())?;
    let payload = vec![b'k'; 1000];
    for i in 0..1000 {
        j.append(&payload)?;
        if i == 100 {
            println!("ready");
            std::io::stdout().flush()?;
        }
    }
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Builds a journal of `sealed` full segments plus `active_mb` in the active one, then times
/// reopening it after a clean close and after a SIGKILL of a writer process, and verifies it.
pub fn reopen(root: &Path, label: &str, sealed: u64, active_mb: u64, do_verify: bool, cold: bool) -> Result<Reopen> {
    let dir = fresh(root, "reopen")?;
    let seg = Options::default().segment_size;
    let target = sealed * seg + active_mb * 1_000_000;
    {
        // Build fast: buffered appends, synced at rotation and close.
        let j = Journal::open(&dir, Options { durability: Durability::Buffered, ..Options::default() })?;
        let payloads: Vec<Vec<u8>> = (0..256u32)
            .map(|i| {
                let mut rng = workload::Rng::new(u64::from(i));
                workload::text(&mut rng, RECORD).into_bytes()
            })
            .collect();
        let refs: Vec<&[u8]> = payloads.iter().map(|p| p.as_slice()).collect();
        let per_batch = refs.len() as u64 * tidelog_journal::frame_len(RECORD) as u64;
        let mut written = 0;
        while written < target {
            j.append_batch(&refs)?;
            written += per_batch;
        }
        j.close()?;
    }
    let files = segment_files(&dir)?;
    let sealed_bytes: u64 = files.iter().rev().skip(1).map(|(_, l)| l).sum();
    let total_frames = {
        let j = Journal::open(&dir, Options::default())?;
        let n = j.last_lsn();
        j.close()?;
        n * tidelog_journal::frame_len(RECORD) as u64
    };
    let overhead =
        (files.len().saturating_sub(1) * (tidelog_journal::SEGMENT_HEADER_LEN + tidelog_journal::FOOTER_LEN)) as u64;
    let active_bytes = (total_frames + overhead).saturating_sub(sealed_bytes);
    // Data, not the preallocated tail of the active segment.
    let journal_bytes = sealed_bytes + active_bytes;

    // Clean close, warm cache.
    let (clean_ms, j) = time_open(&dir)?;
    j.close()?;
    drop(j);
    let clean_cold_ms = if cold && drop_caches() {
        let (ms, j) = time_open(&dir)?;
        j.close()?;
        Some(ms)
    } else {
        None
    };

    // Kill a writer process mid-append.
    let kill = |dir: &Path| -> Result<()> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("child-kill-writer")
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::piped())
            .spawn()?;
        let out = child.stdout.take().ok_or_else(|| anyhow!("no child stdout"))?;
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line)?;
        if line.trim() != "ready" {
            let _ = child.kill();
            bail!("the writer process did not start: {line:?}");
        }
        std::thread::sleep(Duration::from_millis(30));
        child.kill()?; // SIGKILL
        child.wait()?;
        Ok(())
    };
    kill(&dir)?;
    let (kill_ms, j) = time_open(&dir)?;
    let rep = j.recovery_report().clone();
    j.close()?;
    drop(j);
    let kill_cold_ms = if cold {
        kill(&dir)?;
        if drop_caches() {
            let (ms, j) = time_open(&dir)?;
            j.close()?;
            Some(ms)
        } else {
            None
        }
    } else {
        None
    };

    let time_verify = |dir: &Path| -> Result<f64> {
        let t0 = Instant::now();
        let r = tidelog_journal::verify(dir, &Options::default())?;
        let el = t0.elapsed().as_secs_f64();
        if !r.problems.is_empty() {
            bail!("verify found problems in a journal the benchmark wrote: {:?}", r.problems);
        }
        Ok(journal_bytes as f64 / 1e6 / el)
    };
    let (verify_mb_per_sec, verify_cold_mb_per_sec) = if do_verify {
        // Best of two warm passes (the first may compete with writeback of the build).
        let warm = time_verify(&dir)?.max(time_verify(&dir)?);
        let cold_v = if cold && drop_caches() { Some(time_verify(&dir)?) } else { None };
        (Some(warm), cold_v)
    } else {
        (None, None)
    };
    cleanup(&dir);
    Ok(Reopen {
        label: label.to_string(),
        journal_bytes,
        segments: files.len(),
        active_bytes,
        clean_ms,
        clean_cold_ms,
        kill_ms,
        kill_cold_ms,
        kill_records_scanned: rep.records_scanned,
        kill_torn_tails: rep.torn_tails.len(),
        verify_mb_per_sec,
        verify_cold_mb_per_sec,
    })
}

/// Peak memory of a phase run alone in a child process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RssReport {
    pub phase: String,
    pub messages: u64,
    pub seconds: f64,
    pub vm_hwm_kib: u64,
    /// Peaks of anonymous memory and of file pages mapped in (sampled every 20 ms); VmHWM is
    /// at most their sum.
    pub peak_rss_anon_kib: u64,
    pub peak_rss_file_kib: u64,
    pub syncs: u64,
}

fn status_kib(field: &str) -> Option<u64> {
    let s = fs::read_to_string("/proc/self/status").ok()?;
    s.lines().find_map(|l| l.strip_prefix(field)).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Samples RssAnon and RssFile every 20 ms until dropped; keeps the peaks.
struct RssSampler {
    stop: std::sync::Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<(u64, u64)>>,
}

impl RssSampler {
    fn start() -> RssSampler {
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let s = std::sync::Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let (mut anon, mut file) = (0, 0);
            loop {
                anon = anon.max(status_kib("RssAnon:").unwrap_or(0));
                file = file.max(status_kib("RssFile:").unwrap_or(0));
                if s.load(Ordering::Relaxed) {
                    return (anon, file);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        RssSampler { stop, handle: Some(handle) }
    }

    fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().and_then(|h| h.join().ok()).unwrap_or((0, 0))
    }
}

fn vm_hwm_kib() -> Result<u64> {
    let s = fs::read_to_string("/proc/self/status")?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no VmHWM in /proc/self/status"))
}

/// Child side of the memory phases: `append` writes `count` 200 B messages with
/// `Store::append_batch` of 100 (durable each); `compact` opens the store with the compactor and
/// waits until everything is indexed.
pub fn child_rss(phase: &str, dir: &Path, count: u64) -> Result<()> {
    let t0 = Instant::now();
    let sampler = RssSampler::start();
    let mut rep = match phase {
        "append" => {
            let store = Store::open(dir, StoreOptions { run_compactor: false, ..StoreOptions::default() })?;
            let pool = workload::messages(11, 1000, 200);
            let mut n = 0u64;
            while n < count {
                let k = 100.min(count - n) as usize;
                let start = (n as usize) % pool.len();
                let batch: Vec<Message> = (0..k).map(|i| pool[(start + i) % pool.len()].clone()).collect();
                store.append_batch(batch)?;
                n += k as u64;
            }
            let syncs = store.journal().sync_count();
            store.close()?;
            RssReport {
                phase: phase.into(),
                messages: n,
                seconds: t0.elapsed().as_secs_f64(),
                vm_hwm_kib: 0,
                peak_rss_anon_kib: 0,
                peak_rss_file_kib: 0,
                syncs,
            }
        }
        "compact" => {
            let store = Store::open(dir, StoreOptions::default())?;
            if !store.wait_indexed(Duration::from_secs(900)) {
                bail!("the compactor did not catch up within 900 s");
            }
            let st = store.status();
            store.close()?;
            RssReport {
                phase: phase.into(),
                messages: st.lanes.iter().filter_map(|l| l.applied_lsn).sum(),
                seconds: t0.elapsed().as_secs_f64(),
                vm_hwm_kib: 0,
                peak_rss_anon_kib: 0,
                peak_rss_file_kib: 0,
                syncs: 0,
            }
        }
        other => bail!("unknown phase {other:?}"),
    };
    (rep.peak_rss_anon_kib, rep.peak_rss_file_kib) = sampler.finish();
    rep.vm_hwm_kib = vm_hwm_kib()?;
    println!("{}", serde_json::to_string(&rep)?);
    Ok(())
}

/// Runs both memory phases, each in its own process.
pub fn rss(root: &Path, count: u64) -> Result<(RssReport, RssReport)> {
    let dir = fresh(root, "rss")?;
    let exe = std::env::current_exe()?;
    let run = |phase: &str| -> Result<RssReport> {
        let o = Command::new(&exe)
            .arg("child-rss")
            .arg("--phase")
            .arg(phase)
            .arg("--dir")
            .arg(dir.join("store"))
            .arg("--count")
            .arg(count.to_string())
            .stderr(Stdio::inherit())
            .output()?;
        if !o.status.success() {
            bail!("the {phase} memory phase failed: {}", o.status);
        }
        serde_json::from_slice(&o.stdout).with_context(|| format!("read the {phase} phase's report"))
    };
    let a = run("append")?;
    let c = run("compact")?;
    cleanup(&dir);
    Ok((a, c))
}

/// Only the Tidelog side of [`compaction`] (for profiling with `perf`): prints msg/s.
pub fn apply_only(root: &Path, payload: usize, count: usize) -> Result<f64> {
    let dir = fresh(root, "apply")?;
    let mut msgs = workload::messages(7, count, payload);
    for (i, m) in msgs.iter_mut().enumerate() {
        m.id = format!("bench-{i:08}");
    }
    let mut index = Index::open(&dir.join("index.db"), &IndexOptions::default())?;
    let entries: Vec<(String, u64, Entry)> =
        msgs.into_iter().enumerate().map(|(i, m)| ("lane-0001".to_string(), i as u64 + 1, Entry::Message(m))).collect();
    let t0 = Instant::now();
    for chunk in entries.chunks(1000) {
        index.apply_batch(chunk)?;
    }
    let rate = count as f64 / t0.elapsed().as_secs_f64();
    drop(index);
    cleanup(&dir);
    Ok(rate)
}

/// Builds a journal in `dir` (`build_mb` megabytes of 4 KB records, buffered) if asked, then
/// times `verify` over it; returns MB/s of segment data.
pub fn verify_only(dir: &Path, build_mb: Option<u64>) -> Result<f64> {
    if let Some(mb) = build_mb {
        let j = Journal::open(dir, Options { durability: Durability::Buffered, ..Options::default() })?;
        let mut rng = workload::Rng::new(5);
        let payloads: Vec<Vec<u8>> = (0..256).map(|_| workload::text(&mut rng, RECORD).into_bytes()).collect();
        let refs: Vec<&[u8]> = payloads.iter().map(|p| p.as_slice()).collect();
        for _ in 0..(mb * 1_000_000 / (256 * RECORD as u64)).max(1) {
            j.append_batch(&refs)?;
        }
        j.close()?;
    }
    let files = segment_files(dir)?;
    let bytes: u64 = files.iter().map(|(_, l)| l).sum();
    let t0 = Instant::now();
    let r = tidelog_journal::verify(dir, &Options::default())?;
    let el = t0.elapsed().as_secs_f64();
    eprintln!(
        "verify: {} segments, {} records, {:.0} MB of files in {:.0} ms",
        files.len(),
        r.records_scanned,
        bytes as f64 / 1e6,
        el * 1000.0
    );
    Ok(bytes as f64 / 1e6 / el)
}
