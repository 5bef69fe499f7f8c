"""``SessionDB._conn``: Hermes' tables, read-only, over the store's SQLite index.

Hermes code that reads ``state.db`` with SQL (``hermes insights``, the dashboard's analytics,
``hermes sessions repair``'s count, the lineage view of the web API) runs its queries on
``db._conn``. Here ``_conn`` is a ``sqlite3`` connection opened read-only (``mode=ro``) on the
store's derived index (``<store>/index.db``), holding TEMP views named and shaped like Hermes'
tables: ``sessions``, ``messages``, ``state_meta``, ``schema_version``, ``gateway_routing``,
``compression_locks``, ``session_model_usage``, ``async_delegations``,
``telegram_dm_topic_mode`` and ``telegram_dm_topic_bindings``, with Hermes' column names, in
Hermes' order, and values as Hermes stores them (JSON objects as ``json.dumps`` text, Hermes'
column defaults for values never set). Rows are ``sqlite3.Row`` as in Hermes.

- ``sessions``: the index's session rows; the columns the store model lacks come from the
  session's ``extra`` JSON; token counters and costs add an imported session's Hermes totals
  (kept in ``extra``) to the store's counters; ``message_count`` and ``tool_call_count`` are
  computed from the messages the way ``SessionDB.get_session`` reports them.
- ``messages``: every indexed message (active, archived and compacted, as in Hermes' table) with
  ``id`` the message's integer row id and the columns the model lacks from message ``extra``.
- ``state_meta``: the store's metadata, without the keys that are tidelog's own (the generic rows
  ``hermes.row/...`` and the import record). The other tables: the generic rows ``_rows.Rows``
  keeps in metadata as JSON objects under ``hermes.row/<table>/``, one column per Hermes column.
- Hermes' FTS tables (``messages_fts``, ``messages_fts_trigram``) are not offered: full-text
  search goes through ``search_messages``.

**Freshness.** Each statement run on ``_conn`` (or a cursor of it) first waits (up to
``SQL_VIEW_CATCHUP_TIMEOUT`` seconds) until the index has applied every journal entry written so
far, so a query run right after a write sees it. If the index has not caught up by then (the
compactor stalled, or no process runs one), a warning is logged and the queries see the index as
of the compactor's last commit: a consistent earlier state missing the newest writes, never a
partial batch. While it lags, statements wait only 50 ms each, until it has caught up again.

**Writes** fail loudly with a ``sqlite3`` error ("not authorized", or "cannot modify ... because
it is a view"); nothing written through ``_conn`` is ever silently dropped. The one write Hermes
itself makes through ``_conn`` is supported: ``UPDATE sessions SET ended_at = NULL, end_reason =
NULL WHERE ...`` (the CLI's resume reopening a session) runs ``SessionDB.reopen_session`` for each
row, durably, when the statement runs (``commit()`` is a no-op; a rollback does not undo it).
Setting them to anything but NULL raises.

**Where Hermes looks for ``state.db``.** A tidelog install keeps its data in
``<state.db>.tidelog/``; ``state.db`` itself may never exist. Hermes code asks
``hermes_state.DEFAULT_DB_PATH.exists()`` before reading (the dashboard's active-session count,
``hermes sessions repair``). :func:`expose_store` (called by ``tidelog.hermes.install()``) makes
``DEFAULT_DB_PATH`` a :class:`HermesDbPath`: the same path, whose ``exists()`` is also true when
the store folder exists; and makes ``hermes_state._db_opens_cleanly`` report such a path as
healthy instead of letting ``sqlite3.connect`` create an empty ``state.db`` to probe. No file is
created at ``state.db``: a placeholder would be read by any tool opening it directly as an empty
Hermes database, and by a Hermes without tidelog as "no sessions at all". Code that builds the
path on its own (``hermes doctor`` checks ``$HERMES_HOME/state.db``) still reports "not created
yet"; its store is checked with ``tidelog status``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sqlite3
import threading
import types
import urllib.parse
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._common import IMPORT_META_KEY, ORPHANED_KEY, _COSTS, _COUNTERS, store_path_for
from ._rows import ROW_PREFIX

if TYPE_CHECKING:
    from .._tidelog import Store

__all__ = ["HermesDbPath", "expose_store"]

log = logging.getLogger(__name__)

# The store's derived index (crates/store/src/layout/mod.rs INDEX_FILE).
INDEX_FILE = "index.db"
# Hermes 0.19.0's SCHEMA_VERSION: what `SELECT version FROM schema_version` reads.
HERMES_SCHEMA_VERSION = 22

# A column: (name, SQLite affinity Hermes declares, SQL default for a value never set).
_Column = tuple[str, str, str | None]

_SESSION_COLUMNS: tuple[_Column, ...] = (
    ("id", "TEXT", None),
    ("source", "TEXT", None),
    ("user_id", "TEXT", None),
    ("session_key", "TEXT", None),
    ("chat_id", "TEXT", None),
    ("chat_type", "TEXT", None),
    ("thread_id", "TEXT", None),
    ("display_name", "TEXT", None),
    ("origin_json", "TEXT", None),
    ("expiry_finalized", "INTEGER", "0"),
    ("model", "TEXT", None),
    ("model_config", "TEXT", None),
    ("system_prompt", "TEXT", None),
    ("parent_session_id", "TEXT", None),
    ("started_at", "REAL", None),
    ("ended_at", "REAL", None),
    ("end_reason", "TEXT", None),
    ("message_count", "INTEGER", "0"),
    ("tool_call_count", "INTEGER", "0"),
    ("input_tokens", "INTEGER", "0"),
    ("output_tokens", "INTEGER", "0"),
    ("cache_read_tokens", "INTEGER", "0"),
    ("cache_write_tokens", "INTEGER", "0"),
    ("reasoning_tokens", "INTEGER", "0"),
    ("cwd", "TEXT", None),
    ("git_branch", "TEXT", None),
    ("git_repo_root", "TEXT", None),
    ("billing_provider", "TEXT", None),
    ("billing_base_url", "TEXT", None),
    ("billing_mode", "TEXT", None),
    ("estimated_cost_usd", "REAL", None),
    ("actual_cost_usd", "REAL", None),
    ("cost_status", "TEXT", None),
    ("cost_source", "TEXT", None),
    ("pricing_version", "TEXT", None),
    ("title", "TEXT", None),
    ("api_call_count", "INTEGER", "0"),
    ("handoff_state", "TEXT", None),
    ("handoff_platform", "TEXT", None),
    ("handoff_error", "TEXT", None),
    ("compression_failure_cooldown_until", "REAL", None),
    ("compression_failure_error", "TEXT", None),
    ("compression_fallback_streak", "INTEGER", "0"),
    ("profile_name", "TEXT", None),
    ("rewind_count", "INTEGER", "0"),
    ("archived", "INTEGER", "0"),
)
# Session columns the index has as its own columns (the rest are in `extra`).
_SESSION_NATIVE = ("id", "source", "user_id", "chat_id", "model", "title", "parent_session_id", "started_at",
                   "ended_at", "end_reason")

_MESSAGE_COLUMNS: tuple[_Column, ...] = (
    ("id", "INTEGER", None),
    ("session_id", "TEXT", None),
    ("role", "TEXT", None),
    ("content", "TEXT", None),
    ("tool_call_id", "TEXT", None),
    ("tool_calls", "TEXT", None),
    ("tool_name", "TEXT", None),
    ("effect_disposition", "TEXT", None),
    ("timestamp", "REAL", None),
    ("token_count", "INTEGER", None),
    ("finish_reason", "TEXT", None),
    ("reasoning", "TEXT", None),
    ("reasoning_content", "TEXT", None),
    ("reasoning_details", "TEXT", None),
    ("codex_reasoning_items", "TEXT", None),
    ("codex_message_items", "TEXT", None),
    ("platform_message_id", "TEXT", None),
    ("observed", "INTEGER", "0"),
    ("active", "INTEGER", None),
    ("compacted", "INTEGER", None),
    ("api_content", "TEXT", None),
)
_MESSAGE_NATIVE = ("session_id", "role", "content", "tool_call_id", "tool_calls", "tool_name", "timestamp",
                   "token_count", "finish_reason", "reasoning", "active", "compacted")

# Hermes' other tables, kept as generic rows (see _rows.py).
_ROW_TABLES: dict[str, tuple[_Column, ...]] = {
    "gateway_routing": (
        ("scope", "TEXT", "''"),
        ("session_key", "TEXT", None),
        ("entry_json", "TEXT", None),
        ("updated_at", "REAL", None),
    ),
    "compression_locks": (
        ("session_id", "TEXT", None),
        ("holder", "TEXT", None),
        ("acquired_at", "REAL", None),
        ("expires_at", "REAL", None),
    ),
    "session_model_usage": (
        ("session_id", "TEXT", None),
        ("model", "TEXT", None),
        ("billing_provider", "TEXT", "''"),
        ("billing_base_url", "TEXT", "''"),
        ("billing_mode", "TEXT", "''"),
        ("task", "TEXT", "''"),
        ("api_call_count", "INTEGER", "0"),
        ("input_tokens", "INTEGER", "0"),
        ("output_tokens", "INTEGER", "0"),
        ("cache_read_tokens", "INTEGER", "0"),
        ("cache_write_tokens", "INTEGER", "0"),
        ("reasoning_tokens", "INTEGER", "0"),
        ("estimated_cost_usd", "REAL", "0"),
        ("actual_cost_usd", "REAL", "0"),
        ("cost_status", "TEXT", None),
        ("cost_source", "TEXT", None),
        ("first_seen", "REAL", None),
        ("last_seen", "REAL", None),
    ),
    "async_delegations": (
        ("delegation_id", "TEXT", None),
        ("origin_session", "TEXT", None),
        ("origin_ui_session_id", "TEXT", "''"),
        ("parent_session_id", "TEXT", None),
        ("state", "TEXT", None),
        ("dispatched_at", "REAL", None),
        ("completed_at", "REAL", None),
        ("updated_at", "REAL", None),
        ("event_json", "TEXT", None),
        ("result_json", "TEXT", None),
        ("delivery_state", "TEXT", "'pending'"),
        ("delivery_attempts", "INTEGER", "0"),
        ("delivered_at", "REAL", None),
        ("owner_pid", "INTEGER", None),
        ("owner_started_at", "INTEGER", None),
        ("task_json", "TEXT", None),
        ("delivery_claim", "TEXT", None),
        ("delivery_claimed_at", "REAL", None),
    ),
    "telegram_dm_topic_mode": (
        ("chat_id", "TEXT", None),
        ("user_id", "TEXT", None),
        ("enabled", "INTEGER", "1"),
        ("activated_at", "REAL", None),
        ("updated_at", "REAL", None),
        ("has_topics_enabled", "INTEGER", None),
        ("allows_users_to_create_topics", "INTEGER", None),
        ("capability_checked_at", "REAL", None),
        ("intro_message_id", "TEXT", None),
        ("pinned_message_id", "TEXT", None),
    ),
    "telegram_dm_topic_bindings": (
        ("chat_id", "TEXT", None),
        ("thread_id", "TEXT", None),
        ("user_id", "TEXT", None),
        ("session_key", "TEXT", None),
        ("session_id", "TEXT", None),
        ("managed_mode", "TEXT", "'auto'"),
        ("linked_at", "REAL", None),
        ("updated_at", "REAL", None),
    ),
}


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _json_text(text: str | None) -> str | None:
    """SQL function ``tl_json``: a JSON object or array as Hermes writes it (``json.dumps``)."""
    return None if text is None else json.dumps(json.loads(text))


def _from_json(doc: str, name: str) -> str:
    """SQL reading field ``name`` of the JSON object ``doc``: scalars as SQLite's JSON functions
    give them (true/false as 1/0), objects and arrays as ``json.dumps`` text."""
    path = _quote(f'$."{name}"')
    return (f"CASE WHEN json_type({doc}, {path}) IN ('object', 'array') "
            f"THEN tl_json(json_extract({doc}, {path})) ELSE json_extract({doc}, {path}) END")


def _typed(expr: str, affinity: str, default: str | None) -> str:
    """``expr`` with the conversion Hermes' column affinity applies, and its default for NULL."""
    if affinity == "TEXT":
        expr = f"CAST({expr} AS TEXT)"
    elif affinity == "REAL":
        expr = f"(CASE WHEN typeof({expr}) = 'integer' THEN CAST({expr} AS REAL) ELSE {expr} END)"
    elif affinity == "INTEGER":
        expr = (f"(CASE WHEN typeof({expr}) = 'real' AND {expr} = CAST({expr} AS INTEGER) "
                f"THEN CAST({expr} AS INTEGER) ELSE {expr} END)")
    return expr if default is None else f"COALESCE({expr}, {default})"


