//! The DNS message format (RFC 1035 §4), read passively: the header, the first question, and a summary of
//! the answers. Every read checks its bounds first; a name's compression pointers must point backwards
//! (so they cannot loop), at most 127 of them are followed, and a name is at most 255 bytes. Nothing here
//! allocates except the names and answers it returns, and the work is linear in the message: at most
//! `MAX_QUESTIONS` questions are walked.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Answers summarised per message, at most: an answer section can hold thousands of records.
pub const MAX_ANSWERS: usize = 16;
const HEADER_LEN: usize = 12;
const MAX_NAME_LEN: usize = 255;
/// Compression pointers followed in one name (SPEC §3.5): a name has at most 127 labels.
const MAX_POINTERS: usize = 127;
/// Questions walked to find the answers; a message with more is read without its answers.
const MAX_QUESTIONS: u16 = 16;

/// Why bytes are not a DNS message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("shorter than a DNS header")]
    ShortHeader,
    #[error("a name runs past the end of the message")]
    NameTruncated,
    #[error("a label type that is not defined")]
    BadLabel,
    #[error("a compression pointer that does not point backwards")]
    BadPointer,
    #[error("more than 127 compression pointers in one name")]
    TooManyPointers,
    #[error("a name longer than 255 bytes")]
    NameTooLong,
    #[error("a record runs past the end of the message")]
    RecordTruncated,
}

/// A DNS message as far as Faultline reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub id: u16,
    /// A response (QR set).
    pub response: bool,
    pub opcode: u8,
    /// Truncated (TC): the answer did not fit, the client should ask again over TCP.
    pub truncated: bool,
    pub rcode: u8,
    /// The first question; `None` when there is none (some servers' FORMERR, REFUSED or NOTIMP; an
    /// UPDATE's zone is its question).
    pub question: Option<Question>,
    /// A summary of each answer record (`A 10.0.0.1`, `CNAME a.example.`), at most `MAX_ANSWERS`.
    pub answers: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Question {
    /// Lower case, without the trailing dot; `.` for the root.
    pub name: String,
    pub qtype: u16,
}

impl Message {
    /// Parses a message: the header, the first question if there is one, and what answers parse (one
    /// that does not ends the summary rather than the message — so the first fragment of an answer too
    /// big for one datagram still reads).
    pub fn parse(b: &[u8]) -> Result<Message, DnsError> {
        if b.len() < HEADER_LEN {
            return Err(DnsError::ShortHeader);
        }
        let id = u16::from_be_bytes([b[0], b[1]]);
        let flags = u16::from_be_bytes([b[2], b[3]]);
        let qdcount = u16::from_be_bytes([b[4], b[5]]);
        let ancount = u16::from_be_bytes([b[6], b[7]]);
        let mut at = HEADER_LEN;
        let mut question = None;
        if qdcount > 0 {
            let (name, end) = read_name(b, at)?;
            let fixed = b.get(end..end + 4).ok_or(DnsError::RecordTruncated)?;
            question = Some(Question { name, qtype: u16::from_be_bytes([fixed[0], fixed[1]]) });
            at = end + 4;
        }
        // Further questions (never seen in practice) are skipped, up to a bound.
        let mut answers_readable = qdcount <= MAX_QUESTIONS;
        for _ in 1..qdcount.min(MAX_QUESTIONS) {
            match read_name(b, at) {
                Ok((_, next)) if next + 4 <= b.len() => at = next + 4,
                _ => {
                    answers_readable = false;
                    break;
                }
            }
        }
        let mut answers = Vec::new();
        let readable = if answers_readable { ancount.min(MAX_ANSWERS as u16) } else { 0 };
        for _ in 0..readable {
            match read_record(b, at) {
                Ok((summary, next)) => {
                    answers.push(summary);
                    at = next;
                }
                Err(_) => break,
            }
        }
        Ok(Message {
            id,
            response: flags & 0x8000 != 0,
            opcode: ((flags >> 11) & 0x0f) as u8,
            truncated: flags & 0x0200 != 0,
            rcode: (flags & 0x000f) as u8,
            question,
            answers,
        })
    }
}

