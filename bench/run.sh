#!/usr/bin/env bash
# Benchmarks tidings against Socket.IO 4, sockudo and the bare tokio limit on this machine, in one
# run, and writes docs/benchmarks.md (and docs/benchmarks.json).
#   bench/run.sh           the full suite (about 10 minutes)
#   bench/run.sh --quick   small numbers: checks the harness and counts every delivery, no speed claims
# Peers that cannot be installed are reported in the output as not measured.
set -uo pipefail
cd "$(dirname "$0")/.."

quick=""
out="docs/benchmarks.md"
if [ "${1:-}" = "--quick" ]; then
  quick="--quick"
  out="target/bench-quick.md"
fi

cargo build --release --locked -p tidings-server -p tidings-bench || exit 1

# Socket.IO 4 (Node): the npm packages of bench/peers/socketio.
if command -v npm >/dev/null 2>&1; then
  (cd bench/peers/socketio && npm ci --no-audit --no-fund --silent) \
    || echo "bench: npm install of socket.io failed; it will be reported as not measured" >&2
else
  echo "bench: npm is missing (apt-get install nodejs npm); Socket.IO will be reported as not measured" >&2
fi

# sockudo (Rust, Pusher protocol) from crates.io; its build needs protoc.
sockudo_root="${SOCKUDO_ROOT:-$HOME/.cache/tidings-bench/sockudo}"
if [ ! -x "$sockudo_root/bin/sockudo" ]; then
  command -v protoc >/dev/null 2>&1 || apt-get install -y -q protobuf-compiler libprotobuf-dev >/dev/null
  cargo install sockudo --locked --no-default-features --features redis,nats --root "$sockudo_root" \
    || echo "bench: sockudo failed to build; it will be reported as not measured" >&2
fi

exec target/release/tidings-bench suite $quick --out "$out" --json "${out%.md}.json" \
  --sockudo-bin "$sockudo_root/bin/sockudo" --command "bench/run.sh${quick:+ $quick}"
