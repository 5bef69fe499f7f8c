"""A drop-in ``SessionDB`` for Hermes Agent, writing through a tidelog store.

Hermes Agent keeps its sessions in ``hermes_state.SessionDB`` over a SQLite file, ``state.db``.
This module offers a class with the same public calls and results, built on :class:`tidelog.Store`:
every write is a journal append synced before the call returns, and the SQLite file search reads
is derived by the store (never a file of ours). Two lines make an unmodified gateway use it::

    import tidelog.hermes
    tidelog.hermes.install()

``SessionDB(db_path)`` takes the path Hermes passes (its ``state.db``); the store lives beside it
in ``<state.db>.tidelog/``. On the first open, an existing ``state.db`` there is imported (opened
read-only, never changed). The module also offers every public name of Hermes' ``hermes_state``
(``DEFAULT_DB_PATH``, ``format_session_db_unavailable``, ...). Search answers as Hermes' does
(a snippet ends with the spaces of the empty tool name and tool calls it indexes too). See
``bindings/python/README.md`` for what is approximated.

>>> import tempfile, os
>>> from tidelog.hermes import SessionDB
>>> with SessionDB(os.path.join(tempfile.mkdtemp(), "state.db")) as db:
...     sid = db.create_session("s1", "cli", model="m")
...     first = db.append_message(sid, "user", "Where is the chat-send config?")
...     second = db.append_message(sid, "assistant", "In my-app.config.ts.")
...     [first < second, [h["snippet"] for h in db.search_messages("chat-send")]]
[True, ['Where is the >>>chat-send<<< config?  ']]
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import random
import re
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
import types
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, TypeVar

from .._errors import HermesImportError, NotFoundError, TitleTakenError
from .._tidelog import Message, Session, Store

from ._coordination import _CoordinationMixin
from ._gateway import NULLED_KEY, _GatewayMixin, peer_columns
from ._lineage import _LineageMixin
from ._maintenance import _MaintenanceMixin
from ._sqlview import _SqlViewMixin, expose_store
from ._rows import ROW_PREFIX, Rows
from ._common import (
    IMPORT_META_KEY,
    MAX_TITLE_LENGTH,
    SESSION_COLUMNS,
    _COUNTERS,
    _COSTS,
    _JSON_MESSAGE_FIELDS,
    _ascii_lower,
    _context,
    _conversation_dict,
    _count_tool_calls,
    _encode_content,
    _is_replayed_user_message,
    _json_text,
    _Desc,
    _cwd_under,
    _listable,
    _loads,
    _model_config,
    ORPHANED_KEY,
    parent_of,
    _message_row,
    _num,
    _repair_alternation,
    _timestamp,
    sanitize_context,
    sanitize_title,
    store_path_for,
    strip_review_harness,
)
_log = logging.getLogger("tidelog.hermes")
from ._state import (
    DEFAULT_DB_PATH,
    MAX_FTS5_QUERY_CHARS,
    SCHEMA_VERSION,
    SQL_SCRIPT_NAMES,
    apply_wal_with_fallback,
    format_session_db_unavailable,
    get_hermes_home,
    get_last_init_error,
    is_malformed_db_error,
    logger,
    repair_state_db_schema,
    set_last_init_error,
    workspace_key,
)
from ._search import contains_cjk, count_cjk, sanitize_fts5_query
__all__ = [
    "AsyncSessionDB",
    "DEFAULT_DB_PATH",
    "MAX_FTS5_QUERY_CHARS",
    "SCHEMA_VERSION",
    "SessionDB",
    "apply_wal_with_fallback",
    "format_session_db_unavailable",
    "get_hermes_home",
    "get_last_init_error",
    "install",
    "is_malformed_db_error",
    "repair_state_db_schema",
    "sanitize_context",
    "sanitize_fts5_query",
    "store_path_for",
    "workspace_key",
]
# Names hermes_state has from its imports, kept so code reaching for them through the module
# finds them (modules, typing helpers).
_REEXPORTED: tuple[object, ...] = (asyncio, json, logging, random, sqlite3, sys, threading, Any, Callable, Dict, List, Optional, Tuple)
T = TypeVar("T")


def _hermes_own_module() -> types.ModuleType | None:
    """Hermes' own ``hermes_state`` module if it is installed (not a stand-in of ours)."""
    module = sys.modules.get("hermes_state")
    if module is None:
        try:
            module = importlib.import_module("hermes_state")
        except ImportError:
            return None
    return module if "SCHEMA_SQL" in vars(module) else None


def __getattr__(name: str) -> str:
    """Hermes' SQL scripts (``SCHEMA_SQL``, ``DEFERRED_INDEX_SQL``, ``FTS_SQL``,
    ``FTS_TRIGRAM_SQL``): Hermes' own text when hermes-agent is installed, else an empty script
    (tidelog has no SQLite tables of Hermes')."""
    if name not in SQL_SCRIPT_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    real = _hermes_own_module()
    return str(getattr(real, name, "")) if real is not None else ""


