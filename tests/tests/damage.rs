//! Issue 10: damage never shrinks the history silently. A flipped byte in a sealed record, in
//! the middle of the active segment, or in the very last record; an emptied active segment; with
//! and without an index; with a writer restart in between. For each: reads show every record
//! whose bytes are intact (and every message the index still holds) and say that the history is
//! incomplete; `repair --salvage` keeps every valid record, names the exact LSNs lost and
//! restores from the index what it holds; `rebuild-index` afterwards loses nothing.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tidelog::ops::{self, LaneOutcome};
use tidelog::{INDEX_FILE, LANES_DIR, Message, RecoveryMode, Store, StoreOptions};
use tidelog_tests::copy_dir;

const SESSIONS: usize = 3;

fn opts() -> StoreOptions {
    StoreOptions { segment_size: 64 << 10, poll_interval: Duration::from_millis(10), ..StoreOptions::default() }
}

fn msg(i: usize) -> Message {
    Message {
        id: format!("m{i:05}"),
        session_id: format!("s{}", i % SESSIONS),
        role: "user".into(),
        content: Some(format!("message {i} {}", "words ".repeat(20))),
        timestamp: 1_700_000_000.0 + i as f64,
        ..Message::default()
    }
}

/// A store with `n` messages in one lane, all indexed.
fn make_store(n: usize) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let s = Store::open(t.path(), opts()).unwrap();
    for chunk in (0..n).collect::<Vec<_>>().chunks(7) {
        s.append_batch(chunk.iter().map(|&i| msg(i)).collect()).unwrap();
    }
    assert!(s.wait_indexed(Duration::from_secs(30)));
    s.close().unwrap();
    t
}

fn lane1(dir: &Path) -> PathBuf {
    dir.join(LANES_DIR).join("lane-0001")
}

