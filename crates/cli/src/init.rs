//! `tidelog init`: creates a store in a new or empty folder.

use anyhow::Context;
use serde_json::json;

use crate::util::{self, print_json, say};
use crate::{Cli, Outcome};

pub fn run(cli: &Cli) -> anyhow::Result<Outcome> {
    let dir = util::store_dir(cli)?;
    if dir.join(tidelog::LANES_DIR).is_dir() {
        // Checks it the way every other command does (a folder we can read).
        let dir = util::existing_store(cli)?;
        if cli.json {
            print_json(&json!({ "dir": dir, "created": false }))?;
        } else {
            say(format!("{} is already a tidelog store; nothing to do", dir.display()))?;
        }
        return Ok(Outcome::Fine);
    }
    // A missing or empty folder; anything else is refused with what to do.
    let dir = util::new_or_existing_store(cli)?;
    let store = util::open_store(cli, &dir)?;
    store.close().with_context(|| format!("cannot close the new store at {}", dir.display()))?;
    if cli.json {
        print_json(&json!({ "dir": dir, "created": true }))?;
    } else {
        say(format!("created a tidelog store in {}", dir.display()))?;
    }
    Ok(Outcome::Fine)
}
