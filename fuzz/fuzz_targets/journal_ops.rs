//! An arbitrary operation sequence with a crash countdown, checked against the in-memory model
//! (I1-I3, and I5 after every reopen).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tidelog_tests::fuzz_logic::journal_ops(data));
