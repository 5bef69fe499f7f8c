//! Property test: random sequences of every history operation against a plain in-memory model.
//! The store must give the model's answers read from the journal alone (no compactor), from the
//! index once the compactor applied everything, after a rebuild of the index from the journal,
//! and after an erase pass rewrote the journal. Knob: `PROPTEST_CASES` (default 24).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use tidelog::ops::{erase_store, rebuild_index_in_place};
use tidelog::{HistoryQuery, Message, MessageUpdate, RewriteMode, SearchQuery, Store, StoreOptions};

const SESSIONS: [&str; 3] = ["s0", "s1", "s2"];

#[derive(Debug, Clone)]
enum Op {
    Append { s: usize, n: usize },
    Rewrite { s: usize, mode: u8, active_only: bool, add: usize },
    Delete { s: usize },
    Update { s: usize, pick: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, 1..4usize).prop_map(|(s, n)| Op::Append { s, n }),
        2 => (0..3usize, 0..3u8, any::<bool>(), 0..3usize)
            .prop_map(|(s, mode, active_only, add)| Op::Rewrite { s, mode, active_only, add }),
        1 => (0..3usize).prop_map(|s| Op::Delete { s }),
        1 => (0..3usize, 0..8usize).prop_map(|(s, pick)| Op::Update { s, pick }),
    ]
}

/// (content, active, compacted) per message, in append order.
type Model = BTreeMap<&'static str, Vec<(i64, String, bool, bool)>>;

fn msg(s: &str, text: String) -> Message {
    Message { session_id: s.into(), role: "user".into(), content: Some(text), ..Message::default() }
}

fn run(store: &Store, ops: &[Op]) -> Model {
    let mut model: Model = SESSIONS.iter().map(|s| (*s, Vec::new())).collect();
    let mut word = 0;
    let mut next = |prefix: &str| {
        word += 1;
        format!("{prefix} zq{word:04}x")
    };
    for op in ops {
        match *op {
            Op::Append { s, n } => {
                let msgs: Vec<Message> = (0..n).map(|_| msg(SESSIONS[s], next("said"))).collect();
                let texts: Vec<String> = msgs.iter().map(|m| m.content.clone().unwrap()).collect();
                let acks = store.append_batch(msgs).unwrap();
                for (a, t) in acks.iter().zip(texts) {
                    model.get_mut(SESSIONS[s]).unwrap().push((a.num.unwrap(), t, true, false));
                }
            }
            Op::Rewrite { s, mode, active_only, add } => {
                let mode = [RewriteMode::Delete, RewriteMode::Archive, RewriteMode::Compact][mode as usize];
                let msgs: Vec<Message> = (0..add).map(|_| msg(SESSIONS[s], next("new"))).collect();
                let texts: Vec<String> = msgs.iter().map(|m| m.content.clone().unwrap()).collect();
                let acks = store.rewrite(SESSIONS[s], mode, active_only, msgs).unwrap();
                let v = model.get_mut(SESSIONS[s]).unwrap();
                v.retain_mut(|m| {
                    if active_only && !m.2 {
                        return true;
                    }
                    match mode {
                        RewriteMode::Delete => false,
                        RewriteMode::Archive => {
                            m.2 = false;
                            true
                        }
                        RewriteMode::Compact => {
                            m.2 = false;
                            m.3 = true;
                            true
                        }
                    }
                });
                for (a, t) in acks.iter().zip(texts) {
                    v.push((a.num.unwrap(), t, true, false));
                }
            }
            Op::Delete { s } => {
                store.delete_sessions(&[SESSIONS[s]], false).unwrap();
                model.get_mut(SESSIONS[s]).unwrap().clear();
            }
            Op::Update { s, pick } => {
                let v = model.get_mut(SESSIONS[s]).unwrap();
                if v.is_empty() {
                    continue;
                }
                let i = pick % v.len();
                let text = next("edited");
                store
                    .update_message(MessageUpdate {
                        num: v[i].0,
                        session_id: SESSIONS[s].into(),
                        content: Some(text.clone()),
                        ..MessageUpdate::default()
                    })
                    .unwrap();
                v[i].1 = text;
            }
        }
    }
    model
}

fn check(store: &Store, model: &Model, phase: &str) {
    for s in SESSIONS {
        let q = HistoryQuery { include_inactive: true, include_compacted: true, ..HistoryQuery::new(s) };
        let got: Vec<(i64, String, bool, bool)> = store
            .history(&q)
            .unwrap()
            .into_iter()
            .map(|h| (h.message.num, h.message.content.unwrap_or_default(), h.state.active, h.state.compacted))
            .collect();
        assert_eq!(&got, &model[s], "{phase}: history of {s}");
        let active: Vec<String> = store.messages(s).unwrap().into_iter().filter_map(|m| m.content).collect();
        let want: Vec<String> = model[s].iter().filter(|m| m.2).map(|m| m.1.clone()).collect();
        assert_eq!(active, want, "{phase}: messages of {s}");
        // Every message's own word finds it iff it is visible (active or compacted), archived
        // ones too when asked.
        for (num, text, active, compacted) in &model[s] {
            let w = text.split_whitespace().last().unwrap();
            let hits = store.search(&SearchQuery { session_id: Some(s.into()), ..SearchQuery::new(w) }).unwrap();
            assert_eq!(hits.iter().any(|h| h.message.num == *num), *active || *compacted, "{phase}: search {w}");
        }
    }
}

fn opts(compactor: bool) -> StoreOptions {
    StoreOptions {
        run_compactor: compactor,
        poll_interval: Duration::from_millis(2),
        erase_within: Duration::from_secs(3600),
        segment_size: 16 << 10,
        ..StoreOptions::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24),
        ..ProptestConfig::default()
    })]

    #[test]
    fn history_operations_match_the_model(ops in proptest::collection::vec(op(), 1..25)) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), opts(false)).unwrap();
        let model = run(&store, &ops);
        check(&store, &model, "journal only");
        store.close().unwrap();

        let store = Store::open(dir.path(), opts(true)).unwrap();
        assert!(store.wait_indexed(Duration::from_secs(30)));
        check(&store, &model, "index");
        store.close().unwrap();

        rebuild_index_in_place(dir.path(), "test", &mut |_, _, _| {}).unwrap();
        let store = Store::open(dir.path(), opts(false)).unwrap();
        check(&store, &model, "rebuilt index");
        store.close().unwrap();

        let rep = erase_store(dir.path(), None).unwrap();
        prop_assert!(rep.pending.is_empty(), "{:?}", rep.pending);
        let store = Store::open(dir.path(), opts(true)).unwrap();
        assert!(store.wait_indexed(Duration::from_secs(30)));
        check(&store, &model, "after erase");
        store.close().unwrap();
        rebuild_index_in_place(dir.path(), "test", &mut |_, _, _| {}).unwrap();
        let store = Store::open(dir.path(), opts(false)).unwrap();
        check(&store, &model, "rebuilt after erase");
        store.close().unwrap();
    }
}
