"""The whole public surface of Hermes Agent's ``hermes_state`` (hermes-agent 0.19.0): every public
method of ``SessionDB`` exists in ``tidelog.hermes.SessionDB`` with the same parameters (names,
kinds, defaults), and the module-level names Hermes code imports from ``hermes_state`` exist in
``tidelog.hermes``, so a re-exporting module works as well as ``install()``."""

from __future__ import annotations

import inspect

import pytest
from hermes_diff import REAL, _hermes_state, require_hermes

import tidelog.hermes


def _public_methods(cls: type) -> list[str]:
    return sorted(n for n, v in vars(cls).items() if not n.startswith("_") and callable(v))


def _params(fn: object) -> list[tuple[str, object, object]]:
    sig = inspect.signature(fn)  # type: ignore[arg-type]
    return [(p.name, p.kind, p.default) for p in sig.parameters.values()]


def test_every_public_method_of_hermes_sessiondb_exists_with_its_parameters() -> None:
    require_hermes()
    names = _public_methods(REAL)
    assert len(names) >= 107, len(names)
    missing = [n for n in names if not callable(getattr(tidelog.hermes.SessionDB, n, None))]
    assert missing == []
    differ = {
        n: (_params(getattr(REAL, n)), _params(getattr(tidelog.hermes.SessionDB, n)))
        for n in names
        if _params(getattr(REAL, n)) != _params(getattr(tidelog.hermes.SessionDB, n))
    }
    assert differ == {}


@pytest.mark.parametrize(
    "name",
    [
        "SessionDB",
        "AsyncSessionDB",
        "DEFAULT_DB_PATH",
        "SCHEMA_VERSION",
        "format_session_db_unavailable",
        "apply_wal_with_fallback",
        "is_malformed_db_error",
        "repair_state_db_schema",
        "get_last_init_error",
        "workspace_key",
    ],
)
def test_names_hermes_code_imports_exist(name: str) -> None:
    require_hermes()
    assert hasattr(_hermes_state, name)
    assert hasattr(tidelog.hermes, name), name
