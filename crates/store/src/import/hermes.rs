//! Hermes `state.db` rows (any schema version) to sessions and messages.

use crate::entry::Entry;
use crate::model::Message;
use crate::model::SessionPatch;
use std::collections::HashMap;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::Path;

use super::json::{J, Style};

use rusqlite::types::ValueRef;

use super::sqlite::{Cell, Db, RowRead, check_sqlite_header, copy_with_wal, open_copy, open_read_only, quote_ident};
use super::{IMPORT_FLAGS_KEY, ImportError, ImportReport, Out, SinkError, UNREADABLE_COLUMNS_KEY};

/// Reads a Hermes Agent `state.db` of any schema version, read-only, and calls `sink` with a
/// [`SessionPatch`] for every session (in rowid order), then with every [`Message`] (ordered by
/// session id, then timestamp, then Hermes row id). Message ids come from
/// [`imported_message_id`](crate::imported_message_id); `message.source` is the session's source.
///
/// The file is opened with `mode=ro&immutable=1` and is never changed: no `-wal` or `-shm` file
/// is created and no checkpoint runs. If it has a `-wal` (Hermes Agent was killed or is
/// running), both are copied into a private scratch folder and the copy is read, WAL included. A damaged file is salvaged row by row (see the module
/// documentation); what was lost is counted in the report. A `sink` error stops the import and
/// is returned as [`ImportError::Sink`].
pub fn import_hermes_db(
    path: &Path,
    sink: &mut dyn FnMut(Entry) -> Result<(), SinkError>,
) -> Result<ImportReport, ImportError> {
    check_sqlite_header(path)?;
    let mut out = Out::new(path.to_path_buf(), sink);
    let wal_copy = copy_with_wal(path, &mut out);
    let conn = match &wal_copy {
        Some(copy) => open_copy(copy, path)?,
        None => open_read_only(path)?,
    };
    // Salvage prepares one statement per column; keep them all cached.
    conn.set_prepared_statement_cache_capacity(256);
    let db = Db { conn, path };

    let tables = db.table_names()?;
    if !tables.contains("messages") {
        return Err(ImportError::NotHermes { path: path.to_path_buf(), detail: "it has no `messages` table".into() });
    }
    out.report.schema_version = db.schema_version(&tables, &mut out);

    let message_cols = db.columns("messages")?;
    for required in ["session_id", "role", "timestamp"] {
        if !message_cols.iter().any(|c| c == required) {
            return Err(ImportError::NotHermes {
                path: path.to_path_buf(),
                detail: format!("its `messages` table has no `{required}` column"),
            });
        }
    }

    let mut sources = HashMap::new();
    if tables.contains("sessions") {
        let session_cols = db.columns("sessions")?;
        if session_cols.iter().any(|c| c == "id") {
            let prompts = tables.contains("system_prompts");
            import_sessions(&db, &session_cols, prompts, &mut sources, &mut out)?;
        } else {
            out.warn(format!("{}: table `sessions` has no `id` column; sessions not imported", path.display()));
        }
    } else {
        out.warn(format!("{}: no `sessions` table; only messages imported", path.display()));
    }
    import_messages(&db, &message_cols, &sources, &mut out)?;

    let report = out.finish();
    tracing::info!(
        path = %path.display(),
        schema_version = ?report.schema_version,
        sessions = report.sessions,
        messages = report.messages,
        unreadable_rows = report.unreadable_rows,
        "imported Hermes database"
    );
    Ok(report)
}

/// What messages need of their session: its source, and its start for a lost timestamp.
#[derive(Debug, Clone, Default)]
pub(super) struct SessionInfo {
    pub(super) source: Option<String>,
    pub(super) started_at: Option<f64>,
}

/// Sessions by id.
pub(super) type Sessions = HashMap<String, SessionInfo>;

/// Decodes a row into model fields, collecting what the model has no field for.
pub(super) struct Fields<'c> {
    pub(super) cols: &'c [String],
    pub(super) cells: Vec<Option<Cell>>,
    pub(super) extra: Vec<(String, J)>,
    pub(super) unreadable: Vec<String>,
    /// Columns whose text was not valid UTF-8 and was decoded with U+FFFD replacements.
    pub(super) lossy: Vec<String>,
    /// Other repairs, written under [`IMPORT_FLAGS_KEY`] with `lossy_utf8`.
    pub(super) flags: Vec<(String, J)>,
}

