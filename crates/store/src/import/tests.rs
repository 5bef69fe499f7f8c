#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::hermes::import_hermes_db;
use super::ids::{Fnv128, imported_message_id, timestamp_millis};
use super::json::{J, Style};
use super::jsonl::import_jsonl;
use super::sqlite::open_read_only;
use super::{ImportError, ImportReport, SinkError};
use crate::entry::Entry;
use crate::model::{Message, SessionPatch};
use crate::time::parse_iso8601;

/// The committed fixtures (`tests/fixtures/hermes`, made by `gen-hermes-fixtures`).
fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/hermes")
}

/// Copies a fixture (file or folder) into a fresh temporary folder; fixtures are never opened
/// in place. Always `Some`: a missing fixture fails the test.
fn copy_fixture(name: &str) -> Option<(tempfile::TempDir, PathBuf)> {
    let src = fixture_dir().join(name);
    assert!(src.exists(), "missing fixture {} (regenerate with gen-hermes-fixtures)", src.display());
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join(name.trim_end_matches('/'));
    if src.is_dir() {
        std::fs::create_dir_all(&dst).unwrap();
        for entry in std::fs::read_dir(&src).unwrap() {
            let p = entry.unwrap().path();
            std::fs::copy(&p, dst.join(p.file_name().unwrap())).unwrap();
        }
    } else {
        std::fs::copy(&src, &dst).unwrap();
    }
    Some((tmp, dst))
}

fn collect(
    f: impl FnOnce(&mut dyn FnMut(Entry) -> Result<(), SinkError>) -> Result<ImportReport, ImportError>,
) -> (ImportReport, Vec<SessionPatch>, Vec<Message>) {
    let mut sessions = Vec::new();
    let mut messages = Vec::new();
    let mut saw_message = false;
    let report = f(&mut |e| {
        match e {
            Entry::Session(s) => {
                assert!(!saw_message, "a session patch came after a message");
                sessions.push(s);
            }
            Entry::Message(m) => {
                saw_message = true;
                messages.push(m);
            }
            e => panic!("an import produced {e:?}"),
        }
        Ok(())
    })
    .unwrap();
    (report, sessions, messages)
}

fn import_db(name: &str) -> Option<(ImportReport, Vec<SessionPatch>, Vec<Message>)> {
    let (_tmp, path) = copy_fixture(name)?;
    Some(collect(|sink| import_hermes_db(&path, sink)))
}

fn import_sidecars() -> Option<(ImportReport, Vec<SessionPatch>, Vec<Message>)> {
    let (_tmp, dir) = copy_fixture("sessions")?;
    Some(collect(|sink| import_jsonl(&[dir], sink)))
}

fn expected() -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(fixture_dir().join("expected.json")).unwrap();
    Some(serde_json::from_str(&text).unwrap())
}

fn assert_ordered(messages: &[Message]) {
    for w in messages.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        assert!(
            a.session_id < b.session_id || (a.session_id == b.session_id && a.timestamp <= b.timestamp),
            "messages out of order: {} {} then {} {}",
            a.session_id,
            a.timestamp,
            b.session_id,
            b.timestamp
        );
    }
}

fn distinct_ids(messages: &[Message]) -> HashSet<String> {
    messages.iter().map(|m| m.id.clone()).collect()
}

#[test]
fn v11_counts() {
    let (Some((report, sessions, messages)), Some(exp)) = (import_db("state-v11.db"), expected()) else {
        return;
    };
    let exp = &exp["state-v11.db"];
    assert_eq!(report.schema_version, Some(11));
    assert_eq!(report.sessions, exp["sessions"].as_u64().unwrap());
    assert_eq!(report.messages, exp["messages"].as_u64().unwrap());
    assert_eq!(sessions.len() as u64, report.sessions);
    assert_eq!(messages.len() as u64, report.messages);
    assert_eq!(report.unreadable_rows, 0);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(distinct_ids(&messages).len(), messages.len());
    assert_ordered(&messages);
}

