//! The journal entries the index does not hold yet, and how history operations among them (and
//! in the index) decide what a read returns.
//!
//! The rule is the model's one fold rule ([`SessionHistory`], docs/design.md "One fold rule"): a
//! message's state is the fold, in op order, of every rewrite of its session whose op is above
//! the message's id, starting from active; a deletion whose op is above the id removes it; an
//! update edits the message with its id in its session. Reads apply it to index rows and to journal
//! entries alike, so a read gives the same answer before and after the compactor applied an
//! entry, and after a rebuild.

use std::collections::{BTreeMap, HashSet};

use crate::entry::Entry;
use crate::error::Result;
use crate::index::Index;
use crate::model::{Message, MessageState, MessageUpdate, SessionHistory};
use crate::state::Inner;

/// The unindexed entries, in read order (lane by lane), with the messages a rewrite adds listed
/// after it as ordinary messages.
#[derive(Debug, Default)]
pub(crate) struct Tail {
    pub entries: Vec<Entry>,
    /// The key under which each session write (patch, counters) of `entries` sorts: its
    /// position, or for one written before positions existed the index's legacy key.
    pub session_keys: Vec<i64>,
}

impl Tail {
    pub(crate) fn read(inner: &Inner, positions: &BTreeMap<String, u64>) -> Result<Tail> {
        let mut entries = Vec::new();
        let mut session_keys = Vec::new();
        inner.for_each_unindexed(positions, |lane, lsn, e| {
            let legacy = || crate::index::legacy_key(lane, lsn);
            match e {
                Entry::Rewrite(mut r) => {
                    let added = std::mem::take(&mut r.messages);
                    entries.push(Entry::Rewrite(r));
                    session_keys.push(0);
                    for m in added {
                        entries.push(Entry::Message(m));
                        session_keys.push(0);
                    }
                }
                e => {
                    session_keys.push(match &e {
                        Entry::Session(p) => p.op.unwrap_or_else(legacy),
                        Entry::Counters(c) => c.op.unwrap_or_else(legacy),
                        _ => 0,
                    });
                    entries.push(e);
                }
            }
        })?;
        Ok(Tail { entries, session_keys })
    }

    /// Messages in the tail, in order.
    pub(crate) fn messages(&self) -> impl Iterator<Item = &Message> {
        self.entries.iter().filter_map(|e| match e {
            Entry::Message(m) => Some(m),
            _ => None,
        })
    }

    /// Sessions whose history an operation in the tail changes.
    pub(crate) fn rewritten_sessions(&self) -> HashSet<&str> {
        let mut out = HashSet::new();
        for e in &self.entries {
            match e {
                Entry::Rewrite(r) => {
                    out.insert(r.session_id.as_str());
                }
                Entry::Update(u) => {
                    out.insert(u.session_id.as_str());
                }
                Entry::Delete(d) => out.extend(d.sessions.iter().map(|s| s.id.as_str())),
                _ => {}
            }
        }
        out
    }

    /// Sessions deleted in the tail, with the op of the deletion.
    pub(crate) fn deletions(&self) -> BTreeMap<&str, i64> {
        let mut out = BTreeMap::new();
        for e in &self.entries {
            if let Entry::Delete(d) = e {
                for s in &d.sessions {
                    let op = out.entry(s.id.as_str()).or_insert(d.op);
                    *op = (*op).max(d.op);
                }
            }
        }
        out
    }
}

/// The history operations that decide the state of one session's messages: the model's one
/// fold rule ([`SessionHistory`]) and the tail's updates.
#[derive(Debug, Default)]
pub(crate) struct SessionOps {
    history: SessionHistory,
    /// Updates in the tail that edit this session's messages, in order.
    updates: Vec<MessageUpdate>,
}

