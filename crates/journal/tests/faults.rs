//! I/O faults on the simulated disk: poisoning after EIO at write and at sync (once and
//! permanent), no acknowledgement without a sync, a failed sync never retried, ENOSPC from the
//! capacity and from injected faults, rotation and reopen, and many appenders sharing one failing
//! sync. After each fault the journal is killed or the power is cut, and reopening must recover
//! every acknowledged append exactly once and in order (I1, I3).

#![allow(clippy::unwrap_used, reason = "test helpers panic on unexpected errors")]

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use tidelog_journal::storage::{Damage, FaultKind, FaultOp, SimStorage};
use tidelog_journal::{Durability, Error, Journal, Options};

const DIR: &str = "/faults/journal";

fn opts(sim: &SimStorage, durability: Durability) -> Options {
    Options { segment_size: 4096, durability, storage: Arc::new(sim.clone()), ..Options::default() }
}

fn open(sim: &SimStorage, durability: Durability) -> Journal {
    Journal::open(Path::new(DIR), opts(sim, durability)).unwrap()
}

fn payload(i: u64) -> Vec<u8> {
    format!("payload-{i}-{}", "p".repeat((i * 37 % 300) as usize)).into_bytes()
}

fn records(j: &Journal) -> Vec<(u64, Vec<u8>)> {
    j.iter_from(j.first_lsn()).map(|r| r.map(|r| (r.lsn, r.payload))).collect::<Result<_, _>>().unwrap()
}

/// Appends `n` payloads starting at id `from`; returns the acknowledged (LSN, payload) pairs.
fn fill(j: &Journal, from: u64, n: u64) -> Vec<(u64, Vec<u8>)> {
    (from..from + n).map(|i| (j.append(&payload(i)).unwrap(), payload(i))).collect()
}

/// I1 + I3 after reopen: the recovered records start with exactly `acked`, and whatever follows
/// is among `maybe` (in order).
fn assert_recovered(j: &Journal, acked: &[(u64, Vec<u8>)], maybe: &[Vec<u8>]) {
    let got = records(j);
    assert!(got.len() >= acked.len(), "lost acknowledged records: {} of {}", got.len(), acked.len());
    assert_eq!(&got[..acked.len()], acked, "acknowledged records differ");
    let extra: Vec<&Vec<u8>> = got[acked.len()..].iter().map(|(_, p)| p).collect();
    assert!(
        extra.len() <= maybe.len() && extra.iter().zip(maybe).all(|(a, b)| *a == b),
        "unexpected records after the acknowledged ones"
    );
    for w in got.windows(2) {
        assert_eq!(w[1].0, w[0].0 + 1, "gap in LSNs");
    }
}

/// What one appender saw: its acknowledged (LSN, payload) pairs and the error that stopped it.
type Outcome = (Vec<(u64, Vec<u8>)>, Error);

fn assert_poisoned(r: Result<u64, Error>) {
    match r {
        Err(e @ Error::Poisoned { .. }) => assert!(e.to_string().contains("reopen"), "message: {e}"),
        other => panic!("expected Poisoned, got {other:?}"),
    }
}

#[test]
fn eio_on_write_poisons_until_reopen() {
    for permanent in [false, true] {
        for durability in [Durability::Sync, Durability::Buffered] {
            let sim = SimStorage::new();
            let j = open(&sim, durability);
            let acked = fill(&j, 1, 5);
            j.sync().unwrap();
            sim.inject(FaultOp::Write, FaultKind::Eio, 0, permanent);
            match j.append(b"fails") {
                Err(Error::Io { op, .. }) => assert_eq!(op, "write"),
                other => panic!("expected an I/O error, got {other:?}"),
            }
            assert_poisoned(j.append(b"later"));
            assert_poisoned(j.append_batch(&[b"a", b"b"]));
            assert!(matches!(j.sync(), Err(Error::Poisoned { .. })));
            assert!(j.status().poisoned.is_some());
            assert_eq!(records(&j), acked, "acknowledged records stay readable");
            drop(j);
            sim.kill();
            let j = open(&sim, durability);
            assert_recovered(&j, &acked, &[]);
            assert_eq!(j.append(b"after").unwrap(), 6, "appends continue after reopen");
        }
    }
}

