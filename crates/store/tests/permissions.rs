//! Everything the store creates is private to its owner: folders 0700, files 0600.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use tidelog::{INDEX_FILE, LANES_DIR, Message, QUARANTINE_DIR, Store, StoreOptions};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn store_files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = Store::open(&root, StoreOptions { segment_size: 1 << 20, ..StoreOptions::default() }).unwrap();
    store
        .append(Message {
            session_id: "s".into(),
            role: "user".into(),
            content: Some("hi".into()),
            ..Message::default()
        })
        .unwrap();
    assert!(store.wait_indexed(Duration::from_secs(30)));
    let lane = root.join(LANES_DIR).join(store.lane());
    store.close().unwrap();
    // Damage the index so that a quarantine is created too.
    std::fs::write(root.join(INDEX_FILE), vec![0x42u8; 8192]).unwrap();
    let store = Store::open(&root, StoreOptions { segment_size: 1 << 20, ..StoreOptions::default() }).unwrap();
    assert!(store.wait_indexed(Duration::from_secs(30)));
    assert_eq!(store.status().compactor.index_quarantined, 1);
    store.close().unwrap();

    assert_eq!(mode(&root), 0o700, "store folder");
    assert_eq!(mode(&root.join(LANES_DIR)), 0o700, "lanes folder");
    assert_eq!(mode(&lane), 0o700, "lane folder");
    assert_eq!(mode(&root.join(INDEX_FILE)), 0o600, "index.db");
    assert_eq!(mode(&root.join(QUARANTINE_DIR)), 0o700, "quarantine folder");
    let mut segments = 0;
    for e in std::fs::read_dir(&lane).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            assert_eq!(mode(&p), 0o700, "{}", p.display());
        } else {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
            segments += usize::from(p.extension().is_some_and(|x| x == "seg"));
        }
    }
    assert!(segments > 0, "no segment file found in {}", lane.display());
    for e in std::fs::read_dir(root.join(QUARANTINE_DIR)).unwrap() {
        let p = e.unwrap().path();
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
    assert_eq!(mode(&root.join(tidelog::COMPACTOR_LOCK)), 0o600, "compactor lock");
}
