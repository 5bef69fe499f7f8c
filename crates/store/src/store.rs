//! The store: lanes, appends, reads that never miss history, status, close.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use logbook_journal::{Journal, Lsn};
use parking_lot::Mutex;
use tracing::{error, info, warn};

use crate::codec;
use crate::error::{Error, Result};
use crate::index::{self, Index, IndexError, SearchHit, SearchOrder, SearchQuery, SessionFilter};
use crate::model::{Entry, Message, Session, SessionPatch};
use crate::options::StoreOptions;

/// Folder of the lanes (one journal per writing process).
pub const LANES_DIR: &str = "lanes";
/// The SQLite index file.
pub const INDEX_FILE: &str = "index.db";
/// The lock held by the process running the compactor.
pub const COMPACTOR_LOCK: &str = "compactor.lock";
/// Where damaged index files are moved.
pub const QUARANTINE_DIR: &str = "quarantine";

/// Largest id, session id or role accepted, in bytes.
const MAX_KEY_LEN: usize = 1024;

/// What [`Store::append`] did with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The message id (assigned if the message had none).
    pub id: String,
    /// Its journal position in this process's lane; `None` if it was a duplicate of a message
    /// already stored (same client-supplied id) and nothing was written.
    pub lsn: Option<Lsn>,
}

/// Health of the SQLite index as this process sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum IndexHealth {
    /// Not checked yet (the compactor checks it when it starts).
    Unchecked,
    /// Checked and in use.
    Healthy,
    /// The index was damaged, moved to the quarantine, and is being rebuilt from the journal.
    /// Reads stay complete meanwhile (they read the journal for what is not indexed yet).
    Rebuilding {
        /// Why it was rebuilt.
        reason: String,
        /// Entries applied so far.
        done: u64,
        /// Entries to apply.
        total: u64,
    },
    /// The index cannot be used; reads are served from the journal alone.
    Failed {
        /// Why.
        reason: String,
    },
}

/// One lane as [`Store::status`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneStatus {
    /// Lane name (folder under `lanes/`).
    pub name: String,
    /// This process's lane.
    pub own: bool,
    /// Highest readable LSN.
    pub last_lsn: Lsn,
    /// Highest LSN applied to the index (0 if none, `None` if the index could not be read).
    pub applied_lsn: Option<Lsn>,
    /// Why the lane cannot be read, if it cannot.
    pub error: Option<String>,
}

/// The compactor as this process sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactorStatus {
    /// This process holds the compactor role.
    pub running_here: bool,
    /// Batches committed by this process.
    pub batches: u64,
    /// Entries applied by this process.
    pub entries_applied: u64,
    /// Failed batch attempts (retried with back-off).
    pub retries: u64,
    /// The last error, if the last attempt failed.
    pub last_error: Option<String>,
    /// Journal records that did not decode and were skipped (each logged at error level).
    pub undecodable: u64,
    /// When the last `wal_checkpoint(TRUNCATE)` ran, ms since the Unix epoch.
    pub last_checkpoint_unix_ms: Option<u64>,
    /// Index files moved to the quarantine by this process.
    pub index_quarantined: u64,
}

/// A snapshot of the store's state. Anything degraded is listed in `problems`.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreStatus {
    /// The store folder.
    pub dir: PathBuf,
    /// This process's lane.
    pub lane: String,
    /// Every lane.
    pub lanes: Vec<LaneStatus>,
    /// The index.
    pub index: IndexHealth,
    /// The compactor.
    pub compactor: CompactorStatus,
    /// Journal entries not yet applied to the index (the compactor's lag).
    pub unindexed: u64,
    /// Why this process's lane refuses appends, if it does.
    pub journal_poisoned: Option<String>,
    /// Everything that is not as it should be, in words. Empty when healthy.
    pub problems: Vec<String>,
}

impl StoreStatus {
    /// True if anything is degraded.
    pub fn is_degraded(&self) -> bool {
        !self.problems.is_empty()
    }
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub index: IndexHealth,
    pub compactor: CompactorStatus,
    pub read_problem: Option<String>,
    pub lane_errors: BTreeMap<String, String>,
}

