//! `tidelog.Store`: the Rust `Store` behind a thread-safe Python class.
//!
//! The class holds `Mutex<Option<Arc<Store>>>`. The mutex is held only to clone or take the
//! `Arc` (never across a call into the store, never while running Python code), so any number
//! of Python threads use one store at once; every call that waits on the disk or SQLite runs
//! with the GIL released (`Python::detach`). `close` takes the `Arc` out, so later calls raise
//! `ClosedError`, and waits for calls already running on other threads before closing the Rust
//! store.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use std::collections::{BTreeMap, HashMap};

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyType};
use tidelog::{
    CounterDelta, Durability, Entry, HistoryQuery, Message, MessageUpdate, QuerySyntax, RecoveryMode, Retention,
    RewriteMode, SearchOrder, SearchQuery, Session, SessionFilter, SessionPatch, Store, StoreOptions,
};

use crate::errors::{closed, import_to_py, invalid, to_py};
use crate::types::{
    PyAppended, PyHistoryItem, PyImportReport, PyMessage, PySearchHit, PySession, PyStoreStatus, json_text,
};
use std::sync::atomic::AtomicU32;

/// Messages appended per durable commit by `Store.import_hermes` (as `tidelog import` does).
const IMPORT_BATCH: usize = 500;

/// Converts `Message` objects or dicts of `Message` keyword arguments to Rust messages.
fn messages_from_py(py: Python<'_>, messages: &Bound<'_, PyAny>) -> PyResult<Vec<Message>> {
    let message_type = PyType::new::<PyMessage>(py);
    let mut msgs = Vec::new();
    for (i, item) in messages.try_iter()?.enumerate() {
        let item = item?;
        let built;
        let m = match item.cast::<PyMessage>() {
            Ok(m) => m,
            Err(_) => match item.cast::<PyDict>() {
                Ok(d) => {
                    built = message_type.call((), Some(d)).map_err(|e| {
                        let detail = e.value(py).to_string();
                        if e.is_instance_of::<pyo3::exceptions::PyTypeError>(py) {
                            invalid(py, format!("message {}: {detail}", i + 1))
                        } else {
                            e
                        }
                    })?;
                    built.cast::<PyMessage>()?
                }
                Err(_) => {
                    return Err(invalid(
                        py,
                        format!("message {}: expected a Message or a dict, not {}", i + 1, item.get_type().name()?),
                    ));
                }
            },
        };
        msgs.push(m.get().inner.clone());
    }
    Ok(msgs)
}

/// Whether two sessions hold the same values (`extra` compared as JSON, not as text: a merge
/// re-serializes it).
fn same_session(a: &Session, b: &Session) -> bool {
    let json = |s: &Session| s.extra.as_deref().map(serde_json::from_str::<serde_json::Value>);
    let extra_equal = match (json(a), json(b)) {
        (Some(Ok(x)), Some(Ok(y))) => x == y,
        _ => a.extra == b.extra,
    };
    extra_equal && Session { extra: None, ..a.clone() } == Session { extra: None, ..b.clone() }
}

/// The sink of `Store.import_hermes`: messages in batches, session patches only when they change
/// the session (so a second import of the same file writes nothing).
struct ImportSink<'a> {
    store: &'a Store,
    pending: Vec<Message>,
    sessions: HashMap<String, Session>,
    added: u64,
    changed: u64,
    refused: Vec<String>,
}

type SinkError = Box<dyn std::error::Error + Send + Sync>;

