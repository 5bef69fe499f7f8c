"""Differential tests of the lineage, resume, rewind and anchored-view methods of
``tidelog.hermes.SessionDB`` against Hermes' own ``SessionDB`` (hermes-agent 0.19.0).

Methods taking a message row id are called on each side with that side's id of the same message
(``Ids``); every return value is compared after the harness' normalization. Session and message
rows are compared on the columns both sides have (``_shape``): the full row shapes are
``get_session`` / ``get_messages``' concern and are compared by their own tests.
"""

from __future__ import annotations

import ast
import inspect
import sys
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hermes_diff import Pair

# Message columns tidelog's rows carry beyond Hermes' table (core ``_message_row``).
_MESSAGE_EXTRAS = ("_compressed_summary", "display_kind", "display_metadata")
# Session columns compared in lineage exports (the rest of the row is get_session's concern).
_SESSION_KEYS = (
    "id",
    "source",
    "model",
    "title",
    "parent_session_id",
    "started_at",
    "ended_at",
    "end_reason",
    "message_count",
    "messages",
    "segments",
    "lineage_session_ids",
)


def _shape(value: Any) -> Any:
    """Rows reduced to the columns both implementations have."""
    if isinstance(value, list):
        return [_shape(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_shape(v) for v in value)
    if isinstance(value, dict):
        if "source" in value and "end_reason" in value:  # a session row
            return {k: _shape(value[k]) for k in _SESSION_KEYS if k in value}
        return {k: _shape(v) for k, v in value.items() if k not in _MESSAGE_EXTRAS}
    return value


class Ids:
    """Appends on both sides and remembers each side's row id of every message, in order."""

    def __init__(self, pair: Pair) -> None:
        self.pair = pair
        self.real: list[int] = []
        self.ours: list[int] = []

    def add(self, session_id: str, role: str, content: Any = None, **kw: Any) -> int:
        r = self.pair.real.append_message(session_id, role, content, **kw)
        o = self.pair.ours.append_message(session_id, role, content, **kw)
        # Register the ids in the same order on both sides.
        self.pair.norm_real.msg_id(r)
        self.pair.norm_ours.msg_id(o)
        self.real.append(r)
        self.ours.append(o)
        return len(self.real) - 1

    def same(self, name: str, session_id: str, index: int | None, *args: Any, **kw: Any) -> Any:
        """``name(session_id, <message id of index>, *args)`` on both; asserts equal outcomes.
        ``index=None`` passes an id neither side has."""
        r_id = 10**9 if index is None else self.real[index]
        o_id = 10**9 if index is None else self.ours[index]
        p = self.pair
        r = p._call(p.real, name, (session_id, r_id, *args), kw)
        o = p._call(p.ours, name, (session_id, o_id, *args), kw)
        r = (r[0], _shape(p.norm_real(r[1])))
        o = (o[0], _shape(p.norm_ours(o[1])))
        assert o == r, f"{name}({session_id}, #{index}, {args}, {kw}): tidelog {o!r} != hermes {r!r}"
        return r[1]


def _same(pair: Pair, name: str, *args: Any, transform: Callable[[Any], Any] = _shape, **kw: Any) -> Any:
    return pair.same(name, *args, transform=transform, **kw)


def _both(pair: Pair, name: str, *args: Any, **kw: Any) -> None:
    """Calls both sides (a setup step; its return value is compared elsewhere or not at all)."""
    getattr(pair.real, name)(*args, **kw)
    getattr(pair.ours, name)(*args, **kw)


def _set_started_at(pair: Pair, session_id: str, started_at: float) -> None:
    """Backdates a session (Hermes' create_session always stamps now)."""
    pair.real._conn.execute("UPDATE sessions SET started_at = ? WHERE id = ?", (started_at, session_id))
    pair.real._conn.commit()
    pair.ours.store.upsert_session(session_id, started_at=started_at)


def _hermes_repair() -> types.ModuleType:
    """Hermes' own ``agent.agent_runtime_helpers.repair_message_sequence`` as the oracle: the
    installed module needs packages outside the test environment (httpx, yaml), so the function
    alone is compiled from Hermes' source file, with the one helper it calls."""
    import agent

    path = Path(agent.__file__).parent / "agent_runtime_helpers.py"
    tree = ast.parse(path.read_text())
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "repair_message_sequence")
    module = types.ModuleType("agent.agent_runtime_helpers")
    module.__dict__.update(Dict=dict, List=list, drop_stale_api_content=lambda m: m.pop("api_content", None))
    exec(compile(ast.Module(body=[fn], type_ignores=[]), str(path), "exec"), module.__dict__)
    return module


