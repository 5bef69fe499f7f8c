//! Hermes Agent's search over the index and the not-yet-indexed journal tail.

use std::collections::{BTreeMap, HashSet};

use super::Store;
use crate::error::Result;
use crate::fts::{HermesRoute, hermes_route};
use crate::index::{HermesHit, HermesSearch, hermes_search_on, hermes_tail_index};
use crate::read::Tail;

impl Store {
    /// Hermes Agent's `search_messages` (release 0.19.0): the query cleaned and routed as Hermes
    /// does, run on the word index (`unicode61`), the trigram index or as substrings, with
    /// Hermes' filters, order and snippets (see [`HermesSearch`]). Messages not indexed yet are
    /// searched by the same SQL on an in-memory copy of them; their hits come after the
    /// index's when ordering by relevance (`bm25` needs the whole index's statistics) and are
    /// merged by time otherwise. History operations are honoured as in [`Store::search`].
    pub fn search_hermes(&self, s: &HermesSearch) -> Result<Vec<HermesHit>> {
        let mut wide = s.clone();
        wide.limit = s.limit.saturating_add(s.offset);
        wide.offset = 0;
        let (positions, hits) =
            self.inner.with_reader(|ix| Ok((ix.applied_positions()?, ix.search_hermes(&wide)?))).unwrap_or_default();
        let tail = Tail::read(&self.inner, &positions)?;
        let substrings = matches!(hermes_route(&s.query), HermesRoute::Substrings(_));
        // Hermes' substring fallback searches every state; its FTS5 queries skip rewound rows.
        let visible = |st: crate::model::MessageState| substrings || st.active || st.compacted || s.include_inactive;

        let ops = self.tail_session_ops(&tail);
        if ops.is_empty() {
            return Ok(hits.into_iter().skip(s.offset).take(s.limit).collect());
        }

        // Indexed messages whose searched text an edit in the tail changed are searched again,
        // with the tail (their index hit, if any, is dropped).
        let mut edited: BTreeMap<i64, crate::model::Message> = BTreeMap::new();
        for e in &tail.entries {
            if let crate::entry::Entry::Update(u) = e
                && (u.content.is_some() || u.tool_calls.is_some())
                && !edited.contains_key(&u.num)
                && let Some(Some((m, _))) = self.inner.with_reader(|ix| ix.message_by_num(u.num))
                && m.session_id == u.session_id
            {
                edited.insert(u.num, m);
            }
        }

        // Index hits, corrected by the tail's operations.
        let mut kept = Vec::with_capacity(hits.len());
        for mut h in hits {
            if edited.contains_key(&h.message.num) {
                continue;
            }
            if let Some(o) = ops.get(&h.message.session_id) {
                let Some(state) = o.state(h.message.num) else { continue };
                o.update(&mut h.message);
                h.state = state;
            }
            if visible(h.state) {
                kept.push(h);
            }
        }

        // The tail's messages, in their states, searched by the same SQL in memory.
        let seen: HashSet<i64> = kept.iter().map(|h| h.message.num).collect();
        let mut tail_messages = Vec::new();
        for m in tail.messages().chain(edited.values()) {
            let mut m = m.clone();
            let state = match ops.get(&m.session_id) {
                Some(o) => {
                    let Some(state) = o.state(m.num) else { continue };
                    o.update(&mut m);
                    state
                }
                None => crate::model::MessageState::ACTIVE,
            };
            if !seen.contains(&m.num) {
                tail_messages.push((m, state));
            }
        }
        let mut tail_sessions = Vec::new();
        for id in tail_messages.iter().map(|(m, _)| m.session_id.clone()).collect::<HashSet<_>>() {
            if let Some(session) = self.get_session(&id)? {
                tail_sessions.push((id, session.source));
            }
        }
        let conn = hermes_tail_index(&tail_messages, &tail_sessions, self.inner.opts.index.tool_output_index_bytes)?;
        let tail_hits = hermes_search_on(&conn, &wide)?;

        let mut all = kept;
        all.extend(tail_hits.into_iter().filter(|h| visible(h.state)));
        match (substrings, s.newest_first) {
            (true, _) | (false, Some(true)) => {
                all.sort_by(|a, b| b.message.timestamp.total_cmp(&a.message.timestamp));
            }
            (false, Some(false)) => all.sort_by(|a, b| a.message.timestamp.total_cmp(&b.message.timestamp)),
            (false, None) => {}
        }
        Ok(all.into_iter().skip(s.offset).take(s.limit).collect())
    }
}
