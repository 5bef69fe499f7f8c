//! Byte-flip and truncation sweep over every offset of every file of a small journal (three or
//! four sealed 1 KiB segments plus the active one, ~40 records), on `SimStorage`.
//!
//! For each flip (XOR 0x01 and 0xFF) and each truncation: never a panic; never a wrong record
//! (every record returned equals what was written at that LSN: I2); Strict with
//! `SealedCheck::Full` either opens with everything (or with a reported torn tail of the active
//! segment) or refuses with a named `Corrupt`/`BrokenChain` error (I4); Strict with the default
//! `SealedCheck::Footer` opens or refuses by name, and its iterator ends with a named `Corrupt`
//! error if it meets the damage; Salvage always opens, loses only LSNs it reports (or a torn
//! tail of the active segment), and a second open is clean (I5).
//!
//! Knob: `TIDELOG_SWEEP_FULL=1` adds XOR 0x80 and 0x10 flips.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::Instant;

use tidelog_journal::storage::SimStorage;
use tidelog_journal::{Durability, Error, Journal, Options, Record, RecoveryMode, SealedCheck};
use tidelog_tests::{Model, dir, env_knob, named_corruption, par_map, read_all, sim_opts};

const SEGMENT: u64 = 1024;

/// The pristine journal: its files and the model of its records.
fn build() -> (Vec<(PathBuf, Vec<u8>)>, Model) {
    let sim = SimStorage::new();
    let mut model = Model::new();
    let j = Journal::open(dir(), sim_opts(&sim, SEGMENT, Durability::Sync)).unwrap();
    for i in 0..40usize {
        let ps: Vec<Vec<u8>> = if i % 6 == 5 {
            vec![model.next_payload(5), model.next_payload(9)]
        } else {
            vec![model.next_payload(i * 7 % 60)]
        };
        let refs: Vec<&[u8]> = ps.iter().map(Vec::as_slice).collect();
        let lsn = j.append_batch(&refs).unwrap();
        model.acked(lsn, &ps, Durability::Sync).unwrap();
    }
    j.close().unwrap();
    drop(j);
    let mut files: Vec<(PathBuf, Vec<u8>)> = sim
        .file_names()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .map(|p| {
            let b = sim.read_file(&p).unwrap();
            (p, b)
        })
        .collect();
    files.sort();
    // The model's definitive log = what the journal holds.
    let j = Journal::open(dir(), sim_opts(&sim, SEGMENT, Durability::Sync)).unwrap();
    model.check_reopened(&j, true).unwrap();
    (files, model)
}

fn disk(files: &[(PathBuf, Vec<u8>)], damaged: &Path, bytes: &[u8]) -> SimStorage {
    let sim = SimStorage::new();
    for (p, b) in files {
        sim.write_file(p, if p == damaged { bytes } else { b });
    }
    sim
}

fn opts(sim: &SimStorage, recovery: RecoveryMode, sealed_check: SealedCheck) -> Options {
    Options { recovery, sealed_check, ..sim_opts(sim, SEGMENT, Durability::Sync) }
}

/// Missing LSNs (among the model's) that are not in `lost` must form a suffix, and then a torn
/// tail must have been reported (`torn`), unless the damage is in the active segment, whose
/// truncation at a record boundary is indistinguishable from a shorter log.
fn check(
    model: &Model,
    recs: &[Record],
    lost: &[(u64, u64)],
    torn: bool,
    in_active: bool,
    what: &str,
) -> Result<(), String> {
    let total = model.len() as u64;
    let present: std::collections::BTreeSet<u64> = recs.iter().map(|r| r.lsn).collect();
    let missing: Vec<u64> =
        (1..=total).filter(|l| !present.contains(l) && !lost.iter().any(|&(a, b)| a <= *l && *l <= b)).collect();
    if let Some(&first) = missing.first() {
        if !torn && !in_active {
            return Err(format!("{what}: LSNs {missing:?} missing without a report"));
        }
        if missing.iter().any(|&l| (first..=total).all(|x| x != l)) || (first..=total).any(|l| present.contains(&l)) {
            return Err(format!("{what}: LSNs {missing:?} missing without a report (torn tail reported: {torn})"));
        }
    }
    // Wrong records (I2) and reported-lost-but-present are caught here; presence was checked above.
    let mut m = model.clone();
    m.retention(u64::MAX);
    m.check_records(recs, true, lost).map_err(|e| format!("{what}: {e}"))
}

