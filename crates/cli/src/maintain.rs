//! `checkpoint`, `backup` and `stats`: keeping a store and copying it.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use tidelog::ops::{self};
use tidelog::{Index, IndexOptions};

use crate::util::{self, Reporter, human_bytes, print_json, say};
use crate::{Cli, Outcome};

pub fn checkpoint(cli: &Cli, timeout: u64) -> anyhow::Result<Outcome> {
    let dir = util::existing_store(cli)?;
    let path = dir.join(tidelog::INDEX_FILE);
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let wal = dir.join(format!("{}-wal", tidelog::INDEX_FILE));
    let before = (size(&path), size(&wal));
    let store = util::open_store(cli, &dir)?;
    let mut rep = Reporter::new();
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let start_lag = store.status().unindexed;
    let caught_up = loop {
        let s = store.status();
        rep.update("indexing what is not indexed yet", start_lag.saturating_sub(s.unindexed), start_lag);
        if store.wait_indexed(Duration::from_millis(200)) {
            break true;
        }
        if Instant::now() >= deadline {
            break false;
        }
    };
    let lag = store.status().unindexed;
    rep.working("compressing long records in place");
    let squeezed = ops::compress_journal(&dir);
    rep.working("closing the store");
    store.close()?;
    let ix = Index::open(&path, &IndexOptions::default()).with_context(|| format!("cannot open {}", path.display()))?;
    // The full-text indexes merged into one segment each if they grew since they last were
    // (what a running compactor does when idle), within what is left of the timeout. A merge
    // needs room to write: one that fails (a full disk, for which checkpoint is the advice)
    // does not keep the WAL from being checkpointed.
    rep.working("merging the full-text indexes");
    let (merge_due, merged, merge_error) =
        match ix.merge_fully_if_due(deadline.max(Instant::now() + Duration::from_secs(1))) {
            Ok((due, done)) => (due, done, None),
            Err(e) => (true, false, Some(e.to_string())),
        };
    rep.working(&format!("checkpointing the index WAL ({})", human_bytes(size(&wal))));
    let c = ix.checkpoint_truncate().with_context(|| format!("cannot checkpoint {}", path.display()))?;
    let after = ix.file_sizes();
    drop(ix);
    rep.finish();
    if cli.json {
        print_json(&json!({
            "caught_up": caught_up, "unindexed": lag, "busy": c.busy,
            "db_bytes_before": before.0, "wal_bytes_before": before.1,
            "db_bytes_after": after.0, "wal_bytes_after": after.1,
            "compressed_in_place": squeezed,
            "fts_merge_due": merge_due, "fts_merged": merged, "fts_merge_error": merge_error,
        }))?;
    } else {
        if !caught_up {
            say(format!("index still {lag} entries behind after {timeout} s; checkpointed what is indexed"))?;
        }
        if c.busy {
            say("the WAL could not be truncated completely: a reader was active; run checkpoint again")?;
        }
        if let Some(e) = &merge_error {
            say(format!("the full-text indexes could not be merged (the compactor tries again when idle): {e}"))?;
        } else if merge_due {
            say(if merged {
                "full-text indexes merged into one segment each".to_string()
            } else {
                format!("full-text indexes partly merged within {timeout} s; the compactor goes on when idle")
            })?;
        }
        if squeezed.records > 0 {
            say(format!(
                "journal: {} long record(s) compressed in place, {} given back to the file system",
                squeezed.records,
                human_bytes(squeezed.reclaimed_bytes)
            ))?;
        }
        say(format!(
            "index {}: db {} -> {}, WAL {} -> {}",
            path.display(),
            human_bytes(before.0),
            human_bytes(after.0),
            human_bytes(before.1),
            human_bytes(after.1)
        ))?;
    }
    Ok(if caught_up && !c.busy { Outcome::Fine } else { Outcome::Problem })
}

