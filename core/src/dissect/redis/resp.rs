//! RESP2 and RESP3, read incrementally and without holding values: a value's bulk payloads are passed
//! over, and only what pairing and reporting need is kept — the first two strings of an array (a
//! command's name and first argument, a pub/sub message's kind), an error's text, the last integer.
//! Linear in the bytes seen; holds at most one line head and a few short strings between calls.

/// Kept of an error's text, and of a string.
const ERROR_KEEP: usize = 256;
const STRING_KEEP: usize = 64;
/// The longest line (a type and length, an inline command, a simple string or error) read before the
/// stream is taken for something else; Redis's own limit on inline commands is 64 KiB.
const MAX_LINE: usize = 64 << 10;
/// Nesting deeper than this is not a reply any client sends or expects.
const MAX_DEPTH: usize = 32;
/// The largest bulk string Redis accepts (512 MiB), and elements of an aggregate.
const MAX_BULK: u64 = 512 << 20;
const MAX_ELEMENTS: u64 = 1 << 32;

/// A top-level value, as kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Value {
    /// Its RESP type: `simple`, `error`, `integer`, `bulk`, `null`, `array`, `map`, `set`, `push`,
    /// `double`, `boolean`, `bignum`, `verbatim`, or `inline` (a command as a line of words).
    pub kind: &'static str,
    /// Its first two strings: a simple or bulk string itself; an array's first two string elements.
    pub strings: Vec<String>,
    /// Its error text, or (an aggregate) the first error inside it.
    pub error: Option<String>,
    /// The last integer directly inside it (the subscription count of an `unsubscribe` reply).
    pub last_int: Option<i64>,
    /// Elements directly inside it (an inline command's words).
    pub elements: u64,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Broken(pub String);

struct Frame {
    left: u64,
    /// An attribute (`|`): metadata before the value it annotates, not a value itself.
    attribute: bool,
}

#[derive(Default)]
pub struct Reader {
    line: Vec<u8>,
    /// Bytes of the current line beyond what `line` keeps.
    line_len: usize,
    /// Payload of a bulk string still to come, and its CRLF.
    bulk_left: u64,
    crlf_left: u8,
    /// The bulk string being read is kept (up to `STRING_KEEP`) as one of `value.strings`.
    bulk_kept: Option<String>,
    bulk_kind: &'static str,
    stack: Vec<Frame>,
    value: Value,
    /// Requests may be inline commands (a line of words); replies may not.
    inline_allowed: bool,
}

impl Reader {
    pub fn requests() -> Reader {
        Reader { inline_allowed: true, ..Reader::default() }
    }

    pub fn replies() -> Reader {
        Reader::default()
    }

    /// Bytes held between calls.
    pub fn buffered(&self) -> usize {
        self.line.capacity() + self.value.strings.iter().map(String::capacity).sum::<usize>()
    }

    /// Reads `input`, handing each whole top-level value to `done`.
    pub fn feed(&mut self, mut input: &[u8], done: &mut impl FnMut(Value)) -> Result<(), Broken> {
        while !input.is_empty() {
            if self.crlf_left > 0 {
                let n = (self.crlf_left as usize).min(input.len());
                self.crlf_left -= n as u8;
                input = &input[n..];
                if self.crlf_left == 0 {
                    let kept = self.bulk_kept.take();
                    let kind = self.bulk_kind;
                    self.element(kind, kept, None, None, done);
                }
                continue;
            }
            if self.bulk_left > 0 {
                let n = (self.bulk_left.min(input.len() as u64)) as usize;
                if let Some(s) = &mut self.bulk_kept {
                    let room = STRING_KEEP.saturating_sub(s.len()).min(n);
                    s.push_str(&String::from_utf8_lossy(&input[..room]));
                }
                self.bulk_left -= n as u64;
                input = &input[n..];
                if self.bulk_left == 0 {
                    self.crlf_left = 2;
                }
                continue;
            }
            match input.iter().position(|&b| b == b'\n') {
                None => {
                    self.take_line_part(input)?;
                    return Ok(());
                }
                Some(i) => {
                    self.take_line_part(&input[..i])?;
                    input = &input[i + 1..];
                    self.line_done(done)?;
                }
            }
        }
        Ok(())
    }

    fn take_line_part(&mut self, part: &[u8]) -> Result<(), Broken> {
        let keep = ERROR_KEEP.saturating_sub(self.line.len()).min(part.len());
        self.line.extend_from_slice(&part[..keep]);
        self.line_len += part.len();
        if self.line_len > MAX_LINE {
            return Err(Broken(format!("a line longer than {MAX_LINE} bytes")));
        }
        Ok(())
    }

