//! Bad input is refused with a clear error and writes nothing; earlier messages stay intact;
//! duplicate client ids (within a batch and across calls) are stored once.
#![allow(clippy::unwrap_used)]

use tidelog::{Error, Message, SessionPatch, Store, StoreOptions};

fn good(id: &str) -> Message {
    Message {
        id: id.into(),
        session_id: "s".into(),
        role: "user".into(),
        content: Some(format!("hello from {id}")),
        ..Message::default()
    }
}

#[test]
fn invalid_messages_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        StoreOptions { max_record_size: 4096, run_compactor: false, ..StoreOptions::default() },
    )
    .unwrap();
    store.append(good("first")).unwrap();
    store.append_batch(vec![good("second"), good("third")]).unwrap();
    let before = store.journal().last_lsn();
    assert_eq!(before, 3);

    let cases: Vec<(&str, Message)> = vec![
        ("session_id", Message { session_id: String::new(), ..good("a") }),
        ("role", Message { role: String::new(), ..good("b") }),
        ("tool_calls", Message { tool_calls: Some("[{\"id\": ".into()), ..good("c") }),
        ("extra", Message { extra: Some("not json".into()), ..good("d") }),
        ("timestamp", Message { timestamp: f64::NAN, ..good("e") }),
        ("timestamp", Message { timestamp: f64::INFINITY, ..good("f") }),
        ("timestamp", Message { timestamp: -1.0, ..good("f2") }),
        ("timestamp", Message { timestamp: 1e300, ..good("f3") }),
        ("timestamp", Message { timestamp: 2f64.powi(70), ..good("f4") }),
        ("extra", Message { extra: Some("[1, 2]".into()), ..good("d2") }),
        ("extra", Message { extra: Some("3".into()), ..good("d3") }),
        ("id", Message { id: "x".repeat(5000), ..good("g") }),
    ];
    for (what, m) in cases {
        match store.append(m.clone()) {
            Err(Error::Invalid(s)) => assert!(s.contains(what), "{what}: {s}"),
            other => panic!("{what}: expected Invalid, got {other:?}"),
        }
        // One bad message spoils the whole batch, and the error names it.
        match store.append_batch(vec![good("ok-1"), m]) {
            Err(Error::Invalid(s)) => assert!(s.contains("message 2") && s.contains(what), "{s}"),
            other => panic!("{what} in a batch: expected Invalid, got {other:?}"),
        }
        assert_eq!(store.journal().last_lsn(), before, "{what}: something was written");
    }

    // Oversized: a journal error, nothing written, alone or in a batch.
    let big = Message { content: Some("y".repeat(10_000)), ..good("big") };
    match store.append(big.clone()) {
        Err(Error::Journal(tidelog_journal::Error::RecordTooLarge { max, .. })) => assert_eq!(max, 4096),
        other => panic!("expected RecordTooLarge, got {other:?}"),
    }
    assert!(matches!(store.append_batch(vec![good("ok-2"), big]), Err(Error::Journal(_))));
    assert_eq!(store.journal().last_lsn(), before);

    // Sessions.
    assert!(matches!(store.upsert_session(SessionPatch::default()), Err(Error::Invalid(_))));
    let bad_extra = SessionPatch { id: "s".into(), extra: Some("{".into()), ..SessionPatch::default() };
    assert!(matches!(store.upsert_session(bad_extra), Err(Error::Invalid(_))));
    assert_eq!(store.journal().last_lsn(), before);

    // Earlier messages intact; nothing of the refused ones visible.
    let ids: Vec<String> = store.messages("s").unwrap().into_iter().map(|m| m.id).collect();
    assert_eq!(ids, ["first", "second", "third"]);
    assert!(store.status().problems.is_empty(), "{:?}", store.status().problems);
    // Still appends after all that.
    store.append(good("fourth")).unwrap();
    assert_eq!(store.journal().last_lsn(), before + 1);
    store.close().unwrap();
}

