//! The data model: messages, sessions, and the history operations the journal carries.
//!
//! Every struct that is written to the journal is declared with `record!`, whose field list
//! (name and number) is the one definition the entry encoding uses and that the SQLite columns
//! and the JSON mapping are checked against (`tests` in `entry`). Adding an optional field is
//! one line here (a new number, never a reused one) plus its tests; old records decode with the
//! field absent.

use crate::wire::record;

record! {
    /// One chat message, as a gateway records it.
    ///
    /// Fields that hold JSON (`tool_calls`, `extra`) are kept as JSON text so that nothing is
    /// lost and the journal encoding stays independent of any JSON library.
    #[derive(Debug, Clone, PartialEq, Default)]
    pub struct Message {
        /// Client id: any non-empty string, unique in the store (supplying one makes the append
        /// idempotent); a UUIDv7 when the store assigns it.
        1 => pub id: String,
        /// The session (conversation) this message belongs to.
        2 => pub session_id: String,
        /// `user`, `assistant`, `tool`, `system`, or any other string.
        3 => pub role: String,
        /// The text; absent for assistant messages that only call tools. May be megabytes, and
        /// may be multimodal JSON (Hermes marks it with the prefix `"\u{0}json:"`).
        4 => pub content: Option<String>,
        /// For a tool result: the id of the call it answers.
        5 => pub tool_call_id: Option<String>,
        /// For a tool result: the tool's name.
        6 => pub tool_name: Option<String>,
        /// For an assistant message: the tool calls, as JSON text (an array).
        7 => pub tool_calls: Option<String>,
        /// Model reasoning text, if any.
        8 => pub reasoning: Option<String>,
        /// Seconds since the Unix epoch (fractional).
        9 => pub timestamp: f64,
        /// Token count, if known.
        10 => pub token_count: Option<i64>,
        /// Why the model stopped (`stop`, `tool_calls`, ...).
        11 => pub finish_reason: Option<String>,
        /// Source platform: `cli`, `telegram`, `api_server`, `cron`, ...
        12 => pub source: Option<String>,
        /// Fields the model does not know, as a JSON object in text.
        13 => pub extra: Option<String>,
        /// The integer id: 63 bits, unique in the store, increasing in append order within a
        /// lane and roughly in time across lanes. Assigned by the store at append (0 before).
        14 => pub num: i64,
        /// The platform's own id of this message (Telegram, Slack, ...).
        15 => pub platform_message_id: Option<String>,
        /// The exact content sent to the model API, when it differs from `content`.
        16 => pub api_content: Option<String>,
    }
}

/// Whether a message is part of the live conversation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessageState {
    /// Part of the active conversation (false once archived or compacted away).
    pub active: bool,
    /// Replaced by a compaction summary; kept and searchable.
    pub compacted: bool,
}

impl MessageState {
    /// A message as appended.
    pub const ACTIVE: MessageState = MessageState { active: true, compacted: false };
}

/// A session (conversation) as stored: the fold of its patches, counters and messages.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct Session {
    /// Session id.
    pub id: String,
    /// Source platform.
    pub source: Option<String>,
    /// Model name.
    pub model: Option<String>,
    /// Title (unique among sessions when set through [`Store::set_title`](crate::Store::set_title)).
    pub title: Option<String>,
    /// Platform user id.
    pub user_id: Option<String>,
    /// Platform chat id.
    pub chat_id: Option<String>,
    /// The session this one was forked or continued from.
    pub parent_session_id: Option<String>,
    /// Seconds since the Unix epoch.
    pub started_at: Option<f64>,
    /// Seconds since the Unix epoch.
    pub ended_at: Option<f64>,
    /// Why it ended.
    pub end_reason: Option<String>,
    /// Other fields, as a JSON object in text.
    pub extra: Option<String>,
    /// Summed counters (tokens, API calls, cost).
    pub counters: Counters,
}

