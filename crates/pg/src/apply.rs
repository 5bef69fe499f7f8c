//! Applying journal entries to PostgreSQL: the same semantics as the SQLite index
//! (`crates/store/src/index/apply.rs`), every row keyed by the store's id, one transaction per
//! batch that also stores each lane's applied position.
//!
//! Runs of messages are inserted with one multi-row statement (`unnest` of column arrays), and
//! the bare sessions they create with the same statement; any other entry first flushes the
//! run, so entries take effect in journal order exactly as on SQLite.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use postgres::{Client, Row, Transaction};
use tidelog::{
    ApplyStats, CounterDelta, DeleteSessions, Entry, IndexOptions, IndexTarget, Message, MessageState, MessageUpdate,
    MetaSet, Rewrite, RewriteMode, Session, SessionHistory, SessionPatch, TargetError, decode_entry, encode_entry,
    fold_session_row, indexed_text, legacy_key,
};

use crate::error::{Ctx, PgError};

/// An open connection to the PostgreSQL index, with the schema checked.
pub struct PgIndex {
    pub(crate) client: Client,
    pub(crate) target: String,
    opts: IndexOptions,
}

impl std::fmt::Debug for PgIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgIndex").field("target", &self.target).finish_non_exhaustive()
    }
}

/// PostgreSQL `text` cannot hold NUL: it becomes U+FFFD in text columns (ids, names, the
/// searchable body). Long free text is stored as `bytea` instead, exactly.
pub(crate) fn text(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') { std::borrow::Cow::Owned(s.replace('\0', "\u{FFFD}")) } else { std::borrow::Cow::Borrowed(s) }
}

fn otext(s: &Option<String>) -> Option<String> {
    s.as_deref().map(|s| text(s).into_owned())
}

fn bytes(s: &Option<String>) -> Option<Vec<u8>> {
    s.as_ref().map(|s| s.as_bytes().to_vec())
}

fn mode_code(m: RewriteMode) -> i16 {
    match m {
        RewriteMode::Delete => 0,
        RewriteMode::Archive => 1,
        _ => 2,
    }
}

fn mode_of(c: i16) -> RewriteMode {
    match c {
        0 => RewriteMode::Delete,
        1 => RewriteMode::Archive,
        _ => RewriteMode::Compact,
    }
}

/// The message columns every read selects, in [`message_from_row`] order.
pub(crate) const MESSAGE_COLS: &str = "m.id, m.session_id, m.role, m.content, m.tool_call_id, m.tool_name, \
     m.tool_calls, m.reasoning, m.\"timestamp\", m.token_count, m.finish_reason, m.source, m.extra, m.rid, \
     m.platform_message_id, m.api_content, m.active, m.compacted";

