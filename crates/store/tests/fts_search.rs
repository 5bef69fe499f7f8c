//! FTS5 queries (`QuerySyntax::Fts5`, the default) find the same messages whether the journal
//! answers (compactor held back: the evaluator) or the index does (FTS5 itself), with FTS5's
//! meaning: capitals-only operators, phrases, NEAR, column filters, short phrases matching
//! nothing; invalid queries are refused with FTS5's message.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tidelog::{Error, FtsError, Message, SearchQuery, Store, StoreOptions};

/// (query, expected ids).
const QUERIES: &[(&str, &[&str])] = &[
    ("kangaroo", &["m0", "m1"]),
    ("KANGAROO", &["m0", "m1"]),
    ("\"the kangaroo jumps\"", &["m0"]),
    ("kangaroo jumps", &["m0"]),
    ("kangaroo NOT again", &["m0"]),
    ("kangaroo not again", &[]),
    ("kangaroo OR crème", &["m0", "m1", "m2"]),
    ("kangaroo or crème", &[]),
    ("CRÈME", &["m2"]),
    ("ka", &[]),
    ("ka kangaroo", &["m0", "m1"]),
    // Distances count trigram tokens: "kangaroo" is 6 of them, "jumps" starts 9 after it.
    ("NEAR(kangaroo again, 3)", &["m1"]),
    ("NEAR(kangaroo again, 2)", &[]),
    ("NEAR(kangaroo jumps, 3)", &["m0"]),
    ("NEAR(kangaroo jumps)", &["m0"]),
    ("^the", &["m0"]),
    ("^kangaroo", &["m1"]),
    ("shell_exec", &["tool"]),
    ("tool_name:shell", &["tool"]),
    ("body:shell", &[]),
    ("-tool_name:exit", &["tool"]),
    ("-body:exit", &[]),
    ("{body tool_name}:exit", &["tool"]),
    ("\"chat-send\"", &["m3"]),
    ("数据库", &["m4"]),
    ("数据", &[]),
    ("early_word", &["tool"]),
    // Past the trigram part of a long tool output: whole words (the word index), not substrings,
    // and only in a query of bare words.
    ("late_word", &["tool"]),
    ("ate_wor", &[]),
    ("\"late_word\"", &[]),
    ("late_word OR kangaroo", &["m0", "m1"]),
    ("picture", &["mm"]),
    ("image_url", &[]),
    ("abc", &["nul"]),
    ("(kangaroo OR crème) NOT jumps", &["m1", "m2"]),
    ("kangaroo NOT jumps again", &["m0", "m1"]),
    ("kangaroo NOT jumps AND again", &["m1"]),
];

fn msg(id: &str, session: &str, role: &str, content: &str) -> Message {
    Message {
        id: id.into(),
        session_id: session.into(),
        role: role.into(),
        content: Some(content.into()),
        timestamp: 1000.0,
        ..Message::default()
    }
}

fn corpus() -> Vec<Message> {
    let mut tool = msg("tool", "s-tools", "tool", &format!("exit 0 early_word {} late_word", "x".repeat(9000)));
    tool.tool_name = Some("shell_exec".into());
    let multimodal = r#"[{"type":"text","text":"a picture of a boat"},{"type":"image_url","image_url":{"url":"x"}}]"#;
    vec![
        msg("m0", "s0", "user", "the kangaroo jumps"),
        msg("m1", "s1", "assistant", "kangaroo again, and again"),
        msg("m2", "s0", "user", "café crème"),
        msg("m3", "s1", "user", "run chat-send --force now"),
        msg("m4", "s2", "user", "我们讨论数据库索引"),
        msg("nul", "s2", "user", "a\u{0}bc"),
        msg("mm", "s2", "user", &format!("\u{0}json:{multimodal}")),
        tool,
    ]
}