impl<'c> Fields<'c> {
    pub(super) fn new(cols: &'c [String], cells: Vec<Option<Cell>>) -> Self {
        let mut unreadable = Vec::new();
        for (name, cell) in cols.iter().zip(&cells) {
            if cell.is_none() {
                unreadable.push(name.clone());
            }
        }
        Self { cols, cells, extra: Vec::new(), unreadable, lossy: Vec::new(), flags: Vec::new() }
    }

    /// Text bytes as a string; invalid UTF-8 is decoded lossily and the column flagged.
    pub(super) fn decode(&mut self, name: &str, bytes: Vec<u8>) -> String {
        match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => {
                self.lossy.push(name.to_string());
                String::from_utf8_lossy(e.as_bytes()).into_owned()
            }
        }
    }

    pub(super) fn take(&mut self, name: &str) -> Option<Cell> {
        let i = self.cols.iter().position(|c| c == name)?;
        self.cells.get_mut(i).and_then(Option::take)
    }

    /// A TEXT column the model knows; wrong-typed values go to `extra`.
    pub(super) fn text(&mut self, name: &str) -> Option<String> {
        match self.take(name)? {
            Cell::Null => None,
            Cell::Text(bytes) => Some(self.decode(name, bytes)),
            other => {
                self.keep(name, other);
                None
            }
        }
    }

    /// An identifying TEXT column: present, text, UTF-8.
    pub(super) fn required_text(&mut self, name: &str) -> Result<String, String> {
        match self.take(name) {
            Some(Cell::Text(bytes)) => String::from_utf8(bytes).map_err(|_| format!("`{name}` is not valid UTF-8")),
            Some(Cell::Null) => Err(format!("`{name}` is NULL")),
            Some(_) => Err(format!("`{name}` is not text")),
            None => Err(format!("`{name}` cannot be read")),
        }
    }

    pub(super) fn real(&mut self, name: &str) -> Option<f64> {
        match self.take(name)? {
            Cell::Null => None,
            Cell::Real(f) => Some(f),
            Cell::Int(i) => Some(i as f64),
            other => {
                self.keep(name, other);
                None
            }
        }
    }

    pub(super) fn int(&mut self, name: &str) -> Option<i64> {
        match self.take(name)? {
            Cell::Null => None,
            Cell::Int(i) => Some(i),
            other => {
                self.keep(name, other);
                None
            }
        }
    }

    pub(super) fn keep(&mut self, name: &str, cell: Cell) {
        let value = match cell {
            Cell::Null => return,
            Cell::Int(i) => J::Int(i),
            Cell::Real(f) => J::Float(f),
            Cell::Text(bytes) => J::Str(self.decode(name, bytes)),
            Cell::Blob(bytes) => {
                let mut hex = String::with_capacity(bytes.len() * 2);
                for b in bytes {
                    let _ = write!(hex, "{b:02x}");
                }
                J::Obj(vec![("$blob".into(), J::Str(hex))])
            }
        };
        self.extra.push((name.to_string(), value));
    }

    /// Moves every column not yet taken into `extra`, and returns it as JSON text, with the
    /// unreadable columns and whether any text was decoded lossily.
    pub(super) fn finish(mut self) -> (Option<String>, Vec<String>, bool) {
        for i in 0..self.cols.len() {
            if let (Some(name), Some(cell)) = (self.cols.get(i).cloned(), self.cells.get_mut(i).and_then(Option::take))
            {
                self.keep(&name, cell);
            }
        }
        if !self.unreadable.is_empty() {
            let names = self.unreadable.iter().cloned().map(J::Str).collect();
            self.extra.push((UNREADABLE_COLUMNS_KEY.to_string(), J::Arr(names)));
        }
        let lossy = !self.lossy.is_empty();
        if lossy || !self.flags.is_empty() {
            let mut flags = Vec::new();
            if lossy {
                flags.push(("lossy_utf8".to_string(), J::Arr(self.lossy.into_iter().map(J::Str).collect())));
            }
            flags.extend(self.flags);
            self.extra.push((IMPORT_FLAGS_KEY.to_string(), J::Obj(flags)));
        }
        let extra = if self.extra.is_empty() { None } else { Some(J::Obj(self.extra).to_json(Style::Compact)) };
        (extra, self.unreadable, lossy)
    }
}

