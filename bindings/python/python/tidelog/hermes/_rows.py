"""Hermes' tables beyond sessions and messages (gateway routing, compression locks, Telegram
topic bindings, hand-offs, cron runs, ...) as rows in the store's metadata.

Every row is one metadata entry, ``hermes.row/<table>/<primary key as JSON>`` holding the row as
a JSON object: a journal entry synced before the call returns, applied by the compactor and by a
rebuild like every other entry, so nothing lives in SQLite only. A row is deleted by clearing its
key. Read-decide-write sequences (claims, locks, "insert unless present") run inside
``Store.exclusive()``, which orders them against every other process of the store.

>>> import tempfile
>>> from tidelog import Store
>>> with Store(tempfile.mkdtemp()) as store:
...     rows = Rows(store)
...     rows.put("compression_locks", ("s1",), {"session_id": "s1", "holder": "a"})
...     [rows.get("compression_locks", "s1"), rows.scan("compression_locks")]
[{'session_id': 's1', 'holder': 'a'}, [{'session_id': 's1', 'holder': 'a'}]]
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .._tidelog import Store

ROW_PREFIX = "hermes.row/"
# Store metadata keys are at most 1024 bytes; a longer primary key is hashed (the row keeps it).
_MAX_READABLE_KEY = 900


def _encode_pk(pk: Sequence[Any]) -> str:
    text = json.dumps(list(pk), separators=(",", ":"), ensure_ascii=False)
    if len(text.encode()) > _MAX_READABLE_KEY:
        return "#" + hashlib.sha256(text.encode()).hexdigest()
    return text


class Rows:
    """The generic row tables of one store (see the module documentation)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    @staticmethod
    def key(table: str, pk: Sequence[Any]) -> str:
        """The metadata key of a row."""
        return f"{ROW_PREFIX}{table}/{_encode_pk(pk)}"

    def get(self, table: str, *pk: Any) -> dict[str, Any] | None:
        """The row with this primary key, or ``None``."""
        text = self._store.get_meta(self.key(table, pk))
        if text is None:
            return None
        row = json.loads(text)
        return row if isinstance(row, dict) else None

    def put(self, table: str, pk: Sequence[Any], row: dict[str, Any]) -> None:
        """Inserts or replaces the row (durable on return)."""
        self._store.set_meta(self.key(table, pk), json.dumps(row, separators=(",", ":"), ensure_ascii=False))

    def delete(self, table: str, *pk: Any) -> bool:
        """Deletes the row; ``True`` if there was one."""
        key = self.key(table, pk)
        if self._store.get_meta(key) is None:
            return False
        self._store.set_meta(key, None)
        return True

    def scan(self, table: str, where: Callable[[dict[str, Any]], bool] | None = None) -> list[dict[str, Any]]:
        """Every row of the table (in primary-key order of the encoded keys) that ``where``
        accepts."""
        prefix = f"{ROW_PREFIX}{table}/"
        out: list[dict[str, Any]] = []
        for key, text in self._store.all_meta().items():
            if not key.startswith(prefix):
                continue
            row = json.loads(text)
            if isinstance(row, dict) and (where is None or where(row)):
                out.append(row)
        return out

    def delete_where(self, table: str, pk_of: Callable[[dict[str, Any]], Sequence[Any]], where: Callable[[dict[str, Any]], bool]) -> int:
        """Deletes the rows ``where`` accepts; returns how many. ``pk_of`` gives a row's key."""
        n = 0
        for row in self.scan(table, where):
            self._store.set_meta(self.key(table, pk_of(row)), None)
            n += 1
        return n

    def put_many(self, table: str, rows: Iterable[tuple[Sequence[Any], dict[str, Any]]]) -> None:
        """Inserts or replaces several rows (one entry each)."""
        for pk, row in rows:
            self.put(table, pk, row)
