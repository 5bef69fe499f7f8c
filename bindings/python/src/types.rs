//! The value types handed to Python: frozen (immutable, shareable between threads) classes with
//! attributes, `__repr__`, `__eq__` and `to_dict()`.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString};
use tidelog::{Appended, Counters, HistoryItem, ImportReport, Message, MessageState, SearchHit, Session, StoreStatus};

/// `repr()` of a Python string, cut to `max` characters of content.
fn str_repr(py: Python<'_>, s: &str, max: usize) -> PyResult<String> {
    let cut: String = s.chars().take(max).collect();
    let r = PyString::new(py, &cut).repr()?.to_string();
    Ok(if cut.len() < s.len() { format!("{r}…") } else { r })
}

/// A Python-looking optional number.
fn opt_num<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "None".to_string(), |v| v.to_string())
}

fn opt_repr(py: Python<'_>, s: Option<&str>, max: usize) -> PyResult<String> {
    s.map_or(Ok("None".to_string()), |s| str_repr(py, s, max))
}

/// JSON text from a Python value: a `str` is taken as JSON text already (the store checks it),
/// anything else goes through `json.dumps`.
pub(crate) fn json_text(py: Python<'_>, v: Option<Bound<'_, PyAny>>) -> PyResult<Option<String>> {
    let Some(v) = v else { return Ok(None) };
    if v.is_none() {
        return Ok(None);
    }
    if let Ok(s) = v.cast::<PyString>() {
        return Ok(Some(s.to_str()?.to_owned()));
    }
    static DUMPS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let dumps = DUMPS.import(py, "json", "dumps")?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("ensure_ascii", false)?;
    kwargs.set_item("separators", (",", ":"))?;
    Ok(Some(dumps.call((v,), Some(&kwargs))?.extract()?))
}

/// JSON text to a Python value through `json.loads`.
fn json_value<'py>(py: Python<'py>, text: Option<&str>) -> PyResult<Bound<'py, PyAny>> {
    let Some(text) = text else { return Ok(py.None().into_bound(py)) };
    static LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    LOADS.import(py, "json", "loads")?.call1((text,))
}

/// One chat message. Build one to pass to `Store.append_batch`; read ones come back from
/// `Store.messages` and `Store.search`.
#[pyclass(frozen, eq, module = "tidelog", name = "Message")]
#[derive(Debug, Clone, PartialEq)]
pub struct PyMessage {
    pub(crate) inner: Message,
}

