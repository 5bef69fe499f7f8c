//! Import of Hermes Agent session stores: a SQLite `state.db` of any schema version, and the
//! JSONL session sidecars (`~/.hermes/sessions/<id>.jsonl`).
//!
//! Both importers stream [`Entry`] values to a caller-supplied sink: every session patch first,
//! then every message. Nothing is held in memory beyond one row (plus, when a damaged database
//! forces a row-by-row salvage, one small sort key per message).
//!
//! # Reading the database
//!
//! The database is opened read-only through the URI `file:…?mode=ro&immutable=1`: SQLite creates
//! no `-wal`, `-shm` or journal file, takes no lock and runs no checkpoint, so the source stays
//! byte-for-byte unchanged. The flip side of `immutable=1` is that commits still sitting in a
//! `-wal` file beside the database are not seen; the importer says so in
//! [`ImportReport::warnings`] when such a file exists.
//!
//! Columns are discovered with `PRAGMA table_info`, so every schema era (v2 to v30 and later)
//! is read. Columns the model has a field for fill that field; every other non-null column goes,
//! under its Hermes column name, into the `extra` JSON object, so nothing is lost. TEXT becomes
//! a JSON string (JSON-holding columns such as `model_config` stay strings, verbatim), INTEGER and
//! REAL become numbers, and a BLOB becomes `{"$blob": "<hex>"}`. From schema v25 sessions point
//! at a deduplicated `system_prompts` row by SHA-256 (`system_prompt_hash`); the prompt text is
//! resolved and stored in the session's `extra` as `system_prompt`, the key under which older
//! schemas keep it inline, so sessions of every era look the same after import.
//!
//! When a full scan fails (a damaged file: "database disk image is malformed"), the importer
//! falls back to reading one row at a time by rowid, over the rowid range and every rowid any
//! readable index lists. A row whose identifying columns (`session_id`, `role`, `content`,
//! `timestamp` for a message; `id` for a session) cannot be read is skipped and counted in
//! [`ImportReport::unreadable_rows`], as is a rowid an index lists but the table no longer
//! finds. A row whose other columns cannot be read is imported without them, and their names
//! are listed in its `extra` under `logbook_unreadable_columns`.
//!
//! # Message ids
//!
//! Hermes message ids are per-database integers, so imported messages get a deterministic id,
//! [`imported_message_id`], computed from what the database and the sidecar both carry. The same
//! conversation imported from both therefore yields the same ids, and the store, which ignores a
//! message id it already has, keeps one copy.

use std::collections::{HashMap, HashSet};
use std::error::Error as StdError;
use std::fmt::{self, Write as _};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use crate::model::{Entry, Message, SessionPatch};

/// What a sink returns to refuse an entry; the import stops and returns
/// [`ImportError::Sink`] carrying it.
pub type SinkError = Box<dyn StdError + Send + Sync>;

/// The most detailed warnings kept in a report; later ones are only counted.
const MAX_WARNINGS: usize = 200;

/// The widest rowid range a salvage probes one rowid at a time.
const MAX_PROBE_RANGE: i64 = 50_000_000;

/// Rowids probed when a damaged table reveals neither its rowid range nor a readable index.
const BLIND_PROBE_RANGE: i64 = 1_000_000;

/// The key under which a salvaged row lists the columns that could not be read.
const UNREADABLE_COLUMNS_KEY: &str = "logbook_unreadable_columns";

/// Why an import failed. Damage that only costs some rows is not an error: it is counted in the
/// [`ImportReport`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// SQLite could not open the file.
    #[error(
        "cannot open {} as a SQLite database: {source}; check the path and that the file is readable",
        path.display()
    )]
    Open {
        /// The database.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// The file is readable but is not a Hermes Agent store.
    #[error("{} is not a Hermes Agent store: {detail}; point the import at state.db or at the sessions folder", path.display())]
    NotHermes {
        /// The file.
        path: PathBuf,
        /// What is missing or wrong.
        detail: String,
    },
    /// Reading a file or listing a folder failed.
    #[error("cannot read {}: {source}; check that it exists and is readable", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The database is too damaged to read a table even row by row (its schema is unreadable).
    #[error(
        "cannot read table `{table}` of {}, even row by row: {source}; try `sqlite3 {} .recover` into a new file and import that",
        path.display(),
        path.display()
    )]
    Unreadable {
        /// The database.
        path: PathBuf,
        /// The table.
        table: String,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// The sink refused an entry; the entries before it were delivered.
    #[error("import of {} stopped: the store refused an entry: {source}", path.display())]
    Sink {
        /// The file being imported.
        path: PathBuf,
        /// The sink's error.
        #[source]
        source: SinkError,
    },
}

/// What an import read, and what it had to skip.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportReport {
    /// The database, or the first sidecar path given.
    pub source: PathBuf,
    /// `schema_version.version` of the database; `None` for sidecars or when absent.
    pub schema_version: Option<i64>,
    /// Session patches delivered to the sink.
    pub sessions: u64,
    /// Messages delivered to the sink.
    pub messages: u64,
    /// Database rows (sessions and messages) that could not be read and were skipped.
    pub unreadable_rows: u64,
    /// Sidecar lines cut off mid-write (the last line, without a newline, not valid JSON):
    /// file and 1-based line number. Skipped.
    pub cut_lines: Vec<(PathBuf, usize)>,
    /// Sidecar lines that are not a valid message: file, 1-based line number and why. Skipped.
    pub bad_lines: Vec<(PathBuf, usize, String)>,
    /// Everything else worth telling the user, one sentence each (at most 200 kept).
    pub warnings: Vec<String>,
}

/// The deterministic id given to an imported message.
///
/// It is `"hermes-"` followed by 32 lowercase hex digits of a 128-bit FNV-1a hash over, each
/// length-prefixed: the session id, the role, the timestamp in whole milliseconds, the content
/// and the tool call id (`None` and `Some("")` differ). FNV is used for deduplication only; it
/// is not a cryptographic hash and an adversary can forge collisions.
///
/// The timestamp is first rounded to whole microseconds the way Python's
/// `datetime.fromtimestamp` does (half to even on the fractional part), which is how Hermes
/// turns the `time.time()` float it stores in SQLite into the ISO-8601 text of a sidecar, and
/// then floored to milliseconds. A database REAL and the sidecar's ISO text for the same message
/// therefore give the same id, and so does a writer that truncates to milliseconds.
///
/// When one session holds several messages with equal inputs, the importers give the second
/// and later ones an occurrence number as an extra hash input, so they stay distinct; both
/// sources count occurrences the same way.
pub fn imported_message_id(
    session_id: &str,
    role: &str,
    timestamp: f64,
    content: Option<&str>,
    tool_call_id: Option<&str>,
) -> String {
    message_id_with_occurrence(session_id, role, timestamp, content, tool_call_id, 0)
}

fn message_id_with_occurrence(
    session_id: &str,
    role: &str,
    timestamp: f64,
    content: Option<&str>,
    tool_call_id: Option<&str>,
    occurrence: u32,
) -> String {
    let mut h = Fnv128::new();
    h.field(b"logbook/hermes-import/v1");
    h.field(session_id.as_bytes());
    h.field(role.as_bytes());
    h.write(&timestamp_millis(timestamp).to_le_bytes());
    h.optional(content.map(str::as_bytes));
    h.optional(tool_call_id.map(str::as_bytes));
    if occurrence > 0 {
        h.write(&occurrence.to_le_bytes());
    }
    format!("hermes-{:032x}", h.finish())
}

/// Whole milliseconds since the epoch, via Python's rounding to microseconds.
fn timestamp_millis(ts: f64) -> i64 {
    if !ts.is_finite() {
        return i64::MIN;
    }
    let secs = ts.trunc();
    let micros = ((ts - secs) * 1e6).round_ties_even();
    // `as` saturates for out-of-range floats; such timestamps are nonsense either way.
    let total = (secs as i64).saturating_mul(1_000_000).saturating_add(micros as i64);
    total.div_euclid(1000)
}

/// 128-bit FNV-1a (offset basis and prime from the FNV specification).
struct Fnv128(u128);

impl Fnv128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;

    fn new() -> Self {
        Self(Self::OFFSET)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u128::from(b);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    fn field(&mut self, bytes: &[u8]) {
        self.write(&(bytes.len() as u64).to_le_bytes());
        self.write(bytes);
    }

    fn optional(&mut self, bytes: Option<&[u8]>) {
        match bytes {
            None => self.write(&[0]),
            Some(b) => {
                self.write(&[1]);
                self.field(b);
            }
        }
    }

    fn finish(&self) -> u128 {
        self.0
    }
}

/// Gives ids to the messages of one session after another, numbering repeats.
#[derive(Default)]
struct IdAssigner {
    session: String,
    seen: HashMap<String, u32>,
}

impl IdAssigner {
    fn assign(&mut self, m: &Message) -> String {
        if m.session_id != self.session {
            self.session.clone_from(&m.session_id);
            self.seen.clear();
        }
        let base =
            imported_message_id(&m.session_id, &m.role, m.timestamp, m.content.as_deref(), m.tool_call_id.as_deref());
        let n = self.seen.entry(base.clone()).or_insert(0);
        let occurrence = *n;
        *n = n.saturating_add(1);
        if occurrence == 0 {
            base
        } else {
            message_id_with_occurrence(
                &m.session_id,
                &m.role,
                m.timestamp,
                m.content.as_deref(),
                m.tool_call_id.as_deref(),
                occurrence,
            )
        }
    }
}

/// Delivers entries to the sink and keeps the report.
struct Out<'a> {
    path: PathBuf,
    sink: &'a mut dyn FnMut(Entry) -> Result<(), SinkError>,
    report: ImportReport,
    omitted_warnings: u64,
    ids: IdAssigner,
}

impl<'a> Out<'a> {
    fn new(path: PathBuf, sink: &'a mut dyn FnMut(Entry) -> Result<(), SinkError>) -> Self {
        Self {
            report: ImportReport { source: path.clone(), ..ImportReport::default() },
            path,
            sink,
            omitted_warnings: 0,
            ids: IdAssigner::default(),
        }
    }

    fn session(&mut self, patch: SessionPatch) -> Result<(), ImportError> {
        (self.sink)(Entry::Session(patch)).map_err(|source| ImportError::Sink { path: self.path.clone(), source })?;
        self.report.sessions += 1;
        Ok(())
    }

