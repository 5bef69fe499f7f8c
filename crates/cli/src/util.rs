//! Shared pieces of the commands: the store folder, logging, progress, output.

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use logbook::{Store, StoreOptions};
use tracing::info;
use tracing_subscriber::EnvFilter;

use crate::Cli;

/// Sets up `tracing` on stderr: RUST_LOG if set, else by `-v` count.
pub fn init_logging(verbose: u8) {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => EnvFilter::try_new(v).unwrap_or_else(|_| EnvFilter::new("warn")),
        _ => EnvFilter::new(match verbose {
            0 => "warn,logbook_cli=info",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// The store folder from --dir / LOGBOOK_DIR.
pub fn store_dir(cli: &Cli) -> anyhow::Result<PathBuf> {
    match &cli.dir {
        Some(d) => Ok(d.clone()),
        None => bail!("no store folder given: pass --dir DIR or set LOGBOOK_DIR"),
    }
}

/// Checks that `dir` is an existing store folder.
pub fn existing_store(cli: &Cli) -> anyhow::Result<PathBuf> {
    let dir = store_dir(cli)?;
    match std::fs::metadata(&dir) {
        Ok(m) if !m.is_dir() => bail!("{} is not a folder; pass the store folder with --dir", dir.display()),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            bail!("no store at {}; check --dir or LOGBOOK_DIR", dir.display())
        }
        Err(e) => bail!("cannot read {}: {e}; check its permissions", dir.display()),
    }
    let lanes = dir.join(logbook::LANES_DIR);
    if !lanes.is_dir() {
        bail!(
            "{} is not a logbook store (it has no {}/ folder); check --dir or LOGBOOK_DIR",
            dir.display(),
            logbook::LANES_DIR
        );
    }
    Ok(dir)
}

/// Checks that `dir` can hold a store (missing, or a folder).
pub fn new_or_existing_store(cli: &Cli) -> anyhow::Result<PathBuf> {
    let dir = store_dir(cli)?;
    if let Ok(m) = std::fs::metadata(&dir)
        && !m.is_dir()
    {
        bail!("{} is not a folder; pass the store folder with --dir", dir.display());
    }
    Ok(dir)
}

/// Store options from the command line.
pub fn store_options(cli: &Cli) -> StoreOptions {
    let mut o = StoreOptions::default();
    if let Some(m) = cli.max_record_size {
        o.max_record_size = m.clamp(1, 1 << 30);
    }
    if let Some(s) = cli.segment_size {
        o.segment_size = s.max(64 << 10);
    }
    o
}

/// Opens the store in `dir` (running recovery on the lane it claims).
pub fn open_store(cli: &Cli, dir: &Path) -> anyhow::Result<Store> {
    Store::open(dir, store_options(cli)).with_context(|| format!("cannot open the store at {}", dir.display()))
}

/// Opens the store in `dir` for reading only: claims no lane, writes nothing, runs no
/// compactor (safe beside a running gateway).
pub fn open_store_read_only(cli: &Cli, dir: &Path) -> anyhow::Result<Store> {
    let opts = StoreOptions { read_only: true, ..store_options(cli) };
    Store::open(dir, opts).with_context(|| format!("cannot open the store at {}", dir.display()))
}

/// Progress: a bar on a terminal, periodic log lines otherwise.
#[derive(Debug)]
pub struct Reporter {
    bar: Option<ProgressBar>,
    stage: String,
    last_log: Instant,
}

impl Reporter {
    pub fn new() -> Reporter {
        let bar = io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new(0);
            if let Ok(s) = ProgressStyle::with_template("{msg:>28} [{bar:30}] {pos}/{len} ({elapsed})") {
                b.set_style(s.progress_chars("=> "));
            }
            b
        });
        Reporter { bar, stage: String::new(), last_log: Instant::now() }
    }

    pub fn update(&mut self, stage: &str, done: u64, total: u64) {
        let new_stage = stage != self.stage;
        if let Some(b) = &self.bar {
            if new_stage {
                b.set_message(stage.to_string());
            }
            b.set_length(total.max(done));
            b.set_position(done);
        } else if new_stage || self.last_log.elapsed() >= Duration::from_secs(2) {
            if total > 0 {
                info!("{stage}: {done}/{total}");
            } else {
                info!("{stage}");
            }
            self.last_log = Instant::now();
        }
        if new_stage {
            self.stage = stage.to_string();
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// Writes one line to stdout and flushes; a closed pipe (`| head`) ends the program quietly.
pub fn out_line(w: &mut impl Write, s: &str) -> anyhow::Result<()> {
    let r = writeln!(w, "{s}").and_then(|()| w.flush());
    match r {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Err(e).context("cannot write to stdout"),
    }
}

/// Prints a value as pretty JSON.
pub fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    let s = serde_json::to_string_pretty(v).context("cannot encode the report as JSON")?;
    out_line(&mut io::stdout().lock(), &s)
}

/// Prints a text line.
pub fn say(s: impl AsRef<str>) -> anyhow::Result<()> {
    out_line(&mut io::stdout().lock(), s.as_ref())
}

/// A one-line rendering of a message for people.
pub fn message_line(m: &logbook::Message) -> String {
    let text = m.content.as_deref().or(m.tool_calls.as_deref()).unwrap_or("");
    let mut short: String = text.chars().take(160).map(|c| if c.is_control() { ' ' } else { c }).collect();
    if text.chars().count() > 160 {
        short.push('…');
    }
    format!("{} [{}] {}: {short}", logbook::ops::format_iso8601(m.timestamp), m.session_id, m.role)
}

/// Size in bytes as text.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS.get(u).copied().unwrap_or("B")) }
}

/// What to do about an error, when the error itself cannot say it (the libraries do not name
/// commands of this tool).
pub fn hint(e: &anyhow::Error) -> Option<&'static str> {
    let journal = e.chain().find_map(|c| {
        c.downcast_ref::<logbook_journal::Error>().or_else(|| match c.downcast_ref::<logbook::Error>() {
            Some(logbook::Error::Journal(j)) => Some(j),
            _ => None,
        })
    })?;
    match journal {
        logbook_journal::Error::Corrupt { .. } | logbook_journal::Error::BrokenChain { .. } => {
            Some("run `logbook repair --salvage` to keep every valid record and quarantine the damage")
        }
        _ => None,
    }
}
