"""Times one POST on a fresh HTTP connection against one on a kept connection.

Usage: python3 bench/fresh_connections.py HOST PORT PATH BODY
e.g. against `tidings serve --listen 127.0.0.1:7811 --public-channels '*'`:
  python3 bench/fresh_connections.py 127.0.0.1 7811 /api/publish/channel \
      '{"channels":"x","event":"b","args":["p"]}'
and against `tidings-bench bare-server --listen 127.0.0.1:7821 --http 127.0.0.1:7822`:
  python3 bench/fresh_connections.py 127.0.0.1 7822 /publish/x '{"type":"event"}'
"""

import http.client
import sys
import time

ROUNDS, WARM_UP = 2000, 200


def post(host, port, path, body, connection=None):
    """One POST, on `connection` or a fresh one closed after; its time in µs."""
    started = time.perf_counter()
    c = connection or http.client.HTTPConnection(host, port)
    c.request("POST", path, body, {"content-type": "application/json"})
    c.getresponse().read()
    if connection is None:
        c.close()
    return (time.perf_counter() - started) * 1e6


def quantile(times, q):
    return sorted(times)[int(len(times) * q)]


def main():
    host, port, path, body = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    target = (host, port, path, body)
    for _ in range(WARM_UP):
        post(*target)
    fresh = [post(*target) for _ in range(ROUNDS)]
    kept = http.client.HTTPConnection(host, port)
    for _ in range(WARM_UP):
        post(*target, kept)
    reused = [post(*target, kept) for _ in range(ROUNDS)]
    print(
        f"fresh p50 {quantile(fresh, .5):.0f} p99 {quantile(fresh, .99):.0f} µs; "
        f"kept p50 {quantile(reused, .5):.0f} p99 {quantile(reused, .99):.0f} µs"
    )


if __name__ == "__main__":
    main()
