//! Full-text merges from several processes at once (docs/design.md "Keeping the full-text indexes
//! merged"): a gateway's compactor merges when idle while `tidelog checkpoint` (or another
//! compactor) may run the same full merge on the same `index.db`. Each step is one FTS5 `'merge'`
//! command in its own transaction, so SQLite's write lock orders them; this checks it with real
//! processes, one merger SIGKILLed part-way each round (a transaction cut by a crash).
//!
//! The test binary re-runs itself as children: two mergers (full merges made due again and again,
//! step by step, with the idle merge between) and a writer (a store with its compactor, adding a
//! level-0 segment with every batch while the merges run, printing every acknowledged id). Then:
//! both FTS5 integrity checks pass (`Index::check`, `Index::check_content`), a search finds
//! exactly the messages written (every acknowledged one, none twice), and a last full merge
//! leaves one segment per table with the same answers.
//!
//! Knobs: `TIDELOG_MERGE_ROUNDS` (default 3), `TIDELOG_MERGE_SEED`.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tidelog::{INDEX_FILE, Index, IndexOptions, Message, SearchQuery, Store, StoreOptions};
use tidelog_tests::Rng;

const TEST_NAME: &str = "merges_from_several_processes_keep_the_index_whole";
const ENV_CHILD: &str = "TIDELOG_MERGE_CHILD";
const ENV_ROLE: &str = "TIDELOG_MERGE_ROLE";
const ENV_TAG: &str = "TIDELOG_MERGE_TAG";
/// How long a child runs.
const CHILD_RUN: Duration = Duration::from_millis(2_500);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn opts() -> StoreOptions {
    StoreOptions { poll_interval: Duration::from_millis(5), ..StoreOptions::default() }
}

fn message(id: &str, i: usize) -> Message {
    Message {
        id: id.to_string(),
        session_id: format!("s{}", i % 7),
        role: if i % 3 == 2 { "tool".into() } else { "user".into() },
        content: Some(format!("pelican {id} {}", "lorem ipsum dolor ".repeat(i % 9 + 1))),
        ..Message::default()
    }
}

/// A merger: makes the full merge due (as if the index had grown), runs it step by step, then
/// an idle merge step; again until its time is up.
fn merger(dir: &Path) {
    let path = dir.join(INDEX_FILE);
    let ix = Index::open(&path, &IndexOptions::default()).unwrap();
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.busy_timeout(Duration::from_secs(30)).unwrap();
    let end = Instant::now() + CHILD_RUN;
    let (mut merges, mut steps) = (0, 0);
    while Instant::now() < end {
        raw.execute("DELETE FROM meta WHERE key = 'fts_merged_rows'", []).unwrap();
        if let Some(mut m) = ix.full_merge_due().unwrap() {
            while !ix.full_merge_step(&mut m).unwrap() {
                steps += 1;
            }
            merges += 1;
        }
        steps += usize::from(ix.optimize_step().unwrap());
    }
    println!("MERGED {merges} full merges, {steps} steps that merged");
}

