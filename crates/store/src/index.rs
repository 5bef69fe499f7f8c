//! The derived SQLite index: messages, sessions and an FTS5 trigram index over message text.
//!
//! The journal is authoritative; this database is a copy that the compactor fills with
//! [`Index::apply_batch`] and that can always be deleted and rebuilt from the journal. Each batch
//! is one `IMMEDIATE` transaction that also stores, per journal lane, the last applied log
//! sequence number, so replay after a crash skips what is already here and never duplicates.
//!
//! Full-text search uses one FTS5 table, `messages_fts`, with the `trigram` tokenizer (substring
//! search in any script, CJK included) over two columns: the searchable body and the tool name.
//!
//! # Content mode
//!
//! `messages_fts` is an *external content* table whose content is the view `fts_source`. The
//! view derives the searchable body from `messages` itself, using two small columns that
//! [`Index::apply_batch`] computes in Rust: `fts_len` (for a long tool output, the byte length of
//! the indexed prefix, cut at a character boundary) and `fts_text` (for multimodal content, the
//! extracted text parts). So nothing is stored twice (tool output is ~90% of the bytes), FTS5
//! `snippet()` works, `'rebuild'` can regenerate the index from `messages` alone, and the FTS5
//! `integrity-check` with rank 1 compares index and content. Rows are put in the index from the
//! same view (`INSERT … SELECT … FROM fts_source`), so the indexed values are by construction
//! the ones FTS5 reads back. Because the prefix length is stored per row, changing
//! [`IndexOptions::tool_output_index_bytes`] later never desynchronizes old rows. A contentless
//! table was rejected because it has no `snippet()` and no `'rebuild'`; a separate content table
//! because it would duplicate up to 8 KiB of every tool output. There are no triggers.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::backup::Backup;
use rusqlite::types::Value;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, Row, TransactionBehavior};

use crate::model::{Entry, Message, Session};

/// The schema version this code writes and reads. Version 1 is the first; there is no migration
/// yet. A file with a newer version is refused ([`IndexError::NewerSchema`]).
pub const SCHEMA_VERSION: i64 = 1;

/// Multimodal content starts with this marker, followed by a JSON array of parts.
const MULTIMODAL_PREFIX: &str = "\u{0}json:";

/// Pages merged by one [`Index::optimize_step`].
const MERGE_STEP_PAGES: i64 = 500;

/// Context around a match in snippets, in characters (FTS5: tokens, one per character).
const SNIPPET_CONTEXT: usize = 64;

/// Result alias for this module.
pub type Result<T, E = IndexError> = std::result::Result<T, E>;

/// How the index is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexOptions {
    /// How many bytes of a `tool` message are made searchable (cut back to a character
    /// boundary). The full output is still stored and returned. Default: 8 KiB.
    pub tool_output_index_bytes: usize,
    /// How long to wait for a lock held by another connection before failing with
    /// `SQLITE_BUSY`. Default: 5 s.
    pub busy_timeout: Duration,
}

impl Default for IndexOptions {
    fn default() -> Self {
        IndexOptions { tool_output_index_bytes: 8 * 1024, busy_timeout: Duration::from_secs(5) }
    }
}

/// An error from the index.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// SQLite reported an error.
    #[error("sqlite error while trying to {context}: {source}")]
    Sqlite {
        /// What we were doing.
        context: &'static str,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// A file operation failed.
    #[error("cannot {context} {}: {source}", path.display())]
    Io {
        /// What we were doing.
        context: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The file is not a usable index; delete it and rebuild from the journal.
    #[error("index {} is corrupt: {detail}; delete it to rebuild it from the journal", path.display())]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// The file was written by a newer version of this program.
    #[error(
        "index {} has schema version {found}, newer than the supported {supported}; upgrade, or delete it to rebuild from the journal",
        path.display()
    )]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// The version in the file.
        found: i64,
        /// The newest version this code knows.
        supported: i64,
    },
    /// SQLite refused to switch the database to WAL mode.
    #[error("index {} could not be put in WAL mode (journal_mode is {mode:?})", path.display())]
    NotWal {
        /// The database file.
        path: PathBuf,
        /// The journal mode SQLite reported.
        mode: String,
    },
    /// A journal position does not fit SQLite's signed 64-bit integers.
    #[error("lane {lane:?} position {lsn} is out of range")]
    PositionOutOfRange {
        /// The lane.
        lane: String,
        /// The position.
        lsn: u64,
    },
    /// The file has no index schema yet: it is being created by the compactor right now (or is
    /// an empty file). The compactor checks and repairs the file; readers read the journal.
    #[error("index {} has no schema yet (being created)", path.display())]
    NotInitialized {
        /// The database file.
        path: PathBuf,
    },
    /// [`Index::search`] was called with a query that is empty or only whitespace.
    #[error("empty search query")]
    EmptyQuery,
}

impl IndexError {
    /// True when the error says the database file is damaged (`SQLITE_CORRUPT` including
    /// `SQLITE_CORRUPT_VTAB`, `SQLITE_NOTADB`, or [`IndexError::Corrupt`]): the cure is to delete
    /// the index and rebuild it from the journal.
    pub fn is_corruption(&self) -> bool {
        match self {
            IndexError::Sqlite { source, .. } => is_corrupt_sqlite(source),
            IndexError::Corrupt { .. } => true,
            _ => false,
        }
    }
}

fn is_corrupt_sqlite(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase))
}

/// Attaches a context to a rusqlite result.
trait Ctx<T> {
    fn ctx(self, context: &'static str) -> Result<T>;
}

impl<T> Ctx<T> for rusqlite::Result<T> {
    fn ctx(self, context: &'static str) -> Result<T> {
        self.map_err(|source| IndexError::Sqlite { context, source })
    }
}

/// What one [`Index::apply_batch`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// Messages inserted.
    pub messages: u64,
    /// Messages ignored because a message with the same id was already indexed.
    pub duplicate_messages: u64,
    /// Session patches applied.
    pub sessions: u64,
    /// Entries skipped because their position was at or below the lane's applied position.
    pub skipped: u64,
}

/// The result of [`Index::checkpoint_truncate`] (the three numbers of `PRAGMA wal_checkpoint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointStats {
    /// True if the checkpoint could not complete because of readers or writers.
    pub busy: bool,
    /// Pages in the WAL (-1 if not in WAL mode).
    pub log_pages: i64,
    /// Pages of the WAL copied back into the database (-1 if not in WAL mode).
    pub checkpointed_pages: i64,
}

/// Which sessions [`Index::list_sessions`] returns. All fields default to "no filter".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionFilter {
    /// Only sessions from this source.
    pub source: Option<String>,
    /// Only sessions started at or after this time (seconds since the epoch).
    pub since: Option<f64>,
    /// Only sessions started at or before this time.
    pub until: Option<f64>,
    /// Only sessions whose title contains this text (case-insensitive for ASCII).
    pub title_contains: Option<String>,
    /// At most this many sessions. Default: no limit.
    pub limit: Option<usize>,
}

/// Order of search results.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SearchOrder {
    /// Best BM25 match first (newest first for 1–2 character queries, which have no ranking).
    #[default]
    Relevance,
    /// Newest message first.
    Newest,
    /// Oldest message first.
    Oldest,
}

/// A full-text search.
///
/// The text is split on whitespace; every word must occur (AND) as a literal, case-insensitive
/// substring of the message body or tool name. FTS5 syntax (`"`, `-`, `*`, `OR`, `NEAR`,
/// parentheses) has no meaning: it is searched as text. Words of 3 or more characters use the
/// trigram index; shorter words filter with `LIKE`, and a query made only of such words scans.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchQuery {
    /// What to look for. Must not be empty.
    pub text: String,
    /// Only messages of this session.
    pub session_id: Option<String>,
    /// Only messages with this role.
    pub role: Option<String>,
    /// Only messages from this source (the message's, else its session's).
    pub source: Option<String>,
    /// Only messages at or after this time (seconds since the epoch).
    pub since: Option<f64>,
    /// Only messages at or before this time.
    pub until: Option<f64>,
    /// At most this many hits. Default: 20.
    pub limit: usize,
    /// Result order. Default: [`SearchOrder::Relevance`].
    pub order: SearchOrder,
}

