//! The SQLite baselines: Hermes' schema v11 (the layout live when the corruption reports came
//! in), copied verbatim from `shared/fixtures/hermes/state-v11.db` (`SELECT sql FROM
//! sqlite_master`), written the way Hermes writes: one connection per writer, `BEGIN
//! IMMEDIATE`, insert the row, bump the session's counter, `COMMIT`; a passive checkpoint every
//! 50 writes.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rusqlite::{Connection, TransactionBehavior};
use tidelog::Message;

/// Tables and indexes of `state-v11.db`, verbatim.
const V11_TABLES: &str = "
CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sessions(id TEXT PRIMARY KEY, source TEXT NOT NULL, user_id TEXT, model TEXT, model_config TEXT,
  system_prompt TEXT, parent_session_id TEXT REFERENCES sessions(id), started_at REAL NOT NULL, ended_at REAL,
  end_reason TEXT, message_count INTEGER DEFAULT 0, tool_call_count INTEGER DEFAULT 0, input_tokens INTEGER DEFAULT 0,
  output_tokens INTEGER DEFAULT 0, title TEXT, api_call_count INTEGER DEFAULT 0);
CREATE TABLE IF NOT EXISTS messages(id INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL REFERENCES sessions(id),
  role TEXT NOT NULL, content TEXT, tool_call_id TEXT, tool_calls TEXT, tool_name TEXT, timestamp REAL NOT NULL,
  token_count INTEGER, finish_reason TEXT, reasoning TEXT, reasoning_details TEXT, codex_message_items TEXT);
CREATE INDEX IF NOT EXISTS idx_messages_session ON messages(session_id, timestamp);
";

/// The two inline FTS5 tables of v11 (unicode61 and trigram) and the insert trigger that feeds
/// both, verbatim.
const V11_FTS: &str = "
CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5(content);
CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts_trigram USING fts5(content, tokenize='trigram');
CREATE TRIGGER IF NOT EXISTS messages_fts_insert AFTER INSERT ON messages BEGIN
  INSERT INTO messages_fts(rowid, content) VALUES (new.id, coalesce(new.content,'') || ' ' || coalesce(new.tool_name,'') || ' ' || coalesce(new.tool_calls,''));
  INSERT INTO messages_fts_trigram(rowid, content) VALUES (new.id, coalesce(new.content,'') || ' ' || coalesce(new.tool_name,'') || ' ' || coalesce(new.tool_calls,''));
END;
";

/// Which baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// WAL, `synchronous=FULL`, FTS triggers.
    Full,
    /// WAL, `synchronous=NORMAL`, FTS triggers (not durable on power cut).
    Normal,
    /// WAL, `synchronous=FULL`, no FTS.
    FullWithoutFts,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Full => "sqlite FULL+FTS",
            Mode::Normal => "sqlite NORMAL+FTS",
            Mode::FullWithoutFts => "sqlite FULL no FTS",
        }
    }

    fn fts(self) -> bool {
        self != Mode::FullWithoutFts
    }

    fn synchronous(self) -> &'static str {
        match self {
            Mode::Normal => "NORMAL",
            _ => "FULL",
        }
    }
}

/// Opens one connection as a Hermes writer process would.
pub fn connect(path: &Path, mode: Mode) -> Result<Connection> {
    let conn = Connection::open(path).with_context(|| format!("open {}", path.display()))?;
    conn.busy_timeout(Duration::from_secs(120))?;
    let jm: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    anyhow::ensure!(jm.eq_ignore_ascii_case("wal"), "{}: journal_mode is {jm}, not wal", path.display());
    conn.pragma_update(None, "synchronous", mode.synchronous())?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

/// Creates the v11 schema (with or without FTS) and `sessions` rows for `sessions`.
pub fn create(path: &Path, mode: Mode, sessions: &[String]) -> Result<()> {
    let conn = connect(path, mode)?;
    conn.execute_batch(V11_TABLES)?;
    if mode.fts() {
        conn.execute_batch(V11_FTS)?;
    }
    let mut st = conn.prepare("INSERT OR IGNORE INTO sessions (id, source, started_at) VALUES (?1, 'telegram', ?2)")?;
    for s in sessions {
        st.execute((s, 1_780_000_000.0))?;
    }
    Ok(())
}

/// A Hermes-style `append_message` on its own connection.
#[derive(Debug)]
pub struct Writer {
    conn: Connection,
    writes: u64,
}

impl Writer {
    pub fn new(path: &Path, mode: Mode) -> Result<Writer> {
        Ok(Writer { conn: connect(path, mode)?, writes: 0 })
    }

    /// One message, one `BEGIN IMMEDIATE` transaction.
    pub fn append(&mut self, m: &Message) -> Result<()> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        insert(&tx, m)?;
        tx.commit()?;
        self.writes += 1;
        if self.writes.is_multiple_of(50) {
            // Hermes: PRAGMA wal_checkpoint(PASSIVE) every 50 successful writes.
            self.conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        }
        Ok(())
    }
}

fn insert(conn: &Connection, m: &Message) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO messages (session_id, role, content, tool_call_id, tool_calls, tool_name, timestamp, \
         token_count, finish_reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(rusqlite::params![
        m.session_id,
        m.role,
        m.content,
        m.tool_call_id,
        m.tool_calls,
        m.tool_name,
        m.timestamp,
        m.token_count,
        m.finish_reason
    ])?;
    conn.prepare_cached(
        "UPDATE sessions SET message_count = message_count + 1, \
         tool_call_count = tool_call_count + (?2 IS NOT NULL) WHERE id = ?1",
    )?
    .execute((&m.session_id, &m.tool_calls))?;
    Ok(())
}

/// Inserts `msgs` through the v11 triggers (`synchronous=FULL`) in one transaction; returns the
/// time taken.
pub fn insert_one_transaction(path: &Path, msgs: &[Message]) -> Result<Duration> {
    let mut conn = connect(path, Mode::Full)?;
    let t0 = Instant::now();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for m in msgs {
        insert(&tx, m)?;
    }
    tx.commit()?;
    Ok(t0.elapsed())
}

/// Inserts messages of `msgs` through the v11 triggers one transaction each, until all are in
/// or `budget` has passed; returns how many and the time taken.
pub fn insert_per_transaction(path: &Path, msgs: &[Message], budget: Duration) -> Result<(usize, Duration)> {
    let mut w = Writer::new(path, Mode::Full)?;
    let t0 = Instant::now();
    let mut n = 0;
    for m in msgs {
        w.append(m)?;
        n += 1;
        if t0.elapsed() >= budget {
            break;
        }
    }
    Ok((n, t0.elapsed()))
}
