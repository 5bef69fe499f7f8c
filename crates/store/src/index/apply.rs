//! Applying journal entries to the index, one transaction per batch with the applied positions.
//!
//! Every entry kind has its SQL here. History operations follow the rules in docs/design.md
//! ("History operations"): a rewrite or deletion covers the messages of its session whose
//! integer id is below the operation's, whenever those messages reach the index, so the result
//! depends on the entries, not on the batches they were applied in.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use super::schema::PATCH_COLS;
use super::text::{Indexed, classify};
use super::undecodable::{Undecodable, record_undecodable};
use super::{BodyAt, Ctx, Index, IndexError, Result, collect};
use crate::entry::Entry;
use crate::model::{
    CounterDelta, DeleteSessions, Message, MessageState, MessageUpdate, MetaSet, Rewrite, RewriteMode, SessionHistory,
    SessionPatch,
};

/// What one [`Index::apply_batch`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// Messages inserted.
    pub messages: u64,
    /// Messages ignored because a message with the same id was already indexed.
    pub duplicate_messages: u64,
    /// Session patches applied.
    pub sessions: u64,
    /// History operations applied (updates, rewrites, deletions, counters, metadata).
    pub operations: u64,
    /// Messages removed by deletions and rewrites (or not indexed because one covered them).
    pub erased_messages: u64,
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
        self.apply_batch_marked(entries, &[], &[])
    }

    /// [`Index::apply_batch`], also recording in the same transaction the records of `undecodable`
    /// (left out of the batch because they do not decode) and moving their lanes' positions past
    /// them: see `undecodable.rs`. `places` (empty, or one per entry: segment id and offset of
    /// its record) lets a long text stay only in the journal when the index keeps text there
    /// (`IndexOptions::journal_text`).
    pub(crate) fn apply_batch_marked(
        &mut self,
        entries: &[(String, u64, Entry)],
        places: &[(u64, u64)],
        undecodable: &[Undecodable],
    ) -> Result<ApplyStats> {
        let limit = self.opts.tool_output_index_bytes;
        let inline = self.opts.journal_text.is_some().then_some(self.opts.inline_text_bytes);
        let tx =
            self.conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx("begin the apply transaction")?;
        let mut stats = ApplyStats::default();
        {
            let mut a = Applier { tx: &tx, limit, inline, pending_fts: Vec::new(), stats: &mut stats };
            a.tx.execute_batch("CREATE TEMP TABLE IF NOT EXISTS pending_fts (rid INTEGER PRIMARY KEY)")
                .ctx("create the pending-fts table")?;
            let mut positions = read_positions(a.tx)?;
            let before = if undecodable.is_empty() { BTreeMap::new() } else { positions.clone() };
            let mut touched = BTreeSet::new();
            for (i, (lane, lsn, entry)) in entries.iter().enumerate() {
                let lsn_i = i64::try_from(*lsn)
                    .map_err(|_| IndexError::PositionOutOfRange { lane: lane.clone(), lsn: *lsn })?;
                if positions.get(lane).is_some_and(|&p| *lsn <= p) {
                    a.stats.skipped += 1;
                    continue;
                }
                let at = places.get(i).and_then(|&(segment, offset)| {
                    let lane = crate::layout::lane_number(lane)?;
                    Some(BodyAt { lane, segment, offset, lsn: *lsn })
                });
                match entry {
                    Entry::Message(m) => a.message(m, lane, lsn_i, at)?,
                    Entry::Session(p) => a.session(p, lane, *lsn)?,
                    Entry::Update(u) => a.update(u, at)?,
                    Entry::Rewrite(r) => a.rewrite(r, lane, lsn_i, at)?,
                    Entry::Delete(d) => a.delete(d)?,
                    Entry::Counters(c) => a.counters(c, lane, *lsn)?,
                    Entry::Meta(m) => a.meta(m)?,
                    Entry::Erased(_) => {}
                }
                positions.insert(lane.clone(), *lsn);
                touched.insert(lane.as_str());
            }
            record_undecodable(a.tx, &before, &mut positions, &mut touched, undecodable)?;
            a.flush_fts()?;
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

/// One batch being applied.
struct Applier<'t, 's> {
    tx: &'t Transaction<'t>,
    limit: usize,
    /// With text kept in the journal: the longest text kept in the index too.
    inline: Option<usize>,
    /// Rows inserted and not yet in the full-text index. They are indexed with one statement:
    /// FTS5 flushes its pending terms at every statement boundary, so one INSERT per message
    /// would write one index segment per message (measured: ~2x slower compaction).
    pending_fts: Vec<i64>,
    stats: &'s mut ApplyStats,
}

impl Applier<'_, '_> {
    /// Indexes the rows inserted so far. Runs before any statement that changes or deletes
    /// indexed rows, which must only touch rows the full-text index already has.
    fn flush_fts(&mut self) -> Result<()> {
        if self.pending_fts.is_empty() {
            return Ok(());
        }
        let mut add = self.tx.prepare_cached("INSERT INTO temp.pending_fts (rid) VALUES (?1)").ctx("prepare")?;
        for rid in self.pending_fts.drain(..) {
            add.execute([rid]).ctx("queue a row for the full-text index")?;
        }
        self.tx
            .execute(
                "INSERT INTO messages_fts (rowid, body, tool_name) \
                 SELECT rid, body, tool_name FROM fts_source WHERE rid IN (SELECT rid FROM temp.pending_fts)",
                [],
            )
            .ctx("index the batch")?;
        self.tx.execute("DELETE FROM temp.pending_fts", []).ctx("clear the pending rows")?;
        Ok(())
    }

    /// Removes rows from the full-text index (with the values it indexed), then from `messages`.
    fn erase_rows(&mut self, filter: &str, params: impl rusqlite::Params + Clone) -> Result<u64> {
        self.flush_fts()?;
        self.tx
            .execute(
                &format!(
                    "INSERT INTO messages_fts (messages_fts, rowid, body, tool_name) \
                     SELECT 'delete', rid, body, tool_name FROM fts_source WHERE rid IN \
                     (SELECT rid FROM messages WHERE {filter})"
                ),
                params.clone(),
            )
            .ctx("remove messages from the full-text index")?;
        let n = self.tx.execute(&format!("DELETE FROM messages WHERE {filter}"), params).ctx("delete messages")?;
        Ok(n as u64)
    }

    /// The history operations the index recorded for a session (its rewrites and latest
    /// deletion), for the model's one fold rule.
    fn history(&self, session: &str) -> Result<SessionHistory> {
        let mut h = SessionHistory::default();
        let deleted: Option<i64> = self
            .tx
            .prepare_cached("SELECT op FROM deleted_sessions WHERE id = ?1")
            .and_then(|mut s| s.query_row([session], |r| r.get(0)).optional())
            .ctx("read a deletion")?;
        if let Some(op) = deleted {
            h.add_deletion(op);
        }
        for r in super::query::rewrite_rules(self.tx, session)? {
            h.add_rewrite(r.op, r.mode, r.active_only, &r.kept);
        }
        Ok(h)
    }

    /// The state a message with id `num` gets from the history operations of its session the
    /// index already applied (it reached the index after them); `None` if one removed it.
    fn late_state(&self, session: &str, num: i64) -> Result<Option<MessageState>> {
        Ok(self.history(session)?.state(num))
    }

    /// Where a text goes: `Some` (the place of its record) when it is kept only in the journal.
    fn text_place(&self, text: Option<&str>, at: Option<BodyAt>) -> Option<BodyAt> {
        let inline = self.inline?;
        at.filter(|_| text.is_some_and(|t| t.len() > inline))
    }

    fn message(&mut self, m: &Message, lane: &str, lsn: i64, at: Option<BodyAt>) -> Result<()> {
        let Some(state) = self.late_state(&m.session_id, m.num)? else {
            self.stats.erased_messages += 1;
            return Ok(());
        };
        let body = self.text_place(m.content.as_deref(), at);
        let inserted = insert_message(self.tx, m, state, lane, lsn, self.limit, body).ctx("insert a message")?;
        if inserted == 0 {
            self.stats.duplicate_messages += 1;
            return Ok(());
        }
        self.pending_fts.push(self.tx.last_insert_rowid());
        // The session's first message gives its row's base (source, started_at): one that
        // arrives before messages already indexed (from a lane applied late) refolds the row.
        let first: i64 = self
            .tx
            .prepare_cached("SELECT min(rid) FROM messages WHERE session_id = ?1")
            .and_then(|mut st| st.query_row([&m.session_id], |r| r.get(0)))
            .ctx("read a session's first message")?;
        if first == m.num && m.num != 0 {
            self.refold_session(&m.session_id)?;
        } else {
            self.base_row(m)?;
        }
        self.stats.messages += 1;
        Ok(())
    }

    /// Creates a session row for a message, or fills the fields a message gives (source,
    /// started_at) that no patch set.
    fn base_row(&mut self, m: &Message) -> Result<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO sessions (id, source, started_at) VALUES (?1, ?2, ?3) ON CONFLICT (id) DO UPDATE SET \
                 source = coalesce(sessions.source, excluded.source), \
                 started_at = coalesce(sessions.started_at, excluded.started_at)",
            )
            .and_then(|mut st| st.execute((&m.session_id, &m.source, m.timestamp)))
            .ctx("create a session for a message")?;
        Ok(())
    }

    /// Whether a write at position `op` of `session` comes before its latest deletion (and so
    /// is covered by it). Writes without a position predate positioned deletions' rule and are
    /// applied as they come.
    fn before_deletion(&self, session: &str, op: Option<i64>) -> Result<bool> {
        let Some(op) = op else { return Ok(false) };
        let deleted: Option<i64> = self
            .tx
            .prepare_cached("SELECT op FROM deleted_sessions WHERE id = ?1")
            .and_then(|mut s| s.query_row([session], |r| r.get(0)).optional())
            .ctx("read a deletion")?;
        Ok(deleted.is_some_and(|d| d > op))
    }

    /// Keeps a session write (patch or counters) so the session row can be folded again in the
    /// store's order: under its position, or (written before positions existed) under a
    /// negative key below every position, in lane and LSN order. Returns whether a write with a
    /// larger position is already kept (this one arrived late: the row must be folded again).
    fn remember(&mut self, session: &str, op: Option<i64>, lane: &str, lsn: u64, e: &Entry) -> Result<bool> {
        let key = op.unwrap_or_else(|| legacy_key(lane, lsn));
        self.tx
            .prepare_cached("INSERT OR REPLACE INTO session_entries (session_id, op, entry) VALUES (?1, ?2, ?3)")
            .and_then(|mut st| st.execute(params![session, key, crate::entry::encode(e)]))
            .ctx("remember a session write")?;
        let later: bool = self
            .tx
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM session_entries WHERE session_id = ?1 AND op > ?2)")
            .and_then(|mut st| st.query_row(params![session, key], |r| r.get(0)))
            .ctx("look for later session writes")?;
        Ok(later)
    }

    fn session(&mut self, p: &SessionPatch, lane: &str, lsn: u64) -> Result<()> {
        if self.before_deletion(&p.id, p.op)? {
            return Ok(());
        }
        if self.remember(&p.id, p.op, lane, lsn, &Entry::Session(p.clone()))? {
            self.stats.sessions += 1;
            return self.refold_session(&p.id);
        }
        self.patch_row(p)
    }

    /// Makes a session's row again from what follows its latest deletion, in the store's order:
    /// the first message left, then every kept patch and counter delta, folded by the model's
    /// one fold of session rows (`model::fold_session_row`, which reads of the journal tail and
    /// the PostgreSQL index use too).
    fn refold_session(&mut self, id: &str) -> Result<()> {
        let first: Option<(Option<String>, f64)> = self
            .tx
            .prepare_cached("SELECT source, timestamp FROM messages WHERE session_id = ?1 ORDER BY rid LIMIT 1")
            // A time SQLite holds as NULL (a NaN written before every door validated times) is
            // read as NaN, as `message_from_row` reads it: never an error that stops the index.
            .and_then(|mut st| {
                st.query_row([id], |r| Ok((r.get(0)?, r.get::<_, Option<f64>>(1)?.unwrap_or(f64::NAN)))).optional()
            })
            .ctx("read a session's first message")?;
        let kept: Vec<Vec<u8>> =
            super::collect(self.tx, "SELECT entry FROM session_entries WHERE session_id = ?1 ORDER BY op", [id], |r| {
                r.get(0)
            })
            .ctx("read a session's writes")?;
        let entries: Vec<Entry> = kept.iter().filter_map(|b| crate::entry::decode(b).ok()).collect();
        let row = crate::model::fold_session_row(id, first, entries.iter().filter_map(Entry::session_write));
        self.tx.execute("DELETE FROM sessions WHERE id = ?1", [id]).ctx("delete a session row")?;
        let Some(s) = row else { return Ok(()) };
        let c = &s.counters;
        self.tx
            .prepare_cached(&format!(
                "INSERT INTO sessions ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, \
                 ?15, ?16, ?17, ?18, ?19)",
                super::schema::SESSION_COLS
            ))
            .and_then(|mut st| {
                st.execute(params![
                    s.id,
                    s.source,
                    s.model,
                    s.title,
                    s.user_id,
                    s.chat_id,
                    s.parent_session_id,
                    s.started_at,
                    s.ended_at,
                    s.end_reason,
                    s.extra,
                    c.input_tokens,
                    c.output_tokens,
                    c.cache_read_tokens,
                    c.cache_write_tokens,
                    c.reasoning_tokens,
                    c.api_call_count,
                    c.estimated_cost_usd,
                    c.actual_cost_usd,
                ])
            })
            .ctx("write a folded session row")?;
        Ok(())
    }

    /// Applies a patch to the session's row with the model's `SessionPatch::apply_to` (the one
    /// fold of session rows; `extra` merged into its canonical form as reads of the tail do).
    fn patch_row(&mut self, p: &SessionPatch) -> Result<()> {
        let old = self
            .tx
            .prepare_cached(&format!("SELECT {} FROM sessions WHERE id = ?1", super::schema::SESSION_COLS))
            .and_then(|mut st| st.query_row([&p.id], super::query::session_from_row).optional())
            .ctx("read a session to patch")?;
        let s = p.apply_to(old);
        self.tx
            .prepare_cached(&format!(
                "INSERT INTO sessions ({PATCH_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
                 ON CONFLICT (id) DO UPDATE SET source = excluded.source, model = excluded.model, \
                 title = excluded.title, user_id = excluded.user_id, chat_id = excluded.chat_id, \
                 parent_session_id = excluded.parent_session_id, started_at = excluded.started_at, \
                 ended_at = excluded.ended_at, end_reason = excluded.end_reason, extra = excluded.extra"
            ))
            .and_then(|mut st| {
                st.execute(params![
                    s.id,
                    s.source,
                    s.model,
                    s.title,
                    s.user_id,
                    s.chat_id,
                    s.parent_session_id,
                    s.started_at,
                    s.ended_at,
                    s.end_reason,
                    s.extra,
                ])
            })
            .ctx("apply a session patch")?;
        self.stats.sessions += 1;
        Ok(())
    }

    fn update(&mut self, u: &MessageUpdate, at: Option<BodyAt>) -> Result<()> {
        self.stats.operations += 1;
        let old = self
            .tx
            .prepare_cached(&format!("SELECT {} FROM messages m WHERE m.rid = ?1", super::schema::MESSAGE_COLS))
            .and_then(|mut st| st.query_row([u.num], super::query::message_from_row).optional())
            .ctx("read a message to update")?;
        // Not indexed: deleted, or (written by another process) not applied yet; see
        // docs/design.md "History operations" for the second case. An update edits only the
        // message with its id in the session it names (the one fold rule).
        let Some((mut m, _)) = old.filter(|(m, _)| u.edits(&m.session_id, m.num)) else { return Ok(()) };
        let text_changes = u.content.is_some();
        u.apply_to(&mut m);
        if text_changes {
            self.flush_fts()?;
            self.tx
                .execute(
                    "INSERT INTO messages_fts (messages_fts, rowid, body, tool_name) \
                     SELECT 'delete', rid, body, tool_name FROM fts_source WHERE rid = ?1",
                    [u.num],
                )
                .ctx("remove a message from the full-text index")?;
        }
        self.tx
            .execute(
                "UPDATE messages SET api_content = ?2, platform_message_id = ?3, tool_calls = ?4, \
                 finish_reason = ?5, token_count = ?6, extra = ?7 WHERE rid = ?1",
                params![
                    u.num,
                    m.api_content,
                    m.platform_message_id,
                    m.tool_calls,
                    m.finish_reason,
                    m.token_count,
                    m.extra,
                ],
            )
            .ctx("update a message")?;
        if text_changes {
            // The new text: in the index, or only in the update's record; its trigram part cut
            // by today's limit. Only here: the cut of a text that stays is the one it was
            // indexed with (a `'delete'` must be given exactly the indexed values).
            let body = self.text_place(m.content.as_deref(), at);
            let p = body_params(body);
            let (fts_len, fts_text) = fts_columns(&m, self.limit);
            self.tx
                .execute(
                    "UPDATE messages SET content = ?2, body_lane = ?3, body_seg = ?4, body_off = ?5, body_lsn = ?6, \
                     fts_len = ?7, fts_text = ?8 WHERE rid = ?1",
                    params![
                        u.num,
                        if body.is_some() { None } else { m.content.as_deref() },
                        p[0],
                        p[1],
                        p[2],
                        p[3],
                        fts_len,
                        fts_text
                    ],
                )
                .ctx("update a message's text")?;
        }
        if text_changes {
            self.pending_fts.push(u.num);
        }
        Ok(())
    }

    /// Records that the journal holds content to erase (from now), unless already recorded.
    fn erase_pending(&mut self) -> Result<()> {
        self.tx
            .execute(
                "INSERT INTO meta (key, value) VALUES ('erase_pending_since_ms', ?1) ON CONFLICT (key) DO NOTHING",
                [i64::try_from(crate::time::now_ms()).unwrap_or(i64::MAX)],
            )
            .ctx("record pending erasure")?;
        Ok(())
    }

    fn rewrite(&mut self, r: &Rewrite, lane: &str, lsn: i64, at: Option<BodyAt>) -> Result<()> {
        self.stats.operations += 1;
        let mode = r.rewrite_mode();
        if mode == RewriteMode::Delete {
            self.erase_pending()?;
        }
        self.tx
            .execute(
                "INSERT INTO session_ops (session_id, op, mode, active_only) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT DO NOTHING",
                params![r.session_id, r.op, mode.code(), r.active_only],
            )
            .ctx("record a rewrite")?;
        let kept = r.kept_nums();
        for num in &kept {
            self.tx
                .execute(
                    "INSERT OR IGNORE INTO rewrite_kept (session_id, op, num) VALUES (?1, ?2, ?3)",
                    params![r.session_id, r.op, num],
                )
                .ctx("record what a rewrite kept")?;
        }
        // The rows already here get the state the one fold rule gives (SQL generated from it).
        let filter = format!("session_id = ?1 AND {}", RewriteMode::sql_covered("?2", r.active_only, "1", &kept));
        match mode.sql_set("1", "0") {
            None => {
                self.stats.erased_messages += self.erase_rows(&filter, params![r.session_id, r.op])?;
            }
            Some(set) => {
                self.tx
                    .execute(&format!("UPDATE messages SET {set} WHERE {filter}"), params![r.session_id, r.op])
                    .ctx("archive or compact messages")?;
            }
        }
        // A rewrite is a write to the session (it exists from then on, even if it cleared
        // every message) and may have removed the message the row's base came from.
        if !self.before_deletion(&r.session_id, Some(r.op))? {
            let marker = Rewrite { messages: Vec::new(), ..r.clone() };
            let lsn = u64::try_from(lsn).unwrap_or(0);
            self.remember(&r.session_id, Some(r.op), lane, lsn, &Entry::Rewrite(marker))?;
            self.refold_session(&r.session_id)?;
        }
        for m in &r.messages {
            self.message(m, lane, lsn, at)?;
        }
        Ok(())
    }

    fn delete(&mut self, d: &DeleteSessions) -> Result<()> {
        self.stats.operations += 1;
        self.erase_pending()?;
        for s in &d.sessions {
            let filter = format!("session_id = ?1 AND {}", RewriteMode::sql_covered("?2", false, "1", &[]));
            self.stats.erased_messages += self.erase_rows(&filter, params![s.id, d.op])?;
            self.tx
                .execute("DELETE FROM session_ops WHERE session_id = ?1 AND op < ?2", params![s.id, d.op])
                .ctx("forget a deleted session's rewrites")?;
            self.tx
                .execute("DELETE FROM rewrite_kept WHERE session_id = ?1 AND op < ?2", params![s.id, d.op])
                .ctx("forget what a deleted session's rewrites kept")?;
            self.tx
                .execute("DELETE FROM session_entries WHERE session_id = ?1 AND op < ?2", params![s.id, d.op])
                .ctx("forget a deleted session's patches")?;
            self.tx
                .execute(
                    "INSERT INTO deleted_sessions (id, op) VALUES (?1, ?2) \
                     ON CONFLICT (id) DO UPDATE SET op = max(op, excluded.op)",
                    params![s.id, d.op],
                )
                .ctx("record a deletion")?;
            // Nothing written before the deletion survives in the row.
            self.refold_session(&s.id)?;
        }
        Ok(())
    }

    fn counters(&mut self, c: &CounterDelta, lane: &str, lsn: u64) -> Result<()> {
        self.stats.operations += 1;
        if self.before_deletion(&c.session_id, c.op)? {
            return Ok(());
        }
        // Additive: order does not matter, only which deletion covers it.
        self.remember(&c.session_id, c.op, lane, lsn, &Entry::Counters(c.clone()))?;
        self.add_to_row(c)
    }

    fn add_to_row(&mut self, c: &CounterDelta) -> Result<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO sessions (id, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, \
                 reasoning_tokens, api_call_count, estimated_cost_usd, actual_cost_usd) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (id) DO UPDATE SET \
                 input_tokens = input_tokens + excluded.input_tokens, \
                 output_tokens = output_tokens + excluded.output_tokens, \
                 cache_read_tokens = cache_read_tokens + excluded.cache_read_tokens, \
                 cache_write_tokens = cache_write_tokens + excluded.cache_write_tokens, \
                 reasoning_tokens = reasoning_tokens + excluded.reasoning_tokens, \
                 api_call_count = api_call_count + excluded.api_call_count, \
                 estimated_cost_usd = estimated_cost_usd + excluded.estimated_cost_usd, \
                 actual_cost_usd = actual_cost_usd + excluded.actual_cost_usd",
            )
            .and_then(|mut st| {
                st.execute(params![
                    c.session_id,
                    c.input_tokens,
                    c.output_tokens,
                    c.cache_read_tokens,
                    c.cache_write_tokens,
                    c.reasoning_tokens,
                    c.api_call_count,
                    c.estimated_cost_usd,
                    c.actual_cost_usd,
                ])
            })
            .ctx("add session counters")?;
        Ok(())
    }

    fn meta(&mut self, m: &MetaSet) -> Result<()> {
        self.stats.operations += 1;
        match &m.value {
            Some(v) => self.tx.execute(
                "INSERT INTO user_meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (&m.key, v),
            ),
            None => self.tx.execute("DELETE FROM user_meta WHERE key = ?1", [&m.key]),
        }
        .ctx("set metadata")?;
        Ok(())
    }
}

