//! Records a newer version wrote (they do not decode here) are skipped for good, and recorded in
//! the index with the position past them, so every later open, of any process, still reports
//! them, and a rebuilt index too (issue 21).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tidelog::{Message, Store, StoreOptions};

fn msg(i: usize) -> Message {
    Message { session_id: "s".into(), role: "user".into(), content: Some(format!("m{i}")), ..Message::default() }
}

fn reported(store: &Store) -> Vec<String> {
    store.status().problems.into_iter().filter(|p| p.contains("cannot be read (left out of every read)")).collect()
}

#[test]
fn undecodable_records_are_reported_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || StoreOptions { poll_interval: Duration::from_millis(10), ..StoreOptions::default() };
    let store = Store::open(dir.path(), opts()).unwrap();
    store.append(msg(1)).unwrap();
    // Codec tag 0x7f: a newer version's encoding.
    let lsn = store.journal().append(&[0x7f, 1, 2, 3]).unwrap();
    store.append(msg(2)).unwrap();
    assert!(store.wait_indexed(Duration::from_secs(10)));
    let lane = store.lane().to_string();
    let p = reported(&store);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].contains(&format!("{lane}/{lsn}")) && p[0].contains("newer version"), "{p:?}");
    assert_eq!(store.status().compactor.undecodable, 1);
    assert_eq!(store.messages("s").unwrap().len(), 2, "the records after it are applied");
    store.close().unwrap();

    // A restarted store no longer reads the record (the index's position is past it), and still
    // reports it; so does a read-only open.
    let store = Store::open(dir.path(), opts()).unwrap();
    assert!(store.wait_indexed(Duration::from_secs(10)));
    assert_eq!(reported(&store).len(), 1);
    assert_eq!(store.status().compactor.undecodable, 0, "not read again");
    store.close().unwrap();
    let ro = Store::open(dir.path(), StoreOptions { read_only: true, ..StoreOptions::default() }).unwrap();
    assert_eq!(reported(&ro).len(), 1);
    ro.close().unwrap();

    // A rebuilt index keeps reporting it.
    tidelog::ops::rebuild_index_in_place(dir.path(), "test", &mut |_, _, _| {}).unwrap();
    let ro = Store::open(dir.path(), StoreOptions { read_only: true, ..StoreOptions::default() }).unwrap();
    let p = reported(&ro);
    assert!(p.len() == 1 && p[0].contains(&format!("{lane}/{lsn}")), "{p:?}");
    assert_eq!(ro.messages("s").unwrap().len(), 2);
    ro.close().unwrap();
}
