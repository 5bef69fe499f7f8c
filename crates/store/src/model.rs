//! The data model: messages, sessions, and the journal entries that carry them.

use serde::{Deserialize, Serialize};

/// One chat message, as a gateway records it.
///
/// Fields that hold JSON (`tool_calls`, `extra`) are kept as JSON text so that nothing is lost
/// and the journal encoding stays independent of any JSON library.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Message {
    /// Unique, time-ordered id (UUIDv7 text when assigned by the store; any non-empty string when
    /// supplied by the client, which makes the append idempotent).
    pub id: String,
    /// The session (conversation) this message belongs to.
    pub session_id: String,
    /// `user`, `assistant`, `tool`, `system`, or any other string.
    pub role: String,
    /// The text; absent for assistant messages that only call tools. May be megabytes, and may be
    /// multimodal JSON (Hermes marks it with the prefix `"\u{0}json:"`).
    pub content: Option<String>,
    /// For a tool result: the id of the call it answers.
    pub tool_call_id: Option<String>,
    /// For a tool result: the tool's name.
    pub tool_name: Option<String>,
    /// For an assistant message: the tool calls, as JSON text (an array).
    pub tool_calls: Option<String>,
    /// Model reasoning text, if any.
    pub reasoning: Option<String>,
    /// Seconds since the Unix epoch (fractional).
    pub timestamp: f64,
    /// Token count, if known.
    pub token_count: Option<i64>,
    /// Why the model stopped (`stop`, `tool_calls`, ...).
    pub finish_reason: Option<String>,
    /// Source platform: `cli`, `telegram`, `api_server`, `cron`, ...
    pub source: Option<String>,
    /// Fields the model does not know, as a JSON object in text.
    pub extra: Option<String>,
}

/// A session (conversation) as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Session {
    /// Session id.
    pub id: String,
    /// Source platform.
    pub source: Option<String>,
    /// Model name.
    pub model: Option<String>,
    /// Title.
    pub title: Option<String>,
    /// Platform user id.
    pub user_id: Option<String>,
    /// Platform chat id.
    pub chat_id: Option<String>,
    /// The session this one was forked or continued from.
    pub parent_session_id: Option<String>,
    /// Seconds since the Unix epoch.
    pub started_at: Option<f64>,
    /// Seconds since the Unix epoch.
    pub ended_at: Option<f64>,
    /// Why it ended.
    pub end_reason: Option<String>,
    /// Other fields, as a JSON object in text.
    pub extra: Option<String>,
}

/// A change to a session: every `Some` field is set, every `None` field is left as it was.
/// Creating, updating and ending a session are all patches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SessionPatch {
    /// Session id (required).
    pub id: String,
    /// See [`Session::source`].
    pub source: Option<String>,
    /// See [`Session::model`].
    pub model: Option<String>,
    /// See [`Session::title`].
    pub title: Option<String>,
    /// See [`Session::user_id`].
    pub user_id: Option<String>,
    /// See [`Session::chat_id`].
    pub chat_id: Option<String>,
    /// See [`Session::parent_session_id`].
    pub parent_session_id: Option<String>,
    /// See [`Session::started_at`].
    pub started_at: Option<f64>,
    /// See [`Session::ended_at`].
    pub ended_at: Option<f64>,
    /// See [`Session::end_reason`].
    pub end_reason: Option<String>,
    /// See [`Session::extra`].
    pub extra: Option<String>,
}

impl SessionPatch {
    /// Applies this patch to a session (creating it from defaults when `base` is `None`).
    pub fn apply_to(&self, base: Option<Session>) -> Session {
        let mut s = base.unwrap_or_else(|| Session { id: self.id.clone(), ..Session::default() });
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = &self.$f { s.$f = Some(v.clone()); } )* };
        }
        set!(source, model, title, user_id, chat_id, parent_session_id, started_at, ended_at, end_reason);
        if let Some(new) = &self.extra {
            s.extra = Some(merge_extra(s.extra.as_deref(), new));
        }
        s
    }
}

/// Merges two `extra` JSON objects (RFC 7396 merge patch, like SQLite's `json_patch`): keys of
/// `new` replace those of `old`, a `null` value removes a key. If either is not a JSON object,
/// `new` replaces `old`.
pub fn merge_extra(old: Option<&str>, new: &str) -> String {
    use serde_json::Value;
    let (Some(old), Ok(Value::Object(patch))) = (old, serde_json::from_str::<Value>(new)) else {
        return new.to_string();
    };
    let Ok(base @ Value::Object(_)) = serde_json::from_str::<Value>(old) else {
        return new.to_string();
    };
    fn patch_into(target: Value, patch: serde_json::Map<String, Value>) -> Value {
        let mut obj = match target {
            Value::Object(o) => o,
            _ => serde_json::Map::new(),
        };
        for (k, v) in patch {
            match v {
                Value::Null => {
                    obj.remove(&k);
                }
                Value::Object(p) => {
                    let cur = obj.remove(&k).unwrap_or(Value::Null);
                    obj.insert(k, patch_into(cur, p));
                }
                other => {
                    obj.insert(k, other);
                }
            }
        }
        Value::Object(obj)
    }
    patch_into(base, patch).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_patches_merge_extra_like_json_patch() {
        let a = SessionPatch {
            id: "s".into(),
            extra: Some(r#"{"system_prompt":"p","n":{"a":1}}"#.into()),
            ..Default::default()
        };
        let b = SessionPatch {
            id: "s".into(),
            extra: Some(r#"{"tools":[1],"n":{"b":2}}"#.into()),
            title: Some("t".into()),
            ..Default::default()
        };
        let s = b.apply_to(Some(a.apply_to(None)));
        let v: serde_json::Value = serde_json::from_str(s.extra.as_deref().unwrap()).unwrap();
        assert_eq!(v, serde_json::json!({"system_prompt":"p","tools":[1],"n":{"a":1,"b":2}}));
        assert_eq!(s.title.as_deref(), Some("t"));
        // Not an object: replaced.
        assert_eq!(merge_extra(Some("[1]"), r#"{"a":1}"#), r#"{"a":1}"#);
    }
}

/// What one journal record carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Entry {
    /// A message was appended.
    Message(Message),
    /// A session was created, updated or ended.
    Session(SessionPatch),
}
