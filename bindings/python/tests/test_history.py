"""The history operations of the store: integer ids, history reads, updates, rewrites, deletes,
counters, titles, metadata and the Hermes import, through the binding."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import tidelog

FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "hermes"


def test_integer_ids_increase_in_append_order(store: tidelog.Store) -> None:
    first = store.append_message("s", "user", "one", timestamp=200.0)
    second = store.append_message("s", "assistant", "two", timestamp=100.0)
    assert first.num is not None and second.num is not None
    assert 0 < first.num < second.num
    batch = store.append_batch([{"session_id": "s", "role": "user", "content": "three"}])
    assert batch[0].num is not None and batch[0].num > second.num
    # history is by integer id, whatever the timestamps say.
    assert [h.message.content for h in store.history("s")] == ["one", "two", "three"]
    assert [h.message.num for h in store.history("s")] == [first.num, second.num, batch[0].num]


def test_duplicate_client_id_has_no_num(store: tidelog.Store) -> None:
    assert store.append_message("s", "user", "x", id="m1").num is not None
    again = store.append_message("s", "user", "x", id="m1")
    assert again.duplicate and again.num is None


def test_history_query(store: tidelog.Store) -> None:
    nums = [store.append_message("s", "user", f"m{i}").num for i in range(5)]
    assert [h.message.content for h in store.history("s", limit=2)] == ["m0", "m1"]
    assert [h.message.content for h in store.history("s", limit=2, latest=True)] == ["m3", "m4"]
    assert [h.message.content for h in store.history("s", after_id=nums[2])] == ["m3", "m4"]
    item = store.history("s")[0]
    assert item.active and not item.compacted
    assert item.to_dict()["message"]["num"] == nums[0]


def test_platform_id_and_api_content_round_trip(store: tidelog.Store) -> None:
    store.append("s", "user", "hi", platform_message_id="tg-7", api_content="hi (api)")
    m = store.history("s")[0].message
    assert (m.platform_message_id, m.api_content) == ("tg-7", "hi (api)")
    assert m.to_dict()["platform_message_id"] == "tg-7"
    built = tidelog.Message("s", "user", "x", platform_message_id="p", api_content="a")
    assert built.num == 0 and built.platform_message_id == "p"


def test_update_message(store: tidelog.Store) -> None:
    a = store.append_message("s", "assistant", "draft", extra={"k": 1})
    assert a.num is not None
    store.update_message(a.num, "s", content="final", finish_reason="stop", extra={"r": ["👍"]})
    m = store.history("s")[0].message
    assert m.content == "final" and m.finish_reason == "stop"
    assert m.to_dict(parse_json=True)["extra"] == {"k": 1, "r": ["👍"]}
    assert [h.message.content for h in store.search("final")] == ["final"]


@pytest.mark.parametrize("mode", ["delete", "archive", "compact"])
def test_rewrite_modes(store: tidelog.Store, mode: str) -> None:
    store.append("s", "user", "old walrus question")
    out = store.rewrite("s", mode, [{"session_id": "s", "role": "user", "content": "new summary"}])
    assert len(out) == 1 and out[0].num is not None
    assert [h.message.content for h in store.history("s")] == ["new summary"]
    everything = store.history("s", include_inactive=True, include_compacted=True)
    hidden = [h for h in everything if not h.active]
    if mode == "delete":
        assert hidden == []
        assert store.search("walrus", include_inactive=True) == []
    elif mode == "archive":
        assert [(h.message.content, h.compacted) for h in hidden] == [("old walrus question", False)]
        assert store.search("walrus") == []
        hit = store.search("walrus", include_inactive=True)[0]
        assert not hit.active and not hit.compacted
    else:
        assert [(h.message.content, h.compacted) for h in hidden] == [("old walrus question", True)]
        hit = store.search("walrus")[0]
        assert not hit.active and hit.compacted


def test_rewrite_refuses_bad_mode(store: tidelog.Store) -> None:
    with pytest.raises(tidelog.InvalidInputError):
        store.rewrite("s", "shred")  # type: ignore[arg-type]


def test_delete_sessions_with_children(store: tidelog.Store) -> None:
    store.upsert_session("p")
    store.upsert_session("c", parent_session_id="p")
    store.append("p", "user", "parent text")
    store.append("c", "user", "child text")
    assert sorted(store.delete_sessions(["p"], with_children=True)) == ["c", "p"]
    assert store.get_session("c") is None and store.history("p") == []
    assert store.search("text") == []


def test_counters_add_up(store: tidelog.Store) -> None:
    store.upsert_session("s")
    store.add_counters("s", input_tokens=10, output_tokens=3, estimated_cost_usd=0.5, api_call_count=1)
    store.add_counters("s", input_tokens=5, api_call_count=1)
    session = store.get_session("s")
    assert session is not None
    c = session.counters
    assert (c.input_tokens, c.output_tokens, c.api_call_count, c.estimated_cost_usd) == (15, 3, 2, 0.5)
    assert session.to_dict()["counters"]["input_tokens"] == 15


def test_titles_are_unique(store: tidelog.Store) -> None:
    store.upsert_session("a")
    store.upsert_session("b")
    store.set_title("a", "Boat")
    with pytest.raises(tidelog.TitleTakenError) as e:
        store.set_title("b", "Boat")
    assert isinstance(e.value, ValueError) and (e.value.title, e.value.other) == ("Boat", "a")
    store.set_title("a", None)
    store.set_title("b", "Boat")
    got = store.get_session("b")
    assert got is not None and got.title == "Boat"


def test_session_flags(store: tidelog.Store) -> None:
    store.upsert_session("s", model="m1", title="T")
    store.upsert_session("s", model="m2", user_id="u", fill_only=True)
    s = store.get_session("s")
    assert s is not None and (s.model, s.user_id) == ("m1", "u")
    store.end_session("s", "done")
    store.reopen_session("s")
    s = store.get_session("s")
    assert s is not None and s.ended_at is None and s.end_reason is None
    store.upsert_session("s", clear_title=True)
    s = store.get_session("s")
    assert s is not None and s.title is None


def test_meta_and_counts(store: tidelog.Store) -> None:
    assert store.get_meta("k") is None
    store.set_meta("k", "v")
    store.set_meta("j", "w")
    store.set_meta("j", None)
    assert store.get_meta("k") == "v" and store.all_meta() == {"k": "v"}
    store.append("a", "user", "x")
    store.append("a", "user", "y")
    store.append("b", "user", "z")
    assert store.message_counts() == {"a": 2, "b": 1}


def test_empty_query_is_its_own_error(store: tidelog.Store) -> None:
    with pytest.raises(tidelog.EmptyQueryError):
        store.search("   ")


def test_import_hermes(tmp_path: Path, store: tidelog.Store) -> None:
    src = tmp_path / "state.db"
    shutil.copy(FIXTURES / "state-v30.db", src)
    before = src.read_bytes()
    report = store.import_hermes(src)
    assert (report.sessions, report.messages, report.added_messages) == (24, 458, 458)
    assert report.schema_version == 30
    assert len(store.list_sessions()) == 24
    assert sum(store.message_counts().values()) == 458
    again = store.import_hermes(src)
    assert (again.added_messages, again.changed_sessions) == (0, 0)
    assert src.read_bytes() == before
    assert not (tmp_path / "state.db-wal").exists()


def test_import_hermes_refuses_other_files(tmp_path: Path, store: tidelog.Store) -> None:
    bad = tmp_path / "x.db"
    bad.write_text("not sqlite")
    with pytest.raises(tidelog.HermesImportError) as e:
        store.import_hermes(bad)
    assert e.value.path == str(bad)


def test_bench_append_times_rust_appends(tmp_path: Path) -> None:
    from tidelog._tidelog import _bench_append

    assert _bench_append(tmp_path / "b", 10, 50, 2) > 0
    with tidelog.Store(tmp_path / "b") as s:
        assert sum(s.message_counts().values()) == 10
    with pytest.raises(tidelog.InvalidInputError):
        _bench_append(tmp_path / "c", 1, 1, 0)
