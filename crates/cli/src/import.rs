//! `tidelog import hermes FILE.db` and `tidelog import jsonl PATH...`.
//!
//! Every imported entry goes through a `Store`: messages in batches of 500 (their ids are
//! deterministic, so a re-import finds them stored and adds nothing), session changes one by one
//! and only when they change something.
//!
//! A message the import had to repair (lossy text, a key taken from its neighbours) is first
//! looked up by its Hermes row (session, role, rowid): when the store already holds that row,
//! imported from a healthier copy of the database, the damaged copy is counted as a
//! near-duplicate and not added.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;
use tidelog::{Entry, Message, Session, SessionFilter, Store};
use tidelog::{ImportReport, hermes_source_rowid, import_hermes_db, import_jsonl, is_repaired_import};

use crate::util::{self, Reporter, print_json, say};
use crate::{Cli, ImportCmd, Outcome};

const BATCH: usize = 500;
/// Warnings printed on stderr; --json has all of them.
const WARNINGS_SHOWN: usize = 10;

type SinkError = Box<dyn std::error::Error + Send + Sync>;

struct Sink<'a> {
    store: &'a Store,
    pending: Vec<Message>,
    sessions: HashMap<String, Session>,
    added_messages: u64,
    seen_messages: u64,
    changed_sessions: u64,
    refused: Vec<String>,
    /// Repaired messages whose Hermes row the store already holds under another id.
    near_duplicates: Vec<String>,
    /// Per session: the stored messages by Hermes row (role, rowid) -> id.
    rows: HashMap<String, HashMap<(String, i64), String>>,
    reporter: Reporter,
    /// Messages in the source, when they could be counted beforehand (0: unknown).
    expected: u64,
}

