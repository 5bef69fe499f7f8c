//! Codec tag 3: a tag-2 entry compressed with zstd.
//!
//! Format (docs/format.md "Codec tag 3"):
//!
//! ```text
//! payload := 0x03 raw_len:varint frame_len:varint frame[frame_len] 0x00*
//! ```
//!
//! `frame` is zstd data that decompresses to exactly `raw_len` bytes: a whole tag-2 payload, its
//! tag byte included (never another tag 3). The zero bytes after the frame are padding, for an
//! erase that overwrites a record in place with a shorter entry; anything else there is refused.
//!
//! Writers compress an entry when its encoding is at least [`MIN_BYTES`] long and zstd saves at
//! least an eighth of it; every other entry stays tag 2. Compression happens in the caller's
//! thread before the append joins a group commit, so writers compress in parallel and the
//! journal's write path is unchanged.

use std::cell::RefCell;
use std::io::Read;

use super::CODEC_FIELDS_V2;
use crate::wire::{DecodeError, put_varint, take_varint};

/// The codec tag of a compressed entry.
pub const CODEC_ZSTD_V3: u8 = 3;

/// Entries shorter than this are never compressed: a chat line gains a hundred bytes at most,
/// and at 64 writers on two cores compressing them cost 40 % of the append rate (measured).
pub(crate) const MIN_BYTES: usize = 512;

/// Entries longer than this are written as they are and compressed later, in place, by the
/// compactor's idle pass over sealed segments ([`in_place`]): compressing a 64 KB tool output
/// takes about as long as the `fdatasync` that acknowledges it (measured: 250 us), which would
/// halve the append rate of large messages.
pub(crate) const APPEND_MAX: usize = 16 * 1024;

/// The smallest saving worth an overwrite in place: a file system block (what hole punching
/// gives back).
const IN_PLACE_MIN_SAVING: usize = 4096;

/// zstd's default level: on this repository's text about 4x, at several hundred MB/s per core.
const LEVEL: i32 = 3;

/// The largest entry a tag-3 payload may expand to (the journal's largest record size), so a
/// damaged or hostile length cannot ask for more memory than any writer could have used.
const MAX_RAW: u64 = 1 << 30;

/// Up to this size the output buffer is allocated at once; above, it grows with what the frame
/// really produces.
const ONE_SHOT: u64 = 4 << 20;

thread_local! {
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// The journal payload of a tag-2 payload `raw`: compressed (tag 3) when that saves at least an
/// eighth, else `raw` itself.
pub(crate) fn for_journal(raw: Vec<u8>) -> Vec<u8> {
    if raw.len() < MIN_BYTES || raw.len() > APPEND_MAX {
        return raw;
    }
    match compress(&raw) {
        Some(c) if c.len() <= raw.len() - raw.len() / 8 => c,
        _ => raw,
    }
}

/// The compressed form of a record's payload written as it was (a tag-2 entry longer than
/// [`APPEND_MAX`]), padded with zeros to the payload's length, for an overwrite in place that
/// keeps the record's offset and length (docs/format.md "Erasure in place"); the zeros are
/// then given back to the file system. `None` when the payload is not such an entry or saves
/// less than a block.
pub(crate) fn in_place(payload: &[u8]) -> Option<Vec<u8>> {
    if payload.first() != Some(&CODEC_FIELDS_V2) || payload.len() <= APPEND_MAX {
        return None;
    }
    let mut c = compress(payload)?;
    if c.len() + IN_PLACE_MIN_SAVING > payload.len() {
        return None;
    }
    c.resize(payload.len(), 0);
    Some(c)
}

/// The tag-3 payload of the tag-2 payload `raw`, whatever its size; `None` if zstd fails (it
/// does not, short of memory).
pub(crate) fn compress(raw: &[u8]) -> Option<Vec<u8>> {
    let frame = frame_of(raw)?;
    Some(tagged(raw.len(), &frame))
}

/// [`compress`] at zstd's highest level: for an erase that must fit part of a compressed
/// record into that record's length (slow, rare, never on the append path).
pub(crate) fn compress_hard(raw: &[u8]) -> Option<Vec<u8>> {
    let frame = zstd::bulk::compress(raw, 19).ok()?;
    Some(tagged(raw.len(), &frame))
}

fn tagged(raw_len: usize, frame: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(frame.len() + 12);
    out.push(CODEC_ZSTD_V3);
    put_varint(&mut out, raw_len as u64);
    put_varint(&mut out, frame.len() as u64);
    out.extend_from_slice(frame);
    out
}

fn frame_of(raw: &[u8]) -> Option<Vec<u8>> {
    COMPRESSOR
        .with(|c| {
            let mut c = c.borrow_mut();
            if c.is_none() {
                *c = Some(zstd::bulk::Compressor::new(LEVEL)?);
            }
            c.as_mut().map_or_else(|| Err(std::io::Error::other("no compressor")), |c| c.compress(raw))
        })
        .ok()
}

/// The tag-2 payload inside a tag-3 payload (`rest`: the bytes after the tag).
pub(crate) fn decompress(rest: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let bad = |why: &str| DecodeError::Invalid(format!("compressed entry: {why}"));
    let mut buf = rest;
    let raw_len = take_varint(&mut buf)?;
    let frame_len = take_varint(&mut buf)?;
    if raw_len > MAX_RAW {
        return Err(bad("expands beyond the largest record"));
    }
    let frame_len = usize::try_from(frame_len).map_err(|_| bad("frame length too large"))?;
    let frame = buf.get(..frame_len).ok_or_else(|| bad("frame cut short"))?;
    if buf.get(frame_len..).is_some_and(|pad| pad.iter().any(|&b| b != 0)) {
        return Err(bad("bytes after the frame"));
    }
    let out = if raw_len <= ONE_SHOT {
        let cap = usize::try_from(raw_len).map_err(|_| bad("too large"))?;
        DECOMPRESSOR
            .with(|d| {
                let mut d = d.borrow_mut();
                if d.is_none() {
                    *d = Some(zstd::bulk::Decompressor::new()?);
                }
                d.as_mut().map_or_else(|| Err(std::io::Error::other("no decompressor")), |d| d.decompress(frame, cap))
            })
            .map_err(|e| bad(&e.to_string()))?
    } else {
        let mut out = Vec::new();
        zstd::stream::read::Decoder::with_buffer(frame)
            .map_err(|e| bad(&e.to_string()))?
            .take(raw_len + 1)
            .read_to_end(&mut out)
            .map_err(|e| bad(&e.to_string()))?;
        out
    };
    if out.len() as u64 != raw_len {
        return Err(bad("frame does not expand to its stated length"));
    }
    if out.first() != Some(&CODEC_FIELDS_V2) {
        return Err(bad("the compressed bytes are not a tag-2 entry"));
    }
    Ok(out)
}