def _tool_call_count(col: str) -> str:
    """How many tool calls a message's ``tool_calls`` JSON holds (a list's length, else 1 for a
    non-empty value), as ``SessionDB`` counts them."""
    return (f"CASE WHEN {col} IS NULL OR NOT json_valid({col}) THEN 0 "
            f"WHEN json_type({col}) = 'array' THEN json_array_length({col}) "
            f"WHEN json_type({col}) IN ('null', 'false') OR {col} IN ('0', '\"\"', '{{}}') THEN 0 ELSE 1 END")


def _sessions_view() -> str:
    exprs: list[str] = []
    # `SessionDB._row` counts the messages `Store.messages` returns: the active, uncompacted ones.
    shown = "m.session_id = s.id AND m.active = 1 AND m.compacted = 0"
    for name, affinity, default in _SESSION_COLUMNS:
        if name == "parent_session_id":
            # A deleted parent's children keep its id with a marker (see `_common.parent_of`).
            exprs.append(
                "(CASE WHEN s.parent_session_id = '' OR s.parent_session_id = "
                f"json_extract(s.extra, '$.{ORPHANED_KEY}') THEN NULL ELSE s.parent_session_id END) AS parent_session_id"
            )
            continue
        if name in _SESSION_NATIVE:
            # The index declares these with Hermes' affinities; bare, so that its indexes serve.
            exprs.append(f"s.{name} AS {name}")
            continue
        elif name in _COUNTERS:
            expr = f"(COALESCE(json_extract(s.extra, '$.{name}'), 0) + s.{name})"
        elif name in _COSTS:
            base = f"json_extract(s.extra, '$.{name}')"
            expr = f"(CASE WHEN {base} IS NULL AND s.{name} = 0 THEN NULL ELSE COALESCE({base}, 0) + s.{name} END)"
        elif name == "message_count":
            exprs.append(f"(SELECT COUNT(*) FROM main.messages AS m WHERE {shown}) AS {name}")
            continue
        elif name == "tool_call_count":
            count = _tool_call_count("m.tool_calls")
            exprs.append(f"(SELECT COALESCE(SUM({count}), 0) FROM main.messages AS m WHERE {shown}) AS {name}")
            continue
        else:
            expr = _from_json("s.extra", name)
        exprs.append(f"{_typed(expr, affinity, default)} AS {name}")
    return "CREATE TEMP VIEW sessions AS SELECT " + ", ".join(exprs) + " FROM main.sessions AS s"