impl Sink<'_> {
    fn flush(&mut self) -> Result<(), SinkError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.pending);
        match self.store.append_batch(batch.clone()) {
            Ok(acks) => self.added_messages += acks.iter().filter(|a| a.lsn.is_some()).count() as u64,
            Err(tidelog::Error::Invalid(_)) => {
                // One message the store refuses (damaged source data): keep the others.
                for m in batch {
                    let id = m.id.clone();
                    match self.store.append(m) {
                        Ok(a) => self.added_messages += u64::from(a.lsn.is_some()),
                        Err(tidelog::Error::Invalid(why)) => {
                            self.refused.push(format!("message {id} refused by the store: {why}"));
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            Err(e) => return Err(e.into()),
        }
        self.reporter.update("importing messages", self.seen_messages, self.expected.max(self.seen_messages));
        Ok(())
    }

    /// The id under which the store holds the Hermes row `m` was imported from, if another
    /// than `m`'s own.
    fn stored_row(&mut self, m: &Message) -> Result<Option<String>, SinkError> {
        let Some(rowid) = hermes_source_rowid(m) else { return Ok(None) };
        if !self.rows.contains_key(&m.session_id) {
            // What this import added so far must be visible too.
            self.flush()?;
            let mut by_row = HashMap::new();
            for s in self.store.messages(&m.session_id)? {
                if let Some(r) = hermes_source_rowid(&s) {
                    by_row.insert((s.role.clone(), r), s.id);
                }
            }
            self.rows.insert(m.session_id.clone(), by_row);
        }
        let stored = self.rows.get(&m.session_id).and_then(|rows| rows.get(&(m.role.clone(), rowid)));
        Ok(stored.filter(|id| **id != m.id).cloned())
    }

    fn take(&mut self, e: Entry) -> Result<(), SinkError> {
        match e {
            Entry::Message(m) => {
                self.seen_messages += 1;
                if is_repaired_import(&m)
                    && let Some(stored) = self.stored_row(&m)?
                {
                    let rowid = hermes_source_rowid(&m).unwrap_or_default();
                    self.near_duplicates.push(format!(
                        "session {} row {rowid}: a damaged copy of stored message {stored}; not added",
                        m.session_id
                    ));
                    return Ok(());
                }
                self.pending.push(m);
                if self.seen_messages.is_multiple_of(50) {
                    self.reporter.update(
                        "importing messages",
                        self.seen_messages,
                        self.expected.max(self.seen_messages),
                    );
                }
                if self.pending.len() >= BATCH {
                    self.flush()?;
                }
            }
            Entry::Session(p) => {
                self.flush()?;
                let before = self.sessions.get(&p.id).cloned();
                let after = p.apply_to(before.clone());
                if before.as_ref() != Some(&after) {
                    self.store.upsert_session(p)?;
                    self.changed_sessions += 1;
                    self.sessions.insert(after.id.clone(), after);
                }
            }
            other => return Err(format!("an import produced an unexpected entry: {other:?}").into()),
        }
        Ok(())
    }
}

fn expand(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        let m = std::fs::metadata(p).with_context(|| format!("cannot read {}; check the path", p.display()))?;
        if m.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("cannot list {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "jsonl"))
                .collect();
            files.sort();
            if files.is_empty() {
                bail!("{} holds no .jsonl files", p.display());
            }
            out.extend(files);
        } else {
            if is_sqlite(p) {
                bail!(
                    "{} is a SQLite database, not JSON lines; for a Hermes state.db use `tidelog import hermes {}`",
                    p.display(),
                    p.display()
                );
            }
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn check_source(p: &Path) -> anyhow::Result<()> {
    match std::fs::metadata(p) {
        Ok(m) if m.is_file() => {}
        Ok(_) => bail!("{} is not a file; give the Hermes state.db file", p.display()),
        Err(e) => bail!("cannot read {}: {e}; check the path", p.display()),
    }
    if is_tidelog_index(p) {
        bail!(
            "{} is a Tidelog index, not a Hermes state.db; it is derived from a store's journal (use `tidelog backup` to copy a store)",
            p.display()
        );
    }
    Ok(())
}

/// Whether a file starts like a SQLite database.
fn is_sqlite(p: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 16];
    std::fs::File::open(p).and_then(|mut f| f.read_exact(&mut head)).is_ok() && &head == b"SQLite format 3\0"
}

/// Whether a SQLite file is a Tidelog index (its `applied` positions table and FTS table), which
/// `import hermes` would otherwise read as a Hermes store of another schema.
fn is_tidelog_index(p: &Path) -> bool {
    use rusqlite::{Connection, OpenFlags};
    if !is_sqlite(p) {
        return false;
    }
    let Some(path) = p.to_str() else { return false };
    let uri = format!("file:{}?immutable=1", path.replace('%', "%25").replace('?', "%3f").replace('#', "%23"));
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    Connection::open_with_flags(uri, flags)
        .and_then(|c| {
            c.query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('applied', 'messages_fts', 'session_ops')",
                [],
                |r| r.get::<_, i64>(0),
            )
        })
        .is_ok_and(|n| n >= 2)
}

pub fn run(cli: &Cli, cmd: &ImportCmd) -> anyhow::Result<Outcome> {
    let sources = match cmd {
        ImportCmd::Hermes { file } => {
            check_source(file)?;
            vec![file.clone()]
        }
        ImportCmd::Jsonl { paths } => expand(paths)?,
    };
    let dir = util::new_or_existing_store(cli)?;
    let store = util::open_store(cli, &dir)?;
    let known = store.list_sessions(&SessionFilter::default()).context("cannot list the sessions already stored")?;
    let mut sink = Sink {
        store: &store,
        pending: Vec::new(),
        sessions: known.into_iter().map(|s| (s.id.clone(), s)).collect(),
        added_messages: 0,
        seen_messages: 0,
        changed_sessions: 0,
        refused: Vec::new(),
        near_duplicates: Vec::new(),
        rows: HashMap::new(),
        reporter: Reporter::new(),
        expected: 0,
    };
    sink.reporter.working("counting the messages to import");
    sink.expected = match cmd {
        ImportCmd::Hermes { file } => count_hermes_messages(file),
        ImportCmd::Jsonl { .. } => count_jsonl_messages(&sources),
    };
    sink.reporter.update("importing messages", 0, sink.expected);
    let started = Instant::now();
    let result: Result<ImportReport, String> = {
        let mut f = |e: Entry| sink.take(e);
        match cmd {
            ImportCmd::Hermes { file } => import_hermes_db(file, &mut f).map_err(|e| e.to_string()),
            ImportCmd::Jsonl { .. } => import_jsonl(&sources, &mut f).map_err(|e| e.to_string()),
        }
    };
    let flushed = sink.flush();
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            sink.reporter.finish();
            let what = sources.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
            bail!("cannot import {what}: {e}");
        }
    };
    flushed.map_err(|e| anyhow::anyhow!("cannot append to the store at {}: {e}", dir.display()))?;
    // Let the compactor index what was imported, so searches find it at once (bounded).
    let lag = store.status().unindexed;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !store.wait_indexed(Duration::from_millis(200)) && Instant::now() < deadline {
        let left = store.status().unindexed;
        sink.reporter.update("indexing for search", lag.saturating_sub(left), lag);
    }
    sink.reporter.finish();
    let (added, changed) = (sink.added_messages, sink.changed_sessions);
    let refused = std::mem::take(&mut sink.refused);
    let near_duplicates = std::mem::take(&mut sink.near_duplicates);
    store.close().with_context(|| format!("cannot close the store at {}", dir.display()))?;
    // Repaired rows are a damaged source too: flagged, imported, and reported as a problem.
    let repaired = report.lossy_utf8_messages
        + report.lossy_utf8_sessions
        + report.session_ids_inferred
        + report.timestamps_inferred;
    let problem = report.unreadable_rows > 0 || repaired > 0 || !report.bad_lines.is_empty() || !refused.is_empty();
    let stored = report
        .messages
        .saturating_sub(added)
        .saturating_sub(refused.len() as u64)
        .saturating_sub(near_duplicates.len() as u64);
    if cli.json {
        print_json(&json!({
            "source": report.source,
            "schema_version": report.schema_version,
            "sessions": report.sessions,
            "messages": report.messages,
            "messages_added": added,
            "messages_already_stored": stored,
            "messages_refused": refused,
            "session_changes_written": changed,
            "messages_near_duplicates": near_duplicates,
            "unreadable_rows": report.unreadable_rows,
            "lossy_utf8_messages": report.lossy_utf8_messages,
            "lossy_utf8_sessions": report.lossy_utf8_sessions,
            "session_ids_inferred": report.session_ids_inferred,
            "timestamps_inferred": report.timestamps_inferred,
            "cut_lines": report.cut_lines.iter().map(|(p, n)| json!({"file": p, "line": n})).collect::<Vec<_>>(),
            "bad_lines": report.bad_lines.iter().map(|(p, n, e)| json!({"file": p, "line": n, "error": e})).collect::<Vec<_>>(),
            "warnings": report.warnings,
            "seconds": started.elapsed().as_secs_f64(),
        }))?;
    } else {
        say(format!(
            "imported {}{}: {} session(s), {} message(s) read, {} added, {} already stored",
            report.source.display(),
            report.schema_version.map(|v| format!(" (schema version {v})")).unwrap_or_default(),
            report.sessions,
            report.messages,
            added,
            stored
        ))?;
        if !report.warnings.is_empty() {
            say(format!(
                "{} warning(s) about the source data{}",
                report.warnings.len(),
                if util::quiet() { " (not shown with --quiet; all of them with --json)" } else { " (on stderr)" }
            ))?;
        }
        // One line per kind of repair, only when there was some.
        let repairs = [
            (report.lossy_utf8_messages, "message(s) with text that is not valid UTF-8, decoded lossily and flagged"),
            (report.lossy_utf8_sessions, "session(s) with text that is not valid UTF-8, decoded lossily and flagged"),
            (
                report.session_ids_inferred,
                "message(s) whose session id was unreadable, taken from the neighbouring rows",
            ),
            (report.timestamps_inferred, "message(s) whose timestamp was unreadable, taken from their session's rows"),
            (
                near_duplicates.len() as u64,
                "damaged near-duplicate(s) of messages already stored from a healthier copy, not added",
            ),
        ];
        for (n, what) in repairs {
            if n > 0 {
                say(format!("{n} {what}"))?;
            }
        }
        if report.unreadable_rows > 0 {
            say(format!(
                "{} row(s) could not be read (the source is damaged); everything readable was imported",
                report.unreadable_rows
            ))?;
        }
    }
    // Problems: one line each on stderr (in --json they are in the report).
    if !cli.json {
        for r in &refused {
            util::warn_line(format!("refused: {r}"));
        }
        for (p, n) in &report.cut_lines {
            util::warn_line(format!("{}:{n}: a line cut off mid-write was skipped", p.display()));
        }
        for (p, n, e) in &report.bad_lines {
            util::warn_line(format!("{}:{n}: unreadable line skipped: {e}", p.display()));
        }
        let groups = group_alike(&report.warnings);
        for (w, more) in groups.iter().take(WARNINGS_SHOWN) {
            match more {
                0 => util::warn_line(w),
                n => util::warn_line(format!("{w} (and {n} more like it)")),
            }
        }
        if groups.len() > WARNINGS_SHOWN {
            let rest: usize = groups.iter().skip(WARNINGS_SHOWN).map(|(_, n)| n + 1).sum();
            util::warn_line(format!("... and {rest} more warning(s) (all of them with --json)"));
        }
    }
    Ok(if problem { Outcome::Problem } else { Outcome::Fine })
}

