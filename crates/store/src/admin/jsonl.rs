//! JSON lines: one message per line in (the sidecar and `append --jsonl`), and out (`export`).

use serde_json::{Map, Value};

use crate::model::{Message, Session};

/// Multimodal content marker (Hermes): the rest of the text is a JSON array of parts.
const MULTIMODAL_PREFIX: &str = "\u{0}json:";

use crate::validate::{self, kind};

fn take_string(o: &mut Map<String, Value>, k: &str) -> std::result::Result<Option<String>, String> {
    match o.remove(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(format!("`{k}` must be a string, not {}", kind(&v))),
    }
}

fn check_key(what: &str, v: &str) -> std::result::Result<(), String> {
    validate::key(what, v)
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

/// Parses one line of `tidelog append --jsonl`: a JSON object with `session_id`, `role`,
/// `content` and the optional fields of [`Message`]. `timestamp` may be seconds (number) or an
/// ISO-8601 string; `tool_calls` may be any JSON (stored as JSON text); `extra` must be an object.
/// Fields the model does not know are kept in `extra`. Never panics; the error says what is wrong.
pub fn parse_message_line(line: &str) -> std::result::Result<Message, String> {
    // A byte order mark (some editors and Windows tools write one) is not part of the JSON.
    let line = line.trim_start_matches('\u{feff}');
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
    validate::timestamp("timestamp", timestamp)?;
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
    let platform_message_id = take_string(&mut o, "platform_message_id")?;
    let api_content = take_string(&mut o, "api_content")?;
    // The integer id is the store's to give (an exported line carries the old one).
    o.remove("num");
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
        platform_message_id,
        api_content,
        num: 0,
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
    if m.num != 0 {
        o.insert("num".into(), m.num.into());
    }
    opt(&mut o, "platform_message_id", &m.platform_message_id);
    opt(&mut o, "api_content", &m.api_content);
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::wire::Record;

    /// A message with every field set (checked against the one field list).
    fn full() -> Message {
        let m = Message {
            id: "m-1".into(),
            session_id: "s".into(),
            role: "assistant".into(),
            content: Some("text".into()),
            tool_call_id: Some("call".into()),
            tool_name: Some("tool".into()),
            tool_calls: Some(r#"[{"id":"call"}]"#.into()),
            reasoning: Some("why".into()),
            timestamp: 1_780_000_000.5,
            token_count: Some(7),
            finish_reason: Some("stop".into()),
            source: Some("cli".into()),
            extra: Some(r#"{"k":1}"#.into()),
            num: 42,
            platform_message_id: Some("p-1".into()),
            api_content: Some("api".into()),
        };
        assert_eq!(Message::FIELDS.len(), 16, "a new Message field: set it here and map it below");
        m
    }

    /// The JSON mapping covers every field of the one list (export then import keeps it; the
    /// integer id is the store's to give again).
    #[test]
    fn json_mapping_covers_every_message_field() {
        let m = full();
        let v = message_to_json(&m);
        for (name, _) in Message::FIELDS {
            assert!(v.get(*name).is_some(), "message_to_json leaves out {name}");
        }
        let back = parse_message_line(&v.to_string()).unwrap();
        assert_eq!(back, Message { num: 0, ..m });
    }

    /// The SQLite columns cover every field of the one list (`num` is the row id).
    #[test]
    fn sqlite_columns_cover_every_message_and_patch_field() {
        let dir = tempfile::tempdir().unwrap();
        let ix = crate::index::Index::open(&dir.path().join("i.db"), &crate::index::IndexOptions::default()).unwrap();
        let cols = ix.columns("messages").unwrap();
        for (name, _) in Message::FIELDS {
            let col = if *name == "num" { "rid" } else { name };
            assert!(cols.iter().any(|c| c == col), "messages has no column for {name}");
        }
        let cols = ix.columns("sessions").unwrap();
        for (name, _) in crate::model::SessionPatch::FIELDS {
            if matches!(*name, "reopen" | "clear_title" | "fill_only" | "op") {
                continue; // how a patch applies (and where it sorts), not a stored value
            }
            assert!(cols.iter().any(|c| c == name), "sessions has no column for {name}");
        }
    }

    /// The counters of the one list (`CounterDelta`) are columns of `sessions`.
    #[test]
    fn sqlite_columns_cover_every_counter() {
        let dir = tempfile::tempdir().unwrap();
        let ix = crate::index::Index::open(&dir.path().join("i.db"), &crate::index::IndexOptions::default()).unwrap();
        let cols = ix.columns("sessions").unwrap();
        for (name, _) in crate::model::CounterDelta::FIELDS {
            if matches!(*name, "session_id" | "op") {
                continue;
            }
            assert!(cols.iter().any(|c| c == name), "sessions has no column for counter {name}");
        }
    }

    /// The Python types (`bindings/python/src/types.rs`) map every field of the one list: each
    /// name is a key of their dictionaries (`to_dict`) and of their keyword arguments.
    #[test]
    fn python_types_cover_every_field() {
        let types = include_str!("../../../../bindings/python/src/types.rs");
        let lists = [
            ("Message", Message::FIELDS),
            ("SessionPatch", crate::model::SessionPatch::FIELDS),
            ("CounterDelta", crate::model::CounterDelta::FIELDS),
        ];
        for (kind, fields) in lists {
            for (name, _) in fields {
                if matches!(*name, "reopen" | "clear_title" | "fill_only" | "op" | "session_id" | "num")
                    && kind != "Message"
                {
                    continue; // how a patch applies and where it sorts, not a value read back
                }
                assert!(types.contains(&format!("\"{name}\"")), "the Python types do not map {kind}.{name}");
            }
        }
    }

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
