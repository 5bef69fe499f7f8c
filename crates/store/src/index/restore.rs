//! Reading messages back out of the index by their journal position: the index is a copy of the
//! history, and may hold the last copy of records a lane lost to damage.

use super::query::message_from_row;
use super::schema::MESSAGE_COLS;
use super::{Ctx, Index, Result, collect};
use crate::model::{Message, MessageState};

impl Index {
    /// The messages indexed from `lane` with journal LSNs in `from..=to`, in LSN order, with
    /// their LSN and state.
    pub fn messages_at(&self, lane: &str, from: u64, to: u64) -> Result<Vec<(u64, Message, MessageState)>> {
        let sql = format!(
            "SELECT {MESSAGE_COLS}, m.lsn FROM messages m WHERE m.lane = ?1 AND m.lsn BETWEEN ?2 AND ?3 \
             ORDER BY m.lsn, m.rid"
        );
        let from = i64::try_from(from).unwrap_or(i64::MAX);
        let to = i64::try_from(to).unwrap_or(i64::MAX);
        collect(&self.conn, &sql, rusqlite::params![lane, from, to], |r| {
            let (m, st) = message_from_row(r)?;
            let lsn: i64 = r.get(super::schema::MESSAGE_COL_COUNT)?;
            Ok((u64::try_from(lsn).unwrap_or(0), m, st))
        })
        .ctx("read messages by journal position")
    }
}
