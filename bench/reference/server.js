'use strict';
/*
 * Reference realtime server for rta-bench: the same wire semantics as rtad's realtime API,
 * built the way most teams would build it (Node.js + socket.io 4), so both can be driven by the
 * same benchmark and compared.
 *
 *   Socket.IO v5 / Engine.IO v4 at path /socket.io/, namespace /v1/realtime
 *     CONNECT auth {"apiKey": "..."}           (any non-empty key, or exactly REF_API_KEY when set)
 *     emit('subscribe', {type:'protocol', protocol, chain?})   -> room per protocol[/chain]
 *     emit('subscribe', {type:'tvl_changes', threshold})       -> every change with
 *                                                                 |changePercent| >= threshold
 *       (changePercent and threshold are fractions, 0.05 = 5%, as in rtad; threshold in (0, 100])
 *     emit('unsubscribe', same)                                -> leaves it
 *     receives 'tvl_change' {protocol, chain, previousTvl, currentTvl, changePercent,
 *                            timestamp, eventId, offset}
 *   Plain WebSocket at /v1/realtime/ws?apiKey=...  (JSON text frames)
 *     {"op":"subscribe","type":"protocol","protocol":"p1","chain":"c1"}
 *     receives {"type":"tvl_change","data":{...same fields}}
 *   POST /v1/ingest  {"tvl":[{"protocol","chain","tvl","timestamp"}]}
 *     Authorization: Bearer <key> (checked like the socket key); previous values are tracked
 *     per protocol/chain; each change (not the first value) emits one tvl_change.
 *
 * Left out on purpose (rtad has them; the benchmark does not exercise them): prices, recovery,
 * per-tier limits, slow-consumer policy (socket.io buffers without bound), the event log.
 *
 * Loopback only by default. Env: PORT (default 8090), HOST (127.0.0.1), REF_API_KEY.
 */
const http = require('http');
const { Server } = require('socket.io');
const { WebSocketServer } = require('ws');

const PORT = parseInt(process.env.PORT || '8090', 10);
const HOST = process.env.HOST || '127.0.0.1';
const API_KEY = process.env.REF_API_KEY || '';
const MAX_BODY = 4 * 1024 * 1024;
const NSP = '/v1/realtime';

function keyOk(k) {
  if (typeof k !== 'string' || k.length === 0) return false;
  return API_KEY === '' || k === API_KEY;
}

const SLUG = /^[a-z0-9][a-z0-9._-]{0,127}$/;

function roomOf(protocol, chain) {
  return chain ? `p:${protocol}:${chain}` : `p:${protocol}`;
}

/* ---- state ---- */
const previous = new Map(); // "protocol\0chain" -> tvl
let offset = 0;
let eventSeq = 0;
const stats = { ingested: 0, events: 0, sioSockets: 0, wsSockets: 0 };

/* Plain WebSocket subscribers: room -> Set(ws); threshold subscribers: Map(ws -> threshold). */
const wsRooms = new Map();
const wsThreshold = new Map();

function wsJoin(ws, room) {
  let set = wsRooms.get(room);
  if (!set) wsRooms.set(room, (set = new Set()));
  set.add(ws);
  ws.rooms.add(room);
}

function wsLeave(ws, room) {
  const set = wsRooms.get(room);
  if (set) {
    set.delete(ws);
    if (set.size === 0) wsRooms.delete(room);
  }
  ws.rooms.delete(room);
}

