"""``SessionDB`` methods of Hermes 0.19.0: Telegram topic bindings and modes, gateway routing entries, session peers
and the gateway's session lookups.

Where Hermes keeps what:

* ``telegram_dm_topic_mode`` (key ``chat_id``), ``telegram_dm_topic_bindings`` (key ``chat_id``, ``thread_id``) and
  ``gateway_routing`` (key ``scope``, ``session_key``) are generic rows (:class:`~tidelog.hermes._rows.Rows`), one
  journaled entry each, with Hermes' columns.
* A session's gateway peer is on the session: ``source``, ``user_id`` and ``chat_id`` in the store's model fields,
  ``session_key``, ``chat_type``, ``thread_id``, ``display_name`` and ``origin_json`` in its ``extra``. The store
  cannot set a model field back to empty; when Hermes would set ``user_id`` or ``chat_id`` to NULL the field is
  stored as ``""`` and named in the ``extra`` key :data:`NULLED_KEY`, which :func:`peer_columns` applies to the row.

Hermes binds these values to TEXT columns of SQLite: :func:`_sql_text` gives the text SQLite would store for a
value, or the error binding it raises, so equal calls give equal rows and equal errors.
"""

from __future__ import annotations

import contextlib
import math
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ._common import _loads

if TYPE_CHECKING:
    from .._tidelog import Message, Session, Store
    from ._rows import Rows

NULLED_KEY = "tidelog_nulled"
"""``extra`` key: the model fields (``user_id``, ``chat_id``) Hermes holds NULL although the store holds ``""``."""

PEER_COLUMNS = ("session_key", "chat_type", "thread_id", "display_name", "origin_json")
"""Hermes' session columns of the gateway peer that live in the session's ``extra``."""

_NULLABLE_MODEL_FIELDS = ("user_id", "chat_id")

_MODE = "telegram_dm_topic_mode"
_BINDINGS = "telegram_dm_topic_bindings"
_ROUTING = "gateway_routing"
_TOPIC_SCHEMA_KEY = "telegram_dm_topic_schema_version"
# Each table of a Hermes state.db this module keeps as rows: its primary key and its columns.
_IMPORTED_TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    _ROUTING: (("scope", "session_key"), ("scope", "session_key", "entry_json", "updated_at")),
    _MODE: (
        ("chat_id",),
        (
            "chat_id",
            "user_id",
            "enabled",
            "activated_at",
            "updated_at",
            "has_topics_enabled",
            "allows_users_to_create_topics",
            "capability_checked_at",
            "intro_message_id",
            "pinned_message_id",
        ),
    ),
    _BINDINGS: (
        ("chat_id", "thread_id"),
        ("chat_id", "thread_id", "user_id", "session_key", "session_id", "managed_mode", "linked_at", "updated_at"),
    ),
    # Not gateway tables, imported with them: per-model usage and asynchronous delegations.
    "session_model_usage": (
        ("session_id", "model", "billing_provider", "billing_base_url", "billing_mode", "task"),
        (
            "session_id",
            "model",
            "billing_provider",
            "billing_base_url",
            "billing_mode",
            "task",
            "api_call_count",
            "input_tokens",
            "output_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "reasoning_tokens",
            "estimated_cost_usd",
            "actual_cost_usd",
            "cost_status",
            "cost_source",
            "first_seen",
            "last_seen",
        ),
    ),
    "async_delegations": (
        ("delegation_id",),
        (
            "delegation_id",
            "origin_session",
            "origin_ui_session_id",
            "parent_session_id",
            "state",
            "dispatched_at",
            "completed_at",
            "updated_at",
            "event_json",
            "result_json",
            "delivery_state",
            "delivery_attempts",
            "delivered_at",
            "owner_pid",
            "owner_started_at",
            "task_json",
            "delivery_claim",
            "delivery_claimed_at",
        ),
    ),
}
_RECOVERABLE_END_REASONS = ("agent_close", "ws_orphan_reap")
_SQLITE_INT = 1 << 63


