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

The store's own index is a trigram index over the content and tool name only, so this module
evaluates the query itself over every message (tokens, phrase positions, ``bm25`` with the
corpus' statistics, FTS5's ``snippet()`` with ``'>>>'``, ``'<<<'``, ``'...'``, 40 tokens).
What it reads is written from FTS5's documented behaviour and checked against Hermes'
results by ``tests/test_hermes_parity_core.py``.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
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


# ---------------------------------------------------------------------------------------------
# Tokenizers: (folded token, start offset, end offset) in a Python string.

Token = tuple[str, int, int]


def _is_token_char(c: str) -> bool:
    cat = unicodedata.category(c)
    return cat[0] in "LN" or cat == "Co"


def _fold(word: str) -> str:
    """``unicode61``'s folding: lower case, and a Latin letter's single diacritic removed."""
    out = []
    for c in word.lower():
        if ord(c) < 0x80:
            out.append(c)
            continue
        d = unicodedata.normalize("NFD", c)
        if len(d) == 2 and ord(d[0]) < 0x80 and unicodedata.category(d[1]) == "Mn":
            out.append(d[0])
        else:
            out.append(c)
    return "".join(out)


def unicode61(text: str) -> list[Token]:
    """The tokens FTS5's default ``unicode61`` tokenizer reads: runs of letters, digits and
    private-use characters, folded."""
    tokens: list[Token] = []
    start = -1
    for i, c in enumerate(text):
        if _is_token_char(c):
            if start < 0:
                start = i
        elif start >= 0:
            tokens.append((_fold(text[start:i]), start, i))
            start = -1
    if start >= 0:
        tokens.append((_fold(text[start:]), start, len(text)))
    return tokens


def trigram(text: str) -> list[Token]:
    """The tokens of FTS5's ``trigram`` tokenizer: every 3 characters, case-folded."""
    folded = "".join(c if len(c.lower()) != 1 else c.lower() for c in text)
    return [(folded[i : i + 3], i, i + 3) for i in range(len(text) - 2)]


# ---------------------------------------------------------------------------------------------
# FTS5 queries


class QuerySyntaxError(ValueError):
    """FTS5 refuses the query (Hermes then returns no results)."""


@dataclass
class Phrase:
    """A phrase: its tokens, the last one a prefix with ``prefix``; ``index`` numbers the
    phrases of a query in order."""

    tokens: list[str]
    prefix: bool
    index: int = 0


@dataclass
class Op:
    op: str  # "AND", "OR", "NOT"
    left: Node
    right: Node


Node = Union[Phrase, Op]


@dataclass
class Query:
    root: Node | None
    phrases: list[Phrase] = field(default_factory=list)


def _bareword_char(c: str) -> bool:
    return ord(c) >= 0x80 or c.isascii() and (c.isalnum() or c == "_") or c == "\x1a"


def _lex(query: str) -> list[tuple[str, str]]:
    """FTS5's lexer: ``("STRING", text)``, ``("STAR", "*")`` and operators; other characters
    outside strings are a syntax error."""
    out: list[tuple[str, str]] = []
    i = 0
    n = len(query)
    while i < n:
        c = query[i]
        if c in " \t\n\r\f\v":
            i += 1
        elif c == '"':
            j = i + 1
            buf = []
            while True:
                if j >= n:
                    raise QuerySyntaxError("unterminated string")
                if query[j] == '"':
                    if j + 1 < n and query[j + 1] == '"':
                        buf.append('"')
                        j += 2
                        continue
                    break
                buf.append(query[j])
                j += 1
            out.append(("STRING", "".join(buf)))
            i = j + 1
        elif c == "*":
            out.append(("STAR", c))
            i += 1
        elif _bareword_char(c):
            j = i
            while j < n and _bareword_char(query[j]):
                j += 1
            word = query[i:j]
            out.append((word if word in _OPERATORS else "STRING", word))
            i = j
        else:
            raise QuerySyntaxError(f"syntax error near {c!r}")
    return out


def parse_query(query: str, tokenize: Callable[[str], list[Token]]) -> Query:
    """Parses FTS5's query language (strings, ``*`` prefixes, implicit AND binding tightest,
    then NOT, AND, OR, all left-associative). Raises :class:`QuerySyntaxError`."""
    toks = _lex(query)
    pos = 0
    phrases: list[Phrase] = []

    def peek() -> str | None:
        return toks[pos][0] if pos < len(toks) else None

    def phrase() -> Node | None:
        nonlocal pos
        kind, text = toks[pos]
        if kind != "STRING":
            raise QuerySyntaxError(f"syntax error near {text!r}")
        pos += 1
        prefix = False
        if peek() == "STAR":
            prefix = True
            pos += 1
        words = [t for t, _, _ in tokenize(text)]
        if not words:
            return None
        p = Phrase(words, prefix, len(phrases))
        phrases.append(p)
        return p

    def exprlist() -> Node | None:
        if peek() != "STRING":
            raise QuerySyntaxError("syntax error")
        node = phrase()
        while peek() == "STRING":
            right = phrase()
            node = right if node is None else node if right is None else Op("AND", node, right)
        return node

    def level(op: str, below: Callable[[], Node | None]) -> Callable[[], Node | None]:
        # An empty phrase is FTS5's EOF node: AND with it matches nothing, OR and a NOT on
        # the right keep the other side.
        def parse() -> Node | None:
            nonlocal pos
            node = below()
            while peek() == op:
                pos += 1
                right = below()
                if node is None or right is None:
                    if op == "OR":
                        node = right if node is None else node
                    elif op == "AND" or node is None:
                        node = None
                    continue
                node = Op(op, node, right)
            return node

        return parse

    or_level = level("OR", level("AND", level("NOT", exprlist)))
    if not toks:
        raise QuerySyntaxError("empty query")
    root = or_level()
    if pos != len(toks):
        raise QuerySyntaxError(f"syntax error near {toks[pos][1]!r}")
    return Query(root, phrases)


