"""Round trips through the public API, as a gateway uses it."""

from __future__ import annotations

import gc
import json
import time
from pathlib import Path
from typing import Any

import pytest

import tidelog


def test_imported_from_an_installation_not_the_source_tree() -> None:
    # The tests must exercise the package as a user gets it (pip install ./bindings/python).
    assert "site-packages" in tidelog.__file__, tidelog.__file__
    assert tidelog._tidelog.__file__.endswith(".abi3.so")


def test_append_read_back_every_field(store: tidelog.Store) -> None:
    mid = store.append(
        "telegram:42",
        "assistant",
        "Calling the weather tool",
        tool_calls=[{"id": "c1", "function": {"name": "weather", "arguments": "{}"}}],
        reasoning="user asked for the weather",
        timestamp=1_700_000_000.5,
        token_count=17,
        finish_reason="tool_calls",
        source="telegram",
        extra={"lang": "fr", "n": [1, 2]},
    )
    tool = store.append("telegram:42", "tool", "sunny", tool_call_id="c1", tool_name="weather", id="my-id-1")
    assert tool == "my-id-1"
    msgs = store.messages("telegram:42")
    assert [m.id for m in msgs] == [mid, "my-id-1"]
    m = msgs[0]
    assert (m.session_id, m.role, m.content) == ("telegram:42", "assistant", "Calling the weather tool")
    assert json.loads(m.tool_calls or "") == [{"id": "c1", "function": {"name": "weather", "arguments": "{}"}}]
    assert m.reasoning == "user asked for the weather"
    assert m.timestamp == 1_700_000_000.5
    assert (m.token_count, m.finish_reason, m.source) == (17, "tool_calls", "telegram")
    assert json.loads(m.extra or "") == {"lang": "fr", "n": [1, 2]}
    assert msgs[1].tool_call_id == "c1" and msgs[1].tool_name == "weather"
    d = m.to_dict(parse_json=True)
    assert d["extra"] == {"lang": "fr", "n": [1, 2]} and d["id"] == mid
    assert m.to_dict()["extra"] == m.extra
    assert "Calling the weather" in repr(m) and mid in repr(m)
    # A str is taken as JSON text already.
    store.append("s2", "user", "x", extra='{"k": 1}')
    assert json.loads(store.messages("s2")[0].extra or "") == {"k": 1}


def test_timestamp_defaults_to_now_and_ids_are_assigned(store: tidelog.Store) -> None:
    before = time.time()
    mid = store.append("s", "user", "hi")
    (m,) = store.messages("s")
    assert m.id == mid and len(mid) == 36
    assert before - 1 <= m.timestamp <= time.time() + 1


def test_messages_are_frozen_values(store: tidelog.Store) -> None:
    store.append("s", "user", "hi", id="a")
    m = store.messages("s")[0]
    with pytest.raises(AttributeError):
        m.content = "changed"  # type: ignore[misc]
    assert m == store.messages("s")[0]
    built = tidelog.Message("s", "user", "hi")
    assert built.id == "" and built.timestamp == 0.0


def test_context_manager_closes(store_dir: Path) -> None:
    with tidelog.Store(store_dir) as s:
        s.append("s", "user", "hello")
        assert not s.closed
    assert s.closed
    with pytest.raises(tidelog.ClosedError):
        s.append("s", "user", "again")
    assert s.close() is True  # closing twice is fine
    with tidelog.Store(store_dir, read_only=True) as r:
        assert [m.content for m in r.messages("s")] == ["hello"]


def test_context_manager_closes_on_exception(store_dir: Path) -> None:
    with pytest.raises(RuntimeError), tidelog.Store(store_dir) as s:
        s.append("s", "user", "kept")
        raise RuntimeError("boom")
    assert s.closed
    with tidelog.Store(store_dir) as s2:
        assert [m.content for m in s2.messages("s")] == ["kept"]


def test_unclosed_store_closes_when_collected(store_dir: Path) -> None:
    s = tidelog.Store(store_dir)
    mid = s.append("s", "user", "not closed explicitly")
    del s
    gc.collect()
    with tidelog.Store(store_dir) as s2:
        assert s2.lane == "lane-0001"  # the lane was released
        assert [m.id for m in s2.messages("s")] == [mid]


