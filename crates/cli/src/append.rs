//! `tidelog append --jsonl`: the sidecar protocol.
//!
//! A reader thread reads stdin line by line and parses each line; the writer drains whatever is
//! queued into one `append_batch` (one durable commit), then prints one answer per line, in
//! line order: an ack once the line is durable, or `{"line": N, "error": "..."}` for a line
//! that is refused; the sidecar goes on with the next line either way. A client writing one
//! line and waiting for its answer gets it after one commit; a client streaming many lines gets
//! group commit.

use std::io;

use std::sync::mpsc;
use tidelog::validate::Line;

use anyhow::Context;
use serde_json::json;
use tidelog::{Message, Store};

use crate::util::{self, StdoutClosed, out_line};
use crate::{Cli, Outcome};

/// Most lines appended in one commit.
const MAX_BATCH: usize = 1_000;

enum Item {
    Line(usize, Box<Message>),
    Bad(usize, String),
    ReadError(String),
}

fn reader(tx: mpsc::SyncSender<Item>) {
    let stdin = io::stdin();
    let mut input = stdin.lock();
    let mut buf = Vec::new();
    let mut n = 0usize;
    loop {
        n += 1;
        match tidelog::validate::read_line(&mut input, &mut buf, tidelog::validate::MAX_LINE_LEN) {
            Ok(Line::End) => return,
            Ok(Line::Text { .. }) => {}
            Ok(Line::TooLong) => {
                let _ = tx.send(Item::ReadError(tidelog::validate::too_long(n)));
                return;
            }
            Err(e) => {
                let _ = tx.send(Item::ReadError(e.to_string()));
                return;
            }
        }
        let item = match std::str::from_utf8(&buf) {
            Err(e) => Item::Bad(n, format!("not valid UTF-8 ({e})")),
            Ok(s) if s.trim_start_matches('\u{feff}').trim().is_empty() => continue,
            Ok(s) => match tidelog::ops::parse_message_line(s) {
                Ok(m) => Item::Line(n, Box::new(m)),
                Err(e) => Item::Bad(n, e),
            },
        };
        if tx.send(item).is_err() {
            return;
        }
    }
}

/// Whether a store error is about the input (the line is refused) rather than I/O.
fn is_input_error(e: &tidelog::Error) -> bool {
    matches!(e, tidelog::Error::Invalid(_) | tidelog::Error::Journal(tidelog_journal::Error::RecordTooLarge { .. }))
}

/// Whether a resent message says the same as the stored one. The timestamp counts only when the
/// client gave one (without, each send is stamped with its own arrival time).
fn same_message(sent: &Message, stored: &Message, timestamp_given: bool) -> bool {
    sent.session_id == stored.session_id
        && sent.role == stored.role
        && sent.content == stored.content
        && sent.tool_calls == stored.tool_calls
        && sent.tool_call_id == stored.tool_call_id
        && sent.tool_name == stored.tool_name
        && sent.reasoning == stored.reasoning
        && sent.finish_reason == stored.finish_reason
        && sent.token_count == stored.token_count
        && (!timestamp_given || (sent.timestamp - stored.timestamp).abs() < 1e-3)
}

/// The answer for a line whose id was already stored: `duplicate`, and `conflict` when the
/// stored version differs (the stored one, the first, is kept).
fn duplicate_answer(store: &Store, n: usize, sent: &Message, timestamp_given: bool) -> serde_json::Value {
    let stored = store.messages(&sent.session_id).ok().and_then(|ms| ms.into_iter().find(|m| m.id == sent.id));
    match stored {
        Some(s) if same_message(sent, &s, timestamp_given) => json!({"ack": n, "id": sent.id, "duplicate": true}),
        _ => json!({"ack": n, "id": sent.id, "duplicate": true, "conflict": true}),
    }
}

/// What the writer counts while it answers.
#[derive(Default)]
struct Tally {
    refused: usize,
    conflicts: usize,
    /// The last line answered (acked or refused).
    last_answered: usize,
}