#[test]
fn eio_on_sync_poisons_acknowledges_nothing_and_is_never_retried() {
    for permanent in [false, true] {
        let sim = SimStorage::new();
        let j = open(&sim, Durability::Sync);
        let acked = fill(&j, 1, 4);
        sim.inject(FaultOp::Sync, FaultKind::Eio, 0, permanent);
        match j.append(b"unsynced") {
            Err(Error::Io { op, .. }) => assert_eq!(op, "sync"),
            other => panic!("expected a sync error, got {other:?}"),
        }
        assert_eq!(j.durable_lsn(), 4, "nothing unsynced counts as durable");
        let ops = sim.op_count();
        assert_poisoned(j.append(b"later"));
        assert!(matches!(j.sync(), Err(Error::Poisoned { .. })));
        assert_eq!(records(&j)[..4], acked[..]);
        j.close().unwrap();
        drop(j);
        assert_eq!(sim.op_count(), ops, "no write or sync after the failed sync (never retried)");
        sim.power_cut(Damage::Drop, 1);
        let j = open(&sim, Durability::Sync);
        assert_recovered(&j, &acked, &[]);
        assert_eq!(j.last_lsn(), 4, "the failed append is not durable");
    }
}

#[test]
fn buffered_failed_sync_is_never_retried_even_on_drop() {
    let sim = SimStorage::new();
    let j = open(&sim, Durability::Buffered);
    let synced = fill(&j, 1, 3);
    j.sync().unwrap();
    let unsynced = fill(&j, 4, 3);
    sim.inject(FaultOp::Sync, FaultKind::Eio, 0, false);
    assert!(matches!(j.sync(), Err(Error::Io { op: "sync", .. })));
    let ops = sim.op_count();
    assert_poisoned(j.append(b"later"));
    assert!(matches!(j.sync(), Err(Error::Poisoned { .. })));
    j.close().unwrap();
    drop(j);
    assert_eq!(sim.op_count(), ops, "a poisoned journal issued another sync (close or drop)");
    sim.power_cut(Damage::Drop, 0);
    let j = open(&sim, Durability::Buffered);
    let maybe: Vec<Vec<u8>> = unsynced.into_iter().map(|(_, p)| p).collect();
    assert_recovered(&j, &synced, &maybe);
}

#[test]
fn disk_full_from_capacity_then_recovery_after_freeing_space() {
    for preallocate in [true, false] {
        let sim = SimStorage::new();
        let o = Options { preallocate, ..opts(&sim, Durability::Sync) };
        let j = Journal::open(Path::new(DIR), o.clone()).unwrap();
        let mut acked = fill(&j, 1, 3);
        sim.set_capacity(Some(9000));
        let mut i = 100;
        let err = loop {
            match j.append(&payload(i)) {
                Ok(lsn) => acked.push((lsn, payload(i))),
                Err(e) => break e,
            }
            i += 1;
            assert!(i < 1000, "the disk never filled");
        };
        assert!(matches!(err, Error::DiskFull { .. }), "expected DiskFull, got {err:?}");
        assert!(err.to_string().contains("free space"), "{err}");
        assert_poisoned(j.append(b"later"));
        assert_eq!(records(&j), acked);
        drop(j);
        sim.kill();
        sim.set_capacity(None);
        let j = Journal::open(Path::new(DIR), o).unwrap();
        assert_recovered(&j, &acked, &[payload(i)]);
        let next = j.last_lsn() + 1;
        assert_eq!(j.append(b"space again").unwrap(), next);
    }
}

#[test]
fn injected_enospc_on_allocate_and_write() {
    for op in [FaultOp::Allocate, FaultOp::Write] {
        let sim = SimStorage::new();
        let j = open(&sim, Durability::Sync);
        let acked = fill(&j, 1, 2);
        sim.inject(op, FaultKind::Enospc, 0, true);
        // Keep appending until the faulted call is reached (allocate: at the next rotation).
        let mut acked2 = acked.clone();
        let mut i = 10;
        let err = loop {
            match j.append(&payload(i)) {
                Ok(lsn) => acked2.push((lsn, payload(i))),
                Err(e) => break e,
            }
            i += 1;
            assert!(i < 500, "{op:?} never failed");
        };
        assert!(matches!(err, Error::DiskFull { .. }), "{op:?}: expected DiskFull, got {err:?}");
        assert_poisoned(j.append(b"later"));
        drop(j);
        sim.power_cut(Damage::Garbage, 3);
        let j = open(&sim, Durability::Sync);
        assert_recovered(&j, &acked2, &[]);
        assert_eq!(j.append(b"continues").unwrap(), acked2.len() as u64 + 1);
    }
}

