//! Overwriting records in place (erasure) on the real file system: the old bytes are gone from
//! the file as every open descriptor and map sees it, a leftover redo file is completed at open,
//! and an unsealed segment overwritten while its writer appends seals with a valid footer.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

use tidelog_journal::decode::{Redo, encode_record, segment_file_name};
use tidelog_journal::{Journal, Options, REDO_FILE, SealedCheck, overwrite_records, segment_ids, verify};

fn opts() -> Options {
    Options { segment_size: 4096, ..Options::default() }
}

fn payload(i: u64) -> Vec<u8> {
    format!("record-{i} SECRET-{i:04} {}", "x".repeat((i % 29) as usize)).into_bytes()
}

/// The same length as the payload, no secret left.
fn erased(p: &[u8]) -> Vec<u8> {
    let mut v = b"erased".to_vec();
    v.resize(p.len(), b'.');
    v
}

fn holds(bytes: &[u8], needle: &[u8]) -> bool {
    bytes.windows(needle.len()).any(|w| w == needle)
}

fn secret(i: u64) -> Vec<u8> {
    format!("SECRET-{i:04}").into_bytes()
}

fn clean_verify(dir: &Path) {
    let o = Options { sealed_check: SealedCheck::Full, ..opts() };
    let rep = verify(dir, &o).unwrap();
    assert!(rep.problems.is_empty(), "{:?}", rep.problems);
}

#[test]
fn every_descriptor_sees_the_overwritten_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), opts()).unwrap();
    for i in 1..=300 {
        j.append(&payload(i)).unwrap();
    }
    // Readers that hold the files before the erase: a read-only journal (maps of the sealed
    // segments once it has read them) and plain descriptors on every segment.
    let reader = Journal::open_read_only(dir.path(), opts()).unwrap();
    assert_eq!(reader.iter_from(1).count(), 300);
    let ids = segment_ids(dir.path(), &opts()).unwrap();
    assert!(ids.len() >= 3, "{ids:?}");
    let held: Vec<fs::File> =
        ids.iter().map(|id| fs::File::open(dir.path().join(segment_file_name(*id))).unwrap()).collect();

    let doomed = |lsn: u64| lsn.is_multiple_of(3);
    let mut replaced = 0;
    for id in &ids {
        let r =
            overwrite_records(dir.path(), &opts(), *id, &mut |lsn, p| doomed(lsn).then(|| erased(p)), None).unwrap();
        replaced += r.replaced;
    }
    assert_eq!(replaced, 100);
    assert!(!dir.path().join(REDO_FILE).exists());
    // Through the descriptors opened before: none of the doomed secrets.
    for f in &held {
        let mut bytes = Vec::new();
        (&*f).read_to_end(&mut bytes).unwrap();
        for lsn in (1..=300).filter(|l| doomed(*l)) {
            assert!(!holds(&bytes, &secret(lsn)), "LSN {lsn} still readable through an old descriptor");
        }
    }
    // Through the reader's maps: the replacements, every record valid.
    let got: Vec<_> = reader.iter_from(1).map(|r| r.unwrap()).collect();
    assert_eq!(got.len(), 300);
    for r in &got {
        let want = if doomed(r.lsn) { erased(&payload(r.lsn)) } else { payload(r.lsn) };
        assert_eq!(r.payload, want, "LSN {}", r.lsn);
    }
    // The writer goes on, seals the overwritten active segment, and everything verifies.
    for i in 301..=500 {
        j.append(&payload(i)).unwrap();
    }
    j.close().unwrap();
    clean_verify(dir.path());
    let again = Journal::open(dir.path(), opts()).unwrap();
    assert!(again.recovery_report().is_clean(), "{:?}", again.recovery_report().problems);
    assert_eq!(again.iter_from(1).count(), 500);
    // The segment that was active when it was overwritten was sealed after: its footer digest
    // matches its bytes as they are (a Full check reads every record and digest).
    assert!(segment_ids(dir.path(), &opts()).unwrap().len() > ids.len());
}

