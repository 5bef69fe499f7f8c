//! `tidelog erase`: deletes sessions (optionally) and erases deleted content from every file of
//! the store now, instead of waiting for the compactor's deadline.

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
    // The claim below is checked, not inferred: every file of the folder is searched for the
    // texts of the deleted messages the pass saw.
    let found = tidelog::ops::find_erased_content(&dir, &r);
    let clean = r.is_complete() && found.is_empty();
    if cli.json {
        print_json(&json!({"deleted_sessions": deleted, "complete": clean, "report": r, "still_found": found}))?;
    } else {
        for s in &deleted {
            say(format!("session {s}: deleted"))?;
        }
        say(format!("erased {} record(s) in place in {} segment(s)", r.erased_records, r.segments_overwritten.len()))?;
        for f in &r.scrubbed {
            say(format!("removed deleted content from {}", f.display()))?;
        }
        for f in &r.removed {
            say(format!("removed {} (left by a command that did not finish)", f.display()))?;
        }
        for p in &r.pending {
            say(format!("still on disk: {p}"))?;
        }
        for f in &found {
            say(format!("still on disk: {} holds the text of deleted message {}", f.path.display(), f.message_id))?;
        }
        if clean {
            say("no file of the store holds deleted content")?;
        }
    }
    Ok(if clean { Outcome::Fine } else { Outcome::Problem })
}
