//! Where each API's response puts its error codes, by version: top level, per topic, per partition,
//! per coordinator or group. Only these APIs are read (SPEC §3.5 names them, plus CreateTopics,
//! LeaveGroup and InitProducerId); any other is paired and counted, not read.

use super::read::Reader;

/// An error code a response carries, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Coded {
    pub code: i16,
    pub topic: Option<String>,
    pub partition: Option<i32>,
}

/// The error codes of a response body (after its header), and whether the body was read to the end of
/// what carries them (`false`: the bytes kept ran out, or the API is not read).
pub fn errors(api: i16, version: i16, body: &[u8], compact: bool) -> (Vec<Coded>, bool) {
    let mut out = Vec::new();
    let mut r = Reader::new(body, compact);
    let read = match api {
        0 => produce(&mut r, version, &mut out),
        1 => fetch(&mut r, version, &mut out),
        3 => metadata(&mut r, version, &mut out),
        8 => offset_commit(&mut r, version, &mut out),
        9 => offset_fetch(&mut r, version, &mut out),
        10 => find_coordinator(&mut r, version, &mut out),
        // JoinGroup, Heartbeat, LeaveGroup, SyncGroup: a throttle time from v1 (JoinGroup: v2), then the code.
        11..=14 => {
            let throttled = if api == 11 { version >= 2 } else { version >= 1 };
            top(&mut r, throttled, &mut out)
        }
        18 => top(&mut r, false, &mut out),
        19 => create_topics(&mut r, version, &mut out),
        22 => top(&mut r, true, &mut out),
        _ => None,
    };
    (out, read.is_some())
}

fn push(out: &mut Vec<Coded>, code: i16, topic: Option<&str>, partition: Option<i32>) {
    if code != 0 && out.len() < 64 {
        out.push(Coded { code, topic: topic.map(str::to_owned), partition });
    }
}

fn top(r: &mut Reader<'_>, throttled: bool, out: &mut Vec<Coded>) -> Option<()> {
    if throttled {
        r.i32()?;
    }
    push(out, r.i16()?, None, None);
    Some(())
}

/// A topic as the response names it: by name, or (newer versions) by id only.
fn topic(r: &mut Reader<'_>, by_id: bool) -> Option<Option<String>> {
    if by_id {
        r.skip(16)?;
        return Some(None);
    }
    r.string()
}

fn produce(r: &mut Reader<'_>, v: i16, out: &mut Vec<Coded>) -> Option<()> {
    for _ in 0..r.array()? {
        let name = topic(r, v >= 13)?;
        for _ in 0..r.array()? {
            let index = r.i32()?;
            push(out, r.i16()?, name.as_deref(), Some(index));
            r.skip(8)?; // base_offset
            if v >= 2 {
                r.skip(8)?; // log_append_time_ms
            }
            if v >= 5 {
                r.skip(8)?; // log_start_offset
            }
            if v >= 8 {
                for _ in 0..r.array()? {
                    r.i32()?;
                    r.string()?;
                    r.tags()?;
                }
                r.string()?; // error_message
            }
            r.tags()?;
        }
        r.tags()?;
    }
    Some(())
}

fn fetch(r: &mut Reader<'_>, v: i16, out: &mut Vec<Coded>) -> Option<()> {
    if v >= 1 {
        r.i32()?;
    }
    if v >= 7 {
        push(out, r.i16()?, None, None);
        r.i32()?; // session_id
    }
    for _ in 0..r.array()? {
        let name = topic(r, v >= 13)?;
        for _ in 0..r.array()? {
            let index = r.i32()?;
            push(out, r.i16()?, name.as_deref(), Some(index));
            r.skip(8)?; // high_watermark
            if v >= 4 {
                r.skip(8)?; // last_stable_offset
            }
            if v >= 5 {
                r.skip(8)?; // log_start_offset
            }
            if v >= 4 {
                for _ in 0..r.array()? {
                    r.skip(16)?;
                    r.tags()?;
                }
            }
            if v >= 11 {
                r.i32()?; // preferred_read_replica
            }
            r.bytes()?; // records
            r.tags()?;
        }
        r.tags()?;
    }
    Some(())
}

