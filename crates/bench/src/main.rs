//! `tidelog-bench`: measures Tidelog on the disk under test against the physical limit (a raw
//! `write` + `fdatasync` loop) and against SQLite as AI-agent gateways use it (WAL, one message
//! per transaction, FTS5 triggers), and checks the targets of the design. See
//! `docs/benchmarks.md` for the figures and how to read them.
//!
//! It works in a temporary folder on the file system under test (by default under the current
//! folder; `--dir` chooses) and removes it at the end. Exit codes: 0 when it ran (whatever the
//! targets), 2 on error.

mod phases;
mod reads;
mod report;
mod sqlite;
mod stats;
mod workload;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::report::{Machine, Results};

#[derive(Debug, Parser)]
#[command(name = "tidelog-bench", about = "Benchmarks Tidelog against raw fdatasync and SQLite on this disk")]
struct Cli {
    /// Folder on the file system to test; a temporary folder is made inside it and removed at
    /// the end. Default: the current folder.
    #[arg(long, global = true)]
    dir: Option<PathBuf>,
    /// Smoke run (under a minute): checks that everything runs, says nothing about speed.
    #[arg(long)]
    quick: bool,
    /// Skip the 1 GB journal (reopen and verify run on 100 MB only).
    #[arg(long)]
    no_large: bool,
    /// Print the results as JSON on stdout (the tables go to stderr).
    #[arg(long)]
    json: bool,
    /// Write an SVG chart of throughput and p99 latency against writer count here.
    #[arg(long)]
    chart: Option<PathBuf>,
    /// Also write the Markdown tables here.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Seconds per writer configuration. Default: 2 (0.25 with --quick).
    #[arg(long)]
    seconds: Option<f64>,
    #[command(subcommand)]
    child: Option<Hidden>,
}