impl SessionOps {
    /// The operations on `session`: those the index recorded, then the tail's.
    pub(crate) fn of(session: &str, indexed: IndexedOps, tail: &Tail) -> SessionOps {
        let mut ops = SessionOps { history: indexed.history, updates: Vec::new() };
        for e in &tail.entries {
            match e {
                Entry::Rewrite(r) if r.session_id == session => {
                    ops.history.add_rewrite(r.op, r.rewrite_mode(), r.active_only, &r.kept_nums());
                }
                Entry::Delete(d) if d.sessions.iter().any(|s| s.id == session) => ops.history.add_deletion(d.op),
                Entry::Update(u) if u.session_id == session => ops.updates.push(u.clone()),
                _ => {}
            }
        }
        ops
    }

    /// The state of message `num`; `None` if deleted.
    pub(crate) fn state(&self, num: i64) -> Option<MessageState> {
        self.history.state(num)
    }

    /// Applies the tail's updates of message `m` (those naming its id and its session).
    pub(crate) fn update(&self, m: &mut Message) {
        for u in &self.updates {
            if u.edits(&m.session_id, m.num) {
                u.apply_to(m);
            }
        }
    }
}

/// The history operations of one session the index recorded.
#[derive(Debug, Default, Clone)]
pub(crate) struct IndexedOps {
    pub history: SessionHistory,
}

impl IndexedOps {
    pub(crate) fn read(ix: &Index, session: &str) -> std::result::Result<IndexedOps, crate::index::IndexError> {
        let mut history = SessionHistory::default();
        for r in ix.session_ops(session)? {
            history.add_rewrite(r.op, r.mode, r.active_only, &r.kept);
        }
        if let Some(op) = ix.deleted_op(session)? {
            history.add_deletion(op);
        }
        Ok(IndexedOps { history })
    }
}

/// A session's messages with their states: the index's rows and the tail's messages, every
/// operation applied, by integer id.
pub(crate) fn fold_session(
    session: &str,
    indexed: Vec<(Message, MessageState)>,
    ops: &SessionOps,
    tail: &Tail,
) -> Vec<(Message, MessageState)> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut out = Vec::with_capacity(indexed.len());
    let candidates =
        indexed.into_iter().map(|(m, _)| m).chain(tail.messages().filter(|m| m.session_id == session).cloned());
    for mut m in candidates {
        if !seen.insert(m.id.clone()) {
            continue;
        }
        let Some(state) = ops.state(m.num) else { continue };
        ops.update(&mut m);
        out.push((m, state));
    }
    out.sort_by_key(|(m, _)| m.num);
    out
}

/// The messages a whole journal leaves alive once its history operations are applied (for
/// `verify`, which compares them with the index).
#[derive(Debug, Default)]
pub(crate) struct LiveSet {
    messages: Vec<(String, i64, String)>,
    ops: BTreeMap<String, IndexedOps>,
}

impl LiveSet {
    pub(crate) fn add(&mut self, e: Entry) {
        match e {
            Entry::Message(m) => self.messages.push((m.session_id, m.num, m.id)),
            Entry::Rewrite(r) => {
                let mode = r.rewrite_mode();
                self.ops.entry(r.session_id.clone()).or_default().history.add_rewrite(
                    r.op,
                    mode,
                    r.active_only,
                    &r.kept_nums(),
                );
                self.messages.extend(r.messages.into_iter().map(|m| (m.session_id, m.num, m.id)));
            }
            Entry::Delete(d) => {
                for s in d.sessions {
                    self.ops.entry(s.id).or_default().history.add_deletion(d.op);
                }
            }
            _ => {}
        }
    }

    /// The ids of the messages still alive (archived and compacted ones included).
    pub(crate) fn live_ids(mut self) -> std::collections::BTreeSet<String> {
        let empty = Tail::default();
        let ops: BTreeMap<String, SessionOps> = std::mem::take(&mut self.ops)
            .into_iter()
            .map(|(s, o)| {
                let so = SessionOps::of(&s, o, &empty);
                (s, so)
            })
            .collect();
        self.messages
            .into_iter()
            .filter(|(s, num, _)| ops.get(s).is_none_or(|o| o.state(*num).is_some()))
            .map(|(_, _, id)| id)
            .collect()
    }
}
