//! Search over the index and the not-yet-indexed journal tail, with history operations applied.

use std::collections::{BTreeMap, HashSet};

use super::Store;
use crate::error::{Error, Result};
use crate::fts::{FtsQuery, Highlighter, QuerySyntax, is_blank};
use crate::index::{self, IndexOptions, SNIPPET_CONTEXT, SearchHit, SearchOrder, SearchQuery};
use crate::model::{Message, MessageState};
use crate::read::{IndexedOps, SessionOps, Tail};

impl Store {
    /// The history operations (the index's and the tail's) of every session the tail touches or
    /// has messages of: what corrects index hits and places the tail's messages.
    pub(super) fn tail_session_ops(&self, tail: &Tail) -> BTreeMap<String, SessionOps> {
        let mut sessions: HashSet<String> = tail.rewritten_sessions().into_iter().map(str::to_string).collect();
        sessions.extend(tail.messages().map(|m| m.session_id.clone()));
        let mut indexed_ops: BTreeMap<String, IndexedOps> = BTreeMap::new();
        if !sessions.is_empty() {
            let _ = self.inner.with_reader(|ix| {
                for s in &sessions {
                    indexed_ops.insert(s.clone(), IndexedOps::read(ix, s)?);
                }
                Ok(())
            });
        }
        sessions
            .iter()
            .map(|s| (s.clone(), SessionOps::of(s, indexed_ops.remove(s).unwrap_or_default(), tail)))
            .collect()
    }

    /// Searches message text and tool names (see [`SearchQuery`]); includes messages not
    /// indexed yet, and honours every history operation (a deleted message is never found; an
    /// archived one only with `include_inactive`). The query is read once: the index runs its
    /// canonical FTS5 rendering, and the messages not indexed yet are matched by an evaluator
    /// of the same tree that gives FTS5's answers ([`FtsQuery::matches`]). Hits from the
    /// not-yet-indexed part come first when ordering by relevance (they are the newest, and
    /// FTS5's `bm25()` needs the index's statistics), with a score of 0.
    ///
    /// Errors: [`Error::EmptyQuery`] for a blank query, [`Error::Query`] for an FTS5 query FTS5
    /// refuses.
    pub fn search(&self, q: &SearchQuery) -> Result<Vec<SearchHit>> {
        let matcher = Matcher::new(q)?;
        let (positions, hits) = self
            .inner
            .with_reader(|ix| Ok((ix.applied_positions()?, ix.search_parsed(q, matcher.parsed())?)))
            .unwrap_or_default();
        let tail = Tail::read(&self.inner, &positions)?;
        let opts = self.inner.opts.index.clone();
        let ops = self.tail_session_ops(&tail);
        let visible = |s: MessageState| s.active || s.compacted || q.include_inactive;

        // Index hits, corrected by the tail's operations.
        let mut kept = Vec::with_capacity(hits.len());
        for mut h in hits {
            if let Some(o) = ops.get(&h.message.session_id) {
                let Some(state) = o.state(h.message.num) else { continue };
                let before = h.message.content.clone();
                o.update(&mut h.message);
                if h.message.content != before {
                    match matcher.snippet(&h.message, &opts) {
                        Some(s) => h.snippet = s,
                        None => continue,
                    }
                }
                h.state = state;
            }
            if visible(h.state) {
                kept.push(h);
            }
        }
        let mut seen: HashSet<String> = kept.iter().map(|h| h.message.id.clone()).collect();
        let mut tail_hits = Vec::new();
        for m in tail.messages() {
            if q.session_id.as_ref().is_some_and(|s| *s != m.session_id)
                || q.role.as_ref().is_some_and(|r| *r != m.role)
                || q.source.as_ref().is_some_and(|s| Some(s) != m.source.as_ref())
                || q.since.is_some_and(|t| m.timestamp < t)
                || q.until.is_some_and(|t| m.timestamp > t)
            {
                continue;
            }
            let mut m = m.clone();
            let state = match ops.get(&m.session_id) {
                Some(o) => {
                    let Some(state) = o.state(m.num) else { continue };
                    o.update(&mut m);
                    state
                }
                None => MessageState::ACTIVE,
            };
            if !visible(state) {
                continue;
            }
            if let Some(snippet) = matcher.snippet(&m, &opts).or_else(|| past_prefix(q, &matcher, &m, &opts))
                && seen.insert(m.id.clone())
            {
                tail_hits.push(SearchHit { message: m, state, snippet, score: 0.0 });
            }
        }
        let mut all = match q.order {
            SearchOrder::Relevance => {
                tail_hits.reverse();
                tail_hits.extend(kept);
                tail_hits
            }
            SearchOrder::Newest | SearchOrder::Oldest => {
                let mut v = kept;
                v.extend(tail_hits);
                v.sort_by_key(|h| h.message.num);
                if q.order == SearchOrder::Newest {
                    v.reverse();
                }
                v
            }
        };
        all.truncate(q.limit);
        Ok(all)
    }
}