#[test]
fn v30_counts_and_mapping() {
    let (Some((report, sessions, messages)), Some(exp)) = (import_db("state-v30.db"), expected()) else {
        return;
    };
    let exp = &exp["state-v30.db"];
    assert_eq!(report.schema_version, Some(30));
    assert_eq!(report.sessions, exp["sessions"].as_u64().unwrap());
    assert_eq!(report.messages, exp["messages"].as_u64().unwrap());
    assert_eq!(report.unreadable_rows, 0);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(distinct_ids(&messages).len(), messages.len());
    assert_ordered(&messages);

    // Lineage, and the v25+ system prompt brought in from `system_prompts`.
    let child = sessions.iter().find(|s| s.id == "20260501_060937_950afd").unwrap();
    assert_eq!(child.parent_session_id.as_deref(), Some("20260501_030107_08fb17"));
    assert_eq!(child.source.as_deref(), Some("discord"));
    assert_eq!(child.model.as_deref(), Some("hermes-4-70b"));
    assert_eq!(child.end_reason.as_deref(), Some("user_exit"));
    assert!(child.started_at.unwrap() > 1.7e9);
    for s in &sessions {
        let extra: serde_json::Value = serde_json::from_str(s.extra.as_deref().unwrap()).unwrap();
        let prompt = extra["system_prompt"].as_str().unwrap();
        assert!(prompt.starts_with("You are Hermes."), "{prompt}");
        assert_eq!(extra["system_prompt_hash"].as_str().unwrap().len(), 64);
        assert_eq!(extra["model_config"], "{\"temperature\": 0.7}");
    }

    // Every message carries its session's source.
    let source: HashMap<&str, Option<&str>> = sessions.iter().map(|s| (s.id.as_str(), s.source.as_deref())).collect();
    for m in &messages {
        assert_eq!(m.source.as_deref(), source[m.session_id.as_str()]);
        assert!(m.id.starts_with("hermes-") && m.id.len() == 39, "{}", m.id);
    }

    // An assistant message that only calls tools: NULL content, tool_calls JSON text.
    let call = messages.iter().find(|m| m.role == "assistant" && m.tool_calls.is_some()).unwrap();
    assert_eq!(call.content, None);
    assert_eq!(call.finish_reason.as_deref(), Some("tool_calls"));
    let calls: serde_json::Value = serde_json::from_str(call.tool_calls.as_deref().unwrap()).unwrap();
    assert!(calls.as_array().is_some_and(|a| !a.is_empty()));
    // ... and the tool result answering it.
    let id = calls[0]["id"].as_str().unwrap();
    let result = messages.iter().find(|m| m.tool_call_id.as_deref() == Some(id)).unwrap();
    assert_eq!(result.role, "tool");
    assert!(result.tool_name.is_some());

    // Unknown columns kept in `extra`, under their Hermes names.
    let extra: serde_json::Value = serde_json::from_str(call.extra.as_deref().unwrap()).unwrap();
    assert!(extra["id"].as_i64().is_some());
    assert_eq!(extra["active"], 1);

    // Multimodal content kept verbatim, marker included.
    assert_eq!(
        messages.iter().filter(|m| m.content.as_deref().is_some_and(|c| c.starts_with("\u{0}json:["))).count(),
        9
    );
    assert!(messages.iter().any(|m| m.content.as_ref().is_some_and(|c| c.len() > 50_000)));
    assert!(messages.iter().any(|m| m.token_count.is_some()));
    assert!(messages.iter().any(|m| m.reasoning.is_some()));
}

