//! Whole-store operations: the library side of the `logbook` command-line tool.
//!
//! Each function here works on a store folder (not on an open [`Store`](crate::Store)), so tools,
//! tests and fuzz targets call exactly what the CLI calls: parsing one JSON message line,
//! rendering messages as JSON lines (plain or Hermes-style), verifying a whole store while
//! writers run, repairing it, rebuilding the index from the journal, taking a consistent backup,
//! and gathering statistics.
//!
//! Nothing here deletes data: damaged files are moved to a `quarantine/` folder with a note.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use logbook_journal::{Journal, RecoveryMode};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::codec;
use crate::compactor::quarantine_index_files;
use crate::error::{Error, Result};
use crate::index::{Index, IndexError, IndexOptions, SessionFilter};
use crate::model::{Entry, Message, Session};
use crate::store::{COMPACTOR_LOCK, INDEX_FILE, LANES_DIR, QUARANTINE_DIR, lane_names};

/// Largest id, session id or role accepted, in bytes (the store's own limit).
const MAX_KEY_LEN: usize = 1024;

/// Entries applied per SQLite transaction when rebuilding.
const REBUILD_BATCH: usize = 2_000;

/// Multimodal content marker (Hermes): the rest of the text is a JSON array of parts.
const MULTIMODAL_PREFIX: &str = "\u{0}json:";

/// A progress callback: `(stage, done, total)`; `total` is 0 when unknown.
pub type Progress<'a> = &'a mut dyn FnMut(&str, u64, u64);

// ---------------------------------------------------------------------------------------------
// JSON lines
// ---------------------------------------------------------------------------------------------

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn take_string(o: &mut Map<String, Value>, k: &str) -> std::result::Result<Option<String>, String> {
    match o.remove(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(format!("`{k}` must be a string, not {}", kind(&v))),
    }
}

fn check_key(what: &str, v: &str) -> std::result::Result<(), String> {
    if v.is_empty() {
        return Err(format!("`{what}` is empty"));
    }
    if v.len() > MAX_KEY_LEN {
        return Err(format!("`{what}` is longer than {MAX_KEY_LEN} bytes"));
    }
    Ok(())
}

/// Parses a timestamp given as seconds since the Unix epoch (a number) or an ISO-8601 string.
pub fn parse_timestamp(v: &Value) -> std::result::Result<f64, String> {
    match v {
        Value::Null => Ok(0.0),
        Value::Number(n) => match n.as_f64() {
            Some(t) if t.is_finite() && t >= 0.0 => Ok(t),
            _ => Err(format!("`timestamp` {n} is not a non-negative number of seconds")),
        },
        Value::String(s) => match s.trim().parse::<f64>() {
            Ok(t) if t.is_finite() && t >= 0.0 => Ok(t),
            _ => parse_iso8601(s).ok_or_else(|| {
                format!("`timestamp` {s:?} is neither seconds nor an ISO-8601 date (2026-05-03T17:00:10Z)")
            }),
        },
        other => Err(format!("`timestamp` must be a number or an ISO-8601 string, not {}", kind(other))),
    }
}

/// Parses one line of `logbook append --jsonl`: a JSON object with `session_id`, `role`,
/// `content` and the optional fields of [`Message`]. `timestamp` may be seconds (number) or an
/// ISO-8601 string; `tool_calls` may be any JSON (stored as JSON text); `extra` must be an object.
/// Fields the model does not know are kept in `extra`. Never panics; the error says what is wrong.
pub fn parse_message_line(line: &str) -> std::result::Result<Message, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not valid JSON: {e}"))?;
    let Value::Object(mut o) = v else {
        return Err(format!("expected a JSON object, found {}", kind(&v)));
    };
    let session_id = take_string(&mut o, "session_id")?.ok_or("missing `session_id`")?;
    check_key("session_id", &session_id)?;
    let role = take_string(&mut o, "role")?.ok_or("missing `role`")?;
    check_key("role", &role)?;
    let id = take_string(&mut o, "id")?.unwrap_or_default();
    if !id.is_empty() {
        check_key("id", &id)?;
    }
    let content = match o.remove("content") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(v @ Value::Array(_)) => Some(format!("{MULTIMODAL_PREFIX}{v}")),
        Some(v) => return Err(format!("`content` must be a string or an array of parts, not {}", kind(&v))),
    };
    let timestamp = parse_timestamp(&o.remove("timestamp").unwrap_or(Value::Null))?;
    let tool_calls = match o.remove("tool_calls") {
        None | Some(Value::Null) => None,
        // A string holding a JSON array or object (as Hermes stores it) is kept as is.
        Some(Value::String(s)) if matches!(serde_json::from_str(&s), Ok(Value::Array(_) | Value::Object(_))) => Some(s),
        Some(v) => Some(v.to_string()),
    };
    let token_count = match o.remove("token_count") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(n.as_i64().ok_or_else(|| format!("`token_count` {n} is not an integer"))?),
        Some(v) => return Err(format!("`token_count` must be an integer, not {}", kind(&v))),
    };
    let mut extra = match o.remove("extra") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m),
        Some(v) => return Err(format!("`extra` must be an object, not {}", kind(&v))),
    };
    let tool_call_id = take_string(&mut o, "tool_call_id")?;
    let tool_name = take_string(&mut o, "tool_name")?;
    let reasoning = take_string(&mut o, "reasoning")?;
    let finish_reason = take_string(&mut o, "finish_reason")?;
    let source = take_string(&mut o, "source")?;
    // Anything else is kept, not dropped.
    if !o.is_empty() {
        let e = extra.get_or_insert_with(Map::new);
        for (k, v) in o {
            e.entry(k).or_insert(v);
        }
    }
    Ok(Message {
        id,
        session_id,
        role,
        content,
        tool_call_id,
        tool_name,
        tool_calls,
        reasoning,
        timestamp,
        token_count,
        finish_reason,
        source,
        extra: extra.map(|m| Value::Object(m).to_string()),
    })
}

