#!/usr/bin/env bash
# Checks that tidings builds as a dependency, outside this workspace: a throwaway Cargo project
# depends on crates/tidings by path (in-memory only: default-features = false), builds and runs
# the `embed` example's code as its main, and greets through it; then checks that the packaged
# crate carries the browser client it serves.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
mkdir -p "$target_dir"
target_abs="$(cd "$target_dir" && pwd)"
app="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$app"' EXIT
pid=""

mkdir -p "$app/src"
cp crates/tidings/examples/embed.rs "$app/src/main.rs"
# The same versions as the workspace, so the shared target dir reuses what is built.
cp Cargo.lock "$app/"
cat >"$app/Cargo.toml" <<EOF
[package]
name = "tidings-dependent"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
tidings = { path = "$repo/crates/tidings", default-features = false }
axum = { version = "0.8", default-features = false, features = ["http1", "tokio"] }
tokio = { version = "1", features = ["rt-multi-thread", "macros", "net", "time"] }

[workspace]
EOF
(cd "$app" && CARGO_TARGET_DIR="$target_abs/dependent" cargo build --quiet)
if cargo tree --manifest-path "$app/Cargo.toml" -e normal | grep -E "redis|async-nats|reqwest|jsonwebtoken"; then
  echo "scripts/dependent.sh: an in-memory embedder pulls the crates above" >&2
  exit 1
fi

out="$app/out.log"
"$target_abs/dependent/debug/tidings-dependent" >"$out" 2>&1 &
pid=$!
for _ in $(seq 100); do grep -q "listening on" "$out" && break; sleep 0.1; done
grep -q "listening on http://127.0.0.1:7401" "$out" || {
  echo "scripts/dependent.sh: the embed app did not start:" >&2
  cat "$out" >&2
  exit 1
}
reply="$(curl -sS -X POST 127.0.0.1:7401/hello/ann)"
[ "$reply" = "sent" ] || { echo "scripts/dependent.sh: /hello/ann answered: $reply" >&2; exit 1; }
# The whole body, then its start: `curl | head -c` fails under pipefail when head closes first.
script="$(curl -sS 127.0.0.1:7401/tidings.js)"
grep -q "tidings" <<<"${script:0:200}" || { echo "scripts/dependent.sh: no /tidings.js" >&2; exit 1; }

cargo package -p tidings --list --allow-dirty 2>/dev/null | grep -qx "client/tidings.js" || {
  echo "scripts/dependent.sh: the packaged crate lacks client/tidings.js" >&2
  exit 1
}
echo "scripts/dependent.sh: tidings builds and runs as a dependency; the package carries tidings.js"
