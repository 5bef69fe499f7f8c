"""Appends through the Python binding against the Rust store and against Hermes-style SQLite.

Run against a release build of the package (a debug build measures the debug build):

    python -m venv /tmp/bench-venv && /tmp/bench-venv/bin/pip install ./bindings/python
    /tmp/bench-venv/bin/python bindings/python/bench/bench.py [--count 2000] [--dir /path/on/the/disk]

Every configuration appends ``--count`` messages of ``--size`` characters, each durable when the
call returns, into a fresh folder under ``--dir`` (default: a temporary folder; put it on the disk
you care about: the figures are mostly fsync latency). Printed: messages per second, and the
ratios the targets are about.

1. Rust: ``tidelog._tidelog._bench_append`` appends from Rust threads with no Python in the
   loop (the same build, the same run).
2. Python through the binding: ``Store.append`` from 1 and 8 Python threads.
3. ``tidelog.hermes.SessionDB.append_message`` (the Hermes adapter) from 1 thread.
4. Hermes-style SQLite from Python: WAL, ``synchronous=FULL``, an FTS5 table (unicode61) and a
   trigram table fed by ``AFTER INSERT`` triggers, one ``BEGIN IMMEDIATE`` transaction per
   message, one connection shared under a lock (as Hermes' ``_execute_write`` does), from 1 and
   8 threads.
5. The longest asyncio event-loop stall (a 1 ms ticker) while 8 threads append through the
   binding, and while 8 threads append to Hermes-style SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import tidelog
from tidelog._tidelog import _bench_append
from tidelog.hermes import SessionDB

HERMES_SCHEMA = """
PRAGMA journal_mode=WAL;
PRAGMA synchronous=FULL;
CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, source TEXT NOT NULL, started_at REAL NOT NULL,
    message_count INTEGER DEFAULT 0);
CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL,
    role TEXT NOT NULL, content TEXT, tool_call_id TEXT, tool_calls TEXT, tool_name TEXT,
    timestamp REAL NOT NULL, token_count INTEGER, finish_reason TEXT, active INTEGER NOT NULL DEFAULT 1);
CREATE INDEX IF NOT EXISTS idx_messages_session ON messages(session_id, timestamp);
CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5(content, tool_name, tool_calls,
    content='messages', content_rowid='id');
CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts_trigram USING fts5(content, tool_name,
    content='messages', content_rowid='id', tokenize='trigram');
CREATE TRIGGER IF NOT EXISTS messages_ai AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts(rowid, content, tool_name, tool_calls)
        VALUES (new.id, new.content, new.tool_name, new.tool_calls);
    INSERT INTO messages_fts_trigram(rowid, content, tool_name) VALUES (new.id, new.content, new.tool_name);
END;
"""


class HermesStyle:
    """A SQLite store written the way Hermes Agent writes ``state.db``."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=60)
        self.conn.executescript(HERMES_SCHEMA)
        self.lock = threading.Lock()

    def append(self, session_id: str, role: str, content: str) -> int:
        with self.lock:
            c = self.conn
            c.execute("BEGIN IMMEDIATE")
            try:
                c.execute(
                    "INSERT OR IGNORE INTO sessions (id, source, started_at) VALUES (?, 'bench', ?)",
                    (session_id, time.time()),
                )
                cur = c.execute(
                    "INSERT INTO messages (session_id, role, content, timestamp) VALUES (?, ?, ?, ?)",
                    (session_id, role, content, time.time()),
                )
                c.execute("UPDATE sessions SET message_count = message_count + 1 WHERE id = ?", (session_id,))
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
            return int(cur.lastrowid or 0)

    def close(self) -> None:
        self.conn.close()


