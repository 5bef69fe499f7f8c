//! `stats`: what a store folder holds, read without changing anything.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tidelog_journal::{Journal, RecoveryMode};

use super::read_options;
use crate::error::Result;
use crate::index::{Index, IndexError, IndexOptions, SessionFilter};
use crate::layout::{INDEX_FILE, QuarantinedFile, file_len, lane_dir, lane_names, quarantine_bytes, wal_path};

/// One lane in [`StoreStats`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct LaneStats {
    /// Lane name.
    pub name: String,
    /// Segment files.
    pub segments: usize,
    /// Bytes of segment files (preallocated space included).
    pub bytes: u64,
    /// Bytes the file system keeps for them (blocks given back by erasure not counted).
    pub on_disk: u64,
    /// Of those, the bytes erased records hold that the next erase pass gives back (whole
    /// blocks of zeros still allocated).
    pub reclaimable: u64,
    /// Lowest LSN present.
    pub first_lsn: u64,
    /// Highest readable LSN.
    pub last_lsn: u64,
    /// Applied to the index up to here.
    pub applied_lsn: Option<u64>,
    /// Salvaged holes skipped.
    pub holes: usize,
    /// Why the lane cannot be read, if it cannot.
    pub error: Option<String>,
}

/// One full-text table in [`StoreStats`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct FtsSegments {
    /// The FTS5 table.
    pub table: String,
    /// Its segments.
    pub segments: u64,
}

/// The bytes of one part of the index in [`StoreStats`] (with [`StatsOptions::index_parts`]).
#[derive(Debug, Clone, Default, Serialize)]
pub struct IndexPart {
    /// The part: "trigram index", "word index", "messages", "message indexes", "sessions",
    /// "history operations", "other" or "free pages".
    pub part: String,
    /// The bytes of its pages.
    pub bytes: u64,
}

/// What [`store_stats_with`] gathers beyond [`store_stats`].
#[derive(Debug, Clone, Copy, Default)]
pub struct StatsOptions {
    /// Where the index's bytes are, by part: reads every page of the index (about 30 s for
    /// a million messages).
    pub index_parts: bool,
}

/// What a store folder holds ([`store_stats`]).
#[derive(Debug, Clone, Default, Serialize)]
pub struct StoreStats {
    /// The store folder.
    pub dir: PathBuf,
    /// Every lane.
    pub lanes: Vec<LaneStats>,
    /// Total bytes of segment files.
    pub journal_bytes: u64,
    /// Total bytes the file system keeps for them.
    pub journal_on_disk: u64,
    /// Total bytes erased records hold that an erase pass gives back.
    pub journal_reclaimable: u64,
    /// Journal entries not yet applied to the index (compactor lag).
    pub unindexed: u64,
    /// Size of `index.db`.
    pub index_bytes: u64,
    /// Size of `index.db-wal`.
    pub wal_bytes: u64,
    /// Indexed messages.
    pub indexed_messages: Option<u64>,
    /// Indexed sessions.
    pub indexed_sessions: Option<u64>,
    /// When the compactor (or `tidelog checkpoint`) last ran `wal_checkpoint(TRUNCATE)`, ms since
    /// the Unix epoch (recorded in the index).
    pub last_checkpoint_unix_ms: Option<u64>,
    /// Segments of each full-text table (FTS5's own layout: a search pays per segment; the
    /// compactor merges them when idle, docs/design.md "Keeping the full-text indexes merged").
    pub fts_segments: Vec<FtsSegments>,
    /// Whether a full merge of the full-text indexes is due (they grew since the last one).
    pub fts_merge_due: Option<bool>,
    /// Where the index's bytes are (empty unless asked: [`StatsOptions::index_parts`]).
    pub index_parts: Vec<IndexPart>,
    /// Why the index cannot be read, if it cannot.
    pub index_error: Option<String>,
    /// Everything under every `quarantine/` folder.
    pub quarantine: Vec<QuarantinedFile>,
    /// Total bytes under every `quarantine/` folder (notes included).
    pub quarantine_bytes: u64,
    /// What makes the store's history incomplete until repaired: lanes that cannot be read,
    /// damage found in them (file, offset, LSNs), an index that cannot be read.
    pub problems: Vec<String>,
}

