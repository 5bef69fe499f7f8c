//! What the store accepts, decided in one place. Every door calls these: the store's own write
//! calls (so the Python binding, the Hermes import and `tidelog append` get the same answers),
//! the JSON-lines parser of the sidecar and the CLI, and every reader of lines.
//!
//! - ids, session ids, roles, metadata keys: non-empty, at most [`MAX_KEY_LEN`] bytes;
//! - timestamps: seconds since 1970, finite, `0 <= t <=` [`MAX_TIMESTAMP`] (0 means "now" for
//!   a message);
//! - `extra`: a JSON object, stored in one canonical form ([`canonical_object`]) so every read,
//!   from the journal or from the index, returns the same text;
//! - `tool_calls`: any JSON;
//! - lines: at most [`MAX_LINE_LEN`] bytes ([`read_line`]).
//!
//! Errors are plain sentences naming the field (the store wraps them in `Error::Invalid`).

use std::io::{self, BufRead};

use serde_json::Value;

/// Largest id, session id, role or metadata key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// The latest timestamp accepted: 9999-12-31T23:59:59Z (ISO-8601 has four-digit years; a larger
/// number is a unit mistake, milliseconds or nanoseconds taken for seconds, or junk).
pub const MAX_TIMESTAMP: f64 = 253_402_300_799.0;

/// Longest line a JSON-lines reader takes, in bytes: the largest record the journal accepts by
/// default (64 MiB) plus room for JSON escaping. A longer line is refused without being held in
/// memory whole.
pub const MAX_LINE_LEN: usize = 80 << 20;

/// A result whose error is the sentence to show.
pub type Checked<T> = std::result::Result<T, String>;

/// An id, session id, role or key: non-empty, at most [`MAX_KEY_LEN`] bytes.
pub fn key(what: &str, v: &str) -> Checked<()> {
    if v.is_empty() {
        return Err(format!("`{what}` is empty"));
    }
    if v.len() > MAX_KEY_LEN {
        return Err(format!("`{what}` is longer than {MAX_KEY_LEN} bytes"));
    }
    Ok(())
}

/// A timestamp in seconds since 1970: finite, not negative, not after the year 9999.
pub fn timestamp(what: &str, t: f64) -> Checked<()> {
    if !t.is_finite() || t < 0.0 {
        return Err(format!("`{what}` {t} is not a non-negative number of seconds since 1970"));
    }
    if t > MAX_TIMESTAMP {
        return Err(format!("`{what}` {t} is after the year 9999; give seconds since 1970 (or an ISO-8601 date)"));
    }
    Ok(())
}

/// An optional timestamp (see [`timestamp`]).
pub fn timestamp_opt(what: &str, t: Option<f64>) -> Checked<()> {
    t.map_or(Ok(()), |t| timestamp(what, t))
}

/// Any JSON text (`tool_calls`).
pub fn json(what: &str, text: Option<&str>) -> Checked<()> {
    if let Some(text) = text {
        serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(|e| format!("`{what}` is not valid JSON: {e}"))?;
    }
    Ok(())
}

/// The canonical text of a JSON object (`extra`): keys sorted, each once (the last of repeated
/// keys wins, as in most JSON readers), numbers in their shortest exact form (`2.50` is `2.5`;
/// an integer beyond 64 bits is read as the nearest double, as Python's `float()` would), no
/// spaces. Refuses anything but an object.
pub fn canonical_object(what: &str, text: &str) -> Checked<String> {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => Ok(v.to_string()),
        Ok(other) => Err(format!("`{what}` must be a JSON object, not {}", kind(&other))),
        Err(e) => Err(format!("`{what}` is not valid JSON: {e}")),
    }
}

/// [`canonical_object`] of an optional field, in place.
pub fn canonicalize_object(what: &str, field: &mut Option<String>) -> Checked<()> {
    if let Some(text) = field.as_deref() {
        *field = Some(canonical_object(what, text)?);
    }
    Ok(())
}

