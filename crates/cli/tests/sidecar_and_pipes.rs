#![allow(clippy::unwrap_used)]
//! Issue 11: the sidecar answers every line and goes on; closed pipes never panic; folders are
//! not turned into stores by mistake.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

fn line(v: serde_json::Value) -> String {
    v.to_string()
}

#[test]
fn sidecar_refuses_absurd_timestamps_accepts_a_bom_and_goes_on() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("store");
    let input = format!(
        "\u{feff}{}\n{}\n{}\n{}\n",
        msg("s", 1),
        line(serde_json::json!({"session_id": "s", "role": "user", "content": "far future", "timestamp": 1e300})),
        line(
            serde_json::json!({"session_id": "s", "role": "user", "content": "milliseconds", "timestamp": 1_777_827_611_000u64})
        ),
        msg("s", 2),
    );
    let o = run_stdin(&dir, &["append", "--jsonl"], &input);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let a = json_lines(&o);
    assert_eq!(a.len(), 4, "{}", stdout(&o));
    assert_eq!(a[0]["ack"], 1, "a BOM before the first line is accepted: {}", a[0]);
    assert_eq!(a[1]["line"], 2);
    assert!(a[1]["error"].as_str().unwrap().contains("year 9999"), "{}", a[1]);
    assert_eq!(a[2]["line"], 3);
    assert_eq!(a[3]["ack"], 4);
    let o = run(&dir, &["export"]);
    assert_eq!(json_lines(&o).len(), 2);
}

#[test]
fn sidecar_answers_duplicates_and_conflicts_and_keeps_the_first_version() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("store");
    let first = serde_json::json!({"id": "x1", "session_id": "s", "role": "user", "content": "first version"});
    let changed = serde_json::json!({"id": "x1", "session_id": "s", "role": "user", "content": "second version"});
    let o = run_stdin(&dir, &["append", "--jsonl"], &format!("{first}\n{first}\n{changed}\n"));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let a = json_lines(&o);
    assert!(a[0].get("duplicate").is_none(), "{}", a[0]);
    assert_eq!(a[1]["duplicate"], true);
    assert!(a[1].get("conflict").is_none(), "{}", a[1]);
    assert_eq!(a[2]["duplicate"], true);
    assert_eq!(a[2]["conflict"], true, "{}", a[2]);
    assert!(stderr(&o).contains("different content"), "{}", stderr(&o));
    // A later process resending both (the id is indexed or in another lane by now).
    let o = run_stdin(&dir, &["append", "--jsonl"], &format!("{changed}\n{first}\n"));
    let a = json_lines(&o);
    assert_eq!(a[0]["conflict"], true, "{}", a[0]);
    assert!(a[1].get("conflict").is_none(), "{}", a[1]);
    let o = run(&dir, &["export"]);
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["content"], "first version");
}

#[test]
fn closed_stdout_and_stderr_never_abort() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("store");
    let input: String = (0..3000).map(|i| msg("s", i) + "\n").collect();
    assert_eq!(code(&run_stdin(&dir, &["append", "--jsonl"], &input)), 0);
    // Both pipes closed before the command writes anything: errors and results are dropped,
    // the exit code is still ours (a panic on a closed stderr used to end in SIGABRT).
    for args in [&["export"][..], &["verify"], &["search", "invoice"], &["stats"], &["no-such-command"]] {
        let mut child =
            bin().arg("--dir").arg(&dir).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        drop(child.stdout.take());
        drop(child.stderr.take());
        let st = child.wait().unwrap();
        assert!(st.code().is_some(), "{args:?} ended by a signal: {st:?}");
    }
    let missing = t.path().join("missing");
    let mut child =
        bin().arg("--dir").arg(&missing).arg("verify").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take());
    drop(child.stderr.take());
    assert_eq!(child.wait().unwrap().code(), Some(2));

    // An import whose stdout and stderr are closed finishes its work.
    let store2 = t.path().join("imported");
    let db = t.path().join("state.db");
    std::fs::copy(fixtures().join("state-v30-damaged.db"), &db).unwrap();
    let mut child = bin()
        .arg("--dir")
        .arg(&store2)
        .args(["import", "hermes"])
        .arg(&db)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    drop(child.stderr.take());
    let st = child.wait().unwrap();
    assert!(st.code().is_some(), "import ended by a signal: {st:?}");
    let o = run(&store2, &["export"]);
    assert!(json_lines(&o).len() >= 300, "the import finished: {}", json_lines(&o).len());
}