class Doc:
    """One indexed row: its text, tokens and each phrase's match positions."""

    __slots__ = ("text", "tokens", "words")

    def __init__(self, text: str, tokens: list[Token]) -> None:
        self.text = text
        self.tokens = tokens
        self.words = [t for t, _, _ in tokens]

    def positions(self, p: Phrase) -> list[int]:
        words = self.words
        k = len(p.tokens)
        last = k - 1
        out = []
        for i in range(len(words) - k + 1):
            for j, want in enumerate(p.tokens):
                got = words[i + j]
                if not (got == want or (p.prefix and j == last and got.startswith(want))):
                    break
            else:
                out.append(i)
        return out


def _matches(node: Node, pos: dict[int, list[int]]) -> bool:
    if isinstance(node, Phrase):
        return bool(pos[node.index])
    if node.op == "AND":
        return _matches(node.left, pos) and _matches(node.right, pos)
    if node.op == "OR":
        return _matches(node.left, pos) or _matches(node.right, pos)
    return _matches(node.left, pos) and not _matches(node.right, pos)


def evaluate(query: Query, doc: Doc) -> dict[int, list[int]] | None:
    """Each phrase's positions in ``doc`` if the query matches it, else None."""
    if query.root is None:
        return None
    pos = {p.index: doc.positions(p) for p in query.phrases}
    return pos if _matches(query.root, pos) else None


def bm25(
    query: Query, pos: dict[int, list[int]], doc_len: int, n_docs: int, avg_len: float, doc_freq: Sequence[int]
) -> float:
    """FTS5's ``bm25()`` negated (higher is better): k1 = 1.2, b = 0.75; an IDF at or below 0
    counts as 1e-6."""
    score = 0.0
    for p in query.phrases:
        f = len(pos[p.index])
        n = doc_freq[p.index]
        idf = math.log((n_docs - n + 0.5) / (n + 0.5))
        if idf <= 0.0:
            idf = 1e-6
        score += idf * (f * 2.2) / (f + 1.2 * (1 - 0.75 + 0.75 * doc_len / avg_len))
    return score


def snippet(
    doc: Doc, query: Query, pos: dict[int, list[int]], n_tokens: int = 40, open_: str = ">>>", close: str = "<<<",
    ellipsis: str = "...",
) -> str:
    """FTS5's ``snippet()`` of one column: the best window of ``n_tokens`` tokens (one holding
    the most distinct phrases, centred on them, or starting a sentence), matches marked."""
    size = {p.index: len(p.tokens) for p in query.phrases}
    # Instances ordered by position, then by phrase number.
    inst = sorted((o, ph) for ph, offs in pos.items() for o in offs)
    text = doc.text
    tokens = doc.tokens
    n_doc = len(tokens)
    firsts = [0] if tokens else []
    for k in range(1, n_doc):
        start = tokens[k][1]
        i = start - 1
        while i >= 0 and text[i] in " \t\n\r":
            i -= 1
        if i != start - 1 and i >= 0 and text[i] in ".:":
            firsts.append(k)

    def score(at: int) -> tuple[int, int]:
        seen: set[int] = set()
        total = 0
        first = -1
        last = 0
        for o, ph in inst:
            if at <= o < at + n_tokens:
                total += 1 if ph in seen else 1000
                seen.add(ph)
                if first < 0:
                    first = o
                last = o + size[ph]
        adj = first - (n_tokens - (last - first)) // 2
        if adj + n_tokens > n_doc:
            adj = n_doc - n_tokens
        return total, max(adj, 0)

    best_score = 0
    best_start = 0
    for o, _ in inst:
        sc, adj = score(o)
        if sc > best_score:
            best_score, best_start = sc, adj
        if firsts and n_doc > n_tokens:
            jj = 0
            while jj < len(firsts) - 1 and firsts[jj + 1] <= o:
                jj += 1
            if firsts[jj] < o:
                sc2, _ = score(firsts[jj])
                sc2 += 120 if firsts[jj] == 0 else 100
                if sc2 > best_score:
                    best_score, best_start = sc2, firsts[jj]
    # Coalesced instances: overlapping ones merge, adjacent ones do not.
    spans: list[list[int]] = []
    for o, ph in inst:
        end = o + size[ph] - 1
        if spans and o <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], end)
        else:
            spans.append([o, end])
    range_start = best_start
    range_end = best_start + n_tokens - 1
    out: list[str] = []
    if best_start > 0:
        out.append(ellipsis)
    spans = [s for s in spans if s[0] >= range_start]
    si = 0
    off = 0
    for k, (_, s_off, e_off) in enumerate(tokens):
        if k < range_start or k > range_end:
            continue
        if range_start and k == range_start:
            off = s_off
        if si < len(spans) and k == spans[si][0]:
            out.append(text[off:s_off])
            out.append(open_)
            off = s_off
        if si < len(spans) and k == spans[si][1]:
            out.append(text[off:e_off])
            out.append(close)
            off = e_off
            si += 1
        if k == range_end:
            out.append(text[off:e_off])
            off = e_off
            if si < len(spans) and spans[si][0] <= k < spans[si][1]:
                out.append(close)
    if range_end >= n_doc - 1:
        out.append(text[off:])
    else:
        out.append(ellipsis)
    # FTS5 appends each piece with printf's "%.*s", which stops at a NUL (multimodal content
    # starts with one).
    return "".join(piece.split("\x00", 1)[0] for piece in out)