/// CJK text and emoji come out byte-for-byte as SQLite holds them.
#[test]
fn cjk_and_emoji_round_trip() {
    let Some((_tmp, path)) = copy_fixture("state-v30.db") else {
        return;
    };
    let (_, _, messages) = collect(|sink| import_hermes_db(&path, sink));
    let conn = open_read_only(&path).unwrap();
    let mut stmt =
        conn.prepare("SELECT session_id, timestamp, content FROM messages WHERE content IS NOT NULL").unwrap();
    let rows: Vec<(String, f64, String)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().collect::<Result<_, _>>().unwrap();
    let wide: Vec<_> = rows
        .iter()
        .filter(|(_, _, c)| c.chars().any(|ch| ('\u{4e00}'..='\u{9fff}').contains(&ch)))
        .filter(|(_, _, c)| c.chars().any(|ch| ch as u32 >= 0x1f300))
        .collect();
    assert!(!wide.is_empty(), "no message with both CJK and emoji in the fixture");
    for (sid, ts, content) in wide {
        let m = messages.iter().find(|m| &m.session_id == sid && m.timestamp == *ts).unwrap();
        assert_eq!(m.content.as_deref(), Some(content.as_str()));
    }
}

#[test]
fn damaged_database_is_salvaged_row_by_row() {
    let (Some((report, sessions, messages)), Some(exp)) = (import_db("state-v30-damaged.db"), expected()) else {
        return;
    };
    let exp = &exp["state-v30-damaged.db"];
    let readable = exp["messages_readable_by_rowid"].as_u64().unwrap();
    let total = exp["messages_total"].as_u64().unwrap();
    assert_eq!(sessions.len(), 24);
    assert_eq!(report.messages, readable);
    assert_eq!(report.unreadable_rows, total - readable);
    assert_eq!(distinct_ids(&messages).len(), messages.len());
    assert_ordered(&messages);
    assert!(report.warnings.iter().any(|w| w.contains("salvaged")), "{:?}", report.warnings);
}

#[test]
fn sidecars() {
    let (Some((report, sessions, messages)), Some(exp)) = (import_sidecars(), expected()) else {
        return;
    };
    let exp = &exp["sessions/"];
    assert_eq!(sessions.len() as u64, exp["files"].as_u64().unwrap());
    assert_eq!(report.messages, exp["messages"].as_u64().unwrap());
    assert!(report.bad_lines.is_empty(), "{:?}", report.bad_lines);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    let mut cut: Vec<(String, usize)> =
        report.cut_lines.iter().map(|(p, n)| (p.file_name().unwrap().to_string_lossy().into_owned(), *n)).collect();
    cut.sort();
    assert_eq!(
        cut,
        [
            ("20260502_033710_1037a0.jsonl".to_string(), 28),
            ("20260503_055031_a405af.jsonl".to_string(), 16),
            ("20260505_061240_0cb674.jsonl".to_string(), 10),
        ]
    );
    let s = sessions.iter().find(|s| s.id == "20260503_165910_2ad761").unwrap();
    assert_eq!(s.source.as_deref(), Some("api_server"));
    assert_eq!(s.model.as_deref(), Some("claude-sonnet-4.5"));
    assert!((s.started_at.unwrap() - 1_777_827_550.757_505).abs() < 1e-6);
    assert!(s.extra.as_deref().unwrap().contains("\"tools\""));
    assert_eq!(distinct_ids(&messages).len(), messages.len());
    for m in &messages {
        assert!(m.source.is_some());
        if let Some(tc) = &m.tool_calls {
            assert!(serde_json::from_str::<serde_json::Value>(tc).unwrap().is_array());
        }
    }
}

