// Helpers for the realtime e2e tests (Socket.IO namespace /v1/realtime and the plain WebSocket
// endpoint /v1/realtime/ws): clients that record everything they receive, bounded waits,
// Prometheus text parsing, a raw WebSocket client on node:net, and ingest shortcuts.
// Every wait has a timeout (scaled by SLOW for sanitizer builds) so a broken server fails a
// test instead of hanging the suite; every client is tracked so after() can close them all.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { io } from 'socket.io-client';
import WebSocket from 'ws';
import { api, ingest, SLOW, sleep } from './rtad.mjs';

export { io, WebSocket };

/** A timeout in ms, stretched for sanitizer builds. */
export const T = (ms) => ms * SLOW;

/** Rejects with a descriptive error when p has not settled within ms. */
export function withTimeout(p, ms, what) {
    let timer;
    const t = new Promise((_, rej) => {
        timer = setTimeout(() => rej(new Error(`timed out after ${ms} ms waiting for ${what}`)),
            ms);
    });
    return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

// ------------------------------------------------------------------ inbox

/** An append-only list of received items with bounded waits on it. */
export class Inbox {
    constructor(label) {
        this.label = label;
        this.items = [];
        this.waiters = new Set();
    }

    push(item) {
        this.items.push(item);
        for (const w of [...this.waiters]) w();
    }

    filter(pred) { return this.items.filter(pred); }

    /** Resolves with the first item (at index >= from) matching pred. */
    waitFor(pred, ms = T(5000), what = 'a matching message', from = 0) {
        return this.waitCount(pred, 1, ms, what, from).then((l) => l[0]);
    }

    /** Resolves with the matching items (index >= from) once there are at least n. */
    waitCount(pred, n, ms = T(5000), what = `${n} matching messages`, from = 0) {
        const check = () => {
            const got = this.items.slice(from).filter(pred);
            return got.length >= n ? got : null;
        };
        const now = check();
        if (now) return Promise.resolve(now);
        return new Promise((res, rej) => {
            const w = () => {
                const got = check();
                if (got) {
                    clearTimeout(timer);
                    this.waiters.delete(w);
                    res(got);
                }
            };
            const timer = setTimeout(() => {
                this.waiters.delete(w);
                const got = this.items.slice(from).filter(pred);
                rej(new Error(`${this.label}: timed out after ${ms} ms waiting for ${what} ` +
                    `(have ${got.length} of ${n}); last items received: ${
                        JSON.stringify(this.items.slice(-5)).slice(0, 1500)}`));
            }, ms);
            this.waiters.add(w);
        });
    }
}

// ------------------------------------------------------------------ client registry

const openClients = new Set();

/** Closes every client opened through this module (call from after()). */
export async function closeAllClients() {
    for (const c of [...openClients]) {
        try { c.close(); } catch { /* already gone */ }
        openClients.delete(c);
    }
    await sleep(20);
}

// ------------------------------------------------------------------ Socket.IO

/**
 * Creates a Socket.IO client on namespace /v1/realtime (not yet waited for). Options: apiKey
 * (sent as auth.apiKey unless undefined), url (default the rtad's http URL), nsp, and any
 * socket.io-client option. Every event received (onAny) is recorded in socket.inbox as
 * {event, args}; reserved events (connect, disconnect, connect_error) in socket.life.
 */
export function sio(h, { apiKey, url, nsp = '/v1/realtime', ...opts } = {}) {
    const o = { forceNew: true, ...opts };
    if (apiKey !== undefined && o.auth === undefined) o.auth = { apiKey };
    const socket = io((url ?? h.url) + nsp, o);
    track(socket);
    return socket;
}

/** Adds the inbox/life recorders to a socket created elsewhere and registers it for cleanup. */
export function track(socket) {
    if (socket.inbox) return socket;
    socket.inbox = new Inbox('socket.io events');
    socket.life = new Inbox('socket.io lifecycle');
    socket.onAny((event, ...args) => socket.inbox.push({ event, args, at: Date.now() }));
    socket.on('connect', () => socket.life.push({ event: 'connect', id: socket.id,
        recovered: socket.recovered }));
    socket.on('disconnect', (reason, desc) => socket.life.push({ event: 'disconnect', reason,
        desc }));
    socket.on('connect_error', (err) => socket.life.push({ event: 'connect_error', err }));
    openClients.add({ close: () => socket.disconnect() });
    return socket;
}

/** Waits for 'connect'; a connect_error or timeout rejects with its details. */
export function connected(socket, ms = T(5000)) {
    if (socket.connected) return Promise.resolve(socket);
    return new Promise((res, rej) => {
        const cleanup = () => {
            clearTimeout(timer);
            socket.off('connect', ok);
            socket.off('connect_error', bad);
        };
        const ok = () => { cleanup(); res(socket); };
        const bad = (err) => {
            cleanup();
            rej(new Error(`connect_error: ${err.message} ${JSON.stringify(err.data ?? null)}`));
        };
        const timer = setTimeout(() => {
            cleanup();
            rej(new Error(`socket.io connect timed out after ${ms} ms`));
        }, ms);
        socket.on('connect', ok);
        socket.on('connect_error', bad);
    });
}

/** Waits for a connect_error and returns the Error (with .data); a connect rejects. */
export function connectError(socket, ms = T(5000)) {
    return new Promise((res, rej) => {
        const cleanup = () => {
            clearTimeout(timer);
            socket.off('connect', ok);
            socket.off('connect_error', bad);
        };
        const ok = () => { cleanup(); rej(new Error('expected connect_error, got connect')); };
        const bad = (err) => { cleanup(); res(err); };
        const timer = setTimeout(() => {
            cleanup();
            rej(new Error(`no connect_error within ${ms} ms`));
        }, ms);
        socket.on('connect', ok);
        socket.on('connect_error', bad);
    });
}

/** Connects a Socket.IO client and waits for it; returns the socket. */
export async function sioConnect(h, opts) {
    const s = sio(h, opts);
    await connected(s);
    return s;
}

/** emit with an ack callback, bounded. */
export function emitAck(socket, event, payload, ms = T(5000)) {
    return socket.timeout(ms).emitWithAck(event, payload);
}

/** Subscribes with an ack and asserts ok:true; returns the ack. */
export async function subscribeOk(socket, payload) {
    const ack = await emitAck(socket, 'subscribe', payload);
    assert.equal(ack?.ok, true, `subscribe ${JSON.stringify(payload)} -> ${JSON.stringify(ack)}`);
    return ack;
}

/** Waits until the engine runs on the websocket transport (after the polling upgrade). */
export function upgraded(socket, ms = T(5000)) {
    const engine = socket.io.engine;
    if (engine && engine.transport && engine.transport.name === 'websocket') {
        return Promise.resolve();
    }
    return withTimeout(new Promise((res) => engine.once('upgrade', () => res())), ms,
        'the polling -> websocket upgrade');
}

/** Waits for a lifecycle event ('disconnect', 'connect', 'connect_error') after index from. */
export function lifeEvent(socket, event, ms = T(5000), from = 0) {
    return socket.life.waitFor((x) => x.event === event, ms, `socket.io '${event}'`, from);
}

/** Events of one name received so far: [{payload, args}]. */
export function received(socket, event, pred = () => true) {
    return socket.inbox.filter((x) => x.event === event && pred(x.args[0]))
        .map((x) => ({ payload: x.args[0], args: x.args }));
}

/** Waits for an event (payload matching pred); returns {payload, args}. */
export async function waitEvent(socket, event, pred = () => true, ms = T(5000)) {
    const x = await socket.inbox.waitFor((y) => y.event === event && pred(y.args[0]), ms,
        `'${event}' event`);
    return { payload: x.args[0], args: x.args };
}

// ------------------------------------------------------------------ plain WebSocket

export function wsUrl(h, { apiKey, path = '/v1/realtime/ws' } = {}) {
    const base = h.url.replace(/^http/, 'ws') + path;
    return apiKey === undefined ? base : `${base}?apiKey=${encodeURIComponent(apiKey)}`;
}

/**
 * Opens a plain WebSocket client. Resolves with {ws, inbox (parsed JSON messages), closed
 * (promise of {code, reason}), send(obj), request(obj, type)} once open; rejects on refusal
 * (error.status / error.json set from the HTTP answer) or timeout.
 */
export function wsOpen(h, { apiKey, headers, path, ms = T(5000) } = {}) {
    return new Promise((res, rej) => {
        const ws = new WebSocket(wsUrl(h, { apiKey, path }), { headers });
        const inbox = new Inbox('ws messages');
        let closeInfo = null;
        const closeWaiters = [];
        const c = {
            ws,
            inbox,
            get closeInfo() { return closeInfo; },
            closed: (t = T(5000)) => withTimeout(new Promise((r) => {
                if (closeInfo) r(closeInfo); else closeWaiters.push(r);
            }), t, 'the WebSocket to close'),
            send: (obj) => ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj)),
            /** Sends obj and waits for the answer of the given type(s) carrying obj.id. */
            request(obj, types, t = T(5000)) {
                const from = inbox.items.length;
                const want = Array.isArray(types) ? types : [types];
                c.send(obj);
                return inbox.waitFor((m) => want.includes(m.type) &&
                    (obj.id === undefined ||
                    JSON.stringify(m.id) === JSON.stringify(obj.id)), t,
                `answer ${want.join('|')} to ${JSON.stringify(obj).slice(0, 200)}`, from);
            },
            close: () => { try { ws.terminate(); } catch { /* gone */ } },
        };
        openClients.add(c);
        const timer = setTimeout(() => {
            c.close();
            rej(new Error(`WebSocket open timed out after ${ms} ms`));
        }, ms);
        ws.on('message', (data, isBinary) => {
            let m;
            try { m = JSON.parse(data.toString('utf8')); } catch {
                m = { unparsed: data.toString('utf8'), isBinary };
            }
            inbox.push(m);
        });
        ws.on('close', (code, reason) => {
            closeInfo = { code, reason: reason.toString() };
            for (const w of closeWaiters.splice(0)) w(closeInfo);
        });
        ws.on('error', (err) => {
            clearTimeout(timer);
            rej(err);
        });
        ws.on('unexpected-response', (req, resp) => {
            const chunks = [];
            resp.on('data', (d) => chunks.push(d));
            resp.on('end', () => {
                clearTimeout(timer);
                const text = Buffer.concat(chunks).toString('utf8');
                const err = new Error(`WebSocket refused: HTTP ${resp.statusCode} ${text}`);
                err.status = resp.statusCode;
                err.headers = resp.headers;
                err.text = text;
                try { err.json = JSON.parse(text); } catch { err.json = null; }
                req.destroy();
                rej(err);
            });
        });
        ws.on('open', () => {
            clearTimeout(timer);
            res(c);
        });
    });
}

