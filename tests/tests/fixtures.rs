//! The committed fixtures under `tests/fixtures/`:
//!
//! - `hermes/` is exactly what `gen-hermes-fixtures` writes (so it can never drift from the
//!   generator), and the counts in its `expected.json` are what plain SQL and a line count find.
//! - `journal-v1/` is a golden store folder written by an earlier version: the current code must
//!   keep reading exactly these messages and sessions from it. It is never regenerated here.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tidelog::{Entry, LANES_DIR, Message, SearchQuery, Session, SessionFilter, Store, StoreOptions, decode_entry};
use tidelog_journal::Journal;
use tidelog_tests::copy_dir;
use tidelog_tests::hermes_fixtures::{self, open_ro, readable_by_rowid, sha256_hex};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Every file under `dir`, by path relative to it, with its bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

#[test]
fn hermes_fixtures_are_the_generators_output() {
    let tmp = tempfile::tempdir().unwrap();
    hermes_fixtures::generate(tmp.path()).unwrap();
    let generated = files(tmp.path());
    let committed = files(&fixtures().join("hermes"));
    let mut names: Vec<&String> = generated.keys().collect();
    names.sort();
    assert_eq!(
        committed.keys().collect::<Vec<_>>(),
        names,
        "tests/fixtures/hermes holds other files than the generator writes"
    );
    let mut expected_names = hermes_fixtures::file_names();
    expected_names.sort();
    assert_eq!(names, expected_names.iter().collect::<Vec<_>>());
    for (name, bytes) in &generated {
        assert!(
            committed[name] == *bytes,
            "tests/fixtures/hermes/{name} differs from the generator's output; regenerate with \
             `cargo run -p tidelog-tests --bin gen-hermes-fixtures -- tests/fixtures/hermes` and commit"
        );
    }
}

fn count(conn: &rusqlite::Connection, sql: &str) -> u64 {
    conn.query_row(sql, [], |r| r.get::<_, i64>(0)).map(|n| u64::try_from(n).unwrap()).unwrap()
}

