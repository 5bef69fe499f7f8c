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
        let mut st = conn.prepare(&ids_sql)?;
        let ids: Vec<i64> =
            st.query_map(rusqlite::params_from_iter(params.iter()), |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
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
}
