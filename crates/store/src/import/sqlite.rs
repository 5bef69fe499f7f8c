//! Reading a possibly damaged SQLite file: read-only and immutable, full scans first, then a
//! row-by-row salvage by rowid.

use rusqlite::Connection;
use rusqlite::OpenFlags;
use rusqlite::types::ValueRef;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs::File;
use std::io;
use std::io::Read;
use std::path::Path;
use std::path::PathBuf;

use super::{BLIND_PROBE_RANGE, ImportError, MAX_PROBE_RANGE, Out};

pub(super) fn check_sqlite_header(path: &Path) -> Result<(), ImportError> {
    let io_err = |source| ImportError::Io { path: path.to_path_buf(), source };
    let mut file = File::open(path).map_err(io_err)?;
    if file.metadata().map_err(io_err)?.is_dir() {
        return Err(ImportError::NotHermes {
            path: path.to_path_buf(),
            detail: "it is a folder, not a database file (sidecar folders are imported as JSONL)".into(),
        });
    }
    let mut header = [0u8; 16];
    let mut got = 0;
    while got < header.len() {
        match file.read(&mut header[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err(e)),
        }
    }
    if got < header.len() || &header != b"SQLite format 3\0" {
        return Err(ImportError::NotHermes {
            path: path.to_path_buf(),
            detail: "it does not start with the SQLite header".into(),
        });
    }
    Ok(())
}

/// `<path>-wal`.
fn wal_path(path: &Path) -> PathBuf {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    PathBuf::from(wal)
}

/// A private copy of a database and its `-wal`, opened so that SQLite reads the WAL's commits
/// (the original is opened `immutable`, which ignores the WAL). Removed when dropped.
pub(super) struct WalCopy {
    _dir: crate::layout::TempDir,
    pub(super) db: PathBuf,
}

/// The size and modification time of a file, to notice a writer between two looks.
fn stamp(path: &Path) -> Option<(u64, std::time::SystemTime)> {
    std::fs::metadata(path).ok().map(|m| (m.len(), m.modified().unwrap_or(std::time::UNIX_EPOCH)))
}

/// If `path` has a non-empty `-wal` (Hermes Agent was killed, or is running, or a reader left
/// it), copies both files into a private scratch folder (0700, files 0600) so the import reads
/// every commit of the WAL without changing the original in any way. A copy taken while the
/// files changed is taken again (three tries, then a warning). `None` without a WAL, or with a
/// warning if the copy cannot be made (the import then reads the main file alone).
pub(super) fn copy_with_wal(path: &Path, out: &mut Out<'_>) -> Option<WalCopy> {
    let wal = wal_path(path);
    let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    if wal_len == 0 {
        return None;
    }
    let scratch = std::env::temp_dir();
    let result = (|| -> crate::Result<WalCopy> {
        let dir = crate::layout::store_temp_dir(&scratch, "hermes-import")?;
        let db = dir.path().join("state.db");
        let db_wal = wal_path(&db);
        for attempt in 1..=3 {
            let before = (stamp(path), stamp(&wal));
            copy_private(path, &db)?;
            copy_private(&wal, &db_wal)?;
            if (stamp(path), stamp(&wal)) == before {
                break;
            }
            if attempt == 3 {
                out.warn(format!(
                    "{} changed while it was copied with its WAL, three times (is Hermes Agent running?); \
                     the import read the last copy, which may miss or mix its latest commits: stop Hermes \
                     Agent and import again",
                    path.display()
                ));
            }
        }
        Ok(WalCopy { _dir: dir, db })
    })();
    match result {
        Ok(copy) => {
            tracing::info!(path = %path.display(), wal_bytes = wal_len, "reading the database with its WAL through a private copy");
            Some(copy)
        }
        Err(e) => {
            out.warn(format!(
                "{} exists ({wal_len} bytes) but a private copy to read it could not be made ({e}): commits not \
                 yet checkpointed into {} are not imported; free space in {} or stop Hermes Agent so it \
                 checkpoints on close, then import again",
                wal.display(),
                path.display(),
                scratch.display()
            ));
            None
        }
    }
}