impl Default for SearchQuery {
    fn default() -> Self {
        SearchQuery {
            text: String::new(),
            session_id: None,
            role: None,
            source: None,
            since: None,
            until: None,
            limit: 20,
            order: SearchOrder::Relevance,
        }
    }
}

impl SearchQuery {
    /// A query for `text` with default filters and limit.
    pub fn new(text: impl Into<String>) -> Self {
        SearchQuery { text: text.into(), ..SearchQuery::default() }
    }
}

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    /// The whole message.
    pub message: Message,
    /// About 64 characters around the match, matches wrapped in `[` `]`, cuts marked `…`.
    pub snippet: String,
    /// Relevance, higher is better (negated FTS5 `bm25()`); 0 for `LIKE` matches.
    pub score: f64,
}

const SCHEMA: &str = r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value ANY) WITHOUT ROWID;
CREATE TABLE messages (
    rid INTEGER PRIMARY KEY,
    id TEXT UNIQUE NOT NULL,
    session_id TEXT NOT NULL,
    role TEXT NOT NULL,
    content TEXT,
    tool_call_id TEXT,
    tool_name TEXT,
    tool_calls TEXT,
    reasoning TEXT,
    timestamp REAL,
    token_count INTEGER,
    finish_reason TEXT,
    source TEXT,
    extra TEXT,
    lane TEXT NOT NULL,
    lsn INTEGER NOT NULL,
    fts_len INTEGER,
    fts_text TEXT
);
CREATE INDEX messages_session ON messages (session_id, timestamp, rid);
CREATE INDEX messages_source ON messages (source);
CREATE INDEX messages_timestamp ON messages (timestamp);
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    source TEXT,
    model TEXT,
    title TEXT,
    user_id TEXT,
    chat_id TEXT,
    parent_session_id TEXT,
    started_at REAL,
    ended_at REAL,
    end_reason TEXT,
    extra TEXT
);
CREATE INDEX sessions_started ON sessions (started_at);
CREATE TABLE applied (lane TEXT PRIMARY KEY, lsn INTEGER NOT NULL);
CREATE VIEW fts_source (rid, body, tool_name) AS
    SELECT rid,
           CASE WHEN fts_text IS NOT NULL THEN fts_text
                WHEN fts_len IS NOT NULL THEN CAST(substr(CAST(content AS BLOB), 1, fts_len) AS TEXT)
                ELSE content END,
           tool_name
    FROM messages;
CREATE VIRTUAL TABLE messages_fts USING fts5 (
    body, tool_name,
    content = 'fts_source', content_rowid = 'rid',
    tokenize = 'trigram', detail = full
);
"#;

/// FTS5 merge settings, stored in `messages_fts_config` when the schema is created.
///
/// Every commit (and every 1 MiB of pending terms by default) writes a new level-0 segment, and
/// the compactor commits many batches. With the defaults (`automerge` 4, `crisismerge` 16) the
/// trigram index, whose pending terms are several times the text, flushes several segments per
/// 1000-message batch and merges constantly. So: `hashsize` 8 MiB, so that a typical batch
/// flushes one segment; `automerge` 8, so that each level is rewritten half as often (merge work
/// is log base 8 instead of 4 of the index size) at the cost of up to 8 segments per level to
/// read; `crisismerge` 32, a backstop far below FTS5's hard limit of 2,000 segments that stalls a
/// commit only when incremental merging falls behind. `pgsz` keeps its default (4050 bytes),
/// which fits the 4 KiB database page. Idle time can do further merging with
/// [`Index::optimize_step`]; a full `'optimize'` after small batches is avoided on purpose
/// (it piles up levels; research B6).
const FTS_CONFIG: &[(&str, i64)] = &[("automerge", 8), ("crisismerge", 32), ("hashsize", 8 * 1024 * 1024)];

const MESSAGE_COLS: &str = "m.id, m.session_id, m.role, m.content, m.tool_call_id, m.tool_name, \
     m.tool_calls, m.reasoning, m.timestamp, m.token_count, m.finish_reason, m.source, m.extra";

const SESSION_COLS: &str = "id, source, model, title, user_id, chat_id, parent_session_id, \
     started_at, ended_at, end_reason, extra";

/// The SQLite index. One writer at a time; readers may use [`Index::open_read_only`].
#[derive(Debug)]
pub struct Index {
    conn: Connection,
    path: PathBuf,
    opts: IndexOptions,
}

