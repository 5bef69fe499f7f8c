//! Reads: the index merged with the journal entries it does not hold yet (the tail, `read.rs`),
//! so every read sees every acknowledged message and every history operation, whatever the
//! compactor is doing.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::read::{IndexedOps, SessionOps, Tail, fold_session};

use super::{HistoryQuery, Store};
use crate::entry::Entry;
use crate::error::Result;
use crate::index::{BodyAt, SessionFilter, UnreadHistory};
use crate::model::{Message, MessageState, Session};

/// A message with its state, as [`Store::history`] returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryItem {
    /// The message.
    pub message: Message,
    /// Active, archived or compacted.
    pub state: MessageState,
}

impl Store {
    /// A session's messages with their states, every operation applied, by integer id.
    pub(crate) fn fold(&self, session_id: &str) -> Result<Vec<(Message, MessageState)>> {
        let (mut items, bodies) = self.fold_unread(session_id)?;
        if self.read_texts(&mut items, &bodies) {
            return Ok(items);
        }
        self.fold_reading_texts(session_id)
    }

    /// [`Store::fold`] without the texts the index keeps only in the journal: those messages
    /// have `content` `None`, and the places of their texts come along (for
    /// [`Store::read_texts`]). For readers that need only ids and states, or a few texts.
    pub(crate) fn fold_unread(&self, session_id: &str) -> Result<UnreadHistory> {
        let (positions, (indexed, bodies), ops) = self
            .inner
            .with_reader(|ix| {
                Ok((ix.applied_positions()?, ix.history_unread(session_id)?, IndexedOps::read(ix, session_id)?))
            })
            .unwrap_or_default();
        let tail = Tail::read(&self.inner, &positions)?;
        let ops = SessionOps::of(session_id, ops, &tail);
        Ok((fold_session(session_id, indexed, &ops, &tail), bodies))
    }

    /// Reads the texts of `items` that [`Store::fold_unread`] left in the journal: a message
    /// with no text after the fold (no later update gave it one) whose index row names a
    /// record. `false` if one cannot be read (a damaged record, or one erased since the index
    /// was read): the caller then reads again the way every other read does, through the
    /// index's SQL, which reports the problem in the status and answers from the journal.
    fn read_texts(&self, items: &mut [(Message, MessageState)], bodies: &HashMap<i64, BodyAt>) -> bool {
        for (m, _) in items.iter_mut().filter(|(m, _)| m.content.is_none()) {
            let Some(at) = bodies.get(&m.num) else { continue };
            match crate::index::read_text(&self.inner.dir, &self.inner.text_reader, *at, m.num) {
                Ok(text) => m.content = text,
                Err(_) => return false,
            }
        }
        true
    }

    /// [`Store::fold`] reading every text in the index's query (`tidelog_body`), where a text
    /// that cannot be read fails the index read and is reported as every read reports it.
    fn fold_reading_texts(&self, session_id: &str) -> Result<Vec<(Message, MessageState)>> {
        let (positions, indexed, ops) = self
            .inner
            .with_reader(|ix| Ok((ix.applied_positions()?, ix.history(session_id)?, IndexedOps::read(ix, session_id)?)))
            .unwrap_or_default();
        let tail = Tail::read(&self.inner, &positions)?;
        let ops = SessionOps::of(session_id, ops, &tail);
        Ok(fold_session(session_id, indexed, &ops, &tail))
    }

    /// The active messages of a session in the store's order (integer id: the order the writes
    /// were made in, across processes; not the timestamps, which clients may set), including
    /// those not indexed yet.
    pub fn messages(&self, session_id: &str) -> Result<Vec<Message>> {
        // `fold` returns them by integer id.
        Ok(self.fold(session_id)?.into_iter().filter(|(_, s)| s.active).map(|(m, _)| m).collect())
    }

    /// A session's messages by integer id (append order), with their states; see
    /// [`HistoryQuery`] for which. Reads from the journal only the texts it returns.
    pub fn history(&self, q: &HistoryQuery) -> Result<Vec<HistoryItem>> {
        let (folded, bodies) = self.fold_unread(&q.session_id)?;
        let mut v = q.select(folded);
        if !self.read_texts(&mut v, &bodies) {
            v = q.select(self.fold_reading_texts(&q.session_id)?);
        }
        Ok(v.into_iter().map(|(message, state)| HistoryItem { message, state }).collect())
    }

