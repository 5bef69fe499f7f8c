"""What the ``tidelog.hermes`` modules share: Hermes' constants, query sanitizing, the
encodings of Hermes' fields in tidelog messages and sessions, and the row shapes Hermes returns."""
from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .._tidelog import Message, Session


# Multimodal content is stored as this marker followed by JSON (Hermes' encoding).
CONTENT_JSON_PREFIX = "\x00json:"
# The store metadata key recording the import of the Hermes database. Persisted in existing
# stores: it keeps the name it had before the rename to tidelog.
IMPORT_META_KEY = "logbook.hermes.import"
# Hermes' limits.
MAX_TITLE_LENGTH = 100

# Message columns of Hermes rows that the tidelog model has no field for: kept in `extra`, as
# Hermes keeps them (the three JSON ones as JSON text).
_EXTRA_MESSAGE_FIELDS = (
    "reasoning_content",
    "reasoning_details",
    "codex_reasoning_items",
    "codex_message_items",
    "effect_disposition",
    "observed",
)
_JSON_MESSAGE_FIELDS = ("reasoning_details", "codex_reasoning_items", "codex_message_items")
# Hermes 0.19.0's `sessions` table: every column in order, with the default of a new row.
SESSION_COLUMNS: tuple[tuple[str, Any], ...] = (
    ("id", None),
    ("source", None),
    ("user_id", None),
    ("session_key", None),
    ("chat_id", None),
    ("chat_type", None),
    ("thread_id", None),
    ("display_name", None),
    ("origin_json", None),
    ("expiry_finalized", 0),
    ("model", None),
    ("model_config", None),
    ("system_prompt", None),
    ("parent_session_id", None),
    ("started_at", None),
    ("ended_at", None),
    ("end_reason", None),
    ("message_count", 0),
    ("tool_call_count", 0),
    ("input_tokens", 0),
    ("output_tokens", 0),
    ("cache_read_tokens", 0),
    ("cache_write_tokens", 0),
    ("reasoning_tokens", 0),
    ("cwd", None),
    ("git_branch", None),
    ("git_repo_root", None),
    ("billing_provider", None),
    ("billing_base_url", None),
    ("billing_mode", None),
    ("estimated_cost_usd", None),
    ("actual_cost_usd", None),
    ("cost_status", None),
    ("cost_source", None),
    ("pricing_version", None),
    ("title", None),
    ("api_call_count", 0),
    ("handoff_state", None),
    ("handoff_platform", None),
    ("handoff_error", None),
    ("compression_failure_cooldown_until", None),
    ("compression_failure_error", None),
    ("compression_fallback_streak", 0),
    ("profile_name", None),
    ("rewind_count", 0),
    ("archived", 0),
)
# Session columns the model has a field for; everything else lives in the session's `extra`.
_SESSION_FIELDS = ("source", "model", "title", "user_id", "chat_id", "parent_session_id")
# Counters: the tidelog store sums these; an imported session also has its Hermes totals in extra.
_COUNTERS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "api_call_count",
)
_COSTS = ("estimated_cost_usd", "actual_cost_usd")

from ._search import contains_cjk, sanitize_fts5_query  # noqa: E402,F401 - re-exported


# ---------------------------------------------------------------------------------------------
# Encodings