impl ImportSink<'_> {
    fn flush(&mut self) -> Result<(), tidelog::Error> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.pending);
        match self.store.append_batch(batch.clone()) {
            Ok(acks) => self.added += acks.iter().filter(|a| a.lsn.is_some()).count() as u64,
            Err(tidelog::Error::Invalid(_)) => {
                // One message the store refuses (damaged source data): keep the others.
                for m in batch {
                    let id = m.id.clone();
                    match self.store.append(m) {
                        Ok(a) => self.added += u64::from(a.lsn.is_some()),
                        Err(tidelog::Error::Invalid(why)) => self.refused.push(format!("message {id}: {why}")),
                        Err(e) => return Err(e),
                    }
                }
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    fn take(&mut self, e: Entry) -> Result<(), SinkError> {
        match e {
            Entry::Message(m) => {
                self.pending.push(m);
                if self.pending.len() >= IMPORT_BATCH {
                    self.flush()?;
                }
            }
            Entry::Session(p) => {
                self.flush()?;
                let before = self.sessions.get(&p.id).cloned();
                let after = p.apply_to(before.clone());
                if !before.as_ref().is_some_and(|b| same_session(b, &after)) {
                    self.store.upsert_session(p)?;
                    self.changed += 1;
                    self.sessions.insert(after.id.clone(), after);
                }
            }
            other => return Err(format!("the import produced an unexpected entry: {other:?}").into()),
        }
        Ok(())
    }
}

/// Longest wait accepted (`Instant + Duration` must not overflow): about 100 years.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// How long one GIL-released slice of a long wait lasts before checking for Ctrl-C.
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// Seconds from Python to a `Duration`: `None` and `inf` mean [`FOREVER`]; negative or NaN
/// values are refused.
fn seconds(py: Python<'_>, what: &str, secs: Option<f64>) -> PyResult<Duration> {
    match secs {
        None => Ok(FOREVER),
        Some(s) if s.is_nan() || s < 0.0 => {
            Err(invalid(py, format!("{what} must be a number of seconds >= 0, not {s}")))
        }
        Some(s) => Ok(Duration::try_from_secs_f64(s).map_or(FOREVER, |d| d.min(FOREVER))),
    }
}

/// Why `Store.import_hermes` failed.
enum ImportFailure {
    Store(tidelog::Error),
    Import(tidelog::ImportError),
}

/// A message store folder, open for appending (or reading, with `read_only=True`).
///
/// Thread-safe: share one `Store` between threads. Usable as a context manager (closes on exit).
#[pyclass(frozen, module = "tidelog", name = "Store")]
#[derive(Debug)]
pub struct PyStore {
    state: Mutex<Option<Arc<Store>>>,
    path: PathBuf,
}

impl PyStore {
    /// The open store, or `ClosedError`.
    fn store(&self, py: Python<'_>) -> PyResult<Arc<Store>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).clone().ok_or_else(|| closed(py))
    }
}

impl Drop for PyStore {
    /// A store garbage-collected without `close()` closes here (the Rust store's `Drop`, which
    /// may wait up to `close_deadline` for the compactor): with the GIL released, so other
    /// threads keep running. At interpreter shutdown it is simply dropped.
    fn drop(&mut self) {
        if let Some(store) = self.state.get_mut().unwrap_or_else(PoisonError::into_inner).take() {
            let _ = Python::try_attach(move |py| py.detach(move || drop(store)));
        }
    }
}

#[pymethods]
impl PyStore {
    /// Opens (creating if needed) the store in `path`; runs recovery of this process's lane.
    #[new]
    #[pyo3(signature = (path, *, durability="sync", recovery="strict", read_only=false, run_compactor=true,
        close_deadline=1.0, segment_size=None, max_record_size=None, poll_interval=None, retention="off",
        compression=true))]
    #[expect(clippy::too_many_arguments, reason = "mirrors StoreOptions as Python keyword arguments")]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        durability: &str,
        recovery: &str,
        read_only: bool,
        run_compactor: bool,
        close_deadline: f64,
        segment_size: Option<u64>,
        max_record_size: Option<u32>,
        poll_interval: Option<f64>,
        retention: &str,
        compression: bool,
    ) -> PyResult<Self> {
        let mut opts = StoreOptions {
            durability: match durability {
                "sync" => Durability::Sync,
                "buffered" => Durability::Buffered,
                other => {
                    return Err(invalid(py, format!("durability must be \"sync\" or \"buffered\", not {other:?}")));
                }
            },
            recovery: match recovery {
                "strict" => RecoveryMode::Strict,
                "salvage" => RecoveryMode::Salvage,
                other => return Err(invalid(py, format!("recovery must be \"strict\" or \"salvage\", not {other:?}"))),
            },
            retention: match retention {
                "off" => Retention::Off,
                "after_indexed" => Retention::AfterIndexed,
                other => {
                    return Err(invalid(py, format!("retention must be \"off\" or \"after_indexed\", not {other:?}")));
                }
            },
            read_only,
            run_compactor,
            compression,
            close_deadline: seconds(py, "close_deadline", Some(close_deadline))?,
            ..StoreOptions::default()
        };
        if let Some(s) = segment_size {
            opts.segment_size = s;
        }
        if let Some(m) = max_record_size {
            opts.max_record_size = m;
        }
        if let Some(p) = poll_interval {
            opts.poll_interval = seconds(py, "poll_interval", Some(p))?;
        }
        let dir = path.clone();
        let store = py.detach(move || Store::open(dir, opts)).map_err(|e| to_py(py, e))?;
        Ok(PyStore { state: Mutex::new(Some(Arc::new(store))), path })
    }

    /// The store folder.
    #[getter]
    fn path(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    /// This process's lane (its own journal under `lanes/`).
    #[getter]
    fn lane(&self, py: Python<'_>) -> PyResult<String> {
        Ok(self.store(py)?.lane().to_owned())
    }

    /// True once `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).is_none()
    }

    /// Appends one message and returns its id once it is durable.
    #[pyo3(signature = (session_id, role, content=None, *, id=None, tool_call_id=None, tool_name=None,
        tool_calls=None, reasoning=None, timestamp=None, token_count=None, finish_reason=None, source=None,
        extra=None, platform_message_id=None, api_content=None))]
    #[expect(clippy::too_many_arguments, reason = "mirrors the message fields as Python keyword arguments")]
    fn append(
        &self,
        py: Python<'_>,
        session_id: String,
        role: String,
        content: Option<String>,
        id: Option<String>,
        tool_call_id: Option<String>,
        tool_name: Option<String>,
        tool_calls: Option<Bound<'_, PyAny>>,
        reasoning: Option<String>,
        timestamp: Option<f64>,
        token_count: Option<i64>,
        finish_reason: Option<String>,
        source: Option<String>,
        extra: Option<Bound<'_, PyAny>>,
        platform_message_id: Option<String>,
        api_content: Option<String>,
    ) -> PyResult<String> {
        let a = self.append_message(
            py,
            session_id,
            role,
            content,
            id,
            tool_call_id,
            tool_name,
            tool_calls,
            reasoning,
            timestamp,
            token_count,
            finish_reason,
            source,
            extra,
            platform_message_id,
            api_content,
        )?;
        Ok(a.id)
    }

    /// Appends one message like `append`, and returns its `Appended` (id, integer id `num`, LSN).
    #[pyo3(signature = (session_id, role, content=None, *, id=None, tool_call_id=None, tool_name=None,
        tool_calls=None, reasoning=None, timestamp=None, token_count=None, finish_reason=None, source=None,
        extra=None, platform_message_id=None, api_content=None))]
    #[expect(clippy::too_many_arguments, reason = "mirrors the message fields as Python keyword arguments")]
    fn append_message(
        &self,
        py: Python<'_>,
        session_id: String,
        role: String,
        content: Option<String>,
        id: Option<String>,
        tool_call_id: Option<String>,
        tool_name: Option<String>,
        tool_calls: Option<Bound<'_, PyAny>>,
        reasoning: Option<String>,
        timestamp: Option<f64>,
        token_count: Option<i64>,
        finish_reason: Option<String>,
        source: Option<String>,
        extra: Option<Bound<'_, PyAny>>,
        platform_message_id: Option<String>,
        api_content: Option<String>,
    ) -> PyResult<PyAppended> {
        let msg = PyMessage::new(
            py,
            session_id,
            role,
            content,
            id,
            tool_call_id,
            tool_name,
            tool_calls,
            reasoning,
            timestamp,
            token_count,
            finish_reason,
            source,
            extra,
            platform_message_id,
            api_content,
        )?
        .inner;
        let store = self.store(py)?;
        let appended = py.detach(move || store.append(msg)).map_err(|e| to_py(py, e))?;
        Ok(appended.into())
    }

    /// Appends several messages (`Message` objects or dicts of `Message` keyword arguments) with
    /// one durable commit. If any is invalid, nothing is written.
    fn append_batch(&self, py: Python<'_>, messages: Bound<'_, PyAny>) -> PyResult<Vec<PyAppended>> {
        let msgs = messages_from_py(py, &messages)?;
        let store = self.store(py)?;
        let appended = py.detach(move || store.append_batch(msgs)).map_err(|e| to_py(py, e))?;
        Ok(appended.into_iter().map(PyAppended::from).collect())
    }

    /// Creates or updates a session: every given field is set, the others are left as they were
    /// (`extra` is merged like a JSON merge patch). Durable on return; returns the journal LSN.
    #[pyo3(signature = (id, *, source=None, model=None, title=None, user_id=None, chat_id=None,
        parent_session_id=None, started_at=None, ended_at=None, end_reason=None, extra=None, reopen=false,
        clear_title=false, fill_only=false))]
    #[expect(clippy::too_many_arguments, reason = "mirrors the session fields as Python keyword arguments")]
    fn upsert_session(
        &self,
        py: Python<'_>,
        id: String,
        source: Option<String>,
        model: Option<String>,
        title: Option<String>,
        user_id: Option<String>,
        chat_id: Option<String>,
        parent_session_id: Option<String>,
        started_at: Option<f64>,
        ended_at: Option<f64>,
        end_reason: Option<String>,
        extra: Option<Bound<'_, PyAny>>,
        reopen: bool,
        clear_title: bool,
        fill_only: bool,
    ) -> PyResult<u64> {
        let patch = SessionPatch {
            id,
            source,
            model,
            title,
            user_id,
            chat_id,
            parent_session_id,
            started_at,
            ended_at,
            end_reason,
            extra: json_text(py, extra)?,
            reopen,
            clear_title,
            fill_only,
            // Given by the store.
            op: None,
        };
        let store = self.store(py)?;
        py.detach(move || store.upsert_session(patch)).map_err(|e| to_py(py, e))
    }

    /// Ends a session now with a reason. Durable on return; returns the journal LSN.
    fn end_session(&self, py: Python<'_>, id: String, reason: String) -> PyResult<u64> {
        let store = self.store(py)?;
        py.detach(move || store.end_session(&id, &reason)).map_err(|e| to_py(py, e))
    }

    /// One session (with changes not indexed yet), or `None`.
    fn get_session(&self, py: Python<'_>, id: String) -> PyResult<Option<PySession>> {
        let store = self.store(py)?;
        let s = py.detach(move || store.get_session(&id)).map_err(|e| to_py(py, e))?;
        Ok(s.map(|inner| PySession { inner }))
    }

    /// Sessions matching the filters, newest first.
    #[pyo3(signature = (*, source=None, since=None, until=None, title_contains=None, limit=None))]
    fn list_sessions(
        &self,
        py: Python<'_>,
        source: Option<String>,
        since: Option<f64>,
        until: Option<f64>,
        title_contains: Option<String>,
        limit: Option<usize>,
    ) -> PyResult<Vec<PySession>> {
        let filter = SessionFilter { source, since, until, title_contains, limit };
        let store = self.store(py)?;
        let v = py.detach(move || store.list_sessions(&filter)).map_err(|e| to_py(py, e))?;
        Ok(v.into_iter().map(|inner| PySession { inner }).collect())
    }

    /// Every message of a session, oldest first, including those not indexed yet.
    fn messages(&self, py: Python<'_>, session_id: String) -> PyResult<Vec<PyMessage>> {
        let store = self.store(py)?;
        let v = py.detach(move || store.messages(&session_id)).map_err(|e| to_py(py, e))?;
        Ok(v.into_iter().map(|inner| PyMessage { inner }).collect())
    }

    /// Every message of the store (or of one session), at or after `since`, session by session.
    #[pyo3(signature = (session_id=None, *, since=None))]
    fn all_messages(&self, py: Python<'_>, session_id: Option<String>, since: Option<f64>) -> PyResult<Vec<PyMessage>> {
        let store = self.store(py)?;
        let v = py.detach(move || store.all_messages(session_id.as_deref(), since)).map_err(|e| to_py(py, e))?;
        Ok(v.into_iter().map(|inner| PyMessage { inner }).collect())
    }

    /// Full-text search with FTS5's query language on the trigram index (`syntax="fts5"`), or
    /// literal words that must each occur as a case-insensitive substring (`syntax="words"`).
    /// Includes messages not indexed yet.
    #[pyo3(signature = (text, *, session_id=None, role=None, source=None, since=None, until=None, limit=20,
        order="relevance", include_inactive=false, syntax="fts5"))]
    #[expect(clippy::too_many_arguments, reason = "mirrors SearchQuery as Python keyword arguments")]
    fn search(
        &self,
        py: Python<'_>,
        text: String,
        session_id: Option<String>,
        role: Option<String>,
        source: Option<String>,
        since: Option<f64>,
        until: Option<f64>,
        limit: usize,
        order: &str,
        include_inactive: bool,
        syntax: &str,
    ) -> PyResult<Vec<PySearchHit>> {
        let syntax = match syntax {
            "fts5" => QuerySyntax::Fts5,
            "words" => QuerySyntax::Words,
            other => return Err(invalid(py, format!("syntax must be \"fts5\" or \"words\", not {other:?}"))),
        };
        let order = match order {
            "relevance" => SearchOrder::Relevance,
            "newest" => SearchOrder::Newest,
            "oldest" => SearchOrder::Oldest,
            other => {
                return Err(invalid(
                    py,
                    format!("order must be \"relevance\", \"newest\" or \"oldest\", not {other:?}"),
                ));
            }
        };
        let q = SearchQuery { text, syntax, session_id, role, source, since, until, limit, order, include_inactive };
        let store = self.store(py)?;
        let hits = py.detach(move || store.search(&q)).map_err(|e| to_py(py, e))?;
        hits.into_iter().map(|h| PySearchHit::new(py, h)).collect()
    }

    /// Hermes Agent's `search_messages` semantics (release 0.19.0): the query cleaned and routed
    /// as Hermes does (word index with the `unicode61` tokenizer, trigram index for CJK,
    /// substrings for short CJK words), Hermes' filters (`source_filter` / `exclude_sources` on
    /// the session's source, `role_filter`), order (`sort=None`: relevance; `"newest"`,
    /// `"oldest"`) and snippets (`>>>`, `<<<`). Includes messages not indexed yet.
    #[pyo3(signature = (query, *, source_filter=None, exclude_sources=None, role_filter=None, sort=None,
        include_inactive=false, limit=20, offset=0))]
    #[expect(clippy::too_many_arguments, reason = "mirrors Hermes' search_messages as keyword arguments")]
    fn search_hermes(
        &self,
        py: Python<'_>,
        query: String,
        source_filter: Option<Vec<String>>,
        exclude_sources: Option<Vec<String>>,
        role_filter: Option<Vec<String>>,
        sort: Option<String>,
        include_inactive: bool,
        limit: usize,
        offset: usize,
    ) -> PyResult<Vec<PySearchHit>> {
        // Hermes: any other value of `sort` is relevance.
        let newest_first = match sort.as_deref().map(|s| s.trim().to_lowercase()) {
            Some(s) if s == "newest" => Some(true),
            Some(s) if s == "oldest" => Some(false),
            _ => None,
        };
        let s = tidelog::HermesSearch {
            query,
            source_filter,
            exclude_sources,
            role_filter,
            newest_first,
            include_inactive,
            limit,
            offset,
        };
        let store = self.store(py)?;
        let hits = py.detach(move || store.search_hermes(&s)).map_err(|e| to_py(py, e))?;
        hits.into_iter()
            .map(|h| {
                PySearchHit::new(
                    py,
                    tidelog::SearchHit { message: h.message, state: h.state, snippet: h.snippet, score: 0.0 },
                )
            })
            .collect()
    }

    /// A session's messages in append order (integer id), with their states. By default the
    /// active ones; `include_inactive` adds archived ones, `include_compacted` compacted ones;
    /// `after_id` keeps larger integer ids; `limit` keeps the first (with `latest=True` the last)
    /// so many.
    #[pyo3(signature = (session_id, *, include_inactive=false, include_compacted=false, after_id=None, limit=None,
        latest=false))]
    #[expect(clippy::too_many_arguments, reason = "mirrors HistoryQuery as Python keyword arguments")]
    fn history(
        &self,
        py: Python<'_>,
        session_id: String,
        include_inactive: bool,
        include_compacted: bool,
        after_id: Option<i64>,
        limit: Option<usize>,
        latest: bool,
    ) -> PyResult<Vec<PyHistoryItem>> {
        let q = HistoryQuery { session_id, include_inactive, include_compacted, after_id, limit, latest };
        let store = self.store(py)?;
        let v = py.detach(move || store.history(&q)).map_err(|e| to_py(py, e))?;
        v.into_iter().map(|h| PyHistoryItem::new(py, h)).collect()
    }

    /// Changes fields of one message, named by its integer id `num` and its session. Given
    /// fields are set; `extra` is merged (JSON merge patch). Durable on return; returns the LSN.
    /// Raises `NotFoundError` when that session has no such message (never written, in another
    /// session, or deleted).
    #[pyo3(signature = (num, session_id, *, content=None, api_content=None, platform_message_id=None,
        tool_calls=None, finish_reason=None, token_count=None, extra=None))]
    #[expect(clippy::too_many_arguments, reason = "mirrors MessageUpdate as Python keyword arguments")]
    fn update_message(
        &self,
        py: Python<'_>,
        num: i64,
        session_id: String,
        content: Option<String>,
        api_content: Option<String>,
        platform_message_id: Option<String>,
        tool_calls: Option<Bound<'_, PyAny>>,
        finish_reason: Option<String>,
        token_count: Option<i64>,
        extra: Option<Bound<'_, PyAny>>,
    ) -> PyResult<u64> {
        let update = MessageUpdate {
            num,
            session_id,
            content,
            api_content,
            platform_message_id,
            tool_calls: json_text(py, tool_calls)?,
            finish_reason,
            token_count,
            extra: json_text(py, extra)?,
        };
        let store = self.store(py)?;
        py.detach(move || store.update_message(update)).map_err(|e| to_py(py, e))
    }

    /// Rewrites a session's history in one durable entry: every message appended before the call
    /// (with `active_only`, the active ones) is deleted (`mode="delete"`), archived (`"archive"`:
    /// hidden, kept, searchable with `include_inactive`) or compacted (`"compact"`: hidden, still
    /// searchable), then `messages` (`Message` objects or dicts) are appended. Returns what was
    /// appended.
    #[pyo3(signature = (session_id, mode="delete", messages=None, *, active_only=false))]
    fn rewrite(
        &self,
        py: Python<'_>,
        session_id: String,
        mode: &str,
        messages: Option<Bound<'_, PyAny>>,
        active_only: bool,
    ) -> PyResult<Vec<PyAppended>> {
        let mode = match mode {
            "delete" => RewriteMode::Delete,
            "archive" => RewriteMode::Archive,
            "compact" => RewriteMode::Compact,
            other => {
                return Err(invalid(py, format!("mode must be \"delete\", \"archive\" or \"compact\", not {other:?}")));
            }
        };
        let msgs = match messages {
            Some(m) if !m.is_none() => messages_from_py(py, &m)?,
            _ => Vec::new(),
        };
        let store = self.store(py)?;
        let v = py.detach(move || store.rewrite(&session_id, mode, active_only, msgs)).map_err(|e| to_py(py, e))?;
        Ok(v.into_iter().map(PyAppended::from).collect())
    }

    /// Deletes sessions with all their messages (with `with_children`, also every session whose
    /// parent chain leads to one of them). Gone from reads and search on return. Returns the ids
    /// deleted.
    #[pyo3(signature = (ids, *, with_children=false))]
    fn delete_sessions(&self, py: Python<'_>, ids: Vec<String>, with_children: bool) -> PyResult<Vec<String>> {
        let store = self.store(py)?;
        py.detach(move || {
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            store.delete_sessions(&refs, with_children)
        })
        .map_err(|e| to_py(py, e))
    }

    /// Adds to a session's counters (additive: writers in several processes commute). Durable
    /// on return; returns the LSN.
    #[pyo3(signature = (session_id, *, input_tokens=0, output_tokens=0, cache_read_tokens=0, cache_write_tokens=0,
        reasoning_tokens=0, api_call_count=0, estimated_cost_usd=0.0, actual_cost_usd=0.0))]
    #[expect(clippy::too_many_arguments, reason = "mirrors CounterDelta as Python keyword arguments")]
    fn add_counters(
        &self,
        py: Python<'_>,
        session_id: String,
        input_tokens: i64,
        output_tokens: i64,
        cache_read_tokens: i64,
        cache_write_tokens: i64,
        reasoning_tokens: i64,
        api_call_count: i64,
        estimated_cost_usd: f64,
        actual_cost_usd: f64,
    ) -> PyResult<u64> {
        let delta = CounterDelta {
            session_id,
            input_tokens,
            output_tokens,
            cache_read_tokens,
            cache_write_tokens,
            reasoning_tokens,
            api_call_count,
            estimated_cost_usd,
            actual_cost_usd,
            // Given by the store.
            op: None,
        };
        let store = self.store(py)?;
        py.detach(move || store.add_counters(delta)).map_err(|e| to_py(py, e))
    }

    /// Sets (or with `None` clears) a session's title. Titles are unique: one another session
    /// has raises `TitleTakenError`. Returns the LSN.
    fn set_title(&self, py: Python<'_>, session_id: String, title: Option<String>) -> PyResult<u64> {
        let store = self.store(py)?;
        py.detach(move || store.set_title(&session_id, title.as_deref())).map_err(|e| to_py(py, e))
    }

    /// The store-wide write lock as a context manager: ``with store.exclusive(): ...`` runs
    /// the block while no conditional write of any process of the store runs (unique titles,
    /// client-id de-duplication, other processes' ``exclusive`` blocks), so it can read, decide
    /// and write atomically (import once, claims). Reentrant in a thread; plain appends of
    /// other processes are not blocked.
    fn exclusive(&self, py: Python<'_>) -> PyResult<PyExclusive> {
        Ok(PyExclusive { store: self.store(py)?, depth: AtomicU32::new(0) })
    }

    /// Reopens an ended session (clears its end time and reason). Returns the LSN.
    fn reopen_session(&self, py: Python<'_>, id: String) -> PyResult<u64> {
        let store = self.store(py)?;
        py.detach(move || store.reopen_session(&id)).map_err(|e| to_py(py, e))
    }

    /// Sets (or with `None` removes) a small metadata value of the store. Returns the LSN.
    fn set_meta(&self, py: Python<'_>, key: String, value: Option<String>) -> PyResult<u64> {
        let store = self.store(py)?;
        py.detach(move || store.set_meta(&key, value.as_deref())).map_err(|e| to_py(py, e))
    }

    /// A metadata value set with `set_meta`, or `None`.
    fn get_meta(&self, py: Python<'_>, key: String) -> PyResult<Option<String>> {
        let store = self.store(py)?;
        py.detach(move || store.meta(&key)).map_err(|e| to_py(py, e))
    }

    /// Every metadata key and value.
    fn all_meta(&self, py: Python<'_>) -> PyResult<BTreeMap<String, String>> {
        let store = self.store(py)?;
        py.detach(move || store.all_meta()).map_err(|e| to_py(py, e))
    }

    /// The number of active messages of every session that has any.
    fn message_counts(&self, py: Python<'_>) -> PyResult<BTreeMap<String, u64>> {
        let store = self.store(py)?;
        py.detach(move || store.message_counts()).map_err(|e| to_py(py, e))
    }

    /// Imports a Hermes Agent `state.db` (any schema version) into this store: its sessions,
    /// then its messages in batches of 500, as `tidelog import hermes` does. The file is opened
    /// read-only and never changed. Message ids are deterministic, so importing again adds
    /// nothing; a session patch is written only when it changes the stored session.
    fn import_hermes(&self, py: Python<'_>, path: PathBuf) -> PyResult<PyImportReport> {
        let store = self.store(py)?;
        let result = py.detach(move || {
            let known = store.list_sessions(&SessionFilter::default()).map_err(ImportFailure::Store)?;
            let mut sink = ImportSink {
                store: &store,
                pending: Vec::new(),
                sessions: known.into_iter().map(|s| (s.id.clone(), s)).collect(),
                added: 0,
                changed: 0,
                refused: Vec::new(),
            };
            let report = {
                let mut f = |e: Entry| sink.take(e);
                tidelog::import_hermes_db(&path, &mut f).map_err(ImportFailure::Import)?
            };
            sink.flush().map_err(ImportFailure::Store)?;
            Ok(PyImportReport::new(report, sink.added, sink.changed, sink.refused))
        });
        result.map_err(|e| match e {
            ImportFailure::Store(e) => to_py(py, e),
            ImportFailure::Import(e) => import_to_py(py, e),
        })
    }

    /// The text of message `rid` that the index keeps only in the journal, at the place its row
    /// gives (the SQL function `tidelog_body` of the index's views, for `sqlite3` connections).
    fn _text_at(
        &self,
        py: Python<'_>,
        lane: u64,
        segment: u64,
        offset: u64,
        lsn: u64,
        rid: i64,
    ) -> PyResult<Option<String>> {
        let store = self.store(py)?;
        py.detach(move || store.text_at(lane, segment, offset, lsn, rid)).map_err(|e| to_py(py, e))
    }

    /// A snapshot of the store's state.
    fn status(&self, py: Python<'_>) -> PyResult<PyStoreStatus> {
        let store = self.store(py)?;
        Ok(py.detach(move || store.status()).into())
    }

    /// Waits until everything appended so far (in every lane) is indexed, or `timeout` seconds
    /// pass; returns whether it caught up. Ctrl-C interrupts it.
    fn wait_indexed(&self, py: Python<'_>, timeout: f64) -> PyResult<bool> {
        let deadline = Instant::now() + seconds(py, "timeout", Some(timeout))?;
        loop {
            let slice = deadline.saturating_duration_since(Instant::now()).min(SIGNAL_CHECK);
            let store = self.store(py)?;
            if py.detach(move || store.wait_indexed(slice)) {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            py.check_signals()?;
        }
    }

    /// Closes the store: later calls raise `ClosedError`; closing again does nothing.
    ///
    /// Waits up to `timeout` seconds (default: no limit) for calls still running on other
    /// threads, then stops the compactor (within `close_deadline`) and syncs the lane. Returns
    /// `True` when closed, `False` if calls were still running at the timeout (the store then
    /// closes when the last of them returns; nothing acknowledged is lost either way).
    #[pyo3(signature = (timeout=None))]
    fn close(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let wait = seconds(py, "timeout", timeout)?;
        let Some(mut store) = self.state.lock().unwrap_or_else(PoisonError::into_inner).take() else {
            return Ok(true);
        };
        let deadline = Instant::now() + wait;
        py.detach(move || {
            loop {
                match Arc::try_unwrap(store) {
                    Ok(s) => return s.close().map(|_| true),
                    Err(shared) if Instant::now() >= deadline => {
                        drop(shared);
                        return Ok(false);
                    }
                    Err(shared) => {
                        store = shared;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
        })
        .map_err(|e| to_py(py, e))
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.close(py, None)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        let state = if self.closed() { "closed" } else { "open" };
        format!("<tidelog.Store {} ({state})>", self.path.to_string_lossy())
    }
}

/// What ``Store.exclusive()`` returns: holds the store-wide write lock from ``__enter__`` to
/// ``__exit__`` (in the thread that entered it).
#[pyclass(module = "tidelog", name = "Exclusive")]
pub struct PyExclusive {
    store: Arc<Store>,
    depth: AtomicU32,
}

#[pymethods]
impl PyExclusive {
    fn __enter__(slf: Py<Self>, py: Python<'_>) -> PyResult<Py<Self>> {
        let store = Arc::clone(&slf.borrow(py).store);
        py.detach(move || store.lock_writes()).map_err(|e| to_py(py, e))?;
        slf.borrow(py).depth.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(slf)
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, _exc: Bound<'_, pyo3::types::PyTuple>) -> bool {
        if self.depth.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            self.depth.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            self.store.unlock_writes();
        }
        false
    }

    fn __repr__(&self) -> String {
        format!("<tidelog.Exclusive {}>", self.store.dir().display())
    }
}

impl std::fmt::Debug for PyExclusive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PyExclusive").field("dir", &self.store.dir()).finish()
    }
}
