//! Options and policies.

use std::sync::Arc;

use crate::storage::{OsStorage, Storage};

/// When an append is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Every commit is synced (`fdatasync` on Linux, `F_FULLFSYNC` on Apple platforms) before
    /// `append` returns. An acknowledged append survives a process kill and a power cut.
    /// Concurrent appenders share one write and one sync.
    #[default]
    Sync,
    /// Appends are written to the OS before they return but synced only at segment rotation,
    /// [`Journal::sync`](crate::Journal::sync) and close. NOT durable: an acknowledged append
    /// survives a process kill but may be lost on a power cut or OS crash.
    Buffered,
}

/// What opening does about damage that is not a torn tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryMode {
    /// A torn tail (damage with no valid record after it, in the last segment) is copied to
    /// `quarantine/` and cut off. Damage in the middle of the log makes `open` fail with an error
    /// naming the segment file, the offset and the LSNs affected. Nothing acknowledged is ever
    /// dropped silently.
    #[default]
    Strict,
    /// As `Strict` for torn tails; damage in the middle is copied to `quarantine/`, recorded in
    /// the journal's `holes.json` manifest so readers skip it, and reported with exactly the LSNs
    /// that were lost. Every other valid record is kept. Segment files are never rewritten.
    Salvage,
}

/// How much of the sealed segments `open` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SealedCheck {
    /// Read each sealed segment's header and footer and check the chain (ids, LSN ranges,
    /// digests); do not read the records. Opening costs O(segments) plus a scan of the active
    /// segment. Damage inside a sealed record is found when it is read, or by [`verify`](crate::verify).
    #[default]
    Footer,
    /// Scan every record of every segment and check every digest (what `verify` does).
    Full,
}

/// Options for [`Journal::open`](crate::Journal::open).
#[derive(Debug, Clone)]
pub struct Options {
    /// When appends are acknowledged. Default: [`Durability::Sync`].
    pub durability: Durability,
    /// Policy for mid-log damage. Default: [`RecoveryMode::Strict`].
    pub recovery: RecoveryMode,
    /// How much of the sealed segments opening reads. Default: [`SealedCheck::Footer`].
    pub sealed_check: SealedCheck,
    /// Segment size at which the active segment is sealed and a new one started. A batch that is
    /// larger than this still goes into one segment. Default: 64 MiB.
    pub segment_size: u64,
    /// Largest payload accepted; a larger append is refused and nothing is written.
    /// Default: 64 MiB. At most 1 GiB.
    pub max_record_size: u32,
    /// Reserve space ahead of the appends (`fallocate` on Linux): 64 KiB when a segment is
    /// created, then twice the current allocation whenever a write would pass it, up to
    /// `segment_size`. Appends inside the reserved space cannot fail for lack of space and their
    /// `fdatasync` has no size change to persist; about ten syncs per full segment carry one. A
    /// short-lived lane costs kilobytes, not a whole segment. Default: `true`.
    pub preallocate: bool,
    /// Where the files live. Default: the real file system ([`OsStorage`]).
    pub storage: Arc<dyn Storage>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            durability: Durability::Sync,
            recovery: RecoveryMode::Strict,
            sealed_check: SealedCheck::Footer,
            segment_size: 64 << 20,
            max_record_size: 64 << 20,
            preallocate: true,
            storage: Arc::new(OsStorage),
        }
    }
}
