//! Hermes Agent's search (`hermes_state.SessionDB.search_messages`, release 0.19.0) on the index:
//! the same cleaning and routing ([`hermes_route`]), the same FTS5 tables (the word index
//! `messages_words`, tokenizer `unicode61`, over the text Hermes indexes; the trigram index), the
//! same filters, order (`bm25` rank, or time then rank) and snippets (`>>>`, `<<<`, `...`, 40
//! tokens), and the same substring fallback for short CJK words.

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension};

use super::Result;
use super::query::message_from_row;
use super::schema::{MESSAGE_COLS, TEXT};
use crate::error::index::Ctx as _;
use crate::fts::{HermesRoute, hermes_route};
use crate::model::{Message, MessageState};

/// What [`Index::search_hermes`](super::Index::search_hermes) is asked: `search_messages`'
/// arguments.
#[derive(Debug, Clone, Default)]
pub struct HermesSearch {
    /// The user's query, as given (cleaned and routed as Hermes does).
    pub query: String,
    /// Only sessions whose `source` is one of these.
    pub source_filter: Option<Vec<String>>,
    /// No sessions whose `source` is one of these.
    pub exclude_sources: Option<Vec<String>>,
    /// Only messages whose role is one of these (an empty list: any).
    pub role_filter: Option<Vec<String>>,
    /// `None`: relevance (`bm25`); `Some(true)`: newest first; `Some(false)`: oldest first
    /// (ties by relevance). The substring fallback is always newest first.
    pub newest_first: Option<bool>,
    /// Also rewound messages (archived ones are always searched).
    pub include_inactive: bool,
    /// At most this many hits...
    pub limit: usize,
    /// ...after skipping this many.
    pub offset: usize,
}

/// One hit of [`HermesSearch`].
#[derive(Debug, Clone, PartialEq)]
pub struct HermesHit {
    /// The message, with the changes of history operations.
    pub message: Message,
    /// Its state.
    pub state: MessageState,
    /// Hermes' snippet of it.
    pub snippet: String,
}