fn json_text(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_string()))
}

/// A message as one JSON object with the field names `append --jsonl` reads (plus `id`);
/// absent fields are left out, `tool_calls` and `extra` are JSON values.
pub fn message_to_json(m: &Message) -> Value {
    let mut o = Map::new();
    o.insert("id".into(), m.id.clone().into());
    o.insert("session_id".into(), m.session_id.clone().into());
    o.insert("role".into(), m.role.clone().into());
    if let Some(c) = &m.content {
        o.insert("content".into(), c.clone().into());
    }
    o.insert("timestamp".into(), m.timestamp.into());
    let opt = |o: &mut Map<String, Value>, k: &str, v: &Option<String>| {
        if let Some(v) = v {
            o.insert(k.into(), v.clone().into());
        }
    };
    opt(&mut o, "source", &m.source);
    if let Some(t) = &m.tool_calls {
        o.insert("tool_calls".into(), json_text(t));
    }
    opt(&mut o, "tool_call_id", &m.tool_call_id);
    opt(&mut o, "tool_name", &m.tool_name);
    opt(&mut o, "reasoning", &m.reasoning);
    if let Some(n) = m.token_count {
        o.insert("token_count".into(), n.into());
    }
    opt(&mut o, "finish_reason", &m.finish_reason);
    if let Some(x) = &m.extra {
        o.insert("extra".into(), json_text(x));
    }
    Value::Object(o)
}

/// A session as Hermes writes its JSONL sidecar: a `session_meta` line, then one OpenAI-style
/// message per line with ISO-8601 timestamps.
pub fn hermes_session_lines(session: &Session, msgs: &[Message]) -> Vec<Value> {
    let mut out = Vec::with_capacity(msgs.len() + 1);
    let mut meta = Map::new();
    meta.insert("role".into(), "session_meta".into());
    meta.insert("session_id".into(), session.id.clone().into());
    if let Some(m) = &session.model {
        meta.insert("model".into(), m.clone().into());
    }
    if let Some(p) = &session.source {
        meta.insert("platform".into(), p.clone().into());
    }
    let started = session.started_at.or_else(|| msgs.first().map(|m| m.timestamp)).unwrap_or(0.0);
    meta.insert("timestamp".into(), format_iso8601(started).into());
    if let Some(t) = &session.title {
        meta.insert("title".into(), t.clone().into());
    }
    if let Some(p) = &session.parent_session_id {
        meta.insert("parent_session_id".into(), p.clone().into());
    }
    out.push(Value::Object(meta));
    for m in msgs {
        let mut o = Map::new();
        o.insert("role".into(), m.role.clone().into());
        if let Some(c) = &m.content {
            match c.strip_prefix(MULTIMODAL_PREFIX).and_then(|j| serde_json::from_str::<Value>(j).ok()) {
                Some(parts) => o.insert("content".into(), parts),
                None => o.insert("content".into(), c.clone().into()),
            };
        }
        if let Some(r) = &m.reasoning {
            o.insert("reasoning".into(), r.clone().into());
        }
        if let Some(f) = &m.finish_reason {
            o.insert("finish_reason".into(), f.clone().into());
        }
        if let Some(t) = &m.tool_calls {
            o.insert("tool_calls".into(), json_text(t));
        }
        if let Some(t) = &m.tool_call_id {
            o.insert("tool_call_id".into(), t.clone().into());
        }
        if let Some(t) = &m.tool_name {
            o.insert("tool_name".into(), t.clone().into());
        }
        if let Some(n) = m.token_count {
            o.insert("token_count".into(), n.into());
        }
        o.insert("timestamp".into(), format_iso8601(m.timestamp).into());
        out.push(Value::Object(o));
    }
    out
}

/// Parses an ISO-8601 / RFC 3339 date-time (`2026-05-03T17:00:10.035508+00:00`, `...Z`, a space
/// instead of `T`, or no offset, read as UTC) into seconds since the Unix epoch (1970 or later).
pub fn parse_iso8601(s: &str) -> Option<f64> {
    let (t, _naive) = crate::time::parse_iso8601(s)?;
    (t.is_finite() && t >= 0.0).then_some(t)
}

/// Formats seconds since the Unix epoch as `2026-05-03T17:00:10.035508+00:00` (UTC, microseconds).
pub fn format_iso8601(t: f64) -> String {
    crate::time::format_iso8601(t)
}

// ---------------------------------------------------------------------------------------------
// Store folder helpers
// ---------------------------------------------------------------------------------------------

/// Journal options for reading a store whatever record size it was written with.
pub fn read_options(recovery: RecoveryMode) -> logbook_journal::Options {
    logbook_journal::Options {
        recovery,
        max_record_size: 1 << 30,
        preallocate: false,
        ..logbook_journal::Options::default()
    }
}

fn lane_dir(dir: &Path, name: &str) -> PathBuf {
    dir.join(LANES_DIR).join(name)
}

fn file_len(p: &Path) -> u64 {
    fs::metadata(p).map_or(0, |m| m.len())
}

fn wal_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push("-wal");
    PathBuf::from(s)
}

