//! `tidelog demo`: plays a gateway. Writer processes (this tool, re-run as `__demo-writer`)
//! append realistic conversations and print each acknowledged id; one writer is killed with
//! SIGKILL mid-stream; the store is reopened (recovery), indexed and searched; every
//! acknowledged id must be there.

use std::collections::HashSet;
use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;
use tidelog::{Message, SearchQuery, SessionPatch, Store};

use crate::util::{self, Reporter, print_json, say};
use crate::{Cli, Options, Outcome};

const USERS: [&str; 6] = [
    "Can you check why the nightly backup cron failed?",
    "帮我总结一下昨天的会议记录，重点是预算部分。",
    "What's the weather in Lisbon tomorrow? 🌦️",
    "東京のホテルを検索してください、来週の火曜日から三泊。",
    "Refactor the invoice parser so it handles the new PDF layout 📄",
    "Remind me to renew the boat insurance next Friday ⛵",
];
const TOOLS: [&str; 4] = ["terminal", "web_search", "read_file", "calendar"];
const WORDS: [&str; 16] = [
    "gateway",
    "journal",
    "segment",
    "checkpoint",
    "invoice",
    "budget",
    "deploy",
    "kernel",
    "索引",
    "検索",
    "日志",
    "backup",
    "latency",
    "fsync",
    "🚀",
    "trigram",
];

/// A tiny deterministic generator (xorshift), so runs are reproducible per writer.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        let n = v.len().max(1) as u64;
        v.get((self.next() % n) as usize).copied().unwrap_or("")
    }
    fn words(&mut self, n: usize) -> String {
        (0..n).map(|_| self.pick(&WORDS)).collect::<Vec<_>>().join(" ")
    }
}

/// One conversation turn: user, assistant calling a tool, tool output (a few KB), answer.
fn turn(rng: &mut Rng, session: &str, k: usize) -> Vec<Message> {
    let tool = rng.pick(&TOOLS);
    let call_id = format!("call_{:012x}", rng.next() & 0xffff_ffff_ffff);
    let mut output = String::new();
    let lines = 40 + (rng.next() % 60) as usize;
    for i in 0..lines {
        output.push_str(&format!("{i:>5} | {}\n", rng.words(8)));
    }
    let base = |role: &str| Message {
        session_id: session.to_string(),
        role: role.to_string(),
        source: Some("telegram".into()),
        ..Message::default()
    };
    vec![
        Message { content: Some(format!("{} ({k})", rng.pick(&USERS))), ..base("user") },
        Message {
            tool_calls: Some(
                json!([{"id": call_id, "type": "function", "function": {"name": tool, "arguments": json!({"q": rng.words(3)}).to_string()}}])
                    .to_string(),
            ),
            finish_reason: Some("tool_calls".into()),
            ..base("assistant")
        },
        Message {
            content: Some(output),
            tool_call_id: Some(call_id),
            tool_name: Some(tool.to_string()),
            ..base("tool")
        },
        Message {
            content: Some(format!("Done: {}. {}", rng.words(12), rng.words(10))),
            finish_reason: Some("stop".into()),
            token_count: Some((rng.next() % 900) as i64 + 20),
            ..base("assistant")
        },
    ]
}

/// The hidden `__demo-writer`: appends `count` messages one at a time, printing each id once
/// it is durable.
pub fn writer(cli: &Cli, writer: usize, count: usize) -> anyhow::Result<Outcome> {
    let dir = util::store_dir(cli)?;
    let store = util::open_store(cli, &dir)?;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((writer as u64 + 1) * 0x1000_0000_01B3));
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut written = 0;
    let mut conv = 0;
    while written < count {
        conv += 1;
        let session = format!("telegram:{}:{conv}", 1000 + writer);
        store.upsert_session(SessionPatch {
            id: session.clone(),
            source: Some("telegram".into()),
            model: Some("claude-sonnet-4.5".into()),
            title: Some(format!("demo writer {writer} conversation {conv}")),
            ..SessionPatch::default()
        })?;
        for k in 0..3 {
            for m in turn(&mut rng, &session, k) {
                if written >= count {
                    break;
                }
                let a = store.append(m)?;
                writeln!(out, "{}", a.id).and_then(|()| out.flush()).context("cannot write to stdout")?;
                written += 1;
            }
        }
    }
    drop(out);
    store.close()?;
    Ok(Outcome::Fine)
}

