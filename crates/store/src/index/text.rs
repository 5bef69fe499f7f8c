//! What search sees of a message, and the text helpers of queries and snippets.

use std::borrow::Cow;

use super::IndexOptions;
use crate::model::Message;

/// Multimodal content starts with this marker, followed by a JSON array of parts.
const MULTIMODAL_PREFIX: &str = "\u{0}json:";

/// Context around a match in snippets, in characters (FTS5: tokens, one per character).
pub(crate) const SNIPPET_CONTEXT: usize = 64;

/// How a message body is indexed.
pub(super) enum Indexed {
    /// The whole `content`.
    Whole,
    /// The first n bytes of `content` (a character boundary).
    Prefix(usize),
    /// Text extracted from multimodal content.
    Extracted(String),
}

pub(super) fn classify(m: &Message, limit: usize) -> Indexed {
    let Some(content) = m.content.as_deref() else {
        return Indexed::Whole;
    };
    let is_tool = m.role == "tool";
    if let Some(text) = content.strip_prefix(MULTIMODAL_PREFIX).and_then(multimodal_text) {
        let cut = if is_tool { char_floor(&text, limit) } else { text.len() };
        return Indexed::Extracted(text.get(..cut).unwrap_or_default().to_owned());
    }
    if is_tool && content.len() > limit { Indexed::Prefix(char_floor(content, limit)) } else { Indexed::Whole }
}

/// The text parts of a multimodal JSON array, joined by newlines; `None` if it does not parse.
pub(super) fn multimodal_text(json: &str) -> Option<String> {
    let parts: Vec<serde_json::Value> = serde_json::from_str(json).ok()?;
    let texts: Vec<&str> = parts
        .iter()
        .filter(|p| p.get("type").and_then(|t| t.as_str()) == Some("text"))
        .filter_map(|p| p.get("text").and_then(|t| t.as_str()))
        .collect();
    Some(texts.join("\n"))
}

/// The largest character boundary of `s` at or below `n`.
pub(super) fn char_floor(s: &str, n: usize) -> usize {
    let mut i = n.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The text of a message that search sees: the body with multimodal parts reduced to their
/// text and tool output cut to `opts.tool_output_index_bytes`. The store uses it with
/// [`match_snippet`] to search messages not yet indexed exactly as the index would.
pub fn indexed_text<'a>(m: &'a Message, opts: &IndexOptions) -> Option<Cow<'a, str>> {
    let content = m.content.as_deref()?;
    Some(match classify(m, opts.tool_output_index_bytes) {
        Indexed::Whole => Cow::Borrowed(content),
        Indexed::Prefix(n) => Cow::Borrowed(content.get(..n).unwrap_or_default()),
        Indexed::Extracted(t) => Cow::Owned(t),
    })
}

/// The FTS5 expression for words: each one quoted as a string (`"` doubled), ANDed, so that
/// no FTS5 syntax in user text is ever interpreted.
pub(super) fn fts_match_expr(words: &[&str]) -> String {
    words.iter().map(|w| format!("\"{}\"", w.replace('"', "\"\""))).collect::<Vec<_>>().join(" ")
}

/// `%word%` with `%`, `_` and `\` escaped for `LIKE … ESCAPE '\'`.
pub(super) fn like_pattern(word: &str) -> String {
    let mut p = String::with_capacity(word.len() + 2);
    p.push('%');
    for c in word.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// The first `n` characters of `s`, with `…` if cut.
pub(crate) fn head(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", s.get(..i).unwrap_or_default()),
        None => s.to_owned(),
    }
}

/// Case-insensitive substring match with the same snippet format as [`Index::search`](crate::Index::search): the
/// query is split on whitespace and every word must occur in `text`; the snippet is about 64
/// characters around the first match, each match inside it wrapped in `[` `]`, cuts marked `…`.
/// Returns `None` if a word is missing or the query is empty. For messages not yet indexed.
pub fn match_snippet(text: &str, query: &str) -> Option<String> {
    let words: Vec<Vec<char>> =
        query.split_whitespace().map(|w| w.chars().flat_map(char::to_lowercase).collect()).collect();
    if words.is_empty() {
        return None;
    }
    // Fold case per character, remembering which original character each folded one came from.
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut folded = Vec::with_capacity(chars.len());
    let mut origin = Vec::with_capacity(chars.len());
    for (ci, &(_, c)) in chars.iter().enumerate() {
        for l in c.to_lowercase() {
            folded.push(l);
            origin.push(ci);
        }
    }
    // Every match as a range of original character indexes.
    let mut matches: Vec<(usize, usize)> = Vec::new();
    for w in &words {
        let found: Vec<(usize, usize)> = folded
            .windows(w.len())
            .enumerate()
            .filter(|(_, win)| win == w)
            .filter_map(|(i, _)| Some((*origin.get(i)?, *origin.get(i + w.len() - 1)? + 1)))
            .collect();
        if found.is_empty() {
            return None;
        }
        matches.extend(found);
    }
    mark_snippet(text, matches)
}

