//! What a selector finds in a record, borrowed so that evaluation allocates nothing.

use std::fmt::{self, Write};

use crate::ast::Seg;

/// A field's value. `Present` is an object or array: it exists, but is not comparable to a literal.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    Num(f64),
    Str(&'a str),
    /// Text formatted on the stack (addresses, timestamps): no allocation.
    Text(Inline),
    Present,
}

/// A short string kept inline; longer text is cut (48 bytes hold any IPv6 address or timestamp).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Inline {
    buf: [u8; 48],
    len: u8,
}

impl Inline {
    pub fn format(args: fmt::Arguments<'_>) -> Inline {
        let mut s = Inline { buf: [0; 48], len: 0 };
        let _ = s.write_fmt(args);
        s
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or("")
    }
}

impl fmt::Write for Inline {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for ch in s.chars() {
            let mut tmp = [0u8; 4];
            let bytes = ch.encode_utf8(&mut tmp).as_bytes();
            let at = usize::from(self.len);
            if at + bytes.len() > self.buf.len() {
                return Err(fmt::Error);
            }
            self.buf[at..at + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len() as u8;
        }
        Ok(())
    }
}

impl fmt::Debug for Inline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<'a> Value<'a> {
    /// The value as text, if it is text.
    pub fn text(&self) -> Option<TextRef<'_>> {
        match self {
            Value::Str(s) => Some(TextRef(s)),
            Value::Text(t) => Some(TextRef(t.as_str())),
            _ => None,
        }
    }

    pub fn from_opt_str(s: Option<&'a str>) -> Value<'a> {
        s.map_or(Value::Null, Value::Str)
    }
}

/// Borrowed text of a value.
pub struct TextRef<'a>(pub &'a str);

/// Anything KFL can filter: a record that answers selectors. Names are the JSON field names of SPEC §2.
pub trait Record {
    /// The value at `path`, or `None` when there is no such field.
    fn get(&self, path: &[Seg]) -> Option<Value<'_>>;
}

/// The name a step selects by: `.name` and `["name"]` are the same for objects.
pub fn seg_name(seg: &Seg) -> Option<&str> {
    match seg {
        Seg::Field(s) | Seg::Key(s) => Some(s),
        Seg::Index(_) => None,
    }
}

#[cfg(feature = "json")]
impl Record for serde_json::Value {
    fn get(&self, path: &[Seg]) -> Option<Value<'_>> {
        let mut v = self;
        for seg in path {
            v = match (seg, v) {
                (Seg::Index(i), serde_json::Value::Array(a)) => a.get(*i)?,
                (seg, serde_json::Value::Object(m)) => {
                    let name = seg_name(seg)?;
                    match m.get(name) {
                        Some(x) => x,
                        // Header names are case-insensitive; so is their lookup.
                        None => m.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, x)| x)?,
                    }
                }
                _ => return None,
            };
        }
        Some(match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => Value::Num(n.as_f64().unwrap_or(f64::NAN)),
            serde_json::Value::String(s) => Value::Str(s),
            _ => Value::Present,
        })
    }
}
