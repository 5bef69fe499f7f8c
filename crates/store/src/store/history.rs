//! History operations: every change a gateway makes to what it already wrote is a journal entry
//! (docs/design.md "History operations"), so a rebuild of the index from the journal gives the
//! same reads whatever ran.

use std::collections::BTreeSet;

use tidelog_journal::Lsn;

use super::Store;
use super::append::Appended;
use crate::entry::Entry;
use crate::error::{Error, Result};
use crate::index::SessionFilter;
use crate::model::{
    CounterDelta, DeleteSessions, Message, MessageRef, MessageState, MessageUpdate, MetaSet, Rewrite, RewriteMode,
    SessionPatch, SessionRef,
};

/// Which messages of a session [`Store::history`] returns. Default: the active ones, all of
/// them, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryQuery {
    /// The session.
    pub session_id: String,
    /// Also archived messages.
    pub include_inactive: bool,
    /// Also compacted messages.
    pub include_compacted: bool,
    /// Only messages with a larger integer id.
    pub after_id: Option<i64>,
    /// At most this many.
    pub limit: Option<usize>,
    /// With `limit`: the last ones rather than the first ones (still in id order).
    pub latest: bool,
}

impl HistoryQuery {
    /// The active messages of `session_id`.
    pub fn new(session_id: impl Into<String>) -> Self {
        HistoryQuery { session_id: session_id.into(), ..HistoryQuery::default() }
    }

    /// The messages of a session's fold (by integer id) that the query asks for.
    pub(crate) fn select(&self, folded: Vec<(Message, MessageState)>) -> Vec<(Message, MessageState)> {
        let mut v: Vec<(Message, MessageState)> = folded
            .into_iter()
            .filter(|(m, s)| {
                (s.active || (self.include_inactive && !s.compacted) || (self.include_compacted && s.compacted))
                    && self.after_id.is_none_or(|a| m.num > a)
            })
            .collect();
        if let Some(limit) = self.limit {
            if self.latest {
                let cut = v.len().saturating_sub(limit);
                v.drain(..cut);
            } else {
                v.truncate(limit);
            }
        }
        v
    }
}

fn check_key(what: &str, v: &str) -> Result<()> {
    crate::validate::key(what, v).map_err(Error::Invalid)
}

impl Store {
    fn append_entry(&self, e: &Entry) -> Result<Lsn> {
        self.writable()?;
        Ok(self.inner.lane.append(&self.payload(e)?)?)
    }

    /// Changes fields of a message (by integer id, in the session the update names). Durable on
    /// return; reads see it at once. A message that is not in that session (never written, in
    /// another session, or deleted) is [`Error::NotFound`]: the check and the write hold the
    /// store-wide write lock and read every lane, so the update is never written for a message
    /// another process has not stored.
    pub fn update_message(&self, update: MessageUpdate) -> Result<Lsn> {
        let mut update = update;
        check_key("session_id", &update.session_id)?;
        crate::validate::json("tool_calls", update.tool_calls.as_deref()).map_err(Error::Invalid)?;
        crate::validate::canonicalize_object("extra", &mut update.extra).map_err(Error::Invalid)?;
        self.writable()?;
        self.inner.exclusive(|| {
            let found = self.fold_unread(&update.session_id)?.0.iter().any(|(m, _)| update.edits(&m.session_id, m.num));
            if !found {
                return Err(Error::NotFound { what: "message", id: update.num.to_string() });
            }
            self.append_entry(&Entry::Update(update))
        })
    }