record! {
    /// A change to a session: every `Some` field is set, every `None` field is left as it was.
    /// Creating, updating and ending a session are all patches.
    #[derive(Debug, Clone, PartialEq, Default)]
    pub struct SessionPatch {
        /// Session id (required).
        1 => pub id: String,
        /// See [`Session::source`].
        2 => pub source: Option<String>,
        /// See [`Session::model`].
        3 => pub model: Option<String>,
        /// See [`Session::title`].
        4 => pub title: Option<String>,
        /// See [`Session::user_id`].
        5 => pub user_id: Option<String>,
        /// See [`Session::chat_id`].
        6 => pub chat_id: Option<String>,
        /// See [`Session::parent_session_id`].
        7 => pub parent_session_id: Option<String>,
        /// See [`Session::started_at`].
        8 => pub started_at: Option<f64>,
        /// See [`Session::ended_at`].
        9 => pub ended_at: Option<f64>,
        /// See [`Session::end_reason`].
        10 => pub end_reason: Option<String>,
        /// See [`Session::extra`]; merged like SQLite's `json_patch` (RFC 7396).
        11 => pub extra: Option<String>,
        /// Reopens an ended session: clears `ended_at` and `end_reason` before the fields above
        /// are set.
        12 => pub reopen: bool,
        /// Clears the title before the fields above are set.
        13 => pub clear_title: bool,
        /// Only fills fields that are still empty (an upsert that never overwrites what an
        /// earlier writer set).
        14 => pub fill_only: bool,
        /// Its position in the store's order, given by the store when it is written (`None`:
        /// written before positions existed). A deletion of the session covers the patches
        /// before it.
        15 => pub op: Option<i64>,
    }
}

impl SessionPatch {
    /// Applies this patch to a session (creating it from defaults when `base` is `None`).
    pub fn apply_to(&self, base: Option<Session>) -> Session {
        let mut s = base.unwrap_or_else(|| Session { id: self.id.clone(), ..Session::default() });
        if self.reopen {
            s.ended_at = None;
            s.end_reason = None;
        }
        if self.clear_title {
            s.title = None;
        }
        macro_rules! set {
            ($($f:ident),*) => { $(
                if let Some(v) = &self.$f && (!self.fill_only || s.$f.is_none()) {
                    s.$f = Some(v.clone());
                }
            )* };
        }
        set!(source, model, title, user_id, chat_id, parent_session_id, started_at, ended_at, end_reason);
        if let Some(new) = &self.extra {
            s.extra = Some(match (self.fill_only, s.extra.as_deref()) {
                (true, Some(old)) => merge_extra(Some(new), old),
                (_, old) => merge_extra(old, new),
            });
        }
        s
    }
}

/// One write that folds into a session's row (its patches, counter deltas and rewrites after its
/// latest deletion; see [`fold_session_row`]).
#[derive(Debug, Clone, Copy)]
pub enum SessionWrite<'a> {
    /// A patch.
    Patch(&'a SessionPatch),
    /// Counter deltas.
    Counters(&'a CounterDelta),
    /// A rewrite (the session exists from then on, even if it cleared every message).
    Rewrite,
}

/// **The one fold of a session's row** (docs/design.md "One order across processes"): from the
/// first message of the session still there after its latest deletion (`first`: its source and
/// timestamp give `source` and `started_at`), then every write after the deletion in position
/// order (`writes`; last writer wins by position). `None`: nothing follows the deletion, the
/// session does not exist. The SQLite index, reads of the journal tail and the PostgreSQL
/// remote index fold rows with it (SQLite and PostgreSQL when a write arrives out of order).
pub fn fold_session_row<'a>(
    id: &str,
    first: Option<(Option<String>, f64)>,
    writes: impl IntoIterator<Item = SessionWrite<'a>>,
) -> Option<Session> {
    let row =
        first.map(|(source, at)| Session { id: id.to_string(), source, started_at: Some(at), ..Session::default() });
    fold_session_writes(id, row, writes)
}

/// [`fold_session_row`] from a row already folded (`None`: none yet).
pub fn fold_session_writes<'a>(
    id: &str,
    mut row: Option<Session>,
    writes: impl IntoIterator<Item = SessionWrite<'a>>,
) -> Option<Session> {
    let bare = || Session { id: id.to_string(), ..Session::default() };
    for w in writes {
        row = Some(match w {
            SessionWrite::Patch(p) => p.apply_to(row),
            SessionWrite::Counters(c) => {
                let mut s = row.unwrap_or_else(bare);
                s.counters.add(c);
                s
            }
            SessionWrite::Rewrite => row.unwrap_or_else(bare),
        });
    }
    row
}

impl Session {
    /// What a message gives its session's row when it is not the session's first: the fields
    /// no patch set (`source`, `started_at`).
    pub fn fill_from_message(&mut self, m: &Message) {
        if self.source.is_none() {
            self.source.clone_from(&m.source);
        }
        if self.started_at.is_none() {
            self.started_at = Some(m.timestamp);
        }
    }
}

