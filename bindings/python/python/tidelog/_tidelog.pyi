# Hand-written stubs of the native module (bindings/python/src). Keep in step with the Rust code.
import os
from collections.abc import Iterable, Mapping
from typing import Any, Literal, final

__version__: str
__all__ = [
    "Store",
    "Exclusive",
    "Message",
    "Session",
    "SearchHit",
    "Appended",
    "StoreStatus",
    "LaneStatus",
    "IndexStatus",
    "CompactorStatus",
    "Counters",
    "HistoryItem",
    "ImportReport",
    "_error_for_test",
    "_bench_append",
    "_cli_main",
    "__version__",
]

_Json = str | list[Any] | dict[str, Any]

@final
class Message:
    """One chat message. Build one for ``Store.append_batch``; read ones come from the store."""

    def __new__(
        cls,
        session_id: str,
        role: str,
        content: str | None = None,
        *,
        id: str | None = None,
        tool_call_id: str | None = None,
        tool_name: str | None = None,
        tool_calls: _Json | None = None,
        reasoning: str | None = None,
        timestamp: float | None = None,
        token_count: int | None = None,
        finish_reason: str | None = None,
        source: str | None = None,
        extra: str | dict[str, Any] | None = None,
        platform_message_id: str | None = None,
        api_content: str | None = None,
    ) -> Message: ...
    @property
    def id(self) -> str:
        """Empty on a message built without one (the store assigns a UUIDv7)."""
    @property
    def session_id(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def content(self) -> str | None: ...
    @property
    def tool_call_id(self) -> str | None: ...
    @property
    def tool_name(self) -> str | None: ...
    @property
    def tool_calls(self) -> str | None:
        """JSON text."""
    @property
    def reasoning(self) -> str | None: ...
    @property
    def timestamp(self) -> float:
        """Seconds since the epoch; 0.0 on a message built without one (the store uses now)."""
    @property
    def token_count(self) -> int | None: ...
    @property
    def finish_reason(self) -> str | None: ...
    @property
    def source(self) -> str | None: ...
    @property
    def extra(self) -> str | None:
        """JSON text."""
    @property
    def num(self) -> int:
        """Integer id: unique, increasing in append order; 0 before the store assigns it."""
    @property
    def platform_message_id(self) -> str | None: ...
    @property
    def api_content(self) -> str | None: ...
    def to_dict(self, *, parse_json: bool = False) -> dict[str, Any]: ...
    def __eq__(self, value: object, /) -> bool: ...

@final
class Counters:
    """A session's summed counters."""

    @property
    def input_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...
    @property
    def cache_read_tokens(self) -> int: ...
    @property
    def cache_write_tokens(self) -> int: ...
    @property
    def reasoning_tokens(self) -> int: ...
    @property
    def api_call_count(self) -> int: ...
    @property
    def estimated_cost_usd(self) -> float: ...
    @property
    def actual_cost_usd(self) -> float: ...
    def to_dict(self) -> dict[str, Any]: ...
    def __eq__(self, value: object, /) -> bool: ...

@final
class HistoryItem:
    """A message with its state, from ``Store.history``."""

    @property
    def message(self) -> Message: ...
    @property
    def active(self) -> bool: ...
    @property
    def compacted(self) -> bool: ...
    def to_dict(self, *, parse_json: bool = False) -> dict[str, Any]: ...

@final
class ImportReport:
    """What ``Store.import_hermes`` read and wrote."""

    @property
    def source(self) -> str: ...
    @property
    def schema_version(self) -> int | None: ...
    @property
    def sessions(self) -> int: ...
    @property
    def messages(self) -> int: ...
    @property
    def added_messages(self) -> int: ...
    @property
    def changed_sessions(self) -> int: ...
    @property
    def unreadable_rows(self) -> int: ...
    @property
    def refused(self) -> list[str]: ...
    @property
    def warnings(self) -> list[str]: ...
    def to_dict(self) -> dict[str, Any]: ...

@final
class Session:
    @property
    def id(self) -> str: ...
    @property
    def source(self) -> str | None: ...
    @property
    def model(self) -> str | None: ...
    @property
    def title(self) -> str | None: ...
    @property
    def user_id(self) -> str | None: ...
    @property
    def chat_id(self) -> str | None: ...
    @property
    def parent_session_id(self) -> str | None: ...
    @property
    def started_at(self) -> float | None: ...
    @property
    def ended_at(self) -> float | None: ...
    @property
    def end_reason(self) -> str | None: ...
    @property
    def extra(self) -> str | None:
        """JSON text."""
    @property
    def counters(self) -> Counters: ...
    def to_dict(self, *, parse_json: bool = False) -> dict[str, Any]: ...
    def __eq__(self, value: object, /) -> bool: ...

@final
class SearchHit:
    @property
    def message(self) -> Message: ...
    @property
    def snippet(self) -> str:
        """About 64 characters around the match, matches in ``[`` ``]``, cuts marked ``…``."""
    @property
    def score(self) -> float:
        """Higher is better; 0.0 for unranked matches."""
    @property
    def active(self) -> bool: ...
    @property
    def compacted(self) -> bool: ...
    def to_dict(self, *, parse_json: bool = False) -> dict[str, Any]: ...

@final
class Appended:
    @property
    def id(self) -> str: ...
    @property
    def num(self) -> int | None:
        """Integer id; None if the id was already stored."""
    @property
    def lsn(self) -> int | None:
        """Journal position in this process's lane; None if the id was already stored."""
    @property
    def duplicate(self) -> bool: ...
    def to_dict(self) -> dict[str, Any]: ...
    def __eq__(self, value: object, /) -> bool: ...

@final
class LaneStatus:
    @property
    def name(self) -> str: ...
    @property
    def own(self) -> bool: ...
    @property
    def last_lsn(self) -> int: ...
    @property
    def applied_lsn(self) -> int | None: ...
    @property
    def error(self) -> str | None: ...
    def to_dict(self) -> dict[str, Any]: ...

@final
class IndexStatus:
    @property
    def state(self) -> Literal["unchecked", "healthy", "rebuilding", "failed"]: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def done(self) -> int | None: ...
    @property
    def total(self) -> int | None: ...
    def to_dict(self) -> dict[str, Any]: ...

@final
class CompactorStatus:
    @property
    def running_here(self) -> bool: ...
    @property
    def batches(self) -> int: ...
    @property
    def entries_applied(self) -> int: ...
    @property
    def retries(self) -> int: ...
    @property
    def last_error(self) -> str | None: ...
    @property
    def undecodable(self) -> int: ...
    @property
    def last_checkpoint_unix_ms(self) -> int | None: ...
    @property
    def index_quarantined(self) -> int: ...
    @property
    def panics(self) -> int:
        """Panics of the compactor thread since the store was opened (each restarted it)."""
    @property
    def last_panic(self) -> str | None: ...
    @property
    def degraded(self) -> str | None:
        """Why the compactor is degraded (a recent panic, or failing for 30 s); None when healthy."""
    def to_dict(self) -> dict[str, Any]: ...

@final
class StoreStatus:
    @property
    def dir(self) -> str: ...
    @property
    def lane(self) -> str: ...
    @property
    def lanes(self) -> list[LaneStatus]: ...
    @property
    def index(self) -> IndexStatus: ...
    @property
    def compactor(self) -> CompactorStatus: ...
    @property
    def unindexed(self) -> int: ...
    @property
    def journal_poisoned(self) -> str | None: ...
    @property
    def problems(self) -> list[str]: ...
    @property
    def is_degraded(self) -> bool: ...
    def to_dict(self) -> dict[str, Any]: ...

@final
class Exclusive:
    """The store-wide write lock, held from ``__enter__`` to ``__exit__``."""

    def __enter__(self) -> Exclusive: ...
    def __exit__(self, *exc: object) -> bool: ...

@final
class Store:
    """A store folder open for appending (or reading, with ``read_only=True``). Thread-safe."""

    def __new__(
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
    ) -> Store: ...
    @property
    def path(self) -> str: ...
    @property
    def lane(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    def append(
        self,
        session_id: str,
        role: str,
        content: str | None = None,
        *,
        id: str | None = None,
        tool_call_id: str | None = None,
        tool_name: str | None = None,
        tool_calls: _Json | None = None,
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
    def append_message(
        self,
        session_id: str,
        role: str,
        content: str | None = None,
        *,
        id: str | None = None,
        tool_call_id: str | None = None,
        tool_name: str | None = None,
        tool_calls: _Json | None = None,
        reasoning: str | None = None,
        timestamp: float | None = None,
        token_count: int | None = None,
        finish_reason: str | None = None,
        source: str | None = None,
        extra: str | dict[str, Any] | None = None,
        platform_message_id: str | None = None,
        api_content: str | None = None,
    ) -> Appended:
        """Like ``append``; returns the ``Appended`` (id, integer id ``num``, LSN)."""
    def append_batch(self, messages: Iterable[Message | Mapping[str, Any]]) -> list[Appended]:
        """One durable commit for all; nothing is written if any is invalid."""
    def upsert_session(
        self,
        id: str,
        *,
        source: str | None = None,
        model: str | None = None,
        title: str | None = None,
        user_id: str | None = None,
        chat_id: str | None = None,
        parent_session_id: str | None = None,
        started_at: float | None = None,
        ended_at: float | None = None,
        end_reason: str | None = None,
        extra: str | dict[str, Any] | None = None,
        reopen: bool = False,
        clear_title: bool = False,
        fill_only: bool = False,
    ) -> int:
        """Sets every given field (with ``fill_only``, only empty ones); returns the LSN."""
    def end_session(self, id: str, reason: str) -> int: ...
    def get_session(self, id: str) -> Session | None: ...
    def list_sessions(
        self,
        *,
        source: str | None = None,
        since: float | None = None,
        until: float | None = None,
        title_contains: str | None = None,
        limit: int | None = None,
    ) -> list[Session]: ...
    def messages(self, session_id: str) -> list[Message]: ...
    def all_messages(self, session_id: str | None = None, *, since: float | None = None) -> list[Message]: ...
    def search(
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
        """Full-text search: FTS5's query language on the trigram index (``syntax="fts5"``; an
        invalid query raises ``InvalidInputError`` with FTS5's message), or literal words that
        must each occur as a case-insensitive substring (``syntax="words"``)."""
    def search_hermes(
        self,
        query: str,
        *,
        source_filter: list[str] | None = None,
        exclude_sources: list[str] | None = None,
        role_filter: list[str] | None = None,
        sort: str | None = None,
        include_inactive: bool = False,
        limit: int = 20,
        offset: int = 0,
    ) -> list[SearchHit]:
        """Hermes Agent's ``search_messages`` semantics (release 0.19.0): the query cleaned and
        routed as Hermes does (word index, trigram index for CJK, substrings for short CJK
        words), Hermes' filters, order and snippets (``>>>``, ``<<<``)."""
    def history(
        self,
        session_id: str,
        *,
        include_inactive: bool = False,
        include_compacted: bool = False,
        after_id: int | None = None,
        limit: int | None = None,
        latest: bool = False,
    ) -> list[HistoryItem]:
        """A session's messages in append order with their states."""
    def update_message(
        self,
        num: int,
        session_id: str,
        *,
        content: str | None = None,
        api_content: str | None = None,
        platform_message_id: str | None = None,
        tool_calls: _Json | None = None,
        finish_reason: str | None = None,
        token_count: int | None = None,
        extra: str | dict[str, Any] | None = None,
    ) -> int: ...
    def rewrite(
        self,
        session_id: str,
        mode: Literal["delete", "archive", "compact"] = "delete",
        messages: Iterable[Message | Mapping[str, Any]] | None = None,
        *,
        active_only: bool = False,
    ) -> list[Appended]:
        """Deletes, archives or compacts the earlier messages, then appends ``messages``."""
    def delete_sessions(self, ids: Iterable[str], *, with_children: bool = False) -> list[str]: ...
    def add_counters(
        self,
        session_id: str,
        *,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
        reasoning_tokens: int = 0,
        api_call_count: int = 0,
        estimated_cost_usd: float = 0.0,
        actual_cost_usd: float = 0.0,
    ) -> int: ...
    def set_title(self, session_id: str, title: str | None) -> int:
        """Raises ``TitleTakenError`` if another session has the title."""
    def reopen_session(self, id: str) -> int: ...
    def exclusive(self) -> Exclusive: ...
    def set_meta(self, key: str, value: str | None) -> int: ...
    def get_meta(self, key: str) -> str | None: ...
    def all_meta(self) -> dict[str, str]: ...
    def message_counts(self) -> dict[str, int]: ...
    def import_hermes(self, path: str | os.PathLike[str]) -> ImportReport:
        """Imports a Hermes ``state.db`` (opened read-only, never changed)."""
    def _text_at(self, lane: int, segment: int, offset: int, lsn: int, rid: int) -> str | None: ...
    def status(self) -> StoreStatus: ...
    def wait_indexed(self, timeout: float) -> bool: ...
    def close(self, timeout: float | None = None) -> bool:
        """True when closed; False if calls on other threads still ran at the timeout."""
    def __enter__(self) -> Store: ...
    def __exit__(self, *exc: object) -> bool: ...

def _error_for_test(kind: str) -> BaseException: ...
def _bench_append(path: str | os.PathLike[str], count: int, content_len: int = 200, threads: int = 1) -> float:
    """Seconds ``count`` appends take in Rust alone (for the benchmark)."""
def _cli_main(argv: list[str], relaunch: list[str]) -> int:
    """Runs the ``tidelog`` command-line tool on ``argv`` (``argv[0]`` is the program name) with
    the GIL released and returns its exit code; ``relaunch`` starts the tool in a new process.
    Used by ``tidelog._cli.main`` (the ``tidelog`` command)."""
