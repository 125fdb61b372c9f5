//! The node's own addresses, as the kernel of the agent's network namespace (the host's: agents run with
//! `hostNetwork`) lists them: the node IP, the CNI bridge's address (the source of the kubelet's probes of
//! pods on a bridge), the addresses of other host interfaces. Sent with every batch, so that the operator
//! can tell the node itself — the kubelet, host-network pods — from a pod at the end of an entry.
//!
//! Read from procfs rather than through getifaddrs(3): no unsafe code, and both files are stable kernel
//! ABI. Loopback addresses are left out (the agent does not capture loopback).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Addresses listed at most (a node with more interfaces than this has them cut, never a huge batch).
const MAX_ADDRESSES: usize = 256;

/// The addresses of this network namespace, but loopback's; empty if procfs cannot be read.
pub fn read() -> Vec<IpAddr> {
    let v4 = std::fs::read_to_string("/proc/net/fib_trie").unwrap_or_default();
    let v6 = std::fs::read_to_string("/proc/net/if_inet6").unwrap_or_default();
    parse(&v4, &v6)
}

/// IPv4 local addresses from `/proc/net/fib_trie` (an address line `|-- A.B.C.D` followed by `/32 host
/// LOCAL`), IPv6 from `/proc/net/if_inet6` (32 hex digits, then index, prefix, scope, flags, name).
fn parse(fib_trie: &str, if_inet6: &str) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    let mut last: Option<Ipv4Addr> = None;
    for line in fib_trie.lines() {
        let line = line.trim();
        if let Some(a) = line.strip_prefix("|-- ") {
            last = a.parse().ok();
        } else if line.starts_with("/32 host LOCAL") {
            if let Some(a) = last.filter(|a| !a.is_loopback()) {
                out.push(IpAddr::V4(a));
            }
        }
    }
    for line in if_inet6.lines() {
        let Some(hex) = line.split_whitespace().next().filter(|h| h.len() == 32) else { continue };
        let Ok(bits) = u128::from_str_radix(hex, 16) else { continue };
        let a = Ipv6Addr::from(bits);
        if !a.is_loopback() {
            out.push(IpAddr::V6(a));
        }
    }
    out.sort();
    out.dedup();
    out.truncate(MAX_ADDRESSES);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_addresses_of_both_families_but_loopback() {
        let fib = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n     \
                   |-- 10.88.0.0\n        /24 link UNICAST\n     |-- 10.88.0.1\n        /32 host LOCAL\n     \
                   |-- 127.0.0.1\n        /32 host LOCAL\n     |-- 192.0.2.2\n        /32 host LOCAL\n\
                   Local:\n     |-- 192.0.2.2\n        /32 host LOCAL\n";
        let v6 = "00000000000000000000000000000001 01 80 10 80       lo\n\
                  fd000000000000000000000000000002 04 40 00 82     eth0\n";
        let got = parse(fib, v6);
        let want: Vec<IpAddr> = ["10.88.0.1", "192.0.2.2", "fd00::2"].iter().map(|a| a.parse().expect("ip")).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn this_machine_has_some() {
        // The test machine has a non-loopback interface; a container without one would read none.
        assert!(read().iter().all(|a| !a.is_loopback()));
    }
}