/** Opens a WS client and waits for its welcome message; returns the client. */
export async function wsConnect(h, opts) {
    const c = await wsOpen(h, opts);
    await c.inbox.waitFor((m) => m.type === 'welcome', T(5000), 'welcome');
    return c;
}

/** Expects the upgrade to be refused; returns {status, json, headers}. */
export async function wsRefused(h, opts) {
    try {
        const c = await wsOpen(h, opts);
        c.close();
    } catch (e) {
        if (e.status === undefined) throw e;
        return { status: e.status, json: e.json, headers: e.headers, text: e.text };
    }
    throw new Error('expected the WebSocket upgrade to be refused, but it was accepted');
}

// ------------------------------------------------------------------ raw WebSocket (node:net)

/** A masked client frame. */
export function clientFrame(opcode, payload) {
    const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload, 'utf8');
    const len = data.length;
    let head;
    if (len < 126) {
        head = Buffer.from([0x80 | opcode, 0x80 | len]);
    } else if (len < 65536) {
        head = Buffer.alloc(4);
        head[0] = 0x80 | opcode;
        head[1] = 0x80 | 126;
        head.writeUInt16BE(len, 2);
    } else {
        head = Buffer.alloc(10);
        head[0] = 0x80 | opcode;
        head[1] = 0x80 | 127;
        head.writeBigUInt64BE(BigInt(len), 2);
    }
    const mask = randomBytes(4);
    const out = Buffer.alloc(len);
    for (let i = 0; i < len; i++) out[i] = data[i] ^ mask[i & 3];
    return Buffer.concat([head, mask, out]);
}

