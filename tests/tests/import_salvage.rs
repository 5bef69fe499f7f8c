//! How much of a damaged Hermes `state.db` the import keeps, against what a byte-level reader
//! reaches: the rows whose cells sit on a page that still parses as a leaf of the `messages`
//! b-tree, whatever those cells hold. Every reachable row must be imported (repaired and flagged
//! where a cell is damaged), on both damaged fixtures.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use tidelog::{Entry, ImportReport, Message, import_hermes_db};
use tidelog_tests::hermes_fixtures::open_ro;

fn fixture(t: &Path, name: &str) -> PathBuf {
    let dst = t.join(name);
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/hermes").join(name), &dst).unwrap();
    dst
}

/// Cells on the leaf pages reachable from `page`; pages that are not b-tree pages are skipped.
fn reachable_cells(db: &[u8], page_size: usize, page: u32, depth: u32) -> u64 {
    let Some(base) = (page as usize).checked_sub(1).map(|p| p * page_size) else { return 0 };
    let hdr = base + if page == 1 { 100 } else { 0 };
    if depth > 20 || hdr + 12 > db.len() {
        return 0;
    }
    let be16 = |at: usize| usize::from(u16::from_be_bytes([db[at], db[at + 1]]));
    let be32 = |at: usize| u32::from_be_bytes([db[at], db[at + 1], db[at + 2], db[at + 3]]);
    match db[hdr] {
        0x0d => be16(hdr + 3) as u64,
        0x05 => {
            let mut n = 0;
            for i in 0..be16(hdr + 3) {
                let ptr = hdr + 12 + 2 * i;
                if ptr + 2 > db.len() {
                    break;
                }
                let cell = base + be16(ptr);
                if cell + 4 <= db.len() {
                    n += reachable_cells(db, page_size, be32(cell), depth + 1);
                }
            }
            n + reachable_cells(db, page_size, be32(hdr + 8), depth + 1)
        }
        _ => 0,
    }
}

fn reachable_messages(path: &Path) -> u64 {
    let conn = open_ro(path).unwrap();
    let root: u32 =
        conn.query_row("SELECT rootpage FROM sqlite_master WHERE name = 'messages'", [], |r| r.get(0)).unwrap();
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
    reachable_cells(&std::fs::read(path).unwrap(), usize::try_from(page_size).unwrap(), root, 0)
}

fn import(path: &Path) -> (ImportReport, Vec<Message>) {
    let mut messages = Vec::new();
    let report = import_hermes_db(path, &mut |e| {
        if let Entry::Message(m) = e {
            messages.push(m);
        }
        Ok(())
    })
    .unwrap();
    (report, messages)
}

fn flags(m: &Message) -> serde_json::Value {
    m.extra
        .as_deref()
        .and_then(|e| serde_json::from_str::<serde_json::Value>(e).ok())
        .map(|e| e["logbook_import"].clone())
        .unwrap_or(serde_json::Value::Null)
}

#[test]
fn every_reachable_message_is_imported() {
    let t = tempfile::tempdir().unwrap();
    for name in ["state-v30-damaged.db", "state-v30-bitrot.db"] {
        let path = fixture(t.path(), name);
        let reachable = reachable_messages(&path);
        let (report, messages) = import(&path);
        eprintln!("{name}: {} messages imported of {reachable} rows a byte-level reader reaches", report.messages);
        assert_eq!(report.messages, reachable, "{name}: {report:?}");
        assert_eq!(messages.len() as u64, reachable);
    }
}

#[test]
fn bit_rot_is_repaired_and_flagged() {
    let t = tempfile::tempdir().unwrap();
    let path = fixture(t.path(), "state-v30-bitrot.db");
    let exp: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/hermes/expected.json")).unwrap(),
    )
    .unwrap();
    let exp = &exp["state-v30-bitrot.db"];
    let (report, messages) = import(&path);
    assert_eq!(report.unreadable_rows, 0, "{:?}", report.warnings);
    assert_eq!(report.lossy_utf8_messages, exp["content_flipped"].as_u64().unwrap(), "{report:?}");
    assert_eq!(report.session_ids_inferred, exp["session_id_flipped"].as_u64().unwrap(), "{report:?}");
    assert_eq!(report.timestamps_inferred, exp["timestamp_retyped"].as_u64().unwrap(), "{report:?}");

    // Every repaired message says what was repaired, and carries its source row.
    let lossy = messages.iter().filter(|m| flags(m)["lossy_utf8"] == serde_json::json!(["content"])).count();
    assert_eq!(lossy as u64, report.lossy_utf8_messages);
    for m in messages.iter().filter(|m| !flags(m).is_null()) {
        assert!(flags(m)["source_rowid"].is_i64(), "{:?}", m.extra);
    }
    // Repaired session ids are real sessions; repaired timestamps lie inside their session.
    let clean = fixture(t.path(), "state-v30.db");
    let (_, healthy) = import(&clean);
    let key = |m: &Message| (m.session_id.clone(), m.role.clone(), tidelog::hermes_source_rowid(m).unwrap());
    let by_row: std::collections::HashMap<_, &Message> = healthy.iter().map(|m| (key(m), m)).collect();
    for m in &messages {
        let h = by_row.get(&key(m)).unwrap_or_else(|| panic!("no healthy row for {:?}", key(m)));
        if flags(m)["timestamp_from"].is_string() {
            assert!((m.timestamp - h.timestamp).abs() < 3600.0, "{} vs {}", m.timestamp, h.timestamp);
        } else {
            assert_eq!(m.timestamp, h.timestamp);
        }
        if !flags(m)["lossy_utf8"].is_array() {
            assert_eq!(m.content, h.content);
        }
    }
}
