//! KFL queries: any text either parses or gives an error whose column lies inside the query; a parsed
//! query evaluates against a JSON entry without panicking.
#![no_main]

use faultline_kfl::Query;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Query::parse(text) {
        Ok(q) => {
            let entry = serde_json::json!({
                "protocol": "http", "error": null, "src": {"ip": "10.0.0.1", "port": 1},
                "request": {"path": "/a", "headers": {"x": "1"}}, "response": {"status": 503}
            });
            let _ = q.matches(&entry);
        }
        Err(e) => assert!(e.column >= 1 && e.column <= text.chars().count() + 1, "{e}"),
    }
});
