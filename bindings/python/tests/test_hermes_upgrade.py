"""The upgrade path from Hermes Agent's own store: a ``state.db`` Hermes left with a ``-wal`` is
imported with the WAL's commits (the files untouched); a ``state.db`` that is not an importable
SQLite database is moved to the store's quarantine with a note, and the gateway keeps running."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest
from hermes_diff import REAL, require_hermes

from tidelog.hermes import SessionDB, store_path_for


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_state_db_hermes_left_with_a_wal_is_imported_whole(tmp_path: Path) -> None:
    require_hermes()
    state = tmp_path / "state.db"
    hermes = REAL(state)
    hermes.create_session("s1", "telegram", model="m")
    for i in range(12):
        hermes.append_message("s1", "user" if i % 2 == 0 else "assistant", f"message number {i}")
    hermes.save_gateway_routing_entry("agent:main:telegram:dm:42", '{"session_id": "s1"}')
    wal = state.with_name("state.db-wal")
    # Hermes is still running (or was killed): its last commits are in the WAL only.
    assert wal.exists() and wal.stat().st_size > 0
    before = (_digest(state), _digest(wal))
    with SessionDB(state) as db:
        assert db.message_count("s1") == 12
        assert [m["content"] for m in db.get_messages("s1")] == [f"message number {i}" for i in range(12)]
        assert not db.import_report.get("warnings")
        # Hermes' other tables too, with the WAL's commits.
        assert db.load_gateway_routing_entries() == {"agent:main:telegram:dm:42": '{"session_id": "s1"}'}
    assert (_digest(state), _digest(wal)) == before
    hermes.close()


@pytest.mark.parametrize("content", [b"this is not a database at all" * 100, b"SQLite format 3\x00" + b"\xff" * 5000])
def test_an_unreadable_state_db_is_quarantined_and_the_gateway_runs(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state.db"
    state.write_bytes(content)
    with caplog.at_level(logging.ERROR, logger="tidelog.hermes"):
        db = SessionDB(state)
    try:
        assert not state.exists()
        moved = [Path(p) for p in db.import_report["quarantined"]]
        assert [p.parent for p in moved] == [store_path_for(state) / "quarantine"]
        assert moved[0].read_bytes() == content
        note = json.loads(moved[0].with_name(moved[0].name + ".json").read_text())
        assert note["reason"] == db.import_report["error"] and note["files"] == [str(moved[0])]
        assert (moved[0].stat().st_mode & 0o777) == 0o600 and (moved[0].parent.stat().st_mode & 0o777) == 0o700
        assert any("could not be imported" in r.getMessage() for r in caplog.records)
        db.create_session("s1", "cli")
        db.append_message("s1", "user", "still working")
        assert db.message_count("s1") == 1
    finally:
        db.close()
    # The next open does not try again (and does not log again).
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="tidelog.hermes"), SessionDB(state) as again:
        assert again.message_count("s1") == 1
    assert not caplog.records


def test_a_state_db_hermes_wrote_reads_the_same_after_the_upgrade(tmp_path: Path) -> None:
    """Hermes writes a history (left with its WAL, as a killed gateway leaves it); tidelog imports
    it; every read Hermes offers gives the same answers on both (ids and times normalized)."""
    require_hermes()
    from hermes_diff import Normalizer

    state = tmp_path / "state.db"
    hermes = REAL(state)
    hermes.create_session("root", "telegram", model="m1", user_id="u1")
    hermes.set_session_title("root", "Boat invoice")
    hermes.append_message("root", "user", "Where is the invoice for the boat?")
    hermes.append_message(
        "root", "assistant", None, tool_calls=[{"id": "c1", "function": {"name": "search", "arguments": "{}"}}]
    )
    hermes.append_message("root", "tool", "found invoice.pdf in ~/docs", tool_name="search", tool_call_id="c1")
    hermes.append_message("root", "assistant", "It is in ~/docs/invoice.pdf", finish_reason="stop")
    hermes.update_token_counts("root", input_tokens=120, output_tokens=40)
    hermes.create_session("cli1", "cli", model="m2")
    hermes.append_message("cli1", "user", "数据库迁移失败了")
    hermes.append_message("cli1", "assistant", "Let me check the migration logs")
    hermes.end_session("cli1", "user_exit")
    with SessionDB(state) as ours:
        for name, args in [
            ("session_count", ()),
            ("message_count", ()),
            ("get_session", ("root",)),
            ("get_session", ("cli1",)),
            ("get_messages", ("root",)),
            ("get_messages", ("cli1",)),
            ("get_messages_as_conversation", ("root",)),
            ("get_session_title", ("root",)),
            ("search_messages", ("invoice",)),
            ("search_messages", ("数据库",)),
            ("list_sessions_rich", ()),
        ]:
            norm_r, norm_o = Normalizer(), Normalizer()
            assert norm_o(getattr(ours, name)(*args)) == norm_r(getattr(hermes, name)(*args)), name
    hermes.close()
