//! What deletions removed, and where it may still be: which journal records and index rows hold
//! content no read may return, the texts of the deleted messages ("needles"), searching every
//! file of the store folder for them, and scrubbing copies that are not the journal or the live
//! index (quarantined copies, leftovers) of them.
//!
//! A needle is the first [`NEEDLE_MAX`] bytes of a deleted message's text when that text has at
//! least [`NEEDLE_MIN`] bytes (shorter texts such as "ok" would be found everywhere), unless a
//! message still alive starts with the same bytes. The first bytes are what a file that holds
//! the message holds contiguously: a journal record, a SQLite row (long texts continue on
//! overflow pages, the start is on the row's page), a copy of either.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use aho_corasick::AhoCorasick;
use serde::Serialize;
use tidelog_journal::Journal;
use tidelog_journal::decode::{HeaderCheck, SegmentHeader, check_record_body, check_record_header, encode_record};

use crate::entry::{self, Entry};
use crate::error::{Error, Result};
use crate::index::{Index, IndexOptions};
use crate::layout::lane_number;
use crate::model::{Erased, Message, Rewrite};
use crate::read::{IndexedOps, SessionOps, Tail};

/// Shortest text searched for.
pub(crate) const NEEDLE_MIN: usize = 16;
/// Bytes of a text searched for (its start).
pub(crate) const NEEDLE_MAX: usize = 64;

/// What may stay: decided from every lane's history operations.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// The operations of every session that has some.
    ops: BTreeMap<String, SessionOps>,
    /// Integer ids of messages that are dead (covered by a deletion).
    dead: HashSet<i64>,
    /// Sessions deleted and not recreated since (no message, patch, counters or rewrite after
    /// the deletion).
    gone_sessions: BTreeSet<String>,
    /// The latest deletion of each deleted session: positioned patches and counters before it
    /// are erasable, whether or not the session was recreated.
    deleted: BTreeMap<String, i64>,
    /// Whether any deletion exists at all.
    any_deletion: bool,
    /// Deletions (lane, LSN) the index has not applied yet: left for a later pass
    /// ([`Plan::build_applied`]).
    pub(crate) deferred: Vec<(String, u64)>,
    /// Per lane, the last LSN read.
    pub(crate) read_to: BTreeMap<String, u64>,
    /// Per lane, the LSN of its last deletion (the index must have applied it before the pass
    /// can say the index holds none of the content).
    pub(crate) deletion_at: BTreeMap<String, u64>,
}

impl Plan {
    /// Reads every record of every lane once.
    pub(crate) fn build(journals: &BTreeMap<String, Journal>) -> Result<Plan> {
        Plan::build_applied(journals, None)
    }