/// Copies `from` to a new private file `to` (0600) and syncs nothing: a scratch copy.
fn copy_private(from: &Path, to: &Path) -> crate::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut src = File::open(from).map_err(|e| crate::Error::io("open", from, e))?;
    let mut dst = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(to)
        .map_err(|e| crate::Error::io("create", to, e))?;
    io::copy(&mut src, &mut dst).map_err(|e| crate::Error::io("copy", from, e))?;
    Ok(())
}

/// Opens the private copy of a database with its WAL: read-write, so SQLite can build the WAL
/// index (`-shm`) and read the WAL's commits; `query_only` so nothing is written to it.
pub(super) fn open_copy(copy: &WalCopy, original: &Path) -> Result<Connection, ImportError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(&copy.db, flags)
        .map_err(|source| ImportError::Open { path: original.to_path_buf(), source })?;
    conn.pragma_update(None, "query_only", true)
        .map_err(|source| ImportError::Open { path: original.to_path_buf(), source })?;
    Ok(conn)
}

/// `file:` URI for `path`, read-only and immutable.
pub(super) fn read_only_uri(path: &Path) -> String {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let raw = abs.as_os_str().as_encoded_bytes();
    let mut uri = String::from("file:");
    if cfg!(windows) {
        uri.push('/');
    }
    for &b in raw {
        match b {
            b'\\' if cfg!(windows) => uri.push('/'),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                uri.push(char::from(b));
            }
            b':' if cfg!(windows) => uri.push(':'),
            _ => {
                let _ = write!(uri, "%{b:02X}");
            }
        }
    }
    uri.push_str("?mode=ro&immutable=1");
    uri
}

pub(super) fn open_read_only(path: &Path) -> Result<Connection, ImportError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    Connection::open_with_flags(read_only_uri(path), flags)
        .map_err(|source| ImportError::Open { path: path.to_path_buf(), source })
}

/// One value read from SQLite, owned. Text stays bytes until it is decoded.
#[derive(Debug, Clone)]
pub(super) enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(Vec<u8>),
    Blob(Vec<u8>),
}

impl Cell {
    pub(super) fn from_ref(v: ValueRef<'_>) -> Self {
        match v {
            ValueRef::Null => Cell::Null,
            ValueRef::Integer(i) => Cell::Int(i),
            ValueRef::Real(f) => Cell::Real(f),
            ValueRef::Text(t) => Cell::Text(t.to_vec()),
            ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
        }
    }
}

pub(super) fn read_cells(row: &rusqlite::Row<'_>, n: usize) -> rusqlite::Result<Vec<Option<Cell>>> {
    (0..n).map(|i| row.get_ref(i).map(|v| Some(Cell::from_ref(v)))).collect()
}

pub(super) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

pub(super) struct Db<'p> {
    pub(super) conn: Connection,
    pub(super) path: &'p Path,
}

/// The rowids a salvage probes: a range, plus what the indexes list outside it.
pub(super) struct Candidates {
    pub(super) lo: i64,
    pub(super) hi: i64,
    /// Rowids listed by a readable index, sorted: such a row exists, so not finding it is a loss.
    pub(super) indexed: Vec<i64>,
}

impl Candidates {
    /// Every candidate, ascending, without materialising the range.
    pub(super) fn iter(&self) -> impl Iterator<Item = i64> + '_ {
        let below = self.indexed.iter().copied().filter(|r| *r < self.lo);
        let above = self.indexed.iter().copied().filter(|r| *r > self.hi);
        below.chain(self.lo..=self.hi).chain(above)
    }

    pub(super) fn is_indexed(&self, rowid: i64) -> bool {
        self.indexed.binary_search(&rowid).is_ok()
    }
}

/// The result of reading one row by rowid.
pub(super) enum RowRead {
    /// Read; `None` marks a column that could not be read.
    Found(Vec<Option<Cell>>),
    /// No row has this rowid.
    Missing,
    /// The identifying columns could not be read.
    Failed(String),
}