    fn line_done(&mut self, done: &mut impl FnMut(Value)) -> Result<(), Broken> {
        let mut line = std::mem::take(&mut self.line);
        let whole = self.line_len == line.len();
        self.line_len = 0;
        if line.last() == Some(&b'\r') && whole {
            line.pop();
        }
        let result = self.read_line(&line, whole, done);
        line.clear();
        self.line = line;
        result
    }

    fn read_line(&mut self, line: &[u8], whole: bool, done: &mut impl FnMut(Value)) -> Result<(), Broken> {
        let Some((&t, rest)) = line.split_first() else {
            // An empty line between inline commands is nothing.
            return if self.inline_allowed && self.stack.is_empty() {
                Ok(())
            } else {
                Err(Broken("an empty line where a value was expected".into()))
            };
        };
        let text = || String::from_utf8_lossy(rest).into_owned();
        match t {
            b'*' | b'%' | b'~' | b'>' | b'|' => {
                let n = count(rest, whole)?;
                let (kind, per) = match t {
                    b'*' => ("array", 1),
                    b'%' => ("map", 2),
                    b'~' => ("set", 1),
                    b'>' => ("push", 1),
                    _ => ("attribute", 2),
                };
                match n {
                    None => self.element("null", None, None, None, done),
                    Some(0) if t != b'|' => self.element(kind, None, None, None, done),
                    Some(0) => {}
                    Some(n) => {
                        if self.stack.len() >= MAX_DEPTH {
                            return Err(Broken(format!("values nested deeper than {MAX_DEPTH}")));
                        }
                        if self.stack.is_empty() && t != b'|' {
                            self.begin(kind);
                        }
                        self.stack.push(Frame { left: n * per, attribute: t == b'|' });
                    }
                }
            }
            b'$' | b'=' | b'!' => {
                let kind = match t {
                    b'$' => "bulk",
                    b'=' => "verbatim",
                    _ => "error",
                };
                match count(rest, whole)? {
                    None => self.element("null", None, None, None, done),
                    Some(n) if n > MAX_BULK => return Err(Broken(format!("a bulk string of {n} bytes"))),
                    Some(n) => {
                        let keeps = self.keeps_string() || kind == "error";
                        self.bulk_kept = keeps.then(String::new);
                        self.bulk_kind = kind;
                        self.bulk_left = n;
                        if n == 0 {
                            self.crlf_left = 2;
                        }
                    }
                }
            }
            b'+' => self.element("simple", Some(text()), None, None, done),
            b'-' => self.element("error", None, Some(text()), None, done),
            b':' => {
                let n = std::str::from_utf8(rest).ok().and_then(|s| s.parse::<i64>().ok());
                let n = n.ok_or_else(|| Broken("an integer that is not one".into()))?;
                self.element("integer", None, None, Some(n), done);
            }
            b'_' => self.element("null", None, None, None, done),
            b',' => self.element("double", None, None, None, done),
            b'#' => self.element("boolean", None, None, None, done),
            b'(' => self.element("bignum", None, None, None, done),
            _ if self.inline_allowed && self.stack.is_empty() => {
                let mut words = line.split(|b| b.is_ascii_whitespace()).filter(|w| !w.is_empty());
                self.begin("inline");
                for w in words.by_ref().take(2) {
                    self.value.strings.push(short(w));
                    self.value.elements += 1;
                }
                self.value.elements += words.count() as u64;
                self.finish(done);
            }
            _ => return Err(Broken(format!("a line starting with byte 0x{t:02x}"))),
        }
        Ok(())
    }

    /// Whether the string now starting is one kept: a top-level one, or one of an array's first two.
    fn keeps_string(&self) -> bool {
        match self.stack.as_slice() {
            [] => true,
            [f] => {
                !f.attribute && self.value.strings.len() < 2 && self.value.elements == self.value.strings.len() as u64
            }
            _ => false,
        }
    }

    fn begin(&mut self, kind: &'static str) {
        self.value = Value { kind, ..Value::default() };
    }

