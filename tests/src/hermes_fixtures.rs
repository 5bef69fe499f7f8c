//! A deterministic generator of Hermes Agent session stores, for the import tests: the files
//! committed under `tests/fixtures/hermes/` are its output (`cargo run -p tidelog-tests --bin
//! gen-hermes-fixtures -- tests/fixtures/hermes`), and `tests/tests/fixtures.rs` re-runs it to
//! prove they never drift.
//!
//! Everything is synthetic and comes from a seeded generator ([`crate::Rng`]); nothing depends
//! on the clock, the machine or the order of a hash map. The SQLite schemas are copied verbatim
//! from Hermes Agent's schema versions 11 and 30 (`SELECT sql FROM sqlite_master`). The bytes of
//! the databases depend on the bundled SQLite version too: upgrading `rusqlite` may change them
//! (the file header records the library version), and then the fixtures are regenerated.
//!
//! What the files hold:
//!
//! - `state-v11.db`: schema v11, 12 sessions and their messages, inline FTS5 tables
//!   (`messages_fts` unicode61 and `messages_fts_trigram` trigram) fed by a trigger.
//! - `state-v30.db`: schema v30, 24 sessions (the first 12 are the conversations of
//!   `state-v11.db`), system prompts deduplicated by SHA-256 in `system_prompts`, `state_meta`,
//!   external-content FTS5 tables over views.
//! - `state-v30-damaged.db`: `state-v30.db` with leaf pages of the `messages` table overwritten
//!   (zeros or garbage), so `PRAGMA integrity_check` fails and a full scan stops with "database
//!   disk image is malformed"; the other rows can still be read one at a time by rowid.
//! - `state-v30-bitrot.db`: `state-v30.db` with single cells of `messages` damaged on intact
//!   pages (0xFF bytes in `content` and `session_id`, `timestamp` typed TEXT or BLOB): every row
//!   is reachable and a full scan succeeds, but the cells are not what a reader expects.
//! - `sessions/<id>.jsonl`: JSONL sidecars of the last 12 sessions of `state-v30.db`, some ending
//!   in a line cut off mid-write.
//! - `expected.json` and `README.md`: the counts.
//!
//! The databases are written with `journal_mode=DELETE`, vacuumed, then switched to WAL (as
//! Hermes keeps them) and closed, which checkpoints and removes the `-wal` and `-shm` files: a
//! Hermes file at rest.
#![allow(clippy::unwrap_used)]

use std::error::Error;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::fmt::temporal::DateTimePrinter;
use jiff::tz::Offset;
use rusqlite::{Connection, OpenFlags, params};

use crate::Rng;

/// The result type of the generator.
pub type Result<T, E = Box<dyn Error + Send + Sync>> = std::result::Result<T, E>;

/// Counts of what [`generate`] wrote, as `expected.json` records them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counts {
    /// Sessions in `state-v11.db`.
    pub v11_sessions: usize,
    /// Messages in `state-v11.db`.
    pub v11_messages: usize,
    /// Sessions in `state-v30.db`.
    pub v30_sessions: usize,
    /// Messages in `state-v30.db`.
    pub v30_messages: usize,
    /// Files in `sessions/`.
    pub sidecar_files: usize,
    /// Whole messages in `sessions/` (cut-off lines not counted).
    pub sidecar_messages: usize,
    /// Messages of `state-v30-damaged.db` that can be read by rowid.
    pub damaged_readable: usize,
    /// Messages `state-v30-damaged.db` held before the damage.
    pub damaged_total: usize,
    /// What `state-v30-bitrot.db` damaged.
    pub bitrot: Bitrot,
}

/// The cells `state-v30-bitrot.db` damaged: every row stays reachable, but some cells are not
/// what a reader expects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bitrot {
    /// Messages in the file (all of them on intact pages).
    pub messages: usize,
    /// Rows whose `content` has one byte replaced by 0xFF (never valid UTF-8).
    pub content_flipped: usize,
    /// Rows whose `session_id` has one byte replaced by 0xFF.
    pub session_id_flipped: usize,
    /// Rows whose `timestamp` record type was changed from REAL to an 8-byte TEXT or BLOB.
    pub timestamp_retyped: usize,
}

/// The file names [`generate`] writes, relative to its output folder (sidecars listed one by one).
pub fn file_names() -> Vec<String> {
    let mut names: Vec<String> =
        ["README.md", "expected.json", "state-v11.db", "state-v30-bitrot.db", "state-v30-damaged.db", "state-v30.db"]
            .map(String::from)
            .into();
    names.extend(SESSIONS[V11_SESSIONS..].iter().map(|s| format!("sessions/{}.jsonl", s.id)));
    names
}

// ---------------------------------------------------------------------------------------------
// Schemas, verbatim from Hermes Agent state.db files
// ---------------------------------------------------------------------------------------------

const V11_SCHEMA: &[&str] = &[
    "CREATE TABLE schema_version(version INTEGER NOT NULL)",
    "CREATE TABLE sessions(id TEXT PRIMARY KEY, source TEXT NOT NULL, user_id TEXT, model TEXT, model_config TEXT,
  system_prompt TEXT, parent_session_id TEXT REFERENCES sessions(id), started_at REAL NOT NULL, ended_at REAL,
  end_reason TEXT, message_count INTEGER DEFAULT 0, tool_call_count INTEGER DEFAULT 0, input_tokens INTEGER DEFAULT 0,
  output_tokens INTEGER DEFAULT 0, title TEXT, api_call_count INTEGER DEFAULT 0)",
    "CREATE TABLE messages(id INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL REFERENCES sessions(id),
  role TEXT NOT NULL, content TEXT, tool_call_id TEXT, tool_calls TEXT, tool_name TEXT, timestamp REAL NOT NULL,
  token_count INTEGER, finish_reason TEXT, reasoning TEXT, reasoning_details TEXT, codex_message_items TEXT)",
    "CREATE INDEX idx_messages_session ON messages(session_id, timestamp)",
    "CREATE VIRTUAL TABLE messages_fts USING fts5(content)",
    "CREATE VIRTUAL TABLE messages_fts_trigram USING fts5(content, tokenize='trigram')",
    "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
  INSERT INTO messages_fts(rowid, content) VALUES (new.id, coalesce(new.content,'') || ' ' || coalesce(new.tool_name,'') || ' ' || coalesce(new.tool_calls,''));
  INSERT INTO messages_fts_trigram(rowid, content) VALUES (new.id, coalesce(new.content,'') || ' ' || coalesce(new.tool_name,'') || ' ' || coalesce(new.tool_calls,''));
END",
];

