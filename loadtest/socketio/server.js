// Socket.IO baseline for parla-loadtest: the chat work Parla's demo bot does, in memory.
//
// On each `message` event ({client_msg_id, text}) it emits, like Parla's widget protocol:
// `message` (the echo: per-connection seq, the client_msg_id), `stream_start`, one `token`
// per reply token, `stream_end` (seq). Nothing is persisted: this is the cost of Socket.IO
// itself, not of a durable chat.
//
// With RECOVERY=1 (the default) connection state recovery is on: Socket.IO keeps every packet
// for two minutes and a client that reconnects with its pid and last offset gets what it
// missed, and its seq counter (socket.data) back. That buffer is part of the measured cost.
//
// Environment: HOST, PORT (0 = any free port), REPLY_TOKENS (a JSON array of strings),
// RECOVERY (1/0). Prints `socketio: listening on HOST:PORT` once it listens.
'use strict';

const http = require('node:http');
const { Server } = require('socket.io');

const tokens = JSON.parse(process.env.REPLY_TOKENS || '["ok"]');
const reply = tokens.join('');
const recovery = process.env.RECOVERY !== '0';

const httpServer = http.createServer((_req, res) => {
  res.writeHead(404);
  res.end();
});

const io = new Server(httpServer, {
  // The harness connects over WebSocket directly: no long-polling, no client bundle.
  transports: ['websocket'],
  serveClient: false,
  ...(recovery
    ? { connectionStateRecovery: { maxDisconnectionDuration: 2 * 60 * 1000, skipMiddlewares: true } }
    : {}),
});

let connections = 0;
// Ids as long as Parla's (32 hex digits), so the frames weigh the same.
const ident = (conn, n) => conn.toString(16).padStart(16, '0') + n.toString(16).padStart(16, '0');

io.on('connection', (socket) => {
  if (!socket.recovered) {
    socket.data.conn = ++connections;
    socket.data.seq = 0;
  }
  socket.on('message', (m) => {
    if (!m || typeof m.client_msg_id !== 'string' || typeof m.text !== 'string') {
      socket.emit('error', { code: 'malformed_frame', message: 'message needs client_msg_id and text' });
      return;
    }
    const { conn } = socket.data;
    const now = Date.now();
    const echo = ++socket.data.seq;
    socket.emit('message', {
      seq: echo, id: ident(conn, echo), sender: 'user', text: m.text,
      client_msg_id: m.client_msg_id, created_at: now,
    });
    const streamId = ident(conn, 0x8000000 + echo);
    socket.emit('stream_start', { stream_id: streamId, sender: 'bot' });
    for (const delta of tokens) socket.emit('token', { stream_id: streamId, delta });
    const end = ++socket.data.seq;
    socket.emit('stream_end', { stream_id: streamId, seq: end, id: ident(conn, end), text: reply, created_at: now });
  });
});

// Accept errors (EMFILE at the open-file limit) are logged, where the harness looks for them,
// instead of crashing the process; before listening they are fatal.
httpServer.on('error', (e) => {
  console.error(`socketio: server error: ${e.code || ''} ${e.message}`);
  if (!httpServer.listening) process.exit(1);
});

// actix-web's default backlog, so a connect storm meets the same queue on every target.
httpServer.listen({ host: process.env.HOST || '127.0.0.1', port: Number(process.env.PORT || 0), backlog: 2048 }, () => {
  const { address, port } = httpServer.address();
  console.log(`socketio: listening on ${address}:${port}`);
});