impl Db<'_> {
    pub(super) fn unreadable(&self, table: &str, source: rusqlite::Error) -> ImportError {
        ImportError::Unreadable { path: self.path.to_path_buf(), table: table.to_string(), source }
    }

    pub(super) fn table_names(&self) -> Result<HashSet<String>, ImportError> {
        let read = || -> rusqlite::Result<HashSet<String>> {
            let mut stmt = self.conn.prepare("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")?;
            let names = stmt.query_map([], |r| r.get::<_, String>(0))?;
            names.collect()
        };
        read().map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::NotADatabase => {
                ImportError::NotHermes {
                    path: self.path.to_path_buf(),
                    detail: "SQLite says it is not a database".into(),
                }
            }
            e => self.unreadable("sqlite_master", e),
        })
    }

    pub(super) fn columns(&self, table: &str) -> Result<Vec<String>, ImportError> {
        let read = || -> rusqlite::Result<Vec<String>> {
            let mut stmt = self.conn.prepare(&format!("PRAGMA table_info({})", quote_ident(table)))?;
            let names = stmt.query_map([], |r| r.get::<_, String>(1))?;
            names.collect()
        };
        read().map_err(|e| self.unreadable(table, e))
    }

    pub(super) fn schema_version(&self, tables: &HashSet<String>, out: &mut Out<'_>) -> Option<i64> {
        if !tables.contains("schema_version") {
            out.warn(format!("{}: no `schema_version` table; reading it by its columns", self.path.display()));
            return None;
        }
        match self.conn.query_row("SELECT max(version) FROM schema_version", [], |r| r.get::<_, Option<i64>>(0)) {
            Ok(v) => v,
            Err(e) => {
                out.warn(format!(
                    "{}: cannot read the schema version ({e}); reading the database by its columns",
                    self.path.display()
                ));
                None
            }
        }
    }

    /// Every rowid worth probing in a salvage, ascending.
    pub(super) fn salvage_candidates(&self, table: &str, out: &mut Out<'_>) -> Candidates {
        let t = quote_ident(table);
        let mut indexed: Vec<i64> = Vec::new();
        let index_names: Vec<String> = self
            .conn
            .prepare(&format!("PRAGMA index_list({t})"))
            .and_then(|mut s| s.query_map([], |r| r.get::<_, String>(1))?.collect::<rusqlite::Result<Vec<_>>>())
            .unwrap_or_default();
        for index in &index_names {
            let sql = format!("SELECT rowid FROM {t} INDEXED BY {}", quote_ident(index));
            let before = indexed.len();
            let result = self.conn.prepare(&sql).and_then(|mut s| {
                let mut rows = s.query([])?;
                while let Some(r) = rows.next()? {
                    indexed.push(r.get::<_, i64>(0)?);
                }
                Ok(())
            });
            let got = indexed.len() - before;
            match result {
                Ok(()) => tracing::info!(table, index, rowids = got, "walked index for salvage"),
                Err(e) => out.warn(format!(
                    "{}: index `{index}` of `{table}` stopped after {got} rowids: {e}",
                    self.path.display()
                )),
            }
        }
        indexed.sort_unstable();
        indexed.dedup();

        let mut lo: Option<i64> = None;
        let mut hi: Option<i64> = None;
        let mut widen = |v: Option<i64>| {
            if let Some(v) = v {
                lo = Some(lo.map_or(v, |l| l.min(v)));
                hi = Some(hi.map_or(v, |h| h.max(v)));
            }
        };
        match self.conn.query_row(&format!("SELECT min(rowid), max(rowid) FROM {t}"), [], |r| {
            Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, Option<i64>>(1)?))
        }) {
            Ok((a, b)) => {
                widen(a);
                widen(b);
            }
            Err(e) => out.warn(format!("{}: cannot read the rowid range of `{table}`: {e}", self.path.display())),
        }
        let seq: Option<i64> =
            self.conn.query_row("SELECT seq FROM sqlite_sequence WHERE name = ?1", [table], |r| r.get(0)).ok();
        if seq.is_some() {
            widen(Some(1));
            widen(seq);
        }
        widen(indexed.first().copied());
        widen(indexed.last().copied());
        let (lo, mut hi) = match (lo, hi) {
            (Some(l), Some(h)) => (l, h),
            _ => {
                out.warn(format!(
                    "{}: `{table}` shows neither its rowid range nor a readable index; \
                     probing rowids 1 to {BLIND_PROBE_RANGE}",
                    self.path.display()
                ));
                (1, BLIND_PROBE_RANGE)
            }
        };
        if hi.saturating_sub(lo) >= MAX_PROBE_RANGE {
            out.warn(format!(
                "{}: `{table}` rowids span {lo} to {hi}; probing only {lo} to {} plus indexed rowids",
                self.path.display(),
                lo.saturating_add(MAX_PROBE_RANGE - 1)
            ));
            hi = lo.saturating_add(MAX_PROBE_RANGE - 1);
        }
        tracing::info!(table, lo, hi, indexed = indexed.len(), "salvaging row by row");
        Candidates { lo, hi, indexed }
    }

    /// Reads one row by rowid: all columns at once, or, when that fails, the `essential` ones
    /// and then every other column on its own.
    pub(super) fn read_row(&self, table: &str, cols: &[String], essential: &[usize], rowid: i64) -> RowRead {
        let t = quote_ident(table);
        let select = |names: &[&String]| -> rusqlite::Result<Option<Vec<Option<Cell>>>> {
            let list: Vec<String> = names.iter().map(|c| quote_ident(c)).collect();
            let sql = format!("SELECT {} FROM {t} WHERE rowid = ?1", list.join(", "));
            let mut stmt = self.conn.prepare_cached(&sql)?;
            let mut rows = stmt.query([rowid])?;
            match rows.next()? {
                Some(r) => Ok(Some(read_cells(r, names.len())?)),
                None => Ok(None),
            }
        };
        let all: Vec<&String> = cols.iter().collect();
        let full_error = match select(&all) {
            Ok(Some(cells)) => return RowRead::Found(cells),
            Ok(None) => return RowRead::Missing,
            Err(e) => e,
        };
        let ess: Vec<&String> = essential.iter().filter_map(|&i| cols.get(i)).collect();
        let ess_cells = match select(&ess) {
            Ok(Some(cells)) => cells,
            Ok(None) => return RowRead::Missing,
            // One damaged cell must not cost the others: read them one by one, and leave the
            // caller to repair (or refuse) the row by what is missing.
            Err(e) => {
                let one_by_one: Vec<Option<Cell>> = ess
                    .iter()
                    .map(|name| match select(&[name]) {
                        Ok(Some(mut one)) => one.pop().flatten(),
                        _ => None,
                    })
                    .collect();
                if one_by_one.iter().all(Option::is_none) {
                    return RowRead::Failed(e.to_string());
                }
                one_by_one
            }
        };
        let mut cells: Vec<Option<Cell>> = vec![None; cols.len()];
        for (&i, cell) in essential.iter().zip(ess_cells) {
            if let Some(slot) = cells.get_mut(i) {
                *slot = cell;
            }
        }
        for (i, name) in cols.iter().enumerate() {
            if essential.contains(&i) {
                continue;
            }
            if let Ok(Some(mut one)) = select(&[name])
                && let Some(slot) = cells.get_mut(i)
            {
                *slot = one.pop().flatten();
            }
        }
        tracing::debug!(table, rowid, error = %full_error, "row read column by column");
        RowRead::Found(cells)
    }

    pub(super) fn system_prompt(&self, hash: &str) -> rusqlite::Result<Option<String>> {
        let mut stmt = self.conn.prepare_cached("SELECT prompt FROM system_prompts WHERE hash = ?1")?;
        let mut rows = stmt.query([hash])?;
        match rows.next()? {
            Some(r) => Ok(r.get::<_, Option<String>>(0)?),
            None => Ok(None),
        }
    }
}