def test_reopen_keeps_everything(store_dir: Path) -> None:
    with tidelog.Store(store_dir, run_compactor=False) as s:
        ids = [s.append("s", "user", f"message {i}") for i in range(50)]
    with tidelog.Store(store_dir) as s:
        assert [m.id for m in s.messages("s")] == ids
        assert s.wait_indexed(10)
        assert [m.id for m in s.messages("s")] == ids


def test_append_batch_messages_and_dicts(store: tidelog.Store) -> None:
    out = store.append_batch(
        [
            tidelog.Message("s", "user", "one", timestamp=1.0),
            {"session_id": "s", "role": "assistant", "content": "two", "timestamp": 2.0, "extra": {"a": 1}},
        ]
    )
    assert [type(a) for a in out] == [tidelog.Appended, tidelog.Appended]
    assert out[1].lsn == out[0].lsn + 1  # type: ignore[operator]
    assert not out[0].duplicate
    assert [m.content for m in store.messages("s")] == ["one", "two"]
    # Generators work too.
    store.append_batch({"session_id": "g", "role": "user", "content": str(i)} for i in range(3))
    assert len(store.messages("g")) == 3


def test_append_batch_is_atomic_on_invalid_input(store: tidelog.Store) -> None:
    good = {"session_id": "s", "role": "user", "content": "fine"}
    cases: list[list[Any]] = [
        [good, {"session_id": "s", "role": "", "content": "empty role"}],  # refused by the store
        [good, {"session_id": "s", "role": "user", "tool_calls": "{not json"}],  # bad JSON text
        [good, {"session_id": "s", "role": "user", "no_such_field": 1}],  # unknown key
        [good, {"role": "user"}],  # missing session_id
        [good, 42],  # not a message
        [good, {"session_id": "s", "role": "user", "timestamp": float("nan")}],
    ]
    for batch in cases:
        with pytest.raises(tidelog.InvalidInputError) as e:
            store.append_batch(batch)
        assert "message 2" in str(e.value), str(e.value)
    assert store.messages("s") == []
    assert store.status().lanes[0].last_lsn == 0


def test_client_ids_make_appends_idempotent(store: tidelog.Store) -> None:
    assert store.append("s", "user", "a", id="x") == "x"
    out = store.append_batch([tidelog.Message("s", "user", "a", id="x")])
    assert out[0].duplicate and out[0].lsn is None
    assert len(store.messages("s")) == 1


def test_search(store: tidelog.Store) -> None:
    store.append("s1", "user", "the invoice for the boat", timestamp=100.0, source="telegram")
    store.append("s1", "assistant", "no invoice found", timestamp=200.0, source="telegram")
    store.append("s2", "user", "invoice of the car", timestamp=300.0, source="cli")
    for indexed in (False, True):
        if indexed:
            assert store.wait_indexed(10)
        hits = store.search("invoice")
        assert len(hits) == 3 and all(isinstance(h, tidelog.SearchHit) for h in hits)
        assert "[invoice]" in hits[0].snippet
        newest = store.search("invoice", order="newest")
        assert [h.message.timestamp for h in newest] == [300.0, 200.0, 100.0]
        oldest = store.search("invoice", order="oldest", limit=2)
        assert [h.message.timestamp for h in oldest] == [100.0, 200.0]
        assert [h.message.session_id for h in store.search("invoice", session_id="s2")] == ["s2"]
        assert [h.message.role for h in store.search("invoice", role="assistant")] == ["assistant"]
        assert len(store.search("invoice", source="telegram")) == 2
        assert [h.message.timestamp for h in store.search("invoice", since=150, until=250)] == [200.0]
        assert store.search("nothing like this") == []
        d = hits[0].to_dict()
        assert set(d) == {"message", "snippet", "score", "active", "compacted"} and isinstance(d["message"], dict)
        assert "SearchHit(" in repr(hits[0])
    with pytest.raises(tidelog.InvalidInputError):
        store.search("   ")
    with pytest.raises(tidelog.InvalidInputError):
        store.search("x", order="sideways")  # type: ignore[arg-type]