/// Takes the store's compactor lock without waiting; `None` if a running process holds it (that
/// process runs the compactor, which checks and rebuilds the index itself).
pub fn try_lock_compactor(dir: &Path) -> Result<Option<File>> {
    let path = dir.join(COMPACTOR_LOCK);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| Error::io("open", &path, e))?;
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(e)) => Err(Error::io("lock", &path, e)),
    }
}

fn create_dir_0700(p: &Path) -> Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(p).map_err(|e| Error::io("create folder", p, e))
}

fn sync_dir(p: &Path) -> Result<()> {
    File::open(p).and_then(|f| f.sync_all()).map_err(|e| Error::io("sync folder", p, e))
}

// ---------------------------------------------------------------------------------------------
// Verify
// ---------------------------------------------------------------------------------------------

/// What `verify` found in one lane.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LaneVerify {
    /// Lane name.
    pub name: String,
    /// Segment files.
    pub segments: usize,
    /// Records read and checked.
    pub records: u64,
    /// Lowest LSN present.
    pub first_lsn: u64,
    /// Highest valid LSN.
    pub last_lsn: u64,
    /// Damage salvaged earlier and skipped (listed in the lane's `holes.json`).
    pub known_holes: usize,
    /// What is wrong (empty when the lane is sound).
    pub problems: Vec<String>,
}

/// What `verify` found in the index.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IndexVerify {
    /// The index file.
    pub path: PathBuf,
    /// Whether it exists.
    pub present: bool,
    /// Size of the database file.
    pub db_bytes: u64,
    /// Size of its WAL.
    pub wal_bytes: u64,
    /// Indexed messages.
    pub messages: Option<u64>,
    /// Distinct message ids in the journal up to the applied positions.
    pub journal_messages: Option<u64>,
    /// Applied position per lane.
    pub applied: BTreeMap<String, u64>,
    /// Journal entries not yet applied.
    pub unindexed: u64,
    /// What is wrong (empty when healthy).
    pub problems: Vec<String>,
}

/// The result of [`verify_store`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    /// The store folder.
    pub dir: PathBuf,
    /// Every lane.
    pub lanes: Vec<LaneVerify>,
    /// The index.
    pub index: IndexVerify,
    /// Every problem, in words (empty when the store verifies).
    pub problems: Vec<String>,
}

