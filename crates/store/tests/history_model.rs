//! Property test of the one fold rule (docs/design.md "One fold rule"): random sequences of
//! every history operation (messages, updates, updates naming the wrong session, rewrites of
//! each mode, retried rewrites whose messages are skipped as duplicates, deletions, session
//! patches, counters) against a plain in-memory model. The store must give the model's answers
//! read from the journal alone (the tail, no compactor), from the index once the compactor
//! applied everything, after a rebuild of the index from the journal, and after an erase pass
//! rewrote the journal; and the same session rows in all of them. PostgreSQL is checked against
//! the same operations by `crates/pg/tests/fold_pg.rs`. Fixed seed; knobs: `PROPTEST_CASES`
//! (default 24), `PROPTEST_RNG_SEED`.
#![allow(clippy::unwrap_used)]

#[path = "common/fold_ops.rs"]
mod fold_ops;

use std::time::Duration;

use fold_ops::{Model, SESSIONS, messages_read, op, run, sessions_read};
use proptest::prelude::*;
use tidelog::ops::{erase_store, rebuild_index_in_place};
use tidelog::{SearchQuery, Session, Store, StoreOptions};

fn check(store: &Store, model: &Model, sessions: &[Session], phase: &str) {
    let got = messages_read(store);
    for s in SESSIONS {
        assert_eq!(&got[s], &model[s], "{phase}: history of {s}");
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
    assert_eq!(sessions_read(store), sessions, "{phase}: session rows");
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
        // A fixed seed (the same cases in CI on every run); `PROPTEST_RNG_SEED` picks another.
        rng_seed: proptest::test_runner::RngSeed::Fixed(
            std::env::var("PROPTEST_RNG_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(21),
        ),
        ..ProptestConfig::default()
    })]

    #[test]
    fn history_operations_match_the_model_everywhere(ops in proptest::collection::vec(op(), 1..25)) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), opts(false)).unwrap();
        let model = run(&store, &ops);
        // The session rows read from the tail are the reference for every other phase.
        let sessions = sessions_read(&store);
        check(&store, &model, &sessions, "journal only");
        store.close().unwrap();

        let store = Store::open(dir.path(), opts(true)).unwrap();
        assert!(store.wait_indexed(Duration::from_secs(30)));
        check(&store, &model, &sessions, "index");
        store.close().unwrap();

        rebuild_index_in_place(dir.path(), "test", &mut |_, _, _| {}).unwrap();
        let store = Store::open(dir.path(), opts(false)).unwrap();
        check(&store, &model, &sessions, "rebuilt index");
        store.close().unwrap();

        let rep = erase_store(dir.path(), None).unwrap();
        prop_assert!(rep.pending.is_empty(), "{:?}", rep.pending);
        let store = Store::open(dir.path(), opts(true)).unwrap();
        assert!(store.wait_indexed(Duration::from_secs(30)));
        check(&store, &model, &sessions, "after erase");
        store.close().unwrap();
        rebuild_index_in_place(dir.path(), "test", &mut |_, _, _| {}).unwrap();
        let store = Store::open(dir.path(), opts(false)).unwrap();
        check(&store, &model, &sessions, "rebuilt after erase");
        store.close().unwrap();
    }
}