fn segments(lane: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(lane)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

/// Record frames of a segment: (offset, frame length, LSN).
fn frames(seg: &Path) -> Vec<(u64, u64, u64)> {
    let b = std::fs::read(seg).unwrap();
    let mut out = Vec::new();
    let mut p = tidelog_journal::SEGMENT_HEADER_LEN;
    while p + 20 <= b.len() {
        let lsn = u64::from_le_bytes(b[p..p + 8].try_into().unwrap());
        let len = u32::from_le_bytes(b[p + 8..p + 12].try_into().unwrap()) as usize;
        if lsn == 0 || &b[p..p + 8] == b"LBSEAL\r\n" {
            break;
        }
        let f = tidelog_journal::frame_len(len);
        out.push((p as u64, f as u64, lsn));
        p += f;
    }
    out
}

fn flip(path: &Path, offset: u64) {
    let mut b = std::fs::read(path).unwrap();
    b[offset as usize] ^= 0x5A;
    std::fs::write(path, b).unwrap();
}

/// Every message id a read-only store shows, and its problems.
fn visible(dir: &Path) -> (BTreeSet<String>, Vec<String>) {
    let s = Store::open(dir, StoreOptions { read_only: true, ..opts() }).unwrap();
    let mut ids = BTreeSet::new();
    for k in 0..SESSIONS {
        for m in s.messages(&format!("s{k}")).unwrap() {
            ids.insert(m.id);
        }
    }
    let problems = s.status().problems;
    s.close().unwrap();
    (ids, problems)
}

fn all_ids(n: usize) -> BTreeSet<String> {
    (0..n).map(|i| msg(i).id).collect()
}

/// Salvage, then rebuild the index: returns what is visible afterwards and the repair report.
fn salvage_and_rebuild(dir: &Path) -> (BTreeSet<String>, ops::RepairReport) {
    let r = ops::repair_store(dir, RecoveryMode::Salvage, &mut |_, _, _| {}).unwrap();
    ops::rebuild_index_in_place(dir, "test", &mut |_, _, _| {}).unwrap();
    let (ids, problems) = visible(dir);
    assert!(problems.is_empty(), "after salvage and rebuild: {problems:?}");
    (ids, r)
}

/// The message stored at `lsn` of lane 1 (payload order: appended in id order).
fn id_at(lsn: u64) -> String {
    msg(lsn as usize - 1).id
}

#[test]
fn a_flipped_byte_in_a_sealed_record_loses_that_record_only() {
    const N: usize = 1000;
    let src = make_store(N);
    let segs = segments(&lane1(src.path()));
    assert!(segs.len() >= 3, "needs sealed segments: {segs:?}");
    let sealed = &segs[1];
    let fr = frames(sealed);
    // Offsets in the header, the payload and the checksum of records across the segment.
    let picks: Vec<(u64, u64)> = [1usize, fr.len() / 3, fr.len() / 2, fr.len() - 1]
        .iter()
        .flat_map(|&k| {
            let (off, len, lsn) = fr[k];
            [(off + 3, lsn), (off + 10, lsn), (off + len / 2, lsn), (off + len - 2, lsn)]
        })
        .collect();
    for (with_index, picks) in [(true, &picks[..]), (false, &picks[..6])] {
        for &(off, lsn) in picks {
            let t = tempfile::tempdir().unwrap();
            copy_dir(src.path(), t.path());
            if !with_index {
                for f in ["index.db", "index.db-wal", "index.db-shm"] {
                    let _ = std::fs::remove_file(t.path().join(f));
                }
            }
            flip(&segments(&lane1(t.path()))[1], off);
            let what = format!("offset {off} (LSN {lsn}), index {with_index}");

            // Reads: everything but the damaged record's message is there (with an index, that
            // one too); without an index the damage is met and named.
            let (ids, problems) = visible(t.path());
            let mut expect = all_ids(N);
            if !with_index {
                expect.remove(&id_at(lsn));
                assert!(problems.iter().any(|p| p.contains(&format!("{lsn}..={lsn}"))), "{what}: {problems:?}");
            }
            assert_eq!(ids, expect, "{what}");

            // verify sees it; a strict repair refuses and says to salvage.
            assert!(!ops::verify_store(t.path(), &mut |_, _, _| {}).unwrap().is_ok(), "{what}");
            let strict = ops::repair_store(t.path(), RecoveryMode::Strict, &mut |_, _, _| {}).unwrap();
            assert_eq!(strict.lanes[0].outcome, LaneOutcome::Failed, "{what}");

            let (ids, r) = salvage_and_rebuild(t.path());
            assert_eq!(r.lanes[0].lost_lsns, vec![(lsn, lsn)], "{what}");
            if with_index {
                assert_eq!(r.restored.restored.len(), 1, "{what}");
                assert_eq!(ids, all_ids(N), "{what}: salvage + rebuild keeps what the index held");
            } else {
                assert_eq!(ids, expect, "{what}");
            }
        }
    }
}

#[test]
fn a_flipped_byte_in_the_active_segment_then_a_writer_restart_keeps_the_index() {
    const N: usize = 60;
    let src = make_store(N);
    let segs = segments(&lane1(src.path()));
    let active = segs.last().unwrap().clone();
    let fr = frames(&active);
    assert!(fr.len() > 4);
    let picks = [fr.len() / 2, 1, fr.len() - 1];
    for &k in &picks {
        for part in [2u64, 15, 30] {
            let (off, len, lsn) = fr[k];
            let off = off + part.min(len - 1);
            let t = tempfile::tempdir().unwrap();
            copy_dir(src.path(), t.path());
            let seg = t.path().join(active.strip_prefix(src.path()).unwrap());
            flip(&seg, off);
            let what = format!("record {k} LSN {lsn} offset {off}");

            // A writer restarts: the damaged lane is refused (never cut as a torn tail), a new
            // lane takes the appends, and the index is kept (not quarantined, not rebuilt).
            let s = Store::open(t.path(), opts()).unwrap();
            assert_ne!(s.lane(), "lane-0001", "{what}");
            s.append(msg(N)).unwrap();
            assert!(s.wait_indexed(Duration::from_secs(30)), "{what}: {:?}", s.status().problems);
            let st = s.status();
            assert_eq!(st.compactor.index_quarantined, 0, "{what}: {:?}", st.problems);
            assert!(st.problems.iter().any(|p| p.contains("lane-0001")), "{what}: {:?}", st.problems);
            s.close().unwrap();
            assert!(!t.path().join("quarantine").exists(), "{what}: the index was quarantined");

            let (ids, problems) = visible(t.path());
            assert_eq!(ids, all_ids(N + 1), "{what}");
            assert!(!problems.is_empty(), "{what}: reads must say the lane is damaged");

            // Without the index, exactly the damaged record is missing, and named.
            let bare = tempfile::tempdir().unwrap();
            copy_dir(t.path(), bare.path());
            for f in ["index.db", "index.db-wal", "index.db-shm"] {
                let _ = std::fs::remove_file(bare.path().join(f));
            }
            let (ids, problems) = visible(bare.path());
            let mut expect = all_ids(N + 1);
            expect.remove(&id_at(lsn));
            assert_eq!(ids, expect, "{what}");
            assert!(problems.iter().any(|p| p.contains(&format!("{lsn}..={lsn}"))), "{what}: {problems:?}");

            // Salvage restores the message from the index; a rebuild keeps it.
            let (ids, r) = salvage_and_rebuild(t.path());
            let lost = r.lanes.iter().find(|l| l.name == "lane-0001").unwrap().lost_lsns.clone();
            assert_eq!(lost, vec![(lsn, lsn)], "{what}");
            assert_eq!(ids, all_ids(N + 1), "{what}");
        }
    }
}

#[test]
fn an_emptied_active_segment_is_damage_and_the_index_copy_is_restored() {
    const N: usize = 50;
    let src = make_store(N);
    let t = tempfile::tempdir().unwrap();
    copy_dir(src.path(), t.path());
    let active = segments(&lane1(t.path())).pop().unwrap();
    std::fs::write(&active, b"").unwrap();

    let s = Store::open(t.path(), opts()).unwrap();
    assert_ne!(s.lane(), "lane-0001");
    assert!(s.wait_indexed(Duration::from_secs(10)) || !s.status().problems.is_empty());
    assert_eq!(s.status().compactor.index_quarantined, 0, "{:?}", s.status().problems);
    s.close().unwrap();
    let (ids, problems) = visible(t.path());
    assert_eq!(ids, all_ids(N), "the index still holds everything");
    assert!(!problems.is_empty());

    let (ids, r) = salvage_and_rebuild(t.path());
    assert!(!r.restored.restored.is_empty(), "{r:?}");
    assert_eq!(ids, all_ids(N));
    assert!(t.path().join(INDEX_FILE).exists());
}

#[test]
fn a_lane_folder_deleted_under_a_live_writer_stops_the_acks() {
    let t = tempfile::tempdir().unwrap();
    let s = Store::open(t.path(), opts()).unwrap();
    s.append(msg(0)).unwrap();
    let lane = t.path().join(LANES_DIR).join(s.lane());
    std::fs::remove_dir_all(&lane).unwrap();
    let err = s.append(msg(1)).unwrap_err();
    assert!(err.to_string().contains("deleted or replaced"), "{err}");
    assert!(s.append(msg(2)).is_err(), "poisoned: no later ack either");
    let st = s.status();
    assert!(st.journal_poisoned.is_some());
    assert!(st.problems.iter().any(|p| p.contains("refuses appends")), "{:?}", st.problems);
    drop(s);
}

#[test]
fn a_flipped_checksum_byte_of_the_last_record_is_not_a_torn_tail() {
    const N: usize = 30;
    let src = make_store(N);
    let active = segments(&lane1(src.path())).pop().unwrap();
    let &(off, len, lsn) = frames(&active).last().unwrap();
    assert_eq!(lsn as usize, N);
    for at in [off + len - 1, off + len - 4, off + 8] {
        let t = tempfile::tempdir().unwrap();
        copy_dir(src.path(), t.path());
        flip(&segments(&lane1(t.path())).pop().unwrap(), at);
        // repair --salvage (no writer in between): the record is lost, its message restored.
        let (ids, r) = salvage_and_rebuild(t.path());
        assert_eq!(r.lanes[0].lost_lsns, vec![(lsn, lsn)], "byte {}", at - off);
        assert!(r.lanes[0].torn_tails.is_empty(), "{:?}", r.lanes[0].torn_tails);
        assert_eq!(r.restored.restored.len(), 1);
        assert_eq!(ids, all_ids(N));
    }
}

/// A text longer than 256 bytes is kept only in its journal record (index schema 5): when damage
/// takes the record, salvage + rebuild restore the message from the index without its text, and
/// say so (report, marker in `extra`), never with an empty text that looks like one.
#[test]
fn a_lost_record_whose_text_only_the_journal_kept_is_restored_without_it() {
    const N: usize = 300;
    // Hex noise: compressed to about half, so the records still fill several 64 KiB segments.
    let long = |i: usize| {
        let mut x = 0x9e37_79b9_7f4a_7c15_u64 ^ i as u64;
        let noise: String = (0..200)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                format!("{:04x}", x & 0xffff)
            })
            .collect();
        Message { content: Some(format!("long message {i} {noise}")), ..msg(i) }
    };
    let t = tempfile::tempdir().unwrap();
    let s = Store::open(t.path(), opts()).unwrap();
    for chunk in (0..N).collect::<Vec<_>>().chunks(7) {
        s.append_batch(chunk.iter().map(|&i| long(i)).collect()).unwrap();
    }
    assert!(s.wait_indexed(Duration::from_secs(30)));
    s.close().unwrap();
    let segs = segments(&lane1(t.path()));
    assert!(segs.len() >= 3, "needs sealed segments: {segs:?}");
    let fr = frames(&segs[1]);
    let (off, len, lsn) = fr[fr.len() / 2];
    flip(&segs[1], off + len / 2);
    let (ids, r) = salvage_and_rebuild(t.path());
    assert_eq!(r.lanes[0].lost_lsns, vec![(lsn, lsn)]);
    assert_eq!(ids, all_ids(N), "the message is back");
    assert_eq!(r.restored.restored.len(), 1);
    let restored = &r.restored.restored[0];
    assert_eq!(restored.id, id_at(lsn));
    assert!(restored.text_lost.as_deref().is_some_and(|w| w.contains(".seg")), "{restored:?}");
    let s = Store::open(t.path(), opts()).unwrap();
    let m = s.all_messages(None, None).unwrap().into_iter().find(|m| m.id == restored.id).unwrap();
    assert_eq!(m.content, None);
    assert!(m.extra.as_deref().is_some_and(|e| e.contains("text_lost")), "{:?}", m.extra);
    // Every other text reads back whole.
    let others = s.all_messages(None, None).unwrap();
    assert!(
        others
            .iter()
            .filter(|m| m.id != restored.id)
            .all(|m| m.content.as_deref().is_some_and(|c| c.starts_with("long message")))
    );
    s.close().unwrap();
}