pub(super) fn session_from_row(
    db: &Db<'_>,
    cols: &[String],
    cells: Vec<Option<Cell>>,
    with_prompts: bool,
    out: &mut Out<'_>,
) -> Result<SessionPatch, String> {
    let mut f = Fields::new(cols, cells);
    let id = f.required_text("id")?;
    let mut p = SessionPatch {
        source: f.text("source"),
        model: f.text("model"),
        title: f.text("title"),
        user_id: f.text("user_id"),
        chat_id: f.text("chat_id"),
        parent_session_id: f.text("parent_session_id"),
        started_at: f.real("started_at"),
        ended_at: f.real("ended_at"),
        end_reason: f.text("end_reason"),
        ..SessionPatch::default()
    };
    // v25+: the prompt lives in `system_prompts`, keyed by its SHA-256.
    let inline_prompt = f.text("system_prompt");
    let hash = f.text("system_prompt_hash");
    let prompt = match (inline_prompt, &hash) {
        (Some(p), _) => Some(p),
        (None, Some(h)) if with_prompts => match db.system_prompt(h) {
            Ok(Some(p)) => Some(p),
            Ok(None) => {
                out.warn(format!("{}: session {id}: system prompt {h} is not in `system_prompts`", db.path.display()));
                None
            }
            Err(e) => {
                out.warn(format!("{}: session {id}: cannot read system prompt {h}: {e}", db.path.display()));
                None
            }
        },
        _ => None,
    };
    if let Some(prompt) = prompt {
        f.extra.push(("system_prompt".into(), J::Str(prompt)));
    }
    if let Some(h) = hash {
        f.extra.push(("system_prompt_hash".into(), J::Str(h)));
    }
    let (extra, unreadable, lossy) = f.finish();
    if lossy {
        out.report.lossy_utf8_sessions += 1;
        out.warn(format!("{}: session {id}: text that is not valid UTF-8 was decoded lossily", db.path.display()));
    }
    if !unreadable.is_empty() {
        out.warn(format!(
            "{}: session {id}: columns {} could not be read; imported without them",
            db.path.display(),
            unreadable.join(", ")
        ));
    }
    p.id = id;
    p.extra = extra;
    Ok(p)
}

pub(super) fn import_sessions(
    db: &Db<'_>,
    cols: &[String],
    with_prompts: bool,
    sources: &mut Sessions,
    out: &mut Out<'_>,
) -> Result<(), ImportError> {
    let list: Vec<String> = cols.iter().map(|c| quote_ident(c)).collect();
    let sql = format!("SELECT rowid, {} FROM sessions ORDER BY rowid", list.join(", "));
    let mut last_rowid: Option<i64> = None;
    let scan = (|| -> rusqlite::Result<Result<(), ImportError>> {
        let mut stmt = db.conn.prepare(&sql)?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let rowid: i64 = row.get(0)?;
            let cells: Vec<Option<Cell>> = (1..=cols.len())
                .map(|i| row.get_ref(i).map(|v| Some(Cell::from_ref(v))))
                .collect::<rusqlite::Result<_>>()?;
            // Set first: a skipped row is counted once, not again by the salvage.
            last_rowid = Some(rowid);
            if let Err(e) = emit_session(db, cols, cells, with_prompts, rowid, sources, out) {
                return Ok(Err(e));
            }
        }
        Ok(Ok(()))
    })();
    match scan {
        Ok(result) => return result,
        Err(e) => out.warn(format!(
            "{}: reading `sessions` failed after {} rows ({e}); reading the rest row by row",
            db.path.display(),
            out.report.sessions
        )),
    }
    let candidates = db.salvage_candidates("sessions", out);
    let essential: Vec<usize> = cols.iter().position(|c| c == "id").into_iter().collect();
    for rowid in candidates.iter() {
        if last_rowid.is_some_and(|last| rowid <= last) {
            continue;
        }
        match db.read_row("sessions", cols, &essential, rowid) {
            RowRead::Found(cells) => {
                emit_session(db, cols, cells, with_prompts, rowid, sources, out)?;
            }
            RowRead::Missing if candidates.is_indexed(rowid) => {
                out.report.unreadable_rows += 1;
                out.warn(format!(
                    "{}: `sessions` row {rowid} is listed by an index but cannot be found; skipped",
                    db.path.display()
                ));
            }
            RowRead::Missing => {}
            RowRead::Failed(e) => {
                out.report.unreadable_rows += 1;
                out.warn(format!("{}: `sessions` row {rowid} cannot be read ({e}); skipped", db.path.display()));
            }
        }
    }
    Ok(())
}

