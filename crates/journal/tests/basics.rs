//! Journal behaviour on the real file system: round trips, rotation, torn tails, corruption,
//! locking, retention.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};

use tidelog_journal::{Durability, Error, Journal, Options, RecoveryMode, SealedCheck, verify};

fn small_opts() -> Options {
    Options { segment_size: 4096, preallocate: true, ..Options::default() }
}

fn payload(i: u64) -> Vec<u8> {
    format!("record-{i}-{}", "x".repeat((i % 37) as usize)).into_bytes()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

fn read_all(j: &Journal) -> Vec<(u64, Vec<u8>)> {
    j.iter_from(1).map(|r| r.map(|r| (r.lsn, r.payload))).collect::<Result<_, _>>().unwrap()
}

#[test]
fn append_read_reopen_across_rotations() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), small_opts()).unwrap();
    for i in 1..=300u64 {
        assert_eq!(j.append(&payload(i)).unwrap(), i);
    }
    let first = j.append_batch(&[b"a", b"b", b"c"]).unwrap();
    assert_eq!(first, 301);
    assert!(segments(dir.path()).len() > 3, "expected rotation");
    let all = read_all(&j);
    assert_eq!(all.len(), 303);
    for (i, (lsn, p)) in all.iter().take(300).enumerate() {
        assert_eq!(*lsn, i as u64 + 1);
        assert_eq!(p, &payload(i as u64 + 1));
    }
    // Reading from the middle.
    let mid: Vec<_> = j.iter_from(150).map(|r| r.unwrap().lsn).collect();
    assert_eq!(mid.first(), Some(&150));
    assert_eq!(mid.len(), 303 - 149);
    j.close().unwrap();
    drop(j);

    let j = Journal::open(dir.path(), small_opts()).unwrap();
    let rep = j.recovery_report().clone();
    assert!(rep.is_clean(), "{:?}", rep.problems);
    assert!(rep.sealed_checked_by_footer >= 3);
    assert_eq!(rep.segments_scanned, 1, "only the active segment is scanned");
    assert_eq!(j.last_lsn(), 303);
    assert_eq!(read_all(&j).len(), 303);
    assert_eq!(j.append(b"after").unwrap(), 304);
    let v = verify(dir.path(), &small_opts()).unwrap();
    assert!(v.problems.is_empty(), "{:?}", v.problems);
}

#[test]
fn empty_and_oversized_records() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options { max_record_size: 100, ..small_opts() };
    let j = Journal::open(dir.path(), opts.clone()).unwrap();
    assert_eq!(j.append(b"").unwrap(), 1);
    let big = vec![7u8; 101];
    assert!(matches!(j.append(&big), Err(Error::RecordTooLarge { len: 101, max: 100 })));
    // A batch with one oversized record writes nothing.
    assert!(j.append_batch(&[b"ok", &big]).is_err());
    assert_eq!(j.append(b"next").unwrap(), 2);
    assert_eq!(read_all(&j), vec![(1, vec![]), (2, b"next".to_vec())]);
    // A record larger than a segment still fits (in a segment of its own).
    drop(j);
    let opts = Options { max_record_size: 64 << 10, ..small_opts() };
    let j = Journal::open(dir.path(), opts.clone()).unwrap();
    let huge = vec![1u8; 20_000];
    assert_eq!(j.append(&huge).unwrap(), 3);
    assert_eq!(j.append(b"tail").unwrap(), 4);
    drop(j);
    let j = Journal::open(dir.path(), opts).unwrap();
    let all = read_all(&j);
    assert_eq!(all.len(), 4);
    assert_eq!(all[2].1, huge);
}

