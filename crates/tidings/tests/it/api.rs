//! The HTTP API's errors: JSON with a code, the right status, and the field at fault.

use reqwest::Method;
use serde_json::json;
use tidings::Hub;
use tidings::http::HttpOptions;

use crate::support::Server;

#[tokio::test]
async fn the_api_key_is_required_when_configured() {
    let server = Server::with(Hub::builder(), HttpOptions::new().api_key("s3cret")).await;
    let (status, body) = server.post("/publish/all", json!({"event": "e"})).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "unauthorized");
    let wrong = server.key("s3cre7");
    assert_eq!(
        wrong.post("/publish/all", json!({"event": "e"})).await.0,
        401
    );
    let right = wrong.key("s3cret");
    assert_eq!(
        right.post("/publish/all", json!({"event": "e"})).await.0,
        200
    );
    let health = reqwest::get(format!("http://{}/healthz", right.addr))
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "health needs no key");
}

#[tokio::test]
async fn unknown_sessions_and_sockets_are_404() {
    let server = Server::start().await;
    let (status, body) = server
        .api(Method::GET, "/sessions/AAAAAAAAAAAAAAAAAAAAAA", None)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("unknown_session"))
    );
    let (status, _) = server
        .post("/sessions/bad%20id/subscribe", json!({"channels": "a"}))
        .await;
    assert_eq!(status, 404);
    let gone = format!("{}.12345", server.hub.node_id());
    let (status, body) = server
        .post("/publish/socket", json!({"socket": gone, "event": "e"}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("unknown_socket"))
    );
    let (status, body) = server
        .post("/publish/socket", json!({"socket": "nodot", "event": "e"}))
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("socket"))
    );
    for path in ["/nope", "/sessions", "", "/"] {
        let (status, body) = server.post(path, json!({})).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (404, Some("not_found")),
            "/api{path}"
        );
    }
    let (status, _) = server
        .post("/publish/everyone", json!({"event": "e"}))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn bad_bodies_are_400_naming_the_field() {
    let server = Server::start().await;
    let cases = [
        (json!({"args": [1]}), "event"),
        (json!({"event": "e", "args": {"a": 1}}), "args"),
        (json!({"event": "e", "args": "x"}), "args"),
        (json!({"event": 5}), "event"),
        (json!({"event": "e", "colour": "red"}), "colour"),
        (json!({"event": "e", "channels": "a"}), "channels"),
        (json!({"event": ""}), "event"),
    ];
    for (body, field) in cases {
        let (status, reply) = server.post("/publish/all", body.clone()).await;
        assert_eq!(status, 400, "{body} → {reply}");
        assert_eq!(reply["error"]["field"], field, "{body} → {reply}");
        assert!(reply["error"]["message"].is_string());
    }
    let (status, reply) = server.post("/publish/channel", json!({"event": "e"})).await;
    assert_eq!(
        (status, reply["error"]["field"].as_str()),
        (400, Some("channels"))
    );
    let long = "c".repeat(201);
    let (status, reply) = server
        .post(
            "/publish/channel",
            json!({"event": "e", "channels": [long]}),
        )
        .await;
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (400, Some("invalid_name"))
    );
    for cut in ["{\"event\":", "{\"event\":\"e\"} x"] {
        let (status, reply) = server.api(Method::POST, "/publish/all", Some(cut)).await;
        assert_eq!(
            (status, reply["error"]["code"].as_str()),
            (400, Some("invalid_json")),
            "{cut} → {reply}"
        );
    }
}

#[tokio::test]
async fn oversized_bodies_and_args_are_413() {
    let server = Server::with(Hub::builder(), HttpOptions::new().max_body(1000)).await;
    let big = "x".repeat(2000);
    let (status, reply) = server
        .post("/publish/all", json!({"event": "e", "args": [big]}))
        .await;
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (413, Some("body_too_large"))
    );
    let server = Server::start().await;
    let big = "x".repeat(70_000);
    let (status, reply) = server
        .post("/publish/all", json!({"event": "e", "args": [big]}))
        .await;
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (413, Some("args_too_large"))
    );
    assert_eq!(reply["error"]["field"], "args");
}

