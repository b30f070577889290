"""Pusher's Python server SDK (the `pusher` package from PyPI) against tidings.

Usage: sdk.py PORT APP_ID KEY SECRET — triggers on `py-orders`, reads the HTTP API, and reads
webhook posts (JSON lines of {"key", "signature", "body"}) from stdin to validate; prints one
JSON line per result.
"""

import json
import sys

import pusher
import pusher.errors


def main():
    port, app_id, key, secret = sys.argv[1:5]
    client = pusher.Pusher(app_id, key, secret, host="127.0.0.1", port=int(port), ssl=False)
    client.trigger("py-orders", "shipped", {"id": 7})
    client.trigger_batch([{"channel": "py-orders", "name": "batched", "data": {"n": 1}}])
    print(json.dumps({"channels": client.channels_info(prefix_filter="py-")}), flush=True)
    print(json.dumps({"channel": client.channel_info("py-orders")}), flush=True)
    wrong = pusher.Pusher(app_id, key, "not-the-secret", host="127.0.0.1", port=int(port), ssl=False)
    try:
        wrong.trigger("py-orders", "e", {})
        print(json.dumps({"wrong_secret": "accepted"}), flush=True)
    except pusher.errors.PusherBadAuth:
        print(json.dumps({"wrong_secret": 401}), flush=True)
    for line in sys.stdin:
        post = json.loads(line)
        valid = client.validate_webhook(post["key"], post["signature"], post["body"])
        print(json.dumps({"webhook": valid}), flush=True)


if __name__ == "__main__":
    main()