#[pymethods]
impl PyMessage {
    #[new]
    #[pyo3(signature = (session_id, role, content=None, *, id=None, tool_call_id=None, tool_name=None,
        tool_calls=None, reasoning=None, timestamp=None, token_count=None, finish_reason=None, source=None,
        extra=None, platform_message_id=None, api_content=None))]
    #[expect(clippy::too_many_arguments, reason = "mirrors the message fields as Python keyword arguments")]
    pub(crate) fn new(
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
    ) -> PyResult<Self> {
        Ok(PyMessage {
            inner: Message {
                id: id.unwrap_or_default(),
                session_id,
                role,
                content,
                tool_call_id,
                tool_name,
                tool_calls: json_text(py, tool_calls)?,
                reasoning,
                timestamp: timestamp.unwrap_or(0.0),
                token_count,
                finish_reason,
                source,
                extra: json_text(py, extra)?,
                platform_message_id,
                api_content,
                ..Message::default()
            },
        })
    }

    /// The integer id: unique in the store, increasing in append order (0 on a message built in
    /// Python; the store assigns it at append).
    #[getter]
    fn num(&self) -> i64 {
        self.inner.num
    }
    /// The platform's own id of this message (Telegram, Slack, ...).
    #[getter]
    fn platform_message_id(&self) -> Option<&str> {
        self.inner.platform_message_id.as_deref()
    }
    /// The exact content sent to the model API, when it differs from `content`.
    #[getter]
    fn api_content(&self) -> Option<&str> {
        self.inner.api_content.as_deref()
    }

    /// The id; empty on a message built in Python without one (the store assigns a UUIDv7).
    #[getter]
    fn id(&self) -> &str {
        &self.inner.id
    }
    #[getter]
    fn session_id(&self) -> &str {
        &self.inner.session_id
    }
    #[getter]
    fn role(&self) -> &str {
        &self.inner.role
    }
    #[getter]
    fn content(&self) -> Option<&str> {
        self.inner.content.as_deref()
    }
    #[getter]
    fn tool_call_id(&self) -> Option<&str> {
        self.inner.tool_call_id.as_deref()
    }
    #[getter]
    fn tool_name(&self) -> Option<&str> {
        self.inner.tool_name.as_deref()
    }
    /// The tool calls as JSON text.
    #[getter]
    fn tool_calls(&self) -> Option<&str> {
        self.inner.tool_calls.as_deref()
    }
    #[getter]
    fn reasoning(&self) -> Option<&str> {
        self.inner.reasoning.as_deref()
    }
    /// Seconds since the Unix epoch; 0.0 on a message built without one (the store uses "now").
    #[getter]
    fn timestamp(&self) -> f64 {
        self.inner.timestamp
    }
    #[getter]
    fn token_count(&self) -> Option<i64> {
        self.inner.token_count
    }
    #[getter]
    fn finish_reason(&self) -> Option<&str> {
        self.inner.finish_reason.as_deref()
    }
    #[getter]
    fn source(&self) -> Option<&str> {
        self.inner.source.as_deref()
    }
    /// Extra fields as JSON text.
    #[getter]
    fn extra(&self) -> Option<&str> {
        self.inner.extra.as_deref()
    }

    /// Every field in a dict; with `parse_json=True`, `tool_calls` and `extra` are decoded.
    #[pyo3(signature = (*, parse_json=false))]
    fn to_dict<'py>(&self, py: Python<'py>, parse_json: bool) -> PyResult<Bound<'py, PyDict>> {
        let m = &self.inner;
        let d = PyDict::new(py);
        d.set_item("id", &m.id)?;
        d.set_item("num", m.num)?;
        d.set_item("session_id", &m.session_id)?;
        d.set_item("role", &m.role)?;
        d.set_item("content", &m.content)?;
        d.set_item("tool_call_id", &m.tool_call_id)?;
        d.set_item("tool_name", &m.tool_name)?;
        if parse_json {
            d.set_item("tool_calls", json_value(py, m.tool_calls.as_deref())?)?;
        } else {
            d.set_item("tool_calls", &m.tool_calls)?;
        }
        d.set_item("reasoning", &m.reasoning)?;
        d.set_item("timestamp", m.timestamp)?;
        d.set_item("token_count", m.token_count)?;
        d.set_item("finish_reason", &m.finish_reason)?;
        d.set_item("source", &m.source)?;
        if parse_json {
            d.set_item("extra", json_value(py, m.extra.as_deref())?)?;
        } else {
            d.set_item("extra", &m.extra)?;
        }
        d.set_item("platform_message_id", &m.platform_message_id)?;
        d.set_item("api_content", &m.api_content)?;
        Ok(d)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let m = &self.inner;
        Ok(format!(
            "Message(id={}, num={}, session_id={}, role={}, content={}, timestamp={})",
            str_repr(py, &m.id, 64)?,
            m.num,
            str_repr(py, &m.session_id, 64)?,
            str_repr(py, &m.role, 32)?,
            opt_repr(py, m.content.as_deref(), 40)?,
            m.timestamp
        ))
    }
}

/// A session (conversation).
#[pyclass(frozen, eq, module = "tidelog", name = "Session")]
#[derive(Debug, Clone, PartialEq)]
pub struct PySession {
    pub(crate) inner: Session,
}

#[pymethods]
impl PySession {
    #[getter]
    fn id(&self) -> &str {
        &self.inner.id
    }
    #[getter]
    fn source(&self) -> Option<&str> {
        self.inner.source.as_deref()
    }
    #[getter]
    fn model(&self) -> Option<&str> {
        self.inner.model.as_deref()
    }
    #[getter]
    fn title(&self) -> Option<&str> {
        self.inner.title.as_deref()
    }
    #[getter]
    fn user_id(&self) -> Option<&str> {
        self.inner.user_id.as_deref()
    }
    #[getter]
    fn chat_id(&self) -> Option<&str> {
        self.inner.chat_id.as_deref()
    }
    #[getter]
    fn parent_session_id(&self) -> Option<&str> {
        self.inner.parent_session_id.as_deref()
    }
    #[getter]
    fn started_at(&self) -> Option<f64> {
        self.inner.started_at
    }
    #[getter]
    fn ended_at(&self) -> Option<f64> {
        self.inner.ended_at
    }
    #[getter]
    fn end_reason(&self) -> Option<&str> {
        self.inner.end_reason.as_deref()
    }
    /// Other fields as JSON text.
    #[getter]
    fn extra(&self) -> Option<&str> {
        self.inner.extra.as_deref()
    }
    /// Summed counters (tokens, API calls, cost), added with `Store.add_counters`.
    #[getter]
    fn counters(&self) -> PyCounters {
        PyCounters::from(self.inner.counters)
    }