    /// Every message of the store (optionally of one session, at or after a time), in order.
    /// Reads the index and the journal; for exports.
    pub fn all_messages(&self, session_id: Option<&str>, since: Option<f64>) -> Result<Vec<Message>> {
        let sessions: Vec<String> = match session_id {
            Some(s) => vec![s.to_string()],
            None => self.list_sessions(&SessionFilter::default())?.into_iter().map(|s| s.id).collect(),
        };
        let mut out = Vec::new();
        for s in sessions {
            out.extend(self.messages(&s)?.into_iter().filter(|m| since.is_none_or(|t| m.timestamp >= t)));
        }
        Ok(out)
    }

    /// The operations of the sessions the tail changes or adds messages to (the only sessions
    /// whose index rows a read must correct).
    fn tail_ops(&self, tail: &Tail) -> BTreeMap<String, SessionOps> {
        let mut sessions: HashSet<String> = tail.rewritten_sessions().into_iter().map(str::to_string).collect();
        sessions.extend(tail.messages().map(|m| m.session_id.clone()));
        let mut indexed: BTreeMap<String, IndexedOps> = BTreeMap::new();
        if !sessions.is_empty() {
            let _ = self.inner.with_reader(|ix| {
                for s in &sessions {
                    indexed.insert(s.clone(), IndexedOps::read(ix, s)?);
                }
                Ok(())
            });
        }
        sessions
            .into_iter()
            .map(|s| {
                let o = SessionOps::of(&s, indexed.remove(&s).unwrap_or_default(), tail);
                (s, o)
            })
            .collect()
    }

    /// The newest `n` active messages (of one session, or of the store), by integer id (append
    /// order), oldest of them first. Reads at most what it returns from the index (plus what the
    /// unindexed tail's operations remove), and the tail.
    pub fn latest(&self, n: usize, session_id: Option<&str>) -> Result<Vec<Message>> {
        let positions = self.inner.with_reader(|ix| ix.applied_positions()).unwrap_or_default();
        let tail = Tail::read(&self.inner, &positions)?;
        let ops = self.tail_ops(&tail);
        let visible = |m: &mut Message| -> bool {
            match ops.get(&m.session_id) {
                Some(o) => match o.state(m.num) {
                    Some(s) if s.active => {
                        o.update(m);
                        true
                    }
                    _ => false,
                },
                None => true,
            }
        };
        let mut out: Vec<Message> = tail
            .messages()
            .filter(|m| session_id.is_none_or(|s| m.session_id == s))
            .cloned()
            .filter_map(|mut m| visible(&mut m).then_some(m))
            .collect();
        // Index rows, newest first, until `n` survive the tail's operations.
        let mut want = n.saturating_add(16);
        while let Some(rows) = self.inner.with_reader(|ix| ix.latest(session_id, want)) {
            let exhausted = rows.len() < want;
            let mut kept: Vec<Message> =
                rows.into_iter().map(|(m, _)| m).filter_map(|mut m| visible(&mut m).then_some(m)).collect();
            if kept.len() >= n || exhausted {
                out.append(&mut kept);
                break;
            }
            want = want.saturating_mul(4);
        }
        let mut seen = HashSet::new();
        out.retain(|m| seen.insert(m.id.clone()));
        out.sort_by_key(|m| std::cmp::Reverse(m.num));
        out.truncate(n);
        out.reverse();
        Ok(out)
    }

