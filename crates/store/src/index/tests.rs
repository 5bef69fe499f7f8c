#![allow(clippy::unwrap_used)]
use super::*;
use crate::entry::Entry;
use crate::model::{Message, SessionPatch};

fn msg(id: &str, session: &str, role: &str, content: &str, ts: f64) -> Message {
    Message {
        id: id.into(),
        session_id: session.into(),
        role: role.into(),
        content: Some(content.into()),
        timestamp: ts,
        source: Some("cli".into()),
        ..Message::default()
    }
}

fn batch(msgs: Vec<Message>) -> Vec<(String, u64, Entry)> {
    msgs.into_iter().enumerate().map(|(i, m)| ("a".to_string(), i as u64 + 1, Entry::Message(m))).collect()
}

fn open_tmp() -> (tempfile::TempDir, Index) {
    let dir = tempfile::tempdir().unwrap();
    let idx = Index::open(&dir.path().join("index.db"), &IndexOptions::default()).unwrap();
    (dir, idx)
}

fn ids(hits: &[SearchHit]) -> Vec<&str> {
    hits.iter().map(|h| h.message.id.as_str()).collect()
}

fn find(idx: &Index, text: &str) -> Vec<String> {
    let hits = idx.search(&SearchQuery::new(text)).unwrap();
    let mut v: Vec<String> = ids(&hits).into_iter().map(String::from).collect();
    v.sort();
    v
}

/// [`find`] with literal words ([`crate::QuerySyntax::Words`]).
fn find_words(idx: &Index, text: &str) -> Vec<String> {
    let hits = idx.search(&SearchQuery::words(text)).unwrap();
    let mut v: Vec<String> = ids(&hits).into_iter().map(String::from).collect();
    v.sort();
    v
}

#[test]
fn schema_create_reopen_and_newer_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.db");
    let opts = IndexOptions::default();
    {
        let mut idx = Index::open(&path, &opts).unwrap();
        idx.apply_batch(&batch(vec![msg("m1", "s", "user", "hello", 1.0)])).unwrap();
    }
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let idx = Index::open(&path, &opts).unwrap();
    assert_eq!(idx.message_count().unwrap(), 1);
    assert!(idx.check().unwrap().is_empty());
    let ro = Index::open_read_only(&path, &opts).unwrap();
    assert_eq!(ro.message_ids().unwrap(), vec!["m1".to_string()]);
    assert_eq!(ro.check().unwrap(), Vec::<String>::new());
    idx.conn.execute("UPDATE meta SET value = 99 WHERE key = 'schema_version'", []).unwrap();
    drop((idx, ro));
    let err = Index::open(&path, &opts).unwrap_err();
    assert!(matches!(err, IndexError::NewerSchema { found: 99, .. }), "{err}");
    let err = Index::open_read_only(&path, &opts).unwrap_err();
    assert!(matches!(err, IndexError::NewerSchema { .. }), "{err}");
}

#[test]
fn apply_is_idempotent_and_stores_positions() {
    let (_d, mut idx) = open_tmp();
    let mut entries =
        batch(vec![msg("m1", "s1", "user", "first message", 1.0), msg("m2", "s1", "assistant", "second message", 2.0)]);
    entries.push((
        "b".into(),
        7,
        Entry::Session(SessionPatch { id: "s1".into(), title: Some("Greetings".into()), ..SessionPatch::default() }),
    ));
    let s = idx.apply_batch(&entries).unwrap();
    assert_eq!((s.messages, s.sessions, s.skipped), (2, 1, 0));
    let s = idx.apply_batch(&entries).unwrap();
    assert_eq!((s.messages, s.sessions, s.skipped), (0, 0, 3));
    // The same message id at a new position is ignored: the first one wins.
    let mut again = msg("m1", "s1", "user", "changed", 9.0);
    again.role = "user".into();
    let s = idx.apply_batch(&[("a".into(), 3, Entry::Message(again))]).unwrap();
    assert_eq!(s.duplicate_messages, 1);
    assert_eq!(idx.message_count().unwrap(), 2);
    let pos = idx.applied_positions().unwrap();
    assert_eq!(pos.get("a"), Some(&3));
    assert_eq!(pos.get("b"), Some(&7));
    let msgs = idx.messages("s1").unwrap();
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0].content.as_deref(), Some("first message"));
    assert_eq!(find(&idx, "message"), vec!["m1", "m2"]);
    assert!(idx.contains_message("m2").unwrap());
    assert!(!idx.contains_message("m3").unwrap());
    assert!(idx.check().unwrap().is_empty());
}

