#![allow(clippy::unwrap_used)]
//! `tidelog init`: a store in a missing or empty folder; an existing store is left alone; any
//! other folder is refused.

mod common;
use common::*;

#[test]
fn init_creates_a_store_once_and_refuses_other_folders() {
    let t = tempfile::tempdir().unwrap();

    // A missing folder.
    let s = t.path().join("new");
    let o = run(&s, &["init"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("created a tidelog store"), "{}", stdout(&o));
    assert!(s.join("lanes").is_dir());
    assert_eq!(code(&run(&s, &["verify"])), 0);

    // Again: already a store, nothing changed.
    let o = run(&s, &["--json", "init"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(json(&o)["created"], false);
    let o = run(&s, &["init"]);
    assert!(stdout(&o).contains("already a tidelog store"), "{}", stdout(&o));

    // An empty folder.
    let empty = t.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let o = run(&empty, &["--json", "init"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(json(&o)["created"], true);

    // A folder with other things in it, and a file.
    let busy = t.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("notes.txt"), "mine").unwrap();
    let o = run(&busy, &["init"]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("is not empty and is not a tidelog store"), "{}", stderr(&o));
    assert_eq!(std::fs::read_dir(&busy).unwrap().count(), 1, "nothing written");
    let o = run(&busy.join("notes.txt"), &["init"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
}
