use serde_json::{json, Value as Json};

use super::*;

fn entries() -> Vec<(&'static str, Json)> {
    let ep = |ip: &str, port: u16| json!({"ip": ip, "port": port, "name": null, "namespace": "shop"});
    vec![
        (
            "ok200",
            json!({"protocol": "http", "src": ep("10.0.0.1", 40000), "dst": ep("10.0.0.2", 80), "error": null,
            "request": {"method": "GET", "path": "/api/v1/orders", "headers": {"x-request-id": "abc-1"}},
            "response": {"status": 200, "headers": {"content-length": "12"}}, "elapsedTime": 3.5}),
        ),
        (
            "err503",
            json!({"protocol": "http", "src": ep("10.0.0.1", 40001), "dst": ep("10.0.0.2", 80), "error": null,
            "request": {"method": "POST", "path": "/checkout", "headers": {}},
            "response": {"status": 503, "headers": {"content-length": "4"}}, "elapsedTime": 12.0}),
        ),
        (
            "bad400",
            json!({"protocol": "http", "src": ep("10.0.0.1", 40002), "dst": ep("10.0.0.2", 80), "error": null,
            "request": {"method": "GET", "path": "/x", "headers": {}}, "response": {"status": 400, "headers": {}}}),
        ),
        (
            "half",
            json!({"protocol": "http", "src": ep("10.0.0.1", 40003), "dst": ep("10.0.0.2", 80),
            "error": {"type": "pair-not-found", "msg": "missing response: connection reset"},
            "request": {"method": "GET", "path": "/api/slow", "headers": {}}}),
        ),
        (
            "reset",
            json!({"protocol": "tcp", "src": ep("10.0.0.1", 40004), "dst": ep("10.0.0.2", 5432),
            "error": {"type": "connection", "msg": "Reset"}, "tcp": {"state": "Reset", "by": "server"}}),
        ),
        (
            "icmp",
            json!({"protocol": "icmp", "src": {"ip": "10.0.0.254", "port": null}, "dst": {"ip": "10.0.0.1", "port": null},
            "error": null, "icmp": {"version": 4, "type": 3, "code": 3, "typeName": "DestinationUnreachable",
            "codeName": "Port", "original": {"protocol": "udp", "src": {"ip": "10.0.0.1", "port": 40005},
            "dst": {"ip": "10.0.0.2", "port": 53}}}}),
        ),
        (
            "dissect",
            json!({"protocol": "http", "src": ep("10.0.0.1", 40006), "dst": ep("10.0.0.2", 80),
            "error": {"type": "dissection", "msg": "parser error: response invalid HTTP version"},
            "request": {"method": "GET", "path": "/g", "headers": {}}}),
        ),
        (
            "stream",
            json!({"protocol": "tcp", "src": ep("10.0.0.1", 40007), "dst": ep("10.0.0.2", 443),
            "error": {"type": "timeout", "msg": "stream timeout: no protocol identified within 10000 ms"}}),
        ),
    ]
}

fn selected(q: &str) -> Vec<&'static str> {
    let query = Query::parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
    entries().into_iter().filter(|(_, e)| query.matches(e)).map(|(n, _)| n).collect()
}

#[test]
fn the_error_dashboard_query() {
    assert_eq!(
        selected("response.status > 400 or error or icmp or tcp"),
        vec!["err503", "half", "reset", "icmp", "dissect", "stream"],
        "400 itself is excluded; every error, ICMP and TCP entry is in"
    );
}

#[test]
fn negated_macros_hide_what_kubeshark_says() {
    assert_eq!(selected("!error"), vec!["ok200", "err503", "bad400", "icmp"], "half connections hidden");
    assert_eq!(selected("!icmp"), vec!["ok200", "err503", "bad400", "half", "reset", "dissect", "stream"]);
    assert_eq!(selected("!tcp"), vec!["ok200", "err503", "bad400", "half", "icmp", "dissect"]);
    assert_eq!(selected("not http"), vec!["reset", "icmp", "stream"]);
}

