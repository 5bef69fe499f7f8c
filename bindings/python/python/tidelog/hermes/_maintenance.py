"""``SessionDB`` methods of Hermes 0.19.0: pruning, archiving, empty sessions, vacuum and FTS
maintenance, bulk import and session metadata updates.

Deleting a session in tidelog erases it (its messages leave every file of the store). Hermes'
rules for the children of a deleted session are kept: delegate subagent runs (``model_config``
carries ``_delegate_from``) go with the sessions ``delete_session`` / ``delete_sessions`` delete,
every other child is orphaned (its ``parent_session_id`` becomes ``None``). The store has no way to
clear a field, so an orphan's parent is stored as ``""``, which every read reports as ``None``.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import TitleTakenError
from ._common import ORPHANED_KEY, _loads, parent_of, sanitize_title

if TYPE_CHECKING:
    import os

    from .._tidelog import Message, Session, Store
    from ._rows import Rows

# Hermes' limits on one ``import_sessions`` payload.
_IMPORT_MAX_SESSIONS = 500
_IMPORT_MAX_MESSAGES_PER_SESSION = 10_000
_IMPORT_MAX_TOTAL_MESSAGES = 50_000
_IMPORT_MAX_SESSION_BYTES = 5 * 1024 * 1024
_IMPORT_MAX_TOTAL_BYTES = 25 * 1024 * 1024
# Session columns ``import_sessions`` takes as text (anything else there is refused).
_IMPORT_SESSION_TEXT = (
    "source",
    "user_id",
    "model",
    "system_prompt",
    "end_reason",
    "cwd",
    "git_branch",
    "git_repo_root",
    "billing_provider",
    "billing_base_url",
    "billing_mode",
    "cost_status",
    "cost_source",
    "pricing_version",
    "title",
)
_IMPORT_MESSAGE_TEXT = (
    "tool_call_id",
    "tool_name",
    "effect_disposition",
    "finish_reason",
    "reasoning",
    "reasoning_content",
    "platform_message_id",
    "message_id",
)
# Session columns an import restores into the session's extra (the store has no field for them).
_IMPORT_SESSION_EXTRA = (
    "system_prompt",
    "cwd",
    "git_branch",
    "git_repo_root",
    "billing_provider",
    "billing_base_url",
    "billing_mode",
    "cost_status",
    "cost_source",
    "pricing_version",
)
_IMPORT_COUNTERS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")
# Message fields Hermes keeps only on assistant messages.
_ASSISTANT_ONLY = (
    "reasoning",
    "reasoning_content",
    "reasoning_details",
    "codex_reasoning_items",
    "codex_message_items",
)
# Hermes' state_meta key recording the last automatic prune.
_LAST_AUTO_PRUNE = "last_auto_prune"


_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


def ascii_lower(text: str) -> str:
    """SQLite's ``LOWER``: ASCII letters only."""
    return text.translate(_ASCII_LOWER)


def _like(value: str | None, pattern: str) -> bool:
    """SQLite's ``value LIKE pattern`` without ``ESCAPE``: ``%`` any run, ``_`` any one
    character, ASCII letters compared without case; a ``NULL`` value never matches."""
    if value is None:
        return False
    body = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(body, value, re.IGNORECASE | re.ASCII | re.DOTALL) is not None


def cwd_under(cwd: Any, cwd_prefix: str) -> bool:
    """Hermes' ``cwd_prefix`` filter: the cwd is the prefix (trailing separators dropped) or a
    path under it (``LIKE``, so ASCII case is ignored there)."""
    if not isinstance(cwd, str):
        return False
    prefix = cwd_prefix.rstrip("/\\") or cwd_prefix
    return cwd == prefix or _like(cwd, prefix + "/%") or _like(cwd, prefix + "\\%")


def _model_config(extra: Mapping[str, Any]) -> dict[str, Any]:
    config = extra.get("model_config")
    parsed = _loads(config, {}) if isinstance(config, str) else config
    return parsed if isinstance(parsed, dict) else {}


def _extra(s: Session) -> dict[str, Any]:
    extra = _loads(s.extra, {})
    return extra if isinstance(extra, dict) else {}


def _marker(s: Session, key: str) -> Any:
    """``json_extract(model_config, '$.<key>')`` of a session (``None`` when absent)."""
    return _model_config(_extra(s)).get(key)


def _parent(s: Session) -> str | None:
    """The parent of a session as Hermes has it (``None`` once the parent was deleted)."""
    return parent_of(s) or None