#[test]
fn a_leftover_redo_file_is_completed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), opts()).unwrap();
    for i in 1..=20 {
        j.append(&payload(i)).unwrap();
    }
    j.close().unwrap();
    drop(j);
    assert_eq!(segment_ids(dir.path(), &opts()).unwrap().len(), 1, "one unsealed segment");
    let first = segment_ids(dir.path(), &opts()).unwrap()[0];
    let path = dir.path().join(segment_file_name(first));
    let bytes = fs::read(&path).unwrap();
    // A salt-correct replacement of LSN 2, as an overwrite killed after its redo file was synced
    // and before the segment was written would leave it (an active-segment overwrite has no
    // header or footer to change).
    let salt = u32::from_le_bytes(bytes[32..36].try_into().unwrap());
    let p1 = payload(1);
    let at = 64 + (20 + p1.len() + 4) as u64;
    let mut frame = Vec::new();
    encode_record(&mut frame, salt, 2, 0, &erased(&payload(2)));
    let redo = Redo { segment_id: first, ranges: vec![(at, frame.clone())] };
    // The first half of the write reached the segment: a torn record.
    fs::OpenOptions::new().write(true).open(&path).unwrap().write_all_at(&frame[..frame.len() / 2], at).unwrap();
    fs::write(dir.path().join(REDO_FILE), redo.encode()).unwrap();
    let j = Journal::open(dir.path(), opts()).unwrap();
    assert!(!dir.path().join(REDO_FILE).exists());
    let got: Vec<_> = j.iter_from(1).map(|r| r.unwrap()).collect();
    assert_eq!(got.len(), 20);
    assert_eq!(got[1].payload, erased(&payload(2)));
    assert!(j.recovery_report().problems.iter().any(|p| p.contains("interrupted erase")), "{:?}", j.recovery_report());
    // A redo file cut short (killed while writing it) is discarded: the segment was not touched.
    j.close().unwrap();
    drop(j);
    let whole = Redo { segment_id: first, ranges: vec![(at + 1000, vec![7u8; 40])] }.encode();
    fs::write(dir.path().join(REDO_FILE), &whole[..whole.len() - 3]).unwrap();
    let j = Journal::open(dir.path(), opts()).unwrap();
    assert!(!dir.path().join(REDO_FILE).exists());
    assert_eq!(j.iter_from(1).count(), 20);
}

#[test]
fn a_replacement_of_another_length_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), opts()).unwrap();
    j.append(b"hello").unwrap();
    let id = segment_ids(dir.path(), &opts()).unwrap()[0];
    let e = overwrite_records(dir.path(), &opts(), id, &mut |_, _| Some(b"hi".to_vec()), None).unwrap_err();
    assert!(e.to_string().contains("same") || e.to_string().contains("length"), "{e}");
    assert_eq!(j.iter_from(1).next().unwrap().unwrap().payload, b"hello");
}

/// The blocks of zeros an overwrite leaves (an erased record's padding) go back to the file
/// system; the file reads the same, every record still checks, and the space is counted as
/// reclaimable until then ([`tidelog_journal::segment_space`]). A pass over blocks of zeros that
/// erasures of an older version left gives them back too.
#[test]
fn erased_records_give_their_blocks_back() {
    use tidelog_journal::{reclaim_segment, segment_space};
    let dir = tempfile::tempdir().unwrap();
    let o = Options { segment_size: 1 << 20, ..Options::default() };
    let j = Journal::open(dir.path(), o.clone()).unwrap();
    let big = |i: u8| vec![b'a' + i; 40_000];
    for i in 0..4 {
        j.append(&big(i)).unwrap();
    }
    j.seal_active().unwrap();
    let id = segment_ids(dir.path(), &o).unwrap()[0];
    let path = dir.path().join(segment_file_name(id));
    let before = segment_space(dir.path(), &o, id).unwrap();
    assert_eq!(before.reclaimable, 0);
    // Records 2 and 3 become zeros but for a marker: an erasure's shape.
    let zeros = |p: &[u8]| {
        let mut v = b"gone".to_vec();
        v.resize(p.len(), 0);
        v
    };
    let r =
        overwrite_records(dir.path(), &o, id, &mut |lsn, p| (lsn == 2 || lsn == 3).then(|| zeros(p)), None).unwrap();
    assert_eq!(r.replaced, 2);
    assert!(r.reclaimed_bytes >= 2 * 32_768, "{}", r.reclaimed_bytes);
    let after = segment_space(dir.path(), &o, id).unwrap();
    assert_eq!(after.reclaimable, 0);
    assert!(after.allocated + r.reclaimed_bytes <= before.allocated + 4096, "{before:?} {after:?}");
    let read: Vec<Vec<u8>> = j.iter_from(1).map(|r| r.unwrap().payload).collect();
    assert_eq!(read[0], big(0));
    assert_eq!(read[1], zeros(&big(1)));
    assert_eq!(read[3], big(3));
    clean_verify(dir.path());
    // Zeros written without punching (as an older version's erasure did): counted, then given
    // back by a pass over the segment.
    let second = 64 + (20 + 40_000 + 4) as u64;
    let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&vec![0u8; 16_384], second + 8192).unwrap();
    f.sync_all().unwrap();
    let counted = segment_space(dir.path(), &o, id).unwrap().reclaimable;
    assert!(counted >= 12_288, "{counted}");
    assert_eq!(reclaim_segment(dir.path(), &o, id).unwrap(), counted);
    assert_eq!(segment_space(dir.path(), &o, id).unwrap().reclaimable, 0);
    assert_eq!(reclaim_segment(dir.path(), &o, id).unwrap(), 0, "nothing left to give back");
    let again: Vec<Vec<u8>> = j.iter_from(1).map(|r| r.unwrap().payload).collect();
    assert_eq!(again, read);
    clean_verify(dir.path());
}