    fn message(&mut self, mut m: Message) -> Result<(), ImportError> {
        m.id = self.ids.assign(&m);
        (self.sink)(Entry::Message(m)).map_err(|source| ImportError::Sink { path: self.path.clone(), source })?;
        self.report.messages += 1;
        Ok(())
    }

    fn warn(&mut self, text: String) {
        tracing::warn!("{text}");
        if self.report.warnings.len() < MAX_WARNINGS {
            self.report.warnings.push(text);
        } else {
            self.omitted_warnings += 1;
        }
    }

    fn finish(mut self) -> ImportReport {
        if self.omitted_warnings > 0 {
            let n = self.omitted_warnings;
            self.report.warnings.push(format!("{n} more warnings not listed (see the log)"));
        }
        self.report
    }
}

// ---------------------------------------------------------------------------------------------
// SQLite
// ---------------------------------------------------------------------------------------------

/// Reads a Hermes Agent `state.db` of any schema version, read-only, and calls `sink` with a
/// [`SessionPatch`] for every session (in rowid order), then with every [`Message`] (ordered by
/// session id, then timestamp, then Hermes row id). Message ids come from
/// [`imported_message_id`]; `message.source` is the session's source.
///
/// The file is opened with `mode=ro&immutable=1` and is never changed: no `-wal` or `-shm` file
/// is created and no checkpoint runs. A damaged file is salvaged row by row (see the module
/// documentation); what was lost is counted in the report. A `sink` error stops the import and
/// is returned as [`ImportError::Sink`].
pub fn import_hermes_db(
    path: &Path,
    sink: &mut dyn FnMut(Entry) -> Result<(), SinkError>,
) -> Result<ImportReport, ImportError> {
    check_sqlite_header(path)?;
    let mut out = Out::new(path.to_path_buf(), sink);
    warn_about_wal(path, &mut out);
    let conn = open_read_only(path)?;
    // Salvage prepares one statement per column; keep them all cached.
    conn.set_prepared_statement_cache_capacity(256);
    let db = Db { conn, path };

    let tables = db.table_names()?;
    if !tables.contains("messages") {
        return Err(ImportError::NotHermes { path: path.to_path_buf(), detail: "it has no `messages` table".into() });
    }
    out.report.schema_version = db.schema_version(&tables, &mut out);

    let message_cols = db.columns("messages")?;
    for required in ["session_id", "role", "timestamp"] {
        if !message_cols.iter().any(|c| c == required) {
            return Err(ImportError::NotHermes {
                path: path.to_path_buf(),
                detail: format!("its `messages` table has no `{required}` column"),
            });
        }
    }

    let mut sources = HashMap::new();
    if tables.contains("sessions") {
        let session_cols = db.columns("sessions")?;
        if session_cols.iter().any(|c| c == "id") {
            let prompts = tables.contains("system_prompts");
            import_sessions(&db, &session_cols, prompts, &mut sources, &mut out)?;
        } else {
            out.warn(format!("{}: table `sessions` has no `id` column; sessions not imported", path.display()));
        }
    } else {
        out.warn(format!("{}: no `sessions` table; only messages imported", path.display()));
    }
    import_messages(&db, &message_cols, &sources, &mut out)?;

    let report = out.finish();
    tracing::info!(
        path = %path.display(),
        schema_version = ?report.schema_version,
        sessions = report.sessions,
        messages = report.messages,
        unreadable_rows = report.unreadable_rows,
        "imported Hermes database"
    );
    Ok(report)
}

fn check_sqlite_header(path: &Path) -> Result<(), ImportError> {
    let io_err = |source| ImportError::Io { path: path.to_path_buf(), source };
    let mut file = File::open(path).map_err(io_err)?;
    if file.metadata().map_err(io_err)?.is_dir() {
        return Err(ImportError::NotHermes {
            path: path.to_path_buf(),
            detail: "it is a folder, not a database file (sidecar folders are imported as JSONL)".into(),
        });
    }
    let mut header = [0u8; 16];
    let mut got = 0;
    while got < header.len() {
        match file.read(&mut header[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err(e)),
        }
    }
    if got < header.len() || &header != b"SQLite format 3\0" {
        return Err(ImportError::NotHermes {
            path: path.to_path_buf(),
            detail: "it does not start with the SQLite header".into(),
        });
    }
    Ok(())
}

fn warn_about_wal(path: &Path, out: &mut Out<'_>) {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let wal = PathBuf::from(wal);
    if let Ok(meta) = std::fs::metadata(&wal)
        && meta.len() > 0
    {
        out.warn(format!(
            "{} exists ({} bytes): commits not yet checkpointed into {} are not imported; \
             stop Hermes Agent so it checkpoints on close, then import again",
            wal.display(),
            meta.len(),
            path.display()
        ));
    }
}

/// `file:` URI for `path`, read-only and immutable.
fn read_only_uri(path: &Path) -> String {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let raw = abs.as_os_str().as_encoded_bytes();
    let mut uri = String::from("file:");
    if cfg!(windows) {
        uri.push('/');
    }
    for &b in raw {
        match b {
            b'\\' if cfg!(windows) => uri.push('/'),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                uri.push(char::from(b));
            }
            b':' if cfg!(windows) => uri.push(':'),
            _ => {
                let _ = write!(uri, "%{b:02X}");
            }
        }
    }
    uri.push_str("?mode=ro&immutable=1");
    uri
}

fn open_read_only(path: &Path) -> Result<Connection, ImportError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    Connection::open_with_flags(read_only_uri(path), flags)
        .map_err(|source| ImportError::Open { path: path.to_path_buf(), source })
}

/// One value read from SQLite, owned. Text stays bytes until it is decoded.
#[derive(Debug, Clone)]
enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(Vec<u8>),
    Blob(Vec<u8>),
}

impl Cell {
    fn from_ref(v: ValueRef<'_>) -> Self {
        match v {
            ValueRef::Null => Cell::Null,
            ValueRef::Integer(i) => Cell::Int(i),
            ValueRef::Real(f) => Cell::Real(f),
            ValueRef::Text(t) => Cell::Text(t.to_vec()),
            ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
        }
    }
}

fn read_cells(row: &rusqlite::Row<'_>, n: usize) -> rusqlite::Result<Vec<Option<Cell>>> {
    (0..n).map(|i| row.get_ref(i).map(|v| Some(Cell::from_ref(v)))).collect()
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

struct Db<'p> {
    conn: Connection,
    path: &'p Path,
}

/// The rowids a salvage probes: a range, plus what the indexes list outside it.
struct Candidates {
    lo: i64,
    hi: i64,
    /// Rowids listed by a readable index, sorted: such a row exists, so not finding it is a loss.
    indexed: Vec<i64>,
}

impl Candidates {
    /// Every candidate, ascending, without materialising the range.
    fn iter(&self) -> impl Iterator<Item = i64> + '_ {
        let below = self.indexed.iter().copied().filter(|r| *r < self.lo);
        let above = self.indexed.iter().copied().filter(|r| *r > self.hi);
        below.chain(self.lo..=self.hi).chain(above)
    }

    fn is_indexed(&self, rowid: i64) -> bool {
        self.indexed.binary_search(&rowid).is_ok()
    }
}

/// The result of reading one row by rowid.
enum RowRead {
    /// Read; `None` marks a column that could not be read.
    Found(Vec<Option<Cell>>),
    /// No row has this rowid.
    Missing,
    /// The identifying columns could not be read.
    Failed(String),
}

