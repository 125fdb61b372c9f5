//! Framing HTTP/1.x messages in one direction of a stream. Headers are buffered (up to a limit) and parsed
//! by httparse, as leniently as nginx, Envoy and browsers are (SPEC §3.5); bodies are counted, never
//! stored. A head is parsed once it is complete (the buffered bytes are only scanned for its end), so the
//! cost is linear in the bytes seen however the head is segmented. Errors come back as the `error.msg` of a
//! dissection entry: `parser error: …` for broken grammar, `unexpected EOF: …` for a stream that ended
//! inside a message. After a gap that hides message boundaries the parser resynchronises at the next line
//! that starts a message.

use std::mem::MaybeUninit;

use super::detect::{looks_like_request, looks_like_response};
use crate::dissect::Verdict;
use crate::entry::{Headers, Request, Response};
use crate::time::Timestamp;

/// The most header bytes one message may have before it is a parser error.
pub const MAX_HEAD: usize = 64 * 1024;
/// The most header fields one message may have (nginx and Envoy allow about this many within their size
/// limits; SPEC §3.5 asks for 256).
const MAX_HEADERS: usize = 256;
/// Bytes kept across chunks while resynchronising: enough to recognise a start line.
const RESYNC_KEEP: usize = 32;
/// A head buffer's allocation kept for the next message, at most.
const KEPT_CAPACITY: usize = 4096;
/// Chunk-size and trailer lines longer than this are a parser error.
const MAX_LINE: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Request,
    Response,
}

impl Role {
    fn noun(self) -> &'static str {
        match self {
            Role::Request => "request",
            Role::Response => "response",
        }
    }
}

/// A parsed message head.
pub enum Head {
    Request(Request),
    Response(Response),
}

/// What the body of a message is, as decided by the other direction (HEAD, 1xx, 204, 304, CONNECT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyRule {
    /// Framed by its own headers: chunked, Content-Length, or (responses only) the end of the stream.
    Normal,
    /// No body whatever the headers say.
    None,
    /// The stream stops being HTTP after this head (101 Switching Protocols, CONNECT 2xx).
    Tunnel,
}

/// Receives message boundaries as the parser finds them.
pub trait Handler {
    fn head(&mut self, head: Head, ts: Timestamp) -> BodyRule;
    fn message_end(&mut self, body_size: u64, ts: Timestamp);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Waiting for (or inside) a message head; partial bytes sit in `buf`.
    Head,
    Length(u64),
    UntilClose,
    ChunkSize,
    ChunkData(u64),
    /// After chunk data: `true` once the CR was seen.
    ChunkDataEnd(bool),
    Trailer,
    /// After a 101 or CONNECT: the rest is not HTTP.
    Tunnel,
    /// A gap hid message boundaries: looking for the next line that starts a message. `line_start`: the
    /// next byte begins a line (the gap ended at a segment boundary, or a newline was just seen).
    Resync {
        line_start: bool,
    },
    /// After a dissection error: nothing more is parsed.
    Failed,
}

/// What a gap did to the framing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GapEffect {
    /// Inside a body of known length (or one that runs to the close): counted, framing intact.
    Kept,
    /// Message boundaries were lost; `in_head` says whether a message head was being read (that message
    /// is lost), else whole messages may have been in the gap. The parser resynchronises.
    Resync { in_head: bool },
}

pub struct Parser {
    role: Role,
    state: State,
    buf: Vec<u8>,
    /// How much of `buf` has been searched for the end of the head.
    scanned: usize,
    /// The buffered head's first line is complete (it was parsed once, to catch a bad start line early).
    start_line_checked: bool,
    body_size: u64,
    /// The other side answered before this message's body was sent (a final status to
    /// `Expect: 100-continue`): the client may close without sending it.
    body_waived: bool,
    /// The bytes that followed the head that made the stream a tunnel, in the same input: the start of
    /// the protocol switched to (an `h2c` server's first frames). Taken at once by the dissector.
    tunnel_rest: Vec<u8>,
}

impl Parser {
    pub fn new(role: Role) -> Self {
        Parser {
            role,
            state: State::Head,
            buf: Vec::new(),
            scanned: 0,
            start_line_checked: false,
            body_size: 0,
            body_waived: false,
            tunnel_rest: Vec::new(),
        }
    }

