//! Shared pieces of the commands: the store folder, logging, progress, output.

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tidelog::{Store, StoreOptions};
use tracing_subscriber::EnvFilter;

use crate::{Cli, ColorChoice};

/// Whether stderr gets colors: `--color always|never`, or with `auto` (the default) when
/// stderr is a terminal and `NO_COLOR` is unset or empty.
pub fn color_enabled(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && io::stderr().is_terminal(),
    }
}

static COLOR: AtomicBool = AtomicBool::new(false);
static QUIET: AtomicBool = AtomicBool::new(false);

/// Records the output settings every part of the tool follows.
pub fn set_output(color: bool, quiet: bool) {
    COLOR.store(color, Ordering::Relaxed);
    QUIET.store(quiet, Ordering::Relaxed);
}

fn color() -> bool {
    COLOR.load(Ordering::Relaxed)
}

/// `--quiet`: no progress and no warnings, only results and errors.
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Sets up `tracing` on stderr. Silent by default (results go to stdout, problems are printed
/// once by the command itself); `-v` shows info, `-vv` debug, `-vvv` trace; RUST_LOG overrides.
pub fn init_logging(verbose: u8) {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => EnvFilter::try_new(v).unwrap_or_else(|_| EnvFilter::new("warn")),
        _ => EnvFilter::new(match verbose {
            0 => "off",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(color())
        .with_target(false)
        .try_init();
}

/// `tidelog: error: ` (red when colors are on): the one prefix of every error, ours and
/// clap's.
pub fn error_prefix() -> String {
    if color() { "tidelog: \x1b[1;31merror\x1b[0m: ".into() } else { "tidelog: error: ".into() }
}

/// Prints a problem the command found (one line, once) on stderr, unless `--quiet`.
pub fn warn_line(s: impl AsRef<str>) {
    if quiet() {
        return;
    }
    let prefix = if color() { "tidelog: \x1b[1;33mwarning\x1b[0m: " } else { "tidelog: warning: " };
    err_line(format!("{prefix}{}", s.as_ref()));
}

/// Writes one line on stderr. A closed or failing stderr is ignored: nothing the tool says
/// there is worth stopping its work for (`eprintln!` would panic, and mid-import).
pub fn err_line(s: impl AsRef<str>) {
    let mut e = io::stderr().lock();
    let _ = writeln!(e, "{}", s.as_ref()).and_then(|()| e.flush());
}

/// Stdout was closed by its reader (`| head`): reading commands stop quietly, commands that
/// write to the store stop at a safe point and say so.
#[derive(Debug, Clone, Copy)]
pub struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stdout was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// After a read: every problem of the store (damage met while reading, lanes that cannot be
/// read) as a warning line on stderr, and the outcome: [`Outcome::Problem`] (exit 1) when there
/// is any, since what the command printed may then be incomplete.
pub fn read_problems(store: &tidelog::Store) -> (crate::Outcome, Vec<String>) {
    let problems = store.status().problems;
    for p in &problems {
        warn_line(format!("incomplete: {p}"));
    }
    (if problems.is_empty() { crate::Outcome::Fine } else { crate::Outcome::Problem }, problems)
}

/// An error and its causes on one line, each cause once: a cause whose text the message
/// already includes (a library error whose `Display` names its source) is not repeated.
pub fn render_error(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// The store folder from --dir / TIDELOG_DIR.
pub fn store_dir(cli: &Cli) -> anyhow::Result<PathBuf> {
    match &cli.dir {
        Some(d) => Ok(d.clone()),
        None => bail!("no store folder given: pass --dir DIR or set TIDELOG_DIR"),
    }
}

/// Checks that `dir` is an existing store folder.
pub fn existing_store(cli: &Cli) -> anyhow::Result<PathBuf> {
    let dir = store_dir(cli)?;
    match std::fs::metadata(&dir) {
        Ok(m) if !m.is_dir() => bail!("{} is not a folder; pass the store folder with --dir", dir.display()),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            bail!("no store at {}; check --dir or TIDELOG_DIR", dir.display())
        }
        Err(e) => bail!("cannot read {}: {e}; check its permissions", dir.display()),
    }
    let lanes = dir.join(tidelog::LANES_DIR);
    match std::fs::metadata(&lanes) {
        Ok(m) if m.is_dir() => {}
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            bail!("cannot read the store at {}: permission denied; run as the user that owns it", dir.display())
        }
        _ => bail!(
            "{} is not a tidelog store (it has no {}/ folder); check --dir or TIDELOG_DIR",
            dir.display(),
            tidelog::LANES_DIR
        ),
    }
    if let Err(e) = std::fs::read_dir(&lanes) {
        bail!("cannot read the store at {}: {e}; check its permissions", dir.display());
    }
    Ok(dir)
}

/// Checks that `dir` can hold a store: a store already, or a missing or empty folder. Any other
/// folder (a typo, another program's files) is refused rather than turned into a store.
pub fn new_or_existing_store(cli: &Cli) -> anyhow::Result<PathBuf> {
    let dir = store_dir(cli)?;
    match std::fs::metadata(&dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(dir),
        Err(e) => bail!("cannot read {}: {e}; check its permissions", dir.display()),
        Ok(m) if !m.is_dir() => bail!("{} is not a folder; pass the store folder with --dir", dir.display()),
        Ok(_) => {}
    }
    if dir.join(tidelog::LANES_DIR).is_dir() {
        return existing_store(cli);
    }
    let mut entries = std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?;
    if entries.next().is_some() {
        bail!(
            "{} is not empty and is not a tidelog store; pass a new or empty folder to create a store, or the store's folder",
            dir.display()
        );
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
    // With --postgres, a writer also ships to PostgreSQL (in the background, never waiting).
    let remote = crate::sync::target(cli)?.map(|t| t as std::sync::Arc<dyn tidelog::RemoteTarget>);
    Store::open(dir, StoreOptions { remote, ..store_options(cli) })
        .with_context(|| format!("cannot open the store at {}", dir.display()))
}

/// Opens the store in `dir` for reading only: claims no lane, writes nothing, runs no
/// compactor (safe beside a running gateway).
pub fn open_store_read_only(cli: &Cli, dir: &Path) -> anyhow::Result<Store> {
    let opts = StoreOptions { read_only: true, ..store_options(cli) };
    Store::open(dir, opts).with_context(|| format!("cannot open the store at {}", dir.display()))
}

/// Progress on stderr while a command works: a bar with the count, the rate and the time left
/// when the total is known, a spinner with the count and the elapsed time when it is not.
/// Shown only when stderr is a terminal and not `--quiet`; otherwise it draws nothing.
#[derive(Debug)]
pub struct Reporter {
    bar: Option<ProgressBar>,
    /// Whether to draw at all: stderr is a terminal and not `--quiet`.
    shown: bool,
    stage: String,
    shape: Option<Shape>,
}

fn new_bar() -> ProgressBar {
    let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10));
    // Nothing but the stage until update() picks the shape (indicatif's default is a bar).
    if let Ok(st) = ProgressStyle::with_template("{msg}") {
        b.set_style(st);
    }
    b
}

/// How a [`Reporter`] draws the current stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Known total: bar, count, rate, time left.
    Bar,
    /// A count without a total: count, rate, elapsed.
    Count,
    /// No count: spinner and elapsed time.
    Spinner,
}