const V30_SCHEMA: &[&str] = &[
    "CREATE TABLE schema_version(version INTEGER NOT NULL)",
    "CREATE TABLE state_meta(key TEXT PRIMARY KEY, value TEXT)",
    "CREATE TABLE system_prompts(hash TEXT PRIMARY KEY, prompt TEXT NOT NULL)",
    "CREATE TABLE sessions(id TEXT PRIMARY KEY, source TEXT NOT NULL, created_source TEXT, user_id TEXT, session_key TEXT,
  chat_id TEXT, chat_type TEXT, thread_id TEXT, display_name TEXT, origin_json TEXT, model TEXT, model_config TEXT,
  system_prompt TEXT, system_prompt_hash TEXT REFERENCES system_prompts(hash), parent_session_id TEXT REFERENCES sessions(id),
  started_at REAL NOT NULL, ended_at REAL, end_reason TEXT, message_count INTEGER DEFAULT 0, tool_call_count INTEGER DEFAULT 0,
  input_tokens INTEGER DEFAULT 0, output_tokens INTEGER DEFAULT 0, cache_read_tokens INTEGER DEFAULT 0,
  cache_write_tokens INTEGER DEFAULT 0, reasoning_tokens INTEGER DEFAULT 0, api_call_count INTEGER DEFAULT 0,
  cwd TEXT, git_branch TEXT, billing_provider TEXT, estimated_cost_usd REAL, title TEXT, title_source TEXT,
  last_activity_at REAL, profile_name TEXT, archived INTEGER NOT NULL DEFAULT 0, pinned INTEGER NOT NULL DEFAULT 0,
  hidden INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE messages(id INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL REFERENCES sessions(id),
  role TEXT NOT NULL, content TEXT, tool_call_id TEXT, tool_calls TEXT, tool_name TEXT, effect_disposition TEXT,
  timestamp REAL NOT NULL, token_count INTEGER, finish_reason TEXT, reasoning TEXT, reasoning_content TEXT,
  reasoning_details TEXT, codex_reasoning_items TEXT, codex_message_items TEXT, platform_message_id TEXT,
  observed INTEGER DEFAULT 0, _compressed_summary INTEGER NOT NULL DEFAULT 0, active INTEGER NOT NULL DEFAULT 1,
  compacted INTEGER NOT NULL DEFAULT 0, api_content TEXT, display_kind TEXT, display_metadata TEXT,
  display_identity BLOB, display_order INTEGER)",
    "CREATE INDEX idx_messages_session_id ON messages(session_id, id)",
    "CREATE VIEW messages_fts_src AS SELECT id, content, tool_name, tool_calls FROM messages",
    "CREATE VIRTUAL TABLE messages_fts USING fts5(content, tool_name, tool_calls, content='messages_fts_src', content_rowid='id')",
    "CREATE VIEW messages_fts_trigram_src AS SELECT m.id AS id, m.content AS content, m.tool_name AS tool_name
  FROM messages m JOIN sessions s ON s.id = m.session_id WHERE m.role <> 'tool' AND s.source NOT IN ('cron','subagent')",
    "CREATE VIRTUAL TABLE messages_fts_trigram USING fts5(content, tool_name, content='messages_fts_trigram_src', content_rowid='id', tokenize='trigram')",
];

// ---------------------------------------------------------------------------------------------
// The sessions
// ---------------------------------------------------------------------------------------------

/// One session: the fixed facts; its conversation comes from the seeded generator.
struct S {
    /// Hermes' session id: UTC start time plus six hex digits.
    id: &'static str,
    source: &'static str,
    user_id: Option<&'static str>,
    model: &'static str,
    parent: Option<&'static str>,
    /// Microseconds after the second in the id at which the session started.
    micros: i64,
    ended: bool,
    titled: bool,
    messages: usize,
}

/// Sessions in `state-v11.db`: the first ones of [`SESSIONS`].
const V11_SESSIONS: usize = 12;

/// Every session, in rowid order. The first [`V11_SESSIONS`] are in both databases, the others
/// only in `state-v30.db` and in the sidecars.
#[rustfmt::skip]
const SESSIONS: &[S] = &[
    S { id: "20260501_000000_8f4d3e", source: "slack", user_id: Some("6937091"), model: "gpt-5.1", parent: None, micros: 0, ended: true, titled: true, messages: 26 },
    S { id: "20260501_030107_08fb17", source: "discord", user_id: Some("9394455"), model: "gpt-5.1", parent: None, micros: 427_501, ended: true, titled: true, messages: 8 },
    S { id: "20260501_060937_950afd", source: "discord", user_id: Some("2529239"), model: "hermes-4-70b", parent: Some("20260501_030107_08fb17"), micros: 691_094, ended: true, titled: true, messages: 16 },
    S { id: "20260501_133951_54fc7c", source: "cli", user_id: None, model: "gpt-5.1", parent: None, micros: 911_169, ended: true, titled: true, messages: 34 },
    S { id: "20260501_143605_58816b", source: "telegram", user_id: Some("8091456"), model: "gpt-5.1", parent: None, micros: 416_017, ended: true, titled: true, messages: 4 },
    S { id: "20260501_135223_09325b", source: "cron", user_id: None, model: "gpt-5.1", parent: None, micros: 771_899, ended: true, titled: true, messages: 16 },
    S { id: "20260502_071348_7b509a", source: "api_server", user_id: None, model: "gpt-5.1", parent: None, micros: 967_412, ended: true, titled: false, messages: 8 },
    S { id: "20260501_084506_707ad1", source: "telegram", user_id: Some("6028650"), model: "hermes-4-70b", parent: None, micros: 401_025, ended: true, titled: false, messages: 34 },
    S { id: "20260501_194154_1a2c22", source: "cli", user_id: None, model: "claude-sonnet-4.5", parent: None, micros: 199_928, ended: true, titled: false, messages: 10 },
    S { id: "20260502_110231_3f3ae6", source: "telegram", user_id: Some("6631364"), model: "gpt-5.1", parent: None, micros: 502_333, ended: false, titled: false, messages: 32 },
    S { id: "20260502_001052_9a5c6b", source: "cron", user_id: None, model: "gpt-5.1", parent: None, micros: 323_218, ended: true, titled: true, messages: 30 },
    S { id: "20260503_012554_d6f0f8", source: "slack", user_id: Some("6458483"), model: "gpt-5.1", parent: None, micros: 801_472, ended: true, titled: true, messages: 24 },
    S { id: "20260503_015243_57cdec", source: "cron", user_id: None, model: "gpt-5.1", parent: None, micros: 804_729, ended: true, titled: true, messages: 34 },
    S { id: "20260503_055031_a405af", source: "cron", user_id: None, model: "claude-sonnet-4.5", parent: None, micros: 214_244, ended: false, titled: false, messages: 14 },
    S { id: "20260501_223919_2738b5", source: "slack", user_id: Some("9974153"), model: "hermes-4-70b", parent: None, micros: 109_025, ended: false, titled: true, messages: 12 },
    S { id: "20260503_165910_2ad761", source: "api_server", user_id: None, model: "claude-sonnet-4.5", parent: None, micros: 757_505, ended: true, titled: false, messages: 10 },
    S { id: "20260504_222135_186411", source: "tui", user_id: None, model: "claude-sonnet-4.5", parent: None, micros: 386_801, ended: true, titled: true, messages: 10 },
    S { id: "20260502_054641_a88f68", source: "api_server", user_id: None, model: "claude-sonnet-4.5", parent: None, micros: 984_317, ended: true, titled: false, messages: 18 },
    S { id: "20260502_205907_061429", source: "tui", user_id: None, model: "gpt-5.1", parent: None, micros: 95_950, ended: true, titled: false, messages: 14 },
    S { id: "20260502_113151_6a1364", source: "cron", user_id: None, model: "gpt-5.1", parent: None, micros: 887_805, ended: true, titled: true, messages: 20 },
    S { id: "20260505_061240_0cb674", source: "cron", user_id: None, model: "hermes-4-70b", parent: None, micros: 41_629, ended: true, titled: false, messages: 8 },
    S { id: "20260502_033710_1037a0", source: "telegram", user_id: Some("5260137"), model: "gpt-5.1", parent: None, micros: 634_688, ended: true, titled: false, messages: 26 },
    S { id: "20260505_062032_768e42", source: "tui", user_id: None, model: "claude-sonnet-4.5", parent: Some("20260504_222135_186411"), micros: 708_043, ended: true, titled: true, messages: 26 },
    S { id: "20260502_045432_c55808", source: "telegram", user_id: Some("3872009"), model: "gpt-5.1", parent: None, micros: 375_916, ended: false, titled: true, messages: 24 },
];