pub fn backup(cli: &Cli, dest: &Path) -> anyhow::Result<Outcome> {
    let dir = util::existing_store(cli)?;
    let mut rep = Reporter::new();
    let r = ops::backup_store(&dir, dest, &mut |s, d, t| rep.update(s, d, t)).map_err(|e| match e {
        e @ tidelog::Error::DestinationNotEmpty { .. } => anyhow::anyhow!("backup {e}"),
        e => anyhow::Error::new(e).context(format!("cannot back up {} to {}", dir.display(), dest.display())),
    })?;
    rep.finish();
    if cli.json {
        print_json(&r)?;
    } else {
        for l in &r.lanes {
            say(format!(
                "lane {}: {} segment(s), {}, up to LSN {}{}",
                l.name,
                l.segments,
                human_bytes(l.bytes),
                l.last_lsn,
                if l.cut_bytes > 0 {
                    format!(" ({} bytes still being written left out)", l.cut_bytes)
                } else {
                    String::new()
                }
            ))?;
        }
        match &r.index_problem {
            None if r.index_copied => say("index copied")?,
            None => say("no index to copy")?,
            Some(p) => say(format!("index not copied: {p}"))?,
        }
        say(format!("backup written to {}; check it with `tidelog verify --dir {}`", dest.display(), dest.display()))?;
    }
    Ok(if r.index_problem.is_some() { Outcome::Problem } else { Outcome::Fine })
}

pub fn stats(cli: &Cli, bytes: bool) -> anyhow::Result<Outcome> {
    let dir = util::existing_store(cli)?;
    let s = ops::store_stats_with(&dir, &ops::StatsOptions { index_parts: bytes })
        .with_context(|| format!("cannot read {}", dir.display()))?;
    for p in &s.problems {
        util::warn_line(format!("incomplete: {p}"));
    }
    let outcome = if s.problems.is_empty() { Outcome::Fine } else { Outcome::Problem };
    if cli.json {
        let mut v = serde_json::to_value(&s).context("cannot encode the report as JSON")?;
        if let Some(r) = crate::sync::stats(cli, &dir)? {
            v["remote"] = r;
        }
        print_json(&v)?;
        return Ok(outcome);
    }
    say(format!("store {}", s.dir.display()))?;
    for l in &s.lanes {
        say(format!(
            "  lane {}: {} segment(s), {}, LSN {}..={}, indexed up to {}{}{}",
            l.name,
            l.segments,
            human_bytes(l.bytes),
            l.first_lsn,
            l.last_lsn,
            l.applied_lsn.map_or("?".into(), |n| n.to_string()),
            if l.holes > 0 { format!(", {} salvaged hole(s)", l.holes) } else { String::new() },
            l.error.as_ref().map(|e| format!(", cannot be read: {e}")).unwrap_or_default()
        ))?;
    }
    say(format!(
        "  journal: {} in {} lane(s); on disk {}: {} live, {} reclaimable (erased records' space, given back by \
         the next erase pass)",
        human_bytes(s.journal_bytes),
        s.lanes.len(),
        human_bytes(s.journal_on_disk),
        human_bytes(s.journal_on_disk.saturating_sub(s.journal_reclaimable)),
        human_bytes(s.journal_reclaimable)
    ))?;
    say(format!("  compactor lag: {} entr(ies) not indexed yet", s.unindexed))?;
    say(format!(
        "  index: {} + {} WAL, {} message(s), {} session(s){}",
        human_bytes(s.index_bytes),
        human_bytes(s.wal_bytes),
        s.indexed_messages.map_or("?".into(), |n| n.to_string()),
        s.indexed_sessions.map_or("?".into(), |n| n.to_string()),
        s.index_error.as_ref().map(|e| format!(" ({e})")).unwrap_or_default()
    ))?;
    if !s.fts_segments.is_empty() {
        let tables: Vec<String> = s.fts_segments.iter().map(|t| format!("{} {}", t.table, t.segments)).collect();
        say(format!(
            "  full-text segments: {}{}",
            tables.join(", "),
            if s.fts_merge_due == Some(true) {
                "; a full merge is due (the compactor runs it when idle; `tidelog checkpoint` runs it now)"
            } else {
                ""
            }
        ))?;
    }
    if !s.index_parts.is_empty() {
        let parts: Vec<String> = s.index_parts.iter().map(|p| format!("{} {}", p.part, human_bytes(p.bytes))).collect();
        say(format!("  index bytes by part: {}", parts.join(", ")))?;
    }
    say(format!(
        "  last checkpoint: {}",
        match s.last_checkpoint_unix_ms {
            Some(ms) => ops::format_iso8601(ms as f64 / 1000.0),
            None => "unknown (the WAL holds frames not checkpointed yet)".into(),
        }
    ))?;
    if s.quarantine.is_empty() {
        say("  quarantine: empty")?;
    } else {
        say(format!(
            "  quarantine: {} in {} file(s); `tidelog quarantine list` shows them",
            human_bytes(s.quarantine_bytes),
            s.quarantine.len()
        ))?;
    }
    crate::sync::stats(cli, &dir)?;
    Ok(outcome)
}