@contextlib.contextmanager
def _checkpointed_copy(db_path: Path) -> Iterator[Path]:
    """A private copy of ``db_path`` with the commits of its ``-wal`` checkpointed into it (the
    original files are only read), in a 0700 scratch folder removed afterwards; the path itself
    when there is no WAL. Readers then open it ``immutable`` and miss nothing."""
    wal = db_path.with_name(db_path.name + "-wal")
    if not wal.is_file() or wal.stat().st_size == 0:
        yield db_path
        return
    with tempfile.TemporaryDirectory(prefix="tidelog-hermes-import-") as scratch:
        copy = Path(scratch) / "state.db"
        for src, dst in ((db_path, copy), (wal, copy.with_name("state.db-wal"))):
            shutil.copyfile(src, dst)
            os.chmod(dst, 0o600)
        with contextlib.closing(sqlite3.connect(copy)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        yield copy


def _quarantine_state_db(db_path: Path, store_path: Path, reason: str) -> list[str]:
    """Moves a ``state.db`` that cannot be imported (and its ``-wal`` and ``-shm``) into the
    store's ``quarantine/`` folder beside a JSON note of why; nothing is deleted. Returns the new
    paths. Logged as an error: the sessions in that file are not in the store until an operator
    repairs it (``sqlite3 state.db .recover``) and imports the result (``tidelog import hermes``)."""
    qdir = store_path / "quarantine"
    qdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    stamp = str(int(time.time() * 1000))
    while any((qdir / f"{stamp}-{db_path.name}{s}").exists() for s in ("", "-wal", "-shm", ".json")):
        stamp += "-1"
    moved: list[str] = []
    for suffix in ("-wal", "-shm", ""):
        src = db_path.with_name(db_path.name + suffix)
        if src.exists():
            dest = qdir / f"{stamp}-{db_path.name}{suffix}"
            os.rename(src, dest)
            os.chmod(dest, 0o600)  # in the store now: private like its other files
            moved.append(str(dest))
    note = {"what": "Hermes Agent database that could not be imported", "reason": reason, "files": moved}
    fd = os.open(qdir / f"{stamp}-{db_path.name}.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(note, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    dfd = os.open(db_path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    _log.error(
        "%s could not be imported (%s); moved to %s. The gateway runs on an empty store: repair the file "
        "(sqlite3 FILE .recover) and import it with `tidelog import hermes`.",
        db_path,
        reason,
        ", ".join(moved),
    )
    return moved


class SessionDB(_GatewayMixin, _CoordinationMixin, _LineageMixin, _MaintenanceMixin, _SqlViewMixin):
    """Hermes Agent's ``SessionDB`` over a tidelog store (thread-safe, like the store).

    ``db_path`` is Hermes' ``state.db`` (default ``$HERMES_HOME/state.db``, else
    ``~/.hermes/state.db``); the store is the folder ``<db_path>.tidelog``. On the first writable
    open an existing ``state.db`` is imported into it, read-only. ``store_options`` go to
    :class:`tidelog.Store`.
    """

    MAX_TITLE_LENGTH = MAX_TITLE_LENGTH

    def __init__(
        self,
        db_path: str | os.PathLike[str] | None = None,
        read_only: bool = False,
        *,
        import_existing: bool = True,
        **store_options: Any,
    ) -> None:
        self.db_path = Path(db_path) if db_path else Path(globals()["DEFAULT_DB_PATH"])
        self.read_only = read_only
        self.store_path = store_path_for(self.db_path)
        try:
            if not read_only:
                self.store_path.parent.mkdir(parents=True, exist_ok=True)
            self._store = Store(self.store_path, read_only=read_only, **store_options)
        except Exception as exc:
            # As Hermes: the cause is kept for format_session_db_unavailable().
            set_last_init_error(f"{type(exc).__name__}: {exc}")
            raise
        self._sources: dict[str, str | None] = {}
        self._rows = Rows(self._store)
        self.import_report: dict[str, Any] | None = None
        if not read_only and import_existing:
            self._import_once()

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def store(self) -> Store:
        """The tidelog store underneath."""
        return self._store

    def _import_once(self) -> None:
        # Under the store-wide write lock: when several processes open the same state.db for the
        # first time at once, one imports and the others find its record.
        with self._store.exclusive():
            self._import_once_locked()

    def _import_once_locked(self) -> None:
        done = self._store.get_meta(IMPORT_META_KEY)
        if done is not None:
            self.import_report = _loads(done)
            return
        if self.db_path.is_file() and self.db_path.stat().st_size > 0:
            try:
                report = self._store.import_hermes(self.db_path).to_dict()
                # Hermes' other tables (routing, topic bindings, ...) as rows, from a copy that
                # holds the WAL's commits too.
                with _checkpointed_copy(self.db_path) as copy:
                    report["tables"] = self._gateway_import(copy)
            except HermesImportError as e:
                # Not SQLite, not Hermes', or unreadable even row by row: moved aside with a note,
                # and the gateway runs on the (empty) store rather than not at all.
                report = {"source": str(self.db_path), "sessions": 0, "messages": 0, "error": str(e)}
                report["quarantined"] = _quarantine_state_db(self.db_path, self.store_path, str(e))
            for warning in report.get("warnings", ()):
                _log.warning("importing %s: %s", self.db_path, warning)
        else:
            report = {"source": str(self.db_path), "sessions": 0, "messages": 0, "absent": True}
        report["imported_at"] = time.time()
        self._store.set_meta(IMPORT_META_KEY, json.dumps(report))
        self.import_report = report

    def _forget_rows_of(self, session_ids: Collection[str]) -> None:
        """Deletes the rows of Hermes' other tables that belong to deleted sessions (Hermes'
        ``ON DELETE CASCADE``). Called by every path that deletes sessions."""
        self._gateway_forget_sessions(session_ids)
        self._forget_usage_of(session_ids)
        for sid in session_ids:
            self._rows.delete("message_state", sid)

    def close(self) -> None:
        self._close_sql_view()
        self._store.close()

    def __enter__(self) -> SessionDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<tidelog.hermes.SessionDB {str(self.db_path)!r} store={str(self.store_path)!r}>"

    # -- sessions -------------------------------------------------------------------------

    # The keyword arguments Hermes' create_session / ensure_session accept, and the columns a
    # later call fills when still empty (source, user_id and started_at keep their first value).
    _CREATE_FIELDS = (
        "model",
        "model_config",
        "system_prompt",
        "user_id",
        "session_key",
        "chat_id",
        "chat_type",
        "thread_id",
        "parent_session_id",
        "cwd",
        "profile_name",
    )

    def _insert_session(self, session_id: str, source: str, fields: Mapping[str, Any]) -> None:
        unknown = [k for k in fields if k not in self._CREATE_FIELDS]
        if unknown:
            raise TypeError(f"create_session() got an unexpected keyword argument '{unknown[0]}'")
        model_config = fields.get("model_config")
        extra = {
            "model_config": json.dumps(model_config) if model_config else None,
            "system_prompt": fields.get("system_prompt"),
            "session_key": fields.get("session_key"),
            "chat_type": fields.get("chat_type"),
            "thread_id": fields.get("thread_id"),
            "cwd": fields.get("cwd"),
            "profile_name": fields.get("profile_name"),
        }
        user_id, chat_id = fields.get("user_id"), fields.get("chat_id")
        parent_id = fields.get("parent_session_id")
        with self._store.exclusive():
            current = self._store.get_session(session_id)
            fills_parent = parent_id is not None and (current is None or parent_of(current) is None)
            if fills_parent and parent_id != session_id and not self._exists(str(parent_id)):
                raise _foreign_key_error()
            if fills_parent and current is not None and current.parent_session_id is not None:
                # The parent named is a deleted one: replace it.
                self._store.upsert_session(session_id, parent_session_id=parent_id, extra={ORPHANED_KEY: None})
            self._store.upsert_session(
                session_id,
                source=source,
                model=fields.get("model"),
                user_id=None if current is not None or user_id is None else str(user_id),
                chat_id=None if chat_id is None else str(chat_id),
                parent_session_id=parent_id,
                started_at=time.time(),
                extra={k: v for k, v in extra.items() if v is not None} or None,
                fill_only=True,
            )
        self._sources.pop(session_id, None)

    def create_session(self, session_id: str, source: str, **kwargs: Any) -> str:
        """Creates the session row, or fills in the columns an earlier writer left empty
        (``model``, ``model_config``, ``system_prompt``, ``session_key``, ``chat_id``,
        ``chat_type``, ``thread_id``, ``parent_session_id``, ``cwd``, ``profile_name``): a value
        already set is never overwritten. Returns ``session_id``."""
        self._insert_session(session_id, source, kwargs)
        return session_id

    def ensure_session(self, session_id: str, source: str = "unknown", model: str | None = None, **kwargs: Any) -> str:
        """Same upsert as :meth:`create_session`; returns ``session_id``."""
        self._insert_session(session_id, source, dict(kwargs, model=model))
        return session_id

    def _exists(self, session_id: str) -> bool:
        return self._store.get_session(session_id) is not None

    def _require(self, session_id: str) -> None:
        """Hermes' foreign key: messages belong to an existing session."""
        if not self._exists(session_id):
            raise _foreign_key_error()

    def end_session(self, session_id: str, end_reason: str) -> None:
        """Ends the session; the first end wins (an ended session keeps its reason)."""
        with self._store.exclusive():
            s = self._store.get_session(session_id)
            if s is not None and s.ended_at is None:
                self._store.end_session(session_id, end_reason)

    def reopen_session(self, session_id: str) -> None:
        """Clears ``ended_at`` and ``end_reason``."""
        if self._exists(session_id):
            self._store.reopen_session(session_id)

    def update_system_prompt(self, session_id: str, system_prompt: str) -> None:
        """Sets the stored system prompt snapshot (nothing if the session does not exist)."""
        with self._store.exclusive():
            if self._exists(session_id):
                self._store.upsert_session(session_id, extra={"system_prompt": system_prompt})

    def update_session_model(self, session_id: str, model: str) -> None:
        """Sets the model unconditionally (nothing if the session does not exist)."""
        with self._store.exclusive():
            if self._exists(session_id):
                self._store.upsert_session(session_id, model=model)

    def _row(self, s: Session, messages: list[Message] | None = None) -> dict[str, Any]:
        """A session as Hermes returns its ``sessions`` row: every column, in order."""
        extra = _loads(s.extra, {}) or {}
        if not isinstance(extra, dict):
            extra = {}
        row: dict[str, Any] = {k: extra.get(k, default) for k, default in SESSION_COLUMNS}
        row.update(
            id=s.id,
            source=s.source,
            model=s.model,
            title=s.title,
            user_id=s.user_id,
            chat_id=s.chat_id,
            # Orphaned: "" (as _maintenance clears a parent) or marked in extra (see parent_of).
            parent_session_id=parent_of(s) or None,
            started_at=s.started_at,
            ended_at=s.ended_at,
            end_reason=s.end_reason,
        )
        row[NULLED_KEY] = extra.get(NULLED_KEY)
        peer_columns(row)
        c = s.counters
        for k in _COUNTERS:
            row[k] = int(extra.get(k) or 0) + getattr(c, k)
        for k in _COSTS:
            base = extra.get(k)
            added = getattr(c, k)
            row[k] = None if base is None and not added else float(base or 0) + added
        if messages is None:
            messages = self._store.messages(s.id)
        row["message_count"] = len(messages)
        row["tool_call_count"] = sum(_count_tool_calls(m.tool_calls) for m in messages)
        return row

    def get_session(self, session_id: str) -> dict[str, Any] | None:
        """The session's row, or None."""
        s = self._store.get_session(session_id)
        return None if s is None else self._row(s)

    def _source_of(self, session_id: str) -> str | None:
        if session_id not in self._sources:
            s = self._store.get_session(session_id)
            self._sources[session_id] = s.source if s is not None else None
        return self._sources[session_id]

    # -- titles ---------------------------------------------------------------------------

    @staticmethod
    def sanitize_title(title: str | None) -> str | None:
        """Hermes' title cleaning (see :func:`tidelog.hermes._common.sanitize_title`)."""
        return sanitize_title(title)

    def _compression_ancestor(self, ancestor_id: str, descendant_id: str) -> bool:
        """True if ``ancestor_id`` is reached from ``descendant_id`` up parent links whose
        parent ended with ``end_reason = 'compression'``."""
        if not ancestor_id or not descendant_id or ancestor_id == descendant_id:
            return False
        seen = {descendant_id}
        s = self._store.get_session(descendant_id)
        while s is not None and parent_of(s):
            parent = self._store.get_session(str(parent_of(s)))
            if parent is None or parent.end_reason != "compression":
                return False
            if parent.id == ancestor_id:
                return True
            if parent.id in seen:
                return False
            seen.add(parent.id)
            s = parent
        return False

    def set_session_title(self, session_id: str, title: str) -> bool:
        """Sets (an empty title clears) the title; False if the session does not exist.
        Titles are unique: one another session holds raises ``ValueError``, unless that
        session is a compression predecessor of this one (the title then moves here)."""
        cleaned = sanitize_title(title)
        with self._store.exclusive():
            if cleaned:
                other = next((s for s in self._titled(cleaned) if s.title == cleaned and s.id != session_id), None)
                if other is not None:
                    if not self._compression_ancestor(other.id, session_id):
                        raise ValueError(f"Title '{cleaned}' is already in use by session {other.id}")
                    self._store.upsert_session(other.id, clear_title=True)
            if not self._exists(session_id):
                return False
            if cleaned is None:
                self._store.upsert_session(session_id, clear_title=True)
            else:
                try:
                    self._store.set_title(session_id, cleaned)
                except TitleTakenError as e:
                    raise ValueError(f"Title '{cleaned}' is already in use by session {e.other}") from e
        return True

    def get_session_title(self, session_id: str) -> str | None:
        """The session's title, or None."""
        s = self._store.get_session(session_id)
        return s.title if s is not None else None

    def _titled(self, needle: str) -> list[Session]:
        """Sessions whose title holds ``needle`` ignoring ASCII case (a superset of SQL LIKE)."""
        return [
            s
            for s in self._store.list_sessions(title_contains=needle if needle.isascii() else None)
            if s.title is not None and _ascii_lower(needle) in _ascii_lower(s.title)
        ]

    def get_session_by_title(self, title: str) -> dict[str, Any] | None:
        """The session with exactly this title, or None."""
        for s in self._titled(title):
            if s.title == title:
                return self._row(s)
        return None

    def resolve_session_by_title(self, title: str) -> str | None:
        """The newest-started session titled ``"<title> #N"`` (SQL LIKE: ASCII case ignored),
        else the one titled exactly ``title``, else None."""
        prefix = _ascii_lower(title + " #")
        numbered = [s for s in self._titled(title) if _ascii_lower(s.title or "").startswith(prefix)]
        if numbered:
            return max(numbered, key=lambda s: s.started_at or 0.0).id
        exact = self.get_session_by_title(title)
        return exact["id"] if exact else None

    def get_next_title_in_lineage(self, base_title: str) -> str:
        """``"my session"`` -> ``"my session #2"``, or one past the highest ``#N`` taken; the
        base itself when no session has it."""
        m = re.match(r"^(.*?) #(\d+)$", base_title)
        base = m.group(1) if m else base_title
        prefix = _ascii_lower(base + " #")
        taken = [s.title or "" for s in self._titled(base)
                 if s.title == base or _ascii_lower(s.title or "").startswith(prefix)]
        if not taken:
            return base
        highest = 1
        for t in taken:
            tm = re.match(r"^.* #(\d+)$", t)
            if tm:
                highest = max(highest, int(tm.group(1)))
        return f"{base} #{highest + 1}"

    # -- token accounting -----------------------------------------------------------------

    def update_token_counts(
        self,
        session_id: str,
        input_tokens: int = 0,
        output_tokens: int = 0,
        model: str | None = None,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
        reasoning_tokens: int = 0,
        estimated_cost_usd: float | None = None,
        actual_cost_usd: float | None = None,
        cost_status: str | None = None,
        cost_source: str | None = None,
        pricing_version: str | None = None,
        billing_provider: str | None = None,
        billing_base_url: str | None = None,
        billing_mode: str | None = None,
        api_call_count: int = 0,
        absolute: bool = False,
    ) -> None:
        """Adds the token, API-call and cost deltas (``absolute=True`` sets the totals), creating
        the session (source ``unknown``) if absent. ``estimated_cost_usd`` becomes a number
        (None counts 0); ``actual_cost_usd`` None leaves it as it is. ``cost_status``,
        ``cost_source`` and ``pricing_version`` are set when given; with usage to account,
        ``model`` and the billing route fill empty columns, and the first accounted call's
        route replaces the one recorded at creation. (Hermes' per-model usage table is kept
        by the model-usage methods.)"""
        self._insert_session(session_id, "unknown", {"model": model})
        counts = {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_read_tokens": cache_read_tokens,
            "cache_write_tokens": cache_write_tokens,
            "reasoning_tokens": reasoning_tokens,
            "api_call_count": api_call_count,
        }
        accounted = bool(any(counts.values()) or estimated_cost_usd or actual_cost_usd)
        with self._store.exclusive():
            s = self._store.get_session(session_id)
            if s is None:
                return
            current = self._row(s, [])
            deltas: dict[str, Any] = {}
            for k, v in counts.items():
                deltas[k] = int(v or 0) - (int(current[k] or 0) if absolute else 0)
            est = float(estimated_cost_usd or 0.0)
            deltas["estimated_cost_usd"] = est - float(current["estimated_cost_usd"] or 0.0) if absolute else est
            deltas["actual_cost_usd"] = 0.0
            if actual_cost_usd is not None:
                act = float(actual_cost_usd)
                deltas["actual_cost_usd"] = act - float(current["actual_cost_usd"] or 0.0) if absolute else act
            extra: dict[str, Any] = {}
            base = _loads(s.extra, {}) or {}
            if base.get("estimated_cost_usd") is None:
                extra["estimated_cost_usd"] = 0.0
            if actual_cost_usd is not None and base.get("actual_cost_usd") is None:
                extra["actual_cost_usd"] = 0.0
            labels = {"cost_status": cost_status, "cost_source": cost_source, "pricing_version": pricing_version}
            extra.update({k: label for k, label in labels.items() if label is not None})
            new_model: str | None = None
            if accounted:
                route = {"billing_provider": billing_provider, "billing_base_url": billing_base_url,
                         "billing_mode": billing_mode}
                first_route = (
                    int(current["api_call_count"] or 0) == 0
                    and bool(model)
                    and bool(billing_provider)
                    and (current["model"] != model or current["billing_provider"] != billing_provider)
                )
                if first_route:
                    new_model = model
                    extra.update(route)
                else:
                    extra.update({k: v for k, v in route.items() if v is not None and current[k] is None})
                    if current["model"] is None and model:
                        new_model = model
            if any(deltas.values()):
                self._store.add_counters(session_id, **deltas)
            if extra or new_model is not None:
                self._store.upsert_session(session_id, model=new_model, extra=extra or None)
            # Hermes' per-model usage of the main loop (task ''), routed by the session's values
            # where the call gave none.
            if not absolute and (any(counts.values()) or estimated_cost_usd):
                now_row = self._row(self._store.get_session(session_id) or s, [])
                usage_route = (
                    str(model or now_row["model"] or "unknown"),
                    str(billing_provider or now_row["billing_provider"] or ""),
                    str(billing_base_url or now_row["billing_base_url"] or ""),
                    str(billing_mode or now_row["billing_mode"] or ""),
                    "",
                )
                usage: dict[str, Any] = {k: int(v or 0) for k, v in counts.items()}
                usage["estimated_cost_usd"] = float(estimated_cost_usd or 0.0)
                usage["actual_cost_usd"] = float(actual_cost_usd or 0.0)
                self._add_model_usage(session_id, usage_route, usage, cost_status, cost_source)

    def queue_token_counts(self, session_id: str, **deltas: Any) -> None:
        """Not in Hermes 0.19.0 (an earlier release's queue): the deltas are applied at once."""
        self.update_token_counts(session_id, **deltas)

    def flush_token_counts(self, timeout: float | None = None) -> bool:
        """Not in Hermes 0.19.0: nothing is ever queued, so True."""
        return True

    # -- listings and counts --------------------------------------------------------------

    def _listed(
        self,
        sessions: list[Session],
        *,
        source: str | None,
        exclude_sources: Collection[str] | None,
        cwd_prefix: str | None,
        min_message_count: int,
        include_archived: bool,
        archived_only: bool,
        children: bool,
    ) -> list[Session]:
        """The sessions Hermes' listing filters admit (``children``: subagent runs and
        compression continuations too)."""
        by_id = {s.id: s for s in sessions}
        counts = self._store.message_counts() if min_message_count > 0 else {}
        out = []
        for s in sessions:
            extra = _loads(s.extra, {}) or {}
            if source and s.source != source:
                continue
            if exclude_sources and s.source in exclude_sources:
                continue
            if cwd_prefix and not _cwd_under(extra.get("cwd"), cwd_prefix):
                continue
            if min_message_count > 0 and counts.get(s.id, 0) < min_message_count:
                continue
            archived = bool(extra.get("archived"))
            if (not archived) if archived_only else (archived and not include_archived):
                continue
            if not children and not _listable(s, by_id):
                continue
            out.append(s)
        return out

    def session_count(
        self,
        source: str | None = None,
        cwd_prefix: str | None = None,
        min_message_count: int = 0,
        include_archived: bool = False,
        archived_only: bool = False,
        exclude_children: bool = False,
        exclude_sources: list[str] | None = None,
    ) -> int:
        """How many sessions pass the filters: archived ones only with ``include_archived``
        (``archived_only``: just those); ``exclude_children`` counts what ``list_sessions_rich``
        lists (roots and branches)."""
        return len(
            self._listed(
                self._store.list_sessions(),
                source=source,
                exclude_sources=exclude_sources,
                cwd_prefix=cwd_prefix,
                min_message_count=min_message_count,
                include_archived=include_archived,
                archived_only=archived_only,
                children=not exclude_children,
            )
        )

    def message_count(self, session_id: str | None = None) -> int:
        """Messages of the session (every state), or of all sessions."""
        if session_id:
            return len(self._store.history(session_id, include_inactive=True, include_compacted=True))
        return sum(
            len(self._store.history(s.id, include_inactive=True, include_compacted=True))
            for s in self._store.list_sessions()
        )

    def _rich_row(self, s: Session) -> dict[str, Any]:
        """The session row with ``preview`` (the first user message's first 60 characters, by
        time, every state) and ``last_active`` (the newest message's time, else the start)."""
        every = [h.message for h in self._store.history(s.id, include_inactive=True, include_compacted=True)]
        row = self._row(s)
        firsts = sorted((m for m in every if m.role == "user" and m.content is not None),
                        key=lambda m: (m.timestamp, m.num))
        raw = (firsts[0].content or "").replace("\n", " ").replace("\r", " ")[:63].strip() if firsts else ""
        row["last_active"] = max((m.timestamp for m in every), default=s.started_at)
        row["preview"] = raw[:60] + ("..." if len(raw) > 60 else "") if raw else ""
        return row

    @staticmethod
    def _continuations(s: Session, sessions: Iterable[Session]) -> list[Session]:
        """The compression continuations of ``s``: children of a session that ended
        ``compression``, not branches, delegate runs or tool sessions."""
        if s.end_reason != "compression":
            return []
        return [
            c
            for c in sessions
            if parent_of(c) == s.id
            and _model_config(c).get("_branched_from") is None
            and _model_config(c).get("_delegate_from") is None
            and (c.source or "") != "tool"
        ]

    def _tip(self, session_id: str, sessions: list[Session], last_active: Callable[[Session], float]) -> str:
        """Hermes' ``get_compression_tip``: forward through continuations, preferring one that
        continues the chain, then a live one, then the most recently active."""
        by_id = {s.id: s for s in sessions}
        current = session_id
        seen = {current}
        for _ in range(100):
            s = by_id.get(current)
            children = self._continuations(s, sessions) if s is not None else []
            if not children:
                return current
            best = min(
                children,
                key=lambda c: (
                    0 if c.end_reason == "compression" else 1 if c.ended_at is None else 2,
                    -last_active(c),
                    -(c.started_at or 0.0),
                    _Desc(c.id),
                ),
            )
            if best.id in seen:
                return current
            seen.add(best.id)
            current = best.id
        return current

    def list_sessions_rich(
        self,
        source: str | None = None,
        exclude_sources: list[str] | None = None,
        cwd_prefix: str | None = None,
        limit: int = 20,
        offset: int = 0,
        include_children: bool = False,
        min_message_count: int = 0,
        project_compression_tips: bool = True,
        order_by_last_active: bool = False,
        include_archived: bool = False,
        archived_only: bool = False,
        id_query: str | None = None,
        search_query: str | None = None,
        compact_rows: bool = False,
    ) -> list[dict[str, Any]]:
        """Session rows with ``preview`` and ``last_active``, newest start first. Subagent runs
        and compression continuations are hidden unless ``include_children``; then a
        compression root shows its live tip's id, activity and title (``_lineage_root_id``
        naming the root) unless ``project_compression_tips=False``. ``order_by_last_active``
        orders by the newest activity along each compression chain, and only then
        ``id_query`` / ``search_query`` filter (substrings of any id, or title, in the chain;
        ``search_query`` also without punctuation). ``compact_rows`` leaves out
        ``system_prompt``."""
        sessions = self._store.list_sessions()
        picked = self._listed(
            sessions,
            source=source,
            exclude_sources=exclude_sources,
            cwd_prefix=cwd_prefix,
            min_message_count=min_message_count,
            include_archived=include_archived,
            archived_only=archived_only,
            children=include_children,
        )
        rich: dict[str, dict[str, Any]] = {}

        def row_of(s: Session) -> dict[str, Any]:
            if s.id not in rich:
                rich[s.id] = self._rich_row(s)
            return rich[s.id]

        def active_at(s: Session) -> float:
            return float(row_of(s)["last_active"] or 0.0)

        if order_by_last_active:
            id_needle = (id_query or "").strip().lower()
            search_needle = (search_query or "").strip().lower()
            compact_needle = re.sub(r"[\W_]+", "", search_needle)
            keyed = []
            for s in picked:
                chain = [s]
                walked = 0
                while walked < len(chain) and len(chain) <= len(sessions):
                    chain.extend(self._continuations(chain[walked], sessions))
                    walked += 1
                ids = [_ascii_lower(c.id) for c in chain]
                if id_needle and not any(id_needle in c for c in ids):
                    continue
                if search_needle:
                    titles = [_ascii_lower(c.title or "") for c in chain]
                    compact = [re.sub(r"[-_. ]", "", t) for t in titles]
                    if not (
                        any(search_needle in t for t in titles + ids)
                        or (compact_needle and any(compact_needle in t for t in compact))
                    ):
                        continue
                effective = max(active_at(c) for c in chain)
                keyed.append(((effective, s.started_at or 0.0, s.id), s))
            keyed.sort(key=lambda k: k[0], reverse=True)
            ordered = [s for _, s in keyed]
        else:
            ordered = sorted(picked, key=lambda s: s.started_at or 0.0, reverse=True)
        start = max(offset, 0)
        ordered = ordered[start:] if limit < 0 else ordered[start : start + limit]
        rows = []
        by_id = {s.id: s for s in sessions}
        for s in ordered:
            row = dict(row_of(s))
            if project_compression_tips and not include_children and s.end_reason == "compression":
                tip = by_id.get(self._tip(s.id, sessions, active_at))
                if tip is not None and tip.id != s.id:
                    tip_row = row_of(tip)
                    for key in ("id", "ended_at", "end_reason", "message_count", "tool_call_count", "title",
                                "last_active", "preview", "model", "system_prompt", "cwd", "git_branch",
                                "git_repo_root"):
                        row[key] = tip_row[key]
                    row["_lineage_root_id"] = s.id
            if compact_rows:
                row.pop("system_prompt", None)
            rows.append(row)
        return rows

    def _last_active(self, s: Session) -> float:
        """Hermes' ``last_active``: the newest timestamp of the session's messages (in any
        state), else when it started."""
        every = self._store.history(s.id, include_inactive=True, include_compacted=True)
        return max((h.message.timestamp for h in every), default=s.started_at or 0.0)

    def search_sessions(self, source: str | None = None, limit: int = 20, offset: int = 0) -> list[dict[str, Any]]:
        """Session rows with ``last_active`` (the newest message's time, else the start), most
        recently used first."""
        rows = []
        for s in self._store.list_sessions():
            if source and s.source != source:
                continue
            every = self._store.history(s.id, include_inactive=True, include_compacted=True)
            row = self._row(s)
            row["last_active"] = max((h.message.timestamp for h in every), default=s.started_at)
            rows.append(row)
        rows.sort(key=lambda r: (r["last_active"] or 0.0, r["started_at"] or 0.0, r["id"]), reverse=True)
        offset = max(offset, 0)
        return rows[offset : offset + limit] if limit >= 0 else rows[offset:]

    # -- metadata -------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        """The value stored under ``key``, or None."""
        return self._store.get_meta(key)

    def set_meta(self, key: str, value: str) -> None:
        """Stores ``value`` (as text; None stores NULL) under ``key``."""
        self._store.set_meta(key, None if value is None else str(value))

    def list_meta_prefix(self, prefix: str) -> list[tuple[str, str]]:
        """Not in Hermes 0.19.0: the ``(key, value)`` pairs whose key starts with ``prefix``."""
        if not prefix:
            return []
        meta = self._store.all_meta()
        return [(k, v) for k, v in meta.items() if k.startswith(prefix) and not k.startswith(ROW_PREFIX)]

    # -- messages -------------------------------------------------------------------------

    def _message(self, session_id: str, role: str, msg: Mapping[str, Any], *, batch: bool) -> dict[str, Any]:
        """Keyword arguments of ``tidelog.Message`` for a Hermes message. ``batch``: Hermes'
        rewrite path, which keeps reasoning fields on assistant messages only and reads
        ``message_id`` as the platform message id."""
        keep_reasoning = not batch or role == "assistant"
        extra: dict[str, Any] = {}
        for k in _JSON_MESSAGE_FIELDS:
            text = _json_text(msg.get(k)) if keep_reasoning else None
            if text is not None:
                extra[k] = text
        if keep_reasoning and msg.get("reasoning_content") is not None:
            extra["reasoning_content"] = msg.get("reasoning_content")
        if msg.get("effect_disposition") is not None:
            extra["effect_disposition"] = msg.get("effect_disposition")
        if msg.get("observed"):
            extra["observed"] = 1
        platform_id = msg.get("platform_message_id") or (msg.get("message_id") if batch else None)
        api_content = msg.get("api_content")
        reasoning = msg.get("reasoning") if keep_reasoning else None
        return {
            "session_id": session_id,
            "role": role,
            "content": _encode_content(msg.get("content")),
            "tool_call_id": msg.get("tool_call_id"),
            "tool_name": msg.get("tool_name"),
            "tool_calls": _json_text(msg.get("tool_calls")),
            "reasoning": reasoning,
            "timestamp": _timestamp(msg.get("timestamp")),
            "token_count": msg.get("token_count"),
            "finish_reason": msg.get("finish_reason"),
            "source": self._source_of(session_id),
            "extra": extra or None,
            "platform_message_id": None if platform_id is None else str(platform_id),
            "api_content": api_content if isinstance(api_content, str) else None,
        }

    def _batch(self, session_id: str, messages: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Hermes' rewrite inserts: each message's time, or one a microsecond past the last."""
        out = []
        now = time.time()
        for m in messages:
            msg = dict(m)
            ts = _timestamp(msg.get("timestamp"), now)
            msg["timestamp"] = ts
            out.append(self._message(session_id, str(msg.get("role", "unknown")), msg, batch=True))
            now = max(now + 1e-6, ts + 1e-6)
        return out

    def append_message(
        self,
        session_id: str,
        role: str,
        content: Any = None,
        tool_name: str | None = None,
        tool_calls: Any = None,
        tool_call_id: str | None = None,
        token_count: int | None = None,
        finish_reason: str | None = None,
        reasoning: str | None = None,
        reasoning_content: str | None = None,
        reasoning_details: Any = None,
        codex_reasoning_items: Any = None,
        codex_message_items: Any = None,
        platform_message_id: str | None = None,
        observed: bool = False,
        effect_disposition: str | None = None,
        timestamp: Any = None,
        api_content: str | None = None,
    ) -> int:
        """Appends a message, durable on return; returns its integer row id (increasing in
        append order). ``timestamp`` (a number or a datetime) replaces the current time."""
        msg = {
            "content": content,
            "tool_name": tool_name,
            "tool_calls": tool_calls,
            "tool_call_id": tool_call_id,
            "token_count": token_count,
            "finish_reason": finish_reason,
            "reasoning": reasoning,
            "reasoning_content": reasoning_content,
            "reasoning_details": reasoning_details,
            "codex_reasoning_items": codex_reasoning_items,
            "codex_message_items": codex_message_items,
            "platform_message_id": platform_message_id,
            "observed": observed,
            "effect_disposition": effect_disposition,
            "timestamp": timestamp,
            "api_content": api_content,
        }
        row = self._message(session_id, role, msg, batch=False)
        if row["source"] is None and not self._exists(session_id):
            raise _foreign_key_error()
        return _num(self._store.append_message(**row).num)

    def append_messages_batch(self, session_id: str, messages: Iterable[Mapping[str, Any]]) -> list[int]:
        """Not in Hermes 0.19.0: appends every message or none (one durable commit), as
        ``replace_messages`` inserts them; returns their row ids."""
        batch = self._batch(session_id, messages)
        if not batch:
            return []
        self._require(session_id)
        return [_num(a.num) for a in self._store.append_batch(batch)]

    def get_messages(
        self, session_id: str, include_inactive: bool = False, limit: int | None = None, offset: int = 0
    ) -> list[dict[str, Any]]:
        """Messages as Hermes rows in insertion order: the active ones, or every one with
        ``include_inactive``; ``limit`` / ``offset`` page them (SQL semantics: a negative
        limit is none, a negative offset 0)."""
        if self._overlay(session_id):
            # A rewind changed states the store keeps (see _lineage): the whole history, corrected.
            rows = [_message_row(*st) for st in self._effective_history(session_id) if st[1] or include_inactive]
        else:
            items = self._store.history(
                session_id, include_inactive=include_inactive, include_compacted=include_inactive
            )
            rows = [_message_row(h.message, h.active, h.compacted) for h in items]
        if limit is not None or offset:
            start = max(offset, 0)
            rows = rows[start:] if limit is None or limit < 0 else rows[start : start + limit]
        return rows

    def _lineage(self, session_id: str) -> list[str]:
        """The session and its ancestors, root first (at most 100, stopping at a cycle)."""
        if not session_id:
            return [session_id]
        chain: list[str] = []
        current: str | None = session_id
        while current and current not in chain and len(chain) < 100:
            chain.append(current)
            s = self._store.get_session(current)
            if s is None:
                break
            current = parent_of(s)
        return list(reversed(chain)) or [session_id]

    def get_messages_as_conversation(
        self,
        session_id: str,
        include_ancestors: bool = False,
        include_inactive: bool = False,
        repair_alternation: bool = False,
    ) -> list[dict[str, Any]]:
        """The conversation as OpenAI-format message dicts (see ``_conversation_dict``), in
        insertion order; with ``include_ancestors`` the lineage's messages (a user prompt
        repeated by a continuation dropped). Background-review prompts and their replies are
        left out; ``repair_alternation`` runs Hermes' ``repair_message_sequence`` (our own
        merge of consecutive user turns when Hermes is not installed)."""
        chain = self._lineage(session_id) if include_ancestors else [session_id]
        rows = [r for sid in dict.fromkeys(chain) for r in self.get_messages(sid, include_inactive=include_inactive)]
        rows.sort(key=lambda r: r["id"])
        out: list[dict[str, Any]] = []
        for row in rows:
            msg = _conversation_dict(row)
            if include_ancestors and _is_replayed_user_message(out, msg):
                continue
            out.append(msg)
        out = strip_review_harness(out)
        if repair_alternation and out:
            try:
                from agent.agent_runtime_helpers import (  # type: ignore[import-untyped,unused-ignore]
                    repair_message_sequence,
                )
            except ImportError:
                out = _repair_alternation(out)
            else:
                repair_message_sequence(None, out)
        return out

    def has_platform_message_id(self, session_id: str, platform_message_id: str) -> bool:
        """True if a message of the session (any state) has this platform message id."""
        if platform_message_id is None:
            return False
        for h in self._store.history(session_id, include_inactive=True, include_compacted=True):
            m = h.message
            if platform_message_id in (m.platform_message_id, (_loads(m.extra, {}) or {}).get("platform_message_id")):
                return True
        return False

    def update_message_content(self, session_id: str, message_id: int, content: Any) -> None:
        """Not in Hermes 0.19.0: replaces one message's content (a message not in the session:
        nothing, as Hermes' UPDATE; the store refuses it with NotFoundError)."""
        try:
            self._store.update_message(message_id, session_id, content=_encode_content(content))
        except NotFoundError:
            pass

    def set_message_api_content(self, session_id: str, message_id: int, api_content: str | None) -> None:
        """Not in Hermes 0.19.0: sets (empty clears) one message's ``api_content``."""
        try:
            self._store.update_message(message_id, session_id, api_content=api_content or "")
        except NotFoundError:
            pass

    def replace_messages(self, session_id: str, messages: list[dict[str, Any]], active_only: bool = False) -> None:
        """Replaces the history (/retry, /undo, /compress) in one durable entry: every message
        (with ``active_only``, the active ones) is deleted and ``messages`` are inserted."""
        batch = self._batch(session_id, messages)
        with self._store.exclusive():
            if not self._exists(session_id):
                if batch:
                    raise _foreign_key_error()
                return
            self._rewrite(session_id, "delete", batch, active_only)

    def archive_and_compact(self, session_id: str, compacted_messages: list[dict[str, Any]]) -> int:
        """Compacts in place, in one durable entry: the active messages become compacted
        (hidden from the live load, still searchable) and ``compacted_messages`` follow as the
        active set. Returns how many were inserted."""
        batch = self._batch(session_id, compacted_messages)
        with self._store.exclusive():
            if not self._exists(session_id):
                if batch:
                    raise _foreign_key_error()
                return 0
            self._rewrite(session_id, "compact", batch, True)
        return len(batch)

    def clear_messages(self, session_id: str) -> None:
        """Deletes every message of the session (the session stays)."""
        with self._store.exclusive():
            if self._exists(session_id):
                self._rewrite(session_id, "delete", [], False)

    def export_session(self, session_id: str) -> dict[str, Any] | None:
        """The session row with its active messages (``get_messages`` rows), or None."""
        row = self.get_session(session_id)
        if row is None:
            return None
        return {**row, "messages": self.get_messages(session_id)}

    def export_all(self, source: str | None = None) -> list[dict[str, Any]]:
        """Every session (``search_sessions`` order, up to 100,000) exported."""
        return [{**row, "messages": self.get_messages(row["id"])}
                for row in self.search_sessions(source=source, limit=100000)]

    # -- search ---------------------------------------------------------------------------

    def search_messages(
        self,
        query: str,
        source_filter: list[str] | None = None,
        exclude_sources: list[str] | None = None,
        role_filter: list[str] | None = None,
        limit: int = 20,
        offset: int = 0,
        sort: str | None = None,
        include_inactive: bool = False,
    ) -> list[dict[str, Any]]:
        """Hermes' full-text search, run by the store on its index (``Store.search_hermes``:
        Hermes' cleaning and routing, the ``unicode61`` word index, the trigram index for CJK,
        substrings for short CJK words; best ``bm25`` first, or by time with ``sort="newest"`` /
        ``"oldest"``). Rewound messages are left out unless ``include_inactive``; compacted ones
        are in. Each result has ``id``, ``session_id``, ``role``, ``snippet`` (matches in
        ``>>>``/``<<<``), ``timestamp``, ``tool_name``, the session's ``source``, ``model`` and
        ``session_started``, and ``context`` (the message and one either side, 200 characters
        each)."""
        if not query or not query.strip():
            return []
        # Hits of messages the compactor has not indexed yet are found too, but rank after the
        # index's (bm25 needs the index's statistics): wait for it, as the SQL view does.
        self._catch_up()
        start = max(offset, 0)
        # Messages whose state a rewind changed (see _lineage): the store does not know it, so
        # enough hits are asked for to page after dropping them.
        overlays = {r["session_id"]: self._overlay(r["session_id"]) for r in self._rows.scan("message_state")}
        hidden = sum(len(o) for o in overlays.values())
        wanted = start + limit + hidden if limit >= 0 else 1 << 31
        hits = self._store.search_hermes(
            query,
            source_filter=None if source_filter is None else [str(x) for x in source_filter],
            exclude_sources=None if exclude_sources is None else [str(x) for x in exclude_sources],
            role_filter=None if not role_filter else [str(x) for x in role_filter],
            sort=sort if isinstance(sort, str) else None,
            include_inactive=include_inactive,
            limit=wanted,
        )
        substrings = _substring_route(query)
        kept = []
        for h in hits:
            state = overlays.get(h.message.session_id, {}).get(h.message.num, (True, True))
            # Gone (a rewrite after a rewind), or rewound and not asked for; Hermes' substring
            # fallback reads rewound rows too.
            if state is None or (not include_inactive and not substrings and state == (False, False)):
                continue
            kept.append(h)
        page = kept[start:] if limit < 0 else kept[start : start + limit]
        sessions: dict[str, Session | None] = {}
        histories: dict[str, list[Message]] = {}
        results = []
        for h in page:
            m = h.message
            if m.session_id not in sessions:
                sessions[m.session_id] = self._store.get_session(m.session_id)
                gone = {n for n, st in overlays.get(m.session_id, {}).items() if st is None}
                every = self._store.history(m.session_id, include_inactive=True, include_compacted=True)
                histories[m.session_id] = sorted(
                    (x.message for x in every if x.message.num not in gone), key=lambda x: (x.timestamp, x.num)
                )
            sess = sessions[m.session_id]
            results.append(
                {
                    "id": m.num,
                    "session_id": m.session_id,
                    "role": m.role,
                    "snippet": h.snippet,
                    "timestamp": m.timestamp,
                    "tool_name": m.tool_name,
                    "source": sess.source if sess is not None else None,
                    "model": sess.model if sess is not None else None,
                    "session_started": sess.started_at if sess is not None else None,
                    "context": _context(histories[m.session_id], m.num),
                }
            )
        return results


