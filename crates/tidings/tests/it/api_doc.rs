//! docs/http-api.md against the code: every route of the HTTP API (and `/healthz`, `/readyz`) is
//! documented, every route the document names exists, and the stats example holds exactly the
//! fields `GET /api/stats` answers; docs/pusher.md the same for Pusher's routes.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

/// A file of this repository, from the crate's folder.
fn read(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `METHOD /path` with every `{…}` made `{}`.
fn route(method: &str, path: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for c in path.chars() {
        match c {
            '{' => (inside, out) = (true, out + "{"),
            '}' => (inside, out) = (false, out + "}"),
            c if !inside => out.push(c),
            _ => {}
        }
    }
    format!("{} {out}", method.to_uppercase())
}

/// The routes a router source declares (`.route("/path", get(…))`), under `prefix`; comments
/// and catch-alls (`any(…)`, the API's 404) are left out.
fn declared(source: &str, prefix: &str) -> BTreeSet<String> {
    let code: String = source
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut routes = BTreeSet::new();
    for (at, _) in code.match_indices(".route(") {
        let rest = code[at + ".route(".len()..].trim_start();
        let Some(rest) = rest.strip_prefix('"') else {
            continue;
        };
        let (path, rest) = rest.split_once('"').unwrap();
        let rest = rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
        let method = rest.split('(').next().unwrap();
        if method == "any" {
            continue;
        }
        routes.insert(route(method, &format!("{prefix}{path}")));
    }
    routes
}

/// The routes the document names: `` `GET /api/…` `` and the like.
fn documented(doc: &str) -> BTreeSet<String> {
    let mut routes = BTreeSet::new();
    for method in ["GET", "POST", "PUT", "DELETE"] {
        for (at, _) in doc.match_indices(&format!("`{method} /")) {
            let rest = &doc[at + 1 + method.len() + 1..];
            let end = rest.find(['`', '?', ' ']).unwrap();
            routes.insert(route(method, &rest[..end]));
        }
    }
    routes
}

#[test]
fn every_route_is_documented_and_every_documented_route_exists() {
    let mut code = declared(&read("src/http/api.rs"), "");
    let mut pusher = declared(&read("src/http/pusher.rs"), "");
    let top = declared(&read("src/http/mod.rs"), "");
    for route in top.into_iter().filter(|r| r != "GET /ws") {
        match route.starts_with("GET /app/") {
            true => pusher.insert(route),
            false => code.insert(route),
        };
    }
    assert!(code.len() > 10, "the routes were read: {code:?}");
    assert!(pusher.len() > 5, "Pusher's routes were read: {pusher:?}");
    // docs/pusher.md names tidings' own routes too; its own are Pusher's, under /app.
    let pushers = |route: &String| {
        route
            .split(' ')
            .nth(1)
            .is_some_and(|p| p.starts_with("/app"))
    };
    for (code, doc) in [(code, "http-api.md"), (pusher, "pusher.md")] {
        let mut documented = documented(&read(&format!("../../docs/{doc}")));
        if doc == "pusher.md" {
            documented.retain(pushers);
        }
        let undocumented: Vec<_> = code.difference(&documented).collect();
        let unknown: Vec<_> = documented.difference(&code).collect();
        assert!(
            undocumented.is_empty() && unknown.is_empty(),
            "not in docs/{doc}: {undocumented:?}; documented but not served: {unknown:?}"
        );
    }
}

/// Every key of a JSON object, nested ones as `outer.inner`.
fn keys(value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    if let Value::Object(map) = value {
        for (key, value) in map {
            let name = format!("{prefix}{key}");
            keys(value, &format!("{name}."), out);
            out.insert(name);
        }
    }
}

#[tokio::test]
async fn the_stats_example_holds_every_field_and_no_other() {
    let doc = read("../../docs/http-api.md");
    let at = doc.find("`GET /api/stats`").expect("the stats section");
    let block = &doc[at..];
    let start = block.find("```json\n").unwrap() + "```json\n".len();
    let example: Value =
        serde_json::from_str(&block[start..start + block[start..].find("```").unwrap()]).unwrap();
    let hub = tidings::Hub::builder().build().unwrap();
    let served = serde_json::to_value(hub.stats()).unwrap();
    let (mut documented, mut answered) = (BTreeSet::new(), BTreeSet::new());
    keys(&example, "", &mut documented);
    keys(&served, "", &mut answered);
    assert_eq!(documented, answered);
    for field in answered
        .iter()
        .filter(|f| !f.starts_with("index") && !f.contains('.'))
    {
        assert!(
            doc[at..].contains(&format!("`{field}`")),
            "the stats section explains `{field}`"
        );
    }
}
