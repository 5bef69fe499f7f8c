//! Deterministic messages of a chosen size, shaped like a gateway's (research `hermes.md` §3).

use tidelog::{Entry, Message};

/// A small xorshift generator: the same messages on every run, no dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const WORDS: &[&str] = &[
    "the",
    "invoice",
    "boat",
    "deploy",
    "error",
    "kubernetes",
    "timeout",
    "retry",
    "function",
    "return",
    "config",
    "session",
    "gateway",
    "telegram",
    "message",
    "search",
    "index",
    "journal",
    "compile",
    "warning",
    "database",
    "schema",
    "migration",
    "request",
    "response",
    "token",
    "model",
    "assistant",
    "user",
    "tool",
    "result",
    "output",
    "stdout",
    "stderr",
    "exit",
    "status",
    "file",
    "path",
    "directory",
    "permission",
    "denied",
    "network",
    "latency",
    "throughput",
    "benchmark",
    "memory",
    "allocation",
    "thread",
    "mutex",
    "lock",
    "commit",
    "branch",
    "merge",
    "rebase",
    "conflict",
    "pull",
    "push",
    "remote",
    "origin",
    "main",
    "weather",
    "tomorrow",
    "meeting",
    "calendar",
    "reminder",
    "dinner",
    "flight",
    "hotel",
    "booking",
    "price",
    "東京",
    "会議",
    "検索",
    "données",
    "résumé",
    "naïve",
    "straße",
    "mañana",
    "привет",
    "données",
];

/// Text of exactly `len` bytes (cut at a character boundary, padded with spaces).
pub fn text(rng: &mut Rng, len: usize) -> String {
    let mut s = String::with_capacity(len + 16);
    while s.len() < len {
        if !s.is_empty() {
            s.push(if rng.below(12) == 0 { '\n' } else { ' ' });
        }
        let w = WORDS[rng.below(WORDS.len())];
        if rng.below(9) == 0 {
            s.push_str(&format!("{w}_{}", rng.below(100_000)));
        } else {
            s.push_str(w);
        }
    }
    let mut cut = len.min(s.len());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    while s.len() < len {
        s.push(' ');
    }
    s
}

/// `count` distinct messages whose content is `size` bytes, spread over a few sessions, with
/// the roles of a chat: user, assistant, tool. Ids are left empty (the store assigns them).
pub fn messages(seed: u64, count: usize, size: usize) -> Vec<Message> {
    let mut rng = Rng::new(seed ^ size as u64);
    (0..count)
        .map(|i| {
            let role = ["user", "assistant", "tool"][i % 3];
            Message {
                session_id: format!("20260526_0939{:02}_{:08x}", i % 60, (seed as usize + i % 16) as u32),
                role: role.into(),
                content: Some(text(&mut rng, size)),
                tool_name: (role == "tool").then(|| "terminal".into()),
                source: Some("telegram".into()),
                timestamp: 1_780_000_000.0 + i as f64 * 0.001,
                ..Message::default()
            }
        })
        .collect()
}

/// The journal payloads of `msgs` (ids assigned from `seed`), as `Store::append` would write them.
pub fn encoded(seed: u64, msgs: &[Message]) -> Vec<Vec<u8>> {
    msgs.iter()
        .enumerate()
        .map(|(i, m)| {
            let mut m = m.clone();
            m.id = format!("bench-{seed:x}-{i:08}");
            // Compressed as the store writes it (no limit: plain data always encodes).
            let e = Entry::Message(m);
            tidelog::encode_journal_entry(&e, usize::MAX).unwrap_or_else(|_| tidelog::encode_entry(&e))
        })
        .collect()
}

/// Human name of a payload size: 200 B, 2 KB, 64 KB.
pub fn size_name(size: usize) -> String {
    if size >= 1024 && size.is_multiple_of(1024) {
        format!("{} KB", size / 1024)
    } else if size >= 1000 && size.is_multiple_of(1000) {
        format!("{} KB", size / 1000)
    } else {
        format!("{size} B")
    }
}