pub(super) fn read_positions(conn: &Connection) -> Result<BTreeMap<String, u64>> {
    let sql = "SELECT lane, lsn FROM applied";
    let rows =
        collect(conn, sql, [], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))).ctx("read applied positions")?;
    Ok(rows.into_iter().map(|(lane, lsn)| (lane, u64::try_from(lsn).unwrap_or(0))).collect())
}

/// The key under which a session write without a position is kept: negative, below every
/// position, ordered by lane then LSN (the order such writes were always applied in).
pub fn legacy_key(lane: &str, lsn: u64) -> i64 {
    let lane = crate::layout::lane_number(lane).unwrap_or(0) & 0x3ff;
    let key = (lane << 40) | (lsn & ((1 << 40) - 1));
    i64::try_from(key).map_or(i64::MIN, |k| k - (1 << 51))
}

/// The FTS columns of a message's row (`fts_len`, `fts_text`; see [`classify`]).
pub(super) fn fts_columns(m: &Message, limit: usize) -> (Option<i64>, Option<String>) {
    match classify(m, limit) {
        Indexed::Whole => (None, None),
        Indexed::Prefix(n) => (i64::try_from(n).ok(), None),
        Indexed::Extracted(t) => (None, Some(t)),
    }
}

/// The `body_*` column values of a text's place (NULLs for a text kept in the index).
fn body_params(at: Option<BodyAt>) -> [Option<i64>; 4] {
    let i = |v: u64| i64::try_from(v).ok();
    match at {
        Some(b) => [i(b.lane), i(b.segment), i(b.offset), i(b.lsn)],
        None => [None; 4],
    }
}