    /// Every field in a dict; with `parse_json=True`, `extra` is decoded.
    #[pyo3(signature = (*, parse_json=false))]
    fn to_dict<'py>(&self, py: Python<'py>, parse_json: bool) -> PyResult<Bound<'py, PyDict>> {
        let s = &self.inner;
        let d = PyDict::new(py);
        d.set_item("id", &s.id)?;
        d.set_item("source", &s.source)?;
        d.set_item("model", &s.model)?;
        d.set_item("title", &s.title)?;
        d.set_item("user_id", &s.user_id)?;
        d.set_item("chat_id", &s.chat_id)?;
        d.set_item("parent_session_id", &s.parent_session_id)?;
        d.set_item("started_at", s.started_at)?;
        d.set_item("ended_at", s.ended_at)?;
        d.set_item("end_reason", &s.end_reason)?;
        if parse_json {
            d.set_item("extra", json_value(py, s.extra.as_deref())?)?;
        } else {
            d.set_item("extra", &s.extra)?;
        }
        d.set_item("counters", PyCounters::from(s.counters).to_dict(py)?)?;
        Ok(d)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let s = &self.inner;
        Ok(format!(
            "Session(id={}, source={}, title={}, started_at={}, ended_at={})",
            str_repr(py, &s.id, 64)?,
            opt_repr(py, s.source.as_deref(), 32)?,
            opt_repr(py, s.title.as_deref(), 40)?,
            opt_num(s.started_at),
            opt_num(s.ended_at)
        ))
    }
}

/// One search result.
#[pyclass(frozen, module = "tidelog", name = "SearchHit")]
#[derive(Debug)]
pub struct PySearchHit {
    /// The whole message.
    #[pyo3(get)]
    message: Py<PyMessage>,
    /// About 64 characters around the match, matches wrapped in `[` `]`, cuts marked `…`.
    #[pyo3(get)]
    snippet: String,
    /// Relevance, higher is better; 0 for matches not ranked.
    #[pyo3(get)]
    score: f64,
    /// Part of the live conversation (false once archived or compacted).
    #[pyo3(get)]
    active: bool,
    /// Replaced by a compaction summary (kept and searchable).
    #[pyo3(get)]
    compacted: bool,
}

impl PySearchHit {
    pub(crate) fn new(py: Python<'_>, h: SearchHit) -> PyResult<Self> {
        let MessageState { active, compacted } = h.state;
        Ok(PySearchHit {
            message: Py::new(py, PyMessage { inner: h.message })?,
            snippet: h.snippet,
            score: h.score,
            active,
            compacted,
        })
    }
}

#[pymethods]
impl PySearchHit {
    /// `{"message": {...}, "snippet": ..., "score": ...}`.
    #[pyo3(signature = (*, parse_json=false))]
    fn to_dict<'py>(&self, py: Python<'py>, parse_json: bool) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("message", self.message.get().to_dict(py, parse_json)?)?;
        d.set_item("snippet", &self.snippet)?;
        d.set_item("score", self.score)?;
        d.set_item("active", self.active)?;
        d.set_item("compacted", self.compacted)?;
        Ok(d)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "SearchHit(snippet={}, score={}, message={})",
            str_repr(py, &self.snippet, 80)?,
            self.score,
            self.message.get().__repr__(py)?
        ))
    }
}

/// What `Store.append_batch` did with one message.
#[pyclass(frozen, eq, module = "tidelog", name = "Appended")]
#[derive(Debug, Clone, PartialEq)]
pub struct PyAppended {
    /// The message id (assigned if the message had none).
    #[pyo3(get)]
    pub(crate) id: String,
    /// Its integer id (`Message.num`); `None` if the id was already stored.
    #[pyo3(get)]
    num: Option<i64>,
    /// Its journal position in this process's lane; `None` if the id was already stored and
    /// nothing was written.
    #[pyo3(get)]
    lsn: Option<u64>,
}

impl From<Appended> for PyAppended {
    fn from(a: Appended) -> Self {
        PyAppended { id: a.id, num: a.num, lsn: a.lsn }
    }
}