    /// Active messages appended after integer id `after` (of one session, or of the store), by
    /// id, at most `limit` (for following a store: `tail -f`). Messages of another process may
    /// get an id slightly below one already seen (ids are only roughly in time across lanes):
    /// a follower asks from a little before its last id and skips what it has seen.
    pub fn messages_after(&self, after: i64, session_id: Option<&str>, limit: usize) -> Result<Vec<Message>> {
        let positions = self.inner.with_reader(|ix| ix.applied_positions()).unwrap_or_default();
        let tail = Tail::read(&self.inner, &positions)?;
        let ops = self.tail_ops(&tail);
        let mut out: Vec<Message> = self
            .inner
            .with_reader(|ix| ix.after(after, session_id, limit))
            .unwrap_or_default()
            .into_iter()
            .map(|(m, _)| m)
            .collect();
        out.extend(tail.messages().filter(|m| m.num > after && session_id.is_none_or(|s| m.session_id == s)).cloned());
        let mut seen = HashSet::new();
        out.retain_mut(|m| {
            if !seen.insert(m.id.clone()) {
                return false;
            }
            match ops.get(&m.session_id) {
                Some(o) => match o.state(m.num) {
                    Some(s) if s.active => {
                        o.update(m);
                        true
                    }
                    _ => false,
                },
                None => true,
            }
        });
        out.sort_by_key(|m| m.num);
        out.truncate(limit);
        Ok(out)
    }

