//! `search`, `sessions` and `tail`: reading a store.

use std::collections::HashMap;
use std::io::{self};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::json;
use tidelog::ops::{self};
use tidelog::{QuerySyntax, SearchOrder, SearchQuery, Session, SessionFilter};

use crate::util::{self, message_line, out_line, print_json, say};
use crate::{Cli, Order, Outcome, SearchArgs};

pub fn search(cli: &Cli, a: &SearchArgs) -> anyhow::Result<Outcome> {
    if a.query.trim().is_empty() {
        bail!("the search query is empty; give some text to look for");
    }
    let q = SearchQuery {
        text: a.query.clone(),
        syntax: if a.fts5 { QuerySyntax::Fts5 } else { QuerySyntax::Words },
        session_id: a.session.clone(),
        role: a.role.clone(),
        source: a.source.clone(),
        limit: a.limit,
        order: match a.order {
            Order::Relevance => SearchOrder::Relevance,
            Order::Newest => SearchOrder::Newest,
            Order::Oldest => SearchOrder::Oldest,
        },
        ..SearchQuery::default()
    };
    if let Some(t) = crate::sync::target(cli)? {
        return crate::sync::search(cli, &t, &q);
    }
    let dir = util::existing_store(cli)?;
    let store = util::open_store_read_only(cli, &dir)?;
    let hits = store.search(&q).context("search failed")?;
    let (outcome, problems) = util::read_problems(&store);
    if cli.json {
        let v: Vec<_> = hits
            .iter()
            .map(|h| json!({"message": ops::message_to_json(&h.message), "snippet": h.snippet, "score": h.score}))
            .collect();
        print_json(&json!({"hits": v, "problems": problems}))?;
    } else {
        for h in &hits {
            let m = &h.message;
            say(format!(
                "{} [{}] {} {}: {}",
                ops::format_iso8601(m.timestamp),
                m.session_id,
                m.role,
                m.id,
                h.snippet.replace(['\n', '\r'], " ")
            ))?;
        }
        say(format!("{} hit(s)", hits.len()))?;
    }
    store.close()?;
    Ok(outcome)
}

pub fn sessions(cli: &Cli, source: Option<String>, title: Option<String>, limit: usize) -> anyhow::Result<Outcome> {
    let dir = util::existing_store(cli)?;
    let store = util::open_store_read_only(cli, &dir)?;
    let list = store
        .list_sessions(&SessionFilter { source, title_contains: title, limit: Some(limit), ..SessionFilter::default() })
        .context("cannot list sessions")?;
    let mut counts = Vec::with_capacity(list.len());
    for s in &list {
        counts.push(store.messages(&s.id).with_context(|| format!("cannot read the messages of {}", s.id))?.len());
    }
    let (outcome, problems) = util::read_problems(&store);
    if cli.json {
        let v: Vec<_> = list.iter().zip(&counts).map(|(s, n)| session_json(s, *n)).collect();
        print_json(&json!({"sessions": v, "problems": problems}))?;
    } else {
        for (s, n) in list.iter().zip(&counts) {
            say(format!(
                "{} {} {n} message(s) source={} model={} title={}{}",
                s.started_at.map(ops::format_iso8601).unwrap_or_else(|| "-".into()),
                s.id,
                s.source.as_deref().unwrap_or("-"),
                s.model.as_deref().unwrap_or("-"),
                s.title.as_deref().unwrap_or("-"),
                s.end_reason.as_deref().map(|r| format!(" ended={r}")).unwrap_or_default()
            ))?;
        }
        say(format!("{} session(s)", list.len()))?;
    }
    store.close()?;
    Ok(outcome)
}

/// A session as JSON, with its message count and `extra` as an object (not JSON text).
fn session_json(s: &Session, messages: usize) -> serde_json::Value {
    let mut v = serde_json::to_value(s).unwrap_or_else(|_| json!({"id": s.id}));
    if let Some(obj) = v.as_object_mut() {
        let extra = s.extra.as_deref().map(|e| serde_json::from_str(e).unwrap_or_else(|_| json!(e)));
        obj.insert("extra".into(), extra.unwrap_or(serde_json::Value::Null));
        obj.insert("messages".into(), json!(messages));
    }
    v
}

pub fn tail(cli: &Cli, follow: bool, session: Option<&str>, lines: usize) -> anyhow::Result<Outcome> {
    let dir = util::existing_store(cli)?;
    let store = util::open_store_read_only(cli, &dir)?;
    // The newest `lines` messages by append order (bounded by what it prints, not by the store).
    let msgs = store.latest(lines, session).context("cannot read the messages")?;
    let stdout = io::stdout();
    let print = |m: &tidelog::Message| -> anyhow::Result<()> {
        let line = if cli.json { ops::message_to_json(m).to_string() } else { message_line(m) };
        out_line(&mut stdout.lock(), &line)
    };
    for m in &msgs {
        print(m)?;
    }
    if !follow {
        store.close()?;
        return Ok(Outcome::Fine);
    }
    // Follow by integer id, whatever the messages' timestamps say; ids of other processes are
    // only roughly in time, so ask from a little before the last one and skip what was shown.
    const SLACK: i64 = 10_000 << 20; // 10 s of ids
    let mut last = msgs.iter().map(|m| m.num).max().unwrap_or(0);
    let mut seen: HashMap<String, i64> = msgs.iter().map(|m| (m.id.clone(), m.num)).collect();
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let new =
            store.messages_after(last.saturating_sub(SLACK), session, 10_000).context("cannot read the messages")?;
        for m in &new {
            if seen.contains_key(&m.id) {
                continue;
            }
            print(m)?;
            last = last.max(m.num);
            seen.insert(m.id.clone(), m.num);
        }
        seen.retain(|_, n| *n >= last.saturating_sub(SLACK));
    }
}
