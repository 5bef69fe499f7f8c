//! Maintenance beside live writers (issue 11): `verify`, `repair` and `backup` run while three
//! writers append at a gateway's pace (and faster), with small segments so rotations happen
//! during the checks. None of them may report damage that is not there, the backups must finish
//! and verify, and a backup stopped part-way must fail verify.
//!
//! `TIDELOG_LIVE_ROUNDS` sets how many verifies and repairs run (default 12, CI-sized; try 300).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tidelog::{Message, RecoveryMode, Store, StoreOptions, ops};

fn rounds() -> usize {
    std::env::var("TIDELOG_LIVE_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(12)
}

fn opts() -> StoreOptions {
    StoreOptions { poll_interval: Duration::from_millis(20), segment_size: 64 << 10, ..StoreOptions::default() }
}

struct Writers {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    handles: Vec<std::thread::JoinHandle<()>>,
}

/// Three writers (each its own store, so its own lane), appending one message every `pace`
/// (with a batch of three now and then), with texts of different lengths.
fn start_writers(dir: &std::path::Path, pace: Duration) -> Writers {
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let handles = (0..3)
        .map(|w| {
            let store = Store::open(dir, opts()).unwrap();
            let (stop, acked) = (Arc::clone(&stop), Arc::clone(&acked));
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let msg = |i: u64| Message {
                        id: format!("w{w}-{i}"),
                        session_id: format!("w{w}-s{}", i % 5),
                        role: "user".into(),
                        content: Some(format!("writer {w} message {i} {}", "lorem ".repeat((i % 40) as usize))),
                        ..Message::default()
                    };
                    if i.is_multiple_of(7) {
                        store.append_batch(vec![msg(i), msg(i + 1), msg(i + 2)]).unwrap();
                        i += 3;
                        acked.fetch_add(3, Ordering::SeqCst);
                    } else {
                        store.append(msg(i)).unwrap();
                        i += 1;
                        acked.fetch_add(1, Ordering::SeqCst);
                    }
                    std::thread::sleep(pace);
                }
                store.close().unwrap();
            })
        })
        .collect();
    Writers { stop, acked, handles }
}

impl Writers {
    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        for h in self.handles {
            h.join().unwrap();
        }
        self.acked.load(Ordering::SeqCst)
    }
}

#[test]
fn verify_and_repair_beside_live_writers_report_nothing() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("store");
    let writers = start_writers(&dir, Duration::from_millis(2));
    std::thread::sleep(Duration::from_millis(200));
    let n = rounds();
    let mut failures = Vec::new();
    for round in 0..n {
        let r = ops::verify_store(&dir, &mut |_, _, _| {}).unwrap();
        if !r.is_ok() {
            failures.push(format!("verify {round}: {:?}", r.problems));
        }
        if round % 3 == 2 {
            let r = ops::repair_store(&dir, RecoveryMode::Strict, &mut |_, _, _| {}).unwrap();
            if !r.verify.is_ok() {
                failures.push(format!("repair {round}: {:?}", r.verify.problems));
            }
        }
    }
    let acked = writers.stop();
    assert!(acked > 100, "the writers wrote ({acked})");
    assert!(
        failures.is_empty(),
        "{} of {n} rounds reported damage that is not there:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let r = ops::verify_store(&dir, &mut |_, _, _| {}).unwrap();
    assert!(r.is_ok(), "{:?}", r.problems);
    // Nothing left behind by the index copies.
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(".logbook-tmp-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A store big enough that an incremental SQLite backup restarted by every compactor commit
/// never finished; the one-step copy finishes.
#[test]
fn backup_and_verify_finish_beside_a_writer() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("store");
    {
        let s = Store::open(&dir, StoreOptions::default()).unwrap();
        let batch: Vec<Message> = (0..5_000)
            .map(|i| Message {
                id: format!("seed-{i}"),
                session_id: format!("seed-{}", i % 50),
                role: "assistant".into(),
                content: Some(format!("seed message {i} {}", "ipsum dolor ".repeat(20))),
                ..Message::default()
            })
            .collect();
        for chunk in batch.chunks(500) {
            s.append_batch(chunk.to_vec()).unwrap();
        }
        assert!(s.wait_indexed(Duration::from_secs(60)));
        s.close().unwrap();
    }
    let writers = start_writers(&dir, Duration::from_millis(5));
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let r = ops::verify_store(&dir, &mut |_, _, _| {}).unwrap();
    let verify_time = started.elapsed();
    assert!(r.is_ok(), "{:?}", r.problems);
    let dest = t.path().join("backup");
    let started = Instant::now();
    let b = ops::backup_store(&dir, &dest, &mut |_, _, _| {}).unwrap();
    let backup_time = started.elapsed();
    assert!(b.index_copied, "{:?}", b.index_problem);
    writers.stop();
    eprintln!("beside 3 writers: verify {verify_time:?}, backup {backup_time:?}");
    assert!(verify_time < Duration::from_secs(30) && backup_time < Duration::from_secs(30));
    let r = ops::verify_store(&dest, &mut |_, _, _| {}).unwrap();
    assert!(r.is_ok(), "{:?}", r.problems);
}

#[test]
fn a_backup_stopped_part_way_fails_verify() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("store");
    let s = Store::open(&dir, StoreOptions::default()).unwrap();
    for i in 0..50 {
        s.append(Message {
            id: format!("m{i}"),
            session_id: "s".into(),
            role: "user".into(),
            content: Some(format!("message {i}")),
            ..Message::default()
        })
        .unwrap();
    }
    s.close().unwrap();
    let dest = t.path().join("backup");
    ops::backup_store(&dir, &dest, &mut |_, _, _| {}).unwrap();
    assert!(ops::verify_store(&dest, &mut |_, _, _| {}).unwrap().is_ok());
    // What a kill before the last step leaves: everything but the completion.
    let marker = dest.join("backup.json");
    let text = std::fs::read_to_string(&marker).unwrap().replace("\"complete\": true", "\"complete\": false");
    std::fs::write(&marker, text).unwrap();
    let r = ops::verify_store(&dest, &mut |_, _, _| {}).unwrap();
    assert!(!r.is_ok());
    assert!(r.problems.iter().any(|p| p.contains("did not complete") && p.contains("backup.json")), "{:?}", r.problems);
    // A destination inside the store is refused.
    let e = ops::backup_store(&dir, &dir.join("bk"), &mut |_, _, _| {}).unwrap_err();
    assert!(e.to_string().contains("inside the store"), "{e}");
    assert!(!dir.join("bk").exists());
}

#[test]
fn a_killed_verify_leaves_nothing_after_the_next_run() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("store");
    let s = Store::open(&dir, StoreOptions::default()).unwrap();
    s.append(Message { id: "a".into(), session_id: "s".into(), role: "user".into(), ..Message::default() }).unwrap();
    assert!(s.wait_indexed(Duration::from_secs(10)));
    s.close().unwrap();
    // A scratch folder of a verify that was killed: its lock is free.
    let stale = dir.join(".logbook-tmp-verify-1-1");
    std::fs::create_dir(&stale).unwrap();
    std::fs::write(stale.join("lock"), b"").unwrap();
    std::fs::write(stale.join("index.db"), vec![0u8; 4096]).unwrap();
    let r = ops::verify_store(&dir, &mut |_, _, _| {}).unwrap();
    assert!(r.is_ok(), "{:?}", r.problems);
    assert!(!stale.exists());
}
