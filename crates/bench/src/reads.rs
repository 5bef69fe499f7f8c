//! Reads at scale: a store of N messages (default 200,000; the figure is 1,000,000) and
//! a SQLite database holding the same rows in Hermes' schema (v11: trigram FTS5 over the text),
//! the same questions asked of both, medians of 5 runs, ratios in one run.
//!
//! `cargo run --release -p tidelog-bench -- reads --messages 1000000 --dir /path` (the store and
//! the SQLite file are built once under `--dir` and reused by later runs).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rusqlite::Connection;
use tidelog::{HermesSearch, HistoryQuery, Message, SearchOrder, SearchQuery, Store, StoreOptions};

use crate::workload;

/// Messages per session.
const PER_SESSION: usize = 500;
/// One message in this many carries the rare word.
const RARE_EVERY: usize = 20_000;

fn session_of(i: usize) -> String {
    format!("session-{:06}", i / PER_SESSION)
}

/// The messages: ~1 KB of chat text each; every one holds "invoice", one in 20,000 "zebraquartz".
fn batch(from: usize, n: usize) -> Vec<Message> {
    workload::messages(from as u64, n, 1000)
        .into_iter()
        .enumerate()
        .map(|(k, mut m)| {
            let i = from + k;
            m.session_id = session_of(i);
            m.id = format!("m{i:09}");
            m.timestamp = 1_780_000_000.0 + i as f64;
            let rare = if i % RARE_EVERY == 7 { " zebraquartz" } else { "" };
            m.content = Some(format!("invoice {i}{rare} {}", m.content.unwrap_or_default()));
            m
        })
        .collect()
}

fn build_store(dir: &Path, n: usize) -> Result<()> {
    if dir.join("built").exists() {
        return merge_store(dir);
    }
    let t = Instant::now();
    let opts = StoreOptions { durability: tidelog::Durability::Buffered, ..StoreOptions::default() };
    let store = Store::open(dir, opts)?;
    for from in (0..n).step_by(1000) {
        store.append_batch(batch(from, 1000.min(n - from)))?;
    }
    while !store.wait_indexed(Duration::from_secs(10)) {
        eprintln!("  indexing... {} entries left", store.status().unindexed);
    }
    store.close()?;
    std::fs::write(dir.join("built"), b"")?;
    eprintln!("built the store in {:.0} s", t.elapsed().as_secs_f64());
    merge_store(dir)
}

/// Merges the full-text indexes as a compactor does when idle after a bulk load (or `tidelog
/// checkpoint` does), so that reads are measured on the index a running store keeps. A store
/// built by an earlier version is merged on its next run.
fn merge_store(dir: &Path) -> Result<()> {
    let t = Instant::now();
    let ix = tidelog::Index::open(&dir.join(tidelog::INDEX_FILE), &tidelog::IndexOptions::default())?;
    let (due, done) = ix.merge_fully_if_due(Instant::now() + Duration::from_secs(3600))?;
    if due {
        ix.checkpoint_truncate()?;
        eprintln!("merged the full-text indexes in {:.0} s (finished: {done})", t.elapsed().as_secs_f64());
    }
    Ok(())
}

