//! Random sequences of every history operation and a plain model of the messages they leave,
//! shared by the property tests of the one fold rule (`crates/store/tests/history_model.rs`:
//! the tail, the index, a rebuild, the erase pass; `crates/pg/tests/fold_pg.rs`: PostgreSQL).
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use tidelog::{
    CounterDelta, Error, HistoryQuery, Message, MessageUpdate, RewriteMode, Session, SessionFilter, SessionPatch, Store,
};

pub const SESSIONS: [&str; 3] = ["s0", "s1", "s2"];

#[derive(Debug, Clone)]
pub enum Op {
    Append {
        s: usize,
        n: usize,
    },
    Rewrite {
        s: usize,
        mode: u8,
        active_only: bool,
        add: usize,
    },
    /// A rewrite adding messages with client ids, then the same call again (a retry): the
    /// retry skips them as duplicates and must not remove them.
    RewriteRetried {
        s: usize,
        mode: u8,
        active_only: bool,
        add: usize,
    },
    Delete {
        s: usize,
    },
    Update {
        s: usize,
        pick: usize,
    },
    /// An update naming a message of session `s` under another session: refused, no effect.
    UpdateElsewhere {
        s: usize,
        pick: usize,
    },
    Patch {
        s: usize,
        field: u8,
        value: u8,
        fill_only: bool,
    },
    Counters {
        s: usize,
        n: i64,
    },
}

pub fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, 1..4usize).prop_map(|(s, n)| Op::Append { s, n }),
        2 => (0..3usize, 0..3u8, any::<bool>(), 0..3usize)
            .prop_map(|(s, mode, active_only, add)| Op::Rewrite { s, mode, active_only, add }),
        1 => (0..3usize, 0..3u8, any::<bool>(), 1..3usize)
            .prop_map(|(s, mode, active_only, add)| Op::RewriteRetried { s, mode, active_only, add }),
        1 => (0..3usize).prop_map(|s| Op::Delete { s }),
        1 => (0..3usize, 0..8usize).prop_map(|(s, pick)| Op::Update { s, pick }),
        1 => (0..3usize, 0..8usize).prop_map(|(s, pick)| Op::UpdateElsewhere { s, pick }),
        2 => (0..3usize, 0..5u8, 0..3u8, any::<bool>())
            .prop_map(|(s, field, value, fill_only)| Op::Patch { s, field, value, fill_only }),
        1 => (0..3usize, 1..5i64).prop_map(|(s, n)| Op::Counters { s, n }),
    ]
}

/// (integer id, content, active, compacted) per message, in id order.
pub type Model = BTreeMap<&'static str, Vec<(i64, String, bool, bool)>>;

pub fn msg(s: &str, text: String) -> Message {
    Message {
        session_id: s.into(),
        role: "user".into(),
        content: Some(text),
        source: Some("test".into()),
        ..Message::default()
    }
}

fn mode_of(m: u8) -> RewriteMode {
    [RewriteMode::Delete, RewriteMode::Archive, RewriteMode::Compact][m as usize % 3]
}

