//! The dissectors a TapConfig may switch on (SPEC §3.5, `dissectors`): one enum for the CRD, the agent's
//! `--dissector`, the engine's configuration and its registry of protocols.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Dissector {
    Http,
    Dns,
    Tls,
    /// HTTP/2 in cleartext, and gRPC on it.
    Http2,
    Redis,
    Postgresql,
    Mysql,
    /// AMQP 0-9-1 (RabbitMQ).
    Amqp,
    Kafka,
}

impl Dissector {
    /// Every one, in the order the CRD lists them.
    pub const ALL: [Dissector; 9] = [
        Dissector::Http,
        Dissector::Dns,
        Dissector::Tls,
        Dissector::Http2,
        Dissector::Redis,
        Dissector::Postgresql,
        Dissector::Mysql,
        Dissector::Amqp,
        Dissector::Kafka,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Dissector::Http => "http",
            Dissector::Dns => "dns",
            Dissector::Tls => "tls",
            Dissector::Http2 => "http2",
            Dissector::Redis => "redis",
            Dissector::Postgresql => "postgresql",
            Dissector::Mysql => "mysql",
            Dissector::Amqp => "amqp",
            Dissector::Kafka => "kafka",
        }
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

impl fmt::Display for Dissector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Dissector {
    type Err = String;

    fn from_str(s: &str) -> Result<Dissector, String> {
        Dissector::ALL.into_iter().find(|d| d.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = Dissector::ALL.iter().map(|d| d.as_str()).collect();
            format!("unknown dissector {s:?} (known: {})", names.join(", "))
        })
    }
}

/// A set of dissectors.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Dissectors(u32);

impl Dissectors {
    pub const ALL: Dissectors = Dissectors((1 << Dissector::ALL.len()) - 1);
    pub const NONE: Dissectors = Dissectors(0);

    pub fn contains(self, d: Dissector) -> bool {
        self.0 & d.bit() != 0
    }

    /// This set but `d`.
    pub fn without(self, d: Dissector) -> Dissectors {
        Dissectors(self.0 & !d.bit())
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Dissector> {
        Dissector::ALL.into_iter().filter(move |d| self.contains(*d))
    }
}

impl Default for Dissectors {
    /// Every dissector is on unless a TapConfig says otherwise.
    fn default() -> Dissectors {
        Dissectors::ALL
    }
}

impl FromIterator<Dissector> for Dissectors {
    fn from_iter<I: IntoIterator<Item = Dissector>>(it: I) -> Dissectors {
        Dissectors(it.into_iter().fold(0, |bits, d| bits | d.bit()))
    }
}

impl fmt::Debug for Dissectors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back_and_sets_hold_what_they_were_made_of() {
        for d in Dissector::ALL {
            assert_eq!(d.as_str().parse::<Dissector>(), Ok(d));
            assert_eq!(serde_json::to_string(&d).expect("json"), format!("\"{d}\""));
        }
        assert!("mongodb".parse::<Dissector>().is_err());
        let some: Dissectors = [Dissector::Dns, Dissector::Http2].into_iter().collect();
        assert_eq!(some.iter().collect::<Vec<_>>(), vec![Dissector::Dns, Dissector::Http2]);
        assert!(!some.contains(Dissector::Http) && Dissectors::ALL.contains(Dissector::Http));
        assert_eq!(Dissector::ALL.into_iter().collect::<Dissectors>(), Dissectors::ALL);
    }
}
