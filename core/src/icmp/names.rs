//! ICMP types and codes in words, after the IANA registries, in PascalCase. A code name drops what the
//! type already says: type `DestinationUnreachable`, code `Port`.

/// Which messages become entries (SPEC §3.4): errors, router advertisement/solicitation and redirects.
/// Echo, timestamps and neighbour discovery are informational and only become entries when asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An error message that quotes the datagram it reports on.
    Error,
    /// Router discovery and redirects: entries, but not errors.
    Routing,
    /// Echo and neighbour discovery.
    Informational,
    /// Anything else (timestamps, address masks, MLD, experimental types): not reported.
    Other,
}

pub fn v4(icmp_type: u8, code: u8) -> (&'static str, &'static str, Kind) {
    let (t, kind) = match icmp_type {
        0 => ("EchoReply", Kind::Informational),
        3 => ("DestinationUnreachable", Kind::Error),
        4 => ("SourceQuench", Kind::Error),
        5 => ("Redirect", Kind::Routing),
        8 => ("EchoRequest", Kind::Informational),
        9 => ("RouterAdvertisement", Kind::Routing),
        10 => ("RouterSolicitation", Kind::Routing),
        11 => ("TimeExceeded", Kind::Error),
        12 => ("ParameterProblem", Kind::Error),
        13 => ("Timestamp", Kind::Other),
        14 => ("TimestampReply", Kind::Other),
        _ => ("Unknown", Kind::Other),
    };
    let c = match (icmp_type, code) {
        (3, 0) => "Net",
        (3, 1) => "Host",
        (3, 2) => "Protocol",
        (3, 3) => "Port",
        (3, 4) => "FragmentationNeeded",
        (3, 5) => "SourceRouteFailed",
        (3, 6) => "DestinationNetworkUnknown",
        (3, 7) => "DestinationHostUnknown",
        (3, 8) => "SourceHostIsolated",
        (3, 9) => "NetAdministrativelyProhibited",
        (3, 10) => "HostAdministrativelyProhibited",
        (3, 11) => "NetUnreachableForTos",
        (3, 12) => "HostUnreachableForTos",
        (3, 13) => "CommunicationAdministrativelyProhibited",
        (3, 14) => "HostPrecedenceViolation",
        (3, 15) => "PrecedenceCutoffInEffect",
        (5, 0) => "Network",
        (5, 1) => "Host",
        (5, 2) => "TosAndNetwork",
        (5, 3) => "TosAndHost",
        (9, 0) => "NormalRouterAdvertisement",
        (9, 16) => "DoesNotRouteCommonTraffic",
        (11, 0) => "TtlExceededInTransit",
        (11, 1) => "FragmentReassemblyTimeExceeded",
        (12, 0) => "PointerIndicatesError",
        (12, 1) => "MissingRequiredOption",
        (12, 2) => "BadLength",
        (0 | 4 | 8 | 10 | 13 | 14, 0) => "NoCode",
        _ => "Unknown",
    };
    (t, c, kind)
}

pub fn v6(icmp_type: u8, code: u8) -> (&'static str, &'static str, Kind) {
    let (t, kind) = match icmp_type {
        1 => ("DestinationUnreachable", Kind::Error),
        2 => ("PacketTooBig", Kind::Error),
        3 => ("TimeExceeded", Kind::Error),
        4 => ("ParameterProblem", Kind::Error),
        128 => ("EchoRequest", Kind::Informational),
        129 => ("EchoReply", Kind::Informational),
        133 => ("RouterSolicitation", Kind::Routing),
        134 => ("RouterAdvertisement", Kind::Routing),
        135 => ("NeighborSolicitation", Kind::Informational),
        136 => ("NeighborAdvertisement", Kind::Informational),
        137 => ("Redirect", Kind::Routing),
        _ => ("Unknown", Kind::Other),
    };
    let c = match (icmp_type, code) {
        (1, 0) => "NoRouteToDestination",
        (1, 1) => "CommunicationAdministrativelyProhibited",
        (1, 2) => "BeyondScopeOfSourceAddress",
        (1, 3) => "Address",
        (1, 4) => "Port",
        (1, 5) => "SourceAddressFailedIngressEgressPolicy",
        (1, 6) => "RejectRouteToDestination",
        (1, 7) => "ErrorInSourceRoutingHeader",
        (1, 8) => "HeadersTooLong",
        (3, 0) => "HopLimitExceededInTransit",
        (3, 1) => "FragmentReassemblyTimeExceeded",
        (4, 0) => "ErroneousHeaderField",
        (4, 1) => "UnrecognizedNextHeader",
        (4, 2) => "UnrecognizedIpv6Option",
        (4, 3) => "IncompleteHeaderChain",
        (4, 4) => "SrPacketHeaderError",
        (4, 5) => "UnrecognizedNextHeaderByIntermediateNode",
        (4, 6) => "ExtensionHeaderTooBig",
        (4, 7) => "ExtensionHeaderChainTooLong",
        (4, 8) => "TooManyExtensionHeaders",
        (4, 9) => "TooManyOptionsInExtensionHeader",
        (4, 10) => "OptionTooBig",
        (2 | 128 | 129 | 133 | 134 | 135 | 136 | 137, 0) => "NoCode",
        _ => "Unknown",
    };
    (t, c, kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_v4_destination_unreachable_code_has_a_name() {
        for code in 0..=15 {
            let (t, c, k) = v4(3, code);
            assert_eq!((t, k), ("DestinationUnreachable", Kind::Error));
            assert_ne!(c, "Unknown", "code {code}");
        }
        assert_eq!(v4(3, 16).1, "Unknown");
        for (ty, codes) in [(5u8, 0..=3u8), (11, 0..=1), (12, 0..=2)] {
            for code in codes {
                assert_ne!(v4(ty, code).1, "Unknown", "{ty}/{code}");
            }
        }
        assert_eq!(v4(4, 0), ("SourceQuench", "NoCode", Kind::Error));
        assert_eq!(v4(9, 0).2, Kind::Routing);
        assert_eq!(v4(10, 0).2, Kind::Routing);
        assert_eq!(v4(8, 0).2, Kind::Informational);
    }

    #[test]
    fn every_v6_error_code_has_a_name() {
        for code in 0..=8 {
            assert_ne!(v6(1, code).1, "Unknown", "1/{code}");
        }
        assert_eq!(v6(2, 0), ("PacketTooBig", "NoCode", Kind::Error));
        for code in 0..=1 {
            assert_ne!(v6(3, code).1, "Unknown");
        }
        for code in 0..=2 {
            assert_ne!(v6(4, code).1, "Unknown");
        }
        for ty in [133, 134, 137] {
            assert_eq!(v6(ty, 0).2, Kind::Routing);
        }
        for ty in [128, 129, 135, 136] {
            assert_eq!(v6(ty, 0).2, Kind::Informational);
        }
    }
}
