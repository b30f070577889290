#!/usr/bin/env bash
# Benchmarks tidings against Socket.IO 4, sockudo and the bare tokio limit on this machine, in one
# run, then two nodes over Redis and NATS (tidings-bench cluster; needs both running on their
# default ports), the hostile soak, the reconnect storm, and 100,000 sockets on Redis and on a
# Redis Cluster (tidings-bench scale; the cluster is started on 127.0.0.1:7000-7005 when none
# answers there), and writes docs/benchmarks.md (and docs/benchmarks.json).
#   bench/run.sh           the full suite (about 10 minutes)
#   bench/run.sh --quick   small numbers: checks the harness and counts every delivery, no speed
#                          claims but one: the CPU guard (--max-cpu-ratio 2)
# Peers that cannot be installed are reported in the output as not measured.
set -uo pipefail
cd "$(dirname "$0")/.."

quick=""
out="docs/benchmarks.md"
if [ "${1:-}" = "--quick" ]; then
  quick="--quick"
  out="target/bench-quick.md"
fi

# The profiling profile: the release build with line tables, for perf (Cargo.toml).
cargo build --profile profiling --locked -p tidings-server -p tidings-bench || exit 1

# Socket.IO 4 (Node): the npm packages of bench/peers/socketio.
if command -v npm >/dev/null 2>&1; then
  (cd bench/peers/socketio && npm ci --no-audit --no-fund --silent) \
    || echo "bench: npm install of socket.io failed; it will be reported as not measured" >&2
else
  echo "bench: npm is missing (apt-get install --no-install-recommends nodejs npm); Socket.IO will be reported as not measured" >&2
fi

# sockudo (Rust, Pusher protocol) from crates.io; its build needs protoc.
sockudo_root="${SOCKUDO_ROOT:-$HOME/.cache/tidings-bench/sockudo}"
if [ ! -x "$sockudo_root/bin/sockudo" ]; then
  command -v protoc >/dev/null 2>&1 || apt-get install -y -q --no-install-recommends protobuf-compiler libprotobuf-dev >/dev/null
  cargo install sockudo --locked --no-default-features --features redis,nats --root "$sockudo_root" \
    || echo "bench: sockudo failed to build; it will be reported as not measured" >&2
fi

# The local Redis Cluster (3 masters, 3 replicas) for the Redis Cluster rows, when none answers.
if ! (exec 3<>/dev/tcp/127.0.0.1/7000) 2>/dev/null; then
  bash scripts/redis-cluster.sh start target/redis-cluster 1 7000 7001 7002 7003 7004 7005 >/dev/null
fi
# In quick mode, also the CPU guard: tidings' server CPU per delivery in broadcast-max at most 2x
# the limit's.
target/profiling/tidings-bench suite $quick ${quick:+--max-cpu-ratio 2} --out "$out" --json "${out%.md}.json" \
  --sockudo-bin "$sockudo_root/bin/sockudo" --command "bench/run.sh${quick:+ $quick}"
