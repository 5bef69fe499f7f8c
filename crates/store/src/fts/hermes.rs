//! Hermes Agent's query handling (`hermes_state.SessionDB`, release 0.19.0): how it cleans a
//! search query before FTS5 sees it, and which of its indexes it then asks.
//!
//! Written from Hermes' documented steps and checked against its outputs (the tests pin a
//! table of them). Python's notions are kept: a character is a code point, whitespace is
//! `str.isspace()`. One difference remains: a word character (regex `\w`) is taken as Rust's
//! alphanumeric or `_`, where Python uses its own Unicode tables; they disagree on some
//! combining marks (for example Devanagari vowel signs, which Rust counts as letters).

/// Hermes cuts queries to this many characters first (`MAX_FTS5_QUERY_CHARS`).
const MAX_QUERY_CHARS: usize = 2048;

/// Python's `str.isspace()`: Unicode whitespace plus the separators 0x1C-0x1F.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1C}'..='\u{1F}').contains(&c)
}

/// A regex word character (`\w`).
fn is_word(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

fn py_strip(s: &str) -> &str {
    s.trim_matches(is_py_space)
}

/// Hermes' CJK test (`_is_cjk_codepoint`): CJK ideographs (unified, extensions A and B), CJK
/// symbols and punctuation, hiragana, katakana and hangul syllables.
pub(crate) fn is_cjk(c: char) -> bool {
    matches!(u32::from(c),
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0x3000..=0x303F
        | 0x3040..=0x309F | 0x30A0..=0x30FF | 0xAC00..=0xD7AF)
}

/// Hermes' query cleaning (`_sanitize_fts5_query`), so that a user's text does not make FTS5
/// fail:
///
/// 1. cut to 2048 characters;
/// 2. each `"..."` pair kept as it is; a `"` without a partner becomes a space;
/// 3. outside the kept pairs, `+ { } ( ) : " ^` become spaces;
/// 4. runs of `*` become one, and a `*` at the start or after whitespace is removed;
/// 5. one `AND`, `OR` or `NOT` (any case) at the start, and one at the end after whitespace,
///    removed;
/// 6. words joined by `.`, `-` or `_` (`chat-send`, `P2.2`, `my_var`) quoted as one phrase;
/// 7. surrounding whitespace removed.
///
/// The result is usually, not always, valid FTS5 (`a OR OR b` stays as it is); Hermes then
/// treats an FTS5 error as "no results".
pub fn sanitize_hermes_query(query: &str) -> String {
    let query: String = query.chars().take(MAX_QUERY_CHARS).collect();

    // Step 2: quoted pairs replaced by placeholders.
    let mut quoted: Vec<String> = Vec::new();
    let mut s = String::with_capacity(query.len());
    let mut rest = query.as_str();
    while let Some(i) = rest.find('"') {
        s.push_str(rest.get(..i).unwrap_or_default());
        let after = rest.get(i + 1..).unwrap_or_default();
        match after.find('"') {
            Some(j) => {
                quoted.push(format!("\"{}\"", after.get(..j).unwrap_or_default()));
                s.push_str(&format!("\u{0}Q{}\u{0}", quoted.len() - 1));
                rest = after.get(j + 1..).unwrap_or_default();
            }
            None => {
                s.push(' ');
                rest = after;
            }
        }
    }
    s.push_str(rest);

    // Step 3.
    let s: String = s.chars().map(|c| if "+{}():\"^".contains(c) { ' ' } else { c }).collect();

    // Step 4: collapse `*` runs, then drop a `*` at the start or after whitespace.
    let mut collapsed = String::with_capacity(s.len());
    for c in s.chars() {
        if !(c == '*' && collapsed.ends_with('*')) {
            collapsed.push(c);
        }
    }
    let mut s = String::with_capacity(collapsed.len());
    let mut prev: Option<char> = None;
    for c in collapsed.chars() {
        if !(c == '*' && prev.is_none_or(is_py_space)) {
            s.push(c);
        }
        prev = Some(c);
    }

    // Step 5.
    let s = strip_leading_operator(py_strip(&s));
    let s = strip_trailing_operator(py_strip(s));

    // Step 6, then the placeholders back.
    let mut s = quote_joined_words(s);
    for (i, q) in quoted.iter().enumerate() {
        s = s.replace(&format!("\u{0}Q{i}\u{0}"), q);
    }
    py_strip(&s).to_owned()
}

/// `AND`, `OR` or `NOT` (ASCII case-insensitive) if `s` starts with one.
fn operator_prefix(s: &str) -> Option<usize> {
    ["AND", "OR", "NOT"]
        .into_iter()
        .find(|op| s.get(..op.len()).is_some_and(|h| h.eq_ignore_ascii_case(op)))
        .map(str::len)
}

/// `^(AND|OR|NOT)\b\s*` removed.
fn strip_leading_operator(s: &str) -> &str {
    let Some(n) = operator_prefix(s) else { return s };
    let rest = s.get(n..).unwrap_or_default();
    if rest.chars().next().is_some_and(is_word) {
        return s;
    }
    rest.trim_start_matches(is_py_space)
}

/// `\s+(AND|OR|NOT)\s*$` removed (`s` has no trailing whitespace).
fn strip_trailing_operator(s: &str) -> &str {
    for op in ["AND", "OR", "NOT"] {
        let Some(cut) = s.len().checked_sub(op.len()) else { continue };
        let (head, tail) = (s.get(..cut), s.get(cut..));
        if let (Some(head), Some(tail)) = (head, tail)
            && tail.eq_ignore_ascii_case(op)
            && head.ends_with(is_py_space)
        {
            return head.trim_end_matches(is_py_space);
        }
    }
    s
}

/// `\b(\w+(?:[._-]\w+)+)\b` replaced by `"\1"`: runs of word characters joined by `.` or `-`
/// (or containing an inner `_`, itself a word character) are quoted.
fn quote_joined_words(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let word = |i: usize| chars.get(i).copied().is_some_and(is_word);
    let mut out = String::with_capacity(s.len() + 8);
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        let starts_word = word(i) && (i == 0 || !word(i - 1));
        if !starts_word {
            out.push(c);
            i += 1;
            continue;
        }
        let mut end = i;
        while word(end) {
            end += 1;
        }
        let first_run_end = end;
        let mut joined = false;
        while matches!(chars.get(end), Some('.' | '-')) && word(end + 1) {
            end += 1;
            while word(end) {
                end += 1;
            }
            joined = true;
        }
        // Without `.` or `-`, an `_` with word characters on both sides joins too.
        let underscore = !joined && (i + 1..first_run_end.saturating_sub(1)).any(|k| chars.get(k) == Some(&'_'));
        let run: String = chars.get(i..end).unwrap_or_default().iter().collect();
        if joined || underscore {
            out.push('"');
            out.push_str(&run);
            out.push('"');
        } else {
            out.push_str(&run);
        }
        i = end;
    }
    out
}