def _encode_content(content: Any) -> str | None:
    """Content as Hermes stores it: text as it is; a number as its text (SQLite's TEXT column
    converts it); anything else JSON behind Hermes' marker."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, bool):
        return str(int(content))
    if isinstance(content, (int, float)):
        return str(content)
    try:
        return CONTENT_JSON_PREFIX + json.dumps(content)
    except (TypeError, ValueError):
        return str(content)


def _decode_content(content: str | None) -> Any:
    if content is not None and content.startswith(CONTENT_JSON_PREFIX):
        try:
            return json.loads(content[len(CONTENT_JSON_PREFIX) :])
        except ValueError:
            return content
    return content


def _json_text(value: Any) -> str | None:
    """Hermes' encoding of a JSON column: ``json.dumps`` of a truthy value (a string too),
    else NULL."""
    return json.dumps(value) if value else None


def _loads(text: str | None, default: Any = None) -> Any:
    if text is None:
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default


def sanitize_title(title: str | None) -> str | None:
    """Hermes' title cleaning: lone surrogates replaced by U+FFFD, control, zero-width and bidi
    characters removed, whitespace collapsed, empty to ``None``; ``ValueError`` past 100
    characters."""
    if not title:
        return None
    title = re.sub(r"[\ud800-\udfff]", "\ufffd", title)  # lone surrogates, as Hermes scrubs them
    cleaned = re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", "", title)
    cleaned = re.sub(r"[\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufffc\ufff9-\ufffb]", "", cleaned)
    cleaned = " ".join(cleaned.split())
    if not cleaned:
        return None
    if len(cleaned) > MAX_TITLE_LENGTH:
        raise ValueError(f"Title too long ({len(cleaned)} chars, max {MAX_TITLE_LENGTH})")
    return cleaned


def store_path_for(db_path: str | os.PathLike[str]) -> Path:
    """The store folder used for a Hermes ``state.db`` path: ``<state.db>.tidelog``.

    A store made before the project was renamed lives at ``<state.db>.logbook``; while that folder
    exists and ``<state.db>.tidelog`` does not, it is the one used, so an upgrade never imports the
    Hermes database a second time into a new, emptier store.
    """
    p = Path(db_path)
    new = p.with_name(p.name + ".tidelog")
    old = p.with_name(p.name + ".logbook")
    if not new.exists() and old.is_dir():
        return old
    return new


# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# Row helpers


def _num(n: int | None) -> int:
    if n is None:
        raise RuntimeError("the store reported a duplicate for a message without a client id")
    return n


def _count_tool_calls(tool_calls: str | None) -> int:
    parsed = _loads(tool_calls)
    return len(parsed) if isinstance(parsed, list) else (1 if parsed else 0)


def _message_extra(m: Message) -> dict[str, Any]:
    extra = _loads(m.extra, {}) or {}
    return extra if isinstance(extra, dict) else {}


def _message_row(m: Message, active: bool, compacted: bool) -> dict[str, Any]:
    """A message as Hermes' ``get_messages`` returns a row: the ``messages`` columns, content
    decoded and ``tool_calls`` parsed (``[]`` if unreadable); the other JSON columns as text."""
    extra = _message_extra(m)
    tool_calls: Any = None
    if m.tool_calls:
        tool_calls = _loads(m.tool_calls, [])
    json_fields = {}
    for k in _JSON_MESSAGE_FIELDS:
        v = extra.get(k)
        json_fields[k] = v if v is None or isinstance(v, str) else json.dumps(v)
    return {
        "id": m.num,
        "session_id": m.session_id,
        "role": m.role,
        "content": _decode_content(m.content),
        "tool_call_id": m.tool_call_id,
        "tool_calls": tool_calls,
        "tool_name": m.tool_name,
        "effect_disposition": extra.get("effect_disposition"),
        "timestamp": m.timestamp,
        "token_count": m.token_count,
        "finish_reason": m.finish_reason,
        "reasoning": m.reasoning,
        "reasoning_content": extra.get("reasoning_content"),
        **json_fields,
        # Imported rows keep these two Hermes columns in extra.
        "platform_message_id": m.platform_message_id or extra.get("platform_message_id"),
        "observed": 1 if extra.get("observed") else 0,
        "active": 1 if active else 0,
        "compacted": 1 if compacted else 0,
        "api_content": m.api_content if m.api_content is not None else extra.get("api_content"),
    }


# Hermes' cleaning of recalled-memory blocks in replayed user and assistant text
# (``agent.memory_manager.sanitize_context``), used when that module cannot be imported.
_MEMORY_BLOCK = re.compile(r"<\s*memory-context\s*>[\s\S]*?</\s*memory-context\s*>", re.IGNORECASE)
_MEMORY_NOTE = re.compile(
    r"\[System note:\s*The following is recalled memory context,\s*NOT new user input\.\s*Treat as "
    r"(?:informational background data|authoritative reference data[^\]]*)\.\]\s*",
    re.IGNORECASE,
)
_MEMORY_TAG = re.compile(r"</?\s*memory-context\s*>", re.IGNORECASE)


def sanitize_context(text: str) -> str:
    """Recalled-memory blocks, their system note and stray fence tags removed (Hermes' own
    function when Hermes is installed)."""
    try:
        from agent.memory_manager import (  # type: ignore[import-untyped,unused-ignore]
            sanitize_context as hermes_sanitize,
        )
    except ImportError:
        return _MEMORY_TAG.sub("", _MEMORY_NOTE.sub("", _MEMORY_BLOCK.sub("", text)))
    return str(hermes_sanitize(text))


_REVIEW_HARNESS_PREFIXES = (
    "Review the conversation above and update the skill library",
    "Review the conversation above and consider saving to memory",
)


def _is_review_harness(msg: Mapping[str, Any]) -> bool:
    content = msg.get("content")
    return (
        msg.get("role") in ("user", "system")
        and isinstance(content, str)
        and content.lstrip().startswith(_REVIEW_HARNESS_PREFIXES)
    )


def strip_review_harness(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drops background-review prompts a forked review agent once wrote into a session, and the
    assistant reply right after each (Hermes does so on every conversation load)."""
    out: list[dict[str, Any]] = []
    skip_reply = False
    for msg in messages:
        if _is_review_harness(msg):
            skip_reply = True
            continue
        if skip_reply:
            skip_reply = False
            if msg.get("role") == "assistant":
                continue
        out.append(msg)
    return out


