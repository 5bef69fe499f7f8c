"""What the ``tidelog.hermes`` modules share: Hermes' constants, query sanitizing, the
encodings of Hermes' fields in tidelog messages and sessions, and the row shapes Hermes returns."""
from __future__ import annotations

import asyncio
import importlib
import json
import os
import re
import sys
import time
import types
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from .._errors import TitleTakenError
from .._tidelog import Message, SearchHit, Session, Store


# Multimodal content is stored as this marker followed by JSON (Hermes' encoding).
CONTENT_JSON_PREFIX = "\x00json:"
# The store metadata key recording the import of the Hermes database. Persisted in existing
# stores: it keeps the name it had before the rename to tidelog.
IMPORT_META_KEY = "logbook.hermes.import"
# Hermes' limits.
MAX_FTS5_QUERY_CHARS = 2048
MAX_TITLE_LENGTH = 100

# Message fields of Hermes rows that the tidelog model has no field for: kept in `extra`.
_EXTRA_MESSAGE_FIELDS = (
    "reasoning_content",
    "reasoning_details",
    "codex_reasoning_items",
    "codex_message_items",
    "effect_disposition",
    "display_kind",
    "display_metadata",
    "observed",
    "_compressed_summary",
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
# Children inherit these from their parent session when not given.
_INHERITED = ("cwd", "git_repo_root", "git_branch", "profile_name")
_ROUTE_FIELDS = ("cost_status", "cost_source", "pricing_version", "billing_provider", "billing_base_url", "billing_mode")

# ---------------------------------------------------------------------------------------------
# Query sanitizing and parsing

# Characters the FTS5 grammar refuses outside a quoted string ('%' is handled on its own).
_SPECIALS = set('+{}():"^@/#&|~[]<>,;!?$=\\\'')
_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x3000, 0x303F),
    (0x3040, 0x309F),
    (0x30A0, 0x30FF),
    (0xAC00, 0xD7AF),
)
_OPERATORS = {"AND", "OR", "NOT"}


def _is_cjk_char(ch: str) -> bool:
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


def contains_cjk(text: str) -> bool:
    """True if ``text`` holds a CJK ideograph, kana, hangul or CJK punctuation."""
    return any(_is_cjk_char(c) for c in text)


def sanitize_fts5_query(query: str) -> str:
    """Hermes' query sanitizing (``_sanitize_fts5_query``): the query cut to 2048 characters;
    balanced ``"phrases"`` kept as they are and a stray ``"`` dropped; FTS5 special characters
    removed (``%`` too, unless the query has CJK text); runs of ``*`` collapsed and a ``*`` that
    starts a word dropped; a leading or trailing AND / OR / NOT removed; words joined by ``.``,
    ``-`` or ``_`` quoted as one phrase (``chat-send`` becomes ``"chat-send"``)."""
    query = query[:MAX_FTS5_QUERY_CHARS]
    phrases: list[str] = []
    out: list[str] = []
    i = 0
    while i < len(query):
        c = query[i]
        if c == '"':
            end = query.find('"', i + 1)
            if end < 0:
                out.append(" ")  # an unmatched quote
                i += 1
                continue
            phrases.append(query[i : end + 1])
            out.append(f"\x00{len(phrases) - 1}\x00")
            i = end + 1
            continue
        out.append(" " if c in _SPECIALS else c)
        i += 1
    text = "".join(out)
    if "%" in text and not contains_cjk(text):
        text = text.replace("%", " ")
    text = re.sub(r"\*{2,}", "*", text)
    text = re.sub(r"(?:(?<=\s)|^)\*", "", text)
    text = text.strip()
    text = re.sub(r"^(?:AND|OR|NOT)\b\s*", "", text, flags=re.IGNORECASE)
    text = re.sub(r"\s+(?:AND|OR|NOT)\s*$", "", text.strip(), flags=re.IGNORECASE)
    text = re.sub(r"\b\w+(?:[._-]\w+)+\b", lambda m: f'"{m.group(0)}"', text)
    for n, phrase in enumerate(phrases):
        text = text.replace(f"\x00{n}\x00", phrase)
    return text.strip()