@pytest.fixture
def hermes_repair(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Lets Hermes' ``get_resume_conversations`` (and ``repair_alternation=True``) run."""
    monkeypatch.setitem(sys.modules, "agent.agent_runtime_helpers", _hermes_repair())
    yield


LINEAGE_METHODS = (
    "get_compression_tip",
    "resolve_resume_session_id",
    "get_compression_lineage",
    "get_conversation_root",
    "resolve_session_id",
    "get_ancestor_display_prefix",
    "has_archived_messages",
    "export_session_lineage",
)


def _check_lineage(pair: Pair, ids: list[str]) -> None:
    for sid in [*ids, "unknown", ""]:
        for name in LINEAGE_METHODS:
            _same(pair, name, sid)


# -- compression chains ---------------------------------------------------------------------


def test_compression_chain_follows_continuations_only(pair: Pair) -> None:
    ids = Ids(pair)
    _both(pair, "create_session", "root", "cli", model="m")
    ids.add("root", "user", "first question")
    ids.add("root", "assistant", "first answer")
    _check_lineage(pair, ["root"])
    _both(pair, "end_session", "root", "compression")
    _check_lineage(pair, ["root"])  # compressed, not yet continued
    # Children that are no continuations: a branch, a delegate and a tool run.
    _both(pair, "create_session", "branch", "cli", parent_session_id="root", model_config={"_branched_from": "root"})
    _both(pair, "create_session", "delegate", "cli", parent_session_id="root", model_config={"_delegate_from": "root"})
    _both(pair, "create_session", "toolrun", "tool", parent_session_id="root")
    ids.add("branch", "user", "branched")
    ids.add("toolrun", "user", "tool run")
    _check_lineage(pair, ["root", "branch", "delegate", "toolrun"])
    # The continuation, then a second compression.
    _both(pair, "create_session", "cont1", "cli", parent_session_id="root")
    _check_lineage(pair, ["root", "cont1"])  # continuation without messages
    ids.add("cont1", "user", "second question")
    ids.add("cont1", "assistant", "second answer")
    _both(pair, "end_session", "cont1", "compression")
    _both(pair, "create_session", "cont2", "cli", parent_session_id="cont1")
    ids.add("cont2", "user", "third question")
    _check_lineage(pair, ["root", "branch", "delegate", "toolrun", "cont1", "cont2"])
    # A stale sibling closed by the reaper loses to the live continuation.
    _both(pair, "create_session", "stale", "cli", parent_session_id="cont1")
    ids.add("stale", "user", "stale")
    _both(pair, "end_session", "stale", "ws_orphan_reap")
    _check_lineage(pair, ["root", "cont1", "cont2", "stale"])
    # A newer live sibling with later messages wins over an older live one.
    _both(pair, "create_session", "fresh", "cli", parent_session_id="cont1")
    ids.add("fresh", "user", "fresh")
    _check_lineage(pair, ["root", "cont1", "cont2", "stale", "fresh"])
    # A sibling that compressed in its turn is preferred over live ones.
    _both(pair, "end_session", "cont2", "compression")
    _check_lineage(pair, ["root", "cont1", "cont2", "stale", "fresh"])


def test_resume_prefers_the_descendant_with_messages(pair: Pair) -> None:
    ids = Ids(pair)
    _both(pair, "create_session", "p", "cli")
    _check_lineage(pair, ["p"])
    # A child of a session not ended by compression: the empty-head walk follows it.
    _both(pair, "create_session", "c", "cli", parent_session_id="p")
    _check_lineage(pair, ["p", "c"])
    ids.add("c", "user", "hello")
    _check_lineage(pair, ["p", "c"])
    ids.add("p", "user", "in the parent")
    _both(pair, "create_session", "g", "cli", parent_session_id="c")
    _check_lineage(pair, ["p", "c", "g"])
    ids.add("g", "user", "grandchild")
    _check_lineage(pair, ["p", "c", "g"])


def test_resolve_session_id_exact_and_unique_prefixes(pair: Pair) -> None:
    for sid in ("abc1", "abc2", "xyz_1", "xyzA1", "Mixed", "a%b"):
        _both(pair, "create_session", sid, "cli")
    for query in ("abc1", "abc", "ab", "x", "xyz_", "xyz%", "xyzA", "XYZA", "mix", "Mixed", "a%", "a_", "q", ""):
        _same(pair, "resolve_session_id", query)


def test_resume_conversations_and_ancestor_prefix(pair: Pair, hermes_repair: None) -> None:
    ids = Ids(pair)
    _both(pair, "create_session", "r", "cli")
    ids.add("r", "user", "<memory-context>recalled</memory-context> plan the trip ")
    ids.add("r", "assistant", "Sure.", finish_reason="stop", reasoning="think")
    ids.add("r", "user", "and the hotel")
    _both(pair, "end_session", "r", "compression")
    _both(pair, "create_session", "t", "cli", parent_session_id="r")
    ids.add("t", "user", "and the hotel")  # the turn replayed into the continuation
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    ids.add("t", "assistant", None, tool_calls=[call])
    ids.add("t", "tool", "result", tool_call_id="c1", tool_name="f")
    ids.add("t", "assistant", "Booked.")
    for sid in ("r", "t", "unknown"):
        _same(pair, "get_ancestor_display_prefix", sid)
        _same(pair, "get_resume_conversations", sid)


_TURN = st.tuples(
    st.sampled_from(("user", "user", "assistant", "assistant", "tool", "system")),
    st.sampled_from(("", "hi", " padded ", "Review the conversation above and update the skill library now")),
    st.sampled_from((None, "c1", "c2")),
    st.sampled_from((None, "stop", "incomplete", "verification_required")),
)


@settings(
    derandomize=True,
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(turns=st.lists(_TURN, max_size=8), split=st.integers(0, 8))
def test_random_resume_conversations(
    tmp_path_factory: pytest.TempPathFactory,
    hermes_repair: None,
    turns: list[tuple[str, str, str | None, str | None]],
    split: int,
) -> None:
    """Random histories split over a compressed session and its continuation: the resume views
    (repair of the model history, replay dedup and harness stripping of the display) agree."""
    pair = Pair(tmp_path_factory.mktemp("resume"))
    try:
        ids = Ids(pair)
        _both(pair, "create_session", "r", "cli")
        for n, (role, text, call, finish) in enumerate(turns):
            sid = "r" if n < split else "t"
            if n == split:
                _both(pair, "end_session", "r", "compression")
                _both(pair, "create_session", "t", "cli", parent_session_id="r")
            kw: dict[str, Any] = {"finish_reason": finish}
            if role == "assistant" and call:
                kw["tool_calls"] = [{"id": call, "type": "function", "function": {"name": "f", "arguments": "{}"}}]
            if role == "tool":
                kw["tool_call_id"] = call
            ids.add(sid, role, text, **kw)
        for sid in ("r", "t"):
            _same(pair, "get_resume_conversations", sid)
            _same(pair, "get_ancestor_display_prefix", sid)
    finally:
        pair.close()


def test_export_session_lineage(pair: Pair) -> None:
    ids = Ids(pair)
    _both(pair, "create_session", "e1", "cli")
    ids.add("e1", "user", "one")
    ids.add("e1", "assistant", "uno")
    _both(pair, "end_session", "e1", "compression")
    _both(pair, "create_session", "e2", "cli", parent_session_id="e1")
    ids.add("e2", "user", "two")
    for sid in ("e1", "e2", "zz"):
        _same(pair, "export_session_lineage", sid)


# -- ends -----------------------------------------------------------------------------------


def test_promote_to_session_reset(pair: Pair) -> None:
    for sid in ("live", "closed", "reaped", "compressed"):
        _both(pair, "create_session", sid, "telegram")
    _both(pair, "end_session", "closed", "agent_close")
    _both(pair, "end_session", "reaped", "ws_orphan_reap")
    _both(pair, "end_session", "compressed", "compression")
    for sid in ("live", "closed", "reaped", "compressed", "unknown", ""):
        _same(pair, "promote_to_session_reset", sid)
        _same(pair, "get_session", sid, transform=lambda r: r and (r["end_reason"], r["ended_at"]))
    _same(pair, "promote_to_session_reset", "live", reason="idle")
    _both(pair, "create_session", "other", "telegram")
    _same(pair, "promote_to_session_reset", "other", reason="idle")
    _same(pair, "get_session", "other", transform=lambda r: r["end_reason"])


def test_finalize_orphaned_compression_sessions(pair: Pair) -> None:
    ids = Ids(pair)
    old = time.time() - 8 * 86400
    _both(pair, "create_session", "parent", "cli")
    _both(pair, "end_session", "parent", "compression")
    for sid in ("orphan", "young", "empty", "busy", "ended"):
        _both(pair, "create_session", sid, "cli", parent_session_id="parent")
        if sid != "young":
            _set_started_at(pair, sid, old)
        if sid != "empty":
            ids.add(sid, "user", "hi")
    _both(pair, "update_token_counts", "busy", input_tokens=3, api_call_count=1)
    _both(pair, "end_session", "ended", "user_exit")
    _both(pair, "create_session", "unrelated", "cli")
    _set_started_at(pair, "unrelated", old)
    ids.add("unrelated", "user", "hi")
    _same(pair, "finalize_orphaned_compression_sessions")
    for sid in ("orphan", "young", "empty", "busy", "ended", "unrelated"):
        _same(pair, "get_session", sid, transform=lambda r: (r["end_reason"], r["ended_at"]))
    _same(pair, "finalize_orphaned_compression_sessions")


# -- search by id ---------------------------------------------------------------------------


def test_search_sessions_by_id(pair: Pair) -> None:
    ids = Ids(pair)
    for sid in ("20260101_abc", "abc", "xabcx", "other"):
        _both(pair, "create_session", sid, "cli")
        ids.add(sid, "user", f"in {sid}")
    _both(pair, "set_meta", "unused", "1")
    ids_of = lambda rows: [r["id"] for r in rows]  # noqa: E731 - the rows' shape is list_sessions_rich's
    for query in ("abc", "ABC", "20260101", "x", "nothing", "", "  "):
        _same(pair, "search_sessions_by_id", query, transform=ids_of)
    _same(pair, "search_sessions_by_id", "abc", limit=2, transform=ids_of)
    _same(pair, "search_sessions_by_id", "abc", limit=0, transform=ids_of)


# -- rewind ---------------------------------------------------------------------------------


def _conversation(ids: Ids, sid: str) -> list[int]:
    turns = []
    for n in range(3):
        turns.append(ids.add(sid, "user", f"question {n}\n  with   spaces"))
        ids.add(sid, "assistant", f"answer {n}")
    return turns


def _check_messages(pair: Pair, sid: str) -> None:
    _same(pair, "get_messages", sid)
    _same(pair, "get_messages", sid, include_inactive=True)
    _same(pair, "has_archived_messages", sid)
    _same(pair, "list_recent_user_messages", sid)
    _same(pair, "list_recent_user_messages", sid, include_inactive=True)
    _same(pair, "get_session", sid, transform=lambda r: r and r.get("rewind_count", 0))


def test_rewind_and_restore(pair: Pair) -> None:
    ids = Ids(pair)
    _both(pair, "create_session", "u", "tui")
    turns = _conversation(ids, "u")
    _check_messages(pair, "u")
    ids.same("rewind_to_message", "u", turns[1])
    _check_messages(pair, "u")
    # Which messages a search finds (a rewound one is hidden); snippets are search_messages' concern.
    found = lambda hits: sorted(h["id"] for h in hits)  # noqa: E731
    _same(pair, "search_messages", "answer", transform=found)
    _same(pair, "search_messages", "answer", include_inactive=True, transform=found)
    ids.same("rewind_to_message", "u", turns[1])  # again: nothing active, the count still rises
    _check_messages(pair, "u")
    ids.same("rewind_to_message", "u", turns[0])
    _check_messages(pair, "u")
    ids.same("restore_rewound", "u", turns[1])
    _check_messages(pair, "u")
    ids.same("restore_rewound", "u", turns[0])
    _check_messages(pair, "u")
    ids.same("restore_rewound", "u", turns[0])
    # Errors: not a user message, not in this session, unknown.
    ids.same("rewind_to_message", "u", turns[0] + 1)
    _both(pair, "create_session", "v", "tui")
    other = ids.add("v", "user", "elsewhere")
    ids.same("rewind_to_message", "u", other)
    ids.same("rewind_to_message", "u", None)
    ids.same("rewind_to_message", "nosuch", other)
    _check_messages(pair, "u")


def test_list_recent_user_messages_previews_and_limits(pair: Pair) -> None:
    ids = Ids(pair)
    _both(pair, "create_session", "l", "cli")
    ids.add("l", "user", "x" * 100)
    image = {"type": "image_url", "image_url": {"url": "u"}}
    ids.add("l", "user", [{"type": "text", "text": " look  at\nthis "}, image])
    ids.add("l", "user", [{"type": "image_url", "image_url": {"url": "u"}}])
    ids.add("l", "user", None)
    ids.add("l", "user", "y" * 80)
    for limit in (20, 2, 0, -1):
        _same(pair, "list_recent_user_messages", "l", limit=limit)


def test_archive_and_compact_keeps_archived_history(pair: Pair) -> None:
    ids = Ids(pair)
    _both(pair, "create_session", "k", "acp")
    turns = _conversation(ids, "k")
    _same(pair, "has_archived_messages", "k")
    ids.same("rewind_to_message", "k", turns[2])
    _both(pair, "archive_and_compact", "k", [{"role": "user", "content": "summary"}])
    _check_messages(pair, "k")
    _same(pair, "get_messages", "k", include_inactive=True)
    ids.same("restore_rewound", "k", turns[0])
    _check_messages(pair, "k")
    _both(pair, "archive_and_compact", "k", [{"role": "user", "content": "summary 2"}])
    _check_messages(pair, "k")
    ids.same("rewind_to_message", "k", turns[1])
    _both(pair, "replace_messages", "k", [{"role": "user", "content": "persisted"}], active_only=True)
    _check_messages(pair, "k")
    ids.same("restore_rewound", "k", turns[0])
    _check_messages(pair, "k")
    _both(pair, "replace_messages", "k", [{"role": "user", "content": "all new"}])
    _check_messages(pair, "k")
    _both(pair, "clear_messages", "k")
    _check_messages(pair, "k")


def test_set_latest_user_api_content(pair: Pair) -> None:
    ids = Ids(pair)
    _both(pair, "create_session", "a", "cli")
    _same(pair, "set_latest_user_api_content", "a", "hi", "API hi")
    ids.add("a", "user", "hi")
    ids.add("a", "assistant", "hello")
    _same(pair, "set_latest_user_api_content", "a", "other", "API")
    _same(pair, "set_latest_user_api_content", "a", "hi", "API hi \ud800")
    turn = ids.add("a", "user", [{"type": "text", "text": "multi"}])
    _same(pair, "set_latest_user_api_content", "a", [{"type": "text", "text": "multi"}], "API multi")
    ids.same("rewind_to_message", "a", turn)
    _same(pair, "set_latest_user_api_content", "a", "hi", "API again")
    _same(pair, "get_messages", "a", include_inactive=True)


# -- views around a message -----------------------------------------------------------------


def test_messages_around_and_anchored_view(pair: Pair) -> None:
    ids = Ids(pair)
    _both(pair, "create_session", "w", "cli")
    _both(pair, "create_session", "elsewhere", "cli")
    foreign = ids.add("elsewhere", "user", "not here")
    for n in range(6):
        ids.add("w", "user", f"u{n}")
        ids.add("w", "assistant", "" if n == 2 else f"a{n}", tool_calls=[{"id": f"c{n}"}] if n == 2 else None)
        ids.add("w", "tool", f"t{n}", tool_call_id=f"c{n}")
    ids.add("w", "system", "s")
    ids.add(
        "w",
        "assistant",
        "rich",
        reasoning_content="rc",
        reasoning_details=[{"type": "r", "n": 1}],
        codex_reasoning_items=[{"a": 1}],
        codex_message_items=[{"b": 2}],
        platform_message_id="pm",
        observed=True,
        effect_disposition="done",
        api_content="API",
        finish_reason="stop",
        reasoning="why",
        token_count=5,
    )
    anchors = [1, 4, 7, 9, 17, 19, 20]  # users, a tool result, the last messages
    for at in anchors:
        for window in (0, 1, 3, -2):
            ids.same("get_messages_around", "w", at, window=window)
        for bookend in (0, 1, 3, -1):
            ids.same("get_anchored_view", "w", at, window=1, bookend=bookend)
        ids.same("get_anchored_view", "w", at)
        ids.same("get_anchored_view", "w", at, window=2, keep_roles=None)
        ids.same("get_anchored_view", "w", at, window=2, keep_roles=("tool",))
        ids.same("get_anchored_view", "w", at, window=2, keep_roles=())
    ids.same("get_messages_around", "w", foreign)
    ids.same("get_anchored_view", "w", foreign)
    ids.same("get_messages_around", "w", None)
    # Inactive messages are part of the window.
    ids.same("rewind_to_message", "w", 10)
    ids.same("get_messages_around", "w", 10, window=3)
    ids.same("get_anchored_view", "w", 7, window=1)


# -- random sequences -----------------------------------------------------------------------

_STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("turn"), st.integers(0, 2)),
        st.tuples(st.just("rewind"), st.integers(0, 30)),
        st.tuples(st.just("restore"), st.integers(0, 30)),
        st.tuples(st.just("compact"), st.integers(0, 0)),
        st.tuples(st.just("replace"), st.integers(0, 3)),
        st.tuples(st.just("api"), st.integers(0, 30)),
    ),
    min_size=1,
    max_size=12,
)