pub(super) fn emit_session(
    db: &Db<'_>,
    cols: &[String],
    cells: Vec<Option<Cell>>,
    with_prompts: bool,
    rowid: i64,
    sources: &mut Sessions,
    out: &mut Out<'_>,
) -> Result<(), ImportError> {
    match session_from_row(db, cols, cells, with_prompts, out) {
        Ok(patch) => {
            sources
                .insert(patch.id.clone(), SessionInfo { source: patch.source.clone(), started_at: patch.started_at });
            out.session(patch)
        }
        Err(why) => {
            out.report.unreadable_rows += 1;
            out.warn(format!("{}: `sessions` row {rowid} skipped: {why}", db.path.display()));
            Ok(())
        }
    }
}

/// A message key the row itself could not give, taken from elsewhere (salvage only).
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct KeyRepair {
    /// The session id, taken from the neighbouring rows.
    pub(super) session_id: Option<String>,
    /// The timestamp, and where it came from (`previous_row`, `next_row`, `session_start`).
    pub(super) timestamp: Option<(f64, &'static str)>,
}

/// What [`message_from_row`] had to repair.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Repairs {
    pub(super) lossy: bool,
    pub(super) session_id: bool,
    pub(super) timestamp: bool,
}

pub(super) fn message_from_row(
    cols: &[String],
    cells: Vec<Option<Cell>>,
    sources: &Sessions,
    rowid: i64,
    repair: Option<&KeyRepair>,
) -> Result<(Message, Vec<String>, Repairs), String> {
    let mut f = Fields::new(cols, cells);
    let mut repairs = Repairs::default();
    let session_id = match (f.required_text("session_id"), repair.and_then(|r| r.session_id.clone())) {
        (Ok(s), _) => s,
        (Err(_), Some(s)) => {
            f.flags.push(("session_id_from".into(), J::Str("neighbour_rows".into())));
            repairs.session_id = true;
            s
        }
        (Err(e), None) => return Err(e),
    };
    let role = f.required_text("role")?;
    let timestamp = match (f.take("timestamp"), repair.and_then(|r| r.timestamp)) {
        (Some(Cell::Real(t)), _) => t,
        (Some(Cell::Int(t)), _) => t as f64,
        (bad, Some((t, from))) => {
            // The damaged bytes, kept as they were (text here is no text, so as a blob).
            if let Some(cell) = bad {
                let cell = match cell {
                    Cell::Text(b) => Cell::Blob(b),
                    other => other,
                };
                f.keep("timestamp_unreadable", cell);
            }
            f.flags.push(("timestamp_from".into(), J::Str(from.into())));
            repairs.timestamp = true;
            t
        }
        (Some(_), None) => return Err("`timestamp` is not a number".into()),
        (None, None) => return Err("`timestamp` cannot be read".into()),
    };
    let content = match f.take("content") {
        None if cols.iter().any(|c| c == "content") => {
            return Err("`content` cannot be read".into());
        }
        None | Some(Cell::Null) => None,
        Some(Cell::Text(b) | Cell::Blob(b)) => Some(f.decode("content", b)),
        Some(Cell::Int(i)) => Some(i.to_string()),
        Some(Cell::Real(r)) => Some(r.to_string()),
    };
    let mut m = Message {
        source: sources.get(&session_id).and_then(|s| s.source.clone()),
        session_id,
        role,
        content,
        timestamp,
        tool_call_id: f.text("tool_call_id"),
        tool_name: f.text("tool_name"),
        tool_calls: f.text("tool_calls"),
        reasoning: f.text("reasoning"),
        token_count: f.int("token_count"),
        finish_reason: f.text("finish_reason"),
        ..Message::default()
    };
    if repairs.session_id || repairs.timestamp || !f.lossy.is_empty() {
        // The row identity a healthier copy of the same database shares.
        f.flags.push(("source_rowid".into(), J::Int(rowid)));
    }
    let (extra, unreadable, lossy) = f.finish();
    repairs.lossy = lossy;
    m.extra = extra;
    // Damaged files can hold tool calls that are no longer JSON: keep the text, verbatim, in
    // `extra` rather than store an invalid `tool_calls` (the store refuses those).
    if let Some(tc) = m.tool_calls.take() {
        if serde_json::from_str::<serde::de::IgnoredAny>(&tc).is_ok() {
            m.tool_calls = Some(tc);
        } else {
            tracing::warn!(session = %m.session_id, "tool_calls is not valid JSON; kept as text in extra.tool_calls_unparsed");
            let patch = serde_json::json!({ "tool_calls_unparsed": tc }).to_string();
            m.extra = Some(crate::model::merge_extra(m.extra.as_deref(), &patch));
        }
    }
    Ok((m, unreadable, repairs))
}