/// Runs `s` on a connection holding the index's tables (the index itself, or the in-memory copy
/// of the journal's tail that a store search builds). An FTS5 error on the word index means no
/// hits, on the trigram index the substring fallback: Hermes' handling of `OperationalError`.
pub(crate) fn search(conn: &Connection, s: &HermesSearch) -> Result<Vec<HermesHit>> {
    let (table, fts_query) = match hermes_route(&s.query) {
        HermesRoute::Empty => return Ok(Vec::new()),
        HermesRoute::Words(q) => ("messages_words", q),
        HermesRoute::Trigram(q) => ("messages_fts", q),
        HermesRoute::Substrings(tokens) => return substrings(conn, s, &tokens),
    };
    let mut params: Vec<Value> = vec![Value::Text(fts_query)];
    let mut filters = String::new();
    if !s.include_inactive {
        filters.push_str(" AND (m.active = 1 OR m.compacted = 1)");
    }
    push_filters(s, &mut filters, &mut params);
    let order = match s.newest_first {
        None => "rank",
        Some(true) => "m.timestamp DESC, rank",
        Some(false) => "m.timestamp ASC, rank",
    };
    params.push(Value::Integer(i64::try_from(s.limit).unwrap_or(i64::MAX)));
    params.push(Value::Integer(i64::try_from(s.offset).unwrap_or(i64::MAX)));
    // Two steps, as Hermes' one query gives them: which rows (ids only), then the rows and
    // their snippets for those alone. In one query SQLite computed every match's columns and
    // snippet (a text read from the journal and tokenized again) before sorting by time: 25 s
    // for the 20 newest of a word in each of 1,000,000 messages.
    let ids_sql = format!(
        "SELECT m.rid FROM {table} JOIN messages m ON m.rid = {table}.rowid JOIN sessions s ON s.id = m.session_id \
         WHERE {table} MATCH ?{filters} ORDER BY {order} LIMIT ? OFFSET ?"
    );
    let row_sql = format!(
        "SELECT {MESSAGE_COLS}, snippet({table}, 0, '>>>', '<<<', '...', 40) \
         FROM {table} JOIN messages m ON m.rid = {table}.rowid WHERE {table} MATCH ?1 AND {table}.rowid = ?2"
    );
    let run = || -> rusqlite::Result<Vec<HermesHit>> {
        let by_time = match s.newest_first {
            Some(newest) => by_time_bounded(conn, table, &filters, &params, newest, s.limit, s.offset)?,
            None => None,
        };
        let ids: Vec<i64> = match by_time {
            Some(ids) => ids,
            None => conn
                .prepare(&ids_sql)?
                .query_map(rusqlite::params_from_iter(params.iter()), |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?,
        };
        let mut row = conn.prepare(&row_sql)?;
        let mut hits = Vec::with_capacity(ids.len());
        for rid in ids {
            if let Some(h) = row.query_row(rusqlite::params![params[0], rid], hit_from_row).optional()? {
                hits.push(h);
            }
        }
        Ok(hits)
    };
    match run() {
        Ok(hits) if table == "messages_fts" => trigram_snippets(hits, &params),
        Ok(hits) => Ok(hits),
        // FTS5 refused the query (syntax, or a column filter it does not know).
        Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::Unknown => {
            if table == "messages_fts" {
                let tokens = fallback_tokens(&s.query);
                substrings(conn, s, &tokens)
            } else {
                Ok(Vec::new())
            }
        }
        Err(e) => Err(e).ctx("search like Hermes"),
    }
}

/// The most rows [`by_time_bounded`] looks at before it leaves the answer to the one query.
const BY_TIME_ROWS: usize = 20_000;

/// Hermes' order by time (`m.timestamp DESC, rank`, or `ASC`) without ranking every match:
/// the ids of hits `offset..offset + limit`, or `None` where only the one query can tell
/// (then it runs). `params` are the query's (`MATCH`, then the filters', then limit and
/// offset). Any `k = offset + limit` matches bound the answer: the `k` newest of all matches
/// are no older than the oldest of those `k` (the `k` newest by id are taken: for messages
/// appended live, id order is time order, so that bound is tight). So: the `k` newest matches
/// by id (FTS5 stops at the limit); every message at or after the oldest one's time (the
/// timestamp index); the matches among them (FTS5, in their id range); sorted by time. Where
/// two of the first `k + 1` share a timestamp, Hermes' order needs `rank` there, and where a
/// step would read more than [`BY_TIME_ROWS`] rows, this answers `None`: the one query.
fn by_time_bounded(
    conn: &Connection,
    table: &str,
    filters: &str,
    params: &[Value],
    newest: bool,
    limit: usize,
    offset: usize,
) -> rusqlite::Result<Option<Vec<i64>>> {
    let k = limit.saturating_add(offset);
    if k == 0 || k > BY_TIME_ROWS {
        return Ok(None);
    }
    // `params` minus the limit and offset: the MATCH, then the filters'.
    let Some((fts, filter_params)) = params.get(..params.len().saturating_sub(2)).and_then(<[Value]>::split_first)
    else {
        return Ok(None);
    };
    let dir = if newest { "DESC" } else { "ASC" };
    // NULL timestamps sort first in ascending order: not handled here.
    if !newest && conn.query_row("SELECT EXISTS (SELECT 1 FROM messages WHERE timestamp IS NULL)", [], |r| r.get(0))? {
        return Ok(None);
    }
    let matches = |range: Option<(i64, i64)>, cap: usize| -> rusqlite::Result<Vec<(i64, Option<f64>)>> {
        let (bound, order) = match range {
            Some(_) => (format!(" AND {table}.rowid BETWEEN ? AND ?"), String::new()),
            None => (String::new(), format!(" ORDER BY {table}.rowid {dir}")),
        };
        let sql = format!(
            "SELECT m.rid, m.timestamp FROM {table} CROSS JOIN messages m ON m.rid = {table}.rowid \
             JOIN sessions s ON s.id = m.session_id WHERE {table} MATCH ?{bound}{filters}{order} LIMIT ?"
        );
        let mut p = vec![fts.clone()];
        if let Some((lo, hi)) = range {
            p.extend([Value::Integer(lo), Value::Integer(hi)]);
        }
        p.extend(filter_params.iter().cloned());
        p.push(Value::Integer(i64::try_from(cap).unwrap_or(i64::MAX)));
        conn.prepare(&sql)?.query_map(rusqlite::params_from_iter(p), |r| Ok((r.get(0)?, r.get(1)?)))?.collect()
    };
    let first = matches(None, k)?;
    let mut found: Vec<(i64, f64)> = match first.iter().map(|&(rid, t)| t.map(|t| (rid, t))).collect() {
        Some(v) => v,
        None => return Ok(None),
    };
    if first.len() == k {
        let bound = found.iter().map(|h| h.1).fold(if newest { f64::INFINITY } else { f64::NEG_INFINITY }, |a, t| {
            if newest { a.min(t) } else { a.max(t) }
        });
        let sql = format!(
            "SELECT min(rid), max(rid), count(*) FROM (SELECT rid FROM messages WHERE timestamp {} ?1 LIMIT ?2)",
            if newest { ">=" } else { "<=" }
        );
        let cap = i64::try_from(BY_TIME_ROWS + 1).unwrap_or(i64::MAX);
        let (lo, hi, n): (Option<i64>, Option<i64>, i64) =
            conn.query_row(&sql, rusqlite::params![bound, cap], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        let (Some(lo), Some(hi)) = (lo, hi) else { return Ok(None) };
        if n > cap - 1 {
            return Ok(None);
        }
        let within = matches(Some((lo, hi)), BY_TIME_ROWS + 1)?;
        if within.len() > BY_TIME_ROWS {
            return Ok(None);
        }
        found = within
            .into_iter()
            .filter_map(|(rid, t)| t.map(|t| (rid, t)))
            .filter(|&(_, t)| if newest { t >= bound } else { t <= bound })
            .collect();
    }
    found.sort_by(|a, b| if newest { b.1.total_cmp(&a.1) } else { a.1.total_cmp(&b.1) });
    // Equal times among the first k + 1: Hermes orders those by rank.
    let head = &found[..found.len().min(k + 1)];
    if head.windows(2).any(|w| w[0].1 == w[1].1) {
        return Ok(None);
    }
    Ok(Some(found.into_iter().skip(offset).take(limit).map(|h| h.0).collect()))
}

/// Hermes' trigram index holds one text per message (content, tool name and tool calls joined
/// by spaces) where ours holds the body and the tool name apart: the snippets of trigram hits
/// are made again by FTS5 over Hermes' text of just those messages.
fn trigram_snippets(mut hits: Vec<HermesHit>, params: &[Value]) -> Result<Vec<HermesHit>> {
    let Some(Value::Text(query)) = params.first() else { return Ok(hits) };
    if hits.is_empty() {
        return Ok(hits);
    }
    let conn = Connection::open_in_memory().ctx("open an in-memory index")?;
    conn.execute_batch("CREATE VIRTUAL TABLE t USING fts5 (body, tokenize = 'trigram')")
        .ctx("create a snippet table")?;
    for (i, h) in hits.iter_mut().enumerate() {
        let m = &h.message;
        let body = format!(
            "{} {} {}",
            m.content.as_deref().unwrap_or_default(),
            m.tool_name.as_deref().unwrap_or_default(),
            m.tool_calls.as_deref().unwrap_or_default()
        );
        conn.execute("INSERT INTO t (rowid, body) VALUES (?1, ?2)", (i as i64, body)).ctx("copy a hit")?;
        let snippet: Option<String> = conn
            .query_row(
                "SELECT snippet(t, 0, '>>>', '<<<', '...', 40) FROM t WHERE t MATCH ?1 AND rowid = ?2",
                (query, i as i64),
                |r| r.get(0),
            )
            .ok();
        if let Some(s) = snippet {
            h.snippet = s;
        }
    }
    Ok(hits)
}

fn hit_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<HermesHit> {
    let (message, state) = message_from_row(r)?;
    let snippet: Option<String> = r.get(super::schema::MESSAGE_COL_COUNT)?;
    Ok(HermesHit { message, state, snippet: snippet.unwrap_or_default() })
}

/// The session and role filters of `search_messages`, as SQL and parameters.
fn push_filters(s: &HermesSearch, sql: &mut String, params: &mut Vec<Value>) {
    let mut list = |column: &str, negate: bool, values: &[String]| {
        let marks = vec!["?"; values.len()].join(",");
        sql.push_str(&format!(" AND {column} {}IN ({marks})", if negate { "NOT " } else { "" }));
        params.extend(values.iter().map(|v| Value::Text(v.clone())));
    };
    if let Some(v) = &s.source_filter {
        list("s.source", false, v);
    }
    if let Some(v) = &s.exclude_sources {
        list("s.source", true, v);
    }
    if let Some(v) = s.role_filter.as_ref().filter(|v| !v.is_empty()) {
        list("m.role", false, v);
    }
}

/// The words of a cleaned CJK query without its operators (the fallback's tokens when the
/// trigram index refused the query).
fn fallback_tokens(query: &str) -> Vec<String> {
    match hermes_route(query) {
        HermesRoute::Substrings(t) => t,
        _ => {
            let q = crate::fts::sanitize_hermes_query(query);
            let raw = q.trim().trim_matches('"').trim().to_string();
            let words: Vec<String> = raw
                .split_whitespace()
                .filter(|t| !matches!(t.to_uppercase().as_str(), "AND" | "OR" | "NOT"))
                .map(str::to_string)
                .collect();
            if words.is_empty() { vec![raw] } else { words }
        }
    }
}

/// Hermes' fallback for short CJK words: messages whose content, tool name or tool calls contain
/// any token (`LIKE`), newest first, every state; the snippet is 120 characters of the content
/// from 40 before the first token.
fn substrings(conn: &Connection, s: &HermesSearch, tokens: &[String]) -> Result<Vec<HermesHit>> {
    let first = tokens.first().cloned().unwrap_or_default();
    let mut params: Vec<Value> = vec![Value::Text(first)];
    let mut clauses = Vec::new();
    for t in tokens {
        let pattern = format!("%{}%", t.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
        clauses.push(format!(
            "(({TEXT}) LIKE ? ESCAPE '\\' OR m.tool_name LIKE ? ESCAPE '\\' OR m.tool_calls LIKE ? ESCAPE '\\')"
        ));
        params.extend(std::iter::repeat_n(Value::Text(pattern), 3));
    }
    let mut filters = String::new();
    push_filters(s, &mut filters, &mut params);
    params.push(Value::Integer(i64::try_from(s.limit).unwrap_or(i64::MAX)));
    params.push(Value::Integer(i64::try_from(s.offset).unwrap_or(i64::MAX)));
    let sql = format!(
        "SELECT {MESSAGE_COLS}, substr({TEXT}, max(1, instr({TEXT}, ?) - 40), 120) \
         FROM messages m JOIN sessions s ON s.id = m.session_id \
         WHERE ({}){filters} ORDER BY m.timestamp DESC LIMIT ? OFFSET ?",
        clauses.join(" OR ")
    );
    let mut st = conn.prepare(&sql).ctx("prepare a substring search")?;
    let rows = st.query_map(rusqlite::params_from_iter(params.iter()), hit_from_row).ctx("search substrings")?;
    rows.collect::<rusqlite::Result<Vec<_>>>().ctx("read substring hits")
}

/// An in-memory database with the index's schema holding `messages` (with their states) and the
/// sessions `(id, source)` they belong to: the journal's tail, searched by [`search`] exactly as
/// the index is (same tables, tokenizers and SQL).
pub(crate) fn tail_index(
    messages: &[(Message, MessageState)],
    sessions: &[(String, Option<String>)],
    tool_output_limit: usize,
) -> Result<Connection> {
    let conn = Connection::open_in_memory().ctx("open an in-memory index")?;
    super::body::register(&conn, None).ctx("register tidelog_body")?;
    conn.execute_batch(super::schema::SCHEMA).ctx("create an in-memory index")?;
    conn.execute_batch(super::schema::FTS_SOURCE_VIEW).ctx("create an in-memory index")?;
    conn.execute_batch(super::schema::WORDS_TABLE).ctx("create an in-memory word index")?;
    conn.execute_batch(super::schema::WORDS_VIEW_AND_TRIGGERS).ctx("create an in-memory word index")?;
    {
        let mut add_session =
            conn.prepare("INSERT OR IGNORE INTO sessions (id, source) VALUES (?1, ?2)").ctx("prepare")?;
        for (id, source) in sessions {
            add_session.execute((id, source)).ctx("copy a session")?;
        }
        for (m, state) in messages {
            super::apply::insert_message(&conn, m, *state, "", 0, tool_output_limit, None).ctx("copy a message")?;
        }
    }
    conn.execute("INSERT INTO messages_fts (rowid, body, tool_name) SELECT rid, body, tool_name FROM fts_source", [])
        .ctx("index the copied messages")?;
    Ok(conn)
}

/// What schema 4 added (the word index), dropped: a version 3 file, for upgrade tests.
#[cfg(test)]
pub(crate) const DROP_WORDS_TABLES: &str = "DROP TRIGGER messages_words_insert; DROP TRIGGER messages_words_delete; \
     DROP TRIGGER messages_words_update; DROP TABLE messages_words; DROP VIEW words_source;";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::entry::Entry;
    use crate::index::{Index, IndexOptions, SCHEMA_VERSION};

    /// A version 3 index gets the word index at its first writable open, filled from its rows.
    #[test]
    fn a_version_3_index_gets_its_word_index_filled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.db");
        let opts = IndexOptions::default();
        let mut ix = Index::open(&path, &opts).unwrap();
        let m = Message {
            id: "m1".into(),
            session_id: "s".into(),
            role: "user".into(),
            content: Some("the zebrafish swims".into()),
            timestamp: 1.0,
            num: 7,
            ..Message::default()
        };
        let patch = crate::model::SessionPatch { id: "s".into(), source: Some("cli".into()), ..Default::default() };
        ix.apply_batch(&[("a".to_string(), 1, Entry::Session(patch)), ("a".to_string(), 2, Entry::Message(m))])
            .unwrap();
        ix.conn
            .execute_batch(&format!("{DROP_WORDS_TABLES} UPDATE meta SET value = 3 WHERE key = 'schema_version'"))
            .unwrap();
        drop(ix);
        let ix = Index::open(&path, &opts).unwrap();
        let v: i64 =
            ix.conn.query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |r| r.get(0)).unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        let hits =
            ix.search_hermes(&HermesSearch { query: "zebrafish".into(), limit: 5, ..Default::default() }).unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].snippet, "the >>>zebrafish<<< swims  ");
        assert!(ix.check().unwrap().is_empty());
    }

    /// Hermes' order by time without ranking every match gives the one query's hits: times out
    /// of id order (imported history), shared times (where `rank` decides: the one query
    /// runs), filters, pages, both directions, both tables.
    #[test]
    fn by_time_is_hermes_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = Index::open(&dir.path().join("index.db"), &IndexOptions::default()).unwrap();
        let mut batch = sessions(&["cli", "cron", "telegram"]);
        for i in 0..600u64 {
            let timestamp = match i {
                _ if i % 17 == 0 => 100.0 + i as f64,                // older than its neighbours
                _ if i % 23 == 0 => 90_000.0 - i as f64,             // newer than every other
                _ if i % 50 == 1 => 1_000.0 + (i - 1) as f64 * 10.0, // the same time as the one before
                _ => 1_000.0 + i as f64 * 10.0,
            };
            let mut words = String::from(if i % 3 == 0 { "pelican heron" } else { "pelican" });
            // Osprey messages are in time order: the newest by id are the newest by time.
            if i % 7 == 0 && i % 17 != 0 && i % 23 != 0 && i % 50 != 1 {
                words.push_str(" osprey");
            }
            // Of two messages at the same time, the later one is shorter: rank puts it first.
            let lorem = match i % 50 {
                0 => 8,
                1 => 0,
                _ => i % 5,
            };
            let m = Message {
                id: format!("m{i}"),
                session_id: format!("s{}", i % 3),
                role: ["user", "assistant", "tool"][(i % 4).min(2) as usize].into(),
                content: Some(format!("{words} {} 数据库迁移", "lorem ".repeat(lorem as usize))),
                timestamp,
                num: i as i64 + 1,
                ..Message::default()
            };
            batch.push(("a".to_string(), batch.len() as u64 + 1, Entry::Message(m)));
        }
        ix.apply_batch(&batch).unwrap();
        let queries = [
            ("pelican", "messages_words", "pelican"),
            ("osprey", "messages_words", "osprey"),
            ("heron", "messages_words", "heron"),
            ("数据库迁移", "messages_fts", "\"数据库迁移\""),
        ];
        let pages = [(5, 0), (20, 0), (20, 7), (300, 0), (1, 599), (50, 580)];
        let all = cases(&queries, &pages);
        assert_eq!(all.len(), 96);
        for (s, table, fts) in &all {
            let got: Vec<i64> = search(&ix.conn, s).unwrap().iter().map(|h| h.message.num).collect();
            assert_eq!(got, one_query(&ix.conn, s, table, fts), "{s:?}");
        }
        // The bound answers by itself where no two of the first hits share a time...
        let params = [Value::Text("heron".into()), Value::Integer(20), Value::Integer(0)];
        let ids = by_time_bounded(&ix.conn, "messages_words", "", &params, true, 20, 0).unwrap();
        let s = HermesSearch { query: "heron".into(), newest_first: Some(true), limit: 20, ..Default::default() };
        assert_eq!(ids.unwrap(), one_query(&ix.conn, &s, "messages_words", "heron"));
        // ...and leaves it to the one query where they do (messages 550 and 551 share one).
        let params = [Value::Text("pelican".into()), Value::Integer(80), Value::Integer(0)];
        assert_eq!(by_time_bounded(&ix.conn, "messages_words", "", &params, true, 80, 0).unwrap(), None);
    }

    /// A batch creating sessions `s0`, `s1`... with these sources.
    fn sessions(sources: &[&str]) -> Vec<(String, u64, Entry)> {
        sources
            .iter()
            .enumerate()
            .map(|(k, source)| {
                let patch = crate::model::SessionPatch {
                    id: format!("s{k}"),
                    source: Some((*source).to_string()),
                    ..Default::default()
                };
                ("a".to_string(), k as u64 + 1, Entry::Session(patch))
            })
            .collect()
    }

    /// Every search by time of `queries` (query, table, FTS5 query) in both orders, on every page
    /// `(limit, offset)`, without filters and with a role and a source filter.
    fn cases<'a>(
        queries: &[(&str, &'a str, &'a str)],
        pages: &[(usize, usize)],
    ) -> Vec<(HermesSearch, &'a str, &'a str)> {
        let mut out = Vec::new();
        for &(query, table, fts) in queries {
            for newest in [true, false] {
                for &(limit, offset) in pages {
                    for (roles, exclude) in
                        [(None, None), (Some(vec!["user".to_string()]), Some(vec!["cron".to_string()]))]
                    {
                        let s = HermesSearch {
                            query: query.into(),
                            newest_first: Some(newest),
                            limit,
                            offset,
                            role_filter: roles,
                            exclude_sources: exclude,
                            ..Default::default()
                        };
                        out.push((s, table, fts));
                    }
                }
            }
        }
        out
    }

    /// Hermes' one query for `s` on `table` (FTS5 query `fts`): the ids in its order.
    fn one_query(conn: &Connection, s: &HermesSearch, table: &str, fts: &str) -> Vec<i64> {
        let mut params: Vec<Value> = vec![Value::Text(fts.into())];
        let mut filters = String::from(" AND (m.active = 1 OR m.compacted = 1)");
        push_filters(s, &mut filters, &mut params);
        params.push(Value::Integer(s.limit as i64));
        params.push(Value::Integer(s.offset as i64));
        let dir = if s.newest_first == Some(true) { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT m.rid FROM {table} JOIN messages m ON m.rid = {table}.rowid JOIN sessions s ON s.id = m.session_id \
             WHERE {table} MATCH ?{filters} ORDER BY m.timestamp {dir}, rank LIMIT ? OFFSET ?"
        );
        let mut st = conn.prepare(&sql).unwrap();
        st.query_map(rusqlite::params_from_iter(params), |r| r.get::<_, i64>(0)).unwrap().map(Result::unwrap).collect()
    }

    /// The same on random histories: times drawn anywhere (out of id order, some equal), some
    /// missing (NaN is stored as NULL), messages whose session row is gone; every page of every
    /// order is the one query's, and the bound answers many of them by itself. (Written by a
    /// review, which found no difference in 1,152 cases.)
    #[test]
    fn by_time_is_hermes_order_on_random_histories() {
        let mut bounded = 0;
        for missing_times in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let mut ix = Index::open(&dir.path().join("index.db"), &IndexOptions::default()).unwrap();
            let mut batch = sessions(&["cli", "cron", "telegram", "x"]);
            let mut seed: u64 = 12_345;
            let mut rnd = |n: u64| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed % n
            };
            for i in 0..500u64 {
                let timestamp = match rnd(10) {
                    0 => rnd(100_000) as f64,
                    1 if missing_times && i < 60 => f64::NAN,
                    2 => 1_000.0 + (i / 2 * 2) as f64 * 3.0,
                    _ => 1_000.0 + i as f64 * 3.0 + rnd(1_000) as f64 / 97.0,
                };
                let words = if rnd(3) == 0 { "pelican heron" } else { "pelican" };
                let m = Message {
                    id: format!("m{i}"),
                    session_id: format!("s{}", rnd(5)),
                    role: ["user", "assistant", "tool"][rnd(3) as usize].into(),
                    content: Some(format!("{words} {} 数据库迁移", "lorem ".repeat(rnd(6) as usize))),
                    timestamp,
                    num: i as i64 + 1,
                    ..Message::default()
                };
                batch.push(("a".to_string(), batch.len() as u64 + 1, Entry::Message(m)));
            }
            ix.apply_batch(&batch).unwrap();
            ix.conn.execute("DELETE FROM sessions WHERE id = 's4'", []).unwrap();
            let queries = [
                ("pelican", "messages_words", "pelican"),
                ("heron", "messages_words", "heron"),
                ("数据库迁移", "messages_fts", "\"数据库迁移\""),
            ];
            let pages: Vec<(usize, usize)> =
                [1usize, 3, 10, 40, 200, 600].into_iter().flat_map(|l| [0usize, 3, 100, 499].map(|o| (l, o))).collect();
            for (s, table, fts) in cases(&queries, &pages) {
                let want = one_query(&ix.conn, &s, table, fts);
                let got: Vec<i64> = search(&ix.conn, &s).unwrap().iter().map(|h| h.message.num).collect();
                assert_eq!(got, want, "{s:?}");
                let mut params = vec![Value::Text(fts.into())];
                let mut filters = String::from(" AND (m.active = 1 OR m.compacted = 1)");
                push_filters(&s, &mut filters, &mut params);
                params.extend([Value::Integer(0), Value::Integer(0)]);
                let newest = s.newest_first == Some(true);
                if let Some(ids) =
                    by_time_bounded(&ix.conn, table, &filters, &params, newest, s.limit, s.offset).unwrap()
                {
                    assert_eq!(ids, want, "bounded: {s:?}");
                    bounded += 1;
                }
            }
        }
        assert!(bounded > 100, "the bound answered only {bounded} pages");
    }
}