#[pymethods]
impl PyAppended {
    /// True if a message with this id was already stored and nothing was written.
    #[getter]
    fn duplicate(&self) -> bool {
        self.lsn.is_none()
    }

    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("id", &self.id)?;
        d.set_item("num", self.num)?;
        d.set_item("lsn", self.lsn)?;
        Ok(d)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "Appended(id={}, num={}, lsn={})",
            str_repr(py, &self.id, 64)?,
            opt_num(self.num),
            opt_num(self.lsn)
        ))
    }
}

/// One lane (a journal of one writing process) as `Store.status()` sees it.
#[pyclass(frozen, get_all, module = "tidelog", name = "LaneStatus")]
#[derive(Debug, Clone)]
pub struct PyLaneStatus {
    name: String,
    own: bool,
    last_lsn: u64,
    applied_lsn: Option<u64>,
    error: Option<String>,
}

#[pymethods]
impl PyLaneStatus {
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("name", &self.name)?;
        d.set_item("own", self.own)?;
        d.set_item("last_lsn", self.last_lsn)?;
        d.set_item("applied_lsn", self.applied_lsn)?;
        d.set_item("error", &self.error)?;
        Ok(d)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "LaneStatus(name={}, own={}, last_lsn={}, applied_lsn={}, error={})",
            str_repr(py, &self.name, 64)?,
            if self.own { "True" } else { "False" },
            self.last_lsn,
            opt_num(self.applied_lsn),
            opt_repr(py, self.error.as_deref(), 200)?
        ))
    }
}

/// Health of the SQLite index: `state` is `"unchecked"`, `"healthy"`, `"rebuilding"` (with
/// `reason`, `done`, `total`) or `"failed"` (with `reason`).
#[pyclass(frozen, get_all, module = "tidelog", name = "IndexStatus")]
#[derive(Debug, Clone)]
pub struct PyIndexStatus {
    state: &'static str,
    reason: Option<String>,
    done: Option<u64>,
    total: Option<u64>,
}

#[pymethods]
impl PyIndexStatus {
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("state", self.state)?;
        d.set_item("reason", &self.reason)?;
        d.set_item("done", self.done)?;
        d.set_item("total", self.total)?;
        Ok(d)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "IndexStatus(state={}, reason={}, done={}, total={})",
            str_repr(py, self.state, 16)?,
            opt_repr(py, self.reason.as_deref(), 200)?,
            opt_num(self.done),
            opt_num(self.total)
        ))
    }
}

/// The compactor as this process sees it.
#[pyclass(frozen, get_all, module = "tidelog", name = "CompactorStatus")]
#[derive(Debug, Clone)]
pub struct PyCompactorStatus {
    running_here: bool,
    batches: u64,
    entries_applied: u64,
    retries: u64,
    last_error: Option<String>,
    undecodable: u64,
    last_checkpoint_unix_ms: Option<u64>,
    index_quarantined: u64,
    panics: u64,
    last_panic: Option<String>,
    degraded: Option<String>,
}

#[pymethods]
impl PyCompactorStatus {
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("running_here", self.running_here)?;
        d.set_item("batches", self.batches)?;
        d.set_item("entries_applied", self.entries_applied)?;
        d.set_item("retries", self.retries)?;
        d.set_item("last_error", &self.last_error)?;
        d.set_item("undecodable", self.undecodable)?;
        d.set_item("last_checkpoint_unix_ms", self.last_checkpoint_unix_ms)?;
        d.set_item("index_quarantined", self.index_quarantined)?;
        d.set_item("panics", self.panics)?;
        d.set_item("last_panic", &self.last_panic)?;
        d.set_item("degraded", &self.degraded)?;
        Ok(d)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "CompactorStatus(running_here={}, batches={}, entries_applied={}, retries={}, last_error={}, panics={}, \
             degraded={})",
            if self.running_here { "True" } else { "False" },
            self.batches,
            self.entries_applied,
            self.retries,
            opt_repr(py, self.last_error.as_deref(), 200)?,
            self.panics,
            opt_repr(py, self.degraded.as_deref(), 200)?
        ))
    }
}

/// A snapshot of the store's state. Anything degraded is listed in `problems`.
#[pyclass(frozen, get_all, module = "tidelog", name = "StoreStatus")]
#[derive(Debug, Clone)]
pub struct PyStoreStatus {
    dir: String,
    lane: String,
    lanes: Vec<PyLaneStatus>,
    index: PyIndexStatus,
    compactor: PyCompactorStatus,
    unindexed: u64,
    journal_poisoned: Option<String>,
    problems: Vec<String>,
}