impl Db<'_> {
    fn unreadable(&self, table: &str, source: rusqlite::Error) -> ImportError {
        ImportError::Unreadable { path: self.path.to_path_buf(), table: table.to_string(), source }
    }

    fn table_names(&self) -> Result<HashSet<String>, ImportError> {
        let read = || -> rusqlite::Result<HashSet<String>> {
            let mut stmt = self.conn.prepare("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")?;
            let names = stmt.query_map([], |r| r.get::<_, String>(0))?;
            names.collect()
        };
        read().map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::NotADatabase => {
                ImportError::NotHermes {
                    path: self.path.to_path_buf(),
                    detail: "SQLite says it is not a database".into(),
                }
            }
            e => self.unreadable("sqlite_master", e),
        })
    }

    fn columns(&self, table: &str) -> Result<Vec<String>, ImportError> {
        let read = || -> rusqlite::Result<Vec<String>> {
            let mut stmt = self.conn.prepare(&format!("PRAGMA table_info({})", quote_ident(table)))?;
            let names = stmt.query_map([], |r| r.get::<_, String>(1))?;
            names.collect()
        };
        read().map_err(|e| self.unreadable(table, e))
    }

    fn schema_version(&self, tables: &HashSet<String>, out: &mut Out<'_>) -> Option<i64> {
        if !tables.contains("schema_version") {
            out.warn(format!("{}: no `schema_version` table; reading it by its columns", self.path.display()));
            return None;
        }
        match self.conn.query_row("SELECT max(version) FROM schema_version", [], |r| r.get::<_, Option<i64>>(0)) {
            Ok(v) => v,
            Err(e) => {
                out.warn(format!(
                    "{}: cannot read the schema version ({e}); reading the database by its columns",
                    self.path.display()
                ));
                None
            }
        }
    }

    /// Every rowid worth probing in a salvage, ascending.
    fn salvage_candidates(&self, table: &str, out: &mut Out<'_>) -> Candidates {
        let t = quote_ident(table);
        let mut indexed: Vec<i64> = Vec::new();
        let index_names: Vec<String> = self
            .conn
            .prepare(&format!("PRAGMA index_list({t})"))
            .and_then(|mut s| s.query_map([], |r| r.get::<_, String>(1))?.collect::<rusqlite::Result<Vec<_>>>())
            .unwrap_or_default();
        for index in &index_names {
            let sql = format!("SELECT rowid FROM {t} INDEXED BY {}", quote_ident(index));
            let before = indexed.len();
            let result = self.conn.prepare(&sql).and_then(|mut s| {
                let mut rows = s.query([])?;
                while let Some(r) = rows.next()? {
                    indexed.push(r.get::<_, i64>(0)?);
                }
                Ok(())
            });
            let got = indexed.len() - before;
            match result {
                Ok(()) => tracing::info!(table, index, rowids = got, "walked index for salvage"),
                Err(e) => out.warn(format!(
                    "{}: index `{index}` of `{table}` stopped after {got} rowids: {e}",
                    self.path.display()
                )),
            }
        }
        indexed.sort_unstable();
        indexed.dedup();

        let mut lo: Option<i64> = None;
        let mut hi: Option<i64> = None;
        let mut widen = |v: Option<i64>| {
            if let Some(v) = v {
                lo = Some(lo.map_or(v, |l| l.min(v)));
                hi = Some(hi.map_or(v, |h| h.max(v)));
            }
        };
        match self.conn.query_row(&format!("SELECT min(rowid), max(rowid) FROM {t}"), [], |r| {
            Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, Option<i64>>(1)?))
        }) {
            Ok((a, b)) => {
                widen(a);
                widen(b);
            }
            Err(e) => out.warn(format!("{}: cannot read the rowid range of `{table}`: {e}", self.path.display())),
        }
        let seq: Option<i64> =
            self.conn.query_row("SELECT seq FROM sqlite_sequence WHERE name = ?1", [table], |r| r.get(0)).ok();
        if seq.is_some() {
            widen(Some(1));
            widen(seq);
        }
        widen(indexed.first().copied());
        widen(indexed.last().copied());
        let (lo, mut hi) = match (lo, hi) {
            (Some(l), Some(h)) => (l, h),
            _ => {
                out.warn(format!(
                    "{}: `{table}` shows neither its rowid range nor a readable index; \
                     probing rowids 1 to {BLIND_PROBE_RANGE}",
                    self.path.display()
                ));
                (1, BLIND_PROBE_RANGE)
            }
        };
        if hi.saturating_sub(lo) >= MAX_PROBE_RANGE {
            out.warn(format!(
                "{}: `{table}` rowids span {lo} to {hi}; probing only {lo} to {} plus indexed rowids",
                self.path.display(),
                lo.saturating_add(MAX_PROBE_RANGE - 1)
            ));
            hi = lo.saturating_add(MAX_PROBE_RANGE - 1);
        }
        tracing::info!(table, lo, hi, indexed = indexed.len(), "salvaging row by row");
        Candidates { lo, hi, indexed }
    }

    /// Reads one row by rowid: all columns at once, or, when that fails, the `essential` ones
    /// and then every other column on its own.
    fn read_row(&self, table: &str, cols: &[String], essential: &[usize], rowid: i64) -> RowRead {
        let t = quote_ident(table);
        let select = |names: &[&String]| -> rusqlite::Result<Option<Vec<Option<Cell>>>> {
            let list: Vec<String> = names.iter().map(|c| quote_ident(c)).collect();
            let sql = format!("SELECT {} FROM {t} WHERE rowid = ?1", list.join(", "));
            let mut stmt = self.conn.prepare_cached(&sql)?;
            let mut rows = stmt.query([rowid])?;
            match rows.next()? {
                Some(r) => Ok(Some(read_cells(r, names.len())?)),
                None => Ok(None),
            }
        };
        let all: Vec<&String> = cols.iter().collect();
        let full_error = match select(&all) {
            Ok(Some(cells)) => return RowRead::Found(cells),
            Ok(None) => return RowRead::Missing,
            Err(e) => e,
        };
        let ess: Vec<&String> = essential.iter().filter_map(|&i| cols.get(i)).collect();
        let ess_cells = match select(&ess) {
            Ok(Some(cells)) => cells,
            Ok(None) => return RowRead::Missing,
            Err(e) => return RowRead::Failed(e.to_string()),
        };
        let mut cells: Vec<Option<Cell>> = vec![None; cols.len()];
        for (&i, cell) in essential.iter().zip(ess_cells) {
            if let Some(slot) = cells.get_mut(i) {
                *slot = cell;
            }
        }
        for (i, name) in cols.iter().enumerate() {
            if essential.contains(&i) {
                continue;
            }
            if let Ok(Some(mut one)) = select(&[name])
                && let Some(slot) = cells.get_mut(i)
            {
                *slot = one.pop().flatten();
            }
        }
        tracing::debug!(table, rowid, error = %full_error, "row read column by column");
        RowRead::Found(cells)
    }

    fn system_prompt(&self, hash: &str) -> rusqlite::Result<Option<String>> {
        let mut stmt = self.conn.prepare_cached("SELECT prompt FROM system_prompts WHERE hash = ?1")?;
        let mut rows = stmt.query([hash])?;
        match rows.next()? {
            Some(r) => Ok(r.get::<_, Option<String>>(0)?),
            None => Ok(None),
        }
    }
}

/// Decodes a row into model fields, collecting what the model has no field for.
struct Fields<'c> {
    cols: &'c [String],
    cells: Vec<Option<Cell>>,
    extra: Vec<(String, J)>,
    unreadable: Vec<String>,
}

impl<'c> Fields<'c> {
    fn new(cols: &'c [String], cells: Vec<Option<Cell>>) -> Self {
        let mut unreadable = Vec::new();
        for (name, cell) in cols.iter().zip(&cells) {
            if cell.is_none() {
                unreadable.push(name.clone());
            }
        }
        Self { cols, cells, extra: Vec::new(), unreadable }
    }

    fn take(&mut self, name: &str) -> Option<Cell> {
        let i = self.cols.iter().position(|c| c == name)?;
        self.cells.get_mut(i).and_then(Option::take)
    }

    /// A TEXT column the model knows; wrong-typed values go to `extra`.
    fn text(&mut self, name: &str) -> Option<String> {
        match self.take(name)? {
            Cell::Null => None,
            Cell::Text(bytes) => match String::from_utf8(bytes) {
                Ok(s) => Some(s),
                Err(_) => {
                    self.unreadable.push(name.to_string());
                    None
                }
            },
            other => {
                self.keep(name, other);
                None
            }
        }
    }

    /// An identifying TEXT column: present, text, UTF-8.
    fn required_text(&mut self, name: &str) -> Result<String, String> {
        match self.take(name) {
            Some(Cell::Text(bytes)) => String::from_utf8(bytes).map_err(|_| format!("`{name}` is not valid UTF-8")),
            Some(Cell::Null) => Err(format!("`{name}` is NULL")),
            Some(_) => Err(format!("`{name}` is not text")),
            None => Err(format!("`{name}` cannot be read")),
        }
    }

    fn real(&mut self, name: &str) -> Option<f64> {
        match self.take(name)? {
            Cell::Null => None,
            Cell::Real(f) => Some(f),
            Cell::Int(i) => Some(i as f64),
            other => {
                self.keep(name, other);
                None
            }
        }
    }

    fn int(&mut self, name: &str) -> Option<i64> {
        match self.take(name)? {
            Cell::Null => None,
            Cell::Int(i) => Some(i),
            other => {
                self.keep(name, other);
                None
            }
        }
    }

    fn keep(&mut self, name: &str, cell: Cell) {
        let value = match cell {
            Cell::Null => return,
            Cell::Int(i) => J::Int(i),
            Cell::Real(f) => J::Float(f),
            Cell::Text(bytes) => match String::from_utf8(bytes) {
                Ok(s) => J::Str(s),
                Err(_) => {
                    self.unreadable.push(name.to_string());
                    return;
                }
            },
            Cell::Blob(bytes) => {
                let mut hex = String::with_capacity(bytes.len() * 2);
                for b in bytes {
                    let _ = write!(hex, "{b:02x}");
                }
                J::Obj(vec![("$blob".into(), J::Str(hex))])
            }
        };
        self.extra.push((name.to_string(), value));
    }

    /// Moves every column not yet taken into `extra`, and returns it as JSON text.
    fn finish(mut self) -> (Option<String>, Vec<String>) {
        for i in 0..self.cols.len() {
            if let (Some(name), Some(cell)) = (self.cols.get(i).cloned(), self.cells.get_mut(i).and_then(Option::take))
            {
                self.keep(&name, cell);
            }
        }
        if !self.unreadable.is_empty() {
            let names = self.unreadable.iter().cloned().map(J::Str).collect();
            self.extra.push((UNREADABLE_COLUMNS_KEY.to_string(), J::Arr(names)));
        }
        let extra = if self.extra.is_empty() { None } else { Some(J::Obj(self.extra).to_json(Style::Compact)) };
        (extra, self.unreadable)
    }
}

fn session_from_row(
    db: &Db<'_>,
    cols: &[String],
    cells: Vec<Option<Cell>>,
    with_prompts: bool,
    out: &mut Out<'_>,
) -> Result<SessionPatch, String> {
    let mut f = Fields::new(cols, cells);
    let id = f.required_text("id")?;
    let mut p = SessionPatch {
        source: f.text("source"),
        model: f.text("model"),
        title: f.text("title"),
        user_id: f.text("user_id"),
        chat_id: f.text("chat_id"),
        parent_session_id: f.text("parent_session_id"),
        started_at: f.real("started_at"),
        ended_at: f.real("ended_at"),
        end_reason: f.text("end_reason"),
        ..SessionPatch::default()
    };
    // v25+: the prompt lives in `system_prompts`, keyed by its SHA-256.
    let inline_prompt = f.text("system_prompt");
    let hash = f.text("system_prompt_hash");
    let prompt = match (inline_prompt, &hash) {
        (Some(p), _) => Some(p),
        (None, Some(h)) if with_prompts => match db.system_prompt(h) {
            Ok(Some(p)) => Some(p),
            Ok(None) => {
                out.warn(format!("{}: session {id}: system prompt {h} is not in `system_prompts`", db.path.display()));
                None
            }
            Err(e) => {
                out.warn(format!("{}: session {id}: cannot read system prompt {h}: {e}", db.path.display()));
                None
            }
        },
        _ => None,
    };
    if let Some(prompt) = prompt {
        f.extra.push(("system_prompt".into(), J::Str(prompt)));
    }
    if let Some(h) = hash {
        f.extra.push(("system_prompt_hash".into(), J::Str(h)));
    }
    let (extra, unreadable) = f.finish();
    if !unreadable.is_empty() {
        out.warn(format!(
            "{}: session {id}: columns {} could not be read; imported without them",
            db.path.display(),
            unreadable.join(", ")
        ));
    }
    p.id = id;
    p.extra = extra;
    Ok(p)
}