/// Appends `lines` and prints their answers.
fn commit(store: &Store, out: &mut impl io::Write, lines: Vec<(usize, Message)>, t: &mut Tally) -> anyhow::Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let given: Vec<bool> = lines.iter().map(|(_, m)| m.timestamp != 0.0).collect();
    let (nums, msgs): (Vec<usize>, Vec<Message>) = lines.into_iter().unzip();
    match store.append_batch(msgs.clone()) {
        Ok(acks) => {
            for (((n, a), sent), given) in nums.iter().zip(acks).zip(&msgs).zip(given) {
                let answer = if a.lsn.is_some() {
                    json!({"ack": n, "id": a.id})
                } else {
                    let mut sent = sent.clone();
                    sent.id = a.id;
                    let v = duplicate_answer(store, *n, &sent, given);
                    if v.get("conflict").is_some() {
                        t.conflicts += 1;
                    }
                    v
                };
                out_line(out, &answer.to_string())?;
                t.last_answered = *n;
            }
            Ok(())
        }
        Err(e) if nums.len() > 1 && is_input_error(&e) => {
            // One message is refused: append them one at a time to answer each.
            for (n, m) in nums.into_iter().zip(msgs) {
                commit(store, out, vec![(n, m)], t)?;
            }
            Ok(())
        }
        Err(e) if is_input_error(&e) => {
            let n = nums.first().copied().unwrap_or(0);
            refuse(out, n, &e.to_string(), t)
        }
        Err(e) => Err(e).with_context(|| {
            format!(
                "cannot append line {} to the store at {}",
                nums.first().copied().unwrap_or(0),
                store.dir().display()
            )
        }),
    }
}

fn refuse(out: &mut impl io::Write, n: usize, why: &str, t: &mut Tally) -> anyhow::Result<()> {
    out_line(out, &json!({"line": n, "error": why}).to_string())?;
    t.refused += 1;
    t.last_answered = n;
    Ok(())
}

pub fn run(cli: &Cli) -> anyhow::Result<Outcome> {
    let dir = util::new_or_existing_store(cli)?;
    let store = util::open_store(cli, &dir)?;
    let (tx, rx) = mpsc::sync_channel::<Item>(4 * MAX_BATCH);
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || reader(tx))
        .context("cannot start the reader thread")?;
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut t = Tally::default();
    let mut read_error = None;
    let result = (|| -> anyhow::Result<()> {
        while let Ok(first) = rx.recv() {
            let mut items = vec![first];
            while items.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(it) => items.push(it),
                    Err(_) => break,
                }
            }
            // Answers go out in line order: the lines before a refused one are committed first.
            let mut lines = Vec::with_capacity(items.len());
            for it in items {
                match it {
                    Item::Line(n, m) => lines.push((n, *m)),
                    Item::Bad(n, e) => {
                        commit(&store, &mut out, std::mem::take(&mut lines), &mut t)?;
                        refuse(&mut out, n, &e, &mut t)?;
                    }
                    Item::ReadError(e) => {
                        read_error = Some(e);
                        break;
                    }
                }
            }
            commit(&store, &mut out, lines, &mut t)?;
            if read_error.is_some() {
                break;
            }
        }
        Ok(())
    })();
    drop(out);
    let closed = store.close().with_context(|| format!("cannot close the store at {}", dir.display()));
    match result {
        Ok(()) => {}
        // The client went away: every line answered is durable; nothing after it was written.
        Err(e) if e.is::<StdoutClosed>() => {
            closed?;
            util::err_line(format!(
                "{}stdout was closed; stopped after line {} (every line before it that was acknowledged is stored, later lines were not written)",
                util::error_prefix(),
                t.last_answered
            ));
            return Ok(Outcome::Problem);
        }
        Err(e) => return Err(e),
    }
    closed?;
    if let Some(e) = read_error {
        anyhow::bail!("cannot read stdin after line {}: {e}; the lines acknowledged are stored", t.last_answered);
    }
    if t.conflicts > 0 {
        util::warn_line(format!(
            "{} line(s) resent an existing id with different content; the first version is kept",
            t.conflicts
        ));
    }
    if t.refused > 0 {
        util::warn_line(format!("{} line(s) refused (answered with an error line); the others are stored", t.refused));
        return Ok(Outcome::Problem);
    }
    Ok(Outcome::Fine)
}
