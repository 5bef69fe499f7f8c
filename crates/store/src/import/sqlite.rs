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

pub(super) fn warn_about_wal(path: &Path, out: &mut Out<'_>) {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let wal = PathBuf::from(wal);
    if let Ok(meta) = std::fs::metadata(&wal)
        && meta.len() > 0
    {
        out.warn(format!(
            "{} exists ({} bytes): commits not yet checkpointed into {} are not imported; \
             stop Hermes Agent so it checkpoints on close, then import again",
            wal.display(),
            meta.len(),
            path.display()
        ));
    }
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
