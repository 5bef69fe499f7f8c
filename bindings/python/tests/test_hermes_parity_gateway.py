"""Differential tests of the gateway methods of ``tidelog.hermes.SessionDB`` against Hermes' own ``SessionDB``
(hermes-agent 0.19.0): Telegram topic modes and bindings, gateway routing entries, session peers and the gateway's
session lookups. Every return value is compared (``pair.same``), on fixed cases and on random call sequences."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hermes_diff import REAL, Normalizer, Pair, require_hermes

# The session columns these methods write or filter on, and the fields they add. Hermes returns every column of
# its sessions table; the rest (billing, compression, handoff ...) are the core's and are compared in its tests.
ROW_KEYS = (
    "id",
    "source",
    "user_id",
    "session_key",
    "chat_id",
    "chat_type",
    "thread_id",
    "display_name",
    "origin_json",
    "model",
    "title",
    "parent_session_id",
    "started_at",
    "ended_at",
    "end_reason",
    "message_count",
    "last_active",
    "preview",
)


def _project(row: Any) -> Any:
    if not isinstance(row, dict):
        return row
    return {k: row.get(k, "<absent>") for k in ROW_KEYS}


def rows(value: Any) -> Any:
    """``transform`` for session rows: the columns of :data:`ROW_KEYS` (a missing one shows as ``"<absent>"``)."""
    if isinstance(value, list):
        return [_project(r) for r in value]
    return _project(value)


def _sessions(pair: Pair, *specs: tuple[str, str, dict[str, Any]]) -> None:
    for sid, source, kwargs in specs:
        pair.same("create_session", sid, source, **kwargs)


# -- Telegram topic mode and bindings ----------------------------------------------------------------------------


def test_topic_reads_before_migration(pair: Pair) -> None:
    pair.same("is_telegram_topic_mode_enabled", chat_id="c", user_id="u")
    pair.same("get_telegram_topic_binding", chat_id="c", thread_id="1")
    pair.same("get_telegram_topic_binding_by_session", session_id="s")
    pair.same("list_telegram_topic_bindings_for_chat", chat_id="c")
    pair.same("is_telegram_session_linked_to_topic", session_id="s")
    pair.same("delete_telegram_topic_binding", chat_id="c", thread_id="1")
    pair.same("disable_telegram_topic_mode", chat_id="c")
    pair.same("get_meta", "telegram_dm_topic_schema_version")
    pair.same("apply_telegram_topic_migration")
    pair.same("get_meta", "telegram_dm_topic_schema_version")
    pair.same("apply_telegram_topic_migration")


def test_topic_mode(pair: Pair) -> None:
    pair.same("enable_telegram_topic_mode", chat_id="c1", user_id="u1")
    pair.same("get_meta", "telegram_dm_topic_schema_version")
    pair.same("is_telegram_topic_mode_enabled", chat_id="c1", user_id="u1")
    pair.same("is_telegram_topic_mode_enabled", chat_id="c1", user_id="u2")
    pair.same("is_telegram_topic_mode_enabled", chat_id="c2", user_id="u1")
    # Numbers are compared as the text Hermes stores.
    pair.same("enable_telegram_topic_mode", chat_id=42, user_id=7, has_topics_enabled=True)
    pair.same("is_telegram_topic_mode_enabled", chat_id="42", user_id="7")
    pair.same("is_telegram_topic_mode_enabled", chat_id=42, user_id=7)
    pair.same("disable_telegram_topic_mode", chat_id="c1")
    pair.same("is_telegram_topic_mode_enabled", chat_id="c1", user_id="u1")
    # Re-enabling by another user moves the chat to that user.
    pair.same("enable_telegram_topic_mode", chat_id="c1", user_id="u2", allows_users_to_create_topics=False)
    pair.same("is_telegram_topic_mode_enabled", chat_id="c1", user_id="u1")
    pair.same("is_telegram_topic_mode_enabled", chat_id="c1", user_id="u2")
    pair.same("disable_telegram_topic_mode", chat_id="nope", clear_bindings=False)


def test_bindings(pair: Pair) -> None:
    _sessions(pair, ("s1", "telegram", {"user_id": "u1"}), ("s2", "telegram", {"user_id": "u1"}))
    pair.same("bind_telegram_topic", chat_id="c", thread_id="1", user_id="u1", session_key="k1", session_id="s1")
    pair.same("get_telegram_topic_binding", chat_id="c", thread_id="1")
    pair.same("get_telegram_topic_binding", chat_id="c", thread_id=1)
    # Again: idempotent (updated_at moves, linked_at stays).
    pair.same(
        "bind_telegram_topic",
        chat_id="c",
        thread_id="1",
        user_id="u9",
        session_key="k9",
        session_id="s1",
        managed_mode="manual",
    )
    pair.same("get_telegram_topic_binding_by_session", session_id="s1")
    # The same session on another topic: refused.
    pair.same("bind_telegram_topic", chat_id="c", thread_id="2", user_id="u1", session_key="k", session_id="s1")
    pair.same("bind_telegram_topic", chat_id="d", thread_id="1", user_id="u1", session_key="k", session_id="s1")
    # The link is checked before the values are bound.
    topic: dict[str, Any] = {"chat_id": "d", "thread_id": "1", "user_id": "u1", "session_key": "k"}
    pair.same("bind_telegram_topic", **topic, session_id="s1", managed_mode={})
    # A session that does not exist: Hermes' foreign key.
    pair.same("bind_telegram_topic", chat_id="c", thread_id="3", user_id="u1", session_key="k", session_id="zz")
    pair.same("get_telegram_topic_binding", chat_id="c", thread_id="3")
    pair.same(
        "bind_telegram_topic",
        chat_id="c",
        thread_id="3",
        user_id="u1",
        session_key="k",
        session_id="s2",
        managed_mode=None,
    )
    topic = {"chat_id": "c", "thread_id": "3", "user_id": "u1", "session_key": "k"}
    pair.same("bind_telegram_topic", **topic, session_id="s2", managed_mode=7)
    pair.same("list_telegram_topic_bindings_for_chat", chat_id="c")
    # The topic moves to another session: the first is unbound.
    pair.same("bind_telegram_topic", chat_id="c", thread_id="1", user_id="u1", session_key="k", session_id="s2")
    pair.same("bind_telegram_topic", chat_id="c", thread_id="3", user_id="u1", session_key="k", session_id="s2")
    pair.same("is_telegram_session_linked_to_topic", session_id="s1")
    pair.same("is_telegram_session_linked_to_topic", session_id="s2")
    pair.same("list_telegram_topic_bindings_for_chat", chat_id="c")
    pair.same("bind_telegram_topic", chat_id="c", thread_id="2", user_id="u1", session_key="k", session_id="s1")
    pair.same("list_telegram_topic_bindings_for_chat", chat_id="c")
    pair.same("list_telegram_topic_bindings_for_chat", chat_id="d")


def test_deleting_the_last_binding_turns_topic_mode_off(pair: Pair) -> None:
    _sessions(pair, ("s1", "telegram", {}), ("s2", "telegram", {}))
    pair.same("enable_telegram_topic_mode", chat_id="c", user_id="u")
    pair.same("bind_telegram_topic", chat_id="c", thread_id="1", user_id="u", session_key="k1", session_id="s1")
    pair.same("bind_telegram_topic", chat_id="c", thread_id="2", user_id="u", session_key="k2", session_id="s2")
    pair.same("delete_telegram_topic_binding", chat_id="c", thread_id="1")
    pair.same("delete_telegram_topic_binding", chat_id="c", thread_id="1")
    pair.same("is_telegram_topic_mode_enabled", chat_id="c", user_id="u")
    pair.same("delete_telegram_topic_binding", chat_id="c", thread_id=2)
    pair.same("is_telegram_topic_mode_enabled", chat_id="c", user_id="u")
    pair.same("list_telegram_topic_bindings_for_chat", chat_id="c")


def test_disable_clears_bindings_unless_told(pair: Pair) -> None:
    _sessions(pair, ("s1", "telegram", {}), ("s2", "telegram", {}))
    pair.same("enable_telegram_topic_mode", chat_id="c", user_id="u")
    pair.same("bind_telegram_topic", chat_id="c", thread_id="1", user_id="u", session_key="k1", session_id="s1")
    pair.same("bind_telegram_topic", chat_id="e", thread_id="1", user_id="u", session_key="k2", session_id="s2")
    pair.same("disable_telegram_topic_mode", chat_id="c", clear_bindings=False)
    pair.same("list_telegram_topic_bindings_for_chat", chat_id="c")
    pair.same("is_telegram_topic_mode_enabled", chat_id="c", user_id="u")
    pair.same("disable_telegram_topic_mode", chat_id="c")
    pair.same("list_telegram_topic_bindings_for_chat", chat_id="c")
    pair.same("list_telegram_topic_bindings_for_chat", chat_id="e")


def test_deleting_a_session_deletes_its_binding(pair: Pair) -> None:
    """Hermes' ``ON DELETE CASCADE``: ``_gateway_forget_sessions`` is the core deletion paths' hook (called here
    as they call it)."""
    _sessions(pair, ("s1", "telegram", {}), ("s2", "telegram", {}))
    pair.same("bind_telegram_topic", chat_id="c", thread_id="1", user_id="u", session_key="k1", session_id="s1")
    pair.same("bind_telegram_topic", chat_id="c", thread_id="2", user_id="u", session_key="k2", session_id="s2")
    pair.same("delete_session", "s1")
    pair.ours._gateway_forget_sessions(["s1"])
    pair.same("get_telegram_topic_binding", chat_id="c", thread_id="1")
    pair.same("list_telegram_topic_bindings_for_chat", chat_id="c")
    pair.same("delete_session", "s2")
    pair.ours._gateway_forget_sessions(["s2"])
    pair.same("list_telegram_topic_bindings_for_chat", chat_id="c")


def test_unlinked_telegram_sessions(pair: Pair) -> None:
    _sessions(
        pair,
        ("s1", "telegram", {"user_id": "u1"}),
        ("s2", "telegram", {"user_id": "u1"}),
        ("s3", "telegram", {"user_id": "u2"}),
        ("s4", "discord", {"user_id": "u1"}),
        ("s5", "telegram", {"user_id": "u1"}),
        ("s6", "telegram", {"user_id": "u1"}),
        ("s7", "telegram", {"user_id": "u1"}),
    )
    pair.same("list_unlinked_telegram_sessions_for_user", chat_id="c", user_id="u1", transform=rows)
    pair.both("append_message", "s1", "assistant", "first answer")
    pair.both("append_message", "s1", "user", "line one\nline two\r\n" + "x" * 80)
    pair.both("append_message", "s2", "user", [{"type": "text", "text": "a picture"}])
    pair.both("append_message", "s5", "user", "   ")
    pair.both("append_message", "s5", "user", "second")
    pair.both("append_message", "s6", "user", "  padded " + "y" * 58 + "  ")
    pair.both("append_message", "s7", "user", "short")
    pair.same("list_unlinked_telegram_sessions_for_user", chat_id="c", user_id="u1", transform=rows)
    pair.same("bind_telegram_topic", chat_id="c", thread_id="1", user_id="u1", session_key="k", session_id="s2")
    pair.same("list_unlinked_telegram_sessions_for_user", chat_id="zz", user_id="u1", transform=rows)
    pair.same("list_unlinked_telegram_sessions_for_user", chat_id="c", user_id="u1", limit=2, transform=rows)
    pair.same("list_unlinked_telegram_sessions_for_user", chat_id="c", user_id="u1", limit=0, transform=rows)
    pair.same("list_unlinked_telegram_sessions_for_user", chat_id="c", user_id="u1", limit=-1, transform=rows)
    pair.same("list_unlinked_telegram_sessions_for_user", chat_id="c", user_id="u1", limit="3", transform=rows)
    pair.same("list_unlinked_telegram_sessions_for_user", chat_id="c", user_id="u1", limit="x", transform=rows)
    pair.same("list_unlinked_telegram_sessions_for_user", chat_id="c", user_id="u2", transform=rows)
    pair.same("list_unlinked_telegram_sessions_for_user", chat_id="c", user_id="nobody", transform=rows)


# -- gateway routing ---------------------------------------------------------------------------------------------


def test_routing_entries(pair: Pair) -> None:
    pair.same("load_gateway_routing_entries")
    pair.same("save_gateway_routing_entry", "agent:main:telegram:dm:1", '{"session_id": "s1"}')
    pair.same("save_gateway_routing_entry", "agent:main:telegram:dm:2", '{"session_id": "s2"}', scope="/x")
    pair.same("save_gateway_routing_entry", "agent:main:telegram:dm:1", '{"session_id": "s3"}')
    pair.same("save_gateway_routing_entry", "", "{}")
    pair.same("save_gateway_routing_entry", "k", "")
    pair.same("save_gateway_routing_entry", None, "{}")
    pair.same("load_gateway_routing_entries")
    pair.same("load_gateway_routing_entries", scope="/x")
    pair.same("load_gateway_routing_entries", scope="/y")
    pair.same("replace_gateway_routing_entries", {"b": "2", "a": "1", "": "skipped", "c": ""})
    pair.same("load_gateway_routing_entries")
    pair.same("load_gateway_routing_entries", scope="/x")
    pair.same("delete_gateway_routing_entries", ["a", "missing"])
    pair.same("delete_gateway_routing_entries", [])
    pair.same("load_gateway_routing_entries")
    pair.same("replace_gateway_routing_entries", {})
    pair.same("load_gateway_routing_entries")
    pair.same("load_gateway_routing_entries", scope="/x")
    pair.same("replace_gateway_routing_entries", None, scope="/x")
    pair.same("load_gateway_routing_entries", scope="/x")


def test_routing_values_as_sqlite_binds_them(pair: Pair) -> None:
    pair.same("save_gateway_routing_entry", 5, 1.0, scope=2)
    pair.same("load_gateway_routing_entries", scope="2")
    pair.same("load_gateway_routing_entries", scope=2)
    pair.same("save_gateway_routing_entry", "k", {"not": "text"})
    pair.same("save_gateway_routing_entry", "k", "v", scope=None)
    pair.same("save_gateway_routing_entry", "k", 2**70)
    pair.same("load_gateway_routing_entries", scope=None)
    pair.same("replace_gateway_routing_entries", {"x": "1"})
    # A key given twice as text, or a value SQLite cannot bind: nothing changes.
    pair.same("replace_gateway_routing_entries", {5: "a", "5": "b"})
    pair.same("replace_gateway_routing_entries", {"y": ["no"]})
    pair.same("replace_gateway_routing_entries", [("y", "1")])
    pair.same("replace_gateway_routing_entries", {5: "a", "5": "b", "z": ["no"]})
    pair.same("replace_gateway_routing_entries", {"z": ["no"], 5: "a", "5": "b"})
    pair.same("load_gateway_routing_entries")
    pair.same("replace_gateway_routing_entries", {"y": "1"}, scope=None)
    pair.same("replace_gateway_routing_entries", {}, scope=None)
    pair.same("delete_gateway_routing_entries", "xy")
    pair.same("load_gateway_routing_entries")
    pair.same("delete_gateway_routing_entries", [{"bad": 1}])
    pair.same("delete_gateway_routing_entries", ["x"], scope=None)
    pair.same("load_gateway_routing_entries")


# -- session peers and lookups -----------------------------------------------------------------------------------


def test_record_gateway_session_peer(pair: Pair) -> None:
    _sessions(pair, ("s1", "cli", {"user_id": "u0", "chat_id": "c0", "thread_id": "t0"}))
    pair.same("get_session", "s1", transform=rows)
    pair.same(
        "record_gateway_session_peer",
        "s1",
        source="telegram",
        user_id="u1",
        session_key="agent:main:telegram:dm:c1",
        chat_id="c1",
        chat_type="dm",
        display_name="Ann",
        origin_json='{"platform": "telegram"}',
    )
    pair.same("get_session", "s1", transform=rows)
    # None clears the peer, but keeps display_name and origin_json.
    pair.same("record_gateway_session_peer", "s1", source="discord", session_key="k2")
    pair.same("get_session", "s1", transform=rows)
    pair.same("record_gateway_session_peer", "s1", source="discord", session_key="k2", user_id=7, chat_id=8.5)
    pair.same("get_session", "s1", transform=rows)
    pair.same("record_gateway_session_peer", "s1", source="discord", session_key="k3", chat_id="c3")
    pair.same("get_session", "s1", transform=rows)
    # Refused or ignored.
    pair.same("record_gateway_session_peer", "s1", source=None, session_key="k4")
    pair.same("record_gateway_session_peer", "s1", source="x", session_key="k4", user_id={"a": 1})
    pair.same("record_gateway_session_peer", "s1", source="x", session_key="")
    pair.same("record_gateway_session_peer", "", source="x", session_key="k5")
    pair.same("record_gateway_session_peer", "missing", source=None, session_key="k5")
    pair.same("get_session", "s1", transform=rows)
    pair.same("get_session", "missing", transform=rows)


def test_peer_columns_given_to_create_session(pair: Pair) -> None:
    _sessions(pair, ("s1", "telegram", {"session_key": "k", "chat_id": "1", "chat_type": "dm", "thread_id": 7}))
    pair.same("get_session", "s1", transform=rows)
    pair.same("find_session_by_origin", platform="telegram", chat_id=1, thread_id=7)
    pair.same("list_gateway_sessions", transform=rows)


def test_find_session_by_origin(pair: Pair) -> None:
    _sessions(
        pair,
        ("a", "telegram", {}),
        ("b", "telegram", {}),
        ("c", "Telegram", {}),
        ("d", "discord", {}),
        ("e", "telegram", {}),
    )
    peers: dict[str, dict[str, Any]] = {
        "a": {"source": "telegram", "user_id": "u1", "chat_id": "100", "thread_id": None},
        "b": {"source": "telegram", "user_id": "u2", "chat_id": "100", "thread_id": "7"},
        "c": {"source": "Telegram", "user_id": "u1", "chat_id": "200", "thread_id": None},
        "d": {"source": "discord", "user_id": "u1", "chat_id": "100", "thread_id": None},
    }
    for sid, peer in peers.items():
        pair.same("record_gateway_session_peer", sid, session_key=f"key:{sid}", **peer)
    asks: list[dict[str, Any]] = [
        {"platform": "telegram", "chat_id": "100"},
        {"platform": "TELEGRAM", "chat_id": 100},
        {"platform": "telegram", "chat_id": "100", "user_id": "u1"},
        {"platform": "telegram", "chat_id": "100", "user_id": "u2"},
        {"platform": "telegram", "chat_id": "100", "user_id": "u3"},
        {"platform": "telegram", "chat_id": "100", "thread_id": "7"},
        {"platform": "telegram", "chat_id": "100", "thread_id": ""},
        {"platform": "telegram", "chat_id": "100", "thread_id": "7", "user_id": "u3"},
        {"platform": "telegram", "chat_id": "200"},
        {"platform": "discord", "chat_id": "100", "user_id": "u9"},
        {"platform": "", "chat_id": "100"},
        {"platform": "telegram", "chat_id": ""},
        {"platform": "telegram", "chat_id": None},
        {"platform": "telegram", "chat_id": "nope"},
    ]
    for ask in asks:
        pair.same("find_session_by_origin", **ask)
    pair.same("end_session", "b", "user_exit")
    for ask in asks:
        pair.same("find_session_by_origin", **ask)


def test_find_latest_gateway_session_for_peer(pair: Pair) -> None:
    _sessions(pair, *((sid, "telegram", {}) for sid in ("a", "b", "c", "d", "e")))
    peer: dict[str, Any] = {"source": "telegram", "user_id": "u1", "chat_id": "100", "chat_type": "dm"}
    peer["thread_id"] = None
    for sid in ("a", "b", "c", "d"):
        pair.same("record_gateway_session_peer", sid, session_key="key1", **peer)
    pair.same("record_gateway_session_peer", "e", session_key="key2", **peer)
    ask: dict[str, Any] = {"source": "telegram", "session_key": "key1"}
    full: dict[str, Any] = {**ask, "user_id": "u1", "chat_id": "100", "chat_type": "dm"}
    pair.same("find_latest_gateway_session_for_peer", **ask, transform=rows)  # no messages yet
    pair.both("append_message", "a", "user", "hi")
    pair.both("append_message", "b", "user", "hi")
    pair.both("append_message", "e", "user", "hi")
    pair.same("find_latest_gateway_session_for_peer", **ask, transform=rows)
    pair.same("end_session", "b", "agent_close")
    pair.same("find_latest_gateway_session_for_peer", **ask, transform=rows)
    pair.same("reopen_session", "b")
    pair.same("end_session", "b", "new_session")
    pair.same("find_latest_gateway_session_for_peer", **ask, transform=rows)
    pair.same("end_session", "a", "compression")
    pair.same("find_latest_gateway_session_for_peer", **ask, transform=rows)
    # No session of key1 left: by the whole peer (e has it, under key2), only with chat_id and chat_type.
    pair.same("find_latest_gateway_session_for_peer", **full, transform=rows)
    pair.same("find_latest_gateway_session_for_peer", **{**full, "chat_type": None}, transform=rows)
    pair.same("find_latest_gateway_session_for_peer", **{**full, "user_id": "u2"}, transform=rows)
    pair.same("find_latest_gateway_session_for_peer", **{**full, "thread_id": ""}, transform=rows)
    pair.same("find_latest_gateway_session_for_peer", **{**full, "thread_id": "9"}, transform=rows)
    pair.same("find_latest_gateway_session_for_peer", **{**full, "chat_id": 100}, transform=rows)
    pair.same("find_latest_gateway_session_for_peer", **{**full, "source": "discord"}, transform=rows)
    pair.same("find_latest_gateway_session_for_peer", source="telegram", session_key="key2", transform=rows)
    pair.same("find_latest_gateway_session_for_peer", source="telegram", session_key="", transform=rows)
    pair.same("find_latest_gateway_session_for_peer", source="telegram", transform=rows)


def test_list_gateway_sessions(pair: Pair) -> None:
    _sessions(pair, *((sid, "x", {}) for sid in ("a", "b", "c", "d", "e", "f")))
    plan = {
        "a": ("telegram", "k1"),
        "b": ("telegram", "k1"),
        "c": ("Discord", "k2"),
        "d": ("discord", "k3"),
        "e": ("telegram", "k4"),
    }
    for sid, (source, key) in plan.items():
        pair.same("record_gateway_session_peer", sid, source=source, session_key=key, chat_id="1", user_id="u")
    pair.both("append_message", "d", "user", "latest activity")
    pair.same("list_gateway_sessions", transform=rows)
    pair.same("list_gateway_sessions", platform="discord", transform=rows)
    pair.same("list_gateway_sessions", platform="DISCORD", active_only=False, transform=rows)
    pair.same("list_gateway_sessions", platform="", transform=rows)
    pair.same("end_session", "b", "user_exit")  # k1's newest ended: k1 is gone, not replaced by a
    pair.same("end_session", "e", "user_exit")
    pair.same("list_gateway_sessions", transform=rows)
    pair.same("list_gateway_sessions", active_only=False, transform=rows)
    pair.same("list_gateway_sessions", platform="telegram", active_only=False, transform=rows)


# -- an existing state.db -----------------------------------------------------------------------------------------


def test_import_of_an_existing_state_db(tmp_path: Path) -> None:
    """``_gateway_import`` (called with the core's import of sessions and messages) copies Hermes' gateway tables:
    the same reads then answer the same on Hermes' file and on the store made from it."""
    from tidelog.hermes import SessionDB

    require_hermes()
    path = tmp_path / "state.db"
    real = REAL(path)
    real.create_session("s1", "telegram", user_id="u1")
    real.create_session("s2", "telegram", user_id="u1")
    real.append_message("s1", "user", "hello")
    real.enable_telegram_topic_mode(chat_id="c", user_id="u1", has_topics_enabled=True)
    real.bind_telegram_topic(chat_id="c", thread_id="1", user_id="u1", session_key="k1", session_id="s1")
    real.bind_telegram_topic(chat_id="c", thread_id="2", user_id="u1", session_key="k2", session_id="s2")
    real.record_gateway_session_peer("s1", source="telegram", session_key="k1", chat_id="c", user_id="u1")
    real.save_gateway_routing_entry("k1", '{"session_id": "s1"}')
    real.save_gateway_routing_entry("k2", '{"session_id": "s2"}', scope="/d")
    real.close()
    ours = SessionDB(path)
    real = REAL(path)
    try:
        assert ours._gateway_import(path) == {
            "gateway_routing": 2,
            "telegram_dm_topic_mode": 1,
            "telegram_dm_topic_bindings": 2,
            "session_model_usage": 0,
            "async_delegations": 0,
            "state_meta": 1,
        }
        norm = Normalizer()
        reads: list[tuple[str, dict[str, Any]]] = [
            ("get_meta", {"key": "telegram_dm_topic_schema_version"}),
            ("is_telegram_topic_mode_enabled", {"chat_id": "c", "user_id": "u1"}),
            ("list_telegram_topic_bindings_for_chat", {"chat_id": "c"}),
            ("get_telegram_topic_binding_by_session", {"session_id": "s2"}),
            ("load_gateway_routing_entries", {}),
            ("load_gateway_routing_entries", {"scope": "/d"}),
            ("find_session_by_origin", {"platform": "telegram", "chat_id": "c"}),
            ("delete_telegram_topic_binding", {"chat_id": "c", "thread_id": "1"}),
            ("delete_telegram_topic_binding", {"chat_id": "c", "thread_id": "2"}),
            ("is_telegram_topic_mode_enabled", {"chat_id": "c", "user_id": "u1"}),
        ]
        for name, kwargs in reads:
            assert norm(getattr(ours, name)(**kwargs)) == norm(getattr(real, name)(**kwargs)), name
    finally:
        ours.close()
        real.close()


# -- random sequences --------------------------------------------------------------------------------------------

SESSIONS = ("s1", "s2", "s3", "s4")
CHATS = ("c1", "c2")
THREADS = ("1", "2", "3")
USERS = ("u1", "u2")
SCOPES = ("", "/d")
KEYS = ("k1", "k2", "k3")

_calls = st.one_of(
    st.builds(
        lambda c, t, u, k, s, m: (
            "bind_telegram_topic",
            {"chat_id": c, "thread_id": t, "user_id": u, "session_key": k, "session_id": s, "managed_mode": m},
        ),
        st.sampled_from(CHATS),
        st.sampled_from(THREADS),
        st.sampled_from(USERS),
        st.sampled_from(KEYS),
        st.sampled_from((*SESSIONS, "gone")),
        st.sampled_from(("auto", "manual")),
    ),
    st.builds(
        lambda c, t: ("delete_telegram_topic_binding", {"chat_id": c, "thread_id": t}),
        st.sampled_from(CHATS),
        st.sampled_from(THREADS),
    ),
    st.builds(
        lambda c, u, h: ("enable_telegram_topic_mode", {"chat_id": c, "user_id": u, "has_topics_enabled": h}),
        st.sampled_from(CHATS),
        st.sampled_from(USERS),
        st.sampled_from((None, True, False)),
    ),
    st.builds(
        lambda c, b: ("disable_telegram_topic_mode", {"chat_id": c, "clear_bindings": b}),
        st.sampled_from(CHATS),
        st.booleans(),
    ),
    st.builds(
        lambda k, v, s: ("save_gateway_routing_entry", {"session_key": k, "entry_json": v, "scope": s}),
        st.sampled_from(KEYS),
        st.sampled_from(("{}", '{"a": 1}', "")),
        st.sampled_from(SCOPES),
    ),
    st.builds(
        lambda e, s: ("replace_gateway_routing_entries", {"entries": e, "scope": s}),
        st.dictionaries(st.sampled_from(KEYS), st.sampled_from(("{}", "[1]", "")), max_size=3),
        st.sampled_from(SCOPES),
    ),
    st.builds(
        lambda ks, s: ("delete_gateway_routing_entries", {"session_keys": ks, "scope": s}),
        st.lists(st.sampled_from(KEYS), max_size=2),
        st.sampled_from(SCOPES),
    ),
    st.builds(
        lambda sid, src, u, c, t, k, ct: (
            "record_gateway_session_peer",
            {"session_id": sid, "source": src, "user_id": u, "chat_id": c, "thread_id": t, "session_key": k}
            | {"chat_type": ct},
        ),
        st.sampled_from(SESSIONS),
        st.sampled_from(("telegram", "discord")),
        st.sampled_from((None, *USERS)),
        st.sampled_from((None, *CHATS)),
        st.sampled_from((None, *THREADS)),
        st.sampled_from(KEYS),
        st.sampled_from((None, "dm")),
    ),
    st.builds(
        lambda sid: ("append_message", {"session_id": sid, "role": "user", "content": "hi"}), st.sampled_from(SESSIONS)
    ),
    st.builds(lambda sid: ("end_session", {"session_id": sid, "end_reason": "user_exit"}), st.sampled_from(SESSIONS)),
    st.builds(lambda sid: ("delete_session", {"session_id": sid}), st.sampled_from(SESSIONS)),
)


def _compare_reads(pair: Pair) -> None:
    for chat in CHATS:
        pair.same("list_telegram_topic_bindings_for_chat", chat_id=chat)
        pair.same("find_session_by_origin", platform="telegram", chat_id=chat)
        for user in USERS:
            pair.same("is_telegram_topic_mode_enabled", chat_id=chat, user_id=user)
            pair.same("find_session_by_origin", platform="Telegram", chat_id=chat, thread_id="1", user_id=user)
            peer: dict[str, Any] = {"source": "discord", "session_key": "k0", "user_id": user, "chat_id": chat}
            pair.same("find_latest_gateway_session_for_peer", **peer, chat_type="dm", thread_id="2", transform=rows)
    for sid in SESSIONS:
        pair.same("get_telegram_topic_binding_by_session", session_id=sid)
        pair.same("is_telegram_session_linked_to_topic", session_id=sid)
    for scope in SCOPES:
        pair.same("load_gateway_routing_entries", scope=scope)
    for user in USERS:
        pair.same("list_unlinked_telegram_sessions_for_user", chat_id="c1", user_id=user, transform=rows)
    for key in KEYS:
        pair.same("find_latest_gateway_session_for_peer", source="telegram", session_key=key, transform=rows)
    pair.same("list_gateway_sessions", active_only=False, transform=rows)
    pair.same("list_gateway_sessions", platform="telegram", transform=rows)


@settings(
    derandomize=True,
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(calls=st.lists(_calls, min_size=1, max_size=14))
def test_random_gateway_sequences(calls: list[tuple[str, dict[str, Any]]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        pair = Pair(Path(tmp))
        try:
            for i, sid in enumerate(SESSIONS):
                pair.same("create_session", sid, "telegram", user_id=USERS[i % 2])
            deleted = set()
            for name, kwargs in calls:
                if name == "delete_session":
                    pair.same(name, **kwargs)
                    pair.ours._gateway_forget_sessions([kwargs["session_id"]])
                    deleted.add(kwargs["session_id"])
                elif kwargs.get("session_id") in deleted and name in ("append_message", "end_session"):
                    # Hermes refuses a message of a deleted session (foreign key) and ends no missing session; the
                    # core's store writes create it again. Not the gateway methods' concern.
                    continue
                elif name == "append_message":
                    pair.both(name, **kwargs)
                else:
                    pair.same(name, **kwargs)
            _compare_reads(pair)
        finally:
            pair.close()


@pytest.mark.parametrize(
    ("value", "text"),
    [(1.5, "1.5"), (1.0, "1.0"), (1e20, "1.0e+20"), (1 / 3, "0.333333333333333"), (-0.0, "0.0"), (1e15, "1.0e+15")],
)
def test_real_as_sqlite_text(value: float, text: str) -> None:
    from tidelog.hermes._gateway import _sql_text

    assert _sql_text(value) == text


def test_one_topic_per_session_under_racing_writers(tmp_path: Path) -> None:
    """Two SessionDBs of one store race to bind one session to different topics: one topic wins, the others get
    Hermes' ValueError (the check and the write run under the store's exclusive lock)."""
    import threading

    from tidelog.hermes import SessionDB

    dbs = [SessionDB(tmp_path / "state.db") for _ in range(2)]
    try:
        dbs[0].create_session("s", "telegram")
        for _ in range(5):
            dbs[0].disable_telegram_topic_mode(chat_id="c")
            won: list[str] = []
            refused: list[str] = []

            def bind(db: SessionDB, thread: str) -> None:
                try:
                    db.bind_telegram_topic(chat_id="c", thread_id=thread, user_id="u", session_key="k", session_id="s")
                    won.append(thread)
                except ValueError:
                    refused.append(thread)

            threads = [threading.Thread(target=bind, args=(dbs[i % 2], str(i))) for i in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert len(set(won)) == 1 and len(won) + len(refused) == 4
            assert [b["thread_id"] for b in dbs[1].list_telegram_topic_bindings_for_chat(chat_id="c")] == won[:1]
    finally:
        for db in dbs:
            db.close()