/// Inserts a message's row in `messages` (not yet in the trigram index: its caller indexes the
/// rows it inserted); a message whose id or integer id is already there is left as it is (0).
/// An integer id of 0 (direct callers of `apply_batch` only) lets SQLite pick one. With `body`,
/// its text is kept only in the journal, at that place.
pub(super) fn insert_message(
    conn: &rusqlite::Connection,
    m: &Message,
    state: MessageState,
    lane: &str,
    lsn: i64,
    limit: usize,
    body: Option<BodyAt>,
) -> rusqlite::Result<usize> {
    let (fts_len, fts_text) = fts_columns(m, limit);
    let p = body_params(body);
    conn.prepare_cached(
        "INSERT INTO messages (rid, id, session_id, role, content, tool_call_id, tool_name, \
         tool_calls, reasoning, timestamp, token_count, finish_reason, source, extra, \
         platform_message_id, api_content, active, compacted, lane, lsn, fts_len, fts_text, \
         body_lane, body_seg, body_off, body_lsn) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, \
         ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26) ON CONFLICT DO NOTHING",
    )?
    .execute(params![
        (m.num != 0).then_some(m.num),
        m.id,
        m.session_id,
        m.role,
        if body.is_some() { None } else { m.content.as_deref() },
        m.tool_call_id,
        m.tool_name,
        m.tool_calls,
        m.reasoning,
        m.timestamp,
        m.token_count,
        m.finish_reason,
        m.source,
        m.extra,
        m.platform_message_id,
        m.api_content,
        state.active,
        state.compacted,
        lane,
        lsn,
        fts_len,
        fts_text,
        p[0],
        p[1],
        p[2],
        p[3],
    ])
}
