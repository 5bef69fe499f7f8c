"""The exceptions tidelog raises, mirroring the Rust error kinds.

They are defined here, in Python, rather than with PyO3's ``create_exception!`` because two of
them need two bases (``InvalidInputError`` is a ``ValueError``; ``StorageError`` is an
``OSError``). The native module imports this module once and maps every Rust error variant to one
of these classes with a ``match`` (see ``bindings/python/src/errors.rs``), setting the details as
attributes. Attributes not known for an error are ``None``.
"""

from __future__ import annotations

__all__ = [
    "TidelogError",
    "InvalidInputError",
    "ClosedError",
    "ReadOnlyError",
    "NotAStoreError",
    "LockedError",
    "PoisonedError",
    "CorruptError",
    "StorageError",
    "DiskFullError",
    "IndexFailure",
    "TitleTakenError",
    "NotFoundError",
    "TooManyLanesError",
    "EmptyQueryError",
    "CompactorBusyError",
    "DestinationNotEmptyError",
    "HermesImportError",
]


class TidelogError(Exception):
    """Base class of every tidelog error."""


class InvalidInputError(TidelogError, ValueError):
    """A message, session, query or option was refused; nothing was written."""


class ClosedError(TidelogError):
    """The store was closed."""


class ReadOnlyError(TidelogError):
    """A write on a store opened with ``read_only=True``."""

    path: str | None = None


class NotAStoreError(TidelogError):
    """The folder holds no store (opening read-only needs an existing one)."""

    path: str | None = None


class LockedError(TidelogError):
    """Another writer holds a journal's lock.

    ``Store`` never raises it when opening: a process that finds a lane locked takes another one.
    """

    path: str | None = None


class PoisonedError(TidelogError):
    """An earlier write or sync failed; this process's lane refuses appends until the store is
    reopened (which runs recovery). ``cause`` is the first failure."""

    cause: str | None = None


class CorruptError(TidelogError):
    """Damaged data: ``path`` (segment file) and ``offset`` where known, ``lsn`` the first LSN
    affected (``last_lsn`` the last), ``lane`` for a record that does not decode, ``detail``
    what was wrong. ``tidelog repair --salvage`` keeps every valid record."""

    path: str | None = None
    offset: int | None = None
    lsn: int | None = None
    last_lsn: int | None = None
    lane: str | None = None
    detail: str | None = None


class StorageError(TidelogError, OSError):
    """A file operation failed (an ``OSError``: ``errno``, ``filename``, plus ``op``, what was
    being done)."""

    op: str | None = None


class DiskFullError(StorageError):
    """The disk is full. Nothing was acknowledged; free space, then reopen the store."""


class IndexFailure(TidelogError):
    """The SQLite index failed. It is derived from the journal: ``corrupt`` says the file is
    damaged (the compactor rebuilds it)."""

    corrupt: bool | None = None


class TitleTakenError(TidelogError, ValueError):
    """A session title is already used by another session (``other``); titles are unique."""

    title: str | None = None
    other: str | None = None


class NotFoundError(TidelogError, LookupError):
    """The message or session an operation names does not exist (``what``, ``id``)."""

    what: str | None = None
    id: str | None = None


class TooManyLanesError(TidelogError):
    """Every lane number the integer ids can tell apart (``max``) is in use in the store at
    ``path``; close idle writers."""

    path: str | None = None
    max: int | None = None


class EmptyQueryError(InvalidInputError):
    """A search query was empty or only whitespace."""


class CompactorBusyError(TidelogError):
    """An operation needing the compactor lock (``path``) found it held by a running process."""

    path: str | None = None


class DestinationNotEmptyError(TidelogError):
    """A destination folder (``path``, of a backup) already holds files."""

    path: str | None = None


class HermesImportError(TidelogError):
    """A Hermes ``state.db`` (``path``) could not be opened or read at all (damage that only
    costs rows is counted in the ``ImportReport`` instead)."""

    path: str | None = None
