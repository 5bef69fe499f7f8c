//! One history across processes (docs/design.md "One order"): real processes share one store and
//! their writes are checked against a linearizable model.
//!
//! The test binary re-runs itself as writer children (3 at a time on one store folder). Each
//! child runs a seeded random mix of appends (plain, and with client ids shared between the
//! children), session deletions, clears (`rewrite` Delete with no messages), unique titles and
//! counters, and prints for every operation a start line (with the host's monotonic clock) before
//! it and an acknowledgement line (with the position the store gave it: the message id, or the
//! op) after it returned. The parent SIGKILLs one child per round at a random moment and starts a
//! replacement. Then it checks, from a store opened without a compactor (reads from the journal
//! tails) and again after the index caught up and after a rebuild:
//!
//! - O1 real-time order: an operation that started after another was acknowledged (in any
//!   process) has a larger position;
//! - O2 no acknowledged write lost: every acknowledged message no acknowledged deletion covers
//!   is read back exactly once; one an acknowledged deletion covers is gone; a message appended
//!   after a deletion returned is never covered by it;
//! - O3 session order is the order of positions, and `message_counts` equals the messages read;
//! - O4 a client id is stored once, whichever processes wrote it;
//! - O5 titles stay unique;
//! - O6 reads are the same before compaction, after it, and after `rebuild-index`.
//!
//! Knobs: `TIDELOG_ORDER_ROUNDS` (default 3), `TIDELOG_ORDER_OPS` (operations per child,
//! default 150), `TIDELOG_ORDER_SEED`.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tidelog::{Message, RewriteMode, Store, StoreOptions};
use tidelog_tests::Rng;

const TEST_NAME: &str = "processes_share_one_order";
const ENV_CHILD: &str = "TIDELOG_ORDER_CHILD";
const ENV_TAG: &str = "TIDELOG_ORDER_TAG";
const ENV_SEED: &str = "TIDELOG_ORDER_CHILD_SEED";
const ENV_OPS: &str = "TIDELOG_ORDER_CHILD_OPS";
const SESSIONS: u64 = 4;
/// Sessions written with client ids (never deleted: de-duplication is checked there).
const KEYED_SESSIONS: u64 = 2;

fn now_ns() -> u128 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u128 * 1_000_000_000 + t.tv_nsec as u128
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn opts(run_compactor: bool) -> StoreOptions {
    StoreOptions { run_compactor, poll_interval: Duration::from_millis(5), ..StoreOptions::default() }
}

/// The child: runs its operations, one start and one acknowledgement line each.
fn child(dir: &str) {
    let tag = std::env::var(ENV_TAG).unwrap();
    let mut rng = Rng::new(env_u64(ENV_SEED, 1));
    let ops = env_u64(ENV_OPS, 80);
    let store = Store::open(dir, opts(true)).unwrap();
    let say = |line: String| println!("{line}");
    for i in 0..ops {
        let op = format!("{tag}-{i}");
        let s = format!("s{}", rng.below(SESSIONS));
        match rng.below(100) {
            0..=59 => {
                say(format!("S {op} append {s} {}", now_ns()));
                let m = Message {
                    session_id: s.clone(),
                    role: "user".into(),
                    content: Some(format!("op {op}")),
                    ..Message::default()
                };
                let a = store.append(m).unwrap();
                say(format!("A {op} {} {}", a.num.unwrap(), now_ns()));
            }
            60..=71 => {
                let k = format!("k{}", rng.below(KEYED_SESSIONS));
                let id = format!("client-{k}-{}", rng.below(12));
                say(format!("S {op} keyed {k} {} {id}", now_ns()));
                let m = Message {
                    id: id.clone(),
                    session_id: k,
                    role: "user".into(),
                    content: Some(format!("op {op}")),
                    ..Message::default()
                };
                let a = store.append(m).unwrap();
                say(format!("A {op} {} {}", a.num.unwrap_or(0), now_ns()));
            }
            72..=79 => {
                say(format!("S {op} delete {s} {}", now_ns()));
                store.delete_sessions(&[&s], false).unwrap();
                say(format!("A {op} 0 {}", now_ns()));
            }
            80..=87 => {
                say(format!("S {op} clear {s} {}", now_ns()));
                store.rewrite(&s, RewriteMode::Delete, false, Vec::new()).unwrap();
                say(format!("A {op} 0 {}", now_ns()));
            }
            88..=95 => {
                let t = format!("title-{}", rng.below(3));
                say(format!("S {op} title {s} {}", now_ns()));
                match store.set_title(&s, Some(&t)) {
                    Ok(_) => say(format!("A {op} 0 {}", now_ns())),
                    Err(tidelog::Error::TitleTaken { .. }) => say(format!("E {op} taken {}", now_ns())),
                    Err(e) => panic!("{e}"),
                }
            }
            96..=97 => {
                // Hermes' create_session: fills what is still empty, never overwrites.
                let patch = tidelog::SessionPatch {
                    id: s.clone(),
                    source: Some(tag.clone()),
                    model: Some(op.clone()),
                    fill_only: true,
                    ..tidelog::SessionPatch::default()
                };
                store.upsert_session(patch).unwrap();
            }
            98 => {
                let d = tidelog::CounterDelta { session_id: s.clone(), input_tokens: 1, ..Default::default() };
                store.add_counters(d).unwrap();
            }
            _ => {
                let _ = store.end_session(&s, "done");
            }
        }
    }
    store.close().unwrap();
}

