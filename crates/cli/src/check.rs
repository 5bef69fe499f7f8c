//! `verify`, `repair`, `rebuild-index` and `replay`: checking a store and putting it right.

use std::path::Path;

use anyhow::{Context, bail};
use serde_json::json;
use tidelog::RecoveryMode;
use tidelog::ops::{self, VerifyReport};

use crate::util::{self, Reporter, human_bytes, print_json, say};
use crate::{Cli, Outcome};

fn print_verify(r: &VerifyReport) -> anyhow::Result<()> {
    for l in &r.lanes {
        let state = if l.problems.is_empty() { "ok".to_string() } else { format!("{} problem(s)", l.problems.len()) };
        let holes =
            if l.known_holes > 0 { format!(", {} salvaged hole(s) skipped", l.known_holes) } else { String::new() };
        say(format!(
            "lane {}: {} segment(s), {} record(s) checked, LSN {}..={}{holes}: {state}",
            l.name, l.segments, l.records, l.first_lsn, l.last_lsn
        ))?;
    }
    let ix = &r.index;
    if ix.present {
        say(format!(
            "index {}: {} + {} WAL, {} message(s) indexed, {} distinct in the journal up to the applied positions, {} entr(ies) not indexed yet: {}",
            ix.path.display(),
            human_bytes(ix.db_bytes),
            human_bytes(ix.wal_bytes),
            ix.messages.map_or("?".into(), |n| n.to_string()),
            ix.journal_messages.map_or("?".into(), |n| n.to_string()),
            ix.unindexed,
            if ix.problems.is_empty() { "ok".to_string() } else { format!("{} problem(s)", ix.problems.len()) }
        ))?;
    } else {
        say(format!("index {}: not present", ix.path.display()))?;
    }
    for (lane, n) in &r.erasable_records {
        say(format!(
            "lane {lane}: {n} record(s) still hold deleted content (erased by the compactor within its deadline, or now by `tidelog erase`)"
        ))?;
    }
    if !r.deleted_content.is_empty() {
        say(format!("{} file(s) hold text of deleted messages (listed below)", r.deleted_content.len()))?;
    }
    for p in &r.problems {
        say(format!("problem: {p}"))?;
    }
    if r.is_ok() {
        say(format!("verify {}: ok", r.dir.display()))
    } else {
        say(format!("verify {}: {} problem(s) found; see docs/recovery.md", r.dir.display(), r.problems.len()))
    }
}

pub fn verify(cli: &Cli) -> anyhow::Result<Outcome> {
    let dir = util::existing_store(cli)?;
    let mut rep = Reporter::new();
    let r = ops::verify_store(&dir, &mut |s, d, t| rep.update(s, d, t))
        .with_context(|| format!("cannot verify {}", dir.display()))?;
    rep.finish();
    if cli.json {
        print_json(&json!({"ok": r.is_ok(), "report": r}))?;
    } else {
        print_verify(&r)?;
    }
    Ok(if r.is_ok() { Outcome::Fine } else { Outcome::Problem })
}

pub fn repair(cli: &Cli, salvage: bool) -> anyhow::Result<Outcome> {
    let dir = util::existing_store(cli)?;
    let mode = if salvage { RecoveryMode::Salvage } else { RecoveryMode::Strict };
    let mut rep = Reporter::new();
    let r = ops::repair_store(&dir, mode, &mut |s, d, t| rep.update(s, d, t))
        .with_context(|| format!("cannot repair {}", dir.display()))?;
    rep.finish();
    if cli.json {
        print_json(&json!({"ok": r.verify.is_ok(), "report": r}))?;
    } else {
        for l in &r.lanes {
            say(format!("lane {}: {} (last LSN {})", l.name, l.outcome, l.last_lsn))?;
            for t in &l.torn_tails {
                say(format!("  torn tail cut into the quarantine: {t}"))?;
            }
            for (a, b) in &l.lost_lsns {
                say(format!("  LSNs {a}..={b} lost to damage (the damaged bytes are in the quarantine)"))?;
            }
            for f in &l.quarantined_files {
                say(format!("  moved to the quarantine: {f}"))?;
            }
            for p in &l.problems {
                say(format!("  {p}"))?;
            }
        }
        print_restored(&r.restored)?;
        let ix = &r.index;
        say(format!("index: {}{}", ix.outcome, ix.reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default()))?;
        for q in &ix.quarantined {
            say(format!("  moved to the quarantine: {}", q.display()))?;
        }
        if let Some(rb) = &ix.rebuild {
            say(format!(
                "  rebuilt from {} journal entries: {} messages, {} session changes",
                rb.entries, rb.messages, rb.sessions
            ))?;
        }
        say("after repair:")?;
        print_verify(&r.verify)?;
    }
    Ok(if r.verify.is_ok() { Outcome::Fine } else { Outcome::Problem })
}

