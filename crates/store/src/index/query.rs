//! Reading the index: messages, sessions and full-text search.

use std::collections::HashMap;

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row};

use super::schema::{MESSAGE_COL_COUNT, MESSAGE_COLS, MESSAGE_COLS_INLINE, SESSION_COLS};
use super::text::{
    SNIPPET_CONTEXT, fts_match_expr, head, like_pattern, match_snippet, past_prefix_snippet, past_prefix_words,
};
use super::{BodyAt, Ctx, Index, IndexError, Result, collect};
use crate::fts::{FtsQuery, Phrases, QuerySyntax, idf, is_blank};
use crate::model::{Counters, Message, MessageState, RewriteMode, RewriteRule, Session};

/// How many of the newest matches a relevance search ranks before it ranks them all (see
/// [`Index::search`]).
pub(super) const RANKED_MATCHES: usize = 1_000;

/// A session's messages with their states, texts kept only in the journal not read (`content`
/// `None`), and where those texts are, by integer id: [`Index::history_unread`].
pub(crate) type UnreadHistory = (Vec<(Message, MessageState)>, HashMap<i64, BodyAt>);

/// The most rows counted to see how densely the newest matches lie.
const DENSITY_ROWS: usize = 50_000;

/// The most rows of a phrase counted for its inverse document frequency in a relevance search
/// of several phrases (about 2.5 ms for a phrase in every message); a phrase in more rows has
/// its count estimated.
const IDF_COUNT_CAP: usize = 10_000;

#[cfg(test)]
thread_local! {
    /// How many relevance searches of this thread were answered without `bm25()` (tests tell
    /// the two ways apart with it where both give the same scores).
    pub(super) static RANKED_WITHOUT_BM25: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Search hits as integer ids and scores, in order.
type Ranked = Vec<(i64, f64)>;

/// What [`Index::ranked_phrases`] is asked: the FTS5 query, the id range, the filters
/// (SQL and parameters, as the other plans of a search use them) and the limit.
struct PhrasesSearch<'a> {
    fts: &'a str,
    range: (i64, i64),
    filters: &'a str,
    params: &'a [Value],
    limit: usize,
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
    /// Best FTS5 `bm25()` match first. Among more matches than about a thousand, the newest
    /// thousand are ranked first (see [`Index::search`]). [`QuerySyntax::Words`] queries made
    /// only of 1-2 character words have no ranking: newest first.
    #[default]
    Relevance,
    /// Most recently appended first (integer id order: time order for messages appended live;
    /// imported history is ordered by when it was imported).
    Newest,
    /// First appended first.
    Oldest,
}

/// A full-text search of message bodies (column `body`) and tool names (column `tool_name`).
///
/// The text is an FTS5 query by default ([`QuerySyntax::Fts5`], see [`FtsQuery`]), with the
/// results FTS5 gives on the index's trigram tokenizer: `hello world` finds messages containing
/// both substrings (case-insensitive), `"hello world"` the phrase, `a OR b`, `a NOT b`,
/// `NEAR(a b, 5)`, `tool_name:web`, `^start` as in FTS5; operators only in capitals; a phrase
/// of 1-2 characters matches nothing and is left out beside others (`go home` finds what
/// `home` finds); `NEAR` distances count trigram tokens (about characters: `NEAR(abcd xyz, 2)`
/// allows "abcd" + 4 characters + "xyz"); text that is not valid FTS5 (`what's up?`, `chat-send`) is an
/// [`Error::Query`](crate::Error::Query): quote it (`"chat-send"`) or use
/// [`sanitize_hermes_query`](crate::sanitize_hermes_query) or [`QuerySyntax::Words`], the
/// literal words of earlier versions.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchQuery {
    /// What to look for. Must not be empty (or only whitespace).
    pub text: String,
    /// How `text` is read. Default: [`QuerySyntax::Fts5`].
    pub syntax: QuerySyntax,
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
    /// Also search archived messages (compacted ones are always searched). Default: false.
    pub include_inactive: bool,
}

impl Default for SearchQuery {
    fn default() -> Self {
        SearchQuery {
            text: String::new(),
            syntax: QuerySyntax::Fts5,
            session_id: None,
            role: None,
            source: None,
            since: None,
            until: None,
            limit: 20,
            order: SearchOrder::Relevance,
            include_inactive: false,
        }
    }
}

impl SearchQuery {
    /// An FTS5 query for `text` with default filters and limit.
    pub fn new(text: impl Into<String>) -> Self {
        SearchQuery { text: text.into(), ..SearchQuery::default() }
    }

