#!/usr/bin/env bash
# A local Redis Cluster on 127.0.0.1, from Debian's redis-server and redis-cli, for tests,
# benchmarks and trying `bus = "redis-cluster"`:
#   scripts/redis-cluster.sh start DIR REPLICAS PORT...   one redis-server per port (daemons, with
#       their pid, config and log files in DIR; an earlier cluster's files there are removed first),
#       joined by `redis-cli --cluster create` with REPLICAS replicas per master (6 ports and 1:
#       3 masters, 3 replicas); returns once every node reports cluster_state:ok, and prints the
#       nodes' URLs, one per line.
#   scripts/redis-cluster.sh stop DIR                     kills every server started in DIR, and
#       removes their files (and DIR, if nothing else is in it).
# Each node's cluster bus listens on its port plus REDIS_CLUSTER_BUS_OFFSET (default 10000, as
# Redis's own default); a node that does not start (a port or bus port taken) fails the start,
# naming both ports and printing the node's log.
# Nodes time out after 1 s (cluster-node-timeout 1000), and a replica always may take over
# (cluster-replica-validity-factor 0), so one replaces a killed master within about two seconds.
# Nothing is saved to disk.
set -euo pipefail

usage() { echo "usage: $0 start DIR REPLICAS PORT... | stop DIR" >&2; exit 2; }
# Removes the files this script and the servers write in DIR, and nothing else.
forget() { rm -f "$1"/nodes-*.conf "$1"/*.pid "$1"/*.log "$1"/dump.rdb; }
# Kills every server started in DIR, waits for them to exit, and removes their files.
stop_all() {
  local pids=() pid pidfile
  for pidfile in "$1"/*.pid; do
    [ -e "$pidfile" ] && pids+=("$(cat "$pidfile")")
  done
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  # Each server writes to its log until it exits.
  for pid in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  done
  forget "$1"
}
[ $# -ge 2 ] || usage
command=$1 dir=$2
shift 2
case $command in
  start)
    [ $# -ge 2 ] || usage
    replicas=$1
    shift
    offset=${REDIS_CLUSTER_BUS_OFFSET:-10000}
    # A cluster left in DIR by an earlier run would refuse to be created again.
    mkdir -p "$dir"
    forget "$dir"
    for port in "$@"; do
      redis-server --bind 127.0.0.1 --port "$port" --cluster-port $((port + offset)) \
        --daemonize yes \
        --pidfile "$dir/$port.pid" --logfile "$dir/$port.log" --dir "$dir" \
        --cluster-enabled yes --cluster-config-file "nodes-$port.conf" \
        --cluster-node-timeout 1000 --cluster-replica-validity-factor 0 \
        --save "" --appendonly no
    done
    for port in "$@"; do
      for _ in $(seq 100); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && break
        sleep 0.05
      done
      redis-cli -p "$port" ping >/dev/null 2>&1 || {
        echo "$0: the redis-server on port $port (cluster bus port $((port + offset))) did not start; its log ($dir/$port.log):" >&2
        cat "$dir/$port.log" >&2 2>/dev/null || true
        stop_all "$dir"
        exit 1
      }
    done
    nodes=()
    for port in "$@"; do nodes+=("127.0.0.1:$port"); done
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas "$replicas" --cluster-yes >"$dir/create.log"
    for port in "$@"; do
      for _ in $(seq 200); do
        redis-cli -p "$port" cluster info | grep -q '^cluster_state:ok' && break
        sleep 0.05
      done
      redis-cli -p "$port" cluster info | grep -q '^cluster_state:ok' || {
        echo "$0: node $port never reported cluster_state:ok" >&2
        exit 1
      }
      echo "redis://127.0.0.1:$port"
    done
    ;;
  stop)
    stop_all "$dir"
    rmdir "$dir" 2>/dev/null || true
    ;;
  *) usage ;;
esac
