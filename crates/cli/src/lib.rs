//! The `tidelog` command-line tool of the Tidelog message store, as a library.
//!
//! A thin layer over the store: argument parsing, output formatting, progress display and exit
//! codes. The work itself is done by `tidelog::Store` and `tidelog::ops`, which tests and fuzz
//! targets call too. Two programs run it: the `tidelog` binary of this crate (`src/main.rs`) and
//! the `tidelog` command of the Python package (`bindings/python`), both through
//! [`main_with_args`] / [`main_with_options`].
//!
//! ```
//! // What `tidelog --version` prints and returns: the exit code, never a process exit.
//! let code = tidelog_cli::main_with_args(["tidelog", "--version"]);
//! assert_eq!(code, 0);
//! ```
#![forbid(unsafe_code)]

mod append;
mod check;
mod demo;
mod erase;
mod export;
mod import;
mod init;
mod maintain;
mod quarantine;
mod reads;
mod status;
mod sync;
mod util;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

const EXIT_CODES: &str = "\
Exit codes:
  0  fine: the command did what it says and found nothing wrong
  1  a problem was found: verify found damage, repair could not make the store verify, an input
     line was invalid (append), some rows could not be read (import), a message was lost (demo),
     PostgreSQL is ahead of a journal (sync), the store is degraded (status)
  2  usage error or I/O error: bad arguments, no store at --dir, a file cannot be read or written

Results go to stdout; problems to stderr, one line each; progress to stderr when it is a
terminal. Logs only with -v/-vv (or RUST_LOG). --quiet: results and errors only. NO_COLOR or
--color never turns colors off.
The store folder is --dir DIR or the environment variable TIDELOG_DIR; a shared PostgreSQL index
is --postgres URL or TIDELOG_POSTGRES (see docs/scale-out.md).
See docs/recovery.md for the runbook.";

