//! `Store::search_hermes`: Hermes Agent's search semantics (word index with `unicode61`, trigram
//! index for CJK, substring fallback for short CJK words), the same before and after the
//! compactor indexed the messages. The differential test against Hermes' own code is in
//! bindings/python/tests (it needs hermes-agent).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tidelog::{HermesSearch, Message, MessageUpdate, SessionPatch, Store, StoreOptions};

fn msg(session: &str, role: &str, content: &str, t: f64) -> Message {
    Message {
        session_id: session.into(),
        role: role.into(),
        content: Some(content.into()),
        timestamp: t,
        ..Message::default()
    }
}

fn fill(store: &Store) {
    for (id, source) in [("a", "cli"), ("b", "telegram")] {
        store
            .upsert_session(SessionPatch { id: id.into(), source: Some(source.into()), ..SessionPatch::default() })
            .unwrap();
    }
    let long_tool_output = format!("{} needle-at-the-end", "filler words ".repeat(20_000));
    let mut tool = msg("b", "tool", &long_tool_output, 1_700_000_004.0);
    tool.tool_name = Some("terminal".into());
    let mut call = msg("b", "assistant", "", 1_700_000_005.0);
    call.content = None;
    call.tool_calls = Some(r#"[{"function":{"name":"grep","arguments":"{\"pattern\":\"zebrafish\"}"}}]"#.into());
    store
        .append_batch(vec![
            msg("a", "user", "The cat sat on the mat", 1_700_000_000.0),
            msg("a", "assistant", "Concatenate the files, then CAT them", 1_700_000_001.0),
            msg("a", "user", "Café au lait, s'il vous plaît", 1_700_000_002.0),
            msg("b", "user", "数据库迁移失败了", 1_700_000_003.0),
            tool,
            call,
            msg("b", "user", "我们 讨论 一下", 1_700_000_006.0),
        ])
        .unwrap();
}

fn search(store: &Store, q: &str) -> Vec<(String, String)> {
    let s = HermesSearch { query: q.into(), limit: 20, ..HermesSearch::default() };
    let mut hits: Vec<(String, String)> = store
        .search_hermes(&s)
        .unwrap()
        .into_iter()
        .map(|h| {
            (h.message.content.unwrap_or_default().chars().take(30).collect(), h.snippet.chars().take(60).collect())
        })
        .collect();
    hits.sort();
    hits
}

fn queries(store: &Store) -> Vec<Vec<(String, String)>> {
    [
        "cat",
        "CAT",
        "cafe",
        "concat*",
        "\"the mat\"",
        "cat NOT mat",
        "cat OR files",
        "needle-at-the-end",
        "zebrafish",
        "terminal",
        "数据库",
        "讨论",
        "a",
        "(",
        "NEAR(cat mat)",
    ]
    .iter()
    .map(|q| search(store, q))
    .collect()
}

#[test]
fn words_tokens_and_routes_like_hermes_and_the_same_before_and_after_indexing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions { run_compactor: false, ..StoreOptions::default() }).unwrap();
    fill(&store);
    let from_tail = queries(&store);
    store.close().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert!(store.wait_indexed(Duration::from_secs(30)));
    let from_index = queries(&store);
    assert_eq!(from_tail, from_index);

    let contents = |v: &Vec<(String, String)>| v.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>();
    // Whole words, any case: "cat" is not in "Concatenate".
    assert_eq!(contents(&from_index[0]), ["Concatenate the files, then CA", "The cat sat on the mat"]);
    assert_eq!(from_index[1], from_index[0]);
    assert!(from_index[0].iter().any(|(_, s)| s.contains(">>>cat<<<")), "{:?}", from_index[0]);
    // Diacritics folded by unicode61.
    assert_eq!(contents(&from_index[2]), ["Café au lait, s'il vous plaît"]);
    assert_eq!(contents(&from_index[3]), ["Concatenate the files, then CA"]);
    assert_eq!(contents(&from_index[4]), ["The cat sat on the mat"]);
    assert_eq!(contents(&from_index[5]), ["Concatenate the files, then CA"]);
    assert_eq!(from_index[6].len(), 2);
    // The whole tool output, tool-call arguments and tool names are searchable.
    assert_eq!(from_index[7].len(), 1);
    assert_eq!(from_index[8].len(), 1);
    assert_eq!(from_index[9].len(), 1);
    // CJK: trigram for three characters, substrings for two.
    assert_eq!(contents(&from_index[10]), ["数据库迁移失败了"]);
    assert_eq!(contents(&from_index[11]), ["我们 讨论 一下"]);
    // One letter is a word of its own; FTS5 syntax errors find nothing.
    assert!(from_index[12].is_empty(), "{:?}", from_index[12]);
    assert!(from_index[13].is_empty());
    // `(` and `)` are removed by the cleaning: `NEAR` is then a word.
    assert!(from_index[14].is_empty());
}

#[test]
fn history_operations_and_filters() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    fill(&store);
    assert!(store.wait_indexed(Duration::from_secs(30)));
    let cat = store.search_hermes(&HermesSearch { query: "cat".into(), limit: 10, ..HermesSearch::default() }).unwrap();
    let target = cat.iter().find(|h| h.message.role == "user").unwrap().message.num;
    // An edit in the tail changes what is found.
    store
        .update_message(MessageUpdate {
            num: target,
            session_id: "a".into(),
            content: Some("The dog sat on the mat".into()),
            ..MessageUpdate::default()
        })
        .unwrap();
    let q = |query: &str, f: &dyn Fn(&mut HermesSearch)| {
        let mut s = HermesSearch { query: query.into(), limit: 10, ..HermesSearch::default() };
        f(&mut s);
        store.search_hermes(&s).unwrap().into_iter().map(|h| h.message.session_id).collect::<Vec<_>>()
    };
    assert_eq!(q("dog", &|_| {}).len(), 1);
    assert_eq!(q("cat", &|_| {}).len(), 1);
    assert_eq!(q("filler", &|s| s.source_filter = Some(vec!["cli".into()])), Vec::<String>::new());
    assert_eq!(q("filler", &|s| s.exclude_sources = Some(vec!["cli".into()])), ["b"]);
    assert_eq!(q("sat", &|s| s.role_filter = Some(vec!["assistant".into()])), Vec::<String>::new());
    // Limit and offset.
    assert_eq!(q("the", &|s| s.limit = 1).len(), 1);
    assert_eq!(q("the", &|s| s.offset = 1).len(), q("the", &|_| {}).len() - 1);
}
