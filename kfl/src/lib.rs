//! KFL, the filter language over entries (SPEC §4), after Kubeshark's:
//!
//! ```text
//! response.status > 400 or error or icmp or tcp
//! src.namespace == "shop" and request.path.startsWith("/api")
//! request.headers["x-request-id"] == r"^abc-[0-9]+$"
//! !error and http
//! ```
//!
//! - Selectors are dotted paths into the entry, with `["key"]` for map keys and `[0]` for indexes.
//! - Literals: strings (`"…"` or `'…'`), numbers, `true`, `false`, `null`, regexes `r"…"`.
//! - Operators: `== != < <= > >=`; `and`/`&&`, `or`/`||`, `not`/`!`, parentheses. Precedence is in
//!   [`parser`]: `or` binds loosest, then `and`, then `not`, then comparisons.
//! - Helpers: `sel.startsWith("…")`, `sel.endsWith("…")`, `sel.contains("…")`.
//! - Macros: `http`, `dns`, `tcp`, `icmp` are true for entries of that protocol; `error` when the entry
//!   has an error. `tcp.state` is a selector, `tcp` alone the macro.
//! - A missing field makes only its own comparison false; to `== null` it counts as null.
//! - A bare selector is true when the field exists and is not null, false, 0 or "".
//! - Numbers compare with text that holds a number as numbers (header values); otherwise values of
//!   different kinds are never equal.
//!
//! A query is parsed once ([`Query::parse`]) and then evaluated per entry without allocating.

mod ast;
mod error;
mod eval;
mod lexer;
pub mod parser;
mod value;

pub use ast::Seg;
pub use error::ParseError;
pub use value::{seg_name, Inline, Record, Value};

/// A compiled KFL query.
#[derive(Clone, Debug)]
pub struct Query {
    expr: ast::Expr,
    text: String,
}

impl Query {
    pub fn parse(text: &str) -> Result<Query, ParseError> {
        Ok(Query { expr: parser::parse(text)?, text: text.to_owned() })
    }

    /// Whether the record matches.
    pub fn matches<R: Record + ?Sized>(&self, record: &R) -> bool {
        eval::eval(&self.expr, record)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl std::str::FromStr for Query {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Query, ParseError> {
        Query::parse(s)
    }
}

#[cfg(test)]
mod tests;
