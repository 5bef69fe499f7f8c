"""One validation for every door: what the Python binding accepts, the JSON-lines sidecar
accepts too (the store's rules, in the Rust core), so the documented restore path
(`tidelog export | tidelog append --jsonl`) restores every message."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import tidelog

REFUSED = [
    {"timestamp": -1},
    {"timestamp": 1e300},
    {"timestamp": 2**70},
    {"timestamp": float("nan")},
    {"extra": [1, 2]},
    {"extra": "not an object"},
    {"extra": 3},
]
ACCEPTED = [
    {},
    {"timestamp": 1_700_000_000.25},
    {"timestamp": 253_402_300_799},
    {"extra": {"chat": 42, "nested": {"a": [1, None]}}},
    {"extra": '{"b": 2.50, "a": 1}'},
]


def cli(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tidelog", *args], input=input, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("fields", REFUSED, ids=repr)
def test_the_binding_refuses_what_the_sidecar_refuses(store: tidelog.Store, fields: dict[str, object]) -> None:
    with pytest.raises(tidelog.InvalidInputError) as e:
        store.append("s", "user", "hello", **fields)  # type: ignore[arg-type]
    assert next(iter(fields)) in str(e.value)
    assert store.messages("s") == []


def test_export_then_append_jsonl_restores_every_accepted_message(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    with tidelog.Store(src) as store:
        for i, fields in enumerate(ACCEPTED):
            store.append("s", "user", f"message {i}", **fields)  # type: ignore[arg-type]
        before = [m.to_dict(parse_json=True) for m in store.messages("s")]
    exported = cli("export", "--dir", str(src))
    assert exported.returncode == 0, exported.stderr
    restored = cli("append", "--jsonl", "--dir", str(dst), input=exported.stdout)
    assert restored.returncode == 0, restored.stderr + restored.stdout
    assert all("ack" in json.loads(line) for line in restored.stdout.splitlines())
    with tidelog.Store(dst, read_only=True) as store:
        after = [m.to_dict(parse_json=True) for m in store.messages("s")]
    keep = ("id", "content", "timestamp", "extra")
    def rows(ms: list[dict[str, object]]) -> list[dict[str, object]]:
        return sorted(({k: m[k] for k in keep} for m in ms), key=lambda m: str(m["content"]))

    assert len(after) == len(ACCEPTED)
    assert rows(after) == rows(before)
    assert rows(before)[4]["extra"] == {"a": 1, "b": 2.5}