def _substring_route(query: str) -> bool:
    """Whether Hermes answers ``query`` with its ``LIKE`` fallback (CJK words of one or two CJK
    characters, which trigrams cannot find), which reads rewound messages too."""
    cleaned = sanitize_fts5_query(query)
    if not contains_cjk(cleaned):
        return False
    raw = cleaned.strip('"').strip()
    cjk_words = [t for t in raw.split() if t.upper() not in ("AND", "OR", "NOT") and contains_cjk(t)]
    return count_cjk(raw) < 3 or any(count_cjk(t) < 3 for t in cjk_words)


def _foreign_key_error() -> sqlite3.IntegrityError:
    """What Hermes' SQLite raises for a message of, or a parent that is, a missing session."""
    return sqlite3.IntegrityError("FOREIGN KEY constraint failed")


# ---------------------------------------------------------------------------------------------


_T = TypeVar("_T")


def _page(items: list[_T], limit: int | None, offset: int, latest: bool) -> list[_T]:
    """``limit`` items after skipping ``offset`` (from the end with ``latest``), in order."""
    if limit is None:
        if not offset:
            return items
        return items[:-offset] if latest else items[offset:]
    if latest:
        end = max(len(items) - offset, 0)
        return items[max(end - limit, 0) : end]
    return items[offset : offset + limit]