#[test]
fn sessions_bare_rows_patches_and_listing() {
    let (_d, mut idx) = open_tmp();
    let mut m = msg("m1", "s1", "user", "hi", 100.0);
    m.source = Some("telegram".into());
    let patch = |id: &str, title: Option<&str>, started: Option<f64>| {
        Entry::Session(SessionPatch {
            id: id.into(),
            source: Some("cli".into()).filter(|_| id == "s2"),
            title: title.map(String::from),
            started_at: started,
            ..SessionPatch::default()
        })
    };
    idx.apply_batch(&[
        ("a".into(), 1, Entry::Message(m)),
        ("a".into(), 2, patch("s1", Some("Weather 50%_x"), None)),
        ("a".into(), 3, patch("s2", Some("Other"), Some(200.0))),
        ("a".into(), 4, patch("s1", None, None)),
    ])
    .unwrap();
    let s1 = idx.get_session("s1").unwrap().unwrap();
    assert_eq!(s1.source.as_deref(), Some("telegram"));
    assert_eq!(s1.started_at, Some(100.0));
    assert_eq!(s1.title.as_deref(), Some("Weather 50%_x"));
    assert_eq!(idx.get_session("nope").unwrap(), None);
    let all = idx.list_sessions(&SessionFilter::default()).unwrap();
    assert_eq!(all.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["s2", "s1"]);
    let f = |f: SessionFilter| -> Vec<String> { idx.list_sessions(&f).unwrap().into_iter().map(|s| s.id).collect() };
    assert_eq!(f(SessionFilter { source: Some("telegram".into()), ..Default::default() }), ["s1"]);
    assert_eq!(f(SessionFilter { since: Some(150.0), ..Default::default() }), ["s2"]);
    assert_eq!(f(SessionFilter { until: Some(150.0), ..Default::default() }), ["s1"]);
    assert_eq!(f(SessionFilter { title_contains: Some("50%_".into()), ..Default::default() }), ["s1"]);
    assert!(f(SessionFilter { title_contains: Some("0%x".into()), ..Default::default() }).is_empty());
    assert_eq!(f(SessionFilter { limit: Some(1), ..Default::default() }), ["s2"]);
}

