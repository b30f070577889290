//! The `tidings` binary: configuration precedence, refusals, serving, graceful shutdown.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

/// `tidings` with no `TIDINGS_*` variables from the test's environment.
fn tidings() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tidings"));
    for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("TIDINGS_")) {
        command.env_remove(name);
    }
    command
}

/// Runs `tidings` to completion; returns exit code, stdout and stderr.
fn run(command: &mut Command) -> (i32, String, String) {
    let out = command.output().expect("tidings runs");
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (
        out.status.code().unwrap_or(-1),
        text(out.stdout),
        text(out.stderr),
    )
}

/// A config file for one test.
fn config_file(test: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("tidings-cli-{}-{test}.toml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn flags_beat_environment_beat_file() {
    let file = config_file(
        "precedence",
        "max_name_len = 5\nsession_ttl = 50\noutbound_queue = 9\n",
    );
    let (code, out, err) = run(tidings()
        .args(["serve", "--print-config", "--max-name-len", "7", "--config"])
        .arg(&file)
        .env("TIDINGS_MAX_NAME_LEN", "6")
        .env("TIDINGS_SESSION_TTL", "60"));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("max_name_len = 7"), "{out}");
    assert!(out.contains("session_ttl = 60"), "{out}");
    assert!(out.contains("outbound_queue = 9"), "{out}");
}

#[test]
fn the_demo_adds_its_rooms_to_the_configured_public_channels() {
    let (code, out, err) = run(tidings().args([
        "serve",
        "--print-config",
        "--demo",
        "--public-channels",
        "lobby",
    ]));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(r#"public_channels = ["lobby", "disney", "kids", "sports", "music"]"#),
        "{out}"
    );
}

/// Asserts that `tidings serve ARGS` with `ENV` exits with code 2 and an error naming `key`.
fn assert_refused(args: &[&str], env: &[(&str, &str)], key: &str) {
    let mut command = tidings();
    command.arg("serve").args(args).envs(env.iter().copied());
    let (code, _, err) = run(&mut command);
    assert_eq!(code, 2, "{key}: {err}");
    assert!(err.contains(key), "the error names {key}: {err}");
}

#[test]
fn bad_configuration_is_refused_naming_the_key() {
    let file = config_file(
        "unknown-key",
        "listen = \"127.0.0.1:0\"\nmax_frame_sise = 10\n",
    );
    let file = file.to_str().unwrap();
    assert_refused(&["--config", file], &[], "max_frame_sise");
    assert_refused(&[], &[("TIDINGS_LISTN", "x")], "TIDINGS_LISTN");
    assert_refused(&["--outbound-queue", "0"], &[], "outbound_queue");
    assert_refused(&["--listen", "0.0.0.0:0"], &[], "api_key");
    assert_refused(&["--max-frame-size", "lots"], &[], "--max-frame-size");
    assert_refused(&["--bus", "redis"], &[], "set store = \"redis\"");
    assert_refused(&["--bus", "kafka"], &[], "--bus");
    assert_refused(&["--redis-port", "1"], &[], "neither bus nor store");
    assert_refused(&["--nats-url", "nats://x"], &[], "bus is not \"nats\"");
    let cluster = ["--bus", "redis-cluster", "--store", "redis-cluster"];
    assert_refused(&cluster, &[], "needs redis.cluster");
    let both = [
        &cluster[..],
        &[
            "--redis-cluster",
            "redis://127.0.0.1:7000",
            "--redis-db",
            "1",
        ],
    ];
    assert_refused(&both.concat(), &[], "neither bus nor store is \"redis\"");
    let stray = ["--redis-cluster", "redis://127.0.0.1:7000"];
    assert_refused(&stray, &[], "neither bus nor store is \"redis-cluster\"");
    let unreachable = [
        &cluster[..],
        &["--redis-cluster", "redis://:pw@127.0.0.1:1"],
    ];
    assert_refused(&unreachable.concat(), &[], "redis://***@127.0.0.1:1");
    assert_refused(&["--user-channels", "me"], &[], "user_channels");
    assert_refused(&["--token-algorithm", "RS256"], &[], "token.algorithm");
    assert_refused(
        &[
            "--token-public-key",
            "/nonexistent.pem",
            "--token-algorithm",
            "ES256",
        ],
        &[],
        "token.public_key",
    );
    assert_refused(
        &["--token-secret", "s", "--token-algorithm", "RS256"],
        &[],
        "token.algorithm",
    );
    assert_refused(
        &["--rpc-proxy-url", "http://127.0.0.1:9/"],
        &[],
        "rpc_proxy.secret",
    );
    assert_refused(
        &["--rpc-proxy-url", "https://x/", "--rpc-proxy-secret", "s"],
        &[],
        "rpc_proxy.url",
    );
    assert_refused(&["--rpc-proxy-secret", "s"], &[], "rpc_proxy.url");
    let unreachable = [
        "--store",
        "redis",
        "--redis-url",
        "redis://:pw@127.0.0.1:1/",
    ];
    assert_refused(&unreachable, &[], "store unavailable: redis");
    assert_refused(&unreachable, &[], "redis://***@127.0.0.1:1/");
    let nats = [
        "--bus",
        "nats",
        "--store",
        "redis",
        "--nats-url",
        "nats://127.0.0.1:1",
    ];
    assert_refused(&nats, &[], "event bus unavailable: nats");
    let missing = "/nonexistent/tidings.toml";
    assert_refused(&["--config", missing], &[], missing);
}

