//! A damaged `index.db` is noticed, moved to `quarantine/` (never deleted), rebuilt from the
//! journal, and the rebuilt index answers exactly as before: same message ids, same search
//! results, no problems left.
//!
//! Damage kinds: garbage over some pages, a truncated main file, a file that is not SQLite, a
//! deleted `-wal` after a clean close (not damage: checkpointed at close), and copies taken while
//! a store was open with un-checkpointed commits: without their `-wal`, and with half of it.
#![allow(clippy::unwrap_used)]

#[path = "common/dirs.rs"]
mod dirs;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tidelog::{
    INDEX_FILE, Index, IndexHealth, IndexOptions, LANES_DIR, Message, QUARANTINE_DIR, SearchQuery, Store, StoreOptions,
};

const QUERIES: &[&str] = &["wombat", "number 1", "ab", "zz-7 tail", "nothing-matches-this"];
const N: usize = 600;

/// Small segments: a copied 64 MiB preallocated segment costs seconds to sync at open.
fn opts() -> StoreOptions {
    StoreOptions { segment_size: 1 << 20, poll_interval: Duration::from_millis(20), ..StoreOptions::default() }
}

/// What the store answers: indexed ids and the hits of each query (sorted).
#[derive(Debug, PartialEq)]
struct Answers {
    ids: BTreeSet<String>,
    searches: Vec<Vec<String>>,
}

fn answers(store: &Store) -> Answers {
    let ix = Index::open_read_only(&store.dir().join(INDEX_FILE), &IndexOptions::default()).unwrap();
    let list = ix.message_ids().unwrap();
    let ids: BTreeSet<String> = list.iter().cloned().collect();
    assert_eq!(ids.len(), list.len(), "duplicate rows");
    let searches = QUERIES
        .iter()
        .map(|q| {
            let mut v: Vec<String> = store
                .search(&SearchQuery { limit: 10_000, ..SearchQuery::words(*q) })
                .unwrap()
                .into_iter()
                .map(|h| h.message.id)
                .collect();
            v.sort();
            v
        })
        .collect();
    Answers { ids, searches }
}

fn fill(store: &Store) {
    let msgs: Vec<Message> = (0..N)
        .map(|i| Message {
            id: format!("m{i:04}"),
            session_id: format!("s{}", i % 5),
            role: "user".into(),
            content: Some(format!("message number {i} about a wombat {} ab zz-{} tail", "pad ".repeat(40), i % 10)),
            ..Message::default()
        })
        .collect();
    for chunk in msgs.chunks(50) {
        store.append_batch(chunk.to_vec()).unwrap();
    }
}

/// A pristine, indexed, cleanly closed store, and what it answers.
fn pristine(root: &Path) -> (PathBuf, Answers) {
    let dir = root.join("pristine");
    let store = Store::open(&dir, opts()).unwrap();
    fill(&store);
    assert!(store.wait_indexed(Duration::from_secs(60)));
    let a = answers(&store);
    assert_eq!(a.ids.len(), N);
    assert_eq!(a.searches[0].len(), N);
    assert!(!a.searches[1].is_empty() && a.searches[1].len() < N);
    assert_eq!(a.searches[3].len(), N / 10);
    assert!(a.searches[4].is_empty());
    store.close().unwrap();
    (dir, a)
}

/// The 1-based numbers of the pages a btree uses (the rest are free-list pages).
fn used_pages(db: &Path) -> BTreeSet<u32> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut st = c.prepare("SELECT pageno FROM dbstat").unwrap();
    st.query_map([], |r| r.get(0)).unwrap().map(|r| r.unwrap()).collect()
}

