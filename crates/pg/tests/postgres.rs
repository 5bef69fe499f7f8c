//! PostgreSQL as a shared remote index, against a real server (see `common`): stores in
//! separate processes feeding one database, a shipper killed mid-stream, the server crashing
//! and restarting mid-stream, a batch applied twice, and the SQLite semantics of every entry
//! kind. Skipped with a loud message only where PostgreSQL is not installed.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{PgServer, child_env, ids_file, pg_ids, spawn_child};
use tidelog::{
    CounterDelta, DeleteSessions, Entry, Index, IndexOptions, Message, MessageUpdate, MetaSet, Rewrite, SearchQuery,
    SessionPatch, SessionRef, Store, StoreOptions,
};
use tidelog_pg::PgTarget;

fn opts(url: Option<&str>) -> StoreOptions {
    StoreOptions {
        poll_interval: Duration::from_millis(20),
        batch_max_entries: 500,
        remote: url.map(|u| Arc::new(PgTarget::new(u).unwrap()) as Arc<dyn tidelog::RemoteTarget>),
        ..StoreOptions::default()
    }
}

fn msg(session: &str, text: String) -> Message {
    Message {
        session_id: session.into(),
        role: "user".into(),
        content: Some(text),
        source: Some("test".into()),
        timestamp: 1_700_000_000.0,
        ..Message::default()
    }
}

/// Child process body: `<dir>|<url>|<store no>|<count>|<pad bytes>|<wait>`: appends `count`
/// messages, writing each acknowledged id to `acked.txt`, then (with `wait`) waits until the
/// shipper has everything, and closes.
#[test]
fn child_writer() {
    let Some(arg) = child_env() else { return };
    let parts: Vec<&str> = arg.split('|').collect();
    let (dir, url, k, n, pad, wait) =
        (parts[0], parts[1], parts[2], parts[3].parse::<usize>().unwrap(), parts[4].parse().unwrap(), parts[5] == "1");
    let store = Store::open(dir, opts(Some(url))).unwrap();
    let mut acked = std::fs::OpenOptions::new().create(true).append(true).open(ids_file(dir.as_ref())).unwrap();
    for i in 0..n {
        let text = format!("store {k} message {i} zebra{k}x{i}q common words {}", "p".repeat(pad));
        let a = store.append(msg(&format!("s{k}-{}", i % 7), text)).unwrap();
        writeln!(acked, "{}", a.id).unwrap();
    }
    acked.flush().unwrap();
    if wait {
        let deadline = Instant::now() + Duration::from_secs(60);
        while store.status().remote.and_then(|r| r.lag) != Some(0) {
            assert!(Instant::now() < deadline, "shipper did not catch up: {:?}", store.status().remote);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    store.close().unwrap();
}

fn acked(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(ids_file(dir)).unwrap_or_default().lines().map(str::to_string).collect()
}

fn store_id(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join(tidelog::STORE_ID_FILE)).unwrap().trim().to_string()
}

/// Every id exactly once, and nothing else.
fn assert_exactly(pg: &mut postgres::Client, store: &str, want: &[String]) {
    let got = pg_ids(pg, store);
    let got_set: BTreeSet<&String> = got.iter().collect();
    assert_eq!(got_set.len(), got.len(), "duplicate messages in PostgreSQL");
    let want_set: BTreeSet<&String> = want.iter().collect();
    assert_eq!(got_set, want_set, "PostgreSQL differs from the acknowledged messages");
}

#[test]
fn three_stores_in_separate_processes_one_database() {
    if child_env().is_some() {
        return;
    }
    let Some(pg) = PgServer::start() else { return };
    let url = pg.create_db("three");
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let n = 400;
    let mut children: Vec<_> = dirs
        .iter()
        .enumerate()
        .map(|(k, d)| spawn_child("child_writer", &format!("{}|{url}|{k}|{n}|0|1", d.path().display())))
        .collect();
    for c in &mut children {
        assert!(c.wait().unwrap().success(), "a writer failed");
    }
    let mut c = pg.client("three");
    let target = PgTarget::new(&url).unwrap();
    for (k, d) in dirs.iter().enumerate() {
        let ids = acked(d.path());
        assert_eq!(ids.len(), n);
        let sid = store_id(d.path());
        assert_exactly(&mut c, &sid, &ids);
        // Cross-store search finds each store's words, attributed to its store.
        let hits = target.search(&SearchQuery::new(format!("zebra{k}x17q common"))).unwrap();
        assert_eq!(hits.len(), 1, "{hits:?}");
        assert_eq!(hits[0].store_id, sid);
        assert!(hits[0].hit.snippet.contains("[zebra"), "{}", hits[0].hit.snippet);
    }
    let all = target.search(&SearchQuery { limit: 10_000, ..SearchQuery::new("common") }).unwrap();
    assert_eq!(all.len(), 3 * n);
    let stores: BTreeSet<&str> = all.iter().map(|h| h.store_id.as_str()).collect();
    assert_eq!(stores.len(), 3);
    // Every acked message found by search, exactly once.
    for d in &dirs {
        let sid = store_id(d.path());
        let mine = all.iter().filter(|h| h.store_id == sid).count();
        assert_eq!(mine, n);
    }
}

#[test]
fn shipper_killed_mid_stream_replays_exactly_once() {
    if child_env().is_some() {
        return;
    }
    let Some(pg) = PgServer::start() else { return };
    let url = pg.create_db("kill");
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_child("child_writer", &format!("{}|{url}|0|4000|2000|0", dir.path().display()));
    let mut c = pg.client("kill");
    // Kill while the shipper is part-way (some rows shipped, the writer still appending).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let shipped: i64 = c.query_one("SELECT count(*) FROM tidelog.messages", &[]).map(|r| r.get(0)).unwrap_or(0);
        if shipped > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "nothing shipped");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let shipped_before: i64 = c.query_one("SELECT count(*) FROM tidelog.messages", &[]).unwrap().get(0);
    let ids = acked(dir.path());
    assert!(!ids.is_empty());
    let sid = store_id(dir.path());
    // A new process ships the rest from the database's positions.
    let store = Store::open(dir.path(), opts(None)).unwrap();
    let target = PgTarget::new(&url).unwrap();
    let lag = store.sync_remote(&target).unwrap();
    assert_eq!(lag.lag(), 0, "{lag:?}");
    assert!(lag.problems().is_empty(), "{:?}", lag.problems());
    let journal: Vec<String> = store.all_messages(None, None).unwrap().into_iter().map(|m| m.id).collect();
    let journal_set: BTreeSet<&String> = journal.iter().collect();
    assert!(ids.iter().all(|i| journal_set.contains(i)), "an acked message is missing from the journal");
    assert_exactly(&mut c, &sid, &journal);
    // Nothing left to do: a second sync ships nothing.
    assert_eq!(store.sync_remote(&target).unwrap().shipped, 0);
    eprintln!("killed with {shipped_before} shipped of {} acked; sync shipped {}", ids.len(), lag.shipped);
    store.close().unwrap();
}