def run_threads(count: int, threads: int, append: Callable[[int, int], object]) -> float:
    """Seconds for ``count`` calls of ``append(thread, i)`` spread over ``threads`` threads."""
    shares = [count // threads + (1 if t < count % threads else 0) for t in range(threads)]
    barrier = threading.Barrier(threads + 1)

    def worker(t: int) -> None:
        barrier.wait()
        for i in range(shares[t]):
            append(t, i)

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    barrier.wait()
    started = time.perf_counter()
    for th in pool:
        th.join()
    return time.perf_counter() - started


async def longest_stall(work: Callable[[], object]) -> tuple[float, float]:
    """Runs ``work`` in a plain thread while a 1 ms ticker runs on the loop; returns the longest
    gap between ticks beyond the 1 ms asked (seconds) and the 99th percentile of the gaps."""
    done = threading.Event()

    def runner() -> None:
        try:
            work()
        finally:
            done.set()

    th = threading.Thread(target=runner)
    gaps: list[float] = []
    th.start()
    last = time.perf_counter()
    while not done.is_set():
        await asyncio.sleep(0.001)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now
    th.join()
    gaps.sort()
    return (gaps[-1] - 0.001 if gaps else 0.0), (gaps[len(gaps) * 99 // 100] if gaps else 0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=2000, help="messages per configuration (default 2000)")
    ap.add_argument("--size", type=int, default=200, help="characters per message (default 200)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are shown (default 3)")
    ap.add_argument("--dir", type=Path, default=None, help="where to create the stores (default: a temp folder)")
    args = ap.parse_args()
    count, size = args.count, args.size
    content = "x" * size
    base = Path(tempfile.mkdtemp(prefix="tidelog-bench-", dir=args.dir))
    n = 0

    def fresh(name: str) -> Path:
        nonlocal n
        n += 1
        return base / f"{n:02d}-{name}"

    print(f"# {platform.platform()}, {os.cpu_count()} cpus, Python {platform.python_version()}, "
          f"SQLite {sqlite3.sqlite_version}, tidelog {tidelog.__version__}")
    print(f"# {count} messages of {size} characters per configuration and round, {args.rounds} interleaved "
          f"rounds (median shown), folder {base}")

    def binding(threads: int) -> Callable[[], float]:
        def run() -> float:
            with tidelog.Store(fresh(f"py{threads}")) as store:
                return run_threads(count, threads, lambda t, i: store.append(f"bench-{t}", "user", content))

        return run

    def adapter() -> float:
        with SessionDB(fresh("adapter") / "state.db") as db:
            db.create_session("bench-0", "bench")
            return run_threads(count, 1, lambda t, i: db.append_message("bench-0", "user", content))

    def hermes_style(threads: int) -> Callable[[], float]:
        def run() -> float:
            p = fresh(f"sqlite{threads}")
            p.mkdir()
            h = HermesStyle(p / "state.db")
            try:
                return run_threads(count, threads, lambda t, i: h.append(f"bench-{t}", "user", content))
            finally:
                h.close()

        return run

    configs: dict[str, Callable[[], float]] = {
        "rust store, 1 thread": lambda: _bench_append(fresh("rust1"), count, size, 1),
        "python binding Store.append, 1 thread": binding(1),
        "tidelog.hermes SessionDB.append_message, 1": adapter,
        "hermes-style sqlite, 1 thread": hermes_style(1),
        "rust store, 8 threads": lambda: _bench_append(fresh("rust8"), count, size, 8),
        "python binding Store.append, 8 threads": binding(8),
        "hermes-style sqlite, 8 threads": hermes_style(8),
    }
    samples: dict[str, list[float]] = {k: [] for k in configs}
    for _ in range(args.rounds):
        for name, run in configs.items():
            samples[name].append(count / run())
    rates = {k: statistics.median(v) for k, v in samples.items()}
    for name, rate in rates.items():
        spread = ", ".join(f"{r:.0f}" for r in samples[name])
        print(f"{name:<44} {rate:>9.0f} msg/s  ({1e6 / rate:,.0f} us/msg; rounds: {spread})")

    idle, idle_median = asyncio.run(longest_stall(lambda: time.sleep(2.0)))
    print(f"{'asyncio stall, idle (machine noise)':<44} {idle * 1e3:>9.2f} ms longest (p99 tick {idle_median * 1e3:.2f} ms)")
    with tidelog.Store(fresh("stall")) as store:
        stall, median = asyncio.run(
            longest_stall(lambda: run_threads(count, 8, lambda t, i: store.append(f"bench-{t}", "user", content)))
        )
    print(f"{'asyncio stall, 8 threads via binding':<44} {stall * 1e3:>9.2f} ms longest (p99 tick {median * 1e3:.2f} ms)")
    p = fresh("stall-sqlite")
    p.mkdir()
    h = HermesStyle(p / "state.db")
    sq_stall, sq_median = asyncio.run(
        longest_stall(lambda: run_threads(count, 8, lambda t, i: h.append(f"bench-{t}", "user", content)))
    )
    h.close()
    print(f"{'asyncio stall, 8 threads hermes-style sqlite':<44} {sq_stall * 1e3:>9.2f} ms longest "
          f"(p99 tick {sq_median * 1e3:.2f} ms)")

    r1 = rates["python binding Store.append, 1 thread"] / rates["rust store, 1 thread"]
    s1 = rates["python binding Store.append, 1 thread"] / rates["hermes-style sqlite, 1 thread"]
    s8 = rates["python binding Store.append, 8 threads"] / rates["hermes-style sqlite, 8 threads"]
    print(f"binding / rust at 1 thread: {r1:.2f}x (target >= 0.8x)")
    print(f"binding / hermes-style sqlite: {s1:.2f}x at 1 thread, {s8:.2f}x at 8 threads")
    print(f"longest loop stall with 8 appending threads: {stall * 1e3:.2f} ms (target < 5 ms; idle: {idle * 1e3:.2f} ms)")


if __name__ == "__main__":
    main()