#[test]
fn duplicate_client_ids_are_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let check = |store: &Store| {
        let ids: Vec<String> = store.messages("s").unwrap().into_iter().map(|m| m.id).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(sorted, ["a", "b", "c"], "{ids:?}");
    };
    {
        let store = Store::open(dir.path(), StoreOptions { run_compactor: false, ..StoreOptions::default() }).unwrap();
        let r = store.append_batch(vec![good("a"), good("b"), good("a")]).unwrap();
        assert_eq!(r.iter().map(|a| a.lsn.is_some()).collect::<Vec<_>>(), [true, true, false]);
        // Across calls, not indexed yet (found in the journal).
        assert_eq!(store.append(good("a")).unwrap().lsn, None);
        let r = store.append_batch(vec![good("c"), good("b")]).unwrap();
        assert_eq!(r.iter().map(|a| a.lsn.is_some()).collect::<Vec<_>>(), [true, false]);
        assert_eq!(store.journal().last_lsn(), 3);
        check(&store);
        store.close().unwrap();
    }
    // Across reopen, once indexed.
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert!(store.wait_indexed(std::time::Duration::from_secs(30)));
    assert_eq!(store.append(good("b")).unwrap().lsn, None);
    assert_eq!(store.append_batch(vec![good("c"), good("a")]).unwrap().iter().filter(|a| a.lsn.is_some()).count(), 0);
    // Server-assigned ids are always new.
    let fresh = store.append(Message { id: String::new(), ..good("") }).unwrap();
    assert!(fresh.lsn.is_some() && !fresh.id.is_empty());
    let ids: Vec<String> = store.messages("s").unwrap().into_iter().map(|m| m.id).filter(|i| i.len() == 1).collect();
    let mut sorted = ids;
    sorted.sort();
    assert_eq!(sorted, ["a", "b", "c"]);
    store.close().unwrap();
}

/// The same inputs are refused by the store (what the Python binding, the Hermes import and the
/// CLI call) and by the JSON-lines parser (the sidecar, `append --jsonl`, a restore of an
/// export), so an export always restores whole.
#[test]
fn every_door_refuses_the_same_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions { run_compactor: false, ..StoreOptions::default() }).unwrap();
    let long = "r".repeat(1025);
    let cases: Vec<(String, bool)> = vec![
        (r#"{"session_id":"s","role":"user","content":"a","timestamp":1700000000.5}"#.into(), true),
        (r#"{"session_id":"s","role":"user","content":"a","timestamp":0}"#.into(), true),
        (r#"{"session_id":"s","role":"user","content":"a","timestamp":253402300799}"#.into(), true),
        (r#"{"session_id":"s","role":"user","content":"a","extra":{"k":[1,{"x":null}]}}"#.into(), true),
        (r#"{"session_id":"s","role":"user","content":"a","timestamp":-1}"#.into(), false),
        (r#"{"session_id":"s","role":"user","content":"a","timestamp":1e300}"#.into(), false),
        (r#"{"session_id":"s","role":"user","content":"a","timestamp":1180591620717411303424}"#.into(), false),
        (r#"{"session_id":"s","role":"user","content":"a","extra":[1]}"#.into(), false),
        (r#"{"session_id":"s","role":"user","content":"a","extra":"text"}"#.into(), false),
        (r#"{"session_id":"","role":"user","content":"a"}"#.into(), false),
        (format!(r#"{{"session_id":"s","role":"{long}","content":"a"}}"#), false),
    ];
    for (line, ok) in cases {
        let parsed = tidelog::ops::parse_message_line(&line);
        assert_eq!(parsed.is_ok(), ok, "parser, {line}: {parsed:?}");
        // The store, given the same fields directly (as the binding gives them).
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let m = Message {
            session_id: v["session_id"].as_str().unwrap().into(),
            role: v["role"].as_str().unwrap().into(),
            content: Some("a".into()),
            timestamp: v.get("timestamp").and_then(serde_json::Value::as_f64).unwrap_or(0.0),
            extra: v.get("extra").map(serde_json::Value::to_string),
            ..Message::default()
        };
        let stored = store.append(m);
        assert_eq!(stored.is_ok(), ok, "store, {line}: {stored:?}");
        if let (Err(p), Err(Error::Invalid(s))) = (&parsed, &stored) {
            // The same rule says why, in the same words.
            let field = |e: &str| ["timestamp", "extra", "session_id", "role"].into_iter().find(|f| e.contains(f));
            assert_eq!(field(p), field(s), "{p} / {s}");
        }
    }
}

/// `extra` is stored in one canonical form: the same read before and after the compactor
/// indexed the message, and for a session's extra too.
#[test]
fn extra_reads_the_same_before_and_after_indexing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let raw = r#"{ "b": 2.50, "a": 1, "a": 3, "big": 1180591620717411303424, "n": {"z": 1, "y": 2} }"#;
    let canonical = r#"{"a":3,"b":2.5,"big":1.1805916207174113e+21,"n":{"y":2,"z":1}}"#;
    store.upsert_session(SessionPatch { id: "s".into(), extra: Some(raw.into()), ..SessionPatch::default() }).unwrap();
    store.append(Message { extra: Some(raw.into()), ..good("m") }).unwrap();
    let before = (store.messages("s").unwrap()[0].extra.clone(), store.get_session("s").unwrap().unwrap().extra);
    assert!(store.wait_indexed(std::time::Duration::from_secs(20)));
    let after = (store.messages("s").unwrap()[0].extra.clone(), store.get_session("s").unwrap().unwrap().extra);
    assert_eq!(before, (Some(canonical.to_string()), Some(canonical.to_string())));
    assert_eq!(after, before);
}
