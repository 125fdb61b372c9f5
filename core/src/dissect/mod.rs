//! Application protocols over TCP (and DNS over UDP): each protocol is a folder here. A connection's
//! payload (`payload`) is reassembled in both directions, identified from its first bytes (never from the
//! port), and handed to the protocol's dissector.

pub mod dns;
pub mod http;
pub mod http2;
pub(crate) mod payload;
pub mod tls;
