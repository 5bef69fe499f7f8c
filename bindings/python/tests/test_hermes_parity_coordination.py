"""Differential tests of the coordination methods (``tidelog/hermes/_coordination.py``): hand-offs,
compression locks, failure cooldowns, fallback streaks, billing routes, auxiliary usage and cron
job runs, each call made on Hermes' own ``SessionDB`` and on ours and the results compared.

Session rows are compared on the columns these methods write plus the core ones (``ROW_KEYS``,
absent keys read as ``None``): which of Hermes' other columns ``get_session`` lists is the core's
business and not under test here (nor ``estimated_cost_usd``, which the core's ``update_token_counts``
leaves ``None`` where Hermes writes 0.0).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hermes_diff import Pair

ROW_KEYS = (
    "id",
    "source",
    "model",
    "title",
    "parent_session_id",
    "started_at",
    "ended_at",
    "end_reason",
    "message_count",
    "input_tokens",
    "output_tokens",
    "api_call_count",
    "system_prompt",
    "billing_provider",
    "billing_base_url",
    "billing_mode",
    "handoff_state",
    "handoff_platform",
    "handoff_error",
    "compression_failure_cooldown_until",
    "compression_failure_error",
)
RUN_KEYS = (*ROW_KEYS, "preview", "last_active")


def project(keys: tuple[str, ...]) -> Callable[[Any], Any]:
    """A transform keeping ``keys`` of a row, or of each row of a list."""

    def one(row: Any) -> Any:
        return None if row is None else {k: row.get(k) for k in keys}

    def apply(value: Any) -> Any:
        return [one(r) for r in value] if isinstance(value, list) else one(value)

    return apply


def cooldown_shape(value: Any) -> Any:
    """``remaining_seconds`` depends on the instant of the call: compared as "positive and at most
    the window the test gave" (200 s)."""
    if value is None:
        return None
    remaining = value.pop("remaining_seconds")
    value["remaining_ok"] = 0 < remaining <= 200
    return value


# -- hand-offs -----------------------------------------------------------------------------


def test_handoff_lifecycle(pair: Pair) -> None:
    pair.both("create_session", "s1", "cli")
    pair.both("create_session", "s2", "telegram")
    rows = project(ROW_KEYS)
    pair.same("get_handoff_state", "s1")
    pair.same("get_handoff_state", "missing")
    pair.same("request_handoff", "missing", "telegram")
    pair.same("get_session", "missing")
    pair.same("claim_handoff", "s1")
    pair.same("request_handoff", "s1", "telegram")
    pair.same("request_handoff", "s1", "discord")  # already pending
    pair.same("request_handoff", "s2", None)
    pair.same("list_pending_handoffs", transform=rows)
    pair.same("claim_handoff", "s1")
    pair.same("claim_handoff", "s1")  # already running
    pair.same("request_handoff", "s1", "discord")  # running: refused
    pair.same("list_pending_handoffs", transform=rows)
    pair.same("fail_handoff", "s1", "x" * 700)
    pair.same("get_handoff_state", "s1")
    pair.same("get_session", "s1", transform=rows)
    pair.same("request_handoff", "s1", "discord")  # failed: may restart, error cleared
    pair.same("get_handoff_state", "s1")
    pair.same("complete_handoff", "s2")
    pair.same("get_handoff_state", "s2")
    pair.same("fail_handoff", "s2", None)
    pair.same("fail_handoff", "missing", 42)
    pair.same("complete_handoff", "missing")
    pair.same("fail_handoff", "missing", "boom")
    pair.same("get_session", "missing")
    pair.same("list_pending_handoffs", transform=rows)


# -- compression locks ---------------------------------------------------------------------