/// Summed session counters (tokens, API calls, cost).
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Counters {
    /// Prompt tokens.
    pub input_tokens: i64,
    /// Completion tokens.
    pub output_tokens: i64,
    /// Tokens read from the provider's prompt cache.
    pub cache_read_tokens: i64,
    /// Tokens written to the provider's prompt cache.
    pub cache_write_tokens: i64,
    /// Reasoning tokens.
    pub reasoning_tokens: i64,
    /// Model API calls.
    pub api_call_count: i64,
    /// Estimated cost in US dollars.
    pub estimated_cost_usd: f64,
    /// Billed cost in US dollars.
    pub actual_cost_usd: f64,
}

impl Counters {
    /// Adds the deltas of `d`.
    pub fn add(&mut self, d: &CounterDelta) {
        self.input_tokens = self.input_tokens.saturating_add(d.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(d.output_tokens);
        self.cache_read_tokens = self.cache_read_tokens.saturating_add(d.cache_read_tokens);
        self.cache_write_tokens = self.cache_write_tokens.saturating_add(d.cache_write_tokens);
        self.reasoning_tokens = self.reasoning_tokens.saturating_add(d.reasoning_tokens);
        self.api_call_count = self.api_call_count.saturating_add(d.api_call_count);
        self.estimated_cost_usd += d.estimated_cost_usd;
        self.actual_cost_usd += d.actual_cost_usd;
    }
}

record! {
    /// Counter deltas for one session: added to what it has (additive, so entries from several
    /// processes commute).
    #[derive(Debug, Clone, PartialEq, Default)]
    pub struct CounterDelta {
        /// The session.
        1 => pub session_id: String,
        /// See [`Counters::input_tokens`].
        2 => pub input_tokens: i64,
        /// See [`Counters::output_tokens`].
        3 => pub output_tokens: i64,
        /// See [`Counters::cache_read_tokens`].
        4 => pub cache_read_tokens: i64,
        /// See [`Counters::cache_write_tokens`].
        5 => pub cache_write_tokens: i64,
        /// See [`Counters::reasoning_tokens`].
        6 => pub reasoning_tokens: i64,
        /// See [`Counters::api_call_count`].
        7 => pub api_call_count: i64,
        /// See [`Counters::estimated_cost_usd`].
        8 => pub estimated_cost_usd: f64,
        /// See [`Counters::actual_cost_usd`].
        9 => pub actual_cost_usd: f64,
        /// Its position in the store's order, given by the store when it is written (`None`:
        /// written before positions existed). A deletion of the session covers the counters
        /// before it.
        10 => pub op: Option<i64>,
    }
}

record! {
    /// Changes fields of one message (identified by its integer id). `Some` fields are set;
    /// `extra` is merged (RFC 7396 merge patch).
    #[derive(Debug, Clone, PartialEq, Default)]
    pub struct MessageUpdate {
        /// The message's integer id ([`Message::num`]).
        1 => pub num: i64,
        /// Its session (so that reads of one session find the update without a lookup).
        2 => pub session_id: String,
        /// New text.
        3 => pub content: Option<String>,
        /// New API content.
        4 => pub api_content: Option<String>,
        /// New platform message id.
        5 => pub platform_message_id: Option<String>,
        /// New tool calls (JSON text).
        6 => pub tool_calls: Option<String>,
        /// New finish reason.
        7 => pub finish_reason: Option<String>,
        /// New token count.
        8 => pub token_count: Option<i64>,
        /// Merge patch for `extra` (reactions, display metadata, ...).
        9 => pub extra: Option<String>,
    }
}

impl MessageUpdate {
    /// Whether this update edits the message with integer id `num` of session `session_id`: an
    /// update names both, and applies only to the message that has that id *in that session*
    /// (the one fold rule: the same everywhere).
    pub fn edits(&self, session_id: &str, num: i64) -> bool {
        self.num == num && self.session_id == session_id
    }

    /// Applies this update to a message.
    pub fn apply_to(&self, m: &mut Message) {
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = &self.$f { m.$f = Some(v.clone()); } )* };
        }
        set!(content, api_content, platform_message_id, tool_calls, finish_reason, token_count);
        if let Some(p) = &self.extra {
            m.extra = Some(merge_extra(m.extra.as_deref(), p));
        }
    }
}