impl VerifyReport {
    /// True when nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

fn unique_temp_dir(tag: &str) -> Result<PathBuf> {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let p = std::env::temp_dir().join(format!("logbook-{tag}-{}-{nanos}", std::process::id()));
    create_dir_0700(&p)?;
    Ok(p)
}

/// Checks a whole store without changing it (safe while writers run): every lane's segments
/// record by record ([`logbook_journal::verify`]); the index's `quick_check` and FTS5
/// integrity-check (on a private copy, since the check is a write statement); that its applied
/// positions are not ahead of the journal; and that the message ids in the journal up to those
/// positions are exactly the indexed ones (so, once caught up, the counts are equal).
pub fn verify_store(dir: &Path, progress: Progress<'_>) -> Result<VerifyReport> {
    let mut rep = VerifyReport { dir: dir.to_path_buf(), ..VerifyReport::default() };
    let names = lane_names(dir)?;
    let total = names.len() as u64;
    let mut journals: BTreeMap<String, Journal> = BTreeMap::new();
    for (i, name) in names.iter().enumerate() {
        progress("checking lanes", i as u64, total);
        let ldir = lane_dir(dir, name);
        let mut lv = LaneVerify { name: name.clone(), ..LaneVerify::default() };
        match logbook_journal::verify(&ldir, &read_options(RecoveryMode::Strict)) {
            Ok(r) => {
                lv.segments = r.segments;
                lv.records = r.records_scanned;
                lv.first_lsn = r.first_lsn;
                lv.last_lsn = r.last_lsn;
                lv.known_holes = r.known_holes;
                lv.problems = r.problems;
            }
            Err(e) => lv.problems.push(e.to_string()),
        }
        match Journal::open_read_only(&ldir, read_options(RecoveryMode::Strict)) {
            Ok(j) => {
                journals.insert(name.clone(), j);
            }
            Err(e) if lv.problems.is_empty() => lv.problems.push(format!("cannot be read: {e}")),
            Err(_) => {}
        }
        rep.problems.extend(lv.problems.iter().map(|p| format!("lane {name}: {p}")));
        rep.lanes.push(lv);
    }
    progress("checking lanes", total, total);
    rep.index = verify_index(dir, &journals, progress);
    rep.problems.extend(rep.index.problems.iter().map(|p| format!("index: {p}")));
    Ok(rep)
}

fn verify_index(dir: &Path, journals: &BTreeMap<String, Journal>, progress: Progress<'_>) -> IndexVerify {
    let path = dir.join(INDEX_FILE);
    let mut iv = IndexVerify { path: path.clone(), present: path.exists(), ..IndexVerify::default() };
    iv.db_bytes = file_len(&path);
    iv.wal_bytes = file_len(&wal_path(&path));
    if !iv.present {
        let records: u64 = journals.values().map(|j| j.last_lsn()).sum();
        if records > 0 {
            iv.problems.push(format!("{} is missing; run `logbook rebuild-index`", path.display()));
        }
        return iv;
    }
    let opts = IndexOptions::default();
    let ix = match Index::open_read_only(&path, &opts) {
        Ok(ix) => ix,
        Err(e) => {
            iv.problems.push(format!("cannot be opened: {e}; run `logbook repair`"));
            return iv;
        }
    };
    // Integrity: on a private copy, where the FTS5 integrity-check (a write statement) may run.
    progress("checking the index", 0, 0);
    match unique_temp_dir("verify") {
        Ok(tmp) => {
            let copy = tmp.join(INDEX_FILE);
            match ix.backup_to(&copy).and_then(|()| Index::open(&copy, &opts)).and_then(|c| c.check()) {
                Ok(p) => iv.problems.extend(p),
                Err(e) if e.is_corruption() => iv.problems.push(format!("{e}; run `logbook repair`")),
                Err(e) => iv.problems.push(format!("could not be checked: {e}")),
            }
            let _ = fs::remove_dir_all(&tmp);
        }
        Err(e) => iv.problems.push(format!("could not be checked (no temporary folder): {e}")),
    }
    // A consistent view: positions, ids, positions again.
    let mut view = None;
    for _ in 0..5 {
        let read = || -> std::result::Result<_, IndexError> {
            let before = ix.applied_positions()?;
            let ids = ix.message_ids()?;
            let count = ix.message_count()?;
            let after = ix.applied_positions()?;
            Ok((before, ids, count, after))
        };
        match read() {
            Ok((before, ids, count, after)) if before == after => {
                view = Some((before, ids, count));
                break;
            }
            Ok(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
            Err(e) => {
                iv.problems.push(format!("cannot be read: {e}"));
                return iv;
            }
        }
    }
    let Some((positions, ids, count)) = view else {
        iv.problems.push("kept changing while being read; run verify again".into());
        return iv;
    };
    iv.messages = Some(count);
    iv.applied = positions.clone();
    let mut complete_history = true;
    for (lane, pos) in &positions {
        match journals.get(lane) {
            Some(j) => {
                let last = j.last_lsn();
                if *pos > last {
                    iv.problems.push(format!("applied position {pos} of lane {lane} is ahead of its journal (last LSN {last}); run `logbook repair`"));
                }
            }
            None if dir.join(LANES_DIR).join(lane).exists() => complete_history = false,
            None => iv.problems.push(format!("refers to lane {lane}, which this store does not have")),
        }
    }
    for (name, j) in journals {
        let pos = positions.get(name).copied().unwrap_or(0);
        iv.unindexed += j.last_lsn().saturating_sub(pos);
    }
    // Journal ids up to the applied positions.
    let mut journal_ids: BTreeSet<String> = BTreeSet::new();
    let total: u64 = positions.values().sum();
    let mut done = 0u64;
    for (name, j) in journals {
        let pos = positions.get(name).copied().unwrap_or(0);
        if j.status().holes > 0 {
            complete_history = false; // salvaged damage: the index may hold the only copy
        }
        if j.first_lsn() > 1 {
            complete_history = false; // retention removed segments: the index holds the only copy
        }
        for r in j.iter_from(j.first_lsn()) {
            match r {
                Ok(rec) if rec.lsn > pos => break,
                Ok(rec) => {
                    done += 1;
                    if done.is_multiple_of(10_000) {
                        progress("comparing journal and index", done, total);
                    }
                    match codec::decode(&rec.payload) {
                        Ok(Entry::Message(m)) => {
                            journal_ids.insert(m.id);
                        }
                        Ok(Entry::Session(_)) => {}
                        Err(e) => iv.problems.push(format!("lane {name} record {} does not decode: {e}", rec.lsn)),
                    }
                }
                Err(e) => {
                    complete_history = false;
                    iv.problems.push(format!("lane {name} cannot be read to compare with the index: {e}"));
                    break;
                }
            }
        }
    }
    progress("comparing journal and index", total, total);
    iv.journal_messages = Some(journal_ids.len() as u64);
    let index_ids: BTreeSet<String> = ids.into_iter().collect();
    let missing: Vec<&String> = journal_ids.difference(&index_ids).collect();
    if !missing.is_empty() {
        iv.problems.push(format!(
            "{} message(s) applied from the journal are missing from the index (first: {}); run `logbook repair`",
            missing.len(),
            missing.first().map(|s| s.as_str()).unwrap_or("")
        ));
    }
    if complete_history {
        let extra: Vec<&String> = index_ids.difference(&journal_ids).collect();
        if !extra.is_empty() {
            iv.problems.push(format!(
                "{} indexed message(s) are not in the journal (first: {}); run `logbook repair`",
                extra.len(),
                extra.first().map(|s| s.as_str()).unwrap_or("")
            ));
        }
        if iv.unindexed == 0 && journal_ids.len() as u64 != count {
            iv.problems.push(format!(
                "index holds {count} messages but the journal has {} distinct message ids",
                journal_ids.len()
            ));
        }
    }
    iv
}

// ---------------------------------------------------------------------------------------------
// Rebuild
// ---------------------------------------------------------------------------------------------

/// What a rebuild applied.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RebuildReport {
    /// The index file written.
    pub path: PathBuf,
    /// Journal entries read.
    pub entries: u64,
    /// Messages indexed.
    pub messages: u64,
    /// Messages skipped as duplicates of an id already indexed.
    pub duplicate_messages: u64,
    /// Session changes applied.
    pub sessions: u64,
    /// Records that did not decode (skipped).
    pub undecodable: u64,
    /// Applied position per lane.
    pub applied: BTreeMap<String, u64>,
}

/// Builds (or completes) the index at `dest` from every lane's journal, in batches. `dest` may
/// be the store's own `index.db` (after [`quarantine_index_files`], with the compactor lock held)
/// or any other file. Lanes are read read-only; a lane with mid-log damage fails the rebuild
/// (run `logbook repair --salvage` first).
pub fn rebuild_index_at(dir: &Path, dest: &Path, progress: Progress<'_>) -> Result<RebuildReport> {
    let mut rep = RebuildReport { path: dest.to_path_buf(), ..RebuildReport::default() };
    let mut journals = Vec::new();
    for name in lane_names(dir)? {
        let j = Journal::open_read_only(lane_dir(dir, &name), read_options(RecoveryMode::Strict))?;
        journals.push((name, j));
    }
    let mut index = Index::open(dest, &IndexOptions::default())?;
    let positions = index.applied_positions()?;
    let total: u64 =
        journals.iter().map(|(n, j)| j.last_lsn().saturating_sub(positions.get(n).copied().unwrap_or(0))).sum();
    let mut batch: Vec<(String, u64, Entry)> = Vec::with_capacity(REBUILD_BATCH);
    let mut flush = |batch: &mut Vec<(String, u64, Entry)>, rep: &mut RebuildReport| -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let s = index.apply_batch(batch)?;
        rep.messages += s.messages;
        rep.duplicate_messages += s.duplicate_messages;
        rep.sessions += s.sessions;
        batch.clear();
        Ok(())
    };
    progress("rebuilding the index", 0, total);
    for (name, j) in &journals {
        let from = positions.get(name).copied().unwrap_or(0) + 1;
        for r in j.iter_from(from.max(j.first_lsn())) {
            let rec = r?;
            rep.entries += 1;
            match codec::decode(&rec.payload) {
                Ok(e) => batch.push((name.clone(), rec.lsn, e)),
                Err(e) => {
                    tracing::error!(lane = %name, lsn = rec.lsn, "journal record does not decode; skipped: {e}");
                    rep.undecodable += 1;
                }
            }
            if batch.len() >= REBUILD_BATCH {
                flush(&mut batch, &mut rep)?;
                progress("rebuilding the index", rep.entries, total);
            }
        }
        flush(&mut batch, &mut rep)?;
        progress("rebuilding the index", rep.entries, total);
    }
    flush(&mut batch, &mut rep)?;
    rep.applied = index.applied_positions()?;
    index.checkpoint_truncate()?;
    tracing::info!(path = %dest.display(), entries = rep.entries, messages = rep.messages, "index rebuilt from the journal");
    Ok(rep)
}