#[test]
fn second_writer_is_refused_reader_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), small_opts()).unwrap();
    j.append(b"one").unwrap();
    match Journal::open(dir.path(), small_opts()) {
        Err(Error::Locked { .. }) => {}
        other => panic!("expected Locked, got {other:?}"),
    }
    let r = Journal::open_read_only(dir.path(), small_opts()).unwrap();
    assert_eq!(r.last_lsn(), 1);
    j.append(b"two").unwrap();
    assert_eq!(r.refresh().unwrap(), 2);
    let got: Vec<_> = r.iter_from(1).map(|x| x.unwrap().payload).collect();
    assert_eq!(got, vec![b"one".to_vec(), b"two".to_vec()]);
    assert!(matches!(r.append(b"x"), Err(Error::ReadOnly { .. })));
    drop(j);
    // Lock released on drop.
    Journal::open(dir.path(), small_opts()).unwrap();
}

#[test]
fn permissions_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("j");
    let j = Journal::open(&dir, small_opts()).unwrap();
    j.append(b"secret").unwrap();
    assert_eq!(fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    for s in segments(&dir) {
        assert_eq!(fs::metadata(&s).unwrap().permissions().mode() & 0o777, 0o600, "{}", s.display());
    }
}

/// Writes three records into the active segment, returning their end offsets.
fn three_record_journal(dir: &Path) -> (PathBuf, Vec<u64>) {
    let opts = Options { preallocate: false, ..small_opts() };
    let j = Journal::open(dir, opts).unwrap();
    let mut ends = Vec::new();
    for i in 1..=3u64 {
        j.append(&payload(i)).unwrap();
        let seg = segments(dir).pop().unwrap();
        ends.push(fs::metadata(&seg).unwrap().len());
    }
    drop(j);
    (segments(dir).pop().unwrap(), ends)
}

#[test]
fn torn_tail_at_every_offset_of_last_three_records() {
    let src = tempfile::tempdir().unwrap();
    let (seg, ends) = three_record_journal(src.path());
    let full = fs::read(&seg).unwrap();
    let start = tidelog_journal::SEGMENT_HEADER_LEN as u64;
    for cut in start..full.len() as u64 {
        for garbage in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let seg_path = dir.path().join(seg.file_name().unwrap());
            let mut bytes = full[..cut as usize].to_vec();
            if garbage {
                // A torn write that left garbage instead of nothing.
                bytes.extend(std::iter::repeat_n(0xA5u8, 13));
            }
            fs::write(&seg_path, &bytes).unwrap();
            let j = Journal::open(dir.path(), Options { preallocate: false, ..small_opts() })
                .unwrap_or_else(|e| panic!("open failed at cut {cut}: {e}"));
            let expect = ends.iter().filter(|&&e| e <= cut).count() as u64;
            assert_eq!(j.last_lsn(), expect, "cut {cut}");
            let rec = read_all(&j);
            assert_eq!(rec.len() as u64, expect);
            for (lsn, p) in &rec {
                assert_eq!(p, &payload(*lsn));
            }
            let rep = j.recovery_report().clone();
            let kept_end = ends.iter().copied().filter(|&e| e <= cut).max().unwrap_or(start) as usize;
            // The quarantine keeps every cut byte except trailing zeros (never-written space).
            let mut cut_part = bytes[kept_end..].to_vec();
            while cut_part.last() == Some(&0) {
                cut_part.pop();
            }
            if !cut_part.is_empty() {
                assert_eq!(rep.torn_tails.len(), 1, "cut {cut}");
                let t = &rep.torn_tails[0];
                assert_eq!(t.offset as usize, kept_end);
                assert_eq!(t.len, cut_part.len() as u64);
                let q = fs::read(dir.path().join(&t.quarantine_file)).unwrap();
                assert_eq!(q, cut_part, "quarantined bytes differ");
                assert!(dir.path().join(t.quarantine_file.replace(".bin", ".json")).exists());
            } else {
                assert!(rep.torn_tails.is_empty());
            }
            // Idempotent: a second open finds nothing more.
            drop(j);
            let j = Journal::open(dir.path(), Options { preallocate: false, ..small_opts() }).unwrap();
            assert!(j.recovery_report().is_clean(), "second open at cut {cut}: {:?}", j.recovery_report().problems);
            assert_eq!(j.last_lsn(), expect);
            // And appends continue right after the prefix.
            assert_eq!(j.append(b"more").unwrap(), expect + 1);
        }
    }
}

