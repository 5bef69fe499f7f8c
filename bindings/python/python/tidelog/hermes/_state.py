"""The module-level names of Hermes 0.19.0's ``hermes_state`` besides its two classes, so that
``tidelog.hermes`` can stand in for the module (``install()`` or a plain re-export).

Each is an equivalent written for tidelog, or, where Hermes' name is about its SQLite file
(schema text, WAL set-up, schema repair), the nearest meaning for a store that only reads that
file once, stated in the docstring."""

from __future__ import annotations

import logging
import os
import sqlite3
import sys
import threading
from pathlib import Path
from typing import Any

logger = logging.getLogger("tidelog.hermes")

# Hermes' schema version (``SCHEMA_VERSION``) and query cap, the values Hermes 0.19.0 has; the
# store's own schema is versioned separately.
SCHEMA_VERSION = 22
MAX_FTS5_QUERY_CHARS = 2048

# Hermes' SQL scripts (``SCHEMA_SQL``, ``DEFERRED_INDEX_SQL``, ``FTS_SQL``, ``FTS_TRIGRAM_SQL``)
# create its SQLite tables. tidelog keeps no such tables, so these are empty scripts: running
# one does nothing. (``tidelog.hermes.__getattr__`` gives Hermes' own text when Hermes is
# installed.)
SQL_SCRIPT_NAMES = ("SCHEMA_SQL", "DEFERRED_INDEX_SQL", "FTS_SQL", "FTS_TRIGRAM_SQL")

_WAL_INCOMPATIBLE = ("locking protocol", "not authorized")
_MALFORMED = ("malformed database schema", "database disk image is malformed")

_last_init_error: str | None = None
_last_init_error_lock = threading.Lock()


def get_hermes_home() -> Path:
    """Hermes' home folder: Hermes' own answer when installed (profiles and overrides
    included), else ``$HERMES_HOME``, else ``%LOCALAPPDATA%\\hermes`` on Windows and
    ``~/.hermes`` elsewhere."""
    try:
        from hermes_constants import get_hermes_home as hermes_home  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        home = os.environ.get("HERMES_HOME", "").strip()
        if home:
            return Path(home)
        if sys.platform == "win32":
            local = os.environ.get("LOCALAPPDATA", "").strip()
            return (Path(local) if local else Path.home() / "AppData" / "Local") / "hermes"
        return Path.home() / ".hermes"
    return Path(hermes_home())


DEFAULT_DB_PATH = get_hermes_home() / "state.db"


def workspace_key(row: dict[str, Any]) -> str | None:
    """A session row's workspace: its git repository root when set, else its ``cwd`` (both
    stripped); None for a session without either."""
    root = (row.get("git_repo_root") or "").strip()
    if root:
        return str(root)
    cwd = (row.get("cwd") or "").strip()
    return str(cwd) if cwd else None


def set_last_init_error(message: str | None) -> None:
    """Records (None clears) why the last ``SessionDB()`` of this process failed to open."""
    global _last_init_error
    with _last_init_error_lock:
        _last_init_error = message


def get_last_init_error() -> str | None:
    """Why the last failed ``SessionDB()`` open of this process failed (``"<Type>: <message>"``),
    or None. A later successful open does not clear it (as in Hermes)."""
    return _last_init_error


def format_session_db_unavailable(prefix: str = "Session database not available") -> str:
    """The user-facing "unavailable" line: ``"<prefix>."``, or with the recorded cause
    ``"<prefix>: <cause>."``, plus a hint about network file systems when the cause is
    SQLite's locking protocol or an unauthorized WAL."""
    cause = get_last_init_error()
    if not cause:
        return f"{prefix}."
    hint = ""
    if any(marker in cause.lower() for marker in _WAL_INCOMPATIBLE):
        hint = " (state.db may be on NFS/SMB/FUSE — see https://www.sqlite.org/wal.html)"
    return f"{prefix}: {cause}{hint}."


def _journal_mode(conn: sqlite3.Connection) -> str | None:
    try:
        row = conn.execute("PRAGMA journal_mode").fetchone()
    except sqlite3.OperationalError:
        return None
    if row is None or row[0] is None:
        return None
    mode = row[0]
    if isinstance(mode, bytes):
        mode = mode.decode("ascii", "replace")
    return str(mode).strip().lower()


_wal_warned: set[str] = set()


def apply_wal_with_fallback(conn: sqlite3.Connection, *, db_label: str = "state.db") -> str:
    """Puts a SQLite connection (Hermes' other databases, e.g. kanban) in WAL mode; returns
    ``"wal"``, or ``"delete"`` when the file system refuses WAL (locking protocol, not
    authorized: one warning per ``db_label``). Another error, or a refusal on a file already
    in WAL mode, is raised. (Hermes' extra macOS checkpoint pragmas are not applied.)"""
    if _journal_mode(conn) == "wal":
        return "wal"
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        return "wal"
    except sqlite3.OperationalError as exc:
        if not any(marker in str(exc).lower() for marker in _WAL_INCOMPATIBLE):
            raise
        if _journal_mode(conn) == "wal":
            raise
        if db_label not in _wal_warned:
            _wal_warned.add(db_label)
            logger.warning("%s: WAL refused by the file system (%s); using journal_mode=DELETE", db_label, exc)
        conn.execute("PRAGMA journal_mode=DELETE")
        return "delete"


def is_malformed_db_error(exc: BaseException) -> bool:
    """True for SQLite's "malformed database schema" / "database disk image is malformed"
    errors (a ``sqlite3.DatabaseError``)."""
    return isinstance(exc, sqlite3.DatabaseError) and any(m in str(exc).lower() for m in _MALFORMED)


def repair_state_db_schema(db_path: Path, *, backup: bool = True) -> dict[str, Any]:
    """Hermes repairs a malformed ``state.db`` in place. tidelog only reads that file (once,
    to import it) and keeps its data in the store, so this checks the file without changing
    it: ``{"repaired": True, "strategy": "already_healthy"}`` when it opens and passes
    SQLite's integrity check, else ``repaired`` False with the reason in ``error``
    (``backup`` is accepted; nothing is written, so nothing is backed up)."""
    report: dict[str, Any] = {"repaired": False, "strategy": None, "backup_path": None, "error": None}
    path = Path(db_path)
    if not path.exists():
        report["error"] = f"{path} does not exist"
        return report
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
            problems = [str(r[0]) for r in rows if r and str(r[0]).lower() != "ok"]
            conn.execute("SELECT COUNT(*) FROM sessions").fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        problems = [str(exc)]
    if problems:
        report["error"] = "; ".join(problems[:3]) + " (tidelog does not modify state.db)"
        return report
    report["repaired"] = True
    report["strategy"] = "already_healthy"
    return report