/// `tidelog-demo` in the current folder, or `tidelog-demo-2`, `-3`, ... if it is taken: every run
/// gets a fresh store and never touches an earlier one.
fn fresh_demo_dir() -> anyhow::Result<std::path::PathBuf> {
    for n in 1..10_000 {
        let d = std::path::PathBuf::from(if n == 1 { "tidelog-demo".to_string() } else { format!("tidelog-demo-{n}") });
        if !d.exists() {
            return Ok(d);
        }
    }
    bail!("tidelog-demo ... tidelog-demo-9999 all exist; pass --dir with a new folder")
}

/// The command line that runs this tool again: [`Options::relaunch`], or this executable.
fn relaunch_command(options: &Options) -> anyhow::Result<Vec<OsString>> {
    if options.relaunch.is_empty() {
        let exe = std::env::current_exe().context("cannot find this program's path to start the writers")?;
        Ok(vec![exe.into_os_string()])
    } else {
        Ok(options.relaunch.clone())
    }
}

fn spawn_writer(tool: &[OsString], dir: &Path, cli: &Cli, w: usize, count: usize) -> anyhow::Result<Child> {
    let Some((program, leading)) = tool.split_first() else { bail!("no command to start the writers with") };
    let mut c = Command::new(program);
    c.args(leading)
        .arg("__demo-writer")
        .arg("--dir")
        .arg(dir)
        .arg("--writer")
        .arg(w.to_string())
        .arg("--count")
        .arg(count.to_string());
    if let Some(m) = cli.max_record_size {
        c.arg("--max-record-size").arg(m.to_string());
    }
    if let Some(s) = cli.segment_size {
        c.arg("--segment-size").arg(s.to_string());
    }
    c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    c.spawn().with_context(|| format!("cannot start writer process {}", Path::new(program).display()))
}