    /// [`Plan::build`] with only the history operations the index applied (`applied`: its
    /// position per lane). An erase must not remove a text before the index has removed its row:
    /// the full-text indexes are given the row's text back when it leaves them (read from the
    /// journal for a text kept only there). Operations after `applied` are for a later pass
    /// (`read_to` stops there, so the pass keeps their markers).
    pub(crate) fn build_applied(
        journals: &BTreeMap<String, Journal>,
        applied: Option<&BTreeMap<String, u64>>,
    ) -> Result<Plan> {
        let mut msgs: Vec<(String, i64)> = Vec::new();
        // Positioned session writes (patches, counters, rewrites): a session written after its
        // deletion was recreated.
        let mut writes: Vec<(String, i64)> = Vec::new();
        let mut ops: BTreeMap<String, IndexedOps> = BTreeMap::new();
        let mut deleted: BTreeMap<String, i64> = BTreeMap::new();
        let mut plan = Plan::default();
        for (name, j) in journals {
            let lane = lane_number(name).unwrap_or(0);
            let mut last = 0;
            let upto = applied.map(|a| a.get(name).copied().unwrap_or(0));
            for r in j.iter_from(j.first_lsn()) {
                let r = r?;
                let Ok(e) = entry::decode_record(lane, r.lsn, &r.payload) else {
                    last = r.lsn;
                    continue;
                };
                if upto.is_some_and(|u| r.lsn > u) {
                    // Not applied yet: its messages may be erased by a later operation's pass,
                    // its operations wait for it.
                    match e {
                        Entry::Message(m) => msgs.push((m.session_id, m.num)),
                        Entry::Rewrite(rw) => {
                            if rw.rewrite_mode() == crate::model::RewriteMode::Delete {
                                plan.deferred.push((name.clone(), r.lsn));
                            }
                            msgs.extend(rw.messages.into_iter().map(|m| (m.session_id, m.num)));
                        }
                        Entry::Delete(_) => plan.deferred.push((name.clone(), r.lsn)),
                        _ => {}
                    }
                    continue;
                }
                last = r.lsn;
                match e {
                    Entry::Message(m) => msgs.push((m.session_id, m.num)),
                    Entry::Rewrite(rw) => {
                        let mode = rw.rewrite_mode();
                        if mode == crate::model::RewriteMode::Delete {
                            plan.any_deletion = true;
                            plan.deletion_at.insert(name.clone(), r.lsn);
                        }
                        writes.push((rw.session_id.clone(), rw.op));
                        ops.entry(rw.session_id.clone()).or_default().history.add_rewrite(
                            rw.op,
                            mode,
                            rw.active_only,
                            &rw.kept_nums(),
                        );
                        msgs.extend(rw.messages.into_iter().map(|m| (m.session_id, m.num)));
                    }
                    Entry::Session(p) => {
                        if let Some(op) = p.op {
                            writes.push((p.id, op));
                        }
                    }
                    Entry::Counters(c) => {
                        if let Some(op) = c.op {
                            writes.push((c.session_id, op));
                        }
                    }
                    Entry::Delete(d) => {
                        plan.any_deletion = true;
                        plan.deletion_at.insert(name.clone(), r.lsn);
                        for s in d.sessions {
                            let o = ops.entry(s.id.clone()).or_default();
                            o.history.add_deletion(d.op);
                            let e = deleted.entry(s.id).or_insert(d.op);
                            *e = (*e).max(d.op);
                        }
                    }
                    _ => {}
                }
            }
            plan.read_to.insert(name.clone(), last);
        }
        let empty = Tail::default();
        plan.ops = ops.into_iter().map(|(s, o)| (s.clone(), SessionOps::of(&s, o, &empty))).collect();
        let mut recreated: BTreeSet<String> = BTreeSet::new();
        for (s, num) in msgs {
            if plan.is_dead(&s, num) {
                plan.dead.insert(num);
            } else if deleted.contains_key(&s) {
                recreated.insert(s);
            }
        }
        for (s, op) in writes {
            if deleted.get(&s).is_some_and(|&d| op > d) {
                recreated.insert(s);
            }
        }
        plan.gone_sessions = deleted.keys().filter(|s| !recreated.contains(*s)).cloned().collect();
        plan.deleted = deleted;
        Ok(plan)
    }

    /// Whether any deletion exists at all (nothing to erase otherwise).
    pub(crate) fn any_deletion(&self) -> bool {
        self.any_deletion
    }

    /// Whether message `num` of `session` is covered by a deletion.
    pub(crate) fn is_dead(&self, session: &str, num: i64) -> bool {
        self.ops.get(session).is_some_and(|o| o.state(num).is_none())
    }

    /// Sessions with history operations (the only ones whose messages can be dead).
    pub(crate) fn sessions_with_ops(&self) -> Vec<String> {
        self.ops.keys().cloned().collect()
    }

    /// Whether a session write at `op` is covered by the session's deletion: one with a
    /// position when the deletion came after it; one written before positions existed when the
    /// session was deleted and not recreated.
    fn covered(&self, session: &str, op: Option<i64>) -> bool {
        match op {
            Some(op) => self.deleted.get(session).is_some_and(|&d| d > op),
            None => self.gone_sessions.contains(session),
        }
    }