#[test]
fn rotation_and_reopen_on_the_simulated_disk() {
    let sim = SimStorage::new();
    let j = open(&sim, Durability::Sync);
    let mut acked = fill(&j, 1, 100);
    assert!(j.status().segments >= 4, "{:?}", j.status());
    drop(j);
    sim.power_cut(Damage::Torn4K, 9);
    let j = open(&sim, Durability::Sync);
    assert!(j.recovery_report().sealed_checked_by_footer >= 3);
    assert_recovered(&j, &acked, &[]);
    acked.extend(fill(&j, 101, 30));
    let big = vec![b'B'; 10_000];
    acked.push((j.append(&big).unwrap(), big));
    j.close().unwrap();
    drop(j);
    let j = open(&sim, Durability::Sync);
    assert!(j.recovery_report().is_clean(), "{:?}", j.recovery_report().problems);
    assert_recovered(&j, &acked, &[]);
}

#[test]
fn many_appenders_and_a_failing_sync_all_get_errors_without_hanging() {
    for permanent in [false, true] {
        let sim = SimStorage::new();
        let j = open(&sim, Durability::Sync);
        fill(&j, 1, 3);
        sim.inject(FaultOp::Sync, FaultKind::Eio, 6, permanent);
        let (tx, rx) = mpsc::channel();
        let worker = {
            let j = j.clone();
            std::thread::spawn(move || {
                let outcomes: Vec<Outcome> = std::thread::scope(|s| {
                    let hs: Vec<_> = (0..8u64)
                        .map(|t| {
                            let j = j.clone();
                            s.spawn(move || {
                                let mut mine = Vec::new();
                                for i in 0..10_000u64 {
                                    let p = payload(t * 100_000 + i);
                                    match j.append(&p) {
                                        Ok(lsn) => mine.push((lsn, p)),
                                        Err(e) => return (mine, e),
                                    }
                                }
                                panic!("appender {t} never saw the failure");
                            })
                        })
                        .collect();
                    hs.into_iter().map(|h| h.join().unwrap()).collect()
                });
                tx.send(outcomes).unwrap();
            })
        };
        let outcomes = rx.recv_timeout(Duration::from_secs(60)).expect("appenders hung after a failed sync");
        worker.join().unwrap();
        let durable = j.durable_lsn();
        let mut acked: Vec<(u64, Vec<u8>)> = Vec::new();
        for (mine, err) in outcomes {
            assert!(matches!(err, Error::Io { op: "sync", .. } | Error::Poisoned { .. }), "{err:?}");
            assert!(mine.iter().all(|(lsn, _)| *lsn <= durable), "acknowledged beyond the durable LSN");
            acked.extend(mine);
        }
        acked.sort();
        drop(j);
        sim.power_cut(Damage::Drop, 5);
        let j = open(&sim, Durability::Sync);
        let got = records(&j);
        for a in &acked {
            assert!(got.contains(a), "acknowledged LSN {} lost", a.0);
        }
        assert_eq!(got.len() as u64, j.last_lsn(), "gap-free from LSN 1");
    }
}