/// Sidecars that end in a line cut off mid-write.
const CUT_SIDECARS: &[&str] = &["20260502_033710_1037a0", "20260503_055031_a405af", "20260505_061240_0cb674"];

/// Sessions (by index) whose second user message is multimodal: 5 in v11, 9 in v30, 4 in sidecars.
const MULTIMODAL: &[usize] = &[0, 2, 3, 7, 10, 13, 15, 19, 22];

/// Sessions (by index) whose first tool result is long: (index, bytes).
const LONG_OUTPUTS: &[(usize, usize)] = &[(0, 60_000), (3, 20_000), (12, 60_000), (20, 20_000)];

/// The session whose first user message holds CJK text and an emoji for certain.
const CJK_EMOJI_SESSION: usize = 3;

const WORDS: &[&str] = &[
    "alert",
    "backup",
    "budget",
    "checkpoint",
    "compile",
    "cron",
    "deploy",
    "docker",
    "fsync",
    "gateway",
    "grafana",
    "index",
    "invoice",
    "journal",
    "kernel",
    "latency",
    "launchd",
    "meeting",
    "migrate",
    "python",
    "refactor",
    "restart",
    "restore",
    "rust",
    "schema",
    "segment",
    "sqlite",
    "systemd",
    "telegram",
    "timeout",
    "tokenizer",
    "tomorrow",
    "trigram",
    "weather",
    "boat",
    "calendar",
    "receipt",
    "upload",
    "vacuum",
    "replica",
];

const CJK: &[&str] =
    &["日本語のメッセージ", "备份与恢复", "한국어 검색", "会话记录", "检索", "請求書を探して", "数据库损坏"];

const EMOJI: &[&str] = &["🧪", "🚀", "📦", "✅", "⚠\u{fe0f}", "🔥"];

const TOOLS: &[&str] = &["terminal", "web_search", "read_file", "write_file"];

// ---------------------------------------------------------------------------------------------
// JSON as Python's json.dumps writes it (key order kept)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Js {
    Int(i64),
    Str(String),
    Arr(Vec<Js>),
    Obj(Vec<(&'static str, Js)>),
}

impl Js {
    fn s(text: impl Into<String>) -> Js {
        Js::Str(text.into())
    }

    /// `json.dumps(value, ensure_ascii=ascii)`: `", "` and `": "` separators.
    fn dumps(&self, ascii: bool) -> String {
        let mut out = String::new();
        self.write(&mut out, ascii);
        out
    }

    fn write(&self, out: &mut String, ascii: bool) {
        match self {
            Js::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Js::Str(s) => write_str(out, s, ascii),
            Js::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.write(out, ascii);
                }
                out.push(']');
            }
            Js::Obj(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_str(out, k, ascii);
                    out.push_str(": ");
                    v.write(out, ascii);
                }
                out.push('}');
            }
        }
    }
}

