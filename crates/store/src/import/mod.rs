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
//! readable index lists. A row whose identifying columns (`role`, `content` for a message; `id`
//! for a session) cannot be read is skipped and counted in [`ImportReport::unreadable_rows`], as
//! is a rowid an index lists but the table no longer finds. A row whose other columns cannot be
//! read is imported without them, and their names are listed in its `extra` under
//! `logbook_unreadable_columns`.
//!
//! Damaged cells that can be read are repaired and flagged rather than cost the row. Text that
//! is not valid UTF-8 is decoded lossily (U+FFFD). A message whose `session_id` cannot be read
//! (or is not UTF-8) takes the session of its neighbours by rowid (the one its bytes resemble,
//! or the one both neighbours share); one whose `timestamp` cannot be read (or is not a number)
//! takes the timestamp of the previous row of its session, else the next, else the session's
//! `started_at`. Before a full scan, one pass over the table's own `session_id` and `timestamp`
//! cells (not an index, which may hold intact copies) decides whether any key needs such a
//! repair; if so the table is read row by row, so messages are still delivered in order. Each
//! repaired message lists its repairs in `extra` under `logbook_import` (`lossy_utf8`,
//! `session_id_from`, `timestamp_from`) with `source_rowid`, its Hermes row: with the session id
//! and role, that row identity ([`hermes_source_rowid`]) lets a caller recognise a damaged
//! near-duplicate of a message imported from a healthier copy, whose id differs because its
//! text or timestamp does. The report counts each kind of repair.
//!
//! # Message ids
//!
//! Hermes message ids are per-database integers, so imported messages get a deterministic id,
//! [`imported_message_id`], computed from what the database and the sidecar both carry. The same
//! conversation imported from both therefore yields the same ids, and the store, which ignores a

mod hermes;
mod ids;
mod json;
mod jsonl;
mod sqlite;
#[cfg(test)]
mod tests;

pub use hermes::{hermes_source_rowid, import_hermes_db, is_repaired_import};
pub use ids::imported_message_id;
pub use jsonl::import_jsonl;
use std::error::Error as StdError;
use std::io;
use std::path::PathBuf;

use crate::entry::Entry;
use crate::model::{Message, SessionPatch};
use ids::IdAssigner;

/// What a sink returns to refuse an entry; the import stops and returns
/// [`ImportError::Sink`] carrying it.
pub type SinkError = Box<dyn StdError + Send + Sync>;

/// The most detailed warnings kept in a report; later ones are only counted.
const MAX_WARNINGS: usize = 200;

/// The widest rowid range a salvage probes one rowid at a time.
pub(super) const MAX_PROBE_RANGE: i64 = 50_000_000;

/// Rowids probed when a damaged table reveals neither its rowid range nor a readable index.
pub(super) const BLIND_PROBE_RANGE: i64 = 1_000_000;

/// The key under which a salvaged row lists the columns that could not be read. Keys written into
/// `extra` are stored data: they keep the project's first name (as `logbook_import` and
/// `logbook_restored` do).
pub(super) const UNREADABLE_COLUMNS_KEY: &str = "logbook_unreadable_columns";

/// The key under which an imported message or session lists what the import repaired:
/// `lossy_utf8` (columns decoded with U+FFFD replacements), `session_id_from`, `timestamp_from`,
/// and `source_rowid` (the Hermes row).
pub(super) const IMPORT_FLAGS_KEY: &str = "logbook_import";

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
    /// Messages imported with text that was not valid UTF-8, decoded with U+FFFD in place of
    /// the bad bytes and flagged in `extra.logbook_import.lossy_utf8`.
    pub lossy_utf8_messages: u64,
    /// Sessions imported with text decoded the same way.
    pub lossy_utf8_sessions: u64,
    /// Messages whose session id could not be read and was taken from the neighbouring rows
    /// (`extra.logbook_import.session_id_from`).
    pub session_ids_inferred: u64,
    /// Messages whose timestamp could not be read and was taken from a neighbouring row of the
    /// same session or from the session's start (`extra.logbook_import.timestamp_from`).
    pub timestamps_inferred: u64,
    /// Sidecar lines cut off mid-write (the last line, without a newline, not valid JSON):
    /// file and 1-based line number. Skipped.
    pub cut_lines: Vec<(PathBuf, usize)>,
    /// Sidecar lines that are not a valid message: file, 1-based line number and why. Skipped.
    pub bad_lines: Vec<(PathBuf, usize, String)>,
    /// Everything else worth telling the user, one sentence each (at most 200 kept).
    pub warnings: Vec<String>,
}

/// Delivers entries to the sink and keeps the report.
struct Out<'a> {
    pub(super) path: PathBuf,
    pub(super) sink: &'a mut dyn FnMut(Entry) -> Result<(), SinkError>,
    pub(super) report: ImportReport,
    pub(super) omitted_warnings: u64,
    pub(super) ids: IdAssigner,
}

impl<'a> Out<'a> {
    pub(super) fn new(path: PathBuf, sink: &'a mut dyn FnMut(Entry) -> Result<(), SinkError>) -> Self {
        Self {
            report: ImportReport { source: path.clone(), ..ImportReport::default() },
            path,
            sink,
            omitted_warnings: 0,
            ids: IdAssigner::default(),
        }
    }

    pub(super) fn session(&mut self, patch: SessionPatch) -> Result<(), ImportError> {
        (self.sink)(Entry::Session(patch)).map_err(|source| ImportError::Sink { path: self.path.clone(), source })?;
        self.report.sessions += 1;
        Ok(())
    }

    pub(super) fn message(&mut self, mut m: Message) -> Result<(), ImportError> {
        m.id = self.ids.assign(&m);
        (self.sink)(Entry::Message(m)).map_err(|source| ImportError::Sink { path: self.path.clone(), source })?;
        self.report.messages += 1;
        Ok(())
    }

    pub(super) fn warn(&mut self, text: String) {
        tracing::warn!("{text}");
        if self.report.warnings.len() < MAX_WARNINGS {
            self.report.warnings.push(text);
        } else {
            self.omitted_warnings += 1;
        }
    }

    pub(super) fn finish(mut self) -> ImportReport {
        if self.omitted_warnings > 0 {
            let n = self.omitted_warnings;
            self.report.warnings.push(format!("{n} more warnings not listed (see the log)"));
        }
        self.report
    }
}