    /// Rewrites a session's history in one durable entry: every message appended before this
    /// call (all of them, or with `active_only` the active ones) is deleted, archived or
    /// compacted according to `mode`, then `messages` are appended after it. Replace (/undo,
    /// /retry: [`RewriteMode::Delete`] or [`RewriteMode::Archive`]), clear (`Delete` with no
    /// messages) and archive-and-compact ([`RewriteMode::Compact`] with the summary) are all
    /// this call. Returns what was appended.
    pub fn rewrite(
        &self,
        session_id: &str,
        mode: RewriteMode,
        active_only: bool,
        messages: Vec<Message>,
    ) -> Result<Vec<Appended>> {
        self.writable()?;
        check_key("session_id", session_id)?;
        if let Some(m) = messages.iter().find(|m| m.session_id != session_id) {
            return Err(Error::Invalid(format!("message for session {} in a rewrite of {session_id}", m.session_id)));
        }
        if messages.iter().any(|m| !m.id.is_empty()) {
            self.inner.exclusive(|| self.rewrite_unlocked(session_id, mode, active_only, messages))
        } else {
            self.rewrite_unlocked(session_id, mode, active_only, messages)
        }
    }

    fn rewrite_unlocked(
        &self,
        session_id: &str,
        mode: RewriteMode,
        active_only: bool,
        messages: Vec<Message>,
    ) -> Result<Vec<Appended>> {
        let op = self.inner.seq()?.next();
        let mut out = Vec::with_capacity(messages.len());
        let messages = self.prepare_messages(messages, &mut out)?;
        // Messages it skipped as duplicates (their client id is stored) stay as they are: a
        // rewrite never removes what it was asked to add (docs/design.md "One fold rule"). Exact:
        // a rewrite with client ids holds the store-wide write lock.
        let skipped: BTreeSet<&str> = out.iter().filter(|a| a.num.is_none()).map(|a| a.id.as_str()).collect();
        let kept = if skipped.is_empty() {
            Vec::new()
        } else {
            self.fold_unread(session_id)?
                .0
                .into_iter()
                .filter(|(m, _)| skipped.contains(m.id.as_str()) && crate::model::covers(op, m.num))
                .map(|(m, _)| MessageRef { num: m.num })
                .collect()
        };
        let e = Entry::Rewrite(Rewrite {
            session_id: session_id.to_string(),
            op,
            mode: mode.code(),
            active_only,
            messages,
            kept,
        });
        let lsn = self.inner.lane.append(&self.payload(&e)?)?;
        if mode == RewriteMode::Delete {
            self.erase_pending();
        }
        for a in out.iter_mut().filter(|a| a.lsn.is_some()) {
            a.lsn = Some(lsn);
        }
        Ok(out)
    }

    /// Deletes sessions (and, with `with_children`, every session whose parent chain leads to
    /// one of them) with all their messages. Gone from reads and search on return; erased from
    /// the index when the compactor applies it, and from every file of the store folder by the
    /// erase pass ([`ops::erase_store`](crate::ops::erase_store)) within `erase_within`, also if
    /// this process exits at once. Returns the sessions deleted.
    pub fn delete_sessions(&self, ids: &[&str], with_children: bool) -> Result<Vec<String>> {
        self.writable()?;
        let mut all: BTreeSet<String> = BTreeSet::new();
        for id in ids {
            check_key("session id", id)?;
            all.insert((*id).to_string());
        }
        if with_children {
            let sessions = self.list_sessions(&SessionFilter::default())?;
            loop {
                let before = all.len();
                for s in &sessions {
                    if s.parent_session_id.as_ref().is_some_and(|p| all.contains(p)) {
                        all.insert(s.id.clone());
                    }
                }
                if all.len() == before {
                    break;
                }
            }
        }
        let op = self.inner.seq()?.next();
        let sessions = all.iter().map(|id| SessionRef { id: id.clone() }).collect();
        self.append_entry(&Entry::Delete(DeleteSessions { op, sessions }))?;
        self.erase_pending();
        Ok(all.into_iter().collect())
    }

