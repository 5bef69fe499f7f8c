//! Erasure that leaves nothing, under real process kills.
//!
//! The test binary re-runs itself as children of every kind that touches deleted content, all
//! at once on one store folder, and SIGKILLs each at a seeded random moment:
//!
//! - writers append messages with unique secret tokens, delete sessions (`delete_sessions`, or a
//!   delete-rewrite that clears a session) and report on stdout what was acknowledged; some run
//!   the compactor (which runs erase passes, deadline 0-200 ms), some do not;
//! - `erase` runs `ops::erase_store` in a loop (overwrites in place, redo files);
//! - `verify` runs `ops::verify_store` in a loop (scratch folders with an index copy);
//! - `rebuild` runs `ops::rebuild_index_in_place` in a loop (`index.rebuilding.db`);
//! - `backup` runs `ops::backup_store` into a folder outside the store in a loop.
//!
//! Then one process opens the store (recovery of every lane, leftover redo files applied) and
//! closes it, which erases what is pending before it returns. After that, with no process left:
//! `grep -r` finds no secret of a deleted session in any file of the store folder (scratch
//! folders, temporary files, quarantines, index and WAL included), every acknowledged secret of a
//! session that was not deleted reads back, and `verify` reports nothing (no deleted content
//! anywhere).
//!
//! Knobs: `TIDELOG_ERASE_ROUNDS` (default 3), `TIDELOG_ERASE_SEED`, `TIDELOG_ERASE_KEEP` (a
//! folder to copy a failing store to).
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tidelog::ops::{backup_store, erase_store, rebuild_index_in_place, verify_store};
use tidelog::{Message, RewriteMode, Store, StoreOptions};
use tidelog_tests::{Rng, env_knob};

const TEST_NAME: &str = "kill_every_kind_of_command_then_grep_every_file";
const ENV_ROLE: &str = "TIDELOG_ERASE_KILL_ROLE";
const ENV_DIR: &str = "TIDELOG_ERASE_KILL_DIR";
const ENV_TAG: &str = "TIDELOG_ERASE_KILL_TAG";
const ENV_ARG: &str = "TIDELOG_ERASE_KILL_ARG";
/// Sessions a writer creates at most.
const WRITER_SESSIONS: usize = 80;

fn store_opts(run_compactor: bool, erase_ms: u64) -> StoreOptions {
    StoreOptions {
        segment_size: 16 << 10,
        run_compactor,
        batch_max_entries: 50,
        poll_interval: Duration::from_millis(10),
        erase_within: Duration::from_millis(erase_ms),
        ..StoreOptions::default()
    }
}

fn say(line: &str) {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    o.write_all(format!("{line}\n").as_bytes()).unwrap();
    o.flush().unwrap();
}

fn secret(session: &str, i: usize) -> String {
    format!("SECRET<{session}#{i}>")
}

