//! Hermes `state.db` rows (any schema version) to sessions and messages.

use crate::entry::Entry;
use crate::model::Message;
use crate::model::SessionPatch;
use std::collections::HashMap;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::Path;

use super::json::{J, Style};

use super::sqlite::{Cell, Db, RowRead, check_sqlite_header, open_read_only, quote_ident, warn_about_wal};
use super::{ImportError, ImportReport, Out, SinkError, UNREADABLE_COLUMNS_KEY};

/// Reads a Hermes Agent `state.db` of any schema version, read-only, and calls `sink` with a
/// [`SessionPatch`] for every session (in rowid order), then with every [`Message`] (ordered by
/// session id, then timestamp, then Hermes row id). Message ids come from
/// [`imported_message_id`](crate::imported_message_id); `message.source` is the session's source.
///
/// The file is opened with `mode=ro&immutable=1` and is never changed: no `-wal` or `-shm` file
/// is created and no checkpoint runs. A damaged file is salvaged row by row (see the module
/// documentation); what was lost is counted in the report. A `sink` error stops the import and
/// is returned as [`ImportError::Sink`].
pub fn import_hermes_db(
    path: &Path,
    sink: &mut dyn FnMut(Entry) -> Result<(), SinkError>,
) -> Result<ImportReport, ImportError> {
    check_sqlite_header(path)?;
    let mut out = Out::new(path.to_path_buf(), sink);
    warn_about_wal(path, &mut out);
    let conn = open_read_only(path)?;
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

/// Decodes a row into model fields, collecting what the model has no field for.
pub(super) struct Fields<'c> {
    pub(super) cols: &'c [String],
    pub(super) cells: Vec<Option<Cell>>,
    pub(super) extra: Vec<(String, J)>,
    pub(super) unreadable: Vec<String>,
}

impl<'c> Fields<'c> {
    pub(super) fn new(cols: &'c [String], cells: Vec<Option<Cell>>) -> Self {
        let mut unreadable = Vec::new();
        for (name, cell) in cols.iter().zip(&cells) {
            if cell.is_none() {
                unreadable.push(name.clone());
            }
        }
        Self { cols, cells, extra: Vec::new(), unreadable }
    }

    pub(super) fn take(&mut self, name: &str) -> Option<Cell> {
        let i = self.cols.iter().position(|c| c == name)?;
        self.cells.get_mut(i).and_then(Option::take)
    }

