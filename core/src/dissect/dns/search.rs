//! Search-list expansion (SPEC §3.5): a pod with `ndots:5` asks `web.shop.svc.cluster.local`,
//! `web.svc.cluster.local`, `web.cluster.local`, … before the name itself, and every candidate but the
//! last is answered NXDOMAIN. Those NXDOMAINs are steps, not errors; the last one of a chain that never
//! found an answer is the one final NXDOMAIN error.
//!
//! Chains are tracked per client, first label and query type (A and AAAA walk the list side by side).
//! An NXDOMAIN is held for `SEARCH_STEP_MS`: a query from the same client that *continues* its chain
//! makes it a step; otherwise it is final. A query continues a chain when it is a candidate the chain has
//! not asked yet and is related as search candidates are:
//! - with two or more names asked, the chain knows the relative name (the labels its names share at the
//!   start) and the query must start with it;
//! - with one name `H` asked, the query `Q` shares a first label with it and either `H` is their common
//!   start (the name was tried as it is first, `ndots` reached), or `Q` is (the bare name, last), or
//!   what follows the common start in `Q` is a proper label suffix of what follows it in `H`
//!   (`shop.svc.cluster.local` → `svc.cluster.local`).
//!
//! A query for a name the chain already asked never continues it: an application retrying a name that
//! does not exist starts a new chain, and the old one's last NXDOMAIN stays final — a retry is never
//! hidden as a search step. Two threads of one pod resolving the same name at once make two chains.

use std::collections::HashMap;
use std::net::IpAddr;

use super::wire::Question;
use crate::engine::stats::Stats;
use crate::entry::{Entry, EntryError, ErrorType};
use crate::time::Timestamp;

/// How long after an NXDOMAIN the client's next search step may come (SPEC §3.5).
pub const SEARCH_STEP_MS: u64 = 2_000;
/// Chains followed at once, at most; past it an NXDOMAIN is reported undecided (without error) and
/// counted in `dns_untracked`: a missed error, never a false one.
const MAX_CHAINS: usize = 16_384;
/// Names remembered per chain: glibc's search list holds at most 32 domains; Kubernetes writes 3 to 6.
const MAX_NAMES: usize = 33;

/// (client address, first label, query type).
type Bucket = (IpAddr, String, u16);

struct Chain {
    /// The candidates asked, in order.
    names: Vec<String>,
    /// Labels at the start every name shares (the relative name), once two names are known.
    relative: Option<usize>,
    /// The last candidate's NXDOMAIN, waiting to learn whether the chain goes on, and when it is final.
    held: Option<(Entry, Timestamp)>,
    /// The chain's last query or answer.
    last: Timestamp,
}

#[derive(Default)]
pub struct SearchLists {
    chains: HashMap<Bucket, Vec<Chain>, foldhash::fast::RandomState>,
    count: usize,
}

impl SearchLists {
    /// A query from `client`: the first chain it continues has its held NXDOMAIN reported as a step.
    pub fn on_query(
        &mut self,
        client: IpAddr,
        name: &str,
        qtype: u16,
        ts: Timestamp,
        stats: &mut Stats,
        out: &mut Vec<Entry>,
    ) {
        if self.count == 0 {
            return;
        }
        let Some(chains) = self.chains.get_mut(&(client, first_label(name).to_owned(), qtype)) else { return };
        let Some(chain) = chains.iter_mut().find(|c| c.continued_by(name, ts)) else { return };
        if let Some((entry, _)) = chain.held.take() {
            stats.dns_search_steps += 1;
            out.push(entry);
        }
        if chain.names.len() < MAX_NAMES {
            chain.relative = Some(chain.relative.unwrap_or_else(|| common_start(&chain.names[0], name)));
            chain.names.push(name.to_owned());
        }
        chain.last = ts;
    }

    /// An NXDOMAIN for a query (not otherwise an error): held until its chain goes on or its time is up.
    pub fn on_nxdomain(
        &mut self,
        client: IpAddr,
        q: &Question,
        entry: Entry,
        ts: Timestamp,
        stats: &mut Stats,
        out: &mut Vec<Entry>,
    ) {
        let (name, until) = (q.name.as_str(), ts.plus_millis(SEARCH_STEP_MS));
        let bucket = (client, first_label(name).to_owned(), q.qtype);
        if let Some(chain) = self.chains.get_mut(&bucket).and_then(|chains| {
            chains.iter_mut().find(|c| c.held.is_none() && c.names.last().is_some_and(|n| n == name))
        }) {
            chain.held = Some((entry, until));
            chain.last = ts;
            return;
        }
        if self.count >= MAX_CHAINS {
            stats.dns_untracked += 1;
            out.push(entry);
            return;
        }
        let chain = Chain { names: vec![name.to_owned()], relative: None, held: Some((entry, until)), last: ts };
        self.chains.entry(bucket).or_default().push(chain);
        self.count += 1;
    }

