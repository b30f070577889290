"""A tidings backend in Python: mints tokens, answers RPC calls, publishes (stdlib + redis-py)."""
import base64, hashlib, hmac, json, os, time, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import redis

env = os.environ.get
TIDINGS, INGEST = env("TIDINGS_URL", "http://127.0.0.1:7400"), env("INGEST_CHANNEL", "ss:event")
TOKEN_KEY, PROXY_KEY = env("TOKEN_SECRET").encode(), env("RPC_PROXY_SECRET").encode()  # tidings' [token] and [rpc_proxy] secrets
r = redis.Redis.from_url(env("REDIS_URL", "redis://127.0.0.1:6379"))
b64 = lambda data: base64.urlsafe_b64encode(data).rstrip(b"=")
sign = lambda key, data: hmac.new(key, data, hashlib.sha256)

def token(user):  # an HS256 JWT: who the browser is, and its private channel
    claims = {"sub": user, "channels": [f"private:{user}"], "exp": int(time.time()) + 600}
    signed = b64(b'{"alg":"HS256","typ":"JWT"}') + b"." + b64(json.dumps(claims).encode())
    return (signed + b"." + b64(sign(TOKEN_KEY, signed).digest())).decode()

class Backend(BaseHTTPRequestHandler):
    def do_GET(self):  # GET /token?user=fred: what the app hands its logged-in browser
        self.reply({"token": token(self.path.partition("user=")[2])})

    def do_POST(self):  # tidings' RPC proxy: {method, params, session_id, user_id, socket_id}
        body = self.rfile.read(int(self.headers["content-length"]))
        if not hmac.compare_digest("sha256=" + sign(PROXY_KEY, body).hexdigest(), self.headers["x-tidings-signature"]):
            return self.reply({"error": {"code": "forbidden", "message": "bad signature"}})
        call = json.loads(body)
        if call["method"] == "room.join":  # subscribe the session; welcome its user through Redis ingest
            r.publish(INGEST, json.dumps({"t": "user", "users": [call["user_id"]], "e": "welcome", "p": call["params"]}))
            return self.reply({"result": "joined", "subscribe": call["params"]})
        if call["method"] == "room.say":  # publish [user, text] to the room through the HTTP API
            room, text = call["params"]
            body = json.dumps({"channels": room, "event": "said", "args": [call["user_id"], text]}).encode()
            urllib.request.urlopen(urllib.request.Request(f"{TIDINGS}/api/publish/channel", body, {"content-type": "application/json"}))
            return self.reply({"result": "sent"})
        self.reply({"error": {"code": "no_such_method", "message": call["method"]}})

    def reply(self, body):
        data = json.dumps(body).encode()
        self.send_response(200), self.send_header("content-length", str(len(data))), self.end_headers()
        self.wfile.write(data)

server = ThreadingHTTPServer(("127.0.0.1", int(env("PORT", "8000"))), Backend)
print(f"backend on http://127.0.0.1:{server.server_address[1]}", flush=True)
server.serve_forever()