    /// Sessions deleted and not recreated since.
    pub(crate) fn gone_sessions(&self) -> &BTreeSet<String> {
        &self.gone_sessions
    }

    /// The entry a record must hold instead of `e`, if `e` holds erasable content. A message is
    /// judged by the fold rule wherever it is found (a lane, or bytes a quarantine kept that no
    /// lane holds any more, such as a torn tail cut off by recovery).
    pub(crate) fn replacement(&self, e: &Entry) -> Option<Entry> {
        let erased = |e: &Entry| Some(Entry::Erased(Erased { kind: e.kind_number() }));
        let dead = |m: &Message| self.dead.contains(&m.num) || self.is_dead(&m.session_id, m.num);
        match e {
            Entry::Message(m) if dead(m) => erased(e),
            Entry::Update(u)
                if self.dead.contains(&u.num)
                    || self.is_dead(&u.session_id, u.num)
                    || self.gone_sessions.contains(&u.session_id) =>
            {
                erased(e)
            }
            Entry::Session(p) if self.covered(&p.id, p.op) => erased(e),
            Entry::Counters(c) if self.covered(&c.session_id, c.op) => erased(e),
            Entry::Rewrite(r) if r.messages.iter().any(dead) => {
                let messages: Vec<Message> = r.messages.iter().filter(|m| !dead(m)).cloned().collect();
                Some(Entry::Rewrite(Rewrite { messages, ..r.clone() }))
            }
            _ => None,
        }
    }

    /// The new payload of a record (exactly as long) if it holds erasable content.
    pub(crate) fn replace_payload(&self, lane: u64, lsn: u64, payload: &[u8]) -> Option<Vec<u8>> {
        let e = entry::decode_record(lane, lsn, payload).ok()?;
        // An `Erased` entry fits any length; a rewrite without some of its messages is shorter
        // by at least one message, which leaves room for the padding.
        entry::encode_padded(&self.replacement(&e)?, payload.len())
    }

    /// Adds the texts of `e` to `needles`: dead ones as needles, live ones as exclusions.
    pub(crate) fn texts(&self, e: &Entry, needles: &mut Needles) {
        let mut msg = |m: &Message| {
            let dead = self.dead.contains(&m.num) || self.is_dead(&m.session_id, m.num);
            if let Some(c) = &m.content {
                needles.add(&m.id, c, dead);
            }
        };
        match e {
            Entry::Message(m) => msg(m),
            Entry::Rewrite(r) => r.messages.iter().for_each(msg),
            Entry::Update(u) => {
                if let Some(c) = &u.content {
                    let dead = self.dead.contains(&u.num) || self.is_dead(&u.session_id, u.num);
                    needles.add(&format!("{}#{}", u.session_id, u.num), c, dead);
                }
            }
            _ => {}
        }
    }
}

/// The start of a text searched for, if the text is long enough.
fn needle_of(text: &str) -> Option<&[u8]> {
    let b = text.as_bytes();
    (b.len() >= NEEDLE_MIN).then(|| b.get(..NEEDLE_MAX.min(b.len())).unwrap_or(b))
}

fn hash_of(b: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    b.hash(&mut h);
    h.finish()
}

/// The texts of deleted messages, to search for, less those a live message starts with too.
#[derive(Debug, Default, Clone)]
pub struct Needles {
    dead: BTreeMap<Vec<u8>, String>,
    live: HashSet<u64>,
}

impl Needles {
    /// Adds the text of message `id`: searched for if `dead`, excluded from the search if not.
    pub(crate) fn add(&mut self, id: &str, text: &str, dead: bool) {
        let Some(n) = needle_of(text) else { return };
        if dead {
            self.dead.entry(n.to_vec()).or_insert_with(|| id.to_string());
        } else {
            self.live.insert(hash_of(n));
        }
    }

    /// How many texts are searched for.
    pub fn len(&self) -> usize {
        self.searched().len()
    }

