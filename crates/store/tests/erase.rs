//! Deleted means erased from disk: after `delete_sessions` (and a delete-rewrite) the content is
//! gone from reads at once and, within `erase_within`, from every file of the store folder (a
//! `grep -r` finds nothing), in this process's lane and in an idle lane another process wrote.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use tidelog::ops::{erase_store, verify_store};
use tidelog::{Message, RewriteMode, SearchQuery, Store, StoreOptions};

fn opts() -> StoreOptions {
    StoreOptions {
        poll_interval: Duration::from_millis(5),
        erase_within: Duration::from_millis(0),
        segment_size: 64 << 10,
        ..StoreOptions::default()
    }
}

fn msg(session: &str, text: &str) -> Message {
    Message { session_id: session.into(), role: "user".into(), content: Some(text.into()), ..Message::default() }
}

/// Every file under `dir` holding `needle`.
fn grep_r(dir: &Path, needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        // Files come and go while writers run (a redo file, a WAL): a vanished one holds nothing.
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes())) {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

#[test]
fn deleted_content_leaves_every_file() {
    let dir = tempfile::tempdir().unwrap();
    // Lane 1 (another process, now gone) wrote a secret too; its lane is idle.
    let other = Store::open(dir.path(), StoreOptions { run_compactor: false, ..opts() }).unwrap();
    let other_lane = other.lane().to_string();
    other.append(msg("doomed", "from the other lane: MOONSTONE-7")).unwrap();
    other.close().unwrap();

    let store = Store::open(dir.path(), opts()).unwrap();
    assert_eq!(store.lane(), other_lane, "an idle lane is claimed again: use a second live handle");
    drop(store);
    // Two live handles: lane-0001 (the compactor's) and lane-0002.
    let a = Store::open(dir.path(), opts()).unwrap();
    let b = Store::open(dir.path(), StoreOptions { run_compactor: false, ..opts() }).unwrap();
    for i in 0..200 {
        a.append(msg("doomed", &format!("secret number {i} MOONSTONE-{i}"))).unwrap();
        a.append(msg("kept", &format!("kept number {i}"))).unwrap();
    }
    b.append(msg("doomed", "from lane b: MOONSTONE-B")).unwrap();
    b.append(msg("kept", "kept from lane b")).unwrap();
    b.close().unwrap(); // lane b is idle now: the erase pass may seal it
    // Replace part of "kept" (delete-rewrite) too.
    a.append(msg("kept", "an answer to undo: PUMICE-9")).unwrap();
    a.rewrite("kept", RewriteMode::Delete, true, vec![msg("kept", "the only one left")]).unwrap();
    assert!(a.wait_indexed(Duration::from_secs(30)));
    let secrets = ["MOONSTONE-7", "MOONSTONE-17", "MOONSTONE-199", "MOONSTONE-B", "PUMICE-9"];
    // (PUMICE-9 may already be erased: the delete-rewrite above is a deletion too.)
    for s in &secrets[..4] {
        assert!(!grep_r(dir.path(), s).is_empty(), "{s} should be on disk before the deletion");
    }

    a.delete_sessions(&["doomed"], false).unwrap();
    // Gone from reads at once.
    assert!(a.messages("doomed").unwrap().is_empty());
    assert!(a.search(&SearchQuery::new("MOONSTONE")).unwrap().is_empty());
    assert!(a.get_session("doomed").unwrap().is_none());
    // Gone from disk within the deadline (0 here, plus a compactor round).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left: Vec<(String, Vec<String>)> =
            secrets.iter().map(|s| (s.to_string(), grep_r(dir.path(), s))).filter(|(_, f)| !f.is_empty()).collect();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "still on disk: {left:?}; status {:?}", a.status().problems);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(a.status().problems.is_empty(), "{:?}", a.status().problems);
    // What is left reads the same, and the store verifies.
    assert_eq!(a.messages("kept").unwrap().len(), 1);
    a.close().unwrap();
    let rep = verify_store(dir.path(), &mut |_, _, _| {}).unwrap();
    assert!(rep.is_ok(), "{rep:?}");
    let store = Store::open(dir.path(), opts()).unwrap();
    assert!(store.messages("doomed").unwrap().is_empty());
    assert_eq!(store.messages("kept").unwrap()[0].content.as_deref(), Some("the only one left"));
    store.close().unwrap();
    // A second pass has nothing left to do.
    let again = erase_store(dir.path(), None).unwrap();
    assert_eq!(again.erasable_records, 0, "{again:?}");
}
