//! Index maintenance: checks, FTS5 merging and rebuild, WAL checkpoints, online backup, sizes.

use std::fs::File;
use std::path::Path;
use std::time::Duration;

use rusqlite::TransactionBehavior;
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::{Ctx, Index, IndexError, Result, collect, create_private_file};
use crate::error::index::is_corrupt_sqlite;

/// Pages merged by one [`Index::optimize_step`].
const MERGE_STEP_PAGES: i64 = 500;

/// The growth, in rows, below which the full-text indexes are not merged fully again
/// (see [`Index::full_merge_due`]).
const FULL_MERGE_MIN_GROWTH: i64 = 1_000;

/// The parts of the index [`Index::bytes_by_part`] tells apart.
pub(crate) const INDEX_PARTS: [&str; 7] =
    ["trigram index", "word index", "messages", "message indexes", "sessions", "history operations", "other"];

/// Which of [`INDEX_PARTS`] a table or index of the schema belongs to.
fn index_part(name: &str) -> &'static str {
    match name {
        n if n.starts_with("messages_fts") => "trigram index",
        n if n.starts_with("messages_words") => "word index",
        "messages" => "messages",
        n if n.starts_with("messages_") || n.starts_with("sqlite_autoindex_messages") => "message indexes",
        n if n == "sessions" || n.starts_with("sessions_") || n.starts_with("sqlite_autoindex_sessions") => "sessions",
        "session_entries" | "session_ops" | "deleted_sessions" | "rewrite_kept" => "history operations",
        _ => "other",
    }
}

/// The full-text tables a full merge merges, in order.
const FULL_MERGE_TABLES: [&str; 2] = ["messages_fts", "messages_words"];

/// A full merge of the full-text indexes in progress ([`Index::full_merge_due`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FullMerge {
    /// Which of the tables is being merged.
    table: usize,
    /// Whether its first step ran.
    started: bool,
    /// The trigram index's rows when the merge was found due: recorded when it ends.
    at: i64,
}

/// A message row with its text: integer id, session, id, content.
pub(crate) type RowText = (i64, String, String, Option<String>);

/// A message row as an erase pass reads it.
#[derive(Debug, Clone)]
pub(crate) struct IndexRow {
    /// Integer id.
    pub rid: i64,
    /// Session.
    pub session_id: String,
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

impl Index {
    /// Checks the database: `PRAGMA quick_check` and the FTS5 `integrity-check` of both
    /// full-text indexes' structures (rank 0: not against their content, which for long texts is
    /// in the journal; skipped on a read-only index, where it cannot run). Returns the problems
    /// found, empty when healthy. A corruption error raised while checking is reported as a
    /// problem, not as `Err`. [`Index::check_content`] also compares them with the texts.
    pub fn check(&self) -> Result<Vec<String>> {
        self.check_with(0)
    }

    /// [`Index::check`], and the full-text indexes compared with every text they index (rank 1:
    /// reads every text kept in the journal). A text that cannot be read is a problem named.
    pub fn check_content(&self) -> Result<Vec<String>> {
        self.check_with(1)
    }