/// What a [`Rewrite`] does to the messages it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RewriteMode {
    /// Delete them: gone from reads and search, erased from disk in bounded time.
    #[default]
    Delete,
    /// Archive them: hidden from the conversation, kept, searchable when asked.
    Archive,
    /// Compact them: hidden from the conversation, marked compacted, still searchable.
    Compact,
}

impl RewriteMode {
    pub(crate) fn code(self) -> i64 {
        match self {
            RewriteMode::Delete => 0,
            RewriteMode::Archive => 1,
            RewriteMode::Compact => 2,
        }
    }

    pub(crate) fn from_code(c: i64) -> Option<RewriteMode> {
        match c {
            0 => Some(RewriteMode::Delete),
            1 => Some(RewriteMode::Archive),
            2 => Some(RewriteMode::Compact),
            _ => None,
        }
    }

    /// The SQL `SET` clause that gives a row covered by a rewrite of this mode its new state
    /// (the rows already stored; [`RewriteMode::apply`] for the rest), with the given literals
    /// for true and false; `None`: the rows are deleted. Generated from `apply`, which a unit test
    /// checks.
    #[doc(hidden)]
    pub fn sql_set(self, t: &str, f: &str) -> Option<String> {
        let after = |active: bool, compacted: bool| self.apply(MessageState { active, compacted }, false);
        let a = after(true, false)?;
        let lit = |v: bool| if v { t } else { f };
        // `compacted` either keeps its value or is set to one; `active` is set.
        let keeps = [false, true].into_iter().all(|c| after(true, c).map(|x| x.compacted) == Some(c));
        let compacted = if keeps { "compacted" } else { lit(a.compacted) };
        Some(format!("active = {}, compacted = {compacted}", lit(a.active)))
    }

    /// The SQL filter of the rows of one session a rewrite covers: integer id (column `rid`)
    /// below the op placeholder `op` ([`covers`]) and not one it `kept`, and with `active_only`
    /// only active rows.
    #[doc(hidden)]
    pub fn sql_covered(op: &str, active_only: bool, t: &str, kept: &[i64]) -> String {
        let only = if active_only { format!(" AND active = {t}") } else { String::new() };
        let kept = if kept.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = kept.iter().map(i64::to_string).collect();
            format!(" AND rid NOT IN ({})", list.join(", "))
        };
        format!("rid < {op}{only}{kept}")
    }

    /// The state of a message after this rewrite covered it; `None` if it is deleted.
    /// `active_only` rewrites leave messages that were already inactive as they were.
    pub fn apply(self, s: MessageState, active_only: bool) -> Option<MessageState> {
        if active_only && !s.active {
            return Some(s);
        }
        match self {
            RewriteMode::Delete => None,
            RewriteMode::Archive => Some(MessageState { active: false, compacted: s.compacted }),
            RewriteMode::Compact => Some(MessageState { active: false, compacted: true }),
        }
    }
}

/// The history operations of one session that decide the state of its messages: **the one
/// fold rule** (docs/design.md "One fold rule"). The SQLite index (when it applies an entry and
/// when a message reaches it late), reads of the unindexed journal tail, a rebuild, `verify`,
/// the erase pass and the PostgreSQL remote index all decide a message's state with
/// [`SessionHistory::state`]; the SQL that applies a rewrite to rows already stored is
/// generated from [`RewriteMode::sql_set`] and [`RewriteMode::sql_covered`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionHistory {
    /// Rewrites, sorted by op, each op once.
    rewrites: Vec<RewriteRule>,
    /// The op of the latest deletion of the session.
    deleted: Option<i64>,
}

/// One rewrite as the fold rule sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct RewriteRule {
    /// Its position: it covers the messages with a smaller integer id.
    pub op: i64,
    /// What it does to them.
    pub mode: RewriteMode,
    /// Only those still active.
    pub active_only: bool,
    /// Integer ids it does not cover: messages it skipped as duplicates ([`Rewrite::kept`]).
    pub kept: Vec<i64>,
}

impl SessionHistory {
    /// Records a rewrite of the session (any order; the same op twice counts once).
    pub fn add_rewrite(&mut self, op: i64, mode: RewriteMode, active_only: bool, kept: &[i64]) {
        if let Err(i) = self.rewrites.binary_search_by_key(&op, |r| r.op) {
            self.rewrites.insert(i, RewriteRule { op, mode, active_only, kept: kept.to_vec() });
        }
    }

