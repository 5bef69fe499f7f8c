//! Shared helpers for the fault-injection suite: self-describing payloads, a reference model of
//! what the journal must hold, and checkers for the invariants every suite asserts:
//!
//! - I1 acknowledged means recovered: every append that returned `Ok` (and was synced, or the
//!   page cache survived) is present after reopen, exactly once, with its exact bytes.
//! - I2 recovered means written: nothing is read back that was not appended. Payloads carry an
//!   id and a checksum of their content ([`payload`], [`payload_id`]), so garbage is detected.
//! - I3 prefix: what is recovered is a prefix of what was appended, in order, without gaps
//!   (except holes salvage reported).
//! - I4 opening succeeds after any torn tail; mid-log damage is a named error (Strict) or a
//!   report of exactly the LSNs lost (Salvage). See [`named_corruption`].
//! - I5 recovery is idempotent: a second open is clean and reads the same records
//!   ([`reopen_is_idempotent`]).
#![allow(clippy::unwrap_used)]

pub mod fuzz_logic;
pub mod hermes_fixtures;

use std::path::Path;
use std::sync::Arc;

use tidelog_journal::storage::SimStorage;
use tidelog_journal::{Durability, Error, Journal, Lsn, Options, Record, RecoveryMode};

/// The journal folder used on the simulated disk.
pub const DIR: &str = "/data/journal";

/// [`DIR`] as a path.
pub fn dir() -> &'static Path {
    Path::new(DIR)
}

/// Smallest payload [`payload`] makes (id, length, checksum).
pub const PAYLOAD_OVERHEAD: usize = 8 + 4 + 8;

fn fnv64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A small seeded generator (SplitMix64): the same sequence for the same seed on every run and
/// platform, so tests and fixture generators are reproducible without a dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let out = splitmix(self.0);
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        out
    }

    /// A number in `0..n` (`n > 0`; the slight modulo bias does not matter here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// `true` with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
}

/// Every file under `dir` holding one of `needles`, as `grep -roF` prints them (`path:needle`,
/// sorted, once each), also looking inside the compressed records of journal segments (codec
/// tag 3), whose bytes do not show their text: each record of a `.seg` file is decoded and
/// searched in its uncompressed encoding.
pub fn grep_expanded(dir: &Path, needles: &[String]) -> Vec<String> {
    if needles.is_empty() {
        return Vec::new();
    }
    let mut cmd = std::process::Command::new("grep");
    cmd.args(["-roF", "--binary-files=text"]);
    for n in needles {
        cmd.arg("-e").arg(n);
    }
    let out = cmd.arg(dir).output().expect("grep");
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "seg") {
                let text = expanded_records(&p);
                for n in needles {
                    if text.windows(n.len()).any(|w| w == n.as_bytes()) {
                        v.push(format!("{}:{n}", p.display()));
                    }
                }
            }
        }
    }
    v.sort();
    v.dedup();
    v
}

/// The uncompressed encodings of the compressed records of the segment file at `path`.
pub fn expanded_records(path: &Path) -> Vec<u8> {
    use tidelog_journal::decode::{HeaderCheck, SegmentHeader, check_record_body, check_record_header};
    let Ok(bytes) = std::fs::read(path) else { return Vec::new() };
    let Ok(h) = SegmentHeader::decode(&bytes) else { return Vec::new() };
    let mut out = Vec::new();
    let mut pos = tidelog_journal::SEGMENT_HEADER_LEN;
    while let Some(rest) = bytes.get(pos..) {
        let HeaderCheck::Valid(rh) = check_record_header(rest, h.salt, u32::MAX) else { break };
        if let Some(body) = check_record_body(rest, h.salt, &rh)
            && let Some(payload) = rest.get(body)
            && payload.first() == Some(&tidelog::CODEC_ZSTD_V3)
            && let Ok(e) = tidelog::decode_entry(payload)
        {
            out.extend_from_slice(&tidelog::encode_entry(&e));
            out.push(0);
        }
        pos += usize::try_from(rh.frame_len()).unwrap_or(usize::MAX);
    }
    out
}