    /// What followed the head that started a tunnel (see `tunnel_rest`).
    pub fn take_tunnel_rest(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.tunnel_rest)
    }

    pub fn is_tunnel(&self) -> bool {
        self.state == State::Tunnel
    }

    /// Bytes held between calls (a head, or a chunk line, not yet whole).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    pub fn fail(&mut self) {
        self.state = State::Failed;
        self.buf = Vec::new();
    }

    /// Whether the parser is inside a message body (its head seen, its end not yet).
    pub fn in_body(&self) -> bool {
        matches!(
            self.state,
            State::Length(_) | State::ChunkSize | State::ChunkData(_) | State::ChunkDataEnd(_) | State::Trailer
        )
    }

    /// The current message's body need not come (see `body_waived`).
    pub fn waive_body(&mut self) {
        if self.in_body() {
            self.body_waived = true;
        }
    }

    pub fn feed<H: Handler>(&mut self, mut input: &[u8], ts: Timestamp, h: &mut H) -> Result<(), String> {
        while !input.is_empty() {
            match self.state {
                State::Head => {
                    if self.buf.is_empty() {
                        // Empty lines between messages are allowed (RFC 9112 §2.2).
                        let skip = input.iter().take_while(|b| matches!(b, b'\r' | b'\n')).count();
                        input = &input[skip..];
                        if input.is_empty() {
                            break;
                        }
                        match self.try_head(input, ts, h)? {
                            Some(n) => input = &input[n..],
                            None => {
                                self.check_head_len(input.len())?;
                                self.buf.extend_from_slice(input);
                                // httparse looked at all of it: the head does not end in these bytes.
                                self.scanned = self.buf.len();
                                self.start_line_checked = self.buf.contains(&b'\n');
                                break;
                            }
                        }
                    } else {
                        let old = self.buf.len();
                        let mut buf = std::mem::take(&mut self.buf);
                        buf.extend_from_slice(input);
                        // Parse only once the head can be complete (or its first line, once, to catch a
                        // bad start line early): re-parsing the whole buffer for every segment would be
                        // quadratic in the number of segments.
                        let from = self.scanned.saturating_sub(2);
                        let ends = head_end(&buf[from..]).is_some();
                        let first_line = !self.start_line_checked && buf[from..].contains(&b'\n');
                        self.scanned = buf.len();
                        if !ends && !first_line {
                            self.check_head_len(buf.len())?;
                            self.buf = buf;
                            break;
                        }
                        self.start_line_checked |= first_line;
                        match self.try_head(&buf, ts, h)? {
                            Some(n) => {
                                // The head ends in the new bytes: the old ones alone were incomplete.
                                input = &input[n.saturating_sub(old).min(input.len())..];
                                buf.clear();
                                // A big head's buffer is not kept for the next, usually small, one.
                                if buf.capacity() <= KEPT_CAPACITY {
                                    self.buf = buf;
                                }
                                self.scanned = 0;
                                self.start_line_checked = false;
                            }
                            None => {
                                self.check_head_len(buf.len())?;
                                self.buf = buf;
                                break;
                            }
                        }
                    }
                }
                State::Length(rem) => {
                    let take = rem.min(input.len() as u64);
                    input = &input[take as usize..];
                    self.body_size += take;
                    if rem == take {
                        self.end_message(ts, h);
                    } else {
                        self.state = State::Length(rem - take);
                    }
                }
                State::UntilClose | State::Tunnel | State::Failed => {
                    match self.state {
                        State::UntilClose => self.body_size += input.len() as u64,
                        State::Tunnel => self.tunnel_rest.extend_from_slice(input),
                        _ => {}
                    }
                    break;
                }
                State::Resync { line_start } => {
                    let mut data = std::mem::take(&mut self.buf);
                    // Each new piece of input starts a segment, and segments often start messages.
                    let segment_start = data.len();
                    data.extend_from_slice(input);
                    return match self.find_message_start(&data, line_start, segment_start) {
                        Some(at) => {
                            self.state = State::Head;
                            self.feed(&data[at..], ts, h)
                        }
                        None => Ok(()),
                    };
                }
                State::ChunkSize | State::Trailer => {
                    let Some(nl) = input.iter().position(|b| *b == b'\n') else {
                        self.push_line(input)?;
                        break;
                    };
                    self.push_line(&input[..nl])?;
                    input = &input[nl + 1..];
                    let line = std::mem::take(&mut self.buf);
                    let line_text = line.strip_suffix(b"\r").unwrap_or(&line);
                    if self.state == State::ChunkSize {
                        let size = parse_chunk_size(line_text).ok_or_else(|| {
                            format!("parser error: bad chunk size line {:?}", String::from_utf8_lossy(line_text))
                        })?;
                        self.state = if size == 0 { State::Trailer } else { State::ChunkData(size) };
                    } else if line_text.is_empty() {
                        self.end_message(ts, h);
                    }
                    self.buf = line;
                    self.buf.clear();
                }
                State::ChunkData(rem) => {
                    let take = rem.min(input.len() as u64);
                    input = &input[take as usize..];
                    self.body_size += take;
                    self.state = if rem == take { State::ChunkDataEnd(false) } else { State::ChunkData(rem - take) };
                }
                State::ChunkDataEnd(seen_cr) => {
                    match (input[0], seen_cr) {
                        (b'\r', false) => self.state = State::ChunkDataEnd(true),
                        (b'\n', _) => self.state = State::ChunkSize,
                        (other, _) => {
                            return Err(format!("parser error: chunk data followed by {other:#04x}, not CRLF"));
                        }
                    }
                    input = &input[1..];
                }
            }
        }
        Ok(())
    }

    /// The stream lost `len` bytes. Inside a body of known length (or one that runs to the close) they are
    /// counted and framing goes on; a message whose head was parsed and whose end fell in the gap is ended
    /// here (its pair still reported); anywhere else boundaries are lost and the parser resynchronises.
    pub fn gap<H: Handler>(&mut self, len: u64, ts: Timestamp, h: &mut H) -> GapEffect {
        match self.state {
            State::Length(rem) if len <= rem => {
                self.body_size += len;
                if len == rem {
                    self.end_message(ts, h);
                } else {
                    self.state = State::Length(rem - len);
                }
                GapEffect::Kept
            }
            State::ChunkData(rem) if len <= rem => {
                self.body_size += len;
                self.state = if len == rem { State::ChunkDataEnd(false) } else { State::ChunkData(rem - len) };
                GapEffect::Kept
            }
            State::UntilClose => {
                self.body_size += len;
                GapEffect::Kept
            }
            State::Tunnel | State::Failed => GapEffect::Kept,
            State::Resync { .. } => {
                self.buf.clear();
                self.state = State::Resync { line_start: true };
                GapEffect::Resync { in_head: false }
            }
            State::Head => {
                let in_head = !self.buf.is_empty();
                self.resync();
                GapEffect::Resync { in_head }
            }
            State::Length(_) | State::ChunkSize | State::ChunkData(_) | State::ChunkDataEnd(_) | State::Trailer => {
                // The message's head is known and its end was in the gap (or cannot be found after it):
                // report it as far as it was seen rather than lose it — even a 5xx.
                self.body_size += len;
                self.end_message(ts, h);
                self.resync();
                GapEffect::Resync { in_head: false }
            }
        }
    }

    fn resync(&mut self) {
        self.buf.clear();
        self.scanned = 0;
        self.start_line_checked = false;
        // A gap usually ends at a segment boundary, and segments often begin with a message.
        self.state = State::Resync { line_start: true };
    }

    /// The offset in `data` of the first place that starts a message of this parser's role, if any: the
    /// start of a line, or of a segment (`segment_start`: where this call's input begins). Keeps a possible
    /// start cut by the end of `data` for the next call.
    fn find_message_start(&mut self, data: &[u8], line_start: bool, segment_start: usize) -> Option<usize> {
        let role = self.role;
        let looks = move |b: &[u8]| match role {
            Role::Request => looks_like_request(b),
            Role::Response => looks_like_response(b),
        };
        for p in 0..data.len() {
            let candidate = (p == 0 && line_start) || p == segment_start || (p > 0 && data[p - 1] == b'\n');
            if candidate {
                if let Some(found) = self.try_start(data, p, &looks) {
                    return found;
                }
            }
        }
        self.buf.clear();
        self.state = State::Resync { line_start: data.last() == Some(&b'\n') };
        None
    }

    /// Whether a message starts at `p`: `Some(Some(at))` found, `Some(None)` maybe (kept for the next
    /// call), `None` not.
    fn try_start(&mut self, data: &[u8], p: usize, looks: &impl Fn(&[u8]) -> Verdict) -> Option<Option<usize>> {
        let rest = &data[p..];
        let lead = rest.iter().take_while(|b| matches!(b, b'\r' | b'\n')).count();
        match looks(&rest[lead..]) {
            Verdict::Yes => Some(Some(p + lead)),
            Verdict::NeedMore if rest.len() - lead < RESYNC_KEEP => {
                self.buf = rest.to_vec();
                self.state = State::Resync { line_start: true };
                Some(None)
            }
            _ => None,
        }
    }

    /// The stream ended (`why`: "connection closed", "connection reset", "capture ended"). A
    /// close-delimited body ends here; any other partial message is an unexpected EOF.
    pub fn eof<H: Handler>(&mut self, why: &str, ts: Timestamp, h: &mut H) -> Result<(), String> {
        let noun = self.role.noun();
        if self.body_waived && self.in_body() {
            // The answer came before the body (Expect: 100-continue); the client may close instead.
            self.body_waived = false;
            self.end_message(ts, h);
            return Ok(());
        }
        let err = match self.state {
            State::Head if !self.buf.is_empty() => {
                format!("unexpected EOF: {why} after {} bytes of the {noun} header", self.buf.len())
            }
            State::Length(rem) => {
                format!("unexpected EOF: {why} {rem} bytes short of the {noun} body's Content-Length")
            }
            State::ChunkSize | State::ChunkData(_) | State::ChunkDataEnd(_) | State::Trailer => {
                format!("unexpected EOF: {why} before the last chunk of the {noun} body")
            }
            State::UntilClose => {
                self.end_message(ts, h);
                return Ok(());
            }
            _ => return Ok(()),
        };
        self.fail();
        Err(err)
    }

    fn check_head_len(&self, len: usize) -> Result<(), String> {
        if len > MAX_HEAD {
            return Err(format!("parser error: {} header longer than {MAX_HEAD} bytes", self.role.noun()));
        }
        Ok(())
    }

    fn push_line(&mut self, part: &[u8]) -> Result<(), String> {
        if self.buf.len() + part.len() > MAX_LINE {
            return Err(format!("parser error: chunk line longer than {MAX_LINE} bytes"));
        }
        self.buf.extend_from_slice(part);
        Ok(())
    }

    fn end_message<H: Handler>(&mut self, ts: Timestamp, h: &mut H) {
        h.message_end(self.body_size, ts);
        self.body_size = 0;
        self.body_waived = false;
        self.state = State::Head;
    }

    /// Parses a complete head at the start of `data`, hands it to the handler and sets up the body.
    /// `Ok(None)`: the head is not complete yet.
    fn try_head<H: Handler>(&mut self, data: &[u8], ts: Timestamp, h: &mut H) -> Result<Option<usize>, String> {
        // Left uninitialised for httparse to fill: initialising 128 headers for every message was most of
        // this function's time.
        let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let config = lenient();
        let noun = self.role.noun();
        let bad = |e: httparse::Error| format!("parser error: {noun} {}", describe(e));
        let simple = if self.role == Role::Request { simple_request(data) } else { None };
        let (len, head, fields) = match (self.role, simple) {
            (Role::Request, Some((n, path))) => {
                let request = Request {
                    method: "GET".to_owned(),
                    path: String::from_utf8_lossy(path).into_owned(),
                    version: "HTTP/0.9".to_owned(),
                    headers: Default::default(),
                    body_size: 0,
                };
                (n, Head::Request(request), Framing { chunked: false, other_coding: false, content_length: None })
            }
            (Role::Request, None) => {
                let mut req = httparse::Request::new(&mut []);
                let parsed = config.parse_request_with_uninit_headers(&mut req, data, &mut headers);
                let httparse::Status::Complete(n) = parsed.map_err(bad)? else {
                    return Ok(None);
                };
                let (map, fields) = collect_headers(req.headers, false)?;
                let head = Head::Request(Request {
                    method: req.method.unwrap_or_default().to_owned(),
                    path: req.path.unwrap_or_default().to_owned(),
                    version: version(req.version),
                    headers: map,
                    body_size: 0,
                });
                (n, head, fields)
            }
            (Role::Response, _) => {
                let mut resp = httparse::Response::new(&mut []);
                let parsed = config.parse_response_with_uninit_headers(&mut resp, data, &mut headers);
                let httparse::Status::Complete(n) = parsed.map_err(bad)? else {
                    return Ok(None);
                };
                let (map, fields) = collect_headers(resp.headers, true)?;
                let head = Head::Response(Response {
                    status: resp.code.unwrap_or_default(),
                    status_text: resp.reason.unwrap_or_default().to_owned(),
                    version: version(resp.version),
                    headers: map,
                    body_size: 0,
                });
                (n, head, fields)
            }
        };
        let role = self.role;
        if role == Role::Request && fields.other_coding && !fields.chunked {
            return Err("parser error: request transfer-encoding does not end in chunked".into());
        }
        self.body_size = 0;
        self.state = match h.head(head, ts) {
            BodyRule::None => State::Head,
            BodyRule::Tunnel => State::Tunnel,
            BodyRule::Normal => match (fields.chunked, fields.content_length, role) {
                (true, _, _) => State::ChunkSize,
                (false, Some(0), _) | (false, None, Role::Request) => State::Head,
                (false, Some(n), _) => State::Length(n),
                (false, None, Role::Response) => State::UntilClose,
            },
        };
        if self.state == State::Head {
            h.message_end(0, ts);
        }
        Ok(Some(len))
    }
}

