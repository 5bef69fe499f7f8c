//! The SQLite side of the corruption sweep: a damaged index file is detected, moved to the
//! quarantine (never deleted), rebuilt from the journal, and I6 holds afterwards (the index
//! holds exactly the journal's messages; a unique token finds its message).
//!
//! Damage: garbage pages at several offsets (the header page, the middle, the end), a truncated
//! main file, a file that is not SQLite, and copies of a live store whose commits were still in
//! the `-wal`: with it deleted, and truncated. Failures during compaction: an index kept busy by
//! another writer (the compactor backs off, retries, then finishes with nothing lost or
//! duplicated).
//!
//! Disk full is not simulated: SQLite's `SQLITE_FULL` path needs a small file system (a mount,
//! root only) or `setrlimit(RLIMIT_FSIZE)` (no dependency for it in this package, and a limit
//! would hit the journal too), and making `index.db-wal` read-only does not stop root, which
//! CI runs as. The journal's disk-full handling is covered by the storage-level fault tests.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tidelog::{
    Entry, INDEX_FILE, Index, IndexHealth, IndexOptions, LANES_DIR, Message, QUARANTINE_DIR, SearchQuery, Store,
    StoreOptions,
};
use tidelog_journal::{Journal, Options};
use tidelog_tests::copy_dir;

const PER_LANE: usize = 400;

fn opts() -> StoreOptions {
    // Small segments: a copied, preallocated 64 MiB segment takes seconds to sync at open.
    StoreOptions { segment_size: 1 << 20, poll_interval: Duration::from_millis(20), ..StoreOptions::default() }
}

fn token(id: &str) -> String {
    format!("tk{id}kt")
}

fn messages(lane: usize, n: usize) -> Vec<Message> {
    (0..n)
        .map(|i| {
            let id = format!("l{lane}m{i:04}");
            Message {
                session_id: format!("s{}", i % 4),
                role: if i % 3 == 0 { "assistant".into() } else { "user".into() },
                content: Some(format!("{} note {i} about the echidna {}", token(&id), "filler ".repeat(30))),
                id,
                ..Message::default()
            }
        })
        .collect()
}

/// Every message id in the journals of a store folder (I6's reference).
fn journal_ids(dir: &Path) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for e in std::fs::read_dir(dir.join(LANES_DIR)).unwrap() {
        let lane = e.unwrap().path();
        let j = Journal::open_read_only(&lane, Options::default()).unwrap();
        for r in j.iter_from(j.first_lsn()) {
            if let Entry::Message(m) = tidelog::decode_entry(&r.unwrap().payload).unwrap() {
                assert!(ids.insert(m.id.clone()), "{} twice in the journals", m.id);
            }
        }
    }
    ids
}

/// I6 on a store whose compactor has caught up.
fn check_i6(store: &Store, expected: &BTreeSet<String>) {
    let ix = Index::open_read_only(&store.dir().join(INDEX_FILE), &IndexOptions::default()).unwrap();
    let ids = ix.message_ids().unwrap();
    let set: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(set.len(), ids.len(), "I6: duplicate rows");
    assert_eq!(&set, expected, "I6: index and journal disagree");
    assert_eq!(&journal_ids(store.dir()), expected);
    for id in expected.iter().step_by(97) {
        let hits = ix.search(&SearchQuery::new(token(id))).unwrap();
        assert_eq!(hits.iter().map(|h| h.message.id.as_str()).collect::<Vec<_>>(), [id.as_str()]);
    }
    let all = ix.search(&SearchQuery { limit: 100_000, ..SearchQuery::new("echidna") }).unwrap();
    assert_eq!(all.len(), expected.len());
}

