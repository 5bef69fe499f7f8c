//! One line of `tidelog append --jsonl` input as arbitrary bytes: the parser never panics, and an
//! accepted message survives export and re-parse unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tidelog_tests::fuzz_logic::jsonl_line(data));