fn import_sessions(
    db: &Db<'_>,
    cols: &[String],
    with_prompts: bool,
    sources: &mut HashMap<String, Option<String>>,
    out: &mut Out<'_>,
) -> Result<(), ImportError> {
    let list: Vec<String> = cols.iter().map(|c| quote_ident(c)).collect();
    let sql = format!("SELECT rowid, {} FROM sessions ORDER BY rowid", list.join(", "));
    let mut last_rowid: Option<i64> = None;
    let scan = (|| -> rusqlite::Result<Result<(), ImportError>> {
        let mut stmt = db.conn.prepare(&sql)?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let rowid: i64 = row.get(0)?;
            let cells: Vec<Option<Cell>> = (1..=cols.len())
                .map(|i| row.get_ref(i).map(|v| Some(Cell::from_ref(v))))
                .collect::<rusqlite::Result<_>>()?;
            // Set first: a skipped row is counted once, not again by the salvage.
            last_rowid = Some(rowid);
            if let Err(e) = emit_session(db, cols, cells, with_prompts, rowid, sources, out) {
                return Ok(Err(e));
            }
        }
        Ok(Ok(()))
    })();
    match scan {
        Ok(result) => return result,
        Err(e) => out.warn(format!(
            "{}: reading `sessions` failed after {} rows ({e}); reading the rest row by row",
            db.path.display(),
            out.report.sessions
        )),
    }
    let candidates = db.salvage_candidates("sessions", out);
    let essential: Vec<usize> = cols.iter().position(|c| c == "id").into_iter().collect();
    for rowid in candidates.iter() {
        if last_rowid.is_some_and(|last| rowid <= last) {
            continue;
        }
        match db.read_row("sessions", cols, &essential, rowid) {
            RowRead::Found(cells) => {
                emit_session(db, cols, cells, with_prompts, rowid, sources, out)?;
            }
            RowRead::Missing if candidates.is_indexed(rowid) => {
                out.report.unreadable_rows += 1;
                out.warn(format!(
                    "{}: `sessions` row {rowid} is listed by an index but cannot be found; skipped",
                    db.path.display()
                ));
            }
            RowRead::Missing => {}
            RowRead::Failed(e) => {
                out.report.unreadable_rows += 1;
                out.warn(format!("{}: `sessions` row {rowid} cannot be read ({e}); skipped", db.path.display()));
            }
        }
    }
    Ok(())
}

fn emit_session(
    db: &Db<'_>,
    cols: &[String],
    cells: Vec<Option<Cell>>,
    with_prompts: bool,
    rowid: i64,
    sources: &mut HashMap<String, Option<String>>,
    out: &mut Out<'_>,
) -> Result<(), ImportError> {
    match session_from_row(db, cols, cells, with_prompts, out) {
        Ok(patch) => {
            sources.insert(patch.id.clone(), patch.source.clone());
            out.session(patch)
        }
        Err(why) => {
            out.report.unreadable_rows += 1;
            out.warn(format!("{}: `sessions` row {rowid} skipped: {why}", db.path.display()));
            Ok(())
        }
    }
}

fn message_from_row(
    cols: &[String],
    cells: Vec<Option<Cell>>,
    sources: &HashMap<String, Option<String>>,
) -> Result<(Message, Vec<String>), String> {
    let mut f = Fields::new(cols, cells);
    let session_id = f.required_text("session_id")?;
    let role = f.required_text("role")?;
    let timestamp = match f.take("timestamp") {
        Some(Cell::Real(t)) => t,
        Some(Cell::Int(t)) => t as f64,
        Some(_) => return Err("`timestamp` is not a number".into()),
        None => return Err("`timestamp` cannot be read".into()),
    };
    let content = match f.take("content") {
        None if cols.iter().any(|c| c == "content") => {
            return Err("`content` cannot be read".into());
        }
        None | Some(Cell::Null) => None,
        Some(Cell::Text(b) | Cell::Blob(b)) => {
            Some(String::from_utf8(b).map_err(|_| "`content` is not valid UTF-8".to_string())?)
        }
        Some(Cell::Int(i)) => Some(i.to_string()),
        Some(Cell::Real(r)) => Some(r.to_string()),
    };
    let mut m = Message {
        source: sources.get(&session_id).cloned().flatten(),
        session_id,
        role,
        content,
        timestamp,
        tool_call_id: f.text("tool_call_id"),
        tool_name: f.text("tool_name"),
        tool_calls: f.text("tool_calls"),
        reasoning: f.text("reasoning"),
        token_count: f.int("token_count"),
        finish_reason: f.text("finish_reason"),
        ..Message::default()
    };
    let (extra, unreadable) = f.finish();
    m.extra = extra;
    // Damaged files can hold tool calls that are no longer JSON: keep the text, verbatim, in
    // `extra` rather than store an invalid `tool_calls` (the store refuses those).
    if let Some(tc) = m.tool_calls.take() {
        if serde_json::from_str::<serde::de::IgnoredAny>(&tc).is_ok() {
            m.tool_calls = Some(tc);
        } else {
            tracing::warn!(session = %m.session_id, "tool_calls is not valid JSON; kept as text in extra.tool_calls_unparsed");
            let patch = serde_json::json!({ "tool_calls_unparsed": tc }).to_string();
            m.extra = Some(crate::model::merge_extra(m.extra.as_deref(), &patch));
        }
    }
    Ok((m, unreadable))
}

/// The order messages are delivered in: session id, timestamp, rowid (as SQLite sorts them).
#[derive(Debug, Clone, PartialEq)]
struct MessageKey {
    session_id: String,
    timestamp: f64,
    rowid: i64,
}

impl MessageKey {
    fn order(&self, other: &Self) -> std::cmp::Ordering {
        self.session_id
            .as_bytes()
            .cmp(other.session_id.as_bytes())
            .then_with(|| self.timestamp.partial_cmp(&other.timestamp).unwrap_or(std::cmp::Ordering::Equal))
            .then_with(|| self.rowid.cmp(&other.rowid))
    }
}

fn emit_message(
    db: &Db<'_>,
    cols: &[String],
    cells: Vec<Option<Cell>>,
    rowid: i64,
    sources: &HashMap<String, Option<String>>,
    out: &mut Out<'_>,
) -> Result<Option<MessageKey>, ImportError> {
    match message_from_row(cols, cells, sources) {
        Ok((m, unreadable)) => {
            if !unreadable.is_empty() {
                out.warn(format!(
                    "{}: `messages` row {rowid}: columns {} could not be read; imported without them",
                    db.path.display(),
                    unreadable.join(", ")
                ));
            }
            let key = MessageKey { session_id: m.session_id.clone(), timestamp: m.timestamp, rowid };
            out.message(m)?;
            Ok(Some(key))
        }
        Err(why) => {
            out.report.unreadable_rows += 1;
            out.warn(format!("{}: `messages` row {rowid} skipped: {why}", db.path.display()));
            Ok(None)
        }
    }
}

fn import_messages(
    db: &Db<'_>,
    cols: &[String],
    sources: &HashMap<String, Option<String>>,
    out: &mut Out<'_>,
) -> Result<(), ImportError> {
    let list: Vec<String> = cols.iter().map(|c| quote_ident(c)).collect();
    let sql = format!("SELECT rowid, {} FROM messages ORDER BY session_id, timestamp, rowid", list.join(", "));
    let mut last: Option<MessageKey> = None;
    // Rows the scan counted as unreadable: the salvage must not count them again.
    let mut counted: HashSet<i64> = HashSet::new();
    let scan = (|| -> rusqlite::Result<Result<(), ImportError>> {
        let mut stmt = db.conn.prepare(&sql)?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let rowid: i64 = row.get(0)?;
            let cells: Vec<Option<Cell>> = (1..=cols.len())
                .map(|i| row.get_ref(i).map(|v| Some(Cell::from_ref(v))))
                .collect::<rusqlite::Result<_>>()?;
            match emit_message(db, cols, cells, rowid, sources, out) {
                Ok(Some(key)) => last = Some(key),
                Ok(None) => {
                    counted.insert(rowid);
                }
                Err(e) => return Ok(Err(e)),
            }
        }
        Ok(Ok(()))
    })();
    match scan {
        Ok(result) => return result,
        Err(e) => out.warn(format!(
            "{}: reading `messages` failed after {} rows ({e}); reading the rest row by row",
            db.path.display(),
            out.report.messages
        )),
    }
    salvage_messages(db, cols, sources, last.as_ref(), &counted, out)
}

fn salvage_messages(
    db: &Db<'_>,
    cols: &[String],
    sources: &HashMap<String, Option<String>>,
    resume_after: Option<&MessageKey>,
    counted: &HashSet<i64>,
    out: &mut Out<'_>,
) -> Result<(), ImportError> {
    let candidates = db.salvage_candidates("messages", out);
    let unreadable_before = out.report.unreadable_rows;
    let messages_before = out.report.messages;

    // Pass 1: the sort key of every readable row (session ids interned: rows share them).
    let mut interned: HashMap<String, u32> = HashMap::new();
    let mut names: Vec<String> = Vec::new();
    let mut keys: Vec<(u32, f64, i64)> = Vec::new();
    let key_cols = vec!["session_id".to_string(), "timestamp".to_string()];
    for rowid in candidates.iter() {
        if counted.contains(&rowid) {
            continue;
        }
        let why = match db.read_row("messages", &key_cols, &[0, 1], rowid) {
            RowRead::Found(mut cells) => {
                let ts = match cells.pop().flatten() {
                    Some(Cell::Real(t)) => Some(t),
                    Some(Cell::Int(t)) => Some(t as f64),
                    _ => None,
                };
                let sid = match cells.pop().flatten() {
                    Some(Cell::Text(b)) => String::from_utf8(b).ok(),
                    _ => None,
                };
                match (sid, ts) {
                    (Some(sid), Some(ts)) => {
                        let next = u32::try_from(names.len()).unwrap_or(u32::MAX);
                        let n = *interned.entry(sid.clone()).or_insert_with(|| {
                            names.push(sid);
                            next
                        });
                        keys.push((n, ts, rowid));
                        continue;
                    }
                    _ => "`session_id` or `timestamp` is unreadable or of the wrong type".into(),
                }
            }
            RowRead::Missing if candidates.is_indexed(rowid) => {
                "it is listed by an index but cannot be found".to_string()
            }
            RowRead::Missing => continue,
            RowRead::Failed(e) => e,
        };
        out.report.unreadable_rows += 1;
        out.warn(format!("{}: `messages` row {rowid} cannot be read ({why}); skipped", db.path.display()));
    }
    let name = |n: u32| names.get(n as usize).map_or("", String::as_str);
    keys.sort_by(|a, b| {
        name(a.0)
            .as_bytes()
            .cmp(name(b.0).as_bytes())
            .then_with(|| a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal))
            .then_with(|| a.2.cmp(&b.2))
    });

    // Pass 2: each row in order, as much of it as can be read.
    let essential: Vec<usize> = ["session_id", "role", "content", "timestamp"]
        .iter()
        .filter_map(|e| cols.iter().position(|c| c == e))
        .collect();
    for (n, ts, rowid) in keys {
        if let Some(last) = resume_after {
            let key = MessageKey { session_id: name(n).to_string(), timestamp: ts, rowid };
            if key.order(last) != std::cmp::Ordering::Greater {
                continue;
            }
        }
        match db.read_row("messages", cols, &essential, rowid) {
            RowRead::Found(cells) => {
                emit_message(db, cols, cells, rowid, sources, out)?;
            }
            RowRead::Missing => {
                out.report.unreadable_rows += 1;
                out.warn(format!("{}: `messages` row {rowid} vanished between reads; skipped", db.path.display()));
            }
            RowRead::Failed(e) => {
                out.report.unreadable_rows += 1;
                out.warn(format!("{}: `messages` row {rowid} cannot be read ({e}); skipped", db.path.display()));
            }
        }
    }
    let salvaged = out.report.messages - messages_before;
    let lost = out.report.unreadable_rows - unreadable_before;
    tracing::warn!(
        path = %db.path.display(),
        salvaged,
        lost,
        "salvaged `messages` row by row"
    );
    out.warn(format!(
        "{}: `messages` is damaged: salvaged {salvaged} rows one by one, {lost} rows unreadable",
        db.path.display()
    ));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// JSONL sidecars
