//! A JSON value that keeps key order, for sidecar lines (serde_json::Value sorts keys).

use std::fmt;
use std::fmt::Write as _;

/// A JSON value that keeps object keys in document order (`serde_json::Value` sorts them).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum J {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

/// How [`J::to_json`] writes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Style {
    /// `,` and `:` with no spaces; non-ASCII written as is.
    Compact,
    /// Python's `json.dumps` defaults: `", "` and `": "`, non-ASCII escaped as `\uXXXX`.
    Python,
}

impl J {
    pub(super) fn as_f64(&self) -> Option<f64> {
        match *self {
            J::Int(i) => Some(i as f64),
            J::UInt(u) => Some(u as f64),
            J::Float(f) => Some(f),
            _ => None,
        }
    }

    pub(super) fn to_json(&self, style: Style) -> String {
        let mut s = String::new();
        self.write(&mut s, style);
        s
    }

    pub(super) fn write(&self, out: &mut String, style: Style) {
        let (comma, colon) = match style {
            Style::Compact => (",", ":"),
            Style::Python => (", ", ": "),
        };
        match self {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Int(i) => {
                let _ = write!(out, "{i}");
            }
            J::UInt(u) => {
                let _ = write!(out, "{u}");
            }
            J::Float(f) => write_float(out, *f),
            J::Str(s) => write_str(out, s, style),
            J::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(comma);
                    }
                    item.write(out, style);
                }
                out.push(']');
            }
            J::Obj(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push_str(comma);
                    }
                    write_str(out, k, style);
                    out.push_str(colon);
                    v.write(out, style);
                }
                out.push('}');
            }
        }
    }
}

/// A float as Python's `repr` writes it (`1.0`, `0.5`, `1e-07`, `1e+16`); non-finite as `null`.
pub(super) fn write_float(out: &mut String, f: f64) {
    if !f.is_finite() {
        out.push_str("null");
        return;
    }
    let s = format!("{f:?}");
    match s.split_once('e') {
        Some((mantissa, exp)) => {
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exp),
            };
            let _ = write!(out, "{mantissa}e{sign}{digits:0>2}");
        }
        None => out.push_str(&s),
    }
}

pub(super) fn write_str(out: &mut String, s: &str, style: Style) {
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
            c if style == Style::Python && !(' '..='~').contains(&c) => {
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

impl<'de> serde::Deserialize<'de> for J {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JVisitor)
    }
}

pub(super) struct JVisitor;

impl<'de> serde::de::Visitor<'de> for JVisitor {
    type Value = J;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<J, E> {
        Ok(J::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<J, E> {
        Ok(J::Int(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<J, E> {
        Ok(i64::try_from(v).map_or(J::UInt(v), J::Int))
    }

    fn visit_f64<E>(self, v: f64) -> Result<J, E> {
        Ok(J::Float(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<J, E> {
        Ok(J::Str(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<J, E> {
        Ok(J::Str(v))
    }

    fn visit_unit<E>(self) -> Result<J, E> {
        Ok(J::Null)
    }

    fn visit_none<E>(self) -> Result<J, E> {
        Ok(J::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<J, D::Error> {
        serde::Deserialize::deserialize(d)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<J, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<J>()? {
            items.push(item);
        }
        Ok(J::Arr(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<J, A::Error> {
        let mut fields = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, J>()? {
            fields.push((k, v));
        }
        Ok(J::Obj(fields))
    }
}
