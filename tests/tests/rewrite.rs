//! Segment rewrites (erasure) under simulated power loss at every crash point.
//!
//! A journal with several sealed segments has some payloads replaced by `rewrite_segment`, twice
//! over the same segment (the chain digest must survive a second rewrite), then the next segment
//! is rewritten too. For EVERY crash point of that run (`crash_after(k)` and the torn variant),
//! and every `Damage` kind, the power is cut and the journal reopened in Strict mode: it must
//! open, hold every record with its LSN, each payload either the original or its replacement
//! (never anything else), the chain must verify, and a second open must be clean.

use std::collections::BTreeMap;

use tidelog_journal::storage::{Damage, SimStorage};
use tidelog_journal::{Durability, Journal, rewrite_segment, sealed_segment_ids, verify};
use tidelog_tests::{dir, env_knob, read_all, sim_opts};

const SEGMENT: u64 = 4096;

fn payload(lsn: u64) -> Vec<u8> {
    format!("record {lsn} secret-{lsn} {}", "x".repeat((lsn as usize * 37) % 300)).into_bytes()
}

fn erased(lsn: u64) -> Vec<u8> {
    format!("erased {lsn}").into_bytes()
}

/// LSNs whose payload the workload replaces.
fn targets(lsn: u64) -> bool {
    lsn.is_multiple_of(3)
}

/// Builds the journal (no crash), returns the sealed segment ids and the last LSN.
fn build(sim: &SimStorage) -> (Vec<u64>, u64) {
    let opts = sim_opts(sim, SEGMENT, Durability::Sync);
    let j = Journal::open(dir(), opts.clone()).expect("open");
    let mut last = 0;
    for i in 0..60u64 {
        last = j.append(&payload(i + 1)).expect("append");
    }
    j.seal_active().expect("seal");
    j.close().expect("close");
    let sealed = sealed_segment_ids(dir(), &opts).expect("list");
    assert!(sealed.len() >= 3, "the workload needs several sealed segments: {sealed:?}");
    (sealed, last)
}

/// The rewrites; stops at the first error (a crash).
fn rewrites(sim: &SimStorage, sealed: &[u64]) -> Result<(), tidelog_journal::Error> {
    let opts = sim_opts(sim, SEGMENT, Durability::Sync);
    let pass = |id: u64, pick: fn(u64) -> bool| {
        rewrite_segment(dir(), &opts, id, &mut |lsn, _| pick(lsn).then(|| erased(lsn))).map(|_| ())
    };
    pass(sealed[0], |l| targets(l) && l.is_multiple_of(2))?;
    pass(sealed[0], targets)?;
    pass(sealed[1], targets)?;
    Ok(())
}

fn check(sim: &SimStorage, last: u64, what: &str) {
    let opts = sim_opts(sim, SEGMENT, Durability::Sync);
    let j = Journal::open(dir(), opts.clone()).unwrap_or_else(|e| panic!("{what}: Strict open failed: {e}"));
    let got: BTreeMap<u64, Vec<u8>> =
        read_all(&j).unwrap_or_else(|e| panic!("{what}: read: {e}")).into_iter().map(|r| (r.lsn, r.payload)).collect();
    assert_eq!(got.len() as u64, last, "{what}: records lost");
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
fn rewrite_survives_power_loss_at_every_crash_point() {
    // Count the mutating operations of the rewrites.
    let sim = SimStorage::with_seed(1);
    let (sealed, last) = build(&sim);
    let before = sim.op_count();
    rewrites(&sim, &sealed).expect("rewrites without a crash");
    let ops = sim.op_count() - before;
    check(&sim, last, "no crash");
    // Every replaced payload is gone from every file.
    let j = Journal::open(dir(), sim_opts(&sim, SEGMENT, Durability::Sync)).expect("open");
    let replaced: Vec<u64> =
        read_all(&j).expect("read").into_iter().filter(|r| r.payload == erased(r.lsn)).map(|r| r.lsn).collect();
    j.close().expect("close");
    assert!(replaced.len() >= 4, "{replaced:?}");
    for f in sim.file_names() {
        let bytes = sim.read_file(&f).unwrap_or_default();
        for lsn in &replaced {
            let needle = payload(*lsn);
            assert!(!bytes.windows(needle.len()).any(|w| w == needle.as_slice()), "LSN {lsn} still in {}", f.display());
        }
    }

    let seeds = env_knob("TIDELOG_CRASH_SEEDS", 2);
    let mut cases = 0;
    for k in 0..=ops {
        for torn in [false, true] {
            for damage in Damage::ALL {
                for seed in 0..seeds {
                    let sim = SimStorage::with_seed(seed * 7919 + k);
                    let (sealed, last) = build(&sim);
                    if torn {
                        sim.crash_after_torn(k);
                    } else {
                        sim.crash_after(k);
                    }
                    let _ = rewrites(&sim, &sealed);
                    sim.power_cut(damage, seed);
                    check(&sim, last, &format!("crash point {k} torn {torn} {damage:?} seed {seed}"));
                    cases += 1;
                }
            }
        }
    }
    eprintln!("rewrite: {ops} crash points, {cases} cases");
}
