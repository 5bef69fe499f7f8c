//! Regression tests: one per journal bug the fault-injection suite found, each with the bug
//! described above it. They run on `SimStorage` and are fast.

use logbook_journal::storage::{Damage, SimStorage};
use logbook_journal::{Durability, Journal};
use logbook_tests::{Model, dir, recover_and_check, sim_opts};

/// Bug 1 (found by `power_loss.rs`, `Damage::ReorderDirs`): `remove_segments_below` removed every
/// old segment and synced the folder once at the end. A crash before that sync may persist the
/// removals in any order; when a newer segment's removal persisted and an older one's did not,
/// the chain had a gap ("segments 3..=3 are missing") and Strict recovery refused to open after
/// a plain crash. Fix: remove oldest first and sync the folder after each removal.
#[test]
fn retention_crash_never_leaves_a_gap_in_the_chain() {
    for seed in 0..32 {
        let sim = SimStorage::new();
        let opts = sim_opts(&sim, 4096, Durability::Sync);
        let mut model = Model::new();
        let j = Journal::open(dir(), opts.clone()).unwrap();
        for i in 0..40 {
            let p = model.next_payload(300 + i);
            let lsn = j.append(&p).unwrap();
            model.acked(lsn, &[p], Durability::Sync).unwrap();
        }
        assert!(j.status().segments >= 4, "{:?}", j.status());
        // Crash at the third removal's folder operation, with unsynced removals before it.
        sim.crash_after(4);
        model.retention(model.next_lsn() - 1);
        let _ = j.remove_segments_below(model.next_lsn() - 1);
        drop(j);
        sim.power_cut(Damage::ReorderDirs, seed);
        recover_and_check(&mut model, &opts, false).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
}

/// Bug 2 (found by `crates/journal/tests/faults.rs`): with `Durability::Buffered`, dropping a
/// journal poisoned by a failed sync synced the active segment again. After a failed fsync the
/// page cache may have dropped the data, so a retried sync can report success for data that is
/// gone (fsyncgate); the journal promises never to retry it. Fix: `Drop` skips the final sync
/// when the journal is poisoned.
#[test]
fn poisoned_buffered_journal_does_not_sync_on_drop() {
    use logbook_journal::storage::{FaultKind, FaultOp};
    let sim = SimStorage::new();
    let opts = sim_opts(&sim, 4096, Durability::Buffered);
    let j = Journal::open(dir(), opts).unwrap();
    j.append(b"written, not synced").unwrap();
    sim.inject(FaultOp::Sync, FaultKind::Eio, 0, false);
    assert!(j.sync().is_err());
    let ops = sim.op_count();
    drop(j);
    assert_eq!(sim.op_count(), ops, "drop retried the failed sync");
}