    /// Whether there is nothing to search for.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn searched(&self) -> Vec<(&Vec<u8>, &String)> {
        self.dead.iter().filter(|(n, _)| !self.live.contains(&hash_of(n))).collect()
    }

    /// The matcher and, by pattern index, the message each needle comes from.
    pub(crate) fn matcher(&self) -> Option<(AhoCorasick, Vec<String>)> {
        let s = self.searched();
        if s.is_empty() {
            return None;
        }
        let ac = AhoCorasick::new(s.iter().map(|(n, _)| n.as_slice())).ok()?;
        Some((ac, s.into_iter().map(|(_, id)| id.clone()).collect()))
    }
}

/// Where deleted content was found.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeletedContentFound {
    /// The file.
    pub path: PathBuf,
    /// Offset of the first occurrence.
    pub offset: u64,
    /// The deleted message (its id) whose text is there, first found.
    pub message_id: String,
    /// How many occurrences of deleted texts the file holds.
    pub occurrences: u64,
}

/// Every file under `dir` (folders walked, symbolic links not followed), sorted.
pub(crate) fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// Searches every file under `dir` for the needles; one entry per file that holds some. The
/// caller has no SQLite connection open on a file of the folder (see `verify_store`).
pub(crate) fn find_in_files(dir: &Path, needles: &Needles) -> Vec<DeletedContentFound> {
    find_hits(dir, needles).into_iter().map(|h| h.found).collect()
}

/// A file holding deleted text, with the texts found in it.
#[derive(Debug, Clone)]
pub(crate) struct Hit {
    found: DeletedContentFound,
    texts: Vec<Vec<u8>>,
}

/// Leaves out of `hits` the texts that a message the deletions do not cover contains too (per
/// the index at `index`, asked once per text), and the files left with none.
pub(crate) fn drop_kept(hits: Vec<Hit>, plan: &Plan, index: &Path) -> Vec<DeletedContentFound> {
    let ix = Index::open_read_only(index, &IndexOptions::default()).ok();
    let kept = |text: &[u8]| {
        ix.as_ref()
            .and_then(|ix| ix.messages_containing(text).ok())
            .is_some_and(|rows| rows.iter().any(|(rid, session)| !plan.is_dead(session, *rid)))
    };
    let mut verdict: BTreeMap<Vec<u8>, bool> = BTreeMap::new();
    hits.into_iter()
        .filter_map(|mut h| {
            h.texts.retain(|t| !*verdict.entry(t.clone()).or_insert_with(|| kept(t)));
            (!h.texts.is_empty()).then_some(h.found)
        })
        .collect()
}

fn find_hits(dir: &Path, needles: &Needles) -> Vec<Hit> {
    let Some((ac, ids)) = needles.matcher() else { return Vec::new() };
    let texts: Vec<&Vec<u8>> = needles.searched().into_iter().map(|(n, _)| n).collect();
    let mut out = Vec::new();
    for path in all_files(dir) {
        let Ok(f) = fs::File::open(&path) else { continue };
        let mut hit: Option<Hit> = None;
        for m in ac.stream_find_iter(std::io::BufReader::with_capacity(1 << 20, f)) {
            let Ok(m) = m else { break };
            let k = m.pattern().as_usize();
            let text = texts.get(k).map(|t| t.to_vec()).unwrap_or_default();
            match &mut hit {
                Some(h) => {
                    h.found.occurrences += 1;
                    if !h.texts.contains(&text) {
                        h.texts.push(text);
                    }
                }
                None => {
                    hit = Some(Hit {
                        found: DeletedContentFound {
                            path: path.clone(),
                            offset: m.start() as u64,
                            message_id: ids.get(k).cloned().unwrap_or_default(),
                            occurrences: 1,
                        },
                        texts: vec![text],
                    })
                }
            }
        }
        // Compressed records hide their text from a search of bytes: search what they expand to.
        if path.extension().is_some_and(|e| e == "seg") {
            for (at, k) in compressed_matches(&path, &ac) {
                let text = texts.get(k).map(|t| t.to_vec()).unwrap_or_default();
                let h = hit.get_or_insert_with(|| Hit {
                    found: DeletedContentFound {
                        path: path.clone(),
                        offset: at,
                        message_id: ids.get(k).cloned().unwrap_or_default(),
                        occurrences: 0,
                    },
                    texts: Vec::new(),
                });
                h.found.occurrences += 1;
                if !h.texts.contains(&text) {
                    h.texts.push(text);
                }
            }
        }
        out.extend(hit);
    }
    out
}

