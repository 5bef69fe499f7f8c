//! Reads: the index merged with the journal entries it does not hold yet, so every read sees
//! every acknowledged message whatever the compactor is doing.

mod search;

use std::collections::{BTreeMap, HashSet};

use crate::error::Result;
use crate::index::SessionFilter;
use crate::model::{Entry, Message, Session};
use crate::store::Store;

impl Store {
    /// Every message of a session, in order, including those not indexed yet.
    pub fn messages(&self, session_id: &str) -> Result<Vec<Message>> {
        let (positions, mut msgs) =
            self.inner.with_reader(|ix| Ok((ix.applied_positions()?, ix.messages(session_id)?))).unwrap_or_default();
        let mut seen: HashSet<String> = msgs.iter().map(|m| m.id.clone()).collect();
        self.inner.for_each_unindexed(&positions, |_, _, e| {
            if let Entry::Message(m) = e
                && m.session_id == session_id
                && seen.insert(m.id.clone())
            {
                msgs.push(m);
            }
        })?;
        msgs.sort_by(|a, b| a.timestamp.total_cmp(&b.timestamp));
        Ok(msgs)
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

    /// One session, with changes not indexed yet applied.
    pub fn get_session(&self, id: &str) -> Result<Option<Session>> {
        let (positions, mut s) =
            self.inner.with_reader(|ix| Ok((ix.applied_positions()?, ix.get_session(id)?))).unwrap_or_default();
        self.inner.for_each_unindexed(&positions, |_, _, e| match e {
            Entry::Session(p) if p.id == id => s = Some(p.apply_to(s.take())),
            Entry::Message(m) if m.session_id == id && s.is_none() => {
                s = Some(Session {
                    id: id.to_string(),
                    source: m.source.clone(),
                    started_at: Some(m.timestamp),
                    ..Session::default()
                })
            }
            _ => {}
        })?;
        Ok(s)
    }

    /// Sessions matching a filter, newest first, including changes not indexed yet.
    pub fn list_sessions(&self, filter: &SessionFilter) -> Result<Vec<Session>> {
        let unlimited = SessionFilter { limit: None, ..filter.clone() };
        let everything = SessionFilter::default();
        let (positions, listed, all) = self
            .inner
            .with_reader(|ix| {
                Ok((ix.applied_positions()?, ix.list_sessions(&unlimited)?, ix.list_sessions(&everything)?))
            })
            .unwrap_or_default();
        let mut by_id: BTreeMap<String, Session> = listed.into_iter().map(|s| (s.id.clone(), s)).collect();
        let mut known: BTreeMap<String, Session> = all.into_iter().map(|s| (s.id.clone(), s)).collect();
        let mut touched = HashSet::new();
        self.inner.for_each_unindexed(&positions, |_, _, e| match e {
            Entry::Session(p) => {
                let s = p.apply_to(known.remove(&p.id).or_else(|| by_id.remove(&p.id)));
                touched.insert(s.id.clone());
                known.insert(s.id.clone(), s);
            }
            Entry::Message(m) => {
                if !known.contains_key(&m.session_id) && !by_id.contains_key(&m.session_id) {
                    touched.insert(m.session_id.clone());
                    known.insert(
                        m.session_id.clone(),
                        Session {
                            id: m.session_id.clone(),
                            source: m.source.clone(),
                            started_at: Some(m.timestamp),
                            ..Session::default()
                        },
                    );
                }
            }
        })?;
        for id in touched {
            if let Some(s) = known.get(&id) {
                by_id.remove(&id);
                if session_matches(s, filter) {
                    by_id.insert(id, s.clone());
                }
            }
        }
        let mut v: Vec<Session> = by_id.into_values().collect();
        v.sort_by(|a, b| b.started_at.unwrap_or(0.0).total_cmp(&a.started_at.unwrap_or(0.0)).then(a.id.cmp(&b.id)));
        if let Some(l) = filter.limit {
            v.truncate(l);
        }
        Ok(v)
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
