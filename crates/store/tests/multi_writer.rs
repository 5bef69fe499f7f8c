//! Three stores on one folder (like three processes) append concurrently: each has its own
//! lane, exactly one runs the compactor, nothing acknowledged is lost, and when the compactor's
//! store closes another takes the role over and indexing continues.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tidelog::{INDEX_FILE, Index, IndexOptions, Message, SearchQuery, Store, StoreOptions};

fn opts() -> StoreOptions {
    StoreOptions { poll_interval: Duration::from_millis(20), ..StoreOptions::default() }
}

fn append_many(store: &Store, tag: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            store
                .append(Message {
                    id: format!("{tag}-{i}"),
                    session_id: format!("{tag}-s{}", i % 4),
                    role: "user".into(),
                    content: Some(format!("writer {tag} message {i} platypus")),
                    ..Message::default()
                })
                .unwrap()
                .id
        })
        .collect()
}

fn holders(stores: &[&Store]) -> usize {
    stores.iter().filter(|s| s.status().compactor.running_here).count()
}

fn indexed_ids(dir: &std::path::Path) -> BTreeSet<String> {
    Index::open_read_only(&dir.join(INDEX_FILE), &IndexOptions::default())
        .unwrap()
        .message_ids()
        .unwrap()
        .into_iter()
        .collect()
}

#[test]
fn three_writers_one_compactor_nothing_lost() {
    let dir = tempfile::tempdir().unwrap();
    let stores: Vec<Arc<Store>> = (0..3).map(|_| Arc::new(Store::open(dir.path(), opts()).unwrap())).collect();
    let lanes: BTreeSet<&str> = stores.iter().map(|s| s.lane()).collect();
    assert_eq!(lanes.len(), 3, "each store claims its own lane");

    // Watch the compactor role while the writers run: never two holders at once.
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (stores, done) = (stores.clone(), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut max = 0;
            while !done.load(Ordering::SeqCst) {
                let refs: Vec<&Store> = stores.iter().map(|s| &**s).collect();
                max = max.max(holders(&refs));
                std::thread::sleep(Duration::from_millis(2));
            }
            max
        })
    };
    let mut threads = Vec::new();
    for (k, s) in stores.iter().enumerate() {
        for t in 0..2 {
            let s = Arc::clone(s);
            threads.push(std::thread::spawn(move || append_many(&s, &format!("w{k}t{t}"), 150)));
        }
    }
    let mut acked = BTreeSet::new();
    for t in threads {
        acked.extend(t.join().unwrap());
    }
    assert_eq!(acked.len(), 3 * 2 * 150);
    assert!(stores[0].wait_indexed(Duration::from_secs(60)));
    done.store(true, Ordering::SeqCst);
    assert!(watcher.join().unwrap() <= 1, "two compactors ran at once");
    let refs: Vec<&Store> = stores.iter().map(|s| &**s).collect();
    assert_eq!(holders(&refs), 1);
    assert_eq!(indexed_ids(dir.path()), acked);

    // Close the holder: another takes over and indexes new appends.
    let mut stores: Vec<Store> = stores.into_iter().map(|s| Arc::try_unwrap(s).unwrap()).collect();
    let k = stores.iter().position(|s| s.status().compactor.running_here).unwrap();
    stores.remove(k).close().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while stores.iter().all(|s| !s.status().compactor.running_here) {
        assert!(Instant::now() < deadline, "no store took the compactor role over");
        std::thread::sleep(Duration::from_millis(10));
    }
    let refs: Vec<&Store> = stores.iter().collect();
    assert_eq!(holders(&refs), 1);
    for (i, s) in stores.iter().enumerate() {
        acked.extend(append_many(s, &format!("late{i}"), 40));
    }
    assert!(stores[0].wait_indexed(Duration::from_secs(60)));
    assert_eq!(indexed_ids(dir.path()), acked);
    for s in stores {
        s.close().unwrap();
    }

    // A fresh store reads every acknowledged message, exactly once.
    let fresh = Store::open(dir.path(), StoreOptions { run_compactor: false, ..opts() }).unwrap();
    let read: Vec<String> = fresh.all_messages(None, None).unwrap().into_iter().map(|m| m.id).collect();
    assert_eq!(read.len(), acked.len());
    assert_eq!(read.into_iter().collect::<BTreeSet<_>>(), acked);
    let hits = fresh.search(&SearchQuery { limit: 100_000, ..SearchQuery::new("platypus") }).unwrap();
    assert_eq!(hits.len(), acked.len());
    assert!(fresh.status().problems.is_empty(), "{:?}", fresh.status().problems);
    fresh.close().unwrap();
}
