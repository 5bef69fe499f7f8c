//! Tidelog: the durable message store an AI-agent gateway embeds.
//!
//! Every message is first appended to a checksummed journal (`tidelog-journal`) and is durable
//! when [`Store::append`] returns. A background compactor copies journal entries into SQLite with
//! an FTS5 trigram index, in batches; that file is derived and is rebuilt from the journal if it
//! is ever damaged. Reads ([`Store::messages`], [`Store::search`]) include every acknowledged
//! message, indexed or not yet.
//!
//! ```
//! use tidelog::{Message, SearchQuery, Store, StoreOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(dir.path(), StoreOptions::default())?;
//! store.append(Message {
//!     session_id: "telegram:42".into(),
//!     role: "user".into(),
//!     content: Some("Where did I put the invoice for the boat?".into()),
//!     source: Some("telegram".into()),
//!     ..Message::default()
//! })?;
//! // Durable now, and visible to reads whether or not the compactor has indexed it yet.
//! let hits = store.search(&SearchQuery::new("invoice"))?;
//! assert_eq!(hits.len(), 1);
//! assert_eq!(store.messages("telegram:42")?.len(), 1);
//! assert!(!store.status().is_degraded());
//! store.close()?;
//! # Ok(())
//! # }
//! ```
//!
//! Several processes may open the same folder: each gets a lane (its own journal) and exactly
//! one runs the compactor at a time. See `docs/design.md`.
#![warn(missing_docs)]

mod admin;
mod compactor;
mod entry;
mod error;
mod fts;
mod health;
mod import;
mod index;
mod layout;
mod model;
mod options;
mod read;
mod remote;
mod sequence;
mod state;
mod status;
mod store;
mod supervise;
mod target;
mod time;
pub mod validate;
mod wire;

pub use entry::{
    CODEC_BINCODE_V1, CODEC_FIELDS_V2, CODEC_ZSTD_V3, DecodeError, Entry, decode as decode_entry, decode_record,
    encode as encode_entry, encode_for_journal as encode_journal_entry,
};
pub use error::{Error, Result};
pub use fts::{
    DEFAULT_NEAR_DISTANCE, FtsClause, FtsColumns, FtsError, FtsExpr, FtsGroup, FtsPhrase, FtsQuery, FtsString,
    HermesRoute, INDEX_COLUMNS, QuerySyntax, hermes_route, sanitize_hermes_query,
};
#[doc(hidden)]
pub use health::TestHooks;
pub use import::{
    ImportError, ImportReport, SinkError, hermes_source_rowid, import_hermes_db, import_jsonl, imported_message_id,
    is_repaired_import,
};
pub use index::{
    ApplyStats, CheckpointStats, HermesHit, HermesSearch, Index, IndexError, IndexOptions, SCHEMA_VERSION, SearchHit,
    SearchOrder, SearchQuery, SessionFilter, indexed_text, legacy_key, match_snippet,
};
pub use layout::{
    COMPACTOR_LOCK, COMPACTOR_PROBLEM, INDEX_FILE, LANES_DIR, QUARANTINE_DIR, REBUILD_MARKER, SEQUENCE_FILE,
    SHIPPER_LOCK, SHIPPER_PROBLEM, STORE_ID_FILE, WRITE_LOCK,
};
pub use model::{
    CounterDelta, Counters, DeleteSessions, Erased, Message, MessageRef, MessageState, MessageUpdate, MetaSet, Rewrite,
    RewriteMode, RewriteRule, Session, SessionHistory, SessionPatch, SessionRef, SessionWrite, covers,
    fold_session_row, fold_session_writes, merge_extra,
};
pub use options::{Retention, StoreOptions};
pub use status::{
    CloseReport, CompactorStatus, IndexHealth, LaneStatus, RemoteLag, RemoteLane, RemoteStatus, StoreStatus,
    ThreadHealth, ThreadReport,
};
pub use store::{Appended, HistoryItem, HistoryQuery, Store};
pub use target::{IndexTarget, RemoteTarget, TargetError};
pub use tidelog_journal::{Durability, RecoveryMode};

/// Whole-store operations, the library side of the `tidelog` tool: verify, repair, rebuild,
/// backup, statistics and the JSON-lines mapping. Each works on a store folder, not on an open
/// [`Store`], so tools, tests and fuzz targets call exactly what the CLI calls.
pub mod ops {
    pub use crate::admin::{
        BackupReport, DeletedContentFound, EraseReport, FtsSegments, IndexOutcome, IndexPart, IndexRepair, IndexVerify,
        LaneBackup, LaneOutcome, LaneRepair, LaneStats, LaneVerify, Needles, Progress, RESTORED_KEY, RebuildReport,
        RepairReport, RestoreReport, RestoredMessage, SqueezeReport, StatsOptions, StoreStats, VerifyReport,
        backup_store, compress_journal, erasable_records, erase_store, find_erased_content, format_iso8601,
        hermes_session_lines, message_to_json, parse_iso8601, parse_message_line, parse_timestamp, read_options,
        rebuild_index_at, rebuild_index_in_place, repair_store, store_stats, store_stats_with, verify_store,
    };
    pub use crate::layout::{QuarantinedFile, list_quarantine};
}

/// The field list of a record kind (`Message`, `SessionPatch`, `CounterDelta`, `MessageUpdate`)
/// from the one table (`record!` in `model.rs`), for the tests of other crates that check their
/// columns against it (`crates/pg`); empty for another name.
#[doc(hidden)]
pub fn record_fields(kind: &str) -> &'static [(&'static str, u32)] {
    use wire::Record;
    match kind {
        "Message" => Message::FIELDS,
        "SessionPatch" => SessionPatch::FIELDS,
        "CounterDelta" => CounterDelta::FIELDS,
        "MessageUpdate" => MessageUpdate::FIELDS,
        _ => &[],
    }
}