/// Reads the name at `start`: the name (lower case, dotted) and where the bytes after it begin.
fn read_name(b: &[u8], start: usize) -> Result<(String, usize), DnsError> {
    let mut name = String::new();
    let mut at = start;
    // Where the name continues in the message after the first pointer, if one was followed.
    let mut end = None;
    // Pointers must point strictly before the label they replace: the walk cannot loop.
    let mut limit = start;
    let mut pointers = 0;
    loop {
        let len = *b.get(at).ok_or(DnsError::NameTruncated)?;
        match len & 0xc0 {
            0x00 if len == 0 => {
                let after = end.unwrap_or(at + 1);
                if name.is_empty() {
                    name.push('.');
                }
                return Ok((name, after));
            }
            0x00 => {
                let label = b.get(at + 1..at + 1 + usize::from(len)).ok_or(DnsError::NameTruncated)?;
                if !name.is_empty() {
                    name.push('.');
                }
                for &c in label {
                    match c {
                        b'A'..=b'Z' => name.push(char::from(c.to_ascii_lowercase())),
                        0x21..=0x7e if c != b'.' && c != b'\\' => name.push(char::from(c)),
                        _ => {
                            name.push('\\');
                            name.push_str(&format!("{c:03}"));
                        }
                    }
                }
                if name.len() > MAX_NAME_LEN {
                    return Err(DnsError::NameTooLong);
                }
                at += 1 + usize::from(len);
            }
            0xc0 => {
                let low = *b.get(at + 1).ok_or(DnsError::NameTruncated)?;
                let target = usize::from(u16::from_be_bytes([len & 0x3f, low]));
                if target >= limit {
                    return Err(DnsError::BadPointer);
                }
                pointers += 1;
                if pointers > MAX_POINTERS {
                    return Err(DnsError::TooManyPointers);
                }
                end.get_or_insert(at + 2);
                limit = target;
                at = target;
            }
            _ => return Err(DnsError::BadLabel),
        }
    }
}

/// Reads the resource record at `start`: its summary and where the next one begins.
fn read_record(b: &[u8], start: usize) -> Result<(String, usize), DnsError> {
    let (_, at) = read_name(b, start)?;
    let fixed = b.get(at..at + 10).ok_or(DnsError::RecordTruncated)?;
    let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
    let rdlen = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
    let data_at = at + 10;
    let data = b.get(data_at..data_at + rdlen).ok_or(DnsError::RecordTruncated)?;
    let name = TypeName(rtype);
    let summary = match (rtype, data.len()) {
        (1, 4) => format!("A {}", Ipv4Addr::new(data[0], data[1], data[2], data[3])),
        (28, 16) => {
            let mut a = [0u8; 16];
            a.copy_from_slice(data);
            format!("AAAA {}", Ipv6Addr::from(a))
        }
        // Names inside the record may be compressed against the whole message.
        (5 | 12 | 2, _) => match read_name(b, data_at) {
            Ok((target, _)) => format!("{name} {target}"),
            Err(_) => name.to_string(),
        },
        _ => name.to_string(),
    };
    Ok((summary, data_at + rdlen))
}

/// A record type by its mnemonic (`A`, `AAAA`, …), or `TYPE<n>` (RFC 3597).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TypeName(pub u16);

impl fmt::Display for TypeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            1 => "A",
            2 => "NS",
            5 => "CNAME",
            6 => "SOA",
            12 => "PTR",
            15 => "MX",
            16 => "TXT",
            28 => "AAAA",
            33 => "SRV",
            35 => "NAPTR",
            41 => "OPT",
            64 => "SVCB",
            65 => "HTTPS",
            255 => "ANY",
            n => return write!(f, "TYPE{n}"),
        };
        f.write_str(name)
    }
}

