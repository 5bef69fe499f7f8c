//! `tidelog status`: the store's health as `Store::status` reports it, from a read-only open
//! (safe beside running writers): lanes and how far the index has applied them, the index, the
//! background threads (this process runs none: the process holding the compactor or shipper role
//! leaves a note in the store folder while its thread is degraded), records left out because
//! they do not decode, and every problem. Exit 1 when anything is degraded.

use anyhow::Context;
use serde_json::json;
use tidelog::{IndexHealth, StoreStatus};

use crate::util::{self, human_bytes, print_json, say};
use crate::{Cli, Outcome};

pub fn run(cli: &Cli) -> anyhow::Result<Outcome> {
    let dir = util::existing_store(cli)?;
    let store = util::open_store_read_only(cli, &dir)?;
    let s = store.status();
    store.close().with_context(|| format!("cannot close the store at {}", dir.display()))?;
    if cli.json {
        print_json(&to_json(&s))?;
    } else {
        print(&s)?;
    }
    Ok(if s.is_degraded() { Outcome::Problem } else { Outcome::Fine })
}

fn index_state(i: &IndexHealth) -> String {
    match i {
        IndexHealth::Unchecked => "not checked by this process (it runs no compactor)".into(),
        IndexHealth::Healthy => "healthy".into(),
        IndexHealth::Rebuilding { reason, done, total } => format!("being rebuilt ({done}/{total}): {reason}"),
        IndexHealth::Failed { reason } => format!("unusable: {reason}"),
    }
}

fn print(s: &StoreStatus) -> anyhow::Result<()> {
    say(format!("store {}", s.dir.display()))?;
    for l in &s.lanes {
        say(format!(
            "  lane {}: LSN {}, indexed up to {}{}",
            l.name,
            l.last_lsn,
            l.applied_lsn.map_or("?".into(), |n| n.to_string()),
            l.error.as_ref().map(|e| format!(", cannot be read: {e}")).unwrap_or_default()
        ))?;
    }
    say(format!("  index: {}; {} entr(ies) not indexed yet", index_state(&s.index), s.unindexed))?;
    say(format!("  quarantine: {}", human_bytes(s.quarantine_bytes)))?;
    if let Some(r) = &s.remote {
        say(format!(
            "  remote index {}: {}",
            r.target,
            r.lag.map_or("lag unknown (this process does not ship)".into(), |n| format!("{n} entr(ies) not shipped"))
        ))?;
    }
    for p in &s.problems {
        say(format!("problem: {p}"))?;
    }
    if s.problems.is_empty() {
        say(format!("status {}: ok", s.dir.display()))
    } else {
        say(format!("status {}: {} problem(s); see docs/recovery.md", s.dir.display(), s.problems.len()))
    }
}

fn to_json(s: &StoreStatus) -> serde_json::Value {
    let lanes: Vec<_> = s
        .lanes
        .iter()
        .map(|l| json!({"name": l.name, "last_lsn": l.last_lsn, "applied_lsn": l.applied_lsn, "error": l.error}))
        .collect();
    let (state, reason) = match &s.index {
        IndexHealth::Unchecked => ("unchecked", None),
        IndexHealth::Healthy => ("healthy", None),
        IndexHealth::Rebuilding { reason, .. } => ("rebuilding", Some(reason.clone())),
        IndexHealth::Failed { reason } => ("failed", Some(reason.clone())),
    };
    json!({
        "dir": s.dir,
        "lanes": lanes,
        "index": {"state": state, "reason": reason},
        "unindexed": s.unindexed,
        "quarantine_bytes": s.quarantine_bytes,
        "remote": s.remote.as_ref().map(|r| json!({"target": r.target, "lag": r.lag})),
        "problems": s.problems,
        "ok": s.problems.is_empty(),
    })
}