/// One damaged disk image: all three opens.
fn case(files: &[(PathBuf, Vec<u8>)], model: &Model, path: &Path, bytes: &[u8]) -> Result<(), String> {
    let in_active = files.last().is_some_and(|f| f.0 == path);
    // Strict, Full.
    let sim = disk(files, path, bytes);
    match Journal::open(dir(), opts(&sim, RecoveryMode::Strict, SealedCheck::Full)) {
        Ok(j) => {
            let recs = read_all(&j).map_err(|e| format!("Strict/Full opened but reading failed: {e}"))?;
            check(
                model,
                &recs,
                &[],
                !j.recovery_report().torn_tails.is_empty() || !j.recovery_report().quarantined_files.is_empty(),
                in_active,
                "Strict/Full",
            )?;
        }
        Err(e) if named_corruption(&e, dir()) => {}
        Err(e) => return Err(format!("Strict/Full failed without a named corruption: {e:?}")),
    }
    // Strict, Footer: the iterator may be the one to meet the damage.
    let sim = disk(files, path, bytes);
    match Journal::open(dir(), opts(&sim, RecoveryMode::Strict, SealedCheck::Footer)) {
        Ok(j) => {
            let mut recs = Vec::new();
            for r in j.iter_from(j.first_lsn()) {
                match r {
                    Ok(r) => recs.push(r),
                    Err(e) if matches!(e, Error::Corrupt { .. }) && named_corruption(&e, dir()) => break,
                    Err(e) => return Err(format!("Strict/Footer iterator: {e:?}")),
                }
            }
            let mut m = model.clone();
            m.retention(u64::MAX);
            m.check_records(&recs, false, &[]).map_err(|e| format!("Strict/Footer: {e}"))?;
        }
        Err(e) if named_corruption(&e, dir()) => {}
        Err(e) => return Err(format!("Strict/Footer failed without a named corruption: {e:?}")),
    }
    // Salvage (Full, to find damage in sealed records): always opens, reports what it lost.
    let sim = disk(files, path, bytes);
    let o = opts(&sim, RecoveryMode::Salvage, SealedCheck::Full);
    let j = Journal::open(dir(), o.clone()).map_err(|e| format!("Salvage refused to open: {e}"))?;
    let recs = read_all(&j).map_err(|e| format!("Salvage opened but reading failed: {e}"))?;
    let rep = j.recovery_report().clone();
    let lost = rep.lost_lsns();
    check(
        model,
        &recs,
        &lost,
        !rep.torn_tails.is_empty() || !rep.quarantined_files.is_empty() || !rep.salvaged.is_empty(),
        in_active,
        "Salvage",
    )?;
    drop(j);
    let j = Journal::open(dir(), o).map_err(|e| format!("I5: second Salvage open failed: {e}"))?;
    if !j.recovery_report().salvaged.is_empty() || !j.recovery_report().torn_tails.is_empty() {
        return Err(format!("I5: second open repaired again: {:?}", j.recovery_report().problems));
    }
    let again = read_all(&j).map_err(|e| format!("I5: reading after the second open: {e}"))?;
    if again != recs {
        return Err(format!("I5: second open reads {} records, the first {}", again.len(), recs.len()));
    }
    Ok(())
}

fn sweep(name: &str, files: &[(PathBuf, Vec<u8>)], model: &Model, variants: Vec<(PathBuf, usize, Vec<u8>)>) {
    let t = Instant::now();
    let results = par_map(variants.len(), |i| {
        let (path, at, bytes) = &variants[i];
        match catch_unwind(AssertUnwindSafe(|| case(files, model, path, bytes))) {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("{} @{at}: {e}", path.display())),
            Err(_) => Some(format!("{} @{at}: PANIC", path.display())),
        }
    });
    let failures: Vec<&String> = results.iter().flatten().collect();
    assert!(
        failures.is_empty(),
        "{name}: {} of {} cases failed:\n{}",
        failures.len(),
        variants.len(),
        failures.iter().take(12).map(|s| s.as_str()).collect::<Vec<_>>().join("\n")
    );
    let bytes: usize = files.iter().map(|f| f.1.len()).sum();
    eprintln!(
        "corruption_sweep {name}: {} damaged images of {} files ({bytes} bytes, {} records), 3 opens each, in {:.1?}",
        variants.len(),
        files.len(),
        model.len(),
        t.elapsed()
    );
}

#[test]
fn flip_every_byte_of_every_file() {
    let (files, model) = build();
    assert!(files.len() >= 4, "want 3+ sealed segments and the active one: {}", files.len());
    let mut masks = vec![0x01u8, 0xFF];
    if env_knob("TIDELOG_SWEEP_FULL", 0) != 0 {
        masks.extend([0x80, 0x10]);
    }
    let mut variants = Vec::new();
    for (p, b) in &files {
        for at in 0..b.len() {
            for &m in &masks {
                let mut d = b.clone();
                d[at] ^= m;
                variants.push((p.clone(), at, d));
            }
        }
    }
    sweep("flips", &files, &model, variants);
}

#[test]
fn truncate_every_file_at_every_offset() {
    let (files, model) = build();
    let mut variants = Vec::new();
    for (p, b) in &files {
        for at in 0..b.len() {
            variants.push((p.clone(), at, b[..at].to_vec()));
        }
    }
    sweep("truncations", &files, &model, variants);
}