fn build_sqlite(path: &Path, n: usize) -> Result<()> {
    if path.exists() {
        return Ok(());
    }
    let t = Instant::now();
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut c = Connection::open(&tmp)?;
    c.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
         CREATE TABLE sessions(id TEXT PRIMARY KEY, source TEXT NOT NULL, started_at REAL NOT NULL, title TEXT);
         CREATE TABLE messages(id INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL, role TEXT NOT NULL,
           content TEXT, tool_call_id TEXT, tool_calls TEXT, tool_name TEXT, timestamp REAL NOT NULL,
           token_count INTEGER, finish_reason TEXT, reasoning TEXT);
         CREATE INDEX idx_messages_session ON messages(session_id, timestamp);
         CREATE VIRTUAL TABLE messages_fts_trigram USING fts5(content, tokenize='trigram');",
    )?;
    let tx = c.transaction()?;
    {
        let mut ins = tx.prepare(
            "INSERT INTO messages (session_id, role, content, tool_name, timestamp) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        let mut ses =
            tx.prepare("INSERT OR IGNORE INTO sessions (id, source, started_at) VALUES (?1, 'telegram', ?2)")?;
        for from in (0..n).step_by(1000) {
            for m in batch(from, 1000.min(n - from)) {
                ses.execute((&m.session_id, m.timestamp))?;
                ins.execute((&m.session_id, &m.role, &m.content, &m.tool_name, m.timestamp))?;
            }
        }
    }
    tx.execute(
        "INSERT INTO messages_fts_trigram(rowid, content) SELECT id, coalesce(content,'') || ' ' || coalesce(tool_name,'') FROM messages",
        [],
    )?;
    tx.commit()?;
    c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
    drop(c);
    std::fs::rename(&tmp, path)?;
    eprintln!("built the SQLite database in {:.0} s", t.elapsed().as_secs_f64());
    Ok(())
}

