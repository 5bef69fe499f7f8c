//! `tidelog export`: a store's messages as JSON lines, or Hermes-style files per session.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use anyhow::{Context, bail};
use serde_json::json;
use tidelog::ops::{self};
use tidelog::{Session, SessionFilter};

use crate::util::{self, Reporter, print_json, say};
use crate::{Cli, ExportFormat, Outcome};

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
