"""Hermes' message search, answered the way its SQLite answers it.

Hermes 0.19.0 (``SessionDB.search_messages``) indexes, per message row, the text
``content || ' ' || tool_name || ' ' || tool_calls`` twice: in an FTS5 table with the default
``unicode61`` tokenizer and in one with the ``trigram`` tokenizer. A cleaned query
(:func:`sanitize_fts5_query`) then goes one of three ways:

* no CJK text: FTS5's query language on the ``unicode61`` table, ranked by ``bm25``
  (an invalid query finds nothing);
* CJK words of 3+ CJK characters each: every word quoted, on the ``trigram`` table;
* other CJK text: a ``LIKE`` substring scan, any word in content, tool name or tool calls,
  newest first.

The store's own index is a trigram index over the content and tool name only (not the tool
calls, and not ``unicode61`` tokens), so its ranking and matches differ from Hermes'. This
module keeps a mirror of the indexed text in an in-memory SQLite database (Python's ``sqlite3``,
the engine Hermes runs on): two FTS5 tables, brought up to date with the store's messages
before each search, answer the query with FTS5's own tokenizers, ``bm25`` ranking and
``snippet()``. Nothing of it is written to disk; it is rebuilt from the store when a process
starts searching. Without FTS5 in ``sqlite3`` search finds nothing, as Hermes' does.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import Protocol, Union


class Row(Protocol):
    """What search reads of a message (``tidelog.Message`` has it)."""

    @property
    def num(self) -> int: ...
    @property
    def content(self) -> str | None: ...
    @property
    def tool_name(self) -> str | None: ...
    @property
    def tool_calls(self) -> str | None: ...
    @property
    def timestamp(self) -> float: ...

MAX_FTS5_QUERY_CHARS = 2048

_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x3000, 0x303F),
    (0x3040, 0x309F),
    (0x30A0, 0x30FF),
    (0xAC00, 0xD7AF),
)
_OPERATORS = ("AND", "OR", "NOT")


def is_cjk_char(ch: str) -> bool:
    """Hermes' CJK test for one character (ideographs, CJK punctuation, kana, hangul)."""
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


def contains_cjk(text: str) -> bool:
    return any(is_cjk_char(c) for c in text)


def count_cjk(text: str) -> int:
    return sum(1 for c in text if is_cjk_char(c))


def sanitize_fts5_query(query: str) -> str:
    """Hermes' query cleaning (``SessionDB._sanitize_fts5_query``): the query cut to 2048
    characters; each balanced ``"..."`` kept as it is and a ``"`` without partner made a space;
    ``+ { } ( ) : " ^`` elsewhere made spaces; runs of ``*`` made one and a ``*`` starting a word
    dropped; one AND / OR / NOT (any case) at the start and one at the end dropped; words joined
    by ``.``, ``-`` or ``_`` quoted as one phrase (``chat-send`` becomes ``"chat-send"``)."""
    query = query[:MAX_FTS5_QUERY_CHARS]
    kept: list[str] = []
    out: list[str] = []
    i = 0
    while i < len(query):
        c = query[i]
        if c != '"':
            out.append(c)
            i += 1
            continue
        end = query.find('"', i + 1)
        if end < 0:
            out.append(" ")
            i += 1
            continue
        kept.append(query[i : end + 1])
        out.append(f"\x00Q{len(kept) - 1}\x00")
        i = end + 1
    text = re.sub(r'[+{}():"^]', " ", "".join(out))
    text = re.sub(r"\*+", "*", text)
    text = re.sub(r"(^|\s)\*", r"\1", text)
    text = re.sub(r"(?i)^(AND|OR|NOT)\b\s*", "", text.strip())
    text = re.sub(r"(?i)\s+(AND|OR|NOT)\s*$", "", text.strip())
    text = re.sub(r"\b(\w+(?:[._-]\w+)+)\b", r'"\1"', text)
    for n, phrase in enumerate(kept):
        text = text.replace(f"\x00Q{n}\x00", phrase)
    return text.strip()


def indexed_text(m: Row) -> str:
    """What Hermes' FTS tables index for a row: content, tool name and tool calls as stored,
    joined by spaces."""
    return f"{m.content or ''} {m.tool_name or ''} {m.tool_calls or ''}"


