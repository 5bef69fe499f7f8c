//! Appends: messages and session patches, validated, made durable before they are acknowledged.

use std::collections::HashSet;

use tidelog_journal::Lsn;

use super::Store;
use crate::entry;
use crate::entry::Entry;
use crate::error::{Error, Result};
use crate::model::{Message, SessionPatch};
use crate::time::now_secs;

/// What [`Store::append`] did with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The message id (assigned if the message had none).
    pub id: String,
    /// Its integer id ([`Message::num`]); `None` for a duplicate.
    pub num: Option<i64>,
    /// Its journal position in this process's lane; `None` if it was a duplicate of a message
    /// already stored (same client-supplied id) and nothing was written.
    pub lsn: Option<Lsn>,
}

/// Checks a message with the rules every door shares ([`crate::validate`]) and puts `extra`
/// in its canonical form.
fn validate(m: &mut Message) -> Result<()> {
    use crate::validate as v;
    let check = || -> v::Checked<()> {
        v::key("session_id", &m.session_id)?;
        v::key("role", &m.role)?;
        if !m.id.is_empty() {
            v::key("id", &m.id)?;
        }
        v::timestamp("timestamp", m.timestamp)?;
        v::json("tool_calls", m.tool_calls.as_deref())
    };
    check().map_err(Error::Invalid)?;
    v::canonicalize_object("extra", &mut m.extra).map_err(Error::Invalid)
}

impl Store {
    /// Appends one message; returns once it is durable (whatever the compactor is doing).
    /// An empty `id` gets a new UUIDv7; a zero `timestamp` gets the current time. A message
    /// whose client-supplied `id` is already stored is not written again.
    pub fn append(&self, msg: Message) -> Result<Appended> {
        let mut v = self.append_batch(vec![msg])?;
        v.pop().ok_or(Error::Closed)
    }

    /// Appends several messages with one durable commit. If any message is invalid, nothing is
    /// written.
    ///
    /// Messages with a client-supplied id are de-duplicated against every lane of the store:
    /// such a batch holds the store-wide write lock while it checks and appends, so two
    /// processes writing the same id at the same moment store it once.
    pub fn append_batch(&self, msgs: Vec<Message>) -> Result<Vec<Appended>> {
        self.writable()?;
        if msgs.iter().any(|m| !m.id.is_empty()) {
            self.inner.exclusive(|| self.append_batch_unlocked(msgs))
        } else {
            self.append_batch_unlocked(msgs)
        }
    }

    /// The journal payload of an entry other than a batch's messages: compressed now when
    /// [`StoreOptions::compression`](crate::StoreOptions::compression) is on and it is worth it.
    pub(super) fn payload(&self, e: &Entry) -> Result<Vec<u8>> {
        let lane = &self.inner.lane;
        Ok(if self.inner.opts.compression { entry::journal_payload(lane, e)? } else { entry::journal_raw(lane, e)? })
    }

    fn append_batch_unlocked(&self, msgs: Vec<Message>) -> Result<Vec<Appended>> {
        let mut out = Vec::with_capacity(msgs.len());
        let mut payloads = Vec::with_capacity(msgs.len());
        for m in self.prepare_messages(msgs, &mut out)? {
            payloads.push(entry::journal_raw(&self.inner.lane, &Entry::Message(m))?);
        }
        // A batch of several messages is a bulk write (import, restore): its long entries are
        // compressed now too (docs/design.md "One copy of the text").
        let bulk = payloads.len() > 1;
        let first = if self.inner.opts.compression && payloads.iter().any(|p| entry::worth_compressing(p.len(), bulk)) {
            let slots = &self.inner.compressing;
            let lone = |p: &[u8]| entry::shorter_payload(p, slots);
            let bulk_form = |p: &[u8]| entry::shorter_payload_bulk(p, slots);
            let improve: tidelog_journal::Improve<'_> = if bulk { &bulk_form } else { &lone };
            self.inner.lane.append_batch_improving(payloads, improve)?
        } else {
            let refs: Vec<&[u8]> = payloads.iter().map(|p| p.as_slice()).collect();
            self.inner.lane.append_batch(&refs)?
        };
        let mut next = first;
        for a in out.iter_mut() {
            if a.lsn.is_some() {
                a.lsn = Some(next);
                next += 1;
            }
        }
        Ok(out)
    }

    /// Validates messages, gives them ids (client string id when missing, integer id always) and
    /// a timestamp when missing; drops those already stored. Fills `out` with one [`Appended`]
    /// per message (LSN `Some(0)` for those to write); returns the messages to write.
    pub(super) fn prepare_messages(&self, msgs: Vec<Message>, out: &mut Vec<Appended>) -> Result<Vec<Message>> {
        let mut seen = HashSet::new();
        let mut keep = Vec::with_capacity(msgs.len());
        for (i, mut m) in msgs.into_iter().enumerate() {
            validate(&mut m).map_err(|e| match e {
                Error::Invalid(s) if i > 0 => Error::Invalid(format!("message {}: {s}", i + 1)),
                e => e,
            })?;
            let client_id = !m.id.is_empty();
            if !client_id {
                m.id = crate::time::new_uuid_v7().to_string();
            }
            if m.timestamp == 0.0 {
                m.timestamp = now_secs();
            }
            if client_id && (!seen.insert(m.id.clone()) || self.is_stored(&m.id)) {
                out.push(Appended { id: m.id, num: None, lsn: None });
                continue;
            }
            out.push(Appended { id: m.id.clone(), num: Some(0), lsn: Some(0) });
            keep.push(m);
        }
        // Consecutive positions of the store's order, taken now: every write that starts after
        // this one returns sorts after these messages.
        let first = if keep.is_empty() { 0 } else { self.inner.seq()?.take(keep.len() as u64) };
        let mut slots = out.iter_mut().filter(|a| a.num.is_some()).skip_while(|a| a.num != Some(0));
        for (num, m) in (first..).zip(keep.iter_mut()) {
            m.num = num;
            if let Some(a) = slots.next() {
                a.num = Some(m.num);
            }
        }
        Ok(keep)
    }

