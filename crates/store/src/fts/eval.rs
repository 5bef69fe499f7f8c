//! The evaluator: FTS5's answer for one row, on plain text, for the trigram tokenizer.
//!
//! The trigram tokenizer (case-insensitive, no diacritic removal) reads a text as its
//! characters, case-folded ([`super::fold`]), NUL skipped, and emits every run of three as a
//! token whose position is the index of its first character. A query string becomes the
//! tokens of its text the same way (a string of one or two characters has none), a phrase the
//! tokens of its strings in order, and a phrase matches at position `p` of a column if its
//! `k`-th token is the column's token at `p + k`. With one string, that is the string occurring
//! as a substring. A `*` changes nothing: every token has three characters, so a token that
//! starts with a prefix of three characters is that prefix.
//!
//! The boolean structure follows FTS5's tree: clauses written side by side leave out those with
//! no token (if all have none, nothing matches); in `AND`, `OR` and `NOT`, an operand with no
//! token matches nothing; column filters intersect; a `NEAR` group leaves out its phrases with
//! no token and needs the others in one column with, for each phrase, at most `distance` tokens
//! between its end and the start of the last phrase.

use super::fold::trigram_char;
use super::{FtsClause, FtsColumns, FtsExpr, FtsGroup, FtsPhrase, FtsQuery, INDEX_COLUMNS};

/// A trigram: three folded characters.
type Tri = [char; 3];

/// A column's text as the tokenizer reads it, with the character index (in the original
/// text) of each character it kept.
struct Column {
    chars: Vec<char>,
    origin: Vec<usize>,
}

impl Column {
    fn new(text: &str) -> Column {
        let mut chars = Vec::with_capacity(text.len());
        let mut origin = Vec::with_capacity(text.len());
        for (i, c) in text.chars().enumerate() {
            if let Some(t) = trigram_char(c) {
                chars.push(t);
                origin.push(i);
            }
        }
        Column { chars, origin }
    }

    /// The number of tokens in the column.
    fn token_count(&self) -> usize {
        self.chars.len().saturating_sub(2)
    }

    fn token(&self, pos: usize) -> Option<Tri> {
        match self.chars.get(pos..pos + 3)? {
            &[a, b, c] => Some([a, b, c]),
            _ => None,
        }
    }
}

/// The tokens of a query string.
fn string_tokens(text: &str) -> Vec<Tri> {
    let chars: Vec<char> = text.chars().filter_map(trigram_char).collect();
    chars.windows(3).filter_map(|w| <[char; 3]>::try_from(w).ok()).collect()
}

fn phrase_tokens(p: &FtsPhrase) -> Vec<Tri> {
    p.strings.iter().flat_map(|s| string_tokens(&s.text)).collect()
}

/// True if the phrase has no token (FTS5 turns it into a node that matches nothing).
pub(super) fn phrase_is_empty(p: &FtsPhrase) -> bool {
    p.strings.iter().all(|s| s.text.chars().filter_map(trigram_char).nth(2).is_none())
}

fn group_is_empty(g: &FtsGroup) -> bool {
    match g {
        FtsGroup::Phrase { phrase, .. } => phrase_is_empty(phrase),
        FtsGroup::Near { phrases, .. } => phrases.iter().all(phrase_is_empty),
    }
}

/// The set of columns a filter leaves, within `allowed` (a bit per column of
/// [`INDEX_COLUMNS`]).
fn restrict(allowed: u64, f: &FtsColumns) -> u64 {
    let named = INDEX_COLUMNS
        .iter()
        .enumerate()
        .fold(0u64, |m, (i, c)| if f.columns.iter().any(|n| n.eq_ignore_ascii_case(c)) { m | (1 << i) } else { m });
    let all = (1u64 << INDEX_COLUMNS.len()) - 1;
    allowed & if f.exclude { all & !named } else { named }
}

fn clause_columns(allowed: u64, c: &FtsClause) -> u64 {
    c.columns.as_ref().map_or(allowed, |f| restrict(allowed, f))
}

const ALL_COLUMNS: u64 = (1 << INDEX_COLUMNS.len()) - 1;

pub(super) fn matches(expr: &FtsExpr, columns: &[Option<&str>]) -> bool {
    let cols: Vec<Option<Column>> =
        (0..INDEX_COLUMNS.len()).map(|i| columns.get(i).copied().flatten().map(Column::new)).collect();
    eval(expr, ALL_COLUMNS, &cols)
}

