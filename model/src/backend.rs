//! What an entry says about a call to a backend pods talk to (SPEC §3.5) — a datastore (Redis,
//! PostgreSQL, MySQL) or a message broker (AMQP, Kafka): the command asked and how it ended. The error's text
//! is the entry's `error.msg`; here is what names and counts it.

use serde::{Deserialize, Serialize};

/// A Redis command and its reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RedisInfo {
    /// The command's name in upper case (`GET`, `EVALSHA`, `CLIENT`), `?` when it was not seen.
    pub command: String,
    /// The reply's RESP type: `simple`, `error`, `integer`, `bulk`, `null`, `array`, `map`, `set`, …;
    /// absent when none came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    /// An error reply's code, its first word (`WRONGTYPE`, `NOAUTH`, `OOM`, `READONLY`, `ERR`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// A PostgreSQL call: the startup and authentication, a simple query, or an extended-protocol batch up to
/// its Sync — each answered by one ReadyForQuery (or a fatal error).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostgresqlInfo {
    /// `startup`, `query` (simple), `execute` (extended: Parse/Bind/Execute … Sync), `function`.
    pub command: String,
    /// The SQL (its first 256 bytes), or `user@database` for a startup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// The ErrorResponse's severity (`ERROR`, `FATAL`, `PANIC`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// The ErrorResponse's SQLSTATE (`28P01`, `42P01`, `23505`, `53300`, `57014`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlstate: Option<String>,
}

/// A MySQL command and its answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MysqlInfo {
    /// `login` (the handshake and authentication), `COM_QUERY`, `COM_STMT_PREPARE`, `COM_STMT_EXECUTE`, …
    pub command: String,
    /// The SQL of a query or prepared statement (its first 256 bytes), or the user of a login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// An ERR packet's error number (`1045`, `1146`, `1062`, `1040`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    /// An ERR packet's SQLSTATE (`28000`, `42S02`, `23000`), where the server sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlstate: Option<String>,
}

/// A backend call as people write it: its protocol's name, its command and what it asked, if the
/// entry is one (`("PostgreSQL", "query", Some("SELECT …"))`).
pub fn call_of(e: &crate::Entry) -> Option<(&'static str, &str, Option<&str>)> {
    if let Some(r) = &e.redis {
        return Some(("Redis", &r.command, None));
    }
    if let Some(p) = &e.postgresql {
        return Some(("PostgreSQL", &p.command, p.query.as_deref()));
    }
    if let Some(a) = &e.amqp {
        return Some(("AMQP", &a.method, None));
    }
    if let Some(k) = &e.kafka {
        return Some(("Kafka", &k.api, k.topic.as_deref()));
    }
    let m = e.mysql.as_ref()?;
    Some(("MySQL", &m.command, m.query.as_deref()))
}

/// An AMQP 0-9-1 method and how the broker answered it, or a broker's close or return on its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AmqpInfo {
    /// `class.method` (`queue.declare`, `basic.publish`): the client's method, or the one a close names.
    pub method: String,
    pub channel: u16,
    /// The reply code of a `channel.close`, `connection.close` or `basic.return` (`404`, `403`, `406`,
    /// `312`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_code: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_text: Option<String>,
}

/// A Kafka request and its response, paired by correlation id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KafkaInfo {
    pub api_key: i16,
    /// The API by its protocol name (`Produce`, `Fetch`, `Metadata`, `JoinGroup`), `Unknown` for a key not
    /// known here.
    pub api: String,
    pub api_version: i16,
    pub correlation_id: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The response's first error code (an error's, before one the protocol uses by design), by number
    /// and name (`6`, `NOT_LEADER_OR_FOLLOWER`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_name: Option<String>,
    /// Where that code was: its topic and partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
}
