//! A segmented, checksummed, group-committed write-ahead log that always reopens at its last
//! valid record.
//!
//! Records are opaque bytes numbered by LSN (1, 2, 3...). Every append is durable when it
//! returns (with the default [`Durability::Sync`]); concurrent appenders share one write and one
//! sync. Opening runs recovery: a torn tail is copied into `quarantine/` and cut off, never a
//! reason to refuse to start; damage in the middle of the log fails loudly ([`RecoveryMode::Strict`])
//! or is salvaged with the exact LSNs lost reported ([`RecoveryMode::Salvage`]).
//!
//! ```
//! use tidelog_journal::{Journal, Options};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let journal = Journal::open(dir.path(), Options::default())?;
//! let first = journal.append(b"hello")?;
//! journal.append_batch(&[b"two", b"three"])?;
//! let records: Vec<_> = journal.iter_from(first).collect::<Result<_, _>>()?;
//! assert_eq!(records.len(), 3);
//! assert_eq!(records[2].payload, b"three");
//! journal.close()?;
//!
//! let reopened = Journal::open(dir.path(), Options::default())?;
//! assert!(reopened.recovery_report().is_clean());
//! assert_eq!(reopened.last_lsn(), 3);
//! # Ok(())
//! # }
//! ```
//!
//! The format is specified byte by byte in `docs/format.md`; the commit protocol and the crash
//! argument are in `docs/design.md`.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod at;
mod error;
mod files;
mod format;
mod journal;
mod mmap;
mod options;
mod overwrite;
mod reader;
mod recovery;
mod scan;
mod space;
pub mod storage;

pub use at::RecordAt;
pub use error::{Error, Result};
pub use files::{HOLES_FILE, Hole, LOCK_FILE, QUARANTINE_DIR, QuarantineNote};
pub use format::{
    FOOTER_LEN, FORMAT_VERSION, RECORD_HEADER_LEN, REWRITTEN_FORMAT_VERSION, SEGMENT_HEADER_LEN, frame_len,
};
pub use journal::{Improve, Journal, JournalStatus, Lsn, verify};
pub use options::{Durability, Options, RecoveryMode, SealedCheck};
pub use overwrite::{
    ERASE_LOCK_FILE, OverwriteReport, REDO_FILE, Replace, Scrub, erase_lock, overwrite_records, sealed_segment_ids,
    segment_ids,
};
pub use reader::{Iter, Record};
pub use recovery::{RecoveryReport, TornTail};
pub use space::{SegmentSpace, reclaim_segment, segment_space};

/// Pure decoding functions, exposed for fuzzing and tools.
pub mod decode {
    pub use crate::format::{
        Footer, HeaderCheck, RecordHeader, Redo, SegmentHeader, check_record_body, check_record_header, encode_record,
        parse_segment_file_name, segment_file_name,
    };
}
