//! Arbitrary bytes as one to three segment files, opened read-only, Strict and Salvage: no panic,
//! bounded allocation, every record returned is a checksummed record of the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tidelog_tests::fuzz_logic::segment_recovery(data));