fn eval(e: &FtsExpr, allowed: u64, cols: &[Option<Column>]) -> bool {
    match e {
        FtsExpr::Clauses(cs) => {
            let mut live = cs.iter().filter(|c| !group_is_empty(&c.group)).peekable();
            live.peek().is_some() && live.all(|c| group_matches(&c.group, clause_columns(allowed, c), cols))
        }
        FtsExpr::Columns(f, e) => eval(e, restrict(allowed, f), cols),
        FtsExpr::And(v) => v.iter().all(|e| eval(e, allowed, cols)),
        FtsExpr::Or(v) => v.iter().any(|e| eval(e, allowed, cols)),
        FtsExpr::Not(a, b) => eval(a, allowed, cols) && !eval(b, allowed, cols),
    }
}

/// True if nothing can match, whatever the text.
pub(super) fn is_empty_expr(e: &FtsExpr) -> bool {
    match e {
        FtsExpr::Clauses(cs) => cs.iter().all(|c| group_is_empty(&c.group)),
        FtsExpr::Columns(_, e) => is_empty_expr(e),
        FtsExpr::And(v) => v.iter().any(is_empty_expr),
        FtsExpr::Or(v) => v.iter().all(is_empty_expr),
        FtsExpr::Not(a, _) => is_empty_expr(a),
    }
}

/// The positions in `col` where the phrase with these tokens starts.
fn positions(tokens: &[Tri], col: &Column) -> Vec<usize> {
    let Some(first) = tokens.first() else { return Vec::new() };
    let n = tokens.len();
    let Some(last_start) = col.token_count().checked_sub(n) else { return Vec::new() };
    (0..=last_start)
        .filter(|&p| {
            col.token(p).as_ref() == Some(first)
                && tokens.iter().enumerate().skip(1).all(|(k, t)| col.token(p + k).as_ref() == Some(t))
        })
        .collect()
}

fn columns_in(allowed: u64, cols: &[Option<Column>]) -> impl Iterator<Item = &Column> {
    cols.iter().enumerate().filter(move |(i, _)| allowed & (1 << i) != 0).filter_map(|(_, c)| c.as_ref())
}

fn group_matches(g: &FtsGroup, allowed: u64, cols: &[Option<Column>]) -> bool {
    match g {
        FtsGroup::Phrase { initial, phrase } => {
            let tokens = phrase_tokens(phrase);
            columns_in(allowed, cols).any(|c| {
                let at = positions(&tokens, c);
                if *initial { at.first() == Some(&0) } else { !at.is_empty() }
            })
        }
        FtsGroup::Near { phrases, distance } => {
            let phrases: Vec<Vec<Tri>> = phrases.iter().map(phrase_tokens).filter(|t| !t.is_empty()).collect();
            columns_in(allowed, cols).any(|c| {
                let found: Vec<(Vec<usize>, usize)> = phrases.iter().map(|t| (positions(t, c), t.len())).collect();
                near(&found, *distance)
            })
        }
    }
}

/// FTS5's NEAR test in one column: positions chosen, one per phrase, such that for every
/// phrase, the last start minus the phrase's start minus its token count is at most
/// `distance`. `found` holds each phrase's start positions (sorted) and token count.
fn near(found: &[(Vec<usize>, usize)], distance: u32) -> bool {
    if found.iter().any(|(at, _)| at.is_empty()) {
        return false;
    }
    if found.len() < 2 {
        return !found.is_empty();
    }
    let distance = i64::from(distance);
    // Try each start as the last one: every phrase needs a start in [last - n - distance, last].
    found.iter().flat_map(|(at, _)| at.iter()).any(|&last| {
        let last = i64::try_from(last).unwrap_or(i64::MAX);
        found.iter().all(|(at, n)| {
            let lo = last - i64::try_from(*n).unwrap_or(i64::MAX) - distance;
            let i = at.partition_point(|&p| i64::try_from(p).unwrap_or(i64::MAX) < lo);
            at.get(i).is_some_and(|&p| i64::try_from(p).unwrap_or(i64::MAX) <= last)
        })
    })
}

/// Where a query's phrases occur in a text, for snippets of messages not in the index.
#[derive(Debug)]
pub(crate) struct Highlighter {
    /// Every phrase with a token, with the columns it is searched in.
    phrases: Vec<(Vec<Tri>, u64)>,
}

impl Highlighter {
    pub(crate) fn new(q: &FtsQuery) -> Highlighter {
        let mut phrases = Vec::new();
        collect(&q.expr, ALL_COLUMNS, &mut phrases);
        Highlighter { phrases }
    }