/// Messages restored from the index, and lost records it had no copy of.
fn print_restored(r: &ops::RestoreReport) -> anyhow::Result<()> {
    if let Some(lane) = &r.lane {
        say(format!(
            "restored from the index to lane {lane}: {} message(s) the journal lost (marked `{}` in extra)",
            r.restored.len(),
            ops::RESTORED_KEY
        ))?;
        for m in &r.restored {
            say(format!(
                "  {} (session {}) from {} LSN {}{}",
                m.id,
                m.session_id,
                m.from_lane,
                m.from_lsn,
                m.text_lost
                    .as_ref()
                    .map(|w| format!(": WITHOUT its text, kept only in a lost record ({w})"))
                    .unwrap_or_default()
            ))?;
        }
    }
    for (lane, a, b) in &r.not_in_index {
        say(format!("  {lane} LSNs {a}..={b}: no copy in the index (lost)"))?;
    }
    if let Some(e) = &r.error {
        say(format!("  the index could not be read to restore lost messages: {e}"))?;
    }
    Ok(())
}

fn print_rebuild(cli: &Cli, r: &ops::RebuildReport, moved: &[std::path::PathBuf]) -> anyhow::Result<()> {
    if cli.json {
        return print_json(&json!({"quarantined": moved, "rebuild": r}));
    }
    for m in moved {
        say(format!("moved to the quarantine (damaged; see `tidelog quarantine list`): {}", m.display()))?;
    }
    say(format!(
        "built {} from {} journal entries: {} messages ({} duplicates skipped), {} session changes, {} undecodable records skipped",
        r.path.display(),
        r.entries,
        r.messages,
        r.duplicate_messages,
        r.sessions,
        r.undecodable
    ))?;
    print_restored(&r.restored)
}

pub fn rebuild_index(cli: &Cli) -> anyhow::Result<Outcome> {
    let dir = util::existing_store(cli)?;
    let mut rep = Reporter::new();
    let (moved, r) = ops::rebuild_index_in_place(&dir, "tidelog rebuild-index", &mut |s, d, t| rep.update(s, d, t))
        .map_err(|e| match e {
            e @ tidelog::Error::CompactorBusy { .. } => anyhow::anyhow!("{e}"),
            e => anyhow::Error::new(e).context(format!("cannot rebuild the index of {}", dir.display())),
        })?;
    rep.finish();
    print_rebuild(cli, &r, &moved)?;
    Ok(if r.undecodable > 0 { Outcome::Problem } else { Outcome::Fine })
}

pub fn replay(cli: &Cli, to: &Path) -> anyhow::Result<Outcome> {
    let dir = util::existing_store(cli)?;
    if to.exists() {
        bail!("{} already exists; give a new file name with --to", to.display());
    }
    let mut rep = Reporter::new();
    let r = ops::rebuild_index_at(&dir, to, &mut |s, d, t| rep.update(s, d, t))
        .with_context(|| format!("cannot build {} from {}", to.display(), dir.display()))?;
    rep.finish();
    print_rebuild(cli, &r, &[])?;
    Ok(if r.undecodable > 0 { Outcome::Problem } else { Outcome::Fine })
}