def test_compression_locks(pair: Pair) -> None:
    pair.same("get_compression_lock_holder", "s1")
    pair.same("try_acquire_compression_lock", "", "a")
    pair.same("try_acquire_compression_lock", "s1", None)
    pair.same("try_acquire_compression_lock", "s1", "a")
    pair.same("try_acquire_compression_lock", "s1", "a")  # the holder again
    pair.same("try_acquire_compression_lock", "s1", "b")
    pair.same("refresh_compression_lock", "s1", "b")
    pair.same("refresh_compression_lock", "s1", "a", 60.0)
    pair.same("refresh_compression_lock", "s1", "")
    pair.same("get_compression_lock_holder", "s1")
    pair.same("release_compression_lock", "s1", "b")
    pair.same("get_compression_lock_holder", "s1")
    pair.same("release_compression_lock", "s1", "a")
    pair.same("get_compression_lock_holder", "s1")
    # An expired lock: invisible, not refreshable, reclaimed by the next acquirer.
    pair.same("try_acquire_compression_lock", "s2", "a", -1.0)
    pair.same("get_compression_lock_holder", "s2")
    pair.same("refresh_compression_lock", "s2", "a")
    pair.same("try_acquire_compression_lock", "s2", "b")
    pair.same("get_compression_lock_holder", "s2")
    pair.same("release_compression_lock", "s2", "a")  # not the holder
    pair.same("get_compression_lock_holder", "s2")
    pair.same("try_acquire_compression_lock", "s3", "a", None)  # TypeError in both
    pair.same("release_compression_lock", "", "a")
    pair.same("get_compression_lock_holder", "")


def test_compression_lock_expires_by_wall_clock(pair: Pair) -> None:
    pair.same("try_acquire_compression_lock", "s1", "a", 0.3)
    pair.same("get_compression_lock_holder", "s1")
    time.sleep(0.5)
    pair.same("get_compression_lock_holder", "s1")
    pair.same("refresh_compression_lock", "s1", "a")
    pair.same("try_acquire_compression_lock", "s1", "b")
    pair.same("get_compression_lock_holder", "s1")


# -- cooldowns and fallback streaks --------------------------------------------------------


def test_cooldowns_and_streaks(pair: Pair) -> None:
    pair.both("create_session", "s1", "cli")
    now = time.time()
    pair.same("get_compression_failure_cooldown", "s1")
    pair.same("record_compression_failure_cooldown", "missing", now + 100)
    pair.same("get_compression_failure_cooldown", "missing")
    pair.same("get_session", "missing")
    pair.same("record_compression_failure_cooldown", "s1", now + 100, "429 from provider")
    pair.same("get_compression_failure_cooldown", "s1", transform=cooldown_shape)
    pair.same("get_session", "s1", transform=project(ROW_KEYS))
    pair.same("record_compression_failure_cooldown", "s1", int(now) + 100)
    pair.same("get_compression_failure_cooldown", "s1", transform=cooldown_shape)
    pair.same("record_compression_failure_cooldown", "s1", f" {now + 100} ", "numeric text is a REAL")
    pair.same("get_session", "s1", transform=project(ROW_KEYS))
    pair.same("get_compression_failure_cooldown", "s1", transform=cooldown_shape)
    pair.same("record_compression_failure_cooldown", "s1", now - 1, "old")
    pair.same("get_compression_failure_cooldown", "s1")
    pair.same("get_session", "s1", transform=project(ROW_KEYS))
    pair.same("record_compression_failure_cooldown", "s1", now + 100, "again")
    pair.same("clear_compression_failure_cooldown", "s1")
    pair.same("clear_compression_failure_cooldown", "missing")
    pair.same("get_compression_failure_cooldown", "s1")
    pair.same("get_session", "s1", transform=project(ROW_KEYS))
    for call in (
        ("get_compression_fallback_streak", "s1"),
        ("set_compression_fallback_streak", "s1", 3),
        ("get_compression_fallback_streak", "s1"),
        ("set_compression_fallback_streak", "s1", -2),
        ("get_compression_fallback_streak", "s1"),
        ("set_compression_fallback_streak", "s1", "7"),
        ("get_compression_fallback_streak", "s1"),
        ("set_compression_fallback_streak", "s1", "x"),
        ("set_compression_fallback_streak", "s1", None),
        ("set_compression_fallback_streak", "", None),
        ("set_compression_fallback_streak", "missing", 4),
        ("get_compression_fallback_streak", "missing"),
        ("get_compression_fallback_streak", ""),
    ):
        pair.same(*call)
    pair.same("get_session", "missing")


def test_cooldown_ends_by_wall_clock(pair: Pair) -> None:
    pair.both("create_session", "s1", "cli")
    pair.same("record_compression_failure_cooldown", "s1", time.time() + 0.3, "e")
    pair.same("get_compression_failure_cooldown", "s1", transform=cooldown_shape)
    time.sleep(0.5)
    pair.same("get_compression_failure_cooldown", "s1")


