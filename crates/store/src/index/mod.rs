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
//! `snippet()` works, `'rebuild'` can regenerate the index from `messages` (and, since schema 5,
//! the journal records holding the long texts: `body.rs`) alone, and the FTS5 `integrity-check`
//! with rank 1 ([`Index::check_content`]) compares index and content. Rows are put in the index from the
//! same view (`INSERT … SELECT … FROM fts_source`), so the indexed values are by construction
//! the ones FTS5 reads back. Because the prefix length is stored per row, changing
//! [`IndexOptions::tool_output_index_bytes`] later never desynchronizes old rows. A contentless
//! table was rejected because it has no `snippet()` and no `'rebuild'`; a separate content table
//! because it would duplicate up to 8 KiB of every tool output. There are no triggers.

mod apply;
mod body;
mod hermes;
mod maintenance;
mod query;
mod restore;
mod schema;
#[cfg(test)]
mod tests;
mod text;
mod undecodable;

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags, Row, TransactionBehavior};

pub use crate::error::IndexError;
pub(crate) use crate::error::index::Ctx;
pub use apply::ApplyStats;
pub use apply::legacy_key;
pub(crate) use body::{BodyAt, read_text};
pub use hermes::{HermesHit, HermesSearch};
pub(crate) use hermes::{search as hermes_search_on, tail_index as hermes_tail_index};
pub use maintenance::{CheckpointStats, FullMerge};
pub(crate) use query::UnreadHistory;
pub use query::{SearchHit, SearchOrder, SearchQuery, SessionFilter};
use schema::{
    BODY_COLUMNS, DROP_TEXT_READERS, FTS_CONFIG, FTS_SOURCE_VIEW, REWRITE_KEPT_TABLE, SCHEMA, SESSION_FOLD_TABLES,
    UNDECODABLE_TABLE, WORDS_TABLE, WORDS_VIEW_AND_TRIGGERS,
};
pub(crate) use text::{
    SNIPPET_CONTEXT, head, mark_snippet, past_prefix_snippet, past_prefix_words, trigram_cut, word_index_matches,
};
pub use text::{indexed_text, match_snippet};
pub(crate) use undecodable::Undecodable;

/// The schema version this code writes and reads. Version 2 added integer ids, history state,
/// counters and history operations; version 3 the table of undecodable journal records and the
/// store-order fold of session writes (`session_entries`). The
/// index is derived, so there are no migrations of rows: a file older than version 2 is rebuilt
/// from the journal ([`IndexError::OlderSchema`]), one with a newer version is refused
/// ([`IndexError::NewerSchema`]). A version 2 file is read as it is and upgraded in place by its
/// first writable open (version 3 adds tables, seeded from the rows a version 2 index holds:
/// rebuilding a whole index for it would cost hours on a large store, and, with retention, the
/// messages only the index holds). Version 4 added Hermes' word index and what rewrites kept;
/// version 5 keeps long message text only in the journal (`body.rs`).
pub const SCHEMA_VERSION: i64 = 5;

/// The oldest schema version read as it is (and upgraded in place by a writable open).
const OLDEST_READABLE: i64 = 2;

/// Result alias for this module.
pub type Result<T, E = IndexError> = std::result::Result<T, E>;

/// How the index is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexOptions {
    /// How many bytes of a `tool` message are made searchable (cut back to a character
    /// boundary) by the trigram index, which finds substrings in any script; every whole word
    /// of the output is found through the word index anyway. The full output is still stored
    /// and returned. Default: 1 KiB (8 KiB before index schema 5: the trigram index was most
    /// of a store's bytes). Each row keeps the length it was indexed with, so changing this
    /// never desynchronizes old rows.
    pub tool_output_index_bytes: usize,
    /// How long to wait for a lock held by another connection before failing with
    /// `SQLITE_BUSY`. Default: 5 s.
    pub busy_timeout: Duration,
    /// The store folder whose lanes hold the journal records applied to this index: a message
    /// text longer than `inline_text_bytes` is then kept only there, and read back through its
    /// place (`body.rs`). `None` (the default for an index used alone, and for a store with
    /// retention, which removes segments): every text is kept in the index.
    pub journal_text: Option<PathBuf>,
    /// Texts up to this many bytes stay in the index even with `journal_text` (reading a short
    /// text from the journal costs more than the bytes it saves). Default: 256.
    pub inline_text_bytes: usize,
    /// A relevance search for one phrase ranks the newest matches without FTS5's `bm25()`
    /// (whose pass over every match is the cost of a common word) when the phrase has an
    /// estimated this many matches or more; below, `bm25()` is the faster (docs/design.md
    /// "Reads at scale"). The order is the same either way. A search of several phrases side
    /// by side does the same when one of them has that many: each phrase's rows are then
    /// counted up to 10,000 for its inverse document frequency, and estimated beyond (the one
    /// input `bm25()` would compute exactly). Default: 50,000.
    pub one_phrase_min_matches: usize,
}

