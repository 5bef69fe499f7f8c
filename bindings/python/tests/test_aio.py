"""tidelog.aio.AsyncStore: every call as a coroutine, the loop never blocked."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import tidelog
from tidelog.aio import AsyncStore


def test_async_round_trip(store_dir: Path) -> None:
    async def main() -> None:
        async with await AsyncStore.open(store_dir, durability="sync") as s:
            assert isinstance(s.store, tidelog.Store)
            mid = await s.append("s", "user", "the invoice for the boat", timestamp=1.0, extra={"a": 1})
            out = await s.append_batch([{"session_id": "s", "role": "assistant", "content": "found it", "timestamp": 2.0}])
            assert out[0].lsn is not None
            await s.upsert_session("s", title="Boat")
            await s.end_session("s", "done")
            assert [m.id for m in await s.messages("s")][0] == mid
            assert len(await s.all_messages()) == 2
            session = await s.get_session("s")
            assert session is not None and session.title == "Boat" and session.end_reason == "done"
            assert [x.id for x in await s.list_sessions(title_contains="boat")] == ["s"]
            assert await s.wait_indexed(10)
            hits = await s.search("invoice", order="newest")
            assert [h.message.id for h in hits] == [mid]
            assert not (await s.status()).is_degraded
            # Concurrent appends from one loop run in parallel worker threads.
            ids = await asyncio.gather(*(s.append("c", "user", str(i)) for i in range(64)))
            assert len(set(ids)) == 64
            assert len(await s.messages("c")) == 64
        assert s.closed
        with pytest.raises(tidelog.ClosedError):
            await s.append("s", "user", "late")

    asyncio.run(main())


def test_async_errors(store_dir: Path) -> None:
    async def main() -> None:
        with pytest.raises(tidelog.NotAStoreError):
            await AsyncStore.open(store_dir, read_only=True)
        async with await AsyncStore.open(store_dir) as s:
            with pytest.raises(tidelog.InvalidInputError):
                await s.append("s", "")

    asyncio.run(main())