def test_loose_argument_types(pair: Pair) -> None:
    """Hermes binds whatever it is given: ``None`` ids match no row, numbers match (and are
    stored as) their text in its TEXT columns."""
    pair.both("create_session", "5", "cli")
    until = time.time() + 100
    for name, *args in (
        ("request_handoff", None, "t"),
        ("get_handoff_state", None),
        ("claim_handoff", None),
        ("complete_handoff", None),
        ("fail_handoff", None, "e"),
        ("request_handoff", 5, 7),
        ("get_handoff_state", 5),
        ("claim_handoff", 5),
        ("get_handoff_state", "5"),
        ("try_acquire_compression_lock", None, "h"),
        ("try_acquire_compression_lock", 5, "h"),
        ("get_compression_lock_holder", "5"),
        ("refresh_compression_lock", 5, "h"),
        ("release_compression_lock", 5, "h"),
        ("get_compression_lock_holder", 5),
        ("try_acquire_compression_lock", "x", 7),  # stored as "7", which is not 7: False
        ("get_compression_lock_holder", "x"),
        ("refresh_compression_lock", "x", 7),
        ("try_acquire_compression_lock", "y", 2.5),
        ("get_compression_lock_holder", "y"),
        ("release_compression_lock", "x", 7.0),
        ("get_compression_lock_holder", "x"),
        ("record_compression_failure_cooldown", None, until),
        ("record_compression_failure_cooldown", 5, until, 404),
        ("get_compression_fallback_streak", None),
        ("set_compression_fallback_streak", 5, 2.9),
        ("get_compression_fallback_streak", "5"),
        ("record_auxiliary_usage", None, "t"),
        ("list_cron_job_runs", 5),
    ):
        pair.same(name, *args)
    pair.same("get_compression_failure_cooldown", 5, transform=cooldown_shape)
    pair.same("update_session_billing_route", 5, provider=1, base_url=None, billing_mode=2)
    pair.same("get_session", "5", transform=project(ROW_KEYS))


# -- random sequences ----------------------------------------------------------------------

_SIDS = st.sampled_from(["a", "b", "missing", ""])
_HOLDERS = st.sampled_from(["h1", "h2", ""])
_OPS = st.one_of(
    st.tuples(st.just("request_handoff"), _SIDS, st.sampled_from(["telegram", "discord", None])),
    st.tuples(st.just("claim_handoff"), _SIDS),
    st.tuples(st.just("complete_handoff"), _SIDS),
    st.tuples(st.just("fail_handoff"), _SIDS, st.text(max_size=8)),
    st.tuples(st.just("get_handoff_state"), _SIDS),
    st.tuples(st.just("try_acquire_compression_lock"), _SIDS, _HOLDERS, st.sampled_from([300.0, -1.0])),
    st.tuples(st.just("refresh_compression_lock"), _SIDS, _HOLDERS, st.sampled_from([300.0, -1.0])),
    st.tuples(st.just("release_compression_lock"), _SIDS, _HOLDERS),
    st.tuples(st.just("get_compression_lock_holder"), _SIDS),
    st.tuples(
        st.just("record_compression_failure_cooldown"),
        _SIDS,
        st.sampled_from([100, -100]),
        st.none() | st.text(max_size=5),
    ),
    st.tuples(st.just("get_compression_failure_cooldown"), _SIDS),
    st.tuples(st.just("clear_compression_failure_cooldown"), _SIDS),
    st.tuples(st.just("set_compression_fallback_streak"), _SIDS, st.integers(-3, 5)),
    st.tuples(st.just("get_compression_fallback_streak"), _SIDS),
    st.tuples(
        st.just("update_session_billing_route"), _SIDS, st.sampled_from(["p", None]), st.sampled_from(["m", None])
    ),
)
_round = itertools.count()


@pytest.fixture(scope="module")
def shared_pair(tmp_path_factory: pytest.TempPathFactory) -> Any:
    p = Pair(tmp_path_factory.mktemp("coordination"))
    try:
        yield p
    finally:
        p.close()