/// Phases run in a child process (re-executed by the benchmark itself).
#[derive(Debug, Subcommand)]
enum Hidden {
    /// One of several writer processes on one store.
    #[command(hide = true, name = "child-store-writer")]
    StoreWriter {
        #[arg(long)]
        payload: usize,
        #[arg(long)]
        seconds: f64,
        #[arg(long)]
        start_at_ms: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// A journal writer that the parent kills with SIGKILL.
    #[command(hide = true, name = "child-kill-writer")]
    KillWriter,
    /// Only `Index::apply_batch` of the compaction phase (to profile it).
    #[command(hide = true, name = "child-apply")]
    Apply {
        #[arg(long)]
        payload: usize,
        #[arg(long)]
        count: usize,
    },
    /// Builds a journal of `mb` megabytes (if `--build`) and times `verify` on it (to profile it).
    #[command(hide = true, name = "child-verify")]
    Verify {
        #[arg(long)]
        build_mb: Option<u64>,
    },
    /// Reads at scale: a store and a Hermes-schema SQLite database of N messages, the same
    /// questions asked of both (`--dir` keeps them for later runs).
    #[command(name = "reads")]
    Reads {
        #[arg(long, default_value_t = 200_000)]
        messages: usize,
        /// Only the reads whose name contains this text (e.g. "latest", "search two"); the
        /// full export is "full export".
        #[arg(long)]
        only: Option<String>,
    },
    /// One append configuration alone, with compression on and off: `writers` threads calling
    /// `Store::append` (compactor off) for `seconds`, beside the raw write+fdatasync loop,
    /// repeated `runs` times; prints msg/s of each (an A/B in one run, or one configuration to
    /// profile).
    #[command(name = "appends")]
    Appends {
        #[arg(long, default_value_t = 64)]
        writers: usize,
        #[arg(long, default_value_t = 2048)]
        payload: usize,
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// A memory phase alone in its process.
    #[command(hide = true, name = "child-rss")]
    Rss {
        #[arg(long)]
        phase: String,
        #[arg(long)]
        count: u64,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("tidelog-bench: {e:#}");
        std::process::exit(2);
    }
}

/// One writer configuration of the append phase.
#[derive(Debug, Clone, Copy)]
enum Cfg {
    Raw,
    Journal(usize),
    Store(usize),
    StoreCompactor,
    Processes,
    Sqlite(sqlite::Mode, usize),
}

impl Cfg {
    fn name(self) -> String {
        match self {
            Cfg::Raw => "raw write+fdatasync loop".into(),
            Cfg::Journal(w) => format!("tidelog journal, {w} writers"),
            Cfg::Store(w) => format!("tidelog store, {w} writers"),
            Cfg::StoreCompactor => "tidelog store with the compactor on, 16 writers".into(),
            Cfg::Processes => "tidelog store, 4 writer processes".into(),
            Cfg::Sqlite(m, w) => format!("{}, {w} writers", m.name()),
        }
    }

    fn run(self, root: &std::path::Path, p: usize, d: Duration) -> Result<stats::Run> {
        match self {
            Cfg::Raw => phases::raw_loop(root, p, d),
            Cfg::Journal(w) => phases::journal_writers(root, w, p, d),
            Cfg::Store(w) => phases::store_writers(root, w, p, d, false),
            Cfg::StoreCompactor => phases::store_writers(root, 16, p, d, true),
            Cfg::Processes => phases::store_processes(root, 4, p, d),
            Cfg::Sqlite(m, w) => phases::sqlite_writers(root, m, w, p, d),
        }
    }
}

static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

fn progress(msg: &str) {
    let t = START.get_or_init(Instant::now).elapsed().as_secs_f64();
    eprintln!("[bench {t:6.1}s] {msg}");
}

fn run(cli: Cli) -> Result<()> {
    if let Some(child) = cli.child {
        let dir = cli.dir.context("--dir is required")?;
        return match child {
            Hidden::StoreWriter { payload, seconds, start_at_ms, out } => {
                phases::child_store_writer(&dir, payload, seconds, start_at_ms, &out)
            }
            Hidden::KillWriter => phases::child_kill_writer(&dir),
            Hidden::Rss { phase, count } => phases::child_rss(&phase, &dir, count),
            Hidden::Verify { build_mb } => {
                println!("{:.0} MB/s", phases::verify_only(&dir, build_mb)?);
                Ok(())
            }
            Hidden::Reads { messages, only } => reads::run(&dir, messages, only.as_deref(), &mut std::io::stdout()),
            Hidden::Appends { writers, payload, seconds, runs } => {
                let d = Duration::from_secs_f64(seconds);
                for run in 0..runs {
                    let raw = phases::raw_loop(&dir, payload, d)?;
                    // Alternate which goes first: the run after the raw loop meets its writeback.
                    let order = if run % 2 == 0 { [true, false] } else { [false, true] };
                    let mut rates = [0.0; 2];
                    let mut notes = [String::new(), String::new()];
                    for compression in order {
                        let opts = tidelog::StoreOptions { run_compactor: false, compression, ..Default::default() };
                        let r = phases::store_writers_with(&dir, writers, payload, d, opts)?;
                        let per_sync = r.syncs_per_msg.map_or(0.0, |s| 1.0 / s.max(1e-9));
                        let i = usize::from(!compression);
                        rates[i] = r.msgs_per_sec;
                        notes[i] = format!("{per_sync:.1} per sync, p99 {} us", r.p99_us);
                    }
                    let line = format!(
                        "{writers} writers, {payload} B: raw write+fdatasync loop {:.0}, compression on {:.0} msg/s ({}), \
                         compression off {:.0} msg/s ({}), {} first",
                        raw.msgs_per_sec,
                        rates[0],
                        notes[0],
                        rates[1],
                        notes[1],
                        if order[0] { "on" } else { "off" }
                    );
                    println!("{line}");
                }
                Ok(())
            }
            Hidden::Apply { payload, count } => {
                println!("{:.0} msg/s", phases::apply_only(&dir, payload, count)?);
                Ok(())
            }
        };
    }
    let started = *START.get_or_init(Instant::now);
    let base = cli.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let work = tempfile::Builder::new()
        .prefix(".tidelog-bench-")
        .tempdir_in(&base)
        .with_context(|| format!("cannot make a temporary folder in {}: choose another with --dir", base.display()))?;
    let root = work.path();
    let quick = cli.quick;
    let secs = cli.seconds.unwrap_or(if quick { 0.25 } else { 2.0 });
    let dur = Duration::from_secs_f64(secs);
    let primary = 2048;
    let payloads: Vec<usize> = if quick { vec![primary] } else { vec![200, primary, 64 * 1024] };
    let writer_counts: &[usize] = if quick { &[1, 4, 16] } else { &[1, 4, 16, 64] };
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let mut res = Results {
        machine: Machine::probe(root),
        command,
        quick,
        primary_payload: primary,
        seconds_per_config: secs,
        runs: Vec::new(),
        compaction: Vec::new(),
        lag: None,
        reopen: Vec::new(),
        rss: Vec::new(),
        targets: Vec::new(),
        total_seconds: 0.0,
    };
    progress(&format!("working in {} ({})", root.display(), res.machine.filesystem));

    for &p in &payloads {
        let mut cfgs = vec![Cfg::Raw];
        cfgs.extend(writer_counts.iter().map(|&w| Cfg::Journal(w)));
        cfgs.extend(writer_counts.iter().map(|&w| Cfg::Store(w)));
        cfgs.extend([Cfg::StoreCompactor, Cfg::Processes]);
        for mode in [sqlite::Mode::Full, sqlite::Mode::Normal, sqlite::Mode::FullWithoutFts] {
            cfgs.extend(writer_counts.iter().map(|&w| Cfg::Sqlite(mode, w)));
        }
        // The disk's sync latency drifts (other tenants): the payload the targets are computed
        // on runs in interleaved rounds, so that every system sees the same mix of conditions.
        let (rounds, d) = if !quick && p == primary { (3, dur.mul_f64(2.0 / 3.0)) } else { (1, dur) };
        let mut acc: Vec<Option<stats::Run>> = vec![None; cfgs.len()];
        for round in 1..=rounds {
            for (slot, cfg) in acc.iter_mut().zip(&cfgs) {
                progress(&format!("{}: {} (round {round}/{rounds})", workload::size_name(p), cfg.name()));
                let r = cfg.run(root, p, d)?;
                *slot = Some(match slot.take() {
                    Some(prev) => prev.merge(r),
                    None => r,
                });
            }
        }
        res.runs.extend(acc.into_iter().flatten());
    }

    for &p in &payloads {
        let count = if quick { 1000 } else { (8_000_000 / p).clamp(256, 10_000) };
        let budget = Duration::from_secs_f64(if quick { 0.3 } else { 3.0 });
        progress(&format!("{}: compaction of {count} messages vs SQLite triggers", workload::size_name(p)));
        res.compaction.push(phases::compaction(root, p, count, budget)?);
    }

    let (rate, lag_secs) = if quick { (500.0, 1.0) } else { (2000.0, 5.0) };
    progress(&format!("compactor lag at {rate} msg/s for {lag_secs} s"));
    res.lag = Some(phases::compactor_lag(root, rate, lag_secs, primary)?);

    // Same active segment (36 MB) in both sizes, so that reopen after a kill can be compared.
    if quick {
        progress("reopen and verify: 20 MB journal");
        res.reopen.push(phases::reopen(root, "20 MB", 0, 20, true, false)?);
    } else {
        progress("reopen: 100 MB journal");
        res.reopen.push(phases::reopen(root, "100 MB", 1, 36, cli.no_large, true)?);
        if !cli.no_large {
            progress("reopen and verify: 1 GB journal");
            res.reopen.push(phases::reopen(root, "1 GB", 15, 36, true, true)?);
        }
    }

    let count = if quick { 100_000 } else { 1_000_000 };
    progress(&format!("peak memory: appending then compacting {count} messages, each in a child process"));
    let (a, c) = phases::rss(root, count)?;
    res.rss = vec![a, c];

    res.compute_targets();
    res.total_seconds = started.elapsed().as_secs_f64();
    let md = res.markdown();
    if let Some(path) = &cli.chart {
        res.chart(path).with_context(|| format!("cannot write the chart {}", path.display()))?;
        progress(&format!("chart written to {}", path.display()));
    }
    if let Some(path) = &cli.markdown {
        std::fs::write(path, &md).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if cli.json {
        eprintln!("{md}");
        println!("{}", serde_json::to_string_pretty(&res)?);
    } else {
        println!("{md}");
    }
    progress(&format!("done in {:.0} s", res.total_seconds));
    Ok(())
}