/// Moves the store's index to the quarantine and rebuilds it in place from the journal. Fails
/// if a running process holds the compactor role (stop the writers first; their compactor would
/// rebuild a damaged index by itself anyway).
pub fn rebuild_index_in_place(
    dir: &Path,
    reason: &str,
    progress: Progress<'_>,
) -> Result<(Vec<PathBuf>, RebuildReport)> {
    let Some(_lock) = try_lock_compactor(dir)? else {
        return Err(Error::Invalid(format!(
            "{} is held by a running process; stop the writers, then run this again",
            dir.join(COMPACTOR_LOCK).display()
        )));
    };
    let moved = quarantine_index_files(dir, reason)?;
    let rep = rebuild_index_at(dir, &dir.join(INDEX_FILE), progress)?;
    Ok((moved, rep))
}

// ---------------------------------------------------------------------------------------------
// Repair
// ---------------------------------------------------------------------------------------------

/// What `repair` did to one lane.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LaneRepair {
    /// Lane name.
    pub name: String,
    /// `clean`, `repaired`, `skipped` (a live writer holds it) or `failed`.
    pub outcome: String,
    /// Torn tails cut into the quarantine, as `segment @ offset (+len): reason`.
    pub torn_tails: Vec<String>,
    /// LSN ranges lost to salvage (inclusive).
    pub lost_lsns: Vec<(u64, u64)>,
    /// Files moved into the quarantine.
    pub quarantined_files: Vec<String>,
    /// What recovery reported, or why it failed.
    pub problems: Vec<String>,
    /// Highest LSN after repair.
    pub last_lsn: u64,
}

/// What `repair` did to the index.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IndexRepair {
    /// `healthy`, `rebuilt`, or `skipped` (a running process holds the compactor role).
    pub outcome: String,
    /// Why it was rebuilt or skipped.
    pub reason: Option<String>,
    /// Index files moved to the quarantine.
    pub quarantined: Vec<PathBuf>,
    /// The rebuild, if one ran.
    pub rebuild: Option<RebuildReport>,
}

/// The result of [`repair_store`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct RepairReport {
    /// Every lane.
    pub lanes: Vec<LaneRepair>,
    /// The index.
    pub index: IndexRepair,
    /// `verify` of the result.
    pub verify: VerifyReport,
}