class QuerySyntaxError(ValueError):
    """FTS5 refuses the query (Hermes then answers with no results, or, for CJK, a LIKE scan)."""


Hit = tuple[Row, Callable[[], Union[str, None]]]


class FtsMirror:
    """The indexed text of every message in two in-memory FTS5 tables, ``unicode61`` (the
    default tokenizer) and ``trigram``, keyed by row number; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._texts: dict[int, str] = {}
        self._tables: list[str] = []
        self._conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        for table, options in (("words", ""), ("grams", ", tokenize='trigram'")):
            try:
                self._conn.execute(f"CREATE VIRTUAL TABLE {table} USING fts5(content{options})")
            except sqlite3.Error:  # no FTS5, or a SQLite before 3.34 (no trigram tokenizer)
                continue
            self._tables.append(table)

    @property
    def available(self) -> bool:
        """True if ``sqlite3`` has FTS5 (Hermes' search needs it too)."""
        return "words" in self._tables

    def _sync(self, conn: sqlite3.Connection, rows: Sequence[Row]) -> None:
        texts = {m.num: indexed_text(m) for m in rows}
        gone = [n for n in self._texts if texts.get(n) != self._texts[n]]
        fresh = [(n, t) for n, t in texts.items() if self._texts.get(n) != t]
        if not gone and not fresh:
            return
        conn.execute("BEGIN")
        for table in self._tables:
            conn.executemany(f"DELETE FROM {table} WHERE rowid = ?", [(n,) for n in gone])
            conn.executemany(f"INSERT INTO {table}(rowid, content) VALUES (?, ?)", fresh)
        conn.execute("COMMIT")
        self._texts = texts

    def search(
        self, table: str, fts_query: str, every: Sequence[Row], candidates: Sequence[Row], order: str | None
    ) -> list[Hit]:
        """FTS5's answer on a table of ``every`` row: the matching ``candidates`` by ``bm25``
        (by time with ``order``, ``bm25`` breaking ties), each with its snippet. A query FTS5
        refuses raises :class:`QuerySyntaxError`."""
        if table not in self._tables:
            raise QuerySyntaxError(f"no {table} table")
        by_num = {m.num: m for m in candidates}
        with self._lock:
            self._sync(self._conn, every)
            try:
                found = self._conn.execute(
                    f"SELECT rowid, rank, snippet({table}, 0, '>>>', '<<<', '...', 40) FROM {table} "
                    f"WHERE {table} MATCH ? ORDER BY rank",
                    (fts_query,),
                ).fetchall()
            except sqlite3.OperationalError as e:
                raise QuerySyntaxError(str(e)) from e
        hits = [(by_num[num], rank, snip) for num, rank, snip in found if num in by_num]
        if order == "newest":
            hits.sort(key=lambda h: (-h[0].timestamp, h[1]))
        elif order == "oldest":
            hits.sort(key=lambda h: (h[0].timestamp, h[1]))
        return [(m, _const(snip)) for m, _, snip in hits]


def _const(value: str | None) -> Callable[[], str | None]:
    return lambda: value


def _like_fold(text: str) -> str:
    """SQLite's LIKE compares ASCII letters without case, other characters exactly."""
    return "".join(c.lower() if c.isascii() else c for c in text)


def like_hits(words: list[str], candidates: Sequence[Row]) -> list[Hit]:
    """Hermes' LIKE fallback: rows whose content, tool name or tool calls hold any word, newest
    first; the snippet is 120 characters of the content from 40 before the first word's first
    occurrence (case-sensitive, as ``instr``)."""
    needles = [_like_fold(w) for w in words]
    found = []
    for m in candidates:
        fields = [_like_fold(f) for f in (m.content, m.tool_name, m.tool_calls) if f is not None]
        if any(n in f for n in needles for f in fields):
            found.append(m)
    found.sort(key=lambda m: (-m.timestamp, m.num))

    def snip(content: str | None) -> Callable[[], str | None]:
        def make() -> str | None:
            if content is None:
                return None
            start = max(1, content.find(words[0]) + 1 - 40)
            return content[start - 1 : start - 1 + 120]

        return make

    return [(m, snip(m.content)) for m in found]
