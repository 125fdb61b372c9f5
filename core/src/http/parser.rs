//! Framing HTTP/1.x messages in one direction of a stream. Headers are buffered (up to a limit) and parsed
//! by httparse; bodies are counted, never stored. Errors come back as the `error.msg` of a dissection
//! entry: `parser error: …` for broken grammar, `unexpected EOF: …` for a stream that ended inside a message.

use std::mem::MaybeUninit;

use crate::entry::{Headers, Request, Response};
use crate::time::Timestamp;

/// The most header bytes one message may have before it is a parser error.
pub const MAX_HEAD: usize = 64 * 1024;
/// The most header fields one message may have.
const MAX_HEADERS: usize = 128;
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
    /// A gap in the stream left us unable to find message boundaries.
    Lost,
}

pub struct Parser {
    role: Role,
    state: State,
    buf: Vec<u8>,
    body_size: u64,
}

impl Parser {
    pub fn new(role: Role) -> Self {
        Parser { role, state: State::Head, buf: Vec::new(), body_size: 0 }
    }

    pub fn is_lost(&self) -> bool {
        self.state == State::Lost
    }

    pub fn is_tunnel(&self) -> bool {
        self.state == State::Tunnel
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
                                break;
                            }
                        }
                    } else {
                        let old = self.buf.len();
                        let mut buf = std::mem::take(&mut self.buf);
                        buf.extend_from_slice(input);
                        match self.try_head(&buf, ts, h)? {
                            Some(n) => {
                                // The head ends in the new bytes: the old ones alone were incomplete.
                                input = &input[n.saturating_sub(old).min(input.len())..];
                                buf.clear();
                                self.buf = buf;
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
                State::UntilClose | State::Tunnel | State::Lost => {
                    if self.state == State::UntilClose {
                        self.body_size += input.len() as u64;
                    }
                    break;
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

    /// The stream lost `len` bytes. Inside a body of known length we can count them and go on; anywhere
    /// else message boundaries are lost.
    pub fn gap(&mut self, len: u64) {
        match self.state {
            State::Length(rem) if len < rem => {
                self.state = State::Length(rem - len);
                self.body_size += len;
            }
            State::UntilClose => self.body_size += len,
            State::Tunnel => {}
            _ => {
                self.state = State::Lost;
                self.buf = Vec::new();
            }
        }
    }

    /// The stream ended (`why`: "connection closed", "connection reset", "capture ended"). A
    /// close-delimited body ends here; any other partial message is an unexpected EOF.
    pub fn eof<H: Handler>(&mut self, why: &str, ts: Timestamp, h: &mut H) -> Result<(), String> {
        let noun = self.role.noun();
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
        self.state = State::Lost;
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
        self.state = State::Head;
    }

    /// Parses a complete head at the start of `data`, hands it to the handler and sets up the body.
    /// `Ok(None)`: the head is not complete yet.
    fn try_head<H: Handler>(&mut self, data: &[u8], ts: Timestamp, h: &mut H) -> Result<Option<usize>, String> {
        // Left uninitialised for httparse to fill: initialising 128 headers for every message was most of
        // this function's time.
        let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let config = httparse::ParserConfig::default();
        let noun = self.role.noun();
        let bad = |e: httparse::Error| format!("parser error: {noun} {}", describe(e));
        let (len, head, fields) = match self.role {
            Role::Request => {
                let mut req = httparse::Request::new(&mut []);
                let parsed = config.parse_request_with_uninit_headers(&mut req, data, &mut headers);
                let httparse::Status::Complete(n) = parsed.map_err(bad)? else {
                    return Ok(None);
                };
                let (map, fields) = collect_headers(req.headers)?;
                let head = Head::Request(Request {
                    method: req.method.unwrap_or_default().to_owned(),
                    path: req.path.unwrap_or_default().to_owned(),
                    version: version(req.version),
                    headers: map,
                    body_size: 0,
                });
                (n, head, fields)
            }
            Role::Response => {
                let mut resp = httparse::Response::new(&mut []);
                let parsed = config.parse_response_with_uninit_headers(&mut resp, data, &mut headers);
                let httparse::Status::Complete(n) = parsed.map_err(bad)? else {
                    return Ok(None);
                };
                let (map, fields) = collect_headers(resp.headers)?;
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

/// What the framing headers say.
struct Framing {
    chunked: bool,
    other_coding: bool,
    content_length: Option<u64>,
}

fn collect_headers(raw: &[httparse::Header<'_>]) -> Result<(Headers, Framing), String> {
    let bytes = raw.iter().map(|h| h.name.len() + h.value.len()).sum();
    let mut headers = Headers::with_capacity(raw.len(), bytes);
    let mut framing = Framing { chunked: false, other_coding: false, content_length: None };
    for h in raw {
        let name = h.name;
        let value = String::from_utf8_lossy(h.value);
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n: u64 =
                value.parse().map_err(|_| format!("parser error: Content-Length {value:?} is not a number"))?;
            if framing.content_length.is_some_and(|prev| prev != n) {
                return Err("parser error: conflicting Content-Length headers".into());
            }
            framing.content_length = Some(n);
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