/// Messages in a Hermes `state.db`, for the progress bar (0 when they cannot be counted, e.g.
/// a damaged file; the import then shows a count without a total).
fn count_hermes_messages(file: &Path) -> u64 {
    use rusqlite::{Connection, OpenFlags};
    let Some(path) = file.to_str() else { return 0 };
    let uri = format!("file:{}?immutable=1", path.replace('%', "%25").replace('?', "%3f").replace('#', "%23"));
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    Connection::open_with_flags(uri, flags)
        .and_then(|c| c.query_row("SELECT count(*) FROM messages", [], |r| r.get::<_, i64>(0)))
        .map_or(0, |n| u64::try_from(n).unwrap_or(0))
}

/// Lines of Hermes JSONL files that hold a message (not the `session_meta` line), for the
/// progress bar.
fn count_jsonl_messages(files: &[PathBuf]) -> u64 {
    use tidelog::validate::{Line, MAX_LINE_LEN, read_line};
    let mut n = 0;
    let mut buf = Vec::new();
    for f in files {
        let Ok(file) = std::fs::File::open(f) else { return 0 };
        let mut r = std::io::BufReader::new(file);
        // Streamed with lines bounded: a huge or endless file (`/dev/zero`) stops the count
        // where the import itself will stop with an error.
        while let Ok(Line::Text { .. }) = read_line(&mut r, &mut buf, MAX_LINE_LEN) {
            let is_meta = buf.windows(12).any(|w| w == b"session_meta");
            if !is_meta && buf.iter().any(|b| !b.is_ascii_whitespace()) {
                n += 1;
            }
        }
    }
    n
}

/// Runs of warnings that differ only in their numbers ("row 22 cannot be read", "row 23 ...")
/// as one line each: the first warning of the run and how many more followed it.
fn group_alike(warnings: &[String]) -> Vec<(&str, usize)> {
    let shape = |w: &str| -> String {
        let mut out = String::with_capacity(w.len());
        for c in w.chars() {
            if c.is_ascii_digit() {
                if !out.ends_with('#') {
                    out.push('#');
                }
            } else {
                out.push(c);
            }
        }
        out
    };
    let mut groups: Vec<(&str, usize, String)> = Vec::new();
    for w in warnings {
        let sh = shape(w);
        match groups.last_mut() {
            Some((_, n, last)) if *last == sh => *n += 1,
            _ => groups.push((w.as_str(), 0, sh)),
        }
    }
    groups.into_iter().map(|(w, n, _)| (w, n)).collect()
}
