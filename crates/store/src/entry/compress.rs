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
//! thread, off the group commit's path: before the append joins the queue when no commit is in
//! progress, else while it waits for one (`Journal::append_batch_improving`); an entry not
//! compressed in time, or when every compression slot is taken, is written as it is.

use std::cell::RefCell;
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};

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

/// The compressed form of tag-2 payload `raw` when appending it: tag 3 when `raw` is of a size
/// compressed when appended and zstd saves at least an eighth, `None` to write it as it is.
/// At most [`slots`] compressions run at once in a store; an append that finds them all taken is
/// written as it is rather than wait (on a machine short of cores, 64 writers compressing at
/// once starved the thread leading the group commit: 3x fewer appends a second, measured).
pub(crate) fn shorter(raw: &[u8], slots: &Slots) -> Option<Vec<u8>> {
    if raw.len() > APPEND_MAX {
        return None;
    }
    shorter_bulk(raw, slots)
}

/// [`shorter`] without its upper bound, for the entries of a batch of several messages (bulk
/// writes: imports, restores), whose writer waits for a whole batch anyway: a long entry
/// compressed when appended takes no more room than it needs, where one compressed in place
/// later keeps the partial blocks at both ends of its record (measured on Hermes' v30 fixture
/// imported: 150 KB of the journal's 700 KB).
pub(crate) fn shorter_bulk(raw: &[u8], slots: &Slots) -> Option<Vec<u8>> {
    if raw.len() < MIN_BYTES {
        return None;
    }
    let _slot = slots.take()?;
    compress(raw).filter(|c| c.len() <= raw.len() - raw.len() / 8)
}

/// Whether [`shorter`] (`bulk`: [`shorter_bulk`]) may compress a payload of `len` bytes (an
/// append with none such skips the work of offering them).
pub(crate) fn worth_trying(len: usize, bulk: bool) -> bool {
    len >= MIN_BYTES && (bulk || len <= APPEND_MAX)
}

/// How many appends may compress at once: one fewer than the cores (at least one), so that the
/// thread writing and syncing a group commit always finds a core.
fn slots() -> usize {
    static SLOTS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *SLOTS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1)))
}

/// The compressions running in one store's appends (see [`shorter`]).
#[derive(Debug, Default)]
pub(crate) struct Slots(AtomicUsize);

impl Slots {
    fn take(&self) -> Option<Slot<'_>> {
        if self.0.fetch_add(1, Ordering::Relaxed) >= slots() {
            self.0.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Slot(&self.0))
    }
}

/// One of the [`slots`], given back when dropped (a panic included).
struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
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
