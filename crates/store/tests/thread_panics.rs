//! Background threads that cannot die silently (issue 21): a panic in the compactor shows in the
//! status (and, through the note it leaves in the store folder, in another handle's status), is
//! logged, the thread comes back after a back-off and indexes later appends, and `close` reports
//! it; a failure that lasts is reported as degraded once, and clears when it ends.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use tidelog::{COMPACTOR_PROBLEM, INDEX_FILE, Index, IndexOptions, Message, Store, StoreOptions, TestHooks};

fn msg(i: usize) -> Message {
    Message {
        session_id: "s".into(),
        role: "user".into(),
        content: Some(format!("message number {i}")),
        ..Message::default()
    }
}

/// Short timings: restart after 10 ms (doubling to 80 ms), healthy after 2 s, a failure is
/// persistent after 300 ms.
fn hooks() -> TestHooks {
    let h = TestHooks::default();
    h.set_timings(
        Duration::from_millis(10),
        Duration::from_millis(80),
        Duration::from_secs(2),
        Duration::from_millis(300),
    );
    h
}

fn opts(h: &TestHooks) -> StoreOptions {
    StoreOptions { poll_interval: Duration::from_millis(10), test_hooks: h.clone(), ..StoreOptions::default() }
}

fn wait(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn indexed_messages(dir: &Path) -> u64 {
    Index::open_read_only(&dir.join(INDEX_FILE), &IndexOptions::default()).unwrap().message_count().unwrap()
}

#[test]
fn a_compactor_panic_is_reported_the_thread_comes_back_and_close_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let h = hooks();
    let store = Store::open(dir.path(), opts(&h)).unwrap();
    store.append(msg(0)).unwrap();
    assert!(store.wait_indexed(Duration::from_secs(10)));
    assert!(!store.status().is_degraded());

    // Three panics in a row (the batch is read, then the thread panics before applying it).
    h.panic_compactor(3);
    store.append(msg(1)).unwrap();
    wait("three panics", || store.status().compactor.health.panics == 3);
    let st = store.status();
    let line = st.problems.iter().find(|p| p.starts_with("compactor thread degraded")).expect("a status line");
    assert!(line.contains("injected compactor panic") && line.contains("3 time(s)"), "{line}");
    assert_eq!(st.compactor.health.last_panic.as_deref(), Some("injected compactor panic (test hook)"));
    assert!(st.compactor.health.degraded.is_some());

    // Other handles (other processes: `tidelog status`) see it through the note.
    let note = dir.path().join(COMPACTOR_PROBLEM);
    wait("the note", || note.exists());
    let ro = Store::open(dir.path(), StoreOptions { read_only: true, ..StoreOptions::default() }).unwrap();
    let other = ro.status().problems;
    assert!(other.iter().any(|p| p.starts_with("compactor of process") && p.contains("injected")), "{other:?}");

    // The thread came back: the batch that panicked and later appends are indexed.
    for i in 2..50 {
        store.append(msg(i)).unwrap();
    }
    assert!(store.wait_indexed(Duration::from_secs(10)));
    assert_eq!(indexed_messages(dir.path()), 50);
    assert_eq!(store.search(&tidelog::SearchQuery::new(r#""number 49""#)).unwrap().len(), 1);

    // Healthy again after the healthy period: the line and the note go, the count stays.
    wait("the healthy period", || store.status().compactor.health.degraded.is_none() && !note.exists());
    let st = store.status();
    assert!(st.problems.is_empty(), "{:?}", st.problems);
    assert_eq!(st.compactor.health.panics, 3);
    assert!(ro.status().problems.is_empty());
    ro.close().unwrap();

    let report = store.close().unwrap();
    let c = report.compactor.clone().unwrap();
    assert_eq!((c.panics, c.stopped), (3, true));
    assert!(!report.is_clean());
    assert!(report.problems()[0].contains("panicked 3 time(s)"), "{:?}", report.problems());

    // Nothing was lost or applied twice.
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert_eq!(store.messages("s").unwrap().len(), 50);
    assert!(store.close().unwrap().is_clean());
}

#[test]
fn a_persistent_failure_is_reported_once_and_clears() {
    let dir = tempfile::tempdir().unwrap();
    let h = hooks();
    let store = Store::open(dir.path(), opts(&h)).unwrap();
    store.append(msg(0)).unwrap();
    assert!(store.wait_indexed(Duration::from_secs(10)));
    h.fail_compactor(u32::MAX);
    store.append(msg(1)).unwrap();
    wait("a persistent failure", || store.status().compactor.health.degraded.is_some());
    let st = store.status();
    let c = &st.compactor;
    assert!(c.health.failing_since_unix_ms.is_some() && c.retries >= 2, "{c:?}");
    assert_eq!(c.health.panics, 0);
    let lines: Vec<_> = st.problems.iter().filter(|p| p.contains("compactor")).collect();
    assert_eq!(lines.len(), 1, "one line, not one per attempt: {lines:?}");
    assert!(lines[0].contains("every attempt has failed") && lines[0].contains("injected failure"), "{lines:?}");
    // Written right after the status changed.
    wait("the note", || dir.path().join(COMPACTOR_PROBLEM).exists());

    h.fail_compactor(0);
    assert!(store.wait_indexed(Duration::from_secs(20)));
    wait("the failure to clear", || store.status().problems.is_empty());
    assert!(store.status().compactor.health.failing_since_unix_ms.is_none());
    assert!(!dir.path().join(COMPACTOR_PROBLEM).exists());
    // A failure that ended is not a death: close is clean.
    assert!(store.close().unwrap().is_clean());
}

#[test]
fn a_note_left_by_a_dead_process_is_shown_until_a_healthy_compactor_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    Store::open(dir.path(), StoreOptions::default()).unwrap().close().unwrap();
    let note = dir.path().join(COMPACTOR_PROBLEM);
    std::fs::write(
        &note,
        r#"{"thread": "compactor", "pid": 4194303, "lane": "lane-0009", "what": "panicked (1 time(s) since the store was opened, the last 0 s ago: boom); restarting in 100 ms", "time_unix_ms": 1777827550000}"#,
    )
    .unwrap();
    let ro = Store::open(dir.path(), StoreOptions { read_only: true, ..StoreOptions::default() }).unwrap();
    let p = ro.status().problems;
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].starts_with("compactor of process 4194303 (lane lane-0009) reported at 2026-05-03T"), "{p:?}");
    // A writer's compactor takes the role, runs healthy and removes it.
    let store = Store::open(dir.path(), opts(&hooks())).unwrap();
    store.append(msg(0)).unwrap();
    wait("the note to go", || !note.exists());
    assert!(ro.status().problems.is_empty());
    assert!(store.close().unwrap().is_clean());
    ro.close().unwrap();
}