@settings(derandomize=True, max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(_OPS, max_size=25))
def test_random_sequences(shared_pair: Pair, ops: list[tuple[Any, ...]]) -> None:
    # One pair for every example; each example has session ids of its own.
    pair = shared_pair
    n = next(_round)

    def sid(s: str) -> str:
        return s and f"r{n}-{s}"

    for s in ("a", "b"):
        pair.both("create_session", sid(s), "cli")
    for name, s, *rest in ops:
        if name == "record_compression_failure_cooldown":
            rest[0] = time.time() + rest[0]
        transform = cooldown_shape if name == "get_compression_failure_cooldown" else None
        if name == "update_session_billing_route":
            provider, mode = rest
            pair.same(name, sid(s), provider=provider, base_url="u", billing_mode=mode)
        else:
            pair.same(name, sid(s), *rest, transform=transform)
    mine = project(ROW_KEYS)
    for s in ("a", "b", "missing"):
        pair.same("get_session", sid(s), transform=mine)
        pair.same("get_compression_fallback_streak", sid(s))
    pair.same("list_pending_handoffs", transform=lambda rows: [r for r in mine(rows) if r["id"].startswith(f"r{n}-")])


# -- atomicity across openers --------------------------------------------------------------


def _race(calls: list[Callable[[], bool]]) -> list[bool]:
    """Runs ``calls`` on threads released together; their results."""
    barrier = threading.Barrier(len(calls))
    results: list[bool] = [False] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_lock_and_claim_races_across_openers(tmp_path: Path) -> None:
    from tidelog.hermes import SessionDB

    path = tmp_path / "state.db"
    first, second = SessionDB(path), SessionDB(path)
    try:
        dbs = [first, second, first, second]
        for round_ in range(15):
            lock = f"lock{round_}"
            won = _race([lambda db=db, i=i: db.try_acquire_compression_lock(lock, f"h{i}") for i, db in enumerate(dbs)])
            assert won.count(True) == 1, won
            winner = f"h{won.index(True)}"
            assert first.get_compression_lock_holder(lock) == second.get_compression_lock_holder(lock) == winner

            sid = f"s{round_}"
            first.create_session(sid, "cli")
            assert second.request_handoff(sid, "telegram")
            claimed = _race([lambda db=db: db.claim_handoff(sid) for db in dbs])
            assert claimed.count(True) == 1, claimed
            assert first.get_handoff_state(sid) == {"state": "running", "platform": "telegram", "error": None}
    finally:
        first.close()
        second.close()


# -- billing routes and auxiliary usage ----------------------------------------------------


def test_billing_route(pair: Pair) -> None:
    rows = project(ROW_KEYS)
    pair.both("create_session", "s1", "cli", model="m", system_prompt="Model: m / Provider: p")
    pair.both("update_token_counts", "s1", input_tokens=5, billing_provider="p", billing_mode="api")
    pair.same("get_session", "s1", transform=rows)
    pair.same("update_session_billing_route", "s1", provider="q", base_url="https://q")
    pair.same("get_session", "s1", transform=rows)
    pair.same("update_session_billing_route", "s1", provider=None, base_url="", billing_mode="subscription")
    pair.same("get_session", "s1", transform=rows)
    pair.same("update_session_billing_route", "missing", provider="q", base_url="u")
    pair.same("get_session", "missing")
    pair.same("update_session_billing_route", "s1", "q", "u")  # keyword-only: TypeError


