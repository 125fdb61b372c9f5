//! The two hellos (RFC 8446 §4.1): the version offered or chosen, the server name asked for, and whether a
//! ServerHello is really a HelloRetryRequest.

/// The `random` of a HelloRetryRequest (RFC 8446 §4.1.3: SHA-256 of "HelloRetryRequest").
const HELLO_RETRY_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91, 0xc2, 0xa2, 0x11,
    0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

pub struct Hello {
    pub version: u16,
    pub sni: Option<String>,
    /// A ServerHello that asks the client to try again (HelloRetryRequest): not the ServerHello.
    pub retry: bool,
}

/// Reads a ClientHello (`client`) or ServerHello body: the version (from supported_versions when present)
/// and, from a ClientHello, the server name. `None` when it does not parse.
pub fn hello(b: &[u8], client: bool) -> Option<Hello> {
    let mut r = Reader(b);
    let legacy = r.u16()?;
    let random = r.take(32)?;
    let sid = r.u8()?;
    r.skip(usize::from(sid))?;
    if client {
        let suites = r.u16()?;
        r.skip(usize::from(suites))?;
        let comp = r.u8()?;
        r.skip(usize::from(comp))?;
    } else {
        r.skip(3)?; // cipher suite, compression method
    }
    let mut out = Hello { version: legacy, sni: None, retry: !client && random == HELLO_RETRY_RANDOM };
    let Some(ext_len) = r.u16() else { return Some(out) };
    let mut exts = Reader(r.take(usize::from(ext_len))?);
    while let (Some(kind), Some(len)) = (exts.u16(), exts.u16()) {
        let mut e = Reader(exts.take(usize::from(len))?);
        match kind {
            0 if client => {
                // server_name: a list of (type, name); type 0 is a host name.
                let _list = e.u16()?;
                if e.u8()? == 0 {
                    let n = e.u16()?;
                    let name = e.take(usize::from(n))?;
                    if name.iter().all(|c| c.is_ascii_graphic()) {
                        out.sni = Some(String::from_utf8_lossy(name).to_ascii_lowercase());
                    }
                }
            }
            43 if client => {
                // supported_versions: the highest offered (GREASE values ignored).
                let n = e.u8()?;
                let mut list = Reader(e.take(usize::from(n))?);
                while let Some(v) = list.u16() {
                    if v & 0x0f0f != 0x0a0a && v > out.version && v <= 0x0304 {
                        out.version = v;
                    }
                }
            }
            43 => out.version = e.u16()?,
            _ => {}
        }
    }
    Some(out)
}

/// Bounds-checked reads over a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
}