/// The last 12 sessions of state-v30.db are the sidecars' conversations: importing both
/// gives each message once, byte-identical fields included.
#[test]
fn database_and_sidecars_dedup() {
    let (Some((_, db_sessions, db_messages)), Some((_, jl_sessions, jl_messages))) =
        (import_db("state-v30.db"), import_sidecars())
    else {
        return;
    };
    let mut ids = distinct_ids(&db_messages);
    ids.extend(distinct_ids(&jl_messages));
    assert_eq!(ids.len(), 458);
    let sessions: HashSet<&str> = db_sessions.iter().chain(&jl_sessions).map(|s| s.id.as_str()).collect();
    assert_eq!(sessions.len(), 24);

    let by_id: HashMap<&str, &Message> = db_messages.iter().map(|m| (m.id.as_str(), m)).collect();
    for m in &jl_messages {
        let d = by_id[m.id.as_str()];
        assert_eq!(d.session_id, m.session_id);
        assert_eq!(d.role, m.role);
        assert_eq!(d.content, m.content);
        assert_eq!(d.tool_calls, m.tool_calls, "tool_calls written as Hermes writes them");
        assert_eq!(d.tool_call_id, m.tool_call_id);
        assert_eq!(d.tool_name, m.tool_name);
        assert_eq!(d.reasoning, m.reasoning);
        assert_eq!(d.finish_reason, m.finish_reason);
        assert_eq!(d.token_count, m.token_count);
        assert_eq!(d.source, m.source);
        assert!((d.timestamp - m.timestamp).abs() < 1e-6);
    }
}

/// The first 12 sessions of state-v30.db are the conversations of state-v11.db.
#[test]
fn schema_eras_dedup() {
    let (Some((_, _, v11)), Some((_, _, v30))) = (import_db("state-v11.db"), import_db("state-v30.db")) else {
        return;
    };
    let v30_ids = distinct_ids(&v30);
    assert!(v11.iter().all(|m| v30_ids.contains(&m.id)));
}

fn fingerprint(path: &Path) -> (u128, std::time::SystemTime, u64) {
    let bytes = std::fs::read(path).unwrap();
    let mut h = Fnv128::new();
    h.write(&bytes);
    let meta = std::fs::metadata(path).unwrap();
    (h.finish(), meta.modified().unwrap(), meta.len())
}

#[test]
fn source_database_is_not_touched() {
    for name in ["state-v11.db", "state-v30.db", "state-v30-damaged.db"] {
        let Some((tmp, path)) = copy_fixture(name) else {
            return;
        };
        let before = fingerprint(&path);
        let (report, _, _) = collect(|sink| import_hermes_db(&path, sink));
        assert!(report.messages > 0);
        assert_eq!(fingerprint(&path), before, "{name} changed");
        let files: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(files, [std::ffi::OsString::from(name)], "files appeared beside {name}");
    }
}

#[test]
fn sink_error_stops_the_import() {
    let Some((_tmp, path)) = copy_fixture("state-v30.db") else {
        return;
    };
    let mut seen = 0;
    let err = import_hermes_db(&path, &mut |_| {
        seen += 1;
        if seen == 30 { Err("disk full".into()) } else { Ok(()) }
    })
    .unwrap_err();
    assert_eq!(seen, 30);
    assert!(matches!(err, ImportError::Sink { .. }));
    assert!(err.to_string().contains("disk full"), "{err}");
}

/// Hermes Agent killed (or running) leaves commits in `state.db-wal`: they are imported, read
/// through a private copy, and neither file changes.
#[test]
fn commits_in_the_wal_are_imported_without_touching_the_files() {
    let Some((tmp, path)) = copy_fixture("state-v30.db") else {
        return;
    };
    let writer = Connection::open(&path).unwrap();
    writer.execute_batch("PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;").unwrap();
    let sid: String = writer.query_row("SELECT id FROM sessions ORDER BY rowid LIMIT 1", [], |r| r.get(0)).unwrap();
    for i in 0..5 {
        writer
            .execute(
                "INSERT INTO messages(session_id, role, content, timestamp) VALUES (?1, 'user', ?2, ?3)",
                rusqlite::params![sid, format!("only in the WAL {i}"), 1_900_000_000.0 + f64::from(i)],
            )
            .unwrap();
    }
    let wal = tmp.path().join("state-v30.db-wal");
    assert!(std::fs::metadata(&wal).unwrap().len() > 0, "the writer left no WAL");
    let before = (fingerprint(&path), fingerprint(&wal));
    let (report, _, messages) = collect(|sink| import_hermes_db(&path, sink));
    assert_eq!(report.messages, 463, "{:?}", report.warnings);
    assert_eq!(
        messages.iter().filter(|m| m.content.as_deref().is_some_and(|c| c.starts_with("only in the WAL"))).count(),
        5
    );
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!((fingerprint(&path), fingerprint(&wal)), before, "the database or its WAL changed");
    drop(writer);
}