/** Parses server (unmasked) frames from buf; returns {frames: [{opcode, payload}], rest}. */
export function parseFrames(buf) {
    const frames = [];
    let p = 0;
    for (;;) {
        if (buf.length - p < 2) break;
        const b0 = buf[p];
        const b1 = buf[p + 1];
        let len = b1 & 0x7f;
        let hl = 2;
        if (len === 126) {
            if (buf.length - p < 4) break;
            len = buf.readUInt16BE(p + 2);
            hl = 4;
        } else if (len === 127) {
            if (buf.length - p < 10) break;
            len = Number(buf.readBigUInt64BE(p + 2));
            hl = 10;
        }
        if (b1 & 0x80) hl += 4; // masked (a server must not, but parse anyway)
        if (buf.length - p < hl + len) break;
        frames.push({ fin: !!(b0 & 0x80), opcode: b0 & 0x0f,
            payload: buf.subarray(p + hl, p + hl + len) });
        p += hl + len;
    }
    return { frames, rest: buf.subarray(p) };
}

/**
 * A raw WebSocket client on node:net: does the upgrade of /v1/realtime/ws, then lets the test
 * write frames and stop/start reading. Resolves after the 101 with {sock, data(), sendJson(),
 * pause(), resume(), waitText(substring), waitClose(ms), frames()}.
 */