#[derive(Debug, Clone)]
struct Op {
    id: String,
    kind: String,
    session: String,
    start: u128,
    /// Acknowledgement: (position, time). `None` if the process was killed during it.
    ack: Option<(i64, u128)>,
    client_id: Option<String>,
    /// When the process that ran it was reaped (for operations never acknowledged).
    dead_at: u128,
}

fn parse(out: &str, dead_at: u128, ops: &mut Vec<Op>) {
    let mut by_id: HashMap<String, usize> = HashMap::new();
    for line in out.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        match f.as_slice() {
            ["S", op, kind, session, start, rest @ ..] => {
                by_id.insert(op.to_string(), ops.len());
                ops.push(Op {
                    id: op.to_string(),
                    kind: kind.to_string(),
                    session: session.to_string(),
                    start: start.parse().unwrap(),
                    ack: None,
                    client_id: rest.first().map(|s| s.to_string()),
                    dead_at,
                });
            }
            ["A", op, pos, end] => {
                let i = by_id[*op];
                ops[i].ack = Some((pos.parse().unwrap(), end.parse().unwrap()));
            }
            ["E", op, _, _] => {
                // A refused title: nothing written; drop it.
                let i = by_id[*op];
                ops[i].kind = "refused".into();
                ops[i].ack = Some((0, 0));
            }
            _ if line.trim().is_empty() => {}
            // A line cut by the kill.
            _ => {}
        }
    }
}