// ---------------------------------------------------------------------------------------------

/// Reads Hermes Agent JSONL session sidecars: files, or folders whose `*.jsonl` files are read
/// in name order (not recursively). Calls `sink` with a [`SessionPatch`] per file (from its
/// `session_meta` first line: session id, model, platform as source, ISO timestamp as start),
/// then with every message of every file, in file order.
///
/// A last line cut off mid-write (no newline at the end and not valid JSON) is skipped and
/// listed in [`ImportReport::cut_lines`]; any other line that is not a message is skipped and
/// listed in [`ImportReport::bad_lines`]. `tool_calls` arrays are stored as JSON text written
/// the way Python's `json.dumps` writes them (as Hermes stores them in SQLite), in their
/// original key order. Content that is a JSON array rather than a string is stored with Hermes'
/// multimodal marker `"\u{0}json:"`. A `sink` error stops the import and is returned as
/// [`ImportError::Sink`].
pub fn import_jsonl(
    paths: &[PathBuf],
    sink: &mut dyn FnMut(Entry) -> Result<(), SinkError>,
) -> Result<ImportReport, ImportError> {
    let source = paths.first().cloned().unwrap_or_default();
    let mut out = Out::new(source, sink);
    let files = sidecar_files(paths)?;

    // Pass 1: sessions.
    let mut sessions: Vec<(PathBuf, String, Option<String>)> = Vec::with_capacity(files.len());
    for file in files {
        out.path.clone_from(&file);
        let patch = sidecar_session(&file, &mut out)?;
        sessions.push((file, patch.id.clone(), patch.source.clone()));
        out.session(patch)?;
    }
    // Pass 2: messages.
    for (file, session_id, source) in &sessions {
        out.path.clone_from(file);
        sidecar_messages(file, session_id, source.as_ref(), &mut out)?;
    }
    let mut report = out.finish();
    report.source = paths.first().cloned().unwrap_or_default();
    tracing::info!(
        files = sessions.len(),
        sessions = report.sessions,
        messages = report.messages,
        cut_lines = report.cut_lines.len(),
        bad_lines = report.bad_lines.len(),
        "imported Hermes JSONL sidecars"
    );
    Ok(report)
}

fn sidecar_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ImportError> {
    let mut files = Vec::new();
    for path in paths {
        let io_err = |source| ImportError::Io { path: path.clone(), source };
        let meta = std::fs::metadata(path).map_err(io_err)?;
        if meta.is_dir() {
            let mut found = Vec::new();
            for entry in std::fs::read_dir(path).map_err(io_err)? {
                let p = entry.map_err(io_err)?.path();
                if p.extension().is_some_and(|e| e == "jsonl") && p.is_file() {
                    found.push(p);
                }
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

/// One line of a sidecar: line number, bytes without the newline, whether a newline ended it.
type Line<'a> = (usize, &'a [u8], bool);

/// Reads the lines of a sidecar.
struct Lines {
    reader: BufReader<File>,
    path: PathBuf,
    number: usize,
    buf: Vec<u8>,
}

impl Lines {
    fn open(path: &Path) -> Result<Self, ImportError> {
        let file = File::open(path).map_err(|source| ImportError::Io { path: path.to_path_buf(), source })?;
        Ok(Self { reader: BufReader::new(file), path: path.to_path_buf(), number: 0, buf: Vec::new() })
    }

    /// The next non-blank line.
    fn next_line(&mut self) -> Result<Option<Line<'_>>, ImportError> {
        loop {
            self.buf.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut self.buf)
                .map_err(|source| ImportError::Io { path: self.path.clone(), source })?;
            if n == 0 {
                return Ok(None);
            }
            self.number += 1;
            let complete = self.buf.last() == Some(&b'\n');
            if complete {
                self.buf.pop();
                if self.buf.last() == Some(&b'\r') {
                    self.buf.pop();
                }
            }
            if self.buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Ok(Some((self.number, &self.buf, complete)));
        }
    }
}

fn file_stem(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

fn sidecar_session(file: &Path, out: &mut Out<'_>) -> Result<SessionPatch, ImportError> {
    let mut lines = Lines::open(file)?;
    let first = match lines.next_line()? {
        Some((_, bytes, _)) => serde_json::from_slice::<J>(bytes).ok(),
        None => None,
    };
    let meta = match first {
        Some(J::Obj(fields)) if get_str(&fields, "role") == Some("session_meta") => fields,
        _ => {
            out.warn(format!("{}: no session_meta first line; session id taken from the file name", file.display()));
            return Ok(SessionPatch { id: file_stem(file), ..SessionPatch::default() });
        }
    };
    let started_at = match get(&meta, "timestamp") {
        Some(J::Str(s)) => parse_iso_warn(s, file, 1, out),
        Some(j) => j.as_f64(),
        None => None,
    };
    let id = get_str(&meta, "session_id").filter(|s| !s.is_empty()).map_or_else(|| file_stem(file), str::to_string);
    let source = get_str(&meta, "platform").or_else(|| get_str(&meta, "source")).map(str::to_string);
    let known = ["role", "session_id", "model", "platform", "timestamp"];
    Ok(SessionPatch {
        id,
        source,
        model: get_str(&meta, "model").map(str::to_string),
        started_at,
        extra: extra_json(&meta, &known),
        ..SessionPatch::default()
    })
}

fn sidecar_messages(
    file: &Path,
    session_id: &str,
    source: Option<&String>,
    out: &mut Out<'_>,
) -> Result<(), ImportError> {
    let mut lines = Lines::open(file)?;
    let mut first = true;
    while let Some((number, bytes, complete)) = lines.next_line()? {
        let parsed = serde_json::from_slice::<J>(bytes);
        let is_first = std::mem::replace(&mut first, false);
        let fields = match parsed {
            Ok(J::Obj(fields)) => fields,
            Ok(_) => {
                bad_line(out, file, number, "not a JSON object".into());
                continue;
            }
            Err(e) => {
                // Only the very last line can lack its newline: a writer killed mid-line.
                if complete {
                    bad_line(out, file, number, format!("invalid JSON: {e}"));
                } else {
                    tracing::warn!(file = %file.display(), line = number, "skipped a line cut off mid-write");
                    out.report.cut_lines.push((file.to_path_buf(), number));
                }
                continue;
            }
        };
        if get_str(&fields, "role") == Some("session_meta") {
            if !is_first {
                out.warn(format!("{}: line {number}: a second session_meta line; ignored", file.display()));
            }
            continue;
        }
        match sidecar_message(&fields, file, number, out) {
            Ok(mut m) => {
                m.session_id = session_id.to_string();
                m.source = source.cloned();
                out.message(m)?;
            }
            Err(why) => bad_line(out, file, number, why),
        }
    }
    Ok(())
}

fn bad_line(out: &mut Out<'_>, file: &Path, number: usize, why: String) {
    tracing::warn!(file = %file.display(), line = number, why, "skipped a bad line");
    out.report.bad_lines.push((file.to_path_buf(), number, why));
}

fn sidecar_message(fields: &[(String, J)], file: &Path, number: usize, out: &mut Out<'_>) -> Result<Message, String> {
    let role = match get(fields, "role") {
        Some(J::Str(r)) => r.clone(),
        _ => return Err("no `role` string".into()),
    };
    let timestamp = match get(fields, "timestamp") {
        Some(J::Str(s)) => parse_iso_warn(s, file, number, out)
            .ok_or_else(|| format!("`timestamp` {s:?} is not an ISO-8601 date and time"))?,
        Some(j) => j.as_f64().ok_or_else(|| "`timestamp` is neither text nor a number".to_string())?,
        None => return Err("no `timestamp`".into()),
    };
    let content = match get(fields, "content") {
        None | Some(J::Null) => None,
        Some(J::Str(s)) => Some(s.clone()),
        Some(j @ (J::Arr(_) | J::Obj(_))) => Some(format!("\u{0}json:{}", j.to_json(Style::Python))),
        Some(j) => Some(j.to_json(Style::Python)),
    };
    let tool_calls = match get(fields, "tool_calls") {
        None | Some(J::Null) => None,
        Some(J::Str(s)) => Some(s.clone()),
        Some(j) => Some(j.to_json(Style::Python)),
    };
    let mut known: Vec<&str> = vec!["role", "timestamp", "content", "tool_calls"];
    let mut text = |name: &'static str| match get(fields, name) {
        Some(J::Str(s)) => {
            known.push(name);
            Some(s.clone())
        }
        Some(J::Null) => {
            known.push(name);
            None
        }
        _ => None,
    };
    let tool_call_id = text("tool_call_id");
    let tool_name = text("tool_name");
    let reasoning = text("reasoning");
    let finish_reason = text("finish_reason");
    let token_count = match get(fields, "token_count") {
        Some(J::Int(i)) => {
            known.push("token_count");
            Some(*i)
        }
        Some(J::Null) => {
            known.push("token_count");
            None
        }
        _ => None,
    };
    Ok(Message {
        role,
        content,
        tool_call_id,
        tool_name,
        tool_calls,
        reasoning,
        timestamp,
        token_count,
        finish_reason,
        extra: extra_json(fields, &known),
        ..Message::default()
    })
}

fn parse_iso_warn(s: &str, file: &Path, number: usize, out: &mut Out<'_>) -> Option<f64> {
    let (t, naive) = crate::time::parse_iso8601(s)?;
    if naive {
        out.warn(format!("{}: line {number}: timestamp {s:?} has no timezone; read as UTC", file.display()));
    }
    Some(t)
}

/// The last value of `key` (a repeated key keeps its last value, as in Python).
fn get<'j>(fields: &'j [(String, J)], key: &str) -> Option<&'j J> {
    fields.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
}

