//! One packet, one observation; one connection, one connection. A node's agent sees each packet at
//! several capture points (veths, a bridge, the way in and out), and a connection under several 4-tuples
//! (before and after a Service's DNAT, SNAT, half translated back): `copies` finds a packet seen again, in
//! the front; `aliases` links a connection's tuples, in the shard that tracks it.

pub mod aliases;
pub mod copies;
