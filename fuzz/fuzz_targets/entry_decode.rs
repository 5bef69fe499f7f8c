//! A journal payload as arbitrary bytes, every codec tag (bincode, fields, zstd-compressed):
//! decoding never panics nor allocates without bound, and what decodes round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tidelog_tests::fuzz_logic::entry_decode(data));
