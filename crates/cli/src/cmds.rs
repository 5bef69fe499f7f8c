//! The commands that read, check, repair and copy a store.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;
use tidelog::ops::{self, QuarantinedFile, VerifyReport};
use tidelog::{Index, IndexOptions, QuerySyntax, RecoveryMode, SearchOrder, SearchQuery, Session, SessionFilter};

use crate::util::{self, Reporter, human_bytes, message_line, out_line, print_json, say};
use crate::{Cli, ExportFormat, Order, Outcome, SearchArgs};

fn parse_time(s: &str) -> anyhow::Result<f64> {
    ops::parse_timestamp(&serde_json::Value::String(s.to_string())).map_err(|e| anyhow::anyhow!("--since: {e}"))
}

/// A file name for a session id, one to one: letters, digits, `-`, `_`, `:` and inner `.` stay,
/// every other byte becomes `%XX` (so `a/b`, `a_b` and `a b` get three different files).
fn safe_file_name(id: &str) -> String {
    let mut s = String::with_capacity(id.len());
    for (i, c) in id.char_indices() {
        if c.is_alphanumeric() || matches!(c, '-' | '_' | ':') || (c == '.' && i > 0) {
            s.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                s.push_str(&format!("%{b:02X}"));
            }
        }
    }
    if s.is_empty() { "%".to_string() } else { s }
}

pub fn export(
    cli: &Cli,
    session: Option<&str>,
    since: Option<&str>,
    format: ExportFormat,
    out: Option<&Path>,
) -> anyhow::Result<Outcome> {
    let since = since.map(parse_time).transpose()?;
    if format == ExportFormat::HermesJsonl && out.is_none() {
        bail!("--format hermes-jsonl writes one file per session: give the folder with --out DIR");
    }
    let dir = util::existing_store(cli)?;
    let store = util::open_store_read_only(cli, &dir)?;
    let mut rep = Reporter::new();
    match (format, out) {
        (ExportFormat::HermesJsonl, Some(out)) => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(out)
                .with_context(|| format!("cannot create the folder {}", out.display()))?;
            let sessions: Vec<String> = match session {
                Some(s) => vec![s.to_string()],
                None => store.list_sessions(&SessionFilter::default())?.into_iter().map(|s| s.id).collect(),
            };
            let (mut n_msgs, mut n_files) = (0u64, 0usize);
            for (i, sid) in sessions.iter().enumerate() {
                let mut list = Vec::new();
                store.export(Some(sid), since, &mut |m| {
                    list.push(m);
                    Ok(())
                })?;
                if list.is_empty() {
                    continue;
                }
                let s = store.get_session(sid)?.unwrap_or_else(|| Session { id: sid.clone(), ..Session::default() });
                let path = out.join(format!("{}.jsonl", safe_file_name(sid)));
                let f = create_new_file(&path, "export into an empty folder")?;
                let mut w = io::BufWriter::new(f);
                for line in ops::hermes_session_lines(&s, &list) {
                    writeln!(w, "{line}").with_context(|| format!("cannot write {}", path.display()))?;
                }
                finish_file(w, &path)?;
                n_msgs += list.len() as u64;
                n_files += 1;
                rep.update("writing session files", i as u64 + 1, sessions.len() as u64);
            }
            rep.finish();
            if cli.json {
                print_json(&json!({"out": out, "sessions": n_files, "messages": n_msgs}))?;
            } else {
                say(format!("wrote {n_files} session file(s), {n_msgs} message(s) to {}", out.display()))?;
            }
        }
        (_, Some(out)) => {
            let f = create_new_file(out, "give a new file name with --out")?;
            let mut w = io::BufWriter::new(f);
            let mut write_err = None;
            let n = store.export(session, since, &mut |m| {
                if let Err(e) = writeln!(w, "{}", ops::message_to_json(&m)) {
                    write_err = Some(e);
                    return Err(tidelog::Error::Closed);
                }
                Ok(())
            });
            if let Some(e) = write_err {
                return Err(e).with_context(|| format!("cannot write {}", out.display()));
            }
            let n = n?;
            finish_file(w, out)?;
            rep.finish();
            if cli.json {
                print_json(&json!({"out": out, "messages": n}))?;
            } else {
                say(format!("wrote {n} message(s) to {}", out.display()))?;
            }
        }
        (_, None) => {
            rep.finish();
            let stdout = io::stdout();
            let mut w = io::BufWriter::new(stdout.lock());
            let mut write_err = None;
            let res = store.export(session, since, &mut |m| {
                if let Err(e) = writeln!(w, "{}", ops::message_to_json(&m)) {
                    write_err = Some(e);
                    return Err(tidelog::Error::Closed);
                }
                Ok(())
            });
            match write_err {
                Some(e) if e.kind() == io::ErrorKind::BrokenPipe => return Err(anyhow::Error::new(util::StdoutClosed)),
                Some(e) => return Err(e).context("cannot write to stdout"),
                None => {
                    res?;
                }
            }
            if let Err(e) = w.flush() {
                if e.kind() == io::ErrorKind::BrokenPipe {
                    return Err(anyhow::Error::new(util::StdoutClosed));
                }
                return Err(e).context("cannot write to stdout");
            }
        }
    }
    let (outcome, _) = util::read_problems(&store);
    store.close()?;
    Ok(outcome)
}