class AsyncSessionDB:
    """Hermes' ``AsyncSessionDB``: every ``SessionDB`` call as a coroutine run in a worker thread
    (``asyncio.to_thread``). The store releases the GIL while it waits on the disk, so the loop
    keeps running meanwhile."""

    def __init__(self, db: SessionDB) -> None:
        self._db = db

    @property
    def db(self) -> SessionDB:
        return self._db

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._db, name)
        if not callable(attr):
            return attr

        async def offloaded(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(attr, *args, **kwargs)

        offloaded.__name__ = name
        return offloaded


def install() -> types.ModuleType:
    """Makes ``hermes_state.SessionDB`` and ``AsyncSessionDB`` these classes, so an unmodified
    Hermes gateway writes through tidelog. Patches Hermes' ``hermes_state`` if it is imported
    or importable (also its ``get_last_init_error``, so Hermes' messages report our open
    failures); otherwise installs a module of that name holding every public name of
    ``hermes_state`` (see ``__all__``). Returns the module. Call it before the gateway creates
    its ``SessionDB``."""
    module = _hermes_own_module()
    if module is None:
        module = types.ModuleType("hermes_state", "tidelog.hermes standing in for Hermes Agent's hermes_state")
        for name in __all__:
            setattr(module, name, globals()[name])
        for name in SQL_SCRIPT_NAMES:
            setattr(module, name, "")
        module.__dict__.update(logger=logger, T=T)
        sys.modules["hermes_state"] = module
    module.__dict__.update(SessionDB=SessionDB, AsyncSessionDB=AsyncSessionDB, get_last_init_error=get_last_init_error)
    expose_store(module, Path(DEFAULT_DB_PATH))
    return module