impl From<StoreStatus> for PyStoreStatus {
    fn from(s: StoreStatus) -> Self {
        let index = match s.index {
            tidelog::IndexHealth::Unchecked => {
                PyIndexStatus { state: "unchecked", reason: None, done: None, total: None }
            }
            tidelog::IndexHealth::Healthy => PyIndexStatus { state: "healthy", reason: None, done: None, total: None },
            tidelog::IndexHealth::Rebuilding { reason, done, total } => {
                PyIndexStatus { state: "rebuilding", reason: Some(reason), done: Some(done), total: Some(total) }
            }
            tidelog::IndexHealth::Failed { reason } => {
                PyIndexStatus { state: "failed", reason: Some(reason), done: None, total: None }
            }
        };
        let c = s.compactor;
        PyStoreStatus {
            dir: s.dir.to_string_lossy().into_owned(),
            lane: s.lane,
            lanes: s
                .lanes
                .into_iter()
                .map(|l| PyLaneStatus {
                    name: l.name,
                    own: l.own,
                    last_lsn: l.last_lsn,
                    applied_lsn: l.applied_lsn,
                    error: l.error,
                })
                .collect(),
            index,
            compactor: PyCompactorStatus {
                running_here: c.running_here,
                batches: c.batches,
                entries_applied: c.entries_applied,
                retries: c.retries,
                last_error: c.last_error,
                undecodable: c.undecodable,
                last_checkpoint_unix_ms: c.last_checkpoint_unix_ms,
                index_quarantined: c.index_quarantined,
                panics: c.health.panics,
                last_panic: c.health.last_panic,
                degraded: c.health.degraded,
            },
            unindexed: s.unindexed,
            journal_poisoned: s.journal_poisoned,
            problems: s.problems,
        }
    }
}

#[pymethods]
impl PyStoreStatus {
    /// True if anything is degraded (`problems` is not empty).
    #[getter]
    fn is_degraded(&self) -> bool {
        !self.problems.is_empty()
    }

    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("dir", &self.dir)?;
        d.set_item("lane", &self.lane)?;
        let lanes = self.lanes.iter().map(|l| l.to_dict(py)).collect::<PyResult<Vec<_>>>()?;
        d.set_item("lanes", lanes)?;
        d.set_item("index", self.index.to_dict(py)?)?;
        d.set_item("compactor", self.compactor.to_dict(py)?)?;
        d.set_item("unindexed", self.unindexed)?;
        d.set_item("journal_poisoned", &self.journal_poisoned)?;
        d.set_item("problems", &self.problems)?;
        d.set_item("is_degraded", self.is_degraded())?;
        Ok(d)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let problems = self.problems.iter().map(|p| str_repr(py, p, 200)).collect::<PyResult<Vec<_>>>()?;
        Ok(format!(
            "StoreStatus(dir={}, lane={}, lanes={}, index={}, unindexed={}, problems=[{}])",
            str_repr(py, &self.dir, 200)?,
            str_repr(py, &self.lane, 64)?,
            self.lanes.len(),
            str_repr(py, self.index.state, 16)?,
            self.unindexed,
            problems.join(", ")
        ))
    }
}

/// A session's summed counters (tokens, API calls, cost).
#[pyclass(frozen, eq, get_all, module = "tidelog", name = "Counters")]
#[derive(Debug, Clone, PartialEq)]
pub struct PyCounters {
    input_tokens: i64,
    output_tokens: i64,
    cache_read_tokens: i64,
    cache_write_tokens: i64,
    reasoning_tokens: i64,
    api_call_count: i64,
    estimated_cost_usd: f64,
    actual_cost_usd: f64,
}

impl From<Counters> for PyCounters {
    fn from(c: Counters) -> Self {
        PyCounters {
            input_tokens: c.input_tokens,
            output_tokens: c.output_tokens,
            cache_read_tokens: c.cache_read_tokens,
            cache_write_tokens: c.cache_write_tokens,
            reasoning_tokens: c.reasoning_tokens,
            api_call_count: c.api_call_count,
            estimated_cost_usd: c.estimated_cost_usd,
            actual_cost_usd: c.actual_cost_usd,
        }
    }
}