impl Index {
    /// Opens the index at `path` for reading and writing, creating the file (mode 0600) and the
    /// schema if missing. Sets WAL mode, `synchronous=FULL` and (on Apple) `fullfsync`.
    pub fn open(path: &Path, opts: &IndexOptions) -> Result<Index> {
        create_private_file(path, false)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).ctx("open the index")?;
        conn.busy_timeout(opts.busy_timeout).ctx("set the busy timeout")?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0)).ctx("set journal_mode=WAL")?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(IndexError::NotWal { path: path.to_owned(), mode });
        }
        conn.pragma_update(None, "synchronous", "FULL").ctx("set synchronous=FULL")?;
        conn.pragma_update(None, "foreign_keys", "OFF").ctx("set foreign_keys=OFF")?;
        #[cfg(target_vendor = "apple")]
        {
            conn.pragma_update(None, "fullfsync", "ON").ctx("set fullfsync=ON")?;
            conn.pragma_update(None, "checkpoint_fullfsync", "ON").ctx("set checkpoint_fullfsync=ON")?;
        }
        let mut index = Index { conn, path: path.to_owned(), opts: opts.clone() };
        index.init_schema()?;
        Ok(index)
    }

    /// Opens an existing index read-only (for readers beside the writer). Fails if the file
    /// has no index schema or a newer one.
    pub fn open_read_only(path: &Path, opts: &IndexOptions) -> Result<Index> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).ctx("open the index read-only")?;
        conn.busy_timeout(opts.busy_timeout).ctx("set the busy timeout")?;
        match schema_version(&conn)? {
            Some(v) => check_version(path, v)?,
            None => return Err(IndexError::NotInitialized { path: path.to_owned() }),
        }
        let opts = opts.clone();
        Ok(Index { conn, path: path.to_owned(), opts })
    }

    fn init_schema(&mut self) -> Result<()> {
        let tx =
            self.conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx("begin the schema transaction")?;
        if let Some(found) = schema_version(&tx)? {
            return check_version(&self.path, found);
        }
        tx.execute_batch(SCHEMA).ctx("create the schema")?;
        for (name, value) in FTS_CONFIG {
            tx.execute("INSERT INTO messages_fts (messages_fts, rank) VALUES (?1, ?2)", (name, value))
                .ctx("configure FTS5 merging")?;
        }
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?1), ('created_at', ?2)",
            (SCHEMA_VERSION, unix_now()),
        )
        .ctx("write the schema version")?;
        tx.commit().ctx("commit the schema")?;
        tracing::info!(path = %self.path.display(), version = SCHEMA_VERSION, "created index schema");
        Ok(())
    }

    /// Checks the database: `PRAGMA quick_check` and the FTS5 `integrity-check` with rank 1
    /// (index compared with its content; skipped on a read-only index, where it cannot run).
    /// Returns the problems found, empty when healthy. A corruption error raised while checking
    /// is reported as a problem, not as `Err`.
    pub fn check(&self) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        let quick = collect(&self.conn, "PRAGMA quick_check", [], |r| r.get::<_, String>(0));
        match quick {
            Ok(rows) => problems.extend(rows.into_iter().filter(|r| r != "ok").map(|r| format!("quick_check: {r}"))),
            Err(e) if is_corrupt_sqlite(&e) => problems.push(format!("quick_check: {e}")),
            Err(e) => {
                return Err(IndexError::Sqlite { context: "run quick_check", source: e });
            }
        }
        // The FTS5 command is a write statement: a read-only connection relies on quick_check,
        // which checks the FTS5 structures (SQLite >= 3.44) but not index against content.
        let read_only = self.conn.is_readonly("main").ctx("check read-only")?;
        let fts = match read_only {
            true => Ok(0),
            false => {
                self.conn.execute("INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 1)", [])
            }
        };
        match fts {
            Ok(_) => {}
            Err(e) if is_corrupt_sqlite(&e) => problems.push(format!("fts5 integrity-check: {e}")),
            Err(e) => {
                return Err(IndexError::Sqlite { context: "run the fts5 integrity-check", source: e });
            }
        }
        for p in &problems {
            tracing::warn!(path = %self.path.display(), problem = %p, "index check found a problem");
        }
        Ok(problems)
    }

    /// The last applied journal position of every lane.
    pub fn applied_positions(&self) -> Result<BTreeMap<String, u64>> {
        read_positions(&self.conn)
    }

    /// Applies journal entries in one `IMMEDIATE` transaction that also stores each lane's new
    /// applied position. Idempotent: an entry at or below its lane's applied position is
    /// skipped, and a message whose `id` is already indexed is ignored (the first one wins), so
    /// replay after a crash never duplicates. A message whose session is unknown creates a bare
    /// session row (id, the message's source, `started_at` = the message's timestamp).
    pub fn apply_batch(&mut self, entries: &[(String, u64, Entry)]) -> Result<ApplyStats> {
        let limit = self.opts.tool_output_index_bytes;
        let tx =
            self.conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx("begin the apply transaction")?;
        let mut stats = ApplyStats::default();
        {
            let mut positions = read_positions(&tx)?;
            let mut touched = BTreeSet::new();
            let mut insert_message = tx
                .prepare_cached(
                    "INSERT INTO messages (id, session_id, role, content, tool_call_id, tool_name, \
                     tool_calls, reasoning, timestamp, token_count, finish_reason, source, extra, \
                     lane, lsn, fts_len, fts_text) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .ctx("prepare the message insert")?;
            let mut insert_fts = tx
                .prepare_cached(
                    "INSERT INTO messages_fts (rowid, body, tool_name) \
                     SELECT rid, body, tool_name FROM fts_source WHERE rid BETWEEN ?1 AND ?2",
                )
                .ctx("prepare the fts insert")?;
            // Rows inserted by this batch. They are indexed with one statement at the end: FTS5
            // flushes its pending terms at every statement boundary, so one INSERT per message
            // would write one index segment per message (measured: ~2x slower compaction).
            let mut new_rids: Vec<i64> = Vec::new();
            let mut bare_session = tx
                .prepare_cached(
                    "INSERT INTO sessions (id, source, started_at) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .ctx("prepare the session insert")?;
            let mut patch_session = tx
                .prepare_cached(&format!(
                    "INSERT INTO sessions ({SESSION_COLS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
                     ON CONFLICT (id) DO UPDATE SET \
                     source = coalesce(excluded.source, source), \
                     model = coalesce(excluded.model, model), \
                     title = coalesce(excluded.title, title), \
                     user_id = coalesce(excluded.user_id, user_id), \
                     chat_id = coalesce(excluded.chat_id, chat_id), \
                     parent_session_id = coalesce(excluded.parent_session_id, parent_session_id), \
                     started_at = coalesce(excluded.started_at, started_at), \
                     ended_at = coalesce(excluded.ended_at, ended_at), \
                     end_reason = coalesce(excluded.end_reason, end_reason), \
                     extra = CASE \
                         WHEN excluded.extra IS NULL THEN extra \
                         WHEN extra IS NULL THEN excluded.extra \
                         WHEN json_valid(extra) AND json_valid(excluded.extra) \
                              AND json_type(extra) = 'object' AND json_type(excluded.extra) = 'object' \
                             THEN json_patch(extra, excluded.extra) \
                         ELSE excluded.extra END"
                ))
                .ctx("prepare the session upsert")?;

            for (lane, lsn, entry) in entries {
                let lsn_i = i64::try_from(*lsn)
                    .map_err(|_| IndexError::PositionOutOfRange { lane: lane.clone(), lsn: *lsn })?;
                if positions.get(lane).is_some_and(|&p| *lsn <= p) {
                    stats.skipped += 1;
                    continue;
                }
                match entry {
                    Entry::Message(m) => {
                        let (fts_len, fts_text) = match classify(m, limit) {
                            Indexed::Whole => (None, None),
                            Indexed::Prefix(n) => (i64::try_from(n).ok(), None),
                            Indexed::Extracted(t) => (None, Some(t)),
                        };
                        let inserted = insert_message
                            .execute(rusqlite::params![
                                m.id,
                                m.session_id,
                                m.role,
                                m.content,
                                m.tool_call_id,
                                m.tool_name,
                                m.tool_calls,
                                m.reasoning,
                                m.timestamp,
                                m.token_count,
                                m.finish_reason,
                                m.source,
                                m.extra,
                                lane,
                                lsn_i,
                                fts_len,
                                fts_text,
                            ])
                            .ctx("insert a message")?;
                        if inserted == 0 {
                            stats.duplicate_messages += 1;
                        } else {
                            new_rids.push(tx.last_insert_rowid());
                            bare_session
                                .execute((&m.session_id, &m.source, m.timestamp))
                                .ctx("create a session for a message")?;
                            stats.messages += 1;
                        }
                    }
                    Entry::Session(p) => {
                        patch_session
                            .execute(rusqlite::params![
                                p.id,
                                p.source,
                                p.model,
                                p.title,
                                p.user_id,
                                p.chat_id,
                                p.parent_session_id,
                                p.started_at,
                                p.ended_at,
                                p.end_reason,
                                p.extra,
                            ])
                            .ctx("apply a session patch")?;
                        stats.sessions += 1;
                    }
                }
                positions.insert(lane.clone(), *lsn);
                touched.insert(lane.as_str());
            }
            if let (Some(&lo), Some(&hi)) = (new_rids.iter().min(), new_rids.iter().max()) {
                // New rowids are max(rowid)+1 each, so the batch is one contiguous range; if SQLite
                // ever picked others (rowid space exhausted), index them one by one.
                let contiguous = usize::try_from(hi - lo).ok().map(|d| d + 1) == Some(new_rids.len());
                if contiguous {
                    insert_fts.execute((lo, hi)).ctx("index the batch")?;
                } else {
                    for rid in &new_rids {
                        insert_fts.execute((rid, rid)).ctx("index a message")?;
                    }
                }
            }
            let mut store_position = tx
                .prepare_cached(
                    "INSERT INTO applied (lane, lsn) VALUES (?1, ?2) \
                     ON CONFLICT (lane) DO UPDATE SET lsn = max(lsn, excluded.lsn)",
                )
                .ctx("prepare the position update")?;
            for (lane, lsn) in positions.iter().filter(|(l, _)| touched.contains(l.as_str())) {
                // Fits: it passed the range check above.
                let lsn = i64::try_from(*lsn).unwrap_or(i64::MAX);
                store_position.execute((lane, lsn)).ctx("store an applied position")?;
            }
        }
        tx.commit().ctx("commit the apply transaction")?;
        Ok(stats)
    }

    /// True if a message with this id is indexed.
    pub fn contains_message(&self, id: &str) -> Result<bool> {
        self.conn
            .prepare_cached("SELECT 1 FROM messages WHERE id = ?1")
            .and_then(|mut st| st.exists([id]))
            .ctx("look up a message")
    }

    /// The number of indexed messages.
    pub fn message_count(&self) -> Result<u64> {
        self.conn
            .query_row("SELECT count(*) FROM messages", [], |r| r.get::<_, i64>(0))
            .map(|n| u64::try_from(n).unwrap_or(0))
            .ctx("count messages")
    }

    /// The ids of all indexed messages, in index order (for verification against the journal).
    pub fn message_ids(&self) -> Result<Vec<String>> {
        collect(&self.conn, "SELECT id FROM messages ORDER BY rid", [], |r| r.get(0)).ctx("list message ids")
    }

    /// The messages of a session, by timestamp, then journal order.
    pub fn messages(&self, session_id: &str) -> Result<Vec<Message>> {
        let sql = format!(
            "SELECT {MESSAGE_COLS} FROM messages m WHERE m.session_id = ?1 \
             ORDER BY m.timestamp, m.rid"
        );
        collect(&self.conn, &sql, [session_id], message_from_row).ctx("read messages")
    }

    /// One session, if known.
    pub fn get_session(&self, id: &str) -> Result<Option<Session>> {
        self.conn
            .prepare_cached(&format!("SELECT {SESSION_COLS} FROM sessions WHERE id = ?1"))
            .and_then(|mut st| st.query_row([id], session_from_row).optional())
            .ctx("read a session")
    }

    /// Sessions matching the filter, newest (`started_at`) first.
    pub fn list_sessions(&self, f: &SessionFilter) -> Result<Vec<Session>> {
        let sql = format!(
            "SELECT {SESSION_COLS} FROM sessions \
                 WHERE (?1 IS NULL OR source = ?1) \
                   AND (?2 IS NULL OR started_at >= ?2) \
                   AND (?3 IS NULL OR started_at <= ?3) \
                   AND (?4 IS NULL OR title LIKE ?4 ESCAPE '\\') \
                 ORDER BY started_at DESC NULLS LAST, id DESC LIMIT ?5"
        );
        let title = f.title_contains.as_deref().map(like_pattern);
        let limit = f.limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let params = rusqlite::params![f.source, f.since, f.until, title, limit];
        collect(&self.conn, &sql, params, session_from_row).ctx("list sessions")
    }

    /// Searches message bodies and tool names; see [`SearchQuery`] for the query language.
    /// Returns [`IndexError::EmptyQuery`] for an empty or all-whitespace query (a caller bug,
    /// not "everything").
    pub fn search(&self, q: &SearchQuery) -> Result<Vec<SearchHit>> {
        let words: Vec<&str> = q.text.split_whitespace().collect();
        if words.is_empty() {
            return Err(IndexError::EmptyQuery);
        }
        let (long, short): (Vec<&str>, Vec<&str>) = words.iter().partition(|w| w.chars().count() >= 3);
        let fts = !long.is_empty();
        let mut params: Vec<Value> = Vec::new();
        let mut sql = format!("SELECT {MESSAGE_COLS}, s.body, s.tool_name");
        if fts {
            sql.push_str(&format!(
                ", snippet(messages_fts, -1, '[', ']', '…', {SNIPPET_CONTEXT}), \
                 -bm25(messages_fts) FROM messages_fts \
                 JOIN messages m ON m.rid = messages_fts.rowid \
                 JOIN fts_source s ON s.rid = m.rid \
                 WHERE messages_fts MATCH ?"
            ));
            params.push(Value::Text(fts_match_expr(&long)));
        } else {
            sql.push_str(", NULL, 0.0 FROM messages m JOIN fts_source s ON s.rid = m.rid WHERE 1");
        }
        for w in &short {
            sql.push_str(" AND (s.body LIKE ? ESCAPE '\\' OR s.tool_name LIKE ? ESCAPE '\\')");
            let pattern = like_pattern(w);
            params.push(Value::Text(pattern.clone()));
            params.push(Value::Text(pattern));
        }
        let mut filter = |clause: &str, v: Option<Value>| {
            if let Some(v) = v {
                sql.push_str(clause);
                params.push(v);
            }
        };
        filter(" AND m.session_id = ?", q.session_id.clone().map(Value::Text));
        filter(" AND m.role = ?", q.role.clone().map(Value::Text));
        filter(
            " AND coalesce(m.source, (SELECT source FROM sessions WHERE id = m.session_id)) = ?",
            q.source.clone().map(Value::Text),
        );
        filter(" AND m.timestamp >= ?", q.since.map(Value::Real));
        filter(" AND m.timestamp <= ?", q.until.map(Value::Real));
        sql.push_str(match (q.order, fts) {
            (SearchOrder::Relevance, true) => " ORDER BY rank, m.rid",
            (SearchOrder::Relevance, false) | (SearchOrder::Newest, _) => " ORDER BY m.timestamp DESC, m.rid DESC",
            (SearchOrder::Oldest, _) => " ORDER BY m.timestamp, m.rid",
        });
        sql.push_str(" LIMIT ?");
        params.push(Value::Integer(i64::try_from(q.limit).unwrap_or(i64::MAX)));

        let params = rusqlite::params_from_iter(params);
        let rows = collect(&self.conn, &sql, params, |r| {
            let message = message_from_row(r)?;
            let body: Option<String> = r.get(13)?;
            let tool_name: Option<String> = r.get(14)?;
            let snippet: Option<String> = r.get(15)?;
            let score: f64 = r.get(16)?;
            Ok((message, body, tool_name, snippet, score))
        })
        .ctx("run a search")?;
        Ok(rows
            .into_iter()
            .map(|(message, body, tool_name, snippet, score)| {
                let snippet = snippet.unwrap_or_else(|| {
                    let body = body.unwrap_or_default();
                    match_snippet(&body, &q.text)
                        .or_else(|| tool_name.and_then(|t| match_snippet(&t, &q.text)))
                        .unwrap_or_else(|| head(&body, SNIPPET_CONTEXT))
                });
                SearchHit { message, snippet, score }
            })
            .collect())
    }

    /// Does a bounded amount of FTS5 merging (`'merge'` of about 500 pages), for idle time.
    /// Returns true if it did work, so a caller may repeat it while it returns true.
    pub fn optimize_step(&self) -> Result<bool> {
        let before = self.conn.total_changes();
        self.conn
            .execute("INSERT INTO messages_fts (messages_fts, rank) VALUES ('merge', ?1)", [MERGE_STEP_PAGES])
            .ctx("merge fts segments")?;
        Ok(self.conn.total_changes().saturating_sub(before) >= 2)
    }

    /// Rebuilds the full-text index from `messages` (FTS5 `'rebuild'`), the repair when only
    /// the FTS5 integrity-check fails.
    pub fn rebuild_fts(&self) -> Result<()> {
        self.conn
            .execute("INSERT INTO messages_fts (messages_fts) VALUES ('rebuild')", [])
            .ctx("rebuild the fts index")?;
        tracing::info!(path = %self.path.display(), "rebuilt the full-text index");
        Ok(())
    }

    /// Runs `PRAGMA wal_checkpoint(TRUNCATE)`: copies the WAL into the database, syncs it and
    /// truncates the WAL to zero bytes unless readers prevent it (`busy`).
    pub fn checkpoint_truncate(&self) -> Result<CheckpointStats> {
        // Recorded first, so that the checkpoint itself carries it into the database file and
        // leaves the WAL empty; `logbook stats` reads it.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        self.conn
            .execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('last_checkpoint_unix_ms', ?1)", [now])
            .ctx("record the checkpoint time")?;
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                Ok(CheckpointStats {
                    busy: r.get::<_, i64>(0)? != 0,
                    log_pages: r.get(1)?,
                    checkpointed_pages: r.get(2)?,
                })
            })
            .ctx("checkpoint the WAL")
    }

    /// When [`Index::checkpoint_truncate`] last ran (ms since the Unix epoch), if ever.
    pub fn last_checkpoint_unix_ms(&self) -> Result<Option<u64>> {
        let v: Option<i64> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'last_checkpoint_unix_ms'", [], |r| r.get(0))
            .optional()
            .ctx("read the checkpoint time")?;
        Ok(v.and_then(|v| u64::try_from(v).ok()))
    }

    /// Copies the index into a new file `dest` (created 0600; an existing file is refused)
    /// with SQLite's online backup API, then syncs it.
    pub fn backup_to(&self, dest: &Path) -> Result<()> {
        create_private_file(dest, true)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut dst = Connection::open_with_flags(dest, flags).ctx("open the backup file")?;
        Backup::new(&self.conn, &mut dst)
            .and_then(|b| b.run_to_completion(256, Duration::from_millis(5), None))
            .ctx("copy the index to the backup")?;
        dst.close().map_err(|(_, e)| e).ctx("close the backup")?;
        let io_err = |context, source| IndexError::Io { context, path: dest.to_owned(), source };
        File::open(dest).and_then(|f| f.sync_all()).map_err(|e| io_err("sync", e))?;
        if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir).and_then(|f| f.sync_all()).map_err(|e| io_err("sync the directory of", e))?;
        }
        tracing::info!(from = %self.path.display(), to = %dest.display(), "backed up the index");
        Ok(())
    }

    /// Sizes in bytes of the database file and its WAL (0 when missing).
    pub fn file_sizes(&self) -> (u64, u64) {
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
        (size(&self.path), size(Path::new(&wal)))
    }
}