status=$?
{
  echo
  echo "## Two nodes: publish on A, receive on B, over Redis, a Redis Cluster and NATS"
  echo
  echo "Command: \`bench/run.sh${quick:+ $quick}\` (its last step, \`tidings-bench cluster${quick:+ $quick}\`)."
  echo "Node A is a hub in the bench process on a real RedisBus or NatsBus; node B is"
  echo "\`tidings serve --bus redis|nats --store redis\` with 10 sockets subscribed to one channel."
  echo "64 publishers on A send channel events for 10 s, at most 256 ahead of what B's first socket"
  echo "has received; latency is publish on A to frame read on B. Redis, NATS, both nodes and the"
  echo "readers share the machine's 2 cores. \`redis-history\`: the channel keeps history in Redis"
  echo "(\`[[history]]\` on both nodes), so every publish goes through the history script."
  echo "\`redis-cluster\`: the local Redis Cluster (3 masters, 3 replicas, on the same cores) with"
  echo "sharded pub/sub; the one channel lives on one shard."
  echo
  target/profiling/tidings-bench cluster $quick || status=1
  echo
  echo "## Hostile soak"
  echo
  echo "Command: \`bench/run.sh${quick:+ $quick}\` (its last step, \`tidings-bench soak${quick:+ $quick}\`)."
  echo "One \`tidings serve\` on the first free port of 127.0.0.1:17400-17499, with its defaults but"
  echo "history on every channel, \`max_new_sessions_per_ip = 100\`, \`max_history_bytes = 2097152\`,"
  echo "\`max_session_bytes = 4194304\` and \`outbound_queue_bytes = 131072\`."
  echo "Well-behaved subscribers (sources 127.0.1.1-250) receive a broadcast published 20 times a"
  echo "second through the HTTP API, while hostile clients (sources 127.0.2.1-200), in equal shares,"
  echo "each repeat one attack until the end, and \`/healthz\` is asked every 0.5 s; the soak fails if"
  echo "a well-behaved client misses a broadcast, \`/healthz\` misses an answer, or the node's peak RSS"
  echo "passes twice its RSS before the attacks. Everything shares the machine's 2 cores: latency"
  echo "from the attacks' start is what a node loaded by them gives, with the load generator on the"
  echo "same cores."
  echo
  target/profiling/tidings-bench soak $quick || status=1
  echo
  echo "## Reconnect storm"
  echo
  echo "Command: \`bench/run.sh${quick:+ $quick}\` (its last step, \`tidings-bench storm${quick:+ $quick}\`)."
  echo "Three \`tidings serve\` nodes on Redis, every channel keeping history in Redis. Node B holds"
  echo "every socket, spread over the channels; a publisher sends numbered events through node A's"
  echo "HTTP API; B is killed (SIGKILL). Each socket reconnects with tidings.js's full-jitter backoff"
  echo "(0.5 s, doubling), alternately to A or C, recovers its channel from its last position and"
  echo "reads on until the publisher's end: it must have every number once, in order. History reads"
  echo "are Redis's LRANGE calls (INFO commandstats) from the kill until every socket recovered."
  echo
  target/profiling/tidings-bench storm $quick || status=1
  echo
  echo "## Presence channels: subscribe/unsubscribe churn"
  echo
  echo "Command: \`bench/run.sh${quick:+ $quick}\` (its step \`tidings-bench rooms${quick:+ $quick}\`). One \`tidings serve\`,"
  echo "500 sockets (each its own session) over 50 rooms, each subscribing to its room and"
  echo "unsubscribing again, one request at a time, for 10 s; with \`[[presence_channels]]\` on the"
  echo "rooms every subscribe is a member joining (one script on Redis) and every unsubscribe one"
  echo "leaving, each told to the room's subscribers. Redis's time per operation is the growth of"
  echo "its \`INFO commandstats\` microseconds (every command) over the operations answered."
  echo
  target/profiling/tidings-bench rooms $quick || status=1
  echo
  echo "## 100,000 sockets"
  echo
  echo "Command: \`bench/run.sh${quick:+ $quick}\` (its last steps, \`tidings-bench scale${quick:+ $quick}\`, then with"
  echo "\`--cluster\`). Six \`tidings serve\` nodes on Redis share the sockets (a process may hold"
  echo "20,000 open files here), and a seventh waits empty as spare capacity. Worker processes (9,000"
  echo "sockets each, each from its own 127.0.x.y address) open every socket and subscribe it to one"
  echo "of 1,000 channels (100 sockets each). Then 10 publishes to every socket, and 2,000 to single"
  echo "channels, through the nodes' HTTP APIs in turn (8 in flight); latency is publish to frame"
  echo "read. Then the last node is killed (SIGKILL): its sockets come back with their session"
  echo "cookies on the other nodes, picked at random, after tidings.js's full-jitter backoff (0.5 s,"
  echo "doubling; a full node refuses and the socket tries again). Everything (Redis, nodes,"
  echo "workers) shares the machine's 2 cores."
  echo
  target/profiling/tidings-bench scale $quick || status=1
  echo
  echo "On a Redis Cluster of 3 masters and 3 replicas on this machine (\`scripts/redis-cluster.sh\`):"
  echo
  target/profiling/tidings-bench scale $quick \
    --cluster redis://127.0.0.1:7000,redis://127.0.0.1:7001,redis://127.0.0.1:7002 || status=1
} >> "$out"
exit $status