fn string(v: Option<Vec<u8>>) -> Option<String> {
    v.map(|b| String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

pub(crate) fn message_from_row(r: &Row, at: usize) -> Result<(Message, MessageState), postgres::Error> {
    let m = Message {
        id: r.try_get(at)?,
        session_id: r.try_get(at + 1)?,
        role: r.try_get(at + 2)?,
        content: string(r.try_get(at + 3)?),
        tool_call_id: r.try_get(at + 4)?,
        tool_name: r.try_get(at + 5)?,
        tool_calls: string(r.try_get(at + 6)?),
        reasoning: string(r.try_get(at + 7)?),
        timestamp: r.try_get::<_, Option<f64>>(at + 8)?.unwrap_or(f64::NAN),
        token_count: r.try_get(at + 9)?,
        finish_reason: r.try_get(at + 10)?,
        source: r.try_get(at + 11)?,
        extra: string(r.try_get(at + 12)?),
        num: r.try_get(at + 13)?,
        platform_message_id: r.try_get(at + 14)?,
        api_content: string(r.try_get(at + 15)?),
    };
    Ok((m, MessageState { active: r.try_get(at + 16)?, compacted: r.try_get(at + 17)? }))
}

impl PgIndex {
    pub(crate) fn new(client: Client, target: String, opts: IndexOptions) -> PgIndex {
        PgIndex { client, target, opts }
    }

    /// The last applied position of every lane of store `store_id`.
    pub fn positions(&mut self, store_id: &str) -> Result<BTreeMap<String, u64>, PgError> {
        let rows = self
            .client
            .query("SELECT lane, lsn FROM tidelog.applied WHERE store = $1", &[&store_id])
            .ctx(&self.target, "read applied positions")?;
        Ok(rows.iter().map(|r| (r.get::<_, String>(0), u64::try_from(r.get::<_, i64>(1)).unwrap_or(0))).collect())
    }

    /// Every store with positions here, with its lanes' positions.
    pub fn stores(&mut self) -> Result<BTreeMap<String, BTreeMap<String, u64>>, PgError> {
        let rows = self
            .client
            .query("SELECT store, lane, lsn FROM tidelog.applied ORDER BY store, lane", &[])
            .ctx(&self.target, "read applied positions")?;
        let mut out: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for r in rows {
            out.entry(r.get(0)).or_default().insert(r.get(1), u64::try_from(r.get::<_, i64>(2)).unwrap_or(0));
        }
        Ok(out)
    }

    /// Applies entries of store `store_id` in one transaction with the new positions (see
    /// [`IndexTarget::apply_batch`]). Serialised per store by an advisory lock, so two shippers
    /// of one store (the background one and `tidelog sync`) never apply the same entry twice.
    pub fn apply(&mut self, store_id: &str, entries: &[(String, u64, Entry)]) -> Result<ApplyStats, PgError> {
        let target = self.target.clone();
        let t = target.as_str();
        let mut tx = self.client.transaction().ctx(t, "begin the apply transaction")?;
        tx.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))", &[&store_id])
            .ctx(t, "lock the store's positions")?;
        let mut positions: BTreeMap<String, u64> = tx
            .query("SELECT lane, lsn FROM tidelog.applied WHERE store = $1", &[&store_id])
            .ctx(t, "read applied positions")?
            .iter()
            .map(|r| (r.get::<_, String>(0), u64::try_from(r.get::<_, i64>(1)).unwrap_or(0)))
            .collect();
        let mut stats = ApplyStats::default();
        let mut touched = BTreeSet::new();
        {
            let mut a = Applier {
                tx: &mut tx,
                target: t,
                store: store_id,
                opts: &self.opts,
                run: Vec::new(),
                stats: &mut stats,
            };
            for (lane, lsn, entry) in entries {
                if positions.get(lane).is_some_and(|&p| *lsn <= p) {
                    a.stats.skipped += 1;
                    continue;
                }
                let lsn_i = i64::try_from(*lsn).unwrap_or(i64::MAX);
                match entry {
                    Entry::Message(m) => a.run.push((m.clone(), lane.clone(), lsn_i)),
                    other => {
                        a.flush()?;
                        match other {
                            Entry::Session(p) => a.session(p, lane, *lsn)?,
                            Entry::Update(u) => a.update(u)?,
                            Entry::Rewrite(r) => a.rewrite(r, lane, lsn_i)?,
                            Entry::Delete(d) => a.delete(d)?,
                            Entry::Counters(c) => a.counters(c, lane, *lsn)?,
                            Entry::Meta(m) => a.meta(m)?,
                            // Erased entries (content removed by an erase pass) and kinds this
                            // version does not know change nothing, as on SQLite.
                            _ => {}
                        }
                    }
                }
                positions.insert(lane.clone(), *lsn);
                touched.insert(lane.as_str());
            }
            a.flush()?;
        }
        for (lane, lsn) in positions.iter().filter(|(l, _)| touched.contains(l.as_str())) {
            tx.execute(
                "INSERT INTO tidelog.applied (store, lane, lsn) VALUES ($1, $2, $3) ON CONFLICT (store, lane) \
                 DO UPDATE SET lsn = greatest(applied.lsn, excluded.lsn), updated_at = now()",
                &[&store_id, lane, &i64::try_from(*lsn).unwrap_or(i64::MAX)],
            )
            .ctx(t, "store an applied position")?;
        }
        tx.commit().ctx(t, "commit the apply transaction")?;
        Ok(stats)
    }
}

impl IndexTarget for PgIndex {
    fn applied_positions(&mut self, store_id: &str) -> Result<BTreeMap<String, u64>, TargetError> {
        Ok(self.positions(store_id)?)
    }

    fn apply_batch(&mut self, store_id: &str, entries: &[(String, u64, Entry)]) -> Result<ApplyStats, TargetError> {
        Ok(self.apply(store_id, entries)?)
    }
}

