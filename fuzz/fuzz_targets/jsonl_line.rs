//! PENDING: fuzz the CLI's JSONL line parser once it exists. Not declared in fuzz/Cargo.toml yet.
//! When the parser lands: move the logic into `tests/src/fuzz_logic.rs` (`jsonl_line(data)`:
//! parse arbitrary bytes as one line, no panic, a parsed line re-encodes to an equivalent one),
//! add a `[[bin]]` entry, and a corpus folder `fuzz/corpus/jsonl_line/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = data;
});