@dataclass
class Corpus:
    """The indexed rows: ``docs`` by row number, with the totals ``bm25`` reads."""

    docs: dict[int, Doc]

    @property
    def avg_len(self) -> float:
        total = sum(len(d.tokens) for d in self.docs.values())
        return total / len(self.docs) if self.docs else 1.0

    def rank(self, query: Query, candidates: Iterable[int]) -> list[tuple[int, float, dict[int, list[int]]]]:
        """The matching rows among ``candidates`` with their ``bm25`` score and positions; the
        document frequencies are counted over every row, as FTS5 counts them."""
        freq = [0] * len(query.phrases)
        for d in self.docs.values():
            present = set(d.words)
            for p in query.phrases:
                if (p.prefix or all(w in present for w in p.tokens)) and d.positions(p):
                    freq[p.index] += 1
        n = len(self.docs)
        avg = self.avg_len or 1.0
        out = []
        for num in candidates:
            doc = self.docs[num]
            pos = evaluate(query, doc)
            if pos is not None:
                out.append((num, bm25(query, pos, len(doc.tokens), n, avg, freq), pos))
        return out


def indexed_text(m: Row) -> str:
    """What Hermes' FTS tables index for a row: content, tool name and tool calls as stored,
    joined by spaces."""
    return f"{m.content or ''} {m.tool_name or ''} {m.tool_calls or ''}"


class DocCache:
    """Tokenized rows by row number and tokenizer, kept while a row's text is unchanged."""

    def __init__(self) -> None:
        self._docs: dict[tuple[str, int], Doc] = {}

    def corpus(self, tokenize: Callable[[str], list[Token]], rows: Iterable[Row]) -> Corpus:
        docs: dict[int, Doc] = {}
        fresh: dict[tuple[str, int], Doc] = {}
        for m in rows:
            key = (tokenize.__name__, m.num)
            text = indexed_text(m)
            doc = self._docs.get(key)
            if doc is None or doc.text != text:
                doc = Doc(text, tokenize(text))
            fresh[key] = doc
            docs[m.num] = doc
        self._docs = {k: v for k, v in self._docs.items() if k[0] != tokenize.__name__}
        self._docs.update(fresh)
        return Corpus(docs)


Hit = tuple[Row, Callable[[], Union[str, None]]]


def fts_hits(
    cache: DocCache,
    fts_query: str,
    tokenize: Callable[[str], list[Token]],
    every: Sequence[Row],
    candidates: Sequence[Row],
    order: str | None,
    *,
    strict: bool = False,
) -> list[Hit]:
    """FTS5's answer on a table of ``every`` row: the matching ``candidates`` by ``bm25`` (or by
    time, ``bm25`` breaking ties), each with its snippet to compute. A query FTS5 refuses finds
    nothing (``strict``: raises :class:`QuerySyntaxError`)."""
    try:
        query = parse_query(fts_query, tokenize)
    except QuerySyntaxError:
        if strict:
            raise
        return []
    corpus = cache.corpus(tokenize, every)
    by_num = {m.num: m for m in candidates}
    ranked = corpus.rank(query, by_num)
    if order == "newest":
        ranked.sort(key=lambda r: (-by_num[r[0]].timestamp, -r[1], r[0]))
    elif order == "oldest":
        ranked.sort(key=lambda r: (by_num[r[0]].timestamp, -r[1], r[0]))
    else:
        ranked.sort(key=lambda r: (-r[1], r[0]))

    def snip(num: int, pos: dict[int, list[int]]) -> Callable[[], str | None]:
        return lambda: snippet(corpus.docs[num], query, pos)

    return [(by_num[num], snip(num, pos)) for num, _, pos in ranked]


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