# A message's text: the index's `content`, or (index schema 5) the journal's copy of a long one,
# read through the store by the function `tidelog_body` registered on the connection.
_TEXT = (
    "(CASE WHEN m.body_lsn IS NULL THEN m.content "
    "ELSE tidelog_body(m.body_lane, m.body_seg, m.body_off, m.body_lsn, m.rid) END)"
)


def _messages_view(text_in_journal: bool) -> str:
    exprs: list[str] = []
    for name, affinity, default in _MESSAGE_COLUMNS:
        if name == "content" and text_in_journal:
            exprs.append(f"{_TEXT} AS content")
            continue
        if name == "id" or name in _MESSAGE_NATIVE:
            # The index declares these with Hermes' affinities; bare, so that its indexes serve.
            exprs.append(f"m.{'rid' if name == 'id' else name} AS {name}")
            continue
        elif name in ("platform_message_id", "api_content"):
            # Imported rows keep these Hermes columns in extra.
            expr = f"COALESCE(m.{name}, {_from_json('m.extra', name)})"
        elif name == "observed":
            expr = f"(CASE WHEN json_extract(m.extra, '$.observed') THEN 1 ELSE 0 END)"
        else:
            expr = _from_json("m.extra", name)
        exprs.append(f"{_typed(expr, affinity, default)} AS {name}")
    return "CREATE TEMP VIEW messages AS SELECT " + ", ".join(exprs) + " FROM main.messages AS m"