/// The order messages are delivered in: session id, timestamp, rowid (as SQLite sorts them).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct MessageKey {
    pub(super) session_id: String,
    pub(super) timestamp: f64,
    pub(super) rowid: i64,
}

impl MessageKey {
    pub(super) fn order(&self, other: &Self) -> std::cmp::Ordering {
        self.session_id
            .as_bytes()
            .cmp(other.session_id.as_bytes())
            .then_with(|| self.timestamp.partial_cmp(&other.timestamp).unwrap_or(std::cmp::Ordering::Equal))
            .then_with(|| self.rowid.cmp(&other.rowid))
    }
}

pub(super) fn emit_message(
    db: &Db<'_>,
    cols: &[String],
    cells: Vec<Option<Cell>>,
    rowid: i64,
    sources: &Sessions,
    repair: Option<&KeyRepair>,
    out: &mut Out<'_>,
) -> Result<Option<MessageKey>, ImportError> {
    match message_from_row(cols, cells, sources, rowid, repair) {
        Ok((m, unreadable, repairs)) => {
            let path = db.path.display();
            if !unreadable.is_empty() {
                out.warn(format!(
                    "{path}: `messages` row {rowid}: columns {} could not be read; imported without them",
                    unreadable.join(", ")
                ));
            }
            if repairs.lossy {
                out.report.lossy_utf8_messages += 1;
                out.warn(format!("{path}: `messages` row {rowid}: text that is not valid UTF-8 was decoded lossily"));
            }
            if repairs.session_id {
                out.report.session_ids_inferred += 1;
                out.warn(format!(
                    "{path}: `messages` row {rowid}: unreadable session id taken from the neighbouring rows ({})",
                    m.session_id
                ));
            }
            if repairs.timestamp {
                out.report.timestamps_inferred += 1;
                out.warn(format!(
                    "{path}: `messages` row {rowid}: unreadable timestamp taken from {}",
                    match repair.and_then(|r| r.timestamp) {
                        Some((_, "previous_row")) => "the previous row of its session",
                        Some((_, "next_row")) => "the next row of its session",
                        _ => "its session's start",
                    }
                ));
            }
            let key = MessageKey { session_id: m.session_id.clone(), timestamp: m.timestamp, rowid };
            out.message(m)?;
            Ok(Some(key))
        }
        Err(why) => {
            out.report.unreadable_rows += 1;
            out.warn(format!("{}: `messages` row {rowid} skipped: {why}", db.path.display()));
            Ok(None)
        }
    }
}

