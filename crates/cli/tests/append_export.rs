#![allow(clippy::unwrap_used)]
//! `append --jsonl`, `export`, the read commands, and every kind of bad input.

mod common;
use common::*;

#[test]
fn append_acks_dedups_and_exports() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("store");
    let input = format!(
        "{}\n\n{}\n{}\n{}\n",
        msg("s1", 1),
        r#"{"session_id":"s1","role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function"}],"timestamp":"2026-05-03T17:00:10.5+00:00","token_count":7,"extra":{"k":1}}"#,
        msg("s1", 1),
        r#"{"session_id":"s2","role":"tool","content":"検索 output 🚀","tool_call_id":"c1","tool_name":"terminal","timestamp":1777827611.25,"source":"telegram"}"#
    );
    let o = run_stdin(&dir, &["append", "--jsonl"], &input);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let acks = json_lines(&o);
    assert_eq!(acks.iter().map(|a| a["ack"].as_u64().unwrap()).collect::<Vec<_>>(), vec![1, 3, 4, 5]);
    assert_eq!(acks[0]["id"], "m-s1-1");
    assert_eq!(acks[2]["id"], "m-s1-1", "a duplicate is acked with the same id");

    let o = run(&dir, &["export"]);
    assert_eq!(code(&o), 0);
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 3, "the duplicate is stored once");
    let tool = lines.iter().find(|l| l["role"] == "assistant").unwrap();
    assert_eq!(tool["tool_calls"][0]["id"], "c1");
    assert_eq!(tool["timestamp"], 1777827610.5);
    assert_eq!(tool["extra"]["k"], 1);
    let o = run(&dir, &["export", "--session", "s2"]);
    assert_eq!(json_lines(&o).len(), 1);
    let o = run(&dir, &["export", "--since", "2027-01-01T00:00:00Z", "--session", "s2"]);
    assert_eq!(json_lines(&o).len(), 0);

    let out = t.path().join("hermes");
    let o = run(&dir, &["export", "--format", "hermes-jsonl", "--out", out.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let s2 = std::fs::read_to_string(out.join("s2.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(s2.lines().next().unwrap()).unwrap();
    assert_eq!(first["role"], "session_meta");
    let m: serde_json::Value = serde_json::from_str(s2.lines().nth(1).unwrap()).unwrap();
    assert_eq!(m["timestamp"], "2026-05-03T17:00:11.250000+00:00");
    let o = run(&dir, &["export", "--format", "hermes-jsonl"]);
    assert_eq!(code(&o), 2, "hermes-jsonl needs --out");

    let o = run(&dir, &["search", "検索"]);
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).contains("1 hit(s)"), "{}", stdout(&o));
    let o = run(&dir, &["--json", "search", "invoice", "--order", "newest", "--limit", "5"]);
    assert_eq!(json(&o)["hits"].as_array().unwrap().len(), 1);
    let o = run(&dir, &["--json", "sessions"]);
    assert_eq!(json(&o)["sessions"].as_array().unwrap().len(), 2);
    let o = run(&dir, &["tail", "-n", "2"]);
    assert_eq!(stdout(&o).lines().count(), 2);
    let o = run(&dir, &["--json", "stats"]);
    assert_eq!(code(&o), 0);
    assert_eq!(json(&o)["lanes"].as_array().unwrap().len(), 1);
    assert_eq!(json(&o)["index_parts"].as_array().unwrap().len(), 0, "index pages read only when asked");
    // Where the index's bytes are: every page counted once, in a part.
    let o = run(&dir, &["--json", "stats", "--bytes"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v = json(&o);
    let parts = v["index_parts"].as_array().unwrap();
    let bytes = |name: &str| parts.iter().find(|p| p["part"] == name).unwrap()["bytes"].as_u64().unwrap();
    assert!(bytes("trigram index") > 0 && bytes("word index") > 0 && bytes("messages") > 0, "{parts:?}");
    let total: u64 = parts.iter().map(|p| p["bytes"].as_u64().unwrap()).sum();
    let pages: i64 = {
        let c = rusqlite::Connection::open(dir.join("index.db")).unwrap();
        c.query_row("SELECT page_count * page_size FROM pragma_page_count, pragma_page_size", [], |r| r.get(0)).unwrap()
    };
    assert_eq!(total, u64::try_from(pages).unwrap(), "{parts:?}");
    let o = run(&dir, &["stats", "--bytes"]);
    assert!(stdout(&o).contains("index bytes by part: trigram index"), "{}", stdout(&o));
    let o = run(&dir, &["search", "  "]);
    assert_eq!(code(&o), 2);
}

#[test]
fn invalid_lines_are_answered_with_an_error_line_and_the_sidecar_goes_on() {
    let t = tempfile::tempdir().unwrap();
    let cases = [
        ("{not json", "not valid JSON"),
        (r#"{"role":"user","content":"x"}"#, "missing `session_id`"),
        (r#"{"session_id":"s","content":"x"}"#, "missing `role`"),
        (r#"{"session_id":"s","role":"user","timestamp":"someday"}"#, "timestamp"),
        (r#"{"session_id":"s","role":"user","extra":"x"}"#, "extra"),
        (r#"[1,2]"#, "expected a JSON object"),
    ];
    for (i, (bad, why)) in cases.iter().enumerate() {
        let dir = t.path().join(format!("s{i}"));
        let input = format!("{}\n{}\n{bad}\n{}\n", msg("a", 1), msg("a", 2), msg("a", 3));
        let o = run_stdin(&dir, &["append", "--jsonl"], &input);
        assert_eq!(code(&o), 1, "{bad}");
        let answers = json_lines(&o);
        assert_eq!(answers.len(), 4, "one answer per line");
        assert_eq!(answers[2]["line"], 3, "{bad}");
        assert!(answers[2]["error"].as_str().unwrap().contains(why), "{bad}: {}", answers[2]);
        assert_eq!(answers[3]["ack"], 4, "the line after the bad one is stored");
        assert!(stderr(&o).contains("1 line(s) refused"), "{}", stderr(&o));
        let o = run(&dir, &["export"]);
        assert_eq!(json_lines(&o).len(), 3, "every good line is kept");
    }
    // Invalid UTF-8.
    let dir = t.path().join("utf8");
    let mut child = bin()
        .arg("--dir")
        .arg(&dir)
        .args(["append", "--jsonl"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"{\"session_id\":\"\xff\"}\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(code(&o), 1);
    assert!(json_lines(&o)[0]["error"].as_str().unwrap().contains("UTF-8"), "{}", stdout(&o));
}

#[test]
fn oversized_message_is_refused_with_exit_1() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("store");
    let big = serde_json::json!({"session_id": "s", "role": "tool", "content": "x".repeat(20_000)}).to_string();
    let input = format!("{}\n{big}\n{}\n", msg("s", 1), msg("s", 2));
    let mut c = bin();
    c.env("TIDELOG_MAX_RECORD_SIZE", "4096");
    let mut child = c
        .arg("--dir")
        .arg(&dir)
        .args(["append", "--jsonl"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let answers = json_lines(&o);
    assert_eq!(answers.len(), 3);
    assert_eq!(answers[1]["line"], 2);
    assert!(answers[1]["error"].as_str().unwrap().contains("maximum record size"), "{}", answers[1]);
    assert_eq!(answers[2]["ack"], 3);
}

#[test]
fn wrong_dir_and_usage_errors_exit_2() {
    let t = tempfile::tempdir().unwrap();
    let file = t.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    for args in [&["verify"][..], &["export"], &["stats"], &["search", "x"]] {
        let o = run(&file, args);
        assert_eq!(code(&o), 2, "{args:?}");
        assert!(stderr(&o).contains("is not a folder"), "{}", stderr(&o));
        let o = run(&t.path().join("missing"), args);
        assert_eq!(code(&o), 2);
        assert!(stderr(&o).contains("no store at"), "{}", stderr(&o));
        let o = run(t.path(), args);
        assert_eq!(code(&o), 2);
        assert!(stderr(&o).contains("not a tidelog store"), "{}", stderr(&o));
    }
    let o = run_stdin(&file, &["append", "--jsonl"], "");
    assert_eq!(code(&o), 2);
    let o = bin().arg("verify").output().unwrap();
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("--dir"));
    let o = bin().arg("no-such-command").output().unwrap();
    assert_eq!(code(&o), 2);
    let o = bin().arg("--help").output().unwrap();
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).contains("Exit codes"));
    // TIDELOG_DIR works as --dir.
    let o = bin().env("TIDELOG_DIR", t.path().join("missing")).arg("stats").output().unwrap();
    assert!(stderr(&o).contains("no store at"));
}

/// Read commands open the store read-only: beside a live writer they claim no lane, create no
/// file, and still see what the writer acknowledged.
#[test]
fn read_commands_claim_no_lane_and_write_nothing() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("store");
    // A live writer holding lane-0001 (its stdin stays open until we are done).
    let mut child = bin()
        .args(["--dir", dir.to_str().unwrap(), "append", "--jsonl"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    use std::io::{BufRead, Write};
    for i in 1..=3 {
        writeln!(stdin, "{}", msg("live", i)).unwrap();
        stdin.flush().unwrap();
        let mut ack = String::new();
        out.read_line(&mut ack).unwrap();
        assert!(ack.contains("\"ack\""), "{ack}");
    }
    let files = |d: &std::path::Path| -> Vec<String> {
        let mut v: Vec<String> =
            walk(d).into_iter().map(|p| p.strip_prefix(d).unwrap().display().to_string()).collect();
        v.sort();
        v
    };
    // Only the lanes: the writer's own compactor may create index files meanwhile.
    let lanes = dir.join("lanes");
    let before = files(&lanes);
    for args in [&["search", "message"][..], &["export"][..], &["sessions"][..], &["tail"][..]] {
        let o = run(&dir, args);
        assert_eq!(code(&o), 0, "{args:?}: {}", stderr(&o));
    }
    let o = run(&dir, &["export"]);
    assert_eq!(json_lines(&o).len(), 3, "export sees the live writer's acknowledged messages");
    let after = files(&lanes);
    assert_eq!(before, after, "a read command claimed a lane or changed lane files");
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

fn walk(d: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}
