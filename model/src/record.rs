//! Entries as KFL records: every selector reaches the field of the same name in the JSON form (SPEC §2),
//! without serialising the entry or allocating.

use std::net::IpAddr;

use faultline_kfl::{seg_name, Inline, Record, Seg, Value};

use crate::entry::{Endpoint, Entry, FlowEndpoint, Headers, Workload};

impl Record for Entry {
    fn get(&self, path: &[Seg]) -> Option<Value<'_>> {
        let (first, rest) = path.split_first()?;
        let name = seg_name(first)?;
        match (name, rest) {
            ("id", []) => Some(Value::Str(&self.id)),
            ("timestamp", []) => Some(Value::Text(Inline::format(format_args!("{}", self.timestamp)))),
            ("node", []) => Some(Value::from_opt_str(self.node.as_deref())),
            ("protocol", []) => Some(Value::Str(self.protocol.as_str())),
            ("kind", []) => Some(Value::Text(Inline::format(format_args!("{}", crate::kind::Kind::of(self))))),
            ("src", rest) => endpoint(&self.src, rest),
            ("dst", rest) => endpoint(&self.dst, rest),
            ("elapsedTime", []) => Some(Value::Num(self.elapsed_time)),
            ("error", rest) => {
                let Some(err) = &self.error else { return rest.is_empty().then_some(Value::Null) };
                match leaf(rest)? {
                    None => Some(Value::Present),
                    Some("type") => Some(Value::Str(err.kind.as_str())),
                    Some("msg") => Some(Value::Str(&err.msg)),
                    _ => None,
                }
            }
            ("tcp", rest) => {
                let t = self.tcp.as_ref()?;
                match leaf(rest)? {
                    None => Some(Value::Present),
                    Some("state") => Some(Value::Str(t.state.as_str())),
                    Some("reason") => Some(Value::from_opt_str(t.reason.map(|r| r.as_str()))),
                    Some("by") => Some(Value::from_opt_str(t.by.map(|b| b.as_str()))),
                    _ => None,
                }
            }
            ("icmp", rest) => {
                let i = self.icmp.as_ref()?;
                let Some((f, deeper)) = rest.split_first() else { return Some(Value::Present) };
                match (seg_name(f)?, deeper) {
                    ("version", []) => Some(Value::Num(f64::from(i.version))),
                    ("type", []) => Some(Value::Num(f64::from(i.icmp_type))),
                    ("code", []) => Some(Value::Num(f64::from(i.code))),
                    ("typeName", []) => Some(Value::Str(&i.type_name)),
                    ("codeName", []) => Some(Value::Str(&i.code_name)),
                    ("mtu", []) => i.mtu.map(|m| Value::Num(f64::from(m))),
                    ("pointer", []) => i.pointer.map(|p| Value::Num(f64::from(p))),
                    ("original", deeper) => {
                        let o = i.original.as_ref()?;
                        let Some((g, deepest)) = deeper.split_first() else { return Some(Value::Present) };
                        match (seg_name(g)?, deepest) {
                            ("protocol", []) => Some(Value::Str(&o.protocol)),
                            ("src", d) => flow_endpoint(&o.src, d),
                            ("dst", d) => flow_endpoint(&o.dst, d),
                            _ => None,
                        }
                    }
                    _ => None,
                }
            }
            ("request", rest) => {
                let r = self.request.as_ref()?;
                let Some((f, deeper)) = rest.split_first() else { return Some(Value::Present) };
                match (seg_name(f)?, deeper) {
                    ("method", []) => Some(Value::Str(&r.method)),
                    ("path", []) => Some(Value::Str(&r.path)),
                    ("version", []) => Some(Value::Str(&r.version)),
                    ("bodySize", []) => Some(Value::Num(r.body_size as f64)),
                    ("headers", d) => headers(&r.headers, d),
                    _ => None,
                }
            }
            ("response", rest) => {
                let r = self.response.as_ref()?;
                let Some((f, deeper)) = rest.split_first() else { return Some(Value::Present) };
                match (seg_name(f)?, deeper) {
                    ("status", []) => Some(Value::Num(f64::from(r.status))),
                    ("statusText", []) => Some(Value::Str(&r.status_text)),
                    ("version", []) => Some(Value::Str(&r.version)),
                    ("bodySize", []) => Some(Value::Num(r.body_size as f64)),
                    ("headers", d) => headers(&r.headers, d),
                    _ => None,
                }
            }
            ("tls", rest) => {
                let t = self.tls.as_ref()?;
                match leaf(rest)? {
                    None => Some(Value::Present),
                    Some("sni") => Some(Value::from_opt_str(t.sni.as_deref())),
                    Some("version") => Some(Value::from_opt_str(t.version.as_deref())),
                    Some("alert") => Some(Value::from_opt_str(t.alert.as_deref())),
                    Some("by") => Some(Value::from_opt_str(t.by.map(|b| b.as_str()))),
                    _ => None,
                }
            }
            ("grpc", rest) => {
                let g = self.grpc.as_ref()?;
                match leaf(rest)? {
                    None => Some(Value::Present),
                    Some("service") => Some(Value::Str(&g.service)),
                    Some("method") => Some(Value::Str(&g.method)),
                    Some("status") => Some(g.status.map_or(Value::Null, |s| Value::Num(f64::from(s)))),
                    Some("statusName") => Some(Value::from_opt_str(g.status_name.as_deref())),
                    Some("message") => Some(Value::from_opt_str(g.message.as_deref())),
                    _ => None,
                }
            }
            ("http2", rest) => {
                let h = self.http2.as_ref()?;
                match leaf(rest)? {
                    None => Some(Value::Present),
                    Some("stream") => Some(Value::Num(f64::from(h.stream))),
                    Some("frame") => Some(Value::Str(&h.frame)),
                    Some("errorCode") => Some(Value::Str(&h.error_code)),
                    Some("by") => Some(Value::Str(h.by.as_str())),
                    _ => None,
                }
            }
            ("redis", rest) => {
                let r = self.redis.as_ref()?;
                match leaf(rest)? {
                    None => Some(Value::Present),
                    Some("command") => Some(Value::Str(&r.command)),
                    Some("reply") => Some(Value::from_opt_str(r.reply.as_deref())),
                    Some("code") => Some(Value::from_opt_str(r.code.as_deref())),
                    _ => None,
                }
            }
            ("postgresql", rest) => {
                let p = self.postgresql.as_ref()?;
                match leaf(rest)? {
                    None => Some(Value::Present),
                    Some("command") => Some(Value::Str(&p.command)),
                    Some("query") => Some(Value::from_opt_str(p.query.as_deref())),
                    Some("severity") => Some(Value::from_opt_str(p.severity.as_deref())),
                    Some("sqlstate") => Some(Value::from_opt_str(p.sqlstate.as_deref())),
                    _ => None,
                }
            }
            ("mysql", rest) => {
                let m = self.mysql.as_ref()?;
                match leaf(rest)? {
                    None => Some(Value::Present),
                    Some("command") => Some(Value::Str(&m.command)),
                    Some("query") => Some(Value::from_opt_str(m.query.as_deref())),
                    Some("code") => Some(m.code.map_or(Value::Null, |c| Value::Num(f64::from(c)))),
                    Some("sqlstate") => Some(Value::from_opt_str(m.sqlstate.as_deref())),
                    _ => None,
                }
            }
            ("amqp", rest) => {
                let a = self.amqp.as_ref()?;
                match leaf(rest)? {
                    None => Some(Value::Present),
                    Some("method") => Some(Value::Str(&a.method)),
                    Some("channel") => Some(Value::Num(f64::from(a.channel))),
                    Some("replyCode") => Some(a.reply_code.map_or(Value::Null, |c| Value::Num(f64::from(c)))),
                    Some("replyText") => Some(Value::from_opt_str(a.reply_text.as_deref())),
                    _ => None,
                }
            }
            ("kafka", rest) => {
                let k = self.kafka.as_ref()?;
                match leaf(rest)? {
                    None => Some(Value::Present),
                    Some("apiKey") => Some(Value::Num(f64::from(k.api_key))),
                    Some("api") => Some(Value::Str(&k.api)),
                    Some("apiVersion") => Some(Value::Num(f64::from(k.api_version))),
                    Some("correlationId") => Some(Value::Num(f64::from(k.correlation_id))),
                    Some("clientId") => Some(Value::from_opt_str(k.client_id.as_deref())),
                    Some("errorCode") => Some(k.error_code.map_or(Value::Null, |c| Value::Num(f64::from(c)))),
                    Some("errorName") => Some(Value::from_opt_str(k.error_name.as_deref())),
                    Some("topic") => Some(Value::from_opt_str(k.topic.as_deref())),
                    Some("partition") => Some(k.partition.map_or(Value::Null, |p| Value::Num(f64::from(p)))),
                    _ => None,
                }
            }
            ("cause", rest) => {
                let Some(c) = &self.cause else { return rest.is_empty().then_some(Value::Null) };
                match leaf(rest)? {
                    None => Some(Value::Present),
                    Some("reason") => Some(Value::Str(c.reason.as_str())),
                    Some("message") => Some(Value::Str(&c.message)),
                    _ => None,
                }
            }
            ("dns", rest) => {
                let d = self.dns.as_ref()?;
                let Some((f, deeper)) = rest.split_first() else { return Some(Value::Present) };
                match (seg_name(f)?, deeper) {
                    ("id", []) => Some(Value::Num(f64::from(d.id))),
                    ("rcode", []) => Some(d.rcode.map_or(Value::Null, |r| Value::Num(f64::from(r)))),
                    ("rcodeName", []) => Some(Value::from_opt_str(d.rcode_name.as_deref())),
                    ("question", deepest) => match leaf(deepest)? {
                        None => Some(Value::Present),
                        Some("name") => Some(Value::Str(&d.question.name)),
                        Some("type") => Some(Value::Str(&d.question.qtype)),
                        _ => None,
                    },
                    // The first answer record, e.g. `dns.answers == "A 10.0.0.1"`.
                    ("answers", []) => d.answers.first().map(|a| Value::Str(a)),
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

/// `[]` → `Some(None)` (the object itself); `[name]` → `Some(Some(name))`; deeper → `None`.
fn leaf(rest: &[Seg]) -> Option<Option<&str>> {
    match rest {
        [] => Some(None),
        [one] => seg_name(one).map(Some),
        _ => None,
    }
}

fn ip(ip: &IpAddr) -> Value<'static> {
    Value::Text(Inline::format(format_args!("{ip}")))
}

fn endpoint<'a>(e: &'a Endpoint, rest: &[Seg]) -> Option<Value<'a>> {
    match leaf(rest)? {
        None => Some(Value::Present),
        Some("ip") => Some(ip(&e.ip)),
        Some("port") => Some(e.port.map_or(Value::Null, |p| Value::Num(f64::from(p)))),
        Some("name") => Some(Value::from_opt_str(e.name.as_deref())),
        Some("namespace") => Some(Value::from_opt_str(e.namespace.as_deref())),
        Some("workload") => Some(Value::from_opt_str(e.workload.as_ref().map(Workload::as_str))),
        _ => None,
    }
}

fn flow_endpoint<'a>(e: &'a FlowEndpoint, rest: &[Seg]) -> Option<Value<'a>> {
    match leaf(rest)? {
        None => Some(Value::Present),
        Some("ip") => Some(ip(&e.ip)),
        Some("port") => Some(Value::Num(f64::from(e.port))),
        _ => None,
    }
}

/// Header names are stored in lower case; lookups ignore case without allocating.
fn headers<'a>(h: &'a Headers, rest: &[Seg]) -> Option<Value<'a>> {
    match leaf(rest)? {
        None => Some(Value::Present),
        Some(name) => h.get(name).map(Value::Str),
    }
}
