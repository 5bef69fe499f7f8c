//! The PostgreSQL side of the CLI: `--postgres URL` (or `TIDELOG_POSTGRES`) names a shared
//! remote index; `tidelog sync` ships what it lacks and reports the lag per lane; `search`
//! runs there, across every store; `stats` adds the remote lag.

use std::sync::Arc;

use anyhow::Context;
use serde_json::json;
use tidelog::{RemoteLag, SearchQuery};
use tidelog_pg::PgTarget;

use crate::util::{self, print_json, say};
use crate::{Cli, Outcome};

/// The PostgreSQL target named on the command line, if any.
pub fn target(cli: &Cli) -> anyhow::Result<Option<Arc<PgTarget>>> {
    let Some(url) = cli.postgres.as_deref().filter(|u| !u.trim().is_empty()) else { return Ok(None) };
    let t = PgTarget::new(url).context("check --postgres (or TIDELOG_POSTGRES)")?;
    Ok(Some(Arc::new(t)))
}

fn lag_json(l: &RemoteLag) -> serde_json::Value {
    json!({
        "target": l.target,
        "store_id": l.store_id,
        "shipped": l.shipped,
        "lag": l.lag(),
        "lanes": l.lanes.iter().map(|x| json!({
            "lane": x.name, "last_lsn": x.last_lsn, "applied_lsn": x.applied_lsn, "lag": x.lag, "ahead": x.ahead,
        })).collect::<Vec<_>>(),
        "missing_lanes": l.missing_lanes,
        "problems": l.problems(),
    })
}

fn print_lag(l: &RemoteLag) -> anyhow::Result<()> {
    say(format!("remote index {} (store {})", l.target, l.store_id))?;
    for x in &l.lanes {
        say(format!(
            "  lane {}: LSN {} here, {} applied there, lag {}{}",
            x.name,
            x.last_lsn,
            x.applied_lsn,
            x.lag,
            if x.ahead { " (AHEAD of the journal: not shipped)" } else { "" }
        ))?;
    }
    say(format!("  lag: {} entr(ies) not shipped", l.lag()))?;
    Ok(())
}

/// `tidelog sync`: ships every entry the database lacks, from a read-only open (safe beside a
/// running gateway and its shipper), and reports the lag per lane. Exit 1 on a watermark ahead
/// of a journal or a lane missing here.
pub fn run(cli: &Cli) -> anyhow::Result<Outcome> {
    let Some(t) = target(cli)? else {
        anyhow::bail!("no PostgreSQL target; pass --postgres URL or set TIDELOG_POSTGRES");
    };
    let dir = util::existing_store(cli)?;
    let store = util::open_store_read_only(cli, &dir)?;
    let started = std::time::Instant::now();
    let lag = store.sync_remote(t.as_ref()).with_context(|| format!("cannot sync to {}", t.describe()))?;
    let secs = started.elapsed().as_secs_f64();
    if cli.json {
        let mut v = lag_json(&lag);
        v["seconds"] = json!(secs);
        print_json(&v)?;
    } else {
        say(format!("shipped {} entr(ies) in {secs:.2} s", lag.shipped))?;
        print_lag(&lag)?;
    }
    for p in lag.problems() {
        util::warn_line(&p);
    }
    store.close()?;
    Ok(if lag.problems().is_empty() { Outcome::Fine } else { Outcome::Problem })
}

/// The remote part of `tidelog stats` (when --postgres is given).
pub fn stats(cli: &Cli, dir: &std::path::Path) -> anyhow::Result<Option<serde_json::Value>> {
    let Some(t) = target(cli)? else { return Ok(None) };
    let store = util::open_store_read_only(cli, dir)?;
    let res = store.remote_lag(t.as_ref());
    store.close()?;
    match res {
        Ok(l) => {
            if !cli.json {
                print_lag(&l)?;
            }
            for p in l.problems() {
                util::warn_line(&p);
            }
            Ok(Some(lag_json(&l)))
        }
        Err(e) => {
            let msg = format!("remote index {} cannot be read: {e}", t.describe());
            if !cli.json {
                say(format!("  {msg}"))?;
            }
            util::warn_line(&msg);
            Ok(Some(json!({"target": t.describe(), "error": e.to_string()})))
        }
    }
}

/// `tidelog search` against PostgreSQL: every store feeding it.
pub fn search(cli: &Cli, t: &PgTarget, q: &SearchQuery) -> anyhow::Result<Outcome> {
    let hits = t.search(q).with_context(|| format!("search in {} failed", t.describe()))?;
    if cli.json {
        let v: Vec<_> = hits
            .iter()
            .map(|h| {
                json!({
                    "store_id": h.store_id,
                    "message": tidelog::ops::message_to_json(&h.hit.message),
                    "snippet": h.hit.snippet,
                    "score": h.hit.score,
                })
            })
            .collect();
        print_json(&json!({"hits": v}))?;
    } else {
        for h in &hits {
            let m = &h.hit.message;
            say(format!(
                "{} {} [{}] {} {}: {}",
                tidelog::ops::format_iso8601(m.timestamp),
                h.store_id,
                m.session_id,
                m.role,
                m.id,
                h.hit.snippet.replace(['\n', '\r'], " ")
            ))?;
        }
        say(format!("{} hit(s) in {}", hits.len(), t.describe()))?;
    }
    Ok(Outcome::Fine)
}