def _key_range(prefix: str) -> str:
    """SQL selecting the metadata keys starting with ``prefix`` (a range, so the key index is used)."""
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return f"(u.key >= {_quote(prefix)} AND u.key < {_quote(upper)})"


def _row_view(table: str, columns: tuple[_Column, ...]) -> str:
    exprs = [f"{_typed(_from_json('u.value', n), a, d)} AS {n}" for n, a, d in columns]
    where = _key_range(f"{ROW_PREFIX}{table}/")
    return f"CREATE TEMP VIEW {table} AS SELECT {', '.join(exprs)} FROM main.user_meta AS u WHERE {where}"


def _views(text_in_journal: bool) -> list[str]:
    own = f"{_key_range(ROW_PREFIX)} OR u.key = {_quote(IMPORT_META_KEY)}"
    views = [
        _sessions_view(),
        _messages_view(text_in_journal),
        f"CREATE TEMP VIEW state_meta AS SELECT u.key AS key, u.value AS value FROM main.user_meta AS u "
        f"WHERE NOT ({own})",
        f"CREATE TEMP VIEW schema_version AS SELECT {HERMES_SCHEMA_VERSION} AS version",
    ]
    views += [_row_view(t, cols) for t, cols in _ROW_TABLES.items()]
    # Hermes' CLI reopens a resumed session with this UPDATE through `_conn`.
    views.append(
        "CREATE TEMP TRIGGER sessions_reopen INSTEAD OF UPDATE OF ended_at, end_reason ON sessions "
        "BEGIN SELECT tl_reopen(OLD.id, NEW.ended_at, NEW.end_reason); END"
    )
    return views