fn sealed_journal(dir: &Path) -> Vec<PathBuf> {
    let j = Journal::open(dir, small_opts()).unwrap();
    for i in 1..=200u64 {
        j.append(&payload(i)).unwrap();
    }
    drop(j);
    segments(dir)
}

#[test]
fn flipped_byte_in_sealed_segment_strict_refuses_salvage_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let segs = sealed_journal(dir.path());
    assert!(segs.len() >= 3);
    let victim = &segs[1];
    let mut bytes = fs::read(victim).unwrap();
    let off = 64 + 200; // inside the records of a sealed segment
    bytes[off] ^= 0x10;
    fs::write(victim, &bytes).unwrap();

    // The default open trusts sealed footers; reading the damaged record reports it.
    let j = Journal::open(dir.path(), small_opts()).unwrap();
    let errs: Vec<_> = j.iter_from(1).filter_map(|r| r.err()).collect();
    assert_eq!(errs.len(), 1);
    assert!(matches!(&errs[0], Error::Corrupt { path, .. } if path == victim), "{:?}", errs[0]);
    drop(j);
    let v = verify(dir.path(), &small_opts()).unwrap();
    assert!(!v.problems.is_empty());

    // A full check refuses, naming the segment and an offset.
    let full = Options { sealed_check: SealedCheck::Full, ..small_opts() };
    match Journal::open(dir.path(), full.clone()) {
        Err(Error::Corrupt { path, offset, first_lost_lsn, last_lost_lsn, .. }) => {
            assert_eq!(&path, victim);
            assert!(offset as usize <= off && off < offset as usize + 200, "offset {offset}");
            assert!(first_lost_lsn <= last_lost_lsn);
            let msg = Error::Corrupt { path: path.clone(), offset, first_lost_lsn, last_lost_lsn, detail: "x".into() }
                .to_string();
            assert!(msg.contains(&victim.display().to_string()) && msg.contains(&offset.to_string()));
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }

    // Salvage keeps every other record and says exactly which LSNs were lost.
    let salv = Options { recovery: RecoveryMode::Salvage, ..full.clone() };
    let j = Journal::open(dir.path(), salv.clone()).unwrap();
    let rep = j.recovery_report().clone();
    let lost = rep.lost_lsns();
    assert_eq!(lost.len(), 1);
    let (a, b) = lost[0];
    assert_eq!(a, b, "one record damaged");
    let got = read_all(&j);
    assert_eq!(got.len(), 199);
    for (lsn, p) in &got {
        assert_ne!(*lsn, a);
        assert_eq!(p, &payload(*lsn));
    }
    assert!(!rep.salvaged[0].quarantine_file.as_deref().unwrap_or("").is_empty());
    drop(j);
    // Idempotent, and now even Strict opens (the hole is known).
    let j = Journal::open(dir.path(), full).unwrap();
    assert!(j.recovery_report().is_clean(), "{:?}", j.recovery_report().problems);
    assert_eq!(read_all(&j).len(), 199);
}

#[test]
fn mid_log_damage_in_active_segment_is_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options { segment_size: 1 << 20, ..small_opts() };
    let j = Journal::open(dir.path(), opts.clone()).unwrap();
    for i in 1..=20u64 {
        j.append(&payload(i)).unwrap();
    }
    drop(j);
    let seg = segments(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&seg).unwrap();
    bytes[64 + 30] ^= 0xFF;
    fs::write(&seg, &bytes).unwrap();
    match Journal::open(dir.path(), opts.clone()) {
        Err(Error::Corrupt { first_lost_lsn: 1, last_lost_lsn: 1, .. }) => {}
        other => panic!("expected Corrupt for LSN 1, got {other:?}"),
    }
    // Nothing was changed by the refused open.
    assert_eq!(fs::read(&seg).unwrap(), bytes);
    let j = Journal::open(dir.path(), Options { recovery: RecoveryMode::Salvage, ..opts }).unwrap();
    assert_eq!(j.recovery_report().lost_lsns(), vec![(1, 1)]);
    assert_eq!(read_all(&j).len(), 19);
    assert_eq!(j.append(b"x").unwrap(), 21);
}

