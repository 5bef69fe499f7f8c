//! Codec tag 1: bincode 2.0.1 (serde, `config::standard()`) of the entry enum as it was before
//! the field encoding. Frozen: these structs are the byte layout of records already on disk and
//! must never change (bincode is positional: a new field here would misread every old record).
//! Decoding only; nothing writes tag 1 any more.

use serde::Deserialize;

use super::{DecodeError, Entry};
use crate::model::{Message, SessionPatch};

/// Largest entry the decoder will allocate for (bounded by the journal's record size anyway).
const DECODE_LIMIT: usize = 1 << 30;

#[derive(Deserialize)]
struct V1Message {
    id: String,
    session_id: String,
    role: String,
    content: Option<String>,
    tool_call_id: Option<String>,
    tool_name: Option<String>,
    tool_calls: Option<String>,
    reasoning: Option<String>,
    timestamp: f64,
    token_count: Option<i64>,
    finish_reason: Option<String>,
    source: Option<String>,
    extra: Option<String>,
}

#[derive(Deserialize)]
struct V1SessionPatch {
    id: String,
    source: Option<String>,
    model: Option<String>,
    title: Option<String>,
    user_id: Option<String>,
    chat_id: Option<String>,
    parent_session_id: Option<String>,
    started_at: Option<f64>,
    ended_at: Option<f64>,
    end_reason: Option<String>,
    extra: Option<String>,
}

#[derive(Deserialize)]
enum V1Entry {
    Message(V1Message),
    Session(V1SessionPatch),
}

/// Decodes the bytes after tag 1. Messages get no integer id here (`num` 0): the reader assigns
/// the legacy id from the record's lane and LSN (see `legacy_num`).
pub(super) fn decode(rest: &[u8]) -> Result<Entry, DecodeError> {
    let config = bincode::config::standard().with_limit::<DECODE_LIMIT>();
    let (entry, used) = bincode::serde::decode_from_slice::<V1Entry, _>(rest, config)
        .map_err(|e| DecodeError::Invalid(e.to_string()))?;
    if used != rest.len() {
        return Err(DecodeError::Invalid(format!("{} trailing bytes", rest.len() - used)));
    }
    Ok(match entry {
        V1Entry::Message(m) => Entry::Message(Message {
            id: m.id,
            session_id: m.session_id,
            role: m.role,
            content: m.content,
            tool_call_id: m.tool_call_id,
            tool_name: m.tool_name,
            tool_calls: m.tool_calls,
            reasoning: m.reasoning,
            timestamp: m.timestamp,
            token_count: m.token_count,
            finish_reason: m.finish_reason,
            source: m.source,
            extra: m.extra,
            ..Message::default()
        }),
        V1Entry::Session(p) => Entry::Session(SessionPatch {
            id: p.id,
            source: p.source,
            model: p.model,
            title: p.title,
            user_id: p.user_id,
            chat_id: p.chat_id,
            parent_session_id: p.parent_session_id,
            started_at: p.started_at,
            ended_at: p.ended_at,
            end_reason: p.end_reason,
            extra: p.extra,
            ..SessionPatch::default()
        }),
    })
}