/// Copies a folder recursively; copies are writable even when the source files are not (test
/// fixtures are committed read-only in some checkouts).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy's folder");
    for e in std::fs::read_dir(from).expect("list the folder to copy") {
        let e = e.expect("list the folder to copy");
        let dest = to.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).expect("copy a file");
            let mut perm = std::fs::metadata(&dest).expect("stat the copy").permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perm.set_readonly(false);
            std::fs::set_permissions(&dest, perm).expect("make the copy writable");
        }
    }
}

/// A unique, self-describing payload: `id` (u64 LE), body length (u32 LE), `body_len` bytes
/// derived from the id, and an FNV-64 of everything before it. Independent of the LSN.
pub fn payload(id: u64, body_len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(body_len + PAYLOAD_OVERHEAD);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&u32::try_from(body_len).expect("body fits in u32").to_le_bytes());
    let mut state = id;
    while out.len() < 12 + body_len {
        state = splitmix(state);
        let take = (12 + body_len - out.len()).min(8);
        out.extend_from_slice(&state.to_le_bytes()[..take]);
    }
    let sum = fnv64(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

/// The id of a payload made by [`payload`], or `None` if the bytes are not one (garbage).
pub fn payload_id(b: &[u8]) -> Option<u64> {
    if b.len() < PAYLOAD_OVERHEAD {
        return None;
    }
    let id = u64::from_le_bytes(b.get(0..8)?.try_into().ok()?);
    let len = u32::from_le_bytes(b.get(8..12)?.try_into().ok()?) as usize;
    if b.len() != len.checked_add(PAYLOAD_OVERHEAD)? {
        return None;
    }
    (payload(id, len) == b).then_some(id)
}

/// Options on a simulated disk.
pub fn sim_opts(sim: &SimStorage, segment_size: u64, durability: Durability) -> Options {
    Options { segment_size, durability, max_record_size: 1 << 20, storage: Arc::new(sim.clone()), ..Options::default() }
}

/// Every record from the first one present.
pub fn read_all(j: &Journal) -> Result<Vec<Record>, Error> {
    j.iter_from(j.first_lsn()).collect()
}

/// Whether `e` is a corruption error that names a file inside `dir` (I4).
pub fn named_corruption(e: &Error, dir: &Path) -> bool {
    match e {
        Error::Corrupt { path, .. } | Error::BrokenChain { path, .. } => {
            path.starts_with(dir) && path.file_name().is_some()
        }
        _ => false,
    }
}

/// How sure the model is that an append reached the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// Acknowledged and synced: survives everything.
    Synced,
    /// Acknowledged but not synced (`Buffered`): survives a kill, not a power cut.
    Written,
    /// The append failed: it may or may not be there.
    Maybe,
}

/// The reference model: what the journal must (and may) hold.
///
/// `log[i]` is LSN `i + 1` as known after the last verified open (`None`: lost to a salvage that
/// reported it); `pending` holds the appends made since, whose LSNs follow.
#[derive(Debug, Clone, Default)]
pub struct Model {
    log: Vec<Option<Vec<u8>>>,
    pending: Vec<(Vec<u8>, Ack)>,
    /// Records below this LSN may have been removed by retention.
    droppable_below: Lsn,
    next_id: u64,
}

impl Model {
    /// An empty model.
    pub fn new() -> Self {
        Self::default()
    }

    /// A fresh unique payload with `body_len` bytes of body.
    pub fn next_payload(&mut self, body_len: usize) -> Vec<u8> {
        self.next_id += 1;
        payload(self.next_id, body_len)
    }

    /// The LSN the next append should get.
    pub fn next_lsn(&self) -> Lsn {
        (self.log.len() + self.pending.len()) as Lsn + 1
    }

    /// Number of LSNs the model knows (definitive and pending).
    pub fn len(&self) -> usize {
        self.log.len() + self.pending.len()
    }