/// The schema version in the file: `None` without a `meta` table, 0 if it has no version row.
fn schema_version(conn: &Connection) -> Result<Option<i64>> {
    let has_meta: bool = conn
        .query_row("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'meta'", [], |r| r.get(0))
        .ctx("read the schema")?;
    if !has_meta {
        return Ok(None);
    }
    conn.query_row("SELECT coalesce((SELECT value FROM meta WHERE key = 'schema_version'), 0)", [], |r| r.get(0))
        .map(Some)
        .ctx("read the schema version")
}

fn check_version(path: &Path, found: i64) -> Result<()> {
    if found > SCHEMA_VERSION {
        return Err(IndexError::NewerSchema { path: path.to_owned(), found, supported: SCHEMA_VERSION });
    }
    if found < 1 {
        return Err(IndexError::Corrupt { path: path.to_owned(), detail: format!("invalid schema version {found}") });
    }
    Ok(())
}

/// Runs a query and collects its rows.
fn collect<T, P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    f: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    conn.prepare_cached(sql)?.query_map(params, f)?.collect()
}

/// Creates `path` empty with mode 0600 if missing (or fails if `must_be_new` and it exists).
fn create_private_file(path: &Path, must_be_new: bool) -> Result<()> {
    let mut o = OpenOptions::new();
    o.write(true).mode(0o600);
    if must_be_new {
        o.create_new(true);
    } else {
        o.create(true);
    }
    o.open(path).map(drop).map_err(|source| IndexError::Io { context: "create", path: path.to_owned(), source })
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

fn read_positions(conn: &Connection) -> Result<BTreeMap<String, u64>> {
    let sql = "SELECT lane, lsn FROM applied";
    let rows =
        collect(conn, sql, [], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))).ctx("read applied positions")?;
    Ok(rows.into_iter().map(|(lane, lsn)| (lane, u64::try_from(lsn).unwrap_or(0))).collect())
}