@settings(
    derandomize=True,
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=_STEPS)
def test_random_rewind_sequences(tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, int]]) -> None:
    pair = Pair(tmp_path_factory.mktemp("seq"))
    try:
        ids = Ids(pair)
        _both(pair, "create_session", "s", "tui")
        users: list[int] = []
        for op, n in steps:
            if op == "turn":
                users.append(ids.add("s", "user", f"q{len(users)}"))
                for k in range(n):
                    ids.add("s", "assistant" if k % 2 == 0 else "tool", f"r{k}")
            elif op == "rewind" and users:
                ids.same("rewind_to_message", "s", users[n % len(users)])
            elif op == "restore" and ids.real:
                ids.same("restore_rewound", "s", n % len(ids.real))
            elif op == "compact":
                _both(pair, "archive_and_compact", "s", [{"role": "user", "content": "summary"}])
            elif op == "replace":
                # Return values differ by design (Hermes: None; here the new row ids).
                _both(pair, "replace_messages", "s", [{"role": "user", "content": "kept"}], active_only=n > 0)
            elif op == "api" and users:
                _same(pair, "set_latest_user_api_content", "s", f"q{n % len(users)}", "sent")
            _same(pair, "get_messages", "s", include_inactive=True)
            _same(pair, "has_archived_messages", "s")
            _same(pair, "list_recent_user_messages", "s")
            _same(pair, "get_messages", "s", include_inactive=False)
        found = lambda hits: sorted(h["id"] for h in hits)  # noqa: E731
        _same(pair, "search_messages", "q0 OR kept OR summary", include_inactive=True, transform=found)
        _same(pair, "search_messages", "q0 OR kept OR summary", transform=found)
    finally:
        pair.close()


