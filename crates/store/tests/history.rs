//! History operations: every one is visible at once (from the journal), after the compactor
//! applied it (from the index), and after the index was rebuilt from the journal, with the same
//! answers each time; deleted content leaves the index file.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use tidelog::ops::rebuild_index_in_place;
use tidelog::{
    CounterDelta, Error, HistoryQuery, INDEX_FILE, Message, MessageUpdate, RewriteMode, SearchQuery, SessionFilter,
    SessionPatch, Store, StoreOptions,
};

fn opts(compactor: bool) -> StoreOptions {
    StoreOptions { run_compactor: compactor, poll_interval: Duration::from_millis(5), ..StoreOptions::default() }
}

fn msg(session: &str, role: &str, text: &str) -> Message {
    Message { session_id: session.into(), role: role.into(), content: Some(text.into()), ..Message::default() }
}

/// A session as compared: id, title, end, input tokens, estimated cost.
type SessionRow = (String, Option<String>, Option<f64>, i64, f64);

/// Everything a reader can ask, in a comparable form.
#[derive(Debug, PartialEq)]
struct Snapshot {
    messages: Vec<Vec<(String, String, i64)>>,
    history: Vec<Vec<(String, bool, bool)>>,
    searches: Vec<Vec<String>>,
    sessions: Vec<SessionRow>,
    counts: Vec<(String, u64)>,
    meta: Vec<(String, String)>,
}

const SESSIONS: [&str; 4] = ["a", "b", "c", "c-child"];

fn snapshot(store: &Store) -> Snapshot {
    let messages = SESSIONS
        .iter()
        .map(|s| store.messages(s).unwrap().into_iter().map(|m| (m.id, m.content.unwrap_or_default(), m.num)).collect())
        .collect();
    let history = SESSIONS
        .iter()
        .map(|s| {
            let q = HistoryQuery { include_inactive: true, include_compacted: true, ..HistoryQuery::new(*s) };
            store.history(&q).unwrap().into_iter().map(|h| (h.message.id, h.state.active, h.state.compacted)).collect()
        })
        .collect();
    let searches = ["secret", "kept", "summary", "edited", "archived"]
        .iter()
        .flat_map(|w| {
            [false, true].map(|inactive| {
                let q = SearchQuery { include_inactive: inactive, limit: 100, ..SearchQuery::new(*w) };
                let mut ids: Vec<String> = store.search(&q).unwrap().into_iter().map(|h| h.message.id).collect();
                ids.sort();
                ids
            })
        })
        .collect();
    let sessions = store
        .list_sessions(&SessionFilter::default())
        .unwrap()
        .into_iter()
        .map(|s| (s.id, s.title, s.ended_at, s.counters.input_tokens, s.counters.estimated_cost_usd))
        .collect();
    let counts = store.message_counts().unwrap().into_iter().collect();
    let meta = store.all_meta().unwrap().into_iter().collect();
    Snapshot { messages, history, searches, sessions, counts, meta }
}