    /// Calls `visit` with every active message (of one session, at or after a time), by
    /// timestamp then id, streaming from the index (constant memory; the first message comes at
    /// once) merged with the unindexed tail. Stops at the first error `visit` returns. Returns
    /// how many it visited.
    pub fn export(
        &self,
        session_id: Option<&str>,
        since: Option<f64>,
        visit: &mut dyn FnMut(Message) -> Result<()>,
    ) -> Result<u64> {
        // `None`: the index cannot be used; the journal answers alone (the tail is all of it).
        let positions = self.inner.with_reader(|ix| ix.applied_positions());
        let tail = Tail::read(&self.inner, &positions.clone().unwrap_or_default())?;
        let ops = self.tail_ops(&tail);
        let fix = |mut m: Message| -> Option<Message> {
            match ops.get(&m.session_id) {
                Some(o) => match o.state(m.num) {
                    Some(s) if s.active => {
                        o.update(&mut m);
                        Some(m)
                    }
                    _ => None,
                },
                None => Some(m),
            }
        };
        let key = |m: &Message| (m.timestamp, m.num);
        let mut pending: Vec<Message> = tail
            .messages()
            .filter(|m| session_id.is_none_or(|s| m.session_id == s) && since.is_none_or(|t| m.timestamp >= t))
            .cloned()
            .filter_map(fix)
            .collect();
        pending.sort_by(|a, b| key(b).0.total_cmp(&key(a).0).then(key(b).1.cmp(&key(a).1)));
        let mut ids: HashSet<String> = pending.iter().map(|m| m.id.clone()).collect();
        let mut count = 0u64;
        let mut failure: Option<crate::Error> = None;
        let mut emit = |m: Message, failure: &mut Option<crate::Error>| -> bool {
            match visit(m) {
                Ok(()) => {
                    count += 1;
                    true
                }
                Err(e) => {
                    *failure = Some(e);
                    false
                }
            }
        };
        let path = self.inner.dir.join(crate::layout::INDEX_FILE);
        // Its own connection: an export holds its read for as long as the caller writes.
        let index = match positions {
            Some(_) => Some(crate::index::Index::open_read_only(&path, &self.inner.opts.index)?),
            None => None,
        };
        if let Some(ix) = index {
            ix.for_each_message(session_id, since, &mut |m| {
                // Tail messages that come before this row, first.
                while pending.last().is_some_and(|p| (p.timestamp, p.num) <= (m.timestamp, m.num)) {
                    if let Some(p) = pending.pop()
                        && !emit(p, &mut failure)
                    {
                        return false;
                    }
                }
                if ids.contains(&m.id) {
                    return true;
                }
                match fix(m) {
                    Some(m) => {
                        ids.insert(m.id.clone());
                        emit(m, &mut failure)
                    }
                    None => true,
                }
            })?;
        }
        if let Some(e) = failure {
            return Err(e);
        }
        while let Some(p) = pending.pop() {
            if !emit(p, &mut failure) {
                break;
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(count),
        }
    }

    /// One session, with changes not indexed yet applied; `None` if unknown or deleted.
    pub fn get_session(&self, id: &str) -> Result<Option<Session>> {
        let (positions, s, deleted) = self
            .inner
            .with_reader(|ix| Ok((ix.applied_positions()?, ix.get_session(id)?, ix.deleted_op(id)?)))
            .unwrap_or_default();
        let tail = Tail::read(&self.inner, &positions)?;
        let mut sessions: BTreeMap<String, Session> = s.into_iter().map(|s| (s.id.clone(), s)).collect();
        let mut deleted: BTreeMap<String, i64> = deleted.map(|op| (id.to_string(), op)).into_iter().collect();
        apply_tail_to_sessions(&self.inner, &tail, &mut sessions, &mut deleted, |s| s == id);
        Ok(sessions.remove(id))
    }

    /// Sessions matching a filter, newest first, including changes not indexed yet.
    pub fn list_sessions(&self, filter: &SessionFilter) -> Result<Vec<Session>> {
        let unlimited = SessionFilter { limit: None, ..filter.clone() };
        let (positions, listed) = self
            .inner
            .with_reader(|ix| Ok((ix.applied_positions()?, ix.list_sessions(&unlimited)?)))
            .unwrap_or_default();
        let tail = Tail::read(&self.inner, &positions)?;
        let mut by_id: BTreeMap<String, Session> = listed.into_iter().map(|s| (s.id.clone(), s)).collect();
        // Sessions the tail changes: start from their indexed row, whether or not it matched.
        let mut touched: BTreeMap<String, Session> = BTreeMap::new();
        let mut ids: HashSet<&str> = tail.entries.iter().filter_map(Entry::session_id).collect();
        ids.extend(tail.deletions().into_keys());
        let mut deleted = BTreeMap::new();
        if !ids.is_empty() {
            let _ = self.inner.with_reader(|ix| {
                for id in &ids {
                    if let Some(s) = ix.get_session(id)? {
                        touched.insert(s.id.clone(), s);
                    }
                    if let Some(op) = ix.deleted_op(id)? {
                        deleted.insert(id.to_string(), op);
                    }
                }
                Ok(())
            });
        }
        apply_tail_to_sessions(&self.inner, &tail, &mut touched, &mut deleted, |_| true);
        for id in &ids {
            by_id.remove(*id);
            if let Some(s) = touched.get(*id)
                && session_matches(s, filter)
            {
                by_id.insert(s.id.clone(), s.clone());
            }
        }
        let mut v: Vec<Session> = by_id.into_values().collect();
        v.sort_by(|a, b| b.started_at.unwrap_or(0.0).total_cmp(&a.started_at.unwrap_or(0.0)).then(a.id.cmp(&b.id)));
        if let Some(l) = filter.limit {
            v.truncate(l);
        }
        Ok(v)
    }

    /// The number of active messages of every session (index and tail), for listings.
    pub fn message_counts(&self) -> Result<BTreeMap<String, u64>> {
        let (positions, counts) =
            self.inner.with_reader(|ix| Ok((ix.applied_positions()?, ix.message_counts()?))).unwrap_or_default();
        let tail = Tail::read(&self.inner, &positions)?;
        let mut counts: BTreeMap<String, u64> = counts.into_iter().collect();
        // Sessions the tail rewrites are counted again from their whole history.
        let rewritten: HashSet<String> = tail.rewritten_sessions().into_iter().map(str::to_string).collect();
        for s in &rewritten {
            let n = self.fold_unread(s)?.0.iter().filter(|(_, st)| st.active).count() as u64;
            counts.insert(s.clone(), n);
        }
        // A message id counts once: a copy in another lane, or one the index had when the
        // counts were read, is the same message (as every read returns it). A copy the
        // compactor indexed since (from the tail itself) is not counted yet: its origin is above
        // the positions those counts were read at.
        let mut seen: HashSet<&str> = HashSet::new();
        let fresh: Vec<&Message> =
            tail.messages().filter(|m| !rewritten.contains(&m.session_id) && seen.insert(m.id.as_str())).collect();
        let indexed: HashSet<&str> = self
            .inner
            .with_reader(|ix| {
                let mut found = HashSet::new();
                for m in &fresh {
                    if let Some((lane, lsn)) = ix.message_origin(&m.id)?
                        && u64::try_from(lsn).unwrap_or(u64::MAX) <= positions.get(&lane).copied().unwrap_or(0)
                    {
                        found.insert(m.id.as_str());
                    }
                }
                Ok(found)
            })
            .unwrap_or_default();
        for m in fresh.into_iter().filter(|m| !indexed.contains(m.id.as_str())) {
            *counts.entry(m.session_id.clone()).or_insert(0) += 1;
        }
        counts.retain(|_, n| *n > 0);
        Ok(counts)
    }

    /// A metadata value set with [`Store::set_meta`].
    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        let (positions, mut v) =
            self.inner.with_reader(|ix| Ok((ix.applied_positions()?, ix.meta(key)?))).unwrap_or_default();
        let tail = Tail::read(&self.inner, &positions)?;
        for e in &tail.entries {
            if let Entry::Meta(m) = e
                && m.key == key
            {
                v = m.value.clone();
            }
        }
        Ok(v)
    }