/* ---- HTTP: ingest + health ---- */
const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  if (req.method === 'GET' && url.pathname === '/health') {
    return sendJson(res, 200, { status: 'ok', ...stats });
  }
  if (url.pathname !== '/v1/ingest') return sendJson(res, 404, { error: 'not_found' });
  if (req.method !== 'POST') return sendJson(res, 405, { error: 'method_not_allowed' });
  const auth = req.headers.authorization || '';
  const m = /^Bearer (.+)$/.exec(auth);
  if (!m || !keyOk(m[1])) return sendJson(res, 401, { error: 'unauthorized' });
  const chunks = [];
  let size = 0;
  req.on('data', (c) => {
    size += c.length;
    if (size > MAX_BODY) {
      sendJson(res, 413, { error: 'too_large' });
      req.destroy();
      return;
    }
    chunks.push(c);
  });
  req.on('end', () => {
    if (res.headersSent) return;
    let body;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch (e) {
      return sendJson(res, 400, { error: 'invalid_json' });
    }
    const items = body && Array.isArray(body.tvl) ? body.tvl : null;
    if (!items || items.length === 0) return sendJson(res, 400, { error: 'empty' });
    for (const it of items) {
      if (!it || !SLUG.test(it.protocol) || !SLUG.test(it.chain) ||
          typeof it.tvl !== 'number' || !isFinite(it.tvl) || it.tvl < 0) {
        return sendJson(res, 400, { error: 'validation_failed' });
      }
    }
    let events = 0;
    for (const it of items) events += applyTvl(it);
    stats.ingested += items.length;
    sendJson(res, 200, { accepted: { tvl: items.length, prices: 0 }, events });
  });
});

function sendJson(res, status, obj) {
  const body = JSON.stringify(obj);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

function applyTvl(it) {
  const k = `${it.protocol}\0${it.chain}`;
  const prev = previous.get(k);
  previous.set(k, it.tvl);
  if (prev === undefined || prev === it.tvl) return 0;
  const changePercent = prev === 0 ? null : (it.tvl - prev) / prev; /* a fraction, as rtad */
  let ts = Date.now();
  if (typeof it.timestamp === 'number') ts = it.timestamp * 1000;
  else if (typeof it.timestamp === 'string' && !isNaN(Date.parse(it.timestamp))) ts = Date.parse(it.timestamp);
  offset++;
  eventSeq++;
  const ev = {
    protocol: it.protocol,
    chain: it.chain,
    previousTvl: prev,
    currentTvl: it.tvl,
    changePercent,
    timestamp: new Date(ts).toISOString(),
    eventId: `ev-${process.pid}-${eventSeq}`,
    offset,
    source: 'ingest',
  };
  emitChange(ev);
  stats.events++;
  return 1;
}

/* ---- Socket.IO ---- */
const io = new Server(server, {
  path: '/socket.io/',
  serveClient: false,
  transports: ['websocket', 'polling'],
  pingInterval: 25000,
  pingTimeout: 20000,
  maxHttpBufferSize: 1e6,
  perMessageDeflate: false,
  destroyUpgrade: false, /* /v1/realtime/ws upgrades are ours, not engine.io's */
});
const rt = io.of(NSP);

rt.use((socket, next) => {
  const key = (socket.handshake.auth && socket.handshake.auth.apiKey) || socket.handshake.query.apiKey;
  if (!keyOk(key)) {
    const err = new Error('unauthorized');
    err.data = { code: 'unauthorized' };
    return next(err);
  }
  next();
});

function parseSub(s) {
  if (!s || typeof s !== 'object') return { error: 'subscription must be an object' };
  if (s.type === 'protocol') {
    if (!SLUG.test(s.protocol || '')) return { error: 'protocol must be a slug' };
    if (s.chain !== undefined && !SLUG.test(s.chain)) return { error: 'chain must be a slug' };
    return { room: roomOf(s.protocol, s.chain) };
  }
  if (s.type === 'tvl_changes') {
    const t = Number(s.threshold);
    if (typeof s.threshold !== 'number' || !(t > 0 && t <= 100)) {
      return { error: 'threshold must be a number in (0, 100]' };
    }
    return { threshold: t };
  }
  return { error: 'unknown subscription type' };
}

rt.on('connection', (socket) => {
  stats.sioSockets++;
  socket.data.threshold = null;
  const handle = (join) => (sub, ack) => {
    const r = parseSub(sub);
    if (r.error) {
      const error = { code: 'invalid_subscription', message: r.error };
      if (typeof ack === 'function') ack({ ok: false, error });
      else socket.emit('rta_error', { ...error, event: join ? 'subscribe' : 'unsubscribe' });
      return;
    }
    if (r.room) join ? socket.join(r.room) : socket.leave(r.room);
    else if (join) {
      socket.data.threshold = r.threshold;
      socket.join('tvl_changes');
    } else {
      socket.data.threshold = null;
      socket.leave('tvl_changes');
    }
    if (typeof ack === 'function') ack({ ok: true });
  };
  socket.on('subscribe', handle(true));
  socket.on('unsubscribe', handle(false));
  socket.on('disconnect', () => stats.sioSockets--);
});

function emitChange(ev) {
  const abs = ev.changePercent === null ? Infinity : Math.abs(ev.changePercent);
  /* Rooms: protocol-wide and protocol/chain, deduplicated by socket.io when both are joined. */
  rt.to(roomOf(ev.protocol)).to(roomOf(ev.protocol, ev.chain)).emit('tvl_change', ev);
  /* Threshold subscribers: filtered per socket (thresholds differ per socket). */
  const subs = rt.adapter.rooms.get('tvl_changes');
  if (subs) {
    for (const id of subs) {
      const s = rt.sockets.get(id);
      if (s && abs >= s.data.threshold) s.emit('tvl_change', ev);
    }
  }
  /* Plain WebSocket subscribers: one encoded text for all. */
  if (wsRooms.size === 0 && wsThreshold.size === 0) return;
  const text = JSON.stringify({ type: 'tvl_change', data: ev });
  const seen = new Set();
  for (const room of [roomOf(ev.protocol), roomOf(ev.protocol, ev.chain)]) {
    const set = wsRooms.get(room);
    if (!set) continue;
    for (const ws of set) {
      if (seen.has(ws)) continue;
      seen.add(ws);
      ws.send(text);
    }
  }
  for (const [ws, t] of wsThreshold) if (!seen.has(ws) && abs >= t) ws.send(text);
}

/* ---- plain WebSocket ---- */
function wsError(ws, code, message) {
  ws.send(JSON.stringify({ type: 'error', error: { code, message } }));
}

const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 1 << 20 });

