//! The logic of the fuzz targets, as plain functions: `fuzz/fuzz_targets/*.rs` call them under
//! libFuzzer, and `tests/tests/fuzz_corpus.rs` replays every committed corpus file through them
//! as an ordinary test. Each panics on a violated invariant.

use std::collections::HashSet;

use arbitrary::{Arbitrary, Unstructured};
use tidelog_journal::decode::{HeaderCheck, SegmentHeader, check_record_body, check_record_header, segment_file_name};
use tidelog_journal::storage::{Damage, SimStorage};
use tidelog_journal::{Durability, Error, Journal, Options, RecoveryMode, SEGMENT_HEADER_LEN};

use crate::{Model, dir, recover_and_check, sim_opts};

/// Largest record the decoder targets accept: bounds every allocation a length field can ask for.
pub const FUZZ_MAX_RECORD: u32 = 1 << 20;

/// Splits `data` into up to three segment files: the first byte says how many and where to cut.
fn split_segments(data: &[u8]) -> Vec<&[u8]> {
    let Some((&ctl, rest)) = data.split_first() else {
        return vec![&[]];
    };
    let files = usize::from(ctl % 3) + 1;
    if files == 1 || rest.len() < 2 {
        return vec![rest];
    }
    // Cut at the boundaries the fuzzer can steer: fractions chosen by the control byte.
    let a = rest.len() * usize::from((ctl >> 2) % 8 + 1) / 10;
    let b = if files == 3 { a + (rest.len() - a) * usize::from((ctl >> 5) + 1) / 9 } else { rest.len() };
    let mut out = vec![&rest[..a], &rest[a..b]];
    if files == 3 {
        out.push(&rest[b..]);
    }
    out
}

/// Every (LSN, payload) a valid record anywhere in `file` could yield: what a reader may return.
fn valid_records_in(file: &[u8]) -> HashSet<(u64, Vec<u8>)> {
    let mut set = HashSet::new();
    let Ok(h) = SegmentHeader::decode(file) else { return set };
    for at in SEGMENT_HEADER_LEN..file.len() {
        let b = &file[at..];
        if let HeaderCheck::Valid(rh) = check_record_header(b, h.salt, FUZZ_MAX_RECORD)
            && let Some(range) = check_record_body(b, h.salt, &rh)
        {
            set.insert((rh.lsn, b[range].to_vec()));
        }
    }
    set
}

fn lay_out(files: &[&[u8]]) -> SimStorage {
    let sim = SimStorage::new();
    for (i, f) in files.iter().enumerate() {
        sim.write_file(&dir().join(segment_file_name(i as u64 + 1)), f);
    }
    sim
}

fn decoder_opts(sim: &SimStorage, recovery: RecoveryMode) -> Options {
    Options {
        recovery,
        max_record_size: FUZZ_MAX_RECORD,
        segment_size: 1 << 16,
        ..sim_opts(sim, 1 << 16, Durability::Sync)
    }
}

/// Reads everything and checks each record is one the files really contain, in increasing LSN
/// order. Errors from the iterator must be named corruption or I/O, never a panic.
fn read_checked(j: &Journal, valid: &HashSet<(u64, Vec<u8>)>) -> usize {
    let mut last = 0;
    let mut n = 0;
    for r in j.iter_from(j.first_lsn()) {
        match r {
            Ok(r) => {
                assert!(r.lsn > last, "LSN {} after {last}", r.lsn);
                assert!(r.payload.len() <= FUZZ_MAX_RECORD as usize);
                assert!(
                    valid.contains(&(r.lsn, r.payload.clone())),
                    "record LSN {} is not a valid record of the input",
                    r.lsn
                );
                last = r.lsn;
                n += 1;
            }
            Err(e) => {
                assert!(matches!(e, Error::Corrupt { .. } | Error::Io { .. }), "unexpected iterator error {e:?}");
                break;
            }
        }
    }
    n
}