/// Gathers statistics about a store folder without changing it.
pub fn store_stats(dir: &Path) -> Result<StoreStats> {
    store_stats_with(dir, &StatsOptions::default())
}

/// [`store_stats`], with what `opts` asks for too.
pub fn store_stats_with(dir: &Path, opts: &StatsOptions) -> Result<StoreStats> {
    let mut st = StoreStats { dir: dir.to_path_buf(), ..StoreStats::default() };
    let index_path = dir.join(INDEX_FILE);
    let mut positions = None;
    if index_path.exists() {
        match Index::open_read_only(&index_path, &IndexOptions::default()) {
            Ok(ix) => {
                let r = (|| -> std::result::Result<_, IndexError> {
                    let sessions = ix.list_sessions(&SessionFilter::default())?.len() as u64;
                    st.last_checkpoint_unix_ms = ix.last_checkpoint_unix_ms()?;
                    st.fts_segments = ix
                        .fts_segments()?
                        .into_iter()
                        .map(|(table, segments)| FtsSegments { table: table.to_string(), segments })
                        .collect();
                    st.fts_merge_due = Some(ix.full_merge_due()?.is_some());
                    if opts.index_parts {
                        st.index_parts = ix
                            .bytes_by_part()?
                            .into_iter()
                            .map(|(part, bytes)| IndexPart { part: part.to_string(), bytes })
                            .collect();
                    }
                    Ok((ix.applied_positions()?, ix.message_count()?, sessions))
                })();
                match r {
                    Ok((p, m, s)) => {
                        positions = Some(p);
                        st.indexed_messages = Some(m);
                        st.indexed_sessions = Some(s);
                    }
                    Err(e) => st.index_error = Some(e.to_string()),
                }
            }
            Err(e) => st.index_error = Some(e.to_string()),
        }
    } else {
        st.index_error = Some("no index yet".into());
    }
    st.index_bytes = file_len(&index_path);
    let wal = wal_path(&index_path);
    st.wal_bytes = file_len(&wal);
    st.quarantine = QuarantinedFile::list_store(dir);
    st.quarantine_bytes = quarantine_bytes(dir);
    for name in lane_names(dir)? {
        let ldir = lane_dir(dir, &name);
        let mut ls = LaneStats { name: name.clone(), ..LaneStats::default() };
        if let Ok(rd) = fs::read_dir(&ldir) {
            for e in rd.flatten() {
                if let Ok(n) = e.file_name().into_string()
                    && tidelog_journal::decode::parse_segment_file_name(&n).is_some()
                {
                    ls.segments += 1;
                    ls.bytes += e.metadata().map_or(0, |m| m.len());
                }
            }
        }
        if let Ok(ids) = tidelog_journal::segment_ids(&ldir, &read_options(RecoveryMode::Salvage)) {
            for id in ids {
                match tidelog_journal::segment_space(&ldir, &read_options(RecoveryMode::Salvage), id) {
                    Ok(sp) => {
                        ls.on_disk += sp.allocated;
                        ls.reclaimable += sp.reclaimable;
                    }
                    Err(e) => st.problems.push(format!("lane {name} segment {id}: cannot measure: {e}")),
                }
            }
        }
        // Salvage in memory (nothing is changed): every valid record counts, damage is named.
        match Journal::open_read_only(&ldir, read_options(RecoveryMode::Salvage)) {
            Ok(j) => {
                let s = j.status();
                ls.first_lsn = s.first_lsn;
                ls.last_lsn = s.written_lsn;
                ls.holes = s.holes;
                for p in &j.recovery_report().problems {
                    st.problems.push(format!("lane {name}: {p} (run `tidelog repair --salvage`)"));
                }
            }
            Err(e) => {
                st.problems.push(format!("lane {name} cannot be read: {e}"));
                ls.error = Some(e.to_string());
            }
        }
        ls.applied_lsn = positions.as_ref().map(|p| p.get(&name).copied().unwrap_or(0));
        st.unindexed += ls.last_lsn.saturating_sub(ls.applied_lsn.unwrap_or(0));
        st.journal_bytes += ls.bytes;
        st.journal_on_disk += ls.on_disk;
        st.journal_reclaimable += ls.reclaimable;
        st.lanes.push(ls);
    }
    Ok(st)
}
