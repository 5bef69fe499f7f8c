#![allow(clippy::unwrap_used)]
//! Issue 10: while a lane has unreadable records, every read command says its output is
//! incomplete (a warning per problem on stderr, `problems` in `--json`, exit 1), and shows every
//! record it can still read; `repair --salvage` then `rebuild-index` keep every message.

mod common;
use common::*;
use std::path::{Path, PathBuf};

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
fn read_commands_say_the_history_is_incomplete_until_salvaged() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("store");
    let input: String = (1..=5).map(|i| msg("s", i) + "\n").collect();
    assert_eq!(code(&run_stdin(&dir, &["append", "--jsonl"], &input)), 0);
    // No index: the journal is the only copy, so the damage shows in what is read.
    for f in ["index.db", "index.db-wal", "index.db-shm"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    let seg = segment(&dir);
    let mut bytes = std::fs::read(&seg).unwrap();
    let needle = b"message 3 about";
    let at = bytes.windows(needle.len()).position(|w| w == needle).unwrap();
    bytes[at + 3] ^= 0xFF;
    std::fs::write(&seg, &bytes).unwrap();

    let o = run(&dir, &["export"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("incomplete") && stderr(&o).contains("lane-0001"), "{}", stderr(&o));
    let ids: Vec<String> = json_lines(&o).iter().map(|l| l["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids.len(), 4, "every record but the damaged one: {ids:?}");
    assert!(!ids.contains(&"m-s-3".to_string()));

    let o = run(&dir, &["--json", "sessions"]);
    assert_eq!(code(&o), 1);
    assert!(!json(&o)["problems"].as_array().unwrap().is_empty());
    let o = run(&dir, &["--json", "search", "message"]);
    assert_eq!(code(&o), 1);
    assert!(!json(&o)["problems"].as_array().unwrap().is_empty());
    let o = run(&dir, &["--json", "stats"]);
    assert_eq!(code(&o), 1);
    assert!(json(&o)["problems"].as_array().unwrap().iter().any(|p| p.as_str().unwrap().contains("3..=3")));

    let o = run(&dir, &["repair", "--salvage"]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("LSNs 3..=3 lost"), "{}", stdout(&o));
    let o = run(&dir, &["export"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(json_lines(&o).len(), 4);
}
