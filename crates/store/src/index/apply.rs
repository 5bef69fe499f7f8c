//! Applying journal entries to the index, one transaction per batch with the applied positions.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::{Connection, TransactionBehavior};

use super::schema::SESSION_COLS;
use super::text::{Indexed, classify};
use super::{Ctx, Index, IndexError, Result, collect};
use crate::model::Entry;

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

impl Index {
    /// The last applied journal position of every lane.
    pub fn applied_positions(&self) -> Result<BTreeMap<String, u64>> {
        read_positions(&self.conn)
    }

    /// Applies journal entries in one `IMMEDIATE` transaction that also stores each lane's new
    /// applied position. Idempotent: an entry at or below its lane's applied position is
    /// skipped, and a message whose `id` is already indexed is ignored (the first one wins), so
    /// replay after a crash never duplicates. A message whose session is unknown creates a bare
    /// session row (id, the message's source, `started_at` = the message's timestamp).
    // Bypasses the journal: public for the replay tests and the benchmark only.
    #[doc(hidden)]
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
}

pub(super) fn read_positions(conn: &Connection) -> Result<BTreeMap<String, u64>> {
    let sql = "SELECT lane, lsn FROM applied";
    let rows =
        collect(conn, sql, [], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))).ctx("read applied positions")?;
    Ok(rows.into_iter().map(|(lane, lsn)| (lane, u64::try_from(lsn).unwrap_or(0))).collect())
}
