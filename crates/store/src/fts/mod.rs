//! FTS5's full-text query language, read once and run on the index and on the journal tail.
//!
//! [`FtsQuery::parse`] reads a query the way SQLite's FTS5 does (<https://sqlite.org/fts5.html>,
//! section 3, checked against the parser and tokenizer of the SQLite that rusqlite bundles):
//!
//! - strings: a bareword (ASCII letters and digits, `_`, the substitute character 0x1A and every
//!   non-ASCII character) or a `"quoted string"` (a quote inside is written `""`);
//! - a phrase is a string, or strings joined by `+`; a `*` after a string makes its last token a
//!   prefix; `^` before a phrase anchors it at the first token of a column;
//! - `NEAR(p1 p2 ..., N)`: the phrases with at most N tokens between them (N defaults to 10);
//! - column filters: `body:`, `{body tool_name}:`, `-tool_name:` before a phrase, a `NEAR`
//!   group or a parenthesized expression (names are case-insensitive);
//! - `AND`, `OR` and `NOT`, in capitals only (a lowercase `and` is a word), `NOT` binding tighter
//!   than `AND` and `AND` tighter than `OR`; phrases written side by side are ANDed and bind
//!   tighter than all three (`a NOT b c` is `a NOT (b AND c)`), and parentheses.
//!
//! Errors carry FTS5's own messages (`fts5: syntax error near "..."`, `no such column: x`, ...).
//! The tree renders back to a canonical query (`Display`) that the index runs with `MATCH`;
//! [`FtsQuery::matches`] evaluates the same tree on plain text exactly as FTS5 does on the
//! index's `trigram` tokenizer (case-insensitive, no diacritic removal): a phrase matches where
//! its text occurs as a substring, case-folded like SQLite folds; a phrase shorter than three
//! characters has no token, matches nothing and is left out where it stands beside other
//! phrases (`ab cde` finds what `cde` finds).
//!
//! [`sanitize_hermes_query`] and [`hermes_route`] are Hermes Agent's own query cleaning and its
//! choice of index for CJK and short queries, so that every door applies them the same way.

mod eval;
mod fold;
mod hermes;
mod parse;
mod render;
#[cfg(test)]
mod tests;

use std::fmt;

pub(crate) use eval::{Highlighter, Phrases, idf};
pub use hermes::{HermesRoute, hermes_route, sanitize_hermes_query};

/// The columns of the index's full-text table, in order: the searchable message body and the
/// tool name.
pub const INDEX_COLUMNS: [&str; 2] = ["body", "tool_name"];

/// FTS5's `NEAR` distance when a group gives none.
pub const DEFAULT_NEAR_DISTANCE: u32 = 10;

/// How the text of a [`SearchQuery`](crate::SearchQuery) is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum QuerySyntax {
    /// FTS5's full-text query language (see [`FtsQuery`]), with FTS5's results on the index's
    /// trigram tokenizer: a query that is not valid FTS5 is an error; phrases shorter than three
    /// characters match nothing.
    #[default]
    Fts5,
    /// Words: the text is split on whitespace and every word must occur as a literal,
    /// case-insensitive substring; no character has a meaning. Words of 1-2 characters (which
    /// FTS5's trigram index cannot find) are matched with `LIKE`, and a query made only of such
    /// words scans. The store's query language before FTS5 semantics.
    Words,
}

/// True if FTS5 would see no token in `query`: only spaces, tabs and line breaks before the
/// end or a NUL character.
pub(crate) fn is_blank(query: &str) -> bool {
    parse::effective(query).bytes().all(parse::is_fts5_space)
}

/// A parsed FTS5 query on the index's columns ([`INDEX_COLUMNS`]). `Display` gives its canonical
/// text, which FTS5 reads back as the same tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FtsQuery {
    expr: FtsExpr,
}

impl FtsQuery {
    /// Parses `query` as FTS5 does for the index's table. Nothing is allowed after a NUL
    /// character (FTS5 stops reading there).
    pub fn parse(query: &str) -> Result<FtsQuery, FtsError> {
        Ok(FtsQuery { expr: parse::parse(query, &INDEX_COLUMNS)? })
    }

    /// The query FTS5 reads from a tree's rendering: the same tree when it keeps the
    /// invariants of [`FtsExpr`], checked for column names and FTS5's depth limits.
    pub fn from_expr(expr: &FtsExpr) -> Result<FtsQuery, FtsError> {
        FtsQuery::parse(&expr.to_string())
    }

    /// The expression tree.
    pub fn expr(&self) -> &FtsExpr {
        &self.expr
    }

    /// Whether a row with these column texts (in the order of [`INDEX_COLUMNS`], `None` for
    /// NULL) matches, as FTS5 decides on a trigram index.
    pub fn matches(&self, columns: &[Option<&str>]) -> bool {
        eval::matches(&self.expr, columns)
    }

