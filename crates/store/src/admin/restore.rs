//! Restoring from the index what the journal lost: the index is a copy of the history, and after
//! damage it may hold the last copy of a message. Restored messages are appended to a new lane,
//! marked in `extra` under `logbook_restored`, and reported.

use std::path::Path;

use serde::Serialize;
use tidelog_journal::{Journal, RecoveryMode};
use tracing::{error, warn};

use super::read_options;
use crate::entry::{self, Entry};
use crate::error::Result;
use crate::index::{Index, IndexOptions};
use crate::layout::{LANES_DIR, create_private_dir, lane_dir, lane_name, lane_names, lane_number};
use crate::model::{Message, merge_extra};

/// The key of `extra` that marks a message restored from the index.
pub const RESTORED_KEY: &str = "logbook_restored";

/// Messages appended per journal batch while restoring.
const RESTORE_BATCH: usize = 256;

/// One message restored from the index.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RestoredMessage {
    /// Message id.
    pub id: String,
    /// Its session.
    pub session_id: String,
    /// The lane and LSN whose record was lost.
    pub from_lane: String,
    /// The LSN lost.
    pub from_lsn: u64,
    /// Why its text could not be restored, if it could not: a text the index kept only in the
    /// journal (index schema 5) is lost with its record; the message is restored without it.
    pub text_lost: Option<String>,
}

/// What `repair --salvage` or `rebuild-index` restored from the index.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RestoreReport {
    /// The lane the restored messages were appended to (`None` if nothing was restored).
    pub lane: Option<String>,
    /// Every message restored.
    pub restored: Vec<RestoredMessage>,
    /// LSN ranges lost in the journal for which the index held no message (lane, first, last):
    /// records that were not messages (session changes, updates), or never indexed. Gone.
    pub not_in_index: Vec<(String, u64, u64)>,
    /// Why the index could not be read for restoring, if it could not.
    pub error: Option<String>,
}

/// Looks up in the index at `index_path` the messages of every lost range `(lane, first, last)`
/// for which `keep` holds, and appends them (marked restored) to a new lane of the store in `dir`.
pub(crate) fn restore_lost(
    dir: &Path,
    index_path: &Path,
    lost: &[(String, u64, u64)],
    keep: &dyn Fn(&Message) -> bool,
) -> Result<RestoreReport> {
    let mut rep = RestoreReport::default();
    if lost.is_empty() {
        return Ok(rep);
    }
    let ix = match Index::open_read_only(index_path, &IndexOptions::default()) {
        Ok(ix) => ix,
        Err(e) => {
            warn!(index = %index_path.display(), "the index cannot be read to restore lost records: {e}");
            rep.error = Some(e.to_string());
            for (lane, a, b) in lost {
                rep.not_in_index.push((lane.clone(), *a, *b));
            }
            return Ok(rep);
        }
    };
    let now = crate::index::unix_now();
    let mut found: Vec<Message> = Vec::new();
    for (lane, first, last) in lost {
        let rows = match ix.messages_at(lane, *first, *last) {
            Ok(r) => r,
            Err(e) => {
                rep.error = Some(e.to_string());
                rep.not_in_index.push((lane.clone(), *first, *last));
                continue;
            }
        };
        // LSNs of the range with no message copy, as ranges.
        let mut next = *first;
        let mut held = Vec::new();
        for (lsn, _, _, _) in &rows {
            held.push(*lsn);
        }
        held.dedup();
        for &lsn in &held {
            if lsn > next {
                rep.not_in_index.push((lane.clone(), next, lsn - 1));
            }
            next = lsn.saturating_add(1);
        }
        if next <= *last && *last != u64::MAX {
            rep.not_in_index.push((lane.clone(), next, *last));
        }
        for (lsn, mut m, st, text_lost) in rows {
            if !keep(&m) {
                continue;
            }
            let mut mark = serde_json::json!({ RESTORED_KEY: {
                "lane": lane, "lsn": lsn, "from": "index", "at": now,
                "active": st.active, "compacted": st.compacted,
            }});
            if let Some(why) = &text_lost {
                // Said in the message itself, in the report and in the log: never an empty text
                // that looks like one.
                warn!(id = %m.id, "restored without its text, which was kept only in the lost record: {why}");
                mark[RESTORED_KEY]["text_lost"] = serde_json::Value::String(why.clone());
            }
            m.extra = Some(merge_extra(m.extra.as_deref(), &mark.to_string()));
            rep.restored.push(RestoredMessage {
                id: m.id.clone(),
                session_id: m.session_id.clone(),
                from_lane: lane.clone(),
                from_lsn: lsn,
                text_lost,
            });
            found.push(m);
        }
    }
    if found.is_empty() {
        return Ok(rep);
    }
    create_private_dir(&dir.join(LANES_DIR))?;
    let mut n = lane_names(dir)?.iter().filter_map(|s| lane_number(s)).max().unwrap_or(0);
    let (name, j) = loop {
        n += 1;
        let name = lane_name(n);
        match Journal::open(lane_dir(dir, &name), read_options(RecoveryMode::Strict)) {
            Ok(j) => break (name, j),
            Err(tidelog_journal::Error::Locked { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    for chunk in found.chunks(RESTORE_BATCH) {
        let payloads = chunk
            .iter()
            .map(|m| entry::journal_payload(&j, &Entry::Message(m.clone())))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let refs: Vec<&[u8]> = payloads.iter().map(|p| p.as_slice()).collect();
        j.append_batch(&refs)?;
    }
    j.close()?;
    error!(lane = %name, messages = found.len(), "restored from the index messages the journal lost to damage");
    rep.lane = Some(name);
    Ok(rep)
}
