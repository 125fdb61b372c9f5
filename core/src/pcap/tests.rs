use super::*;

fn classic(big_endian: bool, nanos: bool, link: u32, records: &[(u32, u32, &[u8])]) -> Vec<u8> {
    let w32 = |v: u32| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let w16 = |v: u16| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut f = Vec::new();
    f.extend(w32(if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 }));
    f.extend(w16(2));
    f.extend(w16(4));
    f.extend(w32(0));
    f.extend(w32(0));
    f.extend(w32(65535));
    f.extend(w32(link));
    for (sec, frac, data) in records {
        f.extend(w32(*sec));
        f.extend(w32(*frac));
        f.extend(w32(data.len() as u32));
        f.extend(w32(data.len() as u32 + 10));
        f.extend(*data);
    }
    f
}

type Rec = (LinkType, u64, Vec<u8>, u32);

fn read_all(bytes: &[u8]) -> Result<Vec<Rec>, PcapError> {
    let mut r = PcapReader::new(bytes)?;
    let mut out = Vec::new();
    while let Some(rec) = r.next_record()? {
        out.push((rec.link_type, rec.ts.nanos(), rec.data.to_vec(), rec.orig_len));
    }
    Ok(out)
}

#[test]
fn classic_in_both_byte_orders_and_resolutions() {
    for (be, nanos) in [(false, false), (true, false), (false, true), (true, true)] {
        let frac = if nanos { 123_456_789 } else { 123_456 };
        let f = classic(be, nanos, 1, &[(10, frac, b"abc"), (11, 0, b"")]);
        let recs = read_all(&f).expect("valid file");
        let want_ns = if nanos { 10_123_456_789 } else { 10_123_456_000 };
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0], (LinkType::Ethernet, want_ns, b"abc".to_vec(), 13));
        assert_eq!(recs[1].1, 11_000_000_000);
    }
}

#[test]
fn classic_truncated_record_says_where() {
    let f = classic(false, false, 113, &[(1, 0, b"0123456789")]);
    for cut in [24 + 5, 24 + 16 + 3] {
        let mut r = PcapReader::new(&f[..cut]).expect("header is complete");
        match r.next_record() {
            Err(PcapError::Truncated { offset, .. }) => assert_eq!(offset, cut as u64),
            other => panic!("expected Truncated, got {other:?}"),
        }
    }
    assert!(matches!(PcapReader::new(&f[..10]), Err(PcapError::Truncated { .. })));
}

#[test]
fn absurd_record_length_is_corrupt_not_an_allocation() {
    let mut f = classic(false, false, 1, &[]);
    f.extend(1u32.to_le_bytes());
    f.extend(0u32.to_le_bytes());
    f.extend(0xffff_fff0u32.to_le_bytes());
    f.extend(0xffff_fff0u32.to_le_bytes());
    let mut r = PcapReader::new(&f[..]).expect("header");
    assert!(matches!(r.next_record(), Err(PcapError::Corrupt { .. })));
}

#[test]
fn unknown_magic_and_link_type() {
    assert!(matches!(PcapReader::new(&b"GET / HTTP/1.1\r\n\r\nxxxxxxxxxxx"[..]), Err(PcapError::UnknownFormat(_))));
    let f = classic(false, false, 147, &[]);
    assert!(matches!(PcapReader::new(&f[..]), Err(PcapError::UnsupportedLinkType(147))));
}

fn block(t: u32, body: &[u8]) -> Vec<u8> {
    let padded = body.len().div_ceil(4) * 4;
    let total = (12 + padded) as u32;
    let mut b = Vec::new();
    b.extend(t.to_le_bytes());
    b.extend(total.to_le_bytes());
    b.extend(body);
    b.resize(8 + padded, 0);
    b.extend(total.to_le_bytes());
    b
}

fn shb() -> Vec<u8> {
    let mut body = Vec::new();
    body.extend(0x1a2b_3c4du32.to_le_bytes());
    body.extend(1u16.to_le_bytes());
    body.extend(0u16.to_le_bytes());
    body.extend((-1i64).to_le_bytes());
    block(0x0a0d_0d0a, &body)
}