    /// A [`QuerySyntax::Words`] query (literal words) for `text` with default filters and
    /// limit.
    pub fn words(text: impl Into<String>) -> Self {
        SearchQuery { text: text.into(), syntax: QuerySyntax::Words, ..SearchQuery::default() }
    }
}

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    /// The whole message.
    pub message: Message,
    /// Whether it is active or archived/compacted.
    pub state: MessageState,
    /// About 64 characters around the match, matches wrapped in `[` `]`, cuts marked `…`.
    pub snippet: String,
    /// Relevance, higher is better (negated FTS5 `bm25()`); 0 for `LIKE` matches and for
    /// messages not indexed yet. Comparable within one search only. For a search of one
    /// phrase (one word), `bm25()` divided by the phrase's inverse document frequency, which is
    /// the same for every hit: the same order, and a large store ranks the newest matches
    /// without `bm25()`'s pass over every match. For several phrases where one is in more
    /// than 10,000 rows, that phrase's inverse document frequency is estimated (docs/design.md
    /// "Reads at scale"), so the score is close to `bm25()`'s, not equal.
    pub score: f64,
}

impl Index {
    /// True if a message with this id is indexed.
    pub fn contains_message(&self, id: &str) -> Result<bool> {
        self.conn
            .prepare_cached("SELECT 1 FROM messages WHERE id = ?1")
            .and_then(|mut st| st.exists([id]))
            .ctx("look up a message")
    }

    /// Where the indexed copy of a message came from: its lane and LSN.
    pub(crate) fn message_origin(&self, id: &str) -> Result<Option<(String, i64)>> {
        self.conn
            .prepare_cached("SELECT lane, lsn FROM messages WHERE id = ?1")
            .and_then(|mut st| st.query_row([id], |r| Ok((r.get(0)?, r.get(1)?))).optional())
            .ctx("look up a message")
    }

    /// The trigram index's row count and token total (all columns), as FTS5's `bm25()` reads
    /// them: its "averages" record (`messages_fts_data` row 1: the row count, then each
    /// column's token total, as SQLite varints). `None` if there is no such record.
    pub(super) fn fts_totals(&self) -> Result<Option<(u64, u64)>> {
        let block: Option<Vec<u8>> = self
            .conn
            .query_row("SELECT block FROM messages_fts_data WHERE id = 1", [], |r| r.get(0))
            .optional()
            .ctx("read the full-text index's averages")?;
        let Some(block) = block else { return Ok(None) };
        let mut at = 0;
        let mut next = || -> Option<u64> {
            let (v, n) = sqlite_varint(block.get(at..)?)?;
            at += n;
            Some(v)
        };
        let Some(rows) = next() else { return Ok(None) };
        let mut tokens = 0u64;
        for _ in crate::fts::INDEX_COLUMNS {
            let Some(t) = next() else { return Ok(None) };
            tokens = tokens.saturating_add(t);
        }
        Ok(Some((rows, tokens)))
    }

    /// How many rows hold `fts` (an FTS5 query), from its newest [`RANKED_MATCHES`] matches in
    /// `range`: all of them when there are fewer (exact: `true`), else as many as those are
    /// dense among the rows they are spread over (counted up to a cap), times `rows`.
    fn matches_estimate(&self, fts: &str, (lo, hi): (i64, i64), rows: u64) -> Result<(f64, bool)> {
        let newest: Vec<i64> = collect(
            &self.conn,
            &format!(
                "SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?1 AND rowid BETWEEN ?2 AND ?3 \
                 ORDER BY rowid DESC LIMIT {RANKED_MATCHES}"
            ),
            rusqlite::params![fts, lo, hi],
            |r| r.get(0),
        )
        .ctx("run a search")?;
        let oldest = match newest.last() {
            Some(&oldest) if newest.len() >= RANKED_MATCHES => oldest,
            _ => return Ok((newest.len() as f64, true)),
        };
        let spread: i64 = self
            .conn
            .query_row(
                &format!(
                    "SELECT count(*) FROM (SELECT 1 FROM messages WHERE rid BETWEEN ?1 AND ?2 LIMIT {DENSITY_ROWS})"
                ),
                rusqlite::params![oldest, hi],
                |r| r.get(0),
            )
            .ctx("run a search")?;
        Ok((newest.len() as f64 / spread.max(1) as f64 * rows as f64, false))
    }

