"""Rust errors arrive as the documented Python exceptions, with their details as attributes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import tidelog
from tidelog._tidelog import _error_for_test


def test_hierarchy() -> None:
    for cls in (
        tidelog.InvalidInputError,
        tidelog.ClosedError,
        tidelog.ReadOnlyError,
        tidelog.NotAStoreError,
        tidelog.LockedError,
        tidelog.PoisonedError,
        tidelog.CorruptError,
        tidelog.StorageError,
        tidelog.DiskFullError,
        tidelog.IndexFailure,
    ):
        assert issubclass(cls, tidelog.TidelogError), cls
    assert issubclass(tidelog.InvalidInputError, ValueError)
    assert issubclass(tidelog.StorageError, OSError)
    assert issubclass(tidelog.DiskFullError, tidelog.StorageError)


def test_invalid_input(store: tidelog.Store) -> None:
    with pytest.raises(tidelog.InvalidInputError, match="`role` is empty"):
        store.append("s", "")
    with pytest.raises(ValueError, match="`session_id` is empty"):
        store.append("", "user")
    with pytest.raises(tidelog.InvalidInputError, match="not valid JSON"):
        store.append("s", "user", extra="{nope")
    with pytest.raises(tidelog.InvalidInputError, match="longer than"):
        store.append("s", "user", id="x" * 2000)
    with pytest.raises(TypeError):  # not JSON-serialisable: json.dumps' own error
        store.append("s", "user", extra={"x": object()})
    assert store.messages("s") == []


def test_read_only(store_dir: Path) -> None:
    with tidelog.Store(store_dir) as w:
        w.append("s", "user", "x")
    with tidelog.Store(store_dir, read_only=True) as r:
        for call in (
            lambda: r.append("s", "user", "y"),
            lambda: r.append_batch([{"session_id": "s", "role": "user"}]),
            lambda: r.upsert_session("s", title="t"),
            lambda: r.end_session("s", "done"),
        ):
            with pytest.raises(tidelog.ReadOnlyError) as e:
                call()
            assert e.value.path == str(store_dir)
        assert len(r.messages("s")) == 1


def test_not_a_store(tmp_path: Path) -> None:
    with pytest.raises(tidelog.NotAStoreError) as e:
        tidelog.Store(tmp_path / "empty", read_only=True)
    assert e.value.path == str(tmp_path / "empty")


def test_closed(store: tidelog.Store) -> None:
    store.close()
    for call in (
        lambda: store.append("s", "user"),
        lambda: store.messages("s"),
        lambda: store.search("x"),
        lambda: store.status(),
        lambda: store.wait_indexed(0),
        lambda: store.lane,
    ):
        with pytest.raises(tidelog.ClosedError, match="closed"):
            call()


def test_two_writable_stores_on_one_folder_get_their_own_lanes(store_dir: Path) -> None:
    # A lane's writer lock is never reported by Store: a second writer (another process, or
    # another Store in this one) takes a lane of its own. LockedError is only reachable through
    # the journal API, so its mapping is checked below with _error_for_test.
    with tidelog.Store(store_dir) as a, tidelog.Store(store_dir) as b:
        assert a.lane != b.lane
        ia = a.append("s", "user", "from a", timestamp=1.0)
        ib = b.append("s", "user", "from b", timestamp=2.0)
        assert [m.id for m in a.messages("s")] == [ia, ib]
        assert {lane.name for lane in a.status().lanes} == {a.lane, b.lane}


def test_permission_denied_is_a_storage_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root ignores folder permissions")
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    with pytest.raises(tidelog.StorageError) as e:
        tidelog.Store(ro / "store")
    assert e.value.errno == 13


def test_damaged_lane_is_reported_in_status(store_dir: Path) -> None:
    with tidelog.Store(store_dir, run_compactor=False, segment_size=4096) as s:
        for i in range(100):
            s.append("s", "user", f"message number {i} " + "x" * 100)
        lane = s.lane
    segments = sorted((store_dir / "lanes" / lane).glob("*.seg"))
    assert len(segments) > 2, segments
    with open(segments[0], "r+b") as f:  # damage in the middle of the log
        f.seek(200)
        f.write(b"\xff" * 64)
    with tidelog.Store(store_dir, run_compactor=False) as s:
        # The damage shows when the lane is read: reads keep every record before and after the
        # damaged ones (they do not raise CorruptError) and the status names the lane, the file,
        # the offset and the LSNs lost, so the history never shrinks silently.
        got = s.messages("s")
        assert 0 < len(got) < 100
        st = s.status()
        assert st.is_degraded
        assert any(lane in p and "corruption" in p for p in st.problems), st.problems


def test_a_degraded_compactor_of_another_process_is_in_status(store_dir: Path) -> None:
    with tidelog.Store(store_dir, run_compactor=False) as s:
        s.append("s", "user", "x")
    # What the process running the compactor leaves while its thread is degraded (a panic).
    note = {"thread": "compactor", "pid": 4194303, "lane": "lane-0009", "what": "panicked: boom", "time_unix_ms": 0}
    (store_dir / "compactor.problem").write_text(json.dumps(note))
    with tidelog.Store(store_dir, run_compactor=False) as s:
        st = s.status()
        assert st.is_degraded
        assert any(p.startswith("compactor of process 4194303") and "boom" in p for p in st.problems), st.problems


KINDS: dict[str, tuple[type[BaseException], dict[str, object]]] = {
    "corrupt": (tidelog.CorruptError, {"path": "/s/lanes/lane-0001/00000001.seg", "offset": 4096, "lsn": 7, "last_lsn": 9}),
    "broken_chain": (tidelog.CorruptError, {"path": "/s/x.seg", "detail": "missing", "offset": None}),
    "decode": (tidelog.CorruptError, {"lane": "lane-0001", "lsn": 3, "path": None}),
    "disk_full": (tidelog.DiskFullError, {"errno": 28, "filename": "/s/x.seg", "op": "write"}),
    "io": (tidelog.StorageError, {"errno": 5, "filename": "/s/x.seg", "op": "sync"}),
    "store_io": (tidelog.StorageError, {"errno": 13, "filename": "/s", "op": "create folder"}),
    "poisoned": (tidelog.PoisonedError, {"cause": "sync failed"}),
    "locked": (tidelog.LockedError, {"path": "/s/lanes/lane-0001"}),
    "record_too_large": (tidelog.InvalidInputError, {}),
    "journal_read_only": (tidelog.ReadOnlyError, {"path": "/s"}),
    "read_only": (tidelog.ReadOnlyError, {"path": "/s"}),
    "journal_closed": (tidelog.ClosedError, {}),
    "closed": (tidelog.ClosedError, {}),
    "not_a_store": (tidelog.NotAStoreError, {"path": "/s"}),
    "invalid": (tidelog.InvalidInputError, {}),
    "title_taken": (tidelog.TitleTakenError, {"title": "Boat", "other": "s2"}),
    "not_found": (tidelog.NotFoundError, {"what": "message", "id": "42"}),
    "too_many_lanes": (tidelog.TooManyLanesError, {"path": "/s", "max": 4096}),
    "empty_query": (tidelog.EmptyQueryError, {}),
    "compactor_busy": (tidelog.CompactorBusyError, {"path": "/s/compactor.lock"}),
    "destination_not_empty": (tidelog.DestinationNotEmptyError, {"path": "/b"}),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_mapping_of_every_variant(kind: str) -> None:
    cls, attrs = KINDS[kind]
    e = _error_for_test(kind)
    assert type(e) is cls, (kind, type(e))
    assert str(e)
    for k, v in attrs.items():
        assert getattr(e, k) == v, (kind, k, getattr(e, k))