fn write_str(out: &mut String, s: &str, ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c < ' ' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c if ascii && !(' '..='~').contains(&c) => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

// ---------------------------------------------------------------------------------------------
// Conversations
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Content {
    Null,
    Text(String),
    /// Multimodal: a JSON array of parts.
    Parts(Js),
}

#[derive(Debug, Clone)]
struct Msg {
    role: &'static str,
    content: Content,
    tool_call_id: Option<String>,
    /// `[{"id", "type", "function": {"name", "arguments"}}]`.
    tool_calls: Option<Js>,
    tool_name: Option<&'static str>,
    /// Microseconds since the epoch (what the sidecar's ISO text says).
    micros: i64,
    /// The REAL Hermes stores: `micros` plus sub-microsecond noise, as `time.time()` gives.
    timestamp: f64,
    token_count: Option<i64>,
    finish_reason: Option<&'static str>,
    reasoning: Option<String>,
    platform_message_id: Option<String>,
}

impl Msg {
    fn new(role: &'static str, content: Content, micros: i64, rng: &mut Rng) -> Msg {
        // Up to ±0.3 µs: Python rounds it away when writing ISO text, so the sidecar and the
        // database give the importer the same millisecond.
        let noise = (rng.below(601) as f64 - 300.0) * 1e-9;
        Msg {
            role,
            content,
            tool_call_id: None,
            tool_calls: None,
            tool_name: None,
            micros,
            timestamp: micros as f64 / 1e6 + noise,
            token_count: None,
            finish_reason: None,
            reasoning: None,
            platform_message_id: None,
        }
    }

    /// `content` as SQLite holds it.
    fn db_content(&self) -> Option<String> {
        match &self.content {
            Content::Null => None,
            Content::Text(t) => Some(t.clone()),
            Content::Parts(p) => Some(format!("\u{0}json:{}", p.dumps(true))),
        }
    }

    fn db_tool_calls(&self) -> Option<String> {
        self.tool_calls.as_ref().map(|t| t.dumps(true))
    }

    /// The sidecar line (without its newline), keys in the order Hermes writes them.
    fn sidecar_line(&self) -> String {
        let mut f: Vec<(&'static str, Js)> = vec![("role", Js::s(self.role))];
        match &self.content {
            Content::Null => {}
            Content::Text(t) => f.push(("content", Js::s(t.clone()))),
            Content::Parts(p) => f.push(("content", p.clone())),
        }
        if let Some(id) = &self.tool_call_id {
            f.push(("tool_call_id", Js::s(id.clone())));
        }
        if let Some(name) = self.tool_name {
            f.push(("tool_name", Js::s(name)));
        }
        if let Some(r) = self.finish_reason {
            f.push(("finish_reason", Js::s(r)));
        }
        if let Some(tc) = &self.tool_calls {
            f.push(("tool_calls", tc.clone()));
        }
        if let Some(r) = &self.reasoning {
            f.push(("reasoning", Js::s(r.clone())));
        }
        if let Some(n) = self.token_count {
            f.push(("token_count", Js::Int(n)));
        }
        f.push(("timestamp", Js::s(iso8601(self.micros))));
        Js::Obj(f).dumps(false)
    }
}

struct Conversation {
    session: &'static S,
    started_micros: i64,
    system_prompt: String,
    title: Option<String>,
    messages: Vec<Msg>,
}

impl Conversation {
    fn started_at(&self) -> f64 {
        self.started_micros as f64 / 1e6
    }

    fn last_micros(&self) -> i64 {
        self.messages.last().map_or(self.started_micros, |m| m.micros)
    }

    fn ended_at(&self, rng_seconds: i64) -> Option<f64> {
        self.session.ended.then(|| (self.last_micros() + rng_seconds * 1_000_000) as f64 / 1e6)
    }

    fn tool_calls(&self) -> i64 {
        self.messages.iter().filter(|m| m.tool_calls.is_some()).count() as i64
    }

    fn output_tokens(&self) -> i64 {
        self.messages.iter().filter_map(|m| m.token_count).sum()
    }

    fn api_calls(&self) -> i64 {
        self.messages.iter().filter(|m| m.role == "assistant").count() as i64
    }
}

fn capitalize(word: &str) -> String {
    let mut c = word.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// One sentence of `lo..=hi` words, sometimes with CJK text or an emoji.
fn sentence(rng: &mut Rng, lo: u64, hi: u64) -> String {
    let n = rng.range(lo, hi);
    let mut words: Vec<String> = (0..n).map(|_| (*rng.pick(WORDS)).to_string()).collect();
    if let Some(first) = words.first_mut() {
        *first = capitalize(first);
    }
    if rng.chance(1, 10) {
        words.push((*rng.pick(CJK)).to_string());
    }
    if rng.chance(1, 14) {
        words.push((*rng.pick(EMOJI)).to_string());
    }
    format!("{}.", words.join(" "))
}

fn paragraph(rng: &mut Rng, sentences: u64) -> String {
    (0..sentences).map(|_| sentence(rng, 4, 24)).collect::<Vec<_>>().join(" ")
}

/// Tool output: numbered lines, at least `target` bytes.
fn tool_output(rng: &mut Rng, target: usize) -> String {
    let mut out = String::new();
    while out.len() < target {
        let _ = writeln!(out, "{:5} | {}", rng.below(10_000), sentence(rng, 6, 18));
    }
    out.pop();
    out
}

fn hex(rng: &mut Rng, digits: usize) -> String {
    let mut s = String::new();
    while s.len() < digits {
        let _ = write!(s, "{:016x}", rng.next_u64());
    }
    s.truncate(digits);
    s
}

/// Seconds since the epoch of a session id's `YYYYMMDD_HHMMSS` prefix (UTC).
fn id_seconds(id: &str) -> i64 {
    let at = id.get(..15).and_then(|p| DateTime::strptime("%Y%m%d_%H%M%S", p).ok());
    let at = at.and_then(|dt| Offset::UTC.to_timestamp(dt).ok()).expect("session id starts with a date");
    at.as_second()
}

/// ISO-8601 text of a UTC time, as Python's `datetime.isoformat()` writes it (no fraction when
/// the microseconds are zero).
fn iso8601(micros: i64) -> String {
    let at = Timestamp::from_microsecond(micros).expect("a time jiff can represent");
    let digits = if micros.rem_euclid(1_000_000) == 0 { 0 } else { 6 };
    DateTimePrinter::new().precision(Some(digits)).timestamp_with_offset_to_string(&at, Offset::UTC)
}

fn conversation(index: usize, session: &'static S) -> Conversation {
    let mut rng = Rng::new(0x4845_524d_4553_0000 ^ index as u64);
    let started_micros = id_seconds(session.id) * 1_000_000 + session.micros;
    let system_prompt = format!("You are Hermes. {}", paragraph(&mut rng, 3));
    let title = session.titled.then(|| sentence(&mut rng, 3, 4));
    let gateway = matches!(session.source, "telegram" | "discord" | "slack");
    let mut platform_id = rng.range(1000, 90_000);

    let mut messages: Vec<Msg> = Vec::with_capacity(session.messages);
    let mut now = started_micros + rng.range(2_000_000, 60_000_000) as i64;
    let mut users = 0usize;
    let mut tool_results = 0usize;
    while messages.len() < session.messages {
        let left = session.messages - messages.len();
        // User.
        let content = if users == 1 && MULTIMODAL.contains(&index) {
            let text = sentence(&mut rng, 6, 20);
            Content::Parts(Js::Arr(vec![
                Js::Obj(vec![("type", Js::s("text")), ("text", Js::s(format!("{text} {}", rng.pick(CJK))))]),
                Js::Obj(vec![
                    ("type", Js::s("image_url")),
                    (
                        "image_url",
                        Js::Obj(vec![(
                            "url",
                            Js::s(format!("data:image/png;base64,iVBORw0KGgo{}", hex(&mut rng, 40))),
                        )]),
                    ),
                ]),
            ]))
        } else if users == 0 && index == CJK_EMOJI_SESSION {
            Content::Text(format!("{} 备份与恢复 {}", sentence(&mut rng, 5, 12), EMOJI[0]))
        } else {
            Content::Text(sentence(&mut rng, 3, 30))
        };
        users += 1;
        let mut user = Msg::new("user", content, now, &mut rng);
        if gateway {
            user.platform_message_id = Some(platform_id.to_string());
            platform_id += rng.range(1, 40);
        }
        messages.push(user);
        now += rng.range(1_000_000, 15_000_000) as i64;

        // A tool round trip when there is room for one and the dice say so.
        if left >= 4 && rng.chance(1, 2) {
            let name = *rng.pick(TOOLS);
            let call_id = format!("call_{}", hex(&mut rng, 12));
            let args = Js::Obj(vec![("command", Js::s(sentence(&mut rng, 3, 8)))]).dumps(true);
            let mut call = Msg::new("assistant", Content::Null, now, &mut rng);
            call.tool_calls = Some(Js::Arr(vec![Js::Obj(vec![
                ("id", Js::s(call_id.clone())),
                ("type", Js::s("function")),
                ("function", Js::Obj(vec![("name", Js::s(name)), ("arguments", Js::s(args))])),
            ])]));
            call.finish_reason = Some("tool_calls");
            if rng.chance(1, 4) {
                call.reasoning = Some(sentence(&mut rng, 5, 25));
            }
            messages.push(call);
            now += rng.range(1_000_000, 20_000_000) as i64;

            let long = LONG_OUTPUTS.iter().find(|(i, _)| *i == index && tool_results == 0).map(|(_, n)| *n);
            let size = long.unwrap_or_else(|| rng.range(80, 1500) as usize);
            let mut result = Msg::new("tool", Content::Text(tool_output(&mut rng, size)), now, &mut rng);
            result.tool_call_id = Some(call_id);
            result.tool_name = Some(name);
            messages.push(result);
            tool_results += 1;
            now += rng.range(2_000_000, 15_000_000) as i64;
        }

        // Assistant answer.
        let sentences = rng.range(1, 5);
        let mut answer = Msg::new("assistant", Content::Text(paragraph(&mut rng, sentences)), now, &mut rng);
        answer.finish_reason = Some("stop");
        answer.token_count = Some(rng.range(40, 900) as i64);
        if rng.chance(1, 12) {
            answer.reasoning = Some(sentence(&mut rng, 5, 25));
        }
        messages.push(answer);
        now += rng.range(10_000_000, 120_000_000) as i64;
    }
    assert_eq!(messages.len(), session.messages, "session {} has an even message count", session.id);
    Conversation { session, started_micros, system_prompt, title, messages }
}

// ---------------------------------------------------------------------------------------------
// SHA-256 (FIPS 180-4), for `system_prompts.hash`
// ---------------------------------------------------------------------------------------------

const K: [u32; 64] = [
    0x428a_2f98,
    0x7137_4491,
    0xb5c0_fbcf,
    0xe9b5_dba5,
    0x3956_c25b,
    0x59f1_11f1,
    0x923f_82a4,
    0xab1c_5ed5,
    0xd807_aa98,
    0x1283_5b01,
    0x2431_85be,
    0x550c_7dc3,
    0x72be_5d74,
    0x80de_b1fe,
    0x9bdc_06a7,
    0xc19b_f174,
    0xe49b_69c1,
    0xefbe_4786,
    0x0fc1_9dc6,
    0x240c_a1cc,
    0x2de9_2c6f,
    0x4a74_84aa,
    0x5cb0_a9dc,
    0x76f9_88da,
    0x983e_5152,
    0xa831_c66d,
    0xb003_27c8,
    0xbf59_7fc7,
    0xc6e0_0bf3,
    0xd5a7_9147,
    0x06ca_6351,
    0x1429_2967,
    0x27b7_0a85,
    0x2e1b_2138,
    0x4d2c_6dfc,
    0x5338_0d13,
    0x650a_7354,
    0x766a_0abb,
    0x81c2_c92e,
    0x9272_2c85,
    0xa2bf_e8a1,
    0xa81a_664b,
    0xc24b_8b70,
    0xc76c_51a3,
    0xd192_e819,
    0xd699_0624,
    0xf40e_3585,
    0x106a_a070,
    0x19a4_c116,
    0x1e37_6c08,
    0x2748_774c,
    0x34b0_bcb5,
    0x391c_0cb3,
    0x4ed8_aa4a,
    0x5b9c_ca4f,
    0x682e_6ff3,
    0x748f_82ee,
    0x78a5_636f,
    0x84c8_7814,
    0x8cc7_0208,
    0x90be_fffa,
    0xa450_6ceb,
    0xbef9_a3f7,
    0xc671_78f2,
];

/// The SHA-256 of `data`, as 64 lowercase hex digits.
pub fn sha256_hex(data: &[u8]) -> String {
    let mut h: [u32; 8] =
        [0x6a09_e667, 0xbb67_ae85, 0x3c6e_f372, 0xa54f_f53a, 0x510e_527f, 0x9b05_688c, 0x1f83_d9ab, 0x5be0_cd19];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 64];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16].wrapping_add(s0).wrapping_add(w[i - 7]).wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh.wrapping_add(s1).wrapping_add(ch).wrapping_add(K[i]).wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(y);
        }
    }
    h.iter().map(|x| format!("{x:08x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------

/// Removes a database and any rollback journal or WAL files beside it.
fn remove_db(path: &Path) -> Result<()> {
    for suffix in ["", "-journal", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// A new database with fixed settings and `schema` created.
fn create_db(path: &Path, schema: &[&str], version: i64) -> Result<Connection> {
    remove_db(path)?;
    let conn = Connection::open(path)?;
    conn.execute_batch(
        "PRAGMA page_size = 4096; PRAGMA auto_vacuum = NONE; PRAGMA encoding = 'UTF-8';
         PRAGMA journal_mode = DELETE; PRAGMA synchronous = OFF;",
    )?;
    for sql in schema {
        conn.execute_batch(sql)?;
    }
    conn.execute("INSERT INTO schema_version(version) VALUES (?1)", [version])?;
    Ok(conn)
}

/// Vacuums, switches to WAL as Hermes keeps its file, and closes (which checkpoints and removes
/// the `-wal` and `-shm` files).
fn finish_db(conn: Connection, path: &Path) -> Result<()> {
    conn.execute_batch("VACUUM;")?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    assert_eq!(mode, "wal");
    conn.close().map_err(|(_, e)| e)?;
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        assert!(!Path::new(&p).exists(), "{} was left behind", Path::new(&p).display());
    }
    Ok(())
}

fn write_v11(path: &Path, convs: &[Conversation]) -> Result<()> {
    let mut conn = create_db(path, V11_SCHEMA, 11)?;
    let tx = conn.transaction()?;
    for (i, c) in convs.iter().enumerate() {
        let s = c.session;
        tx.execute(
            "INSERT INTO sessions(id, source, user_id, model, model_config, system_prompt, parent_session_id,
                                  started_at, ended_at, end_reason, message_count, tool_call_count, input_tokens,
                                  output_tokens, title, api_call_count)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
            params![
                s.id,
                s.source,
                s.user_id,
                s.model,
                "{\"temperature\": 0.7}",
                c.system_prompt,
                s.parent,
                c.started_at(),
                c.ended_at(3 + i as i64),
                s.ended.then_some("user_exit"),
                c.messages.len() as i64,
                c.tool_calls(),
                input_tokens(c),
                c.output_tokens(),
                c.title,
                c.api_calls(),
            ],
        )?;
        for m in &c.messages {
            tx.execute(
                "INSERT INTO messages(session_id, role, content, tool_call_id, tool_calls, tool_name, timestamp,
                                      token_count, finish_reason, reasoning)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    s.id,
                    m.role,
                    m.db_content(),
                    m.tool_call_id,
                    m.db_tool_calls(),
                    m.tool_name,
                    m.timestamp,
                    m.token_count,
                    m.finish_reason,
                    m.reasoning,
                ],
            )?;
        }
    }
    tx.commit()?;
    finish_db(conn, path)
}