def _is_branch_child(s: Session, by_id: Mapping[str, Session]) -> bool:
    """Hermes' branch child: the ``_branched_from`` marker, or a parent that ended ``branched``
    no later than the child started."""
    if _marker(s, "_branched_from") is not None:
        return True
    p = by_id.get(_parent(s) or "")
    return (
        p is not None
        and p.end_reason == "branched"
        and s.started_at is not None
        and p.ended_at is not None
        and s.started_at >= p.ended_at
    )


def listable(s: Session, by_id: Mapping[str, Session]) -> bool:
    """A session Hermes' pickers list: a root or a branch child, never a delegate run."""
    if _marker(s, "_delegate_from") is not None:
        return False
    return _parent(s) is None or _is_branch_child(s, by_id)


def compression_chain(root: str, sessions: Iterable[Session]) -> list[str]:
    """``root`` and, forward, every continuation of a compression (children of a session that
    ended ``compression``, except branches, delegate runs and ``tool`` sessions)."""
    by_id: dict[str, Session] = {}
    children: dict[str, list[Session]] = {}
    for s in sessions:
        by_id[s.id] = s
        parent = _parent(s)
        if parent is not None:
            children.setdefault(parent, []).append(s)
    chain = [root]
    seen = {root}
    i = 0
    while i < len(chain):
        cur = by_id.get(chain[i])
        i += 1
        if cur is None or cur.end_reason != "compression":
            continue
        for child in children.get(cur.id, []):
            if child.id in seen or (child.source or "") == "tool":
                continue
            if _marker(child, "_branched_from") is not None or _marker(child, "_delegate_from") is not None:
                continue
            seen.add(child.id)
            chain.append(child.id)
    return chain


def _remove_session_files(sessions_dir: str | os.PathLike[str] | None, session_id: str) -> None:
    """Removes a session's transcript files (``<id>.json``, ``<id>.jsonl``,
    ``request_dump_<id>_*.json``) from ``sessions_dir``; a file that cannot go stays. An empty
    ``sessions_dir`` is no folder (never the working directory)."""
    if not sessions_dir:
        return
    folder = Path(sessions_dir)
    doomed = [folder / f"{session_id}.json", folder / f"{session_id}.jsonl"]
    try:
        doomed.extend(folder.glob(f"request_dump_{session_id}_*.json"))
    except (OSError, ValueError):
        pass
    for p in doomed:
        try:
            p.unlink(missing_ok=True)
        except OSError:
            pass


def _text_or_none(value: Any, field: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f"{field} must be a string")