/// Median of 5 runs of `f` (`TIDELOG_READS_RUNS` runs: more to profile one read), in
/// milliseconds.
fn median_ms(mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let runs = std::env::var("TIDELOG_READS_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(5usize).max(1);
    let mut v = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        f()?;
        v.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    v.sort_by(f64::total_cmp);
    Ok(v[v.len() / 2])
}

fn sql_count(c: &Connection, sql: &str, p: impl rusqlite::Params) -> Result<usize> {
    let mut st = c.prepare_cached(sql)?;
    let mut rows = st.query(p)?;
    let mut n = 0;
    while rows.next()?.is_some() {
        n += 1;
    }
    Ok(n)
}

/// One row of the table.
struct Row {
    what: String,
    tidelog_ms: f64,
    sqlite_ms: f64,
}

pub fn run(dir: &Path, n: usize, only: Option<&str>, out: &mut dyn Write) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let store_dir = dir.join(format!("store-{n}"));
    build_store(&store_dir, n).context("building the store")?;
    let db = dir.join(format!("hermes-{n}.db"));
    build_sqlite(&db, n).context("building the SQLite database")?;
    let store = Store::open(&store_dir, StoreOptions { read_only: true, ..StoreOptions::default() })?;
    let c = Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mid = session_of(n / 2);
    let mut rows = Vec::new();
    let mut row = |what: &str, l: f64, s: f64| rows.push(Row { what: what.into(), tidelog_ms: l, sqlite_ms: s });
    let want = |what: &str| only.is_none_or(|o| what.contains(o));

    if want("latest 20 of a session") {
        // Latest 20 of a session (a gateway loading a transcript).
        let l = median_ms(|| {
            let q = HistoryQuery { limit: Some(20), latest: true, ..HistoryQuery::new(mid.clone()) };
            anyhow::ensure!(store.history(&q)?.len() == 20);
            Ok(())
        })?;
        let s = median_ms(|| {
            sql_count(&c, "SELECT * FROM messages WHERE session_id = ?1 ORDER BY id DESC LIMIT 20", [&mid])?;
            Ok(())
        })?;
        row("latest 20 of a session", l, s);
    }

    if want("transcript of a session (500)") {
        // Whole transcript of a session (500 messages).
        let l = median_ms(|| {
            anyhow::ensure!(store.messages(&mid)?.len() == PER_SESSION);
            Ok(())
        })?;
        let s = median_ms(|| {
            sql_count(&c, "SELECT * FROM messages WHERE session_id = ?1 ORDER BY timestamp, id", [&mid])?;
            Ok(())
        })?;
        row("transcript of a session (500)", l, s);
    }

    if want("tail -n 50") {
        // tail -n 50 (the newest 50 of the store).
        let l = median_ms(|| {
            anyhow::ensure!(store.latest(50, None)?.len() == 50);
            Ok(())
        })?;
        let s = median_ms(|| {
            sql_count(&c, "SELECT * FROM messages ORDER BY id DESC LIMIT 50", [])?;
            Ok(())
        })?;
        row("tail -n 50", l, s);
    }

    if want("export --since (last 1,000)") {
        // export --since: the newest 1,000 by time.
        let since = 1_780_000_000.0 + (n - 1000) as f64;
        let l = median_ms(|| {
            let mut k = 0;
            store.export(None, Some(since), &mut |_| {
                k += 1;
                Ok(())
            })?;
            anyhow::ensure!(k == 1000, "{k}");
            Ok(())
        })?;
        let s = median_ms(|| {
            sql_count(&c, "SELECT * FROM messages WHERE timestamp >= ?1 ORDER BY timestamp", [since])?;
            Ok(())
        })?;
        row("export --since (last 1,000)", l, s);
    }

    // Searches.
    let searches: [(&str, &str, SearchOrder, Option<&str>); 8] = [
        ("search rare word, relevance", "zebraquartz", SearchOrder::Relevance, None),
        ("search rare word, newest first", "zebraquartz", SearchOrder::Newest, None),
        ("search common word, relevance", "invoice", SearchOrder::Relevance, None),
        ("search common word, newest first", "invoice", SearchOrder::Newest, None),
        ("search common word in one session, newest", "invoice", SearchOrder::Newest, Some(mid.as_str())),
        ("search two words, newest first", "invoice zebraquartz", SearchOrder::Newest, None),
        ("search two words, relevance", "invoice zebraquartz", SearchOrder::Relevance, None),
        ("search two common words, relevance", "invoice message", SearchOrder::Relevance, None),
    ];
    for (what, text, order, session) in searches.into_iter().filter(|(w, ..)| want(w)) {
        let l = median_ms(|| {
            let q = SearchQuery { order, session_id: session.map(str::to_string), ..SearchQuery::new(text) };
            anyhow::ensure!(!store.search(&q)?.is_empty());
            Ok(())
        })?;
        let fts = text.split_whitespace().map(|w| format!("\"{w}\"")).collect::<Vec<_>>().join(" ");
        let order_sql = match order {
            SearchOrder::Relevance => "rank",
            SearchOrder::Newest => "m.timestamp DESC",
            SearchOrder::Oldest => "m.timestamp",
        };
        let filter = if session.is_some() { "AND m.session_id = ?2" } else { "AND ?2 IS NULL" };
        let sql = format!(
            "SELECT m.id, snippet(messages_fts_trigram, 0, '>>>', '<<<', '...', 40) FROM messages_fts_trigram \
             JOIN messages m ON m.id = messages_fts_trigram.rowid WHERE messages_fts_trigram MATCH ?1 {filter} \
             ORDER BY {order_sql} LIMIT 20"
        );
        let s = median_ms(|| {
            sql_count(&c, &sql, rusqlite::params![fts, session])?;
            Ok(())
        })?;
        row(what, l, s);
    }

    // Hermes' search (`search_messages`' semantics: its word index, its orders). The SQLite copy
    // has no word index: its side is Hermes' SQL for the same order on its trigram table.
    let hermes: [(&str, Option<bool>, usize, bool); 3] = [
        ("hermes search common word, newest (20)", Some(true), 20, false),
        ("hermes search common word, newest (300 user/assistant)", Some(true), 300, true),
        ("hermes search common word, relevance (20)", None, 20, false),
    ];
    for (what, newest, limit, chat) in hermes.into_iter().filter(|(w, ..)| want(w)) {
        let roles = chat.then(|| vec!["user".to_string(), "assistant".to_string()]);
        let l = median_ms(|| {
            let q = HermesSearch {
                query: "invoice".into(),
                newest_first: newest,
                limit,
                role_filter: roles.clone(),
                ..HermesSearch::default()
            };
            anyhow::ensure!(store.search_hermes(&q)?.len() == limit);
            Ok(())
        })?;
        let order = match newest {
            Some(true) => "m.timestamp DESC, rank",
            Some(false) => "m.timestamp ASC, rank",
            None => "rank",
        };
        let role = if chat { " AND m.role IN ('user', 'assistant')" } else { "" };
        let sql = format!(
            "SELECT m.id, snippet(messages_fts_trigram, 0, '>>>', '<<<', '...', 40) FROM messages_fts_trigram \
             JOIN messages m ON m.id = messages_fts_trigram.rowid JOIN sessions s ON s.id = m.session_id \
             WHERE messages_fts_trigram MATCH 'invoice'{role} ORDER BY {order} LIMIT {limit}"
        );
        let s = median_ms(|| {
            sql_count(&c, &sql, [])?;
            Ok(())
        })?;
        row(what, l, s);
    }

    // Full export: time to the first message and the rate.
    let full = if want("full export") {
        let t = Instant::now();
        let mut first = None;
        let mut k = 0u64;
        store.export(None, None, &mut |_| {
            if first.is_none() {
                first = Some(t.elapsed());
            }
            k += 1;
            Ok(())
        })?;
        let total = t.elapsed();
        let t2 = Instant::now();
        let sk = sql_count(&c, "SELECT * FROM messages ORDER BY timestamp", [])?;
        Some((first, k, total, sk, t2.elapsed()))
    } else {
        None
    };
    store.close()?;
    writeln!(out, "\n### Reads on {n} messages (~1 KB each, {PER_SESSION} per session)\n")?;
    writeln!(out, "| read | tidelog ms | SQLite (Hermes schema) ms | ratio |")?;
    writeln!(out, "|---|---:|---:|---:|")?;
    for r in &rows {
        writeln!(
            out,
            "| {} | {:.2} | {:.2} | {:.2}x |",
            r.what,
            r.tidelog_ms,
            r.sqlite_ms,
            r.tidelog_ms / r.sqlite_ms
        )?;
    }
    if let Some((first, k, total, sk, stotal)) = full {
        writeln!(
            out,
            "| full export: first message after | {:.1} | n/a | |\n| full export: total ({k} messages) | {:.0} ({:.0} msg/s) | {:.0} ({sk} rows, {:.0} rows/s) | {:.2}x |",
            first.unwrap_or_default().as_secs_f64() * 1000.0,
            total.as_secs_f64() * 1000.0,
            k as f64 / total.as_secs_f64(),
            stotal.as_secs_f64() * 1000.0,
            sk as f64 / stotal.as_secs_f64(),
            total.as_secs_f64() / stotal.as_secs_f64()
        )?;
    }
    drop(c);
    bytes_on_disk(&store_dir, &db, n, out)
}