#[pymethods]
impl PyCounters {
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("input_tokens", self.input_tokens)?;
        d.set_item("output_tokens", self.output_tokens)?;
        d.set_item("cache_read_tokens", self.cache_read_tokens)?;
        d.set_item("cache_write_tokens", self.cache_write_tokens)?;
        d.set_item("reasoning_tokens", self.reasoning_tokens)?;
        d.set_item("api_call_count", self.api_call_count)?;
        d.set_item("estimated_cost_usd", self.estimated_cost_usd)?;
        d.set_item("actual_cost_usd", self.actual_cost_usd)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!(
            "Counters(input_tokens={}, output_tokens={}, cache_read_tokens={}, cache_write_tokens={}, \
             reasoning_tokens={}, api_call_count={}, estimated_cost_usd={}, actual_cost_usd={})",
            self.input_tokens,
            self.output_tokens,
            self.cache_read_tokens,
            self.cache_write_tokens,
            self.reasoning_tokens,
            self.api_call_count,
            self.estimated_cost_usd,
            self.actual_cost_usd
        )
    }
}

/// A message with its state, as `Store.history` returns it.
#[pyclass(frozen, module = "tidelog", name = "HistoryItem")]
#[derive(Debug)]
pub struct PyHistoryItem {
    /// The message.
    #[pyo3(get)]
    message: Py<PyMessage>,
    /// Part of the live conversation (false once archived or compacted).
    #[pyo3(get)]
    active: bool,
    /// Replaced by a compaction summary (kept and searchable).
    #[pyo3(get)]
    compacted: bool,
}

impl PyHistoryItem {
    pub(crate) fn new(py: Python<'_>, h: HistoryItem) -> PyResult<Self> {
        Ok(PyHistoryItem {
            message: Py::new(py, PyMessage { inner: h.message })?,
            active: h.state.active,
            compacted: h.state.compacted,
        })
    }
}

#[pymethods]
impl PyHistoryItem {
    /// `{"message": {...}, "active": ..., "compacted": ...}`.
    #[pyo3(signature = (*, parse_json=false))]
    fn to_dict<'py>(&self, py: Python<'py>, parse_json: bool) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("message", self.message.get().to_dict(py, parse_json)?)?;
        d.set_item("active", self.active)?;
        d.set_item("compacted", self.compacted)?;
        Ok(d)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "HistoryItem(active={}, compacted={}, message={})",
            if self.active { "True" } else { "False" },
            if self.compacted { "True" } else { "False" },
            self.message.get().__repr__(py)?
        ))
    }
}

/// What `Store.import_hermes` read and wrote.
#[pyclass(frozen, get_all, module = "tidelog", name = "ImportReport")]
#[derive(Debug, Clone)]
pub struct PyImportReport {
    /// The database imported.
    source: String,
    /// `schema_version.version` of the database, if it has one.
    schema_version: Option<i64>,
    /// Sessions read.
    sessions: u64,
    /// Messages read.
    messages: u64,
    /// Messages appended (the others were stored already, or refused).
    added_messages: u64,
    /// Session changes written (sessions already stored as read are left alone).
    changed_sessions: u64,
    /// Database rows that could not be read (a damaged file) and were skipped.
    unreadable_rows: u64,
    /// Messages the store refused, each with why.
    refused: Vec<String>,
    /// Everything else worth telling, one sentence each.
    warnings: Vec<String>,
}

impl PyImportReport {
    pub(crate) fn new(r: ImportReport, added_messages: u64, changed_sessions: u64, refused: Vec<String>) -> Self {
        PyImportReport {
            source: r.source.to_string_lossy().into_owned(),
            schema_version: r.schema_version,
            sessions: r.sessions,
            messages: r.messages,
            added_messages,
            changed_sessions,
            unreadable_rows: r.unreadable_rows,
            refused,
            warnings: r.warnings,
        }
    }
}

#[pymethods]
impl PyImportReport {
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("source", &self.source)?;
        d.set_item("schema_version", self.schema_version)?;
        d.set_item("sessions", self.sessions)?;
        d.set_item("messages", self.messages)?;
        d.set_item("added_messages", self.added_messages)?;
        d.set_item("changed_sessions", self.changed_sessions)?;
        d.set_item("unreadable_rows", self.unreadable_rows)?;
        d.set_item("refused", &self.refused)?;
        d.set_item("warnings", &self.warnings)?;
        Ok(d)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "ImportReport(source={}, schema_version={}, sessions={}, messages={}, added_messages={}, unreadable_rows={})",
            str_repr(py, &self.source, 200)?,
            opt_num(self.schema_version),
            self.sessions,
            self.messages,
            self.added_messages,
            self.unreadable_rows
        ))
    }
}