# The authorizer's verdicts: reads, functions, pragmas and transactions; the reopen UPDATE only.
_ALLOWED = {
    sqlite3.SQLITE_READ,
    sqlite3.SQLITE_SELECT,
    sqlite3.SQLITE_FUNCTION,
    sqlite3.SQLITE_PRAGMA,
    sqlite3.SQLITE_TRANSACTION,
    sqlite3.SQLITE_SAVEPOINT,
    sqlite3.SQLITE_RECURSIVE,
}


def _authorize(action: int, arg1: str | None, arg2: str | None, db_name: str | None, _source: str | None) -> int:
    if action in _ALLOWED:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_UPDATE and arg1 == "sessions" and arg2 in ("ended_at", "end_reason"):
        return sqlite3.SQLITE_OK if db_name == "temp" else sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_DENY


class _IndexCursor(sqlite3.Cursor):
    """A cursor of :class:`_IndexConnection`: each statement waits for the index first."""

    connection: _IndexConnection

    def execute(self, sql: str, parameters: Any = (), /) -> _IndexCursor:
        self.connection.catch_up()
        return super().execute(sql, parameters)

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> _IndexCursor:
        self.connection.catch_up()
        return super().executemany(sql, seq_of_parameters)

    def executescript(self, sql_script: str, /) -> sqlite3.Cursor:
        self.connection.catch_up()
        return super().executescript(sql_script)


