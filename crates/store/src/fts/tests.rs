//! The parser, the renderer and the evaluator checked against SQLite's FTS5 itself (the SQLite
//! rusqlite bundles, on an in-memory table with the index's columns and tokenizer), and Hermes'
//! query cleaning against outputs of Hermes' own code.

use proptest::prelude::*;
use rusqlite::Connection;

use super::*;

/// An in-memory FTS5 table configured like the index's `messages_fts`.
fn table(docs: &[(Option<&str>, Option<&str>)]) -> Connection {
    let conn = Connection::open_in_memory().unwrap();
    conn.execute_batch("CREATE VIRTUAL TABLE t USING fts5(body, tool_name, tokenize = 'trigram', detail = full);")
        .unwrap();
    for (i, (b, t)) in docs.iter().enumerate() {
        conn.execute("INSERT INTO t (rowid, body, tool_name) VALUES (?1, ?2, ?3)", rusqlite::params![i as i64, b, t])
            .unwrap();
    }
    conn
}

/// SQLite's answer: the matching rows, or its error message.
fn sqlite(conn: &Connection, query: &str) -> Result<Vec<usize>, String> {
    let mut st = conn.prepare_cached("SELECT rowid FROM t WHERE t MATCH ?1 ORDER BY rowid").unwrap();
    let rows = st.query_map([query], |r| r.get::<_, i64>(0)).and_then(|rows| rows.collect::<Result<Vec<_>, _>>());
    match rows {
        Ok(v) => Ok(v.into_iter().map(|i| i as usize).collect()),
        Err(rusqlite::Error::SqliteFailure(_, Some(m))) => Err(m),
        Err(e) => Err(e.to_string()),
    }
}

/// Ours: the rows the evaluator matches, or the parser's error message.
fn ours(docs: &[(Option<&str>, Option<&str>)], query: &str) -> Result<Vec<usize>, String> {
    let q = FtsQuery::parse(query).map_err(|e| e.to_string())?;
    Ok(docs.iter().enumerate().filter(|(_, (b, t))| q.matches(&[*b, *t])).map(|(i, _)| i).collect())
}

/// Checks one query on documents: the same error as SQLite, or the same rows from the
/// evaluator, from SQLite on the query and from SQLite on its rendering; and the rendering
/// reads back as the same tree.
fn check(conn: &Connection, docs: &[(Option<&str>, Option<&str>)], query: &str) {
    let want = sqlite(conn, query);
    let got = ours(docs, query);
    assert_eq!(got, want, "query {query:?}");
    if let Ok(q) = FtsQuery::parse(query) {
        let text = q.to_string();
        assert_eq!(sqlite(conn, &text), want, "rendering {text:?} of {query:?}");
        assert_eq!(FtsQuery::parse(&text).as_ref(), Ok(&q), "rendering {text:?} of {query:?}");
    }
}

const DOCS: &[(Option<&str>, Option<&str>)] = &[
    (Some("hello world"), Some("search")),
    (Some("ab cd"), None),
    (Some("Hello There"), Some("x")),
    (Some("help me"), Some("hello")),
    (Some("say hello world, then HELLO again"), Some("web_search")),
    (None, Some("hello_tool")),
    (Some("東京のホテルを検索してください"), None),
    (Some("Straße STRASSE İstanbul ΣΊΣΥΦΟΣ"), Some("ſtop")),
    (Some("a\u{0}bc \u{FFFF}x"), Some("")),
    (Some("the quick brown fox jumps over the lazy dog"), Some("fox")),
];

#[test]
fn fts_queries_agree_with_sqlite() {
    let conn = table(DOCS);
    for q in [
        // Phrases, strings, case.
        "hello",
        "HELLO",
        "hel",
        "he",
        "ab",
        "\"b c\"",
        "\"hello world\"",
        "hello world",
        "world hello",
        "\"o w\"",
        "ell*",
        "he*",
        "ab*",
        "\"\"",
        "\"\"\"\"",
        "東京",
        "東京の",
        "検索して",
        "straße",
        "STRASSE",
        "σίσυφος",
        "stop",
        "istanbul",
        "\u{FFFD}x",
        "abc",
        "a\u{0}bc",
        "xyz",
        // Operators: capitals only, NOT > AND > OR, side by side tighter than all.
        "hello AND world",
        "hello and world",
        "hello OR fox",
        "hello or fox",
        "hello NOT world",
        "hello NOT world there",
        "hel NOT wor AND the",
        "hello OR fox AND dog",
        "(hello OR fox) AND dog",
        "hello NOT ab",
        "ab NOT hello",
        "ab OR hello",
        "hello AND ab",
        "ab AND hello",
        "hello ab",
        "ab hello",
        "ab cd",
        "NOT hello",
        "hello NOT",
        "hello OR",
        "AND",
        "hello AND AND world",
        // Prefixes, +, ^.
        "hel* + lo",
        "\"hel\" + \"llo\"",
        "\"hel\" + \"ell\"",
        "^hel",
        "^ell",
        "^hello",
        "^ab",
        "^\"say hello\"",
        "hel + lo*",
        "+hello",
        "hello +",
        "*hello",
        "hello**",
        "hello *",
        // NEAR.
        "NEAR(hel wor)",
        "NEAR(hel wor, 5)",
        "NEAR(hel wor, 4)",
        "NEAR(wor hel, 5)",
        "NEAR(hello world, 1)",
        "NEAR(hello world, 0)",
        "NEAR(\"hello\" \"o w\", 0)",
        "NEAR(\"hello\" \"o w\", 1)",
        "NEAR(ab hello)",
        "NEAR(ab cd)",
        "hello NEAR(x y)",
        "near(hel wor)",
        "NEAR(hel wor, x)",
        "NEAR(hel wor, 4294967295)",
        "NEAR(hel wor, 4294967296)",
        "NEAR(hel wor, 00005)",
        "NEAR()",
        "NEAR(hel, )",
        "NEAR(hel wor, 5 6)",
        "NEAR(hel wor,\"5\")",
        "xyz(a b)",
        "xyz(a b, x)",
        "NEAR(a b) c",
        "NEAR(hello)",
        "NEAR(hello, 0)",
        "NEAR(fox dog, 5)",
        "NEAR(fox dog, 4)",
        "NEAR(quick lazy fox, 3)",
        "NEAR(hel + lo wor)",
        // Column filters.
        "tool_name:hello",
        "body:hello",
        "Body:hello",
        "\"body\":hello",
        "foo:hello",
        "-tool_name:hello",
        "-body:hello",
        "{body tool_name}:hello",
        "-{body tool_name}:hello",
        "{tool_name}:(hello OR fox)",
        "body:(tool_name:hello)",
        "body:(tool_name:hello) OR world",
        "body:(hello OR fox) world",
        "tool_name:^hel",
        "tool_name:NEAR(hel sea)",
        "-foo bar",
        "{foo (",
        "{foo bar",
        "foo:",
        "-foo",
        "{body}",
        "{}:hello",
        "body:",
        "body:(",
        "hello body:(world)",
        "body:hello world",
        "{body body}:hello",
        "-{tool_name body}:x",
        // Parentheses and errors.
        "(hello)",
        "((hello))",
        "(hello",
        "hello)",
        "a (b)",
        "hello (world)",
        "(hello) world",
        "()",
        "",
        "   ",
        "a;b",
        "\"abc",
        "hello \"world",
        "what's up?",
        "C++",
        "chat-send",
        "P2.2",
        "a.b",
        "%",
        "#tag",
        "x\u{b}y",
        "\u{3000}",
        "hello\u{0})",
    ] {
        check(&conn, DOCS, q);
    }
}
