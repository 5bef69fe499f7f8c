#![allow(clippy::unwrap_used)]
//! verify / repair / rebuild-index / replay / checkpoint / backup, on healthy and damaged stores.

mod common;
use common::*;
use std::path::{Path, PathBuf};

fn store_with(dir: &Path, n: usize) {
    let input: String = (1..=n).map(|i| msg("s", i) + "\n").collect();
    let o = run_stdin(dir, &["append", "--jsonl"], &input);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // `append` closes within its deadline without waiting for the index: catch up explicitly.
    let o = run(dir, &["checkpoint"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

fn segment(dir: &Path) -> PathBuf {
    let lane = dir.join("lanes/lane-0001");
    let mut segs: Vec<PathBuf> = std::fs::read_dir(&lane)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segs.sort();
    segs.pop().unwrap()
}

#[test]
fn healthy_store_verifies_and_every_tool_runs() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("store");
    store_with(&dir, 20);
    let o = run(&dir, &["verify"]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("verify") && stdout(&o).contains("ok"));
    let o = run(&dir, &["--json", "stats"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let stats = json(&o);
    let last = stats.pointer("/last_checkpoint_unix_ms").or_else(|| stats.pointer("/stats/last_checkpoint_unix_ms"));
    assert!(last.and_then(|v| v.as_u64()).is_some(), "stats has no checkpoint time: {stats}");
    let fts = stats.pointer("/fts_segments").or_else(|| stats.pointer("/stats/fts_segments"));
    let tables: Vec<&str> =
        fts.and_then(|v| v.as_array()).unwrap().iter().filter_map(|t| t["table"].as_str()).collect();
    assert_eq!(tables, ["messages_fts", "messages_words"], "{stats}");
    let o = run(&dir, &["--json", "verify"]);
    assert_eq!(json(&o)["ok"], true);
    assert_eq!(json(&o)["report"]["index"]["messages"], 20);

    let db = t.path().join("replayed.db");
    let o = run(&dir, &["replay", "--to", db.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(db.exists());
    let o = run(&dir, &["replay", "--to", db.to_str().unwrap()]);
    assert_eq!(code(&o), 2, "refuses an existing file");
    assert!(stderr(&o).contains("already exists"));

    let o = run(&dir, &["--json", "rebuild-index"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(json(&o)["rebuild"]["messages"], 20);
    let o = run(&dir, &["--json", "stats"]);
    assert!(json(&o)["quarantine"].as_array().unwrap().is_empty(), "a healthy index replaced on request is not kept");

    let o = run(&dir, &["--json", "checkpoint"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(json(&o)["wal_bytes_after"], 0);

    let bk = t.path().join("backup");
    let o = run(&dir, &["backup", bk.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = run(&bk, &["verify"]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    assert_eq!(json_lines(&run(&bk, &["export"])).len(), 20);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&bk).unwrap().permissions().mode() & 0o777, 0o700);
    let o = run(&dir, &["backup", bk.to_str().unwrap()]);
    assert_eq!(code(&o), 2, "refuses a non-empty destination");
    assert!(stderr(&o).contains("not empty"));
}

#[test]
fn damaged_index_is_found_and_repaired() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("store");
    store_with(&dir, 10);
    std::fs::write(dir.join("index.db"), b"this is not a database").unwrap();
    let _ = std::fs::remove_file(dir.join("index.db-wal"));
    let _ = std::fs::remove_file(dir.join("index.db-shm"));
    let o = run(&dir, &["verify"]);
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    assert!(stdout(&o).contains("problem: index"));
    let o = run(&dir, &["repair"]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("index: rebuilt"));
    assert_eq!(code(&run(&dir, &["verify"])), 0);
    let o = run(&dir, &["quarantine", "list"]);
    assert!(stdout(&o).contains("index cannot be opened"), "{}", stdout(&o));
}

#[test]
fn torn_tail_is_cut_by_repair() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("store");
    store_with(&dir, 5);
    let seg = segment(&dir);
    let mut bytes = std::fs::read(&seg).unwrap();
    let end = bytes.iter().rposition(|b| *b != 0).unwrap() + 1;
    for b in bytes.iter_mut().skip(end).take(40) {
        *b = 0xAB;
    }
    std::fs::write(&seg, &bytes).unwrap();
    let o = run(&dir, &["verify"]);
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    let o = run(&dir, &["repair"]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("torn tail"), "{}", stdout(&o));
    assert_eq!(json_lines(&run(&dir, &["export"])).len(), 5);
    let o = run(&dir, &["--json", "stats"]);
    assert!(json(&o)["quarantine"].as_array().unwrap().iter().any(|q| q["reason"].is_string()));
}

#[test]
fn mid_log_damage_needs_salvage() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("store");
    for i in 1..=3 {
        let o = run_stdin(&dir, &["append", "--jsonl"], &(msg("s", i) + "\n"));
        assert_eq!(code(&o), 0);
    }
    let seg = segment(&dir);
    let mut bytes = std::fs::read(&seg).unwrap();
    let needle = b"message 1 about";
    let at = bytes.windows(needle.len()).position(|w| w == needle).unwrap();
    bytes[at + 3] ^= 0xFF;
    std::fs::write(&seg, &bytes).unwrap();
    let o = run(&dir, &["verify"]);
    assert_eq!(code(&o), 1);
    let o = run(&dir, &["repair"]);
    assert_eq!(code(&o), 1, "strict repair refuses mid-log damage: {}", stdout(&o));
    assert!(stdout(&o).contains("--salvage"), "{}", stdout(&o));
    let o = run(&dir, &["repair", "--salvage"]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("lost"), "{}", stdout(&o));
    let ids: Vec<String> =
        json_lines(&run(&dir, &["export"])).iter().map(|l| l["id"].as_str().unwrap().to_string()).collect();
    assert!(ids.contains(&"m-s-2".to_string()) && ids.contains(&"m-s-3".to_string()), "{ids:?}");
    assert_eq!(code(&run(&dir, &["verify"])), 0);
}