fn message_from_row(r: &Row<'_>) -> rusqlite::Result<Message> {
    Ok(Message {
        id: r.get(0)?,
        session_id: r.get(1)?,
        role: r.get(2)?,
        content: r.get(3)?,
        tool_call_id: r.get(4)?,
        tool_name: r.get(5)?,
        tool_calls: r.get(6)?,
        reasoning: r.get(7)?,
        // SQLite stores NaN as NULL.
        timestamp: r.get::<_, Option<f64>>(8)?.unwrap_or(f64::NAN),
        token_count: r.get(9)?,
        finish_reason: r.get(10)?,
        source: r.get(11)?,
        extra: r.get(12)?,
    })
}

fn session_from_row(r: &Row<'_>) -> rusqlite::Result<Session> {
    Ok(Session {
        id: r.get(0)?,
        source: r.get(1)?,
        model: r.get(2)?,
        title: r.get(3)?,
        user_id: r.get(4)?,
        chat_id: r.get(5)?,
        parent_session_id: r.get(6)?,
        started_at: r.get(7)?,
        ended_at: r.get(8)?,
        end_reason: r.get(9)?,
        extra: r.get(10)?,
    })
}

/// How a message body is indexed.
enum Indexed {
    /// The whole `content`.
    Whole,
    /// The first n bytes of `content` (a character boundary).
    Prefix(usize),
    /// Text extracted from multimodal content.
    Extracted(String),
}

fn classify(m: &Message, limit: usize) -> Indexed {
    let Some(content) = m.content.as_deref() else {
        return Indexed::Whole;
    };
    let is_tool = m.role == "tool";
    if let Some(text) = content.strip_prefix(MULTIMODAL_PREFIX).and_then(multimodal_text) {
        let cut = if is_tool { char_floor(&text, limit) } else { text.len() };
        return Indexed::Extracted(text.get(..cut).unwrap_or_default().to_owned());
    }
    if is_tool && content.len() > limit { Indexed::Prefix(char_floor(content, limit)) } else { Indexed::Whole }
}

/// The text parts of a multimodal JSON array, joined by newlines; `None` if it does not parse.
fn multimodal_text(json: &str) -> Option<String> {
    let parts: Vec<serde_json::Value> = serde_json::from_str(json).ok()?;
    let texts: Vec<&str> = parts
        .iter()
        .filter(|p| p.get("type").and_then(|t| t.as_str()) == Some("text"))
        .filter_map(|p| p.get("text").and_then(|t| t.as_str()))
        .collect();
    Some(texts.join("\n"))
}

/// The largest character boundary of `s` at or below `n`.
fn char_floor(s: &str, n: usize) -> usize {
    let mut i = n.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The text of a message that search sees: the body with multimodal parts reduced to their
/// text and tool output cut to `opts.tool_output_index_bytes`. The store uses it with
/// [`match_snippet`] to search messages not yet indexed exactly as the index would.
pub fn indexed_text<'a>(m: &'a Message, opts: &IndexOptions) -> Option<Cow<'a, str>> {
    let content = m.content.as_deref()?;
    Some(match classify(m, opts.tool_output_index_bytes) {
        Indexed::Whole => Cow::Borrowed(content),
        Indexed::Prefix(n) => Cow::Borrowed(content.get(..n).unwrap_or_default()),
        Indexed::Extracted(t) => Cow::Owned(t),
    })
}

/// The FTS5 expression for words: each one quoted as a string (`"` doubled), ANDed, so that
/// no FTS5 syntax in user text is ever interpreted.
fn fts_match_expr(words: &[&str]) -> String {
    words.iter().map(|w| format!("\"{}\"", w.replace('"', "\"\""))).collect::<Vec<_>>().join(" ")
}

/// `%word%` with `%`, `_` and `\` escaped for `LIKE … ESCAPE '\'`.
fn like_pattern(word: &str) -> String {
    let mut p = String::with_capacity(word.len() + 2);
    p.push('%');
    for c in word.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// The first `n` characters of `s`, with `…` if cut.
fn head(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", s.get(..i).unwrap_or_default()),
        None => s.to_owned(),
    }
}