def _conversation_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    """A ``get_messages`` row as Hermes' conversation message: ``role``, ``content`` (memory
    blocks cleaned and stripped for user and assistant text), then each of ``api_content``,
    ``timestamp``, ``tool_call_id``, ``tool_name``, ``effect_disposition``, ``tool_calls``,
    ``message_id``, ``observed`` when set, and for assistants ``finish_reason``, ``reasoning``,
    ``reasoning_content`` and the parsed reasoning items."""
    content = row["content"]
    if row["role"] in ("user", "assistant") and isinstance(content, str):
        content = sanitize_context(content).strip()
    d: dict[str, Any] = {"role": row["role"], "content": content}
    for key in ("api_content", "timestamp", "tool_call_id", "tool_name", "effect_disposition"):
        if row[key]:
            d[key] = row[key]
    if row["tool_calls"] is not None:
        d["tool_calls"] = row["tool_calls"]
    if row["platform_message_id"]:
        d["message_id"] = row["platform_message_id"]
    if row["observed"]:
        d["observed"] = True
    if row["role"] == "assistant":
        for key in ("finish_reason", "reasoning"):
            if row[key]:
                d[key] = row[key]
        if row["reasoning_content"] is not None:
            d["reasoning_content"] = row["reasoning_content"]
        for key in _JSON_MESSAGE_FIELDS:
            if row[key]:
                d[key] = _loads(row[key])
    return d


def _is_replayed_user_message(messages: list[dict[str, Any]], msg: Mapping[str, Any]) -> bool:
    """A user message repeating the previous user turn with no assistant answer in between
    (a parent session's last prompt replayed into its continuation)."""
    content = msg.get("content")
    if msg.get("role") != "user" or not isinstance(content, str) or not content:
        return False
    for prev in reversed(messages):
        if prev.get("role") == "user" and prev.get("content") == content:
            return True
        if prev.get("role") == "assistant" and (prev.get("content") or prev.get("tool_calls")):
            return False
    return False


def _context_text(content: str | None) -> str:
    """A message's text as Hermes shows it in search context: multimodal parts' text joined
    (``[multimodal content]`` without any), 200 characters."""
    decoded = _decode_content(content)
    if isinstance(decoded, list):
        text = " ".join(t for t in (p.get("text", "") for p in decoded if isinstance(p, dict)
                                    and p.get("type") == "text") if t).strip()
        preview = text or "[multimodal content]"
    elif isinstance(decoded, str):
        preview = decoded
    else:
        preview = ""
    return preview[:200]


def _context(history: list[Message], num: int) -> list[dict[str, Any]]:
    """The hit and one message either side (by time, then id), every state included."""
    for i, m in enumerate(history):
        if m.num == num:
            window = history[max(0, i - 1) : i + 2]
            return [{"role": w.role, "content": _context_text(w.content)} for w in window]
    return []