def test_sessions(store: tidelog.Store) -> None:
    assert store.get_session("s") is None
    store.upsert_session("s", source="cli", title="Boat plans", started_at=10.0, extra={"a": 1})
    store.upsert_session("s", model="m1", extra={"b": 2})
    store.upsert_session("t", source="telegram", title="Other", started_at=20.0)
    lsn = store.end_session("s", "user_exit")
    assert isinstance(lsn, int) and lsn > 0
    s = store.get_session("s")
    assert s is not None
    assert (s.id, s.source, s.model, s.title, s.end_reason) == ("s", "cli", "m1", "Boat plans", "user_exit")
    assert s.ended_at is not None and s.started_at == 10.0
    assert json.loads(s.extra or "") == {"a": 1, "b": 2}
    assert s.to_dict(parse_json=True)["extra"] == {"a": 1, "b": 2}
    assert [x.id for x in store.list_sessions()] == ["t", "s"]
    assert [x.id for x in store.list_sessions(source="cli")] == ["s"]
    assert [x.id for x in store.list_sessions(title_contains="boat")] == ["s"]
    assert [x.id for x in store.list_sessions(limit=1)] == ["t"]
    assert [x.id for x in store.list_sessions(since=15)] == ["t"]
    assert "Boat plans" in repr(s)
    with pytest.raises(tidelog.InvalidInputError):
        store.upsert_session("")


def test_all_messages(store: tidelog.Store) -> None:
    store.append("a", "user", "1", timestamp=1.0)
    store.append("b", "user", "2", timestamp=2.0)
    assert sorted(m.content or "" for m in store.all_messages()) == ["1", "2"]
    assert [m.content for m in store.all_messages("b")] == ["2"]
    assert [m.content for m in store.all_messages(since=1.5)] == ["2"]


def test_status(store: tidelog.Store) -> None:
    store.append("s", "user", "x")
    st = store.status()
    assert isinstance(st, tidelog.StoreStatus)
    assert st.lane == store.lane and st.dir == store.path
    assert not st.is_degraded and st.problems == [] and st.journal_poisoned is None
    (lane,) = st.lanes
    assert isinstance(lane, tidelog.LaneStatus) and lane.own and lane.last_lsn == 1
    assert isinstance(st.index, tidelog.IndexStatus)
    assert st.index.state in {"unchecked", "healthy"}
    assert isinstance(st.compactor, tidelog.CompactorStatus)
    assert store.wait_indexed(10)
    st = store.status()
    assert st.unindexed == 0 and st.index.state == "healthy" and st.lanes[0].applied_lsn == 1
    assert st.compactor.running_here and st.compactor.entries_applied >= 1
    assert st.compactor.panics == 0 and st.compactor.last_panic is None and st.compactor.degraded is None
    d = st.to_dict()
    assert d["lanes"][0]["name"] == lane.name and d["index"]["state"] == "healthy"
    assert d["compactor"]["panics"] == 0 and d["compactor"]["degraded"] is None
    assert "StoreStatus(" in repr(st)


def test_options(store_dir: Path) -> None:
    with tidelog.Store(
        store_dir,
        durability="buffered",
        recovery="salvage",
        run_compactor=False,
        close_deadline=0.5,
        segment_size=1 << 20,
        max_record_size=1 << 16,
        poll_interval=0.05,
        retention="after_indexed",
        compression=False,
    ) as s:
        s.append("s", "user", "x")
        long_text = "a line of a tool output, written as it is\n" * 100
        s.append("s", "tool", long_text)
        assert [m.content for m in s.messages("s")][-1] == long_text
        assert not s.status().compactor.running_here
        assert not s.wait_indexed(0.2)  # nobody runs the compactor
        with pytest.raises(tidelog.InvalidInputError):
            s.append("s", "user", "x" * (1 << 17))  # larger than max_record_size
    bad: list[dict[str, Any]] = [
        {"durability": "maybe"},
        {"recovery": "lax"},
        {"retention": "sometimes"},
        {"close_deadline": -1},
    ]
    for kwargs in bad:
        with pytest.raises(tidelog.InvalidInputError):
            tidelog.Store(store_dir, **kwargs)
