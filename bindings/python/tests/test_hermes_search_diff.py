"""`Store.search_hermes` against Hermes Agent's own `search_messages` (hermes-agent 0.19.0): the
same hits, in the same order, with the same snippets, for the same messages and queries."""

from __future__ import annotations

from typing import Any

import pytest
from hermes_diff import Pair

MESSAGES = [
    ("s1", "cli", "user", "The cat sat on the mat, near the door"),
    ("s1", "cli", "assistant", "Concatenate the files, then CAT them; cat is a unix tool"),
    ("s1", "cli", "user", "Café au lait, s'il vous plaît. The chat-send config is in my-app.config.ts"),
    ("s2", "telegram", "user", "数据库迁移失败了，请检查日志"),
    ("s2", "telegram", "assistant", "我们 讨论 一下 数据库"),
    ("s2", "telegram", "user", "deploy the docker image to kubernetes, then deploy again"),
    ("s3", "discord", "user", "python is not java; java is not python"),
    ("s3", "discord", "assistant", "P2.2 notes: snake_case_name and deployment of the cat"),
    ("s3", "discord", "tool", "filler " * 3000 + "needle at the very end"),
]
QUERIES = [
    "cat", "CAT", "cafe", "café", "concat*", "deploy*", '"the mat"', "cat NOT mat", "cat OR files", "cat not mat",
    "cat or files", "python AND java", "python NOT java", "docker kubernetes", "chat-send", "my-app.config.ts",
    "P2.2", "snake_case_name", "数据库", "讨论", "迁移失败", "日志", "a", "ca", "(", ")", '"', "NEAR(cat mat)",
    "cat*", "*cat", "needle", "the", "deploy the", "AND cat", "cat OR", "+cat", "{cat}", "cat:mat", "%", "_",
]


@pytest.fixture
def filled(pair: Pair) -> Pair:
    for sid, source, role, content in MESSAGES:
        pair.real.create_session(sid, source)
        pair.ours.create_session(sid, source)
        pair.real.append_message(sid, role, content)
        pair.ours.append_message(sid, role, content)
    assert pair.ours.store.wait_indexed(30)
    return pair


def _real(pair: Pair, q: str, **kw: Any) -> list[tuple[str, str, str]]:
    hits = pair.real.search_messages(q, **kw)
    return [(h["session_id"], h["role"], h["snippet"]) for h in hits]


def _ours(pair: Pair, q: str, **kw: Any) -> list[tuple[str, str, str]]:
    hits = pair.ours.store.search_hermes(q, **kw)
    return [(h.message.session_id, h.message.role, h.snippet) for h in hits]


@pytest.mark.parametrize("query", QUERIES)
def test_same_hits_order_and_snippets(filled: Pair, query: str) -> None:
    assert _ours(filled, query) == _real(filled, query)


@pytest.mark.parametrize(
    "kw",
    [
        {"sort": "newest"},
        {"sort": "oldest"},
        {"source_filter": ["cli"]},
        {"exclude_sources": ["cli", "discord"]},
        {"role_filter": ["assistant"]},
        {"limit": 1},
        {"limit": 2, "offset": 1},
    ],
    ids=repr,
)
def test_filters_order_and_pages(filled: Pair, kw: dict[str, Any]) -> None:
    for query in ("cat", "the", "数据库", "讨论"):
        assert _ours(filled, query, **kw) == _real(filled, query, **kw), query
