"""Differential tests of the core ``SessionDB`` methods: the same calls on Hermes Agent 0.19.0's
own ``hermes_state.SessionDB`` and on ``tidelog.hermes.SessionDB``, every return value (or error
type) compared after normalizing row ids and times (tests/hermes_diff.py)."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import tidelog.hermes as ours_module
from hermes_diff import REAL, Pair, require_hermes

CORE = (
    "create_session ensure_session end_session reopen_session update_system_prompt update_session_model "
    "get_session set_session_title get_session_title get_session_by_title resolve_session_by_title "
    "get_next_title_in_lineage update_token_counts session_count message_count list_sessions_rich "
    "search_sessions get_meta set_meta append_message get_messages get_messages_as_conversation "
    "has_platform_message_id replace_messages archive_and_compact clear_messages delete_session "
    "export_session export_all search_messages close sanitize_title"
).split()


@pytest.mark.parametrize("name", CORE)
def test_signatures(name: str) -> None:
    """Every parameter, kind and default as Hermes has them."""
    require_hermes()

    def shape(f: Any) -> list[tuple[str, Any, Any]]:
        return [(p.name, p.kind, p.default) for p in inspect.signature(f).parameters.values()]

    assert shape(getattr(ours_module.SessionDB, name)) == shape(getattr(REAL, name))


def test_module_names() -> None:
    """Every public module-level name of hermes_state has an equivalent in tidelog.hermes."""
    require_hermes()
    import hermes_state

    public = {n for n, v in vars(hermes_state).items() if not n.startswith("_") and getattr(v, "__module__", None)
              in ("hermes_state", None) and not inspect.ismodule(v)}
    public -= {"logger", "T"}
    missing = sorted(n for n in public if not hasattr(ours_module, n))
    assert missing == []
    assert ours_module.SCHEMA_VERSION == hermes_state.SCHEMA_VERSION
    assert ours_module.MAX_FTS5_QUERY_CHARS == hermes_state.MAX_FTS5_QUERY_CHARS
    assert ours_module.format_session_db_unavailable() == hermes_state.format_session_db_unavailable()
    assert ours_module.format_session_db_unavailable("x") == hermes_state.format_session_db_unavailable("x")
    for row in ({}, {"git_repo_root": "/r"}, {"cwd": "/c"}, {"git_repo_root": "", "cwd": "/c/"}, {"cwd": " "}):
        assert ours_module.workspace_key(row) == hermes_state.workspace_key(row)
    for exc in (ValueError("x"), __import__("sqlite3").DatabaseError("database disk image is malformed")):
        assert ours_module.is_malformed_db_error(exc) == hermes_state.is_malformed_db_error(exc)


def test_sessions(pair: Pair) -> None:
    pair.same("create_session", "s1", "cli", model="m", model_config={"t": 1}, system_prompt="sp", user_id="u")
    pair.same("create_session", "s1", "telegram", model="m2", user_id="u2", cwd="/w", chat_id="c", thread_id="th")
    pair.same("get_session", "s1")
    pair.same("create_session", "s2", "cli", parent_session_id="s1", session_key="k", chat_type="dm", profile_name="p")
    pair.same("create_session", "s3", "cli", parent_session_id="missing")
    pair.same("create_session", "s3", "cli", title="nope")
    pair.same("create_session", "s4", "cli", model_config="text")
    pair.same("get_session", "s4")
    pair.same("ensure_session", "s5")
    pair.same("ensure_session", "s5", "cli", model="late")
    pair.same("get_session", "s5")
    pair.same("get_session", "s2")
    pair.same("get_session", "missing")
    pair.same("end_session", "s1", "user_exit")
    pair.same("end_session", "s1", "compression")
    pair.same("get_session", "s1")
    pair.same("reopen_session", "s1")
    pair.same("get_session", "s1")
    pair.same("update_system_prompt", "s1", "new prompt")
    pair.same("update_session_model", "s1", "m9")
    pair.same("update_system_prompt", "missing", "x")
    pair.same("update_session_model", "missing", "x")
    pair.same("end_session", "missing", "x")
    pair.same("reopen_session", "missing")
    pair.same("get_session", "missing")
    pair.same("get_session", "s1")
    pair.same("session_count")
    pair.same("session_count", source="cli")
    pair.same("session_count", exclude_children=True)


def test_titles(pair: Pair) -> None:
    for sid in ("a", "b", "c", "d"):
        pair.same("create_session", sid, "cli")
    pair.same("set_session_title", "a", "  My   session\u200b ")
    pair.same("get_session_title", "a")
    pair.same("set_session_title", "b", "My session")
    pair.same("set_session_title", "b", "My session #2")
    pair.same("set_session_title", "c", "my session #7")
    pair.same("set_session_title", "missing", "Other")
    pair.same("set_session_title", "missing", "My session")
    pair.same("set_session_title", "d", "x" * 101)
    pair.same("set_session_title", "d", "")
    pair.same("get_session_title", "d")
    pair.same("get_session_by_title", "My session")
    pair.same("get_session_by_title", "my session")
    pair.same("resolve_session_by_title", "My session")
    pair.same("resolve_session_by_title", "Nothing")
    pair.same("get_next_title_in_lineage", "My session")
    pair.same("get_next_title_in_lineage", "My session #2")
    pair.same("get_next_title_in_lineage", "Fresh")
    pair.same("set_session_title", "a", None)
    pair.same("get_session", "a")
    # A compression predecessor's title moves to its continuation.
    pair.same("create_session", "p", "cli")
    pair.same("set_session_title", "p", "Chain")
    pair.same("end_session", "p", "compression")
    pair.same("create_session", "q", "cli", parent_session_id="p")
    pair.same("set_session_title", "q", "Chain")
    pair.same("get_session_title", "p")
    pair.same("get_session_title", "q")


def test_token_counts(pair: Pair) -> None:
    pair.same("create_session", "s", "cli")
    pair.same("update_token_counts", "s", input_tokens=10, output_tokens=2, model="gpt", billing_provider="or")
    pair.same("get_session", "s")
    pair.same("update_token_counts", "s", input_tokens=5, estimated_cost_usd=0.5, actual_cost_usd=0.25,
              cost_status="estimated", api_call_count=1, billing_base_url="u", billing_mode="m")
    pair.same("get_session", "s")
    pair.same("update_token_counts", "s", input_tokens=100, cache_read_tokens=3, absolute=True)
    pair.same("get_session", "s")
    pair.same("update_token_counts", "auto", input_tokens=1, model="x")
    pair.same("get_session", "auto")
    pair.same("update_token_counts", "route", model="a", billing_provider="b")
    pair.same("update_token_counts", "route", input_tokens=1, model="c", billing_provider="d")
    pair.same("get_session", "route")


CALLS = [{"id": "c1", "type": "function", "function": {"name": "read_file", "arguments": '{"path": "/etc/hosts"}'}}]


def _conversation_fixture(pair: Pair) -> None:
    pair.same("create_session", "s", "telegram")
    pair.same("append_message", "s", "user", "find it", platform_message_id="tg-1", ids=True)
    pair.same("append_message", "s", "assistant", None, tool_calls=CALLS, reasoning="think",
              finish_reason="tool_calls", reasoning_content="rc", reasoning_details=[{"t": 1}],
              codex_reasoning_items=[{"x": 2}], codex_message_items=[{"y": 3}], ids=True)
    pair.same("append_message", "s", "tool", "result", tool_call_id="c1", tool_name="read_file",
              effect_disposition="applied", ids=True)
    pair.same("append_message", "s", "user", [{"type": "text", "text": "look"}, {"type": "image_url"}], ids=True)
    pair.same("append_message", "s", "assistant", "done <memory-context>x</memory-context> ", api_content="done (api)",
              observed=True, timestamp=12345.0, ids=True)
    pair.same("append_message", "s", "user", 42, tool_calls="raw", ids=True)
    pair.same("append_message", "missing", "user", "x", ids=True)


def test_messages(pair: Pair) -> None:
    _conversation_fixture(pair)
    pair.same("get_messages", "s")
    pair.same("get_messages", "s", limit=2)
    pair.same("get_messages", "s", limit=2, offset=3)
    pair.same("get_messages", "s", offset=2)
    pair.same("get_messages", "s", limit=-1, offset=-2)
    pair.same("get_messages", "missing")
    pair.same("get_messages_as_conversation", "s")
    real, ours = pair.both("get_messages_as_conversation", "s", repair_alternation=True)
    if real != ("error", "ModuleNotFoundError"):  # Hermes' repair needs its dependencies (yaml)
        assert ours == real
    pair.same("has_platform_message_id", "s", "tg-1")
    pair.same("has_platform_message_id", "s", "tg-2")
    pair.same("has_platform_message_id", "other", "tg-1")
    pair.same("get_session", "s")
    pair.same("message_count")
    pair.same("message_count", "s")
    pair.same("message_count", "missing")
    pair.same("export_session", "s")
    pair.same("export_session", "missing")
    pair.same("export_all")
    pair.same("export_all", source="cli")


def test_conversation_lineage(pair: Pair) -> None:
    pair.same("create_session", "p", "cli")
    pair.same("append_message", "p", "user", "old question", ids=True)
    pair.same("append_message", "p", "assistant", "old answer", ids=True)
    pair.same("append_message", "p", "user", "again", ids=True)
    pair.same("end_session", "p", "compression")
    pair.same("create_session", "c", "cli", parent_session_id="p")
    pair.same("append_message", "c", "user", "again", ids=True)
    pair.same("append_message", "c", "user", "Review the conversation above and update the skill library now", ids=True)
    pair.same("append_message", "c", "assistant", "curating", ids=True)
    pair.same("append_message", "c", "assistant", "real", ids=True)
    pair.same("get_messages_as_conversation", "c")
    pair.same("get_messages_as_conversation", "c", include_ancestors=True)
    pair.same("list_sessions_rich")
    pair.same("list_sessions_rich", include_children=True)
    pair.same("search_sessions")
    pair.same("session_count", exclude_children=True)


def test_rewrites(pair: Pair) -> None:
    pair.same("create_session", "s", "cli")
    for text in ("the pelican question", "the pelican answer", "more"):
        pair.same("append_message", "s", "user", text, ids=True)
    pair.same("replace_messages", "s", [{"role": "user", "content": "rewritten albatross", "timestamp": 5.0},
                                        {"role": "assistant", "content": "ok", "reasoning": "r", "message_id": "m1"},
                                        {"role": "user", "content": "u", "reasoning": "dropped"}])
    pair.same("get_messages", "s", include_inactive=True)
    pair.same("get_session", "s")
    pair.same("search_messages", "pelican", include_inactive=True)
    pair.same("archive_and_compact", "s", [{"role": "user", "content": "[summary] albatross"}])
    pair.same("get_messages", "s")
    pair.same("get_messages", "s", include_inactive=True)
    pair.same("search_messages", "albatross")
    pair.same("get_session", "s")
    pair.same("replace_messages", "s", [{"role": "user", "content": "live"}], active_only=True)
    pair.same("get_messages", "s", include_inactive=True)
    pair.same("replace_messages", "missing", [{"role": "user", "content": "x"}])
    pair.same("replace_messages", "missing", [])
    pair.same("archive_and_compact", "missing", [])
    pair.same("clear_messages", "missing")
    pair.same("get_session", "missing")
    pair.same("clear_messages", "s")
    pair.same("get_messages", "s", include_inactive=True)
    pair.same("get_session", "s")


def test_delete(pair: Pair, tmp_path: Path) -> None:
    pair.same("create_session", "p", "cli")
    pair.same("create_session", "d", "cli", parent_session_id="p", model_config={"_delegate_from": "p"})
    pair.same("create_session", "b", "cli", parent_session_id="p")
    pair.same("append_message", "p", "user", "x", ids=True)
    pair.same("delete_session", "p")
    pair.same("get_session", "d")
    pair.same("delete_session", "p")
    pair.same("session_count")
    pair.same("message_count")
    pair.same("get_session", "b")
    pair.same("create_session", "p", "cli")
    pair.same("get_session", "b")
    pair.same("create_session", "b", "cli", parent_session_id="p")
    pair.same("get_session", "b")
    pair.same("list_sessions_rich")


def test_meta(pair: Pair) -> None:
    pair.same("get_meta", "k")
    pair.same("set_meta", "k", "v")
    pair.same("get_meta", "k")
    pair.same("set_meta", "k", 5)
    pair.same("get_meta", "k")


def test_listing(pair: Pair) -> None:
    pair.same("create_session", "a", "cli", cwd="/repo/x")
    pair.same("create_session", "b", "telegram")
    long_question = "first question about the boat that is rather long, longer than sixty"
    pair.same("append_message", "a", "user", long_question, ids=True)
    pair.same("append_message", "b", "user", "hi", ids=True)
    pair.same("append_message", "a", "assistant", "answer", ids=True)
    for kwargs in ({}, {"source": "cli"}, {"exclude_sources": ["cli"]}, {"limit": 1, "offset": 1},
                   {"order_by_last_active": True}, {"cwd_prefix": "/repo"}, {"min_message_count": 2},
                   {"id_query": "A"}):
        pair.same("list_sessions_rich", **kwargs)
    for kwargs in ({}, {"source": "cli"}, {"limit": 1}, {"offset": 1}):
        pair.same("search_sessions", **kwargs)
    for kwargs in ({}, {"source": "cli"}, {"cwd_prefix": "/repo"}, {"min_message_count": 2},
                   {"exclude_sources": ["cli"]}):
        pair.same("session_count", **kwargs)


# -- search --------------------------------------------------------------------------------------

LONG_OUTPUT = " ".join(f"line{i} value={i * 7}" for i in range(200)) + " the needle_in_output is here. " + " ".join(
    f"tail{i}" for i in range(80)
)

CORPUS: list[tuple[str, str, dict[str, Any]]] = [
    ("t", "user", {"content": "Run chat-send with the my-app.config.ts file, version P2.2"}),
    ("t", "assistant", {"content": "The deployment finished. Concatenate the logs: deploy again tomorrow."}),
    ("t", "user", {"content": "我们明天去北京开会，讨论大别山项目"}),
    ("t", "assistant", {"content": "好的，北京见"}),
    ("c", "user", {"content": "deploy the cat service to staging AND production"}),
    ("c", "assistant", {"content": None, "tool_calls": [
        {"id": "k1", "type": "function",
         "function": {"name": "terminal", "arguments": '{"command": "kubectl apply -f deploy.yaml"}'}}
    ]}),
    ("c", "tool", {"content": LONG_OUTPUT, "tool_name": "terminal", "tool_call_id": "k1"}),
    ("c", "assistant", {"content": "go is fine, and so is Go. Café résumé naïve"}),
    ("c", "user", {"content": "What about the snake_case_name and user@example.com or 100% coverage?"}),
    ("c", "assistant", {"content": "Use NOT operators carefully; or and not are words too. a b c x y"}),
    ("w", "user", {"content": [{"type": "text", "text": "an image of a cat"},
                               {"type": "image_url", "image_url": {"url": "u"}}]}),
    ("w", "assistant", {"content": "cat cat cat cat cat, the cat of cats"}),
    ("w", "user", {"content": "Sentence one. Sentence two: " + " ".join(f"w{i}" for i in range(60)) + " target word."}),
]

QUERIES = [
    "cat", "Cat", "CAT", "cats", "cat*", "ca*", "c*", "deploy", "deploy*", "deployment OR deploy", "deploy OR cat",
    "cat NOT staging", "cat not staging", "cat AND staging", "cat and staging", "cat OR", "OR cat", "NOT cat",
    "cat -staging", '"the cat service"', '"service the cat"', '"the cat', "chat-send", "my-app.config.ts", "P2.2",
    "snake_case_name", "user@example.com", "100%", "100", "coverage?", "TODO: (", "go", "a", "x y", "Go", "cafe",
    "café", "resume", "naive", "北京", "北", "大别山", "大别山项目", "明天 北京", "北京 OR 大别山", "好的", "kubectl",
    "deploy.yaml", "apply", "terminal", "needle_in_output", "needle", "value", "tail79", "line150", "target",
    "Sentence", "w30", "image", "image_url", "json", "k1", "command", "and", "or", "not", "AND", "the the",
    "", "   ", "*", "**cat", "cat**", "deploy^", "(cat)", "{cat}", "cat:", "staging+production", "a OR b OR c",
    "cat OR OR dog", "cat AND NOT dog", "cat NOT", "NEAR(cat dog)", "cat NEAR dog", '""', '"" cat', "é",
]


@pytest.fixture
def search_pair(pair: Pair) -> Pair:
    pair.same("create_session", "t", "telegram", model="m-t")
    pair.same("create_session", "c", "cli", model="m-c")
    pair.same("create_session", "w", "web")
    for sid, role, fields in CORPUS:
        pair.same("append_message", sid, role, ids=True, **fields)
    # Compacted messages stay searchable; rewound ones (replace_messages deletes) do not.
    pair.same("archive_and_compact", "w", [{"role": "user", "content": "summary about a cat"}])
    pair.same("append_message", "w", "assistant", "fresh words after compaction", ids=True)
    return pair


def test_search_queries(search_pair: Pair) -> None:
    for q in QUERIES:
        search_pair.same("search_messages", q)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sort": "newest"},
        {"sort": "oldest"},
        {"sort": " Newest "},
        {"sort": "bogus"},
        {"limit": 2},
        {"limit": 2, "offset": 1},
        {"limit": 0},
        {"limit": -1},
        {"offset": 100},
        {"role_filter": ["tool"]},
        {"role_filter": ["user", "assistant"]},
        {"role_filter": []},
        {"source_filter": ["cli"]},
        {"source_filter": []},
        {"exclude_sources": ["cli"]},
        {"include_inactive": True},
    ],
)
def test_search_options(search_pair: Pair, kwargs: dict[str, Any]) -> None:
    for q in ("cat", "deploy OR cat", "北京", "大别山", "the", "terminal"):
        search_pair.same("search_messages", q, **kwargs)


# -- random sequences --------------------------------------------------------------------------

WORDS = ["cat", "dog", "deploy", "chat-send", "北京", "大别山项目", "x.y", "alpha", "Beta", "the", "NOT", "or"]
texts = st.lists(st.sampled_from(WORDS), min_size=0, max_size=6).map(" ".join)
session_ids = st.sampled_from(["s1", "s2", "s3", "s4"])
sources = st.sampled_from(["cli", "telegram", "unknown"])
roles = st.sampled_from(["user", "assistant", "tool", "system"])
titles = st.one_of(st.none(), st.sampled_from(["", "T", "t", "T #2", "Other", " T "]))
queries = st.one_of(
    st.sampled_from(WORDS),
    st.lists(st.sampled_from(WORDS + ["AND", "OR", "NOT", "de*", '"cat dog"']), min_size=1, max_size=4).map(" ".join),
)


def _message_dict(role: str, text: str, with_calls: bool) -> dict[str, Any]:
    d: dict[str, Any] = {"role": role, "content": text}
    if with_calls:
        d["tool_calls"] = [{"id": "z", "function": {"name": "f", "arguments": json.dumps({"q": text})}}]
    return d


class CoreMachine(RuleBasedStateMachine):
    """Random sequences of core calls on both databases; every result compared."""

    def __init__(self) -> None:
        super().__init__()
        self.pair: Pair | None = None

    @initialize()
    def open(self) -> None:
        import tempfile

        self.pair = Pair(Path(tempfile.mkdtemp(prefix="hermes-core-")))

    def teardown(self) -> None:
        if self.pair is not None:
            self.pair.close()

    @property
    def p(self) -> Pair:
        assert self.pair is not None
        return self.pair

    @rule(sid=session_ids, source=sources, model=st.none() | st.sampled_from(["m1", "m2"]),
          parent=st.none() | session_ids)
    def create(self, sid: str, source: str, model: str | None, parent: str | None) -> None:
        self.p.same("create_session", sid, source, model=model, parent_session_id=parent)

    @rule(sid=session_ids, role=roles, text=texts, calls=st.booleans(), pmid=st.none() | st.sampled_from(["p1", "p2"]))
    def append(self, sid: str, role: str, text: str, calls: bool, pmid: str | None) -> None:
        d = _message_dict(role, text, calls)
        self.p.same("append_message", sid, role, d["content"], tool_calls=d.get("tool_calls"),
                    platform_message_id=pmid, ids=True)

    @rule(sid=session_ids, msgs=st.lists(st.tuples(roles, texts, st.booleans()), max_size=3), active_only=st.booleans())
    def replace(self, sid: str, msgs: list[tuple[str, str, bool]], active_only: bool) -> None:
        self.p.same("replace_messages", sid, [_message_dict(*m) for m in msgs], active_only=active_only)

    @rule(sid=session_ids, msgs=st.lists(st.tuples(roles, texts, st.booleans()), max_size=2))
    def compact(self, sid: str, msgs: list[tuple[str, str, bool]]) -> None:
        self.p.same("archive_and_compact", sid, [_message_dict(*m) for m in msgs])

    @rule(sid=session_ids, reason=st.sampled_from(["compression", "user_exit", "branched"]))
    def end(self, sid: str, reason: str) -> None:
        self.p.same("end_session", sid, reason)

    @rule(sid=session_ids)
    def reopen(self, sid: str) -> None:
        self.p.same("reopen_session", sid)

    @rule(sid=session_ids, title=titles)
    def title(self, sid: str, title: str | None) -> None:
        self.p.same("set_session_title", sid, title)

    @rule(title=st.sampled_from(["T", "t", "T #2", "Other"]))
    def title_lookups(self, title: str) -> None:
        self.p.same("get_session_by_title", title)
        self.p.same("resolve_session_by_title", title)
        self.p.same("get_next_title_in_lineage", title)

    @rule(sid=session_ids, n=st.integers(0, 50), cost=st.none() | st.sampled_from([0.25, 0.5]), absolute=st.booleans())
    def tokens(self, sid: str, n: int, cost: float | None, absolute: bool) -> None:
        self.p.same("update_token_counts", sid, input_tokens=n, output_tokens=n // 2, estimated_cost_usd=cost,
                    api_call_count=1 if n else 0, absolute=absolute)

    @rule(sid=session_ids, actual=st.none() | st.sampled_from([0.125, 1.0]),
          model=st.none() | st.sampled_from(["m1", "m2"]), provider=st.none() | st.sampled_from(["p1", "p2"]), calls=st.integers(0, 2))
    def billing(self, sid: str, actual: float | None, model: str | None, provider: str | None, calls: int) -> None:
        self.p.same("update_token_counts", sid, output_tokens=calls, actual_cost_usd=actual, model=model,
                    billing_provider=provider, billing_mode="m" if provider else None, api_call_count=calls,
                    cost_status="ok" if actual else None)

    @rule(kwargs=st.sampled_from([{}, {"include_children": True}, {"order_by_last_active": True},
                                  {"order_by_last_active": True, "id_query": "S1"},
                                  {"order_by_last_active": True, "search_query": "t"},
                                  {"project_compression_tips": False}, {"limit": 2, "offset": 1},
                                  {"min_message_count": 1}, {"source": "cli"}, {"exclude_sources": ["telegram"]}]))
    def listing(self, kwargs: dict[str, Any]) -> None:
        self.p.same("list_sessions_rich", **kwargs)
        self.p.same("session_count", exclude_children=True)

    @rule(sid=session_ids, limit=st.none() | st.integers(-1, 3), offset=st.integers(-1, 3))
    def page(self, sid: str, limit: int | None, offset: int) -> None:
        self.p.same("get_messages", sid, limit=limit, offset=offset)

    @rule(sid=session_ids, prompt=texts, model=st.sampled_from(["m1", "m3"]))
    def updates(self, sid: str, prompt: str, model: str) -> None:
        self.p.same("update_system_prompt", sid, prompt)
        self.p.same("update_session_model", sid, model)

    @rule(sid=session_ids)
    def clear(self, sid: str) -> None:
        self.p.same("clear_messages", sid)

    @rule(sid=session_ids)
    def delete(self, sid: str) -> None:
        self.p.same("delete_session", sid)

    @rule(key=st.sampled_from(["a", "b"]), value=texts)
    def meta(self, key: str, value: str) -> None:
        self.p.same("set_meta", key, value)
        self.p.same("get_meta", key)

    @rule(q=queries, sort=st.none() | st.sampled_from(["newest", "oldest"]), inactive=st.booleans(),
          role=st.none() | st.sampled_from([["user"], ["assistant", "tool"]]))
    def search(self, q: str, sort: str | None, inactive: bool, role: list[str] | None) -> None:
        self.p.same("search_messages", q, sort=sort, include_inactive=inactive, role_filter=role)

    @rule(sid=session_ids, inactive=st.booleans(), ancestors=st.booleans())
    def read(self, sid: str, inactive: bool, ancestors: bool) -> None:
        self.p.same("get_messages", sid, include_inactive=inactive)
        self.p.same("get_messages_as_conversation", sid, include_ancestors=ancestors, include_inactive=inactive)
        self.p.same("has_platform_message_id", sid, "p1")
        self.p.same("export_session", sid)

    @invariant()
    def sessions_agree(self) -> None:
        if self.pair is None:
            return
        for sid in ("s1", "s2", "s3", "s4"):
            self.p.same("get_session", sid)
        self.p.same("session_count")
        self.p.same("message_count")
        self.p.same("search_sessions", limit=10)


@pytest.fixture
def _hermes() -> None:
    require_hermes()


CoreMachine.TestCase.settings = settings(
    max_examples=80,
    stateful_step_count=40,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.mark.usefixtures("_hermes")
class TestCoreMachine(CoreMachine.TestCase):  # type: ignore[misc,valid-type]
    pass


def test_install_stands_in_without_hermes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without hermes-agent, install() makes a hermes_state holding every public name of
    Hermes' module; with it, Hermes' module gets our classes."""
    require_hermes()
    import hermes_state

    public = {n for n, v in vars(hermes_state).items() if not n.startswith("_") and not inspect.ismodule(v)
              and getattr(v, "__module__", "hermes_state") in ("hermes_state", None)}
    monkeypatch.setitem(__import__("sys").modules, "hermes_state", None)  # import hermes_state fails
    module = ours_module.install()
    try:
        assert module is not hermes_state and sorted(n for n in public if not hasattr(module, n)) == []
        assert module.SCHEMA_SQL == "" and module.SessionDB is ours_module.SessionDB
        with module.SessionDB(tmp_path / "state.db") as db:
            db.create_session("s", "cli")
    finally:
        monkeypatch.undo()
    saved = {n: getattr(hermes_state, n) for n in ("SessionDB", "AsyncSessionDB", "get_last_init_error")}
    try:
        assert ours_module.install() is hermes_state and hermes_state.SessionDB is ours_module.SessionDB
    finally:
        vars(hermes_state).update(saved)
    assert ours_module.SCHEMA_SQL == hermes_state.SCHEMA_SQL != ""


def test_async(pair: Pair) -> None:
    """AsyncSessionDB offloads every call; its results are the class's."""
    import asyncio

    import hermes_state

    async def run(db: Any, cls: Any) -> list[Any]:
        adb = cls(db)
        await adb.create_session("s", "cli")
        await adb.append_message("s", "user", "async hello")
        return [await adb.get_messages_as_conversation("s"), await adb.search_messages("hello"), adb.db_path.name]

    real = pair.norm_real(asyncio.run(run(pair.real, __import__("hermes_diff").REAL_ASYNC)))
    ours = pair.norm_ours(asyncio.run(run(pair.ours, ours_module.AsyncSessionDB)))
    assert ours == real
    assert hermes_state is not None
