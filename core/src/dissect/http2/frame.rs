//! HTTP/2 frames (RFC 9113 §4, §6): the 9-byte header, the frame types and flags the dissector reads,
//! and the error codes by name (§7). The header is checked once when parsed; nothing after can panic.

/// The connection preface a client sends first (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const HEADER_LEN: usize = 9;

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const PRIORITY: u8 = 0x2;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PUSH_PROMISE: u8 = 0x5;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const PADDED: u8 = 0x8;
pub const PRIORITY_FLAG: u8 = 0x20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Payload length (24 bits).
    pub len: u32,
    pub kind: u8,
    pub flags: u8,
    /// Stream identifier (31 bits; the reserved bit is ignored, as receivers must).
    pub stream: u32,
}

impl FrameHeader {
    /// Parses a frame header from the first 9 bytes, or `None` if there are fewer.
    pub fn parse(b: &[u8]) -> Option<FrameHeader> {
        let h: &[u8; HEADER_LEN] = b.get(..HEADER_LEN)?.try_into().ok()?;
        Some(FrameHeader {
            len: u32::from_be_bytes([0, h[0], h[1], h[2]]),
            kind: h[3],
            flags: h[4],
            stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
        })
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// What RFC 9113 §6 says this frame's stream identifier and length must be: the grammar a frame can
    /// break without reading its payload. `None` when it is well formed.
    pub fn violation(&self) -> Option<String> {
        let name = kind_name(self.kind);
        let on_stream = matches!(self.kind, DATA | HEADERS | PRIORITY | RST_STREAM | PUSH_PROMISE | CONTINUATION);
        let on_connection = matches!(self.kind, SETTINGS | PING | GOAWAY);
        if on_stream && self.stream == 0 {
            return Some(format!("{name} frame on stream 0"));
        }
        if on_connection && self.stream != 0 {
            return Some(format!("{name} frame on stream {} (connection frames use stream 0)", self.stream));
        }
        let fixed = match self.kind {
            PRIORITY => Some(5),
            RST_STREAM | WINDOW_UPDATE => Some(4),
            PING => Some(8),
            _ => None,
        };
        if let Some(want) = fixed {
            if self.len != want {
                return Some(format!("{name} frame of {} bytes (must be {want})", self.len));
            }
        }
        if self.kind == SETTINGS && (self.len % 6 != 0 || (self.has(ACK) && self.len != 0)) {
            return Some(format!("SETTINGS frame of {} bytes", self.len));
        }
        if self.kind == GOAWAY && self.len < 8 {
            return Some(format!("GOAWAY frame of {} bytes (at least 8)", self.len));
        }
        None
    }
}

/// The largest frame a peer may send before it has seen its peer's SETTINGS (RFC 9113 §4.2), and so the
/// largest a resynchronising reader believes.
const DEFAULT_MAX_FRAME: u32 = 16_384;

impl FrameHeader {
    /// Whether this header is one a peer could really have sent — a known type, only its own flags, a
    /// stream id and length its type allows, no reserved bit: what finds frame boundaries mid-stream.
    fn plausible(b: &[u8; HEADER_LEN]) -> bool {
        let Some(h) = FrameHeader::parse(b) else { return false };
        let flags_allowed = match h.kind {
            DATA => END_STREAM | PADDED,
            HEADERS => END_STREAM | END_HEADERS | PADDED | PRIORITY_FLAG,
            SETTINGS | PING => ACK,
            PUSH_PROMISE => END_HEADERS | PADDED,
            CONTINUATION => END_HEADERS,
            PRIORITY | RST_STREAM | GOAWAY | WINDOW_UPDATE => 0,
            _ => return false,
        };
        b[5] & 0x80 == 0 && h.flags & !flags_allowed == 0 && h.len <= DEFAULT_MAX_FRAME && h.violation().is_none()
    }
}

/// Whether `b`, the start of a segment on a connection picked up mid-stream, begins at a frame boundary:
/// plausible frame headers, each where the last one's payload ends, that end exactly with `b`, or two
/// whole frames and the start of a third. A segment that begins inside a frame almost never passes.
pub fn looks_like_frames(b: &[u8]) -> bool {
    let mut at = 0usize;
    let mut whole = 0;
    while let Some(head) = b.get(at..at + HEADER_LEN) {
        let Ok(head) = <&[u8; HEADER_LEN]>::try_from(head) else { return false };
        if !FrameHeader::plausible(head) {
            return false;
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        at += HEADER_LEN + len;
        if at > b.len() {
            return whole >= 2;
        }
        whole += 1;
    }
    at == b.len() && whole >= 1 || whole >= 2
}

pub fn kind_name(kind: u8) -> String {
    match kind {
        DATA => "DATA".into(),
        HEADERS => "HEADERS".into(),
        PRIORITY => "PRIORITY".into(),
        RST_STREAM => "RST_STREAM".into(),
        SETTINGS => "SETTINGS".into(),
        PUSH_PROMISE => "PUSH_PROMISE".into(),
        PING => "PING".into(),
        GOAWAY => "GOAWAY".into(),
        WINDOW_UPDATE => "WINDOW_UPDATE".into(),
        CONTINUATION => "CONTINUATION".into(),
        other => format!("frame type 0x{other:x}"),
    }
}

/// An error code by its RFC 9113 §7 name; unknown codes (which receivers must not treat as special) by
/// number.
pub fn error_code_name(code: u32) -> String {
    let name = match code {
        0x0 => "NO_ERROR",
        0x1 => "PROTOCOL_ERROR",
        0x2 => "INTERNAL_ERROR",
        0x3 => "FLOW_CONTROL_ERROR",
        0x4 => "SETTINGS_TIMEOUT",
        0x5 => "STREAM_CLOSED",
        0x6 => "FRAME_SIZE_ERROR",
        0x7 => "REFUSED_STREAM",
        0x8 => "CANCEL",
        0x9 => "COMPRESSION_ERROR",
        0xa => "CONNECT_ERROR",
        0xb => "ENHANCE_YOUR_CALM",
        0xc => "INADEQUATE_SECURITY",
        0xd => "HTTP_1_1_REQUIRED",
        other => return format!("error code 0x{other:x}"),
    };
    name.to_owned()
}

/// The bytes of a HEADERS or PUSH_PROMISE payload that are the header block fragment: without padding,
/// the priority fields, or the promised stream id. `None` when the padding is longer than the payload.
pub fn header_block(h: &FrameHeader, payload: &[u8]) -> Option<(u32, std::ops::Range<usize>)> {
    let mut start = 0usize;
    let mut end = payload.len();
    let mut promised = 0;
    if h.has(PADDED) {
        let pad = usize::from(*payload.first()?);
        start = 1;
        end = end.checked_sub(pad)?;
    }
    if h.kind == HEADERS && h.has(PRIORITY_FLAG) {
        start += 5;
    }
    if h.kind == PUSH_PROMISE {
        let id = payload.get(start..start + 4)?;
        promised = u32::from_be_bytes([id[0], id[1], id[2], id[3]]) & 0x7fff_ffff;
        start += 4;
    }
    (start <= end).then_some((promised, start..end))
}

/// A big-endian u32 at `at`, if there.
pub fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_and_break_the_grammar_by_their_fields_alone() {
        let h = FrameHeader::parse(&[0, 0, 4, RST_STREAM, 0, 0x80, 0, 0, 3]).expect("9 bytes");
        assert_eq!((h.len, h.kind, h.stream), (4, RST_STREAM, 3), "the reserved bit is ignored");
        assert_eq!(h.violation(), None);
        assert!(FrameHeader::parse(&[0; 8]).is_none());
        let on_zero = FrameHeader { len: 4, kind: RST_STREAM, flags: 0, stream: 0 };
        assert_eq!(on_zero.violation().as_deref(), Some("RST_STREAM frame on stream 0"));
        let ping = FrameHeader { len: 7, kind: PING, flags: 0, stream: 0 };
        assert!(ping.violation().is_some_and(|v| v.contains("must be 8")));
        let settings = FrameHeader { len: 7, kind: SETTINGS, flags: 0, stream: 0 };
        assert!(settings.violation().is_some());
    }

    fn raw(kind: u8, flags: u8, stream: u32, len: usize) -> Vec<u8> {
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.resize(HEADER_LEN + len, 0);
        f
    }

    #[test]
    fn frame_boundaries_are_found_mid_stream_and_the_middle_of_a_frame_is_not_one() {
        let rst = raw(RST_STREAM, 0, 7, 4);
        assert!(looks_like_frames(&rst), "one whole frame, ending with the segment");
        let two = [raw(WINDOW_UPDATE, 0, 0, 4), raw(DATA, END_STREAM, 7, 30)].concat();
        assert!(looks_like_frames(&two));
        let cut = [two.clone(), raw(DATA, 0, 9, 16_000)].concat();
        assert!(looks_like_frames(&cut[..cut.len() - 100]), "two whole frames and the start of a third");
        assert!(!looks_like_frames(&rst[..10]), "one frame cut short proves nothing");
        assert!(!looks_like_frames(&rst[1..]));
        assert!(!looks_like_frames(&raw(RST_STREAM, 0, 0, 4)), "RST_STREAM on stream 0");
        assert!(!looks_like_frames(&raw(DATA, ACK | END_HEADERS, 1, 3)), "flags DATA does not have");
        assert!(!looks_like_frames(&raw(0x42, 0, 1, 3)), "an unknown type");
        assert!(!looks_like_frames(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"));
        assert!(!looks_like_frames(&[]));
        let mut reserved = raw(PING, 0, 0, 8);
        reserved[5] = 0x80;
        assert!(!looks_like_frames(&reserved));
    }

    #[test]
    fn padding_longer_than_the_payload_is_caught() {
        let h = FrameHeader { len: 3, kind: HEADERS, flags: PADDED, stream: 1 };
        assert_eq!(header_block(&h, &[1, 0x82, 0]), Some((0, 1..2)));
        assert_eq!(header_block(&h, &[9, 0x82, 0]), None);
        let prio = FrameHeader { len: 2, kind: HEADERS, flags: PRIORITY_FLAG, stream: 1 };
        assert_eq!(header_block(&prio, &[0, 0]), None, "priority fields cut short");
        assert_eq!(error_code_name(8), "CANCEL");
        assert_eq!(error_code_name(0x42), "error code 0x42");
    }
}