class _IndexConnection(sqlite3.Connection):
    """The ``_conn`` connection: its statements (``execute`` and cursors alike) first wait until
    the index has caught up with the journal, so a write that returned is seen."""

    owner: weakref.ref[_SqlViewMixin] | None = None

    def catch_up(self) -> None:
        db = self.owner() if self.owner is not None else None
        if db is not None:
            db._catch_up()

    def cursor(self, factory: Any = None) -> Any:
        return super().cursor(factory or _IndexCursor)

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        self.catch_up()
        return super().execute(sql, parameters)

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> sqlite3.Cursor:
        self.catch_up()
        return super().executemany(sql, seq_of_parameters)

    def executescript(self, sql_script: str, /) -> sqlite3.Cursor:
        self.catch_up()
        return super().executescript(sql_script)


class _SqlView:
    """One open read-only connection with the views, and the index file it was opened on."""

    def __init__(self, index: Path, owner: weakref.ref[_SqlViewMixin]) -> None:
        self.index = index
        self.inode = index.stat().st_ino
        uri = "file:" + urllib.parse.quote(str(index)) + "?mode=ro"
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None, factory=_IndexConnection)
        assert isinstance(conn, _IndexConnection)
        self.conn = conn
        try:
            conn.row_factory = sqlite3.Row
            conn.create_function("tl_json", 1, _json_text, deterministic=True)
            conn.create_function("tl_reopen", 3, _reopener(owner))
            conn.create_function("tidelog_body", 5, _text_reader(owner), deterministic=True)
            self.text_in_journal = _text_in_journal(conn)
            for statement in _views(self.text_in_journal):
                conn.execute(statement)
            conn.set_authorizer(_authorize)
            conn.owner = owner
        except BaseException:
            conn.close()
            raise

    def replaced(self) -> bool:
        """True when the index file was replaced (rebuilt, or moved to the quarantine), or upgraded
        in place to keep long texts in the journal since the views were made without that."""
        try:
            if self.index.stat().st_ino != self.inode:
                return True
        except FileNotFoundError:
            return True
        if self.text_in_journal:
            return False
        # An index older than schema 5 (its writer runs an older version): rare, so a plain
        # connection of its own asks, beside the one with the views and the authorizer.
        uri = "file:" + urllib.parse.quote(str(self.index)) + "?mode=ro"
        try:
            with contextlib.closing(sqlite3.connect(uri, uri=True)) as probe:
                return _text_in_journal(probe)
        except sqlite3.Error:
            return False


def _text_in_journal(conn: sqlite3.Connection) -> bool:
    """Whether the index keeps long texts in the journal (schema 5: `messages.body_lsn`)."""
    columns = {row[1] for row in conn.execute("SELECT * FROM pragma_table_info('messages', 'main')")}
    return "body_lsn" in columns


def _text_reader(owner: weakref.ref[_SqlViewMixin]) -> Callable[[int, int, int, int, int], str | None]:
    def tidelog_body(lane: int, segment: int, offset: int, lsn: int, rid: int) -> str | None:
        db = owner()
        if db is None:
            raise RuntimeError("the SessionDB of this connection is gone")
        text: str | None = db._store._text_at(lane, segment, offset, lsn, rid)
        return text

    return tidelog_body


def _reopener(owner: weakref.ref[_SqlViewMixin]) -> Callable[[str, Any, Any], None]:
    def tl_reopen(session_id: str, ended_at: Any, end_reason: Any) -> None:
        if ended_at is not None or end_reason is not None:
            raise PermissionError("sessions is read-only through _conn except reopening (ended_at = NULL)")
        db = owner()
        if db is None:
            raise RuntimeError("the SessionDB of this connection is gone")
        db._store.reopen_session(session_id)

    return tl_reopen


_OPEN_LOCK = threading.Lock()
# Seconds a statement waits for the index while it is known to lag (see `_catch_up`).
SQL_VIEW_LAGGING_TIMEOUT = 0.05