    /// A TEXT column the model knows; wrong-typed values go to `extra`.
    pub(super) fn text(&mut self, name: &str) -> Option<String> {
        match self.take(name)? {
            Cell::Null => None,
            Cell::Text(bytes) => match String::from_utf8(bytes) {
                Ok(s) => Some(s),
                Err(_) => {
                    self.unreadable.push(name.to_string());
                    None
                }
            },
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
            Cell::Text(bytes) => match String::from_utf8(bytes) {
                Ok(s) => J::Str(s),
                Err(_) => {
                    self.unreadable.push(name.to_string());
                    return;
                }
            },
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

    /// Moves every column not yet taken into `extra`, and returns it as JSON text.
    pub(super) fn finish(mut self) -> (Option<String>, Vec<String>) {
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
        let extra = if self.extra.is_empty() { None } else { Some(J::Obj(self.extra).to_json(Style::Compact)) };
        (extra, self.unreadable)
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
    let (extra, unreadable) = f.finish();
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
    sources: &mut HashMap<String, Option<String>>,
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
    sources: &mut HashMap<String, Option<String>>,
    out: &mut Out<'_>,
) -> Result<(), ImportError> {
    match session_from_row(db, cols, cells, with_prompts, out) {
        Ok(patch) => {
            sources.insert(patch.id.clone(), patch.source.clone());
            out.session(patch)
        }
        Err(why) => {
            out.report.unreadable_rows += 1;
            out.warn(format!("{}: `sessions` row {rowid} skipped: {why}", db.path.display()));
            Ok(())
        }
    }
}

pub(super) fn message_from_row(
    cols: &[String],
    cells: Vec<Option<Cell>>,
    sources: &HashMap<String, Option<String>>,
) -> Result<(Message, Vec<String>), String> {
    let mut f = Fields::new(cols, cells);
    let session_id = f.required_text("session_id")?;
    let role = f.required_text("role")?;
    let timestamp = match f.take("timestamp") {
        Some(Cell::Real(t)) => t,
        Some(Cell::Int(t)) => t as f64,
        Some(_) => return Err("`timestamp` is not a number".into()),
        None => return Err("`timestamp` cannot be read".into()),
    };
    let content = match f.take("content") {
        None if cols.iter().any(|c| c == "content") => {
            return Err("`content` cannot be read".into());
        }
        None | Some(Cell::Null) => None,
        Some(Cell::Text(b) | Cell::Blob(b)) => {
            Some(String::from_utf8(b).map_err(|_| "`content` is not valid UTF-8".to_string())?)
        }
        Some(Cell::Int(i)) => Some(i.to_string()),
        Some(Cell::Real(r)) => Some(r.to_string()),
    };
    let mut m = Message {
        source: sources.get(&session_id).cloned().flatten(),
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
    let (extra, unreadable) = f.finish();
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
    Ok((m, unreadable))
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
    sources: &HashMap<String, Option<String>>,
    out: &mut Out<'_>,
) -> Result<Option<MessageKey>, ImportError> {
    match message_from_row(cols, cells, sources) {
        Ok((m, unreadable)) => {
            if !unreadable.is_empty() {
                out.warn(format!(
                    "{}: `messages` row {rowid}: columns {} could not be read; imported without them",
                    db.path.display(),
                    unreadable.join(", ")
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

pub(super) fn import_messages(
    db: &Db<'_>,
    cols: &[String],
    sources: &HashMap<String, Option<String>>,
    out: &mut Out<'_>,
) -> Result<(), ImportError> {
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
            match emit_message(db, cols, cells, rowid, sources, out) {
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

pub(super) fn salvage_messages(
    db: &Db<'_>,
    cols: &[String],
    sources: &HashMap<String, Option<String>>,
    resume_after: Option<&MessageKey>,
    counted: &HashSet<i64>,
    out: &mut Out<'_>,
) -> Result<(), ImportError> {
    let candidates = db.salvage_candidates("messages", out);
    let unreadable_before = out.report.unreadable_rows;
    let messages_before = out.report.messages;

    // Pass 1: the sort key of every readable row (session ids interned: rows share them).
    let mut interned: HashMap<String, u32> = HashMap::new();
    let mut names: Vec<String> = Vec::new();
    let mut keys: Vec<(u32, f64, i64)> = Vec::new();
    let key_cols = vec!["session_id".to_string(), "timestamp".to_string()];
    for rowid in candidates.iter() {
        if counted.contains(&rowid) {
            continue;
        }
        let why = match db.read_row("messages", &key_cols, &[0, 1], rowid) {
            RowRead::Found(mut cells) => {
                let ts = match cells.pop().flatten() {
                    Some(Cell::Real(t)) => Some(t),
                    Some(Cell::Int(t)) => Some(t as f64),
                    _ => None,
                };
                let sid = match cells.pop().flatten() {
                    Some(Cell::Text(b)) => String::from_utf8(b).ok(),
                    _ => None,
                };
                match (sid, ts) {
                    (Some(sid), Some(ts)) => {
                        let next = u32::try_from(names.len()).unwrap_or(u32::MAX);
                        let n = *interned.entry(sid.clone()).or_insert_with(|| {
                            names.push(sid);
                            next
                        });
                        keys.push((n, ts, rowid));
                        continue;
                    }
                    _ => "`session_id` or `timestamp` is unreadable or of the wrong type".into(),
                }
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
                emit_message(db, cols, cells, rowid, sources, out)?;
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