/// Repairs a store: opens every lane not held by a live writer with [`Journal::open`] in the
/// given mode (which cuts torn tails into the quarantine and, with `Salvage`, quarantines
/// mid-log damage), then checks the index and, if it fails, moves it to the quarantine and
/// rebuilds it from the journal; finally verifies the result. Never deletes anything.
pub fn repair_store(dir: &Path, mode: RecoveryMode, progress: Progress<'_>) -> Result<RepairReport> {
    let mut rep = RepairReport::default();
    let mut lane_failed = false;
    for name in lane_names(dir)? {
        progress("repairing lanes", 0, 0);
        let mut lr = LaneRepair { name: name.clone(), ..LaneRepair::default() };
        match Journal::open(lane_dir(dir, &name), read_options(mode)) {
            Ok(j) => {
                let r = j.recovery_report();
                lr.outcome = if r.is_clean() { "clean" } else { "repaired" }.into();
                lr.torn_tails = r
                    .torn_tails
                    .iter()
                    .map(|t| {
                        format!(
                            "{} @ {} (+{} bytes): {} -> {}",
                            t.segment.display(),
                            t.offset,
                            t.len,
                            t.reason,
                            t.quarantine_file
                        )
                    })
                    .collect();
                lr.lost_lsns = r.lost_lsns();
                lr.quarantined_files = r.quarantined_files.clone();
                lr.problems = r.problems.clone();
                lr.last_lsn = j.last_lsn();
                j.close()?;
            }
            Err(logbook_journal::Error::Locked { .. }) => {
                lr.outcome = "skipped".into();
                lr.problems.push("a live writer holds this lane; it ran recovery when it opened it".into());
            }
            Err(e) => {
                lane_failed = true;
                lr.outcome = "failed".into();
                lr.problems.push(e.to_string());
            }
        }
        rep.lanes.push(lr);
    }
    rep.index = repair_index(dir, lane_failed, progress)?;
    rep.verify = verify_store(dir, progress)?;
    Ok(rep)
}

fn repair_index(dir: &Path, lane_failed: bool, progress: Progress<'_>) -> Result<IndexRepair> {
    let mut ir = IndexRepair::default();
    let Some(_lock) = try_lock_compactor(dir)? else {
        ir.outcome = "skipped".into();
        ir.reason = Some("a running process holds the compactor role; it checks and rebuilds the index itself".into());
        return Ok(ir);
    };
    let path = dir.join(INDEX_FILE);
    let reason = if !path.exists() {
        Some("index missing".to_string())
    } else {
        match Index::open(&path, &IndexOptions::default()) {
            Ok(ix) => {
                let mut problems = match ix.check() {
                    Ok(p) => p,
                    Err(e) if e.is_corruption() => vec![e.to_string()],
                    Err(e) => return Err(e.into()),
                };
                match ix.applied_positions() {
                    Ok(positions) => {
                        for (lane, pos) in positions {
                            let ldir = lane_dir(dir, &lane);
                            if !ldir.exists() {
                                problems.push(format!("refers to lane {lane}, which this store does not have"));
                                continue;
                            }
                            if let Ok(j) = Journal::open_read_only(&ldir, read_options(RecoveryMode::Strict))
                                && pos > j.last_lsn()
                            {
                                problems.push(format!(
                                    "applied position {pos} of lane {lane} is ahead of its journal (last LSN {})",
                                    j.last_lsn()
                                ));
                            }
                        }
                    }
                    Err(e) => problems.push(e.to_string()),
                }
                (!problems.is_empty()).then(|| format!("index check failed: {}", problems.join("; ")))
            }
            Err(e)
                if e.is_corruption()
                    || matches!(e, IndexError::NewerSchema { .. } | IndexError::NotInitialized { .. }) =>
            {
                Some(format!("index cannot be opened: {e}"))
            }
            Err(e) => return Err(e.into()),
        }
    };
    let Some(reason) = reason else {
        ir.outcome = "healthy".into();
        return Ok(ir);
    };
    if lane_failed {
        ir.outcome = "skipped".into();
        ir.reason =
            Some(format!("{reason}; not rebuilt while a lane cannot be opened (run `logbook repair --salvage`)"));
        return Ok(ir);
    }
    if path.exists() {
        ir.quarantined = quarantine_index_files(dir, &reason)?;
    }
    ir.rebuild = Some(rebuild_index_at(dir, &path, progress)?);
    ir.outcome = "rebuilt".into();
    ir.reason = Some(reason);
    Ok(ir)
}

// ---------------------------------------------------------------------------------------------
// Backup
// ---------------------------------------------------------------------------------------------

/// One lane of a backup.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LaneBackup {
    /// Lane name.
    pub name: String,
    /// Segment files copied.
    pub segments: usize,
    /// Bytes copied.
    pub bytes: u64,
    /// Highest LSN in the copy.
    pub last_lsn: u64,
    /// Bytes of an in-flight tail cut from the copy (into the copy's quarantine).
    pub cut_bytes: u64,
}

/// The result of [`backup_store`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct BackupReport {
    /// The backup folder.
    pub dest: PathBuf,
    /// Every lane.
    pub lanes: Vec<LaneBackup>,
    /// Whether the index was copied.
    pub index_copied: bool,
    /// Why it was not, if it was not.
    pub index_problem: Option<String>,
}

fn copy_file_0600(src: &Path, dest: &Path) -> Result<u64> {
    let mut from = File::open(src).map_err(|e| Error::io("open", src, e))?;
    let mut to = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dest)
        .map_err(|e| Error::io("create", dest, e))?;
    let n = io::copy(&mut from, &mut to).map_err(|e| Error::io("copy to", dest, e))?;
    to.sync_all().map_err(|e| Error::io("sync", dest, e))?;
    Ok(n)
}

fn copy_lane(src: &Path, dest: &Path) -> Result<(usize, u64)> {
    if dest.exists() {
        // Our own partial copy from a failed attempt: start over.
        fs::remove_dir_all(dest).map_err(|e| Error::io("remove", dest, e))?;
    }
    create_dir_0700(dest)?;
    let mut names: Vec<String> = fs::read_dir(src)
        .map_err(|e| Error::io("list", src, e))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| logbook_journal::decode::parse_segment_file_name(n).is_some() || n == logbook_journal::HOLES_FILE)
        .collect();
    names.sort();
    let (mut segs, mut bytes) = (0, 0);
    for n in names {
        bytes += copy_file_0600(&src.join(&n), &dest.join(&n))?;
        if n != logbook_journal::HOLES_FILE {
            segs += 1;
        }
    }
    sync_dir(dest)?;
    Ok((segs, bytes))
}

