//! TCP: the per-connection state machine that finds connection errors (SPEC §3.1), and stream
//! reassembly for the dissectors.

pub(crate) mod conn;
pub mod reassembly;

/// `a < b` in sequence space (RFC 1982 serial arithmetic).
pub(crate) fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// `a >= b` in sequence space.
pub(crate) fn seq_ge(a: u32, b: u32) -> bool {
    !seq_lt(a, b)
}