/// The writer: batches of 20 with its compactor running, every acknowledged id printed.
fn writer(dir: &Path, tag: &str) {
    let store = Store::open(dir, opts()).unwrap();
    let end = Instant::now() + CHILD_RUN;
    let mut i = 0;
    while Instant::now() < end {
        let batch: Vec<Message> = (i..i + 20).map(|k| message(&format!("{tag}-{k}"), k)).collect();
        let ids: Vec<String> = batch.iter().map(|m| m.id.clone()).collect();
        store.append_batch(batch).unwrap();
        for id in ids {
            println!("ACK {id}");
        }
        i += 20;
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(store.wait_indexed(Duration::from_secs(60)));
    store.close().unwrap();
}

fn spawn(dir: &Path, role: &str, tag: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads", "1", "-q"])
        .env(ENV_CHILD, dir)
        .env(ENV_ROLE, role)
        .env(ENV_TAG, tag)
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// The `ACK` lines of a child's output (only whole lines).
fn acks(c: Child) -> (Vec<String>, std::process::ExitStatus, Vec<String>) {
    let mut c = c;
    let out = c.stdout.take().unwrap();
    let mut acked = Vec::new();
    let mut other = Vec::new();
    for line in BufReader::new(out).lines().map_while(Result::ok) {
        match line.strip_prefix("ACK ") {
            Some(id) => acked.push(id.to_string()),
            None => other.push(line),
        }
    }
    (acked, c.wait().unwrap(), other)
}

fn found(dir: &Path) -> Vec<String> {
    let store = Store::open(dir, StoreOptions { run_compactor: false, ..opts() }).unwrap();
    let hits = store.search(&SearchQuery { limit: 1_000_000, ..SearchQuery::new("pelican") }).unwrap();
    store.close().unwrap();
    let mut ids: Vec<String> = hits.into_iter().map(|h| h.message.id).collect();
    ids.sort();
    ids
}

#[test]
fn merges_from_several_processes_keep_the_index_whole() {
    if let Ok(dir) = std::env::var(ENV_CHILD) {
        let dir = Path::new(&dir);
        match std::env::var(ENV_ROLE).unwrap().as_str() {
            "merger" => merger(dir),
            _ => writer(dir, &std::env::var(ENV_TAG).unwrap()),
        }
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let mut rng = Rng::new(env_u64("TIDELOG_MERGE_SEED", 7));
    let mut written = BTreeSet::new();
    // Ten batches indexed one by one: ten level-0 segments in each table, a merge due.
    let store = Store::open(dir, opts()).unwrap();
    for b in 0..10 {
        let batch: Vec<Message> = (0..150).map(|i| message(&format!("base{b}-{i}"), i)).collect();
        written.extend(batch.iter().map(|m| m.id.clone()));
        store.append_batch(batch).unwrap();
        assert!(store.wait_indexed(Duration::from_secs(60)));
    }
    store.close().unwrap();

    // Merge steps that merged something, in the mergers that were not killed.
    let mut merge_steps = 0;
    for round in 0..env_u64("TIDELOG_MERGE_ROUNDS", 3) {
        let mergers = [spawn(dir, "merger", "m1"), spawn(dir, "merger", "m2")];
        let writer = spawn(dir, "writer", &format!("r{round}"));
        // One merger is killed part-way (inside a merge step or between two); each runs 2.5 s
        // from its own start, so the kill comes first.
        std::thread::sleep(Duration::from_millis(rng.range(300, 1_500)));
        let [mut killed, other] = mergers;
        killed.kill().unwrap();
        let (_, status, _) = acks(killed);
        assert_eq!(status.signal(), Some(9), "round {round}: the merger ended before it was killed: {status}");
        let (_, status, lines) = acks(other);
        assert!(status.success(), "round {round}: a merger failed: {lines:?}");
        let steps: u64 = lines
            .iter()
            .find_map(|l| l.strip_prefix("MERGED "))
            .and_then(|l| l.split(", ").nth(1))
            .and_then(|l| l.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("round {round}: {lines:?}"));
        merge_steps += steps;
        let (acked, status, lines) = acks(writer);
        assert!(status.success(), "round {round}: the writer failed: {lines:?}");
        assert!(!acked.is_empty(), "round {round}: nothing written");
        written.extend(acked);
    }

    assert!(merge_steps > 0, "the mergers never merged anything");
    let ix = Index::open(&dir.join(INDEX_FILE), &IndexOptions::default()).unwrap();
    assert_eq!(ix.check().unwrap(), Vec::<String>::new());
    assert_eq!(ix.check_content().unwrap(), Vec::<String>::new());
    let want: Vec<String> = written.into_iter().collect();
    assert_eq!(found(dir), want, "a search finds every message written, once");

    // A last full merge, alone: one segment per table, the same answers.
    let raw = rusqlite::Connection::open(dir.join(INDEX_FILE)).unwrap();
    raw.execute("DELETE FROM meta WHERE key = 'fts_merged_rows'", []).unwrap();
    let (due, done) = ix.merge_fully_if_due(Instant::now() + Duration::from_secs(120)).unwrap();
    assert!(due && done);
    let segments: Vec<u64> = ix.fts_segments().unwrap().into_iter().map(|(_, n)| n).collect();
    assert_eq!(segments, [1, 1]);
    assert_eq!(ix.check_content().unwrap(), Vec::<String>::new());
    drop(ix);
    assert_eq!(found(dir), want);
}
