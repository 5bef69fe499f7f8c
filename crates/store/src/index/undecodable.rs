//! Journal records the index leaves out because they do not decode: written by a newer version
//! (an unknown codec tag, entry kind or critical field), or damaged in a way the journal's
//! checksums did not catch.
//!
//! The compactor skips such a record for good (its lane's applied position moves past it, so the
//! records after it are applied), and records it in the table `undecodable (lane, lsn, why)` in
//! the same transaction as the position. So every later open, of any process, still reports it in
//! `status().problems` (and every read command warns), instead of forgetting it at the restart. A
//! version that can read the record applies it when the index is rebuilt from the journal
//! (`tidelog rebuild-index`), which starts again from position 0.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::Transaction;

use super::{Ctx, Index, IndexError, Result, collect};

/// A record left out: lane, LSN and why it does not decode.
pub(crate) type Undecodable = (String, u64, String);

/// Stores the records of `list` above their lane's position before the batch (`before`) and
/// moves `positions` past them, marking their lanes `touched` (so the positions are stored).
pub(super) fn record_undecodable<'a>(
    tx: &Transaction<'_>,
    before: &BTreeMap<String, u64>,
    positions: &mut BTreeMap<String, u64>,
    touched: &mut BTreeSet<&'a str>,
    list: &'a [Undecodable],
) -> Result<()> {
    for (lane, lsn, why) in list {
        if before.get(lane).is_some_and(|&p| *lsn <= p) {
            continue;
        }
        let lsn_i =
            i64::try_from(*lsn).map_err(|_| IndexError::PositionOutOfRange { lane: lane.clone(), lsn: *lsn })?;
        tx.prepare_cached("INSERT INTO undecodable (lane, lsn, why) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING")
            .and_then(|mut st| st.execute((lane, lsn_i, why)))
            .ctx("record an undecodable journal record")?;
        let p = positions.entry(lane.clone()).or_insert(0);
        *p = (*p).max(*lsn);
        touched.insert(lane.as_str());
    }
    Ok(())
}

