//! Real process kills (sled's `test_crash_recovery.rs` shape).
//!
//! The test binary re-runs itself as writer children: each child opens the store (claiming a
//! lane; one of them runs the compactor), several threads append messages with unique ids, and
//! every id is printed on stdout as soon as its append returns. The parent starts 1–3 children
//! on the same folder per cycle and SIGKILLs each at a seeded random moment (a few to ~100 ms
//! after start, or a few ms after its first acknowledgement) — while they open and recover,
//! append, rotate segments and while the compactor is mid-batch (small batches and a backlog
//! left by the checks keep it busy). After each cycle it checks:
//!
//! - I1: every acknowledged id is read back exactly once (`Store::all_messages`), and no id is
//!   stored twice in the journals;
//! - I3: per lane, the journal is a gap-free LSN sequence from its first LSN;
//! - I5: opening a lane a second time reports a clean recovery;
//!
//! and every `I6_EVERY` cycles I6: after `wait_indexed`, the index holds exactly the ids the
//! journals hold and a search for a message's unique token finds that message.
//!
//! Knobs: `TIDELOG_KILL_CYCLES` (default 200), `TIDELOG_KILL_SEED`.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tidelog::{Entry, INDEX_FILE, Index, IndexOptions, LANES_DIR, Message, SearchQuery, Store, StoreOptions};
use tidelog_journal::{Journal, Options};
use tidelog_tests::Rng;

const TEST_NAME: &str = "kill_children_at_random_moments";
const ENV_CHILD: &str = "TIDELOG_KILL_CHILD";
const ENV_TAG: &str = "TIDELOG_KILL_TAG";
const ENV_THREADS: &str = "TIDELOG_KILL_THREADS";
const SEGMENT: u64 = 32 * 1024;
/// Cycles per store folder (a fresh folder keeps the checks cheap).
const CYCLES_PER_STORE: u64 = 25;
/// I6 (index equals journal) every this many cycles, and at the end of each folder.
const I6_EVERY: u64 = 3;

fn store_opts(run_compactor: bool) -> StoreOptions {
    StoreOptions {
        segment_size: SEGMENT,
        run_compactor,
        batch_max_entries: 40,
        poll_interval: Duration::from_millis(10),
        ..StoreOptions::default()
    }
}

fn journal_opts() -> Options {
    Options { segment_size: SEGMENT, ..Options::default() }
}

fn token(id: &str) -> String {
    format!("zq{id}qz")
}

/// What message `id` says (`{tag}t{thread}i{n}`): every fourth one is a tool output of a few KB
/// (one in forty of 20 KB)
/// (compressed in the journal, its text kept only there, its token past the trigram index's
/// part), the others a short line.
fn body(id: &str) -> (String, bool) {
    let i: usize = id.rsplit('i').next().and_then(|n| n.parse().ok()).unwrap_or(0);
    if i % 4 == 3 {
        // One in 40 above 16 KiB: written as it is, compressed in place once its segment is
        // sealed (the compactor's idle pass, killed at random moments too).
        let n = if i % 40 == 39 { 600 } else { 40 + i % 50 };
        let lines: String = (0..n).map(|k| format!("{k:04} step of a build finished ok\n")).collect();
        (format!("{lines}message {} from a tool", token(id)), true)
    } else {
        (format!("message {} from a writer {}", token(id), "x".repeat(i % 200)), false)
    }
}