struct Applier<'a, 't> {
    tx: &'a mut Transaction<'t>,
    target: &'a str,
    store: &'a str,
    opts: &'a IndexOptions,
    /// Messages not inserted yet: `(message, lane, lsn)`.
    run: Vec<(Message, String, i64)>,
    stats: &'a mut ApplyStats,
}

impl Applier<'_, '_> {
    fn body(&self, m: &Message) -> Option<String> {
        indexed_text(m, self.opts).map(|t| text(&t).into_owned())
    }

    /// Inserts the pending run of messages with one statement (and the bare sessions of the new
    /// ones), each with the state the recorded history operations give it.
    fn flush(&mut self) -> Result<(), PgError> {
        if self.run.is_empty() {
            return Ok(());
        }
        let run = std::mem::take(&mut self.run);
        let sessions: Vec<String> =
            run.iter().map(|(m, _, _)| text(&m.session_id).into_owned()).collect::<BTreeSet<_>>().into_iter().collect();
        // The one fold rule of the model (`SessionHistory`, docs/design.md "One fold rule").
        let mut ops: HashMap<String, SessionHistory> = HashMap::new();
        for r in self
            .tx
            .query(
                "SELECT session_id, op, mode, active_only, kept FROM tidelog.session_ops \
                 WHERE store = $1 AND session_id = ANY($2) ORDER BY op",
                &[&self.store, &sessions],
            )
            .ctx(self.target, "read rewrites")?
        {
            let kept: Vec<i64> = r.get(4);
            ops.entry(r.get(0)).or_default().add_rewrite(r.get(1), mode_of(r.get(2)), r.get(3), &kept);
        }
        for r in self
            .tx
            .query(
                "SELECT id, op FROM tidelog.deleted_sessions WHERE store = $1 AND id = ANY($2)",
                &[&self.store, &sessions],
            )
            .ctx(self.target, "read deletions")?
        {
            ops.entry(r.get(0)).or_default().add_deletion(r.get(1));
        }
        let mut c = Columns::default();
        for (m, lane, lsn) in &run {
            let sid = text(&m.session_id).into_owned();
            let state = ops.get(&sid).map_or(Some(MessageState::ACTIVE), |o| o.state(m.num));
            let Some(state) = state else {
                self.stats.erased_messages += 1;
                continue;
            };
            c.rid.push(m.num);
            c.id.push(text(&m.id).into_owned());
            c.session_id.push(sid);
            c.role.push(text(&m.role).into_owned());
            c.content.push(bytes(&m.content));
            c.tool_call_id.push(otext(&m.tool_call_id));
            c.tool_name.push(otext(&m.tool_name));
            c.tool_calls.push(bytes(&m.tool_calls));
            c.reasoning.push(bytes(&m.reasoning));
            c.timestamp.push(m.timestamp.is_finite().then_some(m.timestamp));
            c.token_count.push(m.token_count);
            c.finish_reason.push(otext(&m.finish_reason));
            c.source.push(otext(&m.source));
            c.extra.push(bytes(&m.extra));
            c.platform_message_id.push(otext(&m.platform_message_id));
            c.api_content.push(bytes(&m.api_content));
            c.active.push(state.active);
            c.compacted.push(state.compacted);
            c.lane.push(lane.clone());
            c.lsn.push(*lsn);
            c.body.push(self.body(m));
        }
        let offered = c.rid.len() as u64;
        if offered == 0 {
            return Ok(());
        }
        // One statement: the messages (first id wins: ON CONFLICT DO NOTHING), then a bare
        // session for each new message's session, from its first new message (as SQLite).
        let firsts = self
            .tx
            .query(
                "WITH ins AS (\
                   INSERT INTO tidelog.messages (store, rid, id, session_id, role, content, tool_call_id, tool_name, \
                     tool_calls, reasoning, \"timestamp\", token_count, finish_reason, source, extra, \
                     platform_message_id, api_content, active, compacted, lane, lsn, body) \
                   SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::bytea[], \
                     $7::text[], $8::text[], $9::bytea[], $10::bytea[], $11::float8[], $12::bigint[], $13::text[], \
                     $14::text[], $15::bytea[], $16::text[], $17::bytea[], $18::bool[], $19::bool[], $20::text[], \
                     $21::bigint[], $22::text[]) \
                   ON CONFLICT DO NOTHING \
                   RETURNING session_id, source, \"timestamp\", rid) \
                 SELECT DISTINCT ON (session_id) session_id, source, \"timestamp\", rid, count(*) OVER () \
                 FROM ins ORDER BY session_id, rid",
                &[
                    &self.store,
                    &c.rid,
                    &c.id,
                    &c.session_id,
                    &c.role,
                    &c.content,
                    &c.tool_call_id,
                    &c.tool_name,
                    &c.tool_calls,
                    &c.reasoning,
                    &c.timestamp,
                    &c.token_count,
                    &c.finish_reason,
                    &c.source,
                    &c.extra,
                    &c.platform_message_id,
                    &c.api_content,
                    &c.active,
                    &c.compacted,
                    &c.lane,
                    &c.lsn,
                    &c.body,
                ],
            )
            .ctx(self.target, "insert messages")?;
        // Each session's first new message: the base of its row (as SQLite, `index/apply.rs`):
        // the session's first message refolds the row, a later one fills what no patch set.
        let inserted: i64 = firsts.first().map_or(0, |r| r.get(4));
        for r in &firsts {
            let (sid, source, at, rid): (String, Option<String>, Option<f64>, i64) =
                (r.get(0), r.get(1), r.get(2), r.get(3));
            let first: i64 = self
                .tx
                .query_one(
                    "SELECT min(rid) FROM tidelog.messages WHERE store = $1 AND session_id = $2",
                    &[&self.store, &sid],
                )
                .ctx(self.target, "read a session's first message")?
                .get(0);
            if first == rid {
                self.refold(&sid)?;
            } else {
                self.tx
                    .execute(
                        "INSERT INTO tidelog.sessions AS s (store, id, source, started_at) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (store, id) DO UPDATE SET source = coalesce(s.source, excluded.source), \
                         started_at = coalesce(s.started_at, excluded.started_at)",
                        &[&self.store, &sid, &source, &at],
                    )
                    .ctx(self.target, "create a session for a message")?;
            }
        }
        let inserted = u64::try_from(inserted).unwrap_or(0);
        self.stats.messages += inserted;
        self.stats.duplicate_messages += offered.saturating_sub(inserted);
        Ok(())
    }

