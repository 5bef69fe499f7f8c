"""Tidelog: a durable message store for AI-agent gateways.

Every message is appended to a checksummed journal and synced before ``Store.append`` returns;
a background compactor copies it into SQLite FTS5 for search. Reads include every acknowledged
message, indexed or not yet.

>>> import tidelog, tempfile
>>> with tidelog.Store(tempfile.mkdtemp()) as store:
...     mid = store.append("telegram:42", "user", "Where is the invoice for the boat?")
...     [hit.message.id == mid for hit in store.search("invoice")]
[True]

``Store`` is thread-safe and releases the GIL while it waits on the disk; ``tidelog.aio`` offers
the same calls as coroutines.
"""

from __future__ import annotations

from ._errors import (
    ClosedError,
    CompactorBusyError,
    CorruptError,
    DestinationNotEmptyError,
    DiskFullError,
    EmptyQueryError,
    HermesImportError,
    IndexFailure,
    InvalidInputError,
    LockedError,
    TidelogError,
    NotAStoreError,
    NotFoundError,
    PoisonedError,
    ReadOnlyError,
    StorageError,
    TitleTakenError,
    TooManyLanesError,
)
from ._tidelog import (
    Appended,
    CompactorStatus,
    Counters,
    Exclusive,
    HistoryItem,
    ImportReport,
    IndexStatus,
    LaneStatus,
    Message,
    SearchHit,
    Session,
    Store,
    StoreStatus,
    __version__,
)

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
    "__version__",
]
