//! Writes the Hermes Agent fixtures (see `tidelog_tests::hermes_fixtures`):
//!
//! ```text
//! cargo run -p tidelog-tests --bin gen-hermes-fixtures -- tests/fixtures/hermes
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), None) = (args.next(), args.next()) else {
        eprintln!("usage: gen-hermes-fixtures <output folder>   (the committed copy is tests/fixtures/hermes)");
        return ExitCode::from(2);
    };
    let out = PathBuf::from(out);
    match tidelog_tests::hermes_fixtures::generate(&out) {
        Ok(counts) => {
            println!("wrote {}: {counts:?}", out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot write the fixtures into {}: {e}", out.display());
            ExitCode::from(2)
        }
    }
}