/// Which of Hermes' indexes a query goes to, and with what (`search_messages`, after
/// [`sanitize_hermes_query`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HermesRoute {
    /// Nothing is searched: the query is empty once cleaned.
    Empty,
    /// No CJK character: this FTS5 query on Hermes' word index (`messages_fts`, tokenizer
    /// `unicode61`). An FTS5 error there means no results.
    Words(String),
    /// CJK text with at least three CJK characters in every word that has any: this FTS5 query
    /// (each word quoted, `AND` / `OR` / `NOT` kept) on the trigram index.
    Trigram(String),
    /// Other CJK text (some word with one or two CJK characters, which trigrams cannot find,
    /// or a trigram query FTS5 refuses): messages whose content, tool name or tool calls
    /// contain any of these strings (SQL `LIKE`, so case-insensitive for ASCII only), newest
    /// first.
    Substrings(Vec<String>),
}

/// Hermes' choice of index for a query (the `_contains_cjk` branch of `search_messages`).
pub fn hermes_route(query: &str) -> HermesRoute {
    if py_strip(query).is_empty() {
        return HermesRoute::Empty;
    }
    let q = sanitize_hermes_query(query);
    if q.is_empty() {
        return HermesRoute::Empty;
    }
    if !q.chars().any(is_cjk) {
        return HermesRoute::Words(q);
    }
    let raw = py_strip(q.trim_matches('"'));
    let is_op = |t: &str| matches!(t.to_uppercase().as_str(), "AND" | "OR" | "NOT");
    let count = |t: &str| t.chars().filter(|&c| is_cjk(c)).count();
    let words: Vec<&str> = raw.split(is_py_space).filter(|t| !t.is_empty()).collect();
    let short = words.iter().any(|t| !is_op(t) && count(t) > 0 && count(t) < 3);
    if count(raw) >= 3 && !short {
        let parts: Vec<String> = words
            .iter()
            .map(|t| if is_op(t) { (*t).to_owned() } else { format!("\"{}\"", t.replace('"', "\"\"")) })
            .collect();
        let trigram = parts.join(" ");
        if super::FtsQuery::parse(&trigram).is_ok() {
            return HermesRoute::Trigram(trigram);
        }
    }
    let mut tokens: Vec<String> = words.iter().filter(|t| !is_op(t)).map(|t| (*t).to_owned()).collect();
    if tokens.is_empty() {
        tokens.push(raw.to_owned());
    }
    HermesRoute::Substrings(tokens)
}