impl Index {
    /// The first `limit` records left out because they do not decode, in lane and LSN order, and
    /// how many there are. Empty for a version 2 file not upgraded yet (it has no such table).
    pub(crate) fn undecodable_records(&self, limit: usize) -> Result<(Vec<Undecodable>, u64)> {
        let has_table: bool = self
            .conn
            .query_row("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'undecodable'", [], |r| {
                r.get(0)
            })
            .ctx("read the schema")?;
        if !has_table {
            return Ok((Vec::new(), 0));
        }
        let total: i64 = self
            .conn
            .query_row("SELECT count(*) FROM undecodable", [], |r| r.get(0))
            .ctx("count undecodable records")?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows =
            collect(&self.conn, "SELECT lane, lsn, why FROM undecodable ORDER BY lane, lsn LIMIT ?1", [limit], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?))
            })
            .ctx("read undecodable records")?;
        let rows = rows.into_iter().map(|(l, n, w)| (l, u64::try_from(n).unwrap_or(0), w)).collect();
        Ok((rows, u64::try_from(total).unwrap_or(0)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::entry::Entry;
    use crate::index::{IndexOptions, SCHEMA_VERSION};
    use crate::model::Message;

    fn message(id: &str) -> Entry {
        Entry::Message(Message { id: id.into(), session_id: "s".into(), role: "user".into(), ..Message::default() })
    }

    #[test]
    fn markers_move_positions_in_the_batch_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = Index::open(&dir.path().join("index.db"), &IndexOptions::default()).unwrap();
        // Entries 1, 2 and 4 of lane a decode, 3 does not; lane b has only an undecodable one.
        let entries =
            vec![("a".to_string(), 1, message("m1")), ("a".into(), 2, message("m2")), ("a".into(), 4, message("m4"))];
        let bad = vec![("a".to_string(), 3, "newer".to_string()), ("b".into(), 1, "newer".into())];
        ix.apply_batch_marked(&entries, &[], &bad).unwrap();
        assert_eq!(ix.message_count().unwrap(), 3);
        let p = ix.applied_positions().unwrap();
        assert_eq!((p["a"], p["b"]), (4, 1));
        assert_eq!(ix.undecodable_records(10).unwrap(), (bad.clone(), 2));
        // Replayed: nothing twice.
        ix.apply_batch_marked(&entries, &[], &bad).unwrap();
        assert_eq!(ix.undecodable_records(1).unwrap(), (bad[..1].to_vec(), 2));
    }

    #[test]
    fn a_version_2_index_is_read_and_upgraded_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.db");
        let opts = IndexOptions::default();
        let mut ix = Index::open(&path, &opts).unwrap();
        let old_patch = crate::model::SessionPatch {
            id: "s".into(),
            title: Some("from version 2".into()),
            model: Some("m".into()),
            ..Default::default()
        };
        ix.apply_batch(&[("a".to_string(), 1, message("m1")), ("a".to_string(), 2, Entry::Session(old_patch))])
            .unwrap();
        ix.conn
            .execute_batch(&format!(
                "DROP TABLE undecodable; DROP TABLE session_entries; {} \
                 UPDATE meta SET value = 2 WHERE key = 'schema_version'",
                crate::index::hermes::DROP_WORDS_TABLES
            ))
            .unwrap();
        drop(ix);
        // Readers use it as it is (no table: nothing recorded).
        let ro = Index::open_read_only(&path, &opts).unwrap();
        assert_eq!(ro.undecodable_records(10).unwrap(), (Vec::new(), 0));
        assert_eq!(ro.message_count().unwrap(), 1);
        drop(ro);
        // The first writable open adds the table; the rows stay.
        let mut ix = Index::open(&path, &opts).unwrap();
        let v: i64 =
            ix.conn.query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |r| r.get(0)).unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        assert_eq!(ix.message_count().unwrap(), 1);
        ix.apply_batch_marked(&[], &[], &[("a".to_string(), 3, "newer".to_string())]).unwrap();
        assert_eq!(ix.undecodable_records(10).unwrap().1, 1);
        // The session fold was seeded from the version 2 row: a late patch (which refolds the
        // row in the store's order) keeps what version 2 had.
        let patch = |op: i64, model: &str| {
            Entry::Session(crate::model::SessionPatch {
                id: "s".into(),
                model: Some(model.into()),
                op: Some(op),
                ..Default::default()
            })
        };
        ix.apply_batch(&[("a".to_string(), 4, patch(50, "later"))]).unwrap();
        ix.apply_batch(&[("b".to_string(), 1, patch(40, "earlier"))]).unwrap();
        let s = ix.get_session("s").unwrap().unwrap();
        assert_eq!(s.title.as_deref(), Some("from version 2"));
        assert_eq!(s.model.as_deref(), Some("later"));
        // Version 1 is still rebuilt.
        ix.conn.execute("UPDATE meta SET value = 1 WHERE key = 'schema_version'", []).unwrap();
        drop(ix);
        assert!(matches!(Index::open(&path, &opts), Err(IndexError::OlderSchema { found: 1, .. })));
    }

    /// Why the compactor may be restarted after a panic: a panic inside a batch's transaction
    /// rolls the whole batch back (rows and positions), and the connection stays usable.
    #[test]
    fn a_panic_inside_a_batch_transaction_rolls_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = Index::open(&dir.path().join("index.db"), &IndexOptions::default()).unwrap();
        ix.apply_batch(&[("a".to_string(), 1, message("m1"))]).unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let tx = ix.conn.transaction().unwrap();
            tx.execute("UPDATE applied SET lsn = 99 WHERE lane = 'a'", []).unwrap();
            tx.execute("DELETE FROM messages", []).unwrap();
            panic!("in the middle of a batch");
        }));
        assert!(r.is_err());
        assert_eq!(ix.applied_positions().unwrap()["a"], 1);
        assert_eq!(ix.message_count().unwrap(), 1);
        ix.apply_batch(&[("a".to_string(), 2, message("m2"))]).unwrap();
        assert_eq!(ix.message_count().unwrap(), 2);
    }
}
