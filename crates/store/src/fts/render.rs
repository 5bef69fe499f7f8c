//! The canonical text of a tree: what FTS5 reads back as the same tree.
//!
//! Strings are barewords where they can be (FTS5 bareword characters only, and not `AND`, `OR`
//! or `NOT`), else quoted with `""` for a quote; a `NEAR` group always states its distance; a
//! column filter on one column is `name:` (`-name:`), on several `{a b}:`; parentheses only
//! where precedence needs them (`NOT` over `AND` over `OR`, all left-associative; clauses side
//! by side bind tightest).

use std::fmt::{self, Display, Formatter, Write};

use super::parse::is_bareword_byte;
use super::{FtsClause, FtsColumns, FtsExpr, FtsGroup, FtsPhrase, FtsString};

fn string(f: &mut Formatter<'_>, s: &str) -> fmt::Result {
    let bare = !s.is_empty() && s.bytes().all(is_bareword_byte) && !matches!(s, "AND" | "OR" | "NOT");
    if bare {
        return f.write_str(s);
    }
    f.write_char('"')?;
    f.write_str(&s.replace('"', "\"\""))?;
    f.write_char('"')
}

/// Binding strength: OR 1, AND 2, NOT 3, clauses and filtered groups 4.
fn prec(e: &FtsExpr) -> u8 {
    match e {
        FtsExpr::Or(_) => 1,
        FtsExpr::And(_) => 2,
        FtsExpr::Not(..) => 3,
        FtsExpr::Clauses(_) | FtsExpr::Columns(..) => 4,
    }
}

/// Writes `e`, in parentheses if it binds looser than `min`.
fn operand(f: &mut Formatter<'_>, e: &FtsExpr, min: u8) -> fmt::Result {
    if prec(e) < min { write!(f, "({e})") } else { write!(f, "{e}") }
}

impl Display for FtsExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            FtsExpr::Clauses(cs) => {
                for (i, c) in cs.iter().enumerate() {
                    if i > 0 {
                        f.write_char(' ')?;
                    }
                    write!(f, "{c}")?;
                }
                Ok(())
            }
            FtsExpr::Columns(cols, e) => write!(f, "{cols}:({e})"),
            // Children of the operator's own kind are parenthesized: unparenthesized, they
            // would be read back as more children of this node.
            FtsExpr::Or(v) | FtsExpr::And(v) => {
                let (word, min) = if matches!(self, FtsExpr::Or(_)) { (" OR ", 2) } else { (" AND ", 3) };
                for (i, e) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_str(word)?;
                    }
                    operand(f, e, min)?;
                }
                Ok(())
            }
            FtsExpr::Not(a, b) => {
                operand(f, a, 3)?;
                f.write_str(" NOT ")?;
                operand(f, b, 4)
            }
        }
    }
}

impl Display for FtsClause {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if let Some(cols) = &self.columns {
            write!(f, "{cols}:")?;
        }
        match &self.group {
            FtsGroup::Phrase { initial, phrase } => {
                if *initial {
                    f.write_char('^')?;
                }
                write!(f, "{phrase}")
            }
            FtsGroup::Near { phrases, distance } => {
                f.write_str("NEAR(")?;
                for (i, p) in phrases.iter().enumerate() {
                    if i > 0 {
                        f.write_char(' ')?;
                    }
                    write!(f, "{p}")?;
                }
                write!(f, ", {distance})")
            }
        }
    }
}

impl Display for FtsPhrase {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        for (i, s) in self.strings.iter().enumerate() {
            if i > 0 {
                f.write_str(" + ")?;
            }
            write!(f, "{s}")?;
        }
        Ok(())
    }
}

impl Display for FtsString {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        string(f, &self.text)?;
        if self.prefix {
            f.write_char('*')?;
        }
        Ok(())
    }
}

impl Display for FtsColumns {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if self.exclude {
            f.write_char('-')?;
        }
        match self.columns.as_slice() {
            [one] => string(f, one),
            many => {
                f.write_char('{')?;
                for (i, c) in many.iter().enumerate() {
                    if i > 0 {
                        f.write_char(' ')?;
                    }
                    string(f, c)?;
                }
                f.write_char('}')
            }
        }
    }
}