    /// Every metadata key and value.
    pub fn all_meta(&self) -> Result<BTreeMap<String, String>> {
        let (positions, v) =
            self.inner.with_reader(|ix| Ok((ix.applied_positions()?, ix.all_meta()?))).unwrap_or_default();
        let tail = Tail::read(&self.inner, &positions)?;
        let mut out: BTreeMap<String, String> = v.into_iter().collect();
        for e in &tail.entries {
            if let Entry::Meta(m) = e {
                match &m.value {
                    Some(v) => out.insert(m.key.clone(), v.clone()),
                    None => out.remove(&m.key),
                };
            }
        }
        Ok(out)
    }
}

/// Applies the tail's session entries (patches, counters, deletions, first messages) to the
/// sessions `wanted` selects. A deletion removes a session; a later patch or message recreates it.
fn apply_tail_to_sessions(
    inner: &crate::state::Inner,
    tail: &Tail,
    sessions: &mut BTreeMap<String, Session>,
    deleted: &mut BTreeMap<String, i64>,
    wanted: impl Fn(&str) -> bool,
) {
    // The sessions the tail writes to are folded again, as the index folds them
    // (`index/apply.rs` `refold_session`): from the first message after the latest deletion,
    // then every patch and counter delta after it (the index's kept ones and the tail's), in
    // the store's order.
    let mut touched: BTreeSet<&str> = BTreeSet::new();
    for e in &tail.entries {
        match e {
            Entry::Delete(d) => {
                for s in d.sessions.iter().filter(|s| wanted(&s.id)) {
                    let op = deleted.entry(s.id.clone()).or_insert(d.op);
                    *op = (*op).max(d.op);
                    touched.insert(&s.id);
                }
            }
            Entry::Session(_) | Entry::Counters(_) | Entry::Message(_) | Entry::Rewrite(_) => {
                if let Some(id) = e.session_id().filter(|id| wanted(id)) {
                    touched.insert(id);
                }
            }
            _ => {}
        }
    }
    for id in touched {
        let after = deleted.get(id).copied();
        // Only a rewrite in the tail can remove the index's first message: then the whole
        // history is folded; otherwise the first of the index's and the tail's messages is the
        // base (a gateway's live session is always in the tail: its reads must stay cheap).
        let tail_rewrites = tail.entries.iter().any(|e| matches!(e, Entry::Rewrite(r) if r.session_id == id));
        let found = inner
            .with_reader(|ix| {
                let Some((first, kept)) = ix.session_after(id, after.unwrap_or(i64::MIN))? else { return Ok(None) };
                let ops = IndexedOps::read(ix, id)?;
                let history = if tail_rewrites { Some(ix.history(id)?) } else { None };
                Ok(Some((first, kept, ops, history)))
            })
            .flatten();
        let (row, kept) = match found {
            Some((first, kept, ops, history)) => {
                // The base: the first message still there (any state) after the deletion, as
                // every operation leaves them, indexed or not.
                let ops = SessionOps::of(id, ops, tail);
                let base: Option<(Option<String>, f64)> = match history {
                    Some(indexed) => {
                        fold_session(id, indexed, &ops, tail).into_iter().next().map(|(m, _)| (m.source, m.timestamp))
                    }
                    None => {
                        let from_tail = tail
                            .messages()
                            .filter(|m| m.session_id == id && ops.state(m.num).is_some())
                            .min_by_key(|m| m.num);
                        match (first, from_tail) {
                            (Some((num, ..)), Some(m)) if m.num < num => Some((m.source.clone(), m.timestamp)),
                            (Some((_, source, at)), _) => Some((source, at)),
                            (None, Some(m)) => Some((m.source.clone(), m.timestamp)),
                            (None, None) => None,
                        }
                    }
                };
                let row = base.map(|(source, at)| Session {
                    id: id.to_string(),
                    source,
                    started_at: Some(at),
                    ..Session::default()
                });
                (row, kept)
            }
            // An index from before the fold was kept (not upgraded yet): its row, then the tail.
            None => {
                let indexed = sessions.remove(id).filter(|_| !tail.deletions().contains_key(id));
                // The first message the tail's history operations leave (the one fold rule).
                let ops = SessionOps::of(id, IndexedOps::default(), tail);
                let row = indexed.or_else(|| {
                    tail.messages()
                        .filter(|m| m.session_id == id && after.is_none_or(|d| m.num > d) && ops.state(m.num).is_some())
                        .min_by_key(|m| m.num)
                        .map(|m| Session {
                            id: id.to_string(),
                            source: m.source.clone(),
                            started_at: Some(m.timestamp),
                            ..Session::default()
                        })
                });
                (row, Vec::new())
            }
        };
        let mut writes: Vec<(i64, &Entry)> = Vec::new();
        for (e, &key) in tail.entries.iter().zip(&tail.session_keys) {
            let (mine, key) = match e {
                Entry::Session(p) => (p.id == id, key),
                Entry::Counters(c) => (c.session_id == id, key),
                Entry::Rewrite(r) => (r.session_id == id, r.op),
                _ => (false, key),
            };
            if mine && after.is_none_or(|d| key > d) {
                writes.push((key, e));
            }
        }
        // The index is read again here, so the compactor may have applied some tail entries
        // since the positions were read: a key (a position, unique in the store) counts once.
        let in_tail: HashSet<i64> = writes.iter().map(|(k, _)| *k).collect();
        writes.extend(kept.iter().filter(|(k, _)| !in_tail.contains(k)).map(|(k, e)| (*k, e)));
        writes.sort_by_key(|(k, _)| *k);
        // The one fold of a session's row (the index's and PostgreSQL's too).
        let row = crate::model::fold_session_writes(id, row, writes.iter().filter_map(|(_, e)| e.session_write()));
        match row {
            Some(r) => {
                sessions.insert(id.to_string(), r);
            }
            None => {
                sessions.remove(id);
            }
        }
    }
}

