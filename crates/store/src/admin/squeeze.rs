//! Compression in place of long records (docs/design.md "One copy of the text"): an entry
//! longer than 16 KiB is appended as it is (compressing it would cost as much as the sync that
//! acknowledges it), and compressed later, by the compactor when idle, with an overwrite in place:
//! same offset, same length, the compressed entry (codec tag 3) followed by zeros, whose whole
//! blocks are then given back to the file system. The overwrite is the erase pass's
//! (`tidelog_journal::overwrite_records`: crash-safe through a redo file, under the erase lock,
//! the segment's digest unchanged), so records never move: the index's places stay valid, and a
//! reader meeting a record mid-overwrite reads it again.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use tidelog_journal::RecoveryMode;
use tracing::{info, warn};

use crate::entry;
use crate::layout::{lane_dir, lane_names};

/// How long a segment must have gone unmodified before a pass marks it done.
const SETTLED: std::time::Duration = std::time::Duration::from_secs(1);

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SqueezeReport {
    /// Sealed segments looked at.
    pub segments: u64,
    /// Records compressed in place.
    pub records: u64,
    /// Bytes given back to the file system.
    pub reclaimed_bytes: u64,
}

/// Compresses in place the long records of every segment of every lane of the store in `dir`
/// that changed since the pass that recorded it in `done` (lane name and segment id -> the
/// file's modification time then). A segment another overwrite holds now is left for the next
/// pass. The active segment of a writer is included: only records already written whole are
/// replaced (the overwrite syncs the segment first, as erasure does), and only the blocks of
/// the bytes it wrote itself are given back.
pub(crate) fn compress_sealed(dir: &Path, done: &mut BTreeMap<(String, u64), SystemTime>) -> SqueezeReport {
    let opts = super::read_options(RecoveryMode::Strict);
    let mut rep = SqueezeReport::default();
    for name in lane_names(dir).unwrap_or_default() {
        let ldir = lane_dir(dir, &name);
        let Ok(ids) = tidelog_journal::segment_ids(&ldir, &opts) else { continue };
        for id in ids {
            let path = ldir.join(tidelog_journal::decode::segment_file_name(id));
            let Ok(modified) = std::fs::metadata(&path).and_then(|m| m.modified()) else { continue };
            if done.get(&(name.clone(), id)) == Some(&modified) {
                continue;
            }
            // Modified in the last second: looked at, but not marked done (an append in the same
            // tick of the file system's clock as the pass would leave the time unchanged and its
            // record unseen for ever; found by a test that failed once in CI).
            let settled = SystemTime::now().duration_since(modified).is_ok_and(|age| age >= SETTLED);
            rep.segments += 1;
            match tidelog_journal::overwrite_records(
                &ldir,
                &opts,
                id,
                &mut |_, payload| entry::compressed_in_place(payload),
                None,
            ) {
                Ok(r) => {
                    rep.records += r.replaced;
                    rep.reclaimed_bytes += r.reclaimed_bytes;
                    // The time read before the pass: a record appended during it changes the
                    // time, and so does the pass's own overwrite (the next pass then looks
                    // once more and finds nothing to do).
                    if settled {
                        done.insert((name.clone(), id), modified);
                    }
                }
                Err(tidelog_journal::Error::EraseBusy { .. }) => {}
                Err(e) => {
                    warn!(lane = %name, segment = id, "long records not compressed in place: {e}");
                    done.insert((name.clone(), id), modified);
                }
            }
        }
    }
    if rep.records > 0 {
        info!(records = rep.records, reclaimed = rep.reclaimed_bytes, "long records compressed in place");
    }
    rep
}

/// Compresses in place every long record of the store in `dir` written as it was (what the
/// compactor does when idle, now: for commands that end before it would, such as
/// `tidelog checkpoint`). Safe beside running writers.
pub fn compress_journal(dir: &Path) -> SqueezeReport {
    compress_sealed(dir, &mut BTreeMap::new())
}
