#![allow(clippy::unwrap_used)]
//! `import hermes` of a database with bit-rotted cells: every row is imported, repairs are
//! counted and printed, and after a healthy copy the damaged one adds no near-duplicates.

mod common;
use common::*;

fn fixtures_copy(t: &std::path::Path) -> std::path::PathBuf {
    let dst = t.join("hermes");
    copy_dir(&fixtures(), &dst);
    dst
}

#[test]
fn bit_rotted_database_is_imported_whole_with_its_repairs_printed() {
    let t = tempfile::tempdir().unwrap();
    let h = fixtures_copy(t.path());
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(h.join("expected.json")).unwrap()).unwrap();
    let exp = &expected["state-v30-bitrot.db"];
    let rotten = h.join("state-v30-bitrot.db");

    let s = t.path().join("s");
    let o = run(&s, &["--json", "import", "hermes", rotten.to_str().unwrap()]);
    assert_eq!(code(&o), 1, "repaired rows are a problem found: {}", stderr(&o));
    let j = json(&o);
    assert_eq!(j["messages_added"], exp["messages"]);
    assert_eq!(j["unreadable_rows"], 0);
    assert_eq!(j["lossy_utf8_messages"], exp["content_flipped"]);
    assert_eq!(j["session_ids_inferred"], exp["session_id_flipped"]);
    assert_eq!(j["timestamps_inferred"], exp["timestamp_retyped"]);

    // Without --json: one summary line per kind of repair.
    let s2 = t.path().join("s2");
    let o = run(&s2, &["--quiet", "import", "hermes", rotten.to_str().unwrap()]);
    let out = stdout(&o);
    let n = |k: &str| exp[k].as_u64().unwrap();
    assert!(out.contains(&format!("{} message(s) with text that is not valid UTF-8", n("content_flipped"))), "{out}");
    assert!(out.contains(&format!("{} message(s) whose session id was unreadable", n("session_id_flipped"))), "{out}");
    assert!(out.contains(&format!("{} message(s) whose timestamp was unreadable", n("timestamp_retyped"))), "{out}");
    assert!(!out.contains("near-duplicate"), "{out}");
}

#[test]
fn damaged_copy_after_the_healthy_one_adds_no_near_duplicates() {
    let t = tempfile::tempdir().unwrap();
    let h = fixtures_copy(t.path());
    let s = t.path().join("s");
    let o = run(&s, &["--json", "import", "hermes", h.join("state-v30.db").to_str().unwrap()]);
    assert_eq!(json(&o)["messages_added"], 458);
    let o = run(&s, &["--json", "import", "hermes", h.join("state-v30-bitrot.db").to_str().unwrap()]);
    let j = json(&o);
    assert_eq!(j["messages_added"], 0, "{j}");
    let near = j["messages_near_duplicates"].as_array().unwrap().len() as u64;
    assert!(near > 0);
    assert_eq!(j["messages_already_stored"].as_u64().unwrap() + near, 458);
    assert_eq!(json_lines(&run(&s, &["export"])).len(), 458);

    let o = run(&s, &["import", "hermes", h.join("state-v30-bitrot.db").to_str().unwrap()]);
    assert!(stdout(&o).contains(&format!("{near} damaged near-duplicate(s)")), "{}", stdout(&o));
}
