//! Replays every committed fuzz corpus file (`fuzz/corpus/<target>/*`) through the same logic the
//! fuzz targets run (`tidelog_tests::fuzz_logic`), as ordinary stable tests: no panic, I1-I3 and
//! I5 for `journal_ops`, checksummed records only for `segment_recovery`.
//!
//! `cargo test -p tidelog-tests --test fuzz_corpus -- --ignored generate_seed_corpus` rewrites
//! the seed inputs (valid segments made by the journal, truncated, flipped).

use std::path::{Path, PathBuf};

use tidelog_journal::storage::SimStorage;
use tidelog_journal::{Durability, Journal};
use tidelog_tests::fuzz_logic::{entry_decode, journal_ops, jsonl_line, segment_recovery};
use tidelog_tests::{dir, sim_opts};

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target)
}

fn replay(target: &str, f: fn(&[u8])) -> usize {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(corpus(target)).map(|rd| rd.map(|e| e.unwrap().path()).collect()).unwrap_or_default();
    files.sort();
    for p in &files {
        let data = std::fs::read(p).unwrap();
        if std::panic::catch_unwind(|| f(&data)).is_err() {
            panic!("{target}: corpus file {} fails", p.display());
        }
    }
    eprintln!("fuzz_corpus {target}: {} inputs replayed", files.len());
    files.len()
}

#[test]
fn segment_recovery_corpus() {
    assert!(replay("segment_recovery", segment_recovery) >= 10, "seed corpus missing");
}

#[test]
fn journal_ops_corpus() {
    assert!(replay("journal_ops", journal_ops) >= 10, "seed corpus missing");
}

#[test]
fn jsonl_line_corpus() {
    assert!(replay("jsonl_line", jsonl_line) >= 10, "seed corpus missing");
}

#[test]
fn entry_decode_corpus() {
    assert!(replay("entry_decode", entry_decode) >= 10, "seed corpus missing");
}

/// Writes the seed corpora.
#[test]
#[ignore = "generator: run by hand to rewrite fuzz/corpus seeds"]
fn generate_seed_corpus() {
    let out = corpus("segment_recovery");
    std::fs::create_dir_all(&out).unwrap();
    // Valid segments made by the journal: a sealed one and the active one.
    let sim = SimStorage::new();
    let j = Journal::open(dir(), sim_opts(&sim, 1024, Durability::Sync)).unwrap();
    for i in 0..24u32 {
        if i % 5 == 4 {
            j.append_batch(&[b"batch-a".as_slice(), b"batch-b", b"batch-c"]).unwrap();
        } else {
            j.append(&vec![i as u8; (i * 13 % 90) as usize]).unwrap();
        }
    }
    j.close().unwrap();
    drop(j);
    let mut segs: Vec<Vec<u8>> = sim
        .file_names()
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .map(|p| sim.read_file(p).unwrap())
        .collect();
    // Active segment without its preallocated zeros, to keep inputs small.
    if let Some(last) = segs.last_mut() {
        while last.len() > 64 && last.last() == Some(&0) {
            last.pop();
        }
    }
    let mut n = 0;
    let mut put = |name: &str, ctl: u8, bytes: &[u8]| {
        let mut v = vec![ctl];
        v.extend_from_slice(bytes);
        std::fs::write(out.join(format!("{n:02}-{name}")), v).unwrap();
        n += 1;
    };
    for (i, s) in segs.iter().enumerate() {
        put(&format!("valid-{i}"), 0, s);
        for cut in [0, 20, 63, 64, 70, s.len() / 2, s.len().saturating_sub(48), s.len().saturating_sub(1)] {
            put(&format!("trunc-{i}-{cut}"), 0, &s[..cut.min(s.len())]);
        }
        for at in [0, 30, 64, 70, 84, 100, s.len() / 2, s.len().saturating_sub(10)] {
            let mut d = s.clone();
            if let Some(b) = d.get_mut(at) {
                *b ^= 0x41;
            }
            put(&format!("flip-{i}-{at}"), 0, &d);
        }
    }
    // Two and three segments in one input (control byte picks the cut points).
    let two: Vec<u8> = segs.iter().take(2).flatten().copied().collect();
    put("two-segments", 1 | (4 << 2), &two);
    let three: Vec<u8> = segs.iter().take(3).flatten().copied().collect();
    put("three-segments", 2 | (2 << 2) | (3 << 5), &three);

    let out = corpus("journal_ops");
    std::fs::create_dir_all(&out).unwrap();
    let mut state = 0x1234_5678_9abc_def0u64;
    for i in 0..24 {
        let len = 16 + i * 12;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        std::fs::write(out.join(format!("{i:02}-random")), bytes).unwrap();
    }
}
