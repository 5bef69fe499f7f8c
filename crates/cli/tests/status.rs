#![allow(clippy::unwrap_used)]
//! `tidelog status`: exit 0 and "ok" on a healthy store; exit 1 with one `problem:` line per
//! problem when a record cannot be read (kept in the index across restarts) or when the process
//! running the compactor reported its thread degraded (the note it leaves in the store folder).

mod common;
use common::*;

#[test]
fn status_shows_what_is_degraded_and_exits_1() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("store");
    let input: String = (1..=3).map(|i| msg("s", i) + "\n").collect();
    assert_eq!(code(&run_stdin(&dir, &["append", "--jsonl"], &input)), 0);

    let o = run(&dir, &["status"]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("lane lane-0001: LSN 3") && stdout(&o).ends_with(": ok\n"), "{}", stdout(&o));
    assert_eq!(json(&run(&dir, &["status", "--json"]))["ok"], true);

    // A record a newer version wrote: indexed past, kept in the index, reported by later opens.
    {
        let store = tidelog::Store::open(&dir, tidelog::StoreOptions::default()).unwrap();
        store.journal().append(&[0x7f, 0, 0]).unwrap();
        assert!(store.wait_indexed(std::time::Duration::from_secs(10)));
        store.close().unwrap();
    }
    let o = run(&dir, &["status"]);
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    assert!(stdout(&o).contains("problem: journal record lane-0001/4 cannot be read"), "{}", stdout(&o));
    // Read commands warn about it too.
    let o = run(&dir, &["export"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("lane-0001/4"), "{}", stderr(&o));

    // The compactor of a gateway process reported a panic.
    std::fs::write(
        dir.join(tidelog::COMPACTOR_PROBLEM),
        r#"{"thread": "compactor", "pid": 4194303, "lane": "lane-0002", "what": "panicked (1 time(s) since the store was opened, the last 0 s ago: boom); restarted", "time_unix_ms": 1777827550000}"#,
    )
    .unwrap();
    let o = run(&dir, &["status", "--json"]);
    assert_eq!(code(&o), 1);
    let v = json(&o);
    let problems: Vec<String> = v["problems"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().into()).collect();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems.iter().any(|p| p.starts_with("compactor of process 4194303 (lane lane-0002)") && p.contains("boom"))
    );
}