    /// Whether the model holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An append of `payloads` returned `Ok(first)`.
    pub fn acked(&mut self, first: Lsn, payloads: &[Vec<u8>], durability: Durability) -> Result<(), String> {
        if !payloads.is_empty() && first != self.next_lsn() {
            return Err(format!("append returned LSN {first}, the model expected {}", self.next_lsn()));
        }
        let ack = match durability {
            Durability::Sync => Ack::Synced,
            Durability::Buffered => Ack::Written,
        };
        self.pending.extend(payloads.iter().map(|p| (p.clone(), ack)));
        Ok(())
    }

    /// An append of `payloads` failed after taking LSNs (a write or sync error, not a refusal
    /// such as `Poisoned` before queueing): they may or may not be on disk.
    pub fn failed(&mut self, payloads: &[Vec<u8>]) {
        self.pending.extend(payloads.iter().map(|p| (p.clone(), Ack::Maybe)));
    }

    /// `Journal::sync` returned `Ok`: every acknowledged append is now durable.
    pub fn synced(&mut self) {
        for (_, a) in &mut self.pending {
            if *a == Ack::Written {
                *a = Ack::Synced;
            }
        }
    }

    /// `remove_segments_below(lsn)` was called (whatever it returned): records below `lsn` may
    /// be gone.
    pub fn retention(&mut self, lsn: Lsn) {
        self.droppable_below = self.droppable_below.max(lsn);
    }

    /// The payload the model holds for `lsn`: `Ok(Some)` definitive or pending, `Ok(None)` a
    /// salvaged hole, `Err` beyond anything appended.
    fn expected(&self, lsn: Lsn) -> Result<Option<&[u8]>, String> {
        let i = usize::try_from(lsn).unwrap_or(usize::MAX).wrapping_sub(1);
        if let Some(e) = self.log.get(i) {
            return Ok(e.as_deref());
        }
        match self.pending.get(i.wrapping_sub(self.log.len())) {
            Some((p, _)) => Ok(Some(p)),
            None => Err(format!("I2: record LSN {lsn} was never appended (model holds {} LSNs)", self.len())),
        }
    }

    /// Highest LSN that must be present: every definitive record, every synced append, and the
    /// written ones too if the page cache survived.
    fn required_last(&self, page_cache_kept: bool) -> Lsn {
        let need = |a: Ack| a == Ack::Synced || (a == Ack::Written && page_cache_kept);
        let pend = self.pending.iter().rposition(|(_, a)| need(*a)).map_or(0, |i| i + 1);
        (self.log.len() + pend) as Lsn
    }

    fn is_hole(&self, lsn: Lsn, lost: &[(Lsn, Lsn)]) -> bool {
        matches!(self.expected(lsn), Ok(None)) || lost.iter().any(|&(a, b)| a <= lsn && lsn <= b)
    }

    /// Checks `records` (all the journal returns, in order) against the model: I2 (every record
    /// is a payload that was appended at that LSN), I3 (consecutive LSNs except reported holes),
    /// I1 (everything required is present). `lost` lists LSN ranges a salvage reported.
    pub fn check_records(&self, records: &[Record], page_cache_kept: bool, lost: &[(Lsn, Lsn)]) -> Result<(), String> {
        for r in records {
            if payload_id(&r.payload).is_none() {
                return Err(format!("I2: record LSN {} is garbage ({} bytes)", r.lsn, r.payload.len()));
            }
            match self.expected(r.lsn)? {
                Some(p) if p == r.payload.as_slice() => {}
                Some(p) => {
                    return Err(format!(
                        "I2: record LSN {} holds payload id {:?}, the model has id {:?}",
                        r.lsn,
                        payload_id(&r.payload),
                        payload_id(p)
                    ));
                }
                None => return Err(format!("record LSN {} is inside a salvaged hole", r.lsn)),
            }
            if lost.iter().any(|&(a, b)| a <= r.lsn && r.lsn <= b) {
                return Err(format!("salvage reported LSN {} lost but it is readable", r.lsn));
            }
        }
        for w in records.windows(2) {
            let (a, b) = (w[0].lsn, w[1].lsn);
            if b <= a {
                return Err(format!("I3: LSN {b} follows LSN {a}"));
            }
            if let Some(gap) = (a + 1..b).find(|&l| !self.is_hole(l, lost)) {
                return Err(format!("I3: gap: LSN {gap} missing between {a} and {b}"));
            }
        }
        let required = self.required_last(page_cache_kept);
        let floor = self.droppable_below.max(1);
        let first = records.first().map_or(Lsn::MAX, |r| r.lsn);
        let last = records.last().map_or(0, |r| r.lsn);
        for lsn in floor..=required {
            let present = lsn >= first && lsn <= last;
            if !present && !self.is_hole(lsn, lost) {
                let what = self.pending.get((lsn as usize).wrapping_sub(1 + self.log.len())).map(|(_, a)| *a);
                return Err(format!(
                    "I1: LSN {lsn} ({}) missing; recovered {first}..={last}, required up to {required}",
                    what.map_or("recovered at an earlier open".to_string(), |a| format!("{a:?}"))
                ));
            }
        }
        Ok(())
    }