    /// A value ended: the top-level one, or an element of the aggregates open.
    fn element(
        &mut self,
        kind: &'static str,
        string: Option<String>,
        error: Option<String>,
        int: Option<i64>,
        done: &mut impl FnMut(Value),
    ) {
        let error = error.or_else(|| if kind == "error" { string.clone() } else { None });
        if self.stack.is_empty() {
            self.begin(kind);
            self.value.strings.extend(string.filter(|_| kind != "error"));
            self.value.error = error;
            self.value.last_int = int;
            self.finish(done);
            return;
        }
        let direct = self.stack.len() == 1 && !self.stack[0].attribute;
        if direct {
            if let Some(s) = string.filter(|_| kind != "error") {
                if self.value.strings.len() < 2 && self.value.elements == self.value.strings.len() as u64 {
                    self.value.strings.push(s);
                }
            }
            if int.is_some() {
                self.value.last_int = int;
            }
            self.value.elements += 1;
        }
        if self.value.error.is_none() && !self.stack.iter().any(|f| f.attribute) {
            self.value.error = error;
        }
        // Close every aggregate this element completes.
        while let Some(top) = self.stack.last_mut() {
            top.left -= 1;
            if top.left > 0 {
                return;
            }
            let attribute = top.attribute;
            self.stack.pop();
            if attribute {
                // The attribute annotated what comes next; it is no element itself.
                return;
            }
            if self.stack.is_empty() {
                self.finish(done);
                return;
            }
            if self.stack.len() == 1 && !self.stack[0].attribute {
                self.value.elements += 1;
            }
        }
    }

    fn finish(&mut self, done: &mut impl FnMut(Value)) {
        done(std::mem::take(&mut self.value));
    }
}

/// A length or count: `None` for -1 (null).
fn count(digits: &[u8], whole: bool) -> Result<Option<u64>, Broken> {
    let s = std::str::from_utf8(digits).ok().filter(|_| whole);
    match s.and_then(|s| s.parse::<i64>().ok()) {
        Some(-1) => Ok(None),
        Some(n) if (0..=MAX_ELEMENTS as i64).contains(&n) => Ok(Some(n as u64)),
        _ => Err(Broken(format!("a length that is not one: {:?}", String::from_utf8_lossy(digits)))),
    }
}

fn short(w: &[u8]) -> String {
    String::from_utf8_lossy(&w[..w.len().min(STRING_KEEP)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(reader: &mut Reader, wire: &[u8], split: usize) -> Result<Vec<Value>, Broken> {
        let mut got = Vec::new();
        for chunk in wire.chunks(split.max(1)) {
            reader.feed(chunk, &mut |v| got.push(v))?;
        }
        Ok(got)
    }

    #[test]
    fn commands_and_replies_read_the_same_in_any_split() {
        let requests = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*3\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n$1\r\nb\r\nPING\r\n";
        let replies: &[u8] = b"-WRONGTYPE Operation against a key\r\n$5\r\nhello\r\n$-1\r\n:3\r\n\
            *3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:0\r\n*2\r\n+OK\r\n-ERR in exec\r\n\
            |1\r\n+ttl\r\n:3\r\n:7\r\n%1\r\n+k\r\n*0\r\n>3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$0\r\n\r\n_\r\n";
        for split in 1..40 {
            let r = read(&mut Reader::requests(), requests, split).expect("requests");
            let names: Vec<_> = r.iter().map(|v| (v.strings.clone(), v.elements)).collect();
            assert_eq!(
                names,
                vec![
                    (vec!["GET".into(), "k".into()], 2),
                    (vec!["SUBSCRIBE".into(), "a".into()], 3),
                    (vec!["PING".into()], 1)
                ],
                "split {split}"
            );
            let v = read(&mut Reader::replies(), replies, split).expect("replies");
            let kinds: Vec<_> = v.iter().map(|v| v.kind).collect();
            assert_eq!(kinds, ["error", "bulk", "null", "integer", "array", "array", "integer", "map", "push", "null"]);
            assert_eq!(v[0].error.as_deref(), Some("WRONGTYPE Operation against a key"));
            assert_eq!((v[4].strings[0].as_str(), v[4].last_int), ("unsubscribe", Some(0)));
            assert_eq!(v[5].error.as_deref(), Some("ERR in exec"), "an error inside EXEC's reply");
            assert_eq!(v[6].last_int, Some(7), "the attribute is not the value");
            assert_eq!(v[8].strings, ["message", "c"]);
        }
    }

    #[test]
    fn bulk_payloads_are_passed_over_not_held_and_nonsense_is_broken() {
        let mut wire = b"$100000\r\n".to_vec();
        wire.extend(std::iter::repeat_n(b'x', 100_000));
        wire.extend_from_slice(b"\r\n+OK\r\n");
        let mut r = Reader::replies();
        let v = read(&mut r, &wire, 1000).expect("read");
        assert_eq!(v.len(), 2);
        assert!(r.buffered() < 1024, "held {}", r.buffered());
        assert!(read(&mut Reader::replies(), b"*-5\r\n", 10).is_err());
        assert!(read(&mut Reader::replies(), b"GET x\r\n", 10).is_err(), "no inline replies");
        let deep = "*1\r\n".repeat(40);
        assert!(read(&mut Reader::replies(), deep.as_bytes(), 10).is_err());
        let long = vec![b'+'; MAX_LINE + 10];
        assert!(read(&mut Reader::replies(), &long, 4096).is_err());
    }
}