    /// Held NXDOMAINs whose time is up (all of them at `None`, the end of input) are final; chains idle
    /// for `idle_ms` with nothing held are forgotten.
    pub fn sweep(&mut self, now: Option<Timestamp>, idle_ms: u64, out: &mut Vec<Entry>) {
        if self.count == 0 {
            return;
        }
        let mut finals = Vec::new();
        let mut count = 0;
        self.chains.retain(|_, chains| {
            chains.retain_mut(|c| {
                if let Some((_, until)) = &c.held {
                    if now.is_none_or(|now| *until <= now) {
                        if let Some((entry, _)) = c.held.take() {
                            finals.push(final_nxdomain(entry));
                        }
                        return false;
                    }
                    return true;
                }
                now.is_some_and(|now| c.last.plus_millis(idle_ms) > now)
            });
            count += chains.len();
            !chains.is_empty()
        });
        self.count = count;
        finals.sort_by_key(|e| e.timestamp);
        out.extend(finals);
    }
}

impl Chain {
    fn continued_by(&self, q: &str, ts: Timestamp) -> bool {
        let Some((_, until)) = &self.held else { return false };
        if *until <= ts || self.names.iter().any(|n| n == q) {
            return false;
        }
        match self.relative {
            Some(labels) => starts_with_labels(q, &self.names[0], labels),
            None => {
                let h = &self.names[0];
                let common = common_start(h, q);
                let (h_rest, q_rest) = (after_labels(h, common), after_labels(q, common));
                h_rest.is_empty() || q_rest.is_empty() || is_proper_label_suffix(q_rest, h_rest)
            }
        }
    }
}

/// An NXDOMAIN no search step followed: an error, but for gRPC's optional service-config lookup
/// (`_grpc_config.<name>` TXT, gRFC A2): most names have none, and every grpc-go channel asks.
fn final_nxdomain(mut e: Entry) -> Entry {
    let Some(d) = e.dns.as_ref() else { return e };
    if d.question.qtype == "TXT" && d.question.name.starts_with("_grpc_config.") {
        return e;
    }
    let msg = format!("NXDOMAIN for {} {}", d.question.name, d.question.qtype);
    e.error = Some(EntryError { kind: ErrorType::Dns, msg });
    e
}

fn first_label(name: &str) -> &str {
    name.split('.').next().unwrap_or(name)
}

/// How many labels at the start `a` and `b` share.
fn common_start(a: &str, b: &str) -> usize {
    a.split('.').zip(b.split('.')).take_while(|(x, y)| x == y).count()
}

/// Whether `name` starts with the first `labels` labels of `of`.
fn starts_with_labels(name: &str, of: &str, labels: usize) -> bool {
    let mut n = name.split('.');
    of.split('.').take(labels).all(|l| n.next() == Some(l))
}

/// `name` without its first `labels` labels (empty when it has no more).
fn after_labels(name: &str, labels: usize) -> &str {
    if labels == 0 {
        return name;
    }
    name.match_indices('.').nth(labels - 1).map_or("", |(i, _)| &name[i + 1..])
}

/// Whether `suffix` is `name` without one or more of its first labels.
fn is_proper_label_suffix(suffix: &str, name: &str) -> bool {
    !suffix.is_empty() && name.len() > suffix.len() && name.ends_with(suffix) && {
        let cut = name.len() - suffix.len();
        name.as_bytes().get(cut - 1) == Some(&b'.')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(common_start("web.shop.svc.cluster.local", "web.svc.cluster.local"), 1);
        assert_eq!(common_start("a.b.c", "a.b.c.shop.svc"), 3);
        assert_eq!(after_labels("a.b.c.shop.svc", 3), "shop.svc");
        assert_eq!(after_labels("a.b.c", 3), "");
        assert_eq!(after_labels("a.b.c", 0), "a.b.c");
        assert!(is_proper_label_suffix("svc.cluster.local", "shop.svc.cluster.local"));
        assert!(!is_proper_label_suffix("vc.cluster.local", "shop.svc.cluster.local"));
        assert!(!is_proper_label_suffix("shop.svc.cluster.local", "shop.svc.cluster.local"));
        assert!(!is_proper_label_suffix("", "local"));
        assert!(starts_with_labels("web.example.internal", "web.shop.svc.cluster.local", 1));
        assert!(!starts_with_labels("webx.example", "web.shop", 1));
    }
}