#[test]
fn a_missing_field_falsifies_only_its_own_comparison() {
    assert_eq!(selected("response.status > 400 or icmp"), vec!["err503", "icmp"]);
    assert_eq!(selected("response.status != 200"), vec!["err503", "bad400"], "missing is not 'not equal'");
    assert_eq!(selected("!(response.status == 200)").len(), 7);
    assert_eq!(selected("response == null"), vec!["half", "reset", "icmp", "dissect", "stream"]);
    assert_eq!(selected("tcp != null"), vec!["reset"]);
}

#[test]
fn selectors_reach_nested_fields_and_map_keys() {
    assert_eq!(selected(r#"request.headers["x-request-id"] == "abc-1""#), vec!["ok200"]);
    assert_eq!(selected(r#"request.headers["X-Request-ID"] == "abc-1""#), vec!["ok200"], "case-insensitive keys");
    assert_eq!(selected("request.headers.x == 1"), Vec::<&str>::new());
    assert_eq!(selected("icmp.original.dst.port == 53"), vec!["icmp"]);
    assert_eq!(selected(r#"icmp.codeName == "Port" and icmp.type == 3"#), vec!["icmp"]);
    assert_eq!(selected(r#"tcp.state == "Reset" and tcp.by == "server""#), vec!["reset"]);
    assert_eq!(selected(r#"error.type == "pair-not-found""#), vec!["half"]);
    assert_eq!(selected(r#"src.namespace == "shop" and dst.port == 5432"#), vec!["reset"]);
    assert_eq!(
        selected("response.headers[\"content-length\"] > 10"),
        vec!["ok200"],
        "numeric text compares as a number"
    );
}

#[test]
fn strings_numbers_booleans_null_and_regexes() {
    assert_eq!(selected(r#"request.method == 'POST'"#), vec!["err503"]);
    assert_eq!(selected("elapsedTime >= 3.5 and elapsedTime < 12"), vec!["ok200"]);
    assert_eq!(selected("true").len(), 8);
    assert_eq!(selected("false").len(), 0);
    assert_eq!(selected("1 < 2").len(), 8);
    assert_eq!(selected("error == null and http"), vec!["ok200", "err503", "bad400"]);
    assert_eq!(selected(r#"request.path == r"^/api/v[0-9]+/""#), vec!["ok200"]);
    assert_eq!(selected(r#"request.path != r"^/api""#), vec!["err503", "bad400", "dissect"]);
    assert_eq!(selected(r#"error.msg == r"^(missing|parser)""#), vec!["half", "dissect"]);
    assert_eq!(selected(r#"response.status == r"^5""#), vec!["err503"], "regexes see numbers as text");
    assert_eq!(selected(r#"src.port == "40000""#), vec!["ok200"], "numeric text compares with numbers");
    assert_eq!(selected(r#"request.method == 1"#), Vec::<&str>::new(), "different kinds are never equal");
}

#[test]
fn helpers() {
    assert_eq!(selected(r#"request.path.startsWith("/api")"#), vec!["ok200", "half"]);
    assert_eq!(selected(r#"request.path.endsWith("out")"#), vec!["err503"]);
    assert_eq!(selected(r#"error.msg.contains("reset")"#), vec!["half"]);
    assert_eq!(
        selected(r#"!request.path.contains("/")"#),
        vec!["reset", "icmp", "stream"],
        "missing: false, negated: true"
    );
}

#[test]
fn precedence_and_parentheses() {
    // or < and < not < comparison
    assert_eq!(selected("icmp or tcp and error"), selected("icmp or (tcp and error)"));
    assert_eq!(selected("(icmp or tcp) and error"), vec!["reset", "stream"]);
    assert_eq!(selected("icmp or tcp and error"), vec!["reset", "icmp", "stream"]);
    assert_eq!(selected("(icmp or tcp) and !error"), vec!["icmp"]);
    assert_eq!(selected("!error and icmp or tcp"), vec!["reset", "icmp", "stream"]);
    assert_eq!(selected("not not icmp"), vec!["icmp"]);
    assert_eq!(selected("http && response.status >= 500 || icmp"), vec!["err503", "icmp"]);
    assert_eq!(selected("((((icmp))))"), vec!["icmp"]);
}

#[test]
fn bare_selectors_are_presence() {
    assert_eq!(selected("response"), vec!["ok200", "err503", "bad400"]);
    assert_eq!(selected("icmp.original"), vec!["icmp"]);
    assert_eq!(selected("tcp.state"), vec!["reset"], "tcp.state is a selector; tcp alone the macro");
}

fn err(q: &str) -> String {
    match Query::parse(q) {
        Ok(_) => panic!("{q:?} parsed"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_queries_say_where_and_what() {
    assert_eq!(err("(tcp or icmp"), "column 13: expected ')' to close the '(' at column 1, found end of query");
    assert_eq!(err("tcp or icmp)"), "column 12: unbalanced ')': there is no '(' to close");
    assert_eq!(
        err("response.status = 400"),
        "column 17: unknown operator '=': expected one of == != < <= > >= && || !"
    );
    assert_eq!(err("a ~ b"), "column 3: unknown operator '~': expected one of == != < <= > >= && || !");
    assert_eq!(
        err(r#"request.path == "/api"#),
        "column 17: unterminated string: expected a closing \" before the end of the query"
    );
    assert!(
        err(r#"request.path == r"[a-""#).starts_with("column 17: invalid regex: "),
        "{}",
        err(r#"request.path == r"[a-""#)
    );
    assert_eq!(err(""), "column 1: empty query: expected an expression");
    assert_eq!(err("   "), "column 1: empty query: expected an expression");
    assert_eq!(err("response.status >"), "column 18: unexpected end of query: expected a field, a value or '('");
    assert_eq!(err("tcp and"), "column 8: unexpected end of query: expected a field, a value or '('");
    assert_eq!(err("a == 1 == 2"), "column 8: comparisons do not chain: join them with 'and'");
    assert_eq!(
        err("500"),
        "column 1: a literal alone is not a condition: compare it with a field (e.g. response.status == 500)"
    );
    assert_eq!(err("tcp icmp"), "column 5: expected 'and', 'or' or the end of the query, found 'icmp'");
    assert_eq!(err("a.b( == 1"), "column 4: expected 'and', 'or' or the end of the query, found '('");
    assert_eq!(err(r#"a.startsWith(1)"#), "column 14: expected a quoted string argument, found number 1");
    assert_eq!(err("a[ == 1"), "column 4: expected a quoted key or an index inside '[ ]', found '=='");
    assert_eq!(err("a > r\"x\""), "column 5: a regex can only be compared with == or !=");
    assert_eq!(err("é == 1"), "column 1: unexpected character 'é'");
    assert_eq!(err("x == 1 and ) "), "column 12: expected a field, a value or '(', found ')'");
}

#[test]
fn deep_nesting_is_refused_not_a_stack_overflow() {
    let q = format!("{}icmp{}", "(".repeat(10_000), ")".repeat(10_000));
    assert!(err(&q).contains("nested deeper than 64"));
    let q = format!("{}icmp", "!".repeat(10_000));
    assert!(err(&q).contains("nested deeper than 64"));
}

#[test]
fn random_input_never_panics() {
    // A fixed-seed generator over the query alphabet: every outcome is Ok or a positioned error.
    let alphabet: Vec<&str> = vec![
        "(",
        ")",
        "[",
        "]",
        ".",
        "\"",
        "'",
        "r\"",
        "==",
        "!=",
        "<",
        ">=",
        "!",
        "&&",
        "||",
        "and",
        "or",
        "not",
        " ",
        "tcp",
        "icmp",
        "error",
        "response",
        "status",
        "headers",
        "400",
        "-1.5",
        "1e999",
        "\\",
        "startsWith",
        "é",
        "=",
        "null",
        "true",
        "x",
    ];
    let mut s: u64 = 0x1234_5678;
    let entries = entries();
    for _ in 0..100_000 {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let n = (s % 12) as usize;
        let mut q = String::new();
        let mut t = s;
        for _ in 0..n {
            q.push_str(alphabet[(t % alphabet.len() as u64) as usize]);
            t = t.rotate_left(7).wrapping_mul(31);
        }
        match Query::parse(&q) {
            Ok(query) => {
                for (_, e) in &entries {
                    let _ = query.matches(e);
                }
            }
            Err(e) => assert!(e.column >= 1 && e.column <= q.chars().count() + 1, "{q:?}: {e}"),
        }
    }
}
