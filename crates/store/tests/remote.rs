//! The remote index seam without a database: a fake target that can be "down", to check that
//! the shipper never blocks appends or the local index, retries with back-off, ships every entry
//! exactly once, and that retention keeps segments the remote index does not have yet.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tidelog::{ApplyStats, Entry, IndexTarget, Message, RemoteTarget, Retention, Store, StoreOptions, TargetError};

#[derive(Debug, Default)]
struct Db {
    down: bool,
    positions: BTreeMap<(String, String), u64>,
    ids: Vec<String>,
    connects: u64,
}

#[derive(Debug, Clone, Default)]
struct Fake(Arc<Mutex<Db>>);

struct Conn(Arc<Mutex<Db>>);

fn down() -> TargetError {
    TargetError::Unreachable { target: "fake".into(), source: "connection refused".into() }
}

impl IndexTarget for Conn {
    fn applied_positions(&mut self, store: &str) -> Result<BTreeMap<String, u64>, TargetError> {
        let db = self.0.lock();
        if db.down {
            return Err(down());
        }
        Ok(db.positions.iter().filter(|((s, _), _)| s == store).map(|((_, l), p)| (l.clone(), *p)).collect())
    }

    fn apply_batch(&mut self, store: &str, entries: &[(String, u64, Entry)]) -> Result<ApplyStats, TargetError> {
        let mut db = self.0.lock();
        if db.down {
            return Err(down());
        }
        let mut stats = ApplyStats::default();
        for (lane, lsn, e) in entries {
            let key = (store.to_string(), lane.clone());
            if db.positions.get(&key).is_some_and(|p| lsn <= p) {
                stats.skipped += 1;
                continue;
            }
            if let Entry::Message(m) = e {
                db.ids.push(m.id.clone());
                stats.messages += 1;
            }
            db.positions.insert(key, *lsn);
        }
        Ok(stats)
    }
}

impl RemoteTarget for Fake {
    fn describe(&self) -> String {
        "fake://db".into()
    }

    fn connect(&self) -> Result<Box<dyn IndexTarget>, TargetError> {
        let mut db = self.0.lock();
        db.connects += 1;
        if db.down {
            return Err(down());
        }
        Ok(Box::new(Conn(self.0.clone())))
    }
}

fn msg(i: usize, pad: usize) -> Message {
    Message {
        session_id: "s".into(),
        role: "user".into(),
        content: Some(format!("message {i} {}", noise(i, pad))),
        ..Message::default()
    }
}

/// `n` characters that barely compress (journal entries are compressed), so that `pad` fills
/// segments as it says.
fn noise(seed: usize, n: usize) -> String {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64 ^ seed as u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'!' + (x % 94) as u8)
        })
        .collect()
}

fn wait(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn outage_never_blocks_appends_and_everything_ships_once() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::default();
    fake.0.lock().down = true;
    let opts = StoreOptions {
        poll_interval: Duration::from_millis(10),
        segment_size: 64 << 10,
        retention: Retention::AfterIndexed,
        remote: Some(Arc::new(fake.clone())),
        ..StoreOptions::default()
    };
    let store = Store::open(dir.path(), opts).unwrap();
    let mut ids = Vec::new();
    let started = Instant::now();
    for i in 0..300 {
        ids.push(store.append(msg(i, 1000)).unwrap().id);
    }
    let appending = started.elapsed();
    assert!(store.wait_indexed(Duration::from_secs(20)), "the local index stalled during the outage");
    wait("a reported outage", || store.status().remote.is_some_and(|r| r.last_error.is_some()));
    let st = store.status();
    let r = st.remote.clone().unwrap();
    assert!(!r.connected && r.shipping_here && r.retries > 0, "{r:?}");
    assert!(st.problems.iter().any(|p| p.contains("fake://db")), "{:?}", st.problems);
    // Retention waits for the remote index: the first record is still in the lane.
    store.append(msg(300, 10)).map(|a| ids.push(a.id)).unwrap();
    assert!(store.wait_indexed(Duration::from_secs(20)));
    assert_eq!(store.journal().first_lsn(), 1, "retention removed segments the remote index lacks");
    // Back-off: a handful of attempts, not one per append or per poll.
    let attempts = fake.0.lock().connects;
    assert!(attempts < 40, "{attempts} connection attempts in {appending:?}");

    fake.0.lock().down = false;
    wait("the shipper to catch up", || store.status().remote.is_some_and(|r| r.lag == Some(0) && r.connected));
    let mut got = fake.0.lock().ids.clone();
    assert_eq!(got.len(), ids.len(), "duplicates or gaps");
    got.sort();
    ids.sort();
    assert_eq!(got, ids);
    assert!(store.status().problems.is_empty(), "{:?}", store.status().problems);
    // Now both targets have everything: the next batch lets retention remove sealed segments.
    store.append(msg(301, 10)).unwrap();
    wait("retention", || store.journal().first_lsn() > 1);

    // sync_remote from the same process ships nothing more and agrees on the lag.
    let lag = store.sync_remote(&fake).unwrap();
    assert_eq!((lag.shipped, lag.lag()), (0, 0));
    assert_eq!(lag.store_id, store.store_id().unwrap());
    store.close().unwrap();
}

#[test]
fn store_id_is_stable() {
    let dir = tempfile::tempdir().unwrap();
    let a = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let id = a.store_id().unwrap();
    assert_eq!(id.len(), 32);
    let b = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert_eq!(b.store_id().unwrap(), id, "a second process sees the same id");
    b.close().unwrap();
    a.close().unwrap();
    let c = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert_eq!(c.store_id().unwrap(), id);
    c.close().unwrap();
}

#[test]
fn a_shipper_panic_is_reported_and_the_shipper_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::default();
    let hooks = tidelog::TestHooks::default();
    hooks.set_timings(
        Duration::from_millis(10),
        Duration::from_millis(80),
        Duration::from_millis(500),
        Duration::from_millis(300),
    );
    hooks.panic_shipper(2);
    let opts = StoreOptions {
        poll_interval: Duration::from_millis(10),
        remote: Some(Arc::new(fake.clone())),
        test_hooks: hooks,
        ..StoreOptions::default()
    };
    let store = Store::open(dir.path(), opts).unwrap();
    let ids: Vec<String> = (0..20).map(|i| store.append(msg(i, 10)).unwrap().id).collect();
    wait("every entry shipped", || fake.0.lock().ids.len() == ids.len());
    let st = store.status();
    let r = st.remote.clone().unwrap();
    assert_eq!(r.health.panics, 2, "{r:?}");
    assert!(r.health.last_panic.as_deref().is_some_and(|p| p.contains("injected shipper panic")));
    // Degraded for the healthy period after the last panic, then healthy.
    if r.health.degraded.is_some() {
        assert!(st.problems.iter().any(|p| p.contains("fake://db shipper degraded")), "{:?}", st.problems);
    }
    wait("the healthy period", || store.status().problems.is_empty());
    let report = store.close().unwrap();
    assert_eq!(report.shipper.map(|s| s.panics), Some(2));
    assert_eq!(report.compactor.map(|c| c.panics), Some(0));
    let mut got = fake.0.lock().ids.clone();
    got.sort();
    let mut want = ids;
    want.sort();
    assert_eq!(got, want, "shipped exactly once");
}