#[test]
fn missing_or_substituted_segment_breaks_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let segs = sealed_journal(dir.path());
    let other = tempfile::tempdir().unwrap();
    let other_segs = sealed_journal(other.path());
    // Substitute segment 2 with the same-numbered segment of another journal.
    fs::copy(&other_segs[1], &segs[1]).unwrap();
    match Journal::open(dir.path(), small_opts()) {
        Err(e @ Error::BrokenChain { .. }) => assert!(e.to_string().contains("substituted"), "{e}"),
        other => panic!("expected BrokenChain, got {other:?}"),
    }
    // Remove it entirely.
    fs::remove_file(&segs[1]).unwrap();
    match Journal::open(dir.path(), small_opts()) {
        Err(e @ Error::BrokenChain { .. }) => assert!(e.to_string().contains("missing"), "{e}"),
        other => panic!("expected BrokenChain, got {other:?}"),
    }
    let j = Journal::open(dir.path(), Options { recovery: RecoveryMode::Salvage, ..small_opts() }).unwrap();
    let lost = j.recovery_report().lost_lsns();
    assert_eq!(lost.len(), 1);
    assert!(lost[0].1 >= lost[0].0);
}

#[test]
fn retention_removes_only_whole_sealed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let segs = sealed_journal(dir.path());
    let j = Journal::open(dir.path(), small_opts()).unwrap();
    let removed = j.remove_segments_below(150).unwrap();
    assert!(!removed.is_empty());
    assert!(j.first_lsn() <= 150 && j.first_lsn() > 1);
    let got = read_all(&j);
    assert_eq!(got.last().unwrap().0, 200);
    assert!(got.first().unwrap().0 <= 150);
    assert!(segments(dir.path()).len() < segs.len());
    // Never the active segment.
    j.remove_segments_below(u64::MAX).unwrap();
    assert_eq!(segments(dir.path()).len(), 1);
    drop(j);
    let j = Journal::open(dir.path(), small_opts()).unwrap();
    assert!(j.recovery_report().is_clean(), "{:?}", j.recovery_report().problems);
    assert_eq!(j.append(b"x").unwrap(), 201);
}

#[test]
fn concurrent_appenders_share_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), Options { segment_size: 1 << 20, ..Options::default() }).unwrap();
    let threads = 8;
    let per = 200;
    std::thread::scope(|s| {
        for t in 0..threads {
            let j = j.clone();
            s.spawn(move || {
                for i in 0..per {
                    j.append(format!("{t}-{i}").as_bytes()).unwrap();
                }
            });
        }
    });
    let total = threads * per;
    assert_eq!(j.last_lsn(), total as u64);
    let all = read_all(&j);
    assert_eq!(all.len(), total);
    let mut seen: Vec<_> = all.iter().map(|(_, p)| String::from_utf8(p.clone()).unwrap()).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), total, "each append exactly once");
    assert!(j.sync_count() <= total as u64, "at most one sync per append");
}

#[test]
fn buffered_mode_is_readable_and_synced_on_close() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options { durability: Durability::Buffered, ..small_opts() };
    let j = Journal::open(dir.path(), opts.clone()).unwrap();
    for i in 1..=10u64 {
        j.append(&payload(i)).unwrap();
    }
    assert_eq!(j.sync_count(), 0);
    assert_eq!(read_all(&j).len(), 10);
    j.close().unwrap();
    drop(j);
    let j = Journal::open(dir.path(), opts).unwrap();
    assert_eq!(j.last_lsn(), 10);
}