/// The needles found in the compressed records of the segment file at `path`: (offset of the
/// record, needle number) per occurrence.
fn compressed_matches(path: &Path, ac: &AhoCorasick) -> Vec<(u64, usize)> {
    let Ok(bytes) = fs::read(path) else { return Vec::new() };
    let Ok(header) = SegmentHeader::decode(&bytes) else { return Vec::new() };
    let max = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    let mut out = Vec::new();
    let mut pos = tidelog_journal::SEGMENT_HEADER_LEN;
    while let Some(rest) = bytes.get(pos..) {
        let HeaderCheck::Valid(h) = check_record_header(rest, header.salt, max) else { break };
        if let Some(body) = check_record_body(rest, header.salt, &h)
            && let Some(plain) = rest.get(body).and_then(entry::uncompressed)
        {
            out.extend(ac.find_overlapping_iter(&plain).map(|m| (pos as u64, m.pattern().as_usize())));
        }
        pos += usize::try_from(h.frame_len()).unwrap_or(usize::MAX);
    }
    out
}

/// The ranges of `bytes` holding a needle.
pub(crate) fn needle_ranges(ac: &AhoCorasick, bytes: &[u8]) -> Vec<Range<usize>> {
    ac.find_overlapping_iter(bytes).map(|m| m.start()..m.end()).collect()
}

/// Overwrites with zeros every needle in the file at `path`, in place, and syncs it. Returns the
/// bytes overwritten.
pub(crate) fn scrub_file(path: &Path, ac: &AhoCorasick) -> Result<u64> {
    let mut bytes = Vec::new();
    fs::File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(|e| Error::io("read", path, e))?;
    let ranges = needle_ranges(ac, &bytes);
    if ranges.is_empty() {
        return Ok(0);
    }
    let f = fs::OpenOptions::new().write(true).open(path).map_err(|e| Error::io("open", path, e))?;
    let mut n = 0;
    for r in ranges {
        f.write_all_at(&vec![0u8; r.end - r.start], r.start as u64).map_err(|e| Error::io("write", path, e))?;
        n += (r.end - r.start) as u64;
    }
    f.sync_all().map_err(|e| Error::io("sync", path, e))?;
    Ok(n)
}

/// Salts a quarantined journal copy may be checksummed with: its own header's (a whole segment
/// moved aside) and the source segment's (a range copied from it).
pub(crate) fn copy_salts(copy: &Path, source: Option<&Path>) -> Vec<u32> {
    let mut salts = Vec::new();
    let mut head = [0u8; tidelog_journal::SEGMENT_HEADER_LEN];
    for p in [Some(copy), source].into_iter().flatten() {
        if let Ok(f) = fs::File::open(p)
            && f.read_exact_at(&mut head, 0).is_ok()
            && let Ok(h) = SegmentHeader::decode(&head)
        {
            salts.push(h.salt);
        }
    }
    salts.dedup();
    salts
}