impl Default for IndexOptions {
    fn default() -> Self {
        IndexOptions {
            tool_output_index_bytes: 1024,
            busy_timeout: Duration::from_secs(5),
            journal_text: None,
            inline_text_bytes: 256,
            one_phrase_min_matches: 50_000,
        }
    }
}

/// The SQLite index. One writer at a time; readers may use [`Index::open_read_only`].
#[derive(Debug)]
pub struct Index {
    pub(super) conn: Connection,
    pub(super) path: PathBuf,
    pub(super) opts: IndexOptions,
    /// A read-only connection to an index older than version 5, read through a `temp` view of
    /// `messages` (which takes no `INDEXED BY`).
    pub(super) old_view: bool,
    /// The store whose journal holds the texts this index does not (see `text_store`).
    pub(super) text_store: Option<PathBuf>,
}

impl Index {
    /// Hermes Agent's `search_messages` on the index (see [`HermesSearch`]).
    pub fn search_hermes(&self, s: &HermesSearch) -> Result<Vec<HermesHit>> {
        hermes::search(&self.conn, s)
    }

    /// Opens the index at `path` for reading and writing, creating the file (mode 0600) and the
    /// schema if missing. Sets WAL mode, `synchronous=FULL` and (on Apple) `fullfsync`.
    pub fn open(path: &Path, opts: &IndexOptions) -> Result<Index> {
        create_private_file(path, false)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).ctx("open the index")?;
        conn.busy_timeout(opts.busy_timeout).ctx("set the busy timeout")?;
        body::register(&conn, text_store(path, opts)).ctx("register tidelog_body")?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0)).ctx("set journal_mode=WAL")?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(IndexError::NotWal { path: path.to_owned(), mode });
        }
        conn.pragma_update(None, "synchronous", "FULL").ctx("set synchronous=FULL")?;
        conn.pragma_update(None, "foreign_keys", "OFF").ctx("set foreign_keys=OFF")?;
        // Freed pages (deleted messages) are overwritten with zeros: erased means erased.
        conn.pragma_update(None, "secure_delete", "ON").ctx("set secure_delete=ON")?;
        #[cfg(target_vendor = "apple")]
        {
            conn.pragma_update(None, "fullfsync", "ON").ctx("set fullfsync=ON")?;
            conn.pragma_update(None, "checkpoint_fullfsync", "ON").ctx("set checkpoint_fullfsync=ON")?;
        }
        let text_store = text_store(path, opts);
        let mut index = Index { conn, path: path.to_owned(), opts: opts.clone(), old_view: false, text_store };
        index.init_schema()?;
        Ok(index)
    }

    /// Runs `f` in one read transaction: every query it makes sees the same snapshot, so a
    /// compactor committing a batch meanwhile cannot make positions and rows disagree (counted
    /// twice, or not at all).
    pub(crate) fn snapshot<T>(&self, f: impl FnOnce(&Index) -> Result<T>) -> Result<T> {
        self.conn.execute_batch("BEGIN DEFERRED").ctx("begin a read transaction")?;
        let out = f(self);
        // A read transaction has nothing to keep: ending it cannot lose anything.
        let _ = self.conn.execute_batch("COMMIT");
        out
    }

    /// Whether this read-only connection reads an index older than version 5 through a view
    /// that a writer has since upgraded in place (its rows may now keep texts in the journal,
    /// which the view does not see): the caller opens the index again.
    pub(crate) fn stale_view(&self) -> bool {
        self.old_view && has_body_columns(&self.conn).unwrap_or(true)
    }

    /// Opens an existing index read-only (for readers beside the writer). Fails if the file
    /// has no index schema or a newer one.
    pub fn open_read_only(path: &Path, opts: &IndexOptions) -> Result<Index> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).ctx("open the index read-only")?;
        conn.busy_timeout(opts.busy_timeout).ctx("set the busy timeout")?;
        body::register(&conn, text_store(path, opts)).ctx("register tidelog_body")?;
        match schema_version(&conn)? {
            Some(v) => check_version(path, v)?,
            None => return Err(IndexError::NotInitialized { path: path.to_owned() }),
        }
        let old_view = !has_body_columns(&conn)?;
        if old_view {
            // An index older than version 5 that no writer upgraded yet: every text is in it.
            // A view in `temp` (searched before `main`) gives the queries the columns they name.
            conn.execute_batch(
                "CREATE TEMP VIEW messages AS SELECT *, NULL AS body_lane, NULL AS body_seg, NULL AS body_off, \
                 NULL AS body_lsn FROM main.messages",
            )
            .ctx("read an index older than version 5")?;
        }
        let text_store = text_store(path, opts);
        let opts = opts.clone();
        Ok(Index { conn, path: path.to_owned(), opts, old_view, text_store })
    }

    fn init_schema(&mut self) -> Result<()> {
        let tx =
            self.conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx("begin the schema transaction")?;
        if let Some(found) = schema_version(&tx)? {
            check_version(&self.path, found)?;
            if found < SCHEMA_VERSION {
                if found < 3 {
                    // 2 -> 3: the table of undecodable records, empty; the session fold, seeded.
                    tx.execute_batch(UNDECODABLE_TABLE).ctx("add the table of undecodable records")?;
                    tx.execute_batch(SESSION_FOLD_TABLES).ctx("add the session fold tables")?;
                    seed_session_fold(&tx)?;
                }
                // 4 -> 5: the place of text kept in the journal (none yet: every text of the
                // rows already here stays in the index); the views and triggers that read it.
                if !has_body_columns(&tx)? {
                    tx.execute_batch(BODY_COLUMNS).ctx("add the columns of text kept in the journal")?;
                }
                tx.execute_batch(DROP_TEXT_READERS).ctx("drop the views that read text")?;
                tx.execute_batch(FTS_SOURCE_VIEW).ctx("make the trigram index's view again")?;
                if found < 4 {
                    // 3 -> 4: what rewrites kept, empty (no earlier rewrite kept anything); the
                    // word index, filled from the rows.
                    tx.execute_batch(REWRITE_KEPT_TABLE).ctx("add the table of kept messages")?;
                    create_words_index(&tx)?;
                    tx.execute("INSERT INTO messages_words (messages_words) VALUES ('rebuild')", [])
                        .ctx("fill the word index")?;
                } else {
                    tx.execute_batch(WORDS_VIEW_AND_TRIGGERS).ctx("make the word index's view and triggers again")?;
                }
                tx.execute("UPDATE meta SET value = ?1 WHERE key = 'schema_version'", [SCHEMA_VERSION])
                    .ctx("write the schema version")?;
                tx.commit().ctx("commit the schema upgrade")?;
                tracing::info!(path = %self.path.display(), from = found, to = SCHEMA_VERSION, "upgraded the index schema in place");
            }
            return Ok(());
        }
        tx.execute_batch(SCHEMA).ctx("create the schema")?;
        tx.execute_batch(FTS_SOURCE_VIEW).ctx("create the schema")?;
        tx.execute_batch(UNDECODABLE_TABLE).ctx("create the schema")?;
        tx.execute_batch(SESSION_FOLD_TABLES).ctx("create the schema")?;
        create_words_index(&tx)?;
        tx.execute_batch(REWRITE_KEPT_TABLE).ctx("create the schema")?;
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
}