#[test]
fn postgres_crash_and_restart_mid_stream() {
    if child_env().is_some() {
        return;
    }
    let Some(pg) = PgServer::start() else { return };
    let url = pg.create_db("restart");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts(Some(&url))).unwrap();
    let mut ids = Vec::new();
    let mut append = |store: &Store, i: usize| -> Duration {
        let t = Instant::now();
        let a = store.append(msg("s", format!("message {i} restart words"))).unwrap();
        ids.push(a.id);
        t.elapsed()
    };
    for i in 0..300 {
        append(&store, i);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.status().remote.and_then(|r| r.lag) != Some(0) {
        assert!(Instant::now() < deadline, "not shipped before the crash");
        std::thread::sleep(Duration::from_millis(10));
    }
    pg.stop_immediate();
    // Appends and the local index carry on at full speed while PostgreSQL is down.
    let mut worst = Duration::ZERO;
    for i in 300..800 {
        worst = worst.max(append(&store, i));
    }
    assert!(store.wait_indexed(Duration::from_secs(20)), "local index stalled while PostgreSQL was down");
    let deadline = Instant::now() + Duration::from_secs(20);
    let down = loop {
        let st = store.status();
        let r = st.remote.clone().unwrap();
        if r.last_error.is_some() {
            break st;
        }
        assert!(Instant::now() < deadline, "no remote error reported: {r:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(down.problems.iter().any(|p| p.contains("remote index")), "{:?}", down.problems);
    assert!(worst < Duration::from_millis(500), "an append took {worst:?} while PostgreSQL was down");
    pg.start_again();
    for i in 800..900 {
        append(&store, i);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = store.status().remote.unwrap();
        if r.lag == Some(0) && r.last_error.is_none() && r.connected {
            break;
        }
        assert!(Instant::now() < deadline, "did not catch up after the restart: {r:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let sid = store.store_id().unwrap();
    assert_exactly(&mut pg.client("restart"), &sid, &ids);
    assert!(store.status().problems.is_empty(), "{:?}", store.status().problems);
    eprintln!("worst append latency while PostgreSQL was down: {worst:?}");
    store.close().unwrap();
}

/// Title, extra, ended_at, input tokens, actual cost.
type SessionRow = (Option<String>, Option<String>, Option<f64>, i64, f64);

/// A batch with every entry kind, in the order a gateway would write it.
fn mixed_batch() -> Vec<(String, u64, Entry)> {
    let m = |num: i64, s: &str, text: &str| Message { num, id: format!("m{num}"), ..msg(s, text.to_string()) };
    let entries = vec![
        Entry::Session(SessionPatch {
            id: "a".into(),
            title: Some("first".into()),
            extra: Some(r#"{"x":1,"y":{"z":2}}"#.into()),
            ..SessionPatch::default()
        }),
        Entry::Message(m(10, "a", "alpha one")),
        Entry::Message(m(11, "a", "alpha two")),
        Entry::Message(m(12, "b", "beta one")),
        Entry::Message(Message {
            content: Some("\u{0}json:[{\"type\":\"text\",\"text\":\"multimodal words\"}]".into()),
            ..m(13, "a", "")
        }),
        Entry::Update(MessageUpdate {
            num: 11,
            session_id: "a".into(),
            content: Some("alpha edited".into()),
            extra: Some(r#"{"r":1}"#.into()),
            ..MessageUpdate::default()
        }),
        Entry::Rewrite(Rewrite {
            session_id: "a".into(),
            op: 12,
            mode: 2,
            active_only: true,
            messages: vec![m(14, "a", "summary")],
            kept: vec![],
        }),
        Entry::Message(m(15, "b", "beta two")),
        Entry::Rewrite(Rewrite {
            session_id: "b".into(),
            op: 16,
            mode: 1,
            active_only: false,
            messages: vec![],
            kept: vec![],
        }),
        Entry::Session(SessionPatch {
            id: "a".into(),
            extra: Some(r#"{"y":{"w":3},"x":null}"#.into()),
            ended_at: Some(5.0),
            ..SessionPatch::default()
        }),
        Entry::Session(SessionPatch {
            id: "a".into(),
            title: Some("ignored".into()),
            fill_only: true,
            ..SessionPatch::default()
        }),
        Entry::Counters(CounterDelta {
            session_id: "a".into(),
            input_tokens: 5,
            actual_cost_usd: 0.5,
            ..CounterDelta::default()
        }),
        Entry::Counters(CounterDelta { session_id: "a".into(), input_tokens: 7, ..CounterDelta::default() }),
        Entry::Message(m(17, "c", "gamma one")),
        Entry::Delete(DeleteSessions { op: 18, sessions: vec![SessionRef { id: "c".into() }] }),
        // Reaches the index after the deletion that covers it: never indexed.
        Entry::Message(m(9, "c", "gamma late")),
        // Reaches the index after the rewrite of "b" that covers it: archived.
        Entry::Message(m(8, "b", "beta late")),
        Entry::Meta(MetaSet { key: "k".into(), value: Some("v".into()) }),
        // A duplicate id: the first one wins.
        Entry::Message(Message { content: Some("other".into()), ..m(19, "a", "") }),
        Entry::Message(Message { id: "m10".into(), ..m(20, "a", "dupe") }),
    ];
    entries.into_iter().enumerate().map(|(i, e)| ("lane-0001".to_string(), i as u64 + 1, e)).collect()
}

#[test]
fn same_batch_twice_and_the_sqlite_semantics() {
    if child_env().is_some() {
        return;
    }
    let Some(pg) = PgServer::start() else { return };
    let url = pg.create_db("semantics");
    let target = PgTarget::new(&url).unwrap();
    let batch = mixed_batch();
    let mut ix = target.open().unwrap();
    let first = ix.apply("store-a", &batch).unwrap();
    assert_eq!(first.skipped, 0);
    let again = ix.apply("store-a", &batch).unwrap();
    assert_eq!(again.skipped, batch.len() as u64, "replay must skip everything");
    assert_eq!(again.messages, 0);
    // The same batch under another store id is a different store.
    assert_eq!(ix.apply("store-b", &batch).unwrap().messages, first.messages);
    // Half a batch replayed with the rest: only the rest applies.
    let tmp = tempfile::tempdir().unwrap();
    let mut sq = Index::open(&tmp.path().join("index.db"), &IndexOptions::default()).unwrap();
    let sq_stats = sq.apply_batch(&batch[..7]).unwrap();
    let sq_rest = sq.apply_batch(&batch).unwrap();
    assert_eq!(first.messages, sq_stats.messages + sq_rest.messages);
    assert_eq!(first.duplicate_messages, sq_stats.duplicate_messages + sq_rest.duplicate_messages);

    let mut c = pg.client("semantics");
    for session in ["a", "b", "c"] {
        let want: Vec<(String, Option<String>, bool, bool)> =
            sq.history(session).unwrap().into_iter().map(|(m, s)| (m.id, m.content, s.active, s.compacted)).collect();
        let got: Vec<(String, Option<String>, bool, bool)> = c
            .query(
                "SELECT id, content, active, compacted FROM tidelog.messages WHERE store = 'store-a' AND session_id = $1 ORDER BY rid",
                &[&session],
            )
            .unwrap()
            .iter()
            .map(|r| {
                let content: Option<Vec<u8>> = r.get(1);
                (r.get(0), content.map(|b| String::from_utf8(b).unwrap()), r.get(2), r.get(3))
            })
            .collect();
        assert_eq!(got, want, "session {session}");
        let want_s = sq.get_session(session).unwrap();
        let got_s: Option<SessionRow> = c
            .query_opt(
                "SELECT title, extra, ended_at, input_tokens, actual_cost_usd FROM tidelog.sessions WHERE store = 'store-a' AND id = $1",
                &[&session],
            )
            .unwrap()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)));
        let want_s =
            want_s.map(|s| (s.title, s.extra, s.ended_at, s.counters.input_tokens, s.counters.actual_cost_usd));
        // `extra` is the same JSON object; key order may differ (serde_json vs SQLite json_patch).
        let json = |s: &Option<String>| s.as_deref().map(|t| serde_json::from_str::<serde_json::Value>(t).unwrap());
        let norm = |v: Option<SessionRow>| v.map(|(t, e, end, i, c)| (t, json(&e), end, i, c));
        assert_eq!(norm(got_s), norm(want_s), "session {session}");
    }
    // Search sees the multimodal text, the edit, and archived messages only when asked.
    let hits = target.search_stores(&SearchQuery::new("multimodal"), Some("store-a")).unwrap();
    assert_eq!(hits.len(), 1);
    assert!(hits[0].hit.message.content.as_deref().unwrap().starts_with('\u{0}'));
    assert_eq!(target.search_stores(&SearchQuery::new("alpha edited"), Some("store-a")).unwrap().len(), 1);
    assert!(target.search_stores(&SearchQuery::new("beta"), Some("store-a")).unwrap().is_empty());
    let q = SearchQuery { include_inactive: true, ..SearchQuery::new("beta") };
    assert_eq!(target.search_stores(&q, Some("store-a")).unwrap().len(), 3);
    assert_eq!(target.search(&q).unwrap().len(), 6, "both stores");
    let sq_hits = sq.search(&q).unwrap();
    assert_eq!(sq_hits.len(), 3);
    assert!(target.search(&SearchQuery::new("gamma")).unwrap().is_empty(), "deleted session found");
}

#[test]
fn watermark_ahead_of_the_journal_is_loud_and_never_reapplied() {
    if child_env().is_some() {
        return;
    }
    let Some(pg) = PgServer::start() else { return };
    let url = pg.create_db("ahead");
    let target = PgTarget::new(&url).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts(None)).unwrap();
    for i in 0..10 {
        store.append(msg("s", format!("before {i}"))).unwrap();
    }
    assert_eq!(store.sync_remote(&target).unwrap().shipped, 10);
    // As if this journal were lost and recreated: the database is ahead of it.
    let mut c = pg.client("ahead");
    c.execute("UPDATE tidelog.applied SET lsn = lsn + 100", &[]).unwrap();
    store.append(msg("s", "after the loss".into())).unwrap();
    let lag = store.sync_remote(&target).unwrap();
    assert_eq!(lag.shipped, 0);
    assert!(lag.lanes.iter().any(|l| l.ahead));
    assert!(lag.problems().iter().any(|p| p.contains("ahead") || p.contains("lost")), "{:?}", lag.problems());
    store.close().unwrap();
    // The background shipper reports it in the status and does not ship that lane.
    let store = Store::open(dir.path(), opts(Some(&url))).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = store.status();
        if st.problems.iter().any(|p| p.contains("journal was lost")) {
            break;
        }
        assert!(Instant::now() < deadline, "not reported: {:?}", st.problems);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(pg_ids(&mut c, &store.store_id().unwrap()).len(), 10);
    store.close().unwrap();
}