#[test]
fn sidecar_whose_client_went_away_stops_at_a_safe_point() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("store");
    let mut child = bin()
        .arg("--dir")
        .arg(&dir)
        .args(["append", "--jsonl"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    writeln!(stdin, "{}", msg("s", 1)).unwrap();
    let mut ack = String::new();
    out.read_line(&mut ack).unwrap();
    assert!(ack.contains("\"ack\":1"), "{ack}");
    drop(out);
    let _ = writeln!(stdin, "{}", msg("s", 2));
    drop(stdin);
    let o = child.wait_with_output().unwrap();
    assert!(o.status.code().is_some(), "ended by a signal: {:?}", o.status);
    let o = run(&dir, &["export"]);
    assert!(!json_lines(&o).is_empty(), "the acknowledged line is stored");
    assert_eq!(code(&run(&dir, &["verify"])), 0);
}

#[test]
fn a_folder_that_is_not_a_store_is_not_turned_into_one() {
    let t = tempfile::tempdir().unwrap();
    let other = t.path().join("photos");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("holiday.jpg"), b"jpeg").unwrap();
    let o = run(&other, &["append", "--jsonl"]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("not empty and is not a tidelog store"), "{}", stderr(&o));
    assert!(!other.join("lanes").exists());
    let o = run(&other, &["import", "jsonl", other.join("holiday.jpg").to_str().unwrap()]);
    assert_eq!(code(&o), 2);
    assert!(!other.join("lanes").exists());
    // An empty folder, a missing one and an existing store are fine.
    let empty = t.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert_eq!(code(&run_stdin(&empty, &["append", "--jsonl"], &(msg("s", 1) + "\n"))), 0);
    assert_eq!(code(&run_stdin(&empty, &["append", "--jsonl"], &(msg("s", 2) + "\n"))), 0);
    assert_eq!(code(&run_stdin(&t.path().join("new"), &["append", "--jsonl"], &(msg("s", 1) + "\n"))), 0);
}

#[test]
fn imports_of_the_wrong_kind_of_file_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("store");
    assert_eq!(code(&run_stdin(&dir, &["append", "--jsonl"], &(msg("s", 1) + "\n"))), 0);
    // An index of that store, whether or not the writer's compactor made one before it exited.
    let o = run(&dir, &["rebuild-index"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let copy = t.path().join("index-copy.db");
    std::fs::copy(dir.join("index.db"), &copy).unwrap();
    let target = t.path().join("target");
    let o = run(&target, &["import", "hermes", copy.to_str().unwrap()]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("is a Tidelog index"), "{}", stderr(&o));
    let db = t.path().join("state.db");
    std::fs::copy(fixtures().join("state-v30.db"), &db).unwrap();
    let o = run(&target, &["import", "jsonl", db.to_str().unwrap()]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("is a SQLite database"), "{}", stderr(&o));
    assert!(!target.join("lanes").exists(), "nothing was written");
}

#[test]
fn hermes_export_gives_sessions_with_alike_names_their_own_files() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("store");
    let input: String = ["a/b", "a_b", "a b"]
        .iter()
        .map(|s| serde_json::json!({"session_id": s, "role": "user", "content": format!("in {s}")}).to_string() + "\n")
        .collect();
    assert_eq!(code(&run_stdin(&dir, &["append", "--jsonl"], &input)), 0);
    let out = t.path().join("hermes");
    let o = run(&dir, &["export", "--format", "hermes-jsonl", "--out", out.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 3);
}

#[test]
fn verify_flags_a_world_writable_store_folder() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("store");
    assert_eq!(code(&run_stdin(&dir, &["append", "--jsonl"], &(msg("s", 1) + "\n"))), 0);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let o = run(&dir, &["verify"]);
    assert_eq!(code(&o), 1);
    assert!(stdout(&o).contains("writable by every user"), "{}", stdout(&o));
}

/// A line with no end (`/dev/zero`) is refused once it passes the line limit, in bounded memory,
/// by the sidecar and by the JSONL import: an error, not a process growing until it is killed.
#[test]
fn endless_lines_fail_cleanly() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("store");
    let o = bin()
        .arg("--dir")
        .arg(&dir)
        .args(["append", "--jsonl"])
        .stdin(std::fs::File::open("/dev/zero").unwrap())
        .output()
        .unwrap();
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("line 1 is longer than 80 MiB"), "{}", stderr(&o));
    let o = run(&dir, &["import", "jsonl", "/dev/zero"]);
    assert_ne!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("longer than 80 MiB"), "{}", stderr(&o));
}