def _repair_alternation(msgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Without Hermes installed, ``repair_alternation``'s stand-in: consecutive user messages
    with text content merged (the model APIs refuse two user turns in a row)."""
    out: list[dict[str, Any]] = []
    for m in msgs:
        prev = out[-1] if out else None
        if (
            prev is not None
            and prev["role"] == m["role"] == "user"
            and isinstance(prev.get("content"), str)
            and isinstance(m.get("content"), str)
        ):
            prev["content"] = prev["content"] + "\n\n" + m["content"]
            continue
        out.append(dict(m))
    return out


def _timestamp(value: Any, default: float | None = None) -> float:
    """Hermes' reading of an explicit message time: a number, or anything with
    ``.timestamp()`` (a datetime); otherwise (or unreadable) now."""
    if value is not None:
        try:
            return float(value.timestamp()) if hasattr(value, "timestamp") else float(value)
        except (TypeError, ValueError):
            pass
    return time.time() if default is None else default


def _ascii_lower(text: str) -> str:
    """Text as SQL LIKE compares it: ASCII letters lowered, other characters as they are."""
    return "".join(c.lower() if c.isascii() else c for c in text)


def _sql_like(value: str, pattern: str) -> bool:
    """SQL LIKE without ESCAPE: ``%`` any run, ``_`` any one character, ASCII case ignored."""
    body = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in _ascii_lower(pattern))
    return re.fullmatch(body, _ascii_lower(value), re.DOTALL) is not None


def _cwd_under(cwd: Any, prefix: str) -> bool:
    """Hermes' ``cwd_prefix`` filter: the folder itself, or (SQL LIKE) anything under it."""
    if not isinstance(cwd, str):
        return False
    base = prefix.rstrip("/\\") or prefix
    return cwd == base or _sql_like(cwd, base + "/%") or _sql_like(cwd, base + "\\%")


class _Desc:
    """Sorts a string in descending order inside an ascending sort key."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __lt__(self, other: _Desc) -> bool:
        return self.value > other.value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Desc) and self.value == other.value

    def __hash__(self) -> int:
        return hash(self.value)


def _model_config(s: Session) -> dict[str, Any]:
    extra = _loads(s.extra, {}) or {}
    config = _loads(extra.get("model_config"), {}) if isinstance(extra, dict) else {}
    return config if isinstance(config, dict) else {}


# The session-extra key recording that a session lost its parent (Hermes sets the column to
# NULL when the parent is deleted; the store cannot clear the field, so the parent it still
# names is read as none while this key names it).
ORPHANED_KEY = "_orphaned_from"


def parent_of(s: Session) -> str | None:
    """The session's parent as Hermes has it: None once that parent was deleted."""
    if s.parent_session_id is None:
        return None
    extra = _loads(s.extra, {}) or {}
    if isinstance(extra, dict) and extra.get(ORPHANED_KEY) == s.parent_session_id:
        return None
    return s.parent_session_id


def _listable(s: Session, by_id: Mapping[str, Session]) -> bool:
    """What Hermes' pickers list: roots, and branches (``_branched_from`` in the model config,
    or a parent that ended ``branched`` before this one started); never a delegate run."""
    if _model_config(s).get("_delegate_from") is not None:
        return False
    parent_id = parent_of(s)
    if parent_id is None:
        return True
    if _model_config(s).get("_branched_from") is not None:
        return True
    parent = by_id.get(parent_id)
    return (
        parent is not None
        and parent.end_reason == "branched"
        and parent.ended_at is not None
        and (s.started_at or 0.0) >= parent.ended_at
    )


def _delegate_children(sessions: Iterable[Session], parent_ids: list[str]) -> list[str]:
    """The delegate subagent sessions under ``parent_ids``, recursively: those whose model
    config names one as ``_delegate_from``, or whose parent is one and that carry the marker."""
    marked = {s.id: (parent_of(s), _model_config(s).get("_delegate_from")) for s in sessions}
    found = set(parent_ids)
    frontier = set(parent_ids)
    while frontier:
        new = {
            sid
            for sid, (parent, delegate_from) in marked.items()
            if sid not in found and (delegate_from in frontier or (parent in frontier and delegate_from is not None))
        }
        found |= new
        frontier = new
    return [sid for sid in found if sid not in parent_ids]


def _remove_session_files(sessions_dir: Path | None, session_id: str) -> None:
    """Removes ``<id>.json``, ``<id>.jsonl`` and ``request_dump_<id>_*.json`` from the
    gateway's sessions folder, ignoring what is missing or cannot be removed."""
    if sessions_dir is None:
        return
    folder = Path(sessions_dir)
    paths = [folder / f"{session_id}.json", folder / f"{session_id}.jsonl"]
    try:
        paths += list(folder.glob(f"request_dump_{session_id}_*.json"))
    except OSError:
        pass
    for p in paths:
        try:
            p.unlink(missing_ok=True)
        except OSError:
            pass
