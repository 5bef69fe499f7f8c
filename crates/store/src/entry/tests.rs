#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::path::PathBuf;

use super::*;
use crate::model::{CounterDelta, MessageRef, SessionRef};
use crate::wire::{Record, Writer};

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/entries")
}

fn full_message() -> Message {
    Message {
        id: "m-1".into(),
        session_id: "telegram:42".into(),
        role: "assistant".into(),
        content: Some("héllo 世界 🎉 invoice".into()),
        tool_call_id: Some("call_1".into()),
        tool_name: Some("search".into()),
        tool_calls: Some(r#"[{"id":"call_1","type":"function"}]"#.into()),
        reasoning: Some("thinking".into()),
        timestamp: 1_780_000_000.125,
        token_count: Some(-3),
        finish_reason: Some("stop".into()),
        source: Some("telegram".into()),
        extra: Some(r#"{"k":1}"#.into()),
        ..Message::default()
    }
}

fn full_patch() -> SessionPatch {
    SessionPatch {
        id: "telegram:42".into(),
        source: Some("telegram".into()),
        model: Some("m".into()),
        title: Some("Boat invoice".into()),
        user_id: Some("u".into()),
        chat_id: Some("c".into()),
        parent_session_id: Some("p".into()),
        started_at: Some(1_780_000_000.0),
        ended_at: Some(1_780_000_100.5),
        end_reason: Some("user_exit".into()),
        extra: Some(r#"{"system_prompt":"be brief"}"#.into()),
        ..SessionPatch::default()
    }
}

/// One entry of every kind with every field set, as written today (tag 2).
fn every_kind() -> Vec<(&'static str, Entry)> {
    let m = Message {
        num: 1_900_000_000_000_000_001,
        platform_message_id: Some("tg-77".into()),
        api_content: Some("api text".into()),
        ..full_message()
    };
    vec![
        ("v2-message.bin", Entry::Message(m.clone())),
        (
            "v2-message-bare.bin",
            Entry::Message(Message {
                id: "m-2".into(),
                session_id: "s".into(),
                role: "user".into(),
                ..Message::default()
            }),
        ),
        (
            "v2-session.bin",
            Entry::Session(SessionPatch { reopen: true, clear_title: true, fill_only: true, ..full_patch() }),
        ),
        (
            "v2-update.bin",
            Entry::Update(MessageUpdate {
                num: 1_900_000_000_000_000_001,
                session_id: "telegram:42".into(),
                content: Some("edited".into()),
                api_content: Some("api".into()),
                platform_message_id: Some("tg-78".into()),
                tool_calls: Some("[]".into()),
                finish_reason: Some("stop".into()),
                token_count: Some(12),
                extra: Some(r#"{"reactions":["👍"]}"#.into()),
            }),
        ),
        (
            "v2-rewrite.bin",
            Entry::Rewrite(Rewrite {
                session_id: "telegram:42".into(),
                op: 1_900_000_000_000_000_002,
                mode: RewriteMode::Compact.code(),
                active_only: true,
                messages: vec![m.clone(), Message { num: 1_900_000_000_000_000_004, ..m.clone() }],
                kept: Vec::new(),
            }),
        ),
        (
            // Field 6 (`kept`), added with the one fold rule (issue 21).
            "v2-rewrite-kept.bin",
            Entry::Rewrite(Rewrite {
                session_id: "telegram:42".into(),
                op: 1_900_000_000_000_000_012,
                mode: RewriteMode::Delete.code(),
                active_only: false,
                messages: vec![Message { num: 1_900_000_000_000_000_013, ..m.clone() }],
                kept: vec![MessageRef { num: 1_900_000_000_000_000_004 }],
            }),
        ),
        (
            "v2-delete.bin",
            Entry::Delete(DeleteSessions {
                op: 1_900_000_000_000_000_005,
                sessions: vec![SessionRef { id: "telegram:42".into() }, SessionRef { id: "child".into() }],
            }),
        ),
        (
            "v2-counters.bin",
            Entry::Counters(CounterDelta {
                session_id: "telegram:42".into(),
                input_tokens: 100,
                output_tokens: 20,
                cache_read_tokens: 3,
                cache_write_tokens: 4,
                reasoning_tokens: 5,
                api_call_count: 1,
                estimated_cost_usd: 0.0125,
                actual_cost_usd: -0.5,
                op: None,
            }),
        ),
        (
            "v2-counters-positioned.bin",
            Entry::Counters(CounterDelta {
                session_id: "telegram:42".into(),
                input_tokens: 7,
                op: Some(1234),
                ..CounterDelta::default()
            }),
        ),
        (
            "v2-session-positioned.bin",
            Entry::Session(SessionPatch {
                id: "telegram:42".into(),
                title: Some("t".into()),
                op: Some(99),
                ..SessionPatch::default()
            }),
        ),
        ("v2-meta.bin", Entry::Meta(MetaSet { key: "k".into(), value: Some("v".into()) })),
        ("v2-meta-removed.bin", Entry::Meta(MetaSet { key: "k".into(), value: None })),
        ("v2-erased.bin", Entry::Erased(crate::model::Erased { kind: 1 })),
    ]
}

#[test]
fn every_kind_round_trips() {
    for (name, e) in every_kind() {
        assert_eq!(decode(&encode(&e)).unwrap(), e, "{name}");
    }
}

/// Golden files: the bytes of every entry kind as each release wrote them, decoded forever.
#[test]
fn padded_entries_have_the_exact_length_and_decode_as_without_padding() {
    for (name, e) in every_kind() {
        let plain = super::encode(&e);
        // A gap of 1 or 2 bytes is smaller than a padding field (only `Erased` entries, below,
        // are ever padded by less than a nested message's size).
        for len in std::iter::once(plain.len()).chain(plain.len() + 3..plain.len() + 300) {
            let padded = super::encode_padded(&e, len).unwrap_or_else(|| panic!("{name}: no padding to {len}"));
            assert_eq!(padded.len(), len, "{name}");
            assert_eq!(super::decode(&padded).unwrap(), e, "{name} padded to {len}");
        }
        if !matches!(e, Entry::Erased(_)) {
            // Shorter than its tag-2 encoding: only compressed, if that fits.
            if let Some(p) = super::encode_padded(&e, plain.len() - 1) {
                assert_eq!(p[0], super::CODEC_ZSTD_V3, "{name}");
                assert_eq!(super::decode(&p).unwrap(), e, "{name}");
            }
        }
    }
    // An erased record of any length from 2 bytes up.
    for len in 2..400 {
        let e = Entry::Erased(crate::model::Erased { kind: 1 });
        let padded = super::encode_padded(&e, len).unwrap_or_else(|| panic!("no erased entry of {len} bytes"));
        assert_eq!(padded.len(), len);
        assert!(matches!(super::decode(&padded).unwrap(), Entry::Erased(_)), "{len}");
    }
}

#[test]
fn golden_files_decode() {
    let dir = golden_dir();
    let read = |n: &str| std::fs::read(dir.join(n)).unwrap_or_else(|e| panic!("{n}: {e}"));
    // Tag 1, written by the first release (bincode).
    assert_eq!(decode(&read("v1-message.bin")).unwrap(), Entry::Message(full_message()));
    assert_eq!(
        decode(&read("v1-message-bare.bin")).unwrap(),
        Entry::Message(Message {
            id: "m-2".into(),
            session_id: "s".into(),
            role: "user".into(),
            timestamp: 1.5,
            ..Message::default()
        })
    );
    assert_eq!(decode(&read("v1-session.bin")).unwrap(), Entry::Session(full_patch()));
    assert_eq!(
        decode(&read("v1-session-bare.bin")).unwrap(),
        Entry::Session(SessionPatch { id: "s".into(), ..SessionPatch::default() })
    );
    // Tag 2: every kind.
    for (name, e) in every_kind() {
        let bytes = read(name);
        assert_eq!(decode(&bytes).unwrap(), e, "{name}");
        // The encoder still writes the same bytes (an encoding change needs new golden files,
        // never edited old ones).
        assert_eq!(encode(&e), bytes, "{name}: the encoding changed");
    }
}

/// Writes the tag-2 golden files. Run by hand after adding a kind or field:
/// `TIDELOG_WRITE_GOLDEN=1 cargo test -p tidelog --lib entry::tests::write_golden_files -- --ignored`.
#[test]
#[ignore = "writes tests/fixtures/entries; run by hand"]
fn write_golden_files() {
    assert!(std::env::var_os("TIDELOG_WRITE_GOLDEN").is_some(), "set TIDELOG_WRITE_GOLDEN=1");
    for (name, e) in every_kind() {
        let p = golden_dir().join(name);
        if !p.exists() {
            std::fs::write(p, encode(&e)).unwrap();
        }
    }
}

#[test]
fn legacy_messages_get_distinct_increasing_ids_below_new_ones() {
    let payload = std::fs::read(golden_dir().join("v1-message.bin")).unwrap();
    let ids: Vec<i64> = [(1, 1), (1, 2), (2, 1), (1023, (1 << 40) - 1)]
        .iter()
        .map(|&(lane, lsn)| match decode_record(lane, lsn, &payload).unwrap() {
            Entry::Message(m) => m.num,
            _ => unreachable!(),
        })
        .collect();
    assert!(ids[0] < ids[1] && ids[1] < ids[2] && ids[2] < ids[3]);
    assert!(ids[3] < 1 << 60, "legacy ids stay below the time-based ids");
}

#[test]
fn newer_entries_are_reported_never_skipped() {
    // Unknown kind.
    let mut p = vec![CODEC_FIELDS_V2];
    put_varint(&mut p, 99);
    assert!(matches!(decode(&p), Err(DecodeError::Newer(_))));
    // Unknown optional field: skipped (an added optional field never breaks an old reader).
    let base = encode(&Entry::Meta(MetaSet { key: "k".into(), value: None }));
    let mut w = Writer { buf: base.clone() };
    w.bytes(40, false, b"from the future");
    assert_eq!(decode(&w.buf).unwrap(), decode(&base).unwrap());
    // Unknown critical field: refused.
    let mut w = Writer { buf: base };
    w.varint(41, true, 1);
    assert!(matches!(decode(&w.buf), Err(DecodeError::Newer(_))));
    // Unknown rewrite mode.
    let r = Entry::Rewrite(Rewrite { session_id: "s".into(), op: 1, mode: 9, ..Rewrite::default() });
    assert!(matches!(decode(&encode(&r)), Err(DecodeError::Newer(_))));
    // Unknown codec.
    assert_eq!(decode(&[9, 1]), Err(DecodeError::UnknownCodec(9)));
    assert_eq!(decode(&[]), Err(DecodeError::Empty));
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for len in 0..400 {
        for tag in [CODEC_BINCODE_V1, CODEC_FIELDS_V2, super::CODEC_ZSTD_V3] {
            let mut p = vec![tag];
            p.extend((0..len).map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            }));
            let _ = decode(&p);
        }
    }
    // Flipping any byte of a valid payload never panics.
    for (_, e) in every_kind() {
        let good = encode(&e);
        for i in 0..good.len() {
            for bit in [1u8, 0x80] {
                let mut b = good.clone();
                b[i] ^= bit;
                let _ = decode(&b);
            }
        }
    }
    // A huge declared length must not allocate.
    let _ = decode(&[CODEC_BINCODE_V1, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
}

fn numbers_unique(fields: &[(&str, u32)]) {
    let mut seen = HashSet::new();
    for (name, n) in fields {
        assert!(*n > 0 && seen.insert(*n), "field number {n} ({name}) reused");
    }
}

#[test]
fn field_numbers_are_never_reused() {
    numbers_unique(Message::FIELDS);
    numbers_unique(SessionPatch::FIELDS);
    numbers_unique(MessageUpdate::FIELDS);
    numbers_unique(Rewrite::FIELDS);
    numbers_unique(DeleteSessions::FIELDS);
    numbers_unique(CounterDelta::FIELDS);
    numbers_unique(MetaSet::FIELDS);
    numbers_unique(crate::model::Erased::FIELDS);
    numbers_unique(MessageRef::FIELDS);
}

/// A message long enough to be compressed: a tool output of repeated log lines.
fn long_message() -> Message {
    let content: String = (0..400).map(|i| format!("{i:>5} | deploy gateway checkpoint fsync journal ok\n")).collect();
    Message { role: "tool".into(), content: Some(content), ..full_message() }
}

/// A message the appending thread compresses (between 512 bytes and 16 KiB encoded).
fn medium_message() -> Message {
    let content: String = (0..150).map(|i| format!("{i:>5} | deploy gateway checkpoint ok\n")).collect();
    Message { role: "tool".into(), content: Some(content), ..full_message() }
}

#[test]
fn long_entries_are_compressed_and_decode_the_same() {
    use super::{CODEC_ZSTD_V3, encode_for_journal};
    let long = Entry::Message(medium_message());
    let payload = encode_for_journal(&long, usize::MAX).unwrap();
    assert_eq!(payload[0], CODEC_ZSTD_V3);
    assert!(payload.len() * 4 < encode(&long).len(), "{} of {} bytes", payload.len(), encode(&long).len());
    assert_eq!(decode(&payload).unwrap(), long);
    // Longer than 16 KiB: written as it is (compressed in place later, below).
    let big = Entry::Message(long_message());
    assert_eq!(encode_for_journal(&big, usize::MAX).unwrap(), encode(&big));
    // Short entries, and long ones that do not compress, stay tag 2.
    for (name, e) in every_kind() {
        if encode(&e).len() < super::compress::MIN_BYTES {
            assert_eq!(encode_for_journal(&e, usize::MAX).unwrap(), encode(&e), "{name}");
        }
    }
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let noise: String = (0..4000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'!' + (x % 90) as u8)
        })
        .collect();
    // Random text: compressed only if that saves an eighth (zstd's entropy coding usually does).
    let noisy = Entry::Message(Message { content: Some(noise), ..full_message() });
    let p = encode_for_journal(&noisy, usize::MAX).unwrap();
    let raw = encode(&noisy).len();
    assert!(p[0] == CODEC_FIELDS_V2 || p.len() <= raw - raw / 8, "{} of {raw}", p.len());
    assert_eq!(decode(&p).unwrap(), noisy);
}

#[test]
fn a_long_record_is_compressed_in_place_to_its_own_length() {
    let big = Entry::Message(long_message());
    let raw = encode(&big);
    let c = super::compressed_in_place(&raw).expect("worth it");
    assert_eq!(c.len(), raw.len());
    assert_eq!(c[0], super::CODEC_ZSTD_V3);
    assert_eq!(decode(&c).unwrap(), big);
    // Only once, only for tag-2 entries above 16 KiB that save a block.
    assert!(super::compressed_in_place(&c).is_none());
    assert!(super::compressed_in_place(&encode(&Entry::Message(medium_message()))).is_none());
}

#[test]
fn a_compressed_entry_is_padded_after_its_frame() {
    let long = Entry::Message(long_message());
    let compressed = super::compress::compress(&encode(&long)).unwrap();
    // Too short for the tag-2 encoding: the padded entry is compressed, zeros after the frame.
    for len in compressed.len()..compressed.len() + 40 {
        let padded = super::encode_padded(&long, len).unwrap();
        assert_eq!(padded.len(), len);
        assert_eq!(padded[0], super::CODEC_ZSTD_V3);
        assert_eq!(decode(&padded).unwrap(), long, "padded to {len}");
    }
    assert!(super::encode_padded(&long, compressed.len() - 1).is_none());
    // Anything but zeros after the frame is refused.
    let mut bad = super::encode_padded(&long, compressed.len() + 8).unwrap();
    *bad.last_mut().unwrap() = 1;
    assert!(matches!(decode(&bad), Err(DecodeError::Invalid(_))));
}

#[test]
fn damaged_or_hostile_compressed_entries_are_errors() {
    use super::CODEC_ZSTD_V3;
    let long = Entry::Message(long_message());
    let good = super::compress::compress(&encode(&long)).unwrap();
    // Every flipped bit is an error or (in the frame's slack) the same entry, never a panic.
    for i in 0..good.len() {
        for bit in [1u8, 0x10, 0x80] {
            let mut b = good.clone();
            b[i] ^= bit;
            if let Ok(e) = decode(&b) {
                assert!(matches!(e, Entry::Message(_)));
            }
        }
    }
    // A tiny frame that claims a huge expansion: refused without allocating it.
    let tiny = super::compress::compress(&encode(&Entry::Meta(MetaSet { key: "k".into(), value: None }))).unwrap();
    for claim in [1u64 << 29, 1 << 30, (1 << 30) + 1, u64::MAX] {
        let mut p = vec![CODEC_ZSTD_V3];
        put_varint(&mut p, claim);
        let frame = &tiny[3..];
        put_varint(&mut p, frame.len() as u64);
        p.extend_from_slice(frame);
        assert!(matches!(decode(&p), Err(DecodeError::Invalid(_))), "claim {claim}");
    }
    // A frame length beyond the payload, and a compressed entry inside a compressed entry.
    let mut p = vec![CODEC_ZSTD_V3];
    put_varint(&mut p, 10);
    put_varint(&mut p, 1000);
    p.extend_from_slice(&[0x28, 0xb5, 0x2f, 0xfd]);
    assert!(matches!(decode(&p), Err(DecodeError::Invalid(_))));
    let nested = super::compress::compress(&good).unwrap();
    assert!(matches!(decode(&nested), Err(DecodeError::Invalid(_))));
}

/// Tag 3 as this version writes it: decoded by every later version (the bytes a future zstd
/// writes may differ, so only decoding is checked).
#[test]
fn compressed_golden_file_decodes() {
    let p = golden_dir().join("v3-message.bin");
    if !p.exists() && std::env::var_os("TIDELOG_WRITE_GOLDEN").is_some() {
        std::fs::write(&p, super::encode_for_journal(&Entry::Message(long_message()), usize::MAX).unwrap()).unwrap();
    }
    let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert_eq!(bytes[0], super::CODEC_ZSTD_V3);
    assert_eq!(decode(&bytes).unwrap(), Entry::Message(long_message()));
}
