//! Messages that state their length in a header (PostgreSQL, MySQL), read with a bound: a message's
//! header and the first bytes its reader wants of it (`keep`, decided from the header) are handed over
//! whole, the rest is passed over without being held — a connection holds at most one header and
//! `keep` bytes between calls however large its rows are.

/// A message as handed over: its header, its body's first bytes (at most `keep`), its body's length.
pub struct Message<'a> {
    pub header: &'a [u8],
    pub body: &'a [u8],
    pub len: usize,
}

/// The header does not make sense (a length out of bounds): the stream is not what it was taken for.
#[derive(Debug, PartialEq, Eq)]
pub struct Broken(pub String);

#[derive(Default)]
pub struct Framer {
    buf: Vec<u8>,
    /// Bytes of the current message's body still to pass over.
    skip: usize,
    /// `buf` holds a message handed over last call: cleared before reading on.
    delivered: bool,
}

impl Framer {
    /// The next whole message from `input` (advanced past what was read), or `None` when `input` ran out
    /// first. `header_len`: the header's size; `body`: from a header, the body's length and how much of
    /// it to keep.
    pub fn next<'a>(
        &'a mut self,
        input: &mut &[u8],
        header_len: usize,
        body: impl Fn(&[u8]) -> Result<(usize, usize), Broken>,
    ) -> Result<Option<Message<'a>>, Broken> {
        if std::mem::take(&mut self.delivered) {
            self.buf.clear();
        }
        if self.skip > 0 {
            let n = self.skip.min(input.len());
            self.skip -= n;
            *input = &input[n..];
            if self.skip > 0 {
                return Ok(None);
            }
        }
        if input.is_empty() && self.buf.len() < header_len {
            return Ok(None);
        }
        if self.buf.len() < header_len {
            let n = (header_len - self.buf.len()).min(input.len());
            self.buf.extend_from_slice(&input[..n]);
            *input = &input[n..];
            if self.buf.len() < header_len {
                return Ok(None);
            }
        }
        let (len, keep) = body(&self.buf[..header_len])?;
        let want = len.min(keep);
        let have = self.buf.len() - header_len;
        if have < want {
            let n = (want - have).min(input.len());
            self.buf.extend_from_slice(&input[..n]);
            *input = &input[n..];
            if self.buf.len() - header_len < want {
                return Ok(None);
            }
        }
        self.skip = len - want;
        self.delivered = true;
        let (header, body) = self.buf.split_at(header_len);
        Ok(Some(Message { header, body, len }))
    }

    /// Bytes held between calls.
    pub fn buffered(&self) -> usize {
        self.buf.capacity()
    }

    /// Nothing of a message is held (between messages).
    #[cfg(test)]
    pub fn at_boundary(&self) -> bool {
        (self.buf.is_empty() || self.delivered) && self.skip == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn be_len(h: &[u8]) -> Result<(usize, usize), Broken> {
        Ok((u16::from_be_bytes([h[0], h[1]]) as usize, 4))
    }

    #[test]
    fn messages_come_whole_in_any_split_and_long_bodies_are_passed_over() {
        let mut wire = vec![0, 3, b'a', b'b', b'c', 0, 10];
        wire.extend_from_slice(b"0123456789");
        wire.extend_from_slice(&[0, 0]);
        for split in 1..wire.len() {
            let mut f = Framer::default();
            let mut got = Vec::new();
            for chunk in wire.chunks(split) {
                let mut input = chunk;
                while let Some(m) = f.next(&mut input, 2, be_len).expect("frames") {
                    got.push((m.body.to_vec(), m.len));
                }
                assert!(input.is_empty());
            }
            assert_eq!(got, vec![(b"abc".to_vec(), 3), (b"0123".to_vec(), 10), (vec![], 0)], "split {split}");
            assert!(f.buffered() <= 64 && f.at_boundary());
        }
    }
}
