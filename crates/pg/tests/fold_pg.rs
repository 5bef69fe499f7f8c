//! Property test of the one fold rule on PostgreSQL (docs/design.md "One fold rule"): the
//! random history operations of `crates/store/tests/common/fold_ops.rs` are shipped to a real
//! server (part of them, then the rest), and PostgreSQL's rows must be what the model says of
//! every message (content, active, compacted, gone) and the session rows the store reads from
//! its journal. Knob: `PROPTEST_CASES` (default 12). Skipped with a loud message only where
//! PostgreSQL is not installed.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "../../store/tests/common/fold_ops.rs"]
mod fold_ops;

use std::time::Duration;

use common::PgServer;
use fold_ops::{Model, SESSIONS, op, run, run_more, sessions_read};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use tidelog::{Counters, Session, Store, StoreOptions};
use tidelog_pg::PgTarget;

fn pg_messages(pg: &mut postgres::Client, store: &str) -> Model {
    SESSIONS
        .iter()
        .map(|s| {
            let rows = pg
                .query(
                    "SELECT rid, content, active, compacted FROM tidelog.messages \
                     WHERE store = $1 AND session_id = $2 ORDER BY rid",
                    &[&store, s],
                )
                .unwrap();
            let v = rows
                .iter()
                .map(|r| {
                    let content: Option<Vec<u8>> = r.get(1);
                    (r.get(0), String::from_utf8(content.unwrap_or_default()).unwrap(), r.get(2), r.get(3))
                })
                .collect();
            (*s, v)
        })
        .collect()
}

fn pg_sessions(pg: &mut postgres::Client, store: &str) -> Vec<Session> {
    pg.query(
        "SELECT id, source, model, title, user_id, chat_id, parent_session_id, started_at, ended_at, end_reason, \
         extra, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, \
         api_call_count, estimated_cost_usd, actual_cost_usd FROM tidelog.sessions WHERE store = $1 ORDER BY id",
        &[&store],
    )
    .unwrap()
    .iter()
    .map(|r| Session {
        id: r.get(0),
        source: r.get(1),
        model: r.get(2),
        title: r.get(3),
        user_id: r.get(4),
        chat_id: r.get(5),
        parent_session_id: r.get(6),
        started_at: r.get(7),
        ended_at: r.get(8),
        end_reason: r.get(9),
        extra: r.get(10),
        counters: Counters {
            input_tokens: r.get(11),
            output_tokens: r.get(12),
            cache_read_tokens: r.get(13),
            cache_write_tokens: r.get(14),
            reasoning_tokens: r.get(15),
            api_call_count: r.get(16),
            estimated_cost_usd: r.get(17),
            actual_cost_usd: r.get(18),
        },
    })
    .collect()
}

#[test]
fn postgres_folds_history_like_every_other_path() {
    let Some(server) = PgServer::start() else { return };
    let url = server.url("postgres");
    let target = PgTarget::new(&url).unwrap();
    let pg = std::cell::RefCell::new(postgres::Client::connect(&url, postgres::NoTls).unwrap());
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(12);
    // A fixed seed: the same cases on every run (CI); more with the knob.
    let mut runner = TestRunner::new_with_rng(
        Config { cases, failure_persistence: None, ..Config::default() },
        proptest::test_runner::TestRng::deterministic_rng(proptest::test_runner::RngAlgorithm::ChaCha),
    );
    let strategy = (proptest::collection::vec(op(), 1..25), 0..25usize);
    runner
        .run(&strategy, |(ops, cut)| {
            let dir = tempfile::tempdir().unwrap();
            let opts = StoreOptions {
                run_compactor: false,
                poll_interval: Duration::from_millis(2),
                erase_within: Duration::from_secs(3600),
                ..StoreOptions::default()
            };
            let store = Store::open(dir.path(), opts).unwrap();
            // Part of the history reaches PostgreSQL first, the rest later.
            let cut = cut.min(ops.len());
            let mut model = run(&store, &ops[..cut]);
            let mut word = 10_000;
            store.sync_remote(&target).unwrap();
            run_more(&store, &ops[cut..], &mut model, &mut word);
            store.sync_remote(&target).unwrap();
            let id = std::fs::read_to_string(dir.path().join(tidelog::STORE_ID_FILE)).unwrap().trim().to_string();
            // The store's reads (the tail) are checked against the model by history_model.rs;
            // the session rows it reads are the reference here.
            prop_assert_eq!(&fold_ops::messages_read(&store), &model, "the store's reads");
            let sessions = sessions_read(&store);
            prop_assert_eq!(pg_messages(&mut pg.borrow_mut(), &id), model, "PostgreSQL messages");
            prop_assert_eq!(pg_sessions(&mut pg.borrow_mut(), &id), sessions, "PostgreSQL session rows");
            store.close().unwrap();
            Ok(())
        })
        .unwrap();
}
