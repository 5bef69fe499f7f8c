#![allow(clippy::unwrap_used)]
//! What a person sees: quiet success, one error prefix, each problem once, colors, the
//! quarantine commands, disk use, and the small conveniences (issue 16).

mod common;
use common::*;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Stdio;

fn store_with(dir: &Path, n: usize) {
    let input: String = (1..=n).map(|i| msg("s", i) + "\n").collect();
    let o = run_stdin(dir, &["append", "--jsonl"], &input);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = run(dir, &["checkpoint"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

/// Bytes the folder takes on disk (allocated blocks, preallocation included).
fn disk_use(p: &Path) -> u64 {
    let m = std::fs::symlink_metadata(p).unwrap();
    if m.is_dir() {
        std::fs::read_dir(p).unwrap().map(|e| disk_use(&e.unwrap().path())).sum::<u64>() + m.blocks() * 512
    } else {
        m.blocks() * 512
    }
}

#[test]
fn a_successful_command_prints_nothing_on_stderr() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("store");
    let input: String = (1..=5).map(|i| msg("s", i) + "\n").collect();
    let o = run_stdin(&dir, &["append", "--jsonl"], &input);
    assert_eq!((code(&o), stderr(&o).as_str()), (0, ""));
    let bk = t.path().join("bk");
    let out = t.path().join("out.jsonl");
    for args in [
        vec!["checkpoint"],
        vec!["verify"],
        vec!["stats"],
        vec!["sessions"],
        vec!["search", "invoice"],
        vec!["tail"],
        vec!["export"],
        vec!["export", "--out", out.to_str().unwrap()],
        vec!["rebuild-index"],
        vec!["repair"],
        vec!["backup", bk.to_str().unwrap()],
        vec!["quarantine", "list"],
    ] {
        let o = run(&dir, &args);
        assert_eq!(code(&o), 0, "{args:?}: {}", stderr(&o));
        assert_eq!(stderr(&o), "", "{args:?} printed on stderr");
        assert!(!stdout(&o).is_empty(), "{args:?} printed no result");
    }
    // -v shows the logs.
    let o = run(&dir, &["-v", "rebuild-index"]);
    assert_eq!(code(&o), 0);
    assert!(stderr(&o).contains("INFO"), "{}", stderr(&o));
    // --quiet: results only.
    let o = run(&dir, &["--quiet", "search", "invoice"]);
    assert_eq!((code(&o), stderr(&o).as_str()), (0, ""));
    assert!(stdout(&o).contains("5 hit(s)"));
}

#[test]
fn usage_errors_and_our_errors_share_one_prefix() {
    let t = tempfile::tempdir().unwrap();
    let o = bin().arg("--no-such-flag").output().unwrap();
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).starts_with("tidelog: error: unexpected argument '--no-such-flag'"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("\nerror:"), "{}", stderr(&o));
    let o = run(&t.path().join("missing"), &["verify"]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).starts_with("tidelog: error: no store at"), "{}", stderr(&o));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    // Help and version are results: stdout, exit 0.
    let o = bin().arg("--help").output().unwrap();
    assert_eq!((code(&o), stderr(&o).as_str()), (0, ""));
    assert!(stdout(&o).contains("quarantine"));
}

#[test]
fn an_error_cause_is_printed_once() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("store");
    store_with(&dir, 2);
    let file = t.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let o = run(&dir, &["backup", file.join("bk").to_str().unwrap()]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.starts_with("tidelog: error: "), "{err}");
    assert_eq!(err.matches("Not a directory").count(), 1, "{err}");
}

#[test]
fn colors_follow_color_and_no_color() {
    let t = tempfile::tempdir().unwrap();
    let missing = t.path().join("missing");
    let with = |args: &[&str], no_color: bool| {
        let mut c = bin();
        if no_color {
            c.env("NO_COLOR", "1");
        } else {
            c.env_remove("NO_COLOR");
        }
        stderr(&c.arg("--dir").arg(&missing).args(args).output().unwrap())
    };
    assert!(with(&["--color", "always", "verify"], false).contains("\x1b["));
    assert!(with(&["--color=always", "verify"], true).contains("\x1b["), "an explicit choice wins");
    assert!(!with(&["--color", "never", "verify"], false).contains('\x1b'));
    assert!(!with(&["verify"], true).contains('\x1b'));
    assert!(with(&["--color", "always", "--bogus"], false).starts_with("tidelog: \x1b["));
}