fn idb(link: u16, tsresol: Option<u8>) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend(link.to_le_bytes());
    body.extend(0u16.to_le_bytes());
    body.extend(0u32.to_le_bytes());
    if let Some(r) = tsresol {
        body.extend(9u16.to_le_bytes());
        body.extend(1u16.to_le_bytes());
        body.extend([r, 0, 0, 0]);
        body.extend([0, 0, 0, 0]);
    }
    block(1, &body)
}

fn epb(iface: u32, units: u64, data: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend(iface.to_le_bytes());
    body.extend(((units >> 32) as u32).to_le_bytes());
    body.extend((units as u32).to_le_bytes());
    body.extend((data.len() as u32).to_le_bytes());
    body.extend((data.len() as u32).to_le_bytes());
    body.extend(data);
    block(6, &body)
}

#[test]
fn pcapng_interfaces_resolutions_and_unknown_blocks() {
    let mut f = shb();
    f.extend(idb(1, None)); // microseconds by default
    f.extend(idb(276, Some(9))); // nanoseconds
    f.extend(block(0x0bad, b"custom"));
    f.extend(epb(0, 5_000_001, b"eth"));
    f.extend(epb(1, 7_000_000_002, b"sll2"));
    f.extend(idb(2, Some(0x80 | 10))); // link type 2 is unsupported; 2^-10 s units
    f.extend(epb(2, 1024, b"skip me"));
    f.extend(block(3, &[4, 0, 0, 0, b'r', b'a', b'w', b'!'])); // simple packet block on interface 0
    let mut r = PcapReader::new(&f[..]).expect("pcapng");
    let mut got = Vec::new();
    while let Some(rec) = r.next_record().expect("valid blocks") {
        got.push((rec.link_type, rec.ts.nanos(), rec.data.to_vec()));
    }
    assert_eq!(
        got,
        vec![
            (LinkType::Ethernet, 5_000_001_000, b"eth".to_vec()),
            (LinkType::LinuxSll2, 7_000_000_002, b"sll2".to_vec()),
            // A simple packet block has no timestamp: it is stamped with the one before it.
            (LinkType::Ethernet, 7_000_000_002, b"raw!".to_vec()),
        ]
    );
    assert_eq!(r.skipped_records(), 1);
}

#[test]
fn pcapng_if_tsoffset_moves_an_interfaces_timestamps() {
    let mut f = shb();
    let mut body = Vec::new();
    body.extend(1u16.to_le_bytes());
    body.extend(0u16.to_le_bytes());
    body.extend(0u32.to_le_bytes());
    body.extend(14u16.to_le_bytes()); // if_tsoffset
    body.extend(8u16.to_le_bytes());
    body.extend(1_700_000_000i64.to_le_bytes());
    body.extend([0, 0, 0, 0]); // opt_endofopt
    f.extend(block(1, &body));
    f.extend(idb(1, None));
    f.extend(epb(0, 2_500_000, b"a"));
    f.extend(epb(1, 2_500_000, b"b"));
    let mut r = PcapReader::new(&f[..]).expect("pcapng");
    let mut got = Vec::new();
    while let Some(rec) = r.next_record().expect("valid blocks") {
        got.push((rec.interface, rec.ts.nanos()));
    }
    assert_eq!(got, vec![(0, 1_700_000_002_500_000_000), (1, 2_500_000_000)]);
}

#[test]
fn pcapng_corruption_is_reported() {
    let mut f = shb();
    f.extend(idb(1, None));
    let good = f.len();
    f.extend(epb(0, 1, b"0123456789"));
    // Cut inside the packet block.
    let mut r = PcapReader::new(&f[..good + 10]).expect("section header");
    assert!(matches!(r.next_record(), Err(PcapError::Truncated { .. })));
    // A packet on an interface that was never described.
    let mut g = shb();
    g.extend(epb(3, 1, b"x"));
    let mut r = PcapReader::new(&g[..]).expect("section header");
    assert!(matches!(r.next_record(), Err(PcapError::Corrupt { .. })));
    // A block length that is not a multiple of four.
    let mut h = shb();
    h.extend(1u32.to_le_bytes());
    h.extend(13u32.to_le_bytes());
    h.extend([0u8; 8]);
    let mut r = PcapReader::new(&h[..]).expect("section header");
    assert!(matches!(r.next_record(), Err(PcapError::Corrupt { .. })));
}
