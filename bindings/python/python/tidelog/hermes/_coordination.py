"""``SessionDB`` methods of Hermes 0.19.0: hand-offs, compression locks, compression failure
cooldowns and fallback streaks, billing routes, auxiliary usage and cron job runs.

Where Hermes keeps the state in session columns (``handoff_state``, ``handoff_platform``,
``handoff_error``, ``compression_failure_cooldown_until``, ``compression_failure_error``,
``compression_fallback_streak``, the billing route), it lives in the session's ``extra`` object, so
``get_session`` shows it as Hermes does. Hermes' tables ``compression_locks`` and
``session_model_usage`` are generic rows (``_rows.py``). Hermes' column updates touch only
existing sessions (an ``UPDATE`` of no row does nothing), while the store's ``upsert_session``
would create a session: each conditional write checks and writes inside ``Store.exclusive()``,
which also makes claims and locks atomic across processes, as Hermes' SQL transactions are.
"""

from __future__ import annotations

import math
import re
import sqlite3
import time
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from ._common import _loads

if TYPE_CHECKING:
    from .._tidelog import Message, Session, Store
    from ._rows import Rows

LOCKS = "compression_locks"
MODEL_USAGE = "session_model_usage"
# Hand-off states from which a new hand-off may be requested (``None``: none ever requested).
_HANDOFF_RESTARTABLE = (None, "completed", "failed")
# Hermes keeps at most this many characters of a hand-off failure reason.
_HANDOFF_ERROR_CHARS = 500
# Hermes' run previews: the first user message, newlines as spaces, cut to 63 characters, then
# stripped; more than 60 left shows 60 and "...".
_PREVIEW_READ = 63
_PREVIEW_SHOWN = 60


# Text SQLite's numeric affinity turns into a number (hexadecimal, "inf" and "1_000" stay text).
_NUMERIC_TEXT = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*\Z", re.ASCII)


def _real(value: Any) -> Any:
    """A value as a SQLite ``REAL`` column stores it: numbers and numeric text become floats."""
    if isinstance(value, (int, float)) or (isinstance(value, str) and _NUMERIC_TEXT.match(value)):
        return float(value)
    return value


def _text(value: Any) -> Any:
    """A bound value as a SQLite ``TEXT`` column stores or compares it: numbers become their
    text (floats as SQLite prints them, NaN as ``NULL``); text, ``None`` and bytes are kept."""
    if isinstance(value, int):
        return str(int(value))
    if not isinstance(value, float):
        return value
    if math.isnan(value):
        return None
    if math.isinf(value):
        return "Inf" if value > 0 else "-Inf"
    mantissa, e, exponent = ("%.15g" % (value or 0.0)).partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    return mantissa + e + exponent


def _sqlite_int(value: Any) -> int:
    """A ``LIMIT``/``OFFSET`` value as SQLite reads it: an integer, an integral float or
    numeric text; anything else (``None`` too) fails as Hermes' query does."""
    number: Any = value
    if isinstance(value, str) and _NUMERIC_TEXT.match(value):
        number = float(value)
    if isinstance(number, float) and number.is_integer():
        number = int(number)
    if isinstance(number, int):
        if not -(2**63) <= number < 2**63:
            raise OverflowError("Python int too large to convert to SQLite INTEGER")
        return int(number)
    raise sqlite3.IntegrityError("datatype mismatch")


