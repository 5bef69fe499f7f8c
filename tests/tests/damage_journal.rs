//! Issue 10 at the journal level, on the simulated disk (which damages data at rest, sealed
//! segments included): a flipped byte at every offset of sealed records and of the last record,
//! and an emptied segment. Only the damaged record's LSN is ever lost; a damaged last record is
//! never cut as a torn tail; reads go on past damage and name the LSNs they skipped.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tidelog_journal::storage::SimStorage;
use tidelog_journal::{Error, Journal, Options, RecoveryMode, SealedCheck};

const DIR: &str = "/j";

fn opts(sim: &SimStorage, mode: RecoveryMode) -> Options {
    Options { storage: Arc::new(sim.clone()), segment_size: 2048, recovery: mode, ..Options::default() }
}

fn payload(lsn: u64) -> Vec<u8> {
    format!("record {lsn} {}", "x".repeat((lsn % 13) as usize * 7)).into_bytes()
}

/// A journal of `n` records, written in batches of 1 and 3.
fn journal(n: u64) -> SimStorage {
    let sim = SimStorage::new();
    let j = Journal::open(DIR, opts(&sim, RecoveryMode::Strict)).unwrap();
    let mut lsn = 1;
    while lsn <= n {
        if lsn % 4 == 0 && lsn + 2 <= n {
            let ps: Vec<Vec<u8>> = (lsn..lsn + 3).map(payload).collect();
            let refs: Vec<&[u8]> = ps.iter().map(|p| p.as_slice()).collect();
            j.append_batch(&refs).unwrap();
            lsn += 3;
        } else {
            j.append(&payload(lsn)).unwrap();
            lsn += 1;
        }
    }
    j.close().unwrap();
    sim
}

fn seg(id: u64) -> PathBuf {
    Path::new(DIR).join(format!("{id:020}.seg"))
}

/// (offset, frame length, LSN) of every record of a segment.
fn frames(sim: &SimStorage, id: u64) -> Vec<(u64, u64, u64)> {
    use tidelog_journal::storage::{OpenMode, Storage};
    let f = sim.open(&seg(id), OpenMode::Read).unwrap();
    let mut b = vec![0u8; f.len().unwrap() as usize];
    f.read_at(&mut b, 0).unwrap();
    let mut out = Vec::new();
    let mut p = tidelog_journal::SEGMENT_HEADER_LEN;
    while p + 20 <= b.len() && &b[p..p + 8] != b"LBSEAL\r\n" {
        let lsn = u64::from_le_bytes(b[p..p + 8].try_into().unwrap());
        if lsn == 0 {
            break;
        }
        let len = u32::from_le_bytes(b[p + 8..p + 12].try_into().unwrap()) as usize;
        let fl = tidelog_journal::frame_len(len) as u64;
        out.push((p as u64, fl, lsn));
        p += fl as usize;
    }
    out
}

fn last_segment(sim: &SimStorage) -> u64 {
    use tidelog_journal::storage::Storage;
    (1..).take_while(|&i| sim.exists(&seg(i))).last().unwrap()
}

/// Every record readable, and the LSN ranges the errors say were skipped.
fn read(j: &Journal) -> (Vec<u64>, Vec<(u64, u64)>) {
    let mut ok = Vec::new();
    let mut skipped = Vec::new();
    for r in j.iter_from(1) {
        match r {
            Ok(rec) => {
                assert_eq!(rec.payload, payload(rec.lsn));
                ok.push(rec.lsn);
            }
            Err(Error::Corrupt { first_lost_lsn, last_lost_lsn, .. }) => skipped.push((first_lost_lsn, last_lost_lsn)),
            Err(e) => panic!("{e}"),
        }
    }
    (ok, skipped)
}

fn all_but(n: u64, lost: u64) -> Vec<u64> {
    (1..=n).filter(|&l| l != lost).collect()
}