/// Target `segment_recovery`: arbitrary bytes as one to three segment files, opened read-only,
/// Strict and Salvage. No panic, bounded allocation, every record returned is a checksummed record
/// of the input; a salvaged journal reopens cleanly with the same records (I5).
pub fn segment_recovery(data: &[u8]) {
    let files = split_segments(data);
    let valid: HashSet<(u64, Vec<u8>)> = files.iter().flat_map(|f| valid_records_in(f)).collect();
    for mode in [RecoveryMode::Strict, RecoveryMode::Salvage] {
        let sim = lay_out(&files);
        if let Ok(j) = Journal::open_read_only(dir(), decoder_opts(&sim, mode)) {
            read_checked(&j, &valid);
        }
        let files_now = || -> Vec<_> {
            // Lock files are not data (the writer lock, the erase lock).
            let lock = |p: &std::path::PathBuf| {
                p.ends_with(tidelog_journal::LOCK_FILE) || p.ends_with(tidelog_journal::ERASE_LOCK_FILE)
            };
            sim.file_names().into_iter().filter(|p| !lock(p)).collect()
        };
        let before = files_now();
        match Journal::open(dir(), decoder_opts(&sim, mode)) {
            Ok(j) => {
                read_checked(&j, &valid);
                let first: Vec<_> = j.iter_from(j.first_lsn()).collect();
                drop(j);
                if mode == RecoveryMode::Salvage {
                    let j = Journal::open(dir(), decoder_opts(&sim, mode)).expect("second salvage open");
                    assert!(
                        j.recovery_report().salvaged.is_empty(),
                        "second open salvaged again: {:?}",
                        j.recovery_report().problems
                    );
                    let again: Vec<_> = j.iter_from(j.first_lsn()).collect();
                    assert_eq!(format!("{first:?}"), format!("{again:?}"), "I5: records changed on reopen");
                }
            }
            Err(e) => {
                // Salvage refuses only a misnamed or substituted segment (a broken chain it
                // cannot place); every other damage it must open through.
                assert!(
                    mode == RecoveryMode::Strict || matches!(e, Error::BrokenChain { .. }),
                    "Salvage refused to open: {e}"
                );
                assert!(e.is_corruption(), "Strict failed with a non-corruption error: {e:?}");
                assert_eq!(files_now(), before, "a refused open changed the files");
            }
        }
    }
}

/// One operation of the `journal_ops` target.
#[derive(Debug, Arbitrary)]
enum Op {
    Append(u16),
    Batch(Vec<u8>),
    Sync,
    Reopen,
    Kill,
    Crash(u8, u8),
    Retain(u8),
}

/// Input of the `journal_ops` target.
#[derive(Debug, Arbitrary)]
struct OpsInput {
    buffered: bool,
    segment_kib: u8,
    crash_after: Option<u16>,
    torn: bool,
    ops: Vec<Op>,
}