/// How a JSON value is called in an error.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// What [`read_line`] read.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// The end of the input.
    End,
    /// A line, in the buffer without its `\n` (and `\r`); `complete` is false for a last line
    /// without a newline (possibly cut by a writer that died).
    Text {
        /// Whether a newline ended it.
        complete: bool,
    },
    /// A line longer than the limit. Nothing of it is kept and the input stays in the middle
    /// of it: the caller stops reading (and says so).
    TooLong,
}

/// Reads one line into `buf` (cleared first), holding at most `max` bytes of it: a longer line
/// is [`Line::TooLong`] as soon as it passes the limit, so reading `/dev/zero` or a file
/// without newlines fails cleanly instead of growing without bound.
pub fn read_line(r: &mut impl BufRead, buf: &mut Vec<u8>, max: usize) -> io::Result<Line> {
    buf.clear();
    // `\r\n` ends a line of `max` bytes: two more are allowed before the end is cut off.
    let limit = max.saturating_add(2);
    let n = io::Read::take(&mut *r, limit as u64 + 1).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(Line::End);
    }
    let complete = buf.last() == Some(&b'\n');
    if complete {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    }
    if buf.len() > max {
        buf.clear();
        buf.shrink_to(max.min(1 << 16));
        return Ok(Line::TooLong);
    }
    Ok(Line::Text { complete })
}

/// The error for a line past [`MAX_LINE_LEN`].
pub fn too_long(number: usize) -> String {
    format!("line {number} is longer than {} MiB; reading stopped there", MAX_LINE_LEN >> 20)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn timestamps() {
        for ok in [0.0, 1.5, 1_700_000_000.0, MAX_TIMESTAMP] {
            timestamp("timestamp", ok).unwrap();
        }
        for bad in [-1.0, 1e300, 2f64.powi(70), f64::NAN, f64::INFINITY, MAX_TIMESTAMP + 1.0] {
            assert!(timestamp("timestamp", bad).unwrap_err().contains("`timestamp`"), "{bad}");
        }
    }

    #[test]
    fn extra_is_an_object_in_one_form() {
        assert_eq!(canonical_object("extra", r#"{"b":2.50, "a":1,"a":3}"#).unwrap(), r#"{"a":3,"b":2.5}"#);
        assert_eq!(
            canonical_object("extra", r#"{"n":1180591620717411303424}"#).unwrap(),
            r#"{"n":1.1805916207174113e+21}"#
        );
        for bad in ["[1]", "1", "\"x\"", "null", "{"] {
            assert!(canonical_object("extra", bad).is_err(), "{bad}");
        }
        // Canonical text is its own canonical form.
        let once = canonical_object("extra", r#"{"z":{"y":[1,2.0,"\u00e9"]},"a":null}"#).unwrap();
        assert_eq!(canonical_object("extra", &once).unwrap(), once);
    }

    #[test]
    fn lines_are_bounded() {
        let mut buf = Vec::new();
        let mut r = io::BufReader::with_capacity(7, &b"ab\r\n\nlong line here\nend"[..]);
        assert_eq!(read_line(&mut r, &mut buf, 8).unwrap(), Line::Text { complete: true });
        assert_eq!(buf, b"ab");
        assert_eq!(read_line(&mut r, &mut buf, 8).unwrap(), Line::Text { complete: true });
        assert_eq!(buf, b"");
        assert_eq!(read_line(&mut r, &mut buf, 8).unwrap(), Line::TooLong);
        let mut r = io::BufReader::with_capacity(7, &b"12345678\r\nend"[..]);
        assert_eq!(read_line(&mut r, &mut buf, 8).unwrap(), Line::Text { complete: true });
        assert_eq!(buf, b"12345678");
        assert_eq!(read_line(&mut r, &mut buf, 8).unwrap(), Line::Text { complete: false });
        assert_eq!(buf, b"end");
        assert_eq!(read_line(&mut r, &mut buf, 8).unwrap(), Line::End);
        // An endless line: refused after the limit, in bounded memory.
        let mut zeros = io::BufReader::new(io::repeat(0));
        assert_eq!(read_line(&mut zeros, &mut buf, 1 << 20).unwrap(), Line::TooLong);
        assert!(buf.capacity() <= 4 << 20, "{}", buf.capacity());
    }
}