    /// Records a deletion of the session (the latest one counts).
    pub fn add_deletion(&mut self, op: i64) {
        self.deleted = self.deleted.max(Some(op));
    }

    /// The rewrites, by op.
    pub fn rewrites(&self) -> &[RewriteRule] {
        &self.rewrites
    }

    /// The op of the latest deletion.
    pub fn deleted(&self) -> Option<i64> {
        self.deleted
    }

    /// The state of the session's message with integer id `num`; `None` if it is gone. A
    /// deletion whose op is above `num` removes it; otherwise it starts active and every rewrite
    /// whose op is above `num` is applied in op order ([`RewriteMode::apply`]).
    pub fn state(&self, num: i64) -> Option<MessageState> {
        if self.deleted.is_some_and(|d| covers(d, num)) {
            return None;
        }
        let mut s = Some(MessageState::ACTIVE);
        for r in &self.rewrites {
            if covers(r.op, num) && !r.kept.contains(&num) {
                s = s.and_then(|s| r.mode.apply(s, r.active_only));
            }
        }
        s
    }
}

/// Whether an operation at position `op` (a rewrite or deletion) covers the message with
/// integer id `num` of its session: it was written before the operation.
pub fn covers(op: i64, num: i64) -> bool {
    num < op
}

record! {
    /// Rewrites a session's history: every message of the session with an integer id below
    /// `op` is deleted, archived or compacted (see [`RewriteMode`]), then `messages` are added.
    /// Replace (/undo, /retry), clear and archive-and-compact are rewrites.
    #[derive(Debug, Clone, PartialEq, Default)]
    pub struct Rewrite {
        /// The session.
        1 => pub session_id: String,
        /// The operation's position in id order: messages with a smaller id are covered.
        2 => pub op: i64,
        /// [`RewriteMode`] code: 0 delete, 1 archive, 2 compact.
        3 => pub mode: i64,
        /// Only messages still active are covered.
        4 => pub active_only: bool,
        /// The messages that take their place (ids above `op`).
        5, repeated => pub messages: Vec<Message>,
        /// Messages of the session it does not cover although their ids are below `op`: those
        /// of `messages` it skipped because their client id was already stored (a retried
        /// rewrite never removes what its first attempt added).
        6, repeated => pub kept: Vec<MessageRef>,
    }
}

record! {
    /// A message's integer id inside another record.
    #[derive(Debug, Clone, PartialEq, Default)]
    pub struct MessageRef {
        /// [`Message::num`].
        1 => pub num: i64,
    }
}

impl Rewrite {
    /// The integer ids of [`Rewrite::kept`].
    pub fn kept_nums(&self) -> Vec<i64> {
        self.kept.iter().map(|k| k.num).collect()
    }

    /// The mode; an unknown code (from a newer writer) is refused at decode time.
    pub fn rewrite_mode(&self) -> RewriteMode {
        RewriteMode::from_code(self.mode).unwrap_or_default()
    }
}

record! {
    /// Deletes sessions with their messages (ids below `op`); the content is erased from disk
    /// within the configured time.
    #[derive(Debug, Clone, PartialEq, Default)]
    pub struct DeleteSessions {
        /// The operation's position in id order.
        1 => pub op: i64,
        /// The sessions, children included when the caller asked for them.
        2, repeated => pub sessions: Vec<SessionRef>,
    }
}

record! {
    /// A session id inside another record.
    #[derive(Debug, Clone, PartialEq, Default)]
    pub struct SessionRef {
        /// Session id.
        1 => pub id: String,
    }
}

record! {
    /// What is left of a record whose content was erased (a deletion covered it): the kind it
    /// had, nothing else. Reads and the compactor skip it.
    #[derive(Debug, Clone, PartialEq, Default)]
    pub struct Erased {
        /// The entry kind the record had.
        1 => pub kind: i64,
    }
}

record! {
    /// Sets (or with `value` absent, removes) a small key/value metadata entry of the store.
    #[derive(Debug, Clone, PartialEq, Default)]
    pub struct MetaSet {
        /// The key.
        1 => pub key: String,
        /// The value.
        2 => pub value: Option<String>,
    }
}

