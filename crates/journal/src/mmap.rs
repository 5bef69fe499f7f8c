//! The one place that maps files into memory.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;

/// Maps `len` bytes of a sealed segment from `offset`, read-only (the caller keeps the range
/// inside the file).
///
/// # Safety
///
/// A memory map is only sound while no one truncates or rewrites the file underneath it. This
/// function is only called on sealed segments: the journal never writes to, truncates or recycles
/// a sealed segment (salvage records holes in a manifest instead of rewriting files, torn-tail
/// truncation only applies to the unsealed last segment, and retention removes whole files, which
/// leaves existing maps valid on Unix). Another program modifying the file by hand is outside the
/// contract, as for any database file.
pub(crate) unsafe fn map_sealed(file: &File, offset: u64, len: usize) -> io::Result<memmap2::Mmap> {
    // SAFETY: the caller upholds this function's contract (a sealed segment, never changed).
    unsafe { memmap2::MmapOptions::new().offset(offset).len(len).map(file) }
}