/// Appends and deletes until killed.
fn writer(dir: &Path, tag: &str, arg: &str) {
    let (rc, erase_ms) = arg.split_once(',').unwrap();
    let store = Store::open(dir, store_opts(rc == "1", erase_ms.parse().unwrap())).unwrap();
    let mut rng = Rng::new(tag.bytes().map(u64::from).sum());
    // A bounded amount of work (then it waits to be killed), so a round's recovery costs about
    // the same on a fast machine as on a slow one.
    for k in 0..WRITER_SESSIONS {
        let session = format!("{tag}s{k}");
        let n = 2 + rng.below(8) as usize;
        let batch: Vec<Message> = (0..n)
            .map(|i| Message {
                session_id: session.clone(),
                role: "user".into(),
                content: Some(format!(
                    "{} said in confidence, {}",
                    secret(&session, i),
                    "w".repeat(rng.below(300) as usize)
                )),
                ..Message::default()
            })
            .collect();
        store.append_batch(batch).unwrap();
        say(&format!("ACK {session} {n}"));
        match rng.below(3) {
            0 => {
                say(&format!("DELETING {session}"));
                store.delete_sessions(&[session.as_str()], false).unwrap();
                say(&format!("DELETED {session}"));
            }
            1 => {
                say(&format!("DELETING {session}"));
                let keep = Message {
                    session_id: session.clone(),
                    role: "user".into(),
                    content: Some(format!("what is left of {session}")),
                    ..Message::default()
                };
                store.rewrite(&session, RewriteMode::Delete, false, vec![keep]).unwrap();
                say(&format!("DELETED {session}"));
            }
            _ => {}
        }
    }
    say("IDLE");
    loop {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The other commands, in a loop until killed. Errors (another one holds the compactor lock, a
/// lane being written) are part of the game.
fn command(dir: &Path, role: &str, arg: &str) {
    for i in 0.. {
        match role {
            "erase" => {
                let _ = erase_store(dir, None);
            }
            "verify" => {
                let _ = verify_store(dir, &mut |_, _, _| {});
            }
            "rebuild" => {
                let _ = rebuild_index_in_place(dir, "kill test", &mut |_, _, _| {});
            }
            "backup" => {
                let _ = backup_store(dir, &Path::new(arg).join(format!("b{i}")), &mut |_, _, _| {});
            }
            r => panic!("unknown role {r}"),
        }
        say(&format!("DONE {role} {i}"));
        std::thread::sleep(Duration::from_millis(3));
    }
}

struct Running {
    role: String,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: JoinHandle<()>,
    stderr: JoinHandle<String>,
    kill_at: Instant,
}

fn spawn(dir: &Path, role: &str, tag: &str, arg: &str, kill_at: Instant) -> Running {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads", "1"])
        .env(ENV_ROLE, role)
        .env(ENV_DIR, dir)
        .env(ENV_TAG, tag)
        .env(ENV_ARG, arg)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let stdout = child.stdout.take().unwrap();
    let reader = {
        let lines = Arc::clone(&lines);
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            // Whole lines only: a kill may cut one.
            while r.read_line(&mut line).unwrap_or(0) > 0 {
                if let Some(l) = line.strip_suffix('\n') {
                    lines.lock().unwrap().push(l.to_string());
                }
                line.clear();
            }
        })
    };
    let mut err = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    Running { role: role.to_string(), child, lines, reader, stderr, kill_at }
}

/// `grep -r` in its own process: the files holding any of `needles`, with what they hold.
fn grep(dir: &Path, needles: &[String]) -> Vec<String> {
    // Inside compressed records too: their bytes do not show the text.
    tidelog_tests::grep_expanded(dir, needles)
}

/// Leftovers of killed commands in the folder, by kind (to show what the rounds exercised).
fn leftovers(dir: &Path, seen: &mut BTreeMap<&'static str, u64>) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let kind = if name.starts_with(".logbook-tmp-") {
                Some("scratch folders")
            } else if name == tidelog_journal::REDO_FILE {
                Some("erase redo files")
            } else if name.starts_with("index.rebuilding.db") {
                Some("rebuild leftovers")
            } else if name.starts_with("erase.pending-") {
                Some("pending-erasure markers")
            } else if d.ends_with("quarantine") && !name.ends_with(".json") {
                Some("quarantined files")
            } else {
                None
            };
            if let Some(k) = kind {
                *seen.entry(k).or_default() += 1;
            } else if e.path().is_dir() {
                stack.push(e.path());
            }
        }
    }
}

