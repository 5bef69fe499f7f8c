//! A session id used again after its deletion keeps what was written after the deletion and
//! nothing from before (docs/design.md "One order"): title, system prompt, counters and
//! messages, read from the journal tail, from the index whichever lane it applied first, and
//! after a rebuild.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use tidelog::{
    CounterDelta, Entry, INDEX_FILE, Index, IndexOptions, Message, Session, SessionPatch, Store, StoreOptions,
};
use tidelog_journal::{Journal, Options};

fn opts() -> StoreOptions {
    StoreOptions { run_compactor: false, ..StoreOptions::default() }
}

fn msg(session: &str, content: &str) -> Message {
    Message { session_id: session.into(), role: "user".into(), content: Some(content.into()), ..Message::default() }
}

/// Writes, from two processes' lanes: the old life of session `s` in lane A, its deletion, then
/// its new life in lane B.
fn write(dir: &Path) -> (String, String) {
    let a = Store::open(dir, opts()).unwrap();
    let b = Store::open(dir, opts()).unwrap();
    a.upsert_session(SessionPatch {
        id: "s".into(),
        source: Some("old-source".into()),
        title: Some("old title".into()),
        extra: Some(r#"{"system_prompt":"old secret prompt"}"#.into()),
        ..SessionPatch::default()
    })
    .unwrap();
    a.add_counters(CounterDelta { session_id: "s".into(), input_tokens: 5, ..CounterDelta::default() }).unwrap();
    a.append(msg("s", "old message")).unwrap();
    a.delete_sessions(&["s"], false).unwrap();
    b.append(msg("s", "new message")).unwrap();
    b.upsert_session(SessionPatch { id: "s".into(), model: Some("new-model".into()), ..SessionPatch::default() })
        .unwrap();
    b.add_counters(CounterDelta { session_id: "s".into(), input_tokens: 3, ..CounterDelta::default() }).unwrap();
    let lanes = (a.lane().to_string(), b.lane().to_string());
    a.close().unwrap();
    b.close().unwrap();
    lanes
}

fn check(store: &Store, when: &str) {
    let s: Session = store.get_session("s").unwrap().unwrap_or_else(|| panic!("{when}: session gone"));
    assert_eq!(s.title, None, "{when}");
    assert_eq!(s.model.as_deref(), Some("new-model"), "{when}");
    assert!(s.extra.as_deref().is_none_or(|e| !e.contains("secret")), "{when}: {:?}", s.extra);
    assert_eq!(s.counters.input_tokens, 3, "{when}");
    let contents: Vec<String> = store.messages("s").unwrap().into_iter().filter_map(|m| m.content).collect();
    assert_eq!(contents, ["new message"], "{when}");
    let listed = store.list_sessions(&tidelog::SessionFilter::default()).unwrap();
    assert_eq!(listed.len(), 1, "{when}");
    assert_eq!(listed[0].title, None, "{when}");
    assert_eq!(listed[0].counters.input_tokens, 3, "{when}");
    assert_eq!(store.message_counts().unwrap().get("s"), Some(&1), "{when}");
}

fn entries(dir: &Path, lane: &str) -> Vec<(String, u64, Entry)> {
    let j = Journal::open_read_only(dir.join(tidelog::LANES_DIR).join(lane), Options::default()).unwrap();
    j.iter_from(1)
        .map(|r| {
            let r = r.unwrap();
            (lane.to_string(), r.lsn, tidelog::decode_entry(&r.payload).unwrap())
        })
        .collect()
}

#[test]
fn reused_session_id_keeps_only_what_followed_the_deletion() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let (lane_a, lane_b) = write(&dir);

    // From the journal alone.
    let store = Store::open(&dir, opts()).unwrap();
    check(&store, "journal tail");
    store.close().unwrap();

    // The index applies lane B (the new life) before lane A (the old life and the deletion), as
    // a compactor may; then half-way (only lane B) the tail holds the deletion.
    let mut ix = Index::open(&dir.join(INDEX_FILE), &IndexOptions::default()).unwrap();
    ix.apply_batch(&entries(&dir, &lane_b)).unwrap();
    drop(ix);
    let store = Store::open(&dir, opts()).unwrap();
    check(&store, "index with lane B, tail with lane A");
    store.close().unwrap();
    let mut ix = Index::open(&dir.join(INDEX_FILE), &IndexOptions::default()).unwrap();
    ix.apply_batch(&entries(&dir, &lane_a)).unwrap();
    drop(ix);
    let store = Store::open(&dir, opts()).unwrap();
    check(&store, "index, lane B applied first");
    store.close().unwrap();

    // A rebuild applies the lanes in their own order.
    tidelog::ops::rebuild_index_in_place(&dir, "test", &mut |_, _, _| {}).unwrap();
    let store = Store::open(&dir, opts()).unwrap();
    check(&store, "rebuilt index");
    store.close().unwrap();

    // The erase pass removes the old life from the journal too (the session was recreated, so
    // only positions tell the old title and prompt from the new writes), and the reads stay.
    let report = tidelog::ops::erase_store(&dir, None).unwrap();
    assert!(report.is_complete(), "{report:?}");
    for needle in ["old secret prompt", "old title", "old message"] {
        let found = grep(&dir, needle.as_bytes());
        assert!(found.is_empty(), "{needle} still in {found:?}");
    }
    let store = Store::open(&dir, opts()).unwrap();
    check(&store, "after the erase pass");
    store.close().unwrap();
}

/// Files under `dir` holding `needle` (read by a separate process: this one has no SQLite
/// connection on them then, but plain reads beside SQLite connections drop its locks).
fn grep(dir: &Path, needle: &[u8]) -> Vec<String> {
    let out = std::process::Command::new("grep")
        .args(["-r", "-l", "-a", "-F", "--", std::str::from_utf8(needle).unwrap()])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}
