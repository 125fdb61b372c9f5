//! The header fields of one HTTP message, as an entry keeps them: names in lower case (HTTP names are
//! case-insensitive), a repeated name's values joined with ", ", in name order. Serialises as the JSON
//! object SPEC §2 shows.
//!
//! Kept as one string and a list of offsets into it rather than a map of owned strings: every HTTP entry
//! carries two of these, and a map costs two allocations per field to build and as many to free, which
//! was a sixth of the analyzer's time on busy HTTP traffic.

use std::fmt;
use std::ops::Range;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Default)]
pub struct Headers {
    /// Names and values, back to back in the order they were added; a joined value is appended.
    text: String,
    /// One per distinct name, sorted by name.
    fields: Vec<Field>,
}

/// Where one field's name and value lie in `text`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Field {
    name: (u32, u32),
    value: (u32, u32),
}

/// `text` is addressed with u32 offsets; a field that would end beyond them is not kept. Real heads are
/// bounded far below this by the parser, and JSON bodies by the operator's request limit.
const MAX_TEXT: usize = u32::MAX as usize;

impl Headers {
    pub fn new() -> Self {
        Headers::default()
    }

    /// Room for `fields` fields of `bytes` bytes of names and values in all, so building allocates twice.
    pub fn with_capacity(fields: usize, bytes: usize) -> Self {
        Headers { text: String::with_capacity(bytes), fields: Vec::with_capacity(fields) }
    }

    /// Adds a field. A name seen before (in any case) gets `value` after its value and ", ".
    pub fn append(&mut self, name: &str, value: &str) {
        let start = self.text.len();
        if start + name.len() + value.len() > MAX_TEXT {
            return;
        }
        self.text.push_str(name);
        self.text[start..].make_ascii_lowercase();
        let name_at = (offset(start), offset(self.text.len()));
        let lower = &self.text[range(name_at)];
        match self.fields.binary_search_by(|f| self.text[range(f.name)].cmp(lower)) {
            Ok(i) => {
                // Join: the old value, ", ", the new one, as a new value at the end; the name just written
                // is not needed (the field keeps its first).
                self.text.truncate(start);
                let old = self.fields[i].value;
                if start + range(old).len() + 2 + value.len() > MAX_TEXT {
                    return;
                }
                // (A copy: repeated names are rare, and String::extend_from_within is newer than our MSRV.)
                let old_value = self.text[range(old)].to_owned();
                self.text.push_str(&old_value);
                self.text.push_str(", ");
                self.text.push_str(value);
                self.fields[i].value = (offset(start), offset(self.text.len()));
            }
            Err(i) => {
                self.text.push_str(value);
                let field = Field { name: name_at, value: (name_at.1, offset(self.text.len())) };
                self.fields.insert(i, field);
            }
        }
    }

    /// The value of `name`; lower-case names are found directly, others by comparing without case.
    #[inline]
    pub fn get(&self, name: &str) -> Option<&str> {
        // Compared as bytes (the same order as strings, without checking character boundaries each time).
        let (text, name) = (self.text.as_bytes(), name.as_bytes());
        let exact = self.fields.binary_search_by(|f| text[range(f.name)].cmp(name));
        let field = match exact {
            Ok(i) => self.fields.get(i),
            Err(_) => self.fields.iter().find(|f| text[range(f.name)].eq_ignore_ascii_case(name)),
        };
        field.and_then(|f| self.text.get(range(f.value)))
    }

    /// `(name, value)` in name order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.fields.iter().map(|f| (&self.text[range(f.name)], &self.text[range(f.value)]))
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Bytes held on the heap, for memory budgets.
    pub fn heap_bytes(&self) -> usize {
        self.text.capacity() + self.fields.capacity() * std::mem::size_of::<Field>()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

fn offset(at: usize) -> u32 {
    // `append` keeps `text` within MAX_TEXT, so this never saturates.
    u32::try_from(at).unwrap_or(u32::MAX)
}

fn range((start, end): (u32, u32)) -> Range<usize> {
    start as usize..end as usize
}

impl<N: AsRef<str>, V: AsRef<str>> FromIterator<(N, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Self {
        let mut h = Headers::new();
        for (n, v) in iter {
            h.append(n.as_ref(), v.as_ref());
        }
        h
    }
}

/// Equal when they hold the same fields, however the text happens to be laid out.
impl PartialEq for Headers {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Headers {}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for Headers {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.len()))?;
        for (name, value) in self.iter() {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = Headers;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of header names to string values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Headers, A::Error> {
                let mut h = Headers::new();
                while let Some((name, value)) = map.next_entry::<String, String>()? {
                    h.append(&name, &value);
                }
                Ok(h)
            }
        }
        d.deserialize_map(Fields)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn names_are_lower_case_sorted_and_repeats_joined() {
        let h: Headers = [("Host", "shop"), ("Accept", "*/*"), ("X-Tag", "a"), ("user-agent", "bench"), ("x-tag", "b")]
            .into_iter()
            .collect();
        let fields: Vec<_> = h.iter().collect();
        assert_eq!(fields, [("accept", "*/*"), ("host", "shop"), ("user-agent", "bench"), ("x-tag", "a, b")]);
        assert_eq!(h.len(), 4);
        assert_eq!(h.get("host"), Some("shop"));
        assert_eq!(h.get("X-TAG"), Some("a, b"), "any case finds a field");
        assert_eq!(h.get("via"), None);
        assert_eq!(h.get("VIA"), None);
    }

    #[test]
    fn a_name_joined_three_times_keeps_every_value_in_order() {
        let h: Headers = [("a", "1"), ("b", "x"), ("A", "2"), ("a", "3")].into_iter().collect();
        assert_eq!(h.get("a"), Some("1, 2, 3"));
        assert_eq!(h.get("b"), Some("x"));
    }

    #[test]
    fn same_json_as_the_map_it_replaces() {
        let pairs = [("Content-Type", "application/json"), ("content-length", "12"), ("Set-Cookie", "a=1")];
        let h: Headers = pairs.into_iter().collect();
        let mut map = BTreeMap::new();
        for (n, v) in pairs {
            map.insert(n.to_ascii_lowercase(), v.to_owned());
        }
        let json = serde_json::to_string(&h).expect("serialises");
        assert_eq!(json, serde_json::to_string(&map).expect("serialises"));
        let back: Headers = serde_json::from_str(&json).expect("parses back");
        assert_eq!(back, h);
        assert_eq!(serde_json::to_string(&Headers::new()).expect("serialises"), "{}");
        assert!(serde_json::from_str::<Headers>(r#"{"a": 1}"#).is_err(), "values are strings");
    }

    #[test]
    fn names_and_values_outside_ascii_stay_whole() {
        // Only ASCII letters fold (HTTP names are ASCII tokens; these come from JSON, not the wire).
        let h: Headers = [("X-Ünï", "wert ✓"), ("x-Ünï", "zwei"), ("x-ünï", "drei")].into_iter().collect();
        assert_eq!(h.iter().collect::<Vec<_>>(), [("x-Ünï", "wert ✓, zwei"), ("x-ünï", "drei")]);
        assert_eq!(h.get("X-ÜNÏ"), None, "no Unicode case folding");
    }
}
