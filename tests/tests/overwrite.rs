//! Erasure in place under simulated power loss at every crash point.
//!
//! A journal with sealed segments and an unsealed one has payloads overwritten in place by
//! `overwrite_records` (same length): a sealed segment twice, another sealed one, then the
//! unsealed segment while its writer is open; the writer then appends until it seals that
//! segment (with the digest it computed over the original bytes, which must still be right) and
//! the former active segment is overwritten again. For EVERY crash point of that
//! run (`crash_after(k)` and the torn variant) and every `Damage` kind, the power is cut and the
//! journal reopened in Strict mode: it must open, hold every acknowledged record with its LSN,
//! each payload either the original or its replacement (never anything else), verify completely
//! (every digest), leave no redo file, and open cleanly a second time.

use std::collections::BTreeMap;

use tidelog_journal::storage::{Damage, SimStorage};
use tidelog_journal::{Durability, Journal, REDO_FILE, overwrite_records, segment_ids, verify};
use tidelog_tests::{dir, env_knob, read_all, sim_opts};

const SEGMENT: u64 = 4096;
/// Records written before the crash run, and appended during it.
const BUILT: u64 = 50;
const APPENDED: u64 = 25;

fn payload(lsn: u64) -> Vec<u8> {
    format!("record {lsn} secret-{lsn} {}", "x".repeat((lsn as usize * 37) % 300)).into_bytes()
}

/// The replacement: as long as the payload, without its secret.
fn erased(lsn: u64) -> Vec<u8> {
    let mut v = format!("erased {lsn}").into_bytes();
    v.resize(payload(lsn).len(), b'.');
    v
}

/// LSNs whose payload the workload replaces.
fn targets(lsn: u64) -> bool {
    lsn.is_multiple_of(3)
}

/// Builds the journal (no crash): sealed segments and an unsealed last one.
fn build(sim: &SimStorage) -> Vec<u64> {
    let opts = sim_opts(sim, SEGMENT, Durability::Sync);
    let j = Journal::open(dir(), opts.clone()).expect("open");
    for i in 0..BUILT {
        j.append(&payload(i + 1)).expect("append");
    }
    j.close().expect("close");
    let ids = segment_ids(dir(), &opts).expect("list");
    assert!(ids.len() >= 3, "the workload needs two sealed segments and an active one: {ids:?}");
    ids
}

/// The overwrites and appends; stops at the first error (a crash). Returns the last LSN
/// acknowledged.
fn run(sim: &SimStorage, ids: &[u64], acked: &mut u64) -> Result<(), tidelog_journal::Error> {
    let opts = sim_opts(sim, SEGMENT, Durability::Sync);
    let pass = |id: u64, pick: fn(u64) -> bool| {
        overwrite_records(dir(), &opts, id, &mut |lsn, _| pick(lsn).then(|| erased(lsn)), None).map(|_| ())
    };
    let active = *ids.last().expect("segments");
    let j = Journal::open(dir(), opts.clone())?;
    pass(ids[0], |l| targets(l) && l.is_multiple_of(2))?;
    pass(ids[0], targets)?;
    pass(ids[1], targets)?;
    pass(active, targets)?;
    for i in 0..APPENDED {
        *acked = j.append(&payload(BUILT + i + 1))?;
    }
    assert!(segment_ids(dir(), &opts)?.len() > ids.len(), "the appends seal the overwritten segment");
    pass(active, targets)?;
    j.close()
}

fn check(sim: &SimStorage, acked: u64, what: &str) {
    let opts = sim_opts(sim, SEGMENT, Durability::Sync);
    let j = Journal::open(dir(), opts.clone()).unwrap_or_else(|e| panic!("{what}: Strict open failed: {e}"));
    assert!(!sim.file_names().iter().any(|f| f.ends_with(REDO_FILE)), "{what}: redo file left after open");
    let got: BTreeMap<u64, Vec<u8>> =
        read_all(&j).unwrap_or_else(|e| panic!("{what}: read: {e}")).into_iter().map(|r| (r.lsn, r.payload)).collect();
    assert!(got.len() as u64 >= acked.max(BUILT), "{what}: records lost ({} < {acked})", got.len());
    assert_eq!(got.keys().copied().collect::<Vec<_>>(), (1..=got.len() as u64).collect::<Vec<_>>(), "{what}: gap");
    for (lsn, p) in &got {
        assert!(*p == payload(*lsn) || (targets(*lsn) && *p == erased(*lsn)), "{what}: LSN {lsn} holds something else");
    }
    j.close().expect("close");
    let rep = verify(dir(), &opts).unwrap_or_else(|e| panic!("{what}: verify: {e}"));
    assert!(rep.problems.is_empty(), "{what}: verify: {:?}", rep.problems);
    let again = Journal::open(dir(), opts).expect("second open");
    assert!(again.recovery_report().is_clean(), "{what}: second open not clean: {:?}", again.recovery_report());
}

#[test]
fn overwrite_survives_power_loss_at_every_crash_point() {
    // Count the mutating operations of the run.
    let sim = SimStorage::with_seed(1);
    let ids = build(&sim);
    let before = sim.op_count();
    let mut acked = 0;
    run(&sim, &ids, &mut acked).expect("run without a crash");
    let ops = sim.op_count() - before;
    check(&sim, acked, "no crash");
    // Every replaced payload is gone from every file (the segments hold the only copy).
    let j = Journal::open(dir(), sim_opts(&sim, SEGMENT, Durability::Sync)).expect("open");
    let replaced: Vec<u64> =
        read_all(&j).expect("read").into_iter().filter(|r| r.payload == erased(r.lsn)).map(|r| r.lsn).collect();
    j.close().expect("close");
    assert!(replaced.len() >= 20, "{replaced:?}");
    for f in sim.file_names() {
        let bytes = sim.read_file(&f).unwrap_or_default();
        for lsn in &replaced {
            let needle = format!("secret-{lsn} ").into_bytes();
            assert!(!bytes.windows(needle.len()).any(|w| w == needle.as_slice()), "LSN {lsn} still in {}", f.display());
        }
    }

    let seeds = env_knob("TIDELOG_CRASH_SEEDS", 1);
    let mut cases = 0;
    for k in 0..=ops {
        for torn in [false, true] {
            for damage in Damage::ALL {
                for seed in 0..seeds {
                    let sim = SimStorage::with_seed(seed * 7919 + k);
                    let ids = build(&sim);
                    if torn {
                        sim.crash_after_torn(k);
                    } else {
                        sim.crash_after(k);
                    }
                    let mut acked = 0;
                    let _ = run(&sim, &ids, &mut acked);
                    sim.power_cut(damage, seed);
                    check(&sim, acked, &format!("crash point {k} torn {torn} {damage:?} seed {seed}"));
                    cases += 1;
                }
            }
        }
    }
    eprintln!("overwrite: {ops} crash points, {cases} cases");
}
