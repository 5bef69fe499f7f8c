//! Hermes JSONL session sidecars.

use crate::entry::Entry;
use crate::model::Message;
use crate::model::SessionPatch;
use std::fs::File;
use std::io::BufReader;

use crate::validate;
use std::path::Path;
use std::path::PathBuf;

use super::json::{J, Style};
use super::{ImportError, ImportReport, Out, SinkError};

/// Reads Hermes Agent JSONL session sidecars: files, or folders whose `*.jsonl` files are read
/// in name order (not recursively). Calls `sink` with a [`SessionPatch`] per file (from its
/// `session_meta` first line: session id, model, platform as source, ISO timestamp as start),
/// then with every message of every file, in file order.
///
/// A last line cut off mid-write (no newline at the end and not valid JSON) is skipped and
/// listed in [`ImportReport::cut_lines`]; any other line that is not a message is skipped and
/// listed in [`ImportReport::bad_lines`]. `tool_calls` arrays are stored as JSON text written
/// the way Python's `json.dumps` writes them (as Hermes stores them in SQLite), in their
/// original key order. Content that is a JSON array rather than a string is stored with Hermes'
/// multimodal marker `"\u{0}json:"`. A `sink` error stops the import and is returned as
/// [`ImportError::Sink`].
pub fn import_jsonl(
    paths: &[PathBuf],
    sink: &mut dyn FnMut(Entry) -> Result<(), SinkError>,
) -> Result<ImportReport, ImportError> {
    let source = paths.first().cloned().unwrap_or_default();
    let mut out = Out::new(source, sink);
    let files = sidecar_files(paths)?;

    // Pass 1: sessions.
    let mut sessions: Vec<(PathBuf, String, Option<String>)> = Vec::with_capacity(files.len());
    for file in files {
        out.path.clone_from(&file);
        let patch = sidecar_session(&file, &mut out)?;
        sessions.push((file, patch.id.clone(), patch.source.clone()));
        out.session(patch)?;
    }
    // Pass 2: messages.
    for (file, session_id, source) in &sessions {
        out.path.clone_from(file);
        sidecar_messages(file, session_id, source.as_ref(), &mut out)?;
    }
    let mut report = out.finish();
    report.source = paths.first().cloned().unwrap_or_default();
    tracing::info!(
        files = sessions.len(),
        sessions = report.sessions,
        messages = report.messages,
        cut_lines = report.cut_lines.len(),
        bad_lines = report.bad_lines.len(),
        "imported Hermes JSONL sidecars"
    );
    Ok(report)
}

