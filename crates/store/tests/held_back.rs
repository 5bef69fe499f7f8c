//! With the compactor held back (`run_compactor: false`), every acknowledged message is still
//! read and found: reads answer from the journal. Once a compactor indexes everything, the
//! answers are the same. (Literal words, `QuerySyntax::Words`; `fts_search.rs` does the same
//! for FTS5 queries.)
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tidelog::{Message, SearchQuery, SessionFilter, SessionPatch, Store, StoreOptions};

const QUERIES: &[&str] = &[
    "kangaroo",
    "ka",
    "é",
    r#""quoted phrase""#,
    "chat-send",
    "--force",
    "*.rs",
    "this OR that",
    "NEAR(a",
    "shell_exec",
    "数据库",
];

fn corpus() -> Vec<Message> {
    let texts = [
        "the kangaroo jumps",
        r#"she said "quoted phrase" twice"#,
        "run chat-send --force now",
        "glob src/*.rs files",
        "this OR that",
        "call NEAR(a b)",
        "café crème",
        "我们讨论数据库索引",
        "kangaroo again, with ka and more",
    ];
    let mut out = Vec::new();
    for (i, t) in texts.iter().enumerate() {
        out.push(Message {
            id: format!("m{i}"),
            session_id: format!("s{}", i % 3),
            role: if i % 2 == 0 { "user".into() } else { "assistant".into() },
            content: Some((*t).into()),
            timestamp: 1000.0 + i as f64,
            ..Message::default()
        });
    }
    out.push(Message {
        id: "tool".into(),
        session_id: "s-tools".into(),
        role: "tool".into(),
        tool_name: Some("shell_exec".into()),
        content: Some("exit 0".into()),
        timestamp: 2000.0,
        ..Message::default()
    });
    out
}

/// (name, ids) pairs: query text and its hits, or session and its messages.
type Named = Vec<(String, Vec<String>)>;

/// Search hits per query, listed sessions, messages per session.
fn snapshot(store: &Store) -> (Named, Vec<String>, Named) {
    let searches = QUERIES
        .iter()
        .map(|q| {
            let mut ids: Vec<String> = store
                .search(&SearchQuery { limit: 100, ..SearchQuery::words(*q) })
                .unwrap()
                .into_iter()
                .map(|h| h.message.id)
                .collect();
            ids.sort();
            (q.to_string(), ids)
        })
        .collect();
    let sessions: Vec<String> =
        store.list_sessions(&SessionFilter::default()).unwrap().into_iter().map(|s| s.id).collect();
    let msgs =
        sessions.iter().map(|s| (s.clone(), store.messages(s).unwrap().into_iter().map(|m| m.id).collect())).collect();
    (searches, sessions, msgs)
}

#[test]
fn reads_before_and_after_indexing_agree() {
    let dir = tempfile::tempdir().unwrap();
    let held = Store::open(dir.path(), StoreOptions { run_compactor: false, ..StoreOptions::default() }).unwrap();
    held.upsert_session(SessionPatch {
        id: "s-explicit".into(),
        title: Some("Boat trip".into()),
        source: Some("telegram".into()),
        started_at: Some(500.0),
        ..SessionPatch::default()
    })
    .unwrap();
    let msgs = corpus();
    let n = msgs.len();
    for m in msgs {
        held.append(m).unwrap();
    }
    let st = held.status();
    assert!(!st.compactor.running_here);
    assert_eq!(st.unindexed, n as u64 + 1, "nothing indexed while held back");

    let before = snapshot(&held);
    let (searches, sessions, per_session) = &before;
    let hit = |q: &str| searches.iter().find(|(x, _)| x == q).unwrap().1.clone();
    assert_eq!(hit("kangaroo"), ["m0", "m8"]);
    assert_eq!(hit("ka"), ["m0", "m8"], "two letters");
    assert_eq!(hit("é"), ["m6"], "one letter");
    assert_eq!(hit(r#""quoted phrase""#), ["m1"]);
    assert_eq!(hit("chat-send"), ["m2"]);
    assert_eq!(hit("--force"), ["m2"]);
    assert_eq!(hit("*.rs"), ["m3"]);
    assert_eq!(hit("this OR that"), ["m4"]);
    assert_eq!(hit("NEAR(a"), ["m5"]);
    assert_eq!(hit("shell_exec"), ["tool"], "tool names are searchable");
    assert_eq!(hit("数据库"), ["m7"]);
    let mut sorted = sessions.clone();
    sorted.sort();
    assert_eq!(sorted, ["s-explicit", "s-tools", "s0", "s1", "s2"]);
    let total: usize = per_session.iter().map(|(_, v)| v.len()).sum();
    assert_eq!(total, n);
    let explicit = held.get_session("s-explicit").unwrap().unwrap();
    assert_eq!(explicit.title.as_deref(), Some("Boat trip"));
    let implicit = held.get_session("s1").unwrap().unwrap();
    assert_eq!(implicit.started_at, Some(1001.0));
    assert!(held.get_session("nope").unwrap().is_none());
    held.close().unwrap();

    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert!(store.wait_indexed(Duration::from_secs(30)));
    let st = store.status();
    assert_eq!(st.unindexed, 0);
    assert!(st.compactor.entries_applied >= n as u64, "{:?}", st.compactor);
    assert!(st.problems.is_empty(), "{:?}", st.problems);
    let after = snapshot(&store);
    assert_eq!(before, after);
    assert_eq!(store.get_session("s-explicit").unwrap().unwrap(), explicit);
    assert_eq!(store.get_session("s1").unwrap().unwrap().started_at, Some(1001.0));
    store.close().unwrap();
}