def _json_object_or_none(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as e:
            raise ValueError(f"{field} must be valid JSON") from e
        if not isinstance(parsed, dict):
            raise ValueError(f"{field} must be a JSON object")
        return value
    if not isinstance(value, dict):
        raise ValueError(f"{field} must be a JSON object")
    try:
        return json.dumps(value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{field} must be JSON serializable") from e


def _float_or_none(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _int_or_default(value: Any) -> int:
    try:
        return 0 if value is None else int(value)
    except (TypeError, ValueError):
        return 0


def _import_error(index: int, session_id: str, error: str) -> dict[str, Any]:
    item: dict[str, Any] = {"index": index, "error": error}
    if session_id:
        item["session_id"] = session_id
    return item


def _check_import(sessions: Any) -> tuple[list[tuple[dict[str, Any], list[dict[str, Any]]]], list[dict[str, Any]]]:
    """Hermes' validation of an ``import_sessions`` payload: the cleaned sessions with their
    messages, and the errors (each ``{"index", "error"[, "session_id"]}``)."""
    if not isinstance(sessions, list):
        raise ValueError("sessions must be a list")
    if len(sessions) > _IMPORT_MAX_SESSIONS:
        raise ValueError(f"sessions must contain at most {_IMPORT_MAX_SESSIONS} entries")
    accepted: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    total_messages = 0
    total_bytes = 0
    for index, raw in enumerate(sessions):
        if not isinstance(raw, dict):
            errors.append(_import_error(index, "", "session must be an object"))
            continue
        sid = str(raw.get("id") or "").strip()
        if not sid:
            errors.append(_import_error(index, "", "session id is required"))
            continue
        if sid in seen:
            errors.append(_import_error(index, sid, "duplicate session id"))
            continue
        messages = raw.get("messages") or []
        if not isinstance(messages, list):
            errors.append(_import_error(index, sid, "messages must be a list"))
            continue
        if len(messages) > _IMPORT_MAX_MESSAGES_PER_SESSION:
            errors.append(_import_error(index, sid, "messages exceeds the per-session import limit"))
            continue
        if any(not isinstance(m, dict) for m in messages):
            errors.append(_import_error(index, sid, "messages must contain only objects"))
            continue
        try:
            size = len(json.dumps(raw, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
        except (TypeError, ValueError):
            errors.append(_import_error(index, sid, "session must be JSON serializable"))
            continue
        if size > _IMPORT_MAX_SESSION_BYTES:
            errors.append(_import_error(index, sid, "session exceeds the import size limit"))
            continue
        total_bytes += size
        if total_bytes > _IMPORT_MAX_TOTAL_BYTES:
            errors.append(_import_error(index, sid, "import exceeds the total size limit"))
            continue
        try:
            session = dict(raw)
            session["id"] = sid
            session["model_config"] = _json_object_or_none(session.get("model_config"), "model_config")
            session["parent_session_id"] = _text_or_none(session.get("parent_session_id"), "parent_session_id")
            for field in _IMPORT_SESSION_TEXT:
                session[field] = _text_or_none(session.get(field), field)
            cleaned: list[dict[str, Any]] = []
            for i, m in enumerate(messages):
                msg = dict(m)
                role = msg.get("role")
                if not isinstance(role, str) or not role:
                    raise ValueError(f"messages[{i}].role must be a non-empty string")
                for field in _IMPORT_MESSAGE_TEXT:
                    msg[field] = _text_or_none(msg.get(field), field)
                token_count = msg.get("token_count")
                try:
                    msg["token_count"] = None if token_count is None else int(token_count)
                except (TypeError, ValueError) as e:
                    raise ValueError("token_count must be an integer") from e
                cleaned.append(msg)
        except ValueError as e:
            errors.append(_import_error(index, sid, str(e)))
            continue
        total_messages += len(cleaned)
        if total_messages > _IMPORT_MAX_TOTAL_MESSAGES:
            errors.append(_import_error(index, sid, "messages exceeds the total import limit"))
            continue
        seen.add(sid)
        accepted.append((session, cleaned))
    return accepted, errors


class _PruneFilter:
    """Hermes' bulk prune / archive selection (``_prune_filter_where``): every filter given must
    hold, and only ended sessions are ever selected. Unknown filter names raise ``TypeError``."""

    def __init__(
        self,
        *,
        started_before: float | None = None,
        started_after: float | None = None,
        source: str | None = None,
        title_like: str | None = None,
        end_reason: str | None = None,
        cwd_prefix: str | None = None,
        min_messages: int | None = None,
        max_messages: int | None = None,
        archived: bool | None = None,
        model_like: str | None = None,
        provider: str | None = None,
        user_id: str | None = None,
        chat_id: str | None = None,
        chat_type: str | None = None,
        branch_like: str | None = None,
        min_tokens: int | None = None,
        max_tokens: int | None = None,
        min_cost: float | None = None,
        max_cost: float | None = None,
        min_tool_calls: int | None = None,
        max_tool_calls: int | None = None,
    ) -> None:
        self.started_before = started_before
        self.started_after = started_after
        # Exact matches; a falsy value does not filter.
        self.equal = {
            k: v
            for k, v in (
                ("source", source),
                ("end_reason", end_reason),
                ("user_id", user_id),
                ("chat_id", chat_id),
                ("chat_type", chat_type),
            )
            if v
        }
        # Case-insensitive substrings.
        likes = (("title", title_like), ("model", model_like), ("git_branch", branch_like))
        self.like = {k: f"%{v.lower()}%" for k, v in likes if v}
        self.cwd_prefix = cwd_prefix
        self.provider = provider.lower() if provider else None
        self.bounds = [
            (key, lo, hi)
            for key, lo, hi in (
                ("message_count", min_messages, max_messages),
                ("tokens", min_tokens, max_tokens),
                ("cost", min_cost, max_cost),
                ("tool_call_count", min_tool_calls, max_tool_calls),
            )
            if lo is not None or hi is not None
        ]
        self.archived = archived

    def accepts(self, row: Mapping[str, Any]) -> bool:
        """Whether a Hermes session row is selected."""
        started = row.get("started_at")
        if row.get("ended_at") is None:
            return False
        if self.started_before is not None and not (started is not None and started < self.started_before):
            return False
        if self.started_after is not None and not (started is not None and started >= self.started_after):
            return False
        if any(row.get(k) != v for k, v in self.equal.items()):
            return False
        if any(not _like(ascii_lower(row.get(k) or ""), p) for k, p in self.like.items()):
            return False
        if self.cwd_prefix and not cwd_under(row.get("cwd"), self.cwd_prefix):
            return False
        if self.provider and ascii_lower(row.get("billing_provider") or "") != self.provider:
            return False
        for key, lo, hi in self.bounds:
            if key == "tokens":
                value: float = (row.get("input_tokens") or 0) + (row.get("output_tokens") or 0)
            elif key == "cost":
                actual, estimated = row.get("actual_cost_usd"), row.get("estimated_cost_usd")
                value = actual if actual is not None else estimated if estimated is not None else 0
            else:
                value = row.get(key) or 0
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                return False
        archived = 1 if row.get("archived") else 0
        return self.archived is None or archived == (1 if self.archived else 0)


class _MaintenanceMixin:
    """Mixed into ``tidelog.hermes.SessionDB``; uses its ``_store``, ``_rows``, ``_row`` and
    ``_sources``."""

    _store: Store
    _rows: Rows
    _sources: dict[str, str | None]

    if TYPE_CHECKING:

        def _row(self, s: Session, messages: list[Message] | None = None) -> dict[str, Any]: ...
        def _message(self, session_id: str, role: str, msg: Mapping[str, Any], *, batch: bool) -> dict[str, Any]: ...
        def get_meta(self, *args: Any, **kwargs: Any) -> str | None: ...
        def set_meta(self, *args: Any, **kwargs: Any) -> None: ...
        def _forget_rows_of(self, session_ids: Collection[str]) -> None: ...

    sanitize_title = staticmethod(sanitize_title)

    # -- deleting -------------------------------------------------------------------------

    def _erase(self, doomed: Collection[str], sessions: Iterable[Session]) -> None:
        """Deletes ``doomed`` (sessions and messages) after orphaning the children that stay.
        Runs inside ``exclusive()``; ``sessions`` are the store's sessions read there."""
        for s in sessions:
            parent = _parent(s)
            if s.id not in doomed and parent in doomed:
                self._store.upsert_session(s.id, extra={ORPHANED_KEY: parent})
        if doomed:
            self._store.delete_sessions(list(doomed))
            self._forget_rows_of(doomed)
        for sid in doomed:
            self._sources.pop(sid, None)

    @staticmethod
    def _delegate_children(parents: Collection[str], sessions: Iterable[Session]) -> list[str]:
        """Delegate runs to delete with ``parents``: sessions whose ``_delegate_from`` names one
        of them, or marked children of one, and so on down (never a parent itself)."""
        marked: list[tuple[Session, str | None, str]] = []
        for s in sessions:
            mark = _marker(s, "_delegate_from")
            if mark is not None:
                marked.append((s, _parent(s), mark if isinstance(mark, str) else ""))
        found = set(parents)
        frontier = set(parents)
        while frontier:
            new = {s.id for s, parent, mark in marked if (mark in frontier or parent in frontier) and s.id not in found}
            found |= new
            frontier = new
        return [sid for sid in found if sid not in parents]

    def _delete_with_delegates(self, ids: Collection[str], sessions_dir: str | os.PathLike[str] | None) -> int:
        """Deletes the existing sessions of ``ids`` with their delegate runs (other children
        are orphaned); returns how many of ``ids`` existed."""
        with self._store.exclusive():
            sessions = self._store.list_sessions()
            known = {s.id for s in sessions}
            existing = [sid for sid in ids if sid in known]
            if not existing:
                return 0
            delegates = self._delegate_children(existing, sessions)
            self._erase(set(existing) | set(delegates), sessions)
        for sid in delegates + existing:
            _remove_session_files(sessions_dir, sid)
        return len(existing)

    def delete_session(self, session_id: str, sessions_dir: str | os.PathLike[str] | None = None) -> bool:
        """Deletes the session and its messages, erased from the store. Its delegate subagent
        runs go with it; other children (branches, compression continuations) are orphaned.
        With ``sessions_dir``, the transcript files of every deleted session are removed too.
        False if the session did not exist."""
        return self._delete_with_delegates([session_id], sessions_dir) > 0

    def delete_sessions(self, session_ids: list[str], sessions_dir: str | os.PathLike[str] | None = None) -> int:
        """``delete_session`` for many ids at once (unknown, empty and non-string ids are
        skipped); returns how many existed and were deleted."""
        if not session_ids:
            return 0
        unique = list(dict.fromkeys(sid for sid in session_ids if isinstance(sid, str) and sid))
        if not unique:
            return 0
        return self._delete_with_delegates(unique, sessions_dir)

    def _has_any_message(self, session_id: str) -> bool:
        return bool(self._store.history(session_id, include_inactive=True, include_compacted=True, limit=1))

    def delete_session_if_empty(self, session_id: str, sessions_dir: str | os.PathLike[str] | None = None) -> bool:
        """Deletes the session only if it has no title, no message (in any state) and no child
        session; True if it was deleted."""
        with self._store.exclusive():
            sessions = self._store.list_sessions()
            s = next((x for x in sessions if x.id == session_id), None)
            if s is None or s.title is not None or self._has_any_message(session_id):
                return False
            if any(_parent(x) == session_id for x in sessions):
                return False
            self._erase([session_id], ())
        _remove_session_files(sessions_dir, session_id)
        return True

    def _empty_ended(self, sessions: Iterable[Session]) -> list[str]:
        counts = self._store.message_counts()
        return [
            s.id
            for s in sessions
            if s.ended_at is not None and not counts.get(s.id) and not _extra(s).get("archived")
        ]

    def count_empty_sessions(self) -> int:
        """How many sessions are ended, not archived and without an active message."""
        return len(self._empty_ended(self._store.list_sessions()))

    def delete_empty_sessions(self, sessions_dir: str | os.PathLike[str] | None = None) -> int:
        """Deletes every session ``count_empty_sessions`` counts (their children are orphaned);
        returns how many."""
        with self._store.exclusive():
            sessions = self._store.list_sessions()
            doomed = self._empty_ended(sessions)
            self._erase(set(doomed), sessions)
        for sid in doomed:
            _remove_session_files(sessions_dir, sid)
        return len(doomed)

    def prune_empty_ghost_sessions(self, sessions_dir: str | os.PathLike[str] | None = None) -> int:
        """Deletes the ``tui`` sessions that ended untitled and without any message more than a
        day after they started; returns how many. Like Hermes (whose foreign key refuses it),
        raises ``sqlite3.IntegrityError`` and deletes nothing if one of them has a child that
        is not deleted with it."""
        cutoff = time.time() - 86400
        with self._store.exclusive():
            sessions = self._store.list_sessions()
            doomed = {
                s.id
                for s in sessions
                if s.source == "tui"
                and s.title is None
                and s.ended_at is not None
                and s.started_at is not None
                and s.started_at < cutoff
                and not self._has_any_message(s.id)
            }
            if any(s.id not in doomed and _parent(s) in doomed for s in sessions):
                raise sqlite3.IntegrityError("FOREIGN KEY constraint failed")
            self._erase(doomed, ())
        for sid in doomed:
            _remove_session_files(sessions_dir, sid)
        return len(doomed)

    # -- bulk selection: prune and archive ------------------------------------------------

    def _prune_rows(
        self, older_than_days: float | None, source: str | None, filters: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """The session rows a prune / archive with these arguments selects, oldest first."""
        if filters.get("started_before") is None and older_than_days is not None:
            filters["started_before"] = time.time() - older_than_days * 86400
        selection = _PruneFilter(source=source, **filters)
        rows = []
        for s in reversed(self._store.list_sessions()):
            if s.ended_at is None:
                continue
            row = self._row(s)
            row["archived"] = 1 if row.get("archived") else 0
            if selection.accepts(row):
                rows.append(row)
        rows.sort(key=lambda r: r["started_at"] if r["started_at"] is not None else float("-inf"))
        return rows

    def list_prune_candidates(
        self, older_than_days: float | None = None, source: str | None = None, **filters: Any
    ) -> list[dict[str, Any]]:
        """The sessions ``prune_sessions`` / ``archive_sessions`` with the same arguments would
        touch, oldest first, as ``{id, source, title, model, started_at, ended_at,
        message_count, archived}``; nothing is changed. Filters: see ``prune_sessions``."""
        keys = ("id", "source", "title", "model", "started_at", "ended_at", "message_count", "archived")
        return [{k: row.get(k) for k in keys} for row in self._prune_rows(older_than_days, source, filters)]

    def archive_sessions(self, older_than_days: float | None = None, source: str | None = None, **filters: Any) -> int:
        """Archives (hides, deleting nothing) every session the filters select, each with its
        compression lineage; ``archived`` defaults to ``False`` (only unarchived sessions), so
        a repeated call does nothing. Returns how many sessions were selected."""
        filters.setdefault("archived", False)
        rows = self.list_prune_candidates(older_than_days=older_than_days, source=source, **filters)
        for row in rows:
            self.set_session_archived(row["id"], True)
        return len(rows)

    def prune_sessions(
        self,
        older_than_days: float | None = 90,
        source: str | None = None,
        sessions_dir: str | os.PathLike[str] | None = None,
        **filters: Any,
    ) -> int:
        """Deletes the ended sessions the filters select (default: started more than 90 days
        ago); their children are orphaned. Returns how many were deleted.

        Filters (all must hold): ``started_before`` / ``started_after`` (epoch seconds;
        ``started_before`` wins over ``older_than_days``), ``title_like`` / ``model_like`` /
        ``branch_like`` (case-insensitive substrings), ``end_reason`` / ``user_id`` /
        ``chat_id`` / ``chat_type`` / ``provider`` (exact; ``provider`` without case, against
        ``billing_provider``), ``cwd_prefix``, ``min_/max_messages``, ``min_/max_tokens``
        (input + output), ``min_/max_cost`` (actual, else estimated), ``min_/max_tool_calls``
        and ``archived`` (``None`` both, ``True`` only archived, ``False`` only unarchived)."""
        with self._store.exclusive():
            doomed = [row["id"] for row in self._prune_rows(older_than_days, source, filters)]
            self._erase(set(doomed), self._store.list_sessions())
        for sid in doomed:
            _remove_session_files(sessions_dir, sid)
        return len(doomed)

    def maybe_auto_prune_and_vacuum(
        self,
        retention_days: int = 90,
        min_interval_hours: int = 24,
        vacuum: bool = True,
        sessions_dir: str | os.PathLike[str] | None = None,
    ) -> dict[str, Any]:
        """Prunes sessions older than ``retention_days`` (and vacuums when some were) unless
        the last run, recorded in the metadata key ``last_auto_prune``, is less than
        ``min_interval_hours`` old. Never raises: returns ``{"skipped", "pruned", "vacuumed"}``,
        with ``"error"`` when something failed."""
        result: dict[str, Any] = {"skipped": False, "pruned": 0, "vacuumed": False}
        try:
            now = time.time()
            last = self.get_meta(_LAST_AUTO_PRUNE)
            if last:
                try:
                    if now - float(last) < min_interval_hours * 3600:
                        result["skipped"] = True
                        return result
                except (TypeError, ValueError):
                    pass
            pruned = self.prune_sessions(older_than_days=retention_days, sessions_dir=sessions_dir)
            result["pruned"] = pruned
            if vacuum and pruned > 0:
                self.vacuum()
                result["vacuumed"] = True
            self.set_meta(_LAST_AUTO_PRUNE, str(now))
        except Exception as e:  # noqa: BLE001 - Hermes' contract: maintenance never raises
            result["error"] = str(e)
        return result

    # -- the SQLite index -----------------------------------------------------------------

    def optimize_fts(self) -> int:
        """Hermes merges its FTS5 segments and returns how many indexes it optimized. The store
        keeps its search index itself (the compactor writes it in batches); nothing is merged
        here: 0."""
        return 0

    def rebuild_fts(self) -> int:
        """Hermes rebuilds its FTS5 indexes from the messages and returns how many. The store
        rebuilds its index from the journal by itself when it finds it damaged; nothing is
        rebuilt here: 0."""
        return 0

    def vacuum(self) -> int:
        """Hermes runs ``optimize_fts`` and SQLite's VACUUM and returns the number of indexes
        optimized. The store erases deleted sessions from every file on its own (the erase pass
        after a deletion), so there is nothing to reclaim: 0, from ``optimize_fts``."""
        return self.optimize_fts()

    # -- session fields -------------------------------------------------------------------

    def _patch_existing(self, session_id: str, **patch: Any) -> bool:
        """Applies ``patch`` (``Store.upsert_session`` arguments) if the session exists; never
        creates one (Hermes' ``UPDATE ... WHERE id = ?``)."""
        with self._store.exclusive():
            exists = self._store.get_session(session_id) is not None
            if exists:
                self._store.upsert_session(session_id, **patch)
        return exists

    def update_session_cwd(
        self, session_id: str, cwd: str, git_branch: str | None = None, git_repo_root: str | None = None
    ) -> None:
        """Records the session's working directory, and the git branch and repository root
        when given non-blank (a blank one never clears what is recorded). Does nothing without
        a session id or cwd."""
        if not session_id or not cwd:
            return
        extra: dict[str, Any] = {"cwd": cwd}
        branch = (git_branch or "").strip()
        root = (git_repo_root or "").strip()
        if branch:
            extra["git_branch"] = branch
        if root:
            extra["git_repo_root"] = root
        self._patch_existing(session_id, extra=extra)

    def backfill_repo_roots(self, cwd_to_root: Mapping[str, str]) -> None:
        """Records ``git_repo_root`` for the sessions of each cwd that have none (non-empty cwds
        and roots only; a recorded root is never replaced)."""
        pairs = [(cwd, root) for cwd, root in cwd_to_root.items() if root and cwd]
        if not pairs:
            return
        with self._store.exclusive():
            sessions = self._store.list_sessions()
            for cwd, root in pairs:
                for s in sessions:
                    extra = _extra(s)
                    if extra.get("cwd") == cwd and not extra.get("git_repo_root"):
                        self._store.upsert_session(s.id, extra={"git_repo_root": root})

    def distinct_session_cwds(self, include_archived: bool = False) -> list[dict[str, Any]]:
        """Every non-blank cwd of the sessions (archived ones only with ``include_archived``)
        as ``{"cwd", "sessions", "last_active"}`` (how many sessions, their latest end or
        start), ordered by cwd."""
        stats: dict[str, list[float]] = {}
        for s in self._store.list_sessions():
            extra = _extra(s)
            cwd = extra.get("cwd")
            if not isinstance(cwd, str) or not cwd.strip(" "):
                continue
            if not include_archived and extra.get("archived"):
                continue
            entry = stats.setdefault(cwd, [0, 0.0])
            entry[0] += 1
            entry[1] = max(entry[1], float(s.ended_at or s.started_at or 0))
        return [{"cwd": c, "sessions": int(n), "last_active": float(t)} for c, (n, t) in sorted(stats.items())]

    def update_session_meta(self, session_id: str, model_config_json: str, model: str | None = None) -> None:
        """Sets the session's ``model_config`` (``None`` clears it) and, when given, its model."""
        self._patch_existing(session_id, model=model, extra={"model_config": model_config_json})

    def set_expiry_finalized(self, session_id: str, finalized: bool = True) -> None:
        """Sets the gateway's ``expiry_finalized`` flag (1 or 0) of the session."""
        if not session_id:
            return
        self._patch_existing(session_id, extra={"expiry_finalized": 1 if finalized else 0})

    def set_session_archived(self, session_id: str, archived: bool) -> bool:
        """Archives (hides from the default listing; nothing is deleted) or unarchives the
        session with its whole compression lineage: the predecessors it continues and the
        continuations that follow it. True if a session was updated."""
        with self._store.exclusive():
            sessions = self._store.list_sessions()
            by_id = {s.id: s for s in sessions}
            lineage = {session_id}
            cur = by_id.get(session_id)
            while cur is not None:
                parent = by_id.get(_parent(cur) or "")
                if parent is None or parent.end_reason != "compression" or parent.id in lineage:
                    break
                lineage.add(parent.id)
                cur = parent
            children: dict[str, list[str]] = {}
            for s in sessions:
                p = _parent(s)
                if p is not None:
                    children.setdefault(p, []).append(s.id)
            frontier = [session_id]
            seen = {session_id}
            while frontier:
                sid = frontier.pop()
                node = by_id.get(sid)
                if node is None or node.end_reason != "compression":
                    continue
                for child in children.get(sid, []):
                    if child not in seen:
                        seen.add(child)
                        frontier.append(child)
            updated = [sid for sid in sorted(lineage | seen) if sid in by_id]
            for sid in updated:
                self._store.upsert_session(sid, extra={"archived": 1 if archived else 0})
        return bool(updated)

    def set_auto_title_if_empty(self, session_id: str, title: str) -> bool:
        """Sets the title only while the session has none (checked and written under the
        store's write lock, so a concurrent rename wins). Titles are cleaned and unique like
        ``set_session_title`` (a title held by a compression predecessor of this session moves
        to it). True if the session existed untitled."""
        cleaned = sanitize_title(title)
        with self._store.exclusive():
            s = self._store.get_session(session_id)
            if s is None or s.title is not None:
                return False
            if cleaned is None:
                return True
            try:
                self._store.set_title(session_id, cleaned)
            except TitleTakenError as e:
                holder = e.other or ""
                if not self._is_compression_ancestor(holder, session_id):
                    raise ValueError(f"Title '{cleaned}' is already in use by session {e.other}") from e
                self._store.set_title(holder, None)
                self._store.set_title(session_id, cleaned)
        return True

    def _is_compression_ancestor(self, ancestor_id: str, descendant_id: str) -> bool:
        """Whether ``descendant_id`` continues ``ancestor_id`` through compressions."""
        seen = {descendant_id}
        s = self._store.get_session(descendant_id)
        while s is not None and _parent(s) is not None:
            parent = self._store.get_session(_parent(s) or "")
            if parent is None or parent.end_reason != "compression" or parent.id in seen:
                return False
            if parent.id == ancestor_id:
                return True
            seen.add(parent.id)
            s = parent
        return False

    # -- import ---------------------------------------------------------------------------

    def import_sessions(self, sessions: list[dict[str, Any]]) -> dict[str, Any]:
        """Imports sessions as ``export_session`` / ``export_all`` return them. Existing ids are
        skipped; a child keeps its parent only if the parent exists (or is imported with it)
        and the link makes no cycle, otherwise it is detached. Live runtime state (gateway
        routing, hand-offs, ...) is not restored. Returns ``{"ok": True, "imported",
        "skipped", "detached", "imported_ids", "skipped_ids", "errors": []}``, or with invalid
        entries ``{"ok": False, "imported": 0, "skipped": 0, "detached": 0, "errors": [...]}``
        and nothing imported. ``ValueError`` if ``sessions`` is no list or too long;
        ``sqlite3.IntegrityError`` (nothing imported) if a title is taken."""
        accepted, errors = _check_import(sessions)
        if errors:
            return {"ok": False, "imported": 0, "skipped": 0, "detached": 0, "errors": errors}
        with self._store.exclusive():
            existing = {s.id: s for s in self._store.list_sessions()}
            imported = [(raw, msgs) for raw, msgs in accepted if raw["id"] not in existing]
            skipped_ids = [raw["id"] for raw, _ in accepted if raw["id"] in existing]
            titles = [raw["title"] for raw, _ in imported if raw.get("title") is not None]
            taken = {s.title for s in existing.values() if s.title is not None}
            if len(set(titles)) < len(titles) or taken & set(titles):
                raise sqlite3.IntegrityError("UNIQUE constraint failed: sessions.title")
            parents, detached = self._import_parents(imported, existing)
            for raw, msgs in imported:
                self._import_one(raw, msgs, parents.get(raw["id"]))
        return {
            "ok": True,
            "imported": len(imported),
            "skipped": len(skipped_ids),
            "detached": detached,
            "imported_ids": [raw["id"] for raw, _ in imported],
            "skipped_ids": skipped_ids,
            "errors": [],
        }

    @staticmethod
    def _import_parents(
        imported: list[tuple[dict[str, Any], list[dict[str, Any]]]], existing: Mapping[str, Session]
    ) -> tuple[dict[str, str], int]:
        """The parent each imported session keeps, and how many were detached (a parent that
        does not exist, or a link closing a cycle; a later entry may still attach to one)."""
        requested = [(raw["id"], str(raw.get("parent_session_id") or "").strip()) for raw, _ in imported]
        links = {child: parent for child, parent in requested if parent}
        known = set(existing) | {child for child, _ in requested}
        kept: dict[str, str] = {}
        detached = 0
        for child, parent in requested:
            if not parent:
                continue
            seen = {child}
            current: str | None = parent
            cycle = False
            while current:
                if current in seen:
                    cycle = True
                    break
                seen.add(current)
                if current in links:
                    current = links[current]
                elif current in existing:
                    current = _parent(existing[current])
                else:
                    current = None
            if parent in known and not cycle:
                kept[child] = parent
            else:
                links.pop(child, None)
                detached += 1
        return kept, detached

    def _import_one(self, raw: Mapping[str, Any], messages: list[dict[str, Any]], parent: str | None) -> None:
        """Writes one imported session and its messages (Hermes' columns; the counters as the
        totals given)."""
        sid = raw["id"]
        started = _float_or_none(raw.get("started_at"))
        extra: dict[str, Any] = {k: raw.get(k) for k in _IMPORT_SESSION_EXTRA if raw.get(k) is not None}
        extra["model_config"] = raw.get("model_config")
        extra["archived"] = 1 if raw.get("archived") else 0
        for k in (*_IMPORT_COUNTERS, "api_call_count"):
            extra[k] = _int_or_default(raw.get(k))
        for k in ("estimated_cost_usd", "actual_cost_usd"):
            extra[k] = _float_or_none(raw.get(k))
        extra = {k: v for k, v in extra.items() if v is not None}
        self._store.upsert_session(
            sid,
            source=str(raw.get("source") or "import"),
            model=raw.get("model"),
            title=raw.get("title"),
            user_id=raw.get("user_id"),
            parent_session_id=parent,
            started_at=time.time() if started is None else started,
            ended_at=_float_or_none(raw.get("ended_at")),
            end_reason=raw.get("end_reason"),
            extra=extra or None,
        )
        self._sources.pop(sid, None)
        if not messages:
            return
        now = time.time()
        batch = []
        for m in messages:
            msg = dict(m)
            if msg.get("role") != "assistant":
                for k in _ASSISTANT_ONLY:
                    msg[k] = None
            ts = now
            given = msg.get("timestamp")
            if given is not None:
                try:
                    ts = float(given.timestamp()) if hasattr(given, "timestamp") else float(given)
                except (TypeError, ValueError):
                    ts = now
            msg.pop("timestamp", None)
            kwargs = self._message(sid, str(msg["role"]), msg, batch=True)
            kwargs["timestamp"] = ts
            batch.append(kwargs)
            now = max(now + 1e-6, ts + 1e-6)
        self._store.append_batch(batch)