/// The lines `tidings serve` prints after its startup line.
type Printed = std::io::Lines<BufReader<std::process::ChildStdout>>;

/// Starts `tidings serve` on a free loopback port with `args` (and `RUST_LOG=info`); returns the
/// process, the address its startup line names, and its later lines.
fn serve(args: &[&str], stderr: Stdio) -> (std::process::Child, String, Printed) {
    let mut child = tidings()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next().unwrap().unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("startup line names the address: {line}"))
        .to_owned();
    (child, addr, lines)
}

/// Sends SIGTERM to `child`.
fn terminate(child: &std::process::Child) {
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
}

/// A WebSocket to the server at `addr`, past its welcome.
async fn welcomed(
    addr: &str,
) -> tokio_websockets::WebSocketStream<tokio_websockets::MaybeTlsStream<tokio::net::TcpStream>> {
    let uri = format!("ws://{addr}/ws");
    let (mut ws, _) = tokio_websockets::ClientBuilder::new()
        .uri(&uri)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let welcome = ws.next().await.unwrap().unwrap();
    assert!(welcome.as_text().unwrap().contains("\"welcome\""));
    ws
}

/// The code of the close frame `ws` reads next (the server heartbeat may come before it).
async fn close_code(
    ws: &mut tokio_websockets::WebSocketStream<
        tokio_websockets::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> u16 {
    loop {
        let frame = ws.next().await.unwrap().unwrap();
        if let Some((code, _)) = frame.as_close() {
            return u16::from(code);
        }
        assert_eq!(frame.as_text(), Some("--heartbeat--"));
    }
}

#[tokio::test]
async fn serves_then_shuts_down_gracefully_with_1001() {
    let (mut child, addr, _) = serve(&[], Stdio::null());
    let health = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let home = reqwest::get(format!("http://{addr}/")).await.unwrap();
    assert_eq!(home.status(), 200);
    let home = home.text().await.unwrap();
    for pointer in [
        "/tidings.js",
        "/ws",
        "/api",
        "--demo",
        env!("CARGO_PKG_VERSION"),
    ] {
        assert!(
            home.contains(pointer),
            "the home page names {pointer}: {home}"
        );
    }
    let mut ws = welcomed(&addr).await;
    terminate(&child);
    assert_eq!(close_code(&mut ws).await, 1001);
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "graceful exit: {status:?}");
}

