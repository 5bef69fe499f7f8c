//! `erase`: removes the content that deletions covered from the journal files, so that deleted
//! means gone from the disk, not only from reads.
//!
//! A pass reads every lane, decides from the history operations which records hold content no
//! read may return any more (messages a deletion or a delete-rewrite covered, updates of such
//! messages, the patches and counters of a deleted session that was not recreated), and rewrites
//! each sealed segment holding one (`tidelog_journal::rewrite_segment`): those records keep
//! their LSN and become an `Erased` entry; a rewrite entry loses only the messages it must. An
//! active segment is sealed first when the lane's writer is this process (the compactor's own
//! lane) or no process (an idle lane); a lane whose writer runs elsewhere is reported as
//! pending until that writer seals it. Index rows were removed when the compactor applied the
//! deletion (FTS5 secure-delete, SQLite secure_delete); quarantined copies of the index made
//! before the deletion are reported, since they may still hold the content.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use serde::Serialize;
use tidelog_journal::{Journal, RecoveryMode};
use tracing::{info, warn};

use crate::entry::{self, Entry};
use crate::error::Result;
use crate::layout::{QUARANTINE_DIR, lane_dir, lane_names, lane_number, list_quarantine, try_lock_compactor};
use crate::model::{Erased, Message, Rewrite};
use crate::read::{IndexedOps, SessionOps, Tail};

/// What an erase pass did and what is left.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EraseReport {
    /// Records that held erasable content before the pass.
    pub erasable_records: u64,
    /// Records rewritten by this pass.
    pub erased_records: u64,
    /// Segment files rewritten.
    pub segments_rewritten: Vec<PathBuf>,
    /// Active segments sealed so they could be rewritten.
    pub segments_sealed: u64,
    /// What still holds erasable content, and why it could not be rewritten now.
    pub pending: Vec<String>,
    /// Quarantined files that may still hold erased content (made before a deletion).
    pub quarantine_may_hold: Vec<PathBuf>,
}

impl EraseReport {
    /// True when no file of the store holds erasable content any more.
    pub fn is_complete(&self) -> bool {
        self.pending.is_empty() && self.quarantine_may_hold.is_empty()
    }
}

/// What may stay: decided from every lane's entries.
#[derive(Debug, Default)]
struct Plan {
    /// Integer ids of messages still alive.
    live: HashSet<i64>,
    /// Integer ids of messages that are dead (covered by a deletion).
    dead: HashSet<i64>,
    /// Sessions deleted and not recreated since.
    gone_sessions: BTreeSet<String>,
    /// Whether any deletion exists at all.
    any_deletion: bool,
}

impl Plan {
    fn build(journals: &BTreeMap<String, Journal>) -> Result<Plan> {
        let mut msgs: Vec<(String, i64)> = Vec::new();
        let mut ops: BTreeMap<String, IndexedOps> = BTreeMap::new();
        let mut deleted: BTreeMap<String, i64> = BTreeMap::new();
        let mut any_deletion = false;
        for (name, j) in journals {
            let lane = lane_number(name).unwrap_or(0);
            for r in j.iter_from(j.first_lsn()) {
                let r = r?;
                let Ok(e) = entry::decode_record(lane, r.lsn, &r.payload) else { continue };
                match e {
                    Entry::Message(m) => msgs.push((m.session_id, m.num)),
                    Entry::Rewrite(rw) => {
                        let mode = rw.rewrite_mode();
                        any_deletion |= mode == crate::model::RewriteMode::Delete;
                        ops.entry(rw.session_id.clone()).or_default().rewrites.push((rw.op, mode, rw.active_only));
                        msgs.extend(rw.messages.into_iter().map(|m| (m.session_id, m.num)));
                    }
                    Entry::Delete(d) => {
                        any_deletion = true;
                        for s in d.sessions {
                            let o = ops.entry(s.id.clone()).or_default();
                            o.deleted = o.deleted.max(Some(d.op));
                            let e = deleted.entry(s.id).or_insert(d.op);
                            *e = (*e).max(d.op);
                        }
                    }
                    _ => {}
                }
            }
        }
        let empty = Tail::default();
        let ops: BTreeMap<String, SessionOps> =
            ops.into_iter().map(|(s, o)| (s.clone(), SessionOps::of(&s, o, &empty))).collect();
        let mut plan = Plan { any_deletion, ..Plan::default() };
        let mut recreated: BTreeSet<String> = BTreeSet::new();
        for (s, num) in msgs {
            let alive = ops.get(&s).is_none_or(|o| o.state(num).is_some());
            if alive {
                plan.live.insert(num);
                if deleted.contains_key(&s) {
                    recreated.insert(s);
                }
            } else {
                plan.dead.insert(num);
            }
        }
        plan.gone_sessions = deleted.into_keys().filter(|s| !recreated.contains(s)).collect();
        Ok(plan)
    }

    /// The payload a record must get instead of its own, if it holds erasable content.
    fn replacement(&self, e: &Entry) -> Option<Entry> {
        let erased = |e: &Entry| Some(Entry::Erased(Erased { kind: e.kind_number() }));
        match e {
            Entry::Message(m) if self.dead.contains(&m.num) => erased(e),
            Entry::Update(u) if self.dead.contains(&u.num) || self.gone_sessions.contains(&u.session_id) => erased(e),
            Entry::Session(p) if self.gone_sessions.contains(&p.id) => erased(e),
            Entry::Counters(c) if self.gone_sessions.contains(&c.session_id) => erased(e),
            Entry::Rewrite(r) if r.messages.iter().any(|m| self.dead.contains(&m.num)) => {
                let messages: Vec<Message> =
                    r.messages.iter().filter(|m| !self.dead.contains(&m.num)).cloned().collect();
                Some(Entry::Rewrite(Rewrite { messages, ..r.clone() }))
            }
            _ => None,
        }
    }
}

