//! What a journal record carries, and how it is encoded.
//!
//! Format (docs/format.md "Journal payloads of the store"): one codec tag byte, then the entry.
//! Tag 2 (written today) is a kind number followed by tagged fields ([`wire`](crate::wire)); tag 1 (read
//! forever, never written) is the bincode encoding of the first release ([`legacy`]); tag 3 is a
//! tag-2 entry compressed with zstd ([`compress`]), what the journal gets for long entries. An entry of
//! an unknown kind, an unknown tag or an unknown critical field was written by a newer version:
//! decoding says so ([`DecodeError::Newer`], [`DecodeError::UnknownCodec`]) and the store reports
//! it in its status; it is never skipped in silence.

mod compress;
/// The compressed form of a payload when appending it (lone, or in a batch of several
/// messages), and whether a payload's length is worth offering it: see `compress.rs`.
pub(crate) use compress::{
    Slots, shorter as shorter_payload, shorter_bulk as shorter_payload_bulk, worth_trying as worth_compressing,
};
mod legacy;

pub use compress::CODEC_ZSTD_V3;

pub use crate::wire::DecodeError;
use crate::wire::{Record, Writer, put_varint, take_varint};

use crate::model::{
    CounterDelta, DeleteSessions, Erased, Message, MessageUpdate, MetaSet, Rewrite, RewriteMode, SessionPatch,
};

/// The codec tag of the first release's bincode encoding (read only).
pub const CODEC_BINCODE_V1: u8 = 1;
/// The codec tag of the field encoding (written).
pub const CODEC_FIELDS_V2: u8 = 2;

/// What one journal record carries.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Entry {
    /// A message was appended (kind 1).
    Message(Message),
    /// A session was created, updated or ended (kind 2).
    Session(SessionPatch),
    /// Fields of a message changed (kind 3).
    Update(MessageUpdate),
    /// A session's history was replaced, cleared, archived or compacted (kind 4).
    Rewrite(Rewrite),
    /// Sessions were deleted (kind 5).
    Delete(DeleteSessions),
    /// Session counters grew (kind 6).
    Counters(CounterDelta),
    /// A metadata key was set or removed (kind 7).
    Meta(MetaSet),
    /// The content of this record was erased (kind 8).
    Erased(Erased),
}

impl Entry {
    fn kind(&self) -> u64 {
        match self {
            Entry::Message(_) => 1,
            Entry::Session(_) => 2,
            Entry::Update(_) => 3,
            Entry::Rewrite(_) => 4,
            Entry::Delete(_) => 5,
            Entry::Counters(_) => 6,
            Entry::Meta(_) => 7,
            Entry::Erased(_) => 8,
        }
    }

    /// The kind number of this entry in the encoding.
    pub fn kind_number(&self) -> i64 {
        self.kind() as i64
    }

    /// The session the entry belongs to, when it belongs to one.
    pub fn session_id(&self) -> Option<&str> {
        match self {
            Entry::Message(m) => Some(&m.session_id),
            Entry::Session(p) => Some(&p.id),
            Entry::Update(u) => Some(&u.session_id),
            Entry::Rewrite(r) => Some(&r.session_id),
            Entry::Counters(c) => Some(&c.session_id),
            Entry::Delete(_) | Entry::Meta(_) | Entry::Erased(_) => None,
        }
    }

    /// The entry as a write that folds into its session's row
    /// ([`fold_session_row`](crate::model::fold_session_row)), if it is one.
    pub fn session_write(&self) -> Option<crate::model::SessionWrite<'_>> {
        use crate::model::SessionWrite;
        match self {
            Entry::Session(p) => Some(SessionWrite::Patch(p)),
            Entry::Counters(c) => Some(SessionWrite::Counters(c)),
            Entry::Rewrite(_) => Some(SessionWrite::Rewrite),
            _ => None,
        }
    }
}