/// Case-insensitive substring match with the same snippet format as [`Index::search`]: the
/// query is split on whitespace and every word must occur in `text`; the snippet is about 64
/// characters around the first match, each match inside it wrapped in `[` `]`, cuts marked `…`.
/// Returns `None` if a word is missing or the query is empty. For messages not yet indexed.
pub fn match_snippet(text: &str, query: &str) -> Option<String> {
    let words: Vec<Vec<char>> =
        query.split_whitespace().map(|w| w.chars().flat_map(char::to_lowercase).collect()).collect();
    if words.is_empty() {
        return None;
    }
    // Fold case per character, remembering which original character each folded one came from.
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut folded = Vec::with_capacity(chars.len());
    let mut origin = Vec::with_capacity(chars.len());
    for (ci, &(_, c)) in chars.iter().enumerate() {
        for l in c.to_lowercase() {
            folded.push(l);
            origin.push(ci);
        }
    }
    // Every match as a range of original character indexes.
    let mut matches: Vec<(usize, usize)> = Vec::new();
    for w in &words {
        let found: Vec<(usize, usize)> = folded
            .windows(w.len())
            .enumerate()
            .filter(|(_, win)| win == w)
            .filter_map(|(i, _)| Some((*origin.get(i)?, *origin.get(i + w.len() - 1)? + 1)))
            .collect();
        if found.is_empty() {
            return None;
        }
        matches.extend(found);
    }
    matches.sort_unstable();
    let &(first_start, first_end) = matches.first()?;
    let half = SNIPPET_CONTEXT / 2;
    let start = first_start.saturating_sub(half);
    let end = (first_end + half).min(chars.len());
    let byte = |ci: usize| chars.get(ci).map_or(text.len(), |&(b, _)| b);
    let mut out = String::new();
    if start > 0 {
        out.push('…');
    }
    let mut pos = start;
    for &(s, e) in &matches {
        if s < pos || e > end {
            continue; // overlaps a previous mark, or outside the window
        }
        out.push_str(text.get(byte(pos)..byte(s)).unwrap_or_default());
        out.push('[');
        out.push_str(text.get(byte(s)..byte(e)).unwrap_or_default());
        out.push(']');
        pos = e;
    }
    out.push_str(text.get(byte(pos)..byte(end)).unwrap_or_default());
    if end < chars.len() {
        out.push('…');
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::model::SessionPatch;

    fn msg(id: &str, session: &str, role: &str, content: &str, ts: f64) -> Message {
        Message {
            id: id.into(),
            session_id: session.into(),
            role: role.into(),
            content: Some(content.into()),
            timestamp: ts,
            source: Some("cli".into()),
            ..Message::default()
        }
    }

    fn batch(msgs: Vec<Message>) -> Vec<(String, u64, Entry)> {
        msgs.into_iter().enumerate().map(|(i, m)| ("a".to_string(), i as u64 + 1, Entry::Message(m))).collect()
    }

    fn open_tmp() -> (tempfile::TempDir, Index) {
        let dir = tempfile::tempdir().unwrap();
        let idx = Index::open(&dir.path().join("index.db"), &IndexOptions::default()).unwrap();
        (dir, idx)
    }

    fn ids(hits: &[SearchHit]) -> Vec<&str> {
        hits.iter().map(|h| h.message.id.as_str()).collect()
    }

    fn find(idx: &Index, text: &str) -> Vec<String> {
        let hits = idx.search(&SearchQuery::new(text)).unwrap();
        let mut v: Vec<String> = ids(&hits).into_iter().map(String::from).collect();
        v.sort();
        v
    }

    #[test]
    fn schema_create_reopen_and_newer_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.db");
        let opts = IndexOptions::default();
        {
            let mut idx = Index::open(&path, &opts).unwrap();
            idx.apply_batch(&batch(vec![msg("m1", "s", "user", "hello", 1.0)])).unwrap();
        }
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);
        let idx = Index::open(&path, &opts).unwrap();
        assert_eq!(idx.message_count().unwrap(), 1);
        assert!(idx.check().unwrap().is_empty());
        let ro = Index::open_read_only(&path, &opts).unwrap();
        assert_eq!(ro.message_ids().unwrap(), vec!["m1".to_string()]);
        assert_eq!(ro.check().unwrap(), Vec::<String>::new());
        idx.conn.execute("UPDATE meta SET value = 99 WHERE key = 'schema_version'", []).unwrap();
        drop((idx, ro));
        let err = Index::open(&path, &opts).unwrap_err();
        assert!(matches!(err, IndexError::NewerSchema { found: 99, .. }), "{err}");
        let err = Index::open_read_only(&path, &opts).unwrap_err();
        assert!(matches!(err, IndexError::NewerSchema { .. }), "{err}");
    }

    #[test]
    fn apply_is_idempotent_and_stores_positions() {
        let (_d, mut idx) = open_tmp();
        let mut entries = batch(vec![
            msg("m1", "s1", "user", "first message", 1.0),
            msg("m2", "s1", "assistant", "second message", 2.0),
        ]);
        entries.push((
            "b".into(),
            7,
            Entry::Session(SessionPatch {
                id: "s1".into(),
                title: Some("Greetings".into()),
                ..SessionPatch::default()
            }),
        ));
        let s = idx.apply_batch(&entries).unwrap();
        assert_eq!((s.messages, s.sessions, s.skipped), (2, 1, 0));
        let s = idx.apply_batch(&entries).unwrap();
        assert_eq!((s.messages, s.sessions, s.skipped), (0, 0, 3));
        // The same message id at a new position is ignored: the first one wins.
        let mut again = msg("m1", "s1", "user", "changed", 9.0);
        again.role = "user".into();
        let s = idx.apply_batch(&[("a".into(), 3, Entry::Message(again))]).unwrap();
        assert_eq!(s.duplicate_messages, 1);
        assert_eq!(idx.message_count().unwrap(), 2);
        let pos = idx.applied_positions().unwrap();
        assert_eq!(pos.get("a"), Some(&3));
        assert_eq!(pos.get("b"), Some(&7));
        let msgs = idx.messages("s1").unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].content.as_deref(), Some("first message"));
        assert_eq!(find(&idx, "message"), vec!["m1", "m2"]);
        assert!(idx.contains_message("m2").unwrap());
        assert!(!idx.contains_message("m3").unwrap());
        assert!(idx.check().unwrap().is_empty());
    }

    #[test]
    fn sessions_bare_rows_patches_and_listing() {
        let (_d, mut idx) = open_tmp();
        let mut m = msg("m1", "s1", "user", "hi", 100.0);
        m.source = Some("telegram".into());
        let patch = |id: &str, title: Option<&str>, started: Option<f64>| {
            Entry::Session(SessionPatch {
                id: id.into(),
                source: Some("cli".into()).filter(|_| id == "s2"),
                title: title.map(String::from),
                started_at: started,
                ..SessionPatch::default()
            })
        };
        idx.apply_batch(&[
            ("a".into(), 1, Entry::Message(m)),
            ("a".into(), 2, patch("s1", Some("Weather 50%_x"), None)),
            ("a".into(), 3, patch("s2", Some("Other"), Some(200.0))),
            ("a".into(), 4, patch("s1", None, None)),
        ])
        .unwrap();
        let s1 = idx.get_session("s1").unwrap().unwrap();
        assert_eq!(s1.source.as_deref(), Some("telegram"));
        assert_eq!(s1.started_at, Some(100.0));
        assert_eq!(s1.title.as_deref(), Some("Weather 50%_x"));
        assert_eq!(idx.get_session("nope").unwrap(), None);
        let all = idx.list_sessions(&SessionFilter::default()).unwrap();
        assert_eq!(all.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["s2", "s1"]);
        let f =
            |f: SessionFilter| -> Vec<String> { idx.list_sessions(&f).unwrap().into_iter().map(|s| s.id).collect() };
        assert_eq!(f(SessionFilter { source: Some("telegram".into()), ..Default::default() }), ["s1"]);
        assert_eq!(f(SessionFilter { since: Some(150.0), ..Default::default() }), ["s2"]);
        assert_eq!(f(SessionFilter { until: Some(150.0), ..Default::default() }), ["s1"]);
        assert_eq!(f(SessionFilter { title_contains: Some("50%_".into()), ..Default::default() }), ["s1"]);
        assert!(f(SessionFilter { title_contains: Some("0%x".into()), ..Default::default() }).is_empty());
        assert_eq!(f(SessionFilter { limit: Some(1), ..Default::default() }), ["s2"]);
    }

    #[test]
    fn search_treats_syntax_as_literal_text() {
        let (_d, mut idx) = open_tmp();
        idx.apply_batch(&batch(vec![
            msg("q", "s", "user", r#"she said "hello world" twice"#, 1.0),
            msg("dash", "s", "user", "run chat-send --force now", 2.0),
            msg("star", "s", "user", "glob src/*.rs files", 3.0),
            msg("or", "s", "user", "this OR that", 4.0),
            msg("paren", "s", "user", "call f(x) then NEAR(a b)", 5.0),
            msg("plain", "s", "user", "hello there world", 6.0),
        ]))
        .unwrap();
        assert_eq!(find(&idx, r#""hello world""#), vec!["q"]);
        assert_eq!(find(&idx, r#"said ""#), vec!["q"]);
        assert_eq!(find(&idx, "\""), vec!["q"]);
        assert_eq!(find(&idx, "chat-send"), vec!["dash"]);
        assert_eq!(find(&idx, "--force"), vec!["dash"]);
        assert_eq!(find(&idx, "-force"), vec!["dash"]);
        assert_eq!(find(&idx, "*.rs"), vec!["star"]);
        assert_eq!(find(&idx, "src/*"), vec!["star"]);
        assert_eq!(find(&idx, "this OR that"), vec!["or"]);
        assert!(find(&idx, "OR").contains(&"or".to_string()), "two letters: a LIKE scan");
        assert_eq!(find(&idx, "f(x)"), vec!["paren"]);
        assert_eq!(find(&idx, "NEAR(a"), vec!["paren"]);
        assert_eq!(find(&idx, ")"), vec!["paren"]);
        assert_eq!(find(&idx, "hello world"), vec!["plain", "q"]);
        assert_eq!(find(&idx, "HELLO"), vec!["plain", "q"]);
        assert!(find(&idx, "hello nowhere").is_empty());
        assert!(find(&idx, "AND NOT").is_empty());
        assert!(matches!(idx.search(&SearchQuery::new("  ")), Err(IndexError::EmptyQuery)));
        let hits = idx.search(&SearchQuery::new("chat-send")).unwrap();
        assert_eq!(hits[0].snippet, "run [chat-send] --force now");
        assert!(hits[0].score > 0.0);
    }

    #[test]
    fn short_queries_like_escaping_cjk_and_emoji() {
        let (_d, mut idx) = open_tmp();
        idx.apply_batch(&batch(vec![
            msg("pct", "s", "user", "discount 50% today", 1.0),
            msg("under", "s", "user", "snake_case name", 2.0),
            msg("cjk", "s", "user", "我们今天讨论数据库索引的设计", 3.0),
            msg("emoji", "s", "user", "ship it 🚀🚀 now", 4.0),
            msg("x", "s", "user", "xy plain", 5.0),
        ]))
        .unwrap();
        assert_eq!(find(&idx, "%"), vec!["pct"]);
        assert_eq!(find(&idx, "_"), vec!["under"]);
        assert_eq!(find(&idx, "xy"), vec!["x"]);
        assert_eq!(find(&idx, "XY"), vec!["x"]);
        assert_eq!(find(&idx, "数据库"), vec!["cjk"]);
        assert_eq!(find(&idx, "索引"), vec!["cjk"]);
        assert_eq!(find(&idx, "库"), vec!["cjk"]);
        assert_eq!(find(&idx, "🚀"), vec!["emoji"]);
        assert_eq!(find(&idx, "🚀🚀 now"), vec!["emoji"]);
        assert_eq!(find(&idx, "it 🚀"), vec!["emoji"]);
        // Short words filter a trigram match.
        assert_eq!(find(&idx, "plain xy"), vec!["x"]);
        assert!(find(&idx, "plain zz").is_empty());
        let hits = idx.search(&SearchQuery::new("数据库")).unwrap();
        assert!(hits[0].snippet.contains("[数据库]"), "{}", hits[0].snippet);
        let hits = idx.search(&SearchQuery::new("xy")).unwrap();
        assert_eq!(hits[0].snippet, "[xy] plain");
    }

    #[test]
    fn search_filters_and_ordering() {
        let (_d, mut idx) = open_tmp();
        let mut t = msg("t", "s2", "tool", "needle in tool output", 30.0);
        t.source = Some("telegram".into());
        idx.apply_batch(&batch(vec![
            msg("u1", "s1", "user", "needle", 10.0),
            msg("a1", "s1", "assistant", "needle needle needle needle", 20.0),
            t,
        ]))
        .unwrap();
        let run = |f: &dyn Fn(&mut SearchQuery)| {
            let mut q = SearchQuery::new("needle");
            f(&mut q);
            ids(&idx.search(&q).unwrap()).into_iter().map(String::from).collect::<Vec<_>>()
        };
        assert_eq!(run(&|q| q.order = SearchOrder::Newest), ["t", "a1", "u1"]);
        assert_eq!(run(&|q| q.order = SearchOrder::Oldest), ["u1", "a1", "t"]);
        assert_eq!(run(&|q| q.session_id = Some("s1".into())).len(), 2);
        assert_eq!(run(&|q| q.role = Some("tool".into())), ["t"]);
        assert_eq!(run(&|q| q.source = Some("telegram".into())), ["t"]);
        assert_eq!(run(&|q| q.source = Some("cli".into())).len(), 2);
        assert_eq!(
            run(&|q| {
                q.since = Some(15.0);
                q.until = Some(25.0)
            }),
            ["a1"]
        );
        assert_eq!(run(&|q| q.limit = 1).len(), 1);
        let hits = idx.search(&SearchQuery::new("needle")).unwrap();
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
        let long = format!("{} needle {}", "left ".repeat(40), "right ".repeat(40));
        idx.apply_batch(&[("c".into(), 1, Entry::Message(msg("long", "s4", "user", &long, 50.0)))]).unwrap();
        let mut q = SearchQuery::new("needle");
        q.session_id = Some("s4".into());
        let snippet = &idx.search(&q).unwrap()[0].snippet;
        assert!(snippet.contains("[needle]") && (40..=100).contains(&snippet.chars().count()));
        // Tool names are searchable too.
        let mut named = msg("n", "s3", "tool", "ok", 40.0);
        named.tool_name = Some("web_search".into());
        idx.apply_batch(&[("b".into(), 1, Entry::Message(named))]).unwrap();
        assert_eq!(find(&idx, "web_sea"), vec!["n"]);
    }

    #[test]
    fn tool_output_beyond_prefix_is_not_indexed_but_returned() {
        let (_d, mut idx) = open_tmp();
        // A multibyte character straddles the 8 KiB cut.
        let body = format!("headneedle {}é tailneedle", "a".repeat(8 * 1024 - 12));
        let mut head_msg = msg("tool", "s", "tool", &body, 1.0);
        head_msg.tool_name = Some("shell".into());
        let user = msg("user", "s", "user", &format!("{} tailneedle", "b".repeat(9000)), 2.0);
        idx.apply_batch(&batch(vec![head_msg, user])).unwrap();
        assert_eq!(find(&idx, "headneedle"), vec!["tool"]);
        assert_eq!(find(&idx, "tailneedle"), vec!["user"]);
        let msgs = idx.messages("s").unwrap();
        assert!(msgs[0].content.as_deref().unwrap().ends_with("tailneedle"));
        let indexed = indexed_text(&msgs[0], &IndexOptions::default()).unwrap();
        assert_eq!(indexed.len(), 8 * 1024 - 1);
        assert!(idx.check().unwrap().is_empty());
        idx.rebuild_fts().unwrap();
        assert_eq!(find(&idx, "tailneedle"), vec!["user"]);
        assert!(idx.check().unwrap().is_empty());
    }

    #[test]
    fn multimodal_text_parts_only() {
        let (_d, mut idx) = open_tmp();
        let parts =
            r#"[{"type":"text","text":"describe this picture"},{"type":"image_url","image_url":{"url":"data:zebra"}}]"#;
        let broken = "\u{0}json:[{\"type\":\"text\" unclosed giraffe";
        idx.apply_batch(&batch(vec![
            msg("mm", "s", "user", &format!("\u{0}json:{parts}"), 1.0),
            msg("bad", "s", "user", broken, 2.0),
        ]))
        .unwrap();
        assert_eq!(find(&idx, "picture"), vec!["mm"]);
        assert!(find(&idx, "zebra").is_empty());
        assert!(find(&idx, "image_url").is_empty());
        assert_eq!(find(&idx, "giraffe"), vec!["bad"]);
        let hits = idx.search(&SearchQuery::new("picture")).unwrap();
        assert_eq!(hits[0].snippet, "describe this [picture]");
        assert_eq!(idx.messages("s").unwrap()[0].content.as_deref(), Some(&*format!("\u{0}json:{parts}")));
        assert!(idx.check().unwrap().is_empty());
    }

    #[test]
    fn check_detects_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.db");
        {
            let mut idx = Index::open(&path, &IndexOptions::default()).unwrap();
            let msgs = (0..400)
                .map(|i| {
                    msg(&format!("m{i}"), "s", "user", &format!("message number {i} {}", "x".repeat(300)), i as f64)
                })
                .collect();
            idx.apply_batch(&batch(msgs)).unwrap();
            assert!(idx.check().unwrap().is_empty());
            // Content changed behind the index's back: only the rank-1 FTS5 check sees it.
            idx.conn.execute("UPDATE messages SET content = 'zzz' WHERE id = 'm5'", []).unwrap();
            let problems = idx.check().unwrap();
            assert!(problems.iter().any(|p| p.starts_with("fts5")), "{problems:?}");
            idx.rebuild_fts().unwrap();
            assert!(idx.check().unwrap().is_empty());
        }
        let mut bytes = std::fs::read(&path).unwrap();
        assert!(bytes.len() > 40 * 4096);
        for (i, b) in bytes[8 * 4096..30 * 4096].iter_mut().enumerate() {
            *b = (i * 7 % 251) as u8;
        }
        std::fs::write(&path, bytes).unwrap();
        match Index::open(&path, &IndexOptions::default()) {
            Ok(idx) => {
                let problems = idx.check().unwrap();
                eprintln!("damage found by check: {problems:?}");
                assert!(!problems.is_empty());
            }
            Err(e) => {
                eprintln!("damage found by open: {e}");
                assert!(e.is_corruption(), "{e}");
            }
        }
        // A file that is not a database at all.
        let junk = dir.path().join("junk.db");
        std::fs::write(&junk, vec![0x5a; 8192]).unwrap();
        let err = Index::open(&junk, &IndexOptions::default()).unwrap_err();
        assert!(err.is_corruption(), "{err}");
    }

    #[test]
    fn backup_checkpoint_and_sizes() {
        let (dir, mut idx) = open_tmp();
        let msgs = (0..50).map(|i| msg(&format!("m{i}"), "s", "user", "backup me please", i as f64)).collect();
        idx.apply_batch(&batch(msgs)).unwrap();
        let (_, wal) = idx.file_sizes();
        assert!(wal > 0);
        let cp = idx.checkpoint_truncate().unwrap();
        assert!(!cp.busy);
        assert_eq!(idx.file_sizes().1, 0);
        while idx.optimize_step().unwrap() {}
        let dest = dir.path().join("backup.db");
        idx.backup_to(&dest).unwrap();
        assert!(idx.backup_to(&dest).is_err(), "an existing file is refused");
        let copy = Index::open(&dest, &IndexOptions::default()).unwrap();
        assert!(copy.check().unwrap().is_empty());
        assert_eq!(copy.message_count().unwrap(), 50);
        assert_eq!(copy.search(&SearchQuery::new("please")).unwrap().len(), 20);
        assert_eq!(copy.applied_positions().unwrap(), idx.applied_positions().unwrap());
    }

    #[test]
    fn match_snippet_marks_and_cuts() {
        assert_eq!(match_snippet("Hello World", "world").as_deref(), Some("Hello [World]"));
        assert_eq!(match_snippet("abc", "abd"), None);
        assert_eq!(match_snippet("abc", " "), None);
        assert_eq!(match_snippet("a b a", "a").as_deref(), Some("[a] b [a]"));
        assert_eq!(match_snippet("ÉCOLE élève", "école ÉLÈVE").as_deref(), Some("[ÉCOLE] [élève]"));
        let long = format!("{}needle{}", "x".repeat(100), "y".repeat(100));
        let s = match_snippet(&long, "NEEDLE").unwrap();
        assert!(s.starts_with('…') && s.ends_with('…') && s.contains("[needle]"), "{s}");
        assert_eq!(s.chars().count(), 32 + 8 + 32 + 2);
    }

    /// `cargo test --release -- --ignored --nocapture apply_rate`
    #[test]
    #[ignore]
    fn apply_rate() {
        let (_d, mut idx) = open_tmp();
        let words = ["alpha", "build", "cargo", "deploy", "error", "fix", "gateway", "hermes", "index", "journal"];
        let text = |n: usize, seed: usize| {
            let mut s = String::with_capacity(n + 16);
            let mut i = seed;
            while s.len() < n {
                s.push_str(words[i % words.len()]);
                s.push_str(if i.is_multiple_of(7) { "\n" } else { " " });
                i = i.wrapping_mul(31).wrapping_add(17) % 10007;
            }
            s
        };
        let batches = 20usize;
        let mut bytes = 0usize;
        let mut all = Vec::with_capacity(batches);
        for b in 0..batches {
            let mut entries = Vec::with_capacity(1000);
            for i in 0..1000 {
                let n = b * 1000 + i;
                let mut m = msg(&format!("msg-{n:08}"), &format!("s{}", n / 50), "user", "", n as f64);
                match n % 10 {
                    0..=5 => m.content = Some(text(200, n)),
                    6..=8 => {
                        m.role = "tool".into();
                        m.tool_name = Some("shell".into());
                        m.content = Some(text(2048 + (n * 7919) % (58 * 1024), n));
                    }
                    _ => {
                        m.role = "assistant".into();
                        m.content = None;
                        m.tool_calls = Some(r#"[{"id":"c1","function":{"name":"shell","arguments":"{}"}}]"#.into());
                    }
                }
                bytes += m.content.as_ref().map_or(0, String::len);
                entries.push(("lane".to_string(), n as u64 + 1, Entry::Message(m)));
            }
            all.push(entries);
        }
        if let Some(cfg) = std::env::var("FTS_CFG").ok().filter(|c| !c.is_empty()) {
            for kv in cfg.split(',') {
                let (k, v) = kv.split_once('=').unwrap();
                idx.conn
                    .execute(
                        "INSERT INTO messages_fts (messages_fts, rank) VALUES (?1, ?2)",
                        (k, v.parse::<i64>().unwrap()),
                    )
                    .unwrap();
            }
        }
        let start = std::time::Instant::now();
        for entries in &all {
            idx.apply_batch(entries).unwrap();
        }
        let secs = start.elapsed().as_secs_f64();
        let n = batches * 1000;
        let (db, wal) = idx.file_sizes();
        println!(
            "apply_batch: {n} messages ({} MB) in {secs:.2}s = {:.0} msg/s, {:.1} MB/s; db {} MB wal {} MB",
            bytes / 1_000_000,
            n as f64 / secs,
            bytes as f64 / 1e6 / secs,
            db / 1_000_000,
            wal / 1_000_000
        );
        assert!(idx.check().unwrap().is_empty());
    }
}
