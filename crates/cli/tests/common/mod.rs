#![allow(clippy::unwrap_used, dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tidelog"));
    c.env_remove("TIDELOG_DIR").env_remove("RUST_LOG").env_remove("TIDELOG_MAX_RECORD_SIZE");
    // Small segments: debug builds scan a preallocated 64 MiB segment slowly.
    c.env("TIDELOG_SEGMENT_SIZE", "1048576");
    c
}

pub fn run(dir: &Path, args: &[&str]) -> Output {
    bin().arg("--dir").arg(dir).args(args).stdin(Stdio::null()).output().unwrap()
}

pub fn run_stdin(dir: &Path, args: &[&str], input: &str) -> Output {
    let mut child = bin()
        .arg("--dir")
        .arg(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    stdout(o).lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
}

pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The committed Hermes Agent fixtures, `<repo>/tests/fixtures/hermes` (written by
/// `gen-hermes-fixtures`; see its README). Copy before opening: tests never touch them in place.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/hermes")
}

/// Copies a folder; see `tidelog_tests::copy_dir`.
pub fn copy_dir(from: &Path, to: &Path) {
    tidelog_tests::copy_dir(from, to);
}

pub fn msg(session: &str, i: usize) -> String {
    serde_json::json!({"session_id": session, "role": "user", "content": format!("message {i} about the invoice 請求書"), "id": format!("m-{session}-{i}")}).to_string()
}