class _Term:
    """One term of a parsed query: a word, a ``prefix*`` or a quoted phrase."""

    __slots__ = ("text", "phrase", "prefix", "negated")

    def __init__(self, text: str, *, phrase: bool, prefix: bool, negated: bool) -> None:
        self.text = text
        self.phrase = phrase
        self.prefix = prefix
        self.negated = negated

    def words(self) -> list[str]:
        """What the store is asked for: the term's whitespace-separated words."""
        return self.text.split()

    def pattern(self, whole_words: bool) -> re.Pattern[str]:
        """A regular expression finding the term in text, case-insensitively. With
        ``whole_words``, a word (not CJK) must match whole words (a ``prefix*`` the start of
        one), as Hermes' unicode61 index matches tokens."""
        body = r"\s+".join(re.escape(w) for w in self.words())
        if whole_words and not contains_cjk(self.text):
            body = r"(?<!\w)" + body + ("" if self.prefix else r"(?!\w)")
        return re.compile(body, re.IGNORECASE)


def _parse(sanitized: str) -> list[list[_Term]]:
    """Splits a sanitized query into OR groups of terms (implicit AND inside a group), as
    FTS5 reads it: ``NOT`` negates the next term, ``AND`` and ``NEAR`` are ignored."""
    groups: list[list[_Term]] = [[]]
    negate = False
    for tok in re.findall(r'"[^"]*"|\S+', sanitized):
        op = tok.upper()
        if op == "OR":
            if groups[-1]:
                groups.append([])
            negate = False
            continue
        if op in ("AND", "NEAR"):
            continue
        if op == "NOT":
            negate = True
            continue
        phrase = tok.startswith('"')
        prefix = not phrase and tok.endswith("*")
        text = tok.strip('"').strip("*").strip()
        if text:
            groups[-1].append(_Term(text, phrase=phrase, prefix=prefix, negated=negate))
        negate = False
    return [g for g in groups if any(not t.negated for t in g)]


# ---------------------------------------------------------------------------------------------
# Encodings


def _encode_content(content: Any) -> str | None:
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, (list, dict)):
        return CONTENT_JSON_PREFIX + json.dumps(content)
    return str(content)


def _decode_content(content: str | None) -> Any:
    if content is not None and content.startswith(CONTENT_JSON_PREFIX):
        try:
            return json.loads(content[len(CONTENT_JSON_PREFIX) :])
        except ValueError:
            return content
    return content


def _text_of(content: Any) -> str:
    """The searchable text of decoded content (multimodal parts joined)."""
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return content if isinstance(content, str) else ""


def _tool_calls_json(tool_calls: Any) -> str | None:
    if not tool_calls:
        return None
    if isinstance(tool_calls, str):
        try:
            json.loads(tool_calls)
        except ValueError:
            return json.dumps([])
        return tool_calls
    return json.dumps(tool_calls)


def _loads(text: str | None, default: Any = None) -> Any:
    if text is None:
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default


def _json_field(value: Any) -> Any:
    """A JSON-ish Hermes field kept in ``extra``: strings holding JSON are decoded."""
    if isinstance(value, str):
        return _loads(value, value)
    return value


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


def _default_db_path() -> Path:
    home = os.environ.get("HERMES_HOME")
    return (Path(home) if home else Path.home() / ".hermes") / "state.db"


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


def _message_row(m: Message, active: bool, compacted: bool) -> dict[str, Any]:
    """A message as Hermes' ``get_messages`` returns a row."""
    extra = _loads(m.extra, {}) or {}
    if not isinstance(extra, dict):
        extra = {}
    row: dict[str, Any] = {
        "id": m.num,
        "session_id": m.session_id,
        "role": m.role,
        "content": _decode_content(m.content),
        "tool_call_id": m.tool_call_id,
        "tool_calls": _loads(m.tool_calls),
        "tool_name": m.tool_name,
        "timestamp": m.timestamp,
        "token_count": m.token_count,
        "finish_reason": m.finish_reason,
        "reasoning": m.reasoning,
        # Imported rows keep these Hermes columns in extra.
        "platform_message_id": m.platform_message_id or extra.get("platform_message_id"),
        "api_content": m.api_content if m.api_content is not None else extra.get("api_content"),
        "active": 1 if active else 0,
        "compacted": 1 if compacted else 0,
    }
    for k in _EXTRA_MESSAGE_FIELDS:
        v = extra.get(k)
        row[k] = _json_field(v) if k in ("reasoning_details", "codex_reasoning_items", "codex_message_items", "display_metadata") else v
    row["observed"] = 1 if extra.get("observed") else 0
    row["_compressed_summary"] = 1 if extra.get("_compressed_summary") else 0
    return row


