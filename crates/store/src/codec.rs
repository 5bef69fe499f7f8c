//! How entries are encoded inside journal records.
//!
//! Format: one tag byte naming the codec, then the encoded entry. Tag 1 is bincode 2 (serde,
//! standard configuration: little-endian, variable-length integers) of [`Entry`]. A new encoding
//! gets a new tag; old tags stay readable.

use crate::model::Entry;

/// The codec tag of bincode-2-encoded entries.
pub const CODEC_BINCODE_V1: u8 = 1;

/// Largest entry the decoder will allocate for (bounded by the journal's record size anyway).
const DECODE_LIMIT: usize = 1 << 30;

/// Why an entry could not be encoded or a record decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The record is empty.
    #[error("empty record")]
    Empty,
    /// The tag names a codec this version does not know (written by a newer version).
    #[error("unknown codec tag {0}: written by a newer version of logbook")]
    UnknownCodec(u8),
    /// The bytes do not decode.
    #[error("undecodable entry: {0}")]
    Invalid(String),
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

/// Encodes an entry as a journal payload. Plain data into a `Vec` does not fail in practice;
/// if the encoder ever reports an error, it is returned and nothing is appended.
pub fn encode(entry: &Entry) -> Result<Vec<u8>, DecodeError> {
    let mut out = vec![CODEC_BINCODE_V1];
    bincode::serde::encode_into_std_write(entry, &mut out, config())
        .map_err(|e| DecodeError::Invalid(format!("cannot encode: {e}")))?;
    Ok(out)
}

/// Decodes a journal payload.
pub fn decode(payload: &[u8]) -> Result<Entry, DecodeError> {
    let (&tag, rest) = payload.split_first().ok_or(DecodeError::Empty)?;
    match tag {
        CODEC_BINCODE_V1 => {
            let (entry, used) = bincode::serde::decode_from_slice::<Entry, _>(rest, config())
                .map_err(|e| DecodeError::Invalid(e.to_string()))?;
            if used != rest.len() {
                return Err(DecodeError::Invalid(format!("{} trailing bytes", rest.len() - used)));
            }
            Ok(entry)
        }
        t => Err(DecodeError::UnknownCodec(t)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Message, SessionPatch};

    #[test]
    fn round_trip() {
        let m = Entry::Message(Message {
            id: "x".into(),
            session_id: "s".into(),
            role: "user".into(),
            content: Some("héllo 世界 🎉".into()),
            tool_calls: Some("[{\"a\":1}]".into()),
            timestamp: 1.5,
            token_count: Some(-3),
            ..Message::default()
        });
        assert_eq!(decode(&encode(&m).unwrap()).unwrap(), m);
        let s = Entry::Session(SessionPatch { id: "s".into(), title: Some("t".into()), ..Default::default() });
        assert_eq!(decode(&encode(&s).unwrap()).unwrap(), s);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(decode(&[]), Err(DecodeError::Empty));
        assert_eq!(decode(&[9, 1, 2]), Err(DecodeError::UnknownCodec(9)));
        for len in 0..64 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 % 251) as u8).collect();
            let mut p = vec![CODEC_BINCODE_V1];
            p.extend(bytes);
            let _ = decode(&p);
        }
        // A huge declared length must not allocate.
        let _ = decode(&[CODEC_BINCODE_V1, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
    }
}