    /// After a reopen: checks what `j` holds ([`Model::check_records`]) and folds the recovered
    /// pending appends into the definitive log. Returns the records read.
    pub fn check_reopened(&mut self, j: &Journal, page_cache_kept: bool) -> Result<Vec<Record>, String> {
        let records = read_all(j).map_err(|e| format!("reading after reopen: {e}"))?;
        let lost = j.recovery_report().lost_lsns();
        self.check_records(&records, page_cache_kept, &lost)?;
        let last = j.last_lsn();
        if let Some(r) = records.last()
            && r.lsn != last
        {
            return Err(format!("last record read is LSN {} but last_lsn() is {last}", r.lsn));
        }
        self.fold(last, &lost)?;
        Ok(records)
    }

    /// The journal's last LSN is `last`: pending appends up to it are definitive, the rest are
    /// gone; `lost` ranges become holes.
    pub fn fold(&mut self, last: Lsn, lost: &[(Lsn, Lsn)]) -> Result<(), String> {
        let last = usize::try_from(last).unwrap_or(usize::MAX);
        if last < self.log.len() {
            if self.log[last..].iter().all(Option::is_none) {
                self.log.truncate(last);
            } else {
                return Err(format!("I1: the log went back to LSN {last} from {}", self.log.len()));
            }
        }
        let take = last - self.log.len();
        if take > self.pending.len() {
            return Err(format!("I2: last LSN {last} is beyond every append ({})", self.len()));
        }
        let kept: Vec<_> = self.pending.drain(..take).map(|(p, _)| Some(p)).collect();
        self.log.extend(kept);
        self.pending.clear();
        for &(a, b) in lost {
            for lsn in a..=b {
                if let Some(e) = self.log.get_mut((lsn as usize).wrapping_sub(1)) {
                    *e = None;
                }
            }
        }
        Ok(())
    }

    /// Checks a live (not reopened) journal: everything acknowledged is readable.
    pub fn check_live(&self, j: &Journal) -> Result<(), String> {
        let records = read_all(j).map_err(|e| format!("reading live journal: {e}"))?;
        self.check_records(&records, true, &[])
    }

    /// Whether the model still holds a record for `lsn` (not a salvaged hole, not unknown).
    pub fn holds(&self, lsn: Lsn) -> bool {
        matches!(self.expected(lsn), Ok(Some(_)))
    }

    /// The definitive LSNs, for tests that pick one.
    pub fn definitive_len(&self) -> usize {
        self.log.len()
    }
}

/// I5: opens the journal a second time (after the caller dropped the first handle) and checks
/// the open is clean and reads exactly `records`.
pub fn reopen_is_idempotent(opts: &Options, records: &[Record]) -> Result<Journal, String> {
    let o = Options { recovery: RecoveryMode::Strict, ..opts.clone() };
    let j = Journal::open(dir(), o).map_err(|e| format!("I5: second open failed: {e}"))?;
    let rep = j.recovery_report();
    if !rep.is_clean() {
        return Err(format!("I5: second open is not clean: {:?}", rep.problems));
    }
    let again = read_all(&j).map_err(|e| format!("I5: reading after the second open: {e}"))?;
    if again != records {
        return Err(format!(
            "I5: second open reads {} records (last {:?}), the first read {} (last {:?})",
            again.len(),
            again.last().map(|r| r.lsn),
            records.len(),
            records.last().map(|r| r.lsn)
        ));
    }
    Ok(j)
}