#[derive(Debug)]
struct ReadConn {
    index: Index,
    ino: u64,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub dir: PathBuf,
    pub opts: StoreOptions,
    pub lane_name: String,
    pub lane: Journal,
    pub stop: AtomicBool,
    pub shared: Mutex<Shared>,
    reader: Mutex<Option<ReadConn>>,
    others: Mutex<BTreeMap<String, Journal>>,
    pending: Mutex<PendingIds>,
}

/// Ids of messages in this process's lane that the index may not have yet (for idempotent
/// appends), filled incrementally from the lane.
#[derive(Debug, Default)]
struct PendingIds {
    scanned: Lsn,
    ids: std::collections::HashMap<String, Lsn>,
}

/// The message store a gateway embeds. See the crate documentation for an example.
#[derive(Debug)]
pub struct Store {
    inner: Arc<Inner>,
    compactor: Mutex<Option<JoinHandle<()>>>,
}

pub(crate) fn now_secs() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_millis()).unwrap_or(0)).unwrap_or(0)
}

/// Creates a folder (0700) and its parents, syncing the parent of each new one.
pub(crate) fn create_private_dir(path: &Path) -> Result<()> {
    use logbook_journal::storage::{OsStorage, Storage};
    OsStorage.create_dir_all(path).map_err(|e| Error::io("create folder", path, e))
}

/// Lane folder names under `dir/lanes`, sorted.
pub(crate) fn lane_names(dir: &Path) -> Result<Vec<String>> {
    let lanes = dir.join(LANES_DIR);
    if !lanes.exists() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for e in fs::read_dir(&lanes).map_err(|e| Error::io("list", &lanes, e))? {
        let e = e.map_err(|e| Error::io("list", &lanes, e))?;
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false)
            && let Ok(n) = e.file_name().into_string()
            && n.starts_with("lane-")
        {
            out.push(n);
        }
    }
    out.sort();
    Ok(out)
}

fn validate(m: &Message) -> Result<()> {
    let key = |what: &str, v: &str| -> Result<()> {
        if v.is_empty() {
            return Err(Error::Invalid(format!("{what} is empty")));
        }
        if v.len() > MAX_KEY_LEN {
            return Err(Error::Invalid(format!("{what} is longer than {MAX_KEY_LEN} bytes")));
        }
        Ok(())
    };
    key("session_id", &m.session_id)?;
    key("role", &m.role)?;
    if !m.id.is_empty() {
        key("id", &m.id)?;
    }
    if !m.timestamp.is_finite() {
        return Err(Error::Invalid("timestamp is not a finite number".into()));
    }
    for (what, v) in [("tool_calls", &m.tool_calls), ("extra", &m.extra)] {
        if let Some(text) = v {
            serde_json::from_str::<serde::de::IgnoredAny>(text)
                .map_err(|e| Error::Invalid(format!("{what} is not valid JSON: {e}")))?;
        }
    }
    Ok(())
}