/// The word index (schema 4) with its FTS5 settings.
fn create_words_index(tx: &rusqlite::Transaction<'_>) -> Result<()> {
    tx.execute_batch(WORDS_TABLE).ctx("create the word index")?;
    tx.execute_batch(WORDS_VIEW_AND_TRIGGERS).ctx("create the word index")?;
    for (name, value) in FTS_CONFIG {
        tx.execute("INSERT INTO messages_words (messages_words, rank) VALUES (?1, ?2)", (name, value))
            .ctx("configure the word index")?;
    }
    Ok(())
}

/// A version 2 index folded session writes as they came and kept none of them: its rows stand
/// for everything written so far, as one snapshot patch and one counter delta per session under
/// the lowest keys (below every position and every legacy key). A later refold starts from
/// the first message and them.
fn seed_session_fold(tx: &Connection) -> Result<()> {
    let rows = collect(tx, &format!("SELECT {} FROM sessions", schema::SESSION_COLS), [], query::session_from_row)
        .ctx("read sessions to seed their fold")?;
    let mut put = tx
        .prepare("INSERT OR REPLACE INTO session_entries (session_id, op, entry) VALUES (?1, ?2, ?3)")
        .ctx("prepare the session fold seed")?;
    for s in rows {
        let patch = crate::model::SessionPatch {
            id: s.id.clone(),
            source: s.source,
            model: s.model,
            title: s.title,
            user_id: s.user_id,
            chat_id: s.chat_id,
            parent_session_id: s.parent_session_id,
            started_at: s.started_at,
            ended_at: s.ended_at,
            end_reason: s.end_reason,
            extra: s.extra,
            ..crate::model::SessionPatch::default()
        };
        let c = s.counters;
        let counters = crate::model::CounterDelta {
            session_id: s.id.clone(),
            input_tokens: c.input_tokens,
            output_tokens: c.output_tokens,
            cache_read_tokens: c.cache_read_tokens,
            cache_write_tokens: c.cache_write_tokens,
            reasoning_tokens: c.reasoning_tokens,
            api_call_count: c.api_call_count,
            estimated_cost_usd: c.estimated_cost_usd,
            actual_cost_usd: c.actual_cost_usd,
            op: None,
        };
        put.execute(rusqlite::params![s.id, i64::MIN, crate::entry::encode(&crate::entry::Entry::Session(patch))])
            .ctx("seed a session's fold")?;
        put.execute(rusqlite::params![
            s.id,
            i64::MIN + 1,
            crate::entry::encode(&crate::entry::Entry::Counters(counters))
        ])
        .ctx("seed a session's fold")?;
    }
    Ok(())
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
    if (1..OLDEST_READABLE).contains(&found) {
        return Err(IndexError::OlderSchema { path: path.to_owned(), found, supported: SCHEMA_VERSION });
    }
    if found < 1 {
        return Err(IndexError::Corrupt { path: path.to_owned(), detail: format!("invalid schema version {found}") });
    }
    Ok(())
}

