//! `tidelog erase`: deletes sessions (optionally) and erases deleted content from the journal
//! files now, instead of waiting for the compactor's deadline.

use anyhow::Context;
use serde_json::json;

use crate::util::{self, print_json, say};
use crate::{Cli, Outcome};

pub fn run(cli: &Cli, sessions: &[String], children: bool) -> anyhow::Result<Outcome> {
    let dir = util::existing_store(cli)?;
    let mut deleted = Vec::new();
    if !sessions.is_empty() {
        let store = util::open_store(cli, &dir)?;
        let ids: Vec<&str> = sessions.iter().map(String::as_str).collect();
        deleted = store
            .delete_sessions(&ids, children)
            .with_context(|| format!("cannot delete sessions in {}", dir.display()))?;
        // The index drops the rows when the compactor applies the deletion; wait for it so the
        // pass below runs after it.
        store.wait_indexed(std::time::Duration::from_secs(60));
        store.close()?;
    }
    let r = tidelog::ops::erase_store(&dir, None).map_err(|e| match e {
        e @ tidelog::Error::CompactorBusy { .. } => anyhow::anyhow!(
            "{e}: that process erases deleted content itself within its deadline (`tidelog stats` shows what is pending)"
        ),
        e => anyhow::Error::new(e).context(format!("cannot erase in {}", dir.display())),
    })?;
    if cli.json {
        print_json(&json!({"deleted_sessions": deleted, "complete": r.is_complete(), "report": r}))?;
    } else {
        for s in &deleted {
            say(format!("session {s}: deleted"))?;
        }
        say(format!(
            "erased {} record(s) in {} segment(s) ({} sealed for it)",
            r.erased_records,
            r.segments_rewritten.len(),
            r.segments_sealed
        ))?;
        for p in &r.pending {
            say(format!("still on disk: {p}"))?;
        }
        for f in &r.quarantine_may_hold {
            say(format!(
                "quarantined file may hold deleted content: {} (remove it when it is no longer needed)",
                f.display()
            ))?;
        }
        if r.is_complete() {
            say("no file of the store holds deleted content")?;
        }
    }
    Ok(if r.pending.is_empty() { Outcome::Fine } else { Outcome::Problem })
}
