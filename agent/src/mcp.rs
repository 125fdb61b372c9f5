//! `faultline-agent mcp`: the MCP server an assistant starts on its own machine (stdio), answered by the
//! operator's `/mcp` (streamable HTTP) with the user's token. Each line on stdin is one JSON-RPC message;
//! it is posted as it is, and the operator's answer written as one line on stdout (a notification has
//! none). Nothing is decided here: what the assistant may see is what the operator shows the token.

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Value};

use crate::cli::McpArgs;

/// A message read from stdin, at most (an MCP request is small).
const MAX_LINE: usize = 1 << 20;

pub fn run(args: &McpArgs) -> ExitCode {
    let mut config = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(60)));
    if let Some(path) = &args.ca_file {
        let pem = match std::fs::read(path) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("operator CA {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        };
        match crate::run::report::operator_ca(path, &pem) {
            Ok(tls) => config = config.tls_config(tls),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let agent = config.http_status_as_error(false).build().new_agent();
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let id = serde_json::from_str::<Value>(&line).ok().and_then(|m| m.get("id").cloned());
        let answer = if line.len() > MAX_LINE {
            Some(error(id, "a message over 1 MiB"))
        } else {
            forward(&agent, args, &line).unwrap_or_else(|why| {
                tracing::warn!(%why, "the operator did not answer");
                id.is_some().then(|| error(id, &why))
            })
        };
        if let Some(a) = answer {
            if writeln!(out, "{a}").and_then(|_| out.flush()).is_err() {
                break;
            }
        }
    }
    ExitCode::SUCCESS
}

/// The operator's answer to one message: `None` for a notification's (202).
fn forward(agent: &ureq::Agent, args: &McpArgs, line: &str) -> Result<Option<String>, String> {
    let mut req = agent.post(&args.url).header("content-type", "application/json").header("accept", "application/json");
    if let Some(t) = &args.token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let mut resp = req.send(line).map_err(|e| format!("{}: {e}", args.url))?;
    let status = resp.status();
    let body = resp.body_mut().read_to_string().map_err(|e| format!("reading the answer: {e}"))?;
    match status.as_u16() {
        202 => Ok(None),
        200 => Ok(Some(body.lines().collect::<Vec<_>>().join(" "))),
        other => Err(format!("{} answered {other}: {}", args.url, body.trim())),
    }
}

fn error(id: Option<Value>, why: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id.unwrap_or(Value::Null), "error": {"code": -32603, "message": why}}).to_string()
}
