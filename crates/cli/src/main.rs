//! `tidelog`: the command-line tool of the Tidelog message store. The work is in the library
//! (`src/lib.rs`), which the Python package's `tidelog` command runs too.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    let code = tidelog_cli::main_with_args(std::env::args_os());
    ExitCode::from(u8::try_from(code).unwrap_or(2))
}