def _usage_rows_real(pair: Pair) -> list[dict[str, Any]]:
    cur = pair.real._conn.execute("SELECT * FROM session_model_usage")
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def _comparable_usage(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The auxiliary rows (task not empty), without their times, in key order. The main loop's
    rows (task '') come from ``update_token_counts``, the core's, which does not write them yet."""
    out = []
    for r in rows:
        if not r["task"]:
            continue
        r = dict(r)
        assert r.pop("first_seen") <= r.pop("last_seen")
        out.append(r)
    key = ("session_id", "model", "billing_provider", "billing_base_url", "billing_mode", "task")
    return sorted(out, key=lambda r: tuple(r[k] for k in key))


def test_auxiliary_usage(pair: Pair) -> None:
    pair.both("create_session", "s1", "cli", model="main")
    pair.both("update_token_counts", "s1", input_tokens=3, model="main", billing_provider="anthropic")
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
        (("s1", "vision"), {"model": "gemini", "billing_provider": "google", "input_tokens": 10, "output_tokens": 2}),
        (("s1", "vision"), {"model": "gemini", "billing_provider": "google", "estimated_cost_usd": 0.3}),
        (("s1", "compression"), {"cache_read_tokens": 7, "reasoning_tokens": 1, "cache_write_tokens": 2}),
        (("s1", "compression"), {"input_tokens": None, "estimated_cost_usd": 0.5}),
        (("new", "title_generation"), {"model": "small", "billing_base_url": "https://x", "output_tokens": 4}),
        (("s1", ""), {"input_tokens": 99}),
        (("", "vision"), {"input_tokens": 99}),
    ]
    for args, kwargs in calls:
        pair.same("record_auxiliary_usage", *args, **kwargs)
    pair.same("record_auxiliary_usage", "s1", "vision", "gemini")  # keyword-only: TypeError
    assert _comparable_usage(_usage_rows_real(pair)) == _comparable_usage(pair.ours._rows.scan("session_model_usage"))
    for sid in ("s1", "new", ""):
        pair.same("get_session", sid, transform=project(ROW_KEYS))


# -- cron job runs -------------------------------------------------------------------------


def test_cron_job_runs(pair: Pair) -> None:
    runs = project(RUN_KEYS)
    sessions = [
        ("cron_job1_001", "cron"),
        ("cron_job1_002", "cron"),
        ("cron_job10_001", "cron"),
        ("cron_job1_003", "cli"),
        ("cron_job1", "cron"),
        ("other", "cron"),
        ("cron_job1_004", "cron"),
        ("cron_job1_005", "cron"),
    ]
    for sid, source in sessions:
        pair.both("create_session", sid, source)
    pair.both("append_message", "cron_job1_001", "assistant", "no user message first")
    pair.both("append_message", "cron_job1_001", "user", "  line one\nline two\r\n" + "y" * 80)
    pair.both("append_message", "cron_job1_001", "user", "second user message")
    pair.both("append_message", "cron_job1_002", "user", "z" * 61)
    pair.both("append_message", "cron_job1_004", "user", "short run prompt")
    pair.both("append_message", "cron_job1_005", "user", "   ")
    pair.both("append_message", "cron_job1_005", "user", "after a blank one")
    for job, limit, offset in (
        ("job1", 20, 0),
        ("job1", 2, 0),
        ("job1", 2, 2),
        ("job1", 2, 10),
        ("job1", 0, 0),
        ("job1", -1, 1),
        ("job1", 3, -5),
        ("job10", 20, 0),
        ("job", 20, 0),
        ("nothing", 20, 0),
    ):
        pair.same("list_cron_job_runs", job, limit=limit, offset=offset, transform=runs)
    pair.same("list_cron_job_runs", "job1", transform=runs)
    for bad in ({"limit": None}, {"offset": None}, {"limit": 2.5}, {"limit": "x"}, {"limit": 2**63}):
        pair.same("list_cron_job_runs", "job1", transform=runs, **bad)
    for lenient in ({"limit": "2"}, {"limit": " 3 "}, {"limit": 2.0, "offset": "1"}, {"limit": True}):
        pair.same("list_cron_job_runs", "job1", transform=runs, **lenient)


def test_cron_run_previews(pair: Pair) -> None:
    runs = project(RUN_KEYS)
    for sid in ("cron_j_1", "cron_j_2", "cron_j_3"):
        pair.both("create_session", sid, "cron")
    image = [{"type": "text", "text": "describe"}, {"type": "image_url", "image_url": {"url": "data:x"}}]
    pair.both("append_message", "cron_j_1", "user", image)
    pair.both("append_message", "cron_j_1", "user", "text after the image")
    pair.both("append_message", "cron_j_2", "user", "ab\x00cd\nef")
    pair.both("append_message", "cron_j_3", "user", "")
    pair.both("append_message", "cron_j_3", "user", "later")
    pair.same("list_cron_job_runs", "j", transform=runs)
    # Archived and replaced messages: previews and activity read every stored message.
    pair.both("archive_and_compact", "cron_j_3", [{"role": "user", "content": "compacted summary"}])
    pair.both("replace_messages", "cron_j_2", [{"role": "assistant", "content": "only an answer"}])
    pair.same("list_cron_job_runs", "j", transform=runs)
