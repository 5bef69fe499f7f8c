//! Regression tests for bugs found by the store's scenario tests, one per bug.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use tidelog::{Message, Store, StoreOptions};

fn msg(id: String) -> Message {
    Message { id, session_id: "s".into(), role: "user".into(), content: Some("hello".into()), ..Message::default() }
}

/// Bug 1: the duplicate check of a client-supplied id (`Store::is_stored`) decoded every entry of
/// this process's lane not yet indexed, for every message appended. While the compactor lags
/// (held back, busy, or rebuilding the index from a large journal), appends with client ids
/// were quadratic: 20,000 messages took about 6 minutes in a debug build (`close_deadline.rs`'s
/// setup). Two causes: the check rescanned the whole unindexed tail (fixed by the incremental
/// pending-id set in `Store::is_stored`), and `Journal::iter_from` itself reads the segment from
/// its first record (see the next test). 8,000 appends: 28 s before, 0.3 s after.
#[test]
fn appends_with_client_ids_stay_linear_while_the_index_lags() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions { run_compactor: false, ..StoreOptions::default() }).unwrap();
    let n = 8_000;
    let t = Instant::now();
    for b in 0..n / 100 {
        store.append_batch((0..100).map(|i| msg(format!("m{}", b * 100 + i))).collect()).unwrap();
    }
    let took = t.elapsed();
    eprintln!("{n} appends with client ids, index lagging: {took:?}");
    // Quadratic: ~30 s in debug; linear: well under a second.
    assert!(took < Duration::from_secs(8), "{took:?}");
    // The check still works, for old and new entries alike.
    assert_eq!(store.append(msg("m0".into())).unwrap().lsn, None);
    assert_eq!(store.append(msg(format!("m{}", n - 1))).unwrap().lsn, None);
    assert!(store.append(msg("new".into())).unwrap().lsn.is_some());
    assert_eq!(store.append(msg("new".into())).unwrap().lsn, None);
    store.close().unwrap();
    // After a reopen (the cache starts empty) and with the index caught up.
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert_eq!(store.append(msg("m5".into())).unwrap().lsn, None);
    assert!(store.wait_indexed(Duration::from_secs(60)));
    assert_eq!(store.append(msg("m6".into())).unwrap().lsn, None);
    assert_eq!(store.messages("s").unwrap().len(), n + 1);
    store.close().unwrap();
}

/// Bug 1, second half: the journal's `iter_from(lsn)` read every record of the segment before
/// `lsn` (it has no offset index), so even the incremental duplicate check above rescanned the
/// active segment on each append. The journal now remembers where the last record an iterator
/// returned ends and starts there when it can. This checks that iterators starting anywhere
/// (before, at and after that point, in other segments, on a read-only handle) still return
/// exactly the right records.
#[test]
fn iter_from_anywhere_after_the_seek_hint_moved() {
    use tidelog_journal::{Journal, Options};
    let dir = tempfile::tempdir().unwrap();
    let opts = Options { segment_size: 4096, ..Options::default() };
    let j = Journal::open(dir.path(), opts.clone()).unwrap();
    let payload = |lsn: u64| format!("record {lsn} {}", "p".repeat((lsn * 37 % 300) as usize)).into_bytes();
    for lsn in 1..=400u64 {
        assert_eq!(j.append(&payload(lsn)).unwrap(), lsn);
    }
    assert!(j.status().segments > 5);
    let ro = Journal::open_read_only(dir.path(), opts).unwrap();
    for handle in [&j, &ro] {
        let mut x = 7u64;
        for _ in 0..200 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let (a, take, b) = (1 + (x >> 33) % 400, (x >> 20) % 30, 1 + (x >> 8) % 402);
            // Move the hint somewhere, then start elsewhere.
            for r in handle.iter_from(a).take(take as usize) {
                r.unwrap();
            }
            let got: Vec<(u64, Vec<u8>)> =
                handle.iter_from(b).map(|r| r.unwrap()).map(|r| (r.lsn, r.payload)).collect();
            let want: Vec<(u64, Vec<u8>)> = (b.max(1)..=400).map(|l| (l, payload(l))).collect();
            assert_eq!(got.len(), want.len(), "from {b} after reading {take} from {a}");
            assert!(got == want, "from {b} after reading {take} from {a}");
        }
    }
    // Appends after the hint was left at the end are found.
    for r in j.iter_from(395) {
        r.unwrap();
    }
    j.append(b"more").unwrap();
    let tail: Vec<u64> = j.iter_from(401).map(|r| r.unwrap().lsn).collect();
    assert_eq!(tail, [401]);
    j.close().unwrap();
}