/// Takes a consistent copy of a store into `dest` (which must not exist, or be an empty folder)
/// while writers append: first the index (SQLite online backup), then each lane's segment files;
/// each copied lane is then opened with [`Journal::open`], which cuts a tail still being written
/// into the copy's quarantine, so the copy holds every record durable when it was taken and the
/// index copy is never ahead of it. Folders are created 0700, files 0600.
pub fn backup_store(dir: &Path, dest: &Path, progress: Progress<'_>) -> Result<BackupReport> {
    match fs::read_dir(dest) {
        Ok(mut it) => {
            if it.next().is_some() {
                return Err(Error::Invalid(format!(
                    "backup folder {} is not empty; choose a new folder",
                    dest.display()
                )));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("open backup folder", dest, e)),
    }
    create_dir_0700(dest)?;
    let mut rep = BackupReport { dest: dest.to_path_buf(), ..BackupReport::default() };
    let src_index = dir.join(INDEX_FILE);
    if src_index.exists() {
        progress("copying the index", 0, 0);
        match Index::open_read_only(&src_index, &IndexOptions::default())
            .and_then(|ix| ix.backup_to(&dest.join(INDEX_FILE)))
        {
            Ok(()) => rep.index_copied = true,
            Err(e) => {
                let _ = fs::remove_file(dest.join(INDEX_FILE));
                rep.index_problem = Some(format!("{e}; run `logbook rebuild-index --dir {}`", dest.display()));
            }
        }
    }
    let lanes = lane_names(dir)?;
    create_dir_0700(&dest.join(LANES_DIR))?;
    let total = lanes.len() as u64;
    for (i, name) in lanes.iter().enumerate() {
        progress("copying lanes", i as u64, total);
        let (src, dst) = (lane_dir(dir, name), lane_dir(dest, name));
        let mut attempt = 0;
        let lb = loop {
            attempt += 1;
            let copied = copy_lane(&src, &dst).and_then(|(segs, bytes)| {
                let j = Journal::open(&dst, read_options(RecoveryMode::Strict))?;
                let r = j.recovery_report();
                let lb = LaneBackup {
                    name: name.clone(),
                    segments: segs,
                    bytes,
                    last_lsn: j.last_lsn(),
                    cut_bytes: r.torn_tails.iter().map(|t| t.len).sum(),
                };
                j.close()?;
                Ok(lb)
            });
            match copied {
                Ok(lb) => break lb,
                // A segment sealed or removed during the copy, or a write caught half-way in the
                // middle: copy the lane again.
                Err(e) if attempt < 4 => {
                    tracing::warn!(lane = %name, attempt, "lane copy not consistent, copying again: {e}");
                }
                Err(e) => return Err(e),
            }
        };
        rep.lanes.push(lb);
    }
    progress("copying lanes", total, total);
    sync_dir(&dest.join(LANES_DIR))?;
    sync_dir(dest)?;
    Ok(rep)
}

// ---------------------------------------------------------------------------------------------
// Stats
// ---------------------------------------------------------------------------------------------

/// One lane in [`StoreStats`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct LaneStats {
    /// Lane name.
    pub name: String,
    /// Segment files.
    pub segments: usize,
    /// Bytes of segment files (preallocated space included).
    pub bytes: u64,
    /// Lowest LSN present.
    pub first_lsn: u64,
    /// Highest readable LSN.
    pub last_lsn: u64,
    /// Applied to the index up to here.
    pub applied_lsn: Option<u64>,
    /// Salvaged holes skipped.
    pub holes: usize,
    /// Why the lane cannot be read, if it cannot.
    pub error: Option<String>,
}

/// One file in a quarantine folder.
#[derive(Debug, Clone, Default, Serialize)]
pub struct QuarantinedFile {
    /// The file.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// The reason given in its note, if there is one.
    pub reason: Option<String>,
}

/// A snapshot of a store folder, read without changing anything.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StoreStats {
    /// The store folder.
    pub dir: PathBuf,
    /// Every lane.
    pub lanes: Vec<LaneStats>,
    /// Total bytes of segment files.
    pub journal_bytes: u64,
    /// Journal entries not yet applied to the index (compactor lag).
    pub unindexed: u64,
    /// Size of `index.db`.
    pub index_bytes: u64,
    /// Size of `index.db-wal`.
    pub wal_bytes: u64,
    /// Indexed messages.
    pub indexed_messages: Option<u64>,
    /// Indexed sessions.
    pub indexed_sessions: Option<u64>,
    /// When the compactor (or `logbook checkpoint`) last ran `wal_checkpoint(TRUNCATE)`, ms since
    /// the Unix epoch (recorded in the index).
    pub last_checkpoint_unix_ms: Option<u64>,
    /// Why the index cannot be read, if it cannot.
    pub index_error: Option<String>,
    /// Everything under every `quarantine/` folder.
    pub quarantine: Vec<QuarantinedFile>,
}

