//! Search over the index and the not-yet-indexed journal tail.

use std::collections::HashSet;

use crate::error::{Error, Result};
use crate::index::{self, SearchHit, SearchOrder, SearchQuery};
use crate::model::Entry;
use crate::store::Store;

impl Store {
    /// Searches message text and tool names (see [`SearchQuery`]); includes messages not
    /// indexed yet. Hits from the not-yet-indexed part come first when ordering by relevance
    /// (they are the newest and match the query as a literal substring).
    pub fn search(&self, q: &SearchQuery) -> Result<Vec<SearchHit>> {
        if q.text.trim().is_empty() {
            return Err(Error::EmptyQuery);
        }
        let (positions, hits) =
            self.inner.with_reader(|ix| Ok((ix.applied_positions()?, ix.search(q)?))).unwrap_or_default();
        let mut tail = Vec::new();
        let opts = self.inner.opts.index.clone();
        let mut seen: HashSet<String> = hits.iter().map(|h| h.message.id.clone()).collect();
        self.inner.for_each_unindexed(&positions, |_, _, e| {
            let Entry::Message(m) = e else { return };
            if q.session_id.as_ref().is_some_and(|s| *s != m.session_id)
                || q.role.as_ref().is_some_and(|r| *r != m.role)
                || q.source.as_ref().is_some_and(|s| Some(s) != m.source.as_ref())
                || q.since.is_some_and(|t| m.timestamp < t)
                || q.until.is_some_and(|t| m.timestamp > t)
            {
                return;
            }
            let text = index::indexed_text(&m, &opts);
            let snippet = text
                .as_deref()
                .and_then(|t| index::match_snippet(t, &q.text))
                .or_else(|| m.tool_name.as_deref().and_then(|t| index::match_snippet(t, &q.text)));
            if let Some(snippet) = snippet
                && seen.insert(m.id.clone())
            {
                tail.push(SearchHit { message: m, snippet, score: 0.0 });
            }
        })?;
        let mut all = match q.order {
            SearchOrder::Relevance => {
                tail.reverse();
                tail.extend(hits);
                tail
            }
            SearchOrder::Newest | SearchOrder::Oldest => {
                let mut v = hits;
                v.extend(tail);
                v.sort_by(|a, b| a.message.timestamp.total_cmp(&b.message.timestamp));
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