def _sql_text(value: Any, position: int = 1) -> Any:
    """The value SQLite stores for ``value`` bound to a TEXT column: text for numbers (``2`` -> ``"2"``, ``1.0`` ->
    ``"1.0"``), ``None`` for ``None`` and NaN; the error Python's ``sqlite3`` raises for a value it cannot bind."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        if not -_SQLITE_INT <= value < _SQLITE_INT:
            raise OverflowError("Python int too large to convert to SQLite INTEGER")
        return str(int(value))
    if isinstance(value, float):
        return _real_text(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError("tidelog.hermes keeps these columns as text; a bytes value (a BLOB in Hermes) is refused")
    kind = type(value).__name__
    raise sqlite3.ProgrammingError(f"Error binding parameter {position}: type '{kind}' is not supported")


def _real_text(value: float) -> str | None:
    """SQLite's text of a REAL (``printf("%!.15g")``)."""
    if math.isnan(value):
        return None
    if math.isinf(value):
        return "Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0.0"
    text = f"{value:.15g}"
    mantissa, e, exponent = text.partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    return mantissa + e + exponent


def _not_null(value: Any, column: str) -> Any:
    """``value``, or SQLite's error for NULL in a NOT NULL column."""
    if value is None:
        raise sqlite3.IntegrityError(f"NOT NULL constraint failed: {column}")
    return value


def _text_equal(stored: Any, given: Any) -> bool:
    """``COALESCE(column, '') = COALESCE(?, '')`` of SQLite: an expression without affinity, so a number given never
    equals the stored text."""
    left = "" if stored is None else stored
    right = "" if given is None else given
    return isinstance(right, str) and isinstance(left, str) and left == right


def _ascii_lower(text: str) -> str:
    """SQLite's ``LOWER()``: ASCII letters only."""
    return text.translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _extra_of(s: Session) -> dict[str, Any]:
    extra = _loads(s.extra, {}) or {}
    return extra if isinstance(extra, dict) else {}


def peer_columns(row: dict[str, Any]) -> None:
    """Completes a session row built from the store the way Hermes has its peer columns: every one of
    :data:`PEER_COLUMNS` present (``None`` when unset, a number as the text SQLite stores), and the fields named by
    :data:`NULLED_KEY` ``None``."""
    nulled = row.pop(NULLED_KEY, None)
    if isinstance(nulled, list):
        for field in nulled:
            if field in _NULLABLE_MODEL_FIELDS:
                row[field] = None
    for column in PEER_COLUMNS:
        value = row.get(column)
        row[column] = _sql_text(value) if isinstance(value, (int, float)) else value


def _peer(s: Session) -> dict[str, Any]:
    """The peer columns of a session as Hermes holds them (without building the whole row)."""
    extra = _extra_of(s)
    row: dict[str, Any] = {k: extra.get(k) for k in PEER_COLUMNS}
    row.update(source=s.source, user_id=s.user_id, chat_id=s.chat_id, started_at=s.started_at or 0.0)
    row[NULLED_KEY] = extra.get(NULLED_KEY)
    peer_columns(row)
    return row