/// An HTTP/0.9 request (`GET /path` and a line end, no version; RFC 1945 §4.1): its length and path. Its
/// answer is the body alone, until the server closes.
fn simple_request(data: &[u8]) -> Option<(usize, &[u8])> {
    let end = data.iter().take(MAX_LINE).position(|b| *b == b'\n')?;
    let line = data[..end].strip_suffix(b"\r").unwrap_or(&data[..end]);
    let path = line.strip_prefix(b"GET /".as_slice())?;
    if path.iter().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
        return None;
    }
    Some((end + 1, &line[4..]))
}

/// What mainstream servers, proxies and browsers accept (SPEC §3.5): obsolete line folding, whitespace
/// before the colon and invalid header lines in responses (browsers skip them), and runs of spaces in
/// start lines. A request with a broken header line is refused by nginx and Envoy (400): a parser error.
fn lenient() -> httparse::ParserConfig {
    let mut c = httparse::ParserConfig::default();
    c.allow_obsolete_multiline_headers_in_responses(true)
        .allow_spaces_after_header_name_in_responses(true)
        .allow_multiple_spaces_in_response_status_delimiters(true)
        .allow_multiple_spaces_in_request_line_delimiters(true)
        .ignore_invalid_headers_in_responses(true);
    c
}

/// Where a head ends in `data` (just past its empty line), if it does.
fn head_end(data: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(nl) = data[from..].iter().position(|b| *b == b'\n') {
        let after = from + nl + 1;
        match data.get(after..) {
            Some([b'\n', ..]) => return Some(after + 1),
            Some([b'\r', b'\n', ..]) => return Some(after + 2),
            _ => from = after,
        }
    }
    None
}

