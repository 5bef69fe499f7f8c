//! `close()` returns within `close_deadline` (plus a margin) even with a large backlog for the
//! compactor, and nothing is lost: the journal already holds everything.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use tidelog::{Message, Store, StoreOptions};

const N: usize = 20_000;

#[test]
fn close_meets_its_deadline_with_a_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions { segment_size: 4 << 20, ..StoreOptions::default() };
    {
        let held = Store::open(dir.path(), StoreOptions { run_compactor: false, ..opts.clone() }).unwrap();
        for b in 0..N / 500 {
            let batch = (0..500)
                .map(|i| Message {
                    id: format!("m{:05}", b * 500 + i),
                    session_id: format!("s{}", i % 4),
                    role: "user".into(),
                    content: Some(format!("backlog message {} {}", b * 500 + i, "words ".repeat(30))),
                    ..Message::default()
                })
                .collect();
            held.append_batch(batch).unwrap();
        }
        held.close().unwrap();
    }
    let deadline = Duration::from_millis(500);
    for wait_ms in [0u64, 150] {
        let store = Store::open(dir.path(), StoreOptions { close_deadline: deadline, ..opts.clone() }).unwrap();
        // Let the compactor get into a batch (or not, the first time).
        std::thread::sleep(Duration::from_millis(wait_ms));
        let lag = store.status().unindexed;
        let t = Instant::now();
        store.close().unwrap();
        let took = t.elapsed();
        eprintln!("close after {wait_ms} ms with {lag} unindexed took {took:?}");
        assert!(took < deadline + Duration::from_secs(2), "close took {took:?}");
    }
    // Nothing lost.
    let store = Store::open(dir.path(), StoreOptions { run_compactor: false, ..opts }).unwrap();
    let msgs = store.all_messages(None, None).unwrap();
    assert_eq!(msgs.len(), N);
    let mut ids: Vec<String> = msgs.into_iter().map(|m| m.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), N);
    assert_eq!(store.journal().last_lsn() as usize, N);
    store.close().unwrap();
}