    /// Records (durably, in the store folder) that content of a deletion just made must leave the
    /// disk: whichever process erases next sees it, also if this one exits at once. A failure is
    /// logged: the compactor finds the deletion in the journal anyway when it applies it.
    fn erase_pending(&self) {
        if let Err(e) = crate::layout::mark_erase_pending(&self.inner.dir) {
            tracing::warn!("cannot record the pending erasure ({e}); it is erased once the deletion is indexed");
        }
    }

    /// Adds to a session's counters (tokens, API calls, cost). Additive: entries from several
    /// processes commute.
    pub fn add_counters(&self, delta: CounterDelta) -> Result<Lsn> {
        check_key("session_id", &delta.session_id)?;
        if !delta.estimated_cost_usd.is_finite() || !delta.actual_cost_usd.is_finite() {
            return Err(Error::Invalid("cost is not a finite number".into()));
        }
        let mut delta = delta;
        delta.op = Some(self.inner.seq()?.next());
        self.append_entry(&Entry::Counters(delta))
    }

    /// Sets (or with `None` removes) a small metadata value of the store.
    pub fn set_meta(&self, key: &str, value: Option<&str>) -> Result<Lsn> {
        check_key("key", key)?;
        self.append_entry(&Entry::Meta(MetaSet { key: key.to_string(), value: value.map(str::to_string) }))
    }

    /// Sets or clears a session's title. Titles are unique: a title another session has is
    /// refused ([`Error::TitleTaken`]). The check and the write hold the store-wide write lock,
    /// so two processes setting the same title at the same moment cannot both succeed.
    pub fn set_title(&self, session_id: &str, title: Option<&str>) -> Result<Lsn> {
        check_key("session_id", session_id)?;
        self.writable()?;
        self.inner.exclusive(|| self.set_title_unlocked(session_id, title))
    }

    /// Runs `f` holding the store-wide write lock: no conditional write of any process of the
    /// store (unique titles, client-id de-duplication, [`Store::exclusive`] sections of other
    /// processes) runs meanwhile, and every read inside `f` sees every write that returned
    /// before. For read-decide-write sequences such as "import once" or claims. Reentrant in
    /// the calling thread; plain appends of other processes are not blocked.
    pub fn exclusive<T>(&self, f: impl FnOnce(&Store) -> Result<T>) -> Result<T> {
        self.writable()?;
        self.inner.exclusive(|| f(self))
    }

    /// Takes the store-wide write lock for the calling thread until [`Store::unlock_writes`]
    /// (for bindings whose critical sections cannot be a closure; prefer [`Store::exclusive`]).
    #[doc(hidden)]
    pub fn lock_writes(&self) -> Result<()> {
        self.writable()?;
        self.inner.acquire_write()
    }

    /// Leaves one [`Store::lock_writes`] of the calling thread; false if it held none.
    #[doc(hidden)]
    pub fn unlock_writes(&self) -> bool {
        self.inner.release_write()
    }

    fn set_title_unlocked(&self, session_id: &str, title: Option<&str>) -> Result<Lsn> {
        let patch = match title {
            Some(t) => {
                if t.is_empty() {
                    return Err(Error::Invalid("title is empty".into()));
                }
                let taken = self
                    .list_sessions(&SessionFilter { title_contains: Some(t.to_string()), ..SessionFilter::default() })?
                    .into_iter()
                    .find(|s| s.id != session_id && s.title.as_deref() == Some(t));
                if let Some(other) = taken {
                    return Err(Error::TitleTaken { title: t.to_string(), other: other.id });
                }
                SessionPatch { id: session_id.to_string(), title: Some(t.to_string()), ..SessionPatch::default() }
            }
            None => SessionPatch { id: session_id.to_string(), clear_title: true, ..SessionPatch::default() },
        };
        self.upsert_session(patch)
    }

    /// Reopens an ended session (clears its end time and reason).
    pub fn reopen_session(&self, id: &str) -> Result<Lsn> {
        self.upsert_session(SessionPatch { id: id.to_string(), reopen: true, ..SessionPatch::default() })
    }
}
