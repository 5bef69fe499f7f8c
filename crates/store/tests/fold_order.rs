//! The index gives the same reads whatever order the compactor applies the lanes in: random
//! histories written by three lanes (messages, deletions, clears, session patches, counters,
//! each with its position in the store's order) are applied lane by lane (as a rebuild does)
//! and in random interleavings of the lanes (as compactors in several processes do), and every
//! session and message read must be the same.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use tidelog::{
    CounterDelta, DeleteSessions, Entry, Index, IndexOptions, Message, Rewrite, SessionFilter, SessionPatch, SessionRef,
};

#[derive(Debug, Clone)]
enum Op {
    Message(u8),
    Delete(u8),
    Clear(u8),
    Title(u8, u8),
    Model(u8, u8),
    Counter(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3u8).prop_map(Op::Message),
        1 => (0..3u8).prop_map(Op::Delete),
        1 => (0..3u8).prop_map(Op::Clear),
        1 => (0..3u8, 0..3u8).prop_map(|(s, t)| Op::Title(s, t)),
        1 => (0..3u8, 0..3u8).prop_map(|(s, t)| Op::Model(s, t)),
        1 => (0..3u8).prop_map(Op::Counter),
    ]
}

/// The entries of each lane: operation `i` gets position `i + 1` and goes to lane `lanes[i]`.
fn lanes_of(ops: &[(Op, u8)]) -> Vec<Vec<(String, u64, Entry)>> {
    let mut lanes: Vec<Vec<(String, u64, Entry)>> = vec![Vec::new(); 3];
    for (i, (op, lane)) in ops.iter().enumerate() {
        let pos = i as i64 + 1;
        let s = |n: &u8| format!("s{n}");
        let e = match op {
            Op::Message(n) => Entry::Message(Message {
                id: format!("m{pos}"),
                num: pos,
                session_id: s(n),
                role: "user".into(),
                source: Some(format!("src{pos}")),
                timestamp: pos as f64,
                ..Message::default()
            }),
            Op::Delete(n) => Entry::Delete(DeleteSessions { op: pos, sessions: vec![SessionRef { id: s(n) }] }),
            Op::Clear(n) => Entry::Rewrite(Rewrite { session_id: s(n), op: pos, mode: 0, ..Rewrite::default() }),
            Op::Title(n, t) => Entry::Session(SessionPatch {
                id: s(n),
                title: Some(format!("t{t}")),
                op: Some(pos),
                ..SessionPatch::default()
            }),
            Op::Model(n, t) => Entry::Session(SessionPatch {
                id: s(n),
                model: Some(format!("model{t}")),
                op: Some(pos),
                ..SessionPatch::default()
            }),
            Op::Counter(n) => Entry::Counters(CounterDelta {
                session_id: s(n),
                input_tokens: 1,
                op: Some(pos),
                ..CounterDelta::default()
            }),
        };
        let l = &mut lanes[*lane as usize];
        let lsn = l.len() as u64 + 1;
        l.push((format!("lane-{lane}"), lsn, e));
    }
    lanes
}

fn reads(ix: &Index) -> (Vec<String>, Vec<String>) {
    let mut sessions: Vec<String> = ix
        .list_sessions(&SessionFilter::default())
        .unwrap()
        .into_iter()
        .map(|s| {
            format!(
                "{} {:?} {:?} {:?} {:?} {}",
                s.id, s.title, s.model, s.source, s.started_at, s.counters.input_tokens
            )
        })
        .collect();
    sessions.sort();
    let mut messages = Vec::new();
    for n in 0..3 {
        for m in ix.messages(&format!("s{n}")).unwrap() {
            messages.push(format!("s{n} {}", m.id));
        }
    }
    (sessions, messages)
}

fn apply(order: &[usize], lanes: &[Vec<(String, u64, Entry)>]) -> (Vec<String>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let mut ix = Index::open(&dir.path().join("index.db"), &IndexOptions::default()).unwrap();
    let mut next = vec![0usize; lanes.len()];
    for &l in order {
        if let Some(e) = lanes[l].get(next[l]) {
            ix.apply_batch(std::slice::from_ref(e)).unwrap();
            next[l] += 1;
        }
    }
    reads(&ix)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]
    #[test]
    fn any_interleaving_of_lanes_gives_the_same_reads(
        ops in prop::collection::vec((op(), 0..3u8), 1..40),
        picks in prop::collection::vec(0..3usize, 0..200),
    ) {
        let lanes = lanes_of(&ops);
        let total: usize = lanes.iter().map(Vec::len).sum();
        // The rebuild's order: lane by lane.
        let rebuild: Vec<usize> = (0..3).flat_map(|l| std::iter::repeat_n(l, lanes[l].len())).collect();
        // A random interleaving, then whatever is left lane by lane.
        let mut order: Vec<usize> = picks;
        order.extend(rebuild.iter().copied());
        let expected = apply(&rebuild, &lanes);
        let got = apply(&order, &lanes);
        prop_assert_eq!(got, expected, "{} entries", total);
    }
}