fn session_matches(s: &Session, f: &SessionFilter) -> bool {
    if f.source.as_ref().is_some_and(|x| Some(x) != s.source.as_ref()) {
        return false;
    }
    let t = s.started_at.unwrap_or(0.0);
    if f.since.is_some_and(|x| t < x) || f.until.is_some_and(|x| t > x) {
        return false;
    }
    if let Some(needle) = &f.title_contains {
        let title = s.title.as_deref().unwrap_or("").to_lowercase();
        if !title.contains(&needle.to_lowercase()) {
            return false;
        }
    }
    true
}

impl Store {
    /// The text of message `rid` kept only in the journal, at the place its index row gives
    /// (`body_lane`, `body_seg`, `body_off`, `body_lsn`): what the SQL function `tidelog_body`
    /// returns, for connections the store does not open itself (the Python binding's read-only
    /// views). An unreadable record is an error naming file and offset.
    #[doc(hidden)]
    pub fn text_at(&self, lane: u64, segment: u64, offset: u64, lsn: u64, rid: i64) -> Result<Option<String>> {
        let at = crate::index::BodyAt { lane, segment, offset, lsn };
        crate::index::read_text(&self.inner.dir, &self.inner.text_reader, at, rid)
            .map_err(|detail| crate::error::Error::Decode { lane: crate::layout::lane_name(lane), lsn, detail })
    }
}