    /// A relevance search for phrases side by side ranked without `bm25()`'s pass over every
    /// row that holds each phrase (docs/design.md "Reads at scale"): the newest
    /// [`RANKED_MATCHES`] matches in `range`, filtered, by FTS5's formula. One phrase: without
    /// its IDF (the same for every row). Several: each phrase's IDF over the whole index,
    /// from the number of rows that hold it, counted where that is cheap (fewer than about
    /// [`IndexOptions::one_phrase_min_matches`](super::IndexOptions::one_phrase_min_matches)),
    /// estimated from how densely its newest matches lie where it is not. `None` where `bm25()`
    /// is the faster (no phrase that common) or the only way (a text that cannot be read:
    /// `bm25()` reads none); with the hits, whether the matches ranked were all those in
    /// `range` (then fewer hits than asked need no second pass over every match).
    fn ranked_phrases(&self, phrases: &Phrases, search: &PhrasesSearch<'_>) -> Result<Option<(Ranked, bool)>> {
        let Some((rows, tokens)) = self.fts_totals()?.filter(|(rows, _)| *rows > 0) else { return Ok(None) };
        let (lo, hi) = search.range;
        let common = self.opts.one_phrase_min_matches as f64;
        let (n, every) = self.matches_estimate(search.fts, search.range, rows)?;
        let idfs: Vec<f64> = if phrases.len() == 1 {
            if n == 0.0 || n < common {
                return Ok(None);
            }
            vec![1.0]
        } else {
            // Each phrase's rows, counted up to a cap (FTS5 stops there): exact below it, the
            // density of its newest matches (at least the cap) above. A phrase whose newest
            // matches are dense may still be rare (all of them recent): only a count tells.
            let cap = self.opts.one_phrase_min_matches.min(IDF_COUNT_CAP);
            let mut found = Vec::with_capacity(phrases.len());
            for i in 0..phrases.len() {
                let counted: i64 = self
                    .conn
                    .query_row(
                        "SELECT count(*) FROM (SELECT 1 FROM messages_fts WHERE messages_fts MATCH ?1 LIMIT ?2)",
                        rusqlite::params![phrases.query(i), i64::try_from(cap).unwrap_or(i64::MAX)],
                        |r| r.get(0),
                    )
                    .ctx("run a search")?;
                let counted = counted as f64;
                found.push(if counted < cap as f64 {
                    counted
                } else {
                    let (estimate, _) = self.matches_estimate(phrases.query(i), (i64::MIN, i64::MAX), rows)?;
                    estimate.max(cap as f64)
                });
            }
            if found.iter().all(|&n| n < common) {
                return Ok(None);
            }
            found.into_iter().map(|n| idf(rows as f64, n)).collect()
        };
        let average = tokens as f64 / rows as f64;
        let mut params = vec![Value::Text(search.fts.to_string()), Value::Integer(lo), Value::Integer(hi)];
        params.extend(search.params.iter().cloned());
        let sql = format!(
            "SELECT m.rid, s.body, s.tool_name FROM (SELECT rowid AS rid FROM messages_fts \
             WHERE messages_fts MATCH ? AND rowid BETWEEN ? AND ? ORDER BY rowid DESC LIMIT {RANKED_MATCHES}) f \
             JOIN messages m ON m.rid = f.rid JOIN fts_source s ON s.rid = m.rid WHERE 1{}",
            search.filters
        );
        let weighed = collect(&self.conn, &sql, rusqlite::params_from_iter(params), |r| {
            let body: Option<String> = r.get(1)?;
            let tool: Option<String> = r.get(2)?;
            Ok((r.get::<_, i64>(0)?, phrases.weight(&[body.as_deref(), tool.as_deref()], average, &idfs)))
        });
        let mut v = match weighed {
            Ok(v) => v,
            Err(e) if crate::error::index::is_unreadable_text(&e) => return Ok(None),
            Err(e) => return Err(e).ctx("run a search"),
        };
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(search.limit);
        Ok(Some((v, every)))
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

    /// The active messages of a session, by integer id (the store's order).
    pub fn messages(&self, session_id: &str) -> Result<Vec<Message>> {
        let sql =
            format!("SELECT {MESSAGE_COLS} FROM messages m WHERE m.session_id = ?1 AND m.active = 1 ORDER BY m.rid");
        let rows = collect(&self.conn, &sql, [session_id], message_from_row).ctx("read messages")?;
        Ok(rows.into_iter().map(|(m, _)| m).collect())
    }

    /// The newest `limit` active messages (of one session, or of the store), newest first (by
    /// integer id: the primary key, or the (session, id) index; bounded by `limit`).
    pub fn latest(&self, session_id: Option<&str>, limit: usize) -> Result<Vec<(Message, MessageState)>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        match session_id {
            Some(s) => collect(
                &self.conn,
                &format!(
                    "SELECT {MESSAGE_COLS} FROM messages m WHERE m.session_id = ?1 AND m.active = 1 \
                     ORDER BY m.rid DESC LIMIT ?2"
                ),
                rusqlite::params![s, limit],
                message_from_row,
            ),
            None => collect(
                &self.conn,
                &format!("SELECT {MESSAGE_COLS} FROM messages m WHERE m.active = 1 ORDER BY m.rid DESC LIMIT ?1"),
                [limit],
                message_from_row,
            ),
        }
        .ctx("read the latest messages")
    }