def _conversation_dict(row: Mapping[str, Any], include_row_ids: bool) -> dict[str, Any]:
    d: dict[str, Any] = {"role": row["role"], "content": row["content"]}
    if row.get("tool_calls"):
        d["tool_calls"] = row["tool_calls"]
    if row.get("tool_call_id"):
        d["tool_call_id"] = row["tool_call_id"]
    if row["role"] == "tool" and row.get("tool_name"):
        d["name"] = row["tool_name"]
    if row["role"] == "assistant":
        for k in ("reasoning", "reasoning_content", "reasoning_details", "codex_reasoning_items", "codex_message_items"):
            if row.get(k):
                d[k] = row[k]
    if row.get("platform_message_id"):
        d["message_id"] = row["platform_message_id"]
    if row.get("api_content") is not None:
        d["api_content"] = row["api_content"]
    if include_row_ids:
        d["id"] = row["id"]
    return d


def _repair_alternation(msgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merges consecutive user messages with plain-text content (the model APIs refuse two user
    turns in a row)."""
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


def _preview(msgs: list[Message]) -> str:
    for m in msgs:
        if m.role == "user":
            text = " ".join(_text_of(_decode_content(m.content)).split())
            if text:
                return text[:60] + "..." if len(text) > 63 else text
    return ""


def _searchable(m: Message) -> str:
    return _text_of(_decode_content(m.content))


def _satisfies(m: Message, group: list[_Term], whole_words: bool) -> bool:
    text = _searchable(m)
    name = m.tool_name or ""
    for t in group:
        pat = t.pattern(whole_words)
        hit = bool(pat.search(text) or pat.search(name))
        if hit == t.negated:
            return False
    return True


def _snippet(m: Message, terms: list[_Term], width: int = 40) -> str:
    """About ``width`` words around the first match, every match in ``>>>``/``<<<``, cuts
    marked ``...`` (Hermes' ``snippet(..., '>>>', '<<<', '...', 40)``)."""
    text = _searchable(m) or (m.tool_name or "")
    pats = [t.pattern(False) for t in terms]
    spans = sorted({(mm.start(), mm.end()) for p in pats for mm in p.finditer(text)})
    merged: list[tuple[int, int]] = []
    for s, e in spans:
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(e, merged[-1][1]))
        else:
            merged.append((s, e))
    words = [(w.start(), w.end()) for w in re.finditer(r"\S+", text)]
    if merged and len(words) > width:
        first = next(i for i, (_, e) in enumerate(words) if e > merged[0][0])
        lo = max(0, first - width // 4)
        hi = min(len(words), lo + width)
        lo = max(0, hi - width)
        start, end = words[lo][0], words[hi - 1][1]
    else:
        start, end = 0, len(text)
    out = []
    pos = start
    for s, e in merged:
        if e <= start or s >= end:
            continue
        s, e = max(s, start), min(e, end)
        out.append(text[pos:s])
        out.append(">>>" + text[s:e] + "<<<")
        pos = e
    out.append(text[pos:end])
    snippet = "".join(out)
    if start > 0:
        snippet = "..." + snippet
    if end < len(text):
        snippet += "..."
    return snippet


def _context(history: list[Message], num: int) -> list[dict[str, Any]]:
    """The hit and one message either side (by time, then id), content cut to 200 characters."""
    for i, m in enumerate(history):
        if m.num == num:
            window = history[max(0, i - 1) : i + 2]
            return [{"role": w.role, "content": _text_of(_decode_content(w.content))[:200]} for w in window]
    return []


