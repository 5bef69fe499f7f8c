"""``SessionDB`` methods of Hermes 0.19.0: compression lineage, resume, rewind and the views of a
conversation around a message.

Compression chains are sessions linked by ``parent_session_id``: a session ended with
``end_reason="compression"`` is continued by a child. Branch (``model_config._branched_from``),
delegate (``_delegate_from``) and ``source="tool"`` children are not continuations.

Rewind (``/undo``) marks messages inactive in Hermes and ``restore_rewound`` makes them active
again. The store's history operations only ever hide messages (a rewrite archives or compacts
every message before it), so the state a rewind or a restore gave a message, where it differs
from the store's, is kept in a per-session overlay row (``Rows`` table ``message_state``:
message id -> ``[active, compacted]``, or ``null`` for a message Hermes would have deleted),
applied on top of the store's states by every read of the package (``_effective_history``) and
settled by each rewrite (``_rewrite``).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from ._common import _Desc, _decode_content, _is_replayed_user_message, _encode_content, _loads, _message_row, parent_of

if TYPE_CHECKING:
    from .._tidelog import Appended, Message, Session, Store
    from ._rows import Rows

# The overlay table: a row per session, {"session_id": ..., "states": {"<message id>": [active, compacted] | null}}.
_OVERLAY_TABLE = "message_state"
# Hermes' bounds on lineage walks.
_TIP_WALK_LIMIT = 100
_RESUME_WALK_LIMIT = 32
_ROOT_WALK_LIMIT = 100
# Sessions older than this (seconds) whose compression continuation never ran are finalized.
_ORPHAN_AGE = 604800
# End reasons a reset may overwrite (ends recovery would otherwise reopen).
_RECOVERABLE_END_REASONS = ("agent_close", "ws_orphan_reap")
_SURROGATE = re.compile("[\ud800-\udfff]")
# Hermes' memory-context fencing, removed from user and assistant text of conversation views.
_MEMORY_BLOCK = re.compile(r"<\s*memory-context\s*>[\s\S]*?</\s*memory-context\s*>", re.IGNORECASE)
_MEMORY_NOTE = re.compile(
    r"\[System note:\s*The following is recalled memory context,\s*NOT new user input\.\s*"
    r"Treat as (?:informational background data|authoritative reference data[^\]]*)\.\]\s*",
    re.IGNORECASE,
)
_MEMORY_TAG = re.compile(r"</?\s*memory-context\s*>", re.IGNORECASE)
# Fields of an assistant message restored (as JSON) in conversation views.
_ASSISTANT_JSON_FIELDS = ("reasoning_details", "codex_reasoning_items", "codex_message_items")
# Message row keys Hermes' messages table has (the package's rows carry a few more).
_ROW_ONLY = ("_compressed_summary", "display_kind", "display_metadata")
# Background skill/memory review prompts older Hermes builds wrote into real sessions.
_REVIEW_PROMPTS = (
    "Review the conversation above and update the skill library",
    "Review the conversation above and consider saving to memory",
)
# Assistant finish reasons of a candidate reply a later one replaces.
_VERIFICATION_REASONS = ("verification_required", "verify_hook_continue")

State = tuple["Message", bool, bool]
# An overlay entry: (active, compacted), or None for a message Hermes would have deleted.
Override: TypeAlias = "tuple[bool, bool] | None"


def _model_config(s: Session) -> Any:
    """The session's ``model_config`` decoded (``None`` when absent or not JSON)."""
    extra = _loads(s.extra, {}) or {}
    raw = extra.get("model_config") if isinstance(extra, dict) else None
    return _loads(raw) if isinstance(raw, str) else raw


def _is_branch(s: Session) -> bool:
    """A ``/branch`` child (its ``model_config`` names ``_branched_from``)."""
    cfg = _model_config(s)
    return isinstance(cfg, dict) and cfg.get("_branched_from") is not None


def _may_continue(s: Session) -> bool:
    """A child that may continue a compression: neither a branch, a delegate, nor a tool run."""
    cfg = _model_config(s)
    if isinstance(cfg, dict) and (cfg.get("_branched_from") is not None or cfg.get("_delegate_from") is not None):
        return False
    return (s.source or "") != "tool"