/// The child: append until killed, reporting every acknowledged id.
fn child(dir: &str) {
    let tag = std::env::var(ENV_TAG).unwrap();
    let threads: usize = std::env::var(ENV_THREADS).unwrap().parse().unwrap();
    let store = Arc::new(Store::open(dir, store_opts(true)).unwrap());
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (store, out, tag) = (Arc::clone(&store), Arc::clone(&out), tag.clone());
            std::thread::spawn(move || {
                let mk = |i: usize| {
                    let id = format!("{tag}t{t}i{i}");
                    let (text, tool) = body(&id);
                    Message {
                        session_id: format!("s{}", i % 3),
                        role: if tool { "tool" } else { "user" }.into(),
                        tool_name: tool.then(|| "build".into()),
                        content: Some(text),
                        id,
                        ..Message::default()
                    }
                };
                let mut i = 0;
                // Killed long before this; the bound only guards against an orphan.
                while started.elapsed() < Duration::from_secs(30) {
                    let ids: Vec<String> = if i % 5 == 4 {
                        let batch: Vec<Message> = (i..i + 3).map(mk).collect();
                        i += 3;
                        store.append_batch(batch).unwrap().into_iter().map(|a| a.id).collect()
                    } else {
                        i += 1;
                        vec![store.append(mk(i - 1)).unwrap().id]
                    };
                    let mut o = out.lock().unwrap();
                    let line: String = ids.iter().map(|id| format!("ACK {id}\n")).collect();
                    o.write_all(line.as_bytes()).unwrap();
                    o.flush().unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

struct Running {
    child: Child,
    acks: Arc<Mutex<Vec<String>>>,
    reader: JoinHandle<()>,
    stderr: JoinHandle<String>,
    spawned: Instant,
    /// Kill this long after spawning, or (if `after_first_ack`) after the first ack.
    delay: Duration,
    after_first_ack: bool,
}

fn spawn_child(dir: &Path, tag: &str, threads: u64, delay: Duration, after_first_ack: bool) -> Running {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads", "1"])
        .env(ENV_CHILD, dir)
        .env(ENV_TAG, tag)
        .env(ENV_THREADS, threads.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let acks = Arc::new(Mutex::new(Vec::new()));
    let stdout = child.stdout.take().unwrap();
    let reader = {
        let acks = Arc::clone(&acks);
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            // Only whole lines count: a kill may cut nothing inside one (a small pipe write is
            // atomic), but be strict anyway.
            while r.read_line(&mut line).unwrap_or(0) > 0 {
                if let Some(id) = line.strip_prefix("ACK ").and_then(|l| l.strip_suffix('\n')) {
                    acks.lock().unwrap().push(id.to_string());
                }
                line.clear();
            }
        })
    };
    let mut err = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    Running { child, acks, reader, stderr, spawned: Instant::now(), delay, after_first_ack }
}

fn lane_dirs(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join(LANES_DIR))
        .map(|rd| rd.map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// I5 then I3: every lane reopens cleanly the second time, and reads as a gap-free sequence.
/// Returns every message id in the journals, with its count.
fn check_lanes(dir: &Path) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    for lane in lane_dirs(dir) {
        drop(Journal::open(&lane, journal_opts()).unwrap_or_else(|e| panic!("{}: {e}", lane.display())));
        let j = Journal::open(&lane, journal_opts()).unwrap();
        let rep = j.recovery_report();
        assert!(rep.is_clean(), "I5: second open of {} not clean: {:?}", lane.display(), rep.problems);
        let (first, last) = (j.first_lsn(), j.last_lsn());
        let mut expect = first;
        for r in j.iter_from(first) {
            let r = r.unwrap_or_else(|e| panic!("I3: {} unreadable: {e}", lane.display()));
            assert_eq!(r.lsn, expect, "I3: gap in {}", lane.display());
            expect += 1;
            if let Ok(Entry::Message(m)) = tidelog::decode_entry(&r.payload) {
                *ids.entry(m.id).or_insert(0) += 1;
            } else {
                panic!("record {} of {} does not decode", r.lsn, lane.display());
            }
        }
        assert_eq!(expect, last + 1, "I3: {} ends at {} but reports last LSN {last}", lane.display(), expect - 1);
        j.close().unwrap();
    }
    ids
}

/// I1: every acknowledged id is read back exactly once. Returns whether the index was behind
/// the journals (the compactor was killed with work to do).
fn check_acked(dir: &Path, acked: &BTreeSet<String>, journal_ids: &BTreeMap<String, usize>) -> bool {
    let dups: Vec<_> = journal_ids.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "I1: ids stored twice in the journals: {dups:?}");
    let store = Store::open(dir, store_opts(false)).unwrap();
    let read = store.all_messages(None, None).unwrap();
    let read_ids: BTreeSet<String> = read.iter().map(|m| m.id.clone()).collect();
    assert_eq!(read_ids.len(), read.len(), "I1: a message is read twice");
    for m in &read {
        assert_eq!(m.content.as_deref(), Some(body(&m.id).0.as_str()), "I1: the text of {} reads back changed", m.id);
    }
    let missing: Vec<_> = acked.difference(&read_ids).take(5).collect();
    assert!(missing.is_empty(), "I1: acknowledged but missing: {missing:?}");
    let journal_set: BTreeSet<String> = journal_ids.keys().cloned().collect();
    assert_eq!(read_ids, journal_set, "reads and journals disagree");
    let behind = store.status().unindexed > 0;
    store.close().unwrap();
    behind
}

/// I6: the index holds exactly the journal's ids, and a unique token finds its message.
fn check_index(dir: &Path, journal_ids: &BTreeMap<String, usize>, probe: Option<&String>) {
    let store = Store::open(dir, store_opts(true)).unwrap();
    assert!(store.wait_indexed(Duration::from_secs(60)), "I6: index did not catch up: {:?}", store.status());
    let st = store.status();
    assert!(st.problems.is_empty(), "I6: {:?}", st.problems);
    let ix = Index::open_read_only(&dir.join(INDEX_FILE), &IndexOptions::default()).unwrap();
    let indexed = ix.message_ids().unwrap();
    let set: BTreeSet<String> = indexed.iter().cloned().collect();
    assert_eq!(set.len(), indexed.len(), "I6: duplicate rows");
    let journal_set: BTreeSet<String> = journal_ids.keys().cloned().collect();
    assert_eq!(set, journal_set, "I6: index and journals disagree");
    // And a long tool output's token, which is past the trigram index's part: the word index.
    let long = journal_ids.keys().find(|id| body(id).1);
    for id in probe.into_iter().chain(long) {
        let hits = ix.search(&SearchQuery::new(token(id))).unwrap();
        let ids: Vec<&str> = hits.iter().map(|h| h.message.id.as_str()).collect();
        assert_eq!(ids, [id.as_str()], "I6: search for the token of {id}");
    }
    store.close().unwrap();
}

#[test]
fn kill_children_at_random_moments() {
    if let Ok(dir) = std::env::var(ENV_CHILD) {
        child(&dir);
        return;
    }
    let cycles: u64 = std::env::var("TIDELOG_KILL_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let seed: u64 = std::env::var("TIDELOG_KILL_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x6c6f_6762);
    println!("kill test: {cycles} cycles, seed {seed} (TIDELOG_KILL_SEED)");
    let mut rng = Rng::new(seed);
    let started = Instant::now();
    let root = tempfile::tempdir().unwrap();
    let mut dir = root.path().join("store-0");
    let mut acked = BTreeSet::new();
    let (mut kills, mut acks_total, mut i6_checks, mut no_ack_kills, mut index_behind) =
        (0u64, 0usize, 0u64, 0u64, 0u64);
    for cycle in 0..cycles {
        if cycle > 0 && cycle % CYCLES_PER_STORE == 0 {
            dir = root.path().join(format!("store-{}", cycle / CYCLES_PER_STORE));
            acked.clear();
        }
        let n = 1 + rng.below(3);
        let mut running: Vec<Running> = (0..n)
            .map(|k| {
                let threads = 1 + rng.below(3);
                let delay = Duration::from_millis(2 + rng.below(100));
                let after_first_ack = rng.below(3) == 0;
                spawn_child(&dir, &format!("c{cycle}p{k}"), threads, delay, after_first_ack)
            })
            .collect();
        let mut first_ack: Vec<Option<Instant>> = vec![None; running.len()];
        let mut killed = vec![false; running.len()];
        while killed.iter().any(|k| !k) {
            for (k, r) in running.iter_mut().enumerate() {
                if killed[k] {
                    continue;
                }
                if r.child.try_wait().unwrap().is_some() {
                    // Exited by itself (a failed append or open panics): reported below.
                    killed[k] = true;
                    continue;
                }
                if first_ack[k].is_none() && !r.acks.lock().unwrap().is_empty() {
                    first_ack[k] = Some(Instant::now());
                }
                let due = if r.after_first_ack {
                    // Bounded: a child that never acknowledges is killed anyway.
                    first_ack[k].map_or(r.spawned.elapsed() >= Duration::from_secs(3), |t| t.elapsed() >= r.delay / 4)
                } else {
                    r.spawned.elapsed() >= r.delay
                };
                if due {
                    r.child.kill().unwrap(); // SIGKILL
                    killed[k] = true;
                    kills += 1;
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        for r in running {
            let mut child = r.child;
            let status = child.wait().unwrap();
            r.reader.join().unwrap();
            let err = r.stderr.join().unwrap();
            assert!(status.code().is_none(), "child exited with {status} instead of being killed: {err}");
            let acks = std::mem::take(&mut *r.acks.lock().unwrap());
            if acks.is_empty() {
                no_ack_kills += 1;
            }
            acks_total += acks.len();
            acked.extend(acks);
        }
        let journal_ids = check_lanes(&dir);
        index_behind += u64::from(check_acked(&dir, &acked, &journal_ids));
        let last_of_store = (cycle + 1) % CYCLES_PER_STORE == 0 || cycle + 1 == cycles;
        if (cycle + 1) % I6_EVERY == 0 || last_of_store {
            let probe = acked.iter().nth(rng.below(acked.len().max(1) as u64) as usize);
            check_index(&dir, &journal_ids, probe);
            i6_checks += 1;
        }
    }
    println!(
        "kill test: {cycles} cycles, {kills} kills ({no_ack_kills} before any ack), {acks_total} acknowledged appends, \
         {i6_checks} I6 checks, {index_behind} cycles ended with the index behind, {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert!(acks_total > 0);
}