/// Whether every row's `session_id` and `timestamp` read from the table itself (not from an
/// index, which may hold intact copies) are usable as they are. `false` when the table cannot
/// be read through, too: then only a row-by-row salvage can repair or count what is wrong.
fn keys_are_sound(db: &Db<'_>) -> bool {
    let check = || -> rusqlite::Result<Option<i64>> {
        let mut stmt = db.conn.prepare("SELECT rowid, session_id, timestamp FROM messages NOT INDEXED")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let sid_ok = matches!(row.get_ref(1)?, ValueRef::Text(t) if std::str::from_utf8(t).is_ok());
            let ts_ok = matches!(row.get_ref(2)?, ValueRef::Real(_) | ValueRef::Integer(_));
            if !(sid_ok && ts_ok) {
                return Ok(Some(row.get(0)?));
            }
        }
        Ok(None)
    };
    match check() {
        Ok(None) => true,
        Ok(Some(rowid)) => {
            tracing::warn!(path = %db.path.display(), rowid, "a message row has an unusable session id or timestamp");
            false
        }
        Err(e) => {
            tracing::warn!(path = %db.path.display(), error = %e, "cannot read the keys of `messages` in one pass");
            false
        }
    }
}

pub(super) fn import_messages(
    db: &Db<'_>,
    cols: &[String],
    sources: &Sessions,
    out: &mut Out<'_>,
) -> Result<(), ImportError> {
    if !keys_are_sound(db) {
        // Rows with a damaged key can only be repaired, and delivered in order, by a salvage.
        out.warn(format!(
            "{}: some `messages` rows have a damaged session id or timestamp, or the table cannot be read \
             through; reading it row by row",
            db.path.display()
        ));
        return salvage_messages(db, cols, sources, None, &HashSet::new(), out);
    }
    let list: Vec<String> = cols.iter().map(|c| quote_ident(c)).collect();
    let sql = format!("SELECT rowid, {} FROM messages ORDER BY session_id, timestamp, rowid", list.join(", "));
    let mut last: Option<MessageKey> = None;
    // Rows the scan counted as unreadable: the salvage must not count them again.
    let mut counted: HashSet<i64> = HashSet::new();
    let scan = (|| -> rusqlite::Result<Result<(), ImportError>> {
        let mut stmt = db.conn.prepare(&sql)?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let rowid: i64 = row.get(0)?;
            let cells: Vec<Option<Cell>> = (1..=cols.len())
                .map(|i| row.get_ref(i).map(|v| Some(Cell::from_ref(v))))
                .collect::<rusqlite::Result<_>>()?;
            match emit_message(db, cols, cells, rowid, sources, None, out) {
                Ok(Some(key)) => last = Some(key),
                Ok(None) => {
                    counted.insert(rowid);
                }
                Err(e) => return Ok(Err(e)),
            }
        }
        Ok(Ok(()))
    })();
    match scan {
        Ok(result) => return result,
        Err(e) => out.warn(format!(
            "{}: reading `messages` failed after {} rows ({e}); reading the rest row by row",
            db.path.display(),
            out.report.messages
        )),
    }
    salvage_messages(db, cols, sources, last.as_ref(), &counted, out)
}

/// The key cells of one row, as pass 1 of a salvage read them.
struct RowKey {
    rowid: i64,
    /// Interned session id; `None` when it cannot be read or is not UTF-8.
    session: Option<u32>,
    timestamp: Option<f64>,
}

/// How far (in rows) a lost key is looked for among the neighbours.
const NEIGHBOUR_REACH: usize = 1000;

/// The session id of the nearest readable row before and after `i`, in rowid order; the one
/// the damaged bytes resemble (same length, at most a quarter of the bytes differ) wins, and
/// without such bytes both neighbours must agree.
fn neighbour_session(rows: &[RowKey], i: usize, raw: Option<&[u8]>, names: &[String]) -> Option<u32> {
    let before = rows.get(i.saturating_sub(NEIGHBOUR_REACH)..i)?.iter().rev().find_map(|r| r.session);
    let after = rows.get(i + 1..)?.iter().take(NEIGHBOUR_REACH).find_map(|r| r.session);
    let name = |n: u32| names.get(n as usize).map_or(&[][..], |s| s.as_bytes());
    match raw {
        Some(raw) => {
            let distance = |n: u32| -> Option<usize> {
                let cand = name(n);
                (cand.len() == raw.len()).then(|| cand.iter().zip(raw).filter(|(a, b)| a != b).count())
            };
            [before, after]
                .into_iter()
                .flatten()
                .filter_map(|n| distance(n).map(|d| (d, n)))
                .filter(|(d, _)| *d * 4 <= raw.len().max(4))
                .min_by_key(|(d, _)| *d)
                .map(|(_, n)| n)
        }
        None => match (before, after) {
            (Some(a), Some(b)) if a == b => Some(a),
            _ => None,
        },
    }
}

