//! Reading messages back out of the index by their journal position: the index is a copy of the
//! history, and may hold the last copy of records a lane lost to damage. A text the index keeps
//! only in the journal (schema 5) is lost with its record: such a message comes back without it,
//! saying why.

use super::query::message_from_row;
use super::schema::MESSAGE_COLS_INLINE;
use super::{BodyAt, Ctx, Index, Result, collect};
use crate::model::{Message, MessageState};

/// A message read back from the index by position; `text_lost` says why its text is not there.
pub type RestoredRow = (u64, Message, MessageState, Option<String>);

impl Index {
    /// The messages indexed from `lane` with journal LSNs in `from..=to`, in LSN order, with
    /// their LSN and state. A text kept only in the journal is read from there; if it cannot be
    /// (its record is the one that was lost), the message comes without it and with the reason.
    pub fn messages_at(&self, lane: &str, from: u64, to: u64) -> Result<Vec<RestoredRow>> {
        let n = super::schema::MESSAGE_COL_COUNT;
        let sql = format!(
            "SELECT {MESSAGE_COLS_INLINE}, m.lsn, m.body_lane, m.body_seg, m.body_off, m.body_lsn FROM messages m \
             WHERE m.lane = ?1 AND m.lsn BETWEEN ?2 AND ?3 ORDER BY m.lsn, m.rid"
        );
        let from = i64::try_from(from).unwrap_or(i64::MAX);
        let to = i64::try_from(to).unwrap_or(i64::MAX);
        let rows = collect(&self.conn, &sql, rusqlite::params![lane, from, to], |r| {
            let (m, st) = message_from_row(r)?;
            let lsn: i64 = r.get(n)?;
            Ok((u64::try_from(lsn).unwrap_or(0), m, st, BodyAt::from_row(r, n + 1)?))
        })
        .ctx("read messages by journal position")?;
        let reader = tidelog_journal::RecordAt::new();
        Ok(rows
            .into_iter()
            .map(|(lsn, mut m, st, body)| {
                let Some(at) = body else { return (lsn, m, st, None) };
                let text = match &self.text_store {
                    Some(store) => super::read_text(store, &reader, at, m.num),
                    None => Err("the index was opened without its store".to_string()),
                };
                match text {
                    Ok(t) => {
                        m.content = t;
                        (lsn, m, st, None)
                    }
                    Err(why) => (lsn, m, st, Some(why)),
                }
            })
            .collect())
    }
}