#[test]
fn incomplete_batch_at_tail_is_dropped_whole() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options { preallocate: false, segment_size: 1 << 20, ..small_opts() };
    let j = Journal::open(dir.path(), opts.clone()).unwrap();
    j.append(b"single").unwrap();
    j.append_batch(&[b"b1", b"b2", b"b3"]).unwrap();
    drop(j);
    let seg = segments(dir.path()).pop().unwrap();
    let len = fs::metadata(&seg).unwrap().len();
    // Cut the last record of the batch: b1 and b2 are whole but the batch is not.
    let f = fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 3).unwrap();
    drop(f);
    let j = Journal::open(dir.path(), opts).unwrap();
    assert_eq!(j.last_lsn(), 1, "a batch is all or nothing");
    assert_eq!(j.recovery_report().torn_tails.len(), 1);
}

/// Reopening resumes the active segment's digest from recovery's scan: a segment sealed after a
/// reopen still verifies (footer digest = digest of its bytes), with a torn tail cut in between.
#[test]
fn segments_sealed_after_a_reopen_verify() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options { preallocate: false, ..small_opts() };
    for round in 0..4u64 {
        let j = Journal::open(dir.path(), opts.clone()).unwrap();
        for i in 0..37 {
            j.append(&payload(round * 100 + i)).unwrap();
        }
        drop(j);
        if round == 1 {
            // A torn write left garbage after the last record.
            let seg = segments(dir.path()).pop().unwrap();
            let mut f = fs::OpenOptions::new().append(true).open(&seg).unwrap();
            std::io::Write::write_all(&mut f, &[0xAB; 9]).unwrap();
        }
    }
    let full = Options { sealed_check: SealedCheck::Full, ..opts.clone() };
    let j = Journal::open(dir.path(), full).unwrap();
    assert!(j.recovery_report().is_clean(), "{:?}", j.recovery_report().problems);
    assert_eq!(j.last_lsn(), 4 * 37);
    drop(j);
    let v = verify(dir.path(), &opts).unwrap();
    assert!(v.problems.is_empty(), "{:?}", v.problems);
}

/// A write cut just before its last byte (a 512-byte sector boundary one byte before the end of
/// the record) differs from the whole record in one byte: it is still a torn tail, never damage.
#[test]
fn a_record_missing_only_its_last_bytes_is_a_torn_tail() {
    let src = tempfile::tempdir().unwrap();
    let (seg, ends) = three_record_journal(src.path());
    let full = fs::read(&seg).unwrap();
    let last_end = *ends.last().unwrap() as usize;
    for missing in 1..=4 {
        let dir = tempfile::tempdir().unwrap();
        let seg_path = dir.path().join(seg.file_name().unwrap());
        let mut bytes = full[..last_end].to_vec();
        for b in &mut bytes[last_end - missing..] {
            *b = 0;
        }
        bytes.extend(std::iter::repeat_n(0u8, 100));
        fs::write(&seg_path, &bytes).unwrap();
        let j = Journal::open(dir.path(), Options { preallocate: false, ..small_opts() })
            .unwrap_or_else(|e| panic!("{missing} byte(s) missing: {e}"));
        assert_eq!(j.last_lsn(), 2, "{missing} byte(s) missing");
        assert_eq!(j.recovery_report().torn_tails.len(), 1);
    }
}