/// A `-wal` that is not a WAL (junk, or one of another database) is ignored as SQLite ignores it.
#[test]
fn a_junk_wal_beside_the_database_is_ignored() {
    let Some((_tmp, path)) = copy_fixture("state-v30.db") else {
        return;
    };
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::write(PathBuf::from(wal), b"not really a wal").unwrap();
    let (report, _, _) = collect(|sink| import_hermes_db(&path, sink));
    assert_eq!(report.messages, 458);
}

#[test]
fn minimal_schema_and_odd_values() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("state.db");
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE sessions(id TEXT PRIMARY KEY, source TEXT NOT NULL, started_at REAL NOT NULL,
                               system_prompt TEXT, mood BLOB);
         CREATE TABLE messages(id INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL,
                               role TEXT NOT NULL, content TEXT, timestamp REAL NOT NULL,
                               token_count TEXT);
         INSERT INTO sessions VALUES ('s1', 'cli', 1000.5, 'Be brief.', x'00ff');
         INSERT INTO messages(session_id, role, content, timestamp, token_count)
             VALUES ('s1', 'user', 'same', 1001.0, 'many'),
                    ('s1', 'user', 'same', 1001.0, NULL),
                    ('s1', 'user', NULL, 1002, NULL);",
    )
    .unwrap();
    drop(conn);
    let (report, sessions, messages) = collect(|sink| import_hermes_db(&path, sink));
    assert_eq!(report.schema_version, None);
    assert_eq!((report.sessions, report.messages), (1, 3));
    let extra: serde_json::Value = serde_json::from_str(sessions[0].extra.as_deref().unwrap()).unwrap();
    assert_eq!(extra["system_prompt"], "Be brief.");
    assert_eq!(extra["mood"]["$blob"], "00ff");
    // Two genuinely repeated messages keep distinct ids.
    assert_ne!(messages[0].id, messages[1].id);
    assert_eq!(messages[0].id, imported_message_id("s1", "user", 1001.0, Some("same"), None));
    assert_eq!(messages[0].token_count, None);
    assert!(messages[0].extra.as_deref().unwrap().contains("\"token_count\":\"many\""));
    assert_eq!(messages[2].timestamp, 1002.0);
    assert_eq!(messages[2].content, None);
}

