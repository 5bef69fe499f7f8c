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