fn get_str<'j>(fields: &'j [(String, J)], key: &str) -> Option<&'j str> {
    match get(fields, key) {
        Some(J::Str(s)) => Some(s),
        _ => None,
    }
}

/// Every field not in `known` (last value of a repeated key), as a compact JSON object.
fn extra_json(fields: &[(String, J)], known: &[&str]) -> Option<String> {
    let rest: Vec<(String, J)> = fields
        .iter()
        .enumerate()
        .filter(|(i, (k, _))| {
            !known.contains(&k.as_str()) && !fields.get(i + 1..).is_some_and(|later| later.iter().any(|(l, _)| l == k))
        })
        .map(|(_, kv)| kv.clone())
        .collect();
    if rest.is_empty() { None } else { Some(J::Obj(rest).to_json(Style::Compact)) }
}

// ---------------------------------------------------------------------------------------------
// JSON that keeps key order
// ---------------------------------------------------------------------------------------------

/// A JSON value that keeps object keys in document order (`serde_json::Value` sorts them).
#[derive(Debug, Clone, PartialEq)]
enum J {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

/// How [`J::to_json`] writes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Style {
    /// `,` and `:` with no spaces; non-ASCII written as is.
    Compact,
    /// Python's `json.dumps` defaults: `", "` and `": "`, non-ASCII escaped as `\uXXXX`.
    Python,
}

impl J {
    fn as_f64(&self) -> Option<f64> {
        match *self {
            J::Int(i) => Some(i as f64),
            J::UInt(u) => Some(u as f64),
            J::Float(f) => Some(f),
            _ => None,
        }
    }

    fn to_json(&self, style: Style) -> String {
        let mut s = String::new();
        self.write(&mut s, style);
        s
    }

    fn write(&self, out: &mut String, style: Style) {
        let (comma, colon) = match style {
            Style::Compact => (",", ":"),
            Style::Python => (", ", ": "),
        };
        match self {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Int(i) => {
                let _ = write!(out, "{i}");
            }
            J::UInt(u) => {
                let _ = write!(out, "{u}");
            }
            J::Float(f) => write_float(out, *f),
            J::Str(s) => write_str(out, s, style),
            J::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(comma);
                    }
                    item.write(out, style);
                }
                out.push(']');
            }
            J::Obj(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push_str(comma);
                    }
                    write_str(out, k, style);
                    out.push_str(colon);
                    v.write(out, style);
                }
                out.push('}');
            }
        }
    }
}

/// A float as Python's `repr` writes it (`1.0`, `0.5`, `1e-07`, `1e+16`); non-finite as `null`.
fn write_float(out: &mut String, f: f64) {
    if !f.is_finite() {
        out.push_str("null");
        return;
    }
    let s = format!("{f:?}");
    match s.split_once('e') {
        Some((mantissa, exp)) => {
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exp),
            };
            let _ = write!(out, "{mantissa}e{sign}{digits:0>2}");
        }
        None => out.push_str(&s),
    }
}

fn write_str(out: &mut String, s: &str, style: Style) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c < ' ' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c if style == Style::Python && !(' '..='~').contains(&c) => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

impl<'de> serde::Deserialize<'de> for J {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JVisitor)
    }
}

struct JVisitor;