/// Pages overwritten in the middle of both tables: whatever the scans emitted before failing
/// is not emitted again by the salvage, and every row is either imported or counted.
#[test]
fn damage_mid_table_is_neither_duplicated_nor_lost_silently() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("state.db");
    let mut conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        "PRAGMA page_size = 4096;
         CREATE TABLE sessions(id TEXT PRIMARY KEY, source TEXT NOT NULL, started_at REAL NOT NULL, note TEXT);
         CREATE TABLE messages(id INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL,
                               role TEXT NOT NULL, content TEXT, timestamp REAL NOT NULL);",
    )
    .unwrap();
    let tx = conn.transaction().unwrap();
    for i in 0..300 {
        tx.execute(
            "INSERT INTO sessions VALUES (?1, 'cli', ?2, ?3)",
            rusqlite::params![format!("s{i:04}"), f64::from(i), "n".repeat(900)],
        )
        .unwrap();
        tx.execute(
            "INSERT INTO messages(session_id, role, content, timestamp) VALUES (?1, 'user', ?2, ?3)",
            rusqlite::params![format!("s{:04}", i % 7), "m".repeat(900), f64::from(i)],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    drop(conn);
    let mut bytes = std::fs::read(&path).unwrap();
    let pages = bytes.len() / 4096;
    for page in (pages / 4..pages).step_by(9) {
        bytes[page * 4096..page * 4096 + 4096].fill(0x55);
    }
    std::fs::write(&path, &bytes).unwrap();

    let (report, sessions, messages) = collect(|sink| import_hermes_db(&path, sink));
    let session_ids: HashSet<&str> = sessions.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(session_ids.len(), sessions.len(), "a session emitted twice");
    assert_eq!(distinct_ids(&messages).len(), messages.len(), "a message emitted twice");
    assert!(!sessions.is_empty() && !messages.is_empty());
    assert!(sessions.len() < 300 && messages.len() < 300, "both tables damaged");
    assert!(report.unreadable_rows > 0, "{report:?}");
    assert!(sessions.len() as u64 + messages.len() as u64 + report.unreadable_rows <= 600);
    assert_ordered(&messages);
}

fn write_jsonl(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn jsonl_bad_and_cut_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = r#"{"role": "session_meta", "session_id": "s9", "model": "m", "platform": "cli", "timestamp": "2026-05-03T16:59:10.5+02:00"}"#;
    let text = format!(
        "{meta}\n\
         {{\"role\": \"user\", \"content\": \"hi 你好 🧪\", \"timestamp\": \"2026-05-03T17:00:00Z\", \"message_id\": 77}}\n\
         {{\"role\": \"user\", \"content\": broken}}\n\
         \n\
         [1, 2]\n\
         {{\"role\": \"assistant\", \"content\": [{{\"type\": \"text\", \"text\": \"é\"}}], \"timestamp\": 1777827610.25}}\n\
         {{\"role\": \"tool\", \"content\": \"ok\", \"tool_call_id\": \"c1\", \"timestamp\": \"2026-05-03 17:00:01\"}}\n\
         {{\"role\": \"user\", \"content\": \"no time\"}}\n\
         {{\"role\": \"assistant\", \"content\": \"cut"
    );
    let path = write_jsonl(tmp.path(), "s9.jsonl", &text);
    let (report, sessions, messages) = collect(|sink| import_jsonl(std::slice::from_ref(&path), sink));
    assert_eq!(sessions[0].id, "s9");
    assert_eq!(sessions[0].started_at, Some(1_777_820_350.5));
    assert_eq!(messages.len(), 3);
    assert_eq!(messages[0].content.as_deref(), Some("hi 你好 🧪"));
    assert_eq!(messages[0].timestamp, 1_777_827_600.0);
    assert_eq!(messages[0].extra.as_deref(), Some("{\"message_id\":77}"));
    assert_eq!(messages[1].content.as_deref(), Some("\u{0}json:[{\"type\": \"text\", \"text\": \"\\u00e9\"}]"));
    assert_eq!(messages[2].tool_call_id.as_deref(), Some("c1"));
    let bad: Vec<usize> = report.bad_lines.iter().map(|b| b.1).collect();
    assert_eq!(bad, [3, 5, 8]);
    assert_eq!(report.cut_lines, [(path.clone(), 9)]);
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);

    // A last line that is whole but lacks its newline is a message.
    let path = write_jsonl(
        tmp.path(),
        "s10.jsonl",
        "{\"role\": \"user\", \"content\": \"x\", \"timestamp\": \"2026-01-01T00:00:00Z\"}",
    );
    let (report, sessions, messages) = collect(|sink| import_jsonl(&[path], sink));
    assert_eq!(sessions[0].id, "s10");
    assert_eq!(messages.len(), 1);
    assert!(report.cut_lines.is_empty());
    assert_eq!(report.warnings.len(), 1, "no session_meta: {:?}", report.warnings);
}

#[test]
fn jsonl_never_panics_on_garbage() {
    let tmp = tempfile::tempdir().unwrap();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut bytes = Vec::new();
    for _ in 0..20_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.push(b"{}[]\":,0123456789.eE+-tfnul \n\\abcz\xff\xc3"[(state % 36) as usize]);
    }
    let path = tmp.path().join("garbage.jsonl");
    std::fs::write(&path, &bytes).unwrap();
    let report = import_jsonl(&[path], &mut |_| Ok(())).unwrap();
    assert_eq!(report.messages, 0);
    let db = tmp.path().join("garbage.db");
    let mut header = b"SQLite format 3\0".to_vec();
    header.extend_from_slice(&bytes);
    std::fs::write(&db, &header).unwrap();
    assert!(import_hermes_db(&db, &mut |_| Ok(())).is_err());
}