fn input_tokens(c: &Conversation) -> i64 {
    c.messages.iter().map(|m| m.db_content().map_or(0, |t| t.len() as i64 / 4)).sum::<i64>() + 600
}

fn write_v30(path: &Path, convs: &[Conversation]) -> Result<()> {
    let mut conn = create_db(path, V30_SCHEMA, 30)?;
    let tx = conn.transaction()?;
    tx.execute("INSERT INTO state_meta(key, value) VALUES ('fts_storage_version', '3')", [])?;
    for (i, c) in convs.iter().enumerate() {
        let s = c.session;
        let hash = sha256_hex(c.system_prompt.as_bytes());
        tx.execute(
            "INSERT OR IGNORE INTO system_prompts(hash, prompt) VALUES (?1, ?2)",
            params![hash, c.system_prompt],
        )?;
        let gateway = s.user_id.is_some();
        let local = matches!(s.source, "cli" | "tui");
        let provider = match s.model {
            m if m.starts_with("claude") => "anthropic",
            m if m.starts_with("hermes") => "nous",
            _ => "openrouter",
        };
        tx.execute(
            "INSERT INTO sessions(id, source, created_source, user_id, session_key, chat_id, chat_type, model,
                                  model_config, system_prompt_hash, parent_session_id, started_at, ended_at,
                                  end_reason, message_count, tool_call_count, input_tokens, output_tokens,
                                  api_call_count, cwd, git_branch, billing_provider, estimated_cost_usd, title,
                                  title_source, last_activity_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20,
                     ?21, ?22, ?23, ?24, ?25, ?26)",
            params![
                s.id,
                s.source,
                s.source,
                s.user_id,
                s.user_id.map(|u| format!("agent:main:{}:dm:{u}", s.source)),
                s.user_id,
                gateway.then_some("dm"),
                s.model,
                "{\"temperature\": 0.7}",
                hash,
                s.parent,
                c.started_at(),
                c.ended_at(3 + i as i64),
                s.ended.then_some("user_exit"),
                c.messages.len() as i64,
                c.tool_calls(),
                input_tokens(c),
                c.output_tokens(),
                c.api_calls(),
                local.then_some("/home/ada/src/boatyard"),
                local.then_some("main"),
                provider,
                (c.output_tokens() as f64) * 0.000_01 + (input_tokens(c) as f64) * 0.000_002,
                c.title,
                c.title.as_ref().map(|_| "llm"),
                c.last_micros() as f64 / 1e6,
            ],
        )?;
        for m in &c.messages {
            tx.execute(
                "INSERT INTO messages(session_id, role, content, tool_call_id, tool_calls, tool_name, timestamp,
                                      token_count, finish_reason, reasoning, platform_message_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    s.id,
                    m.role,
                    m.db_content(),
                    m.tool_call_id,
                    m.db_tool_calls(),
                    m.tool_name,
                    m.timestamp,
                    m.token_count,
                    m.finish_reason,
                    m.reasoning,
                    m.platform_message_id,
                ],
            )?;
        }
    }
    tx.execute("INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')", [])?;
    tx.execute("INSERT INTO messages_fts_trigram(messages_fts_trigram) VALUES ('rebuild')", [])?;
    tx.commit()?;
    finish_db(conn, path)
}