/// Lists the files of a quarantine folder with the reason from their note (`<base>.json`).
pub fn list_quarantine(qdir: &Path) -> Vec<QuarantinedFile> {
    let Ok(rd) = fs::read_dir(qdir) else { return Vec::new() };
    let mut names: Vec<String> = rd.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
    names.sort();
    let notes: Vec<(String, Option<String>)> = names
        .iter()
        .filter_map(|n| n.strip_suffix(".json").map(|stem| (n, stem)))
        .map(|(n, stem)| {
            let reason = fs::read(qdir.join(n))
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .and_then(|v| v.get("reason").and_then(|r| r.as_str()).map(str::to_string));
            (stem.to_string(), reason)
        })
        .collect();
    names
        .iter()
        .filter(|n| !n.ends_with(".json"))
        .map(|n| {
            let base = n.strip_suffix(".bin").unwrap_or(n);
            let reason = notes
                .iter()
                .filter(|(stem, _)| base.starts_with(stem.as_str()))
                .max_by_key(|(stem, _)| stem.len())
                .and_then(|(_, r)| r.clone());
            let path = qdir.join(n);
            QuarantinedFile { bytes: file_len(&path), path, reason }
        })
        .collect()
}

/// Gathers statistics about a store folder without changing it.
pub fn store_stats(dir: &Path) -> Result<StoreStats> {
    let mut st = StoreStats { dir: dir.to_path_buf(), ..StoreStats::default() };
    let index_path = dir.join(INDEX_FILE);
    let mut positions = None;
    if index_path.exists() {
        match Index::open_read_only(&index_path, &IndexOptions::default()) {
            Ok(ix) => {
                let r = (|| -> std::result::Result<_, IndexError> {
                    let sessions = ix.list_sessions(&SessionFilter::default())?.len() as u64;
                    st.last_checkpoint_unix_ms = ix.last_checkpoint_unix_ms()?;
                    Ok((ix.applied_positions()?, ix.message_count()?, sessions))
                })();
                match r {
                    Ok((p, m, s)) => {
                        positions = Some(p);
                        st.indexed_messages = Some(m);
                        st.indexed_sessions = Some(s);
                    }
                    Err(e) => st.index_error = Some(e.to_string()),
                }
            }
            Err(e) => st.index_error = Some(e.to_string()),
        }
    } else {
        st.index_error = Some("no index yet".into());
    }
    st.index_bytes = file_len(&index_path);
    let wal = wal_path(&index_path);
    st.wal_bytes = file_len(&wal);
    st.quarantine.extend(list_quarantine(&dir.join(QUARANTINE_DIR)));
    for name in lane_names(dir)? {
        let ldir = lane_dir(dir, &name);
        let mut ls = LaneStats { name: name.clone(), ..LaneStats::default() };
        if let Ok(rd) = fs::read_dir(&ldir) {
            for e in rd.flatten() {
                if let Ok(n) = e.file_name().into_string()
                    && logbook_journal::decode::parse_segment_file_name(&n).is_some()
                {
                    ls.segments += 1;
                    ls.bytes += e.metadata().map_or(0, |m| m.len());
                }
            }
        }
        match Journal::open_read_only(&ldir, read_options(RecoveryMode::Strict)) {
            Ok(j) => {
                let s = j.status();
                ls.first_lsn = s.first_lsn;
                ls.last_lsn = s.written_lsn;
                ls.holes = s.holes;
            }
            Err(e) => ls.error = Some(e.to_string()),
        }
        ls.applied_lsn = positions.as_ref().map(|p| p.get(&name).copied().unwrap_or(0));
        st.unindexed += ls.last_lsn.saturating_sub(ls.applied_lsn.unwrap_or(0));
        st.journal_bytes += ls.bytes;
        st.quarantine.extend(list_quarantine(&ldir.join(logbook_journal::QUARANTINE_DIR)));
        st.lanes.push(ls);
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn iso_round_trip() {
        let t = parse_iso8601("2026-05-03T17:00:10.035508+00:00").unwrap();
        assert_eq!(format_iso8601(t), "2026-05-03T17:00:10.035508+00:00");
        assert_eq!(parse_iso8601("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(parse_iso8601("1970-01-01T01:00:00+01:00"), Some(0.0));
        assert_eq!(parse_iso8601("1970-01-02"), Some(86_400.0));
        assert_eq!(parse_iso8601("2026-13-01T00:00:00Z"), None);
        assert_eq!(parse_iso8601("2026-01-01T00:00:00Zjunk"), None);
        assert_eq!(parse_iso8601("é"), None);
    }

    #[test]
    fn parse_line() {
        let m = parse_message_line(
            r#"{"session_id":"s","role":"assistant","content":null,"tool_calls":[{"id":"c1"}],"timestamp":"2026-05-03T17:00:10Z","token_count":3,"mood":"ok"}"#,
        )
        .unwrap();
        assert_eq!(m.tool_calls.as_deref(), Some(r#"[{"id":"c1"}]"#));
        assert_eq!(m.extra.as_deref(), Some(r#"{"mood":"ok"}"#));
        assert!(m.timestamp > 1.7e9);
        let back = parse_message_line(&message_to_json(&m).to_string()).unwrap();
        assert_eq!(back.tool_calls, m.tool_calls);
        for bad in [
            "",
            "[]",
            "{}",
            r#"{"session_id":"s"}"#,
            r#"{"session_id":"","role":"user"}"#,
            r#"{"session_id":1,"role":"user"}"#,
            r#"{"session_id":"s","role":"user","timestamp":"yesterday"}"#,
            r#"{"session_id":"s","role":"user","timestamp":-1}"#,
            r#"{"session_id":"s","role":"user","extra":[1]}"#,
            r#"{"session_id":"s","role":"user","token_count":1.5}"#,
        ] {
            assert!(parse_message_line(bad).is_err(), "{bad}");
        }
    }
}
