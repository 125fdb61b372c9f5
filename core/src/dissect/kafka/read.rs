//! Kafka's primitive types, read forward from a byte slice: integers, unsigned varints, strings and
//! arrays in both encodings (classic, with int16/int32 lengths, and the flexible versions' compact ones,
//! with varint lengths and tagged fields). Every read checks the bytes left and returns `None` past them:
//! a response cut short by the bytes kept is partly read, never a panic.

pub struct Reader<'a> {
    b: &'a [u8],
    at: usize,
    /// The flexible versions' encoding (KIP-482).
    pub compact: bool,
}

impl<'a> Reader<'a> {
    pub fn new(b: &'a [u8], compact: bool) -> Reader<'a> {
        Reader { b, at: 0, compact }
    }

    /// Bytes read so far.
    pub fn position(&self) -> usize {
        self.at
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }

    pub fn i8(&mut self) -> Option<i8> {
        Some(self.take(1)?[0] as i8)
    }

    pub fn i16(&mut self) -> Option<i16> {
        let s = self.take(2)?;
        Some(i16::from_be_bytes([s[0], s[1]]))
    }

    pub fn i32(&mut self) -> Option<i32> {
        let s = self.take(4)?;
        Some(i32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }

    pub fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }

    pub fn uvarint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..35).step_by(7) {
            let b = self.take(1)?[0];
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    /// A length: `None` (absent) for null, as either encoding writes it.
    fn length(&mut self, wide: bool) -> Option<Option<usize>> {
        if self.compact {
            return Some(match self.uvarint()? {
                0 => None,
                n => Some(usize::try_from(n - 1).ok()?),
            });
        }
        let n = if wide { i64::from(self.i32()?) } else { i64::from(self.i16()?) };
        Some(if n < 0 { None } else { Some(usize::try_from(n).ok()?) })
    }

    /// A (nullable) string, kept up to 256 bytes.
    pub fn string(&mut self) -> Option<Option<String>> {
        let Some(n) = self.length(false)? else { return Some(None) };
        let s = self.take(n)?;
        Some(Some(String::from_utf8_lossy(&s[..n.min(256)]).into_owned()))
    }

    /// (Nullable) bytes, passed over.
    pub fn bytes(&mut self) -> Option<()> {
        match self.length(true)? {
            Some(n) => self.skip(n),
            None => Some(()),
        }
    }

    /// An array's element count (0 for null).
    pub fn array(&mut self) -> Option<usize> {
        Some(self.length(true)?.unwrap_or(0))
    }

    /// Tagged fields (flexible versions only), passed over.
    pub fn tags(&mut self) -> Option<()> {
        if !self.compact {
            return Some(());
        }
        for _ in 0..self.uvarint()? {
            self.uvarint()?;
            let n = usize::try_from(self.uvarint()?).ok()?;
            self.skip(n)?;
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_encodings_read_and_short_input_is_none() {
        let mut r = Reader::new(&[0, 3, b'a', b'b', b'c', 0xff, 0xff, 0, 0, 0, 2], false);
        assert_eq!(r.string(), Some(Some("abc".into())));
        assert_eq!(r.string(), Some(None));
        assert_eq!(r.array(), Some(2));
        let mut r = Reader::new(&[4, b'a', b'b', b'c', 0, 3, 1, 5, 2, b'x', b'y', 0x96, 0x01], true);
        assert_eq!(r.string(), Some(Some("abc".into())));
        assert_eq!(r.string(), Some(None));
        assert_eq!(r.array(), Some(2));
        assert_eq!(r.tags(), Some(()));
        assert_eq!(r.uvarint(), Some(150));
        assert_eq!(Reader::new(&[0, 9, b'a'], false).string(), None);
        assert_eq!(Reader::new(&[0xff; 8], true).uvarint(), None);
    }
}