class _GatewayMixin:
    """Mixed into ``tidelog.hermes.SessionDB``; uses its ``_store``, ``_rows``, ``_sources`` and ``_row``."""

    _store: Store
    _rows: Rows
    _sources: dict[str, str | None]

    if TYPE_CHECKING:

        def _row(self, s: Session, messages: list[Message] | None = None) -> dict[str, Any]: ...

    # -- deletion hook ---------------------------------------------------------------------------------------------

    def _gateway_forget_sessions(self, ids: Iterable[str]) -> int:
        """Deletes the Telegram topic bindings of deleted sessions (Hermes' ``ON DELETE CASCADE`` of
        ``telegram_dm_topic_bindings.session_id``); returns how many. To be called by every path that deletes
        sessions."""
        gone = set(ids)
        if not gone:
            return 0
        return self._rows.delete_where(
            _BINDINGS, lambda r: (r["chat_id"], r["thread_id"]), lambda r: r.get("session_id") in gone
        )

    def _gateway_import(self, db_path: str | os.PathLike[str]) -> dict[str, int]:
        """Copies the tables of an existing Hermes ``state.db`` beyond sessions and messages
        (``gateway_routing``, ``telegram_dm_topic_mode``, ``telegram_dm_topic_bindings``,
        ``session_model_usage``, ``async_delegations``, and every ``state_meta`` key) into rows; returns the rows copied per table. The file is opened
        read-only and immutable, as the store's import opens it; a table it lacks, or a column, is skipped (a
        missing column reads ``None``). To be called once, with the store's import of sessions and messages."""
        uri = "file:" + urllib.parse.quote(os.fspath(db_path)) + "?mode=ro&immutable=1"
        counts: dict[str, int] = {}
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
            tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            for table, (pk, columns) in _IMPORTED_TABLES.items():
                if table not in tables:
                    continue
                present = {info[1] for info in conn.execute(f'PRAGMA table_info("{table}")')}
                if not set(pk) <= present:
                    continue
                wanted = [c for c in columns if c in present]
                select = ", ".join(f'"{c}"' for c in wanted)
                n = 0
                for values in conn.execute(f'SELECT {select} FROM "{table}"'):
                    row = dict.fromkeys(columns)
                    for column, value in zip(wanted, values):
                        # A BLOB in a TEXT column (written as bytes) is kept as its text.
                        row[column] = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
                    self._rows.put(table, tuple(row[c] for c in pk), row)
                    n += 1
                counts[table] = n
            if "state_meta" in tables:
                # Every metadata key Hermes kept (the topic schema version among them).
                n = 0
                for key, value in conn.execute("SELECT key, value FROM state_meta"):
                    if key is not None and value is not None:
                        self._store.set_meta(str(key), str(value))
                        n += 1
                counts["state_meta"] = n
        return counts

    # -- session peers ---------------------------------------------------------------------------------------------

    def record_gateway_session_peer(
        self,
        session_id: str,
        *,
        source: str,
        user_id: str | None = None,
        session_key: str | None = None,
        chat_id: str | None = None,
        chat_type: str | None = None,
        thread_id: str | None = None,
        display_name: str | None = None,
        origin_json: str | None = None,
    ) -> None:
        """Records the gateway routing peer on an existing session: ``session_key``, ``source``, ``user_id``,
        ``chat_id``, ``chat_type`` and ``thread_id`` are set as given (``None`` clears), ``display_name`` and
        ``origin_json`` only when given. Nothing happens without ``session_id`` or ``session_key``, or for a session
        that does not exist; ``source=None`` on one that does raises ``sqlite3.IntegrityError``."""
        if not session_id or not session_key:
            return
        given = (session_key, source, user_id, chat_id, chat_type, thread_id, display_name, origin_json, session_id)
        key, src, uid, cid, ctype, tid, name, origin, sid = (_sql_text(v, i) for i, v in enumerate(given, 1))
        with self._store.exclusive():
            s = self._store.get_session(sid)
            if s is None:
                return
            _not_null(src, "sessions.source")
            extra = _extra_of(s)
            patch: dict[str, Any] = {"session_key": key, "chat_type": ctype, "thread_id": tid}
            if name is not None:
                patch["display_name"] = name
            if origin is not None:
                patch["origin_json"] = origin
            was = [f for f in extra.get(NULLED_KEY) or [] if f in _NULLABLE_MODEL_FIELDS]
            nulled = list(was)
            fields: dict[str, str | None] = {}
            for field, value in (("user_id", uid), ("chat_id", cid)):
                if value is not None:
                    fields[field] = value
                    nulled = [f for f in nulled if f != field]
                elif getattr(s, field) is not None and field not in nulled:
                    # The store keeps a set field: "" stands for NULL, named in NULLED_KEY.
                    fields[field] = ""
                    nulled.append(field)
            if sorted(nulled) != sorted(was):
                patch[NULLED_KEY] = sorted(nulled) or None
            # A null removes a key; one for a key not there is left out (nothing to remove).
            patch = {k: v for k, v in patch.items() if v is not None or k in extra}
            self._store.upsert_session(
                sid, source=src, user_id=fields.get("user_id"), chat_id=fields.get("chat_id"), extra=patch or None
            )
        self._sources.pop(sid, None)

    def _has_messages(self, session_id: str) -> bool:
        return bool(self._store.history(session_id, include_inactive=True, include_compacted=True, limit=1))

    def _last_active(self, s: Session) -> float:
        """The newest message's time (every message), else the session's start."""
        items = self._store.history(s.id, include_inactive=True, include_compacted=True)
        return max((h.message.timestamp for h in items), default=s.started_at or 0.0)

    def find_latest_gateway_session_for_peer(
        self,
        *,
        source: str,
        user_id: str | None = None,
        session_key: str | None = None,
        chat_id: str | None = None,
        chat_type: str | None = None,
        thread_id: str | None = None,
    ) -> dict[str, Any] | None:
        """The newest recoverable session row of a routing peer: one with messages that has not ended, or was ended
        only by ``agent_close`` or ``ws_orphan_reap``. Matched by ``session_key`` and ``source``; when none is, and
        both ``chat_id`` and ``chat_type`` are given, by the whole peer (``source``, ``user_id``, ``chat_id``,
        ``chat_type``, ``thread_id``; ``None`` matching an empty or unset column). ``None`` without ``session_key``."""
        if not session_key:
            return None
        key = _sql_text(session_key, 1)
        src = _sql_text(source, 2)
        candidates = []
        for s in self._store.list_sessions():
            if s.source != src or not (s.ended_at is None or s.end_reason in _RECOVERABLE_END_REASONS):
                continue
            candidates.append((s, _peer(s)))
        candidates.sort(key=lambda c: c[1]["started_at"], reverse=True)
        for s, peer in candidates:
            if peer["session_key"] == key and self._has_messages(s.id):
                return self._row(s)
        if chat_id is None or chat_type is None:
            return None
        wanted = {"user_id": user_id, "chat_id": chat_id, "chat_type": chat_type, "thread_id": thread_id}
        for s, peer in candidates:
            if all(_text_equal(peer[k], v) for k, v in wanted.items()) and self._has_messages(s.id):
                return self._row(s)
        return None

    def find_session_by_origin(
        self,
        *,
        platform: str,
        chat_id: str,
        thread_id: str | None = None,
        user_id: str | None = None,
    ) -> str | None:
        """The id of the newest live gateway session (one with a ``session_key``, not ended) of this platform
        (``source``, ASCII case ignored) and chat (and thread, when given). With ``user_id``, that user's session;
        if none is and the chat has several sessions, ``None``. Without, ``None`` when the chat's sessions belong to
        more than one user."""
        if not platform or chat_id in (None, ""):
            return None
        platform_text = _sql_text(platform, 1)
        chat = str(chat_id)
        thread = None if thread_id is None else str(thread_id)
        wanted = None if platform_text is None else _ascii_lower(platform_text)
        rows = []
        for s in self._store.list_sessions():
            if s.ended_at is not None or s.source is None or _ascii_lower(s.source) != wanted:
                continue
            peer = _peer(s)
            if peer["session_key"] is None or peer["chat_id"] != chat:
                continue
            if thread is not None and (peer["thread_id"] or "") != thread:
                continue
            rows.append({"id": s.id, "user_id": peer["user_id"], "started_at": peer["started_at"]})
        if not rows:
            return None
        rows.sort(key=lambda r: r["started_at"], reverse=True)
        if user_id:
            exact = [r for r in rows if str(r["user_id"] or "") == str(user_id)]
            if exact:
                return str(exact[0]["id"])
            if len(rows) > 1:
                return None
        elif len(rows) > 1:
            users = {str(r["user_id"] or "").strip() for r in rows} - {""}
            if len(users) > 1:
                return None
        return str(rows[0]["id"])

    def list_gateway_sessions(self, *, platform: str | None = None, active_only: bool = True) -> list[dict[str, Any]]:
        """The newest session of each ``session_key`` as Hermes rows with ``last_active`` (newest message, else the
        start), most recently active first. ``platform`` keeps one ``source`` (ASCII case ignored); ``active_only``
        drops those that ended (a key whose newest session ended is left out, not replaced by an older one)."""
        peers = [(s, _peer(s)) for s in self._store.list_sessions()]
        newest: dict[Any, float] = {}
        for _, peer in peers:
            key = peer["session_key"]
            if key is not None:
                newest[key] = max(newest.get(key, peer["started_at"]), peer["started_at"])
        wanted = None
        if platform:
            text = _sql_text(platform, 1)
            wanted = None if text is None else _ascii_lower(text)
        rows = []
        for s, peer in peers:
            key = peer["session_key"]
            if key is None or peer["started_at"] != newest[key]:
                continue
            if platform and (s.source is None or _ascii_lower(s.source) != wanted):
                continue
            if active_only and s.ended_at is not None:
                continue
            row = self._row(s)
            row["last_active"] = self._last_active(s)
            rows.append(row)
        rows.sort(key=lambda r: r["last_active"], reverse=True)
        return rows

    # -- gateway routing -------------------------------------------------------------------------------------------

    def save_gateway_routing_entry(self, session_key: str, entry_json: str, *, scope: str = "") -> None:
        """Inserts or replaces the routing entry ``session_key`` -> ``entry_json`` (a serialized ``SessionEntry``)
        of ``scope``; nothing without ``session_key`` or ``entry_json``."""
        if not session_key or not entry_json:
            return
        row = self._routing_row(scope, session_key, entry_json, time.time())
        self._rows.put(_ROUTING, (row["scope"], row["session_key"]), row)

    @staticmethod
    def _routing_row(scope: Any, session_key: Any, entry_json: Any, now: float) -> dict[str, Any]:
        values = [_sql_text(v, i) for i, v in enumerate((scope, session_key, entry_json), 1)]
        for value, column in zip(values, ("scope", "session_key", "entry_json")):
            _not_null(value, f"gateway_routing.{column}")
        return {"scope": values[0], "session_key": values[1], "entry_json": values[2], "updated_at": now}

    def replace_gateway_routing_entries(self, entries: Mapping[str, str], *, scope: str = "") -> None:
        """Makes ``entries`` (``{session_key: entry_json}``, empty keys and values skipped) the whole routing index
        of ``scope``: keys absent from it are removed; other scopes are untouched. All or nothing: a key given twice
        (as ``5`` and ``"5"``) raises ``sqlite3.IntegrityError`` and changes nothing."""
        now = time.time()
        where = _sql_text(scope, 1)
        rows: list[dict[str, Any]] = []
        keys: set[Any] = set()
        # Checked in Hermes' order (row by row: binding, NOT NULL, primary key) before anything is written.
        for k, v in entries.items() if entries else ():
            if not (k and v):
                continue
            row = self._routing_row(scope, k, v, now)
            if row["session_key"] in keys:
                raise sqlite3.IntegrityError(
                    "UNIQUE constraint failed: gateway_routing.scope, gateway_routing.session_key"
                )
            keys.add(row["session_key"])
            rows.append(row)
        with self._store.exclusive():
            wanted = keys
            self._rows.delete_where(
                _ROUTING,
                lambda r: (r["scope"], r["session_key"]),
                lambda r: r.get("scope") == where and r.get("session_key") not in wanted,
            )
            self._rows.put_many(_ROUTING, (((r["scope"], r["session_key"]), r) for r in rows))

    def load_gateway_routing_entries(self, *, scope: str = "") -> dict[str, str]:
        """The routing entries of ``scope`` as ``{session_key: entry_json}`` (in key order)."""
        where = _sql_text(scope, 1)
        rows = self._rows.scan(_ROUTING, lambda r: r.get("scope") == where) if where is not None else []
        rows.sort(key=lambda r: str(r["session_key"]).encode())
        return {r["session_key"]: r["entry_json"] for r in rows}

    def delete_gateway_routing_entries(self, session_keys: list[str], *, scope: str = "") -> None:
        """Removes the routing entries of these keys in ``scope``."""
        if not session_keys:
            return
        pks = [(_sql_text(scope, 1), _sql_text(k, 2)) for k in session_keys]
        for where, key in pks:
            if where is not None and key is not None:
                self._rows.delete(_ROUTING, where, key)

    # -- Telegram DM topics ----------------------------------------------------------------------------------------

    def apply_telegram_topic_migration(self) -> None:
        """Hermes creates its topic-mode tables here, on the first ``/topic``; rows need no table, so what remains
        is Hermes' record of it: the metadata ``telegram_dm_topic_schema_version`` is ``"2"``."""
        if self._store.get_meta(_TOPIC_SCHEMA_KEY) != "2":
            self._store.set_meta(_TOPIC_SCHEMA_KEY, "2")

    def enable_telegram_topic_mode(
        self,
        *,
        chat_id: str,
        user_id: str,
        has_topics_enabled: bool | None = None,
        allows_users_to_create_topics: bool | None = None,
    ) -> None:
        """Turns topic mode on for one private chat (and records its user and the chat's capabilities, ``None`` for
        unknown). The first enabling sets ``activated_at``; a later one keeps it."""
        self.apply_telegram_topic_migration()
        now = time.time()
        chat = str(chat_id)

        def flag(value: bool | None) -> int | None:
            return None if value is None else int(bool(value))

        with self._store.exclusive():
            row = self._rows.get(_MODE, chat) or {
                "chat_id": chat,
                "activated_at": now,
                "intro_message_id": None,
                "pinned_message_id": None,
            }
            row.update(
                user_id=str(user_id),
                enabled=1,
                updated_at=now,
                has_topics_enabled=flag(has_topics_enabled),
                allows_users_to_create_topics=flag(allows_users_to_create_topics),
                capability_checked_at=now,
            )
            self._rows.put(_MODE, (chat,), row)

    def disable_telegram_topic_mode(self, *, chat_id: str, clear_bindings: bool = True) -> None:
        """Turns topic mode off for a chat that has it; with ``clear_bindings`` (default) the chat's topic bindings
        are deleted too."""
        chat = str(chat_id)
        with self._store.exclusive():
            row = self._rows.get(_MODE, chat)
            if row is not None:
                row.update(enabled=0, updated_at=time.time())
                self._rows.put(_MODE, (chat,), row)
            if clear_bindings:
                self._rows.delete_where(
                    _BINDINGS, lambda r: (r["chat_id"], r["thread_id"]), lambda r: r.get("chat_id") == chat
                )

    def is_telegram_topic_mode_enabled(self, *, chat_id: str, user_id: str) -> bool:
        """Whether topic mode is on for this chat and user."""
        row = self._rows.get(_MODE, str(chat_id))
        return row is not None and row.get("user_id") == str(user_id) and bool(row.get("enabled"))

    def get_telegram_topic_binding(self, *, chat_id: str, thread_id: str) -> dict[str, Any] | None:
        """The binding row of a topic (``chat_id``, ``thread_id``, ``user_id``, ``session_key``, ``session_id``,
        ``managed_mode``, ``linked_at``, ``updated_at``), or ``None``."""
        return self._rows.get(_BINDINGS, str(chat_id), str(thread_id))

    def _bindings(self, **match: str) -> list[dict[str, Any]]:
        return self._rows.scan(_BINDINGS, lambda r: all(r.get(k) == v for k, v in match.items()))

    def list_telegram_topic_bindings_for_chat(self, *, chat_id: str) -> list[dict[str, Any]]:
        """Every binding row of one chat, most recently updated first."""
        rows = self._bindings(chat_id=str(chat_id))
        rows.sort(key=lambda r: r["updated_at"], reverse=True)
        return rows

    def get_telegram_topic_binding_by_session(self, *, session_id: str) -> dict[str, Any] | None:
        """The binding row of a session (a session has at most one), or ``None``."""
        rows = self._bindings(session_id=str(session_id))
        return rows[0] if rows else None

    def is_telegram_session_linked_to_topic(self, *, session_id: str) -> bool:
        """Whether the session is bound to a topic."""
        return bool(self._bindings(session_id=str(session_id)))

    def delete_telegram_topic_binding(self, *, chat_id: str, thread_id: str) -> int:
        """Deletes one topic's binding; returns how many rows went (0 or 1). Deleting the chat's last binding turns
        the chat's topic mode off."""
        chat, thread = str(chat_id), str(thread_id)
        with self._store.exclusive():
            if not self._rows.delete(_BINDINGS, chat, thread):
                return 0
            if not self._bindings(chat_id=chat):
                row = self._rows.get(_MODE, chat)
                if row is not None:
                    row.update(enabled=0, updated_at=time.time())
                    self._rows.put(_MODE, (chat,), row)
        return 1

    def bind_telegram_topic(
        self,
        *,
        chat_id: str,
        thread_id: str,
        user_id: str,
        session_key: str,
        session_id: str,
        managed_mode: str = "auto",
    ) -> None:
        """Binds a topic to a session (replacing the topic's earlier session; ``linked_at`` stays). Binding a topic
        to its own session again only updates it; a session bound to another topic raises ``ValueError``; a
        session that does not exist raises ``sqlite3.IntegrityError`` (Hermes' foreign key)."""
        self.apply_telegram_topic_migration()
        now = time.time()
        chat, thread, sid = str(chat_id), str(thread_id), str(session_id)
        with self._store.exclusive():
            for linked in self._bindings(session_id=sid):
                if (linked["chat_id"], linked["thread_id"]) != (chat, thread):
                    raise ValueError("session is already linked to another Telegram topic")
            mode = _not_null(_sql_text(managed_mode, 6), f"{_BINDINGS}.managed_mode")
            if self._store.get_session(sid) is None:
                raise sqlite3.IntegrityError("FOREIGN KEY constraint failed")
            old = self._rows.get(_BINDINGS, chat, thread)
            row = {
                "chat_id": chat,
                "thread_id": thread,
                "user_id": str(user_id),
                "session_key": str(session_key),
                "session_id": sid,
                "managed_mode": mode,
                "linked_at": now if old is None else old["linked_at"],
                "updated_at": now,
            }
            self._rows.put(_BINDINGS, (chat, thread), row)

    def list_unlinked_telegram_sessions_for_user(
        self, *, chat_id: str, user_id: str, limit: int = 10
    ) -> list[dict[str, Any]]:
        """The user's ``telegram`` sessions bound to no topic, most recently active first, at most ``limit`` (a
        negative one: all), as Hermes rows with ``last_active`` and ``preview`` (the first user message, newlines as
        spaces, 60 characters and ``...``). ``chat_id`` is not used, as in Hermes."""
        user, count = str(user_id), int(limit)
        bound = {r.get("session_id") for r in self._rows.scan(_BINDINGS)}
        rows = []
        for s in self._store.list_sessions():
            if s.source != "telegram" or s.id in bound or _peer(s)["user_id"] != user:
                continue
            items = self._store.history(s.id, include_inactive=True, include_compacted=True)
            row = self._row(s)
            row["last_active"] = max([h.message.timestamp for h in items], default=s.started_at or 0.0)
            firsts = sorted(
                (h.message for h in items if h.message.role == "user" and h.message.content is not None),
                key=lambda m: (m.timestamp, m.num),
            )
            row["preview"] = _topic_preview(firsts[0].content if firsts else None)
            rows.append(row)
        rows.sort(key=lambda r: (r["last_active"], r["started_at"] or 0.0), reverse=True)
        return rows if count < 0 else rows[:count]


def _topic_preview(content: str | None) -> str:
    """Hermes' preview of the topic picker: the stored text up to a NUL (where SQLite's ``SUBSTR`` stops), line
    breaks as spaces, its first 63 characters stripped, then cut to 60 with ``...``."""
    if not content:
        return ""
    raw = content.split("\x00", 1)[0].replace("\n", " ").replace("\r", " ")[:63].strip()
    return raw[:60] + ("..." if len(raw) > 60 else "") if raw else ""
