//! Options of the message store.

use std::sync::Arc;
use std::time::Duration;

use tidelog_journal::{Durability, RecoveryMode};

use crate::health::TestHooks;
use crate::index::IndexOptions;
use crate::target::RemoteTarget;

/// Whether journal segments are ever removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Retention {
    /// Never remove anything: the journal is the history. The default.
    #[default]
    Off,
    /// Remove a sealed segment of this process's lane once every record in it is applied to
    /// the index by a durable (`synchronous=FULL`) SQLite commit. The index then holds the only
    /// copy of those messages.
    AfterIndexed,
}

/// Options for [`Store::open`](crate::Store::open).
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// When appends are acknowledged. Default: [`Durability::Sync`] (durable on return).
    pub durability: Durability,
    /// What opening a lane does about damage in the middle of its journal. Default:
    /// [`RecoveryMode::Strict`] (refuse that lane and report it; `tidelog repair --salvage` fixes it).
    pub recovery: RecoveryMode,
    /// Journal segment size. Default: 64 MiB.
    pub segment_size: u64,
    /// Largest encoded message or session record. Default: 64 MiB.
    pub max_record_size: u32,
    /// Compress journal entries (zstd, docs/format.md "Codec tag 3"): messages of 512 B to
    /// 16 KiB when appended, if that costs the group commit nothing (while an append waits for
    /// the commit in progress, or before it leads one), and longer records in place by the
    /// compactor when idle. `false`: entries are written as they are and the compactor
    /// compresses nothing (`tidelog checkpoint` still does). Readers read both forms whatever
    /// this says. Default: `true`.
    pub compression: bool,
    /// Run the background compactor in this process (it still runs in only one process at a
    /// time). Default: `true`.
    pub run_compactor: bool,
    /// Most entries applied in one SQLite transaction. Default: 2,000.
    pub batch_max_entries: usize,
    /// Most payload bytes applied in one SQLite transaction. Default: 16 MiB.
    pub batch_max_bytes: usize,
    /// Longest time spent gathering one batch. Default: 200 ms.
    pub batch_max_time: Duration,
    /// How often the compactor looks at other processes' lanes, and retries taking the
    /// compactor role. Appends of this process wake it at once. Default: 100 ms.
    pub poll_interval: Duration,
    /// How often the compactor runs `wal_checkpoint(TRUNCATE)`. Default: 5 minutes.
    pub checkpoint_interval: Duration,
    /// The longest [`Store::close`](crate::Store::close) waits for the compactor to reach a
    /// batch boundary. Default: 1 s.
    pub close_deadline: Duration,
    /// SQLite index settings (tool output prefix indexed, busy timeout).
    pub index: IndexOptions,
    /// Segment removal. Default: [`Retention::Off`].
    pub retention: Retention,
    /// How soon after a deletion its content is gone from every file of the store folder: the
    /// process holding the compactor role runs an erase pass once the oldest pending deletion
    /// has waited half of it (the other half is room for the pass and a retry), and
    /// [`Store::close`](crate::Store::close) with an erasure pending waits up to this long for the
    /// pass instead of `close_deadline`. Default: 60 s.
    pub erase_within: Duration,
    /// Open for reading only: claim no lane, write nothing, run no compactor. Reads see every
    /// lane (through read-only journal handles, beside live writers) and the index; appends fail
    /// with [`Error::ReadOnly`](crate::Error::ReadOnly). The folder must already hold a store.
    /// Default: `false`.
    pub read_only: bool,
    /// A remote index (PostgreSQL: `tidelog_pg::PgTarget`) fed from a shipper thread beside
    /// the compactor, one process per store at a time, with back-off on failure; appends and
    /// the local index never wait for it. With [`Retention::AfterIndexed`], segments are kept
    /// until the remote index has them too. Default: `None`.
    pub remote: Option<Arc<dyn RemoteTarget>>,
    /// Fault points and shorter supervision timings for tests (not part of the API).
    #[doc(hidden)]
    pub test_hooks: TestHooks,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            durability: Durability::Sync,
            recovery: RecoveryMode::Strict,
            segment_size: 64 << 20,
            max_record_size: 64 << 20,
            compression: true,
            run_compactor: true,
            batch_max_entries: 2_000,
            batch_max_bytes: 16 << 20,
            batch_max_time: Duration::from_millis(200),
            poll_interval: Duration::from_millis(100),
            checkpoint_interval: Duration::from_secs(300),
            close_deadline: Duration::from_secs(1),
            index: IndexOptions::default(),
            retention: Retention::Off,
            erase_within: Duration::from_secs(60),
            read_only: false,
            remote: None,
            test_hooks: TestHooks::default(),
        }
    }
}

impl StoreOptions {
    pub(crate) fn journal_options(&self) -> tidelog_journal::Options {
        tidelog_journal::Options {
            durability: self.durability,
            recovery: self.recovery,
            segment_size: self.segment_size,
            max_record_size: self.max_record_size,
            ..tidelog_journal::Options::default()
        }
    }
}
