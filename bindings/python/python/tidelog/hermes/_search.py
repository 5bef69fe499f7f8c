"""Hermes' query handling in Python: the cleaning (``sanitize_fts5_query``, Hermes'
``_sanitize_fts5_query``) and its CJK tests, for the names ``hermes_state`` exports and for the
layer's own routing decisions. The search itself is the store's (``Store.search_hermes``, in
Rust: the same cleaning and routing on the index's ``unicode61`` and trigram tables).
"""

from __future__ import annotations

import re

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