#[test]
fn words_search_treats_syntax_as_literal_text() {
    let (_d, mut idx) = open_tmp();
    idx.apply_batch(&batch(vec![
        msg("q", "s", "user", r#"she said "hello world" twice"#, 1.0),
        msg("dash", "s", "user", "run chat-send --force now", 2.0),
        msg("star", "s", "user", "glob src/*.rs files", 3.0),
        msg("or", "s", "user", "this OR that", 4.0),
        msg("paren", "s", "user", "call f(x) then NEAR(a b)", 5.0),
        msg("plain", "s", "user", "hello there world", 6.0),
    ]))
    .unwrap();
    assert_eq!(find_words(&idx, r#""hello world""#), vec!["q"]);
    assert_eq!(find_words(&idx, r#"said ""#), vec!["q"]);
    assert_eq!(find_words(&idx, "\""), vec!["q"]);
    assert_eq!(find_words(&idx, "chat-send"), vec!["dash"]);
    assert_eq!(find_words(&idx, "--force"), vec!["dash"]);
    assert_eq!(find_words(&idx, "-force"), vec!["dash"]);
    assert_eq!(find_words(&idx, "*.rs"), vec!["star"]);
    assert_eq!(find_words(&idx, "src/*"), vec!["star"]);
    assert_eq!(find_words(&idx, "this OR that"), vec!["or"]);
    assert!(find_words(&idx, "OR").contains(&"or".to_string()), "two letters: a LIKE scan");
    assert_eq!(find_words(&idx, "f(x)"), vec!["paren"]);
    assert_eq!(find_words(&idx, "NEAR(a"), vec!["paren"]);
    assert_eq!(find_words(&idx, ")"), vec!["paren"]);
    assert_eq!(find_words(&idx, "hello world"), vec!["plain", "q"]);
    assert_eq!(find_words(&idx, "HELLO"), vec!["plain", "q"]);
    assert!(find_words(&idx, "hello nowhere").is_empty());
    assert!(find_words(&idx, "AND NOT").is_empty());
    assert!(matches!(idx.search(&SearchQuery::words("  ")), Err(IndexError::EmptyQuery)));
    let hits = idx.search(&SearchQuery::words("chat-send")).unwrap();
    assert_eq!(hits[0].snippet, "run [chat-send] --force now");
    assert!(hits[0].score > 0.0);
}

#[test]
fn words_short_queries_like_escaping_cjk_and_emoji() {
    let (_d, mut idx) = open_tmp();
    idx.apply_batch(&batch(vec![
        msg("pct", "s", "user", "discount 50% today", 1.0),
        msg("under", "s", "user", "snake_case name", 2.0),
        msg("cjk", "s", "user", "我们今天讨论数据库索引的设计", 3.0),
        msg("emoji", "s", "user", "ship it 🚀🚀 now", 4.0),
        msg("x", "s", "user", "xy plain", 5.0),
    ]))
    .unwrap();
    assert_eq!(find_words(&idx, "%"), vec!["pct"]);
    assert_eq!(find_words(&idx, "_"), vec!["under"]);
    assert_eq!(find_words(&idx, "xy"), vec!["x"]);
    assert_eq!(find_words(&idx, "XY"), vec!["x"]);
    assert_eq!(find_words(&idx, "数据库"), vec!["cjk"]);
    assert_eq!(find_words(&idx, "索引"), vec!["cjk"]);
    assert_eq!(find_words(&idx, "库"), vec!["cjk"]);
    assert_eq!(find_words(&idx, "🚀"), vec!["emoji"]);
    assert_eq!(find_words(&idx, "🚀🚀 now"), vec!["emoji"]);
    assert_eq!(find_words(&idx, "it 🚀"), vec!["emoji"]);
    // Short words filter a trigram match.
    assert_eq!(find_words(&idx, "plain xy"), vec!["x"]);
    assert!(find_words(&idx, "plain zz").is_empty());
    let hits = idx.search(&SearchQuery::words("数据库")).unwrap();
    assert!(hits[0].snippet.contains("[数据库]"), "{}", hits[0].snippet);
    let hits = idx.search(&SearchQuery::words("xy")).unwrap();
    assert_eq!(hits[0].snippet, "[xy] plain");
}

#[test]
fn search_filters_and_ordering() {
    let (_d, mut idx) = open_tmp();
    let mut t = msg("t", "s2", "tool", "needle in tool output", 30.0);
    t.source = Some("telegram".into());
    idx.apply_batch(&batch(vec![
        msg("u1", "s1", "user", "needle", 10.0),
        msg("a1", "s1", "assistant", "needle needle needle needle", 20.0),
        t,
    ]))
    .unwrap();
    let run = |f: &dyn Fn(&mut SearchQuery)| {
        let mut q = SearchQuery::new("needle");
        f(&mut q);
        ids(&idx.search(&q).unwrap()).into_iter().map(String::from).collect::<Vec<_>>()
    };
    assert_eq!(run(&|q| q.order = SearchOrder::Newest), ["t", "a1", "u1"]);
    assert_eq!(run(&|q| q.order = SearchOrder::Oldest), ["u1", "a1", "t"]);
    assert_eq!(run(&|q| q.session_id = Some("s1".into())).len(), 2);
    assert_eq!(run(&|q| q.role = Some("tool".into())), ["t"]);
    assert_eq!(run(&|q| q.source = Some("telegram".into())), ["t"]);
    assert_eq!(run(&|q| q.source = Some("cli".into())).len(), 2);
    assert_eq!(
        run(&|q| {
            q.since = Some(15.0);
            q.until = Some(25.0)
        }),
        ["a1"]
    );
    assert_eq!(run(&|q| q.limit = 1).len(), 1);
    let hits = idx.search(&SearchQuery::new("needle")).unwrap();
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    let long = format!("{} needle {}", "left ".repeat(40), "right ".repeat(40));
    idx.apply_batch(&[("c".into(), 1, Entry::Message(msg("long", "s4", "user", &long, 50.0)))]).unwrap();
    let mut q = SearchQuery::new("needle");
    q.session_id = Some("s4".into());
    let snippet = &idx.search(&q).unwrap()[0].snippet;
    assert!(snippet.contains("[needle]") && (40..=100).contains(&snippet.chars().count()));
    // Tool names are searchable too.
    let mut named = msg("n", "s3", "tool", "ok", 40.0);
    named.tool_name = Some("web_search".into());
    idx.apply_batch(&[("b".into(), 1, Entry::Message(named))]).unwrap();
    assert_eq!(find(&idx, "web_sea"), vec!["n"]);
}

#[test]
fn tool_output_beyond_prefix_is_found_by_whole_words_only() {
    let (_d, mut idx) = open_tmp();
    // A multibyte character straddles the cut.
    let cut = IndexOptions::default().tool_output_index_bytes;
    let body = format!("headneedle {}é tailneedle", "a".repeat(cut - 12));
    let mut head_msg = msg("tool", "s", "tool", &body, 1.0);
    head_msg.tool_name = Some("shell".into());
    let user = msg("user", "s", "user", &format!("{} tailneedle", "b".repeat(9000)), 2.0);
    idx.apply_batch(&batch(vec![head_msg, user])).unwrap();
    assert_eq!(find(&idx, "headneedle"), vec!["tool"]);
    // Past the trigram index's part: a whole word through the word index, not a substring.
    assert_eq!(find(&idx, "tailneedle"), vec!["tool", "user"]);
    assert_eq!(find(&idx, "ailneedl"), vec!["user"]);
    let msgs = idx.messages("s").unwrap();
    assert!(msgs[0].content.as_deref().unwrap().ends_with("tailneedle"));
    let indexed = indexed_text(&msgs[0], &IndexOptions::default()).unwrap();
    assert_eq!(indexed.len(), cut - 1);
    assert!(idx.check().unwrap().is_empty());
    idx.rebuild_fts().unwrap();
    assert_eq!(find(&idx, "ailneedl"), vec!["user"]);
    assert_eq!(find(&idx, "tailneedle"), vec!["tool", "user"]);
    assert!(idx.check().unwrap().is_empty());
}

#[test]
fn multimodal_text_parts_only() {
    let (_d, mut idx) = open_tmp();
    let parts =
        r#"[{"type":"text","text":"describe this picture"},{"type":"image_url","image_url":{"url":"data:zebra"}}]"#;
    let broken = "\u{0}json:[{\"type\":\"text\" unclosed giraffe";
    idx.apply_batch(&batch(vec![
        msg("mm", "s", "user", &format!("\u{0}json:{parts}"), 1.0),
        msg("bad", "s", "user", broken, 2.0),
    ]))
    .unwrap();
    assert_eq!(find(&idx, "picture"), vec!["mm"]);
    assert!(find(&idx, "zebra").is_empty());
    assert!(find(&idx, "image_url").is_empty());
    assert_eq!(find(&idx, "giraffe"), vec!["bad"]);
    let hits = idx.search(&SearchQuery::new("picture")).unwrap();
    assert_eq!(hits[0].snippet, "describe this [picture]");
    assert_eq!(idx.messages("s").unwrap()[0].content.as_deref(), Some(&*format!("\u{0}json:{parts}")));
    assert!(idx.check().unwrap().is_empty());
}

#[test]
fn check_detects_damage() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.db");
    {
        let mut idx = Index::open(&path, &IndexOptions::default()).unwrap();
        let msgs = (0..400)
            .map(|i| msg(&format!("m{i}"), "s", "user", &format!("message number {i} {}", "x".repeat(300)), i as f64))
            .collect();
        idx.apply_batch(&batch(msgs)).unwrap();
        assert!(idx.check().unwrap().is_empty());
        // Content changed behind the index's back: only the rank-1 FTS5 check sees it
        // (`check_content`, verify's; the compactor's start-up `check` compares no content).
        idx.conn.execute("UPDATE messages SET content = 'zzz' WHERE id = 'm5'", []).unwrap();
        let problems = idx.check_content().unwrap();
        assert!(problems.iter().any(|p| p.starts_with("fts5")), "{problems:?}");
        assert!(idx.check().unwrap().is_empty(), "the structure itself is sound");
        idx.rebuild_fts().unwrap();
        assert!(idx.check_content().unwrap().is_empty());
    }
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 40 * 4096);
    for (i, b) in bytes[8 * 4096..30 * 4096].iter_mut().enumerate() {
        *b = (i * 7 % 251) as u8;
    }
    std::fs::write(&path, bytes).unwrap();
    match Index::open(&path, &IndexOptions::default()) {
        Ok(idx) => {
            let problems = idx.check().unwrap();
            eprintln!("damage found by check: {problems:?}");
            assert!(!problems.is_empty());
        }
        Err(e) => {
            eprintln!("damage found by open: {e}");
            assert!(e.is_corruption(), "{e}");
        }
    }
    // A file that is not a database at all.
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![0x5a; 8192]).unwrap();
    let err = Index::open(&junk, &IndexOptions::default()).unwrap_err();
    assert!(err.is_corruption(), "{err}");
}

#[test]
fn backup_checkpoint_and_sizes() {
    let (dir, mut idx) = open_tmp();
    let msgs = (0..50).map(|i| msg(&format!("m{i}"), "s", "user", "backup me please", i as f64)).collect();
    idx.apply_batch(&batch(msgs)).unwrap();
    let (_, wal) = idx.file_sizes();
    assert!(wal > 0);
    let cp = idx.checkpoint_truncate().unwrap();
    assert!(!cp.busy);
    assert_eq!(idx.file_sizes().1, 0);
    while idx.optimize_step().unwrap() {}
    let dest = dir.path().join("backup.db");
    idx.backup_to(&dest).unwrap();
    assert!(idx.backup_to(&dest).is_err(), "an existing file is refused");
    let copy = Index::open(&dest, &IndexOptions::default()).unwrap();
    assert!(copy.check().unwrap().is_empty());
    assert_eq!(copy.message_count().unwrap(), 50);
    assert_eq!(copy.search(&SearchQuery::new("please")).unwrap().len(), 20);
    assert_eq!(copy.applied_positions().unwrap(), idx.applied_positions().unwrap());
}

#[test]
fn match_snippet_marks_and_cuts() {
    assert_eq!(match_snippet("Hello World", "world").as_deref(), Some("Hello [World]"));
    assert_eq!(match_snippet("abc", "abd"), None);
    assert_eq!(match_snippet("abc", " "), None);
    assert_eq!(match_snippet("a b a", "a").as_deref(), Some("[a] b [a]"));
    assert_eq!(match_snippet("ÉCOLE élève", "école ÉLÈVE").as_deref(), Some("[ÉCOLE] [élève]"));
    let long = format!("{}needle{}", "x".repeat(100), "y".repeat(100));
    let s = match_snippet(&long, "NEEDLE").unwrap();
    assert!(s.starts_with('…') && s.ends_with('…') && s.contains("[needle]"), "{s}");
    assert_eq!(s.chars().count(), 32 + 8 + 32 + 2);
}

/// `cargo test --release -- --ignored --nocapture apply_rate`
#[test]
#[ignore]
fn apply_rate() {
    let (_d, mut idx) = open_tmp();
    let words = ["alpha", "build", "cargo", "deploy", "error", "fix", "gateway", "hermes", "index", "journal"];
    let text = |n: usize, seed: usize| {
        let mut s = String::with_capacity(n + 16);
        let mut i = seed;
        while s.len() < n {
            s.push_str(words[i % words.len()]);
            s.push_str(if i.is_multiple_of(7) { "\n" } else { " " });
            i = i.wrapping_mul(31).wrapping_add(17) % 10007;
        }
        s
    };
    let batches = 20usize;
    let mut bytes = 0usize;
    let mut all = Vec::with_capacity(batches);
    for b in 0..batches {
        let mut entries = Vec::with_capacity(1000);
        for i in 0..1000 {
            let n = b * 1000 + i;
            let mut m = msg(&format!("msg-{n:08}"), &format!("s{}", n / 50), "user", "", n as f64);
            match n % 10 {
                0..=5 => m.content = Some(text(200, n)),
                6..=8 => {
                    m.role = "tool".into();
                    m.tool_name = Some("shell".into());
                    m.content = Some(text(2048 + (n * 7919) % (58 * 1024), n));
                }
                _ => {
                    m.role = "assistant".into();
                    m.content = None;
                    m.tool_calls = Some(r#"[{"id":"c1","function":{"name":"shell","arguments":"{}"}}]"#.into());
                }
            }
            bytes += m.content.as_ref().map_or(0, String::len);
            entries.push(("lane".to_string(), n as u64 + 1, Entry::Message(m)));
        }
        all.push(entries);
    }
    if let Some(cfg) = std::env::var("FTS_CFG").ok().filter(|c| !c.is_empty()) {
        for kv in cfg.split(',') {
            let (k, v) = kv.split_once('=').unwrap();
            idx.conn
                .execute(
                    "INSERT INTO messages_fts (messages_fts, rank) VALUES (?1, ?2)",
                    (k, v.parse::<i64>().unwrap()),
                )
                .unwrap();
        }
    }
    let start = std::time::Instant::now();
    for entries in &all {
        idx.apply_batch(entries).unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let n = batches * 1000;
    let (db, wal) = idx.file_sizes();
    println!(
        "apply_batch: {n} messages ({} MB) in {secs:.2}s = {:.0} msg/s, {:.1} MB/s; db {} MB wal {} MB",
        bytes / 1_000_000,
        n as f64 / secs,
        bytes as f64 / 1e6 / secs,
        db / 1_000_000,
        wal / 1_000_000
    );
    assert!(idx.check().unwrap().is_empty());
}

/// A full merge leaves each full-text table in one segment, finds the same rows, and is due
/// again only once the index grew by an eighth (and at least 1,000 rows) since.
#[test]
fn full_merge_merges_into_one_segment_when_due() {
    let (_dir, mut idx) = open_tmp();
    let mut lsn = 0;
    let mut add = |idx: &mut Index, n: usize| {
        let msgs: Vec<Message> = (0..n)
            .map(|_| {
                lsn += 1;
                msg(&format!("m{lsn}"), "s", "user", &format!("merge me {lsn} heron"), lsn as f64)
            })
            .collect();
        let b: Vec<(String, u64, Entry)> = msgs
            .into_iter()
            .enumerate()
            .map(|(i, m)| ("a".to_string(), lsn - n as u64 + i as u64 + 1, Entry::Message(m)))
            .collect();
        idx.apply_batch(&b).unwrap();
    };
    // One transaction per batch: one new segment each (below FTS5's automerge of 8).
    for _ in 0..6 {
        add(&mut idx, 200);
    }
    let segments = |idx: &Index| idx.fts_segments().unwrap().iter().map(|(_, n)| *n).collect::<Vec<_>>();
    assert!(segments(&idx).iter().all(|&n| n >= 2), "{:?}", segments(&idx));
    let before = find(&idx, "heron");
    let mut m = idx.full_merge_due().unwrap().expect("1,200 ids and never merged: due");
    let mut steps = 0;
    while !idx.full_merge_step(&mut m).unwrap() {
        steps += 1;
        assert!(steps < 1000);
    }
    assert_eq!(segments(&idx), vec![1, 1]);
    assert_eq!(find(&idx, "heron"), before);
    assert!(idx.full_merge_due().unwrap().is_none(), "just merged");
    // 150 more rows (an eighth of 1,200) but fewer than 1,000: not due; 1,000 more: due.
    add(&mut idx, 150);
    assert!(idx.full_merge_due().unwrap().is_none());
    add(&mut idx, 850);
    assert!(idx.full_merge_due().unwrap().is_some());
}

/// A one-phrase relevance search ranks by bm25 without the pass over every match: the same
/// order as FTS5's `bm25()`, scores proportional to it (the phrase's IDF, the same for every
/// row), with tool names, tool-output prefixes, repeated and overlapping occurrences, case
/// folding and rows of every length.
#[test]
fn one_phrase_relevance_is_bm25_order() {
    let d = tempfile::tempdir().unwrap();
    // Every one-phrase search ranked without bm25(), to compare the two.
    let opts = IndexOptions { one_phrase_min_matches: 0, ..IndexOptions::default() };
    let mut idx = Index::open(&d.path().join("index.db"), &opts).unwrap();
    let mut msgs = Vec::new();
    for i in 0..60usize {
        let filler = "lorem ipsum dolor ".repeat(i % 7 + 1);
        let text = match i % 5 {
            0 => format!("{filler} Heron {filler}"),
            1 => format!("heron heron {filler} HERON"),
            2 => format!("{filler} herons heronheron {}", "x".repeat(i * 3)),
            3 => format!("no bird here {filler}"),
            _ => "heron".to_string(),
        };
        let mut m =
            msg(&format!("m{i}"), &format!("s{}", i % 4), if i % 6 == 0 { "tool" } else { "user" }, &text, i as f64);
        if i % 8 == 0 {
            m.tool_name = Some("heron_tool".into());
        }
        msgs.push(m);
    }
    // A tool output longer than the indexed prefix: only the prefix counts, as in FTS5.
    let mut long = msg("long", "s9", "tool", &format!("heron {} heron heron", "y".repeat(3000)), 99.0);
    long.tool_name = Some("shell".into());
    msgs.push(long);
    idx.apply_batch(&batch(msgs)).unwrap();
    let want: Vec<(String, f64)> = {
        let mut st = idx
            .conn
            .prepare(
                "SELECT m.id, -bm25(messages_fts) FROM messages_fts JOIN messages m ON m.rid = messages_fts.rowid \
                 WHERE messages_fts MATCH '\"heron\"' ORDER BY rank, m.rid LIMIT 10",
            )
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
    };
    for q in
        [SearchQuery::new("heron"), SearchQuery::new("HERON"), SearchQuery { limit: 10, ..SearchQuery::words("heron") }]
    {
        let q = SearchQuery { limit: 10, ..q };
        let got: Vec<(String, f64)> = idx.search(&q).unwrap().into_iter().map(|h| (h.message.id, h.score)).collect();
        let ids = |v: &[(String, f64)]| v.iter().map(|(i, _)| i.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&got), ids(&want), "{got:?}\n{want:?}");
        let ratio = want[0].1 / got[0].1;
        for ((_, w), (_, g)) in want.iter().zip(&got) {
            assert!((w / g - ratio).abs() < 1e-9 * ratio.abs(), "bm25 {w} is not {ratio} x {g}");
        }
    }
    // More asked than there are matches: every match ranked (all are among the newest 1,000),
    // scores on the same scale (bm25 without the IDF).
    let all = idx.search(&SearchQuery { limit: 500, ..SearchQuery::new("heron") }).unwrap();
    assert!(all.len() > 10 && all.len() < 500);
    let first = idx.search(&SearchQuery { limit: 10, ..SearchQuery::new("heron") }).unwrap();
    for (a, b) in all.iter().zip(&first) {
        assert_eq!(a.message.id, b.message.id);
        assert!((a.score - b.score).abs() < 1e-9 * b.score, "{} against {}", a.score, b.score);
    }
}

/// A relevance search of several words, one of them in most rows, ranks without bm25()'s pass
/// over every row that holds each: with each word's IDF counted where it is cheap and estimated
/// from the density of its newest matches where it is common, the hits and scores are bm25()'s
/// when the estimate is right (here: a word in every row), and bm25() itself ranks when no word
/// is common.
#[test]
fn several_phrases_relevance_is_bm25() {
    let d = tempfile::tempdir().unwrap();
    // "heron" is in all 4,000 rows (common: estimated, rightly), "lake" in 1,750, denser in older
    // rows: its newest 1,000 matches suggest 1,231, fewer than common, so it is counted (the
    // estimate would give another IDF and other scores); "reed" in 80 (all seen: exact).
    let opts = IndexOptions { one_phrase_min_matches: 2_000, ..IndexOptions::default() };
    let mut idx = Index::open(&d.path().join("index.db"), &opts).unwrap();
    let msgs: Vec<Message> = (0..4_000usize)
        .map(|i| {
            let filler = "lorem ipsum ".repeat(i % 13 + 1);
            let lake = if i < 1_000 || i % 4 == 0 { " lake Lake" } else { "" };
            let reed = if i % 50 == 0 { " reed" } else { "" };
            let text = format!("heron {filler}{lake}{}{reed}", " heron".repeat(i % 3));
            msg(&format!("m{i}"), &format!("s{}", i % 4), "user", &text, i as f64)
        })
        .collect();
    idx.apply_batch(&batch(msgs)).unwrap();
    let bm25 = |idx: &Index, fts: &str| -> Vec<(String, f64)> {
        let mut st = idx
            .conn
            .prepare(&format!(
                "SELECT m.id, f.score FROM (SELECT rowid AS rid, -bm25(messages_fts) AS score FROM messages_fts \
                 WHERE messages_fts MATCH ?1 ORDER BY rowid DESC LIMIT {}) f \
                 JOIN messages m ON m.rid = f.rid ORDER BY f.score DESC, m.rid LIMIT 10",
                super::query::RANKED_MATCHES
            ))
            .unwrap();
        st.query_map([fts], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
    };
    let ranked = || super::query::RANKED_WITHOUT_BM25.with(std::cell::Cell::get);
    for (words, fts) in [
        ("heron lake", "\"heron\" \"lake\""),
        ("lake heron reed", "\"lake\" \"heron\" \"reed\""),
        ("heron reed", "\"heron\" \"reed\""),
    ] {
        let want = bm25(&idx, fts);
        for q in [SearchQuery::words(words), SearchQuery::new(fts)] {
            let before = ranked();
            let got: Vec<(String, f64)> = idx
                .search(&SearchQuery { limit: 10, ..q })
                .unwrap()
                .into_iter()
                .map(|h| (h.message.id, h.score))
                .collect();
            assert_eq!(ranked(), before + 1, "{words}: ranked by bm25()");
            assert_eq!(got.len(), want.len(), "{words}");
            for ((gi, g), (wi, w)) in got.iter().zip(&want) {
                assert_eq!(gi, wi, "{words}: {got:?}\n{want:?}");
                assert!((g - w).abs() <= 1e-9 * w.abs(), "{words}: {g} against bm25 {w}");
            }
        }
    }
    // Fewer matches than asked (80 rows hold "reed"): the newest matches ranked were all of
    // them, so no second ranking of every match by bm25().
    let before = ranked();
    let got = idx.search(&SearchQuery { limit: 100, ..SearchQuery::words("heron reed") }).unwrap();
    assert_eq!(ranked(), before + 1);
    assert_eq!(got.len(), 80);
    // No word as common as asked: bm25() ranks.
    let before = ranked();
    let got = idx.search(&SearchQuery { limit: 10, ..SearchQuery::words("lake reed") }).unwrap();
    assert_eq!(ranked(), before, "bm25() is the faster here");
    let want = bm25(&idx, "\"lake\" \"reed\"");
    assert_eq!(
        got.iter().map(|h| h.message.id.clone()).collect::<Vec<_>>(),
        want.iter().map(|w| w.0.clone()).collect::<Vec<_>>()
    );
}

/// A word that is rare in the whole index but fills its newest rows (a new project's name)
/// keeps its exact inverse document frequency in a relevance search of several words: its
/// newest matches are dense, but a count (stopped at a cap) tells it is rare. Found by review:
/// the density of the newest matches alone gave it the floor 1e-6, and another top 10 than
/// bm25()'s.
#[test]
fn several_phrases_relevance_counts_a_recent_rare_word() {
    let d = tempfile::tempdir().unwrap();
    let opts = IndexOptions { one_phrase_min_matches: 2_000, ..IndexOptions::default() };
    let mut idx = Index::open(&d.path().join("index.db"), &opts).unwrap();
    // 5,000 rows; "osprey" only in the newest 1,000 (IDF ln(4000.5 / 1000.5) = 1.39); "heron"
    // in 2,000 (as common as asked: ranked without bm25()).
    let msgs: Vec<Message> = (0..5_000usize)
        .map(|i| {
            let text = if i < 4_000 {
                format!("lorem ipsum dolor sit amet consectetur{}", if i < 1_900 { " heron" } else { "" })
            } else if i % 10 == 0 {
                format!("heron {}", "osprey ".repeat((i / 10) % 5 + 1))
            } else {
                "osprey lorem".to_string()
            };
            msg(&format!("m{i}"), "s0", "user", &text, i as f64)
        })
        .collect();
    idx.apply_batch(&batch(msgs)).unwrap();
    let fts = "\"osprey\" \"heron\"";
    let want: Vec<(String, f64)> = {
        let mut st = idx
            .conn
            .prepare(
                "SELECT m.id, -bm25(messages_fts) FROM messages_fts JOIN messages m ON m.rid = messages_fts.rowid \
                 WHERE messages_fts MATCH ?1 ORDER BY rank, m.rid LIMIT 10",
            )
            .unwrap();
        st.query_map([fts], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
    };
    let ranked = || super::query::RANKED_WITHOUT_BM25.with(std::cell::Cell::get);
    let before = ranked();
    let got: Vec<(String, f64)> = idx
        .search(&SearchQuery { limit: 10, ..SearchQuery::new(fts) })
        .unwrap()
        .into_iter()
        .map(|h| (h.message.id, h.score))
        .collect();
    assert_eq!(ranked(), before + 1, "ranked without bm25()");
    assert_eq!(got.len(), want.len());
    for ((gi, g), (wi, w)) in got.iter().zip(&want) {
        assert_eq!(gi, wi, "\ngot  {got:?}\nbm25 {want:?}");
        assert!((g - w).abs() <= 1e-9 * w.abs(), "{g} against bm25 {w}");
    }
}

/// A message whose time SQLite stores as NULL (a NaN: every door refuses one now, but the
/// journal is read as written) neither stops the index when it is its session's first message
/// nor makes reads fail. Found by a randomized test of Hermes' search by time: the session
/// row's refold read the first message's time as a number and failed every batch.
#[test]
fn a_missing_time_does_not_stop_the_index() {
    let (_d, mut idx) = open_tmp();
    let mut first = msg("m1", "s", "user", "a heron at dawn", f64::NAN);
    first.num = 1;
    idx.apply_batch(&batch(vec![first])).unwrap();
    let mut second = msg("m2", "s", "user", "a heron at dusk", 10.0);
    second.num = 2;
    idx.apply_batch(&[("a".to_string(), 2, Entry::Message(second))]).unwrap();
    let sessions = idx.list_sessions(&SessionFilter::default()).unwrap();
    assert_eq!(sessions.len(), 1);
    // The session starts at the first time it has.
    assert_eq!(sessions[0].started_at, Some(10.0));
    assert_eq!(find(&idx, "heron").len(), 2);
    let got: Vec<bool> = idx.messages("s").unwrap().iter().map(|m| m.timestamp.is_nan()).collect();
    assert_eq!(got, [true, false]);
}

/// An export's time bound and a follower's id bound, with and without a session, return exactly
/// the rows they name, in their order (the SQL is chosen by which bounds are given, so that
/// SQLite uses the indexes' ranges).
#[test]
fn bounded_exports_and_follows_return_exactly_their_rows() {
    let (_d, mut idx) = open_tmp();
    let msgs: Vec<Message> = (0..40usize)
        .map(|i| msg(&format!("m{i}"), if i % 2 == 0 { "even" } else { "odd" }, "user", "text", (100 - i) as f64))
        .collect();
    idx.apply_batch(&batch(msgs)).unwrap();
    let export = |session: Option<&str>, since: Option<f64>| {
        let mut v = Vec::new();
        idx.for_each_message(session, since, &mut |m| {
            v.push((m.id, m.timestamp));
            true
        })
        .unwrap();
        v
    };
    let all = export(None, None);
    assert_eq!(all.len(), 40);
    assert!(all.windows(2).all(|w| w[0].1 <= w[1].1), "by time");
    let since = export(None, Some(80.0));
    assert_eq!(since.iter().map(|(_, t)| *t).collect::<Vec<_>>(), (80..=100).map(f64::from).collect::<Vec<_>>());
    let even = export(Some("even"), Some(80.0));
    assert_eq!(even.len(), 11);
    assert!(even.iter().all(|(id, t)| *t >= 80.0 && id[1..].parse::<usize>().unwrap() % 2 == 0));
    assert_eq!(export(Some("odd"), None).len(), 20);
    // After an id: by id, of one session or of all.
    let nums: Vec<i64> = idx.after(0, None, 100).unwrap().iter().map(|(m, _)| m.num).collect();
    assert_eq!(nums.len(), 40);
    let cut = nums[9];
    let odd: Vec<(String, i64)> =
        idx.after(cut, Some("odd"), 100).unwrap().into_iter().map(|(m, _)| (m.session_id, m.num)).collect();
    assert_eq!(odd.len(), 15);
    assert!(odd.iter().all(|(s, n)| s == "odd" && *n > cut));
    assert!(odd.windows(2).all(|w| w[0].1 < w[1].1));
    assert_eq!(idx.after(cut, None, 5).unwrap().len(), 5);
}
