//! One copy of the text (docs/design.md "One copy of the text"): a long message text is kept in
//! the journal only (compressed), the index keeps where it is; every read, search and snippet
//! gives the whole text; an index written by version 4 (every text inline) is read and upgraded;
//! a text that cannot be read back is reported, never an empty or wrong message.
#![allow(clippy::unwrap_used)]

#[path = "common/dirs.rs"]
mod dirs;

use std::path::{Path, PathBuf};
use std::time::Duration;

use tidelog::{HermesSearch, Message, SearchQuery, Store, StoreOptions};

fn opts() -> StoreOptions {
    StoreOptions { poll_interval: Duration::from_millis(5), ..StoreOptions::default() }
}

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/store-v4")
}

/// A tool output of about 100 KB with `word` near its end.
fn big_output(word: &str) -> String {
    let mut s: String = (0..4000).map(|i| format!("{i:06} compile step finished ok\n")).collect();
    s.push_str(&format!("final line mentions {word} once\n"));
    s
}

/// The index rows' (content is NULL, body_lsn) for message `id`, read with a connection of our
/// own (read-only).
fn row_of(dir: &Path, id: &str) -> (bool, Option<i64>) {
    let c = rusqlite::Connection::open_with_flags(dir.join("index.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    c.query_row("SELECT content IS NULL, body_lsn FROM messages WHERE id = ?1", [id], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
}

/// Flips a byte in the middle of the journal record that holds message `id`'s text (the index
/// names its place), with the store closed.
fn damage_text_record(dir: &Path, id: &str) {
    let c = rusqlite::Connection::open_with_flags(dir.join("index.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    let (seg, off): (i64, i64) = c
        .query_row("SELECT body_seg, body_off FROM messages WHERE id = ?1", [id], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    drop(c);
    let seg = dir.join(format!("lanes/lane-0001/{seg:020}.seg"));
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[usize::try_from(off).unwrap() + 500] ^= 0x55;
    std::fs::write(&seg, &bytes).unwrap();
}

fn tool(session: &str, id: &str, text: String) -> Message {
    Message {
        id: id.into(),
        session_id: session.into(),
        role: "tool".into(),
        tool_name: Some("build".into()),
        content: Some(text),
        ..Message::default()
    }
}

#[test]
fn long_texts_are_kept_once_and_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    let text = big_output("zebrafish");
    store.append(tool("s", "big", text.clone())).unwrap();
    let short = Message { id: "short".into(), ..tool("s", "", "a short line".into()) };
    store.append(short).unwrap();
    assert!(store.wait_indexed(Duration::from_secs(30)));
    // The index keeps where the text is, not the text; a short one stays inline.
    let (null, at) = row_of(dir.path(), "big");
    assert!(null && at.is_some(), "the long text is kept in the journal only");
    assert_eq!(row_of(dir.path(), "short"), (false, None));
    let mut index = std::fs::read(dir.path().join("index.db")).unwrap();
    index.extend(std::fs::read(dir.path().join("index.db-wal")).unwrap_or_default());
    let marker = b"003999 compile step finished ok";
    assert!(!index.windows(marker.len()).any(|w| w == marker), "the index files hold no copy of the text");
    // Reads give it whole.
    let msgs = store.messages("s").unwrap();
    assert_eq!(msgs[0].content.as_deref(), Some(text.as_str()));
    // A word near the end of 100 KB is found by both searches, with a snippet around it.
    let hits = store.search(&SearchQuery::new("zebrafish")).unwrap();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert!(hits[0].snippet.contains("zebrafish"), "{}", hits[0].snippet);
    let words = store.search(&SearchQuery::new("final zebrafish")).unwrap();
    assert_eq!(words.len(), 1);
    let hermes = store.search_hermes(&HermesSearch { query: "zebrafish".into(), limit: 5, ..Default::default() });
    let hermes = hermes.unwrap();
    assert_eq!(hermes.len(), 1);
    assert!(hermes[0].snippet.contains(">>>zebrafish<<<"), "{}", hermes[0].snippet);
    // A word in the indexed part is found by the trigram index as before (substring).
    assert_eq!(store.search(&SearchQuery::new("000001 compile")).unwrap().len(), 1);
    store.close().unwrap();
}

#[test]
fn an_updated_long_text_moves_to_the_update_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    let a = store.append(tool("s", "m", big_output("first"))).unwrap();
    assert!(store.wait_indexed(Duration::from_secs(30)));
    let (_, before) = row_of(dir.path(), "m");
    let second = big_output("second");
    let update = tidelog::MessageUpdate {
        num: a.num.unwrap(),
        session_id: "s".into(),
        content: Some(second.clone()),
        ..Default::default()
    };
    store.update_message(update).unwrap();
    assert!(store.wait_indexed(Duration::from_secs(30)));
    let (null, after) = row_of(dir.path(), "m");
    assert!(null && after.is_some() && after != before);
    assert_eq!(store.messages("s").unwrap()[0].content.as_deref(), Some(second.as_str()));
    assert!(store.search(&SearchQuery::new("first")).unwrap().is_empty(), "the old text left the indexes");
    assert_eq!(store.search(&SearchQuery::new("second")).unwrap().len(), 1);
    let hermes = store.search_hermes(&HermesSearch { query: "first".into(), limit: 5, ..Default::default() });
    assert!(hermes.unwrap().is_empty());
    store.close().unwrap();
}

#[test]
fn a_version_4_store_is_read_and_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    dirs::copy_dir(&fixture(), dir.path());
    let expected: Vec<serde_json::Value> = std::fs::read_to_string(fixture().join("messages.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Read-only first: the version 4 file as it is.
    let ro = Store::open(dir.path(), StoreOptions { read_only: true, ..opts() }).unwrap();
    let texts: Vec<Option<String>> = ro.messages("s1").unwrap().into_iter().map(|m| m.content).collect();
    let want: Vec<Option<String>> = expected.iter().map(|v| v["content"].as_str().map(str::to_owned)).collect();
    assert_eq!(texts, want);
    drop(ro);
    let store = Store::open(dir.path(), opts()).unwrap();
    assert!(store.wait_indexed(Duration::from_secs(30)));
    let texts: Vec<Option<String>> = store.messages("s1").unwrap().into_iter().map(|m| m.content).collect();
    assert_eq!(texts, want, "the rows version 4 wrote read the same");
    assert_eq!(store.search(&SearchQuery::new("pelican")).unwrap().len(), 1);
    // New long texts go to the journal.
    store.append(tool("s1", "v5-1", big_output("heron"))).unwrap();
    assert!(store.wait_indexed(Duration::from_secs(30)));
    assert_eq!(row_of(dir.path(), "v4-2"), (false, None), "old rows keep their text inline");
    let (null, at) = row_of(dir.path(), "v5-1");
    assert!(null && at.is_some());
    assert_eq!(store.search(&SearchQuery::new("heron")).unwrap().len(), 1);
    let v: i64 = rusqlite::Connection::open(dir.path().join("index.db"))
        .unwrap()
        .query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, 5);
    store.close().unwrap();
}

#[test]
fn a_text_that_cannot_be_read_back_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    store.append(tool("s", "big", big_output("osprey"))).unwrap();
    store.append(tool("t", "after", "a record after it, so the damage is in the middle".into())).unwrap();
    assert!(store.wait_indexed(Duration::from_secs(30)));
    store.close().unwrap();
    // Damage the record in the middle of its payload (the index still points at it).
    let seg = std::fs::read_dir(dir.path().join("lanes/lane-0001"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[64 + 20 + 200] ^= 0x55;
    std::fs::write(&seg, &bytes).unwrap();
    // Opened read-only (a writable open would refuse the lane: damage in the middle).
    let ro = Store::open(dir.path(), StoreOptions { read_only: true, ..opts() }).unwrap();
    // Reads answer from what can be read and say what cannot (status, logs); never a message
    // with a missing or wrong text.
    let msgs = ro.messages("s").unwrap_or_default();
    assert!(msgs.iter().all(|m| m.id != "big" || m.content.as_deref() == Some(big_output("osprey").as_str())));
    let hits = ro.search(&SearchQuery::new("osprey")).unwrap_or_default();
    assert!(hits.iter().all(|h| h.message.content.as_deref() == Some(big_output("osprey").as_str())));
    // The text itself, read at its place: an error naming the file and offset.
    let c =
        rusqlite::Connection::open_with_flags(dir.path().join("index.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let (lane, seg, off, lsn, rid): (i64, i64, i64, i64, i64) = c
        .query_row("SELECT body_lane, body_seg, body_off, body_lsn, rid FROM messages WHERE id = 'big'", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap();
    let u = |v: i64| u64::try_from(v).unwrap();
    let err = ro.text_at(u(lane), u(seg), u(off), u(lsn), rid).unwrap_err().to_string();
    assert!(err.contains(".seg") && err.contains("checksum"), "{err}");
    let problems = ro.status().problems;
    assert!(problems.iter().any(|p| p.contains("cannot be read")), "{problems:?}");
}

/// A session's latest messages read only their own texts from the journal: an unreadable
/// record of an older message does not fail them; a read that needs it (the whole transcript)
/// reports it as before; and a later update's text wins over the record the index names.
#[test]
fn latest_messages_read_only_their_own_texts() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    let a = store.append(tool("s", "old", big_output("grebe"))).unwrap();
    let mut nums = vec![a.num.unwrap()];
    for i in 0..3 {
        nums.push(store.append(tool("s", &format!("new{i}"), big_output(&format!("wren{i}")))).unwrap().num.unwrap());
    }
    assert!(store.wait_indexed(Duration::from_secs(30)));
    let changed = big_output("changed");
    let update = tidelog::MessageUpdate {
        num: nums[2],
        session_id: "s".into(),
        content: Some(changed.clone()),
        ..Default::default()
    };
    store.update_message(update).unwrap();
    store.close().unwrap();
    // Damage the oldest message's record in the middle of its payload.
    damage_text_record(dir.path(), "old");
    let ro = Store::open(dir.path(), StoreOptions { read_only: true, ..opts() }).unwrap();
    let q = tidelog::HistoryQuery { limit: Some(2), latest: true, ..tidelog::HistoryQuery::new("s") };
    let latest: Vec<(i64, Option<String>)> =
        ro.history(&q).unwrap().into_iter().map(|h| (h.message.num, h.message.content)).collect();
    assert_eq!(latest, vec![(nums[2], Some(changed)), (nums[3], Some(big_output("wren2")))]);
    // The damaged lane is in the status whatever is read (found when the lane was opened).
    let problems = ro.status().problems;
    assert!(problems.iter().any(|p| p.contains("records that cannot be read")), "{problems:?}");
    // Reads that need the damaged record (the whole transcript, a latest read that includes
    // it) answer as before: never a message without its text.
    let all = ro.messages("s").unwrap_or_default();
    assert!(all.iter().all(|m| m.content.is_some()), "{all:?}");
    assert!(all.iter().any(|m| m.num == nums[3]), "{all:?}");
    let q = tidelog::HistoryQuery { limit: Some(4), latest: true, ..tidelog::HistoryQuery::new("s") };
    let four = ro.history(&q).unwrap_or_default();
    assert!(four.iter().all(|h| h.message.content.is_some()), "{four:?}");
    assert!(four.iter().any(|h| h.message.num == nums[2] && h.message.content == Some(big_output("changed"))));
}

/// A record longer than 16 KiB is appended as it is and compressed in place once its segment is
/// sealed (the compactor's idle pass): same offset, so the index's place still finds it; the
/// zeros after the compressed entry go back to the file system; reads, search and verify are
/// unchanged.
#[test]
fn long_records_are_compressed_in_place_once_sealed() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions { segment_size: 256 << 10, ..opts() }).unwrap();
    let texts: Vec<String> = (0..12).map(|i| big_output(&format!("kestrel{i}"))).collect();
    for (i, t) in texts.iter().enumerate() {
        store.append(tool("s", &format!("big{i}"), t.clone())).unwrap();
    }
    assert!(store.wait_indexed(Duration::from_secs(30)));
    let lane = dir.path().join("lanes/lane-0001");
    let compressed = || {
        let j = tidelog_journal::Journal::open_read_only(&lane, tidelog_journal::Options::default()).unwrap();
        j.iter_from(1).filter(|r| r.as_ref().unwrap().payload[0] == tidelog::CODEC_ZSTD_V3).count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while compressed() < texts.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {} records compressed in place",
            compressed(),
            texts.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Given back: the sealed segments take far fewer blocks than their length.
    let mut len = 0;
    let mut blocks = 0;
    for e in std::fs::read_dir(&lane).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "seg") {
            let m = std::fs::metadata(&p).unwrap();
            len += m.len();
            blocks += m.blocks() * 512;
        }
    }
    assert!(blocks * 2 < len, "{blocks} bytes on disk for {len} bytes of segments");
    let read: Vec<Option<String>> = store.messages("s").unwrap().into_iter().map(|m| m.content).collect();
    assert_eq!(read, texts.iter().cloned().map(Some).collect::<Vec<_>>());
    for i in 0..12 {
        assert_eq!(store.search(&SearchQuery::new(format!("kestrel{i}"))).unwrap().len(), 1, "kestrel{i}");
    }
    store.close().unwrap();
    let rep = tidelog::ops::verify_store(dir.path(), &mut |_, _, _| {}).unwrap();
    assert!(rep.is_ok(), "{:?}", rep.problems);
}

/// Retention removes segments: a store that turns it on first copies the texts its index kept
/// only in those segments into the index, which then holds the only copy.
#[test]
fn retention_copies_journal_texts_into_the_index_before_removing_segments() {
    let dir = tempfile::tempdir().unwrap();
    let small = StoreOptions { segment_size: 64 << 10, ..opts() };
    let texts: Vec<String> = (0..6).map(|i| big_output(&format!("plover{i}"))).collect();
    {
        let store = Store::open(dir.path(), small.clone()).unwrap();
        for (i, t) in texts.iter().enumerate() {
            store.append(tool("s", &format!("r{i}"), t.clone())).unwrap();
        }
        assert!(store.wait_indexed(Duration::from_secs(30)));
        store.close().unwrap();
    }
    assert!(row_of(dir.path(), "r0").1.is_some(), "kept in the journal while retention is off");
    let store = Store::open(dir.path(), StoreOptions { retention: tidelog::Retention::AfterIndexed, ..small }).unwrap();
    for i in 0..40 {
        store.append(tool("t", &format!("later{i}"), big_output("filler"))).unwrap();
    }
    assert!(store.wait_indexed(Duration::from_secs(30)));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while store.journal().first_lsn() <= 6 {
        assert!(std::time::Instant::now() < deadline, "retention removed nothing");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(row_of(dir.path(), "r0"), (false, None), "the text is in the index now");
    let read: Vec<Option<String>> = store.messages("s").unwrap().into_iter().map(|m| m.content).collect();
    assert_eq!(read, texts.iter().cloned().map(Some).collect::<Vec<_>>());
    assert_eq!(store.search(&SearchQuery::new("plover3")).unwrap().len(), 1);
    store.close().unwrap();
}

/// When entries are compressed as they are appended (docs/design.md "One copy of the text"): a
/// lone append compresses a 2 KB text but leaves a 100 KB one for later; a batch of several
/// messages (an import) compresses both; `compression: false` writes every entry as it is. Every
/// text reads back whole either way.
#[test]
fn entries_are_compressed_when_appended_by_size_and_batch() {
    let forms = |compression: bool, batch: bool| -> Vec<(usize, u8)> {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions { compression, run_compactor: false, ..opts() }).unwrap();
        let mid: String = (0..60).map(|i| format!("line {i:03} of a middling tool output\n")).collect();
        let msgs = vec![tool("s", "mid", mid.clone()), tool("s", "big", big_output("osprey"))];
        if batch {
            store.append_batch(msgs.clone()).unwrap();
        } else {
            for m in msgs.clone() {
                store.append(m).unwrap();
            }
        }
        let read: Vec<Option<String>> = store.messages("s").unwrap().into_iter().map(|m| m.content).collect();
        assert_eq!(read, msgs.into_iter().map(|m| m.content).collect::<Vec<_>>());
        store.close().unwrap();
        let lane = dir.path().join("lanes/lane-0001");
        let j = tidelog_journal::Journal::open_read_only(&lane, tidelog_journal::Options::default()).unwrap();
        j.iter_from(1)
            .map(|r| r.unwrap().payload)
            .filter(|p| matches!(tidelog::decode_entry(p), Ok(tidelog::Entry::Message(_))))
            .map(|p| (p.len(), p[0]))
            .collect()
    };
    let tags = |v: &[(usize, u8)]| v.iter().map(|&(_, t)| t).collect::<Vec<_>>();
    let (raw, zstd) = (tidelog::CODEC_FIELDS_V2, tidelog::CODEC_ZSTD_V3);
    assert_eq!(tags(&forms(true, false)), vec![zstd, raw], "lone appends");
    assert_eq!(tags(&forms(true, true)), vec![zstd, zstd], "a batch");
    let off = forms(false, true);
    assert_eq!(tags(&off), vec![raw, raw], "compression off");
    assert!(off[1].0 > 100_000, "{off:?}");
}

/// `compression: false` holds for the compactor too: long records of sealed segments stay as
/// they were written (a store with compression on compresses them within a few passes: above).
#[test]
fn compression_off_leaves_long_records_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Store::open(dir.path(), StoreOptions { segment_size: 256 << 10, compression: false, ..opts() }).unwrap();
    for i in 0..6 {
        store.append(tool("s", &format!("big{i}"), big_output(&format!("heron{i}")))).unwrap();
    }
    assert!(store.wait_indexed(Duration::from_secs(30)));
    // Passes run every 50 polls of 5 ms: this is several of them.
    std::thread::sleep(Duration::from_millis(1500));
    store.close().unwrap();
    let lane = dir.path().join("lanes/lane-0001");
    let j = tidelog_journal::Journal::open_read_only(&lane, tidelog_journal::Options::default()).unwrap();
    let long: Vec<u8> =
        j.iter_from(1).map(|r| r.unwrap().payload).filter(|p| p.len() > 16 << 10).map(|p| p[0]).collect();
    assert_eq!(long, vec![tidelog::CODEC_FIELDS_V2; 6]);
}

/// A one-word relevance search ranked without bm25() reads the indexed text of the newest
/// matches; one that cannot be read (a damaged record) makes it rank with bm25(), which reads
/// none, instead of failing the index read: the hits still come from the index, scored.
#[test]
fn relevance_without_bm25_falls_back_when_a_text_cannot_be_read() {
    let dir = tempfile::tempdir().unwrap();
    let index = tidelog::IndexOptions { one_phrase_min_matches: 0, ..tidelog::IndexOptions::default() };
    let opts = StoreOptions { index, ..opts() };
    let store = Store::open(dir.path(), opts.clone()).unwrap();
    let long = format!("osprey once, then {}", "filler words without the bird ".repeat(3000));
    let user = |id: &str, text: String| Message {
        id: id.into(),
        session_id: "s".into(),
        role: "user".into(),
        content: Some(text),
        ..Message::default()
    };
    store.append(user("long", long)).unwrap();
    for i in 0..20 {
        store.append(user(&format!("short{i}"), format!("osprey osprey osprey {i}"))).unwrap();
    }
    assert!(store.wait_indexed(Duration::from_secs(30)));
    store.close().unwrap();
    damage_text_record(dir.path(), "long");
    let ro = Store::open(dir.path(), StoreOptions { read_only: true, ..opts }).unwrap();
    let hits = ro.search(&SearchQuery { limit: 5, ..SearchQuery::new("osprey") }).unwrap();
    assert_eq!(hits.len(), 5);
    assert!(hits.iter().all(|h| h.message.id.starts_with("short") && h.score > 0.0), "{hits:?}");
}
