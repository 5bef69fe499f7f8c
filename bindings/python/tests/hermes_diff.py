"""The differential harness: Hermes Agent's own ``hermes_state.SessionDB`` (hermes-agent 0.19.0,
installed with ``pip install --no-deps``) and ``tidelog.hermes.SessionDB`` side by side, given the
same calls, their return values compared after normalizing what legitimately differs (message row
ids, which Hermes numbers 1, 2, 3 and tidelog by time and lane; wall-clock times).

``REAL`` is Hermes' class, taken at import time, before any test's ``install()`` replaces
``hermes_state.SessionDB``. Without hermes-agent the differential tests skip, unless
``TIDELOG_REQUIRE_HERMES=1`` (set by ``.ci/python``) makes that a failure.

Use::

    def test_x(pair):                      # the fixture, in conftest.py
        pair.both("create_session", "s1", "cli")
        pair.same("get_session", "s1")     # asserts equal normalized results (or equal errors)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

try:
    import hermes_state as _hermes_state

    REAL: Any = _hermes_state.SessionDB
    REAL_ASYNC: Any = _hermes_state.AsyncSessionDB
    HERMES_VERSION: str | None = "0.19.0"
except ImportError:  # pragma: no cover - depends on the environment
    _hermes_state = None
    REAL = REAL_ASYNC = None
    HERMES_VERSION = None

if REAL is not None and REAL.__module__ != "hermes_state":  # pragma: no cover
    raise RuntimeError("hermes_state.SessionDB was replaced before the harness took Hermes' own class")


def require_hermes() -> None:
    """Skips the calling test without hermes-agent (fails under TIDELOG_REQUIRE_HERMES=1)."""
    if REAL is None:
        if os.environ.get("TIDELOG_REQUIRE_HERMES") == "1":
            pytest.fail("hermes-agent==0.19.0 is not installed (pip install --no-deps hermes-agent==0.19.0)")
        pytest.skip("hermes-agent is not installed")


TIME_KEYS = frozenset(
    {
        "started_at",
        "ended_at",
        "timestamp",
        "last_active",
        "updated_at",
        "acquired_at",
        "expires_at",
        "created_at",
        "first_seen",
        "last_seen",
        "requested_at",
        "claimed_at",
        "completed_at",
        "cooldown_until",
        "compression_failure_cooldown_until",
        "imported_at",
        "linked_at",
        "session_started",
    }
)
ID_KEYS = frozenset(
    {"id", "message_id_row", "anchor_id", "first_id", "last_id", "before_id", "after_id", "new_head_id"}
)


class Normalizer:
    """Maps each side's message row ids to 1, 2, 3 in order of first appearance (kept across
    calls, so a later call's ids compare with an earlier call's), and replaces times by a marker
    (``"<t>"``; ``None`` stays ``None``)."""

    def __init__(self) -> None:
        self.ids: dict[int, int] = {}

    def msg_id(self, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            return value
        return self.ids.setdefault(value, len(self.ids) + 1)

    def __call__(self, value: Any, key: str | None = None) -> Any:
        if isinstance(value, dict):
            return {k: self(v, k) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            out = [self(v, key if key in ID_KEYS else None) for v in value]
            return out if isinstance(value, list) else tuple(out)
        if key in TIME_KEYS and isinstance(value, (int, float)) and not isinstance(value, bool):
            return "<t>"
        if key in ID_KEYS:
            return self.msg_id(value)
        return value


class Pair:
    """One Hermes SessionDB and one tidelog SessionDB in separate folders of ``tmp``."""

    def __init__(self, tmp: Path) -> None:
        from tidelog.hermes import SessionDB

        require_hermes()
        (tmp / "hermes").mkdir()
        (tmp / "tidelog").mkdir()
        self.real = REAL(tmp / "hermes" / "state.db")
        self.ours = SessionDB(tmp / "tidelog" / "state.db")
        self.norm_real = Normalizer()
        self.norm_ours = Normalizer()

    def close(self) -> None:
        self.real.close()
        self.ours.close()

    @staticmethod
    def _call(db: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, Any]:
        try:
            return "ok", getattr(db, name)(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - the error's type is what is compared
            return "error", type(e).__name__

    def both(self, name: str, *args: Any, ids: bool = False, **kwargs: Any) -> tuple[Any, Any]:
        """Calls ``name`` on both; returns the two normalized outcomes (``("ok", value)`` or
        ``("error", type name)``). With ``ids``, a returned int (or list of ints) is a message
        row id and is normalized as one."""
        r = self._call(self.real, name, args, kwargs)
        o = self._call(self.ours, name, args, kwargs)
        key = "id" if ids else None
        return (r[0], self.norm_real(r[1], key)), (o[0], self.norm_ours(o[1], key))

    def same(
        self, name: str, *args: Any, ids: bool = False, transform: Callable[[Any], Any] | None = None, **kwargs: Any
    ) -> Any:
        """Calls ``name`` on both and asserts equal normalized outcomes; returns Hermes' value.
        ``ids``: see :meth:`both`. ``transform`` is applied to both values first (to drop a
        field known to differ, with the reason stated where it is used and in
        bindings/python/README.md)."""
        r, o = self.both(name, *args, ids=ids, **kwargs)
        if transform is not None:
            r = (r[0], transform(r[1]) if r[0] == "ok" else r[1])
            o = (o[0], transform(o[1]) if o[0] == "ok" else o[1])
        assert o == r, f"{name}{args}{kwargs}: tidelog {o!r} != hermes {r!r}"
        return r[1]
