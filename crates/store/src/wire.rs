//! The field encoding of entries (codec tag 2) and of the records they carry (`record!`, which
//! `model` declares its structs with): a kind number, then tagged fields.
//!
//! Format (docs/format.md "Entry encoding, tag 2"): `field := key value` with
//! `key = number << 3 | critical << 2 | wire type` as a LEB128 varint. Wire types: 0 varint
//! (integers, zigzag for signed; booleans), 1 eight bytes little-endian (f64), 2 a varint length
//! then that many bytes (text, nested fields). A field that is absent has its default (`None`,
//! 0, false, empty); writers omit only absent optional fields. A reader skips an unknown field whose critical bit is clear and refuses an entry
//! with an unknown critical field ([`DecodeError::Newer`]): an optional field can be added
//! without breaking old readers, and a field that changes meaning cannot be ignored by them.
//!
//! Pure functions on byte slices; no I/O, no panics on any input.

/// Why a record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The record is empty.
    #[error("empty record")]
    Empty,
    /// The tag names a codec this version does not know (written by a newer version).
    #[error("unknown codec tag {0}: written by a newer version of tidelog")]
    UnknownCodec(u8),
    /// The entry kind or a critical field is unknown: written by a newer version.
    #[error("{0}: written by a newer version of tidelog")]
    Newer(String),
    /// The bytes do not decode.
    #[error("undecodable entry: {0}")]
    Invalid(String),
}

/// Wire type of a varint.
const VARINT: u8 = 0;
/// Wire type of eight little-endian bytes.
const FIXED64: u8 = 1;
/// Wire type of length-delimited bytes.
const BYTES: u8 = 2;
/// The critical bit of a key.
const CRITICAL: u64 = 1 << 2;

/// Appends a LEB128 varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a LEB128 varint (at most 10 bytes, no overflow).
pub(crate) fn take_varint(buf: &mut &[u8]) -> Result<u64, DecodeError> {
    let mut v: u64 = 0;
    for i in 0..10u32 {
        let (&b, rest) = buf.split_first().ok_or_else(|| DecodeError::Invalid("truncated varint".into()))?;
        *buf = rest;
        let bits = u64::from(b & 0x7f);
        if i == 9 && b > 1 {
            return Err(DecodeError::Invalid("varint overflows 64 bits".into()));
        }
        v |= bits << (7 * i);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(DecodeError::Invalid("varint longer than 10 bytes".into()))
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Builds the fields of one entry or nested record.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    pub(crate) buf: Vec<u8>,
}

impl Writer {
    fn key(&mut self, num: u32, critical: bool, wire: u8) {
        let c = if critical { CRITICAL } else { 0 };
        put_varint(&mut self.buf, (u64::from(num) << 3) | c | u64::from(wire));
    }

    pub(crate) fn varint(&mut self, num: u32, critical: bool, v: u64) {
        self.key(num, critical, VARINT);
        put_varint(&mut self.buf, v);
    }

    pub(crate) fn f64(&mut self, num: u32, critical: bool, v: f64) {
        self.key(num, critical, FIXED64);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn bytes(&mut self, num: u32, critical: bool, v: &[u8]) {
        self.key(num, critical, BYTES);
        put_varint(&mut self.buf, v.len() as u64);
        self.buf.extend_from_slice(v);
    }
}

/// One field's value as read, before it is given a type.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wire<'a> {
    Varint(u64),
    Fixed64([u8; 8]),
    Bytes(&'a [u8]),
}

/// One field as read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field<'a> {
    pub(crate) num: u32,
    pub(crate) critical: bool,
    pub(crate) value: Wire<'a>,
}

/// Reads the next field of `buf`; `None` at the end.
pub(crate) fn next_field<'a>(buf: &mut &'a [u8]) -> Result<Option<Field<'a>>, DecodeError> {
    if buf.is_empty() {
        return Ok(None);
    }
    let key = take_varint(buf)?;
    let num =
        u32::try_from(key >> 3).map_err(|_| DecodeError::Invalid(format!("field number {} too large", key >> 3)))?;
    let critical = key & CRITICAL != 0;
    let value = match (key & 3) as u8 {
        VARINT => Wire::Varint(take_varint(buf)?),
        FIXED64 => {
            let (head, rest) = buf.split_at_checked(8).ok_or_else(|| DecodeError::Invalid("truncated f64".into()))?;
            *buf = rest;
            let mut a = [0u8; 8];
            a.copy_from_slice(head);
            Wire::Fixed64(a)
        }
        BYTES => {
            let len = usize::try_from(take_varint(buf)?).unwrap_or(usize::MAX);
            let (head, rest) = buf
                .split_at_checked(len)
                .ok_or_else(|| DecodeError::Invalid(format!("field {num}: truncated bytes")))?;
            *buf = rest;
            Wire::Bytes(head)
        }
        w => return Err(DecodeError::Invalid(format!("field {num}: unknown wire type {w}"))),
    };
    Ok(Some(Field { num, critical, value }))
}

/// A Rust type a field can hold. `put` writes nothing for an absent value.
pub(crate) trait FieldValue: Sized {
    fn put(&self, w: &mut Writer, num: u32);
    fn take(v: Wire<'_>, name: &'static str) -> Result<Self, DecodeError>;
}

fn wrong(name: &'static str) -> DecodeError {
    DecodeError::Invalid(format!("field {name}: wrong wire type"))
}

impl FieldValue for String {
    fn put(&self, w: &mut Writer, num: u32) {
        w.bytes(num, false, self.as_bytes());
    }
    fn take(v: Wire<'_>, name: &'static str) -> Result<Self, DecodeError> {
        match v {
            Wire::Bytes(b) => {
                String::from_utf8(b.to_vec()).map_err(|_| DecodeError::Invalid(format!("field {name}: not UTF-8")))
            }
            _ => Err(wrong(name)),
        }
    }
}

