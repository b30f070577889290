//! The page at `/` when the demo is off: what this server is, and where to go next.

use axum::Router;
use axum::response::Html;
use axum::routing::get;

/// The page, with `{version}` for the server's version.
const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tidings</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem}code{background:#f3f3f3;padding:0 .2em}</style>
</head><body>
<h1>tidings {version}</h1>
<p>A realtime pub/sub and presence server: browsers connect over WebSocket, backends publish over HTTP.</p>
<ul>
<li>WebSocket: <code>/ws</code> (the protocol: <a href="https://github.com/tidings-rs/tidings/blob/main/docs/protocol.md">docs/protocol.md</a>)</li>
<li>Browser client: <a href="/tidings.js"><code>/tidings.js</code></a> (<code>import { connect } from "/tidings.js"</code>)</li>
<li>HTTP API for backends: <code>/api</code> (<a href="https://github.com/tidings-rs/tidings/blob/main/docs/http-api.md">docs/http-api.md</a>)</li>
<li>Health: <a href="/healthz"><code>/healthz</code></a>, readiness: <a href="/readyz"><code>/readyz</code></a></li>
<li>Every node, live: <a href="/admin"><code>/admin</code></a>; Prometheus metrics: <a href="/metrics"><code>/metrics</code></a> (both ask for the <code>api_key</code> when one is set)</li>
<li>A demo chat: run <code>tidings serve --demo</code> and open this page again</li>
<li>Documentation: <a href="https://github.com/tidings-rs/tidings#readme">the README</a></li>
</ul>
</body></html>
"#;

/// The page at `/`, over `app`.
pub fn page(app: Router) -> Router {
    let page = PAGE.replace("{version}", env!("CARGO_PKG_VERSION"));
    app.route("/", get(|| async move { Html(page) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_links_the_admin_page_and_the_metrics() {
        for path in ["/admin", "/metrics", "/tidings.js", "/healthz"] {
            assert!(PAGE.contains(&format!("href=\"{path}\"")), "{path}");
        }
    }
}
