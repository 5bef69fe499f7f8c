//! Search over the index and the not-yet-indexed journal tail, with history operations applied.

use std::collections::{BTreeMap, HashSet};

use super::{IndexedOps, SessionOps, Tail};
use crate::error::{Error, Result};
use crate::index::{self, IndexOptions, SearchHit, SearchOrder, SearchQuery};
use crate::model::{Message, MessageState};
use crate::store::Store;

impl Store {
    /// Searches message text and tool names (see [`SearchQuery`]); includes messages not
    /// indexed yet, and honours every history operation (a deleted message is never found; an
    /// archived one only with `include_inactive`). Hits from the not-yet-indexed part come first
    /// when ordering by relevance (they are the newest and match the query as a literal
    /// substring).
    pub fn search(&self, q: &SearchQuery) -> Result<Vec<SearchHit>> {
        if q.text.trim().is_empty() {
            return Err(Error::EmptyQuery);
        }
        let (positions, hits) =
            self.inner.with_reader(|ix| Ok((ix.applied_positions()?, ix.search(q)?))).unwrap_or_default();
        let tail = Tail::read(&self.inner, &positions)?;
        let opts = self.inner.opts.index.clone();
        // The operations of every session the tail touches or has messages of.
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
        let ops: BTreeMap<String, SessionOps> = sessions
            .iter()
            .map(|s| (s.clone(), SessionOps::of(s, indexed_ops.remove(s).unwrap_or_default(), &tail)))
            .collect();
        let visible = |s: MessageState| s.active || s.compacted || q.include_inactive;

        // Index hits, corrected by the tail's operations.
        let mut kept = Vec::with_capacity(hits.len());
        for mut h in hits {
            if let Some(o) = ops.get(&h.message.session_id) {
                let Some(state) = o.state(h.message.num) else { continue };
                let before = h.message.content.clone();
                o.update(&mut h.message);
                if h.message.content != before {
                    match snippet(&h.message, &q.text, &opts) {
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
            if let Some(snippet) = snippet(&m, &q.text, &opts)
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

/// The snippet of a message not in the index, matched as the index would.
fn snippet(m: &Message, query: &str, opts: &IndexOptions) -> Option<String> {
    let text = index::indexed_text(m, opts);
    text.as_deref()
        .and_then(|t| index::match_snippet(t, query))
        .or_else(|| m.tool_name.as_deref().and_then(|t| index::match_snippet(t, query)))
}
