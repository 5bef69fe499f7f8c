"""A Python writer killed with SIGKILL mid-stream loses nothing it was told was durable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import tidelog

CHILD = textwrap.dedent(
    """
    import sys
    import tidelog

    store = tidelog.Store(sys.argv[1])
    print("ready", flush=True)
    i = 0
    while True:
        mid = store.append("crash", "user", f"message {i}")
        # Printed only once append returned: the message is durable now.
        print(mid, flush=True)
        i += 1
    """
)


def test_sigkill_mid_stream_keeps_every_acknowledged_id(store_dir: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(store_dir)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        acked: list[str] = []
        deadline = time.monotonic() + 30
        while len(acked) < 300 and time.monotonic() < deadline:
            line = child.stdout.readline()
            assert line, "writer exited early"
            acked.append(line.strip())
        os.kill(child.pid, signal.SIGKILL)
        # Lines written before the kill are still in the pipe: they were acknowledged too.
        acked.extend(line.strip() for line in child.stdout if line.endswith("\n"))
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert len(acked) >= 300
    with tidelog.Store(store_dir) as s:
        stored = [m.id for m in s.messages("crash")]
        missing = set(acked) - set(stored)
        assert not missing, f"{len(missing)} acknowledged ids lost"
        # Order is kept and nothing unexpected appeared before the last acknowledged id.
        assert stored[: len(acked)] == acked
        assert not s.status().is_degraded
