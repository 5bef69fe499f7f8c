//! Message text kept only in the journal (schema 5).
//!
//! A long message text is stored once: in the journal record that carries it. Its index row has
//! `content` NULL and the record's place instead (`body_lane`, `body_seg`, `body_off`,
//! `body_lsn`: lane number, segment id, byte offset, LSN). Every query reads the text through
//! the SQL function `tidelog_body(lane, segment, offset, lsn, rid)`, registered here on every
//! connection the index opens: it reads the record with [`RecordAt`] (which checks LSN and
//! checksums), decodes it and returns the text of message `rid` in it (a message, the update
//! that last set its text, or the rewrite that carries it). The full-text indexes read their
//! rows through views that call it too, so FTS5's `snippet()`, `'rebuild'` and `'delete'` see
//! exactly the text that was indexed. A record that cannot be read is an SQL error naming the
//! file and offset: never an empty text.
//!
//! Records never move (docs/format.md "Erasure in place"), and a segment is only removed by
//! retention, which keeps text in the index instead (`IndexOptions::journal_text` is `None`
//! then).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::Connection;
use rusqlite::functions::{Context, FunctionFlags};
use tidelog_journal::RecordAt;

use crate::entry::{self, Entry};
use crate::layout::{lane_dir, lane_name};

pub(crate) use crate::error::index::UNREADABLE_TEXT as UNREADABLE;

/// The largest record the function reads (the journal's own limit).
const MAX_RECORD: u32 = 1 << 30;

/// Where a message's text is in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BodyAt {
    /// The lane's number.
    pub lane: u64,
    /// Segment id.
    pub segment: u64,
    /// Byte offset of the record's frame in the segment.
    pub offset: u64,
    /// The record's LSN.
    pub lsn: u64,
}

impl BodyAt {
    /// The place in columns `first..first + 4` of `r` (`body_lane`, `body_seg`, `body_off`,
    /// `body_lsn`), `None` for a text the row keeps itself.
    pub(super) fn from_row(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Option<BodyAt>> {
        let at = |i: usize| r.get::<_, Option<i64>>(first + i).map(|v| v.and_then(|v| u64::try_from(v).ok()));
        Ok(match (at(0)?, at(1)?, at(2)?, at(3)?) {
            (Some(lane), Some(segment), Some(offset), Some(lsn)) => Some(BodyAt { lane, segment, offset, lsn }),
            _ => None,
        })
    }
}

/// Registers `tidelog_body` on `conn`, reading the lanes of the store in `store` (`None`: a
/// connection of an index that keeps every text itself; the function then fails if called).
pub(super) fn register(conn: &Connection, store: Option<PathBuf>) -> rusqlite::Result<()> {
    let reader = Arc::new(RecordAt::new());
    conn.create_scalar_function(
        "tidelog_body",
        5,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC | FunctionFlags::SQLITE_INNOCUOUS,
        move |ctx| body(ctx, store.as_ref(), &reader),
    )
}

fn body(ctx: &Context<'_>, store: Option<&PathBuf>, reader: &RecordAt) -> rusqlite::Result<Option<String>> {
    let fail = |why: String| rusqlite::Error::UserFunctionError(format!("{UNREADABLE}{why}").into());
    let int = |i: usize| -> rusqlite::Result<u64> {
        let v: i64 = ctx.get(i)?;
        u64::try_from(v).map_err(|_| fail(format!("tidelog_body: argument {i} is negative")))
    };
    let at = BodyAt { lane: int(0)?, segment: int(1)?, offset: int(2)?, lsn: int(3)? };
    let rid: i64 = ctx.get(4)?;
    let Some(store) = store else {
        return Err(fail(format!(
            "message {rid}: its text is kept in the journal (lane {}, LSN {}) and this index was opened \
             without its store",
            at.lane, at.lsn
        )));
    };
    read_text(store, reader, at, rid).map_err(fail)
}

/// The text of message `rid` in the record at `at` of the store in `store`; `Err` says why it
/// cannot be read (naming the file and offset).
pub(crate) fn read_text(store: &Path, reader: &RecordAt, at: BodyAt, rid: i64) -> Result<Option<String>, String> {
    let dir = lane_dir(store, &lane_name(at.lane));
    let payload =
        reader.read(&dir, at.segment, at.offset, at.lsn, MAX_RECORD).map_err(|e| format!("message {rid}: {e}"))?;
    let e = entry::decode_record(at.lane, at.lsn, &payload)
        .map_err(|e| format!("message {rid}: record LSN {} of {}: {e}", at.lsn, dir.display()))?;
    text_of(&e, rid).ok_or_else(|| {
        format!("message {rid}: record LSN {} of {} does not hold its text (erased?)", at.lsn, dir.display())
    })
}

/// The text of message `rid` that entry `e` carries: `Some(None)` for a message without text.
fn text_of(e: &Entry, rid: i64) -> Option<Option<String>> {
    match e {
        Entry::Message(m) if m.num == rid => Some(m.content.clone()),
        Entry::Update(u) if u.num == rid => Some(u.content.clone()),
        Entry::Rewrite(r) => r.messages.iter().find(|m| m.num == rid).map(|m| m.content.clone()),
        _ => None,
    }
}