    /// True if the query can match nothing whatever the text: every phrase it depends on is
    /// shorter than three characters (FTS5 on a trigram index finds nothing for it).
    pub fn matches_nothing(&self) -> bool {
        eval::is_empty_expr(&self.expr)
    }
}

impl fmt::Display for FtsQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.expr.fmt(f)
    }
}

/// An FTS5 query expression.
///
/// Invariants the parser keeps (a tree built by hand that breaks them renders to a query FTS5
/// reads as another tree, or refuses): `Clauses`, `Near::phrases`, `FtsPhrase::strings` and
/// `FtsColumns::columns` are not empty, `And` and `Or` have two operands or more and none of
/// their own kind, and no text holds a NUL character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FtsExpr {
    /// Clauses side by side (`a "b c" NEAR(d e)`): all must match. Clauses with no token are
    /// left out (FTS5 drops them); if every clause has none, nothing matches.
    Clauses(Vec<FtsClause>),
    /// A column filter on a parenthesized expression: `body:(a OR b)`. Filters nest by
    /// intersection.
    Columns(FtsColumns, Box<FtsExpr>),
    /// `a AND b AND ...`: all must match. At least two operands, none an `And` (FTS5 merges
    /// them into one node, and so does the parser here).
    And(Vec<FtsExpr>),
    /// `a OR b OR ...`: one must match. At least two operands, none an `Or`.
    Or(Vec<FtsExpr>),
    /// `a NOT b`: rows that match `a` and not `b`.
    Not(Box<FtsExpr>, Box<FtsExpr>),
}

/// A phrase or a `NEAR` group, optionally with a column filter: `tool_name:^"web"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FtsClause {
    /// The columns it is searched in; `None` for all.
    pub columns: Option<FtsColumns>,
    /// What must occur.
    pub group: FtsGroup,
}

/// What a clause looks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FtsGroup {
    /// One phrase; with `initial`, only at the start of a column (`^phrase`).
    Phrase {
        /// Anchored at the first token of a column.
        initial: bool,
        /// The phrase.
        phrase: FtsPhrase,
    },
    /// `NEAR(p1 p2 ..., distance)`: every phrase, in one column, with at most `distance` tokens
    /// between the end of each phrase and the start of the last one. Phrases with no token are
    /// left out, as FTS5 does.
    Near {
        /// The phrases.
        phrases: Vec<FtsPhrase>,
        /// The most tokens between them ([`DEFAULT_NEAR_DISTANCE`] when the query gives none;
        /// digits past 214748363 are ignored, as FTS5 ignores them).
        distance: u32,
    },
}

/// A phrase: strings joined by `+`, whose tokens must follow each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FtsPhrase {
    /// The strings, in order.
    pub strings: Vec<FtsString>,
}

/// One string of a phrase: a bareword or the text of a quoted string (quotes removed, `""`
/// read as `"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FtsString {
    /// The text, as the tokenizer receives it.
    pub text: String,
    /// Followed by `*`: its last token is a prefix.
    pub prefix: bool,
}

/// A column filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FtsColumns {
    /// `-col:`: every column except these.
    pub exclude: bool,
    /// The columns, spelled as the table names them, in table order, each once.
    pub columns: Vec<String>,
}

/// A query FTS5 refuses. `Display` gives SQLite's own message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FtsError {
    /// A token that cannot stand where it is (or the end of the query, `near ""`).
    #[error("fts5: syntax error near \"{near}\"")]
    Syntax {
        /// The token's text.
        near: String,
        /// Its byte offset in the query.
        offset: usize,
    },
    /// A `"` without its closing quote.
    #[error("unterminated string")]
    UnterminatedString {
        /// The byte offset of the opening quote.
        offset: usize,
    },
    /// A column filter names a column the table does not have.
    #[error("no such column: {name}")]
    NoSuchColumn {
        /// The name as written (quotes removed).
        name: String,
    },
    /// The distance of a `NEAR` group is not a number.
    #[error("expected integer, got \"{got}\"")]
    ExpectedInteger {
        /// The token written instead.
        got: String,
    },
    /// The query starts with `*`: FTS5 reads it as a request for an internal value (`*reads`,
    /// `*id`), not a search; refused here whatever follows.
    #[error("unknown special query: {name}")]
    Special {
        /// The word after the `*`.
        name: String,
    },
    /// Parentheses, column filters and operators nest deeper than FTS5's parser allows (its
    /// stack holds 100 entries: about 97 nested parentheses, fewer with operators in between).
    #[error("fts5: parser stack overflow")]
    TooDeep,
    /// The expression tree is deeper than FTS5 allows (256 levels of alternating operators).
    #[error("fts5 expression tree is too large (maximum depth {max})")]
    TooLarge {
        /// The limit.
        max: usize,
    },
}