/// Metadata: the topics' codes (a partition's leader being elected is the cluster's business, and
/// answered again at the next refresh).
fn metadata(r: &mut Reader<'_>, v: i16, out: &mut Vec<Coded>) -> Option<()> {
    if v >= 3 {
        r.i32()?;
    }
    for _ in 0..r.array()? {
        r.i32()?; // node_id
        r.string()?; // host
        r.i32()?; // port
        if v >= 1 {
            r.string()?; // rack
        }
        r.tags()?;
    }
    if v >= 2 {
        r.string()?; // cluster_id
    }
    if v >= 1 {
        r.i32()?; // controller_id
    }
    for _ in 0..r.array()? {
        let code = r.i16()?;
        let name = r.string()?;
        if v >= 10 {
            r.skip(16)?; // topic_id
        }
        if v >= 1 {
            r.i8()?; // is_internal
        }
        push(out, code, name.as_deref(), None);
        for _ in 0..r.array()? {
            r.i16()?;
            r.i32()?; // partition_index
            r.i32()?; // leader_id
            if v >= 7 {
                r.i32()?; // leader_epoch
            }
            for _ in 0..(if v >= 5 { 3 } else { 2 }) {
                let n = r.array()?;
                r.skip(n.checked_mul(4)?)?;
            }
            r.tags()?;
        }
        if v >= 8 {
            r.i32()?; // topic_authorized_operations
        }
        r.tags()?;
    }
    Some(())
}

fn offset_commit(r: &mut Reader<'_>, v: i16, out: &mut Vec<Coded>) -> Option<()> {
    if v >= 3 {
        r.i32()?;
    }
    for _ in 0..r.array()? {
        let name = topic(r, v >= 10)?;
        for _ in 0..r.array()? {
            let index = r.i32()?;
            push(out, r.i16()?, name.as_deref(), Some(index));
            r.tags()?;
        }
        r.tags()?;
    }
    Some(())
}

fn offset_fetch_topics(r: &mut Reader<'_>, v: i16, out: &mut Vec<Coded>) -> Option<()> {
    for _ in 0..r.array()? {
        let name = topic(r, v >= 10)?;
        for _ in 0..r.array()? {
            let index = r.i32()?;
            r.skip(8)?; // committed_offset
            if v >= 5 {
                r.i32()?; // committed_leader_epoch
            }
            r.string()?; // metadata
            push(out, r.i16()?, name.as_deref(), Some(index));
            r.tags()?;
        }
        r.tags()?;
    }
    Some(())
}

fn offset_fetch(r: &mut Reader<'_>, v: i16, out: &mut Vec<Coded>) -> Option<()> {
    if v >= 3 {
        r.i32()?;
    }
    if v >= 8 {
        for _ in 0..r.array()? {
            r.string()?; // group_id
            offset_fetch_topics(r, v, out)?;
            push(out, r.i16()?, None, None);
            r.tags()?;
        }
        return Some(());
    }
    offset_fetch_topics(r, v, out)?;
    if v >= 2 {
        push(out, r.i16()?, None, None);
    }
    Some(())
}

fn find_coordinator(r: &mut Reader<'_>, v: i16, out: &mut Vec<Coded>) -> Option<()> {
    if v >= 1 {
        r.i32()?;
    }
    if v < 4 {
        push(out, r.i16()?, None, None);
        return Some(());
    }
    for _ in 0..r.array()? {
        r.string()?; // key
        r.i32()?;
        r.string()?;
        r.i32()?;
        push(out, r.i16()?, None, None);
        r.string()?;
        r.tags()?;
    }
    Some(())
}

fn create_topics(r: &mut Reader<'_>, v: i16, out: &mut Vec<Coded>) -> Option<()> {
    if v >= 2 {
        r.i32()?;
    }
    for _ in 0..r.array()? {
        let name = r.string()?;
        if v >= 7 {
            r.skip(16)?;
        }
        push(out, r.i16()?, name.as_deref(), None);
        if v >= 1 {
            r.string()?; // error_message
        }
        if v >= 5 {
            r.i32()?;
            r.i16()?;
            for _ in 0..r.array()? {
                r.string()?;
                r.string()?;
                r.i8()?;
                r.i8()?;
                r.i8()?;
                r.tags()?;
            }
        }
        r.tags()?;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn produce_partitions_carry_their_codes_in_both_encodings() {
        // v8, classic: one topic "t", partition 0 OK, partition 1 NOT_LEADER_OR_FOLLOWER.
        let mut b = vec![0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 2];
        for (p, code) in [(0u8, 0u8), (1, 6)] {
            b.extend_from_slice(&[0, 0, 0, p, 0, code]);
            b.extend_from_slice(&[0; 24]);
            b.extend_from_slice(&[0, 0, 0, 0, 0xff, 0xff]);
        }
        b.extend_from_slice(&[0, 0, 0, 0]);
        let (codes, read) = errors(0, 8, &b, false);
        assert!(read);
        assert_eq!(codes, [Coded { code: 6, topic: Some("t".into()), partition: Some(1) }]);
        for n in 0..b.len() {
            let _ = errors(0, 8, &b[..n], false);
        }
        // Heartbeat v4 (flexible): throttle, REBALANCE_IN_PROGRESS, no tags.
        assert_eq!(errors(12, 4, &[0, 0, 0, 0, 0, 27, 0], true).0[0].code, 27);
        assert_eq!(errors(42, 0, &[0, 1], false), (vec![], false), "an API not read");
    }
}