/// The snippet format of [`match_snippet`] around `matches` (ranges of character indexes of
/// `text`): about 64 characters around the first, each one inside wrapped in `[` `]`, cuts
/// marked `…`. `None` if there is no match.
pub(crate) fn mark_snippet(text: &str, mut matches: Vec<(usize, usize)>) -> Option<String> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    matches.sort_unstable();
    let &(first_start, first_end) = matches.first()?;
    let half = SNIPPET_CONTEXT / 2;
    let start = first_start.saturating_sub(half);
    let end = (first_end + half).min(chars.len());
    let byte = |ci: usize| chars.get(ci).map_or(text.len(), |&(b, _)| b);
    let mut out = String::new();
    if start > 0 {
        out.push('…');
    }
    let mut pos = start;
    for &(s, e) in &matches {
        if s < pos || e > end {
            continue; // overlaps a previous mark, or outside the window
        }
        out.push_str(text.get(byte(pos)..byte(s)).unwrap_or_default());
        out.push('[');
        out.push_str(text.get(byte(s)..byte(e)).unwrap_or_default());
        out.push(']');
        pos = e;
    }
    out.push_str(text.get(byte(pos)..byte(end)).unwrap_or_default());
    if end < chars.len() {
        out.push('…');
    }
    Some(out)
}

/// The words of a search the word index answers for the part of a long tool output the trigram
/// index does not hold: (words of 3+ characters, shorter words). Words queries: every word (the
/// short ones still filter on the trigram part, as everywhere). FTS5 queries: only a query of bare
/// words of 3+ characters (an implicit AND; anything else keeps FTS5's meaning on the trigram
/// index alone). `None` when it does not apply.
pub(crate) fn past_prefix_words(text: &str, fts5: bool) -> Option<(Vec<&str>, Vec<&str>)> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let bare = |w: &&str| {
        !matches!(*w, "AND" | "OR" | "NOT" | "NEAR")
            && w.chars().all(|c| c.is_alphanumeric() || c == '_' || (!c.is_ascii() && !c.is_whitespace()))
    };
    if fts5 && !words.iter().all(bare) {
        return None;
    }
    let (long, short): (Vec<&str>, Vec<&str>) = words.into_iter().partition(|w| w.chars().count() >= 3);
    if long.is_empty() || (fts5 && !short.is_empty()) {
        return None;
    }
    Some((long, short))
}

/// The snippet of a hit found past the trigram part (the same for the index and the journal's
/// tail): around the words in the indexed part, the tool name or else the whole text.
pub(crate) fn past_prefix_snippet(body: &str, tool_name: Option<&str>, content: Option<&str>, query: &str) -> String {
    match_snippet(body, query)
        .or_else(|| tool_name.and_then(|t| match_snippet(t, query)))
        .or_else(|| content.and_then(|c| match_snippet(c, query)))
        .unwrap_or_else(|| head(body, SNIPPET_CONTEXT))
}

/// Whether the trigram index holds only the first part of `m`'s text (a long tool output).
pub(crate) fn trigram_cut(m: &Message, opts: &IndexOptions) -> bool {
    matches!(classify(m, opts.tool_output_index_bytes), Indexed::Prefix(_))
}

thread_local! {
    /// A one-row FTS5 word index (Hermes' tokenizer) for [`word_index_matches`].
    static ONE_ROW: std::cell::RefCell<Option<rusqlite::Connection>> = const { std::cell::RefCell::new(None) };
}

/// Whether the word index would find every one of `words` (each a quoted phrase, ANDed) in
/// message `m`: FTS5's own tokenizer on a one-row table, for messages not in the index yet.
pub(crate) fn word_index_matches(m: &Message, words: &[&str]) -> bool {
    let body = format!(
        "{} {} {}",
        m.content.as_deref().unwrap_or_default(),
        m.tool_name.as_deref().unwrap_or_default(),
        m.tool_calls.as_deref().unwrap_or_default()
    );
    ONE_ROW
        .with(|c| {
            let mut c = c.borrow_mut();
            if c.is_none() {
                let conn = rusqlite::Connection::open_in_memory().ok()?;
                conn.execute_batch("CREATE VIRTUAL TABLE w USING fts5 (body, tokenize = 'unicode61')").ok()?;
                *c = Some(conn);
            }
            let conn = c.as_ref()?;
            conn.execute("DELETE FROM w", []).ok()?;
            conn.execute("INSERT INTO w (body) VALUES (?1)", [&body]).ok()?;
            conn.query_row("SELECT count(*) FROM w WHERE w MATCH ?1", [fts_match_expr(words)], |r| r.get::<_, i64>(0))
                .ok()
        })
        .is_some_and(|n| n > 0)
}
