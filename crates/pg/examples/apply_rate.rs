//! Apply rate into PostgreSQL vs the local SQLite index, same messages, same batch size; then
//! search latency on both, and `Store::sync_remote` end to end (journal read + decode + apply).
//!
//! ```text
//! cargo run --release -p tidelog-pg --example apply_rate -- postgres://user@host/db [messages] [bytes]
//! ```
//! The database should be empty (a new one); the SQLite index goes to a temporary folder.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use tidelog::{Entry, Index, IndexOptions, Message, SearchQuery, Store, StoreOptions};
use tidelog_pg::PgTarget;

const WORDS: &[&str] = &[
    "the",
    "invoice",
    "boat",
    "deploy",
    "error",
    "kubernetes",
    "timeout",
    "retry",
    "function",
    "return",
    "config",
    "session",
    "gateway",
    "telegram",
    "message",
    "search",
    "index",
    "journal",
    "compile",
    "warning",
    "database",
    "schema",
    "migration",
    "request",
    "response",
    "token",
    "model",
    "assistant",
    "user",
    "tool",
    "result",
    "output",
    "weather",
    "calendar",
    "meeting",
    "python",
    "rust",
    "and",
    "with",
    "for",
    "from",
    "about",
    "please",
];

fn messages(n: usize, bytes: usize) -> Vec<Message> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|i| {
            let mut text = String::with_capacity(bytes + 16);
            while text.len() < bytes {
                text.push_str(WORDS[(next() % WORDS.len() as u64) as usize]);
                text.push(' ');
            }
            // One rare token per message, to search for.
            text.push_str(&format!("needle{i}x"));
            Message {
                id: format!("m{i}"),
                num: i as i64 + 1,
                session_id: format!("s{}", i % 1000),
                role: if i % 2 == 0 { "user".into() } else { "assistant".into() },
                content: Some(text),
                source: Some("bench".into()),
                timestamp: 1_700_000_000.0 + i as f64,
                ..Message::default()
            }
        })
        .collect()
}

fn rate(n: usize, d: Duration) -> String {
    format!("{:.0} msg/s ({:.2} s)", n as f64 / d.as_secs_f64(), d.as_secs_f64())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).cloned().or_else(|| std::env::var("TIDELOG_POSTGRES").ok()).expect("usage: URL [n] [bytes]");
    let n: usize = args.get(2).map_or(100_000, |s| s.parse().unwrap());
    let bytes: usize = args.get(3).map_or(2_000, |s| s.parse().unwrap());
    let batch = 2_000;
    let msgs = messages(n, bytes);
    let entries: Vec<(String, u64, Entry)> = msgs
        .iter()
        .enumerate()
        .map(|(i, m)| ("lane-0001".to_string(), i as u64 + 1, Entry::Message(m.clone())))
        .collect();
    println!("{n} messages of ~{bytes} B, batches of {batch}");

    let tmp = tempfile::tempdir().unwrap();
    let mut sq = Index::open(&tmp.path().join("index.db"), &IndexOptions::default()).unwrap();
    let t = Instant::now();
    for c in entries.chunks(batch) {
        sq.apply_batch(c).unwrap();
    }
    let sqlite = t.elapsed();
    println!("| SQLite + FTS5 trigram (local file, synchronous=FULL) | {} |", rate(n, sqlite));

    let target = PgTarget::new(&url).unwrap();
    let mut pg = target.open().unwrap();
    let store = format!("bench-{}", std::process::id());
    let t = Instant::now();
    for c in entries.chunks(batch) {
        pg.apply(&store, c).unwrap();
    }
    let postgres = t.elapsed();
    println!("| PostgreSQL 15 + pg_trgm GIN (localhost, one connection) | {} |", rate(n, postgres));
    let again = Instant::now();
    let s = pg.apply(&store, &entries[..batch.min(n)]).unwrap();
    println!(
        "| PostgreSQL, a batch replayed (all skipped: {}) | {:.1} ms |",
        s.skipped,
        again.elapsed().as_secs_f64() * 1e3
    );

    // Search: a rare token, a common word pair, a two-letter word; median of 5.
    for (label, text) in [("rare token", format!("needle{}x", n / 2)), ("two common words", "invoice boat".to_string())]
    {
        let q = SearchQuery::new(text);
        let s = median(
            (0..5)
                .map(|_| {
                    let t = Instant::now();
                    sq.search(&q).unwrap();
                    t.elapsed()
                })
                .collect(),
        );
        let p = median(
            (0..5)
                .map(|_| {
                    let t = Instant::now();
                    target.search(&q).unwrap();
                    t.elapsed()
                })
                .collect(),
        );
        println!(
            "| search, {label}, limit 20 | SQLite {:.1} ms | PostgreSQL {:.1} ms (new connection included) |",
            s.as_secs_f64() * 1e3,
            p.as_secs_f64() * 1e3
        );
    }

    // End to end: a store's journal shipped by sync_remote (read, decode, apply).
    let dir = tmp.path().join("store");
    let st = Store::open(&dir, StoreOptions { run_compactor: false, ..StoreOptions::default() }).unwrap();
    let n2 = n.min(50_000);
    let sb: Vec<Message> = msgs.iter().take(n2).map(|m| Message { id: String::new(), num: 0, ..m.clone() }).collect();
    for c in sb.chunks(1000) {
        st.append_batch(c.to_vec()).unwrap();
    }
    let t = Instant::now();
    let lag = st.sync_remote(&target).unwrap();
    println!("| Store::sync_remote end to end ({} entries) | {} |", lag.shipped, rate(n2, t.elapsed()));
    st.close().unwrap();
}