/// Erases, from every lane of the store in `dir`, the content deletions covered. `own` is this
/// process's lane when the caller is a running store (its active segment is sealed through it);
/// idle lanes are opened as a writer briefly to seal theirs. Never deletes a file: each segment
/// is replaced by its rewritten copy.
///
/// Passes must not overlap: a caller other than the compactor (`own` is `None`) takes the
/// compactor lock for the pass and gets [`Error::CompactorBusy`](crate::Error::CompactorBusy)
/// if a running process holds it (that process erases within its deadline).
pub fn erase_store(dir: &Path, own: Option<&Journal>) -> Result<EraseReport> {
    let _lock = match own {
        Some(_) => None,
        None => Some(
            try_lock_compactor(dir)?
                .ok_or_else(|| crate::Error::CompactorBusy { lock: dir.join(crate::layout::COMPACTOR_LOCK) })?,
        ),
    };
    let mut rep = EraseReport::default();
    let (journals, unreadable) = open_lanes(dir)?;
    rep.pending.extend(unreadable);
    let plan = Plan::build(&journals)?;
    if !plan.any_deletion {
        return Ok(rep);
    }
    let before = count_erasable(&plan, &journals)?;
    rep.erasable_records = before.values().sum();
    let opts = super::read_options(RecoveryMode::Strict);
    for (name, n) in &before {
        if *n == 0 {
            continue;
        }
        let ldir = lane_dir(dir, name);
        let lane = lane_number(name).unwrap_or(0);
        // The active segment: seal it where this process may.
        let sealed_now = match own.filter(|o| o.dir() == ldir) {
            Some(o) => o.seal_active()?,
            None => match Journal::open(&ldir, opts.clone()) {
                Ok(w) => {
                    let s = w.seal_active()?;
                    w.close()?;
                    s
                }
                Err(tidelog_journal::Error::Locked { .. }) => false,
                Err(e) => {
                    rep.pending.push(format!("lane {name}: cannot open it to seal its active segment: {e}"));
                    false
                }
            },
        };
        rep.segments_sealed += u64::from(sealed_now);
        for id in tidelog_journal::sealed_segment_ids(&ldir, &opts)? {
            let r = tidelog_journal::rewrite_segment(&ldir, &opts, id, &mut |lsn, payload| {
                let e = entry::decode_record(lane, lsn, payload).ok()?;
                plan.replacement(&e).map(|x| entry::encode(&x))
            });
            match r {
                Ok(r) if r.replaced > 0 => {
                    rep.erased_records += r.replaced;
                    rep.segments_rewritten.push(r.path);
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(lane = %name, segment = id, "segment not rewritten: {e}");
                    rep.pending.push(format!("lane {name} segment {id} cannot be rewritten: {e}"));
                }
            }
        }
    }
    // What is left, read afresh from the files.
    let (journals, _) = open_lanes(dir)?;
    for (name, n) in count_erasable(&plan, &journals)? {
        if n > 0 {
            rep.pending.push(format!(
                "lane {name}: {n} record(s) still hold erasable content (in the active segment of a writer in \
                 another process: erased after that writer seals it, or at the next pass once it exits)"
            ));
        }
    }
    // Quarantined index copies may hold deleted text (they were moved aside whole).
    for f in list_quarantine(&dir.join(QUARANTINE_DIR)) {
        rep.quarantine_may_hold.push(f.path);
    }
    info!(
        erasable = rep.erasable_records,
        erased = rep.erased_records,
        segments = rep.segments_rewritten.len(),
        pending = rep.pending.len(),
        "erase pass"
    );
    Ok(rep)
}

/// How many records of each lane still hold content a deletion covered (read-only; for
/// `verify`). Empty when there was never a deletion.
pub fn erasable_records(dir: &Path) -> Result<BTreeMap<String, u64>> {
    let (journals, _) = open_lanes(dir)?;
    let plan = Plan::build(&journals)?;
    if !plan.any_deletion {
        return Ok(BTreeMap::new());
    }
    let mut counts = count_erasable(&plan, &journals)?;
    counts.retain(|_, n| *n > 0);
    Ok(counts)
}

/// Read-only handles on every lane, and a line for each lane that cannot be read.
fn open_lanes(dir: &Path) -> Result<(BTreeMap<String, Journal>, Vec<String>)> {
    let ropts = super::read_options(RecoveryMode::Strict);
    let mut journals = BTreeMap::new();
    let mut unreadable = Vec::new();
    for name in lane_names(dir)? {
        match Journal::open_read_only(lane_dir(dir, &name), ropts.clone()) {
            Ok(j) => {
                journals.insert(name, j);
            }
            Err(e) => unreadable.push(format!("lane {name} cannot be read ({e}); it may hold erasable content")),
        }
    }
    Ok((journals, unreadable))
}

/// Records holding erasable content, per lane.
fn count_erasable(plan: &Plan, journals: &BTreeMap<String, Journal>) -> Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    for (name, j) in journals {
        let lane = lane_number(name).unwrap_or(0);
        let mut n = 0;
        for r in j.iter_from(j.first_lsn()) {
            let r = r?;
            if let Ok(e) = entry::decode_record(lane, r.lsn, &r.payload)
                && plan.replacement(&e).is_some()
            {
                n += 1;
            }
        }
        out.insert(name.clone(), n);
    }
    Ok(out)
}
