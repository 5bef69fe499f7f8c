//! Deterministic ids for imported messages, equal whether a message comes from the database or a sidecar.

use crate::model::Message;
use std::collections::HashMap;

/// The deterministic id given to an imported message.
///
/// It is `"hermes-"` followed by 32 lowercase hex digits of a 128-bit FNV-1a hash over, each
/// length-prefixed: the session id, the role, the timestamp in whole milliseconds, the content
/// and the tool call id (`None` and `Some("")` differ). FNV is used for deduplication only; it
/// is not a cryptographic hash and an adversary can forge collisions.
///
/// The timestamp is first rounded to whole microseconds the way Python's
/// `datetime.fromtimestamp` does (half to even on the fractional part), which is how Hermes
/// turns the `time.time()` float it stores in SQLite into the ISO-8601 text of a sidecar, and
/// then floored to milliseconds. A database REAL and the sidecar's ISO text for the same message
/// therefore give the same id, and so does a writer that truncates to milliseconds.
///
/// When one session holds several messages with equal inputs, the importers give the second
/// and later ones an occurrence number as an extra hash input, so they stay distinct; both
/// sources count occurrences the same way.
pub fn imported_message_id(
    session_id: &str,
    role: &str,
    timestamp: f64,
    content: Option<&str>,
    tool_call_id: Option<&str>,
) -> String {
    message_id_with_occurrence(session_id, role, timestamp, content, tool_call_id, 0)
}

pub(super) fn message_id_with_occurrence(
    session_id: &str,
    role: &str,
    timestamp: f64,
    content: Option<&str>,
    tool_call_id: Option<&str>,
    occurrence: u32,
) -> String {
    let mut h = Fnv128::new();
    // A hash domain: part of every imported id, so it keeps the project's first name.
    h.field(b"logbook/hermes-import/v1");
    h.field(session_id.as_bytes());
    h.field(role.as_bytes());
    h.write(&timestamp_millis(timestamp).to_le_bytes());
    h.optional(content.map(str::as_bytes));
    h.optional(tool_call_id.map(str::as_bytes));
    if occurrence > 0 {
        h.write(&occurrence.to_le_bytes());
    }
    format!("hermes-{:032x}", h.finish())
}

/// Whole milliseconds since the epoch, via Python's rounding to microseconds.
pub(super) fn timestamp_millis(ts: f64) -> i64 {
    if !ts.is_finite() {
        return i64::MIN;
    }
    let secs = ts.trunc();
    let micros = ((ts - secs) * 1e6).round_ties_even();
    // `as` saturates for out-of-range floats; such timestamps are nonsense either way.
    let total = (secs as i64).saturating_mul(1_000_000).saturating_add(micros as i64);
    total.div_euclid(1000)
}

/// 128-bit FNV-1a (offset basis and prime from the FNV specification).
pub(super) struct Fnv128(u128);

impl Fnv128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;

    pub(super) fn new() -> Self {
        Self(Self::OFFSET)
    }

    pub(super) fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u128::from(b);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    pub(super) fn field(&mut self, bytes: &[u8]) {
        self.write(&(bytes.len() as u64).to_le_bytes());
        self.write(bytes);
    }

    pub(super) fn optional(&mut self, bytes: Option<&[u8]>) {
        match bytes {
            None => self.write(&[0]),
            Some(b) => {
                self.write(&[1]);
                self.field(b);
            }
        }
    }

    pub(super) fn finish(&self) -> u128 {
        self.0
    }
}

/// Gives ids to the messages of one session after another, numbering repeats.
#[derive(Default)]
pub(super) struct IdAssigner {
    pub(super) session: String,
    pub(super) seen: HashMap<String, u32>,
}

impl IdAssigner {
    pub(super) fn assign(&mut self, m: &Message) -> String {
        if m.session_id != self.session {
            self.session.clone_from(&m.session_id);
            self.seen.clear();
        }
        let base =
            imported_message_id(&m.session_id, &m.role, m.timestamp, m.content.as_deref(), m.tool_call_id.as_deref());
        let n = self.seen.entry(base.clone()).or_insert(0);
        let occurrence = *n;
        *n = n.saturating_add(1);
        if occurrence == 0 {
            base
        } else {
            message_id_with_occurrence(
                &m.session_id,
                &m.role,
                m.timestamp,
                m.content.as_deref(),
                m.tool_call_id.as_deref(),
                occurrence,
            )
        }
    }
}