pub(super) fn sidecar_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ImportError> {
    let mut files = Vec::new();
    for path in paths {
        let io_err = |source| ImportError::Io { path: path.clone(), source };
        let meta = std::fs::metadata(path).map_err(io_err)?;
        if meta.is_dir() {
            let mut found = Vec::new();
            for entry in std::fs::read_dir(path).map_err(io_err)? {
                let p = entry.map_err(io_err)?.path();
                if p.extension().is_some_and(|e| e == "jsonl") && p.is_file() {
                    found.push(p);
                }
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

/// One line of a sidecar: line number, bytes without the newline, whether a newline ended it.
type Line<'a> = (usize, &'a [u8], bool);

/// Reads the lines of a sidecar.
pub(super) struct Lines {
    pub(super) reader: BufReader<File>,
    pub(super) path: PathBuf,
    pub(super) number: usize,
    pub(super) buf: Vec<u8>,
}

impl Lines {
    pub(super) fn open(path: &Path) -> Result<Self, ImportError> {
        let file = File::open(path).map_err(|source| ImportError::Io { path: path.to_path_buf(), source })?;
        Ok(Self { reader: BufReader::new(file), path: path.to_path_buf(), number: 0, buf: Vec::new() })
    }

    /// The next non-blank line. A line longer than [`validate::MAX_LINE_LEN`] stops the import
    /// of the file with an error (it is not held in memory).
    pub(super) fn next_line(&mut self) -> Result<Option<Line<'_>>, ImportError> {
        loop {
            let io_err = |source| ImportError::Io { path: self.path.clone(), source };
            let read = validate::read_line(&mut self.reader, &mut self.buf, validate::MAX_LINE_LEN).map_err(io_err)?;
            self.number += 1;
            let complete = match read {
                validate::Line::End => return Ok(None),
                validate::Line::Text { complete } => complete,
                validate::Line::TooLong => {
                    let too_long =
                        std::io::Error::new(std::io::ErrorKind::InvalidData, validate::too_long(self.number));
                    return Err(io_err(too_long));
                }
            };
            if self.buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Ok(Some((self.number, &self.buf, complete)));
        }
    }
}

pub(super) fn file_stem(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

pub(super) fn sidecar_session(file: &Path, out: &mut Out<'_>) -> Result<SessionPatch, ImportError> {
    let mut lines = Lines::open(file)?;
    let first = match lines.next_line()? {
        Some((_, bytes, _)) => serde_json::from_slice::<J>(bytes).ok(),
        None => None,
    };
    let meta = match first {
        Some(J::Obj(fields)) if get_str(&fields, "role") == Some("session_meta") => fields,
        _ => {
            out.warn(format!("{}: no session_meta first line; session id taken from the file name", file.display()));
            return Ok(SessionPatch { id: file_stem(file), ..SessionPatch::default() });
        }
    };
    let started_at = match get(&meta, "timestamp") {
        Some(J::Str(s)) => parse_iso_warn(s, file, 1, out),
        Some(j) => j.as_f64(),
        None => None,
    };
    let id = get_str(&meta, "session_id").filter(|s| !s.is_empty()).map_or_else(|| file_stem(file), str::to_string);
    let source = get_str(&meta, "platform").or_else(|| get_str(&meta, "source")).map(str::to_string);
    let known = ["role", "session_id", "model", "platform", "timestamp"];
    Ok(SessionPatch {
        id,
        source,
        model: get_str(&meta, "model").map(str::to_string),
        started_at,
        extra: extra_json(&meta, &known),
        ..SessionPatch::default()
    })
}

pub(super) fn sidecar_messages(
    file: &Path,
    session_id: &str,
    source: Option<&String>,
    out: &mut Out<'_>,
) -> Result<(), ImportError> {
    let mut lines = Lines::open(file)?;
    let mut first = true;
    while let Some((number, bytes, complete)) = lines.next_line()? {
        let parsed = serde_json::from_slice::<J>(bytes);
        let is_first = std::mem::replace(&mut first, false);
        let fields = match parsed {
            Ok(J::Obj(fields)) => fields,
            Ok(_) => {
                bad_line(out, file, number, "not a JSON object".into());
                continue;
            }
            Err(e) => {
                // Only the very last line can lack its newline: a writer killed mid-line.
                if complete {
                    bad_line(out, file, number, format!("invalid JSON: {e}"));
                } else {
                    tracing::warn!(file = %file.display(), line = number, "skipped a line cut off mid-write");
                    out.report.cut_lines.push((file.to_path_buf(), number));
                }
                continue;
            }
        };
        if get_str(&fields, "role") == Some("session_meta") {
            if !is_first {
                out.warn(format!("{}: line {number}: a second session_meta line; ignored", file.display()));
            }
            continue;
        }
        match sidecar_message(&fields, file, number, out) {
            Ok(mut m) => {
                m.session_id = session_id.to_string();
                m.source = source.cloned();
                out.message(m)?;
            }
            Err(why) => bad_line(out, file, number, why),
        }
    }
    Ok(())
}

pub(super) fn bad_line(out: &mut Out<'_>, file: &Path, number: usize, why: String) {
    tracing::warn!(file = %file.display(), line = number, why, "skipped a bad line");
    out.report.bad_lines.push((file.to_path_buf(), number, why));
}

pub(super) fn sidecar_message(
    fields: &[(String, J)],
    file: &Path,
    number: usize,
    out: &mut Out<'_>,
) -> Result<Message, String> {
    let role = match get(fields, "role") {
        Some(J::Str(r)) => r.clone(),
        _ => return Err("no `role` string".into()),
    };
    let timestamp = match get(fields, "timestamp") {
        Some(J::Str(s)) => parse_iso_warn(s, file, number, out)
            .ok_or_else(|| format!("`timestamp` {s:?} is not an ISO-8601 date and time"))?,
        Some(j) => j.as_f64().ok_or_else(|| "`timestamp` is neither text nor a number".to_string())?,
        None => return Err("no `timestamp`".into()),
    };
    let content = match get(fields, "content") {
        None | Some(J::Null) => None,
        Some(J::Str(s)) => Some(s.clone()),
        Some(j @ (J::Arr(_) | J::Obj(_))) => Some(format!("\u{0}json:{}", j.to_json(Style::Python))),
        Some(j) => Some(j.to_json(Style::Python)),
    };
    let tool_calls = match get(fields, "tool_calls") {
        None | Some(J::Null) => None,
        Some(J::Str(s)) => Some(s.clone()),
        Some(j) => Some(j.to_json(Style::Python)),
    };
    let mut known: Vec<&str> = vec!["role", "timestamp", "content", "tool_calls"];
    let mut text = |name: &'static str| match get(fields, name) {
        Some(J::Str(s)) => {
            known.push(name);
            Some(s.clone())
        }
        Some(J::Null) => {
            known.push(name);
            None
        }
        _ => None,
    };
    let tool_call_id = text("tool_call_id");
    let tool_name = text("tool_name");
    let reasoning = text("reasoning");
    let finish_reason = text("finish_reason");
    let token_count = match get(fields, "token_count") {
        Some(J::Int(i)) => {
            known.push("token_count");
            Some(*i)
        }
        Some(J::Null) => {
            known.push("token_count");
            None
        }
        _ => None,
    };
    Ok(Message {
        role,
        content,
        tool_call_id,
        tool_name,
        tool_calls,
        reasoning,
        timestamp,
        token_count,
        finish_reason,
        extra: extra_json(fields, &known),
        ..Message::default()
    })
}

pub(super) fn parse_iso_warn(s: &str, file: &Path, number: usize, out: &mut Out<'_>) -> Option<f64> {
    let (t, naive) = crate::time::parse_iso8601(s)?;
    if naive {
        out.warn(format!("{}: line {number}: timestamp {s:?} has no timezone; read as UTC", file.display()));
    }
    Some(t)
}

/// The last value of `key` (a repeated key keeps its last value, as in Python).
pub(super) fn get<'j>(fields: &'j [(String, J)], key: &str) -> Option<&'j J> {
    fields.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
}

pub(super) fn get_str<'j>(fields: &'j [(String, J)], key: &str) -> Option<&'j str> {
    match get(fields, key) {
        Some(J::Str(s)) => Some(s),
        _ => None,
    }
}

/// Every field not in `known` (last value of a repeated key), as a compact JSON object.
pub(super) fn extra_json(fields: &[(String, J)], known: &[&str]) -> Option<String> {
    let rest: Vec<(String, J)> = fields
        .iter()
        .enumerate()
        .filter(|(i, (k, _))| {
            !known.contains(&k.as_str()) && !fields.get(i + 1..).is_some_and(|later| later.iter().any(|(l, _)| l == k))
        })
        .map(|(_, kv)| kv.clone())
        .collect();
    if rest.is_empty() { None } else { Some(J::Obj(rest).to_json(Style::Compact)) }
}