pub fn run(cli: &Cli, options: &Options, writers: usize, messages: usize) -> anyhow::Result<Outcome> {
    if writers == 0 || messages == 0 {
        bail!("--writers and --messages must be at least 1");
    }
    let dir = match &cli.dir {
        Some(d) => {
            if let Ok(mut rd) = std::fs::read_dir(d)
                && rd.next().is_some()
            {
                bail!("{} already holds files; remove it or pass --dir with a new folder", d.display());
            }
            if d.exists() && !d.is_dir() {
                bail!("{} is not a folder; pass --dir with a new folder", d.display());
            }
            d.clone()
        }
        None => fresh_demo_dir()?,
    };
    let tool = relaunch_command(options)?;
    let per = messages.div_ceil(writers);
    let victim = 0;
    let kill_at = (per / 2).max(1);
    if !cli.json {
        say(format!(
            "demo: {writers} writer process(es) save {} messages to {}; writer {victim} is killed (SIGKILL) after {kill_at} confirmed messages",
            per * writers,
            dir.display()
        ))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let started = Instant::now();
    let (tx, rx) = mpsc::channel::<(usize, String)>();
    let mut children = Vec::new();
    let mut readers = Vec::new();
    for w in 0..writers {
        let mut child = spawn_writer(&tool, &dir, cli, w, per)?;
        let Some(stdout) = child.stdout.take() else { bail!("writer {w} has no stdout") };
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            // Only whole lines count: a line cut by the kill was never fully acknowledged.
            while matches!(r.read_line(&mut line), Ok(n) if n > 0) {
                if let Some(id) = line.strip_suffix('\n') {
                    let _ = tx.send((w, id.to_string()));
                }
                line.clear();
            }
        }));
        children.push(child);
    }
    drop(tx);
    let mut acked: Vec<String> = Vec::with_capacity(per * writers);
    let mut per_writer = vec![0usize; writers];
    let mut killed = false;
    let mut rep = Reporter::new();
    for (w, id) in rx {
        acked.push(id);
        if let Some(c) = per_writer.get_mut(w) {
            *c += 1;
        }
        if !killed && w == victim && per_writer.get(w).copied().unwrap_or(0) >= kill_at {
            if let Some(c) = children.get_mut(victim) {
                c.kill().context("cannot kill the writer")?;
            }
            killed = true;
        }
        if acked.len().is_multiple_of(100) {
            rep.update("saving messages", acked.len() as u64, (per * writers) as u64);
        }
    }
    rep.finish();
    let write_secs = started.elapsed().as_secs_f64();
    for r in readers {
        let _ = r.join();
    }
    let mut failed = Vec::new();
    for (w, mut c) in children.into_iter().enumerate() {
        let st = c.wait().context("cannot wait for a writer")?;
        if w != victim && !st.success() {
            failed.push(format!("writer {w} exited with {st}"));
        }
    }
    // Reopen: this process claims a free lane (the killed writer's) and runs its recovery.
    let reopen = Instant::now();
    rep.working("reopening the store (recovery)");
    let store =
        Store::open(&dir, util::store_options(cli)).with_context(|| format!("cannot reopen {}", dir.display()))?;
    let recovered = store.recovery_report().clone();
    let lag_at_open = store.status().unindexed;
    let deadline = Instant::now() + Duration::from_secs(60);
    let caught_up = loop {
        if store.wait_indexed(Duration::from_millis(200)) {
            break true;
        }
        if Instant::now() >= deadline {
            break false;
        }
        rep.update("indexing for search", lag_at_open.saturating_sub(store.status().unindexed), lag_at_open);
    };
    rep.finish();
    let index_secs = reopen.elapsed().as_secs_f64();
    // Two characters: below what an FTS5 trigram query finds, so as a literal word (a scan).
    let hits = store.search(&SearchQuery { limit: 1000, ..SearchQuery::words("検索") })?;
    let found: HashSet<String> = store.all_messages(None, None)?.into_iter().map(|m| m.id).collect();
    let lost: Vec<&String> = acked.iter().filter(|id| !found.contains(*id)).collect();
    let status = store.status();
    store.close()?;
    let throughput = acked.len() as f64 / write_secs.max(1e-9);
    let total_secs = started.elapsed().as_secs_f64();
    let ok = lost.is_empty() && failed.is_empty() && caught_up;
    if cli.json {
        print_json(&json!({
            "dir": dir, "writers": writers, "killed_writer": victim,
            "acknowledged": acked.len(), "found": acked.len() - lost.len(), "lost": lost.len(),
            "stored_messages": found.len(),
            "throughput_acks_per_s": throughput,
            "recovery_problems": recovered.problems, "torn_tails": recovered.torn_tails.len(),
            "index_lag_at_reopen": lag_at_open, "index_caught_up": caught_up, "index_catch_up_s": index_secs,
            "search_hits": hits.len(), "writer_failures": failed,
            "problems": status.problems, "seconds": total_secs, "ok": ok,
        }))?;
    } else {
        say(format!("messages confirmed as saved: {}", acked.len()))?;
        say(format!(
            "found after the restart:     {} of them ({} messages stored in all)",
            acked.len() - lost.len(),
            found.len()
        ))?;
        say(format!("lost:                        {}", lost.len()))?;
        say(format!(
            "speed:                       {throughput:.0} messages/s ({writers} writers, each message on disk before it is confirmed)"
        ))?;
        let cut = recovered.torn_tails.len();
        // A cut-off tail is said in plain words below; other problems as the journal says them.
        let problems: Vec<&str> =
            recovered.problems.iter().map(String::as_str).filter(|p| !p.contains("torn tail")).collect();
        say(format!(
            "restart after the kill:      {}{}",
            if problems.is_empty() { "clean".to_string() } else { problems.join("; ") },
            if cut > 0 {
                format!(
                    "; {cut} half-written message(s) the killed writer never confirmed were set aside (quarantine/)"
                )
            } else {
                String::new()
            }
        ))?;
        say(format!(
            "search index:                {lag_at_open} message(s) still to index at the restart; {} in {index_secs:.1} s",
            if caught_up { "all indexed" } else { "NOT all indexed" }
        ))?;
        say(format!("search for 検索:             {} hit(s)", hits.len()))?;
        for f in &failed {
            say(format!("problem: {f}"))?;
        }
        for id in lost.iter().take(10) {
            say(format!("lost id: {id}"))?;
        }
        say(format!(
            "time:                        {total_secs:.1} s; the store is in {} (try `tidelog --dir {} search invoice`)",
            dir.display(),
            dir.display()
        ))?;
    }
    Ok(if ok { Outcome::Fine } else { Outcome::Problem })
}