server.on('upgrade', (req, socket, head) => {
  const url = new URL(req.url, 'http://x');
  if (url.pathname !== '/v1/realtime/ws') return; /* socket.io handles its own path */
  const auth = req.headers.authorization || '';
  const m = /^Bearer (.+)$/.exec(auth);
  const key = url.searchParams.get('apiKey') || (m && m[1]);
  if (!keyOk(key)) {
    socket.end('HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    ws.rooms = new Set();
    stats.wsSockets++;
    ws.send(JSON.stringify({ type: 'welcome', lastOffset: offset, maxSubscriptions: 100 }));
    ws.on('message', (data) => {
      let msg;
      try {
        msg = JSON.parse(data.toString());
      } catch (e) {
        return wsError(ws, 'invalid_message', 'not JSON');
      }
      if (msg.op === 'ping') return ws.send(JSON.stringify({ type: 'pong', lastOffset: offset }));
      if (msg.op !== 'subscribe' && msg.op !== 'unsubscribe') {
        return wsError(ws, 'invalid_message', 'unknown op');
      }
      const r = parseSub(msg);
      if (r.error) return wsError(ws, 'invalid_subscription', r.error);
      if (r.room) msg.op === 'subscribe' ? wsJoin(ws, r.room) : wsLeave(ws, r.room);
      else if (msg.op === 'subscribe') wsThreshold.set(ws, r.threshold);
      else wsThreshold.delete(ws);
      ws.send(JSON.stringify({ type: 'subscribed', op: msg.op }));
    });
    ws.on('close', () => {
      stats.wsSockets--;
      for (const room of [...ws.rooms]) wsLeave(ws, room);
      wsThreshold.delete(ws);
    });
  });
});

server.maxConnections = 60000;
server.listen(PORT, HOST, () => {
  console.log(JSON.stringify({ msg: 'reference server listening', host: HOST, port: PORT }));
});

function shutdown() {
  io.close();
  for (const ws of wss.clients) ws.terminate();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