#[test]
fn kill_every_kind_of_command_then_grep_every_file() {
    if let (Ok(role), Ok(dir)) = (std::env::var(ENV_ROLE), std::env::var(ENV_DIR)) {
        let tag = std::env::var(ENV_TAG).unwrap_or_default();
        let arg = std::env::var(ENV_ARG).unwrap_or_default();
        match role.as_str() {
            "writer" => writer(Path::new(&dir), &tag, &arg),
            _ => command(Path::new(&dir), &role, &arg),
        }
        return;
    }
    let rounds = env_knob("TIDELOG_ERASE_ROUNDS", 3);
    let seed = env_knob("TIDELOG_ERASE_SEED", 0x6572_6173);
    println!("erase kill test: {rounds} rounds, seed {seed} (TIDELOG_ERASE_ROUNDS, TIDELOG_ERASE_SEED)");
    let mut rng = Rng::new(seed);
    let started = Instant::now();
    let root = tempfile::tempdir().unwrap();
    let backups = tempfile::tempdir().unwrap();
    let (mut kills, mut deleted_total, mut kept_total) = (0u64, 0usize, 0usize);
    let mut seen: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut close_ms = Vec::new();
    for round in 0..rounds {
        let dir = root.path().join(format!("store-{round}"));
        std::fs::create_dir_all(&dir).unwrap();
        // Writers first (a store to work on), then every other kind of command.
        let now = Instant::now();
        let mut running = Vec::new();
        for w in 0..2 {
            // Mostly without a compactor, so that the erase, rebuild and verify commands get
            // the compactor lock (and get killed holding it).
            let rc = u8::from(rng.below(4) == 0);
            let arg = format!("{rc},{}", rng.below(200));
            let kill_at = now + Duration::from_millis(300 + rng.below(700));
            running.push(spawn(&dir, "writer", &format!("r{round}w{w}"), &arg, kill_at));
        }
        std::thread::sleep(Duration::from_millis(150));
        let backup_dir = backups.path().join(format!("round-{round}"));
        for role in ["erase", "verify", "rebuild", "backup"] {
            let kill_at = Instant::now() + Duration::from_millis(50 + rng.below(900));
            running.push(spawn(&dir, role, &format!("r{round}{role}"), &backup_dir.display().to_string(), kill_at));
        }
        running.sort_by_key(|r| r.kill_at);
        let mut outputs: Vec<(String, Vec<String>, String)> = Vec::new();
        for mut r in running {
            std::thread::sleep(r.kill_at.saturating_duration_since(Instant::now()));
            match r.child.try_wait().unwrap() {
                // A child that stopped by itself failed: say why.
                Some(status) => {
                    r.reader.join().unwrap();
                    panic!("{} exited by itself ({status}): {}", r.role, r.stderr.join().unwrap());
                }
                None => {
                    r.child.kill().unwrap();
                    r.child.wait().unwrap();
                    kills += 1;
                }
            }
            r.reader.join().unwrap();
            let err = r.stderr.join().unwrap();
            outputs.push((r.role, r.lines.lock().unwrap().clone(), err));
        }
        leftovers(&dir, &mut seen);

        // What the writers acknowledged.
        let mut acked: BTreeMap<String, usize> = BTreeMap::new();
        let mut deleting: BTreeSet<String> = BTreeSet::new();
        for (role, lines, _) in &outputs {
            if role != "writer" {
                continue;
            }
            for l in lines {
                let mut w = l.split(' ');
                match (w.next(), w.next(), w.next()) {
                    (Some("ACK"), Some(s), Some(n)) => {
                        acked.insert(s.to_string(), n.parse().unwrap());
                    }
                    (Some("DELETING"), Some(s), _) => {
                        deleting.insert(s.to_string());
                    }
                    _ => {}
                }
            }
        }
        assert!(!acked.is_empty(), "round {round}: no writer got an append acknowledged");

        // One process opens (recovery) and closes (the erasure pending is done before close
        // returns); then nothing runs.
        let t = Instant::now();
        let store = Store::open(&dir, store_opts(true, 60_000)).unwrap();
        let opened = t.elapsed();
        assert!(store.wait_indexed(Duration::from_secs(60)));
        let indexed = t.elapsed();
        // Deleted: every session whose deletion is in the journal (acknowledged or not), which
        // reads show as holding no secret.
        let mut deleted = Vec::new();
        let mut kept = Vec::new();
        for (s, n) in &acked {
            let texts: Vec<String> = store
                .messages(s)
                .unwrap()
                .into_iter()
                .filter_map(|m| m.content)
                .filter(|c| c.contains("SECRET<"))
                .collect();
            if texts.is_empty() {
                assert!(deleting.contains(s), "round {round}: session {s} lost its messages without a deletion");
                deleted.push(s.clone());
            } else {
                // Nothing acknowledged of a kept session is lost.
                assert_eq!(texts.len(), *n, "round {round}: session {s} kept {} of {n} messages", texts.len());
                kept.push(s.clone());
            }
        }
        let t_close = Instant::now();
        store.close().unwrap();
        let closed = t_close.elapsed();
        close_ms.push(t.elapsed().as_millis());
        let needles: Vec<String> = deleted.iter().map(|s| format!("SECRET<{s}#")).collect();
        let left = grep(&dir, &needles);
        let pending: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("erase.pending-"))
            .collect();
        if !left.is_empty() || !pending.is_empty() {
            if let Ok(keep) = std::env::var("TIDELOG_ERASE_KEEP") {
                tidelog_tests::copy_dir(&dir, Path::new(&keep));
            }
            let rep = erase_store(&dir, None);
            panic!(
                "round {round}: deleted content left after recovery and close: {left:?}; markers {pending:?}; a pass now: {rep:?}\nchildren: {:?}",
                outputs.iter().map(|(r, _, e)| (r, e.lines().rev().take(5).collect::<Vec<_>>())).collect::<Vec<_>>()
            );
        }
        let rep = verify_store(&dir, &mut |_, _, _| {}).unwrap();
        assert!(rep.is_ok(), "round {round}: verify after the kills: {:?}", rep.problems);
        // The kept secrets are still on disk (nothing erased too much).
        let kept_needles: Vec<String> = kept.iter().map(|s| format!("SECRET<{s}#0>")).collect();
        assert_eq!(
            grep(&dir, &kept_needles)
                .iter()
                .filter(|l| l.contains("/lanes/"))
                .filter_map(|l| l.rsplit(':').next())
                .collect::<BTreeSet<_>>()
                .len(),
            kept.len(),
            "round {round}: a kept session's first message is not in the journal any more"
        );
        deleted_total += deleted.len();
        kept_total += kept.len();
        println!(
            "round {round}: {} deleted and {} kept session(s); open {} ms, index caught up {} ms, close (erases) {} ms",
            deleted.len(),
            kept.len(),
            opened.as_millis(),
            indexed.as_millis(),
            closed.as_millis()
        );
    }
    println!(
        "erase kill test: {rounds} rounds, {kills} SIGKILLs, {deleted_total} deleted and {kept_total} kept sessions, leftovers met before recovery: {seen:?}, in {:?}",
        started.elapsed()
    );
}
