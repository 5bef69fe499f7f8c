//! The `tidelog` command of the Python package: the Rust command-line tool (`tidelog-cli`), run
//! in the Python process by `tidelog._cli.main` (the `[project.scripts]` entry point).

use std::ffi::OsString;

use pyo3::prelude::*;

/// Runs the `tidelog` command-line tool on `argv` (`argv[0]` is the program name) with the GIL
/// released and returns its exit code (0 fine, 1 problem found, 2 error). `relaunch` is the
/// command that starts the tool in a new process (`demo` runs its writers with it). Results go to
/// file descriptor 1, messages to 2, as in the Rust binary; a panic ends the process (exit 2).
#[pyfunction]
#[pyo3(signature = (argv, relaunch))]
pub fn _cli_main(py: Python<'_>, argv: Vec<OsString>, relaunch: Vec<OsString>) -> i32 {
    let mut options = tidelog_cli::Options::default();
    options.relaunch = relaunch;
    py.detach(move || tidelog_cli::main_with_options(argv, &options))
}
