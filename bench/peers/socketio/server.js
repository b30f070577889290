// Socket.IO 4 peer for the tidings benchmark: rooms joined by the client, publishes over HTTP.
// Usage: node server.js PORT
"use strict";
const http = require("http");
const { Server } = require("socket.io");

const port = Number(process.argv[2] || 7500);

const server = http.createServer((req, res) => {
  if (req.method !== "POST" || req.url !== "/publish") {
    res.writeHead(404);
    res.end();
    return;
  }
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const { room, event, args } = JSON.parse(Buffer.concat(chunks).toString());
    // Answer first, then emit: a long emit must not stall or break the publisher's connection.
    res.writeHead(200, { "content-type": "application/json" });
    res.end('{"ok":true}');
    setImmediate(() => (room ? io.to(room) : io).emit(event, ...args));
  });
});

const io = new Server(server, {
  transports: ["websocket"],
  perMessageDeflate: false,
  serveClient: false,
});

io.on("connection", (socket) => {
  socket.on("join", (room) => {
    socket.join(room);
    socket.emit("joined");
  });
});

// A publisher's pooled connection must not be closed as idle while the event loop is busy emitting.
server.keepAliveTimeout = 600000;
server.headersTimeout = 601000;
server.listen(port, "127.0.0.1");