fn write_sidecars(dir: &Path, convs: &[Conversation]) -> Result<usize> {
    if dir.exists() {
        for e in fs::read_dir(dir)? {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "jsonl") {
                fs::remove_file(p)?;
            }
        }
    }
    fs::create_dir_all(dir)?;
    let mut messages = 0;
    for c in convs {
        let s = c.session;
        let mut rng = Rng::new(0x5349_4445_4341_5200 ^ id_seconds(s.id) as u64);
        let tools = Js::Arr(
            TOOLS
                .iter()
                .take(2)
                .map(|t| Js::Obj(vec![("type", Js::s("function")), ("function", Js::Obj(vec![("name", Js::s(*t))]))]))
                .collect(),
        );
        let meta = Js::Obj(vec![
            ("role", Js::s("session_meta")),
            ("session_id", Js::s(s.id)),
            ("model", Js::s(s.model)),
            ("platform", Js::s(s.source)),
            ("timestamp", Js::s(iso8601(c.started_micros))),
            ("tools", tools),
        ]);
        let mut text = meta.dumps(false);
        text.push('\n');
        for m in &c.messages {
            text.push_str(&m.sidecar_line());
            text.push('\n');
            messages += 1;
        }
        if CUT_SIDECARS.contains(&s.id) {
            // A writer killed mid-line: the start of an answer, no closing quote, no newline.
            let answer = sentence(&mut rng, 8, 12);
            let cut = answer.char_indices().nth(answer.chars().count() / 2).map_or(0, |(i, _)| i);
            let micros = c.last_micros() + 4_000_000;
            let _ = write!(
                text,
                "{{\"role\": \"assistant\", \"timestamp\": \"{}\", \"content\": \"{}",
                iso8601(micros),
                &answer[..cut]
            );
        }
        fs::write(dir.join(format!("{}.jsonl", s.id)), text)?;
    }
    Ok(messages)
}

/// The leaf pages of the table b-tree rooted at `root`, left to right.
fn table_leaves(db: &[u8], page_size: usize, root: u32, out: &mut Vec<u32>) {
    let base = (root as usize - 1) * page_size;
    let hdr = base + if root == 1 { 100 } else { 0 };
    let be16 = |at: usize| usize::from(u16::from_be_bytes([db[at], db[at + 1]]));
    let be32 = |at: usize| u32::from_be_bytes([db[at], db[at + 1], db[at + 2], db[at + 3]]);
    match db[hdr] {
        0x0d => out.push(root),
        0x05 => {
            for i in 0..be16(hdr + 3) {
                let cell = base + be16(hdr + 12 + 2 * i);
                table_leaves(db, page_size, be32(cell), out);
            }
            table_leaves(db, page_size, be32(hdr + 8), out);
        }
        t => panic!("page {root} is not a table b-tree page (type {t:#x})"),
    }
}

/// Copies `clean` to `damaged` with every fifth leaf page of `messages` (from the third)
/// overwritten, alternately with zeros (a lost write) and garbage (a misdirected one).
/// Returns the rows still readable by rowid and the rows the table held.
fn write_damaged(clean: &Path, damaged: &Path) -> Result<(usize, usize)> {
    let (root, total, page_size) = {
        let conn = open_ro(clean)?;
        let root: u32 =
            conn.query_row("SELECT rootpage FROM sqlite_master WHERE name = 'messages'", [], |r| r.get(0))?;
        let total: i64 = conn.query_row("SELECT count(*) FROM messages", [], |r| r.get(0))?;
        let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        (root, usize::try_from(total)?, usize::try_from(page_size)?)
    };
    let mut bytes = fs::read(clean)?;
    let mut leaves = Vec::new();
    table_leaves(&bytes, page_size, root, &mut leaves);
    let mut rng = Rng::new(0x4441_4d41_4745_0000);
    for (n, page) in leaves.iter().enumerate().skip(2).step_by(5) {
        let at = (*page as usize - 1) * page_size;
        let slice = &mut bytes[at..at + page_size];
        if n % 2 == 0 {
            slice.fill(0);
        } else {
            for b in slice.iter_mut() {
                *b = rng.next_u64() as u8;
            }
            // Not a b-tree page type, so SQLite cannot mistake the garbage for rows.
            slice[0] = 0x2a;
        }
    }
    remove_db(damaged)?;
    fs::write(damaged, &bytes)?;

    let conn = open_ro(damaged)?;
    let check: String = conn.query_row("PRAGMA integrity_check(1)", [], |r| r.get(0))?;
    assert_ne!(check, "ok", "the damage must fail integrity_check");
    let scan = conn.prepare("SELECT * FROM messages").and_then(|mut s| {
        let mut rows = s.query([])?;
        while rows.next()?.is_some() {}
        Ok(())
    });
    let err = scan.expect_err("a full scan of the damaged messages table must fail");
    assert!(err.to_string().contains("malformed"), "{err}");
    Ok((readable_by_rowid(&conn, total as i64)?, total))
}