impl<'de> serde::de::Visitor<'de> for JVisitor {
    type Value = J;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<J, E> {
        Ok(J::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<J, E> {
        Ok(J::Int(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<J, E> {
        Ok(i64::try_from(v).map_or(J::UInt(v), J::Int))
    }

    fn visit_f64<E>(self, v: f64) -> Result<J, E> {
        Ok(J::Float(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<J, E> {
        Ok(J::Str(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<J, E> {
        Ok(J::Str(v))
    }

    fn visit_unit<E>(self) -> Result<J, E> {
        Ok(J::Null)
    }

    fn visit_none<E>(self) -> Result<J, E> {
        Ok(J::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<J, D::Error> {
        serde::Deserialize::deserialize(d)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<J, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<J>()? {
            items.push(item);
        }
        Ok(J::Arr(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<J, A::Error> {
        let mut fields = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, J>()? {
            fields.push((k, v));
        }
        Ok(J::Obj(fields))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::time::parse_iso8601;

    /// `shared/fixtures/hermes`, found by walking up from the crate; `None` (and the test is
    /// skipped with a message) when this checkout has no fixtures.
    fn fixture_dir() -> Option<PathBuf> {
        let mut dir = Some(Path::new(env!("CARGO_MANIFEST_DIR")));
        while let Some(d) = dir {
            let candidate = d.join("shared/fixtures/hermes");
            if candidate.join("expected.json").is_file() {
                return Some(candidate);
            }
            dir = d.parent();
        }
        eprintln!("skipped: no shared/fixtures/hermes above {}", env!("CARGO_MANIFEST_DIR"));
        None
    }

    /// Copies a fixture (file or folder) into a fresh temporary folder; fixtures are never opened
    /// in place.
    fn copy_fixture(name: &str) -> Option<(tempfile::TempDir, PathBuf)> {
        let src = fixture_dir()?.join(name);
        let tmp = tempfile::tempdir().unwrap();
        let dst = tmp.path().join(name.trim_end_matches('/'));
        if src.is_dir() {
            std::fs::create_dir_all(&dst).unwrap();
            for entry in std::fs::read_dir(&src).unwrap() {
                let p = entry.unwrap().path();
                std::fs::copy(&p, dst.join(p.file_name().unwrap())).unwrap();
            }
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
        Some((tmp, dst))
    }

    fn collect(
        f: impl FnOnce(&mut dyn FnMut(Entry) -> Result<(), SinkError>) -> Result<ImportReport, ImportError>,
    ) -> (ImportReport, Vec<SessionPatch>, Vec<Message>) {
        let mut sessions = Vec::new();
        let mut messages = Vec::new();
        let mut saw_message = false;
        let report = f(&mut |e| {
            match e {
                Entry::Session(s) => {
                    assert!(!saw_message, "a session patch came after a message");
                    sessions.push(s);
                }
                Entry::Message(m) => {
                    saw_message = true;
                    messages.push(m);
                }
            }
            Ok(())
        })
        .unwrap();
        (report, sessions, messages)
    }

    fn import_db(name: &str) -> Option<(ImportReport, Vec<SessionPatch>, Vec<Message>)> {
        let (_tmp, path) = copy_fixture(name)?;
        Some(collect(|sink| import_hermes_db(&path, sink)))
    }

    fn import_sidecars() -> Option<(ImportReport, Vec<SessionPatch>, Vec<Message>)> {
        let (_tmp, dir) = copy_fixture("sessions")?;
        Some(collect(|sink| import_jsonl(&[dir], sink)))
    }

    fn expected() -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(fixture_dir()?.join("expected.json")).unwrap();
        Some(serde_json::from_str(&text).unwrap())
    }

    fn assert_ordered(messages: &[Message]) {
        for w in messages.windows(2) {
            let (a, b) = (&w[0], &w[1]);
            assert!(
                a.session_id < b.session_id || (a.session_id == b.session_id && a.timestamp <= b.timestamp),
                "messages out of order: {} {} then {} {}",
                a.session_id,
                a.timestamp,
                b.session_id,
                b.timestamp
            );
        }
    }

    fn distinct_ids(messages: &[Message]) -> HashSet<String> {
        messages.iter().map(|m| m.id.clone()).collect()
    }

    #[test]
    fn v11_counts() {
        let (Some((report, sessions, messages)), Some(exp)) = (import_db("state-v11.db"), expected()) else {
            return;
        };
        let exp = &exp["state-v11.db"];
        assert_eq!(report.schema_version, Some(11));
        assert_eq!(report.sessions, exp["sessions"].as_u64().unwrap());
        assert_eq!(report.messages, exp["messages"].as_u64().unwrap());
        assert_eq!(sessions.len() as u64, report.sessions);
        assert_eq!(messages.len() as u64, report.messages);
        assert_eq!(report.unreadable_rows, 0);
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        assert_eq!(distinct_ids(&messages).len(), messages.len());
        assert_ordered(&messages);
    }

    #[test]
    fn v30_counts_and_mapping() {
        let (Some((report, sessions, messages)), Some(exp)) = (import_db("state-v30.db"), expected()) else {
            return;
        };
        let exp = &exp["state-v30.db"];
        assert_eq!(report.schema_version, Some(30));
        assert_eq!(report.sessions, exp["sessions"].as_u64().unwrap());
        assert_eq!(report.messages, exp["messages"].as_u64().unwrap());
        assert_eq!(report.unreadable_rows, 0);
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        assert_eq!(distinct_ids(&messages).len(), messages.len());
        assert_ordered(&messages);

        // Lineage, and the v25+ system prompt brought in from `system_prompts`.
        let child = sessions.iter().find(|s| s.id == "20260501_060937_950afd").unwrap();
        assert_eq!(child.parent_session_id.as_deref(), Some("20260501_030107_08fb17"));
        assert_eq!(child.source.as_deref(), Some("discord"));
        assert_eq!(child.model.as_deref(), Some("hermes-4-70b"));
        assert_eq!(child.end_reason.as_deref(), Some("user_exit"));
        assert!(child.started_at.unwrap() > 1.7e9);
        for s in &sessions {
            let extra: serde_json::Value = serde_json::from_str(s.extra.as_deref().unwrap()).unwrap();
            let prompt = extra["system_prompt"].as_str().unwrap();
            assert!(prompt.starts_with("You are Hermes."), "{prompt}");
            assert_eq!(extra["system_prompt_hash"].as_str().unwrap().len(), 64);
            assert_eq!(extra["model_config"], "{\"temperature\": 0.7}");
        }

        // Every message carries its session's source.
        let source: HashMap<&str, Option<&str>> =
            sessions.iter().map(|s| (s.id.as_str(), s.source.as_deref())).collect();
        for m in &messages {
            assert_eq!(m.source.as_deref(), source[m.session_id.as_str()]);
            assert!(m.id.starts_with("hermes-") && m.id.len() == 39, "{}", m.id);
        }

        // An assistant message that only calls tools: NULL content, tool_calls JSON text.
        let call = messages.iter().find(|m| m.role == "assistant" && m.tool_calls.is_some()).unwrap();
        assert_eq!(call.content, None);
        assert_eq!(call.finish_reason.as_deref(), Some("tool_calls"));
        let calls: serde_json::Value = serde_json::from_str(call.tool_calls.as_deref().unwrap()).unwrap();
        assert!(calls.as_array().is_some_and(|a| !a.is_empty()));
        // ... and the tool result answering it.
        let id = calls[0]["id"].as_str().unwrap();
        let result = messages.iter().find(|m| m.tool_call_id.as_deref() == Some(id)).unwrap();
        assert_eq!(result.role, "tool");
        assert!(result.tool_name.is_some());

        // Unknown columns kept in `extra`, under their Hermes names.
        let extra: serde_json::Value = serde_json::from_str(call.extra.as_deref().unwrap()).unwrap();
        assert!(extra["id"].as_i64().is_some());
        assert_eq!(extra["active"], 1);

        // Multimodal content kept verbatim, marker included.
        assert_eq!(
            messages.iter().filter(|m| m.content.as_deref().is_some_and(|c| c.starts_with("\u{0}json:["))).count(),
            9
        );
        assert!(messages.iter().any(|m| m.content.as_ref().is_some_and(|c| c.len() > 50_000)));
        assert!(messages.iter().any(|m| m.token_count.is_some()));
        assert!(messages.iter().any(|m| m.reasoning.is_some()));
    }

    /// CJK text and emoji come out byte-for-byte as SQLite holds them.
    #[test]
    fn cjk_and_emoji_round_trip() {
        let Some((_tmp, path)) = copy_fixture("state-v30.db") else {
            return;
        };
        let (_, _, messages) = collect(|sink| import_hermes_db(&path, sink));
        let conn = open_read_only(&path).unwrap();
        let mut stmt =
            conn.prepare("SELECT session_id, timestamp, content FROM messages WHERE content IS NOT NULL").unwrap();
        let rows: Vec<(String, f64, String)> =
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().collect::<Result<_, _>>().unwrap();
        let wide: Vec<_> = rows
            .iter()
            .filter(|(_, _, c)| c.chars().any(|ch| ('\u{4e00}'..='\u{9fff}').contains(&ch)))
            .filter(|(_, _, c)| c.chars().any(|ch| ch as u32 >= 0x1f300))
            .collect();
        assert!(!wide.is_empty(), "no message with both CJK and emoji in the fixture");
        for (sid, ts, content) in wide {
            let m = messages.iter().find(|m| &m.session_id == sid && m.timestamp == *ts).unwrap();
            assert_eq!(m.content.as_deref(), Some(content.as_str()));
        }
    }

    #[test]
    fn damaged_database_is_salvaged_row_by_row() {
        let (Some((report, sessions, messages)), Some(exp)) = (import_db("state-v30-damaged.db"), expected()) else {
            return;
        };
        let exp = &exp["state-v30-damaged.db"];
        let readable = exp["messages_readable_by_rowid"].as_u64().unwrap();
        let total = exp["messages_total"].as_u64().unwrap();
        assert_eq!(sessions.len(), 24);
        assert_eq!(report.messages, readable);
        assert_eq!(report.unreadable_rows, total - readable);
        assert_eq!(distinct_ids(&messages).len(), messages.len());
        assert_ordered(&messages);
        assert!(report.warnings.iter().any(|w| w.contains("salvaged")), "{:?}", report.warnings);
    }

    #[test]
    fn sidecars() {
        let (Some((report, sessions, messages)), Some(exp)) = (import_sidecars(), expected()) else {
            return;
        };
        let exp = &exp["sessions/"];
        assert_eq!(sessions.len() as u64, exp["files"].as_u64().unwrap());
        assert_eq!(report.messages, exp["messages"].as_u64().unwrap());
        assert!(report.bad_lines.is_empty(), "{:?}", report.bad_lines);
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        let mut cut: Vec<(String, usize)> =
            report.cut_lines.iter().map(|(p, n)| (p.file_name().unwrap().to_string_lossy().into_owned(), *n)).collect();
        cut.sort();
        assert_eq!(
            cut,
            [
                ("20260502_033710_1037a0.jsonl".to_string(), 28),
                ("20260503_055031_a405af.jsonl".to_string(), 16),
                ("20260505_061240_0cb674.jsonl".to_string(), 10),
            ]
        );
        let s = sessions.iter().find(|s| s.id == "20260503_165910_2ad761").unwrap();
        assert_eq!(s.source.as_deref(), Some("api_server"));
        assert_eq!(s.model.as_deref(), Some("claude-sonnet-4.5"));
        assert!((s.started_at.unwrap() - 1_777_827_550.757_505).abs() < 1e-6);
        assert!(s.extra.as_deref().unwrap().contains("\"tools\""));
        assert_eq!(distinct_ids(&messages).len(), messages.len());
        for m in &messages {
            assert!(m.source.is_some());
            if let Some(tc) = &m.tool_calls {
                assert!(serde_json::from_str::<serde_json::Value>(tc).unwrap().is_array());
            }
        }
    }

    /// The last 12 sessions of state-v30.db are the sidecars' conversations: importing both
    /// gives each message once, byte-identical fields included.
    #[test]
    fn database_and_sidecars_dedup() {
        let (Some((_, db_sessions, db_messages)), Some((_, jl_sessions, jl_messages))) =
            (import_db("state-v30.db"), import_sidecars())
        else {
            return;
        };
        let mut ids = distinct_ids(&db_messages);
        ids.extend(distinct_ids(&jl_messages));
        assert_eq!(ids.len(), 458);
        let sessions: HashSet<&str> = db_sessions.iter().chain(&jl_sessions).map(|s| s.id.as_str()).collect();
        assert_eq!(sessions.len(), 24);

        let by_id: HashMap<&str, &Message> = db_messages.iter().map(|m| (m.id.as_str(), m)).collect();
        for m in &jl_messages {
            let d = by_id[m.id.as_str()];
            assert_eq!(d.session_id, m.session_id);
            assert_eq!(d.role, m.role);
            assert_eq!(d.content, m.content);
            assert_eq!(d.tool_calls, m.tool_calls, "tool_calls written as Hermes writes them");
            assert_eq!(d.tool_call_id, m.tool_call_id);
            assert_eq!(d.tool_name, m.tool_name);
            assert_eq!(d.reasoning, m.reasoning);
            assert_eq!(d.finish_reason, m.finish_reason);
            assert_eq!(d.token_count, m.token_count);
            assert_eq!(d.source, m.source);
            assert!((d.timestamp - m.timestamp).abs() < 1e-6);
        }
    }

    /// The first 12 sessions of state-v30.db are the conversations of state-v11.db.
    #[test]
    fn schema_eras_dedup() {
        let (Some((_, _, v11)), Some((_, _, v30))) = (import_db("state-v11.db"), import_db("state-v30.db")) else {
            return;
        };
        let v30_ids = distinct_ids(&v30);
        assert!(v11.iter().all(|m| v30_ids.contains(&m.id)));
    }

    fn fingerprint(path: &Path) -> (u128, std::time::SystemTime, u64) {
        let bytes = std::fs::read(path).unwrap();
        let mut h = Fnv128::new();
        h.write(&bytes);
        let meta = std::fs::metadata(path).unwrap();
        (h.finish(), meta.modified().unwrap(), meta.len())
    }

    #[test]
    fn source_database_is_not_touched() {
        for name in ["state-v11.db", "state-v30.db", "state-v30-damaged.db"] {
            let Some((tmp, path)) = copy_fixture(name) else {
                return;
            };
            let before = fingerprint(&path);
            let (report, _, _) = collect(|sink| import_hermes_db(&path, sink));
            assert!(report.messages > 0);
            assert_eq!(fingerprint(&path), before, "{name} changed");
            let files: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
            assert_eq!(files, [std::ffi::OsString::from(name)], "files appeared beside {name}");
        }
    }

    #[test]
    fn sink_error_stops_the_import() {
        let Some((_tmp, path)) = copy_fixture("state-v30.db") else {
            return;
        };
        let mut seen = 0;
        let err = import_hermes_db(&path, &mut |_| {
            seen += 1;
            if seen == 30 { Err("disk full".into()) } else { Ok(()) }
        })
        .unwrap_err();
        assert_eq!(seen, 30);
        assert!(matches!(err, ImportError::Sink { .. }));
        assert!(err.to_string().contains("disk full"), "{err}");
    }

    #[test]
    fn wal_beside_the_database_is_reported() {
        let Some((_tmp, path)) = copy_fixture("state-v30.db") else {
            return;
        };
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        std::fs::write(PathBuf::from(wal), b"not really a wal").unwrap();
        let (report, _, _) = collect(|sink| import_hermes_db(&path, sink));
        assert_eq!(report.messages, 458);
        assert!(report.warnings.iter().any(|w| w.contains("-wal")), "{:?}", report.warnings);
    }

    #[test]
    fn not_a_database() {
        let tmp = tempfile::tempdir().unwrap();
        let text = tmp.path().join("notes.db");
        std::fs::write(&text, "hello").unwrap();
        let err = import_hermes_db(&text, &mut |_| Ok(())).unwrap_err();
        assert!(matches!(err, ImportError::NotHermes { .. }), "{err}");
        assert!(err.to_string().contains("notes.db"));

        let missing = tmp.path().join("missing.db");
        let err = import_hermes_db(&missing, &mut |_| Ok(())).unwrap_err();
        assert!(matches!(err, ImportError::Io { .. }), "{err}");

        let other = tmp.path().join("other.db");
        let conn = Connection::open(&other).unwrap();
        conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);").unwrap();
        drop(conn);
        let err = import_hermes_db(&other, &mut |_| Ok(())).unwrap_err();
        assert!(matches!(err, ImportError::NotHermes { .. }), "{err}");
    }

    /// A schema older than any fixture: columns that are there are read, the rest is absent.
    #[test]
    fn minimal_schema_and_odd_values() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("state.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE sessions(id TEXT PRIMARY KEY, source TEXT NOT NULL, started_at REAL NOT NULL,
                                   system_prompt TEXT, mood BLOB);
             CREATE TABLE messages(id INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL,
                                   role TEXT NOT NULL, content TEXT, timestamp REAL NOT NULL,
                                   token_count TEXT);
             INSERT INTO sessions VALUES ('s1', 'cli', 1000.5, 'Be brief.', x'00ff');
             INSERT INTO messages(session_id, role, content, timestamp, token_count)
                 VALUES ('s1', 'user', 'same', 1001.0, 'many'),
                        ('s1', 'user', 'same', 1001.0, NULL),
                        ('s1', 'user', NULL, 1002, NULL);",
        )
        .unwrap();
        drop(conn);
        let (report, sessions, messages) = collect(|sink| import_hermes_db(&path, sink));
        assert_eq!(report.schema_version, None);
        assert_eq!((report.sessions, report.messages), (1, 3));
        let extra: serde_json::Value = serde_json::from_str(sessions[0].extra.as_deref().unwrap()).unwrap();
        assert_eq!(extra["system_prompt"], "Be brief.");
        assert_eq!(extra["mood"]["$blob"], "00ff");
        // Two genuinely repeated messages keep distinct ids.
        assert_ne!(messages[0].id, messages[1].id);
        assert_eq!(messages[0].id, imported_message_id("s1", "user", 1001.0, Some("same"), None));
        assert_eq!(messages[0].token_count, None);
        assert!(messages[0].extra.as_deref().unwrap().contains("\"token_count\":\"many\""));
        assert_eq!(messages[2].timestamp, 1002.0);
        assert_eq!(messages[2].content, None);
    }

    /// Pages overwritten in the middle of both tables: whatever the scans emitted before failing
    /// is not emitted again by the salvage, and every row is either imported or counted.
    #[test]
    fn damage_mid_table_is_neither_duplicated_nor_lost_silently() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("state.db");
        let mut conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA page_size = 4096;
             CREATE TABLE sessions(id TEXT PRIMARY KEY, source TEXT NOT NULL, started_at REAL NOT NULL, note TEXT);
             CREATE TABLE messages(id INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL,
                                   role TEXT NOT NULL, content TEXT, timestamp REAL NOT NULL);",
        )
        .unwrap();
        let tx = conn.transaction().unwrap();
        for i in 0..300 {
            tx.execute(
                "INSERT INTO sessions VALUES (?1, 'cli', ?2, ?3)",
                rusqlite::params![format!("s{i:04}"), f64::from(i), "n".repeat(900)],
            )
            .unwrap();
            tx.execute(
                "INSERT INTO messages(session_id, role, content, timestamp) VALUES (?1, 'user', ?2, ?3)",
                rusqlite::params![format!("s{:04}", i % 7), "m".repeat(900), f64::from(i)],
            )
            .unwrap();
        }
        tx.commit().unwrap();
        drop(conn);
        let mut bytes = std::fs::read(&path).unwrap();
        let pages = bytes.len() / 4096;
        for page in (pages / 4..pages).step_by(9) {
            bytes[page * 4096..page * 4096 + 4096].fill(0x55);
        }
        std::fs::write(&path, &bytes).unwrap();

        let (report, sessions, messages) = collect(|sink| import_hermes_db(&path, sink));
        let session_ids: HashSet<&str> = sessions.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(session_ids.len(), sessions.len(), "a session emitted twice");
        assert_eq!(distinct_ids(&messages).len(), messages.len(), "a message emitted twice");
        assert!(!sessions.is_empty() && !messages.is_empty());
        assert!(sessions.len() < 300 && messages.len() < 300, "both tables damaged");
        assert!(report.unreadable_rows > 0, "{report:?}");
        assert!(sessions.len() as u64 + messages.len() as u64 + report.unreadable_rows <= 600);
        assert_ordered(&messages);
    }

    fn write_jsonl(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn jsonl_bad_and_cut_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let meta = r#"{"role": "session_meta", "session_id": "s9", "model": "m", "platform": "cli", "timestamp": "2026-05-03T16:59:10.5+02:00"}"#;
        let text = format!(
            "{meta}\n\
             {{\"role\": \"user\", \"content\": \"hi 你好 🧪\", \"timestamp\": \"2026-05-03T17:00:00Z\", \"message_id\": 77}}\n\
             {{\"role\": \"user\", \"content\": broken}}\n\
             \n\
             [1, 2]\n\
             {{\"role\": \"assistant\", \"content\": [{{\"type\": \"text\", \"text\": \"é\"}}], \"timestamp\": 1777827610.25}}\n\
             {{\"role\": \"tool\", \"content\": \"ok\", \"tool_call_id\": \"c1\", \"timestamp\": \"2026-05-03 17:00:01\"}}\n\
             {{\"role\": \"user\", \"content\": \"no time\"}}\n\
             {{\"role\": \"assistant\", \"content\": \"cut"
        );
        let path = write_jsonl(tmp.path(), "s9.jsonl", &text);
        let (report, sessions, messages) = collect(|sink| import_jsonl(std::slice::from_ref(&path), sink));
        assert_eq!(sessions[0].id, "s9");
        assert_eq!(sessions[0].started_at, Some(1_777_820_350.5));
        assert_eq!(messages.len(), 3);
        assert_eq!(messages[0].content.as_deref(), Some("hi 你好 🧪"));
        assert_eq!(messages[0].timestamp, 1_777_827_600.0);
        assert_eq!(messages[0].extra.as_deref(), Some("{\"message_id\":77}"));
        assert_eq!(messages[1].content.as_deref(), Some("\u{0}json:[{\"type\": \"text\", \"text\": \"\\u00e9\"}]"));
        assert_eq!(messages[2].tool_call_id.as_deref(), Some("c1"));
        let bad: Vec<usize> = report.bad_lines.iter().map(|b| b.1).collect();
        assert_eq!(bad, [3, 5, 8]);
        assert_eq!(report.cut_lines, [(path.clone(), 9)]);
        assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);

        // A last line that is whole but lacks its newline is a message.
        let path = write_jsonl(
            tmp.path(),
            "s10.jsonl",
            "{\"role\": \"user\", \"content\": \"x\", \"timestamp\": \"2026-01-01T00:00:00Z\"}",
        );
        let (report, sessions, messages) = collect(|sink| import_jsonl(&[path], sink));
        assert_eq!(sessions[0].id, "s10");
        assert_eq!(messages.len(), 1);
        assert!(report.cut_lines.is_empty());
        assert_eq!(report.warnings.len(), 1, "no session_meta: {:?}", report.warnings);
    }

    #[test]
    fn jsonl_never_panics_on_garbage() {
        let tmp = tempfile::tempdir().unwrap();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut bytes = Vec::new();
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            bytes.push(b"{}[]\":,0123456789.eE+-tfnul \n\\abcz\xff\xc3"[(state % 36) as usize]);
        }
        let path = tmp.path().join("garbage.jsonl");
        std::fs::write(&path, &bytes).unwrap();
        let report = import_jsonl(&[path], &mut |_| Ok(())).unwrap();
        assert_eq!(report.messages, 0);
        let db = tmp.path().join("garbage.db");
        let mut header = b"SQLite format 3\0".to_vec();
        header.extend_from_slice(&bytes);
        std::fs::write(&db, &header).unwrap();
        assert!(import_hermes_db(&db, &mut |_| Ok(())).is_err());
    }

    #[test]
    fn iso8601() {
        let p = |s: &str| parse_iso8601(s).map(|(t, _)| t);
        assert_eq!(p("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(p("1970-01-01T00:00:00+00:00"), Some(0.0));
        assert_eq!(p("1970-01-01T01:00:00+01:00"), Some(0.0));
        assert_eq!(p("1969-12-31T19:00:00-0500"), Some(0.0));
        assert_eq!(p("2000-02-29T12:00:00.25Z"), Some(951_825_600.25));
        assert_eq!(p("2026-05-03T16:59:10.757505+00:00"), Some(1_777_827_550.757_505));
        assert_eq!(p("2026-05-03 16:59:10,5+00"), Some(1_777_827_550.5));
        assert_eq!(p("2026-05-03T16:59Z"), Some(1_777_827_540.0));
        assert_eq!(p("1900-03-01T00:00:00Z"), Some(-2_203_891_200.0));
        assert_eq!(parse_iso8601("2026-05-03T16:59:10.5"), Some((1_777_827_550.5, true)));
        for bad in [
            "",
            "2026",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-05-03T24:00:00Z",
            "2026-05-03T16:59:10.Z",
            "2026-05-03T16:59:10Zjunk",
            "2026-05-03T1:59:10Z",
            "今日",
            "2026-05-03T16:59:10+99:00",
        ] {
            assert_eq!(p(bad), None, "{bad}");
        }
    }

    #[test]
    fn ids_share_milliseconds_across_sources() {
        // A REAL from SQLite and the ISO text Python writes for it.
        let db = 1_777_593_654.768_046_1;
        let iso = parse_iso8601("2026-05-01T00:00:54.768046+00:00").unwrap().0;
        assert_eq!(
            imported_message_id("s", "user", db, Some("a"), None),
            imported_message_id("s", "user", iso, Some("a"), None)
        );
        assert_eq!(timestamp_millis(db), 1_777_593_654_768);
        assert_eq!(timestamp_millis(0.9999996), 1000, "rounds to microseconds first");
        assert_eq!(timestamp_millis(-0.5), -500);
        assert_eq!(timestamp_millis(f64::NAN), i64::MIN);
        let a = imported_message_id("s", "user", 1.0, None, None);
        assert_ne!(a, imported_message_id("s", "user", 1.0, Some(""), None));
        assert_ne!(a, imported_message_id("s", "user", 1.0, None, Some("")));
        assert_ne!(a, imported_message_id("s", "assistant", 1.0, None, None));
        assert_ne!(a, imported_message_id("s", "user", 1.001, None, None));
        assert_eq!(a, imported_message_id("s", "user", 1.0004, None, None));
        // Pinned: changing the derivation would duplicate every message imported before.
        assert_eq!(a, "hermes-eb447977fa39322fab01fbf0002ccb13");
    }

    #[test]
    fn python_style_json() {
        let j: J = serde_json::from_str(r#"{"b": [1, -2, 1.5, 1e-7, 1e16, true, null], "a": "é🧪\u007f\n"}"#).unwrap();
        assert_eq!(
            j.to_json(Style::Python),
            r#"{"b": [1, -2, 1.5, 1e-07, 1e+16, true, null], "a": "\u00e9\ud83e\uddea\u007f\n"}"#
        );
        assert_eq!(j.to_json(Style::Compact), "{\"b\":[1,-2,1.5,1e-07,1e+16,true,null],\"a\":\"é🧪\u{7f}\\n\"}");
    }
}
