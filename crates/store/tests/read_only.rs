//! A read-only store beside a live writer: it claims no lane, writes nothing, runs no
//! compactor, sees everything the writer acknowledged (indexed or not), and refuses appends.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tidelog::{Error, Message, SearchQuery, Store, StoreOptions};

fn msg(i: usize) -> Message {
    Message {
        id: format!("ro-{i}"),
        session_id: "s".into(),
        role: "user".into(),
        content: Some(format!("needle number {i}")),
        ..Message::default()
    }
}

fn lanes(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join(tidelog::LANES_DIR)).unwrap().count()
}

#[test]
fn read_only_store_sees_everything_and_writes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("store");

    // Nothing there yet: a read-only open says so and creates nothing.
    let ro = StoreOptions { read_only: true, ..StoreOptions::default() };
    assert!(matches!(Store::open(&dir, ro.clone()), Err(Error::NotAStore { .. })));
    assert!(!dir.exists(), "a read-only open created the folder");

    let writer = Store::open(&dir, StoreOptions { run_compactor: false, ..StoreOptions::default() }).unwrap();
    for i in 0..10 {
        writer.append(msg(i)).unwrap();
    }
    let reader = Store::open(&dir, ro).unwrap();
    assert_eq!(lanes(&dir), 1, "the reader claimed a lane");
    assert_eq!(reader.messages("s").unwrap().len(), 10);
    assert_eq!(reader.search(&SearchQuery::new("needle")).unwrap().len(), 10);
    assert!(matches!(reader.append(msg(99)), Err(Error::ReadOnly { .. })));
    assert!(!reader.status().compactor.running_here);
    assert!(!dir.join(tidelog::INDEX_FILE).exists(), "the reader ran a compactor");

    // Appends made after the reader opened are visible to it.
    for i in 10..15 {
        writer.append(msg(i)).unwrap();
    }
    assert_eq!(reader.messages("s").unwrap().len(), 15);
    let s = reader.status();
    assert_eq!(s.unindexed, 15);
    assert!(s.lanes.iter().all(|l| !l.own));

    // Once a writer process indexes, the reader reads the index and the tail together.
    drop(writer);
    let indexer = Store::open(&dir, StoreOptions::default()).unwrap();
    assert!(indexer.wait_indexed(Duration::from_secs(30)));
    assert_eq!(reader.messages("s").unwrap().len(), 15);
    let hits = reader.search(&SearchQuery { limit: 100, ..SearchQuery::new("needle") }).unwrap();
    assert_eq!(hits.len(), 15);
    reader.close().unwrap();
    indexer.close().unwrap();
}