/// A stranger's request that never finishes its head must not hold up the WebSockets' 1001: they
/// hear it at once, while that connection is still open.
#[tokio::test]
async fn shutdown_closes_websockets_first_whatever_http_requests_are_in_progress() {
    let (mut child, addr, _) = serve(&[], Stdio::null());
    let mut ws = welcomed(&addr).await;
    let mut stranger = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stranger
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // The server has accepted the stranger's connection once it answers a later one.
    assert_eq!(
        reqwest::get(format!("http://{addr}/healthz"))
            .await
            .unwrap()
            .status(),
        200
    );
    terminate(&child);
    assert_eq!(close_code(&mut ws).await, 1001);
    let mut byte = [0; 1];
    assert!(
        matches!(stranger.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the stranger's connection is still open: the 1001 did not wait for it"
    );
    drop(stranger);
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "graceful exit: {status:?}");
}

/// Starts `tidings serve` with `args`, stops it with SIGTERM once it listens, and returns what it
/// logged on stderr.
fn logged_until_stopped(args: &[&str]) -> String {
    let (child, _, _) = serve(args, Stdio::piped());
    terminate(&child);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn logs_are_plain_text_off_a_terminal_or_one_json_object_per_line() {
    let text = logged_until_stopped(&[]);
    assert!(text.contains("shutting down"), "{text}");
    assert!(
        !text.contains('\x1b'),
        "no colour codes in a pipe: {text:?}"
    );
    // JSON from start to shutdown, the startup record included, and nothing on stdout.
    let mut child = tidings()
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .args(["--metrics-listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, stderr) = std::sync::mpsc::channel();
    let reader = BufReader::new(child.stderr.take().unwrap());
    std::thread::spawn(move || {
        reader
            .lines()
            .map_while(Result::ok)
            .try_for_each(|l| lines_tx.send(l))
    });
    let mut json = String::new();
    let startup = loop {
        let line = stderr
            .recv_timeout(std::time::Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("no startup record on stderr ({e}): {json}"));
        json.push_str(&line);
        json.push('\n');
        let record: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if record["fields"]["message"] == "listening" {
            break record;
        }
    };
    let fields = &startup["fields"];
    let listen = fields["listen"].as_str().unwrap();
    assert_eq!(
        fields["websocket"],
        format!("ws://{listen}/ws"),
        "{startup}"
    );
    assert_eq!(
        (&fields["bus"], &fields["store"]),
        (&"memory".into(), &"memory".into())
    );
    assert!(
        fields["version"].is_string() && fields["node"].is_string(),
        "{startup}"
    );
    terminate(&child);
    json.extend(stderr.iter().map(|l| l + "\n"));
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "",
        "stdout stays empty"
    );
    let lines: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["fields"]["message"] == "metrics"),
        "{json}"
    );
    assert!(
        lines.iter().any(|l| l["level"] == "INFO"
            && l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("shutting down"))),
        "{json}"
    );
}

#[test]
fn the_systemd_unit_runs_a_command_tidings_accepts() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/tidings.service"
    ))
    .unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart line");
    let mut words = exec.split_whitespace();
    // No path: systemd finds /usr/local/bin/tidings (by hand) or /usr/bin/tidings (the package).
    assert_eq!(words.next(), Some("tidings"));
    // The config comes as a credential (`%d`: the credentials directory), from the root-only file.
    assert!(
        unit.contains("LoadCredential=tidings.toml:/etc/tidings/tidings.toml"),
        "{unit}"
    );
    let config = config_file("unit", "listen = \"127.0.0.1:7400\"\n");
    let args: Vec<String> = words
        .map(|w| match w {
            "%d/tidings.toml" => config.display().to_string(),
            w => w.to_owned(),
        })
        .collect();
    let (code, out, err) = run(tidings().args(&args).arg("--print-config"));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("log_format = \"json\""), "{out}");
}

