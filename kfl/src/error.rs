use std::fmt;

/// A query that does not parse: where (1-based column, in characters) and what was expected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {}: {}", self.column, self.message)
    }
}

impl ParseError {
    /// `offset` is a byte offset into `src`.
    pub(crate) fn at(src: &str, offset: usize, message: impl Into<String>) -> ParseError {
        let column = src.get(..offset.min(src.len())).map_or(offset, |s| s.chars().count()) + 1;
        ParseError { column, message: message.into() }
    }
}