export function rawWs(h, apiKey, ms = T(5000)) {
    return new Promise((res, rej) => {
        const sock = net.connect({ port: h.port, host: '127.0.0.1' });
        const chunks = [];
        let closed = false;
        let upgraded = false;
        let headLen = 0;
        const waiters = new Set();
        const notify = () => { for (const w of [...waiters]) w(); };
        const all = () => Buffer.concat(chunks);
        const c = {
            sock,
            data: all,
            get closed() { return closed; },
            sendJson: (o) => sock.write(clientFrame(0x1, JSON.stringify(o))),
            pause: () => sock.pause(),
            resume: () => sock.resume(),
            frames: () => parseFrames(all().subarray(headLen)).frames,
            waitText(substr, t = T(5000)) {
                return withTimeout(new Promise((r) => {
                    const w = () => {
                        if (all().subarray(headLen).toString('latin1').includes(substr)) {
                            waiters.delete(w);
                            r();
                        }
                    };
                    waiters.add(w);
                    w();
                }), t, `raw ws text ${substr}`);
            },
            waitClose(t = T(5000)) {
                return withTimeout(new Promise((r) => {
                    const w = () => { if (closed) { waiters.delete(w); r(); } };
                    waiters.add(w);
                    w();
                }), t, 'the raw socket to close');
            },
            close: () => sock.destroy(),
        };
        openClients.add(c);
        const timer = setTimeout(() => {
            sock.destroy();
            rej(new Error('raw WebSocket upgrade timed out'));
        }, ms);
        sock.on('data', (d) => {
            chunks.push(d);
            if (!upgraded) {
                const s = all().toString('latin1');
                const end = s.indexOf('\r\n\r\n');
                if (end >= 0) {
                    upgraded = true;
                    headLen = end + 4;
                    clearTimeout(timer);
                    if (!/^HTTP\/1\.1 101/.test(s)) {
                        sock.destroy();
                        rej(new Error(`raw upgrade refused: ${s.slice(0, 300)}`));
                        return;
                    }
                    res(c);
                }
            }
            notify();
        });
        sock.on('error', () => { /* close follows */ });
        sock.on('close', () => { closed = true; notify(); });
        sock.on('connect', () => {
            const key = randomBytes(16).toString('base64');
            sock.write(`GET /v1/realtime/ws?apiKey=${encodeURIComponent(apiKey)} HTTP/1.1\r\n` +
                `Host: 127.0.0.1:${h.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
                `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
        });
    });
}

/** The close code of a close frame payload, or null. */
export function closeCode(frame) {
    if (!frame || frame.opcode !== 0x8 || frame.payload.length < 2) return null;
    return frame.payload.readUInt16BE(0);
}

// ------------------------------------------------------------------ metrics

/** GET /metrics text. */
export async function metricsText(h) {
    const r = await api(h, 'GET', '/metrics');
    assert.equal(r.status, 200, r.text);
    return r.text;
}

/** Samples of one metric name: [{labels: {k: v}, value}]. */
export function samples(text, name) {
    const out = [];
    for (const line of text.split('\n')) {
        if (line.startsWith('#') || !line.startsWith(name)) continue;
        const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)/.exec(line);
        if (!m || m[1] !== name) continue;
        const labels = {};
        if (m[3]) {
            for (const lm of m[3].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
                labels[lm[1]] = lm[2];
            }
        }
        out.push({ labels, value: Number(m[4]) });
    }
    return out;
}