def _ascii_lower(text: str) -> str:
    """Lower-cases ASCII letters only (SQLite ``LIKE`` folds no other case)."""
    return "".join(c.lower() if c.isascii() else c for c in text)


def _scrub(text: str) -> str:
    """Lone surrogates replaced by U+FFFD (Hermes stores text so)."""
    return _SURROGATE.sub("\ufffd", text)


def _without_memory_context(text: str) -> str:
    """The text without recalled-memory blocks, their system note and stray fence tags."""
    return _MEMORY_TAG.sub("", _MEMORY_NOTE.sub("", _MEMORY_BLOCK.sub("", text)))


def _preview80(content: str | None) -> str:
    """``list_recent_user_messages``' preview: text (multimodal parts joined), whitespace
    collapsed, at most 80 characters."""
    decoded = _decode_content(content)
    if isinstance(decoded, list):
        parts = [p.get("text") for p in decoded if isinstance(p, dict) and p.get("type") == "text"]
        text = " ".join(t for t in parts if t)
        text = text.strip() or "[multimodal content]"
    elif isinstance(decoded, str):
        text = decoded
    else:
        text = ""
    text = " ".join(text.split())
    return text[:77] + "..." if len(text) > 80 else text


class _LineageMixin:
    """Mixed into ``tidelog.hermes.SessionDB``; uses its ``_store`` and ``_rows``."""

    _store: Store
    _rows: Rows

    if TYPE_CHECKING:  # provided by SessionDB

        def get_session(self, session_id: str) -> dict[str, Any] | None: ...
        def get_messages(self, session_id: str, include_inactive: bool = False) -> list[dict[str, Any]]: ...
        def list_sessions_rich(self, *args: Any, **kw: Any) -> list[dict[str, Any]]: ...

    # -- message states -------------------------------------------------------------------

    def _overlay(self, session_id: str) -> dict[int, Override]:
        """Messages whose state a rewind, a restore or a rewrite after them made differ from the
        store's: ``(active, compacted)``, or ``None`` for a message Hermes would have deleted."""
        row = self._rows.get(_OVERLAY_TABLE, session_id)
        states = row.get("states") if row else None
        if not isinstance(states, dict):
            return {}
        return {int(k): None if v is None else (bool(v[0]), bool(v[1])) for k, v in states.items()}

    def _put_overlay(self, session_id: str, overlay: Mapping[int, Override]) -> None:
        """Stores the overlay, without the entries equal to the store's state."""
        store = {
            h.message.num: (h.active, h.compacted)
            for h in self._store.history(session_id, include_inactive=True, include_compacted=True)
        }
        kept = {k: v for k, v in sorted(overlay.items()) if k in store and store[k] != v}
        if kept:
            states = {str(k): None if v is None else list(v) for k, v in kept.items()}
            self._rows.put(_OVERLAY_TABLE, (session_id,), {"session_id": session_id, "states": states})
        else:
            self._rows.delete(_OVERLAY_TABLE, session_id)

    def _effective_history(self, session_id: str) -> list[State]:
        """Every message of the session in id order as ``(message, active, compacted)`` in Hermes'
        terms: the store's states with the overlay applied."""
        overlay = self._overlay(session_id)
        items = self._store.history(session_id, include_inactive=True, include_compacted=True)
        out: list[State] = []
        for h in items:
            state = overlay.get(h.message.num, (h.active, h.compacted))
            if state is not None:
                out.append((h.message, state[0], state[1]))
        return out

    def _rewrite(
        self,
        session_id: str,
        mode: Literal["delete", "archive", "compact"],
        batch: list[dict[str, Any]],
        active_only: bool,
    ) -> list[Appended]:
        """``Store.rewrite`` with Hermes' states kept: the rewrite covers the messages active in
        Hermes' terms and leaves rewound ones as they are. With an overlay and ``active_only``,
        a delete is made an archive (the store cannot spare the rewound messages it holds as
        active), and the messages Hermes deletes are marked deleted in the overlay."""
        with self._store.exclusive():
            overlay = self._overlay(session_id)
            if not overlay or not active_only:
                appended = self._store.rewrite(session_id, mode, batch, active_only=active_only)
                if overlay:
                    self._put_overlay(session_id, {})
            else:
                appended = self._rewrite_around_overlay(session_id, mode, batch, overlay)
        return appended

    def _rewrite_around_overlay(
        self,
        session_id: str,
        mode: Literal["delete", "archive", "compact"],
        batch: list[dict[str, Any]],
        overlay: dict[int, Override],
    ) -> list[Appended]:
        """An ``active_only`` rewrite of a session with an overlay (see ``_rewrite``)."""
        before = self._effective_history(session_id)
        store_mode: Literal["archive", "compact"] = "compact" if mode == "compact" else "archive"
        appended = self._store.rewrite(session_id, store_mode, batch, active_only=True)
        settled: dict[int, Override] = {}
        for m, active, compacted in before:
            if not active:
                settled[m.num] = overlay.get(m.num, (active, compacted))
            elif mode == "delete":
                settled[m.num] = None
            else:
                settled[m.num] = (False, compacted or mode == "compact")
        self._put_overlay(session_id, settled)
        return appended

    def _hermes_row(self, state: State) -> dict[str, Any]:
        """A message as a row of Hermes' messages table (``SELECT *``, tool calls decoded)."""
        row = _message_row(*state)
        for k in _ROW_ONLY:
            row.pop(k, None)
        for k in _ASSISTANT_JSON_FIELDS:
            # Hermes' rows hold these as the JSON text stored.
            if row[k] is not None and not isinstance(row[k], str):
                row[k] = json.dumps(row[k])
        return row

    # -- lineage walks --------------------------------------------------------------------

    def _children(self, parent_id: str) -> list[Session]:
        """The sessions whose parent is ``parent_id``."""
        return [s for s in self._store.list_sessions() if parent_of(s) == parent_id]

    def _last_activity(self, s: Session) -> float | None:
        """The newest message time of the session (any state), else its start."""
        times = [m.timestamp for m, _a, _c in self._effective_history(s.id)]
        return max(times) if times else s.started_at

    def _has_messages(self, session_id: str) -> bool:
        """The session has a message in any state (one a rewrite after a rewind replaced is gone)."""
        if not self._store.history(session_id, include_inactive=True, include_compacted=True, limit=1):
            return False
        return not self._overlay(session_id) or bool(self._effective_history(session_id))

    def _lineage_root_to_tip(self, session_id: str) -> list[str]:
        """The parent chain of ``session_id``, root first, ending with ``session_id``."""
        if not session_id:
            return [session_id]
        chain: list[str] = []
        seen: set[str] = set()
        current: str | None = session_id
        for _ in range(_ROOT_WALK_LIMIT):
            if not current or current in seen:
                break
            seen.add(current)
            chain.append(current)
            s = self._store.get_session(current)
            if s is None:
                break
            current = parent_of(s)
        return list(reversed(chain)) or [session_id]

    def get_compression_tip(self, session_id: str) -> str | None:
        """The live end of the compression chain from ``session_id``: while the current session
        ended with ``"compression"``, go to its continuation (children that are not branches,
        delegates or tool runs; preferring one itself compressed, then a live one, then the most
        recently active, newest started, highest id). The input id when nothing continues it."""
        current = session_id
        seen = {current} if current else set()
        for _ in range(_TIP_WALK_LIMIT):
            parent = self._store.get_session(current) if current else None
            if parent is None or parent.end_reason != "compression":
                return current
            candidates = [c for c in self._children(current) if _may_continue(c)]
            if not candidates:
                return current

            def rank(c: Session) -> tuple[Any, ...]:
                state = 0 if c.end_reason == "compression" else 1 if c.ended_at is None else 2
                active = self._last_activity(c)
                # Descending keys, SQLite's NULLs last.
                return (state, active is None, -(active or 0.0), -(c.started_at or 0.0), _Desc(c.id))

            child = min(candidates, key=rank).id
            if not child or child in seen:
                return current
            seen.add(child)
            current = child
        return current

    def resolve_resume_session_id(self, session_id: str) -> str:
        """Where a resume of ``session_id`` should land: first the compression tip, then down the
        chain of newest-started children (not branches, delegates or tool runs), the deepest
        session holding messages. The input id when none in the chain has messages."""
        if not session_id:
            return session_id
        try:
            tip = self.get_compression_tip(session_id)
        except Exception:  # noqa: BLE001 - Hermes resumes the id given when the walk fails
            tip = session_id
        if tip and tip != session_id:
            session_id = tip
        current = session_id
        seen = {current}
        best: str | None = None
        for _ in range(_RESUME_WALK_LIMIT):
            if self._has_messages(current):
                best = current
            children = [c for c in self._children(current) if _may_continue(c)]
            if not children:
                break
            child = max(children, key=lambda c: (c.started_at or 0.0, c.id)).id
            if not child or child in seen:
                break
            seen.add(child)
            current = child
        return best if best is not None else session_id

    def get_conversation_root(self, session_id: str) -> str:
        """The first session of ``session_id``'s parent chain (the stable conversation id);
        ``session_id`` itself when it has no recorded parent."""
        chain = self._lineage_root_to_tip(session_id)
        return chain[0] if chain and chain[0] else session_id

    def resolve_session_id(self, session_id_or_prefix: str) -> str | None:
        """The session with exactly this id, else the only session whose id starts with it
        (ASCII case folded, as SQLite's ``LIKE``); ``None`` when none or several match."""
        exact = self._store.get_session(session_id_or_prefix)
        if exact is not None:
            return exact.id
        prefix = _ascii_lower(session_id_or_prefix)
        matches = [s for s in self._store.list_sessions() if _ascii_lower(s.id).startswith(prefix)]
        if len(matches) == 1:
            return matches[0].id
        return None

    def _is_compression_child(self, s: Session) -> bool:
        if not parent_of(s) or _is_branch(s):
            return False
        parent = self._store.get_session(parent_of(s) or "")
        return parent is not None and parent.end_reason == "compression"

    def get_compression_lineage(self, session_id: str) -> list[str]:
        """The ids of ``session_id``'s compression chain, root to tip, oldest first (the first
        non-branch child of each compressed session, by start time). ``[session_id]`` for a
        branch or a session outside any chain, ``[]`` for an unknown one."""
        session = self._store.get_session(session_id)
        if session is None:
            return []
        if _is_branch(session):
            return [session_id]
        root = session
        ancestors = {root.id}
        while self._is_compression_child(root):
            parent = self._store.get_session(parent_of(root) or "")
            if parent is None or parent.id in ancestors:
                break
            root = parent
            ancestors.add(root.id)
        lineage = [root.id]
        current = root
        while current.end_reason == "compression":
            children = sorted(self._children(current.id), key=lambda c: c.started_at or 0.0)
            nxt = next((c for c in children if not _is_branch(c)), None)
            if nxt is None or nxt.id in lineage:
                break
            lineage.append(nxt.id)
            current = nxt
        return lineage if session_id in lineage else [session_id]

    def export_session_lineage(self, session_id: str) -> dict[str, Any] | None:
        """The compression chain as one session: the tip's row with ``segments`` (each session's
        row with its active ``messages``), ``lineage_session_ids``, every segment's messages in
        ``messages`` and their number in ``message_count``. ``None`` for an unknown session."""
        segments = []
        for sid in self.get_compression_lineage(session_id):
            row = self.get_session(sid)
            if row is not None:
                segments.append({**row, "messages": self.get_messages(sid)})
        if not segments:
            return None
        merged = dict(segments[-1])
        messages = [m for seg in segments for m in seg["messages"]]
        merged.update(
            segments=segments,
            lineage_session_ids=[seg["id"] for seg in segments],
            message_count=len(messages),
            messages=messages,
        )
        return merged

    def search_sessions_by_id(self, query: str, limit: int = 20, include_archived: bool = True) -> list[dict[str, Any]]:
        """Listed sessions (``list_sessions_rich`` by last activity) whose id contains ``query``
        (case-insensitive), exact matches first, then prefix matches, then the rest; a projected
        compression tip also matches by its ``_lineage_root_id``."""
        needle = (query or "").strip().lower()
        if not needle or limit <= 0:
            return []
        rows = self.list_sessions_rich(
            limit=max(limit * 4, limit),
            offset=0,
            include_archived=include_archived,
            order_by_last_active=True,
            id_query=needle,
        )

        def score(row: Mapping[str, Any]) -> int:
            ids = [str(v).lower() for v in (row.get("id"), row.get("_lineage_root_id")) if v]
            if needle in ids:
                return 0
            return 1 if any(i.startswith(needle) for i in ids) else 2

        ranked = sorted(enumerate(rows), key=lambda item: (score(item[1]), item[0]))
        return [row for _, row in ranked[:limit]]

    # -- session ends ---------------------------------------------------------------------

    def finalize_orphaned_compression_sessions(self) -> int:
        """Ends (``"orphaned_compression"``) continuations that never ran: live sessions started
        over 7 days ago with no API call, with messages, whose parent ended with
        ``"compression"``. Messages are kept. Returns how many were ended."""
        with self._store.exclusive():
            now = time.time()
            cutoff = now - _ORPHAN_AGE
            sessions = {s.id: s for s in self._store.list_sessions()}
            orphans = []
            for s in sessions.values():
                if s.end_reason is not None or s.ended_at is not None or not parent_of(s):
                    continue
                if s.started_at is None or s.started_at >= cutoff:
                    continue
                parent = sessions.get(parent_of(s) or "")
                if parent is None or parent.end_reason != "compression" or parent.ended_at is None:
                    continue
                extra = _loads(s.extra, {}) or {}
                calls = int((extra.get("api_call_count") if isinstance(extra, dict) else 0) or 0)
                if calls + s.counters.api_call_count == 0 and self._has_messages(s.id):
                    orphans.append(s.id)
            for sid in orphans:
                self._store.upsert_session(sid, ended_at=now, end_reason="orphaned_compression")
        return len(orphans)

    def promote_to_session_reset(self, session_id: str, reason: str = "session_reset") -> bool:
        """Ends the session as a reset boundary (``reason``): a live session, or one ended by
        ``agent_close`` / ``ws_orphan_reap``, gets a new end time and reason. False (nothing
        written) for an unknown session or one already ended for another reason."""
        if not session_id:
            return False
        promoted = False
        try:
            with self._store.exclusive():
                s = self._store.get_session(session_id)
                if s is not None and (s.ended_at is None or s.end_reason in _RECOVERABLE_END_REASONS):
                    self._store.upsert_session(session_id, ended_at=time.time(), end_reason=reason)
                    promoted = True
        except Exception:  # noqa: BLE001 - Hermes reports a failed write as "not promoted"
            return False
        return promoted

    # -- resume views ---------------------------------------------------------------------

    def _conversation(self, rows: list[State], include_ancestors: bool) -> list[dict[str, Any]]:
        """Active messages in Hermes' resume format (``role``, ``content`` cleaned of memory
        context, and when set ``api_content``, ``timestamp``, ``tool_call_id``, ``tool_name``,
        ``effect_disposition``, ``tool_calls``, ``message_id``, ``observed``, and an assistant's
        ``finish_reason`` and reasoning fields). ``include_ancestors`` drops a user message
        repeating the previous user turn with no assistant reply in between."""
        out: list[dict[str, Any]] = []
        for m, _active, _compacted in rows:
            extra = _loads(m.extra, {}) or {}
            if not isinstance(extra, dict):
                extra = {}
            content = _decode_content(m.content)
            if m.role in ("user", "assistant") and isinstance(content, str):
                content = _without_memory_context(content).strip()
            msg: dict[str, Any] = {"role": m.role, "content": content}
            api_content = m.api_content if m.api_content is not None else extra.get("api_content")
            if api_content:
                msg["api_content"] = api_content
            if m.timestamp:
                msg["timestamp"] = m.timestamp
            if m.tool_call_id:
                msg["tool_call_id"] = m.tool_call_id
            if m.tool_name:
                msg["tool_name"] = m.tool_name
            if extra.get("effect_disposition"):
                msg["effect_disposition"] = extra["effect_disposition"]
            if m.tool_calls:
                calls = _loads(m.tool_calls, [])
                msg["tool_calls"] = calls
            platform_id = m.platform_message_id or extra.get("platform_message_id")
            if platform_id:
                msg["message_id"] = platform_id
            if extra.get("observed"):
                msg["observed"] = True
            if m.role == "assistant":
                if m.finish_reason:
                    msg["finish_reason"] = m.finish_reason
                if m.reasoning:
                    msg["reasoning"] = m.reasoning
                if extra.get("reasoning_content") is not None:
                    msg["reasoning_content"] = extra["reasoning_content"]
                for k in _ASSISTANT_JSON_FIELDS:
                    if extra.get(k):
                        v = extra[k]
                        msg[k] = _loads(v) if isinstance(v, str) else v
            if include_ancestors and _is_replayed_user_message(out, msg):
                continue
            out.append(msg)
        return _without_review_harness(out)

    def _lineage_states(self, session_id: str) -> tuple[list[str], list[tuple[str, State]]]:
        """The parent chain of the session and the active messages of all of it, in id order."""
        chain = self._lineage_root_to_tip(session_id)
        rows = [(sid, st) for sid in dict.fromkeys(chain) for st in self._effective_history(sid) if st[1]]
        rows.sort(key=lambda r: r[1][0].num)
        return chain, rows

    def get_resume_conversations(self, session_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """``(model_history, display_history)`` for a resume: the session's own active messages
        with the alternation repaired (``get_messages_as_conversation(session_id,
        repair_alternation=True)`` in Hermes), and the whole parent chain's active messages, root
        first, replayed user turns dropped (``include_ancestors=True``)."""
        _chain, rows = self._lineage_states(session_id)
        own = self._conversation([st for sid, st in rows if sid == session_id], include_ancestors=False)
        return _repair_sequence(own), self._conversation([st for _sid, st in rows], include_ancestors=True)

    def get_ancestor_display_prefix(self, session_id: str) -> list[dict[str, Any]]:
        """The active messages of the session's ancestors only (the display history before the
        session's own), in the resume display format; ``[]`` without ancestors."""
        chain, rows = self._lineage_states(session_id)
        if len(chain) <= 1:
            return []
        ancestors = [st for sid, st in rows if sid != session_id]
        return self._conversation(ancestors, include_ancestors=True) if ancestors else []

    # -- views around a message -----------------------------------------------------------

    def get_messages_around(self, session_id: str, around_message_id: int, window: int = 5) -> dict[str, Any]:
        """``window`` messages (any state) before the anchor, the anchor, ``window`` after, in id
        order, with how many of them are before (``messages_before``) and after
        (``messages_after``). An empty window when the anchor is not a message of the session."""
        window = max(window, 0)
        states = self._effective_history(session_id)
        at = next((i for i, st in enumerate(states) if st[0].num == around_message_id), None)
        if at is None:
            return {"window": [], "messages_before": 0, "messages_after": 0}
        before = states[max(0, at - window) : at + 1]
        after = states[at + 1 : at + 1 + window]
        return {
            "window": [self._hermes_row(st) for st in before + after],
            "messages_before": max(0, len(before) - 1),
            "messages_after": len(after),
        }

    def get_anchored_view(
        self,
        session_id: str,
        around_message_id: int,
        window: int = 5,
        bookend: int = 3,
        keep_roles: tuple[str, ...] | None = ("user", "assistant"),
    ) -> dict[str, Any]:
        """``get_messages_around`` with its window kept to ``keep_roles`` (the anchor always
        kept) plus ``bookend_start`` / ``bookend_end``: the first and last ``bookend`` messages
        with content in ``keep_roles`` outside the window (``keep_roles=None``: every role)."""
        bookend = max(bookend, 0)
        around = self.get_messages_around(session_id, around_message_id, window=window)
        rows = around["window"]
        if not rows:
            return {"window": [], "messages_before": 0, "messages_after": 0, "bookend_start": [], "bookend_end": []}
        kept = rows
        if keep_roles is not None:
            kept = [r for r in rows if r["id"] == around_message_id or r["role"] in set(keep_roles)]
        first, last = rows[0]["id"], rows[-1]["id"]
        start: list[dict[str, Any]] = []
        end: list[dict[str, Any]] = []
        if bookend > 0:
            eligible = [
                st
                for st in self._effective_history(session_id)
                if st[0].content and (keep_roles is None or st[0].role in keep_roles)
            ]
            start = [self._hermes_row(st) for st in eligible if st[0].num < first][:bookend]
            tail = [self._hermes_row(st) for st in eligible if st[0].num > last]
            end = tail[-bookend:]
        return {
            "window": kept,
            "messages_before": around["messages_before"],
            "messages_after": around["messages_after"],
            "bookend_start": start,
            "bookend_end": end,
        }

    def list_recent_user_messages(
        self, session_id: str, limit: int = 20, include_inactive: bool = False
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` user messages (active ones unless ``include_inactive``), newest
        first, as ``{"id", "timestamp", "preview"}`` (80 characters, for the /rewind picker)."""
        users = [
            m
            for m, active, _c in self._effective_history(session_id)
            if m.role == "user" and (active or include_inactive)
        ]
        users.reverse()
        limit = int(limit)
        if limit >= 0:
            users = users[:limit]
        return [{"id": m.num, "timestamp": m.timestamp, "preview": _preview80(m.content)} for m in users]

    # -- rewind ---------------------------------------------------------------------------

    def rewind_to_message(self, session_id: str, target_message_id: int) -> dict[str, Any]:
        """/undo: the user message ``target_message_id`` and every later active message become
        inactive (kept, shown with ``include_inactive``), and the session's ``rewind_count`` goes
        up by one (also when nothing was active). Returns ``rewound_count``, ``target_message``
        (its row, content decoded) and ``new_head_id`` (the last active message, or ``None``).
        ``ValueError`` if the message is not in the session or is not a user message."""
        states = self._effective_history(session_id)
        target = next((st for st in states if st[0].num == target_message_id), None)
        if target is None:
            raise ValueError(f"message {target_message_id} not found in session {session_id}")
        if target[0].role != "user":
            raise ValueError(
                f"rewind target must be a 'user' message (got role={target[0].role!r}, id={target_message_id})"
            )
        target_row = self._hermes_row(target)
        target_row["tool_calls"] = target[0].tool_calls  # Hermes decodes only the content here
        with self._store.exclusive():
            overlay = self._overlay(session_id)
            states = self._effective_history(session_id)
            rewound = [st for st in states if st[0].num >= target_message_id and st[1]]
            for m, _a, compacted in rewound:
                overlay[m.num] = (False, compacted)
            if rewound:
                self._put_overlay(session_id, overlay)
            s = self._store.get_session(session_id)
            if s is not None:
                extra = _loads(s.extra, {}) or {}
                count = int((extra.get("rewind_count") if isinstance(extra, dict) else 0) or 0)
                self._store.upsert_session(session_id, extra={"rewind_count": count + 1})
            gone = {m.num for m, _a, _c in rewound}
            heads = [m.num for m, active, _c in states if active and m.num not in gone]
        head = heads[-1] if heads else None
        return {"rewound_count": len(rewound), "target_message": target_row, "new_head_id": head}

    def restore_rewound(self, session_id: str, since_message_id: int) -> int:
        """Makes every inactive message of the session from ``since_message_id`` on active again
        (undoes rewinds). Returns how many changed."""
        with self._store.exclusive():
            overlay = self._overlay(session_id)
            changed = 0
            for m, active, compacted in self._effective_history(session_id):
                if m.num >= since_message_id and not active:
                    # The store never reactivates a message: the overlay says it is active.
                    overlay[m.num] = (True, compacted)
                    changed += 1
            if changed:
                self._put_overlay(session_id, overlay)
        return changed

    def has_archived_messages(self, session_id: str) -> bool:
        """True if the session has an inactive message (archived by compaction, replaced, or
        rewound): a full-history replace would destroy it."""
        return any(not active for _m, active, _c in self._effective_history(session_id))

    def set_latest_user_api_content(self, session_id: str, content: Any, api_content: str) -> int:
        """Records ``api_content`` (the text sent to the model) on the newest active user message,
        only if its content is ``content``. Returns the number of messages changed (0 or 1)."""
        encoded = _encode_content(content)
        with self._store.exclusive():
            users = [m for m, active, _c in self._effective_history(session_id) if active and m.role == "user"]
            if not users or users[-1].content != encoded:
                return 0
            text = _scrub(api_content) if isinstance(api_content, str) else api_content
            self._store.update_message(users[-1].num, session_id, api_content="" if text is None else str(text))
        return 1


def _without_review_harness(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drops background-review prompts (user or system) and the assistant reply right after
    each, so a polluted session resumes as the user's own conversation."""
    out: list[dict[str, Any]] = []
    after_prompt = False
    for msg in messages:
        content = msg.get("content")
        if msg.get("role") in ("user", "system") and isinstance(content, str):
            if content.lstrip().startswith(_REVIEW_PROMPTS):
                after_prompt = True
                continue
        if after_prompt:
            after_prompt = False
            if msg.get("role") == "assistant":
                continue
        out.append(msg)
    return out


def _codex_interim(m: Mapping[str, Any]) -> bool:
    codex = m.get("codex_reasoning_items") or m.get("codex_message_items")
    return bool(codex or m.get("finish_reason") == "incomplete")


def _repair_sequence(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Hermes' alternation repair for live replay: consecutive assistant turns (not Codex
    interim ones) become one (a verification candidate is replaced by the next; otherwise tool
    calls are joined, texts joined by a newline), a tool result answering no call of the
    assistant turn before it is dropped, and consecutive user texts are joined by a blank line
    (the merged turn loses its ``api_content``)."""
    assistants: list[dict[str, Any]] = []
    for msg in messages:
        prev = assistants[-1] if assistants else None
        if (
            prev is None
            or msg.get("role") != "assistant"
            or prev.get("role") != "assistant"
            or _codex_interim(msg)
            or _codex_interim(prev)
        ):
            assistants.append(msg)
            continue
        if prev.get("finish_reason") in _VERIFICATION_REASONS:
            assistants[-1] = msg
            continue
        calls = list(prev.get("tool_calls") or []) + list(msg.get("tool_calls") or [])
        if calls:
            prev["tool_calls"] = calls
        old, new = prev.get("content"), msg.get("content")
        if isinstance(old, str) and isinstance(new, str):
            prev["content"] = "\n".join(t for t in (old.strip(), new.strip()) if t)
        elif not old and new is not None:
            prev["content"] = new
        if not prev.get("reasoning_content") and msg.get("reasoning_content"):
            prev["reasoning_content"] = msg["reasoning_content"]
    answered: set[Any] = set()
    kept: list[dict[str, Any]] = []
    for msg in assistants:
        role = msg.get("role")
        if role == "tool":
            call_id = msg.get("tool_call_id")
            if call_id and call_id in answered:
                answered.discard(call_id)
                kept.append(msg)
            continue
        if role == "assistant":
            calls = [tc for tc in msg.get("tool_calls") or [] if isinstance(tc, dict)]
            answered = {tc[k] for tc in calls for k in ("id", "call_id") if tc.get(k)}
        elif role == "user":
            answered = set()
        kept.append(msg)
    out: list[dict[str, Any]] = []
    for msg in kept:
        prev = out[-1] if out else None
        if prev is not None and msg.get("role") == "user" and prev.get("role") == "user":
            old, new = prev.get("content", ""), msg.get("content", "")
            if isinstance(old, str) and isinstance(new, str):
                prev["content"] = old + "\n\n" + new if old and new else old or new
                prev.pop("api_content", None)
                continue
        out.append(msg)
    return out
