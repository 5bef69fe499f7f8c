//! Logbook: the durable message store an AI-agent gateway embeds.
//!
//! Every message is first appended to a checksummed journal (`logbook-journal`) and is durable
//! when [`Store::append`] returns. A background compactor copies journal entries into SQLite with
//! an FTS5 trigram index, in batches; that file is derived and is rebuilt from the journal if it
//! is ever damaged. Reads ([`Store::messages`], [`Store::search`]) include every acknowledged
//! message, indexed or not yet.
//!
//! ```
//! use logbook::{Message, SearchQuery, Store, StoreOptions};
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

mod codec;
mod compactor;
mod error;
pub mod import;
pub mod index;
pub mod model;
pub mod ops;
mod options;
mod store;
mod time;

pub use codec::{CODEC_BINCODE_V1, DecodeError, decode as decode_entry, encode as encode_entry};
pub use compactor::quarantine_index_files;
pub use error::{Error, Result};
pub use index::{Index, IndexError, IndexOptions, SearchHit, SearchOrder, SearchQuery, SessionFilter};
pub use logbook_journal::{Durability, RecoveryMode};
pub use model::{Entry, Message, Session, SessionPatch};
pub use options::{Retention, StoreOptions};
pub use store::{
    Appended, COMPACTOR_LOCK, CompactorStatus, INDEX_FILE, IndexHealth, LANES_DIR, LaneStatus, QUARANTINE_DIR,
    REBUILD_MARKER, Store, StoreStatus,
};
