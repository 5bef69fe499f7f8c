//! Replay after a crash between any two steps of a batch gives exactly one row per message.
//!
//! (a) the same batch applied twice through `Index::apply_batch`; (b) a store whose index lost
//! the `applied` row of its lane (as if the commit that stored the position never happened)
//! while the rows are there; (c) an index transaction left uncommitted changes nothing.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use tidelog::{Entry, INDEX_FILE, Index, IndexOptions, Message, SearchQuery, Store, StoreOptions};

fn msg(id: &str, session: &str, text: &str, ts: f64) -> Message {
    Message {
        id: id.into(),
        session_id: session.into(),
        role: "user".into(),
        content: Some(text.into()),
        timestamp: ts,
        ..Message::default()
    }
}

#[test]
fn same_batch_applied_twice_stores_one_row_each() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(INDEX_FILE);
    let mut ix = Index::open(&path, &IndexOptions::default()).unwrap();
    let batch: Vec<(String, u64, Entry)> = (1..=50u64)
        .map(|i| {
            (
                "lane-0001".to_string(),
                i,
                Entry::Message(msg(&format!("m{i}"), "s", &format!("word{i} zebra"), i as f64)),
            )
        })
        .collect();
    let first = ix.apply_batch(&batch).unwrap();
    assert_eq!(first.messages, 50);
    let again = ix.apply_batch(&batch).unwrap();
    assert_eq!(again.messages, 0, "{again:?}");
    assert_eq!(again.skipped, 50, "{again:?}");
    assert_eq!(ix.message_count().unwrap(), 50);
    assert_eq!(ix.applied_positions().unwrap().get("lane-0001"), Some(&50));
    // The same entries under positions not yet applied (the position row lost): ignored by id.
    let shifted: Vec<_> = batch.iter().map(|(l, lsn, e)| (l.clone(), lsn + 50, e.clone())).collect();
    let third = ix.apply_batch(&shifted).unwrap();
    assert_eq!(third.duplicate_messages, 50, "{third:?}");
    assert_eq!(ix.message_count().unwrap(), 50);
    assert_eq!(ix.applied_positions().unwrap().get("lane-0001"), Some(&100));
    assert_eq!(ix.search(&SearchQuery { limit: 1000, ..SearchQuery::new("zebra") }).unwrap().len(), 50);
    assert!(ix.check().unwrap().is_empty());
}

#[test]
fn lost_position_row_replays_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let n = 300;
    let ids: BTreeSet<String> = {
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let mut ids = BTreeSet::new();
        for i in 0..n {
            let id = if i % 2 == 0 { format!("client-{i}") } else { String::new() };
            let a = store.append(msg(&id, &format!("s{}", i % 7), &format!("payload {i} quokka"), 0.0)).unwrap();
            ids.insert(a.id);
        }
        assert!(store.wait_indexed(Duration::from_secs(30)));
        let lane = store.lane().to_string();
        store.close().unwrap();
        let conn = rusqlite::Connection::open(dir.path().join(INDEX_FILE)).unwrap();
        let deleted = conn.execute("DELETE FROM applied WHERE lane = ?1", [&lane]).unwrap();
        assert_eq!(deleted, 1);
        let rows: i64 = conn.query_row("SELECT count(*) FROM messages", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, n as i64);
        ids
    };
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert!(store.wait_indexed(Duration::from_secs(30)));
    let st = store.status();
    assert!(st.problems.is_empty(), "{:?}", st.problems);
    assert_eq!(st.lanes[0].applied_lsn, Some(n as u64));
    let ix = Index::open_read_only(&dir.path().join(INDEX_FILE), &IndexOptions::default()).unwrap();
    let indexed = ix.message_ids().unwrap();
    assert_eq!(indexed.len(), n, "replay duplicated or lost rows");
    assert_eq!(indexed.into_iter().collect::<BTreeSet<_>>(), ids);
    let read: Vec<String> = store.all_messages(None, None).unwrap().into_iter().map(|m| m.id).collect();
    assert_eq!(read.len(), n);
    assert_eq!(read.into_iter().collect::<BTreeSet<_>>(), ids);
    let hits = store.search(&SearchQuery { limit: 10_000, ..SearchQuery::new("quokka") }).unwrap();
    assert_eq!(hits.len(), n);
    store.close().unwrap();
}

#[test]
fn uncommitted_transaction_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    for i in 0..20 {
        store.append(msg(&format!("m{i}"), "s", "original text", 0.0)).unwrap();
    }
    assert!(store.wait_indexed(Duration::from_secs(30)));
    store.close().unwrap();
    let path = dir.path().join(INDEX_FILE);
    let before = Index::open_read_only(&path, &IndexOptions::default()).unwrap().message_ids().unwrap();
    {
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        // The index's triggers name the store's function for texts kept in the journal.
        conn.create_scalar_function("tidelog_body", 5, rusqlite::functions::FunctionFlags::SQLITE_UTF8, |_| {
            Ok(None::<String>)
        })
        .unwrap();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).unwrap();
        tx.execute(
            "INSERT INTO messages (id, session_id, role, content, lane, lsn) VALUES ('garbage', 's', 'user', 'garbage text', 'lane-0001', 999)",
            [],
        )
        .unwrap();
        tx.execute("INSERT OR REPLACE INTO applied (lane, lsn) VALUES ('lane-0001', 999)", []).unwrap();
        // Leaked without commit: the process "dies" here.
        std::mem::forget(tx);
        drop(conn);
    }
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert!(store.wait_indexed(Duration::from_secs(30)));
    let st = store.status();
    assert!(st.problems.is_empty(), "{:?}", st.problems);
    assert_eq!(st.compactor.index_quarantined, 0);
    assert_eq!(st.lanes[0].applied_lsn, Some(20));
    let ix = Index::open_read_only(&path, &IndexOptions::default()).unwrap();
    assert_eq!(ix.message_ids().unwrap(), before);
    assert!(store.search(&SearchQuery::new("garbage")).unwrap().is_empty());
    assert_eq!(store.messages("s").unwrap().len(), 20);
    store.close().unwrap();
}
