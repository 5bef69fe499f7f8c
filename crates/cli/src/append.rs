//! `logbook append --jsonl`: the sidecar protocol.
//!
//! A reader thread reads stdin line by line and parses each line; the writer drains whatever is
//! queued into one `append_batch` (one durable commit), then prints one ack per line. A client
//! writing one line and waiting for its ack gets it after one commit; a client streaming many
//! lines gets group commit.

use std::io::{self, BufRead};
use std::sync::mpsc;

use anyhow::Context;
use logbook::{Message, Store};
use serde_json::json;

use crate::util::{self, out_line};
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
        buf.clear();
        match input.read_until(b'\n', &mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) => {
                let _ = tx.send(Item::ReadError(e.to_string()));
                return;
            }
        }
        n += 1;
        let item = match std::str::from_utf8(&buf) {
            Err(e) => Item::Bad(n, format!("not valid UTF-8 ({e})")),
            Ok(s) if s.trim().is_empty() => continue,
            Ok(s) => match logbook::ops::parse_message_line(s) {
                Ok(m) => Item::Line(n, Box::new(m)),
                Err(e) => Item::Bad(n, e),
            },
        };
        let stop = !matches!(item, Item::Line(..));
        if tx.send(item).is_err() || stop {
            return;
        }
    }
}

/// Whether a store error is about the input (the line is refused) rather than I/O.
fn is_input_error(e: &logbook::Error) -> bool {
    matches!(e, logbook::Error::Invalid(_) | logbook::Error::Journal(logbook_journal::Error::RecordTooLarge { .. }))
}

/// Appends `lines` and prints their acks. Returns the line that was refused, if one was.
fn commit(
    store: &Store,
    out: &mut impl io::Write,
    lines: Vec<(usize, Message)>,
) -> anyhow::Result<Option<(usize, String)>> {
    if lines.is_empty() {
        return Ok(None);
    }
    let (nums, msgs): (Vec<usize>, Vec<Message>) = lines.into_iter().unzip();
    match store.append_batch(msgs.clone()) {
        Ok(acks) => {
            for (n, a) in nums.iter().zip(acks) {
                out_line(out, &json!({"ack": n, "id": a.id}).to_string())?;
            }
            Ok(None)
        }
        Err(e) if nums.len() > 1 && is_input_error(&e) => {
            // One message is refused: append them one at a time to find it.
            for (n, m) in nums.into_iter().zip(msgs) {
                if let Some(bad) = commit(store, out, vec![(n, m)])? {
                    return Ok(Some(bad));
                }
            }
            Ok(None)
        }
        Err(e) if is_input_error(&e) => Ok(Some((nums.first().copied().unwrap_or(0), e.to_string()))),
        Err(e) => Err(e).with_context(|| {
            format!(
                "cannot append line {} to the store at {}",
                nums.first().copied().unwrap_or(0),
                store.dir().display()
            )
        }),
    }
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
    let mut outcome = Outcome::Fine;
    'outer: while let Ok(first) = rx.recv() {
        let mut items = vec![first];
        while items.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(it) => items.push(it),
                Err(_) => break,
            }
        }
        let mut lines = Vec::with_capacity(items.len());
        let mut stop = None;
        for it in items {
            match it {
                Item::Line(n, m) => lines.push((n, *m)),
                Item::Bad(n, e) => {
                    stop = Some(Err((n, e)));
                    break;
                }
                Item::ReadError(e) => {
                    stop = Some(Ok(e));
                    break;
                }
            }
        }
        if let Some((n, e)) = commit(&store, &mut out, lines)? {
            eprintln!("{}line {n}: {e}; the lines before it are stored", util::error_prefix());
            outcome = Outcome::Problem;
            break 'outer;
        }
        match stop {
            None => {}
            Some(Err((n, e))) => {
                eprintln!("{}line {n}: {e}; the lines before it are stored", util::error_prefix());
                outcome = Outcome::Problem;
                break 'outer;
            }
            Some(Ok(e)) => {
                drop(out);
                let _ = store.close();
                anyhow::bail!("cannot read stdin: {e}");
            }
        }
    }
    drop(out);
    store.close().with_context(|| format!("cannot close the store at {}", dir.display()))?;
    Ok(outcome)
}