/// The model's rewrite: every message except `kept` (ids) as `RewriteMode::apply` says.
fn rewrite_model(v: &mut Vec<(i64, String, bool, bool)>, mode: RewriteMode, active_only: bool, kept: &[i64]) {
    v.retain_mut(|m| {
        if kept.contains(&m.0) || (active_only && !m.2) {
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
}

/// Runs `ops` on `store` and returns the model of the messages they leave.
pub fn run(store: &Store, ops: &[Op]) -> Model {
    let mut model: Model = SESSIONS.iter().map(|s| (*s, Vec::new())).collect();
    let mut word = 0;
    run_more(store, ops, &mut model, &mut word);
    model
}

/// Runs more operations on a store `run_more` (or `run`) already ran some on: `model` and
/// `word` (the counter of unique words) carry on.
pub fn run_more(store: &Store, ops: &[Op], model: &mut Model, word: &mut u32) {
    let mut next = |prefix: &str| {
        *word += 1;
        format!("{prefix} zq{:04}x", *word)
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
                let mode = mode_of(mode);
                let msgs: Vec<Message> = (0..add).map(|_| msg(SESSIONS[s], next("new"))).collect();
                let texts: Vec<String> = msgs.iter().map(|m| m.content.clone().unwrap()).collect();
                let acks = store.rewrite(SESSIONS[s], mode, active_only, msgs).unwrap();
                let v = model.get_mut(SESSIONS[s]).unwrap();
                rewrite_model(v, mode, active_only, &[]);
                for (a, t) in acks.iter().zip(texts) {
                    v.push((a.num.unwrap(), t, true, false));
                }
            }
            Op::RewriteRetried { s, mode, active_only, add } => {
                let mode = mode_of(mode);
                let msgs: Vec<Message> = (0..add)
                    .map(|_| {
                        let t = next("kept");
                        Message { id: format!("client {t}"), ..msg(SESSIONS[s], t) }
                    })
                    .collect();
                let texts: Vec<String> = msgs.iter().map(|m| m.content.clone().unwrap()).collect();
                let acks = store.rewrite(SESSIONS[s], mode, active_only, msgs.clone()).unwrap();
                let v = model.get_mut(SESSIONS[s]).unwrap();
                rewrite_model(v, mode, active_only, &[]);
                let nums: Vec<i64> = acks.iter().map(|a| a.num.unwrap()).collect();
                for (n, t) in nums.iter().zip(texts) {
                    v.push((*n, t, true, false));
                }
                let again = store.rewrite(SESSIONS[s], mode, active_only, msgs).unwrap();
                assert!(again.iter().all(|a| a.num.is_none()), "a retried rewrite stored its messages twice");
                rewrite_model(v, mode, active_only, &nums);
            }
            Op::Delete { s } => {
                store.delete_sessions(&[SESSIONS[s]], false).unwrap();
                model.get_mut(SESSIONS[s]).unwrap().clear();
            }
            Op::Update { s, pick } => {
                let v = model.get_mut(SESSIONS[s]).unwrap();
                if v.is_empty() {
                    // Nothing to edit: a made-up id is refused.
                    let r = store.update_message(MessageUpdate {
                        num: 1 << 40,
                        session_id: SESSIONS[s].into(),
                        content: Some("nowhere".into()),
                        ..MessageUpdate::default()
                    });
                    assert!(matches!(r, Err(Error::NotFound { .. })), "{r:?}");
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
            Op::UpdateElsewhere { s, pick } => {
                let v = &model[SESSIONS[s]];
                if v.is_empty() {
                    continue;
                }
                let num = v[pick % v.len()].0;
                let r = store.update_message(MessageUpdate {
                    num,
                    session_id: SESSIONS[(s + 1) % 3].into(),
                    content: Some(next("misdirected")),
                    ..MessageUpdate::default()
                });
                assert!(matches!(r, Err(Error::NotFound { .. })), "{r:?}");
            }
            Op::Patch { s, field, value, fill_only } => {
                let v = format!("v{value}");
                let mut p = SessionPatch { id: SESSIONS[s].into(), fill_only, ..SessionPatch::default() };
                match field {
                    0 => p.model = Some(v),
                    1 => p.user_id = Some(v),
                    2 => p.extra = Some(format!(r#"{{"k{value}":{value}}}"#)),
                    3 => p.ended_at = Some(f64::from(value)),
                    _ => p.reopen = true,
                }
                store.upsert_session(p).unwrap();
            }
            Op::Counters { s, n } => {
                store
                    .add_counters(CounterDelta {
                        session_id: SESSIONS[s].into(),
                        input_tokens: n,
                        api_call_count: 1,
                        // Exact in binary: sums in any order agree.
                        estimated_cost_usd: 0.25 * n as f64,
                        ..CounterDelta::default()
                    })
                    .unwrap();
            }
        }
    }
}

/// What a store reads of every message: (id, content, active, compacted) per session.
pub fn messages_read(store: &Store) -> Model {
    SESSIONS
        .iter()
        .map(|s| {
            let q = HistoryQuery { include_inactive: true, include_compacted: true, ..HistoryQuery::new(*s) };
            let got = store
                .history(&q)
                .unwrap()
                .into_iter()
                .map(|h| (h.message.num, h.message.content.unwrap_or_default(), h.state.active, h.state.compacted))
                .collect();
            (*s, got)
        })
        .collect()
}

/// Every session row a store reads, by id.
pub fn sessions_read(store: &Store) -> Vec<Session> {
    let mut v = store.list_sessions(&SessionFilter::default()).unwrap();
    v.sort_by(|a, b| a.id.cmp(&b.id));
    v
}