/// A record is read again by the place a scan reported, in sealed and active segments, by a
/// reader beside the writer; a wrong LSN or damaged bytes there are errors naming file and offset.
#[test]
fn records_are_read_again_by_their_place() {
    use tidelog_journal::RecordAt;
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), small_opts()).unwrap();
    for i in 1..=200u64 {
        j.append(&payload(i)).unwrap();
    }
    let places: Vec<(u64, u64, u64, Vec<u8>)> =
        j.iter_from(1).map(|r| r.unwrap()).map(|r| (r.lsn, r.segment, r.offset, r.payload)).collect();
    assert_eq!(places.len(), 200);
    assert!(places.last().unwrap().1 > 1, "the records span several segments");
    let at = RecordAt::new();
    for (lsn, seg, off, p) in &places {
        assert_eq!(&at.read(dir.path(), *seg, *off, *lsn, 1 << 20).unwrap(), p, "LSN {lsn}");
    }
    // The place of another record.
    let (_, seg, off, _) = places[10];
    let e = at.read(dir.path(), seg, off, 12, 1 << 20).unwrap_err();
    assert!(matches!(e, Error::Corrupt { offset, .. } if offset == off), "{e}");
    assert!(e.to_string().contains(".seg"), "{e}");
    // Damage inside a record's payload.
    let (lsn, seg, off, _) = places[20];
    let path = segments(dir.path()).into_iter().find(|p| p.to_string_lossy().contains(&format!("{seg:020}"))).unwrap();
    let mut bytes = fs::read(&path).unwrap();
    bytes[off as usize + 22] ^= 0x40;
    fs::write(&path, &bytes).unwrap();
    let fresh = RecordAt::new();
    assert!(matches!(fresh.read(dir.path(), seg, off, lsn, 1 << 20), Err(Error::Corrupt { .. })));
    // A segment that is not there.
    assert!(fresh.read(dir.path(), 999, 64, 1, 1 << 20).is_err());
}

/// `append_batch_improving`: an idle journal writes the shorter form; a longer "improvement" is
/// ignored; under concurrency every acknowledged record is there once, in one of its two forms,
/// at the LSN it was acknowledged with.
#[test]
fn improving_appends_write_one_of_the_two_forms() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), small_opts()).unwrap();
    let halve = |p: &[u8]| Some(p[..p.len() / 2].to_vec());
    let lsn = j.append_batch_improving(vec![b"abcdefgh".to_vec(), b"12345678".to_vec()], &halve).unwrap();
    let longer = |p: &[u8]| Some([p, p].concat());
    let third = j.append_batch_improving(vec![b"keep me".to_vec()], &longer).unwrap();
    let got: Vec<Vec<u8>> = j.iter_from(lsn).map(|r| r.unwrap().payload).collect();
    assert_eq!(got, vec![b"abcd".to_vec(), b"1234".to_vec(), b"keep me".to_vec()]);
    assert_eq!(third, lsn + 2);

    let acked = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..16u64 {
            let (j, acked) = (&j, &acked);
            s.spawn(move || {
                for i in 0..100u64 {
                    let p = format!("thread {t:02} record {i:03} ").repeat(4).into_bytes();
                    let lsn = j.append_batch_improving(vec![p.clone()], &halve).unwrap();
                    acked.lock().unwrap().push((lsn, p));
                }
            });
        }
    });
    let written: std::collections::HashMap<u64, Vec<u8>> =
        j.iter_from(third + 1).map(|r| r.unwrap()).map(|r| (r.lsn, r.payload)).collect();
    let acked = acked.into_inner().unwrap();
    assert_eq!(written.len(), acked.len(), "one record per acknowledged append");
    for (lsn, p) in acked {
        let w = &written[&lsn];
        assert!(w == &p || w.as_slice() == &p[..p.len() / 2], "LSN {lsn}: {w:?}");
    }
    j.close().unwrap();
    // Reopened: the same records.
    let j = Journal::open(dir.path(), small_opts()).unwrap();
    assert_eq!(j.iter_from(third + 1).count(), 1600);
}

/// A panic in `improve` keeps the payload as it is and the append succeeds (a batch waiting in
/// the queue must never be left there by an owner unwinding); the journal goes on.
#[test]
fn a_panicking_improvement_keeps_the_payload() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), small_opts()).unwrap();
    let boom = |_: &[u8]| -> Option<Vec<u8>> { panic!("improve failed") };
    let lsn = j.append_batch_improving(vec![b"as it is".to_vec()], &boom).unwrap();
    // Concurrent appends, so that some improvements run while waiting in the queue.
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..50 {
                    j.append_batch_improving(vec![b"as it is".to_vec()], &boom).unwrap();
                }
            });
        }
    });
    let all: Vec<Vec<u8>> = j.iter_from(lsn).map(|r| r.unwrap().payload).collect();
    assert_eq!(all.len(), 401);
    assert!(all.iter().all(|p| p == b"as it is"));
    j.close().unwrap();
}
