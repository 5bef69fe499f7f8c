"""tidelog.hermes: the behaviour of Hermes Agent's SessionDB (hermes_state), written from its
documented semantics, over a tidelog store."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import tidelog
from tidelog.hermes import AsyncSessionDB, SessionDB, install, sanitize_fts5_query, store_path_for

FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "hermes"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[SessionDB]:
    d = SessionDB(tmp_path / "state.db")
    try:
        yield d
    finally:
        d.close()


# -- query sanitizing ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("hello world", "hello world"),
        ("chat-send", '"chat-send"'),
        ("P2.2 notes", '"P2.2" notes'),
        ("my-app.config.ts", '"my-app.config.ts"'),
        ("snake_case_name", '"snake_case_name"'),
        ("TODO: fix (now)", "TODO  fix  now"),  # replaced, not collapsed (FTS5 ignores it)
        ('"exact phrase" rest', '"exact phrase" rest'),
        ('"unbalanced quote', "unbalanced quote"),
        ("*prefix", "prefix"),
        ("deploy**", "deploy*"),
        ("AND foo", "foo"),
        ("foo OR", "foo"),
        ("NOT", ""),
        # Hermes 0.19.0 replaces only + { } ( ) : " ^ (the query then fails in FTS5: no results).
        ("a+b^c~d", "a b c~d"),
        ("100% sure", "100% sure"),
        ("你好%世界", "你好%世界"),
    ],
)
def test_sanitize(raw: str, clean: str) -> None:
    assert sanitize_fts5_query(raw) == clean


def test_sanitize_caps_length() -> None:
    assert len(sanitize_fts5_query("x" * 10_000)) == 2048


# -- sessions ------------------------------------------------------------------------------


def test_create_session_never_overwrites(db: SessionDB) -> None:
    assert db.create_session("s1", "telegram", model="m1", system_prompt="p1", user_id="u1") == "s1"
    db.create_session("s1", "cli", model="m2", system_prompt="p2", user_id="u2", cwd="/w")
    s = db.get_session("s1")
    assert s is not None
    assert (s["source"], s["model"], s["system_prompt"], s["user_id"], s["cwd"]) == ("telegram", "m1", "p1", "u1", "/w")
    assert s["message_count"] == 0 and s["ended_at"] is None and s["input_tokens"] == 0
    db.update_system_prompt("s1", "p3")
    assert db.get_session("s1")["system_prompt"] == "p3"  # type: ignore[index]
    assert db.get_session("nope") is None


def test_child_does_not_inherit_workspace(db: SessionDB) -> None:
    # Hermes 0.19.0's create_session takes no git fields and copies nothing from the parent.
    with pytest.raises(TypeError):
        db.create_session("x", "cli", git_repo_root="/repo")
    db.create_session("p", "cli", cwd="/repo", profile_name="work")
    db.create_session("c", "cli", parent_session_id="p")
    c = db.get_session("c")
    assert c is not None and (c["cwd"], c["profile_name"], c["parent_session_id"]) == (None, None, "p")


def test_end_and_reopen(db: SessionDB) -> None:
    db.create_session("s", "cli")
    db.end_session("s", "user_exit")
    s = db.get_session("s")
    assert s is not None and s["end_reason"] == "user_exit" and s["ended_at"] is not None
    db.reopen_session("s")
    s = db.get_session("s")
    assert s is not None and s["end_reason"] is None and s["ended_at"] is None


def test_titles(db: SessionDB) -> None:
    db.create_session("a", "cli")
    db.create_session("b", "cli")
    assert db.set_session_title("a", "  My \u200bsession\n ")
    assert db.get_session_title("a") == "My session"
    with pytest.raises(ValueError, match="already in use by session a"):
        db.set_session_title("b", "My session")
    with pytest.raises(ValueError, match="too long"):
        db.set_session_title("b", "x" * 101)
    assert not db.set_session_title("missing", "Other")
    assert db.get_next_title_in_lineage("My session") == "My session #2"
    db.set_session_title("b", "My session #2")
    assert db.get_next_title_in_lineage("My session") == "My session #3"
    assert db.get_next_title_in_lineage("My session #2") == "My session #3"
    assert db.get_next_title_in_lineage("Fresh") == "Fresh"
    assert db.resolve_session_by_title("My session") == "b"  # the latest continuation
    assert db.resolve_session_by_title("Nothing") is None
    got = db.get_session_by_title("My session")
    assert got is not None and got["id"] == "a"
    db.set_session_title("a", "")  # empty clears
    assert db.get_session_title("a") is None


def test_token_counts(db: SessionDB) -> None:
    db.create_session("s", "cli")
    db.update_token_counts("s", input_tokens=100, output_tokens=20, model="gpt", estimated_cost_usd=0.01)
    db.update_token_counts("s", input_tokens=50, cache_read_tokens=7, api_call_count=1, billing_provider="openrouter")
    s = db.get_session("s")
    assert s is not None
    assert (s["input_tokens"], s["output_tokens"], s["cache_read_tokens"], s["api_call_count"]) == (150, 20, 7, 1)
    assert s["estimated_cost_usd"] == pytest.approx(0.01)
    assert (s["model"], s["billing_provider"]) == ("gpt", "openrouter")
    db.update_token_counts("s", input_tokens=1000, absolute=True)
    s = db.get_session("s")
    assert s is not None and s["input_tokens"] == 1000 and s["output_tokens"] == 0


def test_counts_meta_and_listing(db: SessionDB) -> None:
    db.create_session("a", "cli")
    db.create_session("b", "telegram")
    db.append_message("a", "user", "first question about the boat that is rather long, longer than sixty chars")
    db.append_message("a", "assistant", "answer")
    db.append_message("b", "user", "hi")
    assert (db.session_count(), db.session_count(source="cli")) == (2, 1)
    assert (db.message_count(), db.message_count("a"), db.message_count("zzz")) == (3, 2, 0)
    rows = db.list_sessions_rich()
    assert [r["id"] for r in rows] == ["b", "a"]
    assert rows[1]["message_count"] == 2 and rows[1]["preview"].endswith("...")
    assert len(rows[1]["preview"]) == 63
    assert [r["id"] for r in db.list_sessions_rich(source="cli")] == ["a"]
    assert [r["id"] for r in db.list_sessions_rich(exclude_sources=["cli"])] == ["b"]
    assert [r["id"] for r in db.list_sessions_rich(limit=1, offset=1)] == ["a"]
    assert db.get_meta("k") is None
    db.set_meta("k", "v")
    assert db.get_meta("k") == "v"


# -- messages ------------------------------------------------------------------------------


def test_row_ids_increase_in_append_order(db: SessionDB) -> None:
    db.create_session("s", "cli")
    ids = [db.append_message("s", "user", f"m{i}", timestamp=1000.0 - i) for i in range(5)]
    assert ids == sorted(ids) and len(set(ids)) == 5
    batch = db.append_messages_batch("s", [{"role": "user", "content": "b1"}, {"role": "assistant", "content": "b2"}])
    assert batch[0] > ids[-1] and batch[1] > batch[0]
    rows = db.get_messages("s")
    assert [r["id"] for r in rows] == ids + batch  # by id, not by timestamp
    assert [r["content"] for r in db.get_messages("s", limit=2)] == ["m0", "m1"]
    assert [r["content"] for r in db.get_messages("s", limit=2, offset=1)] == ["m1", "m2"]
    assert [r["content"] for r in db.get_messages("s", offset=5)] == ["b1", "b2"]


def test_message_fields_and_conversation(db: SessionDB) -> None:
    db.create_session("s", "telegram")
    calls = [{"id": "c1", "type": "function", "function": {"name": "search", "arguments": "{}"}}]
    db.append_message("s", "user", "find it", platform_message_id="tg-1")
    db.append_message("s", "assistant", None, tool_calls=calls, reasoning="think", finish_reason="tool_calls")
    db.append_message("s", "tool", "result", tool_call_id="c1", tool_name="search")
    db.append_message("s", "user", [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "x"}}])
    db.append_message("s", "assistant", "done", api_content="done (api)")
    rows = db.get_messages("s")
    assert rows[1]["tool_calls"] == calls and rows[1]["content"] is None
    assert rows[3]["content"][0] == {"type": "text", "text": "look"}
    assert rows[0]["platform_message_id"] == "tg-1" and rows[0]["active"] == 1
    conv = db.get_messages_as_conversation("s")
    ts = [r["timestamp"] for r in rows]
    assert conv[0] == {"role": "user", "content": "find it", "timestamp": ts[0], "message_id": "tg-1"}
    assert conv[1]["tool_calls"] == calls and conv[1]["reasoning"] == "think"
    assert conv[1]["finish_reason"] == "tool_calls"
    tool = {"role": "tool", "content": "result", "timestamp": ts[2], "tool_call_id": "c1", "tool_name": "search"}
    assert conv[2] == tool
    assert conv[4]["api_content"] == "done (api)"
    assert db.has_platform_message_id("s", "tg-1") and not db.has_platform_message_id("s", "tg-2")
    assert db.get_session("s")["tool_call_count"] == 1  # type: ignore[index]


def test_conversation_with_ancestors(db: SessionDB) -> None:
    db.create_session("p", "cli")
    db.append_message("p", "user", "old")
    db.end_session("p", "compression")
    db.create_session("c", "cli", parent_session_id="p")
    db.append_message("c", "user", "new")
    assert [m["content"] for m in db.get_messages_as_conversation("c", include_ancestors=True)] == ["old", "new"]
    # The compression root is listed once, projected to its live continuation (Hermes' default).
    assert [(r["id"], r["_lineage_root_id"]) for r in db.list_sessions_rich()] == [("c", "p")]
    assert [r["id"] for r in db.list_sessions_rich(project_compression_tips=False)] == ["p"]
    assert {r["id"] for r in db.list_sessions_rich(include_children=True)} == {"p", "c"}


def test_replace_archive_clear_delete(db: SessionDB) -> None:
    db.create_session("s", "cli")
    db.append_message("s", "user", "the pelican question")
    db.append_message("s", "assistant", "the pelican answer")
    assert db.replace_messages("s", [{"role": "user", "content": "rewritten albatross"}]) is None
    assert [r["content"] for r in db.get_messages("s")] == ["rewritten albatross"]
    assert db.search_messages("pelican", include_inactive=True) == []  # deleted
    db.append_message("s", "assistant", "albatross reply")
    assert db.archive_and_compact("s", [{"role": "user", "content": "retry"}]) == 1
    assert [r["content"] for r in db.get_messages("s")] == ["retry"]
    # Compacted rows stay searchable (Hermes #38763).
    assert len(db.search_messages("albatross")) == 2
    inactive = db.get_messages("s", include_inactive=True)
    assert [(r["content"], r["active"], r["compacted"]) for r in inactive] == [
        ("rewritten albatross", 0, 1),
        ("albatross reply", 0, 1),
        ("retry", 1, 0),
    ]
    db.clear_messages("s")
    assert db.get_messages("s") == [] and db.get_session("s") is not None
    assert db.delete_session("s") and db.get_session("s") is None and not db.delete_session("s")


def test_archive_and_compact(db: SessionDB) -> None:
    db.create_session("s", "cli", model_config={"temperature": 1})
    db.append_message("s", "user", "long discussion of quokkas")
    db.append_message("s", "assistant", "quokkas are marsupials")
    db.append_message("s", "user", "arrived during the summary")
    summary = [{"role": "user", "content": "[summary] we talked about quokkas"}, {"role": "user", "content": "next"}]
    assert db.archive_and_compact("s", summary) == 2
    live = db.get_messages("s")
    assert [r["content"] for r in live] == ["[summary] we talked about quokkas", "next"]
    compacted = [r for r in db.get_messages("s", include_inactive=True) if r["compacted"]]
    assert len(compacted) == 3
    # Compacted messages stay searchable.
    assert {h["role"] for h in db.search_messages("marsupials")} == {"assistant"}
    assert db.get_session("s")["message_count"] == 2  # type: ignore[index]


def test_export(db: SessionDB) -> None:
    db.create_session("s", "cli")
    db.append_message("s", "user", "x")
    e = db.export_session("s")
    assert e is not None and e["id"] == "s" and [m["content"] for m in e["messages"]] == ["x"]
    assert db.export_session("missing") is None
    assert [x["id"] for x in db.export_all()] == ["s"]


# -- search --------------------------------------------------------------------------------


@pytest.fixture
def corpus(db: SessionDB) -> SessionDB:
    db.create_session("t", "telegram", model="m-t")
    db.create_session("c", "cli", model="m-c")
    db.append_message("t", "user", "Run chat-send with the my-app.config.ts file", timestamp=100.0)
    db.append_message("t", "assistant", "The deployment finished, concatenate the logs", timestamp=110.0)
    db.append_message("t", "user", "我们明天去北京开会", timestamp=120.0)
    db.append_message("c", "user", "deploy the cat service to staging", timestamp=130.0)
    db.append_message("c", "tool", "cat output: ok", tool_name="shell", timestamp=140.0)
    db.append_message("c", "assistant", "go is fine, and so is Go", timestamp=150.0)
    return db


def test_search_snippets_and_fields(corpus: SessionDB) -> None:
    hits = corpus.search_messages("chat-send")
    assert len(hits) == 1
    h = hits[0]
    assert ">>>chat-send<<<" in h["snippet"]
    assert (h["session_id"], h["role"], h["source"], h["model"], h["tool_name"]) == ("t", "user", "telegram", "m-t", None)
    assert h["timestamp"] == 100.0 and h["session_started"] is not None
    assert [c["role"] for c in h["context"]] == ["user", "assistant"]


def test_search_whole_words_then_substrings(corpus: SessionDB) -> None:
    # "cat" matches the word cat, not "concatenate" (Hermes' unicode61 tokens).
    assert {h["session_id"] for h in corpus.search_messages("cat")} == {"c"}
    # No whole word "concat": Hermes 0.19.0 finds nothing (its trigram table serves CJK only).
    assert corpus.search_messages("concat") == []
    # prefix*: start of a word.
    assert [h["id"] for h in corpus.search_messages("deploy*", sort="oldest")] == [
        h["id"] for h in corpus.search_messages("deployment OR deploy", sort="oldest")
    ]


def test_search_operators(corpus: SessionDB) -> None:
    assert [h["session_id"] for h in corpus.search_messages('"the cat service"')] == ["c"]
    assert corpus.search_messages('"service the cat"') == []
    ors = corpus.search_messages("staging OR deployment", sort="newest")
    assert [h["timestamp"] for h in ors] == [130.0, 110.0]
    nots = corpus.search_messages("cat NOT staging")
    assert [h["role"] for h in nots] == ["tool"]
    assert corpus.search_messages("") == [] and corpus.search_messages("AND") == []
    assert corpus.search_messages("TODO: (") == []


def test_search_filters_and_offset(corpus: SessionDB) -> None:
    assert [h["role"] for h in corpus.search_messages("cat", role_filter=["tool"])] == ["tool"]
    assert {h["source"] for h in corpus.search_messages("the", source_filter=["cli"])} == {"cli"}
    assert {h["source"] for h in corpus.search_messages("the", exclude_sources=["cli"])} == {"telegram"}
    newest = corpus.search_messages("the", sort="newest")
    assert [h["timestamp"] for h in newest] == sorted((h["timestamp"] for h in newest), reverse=True)
    assert corpus.search_messages("the", sort="newest", limit=1, offset=1)[0]["id"] == newest[1]["id"]


def test_search_short_and_cjk(corpus: SessionDB) -> None:
    assert [h["role"] for h in corpus.search_messages("go")] == ["assistant"]  # 2 characters
    # Two CJK characters: Hermes' LIKE scan, whose snippet is the content unmarked.
    cjk = corpus.search_messages("北京")
    assert len(cjk) == 1 and cjk[0]["snippet"] == "我们明天去北京开会"
    assert len(corpus.search_messages("明天 北京")) == 1
    assert len(corpus.search_messages("北")) == 1


def test_search_sees_unindexed_and_indexed(corpus: SessionDB) -> None:
    before = corpus.search_messages("staging")
    assert corpus.store.wait_indexed(10)
    assert corpus.search_messages("staging") == before


# -- import and install --------------------------------------------------------------------


def test_first_open_imports_hermes_db(tmp_path: Path) -> None:
    src = tmp_path / "state.db"
    shutil.copy(FIXTURES / "state-v30.db", src)
    before = src.read_bytes()
    with SessionDB(src) as db:
        assert db.import_report is not None and db.import_report["messages"] == 458
        assert db.session_count() == 24 and db.message_count() == 458
        assert db.get_session("20260501_060937_950afd")["parent_session_id"] == "20260501_030107_08fb17"  # type: ignore[index]
        sid = db.list_sessions_rich(limit=1)[0]["id"]
        rows = db.get_messages(sid)
        assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
        new = db.append_message(sid, "user", "after the import")
        assert new > max(r["id"] for r in rows)
    assert store_path_for(src).is_dir()
    # Reopening does not import again; the Hermes file is unchanged.
    with SessionDB(src) as db:
        assert db.message_count() == 459
    assert src.read_bytes() == before
    assert not Path(str(src) + "-wal").exists()


def test_read_only_open(tmp_path: Path) -> None:
    with SessionDB(tmp_path / "state.db") as db:
        db.create_session("s", "cli")
        db.append_message("s", "user", "x")
    with SessionDB(tmp_path / "state.db", read_only=True) as ro:
        assert ro.message_count() == 1
        with pytest.raises(tidelog.ReadOnlyError):
            ro.append_message("s", "user", "y")


def test_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "hermes_state", raising=False)
    module = install()
    try:
        import hermes_state  # type: ignore[import-not-found]

        assert hermes_state is module
        assert hermes_state.SessionDB is SessionDB and hermes_state.AsyncSessionDB is AsyncSessionDB
        with hermes_state.SessionDB(db_path=tmp_path / "state.db") as db:
            db.create_session("s", "telegram")
            assert db.append_message("s", "user", "through the gateway") > 0
    finally:
        sys.modules.pop("hermes_state", None)


def test_async_session_db(tmp_path: Path) -> None:
    async def main() -> None:
        db = AsyncSessionDB(SessionDB(tmp_path / "state.db"))
        await db.create_session("s", "api_server")
        ids = await asyncio.gather(*(db.append_message("s", "user", f"hello {i}") for i in range(20)))
        assert len(set(ids)) == 20
        rows = await db.get_messages("s")
        assert sorted(ids) == [r["id"] for r in rows]
        hits = await db.search_messages("hello")
        assert len(hits) == 20
        # The loop keeps running while appends wait on the disk.
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            end = time.monotonic() + 0.2
            while time.monotonic() < end:
                ticks += 1
                await asyncio.sleep(0.001)

        await asyncio.gather(ticker(), *(db.append_message("s", "user", "more") for _ in range(20)))
        assert ticks > 20
        assert db.db_path == tmp_path / "state.db"
        await db.close()

    asyncio.run(main())


def test_messages_carry_the_session_source(db: SessionDB) -> None:
    with pytest.raises(sqlite3.IntegrityError):  # Hermes' foreign key: no session, no message
        db.append_message("x", "user", "before the session row")
    db.create_session("x", "telegram")
    db.append_message("x", "user", "zebra crossing")
    assert [h.message.source for h in db.store.history("x")] == ["telegram"]
    # Unindexed or not, a source filter sees it.
    assert [h["source"] for h in db.search_messages("zebra", source_filter=["telegram"])] == ["telegram"]


def _open_and_count(src: str, barrier_dir: str, n: int) -> int:
    # Every process waits until all have started, so the first opens really race.
    import os

    Path(barrier_dir, str(os.getpid())).touch()
    deadline = time.time() + 30
    while len(list(Path(barrier_dir).iterdir())) < n and time.time() < deadline:
        time.sleep(0.001)
    with SessionDB(src) as db:
        return db.message_count()


def test_processes_opening_at_once_import_once(tmp_path: Path) -> None:
    import multiprocessing

    src = tmp_path / "state.db"
    shutil.copy(FIXTURES / "state-v30.db", src)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    n = 4
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(n) as pool:
        counts = pool.starmap(_open_and_count, [(str(src), str(barrier), n)] * n)
    # Every process counts the import exactly once, whichever of them did it.
    assert counts == [458] * n
    with SessionDB(src) as db:
        assert db.message_count() == 458
        assert db.store.wait_indexed(10)
        assert db.message_count() == 458


def test_exclusive_is_reentrant_and_serializes_threads(tmp_path: Path) -> None:
    import threading

    with tidelog.Store(tmp_path / "s") as store:
        inside: list[int] = []
        overlaps: list[int] = []
        with store.exclusive(), store.exclusive():
            store.set_meta("k", "1")

        def worker(i: int) -> None:
            with store.exclusive():
                if inside:
                    overlaps.append(i)
                inside.append(i)
                time.sleep(0.01)
                inside.remove(i)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not overlaps
        assert store.get_meta("k") == "1"