/// Merges two `extra` JSON objects (RFC 7396 merge patch, like SQLite's `json_patch`): keys of
/// `new` replace those of `old`, a `null` value removes a key (also when there is no `old`, or
/// it is not an object: the patch then applies to an empty object). If `new` is not a JSON
/// object, it replaces `old`.
pub fn merge_extra(old: Option<&str>, new: &str) -> String {
    use serde_json::Value;
    let Ok(Value::Object(patch)) = serde_json::from_str::<Value>(new) else {
        return new.to_string();
    };
    let base = match old.map(serde_json::from_str::<Value>) {
        Some(Ok(base @ Value::Object(_))) => base,
        _ => Value::Object(serde_json::Map::new()),
    };
    fn patch_into(target: Value, patch: serde_json::Map<String, Value>) -> Value {
        let mut obj = match target {
            Value::Object(o) => o,
            _ => serde_json::Map::new(),
        };
        for (k, v) in patch {
            match v {
                Value::Null => {
                    obj.remove(&k);
                }
                Value::Object(p) => {
                    let cur = obj.remove(&k).unwrap_or(Value::Null);
                    obj.insert(k, patch_into(cur, p));
                }
                other => {
                    obj.insert(k, other);
                }
            }
        }
        Value::Object(obj)
    }
    patch_into(base, patch).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SQL generated for rewrites gives every stored row the state `RewriteMode::apply` gives.
    #[test]
    fn rewrite_sql_agrees_with_the_fold() {
        let db = rusqlite::Connection::open_in_memory().unwrap();
        for mode in [RewriteMode::Delete, RewriteMode::Archive, RewriteMode::Compact] {
            for active_only in [false, true] {
                db.execute_batch(
                    "DROP TABLE IF EXISTS m; CREATE TABLE m (rid INTEGER, active INTEGER, compacted INTEGER); \
                     INSERT INTO m VALUES (1, 1, 0), (2, 1, 1), (3, 0, 0), (4, 0, 1), (9, 1, 0);",
                )
                .unwrap();
                let filter = RewriteMode::sql_covered("5", active_only, "1", &[2]);
                match mode.sql_set("1", "0") {
                    Some(set) => db.execute(&format!("UPDATE m SET {set} WHERE {filter}"), []).unwrap(),
                    None => db.execute(&format!("DELETE FROM m WHERE {filter}"), []).unwrap(),
                };
                let mut h = SessionHistory::default();
                h.add_rewrite(5, mode, active_only, &[2]);
                for (rid, active, compacted) in
                    [(1, true, false), (2, true, true), (3, false, false), (4, false, true), (9, true, false)]
                {
                    let got = db
                        .query_row("SELECT active, compacted FROM m WHERE rid = ?1", [rid], |r| {
                            Ok(MessageState { active: r.get(0)?, compacted: r.get(1)? })
                        })
                        .ok();
                    let mut want = Some(MessageState { active, compacted });
                    if covers(5, rid) && rid != 2 {
                        want = want.and_then(|s| mode.apply(s, active_only));
                    }
                    assert_eq!(got, want, "{mode:?} active_only={active_only} rid {rid}");
                }
                // From a fresh message, the fold gives the same as one application.
                assert_eq!(h.state(1), mode.apply(MessageState::ACTIVE, active_only));
                assert_eq!(h.state(9), Some(MessageState::ACTIVE));
                assert_eq!(h.state(2), Some(MessageState::ACTIVE));
            }
        }
    }

    #[test]
    fn session_patches_merge_extra_like_json_patch() {
        let a = SessionPatch {
            id: "s".into(),
            extra: Some(r#"{"system_prompt":"p","n":{"a":1}}"#.into()),
            ..Default::default()
        };
        let b = SessionPatch {
            id: "s".into(),
            extra: Some(r#"{"tools":[1],"n":{"b":2}}"#.into()),
            title: Some("t".into()),
            ..Default::default()
        };
        let s = b.apply_to(Some(a.apply_to(None)));
        let v: serde_json::Value = serde_json::from_str(s.extra.as_deref().unwrap()).unwrap();
        assert_eq!(v, serde_json::json!({"system_prompt":"p","tools":[1],"n":{"a":1,"b":2}}));
        assert_eq!(s.title.as_deref(), Some("t"));
        // Not an object: replaced.
        assert_eq!(merge_extra(Some("[1]"), r#"{"a":1}"#), r#"{"a":1}"#);
        // A null removes a key, also when there is nothing to merge into yet.
        assert_eq!(merge_extra(None, r#"{"a":null,"b":{"c":null,"d":1}}"#), r#"{"b":{"d":1}}"#);
        assert_eq!(merge_extra(Some(r#"{"a":1}"#), "[2]"), "[2]");
    }
}
