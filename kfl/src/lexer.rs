//! Characters to tokens, each with the byte offset where it starts.

use crate::error::ParseError;

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    Ident(String),
    Str(String),
    Regex(String),
    Num(f64),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Dot,
    Comma,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Bang,
    AndAnd,
    OrOr,
    End,
}

impl Tok {
    /// How the token reads in an error message.
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("'{s}'"),
            Tok::Str(s) => format!("string \"{s}\""),
            Tok::Regex(s) => format!("regex r\"{s}\""),
            Tok::Num(n) => format!("number {n}"),
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::LBracket => "'['".into(),
            Tok::RBracket => "']'".into(),
            Tok::Dot => "'.'".into(),
            Tok::Comma => "','".into(),
            Tok::Eq => "'=='".into(),
            Tok::Ne => "'!='".into(),
            Tok::Lt => "'<'".into(),
            Tok::Le => "'<='".into(),
            Tok::Gt => "'>'".into(),
            Tok::Ge => "'>='".into(),
            Tok::Bang => "'!'".into(),
            Tok::AndAnd => "'&&'".into(),
            Tok::OrOr => "'||'".into(),
            Tok::End => "end of query".into(),
        }
    }
}

/// The longest query accepted; longer is almost certainly not typed by a person.
pub const MAX_QUERY: usize = 64 * 1024;

pub fn lex(src: &str) -> Result<Vec<(Tok, usize)>, ParseError> {
    if src.len() > MAX_QUERY {
        return Err(ParseError::at(src, MAX_QUERY, format!("query longer than {MAX_QUERY} bytes")));
    }
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        let two = |next: u8| b.get(i + 1) == Some(&next);
        let tok = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'(' => Tok::LParen,
            b')' => Tok::RParen,
            b'[' => Tok::LBracket,
            b']' => Tok::RBracket,
            b'.' if !b.get(i + 1).is_some_and(u8::is_ascii_digit) => Tok::Dot,
            b',' => Tok::Comma,
            b'=' if two(b'=') => Tok::Eq,
            b'!' if two(b'=') => Tok::Ne,
            b'<' if two(b'=') => Tok::Le,
            b'>' if two(b'=') => Tok::Ge,
            b'&' if two(b'&') => Tok::AndAnd,
            b'|' if two(b'|') => Tok::OrOr,
            b'<' => Tok::Lt,
            b'>' => Tok::Gt,
            b'!' => Tok::Bang,
            b'=' | b'&' | b'|' | b'~' => {
                return Err(ParseError::at(
                    src,
                    start,
                    format!("unknown operator '{}': expected one of == != < <= > >= && || !", (c as char)),
                ));
            }
            b'r' if matches!(b.get(i + 1), Some(b'"' | b'\'')) => {
                let (text, end) = string(src, i + 1)?;
                i = end;
                out.push((Tok::Regex(text), start));
                continue;
            }
            b'"' | b'\'' => {
                let (text, end) = string(src, i)?;
                i = end;
                out.push((Tok::Str(text), start));
                continue;
            }
            b'0'..=b'9' | b'.' | b'-' => {
                let mut end = i + 1;
                while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'.') {
                    end += 1;
                }
                let text = &src[i..end];
                let n: f64 =
                    text.parse().map_err(|_| ParseError::at(src, start, format!("'{text}' is not a number")))?;
                i = end;
                out.push((Tok::Num(n), start));
                continue;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let mut end = i + 1;
                while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
                    end += 1;
                }
                out.push((Tok::Ident(src[i..end].to_owned()), start));
                i = end;
                continue;
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or('?');
                return Err(ParseError::at(src, start, format!("unexpected character '{ch}'")));
            }
        };
        let len = match tok {
            Tok::Eq | Tok::Ne | Tok::Le | Tok::Ge | Tok::AndAnd | Tok::OrOr => 2,
            _ => 1,
        };
        i += len;
        out.push((tok, start));
    }
    out.push((Tok::End, src.len()));
    Ok(out)
}

/// A quoted string starting at `b[at]` (its quote character); returns the text and the offset after it.
/// Escapes: \" \' \\ \n \t \r, and in regexes every other backslash is kept for the regex engine.
fn string(src: &str, at: usize) -> Result<(String, usize), ParseError> {
    let b = src.as_bytes();
    let quote = b[at];
    let mut out = String::new();
    let mut i = at + 1;
    while i < b.len() {
        match b[i] {
            c if c == quote => return Ok((out, i + 1)),
            b'\\' if i + 1 < b.len() => {
                let next = b[i + 1];
                match next {
                    b'"' | b'\'' => out.push(next as char),
                    b'\\' => out.push('\\'),
                    b'n' => out.push('\n'),
                    b't' => out.push('\t'),
                    b'r' => out.push('\r'),
                    _ => {
                        out.push('\\');
                        i += 1;
                        continue;
                    }
                }
                i += 2;
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or('?');
                out.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    let q = quote as char;
    Err(ParseError::at(src, at, format!("unterminated string: expected a closing {q} before the end of the query")))
}