/// The timestamp of the nearest row of the same session before `i` (or else after it), in
/// rowid order, or else the session's start.
fn neighbour_timestamp(
    rows: &[RowKey],
    i: usize,
    session: u32,
    started_at: Option<f64>,
) -> Option<(f64, &'static str)> {
    let same = |r: &&RowKey| r.session == Some(session) && r.timestamp.is_some();
    let before = rows.get(i.saturating_sub(NEIGHBOUR_REACH)..i)?.iter().rev().find(same);
    let after = rows.get(i + 1..)?.iter().take(NEIGHBOUR_REACH).find(same);
    if let Some(t) = before.and_then(|r| r.timestamp) {
        return Some((t, "previous_row"));
    }
    if let Some(t) = after.and_then(|r| r.timestamp) {
        return Some((t, "next_row"));
    }
    started_at.map(|t| (t, "session_start"))
}

pub(super) fn salvage_messages(
    db: &Db<'_>,
    cols: &[String],
    sources: &Sessions,
    resume_after: Option<&MessageKey>,
    counted: &HashSet<i64>,
    out: &mut Out<'_>,
) -> Result<(), ImportError> {
    let candidates = db.salvage_candidates("messages", out);
    let unreadable_before = out.report.unreadable_rows;
    let messages_before = out.report.messages;

    // Pass 1: the key cells of every row that can be found (session ids interned: rows share
    // them), in rowid order, so a damaged key can be taken from its neighbours.
    let mut interned: HashMap<String, u32> = HashMap::new();
    let mut names: Vec<String> = Vec::new();
    let mut rows: Vec<RowKey> = Vec::new();
    // The bytes of session ids that are not UTF-8, by position in `rows`.
    let mut raw_sids: HashMap<usize, Vec<u8>> = HashMap::new();
    let key_cols = vec!["session_id".to_string(), "timestamp".to_string()];
    for rowid in candidates.iter() {
        if counted.contains(&rowid) {
            continue;
        }
        let why = match db.read_row("messages", &key_cols, &[0, 1], rowid) {
            RowRead::Found(mut cells) => {
                let timestamp = match cells.pop().flatten() {
                    Some(Cell::Real(t)) => Some(t),
                    Some(Cell::Int(t)) => Some(t as f64),
                    _ => None,
                };
                let session = match cells.pop().flatten() {
                    Some(Cell::Text(b)) => match String::from_utf8(b) {
                        Ok(sid) => {
                            let next = u32::try_from(names.len()).unwrap_or(u32::MAX);
                            Some(*interned.entry(sid.clone()).or_insert_with(|| {
                                names.push(sid);
                                next
                            }))
                        }
                        Err(e) => {
                            raw_sids.insert(rows.len(), e.into_bytes());
                            None
                        }
                    },
                    _ => None,
                };
                rows.push(RowKey { rowid, session, timestamp });
                continue;
            }
            RowRead::Missing if candidates.is_indexed(rowid) => {
                "it is listed by an index but cannot be found".to_string()
            }
            RowRead::Missing => continue,
            RowRead::Failed(e) => e,
        };
        out.report.unreadable_rows += 1;
        out.warn(format!("{}: `messages` row {rowid} cannot be read ({why}); skipped", db.path.display()));
    }

    // Repair the keys the rows could not give: session ids first, then timestamps, which are
    // looked for within the session.
    let mut repairs: HashMap<i64, KeyRepair> = HashMap::new();
    let lost_sessions: Vec<usize> =
        (0..rows.len()).filter(|&i| rows.get(i).is_some_and(|r| r.session.is_none())).collect();
    let mut found: Vec<(usize, u32)> = Vec::new();
    for i in lost_sessions {
        if let Some(n) = neighbour_session(&rows, i, raw_sids.get(&i).map(Vec::as_slice), &names) {
            found.push((i, n));
        }
    }
    for (i, n) in found {
        if let Some(r) = rows.get_mut(i) {
            r.session = Some(n);
            repairs.entry(r.rowid).or_default().session_id = names.get(n as usize).cloned();
        }
    }
    let mut timestamps: Vec<(usize, (f64, &'static str))> = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        if let (Some(n), None) = (r.session, r.timestamp) {
            let started = names.get(n as usize).and_then(|s| sources.get(s)).and_then(|s| s.started_at);
            if let Some(t) = neighbour_timestamp(&rows, i, n, started) {
                timestamps.push((i, t));
            }
        }
    }
    for (i, t) in timestamps {
        if let Some(r) = rows.get_mut(i) {
            r.timestamp = Some(t.0);
            repairs.entry(r.rowid).or_default().timestamp = Some(t);
        }
    }

    let mut keys: Vec<(u32, f64, i64)> = Vec::with_capacity(rows.len());
    for r in rows {
        match (r.session, r.timestamp) {
            (Some(n), Some(t)) => keys.push((n, t, r.rowid)),
            (s, _) => {
                let what = if s.is_none() { "session id" } else { "timestamp" };
                out.report.unreadable_rows += 1;
                out.warn(format!(
                    "{}: `messages` row {}: its {what} cannot be read nor taken from its neighbours; skipped",
                    db.path.display(),
                    r.rowid
                ));
            }
        }
    }
    let name = |n: u32| names.get(n as usize).map_or("", String::as_str);
    keys.sort_by(|a, b| {
        name(a.0)
            .as_bytes()
            .cmp(name(b.0).as_bytes())
            .then_with(|| a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal))
            .then_with(|| a.2.cmp(&b.2))
    });

    // Pass 2: each row in order, as much of it as can be read.
    let essential: Vec<usize> = ["session_id", "role", "content", "timestamp"]
        .iter()
        .filter_map(|e| cols.iter().position(|c| c == e))
        .collect();
    for (n, ts, rowid) in keys {
        if let Some(last) = resume_after {
            let key = MessageKey { session_id: name(n).to_string(), timestamp: ts, rowid };
            if key.order(last) != std::cmp::Ordering::Greater {
                continue;
            }
        }
        match db.read_row("messages", cols, &essential, rowid) {
            RowRead::Found(cells) => {
                emit_message(db, cols, cells, rowid, sources, repairs.get(&rowid), out)?;
            }
            RowRead::Missing => {
                out.report.unreadable_rows += 1;
                out.warn(format!("{}: `messages` row {rowid} vanished between reads; skipped", db.path.display()));
            }
            RowRead::Failed(e) => {
                out.report.unreadable_rows += 1;
                out.warn(format!("{}: `messages` row {rowid} cannot be read ({e}); skipped", db.path.display()));
            }
        }
    }
    let salvaged = out.report.messages - messages_before;
    let lost = out.report.unreadable_rows - unreadable_before;
    tracing::warn!(
        path = %db.path.display(),
        salvaged,
        lost,
        "salvaged `messages` row by row"
    );
    out.warn(format!(
        "{}: `messages` is damaged: salvaged {salvaged} rows one by one, {lost} rows unreadable",
        db.path.display()
    ));
    Ok(())
}

/// The Hermes row a message was imported from: `logbook_import.source_rowid` in its `extra`
/// (written on repaired messages), or else the `id` column Hermes keeps (an alias of the rowid).
/// With the session id and role it identifies the source row across copies of one database,
/// whatever damage changed in the text or timestamp; `None` for messages not imported from a
/// Hermes database.
pub fn hermes_source_rowid(m: &Message) -> Option<i64> {
    let extra: serde_json::Value = serde_json::from_str(m.extra.as_deref()?).ok()?;
    extra.get(IMPORT_FLAGS_KEY).and_then(|f| f.get("source_rowid")).and_then(serde_json::Value::as_i64).or_else(|| {
        if m.id.starts_with("hermes-") { extra.get("id").and_then(serde_json::Value::as_i64) } else { None }
    })
}

/// Whether the import repaired a message (lossy text, a key taken from its neighbours): such a
/// message may be a damaged near-duplicate of one imported from a healthier copy.
pub fn is_repaired_import(m: &Message) -> bool {
    m.extra
        .as_deref()
        .is_some_and(|e| serde_json::from_str::<serde_json::Value>(e).is_ok_and(|v| v.get(IMPORT_FLAGS_KEY).is_some()))
}