/// Bytes on disk (allocated blocks) per message of the store (journal, index, whole folder) and
/// of the SQLite database with Hermes' schema holding the same messages.
fn bytes_on_disk(store_dir: &Path, db: &Path, n: usize, out: &mut dyn Write) -> Result<()> {
    fn on_disk(p: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        let Ok(m) = std::fs::symlink_metadata(p) else { return 0 };
        if m.is_dir() {
            std::fs::read_dir(p).into_iter().flatten().flatten().map(|e| on_disk(&e.path())).sum()
        } else {
            m.blocks() * 512
        }
    }
    let journal = on_disk(&store_dir.join("lanes"));
    let index = ["index.db", "index.db-wal", "index.db-shm"].iter().map(|f| on_disk(&store_dir.join(f))).sum::<u64>();
    let all = on_disk(store_dir);
    let sqlite =
        ["", "-wal", "-shm"].iter().map(|x| on_disk(&PathBuf::from(format!("{}{x}", db.display())))).sum::<u64>();
    let per = |b: u64| b as f64 / n as f64;
    writeln!(out, "\n### Bytes on disk, {n} messages (allocated blocks)\n")?;
    writeln!(out, "| | bytes | per message | against SQLite |")?;
    writeln!(out, "|---|---:|---:|---:|")?;
    for (what, b) in [("journal", journal), ("index", index), ("whole store", all), ("SQLite (Hermes schema)", sqlite)]
    {
        writeln!(out, "| {what} | {b} | {:.0} | {:.2}x |", per(b), b as f64 / sqlite.max(1) as f64)?;
    }
    Ok(())
}