/// Growing preallocation (64 KiB, then doubling): a power cut at every mutating operation of a
/// workload that grows a 1 MiB segment through three steps (64 -> 128 -> 256 KiB), with every
/// kind of damage to what was not synced, loses no acknowledged append and invents none. The
/// other crash sweeps use segments of at most 64 KiB, preallocated whole at creation.
#[test]
fn power_cut_at_every_step_of_a_growing_preallocation() {
    let opts = |sim: &SimStorage| Options {
        segment_size: 1 << 20,
        durability: Durability::Sync,
        storage: Arc::new(sim.clone()),
        ..Options::default()
    };
    let big = |i: u64| format!("grow-{i}-{}", "g".repeat(3000 + (i * 131 % 900) as usize)).into_bytes();
    let run = |sim: &SimStorage, acked: &mut Vec<(u64, Vec<u8>)>| -> Result<(), Error> {
        let j = Journal::open(Path::new(DIR), opts(sim))?;
        for i in 0..70 {
            let lsn = j.append(&big(i))?;
            acked.push((lsn, big(i)));
        }
        j.close()
    };
    let sim = SimStorage::new();
    let mut acked = Vec::new();
    run(&sim, &mut acked).unwrap();
    let total = sim.op_count();
    let seg = Path::new(DIR).join("00000000000000000001.seg");
    let len = {
        use tidelog_journal::storage::{OpenMode, Storage};
        sim.open(&seg, OpenMode::Read).unwrap().len().unwrap()
    };
    assert!((256 << 10..=512 << 10).contains(&len), "the segment grew to {len} bytes");
    let mut cases = 0;
    for k in 0..total {
        for torn in [false, true] {
            for damage in Damage::ALL {
                let sim = SimStorage::with_seed(k * 31 + u64::from(torn));
                if torn {
                    sim.crash_after_torn(k);
                } else {
                    sim.crash_after(k);
                }
                let mut acked = Vec::new();
                let _ = run(&sim, &mut acked);
                sim.power_cut(damage, k);
                let j = Journal::open(Path::new(DIR), opts(&sim))
                    .unwrap_or_else(|e| panic!("k={k} torn={torn} {damage:?}: reopen failed: {e}"));
                let got = records(&j);
                assert!(got.len() >= acked.len(), "k={k} torn={torn} {damage:?}: lost acknowledged appends");
                assert_eq!(&got[..acked.len()], &acked[..], "k={k} torn={torn} {damage:?}");
                let n = got.len() as u64;
                assert!(got.iter().enumerate().all(|(i, (lsn, p))| *lsn == i as u64 + 1 && *p == big(i as u64)));
                assert_eq!(j.append(b"after").unwrap(), n + 1, "k={k} torn={torn} {damage:?}");
                cases += 1;
            }
        }
    }
    assert!(cases > 1000, "{cases} cases");
}

/// A lane folder deleted (or a segment replaced) under a live writer: the writer stops
/// acknowledging, since nobody could ever read what it writes there.
#[test]
fn deleted_files_under_a_writer_poison_it() {
    use tidelog_journal::storage::SimStorage;
    // Simulated disk: the active segment loses its name.
    let sim = SimStorage::new();
    let opts = Options { storage: std::sync::Arc::new(sim.clone()), ..Options::default() };
    let dir = std::path::Path::new("/j");
    let j = Journal::open(dir, opts).unwrap();
    j.append(b"one").unwrap();
    let seg = dir.join("00000000000000000001.seg");
    tidelog_journal::storage::Storage::remove_file(&sim, &seg).unwrap();
    let err = j.append(b"two").unwrap_err();
    assert!(matches!(err, tidelog_journal::Error::Unlinked { .. }), "{err}");
    assert!(matches!(j.append(b"three").unwrap_err(), tidelog_journal::Error::Poisoned { .. }));
    assert!(j.status().poisoned.is_some());

    // Real disk: the whole folder removed.
    let tmp = tempfile::tempdir().unwrap();
    let lane = tmp.path().join("lane");
    let j = Journal::open(&lane, Options::default()).unwrap();
    j.append(b"one").unwrap();
    std::fs::remove_dir_all(&lane).unwrap();
    let err = j.append(b"two").unwrap_err();
    assert!(matches!(err, tidelog_journal::Error::Unlinked { .. }), "{err}");
    // Removed and created again (a restore copied into place): still not ours.
    let lane2 = tmp.path().join("lane2");
    let j = Journal::open(&lane2, Options::default()).unwrap();
    j.append(b"one").unwrap();
    std::fs::rename(&lane2, tmp.path().join("aside")).unwrap();
    std::fs::create_dir(&lane2).unwrap();
    let err = j.append(b"two").unwrap_err();
    assert!(matches!(err, tidelog_journal::Error::Unlinked { .. }), "{err}");
}
