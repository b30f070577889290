#!/usr/bin/env bash
# Runs every test of tidings: unit, integration (real TCP, WebSocket and HTTP), the binary's, doc
# tests, and the benchmark harness in quick mode (counts every delivery; no speed claims).
# Installs and starts what the tests need where it is missing: Redis on 127.0.0.1:6379, Node.js and
# npm, the Socket.IO peer's packages.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "scripts/test.sh: cargo is missing; install Rust from https://rustup.rs" >&2
  exit 1
fi
# Redis on its default port: the presence store's tests use it.
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if ! listening 6379; then
  command -v redis-server >/dev/null 2>&1 || { apt-get update -q && apt-get install -y -q redis-server; }
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  for _ in $(seq 50); do listening 6379 && break; sleep 0.1; done
  listening 6379 || { echo "scripts/test.sh: redis-server did not start on 6379" >&2; exit 1; }
fi
if ! command -v npm >/dev/null 2>&1; then
  apt-get update -q && apt-get install -y -q nodejs npm
fi
(cd bench/peers/socketio && npm ci --no-audit --no-fund --silent)

cargo test --workspace --locked
cargo build --workspace --locked --bins
target_dir="${CARGO_TARGET_DIR:-target}"
"$target_dir/debug/tidings-bench" suite --quick --servers tidings,bare,socketio \
  --out "$target_dir/bench-quick.md" --command "scripts/test.sh (quick mode)"