/// The store whose journal holds the texts the index at `path` does not: the one named in the
/// options, or else the folder of the index file when it holds lanes (a store's own index).
fn text_store(path: &Path, opts: &IndexOptions) -> Option<PathBuf> {
    opts.journal_text.clone().or_else(|| {
        let dir = path.parent()?;
        dir.join(crate::layout::LANES_DIR).is_dir().then(|| dir.to_owned())
    })
}

/// Whether `messages` has the columns of schema 5 (the place of text kept in the journal).
fn has_body_columns(conn: &Connection) -> Result<bool> {
    let n: i64 = conn
        .query_row("SELECT count(*) FROM pragma_table_info('messages', 'main') WHERE name = 'body_lsn'", [], |r| {
            r.get(0)
        })
        .ctx("read the columns of messages")?;
    Ok(n > 0)
}

/// Runs a query and collects its rows.
pub(crate) fn collect<T, P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    f: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    conn.prepare_cached(sql)?.query_map(params, f)?.collect()
}

/// Creates `path` empty with mode 0600 if missing (or fails if `must_be_new` and it exists).
pub(crate) fn create_private_file(path: &Path, must_be_new: bool) -> Result<()> {
    let mut o = OpenOptions::new();
    o.write(true).mode(0o600);
    if must_be_new {
        o.create_new(true);
    } else {
        o.create(true);
    }
    o.open(path).map(drop).map_err(|source| IndexError::Io { context: "create", path: path.to_owned(), source })
}

pub(crate) fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}