#[test]
fn a_flipped_byte_anywhere_in_sealed_records_loses_that_record_only() {
    const N: u64 = 80;
    let probe = journal(N);
    let fr = frames(&probe, 2);
    assert!(fr.len() >= 4, "{fr:?}");
    // Every byte of three records of a sealed segment: the first, one in the middle (inside a
    // batch or not), and the last before the footer.
    for &(off, len, lsn) in [fr[0], fr[fr.len() / 2], fr[fr.len() - 1]].iter() {
        for at in off..off + len {
            let sim = journal(N);
            sim.flip_byte(&seg(2), at, 0x5A).unwrap();
            let what = format!("LSN {lsn} byte {}", at - off);

            // Strict, footer check: opens; the reader names the damage and goes on.
            let j = Journal::open_read_only(DIR, opts(&sim, RecoveryMode::Strict)).unwrap();
            let (ok, skipped) = read(&j);
            assert_eq!(ok, all_but(N, lsn), "{what}");
            assert_eq!(skipped, vec![(lsn, lsn)], "{what}");

            // Strict, full check: refuses, naming exactly that LSN.
            let full = Options { sealed_check: SealedCheck::Full, ..opts(&sim, RecoveryMode::Strict) };
            match Journal::open(DIR, full) {
                Err(Error::Corrupt { first_lost_lsn, last_lost_lsn, .. }) => {
                    assert_eq!((first_lost_lsn, last_lost_lsn), (lsn, lsn), "{what}")
                }
                other => panic!("{what}: {other:?}"),
            }

            // Salvage reads sealed segments record by record: exactly that LSN lost.
            let j = Journal::open(DIR, opts(&sim, RecoveryMode::Salvage)).unwrap();
            assert_eq!(j.recovery_report().lost_lsns(), vec![(lsn, lsn)], "{what}");
            let (ok, skipped) = read(&j);
            assert_eq!(ok, all_but(N, lsn), "{what}");
            assert!(skipped.is_empty(), "{what}: a salvaged hole is skipped quietly: {skipped:?}");
            assert_eq!(j.append(&payload(N + 1)).unwrap(), N + 1);
            j.close().unwrap();
            let j = Journal::open(DIR, opts(&sim, RecoveryMode::Strict)).unwrap();
            assert!(j.recovery_report().is_clean(), "{what}: {:?}", j.recovery_report().problems);
        }
    }
}

#[test]
fn a_flipped_byte_anywhere_in_the_last_record_is_damage_not_a_torn_tail() {
    for n in [5u64, 7] {
        // n = 7 ends with a batch of three (LSNs 4..=6) then one record; n = 5 ends inside the
        // last segment with a single record.
        let probe = journal(n);
        let last_seg = last_segment(&probe);
        let &(off, len, lsn) = frames(&probe, last_seg).last().expect("the last record is in the active segment");
        assert_eq!(lsn, n);
        for at in off..off + len {
            let sim = journal(n);
            sim.flip_byte(&seg(last_seg), at, 0x5A).unwrap();
            let what = format!("n {n} byte {}", at - off);
            match Journal::open(DIR, opts(&sim, RecoveryMode::Strict)) {
                Err(Error::Corrupt { first_lost_lsn, last_lost_lsn, .. }) => {
                    assert_eq!((first_lost_lsn, last_lost_lsn), (lsn, lsn), "{what}")
                }
                Ok(j) => panic!("{what}: opened, cutting the last record: {:?}", j.recovery_report().torn_tails),
                Err(e) => panic!("{what}: {e}"),
            }
            let ro = Journal::open_read_only(DIR, opts(&sim, RecoveryMode::Salvage)).unwrap();
            assert_eq!(ro.last_lsn(), n, "{what}");
            let (ok, skipped) = read(&ro);
            assert_eq!(ok, all_but(n, lsn), "{what}");
            assert_eq!(skipped, vec![(lsn, lsn)], "{what}");

            let j = Journal::open(DIR, opts(&sim, RecoveryMode::Salvage)).unwrap();
            assert_eq!(j.recovery_report().lost_lsns(), vec![(lsn, lsn)], "{what}");
            assert!(j.recovery_report().torn_tails.is_empty(), "{what}");
            assert_eq!(j.append(&payload(n + 1)).unwrap(), n + 1, "{what}: the lost LSN is never reused");
            j.close().unwrap();
            let j = Journal::open(DIR, opts(&sim, RecoveryMode::Strict)).unwrap();
            let (ok, _) = read(&j);
            assert_eq!(ok, all_but(n + 1, lsn), "{what}");
        }
    }
}

#[test]
fn an_emptied_segment_is_damage() {
    const N: u64 = 60;
    let sim = journal(N);
    let last = last_segment(&sim);
    let first_lost = frames(&sim, last)[0].2;
    sim.truncate_at_rest(&seg(last), 0).unwrap();
    match Journal::open(DIR, opts(&sim, RecoveryMode::Strict)) {
        Err(Error::Corrupt { first_lost_lsn, .. }) => assert_eq!(first_lost_lsn, first_lost),
        other => panic!("{other:?}"),
    }
    let j = Journal::open(DIR, opts(&sim, RecoveryMode::Salvage)).unwrap();
    let rep = j.recovery_report();
    assert!(rep.problems.iter().any(|p| p.contains(&format!("from {first_lost} on"))), "{:?}", rep.problems);
    let (ok, _) = read(&j);
    assert_eq!(ok, (1..first_lost).collect::<Vec<_>>());
}