#[test]
fn healthy_rebuild_keeps_no_copy_and_damage_waits_for_a_person() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("store");
    store_with(&dir, 10);
    let o = run(&dir, &["rebuild-index"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(!dir.join("quarantine").exists() || std::fs::read_dir(dir.join("quarantine")).unwrap().count() == 0);
    assert!(!dir.join("index.rebuilding.db").exists());
    let o = run(&dir, &["quarantine", "list"]);
    assert_eq!(stdout(&o), "the quarantine is empty\n");
    assert_eq!(json_lines(&run(&dir, &["export"])).len(), 10);
    assert!(stdout(&run(&dir, &["stats"])).contains("quarantine: empty"));

    // A damaged index is kept, with its note, until removed on request.
    std::fs::write(dir.join("index.db"), b"this is not a database").unwrap();
    let _ = std::fs::remove_file(dir.join("index.db-wal"));
    let _ = std::fs::remove_file(dir.join("index.db-shm"));
    let o = run(&dir, &["rebuild-index"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("moved to the quarantine"), "{}", stdout(&o));
    let o = run(&dir, &["--json", "quarantine", "list"]);
    let items = json(&o)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1, "{items:?}");
    let name = items[0]["name"].as_str().unwrap().to_string();
    assert!(name.ends_with("-index.db"), "{name}");
    assert_eq!(items[0]["bytes"], 22);
    assert!(items[0]["reason"].as_str().unwrap().contains("tidelog rebuild-index"), "{items:?}");
    let o = run(&dir, &["quarantine", "list"]);
    assert!(stdout(&o).starts_with(&format!("{name}  22 B  ")), "{}", stdout(&o));
    let o = run(&dir, &["stats"]);
    assert!(stdout(&o).contains("quarantine: "), "{}", stdout(&o));
    assert!(!stdout(&o).contains("quarantine: empty"));
    let o = run(&dir, &["--json", "stats"]);
    assert!(json(&o)["quarantine_bytes"].as_u64().unwrap() >= 22);

    let o = run(&dir, &["quarantine", "remove", "no-such-item"]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("no quarantined item named no-such-item"), "{}", stderr(&o));
    let o = run(&dir, &["quarantine", "remove"]);
    assert_eq!(code(&o), 2, "a name or --all is required");
    let o = run(&dir, &["quarantine", "remove", &name]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).starts_with("removed 2 file(s)"), "the file and its note: {}", stdout(&o));
    assert_eq!(stdout(&run(&dir, &["quarantine", "list"])), "the quarantine is empty\n");

    // --all, with a lane's quarantine too (a cut torn tail).
    std::fs::write(dir.join("index.db"), b"damaged again").unwrap();
    let _ = std::fs::remove_file(dir.join("index.db-wal"));
    assert_eq!(code(&run(&dir, &["repair"])), 0);
    assert_eq!(json(&run(&dir, &["--json", "quarantine", "list"]))["items"].as_array().unwrap().len(), 1);
    let o = run(&dir, &["quarantine", "remove", "--all"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&run(&dir, &["quarantine", "list"])), "the quarantine is empty\n");
    assert_eq!(code(&run(&dir, &["verify"])), 0);
}

#[test]
fn a_short_session_costs_kilobytes() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("store");
    let input: String = (1..=20).map(|i| msg("s", i) + "\n").collect();
    let mut c = bin();
    c.env_remove("TIDELOG_SEGMENT_SIZE").arg("--dir").arg(&dir).args(["append", "--jsonl"]);
    let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let lanes = disk_use(&dir.join("lanes"));
    assert!(lanes < 200 << 10, "the lane takes {lanes} bytes");
}

