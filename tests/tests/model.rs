//! Model-based test: random operation sequences against the reference [`Model`] (I1-I5).
//!
//! Operations: append, batch append, sync, forced rotation (a record of most of a tiny segment),
//! crash (power cut with a random `Damage` and seed: with `Buffered` durability acknowledged but
//! unsynced appends may be lost, with `Sync` they may not), kill (page cache survives), clean
//! reopen, retention, and corrupting one byte of a sealed segment's records: then Strict with
//! `SealedCheck::Full` must refuse with an error naming that file, and Salvage must open, keep
//! every other record and report exactly the LSNs it lost. Every reopen checks I1-I5.
//!
//! Knob: `PROPTEST_CASES` (default 256). Failures are kept in `tests/model.proptest-regressions`
//! and replayed first.

use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, TestRunner};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use tidelog_journal::storage::{Damage, SimStorage};
use tidelog_journal::{Durability, Journal, Options, RecoveryMode, SealedCheck};
use tidelog_tests::{Model, dir, env_knob, named_corruption, recover_and_check, reopen_is_idempotent, sim_opts};

const SEGMENT: u64 = 1024;

#[derive(Debug, Clone)]
enum Op {
    Append(usize),
    Batch(Vec<usize>),
    Sync,
    Rotate,
    Crash(usize, u64),
    Kill,
    Reopen,
    Corrupt(usize, usize, u8),
    Retain(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0usize..300).prop_map(Op::Append),
        3 => prop::collection::vec(0usize..200, 1..5).prop_map(Op::Batch),
        2 => Just(Op::Sync),
        2 => Just(Op::Rotate),
        2 => (0usize..Damage::ALL.len(), any::<u64>()).prop_map(|(d, s)| Op::Crash(d, s)),
        1 => Just(Op::Kill),
        1 => Just(Op::Reopen),
        1 => (any::<usize>(), any::<usize>(), 1u8..=255).prop_map(|(f, o, x)| Op::Corrupt(f, o, x)),
        1 => (0u64..20).prop_map(Op::Retain),
    ]
}

fn append(j: &Journal, model: &mut Model, sizes: &[usize], durability: Durability) -> Result<(), TestCaseError> {
    let ps: Vec<Vec<u8>> = sizes.iter().map(|&n| model.next_payload(n)).collect();
    let refs: Vec<&[u8]> = ps.iter().map(Vec::as_slice).collect();
    let lsn = j.append_batch(&refs).map_err(|e| TestCaseError::fail(format!("append failed without a fault: {e}")))?;
    model.acked(lsn, &ps, durability).map_err(TestCaseError::fail)
}