/// Encodes an entry as a journal payload (tag 2).
// Format: docs/format.md "Entry encoding, tag 2".
pub fn encode(entry: &Entry) -> Vec<u8> {
    let mut w = Writer { buf: vec![CODEC_FIELDS_V2] };
    put_varint(&mut w.buf, entry.kind());
    match entry {
        Entry::Message(m) => m.write_fields(&mut w),
        Entry::Session(p) => p.write_fields(&mut w),
        Entry::Update(u) => u.write_fields(&mut w),
        Entry::Rewrite(r) => r.write_fields(&mut w),
        Entry::Delete(d) => d.write_fields(&mut w),
        Entry::Counters(c) => c.write_fields(&mut w),
        Entry::Meta(m) => m.write_fields(&mut w),
        Entry::Erased(e) => e.write_fields(&mut w),
    }
    w.buf
}

/// Encodes an entry as a journal payload: tag 2, or tag 3 (compressed) when the entry is long
/// and compresses by at least an eighth. Every write to a journal goes through here.
///
/// `max` bounds the entry's size before compression (the journal's largest record), so that
/// compression never lets through an entry a reader would need more memory for than the
/// journal's limit allows; `Err` gives the size.
// Format: docs/format.md "Codec tag 3".
pub fn encode_for_journal(entry: &Entry, max: usize) -> Result<Vec<u8>, usize> {
    let raw = encode(entry);
    if raw.len() > max {
        return Err(raw.len());
    }
    Ok(compress::for_journal(raw))
}

/// [`encode_for_journal`] bounded by journal `j`'s largest record: an entry larger than that
/// before compression is refused as a record too large (nothing is written).
pub(crate) fn journal_payload(j: &tidelog_journal::Journal, e: &Entry) -> Result<Vec<u8>, tidelog_journal::Error> {
    let max = j.max_record_size();
    encode_for_journal(e, max as usize).map_err(|len| tidelog_journal::Error::RecordTooLarge { len, max })
}

/// An entry's tag-2 payload for journal `j`, refused (nothing written) when larger than its
/// largest record; [`shorter_payload`] gives its compressed form, for
/// `Journal::append_batch_improving`.
pub(crate) fn journal_raw(j: &tidelog_journal::Journal, e: &Entry) -> Result<Vec<u8>, tidelog_journal::Error> {
    let max = j.max_record_size();
    let raw = encode(e);
    if raw.len() > max as usize {
        return Err(tidelog_journal::Error::RecordTooLarge { len: raw.len(), max });
    }
    Ok(raw)
}

/// The tag-2 bytes of a compressed (tag 3) payload, `None` for any other payload: what the
/// bytes of a compressed record say, for searches of raw bytes (`verify`'s search for deleted
/// text) that must see through compression.
pub(crate) fn uncompressed(payload: &[u8]) -> Option<Vec<u8>> {
    let (&tag, rest) = payload.split_first()?;
    (tag == CODEC_ZSTD_V3).then(|| compress::decompress(rest).ok()).flatten()
}

/// The payload a long record written as it was gets when compressed in place (same length,
/// zeros after the frame); `None` if it is not worth it. See `compress::in_place`.
pub(crate) fn compressed_in_place(payload: &[u8]) -> Option<Vec<u8>> {
    compress::in_place(payload)
}

/// The field number of padding: any entry may end with it (wire 2, non-critical, zero bytes),
/// which every reader skips. An erase that overwrites a record in place pads the new entry to
/// the record's length with it. Never used for anything else, in any kind.
pub(crate) const PAD_FIELD: u32 = 127;