fn quarantined(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join(QUARANTINE_DIR))
        .map(|rd| rd.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Opens the damaged store and checks it heals. Returns how many index files were quarantined.
fn reopen_and_check(dir: &Path, expected: &Answers) -> u64 {
    let store = Store::open(dir, opts()).unwrap();
    let (mut saw_rebuilding, mut saw_problem) = (false, false);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = store.status();
        saw_rebuilding |= matches!(st.index, IndexHealth::Rebuilding { .. });
        saw_problem |= !st.problems.is_empty();
        // Healthy: the compactor has checked the file (Unchecked before that).
        if st.index == IndexHealth::Healthy
            && st.unindexed == 0
            && st.lanes.iter().all(|l| l.applied_lsn.is_some())
            && st.problems.is_empty()
        {
            break;
        }
        assert!(Instant::now() < deadline, "did not heal: {st:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    let st = store.status();
    assert_eq!(st.index, IndexHealth::Healthy);
    let q = st.compactor.index_quarantined;
    if q > 0 {
        eprintln!("quarantined {q}, saw Rebuilding: {saw_rebuilding}, problems seen: {saw_problem}");
    }
    assert_eq!(&answers(&store), expected);
    // Reads (index + journal) agree too.
    let read: BTreeSet<String> = store.all_messages(None, None).unwrap().into_iter().map(|m| m.id).collect();
    assert_eq!(read, expected.ids);
    store.close().unwrap();
    q
}

fn damaged_copy(root: &Path, pristine: &Path, name: &str, damage: impl FnOnce(&Path)) -> PathBuf {
    let dir = root.join(name);
    dirs::copy_dir(pristine, &dir);
    damage(&dir.join(INDEX_FILE));
    dir
}

/// Detected damage: one quarantine holding the damaged bytes and a note.
fn assert_quarantined(dir: &Path, damaged_bytes: &[u8], expected: &Answers) {
    assert_eq!(reopen_and_check(dir, expected), 1, "damage not detected");
    let files = quarantined(dir);
    let main = files.iter().find(|p| p.to_string_lossy().ends_with(INDEX_FILE)).expect("index.db in quarantine");
    assert_eq!(std::fs::read(main).unwrap(), damaged_bytes, "quarantine must keep the bytes");
    let note = files.iter().find(|p| p.extension().is_some_and(|e| e == "json")).expect("a note");
    let note = std::fs::read_to_string(note).unwrap();
    assert!(note.contains("reason"), "{note}");
    // Healed for good: a second reopen quarantines nothing more.
    assert_eq!(reopen_and_check(dir, expected), 0);
}

#[test]
fn damaged_index_files_are_quarantined_and_rebuilt() {
    let root = tempfile::tempdir().unwrap();
    let (pristine, expected) = pristine(root.path());
    assert!(
        !pristine.join(format!("{INDEX_FILE}-wal")).exists()
            || std::fs::metadata(pristine.join(format!("{INDEX_FILE}-wal"))).unwrap().len() == 0
    );

    // Garbage over pages at several offsets.
    let len = std::fs::metadata(pristine.join(INDEX_FILE)).unwrap().len() as usize;
    assert!(len > 64 * 4096, "index too small for the test: {len}");
    let used = used_pages(&pristine.join(INDEX_FILE));
    for (k, first_page) in [2usize, len / 4096 / 2, len / 4096 - 4].into_iter().enumerate() {
        // Pages on SQLite's free list hold nothing: garbage there is harmless and undetectable
        // (FTS5 merges free pages, and where they fall varies with the compactor's batches).
        let hits_data = (first_page..first_page + 3).any(|p| used.contains(&(p as u32 + 1)));
        let mut bytes = Vec::new();
        let dir = damaged_copy(root.path(), &pristine, &format!("garbage-{k}"), |p| {
            let mut b = std::fs::read(p).unwrap();
            for (i, x) in b[first_page * 4096..(first_page + 3) * 4096].iter_mut().enumerate() {
                *x = (i * 131 % 251) as u8;
            }
            std::fs::write(p, &b).unwrap();
            bytes = b;
        });
        if hits_data {
            assert_quarantined(&dir, &bytes, &expected);
        } else {
            eprintln!("garbage-{k}: pages {first_page}.. are all free; expecting no quarantine");
            assert_eq!(reopen_and_check(&dir, &expected), 0);
        }
    }

    // Truncated main file (half).
    let mut bytes = Vec::new();
    let dir = damaged_copy(root.path(), &pristine, "truncated", |p| {
        let b = std::fs::read(p).unwrap();
        bytes = b[..b.len() / 2].to_vec();
        std::fs::write(p, &bytes).unwrap();
    });
    assert_quarantined(&dir, &bytes, &expected);

    // Not SQLite at all.
    let junk = b"this is not a database, just a note someone left here\n".repeat(200);
    let dir = damaged_copy(root.path(), &pristine, "not-sqlite", |p| std::fs::write(p, &junk).unwrap());
    assert_quarantined(&dir, &junk, &expected);

    // A deleted -wal after a clean close loses nothing (everything was checkpointed).
    let dir = damaged_copy(root.path(), &pristine, "no-wal", |p| {
        let _ = std::fs::remove_file(p.with_file_name(format!("{INDEX_FILE}-wal")));
    });
    assert_eq!(reopen_and_check(&dir, &expected), 0);
}

#[test]
fn copies_without_their_wal_end_consistent() {
    let root = tempfile::tempdir().unwrap();
    let live = root.path().join("live");
    let store = Store::open(&live, StoreOptions { checkpoint_interval: Duration::from_secs(3600), ..opts() }).unwrap();
    fill(&store);
    assert!(store.wait_indexed(Duration::from_secs(60)));
    let expected = answers(&store);
    let wal = std::fs::read(live.join(format!("{INDEX_FILE}-wal"))).unwrap();
    assert!(!wal.is_empty(), "commits must still be in the -wal for this test");
    let main = std::fs::read(live.join(INDEX_FILE)).unwrap();
    for (name, wal_part) in
        [("copy-no-wal", None), ("copy-half-wal", Some(&wal[..wal.len() / 2])), ("copy-wal-header", Some(&wal[..32]))]
    {
        let dir = root.path().join(name);
        dirs::copy_dir(&live.join(LANES_DIR), &dir.join(LANES_DIR));
        std::fs::write(dir.join(INDEX_FILE), &main).unwrap();
        if wal_part.is_none() {
            // The copy is really behind: the commits were in the -wal left out.
            let behind = match Index::open_read_only(&dir.join(INDEX_FILE), &IndexOptions::default()) {
                Ok(ix) => ix.applied_positions().unwrap().values().sum::<u64>(),
                // Even the schema was still in the -wal.
                Err(tidelog::IndexError::NotInitialized { .. }) => 0,
                Err(e) => panic!("{e}"),
            };
            assert!(behind < N as u64, "copy without -wal holds position {behind}");
        }
        if let Some(w) = wal_part {
            std::fs::write(dir.join(format!("{INDEX_FILE}-wal")), w).unwrap();
        }
        // Positions behind the journal: the store replays; or a check fails: quarantine.
        // Either way it ends with the same answers.
        let q = reopen_and_check(&dir, &expected);
        eprintln!("{name}: quarantined {q}");
    }
    store.close().unwrap();
}