/// Scrubs a quarantined copy of journal bytes: every record in it that decodes (with one of
/// `salts`) and holds erasable content gets its erased form in place, frame and checksum valid;
/// then any needle left (in bytes no record covers) is overwritten with zeros. Returns the bytes
/// changed. The copy is set-aside data (never read by the journal): written and synced, no redo.
pub(crate) fn scrub_journal_copy(
    path: &Path,
    salts: &[u32],
    lane: u64,
    plan: &Plan,
    ac: Option<&AhoCorasick>,
) -> Result<u64> {
    let mut bytes = Vec::new();
    fs::File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(|e| Error::io("read", path, e))?;
    let mut changes: Vec<(usize, Vec<u8>)> = Vec::new();
    let max = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    let mut pos = 0;
    while pos + tidelog_journal::RECORD_HEADER_LEN <= bytes.len() {
        let rest = bytes.get(pos..).unwrap_or_default();
        let found = salts.iter().find_map(|&salt| match check_record_header(rest, salt, max) {
            HeaderCheck::Valid(h) => check_record_body(rest, salt, &h).map(|body| (salt, h, body)),
            _ => None,
        });
        let Some((salt, h, body)) = found else {
            pos += 1;
            continue;
        };
        let payload = rest.get(body).unwrap_or_default();
        if let Some(new) = plan.replace_payload(lane, h.lsn, payload) {
            let mut frame = Vec::new();
            encode_record(&mut frame, salt, h.lsn, h.flags, &new);
            changes.push((pos, frame));
        }
        pos += usize::try_from(h.frame_len()).unwrap_or(usize::MAX);
    }
    let mut image = bytes.clone();
    for (at, frame) in &changes {
        if let Some(dst) = image.get_mut(*at..at + frame.len()) {
            dst.copy_from_slice(frame);
        }
    }
    if let Some(ac) = ac {
        for r in needle_ranges(ac, &image) {
            if let Some(dst) = image.get_mut(r) {
                dst.fill(0);
            }
        }
    }
    let changed = image.iter().zip(&bytes).filter(|(a, b)| a != b).count() as u64;
    if changed > 0 {
        let mut f = fs::OpenOptions::new().write(true).open(path).map_err(|e| Error::io("open", path, e))?;
        f.write_all(&image).and_then(|()| f.sync_all()).map_err(|e| Error::io("write", path, e))?;
    }
    Ok(changed)
}

/// Deletes, from a copy of the index (quarantined, or a scratch copy), the rows of deleted
/// messages and sessions, as the compactor does in the live index (FTS5 secure-delete, SQLite
/// `secure_delete`), and checkpoints its WAL away. Returns the rows deleted; `Err` if SQLite
/// cannot open or change the file.
pub(crate) fn scrub_index_copy(path: &Path, store: &Path, plan: &Plan) -> Result<u64> {
    // Its long texts are in the store's journal (and a dead one's record may be erased already:
    // then its rows leave with both full-text indexes emptied and made again).
    let ix = Index::open(path, &IndexOptions { journal_text: Some(store.to_owned()), ..IndexOptions::default() })?;
    let rows = ix.rows_of_sessions(&plan.sessions_with_ops())?;
    let dead: Vec<i64> = rows.iter().filter(|r| plan.is_dead(&r.session_id, r.rid)).map(|r| r.rid).collect();
    let gone: Vec<String> = plan.gone_sessions().iter().cloned().collect();
    let n = match ix.erase_rows_and_sessions(&dead, &gone) {
        Err(e) if e.is_unreadable_text() => ix.erase_rows_and_sessions_rebuilding(&dead, &gone)?,
        r => r?,
    };
    if n > 0 {
        ix.vacuum()?;
    }
    ix.checkpoint_truncate()?;
    Ok(n)
}