/** Sum of the samples of name whose labels include `match`. */
export function metricSum(text, name, match = {}) {
    return samples(text, name)
        .filter((s) => Object.entries(match).every(([k, v]) => s.labels[k] === v))
        .reduce((a, s) => a + s.value, 0);
}

/** Reads one metric sum from a live server. */
export async function metric(h, name, match) {
    return metricSum(await metricsText(h), name, match);
}

// ------------------------------------------------------------------ data

// two days back: room for thousands of ingests (one second each) without reaching `future`
let tsCursor = Math.floor(Date.now() / 1000) - 2 * 86400;
/** A strictly increasing Unix timestamp (seconds, in the past) for ingest items. */
export const nextTs = () => tsCursor++;

/** Ingests TVL points [{protocol, chain, tvl}] (one shared fresh timestamp) and asserts 200. */
/** n TVL updates of protocol on ethereum, one POST each, from 1e9 up in steps of 12345.678
 * (after a first value of 1e9 ingested by the caller); returns [{prev, cur, r}]. */
export async function ingestTvlSteps(h, protocol, n) {
    const sent = [];
    for (let i = 1; i <= n; i++) {
        const prev = i === 1 ? 1e9 : 1e9 + (i - 1) * 12345.678;
        const cur = 1e9 + i * 12345.678;
        const r = await ingestTvl(h, [{ protocol, chain: 'ethereum', tvl: cur }]);
        sent.push({ prev, cur, r });
    }
    return sent;
}

export async function ingestTvl(h, items, key) {
    const ts = nextTs();
    const r = await ingest(h, { tvl: items.map((x) => ({ timestamp: ts, ...x })) }, key);
    assert.equal(r.status, 200, `ingest: ${r.status} ${r.text}`);
    return { ...r.json, timestamp: ts };
}

/** Ingests prices [{token, price}] (one shared fresh timestamp) and asserts 200. */
export async function ingestPrices(h, items, key) {
    const ts = nextTs();
    const r = await ingest(h, { prices: items.map((x) => ({ timestamp: ts, ...x })) }, key);
    assert.equal(r.status, 200, `ingest: ${r.status} ${r.text}`);
    return { ...r.json, timestamp: ts };
}

/** Revokes a key through the admin API. */
export async function revokeKey(h, id) {
    const r = await api(h, 'DELETE', `/v1/admin/keys/${id}`, { key: h.adminKey });
    assert.equal(r.status, 200, r.text);
}

// ------------------------------------------------------------------ payload checks

const ISO_MS_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const UUIDV7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

function near(actual, expected, what, s) {
    assert.equal(typeof actual, 'number', `${what} is not a number: ${s}`);
    assert.ok(Math.abs(actual - expected) <= 1e-9 * Math.max(1, Math.abs(expected)),
        `${what}: expected ~${expected}, got ${actual}: ${s}`);
}

