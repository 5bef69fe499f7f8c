//! Simulated power loss at every crash point of a workload (I1-I5).
//!
//! A workload of ~50 operations (appends of varied sizes, one larger than a segment, batches,
//! rotations with 4 KiB segments, a reopen in the middle, retention, explicit syncs) runs once on
//! `SimStorage` to count its mutating operations. Then for EVERY crash point k, it runs again with
//! `crash_after(k)` and with `crash_after_torn(k)`, stops at the first error, and for each
//! `Damage` variant and a few seeds cuts the power, reopens in Strict mode and checks I1
//! (acknowledged appends recovered), I2 (nothing invented), I3 (prefix), I4 (Strict opens after
//! a crash) and I5 (a second open is clean and reads the same). Runs with `Durability::Sync`
//! and `Durability::Buffered` (where only synced appends must survive a power cut).
//!
//! Knob: `TIDELOG_CRASH_SEEDS` (default 2) seeds per (crash point, damage).

use std::time::Instant;

use tidelog_journal::storage::{Damage, SimStorage};
use tidelog_journal::{Durability, Error, Journal, Options};
use tidelog_tests::{Model, dir, env_knob, par_map, recover_and_check, sim_opts};

const SEGMENT: u64 = 4096;

#[derive(Debug, Clone)]
enum Step {
    Append(usize),
    Batch(Vec<usize>),
    Sync,
    Reopen,
    Retain(u64),
}

fn workload() -> Vec<Step> {
    use Step::*;
    let sizes = [0, 17, 120, 700, 1500, 40, 5000, 300];
    let mut w = Vec::new();
    for i in 0..48 {
        w.push(match i {
            20 => Reopen,
            30 | 44 => Retain(12),
            _ if i % 9 == 4 => Batch(vec![10, 200, 1000, 3][..2 + i % 3].to_vec()),
            _ if i % 7 == 6 => Sync,
            _ => Append(sizes[i % sizes.len()]),
        });
    }
    w
}

/// Runs the workload until its end or the first error; the model follows every outcome.
fn run(sim: &SimStorage, opts: &Options, model: &mut Model) -> Result<(), Error> {
    let durability = opts.durability;
    let mut j = Journal::open(dir(), opts.clone())?;
    for step in workload() {
        match step {
            Step::Append(n) => {
                let p = model.next_payload(n);
                match j.append(&p) {
                    Ok(lsn) => model.acked(lsn, std::slice::from_ref(&p), durability).expect("LSN"),
                    Err(e) => {
                        model.failed(&[p]);
                        return Err(e);
                    }
                }
            }
            Step::Batch(sizes) => {
                let ps: Vec<Vec<u8>> = sizes.iter().map(|&n| model.next_payload(n)).collect();
                let refs: Vec<&[u8]> = ps.iter().map(Vec::as_slice).collect();
                match j.append_batch(&refs) {
                    Ok(lsn) => model.acked(lsn, &ps, durability).expect("LSN"),
                    Err(e) => {
                        model.failed(&ps);
                        return Err(e);
                    }
                }
            }
            Step::Sync => {
                j.sync()?;
                model.synced();
            }
            Step::Reopen => {
                j.close()?;
                drop(j);
                model.synced(); // close syncs (Buffered) and returned Ok
                j = Journal::open(dir(), opts.clone())?;
                model.check_reopened(&j, true).expect("clean reopen in the workload");
            }
            Step::Retain(back) => {
                let lsn = model.next_lsn().saturating_sub(back);
                model.retention(lsn);
                j.remove_segments_below(lsn)?;
            }
        }
    }
    let _ = sim;
    Ok(())
}

fn sweep(durability: Durability) -> (u64, usize) {
    let seeds = env_knob("TIDELOG_CRASH_SEEDS", 2);
    // The clean run: count the crash points and check the end state.
    let sim = SimStorage::new();
    let opts = sim_opts(&sim, SEGMENT, durability);
    let mut model = Model::new();
    run(&sim, &opts, &mut model).expect("clean run");
    let total = sim.op_count();
    sim.kill();
    recover_and_check(&mut model, &opts, true).expect("clean run recovers");
    assert!(model.len() > 45, "workload too small: {}", model.len());

    let results = par_map(total as usize, |k| {
        let k = k as u64;
        let mut failures = Vec::new();
        let mut cases = 0usize;
        for torn in [false, true] {
            for damage in Damage::ALL {
                for seed in 0..seeds {
                    let sim = SimStorage::with_seed(seed * 7919 + k);
                    let opts = sim_opts(&sim, SEGMENT, durability);
                    if torn {
                        sim.crash_after_torn(k);
                    } else {
                        sim.crash_after(k);
                    }
                    let mut model = Model::new();
                    let res = run(&sim, &opts, &mut model);
                    // The crash is the only error the workload may see. With `Buffered` the
                    // last crash point is the sync of the final drop, after `run` succeeded.
                    match (&res, sim.is_crashed()) {
                        (_, true) => {}
                        (Err(e), false) => failures.push(format!("k={k}: error without a crash: {e}")),
                        (Ok(()), false) => failures.push(format!("k={k}: the crash never fired (total {total})")),
                    }
                    sim.power_cut(damage, seed);
                    cases += 1;
                    if let Err(e) = recover_and_check(&mut model, &opts, damage == Damage::KeepAll) {
                        failures.push(format!("{durability:?} k={k} torn={torn} {damage:?} seed={seed}: {e}"));
                    }
                }
            }
        }
        (cases, failures)
    });
    let cases: usize = results.iter().map(|r| r.0).sum();
    let failures: Vec<&String> = results.iter().flat_map(|r| &r.1).collect();
    assert!(
        failures.is_empty(),
        "{} of {cases} cases failed, first ones:\n{}",
        failures.len(),
        failures.iter().take(10).map(|s| s.as_str()).collect::<Vec<_>>().join("\n")
    );
    (total, cases)
}

#[test]
fn every_crash_point_every_damage_sync() {
    let t = Instant::now();
    let (points, cases) = sweep(Durability::Sync);
    eprintln!(
        "power_loss Sync: {points} crash points x 2 crash kinds x {} damages -> {cases} cases checked in {:.1?}",
        Damage::ALL.len(),
        t.elapsed()
    );
}

#[test]
fn every_crash_point_every_damage_buffered() {
    let t = Instant::now();
    let (points, cases) = sweep(Durability::Buffered);
    eprintln!(
        "power_loss Buffered: {points} crash points x 2 crash kinds x {} damages -> {cases} cases checked in {:.1?}",
        Damage::ALL.len(),
        t.elapsed()
    );
}