/// Creates a new private file (0600) that must not exist yet.
fn create_new_file(path: &Path, what_to_do: &str) -> anyhow::Result<std::fs::File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}; {what_to_do}", path.display()))
}

/// Flushes and syncs a file written through a buffer.
fn finish_file(w: io::BufWriter<std::fs::File>, path: &Path) -> anyhow::Result<()> {
    w.into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

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
            say(format!("  {} (session {}) from {} LSN {}", m.id, m.session_id, m.from_lane, m.from_lsn))?;
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
    rep.working("closing the store");
    store.close()?;
    rep.working(&format!("checkpointing the index WAL ({})", human_bytes(size(&wal))));
    let ix = Index::open(&path, &IndexOptions::default()).with_context(|| format!("cannot open {}", path.display()))?;
    let c = ix.checkpoint_truncate().with_context(|| format!("cannot checkpoint {}", path.display()))?;
    let after = ix.file_sizes();
    drop(ix);
    rep.finish();
    if cli.json {
        print_json(&json!({
            "caught_up": caught_up, "unindexed": lag, "busy": c.busy,
            "db_bytes_before": before.0, "wal_bytes_before": before.1,
            "db_bytes_after": after.0, "wal_bytes_after": after.1,
        }))?;
    } else {
        if !caught_up {
            say(format!("index still {lag} entries behind after {timeout} s; checkpointed what is indexed"))?;
        }
        if c.busy {
            say("the WAL could not be truncated completely: a reader was active; run checkpoint again")?;
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

pub fn stats(cli: &Cli) -> anyhow::Result<Outcome> {
    let dir = util::existing_store(cli)?;
    let s = ops::store_stats(&dir).with_context(|| format!("cannot read {}", dir.display()))?;
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
    say(format!("  journal: {} in {} lane(s)", human_bytes(s.journal_bytes), s.lanes.len()))?;
    say(format!("  compactor lag: {} entr(ies) not indexed yet", s.unindexed))?;
    say(format!(
        "  index: {} + {} WAL, {} message(s), {} session(s){}",
        human_bytes(s.index_bytes),
        human_bytes(s.wal_bytes),
        s.indexed_messages.map_or("?".into(), |n| n.to_string()),
        s.indexed_sessions.map_or("?".into(), |n| n.to_string()),
        s.index_error.as_ref().map(|e| format!(" ({e})")).unwrap_or_default()
    ))?;
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

#[cfg(test)]
mod tests {
    use super::safe_file_name;

    #[test]
    fn session_file_names_are_one_to_one() {
        let ids = ["a/b", "a_b", "a b", "a%2Fb", ".hidden", "20260503_170010_abc", "検索", "../x"];
        let names: std::collections::BTreeSet<String> = ids.iter().map(|i| safe_file_name(i)).collect();
        assert_eq!(names.len(), ids.len(), "{names:?}");
        assert_eq!(safe_file_name("20260503_170010_abc"), "20260503_170010_abc");
        assert!(names.iter().all(|n| !n.starts_with('.') && !n.contains('/')), "{names:?}");
    }
}