/// Found in review: after a power cut took records that the compactor (in another process) had
/// already indexed from the page cache, the lane's next owner appended new records with the same
/// LSNs; the index's position check ("not ahead of the journal") then passed, the new messages
/// were never indexed and the lost ones stayed in the index. Fix: a process that claims a lane
/// checks the index's position for it before appending anything, and if the index is ahead asks
/// the compactor (marker file) to quarantine and rebuild it.
#[test]
fn index_ahead_of_a_lane_is_rebuilt_before_lsns_are_reused() {
    use tidelog_journal::decode::{HeaderCheck, SegmentHeader, check_record_header};
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("store");
    let m = |i: usize| Message {
        id: format!("m-{i}"),
        session_id: "s".into(),
        role: "user".into(),
        content: Some(format!("message number {i}")),
        ..Message::default()
    };
    let small = StoreOptions { segment_size: 1 << 20, ..StoreOptions::default() };
    let store = Store::open(&dir, small.clone()).unwrap();
    for i in 0..10 {
        store.append(m(i)).unwrap();
    }
    assert!(store.wait_indexed(Duration::from_secs(30)));
    store.close().unwrap();

    // The power cut: the lane loses its last 4 records (cut at a record boundary).
    let seg = std::fs::read_dir(dir.join("lanes/lane-0001"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .unwrap();
    let bytes = std::fs::read(&seg).unwrap();
    let salt = SegmentHeader::decode(&bytes).unwrap().salt;
    let mut at = tidelog_journal::SEGMENT_HEADER_LEN;
    for _ in 0..6 {
        let HeaderCheck::Valid(h) = check_record_header(&bytes[at..], salt, 1 << 26) else { panic!() };
        at += h.frame_len() as usize;
    }
    std::fs::OpenOptions::new().write(true).open(&seg).unwrap().set_len(at as u64).unwrap();

    // The lane's next owner appends three new messages: they reuse LSNs 7..=9.
    let store = Store::open(&dir, StoreOptions { run_compactor: false, ..small.clone() }).unwrap();
    assert_eq!(store.journal().last_lsn(), 6);
    for i in 100..103 {
        store.append(m(i)).unwrap();
    }
    store.close().unwrap();
    assert!(dir.join(tidelog::REBUILD_MARKER).exists(), "the owner did not ask for a rebuild");

    let store = Store::open(&dir, small).unwrap();
    assert!(store.wait_indexed(Duration::from_secs(30)));
    let ix = tidelog::Index::open_read_only(&dir.join(tidelog::INDEX_FILE), &Default::default()).unwrap();
    let mut ids = ix.message_ids().unwrap();
    ids.sort();
    let mut want: Vec<String> = (0..6).chain(100..103).map(|i| format!("m-{i}")).collect();
    want.sort();
    assert_eq!(ids, want, "the index must hold exactly what the journal holds");
    assert!(!dir.join(tidelog::REBUILD_MARKER).exists());
    assert!(store.status().problems.is_empty(), "{:?}", store.status().problems);
    assert!(std::fs::read_dir(dir.join(tidelog::QUARANTINE_DIR)).unwrap().count() >= 2, "old index quarantined");
    store.close().unwrap();
}
