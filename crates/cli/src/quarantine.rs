//! `quarantine list` and `quarantine remove`: what a store set aside.

use std::path::Path;

use anyhow::{Context, bail};
use serde_json::json;
use tidelog::ops::QuarantinedFile;

use crate::util::{self, human_bytes, print_json, say};
use crate::{Cli, Outcome};

/// Groups quarantined files by item, in listing order.
fn quarantine_items(dir: &Path) -> Vec<(String, Vec<QuarantinedFile>)> {
    let mut items: Vec<(String, Vec<QuarantinedFile>)> = Vec::new();
    for f in QuarantinedFile::list_store(dir) {
        match items.iter_mut().find(|(name, _)| *name == f.item) {
            Some((_, files)) => files.push(f),
            None => items.push((f.item.clone(), vec![f])),
        }
    }
    items
}

pub fn quarantine_list(cli: &Cli) -> anyhow::Result<Outcome> {
    let dir = util::existing_store(cli)?;
    let items = quarantine_items(&dir);
    if cli.json {
        let v: Vec<_> = items
            .iter()
            .map(|(name, files)| {
                json!({
                    "name": name,
                    "bytes": files.iter().map(|f| f.bytes).sum::<u64>(),
                    "reason": files.iter().find_map(|f| f.reason.clone()),
                    "note": files.iter().find_map(|f| f.note.clone()),
                    "files": files.iter().map(|f| json!({"path": f.path, "bytes": f.bytes})).collect::<Vec<_>>(),
                })
            })
            .collect();
        print_json(&json!({"items": v}))?;
        return Ok(Outcome::Fine);
    }
    let mut total = 0;
    for (name, files) in &items {
        let bytes: u64 = files.iter().map(|f| f.bytes).sum();
        total += bytes;
        let reason = files.iter().find_map(|f| f.reason.clone()).unwrap_or_else(|| "no note".into());
        say(format!("{name}  {}  {reason}", human_bytes(bytes)))?;
        for f in files {
            say(format!("    {} ({})", f.path.display(), human_bytes(f.bytes)))?;
        }
    }
    if items.is_empty() {
        say("the quarantine is empty")?;
    } else {
        say(format!(
            "{} item(s), {}; `tidelog quarantine remove NAME` (or --all) deletes them for good",
            items.len(),
            human_bytes(total)
        ))?;
    }
    Ok(Outcome::Fine)
}

pub fn quarantine_remove(cli: &Cli, names: &[String], all: bool) -> anyhow::Result<Outcome> {
    let dir = util::existing_store(cli)?;
    let known = quarantine_items(&dir);
    for n in names {
        if !known.iter().any(|(name, _)| name == n) {
            bail!("no quarantined item named {n}; `tidelog quarantine list` shows the names");
        }
    }
    let mut files = Vec::new();
    let mut bytes = 0;
    if all {
        let (f, b) = QuarantinedFile::remove(&dir, None)
            .with_context(|| format!("cannot empty the quarantine of {}", dir.display()))?;
        files.extend(f);
        bytes += b;
    } else {
        for n in names {
            let (f, b) = QuarantinedFile::remove(&dir, Some(n)).with_context(|| format!("cannot remove {n}"))?;
            files.extend(f);
            bytes += b;
        }
    }
    if cli.json {
        print_json(&json!({"removed": files, "bytes": bytes}))?;
    } else {
        say(format!("removed {} file(s), {}", files.len(), human_bytes(bytes)))?;
    }
    Ok(Outcome::Fine)
}
