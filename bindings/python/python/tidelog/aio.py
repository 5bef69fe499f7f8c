"""asyncio access to a tidelog store.

Every coroutine runs the matching ``Store`` call in a worker thread (``asyncio.to_thread``, the
loop's default executor), so the event loop never blocks on a sync to disk; the native call
releases the GIL while it waits, so the loop keeps running Python code meanwhile.

>>> import asyncio, tempfile
>>> from tidelog.aio import AsyncStore
>>> async def main() -> bool:
...     async with await AsyncStore.open(tempfile.mkdtemp()) as store:
...         mid = await store.append("s1", "user", "hello")
...         return (await store.messages("s1"))[0].id == mid
>>> asyncio.run(main())
True
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from ._tidelog import Appended, HistoryItem, ImportReport, Message, SearchHit, Session, Store, StoreStatus

__all__ = ["AsyncStore"]


class AsyncStore:
    """Coroutine versions of every ``Store`` call, run in worker threads.

    Build one with ``await AsyncStore.open(path, **options)`` (opening runs recovery, which reads
    the disk), or wrap a ``Store`` you already have with ``AsyncStore(store)``. Use it as an
    ``async with`` context manager to close it on exit.
    """

    __slots__ = ("_store",)

    def __init__(self, store: Store) -> None:
        self._store = store

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        durability: Literal["sync", "buffered"] = "sync",
        recovery: Literal["strict", "salvage"] = "strict",
        read_only: bool = False,
        run_compactor: bool = True,
        close_deadline: float = 1.0,
        segment_size: int | None = None,
        max_record_size: int | None = None,
        poll_interval: float | None = None,
        retention: Literal["off", "after_indexed"] = "off",
        compression: bool = True,
    ) -> AsyncStore:
        """Opens (creating if needed) the store in ``path``; see ``Store``."""
        store = await asyncio.to_thread(
            Store,
            path,
            durability=durability,
            recovery=recovery,
            read_only=read_only,
            run_compactor=run_compactor,
            close_deadline=close_deadline,
            segment_size=segment_size,
            max_record_size=max_record_size,
            poll_interval=poll_interval,
            retention=retention,
            compression=compression,
        )
        return cls(store)

    @property
    def store(self) -> Store:
        """The synchronous store underneath."""
        return self._store

    @property
    def path(self) -> str:
        return self._store.path

    @property
    def closed(self) -> bool:
        return self._store.closed

    async def append(
        self,
        session_id: str,
        role: str,
        content: str | None = None,
        *,
        id: str | None = None,
        tool_call_id: str | None = None,
        tool_name: str | None = None,
        tool_calls: str | list[Any] | dict[str, Any] | None = None,
        reasoning: str | None = None,
        timestamp: float | None = None,
        token_count: int | None = None,
        finish_reason: str | None = None,
        source: str | None = None,
        extra: str | dict[str, Any] | None = None,
        platform_message_id: str | None = None,
        api_content: str | None = None,
    ) -> str:
        """Appends one message; returns its id once it is durable."""
        return await asyncio.to_thread(
            self._store.append,
            session_id,
            role,
            content,
            id=id,
            tool_call_id=tool_call_id,
            tool_name=tool_name,
            tool_calls=tool_calls,
            reasoning=reasoning,
            timestamp=timestamp,
            token_count=token_count,
            finish_reason=finish_reason,
            source=source,
            extra=extra,
            platform_message_id=platform_message_id,
            api_content=api_content,
        )

    async def append_message(self, session_id: str, role: str, content: str | None = None, **fields: Any) -> Appended:
        """Appends one message; returns its ``Appended`` (id, integer id, LSN). See ``Store.append_message``."""
        return await asyncio.to_thread(self._store.append_message, session_id, role, content, **fields)

    async def append_batch(self, messages: Iterable[Message | Mapping[str, Any]]) -> list[Appended]:
        """Appends several messages with one durable commit; nothing is written if any is invalid."""
        # Materialise here: a generator must not be consumed from the worker thread.
        items = list(messages)
        return await asyncio.to_thread(self._store.append_batch, items)

    async def upsert_session(self, id: str, **fields: Any) -> int:
        """Creates or updates a session; see ``Store.upsert_session``."""
        return await asyncio.to_thread(self._store.upsert_session, id, **fields)

    async def end_session(self, id: str, reason: str) -> int:
        return await asyncio.to_thread(self._store.end_session, id, reason)

    async def get_session(self, id: str) -> Session | None:
        return await asyncio.to_thread(self._store.get_session, id)

    async def list_sessions(
        self,
        *,
        source: str | None = None,
        since: float | None = None,
        until: float | None = None,
        title_contains: str | None = None,
        limit: int | None = None,
    ) -> list[Session]:
        return await asyncio.to_thread(
            self._store.list_sessions,
            source=source,
            since=since,
            until=until,
            title_contains=title_contains,
            limit=limit,
        )

    async def messages(self, session_id: str) -> list[Message]:
        return await asyncio.to_thread(self._store.messages, session_id)

    async def all_messages(self, session_id: str | None = None, *, since: float | None = None) -> list[Message]:
        return await asyncio.to_thread(self._store.all_messages, session_id, since=since)

    async def search(
        self,
        text: str,
        *,
        session_id: str | None = None,
        role: str | None = None,
        source: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 20,
        order: Literal["relevance", "newest", "oldest"] = "relevance",
        include_inactive: bool = False,
        syntax: Literal["fts5", "words"] = "fts5",
    ) -> list[SearchHit]:
        return await asyncio.to_thread(
            self._store.search,
            text,
            session_id=session_id,
            role=role,
            source=source,
            since=since,
            until=until,
            limit=limit,
            order=order,
            include_inactive=include_inactive,
            syntax=syntax,
        )

    async def history(self, session_id: str, **query: Any) -> list[HistoryItem]:
        """A session's messages in append order with their states; see ``Store.history``."""
        return await asyncio.to_thread(self._store.history, session_id, **query)

    async def update_message(self, num: int, session_id: str, **fields: Any) -> int:
        return await asyncio.to_thread(self._store.update_message, num, session_id, **fields)

    async def rewrite(
        self,
        session_id: str,
        mode: Literal["delete", "archive", "compact"] = "delete",
        messages: Iterable[Message | Mapping[str, Any]] | None = None,
        *,
        active_only: bool = False,
    ) -> list[Appended]:
        items = None if messages is None else list(messages)
        return await asyncio.to_thread(self._store.rewrite, session_id, mode, items, active_only=active_only)

    async def delete_sessions(self, ids: Iterable[str], *, with_children: bool = False) -> list[str]:
        return await asyncio.to_thread(self._store.delete_sessions, list(ids), with_children=with_children)

    async def add_counters(self, session_id: str, **deltas: Any) -> int:
        return await asyncio.to_thread(self._store.add_counters, session_id, **deltas)

    async def set_title(self, session_id: str, title: str | None) -> int:
        return await asyncio.to_thread(self._store.set_title, session_id, title)

    async def reopen_session(self, id: str) -> int:
        return await asyncio.to_thread(self._store.reopen_session, id)

    async def set_meta(self, key: str, value: str | None) -> int:
        return await asyncio.to_thread(self._store.set_meta, key, value)

    async def get_meta(self, key: str) -> str | None:
        return await asyncio.to_thread(self._store.get_meta, key)

    async def all_meta(self) -> dict[str, str]:
        return await asyncio.to_thread(self._store.all_meta)

    async def message_counts(self) -> dict[str, int]:
        return await asyncio.to_thread(self._store.message_counts)

    async def import_hermes(self, path: str | os.PathLike[str]) -> ImportReport:
        return await asyncio.to_thread(self._store.import_hermes, path)

    async def status(self) -> StoreStatus:
        return await asyncio.to_thread(self._store.status)

    async def wait_indexed(self, timeout: float) -> bool:
        return await asyncio.to_thread(self._store.wait_indexed, timeout)

    async def close(self, timeout: float | None = None) -> bool:
        return await asyncio.to_thread(self._store.close, timeout)

    async def __aenter__(self) -> AsyncStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncStore({self._store!r})"
