//! The one place that maps files into memory.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;

/// Maps `len` bytes of a sealed segment from `offset`, read-only (the caller keeps the range
/// inside the file).
///
/// # Safety
///
/// A memory map is only sound while no one truncates the file underneath it (a read past the
/// new end is a `SIGBUS`) and while nothing relies on the mapped bytes staying the same. This
/// function is only called on sealed segments: the journal never truncates, extends or recycles
/// a sealed segment (salvage records holes in a manifest, torn-tail truncation only applies to
/// the unsealed last segment, retention removes whole files, which leaves existing maps valid on
/// Unix). The one write a sealed segment gets is an erase overwriting whole records, its header
/// and its footer in place with bytes of the same length (`overwrite.rs`); readers copy bytes
/// out of the map before checking them, so such a write shows a reader old bytes, new bytes, or a
/// mix that fails the checksum and is read again. No `&[u8]` into the map is held across a
/// check. Another program modifying the file by hand is outside the contract, as for any
/// database file.
pub(crate) unsafe fn map_sealed(file: &File, offset: u64, len: usize) -> io::Result<memmap2::Mmap> {
    // SAFETY: the caller upholds this function's contract (a sealed segment, never truncated).
    unsafe { memmap2::MmapOptions::new().offset(offset).len(len).map(file) }
}
