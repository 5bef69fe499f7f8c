#![allow(clippy::unwrap_used)]
//! Hermes imports against the fixtures' counts, a SIGKILL of `append --jsonl` mid-stream, and a
//! small demo run.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

fn fixtures_copy(t: &std::path::Path) -> std::path::PathBuf {
    let dst = t.join("hermes");
    copy_dir(&fixtures(), &dst);
    dst
}

#[test]
fn hermes_fixtures_import_with_the_expected_counts() {
    let t = tempfile::tempdir().unwrap();
    let h = fixtures_copy(t.path());
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(h.join("expected.json")).unwrap()).unwrap();
    let s11 = t.path().join("s11");
    let o = run(&s11, &["--json", "import", "hermes", h.join("state-v11.db").to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(json(&o)["sessions"], 12);
    assert_eq!(json(&o)["messages_added"], 242);
    assert_eq!(json_lines(&run(&s11, &["export"])).len(), 242);

    let s30 = t.path().join("s30");
    let o = run(&s30, &["--json", "import", "hermes", h.join("state-v30.db").to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(json(&o)["messages_added"], 458);
    let o = run(&s30, &["--json", "import", "jsonl", h.join("sessions").to_str().unwrap()]);
    assert_eq!(code(&o), 0, "cut lines are not a problem: {}", stderr(&o));
    assert_eq!(json(&o)["messages"], 216);
    assert_eq!(json(&o)["messages_added"], 0, "the sidecars hold the same conversations");
    assert!(!json(&o)["cut_lines"].as_array().unwrap().is_empty());
    let o = run(&s30, &["--json", "import", "hermes", h.join("state-v30.db").to_str().unwrap()]);
    assert_eq!(json(&o)["messages_added"], 0, "re-import adds nothing");
    assert_eq!(json_lines(&run(&s30, &["export"])).len(), 458);
    let o = run(&s30, &["--json", "sessions", "--limit", "100"]);
    assert_eq!(json(&o)["sessions"].as_array().unwrap().len(), 24);
    assert_eq!(code(&run(&s30, &["verify"])), 0);

    let dmg = t.path().join("dmg");
    let o = run(&dmg, &["--json", "import", "hermes", h.join("state-v30-damaged.db").to_str().unwrap()]);
    assert_eq!(code(&o), 1, "unreadable rows make exit 1");
    let damaged = &expected["state-v30-damaged.db"];
    let readable = damaged["messages_readable_by_rowid"].as_u64().unwrap();
    assert_eq!(json(&o)["messages_added"].as_u64().unwrap(), readable);
    assert_eq!(json(&o)["unreadable_rows"].as_u64().unwrap(), damaged["messages_total"].as_u64().unwrap() - readable);

    let o = run(&dmg, &["import", "hermes", t.path().join("missing.db").to_str().unwrap()]);
    assert_eq!(code(&o), 2);
    let o = run(&dmg, &["import", "hermes", h.join("README.md").to_str().unwrap()]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
}

#[test]
fn killed_append_keeps_every_acked_message() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("store");
    let mut child = bin()
        .arg("--dir")
        .arg(&dir)
        .args(["append", "--jsonl"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut acks = BufReader::new(child.stdout.take().unwrap());
    let mut acked = Vec::new();
    // Request/response first: one line, wait for its ack.
    for i in 0..5 {
        writeln!(stdin, "{}", msg("k", i)).unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        acks.read_line(&mut line).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        acked.push(v["id"].as_str().unwrap().to_string());
    }
    // Then a stream, killed mid-way.
    let writer = std::thread::spawn(move || {
        for i in 5..100_000 {
            if writeln!(stdin, "{}", msg("k", i)).is_err() {
                break;
            }
        }
    });
    let mut line = String::new();
    while acked.len() < 300 {
        line.clear();
        if acks.read_line(&mut line).unwrap() == 0 {
            break;
        }
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        acked.push(v["id"].as_str().unwrap().to_string());
    }
    child.kill().unwrap();
    // Acks already printed before the kill count too.
    loop {
        line.clear();
        match acks.read_line(&mut line) {
            Ok(n) if n > 0 && line.ends_with('\n') => {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                acked.push(v["id"].as_str().unwrap().to_string());
            }
            _ => break,
        }
    }
    child.wait().unwrap();
    writer.join().unwrap();
    let exported: std::collections::HashSet<String> =
        json_lines(&run(&dir, &["export"])).iter().map(|l| l["id"].as_str().unwrap().to_string()).collect();
    let lost: Vec<&String> = acked.iter().filter(|id| !exported.contains(*id)).collect();
    assert!(lost.is_empty(), "{} acked messages lost: {:?}", lost.len(), &lost[..lost.len().min(5)]);
    assert!(acked.len() >= 300);
    assert_eq!(code(&run(&dir, &["verify"])), 0);
}

#[test]
fn small_demo_loses_nothing() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("demo");
    let o = run(&dir, &["--json", "demo", "--writers", "2", "--messages", "120"]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    let v = json(&o);
    assert_eq!(v["lost"], 0);
    assert!(v["acknowledged"].as_u64().unwrap() >= 90);
    let o = run(&dir, &["demo"]);
    assert_eq!(code(&o), 2, "refuses a folder that holds files");
}