#[test]
fn hermes_counts_match_expected_json() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hermes");
    copy_dir(&fixtures().join("hermes"), &dir);
    let exp: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let n = |file: &str, key: &str| exp[file][key].as_u64().unwrap_or_else(|| panic!("expected.json: {file} {key}"));

    for (file, version) in [("state-v11.db", 11), ("state-v30.db", 30)] {
        let conn = open_ro(&dir.join(file)).unwrap();
        assert_eq!(count(&conn, "SELECT max(version) FROM schema_version"), version, "{file}");
        assert_eq!(count(&conn, "SELECT count(*) FROM sessions"), n(file, "sessions"), "{file}");
        assert_eq!(count(&conn, "SELECT count(*) FROM messages"), n(file, "messages"), "{file}");
        let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(check, "ok", "{file}");
        // The content Hermes' import has to handle is all there.
        assert!(count(&conn, "SELECT count(*) FROM messages WHERE content IS NULL AND tool_calls IS NOT NULL") > 0);
        assert!(count(&conn, "SELECT count(*) FROM messages WHERE length(CAST(content AS BLOB)) > 50000") > 0);
        assert!(count(&conn, "SELECT count(*) FROM messages WHERE content LIKE char(0) || 'json:[%'") > 0);
        assert!(count(&conn, "SELECT count(*) FROM sessions WHERE parent_session_id IS NOT NULL") > 0);
        // Both FTS tables hold every row they index.
        assert_eq!(count(&conn, "SELECT count(*) FROM messages_fts_docsize"), n(file, "messages"), "{file}");
    }

    // v30: each session's prompt is in `system_prompts` under its SHA-256.
    let conn = open_ro(&dir.join("state-v30.db")).unwrap();
    assert_eq!(
        count(&conn, "SELECT count(*) FROM sessions WHERE system_prompt_hash NOT IN (SELECT hash FROM system_prompts)"),
        0
    );
    let mut stmt = conn.prepare("SELECT hash, prompt FROM system_prompts").unwrap();
    let prompts: Vec<(String, String)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().collect::<Result<_, _>>().unwrap();
    assert!(!prompts.is_empty());
    for (hash, prompt) in prompts {
        assert_eq!(hash, sha256_hex(prompt.as_bytes()));
    }
    // The sidecars are the last sessions of v30, one file each.
    let sidecar_ids: Vec<String> = {
        let mut stmt = conn.prepare("SELECT id FROM sessions ORDER BY rowid DESC LIMIT ?1").unwrap();
        let mut ids: Vec<String> = stmt
            .query_map([i64::try_from(n("sessions/", "files")).unwrap()], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        ids.sort();
        ids
    };

    // Sidecars: whole lines that are messages; the cut-off last lines are not counted.
    let mut files = Vec::new();
    let (mut messages, mut cut) = (0, 0);
    for e in std::fs::read_dir(dir.join("sessions")).unwrap() {
        let p = e.unwrap().path();
        files.push(p.file_stem().unwrap().to_string_lossy().into_owned());
        let text = std::fs::read_to_string(&p).unwrap();
        let mut lines: Vec<&str> = text.split('\n').collect();
        let last = lines.pop().unwrap();
        if !last.is_empty() {
            assert!(serde_json::from_str::<serde_json::Value>(last).is_err(), "{}: a cut line", p.display());
            cut += 1;
        }
        let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(first["role"], "session_meta");
        assert_eq!(first["session_id"].as_str(), p.file_stem().unwrap().to_str());
        for line in &lines[1..] {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(v["timestamp"].is_string() && v["role"].is_string(), "{line}");
            messages += 1;
        }
    }
    files.sort();
    assert_eq!(files, sidecar_ids);
    assert_eq!(files.len() as u64, n("sessions/", "files"));
    assert_eq!(messages, n("sessions/", "messages"));
    assert!(cut > 0);
    let in_db = count(
        &conn,
        &format!(
            "SELECT count(*) FROM messages WHERE session_id IN (SELECT id FROM sessions ORDER BY rowid DESC LIMIT {})",
            files.len()
        ),
    );
    assert_eq!(in_db, messages, "the sidecars hold the same conversations as the database");

    // Damaged: integrity check and full scan fail; row-by-row reads find the recorded number.
    let conn = open_ro(&dir.join("state-v30-damaged.db")).unwrap();
    let check = conn.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0));
    assert!(check.as_deref() != Ok("ok"), "{check:?}");
    let scan = conn.prepare("SELECT * FROM messages").and_then(|mut s| {
        let mut rows = s.query([])?;
        while rows.next()?.is_some() {}
        Ok(())
    });
    assert!(scan.unwrap_err().to_string().contains("database disk image is malformed"));
    let total = n("state-v30-damaged.db", "messages_total");
    assert_eq!(count(&conn, "SELECT seq FROM sqlite_sequence WHERE name = 'messages'"), total);
    let readable = readable_by_rowid(&conn, i64::try_from(total).unwrap()).unwrap() as u64;
    assert_eq!(readable, n("state-v30-damaged.db", "messages_readable_by_rowid"));
    assert!(readable < total);
    assert_eq!(count(&conn, "SELECT count(*) FROM sessions"), n("state-v30.db", "sessions"));

    // Bit rot: every row is there and a full scan succeeds, but some cells are not what they were.
    let conn = open_ro(&dir.join("state-v30-bitrot.db")).unwrap();
    assert_eq!(count(&conn, "SELECT count(*) FROM messages NOT INDEXED"), n("state-v30-bitrot.db", "messages"));
    assert_eq!(
        count(&conn, "SELECT count(*) FROM messages NOT INDEXED WHERE typeof(timestamp) NOT IN ('real', 'integer')"),
        n("state-v30-bitrot.db", "timestamp_retyped")
    );
    let invalid_utf8 = |col: &str| -> u64 {
        let mut stmt = conn.prepare(&format!("SELECT {col} FROM messages NOT INDEXED")).unwrap();
        let cells: Vec<Option<Vec<u8>>> = stmt
            .query_map([], |r| Ok(r.get_ref(0)?.as_bytes_or_null().ok().flatten().map(<[u8]>::to_vec)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        cells.iter().flatten().filter(|b| std::str::from_utf8(b).is_err()).count() as u64
    };
    assert_eq!(invalid_utf8("content"), n("state-v30-bitrot.db", "content_flipped"));
    assert_eq!(invalid_utf8("session_id"), n("state-v30-bitrot.db", "session_id_flipped"));
}

// ---------------------------------------------------------------------------------------------
// journal-v1: the golden store folder
// ---------------------------------------------------------------------------------------------

fn message(id: &str, session: &str, role: &str, content: Option<&str>, timestamp: f64) -> Message {
    Message {
        id: id.into(),
        session_id: session.into(),
        role: role.into(),
        content: content.map(Into::into),
        timestamp,
        source: Some("telegram".into()),
        ..Message::default()
    }
}

/// What `gen-journal-fixture` appended, written out again by hand: the golden values. The
/// first release had no integer ids: its messages read back with `lane << 40 | lsn`.
fn golden_messages() -> Vec<Message> {
    let legacy = |lsn: i64| (1i64 << 40) | lsn;
    let mut v = vec![
        message("m-1", "tg:42", "user", Some("Where is the boat invoice? 請求書 🧾"), 1_767_225_601.25),
        Message {
            tool_calls: Some(
                r#"[{"id": "call_1", "type": "function", "function": {"name": "search_files", "arguments": "{\"q\": \"invoice\"}"}}]"#
                    .into(),
            ),
            finish_reason: Some("tool_calls".into()),
            reasoning: Some("Look in the documents folder first.".into()),
            ..message("m-2", "tg:42", "assistant", None, 1_767_225_602.5)
        },
        Message {
            tool_call_id: Some("call_1".into()),
            tool_name: Some("search_files".into()),
            ..message("m-3", "tg:42", "tool", Some("docs/boat/invoice-2025.pdf\ndocs/boat/insurance.pdf"), 1_767_225_603.0)
        },
        Message {
            token_count: Some(17),
            finish_reason: Some("stop".into()),
            extra: Some(r#"{"platform_message_id":"1001"}"#.into()),
            ..message("m-4", "tg:42", "assistant", Some("It is docs/boat/invoice-2025.pdf."), 1_767_225_604.75)
        },
        message("m-5", "tg:42", "user", Some("\u{0}json:[{\"type\": \"text\", \"text\": \"Thanks!\"}]"), 1_767_225_610.0),
        Message { source: Some("cli".into()), ..message("m-6", "cli:7", "user", Some("résumé ✓"), 1_767_229_201.0) },
    ];
    for (m, lsn) in v.iter_mut().zip([2, 3, 4, 5, 6, 9]) {
        m.num = legacy(lsn);
    }
    v
}

fn golden_sessions() -> Vec<Session> {
    vec![
        // Newest first, as `list_sessions` orders them.
        Session {
            id: "cli:7".into(),
            source: Some("cli".into()),
            parent_session_id: Some("tg:42".into()),
            started_at: Some(1_767_229_200.0),
            ..Session::default()
        },
        Session {
            id: "tg:42".into(),
            source: Some("telegram".into()),
            model: Some("hermes-4-70b".into()),
            title: Some("Boat invoice".into()),
            user_id: Some("42".into()),
            chat_id: Some("42".into()),
            parent_session_id: None,
            started_at: Some(1_767_225_600.5),
            ended_at: Some(1_767_225_700.0),
            end_reason: Some("user_exit".into()),
            extra: Some(r#"{"system_prompt":"You are Hermes."}"#.into()),
            ..Session::default()
        },
    ]
}

#[test]
fn journal_v1_reads_back_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("journal-v1");
    copy_dir(&fixtures().join("journal-v1"), &dir);
    let before = files(&dir);

    let store = Store::open(&dir, StoreOptions { read_only: true, ..StoreOptions::default() }).unwrap();
    assert!(store.recovery_report().is_clean(), "{:?}", store.recovery_report());
    assert_eq!(store.list_sessions(&SessionFilter::default()).unwrap(), golden_sessions());
    assert_eq!(store.get_session("tg:42").unwrap().as_ref(), golden_sessions().get(1));
    let golden = golden_messages();
    assert_eq!(store.messages("tg:42").unwrap(), golden[..5]);
    assert_eq!(store.messages("cli:7").unwrap(), golden[5..]);
    assert_eq!(store.all_messages(None, None).unwrap().len(), golden.len());
    let hits = store.search(&SearchQuery::new("boat")).unwrap();
    let mut ids: Vec<&str> = hits.iter().map(|h| h.message.id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["m-1", "m-3", "m-4"]);
    let hits = store.search(&SearchQuery::new("請求書")).unwrap();
    assert_eq!(hits.iter().map(|h| h.message.id.as_str()).collect::<Vec<_>>(), ["m-1"]);
    assert!(store.append(message("m-7", "tg:42", "user", Some("no"), 1.0)).is_err(), "read-only");
    store.close().unwrap();

    // The journal itself: LSNs 1..=10 in one lane, every record decodes, in append order.
    let lane = dir.join(LANES_DIR).join("lane-0001");
    let j = Journal::open_read_only(&lane, tidelog_journal::Options::default()).unwrap();
    let records: Vec<_> = j.iter_from(j.first_lsn()).collect::<Result<_, _>>().unwrap();
    assert_eq!(records.iter().map(|r| r.lsn).collect::<Vec<_>>(), (1..=10).collect::<Vec<_>>());
    let kinds: String = records
        .iter()
        .map(|r| match decode_entry(&r.payload).unwrap() {
            Entry::Session(_) => 'S',
            Entry::Message(_) => 'M',
            other => panic!("the first release wrote only messages and sessions, found {other:?}"),
        })
        .collect();
    assert_eq!(kinds, "SMMMMMSSMS");
    drop(j);

    assert!(files(&dir) == before, "reading the golden folder changed it");
}