    /// Whether a message id is already stored: indexed, or appended to any lane and not indexed
    /// yet. Exact when the caller holds the store-wide write lock (every other writer of a
    /// client id does too).
    pub(super) fn is_stored(&self, id: &str) -> bool {
        let found = self.inner.with_reader(|ix| Ok((ix.contains_message(id)?, ix.applied_positions()?)));
        let positions = match found {
            Some((true, _)) => return true,
            Some((false, positions)) => positions,
            None => Default::default(),
        };
        let applied = |lane: &str| positions.get(lane).copied().unwrap_or(0);
        let mut pending = self.inner.pending.lock();
        let names = crate::layout::lane_names(&self.inner.dir).unwrap_or_default();
        for name in names {
            let Some(j) = self.inner.lane_journal(&name) else { continue };
            let lane_no = crate::layout::lane_number(&name).unwrap_or(0);
            let from = pending.scanned.get(&name).copied().unwrap_or(0).max(applied(&name)) + 1;
            let mut last = None;
            for r in j.iter_from(from).flatten() {
                match entry::decode_record(lane_no, r.lsn, &r.payload) {
                    Ok(Entry::Message(m)) => {
                        pending.ids.insert(m.id, (name.clone(), r.lsn, m.session_id));
                    }
                    Ok(Entry::Rewrite(rw)) => {
                        for m in rw.messages {
                            pending.ids.insert(m.id, (name.clone(), r.lsn, m.session_id));
                        }
                    }
                    _ => {}
                }
                last = Some(r.lsn);
            }
            if let Some(l) = last {
                pending.scanned.insert(name, l);
            }
        }
        if pending.ids.len() > 4096 {
            pending.ids.retain(|_, (lane, lsn, _)| *lsn > applied(lane));
        }
        let session = match pending.ids.get(id) {
            Some((lane, lsn, session)) if *lsn > applied(lane) => session.clone(),
            _ => return false,
        };
        drop(pending);
        // A copy that a later deletion or clear (not indexed yet either) removed is not stored,
        // just as it is not once the index applied that deletion.
        self.fold_unread(&session).map_or(true, |(v, _)| v.iter().any(|(m, _)| m.id == id))
    }

    /// Creates or updates a session: every `Some` field of the patch is set. Durable on return.
    pub fn upsert_session(&self, patch: SessionPatch) -> Result<Lsn> {
        self.writable()?;
        let mut patch = patch;
        validate_patch(&mut patch).map_err(Error::Invalid)?;
        if patch.fill_only {
            // Decided under the store-wide write lock against what every lane holds, and
            // written as a plain patch of just the fields it fills: the outcome no longer
            // depends on the order in which the compactor applies the lanes.
            return self.inner.exclusive(|| {
                let current = self.get_session(&patch.id)?;
                let plain = fill_to_plain(&patch, current);
                self.write_patch(plain)
            });
        }
        self.write_patch(patch)
    }

    fn write_patch(&self, mut patch: SessionPatch) -> Result<Lsn> {
        patch.op = Some(self.inner.seq()?.next());
        Ok(self.inner.lane.append(&self.payload(&Entry::Session(patch))?)?)
    }

    /// Ends a session now with a reason.
    pub fn end_session(&self, id: &str, reason: &str) -> Result<Lsn> {
        self.upsert_session(SessionPatch {
            id: id.to_string(),
            ended_at: Some(now_secs()),
            end_reason: Some(reason.to_string()),
            ..SessionPatch::default()
        })
    }
}

/// Checks a session patch with the rules every door shares ([`crate::validate`]) and puts
/// `extra` in its canonical form.
fn validate_patch(p: &mut SessionPatch) -> crate::validate::Checked<()> {
    use crate::validate as v;
    v::key("session id", &p.id)?;
    v::timestamp_opt("started_at", p.started_at)?;
    v::timestamp_opt("ended_at", p.ended_at)?;
    v::canonicalize_object("extra", &mut p.extra)
}

/// The plain patch that has the effect of the `fill_only` patch `p` on `current`: the fields
/// it fills, with `extra` as merged (keys already set win).
fn fill_to_plain(p: &SessionPatch, current: Option<crate::model::Session>) -> SessionPatch {
    let after = p.apply_to(current.clone());
    let before = current.unwrap_or_else(|| crate::model::Session { id: p.id.clone(), ..Default::default() });
    macro_rules! changed {
        ($($f:ident),*) => {
            SessionPatch {
                id: p.id.clone(),
                reopen: p.reopen,
                clear_title: p.clear_title,
                $( $f: if after.$f != before.$f { after.$f.clone() } else { None }, )*
                ..SessionPatch::default()
            }
        };
    }
    changed!(source, model, title, user_id, chat_id, parent_session_id, started_at, ended_at, end_reason, extra)
}