#[tokio::test]
async fn args_nested_past_the_depth_limit_are_400_and_reach_nobody() {
    let server = Server::start().await;
    let mut client = server.connect().await;
    let nested = |levels: usize| {
        let body = format!(
            r#"{{"event":"e","args":{}{}}}"#,
            "[".repeat(levels),
            "]".repeat(levels)
        );
        let server = &server;
        async move {
            server
                .api(reqwest::Method::POST, "/publish/all", Some(&body))
                .await
        }
    };
    let (status, reply) = nested(30_000).await;
    assert_eq!(
        (
            status,
            reply["error"]["code"].as_str(),
            reply["error"]["field"].as_str()
        ),
        (400, Some("args_too_deep"), Some("args"))
    );
    let (status, _) = nested(64).await;
    assert_eq!(status, 200, "64 levels pass");
    let frame = client.recv().await;
    assert_eq!(
        frame["event"], "e",
        "only the second publish arrives: {frame}"
    );
}

#[tokio::test]
async fn a_body_that_is_not_declared_json_is_415_and_publishes_nothing() {
    let server = Server::start().await;
    let mut client = server.connect().await;
    let url = format!("http://{}/api/publish/all", server.addr);
    let body = r#"{"event":"forged"}"#;
    let http = reqwest::Client::new();
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut request = http.post(&url).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 415, "{content_type:?}");
        let reply: serde_json::Value = response.json().await.unwrap();
        assert_eq!(reply["error"]["code"], "unsupported_media_type");
    }
    let declared = http
        .post(&url)
        .header("content-type", "application/json; charset=utf-8");
    let response = declared.body(r#"{"event":"real"}"#).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.text().await.unwrap(), r#"{"ok":true}"#);
    assert_eq!(
        client.recv().await["event"],
        "real",
        "only the JSON publish arrives"
    );
}