fn spawn(dir: &Path, tag: &str, seed: u64, ops: u64) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1", "-q"])
        .env(ENV_CHILD, dir)
        .env(ENV_TAG, tag)
        .env(ENV_SEED, seed.to_string())
        .env(ENV_OPS, ops.to_string())
        .env("RUST_LOG", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

fn finish(mut c: Child, ops: &mut Vec<Op>, killed: bool) {
    let mut out = String::new();
    c.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let status = c.wait().unwrap();
    assert!(killed || status.success(), "child failed: {status}");
    parse(&out, now_ns(), ops);
}

/// Everything a reader sees of the messages, for comparisons.
fn snapshot(store: &Store, sessions: &[String]) -> BTreeMap<String, Vec<(i64, String)>> {
    sessions
        .iter()
        .map(|s| {
            let v = store.messages(s).unwrap().into_iter().map(|m| (m.num, m.content.unwrap_or_default())).collect();
            (s.clone(), v)
        })
        .collect()
}

/// Everything a reader sees of the sessions (order-sensitive fields included).
fn sessions_seen(store: &Store) -> Vec<String> {
    let mut v: Vec<String> = store
        .list_sessions(&tidelog::SessionFilter::default())
        .unwrap()
        .into_iter()
        .map(|s| format!("{} {:?} {:?} {:?} {}", s.id, s.title, s.source, s.model, s.counters.input_tokens))
        .collect();
    v.sort();
    v
}

fn check(dir: &Path, ops: &[Op], round: u64) {
    let acked: Vec<&Op> = ops.iter().filter(|o| o.ack.is_some() && o.kind != "refused").collect();
    // O1: an operation started after another was acknowledged has a larger position.
    let mut positioned: Vec<(u128, i64, &str)> = acked
        .iter()
        .filter(|o| matches!(o.kind.as_str(), "append") || (o.kind == "keyed" && o.ack.unwrap().0 > 0))
        .map(|o| (o.ack.unwrap().1, o.ack.unwrap().0, o.id.as_str()))
        .collect();
    positioned.sort();
    for o in acked.iter().filter(|o| o.kind == "append") {
        let pos = o.ack.unwrap().0;
        let before = positioned.partition_point(|(end, _, _)| *end < o.start);
        if let Some((_, p, other)) = positioned[..before].iter().max_by_key(|(_, p, _)| *p) {
            assert!(pos > *p, "round {round}: {} started after {other} returned but got {pos} <= {p}", o.id);
        }
    }

    let store = Store::open(dir, opts(false)).unwrap();
    let mut sessions: Vec<String> = (0..SESSIONS).map(|i| format!("s{i}")).collect();
    sessions.extend((0..KEYED_SESSIONS).map(|i| format!("k{i}")));
    let read = snapshot(&store, &sessions);
    // O2: every acknowledged message is read back exactly once unless an acknowledged deletion
    // covers it. A deletion's op is not printed: it is bounded by real time. A message
    // acknowledged before the deletion started is covered; one started after it returned is not;
    // concurrent ones may go either way.
    let by_content: HashMap<&str, (&String, i64)> = read
        .iter()
        .flat_map(|(s, v)| v.iter().map(move |(num, c)| (c.strip_prefix("op ").unwrap_or(c), (s, *num))))
        .collect();
    let mut counted: HashMap<&str, usize> = HashMap::new();
    for v in read.values() {
        for (_, c) in v {
            *counted.entry(c.as_str()).or_default() += 1;
        }
    }
    assert!(counted.values().all(|&n| n == 1), "round {round}: a message read twice");
    let deletions: Vec<&Op> = ops.iter().filter(|o| matches!(o.kind.as_str(), "delete" | "clear")).collect();
    for m in acked.iter().filter(|o| o.kind == "append") {
        let (_, m_end) = m.ack.unwrap();
        let mut must_be_gone = false;
        let mut may_be_gone = false;
        for d in deletions.iter().filter(|d| d.session == m.session) {
            // The deletion's op was taken between its start and its end (or the death of its
            // process when it was never acknowledged).
            let d_end = d.ack.map_or(d.dead_at, |a| a.1);
            if m_end < d.start && d.ack.is_some() {
                must_be_gone = true;
            } else if m_end < d.start || m.start < d_end {
                may_be_gone = true;
            }
        }
        let found = by_content.contains_key(m.id.as_str());
        if must_be_gone {
            assert!(!found, "round {round}: {} was deleted but is read back", m.id);
        } else if !may_be_gone {
            assert!(found, "round {round}: acknowledged {} ({}) is lost", m.id, m.session);
        }
    }
    // Nothing that was never written comes back.
    for c in by_content.keys() {
        assert!(ops.iter().any(|o| o.id == *c), "round {round}: unknown message {c}");
    }
    // O3: session order is the order of positions; counts match the reads.
    for (s, v) in &read {
        assert!(v.windows(2).all(|w| w[0].0 < w[1].0), "round {round}: {s} is not in id order");
    }
    let counts = store.message_counts().unwrap();
    for (s, v) in &read {
        assert_eq!(counts.get(s).copied().unwrap_or(0), v.len() as u64, "round {round}: count of {s}");
    }
    // O4: a client id is stored once, and stored if anyone was told it was.
    let keyed: BTreeSet<&str> = acked.iter().filter_map(|o| o.client_id.as_deref()).collect();
    for k in 0..KEYED_SESSIONS {
        let ids: Vec<String> = store.messages(&format!("k{k}")).unwrap().into_iter().map(|m| m.id).collect();
        let distinct: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
        assert_eq!(distinct.len(), ids.len(), "round {round}: a client id stored twice in k{k}");
        for id in keyed.iter().filter(|id| id.starts_with(&format!("client-k{k}-"))) {
            assert!(distinct.contains(id), "round {round}: acknowledged client id {id} missing");
        }
    }
    // O5: titles are unique.
    let mut titles = BTreeSet::new();
    for s in store.list_sessions(&tidelog::SessionFilter::default()).unwrap() {
        if let Some(t) = s.title {
            assert!(titles.insert(t.clone()), "round {round}: title {t} given twice");
        }
    }
    let seen = sessions_seen(&store);
    drop(store);
    // O6: the same reads once the index holds everything, and after a rebuild.
    let store = Store::open(dir, opts(true)).unwrap();
    assert!(store.wait_indexed(Duration::from_secs(30)), "round {round}: the index did not catch up");
    assert_eq!(snapshot(&store, &sessions), read, "round {round}: reads changed once indexed");
    assert_eq!(store.message_counts().unwrap(), counts, "round {round}: counts changed once indexed");
    assert_eq!(sessions_seen(&store), seen, "round {round}: sessions changed once indexed");
    store.close().unwrap();
    tidelog::ops::rebuild_index_in_place(dir, "test", &mut |_, _, _| {}).unwrap();
    let store = Store::open(dir, opts(false)).unwrap();
    assert_eq!(snapshot(&store, &sessions), read, "round {round}: reads changed after a rebuild");
    assert_eq!(sessions_seen(&store), seen, "round {round}: sessions changed after a rebuild");
    store.close().unwrap();
}

#[test]
fn processes_share_one_order() {
    if let Ok(dir) = std::env::var(ENV_CHILD) {
        child(&dir);
        return;
    }
    let rounds = env_u64("TIDELOG_ORDER_ROUNDS", 3);
    let per_child = env_u64("TIDELOG_ORDER_OPS", 150);
    let seed = env_u64("TIDELOG_ORDER_SEED", 0x5eed_0de7);
    let mut rng = Rng::new(seed);
    for round in 0..rounds {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let mut ops = Vec::new();
        let mut children: Vec<Child> =
            (0..3).map(|c| spawn(&dir, &format!("r{round}c{c}"), rng.next_u64(), per_child)).collect();
        // One child is killed at a random moment and replaced.
        std::thread::sleep(Duration::from_millis(rng.range(5, 120)));
        let mut victim = children.remove(rng.below(3) as usize);
        // SIGKILL (std's kill on Unix); an error means it already exited.
        let _ = victim.kill();
        finish(victim, &mut ops, true);
        children.push(spawn(&dir, &format!("r{round}c3"), rng.next_u64(), per_child));
        for c in children {
            finish(c, &mut ops, false);
        }
        eprintln!(
            "round {round}: {} operations, {} acknowledged",
            ops.len(),
            ops.iter().filter(|o| o.ack.is_some()).count()
        );
        check(&dir, &ops, round);
    }
}

/// The sequence file is a cache: lost, zeroed or torn (a power cut drops the mapping's unsynced
/// increments), the first process to open the store again continues above every id the lanes
/// hold, so no id is ever given twice; ids of a new store start at 1.
#[test]
fn a_lost_sequence_never_repeats_an_id() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let m = |c: &str| Message {
        session_id: "s".into(),
        role: "user".into(),
        content: Some(c.into()),
        ..Message::default()
    };
    let store = Store::open(&dir, opts(false)).unwrap();
    let first = store.append(m("a")).unwrap().num.unwrap();
    assert_eq!(first, 1, "a new store's ids start at 1");
    let op = store.rewrite("s", RewriteMode::Delete, false, vec![m("b")]).unwrap();
    assert_eq!(op[0].num, Some(3), "the clear took 2, its message 3");
    store.close().unwrap();
    let seq = dir.join(tidelog::SEQUENCE_FILE);
    for damage in [None, Some(vec![0u8; 64]), Some(b"TLSEQ".to_vec())] {
        match &damage {
            None => std::fs::remove_file(&seq).unwrap(),
            Some(bytes) => std::fs::write(&seq, bytes).unwrap(),
        }
        let store = Store::open(&dir, opts(false)).unwrap();
        let all = store.all_messages(None, None).unwrap();
        let max = all.iter().map(|m| m.num).max().unwrap();
        let next = store.append(m("after")).unwrap().num.unwrap();
        assert!(next > max, "{damage:?}: {next} <= {max}");
        store.close().unwrap();
    }
    // Two handles (as two processes) share one counter.
    let a = Store::open(&dir, opts(false)).unwrap();
    let b = Store::open(&dir, opts(false)).unwrap();
    let x = a.append(m("x")).unwrap().num.unwrap();
    let y = b.append(m("y")).unwrap().num.unwrap();
    let z = a.append(m("z")).unwrap().num.unwrap();
    assert_eq!((y, z), (x + 1, x + 2));
}
