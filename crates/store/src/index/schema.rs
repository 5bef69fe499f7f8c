//! The SQL schema of the index and the column lists the queries share.

/// A message's text (schema 5): the `content` column of a `messages` row named by the prefix
/// (`""`, `"m."`, `"new."`, `"old."`), or, when the text is kept only in the journal, the
/// journal's copy through the SQL function `tidelog_body` (`body.rs`), registered on every
/// connection the index opens.
macro_rules! text_of {
    ($p:literal) => {
        concat!(
            "CASE WHEN ",
            $p,
            "body_lsn IS NULL THEN ",
            $p,
            "content ELSE tidelog_body(",
            $p,
            "body_lane, ",
            $p,
            "body_seg, ",
            $p,
            "body_off, ",
            $p,
            "body_lsn, ",
            $p,
            "rid) END"
        )
    };
}

/// What the word index holds of a row: its text, tool name and tool calls, as Hermes indexes.
macro_rules! words_of {
    ($p:literal) => {
        concat!(
            "COALESCE(",
            text_of!($p),
            ", '') || ' ' || COALESCE(",
            $p,
            "tool_name, '') || ' ' || COALESCE(",
            $p,
            "tool_calls, '')"
        )
    };
}

pub(super) const SCHEMA: &str = r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value ANY) WITHOUT ROWID;
CREATE TABLE messages (
    rid INTEGER PRIMARY KEY, -- the message's integer id (Message::num)
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
    platform_message_id TEXT,
    api_content TEXT,
    active INTEGER NOT NULL DEFAULT 1,
    compacted INTEGER NOT NULL DEFAULT 0,
    lane TEXT NOT NULL,
    lsn INTEGER NOT NULL,
    fts_len INTEGER,
    fts_text TEXT,
    -- Schema 5: where `content` is when it is kept only in the journal (then `content` is NULL):
    -- lane number, segment, offset and LSN of the record that holds it. See TEXT below.
    body_lane INTEGER,
    body_seg INTEGER,
    body_off INTEGER,
    body_lsn INTEGER
);
CREATE INDEX messages_session ON messages (session_id, timestamp, rid);
CREATE INDEX messages_session_rid ON messages (session_id, rid);
CREATE INDEX messages_platform ON messages (session_id, platform_message_id)
    WHERE platform_message_id IS NOT NULL;
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
    extra TEXT,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens INTEGER NOT NULL DEFAULT 0,
    api_call_count INTEGER NOT NULL DEFAULT 0,
    estimated_cost_usd REAL NOT NULL DEFAULT 0,
    actual_cost_usd REAL NOT NULL DEFAULT 0
);
CREATE INDEX sessions_started ON sessions (started_at);
CREATE INDEX sessions_parent ON sessions (parent_session_id);
CREATE INDEX sessions_title ON sessions (title) WHERE title IS NOT NULL;
-- History rewrites per session, for messages that reach the index after the rewrite did.
CREATE TABLE session_ops (
    session_id TEXT NOT NULL,
    op INTEGER NOT NULL,
    mode INTEGER NOT NULL,
    active_only INTEGER NOT NULL,
    PRIMARY KEY (session_id, op)
) WITHOUT ROWID;
-- Deleted sessions: messages with a smaller id that reach the index later are not indexed.
CREATE TABLE deleted_sessions (id TEXT PRIMARY KEY, op INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE user_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE applied (lane TEXT PRIMARY KEY, lsn INTEGER NOT NULL);
CREATE VIRTUAL TABLE messages_fts USING fts5 (
    body, tool_name,
    content = 'fts_source', content_rowid = 'rid',
    tokenize = 'trigram', detail = full
);
"#;

/// The view the trigram index reads its rows from (its external content): created with the
/// schema, and made again by the upgrade to version 5 (the text may be in the journal).
pub(super) const FTS_SOURCE_VIEW: &str = concat!(
    "CREATE VIEW fts_source (rid, body, tool_name) AS SELECT rid, \
     CASE WHEN fts_text IS NOT NULL THEN fts_text \
     WHEN fts_len IS NOT NULL THEN CAST(substr(CAST(",
    text_of!(""),
    " AS BLOB), 1, fts_len) AS TEXT) ELSE ",
    text_of!(""),
    " END, tool_name FROM messages;"
);

/// A message's text in a query over `messages m`: the `content` column, or (schema 5) the
/// journal's copy through the SQL function `tidelog_body` (registered on every connection the
/// index opens; see `body.rs`).
pub(super) const TEXT: &str = text_of!("m.");

/// Added by schema version 3 (created in place in a version 2 file by its first writable open):
/// journal records left out of the index because they do not decode (written by a newer version,
/// or damaged), so that every later open still reports them. See `undecodable.rs`.
/// The fold of session writes in the store's order (schema 3; docs/design.md "One order").
pub(super) const SESSION_FOLD_TABLES: &str = "
-- Session patches and counters written with a position, as encoded entries: when a deletion
-- reaches the index after writes made after it (from another lane), the session row is rebuilt
-- from the ones after the deletion. Those before a deletion are removed with it.
CREATE TABLE session_entries (
    session_id TEXT NOT NULL,
    op INTEGER NOT NULL,
    entry BLOB NOT NULL,
    PRIMARY KEY (session_id, op)
) WITHOUT ROWID;
";

/// Added by schema version 4: the messages a rewrite does not cover although their ids are
/// below its op (it skipped them as duplicates: `Rewrite::kept`), for the one fold rule
/// (`model::SessionHistory`) of messages that reach the index after the rewrite.
pub(super) const REWRITE_KEPT_TABLE: &str = "
CREATE TABLE IF NOT EXISTS rewrite_kept (
    session_id TEXT NOT NULL,
    op INTEGER NOT NULL,
    num INTEGER NOT NULL,
    PRIMARY KEY (session_id, op, num)
) WITHOUT ROWID;
";

pub(super) const UNDECODABLE_TABLE: &str = "
CREATE TABLE undecodable (
    lane TEXT NOT NULL,
    lsn INTEGER NOT NULL,
    why TEXT NOT NULL,
    PRIMARY KEY (lane, lsn)
) WITHOUT ROWID;
";

/// Added by schema version 4 (created and filled in place in an older file): a word index as
/// Hermes Agent keeps one (`messages_fts`, tokenizer `unicode61`), over the same text Hermes
/// indexes, each message whole: content, tool name and tool calls joined by spaces. Kept by
/// triggers on `messages`, so every path that inserts, changes or deletes a row (apply, erase,
/// rebuild) keeps it exact; `secure-delete` as for the trigram index. Used by
/// [`Index::search_hermes`](super::Index::search_hermes).
pub(super) const WORDS_TABLE: &str = "
CREATE VIRTUAL TABLE messages_words USING fts5 (
    body, content = 'words_source', content_rowid = 'rid', tokenize = 'unicode61', detail = full
);
";

/// The word index's view and triggers (schema 4; made again by the upgrade to version 5, which
/// reads text kept only in the journal through `tidelog_body`).
pub(super) const WORDS_VIEW_AND_TRIGGERS: &str = concat!(
    "CREATE VIEW words_source (rid, body) AS SELECT rid, ",
    words_of!(""),
    " FROM messages;\n",
    "CREATE TRIGGER messages_words_insert AFTER INSERT ON messages BEGIN \
     INSERT INTO messages_words (rowid, body) VALUES (new.rid, ",
    words_of!("new."),
    "); END;\n",
    "CREATE TRIGGER messages_words_delete AFTER DELETE ON messages BEGIN \
     INSERT INTO messages_words (messages_words, rowid, body) VALUES ('delete', old.rid, ",
    words_of!("old."),
    "); END;\n",
    "CREATE TRIGGER messages_words_update AFTER UPDATE OF content, tool_name, tool_calls, body_lsn ON messages BEGIN \
     INSERT INTO messages_words (messages_words, rowid, body) VALUES ('delete', old.rid, ",
    words_of!("old."),
    "); INSERT INTO messages_words (rowid, body) VALUES (new.rid, ",
    words_of!("new."),
    "); END;\n",
);

/// The columns schema 5 adds to `messages` (see [`SCHEMA`]).
pub(super) const BODY_COLUMNS: &str = "
ALTER TABLE messages ADD COLUMN body_lane INTEGER;
ALTER TABLE messages ADD COLUMN body_seg INTEGER;
ALTER TABLE messages ADD COLUMN body_off INTEGER;
ALTER TABLE messages ADD COLUMN body_lsn INTEGER;
";

/// What reads text in the schema before version 5, dropped by the upgrade and made again.
pub(super) const DROP_TEXT_READERS: &str = "
DROP VIEW IF EXISTS fts_source;
DROP VIEW IF EXISTS words_source;
DROP TRIGGER IF EXISTS messages_words_insert;
DROP TRIGGER IF EXISTS messages_words_delete;
DROP TRIGGER IF EXISTS messages_words_update;
";

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
///
/// `secure-delete` (SQLite 3.44): a deleted row's terms are removed from the index at once
/// instead of being shadowed by delete markers until a merge, so erased text leaves the file.
pub(super) const FTS_CONFIG: &[(&str, i64)] =
    &[("automerge", 8), ("crisismerge", 32), ("hashsize", 8 * 1024 * 1024), ("secure-delete", 1)];

pub(super) const MESSAGE_COLS: &str = concat!(
    "m.id, m.session_id, m.role, ",
    text_of!("m."),
    ", m.tool_call_id, m.tool_name, \
     m.tool_calls, m.reasoning, m.timestamp, m.token_count, m.finish_reason, m.source, m.extra, \
     m.rid, m.platform_message_id, m.api_content, m.active, m.compacted"
);

/// [`MESSAGE_COLS`] with the `content` column as it is (NULL for a text kept in the journal):
/// for readers that read such texts themselves and go on when one cannot be read.
pub(super) const MESSAGE_COLS_INLINE: &str = "m.id, m.session_id, m.role, m.content, m.tool_call_id, m.tool_name, \
     m.tool_calls, m.reasoning, m.timestamp, m.token_count, m.finish_reason, m.source, m.extra, \
     m.rid, m.platform_message_id, m.api_content, m.active, m.compacted";

/// How many columns [`MESSAGE_COLS`] selects (queries read their own columns after these).
pub(super) const MESSAGE_COL_COUNT: usize = 18;

pub(super) const SESSION_COLS: &str = "id, source, model, title, user_id, chat_id, parent_session_id, \
     started_at, ended_at, end_reason, extra, input_tokens, output_tokens, cache_read_tokens, \
     cache_write_tokens, reasoning_tokens, api_call_count, estimated_cost_usd, actual_cost_usd";

/// The session columns a patch writes (the first 11 of [`SESSION_COLS`]).
pub(super) const PATCH_COLS: &str = "id, source, model, title, user_id, chat_id, parent_session_id, \
     started_at, ended_at, end_reason, extra";