/// Waits until the compactor has checked the index, caught up, and nothing is wrong.
fn wait_healthy(store: &Store) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut saw_trouble = false;
    loop {
        let st = store.status();
        saw_trouble |= !st.problems.is_empty() || matches!(st.index, IndexHealth::Rebuilding { .. });
        if st.index == IndexHealth::Healthy && st.unindexed == 0 && st.problems.is_empty() {
            return saw_trouble;
        }
        assert!(Instant::now() < deadline, "store did not heal: {st:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A cleanly closed store with two lanes, indexed.
fn pristine(root: &Path) -> (PathBuf, BTreeSet<String>) {
    let dir = root.join("pristine");
    let a = Store::open(&dir, opts()).unwrap();
    let b = Store::open(&dir, opts()).unwrap();
    assert_ne!(a.lane(), b.lane());
    for (k, s) in [&a, &b].into_iter().enumerate() {
        for chunk in messages(k, PER_LANE).chunks(100) {
            s.append_batch(chunk.to_vec()).unwrap();
        }
    }
    assert!(a.wait_indexed(Duration::from_secs(60)));
    let ids = journal_ids(&dir);
    assert_eq!(ids.len(), 2 * PER_LANE);
    check_i6(&a, &ids);
    a.close().unwrap();
    b.close().unwrap();
    (dir, ids)
}

fn quarantine_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join(QUARANTINE_DIR))
        .map(|rd| rd.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Opens a damaged copy; asserts the damage was detected and quarantined with its bytes and a
/// note, the index rebuilt, and I6.
fn expect_quarantine(dir: &Path, damaged: &[u8], expected: &BTreeSet<String>, what: &str) {
    let store = Store::open(dir, opts()).unwrap();
    let saw_trouble = wait_healthy(&store);
    let st = store.status();
    assert_eq!(st.compactor.index_quarantined, 1, "{what}: not detected");
    assert!(saw_trouble || st.compactor.index_quarantined == 1);
    let files = quarantine_files(dir);
    let main = files.iter().find(|p| p.to_string_lossy().ends_with(INDEX_FILE)).unwrap();
    assert_eq!(std::fs::read(main).unwrap(), damaged, "{what}: quarantined bytes differ");
    assert!(files.iter().any(|p| p.extension().is_some_and(|e| e == "json")), "{what}: no note");
    check_i6(&store, expected);
    store.close().unwrap();
    // Healed: the next open finds nothing wrong.
    let store = Store::open(dir, opts()).unwrap();
    wait_healthy(&store);
    assert_eq!(store.status().compactor.index_quarantined, 0, "{what}: quarantined again");
    check_i6(&store, expected);
    store.close().unwrap();
}

/// Turns the bytes of `index.db` into damaged bytes.
type Damage = Box<dyn Fn(&[u8]) -> Vec<u8>>;

#[test]
fn damaged_index_is_quarantined_and_rebuilt() {
    let root = tempfile::tempdir().unwrap();
    let (pristine, expected) = pristine(root.path());
    let len = std::fs::metadata(pristine.join(INDEX_FILE)).unwrap().len() as usize;
    let pages = len / 4096;
    assert!(pages > 40, "index too small: {len} bytes");

    // Pages that hold data (free pages, which FTS5 merges leave behind, may hold anything).
    let used: BTreeSet<usize> = {
        let c = rusqlite::Connection::open(pristine.join(INDEX_FILE)).unwrap();
        let mut st = c.prepare("SELECT DISTINCT pageno FROM dbstat").unwrap();
        st.query_map([], |r| r.get::<_, i64>(0)).unwrap().map(|p| p.unwrap() as usize - 1).collect()
    };
    let in_use = |from: usize| (from..pages - 2).find(|&p| (p..p + 3).all(|q| used.contains(&q))).unwrap();
    let mut cases: Vec<(String, Damage)> = Vec::new();
    for first in [0, 1, in_use(pages / 3), in_use(pages / 2), pages - 3] {
        cases.push((
            format!("garbage at page {first}"),
            Box::new(move |b: &[u8]| {
                let mut b = b.to_vec();
                let end = ((first + 3) * 4096).min(b.len());
                for (i, x) in b[first * 4096..end].iter_mut().enumerate() {
                    *x = (i * 167 % 253) as u8 ^ 0x5a;
                }
                b
            }),
        ));
    }
    cases.push(("truncated to half".into(), Box::new(|b: &[u8]| b[..b.len() / 2].to_vec())));
    cases.push(("truncated to 100 bytes".into(), Box::new(|b: &[u8]| b[..100].to_vec())));
    cases.push(("not SQLite".into(), Box::new(|b: &[u8]| vec![b'#'; b.len()])));
    for (k, (what, damage)) in cases.iter().enumerate() {
        let dir = root.path().join(format!("case-{k}"));
        copy_dir(&pristine, &dir);
        let damaged = damage(&std::fs::read(dir.join(INDEX_FILE)).unwrap());
        std::fs::write(dir.join(INDEX_FILE), &damaged).unwrap();
        expect_quarantine(&dir, &damaged, &expected, what);
    }
}

#[test]
fn copies_missing_their_wal_replay_to_consistency() {
    let root = tempfile::tempdir().unwrap();
    let live = root.path().join("live");
    let store = Store::open(&live, StoreOptions { checkpoint_interval: Duration::from_secs(3600), ..opts() }).unwrap();
    for chunk in messages(0, PER_LANE).chunks(50) {
        store.append_batch(chunk.to_vec()).unwrap();
    }
    assert!(store.wait_indexed(Duration::from_secs(60)));
    let expected = journal_ids(&live);
    let main = std::fs::read(live.join(INDEX_FILE)).unwrap();
    let wal = std::fs::read(live.join(format!("{INDEX_FILE}-wal"))).unwrap();
    assert!(wal.len() > 4096, "the commits must still be in the -wal");
    let cases: [(&str, Option<&[u8]>); 4] = [
        ("deleted -wal", None),
        ("-wal cut in half", Some(&wal[..wal.len() / 2])),
        ("-wal cut inside a frame", Some(&wal[..wal.len() - 1000])),
        ("-wal header only", Some(&wal[..32])),
    ];
    for (k, (what, part)) in cases.into_iter().enumerate() {
        let dir = root.path().join(format!("copy-{k}"));
        copy_dir(&live.join(LANES_DIR), &dir.join(LANES_DIR));
        std::fs::write(dir.join(INDEX_FILE), &main).unwrap();
        if let Some(p) = part {
            std::fs::write(dir.join(format!("{INDEX_FILE}-wal")), p).unwrap();
        }
        let copy = Store::open(&dir, opts()).unwrap();
        // Behind the journal: it replays (or, if a check fails, quarantines and rebuilds).
        wait_healthy(&copy);
        eprintln!("{what}: quarantined {}", copy.status().compactor.index_quarantined);
        check_i6(&copy, &expected);
        copy.close().unwrap();
    }
    store.close().unwrap();
}

#[test]
fn busy_index_makes_the_compactor_retry_without_loss() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("busy");
    let n = 6000;
    {
        let held = Store::open(&dir, StoreOptions { run_compactor: false, ..opts() }).unwrap();
        for chunk in messages(0, n).chunks(500) {
            held.append_batch(chunk.to_vec()).unwrap();
        }
        held.close().unwrap();
    }
    let expected = journal_ids(&dir);
    assert_eq!(expected.len(), n);
    // Another writer applies the same journal entries in one long transaction (what a second
    // compactor would do): legitimate rows, but the index is busy meanwhile.
    let lane_dir = std::fs::read_dir(dir.join(LANES_DIR)).unwrap().next().unwrap().unwrap().path();
    let lane = lane_dir.file_name().unwrap().to_string_lossy().to_string();
    let j = Journal::open_read_only(&lane_dir, Options::default()).unwrap();
    let entries: Vec<(String, u64, Entry)> = j
        .iter_from(1)
        .map(|r| {
            let r = r.unwrap();
            (lane.clone(), r.lsn, tidelog::decode_entry(&r.payload).unwrap())
        })
        .collect();
    let path = dir.join(INDEX_FILE);
    let mut other = Index::open(&path, &IndexOptions::default()).unwrap();
    let entries = Arc::new(entries);
    let writer = {
        let entries = Arc::clone(&entries);
        std::thread::spawn(move || {
            let t = Instant::now();
            let stats = other.apply_batch(&entries).unwrap();
            (stats, t.elapsed())
        })
    };
    // Wait until that transaction holds the write lock (a probe with no busy timeout fails).
    let probe_opts = IndexOptions { busy_timeout: Duration::ZERO, ..IndexOptions::default() };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Index::open(&path, &probe_opts).is_ok() {
        assert!(!writer.is_finished(), "the other writer finished before the test saw it hold the lock");
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(1));
    }
    let store = Store::open(
        &dir,
        StoreOptions {
            index: IndexOptions { busy_timeout: Duration::from_millis(5), ..IndexOptions::default() },
            ..opts()
        },
    )
    .unwrap();
    // Reads are complete while the index is busy (WAL readers are not blocked; the journal
    // answers for the rest).
    let read: usize = (0..4).map(|s| store.messages(&format!("s{s}")).unwrap().len()).sum();
    assert_eq!(read, n);
    let (stats, took) = writer.join().unwrap();
    eprintln!("other writer: {stats:?} in {took:?}");
    assert!(store.wait_indexed(Duration::from_secs(60)));
    wait_healthy(&store);
    let st = store.status();
    eprintln!("compactor: {:?}", st.compactor);
    assert!(st.compactor.retries > 0, "the compactor never met the busy index: {:?}", st.compactor);
    assert!(st.compactor.last_error.is_none());
    assert_eq!(st.compactor.index_quarantined, 0, "busy is not damage");
    assert_eq!(st.lanes[0].applied_lsn, Some(n as u64));
    check_i6(&store, &expected);
    store.close().unwrap();
}