/// What the framing headers say.
struct Framing {
    chunked: bool,
    other_coding: bool,
    content_length: Option<u64>,
}

/// `folding`: values may hold obsolete line folding (responses only: requests with it are refused).
fn collect_headers(raw: &[httparse::Header<'_>], folding: bool) -> Result<(Headers, Framing), String> {
    let bytes = raw.iter().map(|h| h.name.len() + h.value.len()).sum();
    let mut headers = Headers::with_capacity(raw.len(), bytes);
    let mut framing = Framing { chunked: false, other_coding: false, content_length: None };
    for h in raw {
        let name = h.name;
        let value = String::from_utf8_lossy(h.value);
        // Obsolete line folding continues a value on the next line: it reads as one space.
        let unfolded;
        let value = if folding && h.value.contains(&b'\n') {
            unfolded = value.split(['\r', '\n']).map(str::trim).filter(|p| !p.is_empty()).collect::<Vec<_>>().join(" ");
            unfolded.as_str()
        } else {
            value.trim()
        };
        if name.eq_ignore_ascii_case("content-length") {
            // A list of one repeated value ("5, 5") is what a proxy that merged two headers sends.
            for part in value.split(',') {
                let part = part.trim();
                let n: u64 =
                    part.parse().map_err(|_| format!("parser error: Content-Length {value:?} is not a number"))?;
                if framing.content_length.is_some_and(|prev| prev != n) {
                    return Err("parser error: conflicting Content-Length headers".into());
                }
                framing.content_length = Some(n);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // The last coding decides (RFC 9112 §6.3).
            let last = value.rsplit(',').next().unwrap_or_default().trim();
            framing.chunked = last.eq_ignore_ascii_case("chunked");
            framing.other_coding = !framing.chunked;
        }
        headers.append(name, value);
    }
    Ok((headers, framing))
}

/// `1.0` or `1.1`: httparse reads only HTTP/1.x, and says which minor version.
fn version(minor: Option<u8>) -> String {
    match minor {
        Some(0) => "1.0".to_owned(),
        Some(1) | None => "1.1".to_owned(),
        Some(n) => format!("1.{n}"),
    }
}

fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let end = line.iter().position(|b| matches!(b, b';' | b' ' | b'\t')).unwrap_or(line.len());
    let digits = &line[..end];
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    let text = std::str::from_utf8(digits).ok()?;
    u64::from_str_radix(text, 16).ok()
}

fn describe(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status code",
        httparse::Error::Token => "invalid token in the start line",
        httparse::Error::TooManyHeaders => "has too many headers",
        httparse::Error::Version => "invalid HTTP version",
    }
}