/// Reopens in Strict mode after a crash and checks I1-I5 against the model (which is updated).
/// Returns the journal of the second (idempotence) open.
pub fn recover_and_check(model: &mut Model, opts: &Options, page_cache_kept: bool) -> Result<Journal, String> {
    let o = Options { recovery: RecoveryMode::Strict, ..opts.clone() };
    let j = Journal::open(dir(), o).map_err(|e| format!("I4: Strict open after a crash failed: {e}"))?;
    let records = model.check_reopened(&j, page_cache_kept)?;
    drop(j);
    reopen_is_idempotent(opts, &records)
}

/// A value of the `name` environment variable, or `default`.
pub fn env_knob(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Runs `f` on `n` worker threads over the indices `0..count`, collecting the results in order.
pub fn par_map<T: Send>(count: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 8);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut out: Vec<(usize, T)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= count {
                            break mine;
                        }
                        mine.push((i, f(i)));
                    }
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("worker panicked")).collect()
    });
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, t)| t).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_describe_themselves() {
        for (id, len) in [(1, 0), (2, 1), (77, 4096), (u64::MAX, 9)] {
            let p = payload(id, len);
            assert_eq!(p.len(), len + PAYLOAD_OVERHEAD);
            assert_eq!(payload_id(&p), Some(id));
            for i in 0..p.len() {
                let mut d = p.clone();
                d[i] ^= 1;
                assert_eq!(payload_id(&d), None, "flip at {i}");
            }
            assert_eq!(payload_id(&p[..p.len() - 1]), None);
        }
        assert_eq!(payload_id(&[0; 40]), None);
    }

    fn rec(lsn: Lsn, p: &[u8]) -> Record {
        Record { lsn, payload: p.to_vec(), segment: 0, offset: 0 }
    }

    #[test]
    fn model_catches_loss_gaps_and_garbage() {
        let mut m = Model::new();
        let a: Vec<_> = (0..4).map(|_| m.next_payload(3)).collect();
        m.acked(1, &a[..2], Durability::Sync).unwrap();
        m.acked(3, &a[2..3], Durability::Buffered).unwrap();
        m.failed(&a[3..4]);
        let all: Vec<_> = a.iter().enumerate().map(|(i, p)| rec(i as Lsn + 1, p)).collect();
        assert!(m.check_records(&all, false, &[]).is_ok());
        assert!(m.check_records(&all[..2], false, &[]).is_ok(), "unsynced may go on a power cut");
        assert!(m.check_records(&all[..2], true, &[]).unwrap_err().starts_with("I1"));
        assert!(m.check_records(&all[..1], false, &[]).unwrap_err().starts_with("I1"));
        let gap = [all[0].clone(), all[2].clone()];
        assert!(m.check_records(&gap, false, &[]).unwrap_err().starts_with("I3"));
        assert!(m.check_records(&gap, false, &[(2, 2)]).is_ok());
        let mut bad = all.clone();
        bad[1].payload[5] ^= 1;
        assert!(m.check_records(&bad, false, &[]).unwrap_err().starts_with("I2"));
        let swapped = [rec(1, &a[1]), rec(2, &a[0])];
        assert!(m.check_records(&swapped, false, &[]).unwrap_err().starts_with("I2"));
        let extra = [rec(5, &m.clone().next_payload(1))];
        assert!(m.check_records(&extra, false, &[]).is_err());
        m.fold(3, &[]).unwrap();
        assert_eq!(m.next_lsn(), 4);
        assert!(m.fold(1, &[]).is_err(), "definitive records cannot vanish");
    }
}