#[test]
fn the_systemd_unit_is_valid_and_hardened() {
    let unit_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/tidings.service");
    let has_systemd = Command::new("systemd-analyze").arg("--version").output();
    assert!(
        has_systemd.is_ok_and(|o| o.status.success()),
        "systemd-analyze is missing (apt-get install --no-install-recommends systemd)"
    );
    let (code, out, err) = run(Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(unit_path));
    let exposure: f64 = out
        .lines()
        .find_map(|l| l.split("exposure level for tidings.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("an exposure level ({code}): {out}{err}"));
    assert!(exposure <= 3.0, "exposure {exposure}: {out}");
    // `verify` wants the binary to exist: the unit, pointing at the one under test.
    let unit = std::fs::read_to_string(unit_path).unwrap();
    let dir = std::env::temp_dir().join(format!("tidings-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("tidings.service");
    let binary = env!("CARGO_BIN_EXE_tidings");
    std::fs::write(
        &copy,
        unit.replace("ExecStart=tidings ", &format!("ExecStart={binary} ")),
    )
    .unwrap();
    let (code, out, err) = run(Command::new("systemd-analyze").arg("verify").arg(&copy));
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (0, "", ""),
        "systemd-analyze verify"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The TOML path of a `serve` flag (`--heartbeat-beat-delay` is `heartbeat.beat_delay`).
fn toml_path(flag: &str) -> Vec<String> {
    let tables = [
        "server-heartbeat",
        "heartbeat",
        "redis",
        "nats",
        "webhook",
        "token",
        "rpc-proxy",
    ];
    let key = |s: &str| s.replace('-', "_");
    for table in tables {
        if let Some(rest) = flag.strip_prefix(&format!("{table}-")) {
            return vec![key(table), key(rest)];
        }
    }
    vec![key(flag)]
}

/// A TOML value as a flag would say it (`a,b` for an array).
fn as_flag(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Array(items) => items.iter().map(as_flag).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

#[test]
fn print_config_prints_every_default_the_help_names_and_reads_back() {
    let features = [
        "--webhook-url",
        "http://127.0.0.1:9/",
        "--webhook-secret",
        "s",
        "--rpc-proxy-url",
        "http://127.0.0.1:9/",
        "--rpc-proxy-secret",
        "s",
        "--token-secret",
        "s",
    ];
    let (code, printed, err) = run(tidings().args(["serve", "--print-config"]).args(features));
    assert_eq!(code, 0, "{err}");
    let config = toml::Value::Table(toml::from_str(&printed).unwrap());
    let (_, help, _) = run(tidings().args(["serve", "--help"]));
    let mut checked = 0;
    for block in help.split("\n\n") {
        let Some(flag) = block
            .split("--")
            .nth(1)
            .and_then(|f| f.split([' ', '\n']).next())
        else {
            continue;
        };
        let Some(default) = block
            .split("[default: ")
            .nth(1)
            .and_then(|d| d.split(']').next())
        else {
            continue;
        };
        // Prose defaults (`random`, `the open-file limit…`), and Redis's host form of the URL.
        if default.contains(' ')
            || default == "random"
            || ["redis-host", "redis-port", "redis-db", "nats-url"].contains(&flag)
        {
            continue;
        }
        let path = toml_path(flag);
        let value = path.iter().try_fold(&config, |v, k| v.get(k));
        let value = value.unwrap_or_else(|| panic!("--print-config prints {path:?}: {printed}"));
        assert_eq!(as_flag(value), default, "--{flag}");
        checked += 1;
    }
    assert!(checked > 30, "{checked} defaults checked");
    // Secrets are left out of what is printed: read back, they are given again.
    let file = config_file("printed", &printed);
    let (code, again, err) = run(tidings()
        .args(["serve", "--print-config", "--config"])
        .arg(&file)
        .args(features));
    assert_eq!((code, again), (0, printed), "{err}");
}

#[test]
fn print_config_prints_no_secret_and_no_value_derived_from_the_machine() {
    let secrets = [
        "secret-api-key",
        "secret-token",
        "secret-webhook",
        "secret-rpc",
    ];
    let apps = config_file(
        "secret-apps",
        "[pusher]\napp_id = \"1\"\napp_key = \"k1\"\napp_secret = \"secret-pusher\"\n\
         [[pusher.apps]]\nid = \"2\"\nkey = \"k2\"\nsecret = \"secret-app\"\n\
         channel_prefix = \"two:\"\n",
    );
    let (code, printed, err) = run(tidings()
        .args(["serve", "--print-config", "--config"])
        .arg(&apps)
        .args(["--api-key", secrets[0], "--token-secret", secrets[1]])
        .args(["--webhook-url", "http://127.0.0.1:9/", "--webhook-secret"])
        .arg(secrets[2])
        .args([
            "--rpc-proxy-url",
            "http://127.0.0.1:9/",
            "--rpc-proxy-secret",
        ])
        .arg(secrets[3]));
    assert_eq!(code, 0, "{err}");
    assert!(
        !printed.contains("secret-"),
        "a secret was printed: {printed}"
    );
    for name in [
        "api_key",
        "token.secret",
        "webhook.secret",
        "rpc_proxy.secret",
        "pusher.app_secret",
        "pusher.apps[0].secret",
    ] {
        assert!(
            printed.contains(name),
            "{name} is said to be left out: {printed}"
        );
    }
    let config: toml::Table = toml::from_str(&printed).unwrap();
    assert!(!config.contains_key("max_connections"), "{printed}");
    assert!(printed.starts_with('#') && printed.contains("max_connections is left out"));
    let (_, pinned, _) = run(tidings().args(["serve", "--print-config", "--max-connections", "7"]));
    assert!(
        pinned.contains("max_connections = 7"),
        "set, it is printed: {pinned}"
    );
}

#[test]
fn print_config_refuses_what_serve_refuses_with_the_same_message() {
    let bad = ["--heartbeat-beat-delay", "50"];
    let (code, out, printed_err) = run(tidings().args(["serve", "--print-config"]).args(bad));
    assert_eq!((code, out.as_str()), (2, ""));
    let (code, _, served_err) = run(tidings()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(bad));
    assert_eq!((code, &printed_err), (2, &served_err));
    assert!(printed_err.contains("beat_delay"), "{printed_err}");
}

#[tokio::test]
async fn metrics_listen_serves_metrics_alone_without_the_key() {
    let mut child = tidings()
        .args(["serve", "--listen", "127.0.0.1:0", "--api-key", "k"])
        .args(["--metrics-listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (first, second) = (
        lines.next().unwrap().unwrap(),
        lines.next().unwrap().unwrap(),
    );
    let main = first
        .split("http://")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    let metrics = second.strip_prefix("metrics: ").expect("the metrics line");
    let scraped = reqwest::get(metrics).await.unwrap();
    assert_eq!(scraped.status(), 200);
    assert!(scraped.text().await.unwrap().contains("tidings_sockets 0"));
    let elsewhere = reqwest::get(metrics.replace("/metrics", "/api/stats"))
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 404, "only /metrics there");
    let keyed = reqwest::get(format!("http://{main}/metrics"))
        .await
        .unwrap();
    assert_eq!(keyed.status(), 401, "the main listener keeps the key");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// deploy/tidings.toml: the Debian package's /etc/tidings/tidings.toml.
const PACKAGED_CONFIG: &str = include_str!("../../../deploy/tidings.toml");

#[test]
fn the_packaged_config_sets_every_default_and_nothing_else() {
    let (code, defaults, err) = run(tidings().args(["serve", "--print-config"]));
    assert_eq!(code, 0, "{err}");
    let defaults: toml::Table = defaults.parse().unwrap();
    let packaged: toml::Table = PACKAGED_CONFIG.parse().unwrap();
    assert_eq!(packaged, defaults);
}