/// Flips one byte inside the records of a sealed segment, then checks Strict (Full) refuses with
/// an error naming the file, and Salvage keeps everything else and reports exactly what it lost.
fn corrupt(
    sim: &SimStorage,
    opts: &Options,
    model: &mut Model,
    f: usize,
    o: usize,
    x: u8,
) -> Result<Option<Journal>, String> {
    let mut segs: Vec<_> = sim
        .file_names()
        .into_iter()
        .filter(|p| p.parent() == Some(dir()) && p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.pop(); // the active segment
    if segs.is_empty() {
        return Ok(None);
    }
    let path = segs[f % segs.len()].clone();
    let mut bytes = sim.read_file(&path).expect("segment");
    let records = bytes.len().saturating_sub(64 + 48);
    if records == 0 {
        return Ok(None);
    }
    let at = 64 + o % records;
    bytes[at] ^= x;
    sim.write_file(&path, &bytes);

    let strict = Options { recovery: RecoveryMode::Strict, sealed_check: SealedCheck::Full, ..opts.clone() };
    match Journal::open(dir(), strict) {
        Err(e) => {
            if !named_corruption(&e, dir()) {
                return Err(format!("Strict refused without a named corruption error: {e:?}"));
            }
            let named = match &e {
                tidelog_journal::Error::Corrupt { path, .. } | tidelog_journal::Error::BrokenChain { path, .. } => {
                    path.clone()
                }
                _ => unreachable!(),
            };
            if named != path {
                return Err(format!("flip in {} but the error names {}", path.display(), named.display()));
            }
        }
        Ok(j) => {
            // Only acceptable inside a range an earlier salvage already skips.
            let recs =
                tidelog_tests::read_all(&j).map_err(|e| format!("read after Strict open of a flipped file: {e}"))?;
            model.check_records(&recs, true, &j.recovery_report().lost_lsns())?;
            if j.recovery_report().known_holes == 0 {
                return Err(format!("Strict (Full) opened despite a flip at {} offset {at}", path.display()));
            }
        }
    }
    let salvage = Options { recovery: RecoveryMode::Salvage, sealed_check: SealedCheck::Full, ..opts.clone() };
    let j = Journal::open(dir(), salvage).map_err(|e| format!("Salvage refused to open: {e}"))?;
    let lost = j.recovery_report().lost_lsns();
    // A new hole next to an earlier one may report the earlier one's LSNs again: count only
    // LSNs that were still readable.
    let lost_n = lost.iter().flat_map(|&(a, b)| a..=b).filter(|&l| model.holds(l)).count();
    let recs = model.check_reopened(&j, true)?;
    if lost_n > 1 {
        return Err(format!("one flipped byte lost {lost_n} LSNs: {lost:?}"));
    }
    drop(j);
    reopen_is_idempotent(opts, &recs).map(Some)
}

fn run(durability: Durability, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let sim = SimStorage::new();
    let opts = sim_opts(&sim, SEGMENT, durability);
    let mut model = Model::new();
    let mut j = Journal::open(dir(), opts.clone()).map_err(|e| TestCaseError::fail(e.to_string()))?;
    for op in ops {
        match op {
            Op::Append(n) => append(&j, &mut model, &[n], durability)?,
            Op::Batch(sizes) => append(&j, &mut model, &sizes, durability)?,
            Op::Rotate => append(&j, &mut model, &[SEGMENT as usize - 150], durability)?,
            Op::Sync => {
                j.sync().map_err(|e| TestCaseError::fail(e.to_string()))?;
                model.synced();
            }
            Op::Retain(back) => {
                let lsn = model.next_lsn().saturating_sub(back);
                model.retention(lsn);
                j.remove_segments_below(lsn).map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
            Op::Reopen => {
                j.close().map_err(|e| TestCaseError::fail(e.to_string()))?;
                model.synced();
                drop(j);
                j = recover_and_check(&mut model, &opts, true).map_err(TestCaseError::fail)?;
            }
            Op::Kill => {
                sim.kill(); // before the drop: a killed process runs no destructor
                drop(j);
                j = recover_and_check(&mut model, &opts, true).map_err(TestCaseError::fail)?;
            }
            Op::Crash(d, seed) => {
                drop(j);
                let damage = Damage::ALL[d];
                sim.power_cut(damage, seed);
                j = recover_and_check(&mut model, &opts, damage == Damage::KeepAll)
                    .map_err(|e| TestCaseError::fail(format!("after {damage:?} seed {seed}: {e}")))?;
            }
            Op::Corrupt(f, o, x) => {
                sim.kill(); // before the drop: a killed process runs no destructor
                drop(j);
                j = match corrupt(&sim, &opts, &mut model, f, o, x).map_err(TestCaseError::fail)? {
                    Some(j) => j,
                    None => recover_and_check(&mut model, &opts, true).map_err(TestCaseError::fail)?,
                };
            }
        }
    }
    Ok(())
}

#[test]
fn journal_matches_the_model() {
    let cases = env_knob("PROPTEST_CASES", 256) as u32;
    let config = ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("tests/model.proptest-regressions"))),
        ..ProptestConfig::default()
    };
    let (ops_run, t) = (AtomicUsize::new(0), Instant::now());
    let strategy = (any::<bool>(), prop::collection::vec(op(), 1..60));
    let result = TestRunner::new(config).run(&strategy, |(buffered, ops)| {
        ops_run.fetch_add(ops.len(), Ordering::Relaxed);
        run(if buffered { Durability::Buffered } else { Durability::Sync }, ops)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    eprintln!("model: {cases} cases, {} operations (incl. shrinking) in {:.1?}", ops_run.into_inner(), t.elapsed());
}