/// A response code by its name (RFC 1035 §4.1.1, RFC 2136 §2.2), or `RCODE<n>`.
pub fn rcode_name(rcode: u8) -> String {
    match rcode {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        n => return format!("RCODE{n}"),
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for `name` of type `qtype` with id `id`.
    pub fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&id.to_be_bytes());
        b.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        for label in name.split('.').filter(|l| !l.is_empty()) {
            b.push(label.len() as u8);
            b.extend_from_slice(label.as_bytes());
        }
        b.push(0);
        b.extend_from_slice(&qtype.to_be_bytes());
        b.extend_from_slice(&[0, 1]);
        b
    }

    #[test]
    fn a_query_parses() {
        let m = Message::parse(&query(0x1234, "Web.Shop.svc.cluster.local", 1)).expect("parses");
        assert_eq!(m.id, 0x1234);
        assert!(!m.response);
        assert_eq!(m.question, Some(Question { name: "web.shop.svc.cluster.local".into(), qtype: 1 }));
        assert!(m.answers.is_empty());
    }

    #[test]
    fn an_answer_with_compressed_names_is_summarised() {
        let mut b = query(7, "www.example.com", 1);
        b[2] = 0x81;
        b[3] = 0x80;
        b[7] = 2; // two answers
                  // CNAME www.example.com -> example.com (pointer to offset 16: "example.com" in the question)
        b.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 2, 0xc0, 16]);
        // A example.com 192.0.2.1
        b.extend_from_slice(&[0xc0, 16, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
        let m = Message::parse(&b).expect("parses");
        assert!(m.response);
        assert_eq!(m.rcode, 0);
        assert_eq!(m.answers, ["CNAME example.com", "A 192.0.2.1"]);
    }

    #[test]
    fn pointers_that_loop_or_point_forwards_are_refused() {
        let mut b = query(7, "a", 1);
        // Replace the name with a pointer to itself.
        b.truncate(HEADER_LEN);
        b.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(Message::parse(&b), Err(DnsError::BadPointer));
    }

    #[test]
    fn a_chain_of_pointers_is_followed_127_times_at_most() {
        // The root name at offset 12, then 200 pointers, each to the one before it.
        let mut m = vec![0, 7, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0];
        for i in 0..200u16 {
            let target = if i == 0 { 12 } else { 13 + 2 * (i - 1) };
            m.extend_from_slice(&(0xc000 | target).to_be_bytes());
        }
        assert_eq!(read_name(&m, 13 + 2 * 199), Err(DnsError::TooManyPointers));
        assert_eq!(read_name(&m, 13 + 2 * 100).map(|(name, _)| name), Ok(".".to_owned()), "101 are fine");
    }

    #[test]
    fn a_message_without_a_question_reads() {
        let b = [0, 9, 0x81, 0x85, 0, 0, 0, 0, 0, 0, 0, 0];
        let m = Message::parse(&b).expect("a header alone");
        assert_eq!((m.id, m.rcode, m.question), (9, 5, None));
    }

    #[test]
    fn every_truncation_is_an_error_never_a_panic() {
        let mut b = query(7, "www.example.com", 28);
        b[7] = 1;
        b.extend_from_slice(&[0xc0, 12, 0, 28, 0, 1, 0, 0, 0, 60, 0, 16]);
        b.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(Message::parse(&b).expect("whole").answers, ["AAAA 2001:db8::1"]);
        for n in 0..b.len() {
            let _ = Message::parse(&b[..n]);
        }
    }

    #[test]
    fn names_and_codes_have_their_mnemonics() {
        assert_eq!(TypeName(28).to_string(), "AAAA");
        assert_eq!(TypeName(999).to_string(), "TYPE999");
        assert_eq!(rcode_name(2), "SERVFAIL");
        assert_eq!(rcode_name(12), "RCODE12");
    }
}