impl Reporter {
    pub fn new() -> Reporter {
        Reporter { bar: None, shown: io::stderr().is_terminal() && !quiet(), stage: String::new(), shape: None }
    }

    /// Reports `done` of `total` (0: unknown) for `stage`.
    pub fn update(&mut self, stage: &str, done: u64, total: u64) {
        if !self.shown {
            return;
        }
        // Drawn from the first update on; a bar finished by an earlier stage is replaced.
        let b = match &mut self.bar {
            Some(b) if !b.is_finished() => b,
            slot => {
                self.stage.clear();
                self.shape = None;
                slot.insert(new_bar())
            }
        };
        let kind = match (done, total) {
            (0, 0) => Shape::Spinner,
            (_, 0) => Shape::Count,
            _ => Shape::Bar,
        };
        if stage != self.stage || self.shape != Some(kind) {
            let template = match kind {
                Shape::Bar => {
                    "{spinner:.green} {msg} [{bar:30.cyan/blue}] {human_pos}/{human_len} ({per_sec:0}, {eta} left)"
                }
                Shape::Count => "{spinner:.green} {msg}: {human_pos} ({per_sec:0}, {elapsed})",
                Shape::Spinner => "{spinner:.green} {msg} ({elapsed})",
            };
            if stage != self.stage {
                // A new stage: its rate and time left count from its own beginning.
                b.reset();
                b.set_message(stage.to_string());
                self.stage = stage.to_string();
            }
            let template =
                if color() { template.to_string() } else { template.replace(".green", "").replace(".cyan/blue", "") };
            if let Ok(st) = ProgressStyle::with_template(&template) {
                b.set_style(st.progress_chars("=> "));
            }
            // Ticking (redrawing the spinner and the elapsed time during a long call) starts
            // once there is a style and a message to draw.
            b.enable_steady_tick(Duration::from_millis(120));
            self.shape = Some(kind);
        }
        if total > 0 {
            b.set_length(total);
        }
        b.set_position(done);
    }

    /// Shows `stage` as work without a count (a spinner with the elapsed time), for a single
    /// long call.
    pub fn working(&mut self, stage: &str) {
        self.update(stage, 0, 0);
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Writes one line to stdout and flushes; a closed pipe (`| head`) is the error
/// [`StdoutClosed`], which ends a reading command quietly.
pub fn out_line(w: &mut impl Write, s: &str) -> anyhow::Result<()> {
    let r = writeln!(w, "{s}").and_then(|()| w.flush());
    match r {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(anyhow::Error::new(StdoutClosed)),
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
pub fn message_line(m: &tidelog::Message) -> String {
    let text = m.content.as_deref().or(m.tool_calls.as_deref()).unwrap_or("");
    let mut short: String = text.chars().take(160).map(|c| if c.is_control() { ' ' } else { c }).collect();
    if text.chars().count() > 160 {
        short.push('…');
    }
    format!("{} [{}] {}: {short}", tidelog::ops::format_iso8601(m.timestamp), m.session_id, m.role)
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
        c.downcast_ref::<tidelog_journal::Error>().or_else(|| match c.downcast_ref::<tidelog::Error>() {
            Some(tidelog::Error::Journal(j)) => Some(j),
            _ => None,
        })
    })?;
    match journal {
        tidelog_journal::Error::Corrupt { .. } | tidelog_journal::Error::BrokenChain { .. } => {
            Some("run `tidelog repair --salvage` to keep every valid record and quarantine the damage")
        }
        _ => None,
    }
}