    /// The occurrences of the query's phrases in `text`, column `col` of [`INDEX_COLUMNS`], as
    /// ranges of character indexes of `text`.
    pub(crate) fn ranges(&self, col: usize, text: &str) -> Vec<(usize, usize)> {
        let c = Column::new(text);
        let mut out = Vec::new();
        for (tokens, allowed) in &self.phrases {
            if allowed & (1 << col) == 0 {
                continue;
            }
            for p in positions(tokens, &c) {
                let last = p + tokens.len() + 1;
                if let (Some(&s), Some(&e)) = (c.origin.get(p), c.origin.get(last)) {
                    out.push((s, e + 1));
                }
            }
        }
        out
    }
}

fn collect(e: &FtsExpr, allowed: u64, out: &mut Vec<(Vec<Tri>, u64)>) {
    match e {
        FtsExpr::Clauses(cs) => {
            for c in cs {
                let allowed = clause_columns(allowed, c);
                let phrases: Vec<&FtsPhrase> = match &c.group {
                    FtsGroup::Phrase { phrase, .. } => vec![phrase],
                    FtsGroup::Near { phrases, .. } => phrases.iter().collect(),
                };
                out.extend(phrases.into_iter().map(phrase_tokens).filter(|t| !t.is_empty()).map(|t| (t, allowed)));
            }
        }
        FtsExpr::Columns(f, e) => collect(e, restrict(allowed, f), out),
        FtsExpr::And(v) | FtsExpr::Or(v) => v.iter().for_each(|e| collect(e, allowed, out)),
        FtsExpr::Not(a, _) => collect(a, allowed, out),
    }
}

/// FTS5's `bm25()` constants.
const BM25_K1: f64 = 1.2;
const BM25_B: f64 = 0.75;

/// A query of phrases side by side (all must match), each unanchored and searched in every
/// column, as FTS5's `bm25()` ranks it: `Σ idf(p)·f(p)·(k1 + 1) / (f(p) + k1·(1 − b + b·|D| /
/// avgdl))` over its phrases `p`. Each phrase's inverse document frequency (IDF) costs
/// `bm25()` a pass over every row that holds the phrase, so it is given from outside
/// ([`idf`]): for one phrase it is the same for every row and left out (rows ordered by
/// [`Phrases::weight`] with an IDF of 1 are in `bm25()`'s order, and `bm25()` is the weight
/// times the IDF).
pub(crate) struct Phrases {
    /// Each phrase's tokens and its FTS5 query alone.
    phrases: Vec<(Vec<Tri>, String)>,
}

impl Phrases {
    /// `Some` if `q` is one or more phrases side by side, each with a token, not anchored
    /// (`^`), with no column filter.
    pub(crate) fn of(q: &FtsQuery) -> Option<Phrases> {
        let FtsExpr::Clauses(cs) = &q.expr else { return None };
        let phrases = cs
            .iter()
            .map(|c| match c {
                FtsClause { columns: None, group: FtsGroup::Phrase { initial: false, phrase } } => {
                    let tokens = phrase_tokens(phrase);
                    (!tokens.is_empty()).then(|| (tokens, FtsExpr::Clauses(vec![c.clone()]).to_string()))
                }
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        (!phrases.is_empty()).then_some(Phrases { phrases })
    }

    /// How many phrases.
    pub(crate) fn len(&self) -> usize {
        self.phrases.len()
    }

    /// Phrase `i` alone, as an FTS5 query.
    pub(crate) fn query(&self, i: usize) -> &str {
        self.phrases.get(i).map_or("", |p| p.1.as_str())
    }

    /// The score for a row whose columns ([`INDEX_COLUMNS`]) hold these texts, `idf` each
    /// phrase's IDF (missing ones count 1), `average` the index's tokens per row: `-bm25()`.
    pub(crate) fn weight(&self, columns: &[Option<&str>], average: f64, idf: &[f64]) -> f64 {
        let cols: Vec<Column> = columns.iter().flatten().map(|t| Column::new(t)).collect();
        let d: usize = cols.iter().map(Column::token_count).sum();
        let norm = if average > 0.0 { d as f64 / average } else { 1.0 };
        self.phrases
            .iter()
            .enumerate()
            .map(|(i, (tokens, _))| {
                let f = cols.iter().map(|c| positions(tokens, c).len()).sum::<usize>() as f64;
                idf.get(i).copied().unwrap_or(1.0) * f * (BM25_K1 + 1.0)
                    / (f + BM25_K1 * (1.0 - BM25_B + BM25_B * norm))
            })
            .sum()
    }
}

/// FTS5's inverse document frequency of a phrase that `hits` of `rows` rows hold:
/// `ln((rows − hits + 0.5) / (hits + 0.5))`, `1e-6` where that is not positive.
pub(crate) fn idf(rows: f64, hits: f64) -> f64 {
    let idf = ((rows - hits + 0.5) / (hits + 0.5)).ln();
    if idf <= 0.0 || idf.is_nan() { 1e-6 } else { idf }
}