impl FieldValue for i64 {
    fn put(&self, w: &mut Writer, num: u32) {
        w.varint(num, false, zigzag(*self));
    }
    fn take(v: Wire<'_>, name: &'static str) -> Result<Self, DecodeError> {
        match v {
            Wire::Varint(x) => Ok(unzigzag(x)),
            _ => Err(wrong(name)),
        }
    }
}

impl FieldValue for f64 {
    fn put(&self, w: &mut Writer, num: u32) {
        // Written even when 0.0, so -0.0 and NaN payloads round-trip bit for bit.
        w.f64(num, false, *self);
    }
    fn take(v: Wire<'_>, name: &'static str) -> Result<Self, DecodeError> {
        match v {
            Wire::Fixed64(b) => Ok(f64::from_le_bytes(b)),
            _ => Err(wrong(name)),
        }
    }
}

impl FieldValue for bool {
    fn put(&self, w: &mut Writer, num: u32) {
        w.varint(num, false, u64::from(*self));
    }
    fn take(v: Wire<'_>, name: &'static str) -> Result<Self, DecodeError> {
        match v {
            Wire::Varint(x) => Ok(x != 0),
            _ => Err(wrong(name)),
        }
    }
}

impl<T: FieldValue> FieldValue for Option<T> {
    fn put(&self, w: &mut Writer, num: u32) {
        if let Some(v) = self {
            v.put(w, num);
        }
    }
    fn take(v: Wire<'_>, name: &'static str) -> Result<Self, DecodeError> {
        T::take(v, name).map(Some)
    }
}

impl<T: Record> FieldValue for Vec<T> {
    fn put(&self, w: &mut Writer, num: u32) {
        for item in self {
            let mut inner = Writer::default();
            item.write_fields(&mut inner);
            w.bytes(num, false, &inner.buf);
        }
    }
    fn take(_: Wire<'_>, name: &'static str) -> Result<Self, DecodeError> {
        // Repeated fields are gathered by `Record::read_field`, one item per occurrence.
        Err(DecodeError::Invalid(format!("field {name}: repeated field read as one")))
    }
}

/// A struct whose fields are encoded as tagged fields (see [`record!`]).
pub(crate) trait Record: Default {
    /// The fields, as (name, number), in declaration order.
    const FIELDS: &'static [(&'static str, u32)];
    fn write_fields(&self, w: &mut Writer);
    /// Stores one field; `Ok(false)` if the number is unknown.
    fn read_field(&mut self, f: Field<'_>) -> Result<bool, DecodeError>;

    /// Reads every field of `buf`: unknown optional fields are skipped, an unknown critical
    /// field is refused.
    fn read(mut buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Self::default();
        while let Some(f) = next_field(&mut buf)? {
            if !r.read_field(f)? && f.critical {
                return Err(DecodeError::Newer(format!("unknown critical field {}", f.num)));
            }
        }
        Ok(r)
    }
}

/// Items of a repeated field, one per occurrence (used by [`record!`] for `Vec` fields).
pub(crate) fn push_item<T: Record>(v: &mut Vec<T>, w: Wire<'_>, name: &'static str) -> Result<(), DecodeError> {
    match w {
        Wire::Bytes(b) => {
            v.push(T::read(b)?);
            Ok(())
        }
        _ => Err(wrong(name)),
    }
}

/// Defines a struct whose fields are the one list that the entry encoding, the SQLite columns
/// and the JSON mapping are derived from or checked against. Each field carries its number in
/// the encoding; numbers are never reused. `Vec<...>` fields of records are repeated fields.
macro_rules! record {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* $num:literal $(, $rep:ident)? => pub $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty ),*
        }

        impl $crate::wire::Record for $name {
            const FIELDS: &'static [(&'static str, u32)] = &[ $( (stringify!($field), $num) ),* ];

            fn write_fields(&self, w: &mut $crate::wire::Writer) {
                $( $crate::wire::FieldValue::put(&self.$field, w, $num); )*
            }

            fn read_field(
                &mut self,
                f: $crate::wire::Field<'_>,
            ) -> Result<bool, $crate::wire::DecodeError> {
                match f.num {
                    $( $num => { record!(@read self, $field, f, $($rep)?); Ok(true) } )*
                    _ => Ok(false),
                }
            }
        }
    };
    (@read $self:ident, $field:ident, $f:ident, repeated) => {
        $crate::wire::push_item(&mut $self.$field, $f.value, stringify!($field))?
    };
    (@read $self:ident, $field:ident, $f:ident, ) => {
        $self.$field = $crate::wire::FieldValue::take($f.value, stringify!($field))?
    };
}

pub(crate) use record;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn varints_round_trip_and_refuse_garbage() {
        for v in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            let mut s = b.as_slice();
            assert_eq!(take_varint(&mut s).unwrap(), v);
            assert!(s.is_empty());
        }
        for v in [0i64, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        assert!(take_varint(&mut &[0x80u8; 11][..]).is_err());
        assert!(take_varint(&mut &[0xffu8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02][..]).is_err());
        assert!(take_varint(&mut &[][..]).is_err());
    }

    #[test]
    fn fields_never_panic_on_arbitrary_bytes() {
        let mut x: u32 = 12345;
        for len in 0..300 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let mut s = bytes.as_slice();
            while let Ok(Some(_)) = next_field(&mut s) {}
        }
        // A huge declared length is an error, not an allocation.
        let mut s: &[u8] = &[(1 << 3) | 2, 0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(next_field(&mut s).is_err());
    }
}