/// Target `journal_ops`: an arbitrary sequence of operations, with a crash countdown, against the
/// reference [`Model`]; every crash or kill is followed by a Strict reopen checked for I1-I5.
pub fn journal_ops(data: &[u8]) {
    let Ok(input) = OpsInput::arbitrary(&mut Unstructured::new(data)) else { return };
    let durability = if input.buffered { Durability::Buffered } else { Durability::Sync };
    let sim = SimStorage::with_seed(u64::from(input.segment_kib));
    let opts = sim_opts(&sim, 1024 * (u64::from(input.segment_kib % 8) + 1), durability);
    let mut model = Model::new();
    let Ok(mut j) = Journal::open(dir(), opts.clone()) else { panic!("first open failed") };
    if let Some(n) = input.crash_after {
        if input.torn {
            sim.crash_after_torn(u64::from(n));
        } else {
            sim.crash_after(u64::from(n));
        }
    }
    let mut crashed = false;
    for op in input.ops.iter().take(64) {
        if crashed {
            break;
        }
        let res: Result<(), Error> = match op {
            Op::Append(n) => {
                let p = model.next_payload(usize::from(*n) % 6000);
                match j.append(&p) {
                    Ok(lsn) => model.acked(lsn, std::slice::from_ref(&p), durability).map_err(|e| panic!("{e}")),
                    Err(e) => {
                        model.failed(&[p]);
                        Err(e)
                    }
                }
            }
            Op::Batch(sizes) => {
                let ps: Vec<Vec<u8>> = sizes.iter().take(8).map(|&s| model.next_payload(usize::from(s) * 3)).collect();
                let refs: Vec<&[u8]> = ps.iter().map(Vec::as_slice).collect();
                match j.append_batch(&refs) {
                    Ok(lsn) => model.acked(lsn, &ps, durability).map_err(|e| panic!("{e}")),
                    Err(e) => {
                        model.failed(&ps);
                        Err(e)
                    }
                }
            }
            Op::Sync => j.sync().map(|()| model.synced()),
            Op::Retain(back) => {
                let lsn = model.next_lsn().saturating_sub(u64::from(*back));
                model.retention(lsn);
                j.remove_segments_below(lsn).map(drop)
            }
            Op::Reopen => {
                sim.kill(); // before the drop: a killed process runs no destructor
                drop(j);
                j = recover_and_check(&mut model, &opts, true).unwrap_or_else(|e| panic!("after reopen: {e}"));
                Ok(())
            }
            Op::Kill | Op::Crash(..) => {
                let kept = match op {
                    Op::Crash(d, seed) => {
                        let damage = Damage::ALL[usize::from(*d) % Damage::ALL.len()];
                        sim.power_cut(damage, u64::from(*seed));
                        damage == Damage::KeepAll
                    }
                    _ => {
                        sim.kill();
                        true
                    }
                };
                drop(j); // after the kill or power cut: a dead process runs no destructor
                j = recover_and_check(&mut model, &opts, kept).unwrap_or_else(|e| panic!("after {op:?}: {e}"));
                Ok(())
            }
        };
        if let Err(e) = res {
            assert!(sim.is_crashed() || matches!(e, Error::Poisoned { .. }), "unexpected error without a fault: {e}");
            crashed = true;
        }
    }
    if crashed || sim.is_crashed() {
        drop(j);
        sim.power_cut(Damage::Torn512, u64::from(input.segment_kib));
        recover_and_check(&mut model, &opts, false).unwrap_or_else(|e| panic!("after the crash: {e}"));
    }
}

/// The `append --jsonl` line parser on arbitrary bytes: never panics; a line it accepts has the
/// required fields, and exporting the message (`message_to_json`) and parsing that line again
/// gives the same message (the export and append formats agree).
pub fn jsonl_line(data: &[u8]) {
    let Ok(line) = std::str::from_utf8(data) else { return };
    let Ok(m) = tidelog::ops::parse_message_line(line) else { return };
    assert!(!m.session_id.is_empty() || line.contains("session_id"));
    let exported = tidelog::ops::message_to_json(&m).to_string();
    let again = tidelog::ops::parse_message_line(&exported)
        .unwrap_or_else(|e| panic!("exported line does not parse back: {e}: {exported}"));
    let same_ts = (again.timestamp - m.timestamp).abs() < 1e-6 || (again.timestamp.is_nan() && m.timestamp.is_nan());
    assert!(same_ts, "timestamp changed: {} -> {}", m.timestamp, again.timestamp);
    let strip = |mut x: tidelog::Message| {
        x.timestamp = 0.0;
        x
    };
    assert_eq!(strip(again), strip(m), "round trip through export changed the message");
}

/// A journal payload as arbitrary bytes (every codec tag: 1, 2, 3): decoding never panics nor
/// allocates without bound; an entry that decodes encodes again to a payload (plain and
/// compressed, as writers do) that decodes to the same entry.
pub fn entry_decode(data: &[u8]) {
    let Ok(e) = tidelog::decode_entry(data) else { return };
    let plain = tidelog::encode_entry(&e);
    assert_eq!(tidelog::decode_entry(&plain).as_ref(), Ok(&e), "tag 2 round trip");
    let journal = tidelog::encode_journal_entry(&e, usize::MAX).unwrap_or_else(|_| plain.clone());
    assert_eq!(tidelog::decode_entry(&journal).as_ref(), Ok(&e), "journal payload round trip");
}