#[test]
fn iso8601() {
    let p = |s: &str| parse_iso8601(s).map(|(t, _)| t);
    assert_eq!(p("1970-01-01T00:00:00Z"), Some(0.0));
    assert_eq!(p("1970-01-01T00:00:00+00:00"), Some(0.0));
    assert_eq!(p("1970-01-01T01:00:00+01:00"), Some(0.0));
    assert_eq!(p("1969-12-31T19:00:00-0500"), Some(0.0));
    assert_eq!(p("2000-02-29T12:00:00.25Z"), Some(951_825_600.25));
    assert_eq!(p("2026-05-03T16:59:10.757505+00:00"), Some(1_777_827_550.757_505));
    assert_eq!(p("2026-05-03 16:59:10,5+00"), Some(1_777_827_550.5));
    assert_eq!(p("2026-05-03T16:59Z"), Some(1_777_827_540.0));
    assert_eq!(p("1900-03-01T00:00:00Z"), Some(-2_203_891_200.0));
    assert_eq!(parse_iso8601("2026-05-03T16:59:10.5"), Some((1_777_827_550.5, true)));
    for bad in [
        "",
        "2026",
        "2026-13-01T00:00:00Z",
        "2026-02-29T00:00:00Z",
        "2026-05-03T24:00:00Z",
        "2026-05-03T16:59:10.Z",
        "2026-05-03T16:59:10Zjunk",
        "2026-05-03T1:59:10Z",
        "今日",
        "2026-05-03T16:59:10+99:00",
    ] {
        assert_eq!(p(bad), None, "{bad}");
    }
}

#[test]
fn ids_share_milliseconds_across_sources() {
    // A REAL from SQLite and the ISO text Python writes for it.
    let db = 1_777_593_654.768_046_1;
    let iso = parse_iso8601("2026-05-01T00:00:54.768046+00:00").unwrap().0;
    assert_eq!(
        imported_message_id("s", "user", db, Some("a"), None),
        imported_message_id("s", "user", iso, Some("a"), None)
    );
    assert_eq!(timestamp_millis(db), 1_777_593_654_768);
    assert_eq!(timestamp_millis(0.9999996), 1000, "rounds to microseconds first");
    assert_eq!(timestamp_millis(-0.5), -500);
    assert_eq!(timestamp_millis(f64::NAN), i64::MIN);
    let a = imported_message_id("s", "user", 1.0, None, None);
    assert_ne!(a, imported_message_id("s", "user", 1.0, Some(""), None));
    assert_ne!(a, imported_message_id("s", "user", 1.0, None, Some("")));
    assert_ne!(a, imported_message_id("s", "assistant", 1.0, None, None));
    assert_ne!(a, imported_message_id("s", "user", 1.001, None, None));
    assert_eq!(a, imported_message_id("s", "user", 1.0004, None, None));
    // Pinned: changing the derivation would duplicate every message imported before.
    assert_eq!(a, "hermes-eb447977fa39322fab01fbf0002ccb13");
}