impl Store {
    /// Opens (creating if needed) the store in `dir`: claims a lane (a journal of its own) for
    /// this process, running its recovery, and starts the background compactor.
    ///
    /// Several processes may open the same folder at once; each appends to its own lane and
    /// none waits for another's sync. Exactly one runs the compactor at a time.
    pub fn open(dir: impl AsRef<Path>, opts: StoreOptions) -> Result<Store> {
        let dir = dir.as_ref().to_path_buf();
        if opts.read_only {
            return Self::open_read_only(dir, opts);
        }
        create_private_dir(&dir)?;
        create_private_dir(&dir.join(LANES_DIR))?;
        let jopts = opts.journal_options();
        let mut lane_errors = BTreeMap::new();
        let mut claimed = None;
        let existing = lane_names(&dir)?;
        for name in &existing {
            match Journal::open(dir.join(LANES_DIR).join(name), jopts.clone()) {
                Ok(j) => {
                    claimed = Some((name.clone(), j));
                    break;
                }
                Err(logbook_journal::Error::Locked { .. }) => continue,
                Err(e) if e.is_corruption() => {
                    error!(lane = %name, "lane cannot be opened and is left for `logbook repair`: {e}");
                    lane_errors.insert(name.clone(), e.to_string());
                }
                Err(e) => return Err(e.into()),
            }
        }
        let (lane_name, lane) = match claimed {
            Some(c) => c,
            None => {
                let mut n =
                    existing.iter().filter_map(|s| s.strip_prefix("lane-")?.parse::<u64>().ok()).max().unwrap_or(0);
                loop {
                    n += 1;
                    let name = format!("lane-{n:04}");
                    match Journal::open(dir.join(LANES_DIR).join(&name), jopts.clone()) {
                        Ok(j) => break (name, j),
                        Err(logbook_journal::Error::Locked { .. }) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        };
        Self::start(dir, opts, lane_name, lane, lane_errors)
    }

    /// Read-only open: a read-only handle on the first readable lane stands for "this process's
    /// lane" (nothing is appended through it); no compactor.
    fn open_read_only(dir: PathBuf, opts: StoreOptions) -> Result<Store> {
        let mut lane_errors = BTreeMap::new();
        let mut first = None;
        for name in lane_names(&dir)? {
            match Journal::open_read_only(dir.join(LANES_DIR).join(&name), opts.journal_options()) {
                Ok(j) => {
                    first = Some((name, j));
                    break;
                }
                Err(e) => {
                    error!(lane = %name, "lane cannot be read: {e}");
                    lane_errors.insert(name, e.to_string());
                }
            }
        }
        let Some((lane_name, lane)) = first else { return Err(Error::NotAStore { path: dir }) };
        Self::start(dir, opts, lane_name, lane, lane_errors)
    }

    fn start(
        dir: PathBuf,
        opts: StoreOptions,
        lane_name: String,
        lane: Journal,
        lane_errors: BTreeMap<String, String>,
    ) -> Result<Store> {
        let rep = lane.recovery_report();
        if !rep.is_clean() {
            warn!(lane = %lane_name, problems = ?rep.problems, "lane recovered with repairs");
        }
        if !opts.read_only {
            check_index_not_ahead(&dir, &lane_name, lane.last_lsn(), &opts.index)?;
        }
        info!(dir = %dir.display(), lane = %lane_name, last_lsn = lane.last_lsn(), "store opened");
        let inner = Arc::new(Inner {
            dir,
            opts,
            lane_name,
            lane,
            stop: AtomicBool::new(false),
            shared: Mutex::new(Shared {
                index: IndexHealth::Unchecked,
                compactor: CompactorStatus::default(),
                read_problem: None,
                lane_errors,
            }),
            reader: Mutex::new(None),
            others: Mutex::new(BTreeMap::new()),
            pending: Mutex::new(PendingIds::default()),
        });
        let handle = if inner.opts.run_compactor && !inner.opts.read_only {
            let c = Arc::clone(&inner);
            Some(
                std::thread::Builder::new()
                    .name("logbook-compactor".into())
                    .spawn(move || crate::compactor::run(c))
                    .map_err(|e| Error::io("spawn compactor thread", PathBuf::new(), e))?,
            )
        } else {
            None
        };
        Ok(Store { inner, compactor: Mutex::new(handle) })
    }

    fn writable(&self) -> Result<()> {
        if self.inner.opts.read_only {
            return Err(Error::ReadOnly { path: self.inner.dir.clone() });
        }
        Ok(())
    }

    /// The store folder.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// This process's lane name.
    pub fn lane(&self) -> &str {
        &self.inner.lane_name
    }

    /// The journal of this process's lane (for tools and tests).
    pub fn journal(&self) -> &Journal {
        &self.inner.lane
    }

    /// What recovery found when this process's lane was opened.
    pub fn recovery_report(&self) -> &logbook_journal::RecoveryReport {
        self.inner.lane.recovery_report()
    }

    /// Appends one message; returns once it is durable (whatever the compactor is doing).
    /// An empty `id` gets a new UUIDv7; a zero `timestamp` gets the current time. A message
    /// whose client-supplied `id` is already stored is not written again.
    pub fn append(&self, msg: Message) -> Result<Appended> {
        let mut v = self.append_batch(vec![msg])?;
        v.pop().ok_or(Error::Closed)
    }

    /// Appends several messages with one durable commit. If any message is invalid, nothing is
    /// written.
    pub fn append_batch(&self, msgs: Vec<Message>) -> Result<Vec<Appended>> {
        self.writable()?;
        let mut out = Vec::with_capacity(msgs.len());
        let mut payloads = Vec::with_capacity(msgs.len());
        let mut seen = HashSet::new();
        for (i, mut m) in msgs.into_iter().enumerate() {
            validate(&m).map_err(|e| match e {
                Error::Invalid(s) if i > 0 => Error::Invalid(format!("message {}: {s}", i + 1)),
                e => e,
            })?;
            let client_id = !m.id.is_empty();
            if !client_id {
                m.id = uuid::Uuid::now_v7().to_string();
            }
            if m.timestamp == 0.0 {
                m.timestamp = now_secs();
            }
            if client_id && (!seen.insert(m.id.clone()) || self.is_stored(&m.id)) {
                out.push(Appended { id: m.id, lsn: None });
                continue;
            }
            out.push(Appended { id: m.id.clone(), lsn: Some(0) });
            payloads.push(codec::encode(&Entry::Message(m)).map_err(|e| Error::Invalid(e.to_string()))?);
        }
        let refs: Vec<&[u8]> = payloads.iter().map(|p| p.as_slice()).collect();
        let first = self.inner.lane.append_batch(&refs)?;
        let mut next = first;
        for a in out.iter_mut() {
            if a.lsn.is_some() {
                a.lsn = Some(next);
                next += 1;
            }
        }
        Ok(out)
    }

    /// Whether a message id is already stored: indexed, or appended to this process's lane and
    /// not indexed yet. (Another process's unindexed copy is not looked at; reads and the index
    /// deduplicate by id, so a race between two processes still stores the message once.)
    fn is_stored(&self, id: &str) -> bool {
        let found = self.with_reader(|ix| Ok((ix.contains_message(id)?, ix.applied_positions()?)));
        let applied = match found {
            Some((true, _)) => return true,
            Some((false, positions)) => positions.get(&self.inner.lane_name).copied().unwrap_or(0),
            None => 0,
        };
        let mut pending = self.inner.pending.lock();
        let from = pending.scanned.max(applied) + 1;
        for r in self.inner.lane.iter_from(from).flatten() {
            if let Ok(Entry::Message(m)) = codec::decode(&r.payload) {
                pending.ids.insert(m.id, r.lsn);
            }
            pending.scanned = r.lsn;
        }
        if pending.ids.len() > 4096 {
            pending.ids.retain(|_, lsn| *lsn > applied);
        }
        pending.ids.get(id).is_some_and(|lsn| *lsn > applied || applied == 0)
    }

    /// Creates or updates a session: every `Some` field of the patch is set. Durable on return.
    pub fn upsert_session(&self, patch: SessionPatch) -> Result<Lsn> {
        self.writable()?;
        if patch.id.is_empty() || patch.id.len() > MAX_KEY_LEN {
            return Err(Error::Invalid("session id is empty or too long".into()));
        }
        if let Some(x) = &patch.extra {
            serde_json::from_str::<serde::de::IgnoredAny>(x)
                .map_err(|e| Error::Invalid(format!("extra is not valid JSON: {e}")))?;
        }
        let payload = codec::encode(&Entry::Session(patch)).map_err(|e| Error::Invalid(e.to_string()))?;
        Ok(self.inner.lane.append(&payload)?)
    }

    /// Ends a session now with a reason.
    pub fn end_session(&self, id: &str, reason: &str) -> Result<Lsn> {
        self.upsert_session(SessionPatch {
            id: id.to_string(),
            ended_at: Some(now_secs()),
            end_reason: Some(reason.to_string()),
            ..SessionPatch::default()
        })
    }

    /// Runs `f` on a read connection to the index; `None` (and a problem in the status, logged
    /// at error level) if the index cannot be used. Reopens the connection if the index file
    /// was replaced (rebuilt).
    fn with_reader<T>(&self, f: impl FnOnce(&Index) -> Result<T, IndexError>) -> Option<T> {
        let path = self.inner.dir.join(INDEX_FILE);
        let ino = fs::metadata(&path).ok().map(|m| m.ino())?;
        let mut guard = self.inner.reader.lock();
        if guard.as_ref().map(|r| r.ino) != Some(ino) {
            *guard = None;
            match Index::open_read_only(&path, &self.inner.opts.index) {
                Ok(index) => *guard = Some(ReadConn { index, ino }),
                // Being created by the compactor this very moment: the journal answers alone.
                Err(IndexError::NotInitialized { .. }) => return None,
                Err(e) => {
                    self.read_problem(format!("index {} cannot be opened for reading: {e}", path.display()));
                    return None;
                }
            }
        }
        let conn = guard.as_ref()?;
        match f(&conn.index) {
            Ok(v) => {
                self.inner.shared.lock().read_problem = None;
                Some(v)
            }
            Err(e) => {
                if e.is_corruption() {
                    *guard = None;
                }
                self.read_problem(format!("index read failed, answering from the journal alone: {e}"));
                None
            }
        }
    }

    fn read_problem(&self, p: String) {
        let mut sh = self.inner.shared.lock();
        if sh.read_problem.as_deref() != Some(p.as_str()) {
            error!("{p}");
        }
        sh.read_problem = Some(p);
    }

    /// Calls `f` with every journal entry not yet applied to the index (above `positions`),
    /// lane by lane.
    fn for_each_unindexed(&self, positions: &BTreeMap<String, u64>, mut f: impl FnMut(&str, Lsn, Entry)) -> Result<()> {
        let names = lane_names(&self.inner.dir)?;
        for name in names {
            let from = positions.get(&name).copied().unwrap_or(0) + 1;
            let Some(j) = self.inner.lane_journal(&name) else { continue };
            for r in j.iter_from(from) {
                match r {
                    Ok(rec) => match codec::decode(&rec.payload) {
                        Ok(e) => f(&name, rec.lsn, e),
                        Err(e) => warn!(lane = %name, lsn = rec.lsn, "skipping undecodable record: {e}"),
                    },
                    Err(e) => {
                        error!(lane = %name, "reading lane failed: {e}");
                        self.inner.shared.lock().lane_errors.insert(name.clone(), e.to_string());
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// Every message of a session, in order, including those not indexed yet.
    pub fn messages(&self, session_id: &str) -> Result<Vec<Message>> {
        let (positions, mut msgs) =
            self.with_reader(|ix| Ok((ix.applied_positions()?, ix.messages(session_id)?))).unwrap_or_default();
        let mut seen: HashSet<String> = msgs.iter().map(|m| m.id.clone()).collect();
        self.for_each_unindexed(&positions, |_, _, e| {
            if let Entry::Message(m) = e
                && m.session_id == session_id
                && seen.insert(m.id.clone())
            {
                msgs.push(m);
            }
        })?;
        msgs.sort_by(|a, b| a.timestamp.total_cmp(&b.timestamp));
        Ok(msgs)
    }

    /// Every message of the store (optionally of one session, at or after a time), in order.
    /// Reads the index and the journal; for exports.
    pub fn all_messages(&self, session_id: Option<&str>, since: Option<f64>) -> Result<Vec<Message>> {
        let sessions: Vec<String> = match session_id {
            Some(s) => vec![s.to_string()],
            None => self.list_sessions(&SessionFilter::default())?.into_iter().map(|s| s.id).collect(),
        };
        let mut out = Vec::new();
        for s in sessions {
            out.extend(self.messages(&s)?.into_iter().filter(|m| since.is_none_or(|t| m.timestamp >= t)));
        }
        Ok(out)
    }

    /// Searches message text and tool names (see [`SearchQuery`]); includes messages not
    /// indexed yet. Hits from the not-yet-indexed part come first when ordering by relevance
    /// (they are the newest and match the query as a literal substring).
    pub fn search(&self, q: &SearchQuery) -> Result<Vec<SearchHit>> {
        if q.text.trim().is_empty() {
            return Err(Error::Invalid("empty search query".into()));
        }
        let (positions, hits) = self.with_reader(|ix| Ok((ix.applied_positions()?, ix.search(q)?))).unwrap_or_default();
        let mut tail = Vec::new();
        let opts = self.inner.opts.index.clone();
        let mut seen: HashSet<String> = hits.iter().map(|h| h.message.id.clone()).collect();
        self.for_each_unindexed(&positions, |_, _, e| {
            let Entry::Message(m) = e else { return };
            if q.session_id.as_ref().is_some_and(|s| *s != m.session_id)
                || q.role.as_ref().is_some_and(|r| *r != m.role)
                || q.source.as_ref().is_some_and(|s| Some(s) != m.source.as_ref())
                || q.since.is_some_and(|t| m.timestamp < t)
                || q.until.is_some_and(|t| m.timestamp > t)
            {
                return;
            }
            let text = index::indexed_text(&m, &opts);
            let snippet = text
                .as_deref()
                .and_then(|t| index::match_snippet(t, &q.text))
                .or_else(|| m.tool_name.as_deref().and_then(|t| index::match_snippet(t, &q.text)));
            if let Some(snippet) = snippet
                && seen.insert(m.id.clone())
            {
                tail.push(SearchHit { message: m, snippet, score: 0.0 });
            }
        })?;
        let mut all = match q.order {
            SearchOrder::Relevance => {
                tail.reverse();
                tail.extend(hits);
                tail
            }
            SearchOrder::Newest | SearchOrder::Oldest => {
                let mut v = hits;
                v.extend(tail);
                v.sort_by(|a, b| a.message.timestamp.total_cmp(&b.message.timestamp));
                if q.order == SearchOrder::Newest {
                    v.reverse();
                }
                v
            }
        };
        all.truncate(q.limit);
        Ok(all)
    }

    /// One session, with changes not indexed yet applied.
    pub fn get_session(&self, id: &str) -> Result<Option<Session>> {
        let (positions, mut s) =
            self.with_reader(|ix| Ok((ix.applied_positions()?, ix.get_session(id)?))).unwrap_or_default();
        self.for_each_unindexed(&positions, |_, _, e| match e {
            Entry::Session(p) if p.id == id => s = Some(p.apply_to(s.take())),
            Entry::Message(m) if m.session_id == id && s.is_none() => {
                s = Some(Session {
                    id: id.to_string(),
                    source: m.source.clone(),
                    started_at: Some(m.timestamp),
                    ..Session::default()
                })
            }
            _ => {}
        })?;
        Ok(s)
    }

    /// Sessions matching a filter, newest first, including changes not indexed yet.
    pub fn list_sessions(&self, filter: &SessionFilter) -> Result<Vec<Session>> {
        let unlimited = SessionFilter { limit: None, ..filter.clone() };
        let everything = SessionFilter::default();
        let (positions, listed, all) = self
            .with_reader(|ix| {
                Ok((ix.applied_positions()?, ix.list_sessions(&unlimited)?, ix.list_sessions(&everything)?))
            })
            .unwrap_or_default();
        let mut by_id: BTreeMap<String, Session> = listed.into_iter().map(|s| (s.id.clone(), s)).collect();
        let mut known: BTreeMap<String, Session> = all.into_iter().map(|s| (s.id.clone(), s)).collect();
        let mut touched = HashSet::new();
        self.for_each_unindexed(&positions, |_, _, e| match e {
            Entry::Session(p) => {
                let s = p.apply_to(known.remove(&p.id).or_else(|| by_id.remove(&p.id)));
                touched.insert(s.id.clone());
                known.insert(s.id.clone(), s);
            }
            Entry::Message(m) => {
                if !known.contains_key(&m.session_id) && !by_id.contains_key(&m.session_id) {
                    touched.insert(m.session_id.clone());
                    known.insert(
                        m.session_id.clone(),
                        Session {
                            id: m.session_id.clone(),
                            source: m.source.clone(),
                            started_at: Some(m.timestamp),
                            ..Session::default()
                        },
                    );
                }
            }
        })?;
        for id in touched {
            if let Some(s) = known.get(&id) {
                by_id.remove(&id);
                if session_matches(s, filter) {
                    by_id.insert(id, s.clone());
                }
            }
        }
        let mut v: Vec<Session> = by_id.into_values().collect();
        v.sort_by(|a, b| b.started_at.unwrap_or(0.0).total_cmp(&a.started_at.unwrap_or(0.0)).then(a.id.cmp(&b.id)));
        if let Some(l) = filter.limit {
            v.truncate(l);
        }
        Ok(v)
    }

    /// A snapshot of the store's state; anything degraded is in `problems` (and was logged).
    pub fn status(&self) -> StoreStatus {
        let positions = self.with_reader(|ix| ix.applied_positions());
        let mut lanes = Vec::new();
        let mut unindexed = 0;
        let shared_errors = self.inner.shared.lock().lane_errors.clone();
        for name in lane_names(&self.inner.dir).unwrap_or_default() {
            let own = name == self.inner.lane_name && !self.inner.opts.read_only;
            let (last, err) = match self.inner.lane_journal(&name) {
                Some(j) => (j.last_lsn(), shared_errors.get(&name).cloned()),
                None => (0, Some(shared_errors.get(&name).cloned().unwrap_or_else(|| "cannot be opened".into()))),
            };
            let applied = positions.as_ref().map(|p| p.get(&name).copied().unwrap_or(0));
            unindexed += last.saturating_sub(applied.unwrap_or(0));
            lanes.push(LaneStatus { name, own, last_lsn: last, applied_lsn: applied, error: err });
        }
        let sh = self.inner.shared.lock();
        let poisoned = self.inner.lane.status().poisoned;
        let mut problems = Vec::new();
        if let Some(p) = &poisoned {
            problems.push(format!("this process's lane refuses appends: {p}"));
        }
        for l in &lanes {
            if let Some(e) = &l.error {
                problems.push(format!("lane {} cannot be read: {e}", l.name));
            }
            if let Some(a) = l.applied_lsn.filter(|&a| a > l.last_lsn && l.error.is_none()) {
                problems.push(format!(
                    "index is ahead of lane {} (applied {a}, lane ends at {}): it is rebuilt by the compactor",
                    l.name, l.last_lsn
                ));
            }
        }
        if self.inner.dir.join(REBUILD_MARKER).exists() {
            problems.push("an index rebuild was requested and is pending".into());
        }
        match &sh.index {
            IndexHealth::Rebuilding { reason, done, total } => {
                problems.push(format!("index is being rebuilt ({done}/{total}): {reason}"))
            }
            IndexHealth::Failed { reason } => problems.push(format!("index unusable: {reason}")),
            _ => {}
        }
        if let Some(p) = &sh.read_problem {
            problems.push(p.clone());
        }
        if let Some(e) = &sh.compactor.last_error {
            problems.push(format!("compactor: {e}"));
        }
        StoreStatus {
            dir: self.inner.dir.clone(),
            lane: self.inner.lane_name.clone(),
            lanes,
            index: sh.index.clone(),
            compactor: sh.compactor.clone(),
            unindexed,
            journal_poisoned: poisoned,
            problems,
        }
    }

    /// Waits until every entry appended so far (in every lane) is indexed, or `timeout` passes.
    /// Returns whether it caught up. Only useful where some process runs the compactor.
    pub fn wait_indexed(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.status();
            let caught_up = s.unindexed == 0
                && s.lanes.iter().all(|l| l.applied_lsn.is_some_and(|a| a <= l.last_lsn))
                && !self.inner.dir.join(REBUILD_MARKER).exists();
            if caught_up {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Closes the store within the configured deadline: stops the compactor at a batch boundary
    /// (it does not wait for it to catch up: the journal already holds everything), runs a final
    /// checkpoint if the compactor stopped in time, and syncs the lane. Nothing acknowledged is
    /// lost whatever happens here.
    pub fn close(self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&self) -> Result<()> {
        let started = Instant::now();
        self.inner.stop.store(true, Ordering::SeqCst);
        let res = self.inner.lane.close();
        if let Some(h) = self.compactor.lock().take() {
            let deadline = started + self.inner.opts.close_deadline;
            while !h.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            if h.is_finished() {
                let _ = h.join();
            } else {
                warn!(
                    deadline_ms = self.inner.opts.close_deadline.as_millis() as u64,
                    "compactor did not reach a batch boundary before the close deadline; leaving it (the journal holds everything)"
                );
            }
        }
        info!(lane = %self.inner.lane_name, elapsed_ms = started.elapsed().as_millis() as u64, "store closed");
        Ok(res?)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if !self.inner.stop.load(Ordering::SeqCst) {
            let _ = self.shutdown();
        }
    }
}

/// Marker asking the compactor to move the index to the quarantine and rebuild it; holds the
/// reason. Written by a process that finds the index ahead of the lane it just claimed.
pub const REBUILD_MARKER: &str = "index.rebuild";

/// Before this process appends anything to the lane it claimed: if the index says more of this
/// lane was applied than the lane holds (records lost to a power cut after another process's
/// compactor indexed them from the page cache), new appends would reuse those LSNs and the index
/// would skip them. Ask the compactor to rebuild the index first.
fn check_index_not_ahead(dir: &Path, lane: &str, last: Lsn, opts: &crate::index::IndexOptions) -> Result<()> {
    let path = dir.join(INDEX_FILE);
    if !path.exists() {
        return Ok(());
    }
    // An index that cannot be read here is the compactor's to check and repair.
    let Ok(applied) = Index::open_read_only(&path, opts).and_then(|ix| ix.applied_positions()) else {
        return Ok(());
    };
    let Some(&pos) = applied.get(lane).filter(|&&p| p > last) else { return Ok(()) };
    let reason = format!(
        "index has applied LSN {pos} of {lane}, but the lane ends at {last} (records lost after they were indexed)"
    );
    error!(lane = %lane, applied = pos, last, "index is ahead of the journal; asking the compactor to rebuild it");
    let marker = dir.join(REBUILD_MARKER);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&marker)
        .map_err(|e| Error::io("create", &marker, e))?;
    std::io::Write::write_all(&mut f, reason.as_bytes()).map_err(|e| Error::io("write", &marker, e))?;
    f.sync_all().map_err(|e| Error::io("sync", &marker, e))?;
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io("sync folder", dir, e))?;
    Ok(())
}

fn session_matches(s: &Session, f: &SessionFilter) -> bool {
    if f.source.as_ref().is_some_and(|x| Some(x) != s.source.as_ref()) {
        return false;
    }
    let t = s.started_at.unwrap_or(0.0);
    if f.since.is_some_and(|x| t < x) || f.until.is_some_and(|x| t > x) {
        return false;
    }
    if let Some(needle) = &f.title_contains {
        let title = s.title.as_deref().unwrap_or("").to_lowercase();
        if !title.contains(&needle.to_lowercase()) {
            return false;
        }
    }
    true
}

impl Inner {
    /// A handle on a lane: this process's own journal, or a cached read-only one (refreshed).
    pub(crate) fn lane_journal(&self, name: &str) -> Option<Journal> {
        if name == self.lane_name {
            if self.opts.read_only
                && let Err(e) = self.lane.refresh()
            {
                self.shared.lock().lane_errors.insert(name.to_string(), e.to_string());
                return None;
            }
            return Some(self.lane.clone());
        }
        let mut others = self.others.lock();
        if let Some(j) = others.get(name) {
            match j.refresh() {
                Ok(_) => return Some(j.clone()),
                Err(e) => {
                    self.shared.lock().lane_errors.insert(name.to_string(), e.to_string());
                    others.remove(name);
                    return None;
                }
            }
        }
        match Journal::open_read_only(self.dir.join(LANES_DIR).join(name), self.opts.journal_options()) {
            Ok(j) => {
                self.shared.lock().lane_errors.remove(name);
                others.insert(name.to_string(), j.clone());
                Some(j)
            }
            Err(e) => {
                let mut sh = self.shared.lock();
                if !sh.lane_errors.contains_key(name) {
                    error!(lane = %name, "lane cannot be read: {e}");
                }
                sh.lane_errors.insert(name.to_string(), e.to_string());
                None
            }
        }
    }
}