/// The fixture's 458 messages hold 1.5 MiB of text (tool output), stored in the journal and in
/// the index: the store cannot take under 1 MiB without compressing it. What preallocation
/// costs is checked: the lane holds its records plus at most one growth step, and the whole
/// store (67 MB before issue 16) is a few MiB.
#[test]
fn the_hermes_fixture_store_costs_its_data_not_a_segment() {
    let fx = fixtures();
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("state.db");
    std::fs::copy(fx.join("state-v30.db"), &src).unwrap();
    let dir = t.path().join("store");
    let o = bin()
        .env_remove("TIDELOG_SEGMENT_SIZE")
        .arg("--dir")
        .arg(&dir)
        .args(["import", "hermes", src.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stderr(&o), "");
    assert!(stdout(&o).contains("458 message(s) read"), "{}", stdout(&o));
    let lanes = disk_use(&dir.join("lanes"));
    assert!(lanes < 2 << 20, "the lane takes {lanes} bytes for 1.7 MB of records");
    let used = disk_use(&dir);
    assert!(used < 5 << 20, "the store takes {used} bytes");
    let bk = t.path().join("bk");
    let o = bin().env_remove("TIDELOG_SEGMENT_SIZE").arg("--dir").arg(&dir).arg("backup").arg(&bk).output().unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let used = disk_use(&bk);
    assert!(used < 5 << 20, "the backup takes {used} bytes");
}

#[test]
fn a_damaged_import_prints_each_problem_once() {
    let fx = fixtures();
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("state.db");
    std::fs::copy(fx.join("state-v30-damaged.db"), &src).unwrap();
    let dir = t.path().join("store");
    let o = run(&dir, &["import", "hermes", src.to_str().unwrap()]);
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(out.starts_with("imported "), "{out}");
    assert!(!out.contains("warning:"), "problems go to stderr: {out}");
    assert!(!err.contains("WARN") && !err.contains("ERROR"), "no logs without -v: {err}");
    assert!(err.lines().count() <= 12, "{err}");
    assert!(err.contains("more like it"), "runs of alike warnings are one line: {err}");
    assert!(err.lines().all(|l| l.starts_with("tidelog: warning: ")), "{err}");
    let mut lines: Vec<&str> = err.lines().collect();
    lines.dedup();
    assert_eq!(lines.len(), err.lines().count(), "a line repeated: {err}");
}

#[test]
fn search_takes_a_query_starting_with_a_hyphen() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("store");
    let line = r#"{"session_id":"s","role":"user","content":"pay the -invoice now"}"#;
    assert_eq!(code(&run_stdin(&dir, &["append", "--jsonl"], &format!("{line}\n"))), 0);
    for args in [&["search", "-invoice"][..], &["search", "--", "-invoice"], &["search", "--limit", "3", "-invoice"]] {
        let o = run(&dir, args);
        assert_eq!(code(&o), 0, "{args:?}: {}", stderr(&o));
        assert!(stdout(&o).contains("1 hit(s)"), "{args:?}: {}", stdout(&o));
    }
}

#[test]
fn export_out_writes_jsonl_to_a_file() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("store");
    store_with(&dir, 3);
    let out = t.path().join("all.jsonl");
    let o = run(&dir, &["export", "--out", out.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("wrote 3 message(s) to {}\n", out.display()));
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 3);
    let o = run(&dir, &["export", "--out", out.to_str().unwrap()]);
    assert_eq!(code(&o), 2, "never overwrites");
}

#[test]
fn sessions_show_message_counts_and_extra_as_json() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("store");
    store_with(&dir, 4);
    let o = run(&dir, &["sessions"]);
    assert!(stdout(&o).contains(" s 4 message(s) "), "{}", stdout(&o));
    let src = t.path().join("state.db");
    std::fs::copy(fixtures().join("state-v30.db"), &src).unwrap();
    assert_eq!(code(&run(&dir, &["import", "hermes", src.to_str().unwrap()])), 0);
    let o = run(&dir, &["--json", "sessions", "--limit", "500"]);
    let list = json(&o)["sessions"].as_array().unwrap().clone();
    assert!(list.iter().any(|s| s["id"] == "s" && s["messages"] == 4), "{list:?}");
    assert!(list.iter().all(|s| !s["extra"].is_string()), "extra is an object, not JSON text: {list:?}");
}

#[test]
fn demo_runs_again_in_a_fresh_folder_and_speaks_plainly() {
    let t = tempfile::tempdir().unwrap();
    for expect in ["tidelog-demo", "tidelog-demo-2"] {
        let o = bin()
            .current_dir(t.path())
            .args(["demo", "--writers", "2", "--messages", "40"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
        assert_eq!(stderr(&o), "");
        let out = stdout(&o);
        assert!(out.contains(&format!("the store is in {expect}")), "{out}");
        assert!(out.contains("lost:                        0"), "{out}");
        for jargon in ["torn tail", "index lag", "acks"] {
            assert!(!out.contains(jargon), "{jargon}: {out}");
        }
    }
}

#[test]
fn search_fts5_takes_the_query_language() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("store");
    let lines = "{\"session_id\":\"s\",\"role\":\"user\",\"content\":\"pay the invoice now\"}\n\
                 {\"session_id\":\"s\",\"role\":\"user\",\"content\":\"the receipt came\"}\n";
    assert_eq!(code(&run_stdin(&dir, &["append", "--jsonl"], lines)), 0);
    let o = run(&dir, &["search", "--fts5", "invoice OR receipt"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("2 hit(s)"), "{}", stdout(&o));
    let o = run(&dir, &["search", "--fts5", "the NOT receipt"]);
    assert!(stdout(&o).contains("1 hit(s)"), "{}", stdout(&o));
    // Bad FTS5 is a clear error (exit 2), not a crash.
    let o = run(&dir, &["search", "--fts5", "chat-send"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("no such column"), "{}", stderr(&o));
}