_KINDS = ("plain", "plain", "plain", "branch", "delegate", "tool")
_ENDS = (None, None, "compression", "compression", "ws_orphan_reap", "agent_close", "user_exit")
_TREES = st.lists(
    st.tuples(st.integers(0, 20), st.sampled_from(_KINDS), st.integers(0, 2), st.sampled_from(_ENDS)),
    min_size=1,
    max_size=8,
)


@settings(
    derandomize=True,
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(tree=_TREES)
def test_random_session_trees(
    tmp_path_factory: pytest.TempPathFactory, tree: list[tuple[int, str, int, str | None]]
) -> None:
    """Random forests of sessions (continuations, branches, delegates, tool runs; with or without
    messages; ended for various reasons): every lineage walk agrees from every session."""
    pair = Pair(tmp_path_factory.mktemp("tree"))
    try:
        ids = Ids(pair)
        names: list[str] = []
        for n, (parent_pick, kind, messages, end) in enumerate(tree):
            sid = f"s{n}"
            parent = names[parent_pick % len(names)] if names and parent_pick % 4 else None
            kw: dict[str, Any] = {"parent_session_id": parent}
            if kind in ("branch", "delegate") and parent:
                kw["model_config"] = {"_branched_from" if kind == "branch" else "_delegate_from": parent}
            _both(pair, "create_session", sid, "tool" if kind == "tool" else "cli", **kw)
            for k in range(messages):
                ids.add(sid, "user" if k % 2 == 0 else "assistant", f"{sid} m{k}")
            if end is not None:
                _both(pair, "end_session", sid, end)
            names.append(sid)
        _check_lineage(pair, names)
    finally:
        pair.close()


_METHODS = (
    "get_compression_lineage",
    "get_compression_tip",
    "get_conversation_root",
    "get_ancestor_display_prefix",
    "resolve_resume_session_id",
    "resolve_session_id",
    "get_resume_conversations",
    "export_session_lineage",
    "finalize_orphaned_compression_sessions",
    "promote_to_session_reset",
    "get_anchored_view",
    "get_messages_around",
    "list_recent_user_messages",
    "rewind_to_message",
    "restore_rewound",
    "has_archived_messages",
    "set_latest_user_api_content",
    "search_sessions_by_id",
)


@pytest.mark.parametrize("name", _METHODS)
def test_signatures_match_hermes(pair: Pair, name: str) -> None:
    """Same parameter names, kinds and defaults as Hermes' methods."""

    def shape(method: Any) -> list[tuple[str, Any, Any]]:
        return [(p.name, p.default, p.kind) for p in inspect.signature(method).parameters.values()]

    assert shape(getattr(pair.ours, name)) == shape(getattr(pair.real, name))
