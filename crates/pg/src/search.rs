//! Search across every store feeding the database, with the filters of [`SearchQuery`].
//!
//! Every word must occur, case-insensitively, in the body or the tool name (`ILIKE`, served by
//! the GIN trigram indexes for words of 3+ characters, as FTS5 trigram on SQLite). Differences
//! from SQLite, documented in docs/scale-out.md: relevance is pg_trgm's `word_similarity` of the
//! query to the body (not BM25); case folding follows the database's collation (`ILIKE`) rather
//! than FTS5's Unicode folding; only entries already shipped are found (the journal tail of
//! each store is searched by that store's own [`Store::search`](tidelog::Store::search)).

use postgres::types::ToSql;
use tidelog::{SearchHit, SearchOrder, SearchQuery, match_snippet};

use crate::apply::{MESSAGE_COLS, message_from_row, text};
use crate::error::{Ctx, PgError};
use crate::{PgTarget, connect};

/// A search hit and the store it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteHit {
    /// The store's id (`store.id` in its folder).
    pub store_id: String,
    /// The hit; `score` is pg_trgm's `word_similarity` (0 to 1) for relevance order.
    pub hit: SearchHit,
}

/// How many of the newest matches relevance order ranks.
const RELEVANCE_POOL: i64 = 1_000;

/// Context of a snippet without a match, in characters (as on SQLite).
const SNIPPET_CONTEXT: usize = 64;

/// `%word%` with `%`, `_` and `\` escaped (PostgreSQL's default `LIKE` escape is `\`).
fn like_pattern(word: &str) -> String {
    let mut p = String::with_capacity(word.len() + 2);
    p.push('%');
    for c in word.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

fn head(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", s.get(..i).unwrap_or_default()),
        None => s.to_owned(),
    }
}

impl PgTarget {
    /// Searches every store in the database (or only `q.session_id`, roles, sources and times
    /// as filtered). Opens a connection for the call.
    pub fn search(&self, q: &SearchQuery) -> Result<Vec<RemoteHit>, PgError> {
        self.search_stores(q, None)
    }

    /// [`search`](Self::search) limited to one store when `store_id` is given.
    pub fn search_stores(&self, q: &SearchQuery, store_id: Option<&str>) -> Result<Vec<RemoteHit>, PgError> {
        let words: Vec<&str> = q.text.split_whitespace().collect();
        if words.is_empty() {
            return Err(PgError::EmptyQuery);
        }
        let mut client = connect(self)?;
        let target = self.describe();
        let mut params: Vec<Box<dyn ToSql + Sync>> = Vec::new();
        let arg = |v: Box<dyn ToSql + Sync>, params: &mut Vec<Box<dyn ToSql + Sync>>| {
            params.push(v);
            format!("${}", params.len())
        };
        let mut sql = format!("SELECT m.store, {MESSAGE_COLS}, m.body FROM tidelog.messages m WHERE true");
        for w in &words {
            let p = arg(Box::new(like_pattern(&text(w))), &mut params);
            sql.push_str(&format!(" AND (m.body ILIKE {p} OR m.tool_name ILIKE {p})"));
        }
        if !q.include_inactive {
            sql.push_str(" AND (m.active OR m.compacted)");
        }
        if let Some(s) = store_id {
            let p = arg(Box::new(s.to_string()), &mut params);
            sql.push_str(&format!(" AND m.store = {p}"));
        }
        if let Some(s) = &q.session_id {
            let p = arg(Box::new(text(s).into_owned()), &mut params);
            sql.push_str(&format!(" AND m.session_id = {p}"));
        }
        if let Some(r) = &q.role {
            let p = arg(Box::new(text(r).into_owned()), &mut params);
            sql.push_str(&format!(" AND m.role = {p}"));
        }
        if let Some(s) = &q.source {
            let p = arg(Box::new(text(s).into_owned()), &mut params);
            sql.push_str(&format!(
                " AND coalesce(m.source, (SELECT s.source FROM tidelog.sessions s \
                 WHERE s.store = m.store AND s.id = m.session_id)) = {p}"
            ));
        }
        if let Some(t) = q.since {
            let p = arg(Box::new(t), &mut params);
            sql.push_str(&format!(" AND m.\"timestamp\" >= {p}"));
        }
        if let Some(t) = q.until {
            let p = arg(Box::new(t), &mut params);
            sql.push_str(&format!(" AND m.\"timestamp\" <= {p}"));
        }
        sql.push_str(match q.order {
            SearchOrder::Oldest => " ORDER BY m.\"timestamp\" NULLS FIRST, m.store, m.rid",
            _ => " ORDER BY m.\"timestamp\" DESC NULLS LAST, m.store, m.rid DESC",
        });
        let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
        let sql = if q.order == SearchOrder::Relevance {
            // word_similarity costs a pass over each body: rank the newest RELEVANCE_POOL matches
            // (or `limit`, if larger), not every match of a common word.
            let qtext = arg(Box::new(text(&q.text).into_owned()), &mut params);
            let p = arg(Box::new(limit.max(RELEVANCE_POOL)), &mut params);
            let l = arg(Box::new(limit), &mut params);
            format!(
                "SELECT c.*, word_similarity({qtext}, coalesce(c.body, '')) AS score FROM ({sql} LIMIT {p}) c \
                 ORDER BY score DESC, c.\"timestamp\" DESC NULLS LAST, c.store, c.rid DESC LIMIT {l}"
            )
        } else {
            let l = arg(Box::new(limit), &mut params);
            format!("SELECT c.*, 0::real AS score FROM ({sql} LIMIT {l}) c")
        };
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|b| b.as_ref()).collect();
        let rows = client.query(&sql, &refs).ctx(target, "run a search")?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let store_id: String = r.get(0);
            // Columns after the store id: the message, then body and score.
            let (message, state) = message_from_row_at(&r).ctx(target, "read a search hit")?;
            let body: Option<String> = r.get(19);
            let score: f32 = r.get(20);
            let body = body.unwrap_or_default();
            let snippet = match_snippet(&body, &q.text)
                .or_else(|| message.tool_name.as_deref().and_then(|t| match_snippet(t, &q.text)))
                .unwrap_or_else(|| head(&body, SNIPPET_CONTEXT));
            out.push(RemoteHit { store_id, hit: SearchHit { message, state, snippet, score: f64::from(score) } });
        }
        Ok(out)
    }
}

/// [`message_from_row`] for rows that start with the store id.
fn message_from_row_at(r: &postgres::Row) -> Result<(tidelog::Message, tidelog::MessageState), postgres::Error> {
    message_from_row(r, 1)
}