class _SqlViewMixin:
    """Mixed into ``tidelog.hermes.SessionDB``: ``_conn`` (see the module documentation)."""

    _store: Store
    store_path: Path
    # Seconds `_conn` waits for the index to catch up with the journal before serving queries.
    SQL_VIEW_CATCHUP_TIMEOUT: float = 5.0
    _sql_view: _SqlView | None = None
    _sql_view_closed: bool = False
    _sql_view_lagging: bool = False

    @property
    def _conn(self) -> sqlite3.Connection | None:
        """Hermes' ``state.db`` connection, read-only over the store's index: opened on first use,
        the same connection afterwards (reopened if the index file was rebuilt), ``None`` after
        ``close()`` as in Hermes. Each statement first waits for the index to catch up with the
        journal (see the module documentation)."""
        if self._sql_view_closed:
            return None
        view = self._sql_view
        if view is None or view.replaced():
            # The index file and its schema exist once the compactor has applied the journal.
            self._catch_up()
        with _OPEN_LOCK:
            view = self._sql_view
            if view is None or view.replaced():
                if view is not None:
                    view.conn.owner = None
                    view.conn.close()
                view = self._sql_view = _SqlView(self.store_path / INDEX_FILE, weakref.ref(self))
            return view.conn

    def _catch_up(self) -> None:
        """Waits until the index has applied every journal entry written so far. After a wait
        timed out, later statements wait only briefly until the index catches up again, so that
        a store no process compacts (a read-only open after a writer crashed) is slow to query
        once, not on every statement."""
        timeout = SQL_VIEW_LAGGING_TIMEOUT if self._sql_view_lagging else self.SQL_VIEW_CATCHUP_TIMEOUT
        caught_up = self._store.wait_indexed(timeout)
        if not caught_up and not self._sql_view_lagging:
            log.warning("%s: the index has not caught up with the journal within %.1f s; SQL readers see "
                        "the state of its last commit", self.store_path, timeout)
        self._sql_view_lagging = not caught_up

    def _close_sql_view(self) -> None:
        """Closes the ``_conn`` connection (``SessionDB.close`` calls this)."""
        with _OPEN_LOCK:
            self._sql_view_closed = True
            if self._sql_view is not None:
                self._sql_view.conn.owner = None
                self._sql_view.conn.close()
                self._sql_view = None


# ---------------------------------------------------------------------------------------------
# Where Hermes looks for state.db


class HermesDbPath(type(Path())):  # type: ignore[misc]
    """A ``state.db`` path whose ``exists()`` is also true when its tidelog store exists."""

    def exists(self, *args: Any, **kwargs: Any) -> bool:
        return super().exists(*args, **kwargs) or store_path_for(self).is_dir()


def _is_store_only(path: os.PathLike[str] | str) -> bool:
    p = Path(path)
    return not p.exists() and store_path_for(p).is_dir()


def expose_store(module: types.ModuleType, default_db_path: Path) -> None:
    """Makes a tidelog-backed install visible where ``hermes_state``'s users look for
    ``state.db`` (see the module documentation): ``DEFAULT_DB_PATH`` (kept if the module has
    one, else ``default_db_path``) becomes a :class:`HermesDbPath`, and
    ``_db_opens_cleanly`` reports a path with only a store as healthy."""
    current = module.__dict__.get("DEFAULT_DB_PATH")
    setattr(module, "DEFAULT_DB_PATH", HermesDbPath(current if current is not None else default_db_path))
    probe = module.__dict__.get("_db_opens_cleanly")
    if callable(probe) and not getattr(probe, "_tidelog", False):

        # Hermes' probe of state.db; a path whose data is only a tidelog store is healthy as far
        # as SQLite goes (`tidelog status` checks the store).
        @functools.wraps(probe)
        def _db_opens_cleanly(db_path: Any) -> str | None:
            return None if _is_store_only(db_path) else probe(db_path)

        _db_opens_cleanly._tidelog = True  # type: ignore[attr-defined]
        setattr(module, "_db_opens_cleanly", _db_opens_cleanly)
