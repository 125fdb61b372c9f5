use std::fmt;

/// The layer at which a frame stopped making sense.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layer {
    Link,
    Ip,
    Tcp,
    Udp,
    Icmp,
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layer::Link => "link",
            Layer::Ip => "ip",
            Layer::Tcp => "tcp",
            Layer::Udp => "udp",
            Layer::Icmp => "icmp",
        })
    }
}

/// Why a frame could not be decoded. One variant says which layer ran short and by how much; the other
/// carries the underlying parser's description of a malformed header.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{layer} header truncated: {have} bytes, need {need}")]
    Truncated { layer: Layer, need: usize, have: usize },
    #[error("{layer} header malformed: {detail}")]
    Malformed { layer: Layer, detail: String },
}

impl DecodeError {
    pub fn layer(&self) -> Layer {
        match self {
            DecodeError::Truncated { layer, .. } | DecodeError::Malformed { layer, .. } => *layer,
        }
    }

    pub(crate) fn malformed(layer: Layer, detail: impl fmt::Display) -> Self {
        DecodeError::Malformed { layer, detail: detail.to_string() }
    }
}