/// Runs every kind of operation; returns the integer ids given, in append order.
fn workload(store: &Store) -> Vec<i64> {
    let mut nums = Vec::new();
    for s in SESSIONS {
        store
            .upsert_session(SessionPatch {
                id: s.into(),
                source: Some("cli".into()),
                started_at: Some(1.0),
                parent_session_id: (s == "c-child").then(|| "c".into()),
                ..SessionPatch::default()
            })
            .unwrap();
        for i in 0..4 {
            let a = store.append(msg(s, "user", &format!("{s} message {i} kept secret-{s}"))).unwrap();
            nums.push(a.num.unwrap());
        }
    }
    // Replace: the old messages of "a" are deleted, two new ones added.
    let added = store
        .rewrite(
            "a",
            RewriteMode::Delete,
            true,
            vec![msg("a", "user", "a new one kept"), msg("a", "assistant", "reply")],
        )
        .unwrap();
    nums.extend(added.iter().map(|x| x.num.unwrap()));
    // Archive then add: "b"'s first messages are hidden, searchable only when asked.
    store.append(msg("b", "user", "archived soon")).unwrap();
    store.rewrite("b", RewriteMode::Archive, true, vec![]).unwrap();
    nums.push(store.append(msg("b", "user", "after the archive kept")).unwrap().num.unwrap());
    // Compact: "c" keeps its rows searchable, a summary takes their place.
    store.rewrite("c", RewriteMode::Compact, true, vec![msg("c", "system", "summary of c")]).unwrap();
    let c: Vec<String> = store.messages("c").unwrap().into_iter().filter_map(|m| m.content).collect();
    assert_eq!(c, ["summary of c"]);
    let hits =
        store.search(&SearchQuery { session_id: Some("c".into()), ..SearchQuery::new(r#""secret-c""#) }).unwrap();
    assert_eq!(hits.len(), 4, "compacted messages stay searchable");
    assert!(hits.iter().all(|h| h.state.compacted && !h.state.active));
    // Update a message of "b".
    let target = store.messages("b").unwrap().into_iter().last().unwrap();
    store
        .update_message(MessageUpdate {
            num: target.num,
            session_id: "b".into(),
            content: Some("edited text".into()),
            extra: Some(r#"{"reactions":["👍"]}"#.into()),
            ..MessageUpdate::default()
        })
        .unwrap();
    // Counters, titles, end and reopen, metadata.
    for _ in 0..3 {
        store
            .add_counters(CounterDelta {
                session_id: "b".into(),
                input_tokens: 10,
                estimated_cost_usd: 0.25,
                ..CounterDelta::default()
            })
            .unwrap();
    }
    store.set_title("b", Some("Boat")).unwrap();
    assert!(matches!(store.set_title("a", Some("Boat")), Err(Error::TitleTaken { .. })));
    store.end_session("a", "done").unwrap();
    store.reopen_session("a").unwrap();
    store.set_meta("k1", Some("v1")).unwrap();
    store.set_meta("k2", Some("v2")).unwrap();
    store.set_meta("k2", None).unwrap();
    // Delete "c" with its child: gone everywhere.
    let gone = store.delete_sessions(&["c"], true).unwrap();
    assert_eq!(gone, vec!["c".to_string(), "c-child".to_string()]);
    nums
}

fn check_answers(s: &Snapshot) {
    // "a": two new messages only.
    assert_eq!(s.messages[0].iter().map(|m| m.1.as_str()).collect::<Vec<_>>(), ["a new one kept", "reply"]);
    // "b": the archived ones hidden, the last one edited.
    assert_eq!(s.messages[1].iter().map(|m| m.1.as_str()).collect::<Vec<_>>(), ["edited text"]);
    assert_eq!(s.history[1].iter().filter(|h| !h.1).count(), 5, "{:?}", s.history[1]);
    // "c" and its child: deleted.
    assert!(s.messages[2].is_empty() && s.messages[3].is_empty() && s.history[2].is_empty());
    assert!(s.sessions.iter().all(|x| x.0 != "c" && x.0 != "c-child"));
    // Searches: "secret" finds only b's archived rows, and only when asked.
    assert!(s.searches[0].is_empty(), "{:?}", s.searches[0]);
    assert_eq!(s.searches[1].len(), 4);
    // Pairs per word: (active and compacted only, archived too).
    assert!(s.searches[4].is_empty() && s.searches[5].is_empty(), "c was deleted: {:?}", &s.searches[4..6]);
    assert_eq!((s.searches[6].len(), s.searches[7].len()), (1, 1), "edited: {:?}", &s.searches[6..8]);
    assert!(s.searches[8].is_empty() && s.searches[9].len() == 1, "archived: {:?}", &s.searches[8..10]);
    let b = s.sessions.iter().find(|x| x.0 == "b").unwrap();
    assert_eq!((b.1.as_deref(), b.3, b.4), (Some("Boat"), 30, 0.75));
    let a = s.sessions.iter().find(|x| x.0 == "a").unwrap();
    assert_eq!(a.2, None, "reopened");
    assert_eq!(s.counts, vec![("a".to_string(), 2), ("b".to_string(), 1)]);
    assert_eq!(s.meta, vec![("k1".to_string(), "v1".to_string())]);
}

fn contains(path: &Path, needle: &[u8]) -> bool {
    std::fs::read(path).map(|b| b.windows(needle.len()).any(|w| w == needle)).unwrap_or(false)
}

#[test]
fn operations_read_the_same_from_journal_index_and_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    // 1. No compactor: every answer comes from the journal.
    let store = Store::open(dir.path(), opts(false)).unwrap();
    let nums = workload(&store);
    assert!(nums.windows(2).all(|w| w[0] < w[1]), "integer ids increase in append order: {nums:?}");
    let from_journal = snapshot(&store);
    check_answers(&from_journal);
    store.close().unwrap();

    // 2. The compactor applies everything: answers from the index.
    let store = Store::open(dir.path(), opts(true)).unwrap();
    assert!(store.wait_indexed(Duration::from_secs(30)));
    assert!(store.status().problems.is_empty(), "{:?}", store.status().problems);
    let from_index = snapshot(&store);
    assert_eq!(from_index, from_journal);
    // Ids keep increasing after a reopen.
    let next = store.append(msg("a", "user", "after reopen")).unwrap().num.unwrap();
    assert!(next > *nums.last().unwrap());
    store.rewrite("a", RewriteMode::Delete, false, vec![]).unwrap();
    assert!(store.messages("a").unwrap().is_empty());
    store.close().unwrap();

    // Deleted content left the index file (FTS5 secure-delete, SQLite secure_delete, checkpoint).
    for s in ["secret-c", "secret-a", "summary of c"] {
        for f in [INDEX_FILE, "index.db-wal"] {
            assert!(!contains(&dir.path().join(f), s.as_bytes()), "{s} still in {f}");
        }
    }

    // 3. A rebuild from the journal gives the same answers.
    let store = Store::open(dir.path(), opts(false)).unwrap();
    let before = snapshot(&store);
    store.close().unwrap();
    let mut progress = |_: &str, _: u64, _: u64| {};
    rebuild_index_in_place(dir.path(), "test", &mut progress).unwrap();
    let store = Store::open(dir.path(), opts(false)).unwrap();
    assert_eq!(store.status().unindexed, 0);
    assert_eq!(snapshot(&store), before);
    store.close().unwrap();
}

#[test]
fn history_pages_by_integer_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts(true)).unwrap();
    let nums: Vec<i64> =
        (0..10).map(|i| store.append(msg("s", "user", &format!("m{i}"))).unwrap().num.unwrap()).collect();
    let page =
        |q: HistoryQuery| -> Vec<i64> { store.history(&q).unwrap().into_iter().map(|h| h.message.num).collect() };
    assert_eq!(page(HistoryQuery::new("s")), nums);
    assert_eq!(page(HistoryQuery { limit: Some(3), ..HistoryQuery::new("s") }), nums[..3]);
    assert_eq!(page(HistoryQuery { limit: Some(3), latest: true, ..HistoryQuery::new("s") }), nums[7..]);
    assert_eq!(page(HistoryQuery { after_id: Some(nums[5]), ..HistoryQuery::new("s") }), nums[6..]);
    assert!(store.wait_indexed(Duration::from_secs(30)));
    assert_eq!(page(HistoryQuery { after_id: Some(nums[5]), limit: Some(2), ..HistoryQuery::new("s") }), nums[6..8]);
    store.close().unwrap();
}

/// The disagreements issue 21 found have one answer everywhere (docs/design.md "One fold rule"):
/// an edit names a session and applies only within it (and the API refuses one that names no
/// message of that session), and a retried rewrite never removes what its first attempt added.
#[test]
fn one_fold_rule_for_edits_and_retried_rewrites() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts(false)).unwrap();
    let m = store.append(msg("a", "user", "original")).unwrap().num.unwrap();
    let edit = |num: i64, session: &str| {
        store.update_message(MessageUpdate {
            num,
            session_id: session.into(),
            content: Some("edited".into()),
            ..MessageUpdate::default()
        })
    };
    assert!(matches!(edit(m, "b"), Err(Error::NotFound { .. })), "an edit naming another session");
    assert!(matches!(edit(m + 1000, "a"), Err(Error::NotFound { .. })), "an edit of no message");
    edit(m, "a").unwrap();

    let old = store.append(msg("r", "user", "before the rewrite")).unwrap().num.unwrap();
    let summary = Message { id: "client-summary".into(), ..msg("r", "assistant", "summary") };
    for mode in [RewriteMode::Delete, RewriteMode::Archive] {
        let first = store.rewrite("r", mode, false, vec![summary.clone()]).unwrap();
        let again = store.rewrite("r", mode, false, vec![summary.clone()]).unwrap();
        assert!(again[0].num.is_none(), "the retry skipped its message as a duplicate");
        if mode == RewriteMode::Delete {
            assert!(first[0].num.is_some());
        }
    }
    let read = |store: &Store| -> Vec<(i64, String, bool)> {
        let q = HistoryQuery { include_inactive: true, include_compacted: true, ..HistoryQuery::new("r") };
        store.history(&q).unwrap().into_iter().map(|h| (h.message.num, h.message.id, h.state.active)).collect()
    };
    let from_journal = read(&store);
    // The summary stays active through both retries; the message before them is gone.
    assert_eq!(from_journal.len(), 1, "{from_journal:?}");
    assert_eq!((from_journal[0].1.as_str(), from_journal[0].2), ("client-summary", true));
    assert!(from_journal.iter().all(|(n, ..)| *n != old));
    let a = store.messages("a").unwrap();
    store.close().unwrap();

    let store = Store::open(dir.path(), opts(true)).unwrap();
    assert!(store.wait_indexed(Duration::from_secs(30)));
    assert_eq!(read(&store), from_journal, "index");
    assert_eq!(store.messages("a").unwrap(), a, "index");
    store.close().unwrap();
    rebuild_index_in_place(dir.path(), "test", &mut |_, _, _| {}).unwrap();
    let store = Store::open(dir.path(), opts(false)).unwrap();
    assert_eq!(read(&store), from_journal, "rebuilt index");
    assert_eq!(store.messages("a").unwrap()[0].content.as_deref(), Some("edited"));
    store.close().unwrap();
}

/// An update entry naming the wrong session (as a journal written before issue 21 may hold) is
/// applied by the index only within that session, as reads of the tail do.
#[test]
fn the_index_applies_an_edit_only_within_its_session() {
    let dir = tempfile::tempdir().unwrap();
    let mut ix = tidelog::Index::open(&dir.path().join("i.db"), &tidelog::IndexOptions::default()).unwrap();
    let m = Message { num: 7, id: "m".into(), ..msg("a", "user", "original") };
    let wrong = MessageUpdate { num: 7, session_id: "b".into(), content: Some("edited".into()), ..Default::default() };
    ix.apply_batch(&[
        ("lane-0001".into(), 1, tidelog::Entry::Message(m)),
        ("lane-0001".into(), 2, tidelog::Entry::Update(wrong)),
    ])
    .unwrap();
    let got = ix.history("a").unwrap();
    assert_eq!(got[0].0.content.as_deref(), Some("original"));
}