fn varint(b: &[u8], at: usize) -> (u64, usize) {
    let mut v: u64 = 0;
    for i in 0..9 {
        let byte = b[at + i];
        if i == 8 {
            return ((v << 8) | u64::from(byte), 9);
        }
        v = (v << 7) | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            return (v, i + 1);
        }
    }
    unreachable!()
}

fn serial_size(t: u64) -> usize {
    match t {
        0 | 8 | 9 | 10 | 11 => 0,
        1 => 1,
        2 => 2,
        3 => 3,
        4 => 4,
        5 => 6,
        6 | 7 => 8,
        n => ((n - 12) / 2) as usize,
    }
}

/// Copies `clean` to `rotten` with single cells of `messages` damaged in place, on otherwise
/// intact pages (a bit flip that no page checksum caught): in every 17th row (from rowid 2) one
/// byte of `content` becomes 0xFF, in every 23rd (from 11) one byte of `session_id`, and in every
/// 19th (from 7) the record type of `timestamp` says TEXT (odd rowids) or BLOB (even rowids) of 8
/// bytes instead of REAL. Only cells whose bytes lie on the leaf page itself are touched.
fn write_bitrot(clean: &Path, rotten: &Path) -> Result<Bitrot> {
    let (root, page_size, cols) = {
        let conn = open_ro(clean)?;
        let root: u32 =
            conn.query_row("SELECT rootpage FROM sqlite_master WHERE name = 'messages'", [], |r| r.get(0))?;
        let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let mut stmt = conn.prepare("PRAGMA table_info(messages)")?;
        let cols: Vec<String> = stmt.query_map([], |r| r.get(1))?.collect::<rusqlite::Result<_>>()?;
        (root, usize::try_from(page_size)?, cols)
    };
    let col = |name: &str| cols.iter().position(|c| c == name).unwrap();
    let (sid_col, content_col, ts_col) = (col("session_id"), col("content"), col("timestamp"));
    let mut bytes = fs::read(clean)?;
    let mut leaves = Vec::new();
    table_leaves(&bytes, page_size, root, &mut leaves);
    let usable = page_size;
    let max_local = usable - 35;
    let min_local = (usable - 12) * 32 / 255 - 23;
    let mut b = Bitrot::default();
    for page in leaves {
        let base = (page as usize - 1) * page_size;
        let be16 = |d: &[u8], at: usize| usize::from(u16::from_be_bytes([d[at], d[at + 1]]));
        for i in 0..be16(&bytes, base + 3) {
            b.messages += 1;
            let mut at = base + be16(&bytes, base + 8 + 2 * i);
            let (payload, n) = varint(&bytes, at);
            at += n;
            let (rowid, n) = varint(&bytes, at);
            at += n;
            let payload = usize::try_from(payload)?;
            let local = if payload <= max_local {
                payload
            } else {
                let k = min_local + (payload - min_local) % (usable - 4);
                if k <= max_local { k } else { min_local }
            };
            let (hdr_len, n) = varint(&bytes, at);
            let mut type_at = at + n;
            let mut body = at + usize::try_from(hdr_len)?;
            // (offset of the serial type, serial type, offset of the value) per column
            let mut fields = Vec::new();
            for _ in 0..cols.len() {
                let (t, n) = varint(&bytes, type_at);
                fields.push((type_at, t, n, body));
                type_at += n;
                body += serial_size(t);
            }
            let end_local = at + local;
            let text_at = |f: (usize, u64, usize, usize)| -> Option<(usize, usize)> {
                let (_, t, _, value) = f;
                let len = serial_size(t);
                (t >= 13 && t % 2 == 1 && len >= 8 && value + len <= end_local).then_some((value, len))
            };
            if rowid % 17 == 2
                && let Some((value, len)) = text_at(fields[content_col])
            {
                bytes[value + len / 2] = 0xff;
                b.content_flipped += 1;
            }
            if rowid % 23 == 11
                && let Some((value, len)) = text_at(fields[sid_col])
            {
                bytes[value + len - 2] = 0xff;
                b.session_id_flipped += 1;
            }
            let (type_at, t, n, _) = fields[ts_col];
            if rowid % 19 == 7 && t == 7 && n == 1 {
                bytes[type_at] = if rowid % 2 == 1 { 29 } else { 28 };
                b.timestamp_retyped += 1;
            }
        }
    }
    remove_db(rotten)?;
    fs::write(rotten, &bytes)?;
    Ok(b)
}

/// Messages whose every column can be read by rowid, probing rowids `1..=max`.
pub fn readable_by_rowid(conn: &Connection, max: i64) -> Result<usize> {
    let mut stmt = conn.prepare("SELECT * FROM messages WHERE rowid = ?1")?;
    let n = stmt.column_count();
    let mut readable = 0;
    for rowid in 1..=max {
        let ok = stmt
            .query_row([rowid], |r| {
                for i in 0..n {
                    r.get_ref(i)?;
                }
                Ok(())
            })
            .is_ok();
        readable += usize::from(ok);
    }
    Ok(readable)
}

/// Opens a database read-only and immutable: no lock, no `-shm` or `-wal` file created.
pub fn open_ro(path: &Path) -> Result<Connection> {
    let uri = format!("file:{}?mode=ro&immutable=1", path.display());
    Ok(Connection::open_with_flags(uri, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI)?)
}