    /// Active messages with an integer id above `after` (of one session, or of the store), by id,
    /// at most `limit` (a primary-key range).
    pub fn after(&self, after: i64, session_id: Option<&str>, limit: usize) -> Result<Vec<(Message, MessageState)>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        collect(
            &self.conn,
            &format!(
                // Written as a range of the (session, id) index when a session is given.
                "SELECT {MESSAGE_COLS} FROM messages m WHERE m.rid > ?1 AND {} \
                 AND m.active = 1 ORDER BY m.rid LIMIT ?3",
                if session_id.is_some() { "m.session_id = ?2" } else { "?2 IS NULL" }
            ),
            rusqlite::params![after, session_id, limit],
            message_from_row,
        )
        .ctx("read messages after an id")
    }

    /// Calls `f` with every active message (of one session, at or after a time) by timestamp,
    /// then id, streaming (constant memory); stops when `f` returns `false`.
    pub fn for_each_message(
        &self,
        session_id: Option<&str>,
        since: Option<f64>,
        f: &mut dyn FnMut(Message) -> bool,
    ) -> Result<()> {
        // The (session, timestamp, rid) and (timestamp) indexes give this order without sorting.
        // A time bound is a range of those indexes only if written as one: `?2 IS NULL OR ...`
        // made every export --since walk the whole timestamp index (50 ms at 1M messages).
        let by_time = if self.old_view { "" } else { "INDEXED BY messages_timestamp" };
        let from = if since.is_some() { "m.timestamp >= ?2" } else { "?2 IS NULL" };
        let sql = match session_id {
            Some(_) => format!(
                "SELECT {MESSAGE_COLS} FROM messages m WHERE m.session_id = ?1 \
                 AND {from} AND m.active = 1 ORDER BY m.timestamp, m.rid"
            ),
            None => format!(
                "SELECT {MESSAGE_COLS} FROM messages m {by_time} WHERE ?1 IS NULL \
                 AND {from} AND m.active = 1 ORDER BY m.timestamp, m.rid"
            ),
        };
        let mut st = self.conn.prepare_cached(&sql).ctx("prepare an export")?;
        let mut rows = st.query(rusqlite::params![session_id, since]).ctx("run an export")?;
        while let Some(r) = rows.next().ctx("read an export row")? {
            let (m, _) = message_from_row(r).ctx("read an export row")?;
            if !f(m) {
                break;
            }
        }
        Ok(())
    }

    /// Every message of a session with its state (archived and compacted ones included), by
    /// integer id.
    pub fn history(&self, session_id: &str) -> Result<Vec<(Message, MessageState)>> {
        let sql = format!("SELECT {MESSAGE_COLS} FROM messages m WHERE m.session_id = ?1 ORDER BY m.rid");
        collect(&self.conn, &sql, [session_id], message_from_row).ctx("read a session's history")
    }

    /// [`Index::history`] without reading the texts kept only in the journal: those messages
    /// come with `content` `None`, and their records' places by integer id, for a reader that
    /// reads only the texts it returns ([`super::read_text`]).
    pub(crate) fn history_unread(&self, session_id: &str) -> Result<UnreadHistory> {
        let sql = format!(
            "SELECT {MESSAGE_COLS_INLINE}, m.body_lane, m.body_seg, m.body_off, m.body_lsn FROM messages m \
             WHERE m.session_id = ?1 ORDER BY m.rid"
        );
        let rows = collect(&self.conn, &sql, [session_id], |r| {
            let (m, st) = message_from_row(r)?;
            Ok((m, st, BodyAt::from_row(r, MESSAGE_COL_COUNT)?))
        })
        .ctx("read a session's history")?;
        let mut bodies = HashMap::new();
        let items = rows
            .into_iter()
            .map(|(m, st, at)| {
                if let Some(at) = at {
                    bodies.insert(m.num, at);
                }
                (m, st)
            })
            .collect();
        Ok((items, bodies))
    }

    /// One message by integer id.
    pub fn message_by_num(&self, num: i64) -> Result<Option<(Message, MessageState)>> {
        self.conn
            .prepare_cached(&format!("SELECT {MESSAGE_COLS} FROM messages m WHERE m.rid = ?1"))
            .and_then(|mut st| st.query_row([num], message_from_row).optional())
            .ctx("read a message")
    }

    /// The largest integer id indexed from `lane` (0 if none).
    pub fn max_num_of_lane(&self, lane: &str) -> Result<i64> {
        self.conn
            .query_row("SELECT coalesce(max(rid), 0) FROM messages WHERE lane = ?1", [lane], |r| r.get(0))
            .ctx("read the largest id of a lane")
    }

    /// The largest position of the store's order the index holds: message ids and the ops of
    /// history operations (the floor of the shared sequence when a store is first opened).
    pub fn max_position(&self) -> Result<i64> {
        self.conn
            .query_row(
                "SELECT max((SELECT coalesce(max(rid), 0) FROM messages), \
                            (SELECT coalesce(max(op), 0) FROM session_ops), \
                            (SELECT coalesce(max(op), 0) FROM deleted_sessions))",
                [],
                |r| r.get(0),
            )
            .ctx("read the largest position")
    }

    /// What the index holds of a session written after position `op` (for a deletion at `op`
    /// that is not indexed yet): its first message's id, source and timestamp, and its kept
    /// patches and counters after `op`, in order.
    /// `None` for a version 2 index not upgraded yet (read-only opens read it as it is).
    pub(crate) fn session_after(&self, session_id: &str, op: i64) -> Result<Option<SessionAfter>> {
        let kept: bool = self
            .conn
            .prepare_cached("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'session_entries'")
            .and_then(|mut st| st.query_row([], |r| r.get(0)))
            .ctx("read the schema")?;
        if !kept {
            return Ok(None);
        }
        let first = self
            .conn
            .prepare_cached(
                "SELECT rid, source, timestamp FROM messages WHERE session_id = ?1 AND rid > ?2 ORDER BY rid LIMIT 1",
            )
            .and_then(|mut st| {
                // A NULL time (a NaN from before every door validated times) reads as NaN.
                st.query_row(rusqlite::params![session_id, op], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get::<_, Option<f64>>(2)?.unwrap_or(f64::NAN)))
                })
                .optional()
            })
            .ctx("read a session's first message after a deletion")?;
        let blobs: Vec<(i64, Vec<u8>)> = collect(
            &self.conn,
            "SELECT op, entry FROM session_entries WHERE session_id = ?1 AND op > ?2 ORDER BY op",
            rusqlite::params![session_id, op],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .ctx("read a session's writes after a deletion")?;
        Ok(Some((first, blobs.iter().filter_map(|(k, b)| Some((*k, crate::entry::decode(b).ok()?))).collect())))
    }

    /// The rewrites recorded for a session, by op (with what each kept: none in an index from
    /// before schema 4 that a read-only open reads as it is).
    pub fn session_ops(&self, session_id: &str) -> Result<Vec<RewriteRule>> {
        rewrite_rules(&self.conn, session_id)
    }

    /// The op of the latest deletion of a session, if it was ever deleted.
    pub fn deleted_op(&self, session_id: &str) -> Result<Option<i64>> {
        self.conn
            .prepare_cached("SELECT op FROM deleted_sessions WHERE id = ?1")
            .and_then(|mut st| st.query_row([session_id], |r| r.get(0)).optional())
            .ctx("read a deletion")
    }

    /// A metadata value.
    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        self.conn
            .prepare_cached("SELECT value FROM user_meta WHERE key = ?1")
            .and_then(|mut st| st.query_row([key], |r| r.get(0)).optional())
            .ctx("read metadata")
    }

    /// Every metadata key and value.
    pub fn all_meta(&self) -> Result<Vec<(String, String)>> {
        collect(&self.conn, "SELECT key, value FROM user_meta ORDER BY key", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .ctx("read metadata")
    }

    /// Active messages per session (for listings).
    pub fn message_counts(&self) -> Result<Vec<(String, u64)>> {
        let rows = collect(
            &self.conn,
            "SELECT session_id, count(*) FROM messages WHERE active = 1 GROUP BY session_id",
            [],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
        )
        .ctx("count messages")?;
        Ok(rows.into_iter().map(|(s, n)| (s, u64::try_from(n).unwrap_or(0))).collect())
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
    /// not "everything"), [`IndexError::Query`] for an FTS5 query FTS5 refuses.
    pub fn search(&self, q: &SearchQuery) -> Result<Vec<SearchHit>> {
        let parsed = match q.syntax {
            QuerySyntax::Fts5 if is_blank(&q.text) => return Err(IndexError::EmptyQuery),
            QuerySyntax::Fts5 => Some(FtsQuery::parse(&q.text)?),
            QuerySyntax::Words => None,
        };
        self.search_parsed(q, parsed.as_ref())
    }

    /// [`Index::search`] with the query already parsed (`Some` for [`QuerySyntax::Fts5`]): the
    /// index runs its canonical rendering.
    pub(crate) fn search_parsed(&self, q: &SearchQuery, parsed: Option<&FtsQuery>) -> Result<Vec<SearchHit>> {
        let (match_expr, short): (Option<String>, Vec<&str>) = match parsed {
            Some(f) => (Some(f.to_string()), Vec::new()),
            None => {
                let words: Vec<&str> = q.text.split_whitespace().collect();
                if words.is_empty() {
                    return Err(IndexError::EmptyQuery);
                }
                let (long, short): (Vec<&str>, Vec<&str>) = words.iter().partition(|w| w.chars().count() >= 3);
                ((!long.is_empty()).then(|| fts_match_expr(&long)), short)
            }
        };
        let fts = match_expr.is_some();
        let match_expr = match_expr.unwrap_or_default();
        // Phase 1: which rows, in order; no snippet, no wide columns (docs/design.md "Reads at
        // scale"). The filters, shared by every plan below:
        let mut filters = String::new();
        let mut fparams: Vec<Value> = Vec::new();
        for w in &short {
            filters.push_str(" AND (s.body LIKE ? ESCAPE '\\' OR s.tool_name LIKE ? ESCAPE '\\')");
            let pattern = like_pattern(w);
            fparams.push(Value::Text(pattern.clone()));
            fparams.push(Value::Text(pattern));
        }
        if !q.include_inactive {
            filters.push_str(" AND (m.active = 1 OR m.compacted = 1)");
        }
        let mut filter = |clause: &str, v: Option<Value>| {
            if let Some(v) = v {
                filters.push_str(clause);
                fparams.push(v);
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
        let body_join = if short.is_empty() { "" } else { " JOIN fts_source s ON s.rid = m.rid" };
        // Newest and oldest first are by integer id: append order, which is time order for
        // messages appended live (imported history is ordered by when it was imported).
        let by_id = match q.order {
            SearchOrder::Oldest => " ORDER BY m.rid",
            _ => " ORDER BY m.rid DESC",
        };
        let limit = Value::Integer(i64::try_from(q.limit).unwrap_or(i64::MAX));
        let run = |sql: &str, head: Vec<Value>| -> Result<Vec<(i64, f64)>> {
            let mut params = head;
            params.extend(fparams.iter().cloned());
            params.push(limit.clone());
            collect(&self.conn, sql, rusqlite::params_from_iter(params), |r| Ok((r.get(0)?, r.get(1)?)))
                .ctx("run a search")
        };
        let m = Value::Text(match_expr.clone());
        // One session: its rows lie in a range of ids; FTS5 seeks its doclists to that range.
        let (lo, hi) = match &q.session_id {
            Some(sid) => self
                .conn
                .query_row(
                    "SELECT coalesce(min(rid), 0), coalesce(max(rid), -1) FROM messages WHERE session_id = ?1",
                    [sid],
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
                )
                .ctx("read a session's id range")?,
            None => (i64::MIN, i64::MAX),
        };
        let range = Value::Integer(lo);
        let range_hi = Value::Integer(hi);
        // A relevance search for phrases side by side may be ranked without bm25()'s pass (see
        // `ranked_phrases`). One phrase is scored as bm25 without its IDF, whichever way it is
        // ranked, so that scores have one scale; several are scored bm25 either way.
        let phrases = if fts && short.is_empty() && q.order == SearchOrder::Relevance {
            FtsQuery::parse(&match_expr).ok().as_ref().and_then(Phrases::of)
        } else {
            None
        };
        let one = phrases.as_ref().filter(|p| p.len() == 1);
        let picked = match (fts, q.order) {
            (false, order) => {
                let order = if order == SearchOrder::Relevance { " ORDER BY m.rid DESC" } else { by_id };
                run(
                    &format!(
                        "SELECT m.rid, 0.0 FROM messages m JOIN fts_source s ON s.rid = m.rid WHERE 1{filters}{order} LIMIT ?"
                    ),
                    vec![],
                )?
            }
            // FTS5 returns matches in id order and stops at the limit: cost follows the hits,
            // not the match set.
            (true, SearchOrder::Newest | SearchOrder::Oldest) => run(
                &format!(
                    // CROSS JOIN: FTS5 drives (in id order, from the range), never a per-row
                    // MATCH probe from the messages side (measured: ~2.7 ms a probe).
                    "SELECT m.rid, 0.0 FROM messages_fts CROSS JOIN messages m ON m.rid = messages_fts.rowid{body_join} \
                     WHERE messages_fts MATCH ? AND messages_fts.rowid BETWEEN ? AND ?{filters}{} LIMIT ?",
                    by_id.replace("m.rid", "messages_fts.rowid")
                ),
                vec![m.clone(), range.clone(), range_hi.clone()],
            )?,
            (true, SearchOrder::Relevance) => {
                // FTS5 ranks every match; a word in most messages has hundreds of thousands. Rank
                // the newest RANKED_MATCHES matches first; when that gives fewer than `limit`
                // hits (filters, or fewer matches), rank them all.
                let search = PhrasesSearch {
                    fts: &match_expr,
                    range: (lo, hi),
                    filters: &filters,
                    params: &fparams,
                    limit: q.limit,
                };
                let weighed = match &phrases {
                    Some(phrases) => self.ranked_phrases(phrases, &search)?,
                    None => None,
                };
                // `every`: the newest matches ranked were all there are in the range.
                #[cfg(test)]
                let without_bm25 = weighed.is_some();
                let (bounded, every) = match weighed {
                    Some(v) => v,
                    None => (
                        run(
                            &format!(
                                "SELECT m.rid, f.score FROM (SELECT rowid AS rid, -bm25(messages_fts) AS score FROM messages_fts \
                             WHERE messages_fts MATCH ? AND rowid BETWEEN ? AND ? ORDER BY rowid DESC LIMIT {RANKED_MATCHES}) f \
                             JOIN messages m ON m.rid = f.rid{body_join} WHERE 1{filters} ORDER BY f.score DESC, m.rid LIMIT ?"
                            ),
                            vec![m.clone(), range.clone(), range_hi.clone()],
                        )?,
                        false,
                    ),
                };
                if bounded.len() >= q.limit || every {
                    #[cfg(test)]
                    RANKED_WITHOUT_BM25.with(|n| n.set(n.get() + usize::from(without_bm25)));
                    bounded
                } else {
                    run(
                        &format!(
                            "SELECT m.rid, -bm25(messages_fts) FROM messages_fts CROSS JOIN messages m ON m.rid = messages_fts.rowid\
                             {body_join} WHERE messages_fts MATCH ? AND messages_fts.rowid BETWEEN ? AND ?{filters} \
                             ORDER BY rank, m.rid LIMIT ?"
                        ),
                        vec![m.clone(), range.clone(), range_hi.clone()],
                    )?
                }
            }
        };

        // Words past the part of a long tool output the trigram index holds: Hermes' word
        // index has every message whole, so a whole word anywhere is found (plain queries).
        let past = past_prefix_words(&q.text, parsed.is_some());
        let is_plain = past.is_some();
        let picked = if let Some((words, _)) = past.filter(|_| fts && picked.len() < q.limit) {
            let more = run(
                &format!(
                    "SELECT m.rid, 0.0 FROM messages_words CROSS JOIN messages m ON m.rid = messages_words.rowid{body_join} \
                     WHERE messages_words MATCH ? AND messages_words.rowid BETWEEN ? AND ? AND m.fts_len IS NOT NULL\
                     {filters}{} LIMIT ?",
                    by_id.replace("m.rid", "messages_words.rowid")
                ),
                vec![Value::Text(fts_match_expr(&words)), range.clone(), range_hi.clone()],
            )?;
            merge_hits(picked, more, q.order, q.limit)
        } else {
            picked
        };

        // Phase 2: the rows, their searchable text and a snippet, for the hits only.
        let mut row = self
            .conn
            .prepare_cached(&format!(
                "SELECT {MESSAGE_COLS}, s.body, s.tool_name FROM messages m JOIN fts_source s ON s.rid = m.rid \
                 WHERE m.rid = ?1"
            ))
            .ctx("prepare a hit read")?;
        let mut snip = self
            .conn
            .prepare_cached(&format!(
                "SELECT snippet(messages_fts, -1, '[', ']', '…', {SNIPPET_CONTEXT}) FROM messages_fts \
                 WHERE messages_fts MATCH ?1 AND rowid = ?2"
            ))
            .ctx("prepare a snippet")?;
        let average = match one {
            Some(_) => {
                self.fts_totals()?.filter(|(rows, _)| *rows > 0).map(|(rows, tokens)| tokens as f64 / rows as f64)
            }
            None => None,
        };
        let mut hits = Vec::with_capacity(picked.len());
        for (rid, mut score) in picked {
            let Some(((message, state), body, tool_name)) = row
                .query_row([rid], |r| {
                    Ok((
                        message_from_row(r)?,
                        r.get::<_, Option<String>>(MESSAGE_COL_COUNT)?,
                        r.get::<_, Option<String>>(MESSAGE_COL_COUNT + 1)?,
                    ))
                })
                .optional()
                .ctx("read a hit")?
            else {
                continue;
            };
            if let (Some(one), Some(average)) = (one, average)
                && score > 0.0
            {
                score = one.weight(&[body.as_deref(), tool_name.as_deref()], average, &[]);
            }
            let fts_snippet = if fts {
                snip.query_row(rusqlite::params![match_expr, rid], |r| r.get::<_, String>(0))
                    .optional()
                    .ctx("make a snippet")?
            } else {
                None
            };
            let snippet = fts_snippet.filter(|s| !s.is_empty()).unwrap_or_else(|| {
                let body = body.unwrap_or_default();
                if is_plain {
                    // Plain words (perhaps found past the trigram part): the whole text has them.
                    past_prefix_snippet(&body, tool_name.as_deref(), message.content.as_deref(), &q.text)
                } else {
                    let words = |t: &str| if parsed.is_none() { match_snippet(t, &q.text) } else { None };
                    words(&body)
                        .or_else(|| tool_name.and_then(|t| words(&t)))
                        .unwrap_or_else(|| head(&body, SNIPPET_CONTEXT))
                }
            });
            hits.push(SearchHit { message, state, snippet, score });
        }
        Ok(hits)
    }
}

/// The trigram index's hits and the word index's (`more`, none of them among the first: the
/// word index adds only rows the trigram index holds in part), in the order asked, at most
/// `limit`. By relevance the word index's come after (they matched outside the ranked text).
fn merge_hits(mut hits: Vec<(i64, f64)>, more: Vec<(i64, f64)>, order: SearchOrder, limit: usize) -> Vec<(i64, f64)> {
    let seen: std::collections::HashSet<i64> = hits.iter().map(|h| h.0).collect();
    hits.extend(more.into_iter().filter(|h| !seen.contains(&h.0)));
    match order {
        SearchOrder::Oldest => hits.sort_by_key(|h| h.0),
        SearchOrder::Newest => hits.sort_by_key(|h| std::cmp::Reverse(h.0)),
        SearchOrder::Relevance => {}
    }
    hits.truncate(limit);
    hits
}

pub(super) fn message_from_row(r: &Row<'_>) -> rusqlite::Result<(Message, MessageState)> {
    let m = Message {
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
        num: r.get(13)?,
        platform_message_id: r.get(14)?,
        api_content: r.get(15)?,
    };
    Ok((m, MessageState { active: r.get(16)?, compacted: r.get(17)? }))
}

pub(super) fn session_from_row(r: &Row<'_>) -> rusqlite::Result<Session> {
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
        counters: Counters {
            input_tokens: r.get(11)?,
            output_tokens: r.get(12)?,
            cache_read_tokens: r.get(13)?,
            cache_write_tokens: r.get(14)?,
            reasoning_tokens: r.get(15)?,
            api_call_count: r.get(16)?,
            estimated_cost_usd: r.get(17)?,
            actual_cost_usd: r.get(18)?,
        },
    })
}

/// What [`Index::session_after`] returns: the source and timestamp of the first message after
/// the position, and the positioned patches and counters after it.
pub(crate) type SessionAfter = (Option<(i64, Option<String>, f64)>, Vec<(i64, crate::entry::Entry)>);

/// The rewrites the index recorded for a session, by op, with the messages each kept.
pub(super) fn rewrite_rules(conn: &Connection, session_id: &str) -> Result<Vec<RewriteRule>> {
    let rows = collect(
        conn,
        "SELECT op, mode, active_only FROM session_ops WHERE session_id = ?1 ORDER BY op",
        [session_id],
        |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, bool>(2)?)),
    )
    .ctx("read rewrites")?;
    let has_kept: bool = conn
        .prepare_cached("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'rewrite_kept'")
        .and_then(|mut st| st.query_row([], |r| r.get(0)))
        .ctx("read the schema")?;
    let kept: Vec<(i64, i64)> = if has_kept {
        collect(conn, "SELECT op, num FROM rewrite_kept WHERE session_id = ?1", [session_id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .ctx("read what rewrites kept")?
    } else {
        Vec::new()
    };
    Ok(rows
        .into_iter()
        .map(|(op, m, active_only)| RewriteRule {
            op,
            mode: RewriteMode::from_code(m).unwrap_or_default(),
            active_only,
            kept: kept.iter().filter(|(o, _)| *o == op).map(|(_, n)| *n).collect(),
        })
        .collect())
}

/// A varint as SQLite (and FTS5) writes them: big-endian groups of 7 bits, the high bit set on
/// all but the last byte, the ninth byte whole. The value and its length.
fn sqlite_varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    for (i, &c) in b.iter().take(9).enumerate() {
        if i == 8 {
            return Some(((v << 8) | u64::from(c), 9));
        }
        v = (v << 7) | u64::from(c & 0x7f);
        if c & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}