#[test]
fn python_style_json() {
    let j: J = serde_json::from_str(r#"{"b": [1, -2, 1.5, 1e-7, 1e16, true, null], "a": "é🧪\u007f\n"}"#).unwrap();
    assert_eq!(
        j.to_json(Style::Python),
        r#"{"b": [1, -2, 1.5, 1e-07, 1e+16, true, null], "a": "\u00e9\ud83e\uddea\u007f\n"}"#
    );
    assert_eq!(j.to_json(Style::Compact), "{\"b\":[1,-2,1.5,1e-07,1e+16,true,null],\"a\":\"é🧪\u{7f}\\n\"}");
}

/// A small store whose damage a bit flip could cause: text that is not UTF-8, a timestamp that
/// is text, a session id that is not UTF-8. Rows 1..=6 of session `s1`, 7 of `s2`.
fn bit_flipped_db(dir: &Path) -> PathBuf {
    let path = dir.join("state.db");
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE sessions(id TEXT PRIMARY KEY, source TEXT NOT NULL, started_at REAL NOT NULL);
         CREATE TABLE messages(id INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL,
                               role TEXT NOT NULL, content TEXT, timestamp REAL NOT NULL);
         INSERT INTO sessions VALUES ('s1', 'cli', 1000.0), ('s2', 'cli', 2000.0);
         INSERT INTO messages(session_id, role, content, timestamp) VALUES
             ('s1', 'user', 'hello', 1001.0),
             ('s1', 'assistant', CAST(x'68e96c6c6f' AS TEXT), 1002.0),
             ('s1', 'user', 'when?', 1003.0),
             ('s1', 'assistant', 'now', 'x'),
             (CAST(x'73ff' AS TEXT), 'user', 'which session?', 1005.0),
             ('s1', 'assistant', 'this one', 1006.0),
             ('s2', 'user', 'first', CAST(x'ff' AS BLOB));",
    )
    .unwrap();
    path
}

fn import_flags(m: &Message) -> serde_json::Value {
    let extra: serde_json::Value = serde_json::from_str(m.extra.as_deref().unwrap_or("{}")).unwrap();
    extra["logbook_import"].clone()
}

#[test]
fn invalid_utf8_text_is_decoded_lossily_and_flagged() {
    let tmp = tempfile::tempdir().unwrap();
    let (report, _, messages) = collect(|sink| import_hermes_db(&bit_flipped_db(tmp.path()), sink));
    assert_eq!(report.unreadable_rows, 0, "{:?}", report.warnings);
    assert_eq!(report.messages, 7);
    assert_eq!(report.lossy_utf8_messages, 1);
    let m = messages.iter().find(|m| m.content.as_deref() == Some("h\u{fffd}llo")).unwrap();
    assert_eq!(import_flags(m)["lossy_utf8"], serde_json::json!(["content"]));
    assert_eq!(import_flags(m)["source_rowid"], 2);
    assert_eq!(super::hermes_source_rowid(m), Some(2));
}

#[test]
fn unreadable_timestamp_is_taken_from_the_session_and_flagged() {
    let tmp = tempfile::tempdir().unwrap();
    let (report, _, messages) = collect(|sink| import_hermes_db(&bit_flipped_db(tmp.path()), sink));
    assert_eq!(report.timestamps_inferred, 2, "{:?}", report.warnings);
    let now = messages.iter().find(|m| m.content.as_deref() == Some("now")).unwrap();
    assert_eq!(now.timestamp, 1003.0, "the previous row of its session");
    assert_eq!(import_flags(now)["timestamp_from"], "previous_row");
    // The only row of its session: the session's start.
    let first = messages.iter().find(|m| m.content.as_deref() == Some("first")).unwrap();
    assert_eq!(first.timestamp, 2000.0);
    assert_eq!(import_flags(first)["timestamp_from"], "session_start");
    assert_ordered(&messages);
}

#[test]
fn unreadable_session_id_is_taken_from_the_neighbours_and_flagged() {
    let tmp = tempfile::tempdir().unwrap();
    let (report, _, messages) = collect(|sink| import_hermes_db(&bit_flipped_db(tmp.path()), sink));
    assert_eq!(report.session_ids_inferred, 1, "{:?}", report.warnings);
    let m = messages.iter().find(|m| m.content.as_deref() == Some("which session?")).unwrap();
    assert_eq!(m.session_id, "s1");
    assert_eq!(import_flags(m)["session_id_from"], "neighbour_rows");
    assert!(super::is_repaired_import(m));
    assert!(!super::is_repaired_import(messages.iter().find(|m| m.content.as_deref() == Some("hello")).unwrap()));
}