/// `expected.json`, written by hand so the key order never depends on serde_json's features.
fn expected_json(c: &Counts) -> String {
    format!(
        "{{\n  \"state-v11.db\": {{\n    \"sessions\": {},\n    \"messages\": {}\n  }},\n  \"state-v30.db\": {{\n    \"sessions\": {},\n    \"messages\": {}\n  }},\n  \"sessions/\": {{\n    \"files\": {},\n    \"messages\": {}\n  }},\n  \"state-v30-damaged.db\": {{\n    \"messages_readable_by_rowid\": {},\n    \"messages_total\": {}\n  }},\n  \"state-v30-bitrot.db\": {{\n    \"messages\": {},\n    \"content_flipped\": {},\n    \"session_id_flipped\": {},\n    \"timestamp_retyped\": {}\n  }}\n}}\n",
        c.v11_sessions,
        c.v11_messages,
        c.v30_sessions,
        c.v30_messages,
        c.sidecar_files,
        c.sidecar_messages,
        c.damaged_readable,
        c.damaged_total,
        c.bitrot.messages,
        c.bitrot.content_flipped,
        c.bitrot.session_id_flipped,
        c.bitrot.timestamp_retyped,
    )
}

fn readme(c: &Counts) -> String {
    format!(
        r#"# Hermes Agent session stores, synthetic

Synthetic conversations in the shapes Hermes Agent keeps on disk, for the import tests
(`crates/store/src/import.rs`, `crates/cli/tests/import_kill.rs`). The schemas are Hermes Agent's,
copied verbatim; the data is generated, seeded and reproducible. Treat these files as read-only
inputs: copy one to a temporary folder before any test opens it.

Generated by `tests/src/hermes_fixtures.rs`; do not edit by hand. To regenerate (after changing the
generator, or when a `rusqlite` upgrade changes the SQLite version written in the file headers):

    cargo run -p tidelog-tests --bin gen-hermes-fixtures -- tests/fixtures/hermes

`cargo test -p tidelog-tests --test fixtures` re-runs the generator and fails if these files differ
from its output by a single byte.

| file | what it is |
|---|---|
| `state-v11.db` | schema version 11: inline FTS5 tables `messages_fts` (unicode61) and `messages_fts_trigram` (trigram) fed by a trigger; {v11s} sessions, {v11m} messages |
| `state-v30.db` | schema version 30: many more session and message columns, `system_prompts` deduplicated by SHA-256, `state_meta`, external-content FTS5 over views; {v30s} sessions, {v30m} messages (its first {v11s} sessions are the conversations of `state-v11.db`) |
| `state-v30-damaged.db` | `state-v30.db` with leaf pages of `messages` overwritten (zeros, or garbage): `PRAGMA integrity_check` fails and a full scan of `messages` stops with "database disk image is malformed"; {dr} of the {dt} messages can still be read one row at a time by rowid |
| `state-v30-bitrot.db` | `state-v30.db` with single cells of `messages` damaged on intact pages, as an undetected bit flip leaves them: {bc} `content` cells and {bs} `session_id` cells hold a 0xFF byte (invalid UTF-8), {bt} `timestamp` cells are typed TEXT or BLOB instead of REAL; all {bm} rows are reachable and a full scan succeeds |
| `sessions/*.jsonl` | JSONL session sidecars: a first line with `"role": "session_meta"` (session id, model, platform, ISO timestamp, tools), then one OpenAI-style message per line with an ISO-8601 timestamp; {cut} files end in a line cut off mid-write, as a killed writer leaves it; {sf} files, {sm} whole messages, the conversations of the last {sf} sessions of `state-v30.db` |
| `expected.json` | the counts above, machine-readable |

The databases are at rest as Hermes leaves them: WAL mode in the header, no `-wal` or `-shm` file.

Things a faithful import has to get right, all present in these files:
- `content` may be NULL (assistant messages that only call tools), very long (tool output up to
  ~60 KB), CJK text and emoji, or multimodal: the marker `"\u0000json:"` followed by a JSON array of
  parts (9 messages in `state-v30.db`).
- `tool_calls` is a JSON string in SQLite (written as Python's `json.dumps` writes it) and a JSON
  array in the sidecars.
- A session may have a `parent_session_id` (lineage): `20260501_060937_950afd` continues
  `20260501_030107_08fb17`, and `20260505_062032_768e42` continues `20260504_222135_186411`.
- The same conversation can be present in a database and in a sidecar: importing both must not
  duplicate messages ({v30s} sessions and {v30m} messages after importing `state-v30.db` and
  `sessions/`).
"#,
        v11s = c.v11_sessions,
        v11m = c.v11_messages,
        v30s = c.v30_sessions,
        v30m = c.v30_messages,
        dr = c.damaged_readable,
        dt = c.damaged_total,
        bm = c.bitrot.messages,
        bc = c.bitrot.content_flipped,
        bs = c.bitrot.session_id_flipped,
        bt = c.bitrot.timestamp_retyped,
        cut = CUT_SIDECARS.len(),
        sf = c.sidecar_files,
        sm = c.sidecar_messages,
    )
}

/// Writes every fixture file into `out` (created if needed), replacing what is there.
pub fn generate(out: &Path) -> Result<Counts> {
    fs::create_dir_all(out)?;
    let convs: Vec<Conversation> = SESSIONS.iter().enumerate().map(|(i, s)| conversation(i, s)).collect();
    let (v11, rest) = convs.split_at(V11_SESSIONS);
    write_v11(&out.join("state-v11.db"), v11)?;
    write_v30(&out.join("state-v30.db"), &convs)?;
    let sidecar_messages = write_sidecars(&out.join("sessions"), rest)?;
    let (damaged_readable, damaged_total) =
        write_damaged(&out.join("state-v30.db"), &out.join("state-v30-damaged.db"))?;
    let bitrot = write_bitrot(&out.join("state-v30.db"), &out.join("state-v30-bitrot.db"))?;
    let counts = Counts {
        v11_sessions: v11.len(),
        v11_messages: v11.iter().map(|c| c.messages.len()).sum(),
        v30_sessions: convs.len(),
        v30_messages: convs.iter().map(|c| c.messages.len()).sum(),
        sidecar_files: rest.len(),
        sidecar_messages,
        damaged_readable,
        damaged_total,
        bitrot,
    };
    fs::write(out.join("expected.json"), expected_json(&counts))?;
    fs::write(out.join("README.md"), readme(&counts))?;
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_known_answers() {
        assert_eq!(sha256_hex(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(
            sha256_hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
    }

    #[test]
    fn iso8601_as_python_writes_it() {
        assert_eq!(iso8601(1_777_827_550_757_505), "2026-05-03T16:59:10.757505+00:00");
        assert_eq!(iso8601(1_777_593_600_000_000), "2026-05-01T00:00:00+00:00");
        assert_eq!(id_seconds("20260503_165910_2ad761"), 1_777_827_550);
        assert_eq!(id_seconds("20240229_000000_2ad761"), 1_709_164_800);
    }

    #[test]
    fn python_json() {
        let v = Js::Obj(vec![("a", Js::s("é🧪\"\n")), ("b", Js::Arr(vec![Js::Int(1), Js::Int(-2)]))]);
        assert_eq!(v.dumps(true), r#"{"a": "\u00e9\ud83e\uddea\"\n", "b": [1, -2]}"#);
        assert_eq!(v.dumps(false), "{\"a\": \"é🧪\\\"\\n\", \"b\": [1, -2]}");
    }
}