/// Encodes `entry` padded to exactly `len` bytes (see [`PAD_FIELD`]); `None` if its encoding is
/// longer or the gap is 1 or 2 bytes (less than a padding field). An `Erased` entry fits any
/// length from 2 bytes: when the gap is too small it drops its `kind` field (2 bytes) to make
/// room. An entry whose tag-2 encoding does not fit (part of a record that was compressed) is
/// compressed and padded with zeros after its frame (tag 3).
// Format: docs/format.md "Entry encoding, tag 2" (padding), "Codec tag 3".
pub(crate) fn encode_padded(entry: &Entry, len: usize) -> Option<Vec<u8>> {
    let pad = |buf: Vec<u8>| -> Option<Vec<u8>> {
        let gap = len.checked_sub(buf.len())?;
        if gap == 0 {
            return Some(buf);
        }
        // key (2 bytes for field 127, wire 2) + length as a varint of `vlen` bytes (LEB128 allows
        // continuation bytes of zeros, so every gap of 3 bytes or more has one) + zeros.
        for vlen in 1..=5usize {
            let Some(n) = gap.checked_sub(2 + vlen) else { break };
            if (n as u64) >> (7 * vlen) != 0 {
                continue;
            }
            let mut out = buf;
            put_varint(&mut out, (u64::from(PAD_FIELD) << 3) | 2);
            for i in 0..vlen {
                let b = ((n >> (7 * i)) & 0x7f) as u8;
                out.push(if i + 1 < vlen { b | 0x80 } else { b });
            }
            out.resize(out.len() + n, 0);
            return Some(out);
        }
        None
    };
    let raw = encode(entry);
    let compressed_padded = |raw: &[u8]| {
        // A tag-3 payload is padded with zeros after its frame (docs/format.md "Codec tag 3"):
        // what a record that was compressed needs when part of it is erased.
        let mut c = compress::compress(raw).filter(|c| c.len() <= len).or_else(|| compress::compress_hard(raw))?;
        if c.len() > len {
            return None;
        }
        c.resize(len, 0);
        Some(c)
    };
    pad(raw.clone()).or_else(|| compressed_padded(&raw)).or_else(|| match entry {
        // Tag and kind alone (an `Erased` entry of kind 0, unknown), the kind as a one- or
        // two-byte varint: some base fits every length from 2 bytes up.
        Entry::Erased(_) => pad(vec![CODEC_FIELDS_V2, 8]).or_else(|| pad(vec![CODEC_FIELDS_V2, 0x88, 0])),
        _ => None,
    })
}

/// Decodes a journal payload. Messages of tag 1 come back without an integer id (`num` 0); use
/// [`decode_record`] to get the id the store gives them.
pub fn decode(payload: &[u8]) -> Result<Entry, DecodeError> {
    let (&tag, rest) = payload.split_first().ok_or(DecodeError::Empty)?;
    match tag {
        CODEC_BINCODE_V1 => legacy::decode(rest),
        CODEC_FIELDS_V2 => {
            let mut buf = rest;
            let kind = take_varint(&mut buf)?;
            let e = match kind {
                1 => Entry::Message(Message::read(buf)?),
                2 => Entry::Session(SessionPatch::read(buf)?),
                3 => Entry::Update(MessageUpdate::read(buf)?),
                4 => {
                    let r = Rewrite::read(buf)?;
                    if RewriteMode::from_code(r.mode).is_none() {
                        return Err(DecodeError::Newer(format!("rewrite mode {}", r.mode)));
                    }
                    Entry::Rewrite(r)
                }
                5 => Entry::Delete(DeleteSessions::read(buf)?),
                6 => Entry::Counters(CounterDelta::read(buf)?),
                7 => Entry::Meta(MetaSet::read(buf)?),
                8 => Entry::Erased(Erased::read(buf)?),
                k => return Err(DecodeError::Newer(format!("entry kind {k}"))),
            };
            Ok(e)
        }
        CODEC_ZSTD_V3 => decode(&compress::decompress(rest)?),
        t => Err(DecodeError::UnknownCodec(t)),
    }
}

/// Decodes the payload of record `lsn` of lane number `lane`, giving a tag-1 message the integer
/// id the store assigns to messages written before integer ids existed: `lane << 40 | lsn`,
/// unique, increasing within a lane, and below every id assigned since (those start near
/// 2^60, see `ids`).
pub fn decode_record(lane: u64, lsn: u64, payload: &[u8]) -> Result<Entry, DecodeError> {
    let mut e = decode(payload)?;
    if let Entry::Message(m) = &mut e
        && m.num == 0
    {
        m.num = legacy_num(lane, lsn);
    }
    Ok(e)
}

/// The integer id of a message of the first release (see [`decode_record`]).
pub(crate) fn legacy_num(lane: u64, lsn: u64) -> i64 {
    i64::try_from(((lane & 0x3ff) << 40) | (lsn & ((1 << 40) - 1))).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
