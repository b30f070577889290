//! `GET /metrics`: the node in Prometheus's text format, behind the API key, moving with what the
//! node does; every metric the Grafana dashboard queries is served, and every metric served is
//! documented.

use std::collections::BTreeSet;

use serde_json::json;
use tidings::Hub;
use tidings::http::HttpOptions;
use tidings::rpc::{RpcError, RpcRequest};

use crate::support::Server;

/// `GET /metrics` with `key`: the status, the content type and the body.
async fn scrape(server: &Server, key: Option<&str>) -> (u16, String, String) {
    let mut request = reqwest::Client::new().get(format!("http://{}/metrics", server.addr));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let kind = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    (status, kind, response.text().await.unwrap())
}

/// The value of the series `series` (name and labels as written) in an exposition.
fn value(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Every series name an exposition defines (`# TYPE name …`): counters with `_total`,
/// histograms with `_bucket`, `_sum` and `_count`.
fn names(body: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in body.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let (name, kind) = line.split_once(' ').unwrap();
        match kind {
            "counter" => names.insert(format!("{name}_total")),
            "histogram" => {
                names.extend(["bucket", "sum", "count"].map(|s| format!("{name}_{s}")));
                names.insert(name.to_owned())
            }
            _ => names.insert(name.to_owned()),
        };
    }
    names
}

#[tokio::test]
async fn metrics_move_with_what_the_node_does_and_need_the_key() {
    let builder = Hub::builder().rpc("announce", |req: RpcRequest| async move {
        req.hub().all("announced", ()).await?;
        Ok::<_, RpcError>(true)
    });
    let server = Server::with(builder, HttpOptions::new().api_key("k"))
        .await
        .key("k");
    let (status, ..) = scrape(&server, None).await;
    assert_eq!(status, 401, "behind the API key");
    let mut tab = server.connect().await;
    tab.request(json!({"type": "subscribe", "channels": "public:a"}))
        .await;
    let body = json!({"channels": ["public:a", "public:b"], "event": "m"});
    assert_eq!(server.post("/publish/channel", body).await.0, 200);
    tab.recv().await;
    let reply = tab
        .request(json!({"type": "rpc", "method": "nope", "params": []}))
        .await;
    let announce = json!({"type": "rpc", "id": 99, "method": "announce", "params": []});
    tab.send_text(&announce.to_string()).await;
    let both = [tab.recv().await, tab.recv().await];
    assert!(both.iter().any(|f| f["event"] == "announced"), "{both:?}");
    assert!(both.iter().any(|f| f["id"] == 99), "{both:?}");
    assert_eq!(reply["error"]["code"], "unknown_method");
    let (status, kind, body) = scrape(&server, Some("k")).await;
    assert_eq!(status, 200);
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    assert_eq!(value(&body, "tidings_sockets"), Some(1.0), "{body}");
    assert_eq!(value(&body, "tidings_channels"), Some(1.0), "{body}");
    let http = r#"tidings_publishes_total{target="channel",source="http"}"#;
    assert_eq!(value(&body, http), Some(2.0), "{body}");
    let rust = r#"tidings_publishes_total{target="channel",source="rust"}"#;
    assert_eq!(value(&body, rust), Some(0.0), "{body}");
    let rpc = r#"tidings_publishes_total{target="all",source="rpc"}"#;
    assert_eq!(value(&body, rpc), Some(1.0), "{body}");
    assert_eq!(
        value(&body, "tidings_deliveries_total"),
        Some(2.0),
        "the channel event and the announcement: {body}"
    );
    assert_eq!(value(&body, "tidings_bus_ready"), Some(1.0));
    let opened = r#"tidings_socket_events_total{event="open"}"#;
    assert_eq!(value(&body, opened), Some(1.0), "{body}");
    let unknown = r#"tidings_rpc_calls_total{outcome="unknown_method"}"#;
    assert_eq!(value(&body, unknown), Some(1.0), "{body}");
    let ok = r#"tidings_rpc_calls_total{outcome="ok"}"#;
    assert_eq!(value(&body, ok), Some(1.0), "{body}");
    assert_eq!(
        value(&body, "tidings_rpc_duration_seconds_count"),
        Some(2.0),
        "both calls timed"
    );
    assert!(value(&body, "process_resident_memory_bytes").is_some_and(|b| b > 0.0));
    assert!(body.ends_with("# EOF\n"));
}

#[tokio::test]
async fn the_dashboard_queries_only_served_metrics_and_the_docs_name_each() {
    let server = Server::start().await;
    let (_, _, body) = scrape(&server, None).await;
    let served = names(&body);
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{root}/deploy/grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    let mut queried = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let words = expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
            queried.extend(
                words
                    .filter(|w| w.starts_with("tidings_") || w.starts_with("process_"))
                    .map(String::from),
            );
        }
    }
    assert!(queried.len() >= 10, "{queried:?}");
    let missing: Vec<_> = queried.difference(&served).collect();
    assert!(
        missing.is_empty(),
        "queried but not served: {missing:?}\n{body}"
    );
    let doc = std::fs::read_to_string(format!("{root}/docs/http-api.md")).unwrap();
    for name in &served {
        // A histogram is documented by its name, not its series'.
        let name = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        assert!(
            doc.contains(&format!("`{name}")),
            "docs/http-api.md names `{name}`"
        );
    }
}
