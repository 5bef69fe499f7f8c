"""The `tidelog` command the package installs (`[project.scripts]`), run from the environment's
bin folder as a user runs it: the Rust command-line tool, in the Python process."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import tomllib
from pathlib import Path

import pytest

import tidelog

ROOT = Path(__file__).resolve().parents[3]
SCRIPTS = Path(sysconfig.get_path("scripts"))
TOOL = SCRIPTS / "tidelog"


def run(*args: str, input: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDELOG_") and k != "RUST_LOG"}
    return subprocess.run(
        [str(TOOL), *args], input=input, capture_output=True, text=True, timeout=timeout, env=env
    )


def workspace_version() -> str:
    with open(ROOT / "Cargo.toml", "rb") as f:
        return str(tomllib.load(f)["workspace"]["package"]["version"])


def test_the_command_is_installed_in_the_environment() -> None:
    assert TOOL.is_file() and os.access(TOOL, os.X_OK), f"no tidelog command in {SCRIPTS}"
    # The one on PATH inside the environment is this one.
    found = shutil.which("tidelog", path=str(SCRIPTS))
    assert found is not None and Path(found) == TOOL


def test_every_version_is_the_workspace_version() -> None:
    # One place: [workspace.package] version in the root Cargo.toml. maturin gives it to the
    # Python package (`dynamic = ["version"]`), the crates give it to `__version__` and the CLI.
    version = workspace_version()
    assert tidelog.__version__ == version
    assert importlib.metadata.version("tidelog") == version
    r = run("--version")
    assert (r.returncode, r.stdout, r.stderr) == (0, f"tidelog {version}\n", "")
    m = subprocess.run([sys.executable, "-m", "tidelog", "--version"], capture_output=True, text=True)
    assert (m.returncode, m.stdout) == (0, f"tidelog {version}\n")


def test_init_append_status_search(tmp_path: Path) -> None:
    d = tmp_path / "store"
    r = run("init", "--dir", str(d))
    assert r.returncode == 0, r.stderr
    lines = "".join(
        json.dumps({"session_id": "telegram:42", "role": "user", "content": f"invoice {i} for the boat"}) + "\n"
        for i in range(3)
    )
    r = run("append", "--jsonl", "--dir", str(d), input=lines)
    assert r.returncode == 0, r.stderr
    acks = [json.loads(line) for line in r.stdout.splitlines()]
    assert [a["ack"] for a in acks] == [1, 2, 3]
    r = run("verify", "--dir", str(d), "--json")
    assert r.returncode == 0, r.stderr
    r = run("search", "invoice", "--dir", str(d), "--json")
    assert r.returncode == 0, r.stderr
    assert "invoice" in r.stdout
    # The library sees what the command wrote.
    with tidelog.Store(d, read_only=True) as store:
        assert sorted(m.id for m in store.messages("telegram:42")) == sorted(a["id"] for a in acks)


def test_demo_starts_its_writer_processes_through_python(tmp_path: Path) -> None:
    # The executable is the Python interpreter: the writers run as `python -m tidelog`.
    r = run("demo", "--dir", str(tmp_path / "demo"), "--writers", "2", "--messages", "200", "--json")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    report = json.loads(r.stdout)
    assert report["lost"] == 0, report


def test_usage_error_and_missing_store_exit_2_without_traceback(tmp_path: Path) -> None:
    r = run("no-such-command")
    assert r.returncode == 2
    assert r.stderr.startswith("tidelog: error: "), r.stderr
    assert "Traceback" not in r.stderr
    r = run("stats", "--dir", str(tmp_path / "missing"))
    assert r.returncode == 2
    assert r.stderr.startswith(f"tidelog: error: no store at {tmp_path / 'missing'}"), r.stderr


def test_closed_stdout_ends_quietly(tmp_path: Path) -> None:
    # `tidelog export | head -1`: far more output than a pipe holds, so the writes meet EPIPE.
    d = tmp_path / "store"
    with tidelog.Store(d) as store:
        store.append_batch(
            [{"session_id": f"s{i % 5}", "role": "user", "content": f"message {i} " + "x" * 200} for i in range(2000)]
        )
    for cmd in ("export --dir {d}", "search message --limit 2000 --dir {d}"):
        shell = f"set -o pipefail; {TOOL} {cmd.format(d=d)} | head -1"
        r = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=120)
        assert (r.returncode, r.stderr) == (0, ""), (cmd, r.stderr)
        assert r.stdout.count("\n") == 1


def test_logging_goes_to_stderr_with_verbose(tmp_path: Path) -> None:
    d = tmp_path / "store"
    assert run("init", "--dir", str(d)).returncode == 0
    quiet = run("stats", "--dir", str(d))
    assert (quiet.returncode, quiet.stderr) == (0, "")
    loud = run("-v", "stats", "--dir", str(d))
    assert loud.returncode == 0
    assert "INFO" in loud.stderr, loud.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_stops_tail_follow(tmp_path: Path) -> None:
    # Python's own SIGINT handler would only set a flag while the Rust code runs.
    d = tmp_path / "store"
    assert run("init", "--dir", str(d)).returncode == 0
    p = subprocess.Popen([str(TOOL), "tail", "-f", "--dir", str(d)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(1.0)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == -signal.SIGINT, (p.returncode, err)
    assert b"Traceback" not in err