/// A durable message store for AI-agent gateways.
#[derive(Debug, Parser)]
#[command(
    name = "tidelog",
    version,
    about = "A durable message store for AI-agent gateways",
    long_about = "A durable message store for AI-agent gateways.\n\n\
        Every write goes to a checksummed journal first (one lane per writing process) and is \
        acknowledged once it is durable; a SQLite + FTS5 trigram index is derived from the \
        journal and can always be rebuilt from it.",
    after_help = EXIT_CODES
)]
pub(crate) struct Cli {
    /// The store folder.
    #[arg(long, env = "TIDELOG_DIR", global = true, value_name = "DIR")]
    pub(crate) dir: Option<PathBuf>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Log on stderr (-v info, -vv debug, -vvv trace; none by default). RUST_LOG overrides it.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub(crate) verbose: u8,
    /// Print only results and errors: no progress, no warnings.
    #[arg(short, long, global = true)]
    pub(crate) quiet: bool,
    /// Colors on stderr: auto (a terminal, and NO_COLOR unset), always or never.
    #[arg(long, value_enum, default_value = "auto", global = true, value_name = "WHEN")]
    pub(crate) color: ColorChoice,
    /// A PostgreSQL database shared by many stores (libpq URL): writers ship their batches to it
    /// in the background, `sync` ships what it lacks, `search` runs there across every store.
    #[arg(long, env = "TIDELOG_POSTGRES", global = true, value_name = "URL")]
    pub(crate) postgres: Option<String>,
    /// Largest record accepted when writing (bytes; for tests).
    #[arg(long, env = "TIDELOG_MAX_RECORD_SIZE", global = true, hide = true)]
    pub(crate) max_record_size: Option<u32>,
    /// Journal segment size for new segments (bytes; for tests).
    #[arg(long, env = "TIDELOG_SEGMENT_SIZE", global = true, hide = true)]
    pub(crate) segment_size: Option<u64>,
    #[command(subcommand)]
    pub(crate) cmd: Cmd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ExportFormat {
    /// One JSON message per line, the fields `append --jsonl` reads plus `id`.
    Jsonl,
    /// One `<session>.jsonl` file per session in --out, as Hermes Agent writes them.
    HermesJsonl,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Order {
    Relevance,
    Newest,
    Oldest,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Cmd {
    /// Create a store in the --dir folder (missing or empty). A folder that already is a store
    /// is left as it is; any other non-empty folder is refused.
    Init,
    /// Append messages read as JSON lines on stdin; acknowledge each once it is durable.
    #[command(after_help = "Each input line is a JSON object: session_id, role, content, and optionally id, \
        timestamp (seconds or ISO-8601), source, tool_calls (any JSON), tool_call_id, tool_name, reasoning, \
        token_count, finish_reason, extra (object). For each line the command prints \
        {\"ack\": LINE, \"id\": \"...\"} on stdout once the message is durable, or \
        {\"line\": LINE, \"error\": \"...\"} if the line is refused, and goes on (exit 1 at the end if a line \
        was refused). A client id makes the append idempotent: a resend is acknowledged with \
        \"duplicate\": true (and \"conflict\": true if its content differs; the first version is kept). \
        The store folder must be a store, or a new or empty folder.")]
    Append {
        /// Read JSON lines (the only input format).
        #[arg(long, required = true)]
        jsonl: bool,
    },
    /// Print messages as JSON lines, oldest first (or write Hermes-style session files).
    Export {
        /// Only this session.
        #[arg(long)]
        session: Option<String>,
        /// Only messages at or after this time (seconds since the epoch or ISO-8601).
        #[arg(long, value_name = "T")]
        since: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormat,
        /// Where to write: a new file for jsonl (default: stdout), a folder for hermes-jsonl
        /// (created; existing files are never overwritten).
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
    },
    /// Check every lane's segments and the index without changing anything (safe while writers
    /// run), and search every file of the store for the text of deleted messages.
    Verify,
    /// Recover lanes not held by a live writer, rebuild a damaged index, then verify. Deletes nothing.
    Repair {
        /// Keep every valid record past mid-log damage: the damage goes to the quarantine and the
        /// lost LSNs are reported.
        #[arg(long)]
        salvage: bool,
    },
    /// Rebuild the index from the journal. A healthy index is replaced (not kept); a damaged
    /// one is moved to the quarantine.
    RebuildIndex,
    /// List or remove what repair and recovery set aside (damaged files, cut tails).
    #[command(subcommand)]
    Quarantine(QuarantineCmd),
    /// Build a fresh index at FILE.db from the journal (the store is not changed).
    Replay {
        /// The new index file (must not exist).
        #[arg(long, value_name = "FILE.db")]
        to: PathBuf,
    },
    /// Wait until the index has caught up, compress long journal records in place, merge the
    /// full-text indexes if they grew since they last were, then checkpoint the index WAL
    /// (wal_checkpoint(TRUNCATE)).
    Checkpoint {
        /// Longest wait for the index to catch up, in seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Copy the store consistently into DEST while writers keep appending.
    Backup {
        /// The backup folder (must not exist, or be empty).
        dest: PathBuf,
    },
    /// Import a Hermes Agent store.
    #[command(subcommand)]
    Import(ImportCmd),
    /// Full-text search: FTS5's query language on the trigram index (substrings, any script).
    Search(SearchArgs),
    /// List sessions, newest first.
    Sessions {
        /// Only sessions from this source.
        #[arg(long)]
        source: Option<String>,
        /// Only sessions whose title contains this text.
        #[arg(long)]
        title: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Lanes, segments, sizes, LSNs, compactor lag, index, quarantine (and the PostgreSQL lag
    /// with --postgres).
    Stats {
        /// Also where the index's bytes are, by part (full-text indexes, messages, sessions...):
        /// reads every page of the index (about 30 s for a million messages).
        #[arg(long)]
        bytes: bool,
    },
    /// The store's health: lanes, index, background threads that panicked or keep failing,
    /// records that cannot be read, and every other problem. Exit 1 when degraded.
    Status,
    /// Ship every journal entry the PostgreSQL database (--postgres) lacks, exactly once, and
    /// report the lag per lane. Exit 1 if the database is ahead of a journal (a journal was lost).
    Sync,
    /// Erase deleted content from every file of the store now (optionally deleting sessions
    /// first), then search every file for it. Exit 1 if something still holds it.
    Erase {
        /// Delete this session first (repeatable).
        #[arg(long = "session", value_name = "ID")]
        sessions: Vec<String>,
        /// With --session: also delete sessions whose parent chain leads to it.
        #[arg(long)]
        children: bool,
    },
    /// Print the newest messages; -f keeps printing new ones.
    Tail {
        /// Follow new appends (polling).
        #[arg(short, long)]
        follow: bool,
        /// Only this session.
        #[arg(long)]
        session: Option<String>,
        /// How many of the newest messages to print first.
        #[arg(short = 'n', long, default_value_t = 10)]
        lines: usize,
    },
    /// Play a gateway: writer processes append, one is killed, the store recovers; nothing acked is lost.
    Demo {
        /// Concurrent writer processes.
        #[arg(long, default_value_t = 4)]
        writers: usize,
        /// Messages to write in total.
        #[arg(long, default_value_t = 2000)]
        messages: usize,
    },
    #[command(name = "__demo-writer", hide = true)]
    DemoWriter {
        #[arg(long)]
        writer: usize,
        #[arg(long)]
        count: usize,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ImportCmd {
    /// Import a Hermes `state.db` (any schema version; damaged files are read row by row).
    Hermes {
        /// The Hermes SQLite file.
        #[arg(value_name = "FILE.db")]
        file: PathBuf,
    },
    /// Import Hermes JSONL session files (files or folders of *.jsonl).
    Jsonl {
        /// Files or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum QuarantineCmd {
    /// Every quarantined item with its note and size.
    List,
    /// Delete quarantined items for good (nothing else ever deletes them).
    Remove {
        /// Item names as `quarantine list` prints them.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        names: Vec<String>,
        /// Every item.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Args)]
pub(crate) struct SearchArgs {
    /// What to look for: words that must each occur, as substrings (no operators; may start
    /// with `-`), or with --fts5 an FTS5 query (`"a b"`, `a OR b`, `a NOT b`, `NEAR(a b, 5)`,
    /// `tool_name:x`; quote text with `-`, `:` or punctuation).
    #[arg(allow_hyphen_values = true)]
    pub(crate) query: String,
    /// Read the query in FTS5's query language (as Hermes Agent's search does).
    #[arg(long)]
    pub(crate) fts5: bool,
    /// Only this session.
    #[arg(long)]
    pub(crate) session: Option<String>,
    /// Only this role.
    #[arg(long)]
    pub(crate) role: Option<String>,
    /// Only this source.
    #[arg(long)]
    pub(crate) source: Option<String>,
    /// At most this many hits.
    #[arg(long, default_value_t = 20)]
    pub(crate) limit: usize,
    /// Result order.
    #[arg(long, value_enum, default_value = "relevance")]
    pub(crate) order: Order,
}

/// What a command concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Exit 0.
    Fine,
    /// Exit 1.
    Problem,
}

/// How an embedding program runs the tool ([`main_with_options`]).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Options {
    /// The program and leading arguments that start this tool again in a new process, its own
    /// arguments following them: `demo` starts its writer processes this way. Default (empty):
    /// this executable (`std::env::current_exe()`). The Python package passes
    /// `[sys.executable, "-m", "tidelog"]`, since its executable is the Python interpreter.
    pub relaunch: Vec<OsString>,
}

/// Runs the tool on a command line (`args[0]` is the program name, as in
/// `std::env::args_os()`) with the default [`Options`], and returns its exit code: 0 fine, 1 a
/// problem was found, 2 usage or I/O error (the list is in `tidelog --help`).
///
/// Results go to this process's stdout, messages to its stderr. A closed stdout (`| head`) is
/// no error. A panic prints `tidelog: internal error ...` and ends the process with exit code 2.
pub fn main_with_args<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    main_with_options(args, &Options::default())
}

/// [`main_with_args`] with [`Options`] for a program that embeds the tool.
///
/// While it runs, a panic hook is installed (any thread's panic prints one line and ends the
/// process with exit code 2, as the binary does); the previous hook is put back afterwards.
pub fn main_with_options<I, T>(args: I, options: &Options) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        util::err_line(format!("tidelog: internal error{at}: {msg}; please report it"));
        std::process::exit(2);
    }));
    let code = match parse_args(&args) {
        Ok(cli) => run_parsed(&cli, options),
        Err(code) => code,
    };
    std::panic::set_hook(previous);
    code
}

fn run_parsed(cli: &Cli, options: &Options) -> i32 {
    util::set_output(util::color_enabled(cli.color), cli.quiet);
    util::init_logging(cli.verbose);
    match run(cli, options) {
        Ok(Outcome::Fine) => 0,
        Ok(Outcome::Problem) => 1,
        // `| head`: a reading command stops quietly; one that wrote to the store did its work
        // (its report is what could not be printed) and says so where it still can.
        Err(e) if e.is::<util::StdoutClosed>() => {
            if writes_store(&cli.cmd) {
                util::err_line(
                    "tidelog: note: stdout was closed; the command finished its work but could not print its report",
                );
            }
            0
        }
        Err(e) => {
            util::err_line(format!("{}{}", util::error_prefix(), util::render_error(&e)));
            if let Some(hint) = util::hint(&e) {
                util::err_line(format!("tidelog: {hint}"));
            }
            2
        }
    }
}

/// Parses the command line. Help and version go to stdout (`Err(0)`); a usage error is printed
/// like every other error (`tidelog: error: ...`, `Err(2)`), followed by clap's usage lines.
fn parse_args(args: &[OsString]) -> Result<Cli, i32> {
    // The color choice is needed before parsing, to style clap's own messages.
    let mut choice = ColorChoice::Auto;
    for (i, a) in args.iter().enumerate() {
        let v = match a.to_str() {
            Some("--color") => args.get(i + 1).and_then(|v| v.to_str()),
            Some(s) => s.strip_prefix("--color="),
            None => None,
        };
        if let Some(v) = v.and_then(|v| ColorChoice::from_str(v, true).ok()) {
            choice = v;
        }
    }
    let color = util::color_enabled(choice);
    util::set_output(color, false);
    let cmd = Cli::command().color(if color { clap::ColorChoice::Always } else { clap::ColorChoice::Never });
    match cmd.try_get_matches_from(args).and_then(|m| Cli::from_arg_matches(&m)) {
        Ok(cli) => Ok(cli),
        Err(e) if !e.use_stderr() => {
            // --help, --version: stdout; a closed stdout is no error here either.
            let _ = e.print();
            Err(e.exit_code())
        }
        Err(e) => {
            // Plain text: our prefix carries the color, the rest reads the same either way.
            let text = e.render().to_string();
            let body = text.trim_end();
            util::err_line(format!("{}{}", util::error_prefix(), body.strip_prefix("error: ").unwrap_or(body)));
            Err(2)
        }
    }
}

/// Whether a command changes the store (its report comes after its work).
fn writes_store(cmd: &Cmd) -> bool {
    !matches!(
        cmd,
        Cmd::Export { .. }
            | Cmd::Verify
            | Cmd::Search(_)
            | Cmd::Sessions { .. }
            | Cmd::Stats { .. }
            | Cmd::Status
            | Cmd::Tail { .. }
            | Cmd::Quarantine(QuarantineCmd::List)
    )
}

fn run(cli: &Cli, options: &Options) -> anyhow::Result<Outcome> {
    match &cli.cmd {
        Cmd::Init => init::run(cli),
        Cmd::Append { .. } => append::run(cli),
        Cmd::Export { session, since, format, out } => {
            export::export(cli, session.as_deref(), since.as_deref(), *format, out.as_deref())
        }
        Cmd::Verify => check::verify(cli),
        Cmd::Repair { salvage } => check::repair(cli, *salvage),
        Cmd::RebuildIndex => check::rebuild_index(cli),
        Cmd::Quarantine(QuarantineCmd::List) => quarantine::quarantine_list(cli),
        Cmd::Quarantine(QuarantineCmd::Remove { names, all }) => quarantine::quarantine_remove(cli, names, *all),
        Cmd::Replay { to } => check::replay(cli, to),
        Cmd::Checkpoint { timeout } => maintain::checkpoint(cli, *timeout),
        Cmd::Backup { dest } => maintain::backup(cli, dest),
        Cmd::Import(ic) => import::run(cli, ic),
        Cmd::Search(a) => reads::search(cli, a),
        Cmd::Sessions { source, title, limit } => reads::sessions(cli, source.clone(), title.clone(), *limit),
        Cmd::Stats { bytes } => maintain::stats(cli, *bytes),
        Cmd::Status => status::run(cli),
        Cmd::Sync => sync::run(cli),
        Cmd::Erase { sessions, children } => erase::run(cli, sessions, *children),
        Cmd::Tail { follow, session, lines } => reads::tail(cli, *follow, session.as_deref(), *lines),
        Cmd::Demo { writers, messages } => demo::run(cli, options, *writers, *messages),
        Cmd::DemoWriter { writer, count } => demo::writer(cli, *writer, *count),
    }
}