class _CoordinationMixin:
    """Mixed into ``tidelog.hermes.SessionDB``; uses its ``_store`` and ``_rows``."""

    _store: Store
    _rows: Rows

    if TYPE_CHECKING:

        def _row(self, s: Session, messages: list[Message] | None = None) -> dict[str, Any]: ...

        def ensure_session(
            self, session_id: str, source: str = "unknown", model: str | None = None, **fields: Any
        ) -> str: ...

    # -- session columns kept in `extra` ---------------------------------------------------

    def _session(self, session_id: Any) -> Session | None:
        """The session Hermes' ``WHERE id = ?`` finds (a number matches its text; ``None``
        matches nothing)."""
        key = _text(session_id)
        return self._store.get_session(key) if isinstance(key, str) else None

    def _session_extra(self, session_id: Any) -> dict[str, Any] | None:
        """The session's ``extra`` object, or ``None`` if there is no such session."""
        s = self._session(session_id)
        return None if s is None else self._row_extra(s)

    @staticmethod
    def _row_extra(s: Session) -> dict[str, Any]:
        """The session's ``extra`` object (empty if it has none)."""
        extra = _loads(s.extra, {})
        return extra if isinstance(extra, dict) else {}

    def _update_existing(self, session_id: str, fields: Mapping[str, Any]) -> bool:
        """Sets ``fields`` (``None`` clears one) on the session if it exists; ``True`` if it did.
        The caller holds ``Store.exclusive()``."""
        s = self._session(session_id)
        if s is None:
            return False
        self._store.upsert_session(s.id, extra=dict(fields))
        return True

    # -- hand-offs -------------------------------------------------------------------------

    def request_handoff(self, session_id: str, platform: str) -> bool:
        """Marks the session ``pending`` hand-off to ``platform`` (clearing an old error) unless a
        hand-off is already in flight. ``True`` if it was marked; ``False`` for an unknown
        session or one whose hand-off is ``pending`` or ``running``."""
        fields = {"handoff_state": "pending", "handoff_platform": _text(platform), "handoff_error": None}
        with self._store.exclusive():
            extra = self._session_extra(session_id)
            restartable = extra is not None and extra.get("handoff_state") in _HANDOFF_RESTARTABLE
            marked = restartable and self._update_existing(session_id, fields)
        return marked

    def get_handoff_state(self, session_id: str) -> dict[str, Any] | None:
        """``{"state", "platform", "error"}`` of the session (each ``None`` when no hand-off was
        ever requested), or ``None`` for an unknown session."""
        extra = self._session_extra(session_id)
        if extra is None:
            return None
        return {
            "state": extra.get("handoff_state"),
            "platform": extra.get("handoff_platform"),
            "error": extra.get("handoff_error"),
        }

    def list_pending_handoffs(self) -> list[dict[str, Any]]:
        """The session rows whose hand-off is ``pending``, oldest start first."""
        pending = [s for s in self._store.list_sessions() if self._row_extra(s).get("handoff_state") == "pending"]
        pending.sort(key=lambda s: s.started_at or 0.0)
        return [self._row(s) for s in pending]

    def claim_handoff(self, session_id: str) -> bool:
        """Moves a ``pending`` hand-off to ``running``, atomically: of several claimers (in any
        process) exactly one gets ``True``."""
        with self._store.exclusive():
            extra = self._session_extra(session_id)
            pending = extra is not None and extra.get("handoff_state") == "pending"
            claimed = pending and self._update_existing(session_id, {"handoff_state": "running"})
        return claimed

    def complete_handoff(self, session_id: str) -> None:
        """Marks the session's hand-off ``completed`` and clears its error (whatever the state
        was; an unknown session is left alone)."""
        with self._store.exclusive():
            self._update_existing(session_id, {"handoff_state": "completed", "handoff_error": None})

    def fail_handoff(self, session_id: str, error: str) -> None:
        """Marks the session's hand-off ``failed`` with the first 500 characters of ``error``
        (an unknown session is left alone; an ``error`` that cannot be sliced raises
        ``TypeError``)."""
        reason = error[:_HANDOFF_ERROR_CHARS]
        with self._store.exclusive():
            self._update_existing(session_id, {"handoff_state": "failed", "handoff_error": reason})

    # -- compression locks -----------------------------------------------------------------

    def try_acquire_compression_lock(self, session_id: str, holder: str, ttl_seconds: float = 300.0) -> bool:
        """Takes the session's compression lock for ``ttl_seconds`` unless another holder has
        one that has not expired (an expired one is reclaimed). ``True`` if ``holder`` owns the
        lock afterwards (a holder re-acquiring its live lock keeps its old expiry). Atomic
        across processes; an empty ``session_id`` or a ``None`` holder gets ``False``."""
        if not session_id:
            return False
        now = time.time()
        expires_at = now + ttl_seconds
        key = _text(session_id)
        with self._store.exclusive():
            row = self._rows.get(LOCKS, key)
            if row is not None and row["expires_at"] < now:
                self._rows.delete(LOCKS, key)
                row = None
            if row is None and _text(holder) is not None:
                row = {"session_id": key, "holder": _text(holder), "acquired_at": now, "expires_at": expires_at}
                self._rows.put(LOCKS, (key,), row)
            # Hermes compares the stored text with the holder as given: a number never owns it.
            owned = row is not None and bool(row["holder"] == holder)
        return owned

    def refresh_compression_lock(self, session_id: str, holder: str, ttl_seconds: float = 300.0) -> bool:
        """Extends the lease to ``ttl_seconds`` from now if ``holder`` owns the lock and it has
        not expired; ``True`` if it was extended."""
        if not session_id or not holder:
            return False
        now = time.time()
        expires_at = now + ttl_seconds
        key = _text(session_id)
        with self._store.exclusive():
            row = self._rows.get(LOCKS, key)
            live = row is not None and row["holder"] == _text(holder) and row["expires_at"] >= now
            if row is not None and live:
                self._rows.put(LOCKS, (key,), {**row, "expires_at": expires_at})
        return live

    def release_compression_lock(self, session_id: str, holder: str) -> None:
        """Drops the session's lock if ``holder`` owns it (expired or not); otherwise, and with
        no lock, does nothing."""
        if not session_id:
            return
        key = _text(session_id)
        with self._store.exclusive():
            row = self._rows.get(LOCKS, key)
            if row is not None and row["holder"] == _text(holder):
                self._rows.delete(LOCKS, key)

    def get_compression_lock_holder(self, session_id: str) -> str | None:
        """The holder of the session's lock if it has not expired, else ``None``."""
        if not session_id:
            return None
        now = time.time()
        row = self._rows.get(LOCKS, _text(session_id))
        if row is None or row["expires_at"] < now:
            return None
        holder: str = row["holder"]
        return holder

    # -- compression failure cooldowns and fallback streaks --------------------------------

    def record_compression_failure_cooldown(
        self, session_id: str, cooldown_until: float, error: str | None = None
    ) -> None:
        """Records on the session that compression is cooled down until ``cooldown_until`` (a
        wall-clock time), with the failure's ``error``. An unknown session is left alone."""
        if not session_id:
            return
        fields = {
            "compression_failure_cooldown_until": _real(cooldown_until),
            "compression_failure_error": _text(error),
        }
        with self._store.exclusive():
            self._update_existing(session_id, fields)

    def get_compression_failure_cooldown(self, session_id: str) -> dict[str, Any] | None:
        """``{"cooldown_until", "remaining_seconds", "error"}`` while the session's cooldown runs
        (its end is still in the future), else ``None``."""
        if not session_id:
            return None
        now = time.time()
        extra = self._session_extra(session_id)
        if extra is None or extra.get("compression_failure_cooldown_until") is None:
            return None
        until = float(extra["compression_failure_cooldown_until"])
        if until <= now:
            return None
        error = extra.get("compression_failure_error")
        return {"cooldown_until": until, "remaining_seconds": until - now, "error": error}

    def clear_compression_failure_cooldown(self, session_id: str) -> None:
        """Clears the session's cooldown and its error."""
        if not session_id:
            return
        with self._store.exclusive():
            self._update_existing(
                session_id, {"compression_failure_cooldown_until": None, "compression_failure_error": None}
            )

    def get_compression_fallback_streak(self, session_id: str) -> int:
        """The session's count of consecutive deterministic compression fallbacks (0 for an
        unknown session)."""
        if not session_id:
            return 0
        extra = self._session_extra(session_id)
        if extra is None:
            return 0
        try:
            return max(0, int(extra.get("compression_fallback_streak") or 0))
        except (TypeError, ValueError):
            return 0

    def set_compression_fallback_streak(self, session_id: str, streak: int) -> None:
        """Sets the session's fallback streak (negative values count as 0; a value ``int()``
        refuses raises its error)."""
        if not session_id:
            return
        value = max(0, int(streak))
        with self._store.exclusive():
            self._update_existing(session_id, {"compression_fallback_streak": value})

    # -- billing routes and auxiliary usage ------------------------------------------------

    def update_session_billing_route(
        self, session_id: str, *, provider: str, base_url: str, billing_mode: str | None = None
    ) -> None:
        """Sets the session's billing provider and base URL (and the billing mode, when given),
        and drops its cached system prompt, whose header names the old route."""
        fields = {"billing_provider": _text(provider), "billing_base_url": _text(base_url), "system_prompt": None}
        if _text(billing_mode) is not None:
            fields["billing_mode"] = _text(billing_mode)
        with self._store.exclusive():
            self._update_existing(session_id, fields)

    def record_auxiliary_usage(
        self,
        session_id: str,
        task: str,
        *,
        model: str | None = None,
        billing_provider: str | None = None,
        billing_base_url: str | None = None,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
        reasoning_tokens: int = 0,
        estimated_cost_usd: float | None = None,
    ) -> None:
        """Adds one auxiliary call (``task``: vision, compression, ...) to the session's
        ``session_model_usage`` row of (model, provider, base URL, task), creating the session
        (source ``unknown``) if needed. The session's own counters are not touched. Does nothing
        without a session id or a task."""
        if not session_id or not task:
            return
        session_id = self.ensure_session(_text(session_id), "unknown")
        route = tuple(_text(v) for v in (model or "unknown", billing_provider or "", billing_base_url or "", "", task))
        delta = {
            "api_call_count": 1,
            "input_tokens": input_tokens or 0,
            "output_tokens": output_tokens or 0,
            "cache_read_tokens": cache_read_tokens or 0,
            "cache_write_tokens": cache_write_tokens or 0,
            "reasoning_tokens": reasoning_tokens or 0,
            "estimated_cost_usd": float(estimated_cost_usd or 0.0),
            "actual_cost_usd": 0.0,
        }
        with self._store.exclusive():
            self._add_model_usage(session_id, route, delta, None, None)

    def _add_model_usage(
        self,
        session_id: str,
        route: tuple[str, str, str, str, str],
        delta: dict[str, Any],
        cost_status: str | None,
        cost_source: str | None,
    ) -> None:
        """Adds ``delta`` to the ``session_model_usage`` row of ``route`` (model, provider, base
        URL, billing mode, task), creating it; the cost labels replace earlier ones when given.
        Called inside ``exclusive()``."""
        now = time.time()
        row = self._rows.get(MODEL_USAGE, session_id, *route)
        if row is None:
            keys = ("model", "billing_provider", "billing_base_url", "billing_mode", "task")
            row = {"session_id": session_id, **dict(zip(keys, route)), **delta}
            row.update(cost_status=cost_status, cost_source=cost_source, first_seen=now, last_seen=now)
        else:
            for k, v in delta.items():
                row[k] = row[k] + v
            if cost_status is not None:
                row["cost_status"] = cost_status
            if cost_source is not None:
                row["cost_source"] = cost_source
            row["last_seen"] = now
        self._rows.put(MODEL_USAGE, (session_id, *route), row)

    def _forget_usage_of(self, session_ids: Collection[str]) -> None:
        """Deletes the usage rows of deleted sessions (Hermes' ``ON DELETE CASCADE``)."""
        gone = set(session_ids)
        keys = ("session_id", "model", "billing_provider", "billing_base_url", "billing_mode", "task")
        self._rows.delete_where(MODEL_USAGE, lambda r: tuple(r[k] for k in keys), lambda r: r["session_id"] in gone)

    # -- cron job runs ---------------------------------------------------------------------

    def list_cron_job_runs(self, job_id: str, limit: int = 20, offset: int = 0) -> list[dict[str, Any]]:
        """The run sessions of one cron job (source ``cron``, id ``cron_<job_id>_...``), newest
        start first, as session rows with ``last_active`` (the last message's time, else the
        start) and ``preview``: the first user message with content (archived ones count), as
        SQLite reads it (ended at a NUL, so a multimodal message shows ""), newlines as spaces,
        at most 60 characters and "..." if it had more. A negative ``limit`` means no limit; a
        negative ``offset`` counts as 0; a ``None`` or non-numeric one raises ``IntegrityError``."""
        prefix = f"cron_{job_id}_"
        limit, offset = _sqlite_int(limit), _sqlite_int(offset)
        runs = [s for s in self._store.list_sessions(source="cron") if s.id.startswith(prefix)]
        runs.sort(key=lambda s: (s.started_at or 0.0, s.id), reverse=True)
        start = max(0, offset)
        window = runs[start:] if limit < 0 else runs[start : start + limit]
        rows = []
        for s in window:
            items = self._store.history(s.id, include_inactive=True, include_compacted=True)
            msgs = sorted((item.message for item in items), key=lambda m: m.timestamp)
            row = self._row(s)
            first = next((m.content for m in msgs if m.role == "user" and m.content is not None), None)
            # SQLite's text functions end a string at its first NUL (a multimodal message's marker).
            text = (first or "").split("\x00", 1)[0]
            raw = text.replace("\n", " ").replace("\r", " ")[:_PREVIEW_READ].strip()
            row["preview"] = raw[:_PREVIEW_SHOWN] + ("..." if len(raw) > _PREVIEW_SHOWN else "")
            row["last_active"] = max((m.timestamp for m in msgs), default=s.started_at)
            rows.append(row)
        return rows