/**
 * Asserts a tvl_change payload as documented: protocol, chain, previousTvl, currentTvl,
 * changePercent (fraction, or null without a previous value), ISO timestamp (the data point's
 * time, seconds `ts`), eventId, integer offset, source "ingest".
 */
export function checkTvlChange(p, { protocol, chain, previous, current, ts, offset }) {
    const s = JSON.stringify(p);
    assert.ok(p && typeof p === 'object', `payload: ${s}`);
    assert.equal(p.protocol, protocol, s);
    assert.equal(p.chain, chain, s);
    if (previous === null) {
        assert.equal(p.previousTvl, null, `previousTvl: ${s}`);
        assert.equal(p.changePercent, null, `changePercent: ${s}`);
    } else {
        near(p.previousTvl, previous, 'previousTvl', s);
        near(p.changePercent, (current - previous) / previous, 'changePercent', s);
    }
    near(p.currentTvl, current, 'currentTvl', s);
    assert.match(p.timestamp, ISO_MS_RE, `timestamp: ${s}`);
    if (ts !== undefined) assert.equal(Date.parse(p.timestamp), ts * 1000, `timestamp: ${s}`);
    assert.match(p.eventId, UUIDV7, `eventId: ${s}`);
    assert.ok(Number.isInteger(p.offset) && p.offset > 0, `offset: ${s}`);
    if (offset !== undefined) assert.equal(p.offset, offset, `offset: ${s}`);
    assert.equal(p.source, 'ingest', `source: ${s}`);
}

/** Asserts a price_change payload (token, previousPrice, currentPrice, changePercent, ...). */
export function checkPriceChange(p, { token, previous, current, ts, offset }) {
    const s = JSON.stringify(p);
    assert.ok(p && typeof p === 'object', `payload: ${s}`);
    assert.equal(p.token, token, s);
    near(p.previousPrice, previous, 'previousPrice', s);
    near(p.currentPrice, current, 'currentPrice', s);
    near(p.changePercent, (current - previous) / previous, 'changePercent', s);
    assert.match(p.timestamp, ISO_MS_RE, `timestamp: ${s}`);
    if (ts !== undefined) assert.equal(Date.parse(p.timestamp), ts * 1000, `timestamp: ${s}`);
    assert.match(p.eventId, UUIDV7, `eventId: ${s}`);
    assert.ok(Number.isInteger(p.offset) && p.offset > 0, `offset: ${s}`);
    if (offset !== undefined) assert.equal(p.offset, offset, `offset: ${s}`);
    assert.equal(p.source, 'ingest', `source: ${s}`);
}

/** Asserts an error object {code, message, field?, rule?}. */
export function checkError(err, code, field, rule) {
    const s = JSON.stringify(err);
    assert.ok(err && typeof err === 'object', `error: ${s}`);
    assert.equal(err.code, code, `code: ${s}`);
    assert.equal(typeof err.message, 'string', `message: ${s}`);
    assert.ok(err.message.length > 0, `message: ${s}`);
    if (field !== undefined) assert.equal(err.field, field, `field: ${s}`);
    if (rule !== undefined) {
        if (Array.isArray(rule)) assert.ok(rule.includes(err.rule), `rule: ${s}`);
        else assert.equal(err.rule, rule, `rule: ${s}`);
    }
}

// ------------------------------------------------------------------ teardown

/**
 * Closes every client, stops rtad with SIGTERM and asserts a clean exit: code 0 and no
 * sanitizer report on stderr (a leak or UB found at exit fails the suite's after() hook).
 */
export async function stopClean(h) {
    await closeAllClients();
    if (!h) return;
    const code = await h.stop();
    const bad = h.stderr.filter((l) => /AddressSanitizer|LeakSanitizer|runtime error:/.test(l));
    assert.deepEqual(bad, [], `sanitizer report:\n${h.stderr.slice(-60).join('\n')}`);
    assert.equal(code, 0, `rtad exit code ${code} (signal ${h.exitSignal}):\n${
        h.stderr.slice(-20).join('\n')}`);
}