    fn check_with(&self, rank: i64) -> Result<Vec<String>> {
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
            false => self
                .conn
                .execute("INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', ?1)", [rank])
                .and_then(|_| {
                    self.conn.execute(
                        "INSERT INTO messages_words (messages_words, rank) VALUES ('integrity-check', ?1)",
                        [rank],
                    )
                }),
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

    /// Does a bounded amount of FTS5 merging (`'merge'` of about 500 pages), for idle time.
    /// Returns true if it did work, so a caller may repeat it while it returns true.
    pub fn optimize_step(&self) -> Result<bool> {
        let mut worked = false;
        for table in FULL_MERGE_TABLES {
            let before = self.conn.total_changes();
            self.conn
                .execute(&format!("INSERT INTO {table} ({table}, rank) VALUES ('merge', ?1)"), [MERGE_STEP_PAGES])
                .ctx("merge fts segments")?;
            // The command itself counts one change; more is merge work.
            worked |= self.conn.total_changes().saturating_sub(before) >= 2;
        }
        Ok(worked)
    }

    /// Whether the full-text indexes should be merged fully again (docs/design.md "Keeping the
    /// full-text indexes merged"): they grew by an eighth of the rows they held at their last
    /// full merge, and by at least 1,000 rows (a small store is fast to search however its
    /// index is spread). Rows are the trigram index's own count (FTS5's averages record).
    /// `Some` with the merge to run, step by step, with [`Index::full_merge_step`].
    pub fn full_merge_due(&self) -> Result<Option<FullMerge>> {
        let Some((rows, _)) = self.fts_totals()? else { return Ok(None) };
        let rows = i64::try_from(rows).unwrap_or(i64::MAX);
        let at: i64 = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'fts_merged_rows'", [], |r| r.get(0))
            .optional()
            .ctx("read when the full-text indexes were merged")?
            .unwrap_or(0);
        let grown = rows.saturating_sub(at);
        let due = grown >= FULL_MERGE_MIN_GROWTH && grown.saturating_mul(8) >= at;
        Ok(due.then_some(FullMerge { table: 0, started: false, at: rows }))
    }

    /// One bounded step (`'merge'` of about 500 pages) of a full merge of the full-text
    /// indexes: the first step of each table is FTS5's `'merge'` with a negative page count,
    /// which begins merging every segment into one; later steps go on with it. Returns `true`
    /// once the merge of both tables is done (each in one segment, beside any that batches
    /// added meanwhile), and records it. A step is its own transaction: the compactor applies
    /// new entries between steps. A merge cut short by a restart is started again by the next
    /// due one (FTS5 goes on with it only if no segment was added since).
    pub fn full_merge_step(&self, m: &mut FullMerge) -> Result<bool> {
        while let Some(table) = FULL_MERGE_TABLES.get(m.table) {
            let pages = if m.started { MERGE_STEP_PAGES } else { -MERGE_STEP_PAGES };
            let before = self.conn.total_changes();
            self.conn
                .execute(&format!("INSERT INTO {table} ({table}, rank) VALUES ('merge', ?1)"), [pages])
                .ctx("merge fts segments")?;
            m.started = true;
            // The command itself counts one change; more is merge work.
            if self.conn.total_changes().saturating_sub(before) >= 2 {
                return Ok(false);
            }
            m.table += 1;
            m.started = false;
        }
        self.conn
            .execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('fts_merged_rows', ?1)", [m.at])
            .ctx("record the full merge")?;
        Ok(true)
    }

    /// Runs [`Index::full_merge_due`] and, if due, every step of the merge before `deadline`.
    /// Returns whether a merge was due and whether it finished.
    pub fn merge_fully_if_due(&self, deadline: std::time::Instant) -> Result<(bool, bool)> {
        let Some(mut m) = self.full_merge_due()? else { return Ok((false, true)) };
        while std::time::Instant::now() < deadline {
            if self.full_merge_step(&mut m)? {
                return Ok((true, true));
            }
        }
        Ok((true, false))
    }

    /// Where the index's bytes are: the pages of each part of the schema (SQLite's `dbstat`),
    /// in this order: trigram index, word index, messages, message indexes, sessions, history
    /// operations, other; and the free pages last. Reads every page of the file: about
    /// 30 s for a store of a million messages (3.3 GB).
    pub fn bytes_by_part(&self) -> Result<Vec<(&'static str, u64)>> {
        let tables: Vec<(String, i64)> =
            collect(&self.conn, "SELECT name, sum(pgsize) FROM dbstat GROUP BY name", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .ctx("read the index's pages (dbstat)")?;
        let free: i64 = self
            .conn
            .query_row("SELECT page_size * freelist_count FROM pragma_page_size, pragma_freelist_count", [], |r| {
                r.get(0)
            })
            .ctx("read the index's free pages")?;
        let mut parts: Vec<(&'static str, u64)> = INDEX_PARTS.iter().map(|p| (*p, 0)).collect();
        for (name, bytes) in tables {
            let part = index_part(&name);
            if let Some(slot) = parts.iter_mut().find(|(p, _)| *p == part) {
                slot.1 += u64::try_from(bytes).unwrap_or(0);
            }
        }
        parts.push(("free pages", u64::try_from(free).unwrap_or(0)));
        Ok(parts)
    }

    /// How many segments each full-text table has (for tests and diagnostics).
    pub fn fts_segments(&self) -> Result<Vec<(&'static str, u64)>> {
        FULL_MERGE_TABLES
            .iter()
            .map(|t| {
                self.conn
                    .query_row(&format!("SELECT count(DISTINCT segid) FROM {t}_idx"), [], |r| r.get::<_, i64>(0))
                    .map(|n| (*t, u64::try_from(n).unwrap_or(0)))
                    .ctx("count fts segments")
            })
            .collect()
    }

    /// Rebuilds the full-text index from `messages` (FTS5 `'rebuild'`), the repair when only
    /// the FTS5 integrity-check fails.
    pub fn rebuild_fts(&self) -> Result<()> {
        self.conn
            .execute("INSERT INTO messages_fts (messages_fts) VALUES ('rebuild')", [])
            .ctx("rebuild the fts index")?;
        self.conn
            .execute("INSERT INTO messages_words (messages_words) VALUES ('rebuild')", [])
            .ctx("rebuild the word index")?;
        tracing::info!(path = %self.path.display(), "rebuilt the full-text index");
        Ok(())
    }

    /// Runs `PRAGMA wal_checkpoint(TRUNCATE)`: copies the WAL into the database, syncs it and
    /// truncates the WAL to zero bytes unless readers prevent it (`busy`).
    pub fn checkpoint_truncate(&self) -> Result<CheckpointStats> {
        // Recorded first, so that the checkpoint itself carries it into the database file and
        // leaves the WAL empty; `tidelog stats` reads it.
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

    /// Rewrites the whole database from its live rows (`VACUUM`). `secure_delete` zeroes a
    /// deleted row's cell and the pages it frees, but a cell that a page split or merge moved to
    /// another page earlier leaves its old bytes in the unallocated part of the page it left;
    /// only rewriting every page clears them. The new pages go through the WAL: checkpoint after.
    pub fn vacuum(&self) -> Result<()> {
        self.conn.execute_batch("VACUUM").ctx("vacuum the index")
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

    /// Since when (ms since the Unix epoch) the journal holds deleted content not erased yet.
    pub fn erase_pending_since_ms(&self) -> Result<Option<u64>> {
        let v: Option<i64> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'erase_pending_since_ms'", [], |r| r.get(0))
            .optional()
            .ctx("read the pending erasure")?;
        Ok(v.and_then(|v| u64::try_from(v).ok()))
    }

    /// Clears the pending erasure recorded at `since` (not a newer one recorded meanwhile).
    pub fn clear_erase_pending(&self, since: u64) -> Result<()> {
        self.conn
            .execute(
                "DELETE FROM meta WHERE key = 'erase_pending_since_ms' AND value = ?1",
                [i64::try_from(since).unwrap_or(i64::MAX)],
            )
            .ctx("clear the pending erasure")?;
        Ok(())
    }

    /// The messages of `sessions`, by integer id and session (for an erase pass, which decides
    /// which rows a deletion covers).
    pub(crate) fn rows_of_sessions(&self, sessions: &[String]) -> Result<Vec<IndexRow>> {
        let mut out = Vec::new();
        for s in sessions {
            out.extend(
                collect(&self.conn, "SELECT rid, session_id FROM messages WHERE session_id = ?1", [s], |r| {
                    Ok(IndexRow { rid: r.get(0)?, session_id: r.get(1)? })
                })
                .ctx("read the messages of a session")?,
            );
        }
        Ok(out)
    }

    /// The messages of `sessions` with their texts: integer id, session, id, content (for
    /// `verify`, which searches the folder for the texts of deleted ones).
    pub(crate) fn texts_of_sessions(&self, sessions: &[String]) -> Result<Vec<RowText>> {
        let mut out = Vec::new();
        for s in sessions {
            out.extend(
                collect(
                    &self.conn,
                    &format!(
                        "SELECT m.rid, m.session_id, m.id, {} FROM messages m WHERE m.session_id = ?1",
                        super::schema::TEXT
                    ),
                    [s],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .ctx("read the messages of a session")?,
            );
        }
        Ok(out)
    }

    /// Deletes messages by integer id (from the full-text index first, with the values it
    /// indexed, then the rows) and the sessions `sessions` that hold no message any more, in one
    /// transaction; `secure_delete` zeroes what they held. For copies of the index that an erase
    /// pass scrubs. Returns the messages deleted.
    pub(crate) fn erase_rows_and_sessions(&self, rids: &[i64], sessions: &[String]) -> Result<u64> {
        self.conn.execute_batch("BEGIN IMMEDIATE").ctx("begin an erase")?;
        let r = (|| -> rusqlite::Result<u64> {
            let mut n = 0;
            for rid in rids {
                self.conn.execute(
                    "INSERT INTO messages_fts (messages_fts, rowid, body, tool_name) \
                     SELECT 'delete', rid, body, tool_name FROM fts_source WHERE rid = ?1",
                    [rid],
                )?;
                n += self.conn.execute("DELETE FROM messages WHERE rid = ?1", [rid])? as u64;
            }
            delete_empty_sessions(&self.conn, sessions)?;
            Ok(n)
        })();
        match r {
            Ok(n) => {
                self.conn.execute_batch("COMMIT").ctx("commit an erase")?;
                Ok(n)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(IndexError::Sqlite { context: "erase rows", source: e })
            }
        }
    }

    /// [`Index::erase_rows_and_sessions`] for a copy whose dead rows' texts cannot be read any
    /// more (erased from the journal already): both full-text indexes are emptied
    /// (`'delete-all'`, which needs no text), the rows removed with the word index's triggers
    /// set aside, and both indexes made again from the rows left (`'rebuild'`). If a text left
    /// cannot be read either, the full-text indexes of the copy stay empty (it is a copy kept
    /// for its rows).
    pub(crate) fn erase_rows_and_sessions_rebuilding(&self, rids: &[i64], sessions: &[String]) -> Result<u64> {
        self.conn.execute_batch("BEGIN IMMEDIATE").ctx("begin an erase")?;
        let r = (|| -> rusqlite::Result<u64> {
            self.conn.execute_batch(
                "INSERT INTO messages_fts (messages_fts) VALUES ('delete-all'); \
                 INSERT INTO messages_words (messages_words) VALUES ('delete-all'); \
                 DROP TRIGGER IF EXISTS messages_words_insert; DROP TRIGGER IF EXISTS messages_words_delete; \
                 DROP TRIGGER IF EXISTS messages_words_update; DROP VIEW IF EXISTS words_source;",
            )?;
            let mut n = 0;
            for rid in rids {
                n += self.conn.execute("DELETE FROM messages WHERE rid = ?1", [rid])? as u64;
            }
            delete_empty_sessions(&self.conn, sessions)?;
            self.conn.execute_batch(super::schema::WORDS_VIEW_AND_TRIGGERS)?;
            Ok(n)
        })();
        let n = match r {
            Ok(n) => {
                self.conn.execute_batch("COMMIT").ctx("commit an erase")?;
                n
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                return Err(IndexError::Sqlite { context: "erase rows", source: e });
            }
        };
        let rebuilt = self.conn.execute_batch(
            "INSERT INTO messages_fts (messages_fts) VALUES ('rebuild'); \
             INSERT INTO messages_words (messages_words) VALUES ('rebuild');",
        );
        if let Err(e) = rebuilt {
            tracing::warn!(path = %self.path.display(), "full-text indexes of the copy left empty: {e}");
        }
        Ok(n)
    }

    /// Copies into the index every text it keeps only in lane `lane`'s records (retention is
    /// about to remove segments: the index then holds the only copy). The word index's trigger
    /// sees the same text leave and come back; the trigram index reads the same text through
    /// its view. Returns how many texts were copied.
    pub(crate) fn inline_texts(&mut self, lane: u64) -> Result<usize> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx("begin")?;
        let n = tx
            .execute(
                "UPDATE messages SET content = tidelog_body(body_lane, body_seg, body_off, body_lsn, rid), \
                 body_lane = NULL, body_seg = NULL, body_off = NULL, body_lsn = NULL WHERE body_lane = ?1",
                [i64::try_from(lane).unwrap_or(i64::MAX)],
            )
            .ctx("copy texts kept in the journal into the index")?;
        tx.commit().ctx("commit the copied texts")?;
        Ok(n)
    }

    /// The messages (integer id, session) whose content contains `text`, at most 1,000 (a
    /// deleted message's text found in a file may be part of a message that was kept).
    pub(crate) fn messages_containing(&self, text: &[u8]) -> Result<Vec<(i64, String)>> {
        collect(
            &self.conn,
            &format!(
                "SELECT m.rid, m.session_id FROM messages m WHERE instr(CAST({} AS BLOB), ?1) > 0 LIMIT 1000",
                super::schema::TEXT
            ),
            [text],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .ctx("search the messages for a text")
    }

    /// The column names of a table (for the checks of the schema against the field lists).
    #[cfg(test)]
    pub(crate) fn columns(&self, table: &str) -> Result<Vec<String>> {
        collect(&self.conn, "SELECT name FROM pragma_table_info(?1)", [table], |r| r.get(0)).ctx("list columns")
    }

    /// Copies the index into a new file `dest` (created 0600; an existing file is refused)
    /// with SQLite's online backup API, then syncs it.
    pub fn backup_to(&self, dest: &Path) -> Result<()> {
        create_private_file(dest, true)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut dst = Connection::open_with_flags(dest, flags).ctx("open the backup file")?;
        // One step copying every page: the source read transaction is held for the whole copy,
        // so a commit of another connection (the compactor) cannot restart it, as it restarts an
        // incremental backup (which beside a steady writer never finished).
        {
            let b = Backup::new(&self.conn, &mut dst).ctx("start the backup")?;
            let mut waited = Duration::ZERO;
            loop {
                match b.step(-1).ctx("copy the index to the backup")? {
                    StepResult::Done => break,
                    StepResult::More => continue,
                    StepResult::Busy | StepResult::Locked if waited < self.opts.busy_timeout => {
                        std::thread::sleep(Duration::from_millis(5));
                        waited += Duration::from_millis(5);
                    }
                    other => {
                        return Err(IndexError::Sqlite {
                            context: "copy the index to the backup",
                            source: rusqlite::Error::SqliteFailure(
                                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                                Some(format!("source busy for {waited:?} ({other:?})")),
                            ),
                        });
                    }
                }
            }
        }
        dst.close().map_err(|(_, e)| e).ctx("close the backup")?;
        let io_err = |context, source| IndexError::Io { context, path: dest.to_owned(), source };
        File::open(dest).and_then(|f| f.sync_all()).map_err(|e| io_err("sync", e))?;
        if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir).and_then(|f| f.sync_all()).map_err(|e| io_err("sync the directory of", e))?;
        }
        tracing::info!(from = %self.path.display(), to = %dest.display(), "backed up the index");
        Ok(())
    }

    /// Runs `f` inside one read transaction: every query it makes sees the same committed state
    /// of the index, whatever other connections commit meanwhile (WAL snapshot).
    pub fn read_snapshot<T>(&self, f: impl FnOnce(&Index) -> Result<T>) -> Result<T> {
        self.conn.execute_batch("BEGIN DEFERRED").ctx("begin a read transaction")?;
        let r = f(self);
        // A read transaction has nothing to keep: ending it cannot lose anything.
        let end = self.conn.execute_batch("COMMIT").ctx("end the read transaction");
        let v = r?;
        end?;
        Ok(v)
    }

    /// Sizes in bytes of the database file and its WAL (0 when missing).
    pub fn file_sizes(&self) -> (u64, u64) {
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
        (size(&self.path), size(Path::new(&wal)))
    }
}

/// Removes the rows of `sessions` that have no message left.
fn delete_empty_sessions(conn: &Connection, sessions: &[String]) -> rusqlite::Result<()> {
    for s in sessions {
        conn.execute(
            "DELETE FROM sessions WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM messages WHERE session_id = ?1)",
            [s],
        )?;
    }
    Ok(())
}
