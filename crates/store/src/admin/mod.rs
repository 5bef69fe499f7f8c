//! Whole-store operations (admin): the library side of the `tidelog` command-line tool.
//!
//! Each function here works on a store folder (not on an open [`Store`](crate::Store)), so tools,
//! tests and fuzz targets call exactly what the CLI calls: parsing one JSON message line,
//! rendering messages as JSON lines (plain or Hermes-style), verifying a whole store while
//! writers run, repairing it, rebuilding the index from the journal, taking a consistent backup,
//! and gathering statistics.
//!
//! Nothing here deletes data: damaged files are moved to a `quarantine/` folder with a note.

mod backup;
mod deleted;
mod erase;
mod jsonl;
mod rebuild;
mod repair;
mod restore;
mod squeeze;
mod stats;
mod verify;

use tidelog_journal::RecoveryMode;

pub use backup::{BackupReport, LaneBackup, backup_store};
pub use deleted::{DeletedContentFound, Needles};
pub use erase::{EraseReport, erasable_records, erase_store, find_erased_content};
pub use jsonl::{
    format_iso8601, hermes_session_lines, message_to_json, parse_iso8601, parse_message_line, parse_timestamp,
};
pub use rebuild::{RebuildReport, rebuild_index_at, rebuild_index_in_place};
pub use repair::{IndexOutcome, IndexRepair, LaneOutcome, LaneRepair, RepairReport, repair_store};
pub(crate) use restore::restore_lost;
pub use restore::{RESTORED_KEY, RestoreReport, RestoredMessage};
pub(crate) use squeeze::compress_sealed;
pub use squeeze::{SqueezeReport, compress_journal};

pub use stats::{FtsSegments, IndexPart, LaneStats, StatsOptions, StoreStats, store_stats, store_stats_with};
pub use verify::{IndexVerify, LaneVerify, VerifyReport, verify_store};

/// A progress callback: `(stage, done, total)`; `total` is 0 when unknown.
pub type Progress<'a> = &'a mut dyn FnMut(&str, u64, u64);

/// Journal options for reading a store whatever record size it was written with.
pub fn read_options(recovery: RecoveryMode) -> tidelog_journal::Options {
    tidelog_journal::Options {
        recovery,
        max_record_size: 1 << 30,
        preallocate: false,
        ..tidelog_journal::Options::default()
    }
}

/// SQLite's `quick_check` reports a damaged file as one line per page (often a hundred): one
/// problem "quick_check found N problem(s); the first: ..." stands for them, the other problems
/// are kept as they are.
pub(crate) fn summarize_check(problems: Vec<String>) -> Vec<String> {
    let (quick, mut other): (Vec<String>, Vec<String>) =
        problems.into_iter().partition(|p| p.starts_with("quick_check:"));
    if let Some(first) = quick.first() {
        let first = first.trim_start_matches("quick_check:").trim();
        let line = if quick.len() == 1 {
            format!("quick_check: {first}")
        } else {
            format!("quick_check found {} problems; the first: {first}", quick.len())
        };
        other.insert(0, line);
    }
    other
}

#[cfg(test)]
mod tests {
    use super::summarize_check;

    #[test]
    fn quick_check_lines_become_one_problem() {
        let p = vec![
            "quick_check: Tree 4 page 4: btreeInitPage() returns error code 11".to_string(),
            "quick_check: Tree 4 page 5: btreeInitPage() returns error code 11".to_string(),
            "fts5: malformed".to_string(),
        ];
        assert_eq!(
            summarize_check(p),
            vec![
                "quick_check found 2 problems; the first: Tree 4 page 4: btreeInitPage() returns error code 11"
                    .to_string(),
                "fts5: malformed".to_string()
            ]
        );
        assert_eq!(summarize_check(vec!["quick_check: x".into()]), vec!["quick_check: x".to_string()]);
        assert!(summarize_check(Vec::new()).is_empty());
    }
}