/// A hit the index finds through its word index past the part of a long tool output its
/// trigram index holds (see `Index::search_parsed`), found the same way in a message not
/// indexed yet; its snippet.
fn past_prefix(q: &SearchQuery, matcher: &Matcher, m: &Message, opts: &IndexOptions) -> Option<String> {
    let (long, short) = index::past_prefix_words(&q.text, matcher.parsed().is_some())?;
    if !index::trigram_cut(m, opts) {
        return None;
    }
    let body = index::indexed_text(m, opts).unwrap_or_default();
    let tool = m.tool_name.as_deref();
    // Short words filter on the trigram part or the tool name, as the index's LIKE does.
    let found = |w: &str| {
        index::match_snippet(&body, w).is_some() || tool.is_some_and(|t| index::match_snippet(t, w).is_some())
    };
    if !short.iter().all(|w| found(w)) || !index::word_index_matches(m, &long) {
        return None;
    }
    Some(index::past_prefix_snippet(&body, tool, m.content.as_deref(), &q.text))
}

/// A search query, read once.
enum Matcher {
    /// [`QuerySyntax::Fts5`]: the tree, and where its phrases occur for snippets.
    Fts(FtsQuery, Highlighter),
    /// [`QuerySyntax::Words`]: the text.
    Words(String),
}

impl Matcher {
    fn new(q: &SearchQuery) -> Result<Matcher> {
        Ok(match q.syntax {
            QuerySyntax::Fts5 if is_blank(&q.text) => return Err(Error::EmptyQuery),
            QuerySyntax::Fts5 => {
                let parsed = FtsQuery::parse(&q.text)?;
                let h = Highlighter::new(&parsed);
                Matcher::Fts(parsed, h)
            }
            QuerySyntax::Words if q.text.trim().is_empty() => return Err(Error::EmptyQuery),
            QuerySyntax::Words => Matcher::Words(q.text.clone()),
        })
    }

    fn parsed(&self) -> Option<&FtsQuery> {
        match self {
            Matcher::Fts(f, _) => Some(f),
            Matcher::Words(_) => None,
        }
    }

    /// The snippet of a message not in the index if it matches, as the index would match it.
    fn snippet(&self, m: &Message, opts: &IndexOptions) -> Option<String> {
        let text = index::indexed_text(m, opts);
        let body = text.as_deref();
        let tool = m.tool_name.as_deref();
        match self {
            Matcher::Words(query) => body
                .and_then(|t| index::match_snippet(t, query))
                .or_else(|| tool.and_then(|t| index::match_snippet(t, query))),
            Matcher::Fts(parsed, h) => {
                if !parsed.matches(&[body, tool]) {
                    return None;
                }
                let marked = |col: usize, t: &str| index::mark_snippet(t, h.ranges(col, t));
                Some(
                    body.and_then(|t| marked(0, t))
                        .or_else(|| tool.and_then(|t| marked(1, t)))
                        .unwrap_or_else(|| index::head(body.unwrap_or_default(), SNIPPET_CONTEXT)),
                )
            }
        }
    }
}
