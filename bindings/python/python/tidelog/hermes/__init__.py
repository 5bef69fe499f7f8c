"""A drop-in ``SessionDB`` for Hermes Agent, writing through a tidelog store.

Hermes Agent keeps its sessions in ``hermes_state.SessionDB`` over a SQLite file, ``state.db``.
This module offers a class with the same public calls and results, built on :class:`tidelog.Store`:
every write is a journal append synced before the call returns, and the SQLite file search reads
is derived by the store (never a file of ours). Two lines make an unmodified gateway use it::

    import tidelog.hermes
    tidelog.hermes.install()

``SessionDB(db_path)`` takes the path Hermes passes (its ``state.db``); the store lives beside it
in ``<state.db>.tidelog/``. On the first open, an existing ``state.db`` there is imported (opened
read-only, never changed). See ``bindings/python/README.md`` for what is approximated.

>>> import tempfile, os
>>> from tidelog.hermes import SessionDB
>>> with SessionDB(os.path.join(tempfile.mkdtemp(), "state.db")) as db:
...     sid = db.create_session("s1", "cli", model="m")
...     first = db.append_message(sid, "user", "Where is the chat-send config?")
...     second = db.append_message(sid, "assistant", "In my-app.config.ts.")
...     [first < second, [h["snippet"] for h in db.search_messages("chat-send")]]
[True, ['Where is the >>>chat-send<<< config?']]
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import re
import sys
import time
import types
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from .._errors import HermesImportError, NotFoundError, TitleTakenError
from .._tidelog import Message, SearchHit, Session, Store

from ._coordination import _CoordinationMixin
from ._gateway import _GatewayMixin
from ._lineage import _LineageMixin
from ._maintenance import _MaintenanceMixin
from ._rows import ROW_PREFIX, Rows
from ._common import (
    IMPORT_META_KEY,
    MAX_TITLE_LENGTH,
    _EXTRA_MESSAGE_FIELDS,
    _COUNTERS,
    _COSTS,
    _INHERITED,
    _ROUTE_FIELDS,
    sanitize_fts5_query,
    _Term,
    _parse,
    _encode_content,
    _tool_calls_json,
    _loads,
    sanitize_title,
    store_path_for,
    _default_db_path,
    _num,
    _count_tool_calls,
    _message_row,
    _conversation_dict,
    _repair_alternation,
    _preview,
    _satisfies,
    _snippet,
    _context,
)
__all__ = ["SessionDB", "AsyncSessionDB", "install", "sanitize_fts5_query", "store_path_for"]
_log = logging.getLogger("tidelog.hermes")


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


class SessionDB(_GatewayMixin, _CoordinationMixin, _LineageMixin, _MaintenanceMixin):
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
        self.db_path = Path(db_path) if db_path is not None else _default_db_path()
        self.read_only = read_only
        self.store_path = store_path_for(self.db_path)
        if not read_only:
            self.store_path.parent.mkdir(parents=True, exist_ok=True)
        self._store = Store(self.store_path, read_only=read_only, **store_options)
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

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> SessionDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<tidelog.hermes.SessionDB {str(self.db_path)!r} store={str(self.store_path)!r}>"

    # -- sessions -------------------------------------------------------------------------

    def create_session(
        self,
        session_id: str,
        source: str,
        model: str | None = None,
        model_config: Any = None,
        system_prompt: str | None = None,
        user_id: str | None = None,
        parent_session_id: str | None = None,
        **fields: Any,
    ) -> str:
        """Creates the session, or fills in what an earlier writer left empty: a value already
        set is never overwritten. A child inherits ``cwd``, git and profile fields from its
        parent. Returns the session id."""
        extra: dict[str, Any] = {}
        if model_config is not None:
            extra["model_config"] = model_config if isinstance(model_config, str) else json.dumps(model_config)
        if system_prompt is not None:
            extra["system_prompt"] = system_prompt
        chat_id = fields.pop("chat_id", None)
        title = fields.pop("title", None)
        started_at = fields.pop("started_at", None)
        for k, v in fields.items():
            if v is not None:
                extra[k] = v
        if parent_session_id:
            parent = self._store.get_session(parent_session_id)
            if parent is not None:
                pextra = _loads(parent.extra, {}) or {}
                for k in _INHERITED:
                    if k not in extra and pextra.get(k) is not None:
                        extra[k] = pextra[k]
        self._store.upsert_session(
            session_id,
            source=source,
            model=model,
            title=sanitize_title(title) if title else None,
            user_id=None if user_id is None else str(user_id),
            chat_id=None if chat_id is None else str(chat_id),
            parent_session_id=parent_session_id,
            started_at=time.time() if started_at is None else float(started_at),
            extra=extra or None,
            fill_only=True,
        )
        # The stored source is the first one set (fill_only): read it again when next needed.
        self._sources.pop(session_id, None)
        return session_id

    def ensure_session(self, session_id: str, source: str = "unknown", model: str | None = None, **fields: Any) -> str:
        """Creates the session if it does not exist (same upsert as ``create_session``)."""
        return self.create_session(session_id, source, model=model, **fields)

    def end_session(self, session_id: str, end_reason: str) -> None:
        self._store.end_session(session_id, end_reason)

    def reopen_session(self, session_id: str) -> None:
        self._store.reopen_session(session_id)

    def update_system_prompt(self, session_id: str, system_prompt: str) -> None:
        self._store.upsert_session(session_id, extra={"system_prompt": system_prompt})

    def update_session_model(self, session_id: str, model: str, model_config: Any = None) -> None:
        extra = None
        if model_config is not None:
            extra = {"model_config": model_config if isinstance(model_config, str) else json.dumps(model_config)}
        self._store.upsert_session(session_id, model=model, extra=extra)

    def _row(self, s: Session, messages: list[Message] | None = None) -> dict[str, Any]:
        """A session as Hermes returns its row: the columns, with extra fields flattened in."""
        extra = _loads(s.extra, {}) or {}
        if not isinstance(extra, dict):
            extra = {}
        row: dict[str, Any] = dict(extra)
        row.update(
            id=s.id,
            source=s.source,
            model=s.model,
            title=s.title,
            user_id=s.user_id,
            chat_id=s.chat_id,
            parent_session_id=s.parent_session_id,
            started_at=s.started_at,
            ended_at=s.ended_at,
            end_reason=s.end_reason,
        )
        row.setdefault("model_config", None)
        row.setdefault("system_prompt", None)
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
        s = self._store.get_session(session_id)
        return None if s is None else self._row(s)

    def _source_of(self, session_id: str) -> str | None:
        if session_id not in self._sources:
            s = self._store.get_session(session_id)
            self._sources[session_id] = s.source if s is not None else None
        return self._sources[session_id]

    # -- titles ---------------------------------------------------------------------------

    def set_session_title(self, session_id: str, title: str | None) -> bool:
        """Sets (an empty title clears) the title. Titles are unique: one another session has
        raises ``ValueError``. False if the session does not exist."""
        cleaned = sanitize_title(title)
        if self._store.get_session(session_id) is None:
            return False
        try:
            self._store.set_title(session_id, cleaned)
        except TitleTakenError as e:
            raise ValueError(f"Title '{cleaned}' is already in use by session {e.other}") from e
        return True

    def get_session_title(self, session_id: str) -> str | None:
        s = self._store.get_session(session_id)
        return s.title if s is not None else None

    def _titled(self, needle: str) -> list[Session]:
        return [s for s in self._store.list_sessions(title_contains=needle) if s.title is not None]

    def get_session_by_title(self, title: str) -> dict[str, Any] | None:
        for s in self._titled(title):
            if s.title == title:
                return self._row(s)
        return None

    def resolve_session_by_title(self, title: str) -> str | None:
        """The session with this title, preferring the newest ``"<title> #N"`` continuation."""
        sessions = self._titled(title)
        numbered = [s for s in sessions if s.title is not None and s.title.startswith(title + " #")]
        if numbered:
            numbered.sort(key=lambda s: s.started_at or 0.0, reverse=True)
            return numbered[0].id
        exact = [s for s in sessions if s.title == title]
        return exact[0].id if exact else None

    def get_next_title_in_lineage(self, base_title: str) -> str:
        """``"my session"`` -> ``"my session #2"`` (or one past the highest number taken)."""
        m = re.match(r"^(.*?) #(\d+)$", base_title)
        base = m.group(1) if m else base_title
        taken = [s.title for s in self._titled(base) if s.title == base or (s.title or "").startswith(base + " #")]
        if not taken:
            return base
        numbers = [1]
        for t in taken:
            tm = re.match(r"^(.*?) #(\d+)$", t or "")
            if tm and tm.group(1) == base:
                numbers.append(int(tm.group(2)))
        return f"{base} #{max(numbers) + 1}"

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
        api_call_count: int = 0,
        absolute: bool = False,
        **route: Any,
    ) -> None:
        """Adds token, API-call and cost deltas (``absolute=True`` sets the totals instead).
        ``model`` fills an empty model; route fields (``cost_status``, ``billing_provider``, ...)
        are recorded on the session."""
        values: dict[str, Any] = {
            "input_tokens": int(input_tokens or 0),
            "output_tokens": int(output_tokens or 0),
            "cache_read_tokens": int(cache_read_tokens or 0),
            "cache_write_tokens": int(cache_write_tokens or 0),
            "reasoning_tokens": int(reasoning_tokens or 0),
            "api_call_count": int(api_call_count or 0),
            "estimated_cost_usd": float(estimated_cost_usd or 0.0),
            "actual_cost_usd": float(actual_cost_usd or 0.0),
        }
        if absolute:
            # The store's counters are additive: turn the totals into deltas from what is stored.
            current = self.get_session(session_id) or {}
            for k in values:
                given = {"estimated_cost_usd": estimated_cost_usd, "actual_cost_usd": actual_cost_usd}.get(k, 0)
                if given is None:
                    values[k] = 0.0
                elif k in _COSTS:
                    values[k] = values[k] - float(current.get(k) or 0.0)
                else:
                    values[k] = values[k] - int(current.get(k) or 0)
        if any(values.values()):
            self._store.add_counters(session_id, **values)
        route_extra = {k: v for k, v in route.items() if k in _ROUTE_FIELDS and v is not None}
        if model is not None:
            self._store.upsert_session(session_id, model=model, fill_only=True)
        if route_extra:
            self._store.upsert_session(session_id, extra=route_extra)

    def queue_token_counts(self, session_id: str, **deltas: Any) -> None:
        """Hermes queues deltas for a writer thread; here each is one durable append."""
        self.update_token_counts(session_id, **deltas)

    def flush_token_counts(self, timeout: float | None = None) -> bool:
        """Nothing is queued: every delta is durable when ``queue_token_counts`` returns."""
        return True

    # -- listings and counts --------------------------------------------------------------

    def session_count(self, source: str | None = None) -> int:
        return len(self._store.list_sessions(source=source))

    def message_count(self, session_id: str | None = None) -> int:
        counts = self._store.message_counts()
        return counts.get(session_id, 0) if session_id is not None else sum(counts.values())

    def list_sessions_rich(
        self,
        source: str | None = None,
        sources: Collection[str] | None = None,
        exclude_sources: Collection[str] | None = None,
        limit: int = 20,
        offset: int = 0,
        include_archived: bool = False,
        order_by_last_active: bool = False,
        id_query: str | None = None,
        include_children: bool = False,
        **_ignored: Any,
    ) -> list[dict[str, Any]]:
        """Sessions newest first (or by last activity), with ``message_count``, ``preview`` (the
        first user message, 60 characters) and ``last_active``. Children a compression or a
        subagent made are hidden unless ``include_children``."""
        all_sessions = self._store.list_sessions(source=source)
        by_id = {s.id: s for s in all_sessions}
        picked = []
        for s in all_sessions:
            extra = _loads(s.extra, {}) or {}
            if sources is not None and s.source not in sources:
                continue
            if exclude_sources is not None and s.source in exclude_sources:
                continue
            if not include_archived and extra.get("archived"):
                continue
            if id_query and id_query.lower() not in s.id.lower():
                continue
            if not include_children and s.parent_session_id:
                parent = by_id.get(s.parent_session_id)
                compression = parent is not None and parent.end_reason == "compression"
                if compression or s.source == "subagent" or extra.get("subagent"):
                    continue
            picked.append(s)
        rows = []
        page_known = not order_by_last_active
        window = picked[offset : offset + limit] if page_known else picked
        for s in window:
            msgs = self._store.messages(s.id)
            row = self._row(s, msgs)
            row["preview"] = _preview(msgs)
            row["last_active"] = max([m.timestamp for m in msgs] + [s.started_at or 0.0])
            rows.append(row)
        if order_by_last_active:
            rows.sort(key=lambda r: r["last_active"], reverse=True)
            rows = rows[offset : offset + limit]
        return rows

    def search_sessions(self, source: str | None = None, limit: int = 20, offset: int = 0) -> list[dict[str, Any]]:
        """The early listing call: sessions newest first."""
        sessions = self._store.list_sessions(source=source)[offset : offset + limit]
        return [self._row(s) for s in sessions]

    # -- metadata -------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        return self._store.get_meta(key)

    def set_meta(self, key: str, value: str | None) -> None:
        self._store.set_meta(key, None if value is None else str(value))

    def list_meta_prefix(self, prefix: str) -> list[tuple[str, str]]:
        if not prefix:
            return []
        return [(k, v) for k, v in self._store.all_meta().items() if k.startswith(prefix) and not k.startswith(ROW_PREFIX)]

    # -- messages -------------------------------------------------------------------------

    def _message(self, session_id: str, role: str, msg: Mapping[str, Any]) -> dict[str, Any]:
        """Keyword arguments of ``tidelog.Message`` for a Hermes message dict."""
        extra = {}
        for k in _EXTRA_MESSAGE_FIELDS:
            v = msg.get(k)
            if v:
                extra[k] = v
        ts = msg.get("timestamp")
        return {
            "session_id": session_id,
            "role": role,
            "content": _encode_content(msg.get("content")),
            "tool_call_id": msg.get("tool_call_id"),
            "tool_name": msg.get("tool_name") or (msg.get("name") if role == "tool" else None),
            "tool_calls": _tool_calls_json(msg.get("tool_calls")),
            "reasoning": msg.get("reasoning") if isinstance(msg.get("reasoning"), str) else None,
            "timestamp": float(ts) if isinstance(ts, (int, float)) and ts > 0 else time.time(),
            "token_count": msg.get("token_count"),
            "finish_reason": msg.get("finish_reason"),
            "source": self._source_of(session_id),
            "extra": extra or None,
            "platform_message_id": msg.get("platform_message_id") or msg.get("message_id"),
            "api_content": msg.get("api_content") if isinstance(msg.get("api_content"), str) else None,
        }

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
        **fields: Any,
    ) -> int:
        """Appends a message, durable on return; returns its integer row id (increasing in
        append order). Locking and lease arguments of Hermes are accepted and ignored."""
        msg = dict(fields)
        msg.update(
            content=content,
            tool_name=tool_name,
            tool_calls=tool_calls,
            tool_call_id=tool_call_id,
            token_count=token_count,
            finish_reason=finish_reason,
            reasoning=reasoning,
        )
        appended = self._store.append_message(**self._message(session_id, role, msg))
        return _num(appended.num)

    def append_messages_batch(self, session_id: str, messages: Iterable[Mapping[str, Any]], **_ignored: Any) -> list[int]:
        """Appends every message or none (one durable commit); returns their row ids."""
        batch = [self._message(session_id, str(m.get("role") or "user"), m) for m in messages]
        if not batch:
            return []
        return [_num(a.num) for a in self._store.append_batch(batch)]

    def get_messages(
        self,
        session_id: str,
        include_inactive: bool = False,
        include_compacted: bool = False,
        limit: int | None = None,
        offset: int = 0,
        latest: bool = False,
        after_id: int | None = None,
        **_ignored: Any,
    ) -> list[dict[str, Any]]:
        """Messages as Hermes rows, ordered by row id. Default: the active ones;
        ``include_compacted`` adds compacted ones, ``include_inactive`` every one."""
        query: dict[str, Any] = {
            "include_inactive": include_inactive,
            "include_compacted": include_inactive or include_compacted,
            "after_id": after_id,
        }
        if offset:
            items = self._store.history(session_id, **query)
            if limit is None:
                items = items[:-offset] if latest else items[offset:]
            elif latest:
                end = max(len(items) - offset, 0)
                items = items[max(end - limit, 0) : end]
            else:
                items = items[offset : offset + limit]
        else:
            items = self._store.history(session_id, limit=limit, latest=latest, **query)
        return [_message_row(h.message, h.active, h.compacted) for h in items]

    def get_messages_as_conversation(
        self,
        session_id: str,
        include_ancestors: bool = False,
        include_inactive: bool = False,
        repair_alternation: bool = False,
        include_row_ids: bool = False,
        include_compacted: bool = False,
        **_ignored: Any,
    ) -> list[dict[str, Any]]:
        """The conversation as OpenAI-format message dicts (``role``, ``content``, and when set
        ``tool_calls``, ``tool_call_id``, ``name``, ``reasoning``, ``message_id``,
        ``api_content``); with ``include_ancestors`` the parent chain's messages come first."""
        chain = [session_id]
        if include_ancestors:
            seen = {session_id}
            s = self._store.get_session(session_id)
            while s is not None and s.parent_session_id and s.parent_session_id not in seen and len(chain) < 32:
                seen.add(s.parent_session_id)
                chain.insert(0, s.parent_session_id)
                s = self._store.get_session(s.parent_session_id)
        out: list[dict[str, Any]] = []
        for sid in chain:
            for row in self.get_messages(sid, include_inactive=include_inactive, include_compacted=include_compacted):
                out.append(_conversation_dict(row, include_row_ids))
        if repair_alternation:
            out = _repair_alternation(out)
        return out

    def has_platform_message_id(self, session_id: str, platform_message_id: str) -> bool:
        if not platform_message_id:
            return False
        for h in self._store.history(session_id, include_inactive=True, include_compacted=True):
            m = h.message
            if platform_message_id in (m.platform_message_id, (_loads(m.extra, {}) or {}).get("platform_message_id")):
                return True
        return False

    def update_message_content(self, session_id: str, message_id: int, content: Any) -> None:
        # Hermes' UPDATE of a message that is not in the session changes nothing; tidelog refuses
        # it (NotFoundError), which this compatibility layer keeps silent as Hermes does.
        try:
            self._store.update_message(message_id, session_id, content=_encode_content(content))
        except NotFoundError:
            pass

    def set_message_api_content(self, session_id: str, message_id: int, api_content: str | None) -> None:
        try:
            self._store.update_message(message_id, session_id, api_content=api_content or "")
        except NotFoundError:
            pass

    def replace_messages(
        self,
        session_id: str,
        messages: Iterable[Mapping[str, Any]],
        active_only: bool = False,
        archive_dropped: bool = False,
        **_ignored: Any,
    ) -> list[int]:
        """Replaces the history (/retry, /undo, /compress): every earlier message (with
        ``active_only``, the active ones) is deleted, or archived with ``archive_dropped``, and
        ``messages`` are appended, in one durable entry. Returns the new row ids."""
        batch = [self._message(session_id, str(m.get("role") or "user"), m) for m in messages]
        mode: Literal["delete", "archive"] = "archive" if archive_dropped else "delete"
        return [_num(a.num) for a in self._store.rewrite(session_id, mode, batch, active_only=active_only)]

    def archive_and_compact(
        self,
        session_id: str,
        compacted_messages: Iterable[Mapping[str, Any]],
        model_config_patch: Mapping[str, Any] | None = None,
        watermark: int | None = None,
        **_ignored: Any,
    ) -> list[int]:
        """Compacts in place: the active messages become compacted (hidden, still searchable)
        and ``compacted_messages`` (the summary) follow; active messages newer than
        ``watermark`` are copied after the summary. Returns the new row ids."""
        batch = [self._message(session_id, str(m.get("role") or "user"), m) for m in compacted_messages]
        if watermark is not None:
            for h in self._store.history(session_id, after_id=watermark):
                row = _message_row(h.message, True, False)
                batch.append(self._message(session_id, h.message.role, row))
        if model_config_patch:
            s = self._store.get_session(session_id)
            config = _loads((_loads(s.extra, {}) or {}).get("model_config") if s is not None else None, {}) or {}
            if not isinstance(config, dict):
                config = {}
            config.update(model_config_patch)
            self._store.upsert_session(session_id, extra={"model_config": json.dumps(config)})
        return [_num(a.num) for a in self._store.rewrite(session_id, "compact", batch, active_only=True)]

    def clear_messages(self, session_id: str) -> None:
        """Deletes every message of the session (the session stays)."""
        self._store.rewrite(session_id, "delete")

    def delete_session(self, session_id: str) -> bool:
        """Deletes the session, its messages and its children. False if it did not exist."""
        if self._store.get_session(session_id) is None:
            return False
        self._store.delete_sessions([session_id], with_children=True)
        self._sources.pop(session_id, None)
        return True

    def export_session(self, session_id: str) -> dict[str, Any] | None:
        """The session row with its messages (every one, archived and compacted included)."""
        s = self._store.get_session(session_id)
        if s is None:
            return None
        row = self._row(s)
        row["messages"] = self.get_messages(session_id, include_inactive=True, include_compacted=True)
        return row

    def export_all(self, source: str | None = None) -> list[dict[str, Any]]:
        out = []
        for s in self._store.list_sessions(source=source):
            exported = self.export_session(s.id)
            if exported is not None:
                out.append(exported)
        return out

    # -- search ---------------------------------------------------------------------------

    _SEARCH_FIELDS = (
        "id",
        "session_id",
        "role",
        "snippet",
        "timestamp",
        "tool_name",
        "source",
        "model",
        "session_started",
        "context",
    )

    def search_messages(
        self,
        query: str,
        source_filter: Collection[str] | None = None,
        exclude_sources: Collection[str] | None = None,
        role_filter: Collection[str] | None = None,
        limit: int = 20,
        offset: int = 0,
        sort: str | None = None,
        include_inactive: bool = False,
        fields: Collection[str] | None = None,
        include_reasoning: bool = False,
    ) -> list[dict[str, Any]]:
        """Full-text search with Hermes' query language (words ANDed, ``"phrases"``, OR, NOT,
        ``prefix*``) and results (``snippet`` with ``>>>``/``<<<`` around matches, session
        fields, one message of ``context`` either side). Words match whole words first; when
        nothing matches, as substrings (Hermes' trigram fallback); CJK text always as
        substrings. ``include_reasoning`` is accepted; reasoning text is not searched."""
        if fields is not None:
            if isinstance(fields, str):
                raise TypeError("search fields must be a collection of field names, not a string")
            unknown = set(fields) - set(self._SEARCH_FIELDS)
            if unknown:
                raise ValueError(f"unknown search result field(s): {', '.join(sorted(unknown))}")
        if not query or not query.strip():
            return []
        groups = _parse(sanitize_fts5_query(query))
        if not groups:
            return []
        orders: dict[str, Literal["newest", "oldest"]] = {"newest": "newest", "oldest": "oldest"}
        order: Literal["relevance", "newest", "oldest"] = orders.get((sort or "").strip().lower(), "relevance")
        sessions: dict[str, Session | None] = {}

        def session(sid: str) -> Session | None:
            if sid not in sessions:
                sessions[sid] = self._store.get_session(sid)
            return sessions[sid]

        def accept(h: SearchHit) -> bool:
            m = h.message
            s = session(m.session_id)
            src = s.source if s is not None else m.source
            if source_filter is not None and src not in source_filter:
                return False
            if exclude_sources is not None and src in exclude_sources:
                return False
            if role_filter and m.role not in role_filter:
                return False
            return (_loads(m.extra, {}) or {}).get("display_kind") != "hidden"

        wanted = offset + limit
        role = next(iter(role_filter)) if role_filter and len(role_filter) == 1 else None
        src_one = next(iter(source_filter)) if source_filter is not None and len(source_filter) == 1 else None
        found: list[tuple[SearchHit, list[_Term]]] = []
        for whole_words in (True, False):
            found = self._search_groups(groups, whole_words, order, wanted, include_inactive, role, src_one, accept)
            if found:
                break
        page = found[offset : offset + limit]
        rows = []
        histories: dict[str, list[Message]] = {}
        for h, terms in page:
            m = h.message
            s = session(m.session_id)
            row: dict[str, Any] = {
                "id": m.num,
                "session_id": m.session_id,
                "role": m.role,
                "snippet": _snippet(m, terms),
                "timestamp": m.timestamp,
                "tool_name": m.tool_name,
                "source": s.source if s is not None else m.source,
                "model": s.model if s is not None else None,
                "session_started": s.started_at if s is not None else None,
            }
            if fields is None or "context" in fields:
                if m.session_id not in histories:
                    items = self._store.history(m.session_id, include_inactive=True, include_compacted=True)
                    histories[m.session_id] = sorted((i.message for i in items), key=lambda x: (x.timestamp, x.num))
                row["context"] = _context(histories[m.session_id], m.num)
            if fields is not None:
                row = {k: row[k] for k in self._SEARCH_FIELDS if k in fields and k in row}
            rows.append(row)
        return rows

    def _search_groups(
        self,
        groups: list[list[_Term]],
        whole_words: bool,
        order: Literal["relevance", "newest", "oldest"],
        wanted: int,
        include_inactive: bool,
        role: str | None,
        source: str | None,
        accept: Callable[[SearchHit], bool],
    ) -> list[tuple[SearchHit, list[_Term]]]:
        """Runs each OR group through the store (its words ANDed as substrings), keeps the hits
        whose text satisfies the group's terms, and merges the groups."""
        merged: dict[str, tuple[SearchHit, list[_Term]]] = {}
        for group in groups:
            positive = [t for t in group if not t.negated]
            text = " ".join(w for t in positive for w in t.words())
            fetch = max(wanted * 4, 50)
            while True:
                hits = self._store.search(
                    text,
                    role=role,
                    source=source,
                    limit=fetch,
                    order=order,
                    include_inactive=include_inactive,
                    syntax="words",
                )
                kept = [h for h in hits if accept(h) and _satisfies(h.message, group, whole_words)]
                if len(kept) >= wanted or len(hits) < fetch or fetch >= 100_000:
                    break
                fetch *= 4
            for h in kept:
                merged.setdefault(h.message.id, (h, positive))
        found = list(merged.values())
        if order != "relevance" or len(groups) > 1:
            reverse = order != "oldest"
            if order == "relevance":
                found.sort(key=lambda x: x[0].score, reverse=True)
            else:
                found.sort(key=lambda x: (x[0].message.timestamp, x[0].message.num), reverse=reverse)
        return found


# ---------------------------------------------------------------------------------------------


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
    Hermes gateway writes through tidelog. Patches ``hermes_state`` if it is imported or
    importable; otherwise installs a module of that name holding these classes. Returns the
    module patched. Call it before the gateway creates its ``SessionDB``."""
    module: types.ModuleType
    if "hermes_state" in sys.modules:
        module = sys.modules["hermes_state"]
    else:
        try:
            module = importlib.import_module("hermes_state")
        except ImportError:
            module = types.ModuleType("hermes_state", "tidelog.hermes standing in for Hermes Agent's hermes_state")
            sys.modules["hermes_state"] = module
    setattr(module, "SessionDB", SessionDB)
    setattr(module, "AsyncSessionDB", AsyncSessionDB)
    module.__dict__.setdefault("DEFAULT_DB_PATH", _default_db_path())
    return module