/// The texts of the rows of the SQLite file `path` (an index or a copy of one) that a deletion
/// covers, added to `needles` (live rows as exclusions). A copy is opened read-only and
/// immutable: nothing is created beside it (a `-wal` it may have is searched byte by byte, not
/// read as a WAL); the `live` index read-only as readers open it.
pub(crate) fn index_texts(path: &Path, live: bool, plan: &Plan, needles: &mut Needles) -> rusqlite::Result<()> {
    use rusqlite::{Connection, OpenFlags};
    if live {
        let Ok(ix) = Index::open_read_only(path, &IndexOptions::default()) else { return Ok(()) };
        for (rid, session, id, content) in ix.texts_of_sessions(&plan.sessions_with_ops()).unwrap_or_default() {
            if let Some(c) = content {
                needles.add(&id, &c, plan.is_dead(&session, rid));
            }
        }
        return Ok(());
    }
    let mut uri = String::from("file:");
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => uri.push_str("%25"),
            '?' => uri.push_str("%3f"),
            '#' => uri.push_str("%23"),
            c => uri.push(c),
        }
    }
    uri.push_str("?immutable=1");
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(uri, flags)?;
    let mut st = conn.prepare("SELECT rid, session_id, id, content FROM messages WHERE session_id = ?1")?;
    for s in plan.sessions_with_ops() {
        let rows = st.query_map([&s], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, Option<String>>(3)?))
        })?;
        for row in rows {
            let (rid, session, id, content) = row?;
            if let Some(c) = content {
                needles.add(&id, &c, plan.is_dead(&session, rid));
            }
        }
    }
    Ok(())
}

/// The texts of the records of a quarantined copy of journal bytes (see [`scrub_journal_copy`]).
pub(crate) fn journal_copy_texts(path: &Path, salts: &[u32], lane: u64, plan: &Plan, needles: &mut Needles) {
    let Ok(bytes) = fs::read(path) else { return };
    let max = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    let mut pos = 0;
    while pos + tidelog_journal::RECORD_HEADER_LEN <= bytes.len() {
        let rest = bytes.get(pos..).unwrap_or_default();
        let found = salts.iter().find_map(|&salt| match check_record_header(rest, salt, max) {
            HeaderCheck::Valid(h) => check_record_body(rest, salt, &h).map(|body| (h, body)),
            _ => None,
        });
        let Some((h, body)) = found else {
            pos += 1;
            continue;
        };
        if let Ok(e) = entry::decode_record(lane, h.lsn, rest.get(body).unwrap_or_default()) {
            plan.texts(&e, needles);
        }
        pos += usize::try_from(h.frame_len()).unwrap_or(usize::MAX);
    }
}

/// Every file under `dir` that holds the text of a deleted message, found from every source
/// that can still name one: the lanes (records not erased yet), quarantined journal copies, and
/// every SQLite file in the folder (the index, quarantined and scratch copies). The caller has
/// no SQLite connection open on a file of the folder, and filters the hits with [`drop_kept`]
/// (with the plan returned).
pub(crate) fn find_deleted_content(dir: &Path, journals: &BTreeMap<String, Journal>) -> Result<(Vec<Hit>, Plan)> {
    let plan = Plan::build(journals)?;
    if !plan.any_deletion() {
        return Ok((Vec::new(), plan));
    }
    let mut needles = Needles::default();
    for (name, j) in journals {
        let lane = lane_number(name).unwrap_or(0);
        for r in j.iter_from(j.first_lsn()).flatten() {
            if let Ok(e) = entry::decode_record(lane, r.lsn, &r.payload) {
                plan.texts(&e, &mut needles);
            }
        }
    }
    for p in all_files(dir) {
        if p.extension().is_some_and(|e| e == "db") {
            // The live index with its WAL (and the usual locking); copies as they are.
            let live = p == dir.join(crate::layout::INDEX_FILE);
            let _ = index_texts(&p, live, &plan, &mut needles);
        }
    }
    for f in crate::layout::QuarantinedFile::list_store(dir) {
        if let Some((lane, _)) = f.item.split_once('/') {
            let source = note_source(f.note.as_deref());
            let salts = copy_salts(&f.path, source.as_deref());
            journal_copy_texts(&f.path, &salts, lane_number(lane).unwrap_or(0), &plan, &mut needles);
        }
    }
    Ok((find_hits(dir, &needles), plan))
}

/// The `source` a journal quarantine note names.
pub(crate) fn note_source(note: Option<&Path>) -> Option<PathBuf> {
    let body = fs::read(note?).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    v.get("source")?.as_str().map(PathBuf::from)
}
