//! `_bench_append`: appends timed in Rust, with no Python in the loop, so that the benchmark
//! (`bench/bench.py`) compares the binding with the store in the same build and the same run.

use std::path::PathBuf;
use std::time::Instant;

use pyo3::prelude::*;
use tidelog::{Message, Store, StoreOptions};

use crate::errors::{invalid, to_py};

/// Opens a store in `path` and appends `count` messages of `content_len` characters, one
/// durable append per message, from `threads` Rust threads sharing the store; returns the
/// seconds the appends took (opening and closing not counted). For benchmarks only.
#[pyfunction]
#[pyo3(signature = (path, count, content_len=200, threads=1))]
pub(crate) fn _bench_append(
    py: Python<'_>,
    path: PathBuf,
    count: usize,
    content_len: usize,
    threads: usize,
) -> PyResult<f64> {
    if threads == 0 {
        return Err(invalid(py, "threads must be at least 1"));
    }
    let result = py.detach(move || -> Result<f64, tidelog::Error> {
        let store = Store::open(&path, StoreOptions::default())?;
        let content = "x".repeat(content_len);
        let started = Instant::now();
        std::thread::scope(|scope| -> Result<(), tidelog::Error> {
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    let (store, content) = (&store, &content);
                    let share = count / threads + usize::from(t < count % threads);
                    scope.spawn(move || -> Result<(), tidelog::Error> {
                        for i in 0..share {
                            store.append(Message {
                                session_id: format!("bench-{t}"),
                                role: if i % 2 == 0 { "user" } else { "assistant" }.into(),
                                content: Some(content.clone()),
                                ..Message::default()
                            })?;
                        }
                        Ok(())
                    })
                })
                .collect();
            for w in workers {
                w.join().map_err(|_| tidelog::Error::Invalid("a benchmark thread panicked".into()))??;
            }
            Ok(())
        })?;
        let secs = started.elapsed().as_secs_f64();
        store.close()?;
        Ok(secs)
    });
    result.map_err(|e| to_py(py, e))
}