fn hits(store: &Store, q: &str) -> Vec<String> {
    let mut v: Vec<String> = store
        .search(&SearchQuery { limit: 100, include_inactive: true, ..SearchQuery::new(q) })
        .unwrap()
        .into_iter()
        .map(|h| h.message.id)
        .collect();
    v.sort();
    v
}

fn check(store: &Store, when: &str) {
    for (q, want) in QUERIES {
        assert_eq!(hits(store, q), *want, "{when}: {q:?}");
    }
    let h = store.search(&SearchQuery::new("kangaroo jumps")).unwrap();
    assert_eq!(h.len(), 1);
    assert!(h[0].snippet.contains("[kangaroo]") && h[0].snippet.contains("[jumps]"), "{when}: {}", h[0].snippet);
    let h = store.search(&SearchQuery::new("tool_name:shell")).unwrap();
    assert!(h[0].snippet.contains("[shell]"), "{when}: {}", h[0].snippet);
    // Refused with FTS5's message.
    match store.search(&SearchQuery::new("chat-send")) {
        Err(Error::Query(e @ FtsError::NoSuchColumn { .. })) => assert_eq!(e.to_string(), "no such column: send"),
        other => panic!("{when}: {other:?}"),
    }
    match store.search(&SearchQuery::new("what's up?")) {
        Err(Error::Query(e)) => assert_eq!(e.to_string(), "fts5: syntax error near \"'\""),
        other => panic!("{when}: {other:?}"),
    }
    assert!(matches!(store.search(&SearchQuery::new(" \t")), Err(Error::EmptyQuery)));
    // Literal words still work.
    assert_eq!(store.search(&SearchQuery::words("chat-send")).unwrap().len(), 1);
    assert_eq!(store.search(&SearchQuery::words("ka")).unwrap().len(), 2, "{when}: short words scan");
}

#[test]
fn fts5_queries_answer_the_same_from_journal_and_index() {
    let dir = tempfile::tempdir().unwrap();
    let held = Store::open(dir.path(), StoreOptions { run_compactor: false, ..StoreOptions::default() }).unwrap();
    for m in corpus() {
        held.append(m).unwrap();
    }
    assert!(held.status().unindexed > 0);
    check(&held, "from the journal");
    held.close().unwrap();

    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert!(store.wait_indexed(Duration::from_secs(30)));
    assert_eq!(store.status().unindexed, 0);
    check(&store, "from the index");
    let scored = store.search(&SearchQuery::new("kangaroo")).unwrap();
    assert!(scored.iter().all(|h| h.score > 0.0), "bm25 scores from the index");
    assert!(store.status().problems.is_empty(), "{:?}", store.status().problems);
    store.close().unwrap();
}

/// The compactor keeps the full-text indexes merged when idle: after batches that each made a
/// segment, both tables end in one segment each, and search finds the same messages.
#[test]
fn the_compactor_merges_the_full_text_indexes_when_idle() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions { poll_interval: Duration::from_millis(5), ..StoreOptions::default() };
    let store = Store::open(dir.path(), opts).unwrap();
    for b in 0..8 {
        let msgs: Vec<Message> = (0..200)
            .map(|i| Message {
                id: format!("m{b}-{i}"),
                session_id: format!("s{b}"),
                role: "user".into(),
                content: Some(format!("batch {b} message {i} mentions a pelican")),
                ..Message::default()
            })
            .collect();
        store.append_batch(msgs).unwrap();
        assert!(store.wait_indexed(Duration::from_secs(30)));
    }
    let ix = tidelog::Index::open_read_only(&dir.path().join(tidelog::INDEX_FILE), &tidelog::IndexOptions::default())
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let segments: Vec<u64> = ix.fts_segments().unwrap().into_iter().map(|(_, n)| n).collect();
        if segments == [1, 1] {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still {segments:?} segments");
        std::thread::sleep(Duration::from_millis(20));
    }
    let q = SearchQuery { limit: 2000, ..SearchQuery::new("pelican") };
    assert_eq!(store.search(&q).unwrap().len(), 1600);
    store.close().unwrap();
}