#[tokio::test]
async fn a_cors_preflight_gets_no_permission() {
    let server = Server::start().await;
    let response = reqwest::Client::new()
        .request(
            Method::OPTIONS,
            format!("http://{}/api/publish/all", server.addr),
        )
        .header("origin", "http://evil.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let allowed = response
        .headers()
        .keys()
        .filter(|k| k.as_str().starts_with("access-control-"));
    assert_eq!(allowed.count(), 0, "no Access-Control-Allow-* header");
}

/// Sends raw bytes to the server and returns the status code it answers with.
async fn status_after(server: &Server, bytes: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut head = [0; 12];
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_exact(&mut head),
    );
    read.await
        .expect("an answer without the rest of the body")
        .unwrap();
    std::str::from_utf8(&head[9..12]).unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_declared_body_past_the_limit_is_413_before_it_is_sent() {
    let server = Server::start().await;
    let head = "POST /api/publish/all HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n\
                content-length: 10000000000\r\n\r\n{";
    assert_eq!(status_after(&server, head.as_bytes()).await, 413);
}

#[tokio::test]
async fn a_body_that_stalls_is_408() {
    let options = HttpOptions::new().body_timeout(std::time::Duration::from_millis(200));
    let server = Server::with(Hub::builder(), options).await;
    let head = "POST /api/publish/all HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n\
                content-length: 100\r\n\r\n{\"event\":";
    assert_eq!(status_after(&server, head.as_bytes()).await, 408);
}

#[tokio::test]
async fn the_admin_channel_is_never_public_and_the_api_key_opens_it_to_a_page() {
    let builder = Hub::builder().public_channels(["*"]);
    let server = Server::with(builder, HttpOptions::new().api_key("k")).await;
    let mut page = server.connect().await;
    let reply = page
        .request(json!({"type": "subscribe", "channels": "tidings:admin"}))
        .await;
    assert_eq!(reply["error"]["code"], "forbidden_channel", "{reply}");
    let watch = |cookie: Option<String>, key: &str| {
        let mut request = reqwest::Client::new()
            .post(format!("http://{}/api/admin/watch", server.addr))
            .bearer_auth(key);
        if let Some(cookie) = cookie {
            request = request.header("cookie", format!("{}={cookie}", tidings::SESSION_COOKIE));
        }
        request.send()
    };
    assert_eq!(
        watch(Some(page.cookie.clone()), "wrong")
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(watch(None, "k").await.unwrap().status(), 400);
    let watched = watch(Some(page.cookie.clone()), "k").await.unwrap();
    assert_eq!(watched.status(), 200);
    let status = loop {
        let frame = page.recv().await;
        if frame["event"] == "status" {
            break frame;
        }
    };
    assert_eq!(status["channel"], "tidings:admin");
    assert_eq!(status["args"][0]["node"], server.hub.node_id().as_str());
    assert_eq!(
        status["args"][0]["stats"]["index"]["sockets"], 1,
        "{status}"
    );
}

/// Python's `http.client` sends a whole body before it reads: the server answers 413 early and
/// must not close over the unread rest, or the kernel's reset destroys the answer.
#[tokio::test]
async fn a_client_that_sends_a_whole_oversized_body_first_reads_its_413() {
    let server = Server::start().await;
    let script = r#"
import http.client, json, sys, time
host, port = sys.argv[1].rsplit(":", 1)
body = json.dumps({"event": "e", "args": ["x" * 1_100_000]}).encode()
def chunks():
    # The body goes on after the server has answered (as on a slow link).
    for at in range(0, len(body), 100_000):
        yield body[at:at + 100_000]
        time.sleep(0.005)
headers = {"content-type": "application/json", "content-length": str(len(body))}
statuses = []
for _ in range(20):
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("POST", "/api/publish/all", chunks(), headers)
        statuses.append(connection.getresponse().status)
    except OSError as e:
        statuses.append(type(e).__name__)
    connection.close()
print(json.dumps(statuses))
"#;
    let addr = server.addr.to_string();
    let python = move || {
        std::process::Command::new("python3")
            .args(["-c", script, &addr])
            .output()
    };
    let output = tokio::task::spawn_blocking(python)
        .await
        .unwrap()
        .expect("python3 runs");
    assert!(output.status.success(), "{output:?}");
    let statuses: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(statuses, json!(vec![413; 20]));
}

/// What a browser page of another origin sends with a request: the API answers it 403 and does
/// nothing, even on a keyless server; backends (no `Origin`, no `Sec-Fetch-Site`) and the server's
/// own pages go through.
#[tokio::test]
async fn the_api_refuses_pages_of_other_origins() {
    let server = Server::start().await;
    let mut tab = server.connect().await;
    tab.request(json!({"type": "subscribe", "channels": "public:a"}))
        .await;
    let reset = format!("http://{}/api/sessions/{}/reset", server.addr, tab.cookie);
    let own = format!("http://{}", server.addr);
    let sibling = format!("http://localhost:{}", server.addr.port());
    let http = reqwest::Client::new();
    let cases = [
        (vec![("origin", "http://localhost:8000")], 403),
        (vec![("sec-fetch-site", "cross-site")], 403),
        (
            vec![("origin", "null"), ("sec-fetch-site", "cross-site")],
            403,
        ),
        (
            vec![
                ("origin", sibling.as_str()),
                ("sec-fetch-site", "same-site"),
            ],
            403,
        ),
        (
            vec![("origin", own.as_str()), ("sec-fetch-site", "same-origin")],
            200,
        ),
    ];
    for (headers, status) in cases {
        let mut request = http.post(&reset);
        for (name, value) in &headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{headers:?}");
        if status == 403 {
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], "forbidden_origin");
            let session = format!("/sessions/{}", tab.cookie);
            let (_, state) = server.api(Method::GET, &session, None).await;
            assert_eq!(state["channels"], json!(["public:a"]), "{headers:?}");
        }
    }
}