    /// Whether a write at position `op` of `session` comes before its latest deletion (and so
    /// is covered by it); writes without a position are applied as they come (as SQLite).
    fn before_deletion(&mut self, session: &str, op: Option<i64>) -> Result<bool, PgError> {
        let Some(op) = op else { return Ok(false) };
        let deleted: Option<i64> = self
            .tx
            .query_opt("SELECT op FROM tidelog.deleted_sessions WHERE store = $1 AND id = $2", &[&self.store, &session])
            .ctx(self.target, "read a deletion")?
            .map(|r| r.get(0));
        Ok(deleted.is_some_and(|d| d > op))
    }

    /// Keeps a session write for the fold (under its position, or its legacy key); returns
    /// whether a later one is already kept (this one arrived late: the row is folded again).
    fn remember(&mut self, session: &str, op: Option<i64>, lane: &str, lsn: u64, e: &Entry) -> Result<bool, PgError> {
        let key = op.unwrap_or_else(|| legacy_key(lane, lsn));
        self.tx
            .execute(
                "INSERT INTO tidelog.session_entries (store, session_id, op, entry) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (store, session_id, op) DO UPDATE SET entry = excluded.entry",
                &[&self.store, &session, &key, &encode_entry(e)],
            )
            .ctx(self.target, "remember a session write")?;
        let later: bool = self
            .tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM tidelog.session_entries WHERE store = $1 AND session_id = $2 AND op > $3)",
                &[&self.store, &session, &key],
            )
            .ctx(self.target, "look for later session writes")?
            .get(0);
        Ok(later)
    }

    /// Makes a session's row again with the model's one fold of session rows
    /// (`tidelog::fold_session_row`): the first message left, then every kept write in order.
    fn refold(&mut self, id: &str) -> Result<(), PgError> {
        let first: Option<(Option<String>, f64)> = self
            .tx
            .query_opt(
                "SELECT source, \"timestamp\" FROM tidelog.messages WHERE store = $1 AND session_id = $2 \
                 ORDER BY rid LIMIT 1",
                &[&self.store, &id],
            )
            .ctx(self.target, "read a session's first message")?
            .map(|r| (r.get(0), r.get::<_, Option<f64>>(1).unwrap_or(0.0)));
        let entries: Vec<Entry> = self
            .tx
            .query(
                "SELECT entry FROM tidelog.session_entries WHERE store = $1 AND session_id = $2 ORDER BY op",
                &[&self.store, &id],
            )
            .ctx(self.target, "read a session's writes")?
            .iter()
            .filter_map(|r| decode_entry(r.get::<_, &[u8]>(0)).ok())
            .collect();
        let row = fold_session_row(id, first, entries.iter().filter_map(Entry::session_write));
        self.tx
            .execute("DELETE FROM tidelog.sessions WHERE store = $1 AND id = $2", &[&self.store, &id])
            .ctx(self.target, "delete a session row")?;
        let Some(s) = row else { return Ok(()) };
        let c = &s.counters;
        self.tx
            .execute(
                "INSERT INTO tidelog.sessions (store, id, source, model, title, user_id, chat_id, parent_session_id, \
                 started_at, ended_at, end_reason, extra, input_tokens, output_tokens, cache_read_tokens, \
                 cache_write_tokens, reasoning_tokens, api_call_count, estimated_cost_usd, actual_cost_usd) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)",
                &[
                    &self.store,
                    &text(id).into_owned(),
                    &otext(&s.source),
                    &otext(&s.model),
                    &otext(&s.title),
                    &otext(&s.user_id),
                    &otext(&s.chat_id),
                    &otext(&s.parent_session_id),
                    &s.started_at,
                    &s.ended_at,
                    &otext(&s.end_reason),
                    &otext(&s.extra),
                    &c.input_tokens,
                    &c.output_tokens,
                    &c.cache_read_tokens,
                    &c.cache_write_tokens,
                    &c.reasoning_tokens,
                    &c.api_call_count,
                    &c.estimated_cost_usd,
                    &c.actual_cost_usd,
                ],
            )
            .ctx(self.target, "write a folded session row")?;
        Ok(())
    }

    fn session(&mut self, p: &SessionPatch, lane: &str, lsn: u64) -> Result<(), PgError> {
        let id = text(&p.id).into_owned();
        if self.before_deletion(&id, p.op)? {
            return Ok(());
        }
        if self.remember(&id, p.op, lane, lsn, &Entry::Session(p.clone()))? {
            self.stats.sessions += 1;
            return self.refold(&id);
        }
        // The patch is folded here with the same function reads use (`SessionPatch::apply_to`),
        // on the row locked for this transaction; SQLite does the same in SQL.
        let id = text(&p.id).into_owned();
        let old = self
            .tx
            .query_opt(
                "SELECT source, model, title, user_id, chat_id, parent_session_id, started_at, ended_at, \
                 end_reason, extra FROM tidelog.sessions WHERE store = $1 AND id = $2 FOR UPDATE",
                &[&self.store, &id],
            )
            .ctx(self.target, "read a session")?
            .map(|r| Session {
                id: p.id.clone(),
                source: r.get(0),
                model: r.get(1),
                title: r.get(2),
                user_id: r.get(3),
                chat_id: r.get(4),
                parent_session_id: r.get(5),
                started_at: r.get(6),
                ended_at: r.get(7),
                end_reason: r.get(8),
                extra: r.get(9),
                ..Session::default()
            });
        let s = p.apply_to(old);
        self.tx
            .execute(
                "INSERT INTO tidelog.sessions (store, id, source, model, title, user_id, chat_id, parent_session_id, \
                 started_at, ended_at, end_reason, extra) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                 ON CONFLICT (store, id) DO UPDATE SET source = excluded.source, model = excluded.model, \
                 title = excluded.title, user_id = excluded.user_id, chat_id = excluded.chat_id, \
                 parent_session_id = excluded.parent_session_id, started_at = excluded.started_at, \
                 ended_at = excluded.ended_at, end_reason = excluded.end_reason, extra = excluded.extra",
                &[
                    &self.store,
                    &id,
                    &otext(&s.source),
                    &otext(&s.model),
                    &otext(&s.title),
                    &otext(&s.user_id),
                    &otext(&s.chat_id),
                    &otext(&s.parent_session_id),
                    &s.started_at,
                    &s.ended_at,
                    &otext(&s.end_reason),
                    &otext(&s.extra),
                ],
            )
            .ctx(self.target, "apply a session patch")?;
        self.stats.sessions += 1;
        Ok(())
    }

    fn update(&mut self, u: &MessageUpdate) -> Result<(), PgError> {
        self.stats.operations += 1;
        let row = self
            .tx
            .query_opt(
                &format!("SELECT {MESSAGE_COLS} FROM tidelog.messages m WHERE m.store = $1 AND m.rid = $2 FOR UPDATE"),
                &[&self.store, &u.num],
            )
            .ctx(self.target, "read a message to update")?;
        // Not here: deleted, or not applied yet (docs/design.md "History operations").
        let Some(row) = row else { return Ok(()) };
        let (mut m, _) = message_from_row(&row, 0).ctx(self.target, "read a message to update")?;
        // An update edits only the message with its id in the session it names.
        if !u.edits(&m.session_id, m.num) {
            return Ok(());
        }
        u.apply_to(&mut m);
        let body = self.body(&m);
        self.tx
            .execute(
                "UPDATE tidelog.messages SET content = $3, api_content = $4, platform_message_id = $5, \
                 tool_calls = $6, finish_reason = $7, token_count = $8, extra = $9, body = $10 \
                 WHERE store = $1 AND rid = $2",
                &[
                    &self.store,
                    &u.num,
                    &bytes(&m.content),
                    &bytes(&m.api_content),
                    &otext(&m.platform_message_id),
                    &bytes(&m.tool_calls),
                    &otext(&m.finish_reason),
                    &m.token_count,
                    &bytes(&m.extra),
                    &body,
                ],
            )
            .ctx(self.target, "update a message")?;
        Ok(())
    }

    fn rewrite(&mut self, r: &Rewrite, lane: &str, lsn: i64) -> Result<(), PgError> {
        self.stats.operations += 1;
        let mode = r.rewrite_mode();
        let sid = text(&r.session_id).into_owned();
        let kept = r.kept_nums();
        self.tx
            .execute(
                "INSERT INTO tidelog.session_ops (store, session_id, op, mode, active_only, kept) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                &[&self.store, &sid, &r.op, &mode_code(mode), &r.active_only, &kept],
            )
            .ctx(self.target, "record a rewrite")?;
        // The rows already here get the state the one fold rule gives (SQL generated from it).
        let filter = format!(
            "store = $1 AND session_id = $2 AND {}",
            RewriteMode::sql_covered("$3", r.active_only, "true", &kept)
        );
        let n = match mode.sql_set("true", "false") {
            None => {
                self.tx.execute(&format!("DELETE FROM tidelog.messages WHERE {filter}"), &[&self.store, &sid, &r.op])
            }
            Some(set) => self
                .tx
                .execute(&format!("UPDATE tidelog.messages SET {set} WHERE {filter}"), &[&self.store, &sid, &r.op]),
        }
        .ctx(self.target, "rewrite a session's history")?;
        if mode == RewriteMode::Delete {
            self.stats.erased_messages += n;
        }
        // A rewrite is a write to the session (it exists from then on, even if it cleared every
        // message) and may have removed the message the row's base came from.
        if !self.before_deletion(&sid, Some(r.op))? {
            let marker = Rewrite { messages: Vec::new(), ..r.clone() };
            self.remember(&sid, Some(r.op), lane, u64::try_from(lsn).unwrap_or(0), &Entry::Rewrite(marker))?;
            self.refold(&sid)?;
        }
        self.run.extend(r.messages.iter().map(|m| (m.clone(), lane.to_string(), lsn)));
        self.flush()
    }

    fn delete(&mut self, d: &DeleteSessions) -> Result<(), PgError> {
        self.stats.operations += 1;
        for s in &d.sessions {
            let sid = text(&s.id).into_owned();
            let t = self.target;
            self.stats.erased_messages += self
                .tx
                .execute(
                    &format!(
                        "DELETE FROM tidelog.messages WHERE store = $1 AND session_id = $2 AND {}",
                        RewriteMode::sql_covered("$3", false, "true", &[])
                    ),
                    &[&self.store, &sid, &d.op],
                )
                .ctx(t, "delete messages")?;
            self.tx
                .execute(
                    "DELETE FROM tidelog.session_ops WHERE store = $1 AND session_id = $2 AND op < $3",
                    &[&self.store, &sid, &d.op],
                )
                .ctx(t, "forget a deleted session's rewrites")?;
            self.tx
                .execute(
                    "INSERT INTO tidelog.deleted_sessions (store, id, op) VALUES ($1, $2, $3) \
                     ON CONFLICT (store, id) DO UPDATE SET op = greatest(deleted_sessions.op, excluded.op)",
                    &[&self.store, &sid, &d.op],
                )
                .ctx(t, "record a deletion")?;
            self.tx
                .execute(
                    "DELETE FROM tidelog.session_entries WHERE store = $1 AND session_id = $2 AND op < $3",
                    &[&self.store, &sid, &d.op],
                )
                .ctx(t, "forget a deleted session's patches")?;
            // Nothing written before the deletion survives in the row.
            self.refold(&sid)?;
        }
        Ok(())
    }

    fn counters(&mut self, c: &CounterDelta, lane: &str, lsn: u64) -> Result<(), PgError> {
        self.stats.operations += 1;
        let sid = text(&c.session_id).into_owned();
        if self.before_deletion(&sid, c.op)? {
            return Ok(());
        }
        // Additive: order does not matter, only which deletion covers it.
        self.remember(&sid, c.op, lane, lsn, &Entry::Counters(c.clone()))?;
        self.tx
            .execute(
                "INSERT INTO tidelog.sessions AS s (store, id, input_tokens, output_tokens, cache_read_tokens, \
                 cache_write_tokens, reasoning_tokens, api_call_count, estimated_cost_usd, actual_cost_usd) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (store, id) DO UPDATE SET \
                 input_tokens = s.input_tokens + excluded.input_tokens, \
                 output_tokens = s.output_tokens + excluded.output_tokens, \
                 cache_read_tokens = s.cache_read_tokens + excluded.cache_read_tokens, \
                 cache_write_tokens = s.cache_write_tokens + excluded.cache_write_tokens, \
                 reasoning_tokens = s.reasoning_tokens + excluded.reasoning_tokens, \
                 api_call_count = s.api_call_count + excluded.api_call_count, \
                 estimated_cost_usd = s.estimated_cost_usd + excluded.estimated_cost_usd, \
                 actual_cost_usd = s.actual_cost_usd + excluded.actual_cost_usd",
                &[
                    &self.store,
                    &text(&c.session_id).into_owned(),
                    &c.input_tokens,
                    &c.output_tokens,
                    &c.cache_read_tokens,
                    &c.cache_write_tokens,
                    &c.reasoning_tokens,
                    &c.api_call_count,
                    &c.estimated_cost_usd,
                    &c.actual_cost_usd,
                ],
            )
            .ctx(self.target, "add session counters")?;
        Ok(())
    }

    fn meta(&mut self, m: &MetaSet) -> Result<(), PgError> {
        self.stats.operations += 1;
        let key = text(&m.key).into_owned();
        match &m.value {
            Some(v) => self.tx.execute(
                "INSERT INTO tidelog.user_meta (store, key, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (store, key) DO UPDATE SET value = excluded.value",
                &[&self.store, &key, &text(v).into_owned()],
            ),
            None => {
                self.tx.execute("DELETE FROM tidelog.user_meta WHERE store = $1 AND key = $2", &[&self.store, &key])
            }
        }
        .ctx(self.target, "set metadata")?;
        Ok(())
    }
}

/// Column arrays of a run of messages, for one `unnest` insert.
#[derive(Default)]
struct Columns {
    rid: Vec<i64>,
    id: Vec<String>,
    session_id: Vec<String>,
    role: Vec<String>,
    content: Vec<Option<Vec<u8>>>,
    tool_call_id: Vec<Option<String>>,
    tool_name: Vec<Option<String>>,
    tool_calls: Vec<Option<Vec<u8>>>,
    reasoning: Vec<Option<Vec<u8>>>,
    timestamp: Vec<Option<f64>>,
    token_count: Vec<Option<i64>>,
    finish_reason: Vec<Option<String>>,
    source: Vec<Option<String>>,
    extra: Vec<Option<Vec<u8>>>,
    platform_message_id: Vec<Option<String>>,
    api_content: Vec<Option<Vec<u8>>>,
    active: Vec<bool>,
    compacted: Vec<bool>,
    lane: Vec<String>,
    lsn: Vec<i64>,
    body: Vec<Option<String>>,
}
